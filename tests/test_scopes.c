/*
 * test_scopes.c - runs the variable-scope catalogue (tests/tf/scope_programs.txt) through
 * recur's C API and compares every event with the golden file TensorFlow produced
 * (tests/golden/scopes.golden): variable names, shapes and dtypes, op names, scope names,
 * collections and error messages (recur's may only add text after TensorFlow's, starting with
 * a newline or " Originally defined at:").
 */
#include "runner.h"
#include "golden.h"

#include <ctype.h>

#define MAXTOK 32
#define MAXLINES 256

typedef struct prog {
    char name[128];
    char **stmts; /* raw statement lines */
    int n;
} prog;

typedef struct lines {
    char **v;
    int n, cap;
} lines;

static void lines_add(lines *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = strdup(s);
}

static void lines_free(lines *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Tokenise: blanks separate, "..." quotes, # comments. Returns count; opts are key=value. */
static int tokenize(char *line, char **tok, bool *quoted)
{
    int n = 0;
    char *p = line;
    while (*p && n < MAXTOK) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') break;
        if (*p == '"') {
            char *e = strchr(p + 1, '"');
            if (!e) rt_fail(__FILE__, __LINE__, "unterminated quote in: %s", line);
            *e = 0;
            quoted[n] = true;
            tok[n++] = p + 1;
            p = e + 1;
        } else {
            char *s = p;
            while (*p && *p != ' ' && *p != '\t') p++;
            if (*p) *p++ = 0;
            quoted[n] = false;
            tok[n++] = s;
        }
    }
    return n;
}

static const char *opt(char **tok, bool *quoted, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 1; i < n; i++)
        if (!quoted[i] && !strncmp(tok[i], key, kl) && tok[i][kl] == '=') return tok[i] + kl + 1;
    return NULL;
}

static int npos(char **tok, bool *quoted, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (quoted[i] || !strchr(tok[i], '=')) k = i + 1;
    return k;
}

static recur_dtype parse_dtype(const char *s)
{
    if (!s) return 0;
    if (!strcmp(s, "float32")) return RECUR_F32;
    if (!strcmp(s, "float64")) return RECUR_F64;
    if (!strcmp(s, "int32")) return RECUR_I32;
    if (!strcmp(s, "int64")) return RECUR_I64;
    if (!strcmp(s, "bool")) return RECUR_BOOL;
    rt_fail(__FILE__, __LINE__, "bad dtype %s", s);
}

static const char *pyname(recur_dtype dt)
{
    switch (dt) {
    case RECUR_F32: return "float32";
    case RECUR_F64: return "float64";
    case RECUR_I32: return "int32";
    case RECUR_I64: return "int64";
    case RECUR_BOOL: return "bool";
    default: return "?";
    }
}

static recur_reuse parse_reuse(const char *s)
{
    if (!s || !strcmp(s, "none") || !strcmp(s, "false")) return RECUR_REUSE_INHERIT;
    if (!strcmp(s, "true")) return RECUR_REUSE;
    if (!strcmp(s, "auto")) return RECUR_AUTO_REUSE;
    rt_fail(__FILE__, __LINE__, "bad reuse %s", s);
}

static recur_shape parse_shape(const char *s)
{
    if (!strcmp(s, "none")) return RECUR_UNKNOWN_SHAPE;
    if (!strcmp(s, "scalar")) return RECUR_SCALAR;
    recur_shape sh = {0};
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ","))
        sh.dims[sh.rank++] = !strcmp(p, "?") ? -1 : atoll(p);
    return sh;
}

/* Escape \ and newlines as the golden does. */
static void escape(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (; *s && j + 3 < cap; s++) {
        if (*s == '\\') {
            out[j++] = '\\';
            out[j++] = '\\';
        } else if (*s == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = *s;
        }
    }
    out[j] = 0;
}

static void record_error(recur_graph *g, lines *out)
{
    const char *m = recur_graph_message(g);
    const char *cls = "ValueError";
    if (strstr(m, "If default_name is None then name_or_scope is required")) cls = "TypeError";
    if (!strncmp(m, "Improper nesting", 16)) cls = "RuntimeError";
    char esc[8192], line[8300];
    escape(m, esc, sizeof esc);
    snprintf(line, sizeof line, "error %s %s", cls, esc);
    lines_add(out, line);
    recur_graph_clear_error(g);
}

static void var_line(recur_tensor *v, lines *out)
{
    char s[128], line[512];
    recur_shape_str(recur_tensor_shape(v), s, sizeof s);
    snprintf(line, sizeof line, "var %s %s %s %d", recur_tensor_name(v), s, pyname(recur_tensor_dtype(v)),
             recur_variable_trainable(v) ? 1 : 0);
    lines_add(out, line);
}

typedef struct handle {
    char name[64];
    recur_scope *scope;
} handle;

