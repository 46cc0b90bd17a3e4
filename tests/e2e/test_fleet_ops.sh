#!/usr/bin/env bash
# Fleet operations the other fleet tests leave out: device secrets made
# through the API (taken at the next check-in, without a restart; a new one
# replaces the old), groups (a group's rollout beside the model-wide one; a
# newer rollout supersedes the older), a pause, and the start-up errors of
# `tcpota serve --data`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"


# add_version FILE VERSION: an unsigned image of that version for esp32.
add_version() {
  make_image "$1" $((40000 + RANDOM))
  "$TCPOTA" image add --version "$2" --model esp32 "$1" > /dev/null || fail "image add $2 failed"
}

# slow_download NAME ID [ARGS...]: device ID (flash $WORK/NAME) downloads
# through a proxy of its own at 8000 B/s (PROXY_PID); returns once the
# registry says it downloads; slow: the device's PID.
slow_download() {
  local name=$1 id=$2
  shift 2
  start_proxy "$name" "$SERVER_PORT" --rate 8000 --queue-limit 4096
  SERVER_PORT=$PROXY_PORT run_device "$id" esp32 "$WORK/$name" "$@" & slow=$!
  PIDS+=("$slow")
  for _ in $(seq 1 100); do [ "$(device_state "$id" 2> /dev/null)" = downloading ] && break; sleep 0.1; done
  [ "$(device_state "$id")" = downloading ] || fail "$id did not start downloading"
}

# ---- device secrets (--require-auth), without restarting the server ----
DATA="$WORK/auth"
start_fleet --require-auth
add_version "$WORK/a2" 2.0.0
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"

rc=0; run_device s-1 esp32 "$WORK/s1-a" || rc=$?
[ $rc -eq 1 ] || fail "a device without a secret: rc $rc, not 1"
grep -q 'requires device authentication: give the device its secret (tcpota device --secret FILE' "$WORK/s-1.log" || fail "no refusal message: $(tail -3 "$WORK/s-1.log")"
[ "$(running "$WORK/s1-a")" = 1.0.0 ] || fail "a device without a secret got the image"
# The server's log names the device and says what to do (before: "[- ADDR]
# error: not allowed; closing").
grep -q '\[s-1 [^]]*\] refused: the device does not authenticate (no secret given to it, or a build without authentication) and this server requires it (--require-auth); give the device its secret (tcpota device --secret FILE); closing' "$WORK/server.log" ||
  fail "the server's log of the refusal: $(grep -i 'allowed\|refused' "$WORK/server.log")"
ok "--require-auth refuses a device without a secret, and the server's log says who and why"

"$TCPOTA" device secret s-1 --out "$WORK/s1.secret" > /dev/null || fail "device secret failed"
[ "$(stat -c %a "$WORK/s1.secret")" = 600 ] || fail "secret file mode $(stat -c %a "$WORK/s1.secret")"
run_device s-1 esp32 "$WORK/s1-a" --secret "$WORK/s1.secret" || fail "device with its new secret failed"
[ "$(running "$WORK/s1-a")" = 2.0.0 ] || fail "the device with its secret was not updated"
[ "$(device_state s-1)" = updated ] || fail "s-1 is $(device_state s-1), not updated"
[ "$("$TCPOTA" device show --json s-1 | jq_py 'j["has_secret"]')" = true ] || fail "has_secret is not true"
kill -0 "$SERVER_PID" || fail "the server is gone"
[ "$(grep -c 'listening on' "$WORK/server.log")" = 1 ] || fail "the server restarted"
ok "device secret --out: the device authenticates and updates at its next check-in, same server"

# A secret for an id never seen: no "previous one" (there was none), and the
# id stays out of the registry until it checks in, but device show says it
# has a secret (before: "the previous one no longer works", then "no device").
"$TCPOTA" device secret n-1 --out "$WORK/n1.secret" > "$WORK/out" 2>&1 || fail "device secret n-1 failed: $(cat "$WORK/out")"
grep -q 'wrote the new secret of device n-1 to .*; the device is not registered yet (it registers at its first check-in)' "$WORK/out" &&
  ! grep -q 'previous' "$WORK/out" || fail "a new id's secret: $(cat "$WORK/out")"
rc=0; "$TCPOTA" device show n-1 > "$WORK/out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q 'device n-1 has not checked in yet, so it is not in the registry; it has a secret' "$WORK/out" ||
  fail "device show of an id with a secret only: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" device set n-1 --group canary > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q '^tcpota device: device n-1 has not checked in yet, so it is not in the registry and its group can be set once it has; it has a secret' "$WORK/out" ||
  fail "device set of an id with a secret only: rc $rc $(cat "$WORK/out")"
"$TCPOTA" device secret n-1 2> "$WORK/out" > /dev/null || fail "second device secret n-1 failed"
grep -q 'shown only this once; the previous one no longer works' "$WORK/out" || fail "a second secret of n-1: $(cat "$WORK/out")"
"$TCPOTA" device secret c-0 2> "$WORK/out" > /dev/null || fail "device secret c-0 failed"
grep -q 'shown only this once; the device is not registered yet' "$WORK/out" || fail "a new id's secret on stdout: $(cat "$WORK/out")"
ok "device secret for a new id says it is not registered yet; device show and set say it has a secret"

"$TCPOTA" device secret s-1 --out "$WORK/s1-new.secret" > "$WORK/out" || fail "second device secret failed"
grep -q '; the previous one no longer works$' "$WORK/out" || fail "the second secret of s-1: $(cat "$WORK/out")"
cmp -s "$WORK/s1.secret" "$WORK/s1-new.secret" && fail "the second secret is the first one"
rc=0; run_device s-1 esp32 "$WORK/s1-b" --secret "$WORK/s1.secret" || rc=$?
[ $rc -eq 1 ] || fail "the replaced secret: rc $rc, not 1"
grep -q 'authentication refused' "$WORK/s-1.log" || fail "no refusal of the old secret: $(tail -3 "$WORK/s-1.log")"
# ...said to be final for this run (a new user's trial read "it checks this
# device's next try in 2 s" as a promise, and the device stopped).
grep -qE "it checks this device's next try in [0-9]+ s at the earliest; not retrying: put right what the server says first$|retrying would be refused again$" "$WORK/s-1.log" ||
  fail "the refusal did not say the device stops: $(tail -2 "$WORK/s-1.log")"
[ "$(running "$WORK/s1-b")" = 1.0.0 ] || fail "the replaced secret got the image"
# That failure holds back this id's next AUTH for 1 s (any secret); a try
# meanwhile is told BUSY and when, and the device tries again then instead
# of giving up (as it does on DENIED): the new secret works in one run.
run_device s-1 esp32 "$WORK/s1-b" --secret "$WORK/s1-new.secret" ||
  fail "the new secret, tried while the id waited: $(tail -3 "$WORK/s-1.log")"
[ "$(running "$WORK/s1-b")" = 2.0.0 ] || fail "the new secret did not update"
# A secret file is never overwritten (the CLI refuses before asking the server).
rc=0; "$TCPOTA" device secret s-1 --out "$WORK/s1-new.secret" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'never overwritten' "$WORK/out" || fail "--out on an existing file: rc $rc $(cat "$WORK/out")"
mkdir "$WORK/adir"
rc=0; "$TCPOTA" device secret s-1 --out "$WORK/adir" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "--out: $WORK/adir is a directory; give the name of a new file" "$WORK/out" ||
  fail "--out on a directory: rc $rc $(cat "$WORK/out")"
mkfifo "$WORK/afifo"
rc=0; "$TCPOTA" device secret s-1 --out "$WORK/afifo" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -qx -- "tcpota device: --out: $WORK/afifo is a FIFO; give the name of a new file instead" "$WORK/out" ||
  fail "--out on a FIFO: rc $rc $(cat "$WORK/out")"
run_device s-1 esp32 "$WORK/s1-c" --secret "$WORK/s1-new.secret" || fail "a refused --out replaced the secret"
rc=0; "$TCPOTA" device secret s-full > /dev/full 2> "$WORK/out" || rc=$?
[ $rc -eq 1 ] && grep -qx "tcpota device: cannot write the new secret of device s-full to the standard output: No space left on device; the server holds it, and nobody has it: make another (tcpota device secret s-full --out FILE) and give the device that one" "$WORK/out" &&
  ! grep -q 'save it' "$WORK/out" || fail "device secret > /dev/full: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" device secret s-full --json > /dev/full 2> "$WORK/out" || rc=$?
[ $rc -eq 1 ] && grep -qx "tcpota device: cannot write the new secret of device s-full to the standard output: No space left on device; the server holds it (the previous one no longer works), and nobody has it: make another (tcpota device secret s-full --out FILE) and give the device that one" "$WORK/out" ||
  fail "device secret --json > /dev/full, replacing one: rc $rc $(cat "$WORK/out")"
ok "a second device secret replaces the first: the old file is refused, the new one works; one that cannot be shown says so"

# device rm: a device decommissioned leaves the registry with its secret;
# under --require-auth its secret no longer opens the server (it was taken
# from the server's memory at once, no restart), and the rollout keeps
# counting its update. A new secret lets it in again, as a new device.
updated_before=$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')
"$TCPOTA" device rm s-1 > "$WORK/out" 2>&1 || fail "device rm s-1 failed: $(cat "$WORK/out")"
grep -qx 'removed device s-1 and its secret' "$WORK/out" &&
  grep -qx 'a device that checks in after this is registered anew; under --require-auth only with a new secret (tcpota device secret)' "$WORK/out" ||
  fail "device rm s-1 said: $(cat "$WORK/out")"
grep -q 'device s-1 removed from the registry, its secret with it (API client' "$WORK/server.log" ||
  fail "the server did not log the removal: $(grep -i removed "$WORK/server.log")"
rc=0; "$TCPOTA" device show s-1 > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q 'no device s-1' "$WORK/out" || fail "device show after rm: rc $rc $(cat "$WORK/out")"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')" = "$updated_before" ] ||
  fail "the rollout's updated count changed with the removal: $("$TCPOTA" rollout show 1)"
