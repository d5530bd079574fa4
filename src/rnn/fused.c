/*
 * fused.c - whole-sequence kernels for the built-in cells (float32, time-major).
 *
 * Forward: the input projection for all steps as one GEMM, written straight into the gate
 * buffer; then per step one recurrent product (weights packed once per run, core/gemm_packed)
 * accumulated into that buffer and one pass over the gates with vectorised activations
 * (core/vmath). Rows are sorted by sequence length, longest first, and kept packed: step t's
 * n_t running rows are rows off[t] .. off[t] + n_t of every per-step buffer, so neither the
 * recurrence nor the products over all steps touch rows that have stopped; results go back to
 * the caller's order (rows past their length: state kept, output zero). When a gradient will
 * run, the gate buffer itself is the history the backward reads.
 *
 * Backward: per step only the pointwise pass and the recurrent dh product; the weight, bias and
 * input gradients are a few large GEMMs over all packed rows at the end.
 *
 * Two threads (when the session's second thread is free): the large GEMMs split C between
 * them; the recurrences split the batch's rows (independent through time; row tiles move from
 * the slower thread to the faster), or for a small LSTM batch its units, meeting after every
 * step (for one sequence, the input projection goes in chunks as the recurrence runs, taken by
 * whichever thread is waiting).
 *
 * Shapes: x [T, B, D]; kernels as the cells store them ([D+H, nG*H], input rows first);
 * outputs [T, B, O]; states [B, S]. History per layer, in blocks of T*B packed rows:
 *   RNN     h (after the activation)                               H
 *   LSTM    i, act(j), f, o | c before clipping | y before the projection clip   4H | H | P
 *   GRU     r, u, act(candidate) | h                               3H | H
 *   GRU v2  z, r, act(hh) | recurrent hh term | h                  3H | H | H
 */
#include "rnn/rnn_impl.h"
#include "core/gemm_packed.h"
#include "core/vmath.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <time.h>

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

/* The kernel running on this thread, so that the products over all steps can use the second
 * thread when it is free (set by rc_fused_forward / rc_fused_backward). */
static _Thread_local rc_kctx *tl_kernel;

/* C[m, n] = beta C + A[m, k] @ op(B), with op(B) packed once (core/gemm_packed: faster than a
 * BLAS call on these shapes, and C is written without being cleared first), or, for products
 * tall enough that CBLAS is faster on this CPU (rc_gemm_tall_via_cblas, decided on the whole
 * product so that every row takes the same path), CBLAS on op(B) as it is; the rows of C
 * split between the two threads when the product is large. B[k][n] = trans ? b[n ldb + k] :
 * b[k ldb + n]. False on OOM. */
typedef struct packed_job {
    const rc_packed_b *p;
    const float *A;
    float *C, beta;
    int64_t m, n, k, lda, ldc;
    const int64_t *arow, *crow; /* row r of A / C at index arow[r] / crow[r] (NULL: r) */
    float *tmp[2];              /* with a row map: per thread, `gather` rows of A and of C */
    int64_t gather;             /* rows per gathered block: GATHER_ROWS, or GATHER_TALL where B is
                                 * left unpacked for CBLAS (rc_gemm_tall_via_cblas) */
} packed_job;

#define GATHER_ROWS 64
#define GATHER_TALL 512 /* rows per block where CBLAS computes the product (it packs B per call) */

static void packed_part(void *arg, int part)
{
    const packed_job *j = arg;
    int64_t half = (j->m / 2 + 7) & ~(int64_t)7, r0 = part > 0 ? RC_MIN(half, j->m) : 0, r1 = part == 0 ? RC_MIN(half, j->m) : j->m;
    if (!j->arow && !j->crow) {
        if (r1 > r0) rc_gemm_packed(r1 - r0, j->A + r0 * j->lda, j->lda, j->p, j->beta, j->C + r0 * j->ldc, j->ldc);
        return;
    }
    /* Rows elsewhere (the caller's [T][B] layout): gathered a block at a time into scratch that
     * stays in cache, and the block of C scattered from there, instead of whole copies. */
    int64_t gr = j->gather;
    float *ta = j->tmp[part > 0], *tc = ta + gr * j->k;
    size_t ab = (size_t)j->k * sizeof(float), cb = (size_t)j->n * sizeof(float);
    for (int64_t b0 = r0; b0 < r1; b0 += gr) {
        int64_t nb = RC_MIN(gr, r1 - b0);
        const float *a = j->A + b0 * j->lda;
        int64_t lda = j->lda;
        if (j->arow) {
            for (int64_t r = 0; r < nb; r++) memcpy(ta + r * j->k, j->A + j->arow[b0 + r] * j->lda, ab);
            a = ta, lda = j->k;
        }
        if (!j->crow) {
            rc_gemm_packed(nb, a, lda, j->p, j->beta, j->C + b0 * j->ldc, j->ldc);
            continue;
        }
        if (j->beta != 0)
            for (int64_t r = 0; r < nb; r++) memcpy(tc + r * j->n, j->C + j->crow[b0 + r] * j->ldc, cb);
        rc_gemm_packed(nb, a, lda, j->p, j->beta, tc, j->n);
        for (int64_t r = 0; r < nb; r++) memcpy(j->C + j->crow[b0 + r] * j->ldc, tc + r * j->n, cb);
    }
}

/* The size (m n k of a product over all steps) from which it is shared between the two
 * threads: below, handing half over costs more than it saves. */
#define TWO_THREADS_MNK 4e6

/* C[m, n] = beta C + A @ op(B) as above, row r of A at A + arow[r] lda and of C at C + crow[r]
 * ldc (either map NULL: row r). */
static bool gemm_packed_rows(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda, const int64_t *arow, const float *b,
                             int64_t ldb, bool trans, float beta, float *C, int64_t ldc, const int64_t *crow, rc_arena *ar)
{
    if (m <= 0 || n <= 0) return true;
    rc_packed_b p;
    bool tall = rc_gemm_tall_via_cblas(m, k);
    if (tall) rc_pack_b_init(&p, b, ldb, trans, k, n, NULL); /* CBLAS on b as it is */
    else if (!rc_pack_b(&p, b, ldb, trans, k, n, ar)) return false;
    packed_job j = {.p = &p, .A = A, .C = C, .beta = beta, .m = m, .n = n, .k = k, .lda = lda, .ldc = ldc, .arow = arow, .crow = crow,
                    .gather = tall ? GATHER_TALL : GATHER_ROWS};
    bool two = tl_kernel && (double)m * (double)n * (double)RC_MAX(k, 1) >= TWO_THREADS_MNK;
    size_t tb = (size_t)j.gather * (size_t)(k + n) * sizeof(float);
    if ((arow || crow) &&
        (!(j.tmp[0] = rc_arena_alloc(ar, tb, false)) || (two && !(j.tmp[1] = rc_arena_alloc(ar, tb, false)))))
        return false;
    if (two) rc_kparallel2(tl_kernel, packed_part, &j);
    else packed_part(&j, -1);
    return true;
}

/* Two spinning threads meet (the weight gradient's row split, the units split of small batches). */
typedef struct step_barrier {
    _Atomic int count, gen;
} step_barrier;

static void barrier_wait(step_barrier *b)
{
    int g = atomic_load_explicit(&b->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) == 1) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->gen, 1, memory_order_release);
        return;
    }
    for (unsigned n = 0; atomic_load_explicit(&b->gen, memory_order_acquire) == g;) rc_spin_turn(&n);
}

/* Weight gradients: C[k, n] += A^T @ B[m, n] over all m packed rows, A's k columns in groups
 * (core/gemm_packed: B's panels are packed once for every group), and colsum[n] (NULL: none)
 * += B's column sums (the bias gradient, summed as the panels are packed), shared between the
 * two threads when the product is large. C's columns are split on a panel edge where their
 * panels halve evenly; where they do not (7 panels, say), the sum over the rows is split
 * instead: the first half into C, the second into a zeroed copy added after. That choice
 * depends on the shape only, so one thread does the same sums in the same order and the result
 * keeps its bits whatever the thread count. False on OOM. */
typedef struct tn_job {
    int64_t m, n, k, ldb, ldc;
    int ng;
    const rc_tall *g;
    const float *B;
    float *C, *colsum, *work[2];
    float *C2;         /* the row split: the second half's sums (k x n; then its column sums, n) */
    step_barrier *bar; /* the row split on two threads at once: both add half of C2 */
} tn_job;

/* Rows [r0, r1) of C2 into C; row k (the column sums) into colsum. */
static void add_c2(const tn_job *j, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        float *restrict c = r < j->k ? j->C + r * j->ldc : j->colsum;
        const float *restrict c2 = j->C2 + r * j->n;
        for (int64_t i = 0; i < j->n; i++) c[i] += c2[i];
    }
}

static void tn_part(void *arg, int part)
{
    const tn_job *j = arg;
    if (j->C2) {
        int64_t mh = j->m / 2, rows = j->k + (j->colsum != NULL);
        if (part <= 0) rc_gemm_tn_acc(mh, j->ng, j->g, j->B, j->ldb, j->C, j->ldc, j->n, 0, j->n, j->colsum, j->work[0]);
        if (part != 0) {
            rc_tall g2[4];
            for (int i = 0; i < j->ng; i++) g2[i] = rc_tall_from(j->g[i], mh);
            memset(j->C2, 0, (size_t)(rows * j->n) * sizeof *j->C2);
            rc_gemm_tn_acc(j->m - mh, j->ng, g2, j->B + mh * j->ldb, j->ldb, j->C2, j->n, j->n, 0, j->n,
                           j->colsum ? j->C2 + j->k * j->n : NULL, j->work[part > 0]);
        }
        if (j->bar) {
            barrier_wait(j->bar);
            add_c2(j, part ? rows / 2 : 0, part ? rows : rows / 2);
        }
        return;
    }
    int64_t half = (j->n / 2 + 31) & ~(int64_t)31, n0 = part > 0 ? RC_MIN(half, j->n) : 0,
            n1 = part == 0 ? RC_MIN(half, j->n) : j->n;
    rc_gemm_tn_acc(j->m, j->ng, j->g, j->B, j->ldb, j->C, j->ldc, j->n, n0, n1, j->colsum, j->work[part > 0]);
}

static bool weight_grad(int64_t m, int64_t n, int ng, const rc_tall *g, const float *B, int64_t ldb, float *C, int64_t ldc,
                        float *colsum, rc_arena *ar)
{
    if (m <= 0 || n <= 0) return true;
    int64_t k = 0;
    for (int i = 0; i < ng; i++) k += g[i].k;
    bool big = (double)m * (double)n * (double)k >= TWO_THREADS_MNK, two = tl_kernel && big && n > 32;
    size_t w = rc_gemm_tn_floats(k) * sizeof(float);
    tn_job j = {.m = m, .n = n, .k = k, .ldb = ldb, .ldc = ldc, .ng = ng, .g = g, .B = B, .C = C, .colsum = colsum};
    int64_t rows = k + (colsum != NULL);
    if (big && (n + 31) / 32 % 2 && m >= 64 && ng <= 4 && !(j.C2 = rc_arena_alloc(ar, (size_t)(rows * n) * sizeof(float), false)))
        return false;
    if (!(j.work[0] = rc_arena_alloc(ar, w, false)) || ((two || j.C2) && !(j.work[1] = rc_arena_alloc(ar, w, false)))) return false;
    step_barrier bar = {0};
    if (j.C2) { /* both halves at once, then each thread adds half of C2 where it can */
        j.bar = &bar;
        if (rc_kparallel2_together(tl_kernel, tn_part, &j)) return true;
        j.bar = NULL;
        tn_part(&j, 0);
        tn_part(&j, 1);
        add_c2(&j, 0, rows);
        return true;
    }
    if (two) rc_kparallel2(tl_kernel, tn_part, &j);
    else tn_part(&j, -1);
    return true;
}

