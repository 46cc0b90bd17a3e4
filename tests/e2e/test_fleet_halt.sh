#!/usr/bin/env bash
# Halt: 30 devices, a third with a failing health check, --halt-at 20. The
# rollout halts by itself; devices that had not started are not offered the
# image; the rolled-back ones are never offered it again; `rollout show` and
# `device list --state rolled-back` say so; resume and cancel work.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 65536
start_fleet
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --halt-at 20 --halt-min 3 > /dev/null ||
  fail "rollout create failed"

# One at a time, healthy and failing in turn: after the third rollback
# failures are 3 of 6 finished (50 % > 20 %), so the rollout halts there.
order=()
for i in $(seq 1 10); do order+=("good-$i" "bad-$i"); done
for i in $(seq 11 20); do order+=("good-$i"); done
for id in "${order[@]:0:6}"; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" || true
done
# Halted now: the other 24 check in all at once, and none may start it.
pids=()
for id in "${order[@]:6}"; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" & pids+=($!)
done
PIDS+=("${pids[@]}")
for p in "${pids[@]}"; do wait "$p" || true; done
show=$("$TCPOTA" rollout show 1 --json)
[ "$(echo "$show" | jq_py 'j["state"]')" = halted ] || fail "rollout did not halt: $show"
[ "$(echo "$show" | jq_py 'j["totals"]["failed"]')" = 3 ] || fail "failed count: $show"
[ "$(echo "$show" | jq_py 'j["totals"]["updated"]')" = 3 ] || fail "updated count: $show"
grep -q 'rollout 1 halted by itself' "$WORK/server.log" || fail "halt not logged"
ok "halted after 3 rollbacks of 6 finished devices"

# Nobody who had not started was offered it after the halt.
for id in "${order[@]:6}"; do
  "$TCPOTA" device status --flash "$WORK/$id" | grep -q '"version":"1.0.0"' ||
    fail "$id got the image after the halt"
  [ "$(device_state "$id")" = waiting ] || fail "$id is $(device_state "$id"), not waiting"
done
"$TCPOTA" device list --state rolled-back --json | jq_py '[d["id"] for d in j["devices"]]' |
  sort | paste -sd, | grep -qx 'bad-1,bad-2,bad-3' || fail "rolled-back list: $("$TCPOTA" device list --state rolled-back)"
"$TCPOTA" rollout show 1 | grep -qi halted || fail "rollout show (table) does not say halted"
# It says why, and what to do (the server's log did; rollout show said "halted").
"$TCPOTA" rollout show 1 | grep -qE "status     halted itself: [0-9]+ of [0-9]+ finished devices failed, more than [0-9]+ % \(--halt-at\) and at least [0-9]+ \(--halt-min\); look at the failures \(tcpota device list --state S for each of failed, rolled-back, boot-failed and declined: all count\), then resume it \(failures count from then\) or cancel it" ||
  fail "rollout show 1 does not say why it halted: $("$TCPOTA" rollout show 1)"
ok "after the halt: no new device offered; device list --state rolled-back names the 3"

# Resume: the devices that had not started get it now; the rolled-back ones
# never again.
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
for id in good-4 good-5 good-11 bad-1; do
  health=ok; case $id in bad-*) health=fail;; esac
  run_device "$id" esp32 "$WORK/$id" --health "$health" || true
done
for id in good-4 good-5 good-11; do
  "$TCPOTA" device status --flash "$WORK/$id" | grep -q '"version":"2.0.0"' || fail "$id not updated after resume"
done
"$TCPOTA" device status --flash "$WORK/bad-1" | grep -q '"version":"1.0.0"' || fail "bad-1 was offered again"
grep -qE '\[bad-1 [^]]*\] decision: no update: rollout 1: .*(failed|rolled back)' "$WORK/server.log" ||
  fail "bad-1 not refused for its failure"
[ "$(device_state bad-1)" = rolled-back ] || fail "bad-1 is $(device_state bad-1), not rolled-back"
ok "resume: devices not started get the image; a rolled-back one never again"

"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
run_device good-12 esp32 "$WORK/good-12" || fail "good-12 failed"
"$TCPOTA" device status --flash "$WORK/good-12" | grep -q '"version":"1.0.0"' || fail "good-12 updated after cancel"
rc=0; "$TCPOTA" rollout resume 1 > "$WORK/resume.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qi cancel "$WORK/resume.out" || fail "resume of a cancelled rollout: rc $rc $(cat "$WORK/resume.out")"
stop_fleet
ok "cancel: nothing more is offered, and it cannot be resumed"

