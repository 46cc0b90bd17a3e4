#!/usr/bin/env bash
# A halt decided once across nodes: three `tcpota serve --db` nodes on one
# PostgreSQL; a rollout with --halt-at; devices whose health check fails
# connect straight to the nodes in turn (round-robin), all at once, so their
# reports reach different nodes together and several nodes find the halt
# due at the same moment. The halt needs more reports than one node's share
# of the devices (--halt-min 5, 4 or 3 devices a node), so it is never
# decided by the reports of one node alone, however fast that node's devices
# finish. The rollout halts exactly once (one node logs the
# halt: the compare-and-set of STORE_ROLLOUT_SET lets one writer win, the
# others lose quietly); every node then says halted and offers nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
source "$(dirname "$0")/fleet_pg_lib.sh"

N=$(scaled 12 9) # failing devices; the halt is due from the 5th report on
start_pg_cluster
make_image "$WORK/img" 65536
api 1 image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
api 2 rollout create --image 2.0.0 --model esp32 --halt-at 20 --halt-min 5 > /dev/null ||
  fail "rollout create failed"

pids=()
for i in $(seq 1 "$N"); do
  SERVER_PORT=${ports[$(( (i - 1) % 3 ))]} run_device "bad-$i" esp32 "$WORK/bad-$i" --health fail &
  pids+=($!)
done
PIDS+=("${pids[@]}")
for p in "${pids[@]}"; do wait "$p" || true; done
# The reports each node took (a device that came after the halt is not
# offered the image and has nothing to report).
reports=0 nodes=0
for i in 1 2 3; do
  k=$(grep -cE '\[bad-[0-9]+ [^]]*\] report: .* rolled back' "$WORK/n$i.log" || true)
  reports=$((reports + k))
  if [ "$k" -gt 0 ]; then nodes=$((nodes + 1)); fi
done
[ "$nodes" -ge 2 ] || fail "the rollbacks reached $nodes node(s), not several"
[ "$reports" -ge 5 ] || fail "only $reports rollbacks reported: the halt needs 5"
halts=$(cat "$WORK"/n[123].log | grep -c 'rollout 1 halted by itself' || true)
[ "$halts" = 1 ] || fail "the halt was taken $halts times across the nodes, not once:
$(grep -H 'halted by itself' "$WORK"/n[123].log)"
ok "$reports rollbacks reported to $nodes nodes at once: the rollout halted once ($(grep -l 'halted by itself' "$WORK"/n[123].log | xargs -n1 basename))"

for i in 1 2 3; do
  show=$(api "$i" rollout show 1 --json) || fail "rollout show through node $i failed"
  [ "$(echo "$show" | jq_py 'j["state"]')" = halted ] || fail "node $i: not halted: $show"
  [ "$(echo "$show" | jq_py 'j["totals"]["failed"]')" = "$reports" ] ||
    fail "node $i counts $(echo "$show" | jq_py 'j["totals"]["failed"]') failed, not the $reports reported: $show"
done
ok "rollout show through each node: halted, the $reports reported rollbacks counted"

# A device new to the rollout, on each node: nothing offered, the halt named.
for i in 1 2 3; do
  SERVER_PORT=${ports[$((i - 1))]} run_device "late-$i" esp32 "$WORK/late-$i" || fail "late-$i failed"
  "$TCPOTA" device status --flash "$WORK/late-$i" | grep -q '"version":"1.0.0"' ||
    fail "node $i offered the image after the halt"
  grep -qE "\[late-$i [^]]*\] decision: waiting: .*halted" "$WORK/n$i.log" ||
    fail "node $i did not say why late-$i waits: $(grep "late-$i" "$WORK/n$i.log" | tail -3)"
done
ok "after the halt no node offers the image"

# The dashboard's counts and id search on PostgreSQL, through node 3.
get3() {
  python3 - "http://127.0.0.1:${apis[2]}$1" <<'PY'
import json, os, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + os.environ["TCPOTA_TOKEN"]})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=10))))
PY
}
sum=$(get3 /v1/summary) || fail "GET /v1/summary through node 3 failed"
[ "$(echo "$sum" | jq_py 'sum(t["count"] for t in j["rollout_failures"] if t["rollout"] == 1)')" = "$reports" ] ||
  fail "summary: rollout 1's failures are not the $reports reported: $sum"
[ "$(echo "$sum" | jq_py 'sum(t["count"] for t in j["failures"] if t["state"] == "rolled-back")')" = "$reports" ] ||
  fail "summary: the last hour's rollbacks are not the $reports reported: $sum"
[ "$(get3 '/v1/devices?q=late-' | jq_py '",".join(d["id"] for d in j["devices"])')" = late-1,late-2,late-3 ] ||
  fail "devices?q=late- through node 3: $(get3 '/v1/devices?q=late-')"
ok "the dashboard's counts and id search answer on PostgreSQL"

# A rollout cancelled, or halted, on one node stops its transfers on the
# others within about a second (fleet.c, sync_stops; before, they ran to
# the end and their devices installed the image): a slow HTTP download
# from node 2, its rollout cancelled through node 1; then slow devices on
# node 2 (through a proxy at 20 kB/s that holds 16 KiB: a 1 MB image's
# last bytes leave the server some 30 s later, the time the halt has to
# find them still running), their rollout halted by node 1 (its failing
# devices on node 1). Each kind of transfer alone with its rollout on
# node 2: each is what makes node 2 ask.
last_rollout() { api 1 rollout list --json | jq_py "max(r['id'] for r in j['rollouts'])"; }
make_image "$WORK/img8" 400000
api 1 image add --version 8.0.0 --model esp32 "$WORK/img8" > /dev/null || fail "image add 8.0.0 failed"
api 1 rollout create --image 8.0.0 --model esp32 > /dev/null || fail "rollout create 8.0.0 failed"
id8=$(last_rollout)
slow_http_get "${apis[1]}" c-http "$WORK/c-http.got"
http_pid=$SLOW_HTTP_PID
wait_line "$WORK/n2.log" '\[c-http [^]]*\] http: GET .*: 200, image 8.0.0'
api 1 rollout cancel "$id8" > /dev/null || fail "rollout cancel $id8 through node 1 failed"
wait_line "$WORK/n2.log" "rollout $id8 cancelled, as the database says: 1 transfer stopped on this server" 5
grep -qE "\[c-http [^]]*\] http: rollout $id8 cancelled, as the database says: download stopped at byte" "$WORK/n2.log" ||
  fail "node 2 did not say which download it stopped: $(grep c-http "$WORK/n2.log" | tail -2)"
