#!/usr/bin/env bash
# Three `tcpota serve --db` nodes on one PostgreSQL, behind HAProxy (TCP mode),
# all started here in the scratch folder: devices update through HAProxy
# byte-exact, whichever node they reach (an image added through node A is
# fetched by B and C from the database); a rollout created through node B
# and paused through node A makes nodes B and C offer nothing at once
# (within a second); resumed through node C, node A offers it again; what
# a node remembers of a device's check-ins lasts at most a second.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
source "$(dirname "$0")/fleet_pg_lib.sh"
# ota_code N DEVICE: the HTTP status of DEVICE's download (esp32, running
# 1.0.0) from node N.
ota_code() {
  curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
    "http://127.0.0.1:${apis[$(($1 - 1))]}/ota/esp32?device=$2"
}

N=$(scaled 20 6)
start_pg_cluster
ok "PostgreSQL, 3 nodes and HAProxy on 127.0.0.1:$HA_PORT"

# An image through node A; a rollout through node A; N devices through HAProxy.
make_image "$WORK/img2" 100000
api 1 image add --version 2.0.0 --model esp32 "$WORK/img2" > /dev/null || fail "image add on A failed"
api 1 rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create on A failed"
SERVER_PORT=$HA_PORT
pids=()
for i in $(seq 1 "$N"); do
  run_device "dev-$i" esp32 "$WORK/d$i" & pids+=($!)
done
PIDS+=("${pids[@]}")
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
check_devices "$WORK/img2" $(seq -f "$WORK/d%g" 1 "$N")
id2=$(sha256sum "$WORK/img2" | cut -d' ' -f1)
extra=0
for i in 1 2 3; do
  # Round robin spreads the connections (offers and the reports after them)
  # over the nodes, but which node got the offers is chance with few
  # devices: a node that served none gets one device of its own.
  grep -q 'hello model=esp32' "$WORK/n$i.log" || fail "node $i saw no device: HAProxy did not spread them"
  if ! grep -q 'decision: offer' "$WORK/n$i.log"; then
    SERVER_PORT=${ports[$((i - 1))]} run_device "extra-$i" esp32 "$WORK/extra$i" ||
      fail "extra-$i on node $i failed"
    check_device "$WORK/extra$i" "$WORK/img2"
    extra=$((extra + 1))
  fi
  [ -f "$WORK/n$i/images/$id2" ] && cmp -s "$WORK/n$i/images/$id2" "$WORK/img2" ||
    fail "node $i has no exact copy of the image in its cache"
done
[ "$(api 2 rollout show 1 --json | jq_py 'j["totals"]["updated"]')" = "$((N + extra))" ] ||
  fail "node B does not count $N updated: $(api 2 rollout show 1)"
# Nodes write each device's steps in batches while other nodes take its
# check-ins: PostgreSQL must never have to break a deadlock between them
# (each one cost seconds of stalled check-ins, and its retry wrote the
# steps late).
! grep -q 'deadlock detected' "$WORK/pg/postgres.log" ||
  fail "PostgreSQL broke deadlocks: $(grep -c 'deadlock detected' "$WORK/pg/postgres.log"): $(grep -m1 -A8 'deadlock detected' "$WORK/pg/postgres.log")"
ok "$N devices updated through HAProxy, byte-exact; every node served some, from its own cache; no deadlock"

# A newer image, a rollout made through B, paused through A: B and C must
# offer nothing from that moment on.
make_image "$WORK/img3" 80000
api 2 image add --version 3.0.0 --model esp32 "$WORK/img3" > /dev/null || fail "image add on B failed"
api 2 rollout create --image 3.0.0 --model esp32 > /dev/null || fail "rollout create on B failed"
api 1 rollout pause 2 > /dev/null || fail "rollout pause on A failed"
t0=$(date -u +%s%3N)
SERVER_PORT=${ports[1]} run_device dev-1 esp32 "$WORK/d1" & p1=$!
SERVER_PORT=${ports[2]} run_device dev-2 esp32 "$WORK/d2" & p2=$!
PIDS+=("$p1" "$p2")
wait "$p1" || true
wait "$p2" || true
for i in 1 2; do
  "$TCPOTA" device status --flash "$WORK/d$i" | grep -q '"version":"2.0.0"' ||
    fail "dev-$i was updated although the rollout was paused"
