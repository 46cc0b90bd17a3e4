#!/usr/bin/env bash
# A device authenticates inside TLS: its HMAC covers the TLS exporter of the
# session (codec.h, TCPOTA_TLS_BINDING_LABEL), which the server checks, and a
# device with a wrong secret is refused at once (ERROR(DENIED), not a failed
# TLS handshake after a wait). Needs both sides of the channel binding: the
# server's (server/conn.c, on_auth) and the device's (core/src/device.c).
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"
q() { "$@" > /dev/null 2>&1 || fail "openssl: $*"; }
server_cert
make_image img 150000
$T keygen --device-secret --out dev.secret 2>/dev/null
$T keygen --device-secret --out wrong.secret 2>/dev/null
echo "tls-dev $(cut -d' ' -f3 dev.secret)" > secrets
echo "tls-bad $(cut -d' ' -f3 dev.secret)" >> secrets
chmod 600 secrets
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key --require-auth --auth-file secrets
# The start line says that the device port is TLS (before: only the
# certificate's lines did, and a plain device's failure was all one saw).
grep -qE "listening on 127\.0\.0\.1:$SERVER_PORT, devices over TLS, must authenticate, image 2\.0\.0 " server.log ||
  fail "the listening line does not say TLS and --require-auth: $(grep 'listening on' server.log)"
"$T" device --server "localhost:$SERVER_PORT" --flash good --id tls-dev --secret dev.secret --ca srv.pem \
  --max-attempts 1 2> good.log || fail "a device with the right secret was not served inside TLS"
check_device good img
grep -q 'authenticated: offer 2.0.0' server.log || fail "no authentication logged"
! grep -q 'did not ask this device to authenticate' good.log || fail "a challenged device warned: $(cat good.log)"
t0=$(date +%s)
rc=0; "$T" device --server "localhost:$SERVER_PORT" --flash bad --id tls-bad --secret wrong.secret --ca srv.pem \
  --max-attempts 1 2> bad.log || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] || fail "a device with a wrong secret was served inside TLS"
[ "$s" -le 5 ] || fail "a device with a wrong secret waited $s s for its refusal"
grep -q 'authentication failed: wrong answer' server.log || fail "the wrong secret was not logged"
! grep -q 'TLS handshake failed' bad.log || fail "a wrong secret showed up as a failed TLS handshake"
# A plain device (no --ca) on the TLS port is told why in a plaintext
# ERROR(DENIED) (before: closed without a word, and the device retried 20
# times): it stops at once and says so, --quiet or not, since it must be
# configured for TLS.
rc=0; t0=$(date +%s)
"$T" device --server "localhost:$SERVER_PORT" --flash plain --id tls-dev --secret dev.secret \
  --quiet 2> plain.log || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -eq 1 ] || fail "a plain device on the TLS port exited $rc, expected 1"
[ "$s" -le 5 ] || fail "a plain device on the TLS port took $s s to stop"
grep -q "the server refused this device (session failed: the server reported: not allowed: this port speaks TLS only: connect with TLS (tcpota device --ca <the server's CA certificate>; CONFIG_TCPOTA_TLS on ESP-IDF)); retrying would be refused again" plain.log ||
  fail "a plain device on the TLS port was not told why: $(cat plain.log)"
grep -q 'plain tcpota client on the TLS port: the device must use TLS (or serve without --tls-cert); told so (ERROR DENIED), closing' server.log ||
  fail "the server did not name the plain client: $(grep plain server.log)"
# Any peer can repeat that line: at most 10 a second, then how many were not.
python3 - "$SERVER_PORT" "$E2E" <<'PY' || fail "plain HELLOs on the TLS port: not each told ERROR(DENIED)"
import socket, struct, sys
sys.path.insert(0, sys.argv[2])
import frames
for i in range(30):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    s.sendall(frames.hello(b"flood-%d" % i))
    kind, payload = frames.Reader(s).next()
    assert kind == frames.ERROR and struct.unpack("<H", payload[:2])[0] == 13, (kind, payload)
    assert b"speaks TLS only" in payload, payload
    s.close()
PY
sleep 1.1
python3 - "$SERVER_PORT" "$E2E" <<'PY' || fail "a plain HELLO after the flood"
import socket, sys
sys.path.insert(0, sys.argv[2])
import frames
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(frames.hello(b"after"))
frames.Reader(s).next()
PY
n=$(grep -c 'plain tcpota client on the TLS port' server.log)
[ "$n" -le 12 ] || fail "$n lines for 32 plain clients on the TLS port: not rate-limited"
wait_line server.log 'plain tcpota client on the TLS port: .* \(and [0-9]+ more plain clients on the TLS port not logged since the last such line\)' 3
# A byte altered on the way inside TLS: the record fails its MAC, which the
# device says (it read "recv: Connection reset by peer", as if the server
# had reset it), and it resumes to a byte-exact image.
start_proxy flip "$SERVER_PORT" --flip-at 60000
"$T" device --server "localhost:$PROXY_PORT" --flash flipped --id tls-dev --secret dev.secret --ca srv.pem \
  --backoff-min-ms 50 2> flipped.log || fail "a TLS device behind a flipping proxy failed: $(cat flipped.log)"
