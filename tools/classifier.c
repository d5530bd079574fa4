/*
 * classifier.c - the text classifier of `recur train / predict / eval`.
 *
 * Data: label<TAB>text lines, whitespace-tokenised. Vocabulary from the training file (id 0
 * padding, 1 unknown). Model, as the tf.compat.v1 program it mirrors:
 *
 *   emb = get_variable("embedding", [V, E]); x = dropout(gather(emb, ids))
 *   (fw, bw), states = bidirectional_dynamic_rnn(LSTM(H), LSTM(H), x, sequence_length=lengths)
 *   features = max over valid time steps of concat(fw, bw)   (or the final states)
 *   logits = dense(dropout(features), C)                     ("dense/kernel", "dense/bias")
 *   loss = mean(sparse_softmax_cross_entropy(labels, logits)), Adam
 *
 * A model directory holds config.txt, vocab.txt and TensorFlow checkpoints (model.ckpt-<step>).
 */
#include "classifier.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

clf_config clf_defaults(void)
{
    return (clf_config){.embed = 128, .hidden = 128, .max_len = 80, .keep = 0.5, .lr = 0.002, .lr_decay = 0.8,
                        .clip = 5.0, .epochs = 4, .batch = 32, .min_count = 1, .seed = 1};
}

/* ================================================================== data */

typedef struct sentence {
    char **tok;
    int ntok;
    int label;
} sentence;

struct clf_data {
    sentence *s;
    int64_t n, cap;
};

int64_t clf_data_size(const clf_data *d) { return d ? d->n : 0; }

void clf_data_free(clf_data *d)
{
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) {
        for (int j = 0; j < d->s[i].ntok; j++) free(d->s[i].tok[j]);
        free(d->s[i].tok);
    }
    free(d->s);
    free(d);
}

static int tokenize(char *text, char ***out)
{
    int n = 0, cap = 16;
    char **t = malloc((size_t)cap * sizeof *t);
    for (char *p = strtok(text, " \t\r\n"); p; p = strtok(NULL, " \t\r\n")) {
        if (n == cap) t = realloc(t, (size_t)(cap *= 2) * sizeof *t);
        t[n++] = strdup(p);
    }
    *out = t;
    return n;
}

