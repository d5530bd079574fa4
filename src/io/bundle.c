/*
 * bundle.c - TensorFlow V2 checkpoints ("tensor bundles", spec/tf-checkpoint-v2.md): the
 * reader (recur_checkpoint_*) and the writer (recur_checkpoint_writer_*).
 *
 * Reader: the whole PREFIX.index is read and checked at open (table checksums, header,
 * every entry's dtype, shape, shard, offset and size against the data files' sizes); tensor
 * bytes are read on demand with pread and their CRC32C verified. Files are opened read-only.
 * Writer: tensors go to PREFIX.data-00000-of-00001.tmp<pid> in add order, densely packed; the
 * index is written at finish with its keys sorted, both files are fsynced and renamed into
 * place (data first, then index), then the directory is fsynced.
 * Entries are encoded with protobuf-c (checkpoint.pb-c.c): proto3 omits zero scalars and
 * writes set message fields, so the bytes equal TensorFlow's, `shape` included (`12 00`).
 */
#include "io/io.h"
#include "io/checkpoint.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

const char *rc_tf_dtype_name(int dt)
{
    static const char *const names[] = {
        "invalid", "float",  "double",     "int32",   "uint8",    "int16",   "int8",   "string",
        "complex64", "int64", "bool",      "qint8",   "quint8",   "qint32",  "bfloat16", "qint16",
        "quint16", "uint16", "complex128", "half",    "resource", "variant", "uint32", "uint64",
    };
    return dt >= 0 && dt < (int)RC_ARRAY_LEN(names) ? names[dt] : "invalid";
}

static bool dtype_supported(int dt) { return dt == RECUR_STRING || recur_dtype_size((recur_dtype)dt) != 0; }

/* ============================================================================ reader */
typedef struct ckpt_entry {
    char *key;
    int dtype;          /* TensorFlow DataType number */
    recur_shape shape;
    int64_t count;      /* elements */
    int32_t shard;
    uint64_t offset, size;
    uint32_t crc;       /* masked */
    bool sliced;        /* a partitioned tensor's full-shape entry: no data of its own */
} ckpt_entry;

struct recur_checkpoint {
    char *prefix, *index_path;
    ckpt_entry *e;
    size_t n, cap;
    rc_map by_key;      /* key -> position in e */
    bool has_header, big_endian;
    int num_shards;
    int *fds;           /* per shard; -1 when no entry uses it */
    uint64_t *fsizes;
};

static char *data_path(const char *prefix, int shard, int num_shards)
{
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_printf(&b, "%s.data-%05d-of-%05d", prefix, shard, num_shards);
    return rc_sb_take(&b);
}

static recur_code no_header(const recur_checkpoint *c, recur_status *st)
{
    return rc_err(st, RECUR_DATA_LOSS,
                  "Unable to read file (%s). Perhaps the file is corrupt or was produced by a newer "
                  "version of TensorFlow with format changes (failed to seek to header entry)",
                  c->index_path);
}

