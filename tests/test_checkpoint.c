/*
 * test_checkpoint.c - TensorFlow V2 checkpoints: CRC32C, the spec's worked example byte for
 * byte, round trips of every dtype, checkpoints written by real TensorFlow (tests/golden/ckpt,
 * made by tests/tf/make_ckpt_golden.py) read bit-exactly and rewritten byte-identically, the
 * Saver through sessions (max_to_keep, restore diagnostics and the suggested name map),
 * init_from_checkpoint, corrupt and crafted files, the `checkpoint` state file, allocation
 * failures, and crash atomicity (a saving child killed at random points).
 *
 * RECUR_CKPT_OUT=<dir> makes write_checkpoint_for_tensorflow leave its checkpoint and manifest
 * there for tests/tf/check_recur_ckpt.py.
 */
#include "runner.h"
#include "golden.h"
#include "io/io.h"
#include "io/checkpoint.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <snappy-c.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static recur_status *st;

/* ---------------------------------------------------------------- helpers */
static char *tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/recur_ckpt_XXXXXX");
    if (!mkdtemp(dir)) rt_fail(__FILE__, __LINE__, "mkdtemp failed");
    st = recur_status_new();
    return dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *pathf(const char *fmt, ...)
{
    static char buf[8][1024];
    static int slot;
    char *b = buf[slot++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof buf[0], fmt, ap);
    va_end(ap);
    return b;
}

static void spit(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) rt_fail(__FILE__, __LINE__, "cannot write %s", path);
    fclose(f);
}

static bool file_exists(const char *path) { return access(path, F_OK) == 0; }

static size_t count_files(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* A DT_STRING array (the public API creates them only by reading checkpoints). */
static recur_array *strings(recur_shape shape, const char *const *s, const size_t *lens)
{
    recur_array *a = rc_calloc(1, sizeof *a);
    a->dtype = RECUR_STRING;
    a->shape = shape;
    a->size = recur_shape_size(shape);
    a->strs = rc_calloc((size_t)a->size + 1, sizeof *a->strs);
    a->lens = rc_calloc((size_t)a->size + 1, sizeof *a->lens);
    for (int64_t i = 0; i < a->size; i++) {
        a->lens[i] = lens ? lens[i] : strlen(s[i]);
        a->strs[i] = rc_strndup(s[i], a->lens[i]);
    }
    return a;
}

static bool arrays_equal(const recur_array *a, const recur_array *b)
{
    if (!a || !b || recur_array_dtype(a) != recur_array_dtype(b) ||
        !rc_shape_equal(recur_array_shape(a), recur_array_shape(b)))
        return false;
    if (recur_array_dtype(a) != RECUR_STRING)
        return recur_array_nbytes(a) == recur_array_nbytes(b) &&
               (!recur_array_nbytes(a) || !memcmp(recur_array_cdata(a), recur_array_cdata(b), recur_array_nbytes(a)));
    for (int64_t i = 0; i < recur_array_size(a); i++) {
        size_t la, lb;
        const char *sa = recur_array_string(a, i, &la), *sb = recur_array_string(b, i, &lb);
        if (la != lb || memcmp(sa, sb, la)) return false;
    }
    return true;
}

/* Write n (key, value) pairs in order as a checkpoint at prefix. */
static void write_ckpt(const char *prefix, const char *const *keys, recur_array *const *vals, size_t n)
{
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(prefix, st);
    ASSERT_OK(st);
    for (size_t i = 0; i < n; i++) {
        recur_checkpoint_writer_add(w, keys[i], vals[i], st);
        ASSERT_OK(st);
    }
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(w, st), RECUR_OK);
    recur_checkpoint_writer_free(w);
}

static recur_array *f32s(recur_shape shape, const float *v) { return recur_array_from(RECUR_F32, shape, v, NULL); }

/* ---------------------------------------------------------------- CRC32C */
TEST(crc32c_check_value_and_masking)
{
    ASSERT_EQ_INT(rc_crc32c_extend(0, "123456789", 9), 0xE3069283u);
    ASSERT_EQ_INT(rc_crc32c_extend_portable(0, "123456789", 9), 0xE3069283u);
    ASSERT_EQ_INT(rc_crc32c_extend(rc_crc32c_extend(0, "1234", 4), "56789", 5), 0xE3069283u);
    /* The spec's worked example: the data of w = [1.0, 2.0]. */
    const uint8_t data[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
    ASSERT_EQ_INT(rc_crc32c_extend(0, data, 8), 0x28c0c9b1u);
    ASSERT_EQ_INT(rc_crc32c_mask(0x28c0c9b1u), 0x35e53c59u);
    ASSERT_EQ_INT(rc_crc32c_mask(0), 0xa282ead8u);
    /* The trailer constant of every empty block. */
    const uint8_t empty[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    ASSERT_EQ_INT(rc_crc32c_mask(rc_crc32c_extend(0, empty, 9)), 0xb0a1f2c0u);
    uint8_t buf[600];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof buf; n += 37) {
            uint32_t c = rc_crc32c_extend(0x1234u, buf + off, n);
            ASSERT_EQ_INT(c, rc_crc32c_extend_portable(0x1234u, buf + off, n));
            ASSERT_EQ_INT(rc_crc32c_unmask(rc_crc32c_mask(c)), c);
        }
}

/* ---------------------------------------------------------------- the spec's bytes */
TEST(spec_worked_example_byte_for_byte)
{
    const char *dir = tmpdir();
    static const uint8_t want[121] = {
        0x00, 0x00, 0x06, 0x08, 0x01, 0x1a, 0x02, 0x08, 0x01, 0x00, 0x01, 0x0f, 0x77, 0x08, 0x01, 0x12,
        0x04, 0x12, 0x02, 0x08, 0x02, 0x28, 0x08, 0x35, 0x59, 0x3c, 0xe5, 0x35, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x09, 0x21, 0xad, 0xc3, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0xc0, 0xf2, 0xa1, 0xb0, 0x00, 0x01, 0x02, 0x78, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0xab, 0x30, 0x70, 0x7f, 0x29, 0x08, 0x36, 0x0e, 0x00, 0x00, 0x00,
        [0x71] = 0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb};
    recur_array *w = f32s(RECUR_SHAPE(2), (float[]){1.0f, 2.0f});
    write_ckpt(pathf("%s/model.ckpt", dir), (const char *[]){"w"}, &w, 1);
    size_t n, nd;
    uint8_t *index = rt_read_file(pathf("%s/model.ckpt.index", dir), &n);
    uint8_t *data = rt_read_file(pathf("%s/model.ckpt.data-00000-of-00001", dir), &nd);
    ASSERT_EQ_INT(n, 121);
    for (size_t i = 0; i < n; i++)
        if (index[i] != want[i]) rt_fail(__FILE__, __LINE__, "index byte 0x%02zx: %02x, want %02x", i, index[i], want[i]);
    ASSERT_EQ_INT(nd, 8);
    ASSERT_TRUE(!memcmp(data, "\0\0\x80\x3f\0\0\0\x40", 8));
    ASSERT_EQ_INT(count_files(dir), 2); /* no temporary left behind */

    /* §3.7: a scalar string "ab". */
    recur_array *ab = strings(RECUR_SCALAR, (const char *[]){"ab"}, NULL);
    write_ckpt(pathf("%s/s", dir), (const char *[]){"s"}, &ab, 1);
    free(data);
    data = rt_read_file(pathf("%s/s.data-00000-of-00001", dir), &nd);
    ASSERT_EQ_INT(nd, 7);
    ASSERT_TRUE(!memcmp(data, "\x02\xd8\xd8\x10\x73\x61\x62", 7));
    free(index);
    index = rt_read_file(pathf("%s/s.index", dir), &n);
    ASSERT_TRUE(memmem(index, n, "\x35\x26\x19\xa6\x35", 5) != NULL);
    free(index);
    free(data);
    recur_array_free(w);
    recur_array_free(ab);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- round trips */
TEST(round_trip_every_dtype_shape_and_name)
{
    const char *dir = tmpdir();
    static float big[100000];
    for (int i = 0; i < 100000; i++) big[i] = (float)i * 0.25f - 7.0f;
    const char *sv[] = {"", "x", "with\0nul", "\xc3\xbc\xc3\xb1\xc3\xae"};
    const size_t sl[] = {0, 1, 8, 6};
    const char *keys[] = {"f32_scalar", "f64", "i32/mat", "i64", "bool", "empty", "empty2d", "big",
                          "layer1/rnn/basic_lstm_cell/kernel", "\xc3\xbcn\xc3\xaf" "code/\xce\xb2" "eta", "Z",
                          "a/b", "a0", "strs", "str_empty", "str_scalar"};
    recur_array *vals[] = {
        recur_array_scalar_f32(-0.0f, NULL),
        recur_array_from(RECUR_F64, RECUR_SHAPE(3), (double[]){1e300, -2.5, 1e-310}, NULL),
        recur_array_from(RECUR_I32, RECUR_SHAPE(2, 2), (int32_t[]){INT32_MIN, -1, 0, INT32_MAX}, NULL),
        recur_array_from(RECUR_I64, RECUR_SHAPE(2), (int64_t[]){INT64_MIN, INT64_MAX}, NULL),
        recur_array_from(RECUR_BOOL, RECUR_SHAPE(3), (bool[]){true, false, true}, NULL),
        recur_array_new(RECUR_F32, RECUR_SHAPE(0), NULL),
        recur_array_new(RECUR_I64, RECUR_SHAPE(2, 0), NULL),
        f32s(RECUR_SHAPE(250, 400), big),
        f32s(RECUR_SHAPE(1, 2, 1, 1, 1, 1, 1, 2), (float[]){1, 2, 3, 4}),
        f32s(RECUR_SHAPE(1), (float[]){42}),
        recur_array_scalar_i32(7, NULL),
        recur_array_scalar_i32(8, NULL),
        recur_array_scalar_i32(9, NULL),
        strings(RECUR_SHAPE(2, 2), sv, sl),
        strings(RECUR_SHAPE(0), NULL, NULL),
        strings(RECUR_SCALAR, (const char *[]){"hello"}, NULL),
    };
    size_t n = RC_ARRAY_LEN(keys);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/sub/dir/model", dir); /* the directory is created */
    write_ckpt(prefix, keys, vals, n);
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), n);
    for (size_t i = 1; i < n; i++) /* memcmp order: "Z" < "a/b" < "a0" < ... < "\xc3..." */
        ASSERT_TRUE(strcmp(recur_checkpoint_key(c, i - 1), recur_checkpoint_key(c, i)) < 0);
    ASSERT_EQ_STR(recur_checkpoint_key(c, 0), "Z");
    ASSERT_EQ_STR(recur_checkpoint_key(c, n - 1), keys[9]);
    ASSERT_TRUE(recur_checkpoint_key(c, n) == NULL);
    for (size_t i = 0; i < n; i++) {
        recur_dtype dt;
        recur_shape shape;
        ASSERT_TRUE(recur_checkpoint_info(c, keys[i], &dt, &shape));
        ASSERT_EQ_INT(dt, recur_array_dtype(vals[i]));
        ASSERT_TRUE(rc_shape_equal(shape, recur_array_shape(vals[i])));
        recur_array *r = recur_checkpoint_read(c, keys[i], st);
        ASSERT_OK(st);
        if (!arrays_equal(r, vals[i])) rt_fail(__FILE__, __LINE__, "key %s differs after the round trip", keys[i]);
        recur_array_free(r);
    }
    ASSERT_FALSE(recur_checkpoint_info(c, "nope", NULL, NULL));
    ASSERT_TRUE(recur_checkpoint_read(c, "nope", st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    ASSERT_EQ_STR(recur_status_message(st), "Key nope not found in checkpoint");
    /* The data file is the tensors in add order, densely packed. */
    size_t nd;
    free(rt_read_file(pathf("%s.data-00000-of-00001", prefix), &nd));
    ASSERT_EQ_INT(nd, 4 + 24 + 16 + 16 + 3 + 400000 + 16 + 4 + 3 * 4 + (4 + 4 + 15) + 4 + (1 + 4 + 5));
    recur_checkpoint_close(c);
    for (size_t i = 0; i < n; i++) recur_array_free(vals[i]);
    rm_rf(dir);
}

static const char *multiblock_key(int i)
{
    static char k[96];
    snprintf(k, sizeof k, "block_%05d/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel", i);
    return k;
}

TEST(multi_block_index_equals_tensorflows)
{
    const char *dir = tmpdir();
    gt_file *g = gt_load(rt_path("tests/golden/ckpt/multiblock.golden"));
    ASSERT_TRUE(g && gt_meta(g, "multiblock"));
    int count = 0;
    size_t want_size = 0;
    unsigned want_crc = 0;
    ASSERT_EQ_INT(sscanf(gt_meta(g, "multiblock"), "%d %zu %x", &count, &want_size, &want_crc), 3);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/m", dir);
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(prefix, st);
    for (int i = 0; i < count; i++) {
        recur_array *v = recur_array_scalar_f32((float)i, NULL);
        recur_checkpoint_writer_add(w, multiblock_key(i), v, st);
        ASSERT_OK(st);
        recur_array_free(v);
    }
    recur_checkpoint_writer_finish(w, st);
    ASSERT_OK(st);
    recur_checkpoint_writer_free(w);
    size_t n;
    uint8_t *index = rt_read_file(pathf("%s.index", prefix), &n);
    ASSERT_TRUE(n > 2 * 256 * 1024); /* three data blocks */
    ASSERT_EQ_INT(n, want_size);
    ASSERT_EQ_INT(rc_crc32c_mask(rc_crc32c_extend(0, index, n)), want_crc);
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), count);
    for (int i = 0; i < count; i += 97) {
        recur_array *v = recur_checkpoint_read(c, multiblock_key(i), st);
        ASSERT_OK(st);
        ASSERT_EQ_INT(recur_array_f32(v)[0], i);
        recur_array_free(v);
    }
    recur_checkpoint_close(c);
    free(index);
    gt_free(g);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- TensorFlow's own files */
static const char *const golden_sets[] = {"dtypes", "adam", "object"};

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* Check every tensor the manifest lists against the checkpoint, bit for bit. */
static void check_manifest(recur_checkpoint *c, const gt_file *g)
{
    size_t listed = 0;
    for (int i = 0; i < g->n; i++, listed++) {
        const gt_tensor *t = &g->t[i];
        recur_array *want = gt_array(t), *got = recur_checkpoint_read(c, t->name, st);
        ASSERT_OK(st);
        if (!arrays_equal(want, got)) rt_fail(__FILE__, __LINE__, "%s differs from TensorFlow's value", t->name);
        recur_array_free(want);
        recur_array_free(got);
    }
    for (int m = 0; m < g->nmeta; m++) {
        if (strcmp(g->meta[m].key, "string")) continue;
        listed++;
        char key[1024];
        int rank, off;
        const char *p = g->meta[m].value;
        ASSERT_EQ_INT(sscanf(p, "%1023s %d%n", key, &rank, &off), 2);
        p += off;
        recur_shape shape = {rank, {0}};
        for (int d = 0; d < rank; d++) shape.dims[d] = strtoll(p, (char **)&p, 10);
        recur_array *got = recur_checkpoint_read(c, key, st);
        ASSERT_OK(st);
        ASSERT_TRUE(rc_shape_equal(recur_array_shape(got), shape));
        for (int64_t e = 0; e < recur_array_size(got); e++) {
            while (*p == ' ') p++;
            ASSERT_TRUE(*p == 'x');
            size_t len, k = 0;
            const char *s = recur_array_string(got, e, &len);
            for (p++; *p && *p != ' '; p += 2, k++)
                ASSERT_TRUE(k < len && (uint8_t)s[k] == hexval(p[0]) * 16 + hexval(p[1]));
            ASSERT_EQ_INT(k, len);
        }
        recur_array_free(got);
    }
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), listed);
}

