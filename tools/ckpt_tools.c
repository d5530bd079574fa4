/*
 * ckpt_tools.c - `recur inspect`, `recur diff` and `recur rename`: TensorFlow V2 checkpoints
 * seen from the command line, through the public API only (recur_checkpoint_*, the checkpoint
 * writer, recur_latest_checkpoint and recur_checkpoint_suggest_map).
 *
 * A PREFIX argument names PREFIX.index + PREFIX.data-*; a directory stands for the latest
 * checkpoint its `checkpoint` state file lists, as tf.train.latest_checkpoint; the .index or
 * .data-NNNNN-of-NNNNN file itself is accepted too. Tables are plain text, columns aligned by
 * characters (UTF-8 aware), so they read well and split on runs of blanks.
 */
#include "ckpt_tools.h"

#include "recur.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dirent.h>

/* ================================================================== messages, memory */

static const char *cmd = "recur"; /* the running subcommand, for messages */
static int fail_status = 1;       /* exit status of an error (2 for diff) */

__attribute__((format(printf, 1, 2))) static void errorf(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "recur %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static _Noreturn void out_of_memory(void)
{
    errorf("out of memory");
    exit(fail_status);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) out_of_memory();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p) out_of_memory();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p) out_of_memory();
    return p;
}

static recur_status *xstatus(void)
{
    recur_status *st = recur_status_new();
    if (!st) out_of_memory();
    return st;
}

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

/* printf into a new string. */
__attribute__((format(printf, 1, 0))) static char *vstrf(const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = xmalloc(n > 0 ? (size_t)n + 1 : 1);
    if (n < 0) s[0] = 0;
    else vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    return s;
}

__attribute__((format(printf, 1, 2))) static char *strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vstrf(fmt, ap);
    va_end(ap);
    return s;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vstrf(fmt, ap);
    va_end(ap);
    sb_puts(b, s);
    free(s);
}

/* Empty the buffer, keeping its memory. */
static void sb_clear(sbuf *b)
{
    b->len = 0;
    if (b->s) b->s[0] = 0;
}

/* The string (never NULL); the buffer is reset. */
static char *sb_take(sbuf *b)
{
    char *s = b->s ? b->s : xstrdup("");
    *b = (sbuf){0};
    return s;
}

/* Characters on screen: UTF-8 continuation bytes take no column. */
static size_t display_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void spaces(FILE *f, size_t n)
{
    while (n--) fputc(' ', f);
}

/* ================================================================== tables */

typedef struct table {
    int ncol;
    const char *align; /* per column: 'l' or 'r' */
    char **cells;      /* row-major */
    size_t n, cap;     /* cells */
} table;

static table table_new(int ncol, const char *align) { return (table){.ncol = ncol, .align = align}; }

/* Append one cell (rows fill left to right). */
__attribute__((format(printf, 2, 3))) static void tcell(table *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vstrf(fmt, ap);
    va_end(ap);
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = xrealloc(t->cells, t->cap * sizeof *t->cells);
    }
    t->cells[t->n++] = s;
}

static size_t table_rows(const table *t) { return t->n / (size_t)t->ncol; }

/* Print with `indent` leading blanks and two blanks between columns; no trailing blanks. */
static void table_print(const table *t, FILE *f, size_t indent)
{
    size_t width[16] = {0};
    for (size_t i = 0; i < t->n; i++) {
        size_t w = display_width(t->cells[i]);
        if (w > width[i % (size_t)t->ncol]) width[i % (size_t)t->ncol] = w;
    }
    for (size_t r = 0; r < table_rows(t); r++) {
        spaces(f, indent);
        int last = t->ncol - 1; /* the last non-empty cell of the row ends the line */
        while (last > 0 && !t->cells[r * (size_t)t->ncol + (size_t)last][0]) last--;
        for (int c = 0; c <= last; c++) {
            const char *s = t->cells[r * (size_t)t->ncol + (size_t)c];
            size_t pad = width[c] - display_width(s);
            if (c) spaces(f, 2);
            if (t->align[c] == 'r') spaces(f, pad);
            fputs(s, f);
            if (t->align[c] != 'r' && c < last) spaces(f, pad);
        }
        fputc('\n', f);
    }
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++) free(t->cells[i]);
    free(t->cells);
    *t = (table){0};
}

/* ================================================================== checkpoints */

/* TensorFlow's DataTypeString (checkpoints may hold dtypes recur cannot read). */
static const char *dtype_name(recur_dtype dt)
{
    static const char *const names[] = {
        "invalid", "float", "double", "int32", "uint8", "int16", "int8", "string",
        "complex64", "int64", "bool", "qint8", "quint8", "qint32", "bfloat16", "qint16",
        "quint16", "uint16", "complex128", "half", "resource", "variant", "uint32", "uint64",
    };
    return (int)dt >= 0 && (int)dt < (int)(sizeof names / sizeof *names) ? names[dt] : "invalid";
}

static bool readable(recur_dtype dt) { return dt == RECUR_STRING || recur_dtype_size(dt) != 0; }

static bool numeric(recur_dtype dt)
{
    return dt == RECUR_F32 || dt == RECUR_F64 || dt == RECUR_I32 || dt == RECUR_I64 || dt == RECUR_BOOL;
}

static bool floating(recur_dtype dt) { return dt == RECUR_F32 || dt == RECUR_F64; }

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Length of `arg` without a ".data-NNNNN-of-NNNNN" ending; 0 when it has none. */
static size_t data_suffix_start(const char *arg)
{
    const char *p = strstr(arg, ".data-");
    for (const char *q = p; q; q = strstr(q + 1, ".data-")) p = q;
    if (!p || strlen(p) != 20 || strncmp(p + 11, "-of-", 4)) return 0;
    for (int i = 0; i < 5; i++)
        if (p[6 + i] < '0' || p[6 + i] > '9' || p[15 + i] < '0' || p[15 + i] > '9') return 0;
    return (size_t)(p - arg);
}

/* Name a few PREFIXes found in `dir` (files ending in .index) for a message. */
static void hint_prefixes(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    sbuf b = {0};
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!ends_with(de->d_name, ".index") || de->d_type == DT_DIR) continue;
        if (n < 3) sb_printf(&b, "%s%s/%.*s", n ? ", " : "", dir, (int)(strlen(de->d_name) - 6), de->d_name);
        n++;
    }
    closedir(d);
    if (n) fprintf(stderr, "  checkpoints in %s: %s%s\n", dir, b.s, n > 3 ? ", ..." : "");
    free(b.s);
}

/* The checkpoint prefix an argument names. New; NULL after a message. */
static char *resolve_prefix(const char *arg)
{
    if (is_dir(arg)) {
        recur_status *st = xstatus();
        char *buf = xmalloc(PATH_MAX * 2);
        const char *p = recur_latest_checkpoint(arg, buf, PATH_MAX * 2, st);
        if (!p) {
            errorf("%s (a directory must hold a `checkpoint` state file naming its latest checkpoint)",
                   recur_status_message(st));
            hint_prefixes(arg);
            free(buf);
        }
        recur_status_free(st);
        return p ? buf : NULL;
    }
    char *index = strf("%s.index", arg);
    bool plain = is_file(index);
    free(index);
    if (plain) return xstrdup(arg);
    if (ends_with(arg, ".index") && is_file(arg)) return xstrndup(arg, strlen(arg) - 6);
    size_t cut = data_suffix_start(arg);
    if (cut && is_file(arg)) return xstrndup(arg, cut);
    return xstrdup(arg); /* opening it reports the error */
}

