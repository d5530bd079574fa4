/*
 * reduce.c - reductions over axes (sum, mean, max), argmax, softmax / log_softmax over the
 * last axis, and random tensors.
 */
#include "ops/ops.h"

#include <float.h>
#include <math.h>

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

recur_tensor *rc_reshape_like(recur_graph *g, recur_tensor *x, recur_tensor *like);

/* ================================================================== reductions */
/* attr ivec: axes normalised at build time (sorted, unique); i[0]: keep_dims. */

static bool reduce_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    bool keep = op->attr.i[0];
    if (op->type != RC_OP_MAX && !rc_dtype_is_float(x->dtype) && !rc_dtype_is_int(x->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: dtype %s is not supported", rc_op_def_of(op->type)->type,
                       op->name, recur_dtype_name(x->dtype)), false;
    int r = x->shape.rank;
    if (r < 0) {
        if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
        rc_set_output(op, 0, x->dtype, RECUR_UNKNOWN_SHAPE);
        return true;
    }
    bool red[RECUR_MAX_RANK] = {0};
    if (op->attr.nivec == 0) {
        for (int i = 0; i < r; i++) red[i] = true;
    } else {
        for (int i = 0; i < op->attr.nivec; i++) {
            int a;
            if (!rc_norm_axis((int)op->attr.ivec[i], r, &a)) {
                char m[128];
                snprintf(m, sizeof m, "Invalid reduction dimension %d for input with %d dimensions", (int)op->attr.ivec[i], r);
                return rc_shape_error(g, op, m);
            }
            red[a] = true;
        }
    }
    /* Store the normalised axes as a mask in i[1]. */
    int64_t mask = 0;
    recur_shape o = {.rank = 0};
    for (int i = 0; i < r; i++) {
        if (red[i]) mask |= (int64_t)1 << i;
        if (!red[i])
            o.dims[o.rank++] = x->shape.dims[i];
        else if (keep)
            o.dims[o.rank++] = 1;
    }
    op->attr.i[1] = mask;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, o);
    return true;
}

static recur_shape reduced_shape(recur_shape x, int64_t mask, bool keep)
{
    recur_shape o = {.rank = 0};
    for (int i = 0; i < x.rank; i++) {
        if (!(mask >> i & 1))
            o.dims[o.rank++] = x.dims[i];
        else if (keep)
            o.dims[o.rank++] = 1;
    }
    return o;
}

/* Reference: walk every input element, accumulate into its output slot (in double). */
static recur_code reduce_ref(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int64_t mask = k->op->attr.i[1];
    bool keep = k->op->attr.i[0];
    recur_shape os = reduced_shape(x->shape, mask, keep);
    recur_array *o = rc_kout(k, 0, x->dtype, os);
    if (!o) return recur_status_code(k->st);
    int64_t on = o->size;
    double *acc = rc_malloc((size_t)(on ? on : 1) * sizeof *acc);
    int64_t *cnt = rc_calloc((size_t)(on ? on : 1), sizeof *cnt);
    if (!acc || !cnt) {
        rc_free(acc);
        rc_free(cnt);
        return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    }
    bool is_max = k->op->type == RC_OP_MAX;
    for (int64_t i = 0; i < on; i++) acc[i] = is_max ? -INFINITY : 0;
    /* output strides over the kept dims */
    int r = x->shape.rank;
    int64_t ost[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0}, s = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = (mask >> i & 1) ? 0 : s;
        if (!(mask >> i & 1)) s *= x->shape.dims[i];
    }
    for (int64_t i = 0; i < x->size; i++) {
        int64_t off = 0;
        for (int d = 0; d < r; d++) off += idx[d] * ost[d];
        double v = rc_array_get(x, i);
        if (is_max) {
            if (v > acc[off] || isnan(v)) acc[off] = v;
        } else {
            acc[off] += v;
        }
        cnt[off]++;
        for (int d = r - 1; d >= 0; d--) {
            if (++idx[d] < x->shape.dims[d]) break;
            idx[d] = 0;
        }
    }
    for (int64_t i = 0; i < on; i++) {
        double v = acc[i];
        if (k->op->type == RC_OP_MEAN) v = cnt[i] ? v / (double)cnt[i] : NAN;
        if (is_max && !cnt[i]) v = rc_dtype_is_float(x->dtype) ? -INFINITY : (x->dtype == RECUR_I32 ? INT32_MIN : (double)INT64_MIN);
        rc_array_set(o, i, v);
    }
    rc_free(acc);
    rc_free(cnt);
    return RECUR_OK;
}

