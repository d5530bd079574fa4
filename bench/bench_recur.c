/*
 * bench_recur.c - recur's side of `make bench`: one benchmark case per process, printed as one
 * JSON line {"case", "framework", "ms": [per-iteration times], "rss_mb", "flops", "flops_done"}.
 *
 *   bench_recur CASE [--iters N] [--threads N] [--sgemm-every K]
 *
 * --sgemm-every K: after every K timed iterations, time one reference SGEMM (2048^3 on two
 * threads) in this process, printed as "sgemm_ms": the rate the "% SGEMM" column divides by,
 * measured in the same seconds as the case (the machine's speed drifts). Its 48 MB of
 * operands count in this process's RSS, so run.py takes the RSS from a run without it.
 *
 * --paired-with CASE2: build CASE2 as well and run the two in turns, iteration by iteration;
 * prints one line per case (in that order), each with "paired_with". The ratio of two
 * configurations of recur (varlen against padded) then compares times taken a fraction of a
 * second apart. The RSS printed is the process's, holding both models.
 *
 * Cases (train = forward + backward + SGD update of every weight; loss = mean of the outputs):
 *   seed       LSTM, batch 32, T 20, input 10, hidden 50, train
 *   lstm256    LSTM, batch 64, T 100, 256/256, train
 *   lstm512    LSTM, batch 64, T 50, 512/512, train
 *   bilstm256  bidirectional LSTM, batch 64, T 100, 256/256, train
 *   varlen     LSTM, batch 64, lengths uniform in 10..100, 256/256, train
 *   padded     the varlen batch padded to 100 without lengths
 *   gru256     GRU, batch 64, T 100, 256/256, train
 *   infer1     LSTM inference, batch 1, T 100, 256/256
 */
#include "recur.h"

#include "../tools/blas_env.h"

#include <cblas.h>
#undef I /* OpenBLAS's cblas.h brings in <complex.h> */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct bcase {
    const char *name;
    int B, T, I, H;
    bool bi, gru, varlen, train;
} bcase;

static const bcase cases[] = {
    {"seed", 32, 20, 10, 50, false, false, false, true},     {"lstm256", 64, 100, 256, 256, false, false, false, true},
    {"lstm512", 64, 50, 512, 512, false, false, false, true}, {"bilstm256", 64, 100, 256, 256, true, false, false, true},
    {"varlen", 64, 100, 256, 256, false, false, true, true},  {"padded", 64, 100, 256, 256, false, false, false, true},
    {"gru256", 64, 100, 256, 256, false, true, false, true},  {"infer1", 1, 100, 256, 256, false, false, false, false},
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* The reference SGEMM: C = A B, 2048^3, as two single-threaded cblas_sgemm calls on the two
 * halves of C's columns, one per thread (no BLAS thread pool left spinning next to recur's). */
#define REF_N 2048
void openblas_set_num_threads(int) __attribute__((weak));

typedef struct ref_half {
    const float *a, *b;
    float *c;
    int col0;
} ref_half;

static void *ref_half_run(void *p)
{
    ref_half *h = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, REF_N, REF_N / 2, REF_N, 1.0f, h->a, REF_N, h->b + h->col0, REF_N,
                0.0f, h->c + h->col0, REF_N);
    return NULL;
}

static double ref_sgemm(float *a, float *b, float *c)
{
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    ref_half h[2] = {{a, b, c, 0}, {a, b, c, REF_N / 2}};
    double t0 = now_ms();
    pthread_t t;
    bool two = pthread_create(&t, NULL, ref_half_run, &h[1]) == 0;
    ref_half_run(&h[0]);
    if (two) pthread_join(t, NULL);
    else ref_half_run(&h[1]);
    return now_ms() - t0;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_recur: %s: %s\n", what, msg);
    exit(1);
}

/* The varlen case's lengths: uniform in [10, 100], fixed seed (the same for every framework). */
void bench_lengths(int B, int32_t *len)
{
    uint64_t s = 12345;
    for (int b = 0; b < B; b++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        len[b] = 10 + (int32_t)((s >> 33) % 91);
    }
}

