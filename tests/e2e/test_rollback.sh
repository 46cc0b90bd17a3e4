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
# It stops once the server has the report, rather than run on into the
# server's answer to it (the image held back).
grep -q "new image 2.0.0 failed its health check and was rolled back" "$WORK/bad.log" ||
  fail "the rollback was not the device's last word: $(cat "$WORK/bad.log")"
status=$("$TCPOTA" device status --flash "$WORK/bad")
echo "$status" | grep -q '"slot":0' || fail "rolled-back device is not on slot 0: $status"
echo "$status" | grep -q '"version":"1.0.0"' || fail "rolled-back device does not run 1.0.0: $status"
grep -qE '\[bad-dev [^]]*\] report: .* rolled back \(health check failed\)' "$WORK/server.log" ||
  fail "server did not log the rollback report"
ok "failed health check: rolled back to 1.0.0 and reported"

# The next run: the server holds the image back from this device, and the
# device says so and exits 1 (before: "up to date, running 1.0.0", exit 0).
rc=0
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/bad" --id bad-dev \
  --quiet 2> "$WORK/bad2.log" || rc=$?
[ $rc -eq 1 ] || fail "the rolled-back device's next run exited $rc, expected 1: $(cat "$WORK/bad2.log")"
grep -q "not updated, running 1.0.0: it reported the server's image as failed (rolled back, rejected or declined), so the server holds it back" \
  "$WORK/bad2.log" || fail "no reason for the held-back image: $(cat "$WORK/bad2.log")"
! grep -q "up to date" "$WORK/bad2.log" || fail "a held-back device called itself up to date"
ok "the next run of the rolled-back device: held back, said, exit 1"

# The rollback was said at the reset it happened; later starts do not tell
# of a bootloader fallback that never was (the port's flag stays set).
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/bad" --id bad-dev \
  2> "$WORK/bad3.log" || true
grep -q "running slot 0, version 1.0.0" "$WORK/bad3.log" || fail "third run: $(head -3 "$WORK/bad3.log")"
! grep -q "bootloader refused" "$WORK/bad3.log" ||
  fail "a later start after a health-check rollback tells of a bootloader fallback: $(cat "$WORK/bad3.log")"
ok "a later start after the rollback says nothing of a fallback"

"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/good" --id good-dev \
  2> "$WORK/good.log" || fail "healthy device failed"
check_device "$WORK/good" "$WORK/img"
grep -qE '\[good-dev [^]]*\] report: .* confirmed' "$WORK/server.log" ||
  fail "server did not log the confirmation"
ok "healthy device confirmed and reported"

# Up to date, and an image that is not newer: exit 0, each said as it is.
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/good" --id good-dev \
  --quiet 2> "$WORK/good2.log" || fail "an up-to-date device exited $?"
grep -q "up to date, running 2.0.0" "$WORK/good2.log" || fail "up to date not said: $(cat "$WORK/good2.log")"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/newer" --id newer-dev \
  --factory-version 3.0.0 --quiet 2> "$WORK/newer.log" || fail "a device on a newer version exited $?"
grep -q "up to date, running 3.0.0: the server's image is not newer than the one it runs" "$WORK/newer.log" ||
  fail "not newer not said: $(cat "$WORK/newer.log")"
ok "up to date, and a server image that is not newer: exit 0, each said"

# A confirmed image whose slot changed afterwards (flash gone bad) no
# longer boots: the bootloader falls back to the factory image, the device
# says why, and the server offers the image again, which it reinstalls.
flip_byte "$WORK/good/ota_1.bin" 100
cmp -s -n 100000 "$WORK/good/ota_1.bin" "$WORK/img" && fail "the slot was not changed"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/good" --id good-dev \
  2> "$WORK/good3.log" || fail "the device with a damaged slot failed: $(tail -3 "$WORK/good3.log")"
grep -q "the bootloader refused the other slot .* and fell back; running 0.0.0" "$WORK/good3.log" ||
  fail "the fallback was not said: $(head -5 "$WORK/good3.log")"
check_device "$WORK/good" "$WORK/img"
ok "a confirmed image whose flash changed: the bootloader falls back, the device says so and fetches it again"

# --health crash: the new image resets before its verdict, the bootloader
# undoes it, and the device reports "boot failed" (the server's log:
# "rolled back by the bootloader"), running its old image.
rc=0
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/crash" --id crash-dev --health crash \
  --progress none 2> "$WORK/crash.log" || rc=$?
[ $rc -eq 1 ] || fail "the crashing device exited $rc, expected 1 (as --health fail): $(tail -3 "$WORK/crash.log")"
grep -q "new image 2.0.0 resets before its health check's verdict (--health crash)" "$WORK/crash.log" &&
  grep -q "new image 2.0.0 reset before its health check's verdict and was rolled back" "$WORK/crash.log" ||
  fail "the crash was not said: $(cat "$WORK/crash.log")"
"$TCPOTA" device status --flash "$WORK/crash" | grep -q '"version":"0.0.0"' || fail "the crashed image runs"
wait_line "$WORK/server.log" '\[crash-dev [^]]*\] report: image [0-9a-f]*\.\.\. rolled back by the bootloader'
ok "--health crash: reset before the verdict, undone by the bootloader, reported as a boot failure"
stop_server
