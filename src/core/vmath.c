/*
 * vmath.c - sigmoid, tanh and exp over float arrays (see vmath.h): AVX-512F, AVX2+FMA and
 * portable scalar C, chosen once at run time.
 *
 * Method
 *   exp(x) = 2^k p(r): k = round(x log2(e)), r = x - k ln2 with ln2 in two parts (Cody-Waite;
 *   the FMA paths use ln2 rounded to float plus its remainder, the scalar path Cephes' 9-bit
 *   head so that k*head is exact without FMA), |r| <= ln2/2 (a hair more after rounding), and
 *   p a degree-6 polynomial with p(0) = 1, p'(0) = 1 (Horner's scheme in the scalar path; the
 *   vector paths, bound by latency, evaluate p - 1 in Estrin's three levels and add the 1
 *   last). x is clamped to [-110, 89] first (exp is
 *   0 resp. inf in float beyond), so k is in [-159, 128]. 2^k is applied with one rounding even
 *   into the subnormal range: vscalefps on AVX-512, elsewhere two exact power-of-two factors
 *   2^(k/2) and 2^(k - k/2), each a normal float.
 *   sigmoid(x): e = exp(-|x|) in (0, 1]; 1/(1+e) for x >= 0 and e/(1+e) for x < 0, so that
 *   nothing overflows and the tiny results down to the subnormals near x = -104 keep their
 *   relative accuracy (on AVX-512, (p/(1+e)) 2^k, scaled after the division).
 *   tanh(x) = sign(x) t(|x|), |x| clamped to 10, where tanh is 1 in float. Scalar and AVX2:
 *   for |x| < 0.625 the odd polynomial x + x^3 Q(x^2) (no cancellation for small x); above,
 *   (1-e)/(1+e) with e = exp(-2|x|). AVX-512: one formula, -m/(2+m) with m = expm1(-2|x|) =
 *   2^k q + (2^k - 1), q = p(r) - 1 taken before the 1 is added (so small |x| loses nothing
 *   to cancellation), with fewer operations than both branches. For |x| < 2^-13, tanh(x) is x
 *   in float and is returned as is.
 *   NaN propagates: the clamps pass it on (MINPS/MAXPS return their second operand when either
 *   is NaN, and the scalar comparisons are written so that NaN keeps its value).
 *
 * Speed. On Intel cores a float operation with a subnormal operand or result (even one that
 * rounds to 0) takes a microcode assist of ~100 cycles. Outside the inherently subnormal results
 * (exp and sigmoid of x in about [-104, -87.3]) nothing here makes one: tiny inputs (|x| below
 * 2^-26, 2^-13 for tanh, where the result is 1, 1/2 or x) are replaced by 0 for the arithmetic,
 * scales that could underflow are clamped where the result cannot depend on them, and lanes
 * whose result is 0 have p set to 0 before scaling.
 *
 * Coefficients: minimax fits of the relative error, computed with Lawson's iteratively
 * reweighted least squares on 4000 Chebyshev nodes against mpmath (40 digits), then rounded to
 * float; the errors below are of the float-rounded coefficients, in exact arithmetic:
 *   exp:  p(r) = 1 + r + c2 r^2 + ... + c6 r^6 on [-ln2/2, ln2/2]; 3.8e-9.
 *   tanh: Q(u) = d0 + d1 u + ... + d4 u^4, u = x^2, for x in [0, 0.625]; 8.6e-9.
 * The rest of the 1e-6 budget goes to rounding: the sweeps in tests/test_vmath.c (every float
 * input against libm in double) measure at most 2.4e-7 for normal results and 1 unit of 2^-149
 * for subnormal ones, for every implementation.
 */
#include "vmath.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define RC_VMATH_X86 1
#include <immintrin.h>
#else
#define RC_VMATH_X86 0
#endif

/* ---------------------------------------------------------------- constants */
#define LOG2E 0x1.715476p+0f     /* log2(e) */
#define LN2_HI 0x1.62e430p-1f    /* ln2 rounded to float */
#define LN2_LO -0x1.05c610p-29f  /* ln2 - LN2_HI */
#define LN2_C1 0x1.63p-1f        /* 0.693359375: 9 bits, k*LN2_C1 exact for |k| < 2^15 */
#define LN2_C2 -0x1.bd0106p-13f  /* ln2 - LN2_C1 */
#define EXP_LO -110.0f           /* exp(x) rounds to 0 below about -103.98 */
#define EXP_HI 89.0f             /* and overflows above about 88.72 */
#define EXP_ZERO -104.0f         /* exp(x) < 2^-150 for x <= -104: rounds to 0 */
#define RND_MAGIC 0x1.8p23f      /* v + 1.5 2^23 - 1.5 2^23: v rounded to an integer (|v| < 2^22) */
#define SIGMOID_NARROW -87.0f   /* exp(-|x|) = p 2^k with k >= -126 above */
#define TINY_BITS 0x32800000     /* 2^-26: exp(x) is 1, sigmoid(x) 1/2 in float below */
#define EXP_C2 0x1.fffffcp-2f
#define EXP_C3 0x1.555492p-3f
#define EXP_C4 0x1.5558f2p-5f
#define EXP_C5 0x1.1239d4p-7f
#define EXP_C6 0x1.6a244cp-10f
#define TANH_SMALL 0.625f        /* polynomial below, exp form from here */
#define TANH_TINY 0x1p-13f       /* tanh(x) rounds to x below */
#define TANH_TINY_BITS 0x39000000u /* its bits */
#define TANH_SAT 10.0f           /* tanh(x) rounds to 1 for x > 9.01 */
#define TANH_D0 -0x1.555532p-2f
#define TANH_D1 0x1.110726p-3f
#define TANH_D2 -0x1.b83c5ap-5f
#define TANH_D3 0x1.52269ap-6f
#define TANH_D4 -0x1.75e1cap-8f

/* ---------------------------------------------------------------- scalar */
/* Branch-free, so that compilers can vectorise the fixed-size blocks below (GCC does, for SSE4,
 * at the library's -O2 -march=x86-64-v2). Selections between computed values go through bit
 * masks (fsel): a ?: would let the compiler sink the arms' arithmetic into branches, which it
 * then cannot if-convert (the arithmetic might trap). NaN is kept out of the float-to-int
 * conversions (undefined in C) and propagates otherwise. */