/* One group of weight_grad: rows of a [m, k] (lda floats apart). */
static inline rc_tall tall(const float *a, int64_t lda, int64_t k) { return (rc_tall){.a0 = a, .lda = lda, .k = k}; }

/* out[rows, n] = x[rows, d] @ w[d, n] + bias (bias NULL: none), row r of x at x + xrow[r] d
 * (xrow NULL: r). False on OOM. */
static bool project(const float *x, const int64_t *xrow, int64_t rows, int64_t d, const float *w, int64_t n, const float *bias,
                    float *out, rc_arena *ar)
{
    if (bias)
        for (int64_t r = 0; r < rows; r++) memcpy(out + r * n, bias, (size_t)n * sizeof *out);
    return gemm_packed_rows(rows, n, d, x, d, xrow, w, n, false, bias ? 1.0f : 0.0f, out, n, NULL, ar);
}

/* Sequence order: rows sorted by length (longest first); nact[t] rows run at step t. */
/* Rows are kept packed: step t's running rows are rows off[t] .. off[t] + nact[t] of every
 * per-step buffer (without lengths, off[t] = t B), so the products over all steps skip the
 * rows that have stopped. */
typedef struct seqinfo {
    int64_t T, B, steps;
    int64_t *perm;  /* sorted position -> caller's row; NULL when the order is the caller's */
    int64_t *nact;  /* [T] running rows at t (non-increasing) */
    int64_t *off;   /* [T + 1] first packed row of step t; off[steps] = rows */
    int64_t rows;   /* running (step, row) pairs in all */
    bool dense;     /* every row runs every one of the steps: the packed layout is [steps][B] */
    const int64_t *xrow; /* the first layer's x and dx in the caller's layout ([T][B] or [B][T]):
                          * packed row r is their row xrow[r] (NULL: x and dx are packed like
                          * the rest) */
    const int64_t *yrow; /* the same for the last layer's output y (forward) and its gradient dy
                          * (backward) */
    bool bm;             /* the caller's arrays are batch-major, [B][T] */
} seqinfo;

/* Step rows [row, row + n) of a layer's output (w floats each, in src) into y: packed, or the
 * caller's rows by s->yrow (while they are in cache, instead of a pass over all of them). */
