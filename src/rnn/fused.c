/*
 * fused.c - whole-sequence kernels for the built-in cells (float32, time-major).
 *
 * Forward: the input projection for all steps as one GEMM, then per step one recurrent GEMM
 * and one pass over the gates. Rows past their sequence length keep their state and output
 * zeros. When a gradient will run, each step's gate values are recorded in a history buffer.
 *
 * Backward: per step only the pointwise pass over the gates and the recurrent dh GEMM; the
 * weight, bias and input gradients are a few large GEMMs over all steps at the end.
 *
 * Shapes: x [T, B, D]; kernels as the cells store them ([D+H, nG*H], input rows first);
 * outputs [T, B, O]; states [B, S]. History per layer and step, per batch row:
 *   RNN     h                          (H)
 *   LSTM    i, act(j), f, o; c_raw; y_raw (4H + H + P; y_raw before the projection clip)
 *   GRU     r, u; act(candidate); h    (2H + H + H)
 *   GRU v2  z, r; act(hh); hh_rec; h   (2H + H + H + H)
 */
#include "rnn/rnn_impl.h"

#include <cblas.h>
#include <math.h>

/* ================================================================== helpers */

static inline float act_f(recur_activation a, float v)
{
    switch (a) {
    case RECUR_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case RECUR_ACT_RELU: return v > 0 ? v : 0;
    case RECUR_ACT_IDENTITY: return v;
    default: return tanhf(v);
    }
}

/* d act(v) / dv from y = act(v) */
static inline float act_d(recur_activation a, float y)
{
    switch (a) {
    case RECUR_ACT_SIGMOID: return y * (1 - y);
    case RECUR_ACT_RELU: return y > 0 ? 1.0f : 0.0f;
    case RECUR_ACT_IDENTITY: return 1.0f;
    default: return 1 - y * y;
    }
}

static inline float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }
static inline float clampf(float v, float c) { return c > 0 ? (v < -c ? -c : v > c ? c : v) : v; }
static inline float clip_pass(float v, float c) { return c > 0 && (v < -c || v > c) ? 0.0f : 1.0f; }

/* C[m,n] = beta*C + A[m,k] @ B[k,n] */
static void gemm_nn(int64_t m, int64_t n, int64_t k, const float *A, const float *B, float beta, float *C)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, A, (int)k, B, (int)n, beta, C,
                    (int)n);
    else if (m && n && beta == 0)
        memset(C, 0, (size_t)(m * n) * sizeof *C);
}

/* C[m,n] = beta*C + A[m,k] @ B[n,k]^T  (B given with leading dimension ldb) */
static void gemm_nt(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    float *C, int64_t ldc)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, A, (int)lda, B, (int)ldb, beta, C,
                    (int)ldc);
}

/* C[k,n] += A[m,k]^T @ B[m,n] */
static void gemm_tn_acc(int64_t k, int64_t n, int64_t m, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                        int64_t ldc)
{
    if (m && n && k)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)n, (int)m, 1.0f, A, (int)lda, B, (int)ldb, 1.0f, C,
                    (int)ldc);
}

/* out[rows, n] = x[rows, d] @ w[d, n] + bias */
static void project(const float *x, int64_t rows, int64_t d, const float *w, int64_t n, const float *bias, float *out)
{
    if (bias)
        for (int64_t r = 0; r < rows; r++) memcpy(out + r * n, bias, (size_t)n * sizeof *out);
    gemm_nn(rows, n, d, x, w, bias ? 1.0f : 0.0f, out);
}

/* column sums: b[n] += sum over rows of g[rows, n] */
static void colsum_acc(const float *g, int64_t rows, int64_t n, float *b)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) b[j] += g[r * n + j];
}

typedef struct seqinfo {
    const recur_array *len; /* NULL: all rows run every step */
    int64_t T, B, steps;
} seqinfo;

static inline bool active(const seqinfo *s, int64_t t, int64_t b)
{
    return !s->len || t < (int64_t)rc_array_get(s->len, b);
}

static int64_t layer_out(const rc_fused_layer *l)
{
    return l->kind == RC_FUSED_LSTM && l->proj > 0 ? l->proj : l->units;
}

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

/* Scratch floats freed at the end of a kernel. */
typedef struct scratch {
    float *p[12];
    int n;
} scratch;