/* When the reduced axes of `mask` form one contiguous block, x is [outer, mid, inner] with mid
 * reduced (leading: outer 1; trailing: inner 1; nothing reduced, e.g. a scalar: mid 1).
 * False when they do not. The fast kernels below work on that form. */
static bool reduced_block(recur_shape x, int64_t mask, int64_t *outer, int64_t *mid, int64_t *inner)
{
    int r = x.rank, first = -1, last = -1;
    for (int i = 0; i < r; i++)
        if (mask >> i & 1) {
            if (first < 0) first = i;
            if (last >= 0 && last != i - 1) return false;
            last = i;
        }
    if (first < 0) first = r, last = r - 1;
    *outer = *mid = *inner = 1;
    for (int i = 0; i < first; i++) *outer *= x.dims[i];
    for (int i = first; i <= last; i++) *mid *= x.dims[i];
    for (int i = last + 1; i < r; i++) *inner *= x.dims[i];
    return true;
}

/* Fast float32 path over the [outer, mid, inner] form. */
/* sum of x[0, n) in double: 64 partial sums in eight vectors of eight, so that the adds run
 * wide and in eight independent chains (an array of partial sums stays in memory, and its
 * adds wait on one another through it) */
typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

HOT static double sum_f64(const float *x, int64_t n)
{
    v8d p[8] = {{0}};
    int64_t m = 0;
    for (; m + 64 <= n; m += 64) {
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            v8f f;
            memcpy(&f, x + m + 8 * v, sizeof f);
            p[v] += __builtin_convertvector(f, v8d);
        }
    }
    double t[64];
    memcpy(t, p, sizeof t);
    for (int l = 0; m < n; m++, l++) t[l] += x[m];
    for (int w = 32; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}

/* From this many floats (64 KB) a sum or a spread over one block is cut in two halves, for two
 * threads when free. The hand-off costs about a microsecond; below, one thread is faster. Above,
 * each thread also reads or writes its own half of an RNN's batch rows where the RNN's threads
 * left them, instead of moving the other thread's half between the cores. */
#define HALVES_MIN (1 << 14)

typedef struct half_sums {
    const float *x;
    int64_t n;
    double s[2];
} half_sums;

static void sum_half(void *arg, int part)
{
    half_sums *h = arg;
    int64_t cut = h->n / 2;
    h->s[part] = part ? sum_f64(h->x + cut, h->n - cut) : sum_f64(h->x, cut);
}

/* Blocks [lo, hi) of a reduction over the middle axis of [outer, mid, inner] (inner > 1). */
typedef struct block_job {
    const float *x;
    float *o;
    int64_t mid, inner;
    bool is_max, mean;
} block_job;

HOT static void reduce_block(const float *src, float *dst, int64_t mid, int64_t inner, bool is_max, bool mean)
{
    for (int64_t j = 0; j < inner; j++) dst[j] = is_max ? -INFINITY : 0;
    for (int64_t m = 0; m < mid; m++) {
        const float *row = src + m * inner;
        if (is_max) {
            for (int64_t j = 0; j < inner; j++) {
                float v = row[j], d = dst[j];
                dst[j] = (v > d || v != v) ? v : d; /* NaN wins, as TensorFlow's */
            }
        } else {
            for (int64_t j = 0; j < inner; j++) dst[j] += row[j];
        }
    }
    if (mean)
        for (int64_t j = 0; j < inner; j++) dst[j] = mid ? dst[j] / (float)mid : NAN;
}

static void reduce_blocks(void *arg, int64_t lo, int64_t hi)
{
    const block_job *j = arg;
    for (int64_t a = lo; a < hi; a++)
        reduce_block(j->x + a * j->mid * j->inner, j->o + a * j->inner, j->mid, j->inner, j->is_max, j->mean);
}

