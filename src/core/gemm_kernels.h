/*
 * gemm_kernels.h - internal to the packed products (gemm_packed.c): the panel width they
 * share and the kernels kept in their own files, one per instruction set.
 */
#ifndef RECUR_CORE_GEMM_KERNELS_H
#define RECUR_CORE_GEMM_KERNELS_H

#include "recur_impl.h"

#define RC_GEMM_NR 32 /* panel width: B packed in panels of 32 columns, zero padded */

/* The kernels take K in blocks so that a panel's block (up to RC_GEMM_KC_MAX x 32 floats, 30
 * KB) stays in L1 while every row tile of A passes over it: the fewest blocks of at most
 * RC_GEMM_KC_MAX rows, of equal sizes (K = 256 as two of 128, not 192 and 64: the smaller
 * blocks leave room in L1 for the two panels a tail of 1-3 rows reads, which took 1.7-1.9
 * times a tile row's time per row with blocks of 192). The split of K changes no sum: each
 * element is summed over k in order, its partial sum stored and reloaded between blocks.
 *
 * The panels are stored in the order the kernels read them, K block by K block: block j holds
 * every panel's rows of that block, [nq][kb][32] (nq panels, kb rows), one after the other.
 * A product then streams B from memory in one run per K block, instead of nq runs of up to 30
 * KB each a panel apart. Where B does not fit in L2 and comes from L3 at every step, that
 * saves time: on Zen 3, one thread, in-process runs taken in turns, [32 x 512] @ [512 x 2048]
 * took 0.90 times as long as with panels [nq][K][32], and [32 x 2048] @ [2048 x 512] 0.86
 * times (the 512-unit LSTM's forward and backward step products). */
#define RC_GEMM_KC_MAX 240

/* Rows per K block (the last block may be shorter). */
static inline int64_t rc_gemm_kblock(int64_t K)
{
    int64_t nkb = K > RC_GEMM_KC_MAX ? (K + RC_GEMM_KC_MAX - 1) / RC_GEMM_KC_MAX : 1;
    return (K + nkb - 1) / nkb;
}

/* Where panel q's block of rows [k0, k0 + kb) begins (k0 the start of a K block, kb its rows),
 * in floats from the first panel, for panels of nq panels. */
static inline int64_t rc_gemm_panel_at(int64_t nq, int64_t q, int64_t k0, int64_t kb)
{
    return (k0 * nq + q * kb) * RC_GEMM_NR;
}

/* The tail columns' row loop (gemm_packed.h), shared by the AVX-512 and AVX2 kernels: tiles of
 * mr rows, then one row at a time, each by the including file's dot_tile(mr, tc, K, A, lda,
 * tails, beta, C, ldc) for the tc (1 to 4) tail columns; uses the caller's M, K, A, lda, tails,
 * beta, C and ldc. */
#define RC_GEMM_TAIL_ROWS(mr, tc)                                                                              \
    do {                                                                                                       \
        int64_t i_ = 0;                                                                                        \
        for (; i_ + (mr) <= M; i_ += (mr))                                                                    \
            dot_tile(mr, tc, K, A + i_ * lda, lda, tails, beta, C + i_ * ldc, ldc);                            \
        for (; i_ < M; i_++) dot_tile(1, tc, K, A + i_ * lda, lda, tails, beta, C + i_ * ldc, ldc);            \
    } while (0)

#if defined(__x86_64__) && defined(__GNUC__)
#define RC_GEMM_HAVE_X86 1

/* AVX2 + FMA (gemm_avx2.c). Panels [q0, q1) of C[M x N'] = beta C + A @ B, N' = Np the
 * panels' columns (ceil(Np / 32) panels), `panels` their memory (32-byte aligned). */
void rc_gemm_avx2(int64_t M, const float *A, int64_t lda, const float *panels, int64_t K, int64_t Np, float beta, float *C,
                  int64_t ldc, int64_t q0, int64_t q1);

/* The tail columns (gemm_packed.h): C[M x t] = beta C + A @ B's last t (1 to 4) columns, each
 * stored as one row of K floats at tails ([t][K]), computed as dot products. */
void rc_gemm_tail_avx2(int64_t M, const float *A, int64_t lda, const float *tails, int64_t K, int64_t t, float beta,
                       float *C, int64_t ldc);

/* c[0, w) = beta c + a[0, K) @ blk [K][w], w a multiple of 8. */
void rc_gemv_block_avx2(int64_t K, const float *a, const float *blk, int64_t w, float beta, float *c);
#else
#define RC_GEMM_HAVE_X86 0
#endif

#endif
