/*
 * optimizers.c - TensorFlow 1.x's optimizers: GradientDescent, Momentum (Nesterov), Adam,
 * Adagrad and RMSProp with their update rules (the kernels of training_ops), slot variable
 * names (<var>/Adam, <var>/Adam_1, beta1_power, ...) and sparse updates for embedding
 * gradients; the global step, exponential decay and clip_by_global_norm.
 */
#include "exec/exec.h"

#include <math.h>

bool rc_is_indexed_slices(const recur_tensor *t);
recur_tensor *rc_indexed_slices(recur_graph *g, recur_tensor *values, recur_tensor *indices, recur_tensor *params);
recur_tensor *rc_const_scalar(recur_graph *g, recur_dtype dt, double v, const char *name);
recur_tensor *rc_floor(recur_graph *g, recur_tensor *x);

/* ================================================================== apply kernels */
/* Inputs: [var, slots..., lr, grad] or, sparse (attr i[0]), [var, slots..., lr, values, indices].
 * Slots per kind: Momentum accum; Adam m, v, beta1_power, beta2_power; Adagrad accum; RMSProp
 * ms, mom. Attributes f[]: Momentum momentum (i[1] nesterov); Adam beta1, beta2, epsilon;
 * RMSProp rho, momentum, epsilon. */

static int nslots(int type)
{
    switch (type) {
    case RC_OP_APPLY_MOMENTUM:
    case RC_OP_APPLY_ADAGRAD: return 1;
    case RC_OP_APPLY_ADAM: return 4;
    case RC_OP_APPLY_RMSPROP: return 2;
    default: return 0;
    }
}

static bool apply_shape(recur_graph *g, recur_op *op)
{
    int ns = nslots(op->type);
    recur_tensor *var = op->inputs[0];
    bool sparse = op->attr.i[0];
    if (!rc_tensor_var(var))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: %s is not a variable", op->name, var->name), false;
    if (!rc_dtype_is_float(var->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: variable %s must be floating, not %s", op->name,
                       recur_variable_name(var), recur_dtype_name(var->dtype)), false;
    recur_tensor *grad = op->inputs[1 + ns + 1];
    if (grad->dtype != var->dtype)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: gradient dtype %s does not match variable %s (%s)", op->name,
                       recur_dtype_name(grad->dtype), recur_variable_name(var), recur_dtype_name(var->dtype)), false;
    if (!sparse && !rc_shape_compatible(grad->shape, var->shape)) {
        char a[64], b[64];
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s: var and grad do not have the same shape %s %s", op->name,
                       rc_shape_debug(var->shape, a, sizeof a), rc_shape_debug(grad->shape, b, sizeof b)), false;
    }
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, var->dtype, var->shape);
    return true;
}

/* Sum the rows of duplicate indices (TensorFlow deduplicates IndexedSlices before a sparse
 * update). Writes unique indices and summed rows; returns the count or -1. */
typedef struct dedup {
    int64_t *idx;
    double *rows;
    int64_t n;
} dedup;

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

static recur_code deduplicate(rc_kctx *k, const recur_array *values, const recur_array *indices, int64_t nrows,
                              int64_t width, dedup *d)
{
    int64_t n = indices->size;
    if (values->size != n * width)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "sparse update: %lld values for %lld indices of width %lld",
                       (long long)values->size, (long long)n, (long long)width);
    int64_t *pairs = rc_malloc((size_t)(2 * n + 2) * sizeof *pairs);
    d->idx = rc_malloc((size_t)(n + 1) * sizeof *d->idx);
    d->rows = rc_calloc((size_t)(n * width + 1), sizeof *d->rows);
    if (!pairs || !d->idx || !d->rows) {
        rc_free(pairs);
        return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t r = (int64_t)rc_array_get(indices, i);
        if (r < 0 || r >= nrows) {
            rc_free(pairs);
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "indices[%lld] = %lld is not in [0, %lld)", (long long)i, (long long)r,
                           (long long)nrows);
        }
        pairs[2 * i] = r;
        pairs[2 * i + 1] = i;
    }
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, cmp_pair);
    d->n = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!d->n || d->idx[d->n - 1] != pairs[2 * i]) d->idx[d->n++] = pairs[2 * i];
        double *row = d->rows + (d->n - 1) * width;
        for (int64_t j = 0; j < width; j++) row[j] += rc_array_get(values, pairs[2 * i + 1] * width + j);
    }
    rc_free(pairs);
    return RECUR_OK;
}

