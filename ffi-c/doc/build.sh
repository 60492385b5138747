#!/usr/bin/env bash
# The C reference (Doxygen HTML) of a header:
#   bash ffi-c/doc/build.sh OUT [HEADER]
# OUT receives html/ (open OUT/html/index.html) and warnings (an undocumented
# declaration, a broken reference). HEADER defaults to the repository's
# include/authcore.h; tests/release/run.sh passes the installed one and fails on warnings.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash ffi-c/doc/build.sh OUT [HEADER]" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v doxygen > /dev/null || { echo "doxygen is not installed (Debian: apt-get install doxygen)" >&2; exit 1; }
mkdir -p "$1"
out="$(cd "$1" && pwd)"
header="$(realpath "${2:-$root/include/authcore.h}")"
[ -f "$header" ] || { echo "no header at $header" >&2; exit 1; }
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
cd "$root"
AUTHCORE_HEADER="$header" AUTHCORE_DOC_DIR="$root/ffi-c/doc" AUTHCORE_DOC_OUT="$out" \
    AUTHCORE_VERSION="$version" doxygen ffi-c/doc/Doxyfile
echo "C reference: $out/html/index.html (warnings: $out/warnings)"
