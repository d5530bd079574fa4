/*
 * test_cli.c - the recur command: train / predict / eval on a small synthetic sentiment task,
 * bitwise reproducibility for a seed, the reports for malformed data lines and out-of-range
 * labels, the non-finite loss guard, and --help; the checkpoint tools inspect, diff and rename
 * on checkpoints written here and on TensorFlow's (tests/golden/ckpt).
 */
#include "runner.h"

#include <ftw.h>
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

/* ---------------------------------------------------------------- checkpoint tools */

typedef struct ck_tensor {
    const char *key;
    recur_dtype dt;
    recur_shape shape;
    const void *data;
} ck_tensor;

/* Write a checkpoint at `prefix` with the library's writer. */
static void write_ckpt(const char *prefix, const ck_tensor *t, int n)
{
    recur_status *st = recur_status_new();
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(prefix, st);
    ASSERT_OK(st);
    for (int i = 0; i < n; i++) {
        recur_array *a = recur_array_from(t[i].dt, t[i].shape, t[i].data, st);
        ASSERT_OK(st);
        recur_checkpoint_writer_add(w, t[i].key, a, st);
        ASSERT_OK(st);
        recur_array_free(a);
    }
    recur_checkpoint_writer_finish(w, st);
    ASSERT_OK(st);
    recur_checkpoint_writer_free(w);
    recur_status_free(st);
}

static char ckdir[256];

/* ckdir + "/" + rel (rotating static buffers). */
static const char *pathf_ck(const char *rel)
{
    static char buf[8][512];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", ckdir, rel);
    return b;
}

static void ck_setup(void)
{
    snprintf(ckdir, sizeof ckdir, "/tmp/recur_cli_ckpt_XXXXXX");
    if (!mkdtemp(ckdir)) rt_fail(__FILE__, __LINE__, "mkdtemp");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static void ck_cleanup(void) { nftw(ckdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The line of `out` that starts with `name` followed by blanks (a table row). Static buffer. */
static const char *row(const char *out, const char *name)
{
    static char line[4096];
    size_t n = strlen(name);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) || p[n] != ' ') continue;
        size_t len = strcspn(p, "\n");
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        return line;
    }
    rt_fail(__FILE__, __LINE__, "no row for %s in:\n%s", name, out);
}

/* Field `k` from the end (1: the last) of the table row of `name`. Static buffer. */
static const char *field_from_end(const char *out, const char *name, int k)
{
    static char f[256];
    const char *r = row(out, name), *end = r + strlen(r);
    for (int i = 0; i < k; i++) {
        while (end > r && end[-1] == ' ') end--;
        const char *start = end;
        while (start > r && start[-1] != ' ') start--;
        if (i == k - 1) {
            snprintf(f, sizeof f, "%.*s", (int)(end - start), start);
            return f;
        }
        end = start;
    }
    return "";
}

/* A small model checkpoint: every value known. */
static void write_model(const char *prefix, const char *scope, float w_value, float b3)
{
    float w[12], b[4] = {1, 2, 3, b3}, nan4[4] = {1, NAN, 3, NAN};
    for (int i = 0; i < 12; i++) w[i] = w_value;
    int64_t step = 42;
    bool flags[3] = {true, false, true};
    char kw[128], kb[128];
    snprintf(kw, sizeof kw, "%s/w", scope);
    snprintf(kb, sizeof kb, "%s/b", scope);
    ck_tensor t[] = {
        {kw, RECUR_F32, RECUR_SHAPE(3, 4), w},
        {kb, RECUR_F32, RECUR_SHAPE(4), b},
        {"diverged", RECUR_F32, RECUR_SHAPE(2, 2), nan4},
        {"global_step", RECUR_I64, RECUR_SCALAR, &step},
        {"flags", RECUR_BOOL, RECUR_SHAPE(3), flags},
    };
    write_ckpt(prefix, t, 5);
}

