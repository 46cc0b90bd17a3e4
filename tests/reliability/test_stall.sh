#!/usr/bin/env bash
# A server whose loop runs late (stopped, swapped out, starved of CPU) for
# longer than the idle timeout must not call a peer idle whose bytes arrived
# meanwhile and wait unread in its socket, or that read what it was sent:
# libevent sees an expired timeout before the socket's data or room, and the
# once-a-second sweep judges ACK progress before the loop has read the ACKs.
# Here the server is stopped (SIGSTOP) for longer than its idle timeout while
#  1. 300 legacy devices each ask for a package every 0.5 s, and
#  2. 20 `tcpota device`s download 1 MiB through a proxy that limits each
#     to 100 kB/s, so their ACKs keep coming while the server is stopped, and
#  3. 2 devices download 12 MiB each, the server's writes waiting for room, and
#  4. a device's HELLO arrives after its connect, while the server is stopped
#     (5. inside TLS: its ClientHello; 6. on the HTTPS download listener).
# No peer may be closed as idle, and every device finishes byte-exact.
source "$(dirname "$0")/../e2e/lib.sh"

make_image "$WORK/img" 300000
start_server "$WORK/img" 2.0.0 --idle-timeout 2 --quiet
python3 - "$SERVER_PORT" 300 7 "$SERVER_PID" > "$WORK/legacy.out" 2>&1 <<'PY' &
import os, selectors, signal, socket, sys, time
port, n, secs, server = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sel, socks, closed = selectors.DefaultSelector(), [], set()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
print("connected; rounds from %s UTC" % time.strftime("%H:%M:%S", time.gmtime()), flush=True)
t0, nxt, rounds, stopped, late = time.monotonic(), 0, 0, None, 0.0
while time.monotonic() - t0 < secs:
    if time.monotonic() >= nxt:
        if nxt:  # how late this process itself asks (a loaded machine): said at the end
            late = max(late, time.monotonic() - nxt)
        for s in socks:
            if s not in closed:
                try:
                    s.send(b"req0\r\n\r\n")
                except OSError as e:  # said at the end: the server then rightly finds it idle
                    closed.add(s)
                    print("send failed at %.2f s: %s" % (time.monotonic() - t0, e), flush=True)
        nxt, rounds = time.monotonic() + 0.5, rounds + 1
        if rounds == 3:
            # Stopped while it reads this round: mid-turn of its loop.
            os.kill(server, signal.SIGSTOP)
            stopped = time.monotonic()
            print("stopped at %.2f s" % (stopped - t0), flush=True)
    if stopped and time.monotonic() - stopped >= 3:
        os.kill(server, signal.SIGCONT)
        print("stopped for %.2f s" % (time.monotonic() - stopped), flush=True)  # 3 unless starved
        stopped = None
    for key, _ in sel.select(0.05):
        try:
            if not key.fileobj.recv(65536):
                raise OSError
        except BlockingIOError:
            pass
        except OSError as e:
            closed.add(key.fileobj)
            sel.unregister(key.fileobj)
            print("closed by the server at %.2f s: %s" % (time.monotonic() - t0, e or "end of stream"), flush=True)
print("closed", len(closed), flush=True)
print("late %.2f s at most" % late, flush=True)
PY
legacy=$!
PIDS+=("$legacy")
wait "$legacy" || fail "the legacy devices did not run: $(cat "$WORK/legacy.out")"
idle=$(grep -c 'idle for' "$WORK/server.log" || true)
[ "$idle" -eq 0 ] || fail "$idle legacy devices closed as idle after the server was stopped 3 s (idle timeout 2 s): $(grep -m1 'idle for' "$WORK/server.log"); the devices: $(tr '\n' ' ' < "$WORK/legacy.out")"
grep -qx 'closed 0' "$WORK/legacy.out" || fail "legacy devices lost their connections: $(tr '\n' ' ' < "$WORK/legacy.out")"
stop_server
ok "300 legacy devices asking every 0.5 s kept their connections across a 3 s stop of the server (idle timeout 2 s)"

# downloads_through_stop PREFIX N IMAGE BEFORE STOPPED WHAT [DEVICE ARGS...]:
# N devices download IMAGE through the proxy ($PROXY_PORT); the server is
# stopped BEFORE s after they start, for STOPPED s. Every device must finish
# byte-exact, none closed as idle.
downloads_through_stop() {
  local prefix=$1 n=$2 img=$3 before=$4 stopped=$5 what=$6 i p idle pids=()
  shift 6
  for i in $(seq 1 "$n"); do
    "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/$prefix$i" --id "$prefix-$i" \
      --progress none --backoff-min-ms 100 --backoff-max-ms 1000 "$@" 2> "$WORK/$prefix$i.out" &
    pids+=($!)
  done
  PIDS+=("${pids[@]}")
  sleep "$before"
  kill -STOP "$SERVER_PID"
  sleep "$stopped"
  kill -CONT "$SERVER_PID"
  for p in "${pids[@]}"; do wait "$p" || fail "a device ($what) failed after the server's stop"; done
  check_devices "$img" $(seq -f "$WORK/$prefix%g" 1 "$n")
  idle=$(grep -c 'idle for' "$WORK/server.log" || true)
  [ "$idle" -eq 0 ] || fail "$idle devices ($what) closed as idle after the server was stopped $stopped s: $(grep -m1 'idle for' "$WORK/server.log")"
}

N=20
make_image "$WORK/img1m" 1048576
start_server "$WORK/img1m" 3.0.0 --idle-timeout 3 --quiet
start_proxy proxy "$SERVER_PORT" --rate 100000 --quiet
downloads_through_stop stall "$N" "$WORK/img1m" 2 4.5 "idle timeout 3 s"
stop_server
ok "$N devices downloading at 100 kB/s through a 4.5 s stop of the server (idle timeout 3 s): none closed as idle, all byte-exact"