static inline uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float fsel(bool c, float a, float b) /* c ? a : b */
{
    uint32_t m = -(uint32_t)c;
    return bitsf((fbits(a) & m) | (fbits(b) & ~m));
}

static inline float pow2i(int32_t k) /* 2^k for k in [-126, 127] */
{
    return bitsf((uint32_t)(k + 127) << 23);
}

/* p ~ exp(r) where x = k ln2 + r; x in [EXP_LO, EXP_HI] or NaN (then p is NaN, k 0). */
static inline float exp_reduce1(float x, int32_t *k)
{
    float t = x * LOG2E;
    t = fsel(t == t, t, 0.0f);
    int32_t ki = (int32_t)(t + (t < 0 ? -0.5f : 0.5f));
    float kf = (float)ki;
    float r = (x - kf * LN2_C1) - kf * LN2_C2;
    float p = EXP_C6;
    p = p * r + EXP_C5;
    p = p * r + EXP_C4;
    p = p * r + EXP_C3;
    p = p * r + EXP_C2;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    *k = ki;
    return p;
}

/* p 2^k for k in [-159, 128], rounded once. */
static inline float scale1(float p, int32_t k)
{
    int32_t k1 = k / 2;
    return p * pow2i(k1) * pow2i(k - k1);
}

/* 0 for |x| < 2^-26 (where exp(x) is 1 and sigmoid(x) 1/2 in float), compared on the bits:
 * subnormal x would cost a microcode assist in any float operation on Intel cores, and tiny x
 * again where the polynomial's products underflow (no FMA here to hide them). */
static inline float flush_tiny(float x)
{
    return fsel((fbits(x) & 0x7fffffffu) < TINY_BITS, 0.0f, x);
}

/* The comparisons below are written so that NaN takes the branch that keeps it. */
static inline float exp1(float x)
{
    x = flush_tiny(x);
    x = fsel(x < EXP_LO, EXP_LO, x);
    x = fsel(x > EXP_HI, EXP_HI, x);
    int32_t k;
    float p = exp_reduce1(x, &k);
    p = fsel(x <= EXP_ZERO, 0.0f, p); /* no underflow where the result is 0 */
    return scale1(p, k);
}

static inline float sigmoid1(float x)
{
    float a = bitsf(fbits(flush_tiny(x)) | 0x80000000u); /* -|x| */
    a = fsel(a < EXP_LO, EXP_LO, a);
    int32_t k;
    float p = exp_reduce1(a, &k);
    p = fsel(a <= EXP_ZERO, 0.0f, p);
    float e = p * pow2i(k > -64 ? k : -64); /* for 1 + e only */
    float num = scale1(p, k & -(int32_t)(x < 0)); /* e where x < 0 */
    return fsel(x < 0, num, 1.0f) / (1.0f + e);
}

static inline float tanh1(float x)
{
    /* |x| < 2^-13: tanh(x) is x; the arithmetic runs on 0 instead (as in flush_tiny) */
    bool tiny = (fbits(x) & 0x7fffffffu) < TANH_TINY_BITS;
    float ax = fsel(tiny, 0.0f, fabsf(x));
    float u = ax * ax;
    float q = TANH_D4;
    q = q * u + TANH_D3;
    q = q * u + TANH_D2;
    q = q * u + TANH_D1;
    q = q * u + TANH_D0;
    float small = ax + ax * u * q;
    float z = -2.0f * fsel(ax > TANH_SAT, TANH_SAT, ax);
    int32_t k;
    float p = exp_reduce1(z, &k);
    float e = p * pow2i(k); /* k in [-29, 0] */
    float big = (1.0f - e) / (1.0f + e);
    return fsel(tiny, x, copysignf(fsel(ax < TANH_SMALL, small, big), x));
}

/* Blocks of a fixed size through a local buffer (which also makes y == x safe). */
#define RC_SCALAR_BLOCK 16
#define RC_LOOP1(name, fn)                                                                     \
    static void name(float *y, const float *x, size_t n)                                       \
    {                                                                                          \
        float t[RC_SCALAR_BLOCK];                                                              \
        size_t i = 0;                                                                          \
        for (; i + RC_SCALAR_BLOCK <= n; i += RC_SCALAR_BLOCK) {                               \
            memcpy(t, x + i, sizeof t);                                                        \
            for (int j = 0; j < RC_SCALAR_BLOCK; j++) t[j] = fn(t[j]);                         \
            memcpy(y + i, t, sizeof t);                                                        \
        }                                                                                      \
        for (; i < n; i++) y[i] = fn(x[i]);                                                    \
    }
RC_LOOP1(sigmoid_scalar, sigmoid1)
RC_LOOP1(tanh_scalar, tanh1)
RC_LOOP1(exp_scalar, exp1)

/* The LSTM cell (rc_vlstm_cell) one unit at a time: the same operations in the same order as
 * the vector versions, so every implementation gives every lane the same bits. */
static void lstm_cell_scalar(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c, float *craw,
                             float *m)
{
    for (size_t u = 0; u < n; u++) {
        float i = sigmoid1(g[u] + b[u]), j = tanh1(g[gs + u] + b[bs + u]);
        float f = sigmoid1((g[2 * gs + u] + b[2 * bs + u]) + fb), o = sigmoid1(g[3 * gs + u] + b[3 * bs + u]);
        float cn = c[u] * f + i * j;
        g[u] = i, g[gs + u] = j, g[2 * gs + u] = f, g[3 * gs + u] = o;
        c[u] = cn, craw[u] = cn;
        m[u] = tanh1(cn) * o;
    }
}

/* Its gradient (rc_vlstm_cell_grad) one unit at a time, in the vector versions' order. */
static void lstm_grad_scalar(size_t n, const float *g, size_t gs, const float *m, const float *cprev, const float *dh,
                             const float *dy, float *dc, float *dg)
{
    for (size_t u = 0; u < n; u++) {
        float i = g[u], j = g[gs + u], f = g[2 * gs + u], o = g[3 * gs + u], t = o != 0 ? m[u] / o : 0, dm = dh[u] + dy[u];
        float dpo = dm * t * o * (1 - o);
        float dcr = dc[u] + dm * o * (1 - t * t);
        float di = dcr * j * i * (1 - i), dj = dcr * i * (1 - j * j), df = dcr * cprev[u] * f * (1 - f);
        dc[u] = dcr * f;
        dg[u] = di, dg[gs + u] = dj, dg[2 * gs + u] = df, dg[3 * gs + u] = dpo;
    }
}

