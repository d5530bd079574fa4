/*
 * rnn_impl.h - private structures of cells and RNN loops.
 *
 * A cell knows its TensorFlow naming (base scope name, variables) and how to add one step of
 * ops. An RNN loop op runs a step sub-graph (a loop frame) over time; for built-in cells the
 * same op can instead run a fused whole-sequence kernel described by an rc_fused spec.
 */
#ifndef RECUR_RNN_IMPL_H
#define RECUR_RNN_IMPL_H

#include "ops/ops.h"

typedef enum rc_cell_kind {
    RC_CELL_BASIC_RNN,
    RC_CELL_BASIC_LSTM,
    RC_CELL_LSTM,
    RC_CELL_GRU,
    RC_CELL_GRU_V2,
    RC_CELL_MULTI,
    RC_CELL_DROPOUT,
    RC_CELL_RESIDUAL,
    RC_CELL_CUSTOM,
} rc_cell_kind;

struct recur_cell {
    rc_cell_kind kind;
    recur_graph *g;
    const char *base_name;       /* interned */
    const char *class_name;      /* "BasicLSTMCell" (zero-state scope names) */
    int64_t units, num_proj;
    recur_activation act;
    float forget_bias;
    bool state_tuple;            /* LSTM state_is_tuple (MultiRNNCell: tuple of states) */
    bool peepholes;
    double cell_clip, proj_clip; /* <= 0: none */
    recur_initializer init, bias_init;
    bool reuse;                  /* the cell's reuse=True */
    recur_dtype dtype;           /* variable dtype; 0 until the first call */
    /* bound on the first call */
    recur_scope *scope;
    bool built;
    int64_t input_depth;
    recur_tensor *vars[6];       /* by kind: see cells.c (kernel, bias, peepholes, projection) */
    int nvars;
    /* composites */
    recur_cell **cells;          /* MULTI: children; DROPOUT/RESIDUAL: cells[0] is the inner */
    int ncells;
    recur_dropout_opts dropout;
    recur_tensor *var_masks[3];  /* variational masks (input, state..., output) made on first call */
    recur_cell_def def;          /* CUSTOM */
};

/* Flattened state structure of a cell: number of tensors and the size of each. */
int rc_cell_state_count(const recur_cell *c);
int64_t rc_cell_state_size_at(const recur_cell *c, int i);
int64_t rc_cell_out_size(const recur_cell *c);

/* One step: cell(input, state) with TensorFlow's scope binding. Writes the new flattened
 * state; returns the output or NULL (error recorded). */
recur_tensor *rc_cell_call(recur_graph *g, recur_cell *cell, recur_tensor *input, recur_tensor *const *state,
                           recur_tensor **new_state);
/* Zero state shaped [batch, size] with the batch taken at run time from dim `dim` of `like`. */
bool rc_cell_zero_state_like(recur_graph *g, recur_cell *cell, recur_tensor *like, int dim, recur_dtype dt,
                             recur_tensor **out);

/* ------------------------------------------------------------------ fused descriptions */
typedef enum rc_fused_kind {
    RC_FUSED_NONE = 0,
    RC_FUSED_RNN,      /* BasicRNNCell */
    RC_FUSED_LSTM,     /* BasicLSTMCell and LSTMCell (peepholes, clip, projection) */
    RC_FUSED_GRU,      /* GRUCell (reset before the candidate matmul) */
    RC_FUSED_GRU_V2,   /* reset after the recurrent matmul */
} rc_fused_kind;

/* One fused layer: the cell's math and where its weights are among the loop op's inputs. */
typedef struct rc_fused_layer {
    rc_fused_kind kind;
    int64_t in, units, proj;     /* input depth, units, projection (0: none) */
    recur_activation act;
    float forget_bias;
    bool peepholes;
    float cell_clip, proj_clip;  /* 0: none */
    int w[6];                    /* loop-op input index of each weight (kind-specific order) */
    int nw;
    int state0;                  /* index of this layer's first state in the flattened state */
    int nstate;
    bool state_concat;           /* LSTM state_is_tuple=False: one [B, c|h] tensor */
} rc_fused_layer;

typedef struct rc_fused {
    int nlayers;                 /* 0: no fused path */
    bool batch_major;            /* x, dx, the outputs and their gradient are [B, T, .] */
    rc_fused_layer layers[8];
} rc_fused;

/* ------------------------------------------------------------------ the loop */
typedef struct rc_loop {
    rc_frame *frame;
    recur_tensor *x_in;          /* body input: x_t [B, D] */
    recur_tensor **state_in;     /* body inputs: state_t */
    recur_tensor *out;           /* body output [B, O] */
    recur_tensor **state_out;    /* body outputs: new state */
    int nstate;
    bool has_len;
    bool batch_major;            /* x [B, T, D] and outputs [B, T, O] (else [T, B, .]) */
    int first_capture;           /* loop-op input index of the first capture */
    int ncaptures;
    rc_fused fused;
    /* gradients: every RnnLoopGrad op built for this loop, and the union of the forward
     * tensors their bodies read (saved per step by a forward run that feeds one of them) */
    recur_op **grads;
    size_t ngrads, capgrads;
    recur_tensor **saved;
    size_t nsaved, capsaved;
} rc_loop;

