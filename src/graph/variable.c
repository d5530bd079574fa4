/*
 * variable.c - tf.compat.v1.get_variable (create or share by the scope's reuse mode, spec
 * section 2) with TensorFlow's messages plus the creation site and nearest names; variable
 * accessors; collections; the variables initializer ops.
 */
#include "ops/ops.h"

#include <regex.h>

/* Python's dtype names, as TensorFlow prints them in get_variable errors. */
static const char *pyname(recur_dtype dt)
{
    switch (dt) {
    case RECUR_F32: return "float32";
    case RECUR_F64: return "float64";
    case RECUR_I32: return "int32";
    case RECUR_I64: return "int64";
    case RECUR_BOOL: return "bool";
    case RECUR_STRING: return "string";
    default: return "invalid";
    }
}

rc_variable *rc_tensor_var(const recur_tensor *t)
{
    return t && t->op->type == RC_OP_VARIABLE ? t->op->var : NULL;
}

static char *join(const char *a, const char *b)
{
    rc_strbuf sb;
    rc_sb_init(&sb);
    if (a[0]) {
        rc_sb_puts(&sb, a);
        rc_sb_puts(&sb, "/");
    }
    rc_sb_puts(&sb, b);
    return rc_sb_take(&sb);
}

/* Up to three existing variable names nearest to `name`, appended as a sentence. */
static void nearest_names(recur_graph *g, const char *name, rc_strbuf *sb)
{
    const rc_variable *best[3] = {0};
    size_t bestd[3] = {SIZE_MAX, SIZE_MAX, SIZE_MAX};
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    for (size_t i = 0; i < g->nvars; i++) {
        const rc_variable *v = g->vars[i];
        size_t len = RC_MAX(strlen(v->name), strlen(name));
        size_t d = rc_edit_distance(name, v->name, len + 1);
        const char *vb = strrchr(v->name, '/');
        vb = vb ? vb + 1 : v->name;
        /* Same last component under another scope: a likely scope mix-up. */
        if (strcmp(vb, base) == 0 && d > 1) d = d / 2 + 1;
        if (d * 10 > len * 6) continue;
        for (int k = 0; k < 3; k++)
            if (d < bestd[k]) {
                for (int m = 2; m > k; m--) {
                    best[m] = best[m - 1];
                    bestd[m] = bestd[m - 1];
                }
                best[k] = v;
                bestd[k] = d;
                break;
            }
    }
    if (!best[0]) {
        if (g->nvars == 0) rc_sb_puts(sb, "\nNo variables exist yet in this graph.");
        return;
    }
    rc_sb_puts(sb, "\nNearest existing variables: ");
    for (int k = 0; k < 3 && best[k]; k++) {
        char shp[128];
        rc_sb_printf(sb, "%s%s %s", k ? ", " : "", best[k]->name,
                     recur_shape_str(best[k]->shape, shp, sizeof shp));
    }
    rc_sb_puts(sb, ".");
}

static void *already_exists(recur_graph *g, const rc_variable *v)
{
    rc_strbuf sb;
    rc_sb_init(&sb);
    rc_sb_printf(&sb,
                 "Variable %s already exists, disallowed. Did you mean to set reuse=True or "
                 "reuse=tf.AUTO_REUSE in VarScope? Originally defined at:\n\n"
                 "  File \"%s\", line %d, in %s\n",
                 v->name, v->file ? v->file : "?", v->line, v->func ? v->func : "?");
    rc_sb_printf(&sb,
                 "Fix: to share the variable, open the enclosing variable scope with "
                 "RECUR_REUSE or RECUR_AUTO_REUSE; to make a separate variable, build this "
                 "layer in a variable scope of its own.");
    char *m = rc_sb_take(&sb);
    if (!m) return rc_goom(g);
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s", m);
    rc_free(m);
    return NULL;
}