/* One element's update; v = var, s0/s1 slots, g gradient. Scalars: lr, b1p, b2p. */
typedef struct upd {
    int type;
    double lr, a0, a1, a2, alpha;
    bool nesterov;
} upd;

static inline void update_elem(const upd *u, double *v, double *s0, double *s1, double g)
{
    switch (u->type) {
    case RC_OP_APPLY_GD: *v -= u->lr * g; break;
    case RC_OP_APPLY_MOMENTUM:
        *s0 = *s0 * u->a0 + g;
        *v -= u->nesterov ? g * u->lr + *s0 * u->a0 * u->lr : *s0 * u->lr;
        break;
    case RC_OP_APPLY_ADAM:
        *s0 += (g - *s0) * (1 - u->a0);
        *s1 += (g * g - *s1) * (1 - u->a1);
        *v -= *s0 * u->alpha / (sqrt(*s1) + u->a2);
        break;
    case RC_OP_APPLY_ADAGRAD:
        *s0 += g * g;
        *v -= g * u->lr / sqrt(*s0);
        break;
    default: /* RMSProp */
        *s0 += (g * g - *s0) * (1 - u->a0);
        *s1 = *s1 * u->a1 + u->lr * g / sqrt(*s0 + u->a2);
        *v -= *s1;
        break;
    }
}

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

/* float32 fast path of the dense update (the common case). */
HOT static void update_f32(const upd *u, float *v, float *s0, float *s1, const float *g, int64_t n)
{
    float lr = (float)u->lr, a0 = (float)u->a0, a1 = (float)u->a1, a2 = (float)u->a2, alpha = (float)u->alpha;
    switch (u->type) {
    case RC_OP_APPLY_GD:
        for (int64_t i = 0; i < n; i++) v[i] -= lr * g[i];
        break;
    case RC_OP_APPLY_ADAM:
        for (int64_t i = 0; i < n; i++) {
            s0[i] += (g[i] - s0[i]) * (1 - a0);
            s1[i] += (g[i] * g[i] - s1[i]) * (1 - a1);
            v[i] -= s0[i] * alpha / (sqrtf(s1[i]) + a2);
        }
        break;
    default:
        for (int64_t i = 0; i < n; i++) {
            double vv = v[i], x0 = s0 ? s0[i] : 0, x1 = s1 ? s1[i] : 0;
            update_elem(u, &vv, &x0, &x1, g[i]);
            v[i] = (float)vv;
            if (s0) s0[i] = (float)x0;
            if (s1) s1[i] = (float)x1;
        }
    }
}

/* Sparse updates in the variable's precision, as TensorFlow's kernels. Adam follows
 * Adam._apply_sparse: every moment decays, the rows are added, every element is updated. The
 * others (SparseApply* kernels) touch only the rows present. */
#define SPARSE_UPDATE(T)                                                                       \
    do {                                                                                       \
        T *pv = var->data, *p0 = s0 ? s0->data : NULL, *p1 = s1 ? s1->data : NULL;              \
        if (type == RC_OP_APPLY_ADAM) {                                                        \
            T b1 = (T)u.a0, b2 = (T)u.a1, eps = (T)u.a2, alpha = (T)u.alpha;                   \
            for (int64_t i = 0; i < var->size; i++) {                                          \
                p0[i] *= b1;                                                                   \
                p1[i] *= b2;                                                                   \
            }                                                                                  \
            for (int64_t r = 0; r < d.n; r++)                                                  \
                for (int64_t j = 0; j < width; j++) {                                          \
                    int64_t e = d.idx[r] * width + j;                                          \
                    T gv = (T)d.rows[r * width + j];                                           \
                    p0[e] += gv * (1 - b1);                                                    \
                    p1[e] += (gv * gv) * (1 - b2);                                             \
                }                                                                              \
            for (int64_t i = 0; i < var->size; i++) pv[i] -= alpha * p0[i] / ((T)sqrt(p1[i]) + eps); \
        } else {                                                                               \
            for (int64_t r = 0; r < d.n; r++)                                                  \
                for (int64_t j = 0; j < width; j++) {                                          \
                    int64_t e = d.idx[r] * width + j;                                          \
                    double vv = pv[e], x0 = p0 ? p0[e] : 0, x1 = p1 ? p1[e] : 0;               \
                    update_elem(&u, &vv, &x0, &x1, (T)d.rows[r * width + j]);                  \
                    pv[e] = (T)vv;                                                             \
                    if (p0) p0[e] = (T)x0;                                                     \
                    if (p1) p1[e] = (T)x1;                                                     \
                }                                                                              \
        }                                                                                      \
    } while (0)