#if RC_VMATH_X86
/* ---------------------------------------------------------------- AVX-512F */
#define RC_AVX512 __attribute__((target("avx512f")))
#define RC_INLINE __attribute__((always_inline))

/* q ~ exp(r) - 1 and *k with x = k ln2 + r; x in [EXP_LO, EXP_HI] or NaN. */
static inline RC_AVX512 __m512 expm1_reduce512(__m512 x, __m512 *k)
{
    /* k: x log2(e) rounded to an integer by adding and taking away 1.5 2^23 (one FMA and one
     * subtraction: shorter than a multiply and a rounding instruction) */
    const __m512 magic = _mm512_set1_ps(RND_MAGIC);
    __m512 kf = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), magic), magic);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_HI), x);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_LO), r);
    /* p - 1 = r + r^2 (c2 + c3 r) + r^4 (c4 + c5 r + c6 r^2), in three levels of FMAs (Estrin)
     * instead of six in a row: the sigmoid and tanh passes are bound by their latency */
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 a = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C3), r, _mm512_set1_ps(EXP_C2));
    __m512 b = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C5), r, _mm512_set1_ps(EXP_C4));
    __m512 r4 = _mm512_mul_ps(r2, r2);
    b = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C6), r2, b);
    __m512 q = _mm512_fmadd_ps(a, r2, r);
    *k = kf;
    return _mm512_fmadd_ps(b, r4, q);
}

/* p ~ exp(r) and *k with x = k ln2 + r; x in [EXP_LO, EXP_HI] or NaN. p is 0 in the lanes
 * not in `live`, those where exp(x) rounds to 0 (x <= -104): scaling 0 underflows nothing, and
 * an underflow costs a microcode assist (~100 cycles) on Intel cores. */
static inline RC_AVX512 __m512 exp_reduce512(__m512 x, __mmask16 live, __m512 *k)
{
    return _mm512_maskz_add_ps(live, expm1_reduce512(x, k), _mm512_set1_ps(1.0f));
}

/* Lanes where |x| >= 2^-26 or x is NaN, from the bits. Below, exp(x) is 1 and sigmoid(x) 1/2
 * in float, and the callers compute on 0 instead: a subnormal operand costs a microcode assist
 * (~100 cycles) in any float arithmetic on Intel cores. */
static inline RC_AVX512 __mmask16 not_tiny512(__m512 x)
{
    __m512i ab = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MAX));
    return _mm512_cmpge_epu32_mask(ab, _mm512_set1_epi32(TINY_BITS));
}

static inline RC_AVX512 __m512 exp512(__m512 x)
{
    /* MAXPS/MINPS return their second operand when either is NaN: x stays NaN. */
    x = _mm512_maskz_max_ps(not_tiny512(x), _mm512_set1_ps(EXP_LO), x);
    x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), x);
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_ZERO), _CMP_NLE_UQ);
    __m512 k, p = exp_reduce512(x, live, &k);
    return _mm512_scalef_ps(p, k);
}

static inline RC_AVX512 __m512 sigmoid512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 a = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))); /* -|x| */
    a = _mm512_maskz_max_ps(not_tiny512(x), _mm512_set1_ps(EXP_LO), a);
    __mmask16 live = _mm512_cmp_ps_mask(a, _mm512_set1_ps(EXP_ZERO), _CMP_NLE_UQ);
    __m512 k, p = exp_reduce512(a, live, &k);
    /* e = exp(-|x|) only for 1 + e: 2^-64 stands in for smaller scales without underflowing */
    __m512 e = _mm512_scalef_ps(p, _mm512_max_ps(k, _mm512_set1_ps(-64.0f)));
    __m512 d = _mm512_add_ps(one, e);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 q = _mm512_div_ps(_mm512_mask_blend_ps(neg, one, p), d);
    return _mm512_mask_scalef_ps(q, neg, q, k);
}

static inline RC_AVX512 __m512 tanh512(__m512 x)
{
    /* |x| < 2^-13 (and NaN): the result is x; the arithmetic runs on 0 there instead, so that
     * nothing underflows and no subnormal input reaches it (either costs a microcode assist) */
    __m512 ax = _mm512_abs_ps(x);
    __mmask16 live = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(TANH_TINY), _CMP_GE_OQ);
    ax = _mm512_maskz_mov_ps(live, ax);
    /* m = expm1(z), z = -2|x| in [-20, 0]: 2^k (1 + q) - 1 = 2^k q + (2^k - 1) in one rounding
     * (2^k - 1 is exact down to k = -24, and below its rounding is under 2^-25 of |m| ~ 1), q
     * from expm1_reduce512 (no cancellation for small z); then tanh|x| = -m / (2 + m) =
     * m / (-2 - m) */
    __m512 z = _mm512_mul_ps(_mm512_min_ps(_mm512_set1_ps(TANH_SAT), ax), _mm512_set1_ps(-2.0f));
    __m512 k, q = expm1_reduce512(z, &k);
    __m512 tk = _mm512_scalef_ps(_mm512_set1_ps(1.0f), k);
    __m512 m = _mm512_fmadd_ps(tk, q, _mm512_sub_ps(tk, _mm512_set1_ps(1.0f)));
    __m512 t = _mm512_div_ps(m, _mm512_sub_ps(_mm512_set1_ps(-2.0f), m));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    t = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
    return _mm512_mask_blend_ps(live, x, t);
}

/* Whole vectors, then the tail with masked loads and stores. */
#define RC_LOOP512(name, fn)                                                                   \
    static RC_AVX512 void name(float *y, const float *x, size_t n)                             \
    {                                                                                          \
        size_t i = 0;                                                                          \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, fn(_mm512_loadu_ps(x + i)));     \
        if (i < n) {                                                                           \
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                                    \
            _mm512_mask_storeu_ps(y + i, m, fn(_mm512_maskz_loadu_ps(m, x + i)));              \
        }                                                                                      \
    }
RC_LOOP512(sigmoid_avx512, sigmoid512)
RC_LOOP512(tanh_avx512, tanh512)
RC_LOOP512(exp_avx512, exp512)

