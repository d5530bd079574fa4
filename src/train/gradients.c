/*
 * gradients.c - automatic differentiation as a graph rewrite (tf.gradients): walk the ops
 * between ys and xs in reverse creation order (a topological order), call each op's gradient
 * builder from the op table, and sum the gradients of tensors used by several ops. Gradients
 * of embedding lookups stay sparse (IndexedSlices) until something needs them dense.
 */
#include "ops/ops.h"

recur_tensor *rc_reshape_like(recur_graph *g, recur_tensor *x, recur_tensor *like);

/* ================================================================== IndexedSlices */
/* IndexedSlices(values [N, ...], indices [N], params): the dense tensor shaped like params with
 * values[i] added at row indices[i]. Optimizers read values/indices directly; anything else
 * sees the dense form. */

static bool indexed_slices_shape(recur_graph *g, recur_op *op)
{
    if (!rc_dtype_is_int(op->inputs[1]->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "IndexedSlices %s: indices must be integers", op->name), false;
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[2]->shape);
    return true;
}

static recur_code indexed_slices_kernel(rc_kctx *k)
{
    /* the dense form, as UnsortedSegmentSum(values, indices, params) */
    return rc_op_def_of(RC_OP_UNSORTED_SEGMENT_SUM)->forward(k);
}

static bool grad_indexed_slices(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    dx[0] = rc_reshape_like(g, recur_gather(g, dy[0], op->inputs[1]), op->inputs[0]);
    dx[1] = dx[2] = NULL;
    return dx[0] != NULL;
}

const rc_op_def rc_def_indexed_slices = {.type = "IndexedSlices", .name = NULL, .min_inputs = 3, .max_inputs = 3, .flags = 0, .shape = indexed_slices_shape, .forward = indexed_slices_kernel, .reference = NULL, .grad = grad_indexed_slices};

bool rc_is_indexed_slices(const recur_tensor *t) { return t && t->op->type == RC_OP_INDEXED_SLICES; }

recur_tensor *rc_indexed_slices(recur_graph *g, recur_tensor *values, recur_tensor *indices, recur_tensor *params)
{
    recur_tensor *in[3] = {values, indices, params};
    return rc_op1(g, RC_OP_INDEXED_SLICES, in, 3, NULL, NULL);
}

/* ================================================================== aggregation */

typedef struct glist {
    recur_tensor **v;
    int n, cap;
} glist;

static bool push(recur_graph *g, glist *l, recur_tensor *t)
{
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 2;
        recur_tensor **nv = rc_realloc(l->v, (size_t)nc * sizeof *nv);
        if (!nv) return rc_goom(g), false;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = t;
    return true;
}

/* Sum of a tensor's gradients: one stays as it is; IndexedSlices concatenate; else add_n. */
static recur_tensor *aggregate(recur_graph *g, glist *l)
{
    if (l->n == 0) return NULL;
    if (l->n == 1) return l->v[0];
    bool all_sparse = true;
    for (int i = 0; i < l->n; i++) all_sparse = all_sparse && rc_is_indexed_slices(l->v[i]);
    if (all_sparse) {
        recur_tensor **vals = rc_malloc((size_t)l->n * sizeof *vals), **idx = rc_malloc((size_t)l->n * sizeof *idx);
        recur_tensor *r = NULL;
        if (vals && idx) {
            for (int i = 0; i < l->n; i++) {
                vals[i] = l->v[i]->op->inputs[0];
                idx[i] = recur_cast(g, l->v[i]->op->inputs[1], RECUR_I64);
            }
            r = rc_indexed_slices(g, recur_concat(g, vals, l->n, 0), recur_concat(g, idx, l->n, 0), l->v[0]->op->inputs[2]);
        } else {
            rc_goom(g);
        }
        rc_free(vals);
        rc_free(idx);
        return r;
    }
    return recur_add_n(g, l->v, l->n);
}

/* ================================================================== the rewrite */

