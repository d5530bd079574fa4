/*
 * varscope.c - tf.compat.v1.variable_scope: string, object and default-name entry, reuse
 * inheritance, the name scope each variable scope opens, and the per-scope counters behind
 * default-name uniquification (spec section 1).
 */
#include "recur_impl.h"

static recur_scope *new_scope(recur_graph *g, const char *name, const recur_scope *from,
                              const char *original_name_scope)
{
    recur_scope *s = rc_calloc(1, sizeof *s);
    if (!s) return rc_goom(g);
    s->name = rc_strdup(name);
    s->original_name_scope = rc_strdup(original_name_scope ? original_name_scope : "");
    if (!s->name || !s->original_name_scope || !RC_GROW(g->scopes, g->capscopes, g->nscopes + 1)) {
        rc_free(s->name);
        rc_free(s->original_name_scope);
        rc_free(s);
        return rc_goom(g);
    }
    if (from) {
        s->init = from->init;
        s->dtype = from->dtype;
        s->reuse = from->reuse;
    }
    g->scopes[g->nscopes++] = s;
    return s;
}

static intptr_t scope_count(recur_graph *g, const char *name)
{
    intptr_t *p = rc_map_get(&g->var_scope_counts, name);
    return p ? *p : 0;
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

/* _get_unique_variable_scope(prefix): prefix, or prefix_k with the smallest unused k. */
static char *unique_var_scope(recur_graph *g, const char *prefix)
{
    char *full = join(g->var_scope->name, prefix);
    if (!full) return NULL;
    if (scope_count(g, full) == 0) {
        rc_free(full);
        return rc_strdup(prefix);
    }
    size_t n = strlen(full) + 24;
    char *cand = rc_malloc(n);
    if (!cand) {
        rc_free(full);
        return NULL;
    }
    long idx = 1;
    for (;; idx++) {
        snprintf(cand, n, "%s_%ld", full, idx);
        if (scope_count(g, cand) == 0) break;
    }
    rc_free(full);
    snprintf(cand, n, "%s_%ld", prefix, idx);
    return cand;
}

static bool valid_reuse(recur_graph *g, recur_reuse r)
{
    if (r == RECUR_REUSE_INHERIT || r == RECUR_REUSE || r == RECUR_AUTO_REUSE) return true;
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "The reuse parameter must be True or False or None.");
    return false;
}

/* Push the variable-scope part on top of an entry that rc_enter_name_scope already made. */
static recur_scope *finish_string_scope(recur_graph *g, const char *relname, recur_reuse reuse,
                                        const recur_scope_opts *o, const char *orig_ns)
{
    recur_scope *old = g->var_scope;
    char *full = join(old->name, relname);
    if (!full) return NULL;
    recur_scope *s = new_scope(g, full, old, orig_ns);
    if (!s || !rc_map_set(&g->var_scope_counts, full, scope_count(g, full) + 1)) {
        rc_free(full);
        return s ? rc_goom(g) : NULL;
    }
    /* reuse = reuse or parent.reuse: a nested scope can never switch reuse off. */
    s->reuse = reuse != RECUR_REUSE_INHERIT ? reuse : old->reuse;
    if (o && o->initializer.kind != RECUR_INIT_NONE) s->init = o->initializer;
    if (o && o->dtype) s->dtype = o->dtype;
    rc_stack_entry *e = &g->stack[g->nstack - 1];
    e->saved_var_scope = old;
    e->closed_name = full;
    g->var_scope = s;
    return s;
}

recur_scope *recur_variable_scope_push_opts(recur_graph *g, const char *name, const recur_scope_opts *opts)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    recur_scope_opts o = opts ? *opts : (recur_scope_opts){0};
    if (!name && !o.default_name)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "If default_name is None then name_or_scope is required");
    if (!valid_reuse(g, o.reuse)) return NULL;
    if (o.dtype && !rc_dtype_valid(o.dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Invalid dtype %d for variable_scope", (int)o.dtype);
    size_t depth = g->nstack;

    if (name) {
        /* String entry: name scope `name` (uniquified), variable scope parent/name. With
         * no_name_scope the current name scope is kept. */
        bool open = !o.no_name_scope && (name[0] || g->name_stack[0]);
        const char *ns_name = name;
        char *reenter = NULL;
        if (o.no_name_scope) {
            open = false;
        } else if (!name[0]) {
            /* variable_scope("") re-enters the current name scope. */
            reenter = g->name_stack[0] ? join(g->name_stack, "") : rc_strdup("");
            if (!reenter) return rc_goom(g);
            ns_name = reenter;
        }
        rc_stack_entry *e = rc_enter_name_scope(g, ns_name, RC_STACK_VAR, open);
        rc_free(reenter);
        if (!e) return NULL;
        const char *orig = rc_name_scope_string(g);
        recur_scope *s = orig ? finish_string_scope(g, name, o.reuse, &o, orig) : NULL;
        if (!s) {
            rc_scope_unwind(g, depth);
            return rc_goom(g);
        }
        return s;
    }

    /* Default-name entry. */
    if (o.reuse != RECUR_REUSE_INHERIT)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "reuse=True cannot be used without a name_or_scope");
    rc_stack_entry *e = rc_enter_name_scope(g, o.default_name, RC_STACK_VAR, !o.no_name_scope);
    if (!e) return NULL;
    const char *orig = rc_name_scope_string(g);
    char *uniq = orig ? unique_var_scope(g, o.default_name) : NULL;
    recur_scope *s = uniq ? finish_string_scope(g, uniq, RECUR_REUSE_INHERIT, &o, orig) : NULL;
    rc_free(uniq);
    if (!s) {
        rc_scope_unwind(g, depth);
        return rc_goom(g);
    }
    return s;
}

