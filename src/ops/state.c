/*
 * state.c - ops that hold or move values: placeholders (fed at run time), constants, variables
 * (their values live in the session), initialisation, assignment, identity, stop_gradient,
 * no-op groups.
 */
#include "exec/exec.h"

#include <math.h>

/* ================================================================== placeholder */

static bool placeholder_shape(recur_graph *g, recur_op *op)
{
    recur_dtype dt = (recur_dtype)op->attr.i[0];
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, dt, op->attr.shape);
    return true;
}

/* Python's dtype name used in the placeholder message ("float", as TF prints DataTypeString). */
static recur_code placeholder_kernel(rc_kctx *k)
{
    char s[256];
    return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                   "You must feed a value for placeholder tensor '%s' with dtype %s and shape %s",
                   k->op->name, recur_dtype_name(k->op->outputs[0].dtype),
                   rc_shape_debug(k->op->outputs[0].shape, s, sizeof s));
}

recur_tensor *recur_placeholder(recur_graph *g, recur_dtype dt, recur_shape shape, const char *name)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!rc_dtype_valid(dt)) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "placeholder: invalid dtype %d", (int)dt);
    if (shape.rank < -1 || shape.rank > RECUR_MAX_RANK)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "placeholder: rank %d is outside [0, %d] (or -1 for unknown)",
                       shape.rank, RECUR_MAX_RANK);
    for (int i = 0; i < shape.rank; i++)
        if (shape.dims[i] < -1)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "placeholder: dimension %d is %lld; use -1 for an unknown dimension", i,
                           (long long)shape.dims[i]);
    rc_attrs a = {.shape = shape};
    a.i[0] = dt;
    return rc_op1(g, RC_OP_PLACEHOLDER, NULL, 0, name, &a);
}

/* ================================================================== constant */

static bool const_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->attr.value->dtype, op->attr.value->shape);
    return true;
}

/* The constant's value is the graph's; runs use it without copying (never released). */
static recur_code const_kernel(rc_kctx *k)
{
    k->out[0] = k->op->attr.value;
    return RECUR_OK;
}

recur_tensor *recur_constant(recur_graph *g, const recur_array *value, const char *name)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!value) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "constant: value is NULL");
    if (!rc_dtype_valid(value->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "constant: unsupported dtype %s", recur_dtype_name(value->dtype));
    rc_attrs a = {0};
    a.value = recur_array_copy(value, NULL);
    if (!a.value) return rc_goom(g);
    return rc_op1(g, RC_OP_CONST, NULL, 0, name, &a);
}

recur_tensor *rc_const_scalar(recur_graph *g, recur_dtype dt, double v, const char *name)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    rc_attrs a = {0};
    a.value = rc_array_alloc(dt, RECUR_SCALAR, true, NULL);
    if (!a.value) return rc_goom(g);
    rc_array_set(a.value, 0, v);
    return rc_op1(g, RC_OP_CONST, NULL, 0, name, &a);
}

recur_tensor *recur_scalar_f32(recur_graph *g, float v) { return rc_const_scalar(g, RECUR_F32, v, NULL); }
recur_tensor *recur_scalar_i32(recur_graph *g, int32_t v) { return rc_const_scalar(g, RECUR_I32, v, NULL); }

/* ================================================================== variables */

static bool variable_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, (recur_dtype)op->attr.i[0], op->attr.shape);
    return true;
}

static recur_code variable_kernel(rc_kctx *k)
{
    rc_variable *v = k->op->var;
    if (!v) return rc_kerr(k, RECUR_INTERNAL, "Variable op %s has no definition", k->op->name);
    recur_array **slot = rc_session_var_slot(k->run->s, v);
    if (!slot) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    /* A reference to the session's value, NULL while uninitialised: the consumer that reads it
     * reports "Attempting to use uninitialized value", as in TensorFlow. */
    k->out[0] = *slot;
    return RECUR_OK;
}

recur_code rc_init_fill(recur_array *a, const recur_initializer *init, int64_t seed1, int64_t seed2,
                        recur_status *st);

static bool var_init_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[0]->shape);
    return true;
}

/* Allocate (or overwrite) the variable's value from its initializer. */
static recur_code var_init_kernel(rc_kctx *k)
{
    rc_variable *v = k->op->inputs[0]->op->var;
    recur_array **slot = rc_session_var_slot(k->run->s, v);
    if (!slot) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    recur_array *a = *slot;
    if (!a) {
        a = rc_array_alloc(v->dtype, v->shape, false, NULL);
        if (!a) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory allocating variable %s", v->name);
    }
    recur_code c;
    if (k->op->attr.value) {
        if (a->nbytes) memcpy(a->data, k->op->attr.value->data, a->nbytes);
        c = RECUR_OK;
    } else {
        c = rc_init_fill(a, &k->op->attr.init, k->op->attr.i[0], k->op->attr.i[1], k->st);
    }
    if (c != RECUR_OK) {
        if (a != *slot) recur_array_free(a);
        return c;
    }
    *slot = a;
    k->out[0] = a;
    return RECUR_OK;
}

