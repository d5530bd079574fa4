/*
 * strbuf.c - a growable string used to compose messages and names, and an edit distance for
 * "nearest names" suggestions.
 */
#include "recur_impl.h"

void rc_sb_init(rc_strbuf *b) { memset(b, 0, sizeof *b); }

void rc_sb_free(rc_strbuf *b)
{
    rc_free(b->s);
    rc_sb_init(b);
}

void rc_sb_putn(rc_strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (!RC_GROW(b->s, b->cap, b->len + n + 1)) {
        b->oom = true;
        return;
    }
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void rc_sb_puts(rc_strbuf *b, const char *s) { rc_sb_putn(b, s, strlen(s)); }

void rc_sb_printf(rc_strbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        rc_sb_putn(b, tmp, (size_t)n);
        return;
    }
    char *big = rc_malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc_sb_putn(b, big, (size_t)n);
    rc_free(big);
}

char *rc_sb_take(rc_strbuf *b)
{
    if (b->oom) {
        rc_sb_free(b);
        return NULL;
    }
    char *s = b->s ? b->s : rc_strdup("");
    rc_sb_init(b);
    return s;
}

size_t rc_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 256 || lb > 256) return cap;
    size_t row[257];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0], best = row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t v = RC_MIN(RC_MIN(row[j] + 1, row[j - 1] + 1), sub);
            row[j] = v;
            prev = cur;
            if (v < best) best = v;
        }
        if (best >= cap) return cap;
    }
    return RC_MIN(row[lb], cap);
}