static float *take(scratch *s, int64_t n)
{
    if (s->n >= (int)RC_ARRAY_LEN(s->p)) return NULL;
    float *p = rc_calloc((size_t)n + 1, sizeof *p);
    if (p) s->p[s->n++] = p;
    return p;
}

static void drop_all(scratch *s)
{
    for (int i = 0; i < s->n; i++) rc_free(s->p[i]);
    s->n = 0;
}

/* Weight i of layer l among the forward op's inputs. */
#define WIN(in, l, i) ((const float *)(in)[(l)->w[i]]->data)
#define DW(dcap, first, l, i) ((float *)(dcap)[(l)->w[i] - (first)]->data)

/* State pointers of a layer (LSTM with a concatenated state is split into temp buffers). */
typedef struct lstate {
    float *s[2]; /* RNN/GRU: s[0] = h; LSTM: s[0] = c, s[1] = h */
} lstate;

/* ================================================================== forward */

static recur_code rnn_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, scratch *sc)
{
    int64_t B = s->B, D = l->in, H = l->units;
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    float *xw = take(sc, s->steps * B * H), *g = take(sc, B * H);
    if (!xw || !g) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, H, bias, xw);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(g, xw + t * B * H, (size_t)(B * H) * sizeof *g);
        gemm_nn(B, H, H, h, kern + D * H, 1.0f, g);
        for (int64_t b = 0; b < B; b++) {
            bool on = active(s, t, b);
            float *hr = hist ? hist + (t * B + b) * H : NULL;
            for (int64_t j = 0; j < H; j++) {
                float v = act_f(l->act, g[b * H + j]);
                if (hr) hr[j] = v;
                if (on) {
                    h[b * H + j] = v;
                    y[(t * B + b) * H + j] = v;
                }
            }
        }
    }
    return RECUR_OK;
}

static recur_code lstm_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                           lstate *st, float *hist, scratch *sc)
{
    int64_t B = s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, R = row_floats(l);
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    const float *wf = l->peepholes ? WIN(in, l, 2) : NULL, *wi = l->peepholes ? WIN(in, l, 3) : NULL,
                *wo = l->peepholes ? WIN(in, l, 4) : NULL;
    const float *proj = l->proj > 0 ? WIN(in, l, l->peepholes ? 5 : 2) : NULL;
    float *xw = take(sc, s->steps * B * G), *gt = take(sc, B * G), *m = take(sc, B * H), *mp = take(sc, B * P);
    if (!xw || !gt || !m || !mp) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, G, bias, xw);
    float *c = st->s[0], *h = st->s[1];
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(gt, xw + t * B * G, (size_t)(B * G) * sizeof *gt);
        gemm_nn(B, G, P, h, kern + D * G, 1.0f, gt);
        for (int64_t b = 0; b < B; b++) {
            const float *gi = gt + b * G, *gj = gi + H, *gf = gi + 2 * H, *go = gi + 3 * H;
            float *cb = c + b * H, *mb = m + b * H, *hr = hist ? hist + (t * B + b) * R : NULL;
            bool on = active(s, t, b);
            for (int64_t j = 0; j < H; j++) {
                float cp = cb[j];
                float fs = sigm(gf[j] + l->forget_bias + (wf ? wf[j] * cp : 0));
                float is = sigm(gi[j] + (wi ? wi[j] * cp : 0));
                float ja = act_f(l->act, gj[j]);
                float craw = cp * fs + is * ja, nc = clampf(craw, l->cell_clip);
                float os = sigm(go[j] + (wo ? wo[j] * nc : 0));
                mb[j] = act_f(l->act, nc) * os;
                if (hr) {
                    hr[j] = is;
                    hr[H + j] = ja;
                    hr[2 * H + j] = fs;
                    hr[3 * H + j] = os;
                    hr[4 * H + j] = craw;
                }
                if (on) cb[j] = nc;
            }
        }
        const float *mo = m;
        if (proj) {
            gemm_nn(B, P, H, m, proj, 0.0f, mp);
            mo = mp;
        }
        for (int64_t b = 0; b < B; b++) {
            float *hr = hist ? hist + (t * B + b) * R + 5 * H : NULL;
            if (hr) memcpy(hr, mo + b * P, (size_t)P * sizeof *hr);
            if (!active(s, t, b)) continue;
            for (int64_t j = 0; j < P; j++) {
                float v = clampf(mo[b * P + j], l->proj_clip);
                h[b * P + j] = v;
                y[(t * B + b) * P + j] = v;
            }
        }
    }
    return RECUR_OK;
}

