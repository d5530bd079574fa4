/*
 * test_vmath.c - the vectorised sigmoid, tanh and exp (src/core/vmath.c): every float input of
 * every implementation against libm in double, special values, exact saturation, tails,
 * aliasing and the implementation switch.
 *
 * The sweeps take every float bit pattern (2^32) through the AVX-512 and AVX2 implementations
 * (where the CPU has them). The scalar one, vectorised for SSE at best, would take most of the
 * run time: it gets every pattern outside the closed-form regions below and every 7th inside.
 * Under AddressSanitizer the sweeps take every SWEEP_STRIDE-th pattern (a prime, so all
 * exponents and low mantissa bits are hit) plus every SWEEP_DENSE_STRIDE-th one outside the
 * closed-form regions.
 *
 * Reference: the double-precision libm value rounded to float. Where that rounded value is a
 * known constant (or x), the sweep uses it instead of calling libm for every input (libm tanh
 * alone on 2^32 inputs would take about a minute) and checks the claim against libm on every
 * 61st pattern of those regions:
 *   sigmoid  x >= 18: 1 (1 - e^-18 > 1 - 2^-25)      x <= -104: 0 (e^-104 < 2^-150)
 *            |x| < 2^-25: 1/2 (|x|/4 < 2^-27, below half an ulp of 1/2 on either side)
 *   tanh     |x| >= 10: +-1 (2 e^-20 < 2^-25)        |x| < 2^-13: x (x^3/3 < ulp(x)/2)
 *   exp      x >= 89: inf     x <= -104: 0           |x| < 2^-25: 1
 * In the saturated regions (the first two of each line) results must be bit-exact; elsewhere
 * the relative error |y - ref| / max(|ref|, FLT_MIN) must be <= 1e-6, and where ref is
 * subnormal (or 0) the absolute error <= 4 x 2^-149; NaN must give NaN and infinities must
 * match exactly.
 */
#include "runner.h"

#include "core/vmath.h"

#include <float.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOL 1e-6
#define SUB_TOL 0x1p-21 /* 4 x 2^-149 relative to FLT_MIN, for subnormal references */

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_STRIDE 17u       /* over all 2^32 patterns */
#define SWEEP_DENSE_STRIDE 5u  /* over the patterns of the non-constant interval */
#else
#define SWEEP_STRIDE 1u
#define SWEEP_DENSE_STRIDE 1u
#endif

typedef enum fn_id { F_SIGMOID, F_TANH, F_EXP } fn_id;
static const char *const k_fn_names[] = {"sigmoid", "tanh", "exp"};
static const char *const k_impls[] = {"avx512", "avx2", "scalar"};
/* Implementations that take only every SPARSE_STRIDE-th input where the reference is a
 * closed form (the scalar one: vectorised for SSE only, it would take most of the time). */
static const bool k_sparse[] = {false, false, true};
#define SPARSE_STRIDE 7u
#define NIMPL 3

static void run_fn(fn_id f, float *y, const float *x, size_t n)
{
    if (f == F_SIGMOID) rc_vsigmoid(y, x, n);
    else if (f == F_TANH) rc_vtanh(y, x, n);
    else rc_vexp(y, x, n);
}

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float ref_libm(fn_id f, float x)
{
    double d = x;
    if (f == F_SIGMOID) return (float)(1.0 / (1.0 + exp(-d)));
    if (f == F_TANH) return (float)tanh(d);
    return (float)exp(d);
}

/* Where the rounded reference is a known constant, or x itself (see the header): returns the
 * region (REG_*; 0 where libm is needed) and sets *r and *sat (saturated: must be bit-exact).
 * Each region is an interval of x on one side of 0, so a run of patterns of one sign whose
 * first and last inputs share a region lies inside it. */
enum { REG_LIBM, REG_NAN, REG_IDENTITY, REG_CONST1, REG_CONST2, REG_CONST3 };
static int closed_form(fn_id f, float x, float *r, bool *sat)
{
    float ax = fabsf(x);
    *sat = false;
    if (x != x) return *r = x, REG_NAN;
    switch (f) {
    case F_SIGMOID:
        if (x >= 18.0f) return *sat = true, *r = 1.0f, REG_CONST1;
        if (x <= -104.0f) return *sat = true, *r = 0.0f, REG_CONST2;
        if (ax < 0x1p-25f) return *r = 0.5f, REG_CONST3;
        return REG_LIBM;
    case F_TANH:
        if (ax >= 10.0f) return *sat = true, *r = copysignf(1.0f, x), REG_CONST1;
        if (ax < 0x1p-13f) return *r = x, REG_IDENTITY;
        return REG_LIBM;
    case F_EXP:
        if (x >= 89.0f) return *sat = true, *r = INFINITY, REG_CONST1;
        if (x <= -104.0f) return *sat = true, *r = 0.0f, REG_CONST2;
        if (ax < 0x1p-25f) return *r = 1.0f, REG_CONST3;
        return REG_LIBM;
    }
    return REG_LIBM;
}

/* Non-constant interval of each function, as |x| bounds (used for the sanitizer sweep). */
static void dense_range(fn_id f, float *lo, float *hi)
{
    *lo = f == F_TANH ? 0x1p-13f : 0x1p-25f;
    *hi = f == F_TANH ? 10.0f : 104.0f;
}

