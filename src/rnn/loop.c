/*
 * loop.c - the RNN loop op: a step sub-graph built once by the cell (a loop frame) and run over
 * time, with sequence_length semantics (outputs zero past each row's length, state copied
 * through). For built-in cells the same op runs a fused whole-sequence kernel instead.
 *
 * Inputs:  [x [T,B,D], (seq_len [B]), init_state..., captures...]
 * Outputs: [outputs [T,B,O], final_state...]
 * (x [B,T,D] and outputs [B,T,O] when the loop is batch-major.)
 */
#include "exec/exec.h"
#include "rnn/rnn_impl.h"

/* ================================================================== LoopVar */

static bool loop_var_shape(recur_graph *g, recur_op *op)
{
    if (!rc_set_outputs(op, 1)) return rc_goom(g), false;
    rc_set_output(op, 0, (recur_dtype)op->attr.i[0], op->attr.shape);
    return true;
}

static recur_code loop_var_kernel(rc_kctx *k)
{
    return rc_kerr(k, RECUR_INTERNAL, "Loop variable %s evaluated outside its loop", k->op->name);
}

recur_tensor *rc_loop_var(recur_graph *g, recur_dtype dt, recur_shape s)
{
    rc_attrs a = {.shape = s};
    a.i[0] = dt;
    return rc_op1(g, RC_OP_LOOP_VAR, NULL, 0, NULL, &a);
}

const rc_op_def rc_def_loop_var = {.type = "LoopVar", .name = NULL, .min_inputs = 0, .max_inputs = 0, .flags = RC_OPF_NO_GRAD, .shape = loop_var_shape, .forward = loop_var_kernel, .reference = NULL, .grad = NULL};

/* ================================================================== shape */

static bool rnn_shape(recur_graph *g, recur_op *op)
{
    rc_loop *L = op->attr.ptr;
    recur_tensor *x = op->inputs[0];
    if (!rc_set_outputs(op, 1 + L->nstate)) return rc_goom(g), false;
    int64_t T = x->shape.dims[L->batch_major], B = x->shape.dims[!L->batch_major], O = L->out->shape.dims[1];
    rc_set_output(op, 0, L->out->dtype, L->batch_major ? RECUR_SHAPE(B, T, O) : RECUR_SHAPE(T, B, O));
    for (int i = 0; i < L->nstate; i++)
        rc_set_output(op, 1 + i, L->state_out[i]->dtype, RECUR_SHAPE(B, L->state_out[i]->shape.dims[1]));
    return true;
}

/* ================================================================== kernel */

static void release_hist(recur_session *s, rc_loop_state *ls)
{
    for (size_t i = 0; i < (size_t)ls->hist_steps * (size_t)ls->hist_nsaved; i++) rc_release(&s->pool, ls->hist[i]);
    ls->hist_steps = 0;
}

/* The session state is freed with the session; its pooled history arrays are freed with the
 * pool (they are only referenced here). */
static void free_loop_state(void *p)
{
    rc_loop_state *s = p;
    if (!s) return;
    rc_plan_free(s->plan);
    rc_plan_free(s->train_plan);
    for (size_t i = 0; i < (size_t)s->hist_steps * (size_t)s->hist_nsaved; i++)
        if (s->hist[i] && s->hist[i]->pooled && --s->hist[i]->refs == 0) recur_array_free(s->hist[i]);
    rc_free(s->hist);
    rc_free(s->fused_hist);
    rc_arena_free(&s->scratch);
    for (size_t i = 0; i < RC_ARRAY_LEN(s->cache); i++) rc_aligned_free(s->cache[i].mem);
    rc_free(s);
}

rc_loop_state *rc_loop_state_of(rc_kctx *k)
{
    void **slot = rc_kstate(k);
    if (!slot) return NULL;
    if (!*slot) {
        *slot = rc_calloc(1, sizeof(rc_loop_state));
        if (!*slot) return NULL;
        rc_kstate_set_free(k, free_loop_state);
    }
    return *slot;
}

