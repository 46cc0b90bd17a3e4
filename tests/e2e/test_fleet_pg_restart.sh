#!/usr/bin/env bash
# PostgreSQL restarted during a rollout: devices slowed down by the project's
# proxy are in the middle of their transfers behind HAProxy when PostgreSQL
# stops (fast shutdown). The nodes keep serving those transfers from their
# image cache, keep the steps they must write, refuse what needs the
# database at once (the API answers 503 naming it, a check-in is told to
# come back, GET /health answers 503 so that HAProxy sends new connections
# nowhere: a device keeps its report and comes back), tell the operator,
# reconnect when PostgreSQL is back, and lose nothing: every device ends
# byte-exact, and the database holds every device's verified step and
# confirmed report.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
source "$(dirname "$0")/fleet_pg_lib.sh"

N=$(scaled 12 6)
start_pg_cluster
make_image "$WORK/img" 262144
api 1 image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
api 1 rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
start_proxy proxy "$HA_PORT" --rate 60000 --quiet
slow_devices r "$N"

# count REGEX: lines matching REGEX in the nodes' logs.
count() { cat "$WORK"/n[123].log | grep -cE "$1" || true; }
# wait_count REGEX N SECONDS: until N such lines.
wait_count() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    [ "$(count "$1")" -ge "$2" ] && return 0
    sleep 0.05
  done
  fail "only $(count "$1") of $2 lines /$1/ in the nodes' logs after $3 s"
}

# deferred API_PORT PROTOCOL WHY: the node's count of check-ins it could
# not decide for WHY (GET /metrics, tcpota_checkins_deferred_total).
deferred() {
  curl -s -m 5 "http://127.0.0.1:$1/metrics" |
    sed -nE "s/^tcpota_checkins_deferred_total\{protocol=\"$2\",why=\"$3\"\} ([0-9]+)$/\1/p"
}

wait_count 'decision: offer 2.0.0' "$N" 20
pg_stop "$WORK/pg" || fail "pg_ctl stop failed"
running=$((N - $(count 'verified by the device')))
[ "$running" -gt 0 ] || fail "every transfer ended before the database stopped"
ok "PostgreSQL stopped with $running of $N transfers running"

# While it is down: the transfers go on to their end, the API says what is
# wrong, and the devices' reports are not acknowledged.
wait_count 'verified by the device' "$N" 30
code=$(curl -s -o "$WORK/api.out" -w '%{http_code}' -H "Authorization: Bearer $TCPOTA_TOKEN" \
  "http://127.0.0.1:${apis[0]}/v1/devices/r-1")
[ "$code" = 503 ] || fail "the API answered $code while the database was down: $(cat "$WORK/api.out")"
grep -q 'database' "$WORK/api.out" || fail "the 503 does not name the database: $(cat "$WORK/api.out")"
# A device that checks in meanwhile without a report: told to come back, at once.
timeout 10 "$TCPOTA" device --server "127.0.0.1:${ports[0]}" --flash "$WORK/late" --id late-1 \
  --model esp32 --factory-version 1.0.0 --slot-size 1048576 --progress none 2> "$WORK/late-1.log" ||
  fail "a check-in while the database was down failed or hung"
grep -q '\[late-1 .*decision: no update: the database is unreachable; asks again in' "$WORK/n1.log" ||
  fail "node 1 did not tell late-1 to come back"
grep -q 'late-1: no update now, running 1.0.0: the server cannot tell now whether one applies (its database does not answer); the server asks to check again in' "$WORK/late-1.log" ||
  fail "late-1 did not say it was told to come back: $(cat "$WORK/late-1.log")"
n=$(deferred "${apis[0]}" v1 database_unreachable)
[ "${n:-0}" -ge 1 ] || fail "node 1's /metrics counted '$n' check-ins deferred while the database was unreachable"
# Each node's GET /health answers 503: HAProxy sends none of them a new
# connection (the devices' reports wait on the devices, which come back).
for i in 1 2 3; do
  code=$(curl -s -m 5 -o "$WORK/health.json" -w '%{http_code}' "http://127.0.0.1:${apis[$((i - 1))]}/health" || true)
  [ "$code" = 503 ] && grep -q "unreachable from this node" "$WORK/health.json" ||
    fail "node $i's /health while the database was down: $code $(cat "$WORK/health.json")"
