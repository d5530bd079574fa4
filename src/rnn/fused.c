/*
 * fused.c - whole-sequence kernels for the built-in cells (float32, time-major).
 *
 * Forward: the input projection for all steps as one GEMM, written straight into the gate
 * buffer; then per step one recurrent GEMM accumulated into that buffer and one pass over the
 * gates with vectorised activations (core/vmath). Rows are processed sorted by sequence length,
 * longest first, so step t works on the first n_t rows only (the rows still running); results
 * go back to the caller's order. Rows past their length keep their state and output zeros.
 * When a gradient will run, the gate buffer itself is the history the backward reads.
 *
 * Backward: per step only the pointwise pass and the recurrent dh GEMM (on the n_t running
 * rows; the others pass their state gradient through untouched); the weight, bias and input
 * gradients are a few large GEMMs over all steps at the end.
 *
 * Shapes: x [T, B, D]; kernels as the cells store them ([D+H, nG*H], input rows first);
 * outputs [T, B, O]; states [B, S]. History per layer, in blocks over steps [T][B][...]:
 *   RNN     h (after the activation)                               H
 *   LSTM    i, act(j), f, o | c before clipping | y before the projection clip   4H | H | P
 *   GRU     r, u | act(candidate) | h                              2H | H | H
 *   GRU v2  z, r, act(hh) | recurrent hh term | h                  3H | H | H
 */
#include "rnn/rnn_impl.h"
#include "core/gemm_packed.h"
#include "core/vmath.h"

#include <cblas.h>
#include <math.h>

#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))

/* ================================================================== helpers */

static void act_vec(recur_activation a, float *y, const float *x, int64_t n)
{
    switch (a) {
    case RECUR_ACT_SIGMOID: rc_vsigmoid(y, x, (size_t)n); break;
    case RECUR_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case RECUR_ACT_IDENTITY:
        if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        break;
    default: rc_vtanh(y, x, (size_t)n); break;
    }
}

/* d act(v)/dv from y = act(v), times g: out[i] = g[i] * act'(y[i]) */
HOT static void act_grad(recur_activation a, float *out, const float *g, const float *y, int64_t n)
{
    switch (a) {
    case RECUR_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) out[i] = g[i] * y[i] * (1 - y[i]);
        break;
    case RECUR_ACT_RELU:
        for (int64_t i = 0; i < n; i++) out[i] = y[i] > 0 ? g[i] : 0;
        break;
    case RECUR_ACT_IDENTITY:
        for (int64_t i = 0; i < n; i++) out[i] = g[i];
        break;
    default:
        for (int64_t i = 0; i < n; i++) out[i] = g[i] * (1 - y[i] * y[i]);
    }
}

static inline float clampf(float v, float c) { return c > 0 ? (v < -c ? -c : v > c ? c : v) : v; }

HOT static void clamp_vec(float *y, const float *x, int64_t n, float c)
{
    if (c <= 0) {
        if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < -c ? -c : x[i] > c ? c : x[i];
}

/* C[m,n] = beta*C + A[m,k] @ B[k,n] (B with leading dimension ldb, C with ldc) */
static void gemm_nn(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb, beta, C,
                    (int)ldc);
    else if (m && n && beta == 0)
        for (int64_t i = 0; i < m; i++) memset(C + i * ldc, 0, (size_t)n * sizeof *C);
}

/* C[m,n] = beta*C + A[m,k] @ B[n,k]^T */
static void gemm_nt(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb, beta, C,
                    (int)ldc);
    else if (m && n && beta == 0)
        for (int64_t i = 0; i < m; i++) memset(C + i * ldc, 0, (size_t)n * sizeof *C);
}

/* C[k,n] += A[m,k]^T @ B[m,n] */
static void gemm_tn_acc(int64_t k, int64_t n, int64_t m, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                        int64_t ldc)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)n, (int)m, 1.0f, A, (int)lda, B, (int)ldb, 1.0f, C,
                    (int)ldc);
}

/* out[rows, n] = x[rows, d] @ w[d, n] + bias (bias NULL: none) */
static void project(const float *x, int64_t rows, int64_t d, const float *w, int64_t n, const float *bias, float *out)
{
    if (bias)
        for (int64_t r = 0; r < rows; r++) memcpy(out + r * n, bias, (size_t)n * sizeof *out);
    gemm_nn(rows, n, d, x, d, w, n, bias ? 1.0f : 0.0f, out, n);
}

HOT static void colsum_acc(const float *g, int64_t rows, int64_t n, float *b)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) b[j] += g[r * n + j];
}

/* Sequence order: rows sorted by length (longest first); nact[t] rows run at step t. */
typedef struct seqinfo {
    int64_t T, B, steps;
    int64_t *perm;  /* sorted position -> caller's row; NULL when the order is the caller's */
    int64_t *nact;  /* [T] */
} seqinfo;

static bool seq_setup(seqinfo *s, const recur_array *x, const recur_array *len, rc_arena *ar)
{
    s->T = x->shape.dims[0];
    s->B = x->shape.dims[1];
    s->steps = s->T;
    s->perm = NULL;
    s->nact = rc_arena_alloc(ar, (size_t)(s->T + 1) * sizeof *s->nact, false);
    if (!s->nact) return false;
    if (!len) {
        for (int64_t t = 0; t < s->T; t++) s->nact[t] = s->B;
        return true;
    }
    int64_t *l = rc_arena_alloc(ar, (size_t)(s->B + 1) * sizeof *l, false);
    int64_t *p = rc_arena_alloc(ar, (size_t)(s->B + 1) * sizeof *p, false);
    if (!l || !p) return false;
    bool sorted = true;
    s->steps = 0;
    for (int64_t b = 0; b < s->B; b++) {
        l[b] = (int64_t)rc_array_get(len, b);
        s->steps = RC_MAX(s->steps, l[b]);
        if (b && l[b] > l[b - 1]) sorted = false;
    }
    /* stable counting sort by descending length */
    for (int64_t b = 0; b < s->B; b++) p[b] = b;
    if (!sorted) {
        int64_t *cnt = rc_arena_alloc(ar, (size_t)(s->T + 2) * sizeof *cnt, true);
        if (!cnt) return false;
        for (int64_t b = 0; b < s->B; b++) cnt[s->T - l[b]]++;
        for (int64_t v = 1; v <= s->T; v++) cnt[v] += cnt[v - 1];
        for (int64_t b = s->B - 1; b >= 0; b--) p[--cnt[s->T - l[b]]] = b;
        s->perm = p;
    }
    for (int64_t t = 0, n = s->B; t < s->T; t++) {
        while (n > 0 && l[p[n - 1]] <= t) n--;
        s->nact[t] = n;
    }
    return true;
}

