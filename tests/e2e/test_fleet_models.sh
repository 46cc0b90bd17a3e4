#!/usr/bin/env bash
# Fleet mode: two models, two images, two rollouts. Every device ends on its
# model's image; a device of a model without a rollout is told NO_UPDATE; an
# image signed for another model is never offered (the API refuses such a
# rollout, and a device's own check would refuse it too). A device that
# checks in under another model leaves the old model's rollout unless it
# finished there, and back under it is shown the failure that holds it back.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_keys k
signed_image "$WORK/a.bin" 200000 2.0.0 esp32 k
signed_image "$WORK/b.bin" 150000 3.1.0 esp32s3 k
start_fleet --pubkey "$WORK/k.pub"
A=$(image_add "$WORK/a.bin")
B=$(image_add "$WORK/b.bin")
[ "$A" = "$(sha256sum "$WORK/a.bin" | cut -d' ' -f1)" ] || fail "image id is not the SHA-256: $A"
"$TCPOTA" image list > "$WORK/images.txt" || fail "image list failed"
grep -q "esp32s3" "$WORK/images.txt" && grep -q "2.0.0" "$WORK/images.txt" ||
  fail "image list does not show both: $(cat "$WORK/images.txt")"

# A rollout of model esp32 with the esp32s3 image is refused.
rc=0
"$TCPOTA" rollout create --image "$B" --model esp32 > "$WORK/wrong.out" 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "rollout of another model's image (400) exited $rc, not 2: $(cat "$WORK/wrong.out")"
grep -qi "model" "$WORK/wrong.out" || fail "refusal does not name the model: $(cat "$WORK/wrong.out")"
ok "an image signed for another model cannot be rolled out to it"

"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout esp32 failed"
"$TCPOTA" rollout create --image "${B:0:12}" --model esp32s3 > /dev/null || fail "rollout esp32s3 failed"

pids=()
for i in 1 2 3 4; do
  run_device "a-$i" esp32 "$WORK/a$i" --trust "$WORK/k.pub" & pids+=($!)
  run_device "b-$i" esp32s3 "$WORK/b$i" --trust "$WORK/k.pub" & pids+=($!)
done
run_device "c-1" esp32c6 "$WORK/c1" --trust "$WORK/k.pub" & pids+=($!)
PIDS+=("${pids[@]}")
for p in "${pids[@]}"; do wait "$p" || fail "a device failed (see logs)"; done
for i in 1 2 3 4; do
  check_device "$WORK/a$i" "$WORK/a.bin"
  check_device "$WORK/b$i" "$WORK/b.bin"
  [ "$(device_state "a-$i")" = updated ] || fail "a-$i is $(device_state "a-$i"), not updated"
  [ "$(device_state "b-$i")" = updated ] || fail "b-$i is $(device_state "b-$i"), not updated"
done
ok "8 devices of two models each run their model's image, confirmed in the registry"

"$TCPOTA" device status --flash "$WORK/c1" | grep -q '"version":"1.0.0"' || fail "c-1 was updated"
[ "$(device_state c-1)" = up-to-date ] || fail "c-1 is $(device_state c-1), not up-to-date"
grep -qE '\[c-1 [^]]*\] decision: no update: no rollout for model esp32c6' "$WORK/server.log" ||
  fail "no NO_UPDATE logged for the model without a rollout"
ok "a device of a model without a rollout is told NO_UPDATE"

"$TCPOTA" device list --model esp32 --json | jq_py 'j["total"]' | grep -qx 4 ||
  fail "device list --model esp32 does not count 4"
"$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]' | grep -qx 4 ||
  fail "rollout 1 does not count 4 updated: $("$TCPOTA" rollout show 1 --json)"
# The model's image cannot be removed while its rollout stands.
rc=0
"$TCPOTA" image rm "$A" > "$WORK/rm.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "rollout 1" "$WORK/rm.out" || fail "image rm of a used image: rc $rc $(cat "$WORK/rm.out")"
ok "registry and rollout counts agree; a used image is kept"

# A device that checks in under another model: the registry says what it is
# told now, and it leaves the old model's rollout unless it finished there
# (as for a group change, docs/fleet.md). Rollout 3, of model esp32c3.
signed_image "$WORK/c.bin" 30000 2.0.0 esp32c3 k
image_add "$WORK/c.bin" > /dev/null
"$TCPOTA" rollout create --image "$(sha256sum "$WORK/c.bin" | cut -d' ' -f1)" --model esp32c3   > /dev/null || fail "rollout esp32c3 failed"
"$TCPOTA" rollout show 3 | grep -q esp32c3 || fail "rollout 3 is not esp32c3's: $("$TCPOTA" rollout show 3)"
ota() { # ota MODEL DEVICE [CURL ARGS...]: an HTTP device's request on 1.0.0; its status
  local m=$1 d=$2; shift 2
  curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "$@" "$TCPOTA_API/ota/$m?device=$d"
}
dev_field() { "$TCPOTA" device show --json "$1" | jq_py "j[\"$2\"]"; }
wave3() { "$TCPOTA" rollout show --json 3 | jq_py "j[\"waves\"][0][\"$1\"]"; }
held="rollout 3: the image failed on this device before"
# h-6 fails the image (it asks again on its old version), is another model
# for a while, then esp32c3 again: held back, and shown failed, not with the
# other model's reason.
[ "$(ota esp32c3 h-6)" = 200 ] && [ "$(ota esp32c3 h-6)" = 204 ] || fail "h-6 did not fail the image"
[ "$(ota zzz h-6)" = 204 ] && [ "$(dev_field h-6 reason)" = "no rollout for model zzz" ] ||
  fail "h-6 under zzz: $(dev_field h-6 state), $(dev_field h-6 reason)"
