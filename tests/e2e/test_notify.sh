#!/usr/bin/env bash
# tcpota serve under a service manager's Type=notify (server/notify.h): a
# socket of the test's own stands for systemd's NOTIFY_SOCKET and records
# each message with its sender's pid. READY=1 comes once the server
# listens (the recorder connects to the port when it gets it), RELOADING=1
# and READY=1 frame a SIGHUP's reload, failed or not (READY=1 after its
# "reloaded" line), STOPPING=1 comes at SIGTERM; with --workers the
# supervisor alone speaks; a fleet server is ready with its store and API.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 100000
SOCK=$WORK/notify.sock
N=$WORK/notify.txt
# The recorder: "PID MESSAGE" per line ("|" for newlines); on READY=1 it
# connects to the port in $WORK/port and adds " listening" when that works.
python3 - "$SOCK" "$N" "$WORK/port" <<'PY' &
import os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
out = open(sys.argv[2] + ".tmp", "a") # appends: the test empties the file between parts
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = 0
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    line = "%d %s" % (pid, msg.decode().replace("\n", "|"))
    if msg == b"READY=1":
        try:
            socket.create_connection(("127.0.0.1", int(open(sys.argv[3]).read())), 2).close()
            line += " listening"
        except OSError as e:
            line += " not listening (%s)" % e
    out.write(line + "\n")
    out.flush()
PY
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [ -e "$N" ] && break; sleep 0.05; done
[ -e "$N" ] || fail "the notify socket did not start"

# nlines N: wait until the record has N lines.
nlines() {
  for ((i = 0; i < 100; i++)); do [ "$(wc -l < "$N")" -ge "$1" ] && return 0; sleep 0.05; done
  fail "the record has $(wc -l < "$N") notifications, not $1: $(cat "$N")"
}
# settled: every notification sent so far is recorded (a datagram of the
# test's own, after them in the socket's queue, is); then the record,
# without that mark, is $N.txt (the recorder keeps writing $N: the same file).
settled() {
  python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"MARK", sys.argv[1])' "$SOCK"
  for ((i = 0; i < 100; i++)); do grep -q ' MARK$' "$N" && break; sleep 0.05; done
  grep -q ' MARK$' "$N" || fail "the recorder did not take the mark"
  grep -v ' MARK$' "$N" > "$N.txt"
}
# free_port: a port nobody listens on now, into $WORK/port and $PORT.
free_port() {
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$PORT" > "$WORK/port"
}

# --- one process: READY once it listens; a reload framed; STOPPING ----------
: > "$N"
free_port
NOTIFY_SOCKET=$SOCK start_server "$WORK/img" 2.0.0 --listen "127.0.0.1:$PORT"
nlines 1
[ "$(cat "$N")" = "$SERVER_PID READY=1 listening" ] || fail "at start: $(cat "$N")"
make_image "$WORK/img" 120000
kill -HUP "$SERVER_PID"
nlines 3
wait_line "$WORK/server.log" 'SIGHUP: reloaded: image 2\.0\.0'
sed -n 2p "$N" | grep -qE "^$SERVER_PID RELOADING=1\|MONOTONIC_USEC=[0-9]+$" || fail "at SIGHUP: $(cat "$N")"
[ "$(sed -n 3p "$N")" = "$SERVER_PID READY=1 listening" ] || fail "after the reload: $(cat "$N")"
# A reload that fails still ends in READY=1: the server serves on.
mv "$WORK/img" "$WORK/img.away"
kill -HUP "$SERVER_PID"
nlines 5
grep -q 'SIGHUP: reload failed' "$WORK/server.log" || fail "the reload without its image did not fail: $(tail -2 "$WORK/server.log")"
[ "$(sed -n 5p "$N")" = "$SERVER_PID READY=1 listening" ] || fail "after a failed reload: $(cat "$N")"
mv "$WORK/img.away" "$WORK/img"
stop_server
settled
[ "$(sed -n 6p "$N.txt")" = "$SERVER_PID STOPPING=1" ] && [ "$(wc -l < "$N.txt")" -eq 6 ] ||
  fail "at SIGTERM, six notifications in all: $(cat "$N.txt")"
ok "one process: READY=1 once it listens, RELOADING=1 then READY=1 at SIGHUP (failed or not), STOPPING=1 at SIGTERM"

# --- --workers: the supervisor alone --------------------------------------------
: > "$N"
free_port
NOTIFY_SOCKET=$SOCK start_server "$WORK/img" 2.0.0 --workers 2 --listen "127.0.0.1:$PORT"
nlines 1
kill -HUP "$SERVER_PID"
for ((i = 0; i < 100; i++)); do [ "$(grep -c 'SIGHUP: reloaded' "$WORK/server.log")" -ge 3 ] && break; sleep 0.05; done
[ "$(grep -c 'SIGHUP: reloaded' "$WORK/server.log")" -ge 3 ] || fail "the supervisor and two workers did not reload: $(grep SIGHUP "$WORK/server.log")"
stop_server
settled
[ "$(cut -d' ' -f2- "$N.txt" | sed 's/|MONOTONIC_USEC=[0-9]*//' | tr '\n' ' ')" = "READY=1 listening RELOADING=1 READY=1 listening STOPPING=1 " ] ||
  fail "--workers 2: $(cat "$N.txt")"
senders=$(cut -d' ' -f1 "$N.txt" | sort -u | tr '\n' ' ')
[ "$senders" = "$SERVER_PID " ] || fail "--workers 2: not all from the supervisor ($SERVER_PID) but from $senders: $(cat "$N.txt")"
ok "--workers 2: READY=1, a reload and STOPPING=1 from the supervisor alone"

# --- fleet mode: ready with its API ------------------------------------------------
: > "$N"
free_port
NOTIFY_SOCKET=$SOCK LISTEN=127.0.0.1:$PORT start_fleet
nlines 1
[ "$(cat "$N")" = "$SERVER_PID READY=1 listening" ] || fail "fleet mode: $(cat "$N")"
"$TCPOTA" image list > /dev/null || fail "the API after READY=1"
stop_fleet
settled
[ "$(sed -n 2p "$N.txt")" = "$SERVER_PID STOPPING=1" ] && [ "$(wc -l < "$N.txt")" -eq 2 ] || fail "fleet mode at SIGTERM: $(cat "$N.txt")"
ok "fleet mode: READY=1 with its API up, STOPPING=1 at SIGTERM"

# --- a socket that is not there: said once (it was silent) -----------------------
free_port
NOTIFY_SOCKET=$WORK/no-such.sock start_server "$WORK/img" 2.0.0 --listen "127.0.0.1:$PORT"
stop_server
[ "$(grep -c "warning: NOTIFY_SOCKET=$WORK/no-such.sock took no message (No such file or directory)" "$WORK/server.log")" = 1 ] ||
  fail "a NOTIFY_SOCKET that is not there: $(grep -i notify "$WORK/server.log")"
ok "a NOTIFY_SOCKET that names no socket: one warning"