static rc_plan *body_plan(rc_kctx *k, rc_loop *L, rc_loop_state *ls, bool train)
{
    rc_plan **pp = train ? &ls->train_plan : &ls->plan;
    if (*pp) return *pp;
    int nf = 1 + L->nstate + (train ? (int)L->nsaved : 0);
    recur_tensor **feeds = rc_malloc((size_t)(1 + L->nstate) * sizeof *feeds), **fetches = rc_malloc((size_t)nf * sizeof *fetches);
    if (feeds && fetches) {
        feeds[0] = L->x_in;
        fetches[0] = L->out;
        for (int i = 0; i < L->nstate; i++) {
            feeds[1 + i] = L->state_in[i];
            fetches[1 + i] = L->state_out[i];
        }
        for (size_t i = 0; train && i < L->nsaved; i++) fetches[1 + L->nstate + i] = L->saved[i];
        *pp = rc_plan_build(k->op->g, L->frame, feeds, 1 + L->nstate, fetches, nf, NULL, 0, k->st);
    }
    rc_free(feeds);
    rc_free(fetches);
    return *pp;
}

/* Checks of the run-time inputs; sets T, B and the number of steps to run. */
static recur_code check_inputs(rc_kctx *k, rc_loop *L, int64_t *T, int64_t *B, int64_t *steps)
{
    recur_array *x = k->in[0];
    char s1[128], s2[128];
    if (x->shape.rank != 3)
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "Expected the RNN input to have rank 3, got shape %s",
                       rc_shape_debug(x->shape, s1, sizeof s1));
    *T = x->shape.dims[L->batch_major];
    *B = x->shape.dims[!L->batch_major];
    if (x->shape.dims[2] != L->x_in->shape.dims[1])
        return rc_kerr(k, RECUR_INVALID_ARGUMENT, "The RNN input has depth %lld but the cell was built for depth %lld",
                       (long long)x->shape.dims[2], (long long)L->x_in->shape.dims[1]);
    *steps = *T;
    if (L->has_len) {
        recur_array *len = k->in[1];
        if (len->shape.rank != 1 || len->shape.dims[0] != *B)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                           "Expected shape for Tensor %s is [%lld] but saw shape: %s (sequence_length must be a "
                           "vector of length batch_size)",
                           k->op->inputs[1]->name, (long long)*B, rc_shape_debug(len->shape, s1, sizeof s1));
        int64_t mx = 0;
        for (int64_t b = 0; b < *B; b++) {
            int64_t l = (int64_t)rc_array_get(len, b);
            if (l < 0 || l > *T)
                return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                               "sequence_length[%lld] = %lld is outside [0, %lld] (the input has %lld time steps)",
                               (long long)b, (long long)l, (long long)*T, (long long)*T);
            mx = RC_MAX(mx, l);
        }
        *steps = mx;
    }
    if (*B == 0) *steps = 0; /* no rows: no step runs (empty arrays have no data to copy) */
    int s0 = L->has_len ? 2 : 1;
    for (int i = 0; i < L->nstate; i++) {
        recur_array *st = k->in[s0 + i];
        int64_t want = L->state_in[i]->shape.dims[1];
        if (st->shape.rank != 2 || st->shape.dims[0] != *B || st->shape.dims[1] != want)
            return rc_kerr(k, RECUR_INVALID_ARGUMENT,
                           "Initial state %d has shape %s but the input has batch size %lld and the cell's state %d "
                           "has size %lld (expected %s)",
                           i, rc_shape_debug(st->shape, s1, sizeof s1), (long long)*B, i, (long long)want,
                           rc_shape_debug(RECUR_SHAPE(*B, want), s2, sizeof s2));
    }
    return RECUR_OK;
}

