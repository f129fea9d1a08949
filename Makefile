# ANGES — the two commands a newcomer needs:
#   make run    set up if needed, build, start a meter, fine-tune with AN-GES, print the result
#   make test   set up if needed, then format check, clippy and every test of the workspace
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := eval "$$(scripts/setup --print-env)"
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all setup build test lint run bench install uninstall

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

run: build
	scripts/run

bench: setup
	$(ENV); cargo bench --workspace

install: build
	systemd/install.sh install "$(DESTDIR)" "$(PREFIX)"

uninstall:
	systemd/install.sh uninstall "$(DESTDIR)" "$(PREFIX)"
