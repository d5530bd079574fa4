/*
 * fuzz_targets.c - the fuzz targets of fuzz_targets.h: recur's readers of outside data driven
 * through the public API on files in a private directory (recur reads checkpoints and state
 * files only from paths), plus round trips whose results are checked:
 *
 *   ckpt_index   recur_checkpoint_open on the index (table, blocks, BundleHeaderProto,
 *                BundleEntryProto checks), then every tensor as in ckpt_bundle.
 *   ckpt_bundle  open, list, info and read every tensor; checkpoints that read write back
 *                through recur_checkpoint_writer and must read back the same; rename-map
 *                suggestions between the input and a fixed checkpoint, both ways.
 *   state_file   recur_latest_checkpoint (large and small buffers), and the parsed state
 *                written and parsed again, which must give the same paths.
 *   text_data    clf_load (labelled and not) and the vocabulary of `recur train`.
 *
 * TensorBoard event files are only written by recur, never read, so they have no target.
 */
#include "fuzz_targets.h"

#include "recur.h"
#include "io/io.h"
#include "io/checkpoint.pb-c.h"
#include "../tools/classifier.h"

#include <fcntl.h>
#include <ftw.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- files */
static char g_dir[256];                 /* the private directory; "" before setup */
static recur_checkpoint *g_ref;         /* a fixed checkpoint for the rename-map suggestions */
static volatile uint32_t g_sink;        /* keeps reads of string elements */

/* Prints through the sanitizers' report stream when they are linked in: libFuzzer runs with
 * stderr closed (-close_fd_mask) but keeps that stream. */
void __sanitizer_report_error_summary(const char *summary) __attribute__((weak));

_Noreturn static void die(const char *what, const char *detail)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "fuzz: %s%s%s", what, detail ? ": " : "", detail ? detail : "");
    if (__sanitizer_report_error_summary) __sanitizer_report_error_summary(msg);
    else dprintf(2, "%s\n", msg);
    abort();
}

static const char *path_in(const char *name)
{
    static char buf[4][512];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

static void write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !rc_write_all(fd, data, n) || close(fd) != 0) die("cannot write", path);
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *b = malloc(n + 1);
    if (!b) die("out of memory", NULL);
    if (n) memcpy(b, p, n);
    return b;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void fuzz_cleanup(void)
{
    recur_checkpoint_close(g_ref);
    g_ref = NULL;
    if (g_dir[0]) nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = 0;
}

static void write_reference_checkpoint(void);

/* Make the private directory and the fixed files the targets use. */
static void setup(void)
{
    static bool registered;
    if (g_dir[0]) return;
    const char *bases[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof bases[0] && !g_dir[0]; i++) {
        if (!bases[i] || !bases[i][0]) continue;
        snprintf(g_dir, sizeof g_dir, "%s/recur_fuzz_XXXXXX", bases[i]);
        if (!mkdtemp(g_dir)) g_dir[0] = 0;
    }
    if (!g_dir[0]) die("cannot make a temporary directory", NULL);
    if (!registered) atexit(fuzz_cleanup);
    registered = true;
    if (mkdir(path_in("state"), 0755) != 0) die("cannot make", path_in("state"));
    write_file(path_in("state/ckpt.index"), "", 0); /* so "ckpt" is a checkpoint that exists */
    uint8_t fixed[4096];
    for (size_t i = 0; i < sizeof fixed; i++) fixed[i] = (uint8_t)(i * 131 + (i >> 8));
    write_file(path_in("idx.data-00000-of-00001"), fixed, sizeof fixed);
    write_reference_checkpoint();
}

/* ---------------------------------------------------------------- table checksums */
static void put_fixed32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* Recompute the trailer checksum of the block at [off, off+len) when it lies in the file. */
static void fix_block(uint8_t *f, size_t n, uint64_t off, uint64_t len)
{
    if (off > n || len > n - off || n - off - len < 5) return;
    put_fixed32(f + off + len + 1, rc_crc32c_mask(rc_crc32c_extend(0, f + off, (size_t)len + 1)));
}

/* Recompute the checksums of the metaindex block, the index block and every data block the
 * index block names, tolerating anything malformed (what cannot be found is left alone). */
