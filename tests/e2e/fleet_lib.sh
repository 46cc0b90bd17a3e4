# fleet_lib.sh - helpers of the fleet-mode tests (sourced after lib.sh): a
# `tcpota serve --data` in the test's scratch folder, the CLI as the API's
# client, and JSON read by python3 (never by grep).

DATA="$WORK/data"

# scaled N SMALL: N devices, or SMALL under ASan+UBSan (TCPOTA_SANITIZED=1),
# where the fleet tests look for memory errors rather than scale.
scaled() {
  if [ "${TCPOTA_SANITIZED:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi
}

# start_fleet [ARGS...]: sets SERVER_PID, SERVER_PORT, API_PORT, and exports
# TCPOTA_API / TCPOTA_TOKEN for the CLI. LISTEN (default 127.0.0.1:0) is the
# device port, so that a restart can take the same one.
start_fleet() {
  : > "$WORK/server.log"
  "$TCPOTA" serve --listen "${LISTEN:-127.0.0.1:0}" --data "$DATA" --api "${API_LISTEN:-127.0.0.1:0}" \
    --no-progress "$@" 2>> "$WORK/server.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_line "$WORK/server.log" 'listening on'
  SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/server.log" | tail -1)
  API_PORT=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
  [ -n "$SERVER_PORT" ] && [ -n "$API_PORT" ] || fail "no ports in: $(grep 'listening on' "$WORK/server.log")"
  export TCPOTA_API="http://127.0.0.1:$API_PORT"
  TCPOTA_TOKEN=$(cat "$DATA/api.token") || fail "no $DATA/api.token"
  export TCPOTA_TOKEN
}

# stop_fleet: SIGTERM; the server must exit 0 (under ASan: no leak).
stop_fleet() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  [ $rc -eq 0 ] || fail "fleet server exited $rc on SIGTERM$(sanitizer_said "$WORK/server.log" | sed '1s/^/:\n/')"
}

# slow_http_get PORT DEVICE OUT: an HTTP download of DEVICE's image (model
# esp32, running 1.0.0) from PORT that reads 20 kB a second through a small
# TCP window (curl --limit-rate would not do: on loopback the server hands
# the whole image to the kernel at once), in the background (SLOW_HTTP_PID);
# writes to OUT the bytes it got (headers too) once the server closed.
slow_http_get() {
  python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ota/esp32?device=" + sys.argv[2].encode() + b" HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
got, t0 = 0, time.time()
try:
    while time.time() - t0 < 60:
        b = s.recv(2048)
        if not b: break
        got += len(b)
        time.sleep(0.1)
except ConnectionResetError:
    pass
print(got)' "$1" "$2" > "$3" &
  SLOW_HTTP_PID=$!
  PIDS+=("$SLOW_HTTP_PID")
}

# running DIR: the version a host device's flash runs.
running() {
  "$TCPOTA" device status --flash "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'
}

# jq_py EXPR: evaluates a python expression over the JSON on stdin (bound to
# `j`) and prints the result (lists one item per line).
jq_py() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)
r = eval(sys.argv[1])
if isinstance(r, list):
    for x in r: print(x)
elif isinstance(r, bool):
    print("true" if r else "false")
elif r is not None:
    print(r)
' "$1"
}

# keys NAME: NAME.key / NAME.pub in $WORK.
make_keys() {
  "$TCPOTA" keygen --out "$WORK/$1" > /dev/null 2>&1 || fail "keygen $1 failed"
}

# signed_image FILE BYTES VERSION MODEL KEY: a random image and its manifest.
signed_image() {
  make_image "$1" "$2"
  "$TCPOTA" sign --key "$WORK/$5.key" --version "$3" --model "$4" "$1" > /dev/null 2>&1 ||
    fail "sign $1 failed"
}

# image_add FILE: adds it through the API; prints its id.
image_add() {
  "$TCPOTA" image add --json "$1" | jq_py 'j["id"]' || fail "image add $1 failed"
}

# device_state ID: the registry's state of a device.
device_state() {
  "$TCPOTA" device show --json "$1" | jq_py 'j["state"]'
}

# fnv_place ROLLOUT DEVICE: the device's place (basis points) in the
# rollout, computed here from the specification in server/rollout.h, not
# by the server.
fnv_place() {
  python3 -c '
import sys
h = 0xcbf29ce484222325
for b in int(sys.argv[1]).to_bytes(8, "little") + sys.argv[2].encode():
    h ^= b
    h = (h * 0x100000001b3) % (1 << 64)
print(h % 10000)
' "$1" "$2"
}

# run_device ID MODEL DIR [ARGS...]: one device run against the fleet
# (checks once; exit code returned).
run_device() {
  local id=$1 model=$2 dir=$3; shift 3
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$dir" --id "$id" --model "$model" \
    --factory-version 1.0.0 --slot-size 1048576 --progress none --backoff-min-ms 50 \
    --backoff-max-ms 500 "$@" 2> "$WORK/$id.log"
}