done
# A SIGHUP meanwhile (re-read every secret): said once that it waits, not
# every second, and done once the database answers.
kill -HUP "$(cat "$WORK/n2.pid")"
wait_line "$WORK/n2.log" "SIGHUP: the database cannot be reached now; every device secret is read again as soon as it can be \(nothing to do\)" 5
sleep 2.5
n=$(grep -c 'SIGHUP: the database cannot be reached now' "$WORK/n2.log")
[ "$n" = 1 ] || fail "node 2 said $n times that it could not read the secrets again"
grep -q 'SIGHUP: reading every device secret again' "$WORK/n2.log" &&
  fail "node 2 said it reads the secrets, then that it cannot: $(grep SIGHUP "$WORK/n2.log")"
ok "database down: every transfer ended, the API answers 503, a check-in gets NO_UPDATE (counted deferred in /metrics), /health answers 503, a SIGHUP's secret read said once"

pg_start "$WORK/pg" || fail "PostgreSQL did not start again"
wait_line "$WORK/n2.log" "read the [0-9]+ device secrets again from the database: 0 changed here" 20
ok "PostgreSQL started again; node 2's secret read of the SIGHUP done"
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
check_devices "$WORK/img" $(seq -f "$WORK/d%g" 1 "$N")

# Nothing lost: each device's verified step (kept by its node while the
# database was down) and its confirmed report are in the database.
for i in $(seq 1 "$N"); do
  show=$(api 2 device show --json "r-$i") || fail "device show r-$i failed"
  [ "$(echo "$show" | jq_py 'j["state"]')" = updated ] || fail "r-$i is not updated: $show"
  [ "$(echo "$show" | jq_py '"verified" in [h["state"] for h in j["history"]]')" = true ] ||
    fail "r-$i has no verified step in its history: $show"
done
updated=$(api 3 rollout show 1 --json | jq_py 'j["totals"]["updated"]')
[ "$updated" = "$N" ] || fail "the rollout counts $updated updated, not $N"
told=0
for i in 1 2 3; do
  grep -q 'store: the database is unreachable' "$WORK/n$i.log" || continue
  told=$((told + 1))
  [ "$(grep -c 'store: the database is unreachable' "$WORK/n$i.log")" -eq 1 ] ||
    fail "node $i told the outage more than once"
  grep -q 'store: the database is reachable again' "$WORK/n$i.log" ||
    fail "node $i told the outage but not the recovery"
done
[ "$told" -ge 1 ] || fail "no node told the operator that the database was unreachable"
ok "$N devices byte-exact and updated; their steps and reports all in the database; $told nodes told the outage and the recovery"

# The nodes stopped while the database is away again, in the middle of
# transfers: the steps they keep are lost, said in one line per node (how
# many), not one line per kept batch before it (four identical lines
# 'recording 1 step of devices failed: not written ...' before).
rm -rf "$WORK"/d[0-9]*
slow_devices s 3
wait_count '\[s-[0-9]+ .*decision: offer 2.0.0' 3 20
pg_stop "$WORK/pg" || fail "pg_ctl stop failed (again)"
[ "$(count '\[s-[0-9]+ .*verified by the device')" -lt 3 ] || fail "every transfer ended before the database stopped (again)"
sleep 1
stop_pg_cluster
[ "$(count 'kept for the database are lost')" -ge 1 ] || fail "no node said it lost the steps it kept: $(grep -h 'store:' "$WORK"/n[123].log | tail -5)"
for i in 1 2 3; do
  [ "$(grep -c 'kept for the database are lost' "$WORK/n$i.log")" -le 1 ] || fail "node $i said its lost steps more than once"
done
[ "$(count 'store: recording .* failed: not written')" -eq 0 ] ||
  fail "a line per lost batch besides the summary: $(grep -h 'failed: not written' "$WORK"/n[123].log | head -3)"
ok "nodes stopped while the database is away: one line each for the steps they lose"

