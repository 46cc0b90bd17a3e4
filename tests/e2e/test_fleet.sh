#!/usr/bin/env bash
# 200 host devices updating at once from one server all finish byte-exact.
source "$(dirname "$0")/lib.sh"
# Under ASan+UBSan (make test's second pass) 100: there it looks for memory
# errors; the plain pass keeps 200.
N=${TCPOTA_FLEET:-$([ "${TCPOTA_SANITIZED:-0}" = 1 ] && echo 100 || echo 200)}

make_image "$WORK/img" 262144
start_server "$WORK/img" 2.0.0 --quiet
pids=()
for i in $(seq 1 "$N"); do
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d$i" --id "fleet-$i" \
    --slot-size 262144 --progress none --backoff-min-ms 100 --backoff-max-ms 1000 \
    2> "$WORK/dev$i.out" &
  pids+=($!)
done
PIDS+=("${pids[@]}")
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ "$failed" -eq 0 ] || fail "$failed of $N devices failed"
check_devices "$WORK/img" $(seq -f "$WORK/d%g" 1 "$N")
stop_server
grep -qE "summary: $N devices: $N updated and confirmed," "$WORK/server.log" ||
  fail "server summary does not count $N updates: $(grep summary "$WORK/server.log")"
ok "$N devices at once, all byte-exact"
