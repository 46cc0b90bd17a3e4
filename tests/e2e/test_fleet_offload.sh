#!/usr/bin/env bash
# A fleet server's file work runs off its event loop (server/offload.c).
#  - An image upload is hashed, written and fsync'd on a thread: while its
#    fsync is held (tests/tools/failqueue.c, TCPOTA_TEST_FSYNC_GATE), a
#    device updates from start to end and /metrics answers. Then: the
#    upload ends as it would have; one whose client went away meanwhile
#    leaves no temporary file; one for which no thread can be started
#    (pipe2 failed) is answered 500 with what to do and stores nothing.
#  - An image is loaded on a thread the first time a check-in needs it:
#    while its file's open is held (TCPOTA_TEST_OPEN_GATE), the check-ins
#    that need it wait (one killed meanwhile), others are served; once
#    loaded, the waiting device and an HTTP download get it byte for byte,
#    and it was loaded once.
#  - A loaded image whose file was damaged and then repaired by adding the
#    same bytes again is loaded again: an HTTP download gets the repaired
#    bytes, not the damaged file the old load still maps.
#  - A load that failed is remembered: the check-ins after it load nothing
#    (not even once the file is good again) until a change through the API.
#  - An image for whose load no thread can be started (pipe2 failed) is
#    loaded on the event loop: its device gets it all the same.
#  - A legacy (req0/req1) device whose image is loading waits for it too,
#    and then gets it byte for byte.
#  - A server stopped while an upload is written waits for the write,
#    exits 0 and leaves no temporary file; one killed leaves it, and the
#    next start removes it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
cd "$WORK"
GATE=$WORK/gate
with_failqueue gated-tcpota
touch "$GATE" # open: the first image goes through at once
OPEN_GATE=$WORK/opengate
touch "$OPEN_GATE"
TCPOTA=./gated-tcpota TCPOTA_TEST_FSYNC_GATE=$GATE TCPOTA_TEST_PIPE2_EMFILE=$WORK/emfile \
  TCPOTA_TEST_OPEN_GATE=$OPEN_GATE TCPOTA_TEST_FSYNC_EIO=$WORK/fsynceio start_fleet
make_image a.bin 300000
"$TCPOTA" image add a.bin --version 2.0.0 --model esp32 > add-a.out 2>&1 || fail "image add a: $(cat add-a.out)"
grep -q "failqueue: fsync of .*/.upload-" server.log || fail "the gate saw no upload's fsync: the test tests nothing"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null 2>&1 || fail "rollout create"

# held: how many uploads' fsyncs have reached the gate (each one is told).
held() { grep -c 'failqueue: fsync of .*/.upload-' server.log || true; }
# wait_held N: until more than N have.
wait_held() {
  local i
  for i in $(seq 1 300); do [ "$(held)" -gt "$1" ] && return 0; sleep 0.1; done
  fail "no upload reached its fsync: $(tail -5 server.log)"
}
# stop_held GATE WHAT: SIGTERM while WHAT is held at GATE: the server
# must wait for it, then exit 0 once GATE opens.
stop_held() {
  local rc=0
  kill -TERM "$SERVER_PID"
  sleep 0.5
  kill -0 "$SERVER_PID" 2> /dev/null || fail "the server exited before $2 ended"
  touch "$1"
  wait "$SERVER_PID" || rc=$?
  [ $rc -eq 0 ] || fail "the server stopped during $2 exited $rc: $(tail -5 server.log)"
}
# rollout_of NAME BYTES MODEL: a new image NAME.bin of BYTES (HEX its id),
# version 2.0.0 in a rollout for MODEL, not loaded yet.
rollout_of() {
  make_image "$1.bin" "$2"
  "$TCPOTA" image add "$1.bin" --version 2.0.0 --model "$3" > "add-$1.out" 2>&1 ||
    fail "image add $1: $(cat "add-$1.out")"
  "$TCPOTA" rollout create --image 2.0.0 --model "$3" > /dev/null 2>&1 || fail "rollout create $3"
  HEX=$(sha256sum "$1.bin" | cut -c1-64)
}
# load_held NAME BYTES MODEL DEVICE [ARGS...]: rollout_of NAME BYTES MODEL;
# with the open gate closed, DEVICE (ARGS added) checks in for it in the
# background (HELD its pid, DEVICE.log its output); returns once the
# image's load waits.
load_held() {
  local model=$3 dev=$4
  rollout_of "$1" "$2" "$3"
  shift 4
  rm -f "$OPEN_GATE"
  "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$dev" --id "$dev" --model "$model" \
    --factory-version 1.0.0 --slot-size 1048576 --progress none "$@" 2> "$dev.log" &
  HELD=$!
  wait_line server.log "failqueue: open of .*/images/$HEX waits"
}
# upload_held NAME BYTES VERSION MODEL: with the gate closed, uploads a new
# random image NAME.bin in the background (its output in NAME.out), and
# returns once its fsync waits; HELD is the upload's pid.
upload_held() {
  local n
  rm -f "$GATE"
  make_image "$1.bin" "$2"
  n=$(held)
  "$TCPOTA" image add "$1.bin" --version "$3" --model "$4" > "$1.out" 2>&1 &
  HELD=$!
  wait_held "$n"
}

