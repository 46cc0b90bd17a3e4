#!/usr/bin/env bash
# The sample's req0/req1 devices in fleet mode: registered by address under
# model `legacy`; without a `legacy` rollout they get nothing, with one they
# get its image byte-exact; a signed image (which they cannot check) only
# with --allow-legacy, as in single-image mode.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

make_image "$WORK/img" 100000
start_fleet
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/none" --timeout 5 > "$WORK/none.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got an image without a legacy rollout"
grep -q 'nothing to send: no rollout for model legacy' "$WORK/server.log" || fail "no reason logged"
"$TCPOTA" device list --model legacy --json | jq_py '[d["id"] for d in j["devices"]]' |
  grep -qx 'legacy-127.0.0.1' || fail "legacy device not registered: $("$TCPOTA" device list --model legacy)"
"$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["protocol"]' | grep -qx legacy ||
  fail "legacy-127.0.0.1 is not registered as legacy: $("$TCPOTA" device show --json legacy-127.0.0.1)"
# The registry says why it got nothing, as for a v1 device (it stayed
# "seen", with no reason).
[ "$(device_state legacy-127.0.0.1)" = up-to-date ] || fail "legacy device is $(device_state legacy-127.0.0.1)"
"$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["reason"]' | grep -q '^no rollout for model legacy' ||
  fail "no reason in the registry: $("$TCPOTA" device show legacy-127.0.0.1)"
ok "no legacy rollout: nothing sent; the device is registered as legacy-127.0.0.1, up to date, and why"

"$TCPOTA" image add --version 5.0.0 --model legacy "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 5.0.0 --model legacy > /dev/null || fail "rollout create failed"
"$TCPOTA" rollout pause 1 > /dev/null || fail "rollout pause failed"
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/paused" --timeout 5 > "$WORK/paused.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got the image of a paused rollout"
[ "$(device_state legacy-127.0.0.1)" = waiting ] || fail "legacy device is $(device_state legacy-127.0.0.1)"
"$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["reason"]' |
  grep -qx 'rollout 1: the rollout is paused by the operator' ||
  fail "no reason in the registry: $("$TCPOTA" device show legacy-127.0.0.1)"
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
ok "a paused legacy rollout: nothing sent; the device is waiting, and the registry says why"
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/got" --req1-every 5 > "$WORK/got.log" 2>&1 ||
  fail "legacy client failed under the legacy rollout"
cmp "$WORK/got" "$WORK/img" || fail "legacy client got other bytes"
[ "$(device_state legacy-127.0.0.1)" = updated ] || fail "legacy device is $(device_state legacy-127.0.0.1)"
ok "legacy rollout: the sample's device gets its image byte-exact"
# A legacy device cannot say what it runs: that it was sent every byte is
# what stops the server from sending the image again at its next request.
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/again" --timeout 5 > "$WORK/again.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "the legacy device was sent the image a second time"
grep -q "legacy device: nothing to send: it was sent every byte of this rollout's image already" \
  "$WORK/server.log" || fail "no reason logged: $(grep 'legacy device' "$WORK/server.log" | tail -2)"
[ "$(device_state legacy-127.0.0.1)" = updated ] || fail "legacy device is $(device_state legacy-127.0.0.1) after its second request"
ok "a legacy device sent every byte is not sent the image again"

make_keys rel
signed_image "$WORK/signed" 50000 6.0.0 legacy rel
image_add "$WORK/signed" > /dev/null
"$TCPOTA" rollout create --image 6.0.0 --model legacy > /dev/null || fail "rollout create 6.0.0 failed"
stop_fleet
start_fleet --quiet # the refusal is logged all the same
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/signed.got" --timeout 5 > "$WORK/signed.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got a signed image without --allow-legacy"
grep -q 'nothing to send: the image is signed and legacy devices cannot check it (--allow-legacy' \
  "$WORK/server.log" || fail "no reason logged: $(grep 'legacy device' "$WORK/server.log" | tail -2)"
[ "$("$TCPOTA" summary --json | jq_py 'j["auth_refused"]["total"]')" = 0 ] ||
  fail "a legacy device refused a signed image counts as refused for authentication"
stop_fleet
ok "a signed legacy rollout: nothing sent without --allow-legacy, and the log says why (also --quiet)"

# Under --require-auth a legacy device cannot authenticate: refused, and
# counted as such in the summary (no id to list; the log has its address).
start_fleet --require-auth
grep -qE "listening on 127\.0\.0\.1:$SERVER_PORT, devices must authenticate, " "$WORK/server.log" ||
  fail "the listening line does not say --require-auth: $(grep 'listening on' "$WORK/server.log")"
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/auth.got" --timeout 5 > "$WORK/auth.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device was served by a fleet server with --require-auth"
grep -q 'legacy (req0/req1) device refused: --require-auth' "$WORK/server.log" ||
  fail "no refusal logged: $(tail -2 "$WORK/server.log")"
"$TCPOTA" summary --json > "$WORK/auth.json" || fail "tcpota summary --json failed"
[ "$(jq_py 'j["auth_refused"]["counts"]["no-proof"], len(j["auth_refused"]["devices"])' < "$WORK/auth.json")" = "(1, 0)" ] ||
  fail "the summary does not count the legacy device refused for authentication: $(cat "$WORK/auth.json")"
"$TCPOTA" summary > "$WORK/auth.txt" || fail "tcpota summary failed"
grep -q '^authentication refused by this server since .*: 1 (no-proof 1,' "$WORK/auth.txt" &&
  grep -q '^no id to list: the devices refused have authenticated since, or gave no id (legacy req0/req1 devices under --require-auth' "$WORK/auth.txt" &&
  ! grep -q 'tcpota device secret ID' "$WORK/auth.txt" ||
  fail "tcpota summary on a refused legacy device: $(cat "$WORK/auth.txt")"
