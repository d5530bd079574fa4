/*
 * blas_env.c - make sure the recur command gets OpenBLAS's fast kernels.
 *
 * Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) does not recognise some recent Xeons and falls back
 * to its SSE3 "Prescott" kernels, five times slower than the AVX-512 ones on the same machine.
 * The kernel set is chosen when the library loads, from OPENBLAS_CORETYPE, so when the choice
 * was the fallback on a CPU with AVX-512 (or AVX2) the command sets the variable and runs itself
 * again. A BLAS other than OpenBLAS, or a user's own OPENBLAS_CORETYPE, is left alone.
 */
#include "blas_env.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void) __attribute__((weak));

void recur_tools_fix_blas(char **argv)
{
    if (!openblas_get_corename || getenv("OPENBLAS_CORETYPE") || getenv("RECUR_NO_BLAS_FIX")) return;
    const char *core = openblas_get_corename();
    if (!core || (strcmp(core, "Prescott") && strcmp(core, "Core2") && strcmp(core, "Nehalem"))) return;
    __builtin_cpu_init();
    const char *want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : NULL;
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv); /* on failure, carry on with the slow kernels */
}
