#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust tests (unit, integration, property, doc),
# the C suite (tests/c/run.sh), the Python suite (tests/python/run.sh) and the release
# checks (tests/release/run.sh: docs, packages, licences, the CMake consumer, the C ABI).
# Usage: bash tests/run.sh   (from anywhere inside the checkout, on a fresh machine too:
# tests/provision.sh installs what is missing first)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each step says when it started (seconds since the suite began), so a slow step shows.
step() { printf '\n==> [%ds] %s\n' "$SECONDS" "$*"; }

step "provision (cbindgen into .tools/, system packages for the C suite)"
# shellcheck source=tests/provision.sh
. tests/provision.sh

step "format check (and no merge conflict left in a tracked file)"
cargo fmt --all -- --check
if git rev-parse --git-dir >/dev/null 2>&1 &&
    git grep -n -I -E '^(<{7}|>{7})( |$)' -- . >&2; then
    echo "merge conflict markers above: resolve them" >&2
    exit 1
fi

step "clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests (unit, integration, property, doc)"
cargo test --workspace --locked

step "C: header, install, C tests under ASan+UBSan and valgrind"
bash tests/c/run.sh

step "Python: wheel, stubtest, pytest against the installed wheel"
bash tests/python/run.sh

step "Release: one version, rustdoc, cargo package, cargo deny, CMake consumer, C ABI list, C reference"
bash tests/release/run.sh

step "all passed in ${SECONDS}s"