upload_held b 4000000 3.0.0 other
add_b=$HELD
timeout 20 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash d1 --id d1 --model esp32 \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> d1.log ||
  fail "a device could not update while an upload was being written (exit $?): $(tail -3 d1.log)"
grep -q "2.0.0" d1.log || fail "d1 did not say it updated to 2.0.0: $(cat d1.log)"
curl -sf -m 5 -o metrics.out "$TCPOTA_API/metrics" || fail "/metrics did not answer while an upload was being written"
kill -0 "$add_b" 2> /dev/null || fail "the upload ended before its fsync was let go: the gate held nothing"
ok "while an upload's fsync is held, a device updates and /metrics answers"
touch "$GATE"
wait "$add_b" || fail "the held upload failed once let go: $(cat b.out)"
"$TCPOTA" image list --json > list.json || fail "image list"
[ "$(jq_py '[i["version"] for i in j["images"] if i["model"] == "other"]' < list.json)" = 3.0.0 ] ||
  fail "the held upload is not listed: $(cat list.json)"
cmp b.bin "$DATA/images/$(sha256sum b.bin | cut -c1-64)" || fail "the held upload's file differs from what was sent"
ok "once let go, the upload is stored byte for byte"

# Two uploads at once take turns: the second is judged against the first
# once it is stored. The same bytes under another version: 409 (before:
# "added", answered with the first one's version); other bytes under the
# same version of the same model: 409 (before: two images of one version).
for second in same-bytes other-bytes; do
  upload_held t1 300000 10.0.0 turns
  if [ $second = same-bytes ]; then cp t1.bin t2.bin; v2=10.0.1; else make_image t2.bin 300000; v2=10.0.0; fi
  "$TCPOTA" image add t2.bin --version $v2 --model turns > t2.out 2>&1 &
  t2=$!
  sleep 1 # t2 is hashed and waits for its turn
  touch "$GATE"
  wait "$HELD" || fail "$second: the first upload failed: $(cat t1.out)"
  rc=0; wait "$t2" || rc=$?
  [ $rc -ne 0 ] || fail "$second: the second upload at once was taken: $(cat t2.out)"
  if [ $second = same-bytes ]; then
    grep -q "these bytes are stored already as image .*, version 10.0.0 for model turns" t2.out ||
      fail "same bytes under another version at once: $(cat t2.out)"
  else
    grep -q "model turns has version 10.0.0 already" t2.out || fail "one version twice at once: $(cat t2.out)"
  fi
  "$TCPOTA" image list --json > turns.json || fail "image list"
  [ "$(jq_py '[i["version"] for i in j["images"] if i["model"] == "turns"]' < turns.json)" = 10.0.0 ] ||
    fail "$second: model turns has other images than the first upload: $(cat turns.json)"
  "$TCPOTA" image rm "$(sha256sum t1.bin | cut -c1-12)" > /dev/null || fail "image rm t1"
done
ok "two uploads at once take turns: the same bytes under another version, or one version twice, is refused"

