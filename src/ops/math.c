/*
 * math.c - element-wise arithmetic with NumPy broadcasting, comparisons and select, unary
 * functions, matmul (CBLAS), add_n, bias_add, clip, cast, and the broadcast reductions used by
 * gradients. For each op: builder, shape function, kernel(s) and gradient, side by side.
 */
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>

/* ================================================================== broadcasting iterator */

/* Strides (in elements) of `s` aligned to an output of rank r; 0 on broadcast dims. */
static void bcast_strides(recur_shape s, recur_shape out, int64_t *strides)
{
    int64_t st = 1;
    for (int i = out.rank - 1; i >= 0; i--) {
        int si = s.rank - out.rank + i;
        int64_t d = si >= 0 ? s.dims[si] : 1;
        strides[i] = d == 1 ? 0 : st;
        st *= d;
    }
}

/* Offsets of a and b for every output element, by an N-d counter (the reference walk). */
typedef struct bwalk {
    int rank;
    int64_t dims[RECUR_MAX_RANK], sa[RECUR_MAX_RANK], sb[RECUR_MAX_RANK], idx[RECUR_MAX_RANK];
    int64_t oa, ob;
} bwalk;

static void bwalk_init(bwalk *w, recur_shape a, recur_shape b, recur_shape out)
{
    memset(w, 0, sizeof *w);
    w->rank = out.rank;
    memcpy(w->dims, out.dims, sizeof w->dims);
    bcast_strides(a, out, w->sa);
    bcast_strides(b, out, w->sb);
}

static void bwalk_next(bwalk *w)
{
    for (int i = w->rank - 1; i >= 0; i--) {
        w->oa += w->sa[i];
        w->ob += w->sb[i];
        if (++w->idx[i] < w->dims[i]) return;
        w->oa -= w->sa[i] * w->dims[i];
        w->ob -= w->sb[i] * w->dims[i];
        w->idx[i] = 0;
    }
}

/* ================================================================== binary ops */

typedef enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_LESS, B_GE, B_EQ } bkind;

static bkind bkind_of(int type)
{
    switch (type) {
    case RC_OP_ADD: return B_ADD;
    case RC_OP_SUB: return B_SUB;
    case RC_OP_MUL: return B_MUL;
    case RC_OP_DIV: return B_DIV;
    case RC_OP_MAXIMUM: return B_MAX;
    case RC_OP_MINIMUM: return B_MIN;
    case RC_OP_LESS: return B_LESS;
    case RC_OP_GREATER_EQUAL: return B_GE;
    default: return B_EQ;
    }
}

static bool is_compare(int type) { return type == RC_OP_LESS || type == RC_OP_GREATER_EQUAL || type == RC_OP_EQUAL; }

static bool binary_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *a = op->inputs[0], *b = op->inputs[1];
    const char *type = rc_op_def_of(op->type)->type;
    if (a->dtype != b->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Input 'y' of '%s' Op has type %s that does not match type %s of argument 'x'.",
                       type, recur_dtype_name(b->dtype), recur_dtype_name(a->dtype)), false;
    bool numeric = a->dtype == RECUR_F32 || a->dtype == RECUR_F64 || a->dtype == RECUR_I32 || a->dtype == RECUR_I64;
    if (op->type == RC_OP_DIV && !rc_dtype_is_float(a->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "RealDiv %s: only float and double are supported, got %s",
                       op->name, recur_dtype_name(a->dtype)), false;
    if (!numeric && !(op->type == RC_OP_EQUAL && a->dtype == RECUR_BOOL))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: dtype %s is not supported", type, op->name,
                       recur_dtype_name(a->dtype)), false;
    recur_shape out;
    if (!rc_broadcast_shape(g, op, a->shape, b->shape, &out)) return false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, is_compare(op->type) ? RECUR_BOOL : a->dtype, out);
    return true;
}

#define BIN_EXPR(k, x, y)                                                                      \
    ((k) == B_ADD ? (x) + (y) : (k) == B_SUB ? (x) - (y) : (k) == B_MUL ? (x) * (y)            \
     : (k) == B_DIV ? (x) / (y) : (k) == B_MAX ? ((x) >= (y) ? (x) : (y)) : ((x) <= (y) ? (x) : (y)))
#define CMP_EXPR(k, x, y) ((k) == B_LESS ? (x) < (y) : (k) == B_GE ? (x) >= (y) : (x) == (y))

/* Reference: the N-d walk for every element. */
#define BIN_REF(T)                                                                             \
    do {                                                                                       \
        const T *pa = a->data, *pb = b->data;                                                  \
        bwalk w;                                                                               \
        bwalk_init(&w, a->shape, b->shape, o->shape);                                          \
        for (int64_t i = 0; i < o->size; i++, bwalk_next(&w)) {                                \
            if (cmp)                                                                           \
                ((bool *)o->data)[i] = CMP_EXPR(kind, pa[w.oa], pb[w.ob]);                     \
            else                                                                               \
                ((T *)o->data)[i] = (T)BIN_EXPR(kind, pa[w.oa], pb[w.ob]);                     \
        }                                                                                      \
    } while (0)

static recur_code binary_alloc(rc_kctx *k, recur_array **out)
{
    recur_array *a = k->in[0], *b = k->in[1];
    recur_shape os;
    if (!rc_broadcast_runtime(a->shape, b->shape, &os)) {
        char x[256], y[256];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Incompatible shapes: %s vs. %s",
                       rc_shape_debug(a->shape, x, sizeof x), rc_shape_debug(b->shape, y, sizeof y));
    }
    *out = rc_kout(k, 0, k->op->outputs[0].dtype, os);
    return *out ? RECUR_OK : recur_status_code(k->st);
}

static recur_code binary_ref(rc_kctx *k)
{
    recur_array *a = k->in[0], *b = k->in[1], *o;
    recur_code c = binary_alloc(k, &o);
    if (c) return c;
    bkind kind = bkind_of(k->op->type);
    bool cmp = is_compare(k->op->type);
    RC_DISPATCH_NUM(a->dtype, BIN_REF);
    return RECUR_OK;
}