/* Adam._apply_sparse in one pass over rows [row0, row1) of the table (float32): every row's
 * moments decay, the rows present (sorted unique idx) add their gradient, and every element is
 * updated. */
HOT static void adam_sparse_f32(float *var, float *m, float *v, int64_t row0, int64_t row1, int64_t width, const dedup *d,
                                float b1, float b2, float eps, float alpha)
{
    int64_t r = 0, hi = d->n; /* r: the first present row >= row0 */
    while (r < hi) {
        int64_t mid = r + (hi - r) / 2;
        if (d->idx[mid] < row0) r = mid + 1;
        else hi = mid;
    }
    for (int64_t row = row0; row < row1; row++) {
        float *pv = var + row * width, *pm = m + row * width, *ps = v + row * width;
        if (r < d->n && d->idx[r] == row) {
            const double *g = d->rows + r * width;
            for (int64_t j = 0; j < width; j++) {
                float gv = (float)g[j];
                pm[j] = pm[j] * b1 + gv * (1 - b1);
                ps[j] = ps[j] * b2 + (gv * gv) * (1 - b2);
            }
            r++;
        } else {
            for (int64_t j = 0; j < width; j++) {
                pm[j] *= b1;
                ps[j] *= b2;
            }
        }
        for (int64_t j = 0; j < width; j++) pv[j] -= alpha * pm[j] / (sqrtf(ps[j]) + eps);
    }
}

/* The float32 updates, split between two threads on large variables (the elements are
 * independent, so the result does not depend on the split). */
typedef struct upd_job {
    const upd *u;
    float *v, *s0, *s1;
    const float *g;
    const dedup *d; /* sparse Adam: the rows present */
    int64_t width;
} upd_job;

static void update_range(void *arg, int64_t lo, int64_t hi)
{
    const upd_job *j = arg;
    if (j->d) {
        const upd *u = j->u;
        adam_sparse_f32(j->v, j->s0, j->s1, lo, hi, j->width, j->d, (float)u->a0, (float)u->a1, (float)u->a2, (float)u->alpha);
        return;
    }
    update_f32(j->u, j->v + lo, j->s0 ? j->s0 + lo : NULL, j->s1 ? j->s1 + lo : NULL, j->g + lo, hi - lo);
}