/* Copy row b of `src` into row b of `dst` (both [B, n]). */
static void copy_row(recur_array *dst, const recur_array *src, int64_t b)
{
    size_t row = src->nbytes / (size_t)src->shape.dims[0];
    memcpy((char *)dst->data + (size_t)b * row, (const char *)src->data + (size_t)b * row, row);
}

void rc_loop_release(rc_run *run, recur_tensor *t)
{
    if (run->vals[t->id]) rc_release(&run->s->pool, run->vals[t->id]);
    run->vals[t->id] = NULL;
    run->remaining[t->id] = 0;
}

/* Release every value a failed body step still holds. */
void rc_loop_abort_step(rc_run *run, const rc_plan *plan)
{
    for (int i = 0; i < plan->nops; i++)
        for (int j = 0; j < plan->ops[i]->noutputs; j++) rc_loop_release(run, &plan->ops[i]->outputs[j]);
}

/* A pooled copy of `a` (the loop's state buffers change in place; the body must see a stable
 * value, also when saved for the gradient). */
static recur_array *pooled_copy(rc_run *run, const recur_array *a, const void *src)
{
    recur_array *c = rc_pool_get(&run->s->pool, a->dtype, a->shape);
    if (c && c->nbytes) memcpy(c->data, src ? src : a->data, c->nbytes);
    return c;
}

static recur_code loop_path(rc_kctx *k, rc_loop *L, rc_loop_state *ls, bool train, int64_t T, int64_t B,
                            int64_t steps, recur_array *out, recur_array **fin)
{
    rc_run *run = k->run;
    rc_plan *plan = body_plan(k, L, ls, train);
    if (!plan) return recur_status_code(k->st) ? recur_status_code(k->st) : rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    recur_array *x = k->in[0], *len = L->has_len ? k->in[1] : NULL;
    int64_t D = x->shape.dims[2];
    /* row b of step t: at (t B + b) rows, or (b T + t) when batch-major */
    size_t xr = (size_t)D * recur_dtype_size(x->dtype), r = out->nbytes / (size_t)RC_MAX(T * B, 1);
    int64_t bstride = L->batch_major ? T : 1, tstride = L->batch_major ? 1 : B;
    if (train) {
        size_t need = (size_t)steps * L->nsaved;
        if (need > ls->hist_cap) {
            recur_array **h = rc_realloc(ls->hist, need * sizeof *h);
            if (!h) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
            ls->hist = h;
            ls->hist_cap = need;
        }
        ls->hist_nsaved = (int)L->nsaved;
    }
    for (int64_t t = 0; t < steps; t++) {
        recur_array *xt = rc_pool_get(&run->s->pool, x->dtype, RECUR_SHAPE(B, D));
        if (!xt) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        if (!L->batch_major) memcpy(xt->data, (char *)x->data + (size_t)t * B * xr, (size_t)B * xr);
        else
            for (int64_t b = 0; b < B; b++) memcpy((char *)xt->data + (size_t)b * xr, (char *)x->data + (size_t)(b * T + t) * xr, xr);
        rc_run_set(run, L->x_in, xt);
        for (int i = 0; i < L->nstate; i++) {
            recur_array *sc = pooled_copy(run, fin[i], NULL);
            if (!sc) {
                for (int j = 0; j < i; j++) rc_loop_release(run, L->state_in[j]);
                rc_loop_release(run, L->x_in);
                return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
            }
            rc_run_set(run, L->state_in[i], sc);
        }
        recur_code c = rc_plan_exec(run, plan);
        if (c == RECUR_OK) {
            recur_array *o = run->vals[L->out->id];
            for (int64_t b = 0; b < B; b++)
                if (!len || t < (int64_t)rc_array_get(len, b))
                    memcpy((char *)out->data + (size_t)(b * bstride + t * tstride) * r, (char *)o->data + (size_t)b * r, r);
            for (int i = 0; i < L->nstate; i++) {
                recur_array *ns = run->vals[L->state_out[i]->id];
                if (!len) {
                    memcpy(fin[i]->data, ns->data, fin[i]->nbytes);
                } else {
                    for (int64_t b = 0; b < B; b++)
                        if (t < (int64_t)rc_array_get(len, b)) copy_row(fin[i], ns, b);
                }
            }
            for (size_t i = 0; train && i < L->nsaved; i++) {
                recur_array *a = run->vals[L->saved[i]->id];
                if (a->pooled) a->refs++;
                ls->hist[(size_t)t * L->nsaved + i] = a;
                rc_run_drop(run, L->saved[i]);
            }
            if (train) ls->hist_steps = (int)t + 1;
            rc_run_drop(run, L->out);
            for (int i = 0; i < L->nstate; i++) rc_run_drop(run, L->state_out[i]);
        } else {
            rc_loop_abort_step(run, plan);
        }
        rc_loop_release(run, L->x_in);
        for (int i = 0; i < L->nstate; i++) rc_loop_release(run, L->state_in[i]);
        if (c != RECUR_OK) return c;
    }
    return RECUR_OK;
}

