/* libfuzzer_ckpt_index.c - the ckpt_index fuzz target's entry point for libFuzzer and AFL++. */
#include "fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_ckpt_index(data, size); }
