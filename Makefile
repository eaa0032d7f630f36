# Makefile for scale — GNU make, no configure step.
#
#   make            libscale.a and the ./scale command
#   make check      the Check test suite, then the book checker
#   make asan       the suite under AddressSanitizer + UBSan
#   make bench      benchmarks (BENCH=group for one group); never part of check
#   make book       rewrite the book's excerpts, worked outputs and index; build/book.html
#   make exercise   NAME=... : check one exercise of book/exercises.md
#   make demo       the main job on the shipped default (MODEL=DIR: another model)
#   make pretrain   retrain the shipped tiny VLM (data/tiny-vlm) from scratch
#   make install    PREFIX=/usr/local DESTDIR= : scale, libscale.a, scale.h, scale.pc
#   make clean

CC      ?= cc
CFLAGS  ?= -O2 -g
# Flags the code relies on live apart from CFLAGS, so overriding CFLAGS on
# the command line cannot drop them. Never -ffast-math or -Ofast: the tests
# compare against PyTorch to a few ulps and fast-math reorders reductions.
# -fno-math-errno only stops sqrt() and friends from setting errno (nothing
# here reads it), which lets the compiler use the sqrt instruction and
# vectorise loops that call it; every result stays bit-identical.
# -ffp-contract=off keeps a*b + c two roundings, as ISO C mode already does
# in GCC; Clang would otherwise fuse it into one FMA inside the functions
# compiled for AVX2/FMA, and the two compilers' results would differ.
SC_CFLAGS = -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wvla -pthread -fno-math-errno -ffp-contract=off
LDLIBS  = -lm -pthread
PREFIX  ?= /usr/local
DESTDIR ?=

VERSION := $(shell sed -n 's/^\#define SC_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' scale.h | paste -sd.)