static recur_code apply_kernel(rc_kctx *k)
{
    int type = k->op->type, ns = nslots(type);
    bool sparse = k->op->attr.i[0];
    recur_array *var = k->in[0];
    recur_array *s0 = ns >= 1 ? k->in[1] : NULL, *s1 = ns >= 2 ? k->in[2] : NULL;
    recur_array *lr = k->in[1 + ns], *grad = k->in[2 + ns];
    for (int i = 1; i <= ns; i++)
        if (k->in[i]->size != (i <= 2 || type != RC_OP_APPLY_ADAM ? var->size : 1))
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "%s: slot %d has %lld elements, variable %lld", k->op->name, i,
                           (long long)k->in[i]->size, (long long)var->size);
    upd u = {.type = type, .lr = rc_array_get(lr, 0), .a0 = k->op->attr.f[0], .a1 = k->op->attr.f[1], .a2 = k->op->attr.f[2],
             .nesterov = k->op->attr.i[1]};
    if (type == RC_OP_APPLY_ADAM) {
        float b1p = (float)rc_array_get(k->in[3], 0), b2p = (float)rc_array_get(k->in[4], 0);
        u.alpha = (float)u.lr * sqrtf(1 - b2p) / (1 - b1p);
        s1 = k->in[2];
    }
    if (!sparse) {
        if (grad->size != var->size) {
            char a[64], b[64];
            return rc_kerr(k, RECUR_INVALID_ARGUMENT, "var and grad do not have the same shape%s %s",
                           rc_shape_debug(var->shape, a, sizeof a), rc_shape_debug(grad->shape, b, sizeof b));
        }
        if (var->dtype == RECUR_F32) {
            upd_job j = {.u = &u, .v = var->data, .s0 = s0 ? s0->data : NULL, .s1 = s1 ? s1->data : NULL, .g = grad->data};
            rc_kfor2(k, var->size, 1 << 16, update_range, &j);
        } else {
            for (int64_t i = 0; i < var->size; i++) {
                double *v = (double *)var->data + i, *x0 = s0 ? (double *)s0->data + i : NULL, *x1 = s1 ? (double *)s1->data + i : NULL;
                double d0 = 0, d1 = 0;
                update_elem(&u, v, x0 ? x0 : &d0, x1 ? x1 : &d1, ((double *)grad->data)[i]);
            }
        }
        k->out[0] = var;
        return RECUR_OK;
    }
    /* sparse: rows of the first dimension */
    recur_array *indices = k->in[3 + ns];
    int64_t nrows = var->shape.rank ? var->shape.dims[0] : 1, width = nrows ? var->size / nrows : 0;
    dedup d = {0};
    recur_code c = deduplicate(k, grad, indices, nrows, width, &d);
    if (c == RECUR_OK) {
        if (var->dtype == RECUR_F32 && type == RC_OP_APPLY_ADAM) {
            upd_job j = {.u = &u, .v = var->data, .s0 = s0->data, .s1 = s1->data, .d = &d, .width = width};
            rc_kfor2(k, nrows, (1 << 16) / RC_MAX(width, 1) + 1, update_range, &j);
        }
        else if (var->dtype == RECUR_F32)
            SPARSE_UPDATE(float);
        else
            SPARSE_UPDATE(double);
        k->out[0] = var;
    }
    rc_free(d.idx);
    rc_free(d.rows);
    return c;
}

#define APPLY_DEF(sym, tf)                                                                     \
    const rc_op_def rc_def_##sym = {.type = tf, .name = NULL, .min_inputs = 3, .max_inputs = 9, .flags = RC_OPF_NO_GRAD | RC_OPF_STATEFUL, .shape = apply_shape, .forward = apply_kernel, .reference = NULL, .grad = NULL};
APPLY_DEF(apply_gd, "ApplyGradientDescent")
APPLY_DEF(apply_momentum, "ApplyMomentum")
APPLY_DEF(apply_adam, "ApplyAdam")
APPLY_DEF(apply_adagrad, "ApplyAdagrad")
APPLY_DEF(apply_rmsprop, "ApplyRMSProp")

/* ================================================================== optimizer objects */

typedef struct slot_ent {
    recur_tensor *var, *slot;
    const char *key;
} slot_ent;

struct recur_optimizer {
    recur_graph *g;
    recur_optimizer_opts o;
    const char *name;
    slot_ent *slots;
    size_t nslots, capslots;
    recur_tensor *beta1_power, *beta2_power;
};

static void free_optimizer(void *p)
{
    recur_optimizer *o = p;
    if (!o) return;
    rc_free(o->slots);
    rc_free(o);
}

recur_optimizer *recur_optimizer_new(recur_graph *g, const recur_optimizer_opts *opts)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    recur_optimizer_opts o = opts ? *opts : (recur_optimizer_opts){0};
    static const char *names[] = {"GradientDescent", "Momentum", "Adam", "Adagrad", "RMSProp"};
    if (o.kind < RECUR_OPT_GRADIENT_DESCENT || o.kind > RECUR_OPT_RMSPROP)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Unknown optimizer kind %d", (int)o.kind);
    if (o.learning_rate_tensor) {
        if (!rc_gready(g, &o.learning_rate_tensor, 1)) return NULL;
        if (!rc_dtype_is_float(o.learning_rate_tensor->dtype) || o.learning_rate_tensor->shape.rank > 0)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "learning_rate must be a float scalar");
    } else if (!(o.learning_rate >= 0) || !isfinite(o.learning_rate)) {
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "learning_rate must be a finite non-negative number, got %g", o.learning_rate);
    }
    if (o.kind == RECUR_OPT_ADAM) {
        if (!o.beta1) o.beta1 = 0.9;
        if (!o.beta2) o.beta2 = 0.999;
        if (!o.epsilon) o.epsilon = 1e-8;
        if (o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Adam: beta1 and beta2 must be in [0, 1)");
    }
    if (o.kind == RECUR_OPT_ADAGRAD && !o.initial_accumulator_value) o.initial_accumulator_value = 0.1;
    if (o.kind == RECUR_OPT_ADAGRAD && o.initial_accumulator_value <= 0)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "initial_accumulator_value must be positive: %g", o.initial_accumulator_value);
    if (o.kind == RECUR_OPT_RMSPROP) {
        if (!o.decay) o.decay = 0.9;
        if (!o.epsilon) o.epsilon = 1e-10;
    }
    recur_optimizer *opt = rc_calloc(1, sizeof *opt);
    if (!opt || !rc_graph_own(g, opt, free_optimizer)) return rc_goom(g);
    opt->g = g;
    opt->o = o;
    opt->name = rc_intern(g, o.name ? o.name : names[o.kind]);
    return opt->name ? opt : NULL;
}

