/*
 * rnn_dsl.c - interpreter of the RNN program DSL (tests/tf/README.md) on recur's C API.
 */
#include "rnn_dsl.h"
#include "runner.h"

#include <dirent.h>

#define MAXTOK 48

typedef struct cell_ent {
    char id[32];
    recur_cell *c;
} cell_ent;
typedef struct handle_ent {
    char name[32];
    recur_scope *s;
} handle_ent;
typedef struct label_ent {
    char name[32];
    recur_tensor *t;
} label_ent;

typedef struct ctx {
    rd_prog *p;
    cell_ent cells[32];
    int ncells;
    handle_ent handles[16];
    int nhandles;
    label_ent labels[16];
    int nlabels;
    recur_tensor *seqlen;
    int64_t B, T, D;
    bool time_major, unknown_batch;
    recur_array *owned[RD_MAX];
    int nowned;
} ctx;

static int tokenize(char *line, char **tok)
{
    int n = 0;
    for (char *p = strtok(line, " \t"); p && n < MAXTOK; p = strtok(NULL, " \t")) {
        if (*p == '#') break;
        tok[n++] = p;
    }
    return n;
}

static const char *opt(char **tok, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 1; i < n; i++)
        if (!strncmp(tok[i], key, kl) && tok[i][kl] == '=') return tok[i] + kl + 1;
    return NULL;
}

static int npos(char **tok, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!strchr(tok[i], '=')) k = i + 1;
    return k;
}

static recur_cell *find_cell(ctx *c, const char *id)
{
    for (int i = 0; i < c->ncells; i++)
        if (!strcmp(c->cells[i].id, id)) return c->cells[i].c;
    fprintf(stderr, "rnn dsl: unknown cell %s\n", id);
    return NULL;
}

static recur_activation parse_act(const char *s)
{
    if (!s || !strcmp(s, "tanh")) return RECUR_ACT_TANH;
    if (!strcmp(s, "relu")) return RECUR_ACT_RELU;
    if (!strcmp(s, "sigmoid")) return RECUR_ACT_SIGMOID;
    return RECUR_ACT_IDENTITY;
}

static void add_result(ctx *c, const char *prefix, const char *name, recur_tensor *t)
{
    rd_prog *p = c->p;
    if (p->nresults >= RD_MAX) return;
    snprintf(p->results[p->nresults].name, sizeof p->results[0].name, "%s%s", prefix, name);
    p->results[p->nresults++].t = t;
}

static void add_feed(ctx *c, const char *name, recur_tensor *t)
{
    rd_prog *p = c->p;
    if (p->nfeeds >= RD_MAX) return;
    snprintf(p->feeds[p->nfeeds].name, sizeof p->feeds[0].name, "%s", name);
    p->feeds[p->nfeeds++].t = t;
}

static bool make_cell(ctx *c, char **tok, int n)
{
    recur_graph *g = c->p->g;
    const char *id = tok[1], *kind = tok[2];
    recur_cell *cell = NULL;
    const char *u = opt(tok, n, "units");
    int64_t units = u ? atoll(u) : 0;
    recur_cell_opts o = {.name = opt(tok, n, "name"), .activation = parse_act(opt(tok, n, "activation"))};
    const char *fb = opt(tok, n, "forget_bias"), *sit = opt(tok, n, "state_is_tuple");
    if (fb) {
        o.forget_bias = (float)atof(fb);
        o.forget_bias_set = true;
    }
    o.state_not_tuple = sit && !strcmp(sit, "0");
    if (!strcmp(kind, "basic_rnn")) {
        cell = recur_basic_rnn_cell(g, units, &o);
    } else if (!strcmp(kind, "basic_lstm")) {
        cell = recur_basic_lstm_cell(g, units, &o);
    } else if (!strcmp(kind, "lstm")) {
        recur_lstm_opts lo = {.base = o};
        const char *v;
        lo.use_peepholes = (v = opt(tok, n, "peepholes")) && atoi(v);
        if ((v = opt(tok, n, "cell_clip"))) lo.cell_clip = atof(v);
        if ((v = opt(tok, n, "num_proj"))) lo.num_proj = atoll(v);
        if ((v = opt(tok, n, "proj_clip"))) lo.proj_clip = atof(v);
        cell = recur_lstm_cell(g, units, &lo);
    } else if (!strcmp(kind, "gru")) {
        cell = recur_gru_cell(g, units, &o);
    } else if (!strcmp(kind, "gru_v2")) {
        cell = recur_gru_cell_v2(g, units, &o);
    } else if (!strcmp(kind, "multi")) {
        recur_cell *cs[16];
        int k = 0;
        for (int i = 3; i < npos(tok, n); i++) cs[k++] = find_cell(c, tok[i]);
        cell = recur_multi_rnn_cell(g, cs, k, &(recur_cell_opts){.state_not_tuple = o.state_not_tuple});
    } else if (!strcmp(kind, "dropout")) {
        const char *ik = opt(tok, n, "input_keep"), *ok = opt(tok, n, "output_keep"), *sk = opt(tok, n, "state_keep");
        cell = recur_dropout_wrapper(g, find_cell(c, tok[3]),
                                     &(recur_dropout_opts){.input_keep_prob = ik ? atof(ik) : 1,
                                                           .output_keep_prob = ok ? atof(ok) : 1,
                                                           .state_keep_prob = sk ? atof(sk) : 1});
    } else if (!strcmp(kind, "residual")) {
        cell = recur_residual_wrapper(g, find_cell(c, tok[3]));
    }
    if (!cell) return false;
    snprintf(c->cells[c->ncells].id, sizeof c->cells[0].id, "%s", id);
    c->cells[c->ncells++].c = cell;
    return true;
}

