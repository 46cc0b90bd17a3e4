#!/usr/bin/env bash
# The fleet commands (tcpota image, rollout, device list|show|set|secret) as
# clients of the control API (docs/api.md), against a small python3 mock of
# the server written here: it answers canned JSON per "METHOD PATH" and
# records every request (method, path, headers, body), so that each check
# looks at what the real `tcpota` binary sent and printed.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"
command -v python3 >/dev/null || fail "python3 is needed for the mock API server"

TOKEN=6f1c0a9d3b7e44f2a1c5e8d90b3f6a7c
ID=9f2c41d0e1a7b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1e1

cat > mock.py <<'PY'
import base64, hashlib, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
TOKEN, ROUTES, LOG, PORTFILE = sys.argv[1:5]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with open(LOG, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode("latin-1") if len(body) < 4096 else "", "len": len(body),
                                "sha256": hashlib.sha256(body).hexdigest()}) + "\n")
        status, out, sleep = 404, {"error": "no route in the mock for this path"}, 0
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            status, out = 401, {"error": "missing or wrong API token: send Authorization: Bearer <the token in DIR/api.token>"}
        else:
            for line in open(ROUTES):
                m, p, st, sl, b = line.rstrip("\n").split("\t", 4)
                if m == self.command and p == self.path:
                    status, out, sleep = int(st), b, float(sl)
        time.sleep(sleep)
        if out == "@slowbig":
            # 100 kB of a good answer at 50 kB/s: slower than --timeout 1
            # as a whole, never stalled: the deadline moves with the bytes.
            data = json.dumps({"images": [], "pad": "x" * 100000}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 10000):
                self.wfile.write(data[i:i + 10000])
                self.wfile.flush()
                time.sleep(0.2)
            return
        if out in ("@trickle", "@huge"):
            # A server that sends its answer a byte every 0.25 s, or one
            # larger than any API answer (300 MiB): the client gives up.
            size = 40 if out == "@trickle" else 300 << 20
            self.send_response(status)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for _ in range(size if out == "@trickle" else size >> 20):
                    self.wfile.write(b" " if out == "@trickle" else b" " * (1 << 20))
                    self.wfile.flush()
                    if out == "@trickle":
                        time.sleep(0.25)
            except OSError:
                pass
            return
        data = (out if isinstance(out, str) else json.dumps(out)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PATCH = do_DELETE = handle_one

s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(PORTFILE, "w").write(str(s.server_address[1]))
s.serve_forever()
PY
: > routes.tsv
: > requests.jsonl
python3 mock.py "$TOKEN" routes.tsv requests.jsonl port 2> mock.log &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
for ((i = 0; i < 100; i++)); do [ -s port ] && break; sleep 0.05; done
[ -s port ] || fail "the mock API server did not start"
API="--api 127.0.0.1:$(cat port)"
SAME=" --api 127\.0\.0\.1:$(cat port)" # what a suggested command repeats of $API (a regex)

# route METHOD PATH STATUS BODY [SLEEP]: the mock's answer (the last one set wins).
route() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${5:-0}" "$4" >> routes.tsv; }
# req FIELD [HEADER]: a field of the last request the mock received.
req() {
  python3 -c 'import json,sys; r=json.loads(open("requests.jsonl").readlines()[-1]);
print(r["headers"].get(sys.argv[2].lower(), "") if sys.argv[1] == "header" else r[sys.argv[1]])' "$@"
}
nreq() { wc -l < requests.jsonl; }

# run RC CMD... and has FILE REGEX: lib.sh.

printf '%s\n' "$TOKEN" > tok; chmod 600 tok
mkdir data; printf '%s\n' "$TOKEN" > data/api.token; chmod 600 data/api.token
echo "wrong-token" > bad.tok; chmod 600 bad.tok
unset TCPOTA_TOKEN TCPOTA_API TCPOTA_API_CA

# --- the token: where it is taken from, and what when it is missing or refused
IMAGES='{"images": [{"id": "'$ID'", "version": "2.0.0", "model": "esp32-devkit", "size": 262144, "signed": true, "added_at": 1796131200, "rollouts": [1, 3]}]}'
route GET /v1/images 200 "$IMAGES"
run 2 $T image list $API
has err.log "^tcpota image: no API token: give --token-file FILE, set TCPOTA_TOKEN, or give --data DIR"
[ "$(nreq)" -eq 0 ] || fail "a request was sent without a token"
# Set but empty (TCPOTA_TOKEN=$(cat WRONGDIR/api.token)): not "set TCPOTA_TOKEN".
TCPOTA_TOKEN='' run 2 $T image list $API
has err.log "^tcpota image: no API token: TCPOTA_TOKEN is set but empty \(as \\\$\(cat FILE\) leaves it when FILE cannot be read\); set it to the line of the server's DIR/api.token, or give --token-file FILE or --data DIR$"
[ "$(nreq)" -eq 0 ] || fail "a request was sent with an empty TCPOTA_TOKEN"
run 0 $T image list $API --token-file tok
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "--token-file: sent '$(req header Authorization)'"
[ "$(req method) $(req path)" = "GET /v1/images" ] || fail "image list sent $(req method) $(req path)"
: > requests.jsonl
run 0 $T image list $API --data data
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "--data DIR: the token of DIR/api.token was not sent"
TCPOTA_TOKEN=$TOKEN run 0 $T image list $API
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "TCPOTA_TOKEN was not sent"
# --data DIR on the command line wins over TCPOTA_TOKEN in the environment
# (an export left from another server), as --token-file does (before, the
# environment's token was sent, and its 401 blamed TCPOTA_TOKEN).
TCPOTA_TOKEN=other run 0 $T image list $API --data data
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "TCPOTA_TOKEN won over --data: sent '$(req header Authorization)'"
TCPOTA_TOKEN=$TOKEN run 2 $T image list $API --data nothere
has err.log "--data: cannot open nothere/api.token: No such file"
TCPOTA_TOKEN=other run 0 $T image list $API --token-file tok
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "TCPOTA_TOKEN won over --token-file"
TCPOTA_TOKEN=$TOKEN TCPOTA_API=127.0.0.1:$(cat port) run 0 $T image list
[ "$(req path)" = "/v1/images" ] || fail "TCPOTA_API was not used"
run 2 $T image list $API --data nothere
has err.log "--data: cannot open nothere/api.token: No such file"
chmod 644 tok
run 0 $T image list $API --token-file tok
has err.log "warning: tok is readable by others \(mode 0644\); chmod 600 tok"
chmod 600 tok
mkfifo fifo
run 2 $T image list $API --token-file fifo
has err.log "--token-file: fifo is not a regular file \(it is a FIFO\)"
# A token file written on Windows (CRLF) is taken; a blank or a control
# character inside is not a token (it would change the header).
printf '%s\r\n' "$TOKEN" > crlf.tok; chmod 600 crlf.tok
run 0 $T image list $API --token-file crlf.tok
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "a CRLF token file: sent '$(req header Authorization)'"
# ... and one an editor saved with a UTF-8 byte order mark first.
printf '\357\273\277%s\n' "$TOKEN" > bom.tok; chmod 600 bom.tok
run 0 $T image list $API --token-file bom.tok
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "a token file with a BOM: sent '$(req header Authorization)'"
for t in "abc def" "$(printf 'abc\177def')"; do
  printf '%s\n' "$t" > odd.tok; chmod 600 odd.tok
  run 2 $T image list $API --token-file odd.tok
  has err.log "^tcpota image: --token-file: odd.tok does not hold a token \(one line, no blanks\)"
  TCPOTA_TOKEN=$t run 2 $T image list $API
  has err.log "^tcpota image: TCPOTA_TOKEN does not hold a token \(one line, no blanks\)"
done
: > empty.tok
run 2 $T image list $API --token-file empty.tok
has err.log "^tcpota image: --token-file: empty.tok is empty; give the file that holds the server's token"
# At most 511 characters (the 512 bytes kept for it, with its 0): one
# more is refused, from a file or the environment, and not sent.
long=$(printf 'a%.0s' {1..512})
printf '%s\n' "$long" > long.tok; chmod 600 long.tok
run 2 $T image list $API --token-file long.tok
has err.log "^tcpota image: --token-file: long.tok does not hold a token"
TCPOTA_TOKEN=$long run 2 $T image list $API
has err.log "^tcpota image: TCPOTA_TOKEN does not hold a token"
TCPOTA_TOKEN=${long:1} run 1 $T image list $API
[ "$(req header Authorization)" = "Bearer ${long:1}" ] || fail "a 511-character token was not sent whole"
run 2 $T image list $API --token-file ''
has err.log "^tcpota image: --token-file: the file name is empty; give the path of a file$"
run 1 $T image list $API --token-file bad.tok
has err.log "^tcpota image: the API at http://127.0.0.1:$(cat port) \(from --api\) refused the token from --token-file bad.tok; give the token in that server's DIR/api.token \(--token-file, TCPOTA_TOKEN or --data DIR\)$"
TCPOTA_TOKEN=nope run 1 $T image list $API
has err.log "refused the token from the environment variable TCPOTA_TOKEN"
# A DIR's token refused: it may have been copied there while the server
# ran (a trial's was, and the message sent it back to that very file).
mkdir baddata; cp bad.tok baddata/api.token
run 1 $T image list $API --data baddata
has err.log "refused the token from baddata/api.token \(--data baddata\); give the token in that server's DIR/api.token \(--token-file, TCPOTA_TOKEN or --data DIR\); a server reads its api.token when it starts: one written there while it runs is its token only after a restart$"
# An address from TCPOTA_API is named as such, and may be another server's
# (a trial's stale TCPOTA_API was read as a wrong token).
TCPOTA_API="http://127.0.0.1:$(cat port)" run 1 $T image list --token-file bad.tok
has err.log "^tcpota image: the API at http://127.0.0.1:$(cat port) \(TCPOTA_API\) refused the token from --token-file bad.tok; give the token in that server's DIR/api.token \(--token-file, TCPOTA_TOKEN or --data DIR\), or check that TCPOTA_API names the server you mean \(--api URL\)$"
ok "the token: --token-file, else --data DIR/api.token, else TCPOTA_TOKEN; missing: exit 2; refused: exit 1 naming its source"

# --- image list: the table and --json
export TCPOTA_TOKEN=$TOKEN
run 0 $T image list $API
has out.log "^ID +VERSION +MODEL +SIZE +SIGNED +ADDED \(UTC\) +ROLLOUTS$"
has out.log "^9f2c41d0e1a7  2\.0\.0 +esp32-devkit +262144  yes +2026-12-01 13:20:00  1,3$"
! grep -q "$ID" out.log || fail "the table shows the full image id: $(cat out.log)"
run 0 $T image list $API --json
python3 -c 'import json,sys; a=json.load(open("out.log")); b=json.loads(sys.argv[1]); assert a == b, (a, b)' "$IMAGES" ||
  fail "--json is not the server's JSON: $(cat out.log)"
ok "image list prints an aligned table (ids of 12 digits, UTC times) and --json the server's JSON"

# --- image add: the bytes, the manifest header, unsigned with ?version&model
make_image fw.bin 70000
head -c 150 /dev/urandom > fw.bin.manifest
ADDED='{"id": "'$ID'", "version": "2.0.0", "model": "esp32-devkit", "size": 70000, "signed": true, "added_at": 1796131200, "rollouts": []}'
route POST /v1/images 201 "$ADDED"
run 0 $T image add fw.bin $API
[ "$(req method) $(req path)" = "POST /v1/images" ] || fail "image add sent $(req method) $(req path)"
[ "$(req sha256)" = "$(sha256sum < fw.bin | cut -d' ' -f1)" ] || fail "the body is not the image's bytes ($(req len) bytes)"
[ "$(req header Tcpota-Manifest | base64 -d | sha256sum)" = "$(sha256sum < fw.bin.manifest)" ] ||
  fail "Tcpota-Manifest is not the base64 of fw.bin.manifest: $(req header Tcpota-Manifest)"
[ "$(req header Authorization)" = "Bearer $TOKEN" ] || fail "image add sent no token"
has out.log "^added image $ID: version 2\.0\.0, model esp32-devkit, 70000 bytes, signed$"
# The command it suggests is for a shell: a model with a shell's special
# characters is quoted, so that pasting it runs nothing else.
for m in 'a;b' "it's"; do
  route POST /v1/images 201 "${ADDED/esp32-devkit/$m}"
  run 0 $T image add fw.bin $API
  line=$(grep '^roll it out: ' out.log) || fail "no rollout command printed: $(cat out.log)"
  words=$(python3 -c 'import shlex, sys
l = shlex.shlex(sys.argv[1], posix=True, punctuation_chars=True); l.whitespace_split = True
w = list(l); print(len(w), w[w.index("--model") + 1], w[-2:])' "${line#roll it out: }")
  [ "$words" = "9 $m ['--api', '127.0.0.1:$(cat port)']" ] ||
    fail "the printed command does not give --model '$m' as one word, then the server's --api: $line"
done
# A model that starts with "--" is given joined, the one form the parser
# takes it in (--model --m would be refused as a forgotten value).
route POST /v1/images 201 "${ADDED/esp32-devkit/--m}"
run 0 $T image add fw.bin $API
has out.log "^roll it out: tcpota rollout create --image 9f2c41d0e1a7 --model=--m$SAME$"
# An image already stored names the rollout that applies to it, not one a
# newer rollout superseded (before: the last of "rollouts", newest first,
# so the oldest: superseded, offering the image to nobody). Several that
# apply (other groups) are each named; none: the command to roll it out.
rollout_json() { # ID SUPERSEDED STATE GROUP
  printf '{"id": %s, "image": "%s", "version": "2.0.0", "model": "esp32-devkit", "group": "%s", "state": "%s", "superseded": %s}' "$1" "$ID" "$4" "$3" "$2"
}
route POST /v1/images 200 "${ADDED/\"rollouts\": \[\]/\"rollouts\": [5, 3, 1]}"
route GET /v1/rollouts/5 200 "$(rollout_json 5 false active canary)"
route GET /v1/rollouts/3 200 "$(rollout_json 3 false paused "")"
route GET /v1/rollouts/1 200 "$(rollout_json 1 true active "")"
run 0 $T image add fw.bin $API
[ "$(grep -c ' uses it' out.log)" -eq 2 ] || fail "image add named other rollouts than 5 and 3: $(cat out.log)"
has out.log "^rollout 5 \(group canary\) uses it: follow it with tcpota rollout show 5$SAME$"
has out.log "^rollout 3 uses it: follow it with tcpota rollout show 3$SAME$"
! grep -q "roll it out" out.log || fail "a roll-it-out command beside the rollouts that apply: $(cat out.log)"
route GET /v1/rollouts/5 200 "$(rollout_json 5 true active canary)"
route GET /v1/rollouts/3 200 "$(rollout_json 3 true active "")"
run 0 $T image add fw.bin $API
! grep -q " uses it" out.log || fail "image add named a superseded rollout: $(cat out.log)"
has out.log "^roll it out: tcpota rollout create --image 9f2c41d0e1a7 --model esp32-devkit$SAME$"
ok "image add of a stored image names the rollouts that apply to it (not superseded ones), else how to roll it out"
route POST /v1/images 201 "$ADDED"
head -c 99 /dev/urandom > other.manifest
run 0 $T image add fw.bin --manifest other.manifest $API
[ "$(req header Tcpota-Manifest | base64 -d | sha256sum)" = "$(sha256sum < other.manifest)" ] ||
  fail "--manifest M was not the one sent"
make_image raw.bin 5000
route POST "/v1/images?version=2.0.0%2Bb1&model=esp32" 201 "$ADDED"
run 0 $T image add raw.bin --version 2.0.0+b1 --model esp32 $API
[ "$(req path)" = "/v1/images?version=2.0.0%2Bb1&model=esp32" ] || fail "unsigned: query $(req path)"
[ -z "$(req header Tcpota-Manifest)" ] || fail "a manifest header was sent for an image without one"
[ "$(req sha256)" = "$(sha256sum < raw.bin | cut -d' ' -f1)" ] || fail "unsigned: the body is not the image"
route POST /v1/images 400 '{"error": "the manifest does not verify against any --pubkey key", "field": "manifest"}'
run 2 $T image add fw.bin $API
# Named by the file it came from: FILE.manifest is read without being named.
has err.log "^tcpota image: fw\.bin\.manifest: the manifest does not verify against any --pubkey key$"
run 2 $T image add fw.bin --manifest other.manifest $API
has err.log "^tcpota image: other\.manifest: the manifest does not verify against any --pubkey key$"
route POST /v1/images 400 '{"error": "the image is larger than --max-image 65536", "field": "body"}'
run 2 $T image add fw.bin $API
has err.log "^tcpota image: fw\.bin: the image is larger than --max-image 65536$"
# --version named only when given: else the version came from the manifest.
route POST /v1/images 400 '{"error": "version 1.4.0 contradicts the signed manifest", "field": "version"}'
run 2 $T image add fw.bin $API
has err.log "^tcpota image: version 1\.4\.0 contradicts the signed manifest \(field: version\)$"
route POST "/v1/images?version=1.4.0" 400 '{"error": "version 1.4.0 contradicts the signed manifest", "field": "version"}'
run 2 $T image add fw.bin --version 1.4.0 $API
has err.log "^tcpota image: --version 1\.4\.0 contradicts the signed manifest$"
route POST "/v1/images?version=2.0.0%2Bb1&model=esp32" 400 '{"error": "this server takes signed images only", "field": "manifest"}'
run 2 $T image add raw.bin --version 2.0.0+b1 --model esp32 $API
has err.log "^tcpota image: this server takes signed images only \(see --manifest\)$"
# The API's words for an HTTP client (a header, base64, percent-encoding)
# become the command's: its option, its argument.
route POST "/v1/images?version=2.0.0&model=esp32" 400 '{"error": "the server has --pubkey keys and takes signed images only: sign it with one of them (tcpota sign; tcpota image add then sends FILE.manifest) and send its manifest (base64) in the Tcpota-Manifest header", "field": "manifest"}'
run 2 $T image add raw.bin --version 2.0.0 --model esp32 $API
has err.log "^tcpota image: the server has --pubkey keys and takes signed images only: sign it with one of them \(tcpota sign; tcpota image add then sends FILE\.manifest\), or give its manifest with --manifest M$"
route GET /v1/devices/xxx 400 '{"error": "a device id is 1 to 64 printable ASCII characters (percent-encoded)", "field": "id"}'
run 2 $T device show xxx $API
has err.log "^tcpota device: a device id is 1 to 64 printable ASCII characters$"
n=$(nreq)
run 2 $T image add fifo $API
has err.log "^tcpota image: firmware: fifo is not a regular file"
: > empty.bin
run 2 $T image add empty.bin $API
has err.log "empty.bin is empty"
# One byte over 1 GiB (a sparse file): refused before a byte is read.
truncate -s $(( (1 << 30) + 1 )) huge.bin
n0=$(nreq)
run 2 $T image add huge.bin $API
has err.log "^tcpota image: huge.bin is larger than 1 GiB; give a firmware image$"
[ "$(nreq)" -eq "$n0" ] || fail "an image over 1 GiB was sent"
rm -f huge.bin
: > empty.manifest
run 2 $T image add fw.bin --manifest empty.manifest $API
has err.log "^tcpota image: manifest empty.manifest is empty; sign the image again \(tcpota sign\)$"
[ "$(nreq)" -eq "$n0" ] || fail "an empty manifest was sent"
# A manifest too big is named by the option it came from, not "file:".
head -c 70000 /dev/zero > big.manifest
run 2 $T image add fw.bin --manifest big.manifest $API
has err.log "^tcpota image: --manifest: big.manifest is larger than the [0-9]* bytes allowed"
# FILE.manifest left as a link to nothing: not silently unsigned.
cp fw.bin lnk.bin && ln -s gone.manifest lnk.bin.manifest
run 2 $T image add lnk.bin --version 2.0.0 --model esp32 $API
has err.log "^tcpota image: lnk.bin.manifest is a symbolic link to a file that does not exist; fix or remove it \(without it the image goes unsigned\)$"
[ "$(nreq)" -eq "$n0" ] || fail "a manifest too big, or an image whose manifest link is broken, was sent"
run 2 $T image add $API
has err.log "add needs the image FILE"
[ "$(nreq)" -eq "$n" ] || fail "a request was sent for a refused file"
ok "image add sends the bytes, Tcpota-Manifest (base64 of FILE.manifest or --manifest), ?version&model unsigned; a 400 names the manifest, FILE or option it is about, exit 2"

# --- image rm: 409 with the server's message
route DELETE /v1/images/9f2c41d0 200 '{"deleted": "'$ID'"}'
run 0 $T image rm 9f2c41d0 $API
[ "$(req method) $(req path)" = "DELETE /v1/images/9f2c41d0" ] || fail "image rm sent $(req method) $(req path)"
has out.log "^removed image $ID$"
route DELETE /v1/images/9f2c41d0 409 '{"error": "image 9f2c41d0e1a7 is used by rollout 1 (active); cancel the rollout first"}'
run 1 $T image rm 9f2c41d0 $API
has err.log "^tcpota image: image 9f2c41d0e1a7 is used by rollout 1 \(active\); cancel the rollout first$"
run 1 $T image rm 9f2c41d0 $API --json
has out.log '"error": "image 9f2c41d0e1a7 is used by rollout 1'
run 1 $T image rm abcdef99 $API
has err.log "^tcpota image: no route in the mock for this path$"
# The server names the id it did not find: no "(field: id)" after it.
route DELETE /v1/images/deadbeef 404 '{"error": "no image has the id, prefix or version deadbeef (tcpota image list shows ids and versions)", "field": "id"}'
run 1 $T image rm deadbeef $API
has err.log "^tcpota image: no image has the id, prefix or version deadbeef \(tcpota image list shows ids and versions\)$"
run 2 $T image rm $API
has err.log "rm needs an image ID"
n0=$(nreq)
run 2 $T image rm "" $API
has err.log "^tcpota image: rm needs an image ID or version, and the one given is empty \(see tcpota image list\)$"
[ "$(nreq)" -eq "$n0" ] || fail "image rm '' sent a request"
n0=$(nreq)
run 2 $T image rm "$(printf 'a%.0s' {1..501})" $API
has err.log "^tcpota image: 'a{501}' is not an image ID"
run 2 $T image add raw.bin --version "$(printf '1%.0s' {1..901})" --model esp32 $API
has err.log "^tcpota image: --version is too long \(901 characters\): at most 32$"
run 2 $T image add raw.bin --version 1.0 --model "$(printf 'm%.0s' {1..33})" $API
has err.log "^tcpota image: --model is too long \(33 characters\): at most 32$"
[ "$(nreq)" -eq "$n0" ] || fail "an image ID or a version too long was sent cut short"
ok "image rm: DELETE, 409 and 404 exit 1 with the server's text"

# --- rollout create: the JSON body; show: the per-wave table
ROLLOUT='{"id": 1, "image": "'$ID'", "version": "2.0.0", "model": "esp32", "group": "", "state": "active", "superseded": false, "allow_downgrade": true, "rules": {"halt_at": 20, "halt_min": 3, "min_finished": 10, "success_pct": 90, "soak_s": 300}, "waves": [{"percent": 10, "open": true, "opened_at": 1796131200, "targeted": 5, "offered": 4, "downloading": 1, "updated": 2, "failed": 1}, {"percent": 50, "open": false, "opened_at": null, "targeted": 20, "offered": 0, "downloading": 0, "updated": 0, "failed": 0}, {"percent": 100, "open": false, "opened_at": null, "targeted": 25, "offered": 0, "downloading": 0, "updated": 0, "failed": 0}], "totals": {"targeted": 50, "offered": 4, "downloading": 1, "updated": 2, "failed": 1}, "created_at": 1796131200, "changed_at": 1796131260}'
route POST /v1/rollouts 201 "$ROLLOUT"
run 0 $T rollout create --image 2.0.0 --model esp32 --waves 10,50,100 --halt-at 20 --halt-min 3 \
  --min-finished 10 --success-pct 90 --soak 300 --group canary --allow-downgrade $API
grep -q 'targets no device' out.log && fail "a rollout of 50 devices was said to reach none: $(cat out.log)"
[ "$(req method) $(req path)" = "POST /v1/rollouts" ] || fail "rollout create sent $(req method) $(req path)"
[ "$(req header Content-Type)" = "application/json" ] || fail "Content-Type $(req header Content-Type)"
python3 -c 'import json,sys; b=json.loads(sys.argv[1]); assert b == {"image": "2.0.0", "model": "esp32",
  "group": "canary", "waves": [10, 50, 100], "halt_at": 20, "halt_min": 3, "min_finished": 10,
  "success_pct": 90, "soak_s": 300, "allow_downgrade": True}, b' "$(req body)" ||
  fail "rollout create body: $(req body)"
run 0 $T rollout create --image 9f2c41d0 --model esp32 $API
python3 -c 'import json,sys; b=json.loads(sys.argv[1]); assert b == {"image": "9f2c41d0", "model": "esp32"}, b' "$(req body)" ||
  fail "options not given were sent: $(req body)"
run 0 $T rollout create --image 2.0.0 --model esp32 --halt-at 101 $API
[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["halt_at"])' "$(req body)")" = 101 ] ||
  fail "--halt-at 101 was not left to the server: $(req body)"
# The server's warning in a create's answer is printed (test_fleet_resign
# has the server's side: an image older than the superseded rollout's).
route POST /v1/rollouts 201 "${ROLLOUT/\"id\": 1,/\"id\": 7, \"supersedes\": 6, \"warning\": \"its image 2.0.0 is older\",}"
run 0 $T rollout create --image 2.0.0 --model esp32 $API
has out.log "^warning: its image 2\.0\.0 is older$"
# One that reaches no device (a misspelled --group): said at create (a new
# user's trial: an active rollout with TARGETED 0, and nothing more).
NOBODY=${ROLLOUT/\"targeted\": 50/\"targeted\": 0}
route POST /v1/rollouts 201 "${NOBODY/\"group\": \"\"/\"group\": \"canray\"}"
run 0 $T rollout create --image 2.0.0 --model esp32 --group canray $API
has out.log "^it targets no device yet: none of model esp32 in group canray has checked in; are they spelled as the devices give them\? \(tcpota device list --model esp32 --group canray lists those that have\); a device that checks in later joins the rollout$"
route GET /v1/rollouts/1 200 "$ROLLOUT"
run 0 $T rollout show 1 $API
[ "$(req method) $(req path)" = "GET /v1/rollouts/1" ] || fail "rollout show sent $(req method) $(req path)"
has out.log "^rollout 1: active$"
has out.log "^WAVE +PERCENT +OPEN +OPENED \(UTC\) +TARGETED +OFFERED +DOWNLOADING +UPDATED +FAILED$"
has out.log "^1 +10%  yes   2026-12-01 13:20:00 +5 +4 +1 +2 +1$"
has out.log "^2 +50%  no +- +20 +0 +0 +0 +0$"
has out.log "^total +50 +4 +1 +2 +1$"
has out.log "^  next wave  after 10 finished, 90% of them updated, 300 s open$"
# A rollout of one wave has no next wave: no rule for opening one.
ONE_WAVE='{"id": 2, "image": "'$ID'", "version": "2.0.0", "model": "esp32", "group": "", "state": "active", "superseded": false, "allow_downgrade": false, "rules": {"halt_at": 20, "halt_min": 3, "min_finished": 10, "success_pct": 90, "soak_s": 300}, "waves": [{"percent": 100, "open": true, "opened_at": 1796131200, "targeted": 5, "offered": 0, "downloading": 0, "updated": 0, "failed": 0}], "totals": {"targeted": 5, "offered": 0, "downloading": 0, "updated": 0, "failed": 0}, "created_at": 1796131200, "changed_at": 1796131200, "status": "every wave is open"}'
route GET /v1/rollouts/2 200 "$ONE_WAVE"
run 0 $T rollout show 2 $API
has out.log "^  status     every wave is open$"
grep -q "next wave" out.log && fail "rollout show of a single-wave rollout has a next wave: $(cat out.log)"
run 0 $T rollout show 1 $API --json
python3 -c 'import json,sys; assert json.load(open("out.log")) == json.loads(sys.argv[1])' "$ROLLOUT" ||
  fail "rollout show --json: $(cat out.log)"
route GET /v1/rollouts 200 '{"rollouts": ['"$ROLLOUT"']}'
run 0 $T rollout list $API
has out.log "^ ?ID +STATE +IMAGE +VERSION +MODEL +GROUP +WAVES OPEN +TARGETED +UPDATED +FAILED +CREATED \(UTC\)$"
has out.log "^ 1  active +9f2c41d0e1a7  2\.0\.0 +esp32 +- +1/3 \(10%\) +50 +2 +1  2026-12-01 13:20:00$"
# A cancelled rollout the store marked superseded when a newer one came:
# "cancelled" alone (a trial read "cancelled, superseded" as replaced).
CANCELLED=${ROLLOUT/\"active\"/\"cancelled\"}
route GET /v1/rollouts 200 '{"rollouts": ['"${CANCELLED/\"superseded\": false/\"superseded\": true}"']}'
run 0 $T rollout list $API
has out.log "^ 1  cancelled +9f2c41d0e1a7 "
! grep -q superseded out.log || fail "a cancelled rollout was listed as superseded: $(cat out.log)"
ok "rollout create sends the JSON body (waves as an array), show and list print waves, totals and state"

# --- pause, resume, cancel; 409 and 400 from the server
route POST /v1/rollouts/1/pause 200 "${ROLLOUT/\"active\"/\"paused\"}"
run 0 $T rollout pause 1 $API
[ "$(req method) $(req path) $(req len)" = "POST /v1/rollouts/1/pause 0" ] || fail "pause sent $(req method) $(req path) $(req len)"
has out.log "^rollout 1 is now paused$"
route POST /v1/rollouts/1/resume 409 '{"error": "rollout 1 is cancelled; it cannot be resumed"}'
run 1 $T rollout resume 1 $API
[ "$(req path)" = "/v1/rollouts/1/resume" ] || fail "resume sent $(req path)"
has err.log "^tcpota rollout: rollout 1 is cancelled; it cannot be resumed$"
route POST /v1/rollouts/1/cancel 200 "${ROLLOUT/\"active\"/\"cancelled\"}"
run 0 $T rollout cancel 1 $API
has out.log "^rollout 1 is now cancelled$"
route POST /v1/rollouts 400 '{"error": "waves must be strictly increasing percentages 1..100", "field": "waves"}'
run 2 $T rollout create --image 2.0.0 --model esp32 --waves 50,10 $API
has err.log "^tcpota rollout: --waves must be strictly increasing percentages 1\.\.100$"
# A field the command sets from an option is named by the option (soak_s: --soak).
route POST /v1/rollouts 400 '{"error": "soak_s must be a whole number from 0 to 604800", "field": "soak_s"}'
run 2 $T rollout create --image 2.0.0 --model esp32 --soak 99999999999 $API
has err.log "^tcpota rollout: --soak must be a whole number from 0 to 604800$"
# A field no option sets keeps its name.
route POST /v1/rollouts 400 '{"error": "something about allow", "field": "allow_downgrade"}'
run 2 $T rollout create --image 2.0.0 --model esp32 $API
has err.log "^tcpota rollout: something about allow \(field: allow_downgrade\)$"
# A bad value the server catches (400) exits 2, as one the CLI catches does.
route POST /v1/rollouts 400 '{"error": "halt_at must be a whole number from 0 to 100", "field": "halt_at"}'
run 2 $T rollout create --image 2.0.0 --model esp32 --halt-at 101 $API
has err.log "^tcpota rollout: --halt-at must be a whole number from 0 to 100$"
route GET "/v1/devices?limit=0" 400 '{"error": "limit must be a whole number from 1 to 100000", "field": "limit"}'
run 2 $T device list --limit 0 $API
has err.log "^tcpota device: --limit must be a whole number from 1 to 100000$"
route GET "/v1/devices?state=bogus" 400 '{"error": "unknown state bogus; one of seen, offered", "field": "state"}'
run 2 $T device list --state bogus $API
has err.log "^tcpota device: --state: unknown state bogus; one of seen, offered$"
route PATCH /v1/devices/d-1 400 '{"error": "group must be a string of at most 32 printable ASCII characters", "field": "group"}'
run 2 $T device set d-1 --group "a b" $API
has err.log "^tcpota device: --group must be a string of at most 32 printable ASCII characters$"
# Past the last id with --after alone: said so.
route GET "/v1/devices?after=zzz" 200 '{"devices": [], "total": 0}'
run 0 $T device list --after zzz $API
has out.log "^no devices after zzz \(ids in byte order\)$"
# --state failed finds only "failed"; a rollout's FAILED counts more.
route GET "/v1/devices?state=failed" 200 '{"devices": [], "total": 0}'
run 0 $T device list --state failed $API
has out.log "^no devices match$"
has out.log "^a rollout's FAILED also counts the states rolled-back, boot-failed and declined: tcpota device list --state rolled-back"
route GET "/v1/devices?state=declined" 200 '{"devices": [], "total": 0}'
run 0 $T device list --state declined $API
! grep -q "FAILED" out.log || fail "the FAILED hint for --state declined: $(cat out.log)"
route GET /v1/rollouts/7 404 '{"error": "no rollout 7", "field": "id"}'
run 1 $T rollout show 7 $API
has err.log "^tcpota rollout: no rollout 7$"
ok "pause, resume, cancel POST to their paths; 400 (with field) exits 2, 404 and 409 exit 1, with the server's message"

# --- usage errors: exit 2, nothing sent
n=$(nreq)
run 2 $T rollout create --image 2.0.0 --model esp32 --waves 5,x $API
has err.log "^tcpota rollout: --waves: '5,x' is not a list of percentages; e.g\. --waves 5,25,100$"
run 2 $T rollout create --image 2.0.0 --model esp32 --waves "$(seq -s, 1 16),100" $API
has err.log "^tcpota rollout: --waves: 17 waves; a rollout has at most 16$"
run 2 $T rollout create --image 2.0.0 --model esp32 --waves 5,,100 $API
has err.log "--waves: '5,,100' is not a list of percentages"
# Each wave: digits only, at most 23 of them, at most 1000000 (the rest is
# the server's to judge).
for w in +5 ' 5' 5x,100 000000000000000000000005; do
  run 2 $T rollout create --image 2.0.0 --model esp32 --waves "$w" $API
  has err.log "^tcpota rollout: --waves: '${w//+/\\+}' is not a list of percentages; e\.g\. --waves 5,25,100$"
done
# Digits alone over 100 are said as the server says 101 (before: 2^66 was
# "not a list of percentages").
for w in 1000001 5,99999999999999999999; do
  run 2 $T rollout create --image 2.0.0 --model esp32 --waves "$w" $API
  has err.log "^tcpota rollout: --waves: ${w#5,} is not a whole percentage from 1 to 100$"
done
run 2 $T rollout create --image 2.0.0 --model esp32 --halt-at abc $API
has err.log "^tcpota rollout: --halt-at: 'abc' is not a whole number; e\.g\. --halt-at 20$"
run 2 $T rollout create --image 2.0.0 --model esp32 --soak -5 $API
has err.log "^tcpota rollout: --soak: '-5' is negative; e\.g\. --soak 300$"
run 2 $T rollout create --image 2.0.0 --model esp32 --soak 99999999999999999999 $API
has err.log "^tcpota rollout: --soak: '99999999999999999999' is too large; e\.g\. --soak 300$"
run 2 $T rollout create --model esp32 $API
has err.log "create needs --image"
run 2 $T rollout create --image 2.0.0 $API
has err.log "^tcpota rollout: create needs --model M"
run 2 $T rollout create --image 2.0.0 --model esp32 --frobnicate $API
has err.log "^tcpota rollout: unknown option '--frobnicate'$"
run 2 $T rollout create --image 2.0.0 --model $API
has err.log "--model needs a value"
# An empty --group is not "all devices" (that is --group left out): a staged
# rollout must not be superseded by a 100 % one by an empty variable.
run 2 $T rollout create --image 2.0.0 --model esp32 --group '' $API
has err.log "^tcpota rollout: --group is empty: name a group, or leave --group out for all devices of the model$"
run 2 $T rollout show $API
has err.log "show needs a rollout ID"
run 2 $T rollout pause x1 $API
has err.log "ID: 'x1' is not a whole number"
# "-1" is an ID that is wrong, not an unknown option
run 2 $T rollout show -1 $API
has err.log "^tcpota rollout: ID: '-1' is negative; e\.g\. tcpota rollout show 1$"
n0=$(nreq)
run 2 $T rollout pause 0 $API
has err.log "^tcpota rollout: ID: rollout ids start at 1; e\.g\. tcpota rollout pause 1$"
[ "$(nreq)" -eq "$n0" ] || fail "rollout pause 0 was sent"
run 2 $T rollout frob $API
has err.log "unknown subcommand 'frob'"
# An option before the subcommand: said where it goes.
run 2 $T image --json list $API
has err.log "^tcpota image: '--json' is an option: give the subcommand \(add, list or rm\) first, then its options \(tcpota image SUBCOMMAND \.\.\. --json\)$"
# One ID where one is taken: a second is refused, before or after "--".
run 2 $T image rm 9f2c41d0 abcdef99 $API
has err.log "^tcpota image: unexpected argument 'abcdef99'$"
run 2 $T image rm $API -- 9f2c41d0 -abcdef99
has err.log "^tcpota image: unexpected argument '-abcdef99'$"
run 2 $T image list --limit 3 $API
has err.log "unknown option '--limit'$"
# An ID that starts with '-' before '--': told where it goes.
run 2 $T device show -dash $API
has err.log "^tcpota device: unknown option '-dash'; an argument that starts with '-' goes last, after '--' \(tcpota device \.\.\. \[options\] -- -dash\)$"
run 2 $T device list --limit many $API
has err.log "^tcpota device: --limit: 'many' is not a whole number"
run 2 $T device list --limit 9223372036854775808 $API
has err.log "^tcpota device: --limit: '9223372036854775808' is too large"
run 2 $T device list --api ''
has err.log "^tcpota device: --api is empty; give the API's address"
for t in 0 86401; do
  run 2 $T device list --timeout $t $API
  has err.log "^tcpota device: --timeout: '$t' is out of range: give 1\.\.86400 seconds$"
done
run 2 $T device list --limit 5x $API
has err.log "^tcpota device: --limit: '5x' is not a whole number"
run 2 $T device list --json --json $API
has err.log "^tcpota device: --json is given twice; give it once$"
run 2 $T device list --json=yes $API
has err.log "^tcpota device: --json takes no value$"
run 2 $T device show $API
has err.log "show needs a device ID"
# An ID or a filter that does not fit the request is refused, never sent
# cut short (a secret made for another device).
n0=$(nreq)
run 2 $T device show '' $API
has err.log "^tcpota device: the device ID is empty$"
run 2 $T device secret "$(printf 'd%.0s' {1..600})" $API
has err.log "^tcpota device: the device ID is too long \(600 characters\): at most 64$"
run 2 $T device show "$(printf 'd%.0s' {1..65})" $API
has err.log "^tcpota device: the device ID is too long \(65 characters\): at most 64$"
run 2 $T device list --model "$(printf 'm%.0s' {1..2100})" $API
has err.log "^tcpota device: the filters are too long$"
run 2 $T device secret dev-7 --out '' $API
has err.log "^tcpota device: --out is empty; give --out FILE$"
run 2 $T device secret dev-7 --out - $API
has err.log "^tcpota device: --out - would make a file named '-'; leave --out out to print the secret on standard output$"
[ ! -e ./- ] || fail "--out - made a file named -"
[ "$(nreq)" -eq "$n0" ] || fail "a refused ID or filter was sent: $(tail -1 requests.jsonl)"
run 2 $T device set dev-7 $API
has err.log "set needs --group G"
# https:// is for a TLS proxy in front of the API (test_api_https.sh); --ca
# belongs to it, and a port that is not a number is refused as with http.
run 2 $T device list --api http://127.0.0.1:1 --ca tok
has err.log "^tcpota device: --ca is for an https:// API address, and the API's is http://127\.0\.0\.1:1;"
run 2 $T device list --api https://x:
has err.log "^tcpota device: --api: 'https://x:': no port after ':'"
# https:// without a port is HTTPS's own, 443 (whatever answers there,
# or nothing, it is the address the message names; the token goes only to
# a certificate the system's CAs trust for 127.0.0.1).
run 1 $T device list --api https://127.0.0.1 --token-file tok --timeout 2
has err.log "the API at https://127\.0\.0\.1:443[ :]"
run 2 $T device list --api ftp://127.0.0.1:1
has err.log "^tcpota device: --api: 'ftp://127\.0\.0\.1:1' is not an http:// or https:// URL"
# A query, a fragment or a user: not parts of an API address (a token goes
# in its own header, never in the URL).
for u in 'http://127.0.0.1:1/?x=1' 'http://127.0.0.1:1/#x' 'http://u:p@127.0.0.1:1'; do
  run 2 $T device list --api "$u"
  has err.log "^tcpota device: --api: '.*' is not an API address; give http://HOST:PORT"
  grep -qF -- "'$u'" err.log || fail "the message does not name '$u': $(cat err.log)"
done
run 2 $T device list --api 127.0.0.1:0
has err.log "^tcpota device: --api: '127\.0\.0\.1:0': port 0 is not a server's port$"
# A path is a prefix (a proxy's mount point); one that ends in /v1 would
# ask for /v1/v1/...: refused before anything is sent.
n0=$(nreq)
for u in 'http://127.0.0.1:1/v1' 'http://127.0.0.1:1/ota/v1/'; do
  run 2 $T image list --api "$u"
  has err.log "^tcpota image: --api: '.*' ends in /v1, which the commands add themselves; give the address without it"
done
[ "$(nreq)" -eq "$n0" ] || fail "an --api ending in /v1 was used"
# A bare HOST means the API's port (8071), an http:// URL HTTP's (80); nothing
# listens on 127.0.0.3.
run 1 $T device list --api 127.0.0.3
has err.log "cannot reach the API at http://127\.0\.0\.3:8071 "
run 1 $T device list --api http://127.0.0.3
has err.log "cannot reach the API at http://127\.0\.0\.3:80 "
# HOST: with no port (an unset $PORT in a script) is refused, never taken as
# the default port, where another server may answer.
run 2 $T device list --api 127.0.0.3:
has err.log "^tcpota device: --api: '127\.0\.0\.3:': no port after ':'; give HOST:PORT"
run 2 env TCPOTA_API=http://127.0.0.3:/ $T device list
has err.log "'http://127\.0\.0\.3:/': no port after ':'"
[ "$(nreq)" -eq "$n" ] || fail "a usage error still sent a request"
run 0 $T rollout --help
has out.log "--waves PCT,\.\.\. +cumulative percentages of the devices, at most 16, e\.g\."
# Each action rollout --help offers is a POST docs/api.md's endpoint table lists.
actions=$(sed -nE 's/^ +tcpota rollout ([a-z|-]+) ID.*/\1/p' out.log | grep '|' | tr '|' ' ')
[ -n "$actions" ] || fail "no actions in rollout --help: $(cat out.log)"
for act in $actions; do
  grep -F -- "| \`POST /v1/rollouts/{id}/$act\` |" "$E2E/../../docs/api.md" > /dev/null ||
    fail "docs/api.md's endpoint table lacks POST /v1/rollouts/{id}/$act"
done
run 0 $T device list --help
has out.log "usage: tcpota device list"
ok "usage errors (unknown option, bad --waves, non-numbers, missing ID, empty --group) exit 2 and send nothing"

# --- devices
DEV='{"id": "dev 7/x", "model": "esp32", "version": "1.0.0", "running": "41aa", "group": "", "address": "127.0.0.1", "protocol": "v1", "state": "rolled-back", "image": "'$ID'", "bytes": 0, "size": 262144, "percent": 100, "reason": "health check failed", "first_seen": 1796131200, "last_seen": 1796131260, "has_secret": false}'
route GET "/v1/devices?state=failed&limit=5" 200 '{"devices": ['"$DEV"'], "total": 3, "next": "dev 7/x"}'
run 0 $T device list --state failed --limit 5 $API
[ "$(req method) $(req path)" = "GET /v1/devices?state=failed&limit=5" ] || fail "device list sent $(req path)"
has out.log "^ID +MODEL +VERSION +GROUP +STATE +IMAGE +PROGRESS +LAST SEEN \(UTC\) +ADDRESS +REASON$"
has out.log "^dev 7/x  esp32  1\.0\.0 +- +rolled-back  9f2c41d0e1a7 +100%  2026-12-01 13:21:00  127\.0\.0\.1  health check failed$"
has out.log "^1 of 3 devices; the next page: tcpota device list --after 'dev 7/x'"
route GET "/v1/devices?state=failed&limit=5" 200 '{"devices": ['"$DEV"'], "total": 3, "next": "--dev"}'
run 0 $T device list --state failed --limit 5 $API
has out.log "^1 of 3 devices; the next page: tcpota device list --after=--dev "
# A legacy device reports no version: "-", as other empty cells, not a blank.
LEGACY='{"id": "old-1", "model": "esp32", "version": "", "running": "", "group": "", "address": "127.0.0.1", "protocol": "legacy", "state": "seen", "image": "", "bytes": 0, "size": 0, "reason": "", "first_seen": 1796131200, "last_seen": 1796131260, "has_secret": false}'
route GET "/v1/devices?model=legacy" 200 '{"devices": ['"$LEGACY"'], "total": 1}'
run 0 $T device list --model legacy $API
has out.log "^old-1  esp32  - +- +seen "
# Nor is its running image "-" in device show, which read as running nothing.
route GET /v1/devices/old-1 200 "${LEGACY%\}}"', "history": []}'
run 0 $T device show old-1 $API
has out.log "^  version     - \(running image not said by the device\)$"
route GET "/v1/devices/dev%207%2Fx" 200 "${DEV%\}}"', "history": [{"at": 1796131260, "state": "rolled-back", "image": "'$ID'", "detail": "health check failed"}]}'
run 0 $T device show "dev 7/x" $API
[ "$(req path)" = "/v1/devices/dev%207%2Fx" ] || fail "the device id is not percent-encoded: $(req path)"
has out.log "^device dev 7/x: rolled-back$"
has out.log "^  version     1\.0\.0 \(running image 41aa\)$"
has out.log "^2026-12-01 13:21:00  rolled-back  9f2c41d0e1a7  health check failed$"
# A size the server does not know (0) is no "0 of 0 bytes, 0%".
UNSIZED='{"id": "dev-6", "model": "esp32", "version": "2.0.0", "running": "'$ID'", "group": "", "address": "127.0.0.1", "protocol": "v1", "state": "updated", "image": "'$ID'", "bytes": 0, "size": 0, "percent": 0, "reason": "", "first_seen": 1796131200, "last_seen": 1796131260, "has_secret": false}'
route GET /v1/devices/dev-6 200 "${UNSIZED%\}}"', "history": []}'
run 0 $T device show dev-6 $API
has out.log "^  image       $ID$"
route GET "/v1/devices?model=unsized" 200 '{"devices": ['"$UNSIZED"'], "total": 1}'
run 0 $T device list --model unsized $API
has out.log "^dev-6  esp32  2\.0\.0 +- +updated  9f2c41d0e1a7 +-  2026-12-01"
route PATCH /v1/devices/dev-7 200 '{"id": "dev-7", "group": "canary"}'
run 0 $T device set dev-7 --group canary $API
[ "$(req method) $(req path)" = "PATCH /v1/devices/dev-7" ] || fail "device set sent $(req method) $(req path)"
python3 -c 'import json,sys; assert json.loads(sys.argv[1]) == {"group": "canary"}' "$(req body)" || fail "device set body: $(req body)"
has out.log "^device dev-7: group canary$"
route PATCH /v1/devices/nope 404 '{"error": "no device nope"}'
run 1 $T device set nope --group canary $API
has err.log "^tcpota device: no device nope$"
ok "device list (filters in the query), show (id percent-encoded, history), set (PATCH group)"

# --- device rm: DELETE of the id percent-encoded; what went is said
route DELETE "/v1/devices/a%20b" 200 '{"id": "a b", "registered": true, "secret": false}'
run 0 $T device rm "a b" $API
[ "$(req method) $(req path)" = "DELETE /v1/devices/a%20b" ] || fail "device rm sent $(req method) $(req path)"
[ "$(req len)" = 0 ] || fail "device rm sent a body of $(req len) bytes"
has out.log "^removed device a b$"
has out.log "^a device that checks in after this is registered anew$"
run 0 $T device rm "a b" --json $API
python3 -c 'import json,sys; assert json.load(open("out.log"))["registered"] is True' || fail "device rm --json: $(cat out.log)"
route DELETE /v1/devices/nope 404 '{"error": "no device nope", "field": "id"}'
run 1 $T device rm nope $API
has err.log "^tcpota device: no device nope$"
# Several ids: each removed in turn; one not there is said and the others
# still go (exit 1); a bad id stops all before the first request.
route DELETE /v1/devices/d-2 200 '{"id": "d-2", "registered": false, "secret": true}'
n=$(nreq)
run 1 $T device rm "a b" nope d-2 $API
[ "$(nreq)" -eq $((n + 3)) ] || fail "device rm of three ids sent $(( $(nreq) - n )) requests"
has out.log "^removed device a b$"
has out.log "^device d-2 had not checked in: removed its secret$"
has out.log "^a device that checks in after this is registered anew; under --require-auth only with a new secret \(tcpota device secret\)$"
has err.log "^tcpota device: no device nope$"
n=$(nreq)
run 2 $T device rm d-2 "$(printf 'd%.0s' {1..65})" $API
[ "$(nreq)" -eq "$n" ] || fail "device rm with a bad id sent a request"
ok "device rm (DELETE, id percent-encoded; what went said; several ids, one not there, a bad one)"

# --- device secret: printed once as a secret file the simulator takes
SECRET=3b9f00112233445566778899aabbccddeeff00112233445566778899aabbccdd
route POST /v1/devices/dev-7/secret 201 '{"id": "dev-7", "secret": "'$SECRET'"}'
run 0 $T device secret dev-7 $API
[ "$(req method) $(req path)" = "POST /v1/devices/dev-7/secret" ] || fail "secret sent $(req method) $(req path)"
[ "$(cat out.log)" = "tcpota-secret v1 $SECRET" ] || fail "secret stdout: $(cat out.log)"
has err.log "shown only this once"
has err.log "--secret FILE"
run 0 $T device secret dev-7 --out dev7.secret $API
[ "$(stat -c %a dev7.secret)" = 600 ] || fail "--out file mode $(stat -c %a dev7.secret)"
[ "$(cat dev7.secret)" = "tcpota-secret v1 $SECRET" ] || fail "--out file: $(cat dev7.secret)"
! grep -q "$SECRET" out.log err.log || fail "--out also printed the secret"
# The hints are command lines to paste: an ID or a FILE a shell would split
# is quoted (a ' within as '\'').
route POST "/v1/devices/a%20b/secret" 201 '{"id": "a b", "secret": "'$SECRET'"}'
run 0 $T device secret "a b" --out "a b.secret" $API
has out.log "--flash DIR --id 'a b' --secret 'a b\.secret'$"
route POST "/v1/devices/it%27s/secret" 201 '{"id": "it'"'"'s", "secret": "'$SECRET'"}'
run 0 $T device secret "it's" $API
has err.log "--flash DIR --id 'it'\\\\''s' --secret FILE$"
has err.log "^\(tcpota device secret 'it'\\\\''s' --out FILE writes"
# the simulator takes the file: it fails on the unreachable server (1), not on the secret (2)
run 1 $T device --server 127.0.0.1:1 --flash devdir --id dev-7 --secret dev7.secret --max-attempts 1 --backoff-min-ms 1 --backoff-max-ms 1
n=$(nreq)
run 2 $T device secret dev-7 --out dev7.secret $API
has err.log "cannot create dev7.secret: File exists"
[ "$(nreq)" -eq "$n" ] || fail "a new secret was asked for although --out could not be created"
# --json would print the secret that --out keeps in its file: refused before
# a new secret is made.
run 2 $T device secret dev-7 --out dev7j.secret --json $API
has err.log "--json prints the secret itself and --out keeps it in FILE only; give one of them"
[ "$(nreq)" -eq "$n" ] && [ ! -e dev7j.secret ] || fail "--out with --json asked for a secret or made the file"
# An answer without a secret in hex (none, more than 256 digits, not hex)
# is not written as one: exit 1, and no --out file is left.
for sec in "" "$(printf 'a%.0s' {1..257})" "00zz"; do
  route POST /v1/devices/dev-5/secret 201 '{"id": "dev-5", "secret": "'"$sec"'"}'
  run 1 $T device secret dev-5 $API
  has err.log "^tcpota device: the server's answer holds no secret in hex$"
  [ ! -s out.log ] || fail "a secret line was printed for '$sec': $(cat out.log)"
  run 1 $T device secret dev-5 --out dev5.secret $API
  [ ! -e dev5.secret ] || fail "device secret --out left dev5.secret for the secret '$sec'"
done
ok "device secret prints the secret once as a secret file (or --out, mode 0600) that tcpota device --secret takes"
# Interrupted while the API has not answered: no empty --out left behind, so
# that running it again works (a secret file is never overwritten).
route POST /v1/devices/dev-8/secret 201 '{"id": "dev-8", "secret": "'$SECRET'"}' 5
rc=0; timeout --preserve-status -s INT 1 $T device secret dev-8 --out dev8.secret $API > out.log 2> err.log || rc=$?
[ $rc -eq 130 ] || fail "device secret interrupted exited $rc, not 130: $(cat err.log)"
[ ! -e dev8.secret ] || fail "an interrupted device secret left dev8.secret ($(stat -c %s dev8.secret) bytes)"
route POST /v1/devices/dev-8/secret 201 '{"id": "dev-8", "secret": "'$SECRET'"}'
run 0 $T device secret dev-8 --out dev8.secret $API
[ "$(cat dev8.secret)" = "tcpota-secret v1 $SECRET" ] || fail "--out after an interruption: $(cat dev8.secret)"
# A SIGINT the caller ignores (a background job, nohup) stays ignored.
route POST /v1/devices/dev-9/secret 201 '{"id": "dev-9", "secret": "'$SECRET'"}' 2
(trap '' INT; exec $T device secret dev-9 --out dev9.secret $API) > out.log 2> err.log &
pid=$!
sleep 1
kill -INT $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 0 ] || fail "device secret with SIGINT ignored exited $rc: $(cat err.log)"
[ "$(cat dev9.secret)" = "tcpota-secret v1 $SECRET" ] || fail "--out with SIGINT ignored: $(cat dev9.secret)"
ok "device secret --out interrupted by SIGINT: no file left; run again, it is written"

# --- the simulator keeps its own options and messages
run 2 $T device --frobnicate
has err.log "^tcpota device: unknown option '--frobnicate'$"
has err.log "try 'tcpota device --help'"
run 0 $T device --help
has out.log "usage: tcpota device --server HOST:PORT --flash DIR"
ok "tcpota device (the simulator) is unchanged"

# --- no server, a slow server, a server that is not the API
# A port held bound but not listening by a process of the test's own:
# connections to it are refused, and no other program can take it meanwhile.
coproc HOLD { python3 -c 'import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1], flush=True); sys.stdin.read()'; }
read -r port <&"${HOLD[0]}"
run 1 $T image list --api "http://127.0.0.1:$port"
has err.log "^tcpota image: cannot reach the API at http://127.0.0.1:$port \(connection refused\); is tcpota serve --data running, with --api\?$"
# A request with a body that never left (refused): not "closed the
# connection during a request ... whether it took effect is unknown".
head -c 5000 /dev/zero > refused.bin
run 1 $T image add refused.bin --version 1.0.0 --model m --api "http://127.0.0.1:$port"
has err.log "^tcpota image: cannot reach the API at http://127.0.0.1:$port \(connection refused\); is tcpota serve --data running, with --api\?$"
run 1 $T rollout create --image 1.0.0 --model m --api "http://127.0.0.1:$port"
has err.log "^tcpota rollout: cannot reach the API at http://127.0.0.1:$port \(connection refused\)"
kill "$HOLD_PID"; wait "$HOLD_PID" 2> /dev/null || true
# A host name that does not resolve is said at once, and a change is not
# "may have been made" (a trial: --timeout's wait, then "is the server
# busy?"). A .invalid name never resolves (RFC 6761).
run 1 $T rollout pause 1 --api nosuchhost.invalid:8071 --token-file tok --timeout 2
has err.log "^tcpota rollout: cannot reach the API at http://nosuchhost.invalid:8071 \(cannot resolve nosuchhost.invalid: [^)]*\); give --api with the server's address$"
grep -q 'may still have made the change' err.log && fail "an unresolvable host was said to maybe have made the change: $(cat err.log)"
# Nothing given: the default address, and how to give another.
if ! (exec 3<>/dev/tcp/127.0.0.1/8071) 2> /dev/null; then
  run 1 env -u TCPOTA_API $T image list --token-file tok
  has err.log "^tcpota image: cannot reach the API at http://127.0.0.1:8071 \(connection refused\); is tcpota serve --data running, with --api\? \(this is the default address: for a server whose --api is another, give --api http://HOST:PORT or set TCPOTA_API\)$"
fi
route GET /v1/rollouts 200 '{"rollouts": []}' 3
run 1 $T rollout list $API --timeout 1
has err.log "^tcpota rollout: no answer from the API at http://127.0.0.1:$(cat port) within 1 s; is the server busy\? \(--timeout SECONDS waits longer\)$"
# A change that timed out may have been made all the same: say how to check.
route POST /v1/rollouts/1/pause 200 '{}' 3
run 1 $T rollout pause 1 $API --timeout 1
has err.log "^tcpota rollout: no answer from the API at http://127.0.0.1:$(cat port) within 1 s; the server may still have made the change: check with tcpota rollout list before running the command again \(--timeout SECONDS waits longer for a busy server\)$"
route POST "/v1/images?version=3.0.0&model=esp32" 201 '{}' 3
run 1 $T image add raw.bin --version 3.0.0 --model esp32 $API --timeout 1
has err.log "within 1 s; the server may still have made the change: check with tcpota image list before"
# A secret that timed out: device show cannot tell a new one from the old
# (a trial), and nobody has the new one: say what to do instead.
route POST /v1/devices/d-7/secret 200 '{"id": "d-7", "secret": "00"}' 3
run 1 $T device secret d-7 $API --timeout 1
has err.log "^tcpota device: no answer from the API at http://127.0.0.1:$(cat port) within 1 s; if the server still makes the new secret, the device's old one stops working and the new one reaches nobody: once the server answers, run tcpota device secret d-7 again and give the device that one \(--timeout SECONDS waits longer for a busy server\)$"
# A reader that stops reading (| true) is no failure to say: the API
# commands ignore SIGPIPE, and a broken pipe read "cannot write" (a review).
route GET /v1/rollouts 200 "{\"rollouts\": [$(printf '{"id": %d, "state": "running"},' $(seq 1 400) | sed 's/,$//')]}"
$T rollout list $API --timeout 5 2> err.log | true
! grep -q 'cannot write' err.log || fail "rollout list | true: $(cat err.log)"
# --timeout is for the whole answer, not for each read: a byte every
# 0.25 s held the CLI for as long as the server went on.
route GET /v1/rollouts 200 '@trickle'
t0=$(date +%s%N)
run 1 $T rollout list $API --timeout 1
t1=$(( ($(date +%s%N) - t0) / 1000000 ))
has err.log "^tcpota rollout: no answer from the API at http://127.0.0.1:$(cat port) within 1 s"
[ "$t1" -lt 4000 ] || fail "a trickled answer held the CLI for $t1 ms with --timeout 1"
# A large answer that keeps coming is not cut by --timeout: a second more
# per 16 KiB that came (a page of 100,000 devices over a slow link).
route GET /v1/images 200 '@slowbig'
run 0 $T image list $API --timeout 1
# An answer larger than any of the API's is refused as it comes, not read
# until memory runs out (a trial: killed at 24 GB).
route GET /v1/images 200 '@huge'
run 1 $T image list $API
has err.log "^tcpota image: the API at http://127.0.0.1:$(cat port) sent an answer larger than any of tcpota serve's \(over 256 MiB, or headers over 64 KiB\); is it the --api address of tcpota serve\?$"
# not_object STATUS BODY SAID: image list given BODY exits 1 saying SAID.
not_object() {
  route GET /v1/images "$1" "$2"
  run 1 $T image list $API
  has err.log "answered $1 [A-Za-z ]* with a body that is not a JSON object \($3"
}
not_object 200 'not json' 'it says: not json\); is it the --api address'
# Text is shown as it came only when a terminal shows it so: markup and
# control bytes get the JSON error.
not_object 400 '<html>bad</html>' 'JSON error: '
not_object 400 "$(printf 'a\abell')" 'JSON error: '
not_object 200 '[1, 2]' 'another JSON value\)'
not_object 200 '{"images": [], "images": []}' 'JSON error: duplicate object key'
# Only a 2xx is a result: a 300 is another service's answer.
route GET /v1/images 300 '{"error": "multiple choices"}'
run 1 $T image list $API
has err.log "^tcpota image: multiple choices$"
# The server's text reaches a terminal: its control characters as '?'.
route GET /v1/images 409 '{"error": "bad\u001b[2Jthing", "field": "x\u0007y"}'
run 1 $T image list $API
has err.log "^tcpota image: bad\?\[2Jthing \(field: x\?y\)$"
# Another service's {} is not an empty rollout (before: 'rollout 0:', exit 0).
route GET /v1/rollouts/1 200 '{}'
run 1 $T rollout show 1 $API
has err.log "answered 200 with an empty JSON object, which tcpota serve never sends; is it the --api address of tcpota serve"
ok "connection refused, a timeout, a non-JSON answer and an empty object exit 1 with a clear message"

# tcpota summary: GET /v1/summary as tables; every section from the JSON,
# a rollout's wave 0 printed as wave 1 (as rollout show numbers them), the
# server's text cleaned, refusals without an id said so.
SUMMARY='{"now": 1796139325, "since": 1796135725,
 "states": [{"model": "esp32", "state": "updated", "count": 7}, {"model": "esp32", "state": "rolled-back", "count": 2}],
 "versions": [{"model": "esp32", "version": "2.0.0", "count": 7}, {"model": "esp32", "version": null, "count": 2}],
 "failures": [{"state": "rolled-back", "reason": "health\u001b[2J check", "count": 2}],
 "rollout_failures": [{"rollout": 4, "wave": 0, "state": "rolled-back", "reason": "health check failed", "count": 2}],
 "auth_refused": {"since": 1796131200, "total": 5, "counts": {"no-proof": 1, "wrong-secret": 3, "unknown-id": 0, "not-checked": 1},
   "devices": [{"id": "dev-7", "reason": "wrong-secret", "address": "10.0.0.9", "count": 3, "last": 1796139310}]}}'
route GET /v1/summary 200 "$(printf '%s' "$SUMMARY" | tr -d '\n')"
route GET /v1/rollouts 200 "$(tr -d '\n' <<'JSON'
{"rollouts": [
 {"id": 5, "state": "cancelled", "superseded": false, "version": "3.0.0", "model": "esp32", "group": "", "status": "cancelled: it offers nothing, for good", "totals": {"targeted": 1, "updated": 0, "failed": 0}},
 {"id": 4, "state": "halted", "superseded": false, "version": "2.0.0", "model": "esp32", "group": "canary", "status": "halted: 2 of 3 finished failed (67%, more than 20%)", "totals": {"targeted": 9, "updated": 1, "failed": 2}}]}
JSON
)"
: > requests.jsonl
run 0 $T summary $API
[ "$(req method) $(req path)" = "GET /v1/rollouts" ] || fail "summary's second request: $(req method) $(req path)"
has out.log '^ +4 +halted +2\.0\.0 +esp32 +canary +1 +2 +9$'
has out.log '^rollout 4: halted: 2 of 3 finished failed \(67%, more than 20%\)$'
! grep -q '^ *5 \|^rollout 5' out.log || fail "summary shows a cancelled rollout: $(cat out.log)"
first=$(head -1 requests.jsonl | python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["method"], r["path"])')
[ "$first" = "GET /v1/summary" ] || fail "summary's first request: $first"
has out.log '^esp32 +updated +7$'
has out.log '^esp32 +rolled-back +2$'
has out.log '^esp32 +2\.0\.0 +7$'
has out.log '^esp32 +- +2$'
has out.log '^rolled-back +health\?\[2J check +2$'
has out.log '^failures in the last hour \(each one: a device may count more than once\):$'
has out.log '^STATE +REASON +TIMES$'
has out.log '^ +4 +1 +rolled-back +health check failed +2$'
has out.log '^authentication refused by this server since 2026-12-01 13:20:00 UTC: 5 \(no-proof 1, wrong-secret 3, unknown-id 0, not-checked 1\)$'
has out.log '^dev-7 +wrong-secret +10\.0\.0\.9 +3 +2026-12-01 15:35:10$'
has out.log '^give a refused device its secret: tcpota device secret ID --out FILE'
: > requests.jsonl
run 0 $T summary $API --json
[ "$(wc -l < requests.jsonl)" = 1 ] || fail "summary --json made $(wc -l < requests.jsonl) requests"
has out.log '^\{"now": 1796139325, "since": 1796135725, +"states"'
route GET /v1/summary 200 '{"now": 1, "since": 1, "states": [], "versions": [], "failures": [], "rollout_failures": [], "auth_refused": {"since": 1, "total": 2, "counts": {"no-proof": 2, "wrong-secret": 0, "unknown-id": 0, "not-checked": 0}, "devices": []}}'
run 0 $T summary $API
has out.log '^no devices yet \(a device appears at its first check-in\)$'
has out.log '^no id to list: the devices refused have authenticated since, or gave no id \(legacy req0/req1 devices under --require-auth'
! grep -q 'tcpota device secret ID' out.log || fail "summary names device secrets for refusals without an id: $(cat out.log)"
run 2 $T summary extra $API
has err.log "^tcpota summary: unexpected argument 'extra'"
ok "tcpota summary prints every section of GET /v1/summary, cleaned, and refuses arguments"

kill -TERM "$MOCK_PID" 2>/dev/null || true
wait "$MOCK_PID" 2>/dev/null || true