recur_tensor *recur_optimizer_slot(recur_optimizer *opt, recur_tensor *var, const char *slot)
{
    if (!opt || !var || !slot) return NULL;
    for (size_t i = 0; i < opt->nslots; i++)
        if (opt->slots[i].var == var && !strcmp(opt->slots[i].key, slot)) return opt->slots[i].slot;
    return NULL;
}

/* TensorFlow's slot_creator: variable_scope(None, default_name="<var>/<optimizer name>") then a
 * non-trainable variable named by that scope, so a second slot becomes "<var>/Adam_1". */
static recur_tensor *make_slot(recur_optimizer *opt, recur_tensor *var, const char *key, recur_initializer init)
{
    recur_tensor *have = recur_optimizer_slot(opt, var, key);
    if (have) return have;
    recur_graph *g = opt->g;
    char dn[1024];
    snprintf(dn, sizeof dn, "%s/%s", recur_variable_name(var), opt->name);
    recur_scope *s = recur_variable_scope_push_opts(g, NULL, &(recur_scope_opts){.default_name = dn, .no_name_scope = true});
    if (!s) return NULL;
    char full[1024];
    snprintf(full, sizeof full, "%s", s->name);
    recur_variable_scope_pop(g);
    const char *cur = g->var_scope->name;
    const char *rel = cur[0] ? full + strlen(cur) + 1 : full;
    recur_tensor *v = recur_get_variable_at(g, rel, __FILE__, __LINE__, __func__, recur_tensor_shape(var),
                                            &(recur_variable_opts){.dtype = recur_tensor_dtype(var), .initializer = init,
                                                                   .not_trainable = true});
    if (!v) return NULL;
    if (!RC_GROW(opt->slots, opt->capslots, opt->nslots + 1)) return rc_goom(g);
    opt->slots[opt->nslots++] = (slot_ent){var, v, key};
    return v;
}

/* A non-slot variable ("beta1_power") at the root scope, uniquified like tf.Variable names. */
static recur_tensor *non_slot(recur_optimizer *opt, const char *name, double value, recur_dtype dt)
{
    recur_graph *g = opt->g;
    char *saved = g->name_stack;
    char root[1] = "";
    g->name_stack = root;
    char *unique = rc_unique_name(g, name, false);
    g->name_stack = saved;
    if (!unique) return rc_goom(g);
    recur_scope *vs = g->var_scope;
    g->var_scope = g->root_scope;
    recur_reuse r = g->root_scope->reuse;
    g->root_scope->reuse = RECUR_REUSE_INHERIT;
    recur_tensor *v = recur_get_variable_at(g, unique, __FILE__, __LINE__, __func__, RECUR_SCALAR,
                                            &(recur_variable_opts){.dtype = dt, .initializer = recur_constant_initializer(value),
                                                                   .not_trainable = true});
    g->root_scope->reuse = r;
    g->var_scope = vs;
    rc_free(unique);
    return v;
}