done
# When each node decided (its log's UTC time, ms), against the pause's answer.
decided_ms() {
  local line
  line=$(grep -E "\[$1 [^]]*\] decision: waiting: .*paused" "$2" | tail -1)
  [ -n "$line" ] || fail "$2 shows no decision for $1 that names the pause"
  date -u -d "$(echo "$line" | cut -d' ' -f1 | sed 's/T/ /; s/Z$//')" +%s%3N
}
for pair in "dev-1 n2" "dev-2 n3"; do
  set -- $pair
  late=$(( $(decided_ms "$1" "$WORK/$2.log") - t0 ))
  [ "$late" -lt 1000 ] || fail "node $2 decided about $1 $late ms after the pause"
done
ok "paused through node A: nodes B and C offered nothing at the next check-in (within 1 s)"

api 3 rollout resume 2 > /dev/null || fail "rollout resume on C failed"
SERVER_PORT=${ports[0]} run_device dev-3 esp32 "$WORK/d3" || fail "dev-3 failed after resume"
check_device "$WORK/d3" "$WORK/img3"
ok "resumed through node C: node A offers it again"

# A node answers an unchanged check-in from memory for 1 s at most on a
# shared database: a rollout created through B reaches a device that node
# A has just answered from memory, at its first check-in after that second.
for n in 1 2 3; do SERVER_PORT=${ports[0]} run_device dev-4 esp32 "$WORK/d4" || fail "dev-4 run $n on A failed"; done
grep -q "\[dev-4 .*nothing changed since its last check-in" "$WORK/n1.log" ||
  fail "node A did not answer dev-4's unchanged check-in from memory"
make_image "$WORK/img4" 60000
api 2 image add --version 4.0.0 --model esp32 "$WORK/img4" > /dev/null || fail "image add 4.0.0 on B failed"
api 2 rollout create --image 4.0.0 --model esp32 > /dev/null || fail "rollout create 4.0.0 on B failed"
sleep 1.2
SERVER_PORT=${ports[0]} run_device dev-4 esp32 "$WORK/d4" || fail "dev-4 failed after the rollout of 4.0.0"
check_device "$WORK/d4" "$WORK/img4"
ok "what node A remembered of a device lasted at most 1 s: B's new rollout reached it"

# A rollout of the image a device got from an earlier one counts it as
# updated at its next check-in (the store's rule, PostgreSQL's copy of it).
api 2 device set dev-4 --group g > /dev/null || fail "device set dev-4 --group g failed"
api 2 rollout create --image 4.0.0 --model esp32 --group g > /dev/null || fail "the group rollout of 4.0.0 failed"
sleep 1.2 # past what a node remembers of dev-4
SERVER_PORT=${ports[2]} run_device dev-4 esp32 "$WORK/d4" || fail "dev-4 failed under the group rollout"
for _ in $(seq 40); do
  [ "$(api 1 rollout show 4 --json | jq_py 'j["totals"]["updated"]')" = 1 ] && break
  sleep 0.1
done
[ "$(api 1 rollout show 4 --json | jq_py 'j["totals"]["updated"]')" = 1 ] ||
  fail "the group rollout of the image dev-4 runs does not count it: $(api 1 rollout show 4)"
ok "a rollout of the image a device runs already counts it as updated (PostgreSQL)"

# A device secret set through one node is checked by every node within
# FLEET_SYNC_MS (1 s): it was loaded at each node's start only, so
# the other nodes served the device without it, an HTTP download of it
# too, and took the secret it replaced.
api 1 device secret sec-1 --out "$WORK/sec1" > /dev/null 2>&1 || fail "device secret on A failed"
sleep 1.5
SERVER_PORT=${ports[1]} run_device sec-1 esp32 "$WORK/ds1" --max-attempts 1 &&
  fail "node B served sec-1 without the secret set through node A"