/* Fast paths: same shape, scalar operand, trailing-vector broadcast; else the walk. */
#define BIN_FAST(T)                                                                            \
    do {                                                                                       \
        const T *pa = a->data, *pb = b->data;                                                  \
        T *po = o->data;                                                                       \
        int64_t n = o->size;                                                                   \
        if (a->size == n && b->size == n) {                                                   \
            switch (kind) {                                                                    \
            case B_ADD: for (int64_t i = 0; i < n; i++) po[i] = pa[i] + pb[i]; break;          \
            case B_SUB: for (int64_t i = 0; i < n; i++) po[i] = pa[i] - pb[i]; break;          \
            case B_MUL: for (int64_t i = 0; i < n; i++) po[i] = pa[i] * pb[i]; break;          \
            default: for (int64_t i = 0; i < n; i++) po[i] = (T)BIN_EXPR(kind, pa[i], pb[i]);  \
            }                                                                                  \
        } else if (b->size == 1) {                                                             \
            T y = pb[0];                                                                       \
            for (int64_t i = 0; i < n; i++) po[i] = (T)BIN_EXPR(kind, pa[i], y);               \
        } else if (a->size == 1) {                                                             \
            T x = pa[0];                                                                       \
            for (int64_t i = 0; i < n; i++) po[i] = (T)BIN_EXPR(kind, x, pb[i]);               \
        } else if (a->size == n && trailing(b->shape, o->shape)) {                             \
            int64_t m = b->size;                                                               \
            for (int64_t r = 0; r < n; r += m)                                                 \
                for (int64_t j = 0; j < m; j++) po[r + j] = (T)BIN_EXPR(kind, pa[r + j], pb[j]); \
        } else if (a->size == n && (inner = leading(b->shape, o->shape)) > 0) {                \
            for (int64_t r = 0; r < b->size; r++) {                                            \
                T y = pb[r];                                                                   \
                for (int64_t j = 0; j < inner; j++)                                            \
                    po[r * inner + j] = (T)BIN_EXPR(kind, pa[r * inner + j], y);               \
            }                                                                                  \
        } else {                                                                               \
            bwalk w;                                                                           \
            bwalk_init(&w, a->shape, b->shape, o->shape);                                      \
            for (int64_t i = 0; i < n; i++, bwalk_next(&w))                                    \
                po[i] = (T)BIN_EXPR(kind, pa[w.oa], pb[w.ob]);                                 \
        }                                                                                      \
    } while (0)

/* Is `s` (after dropping leading 1s) equal to the trailing dims of `out`? */
static bool trailing(recur_shape s, recur_shape out)
{
    int lead = 0;
    while (lead < s.rank && s.dims[lead] == 1) lead++;
    int n = s.rank - lead;
    if (n > out.rank) return false;
    for (int i = 0; i < n; i++)
        if (s.dims[lead + i] != out.dims[out.rank - n + i]) return false;
    return true;
}

/* Is `s` the leading dims of `out` followed by 1s (b[i, 1, 1] against out[i, j, k])? Returns
 * the broadcast block size (product of out's dims where s has trailing 1s), or 0. */
static int64_t leading(recur_shape s, recur_shape out)
{
    if (s.rank != out.rank) return 0;
    int k = s.rank;
    while (k > 0 && s.dims[k - 1] == 1) k--;
    if (k == s.rank) return 0;
    int64_t inner = 1;
    for (int i = 0; i < s.rank; i++) {
        if (i < k && s.dims[i] != out.dims[i]) return 0;
        if (i >= k) inner *= out.dims[i];
    }
    return inner;
}

/* float32 arithmetic on n elements: o[i] = a[i sa] op b[i sb], with strides 0 (a scalar) or 1;
 * one loop per operation, so that each compiles to plain vector code. */
#define HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define BIN_LOOP(expr)                                                                         \
    do {                                                                                       \
        if (sa && sb)                                                                          \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i], y = b[i];                                                      \
                o[i] = (expr);                                                                 \
            }                                                                                  \
        else if (sa)                                                                           \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i], y = b[0];                                                      \
                o[i] = (expr);                                                                 \
            }                                                                                  \
        else                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[0], y = b[i];                                                      \
                o[i] = (expr);                                                                 \
            }                                                                                  \
    } while (0)

HOT_CLONES static void bin_f32(bkind kind, const float *a, int sa, const float *b, int sb, float *o, int64_t n)
{
    switch (kind) {
    case B_ADD: BIN_LOOP(x + y); break;
    case B_SUB: BIN_LOOP(x - y); break;
    case B_MUL: BIN_LOOP(x * y); break;
    case B_DIV: BIN_LOOP(x / y); break;
    case B_MAX: BIN_LOOP(x >= y ? x : y); break;
    default: BIN_LOOP(x <= y ? x : y); break;
    }
}

/* Rows [lo, hi) of a float32 binary op whose b is one of: the same size as the output (rows
 * of 1), a scalar, a row repeated (the trailing case), or one value per block of `inner`
 * (the leading case); a is the output's size unless it is a scalar. */
typedef enum { BS_SAME, BS_SCALAR_B, BS_SCALAR_A, BS_TRAILING, BS_LEADING } bshape;
typedef struct bin_job {
    bkind kind;
    bshape form;
    const float *a, *b;
    float *o;
    int64_t row; /* elements per row of the split */
} bin_job;

static void bin_rows(void *arg, int64_t lo, int64_t hi)
{
    const bin_job *j = arg;
    int64_t w = j->row, off = lo * w;
    switch (j->form) {
    case BS_SAME: bin_f32(j->kind, j->a + off, 1, j->b + off, 1, j->o + off, (hi - lo) * w); break;
    case BS_SCALAR_B: bin_f32(j->kind, j->a + off, 1, j->b, 0, j->o + off, (hi - lo) * w); break;
    case BS_SCALAR_A: bin_f32(j->kind, j->a, 0, j->b + off, 1, j->o + off, (hi - lo) * w); break;
    case BS_TRAILING:
        for (int64_t r = lo; r < hi; r++) bin_f32(j->kind, j->a + r * w, 1, j->b, 1, j->o + r * w, w);
        break;
    default:
        for (int64_t r = lo; r < hi; r++) bin_f32(j->kind, j->a + r * w, 1, j->b + r, 0, j->o + r * w, w);
    }
}

