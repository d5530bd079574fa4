/*
 * gemm_packed.c - C = beta C + A @ B with B packed once: the recurrent product of an RNN step
 * (a batch of states times the same weights, T times per run; forward and backward), and the
 * products over all steps whose right-hand side is a weight matrix (the input projection, dx).
 *
 * Why not only CBLAS: a BLAS call packs both operands on every call, so a step's product
 * [64 x 256] @ [256 x 1024] re-packs the 1 MB weight matrix 100 times per sequence, and
 * OpenBLAS offers no packed-operand interface. Packing the weights once per run into 32-column
 * panels and streaming the states through an 8 x 32 AVX-512 register tile (16 accumulators,
 * the states broadcast from their rows) gives the per-step products about a fifth more speed
 * on this shape. With rows taken in blocks that keep their part of C in L2, the same kernel
 * also beats OpenBLAS on [3200 x 256] @ [256 x 1024] (about 140 against 130 GFLOP/s on one
 * core here), and it writes C without clearing it first.
 *
 * The weight gradients, C += [x | h_prev]^T dG over all steps, use the same tile with A's
 * columns as its rows: OpenBLAS would pack dG once for the input part and again for the
 * recurrent part, and needs the previous outputs copied into one matrix; here each block of dG
 * is packed once for both, and h0 and the outputs are read where they lie. With both threads
 * splitting C's columns this runs about 8% faster than two OpenBLAS calls on the 256-unit
 * LSTM's shape.
 *
 * Without AVX-512 but with AVX2 and FMA, the panels and tail columns are the same and the step
 * products run through the 8-lane kernels of gemm_avx2.c, while the weight gradients go to
 * CBLAS. Without either, everything goes to CBLAS.
 */
#include "core/gemm_packed.h"

#include "core/gemm_kernels.h"

#include <cblas.h>

#define NR RC_GEMM_NR /* panel width: two 16-float vectors */
#define MR 8          /* rows per register tile */

#if RC_GEMM_HAVE_X86
#define HAVE_AVX512_PATH 1
#include <immintrin.h>

/* The widest kernels this CPU runs, probed once: 2 AVX-512F, 1 AVX2 + FMA, 0 neither. */
static int cpu_simd(void)
{
    static int simd = -1;
    if (simd < 0) {
        __builtin_cpu_init();
        simd = __builtin_cpu_supports("avx512f")                                       ? 2
               : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1
                                                                                  : 0;
    }
    return simd;
}
#else
static int cpu_simd(void) { return 0; }
#endif
static bool cpu_has_avx512(void) { return cpu_simd() == 2; }
static bool cpu_has_avx2(void) { return cpu_simd() >= 1; }

static bool g_fallback; /* tests: take the CBLAS path */

void rc_gemm_packed_use_cblas(bool on) { g_fallback = on; }

/* The columns computed as dot products (see gemm_packed.h), the panels before them, and where
 * those columns lie (after the panels). */
static int64_t tail_cols(int64_t K, int64_t N)
{
    return cpu_simd() > 0 && N > 16 && K >= 32 && N % 16 >= 1 && N % 16 <= 4 ? N % 16 : 0;
}
static int64_t panel_count(int64_t K, int64_t N) { return (N - tail_cols(K, N) + NR - 1) / NR; }
static inline float *tails_of(const rc_packed_b *p) { return p->panels + panel_count(p->K, p->N) * p->K * NR; }

size_t rc_pack_b_floats(int64_t K, int64_t N)
{
    return K > 0 && N > 0 ? (size_t)(panel_count(K, N) * K * NR + tail_cols(K, N) * K) : 0;
}

/* Whether a K x N matrix gets panels (otherwise products go to CBLAS with the original). */
static bool packs(int64_t K, int64_t N) { return !g_fallback && cpu_simd() > 0 && K > 0 && N > 0; }

/* Whether the products run through the AVX2 kernels (gemm_avx2.c). */
static bool avx2_kernels(void) { return !g_fallback && cpu_simd() == 1; }

int rc_gemm_tile_rows(void) { return avx2_kernels() ? 6 : MR; }

/* From these many rows (and this depth) the AVX2 kernels lose to OpenBLAS: a tall A streams
 * through them from L3 once per block of rows, where OpenBLAS packs it into L2-sized blocks
 * (Zen 3, 6400 x 256 x 512: 62-68 GFLOP/s against 78-84). The AVX-512 kernels keep up. */
#define TALL_ROWS 512
#define TALL_DEPTH 64

bool rc_gemm_tall_via_cblas(int64_t M, int64_t K) { return avx2_kernels() && M >= TALL_ROWS && K >= TALL_DEPTH; }

