/*
 * gemm_packed.h - products with a right-hand matrix packed once and used many times: the
 * recurrent weights of an RNN, multiplied by a small batch of states at every step.
 */
#ifndef RECUR_CORE_GEMM_PACKED_H
#define RECUR_CORE_GEMM_PACKED_H

#include "recur_impl.h"

/* B (K x N) packed into ceil(N'/32) panels of 32 columns, zero padded, stored K block by K
 * block (gemm_kernels.h), and its last N - N' columns (the tail: N % 16 when
 * that is 1 to 4, K >= 32 and N > 16; otherwise none, N' = N) as rows [N - N'][K] after them:
 * those columns are computed as dot products, which cost a fraction of a 16-lane vector
 * holding four or fewer columns (the backward product of a 50-unit LSTM, N = 50, computes 3
 * vectors and 2 dot products per row instead of 4 vectors). The products run through AVX-512
 * kernels, or AVX2 + FMA ones (8-lane vectors); on a CPU with neither the panels are
 * not made and products go to CBLAS with the original matrix. */
typedef struct rc_packed_b {
    int64_t K, N;
    int64_t tail;      /* columns after the panels (0 to 4) */
    float *panels;     /* NULL: the CBLAS fallback */
    const float *b;    /* the original (borrowed) */
    int64_t ldb;
    bool trans;        /* b holds B transposed: B[k][n] = b[n * ldb + k] */
} rc_packed_b;

/* Pack B[k][n] = trans ? b[n * ldb + k] : b[k * ldb + n], with the panels taken from `ar`
 * (valid until its reset). False on OOM. */
bool rc_pack_b(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, rc_arena *ar);

/* The same in two steps, for threads that each pack the columns they will use: the panels'
 * memory only, then the panels holding columns [n0, n1) (n0 a multiple of 32). */
bool rc_pack_b_alloc(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, rc_arena *ar);
void rc_pack_b_fill(rc_packed_b *p, int64_t n0, int64_t n1);

/* The same over caller memory of rc_pack_b_floats(K, N) floats (kept across runs, say):
 * panels point into `mem` when the packed path is in use, NULL otherwise; fill with
 * rc_pack_b_fill. */
size_t rc_pack_b_floats(int64_t K, int64_t N);
void rc_pack_b_init(rc_packed_b *p, const float *b, int64_t ldb, bool trans, int64_t K, int64_t N, float *mem);

/* Rows of the packed product's register tile on this CPU (8 with AVX-512, 6 with AVX2; 8
 * where CBLAS runs it): a block of rows a multiple of it leaves no partial tile. */
int rc_gemm_tile_rows(void);

/* Whether a product of M rows (all of them, before any split between threads) and depth K is
 * faster through CBLAS than through this CPU's packed kernels: pack such a B with
 * rc_pack_b_init(..., NULL) (no panels: the products below call CBLAS on b as it is). True
 * only on CPUs whose packed kernels are the AVX2 ones, from 512 rows and depth 64. */
bool rc_gemm_tall_via_cblas(int64_t M, int64_t K);

/* C[M x N] = beta * C + A[M x K] @ B, with beta 0 or 1 (C is not read when beta is 0). */
void rc_gemm_packed(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta, float *C, int64_t ldc);

/* Only columns [n0, n1) of C (multiples of 32, or n1 = N), for threads sharing one product. */
void rc_gemm_packed_cols(int64_t M, const float *A, int64_t lda, const rc_packed_b *p, float beta, float *C, int64_t ldc,
                         int64_t n0, int64_t n1);

/* A single row against a column block: rc_pack_block copies columns [n0, n0 + w) of B (K x N,
 * row-major, leading dimension ldb) into dst, K x w floats in the layout rc_gemv_block reads
 * ([K][w], or strips of 64 columns [w / 64][K][64] where the AVX2 kernel runs: rows of a block
 * are not a block, so pack each range of rows that will be multiplied on its own); rc_gemv_block
 * computes c[0, w) = beta c + a[0, K) @ that block (beta 0 or 1). For one sequence at a time,
 * where streaming the block row by row reads the weights faster than the 32-column panels do. */
void rc_pack_block(const float *b, int64_t ldb, int64_t K, int64_t n0, int64_t w, float *dst);
void rc_gemv_block(int64_t K, const float *a, const float *blk, int64_t w, float beta, float *c);

/* Weight gradients over all steps: C[k x N] += A^T @ B, B m x N row-major (ldb), where A's k
 * columns come in groups stacked as C's rows (the inputs, then the previous outputs). Each
 * group is a tall matrix of m rows, the first `split` at a0 and the rest at a1 (h0, then the
 * outputs of the steps before), or all at a0 when a1 is NULL, or rows picked by an index (the
 * caller's rows of a batch sorted by length). */
typedef struct rc_tall {
    const float *a0, *a1;
    const int64_t *idx; /* non-NULL: row r is at a0 + idx[r] * lda instead (a1 unused) */
    int64_t split, lda, k;
} rc_tall;

/* The same tall matrix from its row m0 on. */
rc_tall rc_tall_from(rc_tall g, int64_t m0);

/* Columns [n0, n1) of C (n0 a multiple of 32, n1 too or N), so that threads can share one
 * product. colsum (NULL: none): its columns [n0, n1) also get the column sums of B's m rows
 * added (a bias gradient), in an order fixed by the shape. work: rc_gemm_tn_floats(k) floats
 * (k: all groups' columns), 64-byte aligned, one per thread. The panels of B are packed on the
 * way, a block of rows at a time, and read once for every group; A's rows are read where they
 * lie. Without AVX-512: CBLAS. */
size_t rc_gemm_tn_floats(int64_t k);
void rc_gemm_tn_acc(int64_t m, int ng, const rc_tall *g, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t N,
                    int64_t n0, int64_t n1, float *colsum, float *work);

/* Tests: make later rc_pack_b calls leave B unpacked (the CBLAS path) when on. */
void rc_gemm_packed_use_cblas(bool on);

#endif
