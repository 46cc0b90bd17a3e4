#!/usr/bin/env bash
# tcpota serve --workers N (server/workers.h): N processes on one port, each
# serving its share byte-exact; a worker that crashes is replaced and the
# port keeps serving; signals reach every worker; a worker dying at once
# stops them all; a supervisor killed outright takes its workers along; a
# second server cannot join the port; bad flags are refused with a reason.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 200000

# --- flags ---------------------------------------------------------------
expect_refused() { # EXPECTED_TEXT ARGS...: exit 2 and the text on stderr
  local want=$1 rc=0
  shift
  "$TCPOTA" serve --listen 127.0.0.1:0 "$@" > /dev/null 2> "$WORK/flag.log" || rc=$?
  [ $rc -eq 2 ] || fail "serve $* exited $rc, not 2"
  grep -qF -- "$want" "$WORK/flag.log" || fail "serve $*: no '$want' in: $(cat "$WORK/flag.log")"
}
expect_refused "--workers" --version 1.0.0 --workers 0 "$WORK/img"
expect_refused "--workers" --version 1.0.0 --workers 65 "$WORK/img"
expect_refused "--workers" --version 1.0.0 --workers two "$WORK/img"
expect_refused "fleet mode (--data) runs one process" --data "$WORK/fleet" --workers 2
ok "--workers 0, 65, two and --workers with --data are refused"

# Too few descriptors for every worker's listener (ulimit -n 10, 8 workers):
# refused at once, saying why, and no worker runs on a part of the set.
rc=0
( ulimit -n 10; exec timeout -s KILL 10 "$TCPOTA" serve --listen 127.0.0.1:0 --version 1.0.0 --workers 8 \
    "$WORK/img" ) > /dev/null 2> "$WORK/fdw.log" || rc=$?
[ $rc -eq 1 ] || fail "8 workers with 10 descriptors: exit $rc, not 1: $(tail -3 "$WORK/fdw.log")"
grep -q 'cannot listen on 127.0.0.1:0: Too many open files' "$WORK/fdw.log" ||
  fail "8 workers with 10 descriptors: no reason: $(tail -3 "$WORK/fdw.log")"
! grep -q 'worker [0-9]* started' "$WORK/fdw.log" || fail "workers started on a part of the listeners"
ok "listeners for only some of the workers: refused at once, none started"

# --- N workers share the devices ------------------------------------------
workers_of() { pgrep -P "$1" | sort; }
wait_workers() { # SUPERVISOR N: until it has N children
  local i
  for ((i = 0; i < 100; i++)); do
    if [ "$(workers_of "$1" | wc -l)" -eq "$2" ]; then
      PIDS+=($(workers_of "$1")) # so that a failed test leaves none behind
      return 0
    fi
    sleep 0.05
  done
  fail "supervisor $1 does not have $2 workers: $(workers_of "$1" | tr '\n' ' ')"
}
# run_devices FROM TO [IMAGE]: devices dev-FROM..dev-TO at once, each
# byte-exact with IMAGE (default: $WORK/img as it is then).
run_devices() {
  local i pids=() img=${3:-$WORK/img}
  for i in $(seq "$1" "$2"); do
    "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d$i" --id "dev-$i" \
      2> "$WORK/dev$i.log" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || fail "a device failed (see dev*.log)"; done
  check_devices "$img" $(seq -f "$WORK/d%g" "$1" "$2")
}

start_server "$WORK/img" 2.0.0 --workers 3 --no-progress
grep -q 'listening on .*; 3 workers' "$WORK/server.log" || fail "the listening line does not say 3 workers"
wait_workers "$SERVER_PID" 3
run_devices 1 12
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/legacy" --clients 6 > "$WORK/legacy.log" 2>&1 ||
  fail "legacy clients failed"
for i in $(seq 0 5); do cmp "$WORK/legacy.$i" "$WORK/img" || fail "legacy client $i got other bytes"; done
served=$(grep -oE 'tcpota serve\[[0-9]+\]: \[dev-[0-9]+ [^]]*\] done: image 2.0.0 verified' "$WORK/server.log" |
         sed -E 's/.*serve\[([0-9]+)\].*/\1/' | sort -u | wc -l)
[ "$served" -ge 2 ] || fail "12 devices were all served by one worker ($served): SO_REUSEPORT spreads them"
ok "3 workers: 12 devices and 6 legacy clients byte-exact, served by $served workers"

# --- a worker that crashes is replaced -------------------------------------
# Past WORKER_MIN_LIFE_S (1 s), so that this is a crash in service.
sleep 1.1
victim=$(workers_of "$SERVER_PID" | head -1)
kill -SEGV "$victim"
# (Under ASan its handler reports the SIGSEGV, then exits 1, or aborts with
# make test's abort_on_error=1.)
wait_line "$WORK/server.log" \
  "worker [0-9] \\(pid $victim\\) (was killed by signal (11|6) |exited with status 1 ).*; starting another"
wait_workers "$SERVER_PID" 3
workers_of "$SERVER_PID" | grep -qx "$victim" && fail "the crashed worker $victim is still listed"
run_devices 13 24
ok "a worker killed by SIGSEGV was replaced; 12 more devices byte-exact"