void rc_pack_b_init(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, float *mem)
{
    *p = (rc_packed_b){.K = K, .N = N, .b = b, .ldb = ldb, .trans = trans};
    if (packs(K, N)) p->panels = mem, p->tail = tail_cols(K, N);
}

bool rc_pack_b_alloc(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, rc_arena *ar)
{
    float *mem = NULL;
    if (packs(K, N) && !(mem = rc_arena_alloc(ar, rc_pack_b_floats(K, N) * sizeof *mem, false))) return false;
    rc_pack_b_init(p, b, ldb, trans, K, N, mem);
    return true;
}

#ifdef HAVE_AVX512_PATH
/* The lanes of a panel's two vectors that hold its w (<= 32) columns. */
static inline void panel_masks(int64_t w, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = (__mmask16)(w >= 16 ? 0xffff : (1u << w) - 1);
    *m1 = (__mmask16)(w >= 32 ? 0xffff : w > 16 ? (1u << (w - 16)) - 1 : 0);
}

/* 16 x 16 floats transposed in registers: r[i] holds row i, then column i. */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0x88);
            t[i + 4 + j] = _mm512_shuffle_f32x4(u[i + j], u[i + 4 + j], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
    }
}

/* One panel (w <= 32 columns from c0) of B stored transposed: B[k][c] = b[c * ldb + k]. Blocks
 * of 16 x 16 are read as 16 rows of b, transposed in registers and written as 16 panel rows
 * (a scalar copy would store one float at a time, 32 floats apart). */
__attribute__((target("avx512f"))) static void pack_panel_trans(const float *b, int64_t ldb, int64_t K, int64_t c0, int64_t w,
                                                                float *dst)
{
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
        int64_t kn = RC_MIN(16, K - k0);
        __mmask16 km = (__mmask16)(kn >= 16 ? 0xffff : (1u << kn) - 1);
        for (int64_t h = 0; h < NR; h += 16) {
            __m512 r[16];
            for (int64_t i = 0; i < 16; i++)
                r[i] = h + i < w ? _mm512_maskz_loadu_ps(km, b + (c0 + h + i) * ldb + k0) : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t i = 0; i < kn; i++) _mm512_store_ps(dst + (k0 + i) * NR + h, r[i]);
        }
    }
}

/* One panel of B stored as is: each of its K rows two (masked) vector copies. */
__attribute__((target("avx512f"))) static void pack_panel(const float *b, int64_t ldb, int64_t K, int64_t c0, int64_t w,
                                                          float *dst)
{
    __mmask16 m0, m1;
    panel_masks(w, &m0, &m1);
    for (int64_t k = 0; k < K; k++) {
        const float *src = b + k * ldb + c0;
        _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
    }
}
#endif

/* The same two packings in plain C, for the AVX2 kernels: B as is, row by row; B stored
 * transposed, eight k at a time (eight floats read from each of the panel's columns, written
 * to eight panel rows that stay in L1). */
static void pack_panel_c(const float *b, int64_t ldb, int64_t K, int64_t c0, int64_t w, float *dst)
{
    for (int64_t k = 0; k < K; k++) {
        memcpy(dst + k * NR, b + k * ldb + c0, (size_t)w * sizeof *dst);
        memset(dst + k * NR + w, 0, (size_t)(NR - w) * sizeof *dst);
    }
}

static void pack_panel_trans_c(const float *b, int64_t ldb, int64_t K, int64_t c0, int64_t w, float *dst)
{
    for (int64_t k0 = 0; k0 < K; k0 += 8) {
        int64_t kn = RC_MIN(8, K - k0);
        for (int64_t c = 0; c < w; c++) {
            const float *src = b + (c0 + c) * ldb + k0;
            for (int64_t i = 0; i < kn; i++) dst[(k0 + i) * NR + c] = src[i];
        }
        for (int64_t i = 0; i < kn; i++) memset(dst + (k0 + i) * NR + w, 0, (size_t)(NR - w) * sizeof *dst);
    }
}

void rc_pack_b_fill(rc_packed_b *p, int64_t n0, int64_t n1)
{
    if (!p->panels) return;
    int64_t K = p->K, Np = p->N - p->tail, nq = panel_count(K, p->N), kbs = rc_gemm_kblock(K); /* Np: the panels' columns */
    for (int64_t q = n0 / NR; q * NR < RC_MIN(n1, Np); q++) {
        int64_t c0 = q * NR, w = RC_MIN(NR, Np - c0);
        for (int64_t k0 = 0; k0 < K; k0 += kbs) { /* the panel's block of rows [k0, k0 + kb) */
            int64_t kb = RC_MIN(kbs, K - k0);
            float *dst = p->panels + rc_gemm_panel_at(nq, q, k0, kb);
            const float *b = p->trans ? p->b + k0 : p->b + k0 * p->ldb;
#ifdef HAVE_AVX512_PATH
            if (cpu_has_avx512()) {
                if (p->trans) pack_panel_trans(b, p->ldb, kb, c0, w, dst);
                else pack_panel(b, p->ldb, kb, c0, w, dst);
                continue;
            }
#endif
            if (p->trans) pack_panel_trans_c(b, p->ldb, kb, c0, w, dst);
            else pack_panel_c(b, p->ldb, kb, c0, w, dst);
        }
    }
    /* the tail's columns, each as one row of K */
    float *tails = p->tail ? tails_of(p) : NULL;
    for (int64_t c = RC_MAX(n0, Np); c < RC_MIN(n1, p->N); c++)
        for (int64_t k = 0; k < K; k++) tails[(c - Np) * K + k] = p->trans ? p->b[c * p->ldb + k] : p->b[k * p->ldb + c];
}

