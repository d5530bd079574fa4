/*
 * fused.c - whole-sequence kernels for the built-in cells (float32, time-major):
 * the input projection for all steps as one GEMM, then per step one recurrent GEMM and one
 * pass over the gates. Rows past their sequence length keep their state and output zeros.
 *
 * Shapes: x [T, B, D]; kernels as the cells store them ([D+H, nG*H] with the input rows
 * first); outputs [T, B, O]; states [B, S].
 */
#include "rnn/rnn_impl.h"

#include <cblas.h>
#include <math.h>

static float act_f(recur_activation a, float v)
{
    switch (a) {
    case RECUR_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case RECUR_ACT_RELU: return v > 0 ? v : 0;
    case RECUR_ACT_IDENTITY: return v;
    default: return tanhf(v);
    }
}

static inline float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

static inline float clampf(float v, float c) { return c > 0 ? (v < -c ? -c : v > c ? c : v) : v; }

/* out[T*B, n] = x[T*B, d] @ w[d, n] (+ bias[n] broadcast) */
static void project(const float *x, int64_t rows, int64_t d, const float *w, int64_t n, const float *bias, float *out)
{
    if (bias)
        for (int64_t r = 0; r < rows; r++) memcpy(out + r * n, bias, (size_t)n * sizeof *out);
    if (rows && n && d)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)d, 1.0f, x, (int)d, w, (int)n,
                    bias ? 1.0f : 0.0f, out, (int)n);
    else if (!bias)
        memset(out, 0, (size_t)(rows * n) * sizeof *out);
}

/* acc[b, n] += h[b, k] @ w[k, n] */
static void recur_gemm(const float *h, int64_t b, int64_t k, const float *w, int64_t n, float *acc)
{
    if (b && n && k)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)n, (int)k, 1.0f, h, (int)k, w, (int)n, 1.0f,
                    acc, (int)n);
}

typedef struct seqinfo {
    const recur_array *len; /* NULL: all rows run every step */
    int64_t T, B, steps;
} seqinfo;

static inline bool active(const seqinfo *s, int64_t t, int64_t b)
{
    return !s->len || t < (int64_t)rc_array_get(s->len, b);
}

static const float *W(rc_kctx *k, const rc_fused_layer *l, int i) { return k->in[l->w[i]]->data; }

/* ------------------------------------------------------------------ BasicRNNCell */
static recur_code rnn_layer(rc_kctx *k, const rc_fused_layer *l, const seqinfo *s, const float *x, float *y,
                            recur_array **fin)
{
    int64_t B = s->B, D = l->in, H = l->units;
    const float *kern = W(k, l, 0), *bias = W(k, l, 1);
    float *xw = rc_malloc((size_t)(s->steps * B * H + 1) * sizeof *xw);
    float *g = rc_malloc((size_t)(B * H + 1) * sizeof *g);
    if (!xw || !g) {
        rc_free(xw);
        rc_free(g);
        return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
    }
    project(x, s->steps * B, D, kern, H, bias, xw);
    float *h = fin[l->state0]->data;
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(g, xw + t * B * H, (size_t)(B * H) * sizeof *g);
        recur_gemm(h, B, H, kern + D * H, H, g);
        for (int64_t b = 0; b < B; b++) {
            if (!active(s, t, b)) continue;
            for (int64_t j = 0; j < H; j++) {
                float v = act_f(l->act, g[b * H + j]);
                h[b * H + j] = v;
                y[(t * B + b) * H + j] = v;
            }
        }
    }
    rc_free(xw);
    rc_free(g);
    return RECUR_OK;
}

