/*
 * make_seeds.c - writes the checkpoint seeds of fuzz/corpus (make -f fuzz/fuzz.mk fuzz-seeds):
 *
 *   make_seeds GOLDEN_CKPT_DIR CORPUS_DIR
 *
 * Seeds, in the layouts of fuzz_targets.h: the checkpoints TensorFlow wrote for the tests
 * (tests/golden/ckpt), one recur writes with every dtype it saves, a crafted one (big-endian
 * header, a partitioned tensor and its slice entry, a dtype recur cannot read), the recur
 * one re-blocked into two data blocks, plain and snappy-compressed, and one holding the
 * harness's fixed checkpoint under older names (for the rename-map suggestions). ckpt_index seeds set flag
 * bit 0 (one TensorFlow index keeps flags 0 for the checksum path); ckpt_bundle seeds set bits
 * 0 and 1.
 */
#include "recur.h"
#include "io/io.h"
#include "io/checkpoint.pb-c.h"

#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn static void die(const char *what, const char *detail)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, f) != *n) die("cannot read", path);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f)) die("cannot write", path);
}

/* ckpt_index seed: flags + index. */
static void index_seed(const char *corpus, const char *name, uint8_t flags, const uint8_t *idx, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ckpt_index/%s", corpus, name);
    spit(path, &flags, 1, idx, n);
}

/* ckpt_bundle seed: flags, index length, index, data. */
static void bundle_seed(const char *corpus, const char *name, const uint8_t *idx, size_t ni, const uint8_t *data,
                        size_t nd)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ckpt_bundle/%s", corpus, name);
    size_t n = 5 + ni + nd;
    uint8_t *b = malloc(n);
    b[0] = 3;
    for (int k = 0; k < 4; k++) b[1 + k] = (uint8_t)(ni >> (8 * k));
    memcpy(b + 5, idx, ni);
    memcpy(b + 5 + ni, data, nd);
    spit(path, b, n, NULL, 0);
    free(b);
}

static void both_seeds(const char *corpus, const char *name, const char *prefix)
{
    char path[1024];
    size_t ni, nd;
    snprintf(path, sizeof path, "%s.index", prefix);
    uint8_t *idx = slurp(path, &ni);
    snprintf(path, sizeof path, "%s.data-00000-of-00001", prefix);
    uint8_t *data = slurp(path, &nd);
    index_seed(corpus, name, 1, idx, ni);
    bundle_seed(corpus, name, idx, ni, data, nd);
    free(idx);
    free(data);
}

/* ---------------------------------------------------------------- a small table builder */
typedef struct kv {
    uint8_t key[256], val[512];
    size_t klen, vlen;
} kv;

typedef struct kv_list {
    kv e[64];
    size_t n;
} kv_list;

static recur_code collect(void *ctx, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                          recur_status *st)
{
    kv_list *l = ctx;
    if (l->n == 64 || klen > 256 || vlen > 512) die("table too large for the seed builder", NULL);
    memcpy(l->e[l->n].key, key, klen);
    memcpy(l->e[l->n].val, val, vlen);
    l->e[l->n].klen = klen;
    l->e[l->n++].vlen = vlen;
    return RECUR_OK;
}

/* Append one block of entries [from, to) (restart interval `interval`) with its trailer. */
static void put_block(rc_strbuf *out, const kv *e, size_t from, size_t to, int interval, bool compress,
                      uint64_t handle[2])
{
    rc_strbuf b;
    rc_sb_init(&b);
    uint32_t restarts[64];
    size_t nr = 0;
    for (size_t i = from; i < to; i++) {
        size_t shared = 0;
        if ((i - from) % (size_t)interval == 0) {
            restarts[nr++] = (uint32_t)b.len;
        } else {
            while (shared < e[i].klen && shared < e[i - 1].klen && e[i].key[shared] == e[i - 1].key[shared]) shared++;
        }
        rc_put_varint(&b, shared);
        rc_put_varint(&b, e[i].klen - shared);
        rc_put_varint(&b, e[i].vlen);
        rc_sb_putn(&b, (const char *)e[i].key + shared, e[i].klen - shared);
        rc_sb_putn(&b, (const char *)e[i].val, e[i].vlen);
    }
    if (!nr) restarts[nr++] = 0;
    for (size_t i = 0; i < nr; i++) rc_put_fixed32(&b, restarts[i]);
    rc_put_fixed32(&b, (uint32_t)nr);
    const char *body = b.s;
    size_t blen = b.len;
    char *comp = NULL;
    uint8_t type = 0;
    if (compress) {
        size_t clen = snappy_max_compressed_length(b.len);
        comp = malloc(clen);
        if (!comp || snappy_compress(b.s, b.len, comp, &clen) != SNAPPY_OK) die("snappy_compress failed", NULL);
        body = comp;
        blen = clen;
        type = 1;
    }
    handle[0] = out->len;
    handle[1] = blen;
    rc_sb_putn(out, body, blen);
    rc_sb_putn(out, (const char *)&type, 1);
    rc_put_fixed32(out, rc_crc32c_mask(rc_crc32c_extend(rc_crc32c_extend(0, body, blen), &type, 1)));
    free(comp);
    rc_sb_free(&b);
}

