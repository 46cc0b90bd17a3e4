#!/usr/bin/env bash
# The fleet CLI over https://, through a real TLS proxy in front of the API
# (HAProxy, its config written here), as docs/operations.md sets one up:
#  - image add / image list / summary / device list work with --ca, with
#    TCPOTA_API_CA, and through a path prefix; the token reaches the API
#    (a wrong one is refused by it, 401, through the proxy);
#  - a certificate the CLI cannot trust (no --ca: not in the system's
#    store), one for another name, https:// to the API's own plain port,
#    and a proxy that closes during the handshake each fail with exit 1
#    and a message that says which and what to give;
#  - --ca with an http:// address, a FIFO, an empty file or a key as
#    --ca: exit 2 before any request.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
T=$TCPOTA
cd "$WORK"
command -v haproxy > /dev/null || fail "haproxy is not installed (make deps installs it)"

# A CA, and a certificate it signs for localhost only (no IP address), the
# proxy's certificate and key in one file as HAProxy takes them.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj /CN=test-ca > /dev/null 2>&1 || fail "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout px.key -out px.csr \
  -subj /CN=localhost > /dev/null 2>&1 || fail "openssl: request"
printf 'subjectAltName=DNS:localhost\n' > px.ext
openssl x509 -req -in px.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile px.ext \
  -out px.pem > /dev/null 2>&1 || fail "openssl: certificate"
cat px.pem px.key > px.bundle
# One the CA signs for clients only (extendedKeyUsage clientAuth): not a
# question of which CA, the certificate itself is wrong for a server.
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=clientAuth\n' > cl.ext
openssl x509 -req -in px.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile cl.ext \
  -out cl.pem > /dev/null 2>&1 || fail "openssl: client certificate"
cat cl.pem px.key > cl.bundle

start_fleet
unset TCPOTA_API TCPOTA_API_CA # each command names its address and CA
read -r HP HQ HS HH HB HT HL HC < <(free_ports 8)
# HAProxy, terminating TLS:
#   HP  to the API, also under the prefix /fleet (the prefix taken off)
#   HB  to a backend that closes each connection (its 502)
#   HT  to a backend that never answers, given 1 s (its 504)
#   HL  to the API, refusing a body over 100 kB (its 413, as nginx's
#       client_max_body_size would)
#   HC  to the API, with a certificate for clients only
# peers.py: HQ closes each connection at once; HS takes connections and
# never says anything; HH finishes the TLS handshake, reads and closes.
cat > haproxy.cfg <<EOF
global
  maxconn 100
defaults
  mode http
  timeout connect 5s
  timeout client 5m
  timeout server 5m
frontend api
  bind 127.0.0.1:$HP ssl crt $WORK/px.bundle
  http-request deny if { path_beg /ota/ }
  use_backend prefixed if { path_beg /fleet/ }
  default_backend api
backend api
  http-reuse never
  server s 127.0.0.1:$API_PORT
backend prefixed
  http-reuse never
  http-request set-path %[path,regsub(^/fleet/,/)]
  server s 127.0.0.1:$API_PORT
frontend down
  bind 127.0.0.1:$HB ssl crt $WORK/px.bundle
  default_backend down
backend down
  server s 127.0.0.1:$HQ
frontend slow
  bind 127.0.0.1:$HT ssl crt $WORK/px.bundle
  default_backend slow
backend slow
  timeout server 1s
  server s 127.0.0.1:$HS
frontend clientcert
  bind 127.0.0.1:$HC ssl crt $WORK/cl.bundle
  default_backend api
frontend small
  bind 127.0.0.1:$HL ssl crt $WORK/px.bundle
  http-request deny deny_status 413 if { req.hdr_val(content-length) gt 100000 }
  default_backend api
EOF
haproxy -c -f haproxy.cfg > haproxy-check.log 2>&1 || fail "haproxy rejects its config: $(cat haproxy-check.log)"
haproxy -db -f haproxy.cfg > haproxy.log 2>&1 &
PIDS+=($!)
cat > peers.py <<'PY'
import socket, ssl, sys, threading
closer, staller, tls_closer = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[4], sys.argv[5])
held = []
def tls_close(c):
    t = ctx.wrap_socket(c, server_side=True)
    t.recv(4096)
    t.close()
def serve(port, each):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            each(c)
        except OSError:
            c.close()
threading.Thread(target=serve, args=(staller, held.append), daemon=True).start()
threading.Thread(target=serve, args=(tls_closer, tls_close), daemon=True).start()
serve(closer, lambda c: c.close())
PY
python3 peers.py "$HQ" "$HS" "$HH" px.pem px.key > peers.log 2>&1 &
PIDS+=($!)
for p in $HP $HQ $HS $HH $HB $HT $HL $HC; do
  for ((i = 0; ; i++)); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 0.2).close()" 2> /dev/null && break
    [ $i -lt 100 ] || fail "nothing listens on 127.0.0.1:$p: $(cat haproxy.log peers.log)"
    sleep 0.05
  done
done

RUN_TIMEOUT=20 # for lib.sh's run: an upload through the proxy under ASan