/* Open the checkpoint `arg` names; *prefix gets its prefix (new). NULL after a message. */
static recur_checkpoint *open_checkpoint(const char *arg, char **prefix)
{
    *prefix = resolve_prefix(arg);
    if (!*prefix) return NULL;
    recur_status *st = xstatus();
    recur_checkpoint *c = recur_checkpoint_open(*prefix, st);
    if (!c) {
        if (recur_status_code(st) == RECUR_NOT_FOUND && !strcmp(*prefix, arg))
            errorf("%s (expected %s.index, or a directory holding a `checkpoint` file)", recur_status_message(st),
                   arg);
        else
            errorf("%s", recur_status_message(st));
        free(*prefix);
        *prefix = NULL;
    }
    recur_status_free(st);
    return c;
}

/* The checkpoint's keys, sorted bytewise (as TensorFlow orders them). New array, borrowed strings. */
static int strp_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static const char **sorted_keys(const recur_checkpoint *c, size_t *n)
{
    *n = recur_checkpoint_num_tensors(c);
    const char **k = xcalloc(*n + 1, sizeof *k);
    for (size_t i = 0; i < *n; i++) k[i] = recur_checkpoint_key(c, i);
    qsort(k, *n, sizeof *k, strp_cmp);
    return k;
}

/* Levenshtein distance by bytes (long names are cut at 512 bytes). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 512) n = 512;
    if (m > 512) m = 512;
    size_t *row = xmalloc((m + 1) * sizeof *row);
    for (size_t j = 0; j <= m; j++) row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    size_t d = row[m];
    free(row);
    return d;
}

typedef struct ranked {
    const char *key;
    size_t score;
} ranked;

static int ranked_cmp(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? -1 : 1;
    return strcmp(a->key, b->key);
}

/* "k1, k2, ...": the keys nearest to `name` (those containing it first, then by edit
 * distance). New. */
static char *nearest_keys(const recur_checkpoint *c, const char *name, size_t max)
{
    size_t n = recur_checkpoint_num_tensors(c);
    ranked *r = xcalloc(n + 1, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].key = recur_checkpoint_key(c, i);
        r[i].score = edit_distance(name, r[i].key) + (name[0] && strstr(r[i].key, name) ? 0 : (size_t)1 << 20);
    }
    qsort(r, n, sizeof *r, ranked_cmp);
    sbuf b = {0};
    for (size_t i = 0; i < n && i < max; i++) sb_printf(&b, "%s%s", i ? ", " : "", r[i].key);
    free(r);
    return sb_take(&b);
}

/* ================================================================== values */

static double elem_d(const recur_array *a, int64_t i)
{
    const void *d = recur_array_cdata(a);
    switch (recur_array_dtype(a)) {
    case RECUR_F32: return ((const float *)d)[i];
    case RECUR_F64: return ((const double *)d)[i];
    case RECUR_I32: return ((const int32_t *)d)[i];
    case RECUR_I64: return (double)((const int64_t *)d)[i];
    case RECUR_BOOL: return ((const bool *)d)[i];
    default: return NAN;
    }
}

static int64_t elem_i(const recur_array *a, int64_t i)
{
    const void *d = recur_array_cdata(a);
    switch (recur_array_dtype(a)) {
    case RECUR_I32: return ((const int32_t *)d)[i];
    case RECUR_I64: return ((const int64_t *)d)[i];
    case RECUR_BOOL: return ((const bool *)d)[i];
    default: return 0;
    }
}

/* %.6g, with numpy's names for the special values. */
static void fmt_g(double v, char *buf, size_t cap)
{
    if (isnan(v)) snprintf(buf, cap, "nan");
    else if (isinf(v)) snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else snprintf(buf, cap, "%.6g", v);
}

/* ---------------------------------------------------------------- numpy-like printing
 * As numpy's str() of an array with its default print options: more than 1000 elements are
 * summarised (the first and last 3 along each axis), lines wrap at 75 characters, elements
 * are right-aligned to one width. Floats use numpy's choice of notation over the elements
 * shown: scientific when the largest magnitude is >= 1e8, the smallest non-zero one < 1e-4,
 * or their ratio > 1000; otherwise positional with at most 8 decimals ("1.", "0.1", "-0.5"),
 * aligned on the decimal point. Each value has the fewest digits that read back as it. */
enum { EDGE_ITEMS = 3, SUMMARY_THRESHOLD = 1000, LINE_WIDTH = 75, FLOAT_PRECISION = 8 };

typedef enum phase {
    SCAN,   /* floats: the range of the magnitudes shown */
    DIGITS, /* floats: digits before and after the point */
    WIDTH,  /* the widest element */
    PRINT,
} phase;

typedef struct printer {
    const recur_array *a;
    recur_shape shape;
    int64_t stride[RECUR_MAX_RANK];
    bool summarise;
    phase phase;
    double max_abs, min_abs;  /* over finite non-zero values shown */
    bool exp;                 /* scientific notation */
    int exp_digits;           /* mantissa decimals (scientific) */
    size_t pad_left, pad_right; /* characters before and after the point (positional); pad_right:
                                 * exponent digits (scientific) */
    size_t width;             /* elements are right-aligned to this (strings are not padded) */
    size_t col;
    sbuf tmp;
    FILE *f;
} printer;

static bool reads_back(const char *s, double v, bool f32)
{
    return f32 ? strtof(s, NULL) == (float)v : strtod(s, NULL) == v;
}

/* `v` with the fewest decimals (at most FLOAT_PRECISION; beyond that rounded, trailing zeros
 * dropped, as numpy does) that read back as it, positional or as a mantissa; returns them. */
static int shortest(double v, bool f32, bool exp, char *buf, size_t cap)
{
    int d = 0;
    for (; d < FLOAT_PRECISION; d++) {
        snprintf(buf, cap, exp ? "%.*e" : "%.*f", d, v);
        if (reads_back(buf, v, f32)) return d;
    }
    snprintf(buf, cap, exp ? "%.*e" : "%.*f", d, v);
    char *end = exp ? strchr(buf, 'e') : buf + strlen(buf);
    while (d > 0 && end[-1] == '0') {
        memmove(end - 1, end, strlen(end) + 1);
        end--;
        d--;
    }
    return d;
}

/* A float as the printer's notation writes it (before alignment to the common width). */
static void fmt_float(printer *p, double v, bool f32, sbuf *out)
{
    char buf[512];
    if (!isfinite(v)) {
        fmt_g(v, buf, sizeof buf);
        sb_puts(out, buf);
        return;
    }
    if (p->phase == SCAN) {
        double m = fabs(v);
        if (m > p->max_abs) p->max_abs = m;
        if (m > 0 && (p->min_abs == 0 || m < p->min_abs)) p->min_abs = m;
        return;
    }
    if (p->exp) { /* one number of decimals and of exponent digits for all: "1.50e+000" */
        int d = p->exp_digits;
        if (p->phase == DIGITS && (d = shortest(v, f32, true, buf, sizeof buf)) > p->exp_digits) p->exp_digits = d;
        snprintf(buf, sizeof buf, "%.*e", d, v);
        char *e = strchr(buf, 'e');
        int x = atoi(e + 1);
        int xdigits = snprintf(NULL, 0, "%d", x < 0 ? -x : x);
        if (p->phase == DIGITS && (size_t)xdigits > p->pad_right) p->pad_right = (size_t)xdigits;
        sb_putn(out, buf, (size_t)(e - buf));
        sb_printf(out, "%se%c%0*d", d ? "" : ".", x < 0 ? '-' : '+', (int)(p->pad_right < 2 ? 2 : p->pad_right),
                  x < 0 ? -x : x);
        return;
    }
    shortest(v, f32, false, buf, sizeof buf);
    char *point = strchr(buf, '.');
    size_t left = point ? (size_t)(point - buf) : strlen(buf), right = point ? strlen(point + 1) : 0;
    if (p->phase == DIGITS) {
        if (left > p->pad_left) p->pad_left = left;
        if (right > p->pad_right) p->pad_right = right;
    }
    for (size_t i = left; i < p->pad_left; i++) sb_puts(out, " ");
    sb_putn(out, buf, left);
    sb_puts(out, ".");
    if (right) sb_puts(out, point + 1);
    for (size_t i = right; i < p->pad_right; i++) sb_puts(out, " ");
}