typedef struct stats {
    double max_rel;        /* over normal references */
    float max_rel_x;
    double max_rel_sub;    /* over subnormal or zero ones (x 2^23 = units of 2^-149) */
    uint64_t checked, bad_tol, bad_nan, bad_inf, bad_sat;
    bool have_bad;
    float bad_x, bad_y, bad_ref;
    double seconds;        /* in the implementation itself */
} stats;

#define CHUNK 65536 /* inputs per block; a multiple of CBLK */
#define CBLK 16      /* the check loop's fixed inner length (so that -O2 vectorises it) */

typedef struct chunk {
    float *x, *y, *ref;
    uint32_t *sat;     /* 1: the result must equal ref bit for bit */
    size_t n;          /* inputs; the arrays are zero up to the next multiple of CBLK */
} chunk;

/* Check one chunk. The loop is branch-free and works on the bits where it can, so that the
 * compiler vectorises it and the sweep is bound by the functions tested. The relative error is
 * kept as the bits of a non-negative float (ordered like the values), 0 where it is not
 * meaningful (NaN or infinite reference or result: checked separately, exactly). */
static void check_chunk(stats *s, const chunk *c)
{
    const uint32_t tol_bits = to_bits((float)TOL), sub_tol_bits = to_bits((float)SUB_TOL);
    uint32_t max_rel = 0, max_sub = 0, bad_tol = 0, bad_nan = 0, bad_inf = 0, bad_sat = 0;
    for (size_t b = 0; b < c->n; b += CBLK) {
        const float *ref = c->ref + b, *y = c->y + b;
        const uint32_t *sat = c->sat + b;
        for (size_t j = 0; j < CBLK; j++) {
            float r = ref[j], v = y[j];
            uint32_t rb = to_bits(r), vb = to_bits(v);
            uint32_t ra = rb & 0x7fffffffu, va = vb & 0x7fffffffu;
            uint32_t rnan = ra > 0x7f800000u, vnan = va > 0x7f800000u;
            uint32_t special = (ra >= 0x7f800000u) | (va >= 0x7f800000u);
            float ar = fabsf(r);
            float rel = fabsf(v - r) / (ar > FLT_MIN ? ar : FLT_MIN);
            uint32_t relb = to_bits(rel) & (special - 1u);
            uint32_t subnormal = -(uint32_t)(ra < 0x00800000u);
            uint32_t norm = relb & ~subnormal, sub = relb & subnormal;
            max_rel = norm > max_rel ? norm : max_rel;
            max_sub = sub > max_sub ? sub : max_sub;
            bad_tol += relb > ((tol_bits & ~subnormal) | (sub_tol_bits & subnormal));
            bad_nan += rnan ^ vnan;
            bad_inf += special & (rnan | vnan ? 0u : rb != vb);
            bad_sat += sat[j] & (rb != vb);
        }
    }
    s->checked += c->n;
    s->bad_tol += bad_tol;
    s->bad_nan += bad_nan;
    s->bad_inf += bad_inf;
    s->bad_sat += bad_sat;
    if (from_bits(max_sub) > s->max_rel_sub) s->max_rel_sub = from_bits(max_sub);
    bool any_bad = bad_tol | bad_nan | bad_inf | bad_sat;
    if (from_bits(max_rel) > s->max_rel || (any_bad && !s->have_bad)) {
        for (size_t i = 0; i < c->n; i++) {
            float r = c->ref[i], v = c->y[i], ar = fabsf(r);
            bool special = !isfinite(r) || !isfinite(v);
            float rel = special ? 0.0f : fabsf(v - r) / (ar > FLT_MIN ? ar : FLT_MIN);
            if (ar >= FLT_MIN && to_bits(rel) == max_rel && rel > s->max_rel)
                s->max_rel = rel, s->max_rel_x = c->x[i];
            bool bad = rel > (float)(ar < FLT_MIN ? SUB_TOL : TOL) || isnan(r) != isnan(v) ||
                       (special && !isnan(r) && !isnan(v) && to_bits(v) != to_bits(r)) ||
                       (c->sat[i] && to_bits(v) != to_bits(r));
            if (bad && !s->have_bad) {
                s->have_bad = true;
                s->bad_x = c->x[i], s->bad_y = v, s->bad_ref = r;
            }
        }
    }
}

#define NPROC 2

/* A sweep over the patterns begin, begin + stride, ... < end, in blocks of CHUNK inputs that
 * NPROC processes take in turn (processes, not threads: the implementation switch is
 * process-wide, and each process goes through the implementations on its own). */
typedef struct sweep_part {
    fn_id f;
    uint64_t begin, end, stride;
    int part;
    stats st[NIMPL];
    uint64_t closed_checked, closed_bad;
    float closed_bad_x;
} sweep_part;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The closed-form reference against libm (every 61st input of the closed regions). */
static void check_closed(sweep_part *w, float x, float r)
{
    float l = ref_libm(w->f, x);
    w->closed_checked++;
    if (isnan(r) ? !isnan(l) : to_bits(l) != to_bits(r)) w->closed_bad++, w->closed_bad_x = x;
}

/* A block that lies in one closed region: its reference is `r` (or x itself) throughout, and
 * the ref and sat arrays are filled only when a result differs from it. */
typedef struct closed_block {
    int reg;          /* REG_LIBM: not such a block */
    float r;
    bool sat;
} closed_block;

/* Inputs (and, unless the block is closed, references) of block b: inputs b*CHUNK ... of the
 * sweep, `count` in all. The arrays are zero-padded to a multiple of CBLK. */
