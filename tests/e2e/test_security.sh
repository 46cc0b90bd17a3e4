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
cp img tampered; flip_byte tampered 1000
cmp -s img tampered && fail "could not tamper with the image"
cp img.manifest tampered.manifest
rc=0; timeout 20 $T serve --listen 127.0.0.1:0 --version 2.0.0 tampered 2> bad-serve.log || rc=$?
# The server checks the bytes it reads to serve (once: no second read that
# could differ); an unusable input file exits 2.
[ $rc -eq 2 ] && grep -qE "not starting: tampered has SHA-256 [0-9a-f]{64}, not the one its manifest tampered.manifest gives \(another image's manifest, or this image altered after signing\?\); give the image's own manifest, or sign it again \(tcpota sign\)$" bad-serve.log ||
  fail "server started on a tampered image (exit $rc): $(cat bad-serve.log)"
rc=0; $T verify --pubkey other.pub img 2> v2.log || rc=$?
[ $rc -eq 1 ] && grep -q 'not a trusted key' v2.log || fail "verify accepted the wrong key"
# Several keys, as serve's --pubkey and device's --trust take them (a key
# rotation): the one that signed is among them.
$T verify --pubkey other.pub --pubkey k.pub img 2> v4.log && grep -q "signed by key .* (trusted)" v4.log ||
  fail "verify with the signer's key second: $(cat v4.log)"
# The same size, one byte other: verify's own promise (only a size
# mismatch was tested).
rc=0; $T verify --pubkey k.pub --manifest tampered.manifest tampered 2> v3.log || rc=$?
[ $rc -eq 1 ] && grep -qE "image SHA-256 [0-9a-f]{64} differs from the manifest's \(image altered\)" v3.log ||
  fail "verify of an image altered in place: exit $rc: $(cat v3.log)"
ok "serve and verify refuse a tampered image / wrong key"

# An unsigned start skips who signed the manifest, not what it describes:
# its version would be offered for other bytes. (A device's own check of
# such bytes is test_rogue.sh (a): this server no longer sends them.)
rc=0; timeout 10 $T serve --listen 127.0.0.1:0 --no-require-signed tampered 2> nosig-serve.log || rc=$?
[ $rc -eq 2 ] && grep -qE "not starting: tampered has SHA-256 [0-9a-f]{64}, not the one its manifest tampered.manifest gives \(another image's manifest, or this image altered after signing\?\); give the image's own manifest, or sign it again \(tcpota sign\), or remove the manifest to serve the image unsigned$" nosig-serve.log ||
  fail "--no-require-signed started on a manifest of other bytes (exit $rc): $(cat nosig-serve.log)"
# A manifest whose signature does not verify (its version byte changed),
# served unsigned on purpose: it starts, but says what devices will do.
cp img forged && cp img.manifest forged.manifest
python3 - forged.manifest <<'PY' || fail "no 2.0.0 in the manifest to forge"
import sys
b = open(sys.argv[1], "rb").read()
assert b.count(b"2.0.0") == 1
open(sys.argv[1], "wb").write(b.replace(b"2.0.0", b"9.0.0"))
PY
start_server forged 9.0.0 --no-require-signed
grep -q "warning: the manifest forged.manifest's signature does not verify (altered or forged), served anyway (--no-require-signed): devices that trust keys decline it, the others install it as version 9.0.0; sign forged again" server.log ||
  fail "a forged manifest served with --no-require-signed was not warned about: $(cat server.log)"
stop_server
start_server img 2.0.0 --no-require-signed
! grep -q "does not verify" server.log || fail "a good manifest was said not to verify: $(cat server.log)"
stop_server
cp img nosig.img
rc=0; timeout 10 $T serve --listen 127.0.0.1:0 --pubkey k.pub nosig.img 2> nomanifest.log || rc=$?
[ $rc -eq 2 ] && grep -q -- '--pubkey needs a signed image' nomanifest.log ||
  fail "--pubkey with an image without a manifest: exit $rc, not 2: $(cat nomanifest.log)"
# A FILE.manifest that is no manifest at all is said to be one thing only
# (before: "not a manifest", then "describes other bytes", which it does not).
cp img junk && head -c 183 /dev/urandom > junk.manifest
rc=0; timeout 10 $T serve --listen 127.0.0.1:0 --version 2.0.0 --no-require-signed junk 2> junk-serve.log || rc=$?
[ $rc -eq 2 ] && [ "$(cat junk-serve.log)" = "tcpota serve: the manifest junk.manifest is not a tcpota manifest, or is damaged; sign junk again (tcpota sign), or remove junk.manifest to serve it unsigned; not starting" ] ||
  fail "--no-require-signed with a junk manifest (exit $rc): $(cat junk-serve.log)"
# Signed (the default with FILE.manifest): the same file is said to be no
# manifest (before: "does not verify", exit 1), and not to be removed.
rc=0; timeout 10 $T serve --listen 127.0.0.1:0 junk 2> junk-signed.log || rc=$?
[ $rc -eq 2 ] && [ "$(cat junk-signed.log)" = "tcpota serve: the manifest junk.manifest is not a tcpota manifest, or is damaged; sign junk again (tcpota sign); not starting" ] ||
  fail "a junk manifest, signed mode (exit $rc): $(cat junk-signed.log)"
rc=0; timeout 10 $T serve --listen 127.0.0.1:0 --pubkey other.pub --no-require-signed img 2> pk-serve.log || rc=$?
[ $rc -eq 2 ] && grep -q -- '--pubkey requires a signature and --no-require-signed skips it' pk-serve.log ||
  fail "--pubkey with --no-require-signed was not refused (exit $rc): $(cat pk-serve.log)"
# The same rule on SIGHUP: a manifest of another image is not taken.
cp img unsig; cp img.manifest unsig.manifest
start_server unsig 2.0.0 --no-require-signed
make_image other9 "$(stat -c %s img)" # its size: the SHA-256 tells them apart
$T sign --key k.key --version 2.0.0 --model esp32 --out unsig.manifest other9 2>/dev/null # only the bytes differ
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reload failed .*still serving image 2.0.0' 5
grep -qE "SIGHUP: unsig has SHA-256 [0-9a-f]{64}, not the one its manifest unsig.manifest gives \(another image's manifest, or this image altered after signing\?\); give the image's own manifest, or sign it again \(tcpota sign\), or remove the manifest to serve the image unsigned$" server.log ||
  fail "SIGHUP did not say the manifest describes other bytes: $(cat server.log)"
