/*
 * array.c - recur_array: dense row-major data with a dtype and a shape.
 */
#include "recur_impl.h"

static recur_code check_shape(recur_dtype dt, recur_shape shape, int64_t *count, recur_status *st)
{
    if (!rc_dtype_valid(dt))
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Invalid dtype %d for an array", (int)dt);
    if (shape.rank < 0 || shape.rank > RECUR_MAX_RANK)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Array rank must be in [0, %d], got %d",
                      RECUR_MAX_RANK, shape.rank);
    for (int i = 0; i < shape.rank; i++)
        if (shape.dims[i] < 0)
            return rc_err(st, RECUR_INVALID_ARGUMENT,
                          "Array dimension %d must be known and non-negative, got %lld", i,
                          (long long)shape.dims[i]);
    if (!rc_shape_count(shape, count) || (uint64_t)*count > SIZE_MAX / 8)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Array shape overflows the address space");
    return RECUR_OK;
}

recur_array *rc_array_alloc(recur_dtype dt, recur_shape shape, bool zero, recur_status *st)
{
    int64_t count;
    if (check_shape(dt, shape, &count, st) != RECUR_OK) return NULL;
    recur_array *a = rc_calloc(1, sizeof *a);
    if (!a) {
        rc_oom(st);
        return NULL;
    }
    a->dtype = dt;
    a->shape = shape;
    for (int i = shape.rank; i < RECUR_MAX_RANK; i++) a->shape.dims[i] = 0;
    a->size = count;
    a->nbytes = (size_t)count * recur_dtype_size(dt);
    if (a->nbytes) {
        a->data = rc_aligned_alloc(a->nbytes);
        if (!a->data) {
            rc_free(a);
            rc_oom(st);
            return NULL;
        }
        a->capacity = a->nbytes;
        if (zero) memset(a->data, 0, a->nbytes);
    }
    return a;
}

recur_array *rc_array_alloc_cap(recur_dtype dt, recur_shape shape, size_t capacity)
{
    int64_t count;
    if (check_shape(dt, shape, &count, NULL) != RECUR_OK) return NULL;
    size_t nbytes = (size_t)count * recur_dtype_size(dt);
    recur_array *a = rc_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->dtype = dt;
    a->shape = shape;
    for (int i = shape.rank; i < RECUR_MAX_RANK; i++) a->shape.dims[i] = 0;
    a->size = count;
    a->nbytes = nbytes;
    capacity = RC_MAX(capacity, nbytes);
    if (capacity) {
        a->data = rc_aligned_alloc(capacity);
        if (!a->data) {
            rc_free(a);
            return NULL;
        }
        a->capacity = capacity;
    }
    return a;
}

recur_array *recur_array_new(recur_dtype dt, recur_shape shape, recur_status *st)
{
    recur_array *a = rc_array_alloc(dt, shape, true, st);
    if (a) recur_status_clear(st);
    return a;
}

recur_array *recur_array_from(recur_dtype dt, recur_shape shape, const void *data, recur_status *st)
{
    recur_array *a = rc_array_alloc(dt, shape, data == NULL, st);
    if (!a) return NULL;
    if (data && a->nbytes) memcpy(a->data, data, a->nbytes);
    recur_status_clear(st);
    return a;
}

recur_array *recur_array_scalar_f32(float v, recur_status *st)
{
    return recur_array_from(RECUR_F32, RECUR_SCALAR, &v, st);
}

recur_array *recur_array_scalar_i32(int32_t v, recur_status *st)
{
    return recur_array_from(RECUR_I32, RECUR_SCALAR, &v, st);
}

