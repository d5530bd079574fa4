/*
 * state_file.c - the `checkpoint` state file of a checkpoint directory: the text-format
 * tensorflow.CheckpointState (model_checkpoint_path, all_model_checkpoint_paths, and the
 * timestamps newer TensorFlow adds), read in any field order with unknown fields skipped, and
 * written as Python's text_format does, atomically. Also recur_latest_checkpoint.
 */
#include "io/io.h"

#include <ctype.h>
#include <sys/stat.h>

typedef struct parser {
    const char *p, *end;
    int line;
    const char *path;
    recur_status *st;
    int depth; /* messages and lists open around the current value */
} parser;

/* protobuf's default recursion limit: deeper nesting is refused instead of overflowing the stack. */
enum { MAX_DEPTH = 100 };

static recur_code syntax(parser *ps, const char *what)
{
    return rc_err(ps->st, RECUR_DATA_LOSS, "%s:%d: cannot parse the checkpoint state: %s", ps->path, ps->line, what);
}

/* Skip blanks and # comments; true when input remains. */
static bool skip_space(parser *ps)
{
    while (ps->p < ps->end) {
        if (*ps->p == '\n') ps->line++;
        if (*ps->p == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else if (isspace((unsigned char)*ps->p)) {
            ps->p++;
        } else {
            return true;
        }
    }
    return false;
}

static bool is_word(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-' || c == '+'; }

/* A word (field name, number or enum); its length, 0 when none. */
static size_t word(parser *ps)
{
    const char *s = ps->p;
    while (ps->p < ps->end && is_word(*ps->p)) ps->p++;
    return (size_t)(ps->p - s);
}

static int hexval(char c) { return isdigit((unsigned char)c) ? c - '0' : (tolower((unsigned char)c) - 'a' + 10); }

/* One or more adjacent quoted strings with C escapes, appended to `out`. */
static recur_code string_lit(parser *ps, rc_strbuf *out)
{
    do {
        char q = *ps->p++;
        for (;;) {
            if (ps->p >= ps->end || *ps->p == '\n') return syntax(ps, "unterminated string");
            char c = *ps->p++;
            if (c == q) break;
            if (c != '\\') {
                rc_sb_putn(out, &c, 1);
                continue;
            }
            if (ps->p >= ps->end) return syntax(ps, "unterminated string");
            c = *ps->p++;
            char e = c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c == 'a' ? '\a' : c == 'b' ? '\b'
                   : c == 'f' ? '\f' : c == 'v' ? '\v' : strchr("\\'\"?", c) ? c : 0;
            if (e) {
                rc_sb_putn(out, &e, 1);
            } else if (c >= '0' && c <= '7') {
                int v = c - '0';
                for (int k = 0; k < 2 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7'; k++) v = v * 8 + *ps->p++ - '0';
                if (v > 255) return syntax(ps, "octal escape out of range");
                char b = (char)v;
                rc_sb_putn(out, &b, 1);
            } else if (c == 'x' && ps->p < ps->end && isxdigit((unsigned char)*ps->p)) {
                int v = hexval(*ps->p++);
                if (ps->p < ps->end && isxdigit((unsigned char)*ps->p)) v = v * 16 + hexval(*ps->p++);
                char b = (char)v;
                rc_sb_putn(out, &b, 1);
            } else {
                return syntax(ps, "invalid escape sequence in string");
            }
        }
    } while (skip_space(ps) && (*ps->p == '"' || *ps->p == '\''));
    return out->oom ? rc_oom(ps->st) : RECUR_OK;
}

static recur_code skip_value(parser *ps);

/* Skip a { ... } or < ... > message body (the opening bracket is current). */
static recur_code skip_message(parser *ps)
{
    char close = *ps->p++ == '{' ? '}' : '>';
    for (;;) {
        if (!skip_space(ps)) return syntax(ps, "unterminated message");
        if (*ps->p == close) {
            ps->p++;
            return RECUR_OK;
        }
        if (!word(ps)) return syntax(ps, "expected a field name");
        if (!skip_space(ps)) return syntax(ps, "unexpected end of file");
        if (*ps->p == ':') {
            ps->p++;
            if (!skip_space(ps)) return syntax(ps, "unexpected end of file");
        } else if (*ps->p != '{' && *ps->p != '<') {
            return syntax(ps, "expected ':'");
        }
        recur_code code = skip_value(ps);
        if (code != RECUR_OK) return code;
    }
}

/* A scalar value, appended to `str` when it is a string and `str` is non-NULL. */
static recur_code scalar(parser *ps, rc_strbuf *str)
{
    if (*ps->p == '"' || *ps->p == '\'') {
        if (!str) return syntax(ps, "expected a number, got a string");
        return string_lit(ps, str);
    }
    if (str) return syntax(ps, "expected a quoted string");
    if (!word(ps)) return syntax(ps, "expected a value");
    return RECUR_OK;
}

static recur_code skip_value_at(parser *ps);

static recur_code skip_value(parser *ps)
{
    if (ps->depth >= MAX_DEPTH) return syntax(ps, "messages or lists nested too deeply");
    ps->depth++;
    recur_code code = skip_value_at(ps);
    ps->depth--;
    return code;
}

static recur_code skip_value_at(parser *ps)
{
    if (*ps->p == '{' || *ps->p == '<') return skip_message(ps);
    if (*ps->p == '"' || *ps->p == '\'') {
        rc_strbuf tmp;
        rc_sb_init(&tmp);
        recur_code code = string_lit(ps, &tmp);
        rc_sb_free(&tmp);
        return code;
    }
    if (*ps->p == '[') {
        ps->p++;
        while (skip_space(ps) && *ps->p != ']') {
            recur_code code = skip_value(ps);
            if (code != RECUR_OK) return code;
            if (skip_space(ps) && *ps->p == ',') ps->p++;
        }
        if (ps->p >= ps->end) return syntax(ps, "unterminated list");
        ps->p++;
        return RECUR_OK;
    }
    return scalar(ps, NULL);
}

static bool field_is(const char *name, size_t n, const char *want) { return strlen(want) == n && !memcmp(name, want, n); }

/* Take the parsed string as a path joined to the directory. */
static recur_code take_path(parser *ps, rc_strbuf *sb, const char *dir, char **out)
{
    char *s = rc_sb_take(sb);
    *out = s ? rc_path_join(dir, s) : NULL;
    rc_free(s);
    return *out ? RECUR_OK : rc_oom(ps->st);
}

static recur_code add_path(parser *ps, rc_ckpt_state *s, const char *dir, size_t *cap)
{
    rc_strbuf sb;
    rc_sb_init(&sb);
    recur_code code = scalar(ps, &sb);
    if (code == RECUR_OK && !RC_GROW(s->all_paths, *cap, s->nall + 1)) code = rc_oom(ps->st);
    if (code == RECUR_OK) code = take_path(ps, &sb, dir, &s->all_paths[s->nall]);
    if (code == RECUR_OK) s->nall++;
    rc_sb_free(&sb);
    return code;
}

static recur_code parse(parser *ps, const char *dir, rc_ckpt_state *s)
{
    size_t cap = 0;
    while (skip_space(ps)) {
        const char *name = ps->p;
        size_t n = word(ps);
        if (!n) return syntax(ps, "expected a field name");
        if (!skip_space(ps)) return syntax(ps, "unexpected end of file");
        bool colon = *ps->p == ':';
        if (colon) ps->p++;
        if (!skip_space(ps)) return syntax(ps, "unexpected end of file");
        if (!colon && *ps->p != '{' && *ps->p != '<') return syntax(ps, "expected ':'");
        recur_code code;
        if (field_is(name, n, "model_checkpoint_path")) {
            rc_strbuf sb;
            rc_sb_init(&sb);
            code = scalar(ps, &sb);
            rc_free(s->model_path);
            s->model_path = NULL;
            if (code == RECUR_OK) code = take_path(ps, &sb, dir, &s->model_path);
            rc_sb_free(&sb);
        } else if (field_is(name, n, "all_model_checkpoint_paths") && *ps->p == '[') {
            ps->p++;
            code = RECUR_OK;
            while (code == RECUR_OK && skip_space(ps) && *ps->p != ']') {
                code = add_path(ps, s, dir, &cap);
                if (code == RECUR_OK && skip_space(ps) && *ps->p == ',') ps->p++;
            }
            if (code == RECUR_OK && ps->p >= ps->end) code = syntax(ps, "unterminated list");
            if (code == RECUR_OK) ps->p++;
        } else if (field_is(name, n, "all_model_checkpoint_paths")) {
            code = add_path(ps, s, dir, &cap);
        } else {
            code = skip_value(ps); /* timestamps and fields of newer versions */
        }
        if (code != RECUR_OK) return code;
        if (skip_space(ps) && (*ps->p == ',' || *ps->p == ';')) ps->p++;
    }
    if (!s->model_path || !*rc_path_base(s->model_path))
        return rc_err(ps->st, RECUR_DATA_LOSS, "%s:%d: Invalid checkpoint state loaded from %s (empty "
                      "model_checkpoint_path)", ps->path, ps->line, dir);
    return RECUR_OK;
}

void rc_state_free(rc_ckpt_state *s)
{
    rc_free(s->model_path);
    for (size_t i = 0; i < s->nall; i++) rc_free(s->all_paths[i]);
    rc_free(s->all_paths);
    memset(s, 0, sizeof *s);
}

recur_code rc_state_read(const char *dir, rc_ckpt_state *out, recur_status *st)
{
    memset(out, 0, sizeof *out);
    char *path = rc_path_join(dir, "checkpoint");
    if (!path) return rc_oom(st);
    uint8_t *text;
    size_t n;
    recur_code code = rc_read_file(path, &text, &n, st);
    if (code == RECUR_OK) {
        parser ps = {(const char *)text, (const char *)text + n, 1, path, st, 0};
        code = parse(&ps, dir, out);
        rc_free(text);
    }
    if (code != RECUR_OK) rc_state_free(out);
    rc_free(path);
    return code;
}

/* A text-format string as Python's text_format writes it (C escapes, octal for the rest). */
static void put_quoted(rc_strbuf *b, const char *s)
{
    rc_sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *e = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : *p == '"' ? "\\\""
                      : *p == '\'' ? "\\'" : *p == '\\' ? "\\\\" : NULL;
        if (e) rc_sb_puts(b, e);
        else if (*p < 32 || *p >= 127) rc_sb_printf(b, "\\%03o", *p);
        else rc_sb_putn(b, (const char *)p, 1);
    }
    rc_sb_puts(b, "\"");
}

/* The path as written: relative to dir when it lies directly in it. */
static void put_path(rc_strbuf *b, const char *dir, const char *path)
{
    char *d = rc_path_dir(path);
    if (!d) b->oom = true;
    put_quoted(b, d && !strcmp(d, dir) ? rc_path_base(path) : path);
    rc_free(d);
}

recur_code rc_state_write(const char *dir, const rc_ckpt_state *s, recur_status *st)
{
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_puts(&b, "model_checkpoint_path: ");
    put_path(&b, dir, s->model_path);
    rc_sb_puts(&b, "\n");
    for (size_t i = 0; i < s->nall; i++) {
        rc_sb_puts(&b, "all_model_checkpoint_paths: ");
        put_path(&b, dir, s->all_paths[i]);
        rc_sb_puts(&b, "\n");
    }
    char *path = rc_path_join(dir, "checkpoint");
    recur_code code = b.oom || !path ? rc_oom(st) : rc_write_file_atomic(path, b.s, b.len, st);
    rc_free(path);
    rc_sb_free(&b);
    return code;
}

const char *recur_latest_checkpoint(const char *dir, char *buf, size_t cap, recur_status *st)
{
    recur_status_clear(st);
    if (!dir || !buf) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_latest_checkpoint: NULL argument");
        return NULL;
    }
    rc_ckpt_state s;
    recur_code code = rc_state_read(dir, &s, st);
    if (code == RECUR_NOT_FOUND)
        rc_err(st, RECUR_NOT_FOUND, "No checkpoint state file in %s", dir);
    if (code != RECUR_OK) return NULL;
    const char *result = NULL;
    rc_strbuf idx;
    rc_sb_init(&idx);
    rc_sb_printf(&idx, "%s.index", s.model_path);
    struct stat sb;
    if (idx.oom)
        rc_oom(st);
    else if (stat(idx.s, &sb) != 0)
        rc_err(st, RECUR_NOT_FOUND, "Couldn't match files for checkpoint %s", s.model_path);
    else if (strlen(s.model_path) >= cap)
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_latest_checkpoint: the path needs %zu bytes, the buffer has %zu",
               strlen(s.model_path) + 1, cap);
    else
        result = strcpy(buf, s.model_path);
    rc_sb_free(&idx);
    rc_state_free(&s);
    return result;
}