/* ================================================================== assign */

static bool assign_shape(recur_graph *g, recur_op *op)
{
    recur_tensor *ref = op->inputs[0], *val = op->inputs[1];
    if (!rc_tensor_var(ref))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: the first input must be a variable, got %s",
                       rc_op_def_of(op->type)->type, op->name, ref->name), false;
    if (ref->dtype != val->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Input 'value' of '%s' Op has type %s that does not match type %s of argument 'ref'.",
                       rc_op_def_of(op->type)->type, recur_dtype_name(val->dtype), recur_dtype_name(ref->dtype)), false;
    if (op->type != RC_OP_ASSIGN && !rc_dtype_is_float(ref->dtype) && !rc_dtype_is_int(ref->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s %s: dtype %s is not supported",
                       rc_op_def_of(op->type)->type, op->name, recur_dtype_name(ref->dtype)), false;
    if (!rc_shape_compatible(ref->shape, val->shape)) return rc_shape_error(g, op, "Shapes must be equal");
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, ref->dtype, ref->shape);
    return true;
}

static recur_code assign_kernel(rc_kctx *k)
{
    rc_variable *v = k->op->inputs[0]->op->var;
    recur_array *val = k->in[1];
    recur_array **slot = rc_session_var_slot(k->run->s, v);
    if (!slot) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    if (!rc_shape_equal(val->shape, v->shape)) {
        char a[256], b[256];
        return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                       "Assign requires shapes of both tensors to match. lhs shape= %s rhs shape= %s",
                       rc_shape_debug(v->shape, a, sizeof a), rc_shape_debug(val->shape, b, sizeof b));
    }
    recur_array *dst = *slot;
    if (k->op->type == RC_OP_ASSIGN) {
        if (!dst) {
            dst = rc_array_alloc(v->dtype, v->shape, false, NULL);
            if (!dst) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
            *slot = dst;
        }
        if (dst != val && dst->nbytes) memcpy(dst->data, val->data, dst->nbytes);
    } else {
        if (!dst) return rc_kerr(k, RECUR_FAILED_PRECONDITION, "Attempting to use uninitialized value %s", v->name);
        double sign = k->op->type == RC_OP_ASSIGN_ADD ? 1 : -1;
        if (dst->dtype == RECUR_F32) {
            float *d = dst->data;
            const float *s = val->data;
            for (int64_t i = 0; i < dst->size; i++) d[i] += (float)sign * s[i];
        } else {
            for (int64_t i = 0; i < dst->size; i++) rc_array_set(dst, i, rc_array_get(dst, i) + sign * rc_array_get(val, i));
        }
    }
    k->out[0] = dst;
    return RECUR_OK;
}

static recur_tensor *assign_op(recur_graph *g, int type, recur_tensor *var, recur_tensor *value)
{
    recur_tensor *in[2] = {var, value};
    if (rc_gready(g, in, 2) && !rc_tensor_var(var))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: %s is not a variable", rc_op_def_of(type)->type, var->name);
    return rc_op1(g, type, in, 2, NULL, NULL);
}

recur_tensor *recur_assign(recur_graph *g, recur_tensor *var, recur_tensor *value) { return assign_op(g, RC_OP_ASSIGN, var, value); }
recur_tensor *recur_assign_add(recur_graph *g, recur_tensor *var, recur_tensor *value) { return assign_op(g, RC_OP_ASSIGN_ADD, var, value); }
recur_tensor *recur_assign_sub(recur_graph *g, recur_tensor *var, recur_tensor *value) { return assign_op(g, RC_OP_ASSIGN_SUB, var, value); }

/* ================================================================== identity, stop_gradient */

static bool identity_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, op->inputs[0]->dtype, op->inputs[0]->shape);
    return true;
}

static recur_code identity_kernel(rc_kctx *k)
{
    rc_kforward(k, 0, 0);
    return RECUR_OK;
}

static bool grad_identity(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    (void)g;
    (void)op;
    dx[0] = dy[0];
    return true;
}

recur_tensor *recur_identity(recur_graph *g, recur_tensor *x, const char *name)
{
    return rc_op1(g, RC_OP_IDENTITY, &x, 1, name, NULL);
}

recur_tensor *recur_stop_gradient(recur_graph *g, recur_tensor *x)
{
    return rc_op1(g, RC_OP_STOP_GRADIENT, &x, 1, NULL, NULL);
}

