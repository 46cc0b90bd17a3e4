#!/usr/bin/env bash
# HTTP downloads for esp_https_ota devices (docs/http-ota.md), on a listener
# of their own (--ota-listen): 204 without a rollout; a 1 MiB image reaches
# curl byte-exact through 3 cuts, each resume (-C -) asking only for the
# bytes it lacks; ETag and If-Range as RFC 9110 says; 416; HEAD; bad
# requests answered 4xx; an esp_https_ota-like client (ota_resumption)
# through cuts, then reporting its new version: updated in the registry; a
# client that starts over on its old version after a whole download: failed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

CLIENT="python3 $(dirname "$0")/esp_ota_client.py"
SIZE=1048576
make_image "$WORK/img" $SIZE
SHA=$(sha256sum "$WORK/img" | cut -d' ' -f1)
start_fleet --ota-listen 127.0.0.1:0
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
# Another server with its downloads on the same port: exit 1, why and what
# to do (before: "address in use or not valid here", no reason).
rc=0
timeout 10 "$TCPOTA" serve --data "$WORK/other" --listen 127.0.0.1:0 --api 127.0.0.1:0 \
  --ota-listen "127.0.0.1:$OTA_PORT" 2> "$WORK/busy.log" || rc=$?
[ $rc -eq 1 ] && grep -q "cannot listen on 127.0.0.1:$OTA_PORT for HTTP downloads: Address already in use (another program, perhaps another tcpota serve, listens there: stop it or give another --ota-listen)" "$WORK/busy.log" ||
  fail "a busy --ota-listen: rc $rc: $(cat "$WORK/busy.log")"
ok "a busy --ota-listen port: said, with what to do"
# A host that does not resolve (.invalid never does): said so, not a stale
# errno of an earlier call ("No such file or directory", as evhttp left it).
rc=0
timeout 20 "$TCPOTA" serve --data "$WORK/other2" --listen 127.0.0.1:0 --api 127.0.0.1:0 \
  --ota-listen "nosuch.invalid:$OTA_PORT" 2> "$WORK/unres.log" || rc=$?
line=$(grep "cannot listen on nosuch.invalid:$OTA_PORT for HTTP downloads: " "$WORK/unres.log" || true)
[ $rc -eq 1 ] && [ -n "$line" ] && ! grep -qE "No such file|Resource temporarily|Success" <<< "$line" ||
  fail "an --ota-listen host that does not resolve: rc $rc: $(cat "$WORK/unres.log")"
# ...and libevent's own line does not come first, out of the log's format
# (before: "[warn] getaddrinfo: nodename nor servname provided, or not known").
! grep -q '^\[warn\]' "$WORK/unres.log" || fail "libevent's own line on stderr: $(cat "$WORK/unres.log")"
ok "an --ota-listen host that does not resolve: said so"

# A tcpota device sent to the download port: its HELLO (binary) is answered
# 400 at once, and the device says it reached an HTTP port and stops (before:
# evhttp waited for a line's end, the device 30 s for an answer, 20 times).
rc=0; t0=$(date +%s)
"$TCPOTA" device --server "127.0.0.1:$OTA_PORT" --flash "$WORK/wrongport" --quiet 2> "$WORK/wrongport.log" || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -eq 1 ] && [ "$s" -le 5 ] || fail "a device on the download port: exit $rc after $s s: $(cat "$WORK/wrongport.log")"
grep -q "the server answered in HTTP: the address names an HTTP port (tcpota serve's API or downloads?), not its device port (tcpota serve --listen); not retrying" "$WORK/wrongport.log" ||
  fail "a device on the download port was not told: $(cat "$WORK/wrongport.log")"
wait_line "$WORK/server.log" "http: not an HTTP request \(byte 0x01: a tcpota device\? it connects to the device port, --listen\); answered 400, closing" 5
# An https:// client on this plain port: named as one (not a tcpota device).
curl -sk --max-time 5 -o /dev/null "https://127.0.0.1:$OTA_PORT/ota/esp32?device=tlsdev" || true
wait_line "$WORK/server.log" "http: a TLS handshake on the plain download port: the device's URL must be http://, or give the server --tls-cert for https://; closing" 5
# A tcpota device with TLS (--ca) there: the 400 in the clear is said to be
# an HTTP port's (before: "a plain tcpota port: leave out --ca").
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/ca0.key" \
  -out "$WORK/ca0.pem" -days 2 -subj /CN=localhost > /dev/null 2>&1 || fail "openssl could not make a certificate"
rc=0
"$TCPOTA" device --server "127.0.0.1:$OTA_PORT" --ca "$WORK/ca0.pem" --flash "$WORK/wrongtls0" --quiet \
  2> "$WORK/wrongtls0.log" || rc=$?
[ $rc -eq 1 ] && grep -q "TLS handshake failed: the server answered in HTTP, without TLS: the address names an HTTP port (tcpota serve's API or downloads?), not its device port (tcpota serve --listen); not retrying" "$WORK/wrongtls0.log" ||
  fail "a TLS device on the plain download port: rc $rc: $(cat "$WORK/wrongtls0.log")"
ok "a tcpota device on the download port: answered 400 at once, told it reached an HTTP port (with TLS too); an https:// client named"
[ -n "$OTA_PORT" ] || fail "no download port in: $(grep 'listening on' "$WORK/server.log")"
OTA="http://127.0.0.1:$OTA_PORT/ota/esp32"
# Two Content-Lengths (libevent takes the first; a proxy may take the
# last): 400 and the connection closed, the bytes after it never a request.
# So is a header name that is no token ("Content-Length : 40": a lenient
# proxy may frame by it, libevent keeps it as a name of its own).
python3 - "$OTA_PORT" <<'PY' || fail "two Content-Lengths, or a name that is no token, on the download port (above)"
import socket, sys
for head, says in ((b"Content-Length: 0\r\nContent-Length: 40", b"Content-Length given twice"),
                   (b"Content-Length : 40", b"a header name holds a space"),
                   (b"X(y): 1", b"a header name holds a space or another byte")):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(b"GET /ota/esp32?device=x HTTP/1.1\r\nHost: x\r\n" + head +
              b"\r\n\r\nGET /ota/esp32?device=y HTTP/1.1\r\nHost: x\r\n\r\n")
    got = s.makefile("rb").read()  # to the server's close
    n = got.count(b"HTTP/1.1 ")
    if n != 1 or b"HTTP/1.1 400" not in got or says not in got:
        sys.exit(f"{head!r}: answers: {got[:400]!r}")
PY
# An HTTP/1.1 request without Host (RFC 9112: 400), the one behind it never read.
python3 - "$OTA_PORT" <<'PY' || fail "an HTTP/1.1 download without Host, or with two (above)"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /ota/esp32?device=x HTTP/1.1\r\nX-Tcpota-Version: 1.0.0\r\n\r\n"
          b"GET /ota/esp32?device=y HTTP/1.1\r\nHost: x\r\n\r\n")
got = s.makefile("rb").read()  # to the server's close
if got.count(b"\r\nDate: ") != 1 or b"HTTP/1.1 400" not in got or b"without Host; send Host:" not in got:
    sys.exit(f"answers: {got[:400]!r}")
# Host twice: 400 too (a mutation review: only the API's test had it).
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /ota/esp32?device=x HTTP/1.1\r\nHost: x\r\nHost: y\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
got = s.makefile("rb").read()  # to the server's close
if b"HTTP/1.1 400" not in got or b"Host given twice; send it once" not in got:
    sys.exit(f"Host twice: {got[:400]!r}")
PY

# get NAME URL [CURL ARGS...]: status code to stdout; headers in NAME.h, body in NAME.b.
get() {
  local name=$1 url=$2; shift 2
  curl -sS -D "$WORK/$name.h" -o "$WORK/$name.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "$@" "$url"
}
header() { sed -nE "s/^$1: ([^\r]*)\r?$/\1/Ip" "$WORK/$2.h" | head -1; }

# ---- nothing to serve yet; not on the API's listener -------------------------
[ "$(get none "$OTA?device=h-0")" = 204 ] || fail "no rollout: not 204"
header X-Tcpota-Reason none | grep -q 'no rollout for model esp32' || fail "204 without the reason"
[ "$(device_state h-0)" = up-to-date ] || fail "h-0 is $(device_state h-0)"
"$TCPOTA" device show --json h-0 | jq_py 'j["protocol"]' | grep -qx http || fail "h-0 not registered as http"
# With --ota-listen the API's listener serves no download, and says where
# they are, without the token (before: 401 "missing or wrong API token").
code=$(curl -s -o "$WORK/misdir.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$API_PORT/ota/esp32?device=h-0")
[ "$code" = 404 ] && grep -qF "this is the API of tcpota serve, not its download port: HTTP downloads are on 127.0.0.1:$OTA_PORT (--ota-listen); point the device's URL there" "$WORK/misdir.b" ||
  fail "with --ota-listen the API listener answered /ota with $code: $(cat "$WORK/misdir.b")"
wait_line "$WORK/server.log" "API: /ota/esp32 asked of the API by 127\.0\.0\.1:[0-9]+: HTTP downloads are on 127\.0\.0\.1:$OTA_PORT \(--ota-listen\); answered 404" 5
# "/ota" alone (a URL without its model) too: not asked for the API's token.
code=$(curl -s -o "$WORK/misdir0.b" -w '%{http_code}' "http://127.0.0.1:$API_PORT/ota")
[ "$code" = 404 ] && grep -qF "HTTP downloads are on 127.0.0.1:$OTA_PORT" "$WORK/misdir0.b" ||
  fail "/ota alone on the API's listener: $code $(cat "$WORK/misdir0.b")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$OTA_PORT/v1/images")
[ "$code" = 404 ] || fail "the download listener answered /v1/images with $code"
# The fleet CLI given the download port for the API's: told where the API
# is (before: "no such path /v1/images; downloads are GET /ota/...").
rc=0
"$TCPOTA" image list --api "http://127.0.0.1:$OTA_PORT" > /dev/null 2> "$WORK/cli-ota.err" || rc=$?
[ $rc -eq 1 ] && grep -q "no such path /v1/images on tcpota serve's HTTP download port (--ota-listen): the API, the dashboard and /metrics are on its --api address" "$WORK/cli-ota.err" ||
  fail "the CLI given the download port: rc $rc: $(cat "$WORK/cli-ota.err")"
# A path that libevent parses as a host and a path ("//ota/..."): named as
# sent (before: "no such path /esp32/x.bin").
curl -s --path-as-is "http://127.0.0.1:$OTA_PORT//ota/esp32/x.bin?device=h-0" > "$WORK/dslash.b" || true
grep -q '"no such path //ota/esp32/x.bin on tcpota serve' "$WORK/dslash.b" || fail "//ota/...: $(cat "$WORK/dslash.b")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SERVER_PORT/ota/esp32?device=h-0") || true
[ "$code" = 000 ] || fail "the device port answered HTTP with $code"
wait_line "$WORK/server.log" "unknown protocol \(first byte 0x47: an HTTP request, but this port speaks tcpota's protocol; HTTP downloads are on 127\.0\.0\.1:$OTA_PORT\); closing\$" 3
ok "no rollout: 204 with its reason, the device registered (http); /ota only on --ota-listen, the device port says where"

"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"

