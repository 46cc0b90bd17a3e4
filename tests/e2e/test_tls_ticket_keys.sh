#!/usr/bin/env bash
# --tls-ticket-key: session tickets sealed with the operator's key, so that a
# device resumes its TLS session on every node that has the key (several
# nodes behind one balancer) and after a restart, where each process's own
# key made it a full handshake.
#  - TLS 1.2 (a Python client of Debian's OpenSSL): a session made on node A
#    resumes on node D with the same key, not on a node without it; a node
#    whose first key is new and second is A's resumes it and renews the
#    ticket under the new key, which a node with the new key alone resumes.
#    --tls-ticket-lifetime 2: a session resumes at once, not 3 s later.
#  - TLS 1.3 (tcpota device --ca): the device resumes after the server's
#    restart with the same key; without one it makes a full handshake.
#  - keygen --ticket-key writes 80 bytes, 0600, never over a file; serve
#    refuses a key of another size, a FIFO, a missing file, a fifth key and a
#    key without --tls-cert, and warns of one other users can read.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"
server_cert
make_image img 100000

"$T" keygen --ticket-key --out k1 2> keygen.log || fail "keygen --ticket-key: $(cat keygen.log)"
"$T" keygen --ticket-key --out k2 2>> keygen.log || fail "keygen --ticket-key k2"
[ "$(stat -c '%s %a' k1)" = "80 600" ] || fail "k1 is $(stat -c '%s bytes, mode %a' k1), not 80 bytes, 0600"
cmp -s k1 k2 && fail "two ticket keys are the same bytes"
rc=0; "$T" keygen --ticket-key --out k1 2> again.log || rc=$?
[ $rc -eq 2 ] && grep -q "k1 already exists; not overwriting a key" again.log || fail "keygen over k1: rc $rc: $(cat again.log)"
ok "keygen --ticket-key: 80 bytes, 0600, never over a file"

# node NAME ARGS...: a single-image server with TLS; its port in NAME_PORT.
node() {
  local name=$1; shift
  "$T" serve --listen 127.0.0.1:0 --version 2.0.0 --tls-cert srv.pem --tls-key srv.key "$@" img \
    2> "$name.log" &
  PIDS+=($!)
  wait_line "$name.log" 'listening on'
  printf -v "${name}_PORT" '%s' "$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$name.log" | head -1)"
}
node A --tls-ticket-key k1
node D --tls-ticket-key k1
node E
node B --tls-ticket-key k2 --tls-ticket-key k1
node C --tls-ticket-key k2
node L --tls-ticket-key k1 --tls-ticket-lifetime 2
# A key named with 16 zero bytes (its first 16; the rest random: a key of
# 80 zero bytes is refused as not random): its tickets are named as the key
# slots a node was not given are (C, one key, must not look past it).
{ head -c 16 /dev/zero; head -c 64 /dev/urandom; } > kzero && chmod 600 kzero
node Z --tls-ticket-key kzero
python3 - "$A_PORT" "$D_PORT" "$E_PORT" "$B_PORT" "$C_PORT" "$L_PORT" "$Z_PORT" > tls12.out 2>&1 <<'PY' || fail "TLS 1.2 sessions: $(cat tls12.out)"
import socket, ssl, sys, time
a, d, e, b, c, l, z = (int(p) for p in sys.argv[1:])
ctx = ssl.create_default_context(cafile="srv.pem")
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
def hs(port, session=None):
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            return s.session_reused, s.session
def want(what, got, reused):
    print(what, "reused" if got else "new")
    if got != reused:
        sys.exit(f"{what}: {'resumed' if got else 'a full handshake'}, expected the other")
