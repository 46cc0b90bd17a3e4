#!/usr/bin/env bash
# A node SIGKILLed mid-rollout behind HAProxy: devices slowed down by the
# project's proxy are in the middle of their transfers when node B dies; each
# reconnects through HAProxy to another node, resumes from its last
# checkpoint (fetching again at most one ack interval and a sector), and ends
# byte-exact, counted as updated by the database every node shares.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
source "$(dirname "$0")/fleet_pg_lib.sh"

N=$(scaled 100 12)
ACK=16384
SECTOR=4096
start_pg_cluster
make_image "$WORK/img" 262144
api 1 image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
api 1 rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
start_proxy proxy "$HA_PORT" --rate 100000 --queue-limit 16384 --quiet
slow_devices k "$N" --ack-interval "$ACK"
wait_line "$WORK/n2.log" 'decision: offer 2.0.0' 20
sleep 1
kill -KILL "$(cat "$WORK/n2.pid")"
ok "node B killed mid-rollout"

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
check_devices "$WORK/img" $(seq -f "$WORK/d%g" 1 "$N")
worst=0
for i in $(seq 1 "$N"); do
  r=$(sed -nE 's/.* stats .*refetched=([0-9]+).*/\1/p' "$WORK/k-$i.log" | tail -1)
  [ -n "$r" ] || fail "k-$i printed no stats"
  [ "$r" -le $((ACK + SECTOR)) ] || fail "k-$i fetched $r bytes again (more than $ACK + $SECTOR)"
  [ "$r" -gt "$worst" ] && worst=$r
done
grep -qE 'done: image 2.0.0 verified by the device, [0-9]+ bytes from [1-9]' "$WORK/n1.log" "$WORK/n3.log" ||
  fail "no device resumed on node A or C"
updated=$(api 1 rollout show 1 --json | jq_py 'j["totals"]["updated"]')
[ "$updated" = "$N" ] || fail "the rollout counts $updated updated, not $N"
stop_pg_cluster
ok "$N devices byte-exact after node B's death, resumed on A or C (at most $worst bytes fetched again)"
