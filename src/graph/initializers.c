/*
 * initializers.c - variable initializers as TensorFlow 1.x's init_ops: constructors (values
 * describing the initializer) and the fill routine run when a variable is initialised.
 * Uniform and normal draws follow TensorFlow's Philox streams; fans follow _compute_fans.
 */
#include "recur_impl.h"

#include <math.h>

recur_initializer recur_zeros_initializer(void) { return (recur_initializer){.kind = RECUR_INIT_ZEROS}; }
recur_initializer recur_ones_initializer(void) { return (recur_initializer){.kind = RECUR_INIT_ONES}; }
recur_initializer recur_constant_initializer(double value)
{
    return (recur_initializer){.kind = RECUR_INIT_CONSTANT, .a = value};
}
recur_initializer recur_random_uniform_initializer(double minval, double maxval, int64_t seed)
{
    return (recur_initializer){.kind = RECUR_INIT_RANDOM_UNIFORM, .a = minval, .b = maxval, .seed = seed};
}
recur_initializer recur_random_normal_initializer(double mean, double stddev, int64_t seed)
{
    return (recur_initializer){.kind = RECUR_INIT_RANDOM_NORMAL, .a = mean, .b = stddev, .seed = seed};
}
recur_initializer recur_truncated_normal_initializer(double mean, double stddev, int64_t seed)
{
    return (recur_initializer){.kind = RECUR_INIT_TRUNCATED_NORMAL, .a = mean, .b = stddev, .seed = seed};
}
recur_initializer recur_variance_scaling_initializer(double scale, recur_fan_mode mode,
                                                     recur_distribution dist, int64_t seed)
{
    return (recur_initializer){.kind = RECUR_INIT_VARIANCE_SCALING, .a = scale, .mode = mode,
                               .distribution = dist, .seed = seed};
}
recur_initializer recur_glorot_uniform_initializer(int64_t seed)
{
    return recur_variance_scaling_initializer(1.0, RECUR_FAN_AVG, RECUR_DIST_UNIFORM, seed);
}
recur_initializer recur_glorot_normal_initializer(int64_t seed)
{
    return recur_variance_scaling_initializer(1.0, RECUR_FAN_AVG, RECUR_DIST_TRUNCATED_NORMAL, seed);
}
recur_initializer recur_orthogonal_initializer(double gain, int64_t seed)
{
    return (recur_initializer){.kind = RECUR_INIT_ORTHOGONAL, .a = gain, .seed = seed};
}
recur_initializer recur_value_initializer(const recur_array *value)
{
    return (recur_initializer){.kind = RECUR_INIT_VALUE, .value = value};
}

/* _compute_fans: rank 0 -> (1,1); rank 1 -> (n,n); rank 2 -> (a,b); higher: receptive field
 * = product of all but the last two dims. */
void rc_compute_fans(recur_shape s, double *fan_in, double *fan_out)
{
    if (s.rank < 1) {
        *fan_in = *fan_out = 1;
    } else if (s.rank == 1) {
        *fan_in = *fan_out = (double)s.dims[0];
    } else if (s.rank == 2) {
        *fan_in = (double)s.dims[0];
        *fan_out = (double)s.dims[1];
    } else {
        double rf = 1;
        for (int i = 0; i < s.rank - 2; i++) rf *= (double)s.dims[i];
        *fan_in = (double)s.dims[s.rank - 2] * rf;
        *fan_out = (double)s.dims[s.rank - 1] * rf;
    }
}

/* U[minval, maxval): rnd * (max - min) + min, in the array's precision as TensorFlow does. */
static void fill_uniform(recur_array *a, rc_philox *p, double lo, double hi)
{
    if (a->dtype == RECUR_F32) {
        float *d = a->data, flo = (float)lo, range = (float)hi - (float)lo;
        for (int64_t i = 0; i < a->size; i++) d[i] = rc_philox_uniform(p) * range + flo;
    } else {
        double *d = a->data;
        for (int64_t i = 0; i < a->size; i++) d[i] = rc_philox_uniform_double(p) * (hi - lo) + lo;
    }
}

static void fill_normal(recur_array *a, rc_philox *p, double mean, double std, bool truncated)
{
    if (truncated && a->dtype == RECUR_F32) {
        /* TensorFlow's exact stream for the same seeds. */
        float *d = a->data;
        rc_philox_truncated_normal((uint64_t)p->key[0] | (uint64_t)p->key[1] << 32,
                                   (uint64_t)p->counter[2] | (uint64_t)p->counter[3] << 32, d, a->size);
        for (int64_t i = 0; i < a->size; i++) d[i] = d[i] * (float)std + (float)mean;
        return;
    }
    rc_normal_gen n = {.p = p};
    for (int64_t i = 0; i < a->size; i++) {
        float v;
        do v = rc_philox_normal(&n);
        while (truncated && fabsf(v) >= 2.0f);
        if (a->dtype == RECUR_F32)
            ((float *)a->data)[i] = v * (float)std + (float)mean;
        else
            ((double *)a->data)[i] = (double)v * std + mean;
    }
}