TEST(tensorflow_checkpoints_read_bit_exactly)
{
    st = recur_status_new();
    for (size_t s = 0; s < RC_ARRAY_LEN(golden_sets); s++) {
        gt_file *g = gt_load(rt_path(pathf("tests/golden/ckpt/%s.golden", golden_sets[s])));
        ASSERT_TRUE(g && gt_meta(g, "prefix"));
        recur_checkpoint *c = recur_checkpoint_open(rt_path(pathf("tests/golden/ckpt/%s", gt_meta(g, "prefix"))), st);
        ASSERT_OK(st);
        check_manifest(c, g);
        recur_checkpoint_close(c);
        gt_free(g);
    }
    /* The state files TensorFlow wrote (relative paths). */
    char buf[1024];
    ASSERT_TRUE(recur_latest_checkpoint(rt_path("tests/golden/ckpt/adam"), buf, sizeof buf, st) != NULL);
    ASSERT_EQ_STR(buf, pathf("%s/model.ckpt-3", rt_path("tests/golden/ckpt/adam")));
    rc_ckpt_state state;
    ASSERT_EQ_INT(rc_state_read(rt_path("tests/golden/ckpt/adam"), &state, st), RECUR_OK);
    ASSERT_EQ_INT(state.nall, 2);
    ASSERT_EQ_STR(rc_path_base(state.all_paths[0]), "model.ckpt-2");
    rc_state_free(&state);
}

/* Data offsets of a checkpoint's entries, straight from its index (for TensorFlow's add order). */
typedef struct offsets {
    char *key[64];
    int64_t off[64];
    int n;
} offsets;

static recur_code collect_offsets(void *ctx, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                                  recur_status *s)
{
    offsets *o = ctx;
    if (!klen) return RECUR_OK;
    Recur__BundleEntryProto *e = recur__bundle_entry_proto__unpack(NULL, vlen, val);
    ASSERT_TRUE(e && o->n < 64);
    o->key[o->n] = strndup((const char *)key, klen);
    o->off[o->n++] = e->offset;
    recur__bundle_entry_proto__free_unpacked(e, NULL);
    return RECUR_OK;
}

TEST(rewriting_tensorflow_checkpoints_gives_identical_bytes)
{
    const char *dir = tmpdir();
    for (size_t s = 0; s < RC_ARRAY_LEN(golden_sets); s++) {
        gt_file *g = gt_load(rt_path(pathf("tests/golden/ckpt/%s.golden", golden_sets[s])));
        const char *tf = rt_path(pathf("tests/golden/ckpt/%s", gt_meta(g, "prefix")));
        size_t n, nd;
        uint8_t *index = rt_read_file(pathf("%s.index", tf), &n), *data = rt_read_file(pathf("%s.data-00000-of-00001", tf), &nd);
        offsets o = {.n = 0};
        ASSERT_EQ_INT(rc_table_scan(index, n, "golden", collect_offsets, &o, st), RECUR_OK);
        for (int i = 1; i < o.n; i++) /* insertion sort by offset: TensorFlow's add order */
            for (int j = i; j > 0 && o.off[j] < o.off[j - 1]; j--) {
                char *k = o.key[j];
                int64_t v = o.off[j];
                o.key[j] = o.key[j - 1], o.off[j] = o.off[j - 1];
                o.key[j - 1] = k, o.off[j - 1] = v;
            }
        recur_checkpoint *c = recur_checkpoint_open(tf, st);
        recur_array *vals[64];
        for (int i = 0; i < o.n; i++) vals[i] = recur_checkpoint_read(c, o.key[i], st);
        const char *mine = pathf("%s/%s", dir, golden_sets[s]);
        write_ckpt(mine, (const char *const *)o.key, vals, (size_t)o.n);
        size_t m, md;
        uint8_t *mindex = rt_read_file(pathf("%s.index", mine), &m), *mdata = rt_read_file(pathf("%s.data-00000-of-00001", mine), &md);
        if (m != n || memcmp(index, mindex, n)) rt_fail(__FILE__, __LINE__, "%s: .index differs from TensorFlow's", golden_sets[s]);
        if (md != nd || memcmp(data, mdata, nd)) rt_fail(__FILE__, __LINE__, "%s: .data differs from TensorFlow's", golden_sets[s]);
        for (int i = 0; i < o.n; i++) {
            recur_array_free(vals[i]);
            free(o.key[i]);
        }
        recur_checkpoint_close(c);
        free(index), free(data), free(mindex), free(mdata);
        gt_free(g);
    }
    rm_rf(dir);
}

/* ---------------------------------------------------------------- Saver */
typedef struct model {
    recur_graph *g;
    recur_tensor *v[8];
    int n;
} model;

/* Variables under `scope`: kernel [3,4] f32, bias [4] f64, steps i64 scalar, mask bool [2]; plus
 * global_step (i64) at the root. */
static model build_model(const char *scope, recur_shape kernel_shape, recur_dtype bias_dtype)
{
    model m = {.g = recur_graph_new()};
    recur_graph_set_seed(m.g, 3);
    recur_variable_scope_push(m.g, scope, RECUR_REUSE_INHERIT);
    recur_variable_scope_push(m.g, "dense", RECUR_REUSE_INHERIT);
    m.v[m.n++] = recur_get_variable(m.g, "kernel", kernel_shape, NULL);
    m.v[m.n++] = recur_get_variable(m.g, "bias", RECUR_SHAPE(4),
                                    &(recur_variable_opts){.dtype = bias_dtype, .initializer = recur_random_normal_initializer(0, 1, 0)});
    recur_variable_scope_pop(m.g);
    m.v[m.n++] = recur_get_variable(m.g, "steps", RECUR_SCALAR,
                                    &(recur_variable_opts){.dtype = RECUR_I64, .initializer = recur_constant_initializer(11)});
    m.v[m.n++] = recur_get_variable(m.g, "mask", RECUR_SHAPE(2),
                                    &(recur_variable_opts){.dtype = RECUR_BOOL, .initializer = recur_ones_initializer()});
    recur_variable_scope_pop(m.g);
    m.v[m.n++] = recur_get_variable(m.g, "global_step", RECUR_SCALAR,
                                    &(recur_variable_opts){.dtype = RECUR_I64, .not_trainable = true});
    ASSERT_GRAPH_OK(m.g);
    return m;
}

static recur_session *initialized_session(const model *m)
{
    recur_session *s = recur_session_new(m->g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(m->g), st);
    ASSERT_OK(st);
    return s;
}

