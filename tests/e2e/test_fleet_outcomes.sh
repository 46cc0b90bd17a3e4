#!/usr/bin/env bash
# How fleet mode records the ends of a session that are not an update. A
# device that declines because it runs the image already is up to date, and
# no failure of the rollout. A device whose flash fails (its ERROR) is
# failed in the registry, with its words, but that is not a failure of the
# image: the rollout does not count it towards a halt, and the image is
# offered to that device again at its next check-in. A report of a result
# this server does not know (a newer device's) is acknowledged and logged,
# not refused as a database error at every check-in.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
[ -x "${HOSTILE:-}" ] || fail "HOSTILE must name tcpota-hostile (tests/reliability/reliability.cmake)"
DECLINER=hostile-0 # tcpota-hostile names its peers in the order of its kinds
ERRING=hostile-1

# failed_in_rollout: the failures rollout 1 counts (its one wave).
failed_in_rollout() {
  "$TCPOTA" rollout show --json 1 | jq_py 'j["waves"][0]["failed"]'
}

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"

"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --decliner 1 --erring 1 --hold 10 \
  > "$WORK/hostile.out" 2> "$WORK/hostile.log" || fail "the server did not close both peers: $(cat "$WORK/hostile.out")"
wait_line "$WORK/server.log" "\\[$ERRING .*device error: .*flash write failed"
for _ in $(seq 40); do # the store commits its batch within a fraction of a second
  [ "$(device_state $DECLINER)" = up-to-date ] && [ "$(device_state $ERRING)" = failed ] && break
  sleep 0.05
done
[ "$(device_state $DECLINER)" = up-to-date ] ||
  fail "$DECLINER declined as running the image already, and is $(device_state $DECLINER)"
[ "$(device_state $ERRING)" = failed ] || fail "$ERRING sent an ERROR and is $(device_state $ERRING)"
"$TCPOTA" device show --json $ERRING | jq_py 'j["reason"]' | grep -q "flash write failed" ||
  fail "$ERRING's reason does not carry its words: $("$TCPOTA" device show --json $ERRING)"
[ "$(failed_in_rollout)" = 0 ] || fail "rollout 1 counts $(failed_in_rollout) failed, expected none"
ok "declined as running it: up to date; a device's ERROR: failed, not the rollout's failure"

"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --decliner 1 --erring 1 --hold 10 \
  > "$WORK/hostile.out" 2> "$WORK/hostile.log" || fail "second round: $(cat "$WORK/hostile.out")"
n=$(grep -c "\\[$ERRING [^]]*\\] decision: offer 2.0.0" "$WORK/server.log" || true)
[ "$n" = 2 ] || fail "$ERRING was offered the image $n times in two check-ins: $(grep "$ERRING" "$WORK/server.log")"
[ "$(failed_in_rollout)" = 0 ] || fail "after the second round rollout 1 counts $(failed_in_rollout) failed"
ok "a device's ERROR does not hold the image back from it"

# A HELLO whose REPORT carries result 4 (unknown here), twice: each is
# answered with WELCOME (0x02) and an OFFER (0x03), not an ERROR (0x0a).
python3 - "$SERVER_PORT" "$E2E" > "$WORK/report.out" 2>&1 <<'PY' || fail "a report of an unknown result: $(cat "$WORK/report.out")"
import socket, sys
sys.path.insert(0, sys.argv[2])
import frames as F
hello = F.hello(b"rep-dev", report=(bytes(32), 4), max_payload=4096)
for i in range(2):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
        s.sendall(hello)
        r = F.Reader(s)
        types = [r.next()[0]]
        if types[0] == F.WELCOME:
            types.append(r.next()[0])
        print("check-in", i, "frames", types)
        if types != [F.WELCOME, F.OFFER]:
            sys.exit(f"check-in {i}: frames {types}, expected WELCOME (2) then OFFER (3)")
PY
grep -q "\[rep-dev [^]]*\] report: image 0000000000000000...: unknown result 4, not recorded (this server knows 1 confirmed, 2 rolled back, 3 boot failed); acknowledged" "$WORK/server.log" ||
  fail "no log line for the unknown result: $(grep rep-dev "$WORK/server.log")"
