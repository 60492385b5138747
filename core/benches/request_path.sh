#!/usr/bin/env bash
# What one authenticated request costs on top of plain ureq: instructions (cachegrind,
# the difference of two runs of different lengths, so start-up and the first token
# cancel out) and heap allocations (dhat's counter), for Client::get with and without
# DPoP. The server runs in its own process and is not counted.
#   bash core/benches/request_path.sh            (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export PATH="$root/.tools/bin:$PATH"
command -v valgrind >/dev/null || { echo "valgrind is needed (tests/provision.sh provisions it)"; exit 1; }
bin=$(cargo bench -p authcore --bench request_path --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="request_path" and m.get("executable"): print(m["executable"])' | tail -1)
fifo=$(mktemp -u); mkfifo "$fifo"
"$bin" --bench server >"$fifo" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$fifo"; [ -n "${cdir:-}" ] && rm -rf "$cdir"' EXIT
read -r port <"$fifo"
N1=${N1:-2000}; N2=${N2:-12000}
irefs() { # role count -> instructions of the whole run
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" --bench "$1" "$port" "$2" 2>&1 \
    | sed -n 's/.*I *refs: *//p' | tr -d ','
}
declare -A per
for role in plain authcore dpop; do
  a=$(irefs "$role" "$N1"); b=$(irefs "$role" "$N2")
  per[$role]=$(( (b - a) / (N2 - N1) ))
done
# The C face: the same calls through libauthcore, installed as users get it.
cdir=$(mktemp -d)
bash ffi-c/install.sh "$cdir/prefix" >/dev/null
cbin=$cdir/request_path_c
gcc -O2 -I "$cdir/prefix/include" core/benches/c/request_path.c -o "$cbin" \
  -L "$cdir/prefix/lib" -lauthcore -Wl,-rpath,"$cdir/prefix/lib"
cirefs() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$cbin" "$port" "$1" 2>&1 \
    | sed -n 's/.*I *refs: *//p' | tr -d ','
}
a=$(cirefs "$N1"); b=$(cirefs "$N2")
per[c]=$(( (b - a) / (N2 - N1) ))
# The Python face, when a Python with the authcore wheel installed is named
# (`bash tests/python/run.sh bench` does that).
python_part=""
if [ -n "${PYTHON:-}" ]; then
  pirefs() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
      "$PYTHON" "$root/python/bench/request_path.py" "$port" "$1" 2>&1 \
      | sed -n 's/.*I *refs: *//p' | tr -d ','
  }
  a=$(pirefs "$N1"); b=$(pirefs "$N2")
  per[python]=$(( (b - a) / (N2 - N1) ))
  python_part=", through Python ${per[python]} (+$(( per[python] - per[authcore] )) over Client::get)"
fi
echo "instructions per request (cachegrind, ($N2 - $N1) requests): plain ureq ${per[plain]}, authcore ${per[authcore]} (+$(( per[authcore] - per[plain] )), $(python3 -c "print(f'{(${per[authcore]}/${per[plain]}-1)*100:+.1f} %')")), through C ${per[c]} (+$(( per[c] - per[authcore] )) over Client::get)${python_part}, authcore with DPoP ${per[dpop]} (+$(( per[dpop] - per[plain] )))"
for role in plain authcore dpop; do
  "$bin" --bench "$role" "$port" 20000 allocs
done
