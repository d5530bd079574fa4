/*
 * plan.c - plans: the ops needed for a set of fetches and targets, in dependency order, cut at
 * fed tensors, with per-tensor read counts so buffers are released after their last reader.
 */
#include "exec/exec.h"

void rc_plan_free(rc_plan *p)
{
    if (!p) return;
    rc_free(p->ops);
    rc_free(p->use_ids);
    rc_free(p->use_counts);
    rc_free(p->feeds);
    rc_free(p->fetches);
    rc_free(p->targets);
    rc_free(p->has_op);
    rc_free(p->partner);
    rc_free(p->done);
    rc_free(p);
}

bool rc_plan_contains(const rc_plan *plan, const recur_op *op)
{
    return plan && op && (size_t)op->id < plan->nops_seen && plan->has_op[op->id];
}

typedef struct walk {
    recur_graph *g;
    rc_frame *frame;
    unsigned char *op_state;  /* 0 new, 1 on stack, 2 done */
    unsigned char *fed;       /* by tensor id */
    recur_op **order;
    int norder;
    recur_op **stack;
    int *stack_pos;           /* next input/ctrl index to visit per stack entry */
    int nstack;
    recur_status *st;
} walk;

/* Is tensor t provided without running its op (fed, or an outer value of a loop body)? */
static bool provided(const walk *w, const recur_tensor *t)
{
    return w->fed[t->id] || t->op->frame != w->frame;
}

/* Iterative depth-first post-order from `root`. */
static recur_code visit(walk *w, recur_op *root)
{
    if (w->op_state[root->id] == 2) return RECUR_OK;
    if (root->frame != w->frame)
        return rc_err(w->st, RECUR_INVALID_ARGUMENT,
                      "Op %s is inside a loop body and cannot be run on its own", root->name);
    w->nstack = 0;
    w->stack[w->nstack] = root;
    w->stack_pos[w->nstack++] = 0;
    w->op_state[root->id] = 1;
    while (w->nstack) {
        recur_op *op = w->stack[w->nstack - 1];
        int pos = w->stack_pos[w->nstack - 1]++;
        recur_op *next = NULL;
        if (pos < op->ninputs) {
            recur_tensor *t = op->inputs[pos];
            if (!provided(w, t)) next = t->op;
        } else if (pos < op->ninputs + op->nctrl) {
            next = op->ctrl[pos - op->ninputs];
            if (next->frame != w->frame) next = NULL;
        } else {
            w->op_state[op->id] = 2;
            w->order[w->norder++] = op;
            w->nstack--;
            continue;
        }
        if (!next || w->op_state[next->id] == 2) continue;
        if (w->op_state[next->id] == 1)
            return rc_err(w->st, RECUR_INVALID_ARGUMENT, "The graph has a cycle through op %s", next->name);
        w->op_state[next->id] = 1;
        w->stack[w->nstack] = next;
        w->stack_pos[w->nstack++] = 0;
    }
    return RECUR_OK;
}

/* Partners for ops that declare they can run concurrently (the two directions of a
 * bidirectional RNN, say): j > i pairs with i when j does not depend on i. The ops j needs that
 * sit between the two (the backward direction's input reversal and weight reads, which a
 * depth-first order places after the forward direction) move to just before i, in their own
 * order, so that every input of j is ready when i starts. Nothing moves across an op that
 * writes a variable. */
static bool op_concurrent(const recur_op *op) { return rc_op_def_of(op->type)->concurrent != NULL; }

static bool writes_state(const recur_op *op) { return rc_op_def_of(op->type)->flags & RC_OPF_REF_INPUT; }

/* Mark in need[] the ops in (i, j] that j needs; false when j needs i, when something in
 * [i, j] writes a variable, or when an op in between is already another's partner (it must not
 * move). pos: op id -> position (-1: not in the plan). */
static bool needs_between(recur_op **order, const int *pos, const int *partner, int i, int j, unsigned char *need)
{
    memset(need + i, 0, (size_t)(j - i + 1));
    need[j] = 1;
    for (int q = j; q > i; q--) {
        if (writes_state(order[q]) || (q < j && partner[q] != -1)) return false;
        if (!need[q]) continue;
        recur_op *op = order[q];
        for (int k = 0; k < op->ninputs + op->nctrl; k++) {
            const recur_op *src = k < op->ninputs ? op->inputs[k]->op : op->ctrl[k - op->ninputs];
            int r = pos[src->id];
            if (r == i) return false;
            if (r > i) need[r] = 1;
        }
    }
    return !writes_state(order[i]);
}

