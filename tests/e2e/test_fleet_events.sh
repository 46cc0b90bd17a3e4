#!/usr/bin/env bash
# The API's event stream (GET /v1/events, what the dashboard reads) follows
# a device through its update: its registration, each step it takes, and
# the report that it booted the image and confirmed it. The registration
# and the report are applied by the store at a check-in, not recorded as
# steps: fleet.c tells the stream of them itself.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
curl -sN -H "Authorization: Bearer $TCPOTA_TOKEN" "$TCPOTA_API/v1/events" > "$WORK/events.txt" &
CURL=$!
PIDS+=($CURL)
# HTTP/1.0 (nginx's default towards a proxied server): no chunks, the close
# ends the stream (the stop once freed such a stream twice and aborted).
curl -0 -sN -H "Authorization: Bearer $TCPOTA_TOKEN" "$TCPOTA_API/v1/events" > "$WORK/events10.txt" &
CURL10=$!
PIDS+=($CURL10)
wait_line "$WORK/events10.txt" '^: tcpota events'
wait_line "$WORK/events.txt" '^: tcpota events'
run_device ev-1 esp32 "$WORK/ev-1" || fail "ev-1 failed: $(tail -3 "$WORK/ev-1.log")"
grep -qE '\[ev-1 [^]]*\] report: .* confirmed' "$WORK/server.log" || fail "ev-1 did not report"
wait_line "$WORK/events.txt" '"id":"ev-1","state":"updated"'
# The states the stream told, in order (repeats of a state folded).
states=$(sed -nE 's/^data: \{"id":"ev-1","state":"([a-z-]+)".*/\1/p' "$WORK/events.txt" | uniq | tr '\n' ' ')
[ "$states" = "seen offered downloading verified updated " ] ||
  fail "ev-1's states on the event stream: $states"
# An HTTP (esp_https_ota) device's first check-in, a HEAD, is an event too
# (a hostile trial: registered, and the stream said nothing).
curl -s -I -o /dev/null -H "X-Tcpota-Version: 1.0.0" "$TCPOTA_API/ota/esp32?device=ev-http-1" ||
  fail "the HEAD check-in failed"
wait_line "$WORK/events.txt" '"id":"ev-http-1","state":"seen"'
stop_fleet
# The server's stop ends the stream with its last chunk: curl exits 0, not 18
# (a stream cut in the middle); the HTTP/1.0 stream ends with the close.
rc=0; wait "$CURL" || rc=$?
[ $rc -eq 0 ] || fail "the event stream's client exited $rc at the server's stop (18: the stream was cut, not ended)"
rc=0; wait "$CURL10" || rc=$?
[ $rc -eq 0 ] || fail "the HTTP/1.0 event stream's client exited $rc at the server's stop"
grep -q 'summary:' "$WORK/server.log" || fail "no summary at the stop with an HTTP/1.0 stream open: $(tail -3 "$WORK/server.log")"
ok "the event stream tells each state of a device's update, from its registration to its report, and ends at the stop"