/* A table holding l's entries, `per_block` entries per data block. */
static void build_table(const kv_list *l, size_t per_block, bool compress, rc_strbuf *out)
{
    kv index[64];
    size_t nindex = 0;
    for (size_t i = 0; i < l->n; i += per_block) {
        size_t to = i + per_block < l->n ? i + per_block : l->n;
        uint64_t h[2];
        put_block(out, l->e, i, to, 2, compress, h);
        kv *ie = &index[nindex++];
        memcpy(ie->key, l->e[to - 1].key, l->e[to - 1].klen);
        ie->klen = l->e[to - 1].klen;
        rc_strbuf hv;
        rc_sb_init(&hv);
        rc_put_varint(&hv, h[0]);
        rc_put_varint(&hv, h[1]);
        memcpy(ie->val, hv.s, hv.len);
        ie->vlen = hv.len;
        rc_sb_free(&hv);
    }
    uint64_t meta[2], idx[2];
    put_block(out, NULL, 0, 0, 1, false, meta);
    put_block(out, index, 0, nindex, 1, compress, idx);
    size_t footer = out->len;
    rc_put_varint(out, meta[0]);
    rc_put_varint(out, meta[1]);
    rc_put_varint(out, idx[0]);
    rc_put_varint(out, idx[1]);
    while (out->len < footer + 40) rc_sb_putn(out, "", 1);
    rc_put_fixed64(out, 0xdb4775248b80fb57ull);
}

/* ---------------------------------------------------------------- checkpoints */
static void write_recur_checkpoint(const char *prefix)
{
    recur_status *st = recur_status_new();
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(prefix, st);
    float f[6] = {1.5f, -2, 0, 3.25f, 1e-3f, -7};
    double d[2] = {0.1, -1e300};
    int32_t i32[3] = {1, -2, 2147483647};
    int64_t i64[2] = {-1, 1099511627776};
    bool b[3] = {true, false, true};
    struct {
        const char *key;
        recur_array *a;
    } t[] = {
        {"bool_vec", recur_array_from(RECUR_BOOL, RECUR_SHAPE(3), b, st)},
        {"double_vec", recur_array_from(RECUR_F64, RECUR_SHAPE(2), d, st)},
        {"empty", recur_array_new(RECUR_F32, RECUR_SHAPE(0, 3), st)},
        {"global_step", recur_array_from(RECUR_I64, RECUR_SCALAR, i64 + 1, st)},
        {"int32_vec", recur_array_from(RECUR_I32, RECUR_SHAPE(3), i32, st)},
        {"int64_vec", recur_array_from(RECUR_I64, RECUR_SHAPE(2), i64, st)},
        {"layer1/rnn/basic_lstm_cell/kernel", recur_array_from(RECUR_F32, RECUR_SHAPE(2, 3), f, st)},
        {"layer1/rnn/basic_lstm_cell/bias", recur_array_from(RECUR_F32, RECUR_SHAPE(3), f, st)},
    };
    for (size_t i = 0; w && i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].a || recur_checkpoint_writer_add(w, t[i].key, t[i].a, st) != RECUR_OK)
            die("cannot write", recur_status_message(st));
        recur_array_free(t[i].a);
    }
    if (!w || recur_checkpoint_writer_finish(w, st) != RECUR_OK) die("cannot write", recur_status_message(st));
    recur_checkpoint_writer_free(w);
    recur_status_free(st);
}

/* The variables of the harness's fixed checkpoint under older names (scope and TensorFlow's
 * historical renames), for the rename-map suggestions. */
