#!/usr/bin/env bash
# What `tcpota device` says and refuses around its flash directory and an
# unreachable server:
#  - a flash directory that lost otadata.bin is an error naming the file,
#    never silently a blank device (the installed image and the
#    anti-rollback counter would be lost); an existing empty directory
#    needs --init; a directory that does not exist is created;
#  - with --quiet and a dead port the device says at once that the server
#    cannot be reached, that it keeps retrying and the next wait, and gives
#    a final error when it gives up;
#  - "declined: no space" gives the image's and the slot's sizes;
#  - a slot file cut short or grown is named, as shorter or longer;
#  - a flash file that is a FIFO is not a regular file, for status too (no hang).
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 100000
start_server "$WORK/img" 2.0.0
S="127.0.0.1:$SERVER_PORT"

"$TCPOTA" device --server "$S" --flash "$WORK/d" --id d 2> "$WORK/d.log" || fail "first run failed"
check_device "$WORK/d" "$WORK/img"
before=$(sha256sum "$WORK/d/nvs.bin" "$WORK/d/ota_1.bin")
rm "$WORK/d/otadata.bin"
rc=0
"$TCPOTA" device --server "$S" --flash "$WORK/d" --id d 2> "$WORK/d2.log" || rc=$?
[ $rc -eq 1 ] || fail "a device without otadata.bin exited $rc, expected 1"
grep -q "$WORK/d is missing otadata.bin; restore it, or start a new device with --init in an empty directory" \
  "$WORK/d2.log" || fail "no message naming otadata.bin: $(cat "$WORK/d2.log")"
rc=0
"$TCPOTA" device status --flash "$WORK/d" 2> "$WORK/ds.log" > /dev/null || rc=$?
[ $rc -eq 1 ] || fail "status of a device without otadata.bin exited $rc, expected 1"
grep -q "$WORK/d is missing otadata.bin; restore it, or start a new device with --init in an empty directory" \
  "$WORK/ds.log" || fail "status did not say what the run says: $(cat "$WORK/ds.log")"
[ ! -e "$WORK/d/otadata.bin" ] || fail "otadata.bin was re-created"
[ "$(sha256sum "$WORK/d/nvs.bin" "$WORK/d/ota_1.bin")" = "$before" ] || fail "the flash directory was rewritten"
rc=0
"$TCPOTA" device --server "$S" --flash "$WORK/d" --id d --init 2> "$WORK/d3.log" || rc=$?
[ $rc -eq 2 ] || fail "--init over a partly missing device exited $rc, expected 2 (usage)"
ok "missing otadata.bin: refused, named with what to do (status too), nothing rewritten (also with --init)"

mkdir "$WORK/empty"
rc=0
"$TCPOTA" device --server "$S" --flash "$WORK/empty" 2> "$WORK/e.log" || rc=$?
[ $rc -eq 2 ] || fail "an existing empty directory without --init exited $rc, expected 2 (usage)"
grep -q "holds no device; start a new device there with --init" "$WORK/e.log" || fail "no --init hint"
"$TCPOTA" device --server "$S" --flash "$WORK/empty" --init 2> "$WORK/e2.log" || fail "--init failed"
check_device "$WORK/empty" "$WORK/img"
ok "existing empty directory: needs --init, then works"

# A creation cut short (a full disk, a kill: the temporary otadata that
# creation makes first, a slot file begun, no otadata.bin) holds nothing
# that was a device's: status says so, and the same command (with or
# without --init) finishes it. Before, it was "restore it" and --init was
# refused as "not empty": a dead end without rm -rf.
for init in "" --init; do
  mkdir "$WORK/cut$init"
  : > "$WORK/cut$init/otadata.bin.tmp"
  head -c 5000 /dev/zero > "$WORK/cut$init/ota_0.bin"
  rc=0
  "$TCPOTA" device status --flash "$WORK/cut$init" 2> "$WORK/cs.log" > /dev/null || rc=$?
  [ $rc -eq 1 ] || fail "status of a creation cut short exited $rc, expected 1"
  grep -q "holds no device yet: its creation was cut short (a full disk?); run the same tcpota device command again to finish it (with the same --id and --model: it starts over, and takes what this run gives)" \
    "$WORK/cs.log" || fail "status of a creation cut short: $(cat "$WORK/cs.log")"
  "$TCPOTA" device --server "$S" --flash "$WORK/cut$init" $init 2> "$WORK/cut.log" ||
    fail "a creation cut short was not finished ($init): $(cat "$WORK/cut.log")"
  check_device "$WORK/cut$init" "$WORK/img"