static void put_rows(const seqinfo *s, float *y, int64_t row, const float *src, int64_t n, int64_t w)
{
    if (!s->yrow) {
        memcpy(y + row * w, src, (size_t)(n * w) * sizeof *y);
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(y + s->yrow[row + i] * w, src + i * w, (size_t)w * sizeof *y);
}

static void seq_offsets(seqinfo *s)
{
    s->dense = true;
    s->off[0] = 0;
    for (int64_t t = 0; t < s->steps; t++) {
        s->off[t + 1] = s->off[t] + s->nact[t];
        if (s->nact[t] != s->B) s->dense = false;
    }
    s->rows = s->off[s->steps];
}

static bool seq_setup(seqinfo *s, const recur_array *x, const recur_array *len, bool bm, rc_arena *ar)
{
    s->bm = bm;
    s->T = x->shape.dims[bm];
    s->B = x->shape.dims[!bm];
    s->steps = s->T;
    s->perm = NULL;
    s->xrow = NULL;
    s->yrow = NULL;
    s->nact = rc_arena_alloc(ar, (size_t)(s->T + 1) * sizeof *s->nact, false);
    s->off = rc_arena_alloc(ar, (size_t)(s->T + 2) * sizeof *s->off, false);
    if (!s->nact || !s->off) return false;
    if (!len) {
        for (int64_t t = 0; t < s->T; t++) s->nact[t] = s->B;
        seq_offsets(s);
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
    seq_offsets(s);
    return true;
}

/* The recurrence splits the batch's rows between the two threads. Rows are independent through
 * time, so the threads need to meet only where a row passes from one to the other. The rows
 * (sorted longest first) are cut into tiles of 8 or 4 (the product's register tiles); each
 * thread starts with its own tiles, half of the batch's steps to run (for rows of one length,
 * half of the rows), and runs them step by step without waiting for the other. The two cores
 * need not run at the same speed: on a virtual machine one of them often runs 5-25% slower
 * for a while, and which one changes from run to run, even within one recurrence. So a thread
 * that has run all of its own tiles takes over the other's last tile, from the step after the
 * one that thread is running, and then the next, while the other keeps at least one: per tile,
 * the steps claimed (a compare-and-swap, by its owner for each step it begins and by the taker
 * once for all the rest) and the steps done (the taker waits for the step before its first).
 * A row's results are the same bits whichever thread runs it (the products and the cell
 * compute each row alone, in the same order, and no gradient is summed per thread), so the
 * timing-dependent split changes nothing but the time. */
#define STEAL_ROWS 4 /* the product's small register tile */
#define STEAL_TILES 64

typedef struct steal_tile {
    _Alignas(64) _Atomic int64_t claimed; /* steps begun or given away, in running order */
    _Atomic int64_t done;                 /* steps finished */
} steal_tile;

typedef struct row_parts {
    int64_t split;                   /* part 0 starts with rows [0, split), part 1 with the rest */
    int nt, m;                       /* tiles; part 1's first */
    int64_t tb[STEAL_TILES + 5];     /* tile k: rows [tb[k], tb[k + 1]) (at most STEAL_TILES + 4) */
    steal_tile *tile;                /* nt of them (run_row_parts' own) */
} row_parts;

/* Tests: make part `part` (0 or 1) sleep `us` microseconds before each of its steps, so that the
 * other takes tiles over (part -1: none); and the number of tiles taken over so far. */
static _Atomic int g_stall_part = -1;
static _Atomic unsigned g_stall_us;
static _Atomic uint64_t g_taken;

void rc_fused_test_stall(int part, unsigned us)
{
    atomic_store(&g_stall_us, us);
    atomic_store(&g_stall_part, part);
}

uint64_t rc_fused_tiles_taken(void) { return atomic_load(&g_taken); }

static _Atomic uint64_t g_chunks_taken;
uint64_t rc_fused_chunks_taken(void) { return atomic_load(&g_chunks_taken); }

typedef struct rows_range {
    int64_t r0, r1; /* rows [r0, r1) */
} rows_range;

/* Tiles of `rows` rows from r0 to r1 (the last one shorter), from tile k on; the next tile. */
static int cut_tiles(row_parts *p, int k, int64_t r0, int64_t r1, int64_t rows)
{
    for (int64_t r = r0; r < r1; r += rows) p->tb[k++] = r;
    p->tb[k] = r1;
    return k;
}

/* Whether to give the recurrence two threads: a free second thread and rows for both. */
static bool split_rows(const seqinfo *s) { return tl_kernel && rc_kthreads(tl_kernel) > 1 && s->B >= 16; }

/* Run fn(arg, part) on the rows as `p` divides them: on two threads where split_rows allows
 * (and they run at once), otherwise fn(arg, -1) on every row. */
static void run_row_parts(row_parts *p, const seqinfo *s, void (*fn)(void *, int), void *arg)
{
    p->nt = 0;
    p->split = 0;
    if (!split_rows(s)) {
        fn(arg, -1);
        return;
    }
    /* the split that balances the steps each side runs, on a tile edge, and on a multiple of
     * STEAL_ROWS however few rows the batch has (the bias gradients' groups, bias_sums, are
     * never shared), leaving the second part at least 8 rows */
    int64_t r = 0, acc = 0;
    for (; r < s->B && 2 * acc < s->rows; r++)
        for (int64_t t = 0; t < s->steps && s->nact[t] > r; t++) acc++;
    p->split = RC_MIN(RC_MAX((r + 4) / 8 * 8, 8), (s->B - 8) / STEAL_ROWS * STEAL_ROWS);
    /* tiles of 2 STEAL_ROWS (the product's full register tile), of STEAL_ROWS where a part
     * would have fewer than two of them to give, and larger for batches of more than STEAL_TILES */
    int64_t rows = RC_MIN(p->split, s->B - p->split) >= 4 * STEAL_ROWS ? 2 * STEAL_ROWS : STEAL_ROWS;
    rows = (RC_MAX(rows, (s->B + STEAL_TILES - 1) / STEAL_TILES) + STEAL_ROWS - 1) / STEAL_ROWS * STEAL_ROWS;
    /* part 0's first rows (the longest sequences, with lengths) in tiles of STEAL_ROWS: the
     * last steps, where only they run, then still split between the threads */
    int first = rows > STEAL_ROWS && p->split >= rows + 2 * STEAL_ROWS ? cut_tiles(p, 0, 0, 2 * STEAL_ROWS, STEAL_ROWS) : 0;
    p->m = cut_tiles(p, first, first ? 2 * STEAL_ROWS : 0, p->split, rows);
    p->nt = cut_tiles(p, p->m, p->split, s->B, rows);
    steal_tile tiles[STEAL_TILES + 4]; /* B / rows <= STEAL_TILES, +1 per part for a short last
                                        * tile, +2 for part 0's first ones */
    for (int k = 0; k < p->nt; k++) {
        atomic_init(&tiles[k].claimed, 0);
        atomic_init(&tiles[k].done, 0);
    }
    p->tile = tiles;
    if (rc_kparallel2_together(tl_kernel, fn, arg)) return;
    /* one after the other (no second thread free): each its own rows */
    p->nt = 0;
    fn(arg, 0);
    fn(arg, 1);
}

/* The rows part `part` starts with at step t (part -1: all of them). */
static inline rows_range start_rows(const seqinfo *s, const row_parts *p, int part, int64_t t)
{
    int64_t n = s->nact[t];
    if (part < 0) return (rows_range){0, n};
    int64_t h = RC_MIN(p->split, n);
    return part ? (rows_range){h, n} : (rows_range){0, h};
}

/* The items of a part's recurrence, in running order (t up forward, down backward): each a
 * step t and rows r of it that are running. Used as
 *     for (step_iter it = steps_begin(s, &parts, part, fwd); steps_next(&it);) { it.t, it.r }
 * steps_next marks the item before done and returns false when the part has nothing left. */
typedef struct step_iter {
    const seqinfo *s;
    const row_parts *p;
    int part;
    bool tiles; /* false: one thread, or the two one after the other */
    bool fwd, busy;
    int64_t i;     /* items begun, as step indices in running order */
    int base, top; /* own tiles still held: [base, top) */
    int k, take;   /* the tile taken over (-1: none); the other part's next to take */
    int64_t t;     /* the item: step t, rows r */
    rows_range r;
} step_iter;

static inline step_iter steps_begin(const seqinfo *s, const row_parts *p, int part, bool fwd)
{
    step_iter it = {.s = s, .p = p, .part = part, .tiles = part >= 0 && p->nt > 0, .fwd = fwd, .k = -1};
    if (it.tiles) {
        it.base = part ? p->m : 0;
        it.top = part ? p->nt : p->m;
        it.take = part ? p->m - 1 : p->nt - 1;
    }
    return it;
}

/* Take over the other part's last tile still its own, if that part keeps another and the tile
 * has a step left after the one being run: claim that next step, wait until the one before is
 * done, and run the rest from there. */
static bool take_tile(step_iter *it)
{
    const row_parts *p = it->p;
    int64_t S = it->s->steps;
    if (it->take <= (it->part ? 0 : p->m)) return false;
    steal_tile *x = &p->tile[it->take];
    unsigned turns = 0;
    for (int64_t c = atomic_load_explicit(&x->claimed, memory_order_acquire);;) {
        if (c >= S) return false;
        if (c < 1) { /* not begun: its owner may still be setting up its rows (lstm_bwd_part) */
            rc_spin_turn(&turns);
            c = atomic_load_explicit(&x->claimed, memory_order_acquire);
        } else if (atomic_compare_exchange_weak_explicit(&x->claimed, &c, c + 1, memory_order_acq_rel, memory_order_acquire)) {
            for (turns = 0; atomic_load_explicit(&x->done, memory_order_acquire) < c;) rc_spin_turn(&turns);
            atomic_fetch_add_explicit(&g_taken, 1, memory_order_relaxed);
            it->k = it->take--;
            it->i = c;
            return true;
        }
    }
}

/* rc_fused_test_stall: a sleep (not a spin), so that the other thread runs meanwhile even where
 * the two share a core or take turns (valgrind) */
static void stall(int part)
{
    if (atomic_load_explicit(&g_stall_part, memory_order_relaxed) != part) return;
    unsigned us = atomic_load(&g_stall_us);
    struct timespec d = {.tv_sec = us / 1000000, .tv_nsec = 1000 * (long)(us % 1000000)};
    while (nanosleep(&d, &d) && errno == EINTR) {
    }
}

static bool steps_next(step_iter *it)
{
    const seqinfo *s = it->s;
    const row_parts *p = it->p;
    int64_t S = s->steps;
    for (;;) {
        if (it->busy && it->tiles) { /* the item before is done */
            if (it->k >= 0) atomic_store_explicit(&p->tile[it->k].done, it->i, memory_order_release);
            else
                for (int q = it->base; q < it->top; q++) atomic_store_explicit(&p->tile[q].done, it->i, memory_order_release);
        }
        it->busy = false;
        if (it->i >= S && (!it->tiles || !take_tile(it))) return false;
        int64_t i = it->i++, t = it->fwd ? i : S - 1 - i;
        it->t = t;
        it->busy = true;
        if (!it->tiles) {
            it->r = start_rows(s, p, it->part, t);
            return true;
        }
        stall(it->part);
        if (it->k < 0) {
            /* own tiles: the other thread takes the last ones first, so once one is still held,
             * every one below it is */
            bool held = false;
            for (int q = it->top - 1; q >= it->base; q--) {
                int64_t c = i;
                if (atomic_compare_exchange_strong_explicit(&p->tile[q].claimed, &c, i + 1, memory_order_acq_rel,
                                                            memory_order_relaxed))
                    held = true;
                else if (!held)
                    it->top = q;
            }
            it->r = (rows_range){p->tb[it->base], RC_MIN(p->tb[it->top], s->nact[t])};
        } else {
            it->r = (rows_range){p->tb[it->k], RC_MIN(p->tb[it->k + 1], s->nact[t])};
        }
        if (it->r.r1 > it->r.r0) return true;
    }
}

/* seqinfo.xrow for arrays in the caller's layout, [T][B] or [B][T]. NULL on OOM. */
static const int64_t *caller_rows(const seqinfo *s, rc_arena *ar)
{
    int64_t *r = rc_arena_alloc(ar, (size_t)(s->rows + 1) * sizeof *r, false);
    if (!r) return NULL;
    for (int64_t t = 0; t < s->steps; t++)
        for (int64_t i = 0; i < s->nact[t]; i++) {
            int64_t b = s->perm ? s->perm[i] : i;
            r[s->off[t] + i] = s->bm ? b * s->T + t : t * s->B + b;
        }
    return r;
}

/* Whether the caller's arrays are the packed layout: every row runs every step in the caller's
 * order, time-major (or a layout where the two agree: one row or one step). */
static bool caller_packed(const seqinfo *s) { return !s->perm && s->dense && (!s->bm || s->B == 1 || s->T == 1); }

/* Between the caller's layout and the packed sorted one, by the row indexes of caller_rows:
 * dst[r] = src[rows[r]] (to_sorted) or dst[rows[r]] = src[r], rows of w floats. */
typedef struct permute_job {
    const int64_t *rows;
    float *dst;
    const float *src;
    int64_t w;
    bool to_sorted;
} permute_job;

static void permute_range(void *arg, int64_t lo, int64_t hi)
{
    const permute_job *j = arg;
    size_t rb = (size_t)j->w * sizeof(float);
    for (int64_t r = lo; r < hi; r++) {
        if (j->to_sorted) memcpy(j->dst + r * j->w, j->src + j->rows[r] * j->w, rb);
        else memcpy(j->dst + j->rows[r] * j->w, j->src + r * j->w, rb);
    }
}

static void permute_rows(const seqinfo *s, const int64_t *rows, float *dst, const float *src, int64_t w, bool to_sorted)
{
    permute_job j = {.rows = rows, .dst = dst, .src = src, .w = w, .to_sorted = to_sorted};
    rc_kfor2(tl_kernel, s->rows, (1 << 16) / RC_MAX(w, 1) + 1, permute_range, &j);
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

/* Units [u0, u0 + hn) of n rows (H units per row; gates, c, craw and m rows are H apart). The
 * gates hold both products; the bias is added here, after them, as the cell adds it. */
HOT static void lstm_cell_units(const rc_fused_layer *l, int64_t n, int64_t H, int64_t u0, int64_t hn, float *g, float *c,
                                float *craw, float *m, float *tmp, const float *bias, const float *wf, const float *wi,
                                const float *wo)
{
    int64_t G = 4 * H;
    const float *bi = bias + u0, *bj = bi + H, *bf = bi + 2 * H, *bo = bi + 3 * H;
    float fb = l->forget_bias;
    if (wf) wf += u0, wi += u0, wo += u0;
    if (!wf && !wi && !wo && !(l->cell_clip > 0) && l->act == RECUR_ACT_TANH) { /* the common cell, in one pass */
        if (hn == H) {
            rc_vlstm_cell_rows((size_t)n, (size_t)H, g, (size_t)G, (size_t)H, bi, (size_t)H, fb, c, craw, m);
            return;
        }
        for (int64_t b = 0; b < n; b++)
            rc_vlstm_cell((size_t)hn, g + b * G + u0, (size_t)H, bi, (size_t)H, fb, c + b * H + u0, craw + b * H + u0,
                          m + b * H + u0);
        return;
    }
    for (int64_t b = 0; b < n; b++) {
        float *gi = g + b * G + u0, *gj = gi + H, *gf = gi + 2 * H, *go = gi + 3 * H, *cb = c + b * H + u0,
              *cr = craw + b * H + u0;
        for (int64_t j = 0; j < hn; j++) {
            gi[j] += bi[j];
            gj[j] += bj[j];
            gf[j] = (gf[j] + bf[j]) + fb;
            go[j] += bo[j];
        }
        if (wf)
            for (int64_t j = 0; j < hn; j++) gf[j] += wf[j] * cb[j];
        if (wi)
            for (int64_t j = 0; j < hn; j++) gi[j] += wi[j] * cb[j];
        rc_vsigmoid(gi, gi, (size_t)hn);
        rc_vsigmoid(gf, gf, (size_t)hn);
        act_vec(l->act, gj, gj, hn);
        for (int64_t j = 0; j < hn; j++) {
            cr[j] = cb[j] * gf[j] + gi[j] * gj[j];
            cb[j] = clampf(cr[j], l->cell_clip);
        }
        if (wo)
            for (int64_t j = 0; j < hn; j++) go[j] += wo[j] * cb[j];
        rc_vsigmoid(go, go, (size_t)hn);
        act_vec(l->act, tmp, cb, hn);
        float *mb = m + b * H + u0;
        for (int64_t j = 0; j < hn; j++) mb[j] = tmp[j] * go[j];
    }
}

typedef struct lstm_fwd_job {
    const rc_fused_layer *l;
    const seqinfo *s;
    const rc_packed_b *wh, *wp;
    const rc_packed_b *wk; /* non-NULL: the input projection is done step by step, in one
                            * product with the recurrent one: the whole kernel [D + P, G] times
                            * the rows [x_t | h_t-1], gathered per part into xh */
    const float *x;        /* with wk: the layer input (packed rows, or the caller's by s->xrow) */
    float *xh[2];
    const float *bias, *wf, *wi, *wo;
    float *gates, *craw, *yraw, *y, *c, *h, *m, *tmp[2];
    row_parts parts;
} lstm_fwd_job;

/* The recurrence over one part's rows (gates already hold the input projection, unless wk). */
static void lstm_fwd_part(void *arg, int part)
{
    const lstm_fwd_job *j = arg;
    const rc_fused_layer *l = j->l;
    const seqinfo *s = j->s;
    int64_t H = l->units, P = layer_out(l), G = 4 * H;
    float *tmp = j->tmp[part > 0];
    for (step_iter it = steps_begin(s, &j->parts, part, true); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *c = j->c + r.r0 * H, *h = j->h + r.r0 * P;
        float *g = j->gates + row * G, *yr = j->yraw + row * P, *cr = j->craw + row * H;
        /* the previous output: the state, or (without a projection) the history's rows */
        const float *hp = j->wp || !t ? h : j->yraw + (s->off[t - 1] + r.r0) * P;
        if (j->wk) {
            int64_t K = j->wk->K, D = K - P;
            float *a = j->xh[part > 0];
            for (int64_t i = 0; i < n; i++) {
                memcpy(a + i * K, j->x + (s->xrow ? s->xrow[row + i] : row + i) * D, (size_t)D * sizeof *a);
                memcpy(a + i * K + D, hp + i * P, (size_t)P * sizeof *a);
            }
            rc_gemm_packed(n, a, K, j->wk, 0.0f, g, G);
        } else {
            rc_gemm_packed(n, hp, P, j->wh, 1.0f, g, G);
        }
        if (!j->wp) {
            lstm_cell_units(l, n, H, 0, H, g, c, cr, yr, tmp, j->bias, j->wf, j->wi, j->wo);
            put_rows(s, j->y, row, yr, n, P);
        } else {
            float *m = j->m + r.r0 * H;
            lstm_cell_units(l, n, H, 0, H, g, c, cr, m, tmp, j->bias, j->wf, j->wi, j->wo);
            rc_gemm_packed(n, m, H, j->wp, 0.0f, yr, P);
            clamp_vec(h, yr, n * P, l->proj_clip);
            put_rows(s, j->y, row, h, n, P);
        }
    }
}

/* A batch too small to split by rows (inference on one sequence, say) splits the units instead:
 * each thread multiplies by its half of the recurrent weights (which then stay in its own
 * cache) and updates its half of the units, and the two meet after every step. */
typedef struct lstm_units_job {
    lstm_fwd_job *j;
    rc_packed_b *wx, *wh; /* not yet filled: each thread packs its own columns */
    float *blocks;        /* one sequence: per thread, its four column blocks of the recurrent
                           * weights, each as two blocks [H/2][H/2] (rc_pack_block; the
                           * rows multiplied by either thread's half of the output), instead
                           * of wh's panels */
    bool fill;            /* pack them (false: they are kept from an earlier run) */
    const float *x;       /* the layer input [rows, D] */
    step_barrier bar;
    struct {
        _Alignas(64) _Atomic int64_t steps; /* one sequence: steps this thread has finished */
    } side[2];
    /* One sequence: the input projection as the recurrence goes (proj_take), in chunks of
     * proj_rows rows by one 32-column panel of one thread's columns, taken in order, by that
     * thread first and by the other once its own are all taken. */
    struct {
        _Alignas(64) _Atomic int64_t next; /* chunks taken */
        _Atomic int64_t *done;             /* per block of proj_rows rows: its chunks done */
    } proj[2];
    _Atomic int packed;                 /* threads done packing their columns of wx (when fill) */
    int64_t proj_count, proj_per_block; /* chunks of one thread's columns; per block */
    int64_t proj_rows;                  /* rows per block (proj_block_rows) */
} lstm_units_job;

/* Spin until thread `side` has finished `n` steps (lstm_fwd_units_one). */
static void steps_wait(lstm_units_job *u, int side, int64_t n)
{
    for (unsigned turns = 0; atomic_load_explicit(&u->side[side].steps, memory_order_acquire) < n;) rc_spin_turn(&turns);
}

/* Rows per chunk of the projection: whole register tiles of the packed product, as few as
 * keep the first step's wait short: one tile of 8 rows with AVX-512; four of 6 with AVX2 (5%
 * faster than 8 rows, which leave a tile of 2, on Zen 3). */
static int64_t proj_block_rows(void) { return rc_gemm_tile_rows() == 6 ? 24 : 8; }

/* Take the next chunk of the input projection and compute it; false when none is left. The
 * chunks write the same bits as one product over all rows: each element is summed over k in
 * order whatever the rows around it. */
static bool proj_take_of(lstm_units_job *u, int p)
{
    if (atomic_load_explicit(&u->proj[p].next, memory_order_relaxed) >= u->proj_count) return false;
    int64_t i = atomic_fetch_add_explicit(&u->proj[p].next, 1, memory_order_relaxed);
    if (i >= u->proj_count) return false;
    const lstm_fwd_job *j = u->j;
    int64_t H = j->l->units, D = u->wx->K, G = 4 * H, hn = H / 2, b = i / u->proj_per_block, c = i % u->proj_per_block;
    int64_t col = c / (hn / 32) * H + p * hn + c % (hn / 32) * 32, r0 = b * u->proj_rows;
    rc_gemm_packed_cols(RC_MIN(u->proj_rows, j->s->rows - r0), u->x + r0 * D, D, u->wx, 0.0f, j->gates + r0 * G, G, col, col + 32);
    atomic_fetch_add_explicit(&u->proj[p].done[b], 1, memory_order_release);
    return true;
}

static bool proj_take(lstm_units_job *u, int part)
{
    if (proj_take_of(u, part)) return true;
    if (!proj_take_of(u, !part)) return false;
    atomic_fetch_add_explicit(&g_chunks_taken, 1, memory_order_relaxed);
    return true;
}

/* Wait until the projection of this thread's columns for rows [0, rows) is done, taking chunks
 * meanwhile. *ready: the blocks already seen done (the rows asked for only grow). */
static void proj_need(lstm_units_job *u, int part, int64_t rows, int64_t *ready)
{
    for (; *ready * u->proj_rows < rows; ++*ready)
        for (unsigned turns = 0; atomic_load_explicit(&u->proj[part].done[*ready], memory_order_acquire) < u->proj_per_block;)
            if (!proj_take(u, part)) rc_spin_turn(&turns);
}

/* steps_wait, taking chunks of the projection meanwhile (a chunk, then a look at the other). */
static void steps_wait_projecting(lstm_units_job *u, int part, int64_t n)
{
    for (unsigned turns = 0; atomic_load_explicit(&u->side[!part].steps, memory_order_acquire) < n;)
        if (!proj_take(u, part)) rc_spin_turn(&turns);
}

/* One sequence (the column blocks): each thread publishes its half of a step's output as soon
 * as its cell update is done, multiplies it into its gates for the next step, and only then
 * waits for the other half, so the exchange between the cores overlaps half of the product.
 * The input projection is not done ahead but as the recurrence goes, in chunks either thread
 * takes: a thread waiting for the other's half takes chunks meanwhile, and a step's gates wait
 * for their rows' chunks before their first recurrent term. On a shared machine one core often
 * runs a fifth or more slower than the other for seconds at a time; the faster one then waits
 * at every step, and spends those waits on the projection the slower one would have done. */
static void lstm_fwd_units_one(lstm_units_job *u, int part, const float *blk)
{
    const lstm_fwd_job *j = u->j;
    const rc_fused_layer *l = j->l;
    const seqinfo *s = j->s;
    int64_t H = l->units, P = H, G = 4 * H, hn = H / 2, u0 = part * hn, o0 = hn - u0;
    /* every panel of wx is packed (when this run packs them) before either thread takes chunks */
    if (u->fill) {
        atomic_fetch_add_explicit(&u->packed, 1, memory_order_acq_rel);
        for (unsigned turns = 0; atomic_load_explicit(&u->packed, memory_order_acquire) < 2;) rc_spin_turn(&turns);
    }
    int64_t ready = 0; /* blocks of this thread's projection seen done */
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t row = s->off[t];
        float *g = j->gates + row * G, *yr = j->yraw + row * P;
        stall(part);
        if (!t) {
            proj_need(u, part, row + 1, &ready);
            for (int q = 0; q < 4; q++)
                for (int half = 0; half < 2; half++)
                    rc_gemv_block(hn, j->h + half * hn, blk + q * P * hn + half * hn * hn, hn, 1.0f, g + q * H + u0);
        } else {
            const float *hprev = j->yraw + s->off[t - 1] * P;
            steps_wait_projecting(u, part, t);
            /* the gates' blocks in the order opposite to the step before's, so that the ones
             * read last, still in L2, come first (a thread's 512 KB of a 256-unit layer fill
             * the L2 of some cores: in one order every block would come from L3) */
            for (int i = 0; i < 4; i++) {
                int q = t & 1 ? 3 - i : i;
                rc_gemv_block(hn, hprev + o0, blk + q * P * hn + o0 * hn, hn, 1.0f, g + q * H + u0);
            }
        }
        lstm_cell_units(l, 1, H, u0, hn, g, j->c, j->craw + row * H, yr, j->tmp[part], j->bias, j->wf, j->wi, j->wo);
        atomic_store_explicit(&u->side[part].steps, t + 1, memory_order_release);
        if (t + 1 < s->steps) {
            float *gn = j->gates + s->off[t + 1] * G;
            proj_need(u, part, s->off[t + 1] + 1, &ready);
            for (int i = 0; i < 4; i++) {
                int q = t & 1 ? 3 - i : i;
                rc_gemv_block(hn, yr + u0, blk + q * P * hn + u0 * hn, hn, 1.0f, gn + q * H + u0);
            }
        }
    }
    /* neither returns while the other may still read its half of the last output */
    steps_wait(u, !part, s->steps);
}

static void lstm_fwd_units(void *arg, int part)
{
    lstm_units_job *u = arg;
    const lstm_fwd_job *j = u->j;
    const rc_fused_layer *l = j->l;
    const seqinfo *s = j->s;
    int64_t H = l->units, P = H, G = 4 * H, hn = H / 2, u0 = part * hn;
    float *tmp = j->tmp[part];
    /* This thread's columns of the weights, packed here (the recurrent ones then stay in its
     * cache), and its columns of the input projection for every step: nothing to wait for. */
    float *blk = u->blocks ? u->blocks + part * 4 * P * hn : NULL;
    for (int q = 0; q < 4; q++) {
        int64_t c0 = q * H + u0, c1 = c0 + hn;
        if (u->fill) {
            rc_pack_b_fill(u->wx, c0, c1);
            if (blk)
                for (int half = 0; half < 2; half++)
                    rc_pack_block(u->wh->b + half * hn * u->wh->ldb, u->wh->ldb, hn, c0, hn, blk + q * P * hn + half * hn * hn);
            else rc_pack_b_fill(u->wh, c0, c1);
        }
        if (!blk) rc_gemm_packed_cols(s->rows, u->x, u->wx->K, u->wx, 0.0f, j->gates, G, c0, c1);
    }
    if (blk) { /* the input projection as the recurrence goes */
        lstm_fwd_units_one(u, part, blk);
        return;
    }
    for (int64_t t = 0; t < s->steps; t++) {
        int64_t n = s->nact[t], row = s->off[t];
        float *g = j->gates + row * G, *yr = j->yraw + row * P;
        const float *hprev = t ? j->yraw + s->off[t - 1] * P : j->h;
        for (int q = 0; q < 4; q++) rc_gemm_packed_cols(n, hprev, P, j->wh, 1.0f, g, G, q * H + u0, q * H + u0 + hn);
        lstm_cell_units(l, n, H, u0, hn, g, j->c, j->craw + row * H, yr, tmp, j->bias, j->wf, j->wi, j->wo);
        barrier_wait(&u->bar);
    }
}

static recur_code lstm_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                           lstate *st, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    int64_t B = s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, T = s->T;
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    const float *proj = l->proj > 0 ? WIN(in, l, l->peepholes ? 5 : 2) : NULL;
    lstm_fwd_job j = {.l = l, .s = s, .bias = bias, .gates = hist, .craw = hist + T * B * G, .y = y, .c = st->s[0],
                      .h = st->s[1]};
    j.yraw = j.craw + T * B * H;
    if (l->peepholes) j.wf = WIN(in, l, 2), j.wi = WIN(in, l, 3), j.wo = WIN(in, l, 4);
    j.tmp[0] = rc_arena_alloc(ar, (size_t)H * sizeof(float), false);
    j.tmp[1] = rc_arena_alloc(ar, (size_t)H * sizeof(float), false);
    j.m = proj ? rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false) : NULL;
    rc_packed_b wh, wp, wx;
    if (!j.tmp[0] || !j.tmp[1] || (proj && !j.m) || !rc_pack_b_alloc(&wh, kern + D * G, G, false, P, G, ar) ||
        (proj && !rc_pack_b(&wp, proj, P, false, H, P, ar)))
        return RECUR_OUT_OF_MEMORY;
    j.wh = &wh;
    j.wp = proj ? &wp : NULL;
    /* A batch too small for a split of its rows splits the units (lstm_fwd_units), when they
     * halve into whole panels; the gates get the input projection there. */
    bool units = !split_rows(s) && !s->xrow && !proj && H % 64 == 0 && wh.panels && tl_kernel && rc_kthreads(tl_kernel) > 1;
    if (units) {
        /* the packed forms: kept in the cache while the session's variables stay unwritten */
        size_t nx = rc_pack_b_floats(D, G), nh = B == 1 ? (size_t)(2 * 4 * P * (H / 2)) : rc_pack_b_floats(P, G);
        uint64_t epoch = rc_kvar_epoch(tl_kernel);
        bool kept = cache && cache->valid && cache->kern == kern && cache->epoch == epoch && cache->B == B;
        if (cache && !kept) {
            cache->valid = false;
            if (cache->cap < nx + nh) {
                rc_aligned_free(cache->mem);
                cache->mem = rc_aligned_alloc((nx + nh) * sizeof(float));
                cache->cap = cache->mem ? nx + nh : 0;
            }
        }
        float *mem = cache ? cache->mem : NULL;
        if (!mem && !(mem = rc_arena_alloc(ar, (nx + nh) * sizeof(float), false))) return RECUR_OUT_OF_MEMORY;
        rc_pack_b_init(&wx, kern, G, false, D, G, mem);
        lstm_units_job u = {.j = &j, .wx = &wx, .wh = &wh, .x = x, .fill = !kept};
        if (B == 1) {
            u.blocks = mem + nx;
            u.proj_per_block = G / 2 / 32;
            u.proj_rows = proj_block_rows();
            u.proj_count = (s->rows + u.proj_rows - 1) / u.proj_rows * u.proj_per_block;
            for (int p = 0; p < 2; p++)
                if (!(u.proj[p].done = rc_arena_alloc(ar, (size_t)(u.proj_count / u.proj_per_block) * sizeof *u.proj[p].done, true)))
                    return RECUR_OUT_OF_MEMORY;
        } else {
            rc_pack_b_init(&wh, kern + D * G, G, false, P, G, mem + nx);
        }
        units = wx.panels && rc_kparallel2_together(tl_kernel, lstm_fwd_units, &u);
        if (units && cache && cache->mem == mem)
            *cache = (rc_fused_cache){.kern = kern, .epoch = epoch, .B = B, .valid = true, .mem = mem, .cap = cache->cap};
    }
    if (!units) {
        /* An input projection too small to share between the threads (gemm_packed_rows) would
         * run on one of them while the other waits: each part projects its own rows at every
         * step instead, in the recurrent product (C written once instead of twice; on one
         * thread too, where the one product also beats two). */
        bool fold = (double)s->rows * (double)G * (double)D < TWO_THREADS_MNK;
        if (fold) {
            if (!rc_pack_b(&wx, kern, G, false, D + P, G, ar)) return RECUR_OUT_OF_MEMORY;
            j.wk = &wx, j.x = x;
            for (int i = 0; i < 2; i++)
                if (!(j.xh[i] = rc_arena_alloc(ar, (size_t)(B * (D + P)) * sizeof(float), false))) return RECUR_OUT_OF_MEMORY;
        } else {
            if (!project(x, s->xrow, s->rows, D, kern, G, NULL, j.gates, ar)) return RECUR_OUT_OF_MEMORY; /* (the cell pass adds the bias) */
            rc_pack_b_fill(&wh, 0, G);
        }
        run_row_parts(&j.parts, s, lstm_fwd_part, &j);
    }
    if (!proj) {
        /* the final state: each row's output at its last step; the outputs: the history block */
        for (int64_t t = 0; t < s->steps; t++)
            for (int64_t i = t + 1 < s->steps ? s->nact[t + 1] : 0; i < s->nact[t]; i++)
                memcpy(j.h + i * P, j.yraw + (s->off[t] + i) * P, (size_t)P * sizeof *j.h);
        if (units) memcpy(y, j.yraw, (size_t)(s->rows * P) * sizeof *y); /* (the row split writes them per step) */
    }
    return RECUR_OK;
}