A="https://localhost:$HP"
make_keys rel
signed_image fw.bin 40000 2.0.0 esp32 rel
run 0 $T image add --api "$A" --ca ca.pem fw.bin
has out.log "2\.0\.0"
# The command it suggests names the same server and CA, and runs as printed.
hint=$(sed -n 's/^roll it out: //p' out.log)
[[ "$hint" == "tcpota rollout create --image "*" --api $A --ca ca.pem" ]] || fail "the suggested command: '$hint'"
eval "run 0 \$T ${hint#tcpota }"
has out.log "^follow it: tcpota rollout show [0-9]+ --api $A --ca ca\.pem$"
run 0 $T image list --api "$A" --ca ca.pem
has out.log "2\.0\.0 +esp32"
TCPOTA_API_CA=$WORK/ca.pem run 0 $T summary --api "$A/fleet"
has out.log "^devices by model and state:"
run 0 $T device list --json --api "$A/fleet/" --ca ca.pem
grep -q '"devices"' out.log || fail "device list over https: $(cat out.log)"
ok "image add, image list, summary and device list over https:// through HAProxy (--ca, TCPOTA_API_CA, a prefix)"

TCPOTA_TOKEN=wrong-token run 1 $T image list --api "$A" --ca ca.pem
has err.log "^tcpota image: the API at $A \(from --api\) refused the token"
ok "the token goes through the proxy: a wrong one is the API's 401"

# What cannot work says so, and what to give.
run 1 $T image list --api "$A"
has err.log "^tcpota image: the API at $A: its TLS certificate was not accepted: .*; give the certificate of the CA that signed it with --ca FILE \(or TCPOTA_API_CA\)$"
run 1 $T image list --api "https://127.0.0.1:$HP" --ca ca.pem
has err.log "^tcpota image: the API at https://127\.0\.0\.1:$HP: its TLS certificate was not accepted: .*mismatch; give --api the name the certificate is for$"
run 1 $T image list --api "https://localhost:$HC" --ca ca.pem
has err.log "^tcpota image: the API at https://localhost:$HC: its TLS certificate was not accepted: unsuitable certificate purpose; the proxy's certificate must be put right$"
run 1 $T image list --api "https://localhost:$API_PORT" --ca ca.pem
has err.log "^tcpota image: the TLS handshake with the API at https://localhost:$API_PORT failed: .*; is it the https:// address of a TLS proxy in front of the API \(not the API's own plain http:// port\)\?$"
run 1 $T image list --api "https://localhost:$HQ" --ca ca.pem
has err.log "^tcpota image: the API at https://localhost:$HQ closed the connection during the TLS handshake; is it the https:// address of a TLS proxy"
run 1 $T image list --api "https://localhost:$HH" --ca ca.pem
has err.log "^tcpota image: the API at https://localhost:$HH closed the connection without an answer; is it a TLS proxy in front of tcpota serve's --api"
run 1 $T image list --api "https://localhost:$HS" --ca ca.pem --timeout 1
has err.log "^tcpota image: the TLS handshake with the API at https://localhost:$HS did not finish within 1 s; is it the https:// address of a TLS proxy"
run 1 $T image list --api "https://localhost:$HB" --ca ca.pem
has err.log "^tcpota image: a proxy in front of the API at https://localhost:$HB answered 50[23] .*: it cannot reach tcpota serve; is the server running.*right\?$"
run 1 $T rollout pause 1 --api "https://localhost:$HB" --ca ca.pem # a write: its fate unknown
has err.log "answered 502 .*right\? The server may still have made the change: check with tcpota rollout list before"
run 1 $T rollout create --image 0123456789ab --model esp32 --api "https://localhost:$HT" --ca ca.pem
has err.log "^tcpota rollout: a proxy in front of the API at https://localhost:$HT answered 504 .*: it stopped waiting for tcpota serve; the server may still have made the change: check with tcpota rollout list before"
make_image big.bin 150000
run 1 $T image add big.bin --version 9.9.9 --model esp32 --api "https://localhost:$HL" --ca ca.pem
has err.log "^tcpota image: 150000 bytes were refused as too large \(413\), but tcpota serve takes images of up to [0-9]+ bytes \(its --max-image\): a proxy in front of the API refused them"
ok "an untrusted certificate, another name, the API's plain port, a peer closing during or after the handshake, one that never answers, a proxy's 503, 504 and 413: exit 1, each said"

mkfifo fifo
: > empty
run 2 $T image list --api "http://127.0.0.1:$API_PORT" --ca ca.pem
has err.log "^tcpota image: --ca is for an https:// API address, and the API's is http://127\.0\.0\.1:$API_PORT"
run 2 $T image list --api "$A" --ca fifo
has err.log "fifo is not a regular file"
run 2 $T image list --api "$A" --ca empty
has err.log "^tcpota image: --ca: cannot load CA file empty: the file is empty"
run 2 $T image list --api "$A" --ca px.key
has err.log "^tcpota image: --ca: cannot load CA file px.key: it holds a private key, not a certificate"
TCPOTA_API_CA=$WORK/empty run 2 $T image list --api "$A"
has err.log "cannot load CA file $WORK/empty: the file is empty"
ok "--ca with http://, a FIFO, an empty file, a key, a bad TCPOTA_API_CA: exit 2 before any request"

stop_fleet
