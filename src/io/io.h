/*
 * io.h - private interface of src/io (checkpoints, the `checkpoint` state file, event files):
 * CRC32C, little-endian and varint coding, the SSTable ("table") format, file helpers, the
 * state file and checkpoint name-map suggestions. Not API.
 */
#ifndef RECUR_IO_H
#define RECUR_IO_H

#include "recur_impl.h"

#include <protobuf-c/protobuf-c.h>

/* ---------------------------------------------------------------- crc32c.c */
/* CRC32C of buf[0,n) continuing from `crc` (the CRC of the bytes before; 0 to start). */
uint32_t rc_crc32c_extend(uint32_t crc, const void *buf, size_t n);
/* The same without the SSE4.2 instruction (the fallback; tests compare the two). */
uint32_t rc_crc32c_extend_portable(uint32_t crc, const void *buf, size_t n);
/* The masked form stored in files (rotate right 15, add 0xa282ead8) and its inverse. */
uint32_t rc_crc32c_mask(uint32_t crc);
uint32_t rc_crc32c_unmask(uint32_t masked);

/* ---------------------------------------------------------------- table.c: coding */
/* Appenders to a byte buffer (rc_strbuf used for bytes; its `oom` flag records failures). */
void rc_put_fixed32(rc_strbuf *b, uint32_t v);
void rc_put_fixed64(rc_strbuf *b, uint64_t v);
void rc_put_varint(rc_strbuf *b, uint64_t v);
uint32_t rc_get_fixed32(const uint8_t *p);
uint64_t rc_get_fixed64(const uint8_t *p);
/* Decode a varint64 at *p (never reading at or past `end`) and advance *p; false when it is
 * truncated or longer than 10 bytes. */
bool rc_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

/* ---------------------------------------------------------------- table.c: SSTable */
typedef struct rc_table_entry {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
} rc_table_entry;

/* Append to `out` a whole table holding the n entries, whose keys must be strictly increasing
 * under memcmp order: TensorFlow's options (256 KiB blocks, restart interval 16, no
 * compression), so the bytes equal TensorFlow's. false on OOM. */
bool rc_table_build(const rc_table_entry *e, size_t n, rc_strbuf *out);

/* Called for each entry in key order; a non-OK return stops the scan and is passed back. */
typedef recur_code (*rc_table_visit)(void *ctx, const uint8_t *key, size_t klen,
                                     const uint8_t *val, size_t vlen, recur_status *st);
/* Walk every entry of the table file held in file[0,n), verifying every block checksum and
 * bound. Errors are RECUR_DATA_LOSS with messages that start with `name` (the file's path). */
recur_code rc_table_scan(const uint8_t *file, size_t n, const char *name, rc_table_visit fn,
                         void *ctx, recur_status *st);

/* ---------------------------------------------------------------- pb.c: protobuf-c glue */
/* An allocator for unpacking through rc_malloc; `failed` tells OOM apart from bad bytes. */
typedef struct rc_pb_alloc {
    ProtobufCAllocator a;
    bool failed;
} rc_pb_alloc;
void rc_pb_alloc_init(rc_pb_alloc *pa);
/* Append the message's serialization to `out` (out->oom on failure). */
void rc_pb_pack(const ProtobufCMessage *m, rc_strbuf *out);

/* ---------------------------------------------------------------- file.c */
/* Read a whole file into a new buffer (rc_free; one spare NUL byte after the data).
 * RECUR_NOT_FOUND when it does not exist, RECUR_DATA_LOSS when it cannot be read. */
recur_code rc_read_file(const char *path, uint8_t **data, size_t *n, recur_status *st);
/* The write-side system calls of every save, each one a fault-injection point for
 * recur_io_fail_after (an injected failure sets errno and returns -1; an injected write
 * failure of more than one byte first writes half of them, as a filling disk does). */