recur_array *recur_array_copy(const recur_array *a, recur_status *st)
{
    if (!a) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_array_copy: array is NULL");
        return NULL;
    }
    if (a->dtype == RECUR_STRING) {
        recur_array *c = rc_calloc(1, sizeof *c);
        if (!c) goto oom;
        c->dtype = RECUR_STRING;
        c->shape = a->shape;
        c->size = a->size;
        c->strs = rc_calloc((size_t)a->size + 1, sizeof *c->strs);
        c->lens = rc_calloc((size_t)a->size + 1, sizeof *c->lens);
        if (!c->strs || !c->lens) {
            recur_array_free(c);
            goto oom;
        }
        for (int64_t i = 0; i < a->size; i++) {
            c->strs[i] = rc_malloc(a->lens[i] + 1);
            if (!c->strs[i]) {
                recur_array_free(c);
                goto oom;
            }
            memcpy(c->strs[i], a->strs[i], a->lens[i]);
            c->strs[i][a->lens[i]] = 0;
            c->lens[i] = a->lens[i];
        }
        recur_status_clear(st);
        return c;
    oom:
        rc_oom(st);
        return NULL;
    }
    return recur_array_from(a->dtype, a->shape, a->data, st);
}

void recur_array_free(recur_array *a)
{
    if (!a) return;
    rc_aligned_free(a->data);
    if (a->strs) {
        for (int64_t i = 0; i < a->size; i++) rc_free(a->strs[i]);
        rc_free(a->strs);
    }
    rc_free(a->lens);
    rc_free(a);
}

recur_dtype recur_array_dtype(const recur_array *a) { return a ? a->dtype : RECUR_DTYPE_INVALID; }
recur_shape recur_array_shape(const recur_array *a) { return a ? a->shape : RECUR_UNKNOWN_SHAPE; }
int recur_array_rank(const recur_array *a) { return a ? a->shape.rank : -1; }
int64_t recur_array_dim(const recur_array *a, int i)
{
    if (!a || i < 0 || i >= a->shape.rank) return -1;
    return a->shape.dims[i];
}
int64_t recur_array_size(const recur_array *a) { return a ? a->size : 0; }
size_t recur_array_nbytes(const recur_array *a) { return a ? a->nbytes : 0; }
void *recur_array_data(recur_array *a) { return a ? a->data : NULL; }
const void *recur_array_cdata(const recur_array *a) { return a ? a->data : NULL; }
float *recur_array_f32(recur_array *a) { return a && a->dtype == RECUR_F32 ? a->data : NULL; }
double *recur_array_f64(recur_array *a) { return a && a->dtype == RECUR_F64 ? a->data : NULL; }
int32_t *recur_array_i32(recur_array *a) { return a && a->dtype == RECUR_I32 ? a->data : NULL; }
int64_t *recur_array_i64(recur_array *a) { return a && a->dtype == RECUR_I64 ? a->data : NULL; }
bool *recur_array_bool(recur_array *a) { return a && a->dtype == RECUR_BOOL ? a->data : NULL; }

const char *recur_array_string(const recur_array *a, int64_t i, size_t *len)
{
    if (!a || a->dtype != RECUR_STRING || i < 0 || i >= a->size || !a->strs) return NULL;
    if (len) *len = a->lens[i];
    return a->strs[i];
}

double rc_array_get(const recur_array *a, int64_t i)
{
    switch (a->dtype) {
    case RECUR_F32: return ((const float *)a->data)[i];
    case RECUR_F64: return ((const double *)a->data)[i];
    case RECUR_I32: return ((const int32_t *)a->data)[i];
    case RECUR_I64: return (double)((const int64_t *)a->data)[i];
    case RECUR_BOOL: return ((const bool *)a->data)[i];
    default: return 0;
    }
}

void rc_array_set(recur_array *a, int64_t i, double v)
{
    switch (a->dtype) {
    case RECUR_F32: ((float *)a->data)[i] = (float)v; break;
    case RECUR_F64: ((double *)a->data)[i] = v; break;
    case RECUR_I32: ((int32_t *)a->data)[i] = (int32_t)v; break;
    case RECUR_I64: ((int64_t *)a->data)[i] = (int64_t)v; break;
    case RECUR_BOOL: ((bool *)a->data)[i] = v != 0; break;
    default: break;
    }
}
