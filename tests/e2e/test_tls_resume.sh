#!/usr/bin/env bash
# A device resumes its TLS session on its next connection: the host device
# keeps the server's ticket in DIR/tls-session (0600) and offers it, so a
# check-in costs a resumed handshake instead of a full one. A damaged file,
# a FIFO in its place or a server that no longer knows the ticket only cost
# a full handshake, whose session then replaces the kept one. The session is
# offered only under the server name and port it was kept for, a symlink is
# never followed, and a handshake nobody answers times out.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"
server_cert
make_image img 100000
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key
# connect NAME: one connection of the device in dev/ (its stderr in NAME.log).
connect() {
  timeout 30 "$T" device --server "${DEV_HOST:-localhost}:$SERVER_PORT" --flash dev --id tls-dev --ca srv.pem \
    --max-attempts 1 2> "$1.log" || fail "device run $1 failed: $(tail -2 "$1.log")"
}
# handshakes KIND: how many TLS handshakes of KIND (full / resumed session) the server logged.
handshakes() { grep -c "TLS handshake done ($1)" server.log || true; }

# delta RUN: run it, then F and R are the full and resumed handshakes it cost.
delta() {
  local f0 r0
  f0=$(handshakes full) r0=$(handshakes 'resumed session')
  connect "$1"
  F=$(( $(handshakes full) - f0 )) R=$(( $(handshakes 'resumed session') - r0 ))
}

# The first run updates (one connection), reboots into the image and
# confirms it (a second connection: resumed already).
delta first
check_device dev img
[ -f dev/tls-session ] || fail "no TLS session kept in dev/tls-session"
[ "$(stat -c %a dev/tls-session)" = 600 ] || fail "dev/tls-session is not 0600"
[ "$F" = 1 ] && [ "$R" -ge 1 ] || fail "first run: want 1 full handshake, then resumed ones; got $F full, $R resumed"
delta second
[ "$F" = 0 ] && [ "$R" = 1 ] || fail "a check-in did not resume the kept session ($F full, $R resumed)"
ok "the next connection resumed the kept TLS session"

# A resumption skips the certificate: the kept session was verified with
# srv.pem, so a device given another CA must verify (and here fail), not
# resume it. The kept session stays for the CA that verified it.
mkdir other && (cd other && server_cert)
rc=0; timeout 30 "$T" device --server "localhost:$SERVER_PORT" --flash dev --id tls-dev \
  --ca other/srv.pem --max-attempts 1 2> otherca.log || rc=$?
[ $rc -ne 0 ] && grep -q "certificate verify failed" otherca.log ||
  fail "another --ca resumed the session verified with the first: rc $rc: $(cat otherca.log)"
! grep -q "connected to" otherca.log || fail "connected with another --ca: $(cat otherca.log)"
delta same-ca-again
[ "$F" = 0 ] && [ "$R" = 1 ] || fail "the first --ca's session was not resumed after the refusal ($F full, $R resumed)"
grep -q "TLS, resumed a session verified earlier with this --ca" same-ca-again.log ||
  fail "a resumed connection does not say so: $(grep 'connected to' same-ca-again.log)"
# The same path with other contents (a CA rotated in place): the session is
# the old CA's, named by what the file held, not by its path.
cp srv.pem srv.pem.keep
cp other/srv.pem srv.pem
rc=0; timeout 30 "$T" device --server "localhost:$SERVER_PORT" --flash dev --id tls-dev \
  --ca srv.pem --max-attempts 1 2> rotated.log || rc=$?
cp srv.pem.keep srv.pem
[ $rc -ne 0 ] && grep -q "certificate verify failed" rotated.log ||
  fail "a --ca replaced in place resumed the old CA's session: rc $rc: $(cat rotated.log)"
ok "a session is resumed only with the CA that verified it (by its contents, not its path), and the device says it resumed"

head -c 300 /dev/urandom > dev/tls-session
delta damaged
grep -q "kept TLS session .* is damaged" damaged.log || fail "a damaged session file was not reported: $(cat damaged.log)"
[ "$F" = 1 ] || fail "a damaged session file did not lead to a full handshake ($F full, $R resumed)"
delta after-damaged
[ "$F" = 0 ] && [ "$R" = 1 ] || fail "the session of the full handshake did not replace the damaged one"
ok "a damaged session file: said, a full handshake, then replaced"

rm dev/tls-session && mkfifo dev/tls-session
delta fifo
grep -q "is damaged or not a file" fifo.log || fail "a FIFO in place of the session file was not reported"
[ -f dev/tls-session ] && [ ! -p dev/tls-session ] || fail "the FIFO was not replaced by the new session"
ok "a FIFO in place of the session file: no hang, replaced"

# A restarted server has new ticket keys: the kept ticket is refused quietly.
stop_server
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key
delta restarted
[ "$F" = 1 ] || fail "a ticket the server cannot read did not fall back to a full handshake"
! grep -qi "error\|fail" restarted.log || fail "a stale ticket printed an error: $(cat restarted.log)"
delta after-restart
[ "$F" = 0 ] && [ "$R" = 1 ] || fail "the new server's session was not resumed"
ok "a server with new ticket keys: a full handshake, then resumed again"

