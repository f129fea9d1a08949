# ANGES — the two commands a newcomer needs:
#   make run    set up if needed, build, start a meter, fine-tune with AN-GES, print the result
#   make test   set up if needed, then format check, clippy and every test of the workspace
#   make test-slow   the slow tier: the #[ignore]d tests (long learning runs), not run by make test
#   make python      the Python package `anges`: its abi3 wheel into target/wheels/
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := eval "$$(scripts/setup --print-env)"
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all setup build test test-slow test-python python lint run bench install uninstall

all: build

setup:
	scripts/setup

build: setup
	$(ENV); cargo build --workspace --release

lint: setup
	$(ENV); cargo fmt --all --check
	$(ENV); cargo clippy --workspace --all-targets -- -D warnings

test: lint
	$(ENV); cargo test --workspace
	$(MAKE) test-python

# The Python package `anges` (trainer/python, docs/python.md): one abi3 wheel for CPython >= 3.9
# on Linux, built by maturin (installed into .venv by scripts/setup).
WHEELS := target/wheels
BIN_DIR = $${CARGO_TARGET_DIR:-target}/debug
python: setup
	rm -f $(WHEELS)/anges-*.whl
	$(ENV); maturin build --release --quiet -m trainer/python/Cargo.toml --out $(WHEELS)

# The wheel installed into .venv and its tests run against a real user-mode anges-meterd and
# anges-train replay (pytest, trainer/python/tests: Lightning and Hugging Face on BACE).
test-python: python
	$(ENV); [[ -x "$(BIN_DIR)/anges-meterd" && -x "$(BIN_DIR)/anges-train" ]] || \
	    cargo build --bin anges-meterd --bin anges-train
	$(ENV); pip install --quiet --force-reinstall --no-deps $(WHEELS)/anges-*.whl
	$(ENV); ANGES_METERD="$(BIN_DIR)/anges-meterd" ANGES_TRAIN="$(BIN_DIR)/anges-train" \
	    python -m pytest -q -p no:cacheprovider trainer/python/tests

# The tests marked #[ignore] because they take many minutes; each says why in its doc comment.
test-slow: setup
	$(ENV); cargo test --workspace -- --ignored

run: build
	scripts/run

bench: setup
	$(ENV); cargo bench --workspace

install: build
	systemd/install.sh install "$(DESTDIR)" "$(PREFIX)"

uninstall:
	systemd/install.sh uninstall "$(DESTDIR)" "$(PREFIX)"
