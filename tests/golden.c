/*
 * golden.c - reader for golden tensor files written by the scripts in tests/tf/ (format in
 * golden.h).
 */
#include "golden.h"

#include <stdlib.h>
#include <string.h>

gt_file *gt_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    gt_file *g = calloc(1, sizeof *g);
    char line[65536];
    gt_tensor *cur = NULL;
    int64_t filled = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (cur && filled < cur->size) {
            char *p = line, *end;
            while (filled < cur->size) {
                double v = strtod(p, &end);
                if (end == p) break;
                cur->v[filled++] = v;
                p = end;
            }
            continue;
        }
        if (!l || line[0] == '#') continue;
        if (!strncmp(line, "meta ", 5)) {
            g->meta = realloc(g->meta, (size_t)(g->nmeta + 1) * sizeof *g->meta);
            char *sp = strchr(line + 5, ' ');
            if (sp) *sp = 0;
            g->meta[g->nmeta].key = strdup(line + 5);
            g->meta[g->nmeta].value = strdup(sp ? sp + 1 : "");
            g->nmeta++;
        } else if (!strncmp(line, "tensor ", 7)) {
            g->t = realloc(g->t, (size_t)(g->n + 1) * sizeof *g->t);
            cur = &g->t[g->n++];
            memset(cur, 0, sizeof *cur);
            char name[4096], dt[16];
            int rank, off = 0;
            if (sscanf(line + 7, "%4095s %15s %d%n", name, dt, &rank, &off) != 3) break;
            cur->name = strdup(name);
            snprintf(cur->dtype, sizeof cur->dtype, "%s", dt);
            cur->shape.rank = rank;
            char *p = line + 7 + off;
            cur->size = 1;
            for (int i = 0; i < rank && i < RECUR_MAX_RANK; i++) {
                cur->shape.dims[i] = strtoll(p, &p, 10);
                cur->size *= cur->shape.dims[i];
            }
            cur->v = calloc((size_t)(cur->size ? cur->size : 1), sizeof *cur->v);
            filled = 0;
        }
    }
    fclose(f);
    return g;
}

void gt_free(gt_file *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        free(g->t[i].name);
        free(g->t[i].v);
    }
    for (int i = 0; i < g->nmeta; i++) {
        free(g->meta[i].key);
        free(g->meta[i].value);
    }
    free(g->t);
    free(g->meta);
    free(g);
}

const gt_tensor *gt_find(const gt_file *g, const char *name)
{
    for (int i = 0; g && i < g->n; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

const char *gt_meta(const gt_file *g, const char *key)
{
    for (int i = 0; g && i < g->nmeta; i++)
        if (!strcmp(g->meta[i].key, key)) return g->meta[i].value;
    return NULL;
}

recur_array *gt_array(const gt_tensor *t)
{
    recur_dtype dt = !strcmp(t->dtype, "float64") ? RECUR_F64
                     : !strcmp(t->dtype, "int32") ? RECUR_I32
                     : !strcmp(t->dtype, "int64") ? RECUR_I64
                     : !strcmp(t->dtype, "bool") ? RECUR_BOOL : RECUR_F32;
    recur_array *a = recur_array_new(dt, t->shape, NULL);
    if (!a) return NULL;
    for (int64_t i = 0; i < t->size; i++) {
        switch (dt) {
        case RECUR_F32: recur_array_f32(a)[i] = (float)t->v[i]; break;
        case RECUR_F64: recur_array_f64(a)[i] = t->v[i]; break;
        case RECUR_I32: recur_array_i32(a)[i] = (int32_t)t->v[i]; break;
        case RECUR_I64: recur_array_i64(a)[i] = (int64_t)t->v[i]; break;
        default: recur_array_bool(a)[i] = t->v[i] != 0; break;
        }
    }
    return a;
}

double gt_max_abs_diff(const gt_tensor *t, const recur_array *a)
{
    if (!a || recur_array_size(a) != t->size) return INFINITY;
    recur_shape s = recur_array_shape(a);
    if (s.rank != t->shape.rank) return INFINITY;
    for (int i = 0; i < s.rank; i++)
        if (s.dims[i] != t->shape.dims[i]) return INFINITY;
    double m = 0;
    const void *d = recur_array_cdata(a);
    for (int64_t i = 0; i < t->size; i++) {
        double v = recur_array_dtype(a) == RECUR_F32 ? ((const float *)d)[i] : ((const double *)d)[i];
        double e = fabs(v - t->v[i]);
        if (isnan(e)) return INFINITY;
        if (e > m) m = e;
    }
    return m;
}

/* Initializer spec of the test catalogues (tests/tf/README.md). Exits on a bad spec. */
recur_initializer gt_parse_init(const char *s)
{
    recur_initializer z = {0};
    if (!s) return z;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    char *f[6] = {0};
    int n = 0;
    for (char *p = strtok(buf, ":"); p && n < 6; p = strtok(NULL, ":")) f[n++] = p;
#define NUM(i) (n > (i) ? atof(f[i]) : 0)
#define SEED(i) (n > (i) ? atoll(f[i]) : 0)
    if (!strcmp(f[0], "zeros")) return recur_zeros_initializer();
    if (!strcmp(f[0], "ones")) return recur_ones_initializer();
    if (!strcmp(f[0], "constant")) return recur_constant_initializer(NUM(1));
    if (!strcmp(f[0], "uniform")) return recur_random_uniform_initializer(NUM(1), NUM(2), SEED(3));
    if (!strcmp(f[0], "normal")) return recur_random_normal_initializer(NUM(1), NUM(2), SEED(3));
    if (!strcmp(f[0], "truncated")) return recur_truncated_normal_initializer(NUM(1), NUM(2), SEED(3));
    if (!strcmp(f[0], "glorot_uniform")) return recur_glorot_uniform_initializer(SEED(1));
    if (!strcmp(f[0], "glorot_normal")) return recur_glorot_normal_initializer(SEED(1));
    if (!strcmp(f[0], "orthogonal")) return recur_orthogonal_initializer(NUM(1), SEED(2));
    if (!strcmp(f[0], "vs")) {
        recur_fan_mode m = !strcmp(f[2], "fan_in") ? RECUR_FAN_IN : !strcmp(f[2], "fan_out") ? RECUR_FAN_OUT : RECUR_FAN_AVG;
        recur_distribution d = !strcmp(f[3], "uniform") ? RECUR_DIST_UNIFORM
                               : !strcmp(f[3], "untruncated_normal") ? RECUR_DIST_UNTRUNCATED_NORMAL
                                                                     : RECUR_DIST_TRUNCATED_NORMAL;
        return recur_variance_scaling_initializer(NUM(1), m, d, SEED(4));
    }
    fprintf(stderr, "bad initializer spec %s\n", s);
    exit(2);
#undef NUM
#undef SEED
}

