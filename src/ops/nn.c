/*
 * nn.c - neural-network ops: dropout (inverted, seeded; also the fixed masks of variational
 * dropout).
 */
#include "ops/ops.h"

#include <math.h>

/* Per-session generator of a random op, seeded from attr i[1], i[2] (0, 0: random). */
static rc_philox *op_rng(rc_kctx *k)
{
    void **state = rc_kstate(k);
    if (!state) return NULL;
    if (!*state) {
        rc_philox *p = rc_malloc(sizeof *p);
        if (!p) return NULL;
        int64_t s1 = k->op->attr.i[1], s2 = k->op->attr.i[2];
        if (!s1 && !s2)
            rc_philox_init(p, rc_random_seed(), rc_random_seed());
        else
            rc_philox_init(p, (uint64_t)s1, (uint64_t)s2);
        *state = p;
    }
    return *state;
}

static bool keep_ok(recur_graph *g, recur_op *op, recur_tensor *keep)
{
    if (keep->shape.rank > 0 || !rc_dtype_is_float(keep->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: keep_prob must be a float scalar", op->name), false;
    return true;
}

static recur_code read_keep(rc_kctx *k, const recur_array *keep, double *out)
{
    double kp = rc_array_get(keep, 0);
    if (!(kp > 0 && kp <= 1))
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "keep_prob must be a scalar tensor in (0, 1], got %g", kp);
    *out = kp;
    return RECUR_OK;
}

/* mask[i] = floor(keep + u) / keep, u ~ U[0, 1). */
static void fill_mask(recur_array *m, rc_philox *p, double kp)
{
    if (m->dtype == RECUR_F32) {
        float *d = m->data, inv = (float)(1.0 / kp), fk = (float)kp;
        for (int64_t i = 0; i < m->size; i++) d[i] = floorf(fk + rc_philox_uniform(p)) * inv;
    } else {
        for (int64_t i = 0; i < m->size; i++) rc_array_set(m, i, floor(kp + rc_philox_uniform_double(p)) / kp);
    }
}

/* ================================================================== Dropout(x, keep) -> (y, mask) */

static bool dropout_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *x = op->inputs[0];
    if (!rc_dtype_is_float(x->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "dropout %s: x must be floating, got %s", op->name,
                       recur_dtype_name(x->dtype)), false;
    if (!keep_ok(g, op, op->inputs[1])) return false;
    if (!rc_set_outputs(op, 2)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, x->shape);
    rc_set_output(op, 1, x->dtype, x->shape);
    return true;
}

typedef struct drop_job {
    rc_philox start; /* the generator before the first element */
    const float *x;
    float *y, *m, inv, fk;
} drop_job;

static void drop_range(void *arg, int64_t lo, int64_t hi)
{
    const drop_job *j = arg;
    rc_philox q = j->start;
    rc_philox_advance(&q, (uint64_t)lo);
    rc_philox_fill_uniform(&q, j->m + lo, hi - lo); /* the draws, then the mask over them */
    for (int64_t i = lo; i < hi; i++) {
        j->m[i] = floorf(j->fk + j->m[i]) * j->inv;
        j->y[i] = j->x[i] * j->m[i];
    }
}

static recur_code dropout_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    double kp = 1;
    recur_code c = read_keep(k, k->in[1], &kp);
    if (c) return c;
    rc_philox *p = op_rng(k);
    if (!p) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    recur_array *y = rc_kout(k, 0, x->dtype, x->shape), *m = y ? rc_kout(k, 1, x->dtype, x->shape) : NULL;
    if (!m) return recur_status_code(k->st);
    if (x->dtype == RECUR_F32) {
        /* the two halves on two threads, each from its own copy of the generator set to its
         * first draw: the same draws, in the same places, as one pass */
        drop_job j = {.start = *p, .x = x->data, .y = y->data, .m = m->data, .inv = (float)(1.0 / kp), .fk = (float)kp};
        rc_kfor2(k, x->size, 1 << 15, drop_range, &j);
        rc_philox_advance(p, (uint64_t)x->size);
    } else {
        fill_mask(m, p, kp);
        for (int64_t i = 0; i < x->size; i++) rc_array_set(y, i, rc_array_get(x, i) * rc_array_get(m, i));
    }
    return RECUR_OK;
}