clf_data *clf_load(const char *path, bool labelled, FILE *log)
{
    FILE *f = path ? fopen(path, "r") : stdin;
    if (!f) {
        fprintf(stderr, "recur: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    const char *name = path ? path : "<stdin>";
    clf_data *d = calloc(1, sizeof *d);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, skipped = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        char *text = line;
        int label = -1;
        char *tab = strchr(line, '\t');
        if (labelled || tab) {
            if (lineno == 1 && tab && !strncmp(line, "label\t", 6)) continue; /* header */
            char *end = NULL;
            long v = tab ? strtol(line, &end, 10) : 0;
            if (!tab || end != tab || v < 0 || v > 1000000) {
                if (labelled) {
                    if (!len)
                        fprintf(log, "%s:%ld: empty line, skipped\n", name, lineno);
                    else
                        fprintf(log, "%s:%ld: expected <label><TAB><text> with a non-negative integer label, skipped\n", name,
                                lineno);
                    skipped++;
                    continue;
                }
            } else {
                label = (int)v;
                text = tab + 1;
            }
        }
        char **tok;
        int nt = tokenize(text, &tok);
        if (!nt) {
            free(tok);
            fprintf(log, "%s:%ld: no words, skipped\n", name, lineno);
            skipped++;
            continue;
        }
        if (d->n == d->cap) {
            d->cap = d->cap ? d->cap * 2 : 1024;
            d->s = realloc(d->s, (size_t)d->cap * sizeof *d->s);
        }
        d->s[d->n++] = (sentence){tok, nt, label};
    }
    free(line);
    if (path) fclose(f);
    if (skipped) fprintf(log, "%s: %ld line%s skipped\n", name, skipped, skipped == 1 ? "" : "s");
    if (!d->n) {
        fprintf(stderr, "recur: %s holds no usable line\n", name);
        clf_data_free(d);
        return NULL;
    }
    return d;
}

/* ================================================================== vocabulary */

typedef struct vocab {
    char **words; /* by id; 0 and 1 are <pad> and <unk> */
    int64_t n;
    /* open-addressing index */
    int64_t *slots;
    int64_t cap;
} vocab;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int64_t vocab_find(const vocab *v, const char *w)
{
    for (uint64_t i = hash(w) & (uint64_t)(v->cap - 1);; i = (i + 1) & (uint64_t)(v->cap - 1)) {
        int64_t id = v->slots[i];
        if (id < 0) return -1;
        if (!strcmp(v->words[id], w)) return id;
    }
}

static void vocab_index(vocab *v)
{
    v->cap = 16;
    while (v->cap < v->n * 2) v->cap *= 2;
    v->slots = malloc((size_t)v->cap * sizeof *v->slots);
    for (int64_t i = 0; i < v->cap; i++) v->slots[i] = -1;
    for (int64_t id = 0; id < v->n; id++) {
        uint64_t i = hash(v->words[id]) & (uint64_t)(v->cap - 1);
        while (v->slots[i] >= 0) i = (i + 1) & (uint64_t)(v->cap - 1);
        v->slots[i] = id;
    }
}

static void vocab_free(vocab *v)
{
    for (int64_t i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->slots);
}

typedef struct wc {
    const char *w;
    long c;
} wc;

static int wc_cmp(const void *a, const void *b)
{
    const wc *x = a, *y = b;
    return x->c != y->c ? (x->c < y->c ? 1 : -1) : strcmp(x->w, y->w);
}

/* Words of the training data by descending count (ties alphabetical), count >= min_count. */
static void vocab_build(vocab *v, const clf_data *d, int min_count)
{
    int64_t total = 0;
    for (int64_t s = 0; s < d->n; s++) total += d->s[s].ntok;
    vocab all = {.cap = 16};
    while (all.cap < 2 * total + 2) all.cap *= 2;
    all.slots = malloc((size_t)all.cap * sizeof *all.slots);
    all.words = malloc((size_t)(total + 1) * sizeof *all.words);
    long *counts = calloc((size_t)(total + 1), sizeof *counts);
    for (int64_t i = 0; i < all.cap; i++) all.slots[i] = -1;
    for (int64_t s = 0; s < d->n; s++)
        for (int j = 0; j < d->s[s].ntok; j++) {
            const char *w = d->s[s].tok[j];
            int64_t id = vocab_find(&all, w);
            if (id < 0) {
                id = all.n++;
                all.words[id] = (char *)w;
                uint64_t k = hash(w) & (uint64_t)(all.cap - 1);
                while (all.slots[k] >= 0) k = (k + 1) & (uint64_t)(all.cap - 1);
                all.slots[k] = id;
            }
            counts[id]++;
        }
    wc *list = malloc((size_t)(all.n + 1) * sizeof *list);
    for (int64_t i = 0; i < all.n; i++) list[i] = (wc){all.words[i], counts[i]};
    qsort(list, (size_t)all.n, sizeof *list, wc_cmp);
    v->words = malloc((size_t)(all.n + 2) * sizeof *v->words);
    v->words[0] = strdup("<pad>");
    v->words[1] = strdup("<unk>");
    v->n = 2;
    for (int64_t i = 0; i < all.n; i++)
        if (list[i].c >= min_count) v->words[v->n++] = strdup(list[i].w);
    vocab_index(v);
    free(list);
    free(counts);
    free(all.words);
    free(all.slots);
}

int64_t clf_vocab_check(const clf_data *d, int min_count)
{
    vocab v = {0};
    vocab_build(&v, d, min_count);
    int64_t n = v.n;
    for (int64_t s = 0; s < d->n; s++)
        for (int j = 0; j < d->s[s].ntok; j++) {
            int64_t id = vocab_find(&v, d->s[s].tok[j]);
            if ((id < 0 && min_count <= 1) || (id >= 0 && strcmp(v.words[id], d->s[s].tok[j]))) n = -1;
        }
    vocab_free(&v);
    return n;
}

static int write_lines(const char *path, char **lines, int64_t n)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int64_t i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    return fclose(f);
}