static void fix_table_checksums(uint8_t *f, size_t n)
{
    if (n < 48) return;
    const uint8_t *p = f + n - 48, *end = f + n - 8;
    uint64_t meta[2], idx[2];
    if (!rc_get_varint(&p, end, &meta[0]) || !rc_get_varint(&p, end, &meta[1]) ||
        !rc_get_varint(&p, end, &idx[0]) || !rc_get_varint(&p, end, &idx[1]))
        return;
    fix_block(f, n, meta[0], meta[1]);
    if (idx[0] > n || idx[1] > n - idx[0] || n - idx[0] - idx[1] < 5) return;
    size_t len = (size_t)idx[1], ulen = len;
    const uint8_t *raw = f + idx[0];
    uint8_t *b = NULL;
    if (raw[len] == 1) { /* snappy-compressed index block */
        if (snappy_uncompressed_length((const char *)raw, len, &ulen) != SNAPPY_OK || ulen > (64u << 20) ||
            !(b = malloc(ulen + 1)) || snappy_uncompress((const char *)raw, len, (char *)b, &ulen) != SNAPPY_OK)
            ulen = 0;
    } else if ((b = malloc(len + 1))) {
        memcpy(b, raw, len);
    } else {
        ulen = 0;
    }
    if (b && ulen >= 4) {
        uint32_t nrestarts = rc_get_fixed32(b + ulen - 4);
        const uint8_t *q = b, *qend = nrestarts <= (ulen - 4) / 4 ? b + ulen - 4 - 4 * (size_t)nrestarts : b + ulen;
        uint64_t shared, nonshared, vlen, h[2];
        while (rc_get_varint(&q, qend, &shared) && rc_get_varint(&q, qend, &nonshared) &&
               rc_get_varint(&q, qend, &vlen) && nonshared <= (size_t)(qend - q) &&
               vlen <= (size_t)(qend - q) - nonshared) {
            const uint8_t *hp = q + nonshared, *hend = hp + vlen;
            if (rc_get_varint(&hp, hend, &h[0]) && rc_get_varint(&hp, hend, &h[1])) fix_block(f, n, h[0], h[1]);
            q += nonshared + vlen;
        }
    }
    free(b);
    fix_block(f, n, idx[0], idx[1]);
}

/* ---------------------------------------------------------------- entry checksums */
typedef struct kv {
    uint8_t *key, *val;
    size_t klen, vlen;
} kv;

typedef struct kv_list {
    kv *e;
    size_t n, cap;
} kv_list;

static recur_code collect(void *ctx, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                          recur_status *st)
{
    kv_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        if (!(l->e = realloc(l->e, l->cap * sizeof *l->e))) die("out of memory", NULL);
    }
    kv *e = &l->e[l->n++];
    e->key = malloc(klen + 1);
    e->val = malloc(vlen + 1);
    if (!e->key || !e->val) die("out of memory", NULL);
    memcpy(e->key, key, klen);
    memcpy(e->val, val, vlen);
    e->klen = klen;
    e->vlen = vlen;
    return RECUR_OK;
}

/* The masked entry checksum of the bytes of one tensor, after writing a DT_STRING tensor's
 * length checksum into them (the layout bundle.c's decode_strings reads). */
static uint32_t entry_checksum(const Recur__BundleEntryProto *p, uint8_t *d, size_t size)
{
    if (p->dtype != RECUR__DATA_TYPE__DT_STRING) return rc_crc32c_mask(rc_crc32c_extend(0, d, size));
    uint64_t count = 1;
    for (size_t i = 0; p->shape && i < p->shape->n_dim; i++) {
        int64_t dim = p->shape->dim[i]->size;
        if (dim < 0 || (dim && count > (uint64_t)INT64_MAX / (uint64_t)dim)) return p->crc32c;
        count *= (uint64_t)dim;
    }
    const uint8_t *q = d, *end = d + size;
    uint32_t lcrc = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t len;
        if (!rc_get_varint(&q, end, &len)) return p->crc32c;
        uint8_t fixed[8];
        for (int k = 0; k < 8; k++) fixed[k] = (uint8_t)(len >> (8 * k));
        lcrc = rc_crc32c_extend(lcrc, fixed, len > UINT32_MAX ? 8 : 4);
    }
    if (end - q < 4) return p->crc32c;
    uint8_t *lp = d + (q - d);
    put_fixed32(lp, rc_crc32c_mask(lcrc));
    return rc_crc32c_mask(rc_crc32c_extend(lcrc, lp, (size_t)(end - lp)));
}