/* GRU gate rows are [r, u, candidate], 3H floats. */

/* rh = r * h for n rows */
HOT static void gru_reset_rows(int64_t n, int64_t H, const float *restrict g, const float *restrict h, float *restrict rh)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t k = 0; k < H; k++) rh[b * H + k] = g[b * 3 * H + k] * h[b * H + k];
}

/* h = u h + (1 - u) candidate, written to the state and the history */
HOT static void gru_update_rows(int64_t n, int64_t H, const float *restrict g, float *restrict h, float *restrict hout)
{
    for (int64_t b = 0; b < n; b++) {
        const float *u = g + b * 3 * H + H, *ca = u + H;
        float *hb = h + b * H, *ho = hout + b * H;
        for (int64_t j = 0; j < H; j++) {
            float v = u[j] * hb[j] + (1 - u[j]) * ca[j];
            hb[j] = v;
            ho[j] = v;
        }
    }
}

/* The bias, after both products (as the cell adds it), then the activation: `len` values at
 * the start of each of n rows, ld floats apart. */
HOT static void bias_rows(int64_t n, float *restrict g, int64_t ld, const float *restrict bias, int64_t len)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t j = 0; j < len; j++) g[b * ld + j] += bias[j];
}

/* wx [D, 3H] = the input rows of the gate kernel [D+H, 2H] and of the candidate kernel [D+H, H] */
static void gru_input_kernel(const float *gk, const float *ck, int64_t D, int64_t H, float *wx)
{
    for (int64_t d = 0; d < D; d++) {
        memcpy(wx + d * 3 * H, gk + d * 2 * H, (size_t)(2 * H) * sizeof *wx);
        memcpy(wx + d * 3 * H + 2 * H, ck + d * H, (size_t)H * sizeof *wx);
    }
}