# A FIFO where the image was: said as one (before: "not a regular file"
# alone, where a directory was named).
mv unsig unsig.kept && mkfifo unsig
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: image unsig is not a regular file \(it is a FIFO\)$' 5
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "--no-require-signed refuses a manifest of other bytes (start and SIGHUP), and --pubkey with it; a FIFO image on SIGHUP"

# 2. The device refuses each bad offer before writing a byte.
# A byte of the signature (the manifest's last 64): the manifest still
# describes img, so the unsigned server serves it and the device refuses.
cp img.manifest bad.manifest; flip_byte bad.manifest $(( $(stat -c %s bad.manifest) - 10 ))
cmp -s img.manifest bad.manifest && fail "could not tamper with the manifest"
# verify and a server that requires signatures refuse it themselves.
rc=0; $T verify --pubkey k.pub --manifest bad.manifest img 2> bad-verify.log || rc=$?
[ $rc -eq 1 ] && grep -q 'manifest signature does not verify (manifest altered or forged)' bad-verify.log ||
  fail "verify accepted an altered signature (exit $rc): $(cat bad-verify.log)"
rc=0; timeout 20 $T serve --listen 127.0.0.1:0 --pubkey k.pub --manifest bad.manifest img 2> bad-sig-serve.log || rc=$?
[ $rc -eq 2 ] && grep -q 'manifest signature does not verify' bad-sig-serve.log &&
  grep -q 'the manifest bad.manifest does not verify; not starting' bad-sig-serve.log ||
  fail "serve started on an altered signature (exit $rc): $(cat bad-sig-serve.log)"
refused tampered-manifest "signature does not verify" img 2.0.0 --manifest bad.manifest --no-require-signed
$T sign --key other.key --version 2.0.0 --model esp32 --out other.manifest img 2>/dev/null
refused wrong-key "signed by an untrusted key" img 2.0.0 --manifest other.manifest
$T sign --key k.key --version 2.0.0 --model esp32s3 --out s3.manifest img 2>/dev/null
# Another model's image: the server does not even offer it (its own check
# is unit-tested in test_manifest.c).
start_server img 2.0.0 --manifest s3.manifest
rc=0
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash wrong-model --id wrong-model \
  --factory-version 1.0.0 --trust k.pub --max-attempts 1 2> wrong-model.log || rc=$?
# Not an error of the connection, but not up to date either: NO_UPDATE says
# why, and the device exits 1 with it.
[ $rc -eq 1 ] || fail "wrong-model: the device exited $rc, expected 1: $(cat wrong-model.log)"
grep -q "not updated, running 1.0.0: the server's image is for another hardware model than this device's esp32 (--model)" wrong-model.log ||
  fail "wrong-model: the device did not say why: $(cat wrong-model.log)"
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
# device status names the device and the keys it keeps, by key id as
# keygen names them, in the order given.
kid() { sed -n "s/.*wrote $1.key .*key id \([0-9a-f]*\)$/\1/p" keygen.log; }
keys_of() { "$T" device status --flash "$1" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["device"], d["model"], *d["trusted_keys"])'; }
[ "$(keys_of good)" = "good esp32 $(kid other) $(kid k)" ] || fail "device status of good: $("$T" device status --flash good)"
make_image img3 150000
$T sign --key k.key --version 3.0.0 --model esp32 --security-counter 4 img3 2>/dev/null
start_server img3 3.0.0
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --id good --trust k.pub \
  --max-attempts 1 2> down.log || rc=$?
[ $rc -eq 1 ] && grep -q "security counter lower" down.log || fail "downgrade by counter was not refused"
# Told what brings an update (the image is what to change), not to set the
# device right.
grep -q "an image signed with a security counter at least this device's is a new offer, which it makes" down.log &&
  ! grep -q "once the device is set right" down.log || fail "the counter downgrade's hint: $(cat down.log)"
check_device good img
[ "$(keys_of good)" = "good esp32 $(kid k)" ] || fail "device status after --trust k.pub: $("$T" device status --flash good)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "signed update with a rotated key list; counter downgrade refused, image kept"

# The device keeps its keys, as an ESP32's firmware does: a run that leaves
# --trust out still refuses an unsigned image (it took one, silently); the
# last --trust list replaced the first ("other" is no longer trusted);
# --no-trust drops them, saying so, and then an unsigned image is taken.
grep -q "good keeps the --trust keys: later runs without --trust use them (--no-trust drops them)" good.log ||
  fail "the first --trust run did not say the keys are kept: $(cat good.log)"
grep -q "the --trust keys replace the keys good kept: later runs trust these" down.log ||
  fail "no note that the --trust keys replaced the kept ones: $(cat down.log)"
make_image img4 120000
start_server img4 4.0.0
# Under --quiet (errors, warnings, the outcome, the stats) the keys are kept
# without a word (a new user's trial had the line).
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash quietdev --id quietdev --trust k.pub --quiet \
  --max-attempts 1 2> quiet.log || true
[ "$(keys_of quietdev)" = "quietdev esp32 $(kid k)" ] || fail "--quiet --trust kept no key: $(cat quiet.log)"
! grep -q "keeps the --trust keys" quiet.log || fail "--quiet said the keys are kept: $(cat quiet.log)"
$T keygen --device-secret --out quiet.secret 2>/dev/null
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash quietsec --id quietsec --secret quiet.secret --quiet \
  --max-attempts 1 2> quietsec.log || true
"$T" device status --flash quietsec | grep -q '"secret":true}' || fail "--quiet --secret kept no secret: $(cat quietsec.log)"
! grep -q "keeps the --secret" quietsec.log || fail "--quiet said the secret is kept: $(cat quietsec.log)"
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --max-attempts 1 2> kept.log || rc=$?
[ $rc -eq 1 ] && grep -q "declined the server's offer: image is not signed" kept.log ||
  fail "a run without --trust took an unsigned image on a device that trusts keys: $(cat kept.log)"
