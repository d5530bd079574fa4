/*
 * name_map.c - checkpoint rename maps (init_from_checkpoint's assignment_map form: checkpoint
 * name or scope -> graph name or scope) and the suggestion of one that reconciles a graph's
 * variables with a checkpoint's keys, used by the Saver's restore diagnostics.
 *
 * The suggestion pairs every unmatched variable with an unused key of the same dtype and
 * shape. Each compatible pair votes for the scope change that explains it (the names minus
 * their longest common run of trailing components, compared after TensorFlow's historical
 * renames); changes are applied in decreasing order of votes, then any variable still alone
 * takes its nearest compatible key by edit distance. The chosen pairs are written as scope
 * entries where a whole graph scope follows one change, as single keys otherwise.
 */
#include "io/io.h"

bool rc_name_map_add(rc_name_map *m, const char *from, const char *to)
{
    if (!RC_GROW(m->e, m->cap, m->n + 1)) return false;
    rc_name_pair p = {rc_strdup(from), rc_strdup(to)};
    if (!p.from || !p.to) {
        rc_free(p.from);
        rc_free(p.to);
        return false;
    }
    m->e[m->n++] = p;
    return true;
}

void rc_name_map_free(rc_name_map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        rc_free(m->e[i].from);
        rc_free(m->e[i].to);
    }
    rc_free(m->e);
    memset(m, 0, sizeof *m);
}

static bool is_scope(const char *s) { return s[0] && s[strlen(s) - 1] == '/'; }

/* Bytes of a scope name a full name starts with ("/", the root, has none). */
static size_t scope_len(const char *scope) { return strcmp(scope, "/") ? strlen(scope) : 0; }

char *rc_name_map_apply(const rc_name_map *m, const char *name, bool *oom)
{
    *oom = false;
    const rc_name_pair *hit = NULL;
    for (size_t i = 0; i < m->n; i++) {
        const rc_name_pair *p = &m->e[i];
        if (!is_scope(p->to)) {
            if (!strcmp(p->to, name)) {
                hit = p;
                break;
            }
        } else if (!strncmp(p->to, name, scope_len(p->to)) &&
                   (!hit || scope_len(p->to) > scope_len(hit->to))) {
            hit = p;
        }
    }
    if (!hit) return NULL;
    rc_strbuf b;
    rc_sb_init(&b);
    if (!is_scope(hit->to)) {
        rc_sb_puts(&b, hit->from);
    } else {
        rc_sb_putn(&b, hit->from, scope_len(hit->from));
        rc_sb_puts(&b, name + scope_len(hit->to));
    }
    char *r = rc_sb_take(&b);
    *oom = !r;
    return r;
}

/* ---------------------------------------------------------------- suggestion */
/* TensorFlow's renames of RNN variables across versions, applied to whole component runs. */
static const struct {
    const char *old, *now;
} renames[] = {
    {"BasicLSTMCell/Linear/Matrix", "basic_lstm_cell/kernel"},
    {"BasicLSTMCell/Linear/Bias", "basic_lstm_cell/bias"},
    {"weights", "kernel"},
    {"biases", "bias"},
    {"lstm_cell", "basic_lstm_cell"},
};

/* `name` with the renames applied (both sides of a comparison are canonicalised). New. */
static char *canonical(const char *name)
{
    rc_strbuf b;
    rc_sb_init(&b);
    for (const char *p = name; *p;) {
        size_t k = 0, len = 0;
        for (; k < RC_ARRAY_LEN(renames); k++) {
            len = strlen(renames[k].old);
            if (!strncmp(p, renames[k].old, len) && (p[len] == '/' || !p[len])) break;
        }
        if (k < RC_ARRAY_LEN(renames)) {
            rc_sb_puts(&b, renames[k].now);
        } else {
            len = strcspn(p, "/");
            rc_sb_putn(&b, p, len);
        }
        p += len;
        if (*p == '/') rc_sb_putn(&b, p++, 1);
    }
    return rc_sb_take(&b);
}

/* Length of the longest common suffix of a and b made of whole components (0 if none). */
static size_t common_suffix(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), best = 0;
    for (size_t i = 1; i <= la && i <= lb && a[la - i] == b[lb - i]; i++)
        if ((i == la || a[la - i - 1] == '/') && (i == lb || b[lb - i - 1] == '/')) best = i;
    return best;
}

/* "from\1to": the scope change turning `f` into `u` when their last `suffix` bytes agree. */
static char *change_key(const char *f, const char *u, size_t suffix)
{
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_putn(&b, f, strlen(f) - suffix);
    rc_sb_puts(&b, "\1");
    rc_sb_putn(&b, u, strlen(u) - suffix);
    return rc_sb_take(&b);
}

static bool compatible(const rc_name_info *a, const rc_name_info *b)
{
    return a->dtype == b->dtype && rc_shape_equal(a->shape, b->shape);
}

enum { UNMATCHED = -1, PRESENT = -2 }; /* match[] values besides a have index */

typedef struct change {
    const char *key; /* change_key, owned by the suggester's map */
    size_t votes, rank;
} change;