/* Does this run also run a gradient of the loop (so the forward must keep its history)? */
static bool training(rc_kctx *k, rc_loop *L)
{
    for (size_t i = 0; i < L->ngrads; i++)
        if (rc_plan_contains(k->run->plan, L->grads[i])) return true;
    return false;
}

/* The output rows [B, T, O] (or [T, B, O]) of steps at or past each row's length, zeroed
 * (lengths already checked to lie in [0, T]). */
static void zero_past_lengths(recur_array *out, const recur_array *len, bool batch_major, int64_t T, int64_t B)
{
    size_t row = (size_t)(out->nbytes / (size_t)(T * B));
    char *o = out->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t l = (int64_t)rc_array_get(len, b);
        if (batch_major) memset(o + (size_t)(b * T + l) * row, 0, (size_t)(T - l) * row);
        else
            for (int64_t t = l; t < T; t++) memset(o + (size_t)(t * B + b) * row, 0, row);
    }
}

static recur_code rnn_kernel(rc_kctx *k)
{
    rc_loop *L = k->op->attr.ptr;
    int64_t T = 0, B = 0, steps = 0;
    recur_code c = check_inputs(k, L, &T, &B, &steps);
    if (c) return c;
    rc_loop_state *ls = rc_loop_state_of(k);
    if (!ls) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    release_hist(k->run->s, ls);
    recur_array *x = k->in[0];
    int64_t O = L->out->shape.dims[1];
    recur_array *out = rc_kout(k, 0, L->out->dtype, L->batch_major ? RECUR_SHAPE(B, T, O) : RECUR_SHAPE(T, B, O));
    if (!out) return recur_status_code(k->st);
    bool fused = L->fused.nlayers > 0 && k->run->s->opts.rnn_path != RECUR_RNN_LOOP && x->dtype == RECUR_F32;
    /* Rows past their length stay zero. The fused kernels write every other output element
     * (without lengths, all of them), so they get only those rows zeroed. (An empty array has
     * no data pointer.) */
    if (out->nbytes && !fused) memset(out->data, 0, out->nbytes);
    else if (out->nbytes && L->has_len) zero_past_lengths(out, k->in[1], L->batch_major, T, B);
    recur_array *fin[RECUR_MAX_STATE];
    int s0 = L->has_len ? 2 : 1;
    for (int i = 0; i < L->nstate; i++) {
        fin[i] = rc_kout(k, 1 + i, L->state_out[i]->dtype, k->in[s0 + i]->shape);
        if (!fin[i]) return recur_status_code(k->st);
        if (fin[i]->nbytes) memcpy(fin[i]->data, k->in[s0 + i]->data, fin[i]->nbytes);
    }
    bool train = training(k, L);
    ls->steps = steps;
    ls->fused_ran = fused;
    if (ls->fused_ran) {
        float *hist = NULL;
        if (train) {
            size_t need = rc_fused_hist_floats(&L->fused, T, B);
            if (need > ls->fused_cap) {
                rc_free(ls->fused_hist);
                ls->fused_cap = 0;
                ls->fused_hist = rc_malloc(need * sizeof(float));
                if (!ls->fused_hist) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
                ls->fused_cap = need;
            }
            hist = ls->fused_hist;
        }
        return rc_fused_forward(k, &L->fused, x, L->has_len ? k->in[1] : NULL, fin, out, hist, &ls->scratch, ls->cache);
    }
    return loop_path(k, L, ls, train, T, B, steps, out, fin);
}