static recur_code reduce_fast(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int64_t mask = k->op->attr.i[1], outer, mid, inner;
    if (x->dtype != RECUR_F32 || !reduced_block(x->shape, mask, &outer, &mid, &inner)) return reduce_ref(k);
    recur_array *o = rc_kout(k, 0, x->dtype, reduced_shape(x->shape, mask, k->op->attr.i[0]));
    if (!o) return recur_status_code(k->st);
    const float *px = x->data;
    float *po = o->data;
    bool is_max = k->op->type == RC_OP_MAX, mean = k->op->type == RC_OP_MEAN;
    if (inner > 1) {
        /* blocks of [mid, inner], independent: on two threads when large */
        block_job j = {.x = px, .o = po, .mid = mid, .inner = inner, .is_max = is_max, .mean = mean};
        rc_kfor2(k, outer, (1 << 16) / RC_MAX(mid * inner, 1) + 1, reduce_blocks, &j);
        return RECUR_OK;
    }
    for (int64_t a = 0; a < outer; a++) {
        const float *src = px + a * mid;
        double s = is_max ? -INFINITY : 0;
        int64_t m = 0;
        if (!is_max) { /* double partial sums: vectorised, and no float rounding */
            if (mid >= HALVES_MIN) { /* two halves, on two threads when free (the same sum either way) */
                half_sums h = {.x = src, .n = mid};
                rc_kparallel2(k, sum_half, &h);
                s = h.s[0] + h.s[1];
            } else {
                s = sum_f64(src, mid);
            }
            m = mid;
        }
        for (; m < mid; m++) {
            float v = src[m];
            if (v > s || isnan(v)) s = v;
        }
        po[a] = (float)(mean ? (mid ? s / (double)mid : NAN) : s);
    }
    return RECUR_OK;
}

static recur_tensor *reduce(recur_graph *g, int type, recur_tensor *x, const int *axes, int naxes, bool keep)
{
    if (!rc_gready(g, &x, 1)) return NULL;
    if (naxes < 0 || naxes > RECUR_MAX_RANK || (naxes && !axes))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "reduce: invalid axes list");
    rc_attrs a = {0};
    a.i[0] = keep;
    if (naxes) {
        a.ivec = rc_malloc((size_t)naxes * sizeof *a.ivec);
        if (!a.ivec) return rc_goom(g);
        for (int i = 0; i < naxes; i++) a.ivec[i] = axes[i];
        a.nivec = naxes;
    }
    return rc_op1(g, type, &x, 1, NULL, &a);
}

recur_tensor *recur_reduce_sum(recur_graph *g, recur_tensor *x, const int *axes, int naxes, bool keep_dims)
{
    return reduce(g, RC_OP_SUM, x, axes, naxes, keep_dims);
}
recur_tensor *recur_reduce_mean(recur_graph *g, recur_tensor *x, const int *axes, int naxes, bool keep_dims)
{
    return reduce(g, RC_OP_MEAN, x, axes, naxes, keep_dims);
}
recur_tensor *recur_reduce_max(recur_graph *g, recur_tensor *x, const int *axes, int naxes, bool keep_dims)
{
    return reduce(g, RC_OP_MAX, x, axes, naxes, keep_dims);
}

/* ReduceGrad(x, dy): the gradient of Sum (attr i[0] 0) or Mean (i[0] 1) over the axes of mask
 * i[1] (i[2]: the forward's keep_dims): dy, divided by the group size for a mean, repeated over
 * the reduced axes into x's shape. One pass instead of TensorFlow's reshape, tile and divide,
 * and no tensor of x's size other than the result. */
static bool reduce_grad_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[1]->dtype, op->inputs[0]->shape);
    return true;
}

/* Rows [lo, hi) of the mid axis of one outer block: each row of `inner` values is dy (/ count). */
typedef struct spread {
    const float *dy;
    float *o, cnt;
    bool mean;
    int64_t mid, inner;
} spread;

static void spread_mid(void *arg, int64_t lo, int64_t hi)
{
    const spread *j = arg;
    if (lo >= hi) return;
    float *first = j->o + lo * j->inner;
    for (int64_t i = 0; i < j->inner; i++) first[i] = j->mean ? j->dy[i] / j->cnt : j->dy[i];
    if (j->inner == 1) {
        float v = first[0], *o = j->o; /* a local copy: o[m] could alias first[0] for all the compiler knows */
        for (int64_t m = lo + 1; m < hi; m++) o[m] = v;
    } else {
        for (int64_t m = lo + 1; m < hi; m++) memcpy(j->o + m * j->inner, first, (size_t)j->inner * sizeof *first);
    }
}