static recur_code binary_fast(rc_kctx *k)
{
    int64_t inner;
    if (is_compare(k->op->type)) {
        recur_array *a = k->in[0], *b = k->in[1];
        if (a->size != b->size || !rc_shape_equal(a->shape, b->shape)) return binary_ref(k);
        recur_array *o = rc_kout(k, 0, RECUR_BOOL, a->shape);
        if (!o) return recur_status_code(k->st);
        bkind kind = bkind_of(k->op->type);
        bool *po = o->data;
        if (a->dtype == RECUR_F32) {
            const float *pa = a->data, *pb = b->data;
            for (int64_t i = 0; i < a->size; i++) po[i] = CMP_EXPR(kind, pa[i], pb[i]);
        } else {
            for (int64_t i = 0; i < a->size; i++) po[i] = CMP_EXPR(kind, rc_array_get(a, i), rc_array_get(b, i));
        }
        return RECUR_OK;
    }
    recur_array *a = k->in[0], *b = k->in[1], *o;
    recur_code c = binary_alloc(k, &o);
    if (c) return c;
    bkind kind = bkind_of(k->op->type);
    if (a->dtype == RECUR_F32 && o->size) {
        int64_t n = o->size, rows = 0;
        bin_job j = {.kind = kind, .a = a->data, .b = b->data, .o = o->data, .row = 1};
        if (a->size == n && b->size == n) j.form = BS_SAME, rows = n;
        else if (a->size == n && b->size == 1) j.form = BS_SCALAR_B, rows = n;
        else if (a->size == 1 && b->size == n) j.form = BS_SCALAR_A, rows = n;
        else if (a->size == n && b->size && trailing(b->shape, o->shape)) j.form = BS_TRAILING, j.row = b->size, rows = n / b->size;
        else if (a->size == n && (inner = leading(b->shape, o->shape)) > 0) j.form = BS_LEADING, j.row = inner, rows = b->size;
        if (rows) {
            rc_kfor2(k, rows, (1 << 16) / j.row + 1, bin_rows, &j);
            return RECUR_OK;
        }
    }
    switch (a->dtype) {
    case RECUR_F32: BIN_FAST(float); break;
    case RECUR_F64: BIN_FAST(double); break;
    case RECUR_I32: BIN_FAST(int32_t); break;
    case RECUR_I64: BIN_FAST(int64_t); break;
    default: break;
    }
    return RECUR_OK;
}

static recur_tensor *binary(recur_graph *g, int type, recur_tensor *a, recur_tensor *b)
{
    recur_tensor *in[2] = {a, b};
    return rc_op1(g, type, in, 2, NULL, NULL);
}

recur_tensor *recur_add(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_ADD, a, b); }
recur_tensor *recur_sub(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_SUB, a, b); }
recur_tensor *recur_mul(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_MUL, a, b); }
recur_tensor *recur_div(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_DIV, a, b); }
recur_tensor *recur_maximum(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_MAXIMUM, a, b); }
recur_tensor *recur_minimum(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_MINIMUM, a, b); }
recur_tensor *recur_less(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_LESS, a, b); }
recur_tensor *recur_greater_equal(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_GREATER_EQUAL, a, b); }
recur_tensor *recur_equal(recur_graph *g, recur_tensor *a, recur_tensor *b) { return binary(g, RC_OP_EQUAL, a, b); }

static bool grad_add(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0], *y = op->inputs[1];
    dx[0] = rc_sum_to(g, dy[0], x);
    dx[1] = rc_sum_to(g, op->type == RC_OP_SUB ? recur_neg(g, dy[0]) : dy[0], y);
    return recur_graph_ok(g);
}

static bool grad_mul(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0], *y = op->inputs[1];
    dx[0] = rc_sum_to(g, recur_mul(g, dy[0], y), x);
    dx[1] = rc_sum_to(g, recur_mul(g, x, dy[0]), y);
    return recur_graph_ok(g);
}

static bool grad_div(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0], *y = op->inputs[1];
    dx[0] = rc_sum_to(g, recur_div(g, dy[0], y), x);
    /* d(x/y)/dy = -x/y^2 = -(x/y)/y */
    recur_tensor *q = &op->outputs[0];
    dx[1] = rc_sum_to(g, recur_neg(g, recur_mul(g, dy[0], recur_div(g, q, y))), y);
    return recur_graph_ok(g);
}

static bool grad_minmax(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0], *y = op->inputs[1];
    /* TensorFlow: x takes the gradient where x >= y (maximum) or x <= y (minimum). */
    recur_tensor *mask = op->type == RC_OP_MAXIMUM ? recur_greater_equal(g, x, y) : recur_greater_equal(g, y, x);
    recur_tensor *z = recur_zeros_like(g, dy[0]);
    dx[0] = rc_sum_to(g, recur_select(g, mask, dy[0], z), x);
    dx[1] = rc_sum_to(g, recur_select(g, mask, z, dy[0]), y);
    return recur_graph_ok(g);
}

/* ================================================================== select */

static bool select_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *c = op->inputs[0], *a = op->inputs[1], *b = op->inputs[2];
    if (c->dtype != RECUR_BOOL)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "SelectV2 %s: condition must be bool, got %s", op->name,
                       recur_dtype_name(c->dtype)), false;
    if (a->dtype != b->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Input 'e' of 'SelectV2' Op has type %s that does not match type %s of argument 't'.",
                       recur_dtype_name(b->dtype), recur_dtype_name(a->dtype)), false;
    recur_shape ab, out;
    if (!rc_broadcast_shape(g, op, a->shape, b->shape, &ab) || !rc_broadcast_shape(g, op, c->shape, ab, &out))
        return false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, a->dtype, out);
    return true;
}

static recur_code select_kernel(rc_kctx *k)
{
    recur_array *c = k->in[0], *a = k->in[1], *b = k->in[2];
    recur_shape ab, os;
    if (!rc_broadcast_runtime(a->shape, b->shape, &ab) || !rc_broadcast_runtime(c->shape, ab, &os))
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "SelectV2: incompatible shapes");
    recur_array *o = rc_kout(k, 0, a->dtype, os);
    if (!o) return recur_status_code(k->st);
    int64_t sc[RECUR_MAX_RANK], sa[RECUR_MAX_RANK], sb[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0};
    bcast_strides(c->shape, os, sc);
    bcast_strides(a->shape, os, sa);
    bcast_strides(b->shape, os, sb);
    size_t es = recur_dtype_size(a->dtype);
    const bool *pc = c->data;
    const char *pa = a->data, *pb = b->data;
    char *po = o->data;
    for (int64_t i = 0; i < o->size; i++) {
        int64_t oc = 0, oa = 0, ob = 0;
        for (int d = 0; d < os.rank; d++) {
            oc += idx[d] * sc[d];
            oa += idx[d] * sa[d];
            ob += idx[d] * sb[d];
        }
        memcpy(po + (size_t)i * es, pc[oc] ? pa + (size_t)oa * es : pb + (size_t)ob * es, es);
        for (int d = os.rank - 1; d >= 0; d--) {
            if (++idx[d] < os.dims[d]) break;
            idx[d] = 0;
        }
    }
    return RECUR_OK;
}

