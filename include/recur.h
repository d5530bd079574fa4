/*
 * recur.h - the whole public API of recur, a C library for building, training, saving and
 * running recurrent neural networks with TensorFlow 1.x graph semantics.
 *
 * This header is the manual. Anything not declared here is not API.
 *
 * CONVENTIONS
 *  - Every name starts with `recur_` (types, functions) or `RECUR_` (macros, enum values).
 *  - All objects are opaque and created/destroyed through the API. Every `*_free(NULL)` is a
 *    no-op.
 *  - Graph builders (everything taking a `recur_graph *` first and returning a tensor, op,
 *    cell or variable) never report errors through their return value alone: on failure they
 *    return NULL and record the FIRST error in the graph's sticky status
 *    (`recur_graph_ok`, `recur_graph_code`, `recur_graph_message`). A builder given a NULL
 *    input, or called while the graph already holds an error, returns NULL without a new
 *    message, so a whole model can be built and checked once. A failed builder leaves the
 *    graph as it was (no half-made nodes, scope stack unchanged).
 *  - Everything that runs or does I/O takes a `recur_status *` LAST. It is cleared on success
 *    and holds a code and a message naming what was wrong on failure. Passing NULL for the
 *    status is allowed; the error is then only visible through the return value.
 *  - Ownership is stated per function: "new" (caller frees), "borrowed" (valid as long as its
 *    owner, usually the graph), "copied" (the library keeps its own copy of your data).
 *  - Arrays are dense and row-major (C order). Shapes use int64_t dimensions; -1 means a
 *    dimension unknown until run time; rank -1 means an unknown rank.
 *  - Bad input never aborts the process. `abort` is reserved for broken internal invariants.
 *  - Thread safety: distinct graphs and sessions may be used from distinct threads freely.
 *    One graph or one session must not be used by two threads at once.
 *
 * A WORKED EXAMPLE (scopes and get_variable; see examples/ for complete programs)
 *
 *     recur_graph *g = recur_graph_new();
 *     recur_variable_scope_push(g, "layer1", RECUR_AUTO_REUSE);
 *     recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(10, 4), NULL);  // layer1/w
 *     recur_tensor *w2 = recur_get_variable(g, "w", RECUR_SHAPE(10, 4), NULL); // same variable
 *     recur_variable_scope_pop(g);
 *     recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
 *     recur_get_variable(g, "w", RECUR_SHAPE(10, 4), NULL);
 *     // -> NULL; recur_graph_message(g) starts with
 *     // "Variable layer1/w already exists, disallowed. Did you mean to set reuse=True or
 *     //  reuse=tf.AUTO_REUSE in VarScope? Originally defined at: ..."
 */
#ifndef RECUR_H
#define RECUR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RECUR_API __attribute__((visibility("default")))
#else
#define RECUR_API
#endif

#define RECUR_VERSION_MAJOR 0
#define RECUR_VERSION_MINOR 1
#define RECUR_VERSION_PATCH 0
/* "0.1.0". Borrowed, static. */
RECUR_API const char *recur_version(void);

/* ============================================================================================
 * Status codes. One list; the enum, `recur_code_name` and the docs come from it. Values follow
 * TensorFlow's error codes (RECUR_INVALID_ARGUMENT is what TensorFlow raises as ValueError);
 * RECUR_OUT_OF_MEMORY is recur's own and means an allocation failed.
 * ========================================================================================== */
#define RECUR_CODES(X)                                                                         \
    X(OK, 0, "ok")                                                                             \
    X(CANCELLED, 1, "cancelled")                                                               \
    X(UNKNOWN, 2, "unknown")                                                                   \
    X(INVALID_ARGUMENT, 3, "invalid argument")                                                 \
    X(DEADLINE_EXCEEDED, 4, "deadline exceeded")                                               \
    X(NOT_FOUND, 5, "not found")                                                               \
    X(ALREADY_EXISTS, 6, "already exists")                                                     \
    X(PERMISSION_DENIED, 7, "permission denied")                                               \
    X(RESOURCE_EXHAUSTED, 8, "resource exhausted")                                             \
    X(FAILED_PRECONDITION, 9, "failed precondition")                                           \
    X(ABORTED, 10, "aborted")                                                                  \
    X(OUT_OF_RANGE, 11, "out of range")                                                        \
    X(UNIMPLEMENTED, 12, "unimplemented")                                                      \
    X(INTERNAL, 13, "internal")                                                                \
    X(UNAVAILABLE, 14, "unavailable")                                                          \
    X(DATA_LOSS, 15, "data loss")                                                              \
    X(UNAUTHENTICATED, 16, "unauthenticated")                                                  \
    X(OUT_OF_MEMORY, 100, "out of memory")

typedef enum recur_code {
#define RECUR_CODE_ENUM_(name, value, text) RECUR_##name = value,
    RECUR_CODES(RECUR_CODE_ENUM_)
#undef RECUR_CODE_ENUM_
} recur_code;

/* "INVALID_ARGUMENT" etc.; "UNKNOWN_CODE" for values outside the list. Static. */
RECUR_API const char *recur_code_name(recur_code code);

/* A status: a code plus a message. */
typedef struct recur_status recur_status;