static closed_block fill_block(sweep_part *w, chunk *c, uint64_t b, uint64_t count)
{
    uint64_t i0 = b * CHUNK, i1 = (b + 1) * CHUNK < count ? (b + 1) * CHUNK : count;
    c->n = (size_t)(i1 - i0);
    size_t padded = (c->n + CBLK - 1) / CBLK * CBLK;
    uint32_t p0 = (uint32_t)(w->begin + i0 * w->stride), stride = (uint32_t)w->stride;
    for (size_t j0 = 0; j0 < padded; j0 += CBLK) /* fixed inner length: vectorised */
        for (size_t j = j0; j < j0 + CBLK; j++) c->x[j] = from_bits(p0 + (uint32_t)j * stride);
    for (size_t j = c->n; j < padded; j++) c->x[j] = c->y[j] = c->ref[j] = 0, c->sat[j] = 0;
    closed_block cb;
    float xl = c->x[c->n - 1], rl;
    bool sl;
    cb.reg = closed_form(w->f, c->x[0], &cb.r, &cb.sat);
    if (cb.reg != REG_LIBM && cb.reg == closed_form(w->f, xl, &rl, &sl) &&
        signbit(c->x[0]) == signbit(xl)) {
        bool ident = cb.reg == REG_NAN || cb.reg == REG_IDENTITY;
        for (size_t j = (61 - i0 % 61) % 61; j < c->n; j += 61)
            check_closed(w, c->x[j], ident ? c->x[j] : cb.r);
        return cb;
    }
    cb.reg = REG_LIBM;
    for (size_t j = 0; j < c->n; j++) {
        float x = c->x[j], r;
        bool sat;
        if (closed_form(w->f, x, &r, &sat)) {
            if ((i0 + j) % 61 == 0) check_closed(w, x, r);
        } else {
            r = ref_libm(w->f, x);
        }
        c->ref[j] = r, c->sat[j] = sat;
    }
    return cb;
}

/* Do c's results equal the closed block's reference bit for bit? */
static bool closed_match(const chunk *c, const closed_block *cb)
{
    if (cb->reg == REG_NAN || cb->reg == REG_IDENTITY)
        return !memcmp(c->y, c->x, c->n * sizeof *c->y);
    uint32_t rb = to_bits(cb->r), diff = 0;
    size_t whole = c->n / CBLK * CBLK;
    for (size_t j0 = 0; j0 < whole; j0 += CBLK)
        for (size_t j = j0; j < j0 + CBLK; j++) diff |= to_bits(c->y[j]) ^ rb;
    for (size_t j = whole; j < c->n; j++) diff |= to_bits(c->y[j]) ^ rb;
    return !diff;
}

/* The ref and sat arrays of a chunk of a closed block. */
static void closed_fill(chunk *c, const closed_block *cb)
{
    bool ident = cb->reg == REG_NAN || cb->reg == REG_IDENTITY;
    for (size_t j = 0; j < c->n; j++) c->ref[j] = ident ? c->x[j] : cb->r, c->sat[j] = cb->sat;
}

static chunk chunk_new(size_t cap)
{
    chunk c = {malloc(cap * sizeof(float)), malloc(cap * sizeof(float)),
               malloc(cap * sizeof(float)), malloc(cap * sizeof(uint32_t)), 0};
    if (!c.x || !c.y || !c.ref || !c.sat) abort();
    return c;
}

static void chunk_free(chunk *c) { free(c->x), free(c->y), free(c->ref), free(c->sat); }

/* Every SPARSE_STRIDE-th input of c (by index in the sweep, from i0) into s, zero-padded;
 * c is a closed block (references are filled later if needed). */
static void gather_sparse(chunk *s, const chunk *c, uint64_t i0)
{
    s->n = 0;
    size_t first = (SPARSE_STRIDE - i0 % SPARSE_STRIDE) % SPARSE_STRIDE;
    for (size_t j = first; j < c->n; j += SPARSE_STRIDE) s->x[s->n++] = c->x[j];
    for (size_t j = s->n; j % CBLK; j++) s->x[j] = s->y[j] = s->ref[j] = 0, s->sat[j] = 0;
}

static void sweep_part_run(sweep_part *w)
{
    chunk full = chunk_new(CHUNK), sparse = chunk_new(CHUNK / SPARSE_STRIDE + 2 * CBLK);
    uint64_t count = (w->end - w->begin + w->stride - 1) / w->stride;
    uint64_t blocks = (count + CHUNK - 1) / CHUNK;
    for (uint64_t b = (uint64_t)w->part; b < blocks; b += NPROC) {
        closed_block cb = fill_block(w, &full, b, count);
        bool closed = cb.reg != REG_LIBM;
        if (closed) gather_sparse(&sparse, &full, b * CHUNK);
        for (int k = 0; k < NIMPL; k++) {
            rc_vmath_force(k_impls[k]);
            if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
            chunk *c = closed && k_sparse[k] ? &sparse : &full;
            double t0 = now();
            run_fn(w->f, c->y, c->x, c->n);
            w->st[k].seconds += now() - t0;
            /* in a closed region the results normally equal the reference: compare the bits
             * first (the full check gives the same verdict, slower) */
            if (closed && closed_match(c, &cb)) {
                w->st[k].checked += c->n;
                continue;
            }
            if (closed) closed_fill(c, &cb);
            check_chunk(&w->st[k], c);
        }
    }
    chunk_free(&full);
    chunk_free(&sparse);
}

