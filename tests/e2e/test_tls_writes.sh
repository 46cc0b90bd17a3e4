#!/usr/bin/env bash
# Inside TLS the server writes an answer at once when nothing waits before
# it (tls_write_now), and queues it in the bufferevent when the socket
# cannot take it. OpenSSL then holds part of an encrypted record, and the
# bufferevent's retry must pass the same bytes from their start, or the
# stream breaks or loses bytes. A legacy device inside TLS with a 4 KiB
# receive window asks for every package of a 16 MiB image before it reads
# any (about a dozen answers meet a full socket), then reads them all:
# every package arrives, in order, byte-exact.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.pem \
  -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" > /dev/null 2>&1 ||
  fail "openssl could not make a certificate"
make_image img $((16 * 1024 * 1024))
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key --no-progress
timeout 120 python3 - "$SERVER_PORT" srv.pem img > burst.out 2>&1 <<'PY' || fail "$(tail -3 burst.out)"
import socket, ssl, sys, time
port, ca, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
img = open(path, "rb").read()
n = (len(img) + 511) // 512
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.connect(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
s.sendall(b"req0\r\n\r\n" * n)
time.sleep(1)  # the server answers until the socket is full
s.settimeout(30)
buf, got = b"", bytearray()

def more():
    global buf
    try:
        d = s.recv(65536)
    except socket.timeout:
        sys.exit("the answers stopped after %d of %d bytes" % (len(got), len(img)))
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