static recur_code gru_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, scratch *sc)
{
    int64_t B = s->B, D = l->in, H = l->units, R = row_floats(l);
    const float *gk = WIN(in, l, 0), *gb = WIN(in, l, 1), *ck = WIN(in, l, 2), *cb = WIN(in, l, 3);
    float *xg = take(sc, s->steps * B * 2 * H), *xc = take(sc, s->steps * B * H), *g = take(sc, B * 2 * H),
          *cc = take(sc, B * H), *rh = take(sc, B * H);
    if (!xg || !xc || !g || !cc || !rh) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, gk, 2 * H, gb, xg);
    project(x, s->steps * B, D, ck, H, cb, xc);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(g, xg + t * B * 2 * H, (size_t)(B * 2 * H) * sizeof *g);
        gemm_nn(B, 2 * H, H, h, gk + D * 2 * H, 1.0f, g);
        for (int64_t i = 0; i < B * 2 * H; i++) g[i] = sigm(g[i]);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) rh[b * H + j] = g[b * 2 * H + j] * h[b * H + j];
        memcpy(cc, xc + t * B * H, (size_t)(B * H) * sizeof *cc);
        gemm_nn(B, H, H, rh, ck + D * H, 1.0f, cc);
        for (int64_t b = 0; b < B; b++) {
            bool on = active(s, t, b);
            float *hr = hist ? hist + (t * B + b) * R : NULL;
            for (int64_t j = 0; j < H; j++) {
                float u = g[b * 2 * H + H + j], hp = h[b * H + j], ca = act_f(l->act, cc[b * H + j]);
                float nh = u * hp + (1 - u) * ca;
                if (hr) {
                    hr[j] = g[b * 2 * H + j];
                    hr[H + j] = u;
                    hr[2 * H + j] = ca;
                    hr[3 * H + j] = nh;
                }
                if (on) {
                    h[b * H + j] = nh;
                    y[(t * B + b) * H + j] = nh;
                }
            }
        }
    }
    return RECUR_OK;
}

static recur_code gru_v2_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                             lstate *st, float *hist, scratch *sc)
{
    int64_t B = s->B, D = l->in, H = l->units, R = row_floats(l);
    const float *kern = WIN(in, l, 0), *rk = WIN(in, l, 1), *bias = WIN(in, l, 2);
    float *xw = take(sc, s->steps * B * 3 * H), *hw = take(sc, B * 3 * H);
    if (!xw || !hw) return RECUR_OUT_OF_MEMORY;
    project(x, s->steps * B, D, kern, 3 * H, bias, xw);
    float *h = st->s[0];
    for (int64_t t = 0; t < s->steps; t++) {
        for (int64_t b = 0; b < B; b++) memcpy(hw + b * 3 * H, bias + 3 * H, (size_t)(3 * H) * sizeof *hw);
        gemm_nn(B, 3 * H, H, h, rk, 1.0f, hw);
        for (int64_t b = 0; b < B; b++) {
            bool on = active(s, t, b);
            const float *xr = xw + (t * B + b) * 3 * H, *hr = hw + b * 3 * H;
            float *rec = hist ? hist + (t * B + b) * R : NULL;
            for (int64_t j = 0; j < H; j++) {
                float z = sigm(xr[j] + hr[j]);
                float r = sigm(xr[H + j] + hr[H + j]);
                float hh = act_f(l->act, xr[2 * H + j] + r * hr[2 * H + j]);
                float nh = z * h[b * H + j] + (1 - z) * hh;
                if (rec) {
                    rec[j] = z;
                    rec[H + j] = r;
                    rec[2 * H + j] = hh;
                    rec[3 * H + j] = hr[2 * H + j];
                    rec[4 * H + j] = nh;
                }
                if (on) {
                    h[b * H + j] = nh;
                    y[(t * B + b) * H + j] = nh;
                }
            }
        }
    }
    return RECUR_OK;
}

/* Point a layer's state at the flattened state arrays (splitting a concatenated LSTM state). */
static bool bind_state(const rc_fused_layer *l, recur_array *const *states, int64_t B, lstate *st, scratch *sc)
{
    int64_t H = l->units, P = layer_out(l);
    if (!l->state_concat) {
        st->s[0] = states[l->state0]->data;
        st->s[1] = l->nstate > 1 ? states[l->state0 + 1]->data : NULL;
        return true;
    }
    float *cat = states[l->state0]->data;
    st->s[0] = take(sc, B * H);
    st->s[1] = take(sc, B * P);
    if (!st->s[0] || !st->s[1]) return false;
    for (int64_t b = 0; b < B; b++) {
        memcpy(st->s[0] + b * H, cat + b * (H + P), (size_t)H * sizeof(float));
        memcpy(st->s[1] + b * P, cat + b * (H + P) + H, (size_t)P * sizeof(float));
    }
    return true;
}

