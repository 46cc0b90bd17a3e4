#!/usr/bin/env bash
# A backup restored into a running SQLite fleet's folder (the copy put over
# tcpota.db, its -wal and -shm removed), against docs/operations.md's
# "stop the server first": before, nothing was said, the running server
# went on writing, and its stop checkpointed its own pages into the restored
# file (a trial's cancel, made after the backup, was back after the
# restart). Now the server sees the files changed, says so once, writes
# nothing more (every request fails, saying to restart), and its stop
# leaves the restored database as it was put there; restarted, it serves
# the backup's state. Also a database moved over (mv: another file).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 4096
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
# The backup (SQLite's online backup, as sqlite3's .backup makes it).
backup() {
  python3 - "$DATA/tcpota.db" "$1" <<'PY'
import sqlite3, sys
src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2])
src.backup(dst); dst.close(); src.close()
PY
}
state() { # the rollout's state as the file at $1 holds it
  python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select state from rollouts where id = 1").fetchone()[0])' "$1"
}
backup "$WORK/backup.db" || fail "the backup failed"
"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
want=$(state "$WORK/backup.db")
cp "$WORK/backup.db" "$DATA/tcpota.db"
rm -f "$DATA/tcpota.db-wal" "$DATA/tcpota.db-shm"
# refused_soon OUT: a request fails within a few (the check is made as a
# batch opens, and one may be open still: what it read was read before).
refused_soon() {
  local i
  for i in 1 2 3 4 5; do
    "$TCPOTA" rollout list > "$1" 2>&1 || return 0
    sleep 0.1
  done
  return 1
}
refused_soon "$WORK/after.out" &&
  grep -q "the database was replaced while the server runs (see its log): nothing is read or written in it; restart the server to use it" "$WORK/after.out" ||
  fail "a request after the restore: $(cat "$WORK/after.out")"
wait_line "$WORK/server.log" "store: $DATA/tcpota.db lost its -wal file while the server runs \(a backup restored into its folder\?\): nothing more is read or written in it" 5
[ "$(grep -c 'while the server runs (a backup restored' "$WORK/server.log")" = 1 ] || fail "said more than once: $(grep 'while the server runs' "$WORK/server.log")"
code=$(curl -s -o "$WORK/health.json" -w '%{http_code}' "$TCPOTA_API/health")
[ "$code" = 503 ] && grep -q '"the database file was replaced while the server runs; restart it (its log says why)"' "$WORK/health.json" ||
  fail "/health after the restore: $code $(cat "$WORK/health.json")"
stop_fleet
[ "$(state "$DATA/tcpota.db")" = "$want" ] ||
  fail "the stop wrote into the restored database: rollout 1 is $(state "$DATA/tcpota.db"), the backup's is $want"
start_fleet
"$TCPOTA" rollout show 1 > "$WORK/show.out" 2>&1 || fail "rollout show after the restart: $(cat "$WORK/show.out")"
grep -qi cancel "$WORK/show.out" && fail "the restart serves the cancel made after the backup: $(cat "$WORK/show.out")"
ok "a backup copied into a running fleet's folder: said once, /health 503, nothing more written, the stop leaves it as restored, the restart serves it"

# A database moved over it (another file), the running server's -wal left
# in place: the same, and that -wal, whose pages SQLite would apply to the
# database put there at the next open (a -wal names no database), is moved
# aside at the stop.
backup "$WORK/backup2.db" || fail "the second backup failed"
"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
want=$(state "$WORK/backup2.db")
mv "$WORK/backup2.db" "$DATA/tcpota.db"
refused_soon "$WORK/after2.out" || fail "requests after a database was moved over the running one succeeded: $(cat "$WORK/after2.out")"
wait_line "$WORK/server.log" "store: $DATA/tcpota.db was replaced while the server runs" 5
stop_fleet
grep -q "store: the replaced database's $DATA/tcpota.db-wal moved aside to $DATA/tcpota.db-wal.replaced" "$WORK/server.log" ||
  fail "the running server's -wal was not moved aside: $(grep 'store:' "$WORK/server.log" | tail -3)"
[ "$(state "$DATA/tcpota.db")" = "$want" ] || fail "after the stop, the moved database's rollout 1 is $(state "$DATA/tcpota.db"), not $want"
start_fleet
"$TCPOTA" rollout show 1 > "$WORK/show2.out" 2>&1 || fail "rollout show after the restart: $(cat "$WORK/show2.out")"
grep -qi cancel "$WORK/show2.out" && fail "the restart applied the old -wal (the cancel made after the backup): $(cat "$WORK/show2.out")"
stop_fleet
ok "a database moved over a running fleet's: said, nothing more written, the running server's -wal moved aside, the restart serves it"

# Requests within the batch a read opened just before the restore (a
# batch stays open 200 ms): the files are looked at every 10 ms inside
# one too, so a read 50 ms after the restore is refused, not answered
# from the database replaced (a trial's download was served so), and a
# write after it is not acknowledged.
start_fleet
backup "$WORK/backup3.db" || fail "the third backup failed"
"$TCPOTA" rollout list > /dev/null || fail "rollout list failed"
cp "$WORK/backup3.db" "$DATA/tcpota.db"; rm -f "$DATA/tcpota.db-wal" "$DATA/tcpota.db-shm"
sleep 0.05
rc=0
"$TCPOTA" rollout list > "$WORK/list3.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a read 50 ms after the restore was answered: $(cat "$WORK/list3.out")"
rc=0
"$TCPOTA" rollout pause 1 > "$WORK/pause.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a pause right after the restore was acknowledged: $(cat "$WORK/pause.out")"
stop_fleet
ok "a read 50 ms and a write right after the restore, in the batch open before it: refused"

# tcpota.db removed (not replaced): said as that, with where its data is now.
start_fleet
rm "$DATA/tcpota.db"
refused_soon "$WORK/rm.out" || fail "requests after tcpota.db was removed succeeded: $(cat "$WORK/rm.out")"
wait_line "$WORK/server.log" "store: $DATA/tcpota.db was removed while the server runs: nothing more is written; its data now lives only in this process's open file \\(ls -l /proc/$SERVER_PID/fd\\), lost at the stop" 5
stop_fleet
cp "$WORK/backup3.db" "$DATA/tcpota.db"; rm -f "$DATA"/tcpota.db-wal.replaced "$DATA"/tcpota.db-shm.replaced
ok "tcpota.db removed under a running server: said so, with where its data is"

# A restore and then the stop, no request between: the stop's checkpoint
# put the running server's pages into the restored file (a review).
start_fleet
"$TCPOTA" rollout resume 1 > /dev/null 2>&1 || true
backup "$WORK/backup4.db" || fail "the fourth backup failed"
"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
want=$(state "$WORK/backup4.db")
sleep 0.5 # the batch the requests opened is committed (STORE_BATCH_MS): the stop runs none
cp "$WORK/backup4.db" "$DATA/tcpota.db"; rm -f "$DATA/tcpota.db-wal" "$DATA/tcpota.db-shm"
stop_fleet
[ "$(state "$DATA/tcpota.db")" = "$want" ] ||
  fail "a stop right after the restore wrote into it: rollout 1 is $(state "$DATA/tcpota.db"), the backup's is $want"
grep -q "store: $DATA/tcpota.db lost its -wal file while the server runs" "$WORK/server.log" ||
  fail "a restore just before the stop was not said: $(grep 'store:' "$WORK/server.log" | tail -3)"
ok "a restore just before a stop: the stop leaves it as restored, and says so"
