#!/usr/bin/env bash
# Builds libauthcore and installs it under a prefix:
#   PREFIX/lib/libauthcore.so.VERSION (+ the soname link, libauthcore.so.0, and the .so
#     link), PREFIX/lib/libauthcore.a,
#   PREFIX/include/authcore.h,
#   PREFIX/lib/pkgconfig/authcore.pc,
#   PREFIX/lib/cmake/authcore/authcoreConfig.cmake + authcoreConfigVersion.cmake
#     (find_package(authcore): imported targets authcore::authcore, the shared library,
#     and authcore::authcore_static)
#   PREFIX/share/doc/authcore/: LICENSE-MIT, LICENSE-APACHE and THIRD-PARTY-LICENSES (the
#     licences of the crates compiled into the library)
# Usage: bash ffi-c/install.sh [PREFIX]   (default /usr/local)
#   DESTDIR=STAGE bash ffi-c/install.sh /usr   stages the files under STAGE/usr for a
#   package while the pkg-config file names /usr (PREFIX must then be absolute).
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
destdir="${DESTDIR:-}"
if [ -n "$destdir" ]; then
    case "$prefix" in
        /*) ;;
        *) echo "install.sh: with DESTDIR, PREFIX must be an absolute path (got $prefix)" >&2; exit 2 ;;
    esac
    prefix="${prefix%/}"
    mkdir -p "$destdir$prefix"
else
    mkdir -p "$prefix"
    prefix="$(cd "$prefix" && pwd)"
fi
dest="$destdir$prefix"
echo "building libauthcore (release)..."
cargo build --quiet --release --locked -p authcore-ffi --manifest-path "$root/Cargo.toml"
target="${CARGO_TARGET_DIR:-$root/target}/release"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
# The soname is the one ffi-c/build.rs gives the library (bumped there, and only there,
# when the ABI breaks).
soname=$(sed -n 's/.*-soname,\(libauthcore\.so\.[0-9][0-9]*\).*/\1/p' "$root/ffi-c/build.rs" | head -1)
[ -n "$soname" ] || { echo "install.sh: ffi-c/build.rs names no soname" >&2; exit 1; }

install -d "$dest/lib/pkgconfig" "$dest/lib/cmake/authcore" "$dest/include" "$dest/share/doc/authcore"
# Versioned shared library: the real file, the soname link, the link-time name.
install -m 0755 "$target/libauthcore.so" "$dest/lib/libauthcore.so.$version"
ln -sf "libauthcore.so.$version" "$dest/lib/$soname"
ln -sf "$soname" "$dest/lib/libauthcore.so"
install -m 0644 "$target/libauthcore.a" "$dest/lib/libauthcore.a"
install -m 0644 "$root/include/authcore.h" "$dest/include/authcore.h"
install -m 0644 "$root/LICENSE-MIT" "$root/LICENSE-APACHE" "$root/THIRD-PARTY-LICENSES" \
    "$dest/share/doc/authcore/"
cat > "$dest/lib/pkgconfig/authcore.pc" <<PC
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
# The CMake package. It finds the prefix from its own location, so a prefix moved
# elsewhere still works. Written by hand: installing needs no CMake.
cat > "$dest/lib/cmake/authcore/authcoreConfig.cmake" <<CMAKE
# find_package(authcore) for libauthcore $version, installed by ffi-c/install.sh.
#   authcore::authcore         the shared library ($soname)
#   authcore::authcore_static  the static library (libauthcore.a) and what it links
get_filename_component(_authcore_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)
if(NOT TARGET authcore::authcore)
  add_library(authcore::authcore SHARED IMPORTED)
  set_target_properties(authcore::authcore PROPERTIES
    IMPORTED_LOCATION "\${_authcore_prefix}/lib/libauthcore.so.$version"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_authcore_prefix}/include")
endif()
if(NOT TARGET authcore::authcore_static)
  add_library(authcore::authcore_static STATIC IMPORTED)
  set_target_properties(authcore::authcore_static PROPERTIES
    IMPORTED_LOCATION "\${_authcore_prefix}/lib/libauthcore.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_authcore_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;\${CMAKE_DL_LIBS};m;rt;util;gcc_s")
endif()
set(authcore_INCLUDE_DIR "\${_authcore_prefix}/include")
set(authcore_LIBRARIES authcore::authcore)
unset(_authcore_prefix)
CMAKE
# Which requests this version satisfies, by the README's version policy: the same major
# version and at least the minor asked for; while the major is 0, the same minor (0.x
# minors may break). A version range (find_package(authcore 0.1...0.3)) is honoured.
cat > "$dest/lib/cmake/authcore/authcoreConfigVersion.cmake" <<'CMAKE'
set(PACKAGE_VERSION "@VERSION@")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")
  set(PACKAGE_VERSION "${PACKAGE_VERSION} (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
  return()
endif()
if(NOT DEFINED PACKAGE_FIND_VERSION OR PACKAGE_FIND_VERSION STREQUAL "")
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  return()
endif()
string(REGEX MATCH "^([0-9]+)\.([0-9]+)" _authcore_mm "${PACKAGE_VERSION}")
set(_authcore_major "${CMAKE_MATCH_1}")
set(_authcore_minor "${CMAKE_MATCH_2}")
if(PACKAGE_FIND_VERSION_RANGE)
  set(_authcore_low "${PACKAGE_FIND_VERSION_MIN}")
else()
  set(_authcore_low "${PACKAGE_FIND_VERSION}")
endif()
string(REGEX MATCH "^([0-9]+)(\.([0-9]+))?" _authcore_mm "${_authcore_low}")
set(_authcore_want_major "${CMAKE_MATCH_1}")
set(_authcore_want_minor "${CMAKE_MATCH_3}")
if(_authcore_want_minor STREQUAL "")
  set(_authcore_want_minor 0)
endif()
if(PACKAGE_VERSION VERSION_LESS _authcore_low)
  # Older than asked for.
elseif(PACKAGE_FIND_VERSION_RANGE)
  if((PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "INCLUDE" AND PACKAGE_VERSION VERSION_LESS_EQUAL PACKAGE_FIND_VERSION_MAX)
     OR (PACKAGE_FIND_VERSION_RANGE_MAX STREQUAL "EXCLUDE" AND PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION_MAX))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
elseif(_authcore_major EQUAL _authcore_want_major
       AND (_authcore_major GREATER 0 OR _authcore_minor EQUAL _authcore_want_minor))
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
unset(_authcore_mm)
unset(_authcore_major)
unset(_authcore_minor)
unset(_authcore_low)
unset(_authcore_want_major)
unset(_authcore_want_minor)
CMAKE
sed -i "s/@VERSION@/$version/" "$dest/lib/cmake/authcore/authcoreConfigVersion.cmake"
echo "installed libauthcore $version ($soname) under $dest"
