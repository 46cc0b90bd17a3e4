#!/usr/bin/env bash
# The PROXY header's 10 s deadline (server/proxied.c), for three connections
# from the listed balancer at once:
#  silent  - sends nothing: refused at 10 s, "(0 bytes came)"        [X01]
#  trickle - a v1 header a byte every 0.3 s (13 s for all of it): refused
#            at 10 s, never handed on after its deadline            [X03]
#  local   - a v2 LOCAL header, then nothing: closed at 10 s        [X04]
# and the node does not spin while they wait (a zero timeout re-armed at
# each wakeup was 100 % of a core).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_image img 20000
"$TCPOTA" serve --listen 127.0.0.3:0 --version 2.0.0 --proxy-protocol 127.0.0.4 img 2> N.log &
N_PID=$!; PIDS+=($N_PID)
wait_line N.log 'listening on'
N_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' N.log | head -1)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
t0=$(ticks $N_PID)
python3 - "$N_PORT" <<'PY' || fail "connections from the balancer past the header deadline (above)"
import socket, sys, threading, time
port = int(sys.argv[1])
LOCAL = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0])
HDR = b"PROXY TCP4 192.0.2.7 192.0.2.8 40000 443\r\n"
bad = []
def conn(name):
    s = socket.socket(); s.bind(("127.0.0.4", 0)); s.connect(("127.0.0.3", port))
    t = time.time()
    if name == "local":
        s.sendall(LOCAL)
    if name == "trickle":
        for b in HDR:
            try:
                s.send(bytes([b]))
            except OSError:
                break
            time.sleep(0.3)
    s.settimeout(max(0.1, 15 - (time.time() - t)))
    try:
        got = s.recv(1)
    except socket.timeout:
        bad.append("%s: still open after %.0f s" % (name, time.time() - t)); return
    except OSError:
        got = b""
    el = time.time() - t
    if got != b"" or el > 12.5:
        bad.append("%s: %r after %.1f s" % (name, got, el))
th = [threading.Thread(target=conn, args=(n,)) for n in ("silent", "trickle", "local")]
for x in th: x.start()
for x in th: x.join()
if bad:
    sys.exit("; ".join(bad))
PY
t1=$(ticks $N_PID)
hz=$(getconf CLK_TCK)
grep -q 'no whole header within 10 s (0 bytes came)' N.log || fail "silent: no refusal logged: $(tail -3 N.log)"
grep -qE 'no whole header within 10 s \([1-9][0-9]* bytes came\)' N.log || fail "trickle: no refusal at the deadline: $(tail -3 N.log)"
! grep -q '192.0.2.7' N.log || fail "a header completed after its deadline was believed: $(grep 192.0.2.7 N.log)"
[ $((t1 - t0)) -lt $((hz * 2)) ] || fail "the node used $(((t1 - t0) * 100 / hz)) % of a core-second while they waited"
ok "the header deadline: silent, trickled and LOCAL-then-silent connections closed at 10 s, without spinning"