# Bytes after the session: damaged, not a session with a tail.
printf 'x' >> dev/tls-session
delta trailing
grep -q "kept TLS session .* is damaged" trailing.log || fail "a session with a byte after it was not reported: $(cat trailing.log)"
[ "$F" = 1 ] && [ "$R" = 0 ] || fail "a session with a byte after it was resumed ($F full, $R resumed)"

# A symlink is neither read nor written through: in place of the session, it
# is not followed (a full handshake); in place of its temporary file, the
# file it points to stays as it was.
cp dev/tls-session good.session
rm dev/tls-session && ln -s ../good.session dev/tls-session
delta symlink
[ "$F" = 1 ] && [ "$R" = 0 ] || fail "the session behind a symlink was resumed ($F full, $R resumed)"
grep -q "cannot read the kept TLS session" symlink.log || fail "a symlink as the session was not reported: $(cat symlink.log)"
echo keep > victim
ln -s ../victim dev/tls-session.tmp
delta symlink-tmp
[ "$(cat victim)" = keep ] || fail "the session was written through the symlink dev/tls-session.tmp"
rm -f dev/tls-session.tmp
grep -q "is a symbolic link, which is never followed; remove it" symlink.log ||
  fail "a symlink as the session is not named one: $(cat symlink.log)"
ok "a session with bytes after it is damaged; a symlink is not followed, for reading or writing"

# A directory in its place cannot be replaced by rename(): said so, with what to do.
rm -f dev/tls-session && mkdir dev/tls-session
delta directory
grep -q "the kept TLS session .* is a directory; remove it" directory.log ||
  fail "a directory as the session file: $(cat directory.log)"
[ "$F" = 1 ] || fail "a directory as the session file: $F full handshakes"
rmdir dev/tls-session
delta after-directory
ok "a directory in place of the session file is named, with what to do"

# The session is kept for the name the device was given: the same server
# as 127.0.0.1 is not offered the one of localhost (resuming skips checking
# the certificate for the name), and quietly: it is not damaged.
delta localhost
# That of localhost:PORT0 (this name and port, and a digit more) is
# another server's too.
python3 - "$SERVER_PORT" <<'PY' || fail "the kept session's first line names no localhost:$SERVER_PORT"
import sys
b = open("dev/tls-session", "rb").read()
at = b":%s anchors=" % sys.argv[1].encode()
assert b.split(b"\n", 1)[0].count(at) == 1
open("dev/tls-session", "wb").write(b.replace(at, b":%s0 anchors=" % sys.argv[1].encode(), 1))
PY
delta other-port
[ "$F" = 1 ] && [ "$R" = 0 ] || fail "the session kept for localhost:${SERVER_PORT}0 was offered to localhost:$SERVER_PORT ($F full, $R resumed)"
! grep -q "damaged" other-port.log || fail "the session of another port was called damaged: $(cat other-port.log)"
DEV_HOST=127.0.0.1 delta other-name
[ "$F" = 1 ] && [ "$R" = 0 ] || fail "the session kept for localhost was offered to 127.0.0.1 ($F full, $R resumed)"
! grep -q "damaged" other-name.log || fail "the session of another name was called damaged: $(cat other-name.log)"
stop_server
ok "a session kept for one server name is not offered under another"

# A server that takes the connection and never answers the handshake: the
# device gives up after --timeout-ms, it does not wait for ever.
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True)
c, _ = s.accept(); time.sleep(30)' > mute.port &
PIDS+=($!)
for _ in $(seq 50); do [ -s mute.port ] && break; sleep 0.1; done
rc=0; timeout 10 "$T" device --server "127.0.0.1:$(cat mute.port)" --flash mute --ca srv.pem --timeout-ms 500 \
  --max-attempts 1 2> mute.log || rc=$?
[ $rc -eq 1 ] && grep -q "TLS handshake timed out" mute.log || fail "a TLS handshake nobody answers: exit $rc: $(cat mute.log)"
ok "a TLS handshake nobody answers times out after --timeout-ms"

# A handshake the server ends (it read the ClientHello and closed) is no
# refusal of its certificate: retried as a cut, unlike a certificate the
# device refuses (which stops at once: test_security.sh).
python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4); print(s.getsockname()[1], flush=True)
for _ in range(3):
    c, _ = s.accept(); c.recv(4096); c.close()' > closer.port &
PIDS+=($!)
for _ in $(seq 50); do [ -s closer.port ] && break; sleep 0.1; done
rc=0; timeout 20 "$T" device --server "127.0.0.1:$(cat closer.port)" --flash closer --ca srv.pem \
  --max-attempts 3 --backoff-min-ms 100 --backoff-max-ms 100 2> closer.log || rc=$?
[ $rc -eq 1 ] && [ "$(grep -c 'connecting to' closer.log)" -eq 3 ] && grep -q "gave up after 3 attempts" closer.log &&
  ! grep -q "not retrying" closer.log || fail "a handshake the server closed: exit $rc: $(cat closer.log)"
ok "a handshake the server closes is retried, not taken for a refused certificate"