int recur_optimizer_compute_gradients(recur_optimizer *opt, recur_tensor *loss, recur_tensor *const *vars, int nvars,
                                      recur_tensor **grads, recur_tensor **vars_out, int cap)
{
    if (!opt || !rc_gready(opt->g, &loss, 1)) return -1;
    recur_graph *g = opt->g;
    recur_tensor **vl = (recur_tensor **)vars;
    recur_tensor *buf[1];
    recur_tensor **all = NULL;
    if (!vars || nvars <= 0) {
        long n = recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, buf, 0);
        if (n <= 0) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "No variables to optimize."), -1;
        all = rc_malloc((size_t)n * sizeof *all);
        if (!all) return rc_goom(g), -1;
        recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, all, (size_t)n);
        vl = all;
        nvars = (int)n;
    }
    int rc = -1;
    if (nvars > cap || !grads) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "compute_gradients: %d variables do not fit in %d slots", nvars, cap);
    } else if (recur_gradients(g, &loss, 1, vl, nvars, NULL, grads)) {
        if (vars_out) memcpy(vars_out, vl, (size_t)nvars * sizeof *vl);
        rc = nvars;
    }
    rc_free(all);
    return rc;
}

recur_op *recur_optimizer_apply_gradients(recur_optimizer *opt, recur_tensor *const *grads, recur_tensor *const *vars, int n,
                                          recur_tensor *global_step)
{
    if (!opt) return NULL;
    recur_graph *g = opt->g;
    if (!rc_gready(g, vars, n)) return NULL;
    if (n < 1) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "apply_gradients: no variables");
    int used = 0;
    for (int i = 0; i < n; i++) {
        if (!rc_tensor_var(vars[i])) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "apply_gradients: %s is not a variable", vars[i]->name);
        if (grads[i]) {
            if (!rc_gready(g, &grads[i], 1)) return NULL;
            used++;
        }
    }
    if (!used)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "No gradients provided for any variable, check your graph for ops that do "
                                                  "not support gradients, between variables and loss.");
    if (global_step && (!rc_tensor_var(global_step) || !rc_dtype_is_int(global_step->dtype)))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "global_step must be an integer variable");
    size_t depth = rc_scope_depth(g);
    recur_op *result = NULL;
    /* slots (outside any name scope, as TensorFlow's init_scope); Adam's beta powers first */
    if (opt->o.kind == RECUR_OPT_ADAM && !opt->beta1_power) {
        recur_dtype dt = RECUR_F32;
        for (int i = 0; i < n; i++)
            if (grads[i]) dt = recur_tensor_dtype(vars[i]);
        opt->beta1_power = non_slot(opt, "beta1_power", opt->o.beta1, dt);
        opt->beta2_power = opt->beta1_power ? non_slot(opt, "beta2_power", opt->o.beta2, dt) : NULL;
        if (!opt->beta2_power) return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!grads[i]) continue;
        bool ok = true;
        switch (opt->o.kind) {
        case RECUR_OPT_MOMENTUM: ok = make_slot(opt, vars[i], "momentum", recur_zeros_initializer()) != NULL; break;
        case RECUR_OPT_ADAM:
            ok = make_slot(opt, vars[i], "m", recur_zeros_initializer()) && make_slot(opt, vars[i], "v", recur_zeros_initializer());
            break;
        case RECUR_OPT_ADAGRAD:
            ok = make_slot(opt, vars[i], "accumulator", recur_constant_initializer(opt->o.initial_accumulator_value)) != NULL;
            break;
        case RECUR_OPT_RMSPROP:
            ok = make_slot(opt, vars[i], "rms", recur_ones_initializer()) &&
                 make_slot(opt, vars[i], "momentum", recur_zeros_initializer());
            break;
        default: break;
        }
        if (!ok) return NULL;
    }
    if (!recur_name_scope_push(g, opt->name)) return NULL;
    /* every update waits for every gradient (TensorFlow's GATE_GRAPH) */
    recur_op *gate = rc_op_new(g, RC_OP_NOOP, NULL, 0, "gate", NULL);
    recur_op **updates = rc_calloc((size_t)n + 3, sizeof *updates);
    int nu = 0;
    if (!gate || !updates) {
        rc_goom(g);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!grads[i]) continue;
        recur_tensor *gr = grads[i];
        if (rc_is_indexed_slices(gr)) {
            rc_add_ctrl(gate, gr->op->inputs[0]->op);
            rc_add_ctrl(gate, gr->op->inputs[1]->op);
        } else {
            rc_add_ctrl(gate, gr->op);
        }
    }
    for (int i = 0; i < n; i++) {
        if (!grads[i]) continue;
        recur_tensor *var = vars[i], *gr = grads[i];
        char scope[1024];
        snprintf(scope, sizeof scope, "update_%s", recur_variable_name(var));
        if (!recur_name_scope_push(g, scope)) goto done;
        recur_dtype dt = recur_tensor_dtype(var);
        recur_tensor *lr = opt->o.learning_rate_tensor ? recur_cast(g, opt->o.learning_rate_tensor, dt)
                                                       : rc_const_scalar(g, dt, opt->o.learning_rate, "learning_rate");
        recur_tensor *in[10];
        int k = 0, type = RC_OP_APPLY_GD;
        rc_attrs a = {0};
        in[k++] = var;
        switch (opt->o.kind) {
        case RECUR_OPT_MOMENTUM:
            type = RC_OP_APPLY_MOMENTUM;
            in[k++] = recur_optimizer_slot(opt, var, "momentum");
            a.f[0] = opt->o.momentum;
            a.i[1] = opt->o.use_nesterov;
            break;
        case RECUR_OPT_ADAM:
            type = RC_OP_APPLY_ADAM;
            in[k++] = recur_optimizer_slot(opt, var, "m");
            in[k++] = recur_optimizer_slot(opt, var, "v");
            in[k++] = opt->beta1_power;
            in[k++] = opt->beta2_power;
            a.f[0] = opt->o.beta1;
            a.f[1] = opt->o.beta2;
            a.f[2] = opt->o.epsilon;
            break;
        case RECUR_OPT_ADAGRAD:
            type = RC_OP_APPLY_ADAGRAD;
            in[k++] = recur_optimizer_slot(opt, var, "accumulator");
            break;
        case RECUR_OPT_RMSPROP:
            type = RC_OP_APPLY_RMSPROP;
            in[k++] = recur_optimizer_slot(opt, var, "rms");
            in[k++] = recur_optimizer_slot(opt, var, "momentum");
            a.f[0] = opt->o.decay;
            a.f[1] = opt->o.momentum;
            a.f[2] = opt->o.epsilon;
            break;
        default: break;
        }
        in[k++] = lr;
        if (rc_is_indexed_slices(gr)) {
            a.i[0] = 1;
            in[k++] = gr->op->inputs[0];
            in[k++] = gr->op->inputs[1];
        } else {
            in[k++] = gr;
        }
        recur_op *u = rc_op_new(g, type, in, k, NULL, &a);
        recur_name_scope_pop(g);
        if (!u) goto done;
        rc_add_ctrl(u, gate);
        updates[nu++] = u;
    }
    if (opt->o.kind == RECUR_OPT_ADAM) {
        /* beta powers advance after every update */
        recur_tensor *p1 = recur_assign(g, opt->beta1_power,
                                        recur_mul(g, opt->beta1_power, rc_const_scalar(g, recur_tensor_dtype(opt->beta1_power), opt->o.beta1, "beta1")));
        recur_tensor *p2 = recur_assign(g, opt->beta2_power,
                                        recur_mul(g, opt->beta2_power, rc_const_scalar(g, recur_tensor_dtype(opt->beta2_power), opt->o.beta2, "beta2")));
        if (!p1 || !p2) goto done;
        for (int i = 0; i < nu; i++) {
            rc_add_ctrl(p1->op, updates[i]);
            rc_add_ctrl(p2->op, updates[i]);
        }
        updates[nu++] = p1->op;
        updates[nu++] = p2->op;
    }
    recur_name_scope_pop(g);
    result = recur_group(g, updates, nu, opt->name);
    if (result && global_step) {
        recur_tensor *inc = recur_assign_add(g, global_step, rc_const_scalar(g, recur_tensor_dtype(global_step), 1, NULL));
        if (inc) rc_add_ctrl(inc->op, result);
        result = inc ? inc->op : NULL;
    }
