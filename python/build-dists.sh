#!/usr/bin/env bash
# Builds the Python artefacts of a release and checks them, by hand (CI builds and checks
# only the x86_64 manylinux wheel, in tests/python/run.sh, to keep its time):
#   authcore_client-VERSION.tar.gz                                   the sdist
#   authcore_client-VERSION-cp39-abi3-manylinux_2_17_x86_64...whl    glibc 2.17+ (zig)
#   authcore_client-VERSION-cp39-abi3-manylinux_2_17_aarch64...whl   glibc 2.17+, cross-built (zig)
#   authcore_client-VERSION-cp39-abi3-musllinux_1_2_x86_64.whl       musl 1.2+ (Alpine; zig)
# Checks: `twine check --strict` on all four; every wheel carries py.typed, the stubs and
# the licences; the sdist installs with `pip install authcore_client-VERSION.tar.gz` into a fresh
# virtual environment (compiling the extension from source: needs Rust, as a user of the
# sdist does) and that install reports the workspace's version and works.
# Writes OUT/SUMMARY.txt: each artefact's size and build time.
#
# Usage: bash python/build-dists.sh [OUT]    (default: dist/ in the checkout)
# Needs: Rust with rustup (it adds the aarch64 and musl targets), Python 3.11+ with pip (the
# pinned tools of python/constraints.txt need it; the wheels serve CPython 3.9+).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)

step() { printf '\n== %s\n' "$*"; }
summary="$out/SUMMARY.txt"
: > "$summary"
record() { # name file seconds
    printf '%-70s %8s KiB %5s s\n' "$(basename "$2")" "$(( $(stat -c %s "$2") / 1024 ))" "$3" | tee -a "$summary"
}

step "build tools (maturin, zig, twine) in a throwaway environment"
"$python" -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet -c "$root/python/constraints.txt" \
    "maturin==1.16.0" "ziglang==0.17.0" -r "$root/python/requirements-release.txt"
export PATH="$work/tools/bin:$PATH"
if command -v rustup >/dev/null 2>&1; then
    rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-musl >/dev/null
fi
rm -f "$out"/authcore_client-"$version"*

cd "$root/python"
build_wheel() { # target compatibility
    local start=$SECONDS before after
    before=$(ls "$out"/*.whl 2>/dev/null || true)
    maturin build --release --locked --zig --target "$1" --compatibility "$2" \
        --out "$out" --interpreter "$python" >"$work/build-$1.log" 2>&1 || {
        cat "$work/build-$1.log" >&2; exit 1; }
    after=$(ls "$out"/*.whl)
    record "$1" "$(comm -13 <(echo "$before") <(echo "$after") | head -1)" $((SECONDS - start))
}

step "sdist"
start=$SECONDS
maturin sdist --out "$out" >"$work/sdist.log" 2>&1 || { cat "$work/sdist.log" >&2; exit 1; }
record sdist "$out/authcore_client-$version.tar.gz" $((SECONDS - start))

step "wheels: manylinux x86_64, manylinux aarch64 (cross), musllinux x86_64"
build_wheel x86_64-unknown-linux-gnu manylinux2014
build_wheel aarch64-unknown-linux-gnu manylinux2014
build_wheel x86_64-unknown-linux-musl musllinux_1_2

step "twine check --strict"
twine check --strict "$out"/authcore_client-"$version"*

step "every wheel carries the typing markers and the licences, and the right tags"
for whl in "$out"/authcore_client-"$version"-*.whl; do
    "$python" - "$whl" <<'PY'
import sys, zipfile
whl = sys.argv[1]
names = set(zipfile.ZipFile(whl).namelist())
need = ["authcore/py.typed", "authcore/_authcore.pyi", "authcore/__init__.py"]
missing = [n for n in need if n not in names]
licences = [n for n in names if n.endswith(("LICENSE-MIT", "LICENSE-APACHE", "THIRD-PARTY-LICENSES"))]
if missing or len(licences) != 3:
    sys.exit(f"{whl}: missing {missing}, licences {licences}")
PY
done
ls "$out" | grep -q 'manylinux_2_17_x86_64' || { echo "no manylinux x86_64 wheel" >&2; exit 1; }
ls "$out" | grep -q 'manylinux_2_17_aarch64' || { echo "no manylinux aarch64 wheel" >&2; exit 1; }
ls "$out" | grep -q 'musllinux_1_2_x86_64' || { echo "no musllinux x86_64 wheel" >&2; exit 1; }
# The aarch64 module is an aarch64 ELF, the musl one links musl's loader.
unzip -p "$out"/*manylinux_2_17_aarch64*.whl 'authcore/_authcore.abi3.so' > "$work/aarch64.so"
readelf -h "$work/aarch64.so" | grep -q 'AArch64' || { echo "the aarch64 wheel is not aarch64" >&2; exit 1; }
unzip -p "$out"/*musllinux_1_2_x86_64*.whl 'authcore/_authcore.abi3.so' > "$work/musl.so"
# musl's C library is libc.so (glibc's is libc.so.6).
readelf -d "$work/musl.so" | grep -q 'Shared library: \[libc.so\]' \
    || { readelf -d "$work/musl.so" | grep NEEDED >&2; echo "the musllinux wheel does not link musl" >&2; exit 1; }

step "the sdist installs with pip (built from source) into a fresh environment"
"$python" -m venv "$work/sdist-venv"
start=$SECONDS
"$work/sdist-venv/bin/pip" install --quiet "$out/authcore_client-$version.tar.gz"
printf '%-70s %14s %5s s\n' "pip install authcore_client-$version.tar.gz (compiles)" "" $((SECONDS - start)) | tee -a "$summary"
(
    cd "$work"
    "$work/sdist-venv/bin/python" - "$version" <<'PY'
import pathlib, sys
import authcore
assert authcore.__version__ == sys.argv[1], authcore.__version__
assert (pathlib.Path(authcore.__file__).parent / "py.typed").exists()
client = authcore.Client.personal_access_token("sdist-token")
assert client.authorization_header() == "Bearer sdist-token"
print(f"authcore {authcore.__version__} from the sdist: ok")
PY
)

step "artefacts in $out"
cat "$summary"