rc=0; run_device s-1 esp32 "$WORK/s1-c" --secret "$WORK/s1-new.secret" --max-attempts 1 || rc=$?
[ $rc -eq 1 ] || fail "the secret of a removed device was still taken: rc $rc"
rc=0; "$TCPOTA" device rm s-1 > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qx 'tcpota device: no device s-1' "$WORK/out" || fail "device rm twice: rc $rc $(cat "$WORK/out")"
"$TCPOTA" device secret s-1 --out "$WORK/s1-3.secret" > /dev/null 2>&1 || fail "device secret after rm failed"
run_device s-1 esp32 "$WORK/s1-d" --secret "$WORK/s1-3.secret" || fail "s-1 with a new secret after rm: $(tail -3 "$WORK/s-1.log")"
[ "$(running "$WORK/s1-d")" = 2.0.0 ] || fail "s-1 registered anew did not update"
# An id with a secret that never checked in: the secret goes; rm says so.
"$TCPOTA" device secret never-1 --out "$WORK/never1.secret" > /dev/null 2>&1 || fail "device secret never-1 failed"
"$TCPOTA" device rm never-1 > "$WORK/out" 2>&1 || fail "device rm never-1 failed: $(cat "$WORK/out")"
grep -qx 'device never-1 had not checked in: removed its secret' "$WORK/out" || fail "device rm never-1 said: $(cat "$WORK/out")"
rc=0; "$TCPOTA" device rm never-1 > /dev/null 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "device rm never-1 twice: rc $rc"
rc=0; "$TCPOTA" device rm > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'rm needs a device ID: tcpota device rm ID' "$WORK/out" || fail "device rm without ID: rc $rc $(cat "$WORK/out")"
# Removed while it downloads, authenticated: the session proved a secret
# that is gone, and ends at once (before: it ran to its end); the device
# comes back, and its AUTH is refused. (What the kernels and the proxy
# already held still reaches it: the device may verify the image, but
# cannot report it.)
"$TCPOTA" device secret slow-1 --out "$WORK/slow1.secret" > /dev/null 2>&1 || fail "device secret slow-1 failed"
slow_download slow1 slow-1 --secret "$WORK/slow1.secret"
"$TCPOTA" device rm slow-1 > /dev/null || fail "device rm slow-1 failed"
wait_line "$WORK/server.log" '\[slow-1 [^]]*\] device secret removed: connection cut, at [0-9]+ of [0-9]+ bytes durable' 5
cut=$(sed -nE 's/.*\[slow-1 [^]]*\] device secret removed: connection cut, at ([0-9]+) of ([0-9]+) bytes.*/\1 \2/p' "$WORK/server.log")
[ "${cut% *}" -lt "${cut#* }" ] || fail "slow-1 was cut with all of it acknowledged: $cut"
rc=0; wait "$slow" || rc=$?
[ $rc -eq 1 ] && grep -q 'authentication refused: the server has no secret for this device id' "$WORK/slow-1.log" ||
  fail "slow-1, removed while it downloaded: rc $rc $(tail -3 "$WORK/slow-1.log")"
kill "$PROXY_PID" 2> /dev/null || true
# A secret replaced (it leaked) ends the sessions that proved the old one too.
"$TCPOTA" device secret slow-2 --out "$WORK/slow2.secret" > /dev/null 2>&1 || fail "device secret slow-2 failed"
slow_download slow2 slow-2 --secret "$WORK/slow2.secret"
"$TCPOTA" device secret slow-2 --force --out "$WORK/slow2-new.secret" > /dev/null 2>&1 || fail "device secret slow-2 again failed"
wait_line "$WORK/server.log" '\[slow-2 [^]]*\] device secret replaced: connection cut' 5
rc=0; wait "$slow" || rc=$?
[ $rc -eq 1 ] && grep -q 'authentication refused' "$WORK/slow-2.log" ||
  fail "slow-2, its secret replaced while it downloaded: rc $rc $(tail -3 "$WORK/slow-2.log")"
kill "$PROXY_PID" 2> /dev/null || true
SERVER_PORT=$SERVER_PORT run_device slow-2 esp32 "$WORK/slow2" --secret "$WORK/slow2-new.secret" ||
  fail "slow-2 with its new secret did not finish: $(tail -3 "$WORK/slow-2.log")"
[ "$(running "$WORK/slow2")" = 2.0.0 ] || fail "slow-2 with its new secret runs $(running "$WORK/slow2")"
stop_fleet
ok "device rm: the device and its secret go at once (its secret refused, its session cut, rollout counts kept); a new secret brings it back; a replaced secret cuts the session too"

# Removed while it downloads, without a secret (no --require-auth): its
# transfer runs on, its steps (once a second) are not recorded, and the log
# says so once, as news (a review: an error line every second).
DATA="$WORK/rmrun"
start_fleet
add_version "$WORK/a3" 2.0.0
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
slow_download slow3 slow-3
"$TCPOTA" device rm slow-3 > /dev/null || fail "device rm slow-3 failed"
rc=0; wait "$slow" || rc=$?
[ $rc -eq 0 ] && grep -q 'verify ok: image 2.0.0' "$WORK/slow-3.log" ||
  fail "slow-3, removed while it downloaded: rc $rc $(tail -3 "$WORK/slow-3.log")"
[ "$(grep -c 'store: steps not recorded, their device not in the registry (removed while it was served? said once a minute): .*no device slow-3' "$WORK/server.log")" = 1 ] ||
  fail "the steps of slow-3 after its removal: $(grep -c 'not in the registry' "$WORK/server.log") lines: $(grep 'slow-3\|skipped' "$WORK/server.log" | tail -5)"
! grep -q 'events skipped' <(grep -v 'not in the registry' "$WORK/server.log") ||
  fail "a removed device's steps were logged as an error: $(grep 'events skipped' "$WORK/server.log" | head -2)"
grep -q 'connection cut' "$WORK/server.log" && fail "a session without a secret was cut: $(grep 'connection cut' "$WORK/server.log")"
kill "$PROXY_PID" 2> /dev/null || true
stop_fleet
ok "device rm of a device without a secret mid-download: its transfer runs on, its steps not recorded (said once)"

# ---- groups, supersede, pause ----
DATA="$WORK/data"
start_fleet --max-image 1000000
for id in c-1 c-2 o-1 o-2; do # registered (no rollout yet), then grouped
  run_device "$id" esp32 "$WORK/$id" || fail "$id: first check-in failed"
done
for id in c-1 c-2; do
  "$TCPOTA" device set "$id" --group canary > /dev/null || fail "device set $id failed"
done
[ "$("$TCPOTA" device list --group canary --json | jq_py '[d["id"] for d in j["devices"]]' | paste -sd,)" = c-1,c-2 ] ||
  fail "device list --group canary: $("$TCPOTA" device list --group canary)"
add_version "$WORK/i2" 2.0.0
add_version "$WORK/i3" 3.0.0
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "model-wide rollout failed"
"$TCPOTA" rollout create --image 3.0.0 --model esp32 --group canary > /dev/null || fail "canary rollout failed"
for id in c-1 c-2 o-1 o-2; do run_device "$id" esp32 "$WORK/$id" || fail "$id failed"; done
for id in c-1 c-2; do [ "$(running "$WORK/$id")" = 3.0.0 ] || fail "$id runs $(running "$WORK/$id"), not 3.0.0"; done
for id in o-1 o-2; do [ "$(running "$WORK/$id")" = 2.0.0 ] || fail "$id runs $(running "$WORK/$id"), not 2.0.0"; done
check_device "$WORK/c-1" "$WORK/i3"
check_device "$WORK/o-1" "$WORK/i2"
[ "$("$TCPOTA" rollout show 2 --json | jq_py 'j["totals"]["targeted"]')" = 2 ] || fail "canary rollout targets: $("$TCPOTA" rollout show 2)"
ok "a --group canary rollout reaches only the canary devices; the others get the model-wide image"

# An updated device had every byte of its image: 100 %, not "0 of N bytes".
show=$("$TCPOTA" device show --json o-1)
[ "$(echo "$show" | jq_py 'j["state"]')" = updated ] &&
  [ "$(echo "$show" | jq_py 'j["percent"]')" = 100 ] &&
  [ "$(echo "$show" | jq_py 'j["bytes"] == j["size"] == '"$(stat -c %s "$WORK/i2")")" = true ] ||
  fail "an updated device's progress: $show"
ok "an updated device shows 100 % of its image"

add_version "$WORK/i4" 4.0.0
"$TCPOTA" rollout create --image 4.0.0 --model esp32 --group canary > "$WORK/out" || fail "second canary rollout failed"
grep -q "it supersedes rollout 2 (model esp32, group canary): that one no longer applies" "$WORK/out" ||
  fail "rollout create did not say what it superseded: $(cat "$WORK/out")"
[ "$("$TCPOTA" rollout show 2 --json | jq_py 'j["superseded"]')" = true ] || fail "rollout 2 not superseded"
"$TCPOTA" rollout show 2 | head -1 | grep -q superseded || fail "rollout show 2 does not say superseded: $("$TCPOTA" rollout show 2 | head -1)"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["superseded"]')" = false ] || fail "the model-wide rollout was superseded"
[ "$("$TCPOTA" rollout show 3 --json | jq_py 'j["superseded"]')" = false ] || fail "the newest rollout is superseded"
# A superseded rollout says what it is, and pausing or resuming it (which
# changed nothing: it no longer applies) is refused, saying why.
"$TCPOTA" rollout show 2 | grep -q "status     superseded by a newer rollout for its model and group: it no longer applies, and cancelling the newer one does not bring it back; to offer its image again, create a rollout; its counts are what its devices did under it, and a transfer of its image that goes on: the rest counts in the newer rollout now" ||
  fail "rollout show 2 has no superseded status: $("$TCPOTA" rollout show 2)"
rc=0; "$TCPOTA" rollout pause 2 > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "rollout 2 is superseded by a newer rollout" "$WORK/out" ||
  fail "rollout pause 2 (superseded): rc $rc: $(cat "$WORK/out")"
for id in c-1 c-2 o-1 o-2; do run_device "$id" esp32 "$WORK/$id" || fail "$id failed"; done
for id in c-1 c-2; do [ "$(running "$WORK/$id")" = 4.0.0 ] || fail "$id runs $(running "$WORK/$id"), not 4.0.0"; done
for id in o-1 o-2; do [ "$(running "$WORK/$id")" = 2.0.0 ] || fail "$id moved to $(running "$WORK/$id")"; done
ok "a newer canary rollout supersedes the older (rollout show says so) and only it is offered"