static void unbind_state(const rc_fused_layer *l, recur_array *const *states, int64_t B, const lstate *st)
{
    if (!l->state_concat) return;
    int64_t H = l->units, P = layer_out(l);
    float *cat = states[l->state0]->data;
    for (int64_t b = 0; b < B; b++) {
        memcpy(cat + b * (H + P), st->s[0] + b * H, (size_t)H * sizeof(float));
        memcpy(cat + b * (H + P) + H, st->s[1] + b * P, (size_t)P * sizeof(float));
    }
}

static seqinfo seq_of(const recur_array *x, const recur_array *len)
{
    seqinfo s = {.len = len, .T = x->shape.dims[0], .B = x->shape.dims[1], .steps = x->shape.dims[0]};
    if (len) {
        s.steps = 0;
        for (int64_t b = 0; b < s.B; b++) s.steps = RC_MAX(s.steps, (int64_t)rc_array_get(len, b));
    }
    return s;
}

recur_code rc_fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                            recur_array *const *init, recur_array **final, recur_array *out, float *hist)
{
    (void)init; /* the caller copied init into final */
    seqinfo s = seq_of(x, len);
    const float *cur = x->data;
    float *layer_y[RC_ARRAY_LEN(spec->layers)] = {0};
    scratch sc = {0};
    recur_code code = RECUR_OK;
    for (int i = 0; i < spec->nlayers && !code; i++) {
        const rc_fused_layer *l = &spec->layers[i];
        float *dst = out->data;
        if (i < spec->nlayers - 1) {
            /* intermediate outputs: the next layer's input (zero past each length) */
            dst = layer_y[i] = rc_calloc((size_t)(s.T * s.B * layer_out(l)) + 1, sizeof(float));
            if (!dst) {
                code = RECUR_OUT_OF_MEMORY;
                break;
            }
        }
        lstate st;
        if (!bind_state(l, final, s.B, &st, &sc)) {
            code = RECUR_OUT_OF_MEMORY;
            break;
        }
        switch (l->kind) {
        case RC_FUSED_RNN: code = rnn_fwd(l, k->in, &s, cur, dst, &st, hist, &sc); break;
        case RC_FUSED_LSTM: code = lstm_fwd(l, k->in, &s, cur, dst, &st, hist, &sc); break;
        case RC_FUSED_GRU: code = gru_fwd(l, k->in, &s, cur, dst, &st, hist, &sc); break;
        default: code = gru_v2_fwd(l, k->in, &s, cur, dst, &st, hist, &sc); break;
        }
        unbind_state(l, final, s.B, &st);
        drop_all(&sc);
        if (hist) hist += s.T * s.B * row_floats(l);
        cur = dst;
    }
    for (int i = 0; i < spec->nlayers; i++) rc_free(layer_y[i]);
    drop_all(&sc);
    return code == RECUR_OUT_OF_MEMORY ? rc_kerr(k, code, "Out of memory in the fused RNN kernel") : code;
}

/* ================================================================== backward */

/* Backward context of one layer. */
typedef struct bctx {
    const rc_fused_layer *l;
    const seqinfo *s;
    recur_array *const *in;   /* forward op inputs (weights) */
    recur_array **dcap;       /* capture gradients */
    int first;
    const float *x;           /* layer input [T, B, D] */
    const float *hist;        /* this layer's history */
    const float *h0, *c0;     /* initial states */
    float *dy;                /* gradient of the layer output [T, B, O] (modified: masked) */
    float *dx;                /* gradient of the layer input [T, B, D] (written) */
    float *dh, *dc;           /* in: gradient of the final state; out: of the initial state */
    scratch *sc;
} bctx;

/* y_{t-1} of a layer (its recurrent input at step t): history or the initial state. */
static const float *prev_h(const bctx *c, int64_t t, int64_t off, int64_t R, float *buf, int64_t P)
{
    int64_t B = c->s->B;
    if (t == 0) return c->h0;
    const float *src = c->hist + (t - 1) * B * R + off;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < P; j++) buf[b * P + j] = clampf(src[b * R + j], c->l->kind == RC_FUSED_LSTM ? c->l->proj_clip : 0);
    return buf;
}

