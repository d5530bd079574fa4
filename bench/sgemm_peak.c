/*
 * sgemm_peak.c - the machine's SGEMM peak for `make bench`: times cblas_sgemm on N x N x N
 * single-precision matrices at each requested thread count and prints one JSON line
 *
 *   {"n", "corename", "config", "runs": [{"threads", "gflops_best", "gflops_median", "ms": [...]}]}
 *
 *   sgemm_peak [--n 2048] [--reps 10] [--threads 1,2]
 *
 * Like the recur command it re-runs itself with OPENBLAS_CORETYPE set when OpenBLAS picked its
 * slow fallback kernels (tools/blas_env.c), so the peak is measured with the same kernels recur
 * uses; "corename" says which kernel set OpenBLAS ran. The OpenBLAS calls are weak symbols: with
 * another CBLAS the thread count comes from the environment and corename is "unknown".
 */
#include "../tools/blas_env.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *openblas_get_corename(void) __attribute__((weak));
char *openblas_get_config(void) __attribute__((weak));
void openblas_set_num_threads(int) __attribute__((weak));

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    recur_tools_fix_blas(argv);
    int n = 2048, reps = 10;
    const char *threads = "1,2";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = argv[i + 1];
        else {
            fprintf(stderr, "usage: sgemm_peak [--n 2048] [--reps 10] [--threads 1,2]\n");
            return 2;
        }
    }
    if (n < 1 || reps < 1) {
        fprintf(stderr, "sgemm_peak: --n and --reps must be positive\n");
        return 2;
    }
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    double *ms = malloc((size_t)reps * sizeof *ms);
    if (!a || !b || !c || !ms) {
        fprintf(stderr, "sgemm_peak: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((i * 7 + 3) % 17) * 0.01f - 0.08f;
        b[i] = (float)((i * 5 + 1) % 13) * 0.01f - 0.06f;
    }
    double flops = 2.0 * n * (double)n * (double)n;
    const char *core = openblas_get_corename ? openblas_get_corename() : "unknown";
    const char *config = openblas_get_config ? openblas_get_config() : "unknown";
    printf("{\"n\": %d, \"corename\": \"%s\", \"config\": \"%s\", \"runs\": [", n, core, config);
    char *list = strdup(threads), *save = NULL;
    int first = 1;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int nt = atoi(t);
        if (nt < 1) continue;
        if (openblas_set_num_threads) openblas_set_num_threads(nt);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = now_ms();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            ms[r] = now_ms() - t0;
        }
        printf("%s{\"threads\": %d, \"ms\": [", first ? "" : ", ", nt);
        for (int r = 0; r < reps; r++) printf("%s%.3f", r ? ", " : "", ms[r]);
        qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
        printf("], \"gflops_best\": %.2f, \"gflops_median\": %.2f}", flops / ms[0] * 1e-6, flops / ms[reps / 2] * 1e-6);
        first = 0;
    }
    printf("], \"check\": %g}\n", (double)c[nn / 2]); /* a result element, so the products are not elided */
    free(list);
    free(a);
    free(b);
    free(c);
    free(ms);
    return 0;
}