check_device good img
# A trust record that is no list of keys (another format, a damaged
# write): the run stops rather than trust no key, and status shows null.
nvs_edit good "host.trust=$(printf '%062d' 0)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server img4 4.0.0 # unsigned, and not yet declined by good
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --max-attempts 1 2> badtrust.log || rc=$?
[ $rc -eq 1 ] && grep -q "good/nvs.bin holds a record of trusted keys that is not a list of keys; give the keys again with --trust, or drop them with --no-trust" badtrust.log ||
  fail "a run on a trust record that is no list of keys: exit $rc: $(cat badtrust.log)"
check_device good img
s=$("$T" device status --flash good 2> badstatus.log) || fail "device status on a bad trust record failed"
[[ $s == *'"trusted_keys":null,'* ]] && grep -q "holds a record of trusted keys that is not a list of keys" badstatus.log ||
  fail "device status on a bad trust record: $s $(cat badstatus.log)"
# A model record longer than a model can be: null, said (not as "none").
nvs_edit good "host.model=$(printf '61%.0s' {1..40})"
s=$("$T" device status --flash good 2> longmodel.log) || fail "device status on a long model record failed"
[[ $s == *'"model":null,'* ]] && grep -q "good/nvs.bin holds a model longer than a model can be (model: null)" longmodel.log ||
  fail "device status on a long model record: $s $(cat longmodel.log)"
nvs_edit good "host.model=6573703332" # esp32 again
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server img4 4.0.0 # one that forgot the decline above
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --no-trust --trust k.pub 2> both.log || rc=$?
[ $rc -eq 2 ] && grep -q -- "--no-trust and --trust do not go together" both.log || fail "--no-trust with --trust: $(cat both.log)"
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash good --no-trust 2> notrust.log ||
  fail "--no-trust did not take the unsigned image: $(cat notrust.log; cat server.log)"
grep -q "forgot the trusted keys good kept (--no-trust): unsigned images are accepted" notrust.log ||
  fail "--no-trust said nothing: $(cat notrust.log)"
check_device good img4
[ "$(keys_of good)" = "good esp32" ] || fail "device status after --no-trust: $("$T" device status --flash good)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "a device keeps its trusted keys across runs; --trust replaces them, --no-trust drops them"

# 4. Legacy devices get a signed image only with --allow-legacy.
start_server img 2.0.0
rc=0; "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy.bin --timeout 5 > legacy.log 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got a signed image without --allow-legacy"
grep -q 'legacy (req0/req1) device refused' server.log || fail "legacy refusal not logged"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_server img 2.0.0 --allow-legacy
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy.bin > legacy.log 2>&1 || fail "--allow-legacy did not serve"
cmp legacy.bin img || fail "legacy bytes differ"
! grep -q "allow-legacy changes nothing" server.log || fail "--allow-legacy with a signed image was called useless"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
# With an unsigned image it changes nothing, and the start says so.
cp img unsigned.img
start_server unsigned.img 2.0.0 --allow-legacy
grep -q "warning: --allow-legacy changes nothing while unsigned.img is unsigned" server.log ||
  fail "--allow-legacy with an unsigned image was not warned about: $(cat server.log)"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
ok "legacy devices refused a signed image unless --allow-legacy; with an unsigned one it is warned of"

# 5. Device authentication: right secret, wrong secret, unknown, replay.
$T keygen --device-secret --out dev.secret 2>/dev/null
$T keygen --device-secret --out wrong.secret 2>/dev/null
sec() { cut -d' ' -f3 "$1"; }
{ echo "auth-dev $(sec dev.secret)"; echo "probe $(sec dev.secret)"; echo "probe2 $(sec dev.secret)"
  echo "nat-bad $(sec dev.secret)"
  echo "nat-good $(sec dev.secret)"; } > secrets
chmod 600 secrets
start_server img 2.0.0 --require-auth --auth-file secrets
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --id auth-dev --secret dev.secret \
  --trust k.pub 2> authed.log || fail "authenticated device failed"
check_device authed img
# DIR keeps the secret, as an ESP32 keeps it in NVS: a later run without
# --secret answers with it (a new user's trial was refused there); nvs.bin
# is then private; --no-secret drops it, and the server refuses the device.
[ "$(stat -c %a authed/nvs.bin)" = 600 ] || fail "authed/nvs.bin keeps the secret with mode $(stat -c %a authed/nvs.bin)"
grep -q "device auth-dev: authed keeps the --secret (in nvs.bin, mode 600): later runs without --secret use it (--no-secret drops it)" authed.log ||
  fail "the first --secret run did not say DIR keeps it: $(cat authed.log)"
"$T" device status --flash authed | grep -q '"secret":true}' || fail "device status: no kept secret: $("$T" device status --flash authed)"
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --max-attempts 1 2> authed2.log ||
  fail "authed without --secret (DIR's) was refused: $(cat authed2.log)"
grep -q 'up to date, running 2.0.0' authed2.log || fail "authed without --secret: $(cat authed2.log)"
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --no-secret --max-attempts 1 2> authed3.log || rc=$?
[ $rc -eq 1 ] && grep -q "forgot the secret authed kept (--no-secret)" authed3.log ||
  fail "--no-secret: exit $rc: $(cat authed3.log)"
"$T" device status --flash authed | grep -q '"secret":false}' || fail "device status after --no-secret: $("$T" device status --flash authed)"
# Gone from both of NVS's sectors, not only from the table in use (a
# review found it in the sector written before).
python3 -c 'import sys; sys.exit(bytes.fromhex(sys.argv[1]) in open(sys.argv[2], "rb").read())' \
  "$(sec dev.secret)" authed/nvs.bin || fail "--no-secret left the secret's bytes in authed/nvs.bin"