# The CLI's messages for what the server or the CLI refuses.
rc=0; "$TCPOTA" device set nobody --group g --json > "$WORK/out" 2> /dev/null || rc=$?
[ $rc -eq 1 ] && [ "$(jq_py 'j["field"]' < "$WORK/out")" = id ] || fail "device set of an unknown id: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" device secret $'id\twith a tab' > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'a device id is 1 to 64 printable ASCII characters' "$WORK/out" || fail "an id with a tab: rc $rc $(cat "$WORK/out")"
make_image "$WORK/unsigned" 1000
rc=0; "$TCPOTA" image add --version 9.0.0 "$WORK/unsigned" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'has no manifest (.*), so it needs --version and --model both: --model M is missing' "$WORK/out" ||
  fail "unsigned without --model: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" image add --model esp32 "$WORK/unsigned" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'both: --version V is missing' "$WORK/out" || fail "unsigned without --version: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" image add "$WORK/unsigned" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q 'has no manifest .*sign it .*--version V --model M' "$WORK/out" || fail "unsigned, neither: rc $rc $(cat "$WORK/out")"
mkfifo "$WORK/fifo"
rc=0; timeout 20 "$TCPOTA" image add --manifest "$WORK/fifo" "$WORK/unsigned" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "--manifest: $WORK/fifo is not a regular file (it is a FIFO)" "$WORK/out" ||
  fail "--manifest FIFO: rc $rc $(cat "$WORK/out")"
make_image "$WORK/huge" 1000001
rc=0; "$TCPOTA" image add --version 9.0.0 --model esp32 "$WORK/huge" > "$WORK/out" 2>&1 || rc=$?
# The limit is this server's, said in bytes (before: "its --max-image BYTES
# (default 64 MiB)", not what this one takes).
[ $rc -eq 1 ] && grep -qx 'tcpota image: the server refused the 1000001 bytes sent as too large (413): it takes images of at most 1000000 bytes (its --max-image)' "$WORK/out" ||
  fail "an image over --max-image: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" image add --json --version 9.0.0 --model esp32 "$WORK/huge" > "$WORK/out" 2> "$WORK/err" || rc=$?
# --json: one error object on stdout (the 413 itself is libevent's HTML
# page; before, stdout was empty), not the list asked for the limit.
[ $rc -eq 1 ] && [ "$(wc -l < "$WORK/out")" -eq 1 ] && grep -q 'at most 1000000 bytes' "$WORK/err" &&
  [ "$(jq_py 'j["status"]' < "$WORK/out")" = 413 ] && jq_py 'j["error"]' < "$WORK/out" | grep -q 'at most 1000000 bytes' ||
  fail "--json over --max-image: rc $rc, stdout '$(cat "$WORK/out")', stderr $(cat "$WORK/err")"
[ "$("$TCPOTA" image list --json | jq_py 'j["max_image"]')" = 1000000 ] || fail "GET /v1/images does not give max_image"
# Far over it (8 MB against 1 MB): the server reads the body to its end
# before its 413, so that the CLI, still sending, reads the answer (before:
# "closed the connection ... without an answer").
head -c 8000000 /dev/zero > "$WORK/huger"
rc=0; "$TCPOTA" image add --version 9.0.1 --model esp32 "$WORK/huger" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qE 'refused the 8000000 bytes sent as too large \(413\)' "$WORK/out" ||
  fail "an image 8 times over --max-image: rc $rc $(cat "$WORK/out")"
"$TCPOTA" image list > /dev/null || fail "the API does not answer after an upload far over --max-image"
# Another image of the same model under a version it has already: refused,
# the image named (before: added, and rollouts naming the version became
# ambiguous); the same version for another model is fine.
make_image "$WORK/dup" 1000
make_image "$WORK/dup2" 1000
"$TCPOTA" image add --version 9.5.0 --model esp32 "$WORK/dup" > "$WORK/out" 2>&1 || fail "esp32 9.5.0: $(cat "$WORK/out")"
rc=0; "$TCPOTA" image add --version 9.5.0 --model esp32 "$WORK/dup2" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "model esp32 has version 9.5.0 already (image [0-9a-f]\{12\}, other bytes); give this image a new version" "$WORK/out" ||
  fail "a second esp32 9.5.0: rc $rc $(cat "$WORK/out")"
# The same version written otherwise (the offer policy's order: v9.5 is
# 9.5.0) is the same version.
rc=0; "$TCPOTA" image add --version v9.5 --model esp32 "$WORK/dup2" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "model esp32 has version 9.5.0 already (image [0-9a-f]\{12\}, other bytes), the same version as this image's v9.5 (the same precedence); give this image a new version" "$WORK/out" ||
  fail "esp32 v9.5 beside 9.5.0: rc $rc $(cat "$WORK/out")"
"$TCPOTA" image add --version 9.5.0 --model esp32s3 "$WORK/dup2" > "$WORK/out" 2>&1 ||
  fail "9.5.0 for another model was refused: $(cat "$WORK/out")"
# A version with no place in the order: added, with a warning that no
# device will be offered it (before: silent, and its rollout offered nothing).
make_image "$WORK/odd" 1000
"$TCPOTA" image add --version nightly --model esp32 "$WORK/odd" > "$WORK/out" 2> "$WORK/err" || fail "image add nightly: $(cat "$WORK/err")"
grep -q "tcpota image: warning: version 'nightly' is not a semantic version (like 2.1.0): servers offer it to no device unless --allow-downgrade" "$WORK/err" ||
  fail "no warning for version nightly: $(cat "$WORK/err")"
grep -q "^roll it out: tcpota rollout create --image [0-9a-f]\{12\} --model esp32 --allow-downgrade" "$WORK/out" ||
  fail "the hint for version nightly lacks --allow-downgrade: $(cat "$WORK/out")"
# ... and a rollout of it that does not allow downgrades, which would offer
# it to no device, is refused (before: made, "every wave is open", its
# devices waiting for good).
rc=0; "$TCPOTA" rollout create --image nightly --model esp32 --group odd > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "tcpota rollout: image [0-9a-f]\{12\} has version 'nightly', which is not a semantic version (like 2.1.0): it cannot be ordered against what the devices run, so no device would be offered it; create the rollout allowing downgrades (\"allow_downgrade\": true; tcpota rollout create --allow-downgrade)" "$WORK/out" ||
  fail "a rollout of version nightly: rc $rc $(cat "$WORK/out")"
# A number of 10 digits is named, and the refusal arrives whole (it was cut
# at 512 bytes, mid-word).
make_image "$WORK/long" 1002
"$TCPOTA" image add --version 1.0.20261207001 --model esp32 "$WORK/long" > /dev/null 2>&1 || fail "image add 1.0.20261207001 failed"
rc=0; "$TCPOTA" rollout create --image 1.0.20261207001 --model esp32 --group odd > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "has version '1.0.20261207001', which has a number of more than 9 digits (a version's numbers have at most 9, like 2026.1207.1): it cannot be ordered .* or add the image again with a version of at most 4 numbers of at most 9 digits, like 2.1.0 (a signed image: signed again with one)$" "$WORK/out" ||
  fail "a rollout of version 1.0.20261207001: rc $rc $(cat "$WORK/out")"
make_image "$WORK/even" 1001
"$TCPOTA" image add --version 9.6.0 --model esp32 "$WORK/even" > /dev/null 2> "$WORK/err" || fail "image add 9.6.0: $(cat "$WORK/err")"
! grep -q warning "$WORK/err" || fail "a warning for a semantic version: $(cat "$WORK/err")"
rc=0; "$TCPOTA" image add --version "9 5" --model esp32 "$WORK/dup" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "version must be 1 to 32 printable ASCII characters, no spaces" "$WORK/out" ||
  fail "a version with a space: rc $rc $(cat "$WORK/out")"
# image add sent to the device port: the hint names the wrong port too,
# not only --max-image (a 200 KB image is far below its default).
make_image "$WORK/small" 200000
rc=0; "$TCPOTA" image add --version 9.0.1 --model esp32 --api "127.0.0.1:$SERVER_PORT" "$WORK/small" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "closed the connection during a request with a 200000-byte body, without an answer. The server may have stopped or restarted meanwhile (then run the command again), the body may be above its --max-image BYTES (default 64 MiB), or this may not be the --api address of tcpota serve (its device port closes at once)$" "$WORK/out" ||
  fail "image add to the device port: rc $rc $(cat "$WORK/out")"
"$TCPOTA" rollout cancel 2 > /dev/null || fail "rollout cancel 2 failed"
"$TCPOTA" image rm "$(sha256sum "$WORK/i3" | cut -c1-12)" > /dev/null || fail "image rm of rollout 2's image failed"
"$TCPOTA" rollout show 2 | grep -qE '^  image +[0-9a-f]{64} \(removed\)$' || fail "rollout show 2: $("$TCPOTA" rollout show 2 | head -2)"
"$TCPOTA" rollout list | grep -qE '^ +2 +cancelled.*\(removed\)' || fail "rollout list: $("$TCPOTA" rollout list)"
ok "messages: unknown device (field id), id with spaces, unsigned without --model, --manifest FIFO, 413, removed image"

# A paused rollout offers nothing to a device that had not started.
add_version "$WORK/i5" 5.0.0
"$TCPOTA" rollout create --image 5.0.0 --model esp32 > /dev/null || fail "rollout 4 failed"
"$TCPOTA" rollout pause 4 > /dev/null || fail "rollout pause failed"
[ "$("$TCPOTA" rollout show 4 --json | jq_py 'j["state"]')" = paused ] || fail "rollout 4 is not paused"
for id in o-1 o-2; do
  run_device "$id" esp32 "$WORK/$id" || fail "$id failed"
  [ "$(running "$WORK/$id")" = 2.0.0 ] || fail "$id got $(running "$WORK/$id") from a paused rollout"
  [ "$(device_state "$id")" = waiting ] || fail "$id is $(device_state "$id"), not waiting"
done
grep -qE '\[o-1 [^]]*\] decision: waiting: rollout 4: .*paused' "$WORK/server.log" || fail "no 'paused' decision logged"
[ "$("$TCPOTA" rollout show 4 --json | jq_py 'j["totals"]["offered"] + j["totals"]["downloading"] + j["totals"]["updated"]')" = 0 ] ||
  fail "a paused rollout counts offers: $("$TCPOTA" rollout show 4)"