/* Zero the rows of dy past their lengths (the forward output there was a constant zero). */
static void mask_dy(const bctx *c, int64_t O)
{
    if (!c->s->len) return;
    for (int64_t t = 0; t < c->s->T; t++)
        for (int64_t b = 0; b < c->s->B; b++)
            if (!active(c->s, t, b)) memset(c->dy + (t * c->s->B + b) * O, 0, (size_t)O * sizeof(float));
}

static recur_code rnn_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, S = c->s->steps;
    const float *kern = WIN(c->in, l, 0);
    float *dG = take(c->sc, S * B * H), *hp = take(c->sc, S * B * H), *dhn = take(c->sc, B * H);
    if (!dG || !hp || !dhn) return RECUR_OUT_OF_MEMORY;
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        const float *hist = c->hist + t * B * H;
        memcpy(hp + t * B * H, t ? c->hist + (t - 1) * B * H : c->h0, (size_t)(B * H) * sizeof(float));
        float *g = dG + t * B * H;
        for (int64_t b = 0; b < B; b++) {
            if (!active(c->s, t, b)) continue;
            for (int64_t j = 0; j < H; j++) {
                float d = dh[b * H + j] + c->dy[(t * B + b) * H + j];
                g[b * H + j] = d * act_d(l->act, hist[b * H + j]);
            }
        }
        memcpy(dhn, dh, (size_t)(B * H) * sizeof(float));
        gemm_nt(B, H, H, g, H, kern + D * H, H, 0.0f, dh, H);
        for (int64_t b = 0; b < B; b++)
            if (!active(c->s, t, b)) memcpy(dh + b * H, dhn + b * H, (size_t)H * sizeof(float));
    }
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    gemm_tn_acc(D, H, S * B, c->x, D, dG, H, dK, H);
    gemm_tn_acc(H, H, S * B, hp, H, dG, H, dK + D * H, H);
    colsum_acc(dG, S * B, H, db);
    gemm_nt(S * B, D, H, dG, H, kern, H, 0.0f, c->dx, D);
    return RECUR_OK;
}

