/*
 * blas_env.h - see blas_env.c.
 */
#ifndef RECUR_TOOLS_BLAS_ENV_H
#define RECUR_TOOLS_BLAS_ENV_H

/* Re-run the program with OPENBLAS_CORETYPE set when OpenBLAS picked its slow fallback kernels
 * on a CPU that has AVX-512 or AVX2. Returns only when nothing needs doing (or exec failed). */
void recur_tools_fix_blas(char **argv);

#endif
