#!/usr/bin/env bash
# The control API under load: 200 devices update at once while the API is
# used in a loop (lists, shows, bad requests); every bad request gets the
# status and the field docs/api.md gives (fleet_api_check.py), every device
# ends byte-exact.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
N=${TCPOTA_FLEET:-$(scaled 200 40)}

make_keys k
signed_image "$WORK/img" 65536 2.0.0 esp32 k
signed_image "$WORK/other" 4096 2.0.0 esp32s3 k
start_fleet --pubkey "$WORK/k.pub"
ID=$(image_add "$WORK/img")
image_add "$WORK/other" > /dev/null
"$TCPOTA" rollout create --image "$ID" --model esp32 > /dev/null || fail "rollout create failed"
[ "$(stat -c %a "$DATA/api.token")" = 600 ] || fail "api.token is not mode 600: $(stat -c %a "$DATA/api.token")"
# curl pointed at the device port instead of the API: the log says where the API is.
curl -s -o /dev/null "http://127.0.0.1:$SERVER_PORT/v1/images" || true
wait_line "$WORK/server.log" "unknown protocol \(first byte 0x47: an HTTP request, but this port speaks tcpota's protocol; the API and HTTP downloads \(/ota/\) are on 127\.0\.0\.1:$API_PORT\); closing\$" 3

pids=()
for i in $(seq 1 "$N"); do
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d$i" --id "k-$i" --model esp32 \
    --trust "$WORK/k.pub" --factory-version 1.0.0 --slot-size 262144 --progress none \
    --backoff-min-ms 100 --backoff-max-ms 1000 2> "$WORK/k-$i.log" &
  pids+=($!)
done
PIDS+=("${pids[@]}")
loops=0
while kill -0 "${pids[0]}" 2>/dev/null || [ $loops -lt 3 ]; do
  "$TCPOTA" device list --json > /dev/null || fail "device list failed under load"
  "$TCPOTA" rollout show 1 --json > /dev/null || fail "rollout show failed under load"
  "$TCPOTA" image list > /dev/null || fail "image list failed under load"
  python3 "$(dirname "$0")/fleet_api_check.py" "$TCPOTA_API" "$TCPOTA_TOKEN" "$ID" > "$WORK/api.out" ||
    fail "API check: $(tail -1 "$WORK/api.out")"
  loops=$((loops + 1))
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed while the API was used"
check_devices "$WORK/img" $(seq -f "$WORK/d%g" 1 "$N")
grep -qE '^all [0-9]+ checks passed' "$WORK/api.out" || fail "the API checks did not all run"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')" = "$N" ] ||
  fail "rollout does not count $N updated"
stop_fleet
ok "$N devices updated while the API ran $loops loops of lists and $(grep -c '^ok:' "$WORK/api.out") checks"