/* dst[t, i, :] = src[t, perm[i], :] (to sorted order) or the reverse (from sorted order) for
 * the rows running at t; with zero_rest, other rows of dst are zeroed. */
static void permute_rows(const seqinfo *s, float *dst, const float *src, int64_t w, bool to_sorted, int64_t steps,
                         bool zero_rest)
{
    size_t rb = (size_t)w * sizeof(float);
    for (int64_t t = 0; t < steps; t++) {
        int64_t n = s->nact[t];
        for (int64_t i = 0; i < n; i++) {
            int64_t o = s->perm ? s->perm[i] : i;
            if (to_sorted)
                memcpy(dst + (t * s->B + i) * w, src + (t * s->B + o) * w, rb);
            else
                memcpy(dst + (t * s->B + o) * w, src + (t * s->B + i) * w, rb);
        }
        if (zero_rest && to_sorted) memset(dst + (t * s->B + n) * w, 0, (size_t)(s->B - n) * rb);
        if (zero_rest && !to_sorted)
            for (int64_t i = n; i < s->B; i++) memset(dst + (t * s->B + (s->perm ? s->perm[i] : i)) * w, 0, rb);
    }
}

/* Permute a [B, w] state in place (to or from sorted order) through scratch. */
static bool permute_state(const seqinfo *s, float *st, int64_t w, bool to_sorted, rc_arena *ar)
{
    if (!s->perm) return true;
    float *tmp = rc_arena_alloc(ar, (size_t)(s->B * w) * sizeof *tmp, false);
    if (!tmp) return false;
    memcpy(tmp, st, (size_t)(s->B * w) * sizeof *tmp);
    for (int64_t i = 0; i < s->B; i++) {
        if (to_sorted)
            memcpy(st + i * w, tmp + s->perm[i] * w, (size_t)w * sizeof *st);
        else
            memcpy(st + s->perm[i] * w, tmp + i * w, (size_t)w * sizeof *st);
    }
    return true;
}

static int64_t layer_out(const rc_fused_layer *l) { return l->kind == RC_FUSED_LSTM && l->proj > 0 ? l->proj : l->units; }

/* floats of history per batch row per step */
static int64_t row_floats(const rc_fused_layer *l)
{
    int64_t H = l->units;
    switch (l->kind) {
    case RC_FUSED_RNN: return H;
    case RC_FUSED_LSTM: return 5 * H + layer_out(l);
    case RC_FUSED_GRU: return 4 * H;
    default: return 5 * H;
    }
}

size_t rc_fused_hist_floats(const rc_fused *spec, int64_t T, int64_t B)
{
    size_t n = 0;
    for (int i = 0; i < spec->nlayers; i++) n += (size_t)(T * B * row_floats(&spec->layers[i]));
    return n + 1;
}

/* Weight i of layer l among the forward op's inputs, and its gradient among the captures. */
#define WIN(in, l, i) ((const float *)(in)[(l)->w[i]]->data)
#define DW(dcap, first, l, i) ((float *)(dcap)[(l)->w[i] - (first)]->data)

/* A layer's state in sorted order: s[0] = h (RNN/GRU) or c (LSTM), s[1] = h (LSTM). */
typedef struct lstate {
    float *s[2];
} lstate;

/* Layer state views over the flattened state arrays; a concatenated LSTM state is split into
 * scratch. to_sorted permutes into the kernel's row order. */
static bool state_in(const rc_fused_layer *l, recur_array *const *states, const seqinfo *sq, lstate *st, rc_arena *ar)
{
    int64_t B = sq->B, H = l->units, P = layer_out(l);
    if (l->state_concat) {
        float *cat = states[l->state0]->data;
        st->s[0] = rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false);
        st->s[1] = rc_arena_alloc(ar, (size_t)(B * P) * sizeof(float), false);
        if (!st->s[0] || !st->s[1]) return false;
        for (int64_t b = 0; b < B; b++) {
            memcpy(st->s[0] + b * H, cat + b * (H + P), (size_t)H * sizeof(float));
            memcpy(st->s[1] + b * P, cat + b * (H + P) + H, (size_t)P * sizeof(float));
        }
    } else {
        st->s[0] = states[l->state0]->data;
        st->s[1] = l->nstate > 1 ? states[l->state0 + 1]->data : NULL;
    }
    bool lstm = l->kind == RC_FUSED_LSTM;
    return permute_state(sq, st->s[0], lstm ? H : H, true, ar) && (!lstm || permute_state(sq, st->s[1], P, true, ar));
}

static bool state_out(const rc_fused_layer *l, recur_array *const *states, const seqinfo *sq, lstate *st, rc_arena *ar)
{
    int64_t B = sq->B, H = l->units, P = layer_out(l);
    bool lstm = l->kind == RC_FUSED_LSTM;
    if (!permute_state(sq, st->s[0], H, false, ar) || (lstm && !permute_state(sq, st->s[1], P, false, ar))) return false;
    if (l->state_concat) {
        float *cat = states[l->state0]->data;
        for (int64_t b = 0; b < B; b++) {
            memcpy(cat + b * (H + P), st->s[0] + b * H, (size_t)H * sizeof(float));
            memcpy(cat + b * (H + P) + H, st->s[1] + b * P, (size_t)P * sizeof(float));
        }
    }
    return true;
}

/* ================================================================== forward */

