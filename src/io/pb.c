/*
 * pb.c - glue between protobuf-c and recur: unpacking allocates through rc_malloc (so
 * allocation-failure tests reach it) and packing appends to an rc_strbuf.
 */
#include "io/io.h"

static void *pb_alloc_fn(void *data, size_t n)
{
    void *p = rc_malloc(n);
    if (!p) ((rc_pb_alloc *)data)->failed = true;
    return p;
}

static void pb_free_fn(void *data, void *p) { rc_free(p); }

void rc_pb_alloc_init(rc_pb_alloc *pa) { *pa = (rc_pb_alloc){{pb_alloc_fn, pb_free_fn, pa}, false}; }

typedef struct sb_sink {
    ProtobufCBuffer base;
    rc_strbuf *out;
} sb_sink;

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    rc_sb_putn(((sb_sink *)b)->out, (const char *)data, len);
}

void rc_pb_pack(const ProtobufCMessage *m, rc_strbuf *out)
{
    sb_sink sink = {{sink_append}, out};
    protobuf_c_message_pack_to_buffer(m, &sink.base);
}