typedef struct gru_fwd_job {
    const rc_fused_layer *l;
    const seqinfo *s;
    const rc_packed_b *wg, *wc;
    const float *gb, *cb; /* the gate and candidate biases */
    float *gates, *hh, *rh, *h, *y;
    row_parts parts;
} gru_fwd_job;

static void gru_fwd_part(void *arg, int part)
{
    const gru_fwd_job *j = arg;
    const rc_fused_layer *l = j->l;
    const seqinfo *s = j->s;
    int64_t H = l->units;
    for (step_iter it = steps_begin(s, &j->parts, part, true); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *h = j->h + r.r0 * H, *rh = j->rh + r.r0 * H;
        float *g = j->gates + row * 3 * H;
        rc_gemm_packed(n, h, H, j->wg, 1.0f, g, 3 * H);
        bias_rows(n, g, 3 * H, j->gb, 2 * H);
        for (int64_t b = 0; b < n; b++) rc_vsigmoid(g + b * 3 * H, g + b * 3 * H, (size_t)(2 * H));
        gru_reset_rows(n, H, g, h, rh);
        rc_gemm_packed(n, rh, H, j->wc, 1.0f, g + 2 * H, 3 * H);
        bias_rows(n, g + 2 * H, 3 * H, j->cb, H);
        for (int64_t b = 0; b < n; b++) act_vec(l->act, g + b * 3 * H + 2 * H, g + b * 3 * H + 2 * H, H);
        gru_update_rows(n, H, g, h, j->hh + row * H);
        put_rows(s, j->y, row, j->hh + row * H, n, H);
    }
}

static recur_code gru_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    int64_t B = s->B, D = l->in, H = l->units, T = s->T;
    const float *gk = WIN(in, l, 0), *gb = WIN(in, l, 1), *ck = WIN(in, l, 2), *cb = WIN(in, l, 3);
    gru_fwd_job j = {.l = l, .s = s, .gb = gb, .cb = cb, .gates = hist, .hh = hist + T * B * 3 * H, .h = st->s[0], .y = y};
    j.rh = rc_arena_alloc(ar, (size_t)(B * H) * sizeof(float), false);
    float *wx = rc_arena_alloc(ar, (size_t)(D * 3 * H) * sizeof(float), false);
    rc_packed_b wg, wc;
    if (!j.rh || !wx || !rc_pack_b(&wg, gk + D * 2 * H, 2 * H, false, H, 2 * H, ar) ||
        !rc_pack_b(&wc, ck + D * H, H, false, H, H, ar))
        return RECUR_OUT_OF_MEMORY;
    j.wg = &wg;
    j.wc = &wc;
    /* the input's rows of both kernels side by side: one product for every step's gate rows */
    gru_input_kernel(gk, ck, D, H, wx);
    if (!project(x, s->xrow, s->rows, D, wx, 3 * H, NULL, j.gates, ar)) return RECUR_OUT_OF_MEMORY; /* biases: in the steps */
    run_row_parts(&j.parts, s, gru_fwd_part, &j);
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

/* The recurrences of the basic RNN and the GRU v2 over one part's rows (run_row_parts). */
typedef struct simple_job {
    const rc_fused_layer *l;
    const seqinfo *s;
    const rc_packed_b *w;
    const float *bias;    /* GRU v2: the recurrent bias */
    float *a, *b, *c;     /* per-step buffers (history, gradients) */
    float *h, *y, *tmp;   /* per-row state, output, per-row scratch */
    struct bctx *bc;      /* backward */
    row_parts parts;
} simple_job;

static void gru_v2_fwd_part(void *arg, int part)
{
    const simple_job *j = arg;
    const seqinfo *s = j->s;
    int64_t H = j->l->units;
    for (step_iter it = steps_begin(s, &j->parts, part, true); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *hw = j->tmp + r.r0 * 3 * H, *h = j->h + r.r0 * H;
        for (int64_t b = 0; b < n; b++) memcpy(hw + b * 3 * H, j->bias, (size_t)(3 * H) * sizeof *hw);
        rc_gemm_packed(n, h, H, j->w, 1.0f, hw, 3 * H);
        gru_v2_rows(j->l, n, H, j->a + row * 3 * H, hw, j->b + row * H, h, j->c + row * H);
        put_rows(s, j->y, row, h, n, H);
    }
}

static void rnn_fwd_part(void *arg, int part)
{
    const simple_job *j = arg;
    const seqinfo *s = j->s;
    int64_t H = j->l->units;
    for (step_iter it = steps_begin(s, &j->parts, part, true); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *g = j->a + row * H, *h = j->h + r.r0 * H;
        rc_gemm_packed(n, h, H, j->w, 1.0f, g, H);
        act_vec(j->l->act, g, g, n * H);
        memcpy(h, g, (size_t)(n * H) * sizeof *h);
        put_rows(s, j->y, row, g, n, H);
    }
}

static recur_code gru_v2_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                             lstate *st, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    int64_t B = s->B, D = l->in, H = l->units, T = s->T;
    const float *kern = WIN(in, l, 0), *rk = WIN(in, l, 1), *bias = WIN(in, l, 2);
    float *xw = hist, *hrec = hist + T * B * 3 * H, *hh = hrec + T * B * H;
    float *hw = rc_arena_alloc(ar, (size_t)(B * 3 * H) * sizeof(float), false);
    rc_packed_b wr;
    if (!hw || !rc_pack_b(&wr, rk, 3 * H, false, H, 3 * H, ar)) return RECUR_OUT_OF_MEMORY;
    if (!project(x, s->xrow, s->rows, D, kern, 3 * H, bias, xw, ar)) return RECUR_OUT_OF_MEMORY;
    simple_job j = {.l = l, .s = s, .w = &wr, .bias = bias + 3 * H, .a = xw, .b = hrec, .c = hh, .h = st->s[0], .y = y, .tmp = hw};
    run_row_parts(&j.parts, s, gru_v2_fwd_part, &j);
    return RECUR_OK;
}

static recur_code rnn_fwd(const rc_fused_layer *l, recur_array *const *in, const seqinfo *s, const float *x, float *y,
                          lstate *st, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    int64_t D = l->in, H = l->units;
    const float *kern = WIN(in, l, 0), *bias = WIN(in, l, 1);
    rc_packed_b wh;
    if (!rc_pack_b(&wh, kern + D * H, H, false, H, H, ar)) return RECUR_OUT_OF_MEMORY;
    if (!project(x, s->xrow, s->rows, D, kern, H, bias, hist, ar)) return RECUR_OUT_OF_MEMORY;
    simple_job j = {.l = l, .s = s, .w = &wh, .a = hist, .h = st->s[0], .y = y};
    run_row_parts(&j.parts, s, rnn_fwd_part, &j);
    return RECUR_OK;
}

typedef recur_code (*fwd_fn)(const rc_fused_layer *, recur_array *const *, const seqinfo *, const float *, float *, lstate *,
                             float *, rc_arena *, rc_fused_cache *);

static fwd_fn forward_of(const rc_fused_layer *l)
{
    switch (l->kind) {
    case RC_FUSED_RNN: return rnn_fwd;
    case RC_FUSED_LSTM: return lstm_fwd;
    case RC_FUSED_GRU: return gru_fwd;
    default: return gru_v2_fwd;
    }
}

static recur_code fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                                recur_array **final, recur_array *out, float *hist, rc_arena *ar, rc_fused_cache *cache);

recur_code rc_fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                            recur_array **final, recur_array *out, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    tl_kernel = k;
    recur_code code = fused_forward(k, spec, x, len, final, out, hist, ar, cache);
    tl_kernel = NULL;
    return code;
}