static recur_code parse_header(recur_checkpoint *c, const uint8_t *val, size_t vlen, recur_status *st)
{
    rc_pb_alloc pa;
    rc_pb_alloc_init(&pa);
    Recur__BundleHeaderProto *h = recur__bundle_header_proto__unpack(&pa.a, vlen, val);
    if (!h)
        return pa.failed ? rc_oom(st)
                         : rc_err(st, RECUR_DATA_LOSS, "%s: cannot parse the header (BundleHeaderProto)",
                                  c->index_path);
    recur_code code = RECUR_OK;
    const Recur__VersionDef *v = h->version;
    bool bad_consumer = false;
    for (size_t i = 0; v && i < v->n_bad_consumers; i++) bad_consumer |= v->bad_consumers[i] == 1;
    if (v && v->producer < 0)
        code = rc_err(st, RECUR_DATA_LOSS, "%s: checkpoint producer version %d below min producer 0",
                      c->index_path, v->producer);
    else if (v && v->min_consumer > 1)
        code = rc_err(st, RECUR_DATA_LOSS,
                      "%s: checkpoint min consumer version %d above current version 1 for TensorFlow "
                      "(produced by a newer version with format changes)",
                      c->index_path, v->min_consumer);
    else if (bad_consumer)
        code = rc_err(st, RECUR_DATA_LOSS, "%s: checkpoint disallows consumer version 1", c->index_path);
    else if (h->num_shards < 1 || h->num_shards > 99999) /* data file names hold 5 digits */
        code = rc_err(st, RECUR_DATA_LOSS, "%s: bad number of shards %d in the header", c->index_path,
                      h->num_shards);
    else if ((unsigned)h->endianness > 1)
        code = rc_err(st, RECUR_DATA_LOSS, "%s: bad endianness %d in the header", c->index_path,
                      (int)h->endianness);
    else {
        c->num_shards = h->num_shards;
        c->big_endian = h->endianness == RECUR__BUNDLE_HEADER_PROTO__ENDIANNESS__BIG;
        c->has_header = true;
    }
    recur__bundle_header_proto__free_unpacked(h, &pa.a);
    return code;
}

/* Check and store one tensor entry. */
static recur_code parse_entry(recur_checkpoint *c, const char *key, const uint8_t *val, size_t vlen,
                              recur_status *st)
{
    rc_pb_alloc pa;
    rc_pb_alloc_init(&pa);
    Recur__BundleEntryProto *p = recur__bundle_entry_proto__unpack(&pa.a, vlen, val);
    if (!p)
        return pa.failed ? rc_oom(st)
                         : rc_err(st, RECUR_DATA_LOSS, "%s: key %s: cannot parse its BundleEntryProto",
                                  c->index_path, key);
    ckpt_entry e = {.dtype = (int)p->dtype, .shape = RECUR_SCALAR, .shard = p->shard_id,
                    .offset = (uint64_t)p->offset, .size = (uint64_t)p->size, .crc = p->crc32c,
                    .sliced = p->n_slices > 0};
    const char *bad = NULL;
    char msg[160];
    const Recur__TensorShapeProto *sp = p->shape;
    if (e.dtype <= 0 || e.dtype > RECUR__DATA_TYPE__DT_UINT64) {
        snprintf(msg, sizeof msg, "unknown dtype %d", e.dtype);
        bad = msg;
    } else if (sp && sp->unknown_rank) {
        bad = "the shape has an unknown rank";
    } else if (sp && sp->n_dim > RECUR_MAX_RANK) {
        snprintf(msg, sizeof msg, "rank %zu is above the %d dimensions recur supports", sp->n_dim, RECUR_MAX_RANK);
        bad = msg;
    } else if (p->offset < 0 || p->size < 0 || p->shard_id < 0 || p->shard_id >= c->num_shards) {
        snprintf(msg, sizeof msg, "bad shard %d, offset %lld or size %lld", p->shard_id,
                 (long long)p->offset, (long long)p->size);
        bad = msg;
    }
    if (!bad && sp) {
        e.shape.rank = (int)sp->n_dim;
        for (size_t i = 0; i < sp->n_dim; i++) e.shape.dims[i] = sp->dim[i]->size;
    }
    if (!bad && !rc_shape_count(e.shape, &e.count)) bad = "the shape has a negative dimension or too many elements";
    size_t esize = recur_dtype_size((recur_dtype)e.dtype);
    if (!bad && !e.sliced && esize && (e.count > INT64_MAX / (int64_t)esize || e.size != (uint64_t)e.count * esize)) {
        snprintf(msg, sizeof msg, "Invalid size in bundle entry: stored size %llu; expected size %llu",
                 (unsigned long long)e.size, (unsigned long long)e.count * esize);
        bad = msg;
    }
    if (!bad && !e.sliced && e.dtype == RECUR_STRING && (e.size < 4 || e.size - 4 < (uint64_t)e.count))
        bad = "string tensor data too short for its element count";
    recur__bundle_entry_proto__free_unpacked(p, &pa.a);
    if (bad) return rc_err(st, RECUR_DATA_LOSS, "%s: key %s: %s", c->index_path, key, bad);

    if (!RC_GROW(c->e, c->cap, c->n + 1) || !(e.key = rc_strdup(key))) return rc_oom(st);
    if (!rc_map_set(&c->by_key, key, (intptr_t)c->n)) {
        rc_free(e.key);
        return rc_oom(st);
    }
    c->e[c->n++] = e;
    return RECUR_OK;
}

