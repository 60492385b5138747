#!/usr/bin/env bash
# Regenerates include/authcore.h from ffi-c/src with the pinned cbindgen.
# `bash ffi-c/gen-header.sh --verify` fails if the committed header is out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
CBINDGEN_VERSION=0.29.4
export PATH="$PWD/.tools/bin:$PATH"  # where tests/provision.sh installs it
have=$(cbindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$CBINDGEN_VERSION" ]; then
    echo "cbindgen $CBINDGEN_VERSION is required (found: ${have:-none});" \
         "install it with: cargo install cbindgen --version $CBINDGEN_VERSION --locked" >&2
    exit 2
fi
exec cbindgen --config ffi-c/cbindgen.toml --crate authcore-ffi --output include/authcore.h "$@" ffi-c
