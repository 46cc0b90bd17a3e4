#!/usr/bin/env bash
# A 1 MiB image reaches a device byte-exact through a proxy that cuts the
# connection three times at random offsets; each cut costs less than a
# 4 KiB sector of bytes fetched again. Then the same through 1-byte
# pieces with delay, and through a proxy that flips a byte.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 1048576
start_server "$WORK/img" 2.0.0

seed=${TCPOTA_SEED:-$RANDOM}
echo "cut seed $seed"
start_proxy proxy "$SERVER_PORT" --cut-random 3 --seed "$seed" --cut-range 20000:1000000
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d1" --id cut-dev \
  --backoff-min-ms 50 --backoff-max-ms 200 --progress lines 2> "$WORK/d1.log" ||
  fail "device behind the cutting proxy failed"
check_device "$WORK/d1" "$WORK/img"
# Each progress line gives the share of its bytes (it once gave the 10 %
# step they had passed: "40% (507904/1048576 bytes)").
lines=0
while read -r pct done total; do
  [ "$pct" -eq $((done * 100 / total)) ] || fail "progress line says $pct% for $done of $total bytes"
  lines=$((lines + 1))
done < <(sed -nE 's/.* ([0-9]+)% \(([0-9]+)\/([0-9]+) bytes\)$/\1 \2 \3/p' "$WORK/d1.log")
[ "$lines" -ge 5 ] || fail "only $lines progress lines: $(cat "$WORK/d1.log")"
cuts=$(grep -c 'cut at' "$WORK/proxy.log" || true)
[ "$cuts" -eq 3 ] || fail "proxy made $cuts cuts, expected 3"
refetched=$(sed -nE 's/.*stats .*refetched=([0-9]+).*/\1/p' "$WORK/d1.log" | tail -1)
[ -n "$refetched" ] || fail "device printed no stats"
# Each cut costs less than a sector: the device keeps its last whole one.
[ "$refetched" -lt $((3 * 4096)) ] || fail "refetched $refetched bytes for 3 cuts (>= 3 x 4 KiB)"
resumes=$(grep -c 'resume from' "$WORK/server.log" || true)
[ "$resumes" -ge 2 ] || fail "server logged $resumes resumes, expected >= 2"
ok "3 cuts, $refetched bytes fetched again (limit 3 x 4096), $resumes resumes"

# Cuts at chosen offsets: inside the first frame, right after the offer, and
# 1 byte before the end of the whole stream.
kill "$PROXY_PID"
start_proxy chosen "$SERVER_PORT" --cut-at 5,200,1048000
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d0" --id chosen-dev \
  --backoff-min-ms 50 --backoff-max-ms 200 2> "$WORK/d0.log" || fail "device behind chosen cuts failed"
check_device "$WORK/d0" "$WORK/img"
[ "$(grep -c 'cut at' "$WORK/chosen.log")" -eq 3 ] || fail "chosen cuts did not all happen"
ok "cuts at chosen offsets 5, 200, 1048000"

# 1-byte pieces and 5 ms delay each way, small image to keep it quick.
make_image "$WORK/small" 65536
kill "$SERVER_PID"; wait "$SERVER_PID" || true
start_server "$WORK/small" 3.0.0
start_proxy slow "$SERVER_PORT" --chunk 1 --chunk-gap-us 0 --delay 5
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d2" --id slow-dev \
  2> "$WORK/d2.log" || fail "device behind the 1-byte proxy failed"
check_device "$WORK/d2" "$WORK/small"
ok "1-byte pieces with delay"

# A flipped byte in the stream: the CRC catches it, nothing corrupt is written.
start_proxy flip "$SERVER_PORT" --flip-at 30000
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d3" --id flip-dev \
  --backoff-min-ms 50 2> "$WORK/d3.log" || fail "device behind the flipping proxy failed"
check_device "$WORK/d3" "$WORK/small"
grep -q 'flipped' "$WORK/flip.log" || fail "proxy did not flip a byte"
grep -q 'session failed: frame CRC mismatch; retrying' "$WORK/d3.log" ||
  fail "the device did not say the CRC failed, once: $(grep -i crc "$WORK/d3.log")"
grep -q 'device error: frame CRC mismatch$' "$WORK/server.log" ||
  fail "the server did not log the device's CRC error, once: $(grep -i crc "$WORK/server.log")"
ok "flipped byte detected by CRC, image byte-exact"

# A link cut before every checkpoint (each 14,000 bytes, the checkpoint
# every 16 KiB): each connection keeps its last whole sector, 12 KiB of the
# 13.7 it wrote (tcpota_dev_disconnect), so every attempt is progress and
# the image arrives (while only checkpoints were kept, each kept nothing:
# a trial's device gave up after 3 attempts).
cuts=$(python3 -c "print(','.join(str(14000 * i) for i in range(1, 20)))")
start_proxy early "$SERVER_PORT" --cut-at "$cuts" --quiet
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d4" --id early-dev --progress none \
  --backoff-min-ms 50 --backoff-max-ms 100 --max-attempts 3 2> "$WORK/d4.log" ||
  fail "cuts before every checkpoint: $(tail -2 "$WORK/d4.log")"
check_device "$WORK/d4" "$WORK/small"
read -r refetched conns < <(sed -nE 's/.*stats .*refetched=([0-9]+) connections=([0-9]+).*/\1 \2/p' "$WORK/d4.log" | tail -1)
[ -n "$conns" ] && [ "$conns" -ge 5 ] && [ "$refetched" -lt $(((conns - 1) * 4096)) ] ||
  fail "cut every 14,000 bytes: ${conns:-?} connections fetched ${refetched:-?} bytes again (each cut may cost less than a 4096-byte sector)"
ok "a link cut before every checkpoint: $conns connections, each kept its whole sectors ($refetched bytes fetched again)"

# gives_up NAME CHUNK HINT: a server of --chunk CHUNK behind a proxy that
# cuts every 3,000 bytes; the device (--max-attempts 3) gives up saying
# HINT, why it kept nothing.
gives_up() {
  kill "$SERVER_PID"; wait "$SERVER_PID" || true
  start_server "$WORK/small" 3.0.0 --chunk "$2"
  start_proxy "$1" "$SERVER_PORT" --cut-at "$(python3 -c "print(','.join(str(3000 * i) for i in range(1, 20)))")" --quiet
  local rc=0
  "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/$1" --id "$1-dev" --progress none \
    --backoff-min-ms 50 --backoff-max-ms 100 --max-attempts 3 2> "$WORK/$1.log" || rc=$?
  [ $rc -eq 1 ] && grep -qF "gave up after 3 attempts without progress: " "$WORK/$1.log" &&
    grep -qF "$3" "$WORK/$1.log" || fail "$1: exit $rc: $(tail -2 "$WORK/$1.log")"
}
# Cut before a whole sector each time (512-byte frames): nothing can be
# kept, and the device says why.
gives_up tiny 512 " (each connection ended before it had written a whole 4096-byte flash sector past where it began, the least a device keeps of a connection: the link drops too soon for any progress)"
# Cut before a whole frame each time (4096-byte frames): nothing is written
# at all (a trial's gave up with "server closed the connection" only).
gives_up noframe 4096 " (no connection carried a whole frame of the image before it ended: the link drops too soon for any progress)"
ok "a link cut before every sector, and before every frame: the device says so"
stop_server