static recur_code lstm_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, R = row_floats(l), S = c->s->steps;
    const float *kern = WIN(c->in, l, 0);
    const float *wf = l->peepholes ? WIN(c->in, l, 2) : NULL, *wi = l->peepholes ? WIN(c->in, l, 3) : NULL,
                *wo = l->peepholes ? WIN(c->in, l, 4) : NULL;
    int pi = l->peepholes ? 5 : 2;
    const float *proj = l->proj > 0 ? WIN(c->in, l, pi) : NULL;
    float *dG = take(c->sc, S * B * G), *hp = take(c->sc, S * B * P), *dm = take(c->sc, B * H);
    float *mpre = proj ? take(c->sc, S * B * H) : NULL, *dmr = proj ? take(c->sc, S * B * P) : NULL;
    float *dhn = take(c->sc, B * P), *dpe = l->peepholes ? take(c->sc, 3 * H) : NULL;
    if (!dG || !hp || !dm || !dhn || (proj && (!mpre || !dmr)) || (l->peepholes && !dpe)) return RECUR_OUT_OF_MEMORY;
    float *dh = c->dh, *dc = c->dc;
    for (int64_t t = S - 1; t >= 0; t--) {
        const float *hrow = c->hist + t * B * R;
        prev_h(c, t, 5 * H, R, hp + t * B * P, P);
        if (t == 0) memcpy(hp, c->h0, (size_t)(B * P) * sizeof(float));
        /* gradient reaching m (before the projection) */
        for (int64_t b = 0; b < B; b++) {
            bool on = active(c->s, t, b);
            for (int64_t j = 0; j < P; j++) {
                float d = on ? dh[b * P + j] + c->dy[(t * B + b) * P + j] : 0;
                if (proj) d *= clip_pass(hrow[b * R + 5 * H + j], l->proj_clip);
                if (proj) dmr[(t * B + b) * P + j] = d;
                else dm[b * H + j] = d;
            }
        }
        if (proj) gemm_nt(B, H, P, dmr + t * B * P, P, proj, P, 0.0f, dm, H);
        float *g = dG + t * B * G;
        for (int64_t b = 0; b < B; b++) {
            if (!active(c->s, t, b)) continue;
            const float *r = hrow + b * R;
            const float *cprev = t ? NULL : c->c0 + b * H;
            for (int64_t j = 0; j < H; j++) {
                float is = r[j], ja = r[H + j], fs = r[2 * H + j], os = r[3 * H + j], craw = r[4 * H + j];
                float nc = clampf(craw, l->cell_clip), a = act_f(l->act, nc);
                float cp = cprev ? cprev[j] : clampf(c->hist[(t - 1) * B * R + b * R + 4 * H + j], l->cell_clip);
                if (mpre) mpre[(t * B + b) * H + j] = a * os;
                float dmj = dm[b * H + j];
                float do_pre = dmj * a * os * (1 - os);
                float dnc = dc[b * H + j] + dmj * os * act_d(l->act, a) + (wo ? do_pre * wo[j] : 0);
                float dcr = dnc * clip_pass(craw, l->cell_clip);
                float di = dcr * ja * is * (1 - is), dj = dcr * is * act_d(l->act, ja), df = dcr * cp * fs * (1 - fs);
                float dcp = dcr * fs + (wf ? df * wf[j] : 0) + (wi ? di * wi[j] : 0);
                if (dpe) {
                    dpe[j] += df * cp;
                    dpe[H + j] += di * cp;
                    dpe[2 * H + j] += do_pre * nc;
                }
                g[b * G + j] = di;
                g[b * G + H + j] = dj;
                g[b * G + 2 * H + j] = df;
                g[b * G + 3 * H + j] = do_pre;
                dc[b * H + j] = dcp;
            }
        }
        memcpy(dhn, dh, (size_t)(B * P) * sizeof(float));
        gemm_nt(B, P, G, g, G, kern + D * G, G, 0.0f, dh, P);
        for (int64_t b = 0; b < B; b++)
            if (!active(c->s, t, b)) memcpy(dh + b * P, dhn + b * P, (size_t)P * sizeof(float));
    }
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    gemm_tn_acc(D, G, S * B, c->x, D, dG, G, dK, G);
    gemm_tn_acc(P, G, S * B, hp, P, dG, G, dK + D * G, G);
    colsum_acc(dG, S * B, G, db);
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

static recur_code gru_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, R = row_floats(l), S = c->s->steps;
    const float *gk = WIN(c->in, l, 0), *ck = WIN(c->in, l, 2);
    float *dGg = take(c->sc, S * B * 2 * H), *dC = take(c->sc, S * B * H), *hp = take(c->sc, S * B * H),
          *rh = take(c->sc, S * B * H), *drh = take(c->sc, B * H), *dhn = take(c->sc, B * H);
    if (!dGg || !dC || !hp || !rh || !drh || !dhn) return RECUR_OUT_OF_MEMORY;
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        const float *hrow = c->hist + t * B * R;
        float *hpt = hp + t * B * H;
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++)
                hpt[b * H + j] = t ? c->hist[(t - 1) * B * R + b * R + 3 * H + j] : c->h0[b * H + j];
        memcpy(dhn, dh, (size_t)(B * H) * sizeof(float));
        float *dct = dC + t * B * H, *dg = dGg + t * B * 2 * H;
        for (int64_t b = 0; b < B; b++) {
            bool on = active(c->s, t, b);
            for (int64_t j = 0; j < H; j++) {
                const float *r = hrow + b * R;
                float u = r[H + j], ca = r[2 * H + j], hv = hpt[b * H + j];
                rh[(t * B + b) * H + j] = r[j] * hv;
                float d = on ? dh[b * H + j] + c->dy[(t * B + b) * H + j] : 0;
                dct[b * H + j] = d * (1 - u) * act_d(l->act, ca);
                dg[b * 2 * H + H + j] = d * (hv - ca) * u * (1 - u);
                dh[b * H + j] = d * u; /* direct path; more added below */
            }
        }
        gemm_nt(B, H, H, dct, H, ck + D * H, H, 0.0f, drh, H);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) {
                float rr = hrow[b * R + j];
                bool on = active(c->s, t, b);
                dg[b * 2 * H + j] = on ? drh[b * H + j] * hpt[b * H + j] * rr * (1 - rr) : 0;
                dh[b * H + j] += on ? drh[b * H + j] * rr : 0;
            }
        gemm_nt(B, H, 2 * H, dg, 2 * H, gk + D * 2 * H, 2 * H, 1.0f, dh, H);
        for (int64_t b = 0; b < B; b++)
            if (!active(c->s, t, b)) memcpy(dh + b * H, dhn + b * H, (size_t)H * sizeof(float));
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