recur_tensor *recur_select(recur_graph *g, recur_tensor *cond, recur_tensor *a, recur_tensor *b)
{
    recur_tensor *in[3] = {cond, a, b};
    return rc_op1(g, RC_OP_SELECT, in, 3, NULL, NULL);
}

static bool grad_select(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *c = op->inputs[0];
    recur_tensor *z = recur_zeros_like(g, dy[0]);
    dx[0] = NULL;
    dx[1] = rc_sum_to(g, recur_select(g, c, dy[0], z), op->inputs[1]);
    dx[2] = rc_sum_to(g, recur_select(g, c, z, dy[0]), op->inputs[2]);
    return recur_graph_ok(g);
}

/* ================================================================== unary ops */

static bool unary_float_only(int type)
{
    return type != RC_OP_NEG && type != RC_OP_ABS && type != RC_OP_SQUARE && type != RC_OP_SIGN &&
           type != RC_OP_RELU && type != RC_OP_FLOOR;
}

static bool unary_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    bool ok = rc_dtype_is_float(x->dtype) || (!unary_float_only(op->type) && rc_dtype_is_int(x->dtype));
    if (!ok)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: dtype %s is not supported",
                       rc_op_def_of(op->type)->type, op->name, recur_dtype_name(x->dtype)), false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, x->shape);
    return true;
}

#define UN_EXPR(t, x)                                                                          \
    ((t) == RC_OP_NEG ? -(x) : (t) == RC_OP_EXP ? exp(x) : (t) == RC_OP_LOG ? log(x)           \
     : (t) == RC_OP_SQRT ? sqrt(x) : (t) == RC_OP_SQUARE ? (x) * (x)                           \
     : (t) == RC_OP_ABS ? ((x) < 0 ? -(x) : (x)) : (t) == RC_OP_SIGN ? (double)(((x) > 0) - ((x) < 0)) \
     : (t) == RC_OP_SIGMOID ? 1.0 / (1.0 + exp(-(x))) : (t) == RC_OP_TANH ? tanh(x)            \
     : (t) == RC_OP_FLOOR ? floor(x) : ((x) > 0 ? (x) : 0))

#define UN_REF(T)                                                                              \
    do {                                                                                       \
        const T *px = x->data;                                                                 \
        T *po = o->data;                                                                       \
        for (int64_t i = 0; i < x->size; i++) po[i] = (T)UN_EXPR(type, (double)px[i]);         \
    } while (0)

static recur_code unary_ref(rc_kctx *k)
{
    recur_array *x = k->in[0];
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    int type = k->op->type;
    RC_DISPATCH_NUM(x->dtype, UN_REF);
    return RECUR_OK;
}

/* Float kernels in single precision (libm's float functions). */
static recur_code unary_fast(rc_kctx *k)
{
    recur_array *x = k->in[0];
    if (x->dtype != RECUR_F32) return unary_ref(k);
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    const float *px = x->data;
    float *po = o->data;
    int64_t n = x->size;
    switch (k->op->type) {
    case RC_OP_NEG: for (int64_t i = 0; i < n; i++) po[i] = -px[i]; break;
    case RC_OP_EXP: for (int64_t i = 0; i < n; i++) po[i] = expf(px[i]); break;
    case RC_OP_LOG: for (int64_t i = 0; i < n; i++) po[i] = logf(px[i]); break;
    case RC_OP_SQRT: for (int64_t i = 0; i < n; i++) po[i] = sqrtf(px[i]); break;
    case RC_OP_SQUARE: for (int64_t i = 0; i < n; i++) po[i] = px[i] * px[i]; break;
    case RC_OP_ABS: for (int64_t i = 0; i < n; i++) po[i] = fabsf(px[i]); break;
    case RC_OP_SIGN: for (int64_t i = 0; i < n; i++) po[i] = (float)((px[i] > 0) - (px[i] < 0)); break;
    case RC_OP_SIGMOID: for (int64_t i = 0; i < n; i++) po[i] = 1.0f / (1.0f + expf(-px[i])); break;
    case RC_OP_TANH: for (int64_t i = 0; i < n; i++) po[i] = tanhf(px[i]); break;
    case RC_OP_FLOOR: for (int64_t i = 0; i < n; i++) po[i] = floorf(px[i]); break;
    default: for (int64_t i = 0; i < n; i++) po[i] = px[i] > 0 ? px[i] : 0; break;
    }
    return RECUR_OK;
}

static recur_tensor *unary(recur_graph *g, int type, recur_tensor *x) { return rc_op1(g, type, &x, 1, NULL, NULL); }
recur_tensor *recur_neg(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_NEG, x); }
recur_tensor *recur_exp(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_EXP, x); }
recur_tensor *recur_log(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_LOG, x); }
recur_tensor *recur_sqrt(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_SQRT, x); }
recur_tensor *recur_square(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_SQUARE, x); }
recur_tensor *recur_abs(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_ABS, x); }
recur_tensor *recur_sigmoid(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_SIGMOID, x); }
recur_tensor *recur_tanh(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_TANH, x); }
recur_tensor *recur_relu(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_RELU, x); }
recur_tensor *rc_sign(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_SIGN, x); }
recur_tensor *rc_floor(recur_graph *g, recur_tensor *x) { return unary(g, RC_OP_FLOOR, x); }

static recur_tensor *scalar_like(recur_graph *g, recur_tensor *x, double v)
{
    return recur_fill(g, x->dtype, RECUR_SCALAR, v);
}

static bool grad_unary(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0], *y = &op->outputs[0], *d = dy[0];
    switch (op->type) {
    case RC_OP_NEG: dx[0] = recur_neg(g, d); break;
    case RC_OP_EXP: dx[0] = recur_mul(g, d, y); break;
    case RC_OP_LOG: dx[0] = recur_div(g, d, x); break;
    case RC_OP_SQRT: dx[0] = recur_div(g, recur_mul(g, d, scalar_like(g, y, 0.5)), y); break;
    case RC_OP_SQUARE: dx[0] = recur_mul(g, d, recur_mul(g, x, scalar_like(g, x, 2.0))); break;
    case RC_OP_ABS: dx[0] = recur_mul(g, d, rc_sign(g, x)); break;
    case RC_OP_SIGN:
    case RC_OP_FLOOR: dx[0] = recur_zeros_like(g, x); break;
    case RC_OP_SIGMOID: {
        recur_tensor *in[2] = {y, d};
        dx[0] = rc_op1(g, RC_OP_SIGMOID_GRAD, in, 2, NULL, NULL);
        break;
    }
    case RC_OP_TANH: {
        recur_tensor *in[2] = {y, d};
        dx[0] = rc_op1(g, RC_OP_TANH_GRAD, in, 2, NULL, NULL);
        break;
    }
    default: {
        recur_tensor *in[2] = {d, y};
        dx[0] = rc_op1(g, RC_OP_RELU_GRAD, in, 2, NULL, NULL);
        break;
    }
    }
    return recur_graph_ok(g);
}