static recur_code reduce_grad_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0], *dy = k->in[1];
    int64_t mask = k->op->attr.i[1];
    bool mean = k->op->attr.i[0];
    int r = x->shape.rank;
    int64_t ost[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0}, on = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = (mask >> i & 1) ? 0 : on;
        if (!(mask >> i & 1)) on *= x->shape.dims[i];
    }
    if (dy->size != on)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "%s: %lld reduced values, expected %lld", k->op->name, (long long)dy->size,
                       (long long)on);
    int64_t count = on ? x->size / on : 0;
    recur_array *o = rc_kout(k, 0, dy->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    if (!x->size) return RECUR_OK; /* nothing to write (and no data pointer) */
    int64_t outer, mid, inner;
    if (dy->dtype == RECUR_F32 && reduced_block(x->shape, mask, &outer, &mid, &inner)) {
        spread j = {.dy = dy->data, .o = o->data, .cnt = (float)count, .mean = mean, .mid = mid, .inner = inner};
        if (outer == 1) rc_kfor2(k, mid, HALVES_MIN / RC_MAX(inner, 1) + 1, spread_mid, &j);
        else spread_mid(&j, 0, mid);
        for (int64_t a = 1; a < outer; a++) {
            j.dy = (const float *)dy->data + a * inner;
            j.o = (float *)o->data + a * mid * inner;
            spread_mid(&j, 0, mid);
        }
        return RECUR_OK;
    }
    int64_t off = 0;
    for (int64_t i = 0; i < x->size; i++) {
        double v = rc_array_get(dy, off);
        if (mean) v = dy->dtype == RECUR_F32 ? (double)((float)v / (float)count) : v / (double)count;
        rc_array_set(o, i, v);
        for (int d = r - 1; d >= 0; d--) {
            off += ost[d];
            if (++idx[d] < x->shape.dims[d]) break;
            off -= ost[d] * x->shape.dims[d];
            idx[d] = 0;
        }
    }
    return RECUR_OK;
}

/* The gradient of ReduceGrad with respect to dy: the same reduction of the incoming gradient. */
static bool grad_reduce_grad(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    int axes[RECUR_MAX_RANK], n = 0;
    for (int i = 0; i < op->inputs[0]->shape.rank; i++)
        if (op->attr.i[1] >> i & 1) axes[n++] = i;
    dx[0] = NULL;
    /* nothing reduced (a scalar): the identity (an empty axis list would mean every axis) */
    dx[1] = n ? reduce(g, op->attr.i[0] ? RC_OP_MEAN : RC_OP_SUM, dy[0], axes, n, op->attr.i[2]) : dy[0];
    return dx[1] != NULL;
}

static recur_tensor *unreduce(recur_graph *g, recur_op *op, recur_tensor *d, bool mean)
{
    recur_tensor *x = op->inputs[0];
    if (x->shape.rank < 0) return rc_gerr(g, RECUR_UNIMPLEMENTED, "gradient of %s needs the input's rank", op->name);
    recur_tensor *in[2] = {x, d};
    rc_attrs a = {0};
    a.i[0] = mean;
    a.i[1] = op->attr.i[1];
    a.i[2] = op->attr.i[0];
    return rc_op1(g, RC_OP_REDUCE_GRAD, in, 2, NULL, &a);
}

static bool grad_sum(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = unreduce(g, op, dy[0], false);
    return dx[0] != NULL;
}

static bool grad_mean(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* d/dx mean = dy / count, the group size counted at run time */
    dx[0] = unreduce(g, op, dy[0], true);
    return dx[0] != NULL;
}

/* MaxGrad(x, y, dy): the gradient of Max, split evenly among the maxima of each reduced group
 * (as TensorFlow's). attr i[1]: the reduced-axes mask of the forward op. One kernel instead of
 * TensorFlow's chain of broadcast, equal, cast, sum and divide. */
static bool max_grad_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[0]->shape);
    return true;
}

/* float32 MaxGrad when the reduced axes are one contiguous block [outer, mid, inner]: the
 * gradient goes to every maximal element, shared equally among ties. */
typedef struct max_grad_job {
    const float *x, *y, *dy;
    float *o, *cnt[2]; /* per-part scratch of `inner` counts */
    int64_t mid, inner, half;
} max_grad_job;