static void merge(stats *a, const stats *b)
{
    if (b->max_rel > a->max_rel) a->max_rel = b->max_rel, a->max_rel_x = b->max_rel_x;
    if (b->max_rel_sub > a->max_rel_sub) a->max_rel_sub = b->max_rel_sub;
    a->checked += b->checked;
    a->bad_tol += b->bad_tol, a->bad_nan += b->bad_nan, a->bad_inf += b->bad_inf;
    a->bad_sat += b->bad_sat;
    if (b->have_bad && !a->have_bad)
        a->have_bad = true, a->bad_x = b->bad_x, a->bad_y = b->bad_y, a->bad_ref = b->bad_ref;
    a->seconds += b->seconds;
}

/* Sweep patterns [begin, end) with `stride` in NPROC processes (this one and children that
 * send their part back through a pipe), adding to st[] and the closed-form counters. */
static void sweep_range(fn_id f, uint64_t begin, uint64_t end, uint64_t stride, stats st[NIMPL],
                        uint64_t closed[2], float *closed_bad_x)
{
    sweep_part parts[NPROC];
    pid_t pids[NPROC];
    int fds[NPROC][2];
    for (int t = 0; t < NPROC; t++) {
        memset(&parts[t], 0, sizeof parts[t]);
        parts[t].f = f, parts[t].begin = begin, parts[t].end = end, parts[t].stride = stride;
        parts[t].part = t;
    }
    fflush(stdout);
    for (int t = 1; t < NPROC; t++) {
        ASSERT_EQ_INT(pipe(fds[t]), 0);
        pids[t] = fork();
        ASSERT_TRUE(pids[t] >= 0);
        if (pids[t] == 0) {
            close(fds[t][0]);
            sweep_part_run(&parts[t]);
            ssize_t wr = write(fds[t][1], &parts[t], sizeof parts[t]);
            _exit(wr == (ssize_t)sizeof parts[t] ? 0 : 1);
        }
        close(fds[t][1]);
    }
    sweep_part_run(&parts[0]);
    for (int t = 1; t < NPROC; t++) {
        size_t got = 0;
        while (got < sizeof parts[t]) {
            ssize_t r = read(fds[t][0], (char *)&parts[t] + got, sizeof parts[t] - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        close(fds[t][0]);
        int status = 0;
        waitpid(pids[t], &status, 0);
        if (got != sizeof parts[t] || !WIFEXITED(status) || WEXITSTATUS(status))
            rt_fail(__FILE__, __LINE__, "sweep process %d failed (status %d)", t, status);
    }
    for (int t = 0; t < NPROC; t++) {
        for (int k = 0; k < NIMPL; k++) merge(&st[k], &parts[t].st[k]);
        closed[0] += parts[t].closed_checked;
        closed[1] += parts[t].closed_bad;
        if (parts[t].closed_bad) *closed_bad_x = parts[t].closed_bad_x;
    }
}

static void sweep(fn_id f)
{
    stats st[NIMPL];
    memset(st, 0, sizeof st);
    uint64_t closed[2] = {0, 0};
    float closed_bad_x = 0;
    double t0 = now();
    sweep_range(f, 0, (uint64_t)1 << 32, SWEEP_STRIDE, st, closed, &closed_bad_x);
    if (SWEEP_DENSE_STRIDE != SWEEP_STRIDE) {
        float lo, hi;
        dense_range(f, &lo, &hi);
        sweep_range(f, to_bits(lo), to_bits(hi) + 1, SWEEP_DENSE_STRIDE, st, closed, &closed_bad_x);
        sweep_range(f, to_bits(-lo), to_bits(-hi) + 1, SWEEP_DENSE_STRIDE, st, closed,
                    &closed_bad_x);
    }
    rc_vmath_force(NULL);
    printf("    %s: %.1f s, closed-form reference checked against libm at %llu inputs\n",
           k_fn_names[f], now() - t0, (unsigned long long)closed[0]);
    if (closed[1])
        rt_fail(__FILE__, __LINE__, "%s: closed-form reference differs from libm at x=%a (%llu)",
                k_fn_names[f], closed_bad_x, (unsigned long long)closed[1]);
    for (int k = 0; k < NIMPL; k++) {
        const stats *s = &st[k];
        if (!s->checked) {
            printf("    %s %-6s: not available on this CPU\n", k_fn_names[f], k_impls[k]);
            continue;
        }
        printf("    %s %-6s: %llu inputs, max rel err %.3g at x=%.9g (%a); subnormal results: "
               "max err %.2g x 2^-149; %.2f ns/element in the sweep\n",
               k_fn_names[f], k_impls[k], (unsigned long long)s->checked, s->max_rel,
               s->max_rel_x, s->max_rel_x, s->max_rel_sub * 0x1p23,
               s->seconds * 1e9 / s->checked);
        if (s->have_bad)
            rt_fail(__FILE__, __LINE__,
                    "%s %s: %llu over tolerance, %llu NaN, %llu inf, %llu saturation mismatches; "
                    "first x=%.9g (%a): got %.9g (%a), want %.9g (%a)",
                    k_fn_names[f], k_impls[k], (unsigned long long)s->bad_tol,
                    (unsigned long long)s->bad_nan, (unsigned long long)s->bad_inf,
                    (unsigned long long)s->bad_sat, s->bad_x, s->bad_x, s->bad_y, s->bad_y,
                    s->bad_ref, s->bad_ref);
        ASSERT_TRUE(s->max_rel <= TOL && s->max_rel_sub <= SUB_TOL);
    }
}

TEST(sweep_sigmoid) { sweep(F_SIGMOID); }
TEST(sweep_tanh) { sweep(F_TANH); }
TEST(sweep_exp) { sweep(F_EXP); }

/* ---------------------------------------------------------------- special values */
static float one(fn_id f, float x)
{
    float y;
    run_fn(f, &y, &x, 1);
    return y;
}

#define ASSERT_BITS(got, want)                                                                 \
    do {                                                                                       \
        float g_ = (got), w_ = (want);                                                         \
        if (to_bits(g_) != to_bits(w_))                                                        \
            rt_fail(__FILE__, __LINE__, "%s [%s]: got %a, want %a", #got, rc_vmath_impl(), g_, \
                    w_);                                                                       \
    } while (0)

TEST(special_values)
{
    for (int k = 0; k < NIMPL; k++) {
        rc_vmath_force(k_impls[k]);
        if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
        ASSERT_BITS(one(F_SIGMOID, 0.0f), 0.5f);
        ASSERT_BITS(one(F_SIGMOID, -0.0f), 0.5f);
        ASSERT_BITS(one(F_SIGMOID, INFINITY), 1.0f);
        ASSERT_BITS(one(F_SIGMOID, -INFINITY), 0.0f);
        ASSERT_BITS(one(F_SIGMOID, FLT_MAX), 1.0f);
        ASSERT_BITS(one(F_SIGMOID, -FLT_MAX), 0.0f);
        ASSERT_BITS(one(F_SIGMOID, 20.0f), 1.0f);
        ASSERT_TRUE(isnan(one(F_SIGMOID, NAN)) && isnan(one(F_SIGMOID, -NAN)));
        ASSERT_NEAR(one(F_SIGMOID, -80.0f) / 1.8048513878454153e-35, 1.0, TOL);
        float sub = one(F_SIGMOID, -100.0f); /* 3.72e-44: subnormal */
        ASSERT_TRUE(sub > 0 && sub < FLT_MIN);
        ASSERT_NEAR(sub, 3.7200759760208361e-44, 0x1p-149);

        ASSERT_BITS(one(F_TANH, 0.0f), 0.0f);
        ASSERT_BITS(one(F_TANH, -0.0f), -0.0f);
        ASSERT_BITS(one(F_TANH, 0x1p-149f), 0x1p-149f);
        ASSERT_BITS(one(F_TANH, -0x1p-140f), -0x1p-140f);
        ASSERT_BITS(one(F_TANH, 1e-20f), 1e-20f);
        ASSERT_BITS(one(F_TANH, INFINITY), 1.0f);
        ASSERT_BITS(one(F_TANH, -INFINITY), -1.0f);
        ASSERT_BITS(one(F_TANH, 12.0f), 1.0f);
        ASSERT_BITS(one(F_TANH, -FLT_MAX), -1.0f);
        ASSERT_TRUE(isnan(one(F_TANH, NAN)) && isnan(one(F_TANH, -NAN)));

        ASSERT_BITS(one(F_EXP, 0.0f), 1.0f);
        ASSERT_BITS(one(F_EXP, -0.0f), 1.0f);
        ASSERT_BITS(one(F_EXP, INFINITY), INFINITY);
        ASSERT_BITS(one(F_EXP, -INFINITY), 0.0f);
        ASSERT_BITS(one(F_EXP, 89.0f), INFINITY);
        ASSERT_BITS(one(F_EXP, 0x1.62e430p+6f), INFINITY); /* 88.7228394 > ln(FLT_MAX) */
        ASSERT_TRUE(one(F_EXP, 0x1.62e42ep+6f) < INFINITY);
        ASSERT_BITS(one(F_EXP, -104.0f), 0.0f);
        /* 0.5000003 x 2^-149: just above the midpoint to 0, so it needs one rounding */
        ASSERT_BITS(one(F_EXP, -0x1.9fe368p6f), 0x1p-149f);
        ASSERT_BITS(one(F_EXP, -103.0f), 0x1p-149f); /* 1.32 x 2^-149 */
        ASSERT_BITS(one(F_EXP, 1.0f), (float)M_E);
        ASSERT_TRUE(isnan(one(F_EXP, NAN)) && isnan(one(F_EXP, -NAN)));
    }
    rc_vmath_force(NULL);
}

/* ---------------------------------------------------------------- tails and aliasing */
/* Inputs across the interesting range plus a few specials. */
static void fill_inputs(float *x, size_t n, uint32_t seed)
{
    static const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -100.0f, 95.0f};
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) * 0x1p-24 * 60.0 - 30.0);
        if (i % 11 == 5) x[i] = specials[(seed >> 3) % (sizeof specials / sizeof specials[0])];
    }
}

