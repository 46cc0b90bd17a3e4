#!/usr/bin/env bash
# SIGKILL of the fleet server in the middle of a rollout to 50 devices, then a
# restart on the same data: every device ends where the rollout says (all
# updated, byte-exact), and the history of each is complete: offered,
# downloading, verified (durable) and updated (a report, durable before the
# server answered it).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
N=50

make_image "$WORK/img" 524288
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
# Slow the devices down behind the project's proxy so that the kill lands
# mid-transfer for most of them.
start_proxy proxy "$SERVER_PORT" --rate 200000 --quiet
pids=()
for i in $(seq 1 $N); do
  "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d$i" --id "k-$i" --model esp32 \
    --factory-version 1.0.0 --slot-size 1048576 --progress none --backoff-min-ms 100 \
    --backoff-max-ms 1000 --max-attempts 200 2> "$WORK/k-$i.log" &
  pids+=($!)
done
PIDS+=("${pids[@]}")
wait_line "$WORK/server.log" 'offer 2.0.0' 20
sleep 1
kill -KILL "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
ok "server killed mid-rollout"

LISTEN="127.0.0.1:$SERVER_PORT" start_fleet
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
for i in $(seq 1 $N); do check_device "$WORK/d$i" "$WORK/img"; done
for i in $(seq 1 $N); do
  show=$("$TCPOTA" device show --json "k-$i")
  [ "$(echo "$show" | jq_py 'j["state"]')" = updated ] || fail "k-$i: $show"
  hist=$(echo "$show" | jq_py '" ".join(reversed([h["state"] for h in j["history"]]))')
  for s in offered downloading verified updated; do
    echo " $hist " | grep -q " $s " || fail "k-$i history lacks $s: $hist"
  done
done
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')" = $N ] ||
  fail "rollout does not count $N updated: $("$TCPOTA" rollout show 1)"
stop_fleet
ok "after SIGKILL and restart: $N devices updated byte-exact, each history complete"