/* Element i as numpy prints it: 1.5, -0., nan, 7, True, b'bytes'. Appended to out. */
static void fmt_elem(printer *p, int64_t i, sbuf *out)
{
    const recur_array *a = p->a;
    switch (recur_array_dtype(a)) {
    case RECUR_F32: fmt_float(p, elem_d(a, i), true, out); break;
    case RECUR_F64: fmt_float(p, elem_d(a, i), false, out); break;
    case RECUR_I32:
    case RECUR_I64: sb_printf(out, "%lld", (long long)elem_i(a, i)); break;
    case RECUR_BOOL: sb_puts(out, elem_i(a, i) ? "True" : "False"); break;
    case RECUR_STRING: {
        size_t len;
        const unsigned char *s = (const unsigned char *)recur_array_string(a, i, &len);
        /* Python's bytes literal: single quotes unless the bytes hold ' and no " */
        bool dq = s && memchr(s, '\'', len) && !memchr(s, '"', len);
        sb_puts(out, dq ? "b\"" : "b'");
        for (size_t k = 0; s && k < len; k++) {
            unsigned c = s[k];
            if (c == '\\' || c == (dq ? '"' : '\'')) sb_printf(out, "\\%c", c);
            else if (c == '\n') sb_puts(out, "\\n");
            else if (c == '\t') sb_puts(out, "\\t");
            else if (c == '\r') sb_puts(out, "\\r");
            else if (c < 0x20 || c >= 0x7f) sb_printf(out, "\\x%02x", c);
            else sb_putn(out, (const char *)&s[k], 1);
        }
        sb_puts(out, dq ? "\"" : "'");
        break;
    }
    default: sb_puts(out, "?"); break;
    }
}

static void pr_raw(printer *p, const char *s)
{
    if (p->phase != PRINT) return;
    fputs(s, p->f);
    p->col += display_width(s);
}

static void pr_newlines(printer *p, int lines, size_t indent)
{
    if (p->phase != PRINT) return;
    for (int i = 0; i < lines; i++) fputc('\n', p->f);
    spaces(p->f, indent);
    p->col = indent;
}

/* One item of the innermost axis, wrapped at LINE_WIDTH like numpy's. */
static void pr_item(printer *p, const char *s, bool pad, bool first, size_t indent)
{
    size_t w = display_width(s), padded = pad && w < p->width ? p->width : w;
    if (p->phase != PRINT) {
        if (p->phase == WIDTH && pad && w > p->width) p->width = w;
        return;
    }
    if (!first) {
        if (p->col + 1 + padded + 1 > LINE_WIDTH) pr_newlines(p, 1, indent);
        else pr_raw(p, " ");
    }
    spaces(p->f, padded - w);
    p->col += padded - w;
    pr_raw(p, s);
}

static void pr_block(printer *p, int axis, int64_t off)
{
    int rank = p->shape.rank;
    int64_t n = p->shape.dims[axis];
    bool cut = p->summarise && n > 2 * EDGE_ITEMS;
    bool pad = recur_array_dtype(p->a) != RECUR_STRING;
    pr_raw(p, "[");
    for (int64_t j = 0; j < n; j++) {
        bool dots = cut && j == EDGE_ITEMS;
        if (axis == rank - 1) {
            if (dots) {
                pr_item(p, "...", false, j == 0, (size_t)rank);
            } else {
                sb_clear(&p->tmp);
                fmt_elem(p, off + j, &p->tmp);
                pr_item(p, p->tmp.s ? p->tmp.s : "", pad, j == 0, (size_t)rank);
            }
        } else {
            if (j) pr_newlines(p, rank - axis - 1, (size_t)axis + 1);
            if (dots) pr_raw(p, "...");
            else pr_block(p, axis + 1, off + j * p->stride[axis]);
        }
        if (dots) j = n - EDGE_ITEMS - 1;
    }
    pr_raw(p, "]");
}

/* Print an array as numpy's str() does, summarising big arrays unless `full`. */
static void print_values(const recur_array *a, bool full, FILE *f)
{
    printer p = {.a = a, .shape = recur_array_shape(a), .f = f};
    int64_t size = recur_array_size(a);
    if (size == 0) {
        fputs(p.shape.rank ? "[]\n" : "\n", f);
        return;
    }
    p.summarise = !full && size > SUMMARY_THRESHOLD;
    int64_t s = 1;
    for (int i = p.shape.rank - 1; i >= 0; i--) {
        p.stride[i] = s;
        s *= p.shape.dims[i];
    }
    for (p.phase = SCAN; p.phase <= PRINT; p.phase++) {
        if (p.phase == DIGITS)
            p.exp = p.max_abs >= 1e8 || (p.min_abs > 0 && (p.min_abs < 1e-4 || p.max_abs / p.min_abs > 1e3));
        if (p.shape.rank == 0) { /* a scalar: just the value (numpy's str of a 0-d array) */
            sb_clear(&p.tmp);
            fmt_elem(&p, 0, &p.tmp);
            if (p.phase == PRINT) /* "1." reads better alone as "1.0", as numpy prints a scalar */
                fprintf(f, "%s%s", p.tmp.s, ends_with(p.tmp.s, ".") ? "0" : "");
        } else {
            pr_block(&p, 0, 0);
        }
    }
    fputc('\n', f);
    free(p.tmp.s);
}

/* ---------------------------------------------------------------- stats */
typedef struct stats {
    int64_t count, nan, finite_count; /* finite_count: elements the moments are over (non-NaN) */
    double min, max, mean, std;
    int64_t imin, imax; /* exact, for integer dtypes */
} stats;

/* min, max, mean and population std over the non-NaN elements; NaNs counted. */
static void compute_stats(const recur_array *a, stats *s)
{
    recur_dtype dt = recur_array_dtype(a);
    int64_t n = recur_array_size(a);
    long double sum = 0;
    *s = (stats){.count = n, .min = INFINITY, .max = -INFINITY, .imin = INT64_MAX, .imax = INT64_MIN};
    for (int64_t i = 0; i < n; i++) {
        double v = elem_d(a, i);
        if (isnan(v)) {
            s->nan++;
            continue;
        }
        s->finite_count++;
        sum += v;
        if (v < s->min) s->min = v;
        if (v > s->max) s->max = v;
        if (!floating(dt)) {
            int64_t x = elem_i(a, i);
            if (x < s->imin) s->imin = x;
            if (x > s->imax) s->imax = x;
        }
    }
    if (!s->finite_count) return;
    s->mean = (double)(sum / (long double)s->finite_count);
    long double ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = elem_d(a, i);
        if (!isnan(v)) ss += ((long double)v - s->mean) * ((long double)v - s->mean);
    }
    s->std = (double)sqrtl(ss / (long double)s->finite_count);
}

/* Append the stats cells (min, max, mean, std, nan) of `a` (NULL: not readable). */
static void stats_cells(table *t, const recur_array *a)
{
    if (!a || !numeric(recur_array_dtype(a))) {
        for (int i = 0; i < 5; i++) tcell(t, "-");
        return;
    }
    stats s;
    compute_stats(a, &s);
    char mn[64], mx[64], mean[64], sd[64];
    if (!s.finite_count) {
        snprintf(mn, sizeof mn, "-");
        snprintf(mx, sizeof mx, "-");
        snprintf(mean, sizeof mean, "-");
        snprintf(sd, sizeof sd, "-");
    } else {
        if (floating(recur_array_dtype(a))) {
            fmt_g(s.min, mn, sizeof mn);
            fmt_g(s.max, mx, sizeof mx);
        } else {
            snprintf(mn, sizeof mn, "%lld", (long long)s.imin);
            snprintf(mx, sizeof mx, "%lld", (long long)s.imax);
        }
        fmt_g(s.mean, mean, sizeof mean);
        fmt_g(s.std, sd, sizeof sd);
    }
    tcell(t, "%s", mn);
    tcell(t, "%s", mx);
    tcell(t, "%s", mean);
    tcell(t, "%s", sd);
    tcell(t, "%lld", (long long)s.nan);
}

