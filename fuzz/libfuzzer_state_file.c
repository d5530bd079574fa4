/* libfuzzer_state_file.c - the state_file fuzz target's entry point for libFuzzer and AFL++. */
#include "fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_state_file(data, size); }
