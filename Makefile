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
OPT     ?= -O2 -g -march=x86-64-v2 -mtune=native
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

.PHONY: all test demo install clean setup examples
all: $(BUILD)/librecur.a $(BUILD)/librecur.so $(BUILD)/recur

setup:
	@./scripts/setup.sh

$(BUILD)/%.o: %.c include/recur.h $(wildcard src/*.h src/*/*.h tests/*.h tools/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

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

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(BUILD)/librecur.a
	$(CC) -o $@ $^ $(LDFLAGS) $(LDLIBS)

examples: $(EX_BIN)

test: $(if $(SETUP),setup) $(TEST_BIN) $(EX_BIN) $(BUILD)/recur
	@./tests/run_all.sh $(BUILD)/tests $(TEST_BIN:$(BUILD)/tests/%=%)

demo: $(if $(SETUP),setup) $(EX_BIN) $(BUILD)/recur
	@./scripts/demo.sh $(BUILD)

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
