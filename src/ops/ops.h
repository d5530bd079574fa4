/*
 * ops.h - the op table: for every op type its TensorFlow type name, a shape function, a fast
 * kernel, a naive reference kernel and a gradient builder. Families live in src/ops/<family>.c
 * (and src/rnn, src/train for loop and optimizer ops); op_table.c lists every op once.
 */
#ifndef RECUR_OPS_H
#define RECUR_OPS_H

#include "recur_impl.h"

/* X(enum suffix, TensorFlow op type, descriptor symbol) */
#define RC_OP_LIST(X)                                                                          \
    X(PLACEHOLDER, "Placeholder", placeholder)                                                 \
    X(CONST, "Const", constant)                                                                \
    X(VARIABLE, "VariableV2", variable)                                                        \
    X(VAR_INIT, "Assign", var_init)                                                            \
    X(ASSIGN, "Assign", assign)                                                                \
    X(ASSIGN_ADD, "AssignAdd", assign_add)                                                     \
    X(ASSIGN_SUB, "AssignSub", assign_sub)                                                     \
    X(IDENTITY, "Identity", identity)                                                          \
    X(CHECK_NUMERICS, "CheckNumerics", check_numerics)                                         \
    X(STOP_GRADIENT, "StopGradient", stop_gradient)                                            \
    X(NOOP, "NoOp", noop)                                                                      \
    X(MATMUL, "MatMul", matmul)                                                                \
    X(ADD, "AddV2", add)                                                                       \
    X(SUB, "Sub", sub)                                                                         \
    X(MUL, "Mul", mul)                                                                         \
    X(DIV, "RealDiv", div)                                                                     \
    X(MAXIMUM, "Maximum", maximum)                                                             \
    X(MINIMUM, "Minimum", minimum)                                                             \
    X(ADD_N, "AddN", add_n)                                                                    \
    X(BIAS_ADD, "BiasAdd", bias_add)                                                           \
    X(NEG, "Neg", neg)                                                                         \
    X(EXP, "Exp", exp)                                                                         \
    X(LOG, "Log", log)                                                                         \
    X(SQRT, "Sqrt", sqrt)                                                                      \
    X(SQUARE, "Square", square)                                                                \
    X(ABS, "Abs", abs)                                                                         \
    X(SIGN, "Sign", sign)                                                                      \
    X(SIGMOID, "Sigmoid", sigmoid)                                                             \
    X(TANH, "Tanh", tanh)                                                                      \
    X(RELU, "Relu", relu)                                                                      \
    X(CLIP, "ClipByValue", clip)                                                               \
    X(SOFTMAX, "Softmax", softmax)                                                             \
    X(LOG_SOFTMAX, "LogSoftmax", log_softmax)                                                  \
    X(LESS, "Less", less)                                                                      \
    X(GREATER_EQUAL, "GreaterEqual", greater_equal)                                            \
    X(EQUAL, "Equal", equal)                                                                   \
    X(SELECT, "SelectV2", select)                                                              \
    X(CONCAT, "ConcatV2", concat)                                                              \
    X(SPLIT, "Split", split)                                                                   \
    X(SLICE, "Slice", slice)                                                                   \
    X(SLICE_GRAD, "SliceGrad", slice_grad)                                                     \
    X(RESHAPE, "Reshape", reshape)                                                             \
    X(TRANSPOSE, "Transpose", transpose)                                                       \
    X(EXPAND_DIMS, "ExpandDims", expand_dims)                                                  \
    X(PACK, "Pack", pack)                                                                      \
    X(UNPACK, "Unpack", unpack)                                                                \
    X(SUM, "Sum", sum)                                                                         \
    X(MEAN, "Mean", mean)                                                                      \
    X(MAX, "Max", max)                                                                         \
    X(ARGMAX, "ArgMax", argmax)                                                                \
    X(CAST, "Cast", cast)                                                                      \
    X(GATHER, "GatherV2", gather)                                                              \
    X(REVERSE_SEQUENCE, "ReverseSequence", reverse_sequence)                                   \
    X(REVERSE, "ReverseV2", reverse)                                                           \
    X(FILL, "Fill", fill)                                                                      \
    X(ZEROS_LIKE, "ZerosLike", zeros_like)                                                     \
    X(ONES_LIKE, "OnesLike", ones_like)                                                        \
    X(SEQUENCE_MASK, "SequenceMask", sequence_mask)                                            \
    X(RANDOM_UNIFORM, "RandomUniform", random_uniform)                                         \
    X(RANDOM_NORMAL, "RandomStandardNormal", random_normal)                                    \
    X(SUM_TO_SHAPE, "SumToShape", sum_to_shape)                                                \
    X(BROADCAST_LIKE, "BroadcastLike", broadcast_like)                                         \
    X(SIGMOID_GRAD, "SigmoidGrad", sigmoid_grad)                                               \
    X(TANH_GRAD, "TanhGrad", tanh_grad)                                                        \
    X(RELU_GRAD, "ReluGrad", relu_grad)                                                        \
    X(UNSORTED_SEGMENT_SUM, "UnsortedSegmentSum", unsorted_segment_sum)                        \
    X(ZEROS_SHAPED, "ZerosShaped", zeros_shaped)                                               \
    X(DROPOUT, "Dropout", dropout)                                                             \
    X(DROPOUT_MASK, "DropoutMask", dropout_mask)                                               \
    X(LOOP_VAR, "LoopVar", loop_var)                                                           \
    X(RNN, "RnnLoop", rnn)                                                                     \
    X(RNN_GRAD, "RnnLoopGrad", rnn_grad)                                                       \
    X(INDEXED_SLICES, "IndexedSlices", indexed_slices)                                         \
    X(XENT, "SoftmaxCrossEntropyWithLogits", xent)                                             \
    X(SPARSE_XENT, "SparseSoftmaxCrossEntropyWithLogits", sparse_xent)                         \
    X(SIGMOID_XENT, "SigmoidCrossEntropyWithLogits", sigmoid_xent)                             \
    X(FLOOR, "Floor", floor)                                                                   \
    X(MAX_GRAD, "MaxGrad", max_grad)                                                           \
    X(REDUCE_GRAD, "ReduceGrad", reduce_grad)                                                  \
    X(APPLY_GD, "ApplyGradientDescent", apply_gd)                                              \
    X(APPLY_MOMENTUM, "ApplyMomentum", apply_momentum)                                         \
    X(APPLY_ADAM, "ApplyAdam", apply_adam)                                                     \
    X(APPLY_ADAGRAD, "ApplyAdagrad", apply_adagrad)                                            \
    X(APPLY_RMSPROP, "ApplyRMSProp", apply_rmsprop)