static bool same_or_close(float a, float b, double tol)
{
    if (to_bits(a) == to_bits(b) || (isnan(a) && isnan(b))) return true;
    double ref = fabs((double)b) > FLT_MIN ? fabs((double)b) : FLT_MIN;
    return fabs((double)a - b) / ref <= tol;
}

TEST(tails_and_aliasing)
{
    enum { FULL = 64, GUARD = 32 };
    float xs[FULL], ref_full[FULL], scalar[FULL];
    fill_inputs(xs, FULL, 12345);
    for (int f = 0; f < 3; f++) {
        rc_vmath_force("scalar");
        run_fn((fn_id)f, scalar, xs, FULL);
        for (int k = 0; k < NIMPL; k++) {
            rc_vmath_force(k_impls[k]);
            if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
            run_fn((fn_id)f, ref_full, xs, FULL);
            for (size_t n = 0; n <= 33; n++) {
                for (size_t off = 0; off < 2; off++) { /* aligned and misaligned starts */
                    /* exact-size heap copies, so the sanitizer sees any access past n */
                    float *x = malloc((n + off) * sizeof *x + 1);
                    float *y = malloc((n + off + GUARD) * sizeof *y);
                    ASSERT_TRUE(x && y);
                    memcpy(x + off, xs, n * sizeof *x);
                    for (size_t i = 0; i < n + off + GUARD; i++) y[i] = -7.0f;
                    run_fn((fn_id)f, y + off, x + off, n);
                    for (size_t i = 0; i < n; i++) {
                        if (to_bits(y[off + i]) != to_bits(ref_full[i]) &&
                            !(isnan(y[off + i]) && isnan(ref_full[i])))
                            rt_fail(__FILE__, __LINE__, "%s %s n=%zu: y[%zu]=%a, as part of 64: %a",
                                    k_fn_names[f], k_impls[k], n, i, y[off + i], ref_full[i]);
                        if (!same_or_close(y[off + i], scalar[i], 2 * TOL))
                            rt_fail(__FILE__, __LINE__, "%s %s n=%zu: y[%zu]=%a, scalar %a",
                                    k_fn_names[f], k_impls[k], n, i, y[off + i], scalar[i]);
                    }
                    for (size_t i = 0; i < off; i++) ASSERT_BITS(y[i], -7.0f);
                    for (size_t i = off + n; i < n + off + GUARD; i++) ASSERT_BITS(y[i], -7.0f);
                    /* in place */
                    run_fn((fn_id)f, x + off, x + off, n);
                    for (size_t i = 0; i < n; i++) {
                        if (to_bits(x[off + i]) != to_bits(y[off + i]) &&
                            !(isnan(x[off + i]) && isnan(y[off + i])))
                            rt_fail(__FILE__, __LINE__, "%s %s n=%zu in place: [%zu]=%a, want %a",
                                    k_fn_names[f], k_impls[k], n, i, x[off + i], y[off + i]);
                    }
                    free(x);
                    free(y);
                }
            }
        }
    }
    rc_vmath_force(NULL);
}

