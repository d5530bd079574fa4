/*
 * pool.c - the session's buffer pool: arrays freed after their last reader wait here in
 * size-keyed free lists and are handed out again, so a steady-state loop allocates nothing.
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

void rc_pool_init(rc_pool *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
}

recur_array *rc_pool_get(rc_pool *p, recur_dtype dt, recur_shape shape)
{
    int64_t count;
    if (!rc_shape_count(shape, &count)) return NULL;
    size_t bytes = (size_t)count * recur_dtype_size(dt);
    pthread_mutex_lock(&p->lock);
    size_t i = find_bucket(p, bytes);
    if (i < p->n && p->buckets[i].bytes == bytes && p->buckets[i].n) {
        recur_array *a = p->buckets[i].items[--p->buckets[i].n];
        p->held_bytes -= bytes;
        pthread_mutex_unlock(&p->lock);
        a->dtype = dt;
        a->shape = shape;
        for (int d = shape.rank; d < RECUR_MAX_RANK; d++) a->shape.dims[d] = 0;
        a->size = count;
        a->nbytes = bytes;
        a->refs = 1;
        return a;
    }
    pthread_mutex_unlock(&p->lock);
    recur_array *a = rc_array_alloc(dt, shape, false, NULL);
    if (!a) return NULL;
    a->pooled = true;
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
