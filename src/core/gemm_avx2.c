/*
 * gemm_avx2.c - the packed products' kernels for CPUs with AVX2 and FMA but no AVX-512 (AMD
 * Zen 2/3, Intel client cores): the same 32-column panels as the AVX-512 kernels in
 * gemm_packed.c, streamed through 8-lane register tiles.
 *
 * Sixteen vector registers hold at most twelve accumulators next to the B vectors and the
 * broadcast A element, so a tile is 6 rows against half a panel (6 x 16: 12 accumulators, 2
 * loads of B per k) where it has rows enough, and 2 or 3 rows against a whole panel (8 or 12
 * accumulators) for the rows left over: a tile with fewer than 8 accumulators would wait on
 * the multiply-add's latency. Every element is summed over k in order, one multiply-add per k,
 * its partial sum stored and reloaded between K blocks, so a row gets the same bits whichever
 * tile computes it (a split of the rows between threads changes nothing).
 */
#include "core/gemm_kernels.h"

#if RC_GEMM_HAVE_X86

#include <immintrin.h>
#include <string.h>

#define NR RC_GEMM_NR
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

/* K in blocks (gemm_kernels.h); rows in blocks of MB so that their part of C stays in L2
 * between the K blocks (as the AVX-512 kernels do). */
#define MB 64

/* The first n (0 to 8) lanes. */
AVX2_INLINE __m256i lanes(int64_t n)
{
    static const int32_t tbl[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tbl + 8 - (n < 0 ? 0 : n > 8 ? 8 : n)));
}

/* c[0, n) as a vector (n <= 0: zeros; a full vector loaded plainly). */
AVX2_INLINE __m256 load_cols(const float *c, int64_t n)
{
    if (n >= 8) return _mm256_loadu_ps(c);
    return n > 0 ? _mm256_maskload_ps(c, lanes(n)) : _mm256_setzero_ps();
}

/* Stores the first n lanes; at the edge through a buffer, as AMD's cores before Zen 4 run a
 * masked store as dozens of micro-ops. */
AVX2_INLINE void store_cols(float *c, int64_t n, __m256 v)
{
    if (n >= 8) {
        _mm256_storeu_ps(c, v);
    } else if (n > 0) {
        float t[8];
        _mm256_storeu_ps(t, v);
        memcpy(c, t, (size_t)n * sizeof *c);
    }
}

/* mr rows of A (a constant, 1 to 6) against nv vectors (a constant: up to 2 for half a panel,
 * 4 for a panel, 8 for two panels at p0 and p1) whose first w columns are C's (from C on). The
 * B vector v is at (v < 4 ? p0 : p1) + 8 (v % 4) in each panel row. */
AVX2_INLINE void tile(int mr, int nv, int64_t K, const float *A, int64_t lda, const float *p0, const float *p1, float beta,
                      float *C, int64_t ldc, int64_t w)
{
    __m256 c[6][8];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) c[r][v] = beta != 0 ? load_cols(C + r * ldc + 8 * v, w - 8 * v) : _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m256 b[8];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            b[v] = _mm256_load_ps((v < 4 ? p0 : p1) + k * NR + 8 * (v & 3));
            /* held in a register: GCC would otherwise fold the load into every row's
             * multiply-add, mr loads of each vector per k (load-bound at 6 rows) */
            if (mr > 1 && mr * nv + nv < 16) __asm__("" : "+x"(b[v]));
        }
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * lda + k);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) c[r][v] = _mm256_fmadd_ps(a, b[v], c[r][v]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store_cols(C + r * ldc + 8 * v, w - 8 * v, c[r][v]);
}

/* Half a panel (16 columns at p, w of them C's) for mr = 1 to 6 rows: one vector where w <= 8
 * (a last panel of 8 columns, N = 200), else two. */