bool rc_pack_b(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, rc_arena *ar)
{
    if (!rc_pack_b_alloc(p, b, ldb, trans, K, N, ar)) return false;
    rc_pack_b_fill(p, 0, N);
    return true;
}

#ifdef HAVE_AVX512_PATH
/* One tile: rows [0, mr) of A against one panel, into C (masked to the panel's w columns).
 * Element (r, k) of A is at A[r * rs + k * ks]: rows of A (rs = lda, ks = 1), or the strips the
 * weight gradients pack a tall matrix's columns into (rs = 1, ks = MR). nv (a constant): the
 * panel's vectors computed, 2, or 1 for a last panel of at most 16 columns (N = 200 leaves one
 * of 8), whose second vector holds only zero padding. */
__attribute__((target("avx512f"), always_inline)) static inline void tile_v(int mr, int nv, int64_t K, const float *A, int64_t rs,
                                                                             int64_t ks, const float *panel, float beta,
                                                                             float *C, int64_t ldc, __mmask16 m0,
                                                                             __mmask16 m1)
{
    __m512 c0[MR], c1[MR]; /* fully unrolled (mr and nv are constants here), so they live in registers */
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        if (beta != 0) {
            c0[r] = _mm512_maskz_loadu_ps(m0, C + r * ldc);
            c1[r] = nv > 1 ? _mm512_maskz_loadu_ps(m1, C + r * ldc + 16) : _mm512_setzero_ps();
        } else {
            c0[r] = _mm512_setzero_ps();
            c1[r] = _mm512_setzero_ps();
        }
    }
    for (int64_t k = 0; k < K; k++) {
        __m512 b0 = _mm512_load_ps(panel + k * NR), b1 = nv > 1 ? _mm512_load_ps(panel + k * NR + 16) : b0;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512 a = _mm512_set1_ps(A[r * rs + k * ks]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            if (nv > 1) c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(C + r * ldc, m0, c0[r]);
        if (nv > 1) _mm512_mask_storeu_ps(C + r * ldc + 16, m1, c1[r]);
    }
}

__attribute__((target("avx512f"), always_inline)) static inline void tile_s(int mr, int64_t K, const float *A, int64_t rs,
                                                                             int64_t ks, const float *panel, float beta,
                                                                             float *C, int64_t ldc, __mmask16 m0,
                                                                             __mmask16 m1)
{
    if (m1) tile_v(mr, 2, K, A, rs, ks, panel, beta, C, ldc, m0, m1);
    else tile_v(mr, 1, K, A, rs, ks, panel, beta, C, ldc, m0, m1);
}

__attribute__((target("avx512f"), always_inline)) static inline void tile(int mr, int64_t K, const float *A, int64_t lda,
                                                                           const float *panel, float beta, float *C,
                                                                           int64_t ldc, __mmask16 m0, __mmask16 m1)
{
    tile_s(mr, K, A, lda, 1, panel, beta, C, ldc, m0, m1);
}

/* The last mr (1 to 3) rows against np (1 or 2) panels at once, right after the panels' row
 * tiles (so the panels are still in L1): 2 mr np accumulators. A row alone against one panel
 * would wait on the FMA's latency with two, and taking those rows against the whole matrix
 * after all panels would read it from L2 once more per row (the split of a batch's rows
 * between threads, and the rows still running in a variable-length batch, leave such rows at
 * most steps). Each element is summed over k in order, as in the tiles: the same bits. */
__attribute__((target("avx512f"), always_inline)) static inline void tail_tile(int mr, int np, int64_t K, const float *A,
                                                                                int64_t lda, const float *p0, const float *p1,
                                                                                float beta, float *C, int64_t ldc,
                                                                                const __mmask16 *m)
{
    __m512 c[3][4];
#pragma GCC unroll 3
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 2 * np; v++) c[r][v] = beta != 0 ? _mm512_maskz_loadu_ps(m[v], C + r * ldc + 16 * v) : _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int v = 0; v < 2 * np; v++) b[v] = _mm512_load_ps((v < 2 ? p0 : p1) + k * NR + 16 * (v & 1));
#pragma GCC unroll 3
        for (int r = 0; r < mr; r++) {
            __m512 a = _mm512_set1_ps(A[r * lda + k]);
#pragma GCC unroll 4
            for (int v = 0; v < 2 * np; v++) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 2 * np; v++) _mm512_mask_storeu_ps(C + r * ldc + 16 * v, m[v], c[r][v]);
}