typedef enum rc_op_type {
    RC_OP_INVALID = 0,
#define RC_OP_ENUM_(e, tf, sym) RC_OP_##e,
    RC_OP_LIST(RC_OP_ENUM_)
#undef RC_OP_ENUM_
    RC_OP_COUNT
} rc_op_type;

/* ------------------------------------------------------------------ kernels */
typedef struct rc_run rc_run; /* a session run in progress (exec/) */

typedef struct rc_kctx {
    rc_run *run;
    recur_op *op;
    recur_array **in;  /* ninputs values (borrowed) */
    recur_array **out; /* noutputs slots the kernel fills through rc_kout */
    recur_status *st;
} rc_kctx;

typedef recur_code (*rc_kernel_fn)(rc_kctx *k);
typedef bool (*rc_shape_fn)(recur_graph *g, recur_op *op);
/* dy[i]: gradient flowing into output i (NULL: none). Writes dx[j] for input j (NULL: none). */
typedef bool (*rc_grad_fn)(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx);

enum {
    RC_OPF_STATEFUL = 1 << 0,   /* reads/writes session state or randomness */
    RC_OPF_NO_GRAD = 1 << 1,    /* not differentiable (integer/bool outputs, sources, ...) */
    RC_OPF_FORWARDS = 1 << 2,   /* output 0 may alias input 0 (no copy) */
    RC_OPF_GRAD_ONLY = 1 << 3,  /* built only by gradients; second derivatives unsupported */
    RC_OPF_REF_INPUT = 1 << 4,  /* input 0 is a variable written, not read (may be uninitialised) */
};

typedef struct rc_op_def {
    const char *type;      /* TensorFlow op type */
    const char *name;      /* default op name (NULL: type) */
    int min_inputs, max_inputs; /* max -1: variadic */
    unsigned flags;
    rc_shape_fn shape;
    rc_kernel_fn forward;  /* fast kernel */
    rc_kernel_fn reference;/* naive kernel; NULL when forward is the naive one */
    rc_grad_fn grad;       /* NULL only with RC_OPF_NO_GRAD */
    /* May this op's kernel run on another thread next to another kernel right now? (It must then
     * touch only its own inputs, outputs, state and scratch.) NULL: never. */
    bool (*concurrent)(rc_run *run, recur_op *op);
} rc_op_def;

extern const rc_op_def *const rc_op_table[RC_OP_COUNT];
const rc_op_def *rc_op_def_of(int type);

