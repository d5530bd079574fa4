/*
 * worker.c - the session's second thread: runs one kernel next to the calling thread (for
 * example the forward and backward directions of a bidirectional RNN at once). Started on
 * first use, stopped when the session is freed. Also keeps the BLAS library single-threaded
 * during runs, so recur's own threads and the BLAS thread pool never compete for the cores,
 * and flushes denormal floats to zero while recur's kernels run (as TensorFlow's executor does).
 */
#include "exec/exec.h"

#include <pthread.h>
#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

struct rc_worker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*fn)(void *);
    void *arg;
    bool pending, quit;
};

static void *worker_main(void *p)
{
    struct rc_worker *w = p;
    rc_fp_flush_denormals(); /* this thread runs only recur's kernels */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        pthread_mutex_unlock(&w->mu);
        w->fn(w->arg);
        pthread_mutex_lock(&w->mu);
        w->pending = false;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

bool rc_worker_start(recur_session *s, void (*fn)(void *), void *arg)
{
    if (!s->worker) {
        struct rc_worker *w = rc_calloc(1, sizeof *w);
        if (!w) return false;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w)) {
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            rc_free(w);
            return false;
        }
        s->worker = w;
    }
    struct rc_worker *w = s->worker;
    pthread_mutex_lock(&w->mu);
    w->fn = fn;
    w->arg = arg;
    w->pending = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return true;
}

void rc_worker_wait(recur_session *s)
{
    struct rc_worker *w = s->worker;
    pthread_mutex_lock(&w->mu);
    while (w->pending) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void rc_worker_stop(recur_session *s)
{
    struct rc_worker *w = s->worker;
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
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