# ---- curl -C - through 3 cuts ------------------------------------------------
start_proxy cutter "$OTA_PORT" --cut-at 200000,500000,800000
PROXY_CUT_PID=$PROXY_PID
: > "$WORK/curl.out"
asked=()
for try in 1 2 3 4 5 6; do
  have=$(stat -c %s "$WORK/curl.bin" 2>/dev/null || echo 0)
  asked+=("$have")
  rc=0
  curl -sS -C - -o "$WORK/curl.bin" -H 'X-Tcpota-Version: 1.0.0' \
    "http://127.0.0.1:$PROXY_PORT/ota/esp32/curl-1.bin" 2>> "$WORK/curl.out" || rc=$?
  [ $rc -eq 0 ] && break
done
[ $rc -eq 0 ] || fail "curl did not finish in 6 tries: $(cat "$WORK/curl.out")"
cmp "$WORK/curl.bin" "$WORK/img" || fail "curl's copy differs from the image"
[ "$(grep -c 'cut at' "$WORK/cutter.log")" -eq 3 ] || fail "the proxy did not cut 3 times"
[ ${#asked[@]} -eq 4 ] || fail "curl needed ${#asked[@]} requests for 3 cuts"
# The server saw each resume ask for exactly what curl had.
mapfile -t ranges < <(sed -nE 's/.*\[curl-1 [^]]*\] http: GET (bytes=([0-9]+)-|\(no Range\)).*/\2/p' "$WORK/server.log")
[ "${#ranges[@]}" -eq 4 ] || fail "server logged ${#ranges[@]} requests of curl-1: ${ranges[*]}"
for i in 0 1 2 3; do
  want=${asked[$i]}; [ "$want" = 0 ] && want=""
  [ "${ranges[$i]}" = "$want" ] || fail "request $i asked from '${ranges[$i]}', curl had ${asked[$i]}"
done
kill -USR1 "$PROXY_CUT_PID"
wait_line "$WORK/cutter.log" 'down_bytes='
down=$(sed -nE 's/.*down_bytes=([0-9]+).*/\1/p' "$WORK/cutter.log" | tail -1)
over=$((down - SIZE))
[ $over -ge 0 ] && [ $over -lt $((4 * 512)) ] ||
  fail "the proxy carried $down bytes down for a $SIZE-byte image: $over more than the image"
[ "$(device_state curl-1)" = verified ] || fail "curl-1 is $(device_state curl-1), not verified"
# Asking again after every byte, on the old version, is a failure only as a
# new download from byte 0 (below): a HEAD, a range from the end (what
# `curl -C -` sends for a file it has whole) or from further in are not.
[ "$(get head1 "$OTA?device=curl-1" -I)" = 200 ] || fail "HEAD after the download: $(cat "$WORK/head1.h")"
[ "$(get end1 "$OTA?device=curl-1" -H "Range: bytes=$SIZE-")" = 416 ] || fail "a range from the end: not 416"
[ "$(get mid1 "$OTA?device=curl-1" -H 'Range: bytes=1000-')" = 206 ] || fail "a range from 1000: not 206"
[ "$(device_state curl-1)" = verified ] || fail "a HEAD or a range after the download made curl-1 $(device_state curl-1)"
ok "1 MiB byte-exact through 3 cuts; resumes asked from ${asked[*]}; $over bytes beyond the image (headers only)"

# ---- ETag, If-Range, 416, HEAD ------------------------------------------------
# One device per request: a whole download followed by a new one from byte 0
# on the old version is a failure, by the rule checked further down.
[ "$(get full "$OTA?device=e-1")" = 200 ] || fail "GET: not 200"
[ "$(header ETag full)" = "\"$SHA\"" ] || fail "ETag $(header ETag full), not the SHA-256"
[ "$(header Content-Length full)" = $SIZE ] || fail "Content-Length $(header Content-Length full)"
[ "$(header Accept-Ranges full)" = bytes ] || fail "no Accept-Ranges: bytes"
cmp "$WORK/full.b" "$WORK/img" || fail "GET body differs"
[ "$(get part "$OTA?device=e-2" -H 'Range: bytes=1000-1999' -H "If-Range: \"$SHA\"")" = 206 ] ||
  fail "matching If-Range: not 206"
[ "$(header Content-Range part)" = "bytes 1000-1999/$SIZE" ] || fail "Content-Range $(header Content-Range part)"
cmp <(tail -c +1001 "$WORK/img" | head -c 1000) "$WORK/part.b" || fail "206 body is not bytes 1000-1999"
[ "$(get stale "$OTA?device=e-3" -H 'Range: bytes=1000-' -H "If-Range: \"0$SHA\"")" = 200 ] ||
  fail "If-Range of another image: not 200"
cmp "$WORK/stale.b" "$WORK/img" || fail "If-Range mismatch did not send the whole image"
[ "$(get weak "$OTA?device=e-4" -H 'Range: bytes=1000-' -H "If-Range: W/\"$SHA\"")" = 200 ] ||
  fail "weak If-Range: not 200"
[ "$(get tail "$OTA?device=e-5" -H 'Range: bytes=-100')" = 206 ] || fail "suffix range: not 206"
cmp <(tail -c 100 "$WORK/img") "$WORK/tail.b" || fail "bytes=-100 is not the last 100 bytes"
[ "$(get past "$OTA?device=e-6" -H "Range: bytes=$SIZE-")" = 416 ] || fail "range past the end: not 416"
[ "$(header Content-Range past)" = "bytes */$SIZE" ] || fail "416 without Content-Range: bytes */size"
# A start that does not fit in 64 bits is past the end as well: 416, not 400.
for start in 18446744073709551615 99999999999999999999999; do
  [ "$(get huge "$OTA?device=e-6" -H "Range: bytes=$start-")" = 416 ] ||
    fail "range from $start: not 416 ($(cat "$WORK/huge.b"))"
  [ "$(header Content-Range huge)" = "bytes */$SIZE" ] || fail "416 of bytes=$start- without bytes */size"
done
[ "$(get head "$OTA?device=e-7" -I)" = 200 ] || fail "HEAD: not 200"
# curl -I writes the headers as its output: no more than them arrived.
[ "$(header Content-Length head)" = $SIZE ] && [ "$(stat -c %s "$WORK/head.b")" -lt 1024 ] ||
  fail "HEAD: wrong length, or a body came"
ok "ETag is the SHA-256; If-Range matching 206, other or weak 200; bytes=-N; 416 with bytes */size; HEAD"

# ---- bad requests ---------------------------------------------------------------
bad() { # bad CODE WHAT URL [CURL ARGS...]
  local want=$1 what=$2 url=$3 code; shift 3
  code=$(curl -s -o "$WORK/bad.b" -w '%{http_code}' "$@" "$url")
  [ "$code" = "$want" ] || fail "$what: $code, expected $want ($(cat "$WORK/bad.b"))"
  [ "$want" = 431 ] || grep -q '"error"' "$WORK/bad.b" || fail "$what: no error message"
}
V=(-H 'X-Tcpota-Version: 1.0.0')
bad 400 "bad range" "$OTA?device=h-2" "${V[@]}" -H 'Range: bytes=abc'
bad 400 "range backwards" "$OTA?device=h-2" "${V[@]}" -H 'Range: bytes=9-3'
# Range and If-Range longer than the server keeps (200 bytes): refused, not
# copied past their buffer (a test the removed length check failed only
# under ASan, so the message is checked too).
long="bytes=0-$(printf '0%.0s' $(seq 300))"
bad 400 "long Range" "$OTA?device=h-2" "${V[@]}" -H "Range: $long"
grep -q 'Range: longer than 200 bytes' "$WORK/bad.b" || fail "long Range: $(cat "$WORK/bad.b")"
bad 400 "long If-Range" "$OTA?device=h-2" "${V[@]}" -H 'Range: bytes=0-9' -H "If-Range: \"$(printf 'e%.0s' $(seq 300))\""
grep -q 'If-Range: longer than 200 bytes' "$WORK/bad.b" || fail "long If-Range: $(cat "$WORK/bad.b")"
# One byte over (201): the bound itself, not just a long header.
bad 400 "Range of 201 bytes" "$OTA?device=h-2" "${V[@]}" -H "Range: bytes=$(printf ' %.0s' $(seq 192))0-9"
grep -q 'Range: longer than 200 bytes' "$WORK/bad.b" || fail "Range of 201 bytes: $(cat "$WORK/bad.b")"
bad 400 "If-Range of 201 bytes" "$OTA?device=h-2" "${V[@]}" -H 'Range: bytes=0-9' \
  -H "If-Range: \"$(printf 'e%.0s' $(seq 199))\""
grep -q 'If-Range: longer than 200 bytes' "$WORK/bad.b" || fail "If-Range of 201 bytes: $(cat "$WORK/bad.b")"
bad 400 "no device" "$OTA" "${V[@]}"
bad 400 "bad device id" "$OTA/bad%09id.bin" "${V[@]}"
bad 400 "device id too long" "$OTA?device=$(printf 'x%.0s' $(seq 65))" "${V[@]}"
bad 400 "bad model" "http://127.0.0.1:$OTA_PORT/ota/$(printf 'm%.0s' $(seq 40))?device=h-2" "${V[@]}"
# A path segment longer than its decoding buffer, and a NUL decoded into a
# model or a device id (which would cut the name short): refused.
bad 400 "model of 300 bytes" "http://127.0.0.1:$OTA_PORT/ota/$(printf 'm%.0s' $(seq 300))?device=h-2" "${V[@]}"
# Segments of the decoding buffer's size exactly and one byte less (193 and
# 192 bytes; the ASan pass sees a terminator written past it).
bad 400 "model of 193 bytes" "http://127.0.0.1:$OTA_PORT/ota/$(printf 'm%.0s' $(seq 193))?device=h-2" "${V[@]}"
bad 400 "model of 192 bytes" "http://127.0.0.1:$OTA_PORT/ota/$(printf 'm%.0s' $(seq 192))?device=h-2" "${V[@]}"
bad 400 "device id of 193 bytes" "http://127.0.0.1:$OTA_PORT/ota/esp32/$(printf 'd%.0s' $(seq 189)).bin" "${V[@]}"
bad 400 "NUL in the model" "http://127.0.0.1:$OTA_PORT/ota/esp32%00x?device=h-2" "${V[@]}"
bad 400 "NUL in the device id" "$OTA/h-2%00x.bin" "${V[@]}"
# A model of other than printable ASCII characters, or none; a path that is not
# <id>.bin: refused, never taken as a model or a device id.
bad 400 "a tab in the model" "http://127.0.0.1:$OTA_PORT/ota/esp%0932?device=h-2" "${V[@]}"
bad 400 "no model" "http://127.0.0.1:$OTA_PORT/ota/?device=h-2" "${V[@]}"
bad 400 "not <id>.bin" "$OTA/h-2.img" "${V[@]}"
bad 400 "unknown parameter" "$OTA?device=h-2&debug=1" "${V[@]}"
# 300 connections held, each made once the server has taken the one before
# (its descriptor count grew): the download listener's table of connections
# by descriptor grows past its first 256 entries one descriptor at a time,
# and the ASan pass sees a write past its end should descriptor 256 get no
# room (in a burst, the accepts of one loop turn are admitted highest
# first, which grows the table before 256 comes). It serves on after.
python3 - "$OTA_PORT" "$SERVER_PID" <<'PY' || fail "300 connections to the download port (above)"
import os, socket, sys, time
fds = lambda: len(os.listdir("/proc/%s/fd" % sys.argv[2]))
socks = []
for i in range(300):
    before = fds()
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i % 2), 0))  # within the per-address limit
    s.connect(("127.0.0.1", int(sys.argv[1])))
    socks.append(s)
    t0 = time.monotonic()
    while fds() <= before and time.monotonic() - t0 < 2:
        time.sleep(0.0005)
