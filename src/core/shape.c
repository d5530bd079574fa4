/*
 * shape.c - dtypes and shapes: sizes, names, compatibility and TensorFlow's printed forms.
 */
#include "recur_impl.h"

const char *recur_dtype_name(recur_dtype dt)
{
    switch (dt) {
    case RECUR_F32: return "float";
    case RECUR_F64: return "double";
    case RECUR_I32: return "int32";
    case RECUR_I64: return "int64";
    case RECUR_BOOL: return "bool";
    case RECUR_STRING: return "string";
    default: return "invalid";
    }
}

size_t recur_dtype_size(recur_dtype dt)
{
    switch (dt) {
    case RECUR_F32: return 4;
    case RECUR_F64: return 8;
    case RECUR_I32: return 4;
    case RECUR_I64: return 8;
    case RECUR_BOOL: return 1;
    default: return 0;
    }
}

bool rc_dtype_valid(recur_dtype dt) { return recur_dtype_size(dt) != 0; }
bool rc_dtype_is_float(recur_dtype dt) { return dt == RECUR_F32 || dt == RECUR_F64; }
bool rc_dtype_is_int(recur_dtype dt) { return dt == RECUR_I32 || dt == RECUR_I64; }

bool rc_shape_known(recur_shape s)
{
    if (s.rank < 0 || s.rank > RECUR_MAX_RANK) return false;
    for (int i = 0; i < s.rank; i++)
        if (s.dims[i] < 0) return false;
    return true;
}

bool rc_shape_count(recur_shape s, int64_t *count)
{
    if (!rc_shape_known(s)) return false;
    int64_t n = 1;
    for (int i = 0; i < s.rank; i++) {
        if (s.dims[i] && n > INT64_MAX / s.dims[i]) return false;
        n *= s.dims[i];
    }
    *count = n;
    return true;
}

int64_t recur_shape_size(recur_shape s)
{
    int64_t n;
    return rc_shape_count(s, &n) ? n : -1;
}

bool rc_shape_compatible(recur_shape a, recur_shape b)
{
    if (a.rank < 0 || b.rank < 0) return true;
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; i++)
        if (a.dims[i] >= 0 && b.dims[i] >= 0 && a.dims[i] != b.dims[i]) return false;
    return true;
}

bool rc_shape_equal(recur_shape a, recur_shape b)
{
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank && i < RECUR_MAX_RANK; i++)
        if (a.dims[i] != b.dims[i]) return false;
    return true;
}

char *recur_shape_str(recur_shape s, char *buf, size_t cap)
{
    if (!buf || !cap) return buf;
    if (s.rank < 0 || s.rank > RECUR_MAX_RANK) {
        snprintf(buf, cap, "<unknown>");
        return buf;
    }
    size_t n = 0;
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "(");
    for (int i = 0; i < s.rank; i++) {
        if (i) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, ", ");
        if (s.dims[i] < 0)
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "?");
        else
            n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%lld", (long long)s.dims[i]);
    }
    snprintf(buf + (n < cap ? n : cap - 1), n < cap ? cap - n : 1, s.rank == 1 ? ",)" : ")");
    return buf;
}

char *rc_shape_debug(recur_shape s, char *buf, size_t cap)
{
    if (!buf || !cap) return buf;
    if (s.rank < 0 || s.rank > RECUR_MAX_RANK) {
        snprintf(buf, cap, "<unknown>");
        return buf;
    }
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < s.rank && n < cap; i++) {
        if (s.dims[i] < 0)
            n += (size_t)snprintf(buf + n, cap - n, "%s?", i ? "," : "");
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)s.dims[i]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