/* ================================================================== argument helpers */

typedef struct args {
    int argc;
    char **argv;
    int i;
    bool only_positional; /* after "--" */
} args;

static bool is_option(const args *a, const char *s) { return !a->only_positional && s[0] == '-' && s[1]; }

/* The value of the option at argv[i]; NULL after a message when missing. */
static const char *opt_value(args *a)
{
    if (a->i + 1 >= a->argc) {
        errorf("option %s needs a value", a->argv[a->i]);
        return NULL;
    }
    return a->argv[++a->i];
}

static int usage_error(const char *usage_line)
{
    fprintf(stderr, "%s\nrun 'recur %s --help' for details\n", usage_line, cmd);
    return 2;
}

/* ================================================================== inspect */

static const char *const inspect_usage_line = "usage: recur inspect PREFIX [--stats] [--tensor NAME]... [--full]";

static int inspect_help(void)
{
    printf("%s\n\n"
           "Lists the tensors of a TensorFlow V2 checkpoint (PREFIX.index + PREFIX.data-*) in key order:\n"
           "name, dtype and shape. PREFIX may also be a directory holding a `checkpoint` state file (its\n"
           "latest checkpoint is used) or the checkpoint's .index file.\n\n"
           "  --stats        add min, max, mean, std (population) and the NaN count of each numeric\n"
           "                 tensor; min, max, mean and std are over its non-NaN elements (bool as 0/1)\n"
           "  --tensor NAME  list only this tensor, then print its values (repeatable); tensors of more\n"
           "                 than %d elements are summarised as numpy prints them (the first and last\n"
           "                 %d along each axis)\n"
           "  --full         print every value of a --tensor, however many\n\n"
           "String tensors are listed with their shapes and no stats; their values print as bytes\n"
           "literals. A --tensor NAME the checkpoint lacks is an error naming the nearest keys.\n\n"
           "exit status: 0 done, 1 error (an unreadable checkpoint, an unknown tensor), 2 bad usage\n",
           inspect_usage_line, SUMMARY_THRESHOLD, EDGE_ITEMS);
    return 0;
}

int ckpt_inspect_main(int argc, char **argv)
{
    cmd = "inspect";
    fail_status = 1;
    const char *path = NULL;
    bool with_stats = false, full = false;
    const char **names = xcalloc((size_t)argc + 1, sizeof *names);
    size_t nnames = 0;
    int rc = 0;
    args a = {argc, argv, 1, false};
    for (; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (!a.only_positional && (!strcmp(s, "--help") || !strcmp(s, "-h"))) {
            free(names);
            return inspect_help();
        } else if (!a.only_positional && !strcmp(s, "--")) {
            a.only_positional = true;
        } else if (is_option(&a, s) && !strcmp(s, "--stats")) {
            with_stats = true;
        } else if (is_option(&a, s) && !strcmp(s, "--full")) {
            full = true;
        } else if (is_option(&a, s) && !strcmp(s, "--tensor")) {
            const char *v = opt_value(&a);
            if (!v) goto usage;
            names[nnames++] = v;
        } else if (is_option(&a, s)) {
            errorf("unknown option '%s'", s);
            goto usage;
        } else if (path) {
            errorf("unexpected argument '%s' (one PREFIX only)", s);
            goto usage;
        } else {
            path = s;
        }
    }
    if (!path) {
        errorf("missing PREFIX");
        goto usage;
    }

    char *prefix;
    recur_checkpoint *c = open_checkpoint(path, &prefix);
    if (!c) {
        free(names);
        return 1;
    }
    recur_status *st = xstatus();
    size_t n;
    const char **keys = sorted_keys(c, &n);
    for (size_t k = 0; k < nnames; k++) {
        if (recur_checkpoint_info(c, names[k], NULL, NULL)) continue;
        char *near = nearest_keys(c, names[k], 3);
        errorf("no tensor '%s' in %s%s%s", names[k], prefix, n ? "; nearest keys: " : " (it holds no tensor)", near);
        free(near);
        rc = 1;
    }
    if (rc) goto done;
    if (nnames) {
        keys = xrealloc(keys, (nnames + 1) * sizeof *keys);
        memcpy(keys, names, nnames * sizeof *keys);
        n = nnames;
    }

    int64_t elements = 0;
    size_t total = recur_checkpoint_num_tensors(c);
    for (size_t i = 0; i < total; i++) {
        recur_shape s;
        recur_checkpoint_info(c, recur_checkpoint_key(c, i), NULL, &s);
        int64_t sz = recur_shape_size(s);
        if (sz > 0) elements += sz;
    }
    printf("checkpoint %s: %zu tensor%s, %lld element%s\n", prefix, total, total == 1 ? "" : "s",
           (long long)elements, elements == 1 ? "" : "s");

    table t = with_stats ? table_new(8, "lllrrrrr") : table_new(3, "lll");
    tcell(&t, "name");
    tcell(&t, "dtype");
    tcell(&t, "shape");
    if (with_stats) {
        const char *head[] = {"min", "max", "mean", "std", "nan"};
        for (int i = 0; i < 5; i++) tcell(&t, "%s", head[i]);
    }
    for (size_t i = 0; i < n; i++) {
        recur_dtype dt;
        recur_shape s;
        char sh[256];
        recur_checkpoint_info(c, keys[i], &dt, &s);
        tcell(&t, "%s", keys[i]);
        tcell(&t, "%s", dtype_name(dt));
        tcell(&t, "%s", recur_shape_str(s, sh, sizeof sh));
        if (!with_stats) continue;
        recur_array *v = NULL;
        if (numeric(dt)) {
            v = recur_checkpoint_read(c, keys[i], st);
            if (!v) {
                errorf("%s", recur_status_message(st));
                rc = 1;
            }
        }
        stats_cells(&t, v);
        recur_array_free(v);
    }
    table_print(&t, stdout, 0);
    table_free(&t);

    for (size_t k = 0; k < nnames; k++) {
        recur_dtype dt;
        recur_checkpoint_info(c, names[k], &dt, NULL);
        printf("\n%s:\n", names[k]);
        recur_array *v = readable(dt) ? recur_checkpoint_read(c, names[k], st) : NULL;
        if (!v) {
            if (readable(dt)) errorf("%s", recur_status_message(st));
            else errorf("cannot print %s: recur does not read dtype %s", names[k], dtype_name(dt));
            rc = 1;
            continue;
        }
        print_values(v, full, stdout);
        recur_array_free(v);
    }
done:
    fflush(stdout);
    free(keys);
    recur_status_free(st);
    recur_checkpoint_close(c);
    free(prefix);
    free(names);
    return rc;
usage:
    free(names);
    return usage_error(inspect_usage_line);
}

/* ================================================================== rename maps */

typedef struct map_entry {
    const char *old_name, *new_name; /* as given */
    size_t old_len, new_len;         /* bytes of the scope a name starts with ("/" is the root: 0) */
    bool scope;
    size_t hits;                     /* keys it matches */
} map_entry;

static bool is_scope(const char *s) { return s[0] && s[strlen(s) - 1] == '/'; }

static size_t scope_len(const char *s) { return strcmp(s, "/") ? strlen(s) : 0; }

