/*
 * loop_grad.c - back-propagation through time for the RNN loop op. The gradient builder
 * differentiates the loop's step sub-graph into a backward step sub-graph (its own frame, which
 * reads the forward step's values saved per step), and an RnnLoopGrad op runs it in reverse
 * time, or runs the fused backward kernels when the forward ran fused.
 *
 * RnnLoopGrad inputs:  [fwd outputs, d_outputs, d_final_state..., <the forward op's inputs:
 *                       x, (seq_len), init_state..., captures...>, backward captures...]
 * RnnLoopGrad outputs: [d_x, d_init_state..., d_capture...]
 * (x, the outputs and their gradients in the forward loop's layout: [T, B, .] or [B, T, .].)
 */
#include "exec/exec.h"
#include "rnn/rnn_impl.h"

bool rc_build_gradients(recur_graph *g, rc_frame *src, recur_tensor *const *ys, int ny, recur_tensor *const *xs, int nx,
                        recur_tensor *const *grad_ys, recur_tensor **dxs);
recur_tensor *rc_zeros_batch(recur_graph *g, recur_dtype dt, recur_shape s, int dim, recur_tensor *like, int like_dim);

#define FWD_INPUTS(L) (2 + (L)->nstate)

/* ================================================================== shape */

static bool rnn_grad_shape(recur_graph *g, recur_op *op)
{
    rc_loop_grad *G = op->attr.ptr;
    rc_loop *L = G->fwd;
    int fo = FWD_INPUTS(L), n = L->nstate;
    if (!rc_set_outputs(op, 1 + n + L->ncaptures)) return rc_goom(g), false;
    recur_tensor *x = op->inputs[fo];
    rc_set_output(op, 0, x->dtype, x->shape);
    int s0 = fo + (L->has_len ? 2 : 1);
    for (int i = 0; i < n; i++) rc_set_output(op, 1 + i, op->inputs[s0 + i]->dtype, op->inputs[s0 + i]->shape);
    for (int j = 0; j < L->ncaptures; j++) {
        recur_tensor *c = op->inputs[fo + L->first_capture + j];
        rc_set_output(op, 1 + n + j, c->dtype, c->shape);
    }
    return true;
}

/* ================================================================== kernel */

typedef struct grad_state {
    rc_plan *plan;
    rc_arena scratch;
} grad_state;

static void free_grad_state(void *p)
{
    grad_state *s = p;
    if (!s) return;
    rc_plan_free(s->plan);
    rc_arena_free(&s->scratch);
    rc_free(s);
}

static grad_state *grad_state_of(rc_kctx *k)
{
    void **slot = rc_kstate(k);
    if (!slot) return NULL;
    if (!*slot) {
        *slot = rc_calloc(1, sizeof(grad_state));
        if (!*slot) return NULL;
        rc_kstate_set_free(k, free_grad_state);
    }
    return *slot;
}

static rc_plan *backward_plan(rc_kctx *k, rc_loop_grad *G)
{
    grad_state *gs = grad_state_of(k);
    if (!gs) return NULL;
    if (gs->plan) return gs->plan;
    rc_loop *L = G->fwd;
    int n = L->nstate, nf = 0;
    recur_tensor **feeds = rc_malloc((size_t)(1 + n) * sizeof *feeds);
    recur_tensor **fetches = rc_malloc((size_t)(1 + n + L->ncaptures) * sizeof *fetches);
    if (feeds && fetches) {
        feeds[0] = G->d_out_in;
        fetches[nf++] = G->d_x_out;
        for (int i = 0; i < n; i++) {
            feeds[1 + i] = G->d_state_in[i];
            fetches[nf++] = G->d_state_out[i];
        }
        for (int j = 0; j < L->ncaptures; j++)
            if (G->d_cap_out[j]) fetches[nf++] = G->d_cap_out[j];
        gs->plan = rc_plan_build(k->op->g, G->frame, feeds, 1 + n, fetches, nf, NULL, 0, k->st);
    }
    rc_free(feeds);
    rc_free(fetches);
    return gs->plan;
}