HOT static void max_grad_block(const float *src, const float *ym, const float *dm, float *dst, float *cnt, int64_t mid,
                               int64_t inner)
{
    for (int64_t j = 0; j < inner; j++) cnt[j] = 0;
    for (int64_t m = 0; m < mid; m++)
        for (int64_t j = 0; j < inner; j++) cnt[j] += src[m * inner + j] == ym[j] ? 1.0f : 0.0f;
    for (int64_t j = 0; j < inner; j++) cnt[j] = cnt[j] > 0 ? dm[j] / cnt[j] : 0;
    for (int64_t m = 0; m < mid; m++)
        for (int64_t j = 0; j < inner; j++) dst[m * inner + j] = src[m * inner + j] == ym[j] ? cnt[j] : 0.0f;
}

static void max_grad_range(void *arg, int64_t lo, int64_t hi)
{
    const max_grad_job *j = arg;
    float *cnt = j->cnt[lo >= j->half && lo > 0];
    for (int64_t a = lo; a < hi; a++)
        max_grad_block(j->x + a * j->mid * j->inner, j->y + a * j->inner, j->dy + a * j->inner, j->o + a * j->mid * j->inner, cnt,
                       j->mid, j->inner);
}

static recur_code max_grad_f32(rc_kctx *k, int64_t outer, int64_t mid, int64_t inner)
{
    recur_array *x = k->in[0], *y = k->in[1], *dy = k->in[2];
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    int64_t w = inner ? inner : 1;
    float *cnt = rc_kscratch(k, (size_t)(2 * w) * sizeof *cnt);
    if (!cnt) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    max_grad_job j = {.x = x->data, .y = y->data, .dy = dy->data, .o = o->data, .cnt = {cnt, cnt + w}, .mid = mid,
                      .inner = inner, .half = outer / 2};
    rc_kfor2(k, outer, (1 << 16) / RC_MAX(mid * inner, 1) + 1, max_grad_range, &j);
    return RECUR_OK;
}

static recur_code max_grad_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0], *y = k->in[1], *dy = k->in[2];
    int64_t mask = k->op->attr.i[1];
    int r = x->shape.rank;
    /* output offset of every input element: strides over the kept dims */
    int64_t ost[RECUR_MAX_RANK], idx[RECUR_MAX_RANK] = {0}, s = 1, on = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = (mask >> i & 1) ? 0 : s;
        if (!(mask >> i & 1)) s *= x->shape.dims[i];
    }
    on = s;
    if (y->size != on || dy->size != on)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "MaxGrad: %lld reduced values, expected %lld", (long long)y->size, (long long)on);
    int64_t outer, mid, inner;
    if (x->dtype == RECUR_F32 && y->dtype == RECUR_F32 && dy->dtype == RECUR_F32 &&
        reduced_block(x->shape, mask, &outer, &mid, &inner))
        return max_grad_f32(k, outer, mid, inner);
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    int32_t *cnt = rc_calloc((size_t)on + 1, sizeof *cnt);
    if (!o || !cnt) {
        rc_free(cnt);
        return o ? rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory") : recur_status_code(k->st);
    }
    for (int pass = 0; pass < 2; pass++) {
        int64_t off = 0;
        memset(idx, 0, sizeof idx);
        for (int64_t i = 0; i < x->size; i++) {
            bool hit = rc_array_get(x, i) == rc_array_get(y, off);
            if (!pass)
                cnt[off] += hit;
            else
                rc_array_set(o, i, hit ? rc_array_get(dy, off) / cnt[off] : 0.0);
            for (int d = r - 1; d >= 0; d--) {
                off += ost[d];
                if (++idx[d] < x->shape.dims[d]) break;
                off -= ost[d] * x->shape.dims[d];
                idx[d] = 0;
            }
        }
    }
    rc_free(cnt);
    return RECUR_OK;
}

static bool grad_max(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *in[3] = {op->inputs[0], &op->outputs[0], dy[0]};
    rc_attrs a = {0};
    a.i[1] = op->attr.i[1];
    dx[0] = rc_op1(g, RC_OP_MAX_GRAD, in, 3, NULL, &a);
    return dx[0] != NULL;
}

/* ================================================================== argmax */