/* Sixteen lanes of a stream whose rows lie `stride` floats apart: lanes k1 from p, and where
 * a vector runs from one row into the next (the flat row passes below), lanes k2 (above k1)
 * from the next row's start p2. ld/st are plain masked loads and stores when k2 is empty. */
typedef struct lanes16 {
    __mmask16 k1, k2;
    unsigned w1;    /* lanes in k1 (k1 = the low w1 lanes) */
    ptrdiff_t skip; /* p2 - p: from lane 0's element to the next row's first */
} lanes16;

/* Lanes k2 (w1 and up) of the next row's part are one masked access from p2 - w1, which lies
 * at or after p (p2 - p >= w1: the row holds at least the w1 lanes from p), so no lane needs
 * moving: cheaper than an expand or compress (two port-5 uops each) on every crossing vector. */
static inline RC_AVX512 RC_INLINE __m512 ld16(const lanes16 *l, const float *p)
{
    __m512 v = _mm512_maskz_loadu_ps(l->k1, p);
    if (l->k2) v = _mm512_mask_loadu_ps(v, l->k2, p + l->skip - l->w1);
    return v;
}

static inline RC_AVX512 RC_INLINE void st16(const lanes16 *l, float *p, __m512 v)
{
    _mm512_mask_storeu_ps(p, l->k1, v);
    if (l->k2) _mm512_mask_storeu_ps(p + l->skip - l->w1, l->k2, v);
}

/* As ld16, for a stream whose next row starts before p (the biases: every row starts over at
 * the first unit), where p2 - w1 could lie before the array: the next row's lanes are loaded
 * from p2 and moved up into place. */
static inline RC_AVX512 RC_INLINE __m512 ld16_wrap(const lanes16 *l, const float *p)
{
    __m512 v = _mm512_maskz_loadu_ps(l->k1, p);
    if (l->k2) v = _mm512_mask_expand_ps(v, l->k2, _mm512_maskz_loadu_ps((__mmask16)(l->k2 >> l->w1), p + l->skip));
    return v;
}

/* The flat row passes: `rows` rows of n units as one array of rows n floats, sixteen at a time,
 * so that a row of n units takes n / 16 vectors instead of a masked tail each. The vector at
 * flat unit e lies in row r from unit u, and past the row's end (n >= 16: into the next row
 * only) the next row's first units, whose gates are `stride` floats on. r and u advance with e,
 * without a division per vector. */
typedef struct flat16 {
    size_t e, total, n, r, u;
} flat16;

/* The first min(left, 16) lanes. */
static inline __mmask16 first_lanes(size_t left) { return (__mmask16)(left >= 16 ? 0xffff : (1u << left) - 1); }

static inline lanes16 flat_lanes(const flat16 *f, size_t stride)
{
    size_t left = f->total - f->e, len = left < 16 ? left : 16, w1 = f->n - f->u < len ? f->n - f->u : len;
    __mmask16 k1 = first_lanes(w1);
    return (lanes16){k1, (__mmask16)(first_lanes(len) & ~k1), (unsigned)w1, (ptrdiff_t)stride - (ptrdiff_t)f->u};
}

static inline void flat_next(flat16 *f)
{
    f->e += 16;
    f->u += 16;
    if (f->u >= f->n) f->u -= f->n, f->r++;
}

/* The LSTM cell in two halves, so that a pass can run them a vector apart (below). First half,
 * sixteen units: the gates (g) and biases (b) read through `gl` and `bl`, their activations
 * stored back, the new cell state cn to c and craw (contiguous, under k = k1 | k2); cn and o
 * kept for the second half, m = tanh(cn) o. No fused multiply-adds: the scalar and AVX2
 * versions round the same products and sums. */
typedef struct cell_rest {
    __m512 cn, o;
    float *m;
    __mmask16 k;
} cell_rest;

static inline RC_AVX512 RC_INLINE cell_rest lstm16_gates(const lanes16 *gl, const lanes16 *bl, float *g, size_t gs, const float *b,
                                                         size_t bs, __m512 fb, float *c, float *craw, float *m)
{
    __mmask16 k = gl->k1 | gl->k2;
    __m512 i = sigmoid512(_mm512_add_ps(ld16(gl, g), ld16_wrap(bl, b)));
    __m512 j = tanh512(_mm512_add_ps(ld16(gl, g + gs), ld16_wrap(bl, b + bs)));
    __m512 f = sigmoid512(_mm512_add_ps(_mm512_add_ps(ld16(gl, g + 2 * gs), ld16_wrap(bl, b + 2 * bs)), fb));
    __m512 o = sigmoid512(_mm512_add_ps(ld16(gl, g + 3 * gs), ld16_wrap(bl, b + 3 * bs)));
    __m512 cn = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, c), f), _mm512_mul_ps(i, j));
    st16(gl, g, i);
    st16(gl, g + gs, j);
    st16(gl, g + 2 * gs, f);
    st16(gl, g + 3 * gs, o);
    _mm512_mask_storeu_ps(c, k, cn);
    _mm512_mask_storeu_ps(craw, k, cn);
    return (cell_rest){cn, o, m, k};
}

static inline RC_AVX512 RC_INLINE void lstm16_out(const cell_rest *p)
{
    _mm512_mask_storeu_ps(p->m, p->k, _mm512_mul_ps(tanh512(p->cn), p->o));
}

/* The cell over rows (n >= 16, or one row), software-pipelined: each vector's output tanh(cn) o
 * is computed with the next vector's gates. A vector's two halves are two activations deep in
 * a row (about 180 cycles); run as they come, the out-of-order window holds fewer vectors than
 * it takes to keep the vector units busy. The same operations on every lane: the same bits. */
static RC_AVX512 void cell_flat(size_t rows, size_t n, float *g, size_t gstride, size_t gs, const float *b, size_t bs, float fb,
                                float *c, float *craw, float *m)
{
    __m512 vfb = _mm512_set1_ps(fb);
    flat16 f = {0, rows * n, n, 0, 0};
    cell_rest prev = {0};
    for (bool first = true; f.e < f.total; flat_next(&f), first = false) {
        lanes16 gl = flat_lanes(&f, gstride), bl = gl;
        bl.skip = -(ptrdiff_t)f.u; /* the biases: the next row starts over at b */
        cell_rest cur = lstm16_gates(&gl, &bl, g + f.r * gstride + f.u, gs, b + f.u, bs, vfb, c + f.e, craw + f.e, m + f.e);
        if (!first) lstm16_out(&prev);
        prev = cur;
    }
    if (f.total) lstm16_out(&prev);
}

