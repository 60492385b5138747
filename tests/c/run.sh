#!/usr/bin/env bash
# The C face of authcore, tested as a C programmer uses it:
#   1. the committed header matches what cbindgen generates from ffi-c/src;
#   2. the header compiles as C11 (-Wall -Wextra -Wpedantic -Werror) and as C++;
#   3. `ffi-c/install.sh` installs it and the README's C example builds with pkg-config
#      and runs against the development provider (its DPoP example compiles);
#   4. the C tests (API, 32 threads, DPoP, the shared scenarios) pass under AddressSanitizer +
#      UBSan and under valgrind with leak checking.
# Needs: cbindgen (pinned), gcc/g++, pkg-config, valgrind, libcjson-dev, node, openssl.
# `bash tests/c/run.sh bench` runs the C benchmark instead of the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
work="$(mktemp -d)"
devserver_pid=""
tls_devserver_pid=""
redis_pid=""
oidc_pid=""
oidc_tls_pid=""
cleanup() {
    if [ -n "$oidc_pid" ]; then kill "$oidc_pid" 2>/dev/null || true; wait "$oidc_pid" 2>/dev/null || true; fi
    if [ -n "$oidc_tls_pid" ]; then kill "$oidc_tls_pid" 2>/dev/null || true; wait "$oidc_tls_pid" 2>/dev/null || true; fi
    if [ -n "$devserver_pid" ]; then kill "$devserver_pid" 2>/dev/null || true; fi
    if [ -n "$tls_devserver_pid" ]; then kill "$tls_devserver_pid" 2>/dev/null || true; wait "$tls_devserver_pid" 2>/dev/null || true; fi
    if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

cargo build --release --locked -p authcore-cli
# Every C program here links the library as installed, exactly as users get it.
bash ffi-c/install.sh "$work/prefix" > "$work/install.out"
grep -q "installed libauthcore" "$work/install.out" || { cat "$work/install.out" >&2; exit 1; }
prefix="$work/prefix"
CFLAGS_COMMON=(-std=c11 -Wall -Wextra -Wpedantic -Werror -D_POSIX_C_SOURCE=200809L -g -I"$prefix/include")
LINK=(-L"$prefix/lib" -lauthcore -Wl,-rpath,"$prefix/lib" -pthread)

# The development provider, on a free loopback port.
start_devserver() {
    "$root/target/release/authcore" devserver --host 127.0.0.1 --port 0 > "$work/devserver.out" 2>&1 &
    devserver_pid=$!
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^AUTHCORE_DEVSERVER_URL=//p' "$work/devserver.out")
        if [ -n "$url" ]; then
            export AUTHCORE_DEVSERVER_URL="$url"
            return 0
        fi
        sleep 0.1
    done
    echo "the devserver did not start:" >&2
    cat "$work/devserver.out" >&2
    exit 1
}
start_devserver

# The same provider serving HTTPS with a throwaway CA, for the TLS trust tests.
start_tls_devserver() {
    "$root/target/release/authcore" devserver --host 127.0.0.1 --port 0 --tls-dir "$work/tls" \
        > "$work/tls-devserver.out" 2>&1 &
    tls_devserver_pid=$!
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^AUTHCORE_DEVSERVER_URL=//p' "$work/tls-devserver.out")
        if [ -n "$url" ]; then
            export AUTHCORE_DEVSERVER_TLS_URL="$url"
            export AUTHCORE_DEVSERVER_TLS_CA="$work/tls/ca.pem"
            return 0
        fi
        sleep 0.1
    done
    echo "the TLS devserver did not start:" >&2
    cat "$work/tls-devserver.out" >&2
    exit 1
}
start_tls_devserver

# A Redis of the suite's own on a free loopback port, for the Redis store tests.
start_redis() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/redis"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/redis" \
        > "$work/redis.out" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export AUTHCORE_REDIS_URL="redis://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    echo "redis-server did not start:" >&2
    cat "$work/redis.out" >&2
    exit 1
}
start_redis

