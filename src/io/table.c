/*
 * table.c - TensorFlow's SSTable ("table") format, the container of a checkpoint's .index
 * file (spec/tf-checkpoint-v2.md §2): the writer produces the bytes TensorFlow's TableBuilder
 * produces with the options bundles use; the reader walks every entry of a table held in
 * memory, checking every block trailer, handle, varint and length against the buffer.
 * Also the little-endian / varint coding shared by src/io.
 */
#include "io/io.h"

#include <snappy-c.h>

/* ---------------------------------------------------------------- coding */
void rc_put_fixed32(rc_strbuf *b, uint32_t v)
{
    char c[4] = {(char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24)};
    rc_sb_putn(b, c, 4);
}

void rc_put_fixed64(rc_strbuf *b, uint64_t v)
{
    rc_put_fixed32(b, (uint32_t)v);
    rc_put_fixed32(b, (uint32_t)(v >> 32));
}

void rc_put_varint(rc_strbuf *b, uint64_t v)
{
    char c[10];
    size_t n = 0;
    for (; v >= 0x80; v >>= 7) c[n++] = (char)(v | 0x80);
    c[n++] = (char)v;
    rc_sb_putn(b, c, n);
}

uint32_t rc_get_fixed32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t rc_get_fixed64(const uint8_t *p) { return rc_get_fixed32(p) | (uint64_t)rc_get_fixed32(p + 4) << 32; }

bool rc_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        r |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- writer */
enum { BLOCK_SIZE = 256 * 1024, RESTART_INTERVAL = 16, TRAILER = 5, FOOTER = 48 };
#define TABLE_MAGIC 0xdb4775248b80fb57ull

typedef struct block_builder {
    rc_strbuf buf;
    uint32_t *restarts;
    size_t nrestarts, caprestarts;
    int counter, interval;
    rc_strbuf last_key;
    bool oom;
} block_builder;

static void block_reset(block_builder *b)
{
    b->buf.len = 0;
    b->last_key.len = 0;
    b->counter = 0;
    b->nrestarts = 0;
    if (!RC_GROW(b->restarts, b->caprestarts, 1)) b->oom = true;
    else b->restarts[b->nrestarts++] = 0;
}

static size_t block_estimate(const block_builder *b) { return b->buf.len + 4 * b->nrestarts + 4; }

static void block_add(block_builder *b, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen)
{
    size_t shared = 0;
    if (b->counter < b->interval) {
        size_t lim = RC_MIN(b->last_key.len, klen);
        while (shared < lim && (uint8_t)b->last_key.s[shared] == key[shared]) shared++;
    } else if (!RC_GROW(b->restarts, b->caprestarts, b->nrestarts + 1)) {
        b->oom = true;
        return;
    } else {
        b->restarts[b->nrestarts++] = (uint32_t)b->buf.len;
        b->counter = 0;
    }
    rc_put_varint(&b->buf, shared);
    rc_put_varint(&b->buf, klen - shared);
    rc_put_varint(&b->buf, vlen);
    rc_sb_putn(&b->buf, (const char *)key + shared, klen - shared);
    rc_sb_putn(&b->buf, (const char *)val, vlen);
    b->last_key.len = 0;
    rc_sb_putn(&b->last_key, (const char *)key, klen);
    b->counter++;
}

/* Append the block (restart array closed) and its trailer to `out`; reset the block. */
static void block_write(block_builder *b, rc_strbuf *out, uint64_t handle[2])
{
    for (size_t i = 0; i < b->nrestarts; i++) rc_put_fixed32(&b->buf, b->restarts[i]);
    rc_put_fixed32(&b->buf, (uint32_t)b->nrestarts);
    if (b->buf.oom) return;
    handle[0] = out->len;
    handle[1] = b->buf.len;
    uint8_t type = 0;
    uint32_t crc = rc_crc32c_extend(rc_crc32c_extend(0, b->buf.s, b->buf.len), &type, 1);
    rc_sb_putn(out, b->buf.s, b->buf.len);
    rc_sb_putn(out, (const char *)&type, 1);
    rc_put_fixed32(out, rc_crc32c_mask(crc));
    block_reset(b);
}

static void put_handle(rc_strbuf *b, const uint64_t h[2])
{
    rc_put_varint(b, h[0]);
    rc_put_varint(b, h[1]);
}

/* TableBuilder's FindShortestSeparator / FindShortSuccessor on `key` (limit NULL: successor). */
static void shorten_key(rc_strbuf *key, const uint8_t *limit, size_t llen)
{
    uint8_t *k = (uint8_t *)key->s;
    if (!limit) {
        for (size_t i = 0; i < key->len; i++)
            if (k[i] != 0xff) {
                k[i]++;
                key->len = i + 1;
                return;
            }
        return;
    }
    size_t lim = RC_MIN(key->len, llen), d = 0;
    while (d < lim && k[d] == limit[d]) d++;
    if (d < lim && k[d] < 0xff && k[d] + 1 < limit[d]) {
        k[d]++;
        key->len = d + 1;
    }
}