# The role's password changed while a node runs (the DBA's rotation): the
# node, cut off by the server, is told the new password is wanted; once
# PGPASSFILE has it, the node reconnects by itself. Its reconnection reused
# the password libpq read at the first connect (PQreset), so it stayed
# "unreachable" until a restart, which lost the steps it kept.
pg_start "$WORK/pg" || fail "cannot start PostgreSQL again"
pg_sql "$WORK/pg" "CREATE ROLE tpw LOGIN PASSWORD 'one'" || fail "create role failed"
pg_sql "$WORK/pg" "CREATE DATABASE tpwdb OWNER tpw" || fail "create database failed"
hba=$(ls "$WORK"/pg/data/pg_hba.conf)
{ echo "local tpwdb tpw scram-sha-256"; cat "$hba"; } > "$WORK/hba.new" && cat "$WORK/hba.new" > "$hba"
pg_sql "$WORK/pg" "SELECT pg_reload_conf()" > /dev/null || fail "reload failed"
printf '*:*:tpwdb:tpw:one\n' > "$WORK/pgpass"; chmod 600 "$WORK/pgpass"
: > "$WORK/pw.log"
PGPASSFILE="$WORK/pgpass" "$TCPOTA" serve --db "host=$WORK/pg/sock port=$PG_PORT user=tpw dbname=tpwdb connect_timeout=2" \
  --data "$WORK/pw" --listen 127.0.0.1:0 --api 127.0.0.1:0 --db-timeout 16 2> "$WORK/pw.log" &
pw=$!
PIDS+=("$pw")
wait_line "$WORK/pw.log" 'listening on'
pwapi=$(sed -nE 's/.*API on 127\.0\.0\.1:([0-9]+).*/\1/p' "$WORK/pw.log" | head -1)
pwport=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/pw.log" | head -1)
[ -n "$pwapi" ] || fail "no API port in the node's log"
health() { curl -s -m 5 -o "$WORK/health.json" -w '%{http_code}' "http://127.0.0.1:$pwapi/health" || true; }
pg_sql "$WORK/pg" "ALTER ROLE tpw PASSWORD 'two'" || fail "alter role failed"
pg_sql "$WORK/pg" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'tpw'" > /dev/null
# Its secret sync asks the database every second: it finds the connection gone.
wait_line "$WORK/pw.log" 'store: the database is unreachable \(.*password authentication failed.*the password given was refused: check it where it is given' 10
# This node alone has lost it: GET /health takes it out of a balancer's
# rotation (a trial: 200 while every check-in here was told to come back).
code=$(health)
[ "$code" = 503 ] && grep -q "the database is unreachable from this node" "$WORK/health.json" ||
  fail "/health while this node cannot reach its database: $code $(cat "$WORK/health.json")"
printf '*:*:tpwdb:tpw:two\n' > "$WORK/pgpass"
wait_line "$WORK/pw.log" 'store: the database is reachable again' 10
[ "$(health)" = 200 ] || fail "/health once the database is back: $(cat "$WORK/health.json")"
ok "the role's password changed: the node says so, /health answers 503 meanwhile, and it reconnects once PGPASSFILE has the new one"

# The database turned read-only (a failover to a standby; here its
# default): the node's new connection is refused as one that takes no
# writes, an outage said with what to do, not every write failing on a
# connection that looks healthy (a trial).
pg_sql "$WORK/pg" "ALTER DATABASE tpwdb SET default_transaction_read_only = on" || fail "alter database failed"
pg_sql "$WORK/pg" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'tpw'" > /dev/null
wait_line "$WORK/pw.log" 'store: the database is unreachable \(.*session is read-only.*the database takes no writes .*target_session_attrs=read-write' 10
[ "$(health)" = 503 ] || fail "/health while the database takes no writes: $(cat "$WORK/health.json")"
pg_sql "$WORK/pg" "ALTER DATABASE tpwdb RESET default_transaction_read_only" || fail "alter database failed"
for ((i = 0; i < 200; i++)); do # 10 s for the second such line (the first: the password's)
  [ "$(grep -c 'store: the database is reachable again' "$WORK/pw.log")" -ge 2 ] && break
  sleep 0.05
done
[ "$(grep -c 'store: the database is reachable again' "$WORK/pw.log")" -ge 2 ] ||
  fail "the node did not reconnect once the database took writes again: $(tail -3 "$WORK/pw.log")"