bool rc_build_gradients(recur_graph *g, rc_frame *src, recur_tensor *const *ys, int ny, recur_tensor *const *xs, int nx,
                        recur_tensor *const *grad_ys, recur_tensor **dxs)
{
    size_t nops = g->nops;
    int nt = g->ntensors;
    unsigned char *from_x = rc_calloc(nops + 1, 1), *to_y = rc_calloc(nops + 1, 1), *is_x = rc_calloc((size_t)nt + 1, 1);
    glist *grads = rc_calloc((size_t)nt + 1, sizeof *grads);
    bool ok = from_x && to_y && is_x && grads;
    if (!ok) rc_goom(g);
    for (int i = 0; ok && i < nx; i++) is_x[xs[i]->id] = 1;
    /* ops depending on some x (creation order is topological) */
    for (size_t i = 0; ok && i < nops; i++) {
        recur_op *op = g->ops[i];
        if (op->frame != src) continue;
        for (int j = 0; j < op->ninputs && !from_x[i]; j++) {
            recur_tensor *t = op->inputs[j];
            if (is_x[t->id] || (t->op->frame == src && from_x[t->op->id])) from_x[i] = 1;
        }
    }
    /* ops some y depends on */
    for (int i = 0; ok && i < ny; i++)
        if (ys[i]->op->frame == src) to_y[ys[i]->op->id] = 1;
    for (size_t i = nops; ok && i-- > 0;) {
        recur_op *op = g->ops[i];
        if (!to_y[i]) continue;
        for (int j = 0; j < op->ninputs; j++)
            if (op->inputs[j]->op->frame == src) to_y[op->inputs[j]->op->id] = 1;
    }
    /* seed */
    for (int i = 0; ok && i < ny; i++) {
        recur_tensor *gy = grad_ys && grad_ys[i] ? grad_ys[i] : recur_ones_like(g, ys[i]);
        ok = gy && push(g, &grads[ys[i]->id], gy);
    }
    /* reverse walk */
    for (size_t i = nops; ok && i-- > 0;) {
        recur_op *op = g->ops[i];
        if (!to_y[i] || !from_x[i] || op->frame != src) continue;
        const rc_op_def *def = rc_op_def_of(op->type);
        recur_tensor *dy[RECUR_MAX_STATE + 8], **dyp = op->noutputs <= (int)RC_ARRAY_LEN(dy) ? dy : rc_calloc((size_t)op->noutputs, sizeof *dyp);
        recur_tensor *dx[64], **dxp = op->ninputs <= 64 ? dx : rc_calloc((size_t)op->ninputs, sizeof *dxp);
        if (!dyp || !dxp) {
            rc_goom(g);
            ok = false;
            break;
        }
        bool any = false;
        for (int k = 0; k < op->noutputs; k++) {
            dyp[k] = aggregate(g, &grads[op->outputs[k].id]);
            any = any || dyp[k];
        }
        if (any && !(def->flags & RC_OPF_NO_GRAD)) {
            for (int k = 0; k < op->ninputs; k++) dxp[k] = NULL;
            char scope[1024];
            snprintf(scope, sizeof scope, "%s_grad", op->name);
            const char *ns = recur_name_scope_push(g, scope);
            if (!ns) {
                ok = false;
            } else {
                if (!def->grad) {
                    rc_gerr(g, RECUR_UNIMPLEMENTED, "No gradient defined for operation '%s' (op type: %s)", op->name, def->type);
                    ok = false;
                } else {
                    /* materialise missing output gradients as zeros for multi-output ops */
                    for (int k = 0; k < op->noutputs; k++)
                        if (!dyp[k] && op->noutputs > 1 && rc_dtype_is_float(op->outputs[k].dtype))
                            dyp[k] = recur_zeros_like(g, &op->outputs[k]);
                    ok = def->grad(g, op, dyp, dxp) && recur_graph_ok(g);
                }
                recur_name_scope_pop(g);
            }
            for (int k = 0; ok && k < op->ninputs; k++) {
                recur_tensor *in = op->inputs[k];
                if (!dxp[k] || !rc_dtype_is_float(in->dtype)) continue;
                ok = push(g, &grads[in->id], dxp[k]);
            }
        }
        if (dyp != dy) rc_free(dyp);
        if (dxp != dx) rc_free(dxp);
    }
    for (int i = 0; ok && i < nx; i++) dxs[i] = aggregate(g, &grads[xs[i]->id]);
    if (grads)
        for (int i = 0; i < nt; i++) rc_free(grads[i].v);
    rc_free(grads);
    rc_free(from_x);
    rc_free(to_y);
    rc_free(is_x);
    return ok && recur_graph_ok(g);
}

bool recur_gradients(recur_graph *g, recur_tensor *const *ys, int ny, recur_tensor *const *xs, int nx,
                     recur_tensor *const *grad_ys, recur_tensor **dxs)
{
    if (!rc_gready(g, NULL, 0)) return false;
    if (!ys || ny < 1 || !xs || nx < 1 || !dxs)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "gradients: ys and xs must be non-empty and dxs non-NULL"), false;
    if (!rc_gready(g, ys, ny) || !rc_gready(g, xs, nx)) return false;
    for (int i = 0; i < nx; i++) dxs[i] = NULL;
    for (int i = 0; i < ny; i++) {
        if (ys[i]->op->frame || !rc_dtype_is_float(ys[i]->dtype))
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "gradients: ys[%d] (%s) must be a floating tensor outside any loop body",
                           i, ys[i]->name), false;
        if (grad_ys && grad_ys[i]) {
            if (!rc_gready(g, &grad_ys[i], 1)) return false;
            /* A dtype mismatch is named as such (the shapes may well agree). */
            if (grad_ys[i]->dtype != ys[i]->dtype)
                return rc_gerr(g, RECUR_INVALID_ARGUMENT, "gradients: grad_ys[%d] has dtype %s but ys[%d] (%s) has dtype %s",
                               i, recur_dtype_name(grad_ys[i]->dtype), i, ys[i]->name, recur_dtype_name(ys[i]->dtype)), false;
            if (!rc_shape_compatible(grad_ys[i]->shape, ys[i]->shape)) {
                char a[64], b[64];
                return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                               "Incompatible shapes between op input and calculated input gradient: grad_ys[%d] %s %s vs "
                               "ys[%d] %s %s",
                               i, recur_dtype_name(grad_ys[i]->dtype), recur_shape_str(grad_ys[i]->shape, a, sizeof a), i,
                               recur_dtype_name(ys[i]->dtype), recur_shape_str(ys[i]->shape, b, sizeof b)), false;
            }
        }
    }
    for (int i = 0; i < nx; i++)
        if (xs[i]->op->frame)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "gradients: xs[%d] (%s) is inside a loop body", i, xs[i]->name), false;
    size_t depth = rc_scope_depth(g);
    if (!recur_name_scope_push(g, "gradients")) return false;
    bool ok = rc_build_gradients(g, NULL, ys, ny, xs, nx, grad_ys, dxs);
    rc_scope_unwind(g, depth);
    if (!ok) {
        for (int i = 0; i < nx; i++) dxs[i] = NULL;
        return false;
    }
    return true;
}