/* One case's model, session and feeds, ready to run iterations. */
typedef struct model {
    const bcase *c;
    recur_graph *g;
    recur_session *s;
    recur_status *st;
    recur_tensor *out, *loss;
    recur_op *train;
    recur_array *xv, *lv;
    recur_feed f[2];
    int nf;
} model;

static void model_build(model *m, const bcase *c, int threads)
{
    memset(m, 0, sizeof *m);
    m->c = c;
    recur_graph *g = m->g = recur_graph_new();
    recur_graph_set_seed(g, 1);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(c->B, c->T, c->I), "x");
    recur_tensor *len = c->varlen ? recur_placeholder(g, RECUR_I32, RECUR_SHAPE(c->B), "len") : NULL;
    if (c->bi) {
        recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, recur_basic_lstm_cell(g, c->H, NULL), recur_basic_lstm_cell(g, c->H, NULL), x,
                                                            &(recur_birnn_opts){.dtype = RECUR_F32, .sequence_length = len});
        m->out = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
    } else {
        recur_cell *cell = c->gru ? recur_gru_cell(g, c->H, NULL) : recur_basic_lstm_cell(g, c->H, NULL);
        m->out = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len}).outputs;
    }
    m->loss = recur_reduce_mean(g, m->out, NULL, 0, false);
    if (c->train) {
        recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_GRADIENT_DESCENT, .learning_rate = 0.01});
        m->train = recur_optimizer_minimize(opt, m->loss, NULL, NULL, 0);
    }
    if (!recur_graph_ok(g)) die("graph", recur_graph_message(g));
    m->st = recur_status_new();
    m->s = recur_session_new(g, &(recur_session_opts){.num_threads = threads}, m->st);
    recur_session_run_target(m->s, recur_global_variables_initializer(g), m->st);
    if (!recur_status_ok(m->st)) die("session", recur_status_message(m->st));
    m->xv = recur_array_new(RECUR_F32, RECUR_SHAPE(c->B, c->T, c->I), m->st);
    float *xp = recur_array_f32(m->xv);
    for (int64_t i = 0; i < recur_array_size(m->xv); i++) xp[i] = sinf((float)i * 0.37f);
    m->lv = recur_array_new(RECUR_I32, RECUR_SHAPE(c->B), m->st);
    bench_lengths(c->B, recur_array_i32(m->lv));
    m->f[0] = (recur_feed){x, m->xv};
    m->f[1] = (recur_feed){len, m->lv};
    m->nf = len ? 2 : 1;
}

/* One iteration (training: forward, backward, update; inference: forward); its ms. */
static double model_step(model *m)
{
    double t0 = now_ms();
    recur_array *lvv = NULL;
    if (m->c->train)
        recur_session_run(m->s, m->f, m->nf, &m->loss, &lvv, 1, &m->train, 1, m->st);
    else
        recur_session_run(m->s, m->f, m->nf, &m->out, &lvv, 1, NULL, 0, m->st);
    if (!recur_status_ok(m->st)) die("run", recur_status_message(m->st));
    recur_array_free(lvv);
    return now_ms() - t0;
}

static void model_free(model *m)
{
    recur_array_free(m->xv);
    recur_array_free(m->lv);
    recur_session_free(m->s);
    recur_status_free(m->st);
    recur_graph_free(m->g);
}

static const bcase *find_case(const char *name)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(cases[i].name, name)) return &cases[i];
    die("unknown case", name);
    return NULL;
}

/* The case's matrix-product FLOPs per iteration (the spec's count): a step of one LSTM
 * direction is 8*B*H*(I+H) forward and twice that backward; GRU 6*. Varlen counts the steps
 * really run. *done: what recur multiplies. x is a fed batch whose gradient no op reads, so
 * the backward skips the input-gradient product (one forward's worth of its input part). */
static double case_flops(const model *m, double *done)
{
    const bcase *c = m->c;
    double steps = c->T;
    if (c->varlen) {
        steps = 0;
        for (int b = 0; b < c->B; b++) steps += recur_array_i32(m->lv)[b];
        steps /= c->B;
    }
    double unit = (c->gru ? 6.0 : 8.0) * c->B * c->H * steps * (c->bi ? 2 : 1); /* per input or state column */
    double flops = unit * (double)(c->I + c->H) * (c->train ? 3 : 1);
    *done = flops - (c->train ? unit * (double)c->I : 0);
    return flops;
}