static void assert_same_values(recur_session *a, const model *ma, recur_session *b, const model *mb)
{
    for (int i = 0; i < ma->n; i++) {
        recur_array *x = recur_session_get_variable(a, ma->v[i], st), *y = recur_session_get_variable(b, mb->v[i], st);
        ASSERT_OK(st);
        if (!arrays_equal(x, y)) rt_fail(__FILE__, __LINE__, "%s differs after restore", recur_variable_name(mb->v[i]));
        recur_array_free(x);
        recur_array_free(y);
    }
}

TEST(saver_save_and_restore_through_sessions)
{
    const char *dir = tmpdir();
    model a = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sa = initialized_session(&a);
    recur_saver *sv = recur_saver_new(a.g, NULL);
    ASSERT_TRUE(sv != NULL);
    char path[512];
    ASSERT_EQ_INT(recur_saver_save(sv, sa, pathf("%s/model.ckpt", dir), 1000, path, sizeof path, st), RECUR_OK);
    ASSERT_EQ_STR(path, pathf("%s/model.ckpt-1000", dir));
    char latest[512];
    ASSERT_EQ_STR(recur_latest_checkpoint(dir, latest, sizeof latest, st), path);
    size_t n;
    char *state = (char *)rt_read_file(pathf("%s/checkpoint", dir), &n);
    state[n] = 0;
    ASSERT_EQ_STR(state, "model_checkpoint_path: \"model.ckpt-1000\"\nall_model_checkpoint_paths: \"model.ckpt-1000\"\n");
    free(state);
    recur_checkpoint *c = recur_checkpoint_open(path, st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), 5);
    ASSERT_EQ_STR(recur_checkpoint_key(c, 0), "global_step");
    ASSERT_EQ_STR(recur_checkpoint_key(c, 1), "net/dense/bias");
    recur_checkpoint_close(c);

    model b = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sb = recur_session_new(b.g, NULL, st);
    recur_saver *svb = recur_saver_new(b.g, NULL);
    ASSERT_EQ_INT(recur_saver_restore(svb, sb, path, st), RECUR_OK);
    assert_same_values(sa, &a, sb, &b);

    /* A saver over a var_list with its own keys. */
    recur_saver *sub = recur_saver_new(a.g, &(recur_saver_opts){.var_list = a.v, .keys = (const char *[]){"K", "B"}, .num_vars = 2});
    ASSERT_EQ_INT(recur_saver_save(sub, sa, pathf("%s/sub", dir), -1, NULL, 0, st), RECUR_OK);
    c = recur_checkpoint_open(pathf("%s/sub", dir), st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), 2);
    ASSERT_EQ_STR(recur_checkpoint_key(c, 0), "B");
    recur_checkpoint_close(c);
    ASSERT_EQ_STR(recur_latest_checkpoint(dir, latest, sizeof latest, st), pathf("%s/sub", dir));

    /* Failure paths. */
    ASSERT_EQ_INT(recur_saver_save(sv, sa, pathf("%s/m", dir), 1, path, 4, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_saver_save(NULL, sa, "x", 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_saver_restore(sv, sa, pathf("%s/none", dir), st), RECUR_NOT_FOUND);
    ASSERT_STR_STARTS(recur_status_message(st), "The passed save_path is not a valid checkpoint: ");
    ASSERT_EQ_INT(recur_saver_restore(NULL, sa, "x", st), RECUR_INVALID_ARGUMENT);
    recur_session *fresh = recur_session_new(a.g, NULL, st);
    ASSERT_EQ_INT(recur_saver_save(sv, fresh, pathf("%s/u", dir), -1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Attempting to use uninitialized value");
    ASSERT_FALSE(file_exists(pathf("%s/u.index", dir)));
    ASSERT_EQ_INT(count_files(dir), 5); /* checkpoint + two checkpoints, no temporaries */
    recur_session_free(fresh);

    recur_graph *empty = recur_graph_new();
    ASSERT_TRUE(recur_saver_new(empty, NULL) == NULL);
    ASSERT_EQ_STR(recur_graph_message(empty), "No variables to save");
    recur_graph_clear_error(a.g);
    ASSERT_TRUE(recur_saver_new(a.g, &(recur_saver_opts){.var_list = a.v, .keys = (const char *[]){"K", "K"}, .num_vars = 2}) == NULL);
    ASSERT_EQ_STR(recur_graph_message(a.g), "At least two variables have the same name: K");
    recur_graph_clear_error(a.g);
    recur_tensor *notvar = recur_scalar_f32(a.g, 1);
    ASSERT_TRUE(recur_saver_new(a.g, &(recur_saver_opts){.var_list = &notvar, .num_vars = 1}) == NULL);
    ASSERT_STR_CONTAINS(recur_graph_message(a.g), "is not a variable");
    recur_graph_clear_error(a.g);
    ASSERT_TRUE(recur_saver_new(a.g, &(recur_saver_opts){.keys = (const char *[]){"x"}, .num_vars = 1}) == NULL);
    ASSERT_STR_CONTAINS(recur_graph_message(a.g), "keys need one entry per global variable");
    ASSERT_TRUE(recur_saver_new(a.g, NULL) == NULL); /* a graph holding an error: no new message */
    ASSERT_STR_CONTAINS(recur_graph_message(a.g), "keys need one entry per global variable");
    ASSERT_TRUE(recur_saver_new(NULL, NULL) == NULL);
    recur_graph_free(empty);
    recur_saver_free(sv), recur_saver_free(svb), recur_saver_free(sub);
    recur_session_free(sa), recur_session_free(sb);
    recur_graph_free(a.g), recur_graph_free(b.g);
    rm_rf(dir);
}

TEST(saver_max_to_keep_deletes_oldest)
{
    const char *dir = tmpdir();
    model a = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *s = initialized_session(&a);
    recur_saver *sv = recur_saver_new(a.g, &(recur_saver_opts){.max_to_keep = 3});
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/model", dir);
    for (int step = 1; step <= 7; step++) ASSERT_EQ_INT(recur_saver_save(sv, s, prefix, step, NULL, 0, st), RECUR_OK);
    for (int step = 1; step <= 7; step++) {
        ASSERT_EQ_INT(file_exists(pathf("%s-%d.index", prefix, step)), step >= 5);
        ASSERT_EQ_INT(file_exists(pathf("%s-%d.data-00000-of-00001", prefix, step)), step >= 5);
    }
    ASSERT_EQ_INT(count_files(dir), 7);
    /* Saving the same step again moves it to the end instead of listing it twice. */
    ASSERT_EQ_INT(recur_saver_save(sv, s, prefix, 5, NULL, 0, st), RECUR_OK);
    rc_ckpt_state state;
    rc_state_read(dir, &state, st);
    ASSERT_EQ_INT(state.nall, 3);
    ASSERT_EQ_STR(rc_path_base(state.all_paths[0]), "model-6");
    ASSERT_EQ_STR(rc_path_base(state.all_paths[2]), "model-5");
    rc_state_free(&state);
    /* A new saver (a new process, say) continues from the state file. */
    recur_saver *again = recur_saver_new(a.g, &(recur_saver_opts){.max_to_keep = 3});
    ASSERT_EQ_INT(recur_saver_save(again, s, prefix, 8, NULL, 0, st), RECUR_OK);
    ASSERT_FALSE(file_exists(pathf("%s-6.index", prefix)));
    ASSERT_TRUE(file_exists(pathf("%s-7.index", prefix)) && file_exists(pathf("%s-5.index", prefix)));
    /* -1 keeps every checkpoint. */
    recur_saver *all = recur_saver_new(a.g, &(recur_saver_opts){.max_to_keep = -1});
    for (int step = 10; step < 20; step++) recur_saver_save(all, s, pathf("%s/all/m", dir), step, NULL, 0, st);
    ASSERT_EQ_INT(count_files(pathf("%s/all", dir)), 21);
    recur_saver_free(sv), recur_saver_free(again), recur_saver_free(all);
    recur_session_free(s);
    recur_graph_free(a.g);
    rm_rf(dir);
}

TEST(restore_reports_every_problem_and_assigns_nothing)
{
    const char *dir = tmpdir();
    model a = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sa = initialized_session(&a);
    recur_saver *sv = recur_saver_new(a.g, NULL);
    recur_saver_save(sv, sa, pathf("%s/m", dir), -1, NULL, 0, st);
    ASSERT_OK(st);

    /* kernel [3,5] (shape), bias float (dtype), and a variable the checkpoint lacks. */
    model b = build_model("net", RECUR_SHAPE(3, 5), RECUR_F32);
    recur_variable_scope_push(b.g, "net", RECUR_AUTO_REUSE);
    b.v[b.n++] = recur_get_variable(b.g, "extra", RECUR_SHAPE(4), NULL);
    recur_variable_scope_pop(b.g);
    recur_session *sb = recur_session_new(b.g, NULL, st);
    recur_saver *svb = recur_saver_new(b.g, NULL);
    ASSERT_EQ_INT(recur_saver_restore(svb, sb, pathf("%s/m", dir), st), RECUR_NOT_FOUND);
    const char *msg = recur_status_message(st);
    ASSERT_STR_STARTS(msg, "Restoring from checkpoint failed. This is most likely due to a Variable name or other "
                           "graph key that is missing from the checkpoint. Please ensure that you have not altered "
                           "the graph expected based on the checkpoint. Original error:\n\n");
    ASSERT_STR_CONTAINS(msg, "\nKey net/extra not found in checkpoint\n");
    ASSERT_STR_CONTAINS(msg, "\ntensor_name = net/dense/bias; expected dtype float does not equal original dtype double\n");
    ASSERT_STR_CONTAINS(msg, "\nAssign requires shapes of both tensors to match. lhs shape= [3,5] rhs shape= [3,4] "
                             "(variable net/dense/kernel)\n");
    ASSERT_STR_CONTAINS(msg, "\nNearest checkpoint keys:\n  net/extra: net/");
    ASSERT_STR_CONTAINS(msg, " net/steps (int64 [])");
    ASSERT_STR_CONTAINS(msg, " net/mask (bool [2])");
    ASSERT_STR_CONTAINS(msg, "No renaming of checkpoint keys matches the missing variables.");
    for (int i = 0; i < b.n; i++) ASSERT_FALSE(recur_session_variable_initialized(sb, b.v[i]));

    /* Mismatches alone: INVALID_ARGUMENT and TensorFlow's other wording; unused keys listed. */
    model c = build_model("net", RECUR_SHAPE(3, 5), RECUR_F64);
    recur_session *sc = recur_session_new(c.g, NULL, st);
    recur_saver *svc = recur_saver_new(c.g, &(recur_saver_opts){.var_list = c.v, .num_vars = 2});
    ASSERT_EQ_INT(recur_saver_restore(svc, sc, pathf("%s/m", dir), st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "likely due to a mismatch between the current graph and the graph "
                                                  "from the checkpoint.");
    ASSERT_STR_CONTAINS(recur_status_message(st), "\nCheckpoint keys this saver does not use: global_step, net/mask, net/steps\n");
    recur_saver_free(sv), recur_saver_free(svb), recur_saver_free(svc);
    recur_session_free(sa), recur_session_free(sb), recur_session_free(sc);
    recur_graph_free(a.g), recur_graph_free(b.g), recur_graph_free(c.g);
    rm_rf(dir);
}

/* The "from" -> "to" lines of a restore message's suggested map. */
static int parse_map(const char *msg, char from[][128], char to[][128], int cap)
{
    const char *p = strstr(msg, "Suggested name map");
    int n = 0;
    while (p && (p = strstr(p, "\n  \"")) && n < cap) {
        if (sscanf(p, "\n  \"%127[^\"]\" -> \"%127[^\"]\"", from[n], to[n]) != 2) break;
        n++;
        p++;
    }
    return n;
}

TEST(restore_suggests_a_map_that_restores_everything)
{
    const char *dir = tmpdir();
    model a = build_model("old", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sa = initialized_session(&a);
    recur_saver *sv = recur_saver_new(a.g, NULL);
    recur_saver_save(sv, sa, pathf("%s/m", dir), -1, NULL, 0, st);
    model b = build_model("new", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sb = recur_session_new(b.g, NULL, st);
    recur_saver *svb = recur_saver_new(b.g, NULL);
    ASSERT_EQ_INT(recur_saver_restore(svb, sb, pathf("%s/m", dir), st), RECUR_NOT_FOUND);
    char from[8][128], to[8][128];
    ASSERT_EQ_INT(parse_map(recur_status_message(st), from, to, 8), 1);
    ASSERT_EQ_STR(from[0], "old/");
    ASSERT_EQ_STR(to[0], "new/");

    /* Through recur_saver_opts.keys: each variable's key from the map. */
    rc_name_map map = {0};
    rc_name_map_add(&map, from[0], to[0]);
    char *keys[8];
    for (int i = 0; i < b.n; i++) {
        bool oom;
        keys[i] = rc_name_map_apply(&map, recur_variable_name(b.v[i]), &oom);
        if (!keys[i]) keys[i] = rc_strdup(recur_variable_name(b.v[i]));
    }
    recur_saver *mapped = recur_saver_new(b.g, &(recur_saver_opts){.var_list = b.v, .keys = (const char *const *)keys, .num_vars = b.n});
    ASSERT_EQ_INT(recur_saver_restore(mapped, sb, pathf("%s/m", dir), st), RECUR_OK);
    assert_same_values(sa, &a, sb, &b);

    /* Through init_from_checkpoint in a fresh session: everything under new/ is assigned. */
    recur_session *sc = recur_session_new(b.g, NULL, st);
    const char *f = from[0], *t = to[0];
    ASSERT_EQ_INT(recur_init_from_checkpoint(sc, pathf("%s/m", dir), &f, &t, 1, st), RECUR_OK);
    for (int i = 0; i < b.n; i++) ASSERT_EQ_INT(recur_session_variable_initialized(sc, b.v[i]), i < 4);
    recur_array *x = recur_session_get_variable(sa, a.v[0], st), *y = recur_session_get_variable(sc, b.v[0], st);
    ASSERT_TRUE(arrays_equal(x, y));
    recur_array_free(x), recur_array_free(y);
    for (int i = 0; i < b.n; i++) rc_free(keys[i]);
    rc_name_map_free(&map);
    recur_saver_free(sv), recur_saver_free(svb), recur_saver_free(mapped);
    recur_session_free(sa), recur_session_free(sb), recur_session_free(sc);
    recur_graph_free(a.g), recur_graph_free(b.g);
    rm_rf(dir);
}

/* Suggest a map for the names (dtype float, shape given per name) and render it. */
static const char *suggest(const char *const *want, const recur_shape *ws, int nw, const char *const *have,
                           const recur_shape *hs, int nh)
{
    static char out[2048];
    rc_name_info w[16], h[16];
    for (int i = 0; i < nw; i++) w[i] = (rc_name_info){want[i], RECUR_F32, ws[i]};
    for (int i = 0; i < nh; i++) h[i] = (rc_name_info){have[i], RECUR_F32, hs[i]};
    rc_name_map m = {0};
    ASSERT_TRUE(rc_suggest_name_map(w, (size_t)nw, h, (size_t)nh, &m));
    out[0] = 0;
    for (size_t i = 0; i < m.n; i++) snprintf(out + strlen(out), sizeof out - strlen(out), "%s -> %s; ", m.e[i].from, m.e[i].to);
    rc_name_map_free(&m);
    return out;
}

TEST(name_map_suggestions_and_application)
{
    recur_shape k = RECUR_SHAPE(10, 16), b = RECUR_SHAPE(16), s = RECUR_SHAPE(4, 2), sb = RECUR_SHAPE(2);
    /* TensorFlow's historical renames. */
    ASSERT_EQ_STR(suggest((const char *[]){"rnn/basic_lstm_cell/kernel", "rnn/basic_lstm_cell/bias", "softmax/kernel", "softmax/bias"},
                          (recur_shape[]){k, b, s, sb}, 4,
                          (const char *[]){"rnn/BasicLSTMCell/Linear/Matrix", "rnn/BasicLSTMCell/Linear/Bias", "softmax/weights", "softmax/biases"},
                          (recur_shape[]){k, b, s, sb}, 4),
                  "rnn/BasicLSTMCell/Linear/Bias -> rnn/basic_lstm_cell/bias; rnn/BasicLSTMCell/Linear/Matrix -> "
                  "rnn/basic_lstm_cell/kernel; softmax/biases -> softmax/bias; softmax/weights -> softmax/kernel; ");
    /* lstm_cell <-> basic_lstm_cell, as a scope. */
    ASSERT_EQ_STR(suggest((const char *[]){"rnn/basic_lstm_cell/kernel", "rnn/basic_lstm_cell/bias"}, (recur_shape[]){k, b}, 2,
                          (const char *[]){"rnn/lstm_cell/kernel", "rnn/lstm_cell/bias"}, (recur_shape[]){k, b}, 2),
                  "rnn/lstm_cell/ -> rnn/basic_lstm_cell/; ");
    /* fw/bw under another parent, with fw and bw of equal shapes. */
    ASSERT_EQ_STR(suggest((const char *[]){"bidi/fw/basic_lstm_cell/kernel", "bidi/fw/basic_lstm_cell/bias",
                                           "bidi/bw/basic_lstm_cell/kernel", "bidi/bw/basic_lstm_cell/bias"},
                          (recur_shape[]){k, b, k, b}, 4,
                          (const char *[]){"bidirectional_rnn/bw/basic_lstm_cell/bias", "bidirectional_rnn/bw/basic_lstm_cell/kernel",
                                           "bidirectional_rnn/fw/basic_lstm_cell/bias", "bidirectional_rnn/fw/basic_lstm_cell/kernel"},
                          (recur_shape[]){b, k, b, k}, 4),
                  "bidirectional_rnn/ -> bidi/; ");
    /* A scope change plus a historical rename: single keys; a variable already present under the
     * graph scope keeps the change from becoming a scope entry. */
    ASSERT_EQ_STR(suggest((const char *[]){"new/rnn/basic_lstm_cell/kernel", "new/a", "new/b"}, (recur_shape[]){k, s, s}, 3,
                          (const char *[]){"old/rnn/BasicLSTMCell/Linear/Matrix", "old/a", "new/b"}, (recur_shape[]){k, s, s}, 3),
                  "old/a -> new/a; old/rnn/BasicLSTMCell/Linear/Matrix -> new/rnn/basic_lstm_cell/kernel; ");
    /* Moved to the root; then the nearest name when no component is shared. */
    ASSERT_EQ_STR(suggest((const char *[]){"w", "b"}, (recur_shape[]){s, sb}, 2,
                          (const char *[]){"model/w", "model/b"}, (recur_shape[]){s, sb}, 2),
                  "model/ -> /; ");
    ASSERT_EQ_STR(suggest((const char *[]){"embedding"}, (recur_shape[]){s}, 1, (const char *[]){"embeddings", "other"},
                          (recur_shape[]){s, s}, 2),
                  "embeddings -> embedding; ");
    /* No key of the right shape: no suggestion. */
    ASSERT_EQ_STR(suggest((const char *[]){"new/w"}, (recur_shape[]){s}, 1, (const char *[]){"old/w"}, (recur_shape[]){k}, 1), "");

    /* Application: exact entries beat scopes, the longest scope wins, "/" is the root. */
    rc_name_map m = {0};
    rc_name_map_add(&m, "/", "/");
    rc_name_map_add(&m, "a/", "x/");
    rc_name_map_add(&m, "b/c/", "x/y/");
    rc_name_map_add(&m, "special", "x/y/z");
    rc_name_map_add(&m, "r/", "top/");
    const char *cases[][2] = {{"x/w", "a/w"}, {"x/y/w", "b/c/w"}, {"x/y/z", "special"}, {"q", "q"}, {"top/k", "r/k"}};
    for (size_t i = 0; i < RC_ARRAY_LEN(cases); i++) {
        bool oom;
        char *r = rc_name_map_apply(&m, cases[i][0], &oom);
        ASSERT_EQ_STR(r, cases[i][1]);
        rc_free(r);
    }
    rc_name_map_free(&m);
    rc_name_map_add(&m, "ckpt/", "/");
    bool oom;
    char *r = rc_name_map_apply(&m, "a/b", &oom);
    ASSERT_EQ_STR(r, "ckpt/a/b");
    rc_free(r);
    rc_name_map_free(&m);
    ASSERT_TRUE(rc_name_map_apply(&m, "a", &oom) == NULL && !oom);
}

TEST(init_from_checkpoint_checks_everything_first)
{
    const char *dir = tmpdir();
    model a = build_model("old", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *sa = initialized_session(&a);
    recur_saver *sv = recur_saver_new(a.g, NULL);
    recur_saver_save(sv, sa, pathf("%s/m", dir), -1, NULL, 0, st);
    model b = build_model("new", RECUR_SHAPE(3, 5), RECUR_F64);
    recur_session *sb = recur_session_new(b.g, NULL, st);
    char p[512];
    snprintf(p, sizeof p, "%s/m", dir);
#define IFC(f, t, n) recur_init_from_checkpoint(sb, p, (const char *[]){f}, (const char *[]){t}, n, st)
    ASSERT_EQ_INT(IFC("old", "new/", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_STR(recur_status_message(st), "Assignment map with scope only name new/ should map to scope only old. "
                                            "Should be 'scope/': 'other_scope/'.");
    ASSERT_EQ_INT(IFC("old/w", "new/nothing", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "the graph has no variable new/nothing");
    ASSERT_EQ_INT(IFC("", "new/", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(IFC("old/", "new/", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Shape of variable new/dense/kernel ((3, 5)) doesn't match with "
                                                  "shape of tensor old/dense/kernel ((3, 4)) from checkpoint reader.");
    ASSERT_EQ_INT(IFC("nowhere/", "new/", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Tensor nowhere/dense/kernel is not found in");
    ASSERT_STR_CONTAINS(recur_status_message(st), "\nTensor nowhere/mask is not found in");
    ASSERT_EQ_INT(IFC("old/steps", "new/dense/bias", 1), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "tensor_name = old/steps; expected dtype double does not equal original dtype int64");
    for (int i = 0; i < b.n; i++) ASSERT_FALSE(recur_session_variable_initialized(sb, b.v[i]));
    /* Single variables, an exact entry over a scope entry, and a missing checkpoint. */
    ASSERT_EQ_INT(recur_init_from_checkpoint(sb, p, (const char *[]){"old/", "old/steps", "global_step"},
                                             (const char *[]){"new/", "new/steps", "global_step"}, 3, st),
                  RECUR_INVALID_ARGUMENT); /* new/dense/kernel still mismatches */
    ASSERT_EQ_INT(recur_init_from_checkpoint(sb, p, (const char *[]){"old/steps", "global_step"},
                                             (const char *[]){"new/steps", "global_step"}, 2, st), RECUR_OK);
    ASSERT_TRUE(recur_session_variable_initialized(sb, b.v[2]) && recur_session_variable_initialized(sb, b.v[4]));
    ASSERT_FALSE(recur_session_variable_initialized(sb, b.v[3]));
    ASSERT_EQ_INT(recur_init_from_checkpoint(sb, pathf("%s/none", dir), (const char *[]){"global_step"},
                                             (const char *[]){"global_step"}, 1, st), RECUR_NOT_FOUND);
    ASSERT_EQ_INT(recur_init_from_checkpoint(sb, p, NULL, NULL, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_init_from_checkpoint(NULL, p, NULL, NULL, 0, st), RECUR_INVALID_ARGUMENT);
#undef IFC
    recur_saver_free(sv);
    recur_session_free(sa), recur_session_free(sb);
    recur_graph_free(a.g), recur_graph_free(b.g);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- corrupt and crafted files */
/* A small checkpoint: three tensors of different kinds. */
static const char *small_keys[] = {"a", "b/c", "s"};

static void write_small(const char *prefix)
{
    recur_array *v[] = {f32s(RECUR_SHAPE(3), (float[]){1, 2, 3}),
                        recur_array_from(RECUR_I64, RECUR_SHAPE(2), (int64_t[]){5, -6}, NULL),
                        strings(RECUR_SHAPE(2), (const char *[]){"xy", "z"}, NULL)};
    write_ckpt(prefix, small_keys, v, 3);
    for (int i = 0; i < 3; i++) recur_array_free(v[i]);
}

/* Open and read everything: every failure must be DATA_LOSS (or NOT_FOUND for a missing file);
 * returns true when everything read. */
static bool open_and_read_all(const char *prefix)
{
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    if (!c) {
        if (recur_status_code(st) != RECUR_DATA_LOSS) rt_fail(__FILE__, __LINE__, "open: %s", recur_status_message(st));
        return false;
    }
    bool all = true;
    for (size_t i = 0; i < recur_checkpoint_num_tensors(c); i++) {
        recur_array *a = recur_checkpoint_read(c, recur_checkpoint_key(c, i), st);
        if (!a && recur_status_code(st) != RECUR_DATA_LOSS) rt_fail(__FILE__, __LINE__, "read: %s", recur_status_message(st));
        all &= a != NULL;
        recur_array_free(a);
    }
    recur_checkpoint_close(c);
    return all;
}

TEST(truncated_and_bit_flipped_files_fail_cleanly)
{
    const char *dir = tmpdir();
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    write_small(good);
    size_t n, nd;
    uint8_t *index = rt_read_file(pathf("%s.index", good), &n), *data = rt_read_file(pathf("%s.data-00000-of-00001", good), &nd);
    spit(pathf("%s.data-00000-of-00001", bad), data, nd);
    for (size_t len = 0; len < n; len++) {
        spit(pathf("%s.index", bad), index, len);
        ASSERT_FALSE(open_and_read_all(bad));
    }
    ASSERT_STR_CONTAINS(recur_status_message(st), "bad.index: corrupt checkpoint index: not an sstable (bad magic number)");
    spit(pathf("%s.index", bad), index, 10);
    ASSERT_FALSE(open_and_read_all(bad));
    ASSERT_STR_CONTAINS(recur_status_message(st), "file is too short to be an sstable");
    /* Every single-bit flip of the index is an error, except in the footer where it leaves the
     * two block handles' values alone (zero padding, a varint's spare continuation bit). */
    for (size_t i = 0; i < n * 8; i++) {
        index[i / 8] ^= (uint8_t)(1 << (i % 8));
        spit(pathf("%s.index", bad), index, n);
        uint64_t h[2][4] = {{0}};
        bool decoded = true;
        for (int f = 0; f < 2; f++) { /* the flipped footer, then the original */
            const uint8_t *fp = index + n - 48;
            for (int k = 0; k < 4; k++) decoded &= rc_get_varint(&fp, index + n - 8, &h[f][k]);
            if (!f) index[i / 8] ^= (uint8_t)(1 << (i % 8));
        }
        bool same_handles = decoded && !memcmp(h[0], h[1], sizeof h[0]);
        if (open_and_read_all(bad) && (i / 8 < n - 48 || i / 8 >= n - 8 || !same_handles))
            rt_fail(__FILE__, __LINE__, "flipping bit %zu of the index went unnoticed", i);
    }
    /* Every bit flip and every truncation of the data file is caught. */
    spit(pathf("%s.index", bad), index, n);
    for (size_t i = 0; i < nd * 8; i++) {
        data[i / 8] ^= (uint8_t)(1 << (i % 8));
        spit(pathf("%s.data-00000-of-00001", bad), data, nd);
        data[i / 8] ^= (uint8_t)(1 << (i % 8));
        ASSERT_FALSE(open_and_read_all(bad));
    }
    for (size_t len = 0; len < nd; len++) {
        spit(pathf("%s.data-00000-of-00001", bad), data, len);
        ASSERT_FALSE(open_and_read_all(bad));
    }
    ASSERT_STR_CONTAINS(recur_status_message(st), "lie outside data file shard 0");
    /* The checkpoint being read is never modified. */
    size_t n2;
    uint8_t *again = rt_read_file(pathf("%s.index", good), &n2);
    ASSERT_TRUE(open_and_read_all(good));
    free(again);
    again = rt_read_file(pathf("%s.index", good), &n2);
    ASSERT_TRUE(n2 == n && !memcmp(again, index, n));
    unlink(pathf("%s.data-00000-of-00001", good));
    ASSERT_TRUE(recur_checkpoint_open(good, st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    ASSERT_STR_CONTAINS(recur_status_message(st), "good.data-00000-of-00001");
    free(index), free(data), free(again);
    rm_rf(dir);
}

/* ---- crafting indexes entry by entry */
static size_t pack(const ProtobufCMessage *m, uint8_t *out) { return protobuf_c_message_pack(m, out); }

static size_t header(uint8_t *out, int shards, int endian, int min_consumer, int bad_consumer)
{
    Recur__VersionDef v = RECUR__VERSION_DEF__INIT;
    Recur__BundleHeaderProto h = RECUR__BUNDLE_HEADER_PROTO__INIT;
    int32_t bad[1] = {bad_consumer};
    v.producer = 1;
    v.min_consumer = min_consumer;
    v.n_bad_consumers = bad_consumer ? 1 : 0;
    v.bad_consumers = bad;
    h.num_shards = shards;
    h.endianness = (Recur__BundleHeaderProto__Endianness)endian;
    h.version = &v;
    return pack(&h.base, out);
}

/* dims: shape.rank of them, or 9 ones when shape.rank is 9 (beyond recur_shape). */
static size_t entry(uint8_t *out, int dtype, recur_shape shape, int64_t offset, int64_t size, uint32_t crc, int slices)
{
    Recur__TensorShapeProto__Dim dims[16], *dp[16];
    Recur__TensorShapeProto sp = RECUR__TENSOR_SHAPE_PROTO__INIT;
    Recur__TensorSliceProto sl = RECUR__TENSOR_SLICE_PROTO__INIT, *slp = &sl;
    Recur__BundleEntryProto e = RECUR__BUNDLE_ENTRY_PROTO__INIT;
    for (int i = 0; i < shape.rank; i++) {
        dims[i] = (Recur__TensorShapeProto__Dim)RECUR__TENSOR_SHAPE_PROTO__DIM__INIT;
        dims[i].size = shape.rank > RECUR_MAX_RANK ? 1 : shape.dims[i];
        dp[i] = &dims[i];
    }
    sp.n_dim = (size_t)shape.rank;
    sp.dim = dp;
    e.dtype = (Recur__DataType)dtype;
    e.shape = &sp;
    e.offset = offset;
    e.size = size;
    e.crc32c = crc;
    e.n_slices = (size_t)slices;
    e.slices = &slp;
    return pack(&e.base, out);
}

/* Write PREFIX.index from (key, value) pairs (keys sorted by the caller). */
static void craft_index(const char *prefix, const char *const *keys, const size_t *klens, uint8_t (*vals)[256],
                        const size_t *vlens, size_t n)
{
    rc_table_entry e[16];
    for (size_t i = 0; i < n; i++)
        e[i] = (rc_table_entry){(const uint8_t *)keys[i], klens ? klens[i] : strlen(keys[i]), vals[i], vlens[i]};
    rc_strbuf out;
    rc_sb_init(&out);
    ASSERT_TRUE(rc_table_build(e, n, &out));
    spit(pathf("%s.index", prefix), out.s, out.len);
    rc_sb_free(&out);
}

static uint32_t mcrc(const void *p, size_t n) { return rc_crc32c_mask(rc_crc32c_extend(0, p, n)); }

/* Open a one-tensor crafted checkpoint; returns the read array or NULL (status set). */
static recur_array *craft_one(const char *prefix, size_t hlen, uint8_t (*v)[256], size_t elen)
{
    craft_index(prefix, (const char *[]){"", "t"}, NULL, v, (size_t[]){hlen, elen}, 2);
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    recur_array *a = c ? recur_checkpoint_read(c, "t", st) : NULL;
    recur_checkpoint_close(c);
    return a;
}

TEST(crafted_indexes_are_checked)
{
    const char *dir = tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/c", dir);
    uint8_t v[4][256];
    const float data[4] = {1, 2, 3, 4};
    uint8_t bigend[16];
    for (int i = 0; i < 16; i++) bigend[i] = ((const uint8_t *)data)[(i / 4) * 4 + 3 - i % 4];
    uint8_t file[64];
    memcpy(file, data, 16);
    memcpy(file + 16, bigend, 16);
    spit(pathf("%s.data-00000-of-00001", p), file, 32);
    size_t h = header(v[0], 1, 0, 0, 0);
    recur_array *a;

    a = craft_one(p, h, v, entry(v[1], RECUR_F32, RECUR_SHAPE(4), 0, 16, mcrc(data, 16), 0));
    ASSERT_OK(st);
    ASSERT_TRUE(a && !memcmp(recur_array_f32(a), data, 16));
    recur_array_free(a);
    /* Big-endian data is swapped after the checksum. */
    size_t hb = header(v[0], 1, 1, 0, 0);
    a = craft_one(p, hb, v, entry(v[1], RECUR_F32, RECUR_SHAPE(4), 16, 16, mcrc(bigend, 16), 0));
    ASSERT_OK(st);
    ASSERT_TRUE(a && !memcmp(recur_array_f32(a), data, 16));
    recur_array_free(a);
    /* Each failure names the file or the key. hdr: shards, endianness, min_consumer, bad
     * consumer (shards -1: unparsable bytes); dtype -1: an unparsable entry; crc 1: the right one. */
    struct {
        int hdr[4], dtype;
        recur_shape shape;
        int64_t off, size;
        uint32_t crc;
        int slices;
        recur_code code;
        const char *msg;
    } cases[] = {
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 20, 16, 1, 0, RECUR_DATA_LOSS, "c.index: key t: bytes [20, 36) lie outside data file shard 0 (32 bytes)"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 12, 1, 0, RECUR_DATA_LOSS, "key t: Invalid size in bundle entry: stored size 12; expected size 16"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), -1, 16, 1, 0, RECUR_DATA_LOSS, "key t: bad shard 0, offset -1 or size 16"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(1 << 30, 1 << 30, 1 << 30, 1 << 30), 0, 16, 1, 0, RECUR_DATA_LOSS, "key t: the shape has a negative dimension or too many elements"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(-4), 0, 16, 1, 0, RECUR_DATA_LOSS, "negative dimension"},
        {{1, 0, 0, 0}, RECUR_F32, {9, {0}}, 0, 4, 1, 0, RECUR_DATA_LOSS, "rank 9 is above the 8 dimensions"},
        {{1, 0, 0, 0}, 99, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "key t: unknown dtype 99"},
        {{1, 0, 0, 0}, 0, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "unknown dtype 0"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 12345, 0, RECUR_DATA_LOSS, "Checksum does not match: stored 12345"},
        {{1, 0, 0, 0}, 19, RECUR_SHAPE(4), 0, 8, 1, 0, RECUR_UNIMPLEMENTED, "Key t of checkpoint"},
        {{1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(8), 0, 0, 1, 1, RECUR_UNIMPLEMENTED, "a partitioned (sliced) tensor"},
        {{1, 0, 0, 0}, RECUR_STRING, RECUR_SHAPE(40), 0, 16, 1, 0, RECUR_DATA_LOSS, "string tensor data too short"},
        {{1, 0, 0, 0}, RECUR_STRING, RECUR_SHAPE(2), 0, 16, 1, 0, RECUR_DATA_LOSS, "The length checksum does not match"},
        {{1, 0, 0, 0}, -1, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "key t: cannot parse its BundleEntryProto"},
        {{1, 0, 2, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "checkpoint min consumer version 2 above current version 1"},
        {{1, 0, 0, 1}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "checkpoint disallows consumer version 1"},
        {{0, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "bad number of shards 0"},
        {{1, 7, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "bad endianness 7"},
        {{-1, 0, 0, 0}, RECUR_F32, RECUR_SHAPE(4), 0, 16, 1, 0, RECUR_DATA_LOSS, "cannot parse the header"},
    };
    for (size_t i = 0; i < RC_ARRAY_LEN(cases); i++) {
        const int *hd = cases[i].hdr;
        size_t hlen = hd[0] < 0 ? 2 : header(v[0], hd[0], hd[1], hd[2], hd[3]), elen = 3;
        if (hd[0] < 0) memcpy(v[0], "\x0a\xff", 2);
        if (cases[i].dtype < 0) memcpy(v[1], "\x08\x01\xff", 3);
        else elen = entry(v[1], cases[i].dtype, cases[i].shape, cases[i].off, cases[i].size,
                          cases[i].crc == 1 ? mcrc(data, 16) : cases[i].crc, cases[i].slices);
        ASSERT_TRUE(craft_one(p, hlen, v, elen) == NULL);
        ASSERT_CODE(st, cases[i].code);
        ASSERT_STR_CONTAINS(recur_status_message(st), cases[i].msg);
    }
    /* No header entry; a slice key (leading 0x00) is not listed; a second shard is missing. */
    h = header(v[0], 1, 0, 0, 0);
    size_t e = entry(v[1], RECUR_F32, RECUR_SHAPE(4), 0, 16, mcrc(data, 16), 0);
    memcpy(v[2], v[1], e);
    craft_index(p, (const char *[]){"t"}, NULL, v + 1, (size_t[]){e}, 1);
    ASSERT_TRUE(recur_checkpoint_open(p, st) == NULL);
    ASSERT_STR_CONTAINS(recur_status_message(st), "(failed to seek to header entry)");
    craft_index(p, (const char *[]){"", "\0slice", "t"}, (size_t[]){0, 6, 1}, v, (size_t[]){h, e, e}, 3);
    recur_checkpoint *c = recur_checkpoint_open(p, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), 1);
    recur_checkpoint_close(c);
    h = header(v[0], 2, 0, 0, 0);
    Recur__BundleEntryProto *ep = recur__bundle_entry_proto__unpack(NULL, e, v[1]);
    ep->shard_id = 1;
    e = pack(&ep->base, v[1]);
    recur__bundle_entry_proto__free_unpacked(ep, NULL);
    craft_index(p, (const char *[]){"", "t"}, NULL, v, (size_t[]){h, e}, 2);
    ASSERT_TRUE(recur_checkpoint_open(p, st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    ASSERT_STR_CONTAINS(recur_status_message(st), "c.data-00001-of-00002");
    rm_rf(dir);
}

/* Rebuild the spec's example with its data block Snappy-compressed (type 1), as TensorFlow's
 * reader accepts although its writer never compresses bundles. */
TEST(snappy_compressed_blocks_are_read)
{
    const char *dir = tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/z", dir);
    recur_array *w = f32s(RECUR_SHAPE(2), (float[]){1.0f, 2.0f});
    write_ckpt(p, (const char *[]){"w"}, &w, 1);
    size_t n;
    uint8_t *orig = rt_read_file(pathf("%s.index", p), &n);
    char comp[128];
    size_t clen = sizeof comp;
    ASSERT_EQ_INT(snappy_compress((const char *)orig, 36, comp, &clen), SNAPPY_OK);
    rc_strbuf f;
    rc_sb_init(&f);
    for (int bad = 0; bad < 3; bad++) {
        f.len = 0;
        rc_sb_putn(&f, comp, clen);
        if (bad == 1) f.s[0] ^= 0x01; /* corrupt the stream's length, keep the CRC right */
        rc_sb_putn(&f, bad == 2 ? "\x02" : "\x01", 1);
        rc_put_fixed32(&f, rc_crc32c_mask(rc_crc32c_extend(0, f.s, f.len)));
        size_t meta = f.len;
        rc_sb_putn(&f, (const char *)orig + 41, 13); /* the empty metaindex block and its trailer */
        size_t idx = f.len;
        rc_sb_putn(&f, "\x00\x01\x02\x78\x00", 5);
        rc_put_varint(&f, clen);
        rc_put_fixed32(&f, 0);
        rc_put_fixed32(&f, 1);
        size_t isize = f.len - idx;
        rc_sb_putn(&f, "", 1);
        rc_put_fixed32(&f, rc_crc32c_mask(rc_crc32c_extend(0, f.s + idx, isize + 1)));
        size_t foot = f.len;
        rc_put_varint(&f, meta), rc_put_varint(&f, 8), rc_put_varint(&f, idx), rc_put_varint(&f, isize);
        while (f.len < foot + 40) rc_sb_putn(&f, "", 1);
        rc_sb_putn(&f, "\x57\xfb\x80\x8b\x24\x75\x47\xdb", 8);
        spit(pathf("%s.index", p), f.s, f.len);
        recur_checkpoint *c = recur_checkpoint_open(p, st);
        if (bad) {
            ASSERT_TRUE(c == NULL);
            ASSERT_STR_CONTAINS(recur_status_message(st), bad == 1 ? "corrupted compressed block contents" : "bad block type");
            continue;
        }
        ASSERT_OK(st);
        recur_array *r = recur_checkpoint_read(c, "w", st);
        ASSERT_TRUE(arrays_equal(r, w));
        recur_array_free(r);
        recur_checkpoint_close(c);
    }
    rc_sb_free(&f);
    free(orig);
    recur_array_free(w);
    rm_rf(dir);
}

TEST(writer_and_reader_argument_errors)
{
    const char *dir = tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/w", dir);
    recur_array *v = recur_array_scalar_f32(1, NULL);
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(p, st);
    ASSERT_EQ_INT(count_files(dir), 1); /* the temporary data file */
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "k", v, st), RECUR_OK);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "k", v, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_STR(recur_status_message(st), "Adding duplicate key: k");
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "", v, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "x", NULL, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(NULL, "x", v, st), RECUR_INVALID_ARGUMENT);
    recur_array half = {.dtype = (recur_dtype)19, .shape = RECUR_SCALAR, .size = 1};
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "half", &half, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_STR(recur_status_message(st), "Key half: cannot save dtype 19");
    recur_checkpoint_writer_free(w); /* unfinished: temporaries removed, nothing under the real names */
    ASSERT_EQ_INT(count_files(dir), 0);
    w = recur_checkpoint_writer_new(p, st);
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(w, st), RECUR_OK); /* an empty checkpoint is valid */
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(w, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "late", v, st), RECUR_FAILED_PRECONDITION);
    recur_checkpoint_writer_free(w);
    recur_checkpoint *c = recur_checkpoint_open(p, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(c), 0);
    recur_checkpoint_close(c);
    ASSERT_TRUE(recur_checkpoint_writer_new("", st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_checkpoint_writer_new("/proc/no/such/dir/x", st) == NULL);
    ASSERT_CODE(st, RECUR_PERMISSION_DENIED);
    ASSERT_TRUE(recur_checkpoint_open(NULL, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_checkpoint_open(pathf("%s/absent", dir), st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    ASSERT_EQ_STR(recur_status_message(st), pathf("The passed save_path is not a valid checkpoint: %s/absent", dir));
    ASSERT_TRUE(recur_checkpoint_read(NULL, "k", st) == NULL);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(NULL), 0);
    recur_checkpoint_close(NULL);
    recur_checkpoint_writer_free(NULL);
    recur_array_free(v);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- the state file */
static const char *latest(const char *dir, const char *text)
{
    static char buf[1024];
    spit(pathf("%s/checkpoint", dir), text, strlen(text));
    return recur_latest_checkpoint(dir, buf, sizeof buf, st);
}

TEST(state_file_syntax_and_latest_checkpoint)
{
    const char *dir = tmpdir();
    recur_array *v = recur_array_scalar_f32(1, NULL);
    const char *names[] = {"m-1", "m-2", "q\"u\\o'te \xc3\xbc"};
    for (int i = 0; i < 3; i++) write_ckpt(pathf("%s/%s", dir, names[i]), (const char *[]){"v"}, &v, 1);
    ASSERT_EQ_STR(latest(dir, "model_checkpoint_path: \"m-2\"\nall_model_checkpoint_paths: \"m-1\"\n"), pathf("%s/m-2", dir));
    /* Any field order, comments, single quotes, separators, lists, unknown and nested fields. */
    ASSERT_EQ_STR(latest(dir, "# state\nall_model_checkpoint_paths: ['m-1', \"m-2\"] ;\n"
                              "all_model_checkpoint_timestamps: 1.5e9 last_preserved_timestamp: 12\n"
                              "future { a: 1 b { c: \"}\" } } other < x: y >,\n"
                              "model_checkpoint_path :'m-' \"1\""),
                  pathf("%s/m-1", dir));
    /* Escapes: octal (Python writes non-ASCII bytes so), hex, quotes, backslash. */
    ASSERT_EQ_STR(latest(dir, "model_checkpoint_path: \"q\\\"u\\\\o\\'te \\303\\xbc\""), pathf("%s/%s", dir, names[2]));
    /* An absolute path stays as written. */
    ASSERT_EQ_STR(latest(dir, pathf("model_checkpoint_path: \"%s/m-1\"", dir)), pathf("%s/m-1", dir));
    struct {
        const char *text, *msg;
    } bad[] = {
        {"model_checkpoint_path: \"m-1", "checkpoint:1: cannot parse the checkpoint state: unterminated string"},
        {"\n\nmodel_checkpoint_path \"m-1\"", "checkpoint:3: cannot parse the checkpoint state: expected ':'"},
        {"model_checkpoint_path: \"\\q\"", "invalid escape sequence"},
        {"model_checkpoint_path: 12", "expected a quoted string"},
        {"model_checkpoint_path: \"\\777\"", "octal escape out of range"},
        {"model_checkpoint_path: \"m-1\" }", "expected a field name"},
        {"x { y: 1", "unterminated message"},
        {"all_model_checkpoint_paths: [\"a\"", "unterminated list"},
        {"model_checkpoint_path:", "unexpected end of file"},
        {"all_model_checkpoint_paths: \"m-1\"", "Invalid checkpoint state loaded from"},
        {"model_checkpoint_path: \"\"", "Invalid checkpoint state loaded from"},
    };
    for (size_t i = 0; i < RC_ARRAY_LEN(bad); i++) {
        ASSERT_TRUE(latest(dir, bad[i].text) == NULL);
        ASSERT_CODE(st, RECUR_DATA_LOSS);
        ASSERT_STR_CONTAINS(recur_status_message(st), bad[i].msg);
    }
    ASSERT_TRUE(latest(dir, "model_checkpoint_path: \"gone\"") == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Couldn't match files for checkpoint");
    char small[4];
    latest(dir, "model_checkpoint_path: \"m-1\"");
    ASSERT_TRUE(recur_latest_checkpoint(dir, small, sizeof small, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_latest_checkpoint(NULL, small, sizeof small, st) == NULL);
    unlink(pathf("%s/checkpoint", dir));
    ASSERT_TRUE(recur_latest_checkpoint(dir, small, sizeof small, st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    /* Written as Python writes it and read back; paths outside the directory stay absolute. */
    char *paths[] = {(char *)pathf("%s/%s", dir, names[2]), "/elsewhere/m-9", (char *)pathf("%s/m-2", dir)};
    rc_ckpt_state s = {paths[2], paths, 3}, r;
    ASSERT_EQ_INT(rc_state_write(dir, &s, st), RECUR_OK);
    size_t n;
    char *text = (char *)rt_read_file(pathf("%s/checkpoint", dir), &n);
    text[n] = 0;
    ASSERT_EQ_STR(text, "model_checkpoint_path: \"m-2\"\nall_model_checkpoint_paths: \"q\\\"u\\\\o\\'te \\303\\274\"\n"
                        "all_model_checkpoint_paths: \"/elsewhere/m-9\"\nall_model_checkpoint_paths: \"m-2\"\n");
    free(text);
    ASSERT_EQ_INT(rc_state_read(dir, &r, st), RECUR_OK);
    ASSERT_EQ_INT(r.nall, 3);
    for (int i = 0; i < 3; i++) ASSERT_EQ_STR(r.all_paths[i], paths[i]);
    rc_state_free(&r);
    ASSERT_EQ_INT(count_files(dir), 7); /* no temporary left */
    recur_array_free(v);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- allocation failures */
TEST(every_allocation_failure_is_reported)
{
    const char *dir = tmpdir();
    model m = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *s = initialized_session(&m);
    recur_array *sv = strings(RECUR_SHAPE(2), (const char *[]){"ab", "c"}, NULL);
    int failures = 0;
    for (long n = 1;; n++) {
        rm_rf(pathf("%s/o", dir));
        recur_alloc_fail_after(n);
        recur_saver *saver = recur_saver_new(m.g, NULL);
        recur_code code = saver ? recur_saver_save(saver, s, pathf("%s/o/m", dir), 1, NULL, 0, st) : RECUR_OUT_OF_MEMORY;
        if (code == RECUR_OK) code = recur_saver_restore(saver, s, pathf("%s/o/m-1", dir), st);
        recur_checkpoint_writer *w = code == RECUR_OK ? recur_checkpoint_writer_new(pathf("%s/o/s", dir), st) : NULL;
        if (w) code = recur_checkpoint_writer_add(w, "s", sv, st);
        if (w && code == RECUR_OK) code = recur_checkpoint_writer_finish(w, st);
        if (code == RECUR_OK && !w) code = recur_status_code(st);
        recur_checkpoint *c = code == RECUR_OK ? recur_checkpoint_open(pathf("%s/o/s", dir), st) : NULL;
        recur_array *r = c ? recur_checkpoint_read(c, "s", st) : NULL;
        if (code == RECUR_OK && !r) code = recur_status_code(st);
        rc_name_map map = {0};
        rc_name_info want = {"new/w", RECUR_F32, RECUR_SHAPE(2)}, have = {"old/w", RECUR_F32, RECUR_SHAPE(2)};
        if (code == RECUR_OK && !rc_suggest_name_map(&want, 1, &have, 1, &map)) code = RECUR_OUT_OF_MEMORY;
        if (code == RECUR_OK && !latest(pathf("%s/o", dir), "model_checkpoint_path: \"m-1\"")) code = recur_status_code(st);
        recur_alloc_fail_after(0);
        if (!saver) recur_graph_clear_error(m.g);
        rc_name_map_free(&map);
        recur_array_free(r);
        recur_checkpoint_close(c);
        recur_checkpoint_writer_free(w);
        recur_saver_free(saver);
        if (code == RECUR_OK) break;
        ASSERT_EQ_INT(code, RECUR_OUT_OF_MEMORY);
        failures++;
    }
    ASSERT_TRUE(failures > 50);
    recur_array_free(sv);
    recur_session_free(s);
    recur_graph_free(m.g);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- I/O failures */
/* Add 1 to every float variable of the session (a new state to save). */
static void bump(recur_session *s, const model *m)
{
    for (int i = 0; i < 2; i++) {
        recur_array *a = recur_session_get_variable(s, m->v[i], st);
        ASSERT_OK(st);
        for (int64_t k = 0; k < recur_array_size(a); k++) {
            if (recur_array_dtype(a) == RECUR_F32) ((float *)recur_array_data(a))[k] += 1;
            else ((double *)recur_array_data(a))[k] += 1;
        }
        recur_session_set_variable(s, m->v[i], a, st);
        ASSERT_OK(st);
        recur_array_free(a);
    }
}

/* No temporary or backup file is left in dir. */
static void assert_no_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    for (struct dirent *de; (de = readdir(d));)
        if (strstr(de->d_name, ".tmp") || strstr(de->d_name, ".prev"))
            rt_fail(__FILE__, __LINE__, "%s/%s left behind", dir, de->d_name);
    closedir(d);
}

/* Every write-side operation of a save fails in turn (ENOSPC with a short write, EIO, and
 * failing renames and fsyncs among them): the save reports it, leaves no temporary files, and
 * the previous checkpoint (a new step, and an overwrite of the same prefix) restores intact. */
TEST(io_failures_leave_the_previous_checkpoint_intact)
{
    const char *dir = tmpdir();
    model m = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *s = initialized_session(&m), *check = initialized_session(&m);
    recur_saver *sv = recur_saver_new(m.g, NULL);
    char path[512], latest_path[512];
    ASSERT_EQ_INT(recur_saver_save(sv, s, pathf("%s/model.ckpt", dir), 1, path, sizeof path, st), RECUR_OK);
    ASSERT_EQ_INT(recur_saver_save(sv, s, pathf("%s/same", dir), -1, NULL, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_saver_save(sv, s, pathf("%s/model.ckpt", dir), 1, path, sizeof path, st), RECUR_OK);
    recur_session *saved = initialized_session(&m); /* holds the values on disk */
    ASSERT_EQ_INT(recur_saver_restore(sv, saved, path, st), RECUR_OK);
    bump(s, &m);
    const int errs[] = {ENOSPC, EIO};
    int failures[2] = {0, 0};
    for (int same = 0; same < 2; same++)
        for (int e = 0; e < 2; e++)
            for (long n = 1;; n++) {
                long before = recur_io_op_count();
                recur_io_fail_after(n, errs[e]);
                recur_code code = same ? recur_saver_save(sv, s, pathf("%s/same", dir), -1, NULL, 0, st)
                                       : recur_saver_save(sv, s, pathf("%s/model.ckpt", dir), 2, NULL, 0, st);
                bool fired = recur_io_op_count() - before >= n;
                recur_io_fail_after(0, 0);
                if (!fired) {
                    ASSERT_EQ_INT(code, RECUR_OK);
                    break;
                }
                /* The failure is reported with the system's words, and nothing is left over. */
                ASSERT_TRUE(code != RECUR_OK);
                ASSERT_STR_CONTAINS(recur_status_message(st), strerror(errs[e]));
                failures[same]++;
                assert_no_leftovers(dir);
                /* The previous checkpoint restores and holds the old values... */
                const char *prev = same ? pathf("%s/same", dir) : path;
                if (same && recur_saver_restore(sv, check, prev, st) == RECUR_OK) {
                    /* ...or, when only the final directory sync failed, the new one is in place
                     * whole; either way the checkpoint is never a mix of the two. */
                    recur_array *a = recur_session_get_variable(check, m.v[0], st);
                    recur_array *b = recur_session_get_variable(saved, m.v[0], st);
                    recur_array *c = recur_session_get_variable(s, m.v[0], st);
                    ASSERT_TRUE(arrays_equal(a, b) || arrays_equal(a, c));
                    if (arrays_equal(a, b)) assert_same_values(check, &m, saved, &m);
                    else assert_same_values(check, &m, s, &m);
                    recur_array_free(a), recur_array_free(b), recur_array_free(c);
                } else if (!same) {
                    ASSERT_EQ_INT(recur_saver_restore(sv, check, prev, st), RECUR_OK);
                    assert_same_values(check, &m, saved, &m);
                    /* The state file still names a complete checkpoint. */
                    const char *l = recur_latest_checkpoint(dir, latest_path, sizeof latest_path, st);
                    ASSERT_TRUE(l != NULL);
                    ASSERT_EQ_INT(recur_saver_restore(sv, check, l, st), RECUR_OK);
                } else {
                    rt_fail(__FILE__, __LINE__, "%s does not restore after a failed save: %s", prev,
                            recur_status_message(st));
                }
                /* Put step 2 back out of the way for the next round. */
                recur_saver_free(sv);
                sv = recur_saver_new(m.g, NULL);
                ASSERT_EQ_INT(recur_saver_save(sv, saved, pathf("%s/model.ckpt", dir), 1, NULL, 0, st), RECUR_OK);
                ASSERT_EQ_INT(recur_saver_save(sv, saved, pathf("%s/same", dir), -1, NULL, 0, st), RECUR_OK);
                unlink(pathf("%s/model.ckpt-2.index", dir));
                unlink(pathf("%s/model.ckpt-2.data-00000-of-00001", dir));
            }
    /* Creating, writing (short), fsyncing and renaming both files, the directory sync, and the
     * state file's own temporary, write, sync and rename. */
    printf("  %d failed saves to a new prefix, %d overwriting one, each reported and harmless\n", failures[0],
           failures[1]);
    ASSERT_TRUE(failures[0] >= 10);
    ASSERT_TRUE(failures[1] >= 10);
    recur_saver_free(sv);
    recur_session_free(s);
    recur_session_free(check);
    recur_session_free(saved);
    recur_graph_free(m.g);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- crash atomicity */
/* The child: save forever, each checkpoint holding `step` in every element of every tensor. */
static _Noreturn void save_forever(const char *dir, int64_t step, int64_t last)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *vars[3] = {
        recur_get_variable(g, "big", RECUR_SHAPE(512, 1024), NULL),
        recur_get_variable(g, "small", RECUR_SHAPE(7), &(recur_variable_opts){.dtype = RECUR_F64}),
        recur_get_variable(g, "step", RECUR_SCALAR, &(recur_variable_opts){.dtype = RECUR_I64}),
    };
    recur_session *s = recur_session_new(g, NULL, NULL);
    recur_saver *sv = recur_saver_new(g, &(recur_saver_opts){.max_to_keep = 3});
    for (;; step++) {
        for (int i = 0; i < 3; i++) {
            recur_array *a = recur_array_new(recur_tensor_dtype(vars[i]), recur_tensor_shape(vars[i]), NULL);
            for (int64_t e = 0; e < recur_array_size(a); e++) rc_array_set(a, e, (double)step);
            recur_session_set_variable(s, vars[i], a, NULL);
            recur_array_free(a);
        }
        if (recur_saver_save(sv, s, pathf("%s/model", dir), step, NULL, 0, NULL) != RECUR_OK) _exit(3);
        if (step == last) _exit(0);
    }
}

/* Every checkpoint the state file lists must open, pass every checksum and hold one step. */
static int64_t verify_state(const char *dir)
{
    rc_ckpt_state s;
    recur_code code = rc_state_read(dir, &s, st);
    if (code == RECUR_NOT_FOUND) return -1; /* killed before the first save finished */
    ASSERT_EQ_INT(code, RECUR_OK);
    char buf[1024];
    ASSERT_EQ_STR(recur_latest_checkpoint(dir, buf, sizeof buf, st), s.model_path);
    int64_t newest = -1;
    for (size_t i = 0; i < s.nall; i++) {
        recur_checkpoint *c = recur_checkpoint_open(s.all_paths[i], st);
        ASSERT_OK(st);
        recur_array *step = recur_checkpoint_read(c, "step", st);
        ASSERT_OK(st);
        int64_t k = recur_array_i64(step)[0];
        ASSERT_EQ_STR(s.all_paths[i], pathf("%s/model-%lld", dir, (long long)k));
        for (int t = 0; t < 2; t++) {
            recur_array *a = recur_checkpoint_read(c, t ? "small" : "big", st);
            ASSERT_OK(st);
            for (int64_t e = 0; e < recur_array_size(a); e++) ASSERT_EQ_INT(rc_array_get(a, e), (double)k);
            recur_array_free(a);
        }
        recur_array_free(step);
        recur_checkpoint_close(c);
        newest = k;
    }
    rc_state_free(&s);
    return newest;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

TEST(killed_saver_never_leaves_a_broken_checkpoint)
{
    const char *dir = tmpdir();
    /* The kill comes at a random time within a few times what a child takes to start and make
     * one save here (at least 40 ms), so that slow machines and sanitizers see kills both
     * before the first save completes and in the middle of later ones. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) save_forever(pathf("%s/calibrate", dir), 0, 0);
    int status;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int window_us = (int)fmax(40000, 3e6 * seconds_since(&t0));
    rm_rf(pathf("%s/calibrate", dir));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    srand(12345);
    int kills = 0, verified = 0;
    int64_t last = -1;
    for (;; kills++) {
        double el = seconds_since(&t0);
        if ((el > 8 && kills >= 60) || el > 120) break;
        pid = fork();
        if (pid == 0) save_forever(dir, (int64_t)kills * 10000, -1); /* exact in float32 */
        usleep((useconds_t)(rand() % window_us));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ASSERT_TRUE(WIFSIGNALED(status));
        int64_t newest = verify_state(dir);
        if (newest >= 0) {
            verified++;
            ASSERT_TRUE(newest >= last);
            last = newest;
        }
    }
    printf("  killed the saving child %d times within %d ms of its start; %d states verified\n", kills,
           window_us / 1000, verified);
    ASSERT_TRUE(kills >= 50 && verified >= kills / 2);
    rm_rf(dir);
}

/* ---------------------------------------------------------------- for TensorFlow */
/* One manifest entry (tests/golden.h format; strings as make_ckpt_golden.py's meta lines). */
static void manifest_entry(FILE *f, const char *key, const recur_array *a)
{
    static const char *names[] = {[RECUR_F32] = "float32", [RECUR_F64] = "float64", [RECUR_I32] = "int32",
                                  [RECUR_I64] = "int64", [RECUR_BOOL] = "bool"};
    recur_shape sh = recur_array_shape(a);
    bool str = recur_array_dtype(a) == RECUR_STRING;
    if (str) fprintf(f, "meta string %s %d", key, sh.rank);
    else fprintf(f, "tensor %s %s %d", key, names[recur_array_dtype(a)], sh.rank);
    for (int d = 0; d < sh.rank; d++) fprintf(f, " %lld", (long long)sh.dims[d]);
    for (int64_t e = 0; e < recur_array_size(a); e++) {
        size_t len;
        const char *sv = str ? recur_array_string(a, e, &len) : NULL;
        if (!str) {
            fprintf(f, "%s%.17g", e ? " " : "\n", rc_array_get(a, e));
            continue;
        }
        fprintf(f, " x");
        for (size_t k = 0; k < len; k++) fprintf(f, "%02x", (uint8_t)sv[k]);
    }
    fprintf(f, "\n");
}

TEST(write_checkpoint_for_tensorflow)
{
    const char *out = getenv("RECUR_CKPT_OUT");
    const char *dir = tmpdir();
    if (out && *out) dir = out;
    /* 1. A Saver checkpoint of a graph's variables, for tf.compat.v1.train.Saver.restore. */
    model m = build_model("net", RECUR_SHAPE(3, 4), RECUR_F64);
    recur_session *s = initialized_session(&m);
    recur_saver *sv = recur_saver_new(m.g, NULL);
    char path[1024];
    ASSERT_EQ_INT(recur_saver_save(sv, s, pathf("%s/model.ckpt", dir), 42, path, sizeof path, st), RECUR_OK);
    FILE *f = fopen(pathf("%s/model.golden", dir), "w");
    fprintf(f, "# written by tests/test_checkpoint.c (write_checkpoint_for_tensorflow)\nmeta prefix model.ckpt-42\n");
    for (int i = 0; i < m.n; i++) {
        recur_array *a = recur_session_get_variable(s, m.v[i], st);
        manifest_entry(f, recur_variable_name(m.v[i]), a);
        recur_array_free(a);
    }
    fclose(f);
    /* 2. Every dtype, special values, empty tensors, strings and a unicode key, for
     * tf.train.load_checkpoint. */
    const char *keys[] = {"f32", "f64", "i32", "i64", "bool", "empty", "s", "str_scalar", "\xc3\xbc/\xce\xb2"};
    const char *sv3[] = {"", "tab\there", "nul\0byte"};
    recur_array *vals[] = {
        f32s(RECUR_SHAPE(2, 3), (float[]){0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f}),
        recur_array_from(RECUR_F64, RECUR_SHAPE(3), (double[]){1e300, -1.0 / 3, 5e-324}, NULL),
        recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){INT32_MIN, INT32_MAX}, NULL),
        recur_array_from(RECUR_I64, RECUR_SHAPE(2), (int64_t[]){-(1LL << 53), 1LL << 53}, NULL),
        recur_array_from(RECUR_BOOL, RECUR_SHAPE(2), (bool[]){true, false}, NULL),
        recur_array_new(RECUR_F32, RECUR_SHAPE(0, 3), NULL),
        strings(RECUR_SHAPE(3), sv3, (size_t[]){0, 8, 8}),
        strings(RECUR_SCALAR, (const char *[]){"ab"}, NULL),
        recur_array_scalar_f32(2.5f, NULL),
    };
    write_ckpt(pathf("%s/raw.ckpt", dir), keys, vals, RC_ARRAY_LEN(keys));
    f = fopen(pathf("%s/raw.golden", dir), "w");
    fprintf(f, "# written by tests/test_checkpoint.c (write_checkpoint_for_tensorflow)\nmeta prefix raw.ckpt\n");
    for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) manifest_entry(f, keys[i], vals[i]);
    fclose(f);
    /* Both manifests agree with what recur reads back. */
    const char *sets[][2] = {{"model.golden", "model.ckpt-42"}, {"raw.golden", "raw.ckpt"}};
    for (int k = 0; k < 2; k++) {
        gt_file *g = gt_load(pathf("%s/%s", dir, sets[k][0]));
        recur_checkpoint *c = recur_checkpoint_open(pathf("%s/%s", dir, sets[k][1]), st);
        check_manifest(c, g);
        recur_checkpoint_close(c);
        gt_free(g);
    }
    for (size_t i = 0; i < RC_ARRAY_LEN(keys); i++) recur_array_free(vals[i]);
    recur_saver_free(sv);
    recur_session_free(s);
    recur_graph_free(m.g);
    if (!out || !*out) rm_rf(dir);
}

RUN_TESTS(T(crc32c_check_value_and_masking), T(spec_worked_example_byte_for_byte),
          T(round_trip_every_dtype_shape_and_name), T(multi_block_index_equals_tensorflows),
          T(tensorflow_checkpoints_read_bit_exactly), T(rewriting_tensorflow_checkpoints_gives_identical_bytes),
          T(saver_save_and_restore_through_sessions), T(saver_max_to_keep_deletes_oldest),
          T(restore_reports_every_problem_and_assigns_nothing), T(restore_suggests_a_map_that_restores_everything),
          T(name_map_suggestions_and_application), T(init_from_checkpoint_checks_everything_first),
          T(truncated_and_bit_flipped_files_fail_cleanly), T(crafted_indexes_are_checked),
          T(snappy_compressed_blocks_are_read), T(writer_and_reader_argument_errors),
          T(state_file_syntax_and_latest_checkpoint), T(every_allocation_failure_is_reported), T(io_failures_leave_the_previous_checkpoint_intact),
          T(killed_saver_never_leaves_a_broken_checkpoint), T(write_checkpoint_for_tensorflow))