static recur_code visit(void *ctx, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                        recur_status *st)
{
    recur_checkpoint *c = ctx;
    if (klen == 0) return parse_header(c, val, vlen, st);
    if (!c->has_header) return no_header(c, st);
    /* Slice entries (keys starting with 0x00) and any key holding a NUL are not listed. */
    if (memchr(key, 0, klen)) return RECUR_OK;
    char *k = rc_strndup((const char *)key, klen);
    if (!k) return rc_oom(st);
    recur_code code = parse_entry(c, k, val, vlen, st);
    rc_free(k);
    return code;
}

/* Open the data file of every shard some entry uses and check every entry lies inside it. */
static recur_code open_data_files(recur_checkpoint *c, recur_status *st)
{
    if (!(c->fds = rc_malloc((size_t)c->num_shards * sizeof *c->fds))) return rc_oom(st);
    for (int i = 0; i < c->num_shards; i++) c->fds[i] = -1;
    if (!(c->fsizes = rc_calloc((size_t)c->num_shards, sizeof *c->fsizes))) return rc_oom(st);
    for (size_t i = 0; i < c->n; i++) {
        ckpt_entry *e = &c->e[i];
        if (e->sliced) continue;
        if (c->fds[e->shard] < 0) {
            char *path = data_path(c->prefix, e->shard, c->num_shards);
            if (!path) return rc_oom(st);
            struct stat sb;
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || fstat(fd, &sb) != 0) {
                recur_code code = rc_err(st, errno == ENOENT ? RECUR_NOT_FOUND : RECUR_DATA_LOSS,
                                         "Cannot open the data file %s of checkpoint %s: %s", path,
                                         c->prefix, strerror(errno));
                if (fd >= 0) close(fd);
                rc_free(path);
                return code;
            }
            rc_free(path);
            c->fds[e->shard] = fd;
            c->fsizes[e->shard] = (uint64_t)sb.st_size;
        }
        uint64_t fsize = c->fsizes[e->shard];
        if (e->offset > fsize || e->size > fsize - e->offset)
            return rc_err(st, RECUR_DATA_LOSS,
                          "%s: key %s: bytes [%llu, %llu) lie outside data file shard %d (%llu bytes)",
                          c->index_path, e->key, (unsigned long long)e->offset,
                          (unsigned long long)(e->offset + e->size), e->shard, (unsigned long long)fsize);
    }
    return RECUR_OK;
}

recur_checkpoint *recur_checkpoint_open(const char *prefix, recur_status *st)
{
    recur_status_clear(st);
    if (!prefix || !prefix[0]) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_open: empty prefix");
        return NULL;
    }
    recur_checkpoint *c = rc_calloc(1, sizeof *c);
    rc_strbuf ip;
    rc_sb_init(&ip);
    rc_sb_printf(&ip, "%s.index", prefix);
    if (!c || !(c->index_path = rc_sb_take(&ip)) || !(c->prefix = rc_strdup(prefix))) {
        rc_sb_free(&ip); /* still holds the path when c itself failed */
        recur_checkpoint_close(c);
        rc_oom(st);
        return NULL;
    }
    uint8_t *file;
    size_t n;
    recur_code code = rc_read_file(c->index_path, &file, &n, st);
    if (code == RECUR_NOT_FOUND)
        rc_err(st, RECUR_NOT_FOUND, "The passed save_path is not a valid checkpoint: %s", prefix);
    if (code == RECUR_OK) {
        code = rc_table_scan(file, n, c->index_path, visit, c, st);
        rc_free(file);
        if (code == RECUR_OK && !c->has_header) code = no_header(c, st);
        if (code == RECUR_OK) code = open_data_files(c, st);
    }
    if (code != RECUR_OK) {
        recur_checkpoint_close(c);
        return NULL;
    }
    return c;
}