/* The fused path touches only its inputs, outputs and own state: it may run next to another. */
static bool rnn_concurrent(rc_run *run, recur_op *op)
{
    rc_loop *L = op->attr.ptr;
    return L->fused.nlayers > 0 && run->s->opts.rnn_path != RECUR_RNN_LOOP && op->inputs[0]->dtype == RECUR_F32;
}

const rc_op_def rc_def_rnn = {.type = "RnnLoop", .name = "rnn_loop", .min_inputs = 1, .max_inputs = -1, .shape = rnn_shape,
                              .forward = rnn_kernel, .grad = rc_grad_rnn, .concurrent = rnn_concurrent};

/* ================================================================== building */

static void free_loop(void *p)
{
    rc_loop *L = p;
    if (!L) return;
    rc_free(L->state_in);
    rc_free(L->state_out);
    rc_free(L->grads);
    rc_free(L->saved);
    rc_free(L);
}

void rc_free_frame(void *p)
{
    rc_frame *f = p;
    if (!f) return;
    rc_free(f->captures);
    rc_free(f->saved);
    rc_free(f->name);
    rc_free(f);
}

static int find_input(recur_tensor *const *in, int n, int from, const recur_tensor *t)
{
    for (int i = from; i < n; i++)
        if (in[i] == t) return i;
    return -1;
}

/* Describe one built-in layer for the fused kernels; false when it cannot be fused. */
static bool fuse_layer(const recur_cell *c, recur_tensor *const *in, int n, int first, rc_fused_layer *l)
{
    memset(l, 0, sizeof *l);
    switch (c->kind) {
    case RC_CELL_BASIC_RNN: l->kind = RC_FUSED_RNN; break;
    case RC_CELL_BASIC_LSTM:
    case RC_CELL_LSTM: l->kind = RC_FUSED_LSTM; break;
    case RC_CELL_GRU: l->kind = RC_FUSED_GRU; break;
    case RC_CELL_GRU_V2: l->kind = RC_FUSED_GRU_V2; break;
    default: return false;
    }
    if (!c->built || c->dtype != RECUR_F32) return false;
    l->in = c->input_depth;
    l->units = c->units;
    l->proj = c->kind == RC_CELL_LSTM ? c->num_proj : 0;
    l->act = c->act;
    l->forget_bias = c->forget_bias;
    l->peepholes = c->kind == RC_CELL_LSTM && c->peepholes;
    l->cell_clip = c->kind == RC_CELL_LSTM ? (float)c->cell_clip : 0;
    l->proj_clip = c->kind == RC_CELL_LSTM ? (float)c->proj_clip : 0;
    l->state_concat = (c->kind == RC_CELL_BASIC_LSTM || c->kind == RC_CELL_LSTM) && !c->state_tuple;
    l->nstate = rc_cell_state_count(c);
    l->nw = c->nvars;
    for (int i = 0; i < c->nvars; i++) {
        l->w[i] = find_input(in, n, first, c->vars[i]);
        if (l->w[i] < 0) return false;
    }
    return true;
}