static bool argmax_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    int r = x->shape.rank, axis;
    if (r < 0) {
        if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
        rc_set_output(op, 0, RECUR_I64, RECUR_UNKNOWN_SHAPE);
        return true;
    }
    if (!rc_norm_axis((int)op->attr.i[0], r, &axis)) {
        char m[128];
        snprintf(m, sizeof m, "Expected dimension in the range [%d, %d), but got %d", -r, r, (int)op->attr.i[0]);
        return rc_shape_error(g, op, m);
    }
    op->attr.i[1] = axis;
    recur_shape o = {.rank = r - 1};
    for (int i = 0, j = 0; i < r; i++)
        if (i != axis) o.dims[j++] = x->shape.dims[i];
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, RECUR_I64, o);
    return true;
}

static recur_code argmax_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    int axis = (int)k->op->attr.i[1], r = x->shape.rank;
    if (x->shape.dims[axis] == 0) return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Reduction axis %d is empty in shape", axis);
    recur_shape os = {.rank = r - 1};
    for (int i = 0, j = 0; i < r; i++)
        if (i != axis) os.dims[j++] = x->shape.dims[i];
    recur_array *o = rc_kout(k, 0, RECUR_I64, os);
    if (!o) return recur_status_code(k->st);
    int64_t outer = 1, inner = 1, n = x->shape.dims[axis];
    for (int i = 0; i < axis; i++) outer *= x->shape.dims[i];
    for (int i = axis + 1; i < r; i++) inner *= x->shape.dims[i];
    int64_t *po = o->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t c = 0; c < inner; c++) {
            int64_t best = 0;
            double bv = rc_array_get(x, a * n * inner + c);
            for (int64_t t = 1; t < n; t++) {
                double v = rc_array_get(x, (a * n + t) * inner + c);
                if (v > bv) {
                    bv = v;
                    best = t;
                }
            }
            po[a * inner + c] = best;
        }
    return RECUR_OK;
}

recur_tensor *recur_argmax(recur_graph *g, recur_tensor *x, int axis)
{
    rc_attrs a = {0};
    a.i[0] = axis;
    return rc_op1(g, RC_OP_ARGMAX, &x, 1, NULL, &a);
}

/* ================================================================== softmax, log_softmax */

static bool softmax_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    if (!rc_dtype_is_float(x->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: logits must be float or double", rc_op_def_of(op->type)->type,
                       op->name), false;
    if (x->shape.rank == 0) return rc_shape_error(g, op, "Shape must be at least rank 1 but is rank 0");
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, x->shape);
    return true;
}

/* Stable: subtract the row max; sums in double. */
static recur_code softmax_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    int64_t c = x->shape.dims[x->shape.rank - 1];
    bool lg = k->op->type == RC_OP_LOG_SOFTMAX;
    for (int64_t r = 0; c && r < x->size; r += c) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < c; j++) m = fmax(m, rc_array_get(x, r + j));
        for (int64_t j = 0; j < c; j++) s += exp(rc_array_get(x, r + j) - m);
        double ls = log(s);
        for (int64_t j = 0; j < c; j++) {
            double v = rc_array_get(x, r + j) - m;
            rc_array_set(o, r + j, lg ? v - ls : exp(v) / s);
        }
    }
    return RECUR_OK;
}

recur_tensor *recur_softmax(recur_graph *g, recur_tensor *logits) { return rc_op1(g, RC_OP_SOFTMAX, &logits, 1, NULL, NULL); }
recur_tensor *recur_log_softmax(recur_graph *g, recur_tensor *logits)
{
    return rc_op1(g, RC_OP_LOG_SOFTMAX, &logits, 1, NULL, NULL);
}

static bool grad_softmax(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* dx = (dy - sum(dy * y, -1, keep)) * y */
    recur_tensor *y = &op->outputs[0];
    int last = -1;
    recur_tensor *s = recur_reduce_sum(g, recur_mul(g, dy[0], y), &last, 1, true);
    dx[0] = recur_mul(g, recur_sub(g, dy[0], s), y);
    return dx[0] != NULL;
}

static bool grad_log_softmax(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    /* dx = dy - exp(y) * sum(dy, -1, keep) */
    recur_tensor *y = &op->outputs[0];
    int last = -1;
    recur_tensor *s = recur_reduce_sum(g, dy[0], &last, 1, true);
    dx[0] = recur_sub(g, dy[0], recur_mul(g, recur_exp(g, y), s));
    return dx[0] != NULL;
}

/* ================================================================== random */
/* attr: shape, i[0] dtype, i[1], i[2] resolved seeds, f[0], f[1] distribution parameters.
 * The generator state persists per session and advances every run, like TensorFlow's. */