for s in socks:
    s.close()
PY
bad 400 "no device, after 300 connections" "$OTA" "${V[@]}"
# badmsg CODE WHAT TEXT URL [CURL ARGS...]: bad, and the answer says TEXT.
badmsg() {
  local want=$1 what=$2 text=$3; shift 3
  bad "$want" "$what" "$@"
  grep -qF -- "$text" "$WORK/bad.b" || fail "$what: $(cat "$WORK/bad.b")"
}
badmsg 400 "device twice" 'device: given twice' "$OTA?device=h-2&device=h-3" "${V[@]}"
badmsg 400 "device id too long" "device: longer than 64 characters: an id is 1 to 64 printable ASCII characters" \
  "$OTA?device=$(printf 'x%.0s' $(seq 65))" "${V[@]}"
# A header given twice is refused as a parameter is: libevent hands over
# the first, which may not be the one the device meant.
badmsg 400 "version header twice" 'X-Tcpota-Version: given twice' "$OTA?device=h-2" "${V[@]}" \
  -H 'X-Tcpota-Version: 1.0.1'
badmsg 400 "Range twice" 'Range: given twice' "$OTA?device=h-2" "${V[@]}" -H 'Range: bytes=0-9' \
  -H 'Range: bytes=100-'
badmsg 400 "device in the path and the query" 'the path names the device already' \
  "$OTA/h-2.bin?device=h-3" "${V[@]}"
badmsg 400 "?version= and the header differ" '?version= and X-Tcpota-Version differ' \
  "$OTA?device=h-2&version=2.0.0" "${V[@]}"
# A version refused says the whole rule, spaces included (before: "1..32
# printable ASCII characters", and "too long" alone for a long ?version=).
RULE='send the version the device runs (1..32 printable ASCII characters, no spaces) in the header X-Tcpota-Version (or ?version=)'
badmsg 400 "?version= too long" "version: longer than 32 characters; $RULE" \
  "$OTA?device=h-2&version=$(printf '1%.0s' $(seq 80))"
badmsg 400 "header version too long" "version: longer than 32 characters; $RULE" "$OTA?device=h-2" \
  -H "X-Tcpota-Version: $(printf '1%.0s' $(seq 40))"
# 4 KB of it: past the request's own memory, where ASan sees a copy
# (a mutation review dropped the length check: 40 bytes stay inside it).
badmsg 400 "header version of 4 KB" "version: longer than 32 characters; $RULE" "$OTA?device=h-2" \
  -H "X-Tcpota-Version: $(printf '1%.0s' $(seq 4000))"
badmsg 400 "no version" "version: none given; $RULE" "$OTA?device=h-2"
# A NUL decoded into a query value would cut it short (libevent keeps
# values as C strings): x%00y must not register device x, nor 1.0.0%00zz
# report version 1.0.0.
sleep 1.1 # the refusals above used this second's lines of the log (OTA_REFUSED_LOG_BURST)
badmsg 400 "NUL in ?device=" 'device: ' "$OTA?device=q-1%00y" "${V[@]}"
grep -q 'not printable' "$WORK/bad.b" || fail "NUL in ?device=: $(cat "$WORK/bad.b")"
# ... nor name device q-1 in the log (before: "[q-1 ...] http: refused").
wait_line "$WORK/server.log" "\[- [^]]*\] http: refused /ota/esp32\?device=q-1%00y with 400" 5
! grep -q '\[q-1 ' "$WORK/server.log" || fail "the log names q-1 for q-1%00y: $(grep '\[q-1 ' "$WORK/server.log")"
badmsg 400 "NUL in ?version=" 'version: ' "$OTA?device=q-2&version=1.0.0%00zz"
grep -qF "not printable; $RULE" "$WORK/bad.b" || fail "NUL in ?version=: $(cat "$WORK/bad.b")"
# A '%' without two hex digits (libevent keeps it as it is): refused, not
# registered as "q-3%zz" (a new user's trial).
badmsg 400 "a bad escape in ?device=" "device: a '%' not followed by two hex digits; write a '%' as %25" \
  "$OTA?device=q-3%zz" "${V[@]}"
badmsg 400 "a '%' ending ?device=" "device: a '%' not followed" "$OTA?device=q-4%" "${V[@]}"
badmsg 400 "a bad escape in the path's id" "device: a '%' not followed by two hex digits; write a '%' as %25; an id in /ota/<model>/<id>.bin is 1..64 printable ASCII characters" \
  "$OTA/q-5%zz.bin" "${V[@]}"
# An id given but not printable ASCII is said so, not "give the device id"
# as if none came (a trial's percent-encoded UTF-8); the path's NUL too.
for u in "$OTA/%C3%A9.bin" "$OTA?device=%C3%A9" "$OTA/a%7fb.bin"; do
  badmsg 400 "$u" "device: a byte that is not printable ASCII (0x20..0x7e) in it: a percent-encoded UTF-8 letter, or a control character; an id is 1..64 printable ASCII characters" "$u" "${V[@]}"
done
badmsg 400 "a NUL in the path's id" "device: %00 decodes to a byte that is not printable" "$OTA/a%00b.bin" "${V[@]}"
badmsg 400 "a model not ASCII" "model: a byte that is not printable ASCII" \
  "http://127.0.0.1:$OTA_PORT/ota/es%C3%A9p?device=q-6" "${V[@]}"
badmsg 400 "no device at all" "device: give the device id (1..64 printable ASCII characters) as ?device=<id> or /ota/<model>/<id>.bin" "$OTA" "${V[@]}"
for d in q-1 q-2 q-3%zz q-3 q-4% q-4 q-5%zz; do
  [ -z "$(device_state "$d" 2>/dev/null || true)" ] || fail "device $d was registered from a cut or bad value"
done
# A version that is not printable ASCII characters without spaces: refused, not
# stored as what the device runs.
badmsg 400 "a space in the version" "version: a space or a character that is not printable in it; $RULE" \
  "$OTA?device=h-2" -H 'X-Tcpota-Version: 1.0 beta'
badmsg 400 "a space in ?version=" "version: a space or a character that is not printable in it; $RULE" \
  "$OTA?device=h-2&version=1.0%20beta"
# A '+' in ?version= is a space once decoded: said so, with %2B (a trial was
# told of a space it had not typed); a long unknown name is shortened so
# that the reason stays in the answer.
badmsg 400 "a + in ?version=" "version: a '+' in a query stands for a space: write it as %2B" \
  "$OTA?device=h-2&version=1.0.0+build5"
badmsg 400 "a long unknown name" "$(printf 'x%.0s' $(seq 40))...: unknown query parameter (device and version are known)" \
  "$OTA?device=h-2&$(printf 'x%.0s' $(seq 700))=1" "${V[@]}"
badmsg 400 "a tab in ?version=" "version: a space or a character that is not printable in it; $RULE" \
  "$OTA?device=h-2&version=1.0%091"
bad 405 "POST" "$OTA?device=h-2" "${V[@]}" -X POST
# CONNECT, which libevent takes for a tunnel (no length on its answer, the
# connection held 60 s): 405 with its length, closed at once (curl ends
# before its 5 s; a hostile trial's client hung).
code=$(curl -sS --max-time 5 -X CONNECT -D "$WORK/connect.h" -o "$WORK/connect.b" -w '%{http_code}' "$OTA?device=h-2" 2> "$WORK/connect.err") &&
  [ "$code" = 405 ] && grep -q 'downloads answer GET and HEAD only' "$WORK/connect.b" &&
  grep -qi '^Allow: GET, HEAD' "$WORK/connect.h" ||
  fail "CONNECT: $code $(cat "$WORK/connect.h" "$WORK/connect.b" "$WORK/connect.err")"
code=$(python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ota/esp32?device=h-2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
print(s.recv(100).split(b" ")[1].decode())' "$OTA_PORT")
[ "${code:0:1}" = 4 ] || fail "headers of 20 kB: answered $code"
# A request's bytes that are not UTF-8, echoed in the refusal: written
# \xNN in the JSON (jansson refuses them raw: the body was empty).
python3 - "$OTA_PORT" <<'PY' || fail "a query parameter of byte 0xff (above)"
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /ota/esp32?device=x&\xff=1 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n"
          b"Connection: close\r\n\r\n")
got = s.makefile("rb").read()
head, _, body = got.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 400") or not json.loads(body)["error"].startswith("\\xff: unknown query parameter"):
    sys.exit(f"answer: {got[:400]!r}")
PY
"$TCPOTA" device secret s-1 > /dev/null 2> "$WORK/s1.err" || fail "device secret failed"
! grep -q "checks in over HTTP" "$WORK/s1.err" || fail "s-1, never seen over HTTP, was warned of: $(cat "$WORK/s1.err")"
bad 403 "a device with a secret" "$OTA?device=s-1" "${V[@]}"
# A secret for a device that checks in over HTTP locks it out (until the
# device is removed): refused without --force (a trial locked one out with
# one command, warned only after), made with it, warned of.
[ "$(get hs "$OTA?device=hs-1" -I)" = 200 ] || fail "hs-1's check-in over HTTP"
rc=0; "$TCPOTA" device secret hs-1 --out "$WORK/hs1.secret" > "$WORK/hs1.out" 2> "$WORK/hs1.err" || rc=$?
[ $rc -eq 1 ] && grep -q "device hs-1 checks in over HTTP (esp_https_ota), which cannot authenticate: with a secret its downloads are refused (403) until the device is removed (tcpota device rm, which forgets its history too); that is right only for a device moving to tcpota's own protocol: then ask again with force=1 (tcpota device secret --force)" "$WORK/hs1.err" &&
  [ ! -e "$WORK/hs1.secret" ] || fail "a secret for an HTTP device without --force: exit $rc: $(cat "$WORK/hs1.err")"
[ "$(get hs "$OTA?device=hs-1" -I)" = 200 ] || fail "hs-1 refused after a secret was refused"
rc=0; curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TCPOTA_TOKEN" \
  "$TCPOTA_API/v1/devices/hs-1/secret?force=yes" > "$WORK/hs1.code" || true
[ "$(cat "$WORK/hs1.code")" = 400 ] || fail "force=yes: $(cat "$WORK/hs1.code")"
for no in 0 false; do # not forced: refused as without it
  rc=0; curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TCPOTA_TOKEN" \
    "$TCPOTA_API/v1/devices/hs-1/secret?force=$no" > "$WORK/hs1.code" || true
  [ "$(cat "$WORK/hs1.code")" = 409 ] || fail "force=$no: $(cat "$WORK/hs1.code")"