static bool pair_ops(rc_plan *p, recur_op **order, int n, size_t nops)
{
    int *pos = NULL;
    unsigned char *need = NULL;
    recur_op **tmp = NULL;
    for (int i = 0; i < n; i++)
        if (op_concurrent(order[i])) goto build;
    return true;
build:
    pos = rc_malloc((nops + 1) * sizeof *pos);
    need = rc_malloc((size_t)n + 1);
    tmp = rc_malloc(((size_t)n + 1) * sizeof *tmp);
    p->partner = rc_malloc((size_t)(n + 1) * sizeof *p->partner);
    p->done = rc_calloc((size_t)n + 1, 1);
    if (!pos || !need || !tmp || !p->partner || !p->done) {
        rc_free(pos);
        rc_free(need);
        rc_free(tmp);
        return false;
    }
    for (size_t i = 0; i < nops; i++) pos[i] = -1;
    for (int i = 0; i < n; i++) {
        pos[order[i]->id] = i;
        p->partner[i] = -1;
    }
    for (int i = 0; i < n; i++) {
        if (!op_concurrent(order[i]) || p->partner[i] != -1) continue;
        for (int j = i + 1; j < n; j++) {
            if (!op_concurrent(order[j]) || p->partner[j] != -1 || !needs_between(order, pos, p->partner, i, j, need)) continue;
            /* order[i..j] becomes: what j needs (but j), order[i], the rest, order[j] */
            int m = 0, moved = 0;
            for (int q = i + 1; q < j; q++)
                if (need[q]) tmp[m++] = order[q];
            moved = m;
            tmp[m++] = order[i];
            for (int q = i + 1; q < j; q++)
                if (!need[q]) tmp[m++] = order[q];
            for (int q = 0; q < m; q++) {
                order[i + q] = tmp[q];
                pos[tmp[q]->id] = i + q;
            }
            i += moved; /* order[i] is the first op again */
            p->partner[i] = j;
            p->partner[j] = -2; /* taken */
            break;
        }
    }
    for (int i = 0; i < n; i++)
        if (p->partner[i] == -2) p->partner[i] = -1;
    rc_free(pos);
    rc_free(need);
    rc_free(tmp);
    return true;
}

rc_plan *rc_plan_build(recur_graph *g, rc_frame *frame, recur_tensor *const *feeds, int nfeeds,
                       recur_tensor *const *fetches, int nfetches, recur_op *const *targets,
                       int ntargets, recur_status *st)
{
    size_t nops = g->nops, nt = (size_t)g->ntensors;
    walk w = {.g = g, .frame = frame, .st = st};
    rc_plan *p = rc_calloc(1, sizeof *p);
    int *counts = rc_calloc(nt + 1, sizeof *counts);
    w.op_state = rc_calloc(nops + 1, 1);
    w.fed = rc_calloc(nt + 1, 1);
    w.order = rc_malloc((nops + 1) * sizeof *w.order);
    w.stack = rc_malloc((nops + 1) * sizeof *w.stack);
    w.stack_pos = rc_malloc((nops + 1) * sizeof *w.stack_pos);
    if (!p || !counts || !w.op_state || !w.fed || !w.order || !w.stack || !w.stack_pos) {
        rc_oom(st);
        goto fail;
    }
    for (int i = 0; i < nfeeds; i++) w.fed[feeds[i]->id] = 1;
    for (int i = 0; i < nfetches; i++)
        if (!provided(&w, fetches[i]) && visit(&w, fetches[i]->op) != RECUR_OK) goto fail;
    for (int i = 0; i < ntargets; i++)
        if (visit(&w, targets[i]) != RECUR_OK) goto fail;

    /* Read counts: every input edge of a planned op, plus one per fetch. */
    int nuses = 0;
    for (int i = 0; i < w.norder; i++)
        for (int j = 0; j < w.order[i]->ninputs; j++)
            if (counts[w.order[i]->inputs[j]->id]++ == 0) nuses++;
    for (int i = 0; i < nfetches; i++)
        if (counts[fetches[i]->id]++ == 0) nuses++;
    p->use_ids = rc_malloc((size_t)(nuses + 1) * sizeof *p->use_ids);
    p->use_counts = rc_malloc((size_t)(nuses + 1) * sizeof *p->use_counts);
    if (!p->use_ids || !p->use_counts) {
        rc_oom(st);
        goto fail;
    }
    for (size_t t = 0; t < nt; t++)
        if (counts[t]) {
            p->use_ids[p->nuses] = (int)t;
            p->use_counts[p->nuses++] = counts[t];
        }
    p->has_op = rc_calloc(nops + 1, 1);
    if (!p->has_op) {
        rc_oom(st);
        goto fail;
    }
    for (int i = 0; i < w.norder; i++) p->has_op[w.order[i]->id] = 1;
    p->nops_seen = nops;
    if (!pair_ops(p, w.order, w.norder, nops)) {
        rc_oom(st);
        goto fail;
    }
    p->ops = w.order;
    p->nops = w.norder;
    w.order = NULL;
    p->ctrl_version = g->ctrl_version;
    rc_free(counts);
    rc_free(w.op_state);
    rc_free(w.fed);
    rc_free(w.stack);
    rc_free(w.stack_pos);
    return p;
fail:
    rc_free(counts);
    rc_free(w.op_state);
    rc_free(w.fed);
    rc_free(w.order);
    rc_free(w.stack);
    rc_free(w.stack_pos);
    rc_plan_free(p);
    return NULL;
}