# ---- a halt or a cancel stops the transfers already running ----------------
# Before, a device halfway through the image of a rollout that halted (or
# was cancelled, its image then removed) got the rest and installed it.
# Now its connection is cut as a lost one is: it keeps its bytes, and its
# next check-in is told why it waits. A device slowed by the proxy and an
# HTTP download slowed by curl are running when the rollout halts; a second
# slow device when another rollout is cancelled.
# fleet_with_rollout DIR IMAGE SIZE VERSION [RULES...]: a fleet of its own
# in DIR, an image of SIZE bytes made as IMAGE, added as VERSION for esp32,
# and rollout 1 of it with RULES.
fleet_with_rollout() {
  local dir=$1 img=$2 size=$3 version=$4; shift 4
  DATA=$dir
  start_fleet
  make_image "$img" "$size"
  "$TCPOTA" image add --version "$version" --model esp32 "$img" > /dev/null || fail "image add $version failed"
  "$TCPOTA" rollout create --image "$version" --model esp32 "$@" > /dev/null ||
    fail "rollout create of $version ($*) failed"
}
fleet_with_rollout "$WORK/stop" "$WORK/big" 1000000 3.0.0 --halt-at 0 --halt-min 1
start_proxy slow "$SERVER_PORT" --rate 50000 --queue-limit 16384
# slow_device ID: a device through the proxy (20 s for the image), in the
# background; sets SLOW_PID.
slow_device() {
  "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/$1" --id "$1" --model esp32 \
    --factory-version 1.0.0 --slot-size 1048576 --progress none --backoff-min-ms 50 \
    --backoff-max-ms 500 2> "$WORK/$1.log" &
  SLOW_PID=$!
  PIDS+=("$SLOW_PID")
}
slow_device s-1
s1=$SLOW_PID
slow_http_get "$API_PORT" h-1 "$WORK/h-1.got"
curl_pid=$SLOW_HTTP_PID
for id in s-1 h-1; do
  for _ in $(seq 1 100); do [ "$(device_state "$id" 2> /dev/null)" = downloading ] && break; sleep 0.1; done
  [ "$(device_state "$id")" = downloading ] || fail "$id did not start downloading: $(device_state "$id")"
done
# The slow HTTP reader's progress is in the registry while it reads (before,
# 0 bytes until the end: all of the image was in the socket at once).
for _ in $(seq 1 50); do
  b=$("$TCPOTA" device show --json h-1 | jq_py 'j["bytes"]'); [ "$b" -gt 0 ] && break; sleep 0.1
done
[ "$b" -gt 0 ] || fail "an HTTP download's progress stays at $b bytes while it reads"
# A device that has every byte of the image already, its ACCEPT not read
# yet (the whole image streams before it): a reset cannot take the bytes
# back, so its transfer is not stopped (a trial's such device was logged as
# stopped and installed the image 70 ms later, its completion uncounted).
# It reads all of it, then holds the connection and says whether the halt
# closed it.
python3 - "$SERVER_PORT" "$(dirname "$0")" "$WORK/p-1.all" > "$WORK/p-1.out" 2>&1 <<'PY' &
import os, socket, struct, sys
sys.path.insert(0, sys.argv[2])
import frames
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(frames.hello(b"p-1"))
r, got = frames.Reader(s), 0
while got < 1000000:
    kind, payload = r.next()
    if kind == 0x07:
        got += len(payload) - 4
    elif kind not in (frames.WELCOME, frames.OFFER):
        sys.exit(f"frame 0x{kind:02x} before the whole image")
open(sys.argv[3], "w").close()
s.settimeout(15)
try:
    print("cut" if not s.recv(1) else "bytes")
except socket.timeout:
    print("open")
except ConnectionResetError:
    print("cut")