/* Sixteen units of the cell's gradient: the gates and their gradients through `gl`, the rest
 * contiguous. tanh(c) is m / o (0 where o is 0: it only ever meets o as a factor). */
static inline RC_AVX512 RC_INLINE void lstm_grad16(const lanes16 *gl, const float *g, size_t gs, const float *m, const float *cprev,
                                                   const float *dh, const float *dy, float *dc, float *dg)
{
    __mmask16 k = gl->k1 | gl->k2;
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 i = ld16(gl, g), j = ld16(gl, g + gs), f = ld16(gl, g + 2 * gs), o = ld16(gl, g + 3 * gs);
    __mmask16 on = _mm512_mask_cmp_ps_mask(k, o, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    __m512 t = _mm512_maskz_div_ps(on, _mm512_maskz_loadu_ps(k, m), o);
    __m512 dm = _mm512_add_ps(_mm512_maskz_loadu_ps(k, dh), _mm512_maskz_loadu_ps(k, dy));
    __m512 dpo = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dm, t), o), _mm512_sub_ps(one, o));
    __m512 dcr = _mm512_add_ps(_mm512_maskz_loadu_ps(k, dc),
                               _mm512_mul_ps(_mm512_mul_ps(dm, o), _mm512_sub_ps(one, _mm512_mul_ps(t, t))));
    __m512 di = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcr, j), i), _mm512_sub_ps(one, i));
    __m512 dj = _mm512_mul_ps(_mm512_mul_ps(dcr, i), _mm512_sub_ps(one, _mm512_mul_ps(j, j)));
    __m512 df = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dcr, _mm512_maskz_loadu_ps(k, cprev)), f), _mm512_sub_ps(one, f));
    _mm512_mask_storeu_ps(dc, k, _mm512_mul_ps(dcr, f));
    st16(gl, dg, di);
    st16(gl, dg + gs, dj);
    st16(gl, dg + 2 * gs, df);
    st16(gl, dg + 3 * gs, dpo);
}

/* The gradient over rows (n >= 16, or one row). */
static RC_AVX512 void grad_flat(size_t rows, size_t n, const float *g, size_t gstride, size_t gs, const float *m,
                                const float *cprev, const float *dh, const float *dy, float *dc, float *dg)
{
    for (flat16 f = {0, rows * n, n, 0, 0}; f.e < f.total; flat_next(&f)) {
        lanes16 gl = flat_lanes(&f, gstride);
        lstm_grad16(&gl, g + f.r * gstride + f.u, gs, m + f.e, cprev + f.e, dh + f.e, dy + f.e, dc + f.e, dg + f.r * gstride + f.u);
    }
}

static RC_AVX512 void lstm_grad_avx512(size_t n, const float *g, size_t gs, const float *m, const float *cprev,
                                       const float *dh, const float *dy, float *dc, float *dg)
{
    grad_flat(1, n, g, 0, gs, m, cprev, dh, dy, dc, dg);
}

static RC_AVX512 void lstm_cell_avx512(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c,
                                       float *craw, float *m)
{
    cell_flat(1, n, g, 0, gs, b, bs, fb, c, craw, m);
}

/* Rows of fewer than 16 units go row by row: a vector would span more than two rows. */
static RC_AVX512 void lstm_cell_rows_avx512(size_t rows, size_t n, float *g, size_t gstride, size_t gs, const float *b,
                                            size_t bs, float fb, float *c, float *craw, float *m)
{
    if (n >= 16) {
        cell_flat(rows, n, g, gstride, gs, b, bs, fb, c, craw, m);
        return;
    }
    for (size_t r = 0; r < rows; r++) cell_flat(1, n, g + r * gstride, 0, gs, b, bs, fb, c + r * n, craw + r * n, m + r * n);
}

static RC_AVX512 void lstm_grad_rows_avx512(size_t rows, size_t n, const float *g, size_t gstride, size_t gs, const float *m,
                                            const float *cprev, const float *dh, const float *dy, float *dc, float *dg)
{
    if (n >= 16) {
        grad_flat(rows, n, g, gstride, gs, m, cprev, dh, dy, dc, dg);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        grad_flat(1, n, g + r * gstride, 0, gs, m + r * n, cprev + r * n, dh + r * n, dy + r * n, dc + r * n,
                  dg + r * gstride);
}

/* ---------------------------------------------------------------- AVX2 + FMA */
#define RC_AVX2 __attribute__((target("avx2,fma")))

/* The range reduction of expm1_reduce256: r, and *k, with x = k ln2 + r. */
static inline RC_AVX2 __m256 reduce256(__m256 x, __m256 *k)
{
    const __m256 magic = _mm256_set1_ps(RND_MAGIC);
    __m256 kf = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), magic), magic);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_HI), x);
    *k = kf;
    return _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_LO), r);
}

/* The polynomial of expm1_reduce256: expm1(r) for the reduced r. */
static inline RC_AVX2 __m256 expm1_poly256(__m256 r)
{
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 a = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C3), r, _mm256_set1_ps(EXP_C2));
    __m256 b = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C5), r, _mm256_set1_ps(EXP_C4));
    __m256 r4 = _mm256_mul_ps(r2, r2);
    b = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C6), r2, b);
    __m256 q = _mm256_fmadd_ps(a, r2, r);
    return _mm256_fmadd_ps(b, r4, q);
}

/* As expm1_reduce512: p - 1 (no cancellation for small x) and *k, x = k ln2 + r. */
static inline RC_AVX2 __m256 expm1_reduce256(__m256 x, __m256 *k) { return expm1_poly256(reduce256(x, k)); }

/* As exp_reduce512, with `live` a lane mask (all ones or zeros). */
static inline RC_AVX2 __m256 exp_reduce256(__m256 x, __m256 live, __m256 *k)
{
    return _mm256_and_ps(_mm256_add_ps(expm1_reduce256(x, k), _mm256_set1_ps(1.0f)), live);
}