/* Fill an entry; false after a message when OLD and NEW are not both scopes or both names. */
static bool map_entry_init(map_entry *e, const char *old_name, const char *new_name)
{
    *e = (map_entry){old_name, new_name, scope_len(old_name), scope_len(new_name), is_scope(old_name), 0};
    if (!old_name[0] || !new_name[0]) {
        errorf("map entry '%s=%s': OLD and NEW must not be empty", old_name, new_name);
        return false;
    }
    if (is_scope(old_name) != is_scope(new_name)) {
        errorf("map entry '%s=%s': OLD and NEW must both be scopes ending in '/' or both be key names", old_name,
               new_name);
        return false;
    }
    return true;
}

/* The entry that renames `key`: an exact entry, else the longest matching scope; NULL if none. */
static map_entry *map_lookup(map_entry *m, size_t n, const char *key)
{
    map_entry *hit = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].scope) {
            if (!strcmp(m[i].old_name, key)) return &m[i];
        } else if (!strncmp(key, m[i].old_name, m[i].old_len) && (!hit || m[i].old_len > hit->old_len)) {
            hit = &m[i];
        }
    }
    return hit;
}

/* `key` renamed by the map (new string; a copy of key when no entry covers it). Counts each
 * entry's matches in hits. */
static char *map_apply(map_entry *m, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].scope ? !strncmp(key, m[i].old_name, m[i].old_len) : !strcmp(key, m[i].old_name)) m[i].hits++;
    const map_entry *e = map_lookup(m, n, key);
    if (!e) return xstrdup(key);
    if (!e->scope) return xstrdup(e->new_name);
    return strf("%.*s%s", (int)e->new_len, e->new_name, key + e->old_len);
}

typedef struct renamed {
    const char *old_key;
    char *new_key;
} renamed;

static int renamed_cmp(const void *pa, const void *pb)
{
    const renamed *a = pa, *b = pb;
    int c = strcmp(a->new_key, b->new_key);
    return c ? c : strcmp(a->old_key, b->old_key);
}

/* Rename every key of `keys` (n of them); the result is sorted by new name. */
static renamed *plan_renames(map_entry *m, size_t nm, const char *const *keys, size_t n)
{
    renamed *r = xcalloc(n + 1, sizeof *r);
    for (size_t i = 0; i < n; i++) r[i] = (renamed){keys[i], map_apply(m, nm, keys[i])};
    qsort(r, n, sizeof *r, renamed_cmp);
    return r;
}

static void renamed_free(renamed *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) free(r[i].new_key);
    free(r);
}

/* ================================================================== diff */

static const char *const diff_usage_line = "usage: recur diff PREFIX_A PREFIX_B [--atol X] [--quiet]";

static int diff_help(void)
{
    printf("%s\n\n"
           "Compares two TensorFlow V2 checkpoints: keys only in A or only in B, keys whose dtype or\n"
           "shape changed, and tensors whose values differ (the largest absolute difference and how\n"
           "many elements differ; NaN equals NaN, 0.0 equals -0.0). When B has keys that A lacks, prints\n"
           "the rename map (a key or scope of A -> of B) pairing them by dtype, shape and scope, as the\n"
           "Saver's restore errors suggest it, and the `recur rename` command that applies it. A PREFIX\n"
           "may also be a directory holding a `checkpoint` state file (its latest checkpoint is used).\n\n"
           "  --atol X   elements whose absolute difference is at most X count as equal (default 0)\n"
           "  --quiet    print nothing; only the exit status tells\n\n"
           "exit status (as diff(1)): 0 the checkpoints are the same, 1 they differ, 2 error or bad usage\n",
           diff_usage_line);
    return 0;
}

typedef struct comparison {
    int64_t count, differ;
    double max_abs;       /* over differing elements with a numeric difference */
    bool any_abs;         /* max_abs holds one */
} comparison;

static bool string_equal(const recur_array *x, const recur_array *y, int64_t i)
{
    size_t lx, ly;
    const char *sx = recur_array_string(x, i, &lx), *sy = recur_array_string(y, i, &ly);
    return lx == ly && (!lx || !memcmp(sx, sy, lx));
}

/* Element-wise comparison of two arrays of one dtype and shape. */
static void compare_values(const recur_array *x, const recur_array *y, double atol, comparison *r)
{
    recur_dtype dt = recur_array_dtype(x);
    int64_t n = recur_array_size(x);
    *r = (comparison){.count = n};
    for (int64_t i = 0; i < n; i++) {
        double d;
        if (dt == RECUR_STRING) {
            r->differ += !string_equal(x, y, i);
            continue;
        } else if (floating(dt)) {
            double a = elem_d(x, i), b = elem_d(y, i);
            if (a == b || (isnan(a) && isnan(b))) continue;
            d = fabs(a - b);
        } else {
            int64_t a = elem_i(x, i), b = elem_i(y, i);
            if (a == b) continue;
            d = fabs((double)a - (double)b);
        }
        if (!isnan(d) && d <= atol) continue;
        r->differ++;
        if (!isnan(d) && (!r->any_abs || d > r->max_abs)) r->max_abs = d;
        r->any_abs = r->any_abs || !isnan(d);
    }
}

/* Quote a word for a POSIX shell when it needs it. New. */
static char *shell_quote(const char *s)
{
    bool plain = s[0] != 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!(*p >= 0x80 || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_./=:,+-@%", *p)))
            plain = false;
    if (plain) return xstrdup(s);
    sbuf b = {0};
    sb_puts(&b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'') sb_puts(&b, "'\\''");
        else sb_putn(&b, p, 1);
    }
    sb_puts(&b, "'");
    return sb_take(&b);
}

/* A list of map entries owning their strings. */
typedef struct entry_list {
    map_entry *e;
    size_t n, cap;
    char **owned;
} entry_list;

static void add_entry(entry_list *l, const char *old_name, const char *new_name)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->e = xrealloc(l->e, l->cap * sizeof *l->e);
        l->owned = xrealloc(l->owned, 2 * l->cap * sizeof *l->owned);
    }
    char *o = xstrdup(old_name), *w = xstrdup(new_name);
    l->owned[2 * l->n] = o;
    l->owned[2 * l->n + 1] = w;
    l->e[l->n++] = (map_entry){o, w, scope_len(o), scope_len(w), is_scope(o), 0};
}

static void collect_entry(void *user, const char *old_name, const char *new_name)
{
    add_entry(user, old_name, new_name);
}

static void entry_list_free(entry_list *l)
{
    for (size_t i = 0; i < 2 * l->n; i++) free(l->owned[i]);
    free(l->owned);
    free(l->e);
    *l = (entry_list){0};
}

/* The key of A that a suggested map (read as recur_init_from_checkpoint reads it: the exact
 * entry for B's `key`, else the longest scope holding it) gives B's `key`. New or NULL. */
static char *reverse_lookup(const entry_list *l, const char *key)
{
    const map_entry *hit = NULL;
    for (size_t i = 0; i < l->n; i++) {
        const map_entry *e = &l->e[i];
        if (!e->scope) {
            if (!strcmp(e->new_name, key)) {
                hit = e;
                break;
            }
        } else if (!strncmp(key, e->new_name, e->new_len) && (!hit || e->new_len > hit->new_len)) {
            hit = e;
        }
    }
    if (!hit) return NULL;
    return hit->scope ? strf("%.*s%s", (int)hit->old_len, hit->old_name, key + hit->new_len) : xstrdup(hit->old_name);
}

typedef struct key_pair {
    char *a;       /* a key only in A */
    const char *b; /* the key only in B it becomes */
} key_pair;

static int pair_cmp_a(const void *x, const void *y) { return strcmp(((const key_pair *)x)->a, ((const key_pair *)y)->a); }

