/*
 * session.c - sessions: variable storage, cached plans, runs (feeds, fetches, targets), the
 * kernel context helpers, and TensorFlow's run-time errors.
 */
#include "exec/exec.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

/* RECUR_PROFILE=1: kernel time per op type, printed to stderr when the session is freed. */
typedef struct rc_profile {
    _Atomic int64_t ns[RC_OP_COUNT], calls[RC_OP_COUNT];
} rc_profile;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void profile_print(const rc_profile *p)
{
    int order[RC_OP_COUNT], n = 0;
    int64_t total = 0;
    for (int i = 0; i < RC_OP_COUNT; i++)
        if (p->calls[i]) order[n++] = i, total += p->ns[i];
    for (int i = 1; i < n; i++) /* by time, largest first */
        for (int j = i; j > 0 && p->ns[order[j]] > p->ns[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    fprintf(stderr, "recur profile: kernel time by op type (%.1f ms in all)\n  %-28s %10s %12s %10s %6s\n", total / 1e6,
            "op", "calls", "total ms", "us/call", "%");
    for (int i = 0; i < n; i++) {
        int o = order[i];
        fprintf(stderr, "  %-28s %10lld %12.2f %10.1f %5.1f%%\n", rc_op_def_of(o)->type, (long long)p->calls[o],
                p->ns[o] / 1e6, p->ns[o] / 1e3 / (double)p->calls[o], total ? 100.0 * p->ns[o] / total : 0);
    }
}

recur_session *recur_session_new(recur_graph *g, const recur_session_opts *opts, recur_status *st)
{
    if (!g) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_session_new: graph is NULL");
        return NULL;
    }
    if (!recur_graph_ok(g)) {
        rc_err(st, recur_graph_code(g), "recur_session_new: the graph holds an error: %s",
               recur_graph_message(g));
        return NULL;
    }
    recur_session *s = rc_calloc(1, sizeof *s);
    if (!s) {
        rc_oom(st);
        return NULL;
    }
    s->g = g;
    rc_pool_init(&s->pool);
    if (opts) s->opts = *opts;
    /* never more threads than cores this process may run on: two threads sharing one core only
     * take turns (and wait for each other) */
    int ncpu = rc_usable_cpus();
    s->threads = RC_MIN(s->opts.num_threads > 0 ? s->opts.num_threads : 2, ncpu);
    const char *prof = getenv("RECUR_PROFILE");
    if (prof && *prof && strcmp(prof, "0")) s->profile = rc_calloc(1, sizeof *s->profile); /* best effort */
    recur_status_clear(st);
    return s;
}

static void free_state(recur_session *s)
{
    for (size_t i = 0; i < s->capvars; i++) recur_array_free(s->vars[i]);
    rc_free(s->vars);
    s->vars = NULL;
    s->capvars = 0;
    for (size_t i = 0; i < s->capop_state; i++)
        if (s->op_state[i] && s->op_state_free[i]) s->op_state_free[i](s->op_state[i]);
    rc_free(s->op_state);
    rc_free(s->op_state_free);
    s->op_state = NULL;
    s->op_state_free = NULL;
    s->capop_state = 0;
    for (size_t i = 0; i < s->nplans; i++) rc_plan_free(s->plans[i]);
    rc_free(s->plans);
    s->plans = NULL;
    s->nplans = s->capplans = 0;
    rc_pool_free(&s->pool);
    rc_free(s->run_vals);
    rc_free(s->run_remaining);
    s->run_vals = NULL;
    s->run_remaining = NULL;
    s->run_cap = 0;
}

void recur_session_close(recur_session *s)
{
    if (!s) return;
    rc_worker_stop(s);
    if (s->profile) profile_print(s->profile);
    rc_free(s->profile);
    free_state(s);
    s->closed = true;
}

void recur_session_free(recur_session *s)
{
    if (!s) return;
    rc_worker_stop(s);
    if (s->profile) profile_print(s->profile);
    rc_free(s->profile);
    free_state(s);
    pthread_mutex_destroy(&s->pool.lock);
    rc_free(s);
}

recur_array **rc_session_var_slot(recur_session *s, const rc_variable *v)
{
    size_t need = (size_t)v->index + 1;
    if (need > s->capvars) {
        size_t nc = RC_MAX(need, s->capvars * 2);
        recur_array **nv = rc_realloc(s->vars, nc * sizeof *nv);
        if (!nv) return NULL;
        memset(nv + s->capvars, 0, (nc - s->capvars) * sizeof *nv);
        s->vars = nv;
        s->capvars = nc;
    }
    return &s->vars[v->index];
}

/* ------------------------------------------------------------------ kernel context */

recur_array *rc_kout(rc_kctx *k, int i, recur_dtype dt, recur_shape shape)
{
    RC_CHECK(i >= 0 && i < k->op->noutputs && !k->out[i]);
    recur_array *a = rc_pool_get(&k->run->s->pool, dt, shape);
    if (!a) {
        int64_t n;
        if (!rc_shape_count(shape, &n))
            rc_kerr(k, RECUR_INVALID_ARGUMENT, "Invalid output shape for %s", k->op->name);
        else
            rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory allocating %lld elements of %s",
                    (long long)n, recur_dtype_name(dt));
        return NULL;
    }
    k->out[i] = a;
    return a;
}