typedef struct vote {
    size_t u, f;     /* want and have indexes */
    size_t change;   /* index into changes; replaced by its rank before sorting */
} vote;

typedef struct suggester {
    const rc_name_info *want, *have;
    size_t nwant, nhave;
    char **cw, **ch;        /* canonical names */
    ptrdiff_t *match;       /* per want: have index, UNMATCHED or PRESENT */
    bool *taken;            /* per have */
    rc_map change_ids;      /* change key -> index */
    change *changes;
    size_t nchanges, capchanges;
    vote *v;
    size_t nv, capv;
} suggester;

static int change_cmp(const void *pa, const void *pb)
{
    const change *a = *(change *const *)pa, *b = *(change *const *)pb;
    if (a->votes != b->votes) return a->votes > b->votes ? -1 : 1;
    return strcmp(a->key, b->key);
}

static int vote_cmp(const void *pa, const void *pb)
{
    const vote *a = pa, *b = pb;
    if (a->change != b->change) return a->change < b->change ? -1 : 1;
    if (a->u != b->u) return a->u < b->u ? -1 : 1;
    return (a->f > b->f) - (a->f < b->f);
}

/* Record every compatible (unmatched want, free have) pair with the scope change it needs. */
static bool collect_votes(suggester *s)
{
    for (size_t u = 0; u < s->nwant; u++) {
        if (s->match[u] != UNMATCHED) continue;
        for (size_t f = 0; f < s->nhave; f++) {
            if (s->taken[f] || !compatible(&s->want[u], &s->have[f])) continue;
            size_t suffix = common_suffix(s->cw[u], s->ch[f]);
            if (!suffix) continue;
            char *key = change_key(s->ch[f], s->cw[u], suffix);
            intptr_t *id = key ? rc_map_get(&s->change_ids, key) : NULL;
            size_t c = id ? (size_t)*id : s->nchanges;
            bool ok = key != NULL;
            if (ok && !id) {
                ok = RC_GROW(s->changes, s->capchanges, c + 1) && rc_map_set(&s->change_ids, key, (intptr_t)c);
                if (ok) s->changes[s->nchanges++] = (change){rc_map_intern(&s->change_ids, key), 0, 0};
            }
            rc_free(key);
            if (!ok || !RC_GROW(s->v, s->capv, s->nv + 1)) return false;
            s->changes[c].votes++;
            s->v[s->nv++] = (vote){u, f, c};
        }
    }
    return true;
}

static void pair(suggester *s, size_t u, size_t f)
{
    s->match[u] = (ptrdiff_t)f;
    s->taken[f] = true;
}

/* Apply the changes in decreasing order of votes; each pair binds if both sides are free. */
static bool apply_votes(suggester *s)
{
    change **order = rc_malloc((s->nchanges + 1) * sizeof *order);
    if (!order) return false;
    for (size_t i = 0; i < s->nchanges; i++) order[i] = &s->changes[i];
    qsort(order, s->nchanges, sizeof *order, change_cmp);
    for (size_t i = 0; i < s->nchanges; i++) order[i]->rank = i;
    rc_free(order);
    for (size_t i = 0; i < s->nv; i++) s->v[i].change = s->changes[s->v[i].change].rank;
    if (s->nv) qsort(s->v, s->nv, sizeof *s->v, vote_cmp);
    for (size_t i = 0; i < s->nv; i++)
        if (s->match[s->v[i].u] == UNMATCHED && !s->taken[s->v[i].f]) pair(s, s->v[i].u, s->v[i].f);
    return true;
}

/* Variables left alone take their unique nearest compatible key by edit distance. */
static void nearest_fallback(suggester *s)
{
    for (size_t u = 0; u < s->nwant; u++) {
        if (s->match[u] != UNMATCHED) continue;
        size_t best = 0, bestd = SIZE_MAX;
        bool unique = false;
        for (size_t f = 0; f < s->nhave; f++) {
            if (s->taken[f] || !compatible(&s->want[u], &s->have[f])) continue;
            size_t d = rc_edit_distance(s->want[u].name, s->have[f].name, 1024);
            unique = d < bestd || (d > bestd && unique);
            if (d < bestd) {
                best = f;
                bestd = d;
            }
        }
        if (unique) pair(s, u, best);
    }
}

static int entry_cmp(const void *pa, const void *pb)
{
    const rc_name_pair *a = pa, *b = pb;
    if (is_scope(a->to) != is_scope(b->to)) return is_scope(a->to) ? -1 : 1;
    return strcmp(a->to, b->to);
}

/* Write the chosen pairs into `out`: one scope entry per raw scope change that covers every
 * variable under its graph scope, single keys for the rest. */
