/*
 * array.c - shape manipulation and indexing: concat, split, slice, reshape, transpose,
 * expand_dims, stack/unstack, gather (embedding lookup) and its scatter-add gradient,
 * reverse / reverse_sequence, fill, zeros_like / ones_like, sequence_mask.
 */
#include "ops/ops.h"

static bool set1(recur_graph *g, recur_op *op, recur_dtype dt, recur_shape s)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, dt, s);
    return true;
}

static int64_t *ivec_dup(const int64_t *v, int n)
{
    int64_t *c = rc_malloc((size_t)(n ? n : 1) * sizeof *c);
    if (c && n) memcpy(c, v, (size_t)n * sizeof *c);
    return c;
}

/* Row-major strides of a shape. */
static void strides_of(recur_shape s, int64_t *st)
{
    int64_t acc = 1;
    for (int i = s.rank - 1; i >= 0; i--) {
        st[i] = acc;
        acc *= s.dims[i];
    }
}

/* outer = product of dims before axis, inner = product after. */
static void split_dims(recur_shape s, int axis, int64_t *outer, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= s.dims[i];
    for (int i = axis + 1; i < s.rank; i++) *inner *= s.dims[i];
}

/* ================================================================== concat */

static bool concat_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x0 = op->inputs[0];
    int rank = -1;
    for (int i = 0; i < op->ninputs; i++) {
        if (op->inputs[i]->dtype != x0->dtype)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "ConcatV2 %s: all inputs must have dtype %s (input %d is %s)",
                           op->name, recur_dtype_name(x0->dtype), i, recur_dtype_name(op->inputs[i]->dtype)), false;
        if (op->inputs[i]->shape.rank >= 0) {
            if (rank >= 0 && rank != op->inputs[i]->shape.rank)
                return rc_shape_error(g, op, "Shape must be of the same rank for all inputs");
            rank = op->inputs[i]->shape.rank;
        }
    }
    if (rank < 0) return set1(g, op, x0->dtype, RECUR_UNKNOWN_SHAPE);
    int axis;
    if (!rc_norm_axis((int)op->attr.i[0], rank, &axis)) {
        char m[128];
        snprintf(m, sizeof m, "Expected concatenating dimensions in the range [%d, %d), but got %d", -rank, rank,
                 (int)op->attr.i[0]);
        return rc_shape_error(g, op, m);
    }
    op->attr.i[1] = axis;
    recur_shape out = {.rank = rank};
    for (int d = 0; d < rank; d++) out.dims[d] = d == axis ? 0 : -1;
    for (int i = 0; i < op->ninputs; i++) {
        recur_shape s = op->inputs[i]->shape;
        if (s.rank < 0) {
            out.dims[axis] = -1;
            continue;
        }
        for (int d = 0; d < rank; d++) {
            if (d == axis) {
                out.dims[d] = out.dims[d] < 0 || s.dims[d] < 0 ? -1 : out.dims[d] + s.dims[d];
            } else if (s.dims[d] >= 0) {
                if (out.dims[d] >= 0 && out.dims[d] != s.dims[d]) {
                    char m[160];
                    snprintf(m, sizeof m, "Dimension %d in both shapes must be equal, but are %lld and %lld", d,
                             (long long)out.dims[d], (long long)s.dims[d]);
                    return rc_shape_error(g, op, m);
                }
                out.dims[d] = s.dims[d];
            }
        }
    }
    return set1(g, op, x0->dtype, out);
}

/* Rows [lo, hi) of a concat (gather: every part's row into the whole row) or of a split (the
 * reverse): the parts are the kernel's inputs (concat) or outputs (split, inputs from 1 on
 * ignored), each part's row its size along the axis times `inner` elements. */
typedef struct pieces {
    rc_kctx *k;
    int n, axis;
    void *whole;
    size_t wrow, es;
    int64_t inner;
    bool gather;
} pieces;

static void copy_pieces(void *arg, int64_t lo, int64_t hi)
{
    const pieces *p = arg;
    size_t off = 0;
    for (int i = 0; i < p->n; i++) {
        recur_array *a = p->gather ? p->k->in[i] : p->k->out[i];
        size_t row = (size_t)(a->shape.dims[p->axis] * p->inner) * p->es;
        for (int64_t r = lo; r < hi; r++) {
            char *w = (char *)p->whole + (size_t)r * p->wrow + off, *part = (char *)a->data + (size_t)r * row;
            if (p->gather) memcpy(w, part, row);
            else memcpy(part, w, row);
        }
        off += row;
    }
}

static recur_code concat_kernel(rc_kctx *k)
{
    int n = k->op->ninputs;
    recur_array *x0 = k->in[0];
    int rank = x0->shape.rank, axis = (int)k->op->attr.i[1];
    recur_shape out = x0->shape;
    out.dims[axis] = 0;
    for (int i = 0; i < n; i++) {
        recur_shape s = k->in[i]->shape;
        if (s.rank != rank) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "ConcatOp : Ranks of all input tensors should match");
        for (int d = 0; d < rank; d++)
            if (d != axis && s.dims[d] != x0->shape.dims[d]) {
                char a[128], b[128];
                return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                               "ConcatOp : Dimension %d in both shapes must be equal: shape[0] = %s vs. shape[%d] = %s",
                               d, rc_shape_debug(x0->shape, a, sizeof a), i, rc_shape_debug(s, b, sizeof b));
            }
        out.dims[axis] += s.dims[axis];
    }
    recur_array *o = rc_kout(k, 0, x0->dtype, out);
    if (!o) return recur_status_code(k->st);
    int64_t outer, inner;
    split_dims(out, axis, &outer, &inner);
    size_t es = recur_dtype_size(x0->dtype);
    pieces p = {.k = k, .n = n, .whole = o->data, .wrow = (size_t)(out.dims[axis] * inner) * es, .es = es, .inner = inner,
                .axis = axis, .gather = true};
    rc_kfor2(k, outer, (int64_t)((256u << 10) / RC_MAX(p.wrow, 1)) + 1, copy_pieces, &p);
    return RECUR_OK;
}

recur_tensor *recur_concat(recur_graph *g, recur_tensor *const *xs, int n, int axis)
{
    if (!g) return NULL;
    if (n < 1 || !xs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "concat needs at least one input");
    if (!rc_gready(g, xs, n)) return NULL;
    rc_attrs a = {0};
    a.i[0] = axis;
    return rc_op1(g, RC_OP_CONCAT, xs, n, NULL, &a);
}

static recur_op *split_like(recur_graph *g, recur_tensor *x, recur_tensor *const *likes, int n, int axis);

static bool grad_concat(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_op *s = split_like(g, dy[0], op->inputs, op->ninputs, (int)op->attr.i[1]);
    if (!s) return false;
    for (int i = 0; i < op->ninputs; i++) dx[i] = &s->outputs[i];
    return true;
}

/* ================================================================== split */
/* Split(x): attr i[0] = n equal parts, i[1] = axis. Split(x, like_1..like_n): part i has the
 * runtime size of like_i along the axis (used by gradients). */

