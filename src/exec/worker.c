/*
 * worker.c - the session's second thread: runs one kernel next to the calling thread (for
 * example the forward and backward directions of a bidirectional RNN at once). Started on
 * first use, stopped when the session is freed. Also keeps the BLAS library single-threaded
 * during runs, so recur's own threads and the BLAS thread pool never compete for the cores,
 * and flushes denormal floats to zero while recur's kernels run (as TensorFlow's executor does).
 */
#include "exec/exec.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

/* Hand-off: `state` goes IDLE -> PENDING (the caller posts work) -> IDLE (the worker finished
 * it). Both sides spin briefly before sleeping on the condition variable, because kernels hand
 * work over many times per run and a sleeping thread takes tens of microseconds to wake.
 *
 * Placement: Linux tends to wake a sleeping thread on the core of the thread that woke it, and
 * its load balancer takes a hundred milliseconds or more to notice two busy threads on one core
 * of two (their load average has to build up first). Until then every hand-off runs both halves
 * on one core, in turn: a small model's training step took three times as long for its first
 * 150 ms. So the worker checks, when it takes up work, whether it shares the poster's core, and
 * if so moves itself to another core it may run on (narrowing its affinity for one call and
 * restoring it right after: the mask it is allowed is unchanged, only where it runs now). */
enum { IDLE, PENDING };
#define SPIN_NS 200000 /* 0.2 ms */

struct rc_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *);
    void *arg;
    _Atomic int state;
    _Atomic bool quit;
    int poster_cpu; /* the core the work was posted from (-1: unknown) */
    int sleepers; /* threads waiting on cv (under mu) */
};

int rc_usable_cpus(void)
{
#ifdef CPU_SET
    cpu_set_t cs;
    if (!sched_getaffinity(0, sizeof cs, &cs) && CPU_COUNT(&cs) > 0) return CPU_COUNT(&cs);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)RC_MIN(n, 1 << 20) : 1;
}

void rc_spin_turn(unsigned *turns)
{
#ifdef HAVE_MXCSR
    _mm_pause();
#endif
    if (++*turns > RC_SPIN_YIELD) sched_yield();
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait until state == want (or quit): spin a little, then sleep. */
static void await_state(struct rc_worker *w, int want)
{
    int64_t t0 = 0;
    for (unsigned i = 0; atomic_load_explicit(&w->state, memory_order_acquire) != want && !atomic_load(&w->quit);) {
        if ((i & 255) == 255) {
            if (!t0) t0 = mono_ns();
            else if (mono_ns() - t0 > SPIN_NS) break;
        }
        rc_spin_turn(&i);
    }
    if (atomic_load_explicit(&w->state, memory_order_acquire) == want || atomic_load(&w->quit)) return;
    pthread_mutex_lock(&w->mu);
    w->sleepers++;
    while (atomic_load_explicit(&w->state, memory_order_acquire) != want && !atomic_load(&w->quit))
        pthread_cond_wait(&w->cv, &w->mu);
    w->sleepers--;
    pthread_mutex_unlock(&w->mu);
}

/* Publish a state change and wake a sleeping peer. */
static void set_state(struct rc_worker *w, int v)
{
    atomic_store_explicit(&w->state, v, memory_order_release);
    pthread_mutex_lock(&w->mu);
    if (w->sleepers) pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Move the calling thread off core `cpu`, to another core its affinity allows, and leave
 * its affinity as it was. Does nothing where there is no other core or no way to ask. */
static void move_off(int cpu)
{
#ifdef CPU_SET
    cpu_set_t all, other;
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof all, &all)) return;
    other = all;
    CPU_CLR(cpu, &other);
    if (!CPU_COUNT(&other) || sched_setaffinity(0, sizeof other, &other)) return;
    sched_setaffinity(0, sizeof all, &all);
#else
    (void)cpu;
#endif
}

static void *worker_main(void *p)
{
    struct rc_worker *w = p;
    rc_fp_flush_denormals(); /* this thread runs only recur's kernels */
    for (;;) {
        await_state(w, PENDING);
        if (atomic_load(&w->quit)) break;
        if (w->poster_cpu >= 0 && sched_getcpu() == w->poster_cpu) move_off(w->poster_cpu);
        w->fn(w->arg);
        set_state(w, IDLE);
    }
    return NULL;
}

bool rc_worker_start(recur_session *s, void (*fn)(void *), void *arg)
{
    if (!s->worker) {
        struct rc_worker *w = rc_calloc(1, sizeof *w);
        if (!w) return false;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        atomic_init(&w->state, IDLE);
        atomic_init(&w->quit, false);
        if (pthread_create(&w->thread, NULL, worker_main, w)) {
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            rc_free(w);
            return false;
        }
        s->worker = w;
    }
    struct rc_worker *w = s->worker;
    w->fn = fn;
    w->arg = arg;
    w->poster_cpu = sched_getcpu();
    set_state(w, PENDING);
    return true;
}

void rc_worker_wait(recur_session *s) { await_state(s->worker, IDLE); }

void rc_worker_stop(recur_session *s)
{
    struct rc_worker *w = s->worker;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->quit, true);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    rc_free(w);
    s->worker = NULL;
}

unsigned rc_fp_flush_denormals(void)
{
#ifdef HAVE_MXCSR
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040); /* FTZ (bit 15) and DAZ (bit 6) */
    return old;
#else
    return 0;
#endif
}

void rc_fp_restore(unsigned old)
{
#ifdef HAVE_MXCSR
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

/* OpenBLAS, when it is the CBLAS in use (weak references: any other CBLAS is left alone). */
int openblas_get_num_threads(void) __attribute__((weak));
void openblas_set_num_threads(int n) __attribute__((weak));

int rc_blas_single_thread(void)
{
    if (!openblas_get_num_threads || !openblas_set_num_threads) return 0;
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

void rc_blas_restore(int n)
{
    if (n > 1 && openblas_set_num_threads) openblas_set_num_threads(n);
}