static bool vocab_load(vocab *v, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t c = 1024;
    v->words = malloc((size_t)c * sizeof *v->words);
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (v->n == c) v->words = realloc(v->words, (size_t)(c *= 2) * sizeof *v->words);
        v->words[v->n++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (v->n < 2) return false;
    vocab_index(v);
    return true;
}

/* ================================================================== config */

static int config_save(const clf_config *c, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "embed %lld\nhidden %lld\nclasses %lld\nvocab %lld\nmax_len %lld\ncell %s\nfeatures %s\n", (long long)c->embed,
            (long long)c->hidden, (long long)c->classes, (long long)c->vocab, (long long)c->max_len, c->gru ? "gru" : "lstm",
            c->final_state ? "final_state" : "max_pool");
    return fclose(f);
}

static bool config_load(clf_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char key[64], val[256];
    int n = 0;
    while (fscanf(f, "%63s %255s", key, val) == 2) {
        if (!strcmp(key, "embed")) c->embed = atoll(val), n++;
        else if (!strcmp(key, "hidden")) c->hidden = atoll(val), n++;
        else if (!strcmp(key, "classes")) c->classes = atoll(val), n++;
        else if (!strcmp(key, "vocab")) c->vocab = atoll(val), n++;
        else if (!strcmp(key, "max_len")) c->max_len = atoll(val), n++;
        else if (!strcmp(key, "cell")) c->gru = !strcmp(val, "gru");
        else if (!strcmp(key, "features")) c->final_state = !strcmp(val, "final_state");
    }
    fclose(f);
    return n == 5 && c->embed > 0 && c->hidden > 0 && c->classes > 1 && c->vocab > 2 && c->max_len > 0;
}

/* ================================================================== model */

typedef struct model {
    recur_graph *g;
    recur_tensor *ids, *lengths, *labels, *keep, *lr;
    recur_tensor *logits, *probs, *loss, *global_step;
    recur_op *train;
} model;