[ "$(health)" = 200 ] || fail "/health once the database takes writes again: $(cat "$WORK/health.json")"
ok "a database that takes no writes after a reconnect is an outage, said with what to do"

# PostgreSQL hung (its processes stopped; the kernel still answers TCP and
# the socket): nothing failed, nothing was said, and GET /health stayed 200,
# so a balancer kept sending devices to a node whose check-ins all waited.
# Now, past STORE_STUCK_S with a request waiting (the secret sync asks every
# second), the node says so and /health answers 503; back, 200 again.
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pwapi/health")" = 200 ] || fail "/health before the hang"
pgpids="$(head -1 "$WORK/pg/data/postmaster.pid") $(pgrep -P "$(head -1 "$WORK/pg/data/postmaster.pid")" | tr '\n' ' ')"
kill -STOP $pgpids
# A check-in queued before the hang is said waits no longer than that: told
# to check again once it is said (it waited its device's 30 s: a trial).
te0=$(date +%s%N)
timeout 25 "$TCPOTA" device --server "127.0.0.1:$pwport" --flash "$WORK/pwearly" --id pw-early \
  --max-attempts 1 --progress none 2> "$WORK/pwearly.log" &
EARLY=$!
PIDS+=("$EARLY")
# ...and so is an HTTP download queued then: 503 with Retry-After.
curl -s -m 25 -D "$WORK/pwearly-http.h" -o "$WORK/pwearly-http.b" -w '%{http_code}' \
  -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$pwapi/ota/esp32?device=pw-early-http" \
  > "$WORK/pwearly-http.code" 2> /dev/null &
EARLYHTTP=$!
PIDS+=("$EARLYHTTP")
# ...and so is an API request that only reads: 503 (it waited for
# --db-timeout, or for the database).
curl -s -m 25 -o "$WORK/pwearly-api.b" -w '%{http_code}' -H "Authorization: Bearer $(cat "$WORK/pw/api.token")" \
  "http://127.0.0.1:$pwapi/v1/devices?limit=5" > "$WORK/pwearly-api.code" 2> /dev/null &
EARLYAPI=$!
PIDS+=("$EARLYAPI")
# A write waits for its outcome, which is the database's, not a 503 that
# could not say whether it was done.
curl -s -m 40 -o "$WORK/pwearly-w.b" -w '%{http_code}' -H "Authorization: Bearer $(cat "$WORK/pw/api.token")" \
  -X POST "http://127.0.0.1:$pwapi/v1/devices/pw-nobody/retry" > "$WORK/pwearly-w.code" 2> /dev/null &
EARLYW=$!
PIDS+=("$EARLYW")
said=0
for ((i = 0; i < 400; i++)); do # 20 s
  grep -qE 'store: the database has answered nothing for [0-9]+ s while [0-9]+ requests? waits? ' "$WORK/pw.log" && { said=1; break; }
  sleep 0.05
done
code=$(curl -s -m 5 -o "$WORK/health.json" -w '%{http_code}' "http://127.0.0.1:$pwapi/health" || true)
wait "$EARLY" || true
te1=$(date +%s%N)
wait "$EARLYHTTP" || true
te2=$(date +%s%N)
wait "$EARLYAPI" || true
te3=$(date +%s%N)
# Known hung, the node queues nothing more behind it: a check-in without a
# report is told to check again, an API request and an HTTP download
# refused, each at once (they waited their 30 s, then blamed the port and
# the API: a trial).
t0=$(date +%s%N)
timeout 8 "$TCPOTA" device --server "127.0.0.1:$pwport" --flash "$WORK/pwdev" --id pw-1 --max-attempts 1 \
  --progress none 2> "$WORK/pwdev.log" || true
t1=$(date +%s%N)
timeout 8 "$TCPOTA" image list --api "http://127.0.0.1:$pwapi" --data "$WORK/pw" > "$WORK/pwapi.out" 2>&1 || true
t2=$(date +%s%N)
hcode=$(curl -s -m 8 -D "$WORK/pwota.h" -o "$WORK/pwota.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
  "http://127.0.0.1:$pwapi/ota/esp32?device=pw-http" || true)
