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

int main(int argc, char **argv)
{
    recur_tools_fix_blas(argv);
    if (argc < 2) die("usage", "bench_recur CASE [--iters N] [--threads N]");
    const bcase *c = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(cases[i].name, argv[1])) c = &cases[i];
    if (!c) die("unknown case", argv[1]);
    int iters = c->train ? 20 : 100, threads = 2, every = 0;
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sgemm-every")) every = atoi(argv[++i]);
    }
    if (iters < 1) die("usage", "--iters must be positive");
    recur_graph *g = recur_graph_new();
    recur_graph_set_seed(g, 1);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(c->B, c->T, c->I), "x");
    recur_tensor *len = c->varlen ? recur_placeholder(g, RECUR_I32, RECUR_SHAPE(c->B), "len") : NULL;
    recur_tensor *out;
    if (c->bi) {
        recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, recur_basic_lstm_cell(g, c->H, NULL), recur_basic_lstm_cell(g, c->H, NULL), x,
                                                            &(recur_birnn_opts){.dtype = RECUR_F32, .sequence_length = len});
        out = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
    } else {
        recur_cell *cell = c->gru ? recur_gru_cell(g, c->H, NULL) : recur_basic_lstm_cell(g, c->H, NULL);
        out = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len}).outputs;
    }
    recur_op *train = NULL;
    recur_tensor *loss = recur_reduce_mean(g, out, NULL, 0, false);
    if (c->train) {
        recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_GRADIENT_DESCENT, .learning_rate = 0.01});
        train = recur_optimizer_minimize(opt, loss, NULL, NULL, 0);
    }
    if (!recur_graph_ok(g)) die("graph", recur_graph_message(g));
    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = threads}, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(c->B, c->T, c->I), st);
    float *xp = recur_array_f32(xv);
    for (int64_t i = 0; i < recur_array_size(xv); i++) xp[i] = sinf((float)i * 0.37f);
    recur_array *lv = recur_array_new(RECUR_I32, RECUR_SHAPE(c->B), st);
    bench_lengths(c->B, recur_array_i32(lv));
    recur_feed f[2] = {{x, xv}, {len, lv}};
    int nf = len ? 2 : 1;
    double *ms = malloc(sizeof(double) * (size_t)iters), *sg = NULL;
    float *ra = NULL, *rb = NULL, *rc = NULL;
    int nsg = 0;
    if (every > 0) {
        size_t bytes = (size_t)REF_N * REF_N * sizeof(float);
        ra = malloc(bytes), rb = malloc(bytes), rc = malloc(bytes);
        sg = malloc(sizeof(double) * (size_t)(iters / every + 1));
        if (!ra || !rb || !rc || !sg) die("sgemm", "out of memory");
        for (size_t i = 0; i < (size_t)REF_N * REF_N; i++) ra[i] = (float)(i % 7) * 0.1f, rb[i] = (float)(i % 5) * 0.1f;
        ref_sgemm(ra, rb, rc); /* warm-up */
    }
    /* warm-up: at least 3 iterations and 0.5 s (bench/cases.py's WARMUP and WARMUP_S) */
    double warm_end = now_ms() + 500;
    for (int it = -3; it < iters; it++) {
        if (it == -1 && now_ms() < warm_end) it = -2;
        double t0 = now_ms();
        recur_array *lvv = NULL;
        if (c->train)
            recur_session_run(s, f, nf, &loss, &lvv, 1, &train, 1, st);
        else
            recur_session_run(s, f, nf, &out, &lvv, 1, NULL, 0, st);
        if (!recur_status_ok(st)) die("run", recur_status_message(st));
        recur_array_free(lvv);
        if (it >= 0) ms[it] = now_ms() - t0;
        if (every > 0 && it >= 0 && (it + 1) % every == 0) sg[nsg++] = ref_sgemm(ra, rb, rc);
    }
    /* matrix-product FLOPs per iteration (the spec's count): a step of one LSTM direction is
     * 8*B*H*(I+H) forward and twice that backward; GRU 6*. Varlen counts the steps really run. */
    double steps = c->T;
    if (c->varlen) {
        steps = 0;
        for (int b = 0; b < c->B; b++) steps += recur_array_i32(lv)[b];
        steps /= c->B;
    }
    double unit = (c->gru ? 6.0 : 8.0) * c->B * c->H * steps * (c->bi ? 2 : 1); /* per input or state column */
    double flops = unit * (double)(c->I + c->H) * (c->train ? 3 : 1);
    /* What recur multiplies: x is a fed batch whose gradient no op reads, so the backward skips
     * the input-gradient product (one forward's worth of its input part). */
    double done = flops - (c->train ? unit * (double)c->I : 0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"case\": \"%s\", \"framework\": \"recur\", \"threads\": %d, \"flops\": %.0f, \"flops_done\": %.0f, \"rss_mb\": %.1f, \"ms\": [",
           c->name, threads, flops, done, ru.ru_maxrss / 1024.0);
    for (int i = 0; i < iters; i++) printf("%s%.4f", i ? ", " : "", ms[i]);
    printf("]");
    if (every > 0) {
        printf(", \"sgemm_n\": %d, \"sgemm_ms\": [", REF_N);
        for (int i = 0; i < nsg; i++) printf("%s%.3f", i ? ", " : "", sg[i]);
        printf("]");
    }
    printf("}\n");
    free(ms);
    free(sg);
    free(ra);
    free(rb);
    free(rc);
    recur_array_free(xv);
    recur_array_free(lv);
    recur_session_free(s);
    recur_status_free(st);
    recur_graph_free(g);
    return 0;
}