# A kept record too short to be a secret is refused, saying what to do.
nvs_edit authed host.secret=00112233
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --max-attempts 1 2> authed5.log || rc=$?
[ $rc -eq 1 ] && grep -q "authed/nvs.bin holds a device secret record that is not one (its length); give it again with --secret, or drop it with --no-secret" authed5.log ||
  fail "a kept secret of 4 bytes: exit $rc: $(cat authed5.log)"
s=$("$T" device status --flash authed 2> authed5s.log) || fail "device status on a bad secret record failed"
[[ $s == *'"secret":null}' ]] && grep -q "authed/nvs.bin holds a device secret record that is not one (its length) (secret: null)" authed5s.log ||
  fail "device status on a bad secret record: $s $(cat authed5s.log)"
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --secret dev.secret --max-attempts 1 2> authed6.log ||
  fail "--secret over a bad kept record: $(cat authed6.log)"
grep -q "the --secret replaces the secret authed kept: later runs answer with this one" authed6.log ||
  fail "--secret over a bad kept record said nothing: $(cat authed6.log)"
python3 -c 'import sys; sys.exit(bytes.fromhex("00112233") in open(sys.argv[1], "rb").read())' authed/nvs.bin ||
  fail "the replaced record's bytes stayed in authed/nvs.bin"
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash authed --no-secret --secret dev.secret 2> authed4.log || rc=$?
[ $rc -eq 2 ] && grep -q -- "--no-secret and --secret do not go together" authed4.log || fail "--no-secret with --secret: exit $rc: $(cat authed4.log)"
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash nosecret --id auth-dev --max-attempts 1 \
  2> nosecret.log || rc=$?
[ $rc -eq 1 ] || fail "a device without a secret was served"
P=$(dirname "$LEGACY")/tcpota-auth-probe
probe() { "$P" --server "127.0.0.1:$SERVER_PORT" "$@" 2> probe.log; }
[ "$(probe --id probe --secret dev.secret --from 127.0.0.11)" = offer ] ||
  fail "the probe with the right secret was refused"
[ "$(probe --id probe --secret dev.secret --replay --from 127.0.0.12 | tail -1)" = "error 13" ] ||
  fail "a replayed challenge response was accepted"
# And a real device with a wrong secret says so and stops at once: the
# same secret would only be refused again.
rc=0; t0=$(date +%s)
timeout 30 "$T" device --server "127.0.0.1:$SERVER_PORT" --flash wrongdev --id nat-bad \
  --secret wrong.secret 2> wrongdev.log || rc=$?
[ $rc -eq 1 ] || fail "a device with a wrong secret exited $rc, expected 1"
grep -q 'authentication refused: check the device secret' wrongdev.log ||
  fail "the device did not say to check its secret: $(tail -3 wrongdev.log)"
[ $(( $(date +%s) - t0 )) -le 5 ] || fail "the device with a wrong secret took more than 5 s to stop"
[ "$(probe --id stranger --secret dev.secret --from 127.0.0.14)" = "error 13" ] ||
  fail "an unknown device was accepted"
[ "$(probe --id probe2 --secret wrong.secret --from 127.0.0.13)" = "error 13" ] ||
  fail "a wrong secret was accepted"
# The device is told at once what is wrong, not left to time out.
grep -q 'server says: authentication refused: check the device secret' probe.log ||
  fail "a wrong secret was not told to check the device secret: $(cat probe.log)"
# Backoff per device id, judged at AUTH: right after its failure, the id
# waits even from another address with the right secret; then it is served.
# (At once after probe2's failure: its first wait is 1 s, which a device
# run under ASan on a loaded machine could outlast.)
# The wait is BUSY, not DENIED: the answer was not checked, and a device
# with the right secret tries again after it instead of giving up.
[ "$(probe --id probe2 --secret dev.secret --from 127.0.0.15)" = "error 16" ] ||
  fail "a device id that just failed was not slowed down (with BUSY)"
grep -q 'retry after [12] s' probe.log || fail "no retry time told to the device: $(cat probe.log)"
sleep 2.1
[ "$(probe --id probe2 --secret dev.secret --from 127.0.0.13)" = offer ] ||
  fail "the device was not served after its wait (or its address stayed locked out)"
# Behind one NAT address: a misconfigured device fails, a good one is served at once.
[ "$(probe --id nat-bad --secret wrong.secret --from 127.0.0.20)" = "error 13" ] ||
  fail "NAT: a wrong secret was accepted"
[ "$(probe --id nat-good --secret dev.secret --from 127.0.0.20)" = offer ] ||
  fail "NAT: one device's wrong secret locked out a good device at the same address"
# SIGHUP re-reads the secrets: a device added to the file is served, and
# the backoff of a device in both files survives the reload.
[ "$(probe --id nat-bad --secret wrong.secret --from 127.0.0.21)" = "error 16" ] ||
  fail "a device id that just failed was checked again at once"
$T keygen --device-secret --out new.secret 2>/dev/null
echo "newcomer $(sec new.secret)" >> secrets
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: .*, 6 device secrets' 5
[ "$(probe --id newcomer --secret new.secret --from 127.0.0.22)" = offer ] ||
  fail "a device added to the secrets file was not served after SIGHUP"
[ "$(probe --id nat-bad --secret dev.secret --from 127.0.0.22)" = "error 16" ] ||
  fail "SIGHUP wiped the backoff of a device that had just failed"
grep -q 'authentication failed: wrong answer' server.log || fail "failed authentication not logged"
grep -q 'authentication failed: unknown device' server.log || fail "unknown device not logged"
# An unknown id has no record of its own: the failures counted are its
# address's, and said so (before: "for this device id", counting others').
# The first failure sets no backoff yet: "at once", not "in 0 s" (a trial).
grep -qE 'authentication failed: unknown device .*\(1 failure from this address; the next AUTH from this address is checked at once\)' server.log &&
  ! grep -q 'is checked in 0 s' server.log ||
  fail "a first failure's next AUTH: $(grep 'authentication failed' server.log | head -2)"
grep -qE 'authentication failed: unknown device .*\([0-9]+ failures? from this address; the next AUTH from this address is checked (in [1-9][0-9]* s|at once)\)' server.log ||
  fail "an unknown id's failures not said to be its address's: $(grep 'unknown device' server.log | head -2)"