static void tail_rows(int mr, int np, int64_t K, const float *A, int64_t lda, const float *p0, const float *p1, float beta,
                      float *C, int64_t ldc, const __mmask16 *m) __attribute__((target("avx512f")));
static void tail_rows(int mr, int np, int64_t K, const float *A, int64_t lda, const float *p0, const float *p1, float beta,
                      float *C, int64_t ldc, const __mmask16 *m)
{
#define RC_TAIL(r, n) tail_tile(r, n, K, A, lda, p0, p1, beta, C, ldc, m)
    switch (mr * 2 + np - 1) { /* constants for the compiler: the accumulators stay in registers */
    case 2: RC_TAIL(1, 1); break;
    case 3: RC_TAIL(1, 2); break;
    case 4: RC_TAIL(2, 1); break;
    case 5: RC_TAIL(2, 2); break;
    case 6: RC_TAIL(3, 1); break;
    default: RC_TAIL(3, 2); break;
    }
#undef RC_TAIL
}

/* Rows are taken in blocks of MB so that a block's rows of C (MB x N floats) stay in L2
 * between the K blocks. */
#define MB 64

/* One tile of mr rows, 4 <= mr <= MR (a constant for each case: the accumulators stay in
 * registers). */
static void tile_rows(int mr, int64_t K, const float *A, int64_t lda, const float *panel, float beta, float *C, int64_t ldc,
                      __mmask16 m0, __mmask16 m1) __attribute__((target("avx512f")));
static void tile_rows(int mr, int64_t K, const float *A, int64_t lda, const float *panel, float beta, float *C, int64_t ldc,
                      __mmask16 m0, __mmask16 m1)
{
#define RC_TILE(r) tile(r, K, A, lda, panel, beta, C, ldc, m0, m1)
    switch (mr) {
    case 4: RC_TILE(4); break;
    case 5: RC_TILE(5); break;
    case 6: RC_TILE(6); break;
    case 7: RC_TILE(7); break;
    default: RC_TILE(8); break;
    }
#undef RC_TILE
}

/* Panels [q0, q1) of the product, for rows [0, M) (M <= MB, or any M when K is one block). */
__attribute__((target("avx512f"))) static void gemm_block(int64_t M, const float *A, int64_t lda, const rc_packed_b *p,
                                                          float beta, float *C, int64_t ldc, int64_t q0, int64_t q1)
{
    int64_t K = p->K, N = p->N - p->tail;
    int64_t kbs = rc_gemm_kblock(K), nq = panel_count(K, p->N); /* rows per K block; panels */
    /* Rows in register tiles of 4 to MR rows: tiles of MR, and what is left as one tile (4 to
     * 7 rows) or, where 1 to 3 rows are left, the last MR + those as two (4 + 1..3 and 4), so
     * that from 4 rows on no row goes without a tile (the tail kernel's accumulators are too few
     * to hide the multiply-add's latency: 1.7-1.9x a tiled row's time). Fewer than 4 rows: the
     * tail kernel. */
    int64_t tiled = M >= 4 ? M : 0, full = tiled / MR, rest = tiled % MR;
    if (full && rest && rest < 4) full--, rest += MR;
    for (int64_t k0 = 0, kb; k0 < K; k0 += kb) {
        kb = RC_MIN(kbs, K - k0);
        float bk = k0 ? 1.0f : beta;
        for (int64_t q = q0; q < q1; q++) {
            int64_t n0 = q * NR;
            __mmask16 m[4] = {0};
            panel_masks(RC_MIN(NR, N - n0), &m[0], &m[1]);
            const float *panel = p->panels + rc_gemm_panel_at(nq, q, k0, kb), *a = A + k0;
            float *c = C + n0;
            int64_t i = 0;
            for (int64_t t = 0; t < full; t++, i += MR) tile(MR, kb, a + i * lda, lda, panel, bk, c + i * ldc, ldc, m[0], m[1]);
            for (int64_t left = rest; left > 0;) { /* rest: 4 to 7, or MR + 1 to 3 as (4 + 1..3) and 4 */
                int mr = (int)(left > MR ? left - 4 : left);
                tile_rows(mr, kb, a + i * lda, lda, panel, bk, c + i * ldc, ldc, m[0], m[1]);
                i += mr, left -= mr;
            }
            if (M == tiled || ((q - q0) % 2 == 0 && q + 1 < q1)) continue;
            /* fewer than 4 rows: after every second panel (and the last), against the two */
            int np = (q - q0) % 2 == 1 ? 2 : 1;
            const float *p0 = np == 2 ? panel - kb * NR : panel;
            if (np == 2) {
                m[2] = m[0], m[3] = m[1];
                panel_masks(NR, &m[0], &m[1]);
            }
            tail_rows((int)(M - tiled), np, kb, a + tiled * lda, lda, p0, panel, bk, C + (q - np + 1) * NR + tiled * ldc, ldc, m);
        }
    }
}

