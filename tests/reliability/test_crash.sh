#!/usr/bin/env bash
# The server is killed with SIGKILL while 50 devices download through a
# rate-limited proxy, then started again on the same port. Every device
# reconnects with backoff and finishes byte-exact, resuming from its
# checkpoint: the restarted server logs "resume from N" (N > 0) for every
# device that had made progress, and no device fetches more than one ack
# interval plus a sector again.
source "$(dirname "$0")/../e2e/lib.sh"
N=${TCPOTA_CRASH_DEVICES:-50}
SIZE=${TCPOTA_CRASH_SIZE:-262144}
RATE=${TCPOTA_CRASH_RATE:-60000}    # bytes/s per device: ~4.4 s per device
# Under ASan+UBSan 50 devices start slowly: half as fast a link, so that
# none can finish before half of them have a checkpoint (the kill below).
if [ -z "${TCPOTA_CRASH_RATE:-}" ] && [ "${TCPOTA_SANITIZED:-0}" = 1 ]; then RATE=30000; fi
ACK=16384

make_image "$WORK/img" "$SIZE"
start_server "$WORK/img" 2.0.0 --idle-timeout 10
PORT=$SERVER_PORT
mv "$WORK/server.log" "$WORK/server1.log"
start_proxy proxy "$PORT" --rate "$RATE" --queue-limit 16384 --quiet
pids=()
for i in $(seq 1 "$N"); do
  "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d$i" --id "crash-$i" \
    --slot-size "$SIZE" --progress none --backoff-min-ms 100 --backoff-max-ms 800 \
    --max-attempts 100 --ack-interval "$ACK" 2> "$WORK/dev$i.out" &
  pids+=($!)
done
PIDS+=("${pids[@]}")

# Kill once at least half of the devices have a checkpoint.
for ((t = 0; t < 200; t++)); do
  n=$({ grep -oE '\[crash-[0-9]+ [^]]*\] +[0-9]+% \(' "$WORK/server1.log" || true; } | cut -d' ' -f1 | sort -u | wc -l)
  [ "$n" -ge $((N / 2)) ] && break
  sleep 0.05
done
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null || true
grep -q 'done:' "$WORK/server1.log" && fail "a device finished before the crash: make the transfer slower"
sleep 0.5
# Same port: the devices keep dialing the proxy, the proxy dials this.
"$TCPOTA" serve --listen "127.0.0.1:$PORT" --version 2.0.0 --idle-timeout 10 "$WORK/img" \
  2> "$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line "$WORK/server.log" 'listening on'

failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
resumed=0 max_refetch=0
for i in $(seq 1 "$N"); do
  check_device "$WORK/d$i" "$WORK/img"
  # The last checkpoint the first server saw for this device.
  last=$(sed -nE "s/.*\[crash-$i [^]]*\] +[0-9]+% \(([0-9]+)\/.*/\1/p" "$WORK/server1.log" | tail -1)
  from=$(sed -nE "s/.*\[crash-$i [^]]*\] hello .*resume from ([0-9]+).*/\1/p" "$WORK/server.log" | head -1)
  if [ -n "$last" ]; then
    [ -n "$from" ] || fail "crash-$i had $last bytes durable but did not resume: $(grep "crash-$i " "$WORK/server.log" | head -3)"
    [ "$from" -ge "$last" ] || fail "crash-$i resumed from $from, below its checkpoint $last"
    resumed=$((resumed + 1))
  fi
  r=$(sed -nE 's/.*refetched=([0-9]+).*/\1/p' "$WORK/dev$i.out" | tail -1)
  [ -n "$r" ] || fail "crash-$i printed no stats line"
  [ "$r" -le $((ACK + 4096)) ] || fail "crash-$i fetched $r bytes again"
  [ "$r" -gt "$max_refetch" ] && max_refetch=$r
done
[ "$resumed" -ge $((N / 2)) ] || fail "only $resumed devices had progress before the crash"
stop_server
grep -qE "summary: $N devices: $N updated and confirmed," "$WORK/server.log" ||
  fail "restarted server did not update all $N: $(grep summary "$WORK/server.log")"
ok "server SIGKILLed mid-way and restarted: $N devices byte-exact, $resumed resumed from their checkpoint, at most $max_refetch bytes fetched again"
