#!/usr/bin/env bash
# Signals tcpota serve does not use: SIGUSR2 (nginx's binary upgrade, which
# operators send by habit) is logged and ignored, and the server serves on;
# SIGPIPE is ignored. Both by a single process, by a --workers supervisor,
# and by a fleet server, which must not leave its store and lock unclean.
# SIGHUP (single image) reads the new image on a thread: while its file's
# open is held (tests/tools/failqueue.c, TCPOTA_TEST_OPEN_GATE), a device
# updates from the image in force; a second SIGHUP meanwhile reads the files
# again once the first ends; bytes their manifest does not describe are
# refused (checked on the thread, against the bytes read); a SIGTERM
# meanwhile waits for it and exits 0.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 100000
USR2_LINE='SIGUSR2: not used by tcpota serve; ignored, still serving (no binary upgrade by signal: restart to upgrade; SIGHUP reloads, SIGUSR1 prints the summary, SIGTERM stops)'

# device N: one device run against $SERVER_PORT; it must update.
device() {
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d$1" --id "dev-$1" \
    --factory-version 1.0.0 --slot-size 1048576 --progress none --max-attempts 3 \
    2> "$WORK/d$1.log" || fail "device $1 exited $?: $(tail -3 "$WORK/d$1.log")"
  check_device "$WORK/d$1" "$WORK/img"
}

# usr2_pipe LOG: SIGUSR2 and SIGPIPE to $SERVER_PID; it must log the line
# once and still run.
usr2_pipe() {
  kill -USR2 "$SERVER_PID"
  wait_line "$1" "$(printf '%s' "$USR2_LINE" | sed 's/[][().]/\\&/g')"
  kill -PIPE "$SERVER_PID"
  sleep 0.3
  kill -0 "$SERVER_PID" 2> /dev/null || fail "the server died of SIGUSR2 or SIGPIPE: $(tail -3 "$1")"
  [ "$(grep -c 'SIGUSR2: ' "$1")" -eq 1 ] || fail "SIGUSR2 logged $(grep -c 'SIGUSR2: ' "$1") times"
}

# --- one process ----------------------------------------------------------
start_server "$WORK/img" 2.0.0 --no-progress
usr2_pipe "$WORK/server.log"
device 1
stop_server
ok "single image: SIGUSR2 logged and ignored, SIGPIPE ignored; it serves on and stops cleanly"

# --- a --workers supervisor: the line once (its own), workers untouched ---
start_server "$WORK/img" 2.0.0 --no-progress --workers 2
usr2_pipe "$WORK/server.log"
device 2
stop_server
[ "$(grep -c 'summary:' "$WORK/server.log")" -eq 2 ] || fail "not every worker printed its summary"
ok "--workers: the supervisor logs SIGUSR2 once and ignores it; both workers serve on"

# --- fleet mode: the store still stops cleanly, the lock loses its pid -----
start_fleet
usr2_pipe "$WORK/server.log"
"$TCPOTA" image add "$WORK/img" --version 2.0.0 --model esp32 > /dev/null 2>&1 || fail "image add"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --waves 100 > /dev/null 2>&1 || fail "rollout create"
run_device f1 esp32 "$WORK/f1" || fail "f1 exited $?: $(tail -3 "$WORK/f1.log")"
stop_fleet
grep -q 'summary:' "$WORK/server.log" || fail "the fleet server printed no summary"
[ ! -s "$DATA/tcpota.lock" ] || fail "the lock still names pid $(cat "$DATA/tcpota.lock")"
ok "fleet mode: SIGUSR2 logged and ignored; a device updates; SIGTERM stops with the summary, the lock emptied"

# --- SIGHUP: the new image is read on a thread, the loop serves meanwhile ---
cd "$WORK"
mkdir images
with_failqueue gated-tcpota
GATE=$WORK/opengate
touch "$GATE"
"$TCPOTA" keygen --out k 2> /dev/null || fail "keygen"
cp "$WORK/img" images/fw.bin
# The manifest outside images/: the gate holds only the image's open.
"$TCPOTA" sign --key k.key --version 2.0.0 --model esp32 --out fw.manifest images/fw.bin 2> /dev/null ||
  fail "sign 2.0.0"
: > server.log # the version is the manifest's: no --version (start_server gives one)
TCPOTA_TEST_OPEN_GATE=$GATE ./gated-tcpota serve --listen 127.0.0.1:0 --no-progress \
  --manifest "$WORK/fw.manifest" --pubkey k.pub "$WORK/images/fw.bin" 2> server.log &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' server.log | head -1)