/* Index entry for the finished block: a short key between its last key and `next`. */
static void add_index_entry(block_builder *index, rc_strbuf *last_key, const uint8_t *next, size_t nlen,
                            const uint64_t handle[2])
{
    rc_strbuf h;
    rc_sb_init(&h);
    shorten_key(last_key, next, nlen);
    put_handle(&h, handle);
    if (h.oom || last_key->oom) index->oom = true;
    else block_add(index, (const uint8_t *)last_key->s, last_key->len, (const uint8_t *)h.s, h.len);
    rc_sb_free(&h);
}

bool rc_table_build(const rc_table_entry *e, size_t n, rc_strbuf *out)
{
    block_builder data = {.interval = RESTART_INTERVAL}, index = {.interval = 1};
    rc_strbuf last;
    rc_sb_init(&last);
    uint64_t pending[2] = {0, 0}, meta[2] = {0, 0}, idx[2] = {0, 0}; /* set even when a block fails (OOM) */
    bool has_pending = false;
    block_reset(&data);
    block_reset(&index);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && e[i].klen + e[i].vlen >= 2 * (size_t)BLOCK_SIZE && data.buf.len) {
            block_write(&data, out, pending);
            has_pending = true;
        }
        if (has_pending) {
            add_index_entry(&index, &last, e[i].key, e[i].klen, pending);
            has_pending = false;
        }
        last.len = 0;
        rc_sb_putn(&last, (const char *)e[i].key, e[i].klen);
        block_add(&data, e[i].key, e[i].klen, e[i].val, e[i].vlen);
        if (block_estimate(&data) >= BLOCK_SIZE) {
            block_write(&data, out, pending);
            has_pending = true;
        }
    }
    if (data.buf.len) {
        block_write(&data, out, pending);
        has_pending = true;
    }
    block_builder metaindex = {.interval = RESTART_INTERVAL};
    block_reset(&metaindex);
    block_write(&metaindex, out, meta);
    if (has_pending) add_index_entry(&index, &last, NULL, 0, pending);
    block_write(&index, out, idx);
    size_t footer_start = out->len;
    put_handle(out, meta);
    put_handle(out, idx);
    while (out->len < footer_start + FOOTER - 8 && !out->oom) rc_sb_putn(out, "", 1);
    rc_put_fixed64(out, TABLE_MAGIC);

    bool ok = !(data.oom || index.oom || metaindex.oom || data.buf.oom || index.buf.oom ||
                metaindex.buf.oom || data.last_key.oom || index.last_key.oom || last.oom || out->oom);
    block_builder *bs[] = {&data, &index, &metaindex};
    for (int i = 0; i < 3; i++) {
        rc_sb_free(&bs[i]->buf);
        rc_sb_free(&bs[i]->last_key);
        rc_free(bs[i]->restarts);
    }
    rc_sb_free(&last);
    return ok;
}

/* ---------------------------------------------------------------- reader */
typedef struct table_reader {
    const uint8_t *file;
    size_t n;
    const char *name;
    recur_status *st;
} table_reader;

static recur_code corrupt(const table_reader *t, const char *what)
{
    return rc_err(t->st, RECUR_DATA_LOSS, "%s: corrupt checkpoint index: %s", t->name, what);
}

static bool decode_handle(const uint8_t **p, const uint8_t *end, uint64_t h[2])
{
    return rc_get_varint(p, end, &h[0]) && rc_get_varint(p, end, &h[1]);
}

/* The contents of the block at handle h, checksum verified; *owned is set when the contents
 * were decompressed into a new buffer (rc_free it). */
static recur_code read_block(const table_reader *t, const uint64_t h[2], const uint8_t **data,
                             size_t *size, uint8_t **owned)
{
    *owned = NULL;
    if (h[0] > t->n || h[1] > t->n - h[0] || t->n - h[0] - h[1] < TRAILER)
        return corrupt(t, "truncated block read (bad block handle)");
    const uint8_t *b = t->file + h[0];
    size_t len = (size_t)h[1];
    uint32_t crc = rc_crc32c_extend(0, b, len + 1);
    if (rc_crc32c_unmask(rc_get_fixed32(b + len + 1)) != crc) return corrupt(t, "block checksum mismatch");
    if (b[len] == 0) {
        *data = b;
        *size = len;
        return RECUR_OK;
    }
    if (b[len] != 1) return corrupt(t, "bad block type");
    size_t ulen;
    if (snappy_validate_compressed_buffer((const char *)b, len) != SNAPPY_OK ||
        snappy_uncompressed_length((const char *)b, len, &ulen) != SNAPPY_OK)
        return corrupt(t, "corrupted compressed block contents");
    uint8_t *u = rc_malloc(ulen);
    if (!u) return rc_oom(t->st);
    if (snappy_uncompress((const char *)b, len, (char *)u, &ulen) != SNAPPY_OK) {
        rc_free(u);
        return corrupt(t, "corrupted compressed block contents");
    }
    *data = *owned = u;
    *size = ulen;
    return RECUR_OK;
}