void recur_checkpoint_close(recur_checkpoint *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) rc_free(c->e[i].key);
    for (int i = 0; c->fds && i < c->num_shards; i++)
        if (c->fds[i] >= 0) close(c->fds[i]);
    rc_free(c->e);
    rc_free(c->fds);
    rc_free(c->fsizes);
    rc_map_free(&c->by_key);
    rc_free(c->prefix);
    rc_free(c->index_path);
    rc_free(c);
}

size_t recur_checkpoint_num_tensors(const recur_checkpoint *c) { return c ? c->n : 0; }

const char *recur_checkpoint_key(const recur_checkpoint *c, size_t i) { return c && i < c->n ? c->e[i].key : NULL; }

static const ckpt_entry *find(const recur_checkpoint *c, const char *key)
{
    intptr_t *i = c && key ? rc_map_get(&c->by_key, key) : NULL;
    return i ? &c->e[*i] : NULL;
}

bool recur_checkpoint_info(const recur_checkpoint *c, const char *key, recur_dtype *dt, recur_shape *shape)
{
    const ckpt_entry *e = find(c, key);
    if (!e) return false;
    if (dt) *dt = (recur_dtype)e->dtype;
    if (shape) *shape = e->shape;
    return true;
}

static recur_code read_bytes(const recur_checkpoint *c, const ckpt_entry *e, void *buf, recur_status *st)
{
    size_t got = 0;
    while (got < e->size) {
        ssize_t r = pread(c->fds[e->shard], (char *)buf + got, (size_t)e->size - got, (off_t)(e->offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return rc_err(st, RECUR_DATA_LOSS, "Cannot read key %s from data file shard %d of %s: %s", e->key,
                          e->shard, c->prefix, r < 0 ? strerror(errno) : "the file was truncated");
        got += (size_t)r;
    }
    return RECUR_OK;
}

static recur_code checksum_err(const recur_checkpoint *c, const ckpt_entry *e, uint32_t actual, recur_status *st)
{
    return rc_err(st, RECUR_DATA_LOSS,
                  "TensorBundle at %s shard %d (%llu bytes): Checksum does not match: stored %u vs. "
                  "calculated on the restored bytes %u (key %s)",
                  c->prefix, e->shard, (unsigned long long)e->size, e->crc, actual, e->key);
}

static void byteswap(uint8_t *p, int64_t count, size_t esize)
{
    for (int64_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* DT_STRING layout: varint64 lengths, masked CRC32C of the lengths (each as a little-endian
 * uint32, or uint64 above 2^32-1), then the bytes. The entry CRC runs over that length CRC, the
 * 4 stored bytes and the string bytes. */
static recur_array *decode_strings(const recur_checkpoint *c, const ckpt_entry *e, const uint8_t *d,
                                   recur_status *st)
{
    const uint8_t *p = d, *end = d + e->size;
    recur_array *a = rc_calloc(1, sizeof *a);
    if (!a) goto oom;
    a->dtype = RECUR_STRING;
    a->shape = e->shape;
    a->size = e->count;
    a->strs = rc_calloc((size_t)e->count + 1, sizeof *a->strs);
    a->lens = rc_calloc((size_t)e->count + 1, sizeof *a->lens);
    if (!a->strs || !a->lens) goto oom;
    uint32_t lcrc = 0;
    uint64_t total = 0;
    for (int64_t i = 0; i < e->count; i++) {
        uint64_t len;
        if (!rc_get_varint(&p, end, &len) || len > e->size - total) goto bad;
        a->lens[i] = (size_t)len;
        total += len;
        uint8_t fixed[8];
        for (int k = 0; k < 8; k++) fixed[k] = (uint8_t)(len >> (8 * k));
        lcrc = rc_crc32c_extend(lcrc, fixed, len > UINT32_MAX ? 8 : 4);
    }
    if (end - p < 4) goto bad;
    uint32_t stored = rc_get_fixed32(p);
    if (rc_crc32c_unmask(stored) != lcrc) {
        rc_err(st, RECUR_DATA_LOSS, "%s: key %s: The length checksum does not match: expected %u but actual %u",
               c->prefix, e->key, rc_crc32c_unmask(stored), lcrc);
        goto fail;
    }
    uint32_t crc = rc_crc32c_extend(lcrc, p, 4);
    p += 4;
    if (total != (uint64_t)(end - p)) goto bad;
    crc = rc_crc32c_extend(crc, p, (size_t)total);
    if (crc != rc_crc32c_unmask(e->crc)) {
        checksum_err(c, e, crc, st);
        goto fail;
    }
    for (int64_t i = 0; i < e->count; i++) {
        if (!(a->strs[i] = rc_strndup((const char *)p, a->lens[i]))) goto oom;
        p += a->lens[i];
    }
    return a;
bad:
    rc_err(st, RECUR_DATA_LOSS, "%s: key %s: malformed string tensor data", c->prefix, e->key);
    goto fail;
oom:
    rc_oom(st);
fail:
    recur_array_free(a);
    return NULL;
}

recur_array *recur_checkpoint_read(recur_checkpoint *c, const char *key, recur_status *st)
{
    recur_status_clear(st);
    /* A NULL argument is a caller error, not a key missing from the file. */
    if (!c || !key) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_read: NULL %s", c ? "key" : "checkpoint");
        return NULL;
    }
    const ckpt_entry *e = find(c, key);
    if (!e) {
        rc_err(st, RECUR_NOT_FOUND, "Key %s not found in checkpoint", key);
        return NULL;
    }
    if (e->sliced || !dtype_supported(e->dtype)) {
        rc_err(st, RECUR_UNIMPLEMENTED, "Key %s of checkpoint %s is %s; recur cannot read it", key, c->prefix,
               e->sliced ? "a partitioned (sliced) tensor" : rc_tf_dtype_name(e->dtype));
        return NULL;
    }
    if (e->dtype == RECUR_STRING) {
        uint8_t *d = rc_malloc((size_t)e->size);
        if (!d) {
            rc_oom(st);
            return NULL;
        }
        recur_array *a = read_bytes(c, e, d, st) == RECUR_OK ? decode_strings(c, e, d, st) : NULL;
        rc_free(d);
        return a;
    }
    recur_array *a = rc_array_alloc((recur_dtype)e->dtype, e->shape, false, st);
    if (!a || read_bytes(c, e, a->data, st) != RECUR_OK) {
        recur_array_free(a);
        return NULL;
    }
    uint32_t crc = rc_crc32c_extend(0, a->data, a->nbytes);
    if (crc != rc_crc32c_unmask(e->crc)) {
        checksum_err(c, e, crc, st);
        recur_array_free(a);
        return NULL;
    }
    size_t esize = recur_dtype_size(a->dtype);
    if (c->big_endian && esize > 1) byteswap(a->data, a->size, esize);
    if (a->dtype == RECUR_BOOL) /* any nonzero byte is true, as in TensorFlow */
        for (int64_t i = 0; i < a->size; i++) ((uint8_t *)a->data)[i] = ((uint8_t *)a->data)[i] != 0;
    return a;
}

/* ============================================================================ writer */
typedef struct writer_entry {
    char *key;
    recur_dtype dtype;
    recur_shape shape;
    uint64_t offset, size;
    uint32_t crc; /* masked */
} writer_entry;

struct recur_checkpoint_writer {
    char *prefix, *data_tmp, *index_tmp, *data_prev; /* data_prev: a link to the data file replaced */
    int fd;               /* the temporary data file */
    uint64_t offset;      /* bytes written so far */
    writer_entry *e;
    size_t n, cap;
    rc_map keys;
    bool broken;          /* a write failed: the data file no longer matches the entries */
    bool finished;
};

/* The code for a file that cannot be created: permissions, or the disk. */
static recur_code create_code(int err)
{
    return err == EACCES || err == EPERM || err == EROFS ? RECUR_PERMISSION_DENIED : RECUR_DATA_LOSS;
}

recur_checkpoint_writer *recur_checkpoint_writer_new(const char *prefix, recur_status *st)
{
    recur_status_clear(st);
    if (!prefix || !prefix[0]) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_writer_new: empty prefix");
        return NULL;
    }
    recur_checkpoint_writer *w = rc_calloc(1, sizeof *w);
    if (!w) {
        rc_oom(st);
        return NULL;
    }
    w->fd = -1;
    rc_strbuf d, i;
    rc_sb_init(&d);
    rc_sb_init(&i);
    rc_sb_printf(&d, "%s.data-00000-of-00001.tmp%ld", prefix, (long)getpid());
    rc_sb_printf(&i, "%s.index.tmp%ld", prefix, (long)getpid());
    w->data_tmp = rc_sb_take(&d);
    w->index_tmp = rc_sb_take(&i);
    rc_sb_init(&d);
    rc_sb_printf(&d, "%s.data-00000-of-00001.prev%ld", prefix, (long)getpid());
    w->data_prev = rc_sb_take(&d);
    char *dir = rc_path_dir(prefix);
    if (!(w->prefix = rc_strdup(prefix)) || !w->data_tmp || !w->index_tmp || !w->data_prev || !dir) {
        rc_free(dir);
        recur_checkpoint_writer_free(w);
        rc_oom(st);
        return NULL;
    }
    recur_code code = rc_mkdirs(dir, st);
    rc_free(dir);
    if (code == RECUR_OK && (w->fd = rc_sys_create(w->data_tmp)) < 0)
        code = rc_err(st, create_code(errno), "Cannot create %s: %s", w->data_tmp, strerror(errno));
    if (code != RECUR_OK) {
        recur_checkpoint_writer_free(w);
        return NULL;
    }
    return w;
}

static recur_code writer_usable(const recur_checkpoint_writer *w, recur_status *st)
{
    if (!w) return rc_err(st, RECUR_INVALID_ARGUMENT, "checkpoint writer is NULL");
    if (w->finished) return rc_err(st, RECUR_FAILED_PRECONDITION, "checkpoint %s is already finished", w->prefix);
    if (w->broken)
        return rc_err(st, RECUR_FAILED_PRECONDITION, "an earlier write to %s failed; the checkpoint is abandoned",
                      w->data_tmp);
    return RECUR_OK;
}

/* The DT_STRING data layout (see decode_strings); sets *crc to the masked entry CRC. */
static void encode_strings(const recur_array *v, rc_strbuf *b, uint32_t *crc)
{
    uint32_t lcrc = 0;
    for (int64_t i = 0; i < v->size; i++) {
        uint64_t len = v->lens[i];
        uint8_t fixed[8];
        for (int k = 0; k < 8; k++) fixed[k] = (uint8_t)(len >> (8 * k));
        lcrc = rc_crc32c_extend(lcrc, fixed, len > UINT32_MAX ? 8 : 4);
        rc_put_varint(b, len);
    }
    size_t at = b->len;
    rc_put_fixed32(b, rc_crc32c_mask(lcrc));
    for (int64_t i = 0; i < v->size; i++) rc_sb_putn(b, v->strs[i], v->lens[i]);
    if (!b->oom) *crc = rc_crc32c_mask(rc_crc32c_extend(lcrc, b->s + at, b->len - at));
}

recur_code recur_checkpoint_writer_add(recur_checkpoint_writer *w, const char *key, const recur_array *value,
                                       recur_status *st)
{
    recur_status_clear(st);
    recur_code code = writer_usable(w, st);
    if (code != RECUR_OK) return code;
    if (!key || !key[0] || !value)
        return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_writer_add: %s",
                      !value ? "value is NULL" : "the key must be a non-empty string");
    if (rc_map_get(&w->keys, key)) return rc_err(st, RECUR_INVALID_ARGUMENT, "Adding duplicate key: %s", key);
    if (!dtype_supported(value->dtype))
        return rc_err(st, RECUR_INVALID_ARGUMENT, "Key %s: cannot save dtype %d", key, (int)value->dtype);
    writer_entry e = {.dtype = value->dtype, .shape = value->shape, .offset = w->offset};
    rc_strbuf sbuf;
    rc_sb_init(&sbuf);
    const void *bytes = value->data;
    if (value->dtype == RECUR_STRING) {
        encode_strings(value, &sbuf, &e.crc);
        bytes = sbuf.s;
        e.size = sbuf.len;
    } else {
        e.size = value->nbytes;
        e.crc = rc_crc32c_mask(rc_crc32c_extend(0, value->data, value->nbytes));
    }
    if (sbuf.oom || !RC_GROW(w->e, w->cap, w->n + 1) || !(e.key = rc_strdup(key)) ||
        !rc_map_set(&w->keys, key, (intptr_t)w->n)) {
        rc_free(e.key);
        rc_sb_free(&sbuf);
        return rc_oom(st);
    }
    if (!rc_write_all(w->fd, bytes, (size_t)e.size)) {
        w->broken = true;
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot write %s: %s", w->data_tmp, strerror(errno));
        rc_free(e.key);
    } else {
        w->offset += e.size;
        w->e[w->n++] = e;
    }
    rc_sb_free(&sbuf);
    return code;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const writer_entry *)a)->key, ((const writer_entry *)b)->key);
}