/* Orthogonal: QR of a normal [max(r,c), min(r,c)] matrix (modified Gram-Schmidt in double),
 * columns signed by diag(R), transposed when rows < cols, times gain. */
static recur_code fill_orthogonal(recur_array *a, rc_philox *p, double gain, recur_status *st)
{
    if (a->shape.rank < 2)
        return rc_err(st, RECUR_INVALID_ARGUMENT,
                      "The tensor to initialize must be at least two-dimensional");
    int64_t cols = a->shape.dims[a->shape.rank - 1], rows = a->size / (cols ? cols : 1);
    if (!cols || !rows) return RECUR_OK;
    int64_t m = RC_MAX(rows, cols), n = RC_MIN(rows, cols);
    double *q = rc_malloc((size_t)(m * n) * sizeof *q);
    if (!q) return rc_oom(st);
    rc_normal_gen ng = {.p = p};
    for (int64_t i = 0; i < m * n; i++) q[i] = rc_philox_normal(&ng);
    /* q is m x n row-major; orthonormalise its columns. */
    for (int64_t j = 0; j < n; j++) {
        for (int64_t k = 0; k < j; k++) {
            double dot = 0;
            for (int64_t i = 0; i < m; i++) dot += q[i * n + k] * q[i * n + j];
            for (int64_t i = 0; i < m; i++) q[i * n + j] -= dot * q[i * n + k];
        }
        double norm = 0;
        for (int64_t i = 0; i < m; i++) norm += q[i * n + j] * q[i * n + j];
        norm = sqrt(norm);
        /* R's diagonal is +norm with Gram-Schmidt, so the sign correction is the identity. */
        for (int64_t i = 0; i < m; i++) q[i * n + j] = norm > 0 ? q[i * n + j] / norm : 0;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double v = rows >= cols ? q[r * n + c] : q[c * n + r];
            rc_array_set(a, r * cols + c, gain * v);
        }
    rc_free(q);
    return RECUR_OK;
}

recur_code rc_init_fill(recur_array *a, const recur_initializer *init, int64_t seed1, int64_t seed2,
                        recur_status *st)
{
    rc_philox p;
    if (seed1 == 0 && seed2 == 0)
        rc_philox_init(&p, rc_random_seed(), rc_random_seed());
    else
        rc_philox_init(&p, (uint64_t)seed1, (uint64_t)seed2);
    bool is_float = rc_dtype_is_float(a->dtype);
    switch (init->kind) {
    case RECUR_INIT_NONE:
    case RECUR_INIT_ZEROS:
        if (a->nbytes) memset(a->data, 0, a->nbytes);
        return RECUR_OK;
    case RECUR_INIT_ONES:
    case RECUR_INIT_CONSTANT:
        for (int64_t i = 0; i < a->size; i++) rc_array_set(a, i, init->kind == RECUR_INIT_ONES ? 1.0 : init->a);
        return RECUR_OK;
    case RECUR_INIT_VALUE:
        return RECUR_OK; /* copied by the caller */
    default:
        break;
    }
    if (!is_float)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Random initializers need a floating dtype, got %s",
                      recur_dtype_name(a->dtype));
    switch (init->kind) {
    case RECUR_INIT_RANDOM_UNIFORM: fill_uniform(a, &p, init->a, init->b); return RECUR_OK;
    case RECUR_INIT_RANDOM_NORMAL: fill_normal(a, &p, init->a, init->b, false); return RECUR_OK;
    case RECUR_INIT_TRUNCATED_NORMAL: fill_normal(a, &p, init->a, init->b, true); return RECUR_OK;
    case RECUR_INIT_ORTHOGONAL: return fill_orthogonal(a, &p, init->a, st);
    case RECUR_INIT_VARIANCE_SCALING: {
        double fi, fo;
        rc_compute_fans(a->shape, &fi, &fo);
        double fan = init->mode == RECUR_FAN_IN ? fi : init->mode == RECUR_FAN_OUT ? fo : (fi + fo) / 2;
        double s = init->a / RC_MAX(1.0, fan);
        if (init->distribution == RECUR_DIST_UNIFORM) {
            double limit = sqrt(3.0 * s);
            fill_uniform(a, &p, -limit, limit);
        } else if (init->distribution == RECUR_DIST_UNTRUNCATED_NORMAL) {
            fill_normal(a, &p, 0, sqrt(s), false);
        } else {
            fill_normal(a, &p, 0, sqrt(s) / 0.87962566103423978, true);
        }
        return RECUR_OK;
    }
    default:
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Unknown initializer kind %d", (int)init->kind);
    }
}
