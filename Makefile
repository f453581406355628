# The README's two commands. Each installs the Debian packages it needs that are missing (when run as
# root), configures and builds out of tree, then runs.
#   make demo   build the demo and train it on Fashion-MNIST (outputs in build/demo-out)
#   make test   build with -Werror (gcc), run every test, then again under ASan + UBSan (clang)

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
# make fuzz: seconds per fuzzer.
SECONDS    ?= 60
JOBS       ?= 2
# Debian's interpreter: it is the one that sees python3-numpy and python3-scipy.
PYTHON     ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

PREFIX     ?= /usr/local

# zlib and libpng: the demo's gzipped IDX reader and the pictures of the demo and of sbx.
BUILD_PACKAGES := cmake make gcc libc6-dev pkgconf libcmocka-dev libopenblas-dev libopenblas0-openmp zlib1g-dev \
                  libpng-dev
# The demo's data: Fashion-MNIST.
DEMO_PACKAGES  := dataset-fashion-mnist
TEST_PACKAGES  := $(BUILD_PACKAGES) $(DEMO_PACKAGES) clang libclang-rt-14-dev libomp-14-dev python3-numpy python3-scipy \
                  python3-dev python3-pytest python3-torch

.PHONY: demo test test-valgrind test-tsan fuzz bench install clean

# $(call ensure,PACKAGES): apt-get install the ones dpkg does not list as installed.
define ensure
	@missing=""; \
	if command -v dpkg-query >/dev/null 2>&1; then \
	  for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	  done; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing Debian packages:$$missing (run as root to have them installed)"; \
	  fi; \
	fi
endef

demo:
	$(call ensure,$(BUILD_PACKAGES) $(DEMO_PACKAGES))
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target demo
	./$(BUILD)/demo --out $(BUILD)/demo-out

test:
	$(call ensure,$(TEST_PACKAGES))
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_WERROR=ON -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSBX_WERROR=ON -DSBX_SANITIZE=ON \
	  -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  ctest --output-on-failure -j $(JOBS)

# The C tests (tests/valgrind/run.sh says which) under valgrind memcheck: no error, no leak.
test-valgrind:
	$(call ensure,$(TEST_PACKAGES) valgrind)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_WERROR=ON -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	sh tests/valgrind/run.sh $(BUILD)

# The thread tests (tests/threads) built with ThreadSanitizer (clang).
test-tsan:
	$(call ensure,$(TEST_PACKAGES))
	CC=clang cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBX_TSAN=ON -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -L tsan

# make fuzz [SECONDS=N]: the libFuzzer targets (clang, ASan + UBSan), each run for N seconds on its corpus.
fuzz:
	$(call ensure,$(TEST_PACKAGES))
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBX_SANITIZE=ON -DSBX_FUZZ=ON \
	  -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $(SECONDS)

bench:
	$(call ensure,$(TEST_PACKAGES) python3-torch)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target bench_sparse bench_indices bench_layers bench_random bench_graph \
	  bench_train
	./$(BUILD)/bench_sparse
	./$(BUILD)/bench_indices
	./$(BUILD)/bench_layers
	./$(BUILD)/bench_random
	./$(BUILD)/bench_graph
	./$(BUILD)/bench_train
	SPARSEBOX_LIBRARY_DIR=$(BUILD) $(PYTHON) bench/bench_python.py

# make install [PREFIX=DIR] [DESTDIR=STAGE]: the shared and static library, the headers, sparsebox.pc,
# sbx, the examples' sources and the Python package (with the library beside it) under PREFIX.
install:
	$(call ensure,$(BUILD_PACKAGES))
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSBX_PYTHON=$(PYTHON) >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target sparsebox sparsebox_static sbx python_package
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(TSAN_BUILD)
