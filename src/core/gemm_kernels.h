/*
 * gemm_kernels.h - internal to the packed products (gemm_packed.c): the panel width they
 * share and the kernels kept in their own files, one per instruction set.
 */
#ifndef RECUR_CORE_GEMM_KERNELS_H
#define RECUR_CORE_GEMM_KERNELS_H

#include "recur_impl.h"

#define RC_GEMM_NR 32 /* panel width: B packed as [ceil(N/32)][K][32], zero padded */

#if defined(__x86_64__) && defined(__GNUC__)
#define RC_GEMM_HAVE_X86 1

/* AVX2 + FMA (gemm_avx2.c). Panels [q0, q1) of C[M x N'] = beta C + A @ B, N' = Np the
 * panels' columns, `panels` the first panel (K x 32 floats each, 32-byte aligned). */
void rc_gemm_avx2(int64_t M, const float *A, int64_t lda, const float *panels, int64_t K, int64_t Np, float beta, float *C,
                  int64_t ldc, int64_t q0, int64_t q1);

/* c[0, w) = beta c + a[0, K) @ blk [K][w], w a multiple of 8. */
void rc_gemv_block_avx2(int64_t K, const float *a, const float *blk, int64_t w, float beta, float *c);
#else
#define RC_GEMM_HAVE_X86 0
#endif

#endif