grep -qE 'authentication failed: wrong answer .*\([0-9]+ failures? for this device id; the next AUTH for this device id' server.log ||
  fail "a wrong answer's failures not said to be its id's: $(grep 'wrong answer' server.log | head -2)"
# An AUTH held back by the backoff was not judged: the log says so, and until
# when (before: "authentication failed", as if the secret were wrong).
grep -qE 'authentication not checked: this device id failed recently \([0-9]+ failures?; backoff until [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z: the next AUTH for this device id is checked in [0-9]+ s\)' server.log ||
  fail "backoff not logged as not checked: $(grep 'failed recently' server.log | head -2)"
! grep -q 'authentication failed: this device id failed recently' server.log ||
  fail "an AUTH held back by the backoff was logged as failed"
# Every secret revoked on SIGHUP (an empty file): taken, said, and the
# device refused from then on (before: "has no secrets", the old ones kept,
# so the last device could be revoked only by stopping the server).
cp secrets secrets.kept
: > secrets
kill -HUP "$SERVER_PID"
wait_line server.log 'SIGHUP: reloaded: .*, 0 device secrets' 5
grep -q "warning: --auth-file secrets has no secrets now: every device's secret is revoked" server.log ||
  fail "the revocation of every secret was not said: $(tail -5 server.log)"
[ "$(probe --id newcomer --secret new.secret --from 127.0.0.23)" = "error 13" ] ||
  fail "a device whose secret was revoked (an empty file) was served"
cp secrets.kept secrets
stop_server
ok "authentication: right secret served, DIR keeps it (--no-secret drops it); no secret, wrong secret, unknown device, replay refused; backoff per id, not per NAT address; every secret revoked on SIGHUP"

# A device that holds a secret, on a server that holds none for its id: it
# is served (no --require-auth), and used to learn nothing of it. It warns
# once per run (an update and the check after its reboot are two decisions
# without a challenge), --quiet or not, saying what to give the server; a
# device whose id has a secret there is challenged and does not warn.
start_server img 2.0.0 --auth-file secrets
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash unasked --id unasked-dev --secret dev.secret \
  --trust k.pub --quiet 2> unasked.log || fail "a device with a secret the server lacks: $(cat unasked.log)"
check_device unasked img
n=$(grep -c 'warning: the server did not ask this device to authenticate: it holds no secret for id unasked-dev, so this device.s --secret was not checked' unasked.log || true)
[ "$n" = 1 ] || fail "the unchallenged device warned $n times: $(cat unasked.log)"
grep -q 'a line "unasked-dev <hex>" in its --auth-file .*tcpota device secret unasked-dev --out FILE' unasked.log ||
  fail "the warning does not say what to give the server: $(grep warning unasked.log)"
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash asked --id auth-dev --secret dev.secret \
  --trust k.pub 2> asked.log || fail "auth-dev on a server without --require-auth: $(cat asked.log)"
! grep -q 'did not ask this device' asked.log || fail "a challenged device warned: $(cat asked.log)"
# An id with a space: an --auth-file line cannot hold it (the server refuses
# "a b <hex>"), so the warning does not suggest one.
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash spaced --id "unasked dev" --secret dev.secret \
  --trust k.pub --quiet 2> spaced.log || fail "a device whose id has a space: $(cat spaced.log)"
grep -q "image mode's --auth-file cannot hold an id with spaces (give the device one without); in fleet mode tcpota device secret 'unasked dev' --out FILE" spaced.log ||
  fail "the warning for an id with a space: $(grep warning spaced.log)"
! grep -q 'a line "unasked dev <hex>"' spaced.log || fail "the warning suggests an --auth-file line the server refuses"
stop_server
ok "a device with a secret its server does not hold is served, and warns once that it was not asked to authenticate"

# Legacy (req0/req1) devices cannot authenticate: under --require-auth they
# get nothing, unless the operator names the risk.
cp img plain.img
start_server plain.img 2.0.0 --require-auth --auth-file secrets
rc=0; "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy-auth.bin --timeout 5 > legacy.log 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a legacy device got the image from a server with --require-auth"
grep -q 'legacy (req0/req1) device refused: --require-auth .*--allow-unauthenticated-legacy .*anyone who can connect gets the image' server.log ||
  fail "legacy refusal under --require-auth does not name the flag and its risk"
stop_server
start_server img 2.0.0 --require-auth --auth-file secrets --allow-legacy
rc=0; "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out legacy-auth.bin --timeout 5 > legacy.log 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--allow-legacy alone served a legacy device under --require-auth"
stop_server
# A legacy device let in is no longer counted as waiting to authenticate
# (it never will): downloading (2 s, pausing 5 ms after each package), it
# leaves the one slot of --max-unauth-per-addr 1 to a device that does.
start_server plain.img 2.0.0 --require-auth --auth-file secrets --allow-unauthenticated-legacy \
  --max-unauth-per-addr 1
"$LEGACY" --server "127.0.0.1:$SERVER_PORT" --stop-and-wait-ms 5 --out legacy-auth.bin > legacy.log 2>&1 &
leg=$!
wait_line server.log 'legacy \(req0/req1\) device connected'
[ "$(probe --id auth-dev --secret dev.secret --from 127.0.0.1)" = offer ] ||
  fail "a legacy device let in under --require-auth kept its address's slot for unauthenticated connections"
wait "$leg" || fail "--allow-unauthenticated-legacy did not serve"
cmp legacy-auth.bin plain.img || fail "legacy bytes differ"
stop_server
! grep -q 'they cannot check a signature' server.log || fail "an unsigned image: warned that legacy devices are refused"
# A signed image: they would be refused all the same, which the start says.
start_server img 2.0.0 --require-auth --auth-file secrets --allow-unauthenticated-legacy
grep -q "warning: --allow-unauthenticated-legacy lets req0/req1 devices in, but img is signed and they cannot check a signature: they are refused all the same; add --allow-legacy to serve them the signed image" server.log ||
  fail "no word at start that legacy devices are refused (signed image): $(head -5 server.log)"
