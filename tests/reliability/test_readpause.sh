#!/usr/bin/env bash
# Replies that pile up unread stop the server from reading. A legacy device
# asks for the last package again (req1, 9 bytes) as fast as it can and never
# reads: each request costs the server a 500-byte answer, so a server that
# kept reading would queue sixty times what the peer sends (a gigabyte for
# 16 MB of requests). The server must stop reading once its queue holds
# OUT_HIGH + READ_SLACK (server_internal.h), so the peer's sends block after
# at most what the sockets' buffers take; its memory stays bounded, and the
# idle timeout then ends the connection with the reason in the log.
source "$(dirname "$0")/../e2e/lib.sh"
TIMEOUT=3
# The flood stops at this many bytes of requests. A pausing server stops
# taking them after what the kernel buffers between the two sockets (the
# peer's send buffer is set small; the server's receive buffer does not grow
# while it does not read): measured below 300 kB.
LIMIT=4000000
MAX_RSS_KB=${TCPOTA_READPAUSE_MAX_RSS_KB:-32768}
if [ "${TCPOTA_SANITIZED:-0}" = 1 ]; then MAX_RSS_KB=$((MAX_RSS_KB * 8)); fi

make_image "$WORK/img" 300000
start_server "$WORK/img" 2.0.0 --idle-timeout "$TIMEOUT"
base=$(sed -nE 's/^VmRSS:[[:space:]]+([0-9]+) kB/\1/p' "/proc/$SERVER_PID/status")

python3 - "$SERVER_PORT" "$LIMIT" > "$WORK/flood.out" 2>&1 <<'PY' &
import socket, sys, time
port, limit = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.setblocking(False)
s.send(b"req0\r\n\r\n")
chunk = b"req1\r\n\r\n" * 455
sent, last = 0, time.monotonic()
# Until the limit, or until no byte was taken for a second (blocked).
while sent < limit and time.monotonic() - last < 1.0:
    try:
        n = s.send(chunk)
        sent += n
        last = time.monotonic()
    except BlockingIOError:
        time.sleep(0.01)
print(s.getsockname()[1], "blocked" if sent < limit else "not-blocked", sent, flush=True)
time.sleep(60) # connected, never reading: the server must end it
PY
flood=$!
PIDS+=("$flood")
wait_line "$WORK/flood.out" '^[0-9]+ ' 30
read -r port state sent < "$WORK/flood.out"
hwm=$(sed -nE 's/^VmHWM:[[:space:]]+([0-9]+) kB/\1/p' "/proc/$SERVER_PID/status")
[ "$state" = blocked ] || fail "the server kept reading a peer that does not read its answers: it took $sent bytes of req1 (peak memory $hwm kB)"
[ "$hwm" -le "$MAX_RSS_KB" ] || fail "server peak memory $hwm kB over $MAX_RSS_KB kB during a req1 flood"
wait_line "$WORK/server.log" "127\\.0\\.0\\.1:$port\\] idle for $TIMEOUT s \\(not reading what we send\\); closing" 10
kill "$flood" 2>/dev/null || true
stop_server
ok "a req1 flood that never reads was blocked after $sent bytes; server memory $base kB at start, VmHWM $hwm kB"

# The same behind a streaming offer: a v1 peer accepts an image larger than
# the sockets' buffers, never reads, and sends 10 PINGs every 2 ms (70 kB/s).
# Each read holds a few dozen of them, and their PONGs queue behind the
# unread image: after READ_SLACK of PONGs (about 4 s) the server must stop
# reading, which shows as the peer's bytes waiting in the server's socket
# (its Recv-Q, read with ss). The idle timeout is longer than the test.
IDLE=20
WAIT_Q=65536 # about a second of the flood left unread (measured: 140 kB after 6 s)
make_image "$WORK/big" 8388608

# First, bursts: 200 PINGs in one write, 10 times a second. One read holds
# more PINGs than the session's reply buffer has room for PONGs (about a
# hundred); the server must take the replies out as it goes, not end the
# session with "no space".
start_server "$WORK/big" 3.0.0 --idle-timeout "$IDLE" --quiet
"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --pinger 1 --ping-ms 100 --ping-burst 200 --min-hold 2 --hold 2 \
  > "$WORK/burst.out" 2> "$WORK/burst.log" || fail "tcpota-hostile failed: $(cat "$WORK/burst.out")"
grep -q 'error: no space' "$WORK/server.log" && fail "a burst of 200 PINGs ended the session: $(grep -m1 'no space' "$WORK/server.log")"
grep -q 'closing' "$WORK/server.log" && fail "the server closed a peer sending bursts of PINGs: $(grep -m1 closing "$WORK/server.log")"
stop_server
ok "bursts of 200 PINGs in one write, 2 s: answered, the session kept"

# The flood stops after PING_FOR s (the peer stays, silent, never reading):
# then no byte may leave the sockets between it and the server, not even
# by the server's once-a-second read of a streaming connection's ACKs.
PING_FOR=9
start_server "$WORK/big" 3.0.0 --idle-timeout "$IDLE" --quiet
"$HOSTILE" --connect "127.0.0.1:$SERVER_PORT" --pinger 1 --ping-ms 2 --ping-burst 10 --min-hold 15 --hold 15 \
  --ping-for "$PING_FOR" --ports "$WORK/ports" > "$WORK/pinger.out" 2> "$WORK/pinger.log" &
pinger=$!
flood_start=$(date +%s.%N)
PIDS+=("$pinger")
wait_line "$WORK/pinger.log" 'connections open'
pport=$(awk '{print $2}' "$WORK/ports")
unread=0
for ((i = 0; i < 60 && unread < WAIT_Q; i++)); do
  sleep 0.25
  unread=$(ss -Htn state established "( sport = :$SERVER_PORT and dport = :$pport )" | awk '{print $1; exit}')
  unread=${unread:-0}
done
hwm=$(sed -nE 's/^VmHWM:[[:space:]]+([0-9]+) kB/\1/p' "/proc/$SERVER_PID/status")
grep -q 'error: no space' "$WORK/server.log" && fail "the PING flood ended in 'no space' instead of a read pause"
[ "$unread" -ge "$WAIT_Q" ] ||
  fail "the server kept reading PINGs whose PONGs piled up unread for 15 s (its Recv-Q: $unread bytes)"
# in_flight: the peer's bytes between it and the server (the server
# socket's Recv-Q and the peer socket's Send-Q).
in_flight() {
  local r s
  r=$(ss -Htn state established "( sport = :$SERVER_PORT and dport = :$pport )" | awk '{print $1; exit}')
  s=$(ss -Htn state established "( sport = :$pport and dport = :$SERVER_PORT )" | awk '{print $2; exit}')
  echo $((${r:-0} + ${s:-0}))
}
sleep "$(awk -v s="$flood_start" -v n="$(date +%s.%N)" -v f="$PING_FOR" 'BEGIN { d = s + f + 0.5 - n; print (d > 0 ? d : 0) }')"
before=$(in_flight)
sleep 3
after=$(in_flight)
[ "$after" -ge $((before - 512)) ] ||
  fail "the server read $((before - after)) bytes from a paused peer in 3 s (in flight: $before -> $after)"
kill "$pinger" 2>/dev/null || true
stop_server
ok "a paced PING flood behind an unread image: the server stopped reading ($unread bytes wait in its socket after $((i / 4)) s; after the flood, $before -> $after bytes in flight over 3 s); VmHWM $hwm kB"