grep -q "\[sec-1 -\] device secret set through another node" "$WORK/n2.log" ||
  fail "node B did not log the secret set through node A"
code=$(ota_code 3 sec-1)
[ "$code" = 403 ] || fail "node C answered an HTTP download of sec-1 (a secret set through A) with $code"
SERVER_PORT=${ports[1]} run_device sec-1 esp32 "$WORK/ds1" --secret "$WORK/sec1" ||
  fail "sec-1 with its secret failed on node B: $(tail -3 "$WORK/sec-1.log")"
check_device "$WORK/ds1" "$WORK/img4"
api 3 device secret sec-1 --out "$WORK/sec2" > /dev/null 2>&1 || fail "device secret on C failed"
sleep 1.5
SERVER_PORT=${ports[0]} run_device sec-1 esp32 "$WORK/ds1" --secret "$WORK/sec1" --max-attempts 1 &&
  fail "node A took sec-1's secret replaced through node C"
grep -q "authentication" "$WORK/sec-1.log" || fail "sec-1 was not told of its refused secret: $(tail -3 "$WORK/sec-1.log")"
SERVER_PORT=${ports[0]} run_device sec-1 esp32 "$WORK/ds1" --secret "$WORK/sec2" ||
  fail "sec-1 with its new secret failed on node A: $(tail -3 "$WORK/sec-1.log")"
# The database's count of secret writes gone back (a failover to a standby
# that had not all of it, a restore): a node that had read further asks
# for all of them again, or a secret numbered below what it had read would
# never reach it.
# A wrong answer counts against sec-1 on node A; the full list read after
# the count went back forgives only secrets that changed (not sec-1's: a
# guesser's backoff must not be wiped by a failover).
AUTH_RE='\[sec-1 [^]]*\] authentication (failed|not checked): .*\(([0-9]+) failures? '
# auth_failures_after N: waits for sec-1's refusal line N+1 on node A, prints its count.
auth_failures_after() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(grep -cE "$AUTH_RE" "$WORK/n1.log")" -gt "$1" ] && break
    sleep 0.05
  done
  grep -E "$AUTH_RE" "$WORK/n1.log" | sed -nE "$(($1 + 1))s/.*$AUTH_RE.*/\2/p"
}
lines=$(grep -cE "$AUTH_RE" "$WORK/n1.log")
SERVER_PORT=${ports[0]} run_device sec-1 esp32 "$WORK/ds1" --secret "$WORK/sec1" --max-attempts 1 &&
  fail "node A took sec-1's replaced secret"
before=$(auth_failures_after "$lines")
[ -n "$before" ] || fail "node A did not log sec-1's refusal"
pg_sql "$WORK/pg" "UPDATE secrets_gen SET gen = 1" > /dev/null || fail "cannot set secrets_gen back"
api 3 device secret sec-2 --out "$WORK/sec3" > /dev/null 2>&1 || fail "device secret sec-2 on C failed"
sleep 2.5
SERVER_PORT=${ports[0]} run_device sec-1 esp32 "$WORK/ds1" --secret "$WORK/sec1" --max-attempts 1 &&
  fail "node A took sec-1's replaced secret after the full list"
after=$(auth_failures_after $((lines + 1)))
[ "$after" = $((before + 1)) ] ||
  fail "sec-1's failures on node A went from $before to ${after:-nothing}: the full list after the count went back forgave them"
SERVER_PORT=${ports[0]} run_device sec-2 esp32 "$WORK/ds2" --max-attempts 1 &&
  fail "node A served sec-2 without the secret set through C after the count went back"
# A secret shorter than a device's may be (written by hand, by another
# program) is not taken by any node.
pg_sql "$WORK/pg" "INSERT INTO secrets (device_id, secret) VALUES ('weak', '\\x01')" > /dev/null ||
  fail "cannot write a short secret"
sleep 1.5
! grep -q "\[weak -\] device secret" "$WORK"/n[123].log || fail "a node took a 1-byte secret: $(grep -h '\[weak' "$WORK"/n[123].log)"
ok "a device secret set or replaced through one node is checked by the others within 1.5 s (v1 and HTTP), also after the database's count went back"