/* Allocate output i of the running kernel (uninitialised data). NULL on OOM (status set). */
recur_array *rc_kout(rc_kctx *k, int i, recur_dtype dt, recur_shape shape);
/* Output i is input j (no copy; the run keeps a reference). */
void rc_kforward(rc_kctx *k, int i, int j);
/* Report a kernel failure: the message, then "\n\t [[node NAME]]". Returns the code. */
recur_code rc_kerr(rc_kctx *k, recur_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Threads the run may use for this kernel (>= 1; 1 while it runs next to another kernel). */
int rc_kthreads(rc_kctx *k);
/* fn(arg, 0) and fn(arg, 1), the second on the session's worker thread when the kernel may use
 * two threads (otherwise both here, in turn); returns when both are done. The two parts must
 * touch disjoint memory. k may be NULL (sequential). */
void rc_kparallel2(rc_kctx *k, void (*fn)(void *arg, int part), void *arg);
/* The same, but only when the two parts really run at once (they may wait for each other);
 * false, having run nothing, otherwise. */
bool rc_kparallel2_together(rc_kctx *k, void (*fn)(void *arg, int part), void *arg);
/* One turn of a loop that waits for the other thread of rc_kparallel2_together (or the
 * worker): a pause and, from turn RC_SPIN_YIELD on (*turns counts them, from 0), sched_yield
 * as well. When the scheduler has put both threads on one core, the waiting thread then hands
 * the core over instead of spinning out its time slice while the thread it waits for cannot
 * run; on separate cores a yield with nothing else to run returns at once. */
#define RC_SPIN_YIELD 1024 /* about 25 us of pauses here: longer than a step's usual wait */
void rc_spin_turn(unsigned *turns);
/* fn over [0, n): as [0, n/2) and [n/2, n) on two threads when n >= min_n and the kernel may
 * use two, otherwise as one call fn(arg, 0, n). The halves must touch disjoint memory; a result
 * that must not depend on the thread count must not depend on where [0, n) is cut. */
void rc_kfor2(rc_kctx *k, int64_t n, int64_t min_n, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg);
/* The session's variable-write count: unchanged between two calls means no variable of the
 * session was written in between (for kernels that keep data derived from weights). */
uint64_t rc_kvar_epoch(rc_kctx *k);
/* Whether output i will be read: by a later op of the run, as a fetch, or by check_numerics.
 * A kernel may leave an output no one reads unfilled (after rc_kout, so that it exists). */
bool rc_kout_needed(rc_kctx *k, int i);
/* Whether the session asked for reference kernels. */
bool rc_kreference(rc_kctx *k);
/* Per-op persistent state in the session (random generators, loop plans), freed with the
 * session by `free_fn` (rc_free when NULL). */
void **rc_kstate(rc_kctx *k);
void rc_kstate_set_free(rc_kctx *k, void (*free_fn)(void *));
/* Scratch memory of at least `bytes` kept by the session for this op across runs (no
 * allocation once warm); uses the op's state slot, so not for ops that keep other state.
 * Contents are undefined on entry. NULL on OOM. */
void *rc_kscratch(rc_kctx *k, size_t bytes);

/* ------------------------------------------------------------------ shared shape helpers */
/* NumPy broadcast of two static shapes; false (and an error naming op) when incompatible. */
bool rc_broadcast_shape(recur_graph *g, recur_op *op, recur_shape a, recur_shape b, recur_shape *out);
bool rc_broadcast_runtime(recur_shape a, recur_shape b, recur_shape *out);
/* Normalise an axis against a rank (negative counts from the end); false when out of range. */
bool rc_norm_axis(int axis, int rank, int *out);
/* The op's display "'<name>' (op: '<type>')" used in shape errors. */
const char *rc_op_label(const recur_op *op, char *buf, size_t cap);
/* Record TensorFlow's shape error: "Dimensions must be equal, but are 3 and 4 for '{{node
 * MatMul}} = MatMul[...]' with input shapes: [2,3], [4,5]." */
bool rc_shape_error(recur_graph *g, recur_op *op, const char *what);

/* ------------------------------------------------------------------ gradient helpers */
/* Sum `grad` down to the runtime shape of `like` (undoing broadcasting). */
recur_tensor *rc_sum_to(recur_graph *g, recur_tensor *grad, recur_tensor *like);

/* ------------------------------------------------------------------ typed loops */
#define RC_DISPATCH_NUM(dt, MACRO)                                                             \
    switch (dt) {                                                                              \
    case RECUR_F32: MACRO(float); break;                                                       \
    case RECUR_F64: MACRO(double); break;                                                      \
    case RECUR_I32: MACRO(int32_t); break;                                                     \
    case RECUR_I64: MACRO(int64_t); break;                                                     \
    case RECUR_BOOL: MACRO(bool); break;                                                       \
    default: break;                                                                            \
    }

#endif /* RECUR_OPS_H */