static int saved_index(const rc_loop *L, const recur_tensor *t)
{
    for (size_t i = 0; i < L->nsaved; i++)
        if (L->saved[i] == t) return (int)i;
    return -1;
}

/* Copy of rows [B, n] of `src` (row b at src + b * stride rows) with the rows past their length
 * at step t zeroed. */
static recur_array *masked_copy(rc_run *run, recur_dtype dt, recur_shape shape, const void *src, int64_t stride,
                                const recur_array *len, int64_t t)
{
    recur_array *c = rc_pool_get(&run->s->pool, dt, shape);
    if (!c) return NULL;
    int64_t B = shape.dims[0];
    size_t row = c->nbytes / (size_t)(B ? B : 1);
    for (int64_t b = 0; b < B; b++) {
        char *dst = (char *)c->data + (size_t)b * row;
        if (len && t >= (int64_t)rc_array_get(len, b)) memset(dst, 0, row);
        else memcpy(dst, (const char *)src + (size_t)(b * stride) * row, row);
    }
    return c;
}

static void add_into(recur_array *acc, const recur_array *a)
{
    if (acc->dtype == RECUR_F32) {
        float *p = acc->data;
        const float *q = a->data;
        for (int64_t i = 0; i < acc->size; i++) p[i] += q[i];
    } else {
        for (int64_t i = 0; i < acc->size; i++) rc_array_set(acc, i, rc_array_get(acc, i) + rc_array_get(a, i));
    }
}

static recur_code generic_backward(rc_kctx *k, rc_loop_grad *G, rc_loop_state *ls, recur_array *dX, recur_array **dS,
                                   recur_array **dC)
{
    rc_run *run = k->run;
    rc_loop *L = G->fwd;
    int n = L->nstate, fo = FWD_INPUTS(L);
    recur_array *dout = k->in[1], *len = L->has_len ? k->in[fo + 1] : NULL;
    int64_t T = dout->shape.dims[L->batch_major], B = dout->shape.dims[!L->batch_major], O = dout->shape.dims[2];
    rc_plan *plan = backward_plan(k, G);
    if (!plan) return recur_status_code(k->st) ? recur_status_code(k->st) : rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    /* row b of step t: at (t B + b) rows, or (b T + t) when batch-major */
    int64_t bstride = L->batch_major ? T : 1, tstride = L->batch_major ? 1 : B;
    size_t orow = (size_t)O * recur_dtype_size(dout->dtype), r = (size_t)dX->shape.dims[2] * recur_dtype_size(dX->dtype);
    for (int64_t t = ls->steps - 1; t >= 0; t--) {
        recur_array *d = masked_copy(run, dout->dtype, RECUR_SHAPE(B, O), (char *)dout->data + (size_t)(t * tstride) * orow,
                                     bstride, len, t);
        if (!d) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        rc_run_set(run, G->d_out_in, d);
        bool oom = false;
        for (int i = 0; i < n; i++) {
            recur_array *s = masked_copy(run, dS[i]->dtype, dS[i]->shape, dS[i]->data, 1, len, t);
            if (!s) oom = true;
            else rc_run_set(run, G->d_state_in[i], s);
        }
        for (size_t j = 0; !oom && j < G->frame->nsaved; j++) {
            recur_tensor *st = G->frame->saved[j];
            recur_array *a = ls->hist[(size_t)t * ls->hist_nsaved + (size_t)saved_index(L, st)];
            if (a->pooled) a->refs++;
            rc_run_set(run, st, a);
        }
        recur_code c = oom ? rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory") : rc_plan_exec(run, plan);
        if (c == RECUR_OK) {
            recur_array *dx = run->vals[G->d_x_out->id];
            for (int64_t b = 0; b < B; b++)
                if (!len || t < (int64_t)rc_array_get(len, b))
                    memcpy((char *)dX->data + (size_t)(b * bstride + t * tstride) * r, (char *)dx->data + (size_t)b * r, r);
            for (int i = 0; i < n; i++) {
                recur_array *ds = run->vals[G->d_state_out[i]->id];
                size_t sr = ds->nbytes / (size_t)(B ? B : 1);
                for (int64_t b = 0; b < B; b++)
                    if (!len || t < (int64_t)rc_array_get(len, b))
                        memcpy((char *)dS[i]->data + (size_t)b * sr, (char *)ds->data + (size_t)b * sr, sr);
            }
            for (int j = 0; j < L->ncaptures; j++)
                if (G->d_cap_out[j]) add_into(dC[j], run->vals[G->d_cap_out[j]->id]);
            rc_run_drop(run, G->d_x_out);
            for (int i = 0; i < n; i++) rc_run_drop(run, G->d_state_out[i]);
            for (int j = 0; j < L->ncaptures; j++)
                if (G->d_cap_out[j]) rc_run_drop(run, G->d_cap_out[j]);
        } else if (!oom) {
            rc_loop_abort_step(run, plan);
        }
        rc_loop_release(run, G->d_out_in);
        for (int i = 0; i < n; i++) rc_loop_release(run, G->d_state_in[i]);
        for (size_t j = 0; j < G->frame->nsaved; j++) rc_loop_release(run, G->frame->saved[j]);
        if (c != RECUR_OK) return c;
    }
    return RECUR_OK;
}