t3=$(date +%s%N)
legacy=$(python3 - "$pwport" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=8)
s.sendall(b"req0\r\n\r\n")
try:
    print(len(s.recv(100)))  # 0: closed
except socket.timeout:
    print("timeout")
PY
)
t4=$(date +%s%N)
# ...and none of them was queued behind it: the requests waiting are those
# of before (a mutation review: a check-in, a legacy one or a download
# queued, and then answered by the sweep, passed the timing checks above
# while each left a request waiting for the whole hang).
curl -s -m 5 -o "$WORK/health1b.json" "http://127.0.0.1:$pwapi/health" || true
# A check-in carrying a report waits for the database, which alone
# acknowledges the report: not told "no update" (the device would then
# forget it, unrecorded), neither at once nor by the sweep (a mutation
# review: the sweep's guard was untested). A device made against a dead
# port, given a report of a confirmed update by hand (nvs_edit).
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/pwrep" --id pw-rep --max-attempts 1 \
  --backoff-min-ms 1 --progress none 2> "$WORK/pwrep0.log" || rc=$?
[ $rc -eq 1 ] || { kill -CONT $pgpids; fail "making pw-rep against a dead port exited $rc: $(cat "$WORK/pwrep0.log")"; }
report=$(python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
from frames import crc32c
rec = bytes([1]) + bytes(range(32)) + (1).to_bytes(2, "little")  # REC_VERSION, id, CONFIRMED
print((rec + crc32c(rec).to_bytes(4, "little")).hex())' "$E2E")
nvs_edit "$WORK/pwrep" "tcpota.report=$report"
nvs_has "$WORK/pwrep" tcpota.report || { kill -CONT $pgpids; fail "the hand-made report is not in pw-rep's NVS"; }
timeout 40 "$TCPOTA" device --server "127.0.0.1:$pwport" --flash "$WORK/pwrep" --id pw-rep --max-attempts 1 \
  --timeout-ms 30000 --progress none 2> "$WORK/pwrep.log" &
REP=$!
PIDS+=("$REP")
# Past --db-timeout (16 s here: the checks above run between 10 s, when
# the hang is said, and the cut) the connection is dropped: the statement
# the cut failed is no answer (it was taken for one: "the database answers
# again", and 200, while it still hung), nor are the requests an outage
# fails once the new connection's connect_timeout (2 s) ran out.
wait_line "$WORK/pw.log" 'store: the database has answered nothing for [0-9]+ s \(--db-timeout 16\): its connection is dropped' 10
sleep 3 # the sweeps after the cut, and after the outage's start
code2=$(curl -s -m 5 -o "$WORK/health2.json" -w '%{http_code}' "http://127.0.0.1:$pwapi/health" || true)
cut_lines=$(wc -l < "$WORK/pw.log")
wait "$REP" || true
kill -CONT $pgpids # before any failure: a stopped PostgreSQL would hold up the test's end
[ "$said" = 1 ] || fail "a hung database was not said: $(tail -3 "$WORK/pw.log")"
grep -q 'the server cannot tell now whether one applies (its database does not answer); the server asks to check again' "$WORK/pwearly.log" &&
  [ $(((te1 - te0) / 1000000)) -lt 20000 ] ||
  fail "a check-in queued before the hang was said was not told to check again ($(((te1 - te0) / 1000000)) ms): $(tail -2 "$WORK/pwearly.log")"
grep -q '\[pw-early [^]]*\] decision: no update: the database has answered nothing for [0-9]* s; asks again in' "$WORK/pw.log" ||
  fail "no line for the queued check-in told to come back: $(grep pw-early "$WORK/pw.log" | tail -2)"
[ "$(cat "$WORK/pwearly-http.code")" = 503 ] && grep -qi '^Retry-After: 10' "$WORK/pwearly-http.h" &&
  grep -q "database has answered nothing for" "$WORK/pwearly-http.b" && [ $(((te2 - te0) / 1000000)) -lt 20000 ] ||
  fail "an HTTP download queued before the hang was said: $(cat "$WORK/pwearly-http.code") after $(((te2 - te0) / 1000000)) ms: $(cat "$WORK/pwearly-http.h" "$WORK/pwearly-http.b")"
wait "$EARLYW" || true
grep -q 'only read' "$WORK/pwearly-w.b" && fail "a write queued before the hang was answered as a read: $(cat "$WORK/pwearly-w.b")"
[ "$(cat "$WORK/pwearly-api.code")" = 503 ] && [ $(((te3 - te0) / 1000000)) -lt 20000 ] &&
  grep -q "the database has answered nothing for [0-9]* s (hung, or busy with a long request or a lock); this request only read: try again later, or through another node" "$WORK/pwearly-api.b" ||
  fail "an API read queued before the hang was said: $(cat "$WORK/pwearly-api.code") after $(((te3 - te0) / 1000000)) ms: $(cat "$WORK/pwearly-api.b")"
[ "$code" = 503 ] && grep -q "the database has answered nothing for" "$WORK/health.json" ||
  fail "/health while the database hung: $code $(cat "$WORK/health.json")"
grep -q 'the server cannot tell now whether one applies (its database does not answer); the server asks to check again' "$WORK/pwdev.log" &&
  [ $(((t1 - t0) / 1000000)) -lt 2500 ] ||
  fail "a check-in while the database hung was not told at once to check again ($(((t1 - t0) / 1000000)) ms): $(tail -2 "$WORK/pwdev.log")"
# Said in its hello's line (a trial: "decision: ..." and then "hello ...:
# not offered: offered").
grep -qE '\[pw-1 [^]]*\] hello model=[^ ]* version=[^:]*: no update: the database has answered nothing for [0-9]+ s; asks again in [0-9]+ s' "$WORK/pw.log" &&
  ! grep -q '\[pw-1 .*not offered: offered' "$WORK/pw.log" ||
  fail "the log of a check-in while the database hung: $(grep '\[pw-1 ' "$WORK/pw.log")"
grep -q "the database has answered nothing for [0-9]* s (hung, or busy with a long request or a lock); nothing was done: try again later, or through another node" "$WORK/pwapi.out" &&
  [ $(((t2 - t1) / 1000000)) -lt 2500 ] ||
  fail "an API request while the database hung was not refused at once ($(((t2 - t1) / 1000000)) ms): $(cat "$WORK/pwapi.out")"
[ "$hcode" = 503 ] && grep -qi '^Retry-After: 10' "$WORK/pwota.h" &&
  grep -q "database has answered nothing for" "$WORK/pwota.b" && [ $(((t3 - t2) / 1000000)) -lt 2500 ] ||
  fail "an HTTP download while the database hung was not refused at once ($(((t3 - t2) / 1000000)) ms): $hcode $(cat "$WORK/pwota.h" "$WORK/pwota.b")"
[ "$legacy" = 0 ] && [ $(((t4 - t3) / 1000000)) -lt 2500 ] &&
  grep -q '\[legacy-127\.0\.0\.1 127\.0\.0\.1:[0-9]*\] decision: no update: the database has answered nothing for [0-9]* s; closing (the device asks again)' "$WORK/pw.log" ||
  fail "a legacy device while the database hung was not closed at once ($legacy, $(((t4 - t3) / 1000000)) ms): $(grep legacy "$WORK/pw.log" | tail -2)"
[ "$code2" = 503 ] || fail "/health after the hung database's connection was dropped: $code2 $(cat "$WORK/health2.json")"
w1=$(sed -nE 's/.*"waiting": ([0-9]+)\}.*/\1/p' "$WORK/health.json")
w2=$(sed -nE 's/.*"waiting": ([0-9]+)\}.*/\1/p' "$WORK/health1b.json")
[ -n "$w1" ] && [ "$w1" = "$w2" ] ||
  fail "requests waiting on the hung database went from '$w1' to '$w2' across a check-in, an API request, a download and a legacy check-in: $(cat "$WORK/health.json" "$WORK/health1b.json")"
grep -q 'cannot tell now whether one applies\|server received the report' "$WORK/pwrep.log" &&
  fail "a check-in with a report was answered while the database hung: $(tail -3 "$WORK/pwrep.log")"
nvs_has "$WORK/pwrep" tcpota.report ||
  fail "a device lost its report to a hung database: $(tail -3 "$WORK/pwrep.log")"
for proto in v1 http legacy; do
  n=$(deferred "$pwapi" $proto database_hung)
  [ "${n:-0}" -ge 1 ] || fail "/metrics counted '$n' $proto check-ins deferred while the database hung"
done
! head -n "$cut_lines" "$WORK/pw.log" | grep -q 'store: the database answers again' ||
  fail "the node said the hung database answers again: $(grep 'store:' "$WORK/pw.log" | tail -4)"
wait_line "$WORK/pw.log" 'store: the database answers again' 10
# The outage that began once the new connection failed is said from the
# last answer, over 16 s before (--db-timeout), not from that connect.
back=$(tail -n "+$cut_lines" "$WORK/pw.log" | sed -nE 's/.*store: the database is reachable again after ([0-9]+)\.[0-9] s.*/\1/p' | tail -1)
[ -n "$back" ] && [ "$back" -ge 16 ] ||
  fail "the hang's outage was said to last '$back' s: $(tail -n "+$cut_lines" "$WORK/pw.log" | grep 'store:' | tail -3)"
# The secret sync's tick finds its ask of the second before still waiting
# and asks nothing more: one request waits, not one per second of the hang
# (ten and more here), which would all run at once when it answers.
waiting=$(sed -nE 's/.*answered nothing for [0-9]+ s while ([0-9]+) requests? waits? .*/\1/p' "$WORK/pw.log" | head -1)
# (And the early check-in's, download's, API read's and write's, whose
# requests stay queued.)
[ "$waiting" -ge 1 ] && [ "$waiting" -le 5 ] || fail "$waiting requests waited on the hung database, not the one secret sync and the four early ones: $(grep 'answered nothing' "$WORK/pw.log")"
grep -qE '"waiting": [1-5]\}' "$WORK/health.json" || fail "/health did not say the requests waiting: $(cat "$WORK/health.json")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pwapi/health")" = 200 ] || fail "/health after the hang"
kill -TERM "$pw"; wait "$pw" || fail "the node exited $? on SIGTERM"
ok "a hung database: said after 10 s with the $waiting request(s) waiting, a check-in queued before then told to come back then, check-ins (counted deferred in /metrics), the API, HTTP downloads and legacy devices told at once and none of them queued, a check-in with a report kept waiting (the report kept), /health 503 meanwhile (after its connection was dropped too), 200 and said again once it answers"

