#!/usr/bin/env bash
# Halt: 30 devices, a third with a failing health check, --halt-at 20. The
# rollout halts by itself; devices that had not started are not offered the
# image; the rolled-back ones are never offered it again; `rollout show` and
# `device list --state rolled-back` say so; resume and cancel work.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --halt-at 20 --halt-min 3 > /dev/null ||
  fail "rollout create failed"

# One at a time, healthy and failing in turn: after the third rollback
# failures are 3 of 6 finished (50 % > 20 %), so the rollout halts there.
order=()
for i in $(seq 1 10); do order+=("good-$i" "bad-$i"); done
for i in $(seq 11 20); do order+=("good-$i"); done
for id in "${order[@]:0:6}"; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" || true
done
# Halted now: the other 24 check in all at once, and none may start it.
pids=()
for id in "${order[@]:6}"; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" & pids+=($!)
done
PIDS+=("${pids[@]}")
for p in "${pids[@]}"; do wait "$p" || true; done
show=$("$TCPOTA" rollout show 1 --json)
[ "$(echo "$show" | jq_py 'j["state"]')" = halted ] || fail "rollout did not halt: $show"
[ "$(echo "$show" | jq_py 'j["totals"]["failed"]')" = 3 ] || fail "failed count: $show"
[ "$(echo "$show" | jq_py 'j["totals"]["updated"]')" = 3 ] || fail "updated count: $show"
grep -q 'rollout 1 halted by itself' "$WORK/server.log" || fail "halt not logged"
ok "halted after 3 rollbacks of 6 finished devices"

# Nobody who had not started was offered it after the halt.
for id in "${order[@]:6}"; do
  "$TCPOTA" device status --flash "$WORK/$id" | grep -q '"version":"1.0.0"' ||
    fail "$id got the image after the halt"
  [ "$(device_state "$id")" = waiting ] || fail "$id is $(device_state "$id"), not waiting"
done
"$TCPOTA" device list --state rolled-back --json | jq_py '[d["id"] for d in j["devices"]]' |
  sort | paste -sd, | grep -qx 'bad-1,bad-2,bad-3' || fail "rolled-back list: $("$TCPOTA" device list --state rolled-back)"
"$TCPOTA" rollout show 1 | grep -qi halted || fail "rollout show (table) does not say halted"
# It says why, and what to do (the server's log did; rollout show said "halted").
"$TCPOTA" rollout show 1 | grep -qE "status     halted itself: [0-9]+ of [0-9]+ finished devices failed, more than [0-9]+ % \(--halt-at\) and at least [0-9]+ \(--halt-min\); look at the failures \(tcpota device list --state S for each of failed, rolled-back, boot-failed and declined: all count\), then resume it \(failures count from then\) or cancel it" ||
  fail "rollout show 1 does not say why it halted: $("$TCPOTA" rollout show 1)"
ok "after the halt: no new device offered; device list --state rolled-back names the 3"

# Resume: the devices that had not started get it now; the rolled-back ones
# never again.
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
for id in good-4 good-5 good-11 bad-1; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" || true
done
for id in good-4 good-5 good-11; do
  "$TCPOTA" device status --flash "$WORK/$id" | grep -q '"version":"2.0.0"' || fail "$id not updated after resume"
done
"$TCPOTA" device status --flash "$WORK/bad-1" | grep -q '"version":"1.0.0"' || fail "bad-1 was offered again"
grep -qE '\[bad-1 [^]]*\] decision: no update: rollout 1: .*(failed|rolled back)' "$WORK/server.log" ||
  fail "bad-1 not refused for its failure"
[ "$(device_state bad-1)" = rolled-back ] || fail "bad-1 is $(device_state bad-1), not rolled-back"
ok "resume: devices not started get the image; a rolled-back one never again"

"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
run_device good-12 esp32 "$WORK/good-12" || fail "good-12 failed"
"$TCPOTA" device status --flash "$WORK/good-12" | grep -q '"version":"1.0.0"' || fail "good-12 updated after cancel"
rc=0; "$TCPOTA" rollout resume 1 > "$WORK/resume.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qi cancel "$WORK/resume.out" || fail "resume of a cancelled rollout: rc $rc $(cat "$WORK/resume.out")"
stop_fleet
ok "cancel: nothing more is offered, and it cannot be resumed"
