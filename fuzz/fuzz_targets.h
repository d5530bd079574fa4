/*
 * fuzz_targets.h - one function per parser of outside data, each taking arbitrary bytes. The
 * libFuzzer wrappers (fuzz/libfuzzer_*.c), the AFL++ / replay driver (fuzz/standalone_main.c)
 * and tests/test_fuzz_regress.c all call these. Input layouts (byte 0 = "flags" where noted):
 *
 *   ckpt_index   flags, then the bytes of PREFIX.index; the data file is a fixed 4 KiB.
 *   ckpt_bundle  flags, a 4-byte little-endian length L, L bytes of PREFIX.index, then the
 *                bytes of PREFIX.data-00000-of-00001 (L larger than what is left: all of it).
 *   state_file   the bytes of DIR/checkpoint.
 *   text_data    the bytes of a `recur train` data file (label<TAB>text lines).
 *
 * Flags: bit 0 recomputes the checksums of the table blocks the harness can locate, bit 1
 * (ckpt_bundle) recomputes every entry's data checksum (and a string tensor's length
 * checksum) and rebuilds the index, so that mutations reach the code behind the checksums.
 *
 * Each function returns 0. It aborts only when recur breaks a promise the harness checks (a
 * failed call with an OK status, a round trip that changes a value); crashes, leaks and
 * undefined behaviour are for the sanitizers to catch. Files go to a private directory
 * (under /dev/shm when it exists), made on first use and removed at exit or by fuzz_cleanup.
 */
#ifndef RECUR_FUZZ_TARGETS_H
#define RECUR_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

int fuzz_ckpt_index(const uint8_t *data, size_t size);
int fuzz_ckpt_bundle(const uint8_t *data, size_t size);
int fuzz_state_file(const uint8_t *data, size_t size);
int fuzz_text_data(const uint8_t *data, size_t size);

typedef struct fuzz_target {
    const char *name; /* as in fuzz/corpus/<name>/ */
    int (*fn)(const uint8_t *data, size_t size);
} fuzz_target;

extern const fuzz_target fuzz_targets[];
extern const size_t fuzz_num_targets;

/* Remove the private directory (it is made again on the next call). */
void fuzz_cleanup(void);

#endif