static inline RC_AVX2 __m256 pow2_256(__m256i k) /* 2^k for k in [-126, 127] */
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

/* p 2^k for k in [-159, 128], rounded once (where k is garbage from NaN, p is NaN too). */
static inline RC_AVX2 __m256 scale256(__m256 p, __m256i k)
{
    __m256i k1 = _mm256_srai_epi32(k, 1);
    __m256i k2 = _mm256_sub_epi32(k, k1);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2_256(k1)), pow2_256(k2));
}

/* All ones in the lanes where |x| >= 2^-26 or x is NaN (see not_tiny512). */
static inline RC_AVX2 __m256 not_tiny256(__m256 x)
{
    __m256i ab = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(INT32_MAX));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(ab, _mm256_set1_epi32(TINY_BITS - 1)));
}

static inline RC_AVX2 __m256 exp256(__m256 x)
{
    x = _mm256_and_ps(x, not_tiny256(x));
    x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
    x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), x);
    __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_ZERO), _CMP_NLE_UQ);
    __m256 k, p = exp_reduce256(x, live, &k);
    return scale256(p, _mm256_cvtps_epi32(k));
}

/* sigmoid256 for any x, given a = -|x| (-0 where |x| < 2^-26). */
static inline RC_AVX2 __m256 sigmoid256_wide(__m256 x, __m256 a)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    a = _mm256_max_ps(_mm256_set1_ps(EXP_LO), a);
    __m256 live = _mm256_cmp_ps(a, _mm256_set1_ps(EXP_ZERO), _CMP_NLE_UQ);
    __m256 k, p = exp_reduce256(a, live, &k);
    __m256i ki = _mm256_cvtps_epi32(k);
    /* e = exp(-|x|) for 1 + e only: 2^-64 stands in for smaller scales (no underflow) */
    __m256 e = _mm256_mul_ps(p, pow2_256(_mm256_max_epi32(ki, _mm256_set1_epi32(-64))));
    /* the numerator e, fully scaled, where x's sign bit is set (for -0 either form gives 1/2);
     * elsewhere scale by 2^0, again so that nothing underflows */
    __m256i kn =
        _mm256_castps_si256(_mm256_blendv_ps(_mm256_setzero_ps(), _mm256_castsi256_ps(ki), x));
    __m256 num = _mm256_blendv_ps(one, scale256(p, kn), x);
    return _mm256_div_ps(num, _mm256_add_ps(one, e));
}

static inline RC_AVX2 __m256 sigmoid256_neg_abs(__m256 x) /* -|x| (-0 where |x| < 2^-26) */
{
    return _mm256_or_ps(_mm256_and_ps(x, not_tiny256(x)), _mm256_set1_ps(-0.0f));
}

static inline RC_AVX2 bool sigmoid256_narrow(__m256 a) /* given a = -|x|: the fast path applies */
{
    return __builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(SIGMOID_NARROW), _CMP_LT_OQ)) == 0, 1);
}

/* The fast path after the range reduction of a = -|x| (r, k). Where every lane has |x| <= 87
 * (the common case by far), exp(-|x|) = p 2^k with k >= -126: one scaling by a normal power
 * of two rounds it once, as scale256 would, and 1 + e is the same sum as sigmoid256_wide's
 * (which scales e no lower than 2^-64), so the results are the same bits as the general
 * path's. */
static inline RC_AVX2 __m256 sigmoid256_finish(__m256 x, __m256 r, __m256 k)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 p = _mm256_add_ps(expm1_poly256(r), one);
    __m256 e = _mm256_mul_ps(p, pow2_256(_mm256_cvtps_epi32(k)));
    return _mm256_div_ps(_mm256_blendv_ps(one, e, x), _mm256_add_ps(one, e));
}

static inline RC_AVX2 __m256 sigmoid256(__m256 x)
{
    __m256 a = sigmoid256_neg_abs(x);
    if (!sigmoid256_narrow(a)) return sigmoid256_wide(x, a);
    __m256 k, r = reduce256(a, &k);
    return sigmoid256_finish(x, r, k);
}

/* tanh256's range reduction: r and *k for z = -2|x| (0 where |x| < 2^-13 or x is NaN, the
 * lanes *live leaves out). */
static inline RC_AVX2 __m256 tanh256_reduce(__m256 x, __m256 *k, __m256 *live)
{
    /* as in tanh512: x where |x| < 2^-13 or NaN, the arithmetic on 0 there; m = expm1(-2|x|)
     * = 2^k q + (2^k - 1), k in [-29, 0]; tanh|x| = m / (-2 - m) */
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    *live = _mm256_cmp_ps(ax, _mm256_set1_ps(TANH_TINY), _CMP_GE_OQ);
    ax = _mm256_and_ps(ax, *live);
    __m256 z = _mm256_mul_ps(_mm256_min_ps(_mm256_set1_ps(TANH_SAT), ax), _mm256_set1_ps(-2.0f));
    return reduce256(z, k);
}

/* tanh256 from tanh256_reduce's r, k and live. */
static inline RC_AVX2 __m256 tanh256_finish(__m256 x, __m256 r, __m256 k, __m256 live)
{
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 q = expm1_poly256(r);
    __m256 tk = pow2_256(_mm256_cvtps_epi32(k));
    __m256 m = _mm256_fmadd_ps(tk, q, _mm256_sub_ps(tk, _mm256_set1_ps(1.0f)));
    __m256 t = _mm256_div_ps(m, _mm256_sub_ps(_mm256_set1_ps(-2.0f), m));
    t = _mm256_or_ps(t, _mm256_and_ps(x, signbit));
    return _mm256_blendv_ps(x, t, live);
}

static inline RC_AVX2 __m256 tanh256(__m256 x)
{
    __m256 k, live, r = tanh256_reduce(x, &k, &live);
    return tanh256_finish(x, r, k, live);
}

/* The first r (1 to 8) lanes: loaded under a mask (zeros after), stored as 4 + 2 + 1 floats.
 * AMD's cores before Zen 4 run a masked store as dozens of micro-ops, so none is used (a
 * masked load is cheap everywhere). With r the constant 8 these are a plain load and store. */