static bool grad_dropout(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = dy[0] ? recur_mul(g, dy[0], &op->outputs[1]) : NULL;
    dx[1] = NULL;
    return recur_graph_ok(g);
}

static recur_op *dropout_op(recur_graph *g, recur_tensor *x, recur_tensor *keep, int64_t seed)
{
    recur_tensor *in[2] = {x, keep};
    if (!rc_gready(g, in, 2)) return NULL;
    rc_attrs a = {0};
    rc_resolve_seed(g->has_seed, g->seed, seed, (int64_t)g->nops, &a.i[1], &a.i[2]);
    return rc_op_new(g, RC_OP_DROPOUT, in, 2, NULL, &a);
}

recur_tensor *rc_dropout(recur_graph *g, recur_tensor *x, recur_tensor *keep, int64_t seed)
{
    recur_op *op = dropout_op(g, x, keep, seed);
    return op ? &op->outputs[0] : NULL;
}

recur_tensor *recur_dropout(recur_graph *g, recur_tensor *x, recur_tensor *keep_prob, int64_t seed)
{
    return rc_dropout(g, x, keep_prob, seed);
}

/* ================================================================== DropoutMask(keep) */

static bool dropout_mask_shape(recur_graph *g, recur_op *op)
{
    if (!keep_ok(g, op, op->inputs[0])) return false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, (recur_dtype)op->attr.i[0], op->attr.shape);
    return true;
}

static recur_code dropout_mask_kernel(rc_kctx *k)
{
    double kp = 1;
    recur_code c = read_keep(k, k->in[0], &kp);
    if (c) return c;
    rc_philox *p = op_rng(k);
    if (!p) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    recur_array *m = rc_kout(k, 0, (recur_dtype)k->op->attr.i[0], k->op->attr.shape);
    if (!m) return recur_status_code(k->st);
    fill_mask(m, p, kp);
    return RECUR_OK;
}

recur_tensor *rc_dropout_mask(recur_graph *g, recur_shape shape, recur_dtype dt, recur_tensor *keep, int64_t seed)
{
    if (!rc_gready(g, &keep, 1)) return NULL;
    if (!rc_shape_known(shape)) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "dropout mask: the shape must be known");
    rc_attrs a = {.shape = shape};
    a.i[0] = dt;
    rc_resolve_seed(g->has_seed, g->seed, seed, (int64_t)g->nops, &a.i[1], &a.i[2]);
    return rc_op1(g, RC_OP_DROPOUT_MASK, &keep, 1, NULL, &a);
}

const rc_op_def rc_def_dropout = {.type = "Dropout", .name = "dropout", .min_inputs = 2, .max_inputs = 2, .flags = RC_OPF_STATEFUL, .shape = dropout_shape, .forward = dropout_kernel, .reference = NULL, .grad = grad_dropout};
const rc_op_def rc_def_dropout_mask = {.type = "DropoutMask", .name = "dropout_mask", .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_STATEFUL | RC_OPF_NO_GRAD, .shape = dropout_mask_shape, .forward = dropout_mask_kernel, .reference = NULL, .grad = NULL};

/* ================================================================== cross-entropy losses */
/* SoftmaxCrossEntropyWithLogits(labels [B,C], logits [B,C]) -> (loss [B], backprop [B,C])
 * SparseSoftmaxCrossEntropyWithLogits(labels [B] int, logits [B,C]) -> (loss [B], backprop)
 * backprop = softmax(logits) - labels (one-hot for the sparse form). */