/* Rebuild the index with every entry's checksum recomputed over the data it points at (the
 * data buffer is updated for string tensors). Leaves *index alone when it is not a table. */
static void fix_entry_checksums(uint8_t **index, size_t *ilen, uint8_t *data, size_t dlen)
{
    kv_list l = {0};
    recur_status *st = recur_status_new();
    if (!st) die("out of memory", NULL);
    bool ok = rc_table_scan(*index, *ilen, "index", collect, &l, st) == RECUR_OK && l.n;
    for (size_t i = 0; ok && i < l.n; i++) {
        if (!l.e[i].klen) continue; /* the header */
        Recur__BundleEntryProto *p = recur__bundle_entry_proto__unpack(NULL, l.e[i].vlen, l.e[i].val);
        if (!p) continue;
        if (p->offset >= 0 && p->size >= 0 && (uint64_t)p->offset <= dlen &&
            (uint64_t)p->size <= dlen - (uint64_t)p->offset) {
            p->crc32c = entry_checksum(p, data + p->offset, (size_t)p->size);
            size_t n = protobuf_c_message_get_packed_size(&p->base);
            uint8_t *v = malloc(n + 1);
            if (!v) die("out of memory", NULL);
            protobuf_c_message_pack(&p->base, v);
            free(l.e[i].val);
            l.e[i].val = v;
            l.e[i].vlen = n;
        }
        recur__bundle_entry_proto__free_unpacked(p, NULL);
    }
    if (ok) {
        rc_table_entry *te = calloc(l.n, sizeof *te);
        rc_strbuf out;
        rc_sb_init(&out);
        if (!te) die("out of memory", NULL);
        for (size_t i = 0; i < l.n; i++) te[i] = (rc_table_entry){l.e[i].key, l.e[i].klen, l.e[i].val, l.e[i].vlen};
        if (!rc_table_build(te, l.n, &out)) die("out of memory", NULL);
        free(*index);
        *index = dup_bytes((const uint8_t *)out.s, out.len);
        *ilen = out.len;
        rc_sb_free(&out);
        free(te);
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.e[i].key);
        free(l.e[i].val);
    }
    free(l.e);
    recur_status_free(st);
}

/* ---------------------------------------------------------------- checkpoints */
static void write_reference_checkpoint(void)
{
    static const struct {
        const char *key;
        recur_dtype dt;
        recur_shape shape;
    } vars[] = {
        {"dense/bias", RECUR_F32, RECUR_SHAPE(2)},
        {"dense/kernel", RECUR_F32, RECUR_SHAPE(4, 2)},
        {"global_step", RECUR_I64, RECUR_SCALAR},
        {"layer1/rnn/basic_lstm_cell/bias", RECUR_F32, RECUR_SHAPE(8)},
        {"layer1/rnn/basic_lstm_cell/kernel", RECUR_F32, RECUR_SHAPE(3, 8)},
        {"layer2/weights", RECUR_F64, RECUR_SHAPE(2, 2)},
        {"mask", RECUR_BOOL, RECUR_SHAPE(3)},
        {"steps", RECUR_I32, RECUR_SHAPE(1)},
    };
    recur_status *st = recur_status_new();
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(path_in("ref"), st);
    for (size_t i = 0; w && i < sizeof vars / sizeof vars[0]; i++) {
        recur_array *a = recur_array_new(vars[i].dt, vars[i].shape, st);
        if (!a || recur_checkpoint_writer_add(w, vars[i].key, a, st) != RECUR_OK) die("reference checkpoint", recur_status_message(st));
        recur_array_free(a);
    }
    if (!w || recur_checkpoint_writer_finish(w, st) != RECUR_OK) die("reference checkpoint", recur_status_message(st));
    recur_checkpoint_writer_free(w);
    recur_checkpoint_close(g_ref);
    if (!(g_ref = recur_checkpoint_open(path_in("ref"), st))) die("reference checkpoint", recur_status_message(st));
    recur_status_free(st);
}

static void check_failed(const void *result, const recur_status *st, const char *call)
{
    if (!result && (recur_status_ok(st) || !recur_status_message(st)[0])) die("failed without a message", call);
}