static bool split_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    bool likes = op->ninputs > 1;
    int n = likes ? op->ninputs - 1 : (int)op->attr.i[0];
    if (n < 1) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Split %s: num_split must be >= 1", op->name), false;
    if (!rc_set_outputs(op, n)) return rc_goom(g), false;
    if (x->shape.rank < 0) {
        for (int i = 0; i < n; i++) rc_set_output(op, i, x->dtype, likes ? op->inputs[i + 1]->shape : RECUR_UNKNOWN_SHAPE);
        return true;
    }
    int axis;
    if (!rc_norm_axis((int)op->attr.i[1], x->shape.rank, &axis)) {
        char m[128];
        snprintf(m, sizeof m, "Dimension must be in range [%d, %d), but got %d", -x->shape.rank, x->shape.rank,
                 (int)op->attr.i[1]);
        return rc_shape_error(g, op, m);
    }
    op->attr.i[2] = axis;
    for (int i = 0; i < n; i++) {
        recur_shape s = x->shape;
        if (likes) {
            s.dims[axis] = op->inputs[i + 1]->shape.rank > axis ? op->inputs[i + 1]->shape.dims[axis] : -1;
        } else if (s.dims[axis] >= 0) {
            if (s.dims[axis] % n) {
                char m[160];
                snprintf(m, sizeof m, "Dimension size must be evenly divisible by %d but is %lld", n,
                         (long long)s.dims[axis]);
                return rc_shape_error(g, op, m);
            }
            s.dims[axis] /= n;
        }
        rc_set_output(op, i, x->dtype, s);
    }
    return true;
}

static recur_code split_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int n = k->op->noutputs, axis = (int)k->op->attr.i[2];
    bool likes = k->op->ninputs > 1;
    int64_t total = 0, sizes[64], *sz = n <= 64 ? sizes : rc_malloc((size_t)n * sizeof *sz);
    if (!sz) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    for (int i = 0; i < n; i++) {
        sz[i] = likes ? k->in[i + 1]->shape.dims[axis] : x->shape.dims[axis] / n;
        total += sz[i];
    }
    recur_code c = RECUR_OK;
    if (total != x->shape.dims[axis] || (!likes && x->shape.dims[axis] % n)) {
        c = rc_kerr(k, RECUR_INVALID_ARGUMENT, "Number of ways to split should evenly divide the split dimension, "
                    "but got split_dim %d (size = %lld) and num_split %d",
                    axis, (long long)x->shape.dims[axis], n);
        goto done;
    }
    int64_t outer, inner;
    split_dims(x->shape, axis, &outer, &inner);
    for (int i = 0; i < n; i++) {
        recur_shape s = x->shape;
        s.dims[axis] = sz[i];
        if (!rc_kout(k, i, x->dtype, s)) {
            c = recur_status_code(k->st);
            goto done;
        }
    }
    size_t es = recur_dtype_size(x->dtype);
    pieces p = {.k = k, .n = n, .whole = x->data, .wrow = (size_t)(x->shape.dims[axis] * inner) * es, .es = es, .inner = inner,
                .axis = axis, .gather = false};
    rc_kfor2(k, outer, (int64_t)((256u << 10) / RC_MAX(p.wrow, 1)) + 1, copy_pieces, &p);
done:
    if (sz != sizes) rc_free(sz);
    return c;
}

static recur_op *split_like(recur_graph *g, recur_tensor *x, recur_tensor *const *likes, int n, int axis)
{
    recur_tensor *in[65];
    if (n > 64) return rc_gerr(g, RECUR_UNIMPLEMENTED, "split: at most 64 parts");
    in[0] = x;
    memcpy(in + 1, likes, (size_t)n * sizeof *likes);
    rc_attrs a = {0};
    a.i[0] = n;
    a.i[1] = axis;
    return rc_op_new(g, RC_OP_SPLIT, in, n + 1, NULL, &a);
}

bool recur_split(recur_graph *g, recur_tensor *x, int n, int axis, recur_tensor **out)
{
    if (!rc_gready(g, &x, 1)) return false;
    if (!out || n < 1 || n > 4096)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "split: num_split must be in [1, 4096], got %d", n), false;
    rc_attrs a = {0};
    a.i[0] = n;
    a.i[1] = axis;
    recur_op *op = rc_op_new(g, RC_OP_SPLIT, &x, 1, NULL, &a);
    if (!op) return false;
    for (int i = 0; i < n; i++) out[i] = &op->outputs[i];
    return true;
}

static bool grad_split(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    int n = op->noutputs;
    recur_tensor **parts = rc_malloc((size_t)n * sizeof *parts);
    if (!parts) return rc_goom(g), false;
    for (int i = 0; i < n; i++) parts[i] = dy[i] ? dy[i] : recur_zeros_like(g, &op->outputs[i]);
    dx[0] = recur_concat(g, parts, n, (int)op->attr.i[2]);
    rc_free(parts);
    for (int i = 1; i < op->ninputs; i++) dx[i] = NULL;
    return recur_graph_ok(g);
}

/* ================================================================== slice */
/* attr ivec = begin[rank] then size[rank] (size -1: to the end). */

static bool slice_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    int r = op->attr.nivec / 2;
    if (x->shape.rank >= 0 && x->shape.rank != r) {
        char m[128];
        snprintf(m, sizeof m, "Shape must be rank %d but is rank %d", r, x->shape.rank);
        return rc_shape_error(g, op, m);
    }
    recur_shape out = {.rank = r};
    for (int i = 0; i < r; i++) {
        int64_t b = op->attr.ivec[i], s = op->attr.ivec[r + i], d = x->shape.rank >= 0 ? x->shape.dims[i] : -1;
        /* s > d - b rather than b + s > d: a huge size must not overflow int64 */
        if (b < 0 || s < -1 || (d >= 0 && (b > d || (s >= 0 && s > d - b)))) {
            char m[200];
            snprintf(m, sizeof m, "Expected begin[%d] in [0, %lld] and size[%d] in [0, %lld], but got %lld and %lld", i,
                     (long long)d, i, (long long)(b >= 0 && b <= d ? d - b : d), (long long)b, (long long)s);
            return rc_shape_error(g, op, m);
        }
        out.dims[i] = s >= 0 ? s : d >= 0 ? d - b : -1;
    }
    return set1(g, op, x->dtype, out);
}

/* Copy a box of x (begin, size) into a dense o, or (scatter) o's box from a dense x. */
static void copy_box(const recur_array *big, recur_array *small_or_big, const int64_t *begin, recur_shape box,
                     bool gather_from_big, const recur_array *src_small)
{
    int r = box.rank;
    int64_t bst[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0};
    strides_of(big->shape, bst);
    size_t es = recur_dtype_size(big->dtype);
    int64_t n;
    if (!rc_shape_count(box, &n) || n == 0) return;
    int64_t inner = r ? box.dims[r - 1] : 1;
    for (int64_t i = 0; i < n; i += inner) {
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += (begin[d] + idx[d]) * bst[d];
        if (gather_from_big)
            memcpy((char *)small_or_big->data + (size_t)i * es, (const char *)big->data + (size_t)off * es, (size_t)inner * es);
        else
            memcpy((char *)small_or_big->data + (size_t)off * es, (const char *)src_small->data + (size_t)i * es,
                   (size_t)inner * es);
        for (int d = r - 2; d >= 0; d--) {
            if (++idx[d] < box.dims[d]) break;
            idx[d] = 0;
        }
    }
}