/* Encode the header and entries (keys sorted) and build the index table into `out`. */
static bool build_index(recur_checkpoint_writer *w, rc_strbuf *out)
{
    if (w->n) qsort(w->e, w->n, sizeof *w->e, entry_cmp);
    rc_table_entry *te = rc_calloc(w->n + 1, sizeof *te);
    size_t *ends = rc_calloc(w->n + 1, sizeof *ends);
    rc_strbuf vals;
    rc_sb_init(&vals);
    bool ok = te && ends;
    Recur__VersionDef ver = RECUR__VERSION_DEF__INIT;
    Recur__BundleHeaderProto hdr = RECUR__BUNDLE_HEADER_PROTO__INIT;
    ver.producer = 1;
    hdr.num_shards = 1;
    hdr.version = &ver;
    for (size_t i = 0; ok && i <= w->n; i++) {
        Recur__TensorShapeProto__Dim dims[RECUR_MAX_RANK], *dimp[RECUR_MAX_RANK];
        Recur__TensorShapeProto shape = RECUR__TENSOR_SHAPE_PROTO__INIT;
        Recur__BundleEntryProto ent = RECUR__BUNDLE_ENTRY_PROTO__INIT;
        const ProtobufCMessage *msg = &hdr.base;
        if (i > 0) {
            const writer_entry *e = &w->e[i - 1];
            for (int d = 0; d < e->shape.rank; d++) {
                dims[d] = (Recur__TensorShapeProto__Dim)RECUR__TENSOR_SHAPE_PROTO__DIM__INIT;
                dims[d].size = e->shape.dims[d];
                dimp[d] = &dims[d];
            }
            shape.n_dim = (size_t)e->shape.rank;
            shape.dim = dimp;
            ent.dtype = (Recur__DataType)e->dtype;
            ent.shape = &shape;
            ent.offset = (int64_t)e->offset;
            ent.size = (int64_t)e->size;
            ent.crc32c = e->crc;
            msg = &ent.base;
        }
        rc_pb_pack(msg, &vals);
        ends[i] = vals.len;
        te[i].key = (const uint8_t *)(i ? w->e[i - 1].key : "");
        te[i].klen = i ? strlen(w->e[i - 1].key) : 0;
    }
    ok = ok && !vals.oom;
    for (size_t i = 0; ok && i <= w->n; i++) {
        te[i].val = (const uint8_t *)vals.s + (i ? ends[i - 1] : 0);
        te[i].vlen = ends[i] - (i ? ends[i - 1] : 0);
    }
    ok = ok && rc_table_build(te, w->n + 1, out);
    rc_free(te);
    rc_free(ends);
    rc_sb_free(&vals);
    return ok;
}