stop_server
start_server img 2.0.0 --require-auth --auth-file secrets --allow-unauthenticated-legacy --allow-legacy
! grep -q 'they cannot check a signature' server.log || fail "warned with --allow-legacy given"
stop_server
ok "legacy devices refused under --require-auth unless --allow-unauthenticated-legacy, then not counted as unauthenticated; a signed image's refusal said at start"

# A peer that never answers the CHALLENGE cannot keep its slot with PINGs.
start_server img 2.0.0 --require-auth --auth-file secrets --idle-timeout 2
out=$($P --server "127.0.0.1:$SERVER_PORT" --id probe --stall 8 --from 127.0.0.15)
case "$out" in "closed after "[1-5]" s") ;; *) fail "unanswered challenge kept open: $out" ;; esac
stop_server
ok "an unanswered challenge is closed after the idle timeout ($out)"

# --max-unauth-per-addr counts only the connections of an address still
# unauthenticated: one is uncounted once it authenticates (and only once),
# or once it closes without having authenticated. Otherwise an address
# (a NAT of good devices) would be locked out after its first few
# connections, or hold more unauthenticated ones than the limit.
start_server img 2.0.0 --require-auth --auth-file secrets --max-unauth-per-addr 2
A=127.0.0.1
for i in 1 2 3; do
  [ "$(probe --id auth-dev --secret dev.secret --from $A)" = offer ] ||
    fail "authenticated connection $i of one address refused: still counted after authenticating"
done
for i in 1 2 3; do
  r=$(probe --id stranger --secret dev.secret --from $A)
  [ "$r" = "error 13" ] || fail "connection $i of an unknown id: '$r', expected error 13 (refused at AUTH, not at accept)"
done
[ "$(probe --id auth-dev --secret dev.secret --from $A)" = offer ] ||
  fail "connections closed before they authenticated still count against their address"
# logged N REGEX: waits until N lines of the server's log match REGEX.
logged() {
  local i
  for ((i = 0; i < 200; i++)); do [ "$(grep -c "$2" server.log)" -ge "$1" ] && return 0; sleep 0.05; done
  fail "fewer than $1 lines '$2' in the server log"
}
# A device authenticated and downloading (4 s through a proxy at 50 kB/s,
# which connects from $A too) holds no slot; two unauthenticated ones fill
# the limit, however many authenticated ones came and went between them.
start_proxy slow "$SERVER_PORT" --rate 50000
n=$(grep -c 'authenticated: offer' server.log || true)
"$T" device --server "127.0.0.1:$PROXY_PORT" --flash unauthcap --id auth-dev --secret dev.secret \
  --trust k.pub --max-attempts 1 2> unauthcap.log &
dev=$!
logged $((n + 1)) 'authenticated: offer'
n=$(grep -c 'challenge sent' server.log || true)
"$P" --server "127.0.0.1:$SERVER_PORT" --id auth-dev --stall 2 --from $A > stall1.out 2>/dev/null &
s1=$!
logged $((n + 1)) 'challenge sent'
[ "$(probe --id auth-dev --secret dev.secret --from $A)" = offer ] ||
  fail "one unauthenticated connection (of 2 allowed) beside an authenticated device refused the next"
"$P" --server "127.0.0.1:$SERVER_PORT" --id auth-dev --stall 2 --from $A > stall2.out 2>/dev/null &
s2=$!
logged $((n + 3)) 'challenge sent'
[ "$(probe --id auth-dev --secret dev.secret --from $A)" = no-challenge ] ||
  fail "a third unauthenticated connection of one address was taken with --max-unauth-per-addr 2"
grep -q "refused: $A already holds 2 connections that have not authenticated" server.log ||
  fail "the refusal over --max-unauth-per-addr was not logged"
# The two give up after 2 s, before the device's check-in that reports
# its new image (which needs a slot).
wait "$s1" "$s2"
wait "$dev" || fail "the authenticated device beside the capped address failed: $(tail -2 unauthcap.log)"
check_device unauthcap img
kill "$PROXY_PID"
stop_server
ok "--max-unauth-per-addr counts only connections not authenticated yet, each once"

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
q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in srv.csr -out future.pem -startdate 20990101000000Z -enddate 20990102000000Z
tls_try() { # NAME CERT CA [DEVICE-ARGS]: a device against a TLS server with CERT, trusting CA
  local name=$1 cert=$2 ca=$3 rc=0; shift 3
  start_server img 2.0.0 --tls-cert "$cert" --tls-key srv.key
  "$T" device --server "127.0.0.1:$SERVER_PORT" --flash "$name" --id "$name" --factory-version 1.0.0 \
    --ca "$ca" --trust k.pub --max-attempts "${ATTEMPTS:-1}" "$@" 2> "$name.log" || rc=$?
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  return $rc
}
tls_try tls-ok srv.pem ca.pem || fail "TLS update failed"
check_device tls-ok img
grep -q 'TLS, certificate verified' tls-ok.log || fail "no TLS in the device log"
! grep -q "is a CA's" server.log || fail "a server's certificate was warned of as a CA's: $(cat server.log)"
# A server certificate that is a CA's (openssl req -x509 -CA without
# CA:FALSE, the README's recipe until a trial showed it): its key could
# issue certificates for any name that the devices would accept. It still
# serves, with a warning; the README's recipe now makes a server's.
q openssl req -x509 -key srv.key -out caflag.pem -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -CA ca.pem -CAkey ca.key
tls_try tls-caflag caflag.pem ca.pem || fail "TLS with a CA-flagged certificate failed"
grep -q "warning: the TLS certificate caflag.pem is a CA's (basicConstraints CA:TRUE): whoever holds its key can issue certificates that every device trusting its issuer accepts, for any server name" server.log ||
  fail "no warning of a server certificate that is a CA's: $(cat server.log)"
q openssl req -x509 -key srv.key -out readme.pem -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext basicConstraints=critical,CA:FALSE \
  -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth -CA ca.pem -CAkey ca.key