done:
    rc_free(updates);
    rc_scope_unwind(g, depth);
    return recur_graph_ok(g) ? result : NULL;
}

recur_op *recur_optimizer_minimize(recur_optimizer *opt, recur_tensor *loss, recur_tensor *global_step,
                                   recur_tensor *const *vars, int nvars)
{
    if (!opt) return NULL;
    recur_graph *g = opt->g;
    long n = vars && nvars > 0 ? nvars : recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, NULL, 0);
    if (n <= 0) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "No variables to optimize.");
    recur_tensor **grads = rc_calloc((size_t)n, sizeof *grads), **vl = rc_calloc((size_t)n, sizeof *vl);
    recur_op *r = NULL;
    if (!grads || !vl) {
        rc_goom(g);
    } else {
        int m = recur_optimizer_compute_gradients(opt, loss, vars, nvars, grads, vl, (int)n);
        if (m > 0) r = recur_optimizer_apply_gradients(opt, grads, vl, m, global_step);
    }
    rc_free(grads);
    rc_free(vl);
    return r;
}

/* ================================================================== schedules and clipping */

recur_tensor *recur_get_or_create_global_step(recur_graph *g)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    recur_tensor *have[1];
    if (recur_get_collection(g, "global_step", NULL, have, 1) > 0) return have[0];
    recur_scope *vs = g->var_scope;
    g->var_scope = g->root_scope;
    recur_tensor *v = recur_get_variable_at(g, "global_step", __FILE__, __LINE__, __func__, RECUR_SCALAR,
                                            &(recur_variable_opts){.dtype = RECUR_I64, .initializer = recur_zeros_initializer(),
                                                                   .not_trainable = true});
    g->var_scope = vs;
    if (v && !rc_collection_add(g, "global_step", v)) return rc_goom(g);
    return v;
}

