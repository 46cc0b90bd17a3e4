#!/usr/bin/env bash
# tcpota serve under a service manager's Type=notify (server/notify.h): a
# socket of the test's own stands for systemd's NOTIFY_SOCKET and records
# each message with its sender's pid. READY=1 comes once the server
# listens (a connection made then is answered), RELOADING=1 and READY=1
# frame a SIGHUP's reload (READY=1 after its "reloaded" line), STOPPING=1
# comes at SIGTERM; with --workers the supervisor alone speaks, once; a
# fleet server is ready once its store and API are.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 100000
SOCK=$WORK/notify.sock
python3 - "$SOCK" "$WORK/notify.txt" <<'PY' &
import array, os, socket, struct, sys
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
    out.write("%d %s\n" % (pid, msg.decode().replace("\n", "|")))
    out.flush()
PY
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [ -e "$WORK/notify.txt" ] && break; sleep 0.05; done
[ -e "$WORK/notify.txt" ] || fail "the notify socket did not start"
N=$WORK/notify.txt

# nlines N: wait until the record has N lines.
nlines() {
  for ((i = 0; i < 100; i++)); do [ "$(wc -l < "$N")" -ge "$1" ] && return 0; sleep 0.05; done
  fail "the record has $(wc -l < "$N") notifications, not $1: $(cat "$N")"
}

# --- one process: READY once it listens; a reload framed; STOPPING ----------
: > "$N"
NOTIFY_SOCKET=$SOCK start_server "$WORK/img" 2.0.0
nlines 1
[ "$(cat "$N")" = "$SERVER_PID READY=1" ] || fail "at start: $(cat "$N")"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d1" --id d1 --factory-version 1.0.0 \
  --progress none --max-attempts 1 2> "$WORK/d1.log" || fail "a device after READY=1: $(tail -2 "$WORK/d1.log")"
make_image "$WORK/img" 120000
kill -HUP "$SERVER_PID"
nlines 3
wait_line "$WORK/server.log" 'SIGHUP: reloaded: image 2\.0\.0'
sed -n 2p "$N" | grep -qE "^$SERVER_PID RELOADING=1\|MONOTONIC_USEC=[0-9]+$" || fail "at SIGHUP: $(cat "$N")"
[ "$(sed -n 3p "$N")" = "$SERVER_PID READY=1" ] || fail "after the reload: $(cat "$N")"
# A reload that fails still ends in READY=1: the server serves on.
mv "$WORK/img" "$WORK/img.away"
kill -HUP "$SERVER_PID"
nlines 5
grep -q 'SIGHUP: reload failed' "$WORK/server.log" || fail "the reload without its image did not fail: $(tail -2 "$WORK/server.log")"
[ "$(sed -n 5p "$N")" = "$SERVER_PID READY=1" ] || fail "after a failed reload: $(cat "$N")"
mv "$WORK/img.away" "$WORK/img"
stop_server
nlines 6
[ "$(sed -n 6p "$N")" = "$SERVER_PID STOPPING=1" ] || fail "at SIGTERM: $(cat "$N")"
[ "$(wc -l < "$N")" -eq 6 ] || fail "more than six notifications: $(cat "$N")"
ok "one process: READY=1 once it listens, RELOADING=1 then READY=1 at SIGHUP (failed or not), STOPPING=1 at SIGTERM"

# --- --workers: the supervisor alone, once --------------------------------------
: > "$N"
NOTIFY_SOCKET=$SOCK start_server "$WORK/img" 2.0.0 --workers 2
nlines 1
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d2" --id d2 --factory-version 1.0.0 \
  --progress none --max-attempts 1 2> "$WORK/d2.log" || fail "a device of the workers: $(tail -2 "$WORK/d2.log")"
kill -HUP "$SERVER_PID"
nlines 3
sleep 0.3 # the workers' own reloads: nothing more may come
stop_server
nlines 4
[ "$(cut -d' ' -f2- "$N" | sed 's/|MONOTONIC_USEC=[0-9]*//' | tr '\n' ' ')" = "READY=1 RELOADING=1 READY=1 STOPPING=1 " ] ||
  fail "--workers 2: $(cat "$N")"
senders=$(cut -d' ' -f1 "$N" | sort -u | tr '\n' ' ')
[ "$senders" = "$SERVER_PID " ] || fail "--workers 2: not all from the supervisor ($SERVER_PID) but from $senders: $(cat "$N")"
ok "--workers 2: READY=1, a reload and STOPPING=1 from the supervisor alone"

# --- fleet mode: ready with its API ------------------------------------------------
: > "$N"
NOTIFY_SOCKET=$SOCK start_fleet
nlines 1
[ "$(cat "$N")" = "$SERVER_PID READY=1" ] || fail "fleet mode: $(cat "$N")"
"$TCPOTA" image list > /dev/null || fail "the API after READY=1"
stop_fleet
nlines 2
[ "$(sed -n 2p "$N")" = "$SERVER_PID STOPPING=1" ] || fail "fleet mode at SIGTERM: $(cat "$N")"
ok "fleet mode: READY=1 with its API up, STOPPING=1 at SIGTERM"
