#!/usr/bin/env bash
# Rules of the server's session that a mutation review of the server found
# no test for, each driven by hand (session.py):
#  - a COMPLETE reporting a final failure (not integrity) marks the image
#    failed for that device id: its next HELLO, from a flash with no record
#    of its own, gets NO_UPDATE, not the same image again;
#  - 300 PINGs in one read are all answered (the session's 1536-byte reply
#    buffer is emptied into the queue as it fills: 128 and more PONGs in
#    one read once ended the session);
#  - a --manifest larger than TCPOTA_MAX_MANIFEST is refused as such,
#    before it is parsed.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_image img 20000
start_server img 2.0.0
# status: -TCPOTA_ERR_IO (5), a storage failure after all bytes came.
out=$(python3 "$E2E/session.py" "$SERVER_PORT" cf-1 complete 5)
echo "$out" | grep -q '^CLOSED' || fail "the session did not reach COMPLETE: $out"
wait_line "$WORK/server.log" '\[cf-1 .*failed: device reports .*is not offered to it again' 5
again=$(python3 "$E2E/session.py" "$SERVER_PORT" cf-1 hello-only)
[ "$again" = NO_UPDATE ] || fail "after a final COMPLETE failure the image was offered again: $again"
stop_server
ok "a final COMPLETE failure holds the image back from that device"

make_image img2 200000
start_server img2 2.0.0
out=$(python3 "$E2E/session.py" "$SERVER_PORT" pinger pings 300 2>&1 || true)
[ "$out" = "OFFER 200000
PONGS 300" ] || fail "a burst of 300 PINGs: $out"
stop_server
ok "300 PINGs in one read: 300 PONGs, the session goes on"

head -c 2000 /dev/urandom > big.manifest
rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --manifest big.manifest --no-require-signed \
  --version 2.0.0 img 2> err.log || rc=$?
[ $rc -eq 2 ] || fail "exit $rc: $(cat err.log)"
grep -q 'manifest big.manifest is larger than 1024 bytes; is it a manifest?' err.log ||
  fail "not refused as too large: $(cat err.log)"
ok "a 2000-byte manifest is refused as larger than 1024 bytes"