recur_tensor *recur_exponential_decay(recur_graph *g, double learning_rate, recur_tensor *global_step, double decay_steps,
                                      double decay_rate, bool staircase)
{
    if (!rc_gready(g, &global_step, 1)) return NULL;
    if (!(decay_steps > 0) || !(decay_rate > 0))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "exponential_decay: decay_steps and decay_rate must be positive");
    if (!recur_name_scope_push(g, "ExponentialDecay")) return NULL;
    recur_tensor *p = recur_div(g, recur_cast(g, global_step, RECUR_F32), rc_const_scalar(g, RECUR_F32, decay_steps, NULL));
    if (staircase) p = rc_floor(g, p);
    /* rate^p = exp(p * ln(rate)) */
    recur_tensor *r = recur_mul(g, rc_const_scalar(g, RECUR_F32, learning_rate, "learning_rate"),
                                recur_exp(g, recur_mul(g, p, rc_const_scalar(g, RECUR_F32, log(decay_rate), NULL))));
    recur_name_scope_pop(g);
    return r;
}

bool recur_clip_by_global_norm(recur_graph *g, recur_tensor *const *ts, int n, double clip_norm, recur_tensor **out,
                               recur_tensor **global_norm)
{
    if (!rc_gready(g, NULL, 0)) return false;
    if (!ts || !out || n < 1 || !(clip_norm > 0))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "clip_by_global_norm: need tensors and clip_norm > 0"), false;
    recur_tensor **sq = rc_calloc((size_t)n, sizeof *sq);
    if (!sq) return rc_goom(g), false;
    int m = 0;
    recur_dtype dt = RECUR_F32;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) continue;
        recur_tensor *v = rc_is_indexed_slices(ts[i]) ? ts[i]->op->inputs[0] : ts[i];
        dt = v->dtype;
        sq[m++] = recur_reduce_sum(g, recur_square(g, v), NULL, 0, false);
    }
    bool ok = false;
    if (m && recur_name_scope_push(g, "clip_by_global_norm")) {
        recur_tensor *norm = recur_sqrt(g, recur_add_n(g, sq, m));
        /* scale = clip_norm * min(1 / norm, 1 / clip_norm) (NaN when the norm is not finite) */
        recur_tensor *one = rc_const_scalar(g, dt, 1, NULL);
        recur_tensor *scale = recur_mul(g, rc_const_scalar(g, dt, clip_norm, NULL),
                                        recur_minimum(g, recur_div(g, one, norm), rc_const_scalar(g, dt, 1 / clip_norm, NULL)));
        for (int i = 0; i < n; i++) {
            if (!ts[i]) {
                out[i] = NULL;
                continue;
            }
            if (rc_is_indexed_slices(ts[i])) {
                recur_op *s = ts[i]->op;
                out[i] = rc_indexed_slices(g, recur_mul(g, s->inputs[0], scale), s->inputs[1], s->inputs[2]);
            } else {
                out[i] = recur_mul(g, ts[i], scale);
            }
        }
        if (global_norm) *global_norm = norm;
        recur_name_scope_pop(g);
        ok = recur_graph_ok(g);
    } else if (!m) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "clip_by_global_norm: every tensor is NULL");
    }
    rc_free(sq);
    return ok;
}