static recur_scope *find_handle(handle *h, int nh, const char *name)
{
    for (int i = 0; i < nh; i++)
        if (!strcmp(h[i].name, name)) return h[i].scope;
    rt_fail(__FILE__, __LINE__, "unknown handle %s", name);
}

static void op_line(recur_tensor *t, recur_graph *g, lines *out)
{
    if (!t) {
        record_error(g, out);
        return;
    }
    char line[512];
    snprintf(line, sizeof line, "op %s", recur_op_name(recur_tensor_op(t)));
    lines_add(out, line);
}

static recur_tensor *zero_const(recur_graph *g, const char *name)
{
    recur_array *a = recur_array_scalar_f32(0.0f, NULL);
    recur_tensor *t = recur_constant(g, a, name);
    recur_array_free(a);
    return t;
}

static void run_program(const prog *p, lines *out)
{
    recur_graph *g = recur_graph_new();
    handle hs[32];
    int nh = 0;
    lines_add(out, "program");
    free(out->v[out->n - 1]);
    char hdr[200];
    snprintf(hdr, sizeof hdr, "program %s", p->name);
    out->v[out->n - 1] = strdup(hdr);
    for (int si = 0; si < p->n; si++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", p->stmts[si]);
        char *tok[MAXTOK];
        bool quoted[MAXTOK];
        int n = tokenize(buf, tok, quoted);
        if (!n) continue;
        int np = npos(tok, quoted, n);
        const char *cmd = tok[0];
        if (!strcmp(cmd, "vs") || !strcmp(cmd, "vs_obj")) {
            recur_scope_opts o = {0};
            o.reuse = parse_reuse(opt(tok, quoted, n, "reuse"));
            o.default_name = opt(tok, quoted, n, "default");
            o.initializer = gt_parse_init(opt(tok, quoted, n, "init"));
            o.dtype = parse_dtype(opt(tok, quoted, n, "dtype"));
            const char *aux = opt(tok, quoted, n, "aux");
            o.no_name_scope = aux && !strcmp(aux, "false");
            recur_scope *s;
            if (!strcmp(cmd, "vs")) {
                const char *name = np > 1 && !(strcmp(tok[1], "-") == 0 && !quoted[1]) ? tok[1] : NULL;
                s = recur_variable_scope_push_opts(g, name, &o);
            } else {
                s = recur_variable_scope_enter(g, find_handle(hs, nh, tok[1]), &o);
            }
            if (!s) {
                record_error(g, out);
                continue;
            }
            const char *as = opt(tok, quoted, n, "as");
            if (as) {
                snprintf(hs[nh].name, sizeof hs[nh].name, "%s", as);
                hs[nh++].scope = s;
            }
        } else if (!strcmp(cmd, "capture")) {
            snprintf(hs[nh].name, sizeof hs[nh].name, "%s", tok[1]);
            hs[nh++].scope = recur_variable_scope_current(g);
        } else if (!strcmp(cmd, "end_vs")) {
            recur_variable_scope_pop(g);
            if (!recur_graph_ok(g)) record_error(g, out);
        } else if (!strcmp(cmd, "end_ns")) {
            recur_name_scope_pop(g);
            if (!recur_graph_ok(g)) record_error(g, out);
        } else if (!strcmp(cmd, "ns")) {
            const char *name = np > 1 ? (quoted[1] || strcmp(tok[1], "-") ? tok[1] : NULL) : NULL;
            if (!recur_name_scope_push(g, name)) record_error(g, out);
        } else if (!strcmp(cmd, "reuse_vars")) {
            recur_scope_reuse_variables(recur_variable_scope_current(g));
        } else if (!strcmp(cmd, "gv")) {
            recur_variable_opts o = {0};
            o.dtype = parse_dtype(opt(tok, quoted, n, "dtype"));
            o.initializer = gt_parse_init(opt(tok, quoted, n, "init"));
            const char *tr = opt(tok, quoted, n, "trainable");
            o.not_trainable = tr && !strcmp(tr, "false");
            recur_tensor *v = recur_get_variable(g, tok[1], parse_shape(tok[2]), &o);
            if (v)
                var_line(v, out);
            else
                record_error(g, out);
        } else if (!strcmp(cmd, "const")) {
            op_line(zero_const(g, np > 1 ? tok[1] : NULL), g, out);
        } else if (!strcmp(cmd, "identity")) {
            recur_tensor *c = zero_const(g, NULL);
            op_line(c ? recur_identity(g, c, tok[1]) : NULL, g, out);
        } else if (!strcmp(cmd, "add")) {
            recur_tensor *a = zero_const(g, NULL), *b = zero_const(g, NULL);
            op_line(a && b ? recur_add(g, a, b) : NULL, g, out);
        } else if (!strcmp(cmd, "collection")) {
            const char *key = !strcmp(tok[1], "global") ? RECUR_GLOBAL_VARIABLES : RECUR_TRAINABLE_VARIABLES;
            recur_tensor *items[256];
            long k = recur_get_collection(g, key, np > 2 ? tok[2] : NULL, items, 256);
            if (k < 0) {
                record_error(g, out);
                continue;
            }
            char line[8192];
            int len = snprintf(line, sizeof line, "collection %s %ld", tok[1], k);
            for (long i = 0; i < k && i < 256; i++)
                len += snprintf(line + len, sizeof line - (size_t)len, " %s", recur_tensor_name(items[i]));
            lines_add(out, line);
        } else if (!strcmp(cmd, "scope_name")) {
            char ns[512], line[1200];
            snprintf(ns, sizeof ns, "%s", recur_name_scope_current(g));
            size_t l = strlen(ns);
            if (l && ns[l - 1] == '/') ns[l - 1] = 0;
            snprintf(line, sizeof line, "scope \"%s\" \"%s\"", recur_scope_name(recur_variable_scope_current(g)), ns);
            lines_add(out, line);
        } else if (!strcmp(cmd, "set_seed")) {
            recur_graph_set_seed(g, atoll(tok[1]));
        } else {
            rt_fail(__FILE__, __LINE__, "unknown statement %s", cmd);
        }
    }
    recur_tensor *vars[512];
    long k = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, 512);
    char line[64];
    snprintf(line, sizeof line, "vars %ld", k);
    lines_add(out, line);
    for (long i = 0; i < k; i++) var_line(vars[i], out);
    lines_add(out, "end");
    recur_graph_free(g);
}