"$TCPOTA" rollout resume 4 > /dev/null || fail "rollout resume failed"
run_device o-1 esp32 "$WORK/o-1" || fail "o-1 failed after resume"
[ "$(running "$WORK/o-1")" = 5.0.0 ] || fail "o-1 not updated after resume"
ok "a paused rollout offers nothing to devices that had not started; resumed, it does"

# Without --require-auth, an id that has a secret must still authenticate:
# the secret protects its id from the moment it is made (before, anyone
# could update and report under it, while every message said otherwise).
"$TCPOTA" device secret p-1 --out "$WORK/p1.secret" > /dev/null || fail "device secret p-1 failed"
"$TCPOTA" device secret p-2 --out "$WORK/p2.secret" > /dev/null || fail "device secret p-2 failed"
rc=0; run_device p-1 esp32 "$WORK/p-1" || rc=$?
[ $rc -eq 1 ] && grep -q 'this device id has a secret on this server: it must authenticate (give the device its secret)' "$WORK/p-1.log" ||
  fail "p-1 without its secret: rc $rc $(tail -2 "$WORK/p-1.log")"
grep -qE '\[p-1 [^]]*\] refused: the device does not authenticate \(.*\) and its id has a secret on this server; give the device its secret' "$WORK/server.log" ||
  fail "the server's log of p-1's refusal: $(grep 'p-1' "$WORK/server.log" | grep refused)"
rc=0; run_device p-1 esp32 "$WORK/p-1" --secret "$WORK/p2.secret" || rc=$?
[ $rc -ne 0 ] && [ "$(running "$WORK/p-1")" = 1.0.0 ] || fail "p-1 with another id's secret: rc $rc $(tail -2 "$WORK/p-1.log")"
grep -qE '\[p-1 [^]]*\] authentication failed' "$WORK/server.log" || fail "no failed authentication logged for p-1"
run_device p-1 esp32 "$WORK/p-1" --secret "$WORK/p1.secret" || fail "p-1 with its secret: $(tail -2 "$WORK/p-1.log")"
[ "$(running "$WORK/p-1")" = 5.0.0 ] || fail "p-1 with its secret was not updated"
run_device p-3 esp32 "$WORK/p-3" || fail "p-3 (no secret) was refused: $(tail -2 "$WORK/p-3.log")"
[ "$(running "$WORK/p-3")" = 5.0.0 ] || fail "p-3 (no secret) was not updated"
ok "without --require-auth an id with a secret must authenticate; an id without one is served"

# The summary (GET /v1/summary, the dashboard's overview) counts those
# refusals and names the ids (before: nothing; a refused device never
# checks in, so the registry's counts cannot show it). An HTTP download of
# an id with a secret is one too.
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=p-2")
[ "$code" = 403 ] || fail "an HTTP download of p-2 (a secret): $code"
curl -sf -H "Authorization: Bearer $TCPOTA_TOKEN" "$TCPOTA_API/v1/summary" > "$WORK/sum.json" ||
  fail "GET /v1/summary failed"
python3 - "$WORK/sum.json" <<'PY' || fail "the summary's refused authentications: $(cat "$WORK/sum.json")"
import json, sys, time
a = json.load(open(sys.argv[1]))["auth_refused"]
c = a["counts"]
assert c["no-proof"] == 2 and c["wrong-secret"] == 1 and c["unknown-id"] == 0, c
assert a["total"] == sum(c.values()), a
assert abs(a["since"] - time.time()) < 600, a["since"]
d = a["devices"]
# p-1 has authenticated since its refusals: off the list (in the counts).
assert [x["id"] for x in d] == ["p-2"], d
assert d[0]["reason"] == "no-proof" and d[0]["count"] == 1 and d[0]["address"] == "127.0.0.1", d[0]
assert d[0]["last"] <= time.time() + 1, d
PY
ok "the summary counts devices refused for authentication (HELLO without AUTH, a wrong secret, an HTTP download), by id, until they authenticate"

# `tcpota summary` prints the same answer as tables: the counts by state and
# by version and the refusals of the JSON (nothing happens on the server
# meanwhile), the refused ids latest first.
"$TCPOTA" summary > "$WORK/sum.txt" 2>&1 || fail "tcpota summary failed: $(cat "$WORK/sum.txt")"
"$TCPOTA" summary --json > "$WORK/sum2.json" || fail "tcpota summary --json failed"
"$TCPOTA" rollout list --json > "$WORK/ro.json" || fail "tcpota rollout list --json failed"
python3 - "$WORK/sum.txt" "$WORK/sum2.json" "$WORK/ro.json" <<'PY' || fail "tcpota summary: $(cat "$WORK/sum.txt")"
import json, re, sys
text, j = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
lines = text.splitlines()
def rows(title):
    i = next(k for k, l in enumerate(lines) if l.startswith(title))
    out = []
    for l in lines[i + 2:]:
        if not l.strip():
            break
        out.append(l.split())
    return out
assert j["states"] and j["versions"], j
assert sorted(rows("devices by model and state:")) == sorted(
    [r["model"], r["state"], str(r["count"])] for r in j["states"]), text
assert sorted(rows("devices by model and running version:")) == sorted(
    [r["model"], r["version"], str(r["count"])] for r in j["versions"]), text
a = j["auth_refused"]
c = a["counts"]
want = "authentication refused by this server since .* UTC: %d \\(no-proof %d, wrong-secret %d, unknown-id %d, not-checked %d\\)$" % (
    a["total"], c["no-proof"], c["wrong-secret"], c["unknown-id"], c["not-checked"])
assert any(re.match(want, l) for l in lines), (want, text)
refused = rows("authentication refused by this server since")
assert [r[0] for r in refused] == ["p-2"], refused
assert refused[0][1] == "no-proof" and refused[0][2] == "127.0.0.1", refused
assert "tcpota device secret ID --out FILE" in text, text
# Superseded rollouts share one line, not one long status line each.
sup = [str(r["id"]) for r in json.load(open(sys.argv[3]))["rollouts"] if r["superseded"] and r["state"] != "cancelled"]
assert sup, "no superseded rollout to show"
said = "rollout%s %s: superseded by a newer rollout for %s model and group" % ("s" if len(sup) > 1 else "", ", ".join(sup), "their" if len(sup) > 1 else "its")
assert sum(l.startswith(said) for l in lines) == 1, (said, text)
assert not any(l.startswith("rollout %s: superseded" % i) for i in sup if len(sup) > 1), text
PY
ok "tcpota summary shows the summary's counts and the refused ids; superseded rollouts in one line"

# The server's log keeps a line for every change made through the API, and
# from where (an operator reading it after an incident needs who did what).
client='\(API client 127\.0\.0\.1:[0-9]+\)$'
for want in "image [0-9a-f]{12} added: version 5\.0\.0, model esp32, [0-9]+ bytes, unsigned" \
            "rollout 4 created: image [0-9a-f]{12} for model esp32, every group, waves 100%, halts when more than [0-9]+% of the finished failed \(at least [0-9]+\); supersedes rollout 1" \
            "rollout 4 paused" "rollout 4 resumed" "rollout 3 created: .*, group canary, .*supersedes rollout 2" \
            "device c-1 moved to group canary" \
            "device p-1: its first secret made; it must authenticate with it from now on"; do
  grep -qE "tcpota serve: $want $client" "$WORK/server.log" ||
    fail "no log line for '$want': $(grep 'API client' "$WORK/server.log" | tail -5)"
done
ok "the server logs each change made through the API, with the client's address"

# image rm frees the image's disk space at once (before, until a restart:
# "(deleted)" in /proc/PID/fd). A loaded image is a private copy (and its
# frames), unnamed temporary files; the stored file is not held open at all.
held() { find "/proc/$SERVER_PID/fd" -lname "$DATA/images/*" -printf '%l\n' 2> /dev/null | grep -c "$1" || true; }
copies() { find "/proc/$SERVER_PID/fd" -printf '%l\n' 2> /dev/null | grep -c '(deleted)$' || true; }
hex5=$(sha256sum "$WORK/i5" | cut -c1-64)
[ "$(held "$hex5")" -eq 0 ] || fail "the server holds 5.0.0's stored file open: $(ls -l "/proc/$SERVER_PID/fd" | grep images)"
before=$(copies)
[ "$before" -ge 2 ] || fail "the server holds no copy of a loaded image (the check below would prove nothing): $(ls -l "/proc/$SERVER_PID/fd")"
"$TCPOTA" rollout cancel 4 > /dev/null || fail "rollout cancel 4 failed"
"$TCPOTA" image rm "${hex5:0:12}" > /dev/null || fail "image rm 5.0.0 failed"
[ "$(copies)" -le $((before - 2)) ] || fail "image rm: the server still holds the removed image's copies: $before, now $(copies)"
ok "image rm: the server lets go of the removed image's copies at once"

# A device whose id and model have spaces (the protocol takes them) can be
# named: shown, listed by model, its model rolled out (before: registered,
# then refused by every command that named it).
make_image "$WORK/spaced" 2000
"$TCPOTA" image add --version 1.5.0 --model "m x" "$WORK/spaced" > "$WORK/out" 2>&1 || fail "image add --model 'm x': $(cat "$WORK/out")"
grep -q "rollout create --image [0-9a-f]* --model 'm x'" "$WORK/out" || fail "the hint does not quote the model: $(cat "$WORK/out")"
"$TCPOTA" rollout create --image 1.5.0 --model "m x" > "$WORK/out" 2>&1 || fail "rollout create --model 'm x': $(cat "$WORK/out")"
run_device "bad id" "m x" "$WORK/dspaced" || fail "a device with spaces in its id and model: $(cat "$WORK/bad id.log")"
[ "$("$TCPOTA" device show --json "bad id" | jq_py 'j["version"]')" = 1.5.0 ] || fail "device show 'bad id': $("$TCPOTA" device show "bad id" 2>&1)"
"$TCPOTA" device list --model "m x" --json | jq_py '[d["id"] for d in j["devices"]]' | grep -qx "bad id" ||
  fail "device list --model 'm x' does not list it"
