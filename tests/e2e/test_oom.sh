#!/usr/bin/env bash
# Out of memory while queueing output: the server ends that connection at
# once (a stream with a hole would show the device frames past a gap, or
# leave it waiting) and says so; the device resumes on its next connection.
# tcpota-failqueue (tests/tools/failqueue.c) makes every 3rd queueing of
# image bytes fail as libevent fails without memory. Inside TLS the server
# queues 256 KiB at a time, so a failure lands in the middle of a stream: 4
# devices of a 1 MiB image; then 4 in the clear. Then HTTP downloads (256
# KiB windows): curl resumes with a Range after each cut and ends with the
# image. Last a legacy device asks for every package before it reads any:
# once the socket is full the server copies each answer into its queue, the
# 3rd copy fails, and the connection ends there; what came before is the
# image. Then the same device where the server, having stopped reading it
# (its answers pile up unread), finds no memory to keep the requests it has
# just read: that connection ends too; and so does a legacy device's inside
# TLS whose first request a fleet server cannot keep while its store
# chooses.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
cd "$WORK"
server_cert
make_image img 1048576
# The server, and only it, with the library.
with_failqueue failing-tcpota
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=3 start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key \
  --no-progress
# accounted NAME LINE: every queueing that failed (failqueue's lines in
# server.log) is one connection the server ended with LINE in its log; sets
# INJECTED to their count.
accounted() {
  local told
  INJECTED=$(grep -c '^failqueue: ' server.log || true)
  told=$(grep -c "$2" server.log || true)
  [ "$INJECTED" -ge 1 ] || fail "$1: no queueing failed: the test did not test anything"
  [ "$told" -eq "$INJECTED" ] ||
    fail "$1: $INJECTED queueings failed, the server ended $told connections for it"
}

# devices NAME [--ca srv.pem]: 4 devices update from the server; each must
# end byte-exact, never see a DATA frame past a gap, and every failure must
# be one connection the server ended for it.
devices() {
  local name=$1 i pids=(); shift
  for i in 1 2 3 4; do
    "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" "$@" --flash "$name$i" --id "$name-$i" \
      --backoff-min-ms 50 --backoff-max-ms 200 --timeout-ms 20000 --quiet 2> "$name$i.log" &
    pids+=($!)
  done
  for i in 1 2 3 4; do
    wait "${pids[$((i - 1))]}" || fail "$name device $i failed: $(tail -3 "$name$i.log")"
    check_device "$name$i" img
    grep -q 'stale_frames=0' "$name$i.log" ||
      fail "$name device $i saw frames past a gap: $(grep stats "$name$i.log")"
  done
  stop_server
  accounted "$name" "out of memory ${WHAT:-queueing image data}; closing"
  ok "$name: $INJECTED failure(s) ${WHAT:-queueing image data}, each ended its connection; 4 devices byte-exact, no frame past a gap"
}
devices tls --ca srv.pem
# In the clear the whole image is one run (sendfile): a failure queues nothing.
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=3 start_server img 2.0.0 --no-progress
devices plain

# ---- HTTP downloads ---------------------------------------------------------
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=3 start_fleet --ota-listen 127.0.0.1:0
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' server.log | tail -1)
[ -n "$OTA_PORT" ] || fail "no download port in: $(grep 'listening on' server.log)"
"$TCPOTA" image add --version 2.0.0 --model esp32 img > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
tries=0 rc=1
while [ $rc -ne 0 ] && [ $tries -lt 30 ]; do
  tries=$((tries + 1)) rc=0
  curl -sS -C - -o http.bin -H 'X-Tcpota-Version: 1.0.0' --max-time 20 \
    "http://127.0.0.1:$OTA_PORT/ota/esp32/oom-http.bin" 2>> curl.log || rc=$?
done
[ $rc -eq 0 ] || fail "curl did not finish in $tries tries: $(tail -3 curl.log)"
cmp http.bin img || fail "the HTTP download differs from the image"
stop_fleet
accounted HTTP 'http: out of memory queueing image data; closing'
ok "HTTP: $INJECTED queueing failures, each ended its connection; curl resumed ($tries requests), byte-exact"

# ---- a legacy device --------------------------------------------------------
# flood PORT IMAGE: a legacy device asks for every package before it reads
# any (a socket receive buffer of 4 KiB), then reads until the server
# closes; it must have been cut before the last package, and what came
# before is the image.
cat > flood.py <<'PY'
import socket, sys, threading, time
port, img = int(sys.argv[1]), open(sys.argv[2], "rb").read()
n = (len(img) + 511) // 512
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
def ask():  # may block once the server stops reading, and meet its close
    try:
        s.sendall(b"req0\r\n\r\n" * n)
    except OSError:
        pass
threading.Thread(target=ask, daemon=True).start()
time.sleep(1)  # the server answers until the socket is full, then queues
s.settimeout(10)
buf = b""
while True:
    try:
        d = s.recv(65536)
    except socket.timeout:
        sys.exit("no end after %d bytes: the server kept the connection" % len(buf))
    except ConnectionResetError:
        break  # closed with requests unread: what was in flight is lost
    if not d:
        break
    buf += d
