/*
 * recur_impl.h - private structures and helpers shared across src/. Not API.
 *
 * Layout of the private world:
 *   core   rc_malloc & co (allocation hooks), status, arrays, shapes, RNG, hash map, strbuf
 *   graph  recur_graph (nodes, names, scopes, variables, collections, frames)
 *   ops    the op table: per op type a shape function, kernels and a gradient
 *   exec   sessions, plans, buffer pool
 */
#ifndef RECUR_IMPL_H
#define RECUR_IMPL_H

#include "recur.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- invariants */
/* RC_CHECK guards internal invariants only (never user input): it aborts with a location. */
#define RC_CHECK(cond)                                                                         \
    do {                                                                                       \
        if (!(cond)) rc_fatal(__FILE__, __LINE__, #cond);                                      \
    } while (0)
_Noreturn void rc_fatal(const char *file, int line, const char *what);

#define RC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- allocation (core/alloc.c) */
void *rc_malloc(size_t n);
void *rc_calloc(size_t count, size_t size);
void *rc_realloc(void *p, size_t n);
void rc_free(void *p);
char *rc_strdup(const char *s);
char *rc_strndup(const char *s, size_t n);
/* 64-byte aligned buffers for array data (freed with rc_aligned_free). */
void *rc_aligned_alloc(size_t n);
void rc_aligned_free(void *p);
/* Grow a dynamic array to hold at least `need` items of `size` bytes; false on OOM. */
bool rc_grow(void **items, size_t *cap, size_t need, size_t size);
#define RC_GROW(arr, cap, need) rc_grow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

/* ---------------------------------------------------------------- status (core/status.c) */
#define RC_MSG_CAP 4096
struct recur_status {
    recur_code code;
    char msg[RC_MSG_CAP];
};
void rc_status_vset(recur_status *st, recur_code code, const char *fmt, va_list ap);
/* Set `st` (may be NULL) and return the code, for `return rc_err(st, ...)`. */
recur_code rc_err(recur_status *st, recur_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
recur_code rc_oom(recur_status *st);
/* Copy code+message from one status to another. */
void rc_status_copy(recur_status *dst, const recur_status *src);

/* ---------------------------------------------------------------- strings (core/strbuf.c) */
typedef struct rc_strbuf {
    char *s;
    size_t len, cap;
    bool oom;
} rc_strbuf;
void rc_sb_init(rc_strbuf *b);
void rc_sb_free(rc_strbuf *b);
void rc_sb_puts(rc_strbuf *b, const char *s);
void rc_sb_putn(rc_strbuf *b, const char *s, size_t n);
void rc_sb_printf(rc_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Detach the string (caller frees with rc_free); NULL if an allocation failed. */
char *rc_sb_take(rc_strbuf *b);
/* Levenshtein distance (capped at `cap`). */
size_t rc_edit_distance(const char *a, const char *b, size_t cap);

/* ---------------------------------------------------------------- arena (core/arena.c) */
typedef struct rc_arena {
    struct rc_arena_block *head;
    size_t reserve; /* size of the merged block to make next */
} rc_arena;
/* 64-byte aligned scratch valid until the next reset; NULL on OOM. */
void *rc_arena_alloc(rc_arena *a, size_t bytes, bool zero);
void rc_arena_reset(rc_arena *a);
void rc_arena_free(rc_arena *a);

/* ---------------------------------------------------------------- hash map (core/map.c) */
/* String-keyed map; keys are copied. Values are pointer-sized. */
typedef struct rc_map_entry {
    char *key;
    intptr_t value;
    uint64_t hash;
} rc_map_entry;
typedef struct rc_map {
    rc_map_entry *slots;
    size_t cap, count;
} rc_map;
void rc_map_init(rc_map *m);
void rc_map_free(rc_map *m);
/* Returns a pointer to the value slot or NULL when absent. */
intptr_t *rc_map_get(const rc_map *m, const char *key);
/* Insert or overwrite; false on OOM. */
bool rc_map_set(rc_map *m, const char *key, intptr_t value);
bool rc_map_copy(rc_map *dst, const rc_map *src);
/* Insert `key` if absent and return the map's own stable copy of it (NULL on OOM). */
const char *rc_map_intern(rc_map *m, const char *key);
/* Iterate: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

/* ---------------------------------------------------------------- shapes & dtypes */
bool rc_shape_known(recur_shape s); /* rank and every dim known */
bool rc_shape_compatible(recur_shape a, recur_shape b);
bool rc_shape_equal(recur_shape a, recur_shape b);
/* "[?,20,10]" (TensorFlow's C++ DebugString form). */
char *rc_shape_debug(recur_shape s, char *buf, size_t cap);
/* Checked product of dims; false when a dim is negative/unknown or it overflows. */
bool rc_shape_count(recur_shape s, int64_t *count);
bool rc_dtype_valid(recur_dtype dt); /* one of the numeric dtypes a graph may hold */
bool rc_dtype_is_float(recur_dtype dt);
bool rc_dtype_is_int(recur_dtype dt);

/* ---------------------------------------------------------------- arrays (core/array.c) */
struct recur_array {
    recur_dtype dtype;
    recur_shape shape;
    int64_t size;     /* elements */
    size_t nbytes;    /* size * dtype size (for strings: 0) */
    void *data;       /* 64-byte aligned; NULL when nbytes == 0 */
    size_t capacity;  /* bytes allocated at data */
    int refs;         /* run-time references (session buffers); 0 for user arrays */
    bool pooled;      /* owned by a session pool */
    /* DT_STRING only */
    char **strs;
    size_t *lens;
};
recur_array *rc_array_alloc(recur_dtype dt, recur_shape shape, bool zero, recur_status *st);
/* An uninitialised array whose buffer holds at least `capacity` bytes (the session pool's size
 * classes). NULL on OOM or an invalid shape. */
recur_array *rc_array_alloc_cap(recur_dtype dt, recur_shape shape, size_t capacity);
/* Convert element i to double / set from double (numeric dtypes). */
double rc_array_get(const recur_array *a, int64_t i);
void rc_array_set(recur_array *a, int64_t i, double v);

/* ---------------------------------------------------------------- RNG (core/rng.c) */
/* Philox4x32-10, with TensorFlow's key/counter setup from (seed, seed2). */
typedef struct rc_philox {
    uint32_t key[2];
    uint32_t counter[4];
    uint32_t buf[4];
    int avail;
} rc_philox;
void rc_philox_init(rc_philox *p, uint64_t seed, uint64_t seed2);
uint32_t rc_philox_next(rc_philox *p);
/* Advance the counter by `blocks` 128-bit blocks (discarding buffered draws). */
void rc_philox_skip(rc_philox *p, uint64_t blocks);
/* Advance by `draws` 32-bit draws: the state rc_philox_next would leave after that many calls. */
void rc_philox_advance(rc_philox *p, uint64_t draws);
/* TensorFlow's TruncatedNormal op output for seeds (seed, seed2): n standard normal samples
 * within (-2, 2). */
void rc_philox_truncated_normal(uint64_t seed, uint64_t seed2, float *out, int64_t n);
/* Uniform in [0,1) with 23 random mantissa bits, as TensorFlow's Uint32ToFloat. */
float rc_philox_uniform(rc_philox *p);
/* out[i] = the i-th of n rc_philox_uniform calls (sixteen blocks at a time with AVX-512). */
void rc_philox_fill_uniform(rc_philox *p, float *out, int64_t n);
double rc_philox_uniform_double(rc_philox *p);
/* Standard normal (Box-Muller, pairs). */
typedef struct rc_normal_gen {
    rc_philox *p;
    float spare;
    bool has_spare;
} rc_normal_gen;
float rc_philox_normal(rc_normal_gen *n);
/* TensorFlow's get_seed(): from the graph seed (has_graph_seed) and op seed (0 = none), the
 * pair given to the kernel. (0, 0) means "draw a random seed at run time". */
void rc_resolve_seed(bool has_graph_seed, int64_t graph_seed, int64_t op_seed, int64_t last_id,
                     int64_t *seed1, int64_t *seed2);
/* A fresh nondeterministic 64-bit seed. */
uint64_t rc_random_seed(void);

/* ---------------------------------------------------------------- graph */
typedef struct rc_attrs {
    int64_t i[8];        /* integer attributes (per op, documented in its family file) */
    double f[4];         /* float attributes */
    recur_shape shape;   /* a shape attribute (placeholder shape, reshape target, ...) */
    recur_array *value;  /* constant value (owned by the graph) */
    int64_t *ivec;       /* an integer list (perm, axes, begin/size, ...) owned by the graph */
    int nivec;
    recur_initializer init; /* VariableInit */
    void *ptr;           /* op-specific pointer (loop description ...) owned by the graph */
} rc_attrs;

struct recur_tensor {
    recur_op *op;
    int index;
    int id;              /* dense per graph, used to index run-time value tables */
    recur_dtype dtype;
    recur_shape shape;
    char *name;          /* "op:index" */
};

typedef struct rc_frame rc_frame;
typedef struct rc_variable rc_variable;

struct recur_op {
    recur_graph *g;
    int id;              /* creation index */
    int type;            /* rc_op_type */
    char *name;
    int ninputs;
    recur_tensor **inputs;
    int nctrl, capctrl;
    recur_op **ctrl;
    int noutputs;
    recur_tensor *outputs; /* array of noutputs */
    rc_attrs attr;
    rc_frame *frame;     /* loop body this op belongs to; NULL = top level */
    rc_variable *var;    /* Variable ops */
};

struct recur_scope {
    char *name;                 /* full variable-scope name, "" for the root */
    recur_reuse reuse;
    recur_initializer init;
    recur_dtype dtype;          /* 0 = inherit (float32) */
    char *original_name_scope;  /* with trailing '/', or "" */
};

struct rc_variable {
    char *name;          /* full name (op name) */
    recur_tensor *t;     /* the Variable op's output */
    recur_dtype dtype;
    recur_shape shape;
    recur_initializer init;
    bool trainable;
    const char *file;    /* creation site (static strings from __FILE__/__func__) */
    int line;
    const char *func;
    recur_op *init_op;   /* the op that assigns the initial value */
    int index;           /* creation order among variables */
};

typedef enum rc_stack_kind { RC_STACK_NAME = 1, RC_STACK_VAR = 2 } rc_stack_kind;
typedef struct rc_stack_entry {
    rc_stack_kind kind;
    char *saved_name_stack;      /* name stack to restore (owned) */
    bool opened_name_scope;
    recur_scope *saved_var_scope;
    /* variable-scope entries */
    bool by_object;
    char *closed_name;           /* string entry: reset counts under closed_name + "/" */
    rc_map counts_snapshot;      /* object entry: counts restored on exit */
} rc_stack_entry;

typedef struct rc_collection {
    char *key;
    recur_tensor **items;
    size_t n, cap;
} rc_collection;

struct recur_graph {
    recur_status status;
    /* ops */
    recur_op **ops;
    size_t nops, capops;
    int ntensors;
    rc_map op_by_name;           /* exact op name -> op */
    rc_map names_in_use;         /* lower-cased name -> count (Graph.unique_name) */
    /* scopes */
    char *name_stack;            /* current name scope without trailing '/'; "" at root */
    recur_scope *root_scope;
    recur_scope *var_scope;      /* current */
    rc_map var_scope_counts;     /* full scope name -> count */
    rc_stack_entry *stack;
    size_t nstack, capstack;
    recur_scope **scopes;        /* every scope object made (owned) */
    size_t nscopes, capscopes;
    /* variables */
    rc_map var_by_name;          /* full name -> rc_variable* */
    rc_variable **vars;
    size_t nvars, capvars;
    rc_collection *collections;
    size_t ncollections, capcollections;
    /* randomness */
    bool has_seed;
    int64_t seed;
    /* loops */
    rc_frame *frame;             /* the loop body being built; NULL at top level */
    /* cells, frames and other owned objects, freed with the graph */
    void **owned;
    void (**owned_free)(void *);
    size_t nowned, capowned, capowned_free;
    rc_map interned;             /* stable strings handed out as borrowed pointers */
    /* cached initializer ops */
    recur_op *global_init;
    size_t global_init_nvars;
    uint64_t ctrl_version;       /* bumped when control inputs change (plan cache) */
    /* the user's call site of the outermost public builder in progress (creation sites) */
    const char *site_file, *site_func;
    int site_line;
};

/* Record an error in the graph's sticky status (keeps the first). Returns NULL for
 * `return rc_gerr(...)` in builders. */
void *rc_gerr(recur_graph *g, recur_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *rc_goom(recur_graph *g);
/* True when building may proceed: g non-NULL, no sticky error, every listed tensor non-NULL
 * and of this graph (records an error for a tensor of another graph). */
bool rc_gready(recur_graph *g, recur_tensor *const *ts, int n);
/* Register an object the graph frees when it is freed. false on OOM (obj is freed then). */
bool rc_graph_own(recur_graph *g, void *obj, void (*free_fn)(void *));

/* Graph.unique_name(name) under the current name stack; marks it used. New string. */
char *rc_unique_name(recur_graph *g, const char *name, bool mark_used);
/* Validate a scope/op name with TensorFlow's regexes (root or nested). */
bool rc_valid_scope_name(const char *name, bool nested);
/* Record TensorFlow's invalid (root) scope name error; returns NULL. */
void *rc_invalid_name(recur_graph *g, const char *name);

/* Create an op: type, inputs, explicit name (NULL: the op type's default), attributes. Runs
 * the shape function; returns the op or NULL (error recorded). Takes ownership of attr's owned
 * members on success and on failure. */
recur_op *rc_op_new(recur_graph *g, int type, recur_tensor *const *inputs, int ninputs,
                    const char *name, const rc_attrs *attr);
/* Shorthand for single-output ops. */
recur_tensor *rc_op1(recur_graph *g, int type, recur_tensor *const *inputs, int ninputs,
                     const char *name, const rc_attrs *attr);
/* Allocate outputs in a shape function. */
bool rc_set_outputs(recur_op *op, int n);
void rc_set_output(recur_op *op, int i, recur_dtype dt, recur_shape shape);
/* Add a control dependency (no-op when present); false, with the graph's out-of-memory error set, on failure. */
bool rc_add_ctrl(recur_op *op, recur_op *dep);
void rc_attrs_release(rc_attrs *a);

/* Stable graph-owned copy of a string (NULL on OOM, error recorded). */
const char *rc_intern(recur_graph *g, const char *s);
/* Scope stack (graph.c): enter a name scope (open=false keeps the current one) and push an
 * entry of `kind`; returns the entry (valid until the next push) or NULL with an error. */
rc_stack_entry *rc_enter_name_scope(recur_graph *g, const char *name, rc_stack_kind kind, bool open);
/* Pop the innermost entry, restoring its saved name stack. */
void rc_leave_stack_entry(recur_graph *g);
/* The current name scope with its trailing '/' ("" at root), interned. */
const char *rc_name_scope_string(recur_graph *g);

/* Loop frames (graph/frame.c). A frame is the body of a loop under construction: ops made
 * while g->frame is set belong to it, and tensors they use from enclosing frames are recorded
 * as captures. */
struct rc_frame {
    rc_frame *parent;
    char *name;                  /* the loop's name scope, for messages */
    recur_tensor **captures;     /* outer tensors used in the body, in first-use order */
    size_t ncaptures, capcaptures;
    /* A backward (gradient) body may read the tensors of its forward body: their per-step
     * values are saved by the forward loop. */
    rc_frame *forward;
    recur_tensor **saved;
    size_t nsaved, capsaved;
};
/* Check an op's inputs against frames and record captures; false with an error recorded. */
bool rc_frame_note_op(recur_graph *g, recur_op *op);
/* Is frame `inner` equal to or nested in `outer` (NULL = top level)? */
bool rc_frame_within(const rc_frame *inner, const rc_frame *outer);

/* Record the user's call site for variables created by this builder (outermost call wins).
 * Returns true when this call set it; pass that to rc_site_pop. */
bool rc_site_push(recur_graph *g, const char *file, int line, const char *func);
void rc_site_pop(recur_graph *g, bool set);

/* Variables (graph/variable.c) */
rc_variable *rc_tensor_var(const recur_tensor *t);
/* Push/pop helpers that restore the scope stack depth on error paths. */
size_t rc_scope_depth(const recur_graph *g);
void rc_scope_unwind(recur_graph *g, size_t depth);

/* ---------------------------------------------------------------- collections (graph/collection.c) */
bool rc_collection_add(recur_graph *g, const char *key, recur_tensor *t);
rc_collection *rc_collection_find(recur_graph *g, const char *key);

#endif /* RECUR_IMPL_H */
