#!/usr/bin/env bash
# A fleet server whose database fails answers a check-in with ERROR "busy"
# and RETRY_AFTER 30 s. The device waits those 30 s, and says the server
# asked for them; before, it retried after 200 ms, 308 ms, ... and gave up
# after 20 attempts in about a minute. The database fails here because
# another process holds its write lock (as a stuck backup would).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

start_fleet
python3 - "$DATA/tcpota.db" > "$WORK/lock.out" <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
PY
LOCK_PID=$!
PIDS+=("$LOCK_PID")
wait_line "$WORK/lock.out" '^locked$'

"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/dev" --id dev-1 --max-attempts 3 \
  2> "$WORK/dev.log" &
DEV_PID=$!
PIDS+=("$DEV_PID")
wait_line "$WORK/server.log" 'store error.*the device is told to try again in 30 s'
wait_line "$WORK/dev.log" 'busy, retry later: .*; retrying in 30 s \(the server asked for 30 s\)'
# Still inside the 30 s: no second connection, no millisecond backoff.
sleep 1
kill -TERM "$DEV_PID"
rc=0
wait "$DEV_PID" || rc=$?
[ $rc -eq 143 ] || fail "device exited $rc on SIGTERM during the server's wait, expected 143"
! grep -qE 'retrying in [0-9]+ ms' "$WORK/dev.log" || fail "the device ignored RETRY_AFTER: $(cat "$WORK/dev.log")"
hellos=$(grep -c '\[dev-1 .*hello' "$WORK/server.log" || true)
[ "$hellos" -eq 1 ] || fail "the device checked in $hellos times within the server's 30 s"
ok "a busy server's RETRY_AFTER 30 s: waited, and said to be the server's"

kill "$LOCK_PID"
wait "$LOCK_PID" 2>/dev/null || true
stop_fleet