/* ---- SigmoidGrad(y, dy) = dy*y*(1-y); TanhGrad(y, dy) = dy*(1-y^2); ReluGrad(dy, y) = dy*(y>0) */

static bool pair_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *a = op->inputs[0], *b = op->inputs[1];
    if (a->dtype != b->dtype || !rc_dtype_is_float(a->dtype) || !rc_shape_compatible(a->shape, b->shape))
        return rc_shape_error(g, op, "Inputs must have the same float dtype and shape");
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, a->dtype, rc_shape_known(a->shape) ? a->shape : b->shape);
    return true;
}

#define PAIR_LOOP(T)                                                                           \
    do {                                                                                       \
        const T *p0 = a->data, *p1 = b->data;                                                  \
        T *po = o->data;                                                                       \
        for (int64_t i = 0; i < o->size; i++) {                                                \
            T u = p0[i], v = p1[i];                                                            \
            po[i] = type == RC_OP_SIGMOID_GRAD ? v * u * ((T)1 - u)                            \
                    : type == RC_OP_TANH_GRAD ? v * ((T)1 - u * u) : (v > 0 ? u : (T)0);       \
        }                                                                                      \
    } while (0)

static recur_code pair_kernel(rc_kctx *k)
{
    recur_array *a = k->in[0], *b = k->in[1];
    if (!rc_shape_equal(a->shape, b->shape)) {
        char x[256], y[256];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Inputs must have the same shape: %s vs. %s",
                       rc_shape_debug(a->shape, x, sizeof x), rc_shape_debug(b->shape, y, sizeof y));
    }
    recur_array *o = rc_kout(k, 0, a->dtype, a->shape);
    if (!o) return recur_status_code(k->st);
    int type = k->op->type;
    if (a->dtype == RECUR_F32)
        PAIR_LOOP(float);
    else
        PAIR_LOOP(double);
    return RECUR_OK;
}

static bool grad_sigmoid_grad(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* out = v*u*(1-u): d/du = v*(1-2u); d/dv = u*(1-u) */
    recur_tensor *u = op->inputs[0], *v = op->inputs[1], *d = dy[0];
    recur_tensor *one = scalar_like(g, u, 1.0), *two = scalar_like(g, u, 2.0);
    dx[0] = recur_mul(g, d, recur_mul(g, v, recur_sub(g, one, recur_mul(g, two, u))));
    recur_tensor *in[2] = {u, d};
    dx[1] = rc_op1(g, RC_OP_SIGMOID_GRAD, in, 2, NULL, NULL);
    return recur_graph_ok(g);
}

static bool grad_tanh_grad(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* out = v*(1-u^2): d/du = -2uv; d/dv = 1-u^2 */
    recur_tensor *u = op->inputs[0], *v = op->inputs[1], *d = dy[0];
    dx[0] = recur_mul(g, d, recur_mul(g, scalar_like(g, u, -2.0), recur_mul(g, u, v)));
    recur_tensor *in[2] = {u, d};
    dx[1] = rc_op1(g, RC_OP_TANH_GRAD, in, 2, NULL, NULL);
    return recur_graph_ok(g);
}

static bool grad_relu_grad(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *in[2] = {dy[0], op->inputs[1]};
    dx[0] = rc_op1(g, RC_OP_RELU_GRAD, in, 2, NULL, NULL);
    dx[1] = NULL;
    return recur_graph_ok(g);
}

/* ================================================================== clip */

static bool clip_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    if (!rc_dtype_is_float(x->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "ClipByValue %s: dtype %s is not supported", op->name,
                       recur_dtype_name(x->dtype)), false;
    if (op->attr.f[0] > op->attr.f[1])
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "ClipByValue %s: clip_value_min %g > clip_value_max %g",
                       op->name, op->attr.f[0], op->attr.f[1]), false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, x->shape);
    return true;
}

static recur_code clip_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    double lo = k->op->attr.f[0], hi = k->op->attr.f[1];
    for (int64_t i = 0; i < x->size; i++) {
        double v = rc_array_get(x, i);
        rc_array_set(o, i, v < lo ? lo : v > hi ? hi : v);
    }
    return RECUR_OK;
}

recur_tensor *recur_clip(recur_graph *g, recur_tensor *x, double lo, double hi)
{
    rc_attrs a = {0};
    a.f[0] = lo;
    a.f[1] = hi;
    return rc_op1(g, RC_OP_CLIP, &x, 1, NULL, &a);
}

static bool grad_clip(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *x = op->inputs[0];
    recur_tensor *lo = scalar_like(g, x, op->attr.f[0]), *hi = scalar_like(g, x, op->attr.f[1]);
    recur_tensor *z = recur_zeros_like(g, dy[0]);
    dx[0] = recur_select(g, recur_greater_equal(g, x, lo),
                         recur_select(g, recur_greater_equal(g, hi, x), dy[0], z), z);
    return recur_graph_ok(g);
}

/* ================================================================== matmul */

static bool matmul_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *a = op->inputs[0], *b = op->inputs[1];
    bool ta = op->attr.i[0], tb = op->attr.i[1];
    if (a->dtype != b->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Input 'b' of 'MatMul' Op has type %s that does not match type %s of argument 'a'.",
                       recur_dtype_name(b->dtype), recur_dtype_name(a->dtype)), false;
    if (!rc_dtype_is_float(a->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "MatMul %s: dtype %s is not supported (float, double)",
                       op->name, recur_dtype_name(a->dtype)), false;
    if ((a->shape.rank >= 0 && a->shape.rank != 2) || (b->shape.rank >= 0 && b->shape.rank != 2)) {
        char msg[128];
        snprintf(msg, sizeof msg, "Shape must be rank 2 but is rank %d",
                 a->shape.rank >= 0 && a->shape.rank != 2 ? a->shape.rank : b->shape.rank);
        return rc_shape_error(g, op, msg);
    }
    int64_t m = a->shape.rank == 2 ? a->shape.dims[ta ? 1 : 0] : -1;
    int64_t ka = a->shape.rank == 2 ? a->shape.dims[ta ? 0 : 1] : -1;
    int64_t kb = b->shape.rank == 2 ? b->shape.dims[tb ? 1 : 0] : -1;
    int64_t n = b->shape.rank == 2 ? b->shape.dims[tb ? 0 : 1] : -1;
    if (ka >= 0 && kb >= 0 && ka != kb) {
        char msg[128];
        snprintf(msg, sizeof msg, "Dimensions must be equal, but are %lld and %lld", (long long)ka, (long long)kb);
        return rc_shape_error(g, op, msg);
    }
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, a->dtype, RECUR_SHAPE(m, n));
    return true;
}