TEST(ckpt_inspect_lists_and_stats)
{
    ck_setup();
    char args[2048], out[65536];
    write_model(pathf_ck("m"), "layer1", 0.5f, 4);
    snprintf(args, sizeof args, "inspect %s/m", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "5 tensors, 24 elements");
    ASSERT_STR_CONTAINS(row(out, "layer1/w"), "float");
    ASSERT_STR_CONTAINS(row(out, "layer1/w"), "(3, 4)");
    ASSERT_STR_CONTAINS(row(out, "layer1/b"), "(4,)");
    ASSERT_STR_CONTAINS(row(out, "global_step"), "int64");
    ASSERT_STR_CONTAINS(row(out, "global_step"), "()");
    ASSERT_STR_CONTAINS(row(out, "flags"), "bool");
    /* keys in order, header first */
    ASSERT_STR_STARTS(strchr(out, '\n') + 1, "name ");
    ASSERT_TRUE(strstr(out, "diverged") < strstr(out, "flags") && strstr(out, "flags") < strstr(out, "layer1/b"));

    snprintf(args, sizeof args, "inspect %s/m --stats", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(row(out, "name"), "min");
    ASSERT_STR_CONTAINS(row(out, "name"), "nan");
    /* a constant-initialised variable: min = max = mean = 0.5, std 0 */
    ASSERT_EQ_STR(field_from_end(out, "layer1/w", 5), "0.5");
    ASSERT_EQ_STR(field_from_end(out, "layer1/w", 4), "0.5");
    ASSERT_EQ_STR(field_from_end(out, "layer1/w", 3), "0.5");
    ASSERT_EQ_STR(field_from_end(out, "layer1/w", 2), "0");
    ASSERT_EQ_STR(field_from_end(out, "layer1/w", 1), "0");
    /* 1, 2, 3, 4: mean 2.5, population std sqrt(1.25) */
    ASSERT_NEAR(atof(field_from_end(out, "layer1/b", 3)), 2.5, 1e-9);
    ASSERT_NEAR(atof(field_from_end(out, "layer1/b", 2)), 1.118034, 1e-5);
    /* NaNs counted; the moments are over the other elements */
    ASSERT_EQ_STR(field_from_end(out, "diverged", 1), "2");
    ASSERT_EQ_STR(field_from_end(out, "diverged", 5), "1");
    ASSERT_EQ_STR(field_from_end(out, "diverged", 4), "3");
    ASSERT_EQ_STR(field_from_end(out, "diverged", 3), "2");
    ASSERT_EQ_STR(field_from_end(out, "global_step", 3), "42");
    ASSERT_NEAR(atof(field_from_end(out, "flags", 3)), 2.0 / 3, 1e-5);

    /* a directory stands for its latest checkpoint */
    char p[512];
    snprintf(p, sizeof p, "%s/checkpoint", ckdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "model_checkpoint_path: \"m\"\nall_model_checkpoint_paths: \"m\"\n");
    fclose(f);
    snprintf(args, sizeof args, "inspect %s", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "/m: 5 tensors");
    ASSERT_STR_CONTAINS(out, "layer1/w");
    /* and so does the .index file */
    snprintf(args, sizeof args, "inspect %s/m.index", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "layer1/w");
    ck_cleanup();
}

TEST(ckpt_inspect_tensor_values)
{
    ck_setup();
    char args[2048], out[65536];
    write_model(pathf_ck("m"), "layer1", 0.5f, 4);
    static float big[40 * 50];
    for (int i = 0; i < 40 * 50; i++) big[i] = (float)i;
    ck_tensor t[] = {{"emb/big", RECUR_F32, RECUR_SHAPE(40, 50), big}};
    write_ckpt(pathf_ck("big"), t, 1);

    snprintf(args, sizeof args, "inspect %s/m --tensor layer1/b --tensor diverged --tensor flags --tensor global_step",
             ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "layer1/b:\n[1. 2. 3. 4.]\n");
    ASSERT_STR_CONTAINS(out, "diverged:\n[[ 1. nan]\n [ 3. nan]]\n");
    ASSERT_STR_CONTAINS(out, "flags:\n[ True False  True]\n");
    ASSERT_STR_CONTAINS(out, "global_step:\n42\n");
    ASSERT_TRUE(!strstr(out, "layer1/w")); /* only the tensors asked for */

    /* more than 1000 elements: summarised like numpy; --full prints them all */
    snprintf(args, sizeof args, "inspect %s/big --tensor emb/big", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "emb/big:\n[[0.000e+00 1.000e+00 2.000e+00 ... 4.700e+01 4.800e+01 4.900e+01]\n"
                             " [5.000e+01 5.100e+01 5.200e+01 ... 9.700e+01 9.800e+01 9.900e+01]\n");
    ASSERT_STR_CONTAINS(out, "\n ...\n [1.850e+03 ");
    ASSERT_STR_CONTAINS(out, "1.997e+03 1.998e+03 1.999e+03]]\n");
    ASSERT_TRUE(!strstr(out, "1.000e+03"));
    snprintf(args, sizeof args, "inspect %s/big --tensor emb/big --full", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "1.000e+03");
    ASSERT_TRUE(!strstr(out, "..."));

    /* an unknown name: an error naming the nearest keys */
    snprintf(args, sizeof args, "inspect %s/m --tensor layer1/bias", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_STARTS(out, "recur inspect: no tensor 'layer1/bias' in ");
    ASSERT_STR_CONTAINS(out, "nearest keys: layer1/b");
    ck_cleanup();
}

TEST(ckpt_inspect_tensorflow_golden)
{
    char args[2048], out[65536];
    /* a directory: its `checkpoint` file names the Saver's checkpoint, unicode keys included */
    snprintf(args, sizeof args, "inspect %s --stats", rt_path("tests/golden/ckpt/dtypes"));
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "dtypes/model.ckpt: 11 tensors");
    ASSERT_STR_CONTAINS(row(out, "\xc3\xbcn\xc3\xaf" "code/\xce\xb2" "eta"), "(2,)");
    ASSERT_NEAR(atof(field_from_end(out, "\xc3\xbcn\xc3\xaf" "code/\xce\xb2" "eta", 3)), -2.25, 1e-9);
    ASSERT_STR_CONTAINS(row(out, "strings"), "string");
    ASSERT_STR_CONTAINS(row(out, "strings"), "(3,)");
    ASSERT_EQ_STR(field_from_end(out, "strings", 1), "-"); /* no stats for strings */
    ASSERT_STR_CONTAINS(row(out, "str_scalar"), "()");
    ASSERT_EQ_STR(field_from_end(out, "layer1/sub/weights", 1), "1"); /* one NaN */
    ASSERT_EQ_STR(field_from_end(out, "layer1/sub/weights", 5), "-inf");
    ASSERT_EQ_STR(field_from_end(out, "int32_mat", 5), "-2147483648");
    ASSERT_EQ_STR(field_from_end(out, "int64_vec", 4), "4503599627370496");
    ASSERT_STR_CONTAINS(row(out, "empty2d"), "(2, 0)");
    snprintf(args, sizeof args, "inspect %s --tensor strings --tensor double_vec --tensor empty",
             rt_path("tests/golden/ckpt/dtypes"));
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "strings:\n[b'' b'hello' b'\\xc3\\xbc\\xc3\\xb1\\x00x']\n");
    ASSERT_STR_CONTAINS(out, "double_vec:\n[ 1.50e+000 -2.25e+000  1.00e+300]\n");
    ASSERT_STR_CONTAINS(out, "empty:\n[]\n");
    /* Adam slots, the latest of two checkpoints */
    snprintf(args, sizeof args, "inspect %s --tensor global_step", rt_path("tests/golden/ckpt/adam"));
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "adam/model.ckpt-3: 9 tensors");
    ASSERT_STR_CONTAINS(out, "global_step:\n3\n");
    snprintf(args, sizeof args, "inspect %s", rt_path("tests/golden/ckpt/adam"));
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(row(out, "w/Adam_1"), "(3, 2)");
    /* object-based keys and the object graph string */
    snprintf(args, sizeof args, "inspect %s", rt_path("tests/golden/ckpt/object"));
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(row(out, "model/layer/kernel/.ATTRIBUTES/VARIABLE_VALUE"), "(2, 2)");
    ASSERT_STR_CONTAINS(row(out, "_CHECKPOINTABLE_OBJECT_GRAPH"), "string");
}