/* The tail's t columns (the constant 1 to 4) for mr rows (a constant): each element a dot
 * product of A's row and the column's row of K, in 16 lanes over k (the last vector masked),
 * whose lanes are then added by _mm512_reduce_add_ps. Every element is computed the same way
 * whatever rows share its call: the same bits for any split of the rows. */
__attribute__((target("avx512f"), always_inline)) static inline void dot_tile(int mr, int t, int64_t K, const float *A, int64_t lda,
                                                                               const float *tails, float beta, float *C,
                                                                               int64_t ldc)
{
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
        __mmask16 km = (__mmask16)(K - k >= 16 ? 0xffff : (1u << (K - k)) - 1);
        __m512 b[4];
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) b[c] = _mm512_maskz_loadu_ps(km, tails + c * K + k);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512 a = _mm512_maskz_loadu_ps(km, A + r * lda + k);
#pragma GCC unroll 4
            for (int c = 0; c < t; c++) acc[r][c] = _mm512_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) {
            float d = _mm512_reduce_add_ps(acc[r][c]);
            C[r * ldc + c] = beta != 0 ? C[r * ldc + c] + d : d;
        }
}

/* The tail columns of rows [0, M): eight rows at a time for up to two columns, four for more
 * (at most 16 accumulators), the rest one by one. */
__attribute__((target("avx512f"))) static void tail_dots(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta,
                                                         float *C, int64_t ldc)
{
    int64_t K = p->K, t = p->tail;
    const float *tails = tails_of(p);
    C += p->N - t;
    switch (t) {
    case 1: RC_GEMM_TAIL_ROWS(8, 1); break;
    case 2: RC_GEMM_TAIL_ROWS(8, 2); break;
    case 3: RC_GEMM_TAIL_ROWS(4, 3); break;
    default: RC_GEMM_TAIL_ROWS(4, 4); break;
    }
}

/* Panels [q0, q1), and the tail columns when `tail`. */
static void gemm_avx512(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta, float *C, int64_t ldc,
                        int64_t q0, int64_t q1, bool tail)
{
    if (p->K <= RC_GEMM_KC_MAX) { /* one K block (gemm_kernels.h) */
        gemm_block(M, A, lda, p, beta, C, ldc, q0, q1);
    } else {
        for (int64_t i0 = 0; i0 < M; i0 += MB)
            gemm_block(RC_MIN(MB, M - i0), A + i0 * lda, lda, p, beta, C + i0 * ldc, ldc, q0, q1);
    }
    if (tail && p->tail) tail_dots(M, A, lda, p, beta, C, ldc);
}
#endif

/* The block's columns in strips of this width, each [K][strip] (the last narrower): 64 for the
 * AVX2 kernel (widths it takes: multiples of 8), which takes 64 columns at a time, so that it
 * streams each strip from start to end (a fifth faster than taking half of every row where the
 * block comes from L3); one strip of all w columns otherwise. */
static int64_t block_strip(int64_t w) { return avx2_kernels() && w > 64 && w % 8 == 0 ? 64 : w; }

void rc_pack_block(const float *b, int64_t ldb, int64_t K, int64_t n0, int64_t w, float *dst)
{
    for (int64_t s0 = 0, sw = block_strip(w); s0 < w; s0 += sw) {
        int64_t ws = RC_MIN(sw, w - s0);
        for (int64_t k = 0; k < K; k++) memcpy(dst + s0 * K + k * ws, b + k * ldb + n0 + s0, (size_t)ws * sizeof *dst);
    }
}

#ifdef HAVE_AVX512_PATH
/* 128 columns (eight accumulators, enough to hide the FMA latency) at a time, each a row of
 * the block read in one stream. */
