/*
 * pool.c - the session's buffer pool: arrays freed after their last reader wait here in
 * size-keyed free lists and are handed out again, so a steady-state loop allocates nothing.
 * Buffers are made in size classes (four per power of two, so at most a quarter is spare):
 * batches whose shapes vary from run to run (sequences of other lengths) reuse the same
 * buffers instead of allocating fresh pages every time and keeping one of each size.
 */
#include "exec/exec.h"

/* Index of the bucket for `bytes` (insertion point when absent). */
static size_t find_bucket(const rc_pool *p, size_t bytes)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->buckets[mid].bytes < bytes)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The size class of a request: multiples of 64 bytes up to 4 KiB, then 2^k, 1.25 2^k, 1.5 2^k
 * and 1.75 2^k. */
static size_t size_class(size_t bytes)
{
    if (bytes <= 4096) return (bytes + 63) & ~(size_t)63;
    size_t step = (size_t)1 << (63 - __builtin_clzll((unsigned long long)bytes) - 2);
    return (bytes + step - 1) & ~(step - 1);
}

void rc_pool_init(rc_pool *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
}

recur_array *rc_pool_get(rc_pool *p, recur_dtype dt, recur_shape shape)
{
    int64_t count;
    if (!rc_shape_count(shape, &count)) return NULL;
    size_t bytes = (size_t)count * recur_dtype_size(dt), cls = size_class(bytes);
    pthread_mutex_lock(&p->lock);
    size_t i = find_bucket(p, cls);
    recur_array *a = NULL;
    if (i < p->n && p->buckets[i].bytes == cls && p->buckets[i].n) {
        a = p->buckets[i].items[--p->buckets[i].n];
        p->held_bytes -= cls;
    }
    pthread_mutex_unlock(&p->lock);
    if (!a) {
        a = rc_array_alloc_cap(dt, shape, cls);
        if (!a) return NULL;
        a->pooled = true;
    }
    a->dtype = dt;
    a->shape = shape;
    for (int d = shape.rank; d < RECUR_MAX_RANK; d++) a->shape.dims[d] = 0;
    a->size = count;
    a->nbytes = bytes;
    a->refs = 1;
    return a;
}

void rc_release(rc_pool *p, recur_array *a)
{
    if (!a || !a->pooled) return;
    pthread_mutex_lock(&p->lock);
    RC_CHECK(a->refs > 0);
    if (--a->refs > 0) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    size_t bytes = a->capacity;
    size_t i = find_bucket(p, bytes);
    if (i == p->n || p->buckets[i].bytes != bytes) {
        if (!RC_GROW(p->buckets, p->cap, p->n + 1)) goto drop;
        memmove(&p->buckets[i + 1], &p->buckets[i], (p->n - i) * sizeof *p->buckets);
        p->buckets[i] = (rc_pool_bucket){.bytes = bytes};
        p->n++;
    }
    rc_pool_bucket *b = &p->buckets[i];
    if (!RC_GROW(b->items, b->cap, b->n + 1)) goto drop;
    b->items[b->n++] = a;
    p->held_bytes += bytes;
    pthread_mutex_unlock(&p->lock);
    return;
drop:
    pthread_mutex_unlock(&p->lock);
    recur_array_free(a);
}

void rc_pool_free(rc_pool *p)
{
    for (size_t i = 0; i < p->n; i++) {
        for (size_t j = 0; j < p->buckets[i].n; j++) recur_array_free(p->buckets[i].items[j]);
        rc_free(p->buckets[i].items);
    }
    rc_free(p->buckets);
    p->buckets = NULL;
    p->n = p->cap = p->held_bytes = 0;
}