/* ---------------------------------------------------------------- the fused LSTM cell */
TEST(lstm_cell_matches_the_array_functions)
{
    /* rc_vlstm_cell against the same steps done with the array functions of the same
     * implementation, bit for bit: every tail length, gates and biases strided, nothing written
     * past n. */
    enum { MAXN = 40, GUARD = 8 };
    float pre[4 * (MAXN + GUARD)], bias[4 * (MAXN + 1)], c0[MAXN];
    fill_inputs(pre, 4 * (MAXN + GUARD), 777);
    fill_inputs(bias, 4 * (MAXN + 1), 778);
    fill_inputs(c0, MAXN, 779);
    for (size_t i = 0; i < sizeof pre / sizeof *pre; i++) pre[i] = fmaxf(-30.0f, fminf(30.0f, pre[i])); /* finite, varied */
    for (size_t i = 0; i < sizeof bias / sizeof *bias; i++) bias[i] = fmaxf(-2.0f, fminf(2.0f, bias[i]));
    for (size_t i = 0; i < MAXN; i++) c0[i] = fmaxf(-5.0f, fminf(5.0f, c0[i]));
    const float fb = 1.0f;
    for (int k = 0; k < NIMPL; k++) {
        rc_vmath_force(k_impls[k]);
        if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
        for (size_t n = 0; n <= MAXN; n++) {
            size_t gs = n + GUARD, bs = n + 1;
            float g[4 * (MAXN + GUARD)], want[4 * (MAXN + GUARD)], c[MAXN + GUARD], craw[MAXN + GUARD], m[MAXN + GUARD];
            float wc[MAXN], wm[MAXN], t[MAXN];
            for (size_t q = 0; q < 4; q++)
                for (size_t u = 0; u < gs; u++) g[q * gs + u] = want[q * gs + u] = pre[q * (MAXN + GUARD) + u];
            for (size_t u = 0; u < MAXN + GUARD; u++) c[u] = craw[u] = m[u] = -7.0f;
            memcpy(c, c0, n * sizeof *c);
            /* the steps of the unfused cell */
            for (size_t u = 0; u < n; u++) {
                want[u] += bias[u];
                want[gs + u] += bias[bs + u];
                want[2 * gs + u] = (want[2 * gs + u] + bias[2 * bs + u]) + fb;
                want[3 * gs + u] += bias[3 * bs + u];
            }
            rc_vsigmoid(want, want, n);
            rc_vtanh(want + gs, want + gs, n);
            rc_vsigmoid(want + 2 * gs, want + 2 * gs, n);
            rc_vsigmoid(want + 3 * gs, want + 3 * gs, n);
            for (size_t u = 0; u < n; u++) wc[u] = c0[u] * want[2 * gs + u] + want[u] * want[gs + u];
            rc_vtanh(t, wc, n);
            for (size_t u = 0; u < n; u++) wm[u] = t[u] * want[3 * gs + u];
            rc_vlstm_cell(n, g, gs, bias, bs, fb, c, craw, m);
            for (size_t q = 0; q < 4; q++)
                for (size_t u = 0; u < gs; u++)
                    if (to_bits(g[q * gs + u]) != to_bits(want[q * gs + u]))
                        rt_fail(__FILE__, __LINE__, "%s n=%zu gate %zu unit %zu: %a, want %a", k_impls[k], n, q, u, g[q * gs + u],
                                want[q * gs + u]);
            for (size_t u = 0; u < MAXN + GUARD; u++) {
                float ec = u < n ? wc[u] : -7.0f, em = u < n ? wm[u] : -7.0f;
                if (to_bits(c[u]) != to_bits(ec) || to_bits(craw[u]) != to_bits(ec) || to_bits(m[u]) != to_bits(em))
                    rt_fail(__FILE__, __LINE__, "%s n=%zu unit %zu: c %a craw %a m %a, want c %a m %a", k_impls[k], n, u, c[u],
                            craw[u], m[u], ec, em);
            }
        }
    }
    rc_vmath_force(NULL);
}