static const key_pair *find_pair(const key_pair *p, size_t n, const char *a)
{
    key_pair k = {(char *)a, NULL};
    return bsearch(&k, p, n, sizeof *p, pair_cmp_a);
}

static int entry_cmp_new(const void *x, const void *y)
{
    return strcmp(((const map_entry *)x)->new_name, ((const map_entry *)y)->new_name);
}

/* The suggested map turned into one `recur rename` applies forwards (old -> new) with the same
 * result: a scope entry is kept only when every key of A under its OLD is paired with a key of
 * B by that very change (and no other scope entry has the same OLD); the pairs no kept scope
 * explains become exact entries. */
static void forward_map(const entry_list *sug, const recur_checkpoint *ca, const recur_checkpoint *cb,
                        const char *const *ka, size_t na, const char *const *kb, size_t nb, entry_list *out)
{
    key_pair *p = xcalloc(nb + 1, sizeof *p);
    size_t np = 0;
    for (size_t j = 0; j < nb; j++) {
        if (recur_checkpoint_info(ca, kb[j], NULL, NULL)) continue;
        char *a = reverse_lookup(sug, kb[j]);
        if (a && recur_checkpoint_info(ca, a, NULL, NULL) && !recur_checkpoint_info(cb, a, NULL, NULL))
            p[np++] = (key_pair){a, kb[j]};
        else
            free(a);
    }
    qsort(p, np, sizeof *p, pair_cmp_a);
    size_t kept = 0; /* drop a second pairing of one key of A (the suggestion pairs one to one) */
    for (size_t i = 0; i < np; i++) {
        if (kept && !strcmp(p[kept - 1].a, p[i].a)) free(p[i].a);
        else p[kept++] = p[i];
    }
    np = kept;
    bool *valid = xcalloc(sug->n + 1, sizeof *valid);
    for (size_t i = 0; i < sug->n; i++) {
        const map_entry *e = &sug->e[i];
        if (!e->scope) continue;
        bool ok = true;
        for (size_t j = 0; ok && j < sug->n; j++) ok = j == i || !sug->e[j].scope || strcmp(sug->e[j].old_name, e->old_name);
        for (size_t k = 0; ok && k < na; k++) {
            if (strncmp(ka[k], e->old_name, e->old_len)) continue;
            const key_pair *q = find_pair(p, np, ka[k]);
            ok = q && !strncmp(q->b, e->new_name, e->new_len) && !strcmp(q->b + e->new_len, ka[k] + e->old_len);
        }
        if ((valid[i] = ok)) add_entry(out, e->old_name, e->new_name);
    }
    size_t nscopes = out->n;
    for (size_t k = 0; k < np; k++) {
        bool explained = false;
        for (size_t i = 0; !explained && i < sug->n; i++)
            explained = valid[i] && !strncmp(p[k].a, sug->e[i].old_name, sug->e[i].old_len);
        if (!explained) add_entry(out, p[k].a, p[k].b);
    }
    /* the exact entries in the order of B's names */
    qsort(out->e + nscopes, out->n - nscopes, sizeof *out->e, entry_cmp_new);
    for (size_t k = 0; k < np; k++) free(p[k].a);
    free(p);
    free(valid);
}

/* Print the suggested map from A's keys to B's, the rename command and what it would leave. */
static int print_suggestion(const recur_checkpoint *ca, const recur_checkpoint *cb, const char *arg_a,
                            const char *const *ka, size_t na, const char *const *kb, size_t nb)
{
    recur_status *st = xstatus();
    entry_list sug = {0}, fwd = {0};
    long n = recur_checkpoint_suggest_map(ca, cb, collect_entry, &sug, st);
    if (n < 0) {
        errorf("%s", recur_status_message(st));
        recur_status_free(st);
        entry_list_free(&sug);
        return 2;
    }
    recur_status_free(st);
    if (n > 0) forward_map(&sug, ca, cb, ka, na, kb, nb, &fwd);
    entry_list_free(&sug);
    if (!fwd.n) {
        printf("\nno renaming of A's keys gives B's (none pairs up by dtype, shape and name)\n");
        return 0;
    }
    printf("\nsuggested name map (key or scope of A -> of B):\n");
    table t = table_new(3, "lll");
    for (size_t i = 0; i < fwd.n; i++) {
        tcell(&t, "%s", fwd.e[i].old_name);
        tcell(&t, "->");
        tcell(&t, "%s", fwd.e[i].new_name);
    }
    table_print(&t, stdout, 2);
    table_free(&t);
    sbuf c = {0};
    char *q = shell_quote(arg_a);
    sb_printf(&c, "recur rename %s", q);
    free(q);
    for (size_t i = 0; i < fwd.n; i++) {
        char *entry = strf("%s=%s", fwd.e[i].old_name, fwd.e[i].new_name);
        q = shell_quote(entry);
        sb_printf(&c, " --map %s", q);
        free(q);
        free(entry);
    }
    sb_puts(&c, " --out NEW_PREFIX");
    printf("to rename A's keys so:\n  %s\n", c.s);
    free(c.s);

    /* What the renamed A would still not share with B. */
    renamed *r = plan_renames(fwd.e, fwd.n, ka, na);
    size_t only_a = 0, only_b = 0, collisions = 0, i = 0, j = 0;
    for (size_t k = 1; k < na; k++) collisions += !strcmp(r[k - 1].new_key, r[k].new_key);
    while (i < na || j < nb) {
        int order = i == na ? 1 : j == nb ? -1 : strcmp(r[i].new_key, kb[j]);
        if (order < 0) only_a++, i++;
        else if (order > 0) only_b++, j++;
        else i++, j++;
    }
    renamed_free(r, na);
    if (collisions) printf("(with this map %zu keys of A would collide)\n", collisions);
    else if (!only_a && !only_b) printf("after which A has exactly B's keys\n");
    else printf("after which %zu keys remain only in A and %zu only in B\n", only_a, only_b);
    entry_list_free(&fwd);
    return 0;
}

