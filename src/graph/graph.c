/*
 * graph.c - graphs, ops and tensors: creation with TensorFlow's unique op names, name scopes,
 * the sticky error status, and lookups.
 */
#include "ops/ops.h"

#include <ctype.h>

/* ------------------------------------------------------------------ lifetime */

recur_graph *recur_graph_new(void)
{
    recur_graph *g = rc_calloc(1, sizeof *g);
    if (!g) return NULL;
    rc_map_init(&g->op_by_name);
    rc_map_init(&g->names_in_use);
    rc_map_init(&g->var_scope_counts);
    rc_map_init(&g->var_by_name);
    rc_map_init(&g->interned);
    g->name_stack = rc_strdup("");
    g->root_scope = rc_calloc(1, sizeof *g->root_scope);
    if (!g->name_stack || !g->root_scope) goto fail;
    g->root_scope->name = rc_strdup("");
    g->root_scope->original_name_scope = rc_strdup("");
    if (!g->root_scope->name || !g->root_scope->original_name_scope) goto fail;
    g->var_scope = g->root_scope;
    return g;
fail:
    recur_graph_free(g);
    return NULL;
}

static void free_scope(recur_scope *s)
{
    if (!s) return;
    rc_free(s->name);
    rc_free(s->original_name_scope);
    rc_free(s);
}

static void free_op(recur_op *op)
{
    if (!op) return;
    for (int i = 0; i < op->noutputs; i++) rc_free(op->outputs[i].name);
    rc_free(op->outputs);
    rc_free(op->inputs);
    rc_free(op->ctrl);
    rc_attrs_release(&op->attr);
    rc_free(op->name);
    rc_free(op);
}

static void free_stack_entry(rc_stack_entry *e)
{
    rc_free(e->saved_name_stack);
    rc_free(e->closed_name);
    rc_map_free(&e->counts_snapshot);
}

void recur_graph_free(recur_graph *g)
{
    if (!g) return;
    for (size_t i = g->nowned; i-- > 0;) g->owned_free[i](g->owned[i]);
    rc_free(g->owned);
    rc_free(g->owned_free);
    for (size_t i = 0; i < g->nops; i++) free_op(g->ops[i]);
    rc_free(g->ops);
    for (size_t i = 0; i < g->nstack; i++) free_stack_entry(&g->stack[i]);
    rc_free(g->stack);
    for (size_t i = 0; i < g->nscopes; i++) free_scope(g->scopes[i]);
    rc_free(g->scopes);
    free_scope(g->root_scope);
    for (size_t i = 0; i < g->nvars; i++) {
        rc_free(g->vars[i]->name);
        rc_free(g->vars[i]);
    }
    rc_free(g->vars);
    for (size_t i = 0; i < g->ncollections; i++) {
        rc_free(g->collections[i].key);
        rc_free(g->collections[i].items);
    }
    rc_free(g->collections);
    rc_map_free(&g->op_by_name);
    rc_map_free(&g->names_in_use);
    rc_map_free(&g->var_scope_counts);
    rc_map_free(&g->var_by_name);
    rc_map_free(&g->interned);
    rc_free(g->name_stack);
    rc_free(g);
}

bool rc_graph_own(recur_graph *g, void *obj, void (*free_fn)(void *))
{
    if (!RC_GROW(g->owned, g->capowned, g->nowned + 1)) goto oom;
    size_t cap = g->capowned;
    if (cap > g->capowned_free) {
        void (**nf)(void *) = rc_realloc(g->owned_free, cap * sizeof *nf);
        if (!nf) goto oom;
        g->owned_free = nf;
        g->capowned_free = cap;
    }
    g->owned[g->nowned] = obj;
    g->owned_free[g->nowned] = free_fn;
    g->nowned++;
    return true;
oom:
    free_fn(obj);
    return false;
}

const char *rc_intern(recur_graph *g, const char *s)
{
    const char *r = rc_map_intern(&g->interned, s);
    if (!r) rc_goom(g);
    return r;
}

/* ------------------------------------------------------------------ sticky status */