wait "$http_pid" || true
[ "$(cat "$WORK/c-http.got")" -lt 400000 ] ||
  fail "the HTTP download from node 2 got the whole image of rollout $id8, cancelled on node 1 ($(cat "$WORK/c-http.got") bytes)"

make_image "$WORK/img81" 1000000
api 1 image add --version 8.1.0 --model esp32 "$WORK/img81" > /dev/null || fail "image add 8.1.0 failed"
api 1 rollout create --image 8.1.0 --model esp32 --halt-at 20 --halt-min 2 > /dev/null ||
  fail "rollout create 8.1.0 failed"
id81=$(last_rollout)
start_proxy proxy2 "${ports[1]}" --rate 20000 --queue-limit 16384 --quiet
slow_devices h 2
wait_line "$WORK/n2.log" '\[h-1 [^]]*\] decision: offer 8.1.0'
wait_line "$WORK/n2.log" '\[h-2 [^]]*\] decision: offer 8.1.0'
hf=()
for i in 1 2; do
  SERVER_PORT=${ports[0]} run_device "hf-$i" esp32 "$WORK/hf-$i" --health fail & hf+=($!)
done
PIDS+=("${hf[@]}")
for p in "${hf[@]}"; do wait "$p" || true; done
wait_line "$WORK/n1.log" "rollout $id81 halted by itself"
wait_line "$WORK/n2.log" "rollout $id81 halted, as the database says: 2 transfers stopped on this server" 5
for p in "${pids[@]}"; do wait "$p" || fail "a slow device failed: $(tail -3 "$WORK"/h-*.log)"; done
for i in 1 2; do
  "$TCPOTA" device status --flash "$WORK/d$i" | grep -q '"version":"1.0.0"' ||
    fail "h-$i installed the image of rollout $id81, halted on node 1: $(tail -3 "$WORK/h-$i.log")"
done
ok "a rollout cancelled or halted on node 1 stops its transfers on node 2 (HTTP, and devices that stay on 1.0.0)"

# A halt the database takes while its node stops: the halt's write waits
# on the rollouts' table (a session of the test holds it), the node is
# told to stop, then the table is let go. The halt's end then runs in the
# store's close, after the node's HTTP downloads are closed, and stops
# their transfers: it read the freed downloads' server (a use-after-free,
# an abort under ASan; a review). The halt is kept and said.
make_image "$WORK/img9" 30000
api 1 image add --version 9.0.0 --model m9 "$WORK/img9" > /dev/null || fail "image add m9 failed"
api 1 rollout create --image 9.0.0 --model m9 --halt-at 20 --halt-min 2 > /dev/null ||
  fail "rollout create m9 failed"
id9=$(api 1 rollout list --json | jq_py "[r['id'] for r in j['rollouts'] if r['model'] == 'm9'][0]")
hold_table rollouts Share
for i in 1 2 3; do
  timeout 60 "$TCPOTA" device --server "127.0.0.1:${ports[0]}" \
    --flash "$WORK/m9-$i" --id "m9-$i" --model m9 --factory-version 1.0.0 --slot-size 1048576 \
    --progress none --max-attempts 1 --health fail 2> "$WORK/m9-$i.log" || true
  [ "$(pgq "$LOCKWAIT query LIKE 'UPDATE rollouts%'")" -ge 1 ] 2> /dev/null && break
done
wait_pg "$LOCKWAIT query LIKE 'UPDATE rollouts%'" 1 "node 1's halt of rollout $id9 did not come to wait on the rollouts' table"
pid1=$(cat "$WORK/n1.pid")
kill -TERM "$pid1"
wait_line "$WORK/n1.log" 'SIGTERM: shutting down'
sleep 0.5 # the node's connections and downloads closed; its store's close waits
release_table
rc=0; wait "$pid1" || rc=$?
[ $rc -eq 0 ] || fail "node 1, stopping as its halt was written, exited $rc$(sanitizer_said "$WORK/n1.log" | sed '1s/^/:\n/')"
grep -q "rollout $id9 halted by itself" "$WORK/n1.log" || fail "node 1 did not say the halt: $(tail -5 "$WORK/n1.log")"
[ "$(api 2 rollout show "$id9" --json | jq_py 'j["state"]')" = halted ] ||
  fail "the halt node 1 wrote as it stopped is not kept: $(api 2 rollout show "$id9")"
ok "a halt written while its node stops: said and kept, the node exits cleanly"

# Seconds later, node 2 said each stop once: a spared or stopped transfer
# is not stopped (and said) again at every tick.
for id in "$id8" "$id81"; do
  k=$(grep -c "rollout $id [a-z]*, as the database says: [0-9]* transfers\? stopped" "$WORK/n2.log" || true)
  [ "$k" = 1 ] || fail "node 2 said the stop of rollout $id $k times: $(grep "rollout $id " "$WORK/n2.log" | tail -3)"
done

stop_pg_cluster
ok "every node stopped cleanly"
