#!/usr/bin/env bash
# --proxy-protocol behind a real HAProxy (its config written here): the nodes
# see the device's own address, not the balancer's.
#  - send-proxy-v2 and send-proxy (v1): devices update, and the log names
#    them by their own address (127.0.0.1), not HAProxy's source (127.0.0.4);
#  - HAProxy's health checks (a connect and a close) leave no line;
#  - a backend without send-proxy: its connections are refused with what to
#    configure, the device fails;
#  - --max-unauth-per-addr counts each device's address: two idle clients
#    from 127.0.0.5 and 127.0.0.6 through one HAProxy are both taken, a
#    second one from 127.0.0.5 is refused (before, all were HAProxy's one
#    address, and the second client was refused);
#  - bad --proxy-protocol values are refused;
#  - a node stopped past the header's deadline reads a header that came in
#    time (its loop sees the deadline first), and refuses half of one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
T=$TCPOTA
cd "$WORK"
command -v haproxy > /dev/null || fail "haproxy is not installed (make deps installs it)"
make_image img 150000

# node NAME ARGS...: a single-image server on 127.0.0.3 trusting 127.0.0.4.
node() {
  local name=$1; shift
  "$T" serve --listen 127.0.0.3:0 --version 2.0.0 --proxy-protocol 127.0.0.4 "$@" img 2> "$name.log" &
  PIDS+=($!)
  printf -v "${name}_PID" '%s' "$!"
  wait_line "$name.log" 'listening on'
  printf -v "${name}_PORT" '%s' "$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$name.log" | head -1)"
}
"$T" keygen --device-secret --out dev1.secret 2> /dev/null || fail keygen
echo "dev1 $(cut -d' ' -f3 dev1.secret)" > secrets && chmod 600 secrets
node N
node U --require-auth --auth-file secrets --max-unauth-per-addr 1
LISTEN=127.0.0.3:0 start_fleet --proxy-protocol 127.0.0.4 # a fleet node: SERVER_PORT, the API
read -r P2 P1 P0 PU PF < <(free_ports 5 127.0.0.2)
cat > haproxy.cfg <<EOF
global
  maxconn 1000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend v2
  bind 127.0.0.2:$P2
  default_backend v2
backend v2
  source 127.0.0.4
  server n 127.0.0.3:$N_PORT send-proxy-v2 check inter 100ms
frontend v1
  bind 127.0.0.2:$P1
  default_backend v1
backend v1
  source 127.0.0.4
  server n 127.0.0.3:$N_PORT send-proxy
frontend none
  bind 127.0.0.2:$P0
  default_backend none
backend none
  source 127.0.0.4
  server n 127.0.0.3:$N_PORT
frontend unauth
  bind 127.0.0.2:$PU
  default_backend unauth
backend unauth
  source 127.0.0.4
  server n 127.0.0.3:$U_PORT send-proxy-v2
frontend fleet
  bind 127.0.0.2:$PF
  default_backend fleet
backend fleet
  source 127.0.0.4
  server n 127.0.0.3:$SERVER_PORT send-proxy-v2
EOF
haproxy -c -f haproxy.cfg > haproxy-check.log 2>&1 || fail "haproxy rejects its config: $(cat haproxy-check.log)"
haproxy -db -f haproxy.cfg > haproxy.log 2>&1 &
PIDS+=($!)
for p in $P2 $P1 $P0 $PU $PF; do
  for ((i = 0; i < 100; i++)); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.2', $p), 0.2).close()" 2> /dev/null && break
    sleep 0.05
  done
done