static recur_code gru_v2_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, R = row_floats(l), S = c->s->steps, G = 3 * H;
    const float *kern = WIN(c->in, l, 0), *rk = WIN(c->in, l, 1);
    float *dMx = take(c->sc, S * B * G), *dMh = take(c->sc, S * B * G), *hp = take(c->sc, S * B * H), *dhn = take(c->sc, B * H);
    if (!dMx || !dMh || !hp || !dhn) return RECUR_OUT_OF_MEMORY;
    float *dh = c->dh;
    for (int64_t t = S - 1; t >= 0; t--) {
        const float *hrow = c->hist + t * B * R;
        float *hpt = hp + t * B * H, *mx = dMx + t * B * G, *mh = dMh + t * B * G;
        memcpy(dhn, dh, (size_t)(B * H) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            bool on = active(c->s, t, b);
            const float *r = hrow + b * R;
            for (int64_t j = 0; j < H; j++) {
                float hv = t ? c->hist[(t - 1) * B * R + b * R + 4 * H + j] : c->h0[b * H + j];
                hpt[b * H + j] = hv;
                float z = r[j], rr = r[H + j], hh = r[2 * H + j], hm = r[3 * H + j];
                float d = on ? dh[b * H + j] + c->dy[(t * B + b) * H + j] : 0;
                float dhh = d * (1 - z) * act_d(l->act, hh);
                float dz = d * (hv - hh) * z * (1 - z);
                float dr = dhh * hm * rr * (1 - rr);
                mx[b * G + j] = dz;
                mx[b * G + H + j] = dr;
                mx[b * G + 2 * H + j] = dhh;
                mh[b * G + j] = dz;
                mh[b * G + H + j] = dr;
                mh[b * G + 2 * H + j] = dhh * rr;
                dh[b * H + j] = d * z;
            }
        }
        gemm_nt(B, H, G, mh, G, rk, G, 1.0f, dh, H);
        for (int64_t b = 0; b < B; b++)
            if (!active(c->s, t, b)) memcpy(dh + b * H, dhn + b * H, (size_t)H * sizeof(float));
    }
    float *dK = DW(c->dcap, c->first, l, 0), *dR = DW(c->dcap, c->first, l, 1), *db = DW(c->dcap, c->first, l, 2);
    gemm_tn_acc(D, G, S * B, c->x, D, dMx, G, dK, G);
    gemm_tn_acc(H, G, S * B, hp, H, dMh, G, dR, G);
    colsum_acc(dMx, S * B, G, db);
    colsum_acc(dMh, S * B, G, db + G);
    gemm_nt(S * B, D, G, dMx, G, kern, G, 0.0f, c->dx, D);
    return RECUR_OK;
}