void rc_kforward(rc_kctx *k, int i, int j)
{
    recur_array *a = k->in[j];
    if (a->pooled) a->refs++;
    k->out[i] = a;
}

recur_code rc_kerr(rc_kctx *k, recur_code code, const char *fmt, ...)
{
    char msg[RC_MSG_CAP - 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rc_err(k->st, code, "%s\n\t [[node %s (%s)]]", msg, k->op->name, rc_op_def_of(k->op->type)->type);
}

int rc_kthreads(rc_kctx *k) { return k->run->concurrent ? 1 : k->run->s->threads; }

typedef struct par2 {
    void (*fn)(void *arg, int part);
    void *arg;
} par2;

static void par2_second(void *p)
{
    par2 *j = p;
    j->fn(j->arg, 1);
}

bool rc_kparallel2_together(rc_kctx *k, void (*fn)(void *arg, int part), void *arg)
{
    par2 j = {fn, arg};
    if (!k || rc_kthreads(k) < 2 || !rc_worker_start(k->run->s, par2_second, &j)) return false;
    fn(arg, 0);
    rc_worker_wait(k->run->s);
    return true;
}

void rc_kparallel2(rc_kctx *k, void (*fn)(void *arg, int part), void *arg)
{
    par2 j = {fn, arg};
    if (k && rc_kthreads(k) > 1 && rc_worker_start(k->run->s, par2_second, &j)) {
        fn(arg, 0);
        rc_worker_wait(k->run->s);
        return;
    }
    fn(arg, 0);
    fn(arg, 1);
}
typedef struct range2 {
    void (*fn)(void *arg, int64_t lo, int64_t hi);
    void *arg;
    int64_t n;
} range2;

static void range2_part(void *p, int part)
{
    const range2 *r = p;
    int64_t half = r->n / 2;
    if (part) r->fn(r->arg, half, r->n);
    else r->fn(r->arg, 0, half);
}

void rc_kfor2(rc_kctx *k, int64_t n, int64_t min_n, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg)
{
    if (n <= 0) return;
    if (n < RC_MAX(min_n, 2) || !k || rc_kthreads(k) < 2) {
        fn(arg, 0, n);
        return;
    }
    range2 r = {fn, arg, n};
    rc_kparallel2(k, range2_part, &r);
}
bool rc_kreference(rc_kctx *k) { return k->run->s->reference; }

bool rc_kout_needed(rc_kctx *k, int i)
{
    RC_CHECK(i >= 0 && i < k->op->noutputs);
    return k->run->s->opts.check_numerics || k->run->remaining[k->op->outputs[i].id] > 0;
}

uint64_t rc_kvar_epoch(rc_kctx *k) { return atomic_load_explicit(&k->run->s->var_epoch, memory_order_relaxed); }

static bool grow_op_state(recur_session *s, size_t need)
{
    if (need > s->capop_state) {
        size_t nc = RC_MAX(need, s->capop_state * 2);
        void **ns = rc_realloc(s->op_state, nc * sizeof *ns);
        if (!ns) return false;
        s->op_state = ns;
        void (**nf)(void *) = rc_realloc(s->op_state_free, nc * sizeof *nf);
        if (!nf) return false;
        s->op_state_free = nf;
        memset(ns + s->capop_state, 0, (nc - s->capop_state) * sizeof *ns);
        memset(nf + s->capop_state, 0, (nc - s->capop_state) * sizeof *nf);
        s->capop_state = nc;
    }
    return true;
}

void **rc_kstate(rc_kctx *k)
{
    recur_session *s = k->run->s;
    if (!grow_op_state(s, (size_t)k->op->id + 1)) return NULL;
    if (!s->op_state_free[k->op->id]) s->op_state_free[k->op->id] = rc_free;
    return &s->op_state[k->op->id];
}

/* The buffer behind rc_kscratch: its capacity, then the bytes (64-byte aligned). */
typedef struct kscratch {
    size_t cap;
    void *data;
} kscratch;

static void free_kscratch(void *p)
{
    kscratch *ks = p;
    if (ks) rc_aligned_free(ks->data);
    rc_free(ks);
}

void *rc_kscratch(rc_kctx *k, size_t bytes)
{
    void **slot = rc_kstate(k);
    if (!slot) return NULL;
    kscratch *ks = *slot;
    if (!ks) {
        if (!(ks = *slot = rc_calloc(1, sizeof *ks))) return NULL;
        rc_kstate_set_free(k, free_kscratch);
    }
    if (bytes > ks->cap) {
        void *d = rc_aligned_alloc(bytes);
        if (!d) return NULL;
        rc_aligned_free(ks->data);
        ks->data = d;
        ks->cap = bytes;
    }
    return ks->data;
}

void *rc_session_op_state(recur_session *s, const recur_op *op)
{
    return (size_t)op->id < s->capop_state ? s->op_state[op->id] : NULL;
}

void rc_kstate_set_free(rc_kctx *k, void (*free_fn)(void *))
{
    if ((size_t)k->op->id < k->run->s->capop_state) k->run->s->op_state_free[k->op->id] = free_fn ? free_fn : rc_free;
}

/* ------------------------------------------------------------------ running */

void rc_run_set(rc_run *run, recur_tensor *t, recur_array *a)
{
    RC_CHECK(!run->vals[t->id]);
    run->vals[t->id] = a;
}

void rc_run_drop(rc_run *run, recur_tensor *t)
{
    if (--run->remaining[t->id] > 0) return;
    RC_CHECK(run->remaining[t->id] == 0);
    rc_release(&run->s->pool, run->vals[t->id]);
    run->vals[t->id] = NULL;
}

static recur_code check_numerics(rc_kctx *k)
{
    for (int i = 0; i < k->op->noutputs; i++) {
        recur_array *a = k->out[i];
        if (!a || !rc_dtype_is_float(a->dtype)) continue;
        for (int64_t j = 0; j < a->size; j++) {
            double v = rc_array_get(a, j);
            if (!isfinite(v))
                return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                               "check_numerics: %s in output %d of op %s (element %lld) at run %llu",
                               isnan(v) ? "NaN" : "Inf", i, k->op->name, (long long)j,
                               (unsigned long long)k->run->s->run_count);
        }
    }
    return RECUR_OK;
}