# Past --db-timeout with the database still hung, the node drops its
# connection: the check-in waiting on it is answered as while the database
# is unreachable, "check again in 10 s" (it waited until the device gave
# up, and the node's requests for ever), the node connects again once the
# database answers, and serves.
# hung_node NAME DB_TIMEOUT [CONNINFO...]: a node of role tpw on $WORK/NAME
# (log $WORK/NAME.log) with that --db-timeout (and more of the connection
# string); then PostgreSQL's processes stopped (hung). Sets NODE (its pid),
# NODE_PORT, PGPIDS (kill -CONT them).
hung_node() {
  : > "$WORK/$1.log"
  PGPASSFILE="$WORK/pgpass" "$TCPOTA" serve --db "host=$WORK/pg/sock port=$PG_PORT user=tpw dbname=tpwdb${3:+ $3}" \
    --db-timeout "$2" --data "$WORK/$1" --listen 127.0.0.1:0 --api 127.0.0.1:0 2> "$WORK/$1.log" &
  NODE=$!
  PIDS+=("$NODE")
  wait_line "$WORK/$1.log" 'listening on'
  NODE_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/$1.log" | head -1)
  NODE_API=$(sed -nE 's/.*API on 127\.0\.0\.1:([0-9]+).*/\1/p' "$WORK/$1.log" | head -1)
  PGPIDS="$(head -1 "$WORK/pg/data/postmaster.pid") $(pgrep -P "$(head -1 "$WORK/pg/data/postmaster.pid")" | tr '\n' ' ')"
  kill -STOP $PGPIDS
}
hung_node dt 3 connect_timeout=2
dt=$NODE dtport=$NODE_PORT dtapi=$NODE_API pgpids=$PGPIDS
rc=0
timeout 25 "$TCPOTA" device --server "127.0.0.1:$dtport" --flash "$WORK/dtdev" --id dt-1 --max-attempts 1 \
  --timeout-ms 60000 --progress none 2> "$WORK/dtdev.log" &
