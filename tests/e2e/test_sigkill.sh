#!/usr/bin/env bash
# A device killed with SIGKILL during a transfer, then started again with the
# same flash, finishes without starting over.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 1048576
start_server "$WORK/img" 2.0.0
# A 1 MB/s link, so there is time to kill it mid-way.
start_proxy proxy "$SERVER_PORT" --rate 1000000

"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d" --id kill-dev \
  2> "$WORK/d1.log" &
dev=$!
PIDS+=("$dev")
# Kill it once it has durable progress (polled, not a fixed sleep: a loaded
# machine may take longer to get there).
for _ in $(seq 200); do
  "$TCPOTA" device status --flash "$WORK/d" 2>/dev/null | grep -q '"resume":{"offset":[1-9]' && break
  sleep 0.05
done
kill -9 "$dev"
wait "$dev" 2>/dev/null || true
status=$("$TCPOTA" device status --flash "$WORK/d")
offset=$(echo "$status" | sed -nE 's/.*"resume":\{"offset":([0-9]+).*/\1/p')
[ -n "$offset" ] && [ "$offset" -gt 0 ] || fail "no durable progress before the kill: $status"
echo "killed at resume point $offset"
cp "$WORK/d/nvs.bin" "$WORK/nvs-mid.bin"

"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d" --id kill-dev \
  2> "$WORK/d2.log" || fail "restarted device failed"
check_device "$WORK/d" "$WORK/img"
grep -qE "\[kill-dev [^]]*\] hello .*resume from $offset" "$WORK/server.log" ||
  fail "server did not resume kill-dev from $offset"
ok "SIGKILL at $offset, resumed there, byte-exact"

# A cut between set_boot and the resume record's erasure leaves a record of
# the image that now runs (made here by putting the mid-transfer NVS back):
# status shows no resume point, as the next session takes none (and erases
# it: test_device.c), and that session finds the device up to date.
cp "$WORK/nvs-mid.bin" "$WORK/d/nvs.bin"
status=$("$TCPOTA" device status --flash "$WORK/d")
[[ $status == *'"version":"2.0.0"'*'"resume":null'* ]] || fail "a resume record of the running image shown: $status"
"$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d" --id kill-dev 2> "$WORK/d3.log" ||
  fail "the device with a stale resume record failed: $(cat "$WORK/d3.log")"
grep -q "up to date" "$WORK/d3.log" || fail "the device with a stale resume record: $(cat "$WORK/d3.log")"
ok "a resume record of the running image: shown as none; the next session is up to date"
stop_server