TEST(lstm_cell_gradient_matches_the_unfused_steps)
{
    /* rc_vlstm_cell_grad against the steps written out, bit for bit, every tail length, nothing
     * written past n: tanh(c) recovered from the output m = tanh(c) o as m / o (0 where o is 0,
     * one lane of every eight), and within 2 ulp of the tanh itself. */
    enum { MAXN = 40, GUARD = 8, GS = MAXN + GUARD };
    float in[8 * GS];
    fill_inputs(in, 8 * GS, 901);
    for (size_t i = 0; i < 8 * GS; i++) in[i] = fmaxf(-4.0f, fminf(4.0f, in[i]));
    float gates[4 * GS];
    for (size_t i = 0; i < 4 * GS; i++) gates[i] = 1.0f / (1.0f + expf(-in[i])); /* activations in (0, 1) */
    for (size_t u = 0; u < GS; u++) gates[GS + u] = tanhf(in[GS + u]);        /* j in (-1, 1) */
    for (size_t u = 5; u < GS; u += 8) gates[3 * GS + u] = 0;                  /* o = 0 */
    const float *craw = in + 4 * GS, *cprev = in + 5 * GS, *dh = in + 6 * GS, *dy = in + 7 * GS;
    float m[GS], tc[GS];
    for (size_t u = 0; u < GS; u++) tc[u] = tanhf(craw[u]), m[u] = tc[u] * gates[3 * GS + u];
    for (int k = 0; k < NIMPL; k++) {
        rc_vmath_force(k_impls[k]);
        if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
        for (size_t n = 0; n <= MAXN; n++) {
            float dc[GS], wdc[GS], dg[4 * GS], wdg[4 * GS], t[MAXN + 1];
            for (size_t i = 0; i < GS; i++) dc[i] = wdc[i] = 0.25f * in[(i * 7) % (8 * GS)];
            for (size_t i = 0; i < 4 * GS; i++) dg[i] = wdg[i] = -7.0f;
            for (size_t u = 0; u < n; u++) {
                float o = gates[3 * GS + u];
                t[u] = o != 0 ? m[u] / o : 0;
                if (o != 0 && fabsf(t[u] - tc[u]) > 2 * 0x1p-24f * fabsf(tc[u]) + FLT_MIN)
                    rt_fail(__FILE__, __LINE__, "m / o = %a for tanh(c) %a (o %a)", t[u], tc[u], o);
            }
            for (size_t u = 0; u < n; u++) {
                float i = gates[u], j = gates[GS + u], f = gates[2 * GS + u], o = gates[3 * GS + u], dm = dh[u] + dy[u];
                float dpo = dm * t[u] * o * (1 - o);
                float dcr = wdc[u] + dm * o * (1 - t[u] * t[u]);
                float di = dcr * j * i * (1 - i), dj = dcr * i * (1 - j * j), df = dcr * cprev[u] * f * (1 - f);
                wdc[u] = dcr * f;
                wdg[u] = di, wdg[GS + u] = dj, wdg[2 * GS + u] = df, wdg[3 * GS + u] = dpo;
            }
            rc_vlstm_cell_grad(n, gates, GS, m, cprev, dh, dy, dc, dg);
            for (size_t i = 0; i < GS; i++)
                if (to_bits(dc[i]) != to_bits(wdc[i]))
                    rt_fail(__FILE__, __LINE__, "%s n=%zu dc[%zu] = %a, want %a", k_impls[k], n, i, dc[i], wdc[i]);
            for (size_t i = 0; i < 4 * GS; i++)
                if (to_bits(dg[i]) != to_bits(wdg[i]))
                    rt_fail(__FILE__, __LINE__, "%s n=%zu [%zu]: dg %a, want %a", k_impls[k], n, i, dg[i], wdg[i]);
        }
    }
    rc_vmath_force(NULL);
}

