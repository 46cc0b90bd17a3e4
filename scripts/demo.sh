#!/usr/bin/env bash
# make demo: a server, three host devices, one of them behind a proxy that cuts
# its connection twice; all three end up running the new image (exit 0).
set -euo pipefail
build=${1:-build}
T=$build/cli/tcpota
P=$build/tools/tcpota-proxy
work=$(mktemp -d /tmp/tcpota-demo.XXXXXX)
pids=()
tees=()   # the tee of each log shown while it is written
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# logged FILE CMD...: runs CMD in the background, its stderr into FILE and
# onto the screen; its pid goes into pids, its tee's into tees (waited for
# before the verdict, so that the last lines come before it).
logged() {
  local f=$1
  shift
  exec {fd}> >(tee "$f" >&2)
  tees+=($!)
  "$@" 2>&$fd &
  pids+=($!)
  exec {fd}>&-
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
port_of() { sed -nE "s/.*listening on [^ ]*:([0-9]+).*/\1/p" "$1" | head -1; }
wait_for() { for _ in $(seq 100); do grep -q 'listening on' "$1" 2>/dev/null && return; sleep 0.05; done; echo "demo: $1 did not start" >&2; exit 1; }

step "1. a sample firmware image: 1 MiB, version 2.0.0"
head -c 1048576 /dev/urandom > "$work/firmware.bin"
sha256sum "$work/firmware.bin" | cut -c1-64

step "2. tcpota serve"
logged "$work/server.log" "$T" serve --listen 127.0.0.1:0 --version 2.0.0 --progress "$work/firmware.bin"
wait_for "$work/server.log"
port=$(port_of "$work/server.log")

step "3. a proxy that cuts device C's connection twice, on a 2 MB/s link"
logged "$work/proxy.log" "$P" --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --cut-random 2 --seed 7 \
     --cut-range 150000:900000 --rate 2000000
wait_for "$work/proxy.log"
cport=$(port_of "$work/proxy.log")
"$P" --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --rate 4000000 --quiet 2> "$work/proxy2.log" &
pids+=($!)
wait_for "$work/proxy2.log"
aport=$(port_of "$work/proxy2.log")

step "4. three devices running factory version 1.0.0 ask for updates"
"$T" device --server "127.0.0.1:$aport" --flash "$work/dev-a" --id dev-a --factory-version 1.0.0 --progress lines &
a=$!
"$T" device --server "127.0.0.1:$port" --flash "$work/dev-b" --id dev-b --factory-version 1.0.0 --progress lines &
b=$!
"$T" device --server "127.0.0.1:$cport" --flash "$work/dev-c" --id dev-c --factory-version 1.0.0 --progress lines \
     --backoff-min-ms 300 --backoff-max-ms 1000 &
c=$!
pids+=("$a" "$b" "$c")
rc=0
wait "$a" || rc=1
wait "$b" || rc=1
wait "$c" || rc=1

step "5. what each device runs now"
want=$(sha256sum "$work/firmware.bin" | cut -c1-64)
for d in dev-a dev-b dev-c; do
  s=$("$T" device status --flash "$work/$d")
  echo "$d: $s"
  echo "$s" | grep -q "\"version\":\"2.0.0\"" || rc=1
  echo "$s" | grep -q "\"sha256\":\"$want\"" || rc=1
done
echo "proxy cuts: $(grep -c 'cut at' "$work/proxy.log" || true)"
# The server and the proxies print their summaries as they stop: before the verdict.
kill -TERM "${pids[@]:0:3}" 2>/dev/null || true # one that died already: the verdict still comes
wait "${pids[@]:0:3}" "${tees[@]}" 2>/dev/null || true
pids=()
if [ $rc -eq 0 ]; then
  step "demo: all three devices run 2.0.0, byte-exact (one after two cuts)"
else
  step "demo: FAILED"
fi
exit $rc
