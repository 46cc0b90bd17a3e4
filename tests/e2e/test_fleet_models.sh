#!/usr/bin/env bash
# Fleet mode: two models, two images, two rollouts. Every device ends on its
# model's image; a device of a model without a rollout is told NO_UPDATE; an
# image signed for another model is never offered (the API refuses such a
# rollout, and a device's own check would refuse it too).
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
stop_fleet
ok "registry and rollout counts agree; a used image is kept"