# A device removed through one node (device rm) takes its secret with it on
# every node: the database numbers the removal (secrets_gone) as it numbers
# a secret set, and the other nodes' sync reads it (a plain DELETE would
# never reach them: they would go on refusing the id's downloads and
# taking its old secret). The count gone back first, as after a failover:
# the removal is numbered below what the nodes have read, and reaches them
# through the whole list they then read again (a review: it did not).
pg_sql "$WORK/pg" "UPDATE secrets_gen SET gen = 1" > /dev/null || fail "cannot set secrets_gen back"
api 2 device rm sec-1 > "$WORK/out" 2>&1 || fail "device rm sec-1 on B failed: $(cat "$WORK/out")"
grep -qx 'removed device sec-1 and its secret' "$WORK/out" || fail "device rm sec-1 said: $(cat "$WORK/out")"
rc=0; api 1 device show sec-1 > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q 'no device sec-1' "$WORK/out" || fail "device show sec-1 on A after rm on B: rc $rc $(cat "$WORK/out")"
sleep 2.5
for i in 1 3; do
  grep -q "\[sec-1 -\] device removed through another node, its secret with it" "$WORK/n$i.log" ||
    fail "node $i did not drop the secret of sec-1, removed through node B"
done
code=$(ota_code 3 sec-1)
[ "$code" = 200 ] || fail "node C answered an HTTP download of sec-1 (its secret removed through B) with $code"
# (that download registered sec-1 anew, as an HTTP device: --force)
api 3 device secret sec-1 --force --out "$WORK/sec4" > "$WORK/out" 2>&1 || fail "device secret sec-1 after rm failed: $(cat "$WORK/out")"
grep -q 'the previous one no longer works' "$WORK/out" && fail "the secret after rm was said to replace one: $(cat "$WORK/out")"
ok "a device removed through one node: the others drop its secret within 2.5 s, the database's count gone back (v1 and HTTP)"

# Two secrets set one after the other: each ask reads again rows the node
# holds, and the new ones behind them still count (a mutation review: a
# node that judged an ask by its first row alone missed both until its
# full read).
api 3 device secret sec-7 --out "$WORK/sec7" > /dev/null 2>&1 || fail "device secret sec-7 failed"
api 3 device secret sec-8 --out "$WORK/sec8" > /dev/null 2>&1 || fail "device secret sec-8 failed"
for id in sec-7 sec-8; do wait_line "$WORK/n1.log" "\[$id -\] device secret set through another node" 3; done
ok "two secrets set one after the other through one node both reach another"

# A failover to a standby that lost the newest secret write numbers the
# next write as the lost one was: a node that had read up to there would
# never ask for it. Each ask reads the last 64 generations again. Both in
# one transaction, so that no node sees the count go back (which reads
# everything): the lost write, then a new one numbered as it was.
pg_sql "$WORK/pg" "UPDATE secrets_gen SET gen = 1000" > /dev/null || fail "cannot move secrets_gen"
sleep 1.5
pg_sql "$WORK/pg" "BEGIN; UPDATE secrets_gen SET gen = 999; INSERT INTO secrets (device_id, secret)
  VALUES ('sec-5', decode(repeat('ab', 32), 'hex')); COMMIT" > /dev/null || fail "cannot write sec-5's secret"
pg_sql "$WORK/pg" "SELECT changed FROM secrets WHERE device_id = 'sec-5'" > "$WORK/out" || fail "cannot read sec-5's row"
grep -qx ' *1000' "$WORK/out" || fail "sec-5's secret was not numbered 1000: $(cat "$WORK/out")"
sleep 2.5
for i in 1 2 3; do
  grep -q "\[sec-5 -\] device secret set through another node" "$WORK/n$i.log" ||
    fail "node $i missed sec-5's secret, numbered as a write it had read"