dev() { # dev ID PORT: one device run through HAProxy
  "$T" device --server "127.0.0.2:$2" --flash "$1" --id "$1" --progress none --max-attempts 1 2> "$1.log"
}
dev d2 "$P2" || fail "d2 (send-proxy-v2) failed: $(tail -3 d2.log)"
dev d1 "$P1" || fail "d1 (send-proxy) failed: $(tail -3 d1.log)"
check_device d2 img
for d in d1 d2; do
  grep -q "\[$d 127\.0\.0\.1:[0-9]*\] done: image 2.0.0 verified" N.log ||
    fail "$d is not logged by its own address: $(grep "\[$d " N.log | head -3)"
  ! grep -q "\[$d 127\.0\.0\.4:" N.log || fail "$d was logged by HAProxy's address"
done
ok "send-proxy-v2 and send-proxy: devices update, logged by their own address"
sleep 0.5 # a few health checks more (send-proxy-v2 sends them a LOCAL header, then resets)
! grep -q "127\.0\.0\.4:" N.log || fail "health checks left lines: $(grep '127\.0\.0\.4:' N.log | head -3)"
ok "HAProxy's health checks leave no line"

# Only the listed balancer is believed: a header from anyone else is not read
# (its bytes are the connection's, an unknown protocol) and its claimed
# address appears nowhere. A balancer given in IPv4-mapped form is the same
# balancer.
node M --proxy-protocol ::ffff:127.0.0.4
python3 - "$N_PORT" "$M_PORT" <<'PY' || fail "the header probes failed"
import socket, sys, time
def probe(src, port, header):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.3", port))
    s.sendall(header + b"xxxx")
    time.sleep(0.3)
    s.close()
probe("127.0.0.1", int(sys.argv[1]), b"PROXY TCP4 9.9.9.9 127.0.0.3 5555 80\r\n")
probe("127.0.0.4", int(sys.argv[2]), b"PROXY TCP4 127.0.0.9 127.0.0.3 5555 80\r\n")
# The listed balancer passing on a client's own header: not advice to list it.
probe("127.0.0.4", int(sys.argv[2]), b"PROXY TCP4 127.0.0.8 127.0.0.3 5556 80\r\nPROXY TCP4 10.0.0.7 127.0.0.3 1 2\r\n")
PY
wait_line N.log "\[- 127\.0\.0\.1:[0-9]*\] unknown protocol \(first byte 0x50: a PROXY protocol header from an address --proxy-protocol does not list: add it if it is your balancer's\); closing" 3
! grep -q "9\.9\.9\.9" N.log || fail "an untrusted peer's header was believed: $(grep 9.9.9.9 N.log)"
wait_line M.log "\[- 127\.0\.0\.9:5555\] unknown protocol \(first byte 0x78\)" 3
wait_line M.log "\[- 127\.0\.0\.8:5556\] unknown protocol \(first byte 0x50: a second PROXY protocol header, after the balancer's: a client's own header sent through it \(or send-proxy given twice\); not read\); closing" 3
ok "a header from an address not listed is not read; ::ffff:127.0.0.4 is 127.0.0.4"

# A node without --proxy-protocol behind a balancer that sends headers (a
# new user's trial: a line per health check, no hint): what to change, at
# most 10 lines a second, then how many were not logged.
"$T" serve --listen 127.0.0.3:0 --version 2.0.0 img 2> Z.log &
PIDS+=($!)
wait_line Z.log 'listening on'
Z_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' Z.log | head -1)
python3 - "$Z_PORT" <<'PY' || fail "the headers to a node without --proxy-protocol failed"
import socket, sys, time
LOCAL = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0])
for i in range(26):
    if i == 25:
        time.sleep(1.1)
    s = socket.create_connection(("127.0.0.3", int(sys.argv[1])), 5, ("127.0.0.4", 0))
    s.sendall(LOCAL)
    s.recv(1) # the close
    s.close()