dtdev=$!
# Dropped before STORE_STUCK_S: /health answers 503 from the drop on, while
# a new connection is tried (200 until its connect_timeout ran out: a trial).
wait_line "$WORK/dt.log" 'its connection is dropped' 10
code=$(curl -s -m 3 -o "$WORK/dth.json" -w '%{http_code}' "http://127.0.0.1:$dtapi/health" || true)
wait "$dtdev" || rc=$?
kill -CONT $pgpids # before any failure: a stopped PostgreSQL would hold up the test's end
[ "$code" = 503 ] || fail "/health right after the hung database's connection was dropped: $code $(cat "$WORK/dth.json")"
[ $rc -ne 124 ] || fail "a check-in waited on the hung database for 25 s: $(tail -2 "$WORK/dt.log")"
grep -q 'the server cannot tell now whether one applies (its database does not answer); the server asks to check again' "$WORK/dtdev.log" ||
  fail "the check-in on a hung database was not told to check again: $(tail -2 "$WORK/dtdev.log")"
grep -qE 'store: the database has answered nothing for [0-9]+ s \(--db-timeout 3\): its connection is dropped' "$WORK/dt.log" ||
  fail "the dropped connection was not said: $(grep 'store:' "$WORK/dt.log" | tail -3)"
wait_line "$WORK/dt.log" 'store: the database is reachable again' 30
"$TCPOTA" device --server "127.0.0.1:$dtport" --flash "$WORK/dtdev" --max-attempts 3 --progress none 2> "$WORK/dtdev.log" ||
  fail "a check-in after the database came back failed: $(tail -2 "$WORK/dtdev.log")"