/* Each forward writes the layer output y [T, B, O] (sorted rows; rows not running stay as they
 * are: zero) and its history block `h` (never NULL: scratch when no gradient follows). */

HOT static void lstm_cell_rows(const rc_fused_layer *l, int64_t n, int64_t H, float *g, float *c, float *craw, float *m,
                               float *tmp, const float *wf, const float *wi, const float *wo)
{
    int64_t G = 4 * H;
    for (int64_t b = 0; b < n; b++) {
        float *gi = g + b * G, *gj = gi + H, *gf = gi + 2 * H, *go = gi + 3 * H, *cb = c + b * H, *cr = craw + b * H;
        for (int64_t j = 0; j < H; j++) gf[j] += l->forget_bias + (wf ? wf[j] * cb[j] : 0);
        if (wi)
            for (int64_t j = 0; j < H; j++) gi[j] += wi[j] * cb[j];
        rc_vsigmoid(gi, gi, (size_t)H);
        rc_vsigmoid(gf, gf, (size_t)H);
        act_vec(l->act, gj, gj, H);
        for (int64_t j = 0; j < H; j++) {
            cr[j] = cb[j] * gf[j] + gi[j] * gj[j];
            cb[j] = clampf(cr[j], l->cell_clip);
        }
        if (wo)
            for (int64_t j = 0; j < H; j++) go[j] += wo[j] * cb[j];
        rc_vsigmoid(go, go, (size_t)H);
        act_vec(l->act, tmp, cb, H);
        float *mb = m + b * H;
        for (int64_t j = 0; j < H; j++) mb[j] = tmp[j] * go[j];
    }
}

static recur_code lstm_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                           lstate *st, float *hist, rc_arena *ar)
{
    int64_t B = s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, T = s->T;
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    const float *wf = l->peepholes ? WIN(in, l, 2) : NULL, *wi = l->peepholes ? WIN(in, l, 3) : NULL,
                *wo = l->peepholes ? WIN(in, l, 4) : NULL;
    const float *proj = l->proj > 0 ? WIN(in, l, l->peepholes ? 5 : 2) : NULL;
    float *gates = hist, *craw = hist + T * B * G, *yraw = craw + T * B * H;
    float *tmp = rc_arena_alloc(ar, (size_t)H * sizeof(float), false);
    float *m = proj ? rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false) : NULL;
    rc_packed_b wh, wp;
    if (!tmp || (proj && !m) || !rc_pack_b(&wh, kern + D * G, G, false, P, G, ar) ||
        (proj && !rc_pack_b(&wp, proj, P, false, H, P, ar)))
        return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, G, bias, gates);
    float *c = st->s[0], *h = st->s[1];
    if (!proj) {
        /* The output is the state: each step reads the previous step's output rows from the
         * history, the final state is gathered once at the end, and the output block is copied
         * out whole (rows not running are zero). */
        for (int64_t t = 0; t < s->steps; t++) {
            int64_t n = s->nact[t];
            float *g = gates + t * B * G, *yr = yraw + t * B * P;
            rc_gemm_packed(n, t ? yr - B * P : h, P, &wh, 1.0f, g, G);
            lstm_cell_rows(l, n, H, g, c, craw + t * B * H, yr, tmp, wf, wi, wo);
            if (n < B) memset(yr + n * P, 0, (size_t)((B - n) * P) * sizeof *yr);
        }
        for (int64_t t = 0; t < s->steps; t++) /* rows whose last step is t */
            for (int64_t i = t + 1 < s->steps ? s->nact[t + 1] : 0; i < s->nact[t]; i++)
                memcpy(h + i * P, yraw + (t * B + i) * P, (size_t)P * sizeof *h);
        memcpy(y, yraw, (size_t)(s->steps * B * P) * sizeof *y);
        return RECUR_OK;
    }
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t n = s->nact[t];
        float *g = gates + t * B * G, *yr = yraw + t * B * P;
        rc_gemm_packed(n, h, P, &wh, 1.0f, g, G);
        lstm_cell_rows(l, n, H, g, c, craw + t * B * H, proj ? m : yr, tmp, wf, wi, wo);
        if (proj) rc_gemm_packed(n, m, H, &wp, 0.0f, yr, P);
        clamp_vec(h, yr, n * P, proj ? l->proj_clip : 0);
        memcpy(y + t * B * P, h, (size_t)(n * P) * sizeof *y);
    }
    return RECUR_OK;
}

HOT static void gru_update_rows(int64_t n, int64_t H, const float *g, const float *cand, float *h, float *hout)
{
    for (int64_t b = 0; b < n; b++) {
        const float *u = g + b * 2 * H + H, *ca = cand + b * H;
        float *hb = h + b * H;
        for (int64_t j = 0; j < H; j++) hb[j] = u[j] * hb[j] + (1 - u[j]) * ca[j];
        memcpy(hout + b * H, hb, (size_t)H * sizeof *hb);
    }
}

static recur_code gru_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, rc_arena *ar)
{
    int64_t B = s->B, D = l->in, H = l->units, T = s->T;
    const float *gk = WIN(in, l, 0), *gb = WIN(in, l, 1), *ck = WIN(in, l, 2), *cb = WIN(in, l, 3);
    float *gates = hist, *cand = hist + T * B * 2 * H, *hh = cand + T * B * H;
    float *rh = rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false);
    rc_packed_b wg, wc;
    if (!rh || !rc_pack_b(&wg, gk + D * 2 * H, 2 * H, false, H, 2 * H, ar) || !rc_pack_b(&wc, ck + D * H, H, false, H, H, ar))
        return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, gk, 2 * H, gb, gates);
    project(x, s->steps * B, D, ck, H, cb, cand);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t n = s->nact[t];
        float *g = gates + t * B * 2 * H, *cc = cand + t * B * H;
        rc_gemm_packed(n, h, H, &wg, 1.0f, g, 2 * H);
        rc_vsigmoid(g, g, (size_t)(n * 2 * H));
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = 0; j < H; j++) rh[b * H + j] = g[b * 2 * H + j] * h[b * H + j];
        rc_gemm_packed(n, rh, H, &wc, 1.0f, cc, H);
        act_vec(l->act, cc, cc, n * H);
        gru_update_rows(n, H, g, cc, h, hh + t * B * H);
        memcpy(y + t * B * H, h, (size_t)(n * H) * sizeof *y);
    }
    return RECUR_OK;
}

