/*
 * bench_vmath.c - ns/element of rc_vsigmoid, rc_vtanh and rc_vexp (src/core/vmath.c), each
 * implementation forced in turn, against plain libm loops (1/(1+expf(-x)), tanhf, expf).
 *
 * Build and run from the repository root (the library's own flags; vmath.c is included):
 *
 *   mkdir -p build && gcc -std=c11 -D_GNU_SOURCE -O2 -march=x86-64-v2 -mtune=native \
 *       bench/bench_vmath.c -o build/bench_vmath -lm && build/bench_vmath
 *
 * Inputs are uniform in [-8, 8] (typical pre-activations); n = 256 (cache-resident, call
 * overhead visible) and n = 65536. Each figure is the best of 25 timings of repeated calls, to
 * filter out other load on the machine.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "../src/core/vmath.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef void (*vfn)(float *, const float *, size_t);

/* The libm baselines, kept out of line so they are timed as written. */
static __attribute__((noinline)) void libm_sigmoid(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static __attribute__((noinline)) void libm_tanh(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static __attribute__((noinline)) void libm_exp(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static volatile float g_sink;

/* Best ns/element over 25 timings, each of enough calls for about 2 ms. */
static double time_fn(vfn f, float *y, const float *x, size_t n)
{
    size_t reps = 1;
    for (;;) { /* calibrate */
        double t0 = now();
        for (size_t r = 0; r < reps; r++) f(y, x, n);
        if (now() - t0 > 2e-3) break;
        reps *= 2;
    }
    double best = 1e30;
    for (int trial = 0; trial < 25; trial++) {
        double t0 = now();
        for (size_t r = 0; r < reps; r++) f(y, x, n);
        double t = (now() - t0) / ((double)reps * n) * 1e9;
        if (t < best) best = t;
        g_sink = y[n / 2];
    }
    return best;
}

int main(void)
{
    static const char *const impls[] = {"scalar", "avx2", "avx512"};
    static const struct {
        const char *name;
        vfn libm, ours;
    } fns[] = {{"sigmoid", libm_sigmoid, rc_vsigmoid},
               {"tanh", libm_tanh, rc_vtanh},
               {"exp", libm_exp, rc_vexp}};
    static const size_t sizes[] = {256, 65536};
    float *x = malloc(65536 * sizeof *x), *y = malloc(65536 * sizeof *y);
    if (!x || !y) return 1;
    uint32_t s = 12345;
    for (size_t i = 0; i < 65536; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) * 0x1p-24 * 16.0 - 8.0);
    }
    rc_vmath_force(NULL);
    const char *auto_impl = rc_vmath_impl();
    printf("automatic choice: %s\n\n", auto_impl);
    printf("%-8s %6s %8s", "function", "n", "libm");
    for (size_t k = 0; k < 3; k++) printf(" %8s", impls[k]);
    printf("   (ns/element; speed-up of the automatic choice over libm)\n");
    for (size_t f = 0; f < 3; f++) {
        for (size_t si = 0; si < 2; si++) {
            size_t n = sizes[si];
            double base = time_fn(fns[f].libm, y, x, n), chosen = 0;
            printf("%-8s %6zu %8.3f", fns[f].name, n, base);
            for (size_t k = 0; k < 3; k++) {
                rc_vmath_force(impls[k]);
                if (strcmp(rc_vmath_impl(), impls[k])) {
                    printf(" %8s", "n/a");
                    continue;
                }
                double t = time_fn(fns[f].ours, y, x, n);
                printf(" %8.3f", t);
                if (!strcmp(impls[k], auto_impl)) chosen = t;
            }
            printf("   x%.1f\n", base / chosen);
            rc_vmath_force(NULL);
        }
    }
    free(x);
    free(y);
    return 0;
}