PY
wait_line Z.log 'unknown protocol \(first byte 0x0d: a PROXY protocol header \(a balancer.s send-proxy\): give --proxy-protocol with the balancer.s address, or turn send-proxy off\); closing \(and 15 more such lines not logged since the last such line\)$' 3
[ "$(grep -c 'unknown protocol' Z.log)" -lt 26 ] || fail "$(grep -c 'unknown protocol' Z.log) lines for 26 headers: not limited"
# A person at a terminal (Enter: "\r\n") is not told about PROXY headers.
python3 -c "import socket; s=socket.create_connection(('127.0.0.3', $Z_PORT), 5); s.sendall(b'\r\n'); s.recv(1)"
wait_line Z.log 'unknown protocol \(first byte 0x0d\); closing$' 3
ok "a node without --proxy-protocol says what a header is and what to change, at most 10 lines a second"

dev dF "$PF" || fail "dF through HAProxy to the fleet node failed: $(tail -3 dF.log)"
addr=$("$T" device show dF --json | jq_py 'j["address"]') || fail "device show dF"
[ "$addr" = 127.0.0.1 ] || fail "the registry has dF at $addr, not its own address 127.0.0.1"
ok "the fleet's registry has the device's own address"

# A cancel stops a transfer behind the balancer. HAProxy's buffers take a
# whole image at once, so the node's socket had sent every byte, the node
# let the transfer finish, and a trial's devices installed the cancelled
# image a minute later. Through 20 kB/s in front of HAProxy: cut, the
# device keeps no image of it.
head -c 1200000 /dev/urandom > big.bin
"$T" image add big.bin --version 3.1.0 --model esp32 > /dev/null 2>&1 || fail "image add big.bin"
ro=$("$T" rollout create --image 3.1.0 --model esp32 --json | jq_py 'j["id"]') || fail "rollout create"
"$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.2:$PF" --rate 20000 --queue-limit 16384 2> slow.log &
PIDS+=($!)
wait_line slow.log 'listening on'
SLOW=$(sed -nE 's/.*listening on [^ ]*:([0-9]+).*/\1/p' slow.log | head -1)
"$T" device --server "127.0.0.1:$SLOW" --flash dC --id dC --progress none --max-attempts 2 2> dC.log &
DC=$!
PIDS+=("$DC")
for ((i = 0; i < 200; i++)); do [ "$(device_state dC 2> /dev/null)" = downloading ] && break; sleep 0.05; done
[ "$(device_state dC)" = downloading ] || fail "dC never downloaded: $(tail -3 dC.log)"
sleep 1 # some 20 kB on the device, the rest in HAProxy's buffers and the node's
"$T" rollout cancel "$ro" > /dev/null || fail "rollout cancel"
rc=0; timeout 30 tail --pid="$DC" -f /dev/null || rc=$?
[ $rc -eq 0 ] || fail "dC still runs 30 s after the cancel: $(tail -3 dC.log)"
wait "$DC" || fail "dC failed: $(tail -3 dC.log)"
"$T" device status --flash dC > dC.status || fail "device status dC"
grep -q '"version":"0.0.0"' dC.status || fail "dC installed the cancelled image: $(cat dC.status)"
grep -q "\[dC [^]]*\] rollout $ro cancelled: transfer stopped; closing" "$WORK/server.log" ||
  fail "the node did not stop dC's transfer: $(grep "rollout $ro cancelled" "$WORK/server.log")"
ok "a cancel stops a transfer behind HAProxy, whose buffers held the rest of the image"

rc=0; dev d0 "$P0" || rc=$?
[ $rc -ne 0 ] || fail "a device through a backend without send-proxy updated"
grep -q "\[- 127\.0\.0\.4:[0-9]*\] refused: a connection from this balancer must begin with a valid PROXY protocol header (--proxy-protocol; HAProxy: send-proxy or send-proxy-v2): no PROXY protocol header" N.log ||
  fail "no refusal naming the missing header: $(tail -3 N.log)"
ok "a backend without send-proxy: refused, saying what to configure"

python3 - "$PU" > unauth.out 2>&1 <<'PY' || fail "idle clients: $(cat unauth.out)"
import socket, sys, time
port = int(sys.argv[1])
def idle(src):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.2", port))
    return s