done
code=$(ota_code 1 sec-5)
[ "$code" = 403 ] || fail "node A answered an HTTP download of sec-5 (a secret numbered as a lost write) with $code"
# A write a node saw and the database lost (the same failover) shows in no
# count: a node holds exactly what the database has after its next full
# read, every 5 minutes, or at once on SIGHUP. sec-5's row deleted by hand
# (no trigger numbers a DELETE: no node learns of it but by reading all).
pg_sql "$WORK/pg" "DELETE FROM secrets WHERE device_id = 'sec-5'" > /dev/null || fail "cannot delete sec-5's secret"
READ_RE='read the [0-9]+ device secrets again from the database: [0-9]+ changed here'
reads=$(grep -cE "$READ_RE" "$WORK/n1.log")
kill -HUP "$(cat "$WORK/n1.pid")"
for ((i = 0; i < 100; i++)); do
  [ "$(grep -cE "$READ_RE" "$WORK/n1.log")" -gt "$reads" ] && break
  sleep 0.05
done
grep -E "$READ_RE" "$WORK/n1.log" | sed -n "$((reads + 1))p" | grep -q ': 1 changed here' ||
  fail "node A's full read after SIGHUP: $(grep -E "$READ_RE" "$WORK/n1.log" | sed -n "$((reads + 1))p")"
grep -q "SIGHUP: reading every device secret again from the database" "$WORK/n1.log" ||
  fail "node A did not say that SIGHUP reads the secrets again"
grep -q "\[sec-5 -\] device secret dropped: the database has none for it" "$WORK/n1.log" ||
  fail "node A did not log dropping sec-5's secret"
code=$(ota_code 1 sec-5)
[ "$code" = 200 ] || fail "node A answered an HTTP download of sec-5 (no secret in the database) with $code"
code=$(ota_code 3 sec-5)
[ "$code" = 403 ] || fail "node C (no SIGHUP, no full read yet) answered sec-5's download with $code"
grep -q "\[sec-5 -\] device secret dropped" "$WORK/n3.log" && fail "node C dropped sec-5's secret without a full read"
ok "a secret numbered as a write the database lost reaches every node within 2.5 s; SIGHUP makes a node hold exactly the database's secrets"
# A SIGHUP while a full read is in flight asks for one more: the read in
# flight may have begun before what the SIGHUP was sent for (before, the
# second SIGHUP was lost in the first read's end). The read held up by a
# lock on the table, as by a long read of a million secrets.
reads=$(grep -cE "$READ_RE" "$WORK/n1.log")
# (hold_table's modes are one word; a read waits only for ACCESS EXCLUSIVE)
"$(pg_bindir)/psql" -X -q -h "$WORK/pg/sock" -p "$PG_PORT" -U tcpota -d postgres \
  -c "BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;" > /dev/null 2>&1 &
HOLD=$!
wait_pg "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'secrets' AND l.mode = 'AccessExclusiveLock' AND l.granted" 1 \
  "the test's session did not take the table secrets"
kill -HUP "$(cat "$WORK/n1.pid")"
wait_pg "$LOCKWAIT query LIKE '%FROM secrets%'" 1 "node A's full read did not wait for the lock"
kill -HUP "$(cat "$WORK/n1.pid")"
wait_line "$WORK/n1.log" "SIGHUP: reading every device secret again from the database once the last ask is answered" 5
release_table
for ((i = 0; i < 100; i++)); do
  [ "$(grep -cE "$READ_RE" "$WORK/n1.log")" -ge $((reads + 2)) ] && break
  sleep 0.05
done
[ "$(grep -cE "$READ_RE" "$WORK/n1.log")" -ge $((reads + 2)) ] ||
  fail "two SIGHUPs, one during the other's read: $(($(grep -cE "$READ_RE" "$WORK/n1.log") - reads)) full read(s)"
ok "a SIGHUP during a full read makes another"

