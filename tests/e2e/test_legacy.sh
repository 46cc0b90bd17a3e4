#!/usr/bin/env bash
# Clients that behave exactly like the sample's (one 768-byte recv per package,
# req1 resends) get the image byte-exact from tcpota serve: one, then 20 at once,
# while a tcpota v1 device updates from the same port.
source "$(dirname "$0")/lib.sh"

make_image "$WORK/img" 300000
start_server "$WORK/img" 2.0.0

"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/one" --req1-every 7 > "$WORK/one.log" 2>&1 ||
  fail "legacy client failed"
cmp "$WORK/one" "$WORK/img" || fail "legacy client got other bytes"
grep -qE ' [1-9][0-9]* req1' "$WORK/one.log" || fail "no req1 was exercised"
ok "one legacy client with req1 resends"
# A client that cannot connect fails and leaves no file, nor empties one.
echo keep > "$WORK/kept"
rc=0; "$LEGACY" --server 127.0.0.1:1 --out "$WORK/none" --timeout 5 > "$WORK/none.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy client without a server succeeded"
[ ! -e "$WORK/none" ] || fail "a legacy client that could not connect left $(stat -c %s "$WORK/none") bytes in a file"
"$LEGACY" --server 127.0.0.1:1 --out "$WORK/kept" --timeout 5 > /dev/null 2>&1 || true
[ "$(cat "$WORK/kept")" = keep ] || fail "a legacy client that could not connect emptied its --out file"
ok "a legacy client that cannot connect writes no file"
rc=0; "$LEGACY" --server --out "$WORK/x" > "$WORK/noval.log" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "^tcpota-legacy-client: --server needs a value (got the option --out)$" "$WORK/noval.log" ||
  fail "--server without a value: exit $rc: $(cat "$WORK/noval.log")"

"$TCPOTA" device --server "127.0.0.1:$SERVER_PORT" --flash "$WORK/v1" --id v1-dev \
  2> "$WORK/v1.log" &
v1=$!
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/many" --clients 20 --req1-every 11 \
  > "$WORK/many.log" 2>&1 || fail "20 legacy clients at once failed"
for i in $(seq 0 19); do
  cmp "$WORK/many.$i" "$WORK/img" || fail "legacy client $i got other bytes"
done
wait "$v1" || fail "v1 device beside the legacy clients failed"
check_device "$WORK/v1" "$WORK/img"
ok "20 legacy clients at once and a v1 device on the same port"
stop_server
grep -q '21 legacy devices served' "$WORK/server.log" || fail "summary does not count 21 legacy devices"

# A request split across two segments is answered once, when whole; the
# last package asked for again (req1) goes again; and the device is counted
# once, however often its last package goes.
make_image "$WORK/small" 100
start_server "$WORK/small" 2.0.0
exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT"
printf 'req' >&3
sleep 0.3
printf '0\r\n\r\n' >&3
sleep 0.3
printf 'req1\r\n\r\n' >&3
timeout 2 cat <&3 > "$WORK/small.reply" || true
exec 3>&-
for i in 1 2; do printf 'total: 100\r\nlength: 100\r\n\r\n'; cat "$WORK/small"; done > "$WORK/small.want"
cmp "$WORK/small.reply" "$WORK/small.want" ||
  fail "a split req0 then a req1 of the last package got other bytes: $(head -c 80 "$WORK/small.reply" | tr -cd '[:print:]')"
stop_server
[ "$(grep -c 'sent the last package' "$WORK/server.log")" -eq 1 ] ||
  fail "the last package sent again was logged as another device done"
grep -q '; 1 legacy device served' "$WORK/server.log" || fail "summary does not count 1 legacy device (in the singular): $(grep summary "$WORK/server.log")"
ok "a split request answered once; the last package again, its device counted once"

# The image file rewritten in place while it is served (cp new.bin fw.bin):
# served from the file itself, a legacy client got the old image's first
# bytes and the new one's rest under the old total, and a shorter file
# stopped the server with SIGBUS. The server serves the copy it read and
# hashed until a SIGHUP loads the new file.
make_image "$WORK/live" 100000
cp "$WORK/live" "$WORK/live.orig"
start_server "$WORK/live" 2.0.0
for what in shorter same-size; do
  "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/live.got" --stop-and-wait-ms 10 \
    > "$WORK/live.log" 2>&1 & lp=$!
  PIDS+=("$lp")
  sleep 0.5
  if [ "$what" = shorter ]; then head -c 40000 /dev/urandom > "$WORK/live"; else head -c 100000 /dev/urandom > "$WORK/live"; fi
  wait "$lp" || fail "the legacy client failed with the image file made $what under it: $(cat "$WORK/live.log")"
  kill -0 "$SERVER_PID" 2> /dev/null || fail "the server died with the image file made $what under it"
  cmp "$WORK/live.got" "$WORK/live.orig" || fail "the image file made $what under a transfer: the legacy client got other bytes"
done
stop_server
ok "an image file rewritten in place while served: the server goes on with the bytes it loaded"

# A legacy peer that asks for nothing new (req1 after req1, each of which
# kept the socket's timeout away: a hostile trial's held 40 s under
# --idle-timeout 3) is closed once the idle timeout passes without a
# package it had not had; one that asks on gets every package.
make_image "$WORK/rq" 4096
start_server "$WORK/rq" 2.0.0 --idle-timeout 2
# held REQ FIRST: seconds until the server closes a peer that sends FIRST
# req0s, then REQ every 0.5 s (at most 15 s).
held() {
  python3 - "$SERVER_PORT" "$1" "$2" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
t0 = time.time()
for _ in range(int(sys.argv[3])):
    s.sendall(b"req0\r\n\r\n")
    time.sleep(0.05)
try:
    while time.time() - t0 < 15:
        time.sleep(0.5)
        s.sendall(sys.argv[2].encode() + b"\r\n\r\n")
        if not s.recv(65536):
            break
except OSError:
    pass
print(round(time.time() - t0))
PY
}
held=$(held req1 1)
[ "$held" -le 8 ] || fail "a legacy peer sending req1 only was held $held s under --idle-timeout 2"
grep -qE '\[legacy [^]]*\] legacy device: no package it had not had for 2 s \(--idle-timeout; 512 of 4096 bytes sent\); closing' "$WORK/server.log" ||
  fail "the req1-only peer's close was not said: $(grep 'legacy device' "$WORK/server.log" | tail -3)"
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out "$WORK/rq.got" --stop-and-wait-ms 300 > "$WORK/rq.log" 2>&1 ||
  fail "a slow legacy client (a package every 0.3 s) failed under --idle-timeout 2: $(cat "$WORK/rq.log")"
cmp "$WORK/rq.got" "$WORK/rq" || fail "the slow legacy client got other bytes"
# One that has every package and asks on (req0: "length: 0") is closed too,
# not as a failure.
done_held=$(held req0 8)
[ "$done_held" -le 8 ] || fail "a legacy peer with the whole image asking on was held $done_held s"
grep -qE '\[legacy [^]]*\] legacy device: sent the whole image, and it has asked for nothing new in 2 s \(--idle-timeout\); closing' "$WORK/server.log" ||
  fail "the done peer's close was not said: $(grep 'legacy device' "$WORK/server.log" | tail -3)"
stop_server
ok "a legacy peer asking for nothing new is closed after --idle-timeout ($held s); a slow one that asks on is served"