static recur_code slice_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int r = k->op->attr.nivec / 2;
    if (x->shape.rank != r) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Slice: input must be rank %d", r);
    recur_shape box = {.rank = r};
    const int64_t *begin = k->op->attr.ivec;
    for (int i = 0; i < r; i++) {
        int64_t s = k->op->attr.ivec[r + i];
        box.dims[i] = s >= 0 ? s : x->shape.dims[i] - begin[i];
        if (begin[i] > x->shape.dims[i] || box.dims[i] > x->shape.dims[i] - begin[i] || box.dims[i] < 0)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                           "Expected size[%d] in [0, %lld], but got %lld", i,
                           (long long)(x->shape.dims[i] - begin[i]), (long long)box.dims[i]);
    }
    recur_array *o = rc_kout(k, 0, x->dtype, box);
    if (!o) return recur_status_code(k->st);
    copy_box(x, o, begin, box, true, NULL);
    return RECUR_OK;
}

recur_tensor *recur_slice(recur_graph *g, recur_tensor *x, const int64_t *begin, const int64_t *size)
{
    if (!rc_gready(g, &x, 1)) return NULL;
    int r = x->shape.rank;
    if (r < 0) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "slice: the input's rank must be known");
    if (!begin || !size) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "slice: begin and size are required");
    rc_attrs a = {0};
    a.ivec = rc_malloc((size_t)(2 * r + 1) * sizeof *a.ivec);
    if (!a.ivec) return rc_goom(g);
    memcpy(a.ivec, begin, (size_t)r * sizeof *begin);
    memcpy(a.ivec + r, size, (size_t)r * sizeof *size);
    a.nivec = 2 * r;
    return rc_op1(g, RC_OP_SLICE, &x, 1, NULL, &a);
}

/* SliceGrad(dy, x): zeros shaped like x with dy placed at begin. */
static bool slice_grad_shape(recur_graph *g, recur_op *op)
{
    return set1(g, op, op->inputs[0]->dtype, op->inputs[1]->shape);
}

static recur_code slice_grad_kernel(rc_kctx *k)
{
    recur_array *dy = k->in[0], *x = k->in[1];
    recur_array *o = rc_kout(k, 0, dy->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    if (o->nbytes) memset(o->data, 0, o->nbytes);
    copy_box(o, o, k->op->attr.ivec, dy->shape, false, dy);
    return RECUR_OK;
}

static bool grad_slice(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *in[2] = {dy[0], op->inputs[0]};
    rc_attrs a = {0};
    a.ivec = ivec_dup(op->attr.ivec, op->attr.nivec);
    if (!a.ivec) return rc_goom(g), false;
    a.nivec = op->attr.nivec;
    dx[0] = rc_op1(g, RC_OP_SLICE_GRAD, in, 2, NULL, &a);
    return dx[0] != NULL;
}

static bool grad_slice_grad(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* SliceGrad(d, x) places d in a box; its gradient takes the same box back out. */
    recur_tensor *d = op->inputs[0];
    int r = op->attr.nivec / 2;
    int64_t size[RECUR_MAX_RANK];
    for (int i = 0; i < r; i++) size[i] = d->shape.rank == r ? d->shape.dims[i] : -1;
    for (int i = 0; i < r; i++)
        if (size[i] < 0) return rc_gerr(g, RECUR_UNIMPLEMENTED, "second derivative of Slice needs static shapes"), false;
    dx[0] = recur_slice(g, dy[0], op->attr.ivec, size);
    dx[1] = NULL;
    return dx[0] != NULL;
}

/* ================================================================== reshape */
/* Reshape(x) to attr.shape (one -1 allowed), or Reshape(x, like) to like's runtime shape. */

static bool reshape_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    if (op->ninputs == 2) return set1(g, op, x->dtype, op->inputs[1]->shape);
    recur_shape t = op->attr.shape;
    int unknown = -1;
    int64_t known = 1;
    bool zero = false, overflow = false;
    for (int i = 0; i < t.rank; i++) {
        if (t.dims[i] == -1) {
            if (unknown >= 0) return rc_shape_error(g, op, "Cannot infer multiple unknown dimensions");
            unknown = i;
        } else if (t.dims[i] < -1) {
            return rc_shape_error(g, op, "Size must be non-negative or -1");
        } else if (t.dims[i] == 0) {
            zero = true;
        } else if (known > INT64_MAX / t.dims[i]) {
            overflow = true; /* the product would overflow int64 (undefined behaviour) */
        } else {
            known *= t.dims[i];
        }
    }
    if (zero) known = 0;
    else if (overflow) return rc_shape_error(g, op, "Target shape has too many elements (more than 2^63 - 1)");
    int64_t n;
    if (rc_shape_count(x->shape, &n)) {
        if (unknown >= 0) {
            if (known == 0 || n % known) {
                char m[160];
                snprintf(m, sizeof m, "Cannot reshape a tensor with %lld elements to shape", (long long)n);
                return rc_shape_error(g, op, m);
            }
            t.dims[unknown] = n / known;
        } else if (n != known) {
            char m[200], s[128];
            snprintf(m, sizeof m, "Cannot reshape a tensor with %lld elements to shape %s (%lld elements)",
                     (long long)n, rc_shape_debug(t, s, sizeof s), (long long)known);
            return rc_shape_error(g, op, m);
        }
    }
    return set1(g, op, x->dtype, t);
}

static recur_code reshape_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    recur_shape t;
    if (k->op->ninputs == 2) {
        t = k->in[1]->shape;
    } else {
        t = k->op->attr.shape;
        int unknown = -1;
        int64_t known = 1;
        for (int i = 0; i < t.rank; i++) {
            if (t.dims[i] < 0)
                unknown = i;
            else
                known *= t.dims[i];
        }
        if (unknown >= 0) {
            if (known == 0 || x->size % known) {
                char s[128];
                return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Input to reshape is a tensor with %lld values, but the "
                               "requested shape requires a multiple of %lld (%s)",
                               (long long)x->size, (long long)known, rc_shape_debug(k->op->attr.shape, s, sizeof s));
            }
            t.dims[unknown] = x->size / known;
        }
    }
    int64_t n;
    if (!rc_shape_count(t, &n) || n != x->size) {
        char s[128];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                       "Input to reshape is a tensor with %lld values, but the requested shape has %lld (%s)",
                       (long long)x->size, (long long)n, rc_shape_debug(t, s, sizeof s));
    }
    recur_array *o = rc_kout(k, 0, x->dtype, t);
    if (!o) return recur_status_code(k->st);
    if (o->nbytes) memcpy(o->data, x->data, o->nbytes);
    return RECUR_OK;
}

