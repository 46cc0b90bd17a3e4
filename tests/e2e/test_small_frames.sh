#!/usr/bin/env bash
# Devices whose frames are smaller than the server's (a HELLO MAX_PAYLOAD
# below --chunk + 4: ESP-IDF's smallest frame buffer offers 520) get the
# whole image byte-exact: at the first such size from frames prebuilt at
# it (the image's variant), at a second size from frames built one by one
# (OUT_HIGH_COPY at a time, OUT_COPY_TURNS a writable turn), in the clear
# and inside TLS, from 0 and from inside a frame. A legacy device that
# pipelines its requests without reading (its answers then pile up and
# the rest of its requests wait: LEGACY_QUEUE_MAX) gets every package in
# order. What each reader checks: every DATA frame's offset follows the
# last, its payload is the image's bytes there and no longer than the
# device asked for.
source "$(dirname "$0")/lib.sh"

cd "$WORK"
make_image img 3000000
server_cert
start_server img 2.0.0 --idle-timeout 20
read_image() { # PORT MAX_PAYLOAD FROM [tls]
  python3 - "$@" "$(dirname "$0")" img <<'PY'
import socket, ssl, struct, sys, time
port, mp, start, tls, here, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
sys.path.insert(0, here)
import frames
img = open(path, "rb").read()
s = socket.create_connection(("127.0.0.1", port), timeout=20)
if tls == "tls":
    ctx = ssl.create_default_context(cafile="srv.pem")
    s = ctx.wrap_socket(s, server_hostname="localhost")
s.sendall(frames.hello(b"small-%d-%d-%s" % (mp, start, tls.encode()), max_payload=mp))
r = frames.Reader(s)
kind, _ = r.next()
assert kind == frames.WELCOME, kind
kind, offer = r.next()
assert kind == frames.OFFER, kind
image_id = offer[:32]
t0 = time.monotonic()
s.sendall(frames.frame(0x05, image_id + struct.pack("<I", start)))  # ACCEPT
at = None
while at is None or at < len(img):
    kind, p = r.next()
    if kind != 0x07:
        continue
    off, n = struct.unpack("<I", p[:4])[0], len(p) - 4
    if at is None:
        at = off  # a resume starts at the sector holding `start` or before
        if at > start:
            sys.exit("DATA starts at %d, past %d" % (at, start))
    if off != at or n > mp - 4 or p[4:] != img[off:off + n]:
        sys.exit("frame at %d (%d bytes) where %d was due, or not the image's bytes" % (off, n, at))
    at += n
print("MAX_PAYLOAD %d from %d %s: %d bytes in %.2f s" % (mp, start, tls, len(img) - start, time.monotonic() - t0))
PY
}
for mp in 520 1000 16384; do
  read_image "$SERVER_PORT" "$mp" 0 plain || fail "MAX_PAYLOAD $mp (above)"
done
read_image "$SERVER_PORT" 520 12345 plain || fail "MAX_PAYLOAD 520 from inside a frame (above)"
stop_server
ok "devices at MAX_PAYLOAD 520 (prebuilt), 1000 (built one by one) and 16384 get the image byte-exact, also from inside a frame"

start_server img 2.0.0 --idle-timeout 20 --tls-cert srv.pem --tls-key srv.key
for mp in 520 1000; do
  read_image "$SERVER_PORT" "$mp" 0 tls || fail "TLS, MAX_PAYLOAD $mp (above)"
done
stop_server
ok "the same inside TLS"

# A legacy device's requests, pipelined without reading for a second: the
# server stops taking them while 16 KiB of answers wait, and every package
# comes, in order, as a stop-and-wait device would have had it.
start_server img 2.0.0 --idle-timeout 20
python3 - "$SERVER_PORT" <<'PY' || fail "pipelined legacy requests (above)"
import random, re, socket, sys, threading, time
port = int(sys.argv[1])
img = open("img", "rb").read()
rnd = random.Random(7)
reqs, expect, pos, last = [], [], 0, 0
while True:
    again = bool(expect) and rnd.random() < 0.2
    if expect and not again:
        pos += last
    last = min(512, len(img) - pos)
    reqs.append(b"req1\r\n\r\n" if again else b"req0\r\n\r\n")
    expect.append((pos, last))
    if pos + last >= len(img) and not again:
        break
s = socket.create_connection(("127.0.0.1", port), timeout=15)
threading.Thread(target=lambda: s.sendall(b"".join(reqs)), daemon=True).start()
time.sleep(1)
buf = b""
for i, (off, n) in enumerate(expect):
    while True:
        m = re.match(rb"total: (\d+)\r\nlength: (\d+)\r\n\r\n", buf)
        if m and len(buf) >= m.end() + int(m.group(2)):
            break
        more = s.recv(1 << 20)
        if not more:
            sys.exit("closed at answer %d of %d" % (i, len(expect)))
        buf += more
    body = buf[m.end():m.end() + int(m.group(2))]
    buf = buf[m.end() + int(m.group(2)):]
    if int(m.group(1)) != len(img) or body != img[off:off + n]:
        sys.exit("answer %d: not the package at %d (%d bytes)" % (i, off, n))
print("%d legacy answers in order" % len(expect))
PY
stop_server
ok "a legacy device's pipelined requests: every package, in order"
