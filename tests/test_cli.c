/*
 * test_cli.c - the recur command: train / predict / eval on a small synthetic sentiment task,
 * bitwise reproducibility for a seed, the reports for malformed data lines and out-of-range
 * labels, the non-finite loss guard, and --help.
 */
#include "runner.h"

#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

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

/* Run the recur command with `args`; capture stdout+stderr; return the exit status. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", recur_bin(), args);
    FILE *p = popen(cmd, "r");
    if (!p) rt_fail(__FILE__, __LINE__, "popen failed");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A sentiment task a small model learns in a few epochs: positive and negative words mixed
 * with neutral ones. */
static void write_data(const char *path, int n, unsigned seed, bool header)
{
    const char *pos[] = {"good", "great", "wonderful", "moving", "funny", "brilliant"};
    const char *neg[] = {"bad", "awful", "boring", "dull", "tedious", "mess"};
    const char *neu[] = {"the", "movie", "film", "a", "is", "plot", "actors", "and", "story", "it"};
    FILE *f = fopen(path, "w");
    if (header) fprintf(f, "label\ttext\n");
    srand(seed);
    for (int i = 0; i < n; i++) {
        int y = rand() % 2, len = 4 + rand() % 8;
        fprintf(f, "%d\t", y);
        for (int k = 0; k < len; k++) {
            const char *w = rand() % 3 == 0 ? (y ? pos : neg)[rand() % 6] : neu[rand() % 10];
            fprintf(f, "%s%s", k ? " " : "", w);
        }
        fprintf(f, "\n");
    }
    fclose(f);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/recur_cli_XXXXXX");
    if (!mkdtemp(tmpdir)) rt_fail(__FILE__, __LINE__, "mkdtemp");
    char p[512];
    snprintf(p, sizeof p, "%s/train.tsv", tmpdir);
    write_data(p, 400, 1, true);
    snprintf(p, sizeof p, "%s/dev.tsv", tmpdir);
    write_data(p, 100, 2, true);
}

static const char *small = "--epochs 4 --embed 16 --hidden 16 --batch 16 --lr 0.01 --seed 7 --threads 1";

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

TEST(train_predict_eval)
{
    setup();
    char args[2048], out[65536];
    snprintf(args, sizeof args, "train --train %s/train.tsv --dev %s/dev.tsv --out %s/m %s", tmpdir, tmpdir, tmpdir, small);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "epoch 4/4: loss");
    ASSERT_STR_CONTAINS(out, "dev accuracy");
    snprintf(args, sizeof args, "eval --model %s/m %s/dev.tsv", tmpdir, tmpdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_STARTS(out, "accuracy: 0.");
    double acc = atof(out + 10);
    ASSERT_TRUE(acc > 0.8); /* the synthetic task is easy */
    /* predict from stdin: label<TAB>probability per line */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "printf 'a wonderful brilliant film\\nboring dull mess\\n' | %s predict --model %s/m", recur_bin(), tmpdir);
    FILE *p = popen(cmd, "r");
    char l1[128] = "", l2[128] = "";
    ASSERT_TRUE(fgets(l1, sizeof l1, p) && fgets(l2, sizeof l2, p));
    pclose(p);
    ASSERT_STR_STARTS(l1, "1\t0.");
    ASSERT_STR_STARTS(l2, "0\t0.");
}

TEST(same_seed_same_model_bit_for_bit)
{
    setup();
    char args[2048], out[65536], a[512], b[512];
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "train --train %s/train.tsv --out %s/r%d %s --epochs 2", tmpdir, tmpdir, k, small);
        ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    }
    /* 400 examples / 16 = 25 steps per epoch */
    snprintf(a, sizeof a, "%s/r0/model.ckpt-50.data-00000-of-00001", tmpdir);
    snprintf(b, sizeof b, "%s/r1/model.ckpt-50.data-00000-of-00001", tmpdir);
    size_t na, nb;
    char *da = slurp(a, &na), *db = slurp(b, &nb);
    ASSERT_TRUE(da && db && na > 1000);
    ASSERT_EQ_INT(na, nb);
    ASSERT_TRUE(memcmp(da, db, na) == 0);
    free(da);
    free(db);
}

TEST(bad_lines_and_labels_are_reported)
{
    setup();
    char p[512], args[2048], out[65536];
    snprintf(p, sizeof p, "%s/bad.tsv", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "1\tgood movie\n\nno tab here\nx\tnot a label\n0\t   \n0\tbad movie\n");
    fclose(f);
    snprintf(args, sizeof args, "train --train %s --out %s/b %s --epochs 1", p, tmpdir, small);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "bad.tsv:2: empty line, skipped");
    ASSERT_STR_CONTAINS(out, "bad.tsv:3: expected <label><TAB><text>");
    ASSERT_STR_CONTAINS(out, "bad.tsv:4: expected <label><TAB><text>");
    ASSERT_STR_CONTAINS(out, "bad.tsv:5: no words, skipped");
    ASSERT_STR_CONTAINS(out, "4 lines skipped");
    /* a dev label outside the training classes */
    snprintf(p, sizeof p, "%s/dev3.tsv", tmpdir);
    f = fopen(p, "w");
    fprintf(f, "0\tgood\n7\tbad\n");
    fclose(f);
    snprintf(args, sizeof args, "train --train %s/train.tsv --dev %s --out %s/c %s", tmpdir, p, tmpdir, small);
    ASSERT_NE_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "label 7 of example 2 is outside the 2 classes");
    snprintf(args, sizeof args, "train --train %s/missing.tsv --out %s/d", tmpdir, tmpdir);
    ASSERT_NE_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "cannot open");
    ASSERT_NE_INT(run("train --epochs zero", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "--epochs expects an integer");
    snprintf(args, sizeof args, "eval --model %s/nothing %s/dev.tsv", tmpdir, tmpdir);
    ASSERT_NE_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "is missing or incomplete");
}

TEST(non_finite_loss_stops_naming_step_and_op)
{
    setup();
    char args[2048], out[65536];
    snprintf(args, sizeof args, "train --train %s/train.tsv --out %s/n %s --lr 1e38 --clip 0", tmpdir, tmpdir, small);
    ASSERT_NE_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "the loss is");
    ASSERT_STR_CONTAINS(out, "at step");
    ASSERT_STR_CONTAINS(out, "the first non-finite value: check_numerics:");
}

TEST(help_for_every_command)
{
    char out[65536];
    ASSERT_EQ_INT(run("--help", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "train");
    ASSERT_EQ_INT(run("train --help", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "--epochs N");
    ASSERT_EQ_INT(run("predict --help", out, sizeof out), 0);
    ASSERT_EQ_INT(run("eval --help", out, sizeof out), 0);
    ASSERT_NE_INT(run("frobnicate", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "unknown command 'frobnicate'");
}

RUN_TESTS(T(train_predict_eval), T(same_seed_same_model_bit_for_bit), T(bad_lines_and_labels_are_reported),
          T(non_finite_loss_stops_naming_step_and_op), T(help_for_every_command))