static void write_renamed_checkpoint(const char *prefix)
{
    static const struct {
        const char *key;
        recur_dtype dt;
        recur_shape shape;
    } vars[] = {
        {"global_step", RECUR_I64, RECUR_SCALAR},
        {"layer1/rnn/lstm_cell/bias", RECUR_F32, RECUR_SHAPE(8)},
        {"layer1/rnn/lstm_cell/weights", RECUR_F32, RECUR_SHAPE(3, 8)},
        {"layer2/kernel", RECUR_F64, RECUR_SHAPE(2, 2)},
        {"model/dense/bias", RECUR_F32, RECUR_SHAPE(2)},
        {"model/dense/kernel", RECUR_F32, RECUR_SHAPE(4, 2)},
        {"old_mask", RECUR_BOOL, RECUR_SHAPE(3)},
    };
    recur_status *st = recur_status_new();
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(prefix, st);
    for (size_t i = 0; w && i < sizeof vars / sizeof vars[0]; i++) {
        recur_array *a = recur_array_new(vars[i].dt, vars[i].shape, st);
        if (!a || recur_checkpoint_writer_add(w, vars[i].key, a, st) != RECUR_OK) die("cannot write", recur_status_message(st));
        recur_array_free(a);
    }
    if (!w || recur_checkpoint_writer_finish(w, st) != RECUR_OK) die("cannot write", recur_status_message(st));
    recur_checkpoint_writer_free(w);
    recur_status_free(st);
}

static size_t pack(const ProtobufCMessage *m, uint8_t *out)
{
    if (protobuf_c_message_get_packed_size(m) > 512) die("entry too large", NULL);
    return protobuf_c_message_pack(m, out);
}

static void add_entry(kv_list *l, const char *key, size_t klen, int dtype, int rank, const int64_t *dims,
                      int64_t offset, int64_t size, const uint8_t *data, int slices)
{
    Recur__TensorShapeProto__Dim dim[8], *dp[8];
    Recur__TensorShapeProto sp = RECUR__TENSOR_SHAPE_PROTO__INIT;
    Recur__TensorSliceProto sl = RECUR__TENSOR_SLICE_PROTO__INIT, *slp = &sl;
    Recur__BundleEntryProto e = RECUR__BUNDLE_ENTRY_PROTO__INIT;
    for (int i = 0; i < rank; i++) {
        dim[i] = (Recur__TensorShapeProto__Dim)RECUR__TENSOR_SHAPE_PROTO__DIM__INIT;
        dim[i].size = dims[i];
        dp[i] = &dim[i];
    }
    sp.n_dim = (size_t)rank;
    sp.dim = dp;
    e.dtype = (Recur__DataType)dtype;
    e.shape = &sp;
    e.offset = offset;
    e.size = size;
    e.crc32c = rc_crc32c_mask(rc_crc32c_extend(0, data + offset, (size_t)size));
    e.n_slices = (size_t)slices;
    e.slices = &slp;
    kv *k = &l->e[l->n++];
    memcpy(k->key, key, klen);
    k->klen = klen;
    k->vlen = pack(&e.base, k->val);
}

/* Big-endian header; float and int64 tensors stored big-endian, a bool with a byte 2, a
 * partitioned tensor with one slice entry, a half tensor (not readable by recur), a string
 * tensor (its checksums are fixed by the harness under flag bit 1). */