/* One op on its way through the executor: inputs gathered, outputs collected. */
typedef struct pending {
    recur_op *op;
    rc_kctx k;
    recur_array *inbuf[32], *outbuf[32];
    recur_status st;   /* a kernel running on the worker reports here */
    recur_code code;
} pending;

/* Gather the inputs (an uninitialised variable fails here, as in TensorFlow, at its reader). */
static recur_code op_prepare(rc_run *run, recur_op *op, pending *p, recur_status *st)
{
    const rc_op_def *def = rc_op_def_of(op->type);
    p->op = op;
    p->code = RECUR_OK;
    recur_array **in = op->ninputs <= 32 ? p->inbuf : rc_malloc((size_t)op->ninputs * sizeof *in);
    recur_array **out = op->noutputs <= 32 ? p->outbuf : rc_malloc((size_t)op->noutputs * sizeof *out);
    p->k = (rc_kctx){.run = run, .op = op, .in = in, .out = out, .st = st};
    if (!in || !out) return p->code = rc_oom(st);
    memset(out, 0, (size_t)op->noutputs * sizeof *out);
    for (int i = 0; i < op->ninputs; i++) {
        in[i] = run->vals[op->inputs[i]->id];
        if (!in[i] && !(i == 0 && (def->flags & RC_OPF_REF_INPUT))) {
            rc_variable *v = rc_tensor_var(op->inputs[i]);
            RC_CHECK(v); /* only variables may hold no value */
            return p->code = rc_kerr(&p->k, RECUR_FAILED_PRECONDITION, "Attempting to use uninitialized value %s", v->name);
        }
    }
    return RECUR_OK;
}

