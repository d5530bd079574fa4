/*
 * common.c - helpers shared by op families: broadcasting, axis normalisation, TensorFlow-style
 * shape error messages, and the broadcast-undo used by gradients.
 */
#include "ops/ops.h"

const char *rc_op_label(const recur_op *op, char *buf, size_t cap)
{
    snprintf(buf, cap, "'{{node %s}} = %s'", op->name, rc_op_def_of(op->type)->type);
    return buf;
}

bool rc_shape_error(recur_graph *g, recur_op *op, const char *what)
{
    rc_strbuf sb;
    rc_sb_init(&sb);
    char lab[512];
    rc_sb_printf(&sb, "%s for %s with input shapes: ", what, rc_op_label(op, lab, sizeof lab));
    for (int i = 0; i < op->ninputs; i++) {
        char s[256];
        rc_sb_printf(&sb, "%s%s", i ? ", " : "", rc_shape_debug(op->inputs[i]->shape, s, sizeof s));
    }
    rc_sb_puts(&sb, ".");
    char *m = rc_sb_take(&sb);
    if (!m) {
        rc_goom(g);
        return false;
    }
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s", m);
    rc_free(m);
    return false;
}

bool rc_norm_axis(int axis, int rank, int *out)
{
    if (axis < -rank || axis >= rank) return false;
    *out = axis < 0 ? axis + rank : axis;
    return true;
}

bool rc_broadcast_shape(recur_graph *g, recur_op *op, recur_shape a, recur_shape b, recur_shape *out)
{
    if (a.rank < 0 || b.rank < 0) {
        *out = RECUR_UNKNOWN_SHAPE;
        return true;
    }
    int r = RC_MAX(a.rank, b.rank);
    recur_shape o = {.rank = r};
    for (int i = r - 1; i >= 0; i--) { /* from the last dimension, as TensorFlow reports */
        int ia = a.rank - r + i, ib = b.rank - r + i;
        int64_t da = ia >= 0 ? a.dims[ia] : 1, db = ib >= 0 ? b.dims[ib] : 1;
        int64_t d;
        if (da == 1)
            d = db;
        else if (db == 1)
            d = da;
        else if (da < 0)
            d = db;
        else if (db < 0)
            d = da;
        else if (da == db)
            d = da;
        else {
            char msg[128];
            snprintf(msg, sizeof msg, "Dimensions must be equal, but are %lld and %lld", (long long)da,
                     (long long)db);
            return rc_shape_error(g, op, msg);
        }
        o.dims[i] = d;
    }
    *out = o;
    return true;
}

bool rc_broadcast_runtime(recur_shape a, recur_shape b, recur_shape *out)
{
    int r = RC_MAX(a.rank, b.rank);
    recur_shape o = {.rank = r};
    for (int i = 0; i < r; i++) {
        int ia = a.rank - r + i, ib = b.rank - r + i;
        int64_t da = ia >= 0 ? a.dims[ia] : 1, db = ib >= 0 ? b.dims[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        o.dims[i] = da == 1 ? db : da;
    }
    *out = o;
    return true;
}

recur_tensor *rc_sum_to(recur_graph *g, recur_tensor *grad, recur_tensor *like)
{
    if (!grad || !like) return NULL;
    if (rc_shape_known(grad->shape) && rc_shape_equal(grad->shape, like->shape)) return grad;
    recur_tensor *in[2] = {grad, like};
    return rc_op1(g, RC_OP_SUM_TO_SHAPE, in, 2, NULL, NULL);
}