/* ------------------------------------------------------------------ LSTM (basic and full) */
static recur_code lstm_layer(rc_kctx *k, const rc_fused_layer *l, const seqinfo *s, const float *x, float *y,
                             recur_array **fin)
{
    int64_t B = s->B, D = l->in, H = l->units, P = l->proj > 0 ? l->proj : H, G = 4 * H;
    const float *kern = W(k, l, 0), *bias = W(k, l, 1);
    const float *wf = l->peepholes ? W(k, l, 2) : NULL, *wi = l->peepholes ? W(k, l, 3) : NULL,
                *wo = l->peepholes ? W(k, l, 4) : NULL;
    const float *proj = l->proj > 0 ? W(k, l, l->peepholes ? 5 : 2) : NULL;
    float *xw = rc_malloc((size_t)(s->steps * B * G + 1) * sizeof *xw);
    float *gt = rc_malloc((size_t)(B * G + 1) * sizeof *gt);
    float *m = rc_malloc((size_t)(B * H + 1) * sizeof *m);
    float *mp = rc_malloc((size_t)(B * P + 1) * sizeof *mp);
    float *c = NULL, *h = NULL, *cs = NULL;
    if (l->state_concat) {
        /* one [B, H+P] state: c then h; work on separate copies */
        cs = fin[l->state0]->data;
        c = rc_malloc((size_t)(B * H + 1) * sizeof *c);
        h = rc_malloc((size_t)(B * P + 1) * sizeof *h);
        if (c && h)
            for (int64_t b = 0; b < B; b++) {
                memcpy(c + b * H, cs + b * (H + P), (size_t)H * sizeof *c);
                memcpy(h + b * P, cs + b * (H + P) + H, (size_t)P * sizeof *h);
            }
    } else {
        c = fin[l->state0]->data;
        h = fin[l->state0 + 1]->data;
    }
    recur_code code = RECUR_OK;
    if (!xw || !gt || !m || !mp || !c || !h) {
        code = rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        goto done;
    }
    project(x, s->steps * B, D, kern, G, bias, xw);
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(gt, xw + t * B * G, (size_t)(B * G) * sizeof *gt);
        recur_gemm(h, B, P, kern + D * G, G, gt);
        for (int64_t b = 0; b < B; b++) {
            const float *gi = gt + b * G, *gj = gi + H, *gf = gi + 2 * H, *go = gi + 3 * H;
            float *cb = c + b * H, *mb = m + b * H;
            bool on = active(s, t, b);
            for (int64_t j = 0; j < H; j++) {
                float cp = cb[j];
                float fg = gf[j] + l->forget_bias + (wf ? wf[j] * cp : 0);
                float ig = gi[j] + (wi ? wi[j] * cp : 0);
                float nc = cp * sigm(fg) + sigm(ig) * act_f(l->act, gj[j]);
                nc = clampf(nc, l->cell_clip);
                float og = go[j] + (wo ? wo[j] * nc : 0);
                mb[j] = act_f(l->act, nc) * sigm(og);
                if (on) cb[j] = nc;
            }
        }
        const float *mo = m;
        if (proj) {
            memset(mp, 0, (size_t)(B * P) * sizeof *mp);
            recur_gemm(m, B, H, proj, P, mp);
            if (l->proj_clip > 0)
                for (int64_t i = 0; i < B * P; i++) mp[i] = clampf(mp[i], l->proj_clip);
            mo = mp;
        }
        for (int64_t b = 0; b < B; b++) {
            if (!active(s, t, b)) continue;
            memcpy(h + b * P, mo + b * P, (size_t)P * sizeof *h);
            memcpy(y + (t * B + b) * P, mo + b * P, (size_t)P * sizeof *y);
        }
    }
    if (l->state_concat)
        for (int64_t b = 0; b < B; b++) {
            memcpy(cs + b * (H + P), c + b * H, (size_t)H * sizeof *c);
            memcpy(cs + b * (H + P) + H, h + b * P, (size_t)P * sizeof *h);
        }
done:
    if (l->state_concat) {
        rc_free(c);
        rc_free(h);
    }
    rc_free(xw);
    rc_free(gt);
    rc_free(m);
    rc_free(mp);
    return code;
}

/* ------------------------------------------------------------------ GRU (TensorFlow's) */
static recur_code gru_layer(rc_kctx *k, const rc_fused_layer *l, const seqinfo *s, const float *x, float *y,
                            recur_array **fin)
{
    int64_t B = s->B, D = l->in, H = l->units;
    const float *gk = W(k, l, 0), *gb = W(k, l, 1), *ck = W(k, l, 2), *cb = W(k, l, 3);
    float *xg = rc_malloc((size_t)(s->steps * B * 2 * H + 1) * sizeof *xg);
    float *xc = rc_malloc((size_t)(s->steps * B * H + 1) * sizeof *xc);
    float *g = rc_malloc((size_t)(B * 2 * H + 1) * sizeof *g), *cc = rc_malloc((size_t)(B * H + 1) * sizeof *cc);
    float *rh = rc_malloc((size_t)(B * H + 1) * sizeof *rh);
    recur_code code = RECUR_OK;
    if (!xg || !xc || !g || !cc || !rh) {
        code = rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        goto done;
    }
    project(x, s->steps * B, D, gk, 2 * H, gb, xg);
    project(x, s->steps * B, D, ck, H, cb, xc);
    float *h = fin[l->state0]->data;
    for (int64_t t = 0; t < s->steps; t++) {
        memcpy(g, xg + t * B * 2 * H, (size_t)(B * 2 * H) * sizeof *g);
        recur_gemm(h, B, H, gk + D * 2 * H, 2 * H, g);
        for (int64_t i = 0; i < B * 2 * H; i++) g[i] = sigm(g[i]);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++) rh[b * H + j] = g[b * 2 * H + j] * h[b * H + j];
        memcpy(cc, xc + t * B * H, (size_t)(B * H) * sizeof *cc);
        recur_gemm(rh, B, H, ck + D * H, H, cc);
        for (int64_t b = 0; b < B; b++) {
            if (!active(s, t, b)) continue;
            for (int64_t j = 0; j < H; j++) {
                float u = g[b * 2 * H + H + j], hp = h[b * H + j];
                float nh = u * hp + (1 - u) * act_f(l->act, cc[b * H + j]);
                h[b * H + j] = nh;
                y[(t * B + b) * H + j] = nh;
            }
        }
    }