tls_try tls-readme readme.pem ca.pem || fail "TLS with the README's certificate failed: $(cat tls-readme.log)"
! grep -q "is a CA's" server.log || fail "the README's certificate was warned of as a CA's"
# A self-signed one (plain openssl req -x509, CA:TRUE by default) is its
# own anchor: its key can impersonate the server whatever the flag says,
# so it is not warned of (a mutation review: nothing checked it).
q openssl req -x509 -key srv.key -out self.pem -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
openssl x509 -in self.pem -noout -text | grep -q 'CA:TRUE' || fail "the self-signed test certificate is not CA:TRUE"
tls_try tls-self self.pem self.pem || fail "TLS with a self-signed certificate failed: $(cat tls-self.log)"
! grep -q "is a CA's" server.log || fail "a self-signed certificate was warned of as a CA's: $(cat server.log)"
! tls_try tls-expired expired.pem ca.pem || fail "an expired certificate was accepted"
grep -q "certificate has expired; renew the server's certificate (or set this machine's clock right)" tls-expired.log ||
  fail "expired certificate: no reason logged, or nothing to do: $(grep -m1 TLS tls-expired.log)"
grep -q 'warning: the TLS certificate expired.pem expired on 2020-01-02 00:00:00 UTC' server.log ||
  fail "the server did not warn at start that its certificate has expired"
! tls_try tls-future future.pem ca.pem || fail "a certificate not yet valid was accepted"
grep -q 'warning: the TLS certificate future.pem is not valid before 2099-01-01 00:00:00 UTC' server.log ||
  fail "the server did not warn at start that its certificate is not valid yet"
untouched tls-expired
# (A long --ca path: the advice is said whole, not cut at a buffer's end.)
long=$(printf 'ca-dir-%0240d' 0); mkdir "$long"; cp ca2.pem "$long/"
! tls_try tls-foreign srv.pem "$long/ca2.pem" || fail "a certificate from another CA was accepted"
grep -qE "(unable to get local issuer certificate|self-signed).*; --ca $long/ca2.pem does not hold the certificate of the CA that signed it: give that one \(for a self-signed certificate, that certificate itself\); it came alone, issued by CN=tcpota-test-ca: if that is an intermediate CA, the server must send it too: give the server its whole chain \(its certificate, then the intermediate ones, in one file\); not retrying: the same certificate would be refused again$" tls-foreign.log ||
  fail "foreign CA: no reason logged, or nothing to do: $(grep -m1 TLS tls-foreign.log)"
untouched tls-foreign
# A certificate of an intermediate CA, the server's file without that CA's:
# the device, trusting the root, is told that the server may be leaving it
# out (a trial's device blamed only its own --ca); the whole chain updates.
cat > int.cnf <<'CNF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[leaf]
subjectAltName = DNS:localhost, IP:127.0.0.1
CNF
q openssl req -new -key ca2.key -out int.csr -subj /CN=tcpota-test-int
q openssl x509 -req -in int.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 2 -extfile int.cnf -extensions ca -out int.pem
q openssl x509 -req -in srv.csr -CA int.pem -CAkey ca2.key -set_serial 8 -days 2 -extfile int.cnf -extensions leaf -out leaf.pem
! tls_try tls-noint leaf.pem ca.pem || fail "a chain without its intermediate was accepted"
grep -q "unable to get local issuer certificate; .*; it came alone, issued by CN=tcpota-test-int: if that is an intermediate CA, the server must send it too: give the server its whole chain" tls-noint.log ||
  fail "a server without its intermediate: $(grep -m1 TLS tls-noint.log)"
cat leaf.pem int.pem > fullchain.pem
tls_try tls-fullchain fullchain.pem ca.pem || fail "the whole chain: $(grep -m1 TLS tls-fullchain.log)"
check_device tls-fullchain img
# A certificate refused is refused again: the device stops at its first
# attempt (before: 20 attempts, about 50 s, each failing alike), and says
# so with --quiet too.
t0=$(date +%s)
! ATTEMPTS=20 tls_try tls-quiet srv.pem ca2.pem --quiet || fail "a certificate from another CA was accepted"
[ $(( $(date +%s) - t0 )) -le 5 ] || fail "a refused certificate was retried: $(cat tls-quiet.log)"
grep -q '^device tls-quiet: TLS handshake failed: certificate verify failed: .*; not retrying: the same certificate would be refused again$' tls-quiet.log ||
  fail "--quiet: the refused certificate was not said: $(cat tls-quiet.log)"
[ "$(grep -c 'TLS handshake failed' tls-quiet.log)" = 1 ] || fail "a refused certificate was tried again: $(cat tls-quiet.log)"
ok "TLS: verified update; expired, not yet valid and foreign certificates refused, the server warns of the first two"

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
  grep -qE '(IP address|hostname) mismatch; give --server the name the certificate is for \(the server.s certificate is for elsewhere\.example\)' "tls-name-$host.log" ||
    fail "$host: no name mismatch logged, with the certificate's names: $(grep -m1 TLS "tls-name-$host.log")"
  untouched "tls-name-$host"
done
# The server given its CA's own certificate (a new user's trial: ca.pem
# for cert.pem, side by side): the device names what it got.
start_server img 2.0.0 --tls-cert ca.pem --tls-key ca.key
rc=0
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash tls-caself --id tls-caself --factory-version 1.0.0 \
  --ca ca.pem --trust k.pub --max-attempts 1 2> tls-caself.log || rc=$?
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
[ $rc -eq 1 ] && grep -q "mismatch; give --server the name the certificate is for (the server.s certificate is for CN tcpota-test-ca, and is a CA.s own: was the server given its CA.s certificate, --tls-cert, instead of the one the CA issued for it?)" tls-caself.log ||
  fail "a server with its CA's certificate: exit $rc: $(grep -m1 TLS tls-caself.log)"
grep -q "warning: the TLS certificate ca.pem is self-signed, a CA's (CA:TRUE), and names no server" server.log ||
  fail "serve given its CA's certificate did not warn: $(grep -i warn server.log)"
untouched tls-caself
# A name a terminal would not show as it is (an escape sequence) is "?".
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout esc.key -out esc.pem \
  -days 2 -subj "/CN=$(printf 'bad\033[31mred')"
