# lib.sh - shared helpers of the end-to-end tests: real processes on loopback.
# Each test sources this with TCPOTA, PROXY and LEGACY set to the binaries.
set -euo pipefail

# Under ASan+UBSan? ctest says so (TCPOTA_SANITIZED); run by hand, the
# binary does (the runtime is linked in: ldd does not show it).
if [ -z "${TCPOTA_SANITIZED:-}" ] && [ -n "${TCPOTA:-}" ]; then
  TCPOTA_SANITIZED=$( (nm "$TCPOTA" 2> /dev/null || true) | grep -q ' __asan_init$' && echo 1 || echo 0)
  export TCPOTA_SANITIZED
fi

WORK=$(mktemp -d /tmp/tcpota-e2e.XXXXXX)
# This directory: helpers of the tests (frames.py) are found here after a cd.
E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    echo "--- logs of the failed test ($WORK) ---" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -30 "$f" >&2; }; done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
# A peer may close while we still write to it: that must show up as a failed
# write (and a failed check), never kill the test with SIGPIPE.
trap '' PIPE

# The tests' python3 is the one `make deps` installs (Debian's, /usr/bin).
# A version manager's shim found first on PATH (pyenv's costs 0.3 s a call,
# and some tests call python3 a hundred times) is skipped.
if [ -x /usr/bin/python3 ]; then
  mkdir "$WORK/bin" && ln -s /usr/bin/python3 "$WORK/bin/python3" && PATH=$WORK/bin:$PATH
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# sanitizer_said LOG: what ASan, LSan or UBSan reported in LOG, on a few
# lines (its error, the first frames, its summary), for a FAIL message: the
# log's tail that cleanup prints may hold only the end of a long report.
sanitizer_said() {
  [ -f "$1" ] || return 0
  awk '/ERROR: (Address|Leak)Sanitizer|runtime error:|Sanitizer has encountered|Tracer caught|DEADLYSIGNAL/ { on = 1; n = 0 }
       /^(Direct|Indirect) leak of/ { n = 0 }
       on && /^ *#[0-9]+ / && n < 10 { print; n++ }
       on && /ERROR: |runtime error:|Sanitizer has encountered|Tracer caught|DEADLYSIGNAL|^(Direct|Indirect) leak of|^SUMMARY:/ { print }' "$1" | head -30
}

# make_image FILE BYTES: a random image (every run tests other bytes).
make_image() {
  head -c "$2" /dev/urandom > "$1"
  [ "$(stat -c %s "$1")" -eq "$2" ] || fail "could not make a $2-byte image"
}

# make_esp_app FILE CHIP_ID APP_VERSION: the start of an ESP-IDF app image
# as esp_app_format.h and esp_app_desc.h lay it out (the image header with
# its chip id, the first segment's header, the app description with its
# version and project "ota_client"), then 4 KiB of bytes.
make_esp_app() {
  python3 -c 'import struct, sys
hdr = bytes([0xE9, 4, 2, 0x20]) + struct.pack("<I", 0x42000020) + bytes([0xEE, 0, 0, 0])
hdr += struct.pack("<HBHH", int(sys.argv[2]), 0, 0, 99) + bytes(5)
desc = struct.pack("<4I", 0xABCD5432, 0, 0, 0) + sys.argv[3].encode().ljust(32, b"\0") + b"ota_client".ljust(32, b"\0")
open(sys.argv[1], "wb").write(hdr + struct.pack("<II", 0x3C000020, 4096) + desc + bytes(range(256)) * 16)' "$@" ||
    fail "could not make an ESP-IDF app image"
}

# flip_byte FILE OFFSET: changes one byte, whatever its value was (a
# fixed value written over random bytes is the same byte 1 time in 256).
flip_byte() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  [ -n "$b" ] || fail "flip_byte: $1 has no byte at offset $2"
  printf "\\$(printf %03o $(( (b + 1) % 256 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# with_failqueue NAME: ./NAME runs $TCPOTA with tests/tools/failqueue.c
# preloaded, for one process of a test: TCPOTA=./NAME start_server ...
# (Under ASan the runtime is linked into tcpota, not a library to preload
# first: CMakeLists.txt.)
with_failqueue() {
  [ -f "${FAILQUEUE:-}" ] || fail "FAILQUEUE must name the tcpota-failqueue library"
  printf '#!/bin/sh\nLD_PRELOAD='\''%s'\'' exec '\''%s'\'' "$@"\n' "$FAILQUEUE" "$TCPOTA" > "$1"
  chmod +x "$1"
}