held() { grep -c 'failqueue: open of .*/images/fw.bin waits' server.log || true; }
# hup_held: a SIGHUP whose image open the gate holds.
hup_held() {
  local n i
  n=$(held)
  rm -f "$GATE"
  kill -HUP "$SERVER_PID"
  for i in $(seq 1 100); do [ "$(held)" -gt "$n" ] && return 0; sleep 0.05; done
  fail "the reload did not open the image: $(tail -3 server.log)"
}
make_image new.bin 120000
"$TCPOTA" sign --key k.key --version 3.0.0 --model esp32 --out new.manifest new.bin 2> /dev/null ||
  fail "sign 3.0.0"
mv new.bin images/fw.bin && mv new.manifest fw.manifest
hup_held
device 3 # the image in force, while the new one's read is held
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: the last reload is still reading its image; the files are read again once it ends'
grep -q 'SIGHUP: reloaded' server.log && fail "reloaded before its image was read: $(grep SIGHUP server.log)"
touch "$GATE"
wait_line server.log 'SIGHUP: reloaded: image 3.0.0'
for i in $(seq 1 100); do [ "$(grep -c 'SIGHUP: reloaded: image 3.0.0' server.log)" -ge 2 ] && break; sleep 0.05; done
[ "$(grep -c 'SIGHUP: reloaded: image 3.0.0' server.log)" -eq 2 ] ||
  fail "the SIGHUP during the reload did not read the files again: $(grep SIGHUP server.log)"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d4" --id dev-4 --factory-version 2.0.0 \
  --slot-size 1048576 --progress none --max-attempts 3 --trust k.pub 2> "$WORK/d4.log" ||
  fail "device 4 exited $?: $(tail -3 "$WORK/d4.log")"
check_device "$WORK/d4" images/fw.bin
# Bytes its manifest does not describe: found on the thread, on the bytes it read.
cp images/fw.bin served.bin
make_image images/fw.bin 120000
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reload failed \(see above\); still serving image 3\.0\.0'
grep -qE "SIGHUP: $WORK/images/fw.bin has SHA-256 [0-9a-f]{64}, not the one its manifest $WORK/fw.manifest gives \(another image's manifest, or this image altered after signing\?\); give the image's own manifest, or sign it again \(tcpota sign\)$" server.log ||
  fail "the altered image was not said to be: $(grep SIGHUP server.log)"
make_image images/fw.bin 120001
kill -HUP "$SERVER_PID"
for i in $(seq 1 100); do [ "$(grep -c 'SIGHUP: reload failed' server.log)" -ge 2 ] && break; sleep 0.05; done
grep -qF "SIGHUP: $WORK/images/fw.bin is 120001 bytes, its manifest $WORK/fw.manifest says 120000 (another image's manifest, or this image altered after signing?); give the image's own manifest, or sign it again (tcpota sign)" server.log ||
  fail "the image of another size was not said to be: $(grep SIGHUP server.log)"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d5" --id dev-5 --factory-version 2.0.0 \
  --slot-size 1048576 --progress none --max-attempts 3 --trust k.pub 2> "$WORK/d5.log" ||
  fail "device 5 exited $?: $(tail -3 "$WORK/d5.log")"
check_device "$WORK/d5" served.bin
# An older version: served, with a warning that devices on newer ones are not offered it.
make_image down.bin 90000
"$TCPOTA" sign --key k.key --version 2.5.0 --model esp32 --out fw.manifest down.bin 2> /dev/null ||
  fail "sign 2.5.0"
mv down.bin images/fw.bin
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: image 2\.5\.0'
grep -qF 'SIGHUP: warning: the new image 2.5.0 is older than 3.0.0, served until now: devices that run a version newer than 2.5.0 are not offered it (start the server with --allow-downgrade to offer it to them)' server.log ||
  fail "no warning of the older version: $(grep SIGHUP server.log)"
# SIGTERM while a reload reads its image: it is waited for, not applied.
hup_held
kill -TERM "$SERVER_PID"
sleep 0.5
kill -0 "$SERVER_PID" 2> /dev/null || fail "the server exited while its reload's thread still ran"
# A second stop signal meanwhile (timeout(1) and systemd send one to the
# process and one to its group) must not turn the stop into a death by
# signal (143) once the handlers are gone.
kill -TERM "$SERVER_PID"
sleep 0.2
touch "$GATE"
rc=0
wait "$SERVER_PID" || rc=$?
[ $rc -eq 0 ] || fail "the server stopped during a reload exited $rc: $(tail -3 server.log)"
[ "$(grep -c 'SIGHUP: reloaded' server.log)" -eq 3 ] || fail "a reload applied after SIGTERM: $(grep SIGHUP server.log)"
grep -q "stopping: the reload under way (of $WORK/images/fw.bin) is not applied" server.log ||
  fail "the reload cut short by SIGTERM left no line: $(tail -3 server.log)"
ok "SIGHUP reads the new image on a thread: a device updates meanwhile, a second SIGHUP reads again after it, bytes the manifest does not describe are refused, an older version is warned of, SIGTERM waits for it and says so"
