#!/usr/bin/env bash
# Decisions of fleet mode that apply at once. A move of the rollout applies
# to the check-in that makes it: the device whose check-in opens its wave is
# offered the image at that check-in, not at its next one. Waves 10,100, one finished device enough, and a soak
# that the first wave's device finishes within, so that the check-in of a
# device of the second wave is what opens it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
FIRST_BOUND=1000 # wave 0 ends at 10 %, in basis points
SOAK=6           # seconds; far more than one device's update takes

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --waves 10,100 --soak $SOAK --min-finished 1 \
  > /dev/null || fail "rollout create failed"
created=$(date +%s)
# One device of each wave, by its place in rollout 1 (rollout.h's rule).
early=""; late=""
for i in $(seq 1 200); do
  p=$(fnv_place 1 "m-$i")
  if [ -z "$early" ] && [ "$p" -lt $FIRST_BOUND ]; then early="m-$i"; fi
  if [ -z "$late" ] && [ "$p" -ge $FIRST_BOUND ]; then late="m-$i"; fi
  [ -n "$early" ] && [ -n "$late" ] && break
done
[ -n "$early" ] && [ -n "$late" ] || fail "no device id found for each wave"
run_device "$early" esp32 "$WORK/$early" || fail "$early failed"
"$TCPOTA" device status --flash "$WORK/$early" | grep -q '"version":"2.0.0"' || fail "$early not updated"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["waves"][1]["open"]')" = false ] ||
  fail "wave 1 open before any check-in asked: $("$TCPOTA" rollout show 1 --json)"
# Wave 0 finished, all good, soaked: the next check-in opens wave 1, and
# that device, in wave 1, is offered the image then.
left=$((created + SOAK + 1 - $(date +%s)))
[ "$left" -le 0 ] || sleep "$left"
run_device "$late" esp32 "$WORK/$late" || fail "$late failed"
"$TCPOTA" device status --flash "$WORK/$late" | grep -q '"version":"2.0.0"' ||
  fail "$late was not offered the image at the check-in that opened its wave: $(grep "$late" "$WORK/server.log")"
grep -q 'rollout 1: wave 2 (100%) opens' "$WORK/server.log" || fail "the opening is not logged"
ok "the check-in that opens a wave is offered its image at once"

# A declined offer is not made again: a device that trusts only signed
# images declines this unsigned one, and its next check-in is refused.
make_keys k
run_device strict esp32 "$WORK/strict" --trust "$WORK/k.pub" --max-attempts 1 || true
grep -q 'image is not signed' "$WORK/strict.log" || fail "strict did not decline the unsigned image"
run_device strict esp32 "$WORK/strict" --trust "$WORK/k.pub" --max-attempts 1 || true
grep -qE '\[strict [^]]*\] decision: no update: rollout 1: the image failed on this device before \(reported, declined, or downloaded over HTTP and not booted\)' \
  "$WORK/server.log" || fail "the declined offer was made again: $(grep strict "$WORK/server.log")"
[ "$(device_state strict)" = declined ] || fail "strict is $(device_state strict), not declined"
# A device whose version has no order against the image's is not up to
# date, nor a success of the rollout (before: counted updated, and a wave
# of such devices opened the next): it waits, and is told why (WHY 9).
updated=$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')
run_device unordered esp32 "$WORK/unordered" --factory-version factory || true
grep -q "not updated, running factory: the server cannot order its image's version" "$WORK/unordered.log" ||
  fail "the unordered device was not told why: $(tail -2 "$WORK/unordered.log")"
[ "$(device_state unordered)" = waiting ] || fail "unordered is $(device_state unordered), not waiting"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')" = "$updated" ] ||
  fail "the unordered device counts as updated: $("$TCPOTA" rollout show 1)"
stop_fleet
# That refusal leaves its failure as the state: no step is written for it
# (one would name no state, and the store would refuse it as an error).
grep -E 'store: .*(skipped|failed)' "$WORK/server.log" &&
  fail "the store refused a step of this test (above)"
ok "a declined offer is not made again, and its refusal writes no step"
