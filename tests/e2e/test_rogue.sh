#!/usr/bin/env bash
# A rogue or broken server cannot make a device erase and rewrite its flash
# forever (tcpota-rogue, tests/tools/rogue_server.c):
#  (a) it replays a valid signed offer with other bytes: the device
#      downloads the image, finds it fails its integrity check, takes it
#      once more (a first failure may be bytes altered on the way), then
#      remembers it in NVS and declines it with the reason from then on,
#      also after a restart, without writing a byte;
#  (b) it cuts every connection 5,000 bytes past the last checkpoint: the
#      device resumes at the same point a bounded number of times and
#      gives up, saying why.
source "$(dirname "$0")/lib.sh"
: "${ROGUE:?set ROGUE to the tcpota-rogue binary}"

make_image "$WORK/img" 100000
"$TCPOTA" keygen --out "$WORK/rel" 2> /dev/null
"$TCPOTA" sign --key "$WORK/rel.key" --version 2.0.0 --model esp32 "$WORK/img" 2> /dev/null
[ -f "$WORK/img.manifest" ] || fail "sign wrote no manifest"
short=$(sha256sum "$WORK/img" | cut -c1-8)

# start_rogue MODE [ARGS...]: sets ROGUE_PORT; the log is $WORK/rogue-MODE.log.
start_rogue() {
  local mode=$1; shift
  : > "$WORK/rogue-$mode.log"
  "$ROGUE" --listen 127.0.0.1:0 --mode "$mode" --version 2.0.0 "$@" "$WORK/img" \
    2> "$WORK/rogue-$mode.log" &
  PIDS+=("$!")
  wait_line "$WORK/rogue-$mode.log" 'listening on'
  ROGUE_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+).*/\1/p' "$WORK/rogue-$mode.log")
}

# (a) Two downloads, then a reasoned DECLINE, however often it is offered.
start_rogue replay --manifest "$WORK/img.manifest"
L="$WORK/rogue-replay.log"
rc=0
timeout 60 "$TCPOTA" device --server "127.0.0.1:$ROGUE_PORT" --flash "$WORK/a" --id rogue-a \
  --trust "$WORK/rel.pub" --max-attempts 2 --backoff-max-ms 1000 2> "$WORK/a.log" || rc=$?
[ $rc -eq 1 ] || fail "device against a replaying server exited $rc, expected 1"
grep -q "this image is remembered, taken once more at most (it may have been altered on the way)" "$WORK/a.log" ||
  fail "the first integrity failure was not said to leave one more chance: $(grep -i 'integrity\|remembered' "$WORK/a.log")"
[ "$(grep -c '^accept at' "$L")" -eq 2 ] || fail "the bad image was downloaded $(grep -c '^accept at' "$L") times, not twice"
grep -q "this image is remembered as failed and not taken again" "$WORK/a.log" ||
  fail "the second integrity failure was not said to be final: $(grep -i 'integrity\|remembered' "$WORK/a.log")"
rc=0
timeout 60 "$TCPOTA" device --server "127.0.0.1:$ROGUE_PORT" --flash "$WORK/a" --id rogue-a \
  --trust "$WORK/rel.pub" --max-attempts 1 --backoff-max-ms 1000 --quiet 2> "$WORK/a1.log" || rc=$?
[ $rc -eq 1 ] || fail "device against a replaying server exited $rc, expected 1"
[ "$(grep -c '^accept at' "$L")" -eq 2 ] || fail "the bad image was downloaded a third time"
grep -q "decline reason 131: image $short failed its integrity check before; waiting for another image" "$L" ||
  fail "no reasoned DECLINE of the known-bad image"
grep -q "image $short failed its integrity check before; waiting for another image" "$WORK/a1.log" ||
  fail "the device did not say why it declined"
