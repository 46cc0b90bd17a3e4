#!/usr/bin/env bash
# Signals tcpota serve does not use: SIGUSR2 (nginx's binary upgrade, which
# operators send by habit) is logged and ignored, and the server serves on;
# SIGPIPE is ignored. Both by a single process, by a --workers supervisor,
# and by a fleet server, which must not leave its store and lock unclean.
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