! grep -q "\[rep-dev .*store error" "$WORK/server.log" || fail "an unknown result was a store error: $(grep rep-dev "$WORK/server.log")"
ok "a report of a result this server does not know: acknowledged and logged, the device offered its update"

# A peer that half-closes right after its HELLO (a script's `nc -N`, a
# probe) is answered as any other: fleet mode asks its store, and the end
# of stream that arrives meanwhile does not drop the answer (it did: the
# connection was freed and nothing was sent). Once answered, the server
# closes: a device that ended its side can send no ACCEPT.
python3 - "$SERVER_PORT" "$E2E" > "$WORK/half.out" 2>&1 <<'PY' || fail "a HELLO then a half-close: $(cat "$WORK/half.out")"
import socket, sys, time
sys.path.insert(0, sys.argv[2])
import frames as F
for dev, model, want in ((b"half-1", b"esp32", F.OFFER), (b"half-2", b"no-such-model", F.NO_UPDATE)):
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
        s.sendall(F.hello(dev, model=model, report=(bytes(32), 1)))
        s.shutdown(socket.SHUT_WR)
        r = F.Reader(s)
        types = [r.next()[0], r.next()[0]]
        t0 = time.monotonic()
        rest = s.recv(100)
        print(dev.decode(), "frames", types, "then", rest, "after %.2f s" % (time.monotonic() - t0))
        if types != [F.WELCOME, want] or rest != b"":
            sys.exit(f"{dev}: frames {types} then {rest!r}, expected WELCOME (2), {want}, the end")
PY
for id in half-1 half-2; do
  [ "$(grep -c "\[$id [^]]*\] .*ended its side before its answer came: answered" "$WORK/server.log")" = 1 ] ||
    fail "not one log line for $id's end after HELLO: $(grep "$id" "$WORK/server.log")"
done
ok "a HELLO then a half-close: answered (WELCOME and OFFER or NO_UPDATE, its report stored), then closed"

# SIGHUP to a SQLite fleet without TLS: nothing to reload; its one server
# wrote every secret it holds, so none is read again.
kill -HUP "$SERVER_PID"
wait_line "$WORK/server.log" "SIGHUP: nothing to reload: in fleet mode" 5
grep -q "reading every device secret again" "$WORK/server.log" &&
  fail "a SQLite fleet read its secrets again on SIGHUP: $(grep SIGHUP "$WORK/server.log")"
ok "SIGHUP to a SQLite fleet: nothing to reload, said"

# A decline for the device's own setup (here: it trusts a key, the image is
# unsigned) is held back as that offer; once the device is set right, the
# operator's `device retry` lets the server offer it again (before: no way
# but a new image), and the rollout counts the device updated, not failed.
"$TCPOTA" keygen --out "$WORK/k" > /dev/null 2>&1 || fail "keygen failed"
run_device rt-1 esp32 "$WORK/rt1" --trust "$WORK/k.pub" --max-attempts 1 || true
[ "$(device_state rt-1)" = declined ] || fail "rt-1 trusting a key is $(device_state rt-1), not declined"
grep -q "the server holds that offer back from this device now; the image signed (tcpota sign, with a key this device trusts) is a new offer, which it makes (fleet mode: image rm, then image add with its manifest); or, if this device should not require signed images, once it is set right (--no-trust), tcpota device retry rt-1 (fleet mode; an image-mode server forgets at its restart) lets it be offered again" "$WORK/rt-1.log" ||
  fail "rt-1's decline did not say how it is offered again: $(cat "$WORK/rt-1.log")"
run_device rt-1 esp32 "$WORK/rt1" --max-attempts 1 || true
grep -q "so the server holds it back; .* (fleet mode: tcpota device retry rt-1; docs/security.md)" "$WORK/rt-1.log" ||
  fail "rt-1 was not held back, or not told of device retry: $(cat "$WORK/rt-1.log")"