# A node's cached copy damaged on disk: the node removes it (the database
# holds the bytes), and the next check-in fetches it again and updates
# (before: the failure was remembered; its advice, "add the image again",
# does nothing on a shared database, where the image is stored already).
id4=$(sha256sum "$WORK/img4" | cut -d' ' -f1)
printf ZZZZ | dd of="$WORK/n1/images/$id4" bs=1 seek=1000 conv=notrunc status=none
SERVER_PORT=${ports[0]} run_device dev-5 esp32 "$WORK/d5" || true # on 2.0.0: told to check again
wait_line "$WORK/n1.log" "image ${id4:0:16}\.\.\. \(4\.0\.0\): this node's copy .* no longer has that SHA-256 \(damaged or replaced on disk\); removed: the next check-in fetches it again from the database" 5
sleep 1.1 # FLEET_IMAGE_REFETCH_S
SERVER_PORT=${ports[0]} run_device dev-5 esp32 "$WORK/d5" || fail "dev-5 failed after its image was fetched again"
check_device "$WORK/d5" "$WORK/img4"
cmp -s "$WORK/n1/images/$id4" "$WORK/img4" || fail "node A's cache holds no exact copy again"
# Cut to nothing: not of the image's size, fetched again by the check-in
# itself (before, any file that existed was taken as the copy).
: > "$WORK/n1/images/$id4"
SERVER_PORT=${ports[0]} run_device dev-6 esp32 "$WORK/d6" || fail "dev-6 failed on a node whose copy was cut"
check_device "$WORK/d6" "$WORK/img4"
ok "a node's damaged copy of an image is removed and fetched again from the database at the next check-in; one cut short at once"