recur_tensor *recur_reshape(recur_graph *g, recur_tensor *x, recur_shape shape)
{
    if (!rc_gready(g, &x, 1)) return NULL;
    if (shape.rank < 0 || shape.rank > RECUR_MAX_RANK)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "reshape: the target rank must be in [0, %d]", RECUR_MAX_RANK);
    rc_attrs a = {.shape = shape};
    return rc_op1(g, RC_OP_RESHAPE, &x, 1, NULL, &a);
}

recur_tensor *rc_reshape_like(recur_graph *g, recur_tensor *x, recur_tensor *like)
{
    if (x && like && rc_shape_known(like->shape) && rc_shape_equal(x->shape, like->shape)) return x;
    recur_tensor *in[2] = {x, like};
    return rc_op1(g, RC_OP_RESHAPE, in, 2, NULL, NULL);
}

static bool grad_reshape(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = rc_reshape_like(g, dy[0], op->inputs[0]);
    if (op->ninputs == 2) dx[1] = NULL;
    return dx[0] != NULL;
}

/* ================================================================== expand_dims */

static bool expand_dims_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    if (x->shape.rank < 0) return set1(g, op, x->dtype, RECUR_UNKNOWN_SHAPE);
    int r = x->shape.rank, axis;
    if (r + 1 > RECUR_MAX_RANK || !rc_norm_axis((int)op->attr.i[0], r + 1, &axis))
        return rc_shape_error(g, op, "expand_dims axis out of range");
    op->attr.i[1] = axis;
    recur_shape o = {.rank = r + 1};
    for (int i = 0, j = 0; i <= r; i++) o.dims[i] = i == axis ? 1 : x->shape.dims[j++];
    return set1(g, op, x->dtype, o);
}

static recur_code expand_dims_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int axis = (int)k->op->attr.i[1], r = x->shape.rank;
    recur_shape o = {.rank = r + 1};
    for (int i = 0, j = 0; i <= r; i++) o.dims[i] = i == axis ? 1 : x->shape.dims[j++];
    recur_array *out = rc_kout(k, 0, x->dtype, o);
    if (!out) return recur_status_code(k->st);
    if (out->nbytes) memcpy(out->data, x->data, out->nbytes);
    return RECUR_OK;
}

recur_tensor *recur_expand_dims(recur_graph *g, recur_tensor *x, int axis)
{
    rc_attrs a = {0};
    a.i[0] = axis;
    return rc_op1(g, RC_OP_EXPAND_DIMS, &x, 1, NULL, &a);
}

static bool grad_expand_dims(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = rc_reshape_like(g, dy[0], op->inputs[0]);
    return dx[0] != NULL;
}

/* ================================================================== transpose */

static bool transpose_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    int r = op->attr.nivec;
    if (x->shape.rank >= 0 && x->shape.rank != r) {
        char m[128];
        snprintf(m, sizeof m, "Dimension must be %d but is %d", x->shape.rank, r);
        return rc_shape_error(g, op, m);
    }
    bool seen[RECUR_MAX_RANK] = {0};
    recur_shape o = {.rank = r};
    for (int i = 0; i < r; i++) {
        int64_t p = op->attr.ivec[i];
        if (p < 0 || p >= r || seen[p]) return rc_shape_error(g, op, "perm must be a permutation of the axes");
        seen[p] = true;
        o.dims[i] = x->shape.rank >= 0 ? x->shape.dims[p] : -1;
    }
    return set1(g, op, x->dtype, o);
}

#define TRANSPOSE_LOOP(T)                                                                      \
    do {                                                                                       \
        const T *px = x->data;                                                                 \
        T *po = o->data;                                                                       \
        for (int64_t i = 0; i < o->size; i++) {                                                \
            po[i] = px[off];                                                                   \
            for (int d = r - 1; d >= 0; d--) {                                                 \
                off += ist[d];                                                                 \
                if (++idx[d] < o->shape.dims[d]) break;                                        \
                off -= ist[d] * o->shape.dims[d];                                              \
                idx[d] = 0;                                                                    \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Rows [lo, hi) of a transpose that keeps the last axis: output row i (index over the output's
 * leading axes) comes from the input at element offset sum idx[d] * ist[d]. */
typedef struct row_move {
    int r;
    int64_t ist[RECUR_MAX_RANK], dims[RECUR_MAX_RANK];
    const void *src;
    void *dst;
    size_t es, rb;
} row_move;

static void move_rows(void *arg, int64_t lo, int64_t hi)
{
    const row_move *m = arg;
    int64_t idx[RECUR_MAX_RANK] = {0}, src = 0, q = lo;
    for (int d = m->r - 2; d >= 0; d--) {
        idx[d] = q % m->dims[d];
        q /= m->dims[d];
        src += idx[d] * m->ist[d];
    }
    for (int64_t i = lo; i < hi; i++) {
        memcpy((char *)m->dst + (size_t)i * m->rb, (const char *)m->src + (size_t)src * m->es, m->rb);
        for (int d = m->r - 2; d >= 0; d--) {
            src += m->ist[d];
            if (++idx[d] < m->dims[d]) break;
            src -= m->ist[d] * m->dims[d];
            idx[d] = 0;
        }
    }
}

static recur_code transpose_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int r = k->op->attr.nivec;
    if (x->shape.rank != r) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "transpose expects a vector of size %d", x->shape.rank);
    recur_shape os = {.rank = r};
    int64_t xst[RECUR_MAX_RANK], ist[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0};
    strides_of(x->shape, xst);
    for (int i = 0; i < r; i++) {
        os.dims[i] = x->shape.dims[k->op->attr.ivec[i]];
        ist[i] = xst[k->op->attr.ivec[i]];
    }
    recur_array *o = rc_kout(k, 0, x->dtype, os);
    if (!o) return recur_status_code(k->st);
    if (r >= 2 && k->op->attr.ivec[r - 1] == r - 1 && !rc_kreference(k)) {
        /* the last axis stays: move whole rows, the two halves of the output on two threads */
        int64_t inner = x->shape.dims[r - 1];
        row_move m = {.r = r, .src = x->data, .dst = o->data, .es = recur_dtype_size(x->dtype)};
        m.rb = (size_t)inner * m.es;
        memcpy(m.ist, ist, sizeof ist);
        memcpy(m.dims, o->shape.dims, sizeof m.dims);
        rc_kfor2(k, inner ? o->size / inner : 0, (int64_t)((256u << 10) / RC_MAX(m.rb, 1)) + 1, move_rows, &m);
        return RECUR_OK;
    }
    int64_t off = 0;
    switch (recur_dtype_size(x->dtype)) {
    case 1: TRANSPOSE_LOOP(uint8_t); break;
    case 4: TRANSPOSE_LOOP(uint32_t); break;
    default: TRANSPOSE_LOOP(uint64_t); break;
    }
    return RECUR_OK;
}

recur_tensor *recur_transpose(recur_graph *g, recur_tensor *x, const int *perm)
{
    if (!rc_gready(g, &x, 1)) return NULL;
    int r = x->shape.rank;
    if (r < 0) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "transpose: the input's rank must be known");
    rc_attrs a = {0};
    a.ivec = rc_malloc((size_t)(r + 1) * sizeof *a.ivec);
    if (!a.ivec) return rc_goom(g);
    for (int i = 0; i < r; i++) a.ivec[i] = perm ? perm[i] : r - 1 - i;
    a.nivec = r;
    return rc_op1(g, RC_OP_TRANSPOSE, &x, 1, NULL, &a);
}