done
"$TCPOTA" device secret hs-1 --force --out "$WORK/hs1.secret" > "$WORK/hs1.out" 2> "$WORK/hs1.err" || fail "device secret hs-1 --force failed"
grep -q "tcpota device: warning: device hs-1 checks in over HTTP (esp_https_ota), which cannot authenticate: with a secret its HTTP downloads are refused (403) from now on; that is right only for a device moving to tcpota's own protocol (docs/http-ota.md)" "$WORK/hs1.err" ||
  fail "a secret for an HTTP device was not warned of: $(cat "$WORK/hs1.err" "$WORK/hs1.out")"
# Once it has one, replacing it (a rotation) needs no --force: nothing more
# is locked out (a mutation review refused it, and no test failed).
"$TCPOTA" device secret hs-1 --out "$WORK/hs1b.secret" > /dev/null 2> "$WORK/hs1b.err" ||
  fail "rotating hs-1's secret without --force: $(cat "$WORK/hs1b.err")"
! cmp -s "$WORK/hs1.secret" "$WORK/hs1b.secret" || fail "hs-1's rotated secret is the old one"
wait_line "$WORK/server.log" "device hs-1: its first secret made; it must authenticate with it from now on \(it checks in over HTTP, which cannot authenticate: its downloads are refused from now on\)"
bad 403 "an HTTP device given a secret" "$OTA?device=hs-1" "${V[@]}"
# Removed (device rm), its secret goes with it: its downloads are answered
# again at once, from the same server's memory (no restart).
"$TCPOTA" device rm hs-1 > /dev/null || fail "device rm hs-1 failed"
[ "$(get hs "$OTA?device=hs-1" -I)" = 200 ] || fail "hs-1 refused after device rm took its secret"
[ "$(device_state s-1 2>/dev/null || true)" != downloading ] || fail "s-1 was served"
[ "$(get alive "$OTA?device=e-9" -I)" = 200 ] || fail "the server did not survive the bad requests"
ok "bad range, version, device (twice, in path and query, a NUL in path or query), a NUL in ?version=, ?version= against the header, model (300 bytes, a NUL), parameter, method, 20 kB of headers, an id with a secret: 4xx; a secret for an HTTP device is warned of"

# ---- every refusal is a line of the log, a flood only a few -----------------------
# An operator must see why a stock device gets nothing (before: not a line
# for any 4xx): one warning per refusal, naming the device (when the
# request did), its address and what it was told. A fresh window of the
# limit (10 lines a second) for the three checked here.
sleep 1.1
bad 400 "a space in the version, logged" "$OTA?device=h-2" -H 'X-Tcpota-Version: 1.0 beta'
bad 403 "a device with a secret, logged" "$OTA?device=s-1" "${V[@]}"
bad 405 "DELETE, logged" "$OTA?device=h-2" "${V[@]}" -X DELETE
curl -s --max-time 5 -X CONNECT -o /dev/null "$OTA?device=h-2" || true
refused() { grep -E "^[^ ]+ tcpota serve: \[$1 127\.0\.0\.1:[0-9]+\] http: refused $2 with $3: $4" "$WORK/server.log"; }
refused h-2 '/ota/esp32\?device=h-2' 400 'version: a space or a character that is not printable in it; send' > /dev/null ||
  fail "no line for the refused version: $(grep 'http: refused' "$WORK/server.log" | tail -3)"
refused s-1 '/ota/esp32\?device=s-1' 403 'device s-1 authenticates with a secret' > /dev/null ||
  fail "no line for the 403 of s-1: $(grep 'http: refused' "$WORK/server.log" | tail -3)"
refused - '/ota/esp32\?device=h-2' 405 'downloads answer GET and HEAD only' > /dev/null ||
  fail "no line for the 405: $(grep 'http: refused' "$WORK/server.log" | tail -3)"
refused - '/ota/esp32\?device=h-2' 405 'downloads answer GET and HEAD only \(CONNECT: closed\)' > /dev/null ||
  fail "no line for the CONNECT's 405: $(grep 'http: refused' "$WORK/server.log" | tail -3)"
# The 416 of a range past the end: its range and the image's size.
grep -qE "\[e-6 127\.0\.0\.1:[0-9]+\] http: refused /ota/esp32\?device=e-6 with 416: Range: starts at or past the end of the image \(bytes=$SIZE-; the image has $SIZE bytes\)" \
  "$WORK/server.log" || fail "no line for the 416: $(grep 'with 416' "$WORK/server.log" | tail -3)"
# A peer sending 200 bad requests as fast as it can: at most 10 lines a
# second; the next line said tells how many were held back.
before=$(grep -c 'http: refused' "$WORK/server.log")
python3 - "$OTA_PORT" <<'PY' || fail "the flood of bad requests failed"
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for i in range(200):
    c.request("GET", "/ota/esp32?device=flood&debug=%d" % i, headers={"X-Tcpota-Version": "1.0.0"})
    r = c.getresponse()
    r.read()
    assert r.status == 400, r.status
PY
flood=$(( $(grep -c 'http: refused' "$WORK/server.log") - before ))
[ "$flood" -ge 1 ] && [ "$flood" -le 30 ] || fail "200 bad requests made $flood lines"
sleep 1.1
bad 400 "after the flood" "$OTA?device=h-2&debug=1" "${V[@]}"
held=$(sed -nE 's/.*\[h-2 [^]]*\] http: refused .*debug=1 with 400: .*\(and ([0-9]+) more refusals not logged since the last such line\)$/\1/p' "$WORK/server.log" | tail -1)
# On a loaded machine the flood may outlast a window: the lines said in
# the flood then carry counts of their own.
all=$(grep 'http: refused' "$WORK/server.log" | tail -n +"$((before + 1))" |
  sed -nE 's/.*\(and ([0-9]+) more refusals not logged since the last such line\)$/\1/p' | awk '{ s += $1 } END { print s + 0 }')
[ -n "$held" ] && [ $((all + flood)) -ge 200 ] ||
  fail "the line after the flood does not count it ($flood lines, held '$held', $all in all): $(grep 'http: refused' "$WORK/server.log" | tail -2)"
ok "every refusal a warning with device, address and reason (400, 403, 405, 416); 200 bad requests: $flood lines, then one saying $held more"

# ---- an esp_https_ota-like client through cuts, then its report ------------------
start_proxy espcut "$OTA_PORT" --cut-at 100000,300000,650000,900000
$CLIENT --url "http://127.0.0.1:$PROXY_PORT/ota/esp32/esp-1.bin" --slot "$WORK/esp1.slot" \
  --state "$WORK/esp1.nvs" --version 1.0.0 > "$WORK/esp1.log" 2>&1 || fail "esp-1 client failed"
cmp "$WORK/esp1.slot" "$WORK/img" || fail "esp-1's slot differs from the image"
[ "$(grep -c 'cut at' "$WORK/espcut.log")" -eq 4 ] || fail "the proxy did not cut esp-1 4 times"
starts=$(sed -nE 's/^request [0-9]+ range=([0-9]+) status=206.*/\1/p' "$WORK/esp1.log" | wc -l)
[ "$starts" -eq 4 ] || fail "esp-1 resumed $starts times with a Range, expected 4: $(cat "$WORK/esp1.log")"
grep -q 'done version=2.0.0' "$WORK/esp1.log" || fail "esp-1 did not end on 2.0.0"
grep -qE 'status=204 reason=rollout 1: runs this image already' "$WORK/esp1.log" ||
  fail "esp-1's report was not answered 204: $(tail -2 "$WORK/esp1.log")"
[ "$(device_state esp-1)" = updated ] || fail "esp-1 is $(device_state esp-1), not updated"
"$TCPOTA" device show esp-1 > "$WORK/esp1.show"
grep -q 'version     2.0.0' "$WORK/esp1.show" || fail "device show esp-1: $(cat "$WORK/esp1.show")"
# Its next check-in on 2.0.0 finds it updated already: no second "updated"
# (a step, an event, a count for the rollout each time it asks).
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 2.0.0' "$OTA?device=esp-1")
[ "$code" = 204 ] || fail "esp-1 checking in again on 2.0.0: $code"
n=$(grep -c '\[esp-1 [^]]*\] http: report: runs 2.0.0 now: updated' "$WORK/server.log")
[ "$n" = 1 ] || fail "esp-1 was counted updated $n times"
# Firmware that says its version as "v2.0.0" (git describe) runs image
# 2.0.0: updated, not failed (a trial's rollout counted such devices failed).
[ "$(get ev "$OTA?device=esp-v")" = 200 ] && cmp -s "$WORK/ev.b" "$WORK/img" || fail "esp-v's download"
for _ in $(seq 50); do [ "$(device_state esp-v)" = verified ] && break; sleep 0.1; done
[ "$(device_state esp-v)" = verified ] || fail "esp-v is $(device_state esp-v) after its download"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: v2.0.0' "$OTA?device=esp-v")
[ "$code" = 204 ] && [ "$(device_state esp-v)" = updated ] ||
  fail "esp-v on v2.0.0: $code, $(device_state esp-v): $("$TCPOTA" device show esp-v | tail -3)"
# ...and runs it at its next check-in: told so, not "built differently".
[ "$(curl -sS -D "$WORK/ev2.h" -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: v2.0.0' "$OTA?device=esp-v")" = 204 ] &&
  header X-Tcpota-Reason ev2 | grep -q 'runs this image already' ||
  fail "esp-v checking in again on v2.0.0: $(header X-Tcpota-Reason ev2)"
# A new rollout of the image it runs (its group's) counts it updated at its
# next check-in, as a tcpota device's (a mutation review: over HTTP the
# rollout was not passed on, and no test failed).
"$TCPOTA" device set esp-1 --group g1 > /dev/null || fail "device set esp-1 --group g1"
ro=$("$TCPOTA" rollout create --image 2.0.0 --model esp32 --group g1 --json | jq_py 'j["id"]') ||
  fail "rollout create --group g1"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 2.0.0' "$OTA?device=esp-1")" = 204 ] ||
  fail "esp-1 on 2.0.0 under rollout $ro"
for _ in $(seq 50); do
  [ "$("$TCPOTA" rollout show "$ro" --json | jq_py 'j["totals"]["updated"]')" = 1 ] && break
  sleep 0.1
done
[ "$("$TCPOTA" rollout show "$ro" --json | jq_py 'j["totals"]["updated"]')" = 1 ] ||
  fail "rollout $ro of the image esp-1 runs does not count it: $("$TCPOTA" rollout show "$ro")"
ok "esp_https_ota-like client: 4 cuts, 4 ranged resumes, byte-exact, then updated by X-Tcpota-Version"

# ---- a client that rolls back: failed, and not offered again -----------------------
rc=0
$CLIENT --url "$OTA/esp-2.bin" --slot "$WORK/esp2.slot" --state "$WORK/esp2.nvs" --version 1.0.0 \
  --reject > "$WORK/esp2.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "esp-2 client failed: $(cat "$WORK/esp2.log")"
grep -qE 'status=204 reason=rollout 1: the image failed on this device before \(reported, declined, or downloaded over HTTP and not booted\)$' "$WORK/esp2.log" ||
  fail "esp-2 starting over on 1.0.0 was not refused: $(tail -2 "$WORK/esp2.log")"