static bool build(model *m, const clf_config *c, bool training)
{
    recur_graph *g = m->g = recur_graph_new();
    if (!g) return false;
    recur_graph_set_seed(g, c->seed);
    m->ids = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1, -1), "ids");
    m->lengths = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "lengths");
    m->keep = recur_placeholder(g, RECUR_F32, RECUR_SCALAR, "keep_prob");
    recur_tensor *emb = recur_get_variable(g, "embedding", RECUR_SHAPE(c->vocab, c->embed),
                                           &(recur_variable_opts){.initializer = recur_random_uniform_initializer(-0.1, 0.1, 0)});
    recur_tensor *x = recur_dropout(g, recur_gather(g, emb, m->ids), m->keep, 0);
    recur_cell *fw = c->gru ? recur_gru_cell(g, c->hidden, NULL) : recur_basic_lstm_cell(g, c->hidden, NULL);
    recur_cell *bw = c->gru ? recur_gru_cell(g, c->hidden, NULL) : recur_basic_lstm_cell(g, c->hidden, NULL);
    recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, fw, bw, x,
                                                        &(recur_birnn_opts){.sequence_length = m->lengths, .dtype = RECUR_F32});
    recur_tensor *feat;
    if (c->final_state) {
        int h = c->gru ? 0 : 1;
        feat = recur_concat(g, (recur_tensor *[]){r.state_fw[h], r.state_bw[h]}, 2, 1);
    } else {
        /* max over the valid steps: padded steps get -1e9 */
        recur_tensor *out = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
        recur_tensor *mask = recur_sequence_mask(g, m->lengths, -1, RECUR_F32);
        recur_tensor *pen = recur_mul(g, recur_sub(g, mask, recur_scalar_f32(g, 1)), recur_scalar_f32(g, 1e9f));
        feat = recur_reduce_max(g, recur_add(g, out, recur_expand_dims(g, pen, 2)), (int[]){1}, 1, false);
    }
    feat = recur_dropout(g, feat, m->keep, 0);
    recur_variable_scope_push(g, "dense", RECUR_REUSE_INHERIT);
    recur_tensor *w = recur_get_variable(g, "kernel", RECUR_SHAPE(2 * c->hidden, c->classes), NULL);
    recur_tensor *b = recur_get_variable(g, "bias", RECUR_SHAPE(c->classes), &(recur_variable_opts){.initializer = recur_zeros_initializer()});
    recur_variable_scope_pop(g);
    m->logits = recur_bias_add(g, recur_matmul(g, feat, w, false, false), b);
    m->probs = recur_softmax(g, m->logits);
    if (training) {
        m->labels = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "labels");
        m->lr = recur_placeholder(g, RECUR_F32, RECUR_SCALAR, "learning_rate");
        m->loss = recur_reduce_mean(g, recur_sparse_softmax_cross_entropy_with_logits(g, m->labels, m->logits), NULL, 0, false);
        m->global_step = recur_get_or_create_global_step(g);
        recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_ADAM, .learning_rate_tensor = m->lr});
        recur_tensor *grads[16], *vars[16];
        int n = recur_optimizer_compute_gradients(opt, m->loss, NULL, 0, grads, vars, 16);
        if (n > 0 && c->clip > 0) recur_clip_by_global_norm(g, grads, n, c->clip, grads, NULL);
        if (n > 0) m->train = recur_optimizer_apply_gradients(opt, grads, vars, n, m->global_step);
    }
    if (!recur_graph_ok(g)) {
        fprintf(stderr, "recur: building the model failed: %s\n", recur_graph_message(g));
        return false;
    }
    return true;
}

/* ================================================================== batches */

typedef struct batch {
    recur_array *ids, *lengths, *labels;
} batch;

static void batch_free(batch *b)
{
    recur_array_free(b->ids);
    recur_array_free(b->lengths);
    recur_array_free(b->labels);
}

static int64_t word_id(const vocab *v, const char *w)
{
    int64_t id = vocab_find(v, w);
    return id < 0 ? 1 : id;
}

static bool make_batch(batch *b, const clf_data *d, const vocab *v, const int64_t *idx, int64_t n, int64_t max_len)
{
    int64_t T = 1;
    for (int64_t i = 0; i < n; i++) T = fmax(T, fmin(d->s[idx[i]].ntok, max_len));
    b->ids = recur_array_new(RECUR_I32, RECUR_SHAPE(n, T), NULL);
    b->lengths = recur_array_new(RECUR_I32, RECUR_SHAPE(n), NULL);
    b->labels = recur_array_new(RECUR_I32, RECUR_SHAPE(n), NULL);
    if (!b->ids || !b->lengths || !b->labels) return false;
    int32_t *ids = recur_array_i32(b->ids);
    for (int64_t i = 0; i < n; i++) {
        const sentence *s = &d->s[idx[i]];
        int64_t l = fmin(s->ntok, max_len);
        for (int64_t t = 0; t < l; t++) ids[i * T + t] = (int32_t)word_id(v, s->tok[t]);
        recur_array_i32(b->lengths)[i] = (int32_t)l;
        recur_array_i32(b->labels)[i] = s->label < 0 ? 0 : s->label;
    }
    return true;
}

/* xorshift64*: the training shuffle (deterministic for a seed) */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static const clf_data *g_sort_data;
static int by_length(const void *a, const void *b)
{
    int la = g_sort_data->s[*(const int64_t *)a].ntok, lb = g_sort_data->s[*(const int64_t *)b].ntok;
    return la != lb ? la - lb : (*(const int64_t *)a < *(const int64_t *)b ? -1 : 1);
}

/* Shuffle, then sort by length inside chunks of 20 batches (less padding, same randomness of
 * batch composition at the chunk level), then shuffle the order of the batches. */