static void op_kernel(void *arg)
{
    pending *p = arg;
    const rc_op_def *def = rc_op_def_of(p->op->type);
    rc_kernel_fn fn = p->k.run->s->reference && def->reference ? def->reference : def->forward;
    rc_profile *prof = p->k.run->s->profile;
    int64_t t0 = prof ? now_ns() : 0;
    p->code = fn(&p->k);
    /* anything that writes session state may have written a variable */
    if ((def->flags & (RC_OPF_STATEFUL | RC_OPF_REF_INPUT)) && p->op->type != RC_OP_VARIABLE)
        atomic_fetch_add_explicit(&p->k.run->s->var_epoch, 1, memory_order_relaxed);
    if (prof) {
        prof->ns[p->op->type] += now_ns() - t0;
        prof->calls[p->op->type]++;
    }
    if (p->code == RECUR_OK && p->k.run->s->opts.check_numerics) p->code = check_numerics(&p->k);
}

/* Publish the outputs (or release them on failure) and drop the inputs' reads. */
static void op_finish(rc_run *run, pending *p)
{
    recur_op *op = p->op;
    if (p->k.out) {
        if (p->code == RECUR_OK) {
            for (int i = 0; i < op->noutputs; i++) {
                RC_CHECK(p->k.out[i] || op->type == RC_OP_VARIABLE);
                recur_tensor *t = &op->outputs[i];
                rc_run_set(run, t, p->k.out[i]);
                if (run->remaining[t->id] == 0) {
                    rc_release(&run->s->pool, run->vals[t->id]);
                    run->vals[t->id] = NULL;
                }
            }
        } else {
            for (int i = 0; i < op->noutputs; i++) rc_release(&run->s->pool, p->k.out[i]);
        }
    }
    for (int i = 0; i < op->ninputs; i++) rc_run_drop(run, op->inputs[i]);
    if (p->k.in != p->inbuf) rc_free(p->k.in);
    if (p->k.out != p->outbuf) rc_free(p->k.out);
}

recur_code rc_exec_op(rc_run *run, recur_op *op)
{
    pending p;
    if (op_prepare(run, op, &p, run->st) == RECUR_OK) op_kernel(&p);
    op_finish(run, &p);
    return p.code;
}

/* Two independent ops at once: b on the session's worker thread, a here. */
static recur_code exec_pair(rc_run *run, recur_op *a, recur_op *b)
{
    pending pa, pb;
    recur_status_clear(&pb.st);
    bool ok_a = op_prepare(run, a, &pa, run->st) == RECUR_OK;
    bool ok_b = ok_a && op_prepare(run, b, &pb, &pb.st) == RECUR_OK;
    if (!ok_a) pb = (pending){.op = b, .code = RECUR_ABORTED};
    if (ok_b) {
        run->s->pairs_run++;
        run->concurrent = true;
        bool async = rc_worker_start(run->s, op_kernel, &pb);
        op_kernel(&pa);
        if (async)
            rc_worker_wait(run->s);
        else
            op_kernel(&pb);
        run->concurrent = false;
    }
    if (ok_a && pb.code != RECUR_OK && pa.code == RECUR_OK) rc_status_copy(run->st, &pb.st);
    op_finish(run, &pa);
    if (pb.k.in || !ok_a) op_finish(run, &pb);
    return pa.code != RECUR_OK ? pa.code : pb.code;
}

/* May op run on the worker next to another (its kernel is self-contained)? */
static bool concurrent_ok(rc_run *run, recur_op *op)
{
    const rc_op_def *d = rc_op_def_of(op->type);
    return d->concurrent && d->concurrent(run, op);
}

