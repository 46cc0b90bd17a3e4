#!/usr/bin/env bash
# The sample's req0/req1 devices in fleet mode: registered by address under
# model `legacy`; without a `legacy` rollout they get nothing, with one they
# get its image byte-exact.
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
ok "no legacy rollout: nothing sent; the device is registered as legacy-127.0.0.1"

"$TCPOTA" image add --version 5.0.0 --model legacy "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 5.0.0 --model legacy > /dev/null || fail "rollout create failed"
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/got" --req1-every 5 > "$WORK/got.log" 2>&1 ||
  fail "legacy client failed under the legacy rollout"
cmp "$WORK/got" "$WORK/img" || fail "legacy client got other bytes"
[ "$(device_state legacy-127.0.0.1)" = updated ] || fail "legacy device is $(device_state legacy-127.0.0.1)"
stop_fleet
ok "legacy rollout: the sample's device gets its image byte-exact"