done
ok "a creation cut short: status says so, the same command finishes it"

# --init where a device already lives: refused, the device left as it is
# (before, --init was ignored and the device ran).
before=$(sha256sum "$WORK/empty"/*)
rc=0
"$TCPOTA" device --server "$S" --flash "$WORK/empty" --init 2> "$WORK/i.log" || rc=$?
[ $rc -eq 2 ] || fail "--init over an existing device exited $rc, expected 2 (usage)"
grep -q -- "--init starts a new device in an empty directory, and $WORK/empty is not empty; give another --flash, or leave out --init to run the device it holds" "$WORK/i.log" ||
  fail "no message for --init over a device: $(cat "$WORK/i.log")"
[ "$(sha256sum "$WORK/empty"/*)" = "$before" ] || fail "--init over a device changed its files"
# A directory of other files holds no device to run: not offered.
mkdir -p "$WORK/notdev" && echo x > "$WORK/notdev/notes.txt"
rc=0
"$TCPOTA" device --server "$S" --flash "$WORK/notdev" --init 2> "$WORK/i2.log" || rc=$?
[ $rc -eq 2 ] || fail "--init in a directory of other files exited $rc, expected 2 (usage)"
grep -q -- "and $WORK/notdev is not empty; give another --flash (this one holds no device: no otadata.bin)$" "$WORK/i2.log" ||
  fail "--init in a directory of other files: $(cat "$WORK/i2.log")"
ok "--init where a device lives: refused, nothing changed"

# Without --init, a folder of other files is the wrong --flash (exit 2, as
# an empty one): said so, not "restore it", and no tcpota.lock left in it;
# device status says the same. An existing empty folder keeps no lock
# either.
for cmd in run status; do
  rc=0
  if [ $cmd = run ]; then
    "$TCPOTA" device --server "$S" --flash "$WORK/notdev" 2> "$WORK/nd2.log" || rc=$?
  else
    "$TCPOTA" device status --flash "$WORK/notdev" 2> "$WORK/nd2.log" > /dev/null || rc=$?
  fi
  [ $rc -eq 2 ] || fail "$cmd in a directory of other files exited $rc, expected 2"
  grep -q "$WORK/notdev holds no device, and files that are not a device's: give the --flash directory of a device, or a new or empty one for a new device$" \
    "$WORK/nd2.log" || fail "$cmd in a directory of other files: $(cat "$WORK/nd2.log")"
done
[ "$(ls -A "$WORK/notdev")" = notes.txt ] || fail "a refused run left files in notdev: $(ls -A "$WORK/notdev")"
mkdir "$WORK/empty2"
"$TCPOTA" device --server "$S" --flash "$WORK/empty2" 2> /dev/null && fail "an empty directory without --init ran"
[ -z "$(ls -A "$WORK/empty2")" ] || fail "a refused run left files in an empty directory: $(ls -A "$WORK/empty2")"
ok "a folder of other files: the wrong --flash (2), no lock left behind; nor in an empty one"

# A run killed after it made DIR and before the creation began (here while
# it takes DIR's lock: strace holds its flock for 30 s) leaves the mark of a
# creation, which the same command finishes (before: the lock alone,
# refused as "holds no device; --init").
command -v strace > /dev/null || fail "strace is missing (scripts/deps.sh installs it)"
if ! strace -o /dev/null true 2> /dev/null; then
  echo "skip: this machine forbids ptrace, so a kill inside the lock cannot be placed"
else
strace -f -o /dev/null -e trace=flock -e inject=flock:delay_exit=30000000 \
  "$TCPOTA" device --server "$S" --flash "$WORK/killed" 2> "$WORK/killed1.log" &
tracer=$!
for _ in $(seq 100); do [ -e "$WORK/killed/tcpota.lock" ] && break; sleep 0.05; done
pid=$(pgrep -f -- "--flash $WORK/killed" | grep -v "^$tracer$" | head -1)
[ -n "$pid" ] && [ -e "$WORK/killed/tcpota.lock" ] || fail "the traced device did not start: $(cat "$WORK/killed1.log")"
kill -9 "$pid"; kill "$tracer" 2> /dev/null; wait "$tracer" 2> /dev/null || true
[ ! -e "$WORK/killed/otadata.bin" ] || fail "the creation had begun before the kill"
"$TCPOTA" device --server "$S" --flash "$WORK/killed" 2> "$WORK/killed.log" ||
  fail "a creation killed before it began was not finished: $(cat "$WORK/killed.log")"
check_device "$WORK/killed" "$WORK/img"
ok "a creation killed before it began: the same command finishes it"

# Killed once the device's files were complete (the rename of its otadata
# done, strace holding the call's return) and before its id, model and
# trusted keys were recorded: the same command finishes it as the device it
# made (before: refused as "made by an older tcpota device"), the keys kept.
"$TCPOTA" keygen --out "$WORK/k" > /dev/null 2>&1 || fail "keygen failed"
strace -f -o /dev/null -e trace=rename -e inject=rename:delay_exit=30000000 \
  "$TCPOTA" device --server "$S" --flash "$WORK/late" --id late --trust "$WORK/k.pub" 2> "$WORK/late1.log" &
tracer=$!
for _ in $(seq 100); do [ -e "$WORK/late/otadata.bin" ] && break; sleep 0.05; done
pid=$(pgrep -f -- "--flash $WORK/late" | grep -v "^$tracer$" | head -1)
[ -n "$pid" ] && [ -e "$WORK/late/otadata.bin" ] || fail "the traced device did not create its files: $(cat "$WORK/late1.log")"
kill -9 "$pid"; kill "$tracer" 2> /dev/null; wait "$tracer" 2> /dev/null || true
"$TCPOTA" device --server "$S" --flash "$WORK/late" --id late --trust "$WORK/k.pub" --max-attempts 1 2> "$WORK/late.log" || true
! grep -q "older tcpota device" "$WORK/late.log" && grep -q "declined the server's offer: image is not signed" "$WORK/late.log" ||
  fail "a creation killed before its records: $(cat "$WORK/late.log")"
[ ! -e "$WORK/late/tcpota.new" ] || fail "the creation's mark was left after its records were made"
kill "$SERVER_PID"; wait "$SERVER_PID" 2> /dev/null || true
start_server "$WORK/img" 2.0.0 # one that forgot the decline above
S="127.0.0.1:$SERVER_PORT"
rc=0; "$TCPOTA" device --server "$S" --flash "$WORK/late" --max-attempts 1 2> "$WORK/late2.log" || rc=$?
[ $rc -eq 1 ] && grep -q "^device late: declined the server's offer: image is not signed" "$WORK/late2.log" ||
  fail "the finished creation did not keep its id and keys: exit $rc: $(cat "$WORK/late2.log")"
ok "a creation killed after its files, before its records: the same command finishes it, id and keys kept"
fi

# An --init into an existing empty folder, killed after its mark and before
# the device's files: the mark alone, and the same command without --init
# (the folder is no longer empty) finishes the creation, not "not a device".
mkdir "$WORK/initcut"
: > "$WORK/initcut/tcpota.new"
"$TCPOTA" device --server "$S" --flash "$WORK/initcut" --id initcut 2> "$WORK/initcut.log" ||
  fail "a creation cut after its mark was not finished: $(cat "$WORK/initcut.log")"
check_device "$WORK/initcut" "$WORK/img"
[ ! -e "$WORK/initcut/tcpota.new" ] || fail "the creation's mark was left"
ok "an --init cut after its mark, before the device's files: the next run finishes it"

# --flash naming a file or a FIFO, and status of a directory that is not there.
head -c 100 /dev/urandom > "$WORK/f.bin"
mkfifo "$WORK/fifo"
for what in f.bin:"a regular file" fifo:"a FIFO"; do
  f=${what%%:*} kind=${what#*:}
  rc=0
  timeout 10 "$TCPOTA" device --server "$S" --flash "$WORK/$f" 2> "$WORK/nd.log" || rc=$?
  [ $rc -eq 2 ] || fail "--flash $f exited $rc, expected 2 (a bad argument, as an unusable --trust)"
  grep -q -- "--flash: $WORK/$f is not a directory (it is $kind); --flash takes the directory" "$WORK/nd.log" ||
    fail "no message for --flash $f: $(cat "$WORK/nd.log")"
  rc=0
  timeout 10 "$TCPOTA" device status --flash "$WORK/$f" 2> "$WORK/nd.log" || rc=$?
  [ $rc -eq 2 ] || fail "status --flash $f exited $rc, expected 2"
  grep -q -- "--flash: $WORK/$f is not a directory (it is $kind)" "$WORK/nd.log" ||
    fail "no message for status --flash $f: $(cat "$WORK/nd.log")"
done
# A file on the way (f.bin/sub): the part that is no directory is named.
rc=0; "$TCPOTA" device status --flash "$WORK/f.bin/sub" 2> "$WORK/nd.log" || rc=$?
[ $rc -eq 2 ] && grep -qx -- "tcpota device: --flash: $WORK/f.bin/sub: $WORK/f.bin is not a directory; give the device's directory" "$WORK/nd.log" ||
  fail "--flash f.bin/sub: exit $rc: $(cat "$WORK/nd.log")"
# A new device's directory in a folder that is not there: named, not taken
# for damaged flash files.
rc=0
timeout 10 "$TCPOTA" device --server "$S" --flash "$WORK/nofolder/d00" 2> "$WORK/nd.log" || rc=$?
[ $rc -eq 2 ] || fail "--flash in a missing folder exited $rc, expected 2"
grep -q -- "--flash: $WORK/nofolder/d00 cannot be created: $WORK/nofolder does not exist; create that folder first" "$WORK/nd.log" ||
  fail "no message for --flash in a missing folder: $(cat "$WORK/nd.log")"
! grep -q 'restore them from a backup' "$WORK/nd.log" || fail "a missing folder taken for damaged flash: $(cat "$WORK/nd.log")"
rc=0
"$TCPOTA" device status --flash "$WORK/nothere" 2> "$WORK/nd.log" || rc=$?
[ $rc -eq 2 ] || fail "status of a missing directory exited $rc, expected 2"
grep -q -- "--flash: $WORK/nothere does not exist" "$WORK/nd.log" || fail "no message: $(cat "$WORK/nd.log")"
[ ! -e "$WORK/nothere" ] || fail "status created the directory"
# A directory without a device: said once, plainly.
mkdir "$WORK/nodev"
rc=0
"$TCPOTA" device status --flash "$WORK/nodev" 2> "$WORK/nd.log" || rc=$?
[ $rc -eq 2 ] || fail "status of an empty directory exited $rc, expected 2 (usage, as tcpota device)"
[ "$(cat "$WORK/nd.log")" = "tcpota device: $WORK/nodev holds no device (no otadata.bin)" ] ||
  fail "status of a directory without a device: $(cat "$WORK/nd.log")"
ok "--flash naming a file or a FIFO, and status of a missing directory, are said as such"

# A damaged flash file: named, and what to do.
cp -r "$WORK/empty" "$WORK/dmg"
head -c 8192 /dev/urandom > "$WORK/dmg/otadata.bin"
for cmd in status run; do
  rc=0
  if [ $cmd = status ]; then
    "$TCPOTA" device status --flash "$WORK/dmg" 2> "$WORK/dmg.log" > /dev/null || rc=$?
  else
    "$TCPOTA" device --server "$S" --flash "$WORK/dmg" 2> "$WORK/dmg.log" || rc=$?
  fi
  [ $rc -eq 1 ] || fail "device $cmd on a damaged otadata.bin exited $rc, expected 1"
  grep -q "otadata.bin: no valid record in either sector" "$WORK/dmg.log" || fail "damage not named: $(cat "$WORK/dmg.log")"
  grep -q "restore them from a backup, or start a new device with --init in an empty directory" "$WORK/dmg.log" ||
    fail "device $cmd on a damaged flash gave no advice: $(cat "$WORK/dmg.log")"
done
ok "a damaged otadata.bin: named, with what to do"

# A flash file that is a FIFO: named as not a regular file, by status too
# (before, status hung for ever in open(): a read-only open of a FIFO waits
# for a writer).
for f in nvs.bin ota_0.bin ota_1.bin otadata.bin; do
  rm -rf "$WORK/ff" && cp -r "$WORK/empty" "$WORK/ff"
  rm "$WORK/ff/$f" && mkfifo "$WORK/ff/$f"
  for cmd in status run; do
    rc=0
    if [ $cmd = status ]; then
      timeout 10 "$TCPOTA" device status --flash "$WORK/ff" 2> "$WORK/ff.log" > /dev/null || rc=$?
    else
      timeout 10 "$TCPOTA" device --server "$S" --flash "$WORK/ff" 2> "$WORK/ff.log" || rc=$?
    fi
    [ $rc -ne 124 ] || fail "device $cmd with $f a FIFO hung"
    [ $rc -eq 1 ] || fail "device $cmd with $f a FIFO exited $rc, expected 1"
    grep -q "($f: not a regular file)" "$WORK/ff.log" || fail "device $cmd: the FIFO $f not named: $(cat "$WORK/ff.log")"
    grep -q "restore them from a backup" "$WORK/ff.log" || fail "device $cmd with $f a FIFO gave no advice"
  done
  [ -p "$WORK/ff/$f" ] || fail "the FIFO $f was replaced"
done
ok "a flash file that is a FIFO: named as not a regular file, by status too, without a hang"

# A slot file of the wrong size: the file that changed is named, as shorter
# or longer (before, a cut ota_0.bin blamed the intact ota_1.bin, and a grown
# file was called "truncated?").
for c in "ota_0.bin 1048576 shorter than the 2097152 expected (cut short?)" \
         "ota_1.bin 4194304 longer than the 2097152 expected (grown?)"; do
  read -r file size said <<< "$c"
  rm -rf "$WORK/sz" && cp -r "$WORK/empty" "$WORK/sz"
  truncate -s "$size" "$WORK/sz/$file"
  rc=0
  "$TCPOTA" device status --flash "$WORK/sz" 2> "$WORK/sz.log" > /dev/null || rc=$?
  [ $rc -eq 1 ] || fail "status with $file of $size bytes exited $rc, expected 1"
  grep -qF "$file: file is $size bytes, $said" "$WORK/sz.log" || fail "$file not named: $(cat "$WORK/sz.log")"
  ! grep -q "truncated?" "$WORK/sz.log" || fail "called truncated: $(cat "$WORK/sz.log")"
  grep -q "restore them from a backup" "$WORK/sz.log" || fail "no advice: $(cat "$WORK/sz.log")"
done
# A run (not status) says it as a flash file's failure, not a transport's.
rm -rf "$WORK/sz" && cp -r "$WORK/empty" "$WORK/sz"
truncate -s 1000 "$WORK/sz/ota_1.bin"
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/sz" --max-attempts 1 --timeout-ms 300 2> "$WORK/sz.log" || true
grep -qF "opening the flash failed: flash file failure (ota_1.bin: file is 1000 bytes, shorter" "$WORK/sz.log" ||
  fail "a cut slot file at a run: $(head -2 "$WORK/sz.log")"
ok "a slot file cut short or grown: that file named, shorter or longer, with what to do"

# A server that closes without a word gets the device's hint (TLS, a full
# server, a refused address: its log says which); one that answers, even
# with an HTTP 400, does not; one that takes the connection and says nothing
# (an API port, say) gets the hint to check the port, not the one for a close.
for mode in silent garbage mute banner; do
  python3 - "$mode" > "$WORK/fake-$mode.port" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8); print(s.getsockname()[1], flush=True)
for _ in range(2):
    c, _ = s.accept()
    c.recv(4096)
    while sys.argv[1] == "mute" and c.recv(4096):
        pass
    if sys.argv[1] == "garbage":
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    if sys.argv[1] == "banner":
        c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    c.close()
PY
  PIDS+=($!)
  for _ in $(seq 50); do [ -s "$WORK/fake-$mode.port" ] && break; sleep 0.1; done
  rc=0
  timeout 20 "$TCPOTA" device --server "127.0.0.1:$(cat "$WORK/fake-$mode.port")" --flash "$WORK/fk-$mode" \
    --max-attempts 2 --timeout-ms 500 --quiet 2> "$WORK/fk.log" || rc=$?
  [ $rc -eq 1 ] || fail "a device against a $mode server exited $rc, expected 1"
  if [ $mode = mute ]; then
    grep -q "gave up after 2 attempts.*no data from the server for 500 ms (the server took the connection but sent nothing: check that --server names its device port" "$WORK/fk.log" ||
      fail "no hint after a server that said nothing: $(cat "$WORK/fk.log")"
    ! grep -q "ended the connection" "$WORK/fk.log" || fail "a mute server was said to close: $(cat "$WORK/fk.log")"
  elif [ $mode = banner ]; then
    # Another service's banner (SSH here): said so at once, not retried
    # (before: "malformed frame", 20 attempts, silent under --quiet).
    grep -q "the server answered in text, not in tcpota's frames: the address names another service's port (SSH, mail?), not tcpota serve's device port (--listen); not retrying: the same address would answer so again" "$WORK/fk.log" ||
      fail "a banner was not said to be another service's: $(cat "$WORK/fk.log")"
    ! grep -q "gave up after" "$WORK/fk.log" || fail "a banner was retried: $(cat "$WORK/fk.log")"
  elif [ $mode = silent ]; then
    grep -q "gave up after 2 attempts.*(the server ended the connection before it answered: it may be at its connection limit, or refuse this address or device, and its log says which; or a balancer in front of it has no server up; or it serves TLS (tcpota serve's TLS port says so; another's may not): then give --ca with its CA certificate)$" "$WORK/fk.log" ||
      fail "no hint after a silent close: $(cat "$WORK/fk.log")"
  else
    ! grep -q "before it answered" "$WORK/fk.log" || fail "a server that answered was called silent: $(cat "$WORK/fk.log")"
    # An HTTP answer is said to be one (the address is wrong, not the
    # frames), at once under --quiet, and not retried: it would be the same.
    grep -q "protocol violation: the server answered in HTTP: the address names an HTTP port (tcpota serve's API or downloads?), not its device port (tcpota serve --listen); not retrying: the same address would answer so again" "$WORK/fk.log" ||
      fail "an HTTP answer was not said to be one, or retried: $(cat "$WORK/fk.log")"
    ! grep -q "gave up after" "$WORK/fk.log" || fail "an HTTP answer was retried: $(cat "$WORK/fk.log")"
  fi
done
ok "a server that closes without a word, or keeps the connection and says nothing: the device says what may be wrong; one that answers is not called silent"

# A dead port: kill a listener and reuse its port.
start_server "$WORK/img" 2.0.0
dead=$SERVER_PORT
stop_server
: > "$WORK/q.log"
"$TCPOTA" device --server "127.0.0.1:$dead" --flash "$WORK/q" --quiet --max-attempts 3 \
  --backoff-min-ms 300 --backoff-max-ms 300 2> "$WORK/q.log" &
qp=$!
PIDS+=("$qp")
wait_line "$WORK/q.log" 'cannot reach the server \(connect to .*\); retrying, next attempt in [0-9]+ ms' 2
rc=0
wait "$qp" || rc=$?
[ $rc -eq 1 ] || fail "device against a dead port exited $rc, expected 1"
[ "$(grep -c 'cannot reach the server' "$WORK/q.log")" -eq 1 ] || fail "said it more than once with --quiet"
grep -q 'gave up after 3 attempts without progress: connect to' "$WORK/q.log" || fail "no final error"
ok "--quiet against a dead port: said at once, then a final error"

# No space: both sizes.
make_image "$WORK/big" 300000
start_server "$WORK/big" 3.0.0
rc=0
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/small" --slot-size 262144 \
  2> "$WORK/s.log" || rc=$?
[ $rc -eq 1 ] || fail "no-space device exited $rc"
grep -q "declined the server's offer: the image (300000 bytes) is larger than the slot (262144 bytes)" \
  "$WORK/s.log" || fail "no sizes in the no-space message: $(grep declined "$WORK/s.log")"
# What brings it an update: its slot is its own for good.
# A slot size --slot-size takes: the image's size rounded up to a sector
# (it said 300000, which --slot-size then refused: no multiple of 4096).
grep -q "a device whose slot takes it is made in a new --flash with --slot-size 303104 or more" "$WORK/s.log" &&
  ! grep -q "once the device is set right" "$WORK/s.log" || fail "the no-space hint: $(cat "$WORK/s.log")"
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/fits" --slot-size 303104 --progress none \
  2> "$WORK/fits.log" || fail "a device made with the advised --slot-size failed: $(tail -2 "$WORK/fits.log")"
check_device "$WORK/fits" "$WORK/big"
stop_server
ok "no space: image and slot sizes said, and what brings an update"

# device status is JSON whatever the version holds: a quote and a backslash
# (printable, so a server's OFFER may carry them too) are escaped.
ver='1.0"q\b'
rc=0
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/quoted" --factory-version "$ver" --max-attempts 1 \
  2> /dev/null || rc=$?
[ $rc -ne 0 ] || fail "a device with no server exited 0"
got=$("$TCPOTA" device status --flash "$WORK/quoted" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])') ||
  fail "device status is not JSON for version $ver: $("$TCPOTA" device status --flash "$WORK/quoted")"
[ "$got" = "$ver" ] || fail "device status says version '$got', the device runs '$ver'"
ok "device status: a version with a quote and a backslash, escaped"

# What --flash DIR was created as stays. A later run whose --id or --model
# differs is refused (exit 2) before it writes anything, naming what DIR
# holds; one whose --factory-version or --slot-size differs (they only shape
# a new device, and scripts pass them on every run) goes on with a warning.
# The same values, or none, run it as it was created.
dead() { "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/who" --max-attempts 1 \
  --backoff-min-ms 1 --backoff-max-ms 1 --progress none "$@" 2> "$WORK/who.log"; }
rc=0; dead --id who-1 --model esp32s3 --factory-version 1.2.3 --slot-size 65536 || rc=$?
[ $rc -eq 1 ] || fail "creating who-1 against a dead port exited $rc: $(cat "$WORK/who.log")"
! grep -q warning "$WORK/who.log" || fail "a warning on creation: $(cat "$WORK/who.log")"
before=$(cd "$WORK/who" && sha256sum nvs.bin otadata.bin ota_0.bin ota_1.bin)
for args in "--model esp32c3|device who-1: --model esp32c3 does not fit --flash $WORK/who: the device there is of model esp32s3 (since it was created); give --model esp32s3 or leave --model out" \
            "--id other-id|--flash $WORK/who belongs to device who-1 (its id since it was created), not other-id: give --id who-1 or leave --id out; device other-id needs a --flash DIR of its own"; do
  rc=0; dead ${args%%|*} || rc=$?
  [ $rc -eq 2 ] || fail "${args%%|*} on an existing --flash exited $rc, expected 2: $(cat "$WORK/who.log")"
  grep -qF -- "${args#*|}" "$WORK/who.log" || fail "${args%%|*}: $(cat "$WORK/who.log")"
done
[ "$(cd "$WORK/who" && sha256sum nvs.bin otadata.bin ota_0.bin ota_1.bin)" = "$before" ] ||
  fail "a refused run changed the flash directory"
rc=0; dead --id who-1 --slot-size 8192 --factory-version 5.5.5 --quiet || rc=$?
[ $rc -eq 1 ] || fail "--slot-size and --factory-version on an existing --flash exited $rc: $(cat "$WORK/who.log")"
grep -qF "device who-1: warning: --slot-size 8192 ignored: --flash $WORK/who was created with slots of 65536 bytes, and only a new device takes it" "$WORK/who.log" &&
  grep -qF "device who-1: warning: --factory-version 5.5.5 ignored: --flash $WORK/who was created with factory version 1.2.3" "$WORK/who.log" ||
  fail "no warning (even with --quiet) for --slot-size and --factory-version: $(cat "$WORK/who.log")"
rc=0; dead --id who-1 --model esp32s3 --factory-version 1.2.3 --slot-size 65536 || rc=$?
[ $rc -eq 1 ] && ! grep -q warning "$WORK/who.log" || fail "the creation's own flags were refused or warned about: $(cat "$WORK/who.log")"
rc=0; dead || rc=$?
[ $rc -eq 1 ] && grep -q "^device who-1: " "$WORK/who.log" || fail "without --id the device is not who-1: $(cat "$WORK/who.log")"
ok "an existing --flash keeps its id and model (others refused), its factory version and slot size (others warned about)"

# A --flash made by a tcpota device older than the records (2026-12-05):
# its NVS without host.id and host.model (rewritten here as NVS does: the
# table, without them, into the other sector with the next sequence). A run
# that leaves out the --id or --model it would record is refused before it
# writes anything (the default was recorded for good: an upgrade trial's
# model-c3 device took esp32 and esp32's image); one that gives both runs
# and records them.
strip_records() { # DIR KEY...
  local d=$1 k args=()
  shift
  for k in "$@"; do args+=("-$k"); done
  nvs_edit "$d" "${args[@]}"
}
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/old" --id old-1 --model esp32c3 \
  --max-attempts 1 --backoff-min-ms 1 --progress none 2> "$WORK/old.log" || rc=$?
[ $rc -eq 1 ] || fail "creating old-1 against a dead port exited $rc: $(cat "$WORK/old.log")"
strip_records "$WORK/old" host.id host.model host.factory
before=$(cd "$WORK/old" && sha256sum nvs.bin otadata.bin ota_0.bin ota_1.bin)
for args in "|the --id and --model that device ran with (by default: --id dev-" \
            "--id old-1|the --model that device ran with (by default: --model esp32) in this run: it is recorded" \
            "--model esp32c3|the --id that device ran with (by default: --id dev-"; do
  rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/old" ${args%%|*} --max-attempts 1 \
    --backoff-min-ms 1 --progress none 2> "$WORK/old.log" || rc=$?
  [ $rc -eq 2 ] || fail "'${args%%|*}' on a --flash without records exited $rc, expected 2: $(cat "$WORK/old.log")"
  grep -qF "holds a device made by an older tcpota device, which kept no record of its" "$WORK/old.log" &&
    grep -qF -- "${args#*|}" "$WORK/old.log" || fail "'${args%%|*}' on a --flash without records: $(cat "$WORK/old.log")"
done
[ "$(cd "$WORK/old" && sha256sum nvs.bin otadata.bin ota_0.bin ota_1.bin)" = "$before" ] ||
  fail "a refused run changed the --flash without records"
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/old" --id old-1 --model esp32c3 \
  --max-attempts 1 --backoff-min-ms 1 --progress none 2> "$WORK/old.log" || rc=$?
[ $rc -eq 1 ] || fail "old-1 with both flags exited $rc: $(cat "$WORK/old.log")"
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/old" --max-attempts 1 \
  --backoff-min-ms 1 --progress none 2> "$WORK/old.log" || rc=$?
[ $rc -eq 1 ] && grep -q "^device old-1: " "$WORK/old.log" || fail "once recorded, old-1 was not taken from --flash: $(cat "$WORK/old.log")"
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/old" --model esp32 --max-attempts 1 \
  --backoff-min-ms 1 --progress none 2> "$WORK/old.log" || rc=$?
[ $rc -eq 2 ] && grep -qF "the device there is of model esp32c3" "$WORK/old.log" || fail "the recorded model esp32c3 was not kept: $(cat "$WORK/old.log")"
# This tcpota's own creation cut short after its factory record (a kill, a
# full disk): no older device's, so the run records as a creation does.
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/cut2" --model esp32c3 \
  --max-attempts 1 --backoff-min-ms 1 --progress none 2> "$WORK/cut2.log" || rc=$?
[ $rc -eq 1 ] || fail "creating cut against a dead port exited $rc: $(cat "$WORK/cut2.log")"
strip_records "$WORK/cut2" host.id host.model
rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/cut2" --max-attempts 1 \
  --backoff-min-ms 1 --progress none 2> "$WORK/cut2.log" || rc=$?
[ $rc -eq 1 ] && ! grep -q 'older tcpota' "$WORK/cut2.log" || fail "a creation cut short after its factory record was taken for an older device's: $(cat "$WORK/cut2.log")"
ok "a --flash without records (an older tcpota's) needs its --id and --model once, then keeps them; a creation cut short is finished"

# A slot file this user may not open for writing (here immutable) is not
# damage: said so, with what to give, not "restore them from a backup, or
# start a new device".
if chattr +i "$WORK/who/ota_1.bin" 2> /dev/null; then
  rc=0; "$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/who" --max-attempts 1 2> "$WORK/imm.log" || rc=$?
  chattr -i "$WORK/who/ota_1.bin"
  [ $rc -eq 1 ] && grep -q "cannot open the flash files in $WORK/who: ota_1.bin: open: Operation not permitted; they are not damaged: give this user write access" "$WORK/imm.log" &&
    ! grep -q "restore them from a backup" "$WORK/imm.log" || fail "an immutable slot file: rc $rc: $(cat "$WORK/imm.log")"
  ok "a flash file that cannot be opened for writing is said to be so, not damaged"
else
  echo "skip: chattr +i does not work here"
fi

# A device created without a factory image runs nothing yet: its status
# says so (null), not the SHA-256 of zero bytes (e3b0c442...).
status=$("$TCPOTA" device status --flash "$WORK/who") || fail "device status failed"
[[ $status == *'"size":0,"sha256":null,'* ]] || fail "an empty factory slot's status: $status"
ok "an empty factory slot has no sha256 in device status"

# A new device whose factory version has no place in the versions' order
# is warned about when it is made (its version is its own for good, and no
# image is offered to it unless a rollout allows downgrades); one that has
# one is not.
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/fv1" --factory-version "not a version" \
  --max-attempts 1 --timeout-ms 500 2> "$WORK/fv1.log" || true
grep -q "warning: --factory-version 'not a version' is not a semantic version (like 2.1.0): a server offers such a device no image unless its rollout allows downgrades" "$WORK/fv1.log" ||
  fail "an unordered factory version was not warned about: $(head -3 "$WORK/fv1.log")"
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/fv2" --factory-version 1.2 \
  --max-attempts 1 --timeout-ms 500 2> "$WORK/fv2.log" || true
! grep -q "is not a semantic version" "$WORK/fv2.log" || fail "1.2 was warned about: $(head -3 "$WORK/fv2.log")"
! grep -q "has a space" "$WORK/fv2.log" || fail "the default model was warned about: $(head -3 "$WORK/fv2.log")"
# A model with a space: no fleet rollout can name it (a trial).
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/fv3" --model "es p32" \
  --max-attempts 1 --timeout-ms 500 2> "$WORK/fv3.log" || true
grep -q "warning: --model 'es p32' has a space: a fleet server's rollouts name models without spaces, so this device is offered no fleet image" "$WORK/fv3.log" ||
  fail "a model with a space was not warned about: $(head -3 "$WORK/fv3.log")"
# Said when the device is made, not at each run after (a mutation review).
"$TCPOTA" device --server 127.0.0.1:1 --flash "$WORK/fv3" --max-attempts 1 --timeout-ms 500 \
  2> "$WORK/fv3b.log" || true
! grep -q "has a space" "$WORK/fv3b.log" || fail "the model's space was warned about again: $(head -3 "$WORK/fv3b.log")"
ok "a new device's factory version without a place in the order, or a model with a space, is warned about"
