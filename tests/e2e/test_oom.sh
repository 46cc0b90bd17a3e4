#!/usr/bin/env bash
# Out of memory while queueing image bytes: the server ends that connection
# at once (a stream with a hole would show the device frames past a gap, or
# leave it waiting) and says so; the device resumes on its next connection.
# tcpota-failqueue (tests/tools/failqueue.c) makes every 3rd queueing of
# image bytes fail as libevent fails without memory. Inside TLS the server
# queues 256 KiB at a time, so a failure lands in the middle of a stream:
# 4 devices of a 1 MiB image. Then HTTP downloads (256 KiB windows): curl
# resumes with a Range after each cut, and ends with the image.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
cd "$WORK"
[ -f "${FAILQUEUE:-}" ] || fail "FAILQUEUE must name the tcpota-failqueue library"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.pem \
  -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" > /dev/null 2>&1 ||
  fail "openssl could not make a certificate"
make_image img 1048576
# Under ASan its runtime must come first among the preloaded libraries.
preload=$FAILQUEUE
asan=$(ldd "$TCPOTA" | awk '/libasan/ {print $3}')
[ -n "$asan" ] && preload=$asan:$FAILQUEUE
LD_PRELOAD=$preload TCPOTA_TEST_FAIL_EVERY=3 start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key \
  --no-progress
pids=()
for i in 1 2 3 4; do
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --ca srv.pem --flash "d$i" --id "oom-$i" \
    --backoff-min-ms 50 --backoff-max-ms 200 --timeout-ms 20000 --quiet 2> "dev$i.log" &
  pids+=($!)
done
for i in 1 2 3 4; do
  wait "${pids[$((i - 1))]}" || fail "device $i failed: $(tail -3 "dev$i.log")"
  check_device "d$i" img
  # Never a frame past a gap: every DATA frame came in order.
  grep -q 'stale_frames=0' "dev$i.log" || fail "device $i saw frames past a gap: $(grep stats "dev$i.log")"
done
stop_server
injected=$(grep -c '^failqueue: ' server.log || true)
told=$(grep -c 'out of memory queueing image data; closing' server.log || true)
[ "$injected" -ge 1 ] || fail "no queueing failed: the test did not test anything"
[ "$told" -eq "$injected" ] ||
  fail "$injected queueings failed, the server ended $told connections for it"
ok "$injected queueing failures, each ended its connection; 4 devices byte-exact, no frame past a gap"

# ---- HTTP downloads ---------------------------------------------------------
LD_PRELOAD=$preload TCPOTA_TEST_FAIL_EVERY=3 start_fleet --ota-listen 127.0.0.1:0
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
injected=$(grep -c '^failqueue: ' server.log || true)
told=$(grep -c 'http: out of memory queueing image data; closing' server.log || true)
[ "$injected" -ge 1 ] || fail "no HTTP queueing failed: the test did not test anything"
[ "$told" -eq "$injected" ] ||
  fail "$injected HTTP queueings failed, the server ended $told connections for it"
ok "HTTP: $injected queueing failures, each ended its connection; curl resumed ($tries requests), byte-exact"
