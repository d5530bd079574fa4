/*
 * golden.h - golden tensor files written by the scripts in tests/tf/ with real TensorFlow.
 *
 * Format (text):
 *   # comment
 *   meta <key> <value to end of line>
 *   tensor <name> <dtype> <rank> <d0> ... <d(rank-1)>
 *   <values, whitespace separated, row-major; may span several lines>
 * dtypes: float32 float64 int32 int64 bool. float32 values are printed with 9 significant
 * digits, so they round-trip exactly.
 */
#ifndef RECUR_TEST_GOLDEN_H
#define RECUR_TEST_GOLDEN_H

#include "recur.h"

#include <math.h>
#include <stdio.h>

typedef struct gt_tensor {
    char *name;
    char dtype[16];
    recur_shape shape;
    int64_t size;
    double *v;
} gt_tensor;

typedef struct gt_meta_kv {
    char *key, *value;
} gt_meta_kv;

typedef struct gt_file {
    gt_tensor *t;
    int n;
    gt_meta_kv *meta;
    int nmeta;
} gt_file;

gt_file *gt_load(const char *path); /* NULL if the file cannot be opened */
void gt_free(gt_file *g);
const gt_tensor *gt_find(const gt_file *g, const char *name);
const char *gt_meta(const gt_file *g, const char *key);
/* New array with the tensor's dtype, shape and values. */
recur_array *gt_array(const gt_tensor *t);
/* Largest |a - golden| (INFINITY on a shape mismatch or NaN). */
double gt_max_abs_diff(const gt_tensor *t, const recur_array *a);

/* Parse a catalogue initializer spec ("glorot_uniform:5", "vs:2:fan_in:uniform:4", ...). */
recur_initializer gt_parse_init(const char *spec);

#endif