__attribute__((target("avx512f"))) static void gemv_block_avx512(int64_t K, const float *a, const float *blk, int64_t w,
                                                                 float beta, float *c)
{
    for (int64_t j0 = 0; j0 < w; j0 += 128) {
        int nv = (int)(RC_MIN(128, w - j0) / 16);
        __m512 acc[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) acc[v] = v < nv && beta != 0 ? _mm512_loadu_ps(c + j0 + 16 * v) : _mm512_setzero_ps();
        if (nv == 8) {
            for (int64_t k = 0; k < K; k++) {
                __m512 x = _mm512_set1_ps(a[k]);
                const float *row = blk + k * w + j0;
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) acc[v] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16 * v), acc[v]);
            }
        } else {
            for (int64_t k = 0; k < K; k++) {
                __m512 x = _mm512_set1_ps(a[k]);
                const float *row = blk + k * w + j0;
                for (int v = 0; v < nv; v++) acc[v] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16 * v), acc[v]);
            }
        }
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + j0 + 16 * v, acc[v]);
    }
}
#endif

void rc_gemv_block(int64_t K, const float *a, const float *blk, int64_t w, float beta, float *c)
{
#ifdef HAVE_AVX512_PATH
    if (!g_fallback && cpu_has_avx512() && w % 16 == 0) {
        gemv_block_avx512(K, a, blk, w, beta, c);
        return;
    }
    if (!g_fallback && cpu_has_avx2() && w % 8 == 0) {
        for (int64_t s0 = 0, sw = block_strip(w); s0 < w; s0 += sw)
            rc_gemv_block_avx2(K, a, blk + s0 * K, RC_MIN(sw, w - s0), beta, c + s0);
        return;
    }
#endif
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)w, 1.0f, blk, (int)w, a, 1, beta, c, 1); /* (one strip here) */
}

void rc_gemm_packed(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta, float *C, int64_t ldc)
{
    rc_gemm_packed_cols(M, A, lda, p, beta, C, ldc, 0, p->N);
}

void rc_gemm_packed_cols(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta, float *C, int64_t ldc,
                         int64_t n0, int64_t n1)
{
    if (M <= 0 || n1 <= n0 || p->K <= 0) {
        if (M > 0 && n1 > n0 && beta == 0)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc + n0, 0, (size_t)(n1 - n0) * sizeof *C);
        return;
    }
#ifdef HAVE_AVX512_PATH
    if (p->panels && n0 % NR == 0 && (n1 % NR == 0 || n1 == p->N)) {
        bool last = n1 == p->N;
        int64_t q1 = last ? panel_count(p->K, p->N) : n1 / NR;
        if (cpu_has_avx512()) gemm_avx512(M, A, lda, p, beta, C, ldc, n0 / NR, q1, last);
        else {
            rc_gemm_avx2(M, A, lda, p->panels, p->K, p->N - p->tail, beta, C, ldc, n0 / NR, q1);
            if (last && p->tail) rc_gemm_tail_avx2(M, A, lda, tails_of(p), p->K, p->tail, beta, C + p->N - p->tail, ldc);
        }
        return;
    }
#endif
    const float *b = p->trans ? p->b + n0 * p->ldb : p->b + n0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, p->trans ? CblasTrans : CblasNoTrans, (int)M, (int)(n1 - n0), (int)p->K, 1.0f,
                A, (int)lda, b, (int)p->ldb, beta, C + n0, (int)ldc);
}

/* ---- weight gradients: C += A^T B over all steps ---------------------------------------- */

/* Rows of the reduction per block: one panel's block of B (TN_KC x 32 floats, 24 KB) is packed
 * just before its tiles use it, so it is read from L1. */
#define TN_KC 192
#define TN_JOIN_MAX 128 /* CBLAS path: groups of at most these many columns in all are joined */
#define PACK_AHEAD 8 /* rows */

size_t rc_gemm_tn_floats(int64_t k)
{
    return (size_t)TN_KC * (size_t)(NR + k + MR - 1) + (size_t)(k + MR); /* panel, strips, one row */
}

static inline const float *tall_row(const rc_tall *g, int64_t r)
{
    if (g->idx) return g->a0 + g->idx[r] * g->lda;
    if (r < g->split || !g->a1) return g->a0 + r * g->lda;
    return g->a1 + (r - g->split) * g->lda;
}

rc_tall rc_tall_from(rc_tall g, int64_t m0)
{
    if (g.idx) g.idx += m0;
    else if (!g.a1) g.a0 += m0 * g.lda;
    else if (m0 < g.split) g.a0 += m0 * g.lda, g.split -= m0;
    else g.a0 = g.a1 + (m0 - g.split) * g.lda, g.a1 = NULL, g.split = 0;
    return g;
}

#ifdef HAVE_AVX512_PATH
/* One row of a panel's block of B (src: its w <= 32 columns, masked by m0, m1) to dst, added
 * into the pair of column sums at s when `sum`; the row PACK_AHEAD rows on prefetched when
 * `ahead`. */