static recur_code fused_forward(rc_kctx *k, const rc_fused *spec, const recur_array *x, const recur_array *len,
                                recur_array **final, recur_array *out, float *hist, rc_arena *ar, rc_fused_cache *cache)
{
    rc_arena_reset(ar);
    /* No steps or no rows: nothing to compute. The caller zeroed `out` and copied the initial
     * state into `final`, which is the result; empty arrays have no data pointer, which the
     * code below would take for a failed allocation. */
    if (x->shape.dims[0] == 0 || x->shape.dims[1] == 0) return RECUR_OK;
    seqinfo s;
    recur_code code = RECUR_OK;
    if (!seq_setup(&s, x, len, spec->batch_major, ar)) goto oom;
    int64_t T = s.T, B = s.B;
    /* the caller's arrays serve as they are when they are the packed layout */
    bool direct = caller_packed(&s);
    const float *cur = x->data;
    const int64_t *rows = direct ? NULL : caller_rows(&s, ar);
    if (!direct && !rows) goto oom;
    /* The input projection reads the caller's rows where they lie, and the last layer writes its
     * output rows where they go (the caller zeroed the rest); small batches, whose one-sequence
     * paths read packed rows, get copies. */
    bool by_index = rows && B >= 16;
    s.xrow = by_index ? rows : NULL;
    if (rows && !by_index) {
        float *xs = rc_arena_alloc(ar, (size_t)(s.rows * x->shape.dims[2]) * sizeof(float), false);
        if (!xs) goto oom;
        permute_rows(&s, rows, xs, x->data, x->shape.dims[2], true);
        cur = xs;
    }
    for (int i = 0; i < spec->nlayers; i++) {
        const rc_fused_layer *l = &spec->layers[i];
        bool last = i == spec->nlayers - 1;
        int64_t O = layer_out(l);
        s.yrow = last && by_index ? rows : NULL;
        float *y = last && (direct || by_index) ? out->data : rc_arena_alloc(ar, (size_t)(s.rows * O) * sizeof(float), false);
        float *h = hist ? hist : rc_arena_alloc(ar, (size_t)(T * B * row_floats(l)) * sizeof(float), false);
        lstate st;
        if (!y || !h || !state_in(l, final, &s, &st, ar)) goto oom;
        code = forward_of(l)(l, k->in, &s, cur, y, &st, h, ar, cache ? &cache[i] : NULL);
        s.xrow = NULL; /* the layers above read packed rows */
        if (code || !state_out(l, final, &s, &st, ar)) goto fail;
        if (last && rows && !by_index) permute_rows(&s, rows, out->data, y, O, false); /* out: zeroed */
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
    const float *x;         /* layer input, packed rows (or the caller's, by s->xrow) */
    const float *hist;      /* this layer's history */
    float *hist_w;          /* the same, writable where no one reads it after this backward
                             * (NULL otherwise) */
    const float *h0, *c0;   /* initial states (sorted) */
    const float *dy;        /* gradient of the layer output, packed rows (or the caller's, by s->yrow) */
    float *dyg[2];          /* with s->yrow: each part's rows of dy at a step (dy_rows) */
    float *dx;              /* gradient of the layer input, packed rows (or the caller's, by s->xrow) */
    float *dh, *dc;         /* in: gradient of the final state; out: of the initial state */
    bool dh0;               /* the initial state's gradients are read (else dh is not carried
                             * past the first step: rc_fused_backward) */
    rc_arena *ar;
} bctx;

#define TAKE(c, n) ((float *)rc_arena_alloc((c)->ar, (size_t)(n) * sizeof(float), true))

/* Step rows [row, row + n) of the output gradient (w floats each): where they lie, or gathered
 * from the caller's rows into the part's scratch while the step needs them. */
static const float *dy_rows(const bctx *c, int part, int64_t row, int64_t n, int64_t w)
{
    if (!c->s->yrow) return c->dy + row * w;
    float *d = c->dyg[part > 0];
    for (int64_t i = 0; i < n; i++) memcpy(d + i * w, c->dy + c->s->yrow[row + i] * w, (size_t)w * sizeof *d);
    return d;
}

/* The layer input as a weight_grad group: packed, or the caller's rows by seqinfo.xrow. */
static inline rc_tall xtall(const bctx *c)
{
    int64_t D = c->l->in;
    return (rc_tall){.a0 = c->x, .idx = c->s->xrow, .lda = D, .k = D};
}
#define TAKE_RAW(c, n) ((float *)rc_arena_alloc((c)->ar, (size_t)(n) * sizeof(float), false))

/* hp[t] = the layer's output at t-1 (or h0), rows not running at t zero. */
static void prev_outputs(const bctx *c, const float *ys, int64_t w, float *hp)
{
    const seqinfo *s = c->s;
    for (int64_t t = 0; t < s->steps; t++)
        memcpy(hp + s->off[t] * w, t ? ys + s->off[t - 1] * w : c->h0, (size_t)(s->nact[t] * w) * sizeof(float));
}

static void rnn_bwd_part(void *arg, int part)
{
    const simple_job *j = arg;
    const bctx *c = j->bc;
    const seqinfo *s = c->s;
    int64_t H = j->l->units;
    for (step_iter it = steps_begin(s, &j->parts, part, false); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        const float *dyt = dy_rows(c, part, row, n, H);
        float *d = j->tmp + r.r0 * H, *dh = c->dh + r.r0 * H;
        for (int64_t i = 0; i < n * H; i++) d[i] = dh[i] + dyt[i];
        act_grad(j->l->act, j->a + row * H, d, c->hist + row * H, n * H);
        if (t || c->dh0) rc_gemm_packed(n, j->a + row * H, H, j->w, 0.0f, dh, H);
    }
}

static recur_code rnn_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, R = c->s->rows;
    const float *kern = WIN(c->in, l, 0);
    float *dG = TAKE(c, R * H), *hp = TAKE(c, R * H), *d = TAKE(c, B * H);
    rc_packed_b whT;
    if (!dG || !hp || !d || !rc_pack_b(&whT, kern + D * H, H, true, H, H, c->ar)) return RECUR_OUT_OF_MEMORY;
    prev_outputs(c, c->hist, H, hp);
    simple_job j = {.l = l, .s = c->s, .w = &whT, .a = dG, .tmp = d, .bc = c};
    run_row_parts(&j.parts, c->s, rnn_bwd_part, &j);
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    rc_tall g[2] = {xtall(c), tall(hp, H, H)};
    if (!weight_grad(R, H, 2, g, dG, H, dK, H, db, c->ar)) return RECUR_OUT_OF_MEMORY;
    if (c->dx && !gemm_packed_rows(R, D, H, dG, H, NULL, kern, H, true, 0.0f, c->dx, D, c->s->xrow, c->ar)) return RECUR_OUT_OF_MEMORY;
    return RECUR_OK;
}

/* The common cell's backward pass (tanh, no clipping, peepholes or projection) over n rows, in
 * one vector pass (core/vmath): the output gradient read as dh + dy. (The bias gradient, the
 * gate gradients' column sums, comes with the weight gradient's product.) */
static void lstm_bwd_rows_basic(int64_t n, int64_t H, const float *gt, const float *mt, const float *cprev, const float *dh,
                                const float *dy, float *dc, float *g)
{
    rc_vlstm_cell_grad_rows((size_t)n, (size_t)H, gt, (size_t)(4 * H), (size_t)H, mt, cprev, dh, dy, dc, g);
}

HOT static void lstm_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *gt, const float *crt,
                              const float *cprev, const float *dm, float *dc, float *g, float *mpre, float *a,
                              const float *wf, const float *wi, const float *wo)
{
    int64_t G = 4 * H;
    for (int64_t b = 0; b < n; b++) {
        const float *is = gt + b * G, *ja = is + H, *fs = is + 2 * H, *os = is + 3 * H, *cr = crt + b * H, *cp = cprev + b * H;
        const float *dmb = dm + b * H;
        float *dcb = dc + b * H, *gb = g + b * G;
        for (int64_t j = 0; j < H; j++) a[j] = clampf(cr[j], l->cell_clip);
        float *nc = mpre ? mpre + b * H : NULL; /* m before the projection */
        act_vec(l->act, a, a, H);
        for (int64_t j = 0; j < H; j++) {
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
            if (nc) nc[j] = a[j] * os[j];
            gb[j] = di; /* (g may be gt: every gate of unit j read above) */
            gb[H + j] = dj;
            gb[2 * H + j] = df;
            gb[3 * H + j] = do_pre;
        }
    }
}

typedef struct lstm_bwd_job {
    bctx *c;
    const rc_packed_b *whT, *wpT;
    const float *wf, *wi, *wo, *gates, *craw, *yraw;
    float *dG, *hp, *dm, *cp, *mpre, *dmr, *a[2];
    float *bsum; /* the bias gradient's partial sums (bias_sums) */
    row_parts parts;
    bool basic; /* the common cell (lstm_bwd_rows_basic) */
} lstm_bwd_job;

/* The bias gradients (LSTM, and GRU with the reset before the product) are summed as the
 * recurrence goes, while each step's gate gradients are still in cache, instead of in a pass
 * over all of them afterwards, from memory (26 MB for the 256-unit LSTM's batch of 64 x 100
 * steps: its backward took 0.98 times as long on Zen 3, in alternate iterations of one
 * process). The order of the sums is fixed by the shape, so that one thread and two give the
 * same bits: the batch's rows in groups of BIAS_ROWS (a part's rows, and a tile taken over,
 * start on a multiple of it), each group with its own row of sums bsum[group][G], to which it
 * adds its running rows' sum at every step, in running order (a tile taken over continues
 * after its owner's last step); the groups' rows are added up in group order at the end
 * (bias_total). */
#define BIAS_ROWS STEAL_ROWS

/* One step's gate gradients dG (n rows of G floats, the batch's rows [r0, r0 + n), r0 a
 * multiple of BIAS_ROWS) added into their groups' sums. */
__attribute__((target_clones("avx2", "default"))) static void bias_sums(float *bsum, int64_t r0, int64_t n, const float *dG,
                                                                        int64_t G)
{
    for (int64_t i = 0; i < n; i += BIAS_ROWS) {
        float *restrict acc = bsum + (r0 + i) / BIAS_ROWS * G;
        const float *g = dG + i * G;
        switch (RC_MIN(BIAS_ROWS, n - i)) {
        case 1:
            for (int64_t c = 0; c < G; c++) acc[c] += g[c];
            break;
        case 2:
            for (int64_t c = 0; c < G; c++) acc[c] += g[c] + g[G + c];
            break;
        case 3:
            for (int64_t c = 0; c < G; c++) acc[c] += g[c] + g[G + c] + g[2 * G + c];
            break;
        default:
            for (int64_t c = 0; c < G; c++) acc[c] += g[c] + g[G + c] + g[2 * G + c] + g[3 * G + c];
            break;
        }
    }
}

/* The groups' sums for a batch of B rows of G gate gradients, zeroed (NULL on OOM). */
static float *bias_sums_take(bctx *c, int64_t B, int64_t G, int64_t *groups)
{
    *groups = (B + BIAS_ROWS - 1) / BIAS_ROWS;
    return TAKE(c, *groups * G);
}

/* db[0, c1 - c0) += the groups' sums of columns [c0, c1), in group order. */
static void bias_total(const float *bsum, int64_t groups, int64_t G, int64_t c0, int64_t c1, float *db)
{
    for (int64_t q = 0; q < groups; q++)
        for (int64_t c = c0; c < c1; c++) db[c - c0] += bsum[q * G + c];
}

/* The backward recurrence over one part's rows: gate gradients, state gradients, and the
 * part's bias (and peephole) gradient sums. */