static void *does_not_exist(recur_graph *g, const char *full)
{
    rc_strbuf sb;
    rc_sb_init(&sb);
    rc_sb_printf(&sb,
                 "Variable %s does not exist, or was not created with tf.get_variable(). Did you "
                 "mean to set reuse=tf.AUTO_REUSE in VarScope?",
                 full);
    nearest_names(g, full, &sb);
    rc_sb_puts(&sb, "\nFix: create the variable first (a scope without reuse), or open the "
                    "scope with RECUR_AUTO_REUSE to create it when missing.");
    char *m = rc_sb_take(&sb);
    if (!m) return rc_goom(g);
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "%s", m);
    rc_free(m);
    return NULL;
}

/* Make the VariableV2 op and its initializer at top level with the root name scope, as
 * TensorFlow does under init_scope and name_scope(None). */
static rc_variable *create_variable(recur_graph *g, const char *full, recur_dtype dt, recur_shape shape,
                                    recur_initializer init, bool trainable, const char *file,
                                    int line, const char *func)
{
    rc_variable *v = rc_calloc(1, sizeof *v);
    if (!v) return rc_goom(g);
    v->name = rc_strdup(full);
    if (!v->name || !RC_GROW(g->vars, g->capvars, g->nvars + 1)) goto oom;

    char *saved_stack = g->name_stack;
    rc_frame *saved_frame = g->frame;
    char root[1] = "";
    g->name_stack = root;
    g->frame = NULL;

    rc_attrs a = {.shape = shape};
    a.i[0] = dt;
    recur_op *vop = rc_op_new(g, RC_OP_VARIABLE, NULL, 0, full, &a);
    recur_op *iop = NULL;
    if (vop) {
        vop->var = v;
        rc_attrs ia = {.init = init};
        int64_t s1, s2;
        rc_resolve_seed(g->has_seed, g->seed, init.seed, (int64_t)g->nops, &s1, &s2);
        ia.i[0] = s1;
        ia.i[1] = s2;
        bool ok = true;
        if (init.kind == RECUR_INIT_VALUE) {
            recur_status st;
            ia.value = recur_array_copy(init.value, &st);
            ia.init.value = NULL;
            ok = ia.value != NULL;
        }
        if (ok) {
            /* "<var>/Assign" */
            char *ns = rc_strdup(vop->name);
            if (ns) {
                g->name_stack = ns;
                recur_tensor *vt = &vop->outputs[0];
                iop = rc_op_new(g, RC_OP_VAR_INIT, &vt, 1, "Assign", &ia);
                g->name_stack = root;
                rc_free(ns);
            } else {
                rc_attrs_release(&ia);
            }
        }
        if (!iop) rc_goom(g);
    }
    g->name_stack = saved_stack;
    g->frame = saved_frame;
    if (!vop || !iop) {
        /* vop stays in the op list (unreachable, never run); the variable is not registered. */
        if (vop) vop->var = NULL;
        rc_free(v->name);
        rc_free(v);
        return NULL;
    }
    v->t = &vop->outputs[0];
    v->dtype = dt;
    v->shape = vop->outputs[0].shape;
    v->init = init;
    v->init.value = NULL;
    v->trainable = trainable;
    v->file = g->site_file ? g->site_file : file;
    v->line = g->site_file ? g->site_line : line;
    v->func = g->site_file ? g->site_func : func;
    v->init_op = iop;
    v->index = (int)g->nvars;
    if (!rc_map_set(&g->var_by_name, full, (intptr_t)v)) {
        vop->var = NULL;
        rc_free(v->name);
        rc_free(v);
        return rc_goom(g);
    }
    g->vars[g->nvars++] = v;
    if (!rc_collection_add(g, RECUR_GLOBAL_VARIABLES, v->t) ||
        (trainable && !rc_collection_add(g, RECUR_TRAINABLE_VARIABLES, v->t)))
        return rc_goom(g);
    return v;
oom:
    rc_free(v->name);
    rc_free(v);
    return rc_goom(g);
}