static bool grad_transpose(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    int inv[RECUR_MAX_RANK];
    for (int i = 0; i < op->attr.nivec; i++) inv[op->attr.ivec[i]] = i;
    dx[0] = recur_transpose(g, dy[0], inv);
    return dx[0] != NULL;
}

/* ================================================================== stack / unstack */

static bool pack_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x0 = op->inputs[0];
    recur_shape s = x0->shape;
    for (int i = 1; i < op->ninputs; i++) {
        if (op->inputs[i]->dtype != x0->dtype)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Pack %s: all inputs must share one dtype", op->name), false;
        if (!rc_shape_compatible(s, op->inputs[i]->shape)) return rc_shape_error(g, op, "Shapes must be equal rank");
        if (!rc_shape_known(s)) s = op->inputs[i]->shape;
    }
    if (s.rank < 0) return set1(g, op, x0->dtype, RECUR_UNKNOWN_SHAPE);
    int axis;
    if (s.rank + 1 > RECUR_MAX_RANK || !rc_norm_axis((int)op->attr.i[0], s.rank + 1, &axis))
        return rc_shape_error(g, op, "stack axis out of range");
    op->attr.i[1] = axis;
    recur_shape o = {.rank = s.rank + 1};
    for (int i = 0, j = 0; i <= s.rank; i++) o.dims[i] = i == axis ? op->ninputs : s.dims[j++];
    return set1(g, op, x0->dtype, o);
}

static recur_code pack_kernel(rc_kctx *k)
{
    int n = k->op->ninputs, axis = (int)k->op->attr.i[1];
    recur_array *x0 = k->in[0];
    for (int i = 1; i < n; i++)
        if (!rc_shape_equal(k->in[i]->shape, x0->shape))
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Shapes of all inputs must match: values[0].shape != values[%d].shape", i);
    recur_shape os = {.rank = x0->shape.rank + 1};
    for (int i = 0, j = 0; i < os.rank; i++) os.dims[i] = i == axis ? n : x0->shape.dims[j++];
    recur_array *o = rc_kout(k, 0, x0->dtype, os);
    if (!o) return recur_status_code(k->st);
    int64_t outer, inner;
    split_dims(os, axis, &outer, &inner);
    size_t es = recur_dtype_size(x0->dtype), row = (size_t)inner * es;
    for (int64_t r = 0; r < outer; r++)
        for (int i = 0; i < n; i++)
            memcpy((char *)o->data + ((size_t)r * (size_t)n + (size_t)i) * row, (char *)k->in[i]->data + (size_t)r * row, row);
    return RECUR_OK;
}

recur_tensor *recur_stack(recur_graph *g, recur_tensor *const *xs, int n, int axis)
{
    if (!g) return NULL;
    if (n < 1 || !xs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "stack needs at least one input");
    if (!rc_gready(g, xs, n)) return NULL;
    rc_attrs a = {0};
    a.i[0] = axis;
    return rc_op1(g, RC_OP_PACK, xs, n, NULL, &a);
}

static bool unpack_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    int n = (int)op->attr.i[0], axis = (int)op->attr.i[1];
    if (!rc_set_outputs(op, n)) return rc_goom(g), false;
    recur_shape o = {.rank = x->shape.rank - 1};
    for (int i = 0, j = 0; i < x->shape.rank; i++)
        if (i != axis) o.dims[j++] = x->shape.dims[i];
    for (int i = 0; i < n; i++) rc_set_output(op, i, x->dtype, o);
    return true;
}

static recur_code unpack_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int n = k->op->noutputs, axis = (int)k->op->attr.i[1];
    if (x->shape.dims[axis] != n)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Input shape axis %d must equal %d, got %lld", axis, n,
                       (long long)x->shape.dims[axis]);
    recur_shape os = {.rank = x->shape.rank - 1};
    for (int i = 0, j = 0; i < x->shape.rank; i++)
        if (i != axis) os.dims[j++] = x->shape.dims[i];
    int64_t outer, inner;
    split_dims(x->shape, axis, &outer, &inner);
    size_t es = recur_dtype_size(x->dtype), row = (size_t)inner * es;
    for (int i = 0; i < n; i++) {
        recur_array *o = rc_kout(k, i, x->dtype, os);
        if (!o) return recur_status_code(k->st);
        for (int64_t r = 0; r < outer; r++)
            memcpy((char *)o->data + (size_t)r * row, (char *)x->data + ((size_t)r * (size_t)n + (size_t)i) * row, row);
    }
    return RECUR_OK;
}

bool recur_unstack(recur_graph *g, recur_tensor *x, int axis, recur_tensor **out, int cap)
{
    if (!rc_gready(g, &x, 1)) return false;
    int r = x->shape.rank, ax;
    if (r < 1 || !rc_norm_axis(axis, r, &ax) || x->shape.dims[ax] < 0)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "unstack: the size of axis %d of %s must be known", axis, x->name), false;
    int n = (int)x->shape.dims[ax];
    if (n > cap || !out)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "unstack: %d outputs do not fit in %d slots", n, cap), false;
    rc_attrs a = {0};
    a.i[0] = n;
    a.i[1] = ax;
    recur_op *op = rc_op_new(g, RC_OP_UNPACK, &x, 1, NULL, &a);
    if (!op) return false;
    for (int i = 0; i < n; i++) out[i] = &op->outputs[i];
    return true;
}

static bool grad_pack(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    return recur_unstack(g, dy[0], (int)op->attr.i[1], dx, op->ninputs);
}

static bool grad_unpack(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    int n = op->noutputs;
    recur_tensor **parts = rc_malloc((size_t)(n ? n : 1) * sizeof *parts);
    if (!parts) return rc_goom(g), false;
    for (int i = 0; i < n; i++) parts[i] = dy[i] ? dy[i] : recur_zeros_like(g, &op->outputs[i]);
    dx[0] = recur_stack(g, parts, n, (int)op->attr.i[1]);
    rc_free(parts);
    return dx[0] != NULL;
}

/* ================================================================== gather / scatter-add */