static const int32_t g_tail_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline RC_AVX2 __attribute__((always_inline)) __m256 ld8(const float *p, size_t r)
{
    if (r >= 8) return _mm256_loadu_ps(p);
    return _mm256_maskload_ps(p, _mm256_loadu_si256((const __m256i *)(g_tail_mask + 8 - r)));
}

static inline RC_AVX2 __attribute__((always_inline)) void st8(float *p, __m256 v, size_t r)
{
    if (r >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 q = _mm256_castps256_ps128(v);
    if (r & 4) {
        _mm_storeu_ps(p, q);
        q = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (r & 2) {
        _mm_storel_pi((__m64 *)p, q);
        q = _mm_movehl_ps(q, q);
        p += 2;
    }
    if (r & 1) _mm_store_ss(p, q);
}

/* Whole vectors, then the tail. */
#define RC_LOOP256(name, fn)                                                                   \
    static RC_AVX2 void name(float *y, const float *x, size_t n)                               \
    {                                                                                          \
        size_t i = 0;                                                                          \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fn(_mm256_loadu_ps(x + i)));       \
        if (i < n) st8(y + i, fn(ld8(x + i, n - i)), n - i);                                   \
    }
RC_LOOP256(exp_avx2, exp256)

/* sigmoid and tanh over arrays in two stages a vector apart: the range reduction of the next
 * vector, then the rest of this one. One vector's chain of dependent operations is long (some
 * 50 cycles), and the core's scheduler holds too few waiting operations to overlap the next
 * vector's with it by itself; issued this way, the second stage's inputs are ready (both
 * about 1.08x faster on Zen 3 in bench_vmath). The same operations on every element, so the
 * same bits as sigmoid256 and tanh256 (which the fused LSTM cell uses); y may be x. */
static RC_AVX2 void sigmoid_avx2(float *y, const float *x, size_t n)
{
    size_t nv = n / 8;
    if (nv) {
        __m256 xn = _mm256_loadu_ps(x), an = sigmoid256_neg_abs(xn), kn, rn = reduce256(an, &kn);
        for (size_t v = 0; v < nv; v++) {
            __m256 xc = xn, ac = an, kc = kn, rc = rn;
            if (v + 1 < nv) {
                xn = _mm256_loadu_ps(x + 8 * (v + 1));
                an = sigmoid256_neg_abs(xn);
                rn = reduce256(an, &kn);
            }
            _mm256_storeu_ps(y + 8 * v, sigmoid256_narrow(ac) ? sigmoid256_finish(xc, rc, kc) : sigmoid256_wide(xc, ac));
        }
    }
    size_t i = 8 * nv;
    if (i < n) st8(y + i, sigmoid256(ld8(x + i, n - i)), n - i);
}

static RC_AVX2 void tanh_avx2(float *y, const float *x, size_t n)
{
    size_t nv = n / 8;
    if (nv) {
        __m256 xn = _mm256_loadu_ps(x), kn, ln, rn = tanh256_reduce(xn, &kn, &ln);
        for (size_t v = 0; v < nv; v++) {
            __m256 xc = xn, kc = kn, lc = ln, rc = rn;
            if (v + 1 < nv) {
                xn = _mm256_loadu_ps(x + 8 * (v + 1));
                rn = tanh256_reduce(xn, &kn, &ln);
            }
            _mm256_storeu_ps(y + 8 * v, tanh256_finish(xc, rc, kc, lc));
        }
    }
    size_t i = 8 * nv;
    if (i < n) st8(y + i, tanh256(ld8(x + i, n - i)), n - i);
}

/* r (8, or 1 to 7 at the tail) units of the LSTM cell: the tail's lanes get the arithmetic a
 * whole vector would give them (as in the array functions, whose results they must match). */
static inline RC_AVX2 __attribute__((always_inline)) void lstm8(size_t r, float *g, size_t gs, const float *b, size_t bs,
                                                                __m256 fb, float *c, float *craw, float *m)
{
    __m256 i = sigmoid256(_mm256_add_ps(ld8(g, r), ld8(b, r)));
    __m256 j = tanh256(_mm256_add_ps(ld8(g + gs, r), ld8(b + bs, r)));
    __m256 f = sigmoid256(_mm256_add_ps(_mm256_add_ps(ld8(g + 2 * gs, r), ld8(b + 2 * bs, r)), fb));
    __m256 o = sigmoid256(_mm256_add_ps(ld8(g + 3 * gs, r), ld8(b + 3 * bs, r)));
    __m256 cn = _mm256_add_ps(_mm256_mul_ps(ld8(c, r), f), _mm256_mul_ps(i, j));
    st8(g, i, r);
    st8(g + gs, j, r);
    st8(g + 2 * gs, f, r);
    st8(g + 3 * gs, o, r);
    st8(c, cn, r);
    st8(craw, cn, r);
    st8(m, _mm256_mul_ps(tanh256(cn), o), r);
}

/* r units of the cell's gradient. */
static inline RC_AVX2 __attribute__((always_inline)) void lstm_grad8(size_t r, const float *g, size_t gs, const float *m,
                                                                     const float *cprev, const float *dh, const float *dy,
                                                                     float *dc, float *dg)
{
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 i = ld8(g, r), j = ld8(g + gs, r), f = ld8(g + 2 * gs, r), o = ld8(g + 3 * gs, r);
    __m256 t = _mm256_and_ps(_mm256_div_ps(ld8(m, r), o), _mm256_cmp_ps(o, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    __m256 dm = _mm256_add_ps(ld8(dh, r), ld8(dy, r));
    __m256 dpo = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dm, t), o), _mm256_sub_ps(one, o));
    __m256 dcr = _mm256_add_ps(ld8(dc, r), _mm256_mul_ps(_mm256_mul_ps(dm, o), _mm256_sub_ps(one, _mm256_mul_ps(t, t))));
    __m256 di = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dcr, j), i), _mm256_sub_ps(one, i));
    __m256 dj = _mm256_mul_ps(_mm256_mul_ps(dcr, i), _mm256_sub_ps(one, _mm256_mul_ps(j, j)));
    __m256 df = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dcr, ld8(cprev, r)), f), _mm256_sub_ps(one, f));
    st8(dc, _mm256_mul_ps(dcr, f), r);
    st8(dg, di, r);
    st8(dg + gs, dj, r);
    st8(dg + 2 * gs, df, r);
    st8(dg + 3 * gs, dpo, r);
}