recur_tensor *recur_get_variable_at(recur_graph *g, const char *name, const char *file, int line,
                                    const char *func, recur_shape shape, const recur_variable_opts *opts)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!name || !name[0])
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_variable: the variable name must be a non-empty string");
    recur_variable_opts o = opts ? *opts : (recur_variable_opts){0};
    recur_scope *scope = g->var_scope;
    recur_initializer init = o.initializer;
    if (shape.rank > RECUR_MAX_RANK || shape.rank < -1)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_variable %s: rank %d is outside [0, %d]", name,
                       shape.rank, RECUR_MAX_RANK);
    for (int i = 0; i < shape.rank; i++)
        if (shape.dims[i] < -1)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "get_variable %s: dimension %d is %lld; dimensions must be >= 0 (or -1 for unknown)",
                           name, i, (long long)shape.dims[i]);
    if (o.dtype && !rc_dtype_valid(o.dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_variable %s: invalid dtype %d", name, (int)o.dtype);

    if (init.kind == RECUR_INIT_VALUE) {
        if (!init.value)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_variable %s: the value initializer has no array", name);
        if (shape.rank != -1)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "If initializer is a constant, do not specify shape.");
        if (o.dtype && o.dtype != init.value->dtype)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Initializer type '<dtype: '%s'>' and explicit dtype '<dtype: '%s'>' don't match.",
                           pyname(init.value->dtype), pyname(o.dtype));
    }
    if (init.kind == RECUR_INIT_NONE) init = scope->init;
    recur_dtype dt = o.dtype ? o.dtype : scope->dtype ? scope->dtype : RECUR_F32;

    char *full = join(scope->name, name);
    if (!full) return rc_goom(g);
    if (!rc_valid_scope_name(full, false)) {
        char *saved = g->name_stack;
        char root[1] = "";
        g->name_stack = root;
        rc_invalid_name(g, full);
        g->name_stack = saved;
        rc_free(full);
        return NULL;
    }
    intptr_t *found = rc_map_get(&g->var_by_name, full);
    if (found) {
        rc_variable *v = (rc_variable *)*found;
        rc_free(full);
        if (scope->reuse == RECUR_REUSE_INHERIT) return already_exists(g, v);
        if (!rc_shape_compatible(shape, v->shape)) {
            char a[128], b[128];
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Trying to share variable %s, but specified shape %s and found shape %s.",
                           v->name, recur_shape_str(shape, a, sizeof a), recur_shape_str(v->shape, b, sizeof b));
        }
        if (dt != v->dtype)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Trying to share variable %s, but specified dtype %s and found dtype %s_ref.",
                           v->name, pyname(dt), pyname(v->dtype));
        return v->t;
    }
    if (scope->reuse == RECUR_REUSE) {
        does_not_exist(g, full);
        rc_free(full);
        return NULL;
    }
    if (init.kind == RECUR_INIT_VALUE) {
        dt = init.value->dtype;
        shape = init.value->shape;
    } else {
        bool init_defaulted = init.kind == RECUR_INIT_NONE;
        if (init_defaulted)
            init = rc_dtype_is_float(dt) ? recur_glorot_uniform_initializer(0) : recur_zeros_initializer();
        if (shape.rank < 0 && init_defaulted) {
            rc_gerr(g, RECUR_INVALID_ARGUMENT,
                    "Variable %s did not get an initializer, so its `shape` argument must be specified.", full);
            rc_free(full);
            return NULL;
        }
        if (!rc_shape_known(shape)) {
            rc_free(full);
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "The initializer passed is not valid. It should be a callable with no "
                           "arguments and the shape should not be provided or an instance of "
                           "`tf.keras.initializers.*' and `shape` should be fully defined.");
        }
        if (init.kind >= RECUR_INIT_RANDOM_UNIFORM && init.kind <= RECUR_INIT_ORTHOGONAL && !rc_dtype_is_float(dt)) {
            rc_free(full);
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "get_variable %s: a random initializer needs a floating dtype, not %s", name, pyname(dt));
        }
        if (init.kind == RECUR_INIT_ORTHOGONAL && shape.rank < 2) {
            rc_free(full);
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "The tensor to initialize must be at least two-dimensional");
        }
    }
    int64_t count;
    if (!rc_shape_count(shape, &count) || (uint64_t)count > ((uint64_t)1 << 40)) {
        rc_free(full);
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_variable %s: shape is too large", name);
    }
    rc_variable *v = create_variable(g, full, dt, shape, init, !o.not_trainable, file, line, func);
    rc_free(full);
    return v ? v->t : NULL;
}