static bool emit(const suggester *s, rc_name_map *out)
{
    rc_map groups; /* raw change key -> number of pairs following it; -1 once emitted as a scope */
    rc_map_init(&groups);
    char **keys = rc_calloc(s->nwant + 1, sizeof *keys);
    bool ok = keys != NULL;
    for (size_t u = 0; ok && u < s->nwant; u++) {
        if (s->match[u] < 0) continue;
        const char *f = s->have[s->match[u]].name, *w = s->want[u].name;
        size_t suffix = common_suffix(f, w);
        if (!suffix) continue;
        ok = (keys[u] = change_key(f, w, suffix)) != NULL;
        intptr_t *n = ok ? rc_map_get(&groups, keys[u]) : NULL;
        ok = ok && rc_map_set(&groups, keys[u], n ? *n + 1 : 1);
    }
    for (size_t i = 0; ok && i < groups.cap; i++) {
        rc_map_entry *g = &groups.slots[i];
        if (!g->key) continue;
        const char *to = strchr(g->key, '\1') + 1;
        intptr_t under = 0;
        for (size_t u = 0; u < s->nwant; u++) under += !strncmp(s->want[u].name, to, strlen(to));
        if (under != g->value) continue; /* another variable lives in that graph scope */
        char *from = rc_strndup(g->key, (size_t)(to - 1 - g->key));
        ok = from && rc_name_map_add(out, from[0] ? from : "/", to[0] ? to : "/");
        rc_free(from);
        g->value = -1;
    }
    for (size_t u = 0; ok && u < s->nwant; u++) {
        if (s->match[u] < 0) continue;
        intptr_t *g = keys[u] ? rc_map_get(&groups, keys[u]) : NULL;
        if (!g || *g != -1) ok = rc_name_map_add(out, s->have[s->match[u]].name, s->want[u].name);
    }
    if (ok && out->n) qsort(out->e, out->n, sizeof *out->e, entry_cmp);
    for (size_t u = 0; keys && u < s->nwant; u++) rc_free(keys[u]);
    rc_free(keys);
    rc_map_free(&groups);
    return ok;
}

bool rc_suggest_name_map(const rc_name_info *want, size_t nwant, const rc_name_info *have, size_t nhave,
                         rc_name_map *out)
{
    suggester s = {.want = want, .have = have, .nwant = nwant, .nhave = nhave};
    rc_map by_name;
    rc_map_init(&by_name);
    rc_map_init(&s.change_ids);
    s.cw = rc_calloc(nwant + 1, sizeof *s.cw);
    s.ch = rc_calloc(nhave + 1, sizeof *s.ch);
    s.match = rc_malloc((nwant + 1) * sizeof *s.match);
    s.taken = rc_calloc(nhave + 1, sizeof *s.taken);
    bool ok = s.cw && s.ch && s.match && s.taken;
    for (size_t f = 0; ok && f < nhave; f++)
        ok = rc_map_set(&by_name, have[f].name, (intptr_t)f) && (s.ch[f] = canonical(have[f].name));
    for (size_t u = 0; ok && u < nwant; u++) {
        intptr_t *f = rc_map_get(&by_name, want[u].name);
        s.match[u] = f ? PRESENT : UNMATCHED;
        if (f) s.taken[*f] = true;
        ok = (s.cw[u] = canonical(want[u].name)) != NULL;
    }
    ok = ok && collect_votes(&s) && apply_votes(&s);
    if (ok) nearest_fallback(&s);
    ok = ok && emit(&s, out);
    for (size_t u = 0; s.cw && u < nwant; u++) rc_free(s.cw[u]);
    for (size_t f = 0; s.ch && f < nhave; f++) rc_free(s.ch[f]);
    rc_free(s.cw);
    rc_free(s.ch);
    rc_free(s.match);
    rc_free(s.taken);
    rc_free(s.changes);
    rc_free(s.v);
    rc_map_free(&s.change_ids);
    rc_map_free(&by_name);
    return ok;
}

long recur_checkpoint_suggest_map(const recur_checkpoint *from, const recur_checkpoint *to, recur_name_map_fn fn,
                                  void *user, recur_status *st)
{
    recur_status_clear(st);
    if (!from || !to) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_suggest_map: NULL checkpoint");
        return -1;
    }
    size_t nhave = recur_checkpoint_num_tensors(from), nwant = recur_checkpoint_num_tensors(to);
    rc_name_info *have = rc_calloc(nhave + 1, sizeof *have), *want = rc_calloc(nwant + 1, sizeof *want);
    rc_name_map map = {0};
    bool ok = have && want;
    for (size_t i = 0; ok && i < nhave; i++) {
        have[i].name = recur_checkpoint_key(from, i);
        recur_checkpoint_info(from, have[i].name, &have[i].dtype, &have[i].shape);
    }
    for (size_t i = 0; ok && i < nwant; i++) {
        want[i].name = recur_checkpoint_key(to, i);
        recur_checkpoint_info(to, want[i].name, &want[i].dtype, &want[i].shape);
    }
    ok = ok && rc_suggest_name_map(want, nwant, have, nhave, &map);
    long n = ok ? (long)map.n : -1;
    for (size_t i = 0; ok && fn && i < map.n; i++) fn(user, map.e[i].from, map.e[i].to);
    if (!ok) rc_oom(st);
    rc_name_map_free(&map);
    rc_free(have);
    rc_free(want);
    return n;
}
