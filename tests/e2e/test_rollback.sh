#!/usr/bin/env bash
# The new image boots pending; a failed health check rolls it back to the old
# one, the device says so and exits 1, and the server hears the outcome. A
# healthy device confirms and reports that instead.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 100000
start_server "$WORK/img" 2.0.0

rc=0
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/bad" --id bad-dev \
  --factory-version 1.0.0 --health fail 2> "$WORK/bad.log" || rc=$?
[ $rc -eq 1 ] || fail "device with a failing health check exited $rc, expected 1"
status=$("$TCPOTA" device status --flash "$WORK/bad")
echo "$status" | grep -q '"slot":0' || fail "rolled-back device is not on slot 0: $status"
echo "$status" | grep -q '"version":"1.0.0"' || fail "rolled-back device does not run 1.0.0: $status"
grep -qE '\[bad-dev [^]]*\] report: .* rolled back \(health check failed\)' "$WORK/server.log" ||
  fail "server did not log the rollback report"
ok "failed health check: rolled back to 1.0.0 and reported"

"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/good" --id good-dev \
  2> "$WORK/good.log" || fail "healthy device failed"
check_device "$WORK/good" "$WORK/img"
grep -qE '\[good-dev [^]]*\] report: .* confirmed' "$WORK/server.log" ||
  fail "server did not log the confirmation"
ok "healthy device confirmed and reported"
stop_server