PY
p1=$!
PIDS+=("$p1")
# Another such device, which resumed from byte 65536 (its HELLO's RESUME)
# and, after the halt, ACCEPTs from byte 0 (a resume point it dropped): the
# server would stream the image again after the halt; it stops it then.
python3 - "$SERVER_PORT" "$(dirname "$0")" "$WORK" "$(sha256sum "$WORK/big" | cut -c1-64)" > "$WORK/p-2.out" 2>&1 <<'PY' &
import os, socket, struct, sys, time
sys.path.insert(0, sys.argv[2])
import frames
work, img = sys.argv[3], bytes.fromhex(sys.argv[4])
hello = frames.hello(b"p-2")
payload = hello[4:-4] + frames.tlv(0x05, img + struct.pack("<II", 1000000, 65536))
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(frames.frame(frames.HELLO, payload))
r, got = frames.Reader(s), 0
while got < 1000000 - 65536:
    kind, p = r.next()
    if kind == 0x07:
        got += len(p) - 4
open(os.path.join(work, "p-2.all"), "w").close()
for _ in range(300):
    if os.path.exists(os.path.join(work, "p-2.go")): break
    time.sleep(0.1)
s.sendall(frames.frame(0x05, img + struct.pack("<I", 0)))
again = 0
try:
    while True:
        kind, p = r.next()
        if kind == 0x07:
            again += len(p) - 4
except (SystemExit, ConnectionResetError, socket.timeout):
    pass
print("again", again)
PY
p2=$!
PIDS+=("$p2")
for _ in $(seq 1 100); do [ -e "$WORK/p-1.all" ] && [ -e "$WORK/p-2.all" ] && break; sleep 0.1; done
[ -e "$WORK/p-1.all" ] || fail "p-1 did not get the whole image: $(cat "$WORK/p-1.out")"
[ -e "$WORK/p-2.all" ] || fail "p-2 did not get the image from 65536: $(cat "$WORK/p-2.out")"
run_device bad-x esp32 "$WORK/bad-x" --health fail || true
wait_line "$WORK/server.log" 'rollout 1 halted by itself'
wait_line "$WORK/server.log" '\[s-1 [^]]*\] rollout 1 halted: transfer stopped; closing' 5
wait_line "$WORK/server.log" '\[h-1 [^]]*\] http: rollout 1 halted: download stopped at byte [0-9]+ of 1000000' 5
wait_line "$WORK/server.log" 'rollout 1 halted: 2 transfers stopped on this server, 2 that may finish \(every byte sent already\)' 5
wait_line "$WORK/server.log" '\[p-1 [^]]*\] rollout 1 halted: every byte of the image was sent already \(a reset cannot take it back\): the transfer may finish' 5
rc=0; timeout 20 tail --pid="$s1" -f /dev/null || rc=$?
[ $rc -eq 0 ] || fail "s-1 went on after the halt: $(tail -3 "$WORK/s-1.log")"
wait "$s1" || fail "s-1 exited $?: $(tail -3 "$WORK/s-1.log")"
[ "$(running "$WORK/s-1")" = 1.0.0 ] || fail "s-1 installed the image of a halted rollout"
grep -q 'no update yet, running 1.0.0' "$WORK/s-1.log" || fail "s-1 was not told it waits: $(tail -3 "$WORK/s-1.log")"
[ "$(device_state s-1)" = waiting ] || fail "s-1 is $(device_state s-1), not waiting"
timeout 20 tail --pid="$curl_pid" -f /dev/null || fail "the HTTP download went on after the halt"
got=$(cat "$WORK/h-1.got")
[ -n "$got" ] && [ "$got" -lt 1000000 ] || fail "the HTTP download was not stopped: it got ${got:-nothing} bytes"
touch "$WORK/p-2.go"
wait_line "$WORK/server.log" '\[p-2 [^]]*\] its rollout was halted or cancelled once every byte had been sent, and it asks for the image from byte 0 again: transfer stopped; closing' 5
wait "$p2" || fail "p-2: $(cat "$WORK/p-2.out")"
again=$(sed -n 's/^again //p' "$WORK/p-2.out")
[ -n "$again" ] && [ "$again" -lt 100000 ] || fail "p-2 was sent the image again after the halt: $(cat "$WORK/p-2.out")"
wait "$p1" || fail "p-1: $(cat "$WORK/p-1.out")"
[ "$(cat "$WORK/p-1.out")" = open ] || fail "the halt closed a device that had every byte: $(cat "$WORK/p-1.out")"
! grep -q '\[p-1 [^]]*\] rollout 1 halted: transfer stopped' "$WORK/server.log" ||
  fail "a device that had every byte was logged as stopped"