static recur_code matmul_prepare(rc_kctx *k, int64_t *m, int64_t *n, int64_t *kk, recur_array **o)
{
    recur_array *a = k->in[0], *b = k->in[1];
    bool ta = k->op->attr.i[0], tb = k->op->attr.i[1];
    if (a->shape.rank != 2 || b->shape.rank != 2)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "In[0] and In[1] must be matrices");
    *m = a->shape.dims[ta ? 1 : 0];
    *kk = a->shape.dims[ta ? 0 : 1];
    int64_t kb = b->shape.dims[tb ? 1 : 0];
    *n = b->shape.dims[tb ? 0 : 1];
    if (*kk != kb) {
        char x[128], y[128];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Matrix size-incompatible: In[0]: %s, In[1]: %s",
                       rc_shape_debug(a->shape, x, sizeof x), rc_shape_debug(b->shape, y, sizeof y));
    }
    *o = rc_kout(k, 0, a->dtype, RECUR_SHAPE(*m, *n));
    return *o ? RECUR_OK : recur_status_code(k->st);
}

static recur_code matmul_ref(rc_kctx *k)
{
    int64_t m, n, kk;
    recur_array *o, *a = k->in[0], *b = k->in[1];
    recur_code c = matmul_prepare(k, &m, &n, &kk, &o);
    if (c) return c;
    bool ta = k->op->attr.i[0], tb = k->op->attr.i[1];
    int64_t lda = a->shape.dims[1], ldb = b->shape.dims[1];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < kk; p++) {
                double x = rc_array_get(a, ta ? p * lda + i : i * lda + p);
                double y = rc_array_get(b, tb ? j * ldb + p : p * ldb + j);
                s += x * y;
            }
            rc_array_set(o, i * n + j, s);
        }
    return RECUR_OK;
}

static recur_code matmul_fast(rc_kctx *k)
{
    int64_t m, n, kk;
    recur_array *o, *a = k->in[0], *b = k->in[1];
    recur_code c = matmul_prepare(k, &m, &n, &kk, &o);
    if (c) return c;
    if (!m || !n) return RECUR_OK;
    bool ta = k->op->attr.i[0], tb = k->op->attr.i[1];
    if (!kk) {
        memset(o->data, 0, o->nbytes);
        return RECUR_OK;
    }
    int lda = (int)a->shape.dims[1], ldb = (int)b->shape.dims[1];
    if (a->dtype == RECUR_F32)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)kk, 1.0f, a->data, lda, b->data, ldb, 0.0f, o->data, (int)n);
    else
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)kk, 1.0, a->data, lda, b->data, ldb, 0.0, o->data, (int)n);
    return RECUR_OK;
}

recur_tensor *recur_matmul(recur_graph *g, recur_tensor *a, recur_tensor *b, bool transpose_a, bool transpose_b)
{
    recur_tensor *in[2] = {a, b};
    rc_attrs at = {0};
    at.i[0] = transpose_a;
    at.i[1] = transpose_b;
    return rc_op1(g, RC_OP_MATMUL, in, 2, NULL, &at);
}

static bool grad_matmul(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *a = op->inputs[0], *b = op->inputs[1], *d = dy[0];
    bool ta = op->attr.i[0], tb = op->attr.i[1];
    if (!ta && !tb) {
        dx[0] = recur_matmul(g, d, b, false, true);
        dx[1] = recur_matmul(g, a, d, true, false);
    } else if (!ta && tb) {
        dx[0] = recur_matmul(g, d, b, false, false);
        dx[1] = recur_matmul(g, d, a, true, false);
    } else if (ta && !tb) {
        dx[0] = recur_matmul(g, b, d, false, true);
        dx[1] = recur_matmul(g, a, d, false, false);
    } else {
        dx[0] = recur_matmul(g, b, d, true, true);
        dx[1] = recur_matmul(g, d, a, true, true);
    }
    return recur_graph_ok(g);
}

/* ================================================================== add_n */

static bool add_n_shape(recur_graph *g, recur_op *op)
{
    recur_shape s = op->inputs[0]->shape;
    for (int i = 1; i < op->ninputs; i++) {
        if (op->inputs[i]->dtype != op->inputs[0]->dtype)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "AddN %s: inputs must share one dtype", op->name), false;
        if (!rc_shape_compatible(s, op->inputs[i]->shape))
            return rc_shape_error(g, op, "Shapes must be equal");
        if (!rc_shape_known(s)) s = op->inputs[i]->shape;
    }
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, s);
    return true;
}

static recur_code add_n_kernel(rc_kctx *k)
{
    recur_array *x0 = k->in[0];
    for (int i = 1; i < k->op->ninputs; i++)
        if (!rc_shape_equal(k->in[i]->shape, x0->shape))
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "AddN: inputs must have the same shape");
    recur_array *o = rc_kout(k, 0, x0->dtype, x0->shape);
    if (!o) return recur_status_code(k->st);
    if (x0->dtype == RECUR_F32) {
        float *po = o->data;
        memcpy(po, x0->data, o->nbytes);
        for (int i = 1; i < k->op->ninputs; i++) {
            const float *p = k->in[i]->data;
            for (int64_t j = 0; j < o->size; j++) po[j] += p[j];
        }
    } else {
        for (int64_t j = 0; j < o->size; j++) {
            double s = 0;
            for (int i = 0; i < k->op->ninputs; i++) s += rc_array_get(k->in[i], j);
            rc_array_set(o, j, s);
        }
    }
    return RECUR_OK;
}

recur_tensor *recur_add_n(recur_graph *g, recur_tensor *const *xs, int n)
{
    if (!g) return NULL;
    if (n < 1 || !xs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "add_n needs at least one input");
    if (n == 1) return xs[0];
    return rc_op1(g, RC_OP_ADD_N, xs, n, NULL, NULL);
}

static bool grad_add_n(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    (void)g;
    for (int i = 0; i < op->ninputs; i++) dx[i] = dy[0];
    return true;
}

/* ================================================================== bias_add */

