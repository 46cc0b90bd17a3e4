#!/usr/bin/env bash
# GET /metrics after a known scenario: promtool accepts the exposition, and
# the counters equal what the scenario did (offers, completions, updates,
# rollbacks, declines by reason, bytes, check-ins by protocol, store
# latency). /metrics needs no token; other methods are refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
[ -x "$PROMTOOL" ] || fail "promtool not found: apt-get install prometheus (scripts/deps.sh does)"
SIZE=100000

# metric NAME LABELS: the value of one sample of the last scrape (LABELS
# as the server orders them; "missing" when there is no such sample).
metric() {
  local line
  line=$(grep -F "$1{$2} " "$WORK/metrics.txt" | head -1)
  echo "${line##* }" | grep -E '^[0-9]+$' || echo missing
}
scrape() {
  curl -sS -o "$WORK/metrics.txt" -w '%{http_code}' "http://127.0.0.1:$API_PORT/metrics" > "$WORK/code" ||
    fail "GET /metrics failed"
  [ "$(cat "$WORK/code")" = 200 ] || fail "GET /metrics answered $(cat "$WORK/code")"
  "$PROMTOOL" check metrics < "$WORK/metrics.txt" > "$WORK/promtool.log" 2>&1 ||
    fail "promtool check metrics: $(cat "$WORK/promtool.log")"
}
expect() { # expect NAME LABELS VALUE
  local got; got=$(metric "$1" "$2")
  [ "$got" = "$3" ] || fail "$1{$2} is $got, expected $3"
}

make_image "$WORK/img" $SIZE
make_keys k
start_fleet
scrape
expect tcpota_checkins_total 'protocol="v1"' 0
ok "/metrics without a token before anything happened: promtool accepts it, all zero"

"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
IMG=$(sha256sum "$WORK/img" | cut -c1-12)
pids=()
for i in 1 2 3; do run_device "ok-$i" esp32 "$WORK/ok$i" & pids+=($!); done
PIDS+=("${pids[@]}")
for p in "${pids[@]}"; do wait "$p" || fail "a device failed (see logs)"; done
rc=0; run_device bad-1 esp32 "$WORK/bad1" --health fail || rc=$?
[ $rc -ne 0 ] || fail "the device whose health check fails exited 0"
rc=0; run_device picky-1 esp32 "$WORK/picky1" --trust "$WORK/k.pub" || rc=$?
run_device other-1 esp32c6 "$WORK/other1" || fail "device of a model without rollout failed"
for i in 1 2 3; do [ "$(device_state "ok-$i")" = updated ] || fail "ok-$i is not updated"; done
[ "$(device_state bad-1)" = rolled-back ] || fail "bad-1 is $(device_state bad-1)"
[ "$(device_state picky-1)" = declined ] || fail "picky-1 is $(device_state picky-1)"

scrape
R="rollout=\"1\",image=\"$IMG\""
expect tcpota_offers_total "$R" 5
expect tcpota_completions_total "$R" 4
expect tcpota_updates_total "$R" 3
expect tcpota_rollbacks_total "$R" 1
expect tcpota_boot_failures_total "$R" 0
expect tcpota_declines_total "$R,reason=\"image is not signed\"" 1
expect tcpota_active_transfers "$R" 0
# Four whole downloads; the decliner may have been sent part of the image
# before its DECLINE arrived (the server streams without waiting).
bytes=$(metric tcpota_bytes_sent_total "$R")
[ "$bytes" -ge $((4 * SIZE)) ] && [ "$bytes" -le $((5 * SIZE)) ] ||
  fail "bytes sent $bytes, expected 4 x $SIZE plus what the decliner was sent"
decisions=$(grep -c 'decision: ' "$WORK/server.log")
expect tcpota_checkins_total 'protocol="v1"' "$decisions"
expect tcpota_store_request_seconds_count 'op="checkin"' "$decisions"
conns=$(metric tcpota_connections_total 'protocol="v1"')
[ "$conns" -ge "$decisions" ] || fail "$conns v1 connections for $decisions check-ins"
ok "after 3 updates, 1 rollback, 1 decline: the counters say so ($decisions check-ins, $bytes bytes)"

# An HTTP device on the API's listener (docs/http-ota.md): a whole download,
# then its report by version.
OTA="http://127.0.0.1:$API_PORT/ota/esp32?device=http-1"
curl -sS -o "$WORK/http.bin" -H 'X-Tcpota-Version: 1.0.0' "$OTA" || fail "HTTP download failed"
cmp "$WORK/http.bin" "$WORK/img" || fail "HTTP download differs from the image"
for i in $(seq 50); do [ "$(device_state http-1)" = verified ] && break; sleep 0.1; done
[ "$(device_state http-1)" = verified ] || fail "http-1 is $(device_state http-1), not verified"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 2.0.0' "$OTA")
[ "$code" = 204 ] || fail "the report by version was answered $code"
[ "$(device_state http-1)" = updated ] || fail "http-1 is $(device_state http-1), not updated"
scrape
expect tcpota_connections_total 'protocol="http"' 2
expect tcpota_checkins_total 'protocol="http"' 2
expect tcpota_offers_total "$R" 6
expect tcpota_completions_total "$R" 5
expect tcpota_updates_total "$R" 4
bytes2=$(metric tcpota_bytes_sent_total "$R")
[ "$bytes2" -eq $((bytes + SIZE)) ] || fail "bytes sent $bytes2 after an HTTP download of $SIZE (was $bytes)"
ok "an HTTP device on the API's listener: 2 requests, an offer, a completion, an update, $SIZE bytes"

# Every store request answered is counted answered: the API's were counted
# twice and answered once, so the gauge only grew and, 10 s after the first
# API call, an idle node's GET /health said its database hung (a trial).
for _ in $(seq 40); do
  scrape
  waiting=$(sed -nE 's/^tcpota_store_requests_waiting ([0-9]+)$/\1/p' "$WORK/metrics.txt")
  [ "$waiting" = 0 ] && break
  sleep 0.05
done
[ "$waiting" = 0 ] || fail "tcpota_store_requests_waiting is ${waiting:-missing} with nothing running, not 0"
ok "after API calls, check-ins and downloads, no store request counts as waiting"

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$API_PORT/metrics")
[ "$code" = 405 ] || fail "POST /metrics answered $code"
code=$(curl -s -o "$WORK/mb" -w '%{http_code}' -X GET -d x "http://127.0.0.1:$API_PORT/metrics")
[ "$code" = 400 ] && grep -q 'takes no body' "$WORK/mb" || fail "GET /metrics with a body answered $code: $(cat "$WORK/mb")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/v1/images")
[ "$code" = 401 ] || fail "the API without a token answered $code"
stop_fleet
ok "/metrics refuses POST and a body; the rest of the API still needs the token"
