/*
 * alloc.c - every allocation recur makes, through replaceable hooks, with a
 * "fail the Nth allocation" switch for out-of-memory tests.
 */
#include "recur_impl.h"

#include <stdatomic.h>

static recur_allocator g_alloc = {malloc, realloc, free};
static atomic_long g_count;      /* allocations made */
static atomic_long g_fail_at;    /* fail when g_count reaches this (0 = never) */

void recur_set_allocator(const recur_allocator *a)
{
    if (a && a->malloc_fn && a->realloc_fn && a->free_fn)
        g_alloc = *a;
    else
        g_alloc = (recur_allocator){malloc, realloc, free};
}

void recur_alloc_fail_after(long n)
{
    atomic_store(&g_fail_at, n > 0 ? atomic_load(&g_count) + n : 0);
}

long recur_alloc_count(void) { return atomic_load(&g_count); }

/* True when this allocation must fail (injection). */
static bool should_fail(void)
{
    long c = atomic_fetch_add(&g_count, 1) + 1;
    long at = atomic_load(&g_fail_at);
    return at > 0 && c >= at;
}

void *rc_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return g_alloc.malloc_fn(n ? n : 1);
}

void *rc_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = rc_malloc(count * size);
    if (p && count && size) memset(p, 0, count * size);
    return p;
}

void *rc_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    return g_alloc.realloc_fn(p, n ? n : 1);
}

void rc_free(void *p)
{
    if (p) g_alloc.free_fn(p);
}

char *rc_strdup(const char *s) { return s ? rc_strndup(s, strlen(s)) : NULL; }

char *rc_strndup(const char *s, size_t n)
{
    char *d = rc_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Over-allocate and keep the original pointer just before the aligned block. */
void *rc_aligned_alloc(size_t n)
{
    if (n > SIZE_MAX - 64 - sizeof(void *)) return NULL;
    char *raw = rc_malloc(n + 64 + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void rc_aligned_free(void *p)
{
    if (p) rc_free(((void **)p)[-1]);
}

bool rc_grow(void **items, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need) nc *= 2;
    if (nc > SIZE_MAX / size) return false;
    void *p = rc_realloc(*items, nc * size);
    if (!p) return false;
    *items = p;
    *cap = nc;
    return true;
}

_Noreturn void rc_fatal(const char *file, int line, const char *what)
{
    fprintf(stderr, "recur: internal invariant broken at %s:%d: %s\n", file, line, what);
    abort();
}