/* The backward body of one RnnLoopGrad op. */
typedef struct rc_loop_grad {
    rc_loop *fwd;
    recur_op *fwd_op;
    rc_frame *frame;             /* backward frame (forward = fwd->frame) */
    recur_tensor *d_out_in;      /* body inputs: gradient of the step output ... */
    recur_tensor **d_state_in;   /* ... and of the new state */
    recur_tensor *d_x_out;       /* body outputs: gradient of x_t ... */
    recur_tensor **d_state_out;  /* ... of the old state ... */
    recur_tensor **d_cap_out;    /* ... and of each forward capture (NULL: none) */
    int first_bcap;              /* grad-op input index of the backward frame's captures */
} rc_loop_grad;

/* Per-session state of a forward loop op: the cached body plans and the per-step history a
 * gradient needs. */
/* Packed weights kept by a fused layer across runs (small-batch inference repacks nothing
 * while the session's variables stay unwritten). */
typedef struct rc_fused_cache {
    const float *kern; /* the kernel they were packed from */
    uint64_t epoch;    /* the session's variable epoch then */
    int64_t B;         /* the batch they were packed for (one sequence packs differently) */
    bool valid;
    float *mem;        /* the packed forms */
    size_t cap;        /* floats at mem */
} rc_fused_cache;

typedef struct rc_loop_state {
    struct rc_plan *plan, *train_plan;
    recur_array **hist;          /* steps x nsaved saved values (generic path) */
    size_t hist_cap;
    int hist_steps, hist_nsaved;
    float *fused_hist;           /* fused path: per-layer step records */
    size_t fused_cap;
    bool fused_ran;              /* the last forward run used the fused kernels */
    int64_t steps;               /* steps run by the last forward */
    rc_arena scratch;            /* fused-kernel scratch */
    rc_fused_cache cache[8];     /* per fused layer */
} rc_loop_state;

/* Loop-op input layout: [x_tm, (seq_len), init_state..., captures...]
 * outputs: [outputs_tm, final_state...] */

/* Shared by the loop and its gradient (loop.c). */
recur_tensor *rc_loop_var(recur_graph *g, recur_dtype dt, recur_shape s);
rc_loop_state *rc_loop_state_of(rc_kctx *k);
void rc_loop_release(rc_run *run, recur_tensor *t);
void rc_loop_abort_step(rc_run *run, const struct rc_plan *plan);
void rc_free_frame(void *p);
bool rc_grad_rnn(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx);

/* Build an RNN loop running `cell` over x: time-major [T, B, D], or batch-major [B, T, D] (the
 * outputs then [B, T, O] too: dynamic_rnn's default layout, without the two transposes
 * TensorFlow puts around its loop). init: nstate tensors. Returns the loop op (outputs as
 * above) or NULL. Name scope "while" is opened for the body. */
recur_op *rc_rnn_loop(recur_graph *g, recur_cell *cell, recur_tensor *x, recur_tensor *seq_len,
                      recur_tensor *const *init, int nstate, bool batch_major);

/* Fused whole-sequence kernels (fused.c). Forward: x [T, B, D] f32 ([B, T, D] when
 * spec->batch_major, and likewise `out` and, backward, dout and dx), len int [B] or NULL;
 * `final` holds the initial state on entry and the final state on exit; `out` [T, B, O] is
 * zero-filled by the caller; hist (rc_fused_hist_floats floats, or NULL when no gradient
 * follows) receives what the backward needs; scratch comes from the arena. */
size_t rc_fused_hist_floats(const rc_fused *spec, int64_t T, int64_t B);
recur_code rc_fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                            recur_array **final, recur_array *out, float *hist, rc_arena *scratch, rc_fused_cache *cache);
/* Backward. fwd_in: the forward loop op's input values (x_tm, len, init..., captures...); dcap[j]
 * is the gradient of capture j = fwd input first_capture + j (accumulated). dinit arrives
 * holding d_final_state and leaves holding the gradient of the initial state (bit i of
 * dinit_read clear: no one reads state i's; a layer none of whose are read skips the recurrent
 * product of its first step that serves only them); dx [T, B, D] is zero-filled by the caller,
 * or NULL when no one reads it (its product is then skipped). hist_free: no one reads the
 * history after this backward, which may then write over it. */
recur_code rc_fused_backward(rc_kctx *k, const rc_fused *spec, float *hist, bool hist_free, recur_array *const *fwd_in,
                             const recur_array *len, recur_array *const *init, const recur_array *dout, recur_array *dx,
                             recur_array **dinit, uint32_t dinit_read, recur_array **dcap, int first_capture,
                             rc_arena *scratch);

/* Tests of the two-thread recurrences (fused.c): rc_fused_test_stall makes the thread running
 * part `part` (0 or 1) sleep `us` microseconds before each of its steps, so that the other runs
 * out of rows first and takes some of the slow one's over (part -1: no stall; process-wide);
 * rc_fused_tiles_taken counts the row tiles taken over so far, in all sessions, and
 * rc_fused_chunks_taken the chunks of one sequence's input projection that the thread not
 * owning their columns computed. */
void rc_fused_test_stall(int part, unsigned us);
uint64_t rc_fused_tiles_taken(void);
uint64_t rc_fused_chunks_taken(void);

#endif
