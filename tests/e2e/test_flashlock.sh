#!/usr/bin/env bash
# Two `tcpota device` processes on one --flash directory: the second stops
# at once, before it writes anything, and names the first (as a second
# `tcpota serve` on one --data does). Before, both ran: they wrote the same
# slot and otadata in turn, one ended "up to date", the other took the
# image for one the bootloader rejected, rolled it back and told the
# server, which then held the image back from the device.
# `tcpota device status` takes no lock: it answers while a device runs.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 1500000
start_server "$WORK/img" 2.0.0
# A 1 MB/s link, so the first device is still writing when the second starts.
start_proxy proxy "$SERVER_PORT" --rate 1000000
S="127.0.0.1:$PROXY_PORT"

# Created by a run that cannot reach a server, as in the user's trial.
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/rd" --id race1 --max-attempts 1 \
  2> "$WORK/create.log" || true
[ -f "$WORK/rd/otadata.bin" ] || fail "the device was not created: $(cat "$WORK/create.log")"

"$TCPOTA" device --server "$S" --flash "$WORK/rd" --id race1 2> "$WORK/first.log" &
first=$!
PIDS+=("$first")
# Durable progress, read by status while the first device holds the lock.
for _ in $(seq 200); do
  timeout 5 "$TCPOTA" device status --flash "$WORK/rd" 2>/dev/null | grep -q '"resume":{"offset":[1-9]' && break
  sleep 0.05
done
timeout 5 "$TCPOTA" device status --flash "$WORK/rd" > "$WORK/status.json" 2> "$WORK/status.log" ||
  fail "status while a device runs failed or blocked: $(cat "$WORK/status.log")"
grep -q '"resume":{"offset":[1-9]' "$WORK/status.json" || fail "no progress to race with: $(cat "$WORK/status.json")"

rc=0
timeout 10 "$TCPOTA" device --server "$S" --flash "$WORK/rd" --id race1 2> "$WORK/second.log" || rc=$?
[ $rc -eq 1 ] || fail "a second device on the same --flash exited $rc, expected 1"
grep -q "device race1: $WORK/rd is in use by another tcpota device (pid $first); stop it or use another --flash" \
  "$WORK/second.log" || fail "the second device did not name the first: $(cat "$WORK/second.log")"
! grep -q 'connecting to' "$WORK/second.log" || fail "the second device went on: $(cat "$WORK/second.log")"
kill -0 "$first" 2>/dev/null || fail "the first device did not keep running"
# The refused device closed the file it did not lock: its end must not empty
# the holder's pid (what a script signals).
[ "$(cat "$WORK/rd/tcpota.lock")" = "$first" ] ||
  fail "after the refused second device the lock file holds '$(cat "$WORK/rd/tcpota.lock")', not the first's pid $first"
ok "a second device on the same --flash stops at once and names the first (pid $first)"

rc=0
wait "$first" || rc=$?
[ $rc -eq 0 ] || fail "the first device exited $rc: $(cat "$WORK/first.log")"
[ ! -s "$WORK/rd/tcpota.lock" ] ||
  fail "the lock file still names pid $(cat "$WORK/rd/tcpota.lock") after the device ended (a script signalling it would reach whoever took the pid)"
check_device "$WORK/rd" "$WORK/img"
"$TCPOTA" device status --flash "$WORK/rd" | grep -q '"rolled_back":false' ||
  fail "the device reports a rollback: $("$TCPOTA" device status --flash "$WORK/rd")"
! grep -qi 'rolled back\|rejected' "$WORK/first.log" "$WORK/server.log" ||
  fail "a rollback was reported: $(grep -hi 'rolled back\|rejected' "$WORK/first.log" "$WORK/server.log")"
# The lock goes with the process: the next run (the lock file with the old
# pid still there) runs, and the server still offers nothing new.
"$TCPOTA" device --server "$S" --flash "$WORK/rd" --id race1 2> "$WORK/third.log" ||
  fail "a run after the first ended failed: $(cat "$WORK/third.log")"
grep -q 'up to date, running 2.0.0' "$WORK/third.log" || fail "not up to date: $(cat "$WORK/third.log")"
ok "the first device installed the image, no rollback reported; the lock ended with it"

# Something else where the lock file goes: named, and what to do (before: a
# FIFO gave "cannot write ...: Invalid argument", a directory or a symbolic
# link "... must be writable" of a writable directory).
for kind in FIFO directory "symbolic link"; do
  rm -rf "$WORK/lk" && cp -r "$WORK/rd" "$WORK/lk" && rm -f "$WORK/lk/tcpota.lock"
  case $kind in
    FIFO) mkfifo "$WORK/lk/tcpota.lock" ;;
    directory) mkdir "$WORK/lk/tcpota.lock" ;;
    *) ln -s /dev/null "$WORK/lk/tcpota.lock" ;;
  esac
  rc=0; timeout 10 "$TCPOTA" device --server "$S" --flash "$WORK/lk" --id race1 2> "$WORK/lk.log" || rc=$?
  [ $rc -eq 1 ] || fail "a $kind as the lock file: exit $rc, expected 1: $(cat "$WORK/lk.log")"
  grep -q "$WORK/lk/tcpota.lock is a $kind, not tcpota's lock file; remove it" "$WORK/lk.log" ||
    fail "a $kind as the lock file: $(cat "$WORK/lk.log")"
done
ok "a FIFO, a directory or a symbolic link where the lock file goes: named, remove it"

# A device's --flash given to a server as --data, and a server's --data to
# a device as --flash: each names what holds the directory (each called
# the other a copy of itself: "another tcpota serve" for a device).
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/held" --id held-1 --check-interval 60 \
  --progress none 2> "$WORK/held.log" &
held=$!
PIDS+=("$held")
for _ in $(seq 100); do [ -s "$WORK/held/tcpota.lock" ] && break; sleep 0.05; done
rc=0
timeout 20 "$TCPOTA" serve --data "$WORK/held" --listen 127.0.0.1:0 --api off 2> "$WORK/held-serve.log" || rc=$?
[ $rc -eq 1 ] && grep -q "$WORK/held is in use by another tcpota device (pid $held); stop it or use another --data" "$WORK/held-serve.log" ||
  fail "a server on a running device's --flash: exit $rc, $(tail -2 "$WORK/held-serve.log")"
kill -TERM "$held"; wait "$held" 2>/dev/null || true
DATA=$WORK/fleetdir
: > "$WORK/fleet.log"
"$TCPOTA" serve --data "$DATA" --listen 127.0.0.1:0 --api off 2> "$WORK/fleet.log" &
fleet=$!
PIDS+=("$fleet")
wait_line "$WORK/fleet.log" 'listening on'
rc=0
timeout 20 "$TCPOTA" device --server 127.0.0.1:1 --flash "$DATA" --id lost-1 --max-attempts 1 2> "$WORK/lost.log" || rc=$?
[ $rc -ne 0 ] && grep -q "$DATA is in use by another tcpota serve (pid $fleet); stop it or use another --flash" "$WORK/lost.log" ||
  fail "a device on a running server's --data: exit $rc, $(tail -2 "$WORK/lost.log")"
kill -TERM "$fleet"; wait "$fleet" || fail "the fleet server exited $? on SIGTERM"
ok "a device's --flash given as --data, and a server's --data as --flash: each names what holds it"
stop_server
