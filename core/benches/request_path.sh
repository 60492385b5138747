#!/usr/bin/env bash
# What one authenticated GET costs on top of plain ureq, for every face of authcore, in
# figures that do not move with the machine's load: instructions (valgrind's
# cachegrind), heap allocations and bytes (valgrind's dhat, which counts every malloc of
# the process whatever calls it) and system calls (strace, when it is installed).
#
#   bash core/benches/request_path.sh            (from anywhere in the checkout)
#
# One process serves (core/benches/request_path.rs `server`, not counted); each face runs
# in a process of its own, twice, with N1 and N2 requests after 200 warm-up requests: the
# difference divided by N2 - N1 is one request, without start-up and the first token.
#   plain     ureq 3 without timeouts, `GET /api` with a Bearer header
#   Client::get      a client-credentials client (core/benches/request_path.rs)
#   C         authcore_client_get + authcore_response_free through the installed
#             libauthcore (core/benches/c/request_path.c)
#   Python    client.get through the Python module (python/bench/request_path.py); its
#             allocations are counted with PYTHONMALLOC=malloc, so the interpreter's own
#             objects (the Response, the loop's) are in them
#   DPoP      Client::get with a DPoP-bound token (ES256): N1/10 and N2/10 requests
#
# Settings (environment): N1, N2 (default 1000 and 4000); FACES (default
# "plain authcore c python dpop"); PYTHON, an interpreter that imports an installed
# authcore wheel (`bash tests/python/run.sh bench` sets it) — without it the module is
# built here with cargo and put on python3's path.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export PATH="$root/.tools/bin:$PATH"
target="${CARGO_TARGET_DIR:-$root/target}"
N1=${N1:-1000}
N2=${N2:-4000}
FACES=${FACES:-plain authcore c python dpop}
die() { echo "request_path.sh: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is needed to count instructions and allocations (tests/provision.sh installs it)"
command -v python3 >/dev/null || die "python3 is needed (it reads cargo's output and prints the table)"
[ "$N2" -gt "$N1" ] || die "N2 ($N2) must be larger than N1 ($N1)"
# System calls are counted when strace is there and may trace (a container may forbid it).
has_strace=1
strace=$(command -v strace || true)
[ -n "$strace" ] && "$strace" -f -c -o /dev/null true >/dev/null 2>&1 || has_strace=0
valgrind=$(command -v valgrind)
wants() { [[ " $FACES " == *" $1 "* ]]; }

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the benchmark binary (cargo bench --no-run)..." >&2
bin=$(cargo bench --locked -p authcore --bench request_path --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="request_path" and m.get("executable"): print(m["executable"])' | tail -1)
[ -x "$bin" ] || die "the benchmark binary did not build (run: cargo bench -p authcore --bench request_path --no-run)"

if wants c; then
    command -v gcc >/dev/null || die "gcc is needed for the C face (or leave it out: FACES=\"plain authcore python dpop\")"
    echo "building and installing libauthcore..." >&2
    bash ffi-c/install.sh "$work/prefix" >/dev/null
    gcc -O2 -I "$work/prefix/include" core/benches/c/request_path.c -o "$work/request_path_c" \
        -L "$work/prefix/lib" -lauthcore -Wl,-rpath,"$work/prefix/lib"
fi

python_env=()
if wants python; then
    if [ -n "${PYTHON:-}" ]; then
        py=$PYTHON
        "$py" -c 'import authcore' 2>/dev/null || die "PYTHON=$PYTHON cannot import authcore"
    else
        # The interpreter itself, not a wrapper script (valgrind would count the wrapper).
        py=$(python3 -c 'import sys; print(sys.executable)')
        echo "building the Python module (cargo build --release -p authcore-python)..." >&2
        cargo build --quiet --release --locked -p authcore-python
        mkdir -p "$work/py/authcore"
        cp python/authcore/*.py "$work/py/authcore/"
        cp "$target/release/lib_authcore.so" "$work/py/authcore/_authcore.abi3.so"
        "$py" -m compileall -q "$work/py/authcore" >/dev/null
        python_env=("PYTHONPATH=$work/py")
        env "${python_env[@]}" "$py" -c 'import authcore' || die "$py cannot import the module built here"
    fi
fi

fifo="$work/port"
mkfifo "$fifo"
"$bin" --bench server >"$fifo" &
server=$!
read -r port <"$fifo"

# The command line of FACE sending N requests, in the array `cmd`, and the environment
# it needs, in `cmd_env`. Faces run in that environment alone: the size of the
# environment moves the stack, and with it the instructions of copies that depend on
# alignment (a few dozen a request).
face_cmd() {
    cmd_env=()
    case $1 in
        plain | authcore | dpop) cmd=("$bin" --bench "$1" "$port" "$2") ;;
        c) cmd=("$work/request_path_c" "$port" "$2") ;;
        python)
            cmd=("$py" "$root/python/bench/request_path.py" "$port" "$2")
            # The same string hashes in every run, and no run writes bytecode (the
            # first run would compile what the others read).
            cmd_env=("${python_env[@]}" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1)
            ;;
    esac
}

# Runs a measuring tool over FACE sending N requests; prints the count it reports
# (allocations: blocks and bytes). Fails loudly when the face fails or the count is
# not in the report.
measure() { # tool face n
    local value
    value=$(measure_once "$@")
    [ -n "$value" ] || die "no $1 count for the $2 face in the tool's report"
    echo "$value"
}
measure_once() { # tool face n
    local tool=$1 face=$2 n=$3 out="$work/out"
    face_cmd "$face" "$n"
    case $tool in
        instructions)
            env -i "${cmd_env[@]}" "$valgrind" --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "${cmd[@]}" >"$out" 2>&1 \
                || { cat "$out" >&2; die "the $face face failed under cachegrind"; }
            sed -n 's/.*I *refs: *//p' "$out" | tr -d ','
            ;;
        allocations)
            [ "$face" = python ] && cmd_env+=(PYTHONMALLOC=malloc)
            env -i "${cmd_env[@]}" "$valgrind" --tool=dhat --dhat-out-file=/dev/null "${cmd[@]}" >"$out" 2>&1 \
                || { cat "$out" >&2; die "the $face face failed under dhat"; }
            sed -n 's/.*Total: *\([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\2 \1/p' "$out" | tr -d ','
            ;;
        syscalls)
            env -i "${cmd_env[@]}" "$strace" -f -c -o "$work/strace" "${cmd[@]}" >"$out" 2>&1 \
                || { cat "$out" >&2; die "the $face face failed under strace"; }
            awk '$NF == "total" { print $4 }' "$work/strace"
            ;;
    esac
}