HOT static void gru_v2_rows(const rc_fused_layer *l, int64_t n, int64_t H, float *xw, const float *hw, float *hrec, float *h,
                            float *hout)
{
    for (int64_t b = 0; b < n; b++) {
        float *xr = xw + b * 3 * H;
        const float *hr = hw + b * 3 * H;
        for (int64_t j = 0; j < 2 * H; j++) xr[j] += hr[j];
        rc_vsigmoid(xr, xr, (size_t)(2 * H));
        for (int64_t j = 0; j < H; j++) {
            hrec[b * H + j] = hr[2 * H + j];
            xr[2 * H + j] += xr[H + j] * hr[2 * H + j];
        }
        act_vec(l->act, xr + 2 * H, xr + 2 * H, H);
        float *hb = h + b * H;
        for (int64_t j = 0; j < H; j++) hb[j] = xr[j] * hb[j] + (1 - xr[j]) * xr[2 * H + j];
        memcpy(hout + b * H, hb, (size_t)H * sizeof *hb);
    }
}

static recur_code gru_v2_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                             lstate *st, float *hist, rc_arena *ar)
{
    int64_t B = s->B, D = l->in, H = l->units, T = s->T;
    const float *kern = WIN(in, l, 0), *rk = WIN(in, l, 1), *bias = WIN(in, l, 2);
    float *xw = hist, *hrec = hist + T * B * 3 * H, *hh = hrec + T * B * H;
    float *hw = rc_arena_alloc(ar, (size_t)(B * 3 * H) * sizeof(float), false);
    rc_packed_b wr;
    if (!hw || !rc_pack_b(&wr, rk, 3 * H, false, H, 3 * H, ar)) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, 3 * H, bias, xw);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t n = s->nact[t];
        for (int64_t b = 0; b < n; b++) memcpy(hw + b * 3 * H, bias + 3 * H, (size_t)(3 * H) * sizeof *hw);
        rc_gemm_packed(n, h, H, &wr, 1.0f, hw, 3 * H);
        gru_v2_rows(l, n, H, xw + t * B * 3 * H, hw, hrec + t * B * H, h, hh + t * B * H);
        memcpy(y + t * B * H, h, (size_t)(n * H) * sizeof *y);
    }
    return RECUR_OK;
}

static recur_code rnn_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, rc_arena *ar)
{
    int64_t B = s->B, D = l->in, H = l->units;
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    rc_packed_b wh;
    if (!rc_pack_b(&wh, kern + D * H, H, false, H, H, ar)) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, H, bias, hist);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t n = s->nact[t];
        float *g = hist + t * B * H;
        rc_gemm_packed(n, h, H, &wh, 1.0f, g, H);
        act_vec(l->act, g, g, n * H);
        memcpy(h, g, (size_t)(n * H) * sizeof *h);
        memcpy(y + t * B * H, g, (size_t)(n * H) * sizeof *y);
    }
    return RECUR_OK;
}

typedef recur_code (*fwd_fn)(const rc_fused_layer *, recur_array *const *, const seqinfo *, const float *, float *, lstate *,
                             float *, rc_arena *);

static fwd_fn forward_of(const rc_fused_layer *l)
{
    switch (l->kind) {
    case RC_FUSED_RNN: return rnn_fwd;
    case RC_FUSED_LSTM: return lstm_fwd;
    case RC_FUSED_GRU: return gru_fwd;
    default: return gru_v2_fwd;
    }
}

recur_code rc_fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                            recur_array **final, recur_array *out, float *hist, rc_arena *ar)
{
    rc_arena_reset(ar);
    /* No steps or no rows: nothing to compute. The caller zeroed `out` and copied the initial
     * state into `final`, which is the result; empty arrays have no data pointer, which the
     * code below would take for a failed allocation. */
    if (x->shape.dims[0] == 0 || x->shape.dims[1] == 0) return RECUR_OK;
    seqinfo s;
    recur_code code = RECUR_OK;
    if (!seq_setup(&s, x, len, ar)) goto oom;
    int64_t T = s.T, B = s.B;
    const float *cur = x->data;
    if (s.perm) {
        float *xs = rc_arena_alloc(ar, (size_t)x->size * sizeof(float), false);
        if (!xs) goto oom;
        permute_rows(&s, xs, x->data, x->shape.dims[2], true, s.steps, true);
        cur = xs;
    }
    for (int i = 0; i < spec->nlayers; i++) {
        const rc_fused_layer *l = &spec->layers[i];
        bool last = i == spec->nlayers - 1;
        int64_t O = layer_out(l);
        float *y = last && !s.perm ? out->data : rc_arena_alloc(ar, (size_t)(T * B * O) * sizeof(float), true);
        float *h = hist ? hist : rc_arena_alloc(ar, (size_t)(T * B * row_floats(l)) * sizeof(float), false);
        lstate st;
        if (!y || !h || !state_in(l, final, &s, &st, ar)) goto oom;
        code = forward_of(l)(l, k->in, &s, cur, y, &st, h, ar);
        if (code || !state_out(l, final, &s, &st, ar)) goto fail;
        if (last && s.perm) permute_rows(&s, out->data, y, O, false, s.steps, false);
        if (hist) hist += T * B * row_floats(l);
        cur = y;
    }
    return RECUR_OK;
fail:
    if (code != RECUR_OUT_OF_MEMORY && code) return code;
oom:
    return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory in the fused RNN kernel");
}

/* ================================================================== backward */

