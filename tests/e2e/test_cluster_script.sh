#!/usr/bin/env bash
# scripts/cluster.sh, as `make cluster` runs it: start returns even when its
# output goes into a pipe (the nodes and HAProxy once kept the caller's
# stdout open, and `cluster.sh start DIR | tail` never ended), and says
# nothing of PostgreSQL's user not reaching the caller's folder; status
# names every part running; a device updates through HAProxy; stop ends
# them all.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
command -v haproxy > /dev/null || fail "haproxy is not installed (scripts/deps.sh installs it)"
SCRIPT="$(cd "$(dirname "$0")/../.." && pwd)/scripts/cluster.sh"
# The database's owner (an unprivileged user under root) must reach DIR;
# the folder the script runs from is closed to it (mode 700).
chmod 711 "$WORK"
mkdir -m 700 "$WORK/closed"
D="$WORK/cluster"
D2="$WORK/cluster2"
trap 'rc=$?; set +e; for d in "$D" "$D2"; do [ -d "$d" ] && bash "$SCRIPT" stop "$d" > /dev/null 2>&1; done; (exit $rc); cleanup' EXIT

port=$((20000 + RANDOM % 8000))
export CLUSTER_PORT=$port CLUSTER_API=$((port + 1))
rc=0
(cd "$WORK/closed" && timeout 60 bash -c 'bash "$0" start "$1" | cat' "$SCRIPT" "$D" \
  > "$WORK/start.out" 2> "$WORK/start.err") || rc=$?
[ $rc -eq 0 ] || fail "cluster.sh start | cat: exit $rc (124: it kept the pipe open): $(cat "$WORK/start.err")"
grep -q "cluster: running in $D" "$WORK/start.out" || fail "no 'running' line: $(cat "$WORK/start.out")"
! grep -q 'could not change directory' "$WORK/start.err" ||
  fail "start printed PostgreSQL's complaint about the caller's folder: $(cat "$WORK/start.err")"
bash "$SCRIPT" status "$D" > "$WORK/status.out"
for part in haproxy n1 n2 n3; do
  grep -q "^$part: running" "$WORK/status.out" || fail "$part is not running: $(cat "$WORK/status.out")"
done
grep -q '^postgres: running' "$WORK/status.out" || fail "postgres is not running: $(cat "$WORK/status.out")"
ok "cluster.sh start returns through a pipe, from a folder closed to PostgreSQL's user; status names all five"

# The "try:" line start prints works as printed, on the cluster's own API
# port (not the default 8071), from the folder that holds fw.bin.
make_image "$WORK/img" 200000
cp "$WORK/img" "$WORK/fw.bin"
try=$(sed -n 's/^  try: *//p' "$WORK/start.out")
(cd "$WORK" && env -u TCPOTA_API -u TCPOTA_TOKEN bash -c "$try") > "$WORK/try.out" 2>&1 ||
  fail "the start's 'try:' line failed: $try: $(cat "$WORK/try.out")"
ok "the 'try:' line of cluster.sh start works as printed with CLUSTER_API set"

export TCPOTA_API="http://127.0.0.1:$((port + 2))" TCPOTA_TOKEN
TCPOTA_TOKEN=$(cat "$D/n1/api.token")
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add through node 2 failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
SERVER_PORT=$port run_device c-1 esp32 "$WORK/dev" || fail "a device through HAProxy failed: $(cat "$WORK/c-1.log")"
check_device "$WORK/dev" "$WORK/img"
ok "a device updates through the cluster's HAProxy"

# A node killed comes back with restart, on the ports HAProxy has for it
# (so that its health check takes it back), its log keeping the lines of the run
# that ended; a node number out of range is refused.
kill -9 "$(cat "$D/n2.pid")"
timeout 60 bash "$SCRIPT" restart "$D" 2 > "$WORK/restart.out" 2>&1 || fail "restart of node 2: $(cat "$WORK/restart.out")"
grep -q "^cluster: node 2 running again (pid [0-9]*), devices 127.0.0.1:[0-9]*, API 127.0.0.1:$((port + 2))$" "$WORK/restart.out" ||
  fail "restart of node 2 said: $(cat "$WORK/restart.out")"
[ "$(grep -c 'listening on' "$D/n2.log")" = 2 ] && [ "$(grep -c '^--- cluster: node 2 started' "$D/n2.log")" = 2 ] ||
  fail "node 2's log lost the lines of its first run: $(cat "$D/n2.log")"