static void crafted(const char *corpus)
{
    uint8_t data[64] = {0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0, /* 1.0f, -2.5f big-endian */
                        0, 0, 0, 0, 0, 0, 0, 42,            /* int64 42 big-endian */
                        0, 2, 1,                            /* bool */
                        0x00, 0x3c, 0x00, 0xc0,             /* half 1, -2 */
                        2, 0, 0, 0, 0, 0, 'h', 'i'};        /* strings "hi", "" */
    kv_list l = {.n = 0};
    Recur__VersionDef v = RECUR__VERSION_DEF__INIT;
    Recur__BundleHeaderProto h = RECUR__BUNDLE_HEADER_PROTO__INIT;
    v.producer = 1;
    h.num_shards = 1;
    h.endianness = RECUR__BUNDLE_HEADER_PROTO__ENDIANNESS__BIG;
    h.version = &v;
    l.e[0].klen = 0;
    l.e[0].vlen = pack(&h.base, l.e[0].val);
    l.n = 1;
    add_entry(&l, "\0part/slice0", 12, 1, 1, (int64_t[]){2}, 0, 8, data, 0);
    add_entry(&l, "be/f32", 6, 1, 1, (int64_t[]){2}, 0, 8, data, 0);
    add_entry(&l, "be/i64", 6, 9, 0, NULL, 8, 8, data, 0);
    add_entry(&l, "bool", 4, 10, 1, (int64_t[]){3}, 16, 3, data, 0);
    add_entry(&l, "half", 4, 19, 1, (int64_t[]){2}, 19, 4, data, 0);
    add_entry(&l, "part", 4, 1, 2, (int64_t[]){2, 2}, 0, 0, data, 1);
    add_entry(&l, "str", 3, 7, 1, (int64_t[]){2}, 23, 8, data, 0);
    rc_table_entry te[16];
    for (size_t i = 0; i < l.n; i++) te[i] = (rc_table_entry){l.e[i].key, l.e[i].klen, l.e[i].val, l.e[i].vlen};
    rc_strbuf out;
    rc_sb_init(&out);
    if (!rc_table_build(te, l.n, &out)) die("rc_table_build failed", NULL);
    index_seed(corpus, "crafted_big_endian", 1, (const uint8_t *)out.s, out.len);
    bundle_seed(corpus, "crafted_big_endian", (const uint8_t *)out.s, out.len, data, 31);
    rc_sb_free(&out);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds GOLDEN_CKPT_DIR CORPUS_DIR\n");
        return 2;
    }
    const char *golden = argv[1], *corpus = argv[2];
    char path[2048], tmp[] = "/tmp/recur_seeds_XXXXXX";
    snprintf(path, sizeof path, "%s/ckpt_index", corpus);
    mkdir(corpus, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/ckpt_bundle", corpus);
    mkdir(path, 0755);
    if (!mkdtemp(tmp)) die("mkdtemp failed", NULL);

    static const char *const tf[][2] = {{"tf_adam", "adam/model.ckpt-3"}, {"tf_dtypes", "dtypes/model.ckpt"},
                                        {"tf_object", "object/ckpt-1"}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", golden, tf[i][1]);
        both_seeds(corpus, tf[i][0], path);
    }
    size_t n;
    snprintf(path, sizeof path, "%s/%s.index", golden, tf[0][1]);
    uint8_t *adam = slurp(path, &n);
    index_seed(corpus, "tf_adam_checksums", 0, adam, n);
    free(adam);

    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s/recur", tmp);
    write_recur_checkpoint(prefix);
    both_seeds(corpus, "recur_dtypes", prefix);

    /* The recur checkpoint's entries in two data blocks (restart interval 2), plain and snappy. */
    snprintf(path, sizeof path, "%s.index", prefix);
    size_t ni, nd;
    uint8_t *idx = slurp(path, &ni);
    snprintf(path, sizeof path, "%s.data-00000-of-00001", prefix);
    uint8_t *data = slurp(path, &nd);
    kv_list l = {.n = 0};
    recur_status *st = recur_status_new();
    if (rc_table_scan(idx, ni, "recur.index", collect, &l, st) != RECUR_OK) die("scan", recur_status_message(st));
    for (int compress = 0; compress < 2; compress++) {
        rc_strbuf out;
        rc_sb_init(&out);
        build_table(&l, 5, compress, &out);
        const char *name = compress ? "recur_two_blocks_snappy" : "recur_two_blocks";
        index_seed(corpus, name, 1, (const uint8_t *)out.s, out.len);
        bundle_seed(corpus, name, (const uint8_t *)out.s, out.len, data, nd);
        rc_sb_free(&out);
    }
    crafted(corpus);
    char renamed[1100];
    snprintf(renamed, sizeof renamed, "%s/renamed", tmp);
    write_renamed_checkpoint(renamed);
    both_seeds(corpus, "recur_renamed", renamed);
    snprintf(path, sizeof path, "%s.index", renamed);
    unlink(path);
    snprintf(path, sizeof path, "%s.data-00000-of-00001", renamed);
    unlink(path);
    recur_status_free(st);
    free(idx);
    free(data);
    snprintf(path, sizeof path, "%s.index", prefix);
    unlink(path);
    snprintf(path, sizeof path, "%s.data-00000-of-00001", prefix);
    unlink(path);
    rmdir(tmp);
    return 0;
}