TEST(lstm_cell_rows_match_the_one_row_passes)
{
    /* rc_vlstm_cell_rows and rc_vlstm_cell_grad_rows against the one-row functions row by row,
     * bit for bit, in every implementation: widths below, at and across the vector length (the
     * AVX-512 passes run across row ends), gate rows with padding between them, nothing written
     * outside the rows. */
    const size_t ns[] = {1, 3, 15, 16, 17, 31, 32, 33, 50}, rowss[] = {1, 2, 3, 7};
    enum { MAXR = 7, MAXN = 50, PAD = 5, GST = 4 * MAXN + PAD, GUARD = 16 };
    static float g0[MAXR * GST + GUARD], g[MAXR * GST + GUARD], gw[MAXR * GST + GUARD], st0[8][MAXR * MAXN + GUARD],
        st[8][MAXR * MAXN + GUARD], sw[8][MAXR * MAXN + GUARD], bias[4 * MAXN];
    fill_inputs(g0, MAXR * GST + GUARD, 31);
    for (size_t i = 0; i < MAXR * GST + GUARD; i++) g0[i] = fmaxf(-8.0f, fminf(8.0f, g0[i]));
    for (int a = 0; a < 8; a++) {
        fill_inputs(st0[a], MAXR * MAXN + GUARD, 40 + (unsigned)a);
        for (size_t i = 0; i < MAXR * MAXN + GUARD; i++) st0[a][i] = fmaxf(-3.0f, fminf(3.0f, st0[a][i]));
    }
    fill_inputs(bias, 4 * MAXN, 50);
    for (size_t i = 0; i < 4 * MAXN; i++) bias[i] = fmaxf(-1.0f, fminf(1.0f, bias[i]));
    for (int k = 0; k < NIMPL; k++) {
        rc_vmath_force(k_impls[k]);
        if (strcmp(rc_vmath_impl(), k_impls[k])) continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t ri = 0; ri < sizeof rowss / sizeof *rowss; ri++) {
                size_t n = ns[ni], rows = rowss[ri], gstride = 4 * n + PAD;
                for (int grad = 0; grad < 2; grad++) {
                    memcpy(g, g0, sizeof g);
                    memcpy(gw, g0, sizeof g);
                    memcpy(st, st0, sizeof st);
                    memcpy(sw, st0, sizeof st);
                    if (!grad) {
                        rc_vlstm_cell_rows(rows, n, g, gstride, n, bias, n, 1.0f, st[0], st[1], st[2]);
                        for (size_t r = 0; r < rows; r++)
                            rc_vlstm_cell(n, gw + r * gstride, n, bias, n, 1.0f, sw[0] + r * n, sw[1] + r * n, sw[2] + r * n);
                    } else {
                        /* st: craw, cprev, dh, dy, dc; the gates' gradients into g's rows */
                        rc_vlstm_cell_grad_rows(rows, n, g0, gstride, n, st[0], st[1], st[2], st[3], st[4], g);
                        for (size_t r = 0; r < rows; r++)
                            rc_vlstm_cell_grad(n, g0 + r * gstride, n, sw[0] + r * n, sw[1] + r * n, sw[2] + r * n, sw[3] + r * n,
                                               sw[4] + r * n, gw + r * gstride);
                    }
                    for (size_t i = 0; i < MAXR * GST + GUARD; i++)
                        if (to_bits(g[i]) != to_bits(gw[i]))
                            rt_fail(__FILE__, __LINE__, "%s %s rows=%zu n=%zu: gates[%zu] %a, row by row %a", k_impls[k],
                                    grad ? "gradient" : "cell", rows, n, i, g[i], gw[i]);
                    for (int a = 0; a < 8; a++)
                        for (size_t i = 0; i < MAXR * MAXN + GUARD; i++)
                            if (to_bits(st[a][i]) != to_bits(sw[a][i]))
                                rt_fail(__FILE__, __LINE__, "%s %s rows=%zu n=%zu: array %d [%zu] %a, row by row %a", k_impls[k],
                                        grad ? "gradient" : "cell", rows, n, a, i, st[a][i], sw[a][i]);
                }
            }
    }
    rc_vmath_force(NULL);
}

/* ---------------------------------------------------------------- the switch */
static void *impl_name_thread(void *arg)
{
    *(const char **)arg = rc_vmath_impl();
    return NULL;
}

TEST(impl_choice)
{
    rc_vmath_force(NULL);
#if defined(__x86_64__) && defined(__GNUC__)
    const char *best = __builtin_cpu_supports("avx512f")                                  ? "avx512"
                       : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "avx2"
                                                                                         : "scalar";
#else
    const char *best = "scalar";
#endif
    /* first use from several threads at once */
    pthread_t th[4];
    const char *names[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ_INT(pthread_create(&th[i], NULL, impl_name_thread, &names[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ_STR(names[i], best);
    }
    ASSERT_EQ_STR(rc_vmath_impl(), best);
    rc_vmath_force("scalar");
    ASSERT_EQ_STR(rc_vmath_impl(), "scalar");
    rc_vmath_force("no-such-impl");
    ASSERT_EQ_STR(rc_vmath_impl(), best);
    rc_vmath_force("scalar");
    rc_vmath_force(NULL);
    ASSERT_EQ_STR(rc_vmath_impl(), best);
    printf("    automatic choice: %s\n", best);
}

RUN_TESTS(T(impl_choice), T(special_values), T(tails_and_aliasing), T(lstm_cell_matches_the_array_functions), T(lstm_cell_gradient_matches_the_unfused_steps), T(lstm_cell_rows_match_the_one_row_passes),
          T(sweep_sigmoid),
          T(sweep_tanh), T(sweep_exp))
