#!/usr/bin/env bash
# Signed images, anti-downgrade, device authentication and TLS, end to end:
# each attack is refused with its own reason and the running image stays.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"

$T keygen --out k 2> keygen.log
$T keygen --out other 2>> keygen.log
[ "$(stat -c %a k.key)" = 600 ] || fail "private key is not 0600"
make_image img 200000

untouched() {
  local s; s=$("$T" device status --flash "$1")
  echo "$s" | grep -q '"slot":0' && echo "$s" | grep -q '"version":"1.0.0"' ||
    fail "$1: the running image changed: $s"
}
# refused NAME REASON-IN-DEVICE-LOG SERVER-ARGS...: a device trusting k is refused.
refused() {
  local name=$1 why=$2; shift 2
  start_server "$@"
  local rc=0
  "$T" device --server "127.0.0.1:$SERVER_PORT" --flash "$name" --id "$name" --factory-version 1.0.0 \
    --trust k.pub --max-attempts 1 2> "$name.log" || rc=$?
  [ $rc -eq 1 ] || fail "$name: device exited $rc, expected a refusal"
  grep -q "declined the server's offer: $why" "$name.log" || fail "$name: no '$why' in the device log"
  grep -q "declined: $why" server.log || fail "$name: server did not log '$why'"
  untouched "$name"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  ok "$name refused: $why"
}

