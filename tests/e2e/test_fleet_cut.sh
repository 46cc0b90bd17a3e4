#!/usr/bin/env bash
# A transfer cut before its COMPLETE (the device stopped with SIGINT): the
# registry shows the bytes the device had reported durable when the
# connection ended, which the server's log names, not the progress it last
# wrote (at most once a second: up to a second of ACKs behind, until the
# device came back). The devices run through a proxy capped at 64 KiB/s, so
# that ACKs (one per 16 KiB) come four times a second.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

start_fleet
make_image "$WORK/img" 1000000
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
start_proxy slow "$SERVER_PORT" --rate 65536
for i in 1 2 3; do
  "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d$i" --id "c-$i" --model esp32 \
    --factory-version 1.0.0 --slot-size 1048576 --progress none 2> "$WORK/c-$i.log" &
  dev=$!
  sleep "1.$((3 * i))"
  kill -INT "$dev"
  rc=0
  wait "$dev" || rc=$?
  [ $rc -eq 130 ] || fail "c-$i: exit $rc after SIGINT, expected 130: $(tail -2 "$WORK/c-$i.log")"
  # An end of stream, or a reset (the device closed with bytes unread):
  # either way the log says how far it was durable.
  wait_line "$WORK/server.log" "\\[c-$i .*mid-transfer at"
  durable=$(sed -nE "s/.*\\[c-$i .*mid-transfer at ([0-9]+) of 1000000 bytes durable.*/\\1/p" "$WORK/server.log")
  [ -n "$durable" ] && [ "$durable" -gt 0 ] || fail "c-$i: no durable offset in the log: $(grep "\\[c-$i " "$WORK/server.log" | tail -2)"
  bytes=""
  for _ in $(seq 40); do # the store commits its batch within a fraction of a second
    bytes=$("$TCPOTA" device show --json "c-$i" | jq_py 'j["bytes"]')
    [ "$bytes" = "$durable" ] && break
    sleep 0.05
  done
  [ "$bytes" = "$durable" ] || fail "c-$i: the registry shows $bytes bytes, the server had $durable durable at the cut"
done
ok "3 transfers cut by SIGINT: the registry holds the durable offset of each at its cut"

# Paused now: a device that began the image still resumes and finishes it
# (a pause stops new starts only).
"$TCPOTA" rollout pause 1 > /dev/null || fail "rollout pause failed"
run_device c-1 esp32 "$WORK/d1" || fail "c-1 failed after the pause: $(tail -2 "$WORK/c-1.log")"
"$TCPOTA" device status --flash "$WORK/d1" | grep -q '"version":"2.0.0"' ||
  fail "c-1 did not finish its started transfer: $(grep '\[c-1 ' "$WORK/server.log" | tail -3)"
ok "paused, a started transfer still finishes"

# c-2 comes back to an image that no longer reads back as its id (a byte
# of its slot changed while it was away): it reports the failure in its
# COMPLETE, the registry says failed and the rollout counts it. The image is
# not held back from it: the device takes an image that failed its
# integrity check once more (bytes altered on the way are not the image's
# fault), and so does the server (tcpota_srv_complete_final's rule; before,
# the server refused it for good while the device said "once more").
slot=$WORK/d2/ota_1.bin # the slot c-2 was writing (it runs ota_0.bin)
flip_byte "$slot" 0
run_device c-2 esp32 "$WORK/d2" --max-attempts 1 || true
# Said as it is, not decorated with the port's last harmless miss (a
# record looked up and not there).
grep -qx "device c-2: session failed: image SHA-256 mismatch; .*" "$WORK/c-2.log" ||
  fail "c-2's words for it: $(grep 'session failed' "$WORK/c-2.log")"
grep -q "\\[c-2 .*failed: device reports image SHA-256 mismatch; image [0-9a-f]*\\.\\.\\. is offered to it once more" "$WORK/server.log" ||
  fail "c-2: no failed COMPLETE in the log: $(grep '\[c-2 ' "$WORK/server.log" | tail -3)"
# Its history has the failure (its state is what it was told next: the
# rollout is paused).
"$TCPOTA" device show --json c-2 | jq_py '[h["detail"] for h in j["history"] if h["state"] == "failed"]' |
  grep -q "the device reports image SHA-256 mismatch" ||
  fail "c-2's history has no failure: $("$TCPOTA" device show c-2 | tail -5)"
failed=$("$TCPOTA" rollout show --json 1 | jq_py 'j["waves"][0]["failed"]')
[ "$failed" = 1 ] || fail "rollout 1 counts $failed failed devices, expected c-2's 1"
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
run_device c-2 esp32 "$WORK/d2" --max-attempts 3 ||
  fail "c-2 was not given the image once more after one integrity failure: $(tail -2 "$WORK/c-2.log")"
"$TCPOTA" device status --flash "$WORK/d2" | grep -q '"version":"2.0.0"' ||
  fail "c-2 does not run 2.0.0 after its second try: $(tail -2 "$WORK/c-2.log")"
ok "an image that fails the device's read-back: failed in the registry and the rollout, then taken once more and installed"
stop_fleet