static int64_t plan_batches(const clf_data *d, int bsize, uint64_t *rng, int64_t *order, int64_t *starts)
{
    int64_t n = d->n;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(rng) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    g_sort_data = d;
    int64_t chunk = (int64_t)bsize * 20;
    for (int64_t i = 0; i < n; i += chunk) qsort(order + i, (size_t)(n - i < chunk ? n - i : chunk), sizeof *order, by_length);
    int64_t nb = 0;
    for (int64_t i = 0; i < n; i += bsize) starts[nb++] = i;
    for (int64_t i = nb - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(rng) % (uint64_t)(i + 1)), t = starts[i];
        starts[i] = starts[j];
        starts[j] = t;
    }
    return nb;
}

/* ================================================================== evaluation */

static int64_t argmax_row(const float *p, int64_t c)
{
    int64_t best = 0;
    for (int64_t j = 1; j < c; j++)
        if (p[j] > p[best]) best = j;
    return best;
}

/* Probabilities for every sentence of d (in order); caller frees. */
static float *predict_all(recur_session *s, const model *m, const clf_data *d, const vocab *v, const clf_config *c)
{
    float *probs = malloc((size_t)(d->n * c->classes + 1) * sizeof *probs);
    int64_t *idx = malloc((size_t)(d->n + 1) * sizeof *idx);
    recur_array *one = recur_array_scalar_f32(1.0f, NULL);
    recur_status *st = recur_status_new();
    for (int64_t i = 0; i < d->n; i++) idx[i] = i;
    for (int64_t i = 0; probs && i < d->n; i += 64) {
        int64_t n = d->n - i < 64 ? d->n - i : 64;
        batch b = {0};
        recur_array *out = NULL;
        if (!make_batch(&b, d, v, idx + i, n, c->max_len) ||
            recur_session_run(s, (recur_feed[]){{m->ids, b.ids}, {m->lengths, b.lengths}, {m->keep, one}}, 3,
                              (recur_tensor *const *)&m->probs, &out, 1, NULL, 0, st) != RECUR_OK) {
            fprintf(stderr, "recur: prediction failed: %s\n", recur_status_message(st));
            free(probs);
            probs = NULL;
        } else {
            memcpy(probs + i * c->classes, recur_array_f32(out), (size_t)(n * c->classes) * sizeof *probs);
        }
        recur_array_free(out);
        batch_free(&b);
    }
    free(idx);
    recur_array_free(one);
    recur_status_free(st);
    return probs;
}

static double accuracy(recur_session *s, const model *m, const clf_data *d, const vocab *v, const clf_config *c)
{
    float *p = predict_all(s, m, d, v, c);
    if (!p) return -1;
    int64_t right = 0;
    for (int64_t i = 0; i < d->n; i++) right += argmax_row(p + i * c->classes, c->classes) == d->s[i].label;
    free(p);
    return (double)right / (double)d->n;
}

/* ================================================================== train */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress_line(bool tty, int epoch, int epochs, int64_t done, int64_t total, double elapsed, double loss)
{
    double rate = elapsed > 0 ? (double)done / elapsed : 0, eta = rate > 0 ? (double)(total - done) / rate : 0;
    if (!tty) return;
    int width = 30, fill = total ? (int)(width * done / total) : width;
    fprintf(stderr, "\repoch %d/%d [", epoch, epochs);
    for (int i = 0; i < width; i++) fputc(i < fill ? '=' : i == fill ? '>' : ' ', stderr);
    fprintf(stderr, "] %lld/%lld  %.1f batches/s  loss %.4f  ETA %.0fs   ", (long long)done, (long long)total, rate, loss, eta);
    fflush(stderr);
}