[ "$(device_state esp-2)" = failed ] || fail "esp-2 is $(device_state esp-2), not failed"
"$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["failed"]' | grep -qx 1 || fail "rollout 1 does not count 1 failed"
# On a newer version since (updated some other way): told so, up to date,
# and still one of rollout 1's failures, not a success (a review: the halt
# rule lost it).
upd=$("$TCPOTA" rollout show 1 --json | jq_py 'j["totals"]["updated"]')
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 5.0.0' "$OTA?device=esp-2")
[ "$code" = 204 ] && [ "$(device_state esp-2)" = up-to-date ] || fail "esp-2 on 5.0.0: $code, $(device_state esp-2)"
sleep 0.3 # its step's batch (50 ms)
[ "$("$TCPOTA" rollout show 1 --json | jq_py '[j["totals"]["failed"], j["totals"]["updated"]]' | paste -sd,)" = "1,$upd" ] ||
  fail "esp-2 on 5.0.0 changed rollout 1's counts: $("$TCPOTA" rollout show 1)"
# ...and on another build of the image's version (2.0.0+other: the same
# precedence, not the image) likewise (a mutation review: only the newer
# version was tried).
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Tcpota-Version: 2.0.0+other' "$OTA?device=esp-2")
[ "$code" = 204 ] || fail "esp-2 on 2.0.0+other: $code"
sleep 0.3
[ "$("$TCPOTA" rollout show 1 --json | jq_py '[j["totals"]["failed"], j["totals"]["updated"]]' | paste -sd,)" = "1,$upd" ] ||
  fail "esp-2 on 2.0.0+other changed rollout 1's counts: $("$TCPOTA" rollout show 1)"
ok "a whole download, then a new one on the old version: failed, counted, not offered again"

# ---- a client cut after the server wrote every byte, before it read them -----------
# Its TCP window is small and it stops reading 200 kB before the end, then
# resets: the bytes it never acknowledged do not count, so it is not
# "verified", and starting over on its old version is no failure.
python3 -c '
import socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ota/esp32?device=stall-1 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
got = b""
while b"\r\n\r\n" not in got:
    got += s.recv(4096)
body, stop = len(got.split(b"\r\n\r\n", 1)[1]), int(sys.argv[2]) - 200000
while body < stop:
    body += len(s.recv(min(65536, stop - body)))