# 3. A stop while the server's writes wait for room: 12 MiB images, more than the
# kernel's buffers hold, so each connection's write waits on its socket when the
# server stops. The devices read on (through the proxy) while it is stopped; its
# write timeouts expire unseen, and libevent then reports them alone, though the
# sockets have had room since. Not idle either, in the clear or inside TLS (whose
# writes go through a bufferevent).
# In the plain pass only: under ASan+UBSan, on a machine running four tests,
# a device has stalled past the idle timeout with no stop at all (2 s, then
# 4 s: its slot writes, 12 MiB), which this part cannot tell from the fault
# it looks for; the server's logic it checks is the same in both builds.
(cd "$WORK" && server_cert) # parts 5 and 6 need it too
N=2
if [ "${TCPOTA_SANITIZED:-0}" = 1 ]; then
  echo "skip: part 3 (12 MiB through a stop) runs in the plain pass only"
else
make_image "$WORK/img12m" $((12 * 1048576))
for mode in plain tls; do
  tls=() dev_tls=()
  if [ $mode = tls ]; then
    tls=(--tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key")
    dev_tls=(--ca "$WORK/srv.pem")
  fi
  start_server "$WORK/img12m" 4.0.0 --idle-timeout 4 --quiet "${tls[@]}"
  start_proxy "proxy-$mode" "$SERVER_PORT" --rate 4000000 --queue-limit 16384 --quiet
  downloads_through_stop "$mode" "$N" "$WORK/img12m" 1 5 "$mode, idle timeout 4 s" \
    --slot-size $((16 * 1048576)) "${dev_tls[@]}"
  stop_server
  kill "$PROXY_PID"
done
ok "$N devices in the clear and $N inside TLS whose server stopped 5 s with 12 MiB images on their way (idle timeout 4 s): none closed as idle, all byte-exact"
fi

# 4. A HELLO that came in time, read late: a device connects, the server
# stops before it has read a byte, the HELLO arrives, and the server runs
# again after more than the idle timeout since the connect. Its "no HELLO
# within 2 s" would judge the loop, not the device: it is answered.
start_server "$WORK/img" 2.0.0 --idle-timeout 2 --quiet
python3 - "$SERVER_PORT" "$SERVER_PID" "$E2E" > "$WORK/late-hello.out" 2>&1 <<'PY' ||
import os, signal, socket, sys, time
sys.path.insert(0, sys.argv[3])
import frames as F
port, pid = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), 5)
time.sleep(0.3) # accepted: its 2 s run from here
os.kill(pid, signal.SIGSTOP)
try:
    s.sendall(F.hello(b"late-hello"))
    time.sleep(3)
finally:
    os.kill(pid, signal.SIGCONT)
s.settimeout(5)
t, _ = F.Reader(s).next()
if t != F.WELCOME:
    sys.exit("no WELCOME first: type %d" % t)
print("welcomed")
PY
  fail "a HELLO that came in time was not answered after the server's stop: $(cat "$WORK/late-hello.out") $(grep -m1 'HELLO' "$WORK/server.log")"
! grep -q 'no HELLO within' "$WORK/server.log" || fail "$(grep -m1 'no HELLO within' "$WORK/server.log")"
stop_server
ok "a HELLO that came in time, read after a 3 s stop of the server (idle timeout 2 s), is answered"

# 5. The same inside TLS, where one deadline from the connect covers the
# handshake and the HELLO (conn_check_deadline, judged by the sweep): the
# ClientHello arrives while the server is stopped. After the stop the server
# answers it, then its late sweep runs before the device's next flight can
# come: "TLS handshake not finished within 3 s" would judge the loop.
start_server "$WORK/img" 2.0.0 --idle-timeout 3 --quiet --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key"
python3 "$(dirname "$0")/late_tls.py" "$SERVER_PORT" "$SERVER_PID" "$WORK/srv.pem" device "$E2E" > "$WORK/late-tls.out" 2>&1 ||
  fail "a TLS handshake begun in time was not finished after the server's stop: $(cat "$WORK/late-tls.out") $(grep -m1 'within' "$WORK/server.log")"
! grep -q 'within 3 s of connecting' "$WORK/server.log" || fail "$(grep -m1 'within 3 s of connecting' "$WORK/server.log")"
stop_server
ok "a TLS handshake and HELLO begun in time, read after a 4 s stop of the server (idle timeout 3 s), are answered"

# 6. The same on the HTTPS download listener (--ota-listen, its own deadline
# to a whole request, the handshake included): a ClientHello that came
# during the stop is answered and the request after it too.
source "$E2E/fleet_lib.sh"
start_fleet --ota-listen 127.0.0.1:0 --idle-timeout 3 --quiet --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key"
OTA_PORT=$(sed -nE 's/.*HTTPS downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
[ -n "$OTA_PORT" ] || fail "no HTTPS download port in: $(grep 'listening on' "$WORK/server.log")"
python3 "$(dirname "$0")/late_tls.py" "$OTA_PORT" "$SERVER_PID" "$WORK/srv.pem" https "$E2E" > "$WORK/late-https.out" 2>&1 ||
  fail "an HTTPS request begun in time was not answered after the server's stop: $(cat "$WORK/late-https.out") $(grep -m1 'within' "$WORK/server.log")"
! grep -q 'within 3 s of connecting' "$WORK/server.log" || fail "$(grep -m1 'within 3 s of connecting' "$WORK/server.log")"
stop_fleet
ok "an HTTPS download request begun in time, read after a 4 s stop of the server (idle timeout 3 s), is answered: $(cat "$WORK/late-https.out")"