grep -q 'flipped' flip.log || fail "the proxy did not flip a byte"
grep -q "recv: a TLS record failed its check (bytes altered on the way, or a TLS error)" flipped.log ||
  fail "an altered TLS record was not named: $(grep -i 'recv\|retry' flipped.log)"
check_device flipped img
stop_server
ok "inside TLS: bound answer served; a wrong secret is told to check it; an altered record named"

# The other way round: a TLS device (--ca) on a plain port. The server
# answers its ClientHello with a line of text, which no TLS record starts
# with, and the device says the port does not speak TLS and stops (before:
# a close, read as "or at its limits?", retried 20 times).
start_server img 2.0.0
rc=0; t0=$(date +%s)
"$T" device --server "localhost:$SERVER_PORT" --flash tlsplain --ca srv.pem --quiet 2> tlsplain.log || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -eq 1 ] || fail "a TLS device on a plain port exited $rc, expected 1: $(cat tlsplain.log)"
[ "$s" -le 5 ] || fail "a TLS device on a plain port took $s s to stop"
grep -q "TLS handshake failed: the server answered without TLS: this port does not speak TLS (a plain tcpota port: leave out --ca, or give its server --tls-cert; or not tcpota's device port at all); not retrying: the same port would answer so again" tlsplain.log ||
  fail "a TLS device on a plain port was not told why: $(cat tlsplain.log)"
[ "$(grep -c 'a TLS client, but this server runs without --tls-cert' server.log)" -eq 1 ] ||
  fail "a TLS device on a plain port connected other than once: $(grep 0x16 server.log)"
stop_server
ok "a TLS device on a plain port is told at once that the port does not speak TLS, and stops"

# A TLS server that closes without close_notify (OpenSSL 3 reports it as an
# error, "unexpected eof"): a close, not a record that failed its check.
python3 - > closer.port 2> closer.log <<'PY' &
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("srv.pem", "srv.key")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    c, _ = s.accept()
    t = ctx.wrap_socket(c, server_side=True)
    t.recv(4096)
    t.close() # the socket's end, without unwrap(): no close_notify
PY
PIDS+=($!)
for _ in $(seq 50); do [ -s closer.port ] && break; sleep 0.1; done
rc=0; "$T" device --server "localhost:$(cat closer.port)" --flash closer --ca srv.pem --max-attempts 2 \
  --backoff-min-ms 10 --backoff-max-ms 20 2> closer-dev.log || rc=$?
[ $rc -eq 1 ] && grep -qF "the server (or a proxy on the way) closed the connection" closer-dev.log ||
  fail "a TLS server's close without close_notify: exit $rc: $(cat closer-dev.log)"
! grep -q "failed its check" closer-dev.log || fail "a close was called a record that failed its check: $(cat closer-dev.log)"
ok "a TLS server that closes without close_notify: the device says the server closed the connection"