static bool gather_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *p = op->inputs[0], *ix = op->inputs[1];
    if (!rc_dtype_is_int(ix->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "GatherV2 %s: indices must be int32 or int64, got %s", op->name,
                       recur_dtype_name(ix->dtype)), false;
    if (p->shape.rank == 0) return rc_shape_error(g, op, "Shape must be at least rank 1 but is rank 0");
    if (p->shape.rank < 0 || ix->shape.rank < 0) return set1(g, op, p->dtype, RECUR_UNKNOWN_SHAPE);
    if (ix->shape.rank + p->shape.rank - 1 > RECUR_MAX_RANK) return rc_shape_error(g, op, "Result rank too large");
    recur_shape o = {.rank = ix->shape.rank + p->shape.rank - 1};
    for (int i = 0; i < ix->shape.rank; i++) o.dims[i] = ix->shape.dims[i];
    for (int i = 1; i < p->shape.rank; i++) o.dims[ix->shape.rank + i - 1] = p->shape.dims[i];
    return set1(g, op, p->dtype, o);
}

static recur_code gather_kernel(rc_kctx *k)
{
    recur_array *p = k->in[0], *ix = k->in[1];
    recur_shape os = {.rank = ix->shape.rank + p->shape.rank - 1};
    for (int i = 0; i < ix->shape.rank; i++) os.dims[i] = ix->shape.dims[i];
    for (int i = 1; i < p->shape.rank; i++) os.dims[ix->shape.rank + i - 1] = p->shape.dims[i];
    int64_t rows = p->shape.dims[0], inner = rows ? p->size / rows : 0;
    for (int64_t i = 0; i < ix->size; i++) {
        int64_t v = (int64_t)rc_array_get(ix, i);
        if (v < 0 || v >= rows)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "indices[%lld] = %lld is not in [0, %lld)", (long long)i,
                           (long long)v, (long long)rows);
    }
    recur_array *o = rc_kout(k, 0, p->dtype, os);
    if (!o) return recur_status_code(k->st);
    size_t es = recur_dtype_size(p->dtype), row = (size_t)inner * es;
    for (int64_t i = 0; i < ix->size; i++) {
        int64_t v = (int64_t)rc_array_get(ix, i);
        memcpy((char *)o->data + (size_t)i * row, (char *)p->data + (size_t)v * row, row);
    }
    return RECUR_OK;
}

recur_tensor *recur_gather(recur_graph *g, recur_tensor *params, recur_tensor *indices)
{
    recur_tensor *in[2] = {params, indices};
    return rc_op1(g, RC_OP_GATHER, in, 2, NULL, NULL);
}

/* UnsortedSegmentSum(data, indices, params): out[params.dim0, ...] with out[indices[i]] += data[i]. */
static bool uss_shape(recur_graph *g, recur_op *op)
{
    return set1(g, op, op->inputs[0]->dtype, op->inputs[2]->shape);
}

static recur_code uss_kernel(rc_kctx *k)
{
    recur_array *d = k->in[0], *ix = k->in[1], *p = k->in[2];
    recur_array *o = rc_kout(k, 0, d->dtype, p->shape);
    if (!o) return recur_status_code(k->st);
    if (o->nbytes) memset(o->data, 0, o->nbytes);
    int64_t rows = p->shape.dims[0], inner = rows ? p->size / rows : 0;
    if (d->size != ix->size * inner)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "UnsortedSegmentSum: data has %lld values, expected %lld",
                       (long long)d->size, (long long)(ix->size * inner));
    for (int64_t i = 0; i < ix->size; i++) {
        int64_t v = (int64_t)rc_array_get(ix, i);
        if (v < 0 || v >= rows)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "segment_ids[%lld] = %lld is out of range [0, %lld)",
                           (long long)i, (long long)v, (long long)rows);
        if (d->dtype == RECUR_F32) {
            float *po = (float *)o->data + v * inner;
            const float *pd = (const float *)d->data + i * inner;
            for (int64_t j = 0; j < inner; j++) po[j] += pd[j];
        } else {
            for (int64_t j = 0; j < inner; j++)
                rc_array_set(o, v * inner + j, rc_array_get(o, v * inner + j) + rc_array_get(d, i * inner + j));
        }
    }
    return RECUR_OK;
}

recur_tensor *rc_indexed_slices(recur_graph *g, recur_tensor *values, recur_tensor *indices, recur_tensor *params);

/* The gradient stays sparse: IndexedSlices(dy as [N, row...], indices as [N], params). */
static bool grad_gather(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *p = op->inputs[0], *ix = op->inputs[1];
    dx[1] = NULL;
    recur_shape ps = p->shape;
    bool rows_known = ps.rank >= 1;
    for (int i = 1; i < ps.rank; i++) rows_known = rows_known && ps.dims[i] >= 0;
    if (!rows_known) {
        recur_tensor *in[3] = {dy[0], ix, p};
        dx[0] = rc_op1(g, RC_OP_UNSORTED_SEGMENT_SUM, in, 3, NULL, NULL);
        return dx[0] != NULL;
    }
    recur_shape vs = ps;
    vs.dims[0] = -1;
    dx[0] = rc_indexed_slices(g, recur_reshape(g, dy[0], vs), recur_reshape(g, ix, RECUR_SHAPE(-1)), p);
    return dx[0] != NULL;
}

static bool grad_uss(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = rc_reshape_like(g, recur_gather(g, dy[0], op->inputs[1]), op->inputs[0]);
    dx[1] = dx[2] = NULL;
    return dx[0] != NULL;
}

/* ================================================================== reverse, reverse_sequence */

static bool reverse_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    int axis;
    if (x->shape.rank < 0 || !rc_norm_axis((int)op->attr.i[0], x->shape.rank, &axis))
        return rc_shape_error(g, op, "reverse axis out of range (the rank must be known)");
    op->attr.i[1] = axis;
    return set1(g, op, x->dtype, x->shape);
}

/* Rows [lo, hi) of [outer, n] rows of `row` bytes, reversed along n. */
typedef struct flip {
    const char *x;
    char *o;
    int64_t n;
    size_t row;
} flip;

static void flip_rows(void *arg, int64_t lo, int64_t hi)
{
    const flip *f = arg;
    for (int64_t i = lo; i < hi; i++) {
        int64_t r = i / f->n, t = i % f->n;
        memcpy(f->o + (size_t)i * f->row, f->x + (size_t)(r * f->n + f->n - 1 - t) * f->row, f->row);
    }
}

static recur_code reverse_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int axis = (int)k->op->attr.i[1];
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    int64_t outer, inner;
    split_dims(x->shape, axis, &outer, &inner);
    flip f = {.x = x->data, .o = o->data, .n = x->shape.dims[axis], .row = (size_t)inner * recur_dtype_size(x->dtype)};
    rc_kfor2(k, outer * f.n, (int64_t)((256u << 10) / RC_MAX(f.row, 1)) + 1, flip_rows, &f);
    return RECUR_OK;
}

recur_tensor *recur_reverse(recur_graph *g, recur_tensor *x, int axis)
{
    rc_attrs a = {0};
    a.i[0] = axis;
    return rc_op1(g, RC_OP_REVERSE, &x, 1, NULL, &a);
}

static bool grad_reverse(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = recur_reverse(g, dy[0], (int)op->attr.i[1]);
    return dx[0] != NULL;
}