static AVX2 void half_tile(int mr, int64_t K, const float *A, int64_t lda, const float *p, float beta, float *C, int64_t ldc,
                           int64_t w)
{
#define RC_T(r, v) tile(r, v, K, A, lda, p, p, beta, C, ldc, w)
    switch (mr * 2 + (w > 8)) { /* constants for the compiler: the accumulators stay in registers */
    case 2: RC_T(1, 1); break;
    case 3: RC_T(1, 2); break;
    case 4: RC_T(2, 1); break;
    case 5: RC_T(2, 2); break;
    case 6: RC_T(3, 1); break;
    case 7: RC_T(3, 2); break;
    case 8: RC_T(4, 1); break;
    case 9: RC_T(4, 2); break;
    case 10: RC_T(5, 1); break;
    case 11: RC_T(5, 2); break;
    case 12: RC_T(6, 1); break;
    default: RC_T(6, 2); break;
    }
#undef RC_T
}

/* A whole panel (its vectors that hold C's w columns) for mr = 1 to 3 rows. */
static AVX2 void panel_tile(int mr, int64_t K, const float *A, int64_t lda, const float *p, float beta, float *C, int64_t ldc,
                            int64_t w)
{
#define RC_T(r, v) tile(r, v, K, A, lda, p, p, beta, C, ldc, w)
    switch ((mr - 1) * 4 + (int)((RC_MIN(w, NR) + 7) / 8) - 1) {
    case 0: RC_T(1, 1); break;
    case 1: RC_T(1, 2); break;
    case 2: RC_T(1, 3); break;
    case 3: RC_T(1, 4); break;
    case 4: RC_T(2, 1); break;
    case 5: RC_T(2, 2); break;
    case 6: RC_T(2, 3); break;
    case 7: RC_T(2, 4); break;
    case 8: RC_T(3, 1); break;
    case 9: RC_T(3, 2); break;
    case 10: RC_T(3, 3); break;
    default: RC_T(3, 4); break;
    }
#undef RC_T
}

/* One row against two panels (p0, and p1 after it): eight accumulators. */
static AVX2 void pair_tile(int64_t K, const float *A, int64_t lda, const float *p0, const float *p1, float beta, float *C,
                           int64_t ldc, int64_t w)
{
    tile(1, 8, K, A, lda, p0, p1, beta, C, ldc, w);
}

/* mr rows of one panel's K block: half tiles (4 to 6 rows), or the whole panel. */
static AVX2 void rows_of_panel(int mr, int64_t K, const float *a, int64_t lda, const float *panel, float beta, float *c,
                               int64_t ldc, int64_t w)
{
    if (mr <= 3) {
        panel_tile(mr, K, a, lda, panel, beta, c, ldc, w);
        return;
    }
    half_tile(mr, K, a, lda, panel, beta, c, ldc, w);
    if (w > 16) half_tile(mr, K, a, lda, panel + 16, beta, c + 16, ldc, w - 16);
}

/* Panels [q0, q1) for rows [0, M) (M <= MB, or any M when K is one block). Rows in tiles of 6;
 * 2 to 5 left over as one more tile, 1 left over (after at least 6) as 4 + 3. */
static AVX2 void gemm_block(int64_t M, const float *A, int64_t lda, const float *panels, int64_t K, int64_t Np, float beta,
                            float *C, int64_t ldc, int64_t q0, int64_t q1)
{
    int64_t kbs = rc_gemm_kblock(K), nq = (Np + NR - 1) / NR;
    int64_t full = M / 6, rest = M % 6;
    if (full && rest == 1) full--, rest = 7;
    for (int64_t k0 = 0, kb; k0 < K; k0 += kb) {
        kb = RC_MIN(kbs, K - k0);
        float bk = k0 ? 1.0f : beta;
        for (int64_t q = q0; q < q1; q++) {
            int64_t n0 = q * NR, w = RC_MIN(NR, Np - n0);
            const float *panel = panels + rc_gemm_panel_at(nq, q, k0, kb), *a = A + k0;
            float *c = C + n0;
            if (M == 1) { /* one row: two panels at a time (eight accumulators) */
                if (q + 1 < q1) {
                    pair_tile(kb, a, lda, panel, panel + kb * NR, bk, c, ldc, RC_MIN(2 * NR, Np - n0));
                    q++;
                } else {
                    panel_tile(1, kb, a, lda, panel, bk, c, ldc, w);
                }
                continue;
            }
            int64_t i = 0;
            for (int64_t t = 0; t < full; t++, i += 6) rows_of_panel(6, kb, a + i * lda, lda, panel, bk, c + i * ldc, ldc, w);
            for (int64_t left = rest; left > 0;) {
                int mr = (int)(left == 7 ? 4 : left);
                rows_of_panel(mr, kb, a + i * lda, lda, panel, bk, c + i * ldc, ldc, w);
                i += mr, left -= mr;
            }
        }
    }
}