got, pkgs = bytearray(), 0
while buf:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        break  # a header cut by the reset
    length = int(head.split(b"length: ")[1])
    got += rest[:length]  # the last may be cut by the reset
    buf = rest[length:]
    pkgs += 1
if pkgs >= n:
    sys.exit("all %d packages came: the server queued past a failure" % n)
if bytes(got) != img[:len(got)]:
    sys.exit("the packages before the end differ from the image")
print("closed after %d of %d packages, byte-exact" % (pkgs, n))
PY
make_image small 4194304
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=3 TCPOTA_TEST_FAIL_ADD=1 start_server small 2.0.0 --no-progress
timeout 60 python3 flood.py "$SERVER_PORT" small > legacy.out 2>&1 || fail "$(tail -3 legacy.out)"
stop_server
accounted legacy 'out of memory queueing a package; closing'
[ "$INJECTED" -eq 1 ] || fail "legacy: $INJECTED queueings failed, 1 expected (the connection ends at the first)"
ok "legacy: $(cat legacy.out)"
# The same device, every answer queued: once they pile up unread the
# server stops reading it, and the requests read at that moment, which it
# must keep for later, find no memory. Going on would leave a hole in what
# the session sees: the connection ends there. A 32 MiB image: its answers
# pile up whatever the kernel's socket buffers take.
make_image big $((32 * 1024 * 1024))
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=1 TCPOTA_TEST_FAIL_READ=1 start_server big 2.0.0 \
  --no-progress
timeout 60 python3 flood.py "$SERVER_PORT" big > kept.out 2>&1 || fail "kept input: $(tail -3 kept.out)"
stop_server
accounted 'kept input' 'out of memory keeping what the device sent; closing'
[ "$INJECTED" -eq 1 ] || fail "kept input: $INJECTED failures, 1 expected (the connection ends at the first)"
ok "kept input: $(cat kept.out)"

# ---- a legacy device inside TLS, fleet mode --------------------------------
# A fleet server keeps a legacy device's first request until its store has
# chosen the image; inside TLS it keeps it in the bufferevent's input. No
# memory to keep it: the connection ends and says so, rather than serve a
# stream with a hole.
TCPOTA=./failing-tcpota TCPOTA_TEST_FAIL_EVERY=1 TCPOTA_TEST_FAIL_READ=1 start_fleet \
  --tls-cert srv.pem --tls-key srv.key
timeout 30 python3 - "$SERVER_PORT" srv.pem > tlskept.out 2>&1 <<'PY' || fail "kept input, TLS: $(tail -3 tlskept.out)"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
s = ssl.create_default_context(cafile=ca).wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                                       server_hostname="localhost")
s.sendall(b"req0\r\n\r\n")
s.settimeout(10)
try:
    d = s.recv(4096)
except socket.timeout:
    sys.exit("no end: the server kept the connection")
except (ConnectionResetError, ssl.SSLError):
    d = b""
if d:
    sys.exit("an answer came: %r" % d[:60])
print("closed without an answer")
PY
stop_fleet
accounted 'kept input, TLS' 'out of memory keeping what the device sent; closing'
ok "kept input, TLS: $(cat tlskept.out)"

# A disk that fails midway through an image: sign says so and writes no
# manifest (it wrote one for the bytes read before the error, exit 0).
"$TCPOTA" keygen --out rel 2> /dev/null || fail "keygen failed"
rc=0
TCPOTA_TEST_FREAD_EIO_AFTER=65536 ./failing-tcpota sign --key rel.key --version 2.0.0 --model esp32 img \
  2> eio.log || rc=$?
[ $rc -eq 1 ] && grep -q "tcpota sign: image: cannot read img: Input/output error" eio.log &&
  [ ! -e img.manifest ] || fail "sign with a read error midway: exit $rc, $(ls img.manifest 2>&1): $(cat eio.log)"
ok "sign: a read error midway through the image fails, no manifest written"

# An image file cut shorter while the server copies it (cp new.bin fw.bin
# during a start): the copy finds the end early, by copy_file_range (1) or
# by pread where the kernel cannot copy (2). The start says so, at once;
# without the check each loop asked for the missing bytes for ever.
for mode in 1 2; do
  rc=0
  TCPOTA_TEST_IMAGE_EOF=$mode timeout 20 ./failing-tcpota serve --listen 127.0.0.1:0 --version 2.0.0 img \
    2> shrink$mode.log || rc=$?
  [ $rc -eq 1 ] && grep -q "image img became shorter while it was read (being written?); try again once it is written whole" shrink$mode.log ||
    fail "an image cut shorter during its copy (mode $mode): exit $rc, $(tail -2 shrink$mode.log)"
  grep -q '^failqueue: ' shrink$mode.log || fail "mode $mode: nothing was made to find the end"
done
ok "an image that became shorter while copied stops the start, saying so (copy_file_range and pread)"
