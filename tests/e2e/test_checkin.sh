#!/usr/bin/env bash
# `tcpota device --check-interval S` keeps running: it installs the image,
# is then up to date, and checks in again every S seconds (±20 %) until a
# signal ends it (exit 143 on SIGTERM). Without the option it exits 0 once
# up to date, as before.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 65536
start_server "$WORK/img" 2.0.0

"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d" --id checkin-dev \
  --check-interval 1 --progress none 2> "$WORK/device.log" &
DEV_PID=$!
PIDS+=("$DEV_PID")
# Installed (up to date after the reboot), then at least two more check-ins.
for n in 1 2 3; do
  for ((i = 0; i < 200; i++)); do
    [ "$(grep -c 'up to date' "$WORK/device.log" || true)" -ge "$n" ] && break
    sleep 0.05
  done
  [ "$(grep -c 'up to date' "$WORK/device.log" || true)" -ge "$n" ] ||
    fail "device did not check in again (up to date $n times) within 10 s"
done
# 1 s -20 %..+20 %: said in tenths, never "0 s".
grep -qE 'next check-in in (0\.[89]|1\.[012]) s$' "$WORK/device.log" || fail "device did not log its next check-in: $(grep 'next check-in' "$WORK/device.log")"
! grep -q 'next check-in in 0 s' "$WORK/device.log" || fail "a wait of about 1 s said as 0 s"
kill -TERM "$DEV_PID"
rc=0
wait "$DEV_PID" || rc=$?
[ $rc -eq 143 ] || fail "device exited $rc on SIGTERM during a check-in wait, expected 143"
check_device "$WORK/d" "$WORK/img"
hellos=$(grep -c 'checkin-dev' "$WORK/server.log" || true)
ok "device installed the image, checked in 3 times, ended on SIGTERM ($hellos server lines)"

# Default: exit 0 once up to date.
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d" --id checkin-dev \
  --progress none 2> "$WORK/device2.log" || fail "device without --check-interval did not exit 0"
grep -q 'up to date' "$WORK/device2.log" || fail "device without --check-interval was not up to date"
! grep -q 'next check-in' "$WORK/device2.log" || fail "device without --check-interval waited for a check-in"
ok "without --check-interval the device exits 0 when up to date"

# A week is the longest interval.
rc=0
"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/d" --check-interval 604801 \
  2> "$WORK/device3.log" || rc=$?
[ $rc -eq 2 ] || fail "--check-interval 604801 exited $rc, expected 2 (usage)"
ok "--check-interval over a week refused"

# Two updates in one run: the first image, installed whole, was fetched
# once, so the stats count none of it as refetched.
stop_server
PORT=$SERVER_PORT
make_image "$WORK/img3" 40960
start_server "$WORK/img" 2.0.0 --listen "127.0.0.1:$PORT"
"$TCPOTA" device --server "127.0.0.1:$PORT" --flash "$WORK/d2" --id two-updates \
  --check-interval 1 --progress none 2> "$WORK/two.log" &
DEV_PID=$!
PIDS+=("$DEV_PID")
wait_line "$WORK/two.log" 'up to date, running 2\.0\.0'
stop_server
start_server "$WORK/img3" 3.0.0 --listen "127.0.0.1:$PORT"
wait_line "$WORK/two.log" 'up to date, running 3\.0\.0'
kill -TERM "$DEV_PID"
wait "$DEV_PID" || true
grep -q "stats image=40960 written=$((65536 + 40960)) refetched=0 " "$WORK/two.log" ||
  fail "two whole updates counted as refetched: $(grep stats "$WORK/two.log")"
ok "two updates in one run: written is both images, refetched 0"
stop_server

# A server (a fake here) that gives a reason this tcpota does not know and
# asks for a check-in in 2^32-1 s: the reason said as unknown, with its
# code (before: "the server gave no reason"), the wait as a week at most
# (before: 4294967295 s, then "next check-in in 681578 s (the server asked
# for 604800 s)").
python3 - "$(dirname "$0")" "$WORK/fake.port" <<'PY' &
import struct, sys
sys.path.insert(0, sys.argv[1])
import frames


def answer(c, n):
    if n < 2:
        c.sendall(frames.frame(frames.WELCOME, b"\x01\x00\x00\x00") +
                  frames.frame(frames.NO_UPDATE, frames.tlv(0x0A, struct.pack("<I", 0xFFFFFFFF)) +
                               frames.tlv(frames.TAG_WHY, struct.pack("<H", 999))))
    else:  # an image of 2^32-1 bytes: no slot takes it
        c.sendall(frames.frame(frames.WELCOME, b"\x01\x00\x00\x00") +
                  frames.frame(frames.OFFER, b"\x42" * 32 + struct.pack("<II", 0xFFFFFFFF, 0) +
                               frames.tlv(3, b"9.0.0")))
        try:
            c.settimeout(2)
            c.recv(4096)  # its DECLINE
        except OSError:
            pass