static recur_code rnn_grad_kernel(rc_kctx *k)
{
    rc_loop_grad *G = k->op->attr.ptr;
    rc_loop *L = G->fwd;
    int n = L->nstate, fo = FWD_INPUTS(L), s0 = fo + (L->has_len ? 2 : 1);
    rc_loop_state *ls = rc_session_op_state(k->run->s, G->fwd_op);
    if (!ls || (!ls->fused_ran && ls->hist_steps != ls->steps) || !rc_plan_contains(k->run->plan, G->fwd_op))
        return rc_kerr(k, RECUR_FAILED_PRECONDITION,
                       "The gradient of RNN loop %s needs the loop's forward pass in the same run", G->fwd_op->name);
    recur_array *x = k->in[fo];
    recur_array *dX = rc_kout(k, 0, x->dtype, x->shape);
    if (!dX) return recur_status_code(k->st);
    /* an input no one differentiates (a fed batch, say): the fused backward skips its product */
    bool want_dx = rc_kout_needed(k, 0) || !ls->fused_ran;
    if (want_dx && dX->nbytes) memset(dX->data, 0, dX->nbytes); /* an empty array has no data pointer */
    recur_array *dS[RECUR_MAX_STATE], *dCbuf[16] = {0}; /* no allocation for the usual few captures */
    recur_array **dC = L->ncaptures < 16 ? dCbuf : rc_calloc((size_t)L->ncaptures + 1, sizeof *dC);
    if (!dC) return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    recur_code c = RECUR_OK;
    for (int i = 0; i < n && !c; i++) {
        dS[i] = rc_kout(k, 1 + i, k->in[s0 + i]->dtype, k->in[s0 + i]->shape);
        if (!dS[i]) c = recur_status_code(k->st);
        else if (dS[i]->nbytes) memcpy(dS[i]->data, k->in[2 + i]->data, dS[i]->nbytes);
    }
    for (int j = 0; j < L->ncaptures && !c; j++) {
        recur_array *cap = k->in[fo + L->first_capture + j];
        dC[j] = rc_kout(k, 1 + n + j, cap->dtype, cap->shape);
        if (!dC[j]) c = recur_status_code(k->st);
        else if (dC[j]->nbytes) memset(dC[j]->data, 0, dC[j]->nbytes);
    }
    if (!c) {
        if (ls->fused_ran) {
            grad_state *gs = grad_state_of(k);
            uint32_t read = 0;
            for (int i = 0; i < n; i++)
                if (rc_kout_needed(k, 1 + i)) read |= 1u << i;
            /* the history may be written over when this is the run's only gradient of the loop */
            size_t users = 0;
            for (size_t g = 0; g < L->ngrads; g++) users += rc_plan_contains(k->run->plan, L->grads[g]);
            c = gs ? rc_fused_backward(k, &L->fused, ls->fused_hist, users == 1, &k->in[fo], L->has_len ? k->in[fo + 1] : NULL, &k->in[s0],
                                       k->in[1], want_dx ? dX : NULL, dS, read, dC, L->first_capture, &gs->scratch)
                   : rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        } else {
            c = generic_backward(k, G, ls, dX, dS, dC);
        }
    }
    if (dC != dCbuf) rc_free(dC);
    return c;
}