a = idle("127.0.0.5")
time.sleep(0.3)
b = idle("127.0.0.6")
time.sleep(0.3)
c = idle("127.0.0.5")
time.sleep(0.5)
print("done")
PY
grep -q "refused: 127.0.0.5 already holds 1 connection that has not authenticated" U.log ||
  fail "a second idle client from 127.0.0.5 was not refused: $(tail -5 U.log)"
[ "$(grep -c 'refused:' U.log)" = 1 ] || fail "other clients were refused too: $(grep 'refused:' U.log)"
ok "--max-unauth-per-addr counts each device's own address"

bad() { # bad REGEX VALUE
  local rc=0
  "$T" serve --listen 127.0.0.1:0 --proxy-protocol "$2" img > bad.out 2>&1 || rc=$?
  [ $rc -eq 2 ] && grep -q -- "$1" bad.out || fail "--proxy-protocol '$2': rc $rc: $(cat bad.out)"
}
bad "--proxy-protocol: 'lb.example' is not an IP address; give the balancers' addresses" lb.example
bad "give the balancers' IP addresses, separated by commas" 10.0.0.5,
bad "at most 16 balancer addresses" "$(seq -s, -f '10.0.0.%g' 1 17)"
bad "--proxy-protocol: '10.0.0.0/24' is a network; give each balancer's own address" 10.0.0.0/24
bad "--proxy-protocol: '0.0.0.0' is no peer's address" 0.0.0.0
bad "--proxy-protocol: '::' is no peer's address" ::
ok "bad --proxy-protocol values refused (a name, a network, 'any', too many)"

# Half a header, then the end of stream: refused at once (not a loop on a
# readable socket until the 10 s limit).
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.4',0)); s.connect(('127.0.0.3',$N_PORT)); s.send(b'PROXY TCP4 1.2'); time.sleep(0.2); s.close()"
wait_line N.log "refused: .*PROXY protocol header .*: it closed before its header ended" 2
ok "half a header, then the end: refused at once"

# A header in two segments (the node waits for the rest with SO_RCVLOWAT):
# once it is taken, the connection reads from one byte again. A legacy
# device's 8-byte req0 behind it is answered at once (left at the header's
# watermark, it would wait for bytes that never come).
python3 - "$N_PORT" <<'PY' || fail "a request after a split header was not answered"
import socket, sys, time
s = socket.create_connection(("127.0.0.3", int(sys.argv[1])), 5, ("127.0.0.4", 0))
s.sendall(b"PROXY TCP4 127.0.0.8 127.0.0.3 5555 80")
time.sleep(0.3) # the node has seen this part alone
s.sendall(b"\r\nreq0\r\n\r\n")
s.settimeout(3)
if not s.recv(100):
    sys.exit("closed without an answer")
s.close()
PY
wait_line N.log "\[legacy 127\.0\.0\.8:5555\]" 3
ok "a header in two segments, then an 8-byte request: answered"

# After a LOCAL header (the balancer speaking for itself): a connection that
# then ends was a check and leaves no line; one that goes on is served from
# the balancer's own address (a LOCAL header carries none to believe).
read -r lfin lbyte < <(python3 - "$N_PORT" <<'PY'
import socket, sys
LOCAL = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0])
def probe(rest, end):
    s = socket.create_connection(("127.0.0.3", int(sys.argv[1])), 5, ("127.0.0.4", 0))
    port = s.getsockname()[1]
    s.sendall(LOCAL + rest)
    if end:
        s.shutdown(socket.SHUT_WR)
    s.recv(1) # the server's close (it logs before it closes)
    s.close()
    return port
print(probe(b"", True), probe(b"x", False))
PY
) || fail "the LOCAL probes failed"
wait_line N.log "\[- 127\.0\.0\.4:$lbyte\] unknown protocol \(first byte 0x78\)" 3
! grep -q "127\.0\.0\.4:$lfin\]" N.log || fail "a LOCAL header then an end left a line: $(grep "127\.0\.0\.4:$lfin\]" N.log)"
ok "after a LOCAL header: an end leaves no line, a byte is served from the balancer's own address"