start_server img 2.0.0 --tls-cert esc.pem --tls-key esc.key
rc=0
"$T" device --server "127.0.0.1:$SERVER_PORT" --flash tls-esc --id tls-esc --factory-version 1.0.0 \
  --ca esc.pem --trust k.pub --max-attempts 1 2> tls-esc.log || rc=$?
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
[ $rc -eq 1 ] && grep -q "the server.s certificate is for CN ?, and" tls-esc.log && ! grep -q $'\033' tls-esc.log ||
  fail "a certificate name with an escape sequence: exit $rc: $(grep -m1 TLS tls-esc.log | cat -v)"
ok "TLS: a certificate from the trusted CA for another host name is refused, naming the names it is for (unprintable ones as ?)"

# 8. TLS and authentication: the answer must be bound to the TLS session
# (an answer relayed from another connection does not verify); a plain
# client on the TLS port is told so at once; handshake failures name their
# reason; a legacy device inside TLS gets nothing under --require-auth.
start_server plain.img 2.0.0 --tls-cert srv.pem --tls-key srv.key --require-auth --auth-file secrets
[ "$(probe --tls --id auth-dev --secret dev.secret --from 127.0.0.30)" = offer ] ||
  fail "TLS: a bound answer with the right secret was refused: $(cat probe.log)"
[ "$(probe --tls --unbound --id nat-good --secret dev.secret --from 127.0.0.31)" = "error 13" ] ||
  fail "TLS: an answer not bound to the TLS session was accepted"
grep -q 'server says: authentication refused: check the device secret' probe.log ||
  fail "TLS: an unbound answer was not refused with a message"
# PINGs in the same write as a wrong answer: their PONGs are handed over
# while the frames are read (whenever half the session's reply buffer is
# full), and the refusal behind them must still go out before the close
# (inside TLS every frame waits in the output queue). 40 to 80 PINGs: some
# of these counts leave the refusal itself handed over with the PONGs.
for n in $(seq 40 80); do
  # A wrong answer (13), or while auth-dev waits after the last one, BUSY (16).
  case "$(probe --tls --pings "$n" --id auth-dev --from "127.0.1.$n")" in "error 13" | "error 16") ;; *)
    fail "TLS: a wrong answer behind $n PINGs was not told its refusal: $(cat probe.log)" ;; esac
done
t0=$(date +%s%N)
rc=0; "$LEGACY" --server "127.0.0.1:$SERVER_PORT" --out plain-on-tls.bin --timeout 10 > legacy.log 2>&1 || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $rc -ne 0 ] || fail "a plain legacy client was served on the TLS port"
[ "$ms" -lt 3000 ] || fail "a plain client on the TLS port waited $ms ms before it was closed"
wait_line server.log 'plain legacy \(req0/req1\) client on the TLS port: legacy devices cannot use TLS; serve them from a server without --tls-cert' 5
out=$(printf 'req0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$SERVER_PORT" -quiet 2>/dev/null | head -c 100 || true)
case "$out" in *total:*) fail "a legacy device inside TLS got the image under --require-auth" ;; esac
wait_line server.log 'legacy \(req0/req1\) device refused: --require-auth' 5
# A client that refuses the server's certificate: the server says why, not "Success".
rc=0; "$T" device --server "127.0.0.1:$SERVER_PORT" --flash tls-foreign2 --id auth-dev --secret dev.secret \
  --ca ca2.pem --max-attempts 1 2> tls-foreign2.log || rc=$?
[ $rc -ne 0 ] || fail "a device trusting another CA was served"
wait_line server.log 'TLS handshake failed: .*(unknown ca|alert)' 5
! grep -q 'Success' server.log || fail "a connection error was logged as 'Success'"
stop_server
ok "TLS: bound answer served, unbound refused; plain client told and closed in $ms ms; legacy inside TLS refused; handshake failure reason logged"

# 9. Bad file arguments: a FIFO never hangs the start, a secrets file with no
# secrets or a short secret is refused, and one others can read is warned about.
mkfifo fifo
# refuse_start WHAT REGEX SERVE-ARGS...: serve must exit non-zero at once, saying REGEX.
refuse_start() {
  local what=$1 re=$2; shift 2
  local rc=0
  timeout 10 "$T" serve --listen 127.0.0.1:0 --version 2.0.0 "$@" 2> refuse.log || rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "$what: serve exited $rc (124: it hung)"
  grep -qE -e "$re" refuse.log || fail "$what: no /$re/ in: $(cat refuse.log)"
}
refuse_start "image FIFO" 'fifo is not a regular file' fifo
refuse_start "--auth-file FIFO" 'fifo is not a regular file' --require-auth --auth-file fifo plain.img
refuse_start "--manifest FIFO" 'fifo is not a regular file' --manifest fifo plain.img
refuse_start "--pubkey FIFO" 'fifo is not a regular file' --pubkey fifo plain.img
refuse_start "--tls-cert FIFO" 'fifo is not a regular file' --tls-cert fifo --tls-key srv.key plain.img
refuse_start "--tls-key FIFO" 'fifo is not a regular file' --tls-cert srv.pem --tls-key fifo plain.img
mkdir secrets.d
refuse_start "--auth-file directory" 'is a directory' --require-auth --auth-file secrets.d plain.img
: > empty.secrets
refuse_start "empty --auth-file" '--auth-file empty.secrets has no secrets' --require-auth --auth-file empty.secrets plain.img
echo "short 00112233445566778899aabbccddee" > short.secrets
refuse_start "15-byte secret" 'has 15 bytes; at least 16' --require-auth --auth-file short.secrets plain.img
refuse_start "--pubkey without a manifest" '--pubkey needs a signed image' --pubkey k.pub plain.img
cp secrets open.secrets; chmod 644 open.secrets
start_server plain.img 2.0.0 --require-auth --auth-file open.secrets
grep -q 'warning: --auth-file open.secrets can be read by other users (mode 644); chmod 600' server.log ||
  fail "a secrets file readable by others was not warned about"
stop_server
ok "serve refuses FIFOs, a directory, an empty secrets file, a short secret, --pubkey without a manifest; warns about a readable secrets file"