__attribute__((target("avx512f"), always_inline)) static inline void pack_row(const float *src, int64_t ldb, bool ahead, __mmask16 m0,
                                                                               __mmask16 m1, float *dst, bool sum, __m512 *s)
{
    if (ahead) {
        _mm_prefetch((const char *)(src + PACK_AHEAD * ldb), _MM_HINT_T0);
        _mm_prefetch((const char *)(src + PACK_AHEAD * ldb + 31), _MM_HINT_T0);
    }
    __m512 b0 = _mm512_maskz_loadu_ps(m0, src), b1 = _mm512_maskz_loadu_ps(m1, src + 16);
    _mm512_store_ps(dst, b0);
    _mm512_store_ps(dst + 16, b1);
    if (sum) {
        s[0] = _mm512_add_ps(s[0], b0);
        s[1] = _mm512_add_ps(s[1], b1);
    }
}

/* dst[0, n) = src[0, n), sixteen floats at a time (the last vector masked). */
__attribute__((target("avx512f"), always_inline)) static inline void copy16(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
    }
}

/* Rows [r0, r1) of the reduction for panels [q0, q1). A's block is first copied into
 * [k / 8][kb][8] strips (a tile's eight columns of A over the block, in one stream), the groups'
 * columns taken as one run of k (C's rows for them are consecutive), so that only the last
 * strip is partly empty; then each panel's block of B just before its tiles. */
__attribute__((target("avx512f"))) static void tn_block(int64_t r0, int64_t r1, int ng, const rc_tall *g, const float *B,
                                                        int64_t ldb, int64_t N, float *C, int64_t ldc, int64_t q0,
                                                        int64_t q1, float *colsum, float *work)
{
    int64_t kb = r1 - r0, ktot = 0;
    for (int gi = 0; gi < ng; gi++) ktot += g[gi].k;
    int64_t kpad = (ktot + MR - 1) / MR * MR;
    float *panel = work, *apk = work + TN_KC * NR, *row = apk + kpad * kb; /* row: one row of A, k floats */
    for (int64_t r = 0; r < kb; r++) {
        int64_t c = 0;
        for (int gi = 0; gi < ng; gi++) {
            copy16(row + c, tall_row(&g[gi], r0 + r), g[gi].k); /* (a call to memcpy per row cost more than the copy) */
            c += g[gi].k;
        }
        for (; c < kpad; c++) row[c] = 0;
        for (int64_t i = 0; i < kpad; i += MR) _mm256_store_ps(apk + i * kb + r * MR, _mm256_loadu_ps(row + i));
    }
    for (int64_t q = q0; q < q1; q++) {
        int64_t c0 = q * NR, w = RC_MIN(NR, N - c0);
        __mmask16 m0, m1;
        panel_masks(w, &m0, &m1);
        /* the panel's block, and its column sums on the way where the caller asks for them
         * (row k added into pair k % 4 of the sums, in registers; the pairs added in a fixed
         * order). B's rows are a stride apart: each row's two lines are prefetched PACK_AHEAD
         * rows ahead, as the copy is otherwise bound by their latency. */
        __m512 s[8];
        for (int v = 0; v < 8; v++) s[v] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 4 <= kb; k += 4)
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++)
                pack_row(B + (r0 + k + u) * ldb + c0, ldb, k + u + PACK_AHEAD < kb, m0, m1, panel + (k + u) * NR, colsum != NULL,
                         &s[2 * u]);
        for (int u = 0; k < kb; k++, u++)
            pack_row(B + (r0 + k) * ldb + c0, ldb, false, m0, m1, panel + k * NR, colsum != NULL, &s[2 * u]);
        if (colsum) {
            __m512 t0 = _mm512_add_ps(_mm512_add_ps(s[0], s[2]), _mm512_add_ps(s[4], s[6]));
            __m512 t1 = _mm512_add_ps(_mm512_add_ps(s[1], s[3]), _mm512_add_ps(s[5], s[7]));
            _mm512_mask_storeu_ps(colsum + c0, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, colsum + c0), t0));
            _mm512_mask_storeu_ps(colsum + c0 + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, colsum + c0 + 16), t1));
        }
        float *crow = C + c0;
        const float *ap = apk;
        int64_t i = 0;
        for (; i + MR <= ktot; i += MR, ap += MR * kb) {
            for (int r = 0; r < MR && i + MR + r < ktot; r++) {
                _mm_prefetch((const char *)(crow + (i + MR + r) * ldc), _MM_HINT_T0);
                _mm_prefetch((const char *)(crow + (i + MR + r) * ldc + 16), _MM_HINT_T0);
            }
            tile_s(MR, kb, ap, 1, MR, panel, 1.0f, crow + i * ldc, ldc, m0, m1);
        }
        int64_t left = ktot - i, j = 0;
        for (; j + 4 <= left; j += 4) tile_s(4, kb, ap + j, 1, MR, panel, 1.0f, crow + (i + j) * ldc, ldc, m0, m1);
        for (; j < left; j++) tile_s(1, kb, ap + j, 1, MR, panel, 1.0f, crow + (i + j) * ldc, ldc, m0, m1);
    }
}
#endif