recur_code rc_fused_backward(rc_kctx *k, const rc_fused *spec, const float *hist, int64_t steps,
                             recur_array *const *fwd_in, const recur_array *len, recur_array *const *init,
                             const recur_array *dout, const recur_array *const *dfinal, recur_array *dx,
                             recur_array **dinit, recur_array **dcap, int first_capture)
{
    (void)dfinal; /* dinit arrives holding d_final */
    const recur_array *x = fwd_in[0];
    seqinfo s = seq_of(x, len);
    s.steps = steps;
    int64_t T = s.T, B = s.B;
    /* layer inputs and history offsets */
    const float *hl[RC_ARRAY_LEN(spec->layers)];
    float *ylay[RC_ARRAY_LEN(spec->layers)] = {0};
    const float *h = hist;
    recur_code code = RECUR_OK;
    scratch sc = {0};
    for (int i = 0; i < spec->nlayers; i++) {
        hl[i] = h;
        h += T * B * row_floats(&spec->layers[i]);
    }
    /* reconstruct each intermediate layer's output sequence (the next layer's input) */
    for (int i = 0; i + 1 < spec->nlayers; i++) {
        const rc_fused_layer *l = &spec->layers[i];
        int64_t O = layer_out(l), R = row_floats(l), off = l->kind == RC_FUSED_LSTM ? 5 * l->units
                                                         : l->kind == RC_FUSED_GRU ? 3 * l->units
                                                         : l->kind == RC_FUSED_GRU_V2 ? 4 * l->units : 0;
        ylay[i] = rc_calloc((size_t)(T * B * O) + 1, sizeof(float));
        if (!ylay[i]) {
            code = RECUR_OUT_OF_MEMORY;
            goto done;
        }
        for (int64_t t = 0; t < steps; t++)
            for (int64_t b = 0; b < B; b++)
                if (active(&s, t, b))
                    for (int64_t j = 0; j < O; j++)
                        ylay[i][(t * B + b) * O + j] = clampf(hl[i][(t * B + b) * R + off + j], l->kind == RC_FUSED_LSTM ? l->proj_clip : 0);
    }
    /* dy of the top layer: a copy of dout; lower layers get the dx of the layer above */
    int top = spec->nlayers - 1;
    float *dy = rc_malloc(((size_t)dout->size + 1) * sizeof(float));
    if (!dy) {
        code = RECUR_OUT_OF_MEMORY;
        goto done;
    }
    memcpy(dy, dout->data, dout->nbytes);
    for (int i = top; i >= 0 && !code; i--) {
        const rc_fused_layer *l = &spec->layers[i];
        int64_t D = l->in, H = l->units, P = layer_out(l);
        float *dxl = i == 0 ? (float *)dx->data : rc_calloc((size_t)(T * B * D) + 1, sizeof(float));
        float *dh = NULL, *dc = NULL, *h0 = NULL, *c0 = NULL;
        if (!dxl) {
            rc_free(dy);
            dy = NULL;
            code = RECUR_OUT_OF_MEMORY;
            break;
        }
        /* state gradients and initial states for this layer */
        if (l->state_concat) {
            dc = take(&sc, B * H);
            dh = take(&sc, B * P);
            c0 = take(&sc, B * H);
            h0 = take(&sc, B * P);
            if (!dc || !dh || !c0 || !h0) code = RECUR_OUT_OF_MEMORY;
            else {
                const float *cd = dinit[l->state0]->data, *ci = init[l->state0]->data;
                for (int64_t b = 0; b < B; b++) {
                    memcpy(dc + b * H, cd + b * (H + P), (size_t)H * sizeof(float));
                    memcpy(dh + b * P, cd + b * (H + P) + H, (size_t)P * sizeof(float));
                    memcpy(c0 + b * H, ci + b * (H + P), (size_t)H * sizeof(float));
                    memcpy(h0 + b * P, ci + b * (H + P) + H, (size_t)P * sizeof(float));
                }
            }
        } else if (l->kind == RC_FUSED_LSTM) {
            dc = dinit[l->state0]->data;
            dh = dinit[l->state0 + 1]->data;
            c0 = init[l->state0]->data;
            h0 = init[l->state0 + 1]->data;
        } else {
            dh = dinit[l->state0]->data;
            h0 = init[l->state0]->data;
        }
        if (!code) {
            bctx c = {.l = l, .s = &s, .in = fwd_in, .dcap = dcap, .first = first_capture,
                      .x = i == 0 ? (const float *)x->data : ylay[i - 1], .hist = hl[i], .h0 = h0, .c0 = c0, .dy = dy,
                      .dx = dxl, .dh = dh, .dc = dc, .sc = &sc};
            mask_dy(&c, P);
            switch (l->kind) {
            case RC_FUSED_RNN: code = rnn_bwd(&c); break;
            case RC_FUSED_LSTM: code = lstm_bwd(&c); break;
            case RC_FUSED_GRU: code = gru_bwd(&c); break;
            default: code = gru_v2_bwd(&c); break;
            }
        }
        if (!code && l->state_concat) {
            float *cd = dinit[l->state0]->data;
            for (int64_t b = 0; b < B; b++) {
                memcpy(cd + b * (H + P), dc + b * H, (size_t)H * sizeof(float));
                memcpy(cd + b * (H + P) + H, dh + b * P, (size_t)P * sizeof(float));
            }
        }
        drop_all(&sc);
        /* (rows past their lengths and steps past the longest carry no gradient: their dG rows
         * are zero, and dx beyond the steps run keeps the caller's zeros) */
        rc_free(dy);
        dy = i > 0 ? dxl : NULL;
    }
    rc_free(dy);
done:
    for (int i = 0; i < spec->nlayers; i++) rc_free(ylay[i]);
    drop_all(&sc);
    return code == RECUR_OUT_OF_MEMORY ? rc_kerr(k, code, "Out of memory in the fused RNN backward kernel") : code;
}