static void lstm_bwd_part(void *arg, int part)
{
    const lstm_bwd_job *j = arg;
    const bctx *c = j->c;
    const rc_fused_layer *l = c->l;
    const seqinfo *s = c->s;
    int64_t H = l->units, P = layer_out(l), G = 4 * H, S = s->steps;
    bool proj = j->wpT != NULL;
    /* previous outputs: clamp(y_raw[t-1]) (hp NULL: the weight gradient reads y_raw itself) */
    for (int64_t t = 0; j->hp && t < S; t++) {
        rows_range r = start_rows(s, &j->parts, part, t);
        int64_t n = r.r1 - r.r0;
        float *hpt = j->hp + (s->off[t] + r.r0) * P;
        if (t) clamp_vec(hpt, j->yraw + (s->off[t - 1] + r.r0) * P, n * P, proj ? l->proj_clip : 0);
        else memcpy(hpt, c->h0 + r.r0 * P, (size_t)(n * P) * sizeof *hpt);
    }
    float *a = j->a[part > 0];
    for (step_iter it = steps_begin(s, &j->parts, part, false); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *dh = c->dh + r.r0 * P, *dc = c->dc + r.r0 * H, *dm = j->dm + r.r0 * H, *cp = j->cp + r.r0 * H;
        const float *dyt = dy_rows(c, part, row, n, P), *yr = j->yraw + row * P;
        /* the previous cell state, clipped as the forward used it */
        const float *cprev = t ? j->craw + (s->off[t - 1] + r.r0) * H : c->c0 + r.r0 * H;
        if (t && l->cell_clip > 0) {
            clamp_vec(cp, cprev, n * H, l->cell_clip);
            cprev = cp;
        }
        if (j->basic) {
            lstm_bwd_rows_basic(n, H, j->gates + row * G, yr, cprev, dh, dyt, dc, j->dG + row * G); /* yr: m (P = H) */
        } else {
            float *dmt = proj ? j->dmr + row * P : dm;
            for (int64_t i = 0; i < n * P; i++) {
                float d = dh[i] + dyt[i];
                if (proj && l->proj_clip > 0 && (yr[i] < -l->proj_clip || yr[i] > l->proj_clip)) d = 0;
                dmt[i] = d;
            }
            if (proj) rc_gemm_packed(n, dmt, P, j->wpT, 0.0f, dm, H);
            lstm_bwd_rows(l, n, H, j->gates + row * G, j->craw + row * H, cprev, dm, dc, j->dG + row * G,
                          j->mpre ? j->mpre + row * H : NULL, a, j->wf, j->wi, j->wo);
        }
        bias_sums(j->bsum, r.r0, n, j->dG + row * G, G);
        if (t || c->dh0) rc_gemm_packed(n, j->dG + row * G, G, j->whT, 0.0f, dh, P);
    }
}

/* The peephole weights' gradients, after the recurrence: over every running row of every step,
 * in one fixed order (so the same bits on one thread and two), df c_prev, di c_prev and do c,
 * the cell states clipped as the forward used them (the initial one as it is). */
static void peephole_grads(const bctx *c, const lstm_bwd_job *j, float *dwf, float *dwi, float *dwo)
{
    const seqinfo *s = c->s;
    int64_t H = c->l->units, G = 4 * H;
    float clip = c->l->cell_clip;
    for (int64_t t = 0; t < s->steps; t++)
        for (int64_t i = 0; i < s->nact[t]; i++) {
            int64_t row = s->off[t] + i;
            const float *g = j->dG + row * G, *cr = j->craw + row * H;
            const float *cp = t ? j->craw + (s->off[t - 1] + i) * H : c->c0 + i * H;
            for (int64_t k = 0; k < H; k++) {
                float cpk = t ? clampf(cp[k], clip) : cp[k];
                dwf[k] += g[2 * H + k] * cpk;
                dwi[k] += g[k] * cpk;
                dwo[k] += g[3 * H + k] * clampf(cr[k], clip);
            }
        }
}

static recur_code lstm_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, P = layer_out(l), G = 4 * H, R = c->s->rows, T = c->s->T;
    const float *kern = WIN(c->in, l, 0);
    int pi = l->peepholes ? 5 : 2;
    const float *proj = l->proj > 0 ? WIN(c->in, l, pi) : NULL;
    float *dK = DW(c->dcap, c->first, l, 0), *db = DW(c->dcap, c->first, l, 1);
    lstm_bwd_job j = {.c = c, .gates = c->hist};
    j.craw = j.gates + T * B * G;
    j.yraw = j.craw + T * B * H;
    if (l->peepholes) j.wf = WIN(c->in, l, 2), j.wi = WIN(c->in, l, 3), j.wo = WIN(c->in, l, 4);
    /* dG and hp: every packed row is written (RAW: no memset) */
    j.basic = !l->peepholes && !proj && !(l->cell_clip > 0) && l->act == RECUR_ACT_TANH;
    /* Every row running every step: the previous outputs of steps 1.. are y_raw's first rows, so
     * the weight gradient reads them there (and h0 for step 0) instead of from a copy. */
    bool hp_view = c->s->dense && !(proj && l->proj_clip > 0);
    /* the gate gradients take the gates' place where the history is this backward's alone: the
     * pointwise pass reads a step's gates just before it writes their gradients, which then
     * reuse lines already in cache, where a buffer of their own would be fetched from memory
     * once more (the seed case trains about 6% faster on Zen 3) */
    j.dG = c->hist_w ? c->hist_w : TAKE_RAW(c, R * G), j.dm = TAKE(c, B * H), j.cp = TAKE(c, B * H);
    j.hp = hp_view ? NULL : TAKE_RAW(c, R * P);
    j.mpre = proj ? TAKE(c, R * H) : NULL, j.dmr = proj ? TAKE(c, R * P) : NULL;
    j.a[0] = TAKE(c, H), j.a[1] = TAKE(c, H);
    int64_t bgroups;
    j.bsum = bias_sums_take(c, B, G, &bgroups);
    rc_packed_b whT, wpT;
    if (!j.dG || (!hp_view && !j.hp) || !j.dm || !j.cp || !j.a[0] || !j.a[1] || !j.bsum || (proj && (!j.mpre || !j.dmr)) ||
        !rc_pack_b(&whT, kern + D * G, G, true, G, P, c->ar) ||
        (proj && !rc_pack_b(&wpT, proj, P, true, P, H, c->ar)))
        return RECUR_OUT_OF_MEMORY;
    j.whT = &whT;
    j.wpT = proj ? &wpT : NULL;
    run_row_parts(&j.parts, c->s, lstm_bwd_part, &j);
    rc_tall g[2] = {xtall(c), tall(j.hp, P, P)};
    if (hp_view) g[1] = (rc_tall){.a0 = c->h0, .a1 = j.yraw, .split = B, .lda = P, .k = P};
    bias_total(j.bsum, bgroups, G, 0, G, db);
    if (!weight_grad(R, G, 2, g, j.dG, G, dK, G, NULL, c->ar)) return RECUR_OUT_OF_MEMORY;
    if (l->peepholes) peephole_grads(c, &j, DW(c->dcap, c->first, l, 2), DW(c->dcap, c->first, l, 3), DW(c->dcap, c->first, l, 4));
    if (proj && !weight_grad(R, P, 1, &(rc_tall){.a0 = j.mpre, .lda = H, .k = H}, j.dmr, P, DW(c->dcap, c->first, l, pi), P, NULL, c->ar))
        return RECUR_OUT_OF_MEMORY;
    if (c->dx && !gemm_packed_rows(R, D, G, j.dG, G, NULL, kern, G, true, 0.0f, c->dx, D, c->s->xrow, c->ar)) return RECUR_OUT_OF_MEMORY;
    return RECUR_OK;
}

/* One step's pointwise backward: rows of dA (ld floats apart) get the update gate's gradient
 * at [H, 2H) and the candidate's at [2H, 3H); dh_out the part of dh that flows through u. dA
 * may be g (each unit's gates are read before its gradients are written). */
HOT static void gru_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *g, const float *restrict hp,
                             const float *restrict dh_in, const float *restrict dyt, float *dA, int64_t ld, float *restrict dh_out)
{
    const recur_activation act = l->act; /* (a local act: the loop vectorises) */
    for (int64_t b = 0; b < n; b++) {
        float *du = dA + b * ld + H, *dct = dA + b * ld + 2 * H;
        for (int64_t j = 0; j < H; j++) {
            int64_t e = b * H + j;
            float u = g[b * 3 * H + H + j], d = dh_in[e] + dyt[e], cv = g[b * 3 * H + 2 * H + j];
            float ad = act == RECUR_ACT_TANH ? 1 - cv * cv
                       : act == RECUR_ACT_SIGMOID ? cv * (1 - cv)
                       : act == RECUR_ACT_RELU ? (cv > 0 ? 1.0f : 0.0f) : 1.0f;
            dct[j] = d * (1 - u) * ad;
            du[j] = d * (hp[e] - cv) * u * (1 - u);
            dh_out[e] = d * u;
        }
    }
}

/* Through the reset gate: from drh = d(r * h), the reset gate's gradient (at [0, H) of each dA
 * row) and the part of dh that flows through r * h. */
HOT static void gru_bwd_reset(int64_t n, int64_t H, const float *g, const float *hp, const float *drh, float *dA, int64_t ld,
                              float *dhn)
{
    for (int64_t b = 0; b < n; b++)
        for (int64_t k = 0; k < H; k++) {
            float rr = g[b * 3 * H + k];
            dA[b * ld + k] = drh[b * H + k] * hp[b * H + k] * rr * (1 - rr);
            dhn[b * H + k] += drh[b * H + k] * rr;
        }
}

typedef struct gru_bwd_job {
    bctx *c;
    const rc_packed_b *wcT, *wgT;
    const float *gates, *hh; /* hh: the outputs (the history block) */
    float *dA, *rh, *drh, *dhn; /* dA: [rows, 3H], the gates' gradients then the candidate's */
    float *bsum;                /* both biases' gradients' partial sums, [groups][3H] (bias_sums) */
    row_parts parts;
} gru_bwd_job;

static void gru_bwd_part(void *arg, int part)
{
    const gru_bwd_job *j = arg;
    const bctx *c = j->c;
    const rc_fused_layer *l = c->l;
    const seqinfo *s = c->s;
    int64_t H = l->units;
    for (step_iter it = steps_begin(s, &j->parts, part, false); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *dh = c->dh + r.r0 * H, *drh = j->drh + r.r0 * H, *dhn = j->dhn + r.r0 * H;
        /* the previous outputs: the first rows of the step before (rows run longest first) */
        const float *g = j->gates + row * 3 * H, *hpt = t ? j->hh + (s->off[t - 1] + r.r0) * H : c->h0 + r.r0 * H;
        float *dA = j->dA + row * 3 * H;
        gru_reset_rows(n, H, g, hpt, j->rh + row * H);
        gru_bwd_rows(l, n, H, g, hpt, dh, dy_rows(c, part, row, n, H), dA, 3 * H, dhn);
        rc_gemm_packed(n, dA + 2 * H, 3 * H, j->wcT, 0.0f, drh, H);
        gru_bwd_reset(n, H, g, hpt, drh, dA, 3 * H, dhn);
        bias_sums(j->bsum, r.r0, n, dA, 3 * H);
        if (!t && !c->dh0) continue; /* (the reset gate's gradient above needed drh) */
        rc_gemm_packed(n, dA, 3 * H, j->wgT, 1.0f, dhn, H);
        memcpy(dh, dhn, (size_t)(n * H) * sizeof *dh);
    }
}