void *rc_gerr(recur_graph *g, recur_code code, const char *fmt, ...)
{
    if (!g || g->status.code != RECUR_OK) return NULL;
    va_list ap;
    va_start(ap, fmt);
    rc_status_vset(&g->status, code, fmt, ap);
    va_end(ap);
    return NULL;
}

void *rc_goom(recur_graph *g) { return rc_gerr(g, RECUR_OUT_OF_MEMORY, "Out of memory while building the graph"); }

bool recur_graph_ok(const recur_graph *g) { return g && g->status.code == RECUR_OK; }
recur_code recur_graph_code(const recur_graph *g) { return g ? g->status.code : RECUR_INVALID_ARGUMENT; }
const char *recur_graph_message(const recur_graph *g) { return g ? g->status.msg : "graph is NULL"; }
void recur_graph_clear_error(recur_graph *g)
{
    if (g) recur_status_clear(&g->status);
}

void recur_graph_set_error(recur_graph *g, recur_code code, const char *fmt, ...)
{
    if (!g || g->status.code != RECUR_OK) return;
    if (code == RECUR_OK) code = RECUR_UNKNOWN;
    va_list ap;
    va_start(ap, fmt);
    rc_status_vset(&g->status, code, fmt ? fmt : "", ap);
    va_end(ap);
}

bool rc_gready(recur_graph *g, recur_tensor *const *ts, int n)
{
    if (!g || g->status.code != RECUR_OK) return false;
    for (int i = 0; i < n; i++) {
        if (!ts[i]) return false;
        if (ts[i]->op->g != g) {
            rc_gerr(g, RECUR_INVALID_ARGUMENT,
                    "Tensor %s must be from the same graph as the op being built", ts[i]->name);
            return false;
        }
    }
    return true;
}

void recur_graph_set_seed(recur_graph *g, int64_t seed)
{
    if (!g) return;
    g->has_seed = true;
    g->seed = seed;
}

/* ------------------------------------------------------------------ names */

/* TensorFlow's _VALID_OP_NAME_REGEX (root) and _VALID_SCOPE_NAME_REGEX (nested):
 * ^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$ and ^[A-Za-z0-9_.\\/>-]*$ */
static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '\\' || c == '/' || c == '>' || c == '-';
}

bool rc_valid_scope_name(const char *name, bool nested)
{
    if (!name) return false;
    if (!nested) {
        if (!*name) return false;
        if (!(isalnum((unsigned char)name[0]) || name[0] == '.')) return false;
    }
    for (const char *p = name; *p; p++)
        if (!name_char(*p)) return false;
    return true;
}

void *rc_invalid_name(recur_graph *g, const char *name)
{
    if (g->name_stack[0])
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "'%s' is not a valid scope name. A scope name has to match the following "
                       "pattern: ^[A-Za-z0-9_.\\\\/>-]*$",
                       name);
    return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                   "'%s' is not a valid root scope name. A root scope name has to match the "
                   "following pattern: ^[A-Za-z0-9.][A-Za-z0-9_.\\\\/>-]*$",
                   name);
}