/* recur's line matches TensorFlow's, or extends a TensorFlow error with "\n..." or
 * " Originally defined at:...". */
static bool line_matches(const char *tf, const char *rc)
{
    if (!strcmp(tf, rc)) return true;
    if (strncmp(tf, "error ", 6)) return false;
    size_t n = strlen(tf);
    if (strncmp(tf, rc, n)) return false;
    return !strncmp(rc + n, "\\n", 2) || !strncmp(rc + n, " Originally defined at:", 23);
}

static int load_programs(prog **out)
{
    char *text = rt_read_file(rt_path("tests/tf/scope_programs.txt"), NULL);
    prog *ps = NULL;
    int np = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        if (!strncmp(p, "program ", 8)) {
            ps = realloc(ps, (size_t)(np + 1) * sizeof *ps);
            memset(&ps[np], 0, sizeof ps[np]);
            snprintf(ps[np].name, sizeof ps[np].name, "%s", p + 8);
            np++;
            continue;
        }
        prog *cur = &ps[np - 1];
        cur->stmts = realloc(cur->stmts, (size_t)(cur->n + 1) * sizeof *cur->stmts);
        cur->stmts[cur->n++] = strdup(p);
    }
    free(text);
    *out = ps;
    return np;
}

TEST(scope_catalogue_matches_tensorflow)
{
    prog *ps;
    int np = load_programs(&ps);
    ASSERT_TRUE(np >= 40);
    char *gold = rt_read_file(rt_path("tests/golden/scopes.golden"), NULL);
    lines g = {0};
    for (char *line = strtok(gold, "\n"); line; line = strtok(NULL, "\n")) lines_add(&g, line);
    lines r = {0};
    for (int i = 0; i < np; i++) run_program(&ps[i], &r);
    int failures = 0;
    for (int i = 0, prog_start = 0; i < g.n || i < r.n; i++) {
        const char *tl = i < g.n ? g.v[i] : "(end of golden)";
        const char *rl = i < r.n ? r.v[i] : "(end of recur output)";
        if (!strncmp(tl, "program ", 8)) prog_start = i;
        if (!line_matches(tl, rl)) {
            fprintf(stderr, "  mismatch in %s (line %d):\n    tensorflow: %s\n    recur:      %s\n", g.v[prog_start],
                    i - prog_start, tl, rl);
            failures++;
            /* resynchronise on the next program */
            int gi = i, ri = i;
            while (gi < g.n && strcmp(g.v[gi], "end")) gi++;
            while (ri < r.n && strcmp(r.v[ri], "end")) ri++;
            if (gi != ri) {
                fprintf(stderr, "  (program lengths differ; stopping)\n");
                break;
            }
            i = gi;
        }
    }
    printf("  %d programs, %d golden lines, %d mismatching programs\n", np, g.n, failures);
    ASSERT_EQ_INT(failures, 0);
    lines_free(&g);
    lines_free(&r);
    free(gold);
    for (int i = 0; i < np; i++) {
        for (int j = 0; j < ps[i].n; j++) free(ps[i].stmts[j]);
        free(ps[i].stmts);
    }
    free(ps);
}

RUN_TESTS(T(scope_catalogue_matches_tensorflow))
