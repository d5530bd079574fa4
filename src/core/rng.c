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