kill -TERM "$dt"; wait "$dt" || fail "the node exited $? on SIGTERM"
ok "past --db-timeout a hung database's connection is dropped: the check-in told to try again, the node back once it answers"

# A stop while the database hangs: the sweep's --db-timeout cut runs no
# more, and the stop waited for ever (a trial: 91 s and counting, past the
# unit's TimeoutStopSec), its device port taking connections that then
# waited 30 s for an answer. Now the port closes first, and the stop cuts
# the connection after --db-timeout (at most 15 s), says so, tries no new
# one, and ends. libpq's default connect_timeout (10 s): a review found each
# retry after the cut waiting it, three of them past the unit's 30 s.
hung_node st 4
st=$NODE stport=$NODE_PORT pgpids=$PGPIDS
"$TCPOTA" device --server "127.0.0.1:$stport" --flash "$WORK/stdev" --id st-1 --max-attempts 1 \
  --timeout-ms 60000 --progress none 2> "$WORK/stdev.log" &
PIDS+=("$!")
sleep 1
t0=$(date +%s)
kill -TERM "$st"
sleep 0.5
refused=$(python3 -c "
import socket
try:
    socket.create_connection(('127.0.0.1', $stport), 2).close(); print('taken')
except ConnectionRefusedError:
    print('refused')" 2>&1)
for ((i = 0; i < 300; i++)); do kill -0 "$st" 2> /dev/null || break; sleep 0.1; done
s=$(( $(date +%s) - t0 ))
still=0; kill -0 "$st" 2> /dev/null && still=1
kill -CONT $pgpids # before any failure: a stopped PostgreSQL would hold up the test's end
[ $still = 0 ] && [ "$s" -le 10 ] || fail "a stop on a hung database took $s s (still running: $still): $(tail -3 "$WORK/st.log")"
[ "$refused" = refused ] || fail "the stopping node's device port: $refused"
grep -q 'store: the database has answered nothing for 4 s while stopping: its connection is dropped, and no new one is tried' "$WORK/st.log" ||
  fail "the stop's cut was not said: $(tail -4 "$WORK/st.log")"
# ... and not contradicted by an outage's "Reconnecting" (a trial).
! grep -q 'Reconnecting every' "$WORK/st.log" || fail "a stop's cut said it reconnects: $(tail -4 "$WORK/st.log")"
ok "a stop while the database hangs: the device port closed at once, the connection cut after --db-timeout, ended in $s s"