/* Sequential reader of one block's entries. */
typedef struct block_iter {
    const uint8_t *p, *end; /* entries region */
    rc_strbuf key;          /* the current key, rebuilt from shared prefix + suffix */
} block_iter;

static recur_code block_open(const table_reader *t, const uint8_t *b, size_t size, block_iter *it)
{
    if (size < 4 || rc_get_fixed32(b + size - 4) > (size - 4) / 4) return corrupt(t, "bad block contents");
    it->p = b;
    it->end = b + size - 4 - 4 * (size_t)rc_get_fixed32(b + size - 4);
    it->key.len = 0;
    return RECUR_OK;
}

/* Advance to the next entry: 1 with the key in it->key and the value at *val, 0 at the end,
 * -1 with the status set. */
static int block_next(const table_reader *t, block_iter *it, const uint8_t **val, size_t *vlen)
{
    if (it->p >= it->end) return 0;
    uint64_t shared, nonshared, n;
    if (!rc_get_varint(&it->p, it->end, &shared) || !rc_get_varint(&it->p, it->end, &nonshared) ||
        !rc_get_varint(&it->p, it->end, &n) || shared > it->key.len ||
        nonshared > (size_t)(it->end - it->p) || n > (size_t)(it->end - it->p) - nonshared) {
        corrupt(t, "bad entry in block");
        return -1;
    }
    it->key.len = (size_t)shared;
    rc_sb_putn(&it->key, (const char *)it->p, (size_t)nonshared);
    if (it->key.oom) {
        rc_oom(t->st);
        return -1;
    }
    *val = it->p + nonshared;
    *vlen = (size_t)n;
    it->p += nonshared + n;
    return 1;
}

/* Visit the entries of the data block at handle h; `prev` holds the last key seen in the table
 * (NULL before the first) for the order check. */
static recur_code scan_data_block(const table_reader *t, const uint64_t h[2], block_iter *it,
                                  rc_strbuf *prev, rc_table_visit fn, void *ctx)
{
    const uint8_t *b, *val;
    size_t size, vlen;
    uint8_t *owned;
    recur_code code = read_block(t, h, &b, &size, &owned);
    if (code == RECUR_OK) code = block_open(t, b, size, it);
    int r;
    while (code == RECUR_OK && (r = block_next(t, it, &val, &vlen)) != 0) {
        if (r < 0) {
            code = recur_status_code(t->st);
            break;
        }
        const rc_strbuf *k = &it->key;
        if (prev->s) {
            int c = memcmp(prev->s, k->s, RC_MIN(prev->len, k->len));
            if (c > 0 || (c == 0 && prev->len >= k->len)) {
                code = corrupt(t, "keys out of order");
                break;
            }
        }
        prev->len = 0;
        rc_sb_putn(prev, k->s, k->len);
        code = prev->oom ? rc_oom(t->st) : fn(ctx, (const uint8_t *)k->s, k->len, val, vlen, t->st);
    }
    rc_free(owned);
    return code;
}

recur_code rc_table_scan(const uint8_t *file, size_t n, const char *name, rc_table_visit fn, void *ctx,
                         recur_status *st)
{
    table_reader t = {file, n, name, st};
    if (n < FOOTER) return corrupt(&t, "file is too short to be an sstable");
    const uint8_t *f = file + n - FOOTER, *fend = f + FOOTER - 8;
    if (rc_get_fixed64(fend) != TABLE_MAGIC) return corrupt(&t, "not an sstable (bad magic number)");
    uint64_t meta[2], idx[2];
    if (!decode_handle(&f, fend, meta) || !decode_handle(&f, fend, idx)) return corrupt(&t, "bad block handle");

    block_iter index = {0}, data = {0};
    rc_strbuf prev;
    rc_sb_init(&prev);
    const uint8_t *b, *val;
    size_t size, vlen;
    uint8_t *mown = NULL, *iown = NULL;
    recur_code code = read_block(&t, meta, &b, &size, &mown); /* checksum only; TF keeps it empty */
    if (code == RECUR_OK) code = read_block(&t, idx, &b, &size, &iown);
    if (code == RECUR_OK) code = block_open(&t, b, size, &index);
    int r;
    while (code == RECUR_OK && (r = block_next(&t, &index, &val, &vlen)) != 0) {
        uint64_t h[2];
        const uint8_t *hp = val;
        if (r < 0) code = recur_status_code(st);
        else if (!decode_handle(&hp, val + vlen, h)) code = corrupt(&t, "bad block handle");
        else code = scan_data_block(&t, h, &data, &prev, fn, ctx);
    }
    rc_free(mown);
    rc_free(iown);
    rc_sb_free(&index.key);
    rc_sb_free(&data.key);
    rc_sb_free(&prev);
    return code;
}