results="$work/results"
for face in plain authcore c python dpop; do
    wants "$face" || continue
    n1=$N1 n2=$N2
    if [ "$face" = dpop ]; then n1=$((N1 / 10)) n2=$((N2 / 10)); fi
    echo "measuring $face ($n1 and $n2 requests)..." >&2
    i1=$(measure instructions "$face" "$n1"); i2=$(measure instructions "$face" "$n2")
    a1=$(measure allocations "$face" "$n1"); a2=$(measure allocations "$face" "$n2")
    read -r b1 y1 <<<"$a1"; read -r b2 y2 <<<"$a2"
    s1=0 s2=0
    if [ "$has_strace" = 1 ]; then
        s1=$(measure syscalls "$face" "$n1"); s2=$(measure syscalls "$face" "$n2")
    fi
    echo "$face $((n2 - n1)) $((i2 - i1)) $((b2 - b1)) $((y2 - y1)) $((s2 - s1))" >>"$results"
done

python3 - "$results" "$N1" "$N2" "$has_strace" <<'EOF'
import sys

path, n1, n2, has_strace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
names = {
    "plain": "plain ureq (no timeouts)",
    "authcore": "Client::get",
    "c": "C authcore_client_get",
    "python": "Python client.get",
    "dpop": "Client::get, DPoP (ES256)",
}
rows = {}
for line in open(path):
    face, n, instr, blocks, size, calls = line.split()
    n = int(n)
    rows[face] = (int(instr) / n, int(blocks) / n, int(size) / n, int(calls) / n)
plain = rows.get("plain")
rust = rows.get("authcore")
print(f"per request, the difference of {n2} and {n1} requests (DPoP: {n2 // 10} and {n1 // 10}) divided by the difference:")
head = f"{'face':<27} {'instructions':>12} {'vs plain':>17} {'vs Client::get':>15} {'allocations':>11} {'bytes':>7}"
if has_strace:
    head += f" {'syscalls':>8}"
print(head)
for face in ["plain", "authcore", "c", "python", "dpop"]:
    if face not in rows:
        continue
    instr, blocks, size, calls = rows[face]
    vs_plain = vs_rust = ""
    if plain and face != "plain":
        vs_plain = f"{instr - plain[0]:+.0f} ({(instr / plain[0] - 1) * 100:+.1f} %)"
    if rust and face in ("c", "python"):
        vs_rust = f"{instr - rust[0]:+.0f}"
    line = f"{names[face]:<27} {instr:>12.0f} {vs_plain:>17} {vs_rust:>15} {blocks:>11.2f} {size:>7.0f}"
    if has_strace:
        line += f" {calls:>8.2f}"
    print(line)
if not has_strace:
    print("(strace is not installed, or may not trace here: system calls are not counted)")
EOF