# Asking again changes nothing: no step, no history line (its image stays).
lines=$("$TCPOTA" device show --json h-6 | jq_py 'len(j["history"])')
[ "$(ota zzz h-6)" = 204 ] || fail "h-6 under zzz, again: not 204"
[ "$("$TCPOTA" device show --json h-6 | jq_py 'len(j["history"])')" = "$lines" ] ||
  fail "h-6 asking again as zzz added a history line: $("$TCPOTA" device show h-6)"
[ "$(ota esp32c3 h-6)" = 204 ] || fail "h-6 back on esp32c3 was offered the image it failed"
[ "$(dev_field h-6 state)" = failed ] && dev_field h-6 reason | grep -q "^$held" ||
  fail "h-6 back on esp32c3: $(dev_field h-6 state), '$(dev_field h-6 reason)', not failed: $held"
# A tcpota device alike: rolled back, another model, back.
run_device v-1 esp32c3 "$WORK/v1" --trust "$WORK/k.pub" --health fail || true
[ "$(device_state v-1)" = rolled-back ] || fail "v-1 is $(device_state v-1), not rolled-back"
run_device v-1 zzz "$WORK/v1z" --trust "$WORK/k.pub" || fail "v-1 as zzz failed" # its flash: of one model
[ "$(device_state v-1)" = up-to-date ] || fail "v-1 as zzz is $(device_state v-1)"
# Its flash is new: an empty factory slot runs no image, and no running id
# is shown (it was the SHA-256 of nothing, e3b0c442...).
[ -z "$(dev_field v-1 running)" ] || fail "v-1 on its factory slot runs '$(dev_field v-1 running)'"
run_device v-1 esp32c3 "$WORK/v1" --trust "$WORK/k.pub" || true # held back: not updated
[ "$(device_state v-1)" = failed ] && dev_field v-1 reason | grep -q "^$held" ||
  fail "v-1 back on esp32c3: $(device_state v-1), '$(dev_field v-1 reason)', not failed: $held"
# h-5 downloads 10 bytes, then checks in as zzz: rollout 3 no longer counts
# it; h-6 and v-1 finished there (failed) and stay counted.
[ "$(ota esp32c3 h-5 -r 0-9)" = 206 ] || fail "h-5's range was not served"
for _ in $(seq 40); do [ "$(device_state h-5)" = downloading ] && break; sleep 0.05; done
[ "$(wave3 targeted)/$(wave3 downloading)" = 3/1 ] || fail "rollout 3 before: $("$TCPOTA" rollout show 3)"
[ "$(ota zzz h-5)" = 204 ] || fail "h-5 under zzz was not told 204"
[ "$(wave3 targeted)/$(wave3 downloading)/$(wave3 failed)" = 2/0/2 ] ||
  fail "h-5 left esp32c3, rollout 3 still counts it: $("$TCPOTA" rollout show 3)"
"$TCPOTA" summary > "$WORK/summary.txt" || fail "summary failed"
grep -q "zzz" <(sed -n '/^failed devices of rollouts/,$p' "$WORK/summary.txt") &&
  fail "the summary's failed devices show another model's reason: $(cat "$WORK/summary.txt")"
ok "a device that changes model: told and shown its failure again, leaves the old model's rollout"

# A rollout of an image its devices got from an earlier one (rollout 1)
# counts them as updated when they check in: a trial's group rollout counted
# none of them, and its second wave never opened.
for i in 1 2 3 4; do "$TCPOTA" device set "a-$i" --group g > /dev/null || fail "device set a-$i --group g failed"; done
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --group g --waves 50,100 --min-finished 1 \
  --soak 0 > /dev/null || fail "the group rollout was not created"
for i in 1 2 3 4; do run_device "a-$i" esp32 "$WORK/a$i" --trust "$WORK/k.pub" || fail "a-$i failed"; done
# (the last step may still wait for its batch's write: 50 ms)
for _ in $(seq 40); do
  [ "$("$TCPOTA" rollout show 4 --json | jq_py 'j["totals"]["updated"]')" = 4 ] && break
  sleep 0.1
done
[ "$("$TCPOTA" rollout show 4 --json | jq_py 'j["totals"]["updated"]')" = 4 ] ||
  fail "rollout 4 does not count its 4 devices that run its image: $("$TCPOTA" rollout show 4)"
[ "$(device_state a-1)" = updated ] || fail "a-1 is $(device_state a-1), not updated (as the report made it)"
# Counted once: a second check-in writes no step.
lines=$("$TCPOTA" device show --json a-1 | jq_py 'len(j["history"])')
run_device a-1 esp32 "$WORK/a1" --trust "$WORK/k.pub" || fail "a-1 failed"
[ "$("$TCPOTA" device show --json a-1 | jq_py 'len(j["history"])')" = "$lines" ] ||
  fail "a-1's second check-in under rollout 4 added a history line: $("$TCPOTA" device show a-1)"
stop_fleet
ok "a rollout counts the devices that run its image already as updated"