/* Concurrent when the forward ran fused (its kernel then touches only its own data). */
static bool rnn_grad_concurrent(rc_run *run, recur_op *op)
{
    rc_loop_grad *G = op->attr.ptr;
    rc_loop_state *ls = rc_session_op_state(run->s, G->fwd_op);
    return ls && ls->fused_ran && rc_plan_contains(run->plan, G->fwd_op);
}

const rc_op_def rc_def_rnn_grad = {.type = "RnnLoopGrad", .name = "rnn_loop_grad", .min_inputs = 2, .max_inputs = -1,
                                   .flags = RC_OPF_NO_GRAD, .shape = rnn_grad_shape, .forward = rnn_grad_kernel,
                                   .concurrent = rnn_grad_concurrent};

/* ================================================================== building */

static void free_loop_grad(void *p)
{
    rc_loop_grad *G = p;
    if (!G) return;
    rc_free(G->d_state_in);
    rc_free(G->d_state_out);
    rc_free(G->d_cap_out);
    rc_free(G);
}

static bool add_saved(recur_graph *g, rc_loop *L, recur_tensor *t)
{
    for (size_t i = 0; i < L->nsaved; i++)
        if (L->saved[i] == t) return true;
    if (!RC_GROW(L->saved, L->capsaved, L->nsaved + 1)) return rc_goom(g), false;
    L->saved[L->nsaved++] = t;
    return true;
}

static recur_tensor *local(recur_graph *g, rc_frame *f, recur_tensor *t)
{
    return t && t->op->frame != f ? recur_identity(g, t, NULL) : t;
}

