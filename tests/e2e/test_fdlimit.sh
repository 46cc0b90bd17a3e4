#!/usr/bin/env bash
# A server at its descriptor limit: each failed accept() (EMFILE) pauses
# accepting for a moment (server/accept_pause.h) instead of coming back at
# once, the failure is said once with what to do, and when connections end
# the server accepts again. Before, it logged the error in a loop at 100 %
# CPU (1.9 million lines in 2 s at `ulimit -n 20`).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_image img 65536
: > server.log
# Only the server gets the small limit (ulimit in its own subshell).
( ulimit -n 40 && exec "$TCPOTA" serve --listen 127.0.0.1:0 --version 2.0.0 --no-progress \
    --max-conns 1000 img 2> server.log ) &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' server.log | head -1)
# cpu_ticks PID: its user + system time in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# 80 connections held for 2 s: the server accepts until it holds its
# limit; the rest wait in its backlog while accept() fails.
t0=$(cpu_ticks "$SERVER_PID")
python3 - "$SERVER_PORT" <<'PY'
import socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(80)]
time.sleep(2)
PY
t1=$(cpu_ticks "$SERVER_PID")
hz=$(getconf CLK_TCK)
failed=$(grep -c 'accepting device connections failed' server.log || true)
[ "$failed" -ge 1 ] || fail "no accept() failed: the test did not reach the limit ($(tail -3 server.log))"
[ "$failed" -le 2 ] || fail "the accept failure was said $failed times in 2 s"
grep -q 'Too many open files (every descriptor the process may hold is in use: raise its limit, ulimit -n' server.log ||
  fail "the failure does not say what to do: $(grep 'accepting' server.log | head -1)"
# Spinning on accept() was a whole core: 2 s of CPU in these 2 s.
[ $((t1 - t0)) -lt $((hz / 2)) ] || fail "the server used $(((t1 - t0) * 100 / hz)) % of a core while at its limit"
ok "at its descriptor limit the server paused accepting: $failed line(s), $(((t1 - t0) * 1000 / hz)) ms of CPU in 2 s"

# The connections are gone: the server accepts again and updates a device.
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dev --id d-1 --backoff-min-ms 50 \
  --backoff-max-ms 200 --timeout-ms 20000 --quiet 2> dev.log || fail "the device failed: $(tail -3 dev.log)"
check_device dev img
stop_server
ok "after the connections ended the server accepted again: a device updated"
