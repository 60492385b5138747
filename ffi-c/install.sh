#!/usr/bin/env bash
# Builds libauthcore and installs it under a prefix:
#   PREFIX/lib/libauthcore.so.VERSION (+ .so.0 and .so links), PREFIX/lib/libauthcore.a,
#   PREFIX/include/authcore.h,
#   PREFIX/lib/pkgconfig/authcore.pc
# Usage: bash ffi-c/install.sh [PREFIX]   (default /usr/local)
#
# The build goes to $CARGO_TARGET_DIR when it is set (as cargo does), else to target/
# in the checkout; the library is taken from there.
#
# Running programs: the pkg-config recipe (`pkg-config --libs authcore`) adds an rpath
# for PREFIX/lib, so a program linked with it finds libauthcore without
# LD_LIBRARY_PATH, wherever PREFIX is. A program linked another way needs PREFIX/lib on
# the loader's path: for a system prefix such as /usr/local run `ldconfig` once after
# installing (as root); otherwise link with -Wl,-rpath,PREFIX/lib.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-/usr/local}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
echo "building libauthcore (release)..."
cargo build --quiet --release --locked -p authcore-ffi --manifest-path "$root/Cargo.toml"
target="${CARGO_TARGET_DIR:-$root/target}/release"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)

install -d "$prefix/lib/pkgconfig" "$prefix/include"
# Versioned shared library: the real file, the soname link, the link-time name.
install -m 0755 "$target/libauthcore.so" "$prefix/lib/libauthcore.so.$version"
ln -sf "libauthcore.so.$version" "$prefix/lib/libauthcore.so.0"
ln -sf "libauthcore.so.0" "$prefix/lib/libauthcore.so"
install -m 0644 "$target/libauthcore.a" "$prefix/lib/libauthcore.a"
install -m 0644 "$root/include/authcore.h" "$prefix/include/authcore.h"
cat > "$prefix/lib/pkgconfig/authcore.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: authcore
Description: Access-token lifecycle: acquire, cache, renew ahead of expiry, recover from revocation
Version: $version
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lauthcore
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
Cflags: -I\${includedir}
PC
echo "installed libauthcore $version under $prefix"