/* New status holding RECUR_OK. Returns NULL only when memory is exhausted. */
RECUR_API recur_status *recur_status_new(void);
RECUR_API void recur_status_free(recur_status *st);
RECUR_API recur_code recur_status_code(const recur_status *st); /* RECUR_OK for NULL */
RECUR_API bool recur_status_ok(const recur_status *st);         /* true for NULL */
/* The message ("" when OK). Borrowed: valid until the status is next changed or freed. */
RECUR_API const char *recur_status_message(const recur_status *st);
/* Set a code and a printf-style message (used by user-defined cells and callbacks). */
RECUR_API void recur_status_set(recur_status *st, recur_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
RECUR_API void recur_status_clear(recur_status *st);

/* ============================================================================================
 * Allocation. Every allocation recur makes goes through these hooks. Process-wide (like
 * sqlite3_config / uv_replace_allocator): set them before creating any recur object.
 * ========================================================================================== */
typedef struct recur_allocator {
    void *(*malloc_fn)(size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} recur_allocator;

/* Replace the allocator; NULL restores malloc/realloc/free. */
RECUR_API void recur_set_allocator(const recur_allocator *a);
/* Testing aid: make the n-th allocation from now (1-based) and every later one fail
 * (n <= 0 disables). Each failure surfaces as RECUR_OUT_OF_MEMORY. */
RECUR_API void recur_alloc_fail_after(long n);
/* Number of allocations made through the hooks since the process started. */
RECUR_API long recur_alloc_count(void);
/* Testing aid for the file system: make the n-th write-side operation from now (creating a
 * file, a write, an fsync, a rename or link) fail once with errno `err` (ENOSPC, EIO, ...; 0
 * means EIO); a failing write of more than one byte first writes half of them (a short write)
 * and the retry of the rest fails. n <= 0 disables. Saves that meet such a failure report it
 * and leave the previous checkpoint and state file as they were. */
RECUR_API void recur_io_fail_after(long n, int err);
/* Number of write-side file operations made since the process started. */
RECUR_API long recur_io_op_count(void);

/* ============================================================================================
 * Data types and shapes
 * ========================================================================================== */
/* Values equal TensorFlow's DataType enum, so they are stored as-is in checkpoints. */
typedef enum recur_dtype {
    RECUR_DTYPE_INVALID = 0,
    RECUR_F32 = 1,
    RECUR_F64 = 2,
    RECUR_I32 = 3,
    RECUR_STRING = 7, /* only in checkpoints read from disk */
    RECUR_I64 = 9,
    RECUR_BOOL = 10,
} recur_dtype;

/* TensorFlow's name: "float", "double", "int32", "int64", "bool", "string"; "invalid". */
RECUR_API const char *recur_dtype_name(recur_dtype dt);
/* Bytes per element (0 for invalid and string). */
RECUR_API size_t recur_dtype_size(recur_dtype dt);

#define RECUR_MAX_RANK 8
/* A shape by value. rank -1: unknown rank. dims[i] == -1: unknown dimension. */
typedef struct recur_shape {
    int rank;
    int64_t dims[RECUR_MAX_RANK];
} recur_shape;

#define RECUR_NARGS_(...) RECUR_NARGS_I_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define RECUR_NARGS_I_(a1, a2, a3, a4, a5, a6, a7, a8, n, ...) n
/* RECUR_SHAPE(-1, 20, 10): a rank-3 shape with an unknown first dimension. */
#define RECUR_SHAPE(...) ((recur_shape){RECUR_NARGS_(__VA_ARGS__), {__VA_ARGS__}})
/* A scalar (rank 0) and an unknown-rank shape. */
#define RECUR_SCALAR ((recur_shape){0, {0}})
#define RECUR_UNKNOWN_SHAPE ((recur_shape){-1, {0}})

/* Number of elements; -1 when any dimension (or the rank) is unknown. */
RECUR_API int64_t recur_shape_size(recur_shape s);
/* Formats as TensorFlow 1.x prints a TensorShape: "(60, 200)", "(200,)", "()", "(?, 5)",
 * "<unknown>". Writes at most `cap` bytes including the NUL; returns `buf`. */
RECUR_API char *recur_shape_str(recur_shape s, char *buf, size_t cap);

/* ============================================================================================
 * Arrays: concrete, dense, row-major data.
 * ========================================================================================== */
typedef struct recur_array recur_array;

/* New zero-filled array. All dims must be known and >= 0. New; NULL when the dtype or shape is
 * invalid, the size overflows, or memory is exhausted (`st` says which). */
RECUR_API recur_array *recur_array_new(recur_dtype dt, recur_shape shape, recur_status *st);
/* New array holding a copy of `data` (recur_shape_size(shape) elements of dt). */
RECUR_API recur_array *recur_array_from(recur_dtype dt, recur_shape shape, const void *data,
                                        recur_status *st);
/* Scalars. New. */
RECUR_API recur_array *recur_array_scalar_f32(float v, recur_status *st);
RECUR_API recur_array *recur_array_scalar_i32(int32_t v, recur_status *st);
/* Deep copy. New. */
RECUR_API recur_array *recur_array_copy(const recur_array *a, recur_status *st);
RECUR_API void recur_array_free(recur_array *a);
RECUR_API recur_dtype recur_array_dtype(const recur_array *a);
RECUR_API recur_shape recur_array_shape(const recur_array *a);
RECUR_API int recur_array_rank(const recur_array *a);
RECUR_API int64_t recur_array_dim(const recur_array *a, int i); /* -1 if i out of range */
RECUR_API int64_t recur_array_size(const recur_array *a);     /* elements */
RECUR_API size_t recur_array_nbytes(const recur_array *a);
/* The element buffer (row-major). Borrowed; valid until the array is freed. */
RECUR_API void *recur_array_data(recur_array *a);
RECUR_API const void *recur_array_cdata(const recur_array *a);
/* Typed views: NULL when the array is NULL or of another dtype. */
RECUR_API float *recur_array_f32(recur_array *a);
RECUR_API double *recur_array_f64(recur_array *a);
RECUR_API int32_t *recur_array_i32(recur_array *a);
RECUR_API int64_t *recur_array_i64(recur_array *a);
RECUR_API bool *recur_array_bool(recur_array *a);
/* String arrays (read from checkpoints): element i and its length. */
RECUR_API const char *recur_array_string(const recur_array *a, int64_t i, size_t *len);

/* ============================================================================================
 * Graphs, tensors and ops
 * ========================================================================================== */
typedef struct recur_graph recur_graph;
typedef struct recur_tensor recur_tensor; /* a symbolic value: one output of one op */
typedef struct recur_op recur_op;         /* a node of the graph */
typedef struct recur_scope recur_scope;   /* a captured variable scope */
typedef struct recur_cell recur_cell;     /* an RNN cell */

/* New empty graph. New; NULL when memory is exhausted. */
RECUR_API recur_graph *recur_graph_new(void);
/* Frees the graph and everything it owns (ops, tensors, scopes, cells, variables). Sessions on
 * it must be freed first. */
RECUR_API void recur_graph_free(recur_graph *g);

/* The sticky status. */
RECUR_API bool recur_graph_ok(const recur_graph *g);
RECUR_API recur_code recur_graph_code(const recur_graph *g);
/* Borrowed; "" when OK. */
RECUR_API const char *recur_graph_message(const recur_graph *g);
/* Forget the recorded error so building can continue (the failed builder left no trace). */
RECUR_API void recur_graph_clear_error(recur_graph *g);
/* Record an error from user code (e.g. a custom cell); keeps the first one. */
RECUR_API void recur_graph_set_error(recur_graph *g, recur_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The graph-level seed (tf.compat.v1.set_random_seed). Random ops combine it with their own op
 * seed exactly as TensorFlow does: graph seed set and op seed 0 -> op seed = the number of ops
 * made so far; only the op seed set -> graph seed 87654321; neither -> nondeterministic. */
RECUR_API void recur_graph_set_seed(recur_graph *g, int64_t seed);

/* Tensor accessors. Borrowed strings are valid as long as the graph. */
RECUR_API const char *recur_tensor_name(const recur_tensor *t); /* "layer1/MatMul:0" */
RECUR_API recur_dtype recur_tensor_dtype(const recur_tensor *t);
RECUR_API recur_shape recur_tensor_shape(const recur_tensor *t); /* static; -1 = unknown */
RECUR_API recur_op *recur_tensor_op(const recur_tensor *t);
RECUR_API recur_graph *recur_tensor_graph(const recur_tensor *t);
RECUR_API const char *recur_op_name(const recur_op *op); /* "layer1/MatMul" */
RECUR_API const char *recur_op_type(const recur_op *op); /* TensorFlow's type: "MatMul" */
RECUR_API int recur_op_num_outputs(const recur_op *op);
RECUR_API recur_tensor *recur_op_output(const recur_op *op, int i);
/* Lookup by name ("x:0" or "x" for its first output; op by "x"). Borrowed; NULL if absent. */
RECUR_API recur_tensor *recur_graph_tensor(const recur_graph *g, const char *name);
RECUR_API recur_op *recur_graph_op(const recur_graph *g, const char *name);
RECUR_API size_t recur_graph_num_ops(const recur_graph *g);
RECUR_API recur_op *recur_graph_op_at(const recur_graph *g, size_t i); /* creation order */

/* ---- name scopes (tf.name_scope) ----
 * Push opens a name scope for ops, uniquified like TensorFlow's Graph.unique_name:
 * "block", then "block_1", ... ; a name ending in "/" re-enters that exact scope; NULL or ""
 * returns to the root. Returns the full scope string with its trailing "/" ("" at root),
 * borrowed; NULL on error ("'<name>' is not a valid scope name"). */
RECUR_API const char *recur_name_scope_push(recur_graph *g, const char *name);
/* Pops the innermost scope, which must be a name scope ("Improper nesting of name_scope."). */
RECUR_API void recur_name_scope_pop(recur_graph *g);
/* The current name scope string ("" at root, otherwise with a trailing "/"). Borrowed. */
RECUR_API const char *recur_name_scope_current(const recur_graph *g);

/* ---- variable scopes (tf.compat.v1.variable_scope) ---- */
typedef enum recur_reuse {
    RECUR_REUSE_INHERIT = 0, /* reuse=None (and False): inherit from the enclosing scope */
    RECUR_REUSE = 1,         /* reuse=True */
    RECUR_AUTO_REUSE = 2,    /* reuse=tf.AUTO_REUSE: create if missing, share if present */
} recur_reuse;

/* Initializers, by value. Build them with the constructors below; kind 0 means "none given"
 * (fall back to the scope's initializer, then to TensorFlow's default). */
typedef enum recur_init_kind {
    RECUR_INIT_NONE = 0,
    RECUR_INIT_ZEROS,
    RECUR_INIT_ONES,
    RECUR_INIT_CONSTANT,          /* a: the value */
    RECUR_INIT_RANDOM_UNIFORM,    /* a: minval, b: maxval (exclusive) */
    RECUR_INIT_RANDOM_NORMAL,     /* a: mean, b: stddev */
    RECUR_INIT_TRUNCATED_NORMAL,  /* a: mean, b: stddev; redrawn beyond 2 stddev */
    RECUR_INIT_VARIANCE_SCALING,  /* a: scale, mode, distribution */
    RECUR_INIT_ORTHOGONAL,        /* a: gain */
    RECUR_INIT_VALUE,             /* value: a full array (copied when the variable is made) */
} recur_init_kind;

typedef enum recur_fan_mode { RECUR_FAN_IN = 0, RECUR_FAN_OUT = 1, RECUR_FAN_AVG = 2 } recur_fan_mode;
typedef enum recur_distribution {
    RECUR_DIST_TRUNCATED_NORMAL = 0,
    RECUR_DIST_UNTRUNCATED_NORMAL = 1,
    RECUR_DIST_UNIFORM = 2,
} recur_distribution;

typedef struct recur_initializer {
    recur_init_kind kind;
    double a, b;
    recur_fan_mode mode;
    recur_distribution distribution;
    int64_t seed;              /* op seed; 0 = none (see recur_graph_set_seed) */
    const recur_array *value;  /* RECUR_INIT_VALUE only; borrowed until the variable is made */
} recur_initializer;

RECUR_API recur_initializer recur_zeros_initializer(void);
RECUR_API recur_initializer recur_ones_initializer(void);
RECUR_API recur_initializer recur_constant_initializer(double value);
RECUR_API recur_initializer recur_random_uniform_initializer(double minval, double maxval, int64_t seed);
RECUR_API recur_initializer recur_random_normal_initializer(double mean, double stddev, int64_t seed);
RECUR_API recur_initializer recur_truncated_normal_initializer(double mean, double stddev, int64_t seed);
RECUR_API recur_initializer recur_variance_scaling_initializer(double scale, recur_fan_mode mode,
                                                               recur_distribution dist, int64_t seed);
RECUR_API recur_initializer recur_glorot_uniform_initializer(int64_t seed);
RECUR_API recur_initializer recur_glorot_normal_initializer(int64_t seed);
RECUR_API recur_initializer recur_orthogonal_initializer(double gain, int64_t seed);
RECUR_API recur_initializer recur_value_initializer(const recur_array *value);

/* Options of a variable scope; zero-initialise and set what you need. */
typedef struct recur_scope_opts {
    recur_reuse reuse;
    const char *default_name;     /* used when the name is NULL: "d", then "d_1", ... */
    recur_initializer initializer; /* inherited by get_variable inside the scope */
    recur_dtype dtype;            /* 0: inherit (float32 at the root) */
    bool no_name_scope;           /* auxiliary_name_scope=False: do not open a name scope */
} recur_scope_opts;

/* Enter `variable_scope(name, reuse=reuse)`. Also opens a name scope (uniquified: "layer1",
 * then "layer1_1" on re-entry). Returns the new scope (borrowed; keep it to re-enter later),
 * NULL on error. */
RECUR_API recur_scope *recur_variable_scope_push(recur_graph *g, const char *name, recur_reuse reuse);
/* The full form: name may be NULL when opts->default_name is set. */
RECUR_API recur_scope *recur_variable_scope_push_opts(recur_graph *g, const char *name,
                                                      const recur_scope_opts *opts);
/* Re-enter a captured scope object (variable_scope(scope)): same variable-scope name wherever
 * it is entered from; reuse is `opts->reuse` if set, else the captured scope's own. */
RECUR_API recur_scope *recur_variable_scope_enter(recur_graph *g, recur_scope *scope,
                                                  const recur_scope_opts *opts);
/* Pops the innermost scope, which must be a variable scope
 * ("Improper nesting of variable_scope."). */
RECUR_API void recur_variable_scope_pop(recur_graph *g);
/* The current variable scope (the root scope at top level). Borrowed. */
RECUR_API recur_scope *recur_variable_scope_current(recur_graph *g);
/* scope.reuse_variables(): from now on the scope (and scopes opened in it) reuse. */
RECUR_API void recur_scope_reuse_variables(recur_scope *scope);
RECUR_API const char *recur_scope_name(const recur_scope *scope); /* "layer1/rnn"; "" = root */
RECUR_API recur_reuse recur_scope_reuse(const recur_scope *scope);
/* The name scope opened when the scope was made ("layer1/"). Borrowed. */
RECUR_API const char *recur_scope_original_name_scope(const recur_scope *scope);

/* ---- get_variable ---- */
typedef struct recur_variable_opts {
    recur_dtype dtype;             /* 0: the scope's dtype (float32 by default) */
    recur_initializer initializer; /* kind 0: scope initializer, then glorot_uniform / zeros */
    bool not_trainable;            /* trainable=False: only in GLOBAL_VARIABLES */
} recur_variable_opts;

/* tf.compat.v1.get_variable(name, shape, ...): create `<scope>/<name>` or share it, by the
 * scope's reuse mode. Returns the variable's tensor (borrowed; usable as an op input, which
 * reads the variable), NULL on error with TensorFlow's message, plus where the variable was
 * first defined ("already exists") or the nearest existing names ("does not exist").
 * `shape` RECUR_UNKNOWN_SHAPE is TensorFlow's shape=None (shares whatever shape is stored; a
 * value initializer gives the shape on creation). `opts` may be NULL. The macro records the
 * caller's file, line and function (variadic so that compound-literal options pass through). */
#define recur_get_variable(g, name, ...) /* (g, name, shape, opts) */                        \
    recur_get_variable_at((g), (name), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_tensor *recur_get_variable_at(recur_graph *g, const char *name, const char *file, int line,
                                              const char *func, recur_shape shape,
                                              const recur_variable_opts *opts);

/* Variable accessors (NULL/false for tensors that are not variables). */
RECUR_API bool recur_is_variable(const recur_tensor *t);
RECUR_API const char *recur_variable_name(const recur_tensor *var); /* "layer1/w" (op name) */
RECUR_API bool recur_variable_trainable(const recur_tensor *var);
/* Where the variable was first created: file, line, function. Borrowed. */
RECUR_API const char *recur_variable_site(const recur_tensor *var, int *line, const char **func);

/* ---- collections ---- */
#define RECUR_GLOBAL_VARIABLES "variables"
#define RECUR_TRAINABLE_VARIABLES "trainable_variables"
/* tf.get_collection(key, scope): the items in creation order whose name (e.g. "layer1/w:0")
 * matches `scope` as a regular expression anchored at the start only (NULL: all). Writes up to
 * `cap` items into `out` (may be NULL with cap 0) and returns the total count; -1 on a bad
 * regular expression (recorded in the graph status). */
RECUR_API long recur_get_collection(recur_graph *g, const char *key, const char *scope,
                                    recur_tensor **out, size_t cap);
/* Add a tensor to a named collection (tf.add_to_collection). */
RECUR_API void recur_add_to_collection(recur_graph *g, const char *key, recur_tensor *t);

/* ============================================================================================
 * Ops. Each builder checks dtypes and static shapes and, on a mismatch, records an error that
 * names the op and both shapes. Unless stated, the new op gets TensorFlow's default name
 * (e.g. "MatMul", "MatMul_1") inside the current name scope.
 * ========================================================================================== */

/* A value to be fed at run time. `name` may be NULL ("Placeholder"). */
RECUR_API recur_tensor *recur_placeholder(recur_graph *g, recur_dtype dt, recur_shape shape,
                                          const char *name);
/* A constant holding a copy of `value` (copied). `name` may be NULL ("Const"). */
RECUR_API recur_tensor *recur_constant(recur_graph *g, const recur_array *value, const char *name);
RECUR_API recur_tensor *recur_scalar_f32(recur_graph *g, float v);
RECUR_API recur_tensor *recur_scalar_i32(recur_graph *g, int32_t v);
/* Named identity: the usual way to give a computed value a name. */
RECUR_API recur_tensor *recur_identity(recur_graph *g, recur_tensor *x, const char *name);
/* Blocks gradients: the identity on the forward pass, zero gradient backward. */
RECUR_API recur_tensor *recur_stop_gradient(recur_graph *g, recur_tensor *x);
/* tf.debugging.check_numerics: x unchanged, but a run in which x holds a NaN or an infinity
 * fails with RECUR_INVALID_ARGUMENT, "<message> : Tensor had NaN values" (or "Inf", "Inf and
 * NaN"), naming the op. Its gradient is checked the same way. x must be float32 or float64.
 * (recur_session_opts.check_numerics checks every op's outputs instead.) */
RECUR_API recur_tensor *recur_check_numerics(recur_graph *g, recur_tensor *x, const char *message);

/* Variables: read happens by using the variable tensor; these write it. Return the op's
 * output (the new value). */
RECUR_API recur_tensor *recur_assign(recur_graph *g, recur_tensor *var, recur_tensor *value);
RECUR_API recur_tensor *recur_assign_add(recur_graph *g, recur_tensor *var, recur_tensor *value);
RECUR_API recur_tensor *recur_assign_sub(recur_graph *g, recur_tensor *var, recur_tensor *value);

/* Linear algebra and element-wise math (NumPy broadcasting for binary ops). */
RECUR_API recur_tensor *recur_matmul(recur_graph *g, recur_tensor *a, recur_tensor *b,
                                     bool transpose_a, bool transpose_b);
RECUR_API recur_tensor *recur_add(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_sub(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_mul(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_div(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_maximum(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_minimum(recur_graph *g, recur_tensor *a, recur_tensor *b);
/* Sum of n tensors of one shape (tf.add_n). */
RECUR_API recur_tensor *recur_add_n(recur_graph *g, recur_tensor *const *xs, int n);
/* x + bias along the last axis; bias is rank 1. */
RECUR_API recur_tensor *recur_bias_add(recur_graph *g, recur_tensor *x, recur_tensor *bias);
RECUR_API recur_tensor *recur_neg(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_exp(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_log(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_sqrt(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_square(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_abs(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_sigmoid(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_tanh(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_relu(recur_graph *g, recur_tensor *x);
/* Clip element-wise to [lo, hi] (tf.clip_by_value with scalar bounds). */
RECUR_API recur_tensor *recur_clip(recur_graph *g, recur_tensor *x, double lo, double hi);
/* Softmax / log-softmax over the last axis. */
RECUR_API recur_tensor *recur_softmax(recur_graph *g, recur_tensor *logits);
RECUR_API recur_tensor *recur_log_softmax(recur_graph *g, recur_tensor *logits);
/* Element-wise comparisons (bool results) and select (tf.where with three arguments). */
RECUR_API recur_tensor *recur_less(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_greater_equal(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_equal(recur_graph *g, recur_tensor *a, recur_tensor *b);
RECUR_API recur_tensor *recur_select(recur_graph *g, recur_tensor *cond, recur_tensor *a,
                                     recur_tensor *b);

/* Shape manipulation. Axes may be negative (counted from the end). */
RECUR_API recur_tensor *recur_concat(recur_graph *g, recur_tensor *const *xs, int n, int axis);
/* Split into n equal parts along axis; writes n tensors to out. Returns false on error. */
RECUR_API bool recur_split(recur_graph *g, recur_tensor *x, int n, int axis, recur_tensor **out);
/* begin/size per dimension (size -1: to the end). */
RECUR_API recur_tensor *recur_slice(recur_graph *g, recur_tensor *x, const int64_t *begin,
                                    const int64_t *size);
/* One dim of `shape` may be -1 (inferred). */
RECUR_API recur_tensor *recur_reshape(recur_graph *g, recur_tensor *x, recur_shape shape);
/* perm NULL reverses the axes. */
RECUR_API recur_tensor *recur_transpose(recur_graph *g, recur_tensor *x, const int *perm);
RECUR_API recur_tensor *recur_expand_dims(recur_graph *g, recur_tensor *x, int axis);
/* Stack n tensors of one shape along a new axis / unstack along an axis (writes dim(axis)
 * tensors, which must be known). */
RECUR_API recur_tensor *recur_stack(recur_graph *g, recur_tensor *const *xs, int n, int axis);
RECUR_API bool recur_unstack(recur_graph *g, recur_tensor *x, int axis, recur_tensor **out, int cap);
/* Reductions over the listed axes (NULL, 0: all axes). */
RECUR_API recur_tensor *recur_reduce_sum(recur_graph *g, recur_tensor *x, const int *axes, int naxes,
                                         bool keep_dims);
RECUR_API recur_tensor *recur_reduce_mean(recur_graph *g, recur_tensor *x, const int *axes, int naxes,
                                          bool keep_dims);
RECUR_API recur_tensor *recur_reduce_max(recur_graph *g, recur_tensor *x, const int *axes, int naxes,
                                         bool keep_dims);
/* int64 indices of the maximum along axis (ties: the first). */
RECUR_API recur_tensor *recur_argmax(recur_graph *g, recur_tensor *x, int axis);
RECUR_API recur_tensor *recur_cast(recur_graph *g, recur_tensor *x, recur_dtype dt);
/* params[indices] along axis 0 (embedding lookup); indices int32 or int64. An index outside
 * [0, dim0) fails the run with RECUR_INVALID_ARGUMENT naming it. */
RECUR_API recur_tensor *recur_gather(recur_graph *g, recur_tensor *params, recur_tensor *indices);
/* Reverse the first lengths[b] entries of each row b along seq_axis (tf.reverse_sequence). */
RECUR_API recur_tensor *recur_reverse_sequence(recur_graph *g, recur_tensor *x, recur_tensor *lengths,
                                               int seq_axis, int batch_axis);
/* Reverse along one axis (tf.reverse). */
RECUR_API recur_tensor *recur_reverse(recur_graph *g, recur_tensor *x, int axis);
/* A tensor of `shape` (which must be fully known, or given by a run-time int32 shape tensor via
 * recur_fill_like) filled with value. */
RECUR_API recur_tensor *recur_fill(recur_graph *g, recur_dtype dt, recur_shape shape, double value);
RECUR_API recur_tensor *recur_zeros_like(recur_graph *g, recur_tensor *x);
RECUR_API recur_tensor *recur_ones_like(recur_graph *g, recur_tensor *x);
/* float mask [B, maxlen]: 1 where t < lengths[b] (tf.sequence_mask). maxlen -1: max(lengths). */
RECUR_API recur_tensor *recur_sequence_mask(recur_graph *g, recur_tensor *lengths, int64_t maxlen,
                                            recur_dtype dt);
/* Inverted dropout: x / keep_prob * mask with mask ~ Bernoulli(keep_prob), a new mask every run
 * (tf.nn.dropout with keep_prob). keep_prob is a float scalar tensor in (0, 1]. */
RECUR_API recur_tensor *recur_dropout(recur_graph *g, recur_tensor *x, recur_tensor *keep_prob, int64_t seed);
/* Random values of a known shape. seed 0: see recur_graph_set_seed. */
RECUR_API recur_tensor *recur_random_uniform(recur_graph *g, recur_shape shape, double minval,
                                             double maxval, int64_t seed);
RECUR_API recur_tensor *recur_random_normal(recur_graph *g, recur_shape shape, double mean,
                                            double stddev, int64_t seed);
/* An op with no output that runs all `deps` (tf.group). Returns the op. */
RECUR_API recur_op *recur_group(recur_graph *g, recur_op *const *deps, int n, const char *name);
/* Make `op` run only after `dep` (control dependency). */
RECUR_API void recur_add_control_input(recur_graph *g, recur_op *op, recur_op *dep);

/* ============================================================================================
 * Sessions: variable values and runs.
 * ========================================================================================== */
typedef struct recur_session recur_session;

typedef enum recur_rnn_path {
    RECUR_RNN_AUTO = 0,  /* fused kernels for built-in cells, the step loop for others */
    RECUR_RNN_LOOP = 1,  /* always run the cell's step sub-graph (the reference path) */
    RECUR_RNN_FUSED = 2, /* like AUTO; named for clarity in tests */
} recur_rnn_path;

typedef struct recur_session_opts {
    int num_threads;        /* 0: 2; never more than the cores the process may run on when the
                             * session is made (at most 2 threads per session are used) */
    recur_rnn_path rnn_path;
    bool check_numerics;    /* stop at the first NaN/Inf produced by any op, naming it */
} recur_session_opts;

/* New session on `g` (which must be free of errors). opts may be NULL. New; NULL on error. The
 * graph must outlive the session; ops may still be added to the graph. */
RECUR_API recur_session *recur_session_new(recur_graph *g, const recur_session_opts *opts,
                                           recur_status *st);
RECUR_API void recur_session_free(recur_session *s);
/* Free the session's resources; later runs fail with FAILED_PRECONDITION. */
RECUR_API void recur_session_close(recur_session *s);

typedef struct recur_feed {
    recur_tensor *tensor;      /* usually a placeholder */
    const recur_array *value;  /* borrowed for the duration of the run */
} recur_feed;

/* Run: compute `fetches` (outputs written to `outputs[i]`, new arrays the caller frees; NULL on
 * failure) and run `targets` (ops run for their effect), given `feeds`. Only the ops needed
 * run. Errors: a missing feed ("You must feed a value for placeholder tensor 'x' with dtype
 * float and shape [?,20,10]"), a fed value of the wrong dtype or shape, an uninitialised
 * variable ("Attempting to use uninitialized value layer1/w"), a tensor of another graph, and
 * kernel failures (naming the op). While a run lasts, denormal floats are flushed to zero on
 * the threads running its kernels, as TensorFlow's executor does; the caller's floating-point
 * state is restored on return. Returns the status code. */
RECUR_API recur_code recur_session_run(recur_session *s, const recur_feed *feeds, int nfeeds,
                                       recur_tensor *const *fetches, recur_array **outputs,
                                       int nfetches, recur_op *const *targets, int ntargets,
                                       recur_status *st);
/* Run one target op with no feeds (e.g. the initializer). */
RECUR_API recur_code recur_session_run_target(recur_session *s, recur_op *target, recur_status *st);

/* An op that initialises every global variable (tf.global_variables_initializer). Borrowed. */
RECUR_API recur_op *recur_global_variables_initializer(recur_graph *g);
/* The same for a list of variables (tf.variables_initializer). */
RECUR_API recur_op *recur_variables_initializer(recur_graph *g, recur_tensor *const *vars, int n);

/* Direct access to a variable's value in a session (used to load weights). `value` is copied;
 * its dtype and shape must match the variable's. */
RECUR_API recur_code recur_session_set_variable(recur_session *s, recur_tensor *var,
                                                const recur_array *value, recur_status *st);
/* A copy of the variable's current value (new), NULL when uninitialised or on error. */
RECUR_API recur_array *recur_session_get_variable(recur_session *s, recur_tensor *var,
                                                  recur_status *st);
/* Whether the variable holds a value in this session. */
RECUR_API bool recur_session_variable_initialized(recur_session *s, recur_tensor *var);

/* ============================================================================================
 * RNN cells and RNN functions (tf.compat.v1.nn.rnn_cell, dynamic_rnn, ...).
 *
 * A cell binds its variable scope on its first call, in the variable scope current at that
 * moment, exactly as TensorFlow's cells: every later call of the same cell object re-enters that
 * scope and shares its variables, wherever it is called from (TensorFlow 1.2 and later; the
 * same object as fw and bw cell, or twice in a MultiRNNCell, therefore shares one set of
 * weights). Use a new cell object for new weights. Cells are owned by the graph.
 *
 * The functions that call cells (recur_dynamic_rnn, ..., recur_cell_call) are macros that pass
 * the caller's file, line and function to their *_at form, so that an "already exists" error
 * about a cell's variable says where in YOUR code the variable was first created.
 * ========================================================================================== */
typedef enum recur_activation {
    RECUR_ACT_TANH = 0, /* default */
    RECUR_ACT_SIGMOID,
    RECUR_ACT_RELU,
    RECUR_ACT_IDENTITY,
} recur_activation;

#define RECUR_MAX_STATE 32 /* flattened state tensors of one cell */

typedef struct recur_cell_opts {
    const char *name;              /* base scope name; NULL: TensorFlow's ("basic_lstm_cell") */
    recur_activation activation;
    float forget_bias;             /* LSTM; the default 1.0 is used when forget_bias_set is false */
    bool forget_bias_set;
    bool state_not_tuple;          /* LSTM state_is_tuple=False: one [B, 2H] state */
    recur_initializer initializer; /* LSTMCell initializer / GRU kernel_initializer */
    recur_initializer bias_initializer; /* GRU bias_initializer */
    bool reuse;                    /* the cell's reuse=True: bind variable_scope(base_name) */
    recur_dtype dtype;             /* variable dtype; 0: the dtype of the first input */
} recur_cell_opts;

typedef struct recur_lstm_opts {
    recur_cell_opts base;
    bool use_peepholes;
    double cell_clip;  /* > 0 to clip c to [-cell_clip, cell_clip] */
    int64_t num_proj;  /* > 0: project the output to num_proj units */
    double proj_clip;  /* > 0 to clip the projection */
} recur_lstm_opts;

/* BasicRNNCell(num_units). opts may be NULL. */
RECUR_API recur_cell *recur_basic_rnn_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts);
/* BasicLSTMCell(num_units, forget_bias=1.0, state_is_tuple=True, activation=tanh). */
RECUR_API recur_cell *recur_basic_lstm_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts);
/* LSTMCell with peepholes, clipping and projection. */
RECUR_API recur_cell *recur_lstm_cell(recur_graph *g, int64_t num_units, const recur_lstm_opts *opts);
/* GRUCell as TensorFlow's: reset applied to h before the candidate matmul. */
RECUR_API recur_cell *recur_gru_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts);
/* GRU with the reset gate applied after the recurrent matmul (Keras reset_after=True, PyTorch,
 * cuDNN). Scope "gru_cell_v2"; variables kernel [D,3H], recurrent_kernel [H,3H], bias [2,3H]
 * (input and recurrent biases), gate order z, r, h as in Keras. */
RECUR_API recur_cell *recur_gru_cell_v2(recur_graph *g, int64_t num_units, const recur_cell_opts *opts);
/* MultiRNNCell(cells): n cells stacked, scopes multi_rnn_cell/cell_<i>. */
RECUR_API recur_cell *recur_multi_rnn_cell(recur_graph *g, recur_cell *const *cells, int n,
                                           const recur_cell_opts *opts);

typedef struct recur_dropout_opts {
    double input_keep_prob;  /* 0 means 1.0 (no dropout); must be in (0, 1] */
    double output_keep_prob;
    double state_keep_prob;
    bool variational_recurrent;
    int64_t input_size;      /* needed with variational_recurrent and input dropout */
    recur_dtype dtype;       /* needed with variational_recurrent */
    int64_t seed;
    /* A scalar float placeholder or tensor multiplying into every keep probability's effect:
     * when fed 0 the wrapper is disabled (for evaluation). NULL: dropout always active. */
    recur_tensor *training;
} recur_dropout_opts;
RECUR_API recur_cell *recur_dropout_wrapper(recur_graph *g, recur_cell *cell, const recur_dropout_opts *opts);
/* ResidualWrapper: output = input + cell output. */
RECUR_API recur_cell *recur_residual_wrapper(recur_graph *g, recur_cell *cell);

/* A user-defined cell. `build` adds the ops of one step: given the step input [B, D] and the
 * flattened state tensors, it writes the step output [B, output_size] and the new state
 * tensors (same shapes as the old). It runs once per cell call (while the step sub-graph is
 * built), inside the cell's bound variable scope, so recur_get_variable creates or shares the
 * cell's variables. Return false after recording an error in the graph to fail the build. */
typedef struct recur_cell_def {
    const char *name;            /* base scope name, e.g. "my_cell" */
    int num_state;               /* number of state tensors (<= RECUR_MAX_STATE) */
    int64_t state_size[RECUR_MAX_STATE];
    int64_t output_size;
    bool (*build)(recur_graph *g, void *user, recur_tensor *input, recur_tensor *const *state,
                  recur_tensor **output, recur_tensor **new_state);
    void *user;                  /* passed to build; owned by the caller */
} recur_cell_def;
RECUR_API recur_cell *recur_custom_cell(recur_graph *g, const recur_cell_def *def);

RECUR_API int recur_cell_num_state(const recur_cell *cell);
RECUR_API int64_t recur_cell_state_size(const recur_cell *cell, int i);
RECUR_API int64_t recur_cell_output_size(const recur_cell *cell);
/* The variable scope the cell bound on its first call; NULL before. */
RECUR_API const char *recur_cell_scope_name(const recur_cell *cell);

/* Call a cell for one step outside any RNN function (cell(inputs, state)). state may be NULL
 * for zeros. Writes the new state tensors to new_state (num_state of them). */
#define recur_cell_call(g, ...) recur_cell_call_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_tensor *recur_cell_call_at(recur_graph *g, const char *file, int line, const char *func,
                                           recur_cell *cell, recur_tensor *input,
                                           recur_tensor *const *state, recur_tensor **new_state);
/* cell.zero_state(batch_size, dtype): writes num_state zero tensors [batch, size_i] to out. The
 * batch is `batch_size`, or, when `batch_like` is non-NULL, the run-time size of batch_like's
 * first dimension. */
RECUR_API bool recur_cell_zero_state(recur_graph *g, recur_cell *cell, int64_t batch_size,
                                     recur_tensor *batch_like, recur_dtype dt, recur_tensor **out);

typedef struct recur_rnn_opts {
    recur_tensor *sequence_length;     /* int32/int64 [B]; NULL: every row runs T steps */
    recur_tensor *const *initial_state; /* num_state tensors, or NULL (then dtype is needed) */
    recur_dtype dtype;
    bool time_major;                   /* inputs [T, B, D] instead of [B, T, D] */
    const char *scope;                 /* variable scope name; NULL: "rnn" */
    recur_scope *scope_obj;            /* or a captured scope object */
} recur_rnn_opts;

typedef struct recur_rnn_out {
    recur_tensor *outputs; /* [B, T, output_size] (or [T, B, ...] when time_major); NULL on error */
    int num_state;
    recur_tensor *state[RECUR_MAX_STATE]; /* final state, flattened (LSTM: c then h) */
} recur_rnn_out;

/* tf.compat.v1.nn.dynamic_rnn. */
#define recur_dynamic_rnn(g, ...) recur_dynamic_rnn_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_rnn_out recur_dynamic_rnn_at(recur_graph *g, const char *file, int line, const char *func,
                                             recur_cell *cell, recur_tensor *inputs, const recur_rnn_opts *opts);

typedef struct recur_birnn_opts {
    recur_tensor *sequence_length;
    recur_tensor *const *initial_state_fw;
    recur_tensor *const *initial_state_bw;
    recur_dtype dtype;
    bool time_major;
    const char *scope;                 /* NULL: "bidirectional_rnn" */
} recur_birnn_opts;

typedef struct recur_birnn_out {
    recur_tensor *outputs_fw, *outputs_bw; /* each [B, T, out]; bw in original time order */
    int num_state_fw, num_state_bw;
    recur_tensor *state_fw[RECUR_MAX_STATE], *state_bw[RECUR_MAX_STATE];
} recur_birnn_out;

/* tf.compat.v1.nn.bidirectional_dynamic_rnn. */
#define recur_bidirectional_dynamic_rnn(g, ...)                                                \
    recur_bidirectional_dynamic_rnn_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_birnn_out recur_bidirectional_dynamic_rnn_at(recur_graph *g, const char *file, int line,
                                                             const char *func, recur_cell *cell_fw,
                                                             recur_cell *cell_bw, recur_tensor *inputs,
                                                             const recur_birnn_opts *opts);

/* tf.contrib.rnn.stack_bidirectional_dynamic_rnn: n layers; returns the last layer's
 * concatenated outputs [B, T, fw+bw] in .outputs_fw (outputs_bw NULL) and every layer's final
 * states (state_fw holds layer 0's states, then layer 1's, ...). Initial states, when given,
 * are flattened the same way: opts->initial_state_fw holds layer 0's, then layer 1's, ...
 * opts->scope NULL: "stack_bidirectional_rnn". */
#define recur_stack_bidirectional_dynamic_rnn(g, ...)                                          \
    recur_stack_bidirectional_dynamic_rnn_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_birnn_out recur_stack_bidirectional_dynamic_rnn_at(recur_graph *g, const char *file, int line,
                                                                   const char *func, recur_cell *const *cells_fw,
                                                                   recur_cell *const *cells_bw, int n,
                                                                   recur_tensor *inputs,
                                                                   const recur_birnn_opts *opts);

/* tf.compat.v1.nn.static_rnn over a list of T tensors [B, D]; writes T outputs to `outputs`.
 * Returns the final state in .state (.outputs is outputs[T-1]). */
#define recur_static_rnn(g, ...) recur_static_rnn_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_rnn_out recur_static_rnn_at(recur_graph *g, const char *file, int line, const char *func,
                                            recur_cell *cell, recur_tensor *const *inputs, int T,
                                            recur_tensor **outputs, const recur_rnn_opts *opts);
/* tf.compat.v1.nn.static_bidirectional_rnn: outputs[t] = concat(fw_t, bw_t) along axis 1. */
#define recur_static_bidirectional_rnn(g, ...)                                                 \
    recur_static_bidirectional_rnn_at((g), __FILE__, __LINE__, __func__, __VA_ARGS__)
RECUR_API recur_birnn_out recur_static_bidirectional_rnn_at(recur_graph *g, const char *file, int line,
                                                            const char *func, recur_cell *cell_fw,
                                                            recur_cell *cell_bw, recur_tensor *const *inputs,
                                                            int T, recur_tensor **outputs,
                                                            const recur_birnn_opts *opts);


/* ============================================================================================
 * Training: gradients, losses, optimizers.
 * ========================================================================================== */

/* tf.gradients(ys, xs, grad_ys): adds the ops computing d(sum of ys)/d(xs[i]) and writes them to
 * dxs[i] (borrowed). A tensor not connected to any y gets NULL, as TensorFlow's None.
 * grad_ys may be NULL (ones) or give one seed tensor per y (NULL entries: ones). Gradients of a
 * tensor used by several ops are summed; recur_stop_gradient blocks them. The gradient of an
 * embedding lookup (recur_gather) stays sparse until something needs it dense; optimizers
 * update only the rows it touches where TensorFlow's do. Returns false on error (recorded in
 * the graph), with every dxs[i] NULL. New ops go under name scope "gradients". */
RECUR_API bool recur_gradients(recur_graph *g, recur_tensor *const *ys, int ny, recur_tensor *const *xs, int nx,
                               recur_tensor *const *grad_ys, recur_tensor **dxs);

/* ---- losses (per-example unless stated) ---- */
/* tf.nn.softmax_cross_entropy_with_logits (v2): labels and logits [B, C] (labels are
 * probabilities; gradients flow to both). Returns [B]. */
RECUR_API recur_tensor *recur_softmax_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels,
                                                                recur_tensor *logits);
/* tf.nn.sparse_softmax_cross_entropy_with_logits: labels int32/int64 [B] in [0, C), logits
 * [B, C]. A label outside the range fails the run: "Received a label value of 5 which is outside
 * the valid range of [0, 2)". Returns [B]. */
RECUR_API recur_tensor *recur_sparse_softmax_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels,
                                                                       recur_tensor *logits);
/* tf.nn.sigmoid_cross_entropy_with_logits, element-wise and numerically stable. */
RECUR_API recur_tensor *recur_sigmoid_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels,
                                                                recur_tensor *logits);
/* tf.losses.mean_squared_error with default weights: mean((labels - predictions)^2), scalar. */
RECUR_API recur_tensor *recur_mean_squared_error(recur_graph *g, recur_tensor *labels, recur_tensor *predictions);
/* tf.nn.l2_loss: sum(t^2) / 2, scalar. */
RECUR_API recur_tensor *recur_l2_loss(recur_graph *g, recur_tensor *t);

/* ---- learning-rate schedules, global step, clipping ---- */
/* tf.train.get_or_create_global_step: the int64 scalar variable "global_step" (not trainable). */
RECUR_API recur_tensor *recur_get_or_create_global_step(recur_graph *g);
/* tf.train.exponential_decay: lr * rate ^ (global_step / decay_steps) (floor of the exponent
 * with staircase). A float32 scalar. */
RECUR_API recur_tensor *recur_exponential_decay(recur_graph *g, double learning_rate, recur_tensor *global_step,
                                                double decay_steps, double decay_rate, bool staircase);
/* tf.clip_by_global_norm: writes the n clipped tensors to out (NULL entries stay NULL) and, if
 * global_norm is non-NULL, the norm before clipping. Sparse gradients stay sparse. */
RECUR_API bool recur_clip_by_global_norm(recur_graph *g, recur_tensor *const *ts, int n, double clip_norm,
                                         recur_tensor **out, recur_tensor **global_norm);

/* ---- optimizers with TensorFlow 1.x's update rules and slot variable names ---- */
typedef enum recur_optimizer_kind {
    RECUR_OPT_GRADIENT_DESCENT = 0, /* var -= lr * g */
    RECUR_OPT_MOMENTUM,             /* slot <var>/Momentum; nesterov optional */
    RECUR_OPT_ADAM,                 /* slots <var>/Adam, <var>/Adam_1; beta1_power, beta2_power */
    RECUR_OPT_ADAGRAD,              /* slot <var>/Adagrad */
    RECUR_OPT_RMSPROP,              /* slots <var>/RMSProp (ms, starts at 1), <var>/RMSProp_1 */
} recur_optimizer_kind;

typedef struct recur_optimizer_opts {
    recur_optimizer_kind kind;
    double learning_rate;             /* used when learning_rate_tensor is NULL */
    recur_tensor *learning_rate_tensor; /* a float scalar (e.g. recur_exponential_decay) */
    double momentum;                  /* Momentum, RMSProp (default 0) */
    bool use_nesterov;                /* Momentum */
    double beta1, beta2, epsilon;     /* Adam: 0 means 0.9, 0.999, 1e-8; RMSProp epsilon 1e-10 */
    double initial_accumulator_value; /* Adagrad: 0 means 0.1 */
    double decay;                     /* RMSProp: 0 means 0.9 */
    const char *name;                 /* slot suffix / op name: NULL for TensorFlow's */
} recur_optimizer_opts;

typedef struct recur_optimizer recur_optimizer;
/* New optimizer (owned by the graph). NULL on error. */
RECUR_API recur_optimizer *recur_optimizer_new(recur_graph *g, const recur_optimizer_opts *opts);
/* Gradients of `loss` for vars (NULL, 0: every trainable variable, written to vars_out when
 * non-NULL). Writes n gradients to grads (NULL where unconnected). Returns n or -1. */
RECUR_API int recur_optimizer_compute_gradients(recur_optimizer *opt, recur_tensor *loss, recur_tensor *const *vars,
                                                int nvars, recur_tensor **grads, recur_tensor **vars_out, int cap);
/* The update op for (grad, var) pairs (NULL grads are skipped). Every update runs after every
 * gradient is computed, so variables are read before any is written. global_step (may be NULL)
 * is incremented after the updates. Slots are created here. */
RECUR_API recur_op *recur_optimizer_apply_gradients(recur_optimizer *opt, recur_tensor *const *grads,
                                                    recur_tensor *const *vars, int n, recur_tensor *global_step);
/* compute_gradients + apply_gradients over every trainable variable (or vars). */
RECUR_API recur_op *recur_optimizer_minimize(recur_optimizer *opt, recur_tensor *loss, recur_tensor *global_step,
                                             recur_tensor *const *vars, int nvars);
/* The slot variable of `var` ("m"/"v" for Adam, "momentum", "accumulator", "rms"), or NULL. */
RECUR_API recur_tensor *recur_optimizer_slot(recur_optimizer *opt, recur_tensor *var, const char *slot);

/* ============================================================================================
 * Checkpoints in TensorFlow's V2 format (PREFIX.index + PREFIX.data-00000-of-00001 + the
 * `checkpoint` state file), readable and writable both ways with TensorFlow.
 * ========================================================================================== */
typedef struct recur_checkpoint recur_checkpoint;

/* Open PREFIX.index (and its data file) for reading. Verifies the table's checksums and the
 * header. New; NULL with RECUR_NOT_FOUND (no PREFIX.index: "The passed save_path is not a valid
 * checkpoint: PREFIX") or RECUR_DATA_LOSS (corrupt or truncated, naming the file). */
RECUR_API recur_checkpoint *recur_checkpoint_open(const char *prefix, recur_status *st);
RECUR_API void recur_checkpoint_close(recur_checkpoint *ckpt);
/* Tensor keys in the file's (sorted) order, excluding the header and slice entries. */
RECUR_API size_t recur_checkpoint_num_tensors(const recur_checkpoint *ckpt);
RECUR_API const char *recur_checkpoint_key(const recur_checkpoint *ckpt, size_t i); /* borrowed */
/* Dtype and shape of a key without reading its data; false when absent. */
RECUR_API bool recur_checkpoint_info(const recur_checkpoint *ckpt, const char *key, recur_dtype *dt,
                                     recur_shape *shape);
/* Read one tensor (checksum verified). New; NULL with RECUR_NOT_FOUND ("Key K not found in
 * checkpoint") or RECUR_DATA_LOSS. String tensors come back as RECUR_STRING arrays. */
RECUR_API recur_array *recur_checkpoint_read(recur_checkpoint *ckpt, const char *key, recur_status *st);

typedef struct recur_checkpoint_writer recur_checkpoint_writer;
/* Start writing a checkpoint at PREFIX. Files are written under temporary names and only
 * renamed into place by recur_checkpoint_writer_finish, so a crash never leaves a partial
 * checkpoint under the real name. New; NULL on error. */
RECUR_API recur_checkpoint_writer *recur_checkpoint_writer_new(const char *prefix, recur_status *st);
/* Add a tensor under `key` (copied to the data file now). Keys must be unique. */
RECUR_API recur_code recur_checkpoint_writer_add(recur_checkpoint_writer *w, const char *key,
                                                 const recur_array *value, recur_status *st);
/* Write the index (bytes identical to TensorFlow's for the same tensors), fsync and rename
 * both files into place. */
RECUR_API recur_code recur_checkpoint_writer_finish(recur_checkpoint_writer *w, recur_status *st);
/* Frees the writer; an unfinished checkpoint's temporary files are removed. */
RECUR_API void recur_checkpoint_writer_free(recur_checkpoint_writer *w);

/* ---- the `checkpoint` state file of a directory ---- */
/* tf.train.latest_checkpoint(dir): the newest prefix listed in DIR/checkpoint, written into
 * `buf`. Returns buf, or NULL (RECUR_NOT_FOUND when there is none; RECUR_DATA_LOSS for a state
 * file that cannot be parsed, naming the file and line). */
RECUR_API const char *recur_latest_checkpoint(const char *dir, char *buf, size_t cap, recur_status *st);

/* ---- Saver (tf.compat.v1.train.Saver) ---- */
typedef struct recur_saver recur_saver;
typedef struct recur_saver_opts {
    recur_tensor *const *var_list; /* variables to save/restore; NULL: all global variables */
    const char *const *keys;       /* checkpoint key per var_list entry; NULL: variable names */
    int num_vars;
    int max_to_keep;               /* 0: 5 (TensorFlow's default); -1: keep every checkpoint */
} recur_saver_opts;

/* New saver over the graph's variables as they are now. opts may be NULL. New; NULL on error
 * (recorded in the graph status). */
RECUR_API recur_saver *recur_saver_new(recur_graph *g, const recur_saver_opts *opts);
RECUR_API void recur_saver_free(recur_saver *sv);
/* Save the session's values at `prefix` (or `prefix-<step>` when global_step >= 0), atomically,
 * then update the directory's `checkpoint` file and delete checkpoints beyond max_to_keep.
 * The prefix written is copied to `path_out` when non-NULL. */
RECUR_API recur_code recur_saver_save(recur_saver *sv, recur_session *s, const char *prefix,
                                      int64_t global_step, char *path_out, size_t cap,
                                      recur_status *st);
/* Restore every variable of the saver from `prefix`. On any mismatch nothing is assigned and
 * the message lists every missing key ("Key layer1/w not found in checkpoint"), every
 * unexpected key, every dtype and shape mismatch, the nearest matches, and a suggested name
 * map that would make the restore work. */
RECUR_API recur_code recur_saver_restore(recur_saver *sv, recur_session *s, const char *prefix,
                                         recur_status *st);
/* tf.compat.v1.train.init_from_checkpoint: assign variables from a checkpoint through an
 * assignment map of n pairs (checkpoint scope/name -> graph scope/name; entries ending in "/"
 * map whole scopes, e.g. "old_scope/" -> "new_scope/"). */
RECUR_API recur_code recur_init_from_checkpoint(recur_session *s, const char *prefix,
                                                const char *const *from, const char *const *to,
                                                int n, recur_status *st);

/* The rename map recur_saver_restore's message suggests, computed between two checkpoints: each
 * key of `to` that `from` lacks is paired with an unused key of `from` of the same dtype and
 * shape, preferring the scope changes that explain the most keys (TensorFlow's historical RNN
 * renames, such as weights -> kernel, count as equal names), then the nearest name. Entries are
 * in recur_init_from_checkpoint's assignment-map form, exact names or scopes ending in "/" ("/"
 * is the root), and are read the same way: a key of `to` takes the key of `from` named by its
 * exact entry, else by the longest scope entry holding it. So a scope entry ("layer1/" ->
 * "encoder/") is given only where every key of `to` under NEW follows it, though it may also
 * cover keys of `from` that have no partner, and two scope entries may share OLD.
 * fn(user, old_name, new_name) is called once per entry, scope entries first, each group sorted
 * by new_name; both strings are borrowed for the call only. fn may be NULL (just count). Reads
 * no tensor data. Returns the number of entries (0 when every key of `to` is in `from`, or none
 * has a partner), or -1 with RECUR_INVALID_ARGUMENT (a NULL checkpoint) or RECUR_OUT_OF_MEMORY
 * in `st`. */
typedef void (*recur_name_map_fn)(void *user, const char *old_name, const char *new_name);
RECUR_API long recur_checkpoint_suggest_map(const recur_checkpoint *from, const recur_checkpoint *to,
                                            recur_name_map_fn fn, void *user, recur_status *st);

/* ============================================================================================
 * TensorBoard event files (scalars and histograms), readable by TensorBoard.
 * ========================================================================================== */
typedef struct recur_summary_writer recur_summary_writer;
/* New writer creating LOGDIR/events.out.tfevents.<time>.<host> (LOGDIR is created). */
RECUR_API recur_summary_writer *recur_summary_writer_new(const char *logdir, recur_status *st);
RECUR_API recur_code recur_summary_scalar(recur_summary_writer *w, const char *tag, double value,
                                          int64_t step, recur_status *st);
RECUR_API recur_code recur_summary_histogram(recur_summary_writer *w, const char *tag,
                                             const recur_array *values, int64_t step,
                                             recur_status *st);
RECUR_API recur_code recur_summary_flush(recur_summary_writer *w, recur_status *st);
RECUR_API void recur_summary_writer_free(recur_summary_writer *w); /* flushes */

#ifdef __cplusplus
}
#endif
#endif /* RECUR_H */
