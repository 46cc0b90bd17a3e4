#!/usr/bin/env bash
# A device resumes its TLS session on its next connection: the host device
# keeps the server's ticket in DIR/tls-session (0600) and offers it, so a
# check-in costs a resumed handshake instead of a full one. A damaged file,
# a FIFO in its place or a server that no longer knows the ticket only cost
# a full handshake, whose session then replaces the kept one.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"
q() { "$@" > /dev/null 2>&1 || fail "openssl: $*"; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.pem \
  -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
chmod 600 srv.key
make_image img 100000
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key
# run NAME: one connection of the device in dev/ (its stderr in NAME.log).
run() {
  timeout 30 "$T" device --server "localhost:$SERVER_PORT" --flash dev --id tls-dev --ca srv.pem \
    --max-attempts 1 2> "$1.log" || fail "device run $1 failed: $(tail -2 "$1.log")"
}
# handshakes KIND: how many TLS handshakes of KIND (full / resumed session) the server logged.
handshakes() { grep -c "TLS handshake done ($1)" server.log || true; }

# delta RUN: run it, then F and R are the full and resumed handshakes it cost.
delta() {
  local f0 r0
  f0=$(handshakes full) r0=$(handshakes 'resumed session')
  run "$1"
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
stop_server
ok "a server with new ticket keys: a full handshake, then resumed again"