static bool xent_shape(recur_graph *g, recur_op *op)
{
    bool sparse = op->type == RC_OP_SPARSE_XENT;
    recur_tensor *lab = op->inputs[0], *lg = op->inputs[1];
    if (!rc_dtype_is_float(lg->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: logits must be float or double, got %s", op->name,
                       recur_dtype_name(lg->dtype)), false;
    if (sparse ? !rc_dtype_is_int(lab->dtype) : lab->dtype != lg->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: labels must be %s, got %s", op->name,
                       sparse ? "int32 or int64" : recur_dtype_name(lg->dtype), recur_dtype_name(lab->dtype)), false;
    if (lg->shape.rank >= 0 && lg->shape.rank != 2) return rc_shape_error(g, op, "logits must be 2-dimensional");
    if (sparse && lab->shape.rank >= 0 && lab->shape.rank != 1) return rc_shape_error(g, op, "labels must be 1-D");
    if (!sparse && !rc_shape_compatible(lab->shape, lg->shape))
        return rc_shape_error(g, op, "logits and labels must be broadcastable");
    int64_t B = lg->shape.rank == 2 ? lg->shape.dims[0] : -1;
    if (sparse && B < 0 && lab->shape.rank == 1) B = lab->shape.dims[0];
    if (sparse && B >= 0 && lab->shape.rank == 1 && lab->shape.dims[0] >= 0 && lab->shape.dims[0] != B)
        return rc_shape_error(g, op, "logits and labels must have the same first dimension");
    if (!rc_set_outputs(op, 2)) return rc_goom(g), false;
    rc_set_output(op, 0, lg->dtype, RECUR_SHAPE(B));
    rc_set_output(op, 1, lg->dtype, lg->shape);
    return true;
}

static recur_code xent_kernel(rc_kctx *k)
{
    bool sparse = k->op->type == RC_OP_SPARSE_XENT;
    recur_array *lab = k->in[0], *lg = k->in[1];
    char a[128], b[128];
    if (lg->shape.rank != 2 || (sparse ? (lab->shape.rank != 1 || lab->shape.dims[0] != lg->shape.dims[0])
                                       : !rc_shape_equal(lab->shape, lg->shape)))
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "logits and labels must have compatible shapes: logits %s, labels %s",
                       rc_shape_debug(lg->shape, a, sizeof a), rc_shape_debug(lab->shape, b, sizeof b));
    int64_t B = lg->shape.dims[0], C = lg->shape.dims[1];
    if (sparse)
        for (int64_t i = 0; i < B; i++) {
            int64_t y = (int64_t)rc_array_get(lab, i);
            if (y < 0 || y >= C)
                return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                               "Received a label value of %lld which is outside the valid range of [0, %lld) (example %lld)",
                               (long long)y, (long long)C, (long long)i);
        }
    recur_array *loss = rc_kout(k, 0, lg->dtype, RECUR_SHAPE(B)), *bp = loss ? rc_kout(k, 1, lg->dtype, lg->shape) : NULL;
    if (!bp) return recur_status_code(k->st);
    for (int64_t i = 0; i < B; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < C; j++) m = fmax(m, rc_array_get(lg, i * C + j));
        for (int64_t j = 0; j < C; j++) s += exp(rc_array_get(lg, i * C + j) - m);
        double lse = m + log(s), l = 0;
        int64_t y = sparse ? (int64_t)rc_array_get(lab, i) : -1;
        for (int64_t j = 0; j < C; j++) {
            double x = rc_array_get(lg, i * C + j), p = exp(x - lse);
            double t = sparse ? (j == y) : rc_array_get(lab, i * C + j);
            l -= t ? t * (x - lse) : 0;
            rc_array_set(bp, i * C + j, p - t);
        }
        rc_array_set(loss, i, l);
    }
    return RECUR_OK;
}

static bool grad_xent(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = dx[1] = NULL;
    if (!dy[0]) return true;
    recur_tensor *d = recur_expand_dims(g, dy[0], 1);
    dx[1] = recur_mul(g, d, &op->outputs[1]);
    if (op->type == RC_OP_XENT) /* v2: the labels get -log_softmax(logits) */
        dx[0] = recur_mul(g, d, recur_neg(g, recur_log_softmax(g, op->inputs[1])));
    return recur_graph_ok(g);
}