# A v1 device without a secret too; the log's last line counts each of the
# two connections once: refused for authentication, neither "ended by an
# error" nor "refused" besides (before: each counted twice).
rc=0
run_device nosecret legacy "$WORK/nosecret" --max-attempts 1 || rc=$?
[ $rc -ne 0 ] || fail "a device without a secret was served under --require-auth"
stop_fleet
grep -qE 'summary: .*; 2 connections, 0 ended by an error, 0 refused \(.*\); authentication refused 2 times;' "$WORK/server.log" ||
  fail "the log's summary counts a refusal twice: $(grep 'summary:' "$WORK/server.log" | tail -1)"
ok "--require-auth: a legacy device is refused and counted among the refused authentications, once"

start_fleet --allow-legacy
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/signed.got" > "$WORK/signed.log" 2>&1 ||
  fail "--allow-legacy did not serve the signed image: $(tail -2 "$WORK/signed.log")"
cmp "$WORK/signed.got" "$WORK/signed" || fail "legacy client got other bytes than the signed image"
stop_fleet
ok "--allow-legacy: the signed image is sent byte-exact"

# A legacy device's check-in moves its rollout as a v1 device's does
# (fleet.c, legacy_checkin_done: apply_rules), and the registry's reason
# follows a new reason for the same state. Its id legacy-127.0.0.1 sits
# past the first wave (1 %) of rollouts 1 and 2, computed here from
# rollout.h's rule; in rollout 2 a v1 device of the first wave finishes
# first (a wave no device of which checked in opens nothing by itself).
DATA="$WORK/data-waves"
for ro in 1 2; do
  [ "$(fnv_place $ro legacy-127.0.0.1)" -ge 100 ] || fail "legacy-127.0.0.1 is in the first wave of rollout $ro"
done
start_fleet
"$TCPOTA" image add --version 5.0.0 --model legacy "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 5.0.0 --model legacy --waves 1,100 --soak 3600 > /dev/null ||
  fail "rollout create 1 failed"
"$TCPOTA" rollout pause 1 > /dev/null || fail "rollout pause failed"
legacy_reason() {
  rc=0
  "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/w.got" --timeout 5 > "$WORK/w.log" 2>&1 || rc=$?
  [ $rc -ne 0 ] || fail "a legacy device got the image ($1)"
  [ "$(device_state legacy-127.0.0.1)" = waiting ] || fail "legacy device is $(device_state legacy-127.0.0.1) ($1)"
  "$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["reason"]'
}
[ "$(legacy_reason paused)" = 'rollout 1: the rollout is paused by the operator' ] ||
  fail "paused: the registry says $(legacy_reason paused)"
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
why=$(legacy_reason 'wave not open')
[ "$why" = 'rollout 1: its wave of the rollout is not open yet' ] ||
  fail "resumed, wave not open: the registry still says $why"
ok "a legacy device waiting for another reason: the registry says the new one"
"$TCPOTA" rollout create --image 5.0.0 --model legacy --waves 1,100 --soak 0 --min-finished 1 > /dev/null ||
  fail "rollout create 2 failed"
first=$(python3 -c '
import sys
for i in range(100000):
    h = 0xcbf29ce484222325
    for b in (2).to_bytes(8, "little") + ("first-%d" % i).encode():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    if h % 10000 < 100:
        print("first-%d" % i)
        break
')
[ "$(fnv_place 2 "$first")" -lt 100 ] || fail "$first is not in the first wave of rollout 2"
run_device "$first" legacy "$WORK/first" || fail "$first (wave 1 of rollout 2) failed"
check_device "$WORK/first" "$WORK/img"
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/w.got" > "$WORK/w.log" 2>&1 ||
  fail "the legacy check-in did not open its wave: $(grep 'legacy device' "$WORK/server.log" | tail -1)"
cmp "$WORK/w.got" "$WORK/img" || fail "legacy client got other bytes"
grep -q 'rollout 2: wave 2 (100%) opens' "$WORK/server.log" || fail "the opening is not logged"
# Past a last wave below 100 % (rollout 3: 1 %; the device sits at 17 %)
# it is never offered the image: up to date, not waiting for ever, as a v1
# device is (test_fleet_waves).
[ "$(fnv_place 3 legacy-127.0.0.1)" -ge 100 ] || fail "legacy-127.0.0.1 is in rollout 3's one wave"
make_image "$WORK/img6" 90000
"$TCPOTA" image add --version 6.0.0 --model legacy "$WORK/img6" > /dev/null || fail "image add 6.0.0 failed"
"$TCPOTA" rollout create --image 6.0.0 --model legacy --waves 1 > /dev/null 2>&1 || fail "rollout create 3 failed"
rc=0
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/w6.got" --timeout 5 > "$WORK/w6.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device past rollout 3's last wave got its image"
[ "$(device_state legacy-127.0.0.1)" = up-to-date ] || fail "past the last wave, the legacy device is $(device_state legacy-127.0.0.1)"
"$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["reason"]' | grep -q '^rollout 3: its last wave leaves out' ||
  fail "past the last wave, the registry says $("$TCPOTA" device show --json legacy-127.0.0.1 | jq_py 'j["reason"]')"
ok "a legacy device past a rollout's last wave below 100 %: up to date, and why"
stop_fleet
ok "a legacy check-in opens its wave when the rules allow, and gets the image at once"