bool rc_grad_rnn(recur_graph *g, recur_op *op, recur_tensor *const *dy, recur_tensor **dx)
{
    rc_loop *L = op->attr.ptr;
    int n = L->nstate, nc = L->ncaptures;
    if (L->frame->parent || g->frame)
        return rc_gerr(g, RECUR_UNIMPLEMENTED, "Gradients of an RNN loop nested in another loop body are not supported (%s)",
                       op->name), false;
    rc_frame *bf = rc_calloc(1, sizeof *bf);
    rc_loop_grad *G = rc_calloc(1, sizeof *G);
    if (!bf || !G) {
        rc_free(bf);
        rc_free(G);
        return rc_goom(g), false;
    }
    if (!rc_graph_own(g, bf, rc_free_frame) || !rc_graph_own(g, G, free_loop_grad)) return rc_goom(g), false;
    G->d_state_in = rc_calloc((size_t)n + 1, sizeof *G->d_state_in);
    G->d_state_out = rc_calloc((size_t)n + 1, sizeof *G->d_state_out);
    G->d_cap_out = rc_calloc((size_t)nc + 1, sizeof *G->d_cap_out);
    recur_tensor **ys = rc_calloc((size_t)(1 + n), sizeof *ys), **gy = rc_calloc((size_t)(1 + n), sizeof *gy);
    recur_tensor **xs = rc_calloc((size_t)(1 + n + nc), sizeof *xs), **dxs = rc_calloc((size_t)(1 + n + nc), sizeof *dxs);
    recur_tensor **in = rc_calloc((size_t)(op->ninputs + 2 + n) + 1, sizeof *in);
    bool ok = G->d_state_in && G->d_state_out && G->d_cap_out && ys && gy && xs && dxs && in;
    if (!ok) rc_goom(g);
    G->fwd = L;
    G->fwd_op = op;
    G->frame = bf;
    bf->forward = L->frame;
    size_t depth = rc_scope_depth(g);
    const char *ns = ok ? recur_name_scope_push(g, "while") : NULL;
    if (ns && !(bf->name = rc_strdup(ns))) {
        rc_goom(g);
        ns = NULL;
    }
    if (ns) {
        g->frame = bf;
        G->d_out_in = rc_loop_var(g, L->out->dtype, L->out->shape);
        for (int i = 0; i < n; i++) G->d_state_in[i] = rc_loop_var(g, L->state_out[i]->dtype, L->state_out[i]->shape);
        ys[0] = L->out;
        gy[0] = G->d_out_in;
        xs[0] = L->x_in;
        for (int i = 0; i < n; i++) {
            ys[1 + i] = L->state_out[i];
            gy[1 + i] = G->d_state_in[i];
            xs[1 + i] = L->state_in[i];
        }
        for (int j = 0; j < nc; j++) xs[1 + n + j] = op->inputs[L->first_capture + j];
        ok = recur_graph_ok(g) && rc_build_gradients(g, L->frame, ys, 1 + n, xs, 1 + n + nc, gy, dxs);
        if (ok) {
            recur_shape xs_shape = L->x_in->shape;
            G->d_x_out = local(g, bf, dxs[0] ? dxs[0]
                                             : rc_zeros_batch(g, L->x_in->dtype, RECUR_SHAPE(-1, xs_shape.dims[1]), 0, G->d_out_in, 0));
            for (int i = 0; i < n; i++)
                G->d_state_out[i] = local(g, bf, dxs[1 + i] ? dxs[1 + i]
                                                            : rc_zeros_batch(g, L->state_in[i]->dtype,
                                                                             RECUR_SHAPE(-1, L->state_in[i]->shape.dims[1]), 0,
                                                                             G->d_out_in, 0));
            for (int j = 0; j < nc; j++) G->d_cap_out[j] = local(g, bf, dxs[1 + n + j]);
            ok = recur_graph_ok(g);
        }
        g->frame = NULL;
    }
    rc_scope_unwind(g, depth);
    ok = ok && ns;
    for (size_t i = 0; ok && i < bf->nsaved; i++) ok = add_saved(g, L, bf->saved[i]);
    recur_op *gop = NULL;
    if (ok) {
        int k = 0;
        in[k++] = &op->outputs[0];
        in[k++] = dy[0] ? dy[0] : recur_zeros_like(g, &op->outputs[0]);
        for (int i = 0; i < n; i++) in[k++] = dy[1 + i] ? dy[1 + i] : recur_zeros_like(g, &op->outputs[1 + i]);
        for (int i = 0; i < op->ninputs; i++) in[k++] = op->inputs[i];
        G->first_bcap = k;
        for (size_t i = 0; i < bf->ncaptures; i++) {
            recur_tensor **grown = rc_realloc(in, (size_t)(k + 2) * sizeof *in);
            if (!grown) {
                rc_goom(g);
                break;
            }
            in = grown;
            in[k++] = bf->captures[i];
        }
        rc_attrs a = {.ptr = G};
        if (recur_graph_ok(g)) gop = rc_op_new(g, RC_OP_RNN_GRAD, in, k, NULL, &a);
    }
    if (gop) {
        if (RC_GROW(L->grads, L->capgrads, L->ngrads + 1))
            L->grads[L->ngrads++] = gop;
        else
            gop = rc_goom(g);
    }
    if (gop) {
        int k = 0;
        dx[k++] = &gop->outputs[0];
        if (L->has_len) dx[k++] = NULL;
        for (int i = 0; i < n; i++) dx[k++] = &gop->outputs[1 + i];
        for (int j = 0; j < nc; j++) dx[k++] = G->d_cap_out[j] ? &gop->outputs[1 + n + j] : NULL;
    }
    rc_free(ys);
    rc_free(gy);
    rc_free(xs);
    rc_free(dxs);
    rc_free(in);
    return gop != NULL && recur_graph_ok(g);
}