static void print_record(const model *m, int threads, const double *ms, int iters, const double *sg, int nsg, const char *paired)
{
    double done, flops = case_flops(m, &done);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"case\": \"%s\", \"framework\": \"recur\", \"threads\": %d, \"flops\": %.0f, \"flops_done\": %.0f, \"rss_mb\": %.1f",
           m->c->name, threads, flops, done, ru.ru_maxrss / 1024.0);
    if (paired) printf(", \"paired_with\": \"%s\"", paired);
    printf(", \"ms\": [");
    for (int i = 0; i < iters; i++) printf("%s%.4f", i ? ", " : "", ms[i]);
    printf("]");
    if (nsg > 0) {
        printf(", \"sgemm_n\": %d, \"sgemm_ms\": [", REF_N);
        for (int i = 0; i < nsg; i++) printf("%s%.3f", i ? ", " : "", sg[i]);
        printf("]");
    }
    printf("}\n");
}

int main(int argc, char **argv)
{
    recur_tools_fix_blas(argv);
    if (argc < 2) die("usage", "bench_recur CASE [--iters N] [--threads N] [--sgemm-every K] [--paired-with CASE]");
    const bcase *c = find_case(argv[1]), *c2 = NULL;
    int iters = c->train ? 20 : 100, threads = 2, every = 0;
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sgemm-every")) every = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--paired-with")) c2 = find_case(argv[++i]);
    }
    if (iters < 1) die("usage", "--iters must be positive");
    if (c2 && every) die("usage", "--paired-with and --sgemm-every do not go together");
    model m[2];
    int nm = c2 ? 2 : 1;
    model_build(&m[0], c, threads);
    if (c2) model_build(&m[1], c2, threads);
    double *ms[2] = {malloc(sizeof(double) * (size_t)iters), malloc(sizeof(double) * (size_t)iters)}, *sg = NULL;
    float *ra = NULL, *rb = NULL, *rc = NULL;
    int nsg = 0;
    if (!ms[0] || !ms[1]) die("bench", "out of memory");
    if (every > 0) {
        size_t bytes = (size_t)REF_N * REF_N * sizeof(float);
        ra = malloc(bytes), rb = malloc(bytes), rc = malloc(bytes);
        sg = malloc(sizeof(double) * (size_t)(iters / every + 1));
        if (!ra || !rb || !rc || !sg) die("sgemm", "out of memory");
        for (size_t i = 0; i < (size_t)REF_N * REF_N; i++) ra[i] = (float)(i % 7) * 0.1f, rb[i] = (float)(i % 5) * 0.1f;
        ref_sgemm(ra, rb, rc); /* warm-up */
    }
    /* warm-up: at least 3 iterations (of each model) and 0.5 s (bench/cases.py's WARMUP and
     * WARMUP_S). Paired (--paired-with): the two models take turns, iteration by iteration, and
     * which goes first turns pair by pair, so that each pair's two times come from the same
     * tenth of a second of a machine whose speed drifts. */
    double warm_end = now_ms() + 500;
    for (int it = -3; it < iters; it++) {
        if (it == -1 && now_ms() < warm_end) it = -2;
        for (int k = 0; k < nm; k++) {
            int w = nm == 2 && (it & 1) ? 1 - k : k;
            double t = model_step(&m[w]);
            if (it >= 0) ms[w][it] = t;
        }
        if (every > 0 && it >= 0 && (it + 1) % every == 0) sg[nsg++] = ref_sgemm(ra, rb, rc);
    }
    for (int k = 0; k < nm; k++) print_record(&m[k], threads, ms[k], iters, sg, nsg, c2 ? m[1 - k].c->name : NULL);
    free(ms[0]);
    free(ms[1]);
    free(sg);
    free(ra);
    free(rb);
    free(rc);
    for (int k = 0; k < nm; k++) model_free(&m[k]);
    return 0;
}