static void describe_fused(const recur_cell *cell, recur_tensor *const *in, int n, int first, rc_fused *f)
{
    memset(f, 0, sizeof *f);
    if (cell->kind == RC_CELL_MULTI) {
        if (!cell->state_tuple || cell->ncells > (int)RC_ARRAY_LEN(f->layers)) return;
        int st = 0;
        for (int i = 0; i < cell->ncells; i++) {
            if (!fuse_layer(cell->cells[i], in, n, first, &f->layers[i])) return;
            f->layers[i].state0 = st;
            st += f->layers[i].nstate;
        }
        f->nlayers = cell->ncells;
    } else if (fuse_layer(cell, in, n, first, &f->layers[0])) {
        f->nlayers = 1;
    }
}

/* Make sure a body output is produced inside the frame (so the loop can hand it over). */
static recur_tensor *frame_local(recur_graph *g, rc_frame *f, recur_tensor *t)
{
    return t && t->op->frame != f ? recur_identity(g, t, NULL) : t;
}

recur_op *rc_rnn_loop(recur_graph *g, recur_cell *cell, recur_tensor *x, recur_tensor *seq_len,
                      recur_tensor *const *init, int nstate, bool batch_major)
{
    rc_frame *fr = rc_calloc(1, sizeof *fr);
    rc_loop *L = rc_calloc(1, sizeof *L);
    if (!fr || !L) {
        rc_free(fr);
        rc_free(L);
        return rc_goom(g);
    }
    if (!rc_graph_own(g, fr, rc_free_frame) || !rc_graph_own(g, L, free_loop)) return rc_goom(g);
    L->state_in = rc_calloc((size_t)nstate, sizeof *L->state_in);
    L->state_out = rc_calloc((size_t)nstate, sizeof *L->state_out);
    if (!L->state_in || !L->state_out) return rc_goom(g);
    L->frame = fr;
    L->nstate = nstate;
    L->has_len = seq_len != NULL;
    L->batch_major = batch_major;
    fr->parent = g->frame;

    size_t depth = rc_scope_depth(g);
    const char *ns = recur_name_scope_push(g, "while");
    if (!ns) return NULL;
    if (!(fr->name = rc_strdup(ns))) {
        rc_scope_unwind(g, depth);
        return rc_goom(g);
    }
    rc_frame *saved = g->frame;
    g->frame = fr;
    int64_t B = x->shape.dims[!batch_major];
    L->x_in = rc_loop_var(g, x->dtype, RECUR_SHAPE(B, x->shape.dims[2]));
    for (int i = 0; i < nstate; i++) L->state_in[i] = rc_loop_var(g, init[i]->dtype, RECUR_SHAPE(B, init[i]->shape.dims[1]));
    recur_tensor *out = recur_graph_ok(g) ? rc_cell_call(g, cell, L->x_in, L->state_in, L->state_out) : NULL;
    if (out) {
        L->out = frame_local(g, fr, out);
        for (int i = 0; i < nstate; i++) L->state_out[i] = frame_local(g, fr, L->state_out[i]);
    }
    g->frame = saved;
    rc_scope_unwind(g, depth);
    if (!out || !recur_graph_ok(g)) return NULL;

    int n = 1 + (seq_len ? 1 : 0) + nstate + (int)fr->ncaptures;
    recur_tensor **in = rc_malloc((size_t)n * sizeof *in);
    if (!in) return rc_goom(g);
    int k = 0;
    in[k++] = x;
    if (seq_len) in[k++] = seq_len;
    for (int i = 0; i < nstate; i++) in[k++] = init[i];
    L->first_capture = k;
    L->ncaptures = (int)fr->ncaptures;
    for (size_t i = 0; i < fr->ncaptures; i++) in[k++] = fr->captures[i];
    describe_fused(cell, in, n, L->first_capture, &L->fused);
    L->fused.batch_major = batch_major;
    rc_attrs a = {.ptr = L};
    a.i[0] = L->has_len;
    a.i[1] = nstate;
    recur_op *op = rc_op_new(g, RC_OP_RNN, in, n, NULL, &a);
    rc_free(in);
    return op;
}