TEST(ckpt_diff_values_keys_and_suggested_map)
{
    ck_setup();
    char args[2048], out[65536];
    write_model(pathf_ck("a"), "layer1", 0.5f, 4);
    write_model(pathf_ck("a2"), "layer1", 0.5f, 4);    /* the same tensors written again */
    write_model(pathf_ck("b"), "layer1", 0.5f, 4.25f); /* one value changed */
    write_model(pathf_ck("enc"), "encoder", 0.5f, 4);  /* the scope renamed */

    snprintf(args, sizeof args, "diff %s/a %s/a2", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "A and B are the same: 5 tensors");

    snprintf(args, sizeof args, "diff %s/a %s/b", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "values differ (1 of 5 tensors in both)");
    ASSERT_EQ_STR(field_from_end(out, "  layer1/b", 4), "0.25"); /* max abs diff */
    ASSERT_STR_CONTAINS(row(out, "  layer1/b"), "1 of 4");
    ASSERT_TRUE(!strstr(out, "  diverged")); /* NaN equals NaN */
    ASSERT_STR_CONTAINS(out, "A and B differ: 1 of 5 tensors in both with different values");
    snprintf(args, sizeof args, "diff %s/a %s/b --atol 0.3", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "diff -q %s/a %s/b", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_EQ_STR(out, "");

    snprintf(args, sizeof args, "diff %s/a %s/enc", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "only in A (2):\n  layer1/b  float  (4,)\n  layer1/w  float  (3, 4)\n");
    ASSERT_STR_CONTAINS(out, "only in B (2):\n  encoder/b  float  (4,)\n  encoder/w  float  (3, 4)\n");
    ASSERT_STR_CONTAINS(out, "suggested name map (key or scope of A -> of B):\n  layer1/  ->  encoder/\n");
    ASSERT_STR_CONTAINS(out, "--map layer1/=encoder/ --out NEW_PREFIX");
    ASSERT_STR_CONTAINS(out, "after which A has exactly B's keys");

    /* a changed shape and dtype */
    float w6[6] = {0};
    double b4[4] = {1, 2, 3, 4};
    ck_tensor t[] = {{"layer1/b", RECUR_F64, RECUR_SHAPE(4), b4}, {"layer1/w", RECUR_F32, RECUR_SHAPE(2, 3), w6}};
    write_ckpt(pathf_ck("c"), t, 2);
    snprintf(args, sizeof args, "diff %s/a %s/c", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "dtype or shape changed (2):");
    ASSERT_STR_CONTAINS(row(out, "  layer1/b"), "float (4,)");
    ASSERT_STR_CONTAINS(row(out, "  layer1/b"), "double (4,)");
    ASSERT_STR_CONTAINS(row(out, "  layer1/w"), "float (3, 4)  float (2, 3)");
    ASSERT_STR_CONTAINS(out, "only in A (3):");
    ASSERT_TRUE(!strstr(out, "only in B"));

    /* errors: exit 2, as diff(1) */
    snprintf(args, sizeof args, "diff %s/a %s/missing", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur diff: The passed save_path is not a valid checkpoint");
    ck_cleanup();
}

TEST(ckpt_rename_then_diff)
{
    ck_setup();
    char args[2048], out[65536];
    write_model(pathf_ck("a"), "layer1", 0.5f, 4);
    write_model(pathf_ck("expected"), "encoder", 0.5f, 4);

    snprintf(args, sizeof args, "rename %s/a --map layer1/=encoder/ --out %s/out/renamed", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "layer1/b  ->  encoder/b");
    ASSERT_STR_CONTAINS(out, "5 tensors, 2 renamed");
    snprintf(args, sizeof args, "diff %s/out/renamed %s/expected", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    /* exact names, and the root scope */
    snprintf(args, sizeof args, "rename %s/a --map layer1/w=dense/kernel --map /=model/ --out %s/r2", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "inspect %s/r2", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(row(out, "dense/kernel"), "(3, 4)");
    ASSERT_STR_CONTAINS(row(out, "model/layer1/b"), "(4,)");
    ASSERT_STR_CONTAINS(row(out, "model/global_step"), "()");

    /* TensorFlow's checkpoint there and back: strings, unicode and every dtype survive */
    snprintf(args, sizeof args, "rename %s --map /=outer/ --out %s/tf/x", rt_path("tests/golden/ckpt/dtypes"), ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "rename %s/tf/x --map outer/=/ --out %s/tf/back", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "diff %s %s/tf/back", rt_path("tests/golden/ckpt/dtypes"), ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "A and B are the same: 11 tensors");
    /* written in key order as TensorFlow's Saver writes: the very bytes TensorFlow wrote */
    const char *files[] = {"index", "data-00000-of-00001"};
    for (int i = 0; i < 2; i++) {
        char golden[1024], back[1024];
        snprintf(golden, sizeof golden, "%s.%s", rt_path("tests/golden/ckpt/dtypes/model.ckpt"), files[i]);
        snprintf(back, sizeof back, "%s/tf/back.%s", ckdir, files[i]);
        size_t n1, n2;
        char *d1 = slurp(golden, &n1), *d2 = slurp(back, &n2);
        ASSERT_TRUE(d1 && d2 && n1 == n2 && !memcmp(d1, d2, n1));
        free(d1);
        free(d2);
    }

    /* two keys onto one name */
    snprintf(args, sizeof args, "rename %s/a --map layer1/b=layer1/w --out %s/bad1", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "recur rename: keys 'layer1/b' and 'layer1/w' would both be named 'layer1/w'");
    ASSERT_FALSE(exists(pathf_ck("bad1.index")));
    snprintf(args, sizeof args, "rename %s/a --map layer1/=/ --out %s/bad2", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0); /* layer1/w -> w: no clash */
    snprintf(args, sizeof args, "rename %s/a --map layer1/w=flags --out %s/bad3", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "would both be named 'flags'");
    /* entries that match nothing */
    snprintf(args, sizeof args, "rename %s/a --map layer2/=encoder/ --out %s/bad4", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "map entry 'layer2/=encoder/' matches nothing: no key lies under scope 'layer2/'");
    snprintf(args, sizeof args, "rename %s/a --map layer1=encoder --out %s/bad5", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "end both sides with '/': --map layer1/=encoder/");
    ASSERT_FALSE(exists(pathf_ck("bad4.index")) || exists(pathf_ck("bad5.index")));
    /* never over the input */
    snprintf(args, sizeof args, "rename %s/a --map layer1/=encoder/ --out %s/../%s/a", ckdir, ckdir,
             strrchr(ckdir, '/') + 1);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "is the input checkpoint");
    snprintf(args, sizeof args, "diff %s/a %s/a2", ckdir, ckdir); /* untouched */
    write_model(pathf_ck("a2"), "layer1", 0.5f, 4);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    /* --dry-run writes nothing */
    snprintf(args, sizeof args, "rename %s/a --map layer1/=encoder/ --out %s/dry --dry-run", ckdir, ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "2 of 5 keys would be renamed");
    ASSERT_FALSE(exists(pathf_ck("dry.index")));
    ck_cleanup();
}

TEST(ckpt_tools_help_and_usage_errors)
{
    char out[65536];
    ASSERT_EQ_INT(run("--help", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "  inspect ");
    ASSERT_STR_CONTAINS(out, "  diff ");
    ASSERT_STR_CONTAINS(out, "  rename ");
    ASSERT_EQ_INT(run("inspect --help", out, sizeof out), 0);
    ASSERT_STR_STARTS(out, "usage: recur inspect PREFIX");
    ASSERT_STR_CONTAINS(out, "--stats");
    ASSERT_STR_CONTAINS(out, "exit status: 0 done, 1 error");
    ASSERT_EQ_INT(run("diff --help", out, sizeof out), 0);
    ASSERT_STR_STARTS(out, "usage: recur diff PREFIX_A PREFIX_B");
    ASSERT_STR_CONTAINS(out, "0 the checkpoints are the same, 1 they differ, 2 error");
    ASSERT_EQ_INT(run("rename --help", out, sizeof out), 0);
    ASSERT_STR_STARTS(out, "usage: recur rename PREFIX --map OLD=NEW");
    ASSERT_STR_CONTAINS(out, "--dry-run");

    ASSERT_EQ_INT(run("inspect", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur inspect: missing PREFIX\nusage: recur inspect");
    ASSERT_EQ_INT(run("inspect --frob x", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur inspect: unknown option '--frob'");
    ASSERT_EQ_INT(run("inspect a b", out, sizeof out), 2);
    ASSERT_EQ_INT(run("inspect x --tensor", out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "option --tensor needs a value");
    ASSERT_EQ_INT(run("inspect /nonexistent/ckpt", out, sizeof out), 1);
    ASSERT_STR_STARTS(out, "recur inspect: The passed save_path is not a valid checkpoint: /nonexistent/ckpt");
    ck_setup(); /* a directory without a `checkpoint` file */
    char args[512], expect[512];
    snprintf(args, sizeof args, "inspect %s", ckdir);
    snprintf(expect, sizeof expect, "recur inspect: No checkpoint state file in %s", ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_STARTS(out, expect);
    ck_cleanup();

    ASSERT_EQ_INT(run("diff", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur diff: missing PREFIX_A and PREFIX_B");
    ASSERT_EQ_INT(run("diff a", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur diff: missing PREFIX_B");
    ASSERT_EQ_INT(run("diff a b --frob", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur diff: unknown option '--frob'");
    ASSERT_EQ_INT(run("diff a b --atol x", out, sizeof out), 2);

    ASSERT_EQ_INT(run("rename", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur rename: missing PREFIX");
    ASSERT_EQ_INT(run("rename x --out y", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur rename: at least one --map OLD=NEW is required");
    ASSERT_EQ_INT(run("rename x --map a/=b/", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur rename: --out NEW_PREFIX is required");
    ASSERT_EQ_INT(run("rename x --map a/=b --out y", out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "OLD and NEW must both be scopes ending in '/' or both be key names");
    ASSERT_EQ_INT(run("rename x --map ab --out y", out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "--map expects OLD=NEW, got 'ab'");
    ASSERT_EQ_INT(run("rename x --map a=b --frob --out y", out, sizeof out), 2);
    ASSERT_STR_STARTS(out, "recur rename: unknown option '--frob'");
}

typedef struct pairs_seen {
    int n;
    char text[1024];
} pairs_seen;

static void note_pair(void *user, const char *old_name, const char *new_name)
{
    pairs_seen *p = user;
    size_t len = strlen(p->text);
    snprintf(p->text + len, sizeof p->text - len, "%s%s -> %s", p->n++ ? "; " : "", old_name, new_name);
}

TEST(ckpt_suggest_map_api)
{
    ck_setup();
    recur_status *st = recur_status_new();
    write_model(pathf_ck("a"), "layer1", 0.5f, 4);
    write_model(pathf_ck("enc"), "encoder", 0.5f, 4);
    recur_checkpoint *a = recur_checkpoint_open(pathf_ck("a"), st), *enc = recur_checkpoint_open(pathf_ck("enc"), st);
    ASSERT_OK(st);
    pairs_seen seen = {0};
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(a, enc, note_pair, &seen, st), 1);
    ASSERT_OK(st);
    ASSERT_EQ_STR(seen.text, "layer1/ -> encoder/");
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(enc, a, NULL, NULL, st), 1); /* counting only */
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(a, a, note_pair, &seen, st), 0);
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(a, NULL, note_pair, &seen, st), -1);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    recur_checkpoint_close(a);
    recur_checkpoint_close(enc);

    /* keys moved into two new scopes: the map (read as init_from_checkpoint reads it) maps the
     * root twice; `recur diff` turns it into renames that apply forwards */
    char args[2048], out[65536];
    snprintf(args, sizeof args, "rename %s --map w/=enc/w/ --map w=enc/w --map /=model/ --out %s/moved",
             rt_path("tests/golden/ckpt/adam"), ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 0);
    a = recur_checkpoint_open(rt_path("tests/golden/ckpt/adam/model.ckpt-3"), st);
    recur_checkpoint *moved = recur_checkpoint_open(pathf_ck("moved"), st);
    ASSERT_OK(st);
    seen = (pairs_seen){0};
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(a, moved, note_pair, &seen, st), 2);
    ASSERT_EQ_STR(seen.text, "/ -> enc/; / -> model/");
    recur_checkpoint_close(a);
    recur_checkpoint_close(moved);
    snprintf(args, sizeof args, "diff %s %s/moved", rt_path("tests/golden/ckpt/adam"), ckdir);
    ASSERT_EQ_INT(run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "  w/Adam_1     ->  enc/w/Adam_1\n");
    ASSERT_STR_CONTAINS(out, "  global_step  ->  model/global_step\n");
    ASSERT_STR_CONTAINS(out, "after which A has exactly B's keys");
    recur_status_free(st);
    ck_cleanup();
}

RUN_TESTS(T(train_predict_eval), T(same_seed_same_model_bit_for_bit), T(bad_lines_and_labels_are_reported),
          T(non_finite_loss_stops_naming_step_and_op), T(help_for_every_command), T(ckpt_inspect_lists_and_stats),
          T(ckpt_inspect_tensor_values), T(ckpt_inspect_tensorflow_golden), T(ckpt_diff_values_keys_and_suggested_map),
          T(ckpt_rename_then_diff), T(ckpt_tools_help_and_usage_errors), T(ckpt_suggest_map_api))