ok "a device id and a model with spaces: image, rollout, update, show, list"
# --image takes a version of the same precedence as the image's (image add
# refuses a second one of the model as the same version): v3.1 is 3.1.0.
make_image "$WORK/prec" 1003
"$TCPOTA" image add --version 3.1.0 --model prec "$WORK/prec" > /dev/null 2>&1 || fail "image add 3.1.0 failed"
"$TCPOTA" rollout create --image v3.1 --model prec > "$WORK/out" 2>&1 || fail "rollout create --image v3.1 (3.1.0): $(cat "$WORK/out")"
[ "$("$TCPOTA" rollout list --json | jq_py "[r['image'] for r in j['rollouts'] if r['model'] == 'prec'][0]")" = "$(sha256sum "$WORK/prec" | cut -d' ' -f1)" ] ||
  fail "the rollout of v3.1 is not of image 3.1.0: $("$TCPOTA" rollout list)"
rc=0; "$TCPOTA" rollout create --image 3.1.0+other --model prec > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "no image has the id or prefix 3.1.0+other, nor is it a version of an image of model prec" "$WORK/out" ||
  fail "a rollout of another build, 3.1.0+other: rc $rc $(cat "$WORK/out")"
rc=0; "$TCPOTA" rollout create --image 3.1.1 --model prec > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "no image has the id or prefix 3.1.1, nor is it a version of an image of model prec" "$WORK/out" ||
  fail "a rollout of version 3.1.1 (none): rc $rc $(cat "$WORK/out")"
ok "rollout create --image takes a version of the same precedence as the image's (v3.1 for 3.1.0)"

# ---- start-up errors ----
# A second server on the same --data: exit 1, naming the first one's pid.
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$DATA" > /dev/null 2> "$WORK/second.log" || rc=$?
[ $rc -eq 1 ] || fail "second server on the same --data: rc $rc, not 1: $(cat "$WORK/second.log")"
grep -q "in use by another tcpota serve (pid $SERVER_PID)" "$WORK/second.log" || fail "second server: $(cat "$WORK/second.log")"
# A start that fails (its port is taken) removes the --data it created, and
# only that: an existing directory keeps all it held (the fleet's files
# the start made beside them go: test_fleet_start).
rc=0; timeout 20 "$TCPOTA" serve --listen "127.0.0.1:$SERVER_PORT" --api 127.0.0.1:0 --data "$WORK/new" > /dev/null 2> "$WORK/new.log" || rc=$?
[ $rc -eq 1 ] || fail "a start on a port in use: rc $rc, not 1: $(cat "$WORK/new.log")"
[ ! -e "$WORK/new" ] || fail "a failed start left the --data it created: $(ls -A "$WORK/new")"
grep -q "removed --data $WORK/new, which this failed start created" "$WORK/new.log" || fail "no word of the removal: $(cat "$WORK/new.log")"
mkdir "$WORK/old" && echo keep > "$WORK/old/mine"
rc=0; timeout 20 "$TCPOTA" serve --listen "127.0.0.1:$SERVER_PORT" --api 127.0.0.1:0 --data "$WORK/old" > /dev/null 2> "$WORK/old.log" || rc=$?
[ $rc -eq 1 ] && [ "$(cat "$WORK/old/mine")" = keep ] && [ "$(ls -A "$WORK/old")" = mine ] ||
  fail "a failed start over an existing --data: rc $rc, $(ls -A "$WORK/old"): $(cat "$WORK/old.log")"
! grep -q "removed --data" "$WORK/old.log" || fail "a failed start over an existing --data says it removed it: $(cat "$WORK/old.log")"
# An existing but empty --data (made by mkdir, or a mount point): what the
# failed start made in it goes, the directory stays (before: the database,
# images/, api.token and tcpota.lock were left, and the next start was one
# over a half-made fleet with that token).
mkdir "$WORK/empty" && chmod 0750 "$WORK/empty"
rc=0; timeout 20 "$TCPOTA" serve --listen "127.0.0.1:$SERVER_PORT" --api 127.0.0.1:0 --data "$WORK/empty" > /dev/null 2> "$WORK/emptydir.log" || rc=$?
[ $rc -eq 1 ] && [ -d "$WORK/empty" ] && [ -z "$(ls -A "$WORK/empty")" ] ||
  fail "a failed start in an existing empty --data: rc $rc, left: $(ls -A "$WORK/empty" 2>&1): $(cat "$WORK/emptydir.log")"
[ "$(stat -c %a "$WORK/empty")" = 750 ] || fail "the existing empty --data changed mode: $(stat -c %a "$WORK/empty")"
grep -q "removed what this failed start created in --data $WORK/empty (it was empty before; the directory is kept)" "$WORK/emptydir.log" ||
  fail "no word of the removal in an existing empty --data: $(cat "$WORK/emptydir.log")"
"$TCPOTA" image list > /dev/null || fail "the first server does not answer after the second one failed"
[ "$(cat "$DATA/tcpota.lock")" = "$SERVER_PID" ] || fail "the second server emptied the first one's lock file: '$(cat "$DATA/tcpota.lock")'"
refused=$("$TCPOTA" summary --json | jq_py 'j["auth_refused"]["total"]')
stop_fleet
# The log's summary counts the refusals the fleet summary counts (before:
# only the AUTH answers judged and refused, not the devices without proof,
# so the two disagreed).
grep -qE "summary: .*; authentication refused $refused times;" "$WORK/server.log" ||
  fail "the log's summary does not say authentication refused $refused times: $(grep 'summary:' "$WORK/server.log" | tail -1)"
[ ! -s "$DATA/tcpota.lock" ] || fail "DIR/tcpota.lock still names pid $(cat "$DATA/tcpota.lock") after a clean stop"
ok "a second server on the same --data fails with exit 1 naming the first one's pid; the pid goes with the server; a failed start removes the --data it created, or what it created in an existing empty one"

mkdir "$WORK/junk"
head -c 8192 /dev/urandom > "$WORK/junk/tcpota.db"
cp "$WORK/junk/tcpota.db" "$WORK/junk.copy"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/junk" > /dev/null 2> "$WORK/junk.log" || rc=$?
[ $rc -eq 1 ] || fail "junk tcpota.db: rc $rc, not 1: $(cat "$WORK/junk.log")"
grep -q "$WORK/junk/tcpota.db is not a tcpota database or is damaged" "$WORK/junk.log" &&
  grep -q 'move it away' "$WORK/junk.log" || fail "junk tcpota.db: $(cat "$WORK/junk.log")"
cmp -s "$WORK/junk/tcpota.db" "$WORK/junk.copy" || fail "the server wrote into a junk tcpota.db"
ok "a junk tcpota.db: exit 1, says it is damaged and what to do, left as it was"

# A tcpota database damaged inside (header intact): it used to start, and
# every request then failed "database disk image is malformed".
cp -a "$DATA" "$WORK/dmg"
[ "$(stat -c %s "$WORK/dmg/tcpota.db")" -ge $((6 * 4096)) ] || fail "the fleet's tcpota.db is too small to damage"
head -c $((3 * 4096)) /dev/zero | tr '\0' x |
  dd of="$WORK/dmg/tcpota.db" bs=4096 seek=2 conv=notrunc 2>/dev/null
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/dmg" > /dev/null 2> "$WORK/dmg.log" || rc=$?
[ $rc -eq 1 ] || fail "damaged tcpota.db: rc $rc, not 1: $(cat "$WORK/dmg.log")"
grep -q "$WORK/dmg/tcpota.db is damaged (SQLite's quick_check: .*restore the last backup" "$WORK/dmg.log" ||
  fail "damaged tcpota.db: $(cat "$WORK/dmg.log")"
! grep -q 'listening on' "$WORK/dmg.log" || fail "the server listened on a damaged tcpota.db"
# What it says to do without a backup, run as said (Debian's sqlite3: its
# .recover, advised before, wrote an empty file): a readable database with
# the rows the damage spared.
cmd=$(grep -o "\`sqlite3 [^\`]*\`" "$WORK/dmg.log" | tr -d '\`')
[ -n "$cmd" ] || fail "no command to save what is readable in: $(cat "$WORK/dmg.log")"
(cd "$WORK/dmg" && bash -c "$cmd") 2> "$WORK/recover.err" || fail "the advised command failed: $cmd: $(cat "$WORK/recover.err")"
[ "$(sqlite3 "$WORK/dmg/recovered.db" 'PRAGMA quick_check')" = ok ] &&
  [ "$(sqlite3 "$WORK/dmg/recovered.db" "SELECT count(*) FROM sqlite_master WHERE type = 'table'")" -gt 0 ] ||
  fail "the advised command ($cmd) made no readable database with tables"
ok "a damaged tcpota.db (pages 3 to 5 overwritten): exit 1, says so and what to do; its command saves what is readable"

: > "$WORK/plain"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/plain" > /dev/null 2> "$WORK/plain.log" || rc=$?
[ $rc -eq 2 ] || fail "--data on a regular file: rc $rc, not 2: $(cat "$WORK/plain.log")"
grep -q -- "--data $WORK/plain is not a directory" "$WORK/plain.log" || fail "--data on a file: $(cat "$WORK/plain.log")"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/new" "$WORK/i2" > /dev/null 2> "$WORK/file.log" || rc=$?
[ $rc -eq 2 ] || fail "--data with a FILE: rc $rc, not 2: $(cat "$WORK/file.log")"
grep -q "tcpota image add $WORK/i2" "$WORK/file.log" || fail "--data with a FILE: $(cat "$WORK/file.log")"
[ ! -e "$WORK/new" ] || fail "--data with a FILE created the data directory"
# A --data whose parent folder is missing: which one, and mkdir -p for it
# (as device --flash says), not mkdir's bare "No such file or directory".
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/nope/deeper" > /dev/null 2> "$WORK/nope.log" || rc=$?
[ $rc -eq 2 ] || fail "--data in a missing folder: rc $rc, not 2: $(cat "$WORK/nope.log")"
grep -q -- "--data: $WORK/nope/deeper cannot be created: $WORK/nope does not exist; create that folder first (mkdir -p $WORK/nope)" "$WORK/nope.log" ||
  fail "--data in a missing folder: $(cat "$WORK/nope.log")"
