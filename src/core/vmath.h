/*
 * vmath.h - vectorised float transcendentals for the activation kernels: sigmoid, tanh and
 * exp over arrays. Private; not API.
 *
 * Every function accepts y == x (in place). Results are within 1e-6 relative of the value
 * computed in double and rounded to float, over the whole float range: ±0, subnormals, ±inf
 * (the limits) and NaN (NaN out). Saturation is exact (sigmoid 0/1, tanh ±1, exp 0/inf).
 *
 * Three implementations: AVX-512F, AVX2+FMA and portable scalar C; the best one the CPU (and
 * OS) supports is picked on first use, thread-safely.
 */
#ifndef RECUR_VMATH_H
#define RECUR_VMATH_H

#include <stddef.h>

/* y[i] = 1/(1+exp(-x[i])), tanh(x[i]), exp(x[i]) for n floats (y may equal x). */
void rc_vsigmoid(float *y, const float *x, size_t n);
void rc_vtanh(float *y, const float *x, size_t n);
void rc_vexp(float *y, const float *x, size_t n);

/* Which implementation runs: "avx512", "avx2" or "scalar". */
const char *rc_vmath_impl(void);
/* Force an implementation by name (for tests and benchmarks); NULL, an unknown name or one
 * this CPU cannot run restores the automatic choice. */
void rc_vmath_force(const char *impl);

#endif /* RECUR_VMATH_H */