static bool reverse_sequence_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0], *len = op->inputs[1];
    if (!rc_dtype_is_int(len->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "ReverseSequence %s: seq_lengths must be int32 or int64", op->name), false;
    if (len->shape.rank >= 0 && len->shape.rank != 1) return rc_shape_error(g, op, "Shape must be rank 1");
    int r = x->shape.rank, sa, ba;
    if (r < 0) return set1(g, op, x->dtype, x->shape);
    if (!rc_norm_axis((int)op->attr.i[0], r, &sa) || !rc_norm_axis((int)op->attr.i[1], r, &ba) || sa == ba)
        return rc_shape_error(g, op, "Invalid seq_dim or batch_dim");
    op->attr.i[2] = sa;
    op->attr.i[3] = ba;
    if (len->shape.rank == 1 && len->shape.dims[0] >= 0 && x->shape.dims[ba] >= 0 && len->shape.dims[0] != x->shape.dims[ba]) {
        char m[160];
        snprintf(m, sizeof m, "Dimensions must be equal, but are %lld and %lld", (long long)x->shape.dims[ba],
                 (long long)len->shape.dims[0]);
        return rc_shape_error(g, op, m);
    }
    recur_shape out = x->shape; /* the batch dimension merges with the lengths' (as TensorFlow) */
    if (out.dims[ba] < 0 && len->shape.rank == 1) out.dims[ba] = len->shape.dims[0];
    return set1(g, op, x->dtype, out);
}

static recur_code reverse_sequence_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0], *len = k->in[1];
    int sa = (int)k->op->attr.i[2], ba = (int)k->op->attr.i[3];
    int64_t B = x->shape.dims[ba], T = x->shape.dims[sa];
    if (len->shape.rank != 1 || len->size != B)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Length of seq_lengths != input.dims(%d), (%lld vs. %lld)", ba,
                       (long long)len->size, (long long)B);
    for (int64_t b = 0; b < B; b++) {
        int64_t l = (int64_t)rc_array_get(len, b);
        if (l < 0) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "seq_lengths(%lld) = %lld is negative", (long long)b, (long long)l);
        if (l > T)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "seq_lengths(%lld) = %lld > input.dims(%d) = %lld", (long long)b,
                           (long long)l, sa, (long long)T);
    }
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    int64_t st[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0};
    strides_of(x->shape, st);
    size_t es = recur_dtype_size(x->dtype);
    int r = x->shape.rank;
    if (sa < r - 1 && ba < r - 1 && r >= 3 && !rc_kreference(k)) {
        /* move rows of the trailing dims (those after both axes) */
        int lo = sa > ba ? sa : ba;
        int64_t inner = 1, rows;
        for (int d = lo + 1; d < r; d++) inner *= x->shape.dims[d];
        rows = inner ? x->size / inner : 0;
        size_t rb = (size_t)inner * es;
        int64_t ridx[RECUR_MAX_RANK] = {0};
        for (int64_t i = 0; i < rows; i++) {
            int64_t b = ridx[ba], t = ridx[sa], l = (int64_t)rc_array_get(len, b), src = i * inner;
            if (t < l) src += (l - 1 - 2 * t) * st[sa];
            memcpy((char *)o->data + (size_t)i * rb, (char *)x->data + (size_t)src * es, rb);
            for (int d = lo; d >= 0; d--) {
                if (++ridx[d] < x->shape.dims[d]) break;
                ridx[d] = 0;
            }
        }
        return RECUR_OK;
    }
    for (int64_t i = 0; i < x->size; i++) {
        int64_t b = idx[ba], t = idx[sa], l = (int64_t)rc_array_get(len, b);
        int64_t src = i;
        if (t < l) src = i + (l - 1 - 2 * t) * st[sa];
        memcpy((char *)o->data + (size_t)i * es, (char *)x->data + (size_t)src * es, es);
        for (int d = x->shape.rank - 1; d >= 0; d--) {
            if (++idx[d] < x->shape.dims[d]) break;
            idx[d] = 0;
        }
    }
    return RECUR_OK;
}

recur_tensor *recur_reverse_sequence(recur_graph *g, recur_tensor *x, recur_tensor *lengths, int seq_axis, int batch_axis)
{
    recur_tensor *in[2] = {x, lengths};
    rc_attrs a = {0};
    a.i[0] = seq_axis;
    a.i[1] = batch_axis;
    return rc_op1(g, RC_OP_REVERSE_SEQUENCE, in, 2, NULL, &a);
}

static bool grad_reverse_sequence(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = recur_reverse_sequence(g, dy[0], op->inputs[1], (int)op->attr.i[2], (int)op->attr.i[3]);
    dx[1] = NULL;
    return dx[0] != NULL;
}

/* ================================================================== fill, zeros/ones_like */

static bool fill_shape(recur_graph *g, recur_op *op)
{
    if (!rc_shape_known(op->attr.shape)) return rc_shape_error(g, op, "fill needs a fully known shape");
    return set1(g, op, (recur_dtype)op->attr.i[0], op->attr.shape);
}

static void fill_value(recur_array *o, double v)
{
    if (o->dtype == RECUR_F32) {
        float f = (float)v, *p = o->data;
        for (int64_t i = 0; i < o->size; i++) p[i] = f;
    } else if (v == 0) {
        if (o->nbytes) memset(o->data, 0, o->nbytes);
    } else {
        for (int64_t i = 0; i < o->size; i++) rc_array_set(o, i, v);
    }
}

static recur_code fill_kernel(rc_kctx *k)
{
    recur_array *o = rc_kout(k, 0, (recur_dtype)k->op->attr.i[0], k->op->attr.shape);
    if (!o) return recur_status_code(k->st);
    fill_value(o, k->op->attr.f[0]);
    return RECUR_OK;
}

recur_tensor *recur_fill(recur_graph *g, recur_dtype dt, recur_shape shape, double value)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!rc_dtype_valid(dt)) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "fill: invalid dtype %d", (int)dt);
    int64_t n;
    if (!rc_shape_count(shape, &n) || (uint64_t)n > ((uint64_t)1 << 40))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "fill: the shape must be fully known, non-negative and not huge");
    rc_attrs a = {.shape = shape};
    a.i[0] = dt;
    a.f[0] = value;
    return rc_op1(g, RC_OP_FILL, NULL, 0, NULL, &a);
}

static bool like_shape(recur_graph *g, recur_op *op)
{
    return set1(g, op, op->inputs[0]->dtype, op->inputs[0]->shape);
}

static recur_code like_kernel(rc_kctx *k)
{
    recur_array *o = rc_kout(k, 0, k->in[0]->dtype, k->in[0]->shape);
    if (!o) return recur_status_code(k->st);
    fill_value(o, k->op->type == RC_OP_ONES_LIKE ? 1.0 : 0.0);
    return RECUR_OK;
}

recur_tensor *recur_zeros_like(recur_graph *g, recur_tensor *x) { return rc_op1(g, RC_OP_ZEROS_LIKE, &x, 1, NULL, NULL); }
recur_tensor *recur_ones_like(recur_graph *g, recur_tensor *x) { return rc_op1(g, RC_OP_ONES_LIKE, &x, 1, NULL, NULL); }