typedef struct bctx {
    const rc_fused_layer *l;
    const seqinfo *s;
    recur_array *const *in; /* forward op inputs (weights) */
    recur_array **dcap;     /* capture gradients */
    int first;
    const float *x;         /* layer input [T, B, D], sorted, rows not running zero */
    const float *hist;      /* this layer's history */
    const float *h0, *c0;   /* initial states (sorted) */
    const float *dy;        /* gradient of the layer output [T, B, O], sorted, masked */
    float *dx;              /* gradient of the layer input [T, B, D] (written) */
    float *dh, *dc;         /* in: gradient of the final state; out: of the initial state */
    rc_arena *ar;
} bctx;

#define TAKE(c, n) ((float *)rc_arena_alloc((c)->ar, (size_t)(n) * sizeof(float), true))
#define TAKE_RAW(c, n) ((float *)rc_arena_alloc((c)->ar, (size_t)(n) * sizeof(float), false))

/* hp[t] = the layer's output at t-1 (or h0), rows not running at t zero. */
static void prev_outputs(const bctx *c, const float *ys, int64_t w, float *hp)
{
    int64_t B = c->s->B;
    for (int64_t t = 0; t < c->s->steps; t++) {
        int64_t n = c->s->nact[t];
        memcpy(hp + t * B * w, t ? ys + (t - 1) * B * w : c->h0, (size_t)(n * w) * sizeof(float));
    }
}

static recur_code rnn_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, S = c->s->steps;
    const float *kern = WIN(c->in, l, 0);
    float *dG = TAKE(c, S * B * H), *hp = TAKE(c, S * B * H), *d = TAKE(c, B * H);
    rc_packed_b whT;
    if (!dG || !hp || !d || !rc_pack_b(&whT, kern + D * H, H, true, H, H, c->ar)) return RECUR_OUT_OF_MEMORY;
    prev_outputs(c, c->hist, H, hp);
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        int64_t n = c->s->nact[t];
        const float *dyt = c->dy + t * B * H;
        for (int64_t i = 0; i < n * H; i++) d[i] = dh[i] + dyt[i];
        act_grad(l->act, dG + t * B * H, d, c->hist + t * B * H, n * H);
        rc_gemm_packed(n, dG + t * B * H, H, &whT, 0.0f, dh, H);
    }
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    gemm_tn_acc(D, H, S * B, c->x, D, dG, H, dK, H);
    gemm_tn_acc(H, H, S * B, hp, H, dG, H, dK + D * H, H);
    colsum_acc(dG, S * B, H, db);
    gemm_nt(S * B, D, H, dG, H, kern, H, 0.0f, c->dx, D);
    return RECUR_OK;
}

/* The common cell (tanh, no clipping, peepholes or projection): one branch-free pass per row,
 * the bias gradient accumulated on the way. */
HOT static void lstm_bwd_rows_basic(int64_t n, int64_t H, const float *gt, const float *crt, const float *cprev,
                                    const float *dm, float *dc, float *g, float *a, float *db)
{
    int64_t G = 4 * H;
    for (int64_t b = 0; b < n; b++) {
        const float *is = gt + b * G, *ja = is + H, *fs = is + 2 * H, *os = is + 3 * H, *cp = cprev + b * H;
        const float *dmb = dm + b * H;
        float *dcb = dc + b * H, *gb = g + b * G;
        rc_vtanh(a, crt + b * H, (size_t)H);
        for (int64_t j = 0; j < H; j++) {
            float o = os[j], i = is[j], f = fs[j], jj = ja[j], t = a[j];
            float do_pre = dmb[j] * t * o * (1 - o);
            float dcr = dcb[j] + dmb[j] * o * (1 - t * t);
            float di = dcr * jj * i * (1 - i), dj = dcr * i * (1 - jj * jj), df = dcr * cp[j] * f * (1 - f);
            dcb[j] = dcr * f;
            gb[j] = di;
            gb[H + j] = dj;
            gb[2 * H + j] = df;
            gb[3 * H + j] = do_pre;
        }
        for (int64_t j = 0; j < G; j++) db[j] += gb[j];
    }
}

HOT static void lstm_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *gt, const float *crt,
                              const float *cprev, const float *dm, float *dc, float *g, float *dpe, float *mpre, float *a,
                              const float *wf, const float *wi, const float *wo, float *db)
{
    int64_t G = 4 * H;
    if (!wf && !wi && !wo && !dpe && !mpre && !(l->cell_clip > 0) && l->act == RECUR_ACT_TANH) {
        lstm_bwd_rows_basic(n, H, gt, crt, cprev, dm, dc, g, a, db);
        return;
    }
    for (int64_t b = 0; b < n; b++) {
        const float *is = gt + b * G, *ja = is + H, *fs = is + 2 * H, *os = is + 3 * H, *cr = crt + b * H, *cp = cprev + b * H;
        const float *dmb = dm + b * H;
        float *dcb = dc + b * H, *gb = g + b * G;
        for (int64_t j = 0; j < H; j++) a[j] = clampf(cr[j], l->cell_clip);
        float *nc = mpre ? mpre + b * H : NULL; /* m before the projection */
        act_vec(l->act, a, a, H);
        for (int64_t j = 0; j < H; j++) {
            float cn = clampf(cr[j], l->cell_clip);
            float do_pre = dmb[j] * a[j] * os[j] * (1 - os[j]);
            float ad = l->act == RECUR_ACT_TANH ? 1 - a[j] * a[j]
                       : l->act == RECUR_ACT_SIGMOID ? a[j] * (1 - a[j])
                       : l->act == RECUR_ACT_RELU ? (a[j] > 0 ? 1.0f : 0.0f) : 1.0f;
            float dnc = dcb[j] + dmb[j] * os[j] * ad + (wo ? do_pre * wo[j] : 0);
            float dcr = l->cell_clip > 0 && (cr[j] < -l->cell_clip || cr[j] > l->cell_clip) ? 0 : dnc;
            float jd = l->act == RECUR_ACT_TANH ? 1 - ja[j] * ja[j]
                       : l->act == RECUR_ACT_SIGMOID ? ja[j] * (1 - ja[j])
                       : l->act == RECUR_ACT_RELU ? (ja[j] > 0 ? 1.0f : 0.0f) : 1.0f;
            float di = dcr * ja[j] * is[j] * (1 - is[j]), dj = dcr * is[j] * jd, df = dcr * cp[j] * fs[j] * (1 - fs[j]);
            dcb[j] = dcr * fs[j] + (wf ? df * wf[j] : 0) + (wi ? di * wi[j] : 0);
            if (dpe) {
                dpe[j] += df * cp[j];
                dpe[H + j] += di * cp[j];
                dpe[2 * H + j] += do_pre * cn;
            }
            gb[j] = di;
            gb[H + j] = dj;
            gb[2 * H + j] = df;
            gb[3 * H + j] = do_pre;
            if (nc) nc[j] = a[j] * os[j];
        }
        for (int64_t j = 0; j < G; j++) db[j] += gb[j];
    }
}

