/*
 * runner.h - the test runner: each test runs in its own child process with a timeout;
 * assertions print both values; the last line of a run is "N passed, N failed".
 *
 *   TEST(name) { ASSERT_EQ_INT(1 + 1, 2); }
 *   RUN_TESTS(T(name), ...)
 *
 * Environment: RECUR_TEST_NOFORK=1 runs tests in-process (for gdb/valgrind);
 * RECUR_TEST_TIMEOUT=<seconds> (default 300). Arguments: substrings selecting tests.
 */
#ifndef RECUR_TEST_RUNNER_H
#define RECUR_TEST_RUNNER_H

#include "recur.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rt_test {
    const char *name;
    void (*fn)(void);
} rt_test;

int rt_main(int argc, char **argv, const rt_test *tests, size_t n);
_Noreturn void rt_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Directory of the source tree (for golden files); from RECUR_SRC_DIR or ".". */
const char *rt_src_dir(void);
/* Path under the source tree: rt_path("tests/golden/x") (static buffer, rotating 8 slots). */
const char *rt_path(const char *rel);
/* The whole file, NUL-terminated (malloc'd; *n = its size when n is not NULL); fails the test
 * when it cannot be read. */
void *rt_read_file(const char *path, size_t *n);

#define TEST(name) static void name(void)
#define T(fn) {#fn, fn}
#define RUN_TESTS(...)                                                                         \
    int main(int argc, char **argv)                                                            \
    {                                                                                          \
        static const rt_test tests_[] = {__VA_ARGS__};                                         \
        return rt_main(argc, argv, tests_, sizeof tests_ / sizeof tests_[0]);                  \
    }

#define ASSERT_TRUE(c)                                                                         \
    do {                                                                                       \
        if (!(c)) rt_fail(__FILE__, __LINE__, "expected true: %s", #c);                        \
    } while (0)
#define ASSERT_FALSE(c)                                                                        \
    do {                                                                                       \
        if (c) rt_fail(__FILE__, __LINE__, "expected false: %s", #c);                          \
    } while (0)
#define ASSERT_EQ_INT(a, b)                                                                    \
    do {                                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                                    \
        if (a_ != b_) rt_fail(__FILE__, __LINE__, "%s == %s: %lld vs %lld", #a, #b, a_, b_);   \
    } while (0)
#define ASSERT_NE_INT(a, b)                                                                    \
    do {                                                                                       \
        long long a_ = (long long)(a), b_ = (long long)(b);                                    \
        if (a_ == b_) rt_fail(__FILE__, __LINE__, "%s != %s: both %lld", #a, #b, a_);         \
    } while (0)
#define ASSERT_EQ_STR(a, b)                                                                    \
    do {                                                                                       \
        const char *a_ = (a), *b_ = (b);                                                       \
        if (!a_ || !b_ || strcmp(a_, b_))                                                      \
            rt_fail(__FILE__, __LINE__, "%s == %s:\n  \"%s\"\n  vs\n  \"%s\"", #a, #b,         \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
    } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                                       \
    do {                                                                                       \
        const char *h_ = (hay), *n_ = (needle);                                                \
        if (!h_ || !strstr(h_, n_))                                                            \
            rt_fail(__FILE__, __LINE__, "%s should contain \"%s\":\n  \"%s\"", #hay, n_,       \
                    h_ ? h_ : "(null)");                                                       \
    } while (0)
#define ASSERT_STR_STARTS(hay, prefix)                                                         \
    do {                                                                                       \
        const char *h_ = (hay), *p_ = (prefix);                                                \
        if (!h_ || strncmp(h_, p_, strlen(p_)))                                                \
            rt_fail(__FILE__, __LINE__, "%s should start with \"%s\":\n  \"%s\"", #hay, p_,    \
                    h_ ? h_ : "(null)");                                                       \
    } while (0)
#define ASSERT_NEAR(a, b, tol)                                                                 \
    do {                                                                                       \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                         \
        if (!(fabs(a_ - b_) <= t_))                                                            \
            rt_fail(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, t_); \
    } while (0)
/* Status helpers */
#define ASSERT_OK(st)                                                                          \
    do {                                                                                       \
        const recur_status *s_ = (st);                                                         \
        if (!recur_status_ok(s_))                                                              \
            rt_fail(__FILE__, __LINE__, "expected OK, got %s: %s",                             \
                    recur_code_name(recur_status_code(s_)), recur_status_message(s_));         \
    } while (0)
#define ASSERT_GRAPH_OK(g)                                                                     \
    do {                                                                                       \
        if (!recur_graph_ok(g))                                                                \
            rt_fail(__FILE__, __LINE__, "graph error %s: %s",                                  \
                    recur_code_name(recur_graph_code(g)), recur_graph_message(g));             \
    } while (0)
#define ASSERT_CODE(st, code)                                                                  \
    do {                                                                                       \
        const recur_status *s_ = (st);                                                         \
        if (recur_status_code(s_) != (code))                                                   \
            rt_fail(__FILE__, __LINE__, "expected %s, got %s: %s", recur_code_name(code),      \
                    recur_code_name(recur_status_code(s_)), recur_status_message(s_));         \
    } while (0)

#endif
