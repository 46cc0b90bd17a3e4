#!/usr/bin/env bash
# SIGHUP reloads the TLS certificate, its key and the ticket keys, in
# single-image mode (with the image), with --workers and in fleet mode,
# without cutting a connection:
#  - a renewed certificate is served to new connections at once, while a
#    device streaming through a slow link when the signal came finishes its
#    update byte-exact, on its one connection;
#  - ticket keys rotated in their files (the new key first, the old one
#    second) keep a session resuming; rotated once more, the oldest key is
#    gone and that session makes a full handshake;
#  - without --tls-ticket-key, OpenSSL's own key is carried over: a session
#    from before the reload resumes after it;
#  - bad files (garbage, a key of another certificate, a FIFO, a missing
#    file, a ticket key of the wrong size) fail the reload with what is
#    wrong, the server answers on with the certificate it had, and a good
#    reload after them takes.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"

# cert NAME: a self-signed ECDSA P-256 certificate for localhost in NAME.pem,
# its key in NAME.key.
cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.pem" -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    > /dev/null 2>&1 || fail "openssl could not make a certificate"
  chmod 600 "$1.key"
}
fp_of() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
cert A
cert B
FP_A=$(fp_of A.pem)
FP_B=$(fp_of B.pem)
install_cert() { cp "$1.pem" cur.pem && cp "$1.key" cur.key && chmod 600 cur.key; }
install_cert A
make_image img 200000
"$T" keygen --ticket-key --out k.new 2> /dev/null && "$T" keygen --ticket-key --out k.old 2> /dev/null ||
  fail "keygen --ticket-key failed"

# hs PORT OUT [SESS_IN]: one TLS 1.2 handshake (s_client: a ticket it keeps
# in OUT.sess); prints "New" or "Reused" and the certificate's fingerprint.
hs() {
  local port=$1 out=$2 in=()
  [ -n "${3:-}" ] && in=(-sess_in "$3")
  sleep 0.3 | timeout 10 openssl s_client -connect "127.0.0.1:$port" -tls1_2 "${in[@]}" \
    -sess_out "$out.sess" > "$out.hs" 2> /dev/null || true
  printf '%s %s\n' "$(grep -oE '^(New|Reused)' "$out.hs" | head -1)" \
    "$(openssl x509 -noout -fingerprint -sha256 -in "$out.hs" 2> /dev/null | cut -d= -f2)"
}
# want WHAT GOT EXPECTED
want() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
# hup LOG: SIGHUP to the server; waits for its answer (the N-th SIGHUP line).
HUPS=0
hup() {
  HUPS=$((HUPS + 1))
  kill -HUP "$SERVER_PID"
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$(grep -cE 'SIGHUP: (reloaded|reload failed)' "$1" || true)" -ge "$HUPS" ] && return 0
    sleep 0.05
  done
  fail "no answer to SIGHUP $HUPS in $1"
}

# --- single-image mode: a device mid-update, the certificate renewed ---
start_server img 2.0.0 --tls-cert cur.pem --tls-key cur.key --tls-ticket-key k.new --tls-ticket-key k.old
want "before the reload" "$(hs "$SERVER_PORT" s1)" "New $FP_A"
start_proxy slow "$SERVER_PORT" --rate 50000
timeout 60 "$T" device --server "localhost:$PROXY_PORT" --flash dev --id hup-dev --ca A.pem \
  --max-attempts 1 2> dev.log &
DEV=$!
PIDS+=("$DEV")
wait_line server.log 'hup-dev.*offer' 20
install_cert B
mv k.new k.old && "$T" keygen --ticket-key --out k.new 2> /dev/null
hup server.log
grep -q "SIGHUP: reloaded: image 2.0.0 (200000 bytes, sha256 [0-9a-f]*), the TLS certificate (valid until $(date -u -d "$(openssl x509 -noout -enddate -in B.pem | cut -d= -f2)" '+%Y-%m-%d %H:%M:%S') UTC) and its key and the ticket keys" server.log ||
  fail "no reload line: $(grep SIGHUP server.log)"
want "a new connection after the reload" "$(hs "$SERVER_PORT" s2 | cut -d' ' -f2)" "$FP_B"
want "the session of before the reload, its key now second" "$(hs "$SERVER_PORT" s1r s1.sess | cut -d' ' -f1)" "Reused"
rc=0; wait "$DEV" || rc=$?
[ $rc -eq 0 ] || fail "the device streaming at the reload failed (rc $rc): $(tail -3 dev.log)"
check_device dev img
# One offer from 0, none resumed: the connection of the update lasted.
[ "$(grep -c 'hup-dev.*offer' server.log)" = 1 ] && grep -q 'stats .*refetched=0' dev.log ||
  fail "the device's connection did not go through the reload: $(grep hup-dev server.log)"
ok "SIGHUP: the new certificate at once, the device mid-update finished byte-exact on its connection"

mv k.new k.old && "$T" keygen --ticket-key --out k.new 2> /dev/null
hup server.log
tail -1 server.log | grep -q "the TLS certificate (unchanged: the file holds the certificate already in use, valid until" ||
  fail "a reload of the same certificate does not say so: $(tail -1 server.log)"
want "a session whose key was rotated out" "$(hs "$SERVER_PORT" s1x s1.sess | cut -d' ' -f1)" "New"
ok "ticket keys rotated by SIGHUP: the old key second resumes, rotated out does not"

