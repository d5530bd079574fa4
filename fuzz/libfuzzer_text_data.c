/* libfuzzer_text_data.c - the text_data fuzz target's entry point for libFuzzer and AFL++. */
#include "fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_text_data(data, size); }