# A client that goes away while its upload is written. libevent does not
# read a request's connection while it is being answered, so the server
# learns of it only when it replies: the upload, whose bytes all arrived,
# is stored; no temporary file stays; adding it again says it is there.
upload_held c 2000000 4.0.0 gone
add_c=$HELD
kill -9 "$add_c"
wait "$add_c" 2> /dev/null || true
touch "$GATE"
"$TCPOTA" image add c.bin --version 4.0.0 --model gone > add-c2.out 2>&1 || fail "image add c again: $(cat add-c2.out)"
cmp c.bin "$DATA/images/$(sha256sum c.bin | cut -c1-64)" || fail "c's stored file differs from what was sent"
ls -A "$DATA/images" | grep -q '^\.upload-' && fail "a temporary file stayed: $(ls -A "$DATA/images")"
ok "an upload whose client went away while it was written leaves no temporary file; adding it again works"

# No thread can be started for the work (descriptors run out): a 500 that
# says so and what to do, nothing stored; once there are some again, the
# same upload goes through.
make_image f.bin 100000
touch "$WORK/emfile"
if "$TCPOTA" image add f.bin --version 6.0.0 --model nothread > add-f.out 2>&1; then
  fail "an upload went through although no job could start: $(cat add-f.out)"
fi
grep -q "cannot start a thread for this request (Too many open files); raise its descriptor or thread limit" add-f.out ||
  fail "no thread: not said: $(cat add-f.out)"
grep -q "failqueue: pipe2 fails with EMFILE" server.log || fail "pipe2 was not failed: the test tests nothing"
ls -A "$DATA/images" | grep -q '^\.upload-' && fail "a temporary file stayed: $(ls -A "$DATA/images")"
"$TCPOTA" image list --json > list3.json || fail "image list"
[ -z "$(jq_py '[i["id"] for i in j["images"] if i["model"] == "nothread"]' < list3.json)" ] ||
  fail "an upload that found no thread was stored: $(cat list3.json)"
rm "$WORK/emfile"
"$TCPOTA" image add f.bin --version 6.0.0 --model nothread > add-f2.out 2>&1 || fail "image add f again: $(cat add-f2.out)"
ok "no thread for an upload: 500 with what to do, nothing kept; the same upload later goes through"

# An image's first load, held at its file's open: the check-ins that need
# it wait; others are served meanwhile.
load_held l 500000 late dl
dl=$HELD lhex=$HEX
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dk --id dk --model late \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> dk.log &
dk=$!
curl -s -o http-late.bin -D http-late.h -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/late?device=h1" &
hl=$!
wait_line server.log '\[dk .*asking the fleet store'
sleep 0.3 # dk's and h1's check-ins reach the store and wait for the image
kill -9 "$dk"; wait "$dk" 2> /dev/null || true
timeout 20 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash d1 --id d1 --model esp32 \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> d1b.log ||
  fail "a device of a loaded image was not served while another image loaded (exit $?): $(tail -3 d1b.log)"
curl -sf -m 5 -o /dev/null "$TCPOTA_API/metrics" || fail "/metrics did not answer while an image loaded"
kill -0 "$dl" 2> /dev/null || fail "dl ended while its image was still loading: $(tail -3 dl.log)"
grep -q '\[dl .*decision' server.log && fail "dl was decided before its image was loaded"
ok "while an image loads, the check-ins that need it wait and the others are served"
touch "$OPEN_GATE"
wait "$dl" || fail "dl failed once its image was loaded: $(tail -3 dl.log)"
[ "$(running dl)" = 2.0.0 ] || fail "dl does not run 2.0.0: $(tail -3 dl.log)"
wait "$hl" || fail "the HTTP download failed"
grep -q '^HTTP/1.1 200' http-late.h || fail "the HTTP download waiting for the load: $(head -1 http-late.h)"
cmp http-late.bin l.bin || fail "the HTTP download waiting for the load got other bytes"
[ "$(grep -c "failqueue: open of .*/images/$lhex waits" server.log)" -eq 1 ] ||
  fail "the image was loaded more than once: $(grep -c "open of .*/images/$lhex" server.log) times"
grep -qE "image ${lhex:0:16}\.\.\. \(2\.0\.0, 500000 bytes\) loaded in [0-9.]+ (ms|s); [0-9]+ check-ins? waited for it" server.log ||
  fail "the load was not told: $(grep "${lhex:0:16}" server.log)"
ok "once loaded (once), the waiting device and HTTP download get it byte for byte; a device killed while waiting harms nothing"