# oidc-provider (tests/oidc, installed by tests/provision.sh) on a free loopback port, for
# the interoperability test. Its stdin is a FIFO this script holds open.
start_oidc() {
    mkfifo "$work/oidc.in"
    (cd tests/oidc && exec node server.mjs < "$work/oidc.in" > "$work/oidc.out" 2>/dev/null) &
    oidc_pid=$!
    exec 9> "$work/oidc.in"
    for _ in $(seq 1 200); do
        issuer=$(sed -n 's/^OIDC_ISSUER=//p' "$work/oidc.out")
        if [ -n "$issuer" ]; then
            export AUTHCORE_OIDC_ISSUER="$issuer"
            return 0
        fi
        sleep 0.1
    done
    echo "oidc-provider did not start" >&2
    exit 1
}
# The same in TLS mode (mutual TLS, RFC 8705), with throwaway certificates made by
# tests/oidc/make-certs.sh; its mTLS listener's address in AUTHCORE_OIDC_MTLS_BASE.
start_oidc_tls() {
    bash tests/oidc/make-certs.sh "$work/oidc-tls"
    mkfifo "$work/oidc-tls.in"
    (cd tests/oidc && AUTHCORE_OIDC_TLS_DIR="$work/oidc-tls" exec node server.mjs \
        < "$work/oidc-tls.in" > "$work/oidc-tls.out" 2>/dev/null) &
    oidc_tls_pid=$!
    exec 8> "$work/oidc-tls.in"
    for _ in $(seq 1 200); do
        base=$(sed -n 's/^OIDC_MTLS_BASE=//p' "$work/oidc-tls.out")
        if [ -n "$base" ]; then
            export AUTHCORE_OIDC_TLS_ISSUER="$(sed -n 's/^OIDC_ISSUER=//p' "$work/oidc-tls.out")"
            export AUTHCORE_OIDC_MTLS_BASE="$base"
            export AUTHCORE_OIDC_TLS_DIR="$work/oidc-tls"
            return 0
        fi
        sleep 0.1
    done
    echo "oidc-provider (TLS) did not start" >&2
    exit 1
}
if [ "${1:-}" != "bench" ]; then start_oidc; start_oidc_tls; fi

if [ "${1:-}" = "bench" ]; then
    gcc "${CFLAGS_COMMON[@]}" -O2 tests/c/bench.c -o "$work/bench" "${LINK[@]}" -lcjson
    "$work/bench"
    exit 0
fi

step "header is up to date (cbindgen --verify)"
bash ffi-c/gen-header.sh --verify

step "header compiles as C11 and as C++"
printf '#include "authcore.h"\nint main(void) { return authcore_status_str(AUTHCORE_STATUS_OK) == 0; }\n' > "$work/h.c"
gcc "${CFLAGS_COMMON[@]}" -c "$work/h.c" -o "$work/h.o"
g++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -I"$prefix/include" -x c++ -c "$work/h.c" -o "$work/hpp.o"

step "installed under a prefix; the README example builds with pkg-config and runs"
readelf -d "$prefix/lib/libauthcore.so" | grep -E 'SONAME.*\[libauthcore\.so\.[0-9]+\]' > /dev/null || {
    echo "libauthcore.so has no soname libauthcore.so.N" >&2; exit 1; }
# The README's C blocks: the first is the example that runs; the next (DPoP) must compile.
readme_c_block() { awk -v want="$1" '/^```c$/{n++; on=(n==want); next} /^```$/{on=0} on' README.md; }
readme_c_block 1 > "$work/example.c"
test -s "$work/example.c" || { echo "README has no C example" >&2; exit 1; }
readme_c_block 2 > "$work/dpop_example.c"
grep -q authcore_client_request_headers "$work/dpop_example.c" || {
    echo "README has no C DPoP example" >&2; exit 1; }
