/*
 * runner.c - runs each registered test in a forked child with a timeout and reports
 * "N passed, N failed".
 */
#include "runner.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *current_test = "?";

void rt_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  FAIL %s (%s:%d): ", current_test, file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

const char *rt_src_dir(void)
{
    const char *d = getenv("RECUR_SRC_DIR");
    return d && *d ? d : ".";
}

const char *rt_path(const char *rel)
{
    static char buf[8][4096];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", rt_src_dir(), rel);
    return b;
}

void *rt_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) rt_fail(__FILE__, __LINE__, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) rt_fail(__FILE__, __LINE__, "cannot read %s", path);
    fclose(f);
    b[len] = 0;
    if (n) *n = (size_t)len;
    return b;
}

static bool selected(int argc, char **argv, const char *name)
{
    /* RECUR_TEST_SKIP: comma-separated parts of names to leave out (e.g. timing-bound tests
     * under valgrind) */
    const char *skip = getenv("RECUR_TEST_SKIP");
    for (const char *p = skip; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n && strlen(name) >= n)
            for (const char *q = name; *q; q++)
                if (!strncmp(q, p, n)) return false;
        p += n + (p[n] == ',');
    }
    if (argc <= 1) return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return true;
    return false;
}

int rt_main(int argc, char **argv, const rt_test *tests, size_t n)
{
    const char *nf = getenv("RECUR_TEST_NOFORK");
    bool nofork = nf && *nf && strcmp(nf, "0");
    const char *to = getenv("RECUR_TEST_TIMEOUT");
    int timeout = to ? atoi(to) : 300;
    int passed = 0, failed = 0;
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    for (size_t i = 0; i < n; i++) {
        if (!selected(argc, argv, tests[i].name)) continue;
        current_test = tests[i].name;
        fflush(stdout);
        if (nofork) {
            tests[i].fn();
            printf("  ok   %s\n", tests[i].name);
            passed++;
            continue;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            alarm((unsigned)timeout);
            tests[i].fn();
            fflush(stdout);
            exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            printf("  ok   %s\n", tests[i].name);
            passed++;
        } else {
            if (WIFSIGNALED(status))
                printf("  FAIL %s: killed by signal %d%s\n", tests[i].name, WTERMSIG(status),
                       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
            else
                printf("  FAIL %s: exit status %d\n", tests[i].name, WEXITSTATUS(status));
            failed++;
        }
    }
    printf("%s: %d passed, %d failed\n", prog, passed, failed);
    return failed ? 1 : 0;
}
