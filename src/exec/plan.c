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

/* Partners for ops that declare they can run concurrently: j > i pairs with i when all of j's
 * inputs and control inputs come from ops placed before i (or from outside the plan). */
static bool pair_ops(rc_plan *p, recur_op **order, int n, size_t nops)
{
    int *pos = NULL;
    for (int i = 0; i < n; i++)
        if (rc_op_def_of(order[i]->type)->concurrent) goto build;
    return true;
build:
    pos = rc_malloc((nops + 1) * sizeof *pos);
    p->partner = rc_malloc((size_t)(n + 1) * sizeof *p->partner);
    p->done = rc_calloc((size_t)n + 1, 1);
    if (!pos || !p->partner || !p->done) {
        rc_free(pos);
        return false;
    }
    for (size_t i = 0; i < nops; i++) pos[i] = -1;
    for (int i = 0; i < n; i++) {
        pos[order[i]->id] = i;
        p->partner[i] = -1;
    }
    for (int i = 0; i < n; i++) {
        if (!rc_op_def_of(order[i]->type)->concurrent || p->partner[i] >= 0) continue;
        for (int j = i + 1; j < n; j++) {
            recur_op *b = order[j];
            if (!rc_op_def_of(b->type)->concurrent || p->partner[j] >= 0) continue;
            bool ready = true;
            for (int k = 0; k < b->ninputs && ready; k++) {
                int q = pos[b->inputs[k]->op->id];
                ready = q < i;
            }
            for (int k = 0; k < b->nctrl && ready; k++) ready = pos[b->ctrl[k]->id] < i;
            if (ready) {
                p->partner[i] = j;
                p->partner[j] = -2; /* taken */
                break;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (p->partner[i] == -2) p->partner[i] = -1;
    rc_free(pos);
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