gcc "${CFLAGS_COMMON[@]}" -c "$work/dpop_example.c" -o "$work/dpop_example.o"
(
    cd "$work"
    export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
    # shellcheck disable=SC2046
    cc example.c $(pkg-config --cflags --libs authcore) -o example
    # No LD_LIBRARY_PATH: the pkg-config recipe records the prefix's lib directory
    # (rpath), so a prefix install runs as it is.
    ./example | tee example.out
    grep -q "HTTP 200" example.out
)
# The README's C shell block, run as written (README test): a HOME of its own, install.sh
# from the checkout, and the provider this suite started in place of the block's own on
# port 8765.
readme_sh_block() { awk '/^## C$/{c=1} c && /^```sh$/{on=1; next} on && /^```$/{exit} on' README.md; }
readme_port=$(readme_sh_block | sed -n 's/.* devserver --port \([0-9][0-9]*\) &.*/\1/p')
[ -n "$readme_port" ] || { echo "README: the C shell block starts no provider" >&2; exit 1; }
readme_sh_block | grep -v ' devserver --port ' \
    | sed -e "s#bash ffi-c/install.sh#bash '$root/ffi-c/install.sh'#" \
          -e "s#http://127.0.0.1:$readme_port#$AUTHCORE_DEVSERVER_URL#" > "$work/readme-c.sh"
grep -q 'pkg-config' "$work/readme-c.sh" || { echo "README: no C shell block" >&2; exit 1; }
mkdir -p "$work/readme-home"
# The toolchain stays where it is installed (rustup and cargo find it through HOME).
(cd "$work" && export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
    && HOME="$work/readme-home" env -u AUTHCORE_DEVSERVER_URL bash -e readme-c.sh > readme-c.out 2>&1) \
    || { cat "$work/readme-c.out" >&2; echo "README: the C shell block failed" >&2; exit 1; }
grep -q "HTTP 200" "$work/readme-c.out" || { cat "$work/readme-c.out" >&2; exit 1; }
# The static library links too.
(
    cd "$work"
    export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
    # shellcheck disable=SC2046
    cc example.c -o example-static "$work/prefix/lib/libauthcore.a" \
        $(pkg-config --cflags --libs-only-other --static authcore) -lpthread -ldl -lm
    ./example-static > /dev/null
)

TESTS=(test_api test_events test_threads test_fork test_store test_dpop test_workload test_exchange test_oidc scenarios)
# test_fork runs under valgrind and not under ASan: gcc 12's libasan does not make its own
# allocator locks fork-safe, so a child forked while another thread is inside malloc can
# hang in ASan's allocator (seen: 2 of 20 children; 0 of 60 in the plain and valgrind
# builds).
ASAN_TESTS=(test_api test_events test_threads test_store test_dpop test_workload test_exchange test_oidc scenarios)
args_for() { if [ "$1" = scenarios ]; then echo "$root/tests/scenarios"; fi; }

step "C tests under AddressSanitizer + UBSan"
for t in "${ASAN_TESTS[@]}"; do
    gcc "${CFLAGS_COMMON[@]}" -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
        -fno-sanitize-recover=all "tests/c/$t.c" -o "$work/$t.asan" "${LINK[@]}" -lcjson
    # Prove the sanitizers are really in the binary, not silently dropped.
    ldd "$work/$t.asan" | grep libasan >/dev/null || { echo "$t: libasan not linked" >&2; exit 1; }
    ldd "$work/$t.asan" | grep libubsan >/dev/null || { echo "$t: libubsan not linked" >&2; exit 1; }
    nm "$work/$t.asan" | grep '__asan_report_load' >/dev/null || { echo "$t: not instrumented" >&2; exit 1; }
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$work/$t.asan" $(args_for "$t")
done

step "C tests under valgrind (memcheck, leak checking)"
for t in "${TESTS[@]}"; do
    gcc "${CFLAGS_COMMON[@]}" -O1 "tests/c/$t.c" -o "$work/$t" "${LINK[@]}" -lcjson
    # A forked child inherits the memory of threads that do not exist in it (their
    # thread-locals, an in-flight request's buffers); valgrind would count those as the
    # child's leaks. test_fork is checked for memory errors only; every other program
    # (which covers the same code in one process) is leak-checked.
    leaks=full
    if [ "$t" = test_fork ]; then leaks=no; fi
    # Time budgets in the tests are multiplied by AUTHCORE_TEST_SLOWDOWN (harness.h).
    AUTHCORE_TEST_SLOWDOWN=4 \
    valgrind --quiet --error-exitcode=99 --leak-check=$leaks \
        --suppressions="$root/tests/c/valgrind.supp" \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        "$work/$t" $(args_for "$t")
done

step "C face: all passed"