/* colsum[c] += the sum of B's m rows in column c, for c in [n0, n1): up to 1024 columns at a
 * time, B read row after row (one stream) into sums in a local block (which the compiler
 * vectorises, as it may not colsum's, which B could alias), then added to colsum. */
__attribute__((target_clones("avx2", "default"))) static void add_colsums(int64_t m, const float *B, int64_t ldb, int64_t n0,
                                                                          int64_t n1, float *colsum)
{
    enum { W = 1024 };
    float acc[W];
    for (int64_t c0 = n0; c0 < n1; c0 += W) {
        int64_t w = RC_MIN(W, n1 - c0);
        memset(acc, 0, (size_t)w * sizeof *acc);
        for (int64_t r = 0; r < m; r++) {
            const float *b = B + r * ldb + c0;
            for (int64_t c = 0; c < w; c++) acc[c] += b[c];
        }
        for (int64_t c = 0; c < w; c++) colsum[c0 + c] += acc[c];
    }
}

/* The CBLAS path's C[k, n0:n1] += A^T B for groups g[0, ng) of k columns in all, their rows
 * gathered side by side into work rb at a time (rb x k floats), one call per block. */
static void gathered_tn(int64_t m, int64_t rb, int ng, const rc_tall *g, int64_t k, const float *B, int64_t ldb, float *crow,
                        int64_t ldc, int64_t n0, int64_t n1, float *work)
{
    for (int64_t r0 = 0; r0 < m; r0 += rb) {
        int64_t kb = RC_MIN(rb, m - r0);
        for (int64_t r = 0; r < kb; r++) {
            float *w = work + r * k;
            for (int gi = 0; gi < ng; gi++) {
                memcpy(w, tall_row(&g[gi], r0 + r), (size_t)g[gi].k * sizeof *w);
                w += g[gi].k;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)(n1 - n0), (int)kb, 1.0f, work, (int)k, B + r0 * ldb + n0,
                    (int)ldb, 1.0f, crow, (int)ldc);
    }
}

void rc_gemm_tn_acc(int64_t m, int ng, const rc_tall *g, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t N,
                    int64_t n0, int64_t n1, float *colsum, float *work)
{
    if (m <= 0 || n1 <= n0) return;
#ifdef HAVE_AVX512_PATH
    if (packs(m, N) && cpu_has_avx512() && n0 % NR == 0 && (n1 % NR == 0 || n1 == N)) {
        for (int64_t r0 = 0; r0 < m; r0 += TN_KC)
            tn_block(r0, RC_MIN(m, r0 + TN_KC), ng, g, B, ldb, N, C, ldc, n0 / NR, (n1 + NR - 1) / NR, colsum, work);
        return;
    }
#endif
    if (colsum) add_colsums(m, B, ldb, n0, n1, colsum);
    float *crow = C + n0;
    int64_t ktot = 0;
    bool gathered = false;
    for (int gi = 0; gi < ng; gi++) ktot += g[gi].k, gathered |= g[gi].idx != NULL;
    if (ng > 1 && gathered && ktot <= TN_JOIN_MAX) {
        /* Narrow groups, one of them gathered anyway (the seed's [x, h], 10 + 50 columns): all
         * gathered side by side, so that one CBLAS call per block of rows makes every row of C
         * (each call packs B's block again, which for a few rows of C costs as much as their
         * product), in blocks of equal size that the work holds. */
        int64_t fit = (int64_t)(rc_gemm_tn_floats(ktot) / (size_t)ktot), nb = (m + fit - 1) / fit;
        gathered_tn(m, (m + nb - 1) / nb, ng, g, ktot, B, ldb, crow, ldc, n0, n1, work);
        return;
    }
    for (int gi = 0; gi < ng; gi++) {
        const rc_tall *t = &g[gi];
        if (t->idx) { /* TN_KC x k floats fit in work */
            gathered_tn(m, TN_KC, 1, t, t->k, B, ldb, crow, ldc, n0, n1, work);
            crow += t->k * ldc;
            continue;
        }
        int64_t s = t->a1 ? RC_MIN(t->split, m) : m;
        if (s > 0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t->k, (int)(n1 - n0), (int)s, 1.0f, t->a0, (int)t->lda,
                        B + n0, (int)ldb, 1.0f, crow, (int)ldc);
        if (m > s)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)t->k, (int)(n1 - n0), (int)(m - s), 1.0f, t->a1,
                        (int)t->lda, B + s * ldb + n0, (int)ldb, 1.0f, crow, (int)ldc);
        crow += t->k * ldc;
    }
}