# Bad files: the reload fails with why, the server serves on with B.
bad_hup() { # bad_hup REGEX: SIGHUP, the reload fails saying REGEX, B still served
  local before
  before=$(wc -l < server.log)
  hup server.log
  tail -n +"$((before + 1))" server.log > hup.out
  grep -q -- "$1" hup.out || fail "bad reload: no /$1/ in: $(cat hup.out)"
  grep -q "SIGHUP: reload failed (see above); still serving image 2.0.0 (sha256 [0-9a-f]*...) and the TLS certificate loaded before" hup.out ||
    fail "bad reload: no 'still serving' line: $(cat hup.out)"
  want "after a failed reload ($1)" "$(hs "$SERVER_PORT" sb | cut -d' ' -f2)" "$FP_B"
}
echo garbage > cur.pem
bad_hup "SIGHUP: cannot use the TLS certificate cur.pem: it holds no PEM certificate or key"
cp B.pem cur.pem && cp A.key cur.key
bad_hup "SIGHUP: the TLS key cur.key is not the key of the certificate cur.pem"
rm cur.key && mkfifo cur.key
bad_hup "SIGHUP: --tls-key: cur.key is not a regular file (it is a FIFO)"
rm cur.key
bad_hup "SIGHUP: --tls-key: cannot open cur.key: No such file"
cp B.key cur.key && chmod 600 cur.key
head -c 48 /dev/urandom > k.old
bad_hup "SIGHUP: --tls-ticket-key k.old holds 48 bytes, not 80"
"$T" keygen --ticket-key --out k.48 2> /dev/null && mv k.48 k.old
install_cert A
hup server.log
tail -1 server.log | grep -q "SIGHUP: reloaded" || fail "a good reload after bad ones: $(tail -3 server.log)"
want "after a good reload" "$(hs "$SERVER_PORT" s3 | cut -d' ' -f2)" "$FP_A"
stop_server
ok "bad certificate, key, FIFO, missing file, ticket key: the reload fails with why, the server serves on"

# --- workers: each reloads ---
install_cert A
start_server img 2.0.0 --tls-cert cur.pem --tls-key cur.key --workers 2
install_cert B
kill -HUP "$SERVER_PID"
for ((i = 0; i < 200; i++)); do
  [ "$(grep -c 'SIGHUP: reloaded' server.log || true)" -ge 3 ] && break
  sleep 0.05
done
[ "$(grep -c 'SIGHUP: reloaded' server.log || true)" -ge 3 ] ||
  fail "--workers 2: the supervisor and both workers should reload: $(grep SIGHUP server.log)"
for i in 1 2 3 4 5 6; do
  want "--workers 2, connection $i after the reload" "$(hs "$SERVER_PORT" w | cut -d' ' -f2)" "$FP_B"
done
stop_server
ok "--workers 2: the supervisor and each worker reload"

# --- fleet mode, no ticket key: OpenSSL's own key is carried over ---
install_cert A
: > server.log
"$T" serve --data fleet --listen 127.0.0.1:0 --api off --ota-listen 127.0.0.1:0 --tls-cert cur.pem \
  --tls-key cur.key 2> server.log &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line server.log 'listening on'
SERVER_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' server.log | head -1)
OTA_PORT=$(sed -nE 's/.*HTTPS downloads on [^ ]*:([0-9]+).*/\1/p' server.log | head -1)
want "fleet mode, HTTPS downloads before the reload" "$(hs "$OTA_PORT" o1 | cut -d' ' -f2)" "$FP_A"
want "fleet mode before the reload" "$(hs "$SERVER_PORT" f1)" "New $FP_A"
install_cert B
HUPS=0
hup server.log
grep -q "SIGHUP: reloaded the TLS certificate cur.pem (valid until [-0-9: ]* UTC) and its key$" server.log ||
  fail "fleet mode: no reload line: $(grep SIGHUP server.log)"
want "fleet mode: the session of before the reload, OpenSSL's own key" "$(hs "$SERVER_PORT" f2 f1.sess | cut -d' ' -f1)" "Reused"
want "fleet mode: a new connection after the reload" "$(hs "$SERVER_PORT" f3 | cut -d' ' -f2)" "$FP_B"
want "fleet mode: HTTPS downloads after the reload" "$(hs "$OTA_PORT" o2 | cut -d' ' -f2)" "$FP_B"
echo garbage > cur.key
hup server.log
grep -q "SIGHUP: reload failed (see above); still serving the TLS certificate loaded before" server.log ||
  fail "fleet mode: a bad key: $(grep SIGHUP server.log)"
stop_server
ok "fleet mode: SIGHUP reloads the certificate (device port and HTTPS downloads); sessions resume across it without a ticket key"

# --- fleet mode: the reload keeps the device secrets (the store's) ---
source "$(dirname "$0")/fleet_lib.sh"
install_cert A
start_fleet --require-auth --tls-cert cur.pem --tls-key cur.key
"$T" device secret a-1 --out a1.secret > /dev/null 2>&1 || fail "device secret a-1 failed"
install_cert B
HUPS=0
hup "$WORK/server.log"
rc=0
timeout 30 "$T" device --server "localhost:$SERVER_PORT" --flash a1dev --id a-1 --ca B.pem \
  --secret a1.secret --max-attempts 1 2> a1.log || rc=$?
! grep -q '\[a-1 [^]]*\] authentication failed' "$WORK/server.log" && [ $rc -eq 0 ] ||
  fail "fleet mode: a device with its secret after a SIGHUP (rc $rc): $(grep 'a-1' "$WORK/server.log" | tail -3)"
stop_fleet
ok "fleet mode: after a SIGHUP a device still authenticates with its secret"
