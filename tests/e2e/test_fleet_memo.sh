#!/usr/bin/env bash
# Check-ins answered from memory (server/fleet.c): a device whose HELLO is
# the one of its last check-in, which changed nothing, is told NO_UPDATE
# without a store round trip, and its time still reaches the registry;
# any write that may change the answer (a rollout, a group) ends that at
# once, so the next check-in gets the offer.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

remembered() { grep -c "\[$1 .*nothing changed since its last check-in" "$WORK/server.log"; }
asked() { grep -c "\[$1 .*asking the fleet store" "$WORK/server.log"; }
version_of() {
  "$TCPOTA" device status --flash "$1" | sed -nE 's/.*"version":"([^"]*)".*/\1/p'
}

make_image "$WORK/img2" 70000
make_image "$WORK/img3" 70000
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img2" > /dev/null || fail "image add 2.0.0 failed"
"$TCPOTA" image add --version 3.0.0 --model esp32c3 "$WORK/img3" > /dev/null || fail "image add 3.0.0 failed"

# 1: registered, up to date recorded; 2: nothing changed, remembered; 3: from memory.
for n in 1 2; do run_device m-1 esp32 "$WORK/d1" || fail "m-1 check-in $n failed"; done
[ "$(asked m-1)" = 2 ] && [ "$(remembered m-1)" = 0 ] ||
  fail "m-1: $(asked m-1) check-ins asked the store, $(remembered m-1) from memory; expected 2 and 0"
sleep 1.1
before=$(date +%s)
run_device m-1 esp32 "$WORK/d1" || fail "m-1 check-in 3 failed"
[ "$(asked m-1)" = 2 ] && [ "$(remembered m-1)" = 1 ] ||
  fail "m-1 check-in 3: $(asked m-1) asked the store, $(remembered m-1) from memory; expected 2 and 1"
grep -q 'm-1: up to date, running 1.0.0: the server has nothing for its model (no image, or no rollout)' "$WORK/m-1.log" ||
  fail "m-1 was not told it is up to date, and why (from memory): $(cat "$WORK/m-1.log")"
seen=$("$TCPOTA" device show --json m-1 | jq_py 'j["last_seen"]')
[ "$seen" -ge "$before" ] || fail "m-1's last_seen $seen is older than its check-in at $before"
[ "$(device_state m-1)" = up-to-date ] || fail "m-1 is $(device_state m-1)"
ok "an unchanged check-in is answered from memory, and its time reaches the registry"

# A rollout created meanwhile: the very next check-in is offered the image.
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
run_device m-1 esp32 "$WORK/d1" || fail "m-1 check-in after the rollout failed"
[ "$(version_of "$WORK/d1")" = 2.0.0 ] || fail "m-1 runs $(version_of "$WORK/d1") after a rollout of 2.0.0 was created"
ok "a rollout created ends what was remembered: the next check-in updates"

# A group set meanwhile: the device enters its group's rollout at once.
for n in 1 2 3; do run_device m-2 esp32c3 "$WORK/d2" || fail "m-2 check-in $n failed"; done
"$TCPOTA" rollout create --image 3.0.0 --model esp32c3 --group beta > /dev/null || fail "rollout create (beta) failed"
for n in 1 2; do run_device m-2 esp32c3 "$WORK/d2" || fail "m-2 check-in failed"; done
[ "$(version_of "$WORK/d2")" = 1.0.0 ] || fail "m-2 (no group) got $(version_of "$WORK/d2") from group beta's rollout"
[ "$(remembered m-2)" -ge 2 ] || fail "m-2 was not answered from memory: $(remembered m-2)"
"$TCPOTA" device set m-2 --group beta > /dev/null || fail "device set --group failed"
run_device m-2 esp32c3 "$WORK/d2" || fail "m-2 check-in after its group was set failed"
[ "$(version_of "$WORK/d2")" = 3.0.0 ] || fail "m-2 runs $(version_of "$WORK/d2") after joining group beta"
ok "a group set ends what was remembered: the next check-in updates"

# A step of the device's own ends it too: m-3 runs 3.0.0, newer than the
# rollout's 2.0.0 (up to date, remembered), then downloads 2.0.0 over HTTP
# under the same id claiming 1.0.0 (verified). Its next v1 check-in, the
# same HELLO as before, goes to the store and is recorded up to date again.
for n in 1 2 3; do run_device m-3 esp32 "$WORK/d3" --factory-version 3.0.0 || fail "m-3 check-in $n failed"; done
[ "$(asked m-3)" = 2 ] && [ "$(remembered m-3)" = 1 ] ||
  fail "m-3: $(asked m-3) check-ins asked the store, $(remembered m-3) from memory; expected 2 and 1"
code=$(curl -sS -o "$WORK/m-3.bin" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
  "$TCPOTA_API/ota/esp32/m-3.bin") || fail "the download of m-3 failed"
[ "$code" = 200 ] && cmp -s "$WORK/m-3.bin" "$WORK/img2" || fail "m-3's download: HTTP $code"
[ "$(device_state m-3)" = verified ] || fail "m-3 is $(device_state m-3) after its download"
run_device m-3 esp32 "$WORK/d3" || fail "m-3 check-in after its download failed"
[ "$(asked m-3)" = 3 ] || fail "m-3's check-in after its download was answered from memory"
[ "$(device_state m-3)" = up-to-date ] || fail "m-3 is $(device_state m-3), not up to date"
ok "a step of the device's own ends what was remembered"
stop_fleet
