# tcpota - top-level entry points. `make demo` and `make test` install the Debian
# packages they lack, build, and run; see README.md.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
BUILD_RELEASE ?= build-release
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 15
# Tests at once: four on two cores, as most wait rather than compute
# (tests/CMakeLists.txt says which start first and which count double).
TEST_JOBS  ?= 4
# `make install`: PREFIX/bin/tcpota (+ tcpota-proxy, tcpota-legacy-client), the
# systemd unit and its config file (service/, docs/operations.md);
# DESTDIR, if set, is put before PREFIX (for packaging).
PREFIX     ?= /usr/local

.PHONY: all deps deps-demo deps-cluster build build-asan build-release test test-unit test-asan fuzz-smoke fuzz \
        core-check demo bench clean esp-idf-check test-long install uninstall \
        cluster cluster-stop

all: build

deps:
	@bash scripts/deps.sh

deps-demo:
	@bash scripts/deps.sh --demo

deps-cluster:
	@bash scripts/deps.sh --cluster

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Installs what `make build` built; cmake records each file it wrote (without
# DESTDIR) in $(BUILD)/install_manifest.txt, which `make uninstall` removes
# again: give it the same DESTDIR. The config file goes too unless it was
# edited (it differs from service/tcpota.conf): that one is the operator's,
# kept, and named by uninstall ("Kept: ..."; an install that kept an edited
# one still lists it in the manifest).
# A relative PREFIX is made absolute (from this directory, where cmake
# would take it from): the unit names the program and its config by it, and
# systemd takes absolute paths only. One with a space or a tab (its own, or
# the checkout's for a relative one) is refused before a file is copied:
# the unit's ExecStart would split it.
INSTALL_PREFIX = $(if $(filter /%,$(PREFIX)),$(PREFIX),$(CURDIR)/$(PREFIX))
install: build
	@case "$$(printf '%s' "$(INSTALL_PREFIX)" | tr -d -c ' \t' | wc -c)" in 0) ;; *) echo "make install: the prefix '$(INSTALL_PREFIX)' holds a space or a tab, which the systemd unit's ExecStart would split: give a PREFIX (and a checkout path, for a relative one) without them" >&2; exit 2;; esac
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(INSTALL_PREFIX)"

uninstall:
	@test -f $(BUILD)/install_manifest.txt || \
	    { echo "make uninstall: $(BUILD)/install_manifest.txt is missing: nothing was installed from $(BUILD)"; exit 1; }
	@sed 's|^|$(DESTDIR)|' $(BUILD)/install_manifest.txt | { found=0; while IFS= read -r f || [ -n "$$f" ]; do \
	    [ -e "$$f" ] || [ -L "$$f" ] || continue; \
	    found=$$((found + 1)); \
	    case "$$f" in */tcpota/tcpota.conf) \
	        if [ -f "$$f" ] && ! cmp -s "$$f" "$(CURDIR)/service/tcpota.conf"; then \
	            echo "Kept: $$f (edited: the operator's; remove it by hand if it is not wanted)"; continue; \
	        fi;; \
	    esac; \
	    rm -fv -- "$$f" || exit 1; \
	done; \
	if [ "$$found" -eq 0 ]; then \
	    echo "make uninstall: none of the files of the last install from $(BUILD) is there (DESTDIR='$(DESTDIR)'; the first: $$(head -n 1 $(BUILD)/install_manifest.txt)): uninstalled already, or installed with another DESTDIR (give that one; $(BUILD)/install_manifest.txt keeps only the last install)" >&2; \
	    exit 1; \
	fi; }

# Three fleet nodes on one PostgreSQL behind HAProxy, on this machine, in
# CLUSTER_DIR (scripts/cluster.sh; docs/scaling.md); cluster-stop ends them.
# Under /tmp by default: as root PostgreSQL runs as nobody, who cannot
# reach a clone under /root.
CLUSTER_DIR ?= /tmp/tcpota-cluster
cluster: deps-cluster build
	TCPOTA=$(abspath $(BUILD))/cli/tcpota bash scripts/cluster.sh start $(CLUSTER_DIR)

cluster-stop:
	bash scripts/cluster.sh stop $(CLUSTER_DIR)

$(BUILD_ASAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTCPOTA_SANITIZE=ON

build-asan: $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j$(JOBS)

# The server and the CLI as `make bench` builds them (Release: -O3 inlines
# more, and GCC's truncation warnings, errors here, see further).
$(BUILD_RELEASE)/CMakeCache.txt:
	cmake -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=Release

build-release: $(BUILD_RELEASE)/CMakeCache.txt
	cmake --build $(BUILD_RELEASE) -j$(JOBS) --target tcpota tcpota-proxy tcpota-legacy-client

# Every test: unit + end-to-end (plain build), the whole suite again under
# ASan+UBSan, a fuzz smoke run of every target, and the core's checks.
test: deps
	$(MAKE) build
	$(MAKE) build-release
	cd $(BUILD) && ctest --output-on-failure -j$(TEST_JOBS)
	$(MAKE) build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(TEST_JOBS)
	$(MAKE) fuzz-smoke
	$(MAKE) core-check

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

$(BUILD_FUZZ)/CMakeCache.txt:
	CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DTCPOTA_FUZZ=ON

fuzz-smoke: $(BUILD_FUZZ)/CMakeCache.txt
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz_all
	bash scripts/fuzz.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

fuzz: $(BUILD_FUZZ)/CMakeCache.txt
	cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz_all
	bash scripts/fuzz.sh $(BUILD_FUZZ) 600

core-check:
	bash scripts/core-check.sh

# Long reliability runs (docs/reliability.md): the CI suites at 1 MiB.
test-long: deps
	$(MAKE) build
	$(BUILD)/tests/tcpota-powercut --size 1048576
	$(BUILD)/tests/tcpota-framecut --size 1048576 --samples 2
	TCPOTA=$(BUILD)/cli/tcpota PROXY=$(BUILD)/tools/tcpota-proxy TCPOTA_CRASH_SIZE=1048576 \
	    TCPOTA_CRASH_RATE=400000 bash tests/reliability/test_crash.sh

# Benchmarks (not part of `make test`): link, fleet, footprint, resume; writes
# bench/results/latest.md. QUICK=1 for a short run (bench/results/quick.md).
bench:
	bash bench/run.sh $(if $(QUICK),--quick)

demo: deps-demo
	$(MAKE) build
	bash scripts/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(BUILD_RELEASE)

# Compile check of the ESP-IDF component (esp-idf/components/tcpota) against
# the headers of a real ESP-IDF 5.5+ tree, for the ESP32-C3 with Debian's
# riscv64-unknown-elf GCC and picolibc; prints the RV32 object sizes.
# IDF_PATH needs components/lwip/lwip and components/mbedtls/mbedtls filled.
esp-idf-check:
	@if [ -z "$(IDF_PATH)" ]; then echo "esp-idf-check: skipped: IDF_PATH is not set"; exit 0; fi; \
	missing=; for p in gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf; do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update && apt-get install -y $$missing; fi; \
	bash esp-idf/components/tcpota/check/esp-idf-check.sh "$(IDF_PATH)"
