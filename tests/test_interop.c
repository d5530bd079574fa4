/*
 * test_interop.c - a BiLSTM classifier trained in TensorFlow, used by the recur command.
 *
 * tests/golden/classifier_tf/ is a model directory written by tests/tf/classifier_interop.py:
 * TensorFlow (tf.compat.v1) trained the classifier of tools/classifier.c for 300 Adam steps on
 * rt-polarity and saved it with tf.compat.v1.train.Saver (model.ckpt-300 and TensorFlow's own
 * `checkpoint` state file); config.txt and vocab.txt are in recur's format. probs.golden holds
 * TensorFlow's class probabilities for sentences.tsv (200 dev sentences and a few edge cases:
 * only unknown words, one word, longer than max_len). `recur predict` and `recur eval` on that
 * directory must agree with TensorFlow within 1e-5, and the checkpoint must hold the variables
 * `recur train` writes (Adam slots included), under the same names and dtypes.
 *
 * The other direction (a model trained by `recur train`, restored and run in TensorFlow) needs
 * TensorFlow: python3 tests/tf/classifier_interop.py.
 */
#include "runner.h"
#include "golden.h"

#include <libgen.h>
#include <unistd.h>

#define TOL 1e-5

static const char *recur_bin(void)
{
    static char path[4096];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) rt_fail(__FILE__, __LINE__, "cannot locate the test binary");
    exe[n] = 0;
    snprintf(path, sizeof path, "%s/../recur", dirname(exe));
    return path;
}

/* Run the recur command with `args`; capture stdout (stderr too when `merge`); return the exit
 * status. */
static int run(const char *args, bool merge, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s%s", recur_bin(), args, merge ? " 2>&1" : " 2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p) rt_fail(__FILE__, __LINE__, "popen failed");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *model_dir(void) { return rt_path("tests/golden/classifier_tf"); }

/* TensorFlow's probabilities [n, classes]. */
static gt_file *tf_probs(const gt_tensor **t)
{
    gt_file *g = gt_load(rt_path("tests/golden/classifier_tf/probs.golden"));
    if (!g) rt_fail(__FILE__, __LINE__, "cannot read tests/golden/classifier_tf/probs.golden");
    *t = gt_find(g, "probs");
    if (!*t || (*t)->shape.rank != 2 || (*t)->shape.dims[0] < 200 || (*t)->shape.dims[1] != 2)
        rt_fail(__FILE__, __LINE__, "probs.golden: no tensor probs [>= 200, 2]");
    return g;
}

/* The labels of sentences.tsv (header skipped); returns their number. */
static int64_t sentence_labels(int *labels, int64_t cap)
{
    FILE *f = fopen(rt_path("tests/golden/classifier_tf/sentences.tsv"), "r");
    if (!f) rt_fail(__FILE__, __LINE__, "cannot read tests/golden/classifier_tf/sentences.tsv");
    char line[8192];
    int64_t n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "label\t", 6) && n < cap) labels[n++] = atoi(line);
    fclose(f);
    return n;
}

static int64_t argmax(const double *p, int64_t c)
{
    int64_t k = 0;
    for (int64_t j = 1; j < c; j++)
        if (p[j] > p[k]) k = j;
    return k;
}

TEST(predict_matches_tensorflow)
{
    const gt_tensor *t;
    gt_file *g = tf_probs(&t);
    int64_t n = t->shape.dims[0], c = t->shape.dims[1];
    char args[4096], *out = malloc(1 << 20);
    snprintf(args, sizeof args, "predict --model %s %s/sentences.tsv", model_dir(), model_dir());
    ASSERT_EQ_INT(run(args, false, out, 1 << 20), 0);
    /* label<TAB>probability of that label, 6 decimals: good to 5e-7 */
    double worst = 0;
    int64_t i = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), i++) {
        ASSERT_TRUE(i < n);
        char *tab = strchr(line, '\t');
        ASSERT_TRUE(tab != NULL);
        int64_t k = atoll(line);
        double p = atof(tab + 1);
        ASSERT_TRUE(k >= 0 && k < c);
        const double *q = t->v + i * c;
        if (q[argmax(q, c)] - q[k] > TOL)
            rt_fail(__FILE__, __LINE__, "sentence %lld: recur predicts class %lld (%.6f), TensorFlow class %lld (%.9g vs %.9g)",
                    (long long)i + 1, (long long)k, p, (long long)argmax(q, c), q[argmax(q, c)], q[k]);
        if (fabs(p - q[k]) > worst) worst = fabs(p - q[k]);
        if (fabs(p - q[k]) > TOL)
            rt_fail(__FILE__, __LINE__, "sentence %lld: recur's probability %.6f, TensorFlow's %.9g (|diff| %.3g > %g)", (long long)i + 1,
                    p, q[k], fabs(p - q[k]), TOL);
    }
    ASSERT_EQ_INT(i, n);
    printf("  %lld sentences, max |recur - TensorFlow| %.3g\n", (long long)n, worst);
    free(out);
    gt_free(g);
}