ok "--data on a regular file, in a missing folder, and --data with a FILE: exit 2 with a message saying what to do"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/new" --allow-downgrade > /dev/null 2> "$WORK/dg.log" || rc=$?
[ $rc -eq 2 ] || fail "--data with --allow-downgrade: rc $rc, not 2: $(cat "$WORK/dg.log")"
grep -q -- "--allow-downgrade does not apply with --data (each rollout says it: \`tcpota rollout create --allow-downgrade" "$WORK/dg.log" ||
  fail "--data with --allow-downgrade: $(cat "$WORK/dg.log")"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data '' > /dev/null 2> "$WORK/empty.log" || rc=$?
[ $rc -eq 2 ] || fail "--data '': rc $rc, not 2: $(cat "$WORK/empty.log")"
grep -q -- "--data is empty; give the fleet's directory" "$WORK/empty.log" || fail "--data '': $(cat "$WORK/empty.log")"
[ ! -e "$WORK/new" ] || fail "a refused start created the data directory"
ok "--allow-downgrade (a rollout's choice) or an empty --data with --data: exit 2, what to do"

# --api off: no API takes images here, so no warning about what it takes.
"$TCPOTA" serve --listen 127.0.0.1:0 --api off --data "$WORK/noapi" --no-progress 2> "$WORK/noapi.log" &
NOAPI=$!; PIDS+=("$NOAPI")
wait_line "$WORK/noapi.log" 'listening on'
kill -TERM "$NOAPI"; wait "$NOAPI" || fail "--api off: the server exited $? on SIGTERM"
! grep -q 'no --pubkey' "$WORK/noapi.log" || fail "--api off warned about the API: $(cat "$WORK/noapi.log")"
ok "--api off: no warning about the images an API would take"