static void lower(char *s)
{
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* Graph.unique_name: prefix with the name stack; the lower-cased key counts uses. */
char *rc_unique_name(recur_graph *g, const char *name, bool mark_used)
{
    rc_strbuf b;
    rc_sb_init(&b);
    if (g->name_stack[0]) {
        rc_sb_puts(&b, g->name_stack);
        rc_sb_puts(&b, "/");
    }
    rc_sb_puts(&b, name);
    char *full = rc_sb_take(&b);
    if (!full) return NULL;
    char *key = rc_strdup(full);
    if (!key) {
        rc_free(full);
        return NULL;
    }
    lower(key);
    intptr_t *cnt = rc_map_get(&g->names_in_use, key);
    intptr_t i = cnt ? *cnt : 0;
    if (mark_used && !rc_map_set(&g->names_in_use, key, i + 1)) goto oom;
    if (i > 0) {
        size_t klen = strlen(key), flen = strlen(full);
        char *cand = rc_malloc(klen + 24), *out = rc_malloc(flen + 24);
        if (!cand || !out) {
            rc_free(cand);
            rc_free(out);
            goto oom;
        }
        for (;;) {
            snprintf(cand, klen + 24, "%s_%ld", key, (long)i);
            if (!rc_map_get(&g->names_in_use, cand)) break;
            i++;
        }
        if (mark_used && !rc_map_set(&g->names_in_use, cand, 1)) {
            rc_free(cand);
            rc_free(out);
            goto oom;
        }
        snprintf(out, flen + 24, "%s_%ld", full, (long)i);
        rc_free(cand);
        rc_free(full);
        full = out;
    }
    rc_free(key);
    return full;
oom:
    rc_free(key);
    rc_free(full);
    return NULL;
}

static bool push_stack(recur_graph *g, rc_stack_entry e)
{
    if (!RC_GROW(g->stack, g->capstack, g->nstack + 1)) return false;
    g->stack[g->nstack++] = e;
    return true;
}

/* Enter a name scope (Graph.name_scope). On success the previous name stack is saved in a new
 * stack entry of kind `kind` which the caller may fill further. Returns the entry or NULL. */
rc_stack_entry *rc_enter_name_scope(recur_graph *g, const char *name, rc_stack_kind kind, bool open)
{
    char *new_stack;
    if (!open) {
        new_stack = rc_strdup(g->name_stack);
    } else if (!name || !*name) {
        new_stack = rc_strdup("");
    } else {
        if (!rc_valid_scope_name(name, g->name_stack[0] != 0)) return rc_invalid_name(g, name);
        size_t n = strlen(name);
        if (name[n - 1] == '/')
            new_stack = rc_strndup(name, n - 1);
        else
            new_stack = rc_unique_name(g, name, true);
    }
    if (!new_stack) return rc_goom(g);
    rc_stack_entry e = {.kind = kind, .saved_name_stack = g->name_stack, .opened_name_scope = open};
    if (!push_stack(g, e)) {
        rc_free(new_stack);
        return rc_goom(g);
    }
    g->name_stack = new_stack;
    return &g->stack[g->nstack - 1];
}

/* Leave the innermost entry's name scope and drop the entry. */
void rc_leave_stack_entry(recur_graph *g)
{
    rc_stack_entry *e = &g->stack[g->nstack - 1];
    rc_free(g->name_stack);
    g->name_stack = e->saved_name_stack;
    e->saved_name_stack = NULL;
    free_stack_entry(e);
    g->nstack--;
}

const char *rc_name_scope_string(recur_graph *g)
{
    if (!g->name_stack[0]) return "";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s/", g->name_stack);
    return rc_intern(g, buf);
}

const char *recur_name_scope_push(recur_graph *g, const char *name)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!rc_enter_name_scope(g, name, RC_STACK_NAME, true)) return NULL;
    const char *s = rc_name_scope_string(g);
    if (!s) {
        rc_leave_stack_entry(g);
        return NULL;
    }
    return s;
}

void recur_name_scope_pop(recur_graph *g)
{
    if (!g) return;
    if (g->nstack == 0) {
        rc_gerr(g, RECUR_FAILED_PRECONDITION,
                "Improper nesting of name_scope: recur_name_scope_pop called with no scope open.");
        return;
    }
    if (g->stack[g->nstack - 1].kind != RC_STACK_NAME) {
        rc_gerr(g, RECUR_FAILED_PRECONDITION,
                "Improper nesting of name_scope: the innermost scope is variable scope '%s'; "
                "close it with recur_variable_scope_pop first.",
                g->var_scope->name);
        return;
    }
    rc_leave_stack_entry(g);
}

const char *recur_name_scope_current(const recur_graph *g)
{
    if (!g) return "";
    return rc_name_scope_string((recur_graph *)g);
}

size_t rc_scope_depth(const recur_graph *g) { return g->nstack; }

/* ------------------------------------------------------------------ ops */

