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
    fill_mask(m, p, kp);
    if (x->dtype == RECUR_F32) {
        const float *px = x->data, *pm = m->data;
        float *py = y->data;
        for (int64_t i = 0; i < x->size; i++) py[i] = px[i] * pm[i];
    } else {
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

const rc_op_def rc_def_dropout = {"Dropout", "dropout", 2, 2, RC_OPF_STATEFUL, dropout_shape, dropout_kernel, NULL, grad_dropout};
const rc_op_def rc_def_dropout_mask = {"DropoutMask", "dropout_mask", 1, 1, RC_OPF_STATEFUL | RC_OPF_NO_GRAD,
                                       dropout_mask_shape, dropout_mask_kernel, NULL, NULL};