recur_scope *recur_variable_scope_push(recur_graph *g, const char *name, recur_reuse reuse)
{
    recur_scope_opts o = {.reuse = reuse};
    if (!name) return g ? rc_gerr(g, RECUR_INVALID_ARGUMENT, "If default_name is None then name_or_scope is required") : NULL;
    return recur_variable_scope_push_opts(g, name, &o);
}

recur_scope *recur_variable_scope_enter(recur_graph *g, recur_scope *scope, const recur_scope_opts *opts)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!scope) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "VariableScope: name_or_scope must be a string or VariableScope.");
    bool ours = scope == g->root_scope;
    for (size_t i = 0; !ours && i < g->nscopes; i++) ours = g->scopes[i] == scope;
    if (!ours) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "The variable scope passed to recur_variable_scope_enter belongs to another graph");
    recur_scope_opts o = opts ? *opts : (recur_scope_opts){0};
    if (!valid_reuse(g, o.reuse)) return NULL;
    size_t depth = g->nstack;

    /* Name scope: the last component of the scope's name, uniquified in the current name
     * scope; none for the root scope. */
    const char *last = strrchr(scope->name, '/');
    last = last ? last + 1 : scope->name;
    bool open = !o.no_name_scope && last[0];
    char *reenter = NULL;
    const char *ns_name = last;
    if (o.no_name_scope && g->name_stack[0]) {
        reenter = join(g->name_stack, "");
        if (!reenter) return rc_goom(g);
        ns_name = reenter;
        open = true;
    }
    rc_stack_entry *e = rc_enter_name_scope(g, ns_name, RC_STACK_VAR, open);
    rc_free(reenter);
    if (!e) return NULL;
    e->by_object = true;
    e->saved_var_scope = g->var_scope;

    recur_scope *s = new_scope(g, scope->name, scope, scope->original_name_scope);
    if (!s) goto oom;
    s->reuse = o.reuse != RECUR_REUSE_INHERIT ? o.reuse : scope->reuse;
    if (o.initializer.kind != RECUR_INIT_NONE) s->init = o.initializer;
    if (o.dtype) s->dtype = o.dtype;
    if (!rc_map_set(&g->var_scope_counts, scope->name, scope_count(g, scope->name) + 1)) goto oom;
    e = &g->stack[g->nstack - 1];
    if (!rc_map_copy(&e->counts_snapshot, &g->var_scope_counts)) goto oom;
    g->var_scope = s;
    return s;
oom:
    rc_scope_unwind(g, depth);
    return rc_goom(g);
}

/* Leave the innermost variable-scope entry (caller checked its kind). */
static void leave_var_entry(recur_graph *g)
{
    rc_stack_entry *e = &g->stack[g->nstack - 1];
    if (e->saved_var_scope) g->var_scope = e->saved_var_scope;
    if (e->by_object) {
        if (e->counts_snapshot.cap) {
            rc_map_free(&g->var_scope_counts);
            g->var_scope_counts = e->counts_snapshot;
            rc_map_init(&e->counts_snapshot);
        }
    } else if (e->closed_name) {
        /* close_variable_subscopes: counters of sub-scopes restart. */
        size_t n = strlen(e->closed_name);
        for (size_t i = 0; i < g->var_scope_counts.cap; i++) {
            rc_map_entry *m = &g->var_scope_counts.slots[i];
            if (m->key && strncmp(m->key, e->closed_name, n) == 0 && m->key[n] == '/') m->value = 0;
        }
    }
    rc_leave_stack_entry(g);
}

void recur_variable_scope_pop(recur_graph *g)
{
    if (!g) return;
    if (g->nstack == 0) {
        rc_gerr(g, RECUR_FAILED_PRECONDITION,
                "Improper nesting of variable_scope: recur_variable_scope_pop called with no scope open.");
        return;
    }
    if (g->stack[g->nstack - 1].kind != RC_STACK_VAR) {
        rc_gerr(g, RECUR_FAILED_PRECONDITION,
                "Improper nesting of variable_scope: the innermost scope is name scope '%s/'; "
                "close it with recur_name_scope_pop first.",
                g->name_stack);
        return;
    }
    leave_var_entry(g);
}

void rc_scope_unwind(recur_graph *g, size_t depth)
{
    while (g->nstack > depth) {
        if (g->stack[g->nstack - 1].kind == RC_STACK_VAR)
            leave_var_entry(g);
        else
            rc_leave_stack_entry(g);
    }
}

recur_scope *recur_variable_scope_current(recur_graph *g) { return g ? g->var_scope : NULL; }

void recur_scope_reuse_variables(recur_scope *scope)
{
    if (scope) scope->reuse = RECUR_REUSE;
}

const char *recur_scope_name(const recur_scope *scope) { return scope ? scope->name : NULL; }
recur_reuse recur_scope_reuse(const recur_scope *scope) { return scope ? scope->reuse : RECUR_REUSE_INHERIT; }
const char *recur_scope_original_name_scope(const recur_scope *scope)
{
    return scope ? scope->original_name_scope : NULL;
}