static void check_map_entry(void *user, const char *old_name, const char *new_name)
{
    (void)user;
    if (!old_name || !new_name || !old_name[0] || !new_name[0]) die("empty name in a suggested rename map", NULL);
}

static bool same_array(const recur_array *a, const recur_array *b)
{
    recur_shape sa = recur_array_shape(a), sb = recur_array_shape(b);
    if (recur_array_dtype(a) != recur_array_dtype(b) || sa.rank != sb.rank ||
        memcmp(sa.dims, sb.dims, (size_t)sa.rank * sizeof sa.dims[0]) || recur_array_size(a) != recur_array_size(b))
        return false;
    if (recur_array_dtype(a) != RECUR_STRING)
        return recur_array_nbytes(a) == recur_array_nbytes(b) &&
               (!recur_array_nbytes(a) || !memcmp(recur_array_cdata(a), recur_array_cdata(b), recur_array_nbytes(a)));
    for (int64_t i = 0; i < recur_array_size(a); i++) {
        size_t la, lb;
        const char *x = recur_array_string(a, i, &la), *y = recur_array_string(b, i, &lb);
        if (!x || !y || la != lb || memcmp(x, y, la)) return false;
    }
    return true;
}

/* Open `prefix`, read every tensor; when `round_trip`, write what was read to PREFIX.rt and
 * check that it reads back the same. */
static void read_checkpoint(const char *prefix, bool round_trip)
{
    recur_status *st = recur_status_new();
    if (!st) die("out of memory", NULL);
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    check_failed(c, st, "recur_checkpoint_open");
    size_t n = recur_checkpoint_num_tensors(c);
    recur_array **got = calloc(n + 1, sizeof *got);
    size_t nread = 0;
    if (!got) die("out of memory", NULL);
    for (size_t i = 0; i < n; i++) {
        const char *key = recur_checkpoint_key(c, i);
        recur_dtype dt;
        recur_shape shape;
        if (!key || !recur_checkpoint_info(c, key, &dt, &shape)) die("listed key without info", key);
        recur_array *a = recur_checkpoint_read(c, key, st);
        check_failed(a, st, "recur_checkpoint_read");
        if (!a) continue;
        recur_shape as = recur_array_shape(a);
        if (recur_array_dtype(a) != dt || as.rank != shape.rank ||
            memcmp(as.dims, shape.dims, (size_t)as.rank * sizeof as.dims[0]))
            die("tensor read with another dtype or shape than its info", key);
        for (int64_t k = 0; dt == RECUR_STRING && k < recur_array_size(a); k++) {
            size_t len;
            const char *s = recur_array_string(a, k, &len);
            if (!s) die("string element missing", key);
            g_sink ^= rc_crc32c_extend(0, s, len); /* touch every byte (for ASan) */
        }
        got[i] = a;
        nread++;
    }
    if (c) {
        if (recur_checkpoint_suggest_map(c, g_ref, check_map_entry, NULL, st) < 0) check_failed(NULL, st, "suggest_map");
        if (recur_checkpoint_suggest_map(g_ref, c, check_map_entry, NULL, st) < 0) check_failed(NULL, st, "suggest_map");
    }
    if (c && round_trip && nread) {
        char rt[600];
        snprintf(rt, sizeof rt, "%s.rt", prefix);
        recur_checkpoint_writer *w = recur_checkpoint_writer_new(rt, st);
        for (size_t i = 0; w && i < n; i++)
            if (got[i] && recur_checkpoint_writer_add(w, recur_checkpoint_key(c, i), got[i], st) != RECUR_OK)
                die("cannot write back a tensor read from a checkpoint", recur_status_message(st));
        if (!w || recur_checkpoint_writer_finish(w, st) != RECUR_OK)
            die("cannot write back a checkpoint", recur_status_message(st));
        recur_checkpoint_writer_free(w);
        recur_checkpoint *back = recur_checkpoint_open(rt, st);
        if (!back) die("cannot open a checkpoint written back", recur_status_message(st));
        if (recur_checkpoint_num_tensors(back) != nread) die("written back with another number of tensors", NULL);
        for (size_t i = 0; i < n; i++) {
            if (!got[i]) continue;
            const char *key = recur_checkpoint_key(c, i);
            recur_array *b = recur_checkpoint_read(back, key, st);
            if (!b) die("cannot read back a tensor", recur_status_message(st));
            if (!same_array(got[i], b)) die("tensor changed by a write and read", key);
            recur_array_free(b);
        }
        recur_checkpoint_close(back);
    }
    for (size_t i = 0; i < n; i++) recur_array_free(got[i]);
    free(got);
    recur_checkpoint_close(c);
    recur_status_free(st);
}