int rc_sys_create(const char *path);  /* open(O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) */
ssize_t rc_sys_write(int fd, const void *buf, size_t n);
int rc_sys_fsync(int fd);
int rc_sys_rename(const char *from, const char *to);
int rc_sys_link(const char *from, const char *to);
/* Write all n bytes to fd (retrying short writes); false with errno set. */
bool rc_write_all(int fd, const void *buf, size_t n);
/* Replace `path` atomically: write PATH.tmp<pid>, fsync it, rename it over PATH, fsync the
 * directory. On failure the old file is untouched and the temporary removed. */
recur_code rc_write_file_atomic(const char *path, const void *data, size_t n, recur_status *st);
/* fsync the directory that holds `path`; false with errno set. */
bool rc_fsync_parent(const char *path);
/* The directory part of a path ("." for a bare name) and the last component. New / borrowed. */
char *rc_path_dir(const char *path);
const char *rc_path_base(const char *path);
/* `name` when absolute, else dir + "/" + name. New; NULL on OOM. */
char *rc_path_join(const char *dir, const char *name);
/* mkdir -p. */
recur_code rc_mkdirs(const char *dir, recur_status *st);

/* ---------------------------------------------------------------- state_file.c */
/* The `checkpoint` state file of a directory (tensorflow.CheckpointState in text format). */
typedef struct rc_ckpt_state {
    char *model_path;   /* the newest checkpoint's prefix */
    char **all_paths;   /* oldest first */
    size_t nall;
} rc_ckpt_state;
/* Parse DIR/checkpoint; relative paths come back joined to DIR. RECUR_NOT_FOUND when the file
 * does not exist; RECUR_DATA_LOSS naming the file and line on bad syntax or an empty
 * model_checkpoint_path. */
recur_code rc_state_read(const char *dir, rc_ckpt_state *out, recur_status *st);
/* Write DIR/checkpoint atomically. Paths inside DIR are written relative to it. */
recur_code rc_state_write(const char *dir, const rc_ckpt_state *s, recur_status *st);
void rc_state_free(rc_ckpt_state *s);

/* ---------------------------------------------------------------- name_map.c */
/* A rename map between checkpoint keys and graph variable names, as
 * tf.compat.v1.train.init_from_checkpoint's assignment_map: each entry maps checkpoint name
 * `from` to graph name `to`; entries ending in "/" map whole scopes ("/" is the root). */
typedef struct rc_name_pair {
    char *from, *to;
} rc_name_pair;
typedef struct rc_name_map {
    rc_name_pair *e;
    size_t n, cap;
} rc_name_map;
bool rc_name_map_add(rc_name_map *m, const char *from, const char *to); /* copies; false on OOM */
void rc_name_map_free(rc_name_map *m);
/* The checkpoint key the map gives graph name `name`: the exact entry if any, else the longest
 * matching scope entry. NULL with *oom false when no entry covers `name`. New string. */
char *rc_name_map_apply(const rc_name_map *m, const char *name, bool *oom);

typedef struct rc_name_info {
    const char *name;
    recur_dtype dtype;
    recur_shape shape;
} rc_name_info;
/* Suggest a map (checkpoint -> graph) under which every `want` (the graph's variables) whose
 * name is not among the `have` names (the checkpoint's keys) finds an unused key of the same
 * dtype and shape. Candidates are ranked by how many variables one scope-prefix change
 * explains (compared after TensorFlow's historical renames: weights->kernel, biases->bias,
 * BasicLSTMCell/Linear/{Matrix,Bias}->basic_lstm_cell/{kernel,bias}, lstm_cell ==
 * basic_lstm_cell), then by nearest name. Whole scopes are mapped when every variable under the
 * graph scope follows the same change, single keys otherwise; scope entries come first, each
 * group sorted by graph name. `out` must be zeroed; variables with no candidate are left out.
 * false on OOM. */
bool rc_suggest_name_map(const rc_name_info *want, size_t nwant, const rc_name_info *have,
                         size_t nhave, rc_name_map *out);

/* ---------------------------------------------------------------- bundle.c */
/* TensorFlow's DataTypeString for any DataType number ("float", "half", ...; "invalid"). */
const char *rc_tf_dtype_name(int dt);

#endif /* RECUR_IO_H */