/* Re-run a batch that produced a non-finite loss with numeric checks on, to name the op. */
static void explain_nan(model *m, recur_session *train_s, recur_feed *feeds, int nf)
{
    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(m->g, &(recur_session_opts){.check_numerics = true}, st);
    recur_tensor *vars[64];
    long nv = recur_get_collection(m->g, RECUR_GLOBAL_VARIABLES, NULL, vars, 64);
    for (long i = 0; s && i < nv; i++) {
        recur_array *a = recur_session_get_variable(train_s, vars[i], st);
        if (a) recur_session_set_variable(s, vars[i], a, st);
        recur_array_free(a);
    }
    recur_array *out = NULL;
    if (s && recur_session_run(s, feeds, nf, &m->loss, &out, 1, &m->train, 1, st) != RECUR_OK)
        fprintf(stderr, "recur: the first non-finite value: %s\n", recur_status_message(st));
    recur_array_free(out);
    recur_session_free(s);
    recur_status_free(st);
}

int clf_train(const clf_config *cfg_in, const char *train_path, const char *dev_path, const char *dir, bool progress)
{
    clf_config c = *cfg_in;
    int rc = 1;
    clf_data *train = clf_load(train_path, true, stderr), *dev = dev_path ? clf_load(dev_path, true, stderr) : NULL;
    vocab v = {0};
    model m = {0};
    recur_status *st = recur_status_new();
    recur_session *s = NULL;
    recur_saver *saver = NULL;
    recur_summary_writer *sw = NULL;
    int64_t *order = NULL, *starts = NULL;
    if (!train || (dev_path && !dev)) goto done;
    int maxlab = 0;
    for (int64_t i = 0; i < train->n; i++) maxlab = train->s[i].label > maxlab ? train->s[i].label : maxlab;
    if (!c.classes) c.classes = maxlab + 1;
    if (c.classes < 2) {
        fprintf(stderr, "recur: %s has a single class; a classifier needs at least two\n", train_path);
        goto done;
    }
    for (int64_t i = 0; dev && i < dev->n; i++)
        if (dev->s[i].label >= c.classes) {
            fprintf(stderr, "recur: %s: label %d of example %lld is outside the %lld classes of the training data\n", dev_path,
                    dev->s[i].label, (long long)i + 1, (long long)c.classes);
            goto done;
        }
    vocab_build(&v, train, c.min_count);
    c.vocab = v.n;
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "recur: cannot create %s: %s\n", dir, strerror(errno));
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (write_lines(path, v.words, v.n)) {
        fprintf(stderr, "recur: cannot write %s\n", path);
        goto done;
    }
    snprintf(path, sizeof path, "%s/config.txt", dir);
    if (config_save(&c, path)) {
        fprintf(stderr, "recur: cannot write %s\n", path);
        goto done;
    }
    if (!build(&m, &c, true)) goto done;
    s = recur_session_new(m.g, &(recur_session_opts){.num_threads = c.threads}, st);
    saver = s ? recur_saver_new(m.g, &(recur_saver_opts){.max_to_keep = 2}) : NULL;
    if (!s || !saver) {
        fprintf(stderr, "recur: %s%s\n", recur_status_message(st), recur_graph_message(m.g));
        goto done;
    }
    /* resume from the latest checkpoint in dir, if any */
    char latest[4096];
    recur_status *ls = recur_status_new();
    if (recur_latest_checkpoint(dir, latest, sizeof latest, ls)) {
        if (recur_saver_restore(saver, s, latest, st) != RECUR_OK) {
            fprintf(stderr, "recur: cannot resume from %s: %s\n", latest, recur_status_message(st));
            recur_status_free(ls);
            goto done;
        }
        fprintf(stderr, "resumed from %s\n", latest);
    } else if (recur_session_run_target(s, recur_global_variables_initializer(m.g), st) != RECUR_OK) {
        fprintf(stderr, "recur: %s\n", recur_status_message(st));
        recur_status_free(ls);
        goto done;
    }
    recur_status_free(ls);
    if (c.logdir && !(sw = recur_summary_writer_new(c.logdir, st)))
        fprintf(stderr, "recur: no TensorBoard logs: %s\n", recur_status_message(st));
    fprintf(stderr, "training on %lld sentences (%lld words in the vocabulary, %lld classes), %s %lld+%lld units, embedding %lld\n",
            (long long)train->n, (long long)v.n, (long long)c.classes, c.gru ? "bidirectional GRU" : "bidirectional LSTM",
            (long long)c.hidden, (long long)c.hidden, (long long)c.embed);
    order = malloc((size_t)train->n * sizeof *order);
    starts = malloc((size_t)(train->n / c.batch + 2) * sizeof *starts);
    uint64_t rng = (uint64_t)c.seed * 0x9E3779B97F4A7C15ULL + 1;
    recur_array *keep = recur_array_scalar_f32((float)c.keep, NULL), *lr = recur_array_scalar_f32((float)c.lr, NULL);
    bool tty = progress && isatty(2);
    int64_t step = 0;
    for (int epoch = 1; epoch <= c.epochs; epoch++) {
        recur_array_f32(lr)[0] = (float)(c.lr * pow(c.lr_decay, epoch - 1));
        int64_t nb = plan_batches(train, c.batch, &rng, order, starts);
        double t0 = now(), loss_sum = 0;
        for (int64_t bi = 0; bi < nb; bi++) {
            int64_t start = starts[bi], n = train->n - start < c.batch ? train->n - start : c.batch;
            batch b = {0};
            if (!make_batch(&b, train, &v, order + start, n, c.max_len)) {
                fprintf(stderr, "recur: out of memory\n");
                batch_free(&b);
                goto done_loop;
            }
            recur_feed f[5] = {{m.ids, b.ids}, {m.lengths, b.lengths}, {m.labels, b.labels}, {m.keep, keep}, {m.lr, lr}};
            recur_array *lv = NULL;
            if (recur_session_run(s, f, 5, &m.loss, &lv, 1, &m.train, 1, st) != RECUR_OK) {
                fprintf(stderr, "\nrecur: training step %lld failed: %s\n", (long long)step + 1, recur_status_message(st));
                batch_free(&b);
                goto done_loop;
            }
            double l = recur_array_f32(lv)[0];
            recur_array_free(lv);
            step++;
            if (!isfinite(l)) {
                fprintf(stderr, "\nrecur: the loss is %s at step %lld (epoch %d, batch %lld); stopping\n", isnan(l) ? "NaN" : "infinite",
                        (long long)step, epoch, (long long)bi + 1);
                explain_nan(&m, s, f, 5);
                batch_free(&b);
                goto done_loop;
            }
            batch_free(&b);
            loss_sum += l;
            if (sw && step % 10 == 0) recur_summary_scalar(sw, "loss", l, step, NULL);
            if (tty && (bi % 5 == 0 || bi == nb - 1)) progress_line(tty, epoch, c.epochs, bi + 1, nb, now() - t0, loss_sum / (double)(bi + 1));
            if (c.checkpoint_every > 0 && step % c.checkpoint_every == 0) {
                snprintf(path, sizeof path, "%s/model.ckpt", dir);
                if (recur_saver_save(saver, s, path, step, NULL, 0, st) != RECUR_OK)
                    fprintf(stderr, "\nrecur: saving a checkpoint failed: %s\n", recur_status_message(st));
            }
        }
        double secs = now() - t0;
        if (tty) fputc('\n', stderr);
        double acc = dev ? accuracy(s, &m, dev, &v, &c) : -1;
        if (dev)
            printf("epoch %d/%d: loss %.4f, dev accuracy %.4f, %.1f s (%.1f batches/s)\n", epoch, c.epochs, loss_sum / (double)nb, acc,
                   secs, (double)nb / secs);
        else
            printf("epoch %d/%d: loss %.4f, %.1f s (%.1f batches/s)\n", epoch, c.epochs, loss_sum / (double)nb, secs, (double)nb / secs);
        fflush(stdout);
        if (sw) {
            recur_summary_scalar(sw, "epoch_loss", loss_sum / (double)nb, step, NULL);
            if (dev) recur_summary_scalar(sw, "dev_accuracy", acc, step, NULL);
            recur_summary_flush(sw, NULL);
        }
        snprintf(path, sizeof path, "%s/model.ckpt", dir);
        if (recur_saver_save(saver, s, path, step, NULL, 0, st) != RECUR_OK) {
            fprintf(stderr, "recur: saving the model failed: %s\n", recur_status_message(st));
            goto done_loop;
        }
    }
    rc = 0;