int ckpt_diff_main(int argc, char **argv)
{
    cmd = "diff";
    fail_status = 2;
    const char *path[2] = {NULL, NULL};
    double atol = 0;
    bool quiet = false;
    args a = {argc, argv, 1, false};
    for (; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (!a.only_positional && (!strcmp(s, "--help") || !strcmp(s, "-h"))) {
            return diff_help();
        } else if (!a.only_positional && !strcmp(s, "--")) {
            a.only_positional = true;
        } else if (is_option(&a, s) && (!strcmp(s, "--quiet") || !strcmp(s, "-q"))) {
            quiet = true;
        } else if (is_option(&a, s) && !strcmp(s, "--atol")) {
            const char *v = opt_value(&a);
            char *end;
            if (!v) return usage_error(diff_usage_line);
            atol = strtod(v, &end);
            if (*end || end == v || !(atol >= 0)) {
                errorf("--atol expects a number >= 0, got '%s'", v);
                return usage_error(diff_usage_line);
            }
        } else if (is_option(&a, s)) {
            errorf("unknown option '%s'", s);
            return usage_error(diff_usage_line);
        } else if (path[1]) {
            errorf("unexpected argument '%s' (two PREFIXes only)", s);
            return usage_error(diff_usage_line);
        } else {
            path[path[0] ? 1 : 0] = s;
        }
    }
    if (!path[1]) {
        errorf("%s", path[0] ? "missing PREFIX_B" : "missing PREFIX_A and PREFIX_B");
        return usage_error(diff_usage_line);
    }

    char *prefix[2] = {NULL, NULL};
    recur_checkpoint *c[2] = {NULL, NULL};
    c[0] = open_checkpoint(path[0], &prefix[0]);
    if (c[0]) c[1] = open_checkpoint(path[1], &prefix[1]);
    if (!c[0] || !c[1]) {
        recur_checkpoint_close(c[0]);
        free(prefix[0]);
        return 2;
    }
    size_t n[2];
    const char **k[2] = {sorted_keys(c[0], &n[0]), sorted_keys(c[1], &n[1])};
    recur_status *st = xstatus();
    table only[2] = {table_new(3, "lll"), table_new(3, "lll")};
    table changed = table_new(3, "lll"), values = table_new(3, "lrr");
    tcell(&changed, "name");
    tcell(&changed, "A");
    tcell(&changed, "B");
    tcell(&values, "name");
    tcell(&values, "max abs diff");
    tcell(&values, "differing elements");
    size_t common = 0, value_diffs = 0;
    bool error = false;
    for (size_t i = 0, j = 0; i < n[0] || j < n[1];) {
        int order = i == n[0] ? 1 : j == n[1] ? -1 : strcmp(k[0][i], k[1][j]);
        if (order) {
            int side = order < 0 ? 0 : 1;
            const char *key = side ? k[1][j++] : k[0][i++];
            recur_dtype dt;
            recur_shape s;
            char sh[256];
            recur_checkpoint_info(c[side], key, &dt, &s);
            tcell(&only[side], "%s", key);
            tcell(&only[side], "%s", dtype_name(dt));
            tcell(&only[side], "%s", recur_shape_str(s, sh, sizeof sh));
            continue;
        }
        const char *key = k[0][i++];
        j++;
        common++;
        recur_dtype dt[2];
        recur_shape s[2];
        for (int side = 0; side < 2; side++) recur_checkpoint_info(c[side], key, &dt[side], &s[side]);
        bool same_shape = s[0].rank == s[1].rank;
        for (int d = 0; same_shape && d < s[0].rank; d++) same_shape = s[0].dims[d] == s[1].dims[d];
        if (dt[0] != dt[1] || !same_shape) {
            char sh0[256], sh1[256];
            tcell(&changed, "%s", key);
            tcell(&changed, "%s %s", dtype_name(dt[0]), recur_shape_str(s[0], sh0, sizeof sh0));
            tcell(&changed, "%s %s", dtype_name(dt[1]), recur_shape_str(s[1], sh1, sizeof sh1));
            continue;
        }
        if (!readable(dt[0])) {
            errorf("cannot compare %s: recur does not read dtype %s", key, dtype_name(dt[0]));
            error = true;
            continue;
        }
        recur_array *v0 = recur_checkpoint_read(c[0], key, st), *v1 = NULL;
        if (v0) v1 = recur_checkpoint_read(c[1], key, st);
        if (!v0 || !v1) {
            errorf("%s", recur_status_message(st));
            error = true;
            recur_array_free(v0);
            continue;
        }
        comparison r;
        compare_values(v0, v1, atol, &r);
        recur_array_free(v0);
        recur_array_free(v1);
        if (!r.differ) continue;
        value_diffs++;
        char md[64];
        if (r.any_abs) fmt_g(r.max_abs, md, sizeof md);
        else snprintf(md, sizeof md, dt[0] == RECUR_STRING ? "-" : "nan");
        tcell(&values, "%s", key);
        tcell(&values, "%s", md);
        tcell(&values, "%lld of %lld", (long long)r.differ, (long long)r.count);
    }
    size_t nonly[2] = {table_rows(&only[0]), table_rows(&only[1])}, nchanged = table_rows(&changed) - 1;
    bool differ = nonly[0] || nonly[1] || nchanged || value_diffs;
    int rc = error ? 2 : differ ? 1 : 0;
    if (quiet) goto done;
    printf("A: %s (%zu tensors)\nB: %s (%zu tensors)\n", prefix[0], n[0], prefix[1], n[1]);
    for (int side = 0; side < 2; side++) {
        if (!nonly[side]) continue;
        printf("\nonly in %c (%zu):\n", "AB"[side], nonly[side]);
        table_print(&only[side], stdout, 2);
    }
    if (nchanged) {
        printf("\ndtype or shape changed (%zu):\n", nchanged);
        table_print(&changed, stdout, 2);
    }
    if (value_diffs) {
        printf("\nvalues differ (%zu of %zu tensors in both%s):\n", value_diffs, common,
               atol > 0 ? ", beyond --atol" : "");
        table_print(&values, stdout, 2);
    }
    if (nonly[1] && nonly[0]) {
        int s = print_suggestion(c[0], c[1], path[0], k[0], n[0], k[1], n[1]);
        if (s) rc = s;
    }
    printf("\n");
    if (error)
        printf("A and B could not be fully compared (see the errors above)\n");
    else if (!differ)
        printf("A and B are the same: %zu tensors, equal names, dtypes, shapes and values%s\n", common,
               atol > 0 ? " (within --atol)" : "");
    else {
        sbuf parts = {0};
        if (nonly[0]) sb_printf(&parts, ", %zu key%s only in A", nonly[0], nonly[0] == 1 ? "" : "s");
        if (nonly[1]) sb_printf(&parts, ", %zu key%s only in B", nonly[1], nonly[1] == 1 ? "" : "s");
        if (nchanged) sb_printf(&parts, ", %zu dtype or shape change%s", nchanged, nchanged == 1 ? "" : "s");
        if (value_diffs)
            sb_printf(&parts, ", %zu of %zu tensors in both with different values", value_diffs, common);
        printf("A and B differ: %s\n", parts.s + 2);
        free(parts.s);
    }
done:
    fflush(stdout);
    table_free(&only[0]);
    table_free(&only[1]);
    table_free(&changed);
    table_free(&values);
    recur_status_free(st);
    for (int side = 0; side < 2; side++) {
        free(k[side]);
        free(prefix[side]);
        recur_checkpoint_close(c[side]);
    }
    return rc;
}

/* ================================================================== rename */

static const char *const rename_usage_line =
    "usage: recur rename PREFIX --map OLD=NEW [--map OLD=NEW]... --out NEW_PREFIX [--dry-run]";

static int rename_help(void)
{
    printf("%s\n\n"
           "Writes a copy of checkpoint PREFIX at NEW_PREFIX with keys renamed and values unchanged. As\n"
           "in TensorFlow's assignment maps, OLD and NEW are either key names (--map dense/w=out/kernel)\n"
           "or, when both end in '/', scopes: --map layer1/=encoder/ turns layer1/rnn/basic_lstm_cell/\n"
           "kernel into encoder/rnn/basic_lstm_cell/kernel. '/' alone is the root: --map /=model/ puts\n"
           "every key under model/, --map model/=/ takes them out. An exact entry wins over scopes and a\n"
           "longer scope over a shorter one; keys no entry covers keep their names. OLD ends at the\n"
           "first '='. PREFIX may also be a directory holding a `checkpoint` state file.\n\n"
           "  --map OLD=NEW     a rename (repeatable; at least one)\n"
           "  --out NEW_PREFIX  the checkpoint to write (NEW_PREFIX.index and\n"
           "                    NEW_PREFIX.data-00000-of-00001), never PREFIX itself; written under\n"
           "                    temporary names and renamed into place, as the Saver does. Its\n"
           "                    directory is created if needed; no `checkpoint` state file is written.\n"
           "  --dry-run         print the renames without writing anything\n\n"
           "It is an error when a map entry matches no key, or when two keys would get the same name.\n\n"
           "exit status: 0 done, 1 error, 2 bad usage\n",
           rename_usage_line);
    return 0;
}

static char *path_dir(const char *p)
{
    const char *slash = strrchr(p, '/');
    if (!slash) return xstrdup(".");
    if (slash == p) return xstrdup("/");
    return xstrndup(p, (size_t)(slash - p));
}