void rc_gemm_avx2(int64_t M, const float *A, int64_t lda, const float *panels, int64_t K, int64_t Np, float beta, float *C,
                  int64_t ldc, int64_t q0, int64_t q1)
{
    if (K <= RC_GEMM_KC_MAX) {
        gemm_block(M, A, lda, panels, K, Np, beta, C, ldc, q0, q1);
        return;
    }
    for (int64_t i0 = 0; i0 < M; i0 += MB)
        gemm_block(RC_MIN(MB, M - i0), A + i0 * lda, lda, panels, K, Np, beta, C + i0 * ldc, ldc, q0, q1);
}

/* The tail's t columns (the constant 1 to 4) for mr rows (a constant, at most 12 accumulators
 * in all): each element a dot product of A's row and the column's row of K in 8 lanes over k
 * (the last vector masked), whose lanes are then added in a fixed order. Every element is
 * computed the same way whatever rows share the call: the same bits for any split of the rows. */
AVX2_INLINE void dot_tile(int mr, int t, int64_t K, const float *A, int64_t lda, const float *tails, float beta, float *C,
                          int64_t ldc)
{
    __m256 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 b[4];
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) b[c] = _mm256_loadu_ps(tails + c * K + k);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_loadu_ps(A + r * lda + k);
#pragma GCC unroll 4
            for (int c = 0; c < t; c++) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
    if (k < K) {
        __m256i km = lanes(K - k);
        __m256 b[4];
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) b[c] = _mm256_maskload_ps(tails + c * K + k, km);
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_maskload_ps(A + r * lda + k, km);
#pragma GCC unroll 4
            for (int c = 0; c < t; c++) acc[r][c] = _mm256_fmadd_ps(a, b[c], acc[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int c = 0; c < t; c++) {
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[r][c]), _mm256_extractf128_ps(acc[r][c], 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            float d = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
            C[r * ldc + c] = beta != 0 ? C[r * ldc + c] + d : d;
        }
}

AVX2 void rc_gemm_tail_avx2(int64_t M, const float *A, int64_t lda, const float *tails, int64_t K, int64_t t, float beta,
                            float *C, int64_t ldc)
{
    switch (t) {
    case 1: RC_GEMM_TAIL_ROWS(8, 1); break;
    case 2: RC_GEMM_TAIL_ROWS(4, 2); break;
    case 3: RC_GEMM_TAIL_ROWS(3, 3); break;
    default: RC_GEMM_TAIL_ROWS(2, 4); break;
    }
}

/* 64 columns (eight accumulators, enough to hide the multiply-add's latency) at a time, each
 * row of the block read in one stream; then 8 at a time. */
AVX2 void rc_gemv_block_avx2(int64_t K, const float *a, const float *blk, int64_t w, float beta, float *c)
{
    int64_t j0 = 0;
    for (; j0 + 64 <= w; j0 += 64) {
        __m256 acc[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) acc[v] = beta != 0 ? _mm256_loadu_ps(c + j0 + 8 * v) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            __m256 x = _mm256_broadcast_ss(a + k);
            const float *row = blk + k * w + j0;
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++) acc[v] = _mm256_fmadd_ps(x, _mm256_loadu_ps(row + 8 * v), acc[v]);
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) _mm256_storeu_ps(c + j0 + 8 * v, acc[v]);
    }
    for (; j0 < w; j0 += 8) {
        __m256 acc = beta != 0 ? _mm256_loadu_ps(c + j0) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(a + k), _mm256_loadu_ps(blk + k * w + j0), acc);
        _mm256_storeu_ps(c + j0, acc);
    }
}

#endif