before=$(failed_in_rollout)
"$TCPOTA" device retry rt-1 > "$WORK/retry.out" 2>&1 || fail "device retry rt-1 failed: $(cat "$WORK/retry.out")"
grep -q "^device rt-1: 1 failed image or declined offer forgotten; the server may offer it again from its next check-in (its state: seen)$" "$WORK/retry.out" &&
  grep -q "^the device itself still declines an image that failed its health check there, or its integrity check or its first boot twice, until another is installed$" "$WORK/retry.out" ||
  fail "device retry rt-1 said: $(cat "$WORK/retry.out")"
wait_line "$WORK/server.log" "device rt-1: 1 failed image or declined offer forgotten: the server may offer it again" 5
[ "$(device_state rt-1)" = seen ] || fail "rt-1 after retry is $(device_state rt-1), not seen"
run_device rt-1 esp32 "$WORK/rt1" --no-trust || fail "rt-1 failed after the retry: $(cat "$WORK/rt-1.log")"
check_device "$WORK/rt1" "$WORK/img"
[ "$(failed_in_rollout)" = $((before - 1)) ] || fail "rollout 1 counts $(failed_in_rollout) failed after rt-1 updated (before: $before)"
"$TCPOTA" device retry rt-1 > "$WORK/retry.out" 2>&1 || fail "a second device retry failed: $(cat "$WORK/retry.out")"
grep -q "^device rt-1: nothing to forget: no image is held back from it (its state: updated)$" "$WORK/retry.out" ||
  fail "a second retry said: $(cat "$WORK/retry.out")"
rc=0; "$TCPOTA" device retry nobody > "$WORK/retry.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "no device nobody" "$WORK/retry.out" || fail "retry of an unknown device: exit $rc, $(cat "$WORK/retry.out")"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TCPOTA_TOKEN" "$TCPOTA_API/v1/devices/rt-1/retry")" = 405 ] ||
  fail "GET /v1/devices/rt-1/retry was not 405"
# A device whose own record holds the image back (it rolled back there):
# after a retry it is offered the image, declines it as failed before
# (FAILED_BEFORE), and is recorded declined, counted failed, held back; it
# was REFUSED, read as "runs it": up to date, counted updated, offered at
# every check-in while the device backed off for ever (a trial).
run_device rb-1 esp32 "$WORK/rb1" --health fail --max-attempts 1 || true
[ "$(device_state rb-1)" = rolled-back ] || fail "rb-1 is $(device_state rb-1), not rolled-back"
before=$(failed_in_rollout)
"$TCPOTA" device retry rb-1 > /dev/null || fail "device retry rb-1 failed"
rc=0; run_device rb-1 esp32 "$WORK/rb1" --max-attempts 2 || rc=$?
[ $rc -eq 1 ] || fail "rb-1 after the retry exited $rc, expected 1 (held back): $(cat "$WORK/rb-1.log")"
grep -qE "image [0-9a-f]{8} failed its health check before; waiting for another image" "$WORK/rb-1.log" ||
  fail "rb-1 did not decline it as failed before: $(cat "$WORK/rb-1.log")"
grep -q "\[rb-1 .*the image failed on this device before" "$WORK/server.log" ||
  fail "the server did not log rb-1's decline's reason: $(grep 'rb-1' "$WORK/server.log" | tail -3)"
grep -q "so the server holds it back; another image will be offered when the server has one (a retry on the server would not bring this one back: this device's own record declines it, as it failed here" "$WORK/rb-1.log" ||
  fail "rb-1 was not held back after its decline, or was told to ask for a retry: $(cat "$WORK/rb-1.log")"
[ "$(device_state rb-1)" = declined ] || fail "rb-1 after declining again is $(device_state rb-1), not declined"
[ "$(failed_in_rollout)" = "$before" ] || fail "rollout 1 counts $(failed_in_rollout) failed, was $before: rb-1's decline counted a success"
ok "after a retry, a device whose own record holds the image back declines it as failed before: declined, counted failed, held back"