static bool bias_add_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0], *b = op->inputs[1];
    if (x->dtype != b->dtype || !rc_dtype_is_float(x->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "BiasAdd %s: value and bias must share a float dtype", op->name), false;
    if (b->shape.rank >= 0 && b->shape.rank != 1) return rc_shape_error(g, op, "Shape must be rank 1 but is rank 2");
    if (x->shape.rank >= 0 && x->shape.rank < 2) return rc_shape_error(g, op, "Shape must be at least rank 2");
    int64_t c = x->shape.rank > 0 ? x->shape.dims[x->shape.rank - 1] : -1;
    int64_t bc = b->shape.rank == 1 ? b->shape.dims[0] : -1;
    if (c >= 0 && bc >= 0 && c != bc) {
        char msg[128];
        snprintf(msg, sizeof msg, "Dimensions must be equal, but are %lld and %lld", (long long)c, (long long)bc);
        return rc_shape_error(g, op, msg);
    }
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, x->shape);
    return true;
}

static recur_code bias_add_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0], *b = k->in[1];
    int64_t c = x->shape.rank ? x->shape.dims[x->shape.rank - 1] : 0;
    if (b->shape.rank != 1 || b->shape.dims[0] != c)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Must provide as many biases as the last dimension of the input "
                       "tensor: %lld vs. %lld", (long long)b->size, (long long)c);
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    if (x->dtype == RECUR_F32) {
        const float *px = x->data, *pb = b->data;
        float *po = o->data;
        for (int64_t r = 0; r < x->size; r += c)
            for (int64_t j = 0; j < c; j++) po[r + j] = px[r + j] + pb[j];
    } else {
        const double *px = x->data, *pb = b->data;
        double *po = o->data;
        for (int64_t r = 0; r < x->size; r += c)
            for (int64_t j = 0; j < c; j++) po[r + j] = px[r + j] + pb[j];
    }
    return RECUR_OK;
}

recur_tensor *recur_bias_add(recur_graph *g, recur_tensor *x, recur_tensor *bias)
{
    recur_tensor *in[2] = {x, bias};
    return rc_op1(g, RC_OP_BIAS_ADD, in, 2, NULL, NULL);
}

static bool grad_bias_add(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = dy[0];
    int r = op->inputs[0]->shape.rank;
    if (r < 0) r = dy[0]->shape.rank;
    int axes[RECUR_MAX_RANK];
    for (int i = 0; i < r - 1; i++) axes[i] = i;
    dx[1] = r > 1 ? recur_reduce_sum(g, dy[0], axes, r - 1, false) : dy[0];
    return recur_graph_ok(g);
}

/* ================================================================== cast */

static bool cast_shape(recur_graph *g, recur_op *op)
{
    recur_dtype to = (recur_dtype)op->attr.i[0];
    if (!rc_dtype_valid(to) || !rc_dtype_valid(op->inputs[0]->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Cast %s: unsupported dtype", op->name), false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, to, op->inputs[0]->shape);
    return true;
}

static recur_code cast_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    recur_array *o = rc_kout(k, 0, (recur_dtype)k->op->attr.i[0], x->shape);
    if (!o) return recur_status_code(k->st);
    if (x->dtype == o->dtype) {
        if (o->nbytes) memcpy(o->data, x->data, o->nbytes);
    } else if (x->dtype == RECUR_F32 && o->dtype == RECUR_F64) {
        for (int64_t i = 0; i < x->size; i++) ((double *)o->data)[i] = ((float *)x->data)[i];
    } else {
        for (int64_t i = 0; i < x->size; i++) rc_array_set(o, i, rc_array_get(x, i));
    }
    return RECUR_OK;
}

recur_tensor *recur_cast(recur_graph *g, recur_tensor *x, recur_dtype dt)
{
    if (x && x->dtype == dt && g && recur_graph_ok(g)) return x;
    rc_attrs a = {0};
    a.i[0] = dt;
    return rc_op1(g, RC_OP_CAST, &x, 1, NULL, &a);
}

static bool grad_cast(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    bool f_in = rc_dtype_is_float(op->inputs[0]->dtype), f_out = rc_dtype_is_float(op->outputs[0].dtype);
    dx[0] = f_in && f_out ? recur_cast(g, dy[0], op->inputs[0]->dtype) : NULL;
    return recur_graph_ok(g);
}

/* ================================================================== SumToShape / BroadcastLike */

/* SumToShape(grad, like): sum grad over the dims where `like` was broadcast. */
static bool sum_to_shape_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[1]->shape);
    return true;
}

static recur_code sum_to_shape_kernel(rc_kctx *k)
{
    recur_array *gr = k->in[0], *like = k->in[1];
    recur_shape bs;
    if (!rc_broadcast_runtime(gr->shape, like->shape, &bs) || !rc_shape_equal(bs, gr->shape))
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "SumToShape: shapes do not broadcast");
    /* nothing to sum (the shapes were only unknown when the graph was built): the input itself */
    if (rc_shape_equal(gr->shape, like->shape)) {
        rc_kforward(k, 0, 0);
        return RECUR_OK;
    }
    recur_array *o = rc_kout(k, 0, gr->dtype, like->shape);
    if (!o) return recur_status_code(k->st);
    if (o->nbytes) memset(o->data, 0, o->nbytes);
    int64_t inner;
    if (gr->dtype == RECUR_F32 && like->size && (inner = leading(like->shape, gr->shape)) > 0) {
        /* like [i, 1, 1] against [i, j, k]: a sum over each block of j k values */
        const float *pg = gr->data;
        float *po = o->data;
        for (int64_t r = 0; r < like->size; r++) {
            float acc = 0;
            for (int64_t j = 0; j < inner; j++) acc += pg[r * inner + j];
            po[r] = acc;
        }
        return RECUR_OK;
    }
    if (gr->dtype == RECUR_F32 && like->size && trailing(like->shape, gr->shape)) {
        /* like [k] against [i, j, k]: column sums */
        const float *pg = gr->data;
        float *po = o->data;
        for (int64_t r = 0, m = like->size; r < gr->size; r += m)
            for (int64_t j = 0; j < m; j++) po[j] += pg[r + j];
        return RECUR_OK;
    }
    int64_t st[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0};
    bcast_strides(like->shape, gr->shape, st);
    int r = gr->shape.rank;
    for (int64_t i = 0, off = 0; i < gr->size; i++) {
        if (gr->dtype == RECUR_F32)
            ((float *)o->data)[off] += ((float *)gr->data)[i];
        else
            rc_array_set(o, off, rc_array_get(o, off) + rc_array_get(gr, i));
        for (int d = r - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < gr->shape.dims[d]) break;
            off -= st[d] * gr->shape.dims[d];
            idx[d] = 0;
        }
    }
    return RECUR_OK;
}