/* Initial states for one cell: zeros (explicit zero_state) or placeholders fed from the golden. */
static bool initial_state(ctx *c, recur_cell *cell, const char *mode, const char *prefix, const char *kind, int *counter,
                          recur_tensor **out)
{
    recur_graph *g = c->p->g;
    int n = recur_cell_num_state(cell);
    if (!strcmp(mode, "zeros")) return recur_cell_zero_state(g, cell, c->B, NULL, RECUR_F32, out);
    for (int i = 0; i < n; i++) {
        out[i] = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(c->unknown_batch ? -1 : c->B, recur_cell_state_size(cell, i)), NULL);
        char name[160];
        snprintf(name, sizeof name, "%s%s/%d", prefix, kind, (*counter)++);
        add_feed(c, name, out[i]);
    }
    return recur_graph_ok(g);
}

static void set_label(ctx *c, const char *label, recur_tensor *t)
{
    if (!label) return;
    snprintf(c->labels[c->nlabels].name, sizeof c->labels[0].name, "%s", label);
    c->labels[c->nlabels++].t = t;
}

static bool run_stmt(ctx *c, char **tok, int n)
{
    recur_graph *g = c->p->g;
    const char *kind = tok[1], *label = opt(tok, n, "as"), *in_label = opt(tok, n, "input");
    const char *mode = opt(tok, n, "initial_state");
    char prefix[64] = "";
    if (label) snprintf(prefix, sizeof prefix, "%s/", label);
    recur_tensor *x = c->p->input;
    if (in_label)
        for (int i = 0; i < c->nlabels; i++)
            if (!strcmp(c->labels[i].name, in_label)) x = c->labels[i].t;
    const char *scope = opt(tok, n, "scope"), *sobj = opt(tok, n, "scope_obj");
    recur_scope *so = NULL;
    for (int i = 0; sobj && i < c->nhandles; i++)
        if (!strcmp(c->handles[i].name, sobj)) so = c->handles[i].s;
    int tax = c->time_major ? 0 : 1;
    char nm[64];
    if (!strcmp(kind, "dynamic") || !strcmp(kind, "static")) {
        recur_cell *cell = find_cell(c, tok[2]);
        recur_tensor *init[RECUR_MAX_STATE];
        int cnt = 0;
        if (mode && !initial_state(c, cell, mode, prefix, "initial_state", &cnt, init)) return false;
        recur_rnn_opts o = {.sequence_length = c->seqlen, .initial_state = mode ? init : NULL, .dtype = RECUR_F32,
                            .time_major = c->time_major, .scope = scope, .scope_obj = so};
        recur_rnn_out r;
        if (!strcmp(kind, "dynamic")) {
            r = recur_dynamic_rnn(g, cell, x, &o);
            if (!r.outputs) return false;
            add_result(c, prefix, "output", r.outputs);
            set_label(c, label, r.outputs);
        } else {
            recur_tensor *steps[64], *outs[64];
            int T = (int)recur_tensor_shape(x).dims[tax];
            if (!recur_unstack(g, x, tax, steps, 64)) return false;
            r = recur_static_rnn(g, cell, steps, T, outs, &o);
            if (!r.outputs) return false;
            for (int t = 0; t < T; t++) {
                snprintf(nm, sizeof nm, "output_%d", t);
                add_result(c, prefix, nm, outs[t]);
            }
            set_label(c, label, recur_stack(g, outs, T, tax));
        }
        for (int i = 0; i < r.num_state; i++) {
            snprintf(nm, sizeof nm, "state/%d", i);
            add_result(c, prefix, nm, r.state[i]);
        }
        return true;
    }
    recur_cell *fw[8], *bw[8];
    int nl = 0;
    if (!strcmp(kind, "stack_bidirectional")) {
        char a[256], b[256];
        snprintf(a, sizeof a, "%s", tok[2]);
        snprintf(b, sizeof b, "%s", tok[3]);
        for (char *p = strtok(a, ","); p; p = strtok(NULL, ",")) fw[nl++] = find_cell(c, p);
        nl = 0;
        for (char *p = strtok(b, ","); p; p = strtok(NULL, ",")) bw[nl++] = find_cell(c, p);
    } else {
        fw[0] = find_cell(c, tok[2]);
        bw[0] = find_cell(c, tok[3]);
        nl = 1;
    }
    recur_tensor *ifw[RECUR_MAX_STATE], *ibw[RECUR_MAX_STATE];
    int cf = 0, cb = 0, of = 0, ob = 0;
    for (int l = 0; mode && l < nl; l++) {
        if (!initial_state(c, fw[l], mode, prefix, "initial_state_fw", &cf, ifw + of) ||
            !initial_state(c, bw[l], mode, prefix, "initial_state_bw", &cb, ibw + ob))
            return false;
        of += recur_cell_num_state(fw[l]);
        ob += recur_cell_num_state(bw[l]);
    }
    recur_birnn_opts o = {.sequence_length = c->seqlen, .initial_state_fw = mode ? ifw : NULL,
                          .initial_state_bw = mode ? ibw : NULL, .dtype = RECUR_F32, .time_major = c->time_major,
                          .scope = scope};
    recur_birnn_out r;
    if (!strcmp(kind, "bidirectional")) {
        r = recur_bidirectional_dynamic_rnn(g, fw[0], bw[0], x, &o);
        if (!r.outputs_fw) return false;
        add_result(c, prefix, "output_fw", r.outputs_fw);
        add_result(c, prefix, "output_bw", r.outputs_bw);
        set_label(c, label, recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2));
    } else if (!strcmp(kind, "stack_bidirectional")) {
        r = recur_stack_bidirectional_dynamic_rnn(g, fw, bw, nl, x, &o);
        if (!r.outputs_fw) return false;
        add_result(c, prefix, "output", r.outputs_fw);
        set_label(c, label, r.outputs_fw);
    } else {
        recur_tensor *steps[64], *outs[64];
        int T = (int)recur_tensor_shape(x).dims[tax];
        if (!recur_unstack(g, x, tax, steps, 64)) return false;
        r = recur_static_bidirectional_rnn(g, fw[0], bw[0], steps, T, outs, &o);
        if (!r.outputs_fw) return false;
        for (int t = 0; t < T; t++) {
            snprintf(nm, sizeof nm, "output_%d", t);
            add_result(c, prefix, nm, outs[t]);
        }
        set_label(c, label, recur_stack(g, outs, T, tax));
    }
    for (int i = 0; i < r.num_state_fw; i++) {
        snprintf(nm, sizeof nm, "state_fw/%d", i);
        add_result(c, prefix, nm, r.state_fw[i]);
    }
    for (int i = 0; i < r.num_state_bw; i++) {
        snprintf(nm, sizeof nm, "state_bw/%d", i);
        add_result(c, prefix, nm, r.state_bw[i]);
    }
    return true;
}