# 1. The server refuses to start on a manifest that does not verify.
$T sign --key k.key --version 2.0.0 --model esp32 --security-counter 5 img 2>/dev/null
$T verify --pubkey k.pub img 2> verify.log || fail "verify of a good image failed"
# flip_byte FILE OFFSET: changes one byte, whatever its value was.
flip_byte() {
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf %03o $(( (b + 1) % 256 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
cp img tampered; flip_byte tampered 1000
cmp -s img tampered && fail "could not tamper with the image"
cp img.manifest tampered.manifest
rc=0; timeout 20 $T serve --listen 127.0.0.1:0 --version 2.0.0 tampered 2> bad-serve.log || rc=$?
[ $rc -eq 1 ] && grep -q 'differs from the manifest' bad-serve.log || fail "server started on a tampered image"
rc=0; $T verify --pubkey other.pub img 2> v2.log || rc=$?
[ $rc -eq 1 ] && grep -q 'not a trusted key' v2.log || fail "verify accepted the wrong key"
ok "serve and verify refuse a tampered image / wrong key"

# 2. The device refuses each bad offer before writing a byte.
refused tampered-image "image SHA-256 mismatch" tampered 2.0.0 --no-require-signed
cp img.manifest bad.manifest; flip_byte bad.manifest 20
cmp -s img.manifest bad.manifest && fail "could not tamper with the manifest"
refused tampered-manifest "signature does not verify" img 2.0.0 --manifest bad.manifest --no-require-signed
$T sign --key other.key --version 2.0.0 --model esp32 --out other.manifest img 2>/dev/null
refused wrong-key "signed by an untrusted key" img 2.0.0 --manifest other.manifest
$T sign --key k.key --version 2.0.0 --model esp32s3 --out s3.manifest img 2>/dev/null
# Another model's image: the server does not even offer it (its own check
# is unit-tested in test_manifest.c).
start_server img 2.0.0 --manifest s3.manifest
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash wrong-model --id wrong-model \
  --factory-version 1.0.0 --trust k.pub --max-attempts 1 2> wrong-model.log ||
  fail "wrong-model: the device did not end quietly"
grep -q 'not offered: the image is for another model' server.log || fail "wrong-model: offered"
untouched wrong-model
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "wrong-model: the server does not offer an esp32s3 image to an esp32"
cp img unsigned.img
refused unsigned "image is not signed" unsigned.img 2.0.0

# 3. A good signed update, then a downgrade by counter is refused.
start_server img 2.0.0
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --id good --factory-version 1.0.0 \
  --trust other.pub --trust k.pub 2> good.log || fail "signed update failed (second trusted key)"
check_device good img
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
make_image img3 150000
$T sign --key k.key --version 3.0.0 --model esp32 --security-counter 4 img3 2>/dev/null
start_server img3 3.0.0
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --id good --trust k.pub \
  --max-attempts 1 2> down.log || rc=$?
[ $rc -eq 1 ] && grep -q "security counter lower" down.log || fail "downgrade by counter was not refused"
check_device good img
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "signed update with a rotated key list; counter downgrade refused, image kept"

# 4. Legacy devices get a signed image only with --allow-legacy.
start_server img 2.0.0
rc=0; "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy.bin --timeout 5 > legacy.log 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got a signed image without --allow-legacy"
grep -q 'legacy (req0/req1) device refused' server.log || fail "legacy refusal not logged"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server img 2.0.0 --allow-legacy
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy.bin > legacy.log 2>&1 || fail "--allow-legacy did not serve"
cmp legacy.bin img || fail "legacy bytes differ"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "legacy devices refused a signed image unless --allow-legacy"

# 5. Device authentication: right secret, wrong secret, unknown, replay.
$T keygen --device-secret --out dev.secret 2>/dev/null
$T keygen --device-secret --out wrong.secret 2>/dev/null
echo "auth-dev $(cut -d' ' -f3 dev.secret)" > secrets
echo "probe $(cut -d' ' -f3 dev.secret)" >> secrets
start_server img 2.0.0 --require-auth --auth-file secrets
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --id auth-dev --secret dev.secret \
  --trust k.pub 2> authed.log || fail "authenticated device failed"
check_device authed img
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash nosecret --id auth-dev --max-attempts 1 \
  2> nosecret.log || rc=$?
[ $rc -eq 1 ] || fail "a device without a secret was served"
P=$(dirname "$LEGACY")/tcpota-auth-probe
[ "$($P --server "127.0.0.1:$SERVER_PORT" --id probe --secret dev.secret --from 127.0.0.11)" = offer ] ||
  fail "the probe with the right secret was refused"
[ "$($P --server "127.0.0.1:$SERVER_PORT" --id probe --secret dev.secret --replay --from 127.0.0.12 | tail -1)" = "error 13" ] ||
  fail "a replayed challenge response was accepted"
[ "$($P --server "127.0.0.1:$SERVER_PORT" --id probe --secret wrong.secret --from 127.0.0.13)" = "error 13" ] ||
  fail "a wrong secret was accepted"
[ "$($P --server "127.0.0.1:$SERVER_PORT" --id stranger --secret dev.secret --from 127.0.0.14)" = "error 13" ] ||
  fail "an unknown device was accepted"
[ "$($P --server "127.0.0.1:$SERVER_PORT" --id probe --secret dev.secret --from 127.0.0.14)" = "no-challenge" ] ||
  fail "a peer that just failed was not slowed down"
grep -q 'authentication failed: wrong answer' server.log || fail "failed authentication not logged"
grep -q 'authentication failed: unknown device' server.log || fail "unknown device not logged"
grep -q 'refused: 1 failed authentications' server.log || fail "backoff not logged"
stop_server
ok "authentication: right secret served; no secret, wrong secret, unknown device, replay refused; backoff"

# A peer that never answers the CHALLENGE cannot keep its slot with PINGs.
start_server img 2.0.0 --require-auth --auth-file secrets --idle-timeout 2
out=$($P --server "127.0.0.1:$SERVER_PORT" --id probe --stall 8 --from 127.0.0.15)
case "$out" in "closed after "[1-5]" s") ;; *) fail "unanswered challenge kept open: $out" ;; esac
stop_server
ok "an unanswered challenge is closed after the idle timeout ($out)"

# 6. Secrets and private keys never appear in logs or on stdout/stderr.
for s in "$(cut -d' ' -f3 dev.secret)" "$(cut -d' ' -f3 k.key)" "$(cut -d' ' -f3 k.key | cut -c1-64)"; do
  ! grep -rqF "$s" ./*.log || fail "a secret or private key appears in a log"
done
ok "no secret or private key in any log"

# 7. TLS: a verified server works; an expired or foreign certificate is refused.
cat > ca.cnf <<'CNF'
[ ca ]
default_ca = d
[ d ]
dir = .
database = ./index.txt
new_certs_dir = .
serial = ./serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[ p ]
commonName = supplied
CNF
touch index.txt; echo 01 > serial
q() { "$@" > /dev/null 2>&1 || fail "openssl: $*"; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=tcpota-test-ca
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca2.key -out ca2.pem -days 2 -subj /CN=other-ca
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in srv.csr -out srv.pem -days 2
q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in srv.csr -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z
tls_try() { # NAME CERT CA: runs a device against a TLS server with CERT, trusting CA
  start_server img 2.0.0 --tls-cert "$2" --tls-key srv.key
  local rc=0
  "$T" device --server "127.0.0.1:$SERVER_PORT" --flash "$1" --id "$1" --factory-version 1.0.0 --ca "$3" \
    --trust k.pub --max-attempts 1 2> "$1.log" || rc=$?
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  return $rc
}
tls_try tls-ok srv.pem ca.pem || fail "TLS update failed"
check_device tls-ok img
grep -q 'TLS, certificate verified' tls-ok.log || fail "no TLS in the device log"
! tls_try tls-expired expired.pem ca.pem || fail "an expired certificate was accepted"
grep -q 'certificate has expired' tls-expired.log || fail "expired certificate: no reason logged"
untouched tls-expired
! tls_try tls-foreign srv.pem ca2.pem || fail "a certificate from another CA was accepted"
grep -q 'unable to get local issuer certificate\|self-signed' tls-foreign.log || fail "foreign CA: no reason logged"
untouched tls-foreign
ok "TLS: verified update; expired and foreign certificates refused"

# 7b. TLS: a certificate from the trusted CA, but for another host name, is
# refused (by IP address and by DNS name) before a byte is written.
q openssl req -new -key srv.key -out elsewhere.csr -subj /CN=elsewhere.example -addext "subjectAltName=DNS:elsewhere.example"
q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in elsewhere.csr -out elsewhere.pem -days 2
for host in 127.0.0.1 localhost; do
  start_server img 2.0.0 --tls-cert elsewhere.pem --tls-key srv.key
  rc=0
  "$T" device --server "$host:$SERVER_PORT" --flash "tls-name-$host" --id tls-name --factory-version 1.0.0 \
    --ca ca.pem --trust k.pub --max-attempts 1 2> "tls-name-$host.log" || rc=$?
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  [ $rc -eq 1 ] || fail "$host: a certificate for elsewhere.example was accepted (exit $rc)"
  grep -q 'IP address mismatch\|hostname mismatch' "tls-name-$host.log" || fail "$host: no name mismatch logged"
  untouched "tls-name-$host"
done
ok "TLS: a certificate from the trusted CA for another host name is refused"