# A certificate or key that cannot be used: the file is named, with what it
# holds when that says more than OpenSSL's reason; a certificate given as
# the key is not called an exposed secret.
: > empty.pem
q openssl ecparam -name prime256v1 -genkey -noout -out other.key
chmod 600 other.key
tls_refused() { # CERT KEY REGEX
  local rc=0
  timeout 10 "$T" serve --listen 127.0.0.1:0 --version 1.0.0 --tls-cert "$1" --tls-key "$2" img 2> refused.log || rc=$?
  [ $rc -eq 2 ] || fail "--tls-cert $1 --tls-key $2: exit $rc, expected 2 (an unusable input file): $(cat refused.log)"
  grep -q -- "$3" refused.log || fail "--tls-cert $1 --tls-key $2: no '$3' in: $(cat refused.log)"
}
tls_refused empty.pem srv.key "cannot use the TLS certificate empty.pem: the file is empty; give the server's certificate (PEM), its chain after it"
tls_refused srv.pem empty.pem "cannot use the TLS key empty.pem: the file is empty; give the certificate's private key (PEM)"
head -c 300 srv.pem > cut.pem
tls_refused cut.pem srv.key 'cannot use the TLS certificate cut.pem: .*; the file may be cut short or changed: copy it again$'
tls_refused srv.key srv.pem 'cannot use the TLS certificate srv.key: it holds a private key, not a certificate: are --tls-cert and --tls-key swapped?'
tls_refused srv.pem srv.pem 'cannot use the TLS key srv.pem: it holds a certificate, not a private key: are --tls-cert and --tls-key swapped?'
! grep -q 'can be read by other users' refused.log || fail "a certificate given as the key was called exposed: $(cat refused.log)"
tls_refused img srv.key 'cannot use the TLS certificate img: it holds no PEM certificate or key'
tls_refused srv.pem other.key 'the TLS key other.key is not the key of the certificate srv.pem'
# A key of another type than the certificate's (RSA for an EC one): OpenSSL
# takes it into a slot of its own without a word, and every handshake would
# fail; it is still not the certificate's key.
q openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
chmod 600 rsa.key
tls_refused srv.pem rsa.key 'the TLS key rsa.key is not the key of the certificate srv.pem'
# A key under a passphrase: said so, never asked for (OpenSSL's own prompt
# stopped the event loop at a reload when the server had a terminal, and
# without one the start said "processing error").
q openssl pkey -in srv.key -aes256 -passout pass:secret1 -out enc.key
chmod 600 enc.key
tls_refused srv.pem enc.key 'the TLS key enc.key is protected by a passphrase, which tcpota serve cannot be given (it may start unattended and reloads on SIGHUP); write the key without one, readable by the server alone: openssl pkey -in enc.key -out KEY.pem && chmod 600 KEY.pem, and give --tls-key KEY.pem$'
! grep -qi 'pass phrase:' refused.log || fail "a passphrase was asked for: $(cat refused.log)"
# On a terminal whose input stays open (a FIFO this shell holds), where
# OpenSSL's own prompt waited for ever (with /dev/null it reads the end).
mkfifo tty.in
exec 7<> tty.in
rc=0; timeout 10 script -qec "$T serve --listen 127.0.0.1:0 --version 1.0.0 --tls-cert srv.pem --tls-key enc.key img" /dev/null \
  < tty.in > tty.log 2>&1 || rc=$?
exec 7>&-
[ $rc -eq 2 ] && grep -q 'the TLS key enc.key is protected by a passphrase' tty.log && ! grep -qi 'pass phrase:' tty.log ||
  fail "on a terminal, a key under a passphrase: exit $rc: $(cat tty.log)"
ok "an unusable TLS certificate or key is named, with what it holds, or said not to be the certificate's; a passphrase is never asked for"

# TLS 1.2 at least, whatever the host's OpenSSL configuration allows: with
# a system config that lowers the floor to TLS 1.0 (and the security level
# to 0, without which OpenSSL 3 refuses TLS 1.1 by itself), a TLS 1.1
# client is still refused, while a TLS 1.2 one under the same config
# connects (the config itself works).
cat > weak.cnf <<'CNF'
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
CNF
OPENSSL_CONF="$WORK/weak.cnf" start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key
hs() { # hs -tls1_1|-tls1_2: prints what s_client says of the handshake
  OPENSSL_CONF="$WORK/weak.cnf" timeout 5 openssl s_client -brief -connect "127.0.0.1:$SERVER_PORT" "$1" \
    -cipher 'DEFAULT@SECLEVEL=0' < /dev/null 2>&1 || true
}
hs -tls1_2 | grep -q 'CONNECTION ESTABLISHED' || fail "TLS 1.2 under the lax config: $(hs -tls1_2)"
out=$(hs -tls1_1)
! echo "$out" | grep -q 'CONNECTION ESTABLISHED' || fail "a TLS 1.1 client was taken: $out"
echo "$out" | grep -q 'protocol version' || fail "TLS 1.1 not refused for its version: $out"
# A connection closed before its first byte (a balancer's TCP health check)
# is no client that failed: one line saying so, not a "plain client on the
# TLS port", and no failure counted.
hc=$(python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
print(s.getsockname()[1])
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()' "$SERVER_PORT") || fail "the health-check probe failed"
wait_line server.log "127\.0\.0\.1:$hc\] closed before the TLS handshake" 3
! grep -q "127\.0\.0\.1:$hc\] plain" server.log || fail "a health check was taken for a plain client: $(grep ":$hc\]" server.log)"
stop_server
grep -q 'summary: .* 0 ended by an error' server.log || fail "the health check counted as a failure: $(grep 'summary:' server.log)"
ok "TLS 1.1 refused even where the host's OpenSSL config allows it; TLS 1.2 taken; a health check is no failure"

# The start line says TLS with --workers too (the supervisor's line).
start_server img 2.0.0 --tls-cert srv.pem --tls-key srv.key --workers 2
grep -qE "listening on 127\.0\.0\.1:$SERVER_PORT, devices over TLS, image 2\.0\.0 .*; 2 workers" server.log ||
  fail "the listening line of --workers does not say TLS: $(grep 'listening on' server.log)"
stop_server
ok "the listening line says that the device port is TLS (one process and --workers)"