/* ================================================================== check_numerics */

/* tf.debugging.check_numerics: x passes through; a NaN or Inf fails the run with TensorFlow's
 * words ("<message> : Tensor had NaN values"). attr.ptr: the message (graph-owned). */
static bool check_numerics_shape(recur_graph *g, recur_op *op)
{
    if (!rc_dtype_is_float(op->inputs[0]->dtype)) return rc_shape_error(g, op, "CheckNumerics needs a float tensor");
    return identity_shape(g, op);
}

static recur_code check_numerics_kernel(rc_kctx *k)
{
    recur_array *x = k->in[0];
    bool nan = false, inf = false;
    for (int64_t i = 0; i < x->size; i++) {
        double v = x->dtype == RECUR_F32 ? ((const float *)x->data)[i] : ((const double *)x->data)[i];
        nan |= isnan(v);
        inf |= isinf(v);
    }
    if (nan || inf)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "%s : Tensor had %s values", (const char *)k->op->attr.ptr,
                       nan && inf ? "Inf and NaN" : nan ? "NaN" : "Inf");
    rc_kforward(k, 0, 0);
    return RECUR_OK;
}

/* The gradient is checked too, as TensorFlow's. */
static bool grad_check_numerics(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_printf(&b, "Not a number (NaN) or infinity (Inf) values detected in gradient. %s", (const char *)op->attr.ptr);
    dx[0] = b.oom ? rc_goom(g) : recur_check_numerics(g, dy[0], b.s);
    rc_sb_free(&b);
    return dx[0] != NULL;
}

recur_tensor *recur_check_numerics(recur_graph *g, recur_tensor *x, const char *message)
{
    if (!rc_gready(g, &x, 1)) return NULL;
    rc_attrs a = {0};
    if (!(a.ptr = (void *)rc_intern(g, message ? message : ""))) return NULL;
    return rc_op1(g, RC_OP_CHECK_NUMERICS, &x, 1, NULL, &a);
}

/* ================================================================== no-op / group */

static bool noop_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 0)) return rc_goom(g), false;
    return true;
}

static recur_code noop_kernel(rc_kctx *k)
{
    (void)k;
    return RECUR_OK;
}

recur_op *recur_group(recur_graph *g, recur_op *const *deps, int n, const char *name)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    for (int i = 0; i < n; i++) {
        if (!deps[i]) return NULL;
        if (deps[i]->g != g)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "group: op %s is from another graph", deps[i]->name);
    }
    recur_op *op = rc_op_new(g, RC_OP_NOOP, NULL, 0, name, NULL);
    if (!op) return NULL;
    for (int i = 0; i < n; i++)
        if (!rc_add_ctrl(op, deps[i])) return rc_goom(g);
    return op;
}

/* ================================================================== descriptors */

const rc_op_def rc_def_placeholder = {.type = "Placeholder", .name = NULL, .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD, .shape = placeholder_shape, .forward = placeholder_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_constant = {.type = "Const", .name = NULL, .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD, .shape = const_shape, .forward = const_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_variable = {.type = "VariableV2", .name = "Variable", .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL, .shape = variable_shape, .forward = variable_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_var_init = {.type = "Assign", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL | RC_OPF_REF_INPUT, .shape = var_init_shape, .forward = var_init_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_assign = {.type = "Assign", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL | RC_OPF_REF_INPUT, .shape = assign_shape, .forward = assign_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_assign_add = {.type = "AssignAdd", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL | RC_OPF_REF_INPUT, .shape = assign_shape, .forward = assign_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_assign_sub = {.type = "AssignSub", .name = NULL, .min_inputs = 2, .max_inputs = 2, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL | RC_OPF_REF_INPUT, .shape = assign_shape, .forward = assign_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_identity = {.type = "Identity", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_FORWARDS, .shape = identity_shape, .forward = identity_kernel, .reference = NULL, .grad = grad_identity};
const rc_op_def rc_def_check_numerics = {.type = "CheckNumerics", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_FORWARDS, .shape = check_numerics_shape, .forward = check_numerics_kernel, .reference = NULL, .grad = grad_check_numerics};
const rc_op_def rc_def_stop_gradient = {.type = "StopGradient", .name = NULL, .min_inputs = 1, .max_inputs = 1, .flags = RC_OPF_NO_GRAD | RC_OPF_FORWARDS, .shape = identity_shape, .forward = identity_kernel, .reference = NULL, .grad = NULL};
const rc_op_def rc_def_noop = {.type = "NoOp", .name = NULL, .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD, .shape = noop_shape, .forward = noop_kernel, .reference = NULL, .grad = NULL};
