#!/usr/bin/env bash
# A full disk (a 3 MiB tmpfs, in a mount namespace of the test's own).
#  - Under a fleet server's data directory: once a COMMIT has failed, a device
#    that checks in is offered nothing: it is told to try again, and keeps its
#    report. The operator reads what to do, in the log and from the CLI. Once
#    there is room again, the same devices update and their reports reach the
#    registry: nothing a device was told was kept is lost.
#  - Under `tcpota sign`: no empty or partial manifest, a previous one kept.
#  - Under a new device's --flash: its creation fails with what to do, leaves
#    nothing that needs --init or rm -rf, and the same command run again once
#    there is room makes the device.
if [ -z "${TCPOTA_FULL_MNT:-}" ]; then
  unshare -m true 2> /dev/null ||
    { echo "FAIL: unshare -m failed: this test needs root (a mount namespace for a small tmpfs)" >&2; exit 1; }
  TCPOTA_FULL_MNT=$(mktemp -d /tmp/tcpota-full.XXXXXX)
  export TCPOTA_FULL_MNT
  rc=0
  unshare -m --propagation private bash "$0" "$@" || rc=$?
  rmdir "$TCPOTA_FULL_MNT"
  exit $rc
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

mount -t tmpfs -o size=3m,mode=0700 tmpfs "$TCPOTA_FULL_MNT" || fail "cannot mount a tmpfs"
DATA=$TCPOTA_FULL_MNT/data
start_fleet
make_image "$WORK/fw.bin" 200000
"$TCPOTA" image add "$WORK/fw.bin" --version 2.0.0 --model esp32 > "$WORK/add.out" 2>&1 ||
  fail "image add: $(cat "$WORK/add.out")"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --waves 100 > /dev/null 2>&1 || fail "rollout create"
run_device d0 esp32 "$WORK/d0" || fail "d0 (before the disk filled) exited $?"
ok "a device updates while there is room"

# Fill the disk; the WAL then cannot grow.
dd if=/dev/zero of="$TCPOTA_FULL_MNT/filler" bs=64k 2> /dev/null || true
[ "$(df --output=avail "$TCPOTA_FULL_MNT" | tail -1)" -eq 0 ] || fail "the tmpfs is not full"
# d1 checks in: it may be offered the image (within the batch window in
# which the disk filled); its steps or its report then meet the full disk.
timeout 10 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d1" --id d1 --model esp32 \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> "$WORK/d1.log" || true
# The first failed COMMIT is logged when it happens, with what went with
# it, even when every request of its batch was answered already (a batch
# window's end): nobody else would say so.
wait_line "$WORK/server.log" "store: commit: disk full: free space on the disk holding $DATA \(SQLite: database or disk is full\); (lost with it: .* already answered|nothing answered was lost).*Until a commit succeeds"
# d2 comes after a failed COMMIT: it must be offered nothing.
timeout 5 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d2" --id d2 --model esp32 \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> "$WORK/d2.log" || true
grep -q 'busy, retry later: server database error; try again later; retrying in 30 s' "$WORK/d2.log" ||
  fail "d2 was not told to try again: $(cat "$WORK/d2.log")"
grep -q '\[d2 .*decision: offer' "$WORK/server.log" && fail "d2 was offered the image on a full disk"
"$TCPOTA" device status --flash "$WORK/d2" > "$WORK/d2.status" || fail "device status d2"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["version"] == "1.0.0" and not j.get("resume") else 1)' \
  "$WORK/d2.status" || fail "d2 took bytes of the image while the disk was full: $(cat "$WORK/d2.status")"
ok "after a failed commit a device is offered nothing and told to try again"
# So is a stock esp_https_ota device, over HTTP.
hdr=$(curl -s -D - -o /dev/null -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h1")
echo "$hdr" | grep -q '^HTTP/1.1 503' && echo "$hdr" | grep -qi '^Retry-After: 30' ||
  fail "an HTTP download on a full disk: $hdr"
ok "an HTTP download is answered 503 with Retry-After"

# The API says what is wrong and what to do.
if "$TCPOTA" rollout pause 1 > "$WORK/pause.out" 2>&1; then fail "rollout pause succeeded on a full disk"; fi
grep -q "disk full: free space on the disk holding $DATA" "$WORK/pause.out" ||
  fail "rollout pause: $(cat "$WORK/pause.out")"
ok "the CLI says: $(cat "$WORK/pause.out")"
# A device whose check-in the disk did not keep is not just "no device":
# the store knows its last commit failed, and a device list says so too.
if "$TCPOTA" device show d2 > "$WORK/show.out" 2>&1; then fail "device show d2 succeeded on a full disk"; fi
grep -q "no device d2; the last commit failed (disk full: free space on the disk holding $DATA): a device that checked in just before it is missing until its next check-in" \
  "$WORK/show.out" || fail "device show: $(cat "$WORK/show.out")"
"$TCPOTA" device list > "$WORK/list.out" 2>&1 || fail "device list on a full disk: $(cat "$WORK/list.out")"
grep -q "^tcpota device: warning: the last commit failed (disk full: free space on the disk holding $DATA): devices that checked in just before it are missing until their next check-in" \
  "$WORK/list.out" || fail "device list: $(cat "$WORK/list.out")"
ok "device show says: $(cat "$WORK/show.out")"
make_image "$WORK/fw3.bin" 100000
if "$TCPOTA" image add "$WORK/fw3.bin" --version 3.0.0 --model esp32 > "$WORK/add3.out" 2>&1; then
  fail "image add succeeded on a full disk"
fi
grep -q "cannot write the image into $DATA/images: No space left on device; free space on that disk, then add the image again" "$WORK/add3.out" ||
  fail "image add: $(cat "$WORK/add3.out")"
[ "$(ls -A "$DATA/images" | wc -l)" -eq 1 ] || fail "a failed upload left files: $(ls -la "$DATA/images")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TCPOTA_TOKEN" \
  --data-binary @"$WORK/fw3.bin" "$TCPOTA_API/v1/images?version=3.0.0&model=esp32")
[ "$code" = 507 ] || fail "an upload to a full disk answered $code, not 507"
ok "image add says: $(cat "$WORK/add3.out")"

# Room again: both devices update, their reports are stored.
rm "$TCPOTA_FULL_MNT/filler"
run_device d1 esp32 "$WORK/d1" || fail "d1 after the disk had room again exited $?: $(tail -3 "$WORK/d1.log")"
run_device d2 esp32 "$WORK/d2" || fail "d2 after the disk had room again exited $?: $(tail -3 "$WORK/d2.log")"
check_device "$WORK/d2" "$WORK/fw.bin"
for d in d0 d1 d2; do
  st=$("$TCPOTA" device show "$d" --json | jq_py 'j["state"]') || fail "device show $d"
  [ "$st" = updated ] || fail "$d is $st in the registry, not updated"
  # d1's steps may have gone with the failed commit: its report names the
  # image, whose size the registry has ("0 of 0 bytes, 0%" before).
  sz=$("$TCPOTA" device show "$d" --json | jq_py '"%d of %d" % (j["bytes"], j["size"])')
  [ "$sz" = "200000 of 200000" ] || fail "$d has $sz bytes in the registry"
done
ok "once there is room, the devices update and the registry has their reports"
grep -q 'store: the database takes writes again: a commit succeeded after [0-9]* failed in' "$WORK/server.log" ||
  fail "the recovery was not logged"
# A step whose device's row went with the failed commit is not logged as
# if the device were unknown.
if grep 'events skipped, the first: no device' "$WORK/server.log"; then
  fail "a step lost with the failed commit was logged as an unknown device"
fi
"$TCPOTA" device list > "$WORK/list.out" 2>&1 || fail "device list: $(cat "$WORK/list.out")"
grep -q warning "$WORK/list.out" && fail "device list still warns once there is room: $(cat "$WORK/list.out")"
ok "the failed commit, the recovery: $(grep -o 'store: commit: disk full.*' "$WORK/server.log" | head -1)"

# sign: the manifest whole or not at all. A tmpfs of its own: the server's
# database, on the first, may give pages back at any time.
S=$TCPOTA_FULL_MNT/s
mkdir "$S" && mount -t tmpfs -o size=1m tmpfs "$S" || fail "cannot mount a second tmpfs"
"$TCPOTA" keygen --out "$WORK/k" > /dev/null 2>&1 || fail keygen
cp "$WORK/fw.bin" "$S/fw.bin"
"$TCPOTA" sign --key "$WORK/k.key" --version 2.0.0 --model esp32 "$S/fw.bin" 2> /dev/null ||
  fail "sign with room failed"
good=$(sha256sum < "$S/fw.bin.manifest")
dd if=/dev/zero of="$S/filler" bs=4k 2> /dev/null || true
rc=0
"$TCPOTA" sign --key "$WORK/k.key" --version 2.0.1 --model esp32 "$S/fw.bin" 2> "$WORK/sign.log" || rc=$?
[ $rc -eq 1 ] || fail "sign on a full disk exited $rc, expected 1"
grep -q "cannot write $S/fw.bin.manifest: No space left on device; free space there and sign again (nothing was written)" \
  "$WORK/sign.log" || fail "sign on a full disk: $(cat "$WORK/sign.log")"
[ "$(sha256sum < "$S/fw.bin.manifest")" = "$good" ] || fail "sign on a full disk damaged the manifest"
rm "$S/fw.bin.manifest"
dd if=/dev/zero of="$S/filler2" bs=4k 2> /dev/null || true
rc=0
"$TCPOTA" sign --key "$WORK/k.key" --version 2.0.1 --model esp32 "$S/fw.bin" 2> "$WORK/sign.log" || rc=$?
[ $rc -eq 1 ] || fail "sign without a manifest on a full disk exited $rc, expected 1"
[ -z "$(ls -A "$S" | grep manifest)" ] || fail "sign on a full disk left $(ls -la "$S")"
rm "$S/filler" "$S/filler2" "$S/fw.bin"
ok "sign on a full disk: $(cat "$WORK/sign.log"), the old manifest kept, no file left"

# A fleet server that starts on a full disk says so (SQLite's own message
# is "disk I/O error": it cannot make its -shm file).
# (The server itself in $SPID, not a `timeout` around it: that one's exit
# status on SIGTERM is its own, 143 or 124, not the server's.)
serve_s() {
  : > "$WORK/s.log"
  "$TCPOTA" serve --listen 127.0.0.1:0 --data "$S/data" --api 127.0.0.1:0 --no-progress \
    2> "$WORK/s.log" &
  SPID=$!
  PIDS+=("$SPID")
}
serve_s
wait_line "$WORK/s.log" 'listening on'
kill -TERM "$SPID" && wait "$SPID" || fail "the server on $S exited $?"
dd if=/dev/zero of="$S/filler" bs=4k 2> /dev/null || true
rc=0
timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --data "$S/data" --api 127.0.0.1:0 --no-progress \
  2> "$WORK/s.log" || rc=$?
[ $rc -eq 1 ] || fail "a server on a full disk exited $rc, expected 1: $(cat "$WORK/s.log")"
grep -q "cannot open the fleet store: .*; the disk holding $S/data is full: free space there" "$WORK/s.log" ||
  fail "a server on a full disk: $(cat "$WORK/s.log")"
said=$(grep -o 'cannot open the fleet store.*' "$WORK/s.log" | head -1)
rm "$S/filler"
serve_s
wait_line "$WORK/s.log" 'listening on'
kill -TERM "$SPID" && wait "$SPID" || fail "the server on $S once there was room exited $?"
ok "a server on a full disk: $said"

# A new device: a 3 MiB tmpfs of its own.
D=$TCPOTA_FULL_MNT/dev
mkdir "$D" && mount -t tmpfs -o size=3m tmpfs "$D" || fail "cannot mount a third tmpfs"
dev_new() {
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$D/dnew" --id dnew \
    --model esp32 --slot-size 1048576 --progress none --max-attempts 2 2> "$WORK/dnew.log"
}
dd if=/dev/zero of="$D/filler" bs=64k 2> /dev/null || true
rc=0; dev_new || rc=$?
[ $rc -eq 1 ] || fail "a new device on a full disk exited $rc, expected 1: $(cat "$WORK/dnew.log")"
grep -q "cannot write $D/dnew/tcpota.lock: No space left on device" "$WORK/dnew.log" ||
  fail "a new device on a full disk: $(cat "$WORK/dnew.log")"
[ ! -e "$D/dnew" ] || fail "a failed start left $(ls -la "$D/dnew")"
ok "no room for the lock: said, nothing left behind"
# Room for the lock and one slot, not two.
rm "$D/filler"
avail=$(df --output=avail -k "$D" | tail -1)
dd if=/dev/zero of="$D/filler" bs=1k count=$((avail - 1500)) 2> /dev/null
rc=0; dev_new || rc=$?
[ $rc -eq 1 ] || fail "a new device without room for its slots exited $rc, expected 1: $(cat "$WORK/dnew.log")"
grep -q "creating a new device in $D/dnew failed: ota_1.bin: write at 0x[0-9a-f]*: No space left on device; free space there (its files take twice the slot size) or mend the cause, and run the same command again: the creation starts over" \
  "$WORK/dnew.log" || fail "a new device without room for its slots: $(cat "$WORK/dnew.log")"
rm "$D/filler"
dev_new || fail "the same command once there was room exited $?: $(cat "$WORK/dnew.log")"
check_device "$D/dnew" "$WORK/fw.bin"
ok "no room for the slots: said what to do; the same command then makes the device"
stop_fleet