recur_code rc_plan_exec(rc_run *run, const rc_plan *plan)
{
    for (int i = 0; i < plan->nuses; i++) run->remaining[plan->use_ids[i]] += plan->use_counts[i];
    if (plan->done) memset(plan->done, 0, (size_t)plan->nops);
    bool par = run->s->threads > 1 && !run->concurrent && plan->partner;
    for (int i = 0; i < plan->nops; i++) {
        if (plan->done && plan->done[i]) continue;
        int mate = par ? plan->partner[i] : -1;
        recur_code c;
        if (mate > i && concurrent_ok(run, plan->ops[i]) && concurrent_ok(run, plan->ops[mate])) {
            plan->done[mate] = 1;
            c = exec_pair(run, plan->ops[i], plan->ops[mate]);
        } else {
            c = rc_exec_op(run, plan->ops[i]);
        }
        if (c != RECUR_OK) {
            /* Forget the reads the remaining ops would have made. */
            for (int j = i + 1; j < plan->nops; j++)
                for (int m = 0; m < plan->ops[j]->ninputs && !(plan->done && plan->done[j]); m++) {
                    recur_tensor *t = plan->ops[j]->inputs[m];
                    if (run->remaining[t->id] > 0) run->remaining[t->id]--;
                }
            return c;
        }
    }
    return RECUR_OK;
}

static bool same_list(void *const *a, int na, void *const *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static rc_plan *find_plan(recur_session *s, recur_tensor *const *feeds, int nfeeds,
                          recur_tensor *const *fetches, int nfetches, recur_op *const *targets,
                          int ntargets, recur_status *st)
{
    for (size_t i = 0; i < s->nplans; i++) {
        rc_plan *p = s->plans[i];
        if (p->ctrl_version == s->g->ctrl_version &&
            same_list((void *const *)p->feeds, p->nfeeds, (void *const *)feeds, nfeeds) &&
            same_list((void *const *)p->fetches, p->nfetches, (void *const *)fetches, nfetches) &&
            same_list((void *const *)p->targets, p->ntargets, (void *const *)targets, ntargets))
            return p;
    }
    rc_plan *p = rc_plan_build(s->g, NULL, feeds, nfeeds, fetches, nfetches, targets, ntargets, st);
    if (!p) return NULL;
    p->feeds = rc_malloc((size_t)(nfeeds + 1) * sizeof *p->feeds);
    p->fetches = rc_malloc((size_t)(nfetches + 1) * sizeof *p->fetches);
    p->targets = rc_malloc((size_t)(ntargets + 1) * sizeof *p->targets);
    if (!p->feeds || !p->fetches || !p->targets || !RC_GROW(s->plans, s->capplans, s->nplans + 1)) {
        rc_plan_free(p);
        rc_oom(st);
        return NULL;
    }
    if (nfeeds) memcpy(p->feeds, feeds, (size_t)nfeeds * sizeof *feeds);
    if (nfetches) memcpy(p->fetches, fetches, (size_t)nfetches * sizeof *fetches);
    if (ntargets) memcpy(p->targets, targets, (size_t)ntargets * sizeof *targets);
    p->nfeeds = nfeeds;
    p->nfetches = nfetches;
    p->ntargets = ntargets;
    s->plans[s->nplans++] = p;
    return p;
}

/* Python's shape form for feed errors: "(2, 3)". */
static const char *pyshape(recur_shape s, char *buf, size_t cap) { return recur_shape_str(s, buf, cap); }

static recur_code check_feed(recur_session *s, const recur_feed *f, recur_status *st)
{
    if (!f->tensor) return rc_err(st, RECUR_INVALID_ARGUMENT, "Feed tensor is NULL");
    if (f->tensor->op->g != s->g)
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "Cannot interpret feed_dict key as Tensor: Tensor %s is not an element of this graph.",
                      f->tensor->name);
    if (f->tensor->op->frame)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Tensor %s is inside a loop body and cannot be fed",
                      f->tensor->name);
    if (!f->value) return rc_err(st, RECUR_INVALID_ARGUMENT, "Feed value for %s is NULL", f->tensor->name);
    if (f->value->dtype != f->tensor->dtype)
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "Cannot feed value of dtype %s for Tensor '%s', which has dtype %s",
                      recur_dtype_name(f->value->dtype), f->tensor->name, recur_dtype_name(f->tensor->dtype));
    if (!rc_shape_compatible(f->value->shape, f->tensor->shape)) {
        char a[128], b[128];
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "Cannot feed value of shape %s for Tensor '%s', which has shape '%s'",
                      pyshape(f->value->shape, a, sizeof a), f->tensor->name,
                      pyshape(f->tensor->shape, b, sizeof b));
    }
    return RECUR_OK;
}

