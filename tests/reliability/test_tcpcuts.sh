#!/usr/bin/env bash
# A real connection, through tcpota-proxy, cut right after every frame the
# server sends to a fresh device (WELCOME, OFFER, each DATA frame of a
# 64 KiB image) and at a random byte inside each: every device finishes
# byte-exact and fetches again less than a 4 KiB sector (its stats line):
# a connection's end keeps the last whole sector written.
source "$(dirname "$0")/../e2e/lib.sh"
SIZE=65536
ACK=16384
SECTOR=4096

make_image "$WORK/img" "$SIZE"
start_server "$WORK/img" 2.0.0 --quiet
# Where the server's frames end, for a device that takes 4096-byte DATA.
"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --frames > "$WORK/frames" ||
  fail "could not read the first frames"
welcome=$(awk '$2 == 2 { print $3 }' "$WORK/frames")
offer=$(awk '$2 == 3 { print $3 }' "$WORK/frames")
data=$(awk '$2 == 7 { print $3 }' "$WORK/frames")
[ -n "$welcome" ] && [ -n "$offer" ] && [ -n "$data" ] || fail "unexpected frames: $(cat "$WORK/frames")"
frame=$((data - offer))
frames=$((SIZE / (frame - 12)))
ends=("$welcome" "$offer")
for ((k = 1; k <= frames; k++)); do ends+=($((offer + k * frame))); done

RANDOM=${TCPOTA_SEED:-7}
prev=0 runs=0 max_refetch=0
for e in "${ends[@]}"; do
  for cut in "$e" $((prev + 1 + RANDOM % (e - prev - 1))); do
    runs=$((runs + 1))
    start_proxy "proxy$runs" "$SERVER_PORT" --cut-at "$cut" --quiet
    "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d$runs" --id "cut-$runs" \
      --slot-size "$SIZE" --progress none --backoff-min-ms 20 --backoff-max-ms 100 \
      --ack-interval "$ACK" 2> "$WORK/dev$runs.out" || fail "device cut at byte $cut failed"
    kill "$PROXY_PID"
    wait "$PROXY_PID" 2>/dev/null || true
    grep -q 'cuts=1' "$WORK/proxy$runs.log" || fail "the proxy did not cut at byte $cut: $(tail -1 "$WORK/proxy$runs.log")"
    check_device "$WORK/d$runs" "$WORK/img"
    r=$(sed -nE 's/.*refetched=([0-9]+).*/\1/p' "$WORK/dev$runs.out" | tail -1)
    [ -n "$r" ] && [ "$r" -lt "$SECTOR" ] || fail "cut at byte $cut: fetched ${r:-?} bytes again"
    [ "$r" -gt "$max_refetch" ] && max_refetch=$r
    rm -rf "$WORK/d$runs" "$WORK/proxy$runs.log"
  done
  prev=$e
done
stop_server
ok "$runs cuts over TCP (after each of ${#ends[@]} frames and inside each): all byte-exact, at most $max_refetch bytes fetched again"