rd_prog *rd_build(const char *path)
{
    rd_prog *p = calloc(1, sizeof *p);
    p->gf = gt_load(path);
    const char *prog = p->gf ? gt_meta(p->gf, "program") : NULL;
    if (!prog) {
        fprintf(stderr, "rnn dsl: cannot read %s\n", path);
        rd_free(p);
        return NULL;
    }
    p->g = recur_graph_new();
    ctx *c = calloc(1, sizeof *c);
    c->p = p;
    char *text = strdup(prog), *save = NULL;
    bool ok = true;
    for (char *stmt = strtok_r(text, ";", &save); ok && stmt; stmt = strtok_r(NULL, ";", &save)) {
        char buf[1024], *tok[MAXTOK];
        snprintf(buf, sizeof buf, "%s", stmt);
        int n = tokenize(buf, tok);
        if (!n) continue;
        if (!strcmp(tok[0], "program")) {
            snprintf(p->name, sizeof p->name, "%s", tok[1]);
        } else if (!strcmp(tok[0], "input")) {
            c->B = atoll(tok[1]);
            c->T = atoll(tok[2]);
            c->D = atoll(tok[3]);
            const char *tm = opt(tok, n, "time_major"), *ut = opt(tok, n, "unknown_time"), *ub = opt(tok, n, "unknown_batch");
            c->time_major = tm && atoi(tm);
            c->unknown_batch = ub && atoi(ub);
            int64_t T = ut && atoi(ut) ? -1 : c->T, B = c->unknown_batch ? -1 : c->B;
            recur_shape s = c->time_major ? RECUR_SHAPE(T, B, c->D) : RECUR_SHAPE(B, T, c->D);
            p->input = recur_placeholder(p->g, RECUR_F32, s, "input");
            add_feed(c, "input", p->input);
        } else if (!strcmp(tok[0], "seqlen")) {
            int32_t v[64];
            int k = 0;
            for (int i = 1; i < n && k < 64; i++) v[k++] = atoi(tok[i]);
            recur_array *a = recur_array_from(RECUR_I32, RECUR_SHAPE(k), v, NULL);
            c->seqlen = recur_constant(p->g, a, "seqlen");
            recur_array_free(a);
        } else if (!strcmp(tok[0], "cell")) {
            ok = make_cell(c, tok, n);
        } else if (!strcmp(tok[0], "scope")) {
            const char *r = opt(tok, n, "reuse"), *as = opt(tok, n, "as");
            recur_reuse re = !r ? RECUR_REUSE_INHERIT : !strcmp(r, "auto") ? RECUR_AUTO_REUSE : RECUR_REUSE;
            recur_scope *s = recur_variable_scope_push(p->g, tok[1], re);
            ok = s != NULL;
            if (s && as) {
                snprintf(c->handles[c->nhandles].name, sizeof c->handles[0].name, "%s", as);
                c->handles[c->nhandles++].s = s;
            }
        } else if (!strcmp(tok[0], "end_scope")) {
            recur_variable_scope_pop(p->g);
        } else if (!strcmp(tok[0], "run")) {
            ok = run_stmt(c, tok, n);
        } else {
            fprintf(stderr, "rnn dsl: unknown statement %s\n", tok[0]);
            ok = false;
        }
        ok = ok && recur_graph_ok(p->g);
    }
    free(text);
    for (int i = 0; i < c->nowned; i++) recur_array_free(c->owned[i]);
    free(c);
    if (!ok || !recur_graph_ok(p->g)) {
        fprintf(stderr, "rnn dsl: building %s failed: %s\n", p->name, recur_graph_message(p->g));
        rd_free(p);
        return NULL;
    }
    return p;
}