static bool grow_run_tables(recur_session *s)
{
    size_t need = (size_t)s->g->ntensors + 1;
    if (need <= s->run_cap) return true;
    size_t nc = RC_MAX(need, s->run_cap * 2);
    recur_array **v = rc_realloc(s->run_vals, nc * sizeof *v);
    if (!v) return false;
    s->run_vals = v;
    int *r = rc_realloc(s->run_remaining, nc * sizeof *r);
    if (!r) return false;
    s->run_remaining = r;
    s->run_cap = nc;
    return true;
}

recur_code recur_session_run(recur_session *s, const recur_feed *feeds, int nfeeds,
                             recur_tensor *const *fetches, recur_array **outputs, int nfetches,
                             recur_op *const *targets, int ntargets, recur_status *st)
{
    recur_status_clear(st);
    for (int i = 0; outputs && i < nfetches; i++) outputs[i] = NULL;
    if (!s) return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_session_run: session is NULL");
    if (s->closed) return rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    if (nfeeds < 0 || nfetches < 0 || ntargets < 0 || (nfeeds && !feeds) ||
        (nfetches && (!fetches || !outputs)) || (ntargets && !targets))
        return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_session_run: inconsistent argument counts");
    if (!recur_graph_ok(s->g)) /* the error that made a fetch or target NULL comes first */
        return rc_err(st, recur_graph_code(s->g), "The graph holds an error: %s", recur_graph_message(s->g));
    for (int i = 0; i < nfeeds; i++) {
        recur_code c = check_feed(s, &feeds[i], st);
        if (c) return c;
        for (int j = 0; j < i; j++)
            if (feeds[j].tensor == feeds[i].tensor)
                return rc_err(st, RECUR_INVALID_ARGUMENT, "Tensor %s is fed twice", feeds[i].tensor->name);
    }
    for (int i = 0; i < nfetches; i++) {
        if (!fetches[i]) return rc_err(st, RECUR_INVALID_ARGUMENT, "Fetch %d is NULL", i);
        if (fetches[i]->op->g != s->g)
            return rc_err(st, RECUR_INVALID_ARGUMENT,
                          "Fetch argument %s cannot be interpreted as a Tensor. (Tensor %s is not an "
                          "element of this graph.)",
                          fetches[i]->name, fetches[i]->name);
        if (fetches[i]->op->frame)
            return rc_err(st, RECUR_INVALID_ARGUMENT,
                          "Tensor %s is inside a loop body; fetch the RNN's outputs or final state instead",
                          fetches[i]->name);
    }
    for (int i = 0; i < ntargets; i++) {
        if (!targets[i]) return rc_err(st, RECUR_INVALID_ARGUMENT, "Target %d is NULL", i);
        if (targets[i]->g != s->g)
            return rc_err(st, RECUR_INVALID_ARGUMENT, "Target %s is not an element of this graph.", targets[i]->name);
    }

    recur_tensor *fbuf[16];
    recur_tensor **fts = nfeeds <= 16 ? fbuf : rc_malloc((size_t)nfeeds * sizeof *fts);
    if (!fts) return rc_oom(st);
    for (int i = 0; i < nfeeds; i++) fts[i] = feeds[i].tensor;
    rc_plan *plan = find_plan(s, fts, nfeeds, fetches, nfetches, targets, ntargets, st);
    if (fts != fbuf) rc_free(fts);
    if (!plan) return recur_status_code(st) ? recur_status_code(st) : RECUR_INTERNAL;
    /* per-op state slots exist before any kernel runs (kernels may run on two threads) */
    if (!grow_run_tables(s) || !grow_op_state(s, s->g->nops + 1)) return rc_oom(st);

    s->run_count++;
    int blas = rc_blas_single_thread();
    unsigned fp = rc_fp_flush_denormals();
    recur_status local;
    recur_status_clear(&local);
    rc_run run = {.s = s, .vals = s->run_vals, .remaining = s->run_remaining,
                  .ntensors = s->g->ntensors, .st = st ? st : &local, .plan = plan};
    memset(run.vals, 0, (size_t)run.ntensors * sizeof *run.vals);
    memset(run.remaining, 0, (size_t)run.ntensors * sizeof *run.remaining);
    for (int i = 0; i < nfeeds; i++) run.vals[feeds[i].tensor->id] = (recur_array *)feeds[i].value;

    recur_code code = rc_plan_exec(&run, plan);
    for (int i = 0; code == RECUR_OK && i < nfetches; i++) {
        recur_array *a = run.vals[fetches[i]->id];
        if (!a) {
            code = rc_err(run.st, RECUR_FAILED_PRECONDITION, "Attempting to use uninitialized value %s",
                          rc_tensor_var(fetches[i]) ? rc_tensor_var(fetches[i])->name : fetches[i]->name);
            break;
        }
        if (a->pooled && a->refs == 1 && run.remaining[fetches[i]->id] == 1) {
            a->pooled = false;
            a->refs = 0;
            run.vals[fetches[i]->id] = NULL;
            run.remaining[fetches[i]->id] = 0;
            outputs[i] = a;
        } else {
            outputs[i] = recur_array_copy(a, NULL);
            if (!outputs[i]) code = rc_oom(run.st);
            rc_run_drop(&run, fetches[i]);
        }
    }
    /* Release whatever the run still holds (feeds are the caller's: not pooled). */
    for (int i = 0; i < plan->nuses; i++) {
        int id = plan->use_ids[i];
        if (run.vals[id]) rc_release(&s->pool, run.vals[id]);
        run.vals[id] = NULL;
        run.remaining[id] = 0;
    }
    if (code != RECUR_OK) {
        for (int i = 0; i < nfetches; i++) {
            recur_array_free(outputs[i]);
            outputs[i] = NULL;
        }
    }
    rc_fp_restore(fp);
    rc_blas_restore(blas);
    return code;
}