void rc_attrs_release(rc_attrs *a)
{
    recur_array_free(a->value);
    rc_free(a->ivec);
    a->value = NULL;
    a->ivec = NULL;
}

const rc_op_def *rc_op_def_of(int type)
{
    RC_CHECK(type > RC_OP_INVALID && type < RC_OP_COUNT && rc_op_table[type]);
    return rc_op_table[type];
}

bool rc_set_outputs(recur_op *op, int n)
{
    if (op->outputs) {
        RC_CHECK(op->noutputs == n);
        return true;
    }
    op->outputs = rc_calloc((size_t)(n ? n : 1), sizeof *op->outputs);
    if (!op->outputs) return false;
    op->noutputs = n;
    for (int i = 0; i < n; i++) {
        op->outputs[i].op = op;
        op->outputs[i].index = i;
        op->outputs[i].shape = RECUR_UNKNOWN_SHAPE;
    }
    return true;
}

void rc_set_output(recur_op *op, int i, recur_dtype dt, recur_shape shape)
{
    RC_CHECK(i >= 0 && i < op->noutputs);
    op->outputs[i].dtype = dt;
    if (shape.rank > RECUR_MAX_RANK) shape.rank = -1;
    op->outputs[i].shape = shape;
}

bool rc_add_ctrl(recur_op *op, recur_op *dep)
{
    for (int i = 0; i < op->nctrl; i++)
        if (op->ctrl[i] == dep) return true;
    size_t cap = (size_t)op->capctrl;
    if (!RC_GROW(op->ctrl, cap, (size_t)op->nctrl + 1)) {
        rc_goom(op->g); /* a dropped dependency would reorder the graph silently */
        return false;
    }
    op->capctrl = (int)cap;
    op->ctrl[op->nctrl++] = dep;
    op->g->ctrl_version++;
    return true;
}

recur_op *rc_op_new(recur_graph *g, int type, recur_tensor *const *inputs, int ninputs,
                    const char *name, const rc_attrs *attr)
{
    rc_attrs a = attr ? *attr : (rc_attrs){0};
    if (!rc_gready(g, inputs, ninputs)) goto fail;
    const rc_op_def *def = rc_op_def_of(type);
    RC_CHECK(ninputs >= def->min_inputs && (def->max_inputs < 0 || ninputs <= def->max_inputs));

    char *full;
    if (name && *name) {
        if (!rc_valid_scope_name(name, g->name_stack[0] != 0)) {
            rc_invalid_name(g, name);
            goto fail;
        }
        size_t n = strlen(name);
        if (name[n - 1] == '/') {
            /* An exact name (TensorFlow's name_from_scope_name) is not uniquified, so it must
             * name something and must not be taken (checked below): TensorFlow's graph refuses a
             * duplicate node name, and a second op of one name would shadow the first. */
            if (n == 1) {
                rc_gerr(g, RECUR_INVALID_ARGUMENT, "'/' is not a valid op name: it names no op");
                goto fail;
            }
            full = rc_strndup(name, n - 1);
        } else {
            full = rc_unique_name(g, name, true);
        }
    } else {
        full = rc_unique_name(g, def->name ? def->name : def->type, true);
    }
    if (!full) {
        rc_goom(g);
        goto fail;
    }
    /* An exact name is not recorded as used, so it can also meet a later generated name. */
    if (rc_map_get(&g->op_by_name, full)) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "Duplicate node name in graph: '%s'", full);
        rc_free(full);
        goto fail;
    }

    recur_op *op = rc_calloc(1, sizeof *op);
    if (!op) {
        rc_free(full);
        rc_goom(g);
        goto fail;
    }
    op->g = g;
    op->type = type;
    op->name = full;
    op->attr = a;
    op->frame = g->frame;
    op->id = (int)g->nops;
    if (ninputs) {
        op->inputs = rc_malloc((size_t)ninputs * sizeof *op->inputs);
        if (!op->inputs) goto fail_op;
        memcpy(op->inputs, inputs, (size_t)ninputs * sizeof *op->inputs);
    }
    op->ninputs = ninputs;
    if (!def->shape(g, op)) goto fail_op_quiet;
    if (!op->outputs && !rc_set_outputs(op, 0)) goto fail_op;
    for (int i = 0; i < op->noutputs; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, ":%d", i);
        size_t n = strlen(full);
        op->outputs[i].name = rc_malloc(n + strlen(buf) + 1);
        if (!op->outputs[i].name) goto fail_op;
        memcpy(op->outputs[i].name, full, n);
        strcpy(op->outputs[i].name + n, buf);
    }
    if (!rc_frame_note_op(g, op)) goto fail_op_quiet;
    if (!RC_GROW(g->ops, g->capops, g->nops + 1)) goto fail_op;
    if (!rc_map_set(&g->op_by_name, full, (intptr_t)op)) goto fail_op;
    g->ops[g->nops++] = op;
    for (int i = 0; i < op->noutputs; i++) op->outputs[i].id = g->ntensors++;
    return op;