recur_code recur_checkpoint_writer_finish(recur_checkpoint_writer *w, recur_status *st)
{
    recur_status_clear(st);
    recur_code code = writer_usable(w, st);
    if (code != RECUR_OK) return code;
    rc_strbuf index;
    rc_sb_init(&index);
    if (!build_index(w, &index)) {
        rc_sb_free(&index);
        return rc_oom(st);
    }
    char *data_final = data_path(w->prefix, 0, 1);
    rc_strbuf ip;
    rc_sb_init(&ip);
    rc_sb_printf(&ip, "%s.index", w->prefix);
    char *index_final = rc_sb_take(&ip);
    if (!data_final || !index_final) {
        code = rc_oom(st);
        goto done;
    }
    int fd = rc_sys_create(w->index_tmp);
    if (fd < 0) {
        code = rc_err(st, create_code(errno), "Cannot create %s: %s", w->index_tmp, strerror(errno));
        goto done;
    }
    /* Each step names the file it touches for the message. */
    const char *what = w->index_tmp;
    bool ok = rc_write_all(fd, index.s, index.len) && rc_sys_fsync(fd) == 0;
    ok = (close(fd) == 0) && ok;
    if (ok) {
        what = w->data_tmp;
        ok = rc_sys_fsync(w->fd) == 0;
        ok = (close(w->fd) == 0) && ok;
        w->fd = -1;
    }
    /* Overwriting a checkpoint of the same prefix: keep a hard link to its data file so that a
     * failed index rename can put it back (the old index still describes the old data). */
    bool kept = false;
    if (ok && access(data_final, F_OK) == 0) {
        what = w->data_prev;
        unlink(w->data_prev);
        ok = rc_sys_link(data_final, w->data_prev) == 0;
        kept = ok;
    }
    if (ok) {
        what = data_final;
        ok = rc_sys_rename(w->data_tmp, data_final) == 0;
        if (ok) {
            what = index_final;
            ok = rc_sys_rename(w->index_tmp, index_final) == 0;
            if (!ok) {
                int err = errno;
                if (kept) rename(w->data_prev, data_final), kept = false;
                errno = err;
            }
        }
    }
    if (kept) unlink(w->data_prev);
    if (ok) {
        w->finished = true; /* in place; only its durability is left */
        what = index_final;
        ok = rc_fsync_parent(index_final);
    }
    if (!ok) {
        w->broken = !w->finished;
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot write checkpoint %s (%s): %s", w->prefix, what, strerror(errno));
    }
done:
    rc_free(data_final);
    rc_free(index_final);
    rc_sb_free(&index);
    return code;
}

void recur_checkpoint_writer_free(recur_checkpoint_writer *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (!w->finished) {
        if (w->data_tmp) unlink(w->data_tmp);
        if (w->index_tmp) unlink(w->index_tmp);
    }
    for (size_t i = 0; i < w->n; i++) rc_free(w->e[i].key);
    rc_free(w->e);
    rc_map_free(&w->keys);
    rc_free(w->prefix);
    rc_free(w->data_tmp);
    rc_free(w->index_tmp);
    rc_free(w->data_prev);
    rc_free(w);
}