# A loaded image's file damaged in place, then repaired by adding the same
# bytes again: served from the repaired file, not from the damaged one the
# old load still maps (an HTTP download sends from that file).
curl -s -m 20 -o a-before.bin -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h2" || fail "download a"
cmp a-before.bin a.bin || fail "image a before the damage differs"
ahex=$(sha256sum a.bin | cut -c1-64)
flip_byte "$DATA/images/$ahex" 1000
# Damaged in place, before any change through the API: not served at all.
code=$(curl -s -m 20 -o a-damaged.bin -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h4" || true)
[ "$code" = 503 ] || fail "a loaded image whose file was damaged in place was answered $code (not 503; 000: none in 20 s)"
wait_line server.log "image ${ahex:0:16}\.\.\. \(2\.0\.0\): .* no longer has that SHA-256"
"$TCPOTA" image add a.bin --version 2.0.0 --model esp32 > add-a2.out 2>&1 || fail "image add a again: $(cat add-a2.out)"
grep -q "stored again" add-a2.out || fail "the damaged file was not repaired: $(cat add-a2.out)"
curl -s -m 20 -o a-after.bin -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h3" || fail "download a again"
cmp a-after.bin a.bin || fail "after the repair an HTTP download got other bytes than the image (the damaged file's)"
ok "a loaded image whose file changed in place is served to no one; once repaired it is loaded again: downloads get the right bytes"

# An upload whose fsync fails (the disk's I/O error): 500 with the cause
# and what to do, no temporary file, nothing stored; once the disk is
# well, the same upload goes through (write_body keeps fsync's error).
make_image io.bin 100000
touch "$WORK/fsynceio"
if "$TCPOTA" image add io.bin --version 9.0.0 --model eio > add-io.out 2>&1; then
  fail "an upload whose fsync failed was stored: $(cat add-io.out)"
fi
grep -q "failqueue: fsync fails with EIO: .*/.upload-" server.log || fail "no fsync was failed: the test tests nothing"
grep -q "cannot write the image into $DATA/images: Input/output error; make that folder writable" add-io.out ||
  fail "a failed fsync: not said: $(cat add-io.out)"
ls -A "$DATA/images" | grep -q '^\.upload-' && fail "a temporary file stayed: $(ls -A "$DATA/images")"
"$TCPOTA" image list --json > list-io.json || fail "image list"
[ -z "$(jq_py '[i["id"] for i in j["images"] if i["model"] == "eio"]' < list-io.json)" ] ||
  fail "an upload whose fsync failed is listed: $(cat list-io.json)"
rm "$WORK/fsynceio"
"$TCPOTA" image add io.bin --version 9.0.0 --model eio > add-io2.out 2>&1 || fail "image add io again: $(cat add-io2.out)"
ok "an upload whose fsync fails: 500 with its cause, nothing kept; the same upload later goes through"

# Each job's pipe is closed once it has ended (offload.c job_free), and a
# check-in that needs no image starts no load: twenty jobs (ten uploads,
# each hashed then written or checked) leave the server no more
# descriptors than before, and nothing failed to load.
fds() { ls "/proc/$SERVER_PID/fd" | wc -l; }
fd0=$(fds)
for i in 1 2 3 4 5; do
  make_image "fd$i.bin" 20000
  "$TCPOTA" image add "fd$i.bin" --version "8.0.$i" --model fds > /dev/null 2>&1 || fail "image add fd$i"
  "$TCPOTA" image add "fd$i.bin" --version "8.0.$i" --model fds > /dev/null 2>&1 || fail "image add fd$i again"
done
timeout 20 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dn --id dn --model norollout \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> dn.log || true
for i in $(seq 1 50); do [ "$(fds)" -le "$fd0" ] && break; sleep 0.1; done
[ "$(fds)" -le "$fd0" ] || fail "jobs left descriptors open: $fd0 before, $(fds) after: $(ls -l "/proc/$SERVER_PID/fd")"
grep -q "cannot load it" server.log && fail "an image failed to load: $(grep 'cannot load it' server.log)"
ok "twenty jobs leave no descriptor open; a check-in without a rollout loads nothing"

# A load that failed is remembered (fleet.c FLEET_IMAGE_RETRY_S, while the
# fleet's epoch stays): the check-ins after it are answered from that at
# once, without loading the file again, even once the file is good again;
# a change through the API (another image added) has the next check-in
# load it again, and get it.
rollout_of r 200000 broken
rhex=$HEX
flip_byte "$DATA/images/$rhex" 1000
# failed_loads: how many times the server told that r's load failed.
failed_loads() { grep -c "image ${rhex:0:16}\.\.\. (2\.0\.0): .* no longer has that SHA-256" server.log || true; }
# checkin_r DEVICE [OUT]: an HTTP check-in of model broken (its body in
# OUT); prints its status (000: none in 10 s).
checkin_r() {
  curl -s -m 10 -o "${2:-/dev/null}" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
    "$TCPOTA_API/ota/broken?device=$1" || true
}
for dev in r1 r2; do
  code=$(checkin_r $dev)
  [ "$code" = 503 ] || fail "$dev: a damaged image's check-in was answered $code (not 503)"
  [ "$(failed_loads)" -eq 1 ] || fail "$dev: the damaged image was loaded $(failed_loads) times (once, then remembered)"
done
cp r.bin "$DATA/images/$rhex" # repaired by hand: the server is not told
code=$(checkin_r r3)
[ "$code" = 503 ] || fail "the failed load was not remembered: a check-in after it was answered $code (not 503)"
ok "a failed load is remembered: the check-ins after it do not load the file again"
# The failure's line says to add the image again: with its file put back by
# hand, that add (the same bytes, already stored) has the next check-in
# load it (a trial was answered 503 until the 30 s re-read).
"$TCPOTA" image add r.bin --version 2.0.0 --model broken > add-r.out 2>&1 || fail "image add r again: $(cat add-r.out)"
wait_line server.log "image ${rhex:0:12}: its file .* is intact again; the next check-in loads it" 5
code=$(checkin_r r3b r-got0.bin)
[ "$code" = 200 ] && cmp -s r-got0.bin r.bin || fail "after the same image was added again, its check-in was answered $code"
ok "a failed load is forgotten when the image is added again with its file intact"
flip_byte "$DATA/images/$rhex" 1000
code=$(checkin_r r3c)
[ "$code" = 503 ] || fail "the image damaged again was served: $code"
cp r.bin "$DATA/images/$rhex"
make_image u.bin 10000
"$TCPOTA" image add u.bin --version 1.0.0 --model unrelated > add-u.out 2>&1 || fail "image add u: $(cat add-u.out)"
code=$(checkin_r r4 r-got.bin)
[ "$code" = 200 ] || fail "after a change through the API the failed image was not loaded again: $code (not 200)"
cmp r-got.bin r.bin || fail "the image loaded again was downloaded with other bytes"
grep -qE "image ${rhex:0:16}\.\.\. \(2\.0\.0, 200000 bytes\) loaded in" server.log ||
  fail "the load after the change was not told: $(grep "${rhex:0:16}" server.log)"
ok "after a change through the API, a failed image is loaded again at the next check-in"

# No thread for an image's first load (pipe2 fails, as when descriptors
# run out): the check-in loads it on the event loop, and the device gets
# its update all the same.
rollout_of n 300000 loopload
nhex=$HEX
touch "$WORK/emfile"
timeout 20 "$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash dt --id dt --model loopload \
  --factory-version 1.0.0 --slot-size 1048576 --progress none 2> dt.log ||
  fail "a device whose image found no thread to load it did not update (exit $?): $(tail -3 dt.log)"
rm "$WORK/emfile"
[ "$(running dt)" = 2.0.0 ] || fail "dt does not run 2.0.0: $(tail -3 dt.log)"
check_device dt n.bin
grep -qE "image ${nhex:0:16}\.\.\. \(2\.0\.0, 300000 bytes\) loaded in [0-9.]+ (ms|s) on the event loop \(no thread\)" server.log ||
  fail "the image was not said to be loaded on the loop (no thread): $(grep "${nhex:0:16}" server.log)"
ok "no thread for an image's first load: it is loaded on the loop, and the device gets it"

# A legacy (req0/req1) device whose image is loading waits for it, as a v1
# device does (fleet.c legacy_checkin_done: fleet_park), while the loop
# serves others; once loaded, it gets the image byte for byte.
rollout_of lg 200000 legacy
lghex=$HEX
rm -f "$OPEN_GATE"
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out lg.got --timeout 20 > lg.log 2>&1 &
lg=$!
wait_line server.log "failqueue: open of .*/images/$lghex waits"
sleep 0.3 # had the check-in not waited, it would be decided by now
curl -sf -m 5 -o /dev/null "$TCPOTA_API/metrics" || fail "/metrics did not answer while a legacy device's image loaded"
kill -0 "$lg" 2> /dev/null || fail "the legacy device ended while its image was still loading: $(cat lg.log)"
grep -q 'legacy device: ' server.log && fail "the legacy device was decided before its image was loaded: $(grep 'legacy device: ' server.log)"
touch "$OPEN_GATE"
wait "$lg" || fail "the legacy device failed once its image was loaded: $(cat lg.log)"
cmp lg.got lg.bin || fail "the legacy device got other bytes than its image"
grep -qE "image ${lghex:0:16}\.\.\. \(2\.0\.0, 200000 bytes\) loaded in [0-9.]+ (ms|s); 1 check-in waited for it" server.log ||
  fail "the legacy device did not wait for the load: $(grep "${lghex:0:16}" server.log)"
ok "a legacy device whose image loads waits for it, and then gets it byte for byte"

# A server stopped while an image loads for a waiting check-in: it waits
# for the load, answers or drops the check-in, and exits 0 (under ASan:
# nothing leaked of the waiting check-in).
load_held s 300000 stopload ds --max-attempts 1
ds=$HELD
stop_held "$OPEN_GATE" "an image's load"
wait "$ds" 2> /dev/null || true
ok "a server stopped while an image loads for a waiting check-in waits for the load and exits 0"
TCPOTA=./gated-tcpota TCPOTA_TEST_FSYNC_GATE=$GATE TCPOTA_TEST_OPEN_GATE=$OPEN_GATE start_fleet

# A server stopped while an upload is written: it waits for the write,
# exits 0 (under ASan: nothing leaked), no temporary file stays.
upload_held e 1000000 5.0.0 stop
add_e=$HELD
stop_held "$GATE" "an upload's write"
rc=0; wait "$add_e" 2> /dev/null || rc=$?
[ $rc -ne 0 ] || fail "an upload cut by the server's stop exited 0: $(cat e.out)"
grep -q "stopping: 1 image upload in progress is not stored; add it again once the server runs" server.log ||
  fail "the stop did not say an upload was cut: $(tail -5 server.log)"
grep -q "closed the connection during a request with a 1000000-byte body, without an answer, and no longer answers" e.out ||
  fail "the client of the cut upload was not told what happened: $(cat e.out)"
ls -A "$DATA/images" | grep -q '^\.upload-' && fail "a temporary file stayed after the stop: $(ls -A "$DATA/images")"
ok "a server stopped during an upload's write waits for it, exits 0 and leaves no temporary file"

# A server killed (SIGKILL) while an upload is written leaves its temporary
# file; the next start removes it and says so.
rm "$GATE"
TCPOTA=./gated-tcpota TCPOTA_TEST_FSYNC_GATE=$GATE start_fleet
upload_held g 500000 7.0.0 killed
add_g=$HELD
kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2> /dev/null || true
wait "$add_g" 2> /dev/null && fail "an upload whose server was killed succeeded"
ls -A "$DATA/images" | grep -q '^\.upload-' || fail "no temporary file after the kill: the test tests nothing"
# A --db node's fetch cut by a kill is swept the same way, and said apart:
# nothing to add again (before: "an upload cut short: add that image again").
: > "$DATA/images/.fetch-cut"
start_fleet
grep -q "removed 1 unfinished upload left in $DATA/images by an earlier run (an upload cut short: add that image again)" server.log ||
  fail "the leftover upload was not removed or not said: $(cat server.log)"
grep -q "removed 1 image fetch cut short in $DATA/images by an earlier run (fetched again from the database when a check-in needs it)" server.log &&
  [ ! -e "$DATA/images/.fetch-cut" ] || fail "the leftover fetch: $(grep removed server.log)"
ls -A "$DATA/images" | grep -q '^\.upload-' && fail "a temporary file stayed after a restart: $(ls -A "$DATA/images")"
stop_fleet
ok "a server killed while writing an upload: the next start removes its temporary file and says so"