# A dual-stack listener sees an IPv4 balancer as ::ffff:127.0.0.4: the same
# balancer as 127.0.0.4, whose header is read.
"$T" serve --listen '[::]:0' --version 2.0.0 --proxy-protocol 127.0.0.4 img 2> D.log &
PIDS+=($!)
wait_line D.log 'listening on'
D_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' D.log | head -1)
python3 - "$D_PORT" <<'PY' || fail "the dual-stack probe failed"
import socket, sys
s = socket.create_connection(("127.0.0.3", int(sys.argv[1])), 5, ("127.0.0.4", 0))
s.sendall(b"PROXY TCP4 127.0.0.9 127.0.0.3 5555 80\r\nxxxx")
s.recv(1)
s.close()
PY
wait_line D.log "\[- 127\.0\.0\.9:5555\] unknown protocol \(first byte 0x78\)" 3
ok "a dual-stack listener believes the balancer's header (::ffff:127.0.0.4 is 127.0.0.4)"

# A node stopped (or starved) past the header's 10 s: a header and a request
# that came in time are read when it runs again, not refused as late (its
# loop sees the deadline before the bytes), as is a request that came in time
# after a LOCAL header; half a header is refused as before.
node S
lport=$(python3 - "$S_PORT" "$S_PID" <<'PY') || fail "the late-loop probes failed"
import os, signal, socket, sys, time
LOCAL = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0, 0])
port, pid = int(sys.argv[1]), int(sys.argv[2])
whole = socket.create_connection(("127.0.0.3", port), 5, ("127.0.0.4", 0))
half = socket.create_connection(("127.0.0.3", port), 5, ("127.0.0.4", 0))
local = socket.create_connection(("127.0.0.3", port), 5, ("127.0.0.4", 0))
local.sendall(LOCAL)
time.sleep(0.5) # all accepted, the LOCAL header taken (no line says so; ms on loopback): their 10 s run from here
os.kill(pid, signal.SIGSTOP)
try:
    whole.sendall(b"PROXY TCP4 127.0.0.8 127.0.0.3 6666 80\r\nreq0\r\n\r\n")
    half.sendall(b"PROXY TCP4 1.2")
    local.sendall(b"req0\r\n\r\n")
    time.sleep(10.5)
finally:
    os.kill(pid, signal.SIGCONT)
for s, what in ((whole, "the header"), (local, "the request after a LOCAL header")):
    s.settimeout(5)
    if not s.recv(100):
        sys.exit(what + " that came in time was refused")
print(local.getsockname()[1])
half.settimeout(5)
try:
    if half.recv(100):
        sys.exit("half a header got an answer")
except ConnectionResetError:
    pass # closed with its bytes unread: refused
PY
wait_line S.log "\[legacy 127\.0\.0\.8:6666\]" 3
wait_line S.log "\[legacy 127\.0\.0\.4:$lport\]" 3
wait_line S.log "refused: .*: no whole header within 10 s \(14 bytes came\)" 3
ok "a node stopped past the header's 10 s reads a header, and a request after a LOCAL one, that came in time; half a header is refused"

# A connection that has sent half a header when the node stops: freed (the
# ASan build's leak check), and the node exits 0.
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.4',0)); s.connect(('127.0.0.3',$N_PORT)); s.send(b'PROXY TCP4 1.2'); time.sleep(5)" &
PIDS+=($!)
sleep 0.3
kill -TERM "$N_PID"
rc=0; wait "$N_PID" || rc=$?
[ $rc -eq 0 ] || fail "the node exited $rc on SIGTERM with a header half read: $(tail -3 N.log)"
ok "a node stops cleanly with a header half read"
