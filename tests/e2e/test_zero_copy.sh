#!/usr/bin/env bash
# In the clear a device's image leaves the server by sendfile from the
# image's memory file: the server copies no image byte through its own
# memory. The kernel counts what sendfile moves as read by the process
# (/proc/PID/io: rchar, one read call per sendfile), where a server that
# copies (write/writev from its memory, or read then write) reads the image
# without a read call or in many small ones. One device takes a 16 MiB
# image: the server must have read at least the image's bytes, in fewer
# read calls than one per 64 KiB.
# Then every 2nd sendfile() finds the socket taking nothing (EAGAIN, as when
# TCP's memory runs short; tcpota-failqueue, tests/tools/failqueue.c): the
# server tries again when the socket is writable, and the device gets its
# image from one offer, on one connection (libevent's sendfile returns 0 then, which a
# bufferevent takes for the end of the stream).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
size=$((16 * 1024 * 1024))
make_image img $size
start_server img 2.0.0 --no-progress
# io FIELD: the server's counter from /proc/PID/io.
io() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$SERVER_PID/io"; }
[ -n "$(io rchar)" ] || fail "no /proc/$SERVER_PID/io: the kernel keeps no I/O counts per process"
rchar0=$(io rchar) syscr0=$(io syscr)
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dev --slot-size $size --id zc-dev --quiet \
  2> dev.log ||
  fail "device failed: $(tail -3 dev.log)"
check_device dev img
rchar=$(($(io rchar) - rchar0)) syscr=$(($(io syscr) - syscr0))
stop_server
[ "$rchar" -ge "$size" ] ||
  fail "the server read $rchar bytes for a $size-byte image: it sent the image from its own memory, not by sendfile"
[ "$syscr" -lt $((size / 65536)) ] ||
  fail "the server made $syscr read calls for a $size-byte image: it copies the image in pieces, not by sendfile"
ok "a $size-byte image went by sendfile: $rchar bytes read by the kernel for the server in $syscr calls"

with_failqueue eagain-tcpota
TCPOTA=./eagain-tcpota TCPOTA_TEST_SENDFILE_EAGAIN=2 start_server img 2.0.0 --no-progress
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dev2 --slot-size $size --id eagain-dev --quiet \
  2> dev2.log ||
  fail "device failed: $(tail -3 dev2.log)"
stop_server
check_device dev2 img
injected=$(grep -c '^failqueue: sendfile says EAGAIN' server.log || true)
[ "$injected" -ge 1 ] || fail "no sendfile said EAGAIN: the test did not test anything"
offers=$(grep -c 'offer 2.0.0' server.log || true)
[ "$offers" -eq 1 ] && ! grep -q 'disconnected mid-transfer' server.log ||
  fail "the image took $offers offers: $(grep -m1 'disconnected\|error' server.log)"
ok "$injected sendfile calls said EAGAIN: each tried again, the image came on one connection"

# The prebuilt frames' file, and the image's private copy, cannot be written
# whole (here: a file size limit of 200 KiB, SIGXFSZ ignored, so pwrite says
# EFBIG; on a host: a full $TMPDIR): the server keeps both elsewhere (a
# memfd, or memory), and a device gets the image byte-exact. Sent from a file written in part,
# they would end at its end (sendfile sends nothing past it).
head -c 600000 /dev/urandom > fsz.img
( trap '' XFSZ; ulimit -f 200; exec "$TCPOTA" serve --listen 127.0.0.1:0 --version 2.0.0 --no-progress fsz.img ) \
  2> fsz.log &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line fsz.log 'listening on'
port=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' fsz.log | head -1)
"$TCPOTA" device --server "127.0.0.1:$port" --flash dev3 --id fsz-dev --max-attempts 1 --quiet 2> dev3.log ||
  fail "device failed beside a frames file that could not be written: $(tail -3 dev3.log; tail -3 fsz.log)"
check_device dev3 fsz.img
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "the server exited $? on SIGTERM"
ok "a frames file that cannot be written whole: the frames kept elsewhere, the image byte-exact"
