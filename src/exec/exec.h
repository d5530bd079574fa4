/*
 * exec.h - private interface of the executor: sessions, plans, runs and the buffer pool.
 */
#ifndef RECUR_EXEC_H
#define RECUR_EXEC_H

#include "ops/ops.h"
#include <stdatomic.h>

/* A list of ops to run in order plus, per tensor they produce or read, how many times the list
 * reads it (so each buffer is released after its last reader). */
typedef struct rc_plan {
    recur_op **ops;
    int nops;
    int *use_ids;         /* tensors read by the plan (or fetched) ... */
    int *use_counts;      /* ... and how many times */
    int nuses;
    /* the signature this plan answers (top-level plans only) */
    recur_tensor **feeds;
    int nfeeds;
    recur_tensor **fetches;
    int nfetches;
    recur_op **targets;
    int ntargets;
    uint64_t ctrl_version;
    unsigned char *has_op;  /* by op id (ids below nops_seen): op is in the plan */
    size_t nops_seen;
    /* concurrency: partner[i] = j > i when ops i and j may run at the same time (every input
     * of j is ready before i starts); done marks j once it ran with i (reset every exec) */
    int *partner;
    unsigned char *done;
} rc_plan;

/* Is `op` run by `plan`? */
bool rc_plan_contains(const rc_plan *plan, const recur_op *op);

#include <pthread.h>

/* Size-bucketed free lists of arrays so a steady-state loop allocates nothing. */
typedef struct rc_pool_bucket {
    size_t bytes;
    recur_array **items;
    size_t n, cap;
} rc_pool_bucket;
typedef struct rc_pool {
    rc_pool_bucket *buckets; /* sorted by bytes */
    size_t n, cap;
    size_t held_bytes;
    pthread_mutex_t lock;    /* two kernels may allocate at once (worker.c) */
} rc_pool;

struct recur_session {
    recur_graph *g;
    recur_session_opts opts;
    bool closed;
    bool reference;           /* run reference kernels (tests) */
    recur_array **vars;       /* by rc_variable index */
    size_t capvars;
    void **op_state;          /* by op id: persistent kernel state */
    void (**op_state_free)(void *);
    size_t capop_state;
    rc_plan **plans;
    size_t nplans, capplans;
    rc_pool pool;
    int threads;
    struct rc_worker *worker; /* the second thread (started on first use) */
    uint64_t run_count;       /* runs started (step number for messages) */
    uint64_t pairs_run;       /* pairs of ops run side by side (tests) */
    _Atomic uint64_t var_epoch; /* bumped whenever a variable may have been written */
    struct rc_profile *profile; /* per op type kernel time, when RECUR_PROFILE is set */
    recur_array **run_vals;   /* reused run tables */
    int *run_remaining;
    size_t run_cap;
};

struct rc_run {
    recur_session *s;
    recur_array **vals;       /* by tensor id */
    int *remaining;           /* by tensor id */
    int ntensors;
    recur_status *st;
    const rc_plan *plan;      /* the top-level plan being run */
    bool concurrent;          /* two kernels are running: no nested parallelism */
};

/* worker.c: run fn(arg) on the session's worker thread (false if it cannot be started: run it
 * yourself); wait for it; stop the thread. */
bool rc_worker_start(recur_session *s, void (*fn)(void *), void *arg);
void rc_worker_wait(recur_session *s);
void rc_worker_stop(recur_session *s);
/* Cores the calling thread may run on (its affinity mask; else the cores online; >= 1). */
int rc_usable_cpus(void);
/* Make the BLAS single-threaded for the duration of a run; returns what to restore. */
/* Flush denormal floats to zero on this thread (TensorFlow's ScopedFlushDenormal: a denormal
 * operand costs ~100 cycles on x86, and late in training gradients are full of them); returns
 * the previous state for rc_fp_restore. */
unsigned rc_fp_flush_denormals(void);
void rc_fp_restore(unsigned old);
int rc_blas_single_thread(void);
void rc_blas_restore(int n);

/* Allocate a run-time array from the pool (refs = 1). NULL on OOM. */
recur_array *rc_pool_get(rc_pool *p, recur_dtype dt, recur_shape shape);
/* Drop one run-time reference; pooled arrays return to the pool at zero. */
void rc_release(rc_pool *p, recur_array *a);
void rc_pool_init(rc_pool *p);
void rc_pool_free(rc_pool *p);

/* Build the plan running `ops_wanted` (targets) and producing `fetches`, stopping at `feeds`
 * and at tensors for which `stop(t)` is true. Top-level only: ops inside loop frames are
 * excluded unless `frame` is that frame. NULL on OOM or error (status set). */
rc_plan *rc_plan_build(recur_graph *g, rc_frame *frame, recur_tensor *const *feeds, int nfeeds,
                       recur_tensor *const *fetches, int nfetches, recur_op *const *targets,
                       int ntargets, recur_status *st);
void rc_plan_free(rc_plan *p);

/* Run the plan's ops in order on `run`; values of feeds must already be in run->vals. Adds the
 * plan's uses to run->remaining first. Returns the status code. */
recur_code rc_plan_exec(rc_run *run, const rc_plan *plan);
/* Run one op. */
recur_code rc_exec_op(rc_run *run, recur_op *op);
/* Store a value for tensor t (taking one reference). */
void rc_run_set(rc_run *run, recur_tensor *t, recur_array *a);
/* Drop the run's reference to tensor t's value. */
void rc_run_drop(rc_run *run, recur_tensor *t);

/* Another op's persistent state in this session (NULL if none). */
void *rc_session_op_state(recur_session *s, const recur_op *op);

/* The session's storage slot of a variable (grows the table). NULL on OOM. */
recur_array **rc_session_var_slot(recur_session *s, const rc_variable *v);

#endif /* RECUR_EXEC_H */
