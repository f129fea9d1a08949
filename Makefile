# ANGES — the two commands a newcomer needs:
#   make run    set up if needed, build, start a meter, fine-tune with AN-GES, print the result
#   make test   set up if needed, then format check, clippy and every test of the workspace
#   make test-slow   the slow tier: the #[ignore]d tests (long learning runs), not run by make test
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := eval "$$(scripts/setup --print-env)"
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all setup build test test-slow lint run bench install uninstall

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