recur_code recur_session_run_target(recur_session *s, recur_op *target, recur_status *st)
{
    return recur_session_run(s, NULL, 0, NULL, NULL, 0, &target, 1, st);
}

recur_code recur_session_set_variable(recur_session *s, recur_tensor *var, const recur_array *value,
                                      recur_status *st)
{
    recur_status_clear(st);
    if (!s || !var || !value) return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_session_set_variable: NULL argument");
    if (s->closed) return rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    rc_variable *v = rc_tensor_var(var);
    if (!v || var->op->g != s->g)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "%s is not a variable of this session's graph", var->name);
    if (value->dtype != v->dtype)
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "tensor_name = %s; expected dtype %s does not equal original dtype %s", v->name,
                      recur_dtype_name(v->dtype), recur_dtype_name(value->dtype));
    if (!rc_shape_equal(value->shape, v->shape)) {
        char a[128], b[128];
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "Assign requires shapes of both tensors to match. lhs shape= %s rhs shape= %s (variable %s)",
                      rc_shape_debug(v->shape, a, sizeof a), rc_shape_debug(value->shape, b, sizeof b), v->name);
    }
    recur_array **slot = rc_session_var_slot(s, v);
    if (!slot) return rc_oom(st);
    atomic_fetch_add_explicit(&s->var_epoch, 1, memory_order_relaxed);
    if (*slot) {
        if ((*slot)->nbytes) memcpy((*slot)->data, value->data, value->nbytes);
        return RECUR_OK;
    }
    recur_array *c = recur_array_copy(value, st);
    if (!c) return recur_status_code(st);
    *slot = c;
    return RECUR_OK;
}

recur_array *recur_session_get_variable(recur_session *s, recur_tensor *var, recur_status *st)
{
    recur_status_clear(st);
    if (!s || !var) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_session_get_variable: NULL argument");
        return NULL;
    }
    /* Closing freed the values; say so rather than "uninitialized" (as every other call does). */
    if (s->closed) {
        rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
        return NULL;
    }
    rc_variable *v = rc_tensor_var(var);
    if (!v || var->op->g != s->g) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "%s is not a variable of this session's graph", var->name);
        return NULL;
    }
    if ((size_t)v->index >= s->capvars || !s->vars[v->index]) {
        rc_err(st, RECUR_FAILED_PRECONDITION, "Attempting to use uninitialized value %s", v->name);
        return NULL;
    }
    return recur_array_copy(s->vars[v->index], st);
}

bool recur_session_variable_initialized(recur_session *s, recur_tensor *var)
{
    rc_variable *v = rc_tensor_var(var);
    return s && v && var->op->g == s->g && (size_t)v->index < s->capvars && s->vars[v->index];
}
