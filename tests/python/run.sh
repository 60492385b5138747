#!/usr/bin/env bash
# The Python face of authcore, tested as a Python user gets it:
#   1. maturin builds the abi3 manylinux2014 wheel from python/;
#   2. a fresh virtual environment installs that wheel (not the source tree);
#   3. mypy's stubtest checks _authcore.pyi against the compiled module, and mypy --strict
#      checks the package and the tests against those stubs;
#   4. pytest (warnings are errors) runs python/tests against a real devserver process.
# `bash tests/python/run.sh bench` runs the comparison benchmark instead; other arguments
# go to pytest (`bash tests/python/run.sh -k test_readme`).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s\n' "$*"; }

# A fresh virtual environment; falls back to virtualenv where the venv module is absent.
mkvenv() {
    "$python" -m venv "$1" 2>/dev/null || {
        "$python" -m pip install --quiet --user virtualenv
        "$python" -m virtualenv --quiet "$1"
    }
}

step "build the devserver and the wheel"
cargo build --release --locked -p authcore-cli
mkvenv "$work/build"
"$work/build/bin/pip" install --quiet -c python/constraints.txt "maturin==1.16.0" "ziglang==0.17.0"
# Linked by zig against an old glibc, so that the wheel is manylinux2014 (glibc 2.17+),
# the one a user would install, rather than tied to this machine's glibc.
(
    cd python
    PATH="$work/build/bin:$PATH" "$work/build/bin/maturin" build --release --locked \
        --zig --compatibility manylinux2014 --out "$work/wheels" --interpreter "$python"
)
wheel=$(ls "$work"/wheels/authcore_client-*.whl)
echo "built $(basename "$wheel")"

step "install the wheel into a fresh virtual environment"
mkvenv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel" -r python/requirements-test.txt
if [ "${1:-}" = "bench" ]; then
    "$work/venv/bin/pip" install --quiet -r python/requirements-bench.txt
fi

# Everything below runs from outside the checkout, so `import authcore` is the wheel.
cd "$work"
export AUTHCORE_BIN="$root/target/release/authcore"

if [ "${1:-}" = "bench" ]; then
    "$work/venv/bin/python" "$root/python/bench/compare.py"
    "$work/venv/bin/python" "$root/python/bench/upload.py"
    # The request path in instructions, the Python face next to Rust and C.
    (cd "$root" && PYTHON="$work/venv/bin/python" bash core/benches/request_path.sh)
    exit 0
fi

step "the wheel's metadata (twine check) and the API reference (pdoc, from the installed package)"
"$work/venv/bin/pip" install --quiet -r "$root/python/requirements-release.txt"
"$work/venv/bin/twine" check --strict "$wheel"
# pdoc's warnings are about where it finds things, not what it writes: the exception
# classes are made in authcore.errors and presented as authcore's (their annotations are
# read in the wrong namespace), and the httpx adapter's types need httpx. Kept, not shown.
# authcore's page is the package as imported; authcore._authcore's documents the compiled
# classes with the signatures of their stubs.
"$work/venv/bin/pdoc" authcore authcore._authcore -o "$work/pydoc" 2> "$work/pdoc.err" \
    || { cat "$work/pdoc.err" >&2; exit 1; }
if grep -q "Error parsing type stubs" "$work/pdoc.err"; then
    cat "$work/pdoc.err" >&2; echo "pdoc could not read the stubs" >&2; exit 1
fi
for item in 'Client.authorization_header' 'Client.personal_access_token' 'OAuthError' '__version__'; do
    grep -q "$item" "$work/pydoc/authcore.html" || { echo "pdoc: $item is not in the reference" >&2; exit 1; }
done
tr -s ' \n' ' ' < "$work/pydoc/authcore/_authcore.html" | sed 's/<[^>]*>//g' > "$work/pydoc.txt"
grep -qF -e 'authorization_header(self) -> str' "$work/pydoc.txt" \
    || { echo "pdoc: the reference lacks the stubs' signatures" >&2; exit 1; }
echo "API reference: $(find "$work/pydoc" -name '*.html' | wc -l) pages"
if [ -n "${AUTHCORE_DOCS_OUT:-}" ]; then
    mkdir -p "$AUTHCORE_DOCS_OUT" && rm -rf "$AUTHCORE_DOCS_OUT/python" && cp -r "$work/pydoc" "$AUTHCORE_DOCS_OUT/python"
fi

step "stubs match the compiled module (mypy stubtest)"
"$work/venv/bin/python" -m mypy.stubtest authcore

step "the package and the tests type-check against the stubs (mypy --strict)"
"$work/venv/bin/python" -m mypy --strict --no-incremental -p authcore
"$work/venv/bin/python" -m mypy --strict --no-incremental "$root/python/tests"

step "pytest against the installed wheel and a devserver process"
"$work/venv/bin/python" -m pytest -q -W error -p no:cacheprovider \
    --rootdir "$root/python/tests" "$root/python/tests" "$@"

step "Python face: all passed"
