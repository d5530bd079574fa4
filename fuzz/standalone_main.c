/*
 * standalone_main.c - main() for the fuzz targets when they are not linked with libFuzzer:
 *
 *   PROG FILE...   run each file once (replaying a crash, or a corpus, without libFuzzer)
 *   PROG           one input from stdin, or, built with afl-clang-fast, AFL++'s persistent
 *                  mode (fuzz/README.md: make fuzz-afl)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef __AFL_FUZZ_TESTCASE_LEN
__AFL_FUZZ_INIT();
#endif

/* All of f; NULL when it cannot be read. */
static uint8_t *slurp(FILE *f, size_t *n)
{
    size_t cap = 4096;
    uint8_t *b = malloc(cap);
    *n = 0;
    for (size_t got; b && (got = fread(b + *n, 1, cap - *n, f)) > 0;) {
        *n += got;
        if (*n == cap) {
            uint8_t *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    if (b && ferror(f)) {
        free(b);
        b = NULL;
    }
    return b;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t n;
        uint8_t *b = f ? slurp(f, &n) : NULL;
        if (f) fclose(f);
        if (!b) {
            fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput(b, n);
        free(b);
    }
    if (argc > 1) return 0;
#ifdef __AFL_FUZZ_TESTCASE_LEN
    __AFL_INIT();
    const uint8_t *buf = __AFL_FUZZ_TESTCASE_BUF;
    while (__AFL_LOOP(10000)) LLVMFuzzerTestOneInput(buf, (size_t)__AFL_FUZZ_TESTCASE_LEN);
    return 0;
#else
    size_t n;
    uint8_t *b = slurp(stdin, &n);
    if (!b) return 1;
    LLVMFuzzerTestOneInput(b, n);
    free(b);
    return 0;
#endif
}