# A device of an older core declined an image it failed before as REFUSED
# too, with its reason in words: only "already run..." is a device that
# runs the image (up to date); this one is a decline, counted failed.
before=$(failed_in_rollout)
python3 - "$SERVER_PORT" "$E2E" > "$WORK/oldcore.out" 2>&1 <<'PY' || fail "an older core's decline: $(cat "$WORK/oldcore.out")"
import socket, struct, sys
sys.path.insert(0, sys.argv[2])
import frames as F
DECLINE, TAG_MESSAGE, REFUSED = 0x06, 0x08, 111
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(F.hello(b"old-core"))
    r = F.Reader(s)
    kinds = [r.next()[0]]
    kind, offer = r.next()
    kinds.append(kind)
    if kinds != [F.WELCOME, F.OFFER]:
        sys.exit(f"frames {kinds}, expected WELCOME then OFFER")
    msg = b"image 0123abcd failed its health check before; waiting for another image"
    s.sendall(F.frame(DECLINE, offer[:32] + struct.pack("<H", REFUSED) + F.tlv(TAG_MESSAGE, msg)))
    # Read to the server's close: a close over unread DATA would be a reset,
    # which could take the DECLINE with it before the server reads it.
    while s.recv(65536):
        pass
PY
for _ in $(seq 200); do [ "$(device_state old-core)" = declined ] && break; sleep 0.05; done
[ "$(device_state old-core)" = declined ] || fail "an older core's decline of a failed image is $(device_state old-core), not declined"
[ "$(failed_in_rollout)" = $((before + 1)) ] || fail "rollout 1 counts $(failed_in_rollout) failed, expected $((before + 1))"
ok "an older core's REFUSED for an image it failed is a decline, not a device that runs it"

# The API's id-prefix filter (q), from the CLI.
"$TCPOTA" device list --id-prefix rt- > "$WORK/list.out" || fail "device list --id-prefix failed"
grep -q '^rt-1 ' "$WORK/list.out" && [ "$(grep -vc '^ID ' "$WORK/list.out")" = 1 ] ||
  fail "device list --id-prefix rt- listed: $(cat "$WORK/list.out")"
ok "a declined offer held back is offered again after device retry; the rollout counts the device updated"
stop_fleet

# Inside TLS the answer waits in the connection's queue for SSL_write: a
# close that dropped the queue (rather than sending it first) passed the
# plain test above. A TLS fleet, a HELLO, then close_notify.
cd "$WORK"
server_cert
DATA="$WORK/tlsdata"
start_fleet --tls-cert srv.pem --tls-key srv.key
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add (TLS fleet) failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create (TLS fleet) failed"
python3 - "$SERVER_PORT" "$E2E" > "$WORK/halftls.out" 2>&1 <<'PY' || fail "a TLS HELLO then close_notify: $(cat "$WORK/halftls.out")"
import socket, ssl, sys
sys.path.insert(0, sys.argv[2])
import frames as F
from tlsbio import handshake
inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context(cafile="srv.pem").wrap_bio(inb, outb, server_hostname="localhost")
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
handshake(raw, inb, outb, tls, then=F.hello(b"half-tls", max_payload=4096))
try:
    tls.unwrap()  # close_notify: the device's side ends
except ssl.SSLWantReadError:
    pass
raw.sendall(outb.read())
data = b""
while True:
    d = raw.recv(65536)
    if not d:
        break
    inb.write(d)
    try:
        while True:
            got = tls.read(65536)
            if not got:
                break
            data += got
    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
        pass
kinds = []
while len(data) >= 8:
    n = int.from_bytes(data[2:4], "little")
    kinds.append(data[0])
    data = data[8 + n:]
print("frames", kinds)
if kinds[:2] != [F.WELCOME, F.OFFER]:
    sys.exit(f"frames {kinds}, expected WELCOME (2) and OFFER (3) before the end")
PY
wait_line "$WORK/server.log" "\\[half-tls [^]]*\\] .*ended its side before its answer came: answered" 5
stop_fleet
ok "inside TLS too: a HELLO then close_notify gets WELCOME and OFFER, then the end"