r, s1 = hs(a)
want("A first", r, False)
want("D (the same key) with A's session", hs(d, s1)[0], True)
want("E (no key) with A's session", hs(e, s1)[0], False)
r, s2 = hs(b, s1)
want("B (new key first, A's second) with A's session", r, True)
want("C (the new key alone) with B's renewed session", hs(c, s2)[0], True)
want("C (the new key alone) with A's session", hs(c, s1)[0], False)
r, sz = hs(z)
want("C (one key) with a ticket named with zero bytes, sealed with zero keys", hs(c, sz)[0], False)
r, sl = hs(l)
want("L (lifetime 2 s) at once", hs(l, sl)[0], True)
time.sleep(3)
want("L (lifetime 2 s) 3 s later", hs(l, sl)[0], False)
want("A (lifetime 7,200 s by default) 3 s later", hs(a, s1)[0], True)
PY
ok "TLS 1.2: $(tr '\n' ';' < tls12.out)"

# TLS 1.3 with a client that uses each ticket once (openssl s_client keeps
# the ticket it is sent): every resumption gets a new ticket, so the chain
# resumes on and on. (It did not: OpenSSL sends a TLS 1.3 ticket after a
# resumption only when the key callback asks for renewal; bench-loadgen made
# a full handshake every other check-in, at 44 ms each.)
rm -f s1.pem s2.pem s3.pem
# s_client quits at its input's end, and a TLS 1.3 ticket comes after the
# handshake: its input stays open until the ticket is saved (5 s at most),
# not a fixed 0.3 s that a slow handshake (ASan, a loaded machine) outlasts.
for i in 1 2 3; do
  in=(); [ $i -gt 1 ] && in=(-sess_in "s$((i - 1)).pem")
  for _ in $(seq 100); do [ -s "s$i.pem" ] && break; sleep 0.05; done | openssl s_client -connect "127.0.0.1:$A_PORT" -tls1_3 "${in[@]}" -sess_out "s$i.pem" \
    2> /dev/null | grep -E "^(New|Reused)" >> chain13.out || true
done
[ "$(cut -d, -f1 chain13.out | tr '\n' ' ')" = "New Reused Reused " ] ||
  fail "TLS 1.3 resumption chain: $(cut -d, -f1 chain13.out | tr '\n' ' ') (want New Reused Reused)"
ok "TLS 1.3: each resumption gets a new ticket (a chain of resumptions)"

# TLS 1.3, the real device, across a restart on the same port.
restart_run() { # restart_run LOGNAME [ARGS...]: A restarted (same port), one device run
  local name=$1; shift
  kill -TERM "${PIDS[0]}" 2> /dev/null || true
  wait "${PIDS[0]}" 2> /dev/null || true
  "$T" serve --listen "127.0.0.1:$A_PORT" --version 2.0.0 --tls-cert srv.pem --tls-key srv.key "$@" img \
    2> "$name.log" &
  PIDS[0]=$!
  wait_line "$name.log" 'listening on'
  timeout 30 "$T" device --server "localhost:$A_PORT" --flash dev --id tk-dev --ca srv.pem --max-attempts 1 \
    2> "dev-$name.log" || fail "device run against $name failed: $(tail -2 "dev-$name.log")"
}
restart_run A1 --tls-ticket-key k1
check_device dev img
restart_run A2 --tls-ticket-key k1
full=$(grep -c 'TLS handshake done (full)' A2.log || true)
resumed=$(grep -c 'TLS handshake done (resumed session)' A2.log || true)
[ "$full" = 0 ] && [ "$resumed" -ge 1 ] || fail "after a restart with the same key: $full full, $resumed resumed handshakes"
restart_run A3
full=$(grep -c 'TLS handshake done (full)' A3.log || true)
[ "$full" -ge 1 ] || fail "after a restart without a key the device still resumed (no full handshake)"
ok "TLS 1.3: the device resumes after a restart with the same key, not without"