done_loop:
    recur_array_free(keep);
    recur_array_free(lr);
done:
    free(order);
    free(starts);
    recur_summary_writer_free(sw);
    recur_saver_free(saver);
    recur_session_free(s);
    recur_graph_free(m.g);
    recur_status_free(st);
    vocab_free(&v);
    clf_data_free(train);
    clf_data_free(dev);
    return rc;
}

/* ================================================================== predict / eval */

/* Load config, vocabulary, inference graph and the latest checkpoint of a model directory. */
static recur_session *load_model(const char *dir, clf_config *c, vocab *v, model *m)
{
    char path[4096], latest[4096];
    *c = clf_defaults();
    snprintf(path, sizeof path, "%s/config.txt", dir);
    if (!config_load(c, path)) {
        fprintf(stderr, "recur: %s is missing or incomplete (is %s a model directory written by recur train?)\n", path, dir);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (!vocab_load(v, path) || v->n != c->vocab) {
        fprintf(stderr, "recur: %s is missing or does not match config.txt\n", path);
        return NULL;
    }
    recur_status *st = recur_status_new();
    recur_session *s = NULL;
    recur_saver *sv = NULL;
    if (!recur_latest_checkpoint(dir, latest, sizeof latest, st)) {
        fprintf(stderr, "recur: no checkpoint in %s: %s\n", dir, recur_status_message(st));
    } else if (build(m, c, false) && (s = recur_session_new(m->g, NULL, st)) && (sv = recur_saver_new(m->g, NULL)) &&
               recur_saver_restore(sv, s, latest, st) != RECUR_OK) {
        fprintf(stderr, "recur: cannot restore %s: %s\n", latest, recur_status_message(st));
        recur_session_free(s);
        s = NULL;
    }
    recur_saver_free(sv);
    recur_status_free(st);
    return s;
}

int clf_predict(const char *dir, const char *path)
{
    clf_config c;
    vocab v = {0};
    model m = {0};
    recur_session *s = load_model(dir, &c, &v, &m);
    clf_data *d = s ? clf_load(path, false, stderr) : NULL;
    int rc = 1;
    float *p = d ? predict_all(s, &m, d, &v, &c) : NULL;
    if (p) {
        for (int64_t i = 0; i < d->n; i++) {
            int64_t k = argmax_row(p + i * c.classes, c.classes);
            printf("%lld\t%.6f\n", (long long)k, p[i * c.classes + k]);
        }
        rc = 0;
    }
    free(p);
    clf_data_free(d);
    recur_session_free(s);
    recur_graph_free(m.g);
    vocab_free(&v);
    return rc;
}

int clf_eval(const char *dir, const char *path, double *acc_out)
{
    clf_config c;
    vocab v = {0};
    model m = {0};
    recur_session *s = load_model(dir, &c, &v, &m);
    clf_data *d = s ? clf_load(path, true, stderr) : NULL;
    int rc = 1;
    if (d) {
        for (int64_t i = 0; i < d->n; i++)
            if (d->s[i].label >= c.classes) {
                fprintf(stderr, "recur: %s: label %d of example %lld is outside the model's %lld classes\n", path, d->s[i].label,
                        (long long)i + 1, (long long)c.classes);
                goto done;
            }
        double acc = accuracy(s, &m, d, &v, &c);
        if (acc >= 0) {
            printf("accuracy: %.4f\n", acc);
            if (acc_out) *acc_out = acc;
            rc = 0;
        }
    }
done:
    clf_data_free(d);
    recur_session_free(s);
    recur_graph_free(m.g);
    vocab_free(&v);
    return rc;
}
