#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/integration/property tests, doc tests.
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
