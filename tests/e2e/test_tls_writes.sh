#!/usr/bin/env bash
# Inside TLS the server writes an answer at once when nothing waits before
# it (tls_write_now), and queues it when the socket cannot take it.
# OpenSSL then holds part of an encrypted record, and the queue's write
# (server/conn.c, tls_flush) must pass the same bytes from their start, or
# the stream breaks or loses bytes. And what OpenSSL read ahead beyond one
# read's buffer is taken without a socket event (read_now reads again while
# OpenSSL holds more): without that the answers stopped short. A legacy device inside TLS asks for the
# packages of a 16 MiB image for a second before it reads any (answers
# then meet a full socket), then reads them all, asking for the rest as
# the socket takes them: every package arrives, in order, byte-exact.
# (Sending all of its requests before reading any, it could wait for
# ever: the server stops reading a peer whose answers pile up unread. And
# its receive window is the kernel's: a 4 KiB one, below loopback's 64 KiB
# segment, left the data to zero-window probes, 40 s apart under ASan.)
source "$(dirname "$0")/lib.sh"
cd "$WORK"
server_cert
make_image img $((16 * 1024 * 1024))
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key --no-progress
timeout 120 python3 - "$SERVER_PORT" srv.pem img > burst.out 2>&1 <<'PY' || fail "$(tail -3 burst.out)"
import select, socket, ssl, sys, time
port, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
img = open(path, "rb").read()
n = (len(img) + 511) // 512
reqs = b"req0\r\n\r\n" * n
raw = socket.socket()
raw.connect(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
s.setblocking(False)
sent = 0

def send_more():
    """Sends what the socket takes of the requests (a retry after a
    would-block passes the same bytes from the same place)."""
    global sent
    while sent < len(reqs):
        try:
            sent += s.send(reqs[sent:sent + 16384])
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return

# For a second, only requests go out, none of the answers is read: the
# server answers until the socket is full. Requests the server's buffers
# cannot hold yet go out while the answers are read: a client that only
# writes and a server that stops reading a peer whose answers pile up
# would wait for each other.
start = time.monotonic()
while time.monotonic() - start < 1:
    send_more()
    select.select([], [s] if sent < len(reqs) else [], [], 0.05)
buf, got = b"", bytearray()

def more():
    global buf
    deadline = time.monotonic() + 30
    while True:
        send_more()
        try:
            d = s.recv(65536)
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit("the answers stopped after %d of %d bytes" % (len(got), len(img)))
            select.select([s], [s] if sent < len(reqs) else [], [], min(left, 0.5))
    if not d:
        sys.exit("the server closed after %d of %d bytes" % (len(got), len(img)))
    buf += d

while len(got) < len(img):
    while b"\r\n\r\n" not in buf:
        more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    length = int(dict(l.split(b": ") for l in head.split(b"\r\n"))[b"length"])
    while len(buf) < length:
        more()
    got += buf[:length]
    buf = buf[length:]
if bytes(got) != img:
    sys.exit("the %d bytes read differ from the image" % len(got))
print("ok", n)
PY
stop_server
grep -q "legacy device: sent the last package" server.log || fail "the server did not log the last package"
ok "inside TLS, $(awk '{print $2}' burst.out) answers asked before any was read came back in order, byte-exact"

# Records OpenSSL reads ahead must be taken without another socket event:
# (1) a request in the same TCP segment as the client's Finished (taken
# when the handshake ends), (2) two requests as two records in one segment
# (libevent reads one record per readable event; the other waits in
# OpenSSL). Then the client sends nothing more: both must be answered
# within 2 s, where the idle timeout is 10 s. Each hand-over removed, the
# answer never came (the mutation audit: no other test sent this way).
make_image small 4096
start_server small 2.0.0 --tls-cert srv.pem --tls-key srv.key --no-progress --idle-timeout 10
timeout 30 python3 - "$SERVER_PORT" srv.pem "$E2E" > ahead.out 2>&1 <<'PY' || fail "$(tail -3 ahead.out)"
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
from tlsbio import handshake
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
REQ = b"req0\r\n\r\n"

def client():
    raw = socket.create_connection(("127.0.0.1", port))
    raw.settimeout(5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    return raw, inc, out, obj

def answers(raw, inc, obj, want, secs=2.0):
    got, t_end = b"", time.monotonic() + secs
    while got.count(b"total: ") < want:
        left = t_end - time.monotonic()
        if left <= 0:
            return got.count(b"total: ")
        raw.settimeout(left)
        try:
            d = raw.recv(65536)
        except socket.timeout:
            continue
        if not d:
            break
        inc.write(d)
        while True:
            try:
                got += obj.read(65536)
            except ssl.SSLWantReadError:
                break
    return got.count(b"total: ")

# (1) the first request with the handshake's Finished
raw, inc, out, obj = client()
handshake(raw, inc, out, obj, then=REQ)
n = answers(raw, inc, obj, 1)
if n != 1:
    sys.exit("a request sent with the client's Finished got %d answers in 2 s" % n)
raw.close()
# (2) two records in one segment, after the handshake
raw, inc, out, obj = client()
handshake(raw, inc, out, obj)
obj.write(REQ)
obj.write(REQ)  # a record of its own
raw.sendall(out.read())
n = answers(raw, inc, obj, 2)
if n != 2:
    sys.exit("two requests in one segment got %d answers in 2 s" % n)
raw.close()
print("ok")
PY
stop_server
ok "inside TLS, records read ahead are answered without another socket event (with the Finished; two in one segment)"

# A transfer longer than the idle timeout is not cut inside TLS either: the
# deadline from accept covers the handshake and HELLO only, and a legacy
# device has no HELLO. (3 s each: a device through a proxy at 50 kB/s; a
# legacy one pausing 10 ms after each of its 293 packages.)
make_image slow.img 150000
start_server slow.img 2.0.0 --tls-cert srv.pem --tls-key srv.key --no-progress --idle-timeout 2
start_proxy slow "$SERVER_PORT" --rate 50000
"$TCPOTA" device --server "localhost:$PROXY_PORT" --flash slowdev --id slow-dev --ca srv.pem --max-attempts 1 \
  2> slowdev.log || fail "a device slower than the idle timeout failed inside TLS: $(tail -2 slowdev.log)"
check_device slowdev slow.img
timeout 30 python3 - "$SERVER_PORT" srv.pem slow.img > slowleg.out 2>&1 <<'PY' ||
import re, socket, ssl, sys, time
port, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
img = open(path, "rb").read()
raw = socket.create_connection(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
got, buf = b"", b""

def more():
    global buf
    d = s.recv(4096)
    if not d:
        sys.exit("closed by the server after %d bytes" % len(got))
    buf += d

while len(got) < len(img):
    s.sendall(b"req0\r\n\r\n")
    while b"\r\n\r\n" not in buf:
        more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"length: (\d+)", head).group(1))
    while len(buf) < n:
        more()
    got, buf = got + buf[:n], buf[n:]
    time.sleep(0.01)
sys.exit(0 if got == img else "other bytes")
PY
  fail "a legacy device slower than the idle timeout inside TLS: $(tail -3 slowleg.out)"
! grep -q 'within 2 s\|idle for' server.log || fail "a slow transfer inside TLS was cut: $(grep -m1 'within 2 s\|idle for' server.log)"
# But silence is: a legacy device inside TLS that takes one package and
# then sends nothing is closed after the idle timeout (the bufferevent's
# read timeout: the deadline from accept does not apply to legacy).
timeout 30 python3 - "$SERVER_PORT" srv.pem > silent.out 2>&1 <<'PY' ||
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
raw = socket.create_connection(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
s.sendall(b"req0\r\n\r\n")
t0 = time.monotonic()
s.settimeout(8)
try:
    while s.recv(4096):
        pass
except socket.timeout:
    sys.exit("a silent legacy device inside TLS was still connected after 8 s")
print("closed after %.1f s" % (time.monotonic() - t0))
PY
  fail "$(tail -1 silent.out)"
wait_line server.log 'idle for 2 s \(nothing received\); closing' 5
# And one that asks and never reads: once its answers pile up the server
# stops reading it, and the write timeout ends it.
timeout 30 python3 - "$SERVER_PORT" srv.pem > deaf.out 2>&1 <<'PY' &
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
raw = socket.create_connection(("127.0.0.1", port))
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
s.sendall(b"req0\r\n\r\n")
s.setblocking(False)
reqs, last = b"req1\r\n\r\n" * 512, time.monotonic()
while time.monotonic() - last < 1.0:
    try:
        s.send(reqs)
        last = time.monotonic()
    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
        time.sleep(0.01)
print("blocked", flush=True)
time.sleep(20)
PY
deaf=$!
PIDS+=("$deaf")
wait_line server.log 'idle for 2 s \(not reading what we send\); closing' 15
kill "$deaf" 2> /dev/null || true
kill "$PROXY_PID"
stop_server
ok "inside TLS, transfers longer than the idle timeout, v1 and legacy, not cut; a silent one is ($(cat silent.out)), and one not reading"