frames.serve_devices(sys.argv[2], 8, answer)
PY
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [ -s "$WORK/fake.port" ] && break; sleep 0.05; done
FAKE=$(cat "$WORK/fake.port")
rc=0
timeout 20 "$TCPOTA" device --server "127.0.0.1:$FAKE" --flash "$WORK/d4" --id odd-why \
  --progress none 2> "$WORK/device4.log" || rc=$?
[ $rc -eq 0 ] && grep -q 'no update now, running 0\.0\.0: a reason this tcpota does not know (code 999: a newer server.s?); the server asks to check again in 4294967295 s (a device waits a week at most)$' "$WORK/device4.log" ||
  fail "an unknown reason and a wait over a week: exit $rc: $(cat "$WORK/device4.log")"
"$TCPOTA" device --server "127.0.0.1:$FAKE" --flash "$WORK/d4" --id odd-why --check-interval 60 \
  --progress none 2> "$WORK/device5.log" &
DEV_PID=$!
PIDS+=("$DEV_PID")
wait_line "$WORK/device5.log" 'next check-in in [0-9.]+ [a-z]+ \(the server asked for 604800 s or more: a week at most; each device waits up to 20 % longer, so that a fleet comes back spread out\)$'
kill -TERM "$DEV_PID"
wait "$DEV_PID" || true
rc=0
timeout 20 "$TCPOTA" device --server "127.0.0.1:$FAKE" --flash "$WORK/d4" --id odd-why \
  --progress none --max-attempts 2 --backoff-min-ms 50 --backoff-max-ms 100 2> "$WORK/device6.log" || rc=$?
grep -q 'no slot this device can have takes it (--slot-size goes up to 4294963200), so only a smaller image is a new offer$' "$WORK/device6.log" ||
  fail "an offer no slot takes: exit $rc: $(cat "$WORK/device6.log")"
ok "an unknown reason is said with its code; a RETRY_AFTER over a week is said as a week at most; an offer no slot takes is said so"

# ---- a check-in agent outlives failures --------------------------------
# With --check-interval a device is an agent: one refusal (ERROR DENIED,
# which anyone can forge over plain TCP) or a server gone for longer than
# its attempts ended it, for good (a hostile trial: at once, or after a
# minute). Each is said, then the next check-in comes, with all its
# attempts again.
python3 - "$(dirname "$0")" "$WORK/deny.port" <<'PY' &
import struct, sys
sys.path.insert(0, sys.argv[1])
import frames
frames.serve_devices(sys.argv[2], 3, lambda c, n: c.sendall(
    frames.frame(frames.WELCOME, b"\x01\x00\x00\x00") +
    frames.frame(frames.ERROR, struct.pack("<H", 13) + frames.tlv(0x08, b"forged"))))
PY
DENY_PID=$!
PIDS+=("$DENY_PID")
for ((i = 0; i < 100; i++)); do [ -s "$WORK/deny.port" ] && break; sleep 0.05; done
"$TCPOTA" device --server "127.0.0.1:$(cat "$WORK/deny.port")" --flash "$WORK/d7" --id agent-7 \
  --check-interval 1 --max-attempts 2 --backoff-min-ms 50 --backoff-max-ms 100 --progress none \
  2> "$WORK/device7.log" &
DEV_PID=$!
PIDS+=("$DEV_PID")
# Three refusals (the fake's three connections), then the fake is gone:
# connections refused until the attempts run out, at least twice.
for ((i = 0; i < 300; i++)); do
  [ "$(grep -c 'checking in again after --check-interval' "$WORK/device7.log" || true)" -ge 2 ] && break
  sleep 0.05
done
[ "$(grep -c "the server refused this device (session failed: the server reported: not allowed: forged); retrying would be refused again; trying at the next check-in all the same (over plain TCP anyone can forge a refusal)" "$WORK/device7.log")" -eq 3 ] ||
  fail "three refusals were not each followed by a check-in: $(cat "$WORK/device7.log")"
[ "$(grep -c "gave up after 2 attempts without progress: .*; checking in again after --check-interval$" "$WORK/device7.log")" -ge 2 ] ||
  fail "a server gone did not leave the agent checking in with 2 attempts each time: $(cat "$WORK/device7.log")"
kill -0 "$DEV_PID" 2> /dev/null || fail "the agent ended: $(tail -3 "$WORK/device7.log")"
kill -TERM "$DEV_PID"
rc=0
wait "$DEV_PID" || rc=$?
[ $rc -eq 143 ] || fail "the agent exited $rc on SIGTERM, expected 143"
ok "with --check-interval a refusal or a server gone is said, then the next check-in comes (2 attempts each)"