done:
    rc_free(xg);
    rc_free(xc);
    rc_free(g);
    rc_free(cc);
    rc_free(rh);
    return code;
}

/* ------------------------------------------------------------------ GRU with reset after */
static recur_code gru_v2_layer(rc_kctx *k, const rc_fused_layer *l, const seqinfo *s, const float *x, float *y,
                               recur_array **fin)
{
    int64_t B = s->B, D = l->in, H = l->units;
    const float *kern = W(k, l, 0), *rk = W(k, l, 1), *bias = W(k, l, 2);
    float *xw = rc_malloc((size_t)(s->steps * B * 3 * H + 1) * sizeof *xw);
    float *hw = rc_malloc((size_t)(B * 3 * H + 1) * sizeof *hw);
    recur_code code = RECUR_OK;
    if (!xw || !hw) {
        code = rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
        goto done;
    }
    project(x, s->steps * B, D, kern, 3 * H, bias, xw);
    float *h = fin[l->state0]->data;
    for (int64_t t = 0; t < s->steps; t++) {
        for (int64_t b = 0; b < B; b++) memcpy(hw + b * 3 * H, bias + 3 * H, (size_t)(3 * H) * sizeof *hw);
        recur_gemm(h, B, H, rk, 3 * H, hw);
        for (int64_t b = 0; b < B; b++) {
            if (!active(s, t, b)) continue;
            const float *xr = xw + (t * B + b) * 3 * H, *hr = hw + b * 3 * H;
            for (int64_t j = 0; j < H; j++) {
                float z = sigm(xr[j] + hr[j]);
                float r = sigm(xr[H + j] + hr[H + j]);
                float hh = act_f(l->act, xr[2 * H + j] + r * hr[2 * H + j]);
                float nh = z * h[b * H + j] + (1 - z) * hh;
                h[b * H + j] = nh;
                y[(t * B + b) * H + j] = nh;
            }
        }
    }
done:
    rc_free(xw);
    rc_free(hw);
    return code;
}

static int64_t layer_out(const rc_fused_layer *l)
{
    return l->kind == RC_FUSED_LSTM && l->proj > 0 ? l->proj : l->units;
}

recur_code rc_fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                            recur_array *const *init, recur_array **final, recur_array *out)
{
    (void)init; /* the caller copied init into final */
    seqinfo s = {.len = len, .T = x->shape.dims[0], .B = x->shape.dims[1], .steps = x->shape.dims[0]};
    if (len) {
        s.steps = 0;
        for (int64_t b = 0; b < s.B; b++) s.steps = RC_MAX(s.steps, (int64_t)rc_array_get(len, b));
    }
    const float *cur = x->data;
    float *tmp[2] = {NULL, NULL};
    recur_code code = RECUR_OK;
    for (int i = 0; i < spec->nlayers && code == RECUR_OK; i++) {
        const rc_fused_layer *l = &spec->layers[i];
        float *dst;
        if (i == spec->nlayers - 1) {
            dst = out->data;
        } else {
            size_t n = (size_t)(s.T * s.B * layer_out(l));
            rc_free(tmp[i & 1]);
            tmp[i & 1] = rc_calloc(n + 1, sizeof(float));
            if (!tmp[i & 1]) {
                code = rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory");
                break;
            }
            dst = tmp[i & 1];
        }
        switch (l->kind) {
        case RC_FUSED_RNN: code = rnn_layer(k, l, &s, cur, dst, final); break;
        case RC_FUSED_LSTM: code = lstm_layer(k, l, &s, cur, dst, final); break;
        case RC_FUSED_GRU: code = gru_layer(k, l, &s, cur, dst, final); break;
        default: code = gru_v2_layer(k, l, &s, cur, dst, final); break;
        }
        cur = dst;
    }
    rc_free(tmp[0]);
    rc_free(tmp[1]);
    return code;
}