bool rc_site_push(recur_graph *g, const char *file, int line, const char *func)
{
    if (!g || g->site_file || !file) return false;
    g->site_file = file;
    g->site_line = line;
    g->site_func = func;
    return true;
}

void rc_site_pop(recur_graph *g, bool set)
{
    if (g && set) g->site_file = g->site_func = NULL;
}

bool recur_is_variable(const recur_tensor *t) { return rc_tensor_var(t) != NULL; }
const char *recur_variable_name(const recur_tensor *var)
{
    rc_variable *v = rc_tensor_var(var);
    return v ? v->name : NULL;
}
bool recur_variable_trainable(const recur_tensor *var)
{
    rc_variable *v = rc_tensor_var(var);
    return v && v->trainable;
}
const char *recur_variable_site(const recur_tensor *var, int *line, const char **func)
{
    rc_variable *v = rc_tensor_var(var);
    if (!v) return NULL;
    if (line) *line = v->line;
    if (func) *func = v->func;
    return v->file;
}

/* ------------------------------------------------------------------ collections */

rc_collection *rc_collection_find(recur_graph *g, const char *key)
{
    for (size_t i = 0; i < g->ncollections; i++)
        if (strcmp(g->collections[i].key, key) == 0) return &g->collections[i];
    return NULL;
}

bool rc_collection_add(recur_graph *g, const char *key, recur_tensor *t)
{
    rc_collection *c = rc_collection_find(g, key);
    if (!c) {
        if (!RC_GROW(g->collections, g->capcollections, g->ncollections + 1)) return false;
        c = &g->collections[g->ncollections];
        memset(c, 0, sizeof *c);
        c->key = rc_strdup(key);
        if (!c->key) return false;
        g->ncollections++;
    }
    if (!RC_GROW(c->items, c->cap, c->n + 1)) return false;
    c->items[c->n++] = t;
    return true;
}

void recur_add_to_collection(recur_graph *g, const char *key, recur_tensor *t)
{
    if (!rc_gready(g, &t, 1) || !key) return;
    if (!rc_collection_add(g, key, t)) rc_goom(g);
}

long recur_get_collection(recur_graph *g, const char *key, const char *scope, recur_tensor **out, size_t cap)
{
    if (!g || !key) return -1;
    rc_collection *c = rc_collection_find(g, key);
    if (!c) return 0;
    regex_t re;
    if (scope) {
        int rc = regcomp(&re, scope, REG_EXTENDED);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &re, msg, sizeof msg);
            rc_gerr(g, RECUR_INVALID_ARGUMENT, "get_collection: invalid scope pattern '%s': %s", scope, msg);
            return -1;
        }
    }
    long n = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (scope) {
            regmatch_t m;
            /* re.match: the leftmost match must start at 0. */
            if (regexec(&re, c->items[i]->name, 1, &m, 0) != 0 || m.rm_so != 0) continue;
        }
        if (out && (size_t)n < cap) out[n] = c->items[i];
        n++;
    }
    if (scope) regfree(&re);
    return n;
}

/* ------------------------------------------------------------------ initializers */

recur_op *recur_variables_initializer(recur_graph *g, recur_tensor *const *vars, int n)
{
    if (!rc_gready(g, vars, n)) return NULL;
    for (int i = 0; i < n; i++)
        if (!rc_tensor_var(vars[i]))
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "variables_initializer: %s is not a variable", vars[i]->name);
    recur_op *op = rc_op_new(g, RC_OP_NOOP, NULL, 0, "init", NULL);
    if (!op) return NULL;
    for (int i = 0; i < n; i++)
        if (!rc_add_ctrl(op, rc_tensor_var(vars[i])->init_op)) return rc_goom(g);
    return op;
}

recur_op *recur_global_variables_initializer(recur_graph *g)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (g->global_init && g->global_init_nvars == g->nvars) return g->global_init;
    recur_op *op = rc_op_new(g, RC_OP_NOOP, NULL, 0, "init", NULL);
    if (!op) return NULL;
    for (size_t i = 0; i < g->nvars; i++)
        if (!rc_add_ctrl(op, g->vars[i]->init_op)) return rc_goom(g);
    g->global_init = op;
    g->global_init_nvars = g->nvars;
    return op;
}