/* ZerosShaped(like): zeros of attr.shape where dim attr.i[1] takes like's dim attr.i[2]. */
static bool zeros_shaped_shape(recur_graph *g, recur_op *op)
{
    recur_shape s = op->attr.shape;
    recur_tensor *like = op->inputs[0];
    int d = (int)op->attr.i[1], ld = (int)op->attr.i[2];
    if (d >= 0) s.dims[d] = like->shape.rank > ld ? like->shape.dims[ld] : -1;
    return set1(g, op, (recur_dtype)op->attr.i[0], s);
}

static recur_code zeros_shaped_kernel(rc_kctx *k)
{
    recur_shape s = k->op->attr.shape;
    int d = (int)k->op->attr.i[1], ld = (int)k->op->attr.i[2];
    if (d >= 0) {
        if (k->in[0]->shape.rank <= ld) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "ZerosShaped: like has rank %d", k->in[0]->shape.rank);
        s.dims[d] = k->in[0]->shape.dims[ld];
    }
    recur_array *o = rc_kout(k, 0, (recur_dtype)k->op->attr.i[0], s);
    if (!o) return recur_status_code(k->st);
    if (o->nbytes) memset(o->data, 0, o->nbytes);
    return RECUR_OK;
}

recur_tensor *rc_zeros_batch(recur_graph *g, recur_dtype dt, recur_shape s, int dim, recur_tensor *like, int like_dim)
{
    rc_attrs a = {.shape = s};
    a.i[0] = dt;
    a.i[1] = dim;
    a.i[2] = like_dim;
    return rc_op1(g, RC_OP_ZEROS_SHAPED, &like, 1, "zeros", &a);
}

/* ================================================================== sequence_mask */

static bool sequence_mask_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *len = op->inputs[0];
    if (!rc_dtype_is_int(len->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "SequenceMask %s: lengths must be int32 or int64", op->name), false;
    if (len->shape.rank >= 0 && len->shape.rank != 1) return rc_shape_error(g, op, "lengths must be rank 1");
    int64_t b = len->shape.rank == 1 ? len->shape.dims[0] : -1;
    return set1(g, op, (recur_dtype)op->attr.i[1], RECUR_SHAPE(b, op->attr.i[0] >= 0 ? op->attr.i[0] : -1));
}

static recur_code sequence_mask_kernel(rc_kctx *k)
{
    recur_array *len = k->in[0];
    int64_t maxlen = k->op->attr.i[0];
    if (maxlen < 0) {
        maxlen = 0;
        for (int64_t i = 0; i < len->size; i++) maxlen = RC_MAX(maxlen, (int64_t)rc_array_get(len, i));
    }
    recur_array *o = rc_kout(k, 0, (recur_dtype)k->op->attr.i[1], RECUR_SHAPE(len->size, maxlen));
    if (!o) return recur_status_code(k->st);
    for (int64_t b = 0; b < len->size; b++) {
        int64_t l = (int64_t)rc_array_get(len, b);
        for (int64_t t = 0; t < maxlen; t++) rc_array_set(o, b * maxlen + t, t < l ? 1.0 : 0.0);
    }
    return RECUR_OK;
}

recur_tensor *recur_sequence_mask(recur_graph *g, recur_tensor *lengths, int64_t maxlen, recur_dtype dt)
{
    if (!rc_gready(g, &lengths, 1)) return NULL;
    if (!rc_dtype_valid(dt)) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "sequence_mask: invalid dtype %d", (int)dt);
    rc_attrs a = {0};
    a.i[0] = maxlen;
    a.i[1] = dt;
    return rc_op1(g, RC_OP_SEQUENCE_MASK, &lengths, 1, NULL, &a);
}

/* ================================================================== descriptors */

const rc_op_def rc_def_concat = {.type = "ConcatV2", .name = "concat", .min_inputs = 1, .max_inputs = -1, .flags = 0, .shape = concat_shape, .forward = concat_kernel, .reference = NULL, .grad = grad_concat};
const rc_op_def rc_def_split = {.type = "Split", .name = "split", .min_inputs = 1, .max_inputs = -1, .flags = 0, .shape = split_shape, .forward = split_kernel, .reference = NULL, .grad = grad_split};
const rc_op_def rc_def_slice = {.type = "Slice", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = slice_shape, .forward = slice_kernel, .reference = NULL, .grad = grad_slice};
const rc_op_def rc_def_slice_grad = {.type = "SliceGrad", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = slice_grad_shape, .forward = slice_grad_kernel, .reference = NULL, .grad = grad_slice_grad};
const rc_op_def rc_def_reshape = {.type = "Reshape", .name = NULL, .min_inputs = 1, .max_inputs = 2, .flags = 0, .shape = reshape_shape, .forward = reshape_kernel, .reference = NULL, .grad = grad_reshape};
const rc_op_def rc_def_transpose = {.type = "Transpose", .name = "transpose", .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = transpose_shape, .forward = transpose_kernel, .reference = NULL, .grad = grad_transpose};
const rc_op_def rc_def_expand_dims = {.type = "ExpandDims", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = expand_dims_shape, .forward = expand_dims_kernel, .reference = NULL, .grad = grad_expand_dims};
const rc_op_def rc_def_pack = {.type = "Pack", .name = "stack", .min_inputs = 1, .max_inputs = -1, .flags = 0, .shape = pack_shape, .forward = pack_kernel, .reference = NULL, .grad = grad_pack};
const rc_op_def rc_def_unpack = {.type = "Unpack", .name = "unstack", .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = unpack_shape, .forward = unpack_kernel, .reference = NULL, .grad = grad_unpack};
const rc_op_def rc_def_gather = {.type = "GatherV2", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = gather_shape, .forward = gather_kernel, .reference = NULL, .grad = grad_gather};
const rc_op_def rc_def_unsorted_segment_sum = {.type = "UnsortedSegmentSum", .name = NULL, .min_inputs = 3, .max_inputs = 3, .flags = 0, .shape = uss_shape, .forward = uss_kernel, .reference = NULL, .grad = grad_uss};
const rc_op_def rc_def_reverse = {.type = "ReverseV2", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = reverse_shape, .forward = reverse_kernel, .reference = NULL, .grad = grad_reverse};
const rc_op_def rc_def_reverse_sequence = {.type = "ReverseSequence", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = reverse_sequence_shape, .forward = reverse_sequence_kernel, .reference = NULL, .grad = grad_reverse_sequence};
const rc_op_def rc_def_fill = {.type = "Fill", .name = NULL, .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD, .shape = fill_shape, .forward = fill_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_zeros_like = {.type = "ZerosLike", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD, .shape = like_shape, .forward = like_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_ones_like = {.type = "OnesLike", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD, .shape = like_shape, .forward = like_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_zeros_shaped = {.type = "ZerosShaped", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD, .shape = zeros_shaped_shape, .forward = zeros_shaped_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_sequence_mask = {.type = "SequenceMask", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD, .shape = sequence_mask_shape, .forward = sequence_mask_kernel, .reference = NULL, .grad = NULL};