# run RC CMD...: CMD exits RC within RUN_TIMEOUT seconds (default 10), its
# stdin /dev/null, its output in out.log and err.log (current directory).
run() {
  local want=$1 rc=0; shift
  timeout "${RUN_TIMEOUT:-10}" "$@" > out.log 2> err.log < /dev/null || rc=$?
  [ $rc -ne 124 ] || fail "hung (killed after ${RUN_TIMEOUT:-10} s): $*"
  [ $rc -eq "$want" ] || fail "exit $rc, expected $want: $*: $(cat err.log)"
}
# has FILE REGEX: FILE has a line matching REGEX (extended).
has() { grep -qE -- "$2" "$1" || fail "no /$2/ in $1: $(cat "$1")"; }

# free_ports N [ADDR]: N TCP ports free on ADDR (default 127.0.0.1), on one
# line, for servers that cannot take port 0 and say which they got (HAProxy).
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind((sys.argv[2], 0))
print(*[s.getsockname()[1] for s in ss])' "$1" "${2:-127.0.0.1}"
}

# server_cert: a self-signed ECDSA P-256 certificate for localhost and
# 127.0.0.1, valid 2 days, in srv.pem, its key in srv.key (0600), in the
# current directory.
server_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.pem \
    -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" > /dev/null 2>&1 ||
    fail "openssl could not make a certificate"
  chmod 600 srv.key
}

# wait_line FILE REGEX [SECONDS]: waits until a line of FILE matches.
wait_line() {
  local i
  for ((i = 0; i < ${3:-10} * 20; i++)); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  fail "timed out waiting for /$2/ in $1"
}

# start_server IMAGE VERSION [ARGS...]: sets SERVER_PID and SERVER_PORT.
start_server() {
  local img=$1 ver=$2; shift 2
  : > "$WORK/server.log" # emptied now: a previous server's line must not count
  "$TCPOTA" serve --listen 127.0.0.1:0 --version "$ver" "$@" "$img" 2> "$WORK/server.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_line "$WORK/server.log" 'listening on'
  SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/server.log" | head -1)
}

# stop_server: SIGTERM, and the server must exit 0 (under ASan: no leak).
stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  [ $rc -eq 0 ] || fail "server exited $rc on SIGTERM$(sanitizer_said "$WORK/server.log" | sed '1s/^/:\n/')"
  grep -q 'summary:' "$WORK/server.log" || fail "server printed no summary"
}

# start_proxy NAME UPSTREAM_PORT [ARGS...]: sets PROXY_PORT (and NAME_PID).
start_proxy() {
  local name=$1 up=$2; shift 2
  : > "$WORK/$name.log"
  "$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$up" "$@" 2> "$WORK/$name.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  wait_line "$WORK/$name.log" 'listening on'
  PROXY_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+).*/\1/p' "$WORK/$name.log" | head -1)
}

# check_device DIR IMAGE: the device runs IMAGE, byte-exact in its slot.
check_device() {
  check_devices "$2" "$1"
}

# check_devices IMAGE DIR...: check_device for each DIR, IMAGE hashed once,
# with bash's own matching rather than a grep or sed per device: a fleet test
# checks hundreds, and every process started costs milliseconds here.
check_devices() {
  local img=$1 sha size dir status slot
  shift
  sha=$(sha256sum "$img") || fail "cannot hash $img"
  sha=${sha%% *}
  size=$(stat -c %s "$img")
  for dir in "$@"; do
    status=$("$TCPOTA" device status --flash "$dir") || fail "device status failed for $dir"
    [[ $status == *"\"sha256\":\"$sha\""* ]] || fail "$dir does not run the image: $status"
    [[ $status == *'"pending":false'* ]] || fail "$dir still pending: $status"
    [[ $status =~ \"slot\":([0-9]) ]] || fail "$dir: no slot in its status: $status"
    slot=${BASH_REMATCH[1]}
    cmp -n "$size" "$dir/ota_$slot.bin" "$img" >/dev/null || fail "$dir slot $slot differs from the image"
  done
}

# nvs_edit DIR [-KEY | KEY=HEX]...: rewrites a host device's NVS as the
# posix port does (its table, changed, into the other sector of nvs.bin
# with the next sequence): -KEY drops KEY, KEY=HEX sets it to those bytes.
# For states no command makes: a device made before a record existed, a
# record of another format. nvs_has DIR KEY: DIR's NVS holds KEY.
nvs_edit() {
  python3 "$E2E/nvs.py" edit "$1/nvs.bin" "${@:2}"
}
nvs_has() {
  python3 "$E2E/nvs.py" has "$1/nvs.bin" "$2"
}
