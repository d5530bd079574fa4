# recur - build, test, demo, install. Plain GNU make; C11.
#
#   make              librecur.a, librecur.so and the recur command
#   make test         build and run every test (tests/test_*.c)
#   make demo         the main job (see README)
#   make install PREFIX=/usr/local
#   SANITIZE=1        AddressSanitizer + UndefinedBehaviorSanitizer build (own build dir)
#   WERROR=1          warnings are errors (CI)
#   BLAS=<pkg>        pkg-config name of the CBLAS to use (default openblas)

PREFIX  ?= /usr/local
CC      ?= cc
BLAS    ?= openblas
SETUP   := $(shell ./scripts/setup.sh --check >/dev/null 2>&1 || echo missing)

ifeq ($(SANITIZE),1)
BUILD   ?= build/asan
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     ?= -O1 -g
else
BUILD   ?= build/release
SANFLAGS =
# GCC's -O2 vectorises only loops that need no run-time alias check; the kernels need them.
OPT     ?= -O2 -g -march=x86-64-v2 -mtune=native $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-fvect-cost-model=dynamic)
endif

BLAS_CFLAGS := $(shell pkg-config --cflags $(BLAS) 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs $(BLAS) 2>/dev/null)
IO_LIBS     := $(shell pkg-config --libs libprotobuf-c snappy 2>/dev/null)
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
CFLAGS  += -std=c11 -D_GNU_SOURCE -fPIC -fno-math-errno $(OPT) $(WARN) $(SANFLAGS) -Iinclude -Isrc $(BLAS_CFLAGS)
LDLIBS  += $(BLAS_LIBS) $(IO_LIBS) -lm -lpthread
LDFLAGS += $(SANFLAGS)

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIB := $(BUILD)/tests/runner.o $(BUILD)/tests/golden.o $(BUILD)/tests/rnn_dsl.o
EX_SRC   := $(sort $(wildcard examples/*.c))
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)

.PHONY: all test demo install clean setup examples bench valgrind
all: $(BUILD)/librecur.a $(BUILD)/librecur.so $(BUILD)/recur

setup:
	@./scripts/setup.sh

# Header dependencies come from the compiler (-MMD), so a header change rebuilds only its users.
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

$(BUILD)/librecur.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/librecur.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

TOOL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tools/*.c)))

$(BUILD)/recur: $(TOOL_OBJ) $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_LIB) $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# tests/test_fuzz_regress.c runs the fuzz targets (fuzz/fuzz_targets.c, which also reaches the
# classifier's data loader) on their seeds and regression inputs.
$(BUILD)/tests/test_fuzz_regress: $(BUILD)/tests/test_fuzz_regress.o $(BUILD)/fuzz/fuzz_targets.o \
		$(BUILD)/tools/classifier.o $(TEST_LIB) $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

examples: $(EX_BIN)

test: $(if $(SETUP),setup) $(TEST_BIN) $(EX_BIN) $(BUILD)/recur
	@./tests/run_all.sh $(BUILD)/tests $(TEST_BIN:$(BUILD)/tests/%=%)

# make valgrind: memcheck over most test binaries (scripts/valgrind.sh; not under SANITIZE=1)
valgrind: $(TEST_BIN) $(EX_BIN) $(BUILD)/recur
	@./scripts/valgrind.sh $(BUILD)

demo: $(if $(SETUP),setup) $(EX_BIN) $(BUILD)/recur
	@./scripts/demo.sh $(BUILD)

# make bench: recur against PyTorch and TensorFlow on this machine (bench/README.md);
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--quick --cases lstm256".
$(BUILD)/bench_recur: $(BUILD)/bench/bench_recur.o $(BUILD)/tools/blas_env.o $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/sgemm_peak: $(BUILD)/bench/sgemm_peak.o $(BUILD)/tools/blas_env.o
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

bench: $(if $(SETUP),setup) $(BUILD)/bench_recur $(BUILD)/sgemm_peak $(BUILD)/recur
	python3 bench/run.py --build $(BUILD) $(BENCH_ARGS)

# make fuzz [FUZZ_TIME=60]: the libFuzzer targets for the parsers of outside data, each run
# FUZZ_TIME seconds; make fuzz-merge, make fuzz-afl (fuzz/README.md, fuzz/fuzz.mk).
.PHONY: fuzz fuzz-merge fuzz-afl
fuzz fuzz-merge fuzz-afl:
	@$(MAKE) --no-print-directory -f fuzz/fuzz.mk $@

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/recur.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/librecur.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/librecur.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/recur $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@BLAS@|$(BLAS)|' recur.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/recur.pc

clean:
	rm -rf build
.SECONDARY:
