#!/usr/bin/env bash
# The offer policy (server/offer.h) end to end, and what the operator sees:
# no image a device reported as failed, no image for another model, no
# downgrade unless allowed; version and model from the signed manifest; the
# summary counts devices and names every failure; SIGUSR1 prints it, SIGHUP
# reloads the image and keeps the old one when the new files are bad.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"

dev() { # dev NAME ARGS...: runs a device against the server; sets RC
  local name=$1; shift
  RC=0
  "$T" device --server "127.0.0.1:$SERVER_PORT" --flash "$name" --id "$name" --max-attempts 2 "$@" \
    2> "$name.log" || RC=$?
}
summary() { grep 'summary:' server.log | tail -1; }

# 1. A rolled-back image is not offered to that device again; others get it.
make_image img 60000
start_server img 2.0.0
dev bad --factory-version 1.0.0 --health fail
[ $RC -eq 1 ] || fail "device with a failing health check exited $RC"
dev bad --factory-version 1.0.0
# Held back is not up to date: the device exits 1 with the server's reason.
[ $RC -eq 1 ] || fail "rolled-back device, second run, exited $RC, expected 1"
grep -q 'not updated, running 1.0.0: it reported the server.s image as failed' bad.log ||
  fail "rolled-back device was not told why there is nothing for it: $(cat bad.log)"
grep -qE '\[bad [^]]*\] hello .*not offered: the image failed on this device before' server.log ||
  fail "server did not say why it offered nothing to the rolled-back device"
dev good --factory-version 1.0.0
[ $RC -eq 0 ] || fail "healthy device exited $RC"
check_device good img
ok "a rolled-back image is not offered again to that device; another device gets it"

# 2. No downgrade, no unordered version, unless --allow-downgrade.
dev newer --factory-version 5.0.0
[ $RC -eq 0 ] && grep -q 'up to date' newer.log || fail "device on 5.0.0 was not left alone"
grep -qE '\[newer [^]]*\] .*not offered: the device runs a newer version' server.log ||
  fail "server did not name the downgrade"
dev odd --factory-version factory
grep -qE '\[odd [^]]*\] .*not offered: the versions cannot be ordered' server.log ||
  fail "server did not refuse an unordered version"
# The device is told so (WHY 9), not "not newer" (before: "up to date").
[ $RC -eq 1 ] && grep -q "not updated, running factory: the server cannot order its image's version against the one this device runs" odd.log ||
  fail "the unordered device was not told why (exit $RC): $(tail -2 odd.log)"
kill -USR1 "$SERVER_PID"
wait_line server.log 'summary: 4 devices' 5
kill -0 "$SERVER_PID" 2>/dev/null || fail "SIGUSR1 ended the server"
s=$(summary)
for want in '1 updated and confirmed' '1 rolled back' '2 not offered'; do
  echo "$s" | grep -q "$want" || fail "summary lacks '$want': $s"
done
ok "no downgrade or unordered version; SIGUSR1 prints a summary that counts devices: $s"
stop_server
start_server img 2.0.0 --allow-downgrade
dev newer --factory-version 5.0.0
[ $RC -eq 0 ] || fail "--allow-downgrade: device exited $RC"
check_device newer img
stop_server
ok "--allow-downgrade offers the older image"

# The bootloader's rollback (REPORT result 3, BOOT_FAILED: the new image
# never booted) is counted as a failure, but the image is offered once
# more, as the device itself takes it once more (a power cut in its first
# boot is not the image's fault; its second such failure comes back as a
# DECLINE, which holds the image back). A HELLO of the protocol's bytes, as
# a device reports after such a boot: the server answers with an OFFER.
# (It answered NO_UPDATE, WHY 3, and a device whose first boot lost power
# was kept off that update until the server restarted: a trial.)
start_server "$WORK/img" 2.0.0
answer=$(python3 - "$SERVER_PORT" "$WORK/img" "$E2E" <<'PY'
import hashlib, socket, struct, sys
sys.path.insert(0, sys.argv[3])
import frames as F
img = hashlib.sha256(open(sys.argv[2], "rb").read()).digest()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(F.hello(b"bootfail", report=(img, 3)))
r = F.Reader(s)
t, _ = r.next()
assert t == F.WELCOME, "no WELCOME first: type %d" % t
t, p = r.next()
why = None
while t == F.NO_UPDATE and p:
    tag, n = p[0] & 0x7f, struct.unpack("<H", p[1:3])[0]
    if tag == F.TAG_WHY:
        why = struct.unpack("<H", p[3:5])[0]
    p = p[3 + n:]
print(t, why)
s.close()
PY
) || fail "the BOOT_FAILED probe failed"
[ "$answer" = "$(python3 -c "import sys; sys.path.insert(0, '$E2E'); import frames; print(frames.OFFER, None)")" ] ||
  fail "a device whose bootloader rolled the image back once was answered '$answer' (type, WHY), not an OFFER"
grep -qE '\[bootfail [^]]*\] report: image [0-9a-f]+\.\.\. rolled back by the bootloader \(current image\); offered once more: the device takes an image its bootloader fell back from once more' server.log ||
  fail "the bootloader's rollback was not logged as a failure offered once more: $(grep '\[bootfail ' server.log)"
stop_server
# Counted as the bootloader's, not as a health check's rollback.
grep -qE 'summary: 1 device: .*, 0 rolled back, 1 boot failed' server.log ||
  fail "the summary does not count the bootloader's rollback: $(grep 'summary:' server.log)"
ok "a bootloader's rollback (REPORT BOOT_FAILED) counts as one, and the image is offered once more"

# 3. Version and model come from the signed manifest.
"$T" keygen --out k 2> keygen.log
make_image s3 50000
"$T" sign --key k.key --version 3.0.0 --model esp32s3 s3 2> sign.log
RC=0; timeout 20 "$T" serve --listen 127.0.0.1:0 --version 9.9.9 s3 2> contra.log || RC=$?
[ $RC -eq 2 ] && grep -q -- '--version 9.9.9 contradicts the signed manifest' contra.log ||
  fail "server started with a --version that contradicts the manifest (rc $RC)"
RC=0; timeout 20 "$T" serve --listen 127.0.0.1:0 img 2> nover.log || RC=$?
[ $RC -eq 2 ] && grep -q 'give --version' nover.log || fail "server started without a version (rc $RC)"
: > server.log
"$T" serve --listen 127.0.0.1:0 s3 2> server.log &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' server.log | head -1)
grep -q 'image 3.0.0 ' server.log || fail "server did not take 3.0.0 from the manifest"
dev plain32 --factory-version 1.0.0 --model esp32
[ $RC -eq 1 ] && grep -q "not updated, running 1.0.0: the server's image is for another hardware model than this device's esp32" plain32.log ||
  fail "an esp32 was offered an esp32s3 image, or not told why not (rc $RC): $(cat plain32.log)"
grep -qE '\[plain32 [^]]*\] .*not offered: the image is for another model' server.log ||
  fail "server did not name the model"
dev s3dev --factory-version 1.0.0 --model esp32s3 --trust k.pub
[ $RC -eq 0 ] || fail "esp32s3 device exited $RC"
check_device s3dev s3
ok "version and model from the manifest; another model is never offered the image"

# 4. SIGHUP: a new signed image is served; a bad one leaves the old in place.
make_image s3b 40000
"$T" sign --key k.key --version 3.1.0 --model esp32s3 --out s3.manifest.new s3b 2> sign.log
cp s3b s3.new && mv s3.new s3 && mv s3.manifest.new s3.manifest
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: image 3.1.0' 5
dev s3dev --model esp32s3 --trust k.pub
[ $RC -eq 0 ] || fail "device after the reload exited $RC"
check_device s3dev s3b
printf 'garbage' > s3.manifest
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reload failed .*still serving image 3.1.0' 5
grep -q 'SIGHUP: .*manifest' server.log || fail "the reload did not say what is wrong: $(grep SIGHUP server.log)"
! grep -qE 'SIGHUP: tcpota( serve)?: ' server.log || fail "a doubled prefix: $(grep 'SIGHUP: tcpota' server.log)"
dev s3new --factory-version 1.0.0 --model esp32s3 --trust k.pub
[ $RC -eq 0 ] || fail "device after a failed reload exited $RC"
check_device s3new s3b
stop_server
ok "SIGHUP reloads a new image and keeps the old one when the new files are bad"

# A server started with --version on an unsigned image, then signed with
# another: the reload cannot drop the running server's flag, so it says to
# restart without it (before: "drop --version", to a running process).
make_image u4 20000
: > server.log
"$T" serve --listen 127.0.0.1:0 --version 1.5.0 u4 2> server.log &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
"$T" sign --key k.key --version 1.6.0 --model esp32 u4 2> sign.log
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reload failed .*still serving image 1.5.0' 5
grep -q 'SIGHUP: --version 1.5.0 contradicts the signed manifest u4.manifest, which says 1.6.0; restart the server without --version (the manifest.s version is offered)$' server.log ||
  fail "a reload's contradicting --version: $(grep SIGHUP server.log)"
stop_server
ok "a signed manifest that contradicts --version at a reload: restart without it"

# One image, no fleet: what its first bytes say against its version is
# said at the start, and at a reload (server/esp_image.c).
make_esp_app espapp 9 1.0.3
: > server.log
"$T" serve --listen 127.0.0.1:0 --version 1.1.0 espapp 2> server.log &
SERVER_PID=$!; PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
grep -q 'warning: espapp: its ESP-IDF app description (project ota_client) says version 1.0.3, not 1.1.0: ' server.log ||
  fail "serve said nothing of the app's version: $(cat server.log)"
printf '\177ELF\002\001\001' > espapp.new && head -c 3000 /dev/urandom >> espapp.new && mv espapp.new espapp
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded' 5
grep -q 'SIGHUP: warning: espapp: it is an ELF file' server.log || fail "a reload said nothing of an ELF: $(grep SIGHUP server.log)"
stop_server
ok "serve FILE warns of an ESP-IDF app's other version at start and of an ELF at a reload"

# 5. A declined offer is not made again, but the same bytes signed are a new
#    offer: a device that refused an unsigned image takes it once signed.
make_image u5 30000
start_server u5 4.0.0
dev strict --factory-version 1.0.0 --trust k.pub --max-attempts 1
grep -q 'image is not signed' strict.log || fail "the trusting device did not decline the unsigned image"
dev strict --trust k.pub --max-attempts 1
grep -qE '\[strict [^]]*\] .*not offered: the image failed on this device before \(reported, declined, or downloaded over HTTP and not booted\)' server.log ||
  fail "the declined offer was made again"
"$T" sign --key k.key --version 4.0.0 --model esp32 u5 2> sign.log
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: image 4.0.0' 5
dev strict --trust k.pub
[ $RC -eq 0 ] || fail "the device did not take the image once signed (exit $RC)"
check_device strict u5
stop_server
ok "a declined offer is not repeated; the image signed is offered again"


# 6. SIGHUP with other bytes under the same version: served, with a warning
#    (devices that got the old bytes are up to date by version).
make_image v6 20000
start_server v6 6.0.0
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: image 6.0.0' 5
! grep -q 'SIGHUP: warning' server.log || fail "the same bytes reloaded were warned about: $(grep 'SIGHUP: warning' server.log)"
make_image v6b 20000
cp v6b v6
kill -HUP "$SERVER_PID"
wait_line server.log "SIGHUP: warning: the new image has the old one's version 6.0.0 but other bytes: devices that got the old image are not offered it; give it a new version \(--version is the command line's: restart the server with another\)" 5
stop_server
ok "SIGHUP with other bytes under the same version warns"

# 7. An image that fails the device's read-back (a byte of its slot changed
#    while a cut transfer waited to resume): its COMPLETE says so, and the
#    server offers the image once more, as the device itself takes it once
#    more (bytes altered on the way, a flash read error, are not the
#    image's fault; a second failure comes back as the device's DECLINE).
make_image v7 100000
start_server v7 7.0.0
start_proxy slow "$SERVER_PORT" --rate 25000
"$T" device --server "127.0.0.1:$PROXY_PORT" --flash rb --id rb 2> rb.log &
rb=$!
wait_line server.log '\[rb .* [2-9][0-9]% \(' 10
kill -INT "$rb"
wait "$rb" && fail "the device stopped midway exited 0"
kill "$PROXY_PID"
flip_byte rb/ota_1.bin 0
# Stopped once it said so (before its retry, where it would decline the
# image by its own record and the server learn it from the DECLINE).
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash rb --id rb --backoff-min-ms 5000 2> rb.log &
rb=$!
wait_line server.log '\[rb .*failed: device reports image SHA-256 mismatch' 10
kill -INT "$rb"
wait "$rb" && fail "a device whose slot does not read back exited 0"
grep -q '\[rb .*failed: device reports image SHA-256 mismatch; image [0-9a-f]*\.\.\. is offered to it once more' server.log ||
  fail "the server's words for the integrity failure: $(grep '\[rb .*failed:' server.log)"
# Its next run takes the image once more, whole, and installs it.
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash rb --id rb --max-attempts 3 2> rb.log ||
  fail "the device was not given the image once more after one integrity failure: $(tail -2 rb.log)"
"$T" device status --flash rb | grep -q '"version":"7.0.0"' || fail "rb does not run 7.0.0: $(tail -2 rb.log)"
stop_server
grep -qE 'summary: 1 device: 1 updated and confirmed' server.log ||
  fail "rb's update after its integrity failure is not counted: $(grep 'summary:' server.log)"
ok "an image that fails the device's read-back once is offered once more, and installed"
