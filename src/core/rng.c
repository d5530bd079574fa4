/*
 * rng.c - Philox4x32-10 counter-based random numbers, set up from a (seed, seed2) pair the way
 * TensorFlow's PhiloxRandom is, so that uniform draws match TensorFlow's for the same seeds;
 * plus TensorFlow's graph-seed/op-seed rule (random_seed.get_seed).
 */
#include "recur_impl.h"

#include <math.h>
#include <stdatomic.h>
#include <time.h>

#define PHILOX_W32A 0x9E3779B9u
#define PHILOX_W32B 0xBB67AE85u
#define PHILOX_M4A 0xD2511F53u
#define PHILOX_M4B 0xCD9E8D57u

void rc_philox_init(rc_philox *p, uint64_t seed, uint64_t seed2)
{
    memset(p, 0, sizeof *p);
    p->key[0] = (uint32_t)seed;
    p->key[1] = (uint32_t)(seed >> 32);
    p->counter[2] = (uint32_t)seed2;
    p->counter[3] = (uint32_t)(seed2 >> 32);
}

/* One 128-bit block: ten rounds over the counter, then advance the counter. */
static void philox_block(rc_philox *p)
{
    uint32_t c[4] = {p->counter[0], p->counter[1], p->counter[2], p->counter[3]};
    uint32_t k0 = p->key[0], k1 = p->key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t pa = (uint64_t)PHILOX_M4A * c[0];
        uint64_t pb = (uint64_t)PHILOX_M4B * c[2];
        uint32_t hi0 = (uint32_t)(pa >> 32), lo0 = (uint32_t)pa;
        uint32_t hi1 = (uint32_t)(pb >> 32), lo1 = (uint32_t)pb;
        c[0] = hi1 ^ c[1] ^ k0;
        c[1] = lo1;
        c[2] = hi0 ^ c[3] ^ k1;
        c[3] = lo0;
        k0 += PHILOX_W32A;
        k1 += PHILOX_W32B;
    }
    memcpy(p->buf, c, sizeof c);
    p->avail = 4;
    if (++p->counter[0] == 0 && ++p->counter[1] == 0 && ++p->counter[2] == 0) ++p->counter[3];
}

void rc_philox_skip(rc_philox *p, uint64_t blocks)
{
    uint64_t lo = ((uint64_t)p->counter[1] << 32 | p->counter[0]), nlo = lo + blocks;
    p->counter[0] = (uint32_t)nlo;
    p->counter[1] = (uint32_t)(nlo >> 32);
    if (nlo < lo && ++p->counter[2] == 0) ++p->counter[3];
    p->avail = 0;
}

void rc_philox_advance(rc_philox *p, uint64_t draws)
{
    while (draws && p->avail) {
        p->avail--;
        draws--;
    }
    if (!draws) return;
    rc_philox_skip(p, draws / 4);
    for (uint64_t i = 0; i < draws % 4; i++) (void)rc_philox_next(p);
}

/* Box-Muller on two raw draws (TensorFlow's BoxMullerFloat). */
static void box_muller(uint32_t x0, uint32_t x1, float *f0, float *f1)
{
    uint32_t b0 = (x0 & 0x7fffffu) | 0x3f800000u, b1 = (x1 & 0x7fffffu) | 0x3f800000u;
    float u1, u2;
    memcpy(&u1, &b0, sizeof u1);
    memcpy(&u2, &b1, sizeof u2);
    u1 -= 1.0f;
    u2 -= 1.0f;
    if (u1 < 1.0e-7f) u1 = 1.0e-7f;
    float v = (float)(2.0f * M_PI * u2); /* double product, as TensorFlow's */
    float r = sqrtf(-2.0f * logf(u1));
    *f0 = sinf(v) * r;
    *f1 = cosf(v) * r;
}

void rc_philox_truncated_normal(uint64_t seed, uint64_t seed2, float *out, int64_t n)
{
    /* Groups of 4 outputs; group g draws from a copy of the generator skipped by 256*g blocks,
     * keeping samples with |x| < 2 (TensorFlow's TruncatedNormalDistribution fill). */
    for (int64_t g = 0; g * 4 < n; g++) {
        rc_philox p;
        rc_philox_init(&p, seed, seed2);
        rc_philox_skip(&p, (uint64_t)g * 256);
        int64_t got = 0, want = RC_MIN(4, n - g * 4);
        while (got < want) {
            uint32_t x0 = rc_philox_next(&p), x1 = rc_philox_next(&p);
            float f[2];
            box_muller(x0, x1, &f[0], &f[1]);
            for (int i = 0; i < 2 && got < want; i++)
                if (fabsf(f[i]) < 2.0f) out[g * 4 + got++] = f[i];
        }
    }
}

uint32_t rc_philox_next(rc_philox *p)
{
    if (!p->avail) philox_block(p);
    return p->buf[4 - p->avail--];
}