SRC     = tensor.c nn.c loss.c io.c
OBJ     = $(SRC:%.c=build/%.o)
LIB_OBJ = $(OBJ) build/scale_lib.o
TEST_SRC = $(filter-out tests/check_main.c tests/check_util.c,$(wildcard tests/check_*.c))
BENCH_SRC = $(filter-out tests/bench_main.c,$(wildcard tests/bench_*.c))
BOOK_MD = $(wildcard book/*.md)

.PHONY: all check check-deps test asan bench bench-blas book book-check book-selftest demo pretrain \
        install uninstall clean fuzz exercise exercises

all: libscale.a scale

build:
	@mkdir -p build build/asan build/fuzz

build/%.o: %.c scale.h | build
	$(CC) $(SC_CFLAGS) $(CFLAGS) -c $< -o $@

build/scale_lib.o: scale.c scale.h | build
	$(CC) $(SC_CFLAGS) $(CFLAGS) -DSC_NO_MAIN -c $< -o $@

libscale.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

scale: build/scale.o $(OBJ)
	$(CC) $(SC_CFLAGS) $(CFLAGS) -o $@ $^ $(LDLIBS)

# ---- tests ---------------------------------------------------------------

# Check is the one test dependency. On a fresh Debian machine, install it
# when we may; otherwise say exactly what to run.
check-deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists check; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing the Check test framework (Debian package 'check')"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq check pkg-config >/dev/null || exit 1; \
	  else \
	    echo "make: the Check test framework is missing; install it with:"; \
	    echo "    sudo apt-get install -y check pkg-config"; \
	    exit 1; \
	  fi; \
	fi

# Every `Suite *suite_NAME(void)` defined in tests/check_*.c is run; the
# list is generated so adding a test file needs no edit here.
build/suites.h: $(TEST_SRC) | build
	@sed -n 's/^Suite \*\(suite_[a-z0-9_]*\)(void)$$/SUITE(\1)/p' $(TEST_SRC) | LC_ALL=C sort > $@.tmp
	@cmp -s $@.tmp $@ 2>/dev/null && rm -f $@.tmp || mv $@.tmp $@

CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)
TEST_DEFS    = -DSC_TEST_ROOT='"$(CURDIR)"' -Ibuild -I.

build/check_runner: build/suites.h libscale.a $(TEST_SRC) tests/check_main.c tests/check_util.c tests/check_util.h | check-deps
	$(CC) $(SC_CFLAGS) $(CFLAGS) $(TEST_DEFS) $(CHECK_CFLAGS) -o $@ \
	  tests/check_main.c tests/check_util.c $(TEST_SRC) libscale.a $(CHECK_LIBS) $(LDLIBS)

# The runner exits with EXIT_FAILURE when any check fails (0 = all pass),
# and Check's summary line is the last thing it prints.
check: build/check_runner scale book-check
	./build/check_runner

test: check

# ---- sanitizers ----------------------------------------------------------

ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_OBJ   = $(SRC:%.c=build/asan/%.o) build/asan/scale_lib.o

build/asan:
	@mkdir -p $@

build/asan/%.o: %.c scale.h | build/asan
	$(CC) $(SC_CFLAGS) $(ASAN_FLAGS) -c $< -o $@

build/asan/scale_lib.o: scale.c scale.h | build/asan
	$(CC) $(SC_CFLAGS) $(ASAN_FLAGS) -DSC_NO_MAIN -c $< -o $@

build/asan/check_runner: build/suites.h $(ASAN_OBJ) $(TEST_SRC) tests/check_main.c tests/check_util.c tests/check_util.h | check-deps
	$(CC) $(SC_CFLAGS) $(ASAN_FLAGS) $(TEST_DEFS) $(CHECK_CFLAGS) -o $@ \
	  tests/check_main.c tests/check_util.c $(TEST_SRC) $(ASAN_OBJ) $(CHECK_LIBS) $(LDLIBS)

# The command too, so the tests that run ./scale (every CLI test) check the
# commands' own code, error paths included; sc_test_path("scale") names
# this binary when SCALE_ASAN is set.
build/asan/scale.o: scale.c scale.h | build/asan
	$(CC) $(SC_CFLAGS) $(ASAN_FLAGS) -c $< -o $@

build/asan/scale: build/asan/scale.o $(SRC:%.c=build/asan/%.o)
	$(CC) $(SC_CFLAGS) $(ASAN_FLAGS) -o $@ $^ $(LDLIBS)

# Fork mode keeps a sanitizer report attached to the test that caused it;
# timeouts are raised because instrumented code runs several times slower.
# A sanitizer report exits with status 86, which no command uses, so a test
# that expects a command to fail with 1 or 2 still fails when the command
# leaked or misbehaved on its way out (LeakSanitizer exits with it too).
ASAN_ENV = ASAN_OPTIONS=exitcode=86 UBSAN_OPTIONS=exitcode=86:print_stacktrace=1
asan: build/asan/check_runner build/asan/scale
	CK_FORK=yes CK_TIMEOUT_MULTIPLIER=10 SCALE_ASAN=1 $(ASAN_ENV) ./build/asan/check_runner

# ---- benchmarks ----------------------------------------------------------

build/benches.h: $(BENCH_SRC) | build
	@sed -n 's/^void \(bench_[a-z0-9_]*\)(void)$$/BENCH_GROUP(\1)/p' $(BENCH_SRC) | LC_ALL=C sort > $@.tmp
	@cmp -s $@.tmp $@ 2>/dev/null && rm -f $@.tmp || mv $@.tmp $@

build/bench: build/benches.h libscale.a $(BENCH_SRC) tests/bench_main.c $(wildcard tests/bench/*.h)
	$(CC) $(SC_CFLAGS) $(CFLAGS) -Ibuild -I. -DSC_TEST_ROOT='"$(CURDIR)"' -o $@ \
	  tests/bench_main.c $(BENCH_SRC) libscale.a $(LDLIBS)

bench: build/bench
	./build/bench $(BENCH)

# OpenBLAS for comparison only (Debian libopenblas-dev); never in the build.
# It links libscale.a too, to time both in one process.
build/bench_blas: tests/bench/blas.c tests/bench/gemm_bench.h libscale.a
	$(CC) $(SC_CFLAGS) $(CFLAGS) -I. -o $@ $< libscale.a -lopenblas $(LDLIBS)

bench-blas: build/bench_blas
	./build/bench_blas

# ---- fuzzing --------------------------------------------------------------
# Each tests/fuzz/fuzz_NAME.c is a libFuzzer harness; its seeds live in
# tests/fuzz/corpus/NAME/ (copied to build/fuzz so the fuzzer's additions do
# not touch the source tree). Crashes found are kept under
# tests/fuzz/regress/NAME/ and replayed by `make check`.

FUZZ_SRC     = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     = $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION (the libFuzzer convention) lets
# parsers skip checksums, which mutated inputs would never match.
FUZZ_FLAGS   = -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -pthread \
               -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION

build/fuzz/%: tests/fuzz/%.c $(SRC) scale.c scale.h | build
	$(FUZZ_CC) $(FUZZ_FLAGS) -I. -DSC_NO_MAIN -o $@ $< $(SRC) scale.c -lm

fuzz: $(FUZZ_BIN)
	@for b in $(FUZZ_BIN); do \
	  n=$${b#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus/$$n; \
	  cp -r tests/fuzz/corpus/$$n/. build/fuzz/corpus/$$n/ 2>/dev/null || true; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  $$b -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/$$n- \
	    build/fuzz/corpus/$$n 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' || exit 1; \
	done

# ---- the book ------------------------------------------------------------
# booksnip keeps code excerpts and worked outputs equal to the sources and
# to what ./scale prints; bookindex checks that the paper, every public
# function, the notation page and the exercises have a home (and writes the
# generated book/functions.md); bookhtml writes build/book.html.

build/booksnip: tests/booksnip.c tests/booktext.h | build
	$(CC) $(SC_CFLAGS) $(CFLAGS) -o $@ $<

build/bookindex: tests/bookindex.c tests/booktext.h | build
	$(CC) $(SC_CFLAGS) $(CFLAGS) -o $@ $<

BOOK_SOURCES = scale.h scale.c tensor.c nn.c loss.c io.c
BOOK_INDEX_ARGS = --sources $(BOOK_SOURCES) --tests $(TEST_SRC) --book $(BOOK_MD)

# Worked examples marked "<!-- @run ... -->" run ./scale, so both targets
# need it built; the files they write go under build/book.
book-check: book-selftest build/booksnip build/bookindex scale
	@mkdir -p build/book
	./build/booksnip --check $(BOOK_SOURCES) -- $(BOOK_MD)
	./build/bookindex --check $(BOOK_INDEX_ARGS)

# booksnip's own check, cheap (it runs no command): each malformed marker in
# tests/data/booksnip must be reported with its file and line, because a
# marker booksnip skipped would leave the block after it unchecked.
book-selftest: build/booksnip
	@cd tests/data/booksnip && { ../../../build/booksnip --check region.c bad-marker.c -- bad.md \
	  > ../../../build/booksnip-selftest.txt 2>&1; test $$? = 1; } \
	  || { echo "book-selftest: booksnip did not exit with 1 on tests/data/booksnip"; exit 1; }
	@diff -u tests/data/booksnip/expected.txt build/booksnip-selftest.txt \
	  && echo "booksnip: every malformed marker in tests/data/booksnip is reported"

book: build/booksnip build/bookindex build/bookhtml scale
	@mkdir -p build/book
	./build/booksnip --update $(BOOK_SOURCES) -- $(BOOK_MD)
	./build/bookindex --update $(BOOK_INDEX_ARGS)
	./build/bookhtml build/book.html book/README.md $(filter book/0% book/1% book/2%,$(BOOK_MD)) \
	  book/notation.md book/exercises.md book/functions.md

# The whole book as one page, equations left for MathJax.
build/bookhtml: tests/bookhtml.c tests/booktext.h | build
	$(CC) $(SC_CFLAGS) $(CFLAGS) -o $@ $<

# ---- exercises ------------------------------------------------------------
# make exercise NAME=quickgelu-backward runs the checks listed for it in
# book/exercises.md against the student's edited sources: a Check suite or
# case of the ordinary runner, and/or a program tests/exercises/NAME.c for
# exercises that ask for new code (built only here, never by make check;
# SOLUTION=1 links the reference answer in tests/exercises/solutions/).
# The book checker is not run: an edited function may differ from its
# excerpt. make exercises runs every exercise against the tree as it is.

EXERCISE_DEPS = $(OBJ) build/scale_lib.o build/suites.h tests/check_util.c tests/check_util.h \
                tests/exercises/exercise.h tests/exercises/exercise_main.c

build/exercises/%-solution: tests/exercises/%.c tests/exercises/solutions/%.c $(EXERCISE_DEPS) | check-deps
	@mkdir -p build/exercises
	$(CC) $(SC_CFLAGS) $(CFLAGS) $(TEST_DEFS) $(CHECK_CFLAGS) -o $@ $< tests/exercises/solutions/$*.c \
	  tests/exercises/exercise_main.c tests/check_util.c $(OBJ) build/scale_lib.o $(CHECK_LIBS) $(LDLIBS)

build/exercises/%: tests/exercises/%.c $(EXERCISE_DEPS) | check-deps
	@mkdir -p build/exercises
	$(CC) $(SC_CFLAGS) $(CFLAGS) $(TEST_DEFS) $(CHECK_CFLAGS) -o $@ $< \
	  tests/exercises/exercise_main.c tests/check_util.c $(OBJ) build/scale_lib.o $(CHECK_LIBS) $(LDLIBS)

exercise: build/bookindex
	@test -n "$(NAME)" || { echo "usage: make exercise NAME=... (names: book/exercises.md)"; exit 2; }
	@cmd=$$(./build/bookindex --exercise '$(NAME)' book/exercises.md) || exit 2; \
	  $(MAKE) --no-print-directory -s build/check_runner scale || exit 1; \
	  make='$(MAKE) --no-print-directory -s'; variant='$(if $(SOLUTION),-solution)'; \
	  eval "echo \"exercise $(NAME): $$cmd\""; eval "$$cmd"

exercises: build/bookindex
	@for n in $$(./build/bookindex --exercise-names book/exercises.md); do \
	  $(MAKE) --no-print-directory -s exercise NAME=$$n SOLUTION=$(SOLUTION) || exit 1; done

# ---- the shipped tiny VLM --------------------------------------------------
# `make pretrain` rewrites data/tiny-vlm byte for byte (book/15, section 15.8): a
# synthetic Derm7p look-alike of 4000 cases drawn with seed 1001 (the demo
# evaluates on synth's default seed, 7), then CLIP pretraining from scratch
# with seed 7 on 2 threads. data/README.md records what it took.
PRETRAIN_DATA = build/pretrain-derm7p

pretrain: scale
	rm -rf $(PRETRAIN_DATA)
	./scale synth derm7p --out $(PRETRAIN_DATA) --n 4000 --seed 1001
	./scale pretrain --data $(PRETRAIN_DATA) --out data/tiny-vlm --seed 7 --threads 2

# ---- the demo ------------------------------------------------------------
# The main job on the shipped default, offline, from scratch every time:
# a synthetic Derm7p-like set in the real release layout, embedded once with
# the tiny VLM shipped in data/tiny-vlm, then zero-shot, linear probing (with
# and without loss weighting), CoOp and SCALE on 5 %, 25 % and 100 % of the
# training split (three nested subsets each). See data/demo.conf.
# MODEL=DIR runs it with another model (MONET, MedCLIP; book/15), whose
# embeddings go to $(DEMO_OUT)/cache-NAME.

# data/demo.conf names demo-out/ (its paths are relative to itself), so the
# folder cannot move: a DEMO_OUT given on the command line would make the
# experiment read an older demo-out/ instead, and is refused.
DEMO_OUT = demo-out
MODEL ?=

demo: scale
	@test "$(DEMO_OUT)" = demo-out || { echo "make demo: the output folder is demo-out/ (data/demo.conf names it); DEMO_OUT cannot change it" >&2; exit 2; }
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	./scale synth derm7p --out $(DEMO_OUT)/derm7p --seed 7
	./scale experiment --config data/demo.conf $(if $(MODEL),--model $(MODEL)) --out $(DEMO_OUT)/run
	@echo "make demo: tables, Fig. 2/4-style plots and explanations are in $(DEMO_OUT)/run/"

# ---- install -------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 scale $(DESTDIR)$(PREFIX)/bin/scale
	install -m 644 libscale.a $(DESTDIR)$(PREFIX)/lib/libscale.a
	install -m 644 scale.h $(DESTDIR)$(PREFIX)/include/scale.h
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: scale\nDescription: SCALE reference implementation\nVersion: %s\nLibs: -L$${libdir} -lscale -lm -pthread\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(VERSION)' > $(DESTDIR)$(PREFIX)/lib/pkgconfig/scale.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/scale $(DESTDIR)$(PREFIX)/lib/libscale.a \
	      $(DESTDIR)$(PREFIX)/include/scale.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/scale.pc

clean:
	rm -rf build libscale.a scale