# HAProxy checks each node by GET /health on its API port: a node stopped
# (SIGSTOP: its kernel still accepts connections into the backlog, which a
# TCP check took for a node in service) is taken out of rotation within
# seconds, and back once it runs again.
kill -STOP "$(cat "$WORK/n3.pid")"
down=0
for _ in $(seq 200); do grep -q "Server nodes/n3 is DOWN" "$WORK/haproxy.log" && { down=1; break; }; sleep 0.05; done
kill -CONT "$(cat "$WORK/n3.pid")" # before any fail: a stopped node would not end
[ $down = 1 ] || fail "HAProxy kept a stopped node in rotation for 10 s: $(cat "$WORK/haproxy.log")"
wait_line "$WORK/haproxy.log" "Server nodes/n3 is UP" 10
[ "$(curl -s "http://127.0.0.1:${apis[0]}/health")" = '{"status": "ok"}' ] || fail "GET /health without the token: $(curl -s "http://127.0.0.1:${apis[0]}/health")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${apis[0]}/health")" = 405 ] || fail "POST /health was not 405"
ok "a stopped node is out of HAProxy's rotation within seconds (GET /health), back when it runs"

# A second node given node A's --data is refused before it reaches the
# database: running, it swept A's uploads and fetches at its start (each
# node's --data is its own; before, only a SQLite fleet's was locked).
# Each node marks its --data as a node's: a start without --db refuses it
# even before its first image (test_fleet_ops).
[ -f "$WORK/n1/tcpota.node" ] || fail "node A's --data holds no tcpota.node: $(ls -A "$WORK/n1")"
touch "$WORK/n1/images/.fetch-inflight"
rc=0
"$TCPOTA" serve --db "$PG_CONNINFO" --data "$WORK/n1" --listen 127.0.0.1:0 --api off \
  --no-progress < /dev/null > "$WORK/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a second node on node A's --data started"
grep -q "$WORK/n1 is in use by another tcpota serve (pid $(cat "$WORK/n1.pid")); stop it or use another --data" \
  "$WORK/second.log" || fail "second node on A's --data: $(cat "$WORK/second.log")"
[ -e "$WORK/n1/images/.fetch-inflight" ] || fail "a second node on A's --data removed A's fetch"
# Without --db too: in use, not "its database was lost; restore tcpota.db".
rc=0
"$TCPOTA" serve --data "$WORK/n1" --listen 127.0.0.1:0 --api off --no-progress < /dev/null \
  > "$WORK/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "not starting: $WORK/n1 is in use by another tcpota serve (pid $(cat "$WORK/n1.pid")); stop it or use another --data" \
  "$WORK/second.log" && ! grep -q 'restore' "$WORK/second.log" || fail "a server without --db on A's --data: $(cat "$WORK/second.log")"
rm -f "$WORK/n1/images/.fetch-inflight"
ok "a second node on a node's --data is refused, naming the node that holds it; nothing of it swept"

# Two other images uploaded as one version through two nodes at the same
# moment: each node's API checked the version against what was stored
# before either added, and both were stored (the version then ambiguous to
# rollout create). The store checks again inside the add, adds of one
# model taking turns across nodes: one is stored, the other gets 409. The
# database's default isolation made REPEATABLE READ (the nodes connect
# again): a node's transactions are READ COMMITTED all the same, or the
# check behind the lock would not see what the other node committed.
pg_sql "$WORK/pg" "DO \$\$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), 'repeatable read'); END \$\$" > /dev/null ||
  fail "cannot set the database's default isolation"
pg_sql "$WORK/pg" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" > /dev/null
for n in 1 2; do
  for ((i = 0; i < 50; i++)); do api "$n" image list > /dev/null 2>&1 && break; sleep 0.2; done
done
n=$(pg_sql "$WORK/pg" "SELECT 'nodes=' || count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND current_setting('default_transaction_isolation') = 'repeatable read'" | grep -o 'nodes=[0-9]*')
[ "${n#nodes=}" -ge 2 ] || fail "the nodes did not connect again under REPEATABLE READ ($n)"
for k in 1 2 3; do
  make_image "$WORK/race-a$k" 300000
  make_image "$WORK/race-b$k" 300000
  api 1 image add --version "6.$k.0" --model esp32 "$WORK/race-a$k" > "$WORK/race-a$k.out" 2>&1 &
  pa=$!
  api 2 image add --version "6.$k.0" --model esp32 "$WORK/race-b$k" > "$WORK/race-b$k.out" 2>&1 &
  pb=$!
  ra=0 rb=0
  wait "$pa" || ra=$?
  wait "$pb" || rb=$?
  n=$(api 3 image list --json | jq_py "sum(1 for i in j['images'] if i['version'] == '6.$k.0')")
  [ "$n" = 1 ] || fail "round $k: $n images stored as version 6.$k.0 (exits $ra, $rb): $(cat "$WORK/race-a$k.out" "$WORK/race-b$k.out")"
  [ $((ra == 0 ? 1 : 0)) -ne $((rb == 0 ? 1 : 0)) ] || fail "round $k: exits $ra and $rb, not one success"
  grep -q "model esp32 has version 6.$k.0 already" "$WORK/race-a$k.out" "$WORK/race-b$k.out" ||
    fail "round $k: the refused upload did not say why: $(cat "$WORK/race-a$k.out" "$WORK/race-b$k.out")"
done
ok "two other images uploaded as one version through two nodes at once: one stored, the other refused (3 rounds)"

# Two nodes at once: a rollout create waits inside its transaction (its
# rollout's row written, not committed: a session of the test holds the
# waves' table) while another node creates a rollout of the same model, or
# removes the image. Without the store's locks on the model and the image,
# both creates stayed active, neither superseded (cancelling the newer one
# then brought the older back), and the removal succeeded, leaving an
# active rollout of a removed image (a trial, 3 of 3 and 6 of 6). Each
# step waits for what pg_stat_activity shows, not for a time.
hold_waves() { hold_table rollout_waves Exclusive; }
release_waves() { release_table; }
for k in 1 2 3; do
  make_image "$WORK/zz$k" $((1000 + k))
  api 1 image add --version "1.0.$k" --model "zz$((k / 3))" "$WORK/zz$k" > /dev/null 2>&1 || fail "image add zz$k failed"
done
hold_waves
api 1 rollout create --image 1.0.1 --model zz0 > "$WORK/ro1.out" 2>&1 &
p1=$!
wait_pg "$LOCKWAIT query LIKE 'INSERT INTO rollout_waves%'" 1 "node 1's create did not come to wait on the waves' table"
api 2 rollout create --image 1.0.2 --model zz0 > "$WORK/ro2.out" 2>&1 &
p2=$!
# Node 2's create waits too: on the model's lock (or, without it, on the
# waves' table as well).
wait_pg "$LOCKWAIT (query LIKE '%pg_advisory_xact_lock%' OR query LIKE 'INSERT INTO rollout_waves%')" 2 \
  "node 2's create did not come to wait"
release_waves
wait "$p1" || fail "the first create failed: $(cat "$WORK/ro1.out")"
wait "$p2" || fail "the second create failed: $(cat "$WORK/ro2.out")"
n=$(api 3 rollout list --json | jq_py "sum(1 for r in j['rollouts'] if r['model'] == 'zz0' and not r['superseded'])")
[ "$n" = 1 ] || fail "$n rollouts of model zz0 not superseded after two creates at once: $(api 3 rollout list)"
hold_waves
api 1 rollout create --image 1.0.3 --model zz1 > "$WORK/ro3.out" 2>&1 &
p1=$!
wait_pg "$LOCKWAIT query LIKE 'INSERT INTO rollout_waves%'" 1 "node 1's create did not come to wait on the waves' table"
api 2 image rm 1.0.3 > "$WORK/rm3.out" 2>&1 &
p2=$!
# The removal waits on the image's lock (without it, it ends at once).
for ((i = 0; i < 200; i++)); do
  [ "$(pgq "$LOCKWAIT query LIKE '%pg_advisory_xact_lock%'")" -ge 1 ] 2> /dev/null && break
  kill -0 "$p2" 2> /dev/null || break
  sleep 0.05
done
release_waves
wait "$p1" || fail "the create beside a removal failed: $(cat "$WORK/ro3.out")"
rc=0; wait "$p2" || rc=$?
[ $rc -eq 1 ] && grep -q "is used by rollout" "$WORK/rm3.out" ||
  fail "an image removed while another node created a rollout of it (exit $rc): $(cat "$WORK/rm3.out")"
ok "two creates of one model at once: the later supersedes the earlier; an image rm beside a create of it is refused"

# Without a SIGHUP: node C, restarted (last: HAProxy knows its old ports) with --secrets-reread 2, reads every
# secret again every 2 s (give or take a tenth) and drops one deleted
# behind its back; node B (the default, 5 minutes) still holds it.
kill -TERM "$(cat "$WORK/n3.pid")"
wait "$(cat "$WORK/n3.pid")" || fail "node C did not stop cleanly"
cluster_node "$WORK" 3 --secrets-reread 2 || fail "node C did not start again"
PIDS+=("$NODE_PID")
apis[2]=$NODE_API
api 1 device secret sec-6 --out "$WORK/sec6" > /dev/null 2>&1 || fail "device secret sec-6 failed"
for i in 2 3; do wait_line "$WORK/n$i.log" '\[sec-6 -\] device secret set through another node' 5; done
pg_sql "$WORK/pg" "DELETE FROM secrets WHERE device_id = 'sec-6'" > /dev/null || fail "cannot delete sec-6's secret"
wait_line "$WORK/n3.log" '\[sec-6 -\] device secret dropped: the database has none for it' 5
grep -q '\[sec-6 -\] device secret dropped' "$WORK/n2.log" && fail "node B (5 minutes) dropped sec-6's secret already"
code=$(ota_code 3 sec-6)
[ "$code" = 200 ] || fail "node C answered sec-6's download with $code after its full read"
ok "--secrets-reread 2: a node reads every secret again on its own and drops one the database lacks"

# SIGHUP to a node with TLS reads the secrets again and reloads its
# certificate too (a mutation review: a SIGHUP that did the one and not
# the other passed every test). Node C again, with TLS on its device port.
kill -TERM "$(cat "$WORK/n3.pid")"
wait "$(cat "$WORK/n3.pid")" || fail "node C did not stop cleanly (TLS)"
(cd "$WORK" && server_cert)
cluster_node "$WORK" 3 --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key" || fail "node C did not start with TLS"
PIDS+=("$NODE_PID")
kill -HUP "$NODE_PID"
wait_line "$WORK/n3.log" "SIGHUP: reloaded the TLS certificate" 5
wait_line "$WORK/n3.log" "SIGHUP: reading every device secret again from the database" 5
ok "SIGHUP to a PostgreSQL node with TLS: its secrets read again and its certificate reloaded"

stop_pg_cluster
ok "every node stopped cleanly"
