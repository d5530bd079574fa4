/*
 * arena.c - scratch memory for kernels that run again and again: blocks handed out by a bump
 * pointer and all given back at once. Blocks never move while in use; after a reset that found
 * more than one block, they are merged into one, so a kernel with a steady workload allocates
 * nothing after its first runs.
 */
#include "recur_impl.h"

typedef struct rc_arena_block {
    struct rc_arena_block *next;
    size_t cap, used;
    _Alignas(64) unsigned char data[];
} rc_arena_block;

void rc_arena_reset(rc_arena *a)
{
    size_t total = 0;
    int n = 0;
    for (rc_arena_block *b = a->head; b; b = b->next) {
        total += b->cap;
        b->used = 0;
        n++;
    }
    if (n > 1) {
        rc_arena_free(a);
        a->reserve = total;
    }
}

void rc_arena_free(rc_arena *a)
{
    for (rc_arena_block *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        rc_aligned_free(b);
    }
    a->head = NULL;
}

void *rc_arena_alloc(rc_arena *a, size_t bytes, bool zero)
{
    bytes = (bytes + 63) & ~(size_t)63;
    rc_arena_block *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = RC_MAX(bytes, a->reserve);
        cap = RC_MAX(cap, (size_t)1 << 16);
        rc_arena_block *nb = rc_aligned_alloc(sizeof *nb + cap); /* so that data is 64-byte aligned */
        if (!nb) return NULL;
        nb->cap = cap;
        nb->used = 0;
        nb->next = b;
        a->head = b = nb;
        a->reserve = 0;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    if (zero) memset(p, 0, bytes);
    return p;
}