static recur_code gru_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, R = c->s->rows, T = c->s->T;
    const float *gk = WIN(c->in, l, 0), *ck = WIN(c->in, l, 2);
    gru_bwd_job j = {.c = c, .gates = c->hist};
    j.hh = j.gates + T * B * 3 * H;
    /* The weight gradient needs every step's previous outputs in one matrix: with every row
     * running every step they are h0 and then the outputs' first rows; otherwise a copy. */
    bool dense = c->s->dense;
    /* every packed row of these is written (RAW: no memset) */
    float *hp = dense ? NULL : TAKE_RAW(c, R * H), *wx = TAKE_RAW(c, D * 3 * H), *dwx = TAKE_RAW(c, D * 3 * H);
    /* the gates' gradients take their place where the history is this backward's alone (as
     * lstm_bwd's): each unit's gates are read before its gradients are written, the reset
     * gate's last (gru_bwd_reset, after the product that gives drh) */
    j.dA = c->hist_w ? c->hist_w : TAKE_RAW(c, R * 3 * H), j.rh = TAKE_RAW(c, R * H), j.drh = TAKE(c, B * H), j.dhn = TAKE(c, B * H);
    int64_t bgroups;
    j.bsum = bias_sums_take(c, B, 3 * H, &bgroups);
    rc_packed_b wcT, wgT;
    if (!j.dA || (!dense && !hp) || !wx || !dwx || !j.rh || !j.drh || !j.dhn || !j.bsum ||
        !rc_pack_b(&wcT, ck + D * H, H, true, H, H, c->ar) ||
        !rc_pack_b(&wgT, gk + D * 2 * H, 2 * H, true, 2 * H, H, c->ar))
        return RECUR_OUT_OF_MEMORY;
    j.wcT = &wcT;
    j.wgT = &wgT;
    if (!dense) prev_outputs(c, j.hh, H, hp);
    run_row_parts(&j.parts, c->s, gru_bwd_part, &j);
    float *dgk = DW(c->dcap, c->first, l, 0), *dgb = DW(c->dcap, c->first, l, 1), *dck = DW(c->dcap, c->first, l, 2),
          *dcb = DW(c->dcap, c->first, l, 3);
    /* The input's rows of both kernels side by side, [D, 3H]: one product each for their
     * gradient and for dx, where the two kernels apart would take two. */
    gru_input_kernel(gk, ck, D, H, wx);
    memset(dwx, 0, (size_t)(D * 3 * H) * sizeof *dwx);
    rc_tall gx = xtall(c), gh = tall(hp, H, H), gr = tall(j.rh, H, H);
    if (dense) gh = (rc_tall){.a0 = c->h0, .a1 = j.hh, .split = B, .lda = H, .k = H};
    bias_total(j.bsum, bgroups, 3 * H, 0, 2 * H, dgb);
    bias_total(j.bsum, bgroups, 3 * H, 2 * H, 3 * H, dcb);
    if (!weight_grad(R, 3 * H, 1, &gx, j.dA, 3 * H, dwx, 3 * H, NULL, c->ar) ||
        !weight_grad(R, 2 * H, 1, &gh, j.dA, 3 * H, dgk + D * 2 * H, 2 * H, NULL, c->ar) ||
        !weight_grad(R, H, 1, &gr, j.dA + 2 * H, 3 * H, dck + D * H, H, NULL, c->ar))
        return RECUR_OUT_OF_MEMORY;
    for (int64_t d = 0; d < D; d++)
        for (int64_t k = 0; k < 3 * H; k++) {
            if (k < 2 * H) dgk[d * 2 * H + k] += dwx[d * 3 * H + k];
            else dck[d * H + k - 2 * H] += dwx[d * 3 * H + k];
        }
    if (c->dx && !gemm_packed_rows(R, D, 3 * H, j.dA, 3 * H, NULL, wx, 3 * H, true, 0.0f, c->dx, D, c->s->xrow, c->ar)) return RECUR_OUT_OF_MEMORY;
    return RECUR_OK;
}

HOT static void gru_v2_bwd_rows(const rc_fused_layer *l, int64_t n, int64_t H, const float *zrh, const float *restrict hm,
                                const float *restrict hp, const float *restrict dh_in, const float *restrict dyt, float *mx,
                                float *restrict mh, float *restrict dh_out)
{
    int64_t G = 3 * H;
    const recur_activation act = l->act;
    for (int64_t b = 0; b < n; b++) {
        const float *r = zrh + b * G;
        for (int64_t j = 0; j < H; j++) {
            int64_t e = b * H + j;
            float z = r[j], rr = r[H + j], hh = r[2 * H + j], d = dh_in[e] + dyt[e];
            float ad = act == RECUR_ACT_TANH ? 1 - hh * hh
                       : act == RECUR_ACT_SIGMOID ? hh * (1 - hh)
                       : act == RECUR_ACT_RELU ? (hh > 0 ? 1.0f : 0.0f) : 1.0f;
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

static void gru_v2_bwd_part(void *arg, int part)
{
    const simple_job *j = arg;
    const bctx *c = j->bc;
    const seqinfo *s = c->s;
    int64_t H = j->l->units, G = 3 * H, TB = s->T * s->B;
    const float *zrh = c->hist, *hrec = zrh + TB * G;
    for (step_iter it = steps_begin(s, &j->parts, part, false); steps_next(&it);) {
        int64_t t = it.t;
        rows_range r = it.r;
        int64_t n = r.r1 - r.r0, row = s->off[t] + r.r0;
        float *dh = c->dh + r.r0 * H, *dhn = j->tmp + r.r0 * H, *mh = j->b + row * G;
        gru_v2_bwd_rows(j->l, n, H, zrh + row * G, hrec + row * H, j->c + row * H, dh, dy_rows(c, part, row, n, H), j->a + row * G, mh,
                        dhn);
        if (!t && !c->dh0) continue;
        rc_gemm_packed(n, mh, G, j->w, 1.0f, dhn, H);
        memcpy(dh, dhn, (size_t)(n * H) * sizeof *dh);
    }
}

static recur_code gru_v2_bwd(bctx *c)
{
    const rc_fused_layer *l = c->l;
    int64_t B = c->s->B, D = l->in, H = l->units, G = 3 * H, T = c->s->T, R = c->s->rows;
    const float *kern = WIN(c->in, l, 0), *rk = WIN(c->in, l, 1);
    const float *hh = c->hist + T * B * (G + H); /* after z, r, act(hh) and the recurrent hh term */
    /* dMx takes the place of z, r, act(hh) where the history is this backward's alone (as in
     * lstm_bwd; each unit's are read before its gradients are written) */
    float *dMx = c->hist_w ? c->hist_w : TAKE(c, R * G), *dMh = TAKE(c, R * G), *hp = TAKE(c, R * H), *dhn = TAKE(c, B * H);
    rc_packed_b wrT;
    if (!dMx || !dMh || !hp || !dhn || !rc_pack_b(&wrT, rk, G, true, G, H, c->ar)) return RECUR_OUT_OF_MEMORY;
    prev_outputs(c, hh, H, hp);
    simple_job j = {.l = l, .s = c->s, .w = &wrT, .a = dMx, .b = dMh, .c = hp, .tmp = dhn, .bc = c};
    run_row_parts(&j.parts, c->s, gru_v2_bwd_part, &j);
    float *dK = DW(c->dcap, c->first, l, 0), *dR = DW(c->dcap, c->first, l, 1), *db = DW(c->dcap, c->first, l, 2);
    rc_tall gx = xtall(c);
    if (!weight_grad(R, G, 1, &gx, dMx, G, dK, G, db, c->ar) ||
        !weight_grad(R, G, 1, &(rc_tall){.a0 = hp, .lda = H, .k = H}, dMh, G, dR, G, db + G, c->ar))
        return RECUR_OUT_OF_MEMORY;
    if (c->dx && !gemm_packed_rows(R, D, G, dMx, G, NULL, kern, G, true, 0.0f, c->dx, D, c->s->xrow, c->ar)) return RECUR_OUT_OF_MEMORY;
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

static recur_code fused_backward(rc_kctx *k, const rc_fused *spec, float *hist, bool hist_free, recur_array *const *fwd_in,
                                 const recur_array *len, recur_array *const *init, const recur_array *dout, recur_array *dx,
                                 recur_array **dinit, uint32_t dinit_read, recur_array **dcap, int first_capture,
                                 rc_arena *ar);

recur_code rc_fused_backward(rc_kctx *k, const rc_fused *spec, float *hist, bool hist_free, recur_array *const *fwd_in,
                             const recur_array *len, recur_array *const *init, const recur_array *dout, recur_array *dx,
                             recur_array **dinit, uint32_t dinit_read, recur_array **dcap, int first_capture, rc_arena *ar)
{
    tl_kernel = k;
    recur_code code = fused_backward(k, spec, hist, hist_free, fwd_in, len, init, dout, dx, dinit, dinit_read, dcap, first_capture, ar);
    tl_kernel = NULL;
    return code;
}

static recur_code fused_backward(rc_kctx *k, const rc_fused *spec, float *hist, bool hist_free, recur_array *const *fwd_in,
                                 const recur_array *len, recur_array *const *init, const recur_array *dout, recur_array *dx,
                                 recur_array **dinit, uint32_t dinit_read, recur_array **dcap, int first_capture,
                                 rc_arena *ar)
{
    rc_arena_reset(ar);
    const recur_array *x = fwd_in[0];
    /* No steps or no rows (see rc_fused_forward): the caller's results stand, dx empty, the
     * initial-state gradients equal to the final-state ones, the weight gradients zero. */
    if (x->shape.dims[0] == 0 || x->shape.dims[1] == 0) return RECUR_OK;
    seqinfo s;
    recur_code code = RECUR_OK;
    if (!seq_setup(&s, x, len, spec->batch_major, ar)) goto oom;
    int64_t T = s.T, B = s.B;
    float *hl[RC_ARRAY_LEN(spec->layers)];
    float *h = hist;
    for (int i = 0; i < spec->nlayers; i++) {
        hl[i] = h;
        h += T * B * row_floats(&spec->layers[i]);
    }
    /* The caller's arrays in the packed layout serve as they are (dx beyond the last step stays
     * as the caller zeroed it); otherwise they are read and written by row index. */
    bool direct = caller_packed(&s);
    const rc_fused_layer *top = &spec->layers[spec->nlayers - 1];
    /* the top layer reads the caller's rows of dy a step at a time */
    const float *dy = dout->data;
    const int64_t *rows = direct ? NULL : caller_rows(&s, ar);
    float *dyg[2] = {NULL, NULL};
    if (!direct && (!rows || !(dyg[0] = rc_arena_alloc(ar, (size_t)(B * layer_out(top)) * sizeof(float), false)) ||
                    !(dyg[1] = rc_arena_alloc(ar, (size_t)(B * layer_out(top)) * sizeof(float), false))))
        goto oom;
    for (int i = spec->nlayers - 1; i >= 0 && !code; i--) {
        const rc_fused_layer *l = &spec->layers[i];
        int64_t D = l->in, H = l->units, P = layer_out(l);
        /* the layer's input: x (the caller's rows, by s.xrow when sorted) or the layer below's
         * outputs (clamped for LSTM); dx likewise */
        s.xrow = i == 0 ? rows : NULL;
        s.yrow = i == spec->nlayers - 1 ? rows : NULL;
        const float *xin = i == 0 ? x->data : NULL;
        float *xs = xin ? NULL : rc_arena_alloc(ar, (size_t)(s.rows * D) * sizeof(float), false);
        float *dxl = i == 0 ? (dx ? dx->data : NULL) : rc_arena_alloc(ar, (size_t)(s.rows * D) * sizeof(float), false);
        if ((!xin && !xs) || (!dxl && (i > 0 || dx))) goto oom;
        if (xs) xin = xs;
        if (i > 0) {
            const rc_fused_layer *lb = &spec->layers[i - 1];
            const float *yb = layer_outputs(lb, hl[i - 1], T, B);
            clamp_vec(xs, yb, s.rows * D, lb->kind == RC_FUSED_LSTM && lb->proj ? lb->proj_clip : 0);
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
        uint32_t mine = (uint32_t)(((uint64_t)1 << l->nstate) - 1) << l->state0;
        bctx c = {.l = l, .s = &s, .in = fwd_in, .dcap = dcap, .first = first_capture, .x = xin, .hist = hl[i],
                  .hist_w = hist_free ? hl[i] : NULL, .h0 = h0,
                  .dh0 = (dinit_read & mine) != 0,
                  .c0 = c0, .dy = dy, .dyg = {dyg[0], dyg[1]}, .dx = dxl, .dh = lstm ? dst.s[1] : dst.s[0], .dc = lstm ? dst.s[0] : NULL, .ar = ar};
        code = backward_of(l)(&c);
        if (code) goto fail;
        if (!state_out(l, dinit, &s, &dst, ar)) goto oom;
        if (i > 0) dy = dxl; /* the layer below's output gradient (packed, sorted) */
    }
    return RECUR_OK;
fail:
    if (code != RECUR_OUT_OF_MEMORY) return code;
oom:
    return rc_kerr(k, RECUR_OUT_OF_MEMORY, "Out of memory in the fused RNN backward kernel");
}
