/*
 * vmath.h - vectorised float transcendentals for the activation kernels: sigmoid, tanh and
 * exp over arrays, and the LSTM cell update built on them. Private; not API.
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

/* One row of the basic LSTM cell (TensorFlow's BasicLSTMCell: tanh, no peepholes or clipping)
 * over n units, in one pass. g holds the four gates' pre-activations without biases at g,
 * g + gs, g + 2 gs, g + 3 gs (i, j, f, o) and gets their activations: sigmoid(i + bi),
 * tanh(j + bj), sigmoid((f + bf) + fb), sigmoid(o + bo), the biases at b, b + bs, ... c holds
 * the previous cell state and gets the new one, c f + i j, also written to craw; m gets
 * tanh(c) o. The same bits as the array functions applied step by step. */
void rc_vlstm_cell(size_t n, float *g, size_t gs, const float *b, size_t bs, float fb, float *c, float *craw, float *m);

/* Its gradient over one row of n units: g holds the activated gates as rc_vlstm_cell left
 * them (i, j, f, o, gs floats apart), m the output tanh(c) o it wrote, cprev the previous cell
 * state, dh + dy the gradient of the output. tanh(c) is taken as m / o (0 where o is 0: it
 * only ever meets o as a factor), one division instead of a tanh, within 2 ulp of it. dc
 * arrives holding the gradient of the new cell state and leaves holding that of the previous
 * one; dg gets the gradients of the four pre-activations (gs apart), and may be g (each unit's
 * gates are read before its gradients are written). */
void rc_vlstm_cell_grad(size_t n, const float *g, size_t gs, const float *m, const float *cprev, const float *dh, const float *dy,
                        float *dc, float *dg);

/* The same over `rows` rows: row r's gates (and, backward, their gradients) at g + r gstride,
 * its c, craw, m (backward: m, cprev, dh, dy, dc) at r n of arrays [rows][n], the same biases
 * for every row. The same bits as the one-row functions row by row; the AVX-512 version runs
 * over the rows' units as one array, so n % 16 units per row cost no masked vector of their
 * own. */
void rc_vlstm_cell_rows(size_t rows, size_t n, float *g, size_t gstride, size_t gs, const float *b, size_t bs, float fb, float *c,
                        float *craw, float *m);
void rc_vlstm_cell_grad_rows(size_t rows, size_t n, const float *g, size_t gstride, size_t gs, const float *m,
                             const float *cprev, const float *dh, const float *dy, float *dc, float *dg);

/* Which implementation runs: "avx512", "avx2" or "scalar". */
const char *rc_vmath_impl(void);
/* Force an implementation by name (for tests and benchmarks); NULL, an unknown name or one
 * this CPU cannot run restores the automatic choice. */
void rc_vmath_force(const char *impl);

#endif /* RECUR_VMATH_H */