static recur_code lstm_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, S = c->s->steps, T = c->s->T;
    const float *kern = WIN(c->in, l, 0);
    const float *wf = l->peepholes ? WIN(c->in, l, 2) : NULL, *wi = l->peepholes ? WIN(c->in, l, 3) : NULL,
                *wo = l->peepholes ? WIN(c->in, l, 4) : NULL;
    int pi = l->peepholes ? 5 : 2;
    const float *proj = l->proj > 0 ? WIN(c->in, l, pi) : NULL;
    const float *gates = c->hist, *craw = gates + T * B * G, *yraw = craw + T * B * H;
    /* dG and hp: rows that run are written; the rest are zeroed step by step (RAW: no memset) */
    float *dG = TAKE_RAW(c, S * B * G), *hp = TAKE_RAW(c, S * B * P), *dm = TAKE(c, B * H), *a = TAKE(c, H);
    float *mpre = proj ? TAKE(c, S * B * H) : NULL, *dmr = proj ? TAKE(c, S * B * P) : NULL, *cp = TAKE(c, B * H);
    float *dpe = l->peepholes ? TAKE(c, 3 * H) : NULL;
    rc_packed_b whT, wpT;
    if (!dG || !hp || !dm || !a || !cp || (proj && (!mpre || !dmr)) || (l->peepholes && !dpe) ||
        !rc_pack_b(&whT, kern + D * G, G, true, G, P, c->ar) || (proj && !rc_pack_b(&wpT, proj, P, true, P, H, c->ar)))
        return RECUR_OUT_OF_MEMORY;
    /* previous outputs: clamp(y_raw[t-1]) */
    for (int64_t t = 0; t < S; t++) {
        int64_t n = c->s->nact[t];
        if (t) clamp_vec(hp + t * B * P, yraw + (t - 1) * B * P, n * P, proj ? l->proj_clip : 0);
        else memcpy(hp, c->h0, (size_t)(n * P) * sizeof *hp);
        if (n < B) {
            memset(hp + (t * B + n) * P, 0, (size_t)((B - n) * P) * sizeof *hp);
            memset(dG + (t * B + n) * G, 0, (size_t)((B - n) * G) * sizeof *dG);
        }
    }
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    float *dh = c->dh, *dc = c->dc;
    for (int64_t t = S - 1; t >= 0; t--) {
        int64_t n = c->s->nact[t];
        const float *dyt = c->dy + t * B * P, *yr = yraw + t * B * P;
        float *dmt = proj ? dmr + t * B * P : dm;
        for (int64_t i = 0; i < n * P; i++) {
            float d = dh[i] + dyt[i];
            if (proj && l->proj_clip > 0 && (yr[i] < -l->proj_clip || yr[i] > l->proj_clip)) d = 0;
            dmt[i] = d;
        }
        if (proj) rc_gemm_packed(n, dmt, P, &wpT, 0.0f, dm, H);
        if (t) clamp_vec(cp, craw + (t - 1) * B * H, n * H, l->cell_clip);
        else memcpy(cp, c->c0, (size_t)(n * H) * sizeof *cp);
        lstm_bwd_rows(l, n, H, gates + t * B * G, craw + t * B * H, cp, dm, dc, dG + t * B * G, dpe,
                      mpre ? mpre + t * B * H : NULL, a, wf, wi, wo, db);
        rc_gemm_packed(n, dG + t * B * G, G, &whT, 0.0f, dh, P);
    }
    gemm_tn_acc(D, G, S * B, c->x, D, dG, G, dK, G);
    gemm_tn_acc(P, G, S * B, hp, P, dG, G, dK + D * G, G);
    if (dpe) {
        float *dwf = DW(c->dcap, c->first, l, 2), *dwi = DW(c->dcap, c->first, l, 3), *dwo = DW(c->dcap, c->first, l, 4);
        for (int64_t j = 0; j < H; j++) {
            dwf[j] += dpe[j];
            dwi[j] += dpe[H + j];
            dwo[j] += dpe[2 * H + j];
        }
    }
    if (proj) gemm_tn_acc(H, P, S * B, mpre, H, dmr, P, DW(c->dcap, c->first, l, pi), P);
    gemm_nt(S * B, D, G, dG, G, kern, G, 0.0f, c->dx, D);
    return RECUR_OK;
}

HOT static void gru_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *g, const float *ca, const float *hp,
                             const float *dh_in, const float *dyt, float *dct, float *dg, float *dh_out)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < H; j++) {
            int64_t e = b * H + j;
            float u = g[b * 2 * H + H + j], d = dh_in[e] + dyt[e], cv = ca[e];
            float ad = l->act == RECUR_ACT_TANH ? 1 - cv * cv
                       : l->act == RECUR_ACT_SIGMOID ? cv * (1 - cv)
                       : l->act == RECUR_ACT_RELU ? (cv > 0 ? 1.0f : 0.0f) : 1.0f;
            dct[e] = d * (1 - u) * ad;
            dg[b * 2 * H + H + j] = d * (hp[e] - cv) * u * (1 - u);
            dh_out[e] = d * u;
        }
}