fail_op:
    rc_goom(g);
fail_op_quiet:
    free_op(op);
    return NULL;
fail:
    rc_attrs_release(&a);
    return NULL;
}

recur_tensor *rc_op1(recur_graph *g, int type, recur_tensor *const *inputs, int ninputs,
                     const char *name, const rc_attrs *attr)
{
    recur_op *op = rc_op_new(g, type, inputs, ninputs, name, attr);
    return op && op->noutputs > 0 ? &op->outputs[0] : NULL;
}

/* ------------------------------------------------------------------ accessors */

const char *recur_tensor_name(const recur_tensor *t) { return t ? t->name : NULL; }
recur_dtype recur_tensor_dtype(const recur_tensor *t) { return t ? t->dtype : RECUR_DTYPE_INVALID; }
recur_shape recur_tensor_shape(const recur_tensor *t) { return t ? t->shape : RECUR_UNKNOWN_SHAPE; }
recur_op *recur_tensor_op(const recur_tensor *t) { return t ? t->op : NULL; }
recur_graph *recur_tensor_graph(const recur_tensor *t) { return t ? t->op->g : NULL; }
const char *recur_op_name(const recur_op *op) { return op ? op->name : NULL; }
const char *recur_op_type(const recur_op *op) { return op ? rc_op_def_of(op->type)->type : NULL; }
int recur_op_num_outputs(const recur_op *op) { return op ? op->noutputs : 0; }
recur_tensor *recur_op_output(const recur_op *op, int i)
{
    return op && i >= 0 && i < op->noutputs ? &op->outputs[i] : NULL;
}

recur_op *recur_graph_op(const recur_graph *g, const char *name)
{
    if (!g || !name) return NULL;
    intptr_t *p = rc_map_get(&g->op_by_name, name);
    return p ? (recur_op *)*p : NULL;
}

recur_tensor *recur_graph_tensor(const recur_graph *g, const char *name)
{
    if (!g || !name) return NULL;
    const char *colon = strrchr(name, ':');
    char buf[1024];
    long idx = 0;
    if (colon) {
        char *end;
        idx = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || (size_t)(colon - name) >= sizeof buf) return NULL;
        memcpy(buf, name, (size_t)(colon - name));
        buf[colon - name] = 0;
        name = buf;
    }
    recur_op *op = recur_graph_op(g, name);
    return op && idx >= 0 && idx < op->noutputs ? &op->outputs[idx] : NULL;
}

size_t recur_graph_num_ops(const recur_graph *g) { return g ? g->nops : 0; }
recur_op *recur_graph_op_at(const recur_graph *g, size_t i) { return g && i < g->nops ? g->ops[i] : NULL; }

void recur_add_control_input(recur_graph *g, recur_op *op, recur_op *dep)
{
    if (!rc_gready(g, NULL, 0) || !op || !dep) return;
    if (op->g != g || dep->g != g) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "Control input %s must be from the same graph as %s",
                dep->name, op->name);
        return;
    }
    if (!rc_add_ctrl(op, dep)) rc_goom(g);
}
