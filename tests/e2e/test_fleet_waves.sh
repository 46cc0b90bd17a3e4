#!/usr/bin/env bash
# Waves: --waves 10,50,100 over 50 devices. Devices outside the open waves
# are told NO_UPDATE; the next wave opens by the documented rule (every
# device of the open wave finished, success above 90 %, soaked --soak s),
# and each wave is exactly the devices whose place (FNV-1a of rollout and
# id, computed here independently) falls below its bound.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
N=$(scaled 50 30)
SOAK=10

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
# Registered first (no rollout yet: NO_UPDATE), so that the rollout targets them.
pids=()
for i in $(seq 1 $N); do run_device "w-$i" esp32 "$WORK/d$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a first check-in failed"; done
# Each device's place in rollout 1, computed here (one python run for all).
mapfile -t PLACE < <(python3 -c '
import sys
for i in range(1, int(sys.argv[1]) + 1):
    h = 0xcbf29ce484222325
    for b in (1).to_bytes(8, "little") + ("w-%d" % i).encode():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    print(h % 10000)
' "$N")
[ "${#PLACE[@]}" -eq "$N" ] || fail "places not computed"
[ "${PLACE[0]}" = "$(fnv_place 1 w-1)" ] || fail "the two place computations disagree"
# in_wave I BOUND: 0 when device w-I's place is below BOUND basis points.
in_wave() { [ "${PLACE[$(($1 - 1))]}" -lt "$2" ]; }
expect=0; exp1=0; exp2=0
for i in $(seq 1 $N); do
  if in_wave "$i" 1000; then expect=$((expect + 1)); elif in_wave "$i" 5000; then exp1=$((exp1 + 1)); else exp2=$((exp2 + 1)); fi
done
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --waves 10,50,100 --soak $SOAK --min-finished 3 \
  > /dev/null || fail "rollout create failed"
targeted=$("$TCPOTA" rollout show 1 --json | jq_py '[w["targeted"] for w in j["waves"]]' | paste -sd,)
[ "$targeted" = "$expect,$exp1,$exp2" ] || fail "targeted per wave $targeted, computed $expect,$exp1,$exp2"
ok "targeted per wave $targeted agrees with the places computed here"

check_round() { # check_round BOUND: exactly the devices below BOUND run the image
  local i v
  for i in $(seq 1 $N); do
    v=$("$TCPOTA" device status --flash "$WORK/d$i" | sed -nE 's/.*"version":"([^"]*)".*/\1/p')
    if in_wave "$i" "$1"; then
      [ "$v" = 2.0.0 ] || fail "w-$i (place $(fnv_place 1 "w-$i")) is in an open wave but runs $v"
    else
      [ "$v" = 1.0.0 ] || fail "w-$i (place $(fnv_place 1 "w-$i")) is outside the open waves but runs $v"
    fi
  done
}
# round: every device checks in once, all at once (a round takes far less
# than the soak time, so no wave can open in the middle of one by mistake).
round() {
  local i pids=()
  for i in $(seq 1 $N); do run_device "w-$i" esp32 "$WORK/d$i" & pids+=($!); done
  PIDS+=("${pids[@]}")
  for i in "${pids[@]}"; do wait "$i" || fail "a device failed in a round"; done
}
round
check_round 1000
st=$(device_state "w-$(for i in $(seq 1 $N); do in_wave "$i" 1000 || { echo "$i"; break; }; done)")
[ "$st" = waiting ] || fail "a device outside wave 1 is '$st', not waiting"
w=$(for i in $(seq 1 $N); do in_wave "$i" 1000 || { echo "$i"; break; }; done)
grep -q "w-$w: no update yet, running 1.0.0: an update applies, but not yet" "$WORK/w-$w.log" ||
  fail "a waiting device was not told it waits: $(cat "$WORK/w-$w.log")"
ok "only wave 1 ($expect devices) updated; the others wait"

# Soaked: the next check-in opens wave 2 (all of wave 1 finished, 100 % success).
# A second round follows at once: wave 2 has not soaked yet, so it must not
# open wave 3 (checked when both rounds ended within the soak time).
sleep $SOAK.3
round
round
ended=$(date +%s)
opened=$("$TCPOTA" rollout show 1 --json | jq_py 'j["waves"][1]["opened_at"]')
if [ $((ended - opened)) -lt "$SOAK" ]; then
  check_round 5000
  ok "wave 2 opened by the rule; exactly the devices below 50 % updated; wave 3 waits for its soak"
else
  echo "note: two rounds took $((ended - opened)) s, not less than the soak time; wave 3 may be open"
fi
"$TCPOTA" rollout show 1 --json | jq_py '[w["open"] for w in j["waves"]][:2]' | paste -sd, |
  grep -qx 'True,True' || fail "waves open: $("$TCPOTA" rollout show 1 --json)"
grep -q 'rollout 1: wave 2 (50%) opens' "$WORK/server.log" || fail "wave opening not logged"

sleep $SOAK.3
round
check_round 10000
"$TCPOTA" rollout show 1 > "$WORK/show.txt" || fail "rollout show failed"

# open-wave: an operator opens the next wave now, whatever its rule says
# (a wave held below --success-pct by devices that will not change).
make_image "$WORK/m2img" 5000
"$TCPOTA" image add --version 2.0.0 --model m2 "$WORK/m2img" > /dev/null || fail "image add m2 failed"
"$TCPOTA" rollout create --image 2.0.0 --model m2 --waves 10,50 --soak 3600 > "$WORK/ro2.out" ||
  fail "rollout create m2 failed"
grep -q "^its last wave is 50%: the other devices of model m2 are never offered this image (end --waves with 100 to reach them all)$" "$WORK/ro2.out" ||
  fail "a last wave of 50 % was not said at create: $(cat "$WORK/ro2.out")"
"$TCPOTA" rollout open-wave 2 > "$WORK/ow.out" 2>&1 || fail "rollout open-wave 2: $(cat "$WORK/ow.out")"
grep -qx "rollout 2: waves open 2/2 (50%)" "$WORK/ow.out" || fail "open-wave said: $(cat "$WORK/ow.out")"
"$TCPOTA" rollout show 2 --json | jq_py '[w["open"] for w in j["waves"]]' | paste -sd, | grep -qx 'True,True' ||
  fail "after open-wave: $("$TCPOTA" rollout show 2 --json)"
rc=0; "$TCPOTA" rollout open-wave 2 > "$WORK/ow.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "rollout 2 has every wave open already (2 of 2)" "$WORK/ow.out" ||
  fail "open-wave with every wave open: rc $rc: $(cat "$WORK/ow.out")"
# Its last wave is 50 %: a device past it is never offered the image, and
# is told so (up to date as it is, exit 0), not to wait for a wave that
# does not exist (a trial's checked in for nothing); the status says so.
"$TCPOTA" rollout show 2 | grep -q "every wave is open; its last reaches 50.00 % of the model's devices, the others are never offered this image" ||
  fail "rollout 2's status: $("$TCPOTA" rollout show 2 | head -3)"
out=$(python3 - <<'PY'
def place(ro, dev):
    h = 0xcbf29ce484222325
    for b in ro.to_bytes(8, "little") + dev.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h % 10000
print(next("out-%d" % i for i in range(1000) if place(2, "out-%d" % i) >= 5000))
PY
)
rc=0; run_device "$out" m2 "$WORK/$out" --max-attempts 1 || rc=$?
[ $rc -eq 0 ] && grep -q "up to date, running 1.0.0: " "$WORK/$out.log" ||
  fail "$out past rollout 2's last wave: rc $rc: $(cat "$WORK/$out.log")"
grep -q "\[$out .*decision: no update: rollout 2: its last wave leaves out the rest of the model's devices, this one among them" "$WORK/server.log" ||
  fail "the server's decision for $out: $(grep "\[$out " "$WORK/server.log" | tail -2)"
"$TCPOTA" rollout pause 2 > /dev/null || fail "rollout pause 2 failed"
rc=0; "$TCPOTA" rollout open-wave 2 > "$WORK/ow.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "rollout 2 is paused; only an active rollout opens a wave (resume it first)" "$WORK/ow.out" ||
  fail "open-wave of a paused rollout: rc $rc: $(cat "$WORK/ow.out")"
"$TCPOTA" rollout cancel 2 > /dev/null || fail "rollout cancel 2 failed"
rc=0; "$TCPOTA" rollout open-wave 2 > "$WORK/ow.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "rollout 2 is cancelled; only an active rollout opens a wave (a cancelled one never runs again: create a new rollout)" "$WORK/ow.out" ||
  fail "open-wave of a cancelled rollout: rc $rc: $(cat "$WORK/ow.out")"
ok "rollout open-wave opens the next wave now; refused with every wave open, paused or cancelled"
stop_fleet
ok "the last wave opened after its soak time; all $N devices updated"