static recur_code gru_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, S = c->s->steps, T = c->s->T;
    const float *gk = WIN(c->in, l, 0), *ck = WIN(c->in, l, 2);
    const float *gates = c->hist, *cand = gates + T * B * 2 * H, *hh = cand + T * B * H;
    float *dGg = TAKE(c, S * B * 2 * H), *dC = TAKE(c, S * B * H), *hp = TAKE(c, S * B * H), *rh = TAKE(c, S * B * H),
          *drh = TAKE(c, B * H), *dhn = TAKE(c, B * H);
    rc_packed_b wcT, wgT;
    if (!dGg || !dC || !hp || !rh || !drh || !dhn || !rc_pack_b(&wcT, ck + D * H, H, true, H, H, c->ar) ||
        !rc_pack_b(&wgT, gk + D * 2 * H, 2 * H, true, 2 * H, H, c->ar))
        return RECUR_OUT_OF_MEMORY;
    prev_outputs(c, hh, H, hp);
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        int64_t n = c->s->nact[t];
        const float *g = gates + t * B * 2 * H, *hpt = hp + t * B * H;
        float *dct = dC + t * B * H, *dg = dGg + t * B * 2 * H;
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = 0; j < H; j++) rh[(t * B + b) * H + j] = g[b * 2 * H + j] * hpt[b * H + j];
        gru_bwd_rows(l, n, H, g, cand + t * B * H, hpt, dh, c->dy + t * B * H, dct, dg, dhn);
        rc_gemm_packed(n, dct, H, &wcT, 0.0f, drh, H);
        for (int64_t b = 0; b < n; b++)
            for (int64_t j = 0; j < H; j++) {
                float r = g[b * 2 * H + j];
                dg[b * 2 * H + j] = drh[b * H + j] * hpt[b * H + j] * r * (1 - r);
                dhn[b * H + j] += drh[b * H + j] * r;
            }
        rc_gemm_packed(n, dg, 2 * H, &wgT, 1.0f, dhn, H);
        memcpy(dh, dhn, (size_t)(n * H) * sizeof *dh);
    }
    float *dgk = DW(c->dcap, c->first, l, 0), *dgb = DW(c->dcap, c->first, l, 1), *dck = DW(c->dcap, c->first, l, 2),
          *dcb = DW(c->dcap, c->first, l, 3);
    gemm_tn_acc(D, 2 * H, S * B, c->x, D, dGg, 2 * H, dgk, 2 * H);
    gemm_tn_acc(H, 2 * H, S * B, hp, H, dGg, 2 * H, dgk + D * 2 * H, 2 * H);
    colsum_acc(dGg, S * B, 2 * H, dgb);
    gemm_tn_acc(D, H, S * B, c->x, D, dC, H, dck, H);
    gemm_tn_acc(H, H, S * B, rh, H, dC, H, dck + D * H, H);
    colsum_acc(dC, S * B, H, dcb);
    gemm_nt(S * B, D, 2 * H, dGg, 2 * H, gk, 2 * H, 0.0f, c->dx, D);
    gemm_nt(S * B, D, H, dC, H, ck, H, 1.0f, c->dx, D);
    return RECUR_OK;
}

HOT static void gru_v2_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *zrh, const float *hm,
                                const float *hp, const float *dh_in, const float *dyt, float *mx, float *mh, float *dh_out)
{
    int64_t G = 3 * H;
    for (int64_t b = 0; b < n; b++) {
        const float *r = zrh + b * G;
        for (int64_t j = 0; j < H; j++) {
            int64_t e = b * H + j;
            float z = r[j], rr = r[H + j], hh = r[2 * H + j], d = dh_in[e] + dyt[e];
            float ad = l->act == RECUR_ACT_TANH ? 1 - hh * hh
                       : l->act == RECUR_ACT_SIGMOID ? hh * (1 - hh)
                       : l->act == RECUR_ACT_RELU ? (hh > 0 ? 1.0f : 0.0f) : 1.0f;
            float dhh = d * (1 - z) * ad, dz = d * (hp[e] - hh) * z * (1 - z), dr = dhh * hm[e] * rr * (1 - rr);
            mx[b * G + j] = dz;
            mx[b * G + H + j] = dr;
            mx[b * G + 2 * H + j] = dhh;
            mh[b * G + j] = dz;
            mh[b * G + H + j] = dr;
            mh[b * G + 2 * H + j] = dhh * rr;
            dh_out[e] = d * z;
        }
    }
}

static recur_code gru_v2_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, S = c->s->steps, G = 3 * H, T = c->s->T;
    const float *kern = WIN(c->in, l, 0), *rk = WIN(c->in, l, 1);
    const float *zrh = c->hist, *hrec = zrh + T * B * G, *hh = hrec + T * B * H;
    float *dMx = TAKE(c, S * B * G), *dMh = TAKE(c, S * B * G), *hp = TAKE(c, S * B * H), *dhn = TAKE(c, B * H);
    rc_packed_b wrT;
    if (!dMx || !dMh || !hp || !dhn || !rc_pack_b(&wrT, rk, G, true, G, H, c->ar)) return RECUR_OUT_OF_MEMORY;
    prev_outputs(c, hh, H, hp);
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        int64_t n = c->s->nact[t];
        float *mx = dMx + t * B * G, *mh = dMh + t * B * G;
        gru_v2_bwd_rows(l, n, H, zrh + t * B * G, hrec + t * B * H, hp + t * B * H, dh, c->dy + t * B * H, mx, mh, dhn);
        rc_gemm_packed(n, mh, G, &wrT, 1.0f, dhn, H);
        memcpy(dh, dhn, (size_t)(n * H) * sizeof *dh);
    }
    float *dK = DW(c->dcap, c->first, l, 0), *dR = DW(c->dcap, c->first, l, 1), *db = DW(c->dcap, c->first, l, 2);
    gemm_tn_acc(D, G, S * B, c->x, D, dMx, G, dK, G);
    gemm_tn_acc(H, G, S * B, hp, H, dMh, G, dR, G);
    colsum_acc(dMx, S * B, G, db);
    colsum_acc(dMh, S * B, G, db + G);
    gemm_nt(S * B, D, G, dMx, G, kern, G, 0.0f, c->dx, D);
    return RECUR_OK;
}

