/*
 * test_examples.c - the seed programs in examples/ print the same variable names, shapes and
 * error text as the TensorFlow form of the same programs (tests/golden/examples.golden).
 */
#include "runner.h"

#include <libgen.h>
#include <unistd.h>

/* Lines of `cmd`'s stdout that start with one of the compared prefixes. */
static char *interesting(const char *example)
{
    char exe[4096], cmd[8192];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) rt_fail(__FILE__, __LINE__, "cannot locate the test binary");
    exe[n] = 0;
    snprintf(cmd, sizeof cmd, "%s/../examples/%s", dirname(exe), example);
    FILE *p = popen(cmd, "r");
    if (!p) rt_fail(__FILE__, __LINE__, "cannot run %s", cmd);
    static char out[65536];
    size_t len = 0;
    char line[4096];
    out[0] = 0;
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, "variable ", 9) && strncmp(line, "static output shape ", 20) && strncmp(line, "error: ", 7)) continue;
        if (!strncmp(line, "error: ", 7)) {
            /* compare up to the frame list, as with TensorFlow's */
            char *cut = strstr(line, " Originally defined at:");
            if (cut) strcpy(cut, "\n");
        }
        len += (size_t)snprintf(out + len, sizeof out - len, "%s", line);
    }
    int rc = pclose(p);
    if (rc != 0) rt_fail(__FILE__, __LINE__, "%s exited with status %d", cmd, rc);
    return out;
}

static char *golden_section(const char *example)
{
    FILE *f = fopen(rt_path("tests/golden/examples.golden"), "r");
    if (!f) rt_fail(__FILE__, __LINE__, "cannot open examples.golden");
    static char out[65536];
    size_t len = 0;
    char line[4096];
    bool in = false;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "example ", 8)) {
            line[strcspn(line, "\n")] = 0;
            in = !strcmp(line + 8, example);
            continue;
        }
        if (in) len += (size_t)snprintf(out + len, sizeof out - len, "%s", line);
    }
    fclose(f);
    return out;
}

static void compare(const char *example)
{
    char want[65536];
    snprintf(want, sizeof want, "%s", golden_section(example));
    ASSERT_TRUE(want[0]);
    ASSERT_EQ_STR(interesting(example), want);
}

TEST(scoped_layers_matches_tensorflow) { compare("scoped_layers"); }
TEST(missing_scope_matches_tensorflow) { compare("missing_scope"); }
TEST(bidirectional_matches_tensorflow) { compare("bidirectional"); }

RUN_TESTS(T(scoped_layers_matches_tensorflow), T(missing_scope_matches_tensorflow), T(bidirectional_matches_tensorflow))
