# fuzz/fuzz.mk - builds and runs the fuzz targets (fuzz/README.md). The top Makefile's
# `make fuzz`, `make fuzz-merge` and `make fuzz-afl` come here; this file then calls itself
# with the compiler and flags set, including the top Makefile for its compile rules, so the
# library is built into its own directory (build/fuzz, build/fuzz-afl).
#
#   make fuzz [FUZZ_TIME=60]   build, then run each target FUZZ_TIME seconds (libFuzzer)
#   make fuzz-merge            add the inputs of build/fuzz/corpus that reach new code to the
#                              committed seeds in fuzz/corpus
#   make fuzz-afl              the same harnesses built with afl-clang-fast (build/fuzz-afl)
#   make -f fuzz/fuzz.mk fuzz-seeds   regenerate the checkpoint seeds (fuzz/make_seeds.c)

FUZZ_TARGETS := ckpt_index ckpt_bundle state_file text_data
FUZZ_TIME    ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CC      ?= clang
FUZZ_AFL_CC  ?= afl-clang-fast

ifndef FUZZ_INNER
.PHONY: fuzz fuzz-build fuzz-merge fuzz-afl fuzz-seeds
fuzz fuzz-build fuzz-merge:
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk FUZZ_INNER=libfuzzer CC=$(FUZZ_CC) BUILD=build/fuzz \
		OPT='-O1 -g' SANFLAGS='$(FUZZ_SAN) -fsanitize=fuzzer-no-link' _$@
fuzz-afl:
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk FUZZ_INNER=afl CC=$(FUZZ_AFL_CC) BUILD=build/fuzz-afl \
		OPT='-O1 -g' SANFLAGS='$(FUZZ_SAN)' _$@
fuzz-seeds:
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk FUZZ_INNER=seeds BUILD=build/fuzz-seeds _$@
else
# The inner make: the top Makefile's variables and rules, built into $(BUILD).
include Makefile

FUZZ_BIN := $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)
FUZZ_OBJ := $(BUILD)/fuzz/fuzz_targets.o $(BUILD)/tools/classifier.o $(BUILD)/librecur.a
.PHONY: _fuzz _fuzz-build _fuzz-merge _fuzz-afl _fuzz-seeds

ifeq ($(FUZZ_INNER),afl)
# AFL++'s instrumentation pass (with clang 14) crashes on target_clones functions (src/rnn,
# src/train), so only what the targets exercise is instrumented; the rest is built by clang.
$(filter-out $(BUILD)/src/io/% $(BUILD)/src/core/%,$(LIB_OBJ)): override CC = $(FUZZ_CC)
$(BUILD)/fuzz_%: $(BUILD)/fuzz/libfuzzer_%.o $(BUILD)/fuzz/standalone_main.o $(FUZZ_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)
else
$(BUILD)/fuzz_%: $(BUILD)/fuzz/libfuzzer_%.o $(FUZZ_OBJ)
	$(CC) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)
endif

_fuzz-build: $(FUZZ_BIN)
_fuzz: $(FUZZ_BIN)
	@fuzz/run.sh run $(BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)
_fuzz-merge: $(FUZZ_BIN)
	@fuzz/run.sh merge $(BUILD) 0 $(FUZZ_TARGETS)
_fuzz-afl: $(FUZZ_BIN)
	@echo "AFL++ builds of the fuzz targets are in $(BUILD); for example:"
	@echo "  afl-fuzz -i fuzz/corpus/state_file -o build/fuzz-afl/out -- $(BUILD)/fuzz_state_file"

$(BUILD)/make_seeds: $(BUILD)/fuzz/make_seeds.o $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)
_fuzz-seeds: $(BUILD)/make_seeds
	$(BUILD)/make_seeds tests/golden/ckpt fuzz/corpus
endif