static bool grad_sum_to_shape(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *in[2] = {dy[0], op->inputs[0]};
    dx[0] = rc_op1(g, RC_OP_BROADCAST_LIKE, in, 2, NULL, NULL);
    dx[1] = NULL;
    return recur_graph_ok(g);
}

/* BroadcastLike(x, like): broadcast x to like's runtime shape. */
static bool broadcast_like_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[1]->shape);
    return true;
}

static recur_code broadcast_like_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0], *like = k->in[1];
    recur_shape bs;
    if (!rc_broadcast_runtime(x->shape, like->shape, &bs) || !rc_shape_equal(bs, like->shape))
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "BroadcastLike: shapes do not broadcast");
    recur_array *o = rc_kout(k, 0, x->dtype, like->shape);
    if (!o) return recur_status_code(k->st);
    size_t es = recur_dtype_size(x->dtype);
    if (x->shape.rank == like->shape.rank && x->size) {
        /* x keeps like's dims except one contiguous block of 1s: [outer, 1, inner] */
        int r = x->shape.rank, first = -1, last = -1;
        bool ok = true;
        for (int i = 0; i < r && ok; i++)
            if (x->shape.dims[i] != like->shape.dims[i]) {
                ok = x->shape.dims[i] == 1 && (first < 0 || last == i - 1);
                if (first < 0) first = i;
                last = i;
            }
        if (ok && first >= 0) {
            int64_t outer = 1, mid = 1, inner = 1;
            for (int i = 0; i < first; i++) outer *= like->shape.dims[i];
            for (int i = first; i <= last; i++) mid *= like->shape.dims[i];
            for (int i = last + 1; i < r; i++) inner *= like->shape.dims[i];
            size_t rb = (size_t)inner * es;
            for (int64_t a = 0; a < outer; a++)
                for (int64_t m = 0; m < mid; m++)
                    memcpy((char *)o->data + ((size_t)(a * mid + m)) * rb, (char *)x->data + (size_t)a * rb, rb);
            return RECUR_OK;
        }
    }
    bwalk w;
    bwalk_init(&w, x->shape, like->shape, like->shape);
    for (int64_t i = 0; i < o->size; i++, bwalk_next(&w))
        memcpy((char *)o->data + (size_t)i * es, (char *)x->data + (size_t)w.oa * es, es);
    return RECUR_OK;
}

static bool grad_broadcast_like(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = rc_sum_to(g, dy[0], op->inputs[0]);
    dx[1] = NULL;
    return recur_graph_ok(g);
}

/* ================================================================== descriptors */

#define BINARY_DEF(sym, tfname, nm, gradfn, fl)                                                \
    const rc_op_def rc_def_##sym = {.type = tfname, .name = nm, .min_inputs = 2, .max_inputs = 2, .flags = fl, .shape = binary_shape, .forward = binary_fast, .reference = binary_ref, .grad = gradfn};
BINARY_DEF(add, "AddV2", "Add", grad_add, 0)
BINARY_DEF(sub, "Sub", NULL, grad_add, 0)
BINARY_DEF(mul, "Mul", NULL, grad_mul, 0)
BINARY_DEF(div, "RealDiv", "truediv", grad_div, 0)
BINARY_DEF(maximum, "Maximum", NULL, grad_minmax, 0)
BINARY_DEF(minimum, "Minimum", NULL, grad_minmax, 0)
BINARY_DEF(less, "Less", NULL, NULL, RC_OPF_NO_GRAD)
BINARY_DEF(greater_equal, "GreaterEqual", NULL, NULL, RC_OPF_NO_GRAD)
BINARY_DEF(equal, "Equal", NULL, NULL, RC_OPF_NO_GRAD)

#define UNARY_DEF(sym, tfname)                                                                 \
    const rc_op_def rc_def_##sym = {.type = tfname, .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = unary_shape, .forward = unary_fast, .reference = unary_ref, .grad = grad_unary};
UNARY_DEF(neg, "Neg")
UNARY_DEF(exp, "Exp")
UNARY_DEF(log, "Log")
UNARY_DEF(sqrt, "Sqrt")
UNARY_DEF(square, "Square")
UNARY_DEF(abs, "Abs")
UNARY_DEF(sign, "Sign")
UNARY_DEF(sigmoid, "Sigmoid")
UNARY_DEF(tanh, "Tanh")
UNARY_DEF(relu, "Relu")
UNARY_DEF(floor, "Floor")

const rc_op_def rc_def_sigmoid_grad = {.type = "SigmoidGrad", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = pair_shape, .forward = pair_kernel, .reference = NULL, .grad = grad_sigmoid_grad};
const rc_op_def rc_def_tanh_grad = {.type = "TanhGrad", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = pair_shape, .forward = pair_kernel, .reference = NULL, .grad = grad_tanh_grad};
const rc_op_def rc_def_relu_grad = {.type = "ReluGrad", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = pair_shape, .forward = pair_kernel, .reference = NULL, .grad = grad_relu_grad};
const rc_op_def rc_def_select = {.type = "SelectV2", .name = NULL, .min_inputs = 3, .max_inputs = 3, .flags = 0, .shape = select_shape, .forward = select_kernel, .reference = NULL, .grad = grad_select};
const rc_op_def rc_def_clip = {.type = "ClipByValue", .name = "clip_by_value", .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = clip_shape, .forward = clip_kernel, .reference = NULL, .grad = grad_clip};
const rc_op_def rc_def_matmul = {.type = "MatMul", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = matmul_shape, .forward = matmul_fast, .reference = matmul_ref, .grad = grad_matmul};
const rc_op_def rc_def_add_n = {.type = "AddN", .name = NULL, .min_inputs = 1, .max_inputs = -1, .flags = 0, .shape = add_n_shape, .forward = add_n_kernel, .reference = NULL, .grad = grad_add_n};
const rc_op_def rc_def_bias_add = {.type = "BiasAdd", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = bias_add_shape, .forward = bias_add_kernel, .reference = NULL, .grad = grad_bias_add};
const rc_op_def rc_def_cast = {.type = "Cast", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = cast_shape, .forward = cast_kernel, .reference = NULL, .grad = grad_cast};
const rc_op_def rc_def_sum_to_shape = {.type = "SumToShape", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = sum_to_shape_shape, .forward = sum_to_shape_kernel, .reference = NULL, .grad = grad_sum_to_shape};
const rc_op_def rc_def_broadcast_like = {.type = "BroadcastLike", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = broadcast_like_shape, .forward = broadcast_like_kernel, .reference = NULL, .grad = grad_broadcast_like};