static recur_tensor *xent(recur_graph *g, int type, recur_tensor *labels, recur_tensor *logits)
{
    recur_tensor *in[2] = {labels, logits};
    recur_op *op = rc_op_new(g, type, in, 2, NULL, NULL);
    return op ? &op->outputs[0] : NULL;
}

recur_tensor *recur_softmax_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels, recur_tensor *logits)
{
    return xent(g, RC_OP_XENT, labels, logits);
}

recur_tensor *recur_sparse_softmax_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels, recur_tensor *logits)
{
    return xent(g, RC_OP_SPARSE_XENT, labels, logits);
}

/* ================================================================== sigmoid cross-entropy */
/* max(x, 0) - x * z + log(1 + exp(-|x|)) */

static bool sigmoid_xent_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *z = op->inputs[0], *x = op->inputs[1];
    if (!rc_dtype_is_float(x->dtype) || z->dtype != x->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: logits and labels must share a float dtype", op->name), false;
    if (!rc_shape_compatible(z->shape, x->shape))
        return rc_shape_error(g, op, "logits and labels must have the same shape");
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, x->dtype, rc_shape_known(x->shape) ? x->shape : z->shape);
    return true;
}

static recur_code sigmoid_xent_kernel(rc_kctx *k)
{
    recur_array *z = k->in[0], *x = k->in[1];
    if (!rc_shape_equal(z->shape, x->shape)) {
        char a[128], b[128];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "logits and labels must have the same shape (%s vs %s)",
                       rc_shape_debug(x->shape, a, sizeof a), rc_shape_debug(z->shape, b, sizeof b));
    }
    recur_array *o = rc_kout(k, 0, x->dtype, x->shape);
    if (!o) return recur_status_code(k->st);
    for (int64_t i = 0; i < x->size; i++) {
        double xv = rc_array_get(x, i), zv = rc_array_get(z, i);
        rc_array_set(o, i, fmax(xv, 0) - xv * zv + log1p(exp(-fabs(xv))));
    }
    return RECUR_OK;
}

static bool grad_sigmoid_xent(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    recur_tensor *z = op->inputs[0], *x = op->inputs[1];
    dx[1] = recur_mul(g, dy[0], recur_sub(g, recur_sigmoid(g, x), z));
    dx[0] = recur_mul(g, dy[0], recur_neg(g, x));
    return recur_graph_ok(g);
}

recur_tensor *recur_sigmoid_cross_entropy_with_logits(recur_graph *g, recur_tensor *labels, recur_tensor *logits)
{
    recur_tensor *in[2] = {labels, logits};
    return rc_op1(g, RC_OP_SIGMOID_XENT, in, 2, NULL, NULL);
}

recur_tensor *recur_mean_squared_error(recur_graph *g, recur_tensor *labels, recur_tensor *predictions)
{
    return recur_reduce_mean(g, recur_square(g, recur_sub(g, predictions, labels)), NULL, 0, false);
}

recur_tensor *rc_const_scalar(recur_graph *g, recur_dtype dt, double v, const char *name);

recur_tensor *recur_l2_loss(recur_graph *g, recur_tensor *t)
{
    if (!rc_gready(g, &t, 1)) return NULL;
    return recur_mul(g, recur_reduce_sum(g, recur_square(g, t), NULL, 0, false), rc_const_scalar(g, t->dtype, 0.5, NULL));
}

const rc_op_def rc_def_xent = {.type = "SoftmaxCrossEntropyWithLogits", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = xent_shape, .forward = xent_kernel, .reference = NULL, .grad = grad_xent};
const rc_op_def rc_def_sparse_xent = {.type = "SparseSoftmaxCrossEntropyWithLogits", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = xent_shape, .forward = xent_kernel, .reference = NULL, .grad = grad_xent};
const rc_op_def rc_def_sigmoid_xent = {.type = "SigmoidCrossEntropyWithLogits", .name = "logistic_loss", .min_inputs = 2, .max_inputs = 2, .flags = 0, .shape = sigmoid_xent_shape, .forward = sigmoid_xent_kernel, .reference = NULL, .grad = grad_sigmoid_xent};