SERVER_PORT=$port run_device c-2 esp32 "$WORK/dev2" || fail "a device after the restart failed: $(cat "$WORK/c-2.log")"
rc=0; bash "$SCRIPT" restart "$D" 4 > "$WORK/restart4.out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "cluster: node '4': give 1..3" "$WORK/restart4.out" || fail "restart of node 4: exit $rc: $(cat "$WORK/restart4.out")"
ok "cluster.sh restart DIR N brings a killed node back on its ports, its log kept"

# A second cluster on the same device port stops before it starts anything:
# its HAProxy could not bind there (or, as the same user, would share the
# port by SO_REUSEPORT and split the devices between two fleets), and the
# start's probe of the port reached the first cluster's HAProxy and said
# "running".
rc=0
CLUSTER_API=$((port + 10)) timeout 60 bash "$SCRIPT" start "$D2" > "$WORK/start2.out" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "a second cluster on device port $port: exit $rc, expected 1: $(cat "$WORK/start2.out")"
grep -q "127.0.0.1:$port, the devices' port (CLUSTER_PORT), is in use" "$WORK/start2.out" ||
  fail "a second cluster on device port $port: $(cat "$WORK/start2.out")"
[ ! -e "$D2/pg" ] && [ ! -e "$D2/n1.pid" ] || fail "a second cluster on a taken port started something in $D2"
ok "a second cluster on a device port in use is refused, naming the port, before it starts anything"

# A node that cannot start (node 1's API port is the first cluster's) is
# reported as it exits, with its reason, not after the 10 s wait for its
# "listening on" line, and what started is stopped again.
rc=0
start=$(date +%s%N)
CLUSTER_PORT=$(free_ports 1) CLUSTER_API=$((port + 1)) timeout 60 bash "$SCRIPT" start "$D2" > "$WORK/start3.out" 2>&1 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ $rc -eq 1 ] || fail "a cluster whose node 1 cannot start: exit $rc, expected 1: $(cat "$WORK/start3.out")"
grep -q "n1 exited before" "$WORK/start3.out" && grep -q "cannot listen on 127.0.0.1:$((port + 1)) for the API" "$WORK/start3.out" ||
  fail "a cluster whose node 1 cannot start: $(cat "$WORK/start3.out")"
# "exited before" is said only when the node's process is gone (the wait
# for its line ends with "timed out"); the time limit only catches a sleep
# or a wait that does not look at the process: generous, as a loaded
# machine (ctest -j4) took 8.7 s without any wait.
[ $ms -lt 30000 ] || fail "a cluster whose node 1 cannot start took $ms ms to say so"
bash "$SCRIPT" status "$D2" > "$WORK/status3.out"
! grep -q ': running' "$WORK/status3.out" || fail "still running after a failed start: $(cat "$WORK/status3.out")"
ok "a node that cannot start is reported at once with its reason ($ms ms), and the start stops what it started"

# PostgreSQL killed (its pid file left behind): status says it is not
# running, and stop does not try to signal it (a trial: "postgres: running"
# after kill -9, then pg_ctl's "could not send stop signal").
kill -9 "$(head -1 "$D/pg/data/postmaster.pid")"
for _ in $(seq 50); do kill -0 "$(head -1 "$D/pg/data/postmaster.pid")" 2> /dev/null || break; sleep 0.1; done
bash "$SCRIPT" status "$D" > "$WORK/status4.out"
grep -q "^postgres: not running (it ended without its stop: see $D/pg/postgres.log)$" "$WORK/status4.out" ||
  fail "status after PostgreSQL was killed: $(cat "$WORK/status4.out")"
bash "$SCRIPT" stop "$D" > "$WORK/stop.out" 2>&1 || fail "stop failed: $(cat "$WORK/stop.out")"
grep -q "cluster: stopped" "$WORK/stop.out" && ! grep -q "could not send" "$WORK/stop.out" || fail "stop: $(cat "$WORK/stop.out")"
bash "$SCRIPT" status "$D" > "$WORK/status2.out"
! grep -q ': running' "$WORK/status2.out" || fail "still running after stop: $(cat "$WORK/status2.out")"
ok "cluster.sh stop ends HAProxy and the three nodes, PostgreSQL killed before it said as such"

for cmd in stop status; do
  rc=0
  bash "$SCRIPT" $cmd "$WORK/no-such-cluster" > "$WORK/$cmd-none.out" 2>&1 || rc=$?
  [ $rc -eq 1 ] || fail "cluster.sh $cmd on a folder that does not exist: exit $rc, expected 1"
  grep -q "no-such-cluster does not exist: no cluster was started there" "$WORK/$cmd-none.out" ||
    fail "cluster.sh $cmd on a folder that does not exist: $(cat "$WORK/$cmd-none.out")"
done
ok "cluster.sh stop and status on a folder that does not exist say so (exit 1), not 'stopped'"