static RC_AVX2 void lstm_grad_avx2(size_t n, const float *g, size_t gs, const float *m, const float *cprev, const float *dh,
                                   const float *dy, float *dc, float *dg)
{
    size_t u = 0;
    for (; u + 8 <= n; u += 8) lstm_grad8(8, g + u, gs, m + u, cprev + u, dh + u, dy + u, dc + u, dg + u);
    if (u < n) lstm_grad8(n - u, g + u, gs, m + u, cprev + u, dh + u, dy + u, dc + u, dg + u);
}

static RC_AVX2 void lstm_cell_avx2(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c, float *craw,
                                   float *m)
{
    __m256 vfb = _mm256_set1_ps(fb);
    size_t u = 0;
    for (; u + 8 <= n; u += 8) lstm8(8, g + u, gs, b + u, bs, vfb, c + u, craw + u, m + u);
    if (u < n) lstm8(n - u, g + u, gs, b + u, bs, vfb, c + u, craw + u, m + u);
}
#endif /* RC_VMATH_X86 */

/* ---------------------------------------------------------------- dispatch */
typedef void (*rc_vfn)(float *y, const float *x, size_t n);
typedef void (*rc_vcell)(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c, float *craw, float *m);
typedef void (*rc_vcell_grad)(size_t n, const float *g, size_t gs, const float *m, const float *cprev, const float *dh,
                              const float *dy, float *dc, float *dg);
typedef void (*rc_vcell_rows)(size_t rows, size_t n, float *g, size_t gstride, size_t gs, const float *b, size_t bs, float fb,
                              float *c, float *craw, float *m);
typedef void (*rc_vcell_grad_rows)(size_t rows, size_t n, const float *g, size_t gstride, size_t gs, const float *m,
                                   const float *cprev, const float *dh, const float *dy, float *dc, float *dg);
typedef struct rc_vimpl {
    const char *name;
    rc_vfn sigmoid, tanh_, exp_;
    rc_vcell lstm_cell;
    rc_vcell_grad lstm_grad;
    rc_vcell_rows lstm_cell_rows;         /* NULL: lstm_cell row by row */
    rc_vcell_grad_rows lstm_grad_rows;    /* NULL: lstm_grad row by row */
} rc_vimpl;

enum { IMPL_AUTO = -1, IMPL_SCALAR, IMPL_AVX2, IMPL_AVX512, IMPL_COUNT };

static const rc_vimpl g_impls[IMPL_COUNT] = {
    [IMPL_SCALAR] = {"scalar", sigmoid_scalar, tanh_scalar, exp_scalar, lstm_cell_scalar, lstm_grad_scalar, NULL, NULL},
#if RC_VMATH_X86
    [IMPL_AVX2] = {"avx2", sigmoid_avx2, tanh_avx2, exp_avx2, lstm_cell_avx2, lstm_grad_avx2, NULL, NULL},
    [IMPL_AVX512] = {"avx512", sigmoid_avx512, tanh_avx512, exp_avx512, lstm_cell_avx512, lstm_grad_avx512, lstm_cell_rows_avx512,
                     lstm_grad_rows_avx512},
#endif
};

/* The chosen implementation, or IMPL_AUTO before the first call / after rc_vmath_force(NULL).
 * Every thread computes the same automatic choice, so a race only stores it twice. */
static atomic_int g_impl = IMPL_AUTO;

static bool impl_supported(int i)
{
    if (i == IMPL_SCALAR) return true;
#if RC_VMATH_X86
    __builtin_cpu_init();
    if (i == IMPL_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (i == IMPL_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return false;
}

static const rc_vimpl *impl(void)
{
    int i = atomic_load_explicit(&g_impl, memory_order_relaxed);
    if (i == IMPL_AUTO) {
        i = IMPL_COUNT - 1;
        while (!impl_supported(i)) i--;
        int expect = IMPL_AUTO;
        if (!atomic_compare_exchange_strong(&g_impl, &expect, i)) i = expect; /* forced meanwhile */
    }
    return &g_impls[i];
}

void rc_vsigmoid(float *y, const float *x, size_t n) { impl()->sigmoid(y, x, n); }
void rc_vtanh(float *y, const float *x, size_t n) { impl()->tanh_(y, x, n); }
void rc_vexp(float *y, const float *x, size_t n) { impl()->exp_(y, x, n); }
void rc_vlstm_cell(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c, float *craw, float *m)
{
    impl()->lstm_cell(n, g, gs, b, bs, fb, c, craw, m);
}
void rc_vlstm_cell_grad(size_t n, const float *g, size_t gs, const float *m, const float *cprev, const float *dh, const float *dy,
                        float *dc, float *dg)
{
    impl()->lstm_grad(n, g, gs, m, cprev, dh, dy, dc, dg);
}

void rc_vlstm_cell_rows(size_t rows, size_t n, float *g, size_t gstride, size_t gs, const float *b, size_t bs, float fb, float *c,
                        float *craw, float *m)
{
    const rc_vimpl *v = impl();
    if (v->lstm_cell_rows) {
        v->lstm_cell_rows(rows, n, g, gstride, gs, b, bs, fb, c, craw, m);
        return;
    }
    for (size_t r = 0; r < rows; r++) v->lstm_cell(n, g + r * gstride, gs, b, bs, fb, c + r * n, craw + r * n, m + r * n);
}

void rc_vlstm_cell_grad_rows(size_t rows, size_t n, const float *g, size_t gstride, size_t gs, const float *m,
                             const float *cprev, const float *dh, const float *dy, float *dc, float *dg)
{
    const rc_vimpl *v = impl();
    if (v->lstm_grad_rows) {
        v->lstm_grad_rows(rows, n, g, gstride, gs, m, cprev, dh, dy, dc, dg);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        v->lstm_grad(n, g + r * gstride, gs, m + r * n, cprev + r * n, dh + r * n, dy + r * n, dc + r * n, dg + r * gstride);
}

const char *rc_vmath_impl(void) { return impl()->name; }

void rc_vmath_force(const char *name)
{
    int choice = IMPL_AUTO;
    for (int i = 0; name && i < IMPL_COUNT; i++)
        if (g_impls[i].name && !strcmp(name, g_impls[i].name) && impl_supported(i)) choice = i;
    atomic_store(&g_impl, choice);
}