float rc_philox_uniform(rc_philox *p)
{
    uint32_t bits = (rc_philox_next(p) & 0x7fffffu) | 0x3f800000u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f - 1.0f;
}

static inline float bits_to_uniform(uint32_t x)
{
    uint32_t bits = (x & 0x7fffffu) | 0x3f800000u;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f - 1.0f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RNG_AVX512 __attribute__((target("avx512f")))

/* Sixteen 32 x 32 -> 64-bit products: the low and high halves. */
static inline RNG_AVX512 void mul_wide(__m512i a, __m512i m, __m512i *lo, __m512i *hi)
{
    __m512i even = _mm512_mul_epu32(a, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

/* Sixteen consecutive blocks from counter (c0 + lane, c1, c2, c3), no carry out of c0 within
 * them: 64 uniforms in the order one block after another. */
static RNG_AVX512 void blocks16_uniform(const rc_philox *p, float *out)
{
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)p->counter[0]),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i c1 = _mm512_set1_epi32((int)p->counter[1]), c2 = _mm512_set1_epi32((int)p->counter[2]),
            c3 = _mm512_set1_epi32((int)p->counter[3]);
    __m512i ma = _mm512_set1_epi32((int)PHILOX_M4A), mb = _mm512_set1_epi32((int)PHILOX_M4B);
    uint32_t k0 = p->key[0], k1 = p->key[1];
    for (int r = 0; r < 10; r++) {
        __m512i lo0, hi0, lo1, hi1;
        mul_wide(c0, ma, &lo0, &hi0);
        mul_wide(c2, mb, &lo1, &hi1);
        __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
        __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
        k0 += PHILOX_W32A;
        k1 += PHILOX_W32B;
    }
    const __m512i mant = _mm512_set1_epi32(0x7fffff), one = _mm512_set1_epi32(0x3f800000);
    __m512 f[4];
    __m512i w[4] = {c0, c1, c2, c3};
    for (int i = 0; i < 4; i++)
        f[i] = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(w[i], mant), one)), _mm512_set1_ps(1.0f));
    float t[4][16];
    for (int i = 0; i < 4; i++) _mm512_storeu_ps(t[i], f[i]);
    for (int b = 0; b < 16; b++)
        for (int i = 0; i < 4; i++) out[4 * b + i] = t[i][b];
}

static bool rng_avx512(void)
{
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return has;
}
#endif

void rc_philox_fill_uniform(rc_philox *p, float *out, int64_t n)
{
    int64_t i = 0;
    while (i < n && p->avail) out[i++] = bits_to_uniform(rc_philox_next(p));
#if defined(__x86_64__) && defined(__GNUC__)
    if (rng_avx512())
        while (n - i >= 64 && p->counter[0] <= 0xffffffffu - 16) {
            blocks16_uniform(p, out + i);
            rc_philox_skip(p, 16);
            i += 64;
        }
#endif
    while (i < n) out[i++] = bits_to_uniform(rc_philox_next(p));
}

double rc_philox_uniform_double(rc_philox *p)
{
    uint64_t hi = rc_philox_next(p), lo = rc_philox_next(p);
    uint64_t bits = (((hi << 32) | lo) & 0xfffffffffffffULL) | 0x3ff0000000000000ULL;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d - 1.0;
}

/* Standard normal pairs, in TensorFlow's order (sin first, then cos). */
float rc_philox_normal(rc_normal_gen *n)
{
    if (n->has_spare) {
        n->has_spare = false;
        return n->spare;
    }
    uint32_t x0 = rc_philox_next(n->p), x1 = rc_philox_next(n->p);
    float f0;
    box_muller(x0, x1, &f0, &n->spare);
    n->has_spare = true;
    return f0;
}

#define DEFAULT_GRAPH_SEED 87654321
#define MAXINT32 2147483647LL

static int64_t truncate_seed(int64_t s) { return ((s % MAXINT32) + MAXINT32) % MAXINT32; }

void rc_resolve_seed(bool has_graph_seed, int64_t graph_seed, int64_t op_seed, int64_t last_id,
                     int64_t *seed1, int64_t *seed2)
{
    if (has_graph_seed) {
        if (op_seed == 0) op_seed = last_id;
        *seed1 = truncate_seed(graph_seed);
        *seed2 = truncate_seed(op_seed);
        if (*seed1 == 0 && *seed2 == 0) *seed2 = MAXINT32;
    } else if (op_seed != 0) {
        *seed1 = DEFAULT_GRAPH_SEED;
        *seed2 = truncate_seed(op_seed);
    } else {
        *seed1 = *seed2 = 0;
    }
}

uint64_t rc_random_seed(void)
{
    static _Atomic uint64_t salt = 0x853c49e6748fea9bULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                 (atomic_fetch_add(&salt, 0x9E3779B97F4A7C15ULL) + 0x9E3779B97F4A7C15ULL);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x ? x : 1;
}