grep -q 'gave up after 1 attempt without progress' "$WORK/a1.log" || fail "no final error (one attempt, singular): $(cat "$WORK/a1.log")"
declines=$(grep -c '^decline reason 131' "$L")
# A restart remembers it (NVS): declined at once, nothing written.
rc=0
timeout 60 "$TCPOTA" device --server "127.0.0.1:$ROGUE_PORT" --flash "$WORK/a" --id rogue-a \
  --trust "$WORK/rel.pub" --max-attempts 1 --quiet 2> "$WORK/a2.log" || rc=$?
[ $rc -eq 1 ] || fail "restarted device exited $rc, expected 1"
[ "$(grep -c '^accept at' "$L")" -eq 2 ] || fail "a restarted device downloaded the bad image again"
n=$(grep -c '^decline reason 131' "$L"); [ "$n" -ge 2 ] && [ "$n" -eq "$((declines + 1))" ] || fail "the restarted device did not decline it ($n declines)"
grep -q 'written=0 ' "$WORK/a2.log" || fail "the restarted device wrote flash: $(tail -1 "$WORK/a2.log")"
ok "replayed offer with other bytes: 2 downloads, then declined with its reason (also after a restart)"

# (b) Cut 3,000 bytes past the checkpoint each time, less than the sector a
# cut keeps: bounded, then a final error.
start_rogue cut
L="$WORK/rogue-cut.log"
rc=0
timeout 60 "$TCPOTA" device --server "127.0.0.1:$ROGUE_PORT" --flash "$WORK/b" --id rogue-b \
  --backoff-min-ms 10 --backoff-max-ms 50 --quiet 2> "$WORK/b.log" || rc=$?
[ $rc -eq 1 ] || fail "device against a cutting server exited $rc, expected 1"
n=$(grep -c '^accept at' "$L")
same=$(grep -c '^accept at 16384$' "$L")
[ "$n" -le 21 ] || fail "$n downloads started against a cutting server (at most 21: 1 + 20 attempts)"
[ "$same" -le 20 ] || fail "resumed (and erased) the sector at 16384 $same times"
grep -q 'gave up after 20 attempts without progress' "$WORK/b.log" || fail "no final error"
ok "cut past each checkpoint: $n connections, the same sector resumed $same times, then gave up"

# (c) A server that keeps the line busy without progress (a hostile trial:
# WELCOME then PINGs, or DATA the device cannot write, every 500 ms): each
# attempt ends after the stall limit (4 x --timeout-ms: 4 s here) and the
# device gives up after --max-attempts, saying why (before: it waited for
# ever, any byte resetting its 30 s receive timeout).
for mode in pings stale; do
  start_rogue "$mode"
  rc=0; t0=$(date +%s)
  timeout 60 "$TCPOTA" device --server "127.0.0.1:$ROGUE_PORT" --flash "$WORK/c-$mode" --id "rogue-c-$mode" \
    --timeout-ms 1000 --max-attempts 2 --backoff-min-ms 50 --backoff-max-ms 100 --quiet 2> "$WORK/c-$mode.log" || rc=$?
  s=$(( $(date +%s) - t0 ))
  [ $rc -eq 1 ] && [ "$s" -ge 7 ] && [ "$s" -le 20 ] ||
    fail "$mode: device exited $rc after $s s (expected 1 after about 8 s): $(tail -3 "$WORK/c-$mode.log")"
  grep -q "gave up after 2 attempts without progress: no progress for 4000 ms: bytes come, but no decision of the server and no whole frame of the image in that time (a link this slow needs a longer timeout: tcpota device --timeout-ms, CONFIG_TCPOTA_TIMEOUT_MS; else a server stuck or hostile)" "$WORK/c-$mode.log" ||
    fail "$mode: the stall was not said: $(tail -3 "$WORK/c-$mode.log")"
  ! grep -q 'no connection carried a whole frame' "$WORK/c-$mode.log" ||
    fail "$mode: a stalled server was blamed on the link: $(tail -1 "$WORK/c-$mode.log")"
done
grep -q '^holding with stale data at' "$WORK/rogue-stale.log" || fail "the stale server did not hold: $(cat "$WORK/rogue-stale.log")"
ok "a server that sends PINGs or DATA the device cannot write holds each attempt 4 x --timeout-ms at most"