# Bad input.
serve_refuses() { # serve_refuses REGEX ARGS...
  local re=$1 rc=0; shift
  timeout 10 "$T" serve --listen 127.0.0.1:0 --tls-cert srv.pem --tls-key srv.key "$@" img > bad.out 2>&1 || rc=$?
  [ $rc -eq 2 ] || fail "serve $* exited $rc, expected 2: $(cat bad.out)"
  grep -q -- "$re" bad.out || fail "serve $*: no /$re/ in: $(cat bad.out)"
}
head -c 48 /dev/urandom > k48 && chmod 600 k48
head -c 81 /dev/urandom > k81 && chmod 600 k81
mkfifo kfifo
serve_refuses "--tls-ticket-key k48 holds 48 bytes, not 80: a ticket key is 80 random bytes (48-byte keys, AES-128, are not taken); make one with tcpota keygen --ticket-key --out FILE" --tls-ticket-key k48
serve_refuses "--tls-ticket-key k81 holds more than 80 bytes, not 80" --tls-ticket-key k81
# 80 bytes, but no key: whoever guesses it opens and forges every ticket.
printf 'a%.0s' {1..80} > kweak && chmod 600 kweak
serve_refuses "--tls-ticket-key kweak does not look random (1 distinct byte values in 80; random bytes have about 69): make one with tcpota keygen --ticket-key --out FILE" --tls-ticket-key kweak
serve_refuses "--tls-ticket-key: kfifo is not a regular file (it is a FIFO)" --tls-ticket-key kfifo
serve_refuses "--tls-ticket-key: cannot open nothere: No such file" --tls-ticket-key nothere
serve_refuses "at most 4 --tls-ticket-key" --tls-ticket-key k1 --tls-ticket-key k1 --tls-ticket-key k1 \
  --tls-ticket-key k1 --tls-ticket-key k1
# A key file named twice: refused, by the same name or another (a rotation
# meant two keys, and the old one is missing); before, taken without a word.
ln k1 k1hard && ln -s k1 k1sym
twice="; give each key file once: the first seals new tickets, the others open older ones (to rotate: the new key first, the old one second)"
serve_refuses "^tcpota serve: --tls-ticket-key k1 is given twice$twice" --tls-ticket-key k1 --tls-ticket-key k1
serve_refuses "^tcpota serve: --tls-ticket-key k1 and k1hard are the same file$twice" --tls-ticket-key k1 --tls-ticket-key k1hard
serve_refuses "^tcpota serve: --tls-ticket-key k1 and k1sym are the same file$twice" --tls-ticket-key k2 --tls-ticket-key k1 --tls-ticket-key k1sym
printf 'tls-ticket-key k2\ntls-ticket-key k2\n' > twice.conf
serve_refuses "^tcpota serve: --tls-ticket-key k2 is given twice" --config twice.conf
serve_refuses "--tls-ticket-lifetime: '0' is out of range: give a whole number in 1..604800" --tls-ticket-lifetime 0
serve_refuses "--tls-ticket-lifetime: '604801' is out of range" --tls-ticket-lifetime 604801
rc=0; "$T" serve --listen 127.0.0.1:0 --tls-ticket-lifetime 60 img > bad.out 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "--tls-ticket-lifetime needs --tls-cert and --tls-key" bad.out ||
  fail "a ticket lifetime without TLS: rc $rc: $(cat bad.out)"
rc=0; "$T" serve --listen 127.0.0.1:0 --tls-ticket-key k1 img > bad.out 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q -- "--tls-ticket-key needs --tls-cert and --tls-key" bad.out ||
  fail "a ticket key without TLS: rc $rc: $(cat bad.out)"
cp k1 kopen && chmod 644 kopen
node W --tls-ticket-key kopen
grep -q "warning: --tls-ticket-key kopen can be read by other users (mode 644); chmod 600 kopen" W.log ||
  fail "no warning for a readable ticket key: $(cat W.log)"
# Two files of the same bytes (copies, as systemd's LoadCredential= makes of
# one file named twice) start, warned about: the old key is missing.
cp k1 k1copy
node K --tls-ticket-key k1 --tls-ticket-key k1copy
grep -q "warning: --tls-ticket-key k1 and k1copy hold the same key: the second opens no ticket the first does not; to rotate, make a new key (tcpota keygen --ticket-key --out FILE) and give it first, the old one second" K.log ||
  fail "no warning for two copies of one key: $(cat K.log)"
ok "bad ticket keys refused with what to do (a file named twice too); a readable one, or two copies of one key, warned about"