int fuzz_ckpt_index(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    setup();
    uint8_t *index = dup_bytes(data + 1, size - 1);
    if (data[0] & 1) fix_table_checksums(index, size - 1);
    write_file(path_in("idx.index"), index, size - 1);
    free(index);
    read_checkpoint(path_in("idx"), false);
    return 0;
}

int fuzz_ckpt_bundle(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    setup();
    size_t rest = size - 5, ilen = rc_get_fixed32(data + 1);
    if (ilen > rest) ilen = rest;
    size_t dlen = rest - ilen;
    uint8_t *index = dup_bytes(data + 5, ilen), *bytes = dup_bytes(data + 5 + ilen, dlen);
    if (data[0] & 1) fix_table_checksums(index, ilen);
    if (data[0] & 2) fix_entry_checksums(&index, &ilen, bytes, dlen);
    write_file(path_in("b.index"), index, ilen);
    write_file(path_in("b.data-00000-of-00001"), bytes, dlen);
    free(index);
    free(bytes);
    read_checkpoint(path_in("b"), true);
    return 0;
}

/* ---------------------------------------------------------------- the state file */
int fuzz_state_file(const uint8_t *data, size_t size)
{
    setup();
    const char *dir = path_in("state");
    write_file(path_in("state/checkpoint"), data, size);
    recur_status *st = recur_status_new();
    if (!st) die("out of memory", NULL);
    char buf[4096], small[8];
    const char *latest = recur_latest_checkpoint(dir, buf, sizeof buf, st);
    check_failed(latest, st, "recur_latest_checkpoint");
    if (latest && (latest != buf || strlen(buf) >= sizeof buf)) die("bad recur_latest_checkpoint result", NULL);
    check_failed(recur_latest_checkpoint(dir, small, sizeof small, st), st, "recur_latest_checkpoint");

    rc_ckpt_state s, back;
    if (rc_state_read(dir, &s, st) == RECUR_OK) {
        if (rc_state_write(dir, &s, st) != RECUR_OK) die("cannot write the state back", recur_status_message(st));
        if (rc_state_read(dir, &back, st) != RECUR_OK) die("cannot parse the state written", recur_status_message(st));
        if (strcmp(s.model_path, back.model_path) || s.nall != back.nall) die("state changed by a write and read", NULL);
        for (size_t i = 0; i < s.nall; i++)
            if (strcmp(s.all_paths[i], back.all_paths[i])) die("state changed by a write and read", s.all_paths[i]);
        rc_state_free(&back);
        rc_state_free(&s);
    }
    recur_status_free(st);
    return 0;
}

/* ---------------------------------------------------------------- `recur train` data */
int fuzz_text_data(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    setup();
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) die("cannot open /dev/null", NULL);
    const char *path = path_in("data.txt");
    write_file(path, data, size);
    for (int labelled = 0; labelled < 2; labelled++) {
        /* clf_load tells stderr when a file holds no usable line: point the stdio stream (not
         * file descriptor 2, where sanitizer reports and die() write) at /dev/null meanwhile. */
        FILE *err = stderr;
        stderr = devnull;
        clf_data *d = clf_load(path, labelled, devnull);
        stderr = err;
        if (d && clf_data_size(d) <= 0) die("clf_load returned no examples", NULL);
        for (int min_count = 1; d && min_count <= 2; min_count++)
            if (clf_vocab_check(d, min_count) < 2) die("vocabulary lookup disagrees with its words", NULL);
        clf_data_free(d);
    }
    return 0;
}

const fuzz_target fuzz_targets[] = {
    {"ckpt_index", fuzz_ckpt_index},
    {"ckpt_bundle", fuzz_ckpt_bundle},
    {"state_file", fuzz_state_file},
    {"text_data", fuzz_text_data},
};
const size_t fuzz_num_targets = sizeof fuzz_targets / sizeof fuzz_targets[0];
