/*
 * test_fuzz_regress.c - the fuzz targets (fuzz/fuzz_targets.h) run on every committed seed
 * (fuzz/corpus/<target>/) and every input that once made one fail
 * (tests/golden/fuzz_regress/<target>/), so `make test` keeps what fuzzing found fixed.
 * A target aborts on a broken promise and the sanitizers catch the rest (make test SANITIZE=1);
 * to see which input fails, run the standalone or libFuzzer build of the target on the
 * directory (fuzz/README.md). Also inputs too large for the fuzzers' length limit.
 */
#include "runner.h"
#include "../fuzz/fuzz_targets.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Run fn on every file of DIR (a path under the source tree); the number of files. */
static int run_dir(int (*fn)(const uint8_t *, size_t), const char *dir, bool must_exist)
{
    char root[4096];
    snprintf(root, sizeof root, "%s", rt_path(dir));
    DIR *d = opendir(root);
    if (!d) {
        if (must_exist) rt_fail(__FILE__, __LINE__, "cannot open %s", root);
        return 0;
    }
    char *names[1024];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[8192];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            uint8_t *b = rt_read_file(path, &len);
            ASSERT_EQ_INT(fn(b, len), 0);
            free(b);
        }
        free(names[i]);
    }
    return (int)n;
}

/* Seeds (at least one each) and regression inputs of the target called `name`. */
static void run_target(const char *name)
{
    const fuzz_target *t = NULL;
    for (size_t i = 0; i < fuzz_num_targets; i++)
        if (!strcmp(fuzz_targets[i].name, name)) t = &fuzz_targets[i];
    ASSERT_TRUE(t != NULL);
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", name);
    ASSERT_TRUE(run_dir(t->fn, dir, true) > 0);
    snprintf(dir, sizeof dir, "tests/golden/fuzz_regress/%s", name);
    run_dir(t->fn, dir, false);
    /* The empty input, and every prefix of one seed-sized input of zeros. */
    uint8_t zeros[64] = {0};
    for (size_t n = 0; n <= sizeof zeros; n++) ASSERT_EQ_INT(t->fn(zeros, n), 0);
    fuzz_cleanup();
}

TEST(ckpt_index_inputs) { run_target("ckpt_index"); }
TEST(ckpt_bundle_inputs) { run_target("ckpt_bundle"); }
TEST(state_file_inputs) { run_target("state_file"); }
TEST(text_data_inputs) { run_target("text_data"); }

/* A state file nesting lists or messages a million levels deep once overflowed the stack of the
 * recursive parser; nesting beyond protobuf's limit of 100 is now refused with DATA_LOSS. */
TEST(state_file_deep_nesting_is_refused)
{
    const size_t depth = 1000000;
    const char *head = "model_checkpoint_path: \"ckpt\"\nfuture: ";
    for (int kind = 0; kind < 2; kind++) {
        size_t hl = strlen(head), n = hl + 1 + 2 * depth;
        char *text = malloc(n + 1);
        ASSERT_TRUE(text != NULL);
        memcpy(text, head, hl); /* then "{a{a{a{..." or "[[ [ [ ..." */
        text[hl] = kind ? '{' : '[';
        for (size_t i = 0; i < depth; i++) memcpy(text + hl + 1 + 2 * i, kind ? "a{" : "[ ", 2);
        ASSERT_EQ_INT(fuzz_state_file((const uint8_t *)text, n), 0);

        char dir[] = "/tmp/recur_fuzz_regress_XXXXXX", path[64], buf[256];
        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof path, "%s/checkpoint", dir);
        FILE *f = fopen(path, "wb");
        ASSERT_TRUE(f && fwrite(text, 1, n, f) == n && fclose(f) == 0);
        recur_status *st = recur_status_new();
        ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
        ASSERT_CODE(st, RECUR_DATA_LOSS);
        ASSERT_STR_CONTAINS(recur_status_message(st), ":2: cannot parse the checkpoint state: messages or lists nested too deeply");
        recur_status_free(st);
        unlink(path);
        rmdir(dir);
        free(text);
    }
    fuzz_cleanup();
}

RUN_TESTS(T(ckpt_index_inputs), T(ckpt_bundle_inputs), T(state_file_inputs), T(text_data_inputs),
          T(state_file_deep_nesting_is_refused))