TEST(eval_matches_tensorflow)
{
    const gt_tensor *t;
    gt_file *g = tf_probs(&t);
    int64_t n = t->shape.dims[0], c = t->shape.dims[1];
    int labels[4096];
    ASSERT_EQ_INT(sentence_labels(labels, 4096), n);
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += argmax(t->v + i * c, c) == labels[i];
    char args[4096], out[4096], want[64];
    snprintf(args, sizeof args, "eval --model %s %s/sentences.tsv", model_dir(), model_dir());
    ASSERT_EQ_INT(run(args, false, out, sizeof out), 0);
    snprintf(want, sizeof want, "accuracy: %.4f\n", (double)right / (double)n);
    ASSERT_EQ_STR(out, want);
    ASSERT_TRUE(right > n * 6 / 10); /* a trained model, not a coin */
    gt_free(g);
}

/* Every key of the checkpoint TensorFlow wrote, with dtype and shape. */
typedef struct key_info {
    const char *key;
    recur_dtype dt;
    recur_shape shape;
} key_info;

TEST(tensorflow_checkpoint_holds_what_recur_train_writes)
{
    recur_status *st = recur_status_new();
    char latest[4096];
    /* TensorFlow's state file (relative path, as Saver(save_relative_paths=True) writes it) */
    ASSERT_TRUE(recur_latest_checkpoint(model_dir(), latest, sizeof latest, st) != NULL);
    ASSERT_OK(st);
    char want_prefix[4096];
    snprintf(want_prefix, sizeof want_prefix, "%s/model.ckpt-300", model_dir());
    ASSERT_EQ_STR(latest, want_prefix);
    recur_checkpoint *ck = recur_checkpoint_open(latest, st);
    ASSERT_OK(st);
    /* config.txt: embed 16, hidden 16, classes 2 */
    int64_t V = 0;
    FILE *f = fopen(rt_path("tests/golden/classifier_tf/config.txt"), "r");
    char key[64];
    long long val;
    while (f && fscanf(f, "%63s %lld", key, &val) == 2)
        if (!strcmp(key, "vocab")) V = val;
    if (f) fclose(f);
    ASSERT_TRUE(V > 2);
    const char *lstm[] = {"bidirectional_rnn/bw/basic_lstm_cell/", "bidirectional_rnn/fw/basic_lstm_cell/"};
    key_info want[32];
    int nw = 0;
    want[nw++] = (key_info){"beta1_power", RECUR_F32, RECUR_SCALAR};
    want[nw++] = (key_info){"beta2_power", RECUR_F32, RECUR_SCALAR};
    char names[24][128];
    int nn = 0;
    for (int d = 0; d < 2; d++)
        for (int s = 0; s < 3; s++) {
            const char *suffix[] = {"", "/Adam", "/Adam_1"};
            snprintf(names[nn], sizeof names[nn], "%sbias%s", lstm[d], suffix[s]);
            want[nw++] = (key_info){names[nn++], RECUR_F32, RECUR_SHAPE(64)};
            snprintf(names[nn], sizeof names[nn], "%skernel%s", lstm[d], suffix[s]);
            want[nw++] = (key_info){names[nn++], RECUR_F32, RECUR_SHAPE(32, 64)};
        }
    want[nw++] = (key_info){"dense/bias", RECUR_F32, RECUR_SHAPE(2)};
    want[nw++] = (key_info){"dense/bias/Adam", RECUR_F32, RECUR_SHAPE(2)};
    want[nw++] = (key_info){"dense/bias/Adam_1", RECUR_F32, RECUR_SHAPE(2)};
    want[nw++] = (key_info){"dense/kernel", RECUR_F32, RECUR_SHAPE(32, 2)};
    want[nw++] = (key_info){"dense/kernel/Adam", RECUR_F32, RECUR_SHAPE(32, 2)};
    want[nw++] = (key_info){"dense/kernel/Adam_1", RECUR_F32, RECUR_SHAPE(32, 2)};
    want[nw++] = (key_info){"embedding", RECUR_F32, RECUR_SHAPE(V, 16)};
    want[nw++] = (key_info){"embedding/Adam", RECUR_F32, RECUR_SHAPE(V, 16)};
    want[nw++] = (key_info){"embedding/Adam_1", RECUR_F32, RECUR_SHAPE(V, 16)};
    want[nw++] = (key_info){"global_step", RECUR_I64, RECUR_SCALAR};
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(ck), nw);
    for (int i = 0; i < nw; i++) {
        recur_dtype dt;
        recur_shape sh;
        char a[64], b[64];
        if (!recur_checkpoint_info(ck, want[i].key, &dt, &sh)) rt_fail(__FILE__, __LINE__, "no key %s in %s", want[i].key, latest);
        ASSERT_EQ_STR(recur_dtype_name(dt), recur_dtype_name(want[i].dt));
        ASSERT_EQ_STR(recur_shape_str(sh, a, sizeof a), recur_shape_str(want[i].shape, b, sizeof b));
    }
    recur_array *gs = recur_checkpoint_read(ck, "global_step", st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_array_i64(gs)[0], 300);
    recur_array *b1 = recur_checkpoint_read(ck, "beta1_power", st);
    ASSERT_OK(st);
    /* starts at beta1 and is multiplied by it after each step (in float32: rounding adds up) */
    ASSERT_NEAR(recur_array_f32(b1)[0], pow(0.9, 301), 1e-4 * pow(0.9, 301));
    recur_array_free(gs);
    recur_array_free(b1);

    /* `recur train` writes the same names and dtypes (shapes differ with the sizes) */
    char dir[] = "/tmp/recur_interop_XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[4096], args[8192], out[65536];
    snprintf(path, sizeof path, "%s/train.tsv", dir);
    f = fopen(path, "w");
    for (int i = 0; i < 40; i++) fprintf(f, "%d\t%s\n", i % 2, i % 2 ? "a good film" : "a bad film");
    fclose(f);
    snprintf(args, sizeof args, "train --train %s --out %s/m --epochs 1 --embed 4 --hidden 3 --batch 8 --threads 1", path, dir);
    ASSERT_EQ_INT(run(args, true, out, sizeof out), 0);
    snprintf(path, sizeof path, "%s/m", dir);
    char mine[4096];
    ASSERT_TRUE(recur_latest_checkpoint(path, mine, sizeof mine, st) != NULL);
    recur_checkpoint *rk = recur_checkpoint_open(mine, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(rk), recur_checkpoint_num_tensors(ck));
    for (size_t i = 0; i < recur_checkpoint_num_tensors(rk); i++) {
        ASSERT_EQ_STR(recur_checkpoint_key(rk, i), recur_checkpoint_key(ck, i));
        recur_dtype d1, d2;
        recur_shape s1, s2;
        ASSERT_TRUE(recur_checkpoint_info(rk, recur_checkpoint_key(rk, i), &d1, &s1));
        ASSERT_TRUE(recur_checkpoint_info(ck, recur_checkpoint_key(ck, i), &d2, &s2));
        ASSERT_EQ_INT(d1, d2);
        ASSERT_EQ_INT(s1.rank, s2.rank);
    }
    recur_checkpoint_close(rk);
    recur_checkpoint_close(ck);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    ASSERT_EQ_INT(system(args), 0);
    recur_status_free(st);
}

RUN_TESTS(T(predict_matches_tensorflow), T(eval_matches_tensorflow), T(tensorflow_checkpoint_holds_what_recur_train_writes))