void rd_free(rd_prog *p)
{
    if (!p) return;
    recur_graph_free(p->g);
    gt_free(p->gf);
    free(p);
}

int rd_feeds(rd_prog *p, recur_feed *out, recur_array **keep)
{
    int n = 0;
    for (int i = 0; i < p->nfeeds; i++) {
        const gt_tensor *t = gt_find(p->gf, p->feeds[i].name);
        if (!t) {
            fprintf(stderr, "rnn dsl: golden %s lacks %s\n", p->name, p->feeds[i].name);
            continue;
        }
        keep[n] = gt_array(t);
        out[n] = (recur_feed){p->feeds[i].t, keep[n]};
        n++;
    }
    return n;
}

recur_session *rd_session(rd_prog *p, const recur_session_opts *opts)
{
    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(p->g, opts, st);
    recur_tensor *vars[256];
    long nv = recur_get_collection(p->g, RECUR_GLOBAL_VARIABLES, NULL, vars, 256);
    for (long i = 0; s && i < nv; i++) {
        const gt_tensor *t = gt_find(p->gf, recur_variable_name(vars[i]));
        recur_array *a = t ? gt_array(t) : NULL;
        if (!a || recur_session_set_variable(s, vars[i], a, st) != RECUR_OK) {
            fprintf(stderr, "rnn dsl: %s: cannot load %s: %s\n", p->name, recur_variable_name(vars[i]),
                    recur_status_message(st));
            recur_session_free(s);
            s = NULL;
        }
        recur_array_free(a);
    }
    recur_status_free(st);
    return s;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **rd_list(void)
{
    DIR *d = opendir(rt_path("tests/golden/rnn"));
    if (!d) return NULL;
    char **l = calloc(512, sizeof *l);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 511) {
        size_t len = strlen(e->d_name);
        if (len > 7 && !strcmp(e->d_name + len - 7, ".golden")) {
            char buf[1024];
            snprintf(buf, sizeof buf, "%s/%s", rt_path("tests/golden/rnn"), e->d_name);
            l[n++] = strdup(buf);
        }
    }
    closedir(d);
    qsort(l, (size_t)n, sizeof *l, cmp);
    return l;
}

void rd_list_free(char **l)
{
    for (int i = 0; l && l[i]; i++) free(l[i]);
    free(l);
}