# --- SIGHUP: every worker reloads, and so does the supervisor ---------------
# A new image under the same name: a worker started after the reload (one
# replaces a crashed worker below) must serve it too, not the first one.
cp "$WORK/img" "$WORK/img-first"
make_image "$WORK/img.new" 150000
mv "$WORK/img.new" "$WORK/img"
kill -HUP "$SERVER_PID"
wait_line "$WORK/server.log" "tcpota serve: SIGHUP: reloaded: image 2.0.0 \\(150000 bytes"
for k in 1 2 3; do wait_line "$WORK/server.log" "tcpota serve\\[$k\\]: SIGHUP: reloaded: image 2.0.0 \\(150000"; done
sleep 1.1 # every worker past WORKER_MIN_LIFE_S
victim=$(workers_of "$SERVER_PID" | tail -1)
kill -SEGV "$victim"
wait_line "$WORK/server.log" "worker [0-9] \\(pid $victim\\) .*; starting another"
wait_workers "$SERVER_PID" 3
# 15 devices: each lands on the new worker with probability 1/3.
run_devices 40 54 "$WORK/img"
ok "SIGHUP reloaded the new image in the supervisor and the 3 workers; after a crash, 15 devices all got it"

# --- SIGUSR1 and SIGTERM reach every worker ----------------------------------
kill -USR1 "$SERVER_PID"
for k in 1 2 3; do wait_line "$WORK/server.log" "tcpota serve\\[$k\\]: summary:"; done
ok "SIGUSR1 prints a summary in each of the 3 workers"

cp "$WORK/server.log" "$WORK/before-stop"
stop_server
stops=$(diff "$WORK/before-stop" "$WORK/server.log" | grep -cE 'tcpota serve\[[1-3]\]: summary:' || true)
[ "$stops" -eq 3 ] || fail "$stops of 3 workers printed a summary on SIGTERM"
grep -q 'every worker has stopped$' "$WORK/server.log" || fail "the supervisor did not say every worker stopped"
ok "SIGTERM: every worker printed its summary and exited, the supervisor exit 0"

# --- log lines name their worker -------------------------------------------
start_server "$WORK/img" 2.0.0 --workers 2 --log-format json
wait_workers "$SERVER_PID" 2
run_devices 25 28
grep -q '"worker":[12],"device":"dev-25"' "$WORK/server.log" || fail "json lines do not carry \"worker\""
grep -q '"msg":"worker 1 started' "$WORK/server.log" || fail "the supervisor's lines are not json"

# --- nothing else can join the port ----------------------------------------
rc=0
timeout 10 "$TCPOTA" serve --listen "127.0.0.1:$SERVER_PORT" --version 2.0.0 --workers 2 "$WORK/img" \
  2> "$WORK/second.log" || rc=$?
[ $rc -eq 1 ] || fail "a second --workers server on the port exited $rc (124: it ran, sharing the port)"
grep -q 'Address already in use (another program, perhaps another tcpota serve' "$WORK/second.log" ||
  fail "the second server did not say the port is taken: $(cat "$WORK/second.log")"
run_devices 29 32 # and the first one still serves every device
ok "json lines name the worker; a second server cannot take a share of the port"

# --- a supervisor killed outright takes its workers along ---------------------
pids=$(workers_of "$SERVER_PID")
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 100); do
  left=$(for p in $pids; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done)
  [ -z "$left" ] && break
  sleep 0.05
done
[ -z "$left" ] || fail "workers $left outlived their supervisor's SIGKILL"
ok "SIGKILL of the supervisor: its workers stopped too"

# --- a worker dying at once stops them all ----------------------------------
start_server "$WORK/img" 2.0.0 --workers 2
wait_workers "$SERVER_PID" 2
kill -9 "$(workers_of "$SERVER_PID" | head -1)"
for _ in $(seq 200); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$SERVER_PID" 2>/dev/null && fail "the supervisor still runs 10 s after a worker died at once"
rc=0
wait "$SERVER_PID" || rc=$?
[ $rc -eq 1 ] || fail "the supervisor exited $rc after a worker died at once, not 1"
grep -qE 'worker [12] \(pid [0-9]+\) was killed by signal 9 .* s after it started: stopping every worker' \
  "$WORK/server.log" || fail "the supervisor did not say why it stopped"
grep -q 'every worker has stopped (not all cleanly' "$WORK/server.log" || fail "no final line"
ok "a worker killed 0 s after its start: every worker stopped, exit 1"

# --- signals at once after the start ----------------------------------------
# The "listening on" line comes before the workers' handlers are in place:
# a signal sent on it must be handled, never take a default action.
start_server "$WORK/img" 2.0.0 --workers 3
kill -HUP "$SERVER_PID"
wait_workers "$SERVER_PID" 3
run_devices 60 62
stop_server
grep -q 'not all cleanly' "$WORK/server.log" && fail "a SIGHUP at the start killed a worker"
start_server "$WORK/img" 2.0.0 --workers 3
stop_server # SIGTERM on the listening line: every worker stops cleanly, exit 0
grep -q 'every worker has stopped$' "$WORK/server.log" || fail "no clean stop right after the start"
ok "SIGHUP and SIGTERM sent on the listening line: handled, exit 0"

# --- a supervisor started with SIGCHLD ignored ------------------------------
# (a parent may leave it so: children would then be reaped unseen)
: > "$WORK/server.log"
python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])' \
  "$TCPOTA" serve --listen 127.0.0.1:0 --version 2.0.0 --workers 2 "$WORK/img" 2> "$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line "$WORK/server.log" 'listening on'
wait_workers "$SERVER_PID" 2
kill -TERM "$SERVER_PID"
for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$SERVER_PID" 2>/dev/null && fail "with SIGCHLD ignored, the supervisor still waits 5 s after SIGTERM"
rc=0
wait "$SERVER_PID" || rc=$?
[ $rc -eq 0 ] || fail "with SIGCHLD ignored, the supervisor exited $rc"
ok "a supervisor started with SIGCHLD ignored sees its workers stop"