static const char *path_base(const char *p)
{
    const char *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Whether two prefixes name the same checkpoint files. */
static bool same_checkpoint(const char *a, const char *b)
{
    if (!strcmp(a, b)) return true;
    char *da = path_dir(a), *db = path_dir(b);
    char ra[PATH_MAX], rb[PATH_MAX];
    bool same = !strcmp(path_base(a), path_base(b)) && realpath(da, ra) && realpath(db, rb) && !strcmp(ra, rb);
    free(da);
    free(db);
    const char *ext[] = {".index", ".data-00000-of-00001"};
    for (int i = 0; !same && i < 2; i++) {
        char *fa = strf("%s%s", a, ext[i]), *fb = strf("%s%s", b, ext[i]);
        same = same_file(fa, fb);
        free(fa);
        free(fb);
    }
    return same;
}

int ckpt_rename_main(int argc, char **argv)
{
    cmd = "rename";
    fail_status = 1;
    const char *path = NULL, *out = NULL;
    char *out_prefix = NULL;
    bool dry_run = false;
    map_entry *m = xcalloc((size_t)argc + 1, sizeof *m);
    char **owned = xcalloc((size_t)argc + 1, sizeof *owned); /* OLD parts split off the --map values */
    size_t nm = 0;
    int rc = 0;
    args a = {argc, argv, 1, false};
    for (; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (!a.only_positional && (!strcmp(s, "--help") || !strcmp(s, "-h"))) {
            rc = rename_help();
            goto free_args;
        } else if (!a.only_positional && !strcmp(s, "--")) {
            a.only_positional = true;
        } else if (is_option(&a, s) && !strcmp(s, "--dry-run")) {
            dry_run = true;
        } else if (is_option(&a, s) && !strcmp(s, "--out")) {
            if (!(out = opt_value(&a))) goto usage;
        } else if (is_option(&a, s) && !strcmp(s, "--map")) {
            const char *v = opt_value(&a), *eq = v ? strchr(v, '=') : NULL;
            if (!v) goto usage;
            if (!eq) {
                errorf("--map expects OLD=NEW, got '%s'", v);
                goto usage;
            }
            owned[nm] = xstrndup(v, (size_t)(eq - v));
            if (!map_entry_init(&m[nm], owned[nm], eq + 1)) {
                nm++;
                goto usage;
            }
            for (size_t i = 0; i < nm; i++)
                if (!strcmp(m[i].old_name, owned[nm])) {
                    errorf("--map %s is given twice", owned[nm]);
                    nm++;
                    goto usage;
                }
            nm++;
        } else if (is_option(&a, s)) {
            errorf("unknown option '%s'", s);
            goto usage;
        } else if (path) {
            errorf("unexpected argument '%s' (one PREFIX only)", s);
            goto usage;
        } else {
            path = s;
        }
    }
    if (!path || !nm || (!out && !dry_run)) {
        errorf("%s", !path ? "missing PREFIX" : !nm ? "at least one --map OLD=NEW is required"
                                                    : "--out NEW_PREFIX is required");
        goto usage;
    }
    if (out && !out[0]) {
        errorf("--out needs a checkpoint prefix, got ''");
        goto usage;
    }
    if (out && (ends_with(out, ".index") || data_suffix_start(out))) /* a file of the prefix */
        out = out_prefix = xstrndup(out, ends_with(out, ".index") ? strlen(out) - 6 : data_suffix_start(out));

    char *prefix;
    recur_checkpoint *c = open_checkpoint(path, &prefix);
    if (!c) {
        rc = 1;
        goto free_args;
    }
    size_t n;
    const char **keys = sorted_keys(c, &n);
    renamed *r = plan_renames(m, nm, keys, n);
    for (size_t i = 0; i < nm; i++) {
        if (m[i].hits) continue;
        const char *what = m[i].scope ? "no key lies under scope" : "no key is named";
        char *near = nearest_keys(c, m[i].old_name, 3);
        char *under = strf("%s/", m[i].old_name);
        bool scope_exists = false;
        for (size_t k = 0; !m[i].scope && k < n; k++) scope_exists |= !strncmp(keys[k], under, strlen(under));
        if (scope_exists)
            errorf("map entry '%s=%s' matches nothing: %s '%s' (to rename the scope, end both sides with '/': "
                   "--map %s/=%s/)", m[i].old_name, m[i].new_name, what, m[i].old_name, m[i].old_name, m[i].new_name);
        else
            errorf("map entry '%s=%s' matches nothing: %s '%s'%s%s", m[i].old_name, m[i].new_name, what,
                   m[i].old_name, n ? "; nearest keys: " : "", near);
        free(under);
        free(near);
        rc = 1;
    }
    size_t ncollide = 0;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(r[i - 1].new_key, r[i].new_key)) continue;
        if (ncollide++ < 20)
            errorf("keys '%s' and '%s' would both be named '%s'", r[i - 1].old_key, r[i].old_key, r[i].new_key);
    }
    if (ncollide > 20) errorf("... and %zu more collisions", ncollide - 20);
    if (ncollide) rc = 1;
    for (size_t i = 0; i < n; i++)
        if (!r[i].new_key[0]) {
            errorf("key '%s' would get an empty name", r[i].old_key);
            rc = 1;
        }
    if (!rc && out && same_checkpoint(prefix, out)) {
        errorf("--out %s is the input checkpoint %s; give another prefix (the input is never overwritten)", out,
               prefix);
        rc = 1;
    }
    if (!rc && out && is_dir(out)) {
        errorf("--out %s is a directory; give a checkpoint prefix such as %s/model.ckpt", out, out);
        rc = 1;
    }

    recur_status *st = xstatus();
    recur_checkpoint_writer *w = NULL;
    if (!rc && !dry_run && !(w = recur_checkpoint_writer_new(out, st))) {
        errorf("%s", recur_status_message(st));
        rc = 1;
    }
    for (size_t i = 0; w && !rc && i < n; i++) { /* in new-key order, as the Saver writes */
        recur_dtype dt;
        recur_checkpoint_info(c, r[i].old_key, &dt, NULL);
        recur_array *v = readable(dt) ? recur_checkpoint_read(c, r[i].old_key, st) : NULL;
        if (!v) {
            if (readable(dt)) errorf("%s", recur_status_message(st));
            else errorf("cannot copy %s: recur does not read dtype %s", r[i].old_key, dtype_name(dt));
            rc = 1;
        } else if (recur_checkpoint_writer_add(w, r[i].new_key, v, st) != RECUR_OK) {
            errorf("%s", recur_status_message(st));
            rc = 1;
        }
        recur_array_free(v);
    }
    if (w && !rc && recur_checkpoint_writer_finish(w, st) != RECUR_OK) {
        errorf("%s", recur_status_message(st));
        rc = 1;
    }
    recur_checkpoint_writer_free(w); /* removes the temporary files of an unfinished checkpoint */
    if (!rc) {
        table t = table_new(3, "lll");
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(r[i].old_key, r[i].new_key)) continue;
            tcell(&t, "%s", r[i].old_key);
            tcell(&t, "->");
            tcell(&t, "%s", r[i].new_key);
        }
        size_t nrenamed = table_rows(&t);
        table_print(&t, stdout, 2);
        table_free(&t);
        if (dry_run)
            printf("%zu of %zu keys would be renamed%s%s (dry run: nothing written)\n", nrenamed, n,
                   out ? "; output " : "", out ? out : "");
        else
            printf("wrote %s: %zu tensors, %zu renamed\n", out, n, nrenamed);
    }
    fflush(stdout);
    recur_status_free(st);
    renamed_free(r, n);
    free(keys);
    recur_checkpoint_close(c);
    free(prefix);
free_args:
    free(out_prefix);
    for (size_t i = 0; i < nm; i++) free(owned[i]);
    free(owned);
    free(m);
    return rc;
usage:
    rc = usage_error(rename_usage_line);
    goto free_args;
}