static bool random_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, (recur_dtype)op->attr.i[0], op->attr.shape);
    return true;
}

static recur_code random_kernel(rc_kctx *k)
{
    void **state = rc_kstate(k);
    if (!state) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    if (!*state) {
        rc_philox *p = rc_malloc(sizeof *p);
        if (!p) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        int64_t s1 = k->op->attr.i[1], s2 = k->op->attr.i[2];
        if (!s1 && !s2)
            rc_philox_init(p, rc_random_seed(), rc_random_seed());
        else
            rc_philox_init(p, (uint64_t)s1, (uint64_t)s2);
        *state = p;
    }
    rc_philox *p = *state;
    recur_array *o = rc_kout(k, 0, (recur_dtype)k->op->attr.i[0], k->op->attr.shape);
    if (!o) return recur_status_code(k->st);
    double a = k->op->attr.f[0], b = k->op->attr.f[1];
    if (k->op->type == RC_OP_RANDOM_UNIFORM) {
        for (int64_t i = 0; i < o->size; i++) {
            if (o->dtype == RECUR_F32)
                ((float *)o->data)[i] = rc_philox_uniform(p) * ((float)b - (float)a) + (float)a;
            else
                ((double *)o->data)[i] = rc_philox_uniform_double(p) * (b - a) + a;
        }
    } else {
        rc_normal_gen n = {.p = p};
        for (int64_t i = 0; i < o->size; i++) rc_array_set(o, i, rc_philox_normal(&n) * b + a);
    }
    return RECUR_OK;
}

static recur_tensor *random_op(recur_graph *g, int type, recur_shape shape, double a, double b, int64_t seed)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    int64_t n;
    if (!rc_shape_count(shape, &n)) /* unknown, negative, or a count that overflows: say which may apply */
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "random: the shape must be fully known and non-negative, and its element count must fit int64");
    rc_attrs at = {.shape = shape};
    at.i[0] = RECUR_F32;
    rc_resolve_seed(g->has_seed, g->seed, seed, (int64_t)g->nops, &at.i[1], &at.i[2]);
    at.f[0] = a;
    at.f[1] = b;
    return rc_op1(g, type, NULL, 0, NULL, &at);
}

recur_tensor *recur_random_uniform(recur_graph *g, recur_shape shape, double minval, double maxval, int64_t seed)
{
    return random_op(g, RC_OP_RANDOM_UNIFORM, shape, minval, maxval, seed);
}

recur_tensor *recur_random_normal(recur_graph *g, recur_shape shape, double mean, double stddev, int64_t seed)
{
    return random_op(g, RC_OP_RANDOM_NORMAL, shape, mean, stddev, seed);
}

/* ================================================================== descriptors */

const rc_op_def rc_def_sum = {.type = "Sum", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = reduce_shape, .forward = reduce_fast, .reference = reduce_ref, .grad = grad_sum};
const rc_op_def rc_def_mean = {.type = "Mean", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = reduce_shape, .forward = reduce_fast, .reference = reduce_ref, .grad = grad_mean};
const rc_op_def rc_def_max = {.type = "Max", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = reduce_shape, .forward = reduce_fast, .reference = reduce_ref, .grad = grad_max};
const rc_op_def rc_def_reduce_grad = {.type = "ReduceGrad", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = reduce_grad_shape, .forward = reduce_grad_kernel, .reference = NULL, .grad = grad_reduce_grad};
const rc_op_def rc_def_max_grad = {.type = "MaxGrad", .name = NULL, .min_inputs = 3, .max_inputs = 3, .flags = RC_OPF_NO_GRAD, .shape = max_grad_shape, .forward = max_grad_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_argmax = {.type = "ArgMax", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD, .shape = argmax_shape, .forward = argmax_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_softmax = {.type = "Softmax", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = softmax_shape, .forward = softmax_kernel, .reference = NULL, .grad = grad_softmax};
const rc_op_def rc_def_log_softmax = {.type = "LogSoftmax", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = 0, .shape = softmax_shape, .forward = softmax_kernel, .reference = NULL, .grad = grad_log_softmax};
const rc_op_def rc_def_random_uniform = {.type = "RandomUniform", .name = "random_uniform", .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL, .shape = random_shape, .forward = random_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_random_normal = {.type = "RandomStandardNormal", .name = "random_normal", .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL, .shape = random_shape, .forward = random_kernel, .reference = NULL, .grad = NULL};
