#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests (unit, integration, property, doc),
# the C suite (tests/c/run.sh) and the Python suite (tests/python/run.sh).
# Usage: bash tests/run.sh   (from anywhere inside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format check"
cargo fmt --all -- --check

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests (unit, integration, property, doc)"
cargo test --workspace --locked

step "C: header, install, C tests under ASan+UBSan and valgrind"
bash tests/c/run.sh

step "Python: wheel, stubtest, pytest against the installed wheel"
bash tests/python/run.sh