typedef recur_code (*bwd_fn)(bctx *);

static bwd_fn backward_of(const rc_fused_layer *l)
{
    switch (l->kind) {
    case RC_FUSED_RNN: return rnn_bwd;
    case RC_FUSED_LSTM: return lstm_bwd;
    case RC_FUSED_GRU: return gru_bwd;
    default: return gru_v2_bwd;
    }
}

/* Offset of a layer's outputs inside its history rows block, and whether they need clamping. */
static const float *layer_outputs(const rc_fused_layer *l, const float *h, int64_t T, int64_t B)
{
    int64_t H = l->units;
    switch (l->kind) {
    case RC_FUSED_RNN: return h;
    case RC_FUSED_LSTM: return h + T * B * 5 * H;
    case RC_FUSED_GRU: return h + T * B * 3 * H;
    default: return h + T * B * 4 * H;
    }
}

recur_code rc_fused_backward(rc_kctx *k, const rc_fused *spec, const float *hist, recur_array *const *fwd_in,
                             const recur_array *len, recur_array *const *init, const recur_array *dout, recur_array *dx,
                             recur_array **dinit, recur_array **dcap, int first_capture, rc_arena *ar)
{
    rc_arena_reset(ar);
    const recur_array *x = fwd_in[0];
    /* No steps or no rows (see rc_fused_forward): the caller's results stand, dx empty, the
     * initial-state gradients equal to the final-state ones, the weight gradients zero. */
    if (x->shape.dims[0] == 0 || x->shape.dims[1] == 0) return RECUR_OK;
    seqinfo s;
    recur_code code = RECUR_OK;
    if (!seq_setup(&s, x, len, ar)) goto oom;
    int64_t T = s.T, B = s.B;
    const float *hl[RC_ARRAY_LEN(spec->layers)];
    const float *h = hist;
    for (int i = 0; i < spec->nlayers; i++) {
        hl[i] = h;
        h += T * B * row_floats(&spec->layers[i]);
    }
    /* Every row runs every step in the caller's order (no lengths, or all of length T): the
     * caller's arrays serve as they are, with no sorted copies. */
    bool direct = !s.perm && s.steps == T && (T == 0 || s.nact[T - 1] == B);
    /* the top layer's output gradient in sorted order, rows not running zero */
    const rc_fused_layer *top = &spec->layers[spec->nlayers - 1];
    const float *dy = dout->data;
    if (!direct) {
        float *d = rc_arena_alloc(ar, (size_t)dout->size * sizeof(float), true);
        if (!d) goto oom;
        permute_rows(&s, d, dout->data, layer_out(top), true, s.steps, true);
        dy = d;
    }
    for (int i = spec->nlayers - 1; i >= 0 && !code; i--) {
        const rc_fused_layer *l = &spec->layers[i];
        int64_t D = l->in, H = l->units, P = layer_out(l);
        /* the layer's input: x (sorted) or the layer below's outputs (clamped for LSTM) */
        const float *xin = i == 0 && direct ? x->data : NULL;
        float *xs = xin ? NULL : rc_arena_alloc(ar, (size_t)(T * B * D) * sizeof(float), true);
        float *dxl = i == 0 && direct ? dx->data : rc_arena_alloc(ar, (size_t)(T * B * D) * sizeof(float), true);
        if ((!xin && !xs) || !dxl) goto oom;
        if (xs) xin = xs;
        if (i == 0) {
            if (xs) permute_rows(&s, xs, x->data, D, true, s.steps, true);
        } else {
            const rc_fused_layer *lb = &spec->layers[i - 1];
            const float *yb = layer_outputs(lb, hl[i - 1], T, B);
            for (int64_t t = 0; t < s.steps; t++)
                clamp_vec(xs + t * B * D, yb + t * B * D, s.nact[t] * D, lb->kind == RC_FUSED_LSTM && lb->proj ? lb->proj_clip : 0);
        }
        /* states (sorted): initial values and the gradients arriving from the final state */
        lstate dst, ist;
        if (!state_in(l, dinit, &s, &dst, ar)) goto oom;
        float *h0 = rc_arena_alloc(ar, (size_t)(B * P) * sizeof(float), false), *c0 = NULL;
        if (!h0) goto oom;
        bool lstm = l->kind == RC_FUSED_LSTM;
        if (l->state_concat) {
            if (!state_in(l, (recur_array **)init, &s, &ist, ar)) goto oom;
        } else {
            ist.s[0] = rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false);
            ist.s[1] = lstm ? h0 : NULL;
            if (!ist.s[0]) goto oom;
            memcpy(ist.s[0], init[l->state0]->data, (size_t)(B * H) * sizeof(float));
            if (lstm) memcpy(ist.s[1], init[l->state0 + 1]->data, (size_t)(B * P) * sizeof(float));
            if (!permute_state(&s, ist.s[0], H, true, ar) || (lstm && !permute_state(&s, ist.s[1], P, true, ar))) goto oom;
        }
        if (lstm) {
            h0 = ist.s[1];
            c0 = ist.s[0];
        } else {
            h0 = ist.s[0];
        }
        bctx c = {.l = l, .s = &s, .in = fwd_in, .dcap = dcap, .first = first_capture, .x = xin, .hist = hl[i], .h0 = h0,
                  .c0 = c0, .dy = dy, .dx = dxl, .dh = lstm ? dst.s[1] : dst.s[0], .dc = lstm ? dst.s[0] : NULL, .ar = ar};
        code = backward_of(l)(&c);
        if (code) goto fail;
        if (!state_out(l, dinit, &s, &dst, ar)) goto oom;
        if (i == 0 && !direct)
            permute_rows(&s, dx->data, dxl, D, false, s.steps, false);
        else if (i > 0)
            dy = dxl; /* the layer below's output gradient (sorted; rows not running are zero) */
    }
    return RECUR_OK;
fail:
    if (code != RECUR_OUT_OF_MEMORY) return code;
oom:
    return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory in the fused RNN backward kernel");
}