# An image whose stored file went missing or was damaged is offered to no
# device; uploading the same bytes again restores the file (before: "is
# already stored", nothing rewritten, the rollout stuck although the log
# said "add the image again"). One image per harm, each for a model of its
# own, neither loaded before (a loaded image is served from memory). The
# failure is remembered: a second device's check-in does not load the file
# again (each used to hash it on the event loop), until the repair.
DATA="$WORK/repair"
start_fleet
for harm in missing damaged directory; do
  make_image "$WORK/r-$harm.bin" 70000
  "$TCPOTA" image add --version 3.0.0 --model "m-$harm" "$WORK/r-$harm.bin" > /dev/null || fail "image add r-$harm failed"
  "$TCPOTA" rollout create --image 3.0.0 --model "m-$harm" > /dev/null || fail "rollout create r-$harm failed"
  stored="$DATA/images/$(sha256sum "$WORK/r-$harm.bin" | cut -c1-64)"
  [ -f "$stored" ] || fail "no stored file $stored: $(ls "$DATA/images")"
  case $harm in
    missing) rm "$stored" ;;
    damaged) printf 'XXXX' | dd of="$stored" bs=1 seek=100 conv=notrunc 2> /dev/null ;;
    directory) rm "$stored" && mkdir "$stored" ;; # an empty one: it goes
  esac
  rc=0; run_device "r-$harm" "m-$harm" "$WORK/r-$harm" --max-attempts 1 || rc=$?
  [ "$(running "$WORK/r-$harm")" = 1.0.0 ] || fail "$harm file: a device got the image"
  # The device is told to wait and when to ask again, not "no image for
  # it" (it took itself as up to date).
  [ $rc -eq 0 ] && grep -q "no update now, running 1.0.0: an update applies, but the server cannot serve its image now (its file is missing or damaged there, or it is not signed as that server requires: its log says which); the server asks to check again in 30 s" "$WORK/r-$harm.log" ||
    fail "$harm file: the device was told: rc $rc $(tail -2 "$WORK/r-$harm.log")"
  # So is an HTTP download: an error esp_https_ota retries, not 204.
  curl -s -o /dev/null -D "$WORK/h.txt" -H "X-Tcpota-Version: 1.0.0" \
    "http://127.0.0.1:$API_PORT/ota/m-$harm/r-$harm-h.bin" || fail "$harm: curl failed"
  grep -q '^HTTP/1.1 503 ' "$WORK/h.txt" && grep -qi '^Retry-After: 30' "$WORK/h.txt" ||
    fail "$harm file: the HTTP download was answered: $(cat "$WORK/h.txt")"
  # rollout show says it first, whatever its waves say.
  ro=$("$TCPOTA" rollout list --json | jq_py '[r["id"] for r in j["rollouts"] if r["model"] == "m-'"$harm"'"][0]')
  "$TCPOTA" rollout show "$ro" | grep -q "^  status     its image cannot be loaded on this server (.*): its devices are told to wait; add the image again" ||
    fail "$harm file: rollout show $ro: $("$TCPOTA" rollout show "$ro" | head -3)"
  grep -q "image [0-9a-f]*\.\.\. (3.0.0): .*not offered: add the image again (tcpota image add with the" "$WORK/server.log" ||
    fail "$harm file: the server did not say what to do: $(grep 'not offered' "$WORK/server.log")"
  # The registry says why, not only the log.
  "$TCPOTA" device show --json "r-$harm" > "$WORK/show.json" || fail "device show r-$harm"
  jq_py 'j["state"] + ": " + j["reason"]' < "$WORK/show.json" |
    grep -qx "waiting: rollout [0-9]*: its image cannot be loaded on the server (see its log)" ||
    fail "$harm file: the registry does not say why: $(cat "$WORK/show.json")"
  # A second device: the failure is remembered, not loaded (and told) again.
  run_device "r-$harm-2" "m-$harm" "$WORK/r-$harm-2" --max-attempts 1 || true
  [ "$(running "$WORK/r-$harm-2")" = 1.0.0 ] || fail "$harm file: a second device got the image"
  told=$(grep -c "image $(cut -c1-16 <<< "${stored##*/}")\.\.\. (3.0.0): .*not offered" "$WORK/server.log" || true)
  [ "$told" -eq 1 ] || fail "$harm file: loaded and told $told times for two devices, not once"
  # A device that runs that image already is up to date, not told to wait
  # for it (the registry knows its version without the file).
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/r-$harm-3" --id "r-$harm-3" \
    --model "m-$harm" --factory-version 3.0.0 --slot-size 1048576 --progress none --max-attempts 1 \
    2> "$WORK/r-$harm-3.log" || fail "$harm file: a device running 3.0.0: $(tail -2 "$WORK/r-$harm-3.log")"
  [ "$(device_state "r-$harm-3")" = up-to-date ] ||
    fail "$harm file: a device running 3.0.0 is $(device_state "r-$harm-3"): $(tail -2 "$WORK/r-$harm-3.log")"
  ! grep -q "cannot serve its image" "$WORK/r-$harm-3.log" || fail "$harm file: a device running 3.0.0 was told to wait"
  "$TCPOTA" image add --version 3.0.0 --model "m-$harm" "$WORK/r-$harm.bin" > "$WORK/out" 2>&1 ||
    fail "$harm: image add again: $(cat "$WORK/out")"
  if [ "$harm" = missing ]; then
    grep -q "is already stored; its file was not on this server (a --db node fetches an image at its first use; else it was removed) and is written again" "$WORK/out" || fail "$harm: $(cat "$WORK/out")"
  else
    grep -q "stored again (its file on the server was damaged)" "$WORK/out" || fail "$harm: $(cat "$WORK/out")"
  fi
  # Its rollout is named, not a command that would make another one.
  grep -qE "^rollout [0-9]+ uses it: follow it with tcpota rollout show [0-9]+$" "$WORK/out" &&
    ! grep -q "roll it out" "$WORK/out" || fail "$harm: the image's rollout was not named: $(cat "$WORK/out")"
  cmp -s "$stored" "$WORK/r-$harm.bin" || fail "$harm: the stored file was not restored"
  ! "$TCPOTA" rollout show "$ro" | grep -q "cannot be loaded" || fail "$harm: rollout show after the repair: $("$TCPOTA" rollout show "$ro" | head -3)"
  run_device "r-$harm" "m-$harm" "$WORK/r-$harm" || fail "$harm: the device failed after the repair: $(tail -3 "$WORK/r-$harm.log")"
  [ "$(running "$WORK/r-$harm")" = 3.0.0 ] || fail "$harm: the device did not get the restored image"
  if [ $harm = missing ]; then
    # Its file gone again, the updated device checks in: it stays updated
    # (its image is the registry's, loaded or not), and nothing is written
    # for it (before: turned up-to-date, then written at each check-in).
    [ "$(device_state "r-$harm")" = updated ] || fail "r-$harm is $(device_state "r-$harm") after its update"
    rm "$stored"
    for k in 1 2; do
      run_device "r-$harm" "m-$harm" "$WORK/r-$harm" --max-attempts 1 || fail "r-$harm, image gone: $(tail -2 "$WORK/r-$harm.log")"
      [ "$(device_state "r-$harm")" = updated ] || fail "r-$harm became $(device_state "r-$harm") when its image's file went"
      [ $k = 1 ] && h1=$("$TCPOTA" device show --json "r-$harm" | jq_py 'len(j["history"])')
    done
    h2=$("$TCPOTA" device show --json "r-$harm" | jq_py 'len(j["history"])')
    [ "$h1" = "$h2" ] || fail "r-$harm's history grew from $h1 to $h2 lines at a check-in that changed nothing"
    "$TCPOTA" image add --version 3.0.0 --model "m-$harm" "$WORK/r-$harm.bin" > /dev/null 2>&1 || fail "$harm: image add again after the second removal"
  fi
done
"$TCPOTA" image add --version 3.0.0 --model m-missing "$WORK/r-missing.bin" > "$WORK/out" 2>&1 ||
  fail "image add intact: $(cat "$WORK/out")"
grep -q "is already stored" "$WORK/out" || fail "an intact image added again: $(cat "$WORK/out")"
# Why an image could not be loaded is in the server's own log line (time,
# level, JSON with --log-format json), not a bare line of the loader's.
grep -q "): cannot load it (cannot open image $DATA/images/[0-9a-f]*: No such file or directory); not offered" "$WORK/server.log" ||
  fail "the missing file's reason is not in the log line: $(grep 'cannot load' "$WORK/server.log")"
grep -q "): cannot load it (image $DATA/images/[0-9a-f]* is not a regular file (it is a directory)); not offered" "$WORK/server.log" ||
  fail "the directory's reason is not in the log line: $(grep 'cannot load' "$WORK/server.log")"
! grep -q "^tcpota serve: \(cannot open image\|image .* is not a regular file\)" "$WORK/server.log" ||
  fail "the image loader printed a line of its own: $(grep '^tcpota serve: ' "$WORK/server.log")"
# A file removed after it was loaded and served: noticed at the next
# check-in (before, the server went on serving its open copy, and only a
# restart showed the loss).
stored="$DATA/images/$(sha256sum "$WORK/r-missing.bin" | cut -c1-64)"
rm "$stored"
rc=0; run_device r-gone m-missing "$WORK/r-gone" --max-attempts 1 || rc=$?
[ $rc -eq 0 ] && grep -q "the server cannot serve its image now" "$WORK/r-gone.log" ||
  fail "a file removed after its load: rc $rc $(tail -2 "$WORK/r-gone.log")"
"$TCPOTA" image add --version 3.0.0 --model m-missing "$WORK/r-missing.bin" > /dev/null 2>&1 || fail "image add to repair r-missing failed"
run_device r-gone m-missing "$WORK/r-gone" || fail "r-gone after the repair: $(tail -2 "$WORK/r-gone.log")"
[ "$(running "$WORK/r-gone")" = 3.0.0 ] || fail "r-gone was not updated after the repair"
ok "an image file removed after its load is noticed at the next check-in"
stop_fleet
ok "a missing or damaged image file: offered to no device; the same bytes added again restore it, and the rollout goes on"

# ---- images/ against the database, said at start ------------------------
# A backup restored without its images/ (or a file removed or cut by hand)
# was said only at the first check-in that needed the image, and a file
# with an image's name that no image has (an older database restored), never.
DATA="$WORK/gaps"
start_fleet
for v in 1 2 3; do add_version "$WORK/g$v" "2.$v.0"; done
stop_fleet
start_fleet
stop_fleet
! grep -q "images the database names\|an image's name but no image" "$WORK/server.log" ||
  fail "an intact images/ was reported at start: $(grep 'image' "$WORK/server.log")"
g() { sha256sum "$1" | cut -c1-64; }
rm "$DATA/images/$(g "$WORK/g1")"
truncate -s 100 "$DATA/images/$(g "$WORK/g2")"
# An image file that is a symbolic link to its bytes is served (the loader
# follows it): not said to be missing (a review found it was).
mv "$DATA/images/$(g "$WORK/g3")" "$WORK/g3.stored"
ln -s "$WORK/g3.stored" "$DATA/images/$(g "$WORK/g3")"
extra=$(printf extra | sha256sum | cut -c1-64)
printf extra > "$DATA/images/$extra"
start_fleet
line=$(grep "images the database names" "$WORK/server.log") || fail "no word at start of the missing and cut files: $(cat "$WORK/server.log")"
echo "$line" | grep -q "2 of the 3 images the database names have no intact file in $DATA/images (a backup restored without its images/, or a file removed or changed by hand): " &&
  echo "$line" | grep -q "$(g "$WORK/g1" | cut -c1-16)\.\.\. (2\.1\.0, no file)" &&
  echo "$line" | grep -q "$(g "$WORK/g2" | cut -c1-16)\.\.\. (2\.2\.0, 100 bytes where it has $(stat -c %s "$WORK/g2"))" &&
  ! echo "$line" | grep -q "(2\.3\.0" &&
  echo "$line" | grep -q "not offered until restored: copy them from the backup's images/, or add each again (tcpota image add with the same file restores it)$" ||
  fail "the missing and cut files at start: $line"
grep -q "1 file in $DATA/images has an image's name but no image in the database (a database restored older than its images/, or an image rm cut short): ${extra:0:16}\.\.\.; not offered: to serve it, add the file again (tcpota image add), else remove it$" "$WORK/server.log" ||
  fail "the file no image has, at start: $(grep 'image' "$WORK/server.log")"
# ... and image list says it of each such image, not only the start (a
# trial: listed as any other): g1 and g2, not g3 behind its link.
"$TCPOTA" image list > "$WORK/gaps.out" 2> "$WORK/gaps.err" || fail "image list: $(cat "$WORK/gaps.err")"
for v in 2.1.0 2.2.0; do
  grep -qE "^tcpota image: warning: image [0-9a-f]+ \($v\) has no intact file on the server \(its images/\): not offered until restored" "$WORK/gaps.err" ||
    fail "image list does not say $v has no file: $(cat "$WORK/gaps.err")"
done
[ "$(grep -c 'has no intact file' "$WORK/gaps.err")" = 2 ] || fail "image list: other images said missing: $(cat "$WORK/gaps.err")"
"$TCPOTA" image list --json | grep -q '"file_missing": *true' || fail "image list --json has no file_missing"
"$TCPOTA" image add --version 2.1.0 --model esp32 "$WORK/g1" > /dev/null 2>&1 || fail "image add g1 again"
"$TCPOTA" image add --version 2.2.0 --model esp32 "$WORK/g2" > /dev/null 2>&1 || fail "image add g2 again"
! "$TCPOTA" image list 2>&1 | grep -q 'has no intact file' || fail "image list after the files were added again still warns"
stop_fleet
rm "$DATA/images/$extra"
start_fleet
stop_fleet
! grep -q "images the database names\|an image's name but no image" "$WORK/server.log" ||
  fail "images/ restored, still reported at start: $(grep 'image' "$WORK/server.log")"
ok "at start, images/ is checked against the database: files missing or cut, and files no image has, are said"


# ---- a version of hex digits shorter than an id prefix --------------------
# "20" could be the start of an image id, but a prefix needs 8 hex digits:
# it is looked up as a version, not refused as a short prefix.
DATA="$WORK/hexver"
start_fleet
make_image "$WORK/h20" 30000
"$TCPOTA" image add --version 20 --model esp32 "$WORK/h20" > /dev/null || fail "image add 20 failed"
"$TCPOTA" rollout create --image 20 --model esp32 > "$WORK/hexver.out" 2>&1 ||
  fail "rollout create --image 20: $(cat "$WORK/hexver.out")"
[ "$("$TCPOTA" rollout show 1 --json | jq_py 'j["version"]')" = 20 ] || fail "rollout 1 is not of version 20"
# Hex digits too few for an id that are no version either are a short id
# (7 digits, as git shows them): rollout create refuses its field as too
# short (rc 2, a 400), not "no image has the id" (rc 1).
short=$("$TCPOTA" image list --json | jq_py 'j["images"][0]["id"][:7]')
rc=0; "$TCPOTA" rollout create --image "$short" --model esp32 > "$WORK/hexver.out" 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "rollout create --image $short: rc $rc: $(cat "$WORK/hexver.out")"
grep -q "an image id is 8 to 64 hex digits (a unique prefix of its SHA-256), and $short is not a version of an image of model esp32 either" \
  "$WORK/hexver.out" || fail "rollout create --image $short: $(cat "$WORK/hexver.out")"
# image rm names an image in its path: one no image has is 404 (rc 1),
# whether it is too short for an id (abc, a 7-digit prefix) or no hex at
# all (xyz123), with one message (before: 400 and rc 2 for the short ones,
# 404 and rc 1 for the others).
for name in "$short" abc xyz123; do
  rc=0; "$TCPOTA" image rm "$name" > "$WORK/hexver.out" 2>&1 || rc=$?
  [ $rc -eq 1 ] && grep -q "^tcpota image: no image has the version $name (tcpota image list shows ids and versions" "$WORK/hexver.out" ||
    fail "image rm $name: rc $rc: $(cat "$WORK/hexver.out")"
done
grep -q "an image id is 8 to 64 hex digits, so $short is too short for one)" <("$TCPOTA" image rm "$short" 2>&1) ||
  fail "image rm $short does not say it is too short for an id: $("$TCPOTA" image rm "$short" 2>&1)"
# The image added again names its rollout while that applies; once a newer
# rollout for the model superseded it, the command to roll it out instead
# (before: "rollout 1 uses it", a rollout that offers it to nobody).
"$TCPOTA" image add --version 20 --model esp32 "$WORK/h20" > "$WORK/again.out" 2>&1 || fail "image add 20 again: $(cat "$WORK/again.out")"
grep -qx "rollout 1 uses it: follow it with tcpota rollout show 1" "$WORK/again.out" || fail "image add 20 again: $(cat "$WORK/again.out")"
make_image "$WORK/h21" 30000
"$TCPOTA" image add --version 21 --model esp32 "$WORK/h21" > /dev/null || fail "image add 21 failed"
"$TCPOTA" rollout create --image 21 --model esp32 > /dev/null || fail "rollout create --image 21 failed"
"$TCPOTA" image add --version 20 --model esp32 "$WORK/h20" > "$WORK/again.out" 2>&1 || fail "image add 20 again: $(cat "$WORK/again.out")"
! grep -q "uses it" "$WORK/again.out" && grep -q "^roll it out: tcpota rollout create --image [0-9a-f]* --model esp32$" "$WORK/again.out" ||
  fail "image add 20 after its rollout was superseded: $(cat "$WORK/again.out")"
stop_fleet
ok "a short version of hex digits names its image; rollout create refuses a short id as too short; image rm of a name no image has is 404, whatever it looks like"


# ---- the API's connection limit --------------------------------------------
# --api-max-conns reaches the listener: with 2 connections held (heads half
# sent), the CLI is told the limit and what to do (rc 1), the server logs
# the refusal; once they close, the CLI is served again.
DATA="$WORK/apiconns"
start_fleet --api-max-conns 2
python3 - "$API_PORT" > "$WORK/holder.out" 2>&1 <<'PY' &
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(2)]
for s in held:
    s.sendall(b"GET /v1/images HTTP/1.1\r\n")
print("held", flush=True)
time.sleep(3)
PY
holder=$!
PIDS+=("$holder")
wait_line "$WORK/holder.out" held
rc=0; "$TCPOTA" image list > "$WORK/full.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -qx "tcpota image: the API holds 2 connections already, its limit (tcpota serve --api-max-conns); try again in a moment, or restart the server with a higher limit" "$WORK/full.out" ||
  fail "image list with the API full: rc $rc: $(cat "$WORK/full.out")"
grep -q "API: refused 127.0.0.1:[0-9]*: the listener holds 2 connections already (--api-max-conns)" "$WORK/server.log" ||
  fail "the refusal is not in the log: $(tail -3 "$WORK/server.log")"
wait "$holder"
# The server learns of the two closes from their FINs, a moment after the
# holder exits (a loaded CI machine once served the next request first).
for _ in $(seq 1 30); do
  "$TCPOTA" image list > "$WORK/free.out" 2>&1 && break
  sleep 0.1
done
"$TCPOTA" image list > "$WORK/free.out" 2>&1 || fail "image list once the held connections closed: $(cat "$WORK/free.out")"
stop_fleet
ok "--api-max-conns 2: a third connection is told the limit and what to do, logged; served once the two closed"


# ---- --pubkey is what is served, not only what is added ----------------------
# An image added while the server had no keys (on PostgreSQL: through a
# node without them) is not offered by a server started with --pubkey:
# the device is told to wait, the log and rollout show say why; a signed
# image is served.
DATA="$WORK/keysnow"
start_fleet
make_image "$WORK/nokey" 30000
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/nokey" > /dev/null || fail "image add (unsigned) failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
stop_fleet
make_keys rel
start_fleet --pubkey "$WORK/rel.pub"
rc=0; run_device k-1 esp32 "$WORK/k1" || rc=$?
[ "$(running "$WORK/k1")" = 1.0.0 ] || fail "a --pubkey server offered an unsigned image"
grep -q "image [0-9a-f]*\.\.\. (2\.0\.0): not offered by this server: it is unsigned, and this server serves only images signed with one of its --pubkey keys" "$WORK/server.log" ||
  fail "the log does not say why the unsigned image is not offered: $(grep 'image ' "$WORK/server.log" | tail -3)"
"$TCPOTA" rollout show 1 > "$WORK/ks.out" 2>&1 || fail "rollout show 1: $(cat "$WORK/ks.out")"
grep -q "it is unsigned, and this server serves only images signed" "$WORK/ks.out" ||
  fail "rollout show does not say why its image is not served: $(cat "$WORK/ks.out")"
# What to do is what works: adding the same bytes again is refused (by the
# keys, or 409 once signed), so it is not advised.
grep -q "cancel its rollouts, remove it (tcpota image rm), sign it with one of this server's --pubkey keys (tcpota sign) and add it again, then roll it out anew): its devices are told to wait$" "$WORK/ks.out" ||
  fail "rollout show's advice for an unsigned image: $(cat "$WORK/ks.out")"
# A new rollout of it is refused where it would not be served (on a
# cluster: a node with other keys added it; a trial's such rollout
# superseded the working one and left every device waiting).
rc=0; "$TCPOTA" rollout create --image 2.0.0 --model esp32 > "$WORK/ks2.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "image [0-9a-f]* (2\.0\.0) would not be served by this server: it is unsigned, and this server serves only images signed with one of its --pubkey keys (it was added where no key was asked for); remove the image, sign it with one of this server's keys (tcpota sign) and add it again (on a cluster, every node needs the same --pubkey keys" "$WORK/ks2.out" ||
  fail "a rollout of an unsigned image on a --pubkey server: rc $rc: $(cat "$WORK/ks2.out")"
stop_fleet
# Signed, by a key this server does not hold (added where no key was asked for).
start_fleet
make_keys other
signed_image "$WORK/otherkey" 30000 2.0.2 esp32 other
image_add "$WORK/otherkey" > /dev/null
"$TCPOTA" rollout create --image 2.0.2 --model esp32 > /dev/null || fail "rollout create 2.0.2 failed"
stop_fleet
start_fleet --pubkey "$WORK/rel.pub"
rc=0; run_device k-1 esp32 "$WORK/k1" || rc=$?
[ "$(running "$WORK/k1")" = 1.0.0 ] || fail "a --pubkey server offered an image signed by another key"
grep -q "image [0-9a-f]*\.\.\. (2\.0\.2): not offered by this server: its manifest is not signed by one of this server's --pubkey keys" "$WORK/server.log" ||
  fail "the log does not say why the image of another key is not offered: $(grep 'image ' "$WORK/server.log" | tail -3)"
rc=0; "$TCPOTA" rollout create --image 2.0.2 --model esp32 > "$WORK/ks3.out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "(2\.0\.2) would not be served by this server: its manifest is not signed by one of this server's --pubkey keys (the manifest is signed by key [0-9a-f]*, which is not one of the server's --pubkey keys" "$WORK/ks3.out" ||
  fail "a rollout of an image of another key on a --pubkey server: rc $rc: $(cat "$WORK/ks3.out")"
signed_image "$WORK/withkey" 30000 2.1.0 esp32 rel
image_add "$WORK/withkey" > /dev/null
"$TCPOTA" rollout create --image 2.1.0 --model esp32 > /dev/null || fail "rollout create 2.1.0 failed"
run_device k-1 esp32 "$WORK/k1" || fail "the signed image: $(tail -3 "$WORK/k-1.log")"
[ "$(running "$WORK/k1")" = 2.1.0 ] || fail "the signed image was not installed"
stop_fleet
ok "--pubkey: an unsigned image added before the keys, or one signed by another key, is not served (logged, in rollout show); one signed by its key is"


# ---- a --data of one store's kind given to the other ------------------------
# A SQLite fleet's --data given --db (its tcpota.db would be ignored), and a
# --db node's image cache given without --db (a config that lost its db
# line: an empty fleet behind the balancer): refused at once, saying what
# the directory holds and what to do. Nothing is changed in it.
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/keysnow" \
  --db "postgresql://tcpota@127.0.0.1:1/tcpota?connect_timeout=1" > /dev/null 2> "$WORK/kind1.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "--data $WORK/keysnow holds a SQLite fleet ($WORK/keysnow/tcpota.db), and --db serves the PostgreSQL one" "$WORK/kind1.log" &&
  ! grep -q "database is unreachable\|could not connect" "$WORK/kind1.log" || fail "--db on a SQLite fleet's --data: rc $rc: $(cat "$WORK/kind1.log")"
mkdir -m 700 "$WORK/cache" "$WORK/cache/images"
cp "$WORK/nokey" "$WORK/cache/images/$(sha256sum "$WORK/nokey" | cut -d' ' -f1)"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/cache" > /dev/null 2> "$WORK/kind2.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "--data $WORK/cache holds images but no tcpota.db: it is a --db node's image cache, or its database was lost; give --db" "$WORK/kind2.log" &&
  [ ! -e "$WORK/cache/tcpota.db" ] || fail "a --db node's cache without --db: rc $rc: $(cat "$WORK/kind2.log")"
# The same with no image cached yet (a node that never served one: what a
# --db node writes at its start, tcpota.node, tells it): refused too (a
# trial: it made a SQLite fleet there and served it empty behind the
# balancer). A token provisioned with an empty images/ (docs/operations.md)
# is a first start's, and starts (a review: refused by a first fix).
mkdir -m 700 "$WORK/cache0" "$WORK/cache0/images"
cp "$WORK/keysnow/api.token" "$WORK/cache0/api.token"
echo "a tcpota serve --db node's image cache: start it with --db" > "$WORK/cache0/tcpota.node"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/cache0" > /dev/null 2> "$WORK/kind3.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "--data $WORK/cache0 holds tcpota.node but no tcpota.db: it is a --db node's directory, or its database was lost; give --db" "$WORK/kind3.log" &&
  [ ! -e "$WORK/cache0/tcpota.db" ] || fail "a --db node's directory without an image, without --db: rc $rc: $(cat "$WORK/kind3.log")"
rm "$WORK/cache0/tcpota.node"
DATA="$WORK/cache0"
start_fleet
stop_fleet
ok "--db on a SQLite fleet's --data, or a --db node's cache (with images or none) without --db: refused, saying what it holds; a provisioned token and an empty images/ start"

# An emptied tcpota.db (0 bytes, no -wal: a failed copy or restore, a full
# disk) in a --data that was used: SQLite would take it for a new database
# and the fleet's secrets would be gone without a word (two trials). Refused,
# with api.token and images or with api.token alone; a 0-byte file in a
# directory that holds neither (a first start cut short) still starts.
cp -a "$WORK/keysnow" "$WORK/emptied"
: > "$WORK/emptied/tcpota.db"; rm -f "$WORK/emptied/tcpota.db-wal" "$WORK/emptied/tcpota.db-shm"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/emptied" > /dev/null 2> "$WORK/empty1.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "not starting: $WORK/emptied/tcpota.db is empty (0 bytes), but --data $WORK/emptied was used (it holds api.token and images): its fleet's devices, secrets and rollouts are not there" "$WORK/empty1.log" &&
  [ ! -s "$WORK/emptied/tcpota.db" ] || fail "an emptied tcpota.db with images: rc $rc: $(cat "$WORK/empty1.log")"
# A SQLite file without a table (a cp of a running server's tcpota.db
# leaves its data in the -wal): the same, said as what it is.
python3 -c "import sqlite3; c = sqlite3.connect('$WORK/emptied/tcpota.db'); c.execute('create table t (x)'); c.execute('drop table t'); c.commit(); c.execute('vacuum'); c.close()"
[ -s "$WORK/emptied/tcpota.db" ] || fail "the table-less SQLite file is empty"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/emptied" > /dev/null 2> "$WORK/empty0.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "not starting: $WORK/emptied/tcpota.db holds no table (a copy of a running server's file made without its -wal? back up with sqlite3's .backup), but --data $WORK/emptied was used (it holds api.token and images)" "$WORK/empty0.log" ||
  fail "a table-less tcpota.db with images: rc $rc: $(cat "$WORK/empty0.log")"
: > "$WORK/emptied/tcpota.db"
rm -rf "$WORK/emptied/images"
rc=0; timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/emptied" > /dev/null 2> "$WORK/empty2.log" || rc=$?
[ $rc -eq 1 ] && grep -q -- "was used (it holds api.token): " "$WORK/empty2.log" ||
  fail "an emptied tcpota.db beside api.token: rc $rc: $(cat "$WORK/empty2.log")"
mkdir -m 700 "$WORK/fresh0"; : > "$WORK/fresh0/tcpota.db"
rc=0; timeout 3 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$WORK/fresh0" > /dev/null 2> "$WORK/empty3.log" || rc=$?
[ $rc -eq 124 ] && grep -q "listening on" "$WORK/empty3.log" ||
  fail "a 0-byte tcpota.db in an unused --data: rc $rc: $(cat "$WORK/empty3.log")"
ok "an emptied or table-less tcpota.db in a used --data: refused, saying what is lost and what to do; in an unused one it starts"