ok "a halt stops the transfers running (a device, an HTTP download): neither installs the image; one that has every byte goes on"
# The HTTP device asks during the halt (told to wait), then, once the
# rollout is resumed, for the rest from where it got: the bytes it had are
# not forgotten by the wait (before: "not known to have bytes 0-N (it had
# 0): not counted", never verified).
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$API_PORT/ota/esp32?device=h-1")" = 204 ] ||
  fail "h-1 during the halt was not told to wait"
[ "$(device_state h-1)" = waiting ] || fail "h-1 during the halt is $(device_state h-1)"
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume 1 failed"
code=$(curl -s -o "$WORK/h-1.tail" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' -H "Range: bytes=$got-" \
  "http://127.0.0.1:$API_PORT/ota/esp32?device=h-1")
[ "$code" = 206 ] && cmp -s "$WORK/h-1.tail" <(tail -c +$((got + 1)) "$WORK/big") || fail "h-1's rest from $got: $code"
wait_line "$WORK/server.log" '\[h-1 [^]]*\] http: every byte of 3.0.0 sent' 5
[ "$(device_state h-1)" = verified ] || fail "h-1 after its rest is $(device_state h-1), not verified"
"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel 1 failed"
ok "an HTTP device told to wait during a halt keeps what it had: its rest after the resume completes the image"

make_image "$WORK/big4" 1000000
"$TCPOTA" image add --version 4.0.0 --model esp32 "$WORK/big4" > /dev/null || fail "image add 4.0.0 failed"
"$TCPOTA" rollout create --image 4.0.0 --model esp32 > /dev/null || fail "rollout 2 create failed"
slow_device s-2
for _ in $(seq 1 100); do [ "$(device_state s-2 2> /dev/null)" = downloading ] && break; sleep 0.1; done
[ "$(device_state s-2)" = downloading ] || fail "s-2 did not start downloading"
"$TCPOTA" rollout cancel 2 > /dev/null || fail "rollout cancel 2 failed"
wait_line "$WORK/server.log" '\[s-2 [^]]*\] rollout 2 cancelled: transfer stopped' 5
rc=0; timeout 20 tail --pid="$SLOW_PID" -f /dev/null || rc=$?
[ $rc -eq 0 ] || fail "s-2 went on after the cancel: $(tail -3 "$WORK/s-2.log")"
[ "$(running "$WORK/s-2")" = 1.0.0 ] || fail "s-2 installed the image of a cancelled rollout"
# The device names what it cannot tell apart (before: "recv: Connection
# reset by peer", as a proxy's cut reads "server closed the connection").
grep -qF 'the server (or a proxy on the way) reset the connection' "$WORK/s-2.log" ||
  fail "s-2 did not say its connection was reset: $(cat "$WORK/s-2.log")"
ok "a cancel stops the transfers of its rollout"

# ---- an HTTP device's failure halts at the request that reveals it ------------
# It is known only when the device asks again on its old version from byte
# 0 after every byte was sent; the counts that request read did not include
# it, so the halt waited for another device's check-in (a new user's trial).
make_image "$WORK/big5" 300000
"$TCPOTA" image add --version 5.0.0 --model esp32 "$WORK/big5" > /dev/null || fail "image add 5.0.0 failed"
"$TCPOTA" rollout create --image 5.0.0 --model esp32 --halt-at 0 --halt-min 1 > /dev/null ||
  fail "rollout 3 create failed"
ask_hf() { curl -s -o "$WORK/hf.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
  "http://127.0.0.1:$API_PORT/ota/esp32?device=hf-1"; }
code=$(ask_hf)
[ "$code" = 200 ] && cmp -s "$WORK/hf.b" "$WORK/big5" || fail "hf-1's download: $code"
for _ in $(seq 1 50); do [ "$(device_state hf-1)" = verified ] && break; sleep 0.1; done
[ "$(device_state hf-1)" = verified ] || fail "hf-1 is $(device_state hf-1), not verified"
code=$(ask_hf)
[ "$code" = 204 ] || fail "hf-1 back on 1.0.0: $code, not 204"
wait_line "$WORK/server.log" 'rollout 3 halted by itself' 5
"$TCPOTA" rollout show 3 --json | jq_py 'j["state"]' | grep -qx halted ||
  fail "rollout 3 is $("$TCPOTA" rollout show 3 --json | jq_py 'j["state"]') after hf-1's failure"
ok "an HTTP device's failure halts its rollout at the request that reveals it"
# So does its success for the next wave: the request that says it runs the
# image opens the wave the rule calls for.
make_image "$WORK/big6" 300000
"$TCPOTA" image add --version 6.0.0 --model m6 "$WORK/big6" > /dev/null || fail "image add 6.0.0 failed"
"$TCPOTA" rollout create --image 6.0.0 --model m6 --waves 50,100 --min-finished 1 --soak 0 \
  --success-pct 100 > /dev/null || fail "rollout 4 create failed"
ask_m6() { curl -s -o "$WORK/m6.b" -w '%{http_code}' -H "X-Tcpota-Version: $2" \
  "http://127.0.0.1:$API_PORT/ota/m6?device=$1"; }
first=""
for i in $(seq 1 40); do
  [ "$(ask_m6 "u-$i" 1.0.0)" = 200 ] && { first=u-$i; break; }
done
[ -n "$first" ] && cmp -s "$WORK/m6.b" "$WORK/big6" || fail "no device of the first wave got the image"
for _ in $(seq 1 50); do [ "$(device_state "$first")" = verified ] && break; sleep 0.1; done
[ "$(device_state "$first")" = verified ] || fail "$first is $(device_state "$first"), not verified"
[ "$(ask_m6 "$first" 6.0.0)" = 204 ] || fail "$first on 6.0.0: not 204"
wait_line "$WORK/server.log" 'rollout 4: wave 2 \(100%\) opens' 5
stop_fleet
ok "an HTTP device's update opens the next wave at the request that says so"

# ---- a device's DECLINE halts its rollout when it is recorded ---------------
# The decline comes after the check-in whose counts the rules read: a trial's
# rollout stayed active past its halt rule until another device checked in.
fleet_with_rollout "$WORK/decline" "$WORK/img7" 65536 7.0.0 --halt-at 0 --halt-min 1
"$TCPOTA" keygen --out "$WORK/k7" > /dev/null 2>&1 || fail "keygen failed"
run_device dk-1 esp32 "$WORK/dk-1" --trust "$WORK/k7.pub" --max-attempts 1 || true
[ "$(device_state dk-1)" = declined ] || fail "dk-1 (trusting a key, the image unsigned) is $(device_state dk-1)"
wait_line "$WORK/server.log" 'rollout 1 halted by itself' 5
"$TCPOTA" rollout show 1 --json | jq_py 'j["state"]' | grep -qx halted ||
  fail "rollout 1 is $("$TCPOTA" rollout show 1 --json | jq_py 'j["state"]') after dk-1's decline"
stop_fleet
ok "a device's decline halts its rollout when it is recorded, not at the next check-in"

# ---- an old failure does not count against a rollout made again ------------
# A device that rolled back image 8.0.0 under rollout 1, then was decided
# anew (rollout 1 cancelled: up to date), is held back from 8.0.0 when a
# new rollout of it comes; that is its old failure, not one of rollout 2's:
# counted there, it would halt rollout 2 by a device that never tried it.
fleet_with_rollout "$WORK/again" "$WORK/img8" 65536 8.0.0
run_device ra-1 esp32 "$WORK/ra-1" --health fail || true
[ "$(device_state ra-1)" = rolled-back ] || fail "ra-1 is $(device_state ra-1), not rolled-back"
"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel 1 failed"
run_device ra-1 esp32 "$WORK/ra-1" || true
[ "$(device_state ra-1)" = up-to-date ] || fail "ra-1 with no rollout is $(device_state ra-1)"
"$TCPOTA" rollout create --image 8.0.0 --model esp32 --halt-at 0 --halt-min 1 > /dev/null ||
  fail "rollout 2 create failed"
run_device ra-1 esp32 "$WORK/ra-1" || true
[ "$(device_state ra-1)" = failed ] || fail "ra-1 held back from 8.0.0 is $(device_state ra-1)"
show=$("$TCPOTA" rollout show 2 --json)
[ "$(echo "$show" | jq_py 'j["state"]')" = active ] && [ "$(echo "$show" | jq_py 'j["totals"]["failed"]')" = 0 ] ||
  fail "rollout 2 after ra-1's old failure: $show"
stop_fleet
ok "a device's old failure of an image does not count against a new rollout of it"
