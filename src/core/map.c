/*
 * map.c - a string-keyed open-addressing hash map (FNV-1a, linear probing) for names.
 */
#include "recur_impl.h"

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void rc_map_init(rc_map *m) { memset(m, 0, sizeof *m); }

void rc_map_free(rc_map *m)
{
    for (size_t i = 0; i < m->cap; i++) rc_free(m->slots[i].key);
    rc_free(m->slots);
    rc_map_init(m);
}

static rc_map_entry *find(const rc_map *m, const char *key, uint64_t h)
{
    if (!m->cap) return NULL;
    size_t i = h & (m->cap - 1);
    for (;;) {
        rc_map_entry *e = &m->slots[i];
        if (!e->key) return e;
        if (e->hash == h && strcmp(e->key, key) == 0) return e;
        i = (i + 1) & (m->cap - 1);
    }
}

intptr_t *rc_map_get(const rc_map *m, const char *key)
{
    rc_map_entry *e = find(m, key, hash_str(key));
    return e && e->key ? &e->value : NULL;
}

static bool rehash(rc_map *m, size_t ncap)
{
    rc_map_entry *ns = rc_calloc(ncap, sizeof *ns);
    if (!ns) return false;
    for (size_t i = 0; i < m->cap; i++) {
        rc_map_entry *e = &m->slots[i];
        if (!e->key) continue;
        size_t j = e->hash & (ncap - 1);
        while (ns[j].key) j = (j + 1) & (ncap - 1);
        ns[j] = *e;
    }
    rc_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return true;
}

bool rc_map_set(rc_map *m, const char *key, intptr_t value)
{
    if ((m->count + 1) * 4 >= m->cap * 3 && !rehash(m, m->cap ? m->cap * 2 : 16)) return false;
    uint64_t h = hash_str(key);
    rc_map_entry *e = find(m, key, h);
    if (e->key) {
        e->value = value;
        return true;
    }
    char *k = rc_strdup(key);
    if (!k) return false;
    e->key = k;
    e->hash = h;
    e->value = value;
    m->count++;
    return true;
}

bool rc_map_copy(rc_map *dst, const rc_map *src)
{
    rc_map_init(dst);
    if (!src->cap) return true;
    dst->slots = rc_calloc(src->cap, sizeof *dst->slots);
    if (!dst->slots) return false;
    dst->cap = src->cap;
    for (size_t i = 0; i < src->cap; i++) {
        if (!src->slots[i].key) continue;
        dst->slots[i] = src->slots[i];
        dst->slots[i].key = rc_strdup(src->slots[i].key);
        if (!dst->slots[i].key) {
            rc_map_free(dst);
            return false;
        }
        dst->count++;
    }
    return true;
}

const char *rc_map_intern(rc_map *m, const char *key)
{
    uint64_t h = hash_str(key);
    rc_map_entry *e = find(m, key, h);
    if (e && e->key) return e->key;
    if (!rc_map_set(m, key, 0)) return NULL;
    return find(m, key, h)->key;
}