time.sleep(1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()' "$OTA_PORT" $SIZE || fail "the stalling client failed"
wait_line "$WORK/server.log" '\[stall-1 [^]]*\] http: connection closed'
[ "$(device_state stall-1)" = downloading ] || fail "stall-1 is $(device_state stall-1), not downloading"
acked=$("$TCPOTA" device show --json stall-1 | jq_py 'j["bytes"]')
[ "$acked" -lt $((SIZE - 100000)) ] || fail "stall-1 acknowledged $acked bytes, it read $((SIZE - 200000))"
[ "$(get again "$OTA?device=stall-1")" = 200 ] || fail "stall-1 starting over: not 200"
[ "$(device_state stall-1)" != failed ] || fail "stall-1 starting over counted as a failure"
ok "a client reset before reading the last 200 kB: downloading at $acked bytes, not verified, no failure"

# ---- the end of the image alone is not the image --------------------------------
# A new device asks only for the last 10 bytes (curl -r, a stray request):
# it has not had the rest, so it is not "verified", and its download from
# byte 0 afterwards is an offer, not "sent every byte, asks again: failed"
# (it was, and the image was never offered to it again; a rollout with
# --halt-min 1 halted on one such request).
[ "$(get tail1 "$OTA?device=tail-1" -H "Range: bytes=$((SIZE - 10))-")" = 206 ] || fail "tail-1's tail: not 206"
wait_line "$WORK/server.log" "\[tail-1 [^]]*\] http: bytes $((SIZE - 10))-$((SIZE - 1)) of 2.0.0 sent, but the device is not known to have bytes 0-$((SIZE - 11)) \(it had 0\): not counted as having the image"
[ "$(device_state tail-1)" = downloading ] || fail "tail-1 is $(device_state tail-1) after the image's tail alone"
[ "$("$TCPOTA" device show --json tail-1 | jq_py 'j["bytes"]')" = 0 ] || fail "tail-1 counts bytes it never had"
# Its history says what was asked, not "from byte 0" (a trial).
# (Read whole first: grep -q in the pipe ends it early, and under pipefail
# the writer's broken pipe failed the check.)
want="asks bytes $((SIZE - 10))-$((SIZE - 1)), past the 0 it had: not counted as its progress"
for _ in $(seq 40); do
  details=$("$TCPOTA" device show --json tail-1 | jq_py '"\n".join(h["detail"] for h in j["history"])')
  grep -qxF "$want" <<< "$details" && break
  sleep 0.05
done
grep -qxF "$want" <<< "$details" ||
  fail "tail-1's history: $("$TCPOTA" device show tail-1 | tail -4)"
[ "$(get tail1b "$OTA?device=tail-1")" = 200 ] && cmp -s "$WORK/tail1b.b" "$WORK/img" ||
  fail "tail-1 from byte 0 after the tail: not the image"
[ "$(device_state tail-1)" = verified ] || fail "tail-1 is $(device_state tail-1) after the whole image"
# A range from further on than the device had, short of the end: its bytes
# are not the device's progress (it has 0-9999, not 0-39999).
[ "$(get mid1 "$OTA?device=mid-1" -H 'Range: bytes=0-9999')" = 206 ] || fail "mid-1's first part: not 206"
for _ in $(seq 40); do [ "$("$TCPOTA" device show --json mid-1 | jq_py 'j["bytes"]')" = 10000 ] && break; sleep 0.05; done
[ "$(get mid2 "$OTA?device=mid-1" -H 'Range: bytes=30000-39999')" = 206 ] || fail "mid-1's middle part: not 206"
sleep 0.5
[ "$("$TCPOTA" device show --json mid-1 | jq_py 'j["bytes"]')" = 10000 ] ||
  fail "mid-1 counts $("$TCPOTA" device show --json mid-1 | jq_py 'j["bytes"]') bytes after 0-9999 and 30000-39999, not 10000"
# A range that resumes within what the device had completes it.
[ "$(get part1 "$OTA?device=part-1" -H 'Range: bytes=0-99999')" = 206 ] || fail "part-1's first part: not 206"
[ "$(get part2 "$OTA?device=part-1" -H 'Range: bytes=100000-')" = 206 ] || fail "part-1's rest: not 206"
for _ in $(seq 40); do [ "$(device_state part-1)" = verified ] && break; sleep 0.05; done
[ "$(device_state part-1)" = verified ] || fail "part-1 is $(device_state part-1) after 0-99999 and 100000-"
# A registry row that says more bytes than the image has (written by
# another program, a restore): no bytes held at all, so the image's tail
# alone is still not the image.
[ "$(get big1 "$OTA?device=big-1" -H 'Range: bytes=0-999')" = 206 ] || fail "big-1's first part: not 206"
for _ in $(seq 40); do [ "$("$TCPOTA" device show --json big-1 | jq_py 'j["bytes"]')" = 1000 ] && break; sleep 0.05; done
python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.execute(\"UPDATE devices SET bytes = ? WHERE id = 'big-1'\", ($SIZE + 1000,)); c.commit()" "$DATA/tcpota.db" ||
  fail "cannot write big-1's row"
[ "$(get big2 "$OTA?device=big-1" -H "Range: bytes=$((SIZE - 10))-")" = 206 ] || fail "big-1's tail: not 206"
wait_line "$WORK/server.log" "\[big-1 [^]]*\] http: bytes $((SIZE - 10))-$((SIZE - 1)) of 2.0.0 sent, but the device is not known to have bytes 0-$((SIZE - 11)) \(it had 0\)"
[ "$(device_state big-1)" != verified ] || fail "big-1, whose row said more bytes than the image, is verified by its tail"
ok "the image's tail alone is not the image (no verified, no failure after); a resume on top of what it had is; a row of more bytes than the image holds none"

# ---- the rollout's rules hold for http devices ------------------------------------
"$TCPOTA" rollout pause 1 > /dev/null || fail "rollout pause failed"
[ "$(get paused "$OTA?device=h-9")" = 204 ] || fail "paused rollout: not 204"
header X-Tcpota-Reason paused | grep -q 'paused' || fail "paused: reason $(header X-Tcpota-Reason paused)"
[ "$(device_state h-9)" = waiting ] || fail "h-9 is $(device_state h-9), not waiting"
[ "$(get c3 "http://127.0.0.1:$OTA_PORT/ota/esp32c3?device=h-10")" = 204 ] || fail "other model: not 204"
stop_fleet
ok "a paused rollout and another model: 204 with the reason"
# The server's summary counts its HTTP downloads too (before: only tcpota
# devices, so a fleet of esp_https_ota devices summed to nothing): several
# whole downloads above, and one failure (esp-2).
grep -qE 'summary: .*; HTTP downloads \(their devices are not in the count above; `tcpota summary` counts every device\): [1-9][0-9]* with every byte sent, 1 failed \(the device back on its old version\)' "$WORK/server.log" ||
  fail "the summary does not count the HTTP downloads: $(grep 'summary:' "$WORK/server.log")"
# ...and their bytes, in the total sent too (before: "0.0 MB sent" after
# several MB over HTTP; no tcpota device here, so the two are equal).
read -r http_mb total_mb <<< "$(sed -nE 's/.*summary: .*\(the device back on its old version\), ([0-9.]+) MB;.* ([0-9.]+) MB sent in .*/\1 \2/p' "$WORK/server.log" | tail -1)"
[ -n "$http_mb" ] && [ "$http_mb" = "$total_mb" ] && [ "${http_mb%.*}" -ge 3 ] ||
  fail "the summary's HTTP bytes: '$http_mb' MB of '$total_mb' MB sent: $(grep 'summary:' "$WORK/server.log")"
ok "the summary counts HTTP downloads, their failure and their bytes"

# ---- HTTPS on --ota-listen with the server's certificate ---------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/srv.key" \
  -out "$WORK/srv.pem" -days 2 -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" \
  > /dev/null 2>&1 || fail "openssl could not make a certificate"
start_fleet --ota-listen 127.0.0.1:0 --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key"
OTA_PORT=$(sed -nE 's/.*HTTPS downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
[ -n "$OTA_PORT" ] || fail "no HTTPS download port in: $(grep 'listening on' "$WORK/server.log")"
grep -qE "listening on 127\.0\.0\.1:$SERVER_PORT, devices over TLS, fleet mode .*HTTPS downloads on 127\.0\.0\.1:$OTA_PORT" "$WORK/server.log" ||
  fail "the fleet's listening line does not say that the device port is TLS: $(grep 'listening on' "$WORK/server.log")"
# A tcpota device over TLS sent to the HTTPS download port: its HELLO,
# inside TLS, is answered 400 at once (before: evhttp waited for a line's
# end, the device 30 s for an answer, 20 times).
rc=0; t0=$(date +%s)
"$TCPOTA" device --server "127.0.0.1:$OTA_PORT" --ca "$WORK/srv.pem" --flash "$WORK/wrongtls" --quiet \
  2> "$WORK/wrongtls.log" || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -eq 1 ] && [ "$s" -le 5 ] || fail "a TLS device on the HTTPS download port: exit $rc after $s s: $(cat "$WORK/wrongtls.log")"
grep -q "the server answered in HTTP: the address names an HTTP port (tcpota serve's API or downloads?), not its device port (tcpota serve --listen); not retrying" "$WORK/wrongtls.log" ||
  fail "a TLS device on the HTTPS download port was not told: $(cat "$WORK/wrongtls.log")"
wait_line "$WORK/server.log" "http: not an HTTP request \(byte 0x01: a tcpota device\? it connects to the device port, --listen\); answered 400, closing" 5
"$TCPOTA" rollout resume 1 > /dev/null || fail "rollout resume failed"
[ "$(get tls "https://127.0.0.1:$OTA_PORT/ota/esp32?device=t-1" --cacert "$WORK/srv.pem" \
     -H 'Range: bytes=4096-')" = 206 ] || fail "HTTPS download: not 206"
cmp <(tail -c +4097 "$WORK/img") "$WORK/tls.b" || fail "HTTPS body differs from the image's tail"
# CONNECT inside TLS: the same 405, written through TLS, then the close.
code=$(curl -sS --max-time 5 -X CONNECT -o "$WORK/tlsconnect.b" -w '%{http_code}' --cacert "$WORK/srv.pem" \
  "https://127.0.0.1:$OTA_PORT/ota/esp32?device=t-1" 2> "$WORK/tlsconnect.err") &&
  [ "$code" = 405 ] && grep -q 'downloads answer GET and HEAD only' "$WORK/tlsconnect.b" ||
  fail "CONNECT over TLS: $code $(cat "$WORK/tlsconnect.b" "$WORK/tlsconnect.err")"
# Plain HTTP there: answered 400 in the clear, saying the URL must be
# https:// (before: the handshake failed and the client got nothing), and
# the operator sees it too.
code=$(curl -s -o "$WORK/plain-on-tls.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$OTA_PORT/ota/esp32?device=t-2" || true)
[ "$code" = 400 ] && grep -q "this is tcpota serve's HTTPS download port: the device's URL must be https://" "$WORK/plain-on-tls.b" ||
  fail "plain HTTP on the HTTPS listener: $code $(cat "$WORK/plain-on-tls.b")"
wait_line "$WORK/server.log" "http: a plain HTTP request on the HTTPS download port: the device's URL must be https://; answered 400, closing" 5
# A tcpota device without TLS there: the same 400, which it reads as an
# HTTP port's answer, and stops (before: 20 tries, 37 s, silent under --quiet).
rc=0; t0=$(date +%s)
"$TCPOTA" device --server "127.0.0.1:$OTA_PORT" --flash "$WORK/plainhttps" --quiet 2> "$WORK/plainhttps.log" || rc=$?
s=$(( $(date +%s) - t0 ))
[ $rc -eq 1 ] && [ "$s" -le 5 ] && grep -q "the server answered in HTTP: the address names an HTTP port" "$WORK/plainhttps.log" ||
  fail "a plain device on the HTTPS download port: rc $rc after $s s: $(cat "$WORK/plainhttps.log")"
wait_line "$WORK/server.log" "http: not TLS on the HTTPS download port \(byte 0x01: a tcpota device without TLS\? it connects to the device port, --listen\); answered 400, closing" 5
# An HTTP request on the TLS device port: said to be one, with where
# downloads are (before: "plain (not TLS) client on the TLS port: the
# device must use TLS").
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$SERVER_PORT/ota/esp32?device=t-9" || true
wait_line "$WORK/server.log" "unknown protocol \(first byte 0x47: an HTTP request, but this port speaks tcpota's protocol; HTTPS downloads are on 127\.0\.0\.1:$OTA_PORT\); closing" 5
# A handshake that fails, from a peer that resets at once: the line names
# the peer as accept() gave it (before: "[- ?]", getpeername() found none
# after the reset). Any peer can fail handshakes as fast as it connects:
# at most 10 such lines a second, the next one saying how many were not.
ports=$(python3 - "$OTA_PORT" <<'PY'
import socket, struct, sys, time
bad = b"\x16\x03\x01\x00\x10\x01\x00\x00\x0c" + b"x" * 12  # a ClientHello of the wrong length
for i in range(30):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    if i < 3:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        print(s.getsockname()[1])
    s.sendall(bad)
    s.close()
PY
)
for p in $ports; do
  wait_line "$WORK/server.log" "\[- 127\.0\.0\.1:$p\] http: TLS handshake failed: " 5
done
! grep -q '\[- ?\] http: TLS handshake failed' "$WORK/server.log" || fail "a failed handshake's peer logged as ?"
n=$(grep -c 'http: TLS handshake failed: length mismatch' "$WORK/server.log" || true)
[ "$n" -le 20 ] || fail "$n lines for 30 failed handshakes: not rate-limited"
sleep 1.1
python3 - "$OTA_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"\x16\x03\x01\x00\x10\x01\x00\x00\x0c" + b"x" * 12)  # one more failed handshake
s.close()
PY
wait_line "$WORK/server.log" 'http: TLS handshake failed: .*\(and [0-9]+ more such lines not logged since the last such line\)' 5
# Stopped during a download: the download's close is logged before the
# summary, which is the last line (before: the close came after it).
# (A small receive buffer that stops reading: on loopback the kernel would
# take the whole image at once.)
python3 - "$OTA_PORT" "$WORK/srv.pem" <<'PY' &
import socket, ssl, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
t = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(s, server_hostname="127.0.0.1")
t.sendall(b"GET /ota/esp32?device=slow1 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
t.recv(1024)
time.sleep(30)
PY
PIDS+=($!)
wait_line "$WORK/server.log" '\[slow1 [^]]*\] http: GET \(no Range\): 200' 10
stop_fleet
tail -1 "$WORK/server.log" | grep -q 'summary: ' ||
  fail "the summary is not the last line after SIGTERM during a download: $(tail -2 "$WORK/server.log")"
grep -q '\[slow1 [^]]*\] http: connection closed: ' "$WORK/server.log" ||
  fail "the download cut by SIGTERM was not logged: $(grep -E "slow1|summary" "$WORK/server.log")"
# A connection that has made a whole request has shown what an HTTP peer
# can: it no longer counts against --max-unauth-per-addr. Two kept-alive
# HTTPS connections, each answered, leave room for a third from the same
# address (a review's mutant kept them counted: the third was refused).
start_fleet --ota-listen 127.0.0.1:0 --tls-cert "$WORK/srv.pem" --tls-key "$WORK/srv.key" \
  --max-unauth-per-addr 2
OTA_PORT=$(sed -nE 's/.*HTTPS downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
python3 - "$OTA_PORT" "$WORK/srv.pem" <<'PY' || fail "kept-alive answered connections and --max-unauth-per-addr 2 (above)"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
def asked(i):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    t.sendall(b"GET /ota/esp32?device=keep%d HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n"
              b"Range: bytes=0-0\r\n\r\n" % i)
    line = t.recv(4096).split(b"\r\n", 1)[0]
    if not line.startswith(b"HTTP/1.1 "):
        sys.exit("connection %d: %r" % (i, line))
    return t
held = [asked(1), asked(2)]
try:
    asked(3).close()
except (OSError, ssl.SSLError) as e:
    sys.exit("a third connection from the same address, two answered ones held: %r" % e)
for t in held:
    t.close()
PY
stop_fleet
ok "--ota-listen with --tls-cert serves HTTPS (a resumed download, byte-exact); a TLS device there is answered 400 at once; plain HTTP gets nothing, and the log says why; stopped during a download, the summary is the last line"

# ---- --require-auth: HTTP devices cannot prove who they are ------------------------
start_fleet --require-auth --log-format json --quiet
code=$(curl -s -o "$WORK/auth.b" -w '%{http_code}' -H 'X-Tcpota-Version: 1.0.0' \
  "http://127.0.0.1:$API_PORT/ota/esp32?device=a-1")
[ "$code" = 403 ] && grep -q 'require-auth' "$WORK/auth.b" || fail "--require-auth: /ota answered $code"
code=$(curl -s -o "$WORK/otaonly.b" -w '%{http_code}' "http://127.0.0.1:$API_PORT/ota")
[ "$code" = 404 ] && grep -qF 'no such path /ota; downloads are GET /ota/<model>?device=<id>' "$WORK/otaonly.b" ||
  fail "/ota alone on the API's listener: $code (not the download's 404) $(cat "$WORK/otaonly.b")"
grep -q "HTTP downloads on the API's listener: each refused (--require-auth)" "$WORK/server.log" ||
  fail "the listening line under --require-auth promises downloads: $(grep 'listening on' "$WORK/server.log")"
# On the API's listener too, and at level warn (kept by --quiet).
python3 - "$WORK/server.log" <<'PY' || fail "the 403 under --require-auth is no warning: $(grep refused "$WORK/server.log")"
import json, re, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if (o.get("level") == "warn" and o.get("device") == "a-1" and re.match(r"127\.0\.0\.1:\d+$", o.get("peer", ""))
            and o["msg"].startswith("http: refused /ota/esp32?device=a-1 with 403: this server requires device authentication")):
        sys.exit(0)
sys.exit(1)
PY
stop_fleet
# Asked for a download listener of its own besides: warned at start (a new
# user's trial found every download refused, and the start said nothing).
start_fleet --require-auth --ota-listen 127.0.0.1:0
grep -qE 'listening on .*HTTP downloads on 127\.0\.0\.1:[0-9]+: each refused \(--require-auth\)' "$WORK/server.log" ||
  fail "the listening line under --require-auth promises downloads: $(grep 'listening on' "$WORK/server.log")"
grep -q 'warning: --ota-listen with --require-auth: an HTTP download cannot prove which device asks, so every one is refused (403); only tcpota devices are served' "$WORK/server.log" ||
  fail "no warning for --ota-listen with --require-auth: $(grep -m2 warning "$WORK/server.log")"
# A refused request ends its connection: kept alive, one address held every
# --max-conns slot with a refused request per --idle-timeout, the device
# port refusing tcpota devices meanwhile (a review).
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
python3 - "$OTA_PORT" <<'PY' || fail "a refused download kept its connection (above)"
import socket, sys, time
for req in (b"GET /ota/esp32?device=held HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    s.sendall(req)
    got, end = b"", time.time() + 5
    while time.time() < end:
        d = s.recv(4096)
        if not d:
            break
        got += d
    else:
        sys.exit("%r: still open 5 s after its answer %r" % (req[:24], got[:60]))
    head = got.split(b"\r\n\r\n", 1)[0].lower()
    if not (head.startswith(b"http/1.1 403") or head.startswith(b"http/1.1 404")) or b"connection: close" not in head:
        sys.exit("%r: %r" % (req[:24], got[:200]))
PY
stop_fleet
ok "--require-auth refuses HTTP downloads (403, saying why, the connection closed; a warning in the log, --quiet or not; one at start with --ota-listen)"

# ---- a new rollout's image: an earlier download of another image is no failure ----
# n-1 downloads 2.0.0 whole (verified) and still runs 1.0.0; then a rollout
# of 3.0.0 takes over. n-1's new download from byte 0 is of another image
# than the one it was sent: nothing to judge (it never had 3.0.0), and 3.0.0
# is served. (A fleet of its own: rollouts above stay as they were.)
DATA="$WORK/data-new" start_fleet --ota-listen 127.0.0.1:0
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
OTA="http://127.0.0.1:$OTA_PORT/ota/esp32"
# "Nothing for you" (204, no rollout yet) ends its connection too, as an
# error does: kept alive, a peer's check-ins held connection slots.
python3 - "$OTA_PORT" <<'PY' || fail "a 204 kept its connection (above)"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /ota/esp32?device=n-0 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
got = s.makefile("rb").read()  # to the server's close (the 5 s timeout raises)
head = got.split(b"\r\n\r\n", 1)[0].lower()
if not head.startswith(b"http/1.1 204") or b"connection: close" not in head:
    sys.exit("answer: %r" % got[:300])
PY
head -c 70000 /dev/urandom > "$WORK/img3"
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img" > /dev/null || fail "image add 2.0.0 failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create 2.0.0 failed"
[ "$(get n1 "$OTA?device=n-1")" = 200 ] && cmp -s "$WORK/n1.b" "$WORK/img" || fail "n-1 was not sent 2.0.0"
[ "$(device_state n-1)" = verified ] || fail "n-1 is $(device_state n-1), not verified"
# n-2 has bytes 0-9999 of 2.0.0 when 3.0.0 takes over.
[ "$(get n2 "$OTA?device=n-2" -H 'Range: bytes=0-9999')" = 206 ] || fail "n-2's part of 2.0.0: not 206"
"$TCPOTA" image add --version 3.0.0 --model esp32 "$WORK/img3" > /dev/null || fail "image add 3.0.0 failed"
"$TCPOTA" rollout create --image 3.0.0 --model esp32 > /dev/null || fail "rollout create 3.0.0 failed"
[ "$(get n3 "$OTA?device=n-1")" = 200 ] ||
  fail "n-1, sent 2.0.0, asking on 1.0.0 under a rollout of 3.0.0: $(header X-Tcpota-Reason n3)"
cmp "$WORK/n3.b" "$WORK/img3" || fail "n-1 was not sent 3.0.0"
[ "$(device_state n-1)" != failed ] || fail "n-1's download of 2.0.0 failed it for 3.0.0"
# From 10000 on, of 3.0.0: its bytes before are 2.0.0's (the registry's
# 10000 bytes), so the rest of 3.0.0 would make a mixed image, which
# esp_https_ota of IDF 5.5 would write (it takes a 200 for the rest too, and
# sends no If-Range): 416, after which esp_https_ota starts over from byte 0
# (before: 206, the tail of 3.0.0 on top of 2.0.0's head).
[ "$(get n2b "$OTA?device=n-2" -H 'Range: bytes=10000-')" = 416 ] || fail "n-2's range of 3.0.0 on top of 2.0.0's bytes: not 416"
[ "$(header Content-Range n2b)" = "bytes */70000" ] || fail "n-2's 416: Content-Range $(header Content-Range n2b)"
grep -q "the device's bytes before byte 10000 are of image ${SHA:0:16}\.\.\. (its download in the registry), not of 3\.0\.0: start over from byte 0" "$WORK/n2b.b" ||
  fail "n-2's 416 does not say why: $(cat "$WORK/n2b.b")"
wait_line "$WORK/server.log" "\[n-2 [^]]*\] http: refused /ota/esp32\?device=n-2 with 416: the device's bytes before byte 10000 are of image ${SHA:0:16}"
# With an If-Range of 3.0.0's tag the client vouches for its bytes: 206, but
# the tail alone is not counted as the image (the registry's bytes were 2.0.0's).
SHA3=$(sha256sum "$WORK/img3" | cut -d' ' -f1)
[ "$(get n2c "$OTA?device=n-2" -H 'Range: bytes=10000-' -H "If-Range: \"$SHA3\"")" = 206 ] || fail "n-2's range of 3.0.0 with its If-Range: not 206"
wait_line "$WORK/server.log" "\[n-2 [^]]*\] http: bytes 10000-69999 of 3.0.0 sent, but the device is not known to have bytes 0-9999 \(it had 0\): not counted as having the image"
[ "$(device_state n-2)" = downloading ] || fail "n-2 is $(device_state n-2) after a range of 3.0.0 on top of 2.0.0's bytes"
# Starting over, as told: the whole of 3.0.0.
[ "$(get n2d "$OTA?device=n-2" -H 'Range: bytes=0-')" = 206 ] && cmp -s "$WORK/n2d.b" "$WORK/img3" || fail "n-2 starting over was not sent 3.0.0"
# The esp_https_ota-like client, cut in 3.0.0's download, resumes after a
# rollout of 4.0.0 took over: told 416, it starts over and ends on 4.0.0
# whole (its slot's SHA-256 is checked against the ETag), not on a mix.
start_proxy newcut "$OTA_PORT" --cut-at 30000
rc=0
$CLIENT --url "http://127.0.0.1:$PROXY_PORT/ota/esp32/n-4.bin" --slot "$WORK/n4.slot" \
  --state "$WORK/n4.nvs" --version 1.0.0 --attempts 1 > "$WORK/n4.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q 'cut at' "$WORK/newcut.log" || fail "n-4's first download was not cut: rc $rc $(cat "$WORK/n4.log")"
head -c 80000 /dev/urandom > "$WORK/img4b"
"$TCPOTA" image add --version 4.0.0 --model esp32 "$WORK/img4b" > /dev/null || fail "image add 4.0.0 failed"
"$TCPOTA" rollout create --image 4.0.0 --model esp32 > /dev/null || fail "rollout create 4.0.0 failed"
$CLIENT --url "$OTA/n-4.bin" --slot "$WORK/n4.slot" --state "$WORK/n4.nvs" --version 1.0.0 \
  > "$WORK/n4.log" 2>&1 || fail "n-4 after the new rollout: $(cat "$WORK/n4.log")"
grep -qE '^request 1 range=[0-9]+ status=416: starting over' "$WORK/n4.log" && cmp -s "$WORK/n4.slot" "$WORK/img4b" &&
  grep -q 'done version=4.0.0' "$WORK/n4.log" || fail "n-4 did not start over onto 4.0.0: $(cat "$WORK/n4.log")"
stop_fleet
ok "a whole download of one rollout's image, then a newer rollout's from byte 0: served, no failure; a range of the new image on top of the old one's bytes: 416 (start over), or with its If-Range 206 not counted as the image; an esp_https_ota-like client starts over onto the new image"

# ---- a resume from past what the server saw acknowledged ----------------------
# A cut leaves the server knowing what it wrote and, lower, what the peer's TCP
# acknowledged (an ACK delayed or lost in the cut is never seen). A device
# resumes from what it received: past the acknowledged bytes, never past the
# written ones. Such a range continues the image (before: taken for a tail
# asked for on its own, and the device never counted as having the image);
# one from past what was written does not. A client with a small receive
# buffer that stops reading makes the two differ for sure.
DATA="$WORK/data-cut" start_fleet --ota-listen 127.0.0.1:0
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
OTA="http://127.0.0.1:$OTA_PORT/ota/esp32"
make_image "$WORK/img4" 4194304
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/img4" > /dev/null || fail "image add img4 failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create img4 failed"
# cut_short DEVICE BYTES [FROM]: a GET (of the bytes from FROM on, when
# given) that reads BYTES of the body, stops reading, and resets.
cut_short() {
  python3 - "$OTA_PORT" "$1" "$2" "${3:-}" <<'PY'
import socket, struct, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
rng = b"Range: bytes=%s-\r\n" % sys.argv[4].encode() if sys.argv[4] else b""
s.sendall(b"GET /ota/esp32?device=%s HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n%s\r\n" % (sys.argv[2].encode(), rng))
got = b""
while b"\r\n\r\n" not in got or len(got) - got.index(b"\r\n\r\n") - 4 < int(sys.argv[3]):
    got += s.recv(65536)
time.sleep(0.5)  # the server fills its send buffer meanwhile
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
PY
}
# closed_at DEVICE: "WRITTEN ACKED" of its cut, from the server's log line.
closed_at() {
  local line
  line=$(wait_line "$WORK/server.log" "\[$1 [^]]*\] http: connection closed: " > /dev/null &&
    grep "\[$1 [^]]*\] http: connection closed: " "$WORK/server.log" | tail -1)
  sed -nE 's/.*closed: ([0-9]+) bytes of range [0-9]+-[0-9]+ passed to the socket, up to byte ([0-9]+) acknowledged by the device.s TCP.*/\1 \2/p' <<< "$line"
}
cut_short c-1 100000
read -r W A < <(closed_at c-1)
[ -n "$W" ] && [ "$W" -gt $((A + 2)) ] || fail "c-1's cut: written $W, acknowledged $A: the test tests nothing"
X=$(((A + W) / 2))
[ "$(get c1 "$OTA?device=c-1" -H "Range: bytes=$X-")" = 206 ] || fail "c-1's resume from $X: not 206"
wait_line "$WORK/server.log" "\[c-1 [^]]*\] http: every byte of 2.0.0 sent"
[ "$(device_state c-1)" = verified ] || fail "c-1 resumed from $X (acknowledged $A, written $W) is $(device_state c-1), not verified"
cut_short c-2 100000
read -r W2 A2 < <(closed_at c-2)
[ -n "$W2" ] && [ "$W2" -gt "$A2" ] || fail "c-2's cut: written $W2, acknowledged $A2"
[ "$(get c2 "$OTA?device=c-2" -H "Range: bytes=$((W2 + 1000))-")" = 206 ] || fail "c-2's range: not 206"
wait_line "$WORK/server.log" "\[c-2 [^]]*\] http: bytes $((W2 + 1000))-4194303 of 2.0.0 sent, but the device is not known to have bytes 0-$((W2 + 999)) \(it had $W2\): not counted"
[ "$(device_state c-2)" = downloading ] || fail "c-2 is $(device_state c-2) after a range past what it was sent"
# A cut of a range that began past what the device had is no place to
# resume from: the bytes before that range never reached it (a mutation
# review saved such a cut, and a range within it then made c-3 verified).
[ "$(get c3a "$OTA?device=c-3" -H 'Range: bytes=0-99999')" = 206 ] || fail "c-3's first part: not 206"
for _ in $(seq 40); do [ "$("$TCPOTA" device show --json c-3 | jq_py 'j["bytes"]')" = 100000 ] && break; sleep 0.05; done
cut_short c-3 100000 2000000
wait_line "$WORK/server.log" "\[c-3 [^]]*\] http: connection closed: "
[ "$(get c3b "$OTA?device=c-3" -H 'Range: bytes=2050000-')" = 206 ] || fail "c-3's range within the cut: not 206"
wait_line "$WORK/server.log" "\[c-3 [^]]*\] http: bytes 2050000-4194303 of 2.0.0 sent, but the device is not known to have bytes 0-2049999 \(it had 100000\): not counted"
[ "$(device_state c-3)" = downloading ] || fail "c-3 is $(device_state c-3) after a range within a cut that began past its bytes"
# An old cut short of what the registry says since does not lower it: c-4
# is cut, then gets bytes up to 4,000,000 from within the cut, then asks
# from between the cut and that: the image (a mutation review let the cut
# lower what it had, and c-4 stayed downloading).
cut_short c-4 100000
read -r W4 A4 < <(closed_at c-4)
[ -n "$W4" ] && [ "$W4" -lt 3990000 ] || fail "c-4's cut: written $W4: the test tests nothing"
# Read whole and kept open a second: the server has every ack first and
# frees the download before the close (curl closes at once, and a close
# that comes first records a cut of the whole range, hiding the old one).
python3 - "$OTA_PORT" "$A4" <<'PY' || fail "c-4's part from $A4 failed"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /ota/esp32?device=c-4 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n"
          b"Range: bytes=%s-3999999\r\n\r\n" % sys.argv[2].encode())
got = b""
while b"\r\n\r\n" not in got:
    got += s.recv(65536)
head, _, body = got.partition(b"\r\n\r\n")
if not head.startswith(b"HTTP/1.1 206"):
    sys.exit(head.decode(errors="replace"))
want = 4000000 - int(sys.argv[2])
while len(body) < want:
    more = s.recv(1 << 20)
    if not more:
        sys.exit("cut at %d of %d" % (len(body), want))
    body += more
time.sleep(1)
s.close()
PY
for _ in $(seq 40); do [ "$("$TCPOTA" device show --json c-4 | jq_py 'j["bytes"]')" = 4000000 ] && break; sleep 0.05; done
[ "$("$TCPOTA" device show --json c-4 | jq_py 'j["bytes"]')" = 4000000 ] || fail "c-4 holds $("$TCPOTA" device show --json c-4 | jq_py 'j["bytes"]') bytes, not 4000000"
R4=$((W4 + (4000000 - W4) / 2))
[ "$(get c4b "$OTA?device=c-4" -H "Range: bytes=$R4-")" = 206 ] || fail "c-4's rest from $R4: not 206"
for _ in $(seq 40); do [ "$(device_state c-4)" = verified ] && break; sleep 0.05; done
[ "$(device_state c-4)" = verified ] || fail "c-4 (cut at $W4, then 4000000 held) is $(device_state c-4) after bytes $R4-"
stop_fleet
ok "a resume from past the acknowledged bytes but within the written ones completes the image; one from past the written ones does not, nor one within a cut of a range past the device's bytes; an older cut does not lower what the registry says"

# ---- the download listener's limits: --max-conns and a deadline to a request ------
# The download listener's connections count in --max-conns (before, only the
# device port's did), and each must send a complete request within
# --idle-timeout of its accept (before: evhttp's read timeout of a fixed
# 60 s, which a byte now and then never meets).
DATA="$WORK/data-lim" start_fleet --ota-listen 127.0.0.1:0 --max-conns 3 --idle-timeout 2
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
python3 - "$OTA_PORT" <<'PY' || fail "the download listener's limits: see above"
import socket, sys, time
port = int(sys.argv[1])
req = b"GET /ota/esp32?device=lim HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n"
def closed_within(s, t):
    s.settimeout(t)
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
held = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(3)]
held[0].sendall(b"GET /ota/esp32?device=slow HTTP/1.1\r\n")  # and never the rest
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port), 5)
extra.sendall(req)
if not closed_within(extra, 2):
    sys.exit("a 4th connection under --max-conns 3 was kept")
t0 = time.time()
for s in held:
    if not closed_within(s, 4):
        sys.exit("a connection without a whole request was kept past the 2 s deadline")
if time.time() - t0 > 3.5:
    sys.exit("the deadline took %.1f s" % (time.time() - t0))
ok = socket.create_connection(("127.0.0.1", port), 5)
ok.sendall(req)
if not ok.recv(1024).startswith(b"HTTP/1.1 204"):
    sys.exit("a request after the deadline closed the others was not answered 204")
PY
grep -q 'http: refused: 3 connections already (limit)' "$WORK/server.log" ||
  fail "no line for the connection over --max-conns: $(grep 'http: ' "$WORK/server.log" | tail -3)"
n=$(grep -c 'http: no complete request within 2 s of connecting; closing' "$WORK/server.log" || true)
[ "$n" = 3 ] || fail "$n of 3 connections logged as closed at the deadline"
# A body announced (a download request has none) is refused at once, 413,
# not read; headers over the limit, 400. And after an answer kept alive
# (the image, 200), the next request has the same deadline: one trickled a
# byte at a time is closed (a mutation review: none of the three was tested).
head -c 5000 /dev/urandom > "$WORK/limimg"
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/limimg" > /dev/null || fail "image add (limits) failed"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 --waves 100 > /dev/null 2>&1 || fail "rollout create (limits) failed"
python3 - "$OTA_PORT" <<'PY' || fail "the download listener's body and header limits, or its deadline after an answer: see above"
import socket, sys, time
port = int(sys.argv[1])
def answer(data, t=3):
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(t)
    try:
        s.sendall(data)
        return s.recv(200).split(b"\r\n", 1)[0]
    except (socket.timeout, OSError) as e:
        return repr(e).encode()
got = answer(b"GET /ota/esp32?device=b1 HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n" + b"a" * 10)
if not got.startswith(b"HTTP/1.1 413"):
    sys.exit("a body of 20 MB announced: %r" % got)
got = answer(b"GET /ota/esp32?device=b2 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\nX-Pad: " +
             b"p" * 9000 + b"\r\n\r\n")
if not got.startswith(b"HTTP/1.1 400"):
    sys.exit("9 KB of headers: %r" % got)
s = socket.create_connection(("127.0.0.1", port), 5)
s.settimeout(5)
s.sendall(b"GET /ota/esp32?device=k1 HTTP/1.1\r\nHost: x\r\nX-Tcpota-Version: 1.0.0\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, body = buf.split(b"\r\n\r\n", 1)
if not head.startswith(b"HTTP/1.1 200"):
    sys.exit("the image: %r" % head)
length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
while len(body) < length:
    body += s.recv(65536)
t0 = time.time()
for b in b"GET /ota/esp32?device=k1 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
    try:
        s.sendall(bytes([b]))
        s.settimeout(0.5)
        if s.recv(1) == b"":
            break
    except socket.timeout:
        pass
    except OSError:
        break
    if time.time() - t0 > 8:
        sys.exit("a second request trickled after a 200 was kept %.1f s (--idle-timeout 2)" % (time.time() - t0))
PY
stop_fleet
ok "the download listener counts in --max-conns, and closes a connection without a whole request after --idle-timeout (after an answer too); a body is refused 413, headers over 8 KiB 400"

# ---- --http-host: requests sent to another name (DNS rebinding) ----------------
# A page that renamed this server's address sends Host: <its name>: refused
# 421 on both listeners, on every path, the tokenless ones first; the
# names given, localhost and an address are served. A refused download is
# logged, on the API's listener too.
DATA="$WORK/hosts0"
start_fleet --http-host ota.example
c=$(curl -s -o "$WORK/hb" -w '%{http_code}' -H 'Host: evil.example' -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h-0")
[ "$c" = 421 ] || fail "a download on the API's listener with Host evil.example: $c $(cat "$WORK/hb")"
grep -q 'http: refused /ota/esp32?device=h-0 with 421: Host evil.example is not a name' "$WORK/server.log" ||
  fail "the refused download on the API's listener is not in the log"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: ota.example' -H 'X-Tcpota-Version: 1.0.0' "$TCPOTA_API/ota/esp32?device=h-0")" = 204 ] ||
  fail "a download on the API's listener sent to ota.example"
stop_fleet
DATA="$WORK/hosts"
start_fleet --ota-listen 127.0.0.1:0 --http-host ota.example,fleet.example
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
grep -q 'listening on .*, HTTP downloads on 127.0.0.1:[0-9]*, HTTP answering only Host ota.example and 1 more, localhost or an address$' "$WORK/server.log" ||
  fail "the start line does not say --http-host: $(grep 'listening on' "$WORK/server.log" | tail -1)"
code() { curl -s -o "$WORK/hb" -w '%{http_code}' "$@"; }
for url in "http://127.0.0.1:$OTA_PORT/ota/esp32?device=h-1" "$TCPOTA_API/metrics" "$TCPOTA_API/health" \
           "$TCPOTA_API/v1/devices"; do
  c=$(code -H 'Host: evil.example:8071' -H 'X-Tcpota-Version: 1.0.0' -H "Authorization: Bearer $TCPOTA_TOKEN" "$url")
  [ "$c" = 421 ] && grep -q '"Host evil.example:8071 is not a name this server answers to: ask by a name of its --http-host, localhost or its address, or add the name to tcpota serve --http-host (docs/security.md, DNS rebinding)"' "$WORK/hb" ||
    fail "$url with Host evil.example: $c $(cat "$WORK/hb")"
done
# Its status line has the reason phrase (libevent 2.1's table stops at 417).
curl -s -i -H 'Host: evil.example' "http://127.0.0.1:$OTA_PORT/ota/esp32?device=h-1" | head -1 |
  grep -q '^HTTP/1.1 421 Misdirected Request' || fail "the downloads' 421 has no reason phrase"
grep -q 'http: refused /ota/esp32?device=h-1 with 421: Host evil.example:8071 is not a name' "$WORK/server.log" ||
  fail "the refused download is not in the log: $(grep -i 'refused' "$WORK/server.log" | tail -3)"
[ "$(code -H "Host: ota.example:$OTA_PORT" -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$OTA_PORT/ota/esp32?device=h-1")" = 204 ] ||
  fail "a download sent to ota.example: $(cat "$WORK/hb")"
[ "$(code -H 'Host: FLEET.example' "$TCPOTA_API/health")" = 200 ] || fail "/health sent to FLEET.example: $(cat "$WORK/hb")"
[ "$(code "$TCPOTA_API/health")" = 200 ] || fail "/health sent to 127.0.0.1: $(cat "$WORK/hb")"
"$TCPOTA" device list > /dev/null || fail "the CLI (Host 127.0.0.1) was refused under --http-host"
stop_fleet
for bad in "" "a,,b" "ota.example:8071" "a b" "1,2,3,4,5,6,7,8,9"; do
  rc=0; "$TCPOTA" serve --data "$WORK/hosts" --api 127.0.0.1:0 --http-host "$bad" 2> "$WORK/hh.err" || rc=$?
  [ $rc -eq 2 ] && grep -q '^tcpota serve: --http-host' "$WORK/hh.err" || fail "--http-host '$bad': rc $rc $(cat "$WORK/hh.err")"
done
# With --api off the downloads' listener alone takes it.
DATA="$WORK/hosts2"
: > "$WORK/server.log"
"$TCPOTA" serve --listen 127.0.0.1:0 --data "$DATA" --api off --ota-listen 127.0.0.1:0 \
  --http-host ota.example --no-progress 2>> "$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
wait_line "$WORK/server.log" 'listening on'
OTA_PORT=$(sed -nE 's/.*HTTP downloads on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
[ "$(code -H 'Host: evil.example' "http://127.0.0.1:$OTA_PORT/ota/esp32?device=h-2")" = 421 ] &&
  [ "$(code -H 'Host: ota.example' -H 'X-Tcpota-Version: 1.0.0' "http://127.0.0.1:$OTA_PORT/ota/esp32?device=h-2")" = 204 ] ||
  fail "--http-host with --api off and --ota-listen: $(cat "$WORK/hb")"
stop_fleet
rc=0; "$TCPOTA" serve --data "$WORK/hosts" --api off --http-host a.example 2> "$WORK/hh.err" || rc=$?
[ $rc -eq 2 ] && grep -q 'with --api off and no --ota-listen there is neither: drop it' "$WORK/hh.err" ||
  fail "--http-host with --api off: rc $rc $(cat "$WORK/hh.err")"
ok "--http-host: another name is refused 421 on both listeners, every path, and logged; its names, localhost and an address are served; bad names exit 2"
