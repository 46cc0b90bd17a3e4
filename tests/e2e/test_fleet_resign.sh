#!/usr/bin/env bash
# An image added unsigned, then signed: the signed manifest is never dropped
# unsaid (409: remove the stored image and add it again), and once added
# again signed it is offered to a device that declined it as unsigned
# (before: the server's cache kept offering the unsigned image, and held
# the device back as having declined it), while a device that rolled the
# bytes back is still held back from them.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

start_fleet
make_keys k
make_image "$WORK/fw.bin" 30000
"$TCPOTA" image add --version 2.0.0 --model esp32 "$WORK/fw.bin" > /dev/null || fail "image add unsigned failed"
ID=$(sha256sum "$WORK/fw.bin" | cut -c1-12)
"$TCPOTA" sign --key "$WORK/k.key" --version 2.0.0 --model esp32 "$WORK/fw.bin" > /dev/null 2>&1 || fail "sign failed"
rc=0; "$TCPOTA" image add "$WORK/fw.bin" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "these bytes are stored already as image $ID, unsigned; the server does not attach a manifest to a stored image: remove it (tcpota image rm $ID; cancel the rollouts using it first) and add it again with this manifest" "$WORK/out" ||
  fail "the same bytes added again with a manifest: rc $rc $(cat "$WORK/out")"
[ "$("$TCPOTA" image list --json | jq_py '[i["signed"] for i in j["images"]][0]')" = false ] ||
  fail "the stored image changed"
ok "the same bytes with a manifest the stored image lacks: 409, what to do said"

"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "rollout create failed"
rc=0; run_device d1 esp32 "$WORK/d1" --trust "$WORK/k.pub" || rc=$?
[ $rc -eq 1 ] && grep -q "declined the server's offer: image is not signed" "$WORK/d1.log" ||
  fail "a device with a trusted key offered the unsigned image: rc $rc $(tail -3 "$WORK/d1.log")"
rc=0; run_device d2 esp32 "$WORK/d2" --health fail || rc=$?
[ $rc -eq 1 ] && grep -q "rolled back" "$WORK/d2.log" || fail "d2 did not roll back: rc $rc $(tail -3 "$WORK/d2.log")"
ok "d1 declined the unsigned image, d2 rolled it back"

"$TCPOTA" rollout cancel 1 > /dev/null || fail "rollout cancel failed"
"$TCPOTA" image rm "$ID" > /dev/null || fail "image rm failed"
"$TCPOTA" image add "$WORK/fw.bin" > "$WORK/out" 2>&1 && grep -q "signed$" "$WORK/out" ||
  fail "image add signed: $(cat "$WORK/out")"
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "second rollout create failed"
run_device d1 esp32 "$WORK/d1" --trust "$WORK/k.pub" || fail "d1 was not updated to the image signed: $(tail -3 "$WORK/d1.log")"
[ "$(running "$WORK/d1")" = 2.0.0 ] || fail "d1 runs $(running "$WORK/d1")"
ok "added again signed: the device that declined it as unsigned is updated"

rc=0; run_device d2 esp32 "$WORK/d2" || rc=$?
[ $rc -eq 1 ] && grep -q "so the server holds it back" "$WORK/d2.log" ||
  fail "the device that rolled the bytes back: rc $rc $(tail -3 "$WORK/d2.log")"
ok "the device that rolled the bytes back is still held back from them, signed"

# image rm takes a version (as rollout create does), and names a superseded
# rollout as superseded (before: "an image id is 8 to 64 hex digits", and
# "(active)" for rollouts that no longer apply).
"$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || fail "third rollout create failed"
rc=0; "$TCPOTA" image rm 2.0.0 > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "image $ID is used by rollouts 3 (active), 2 (superseded); cancel them first" "$WORK/out" ||
  fail "image rm 2.0.0 with rollouts: rc $rc $(cat "$WORK/out")"
"$TCPOTA" rollout cancel 2 > /dev/null && "$TCPOTA" rollout cancel 3 > /dev/null || fail "rollout cancel failed"
"$TCPOTA" image rm 2.0.0 > "$WORK/out" 2>&1 && grep -q "^removed image $ID" "$WORK/out" ||
  fail "image rm 2.0.0: $(cat "$WORK/out")"
ok "image rm VERSION; a superseded rollout is named so"
stop_fleet

# A server with other --pubkey keys names the signing key by the id that
# tcpota keygen printed and tcpota verify says (before: another id).
DATA="$WORK/keys" start_fleet --pubkey "$WORK/k.pub"
"$TCPOTA" keygen --out "$WORK/k2" 2> "$WORK/keygen.out" || fail "keygen k2 failed"
KID=$(sed -nE 's/.*, key id ([0-9a-f]{16})$/\1/p' "$WORK/keygen.out")
[ -n "$KID" ] || fail "keygen printed no key id: $(cat "$WORK/keygen.out")"
make_image "$WORK/fw3.bin" 3000
"$TCPOTA" sign --key "$WORK/k2.key" --version 3.0.0 --model esp32 "$WORK/fw3.bin" > /dev/null 2>&1 || fail "sign with k2 failed"
"$TCPOTA" verify --pubkey "$WORK/k.pub" "$WORK/fw3.bin" > "$WORK/out" 2>&1 && fail "verify with another key passed"
grep -q "signed by key $KID," "$WORK/out" || fail "verify names another key id than keygen's $KID: $(cat "$WORK/out")"
rc=0; "$TCPOTA" image add "$WORK/fw3.bin" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "the manifest is signed by key $KID, which is not one of the server's --pubkey keys" "$WORK/out" ||
  fail "the server names the key otherwise than keygen ($KID): rc $rc $(cat "$WORK/out")"
ok "keygen, verify and the server name a signing key alike"

# A signed version with a space: sign warns, image add refuses it, and
# rollout create says what is wrong with such a name (before: stored, then
# "must be a string of 1 to 64 printable ASCII characters").
make_image "$WORK/fw4.bin" 3000
"$TCPOTA" sign --key "$WORK/k.key" --version "a b" --model esp32 "$WORK/fw4.bin" > /dev/null 2> "$WORK/err" ||
  fail "sign --version 'a b' failed: $(cat "$WORK/err")"
grep -q "warning: version 'a b' has a space: a fleet server's image add refuses it" "$WORK/err" ||
  fail "sign --version 'a b' said: $(cat "$WORK/err")"
rc=0; "$TCPOTA" image add "$WORK/fw4.bin" > "$WORK/out" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "the manifest's version 'a b' has a space, and the API names images by version (rollout create --image VERSION): sign the image again with a version without spaces" "$WORK/out" ||
  fail "image add of a version with a space: rc $rc $(cat "$WORK/out")"
[ "$("$TCPOTA" image list --json | jq_py 'len(j["images"])')" = 0 ] || fail "the image was stored"
rc=0; "$TCPOTA" rollout create --image "a b" --model esp32 > "$WORK/out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "image must be a string of 1 to 64 printable ASCII characters, no spaces: this one has a space" "$WORK/out" ||
  fail "rollout create --image 'a b': rc $rc $(cat "$WORK/out")"
ok "a version with a space: sign warns, image add refuses it, rollout create says why"

# A signed image whose security counter is below another signed image's of
# its model: added, with a warning (the devices that took the other decline
# it as a downgrade, and its rollout halts on their declines: a trial's
# did, and nothing said so before). Not for a counter at or above it.
make_image "$WORK/c3" 31000
make_image "$WORK/c4" 32000
make_image "$WORK/c5" 33000
"$TCPOTA" sign --key "$WORK/k.key" --version 3.0.0 --model m-sc --security-counter 3 "$WORK/c3" > /dev/null 2>&1 || fail "sign 3.0.0 failed"
"$TCPOTA" sign --key "$WORK/k.key" --version 4.0.0 --model m-sc "$WORK/c4" > /dev/null 2>&1 || fail "sign 4.0.0 failed"
"$TCPOTA" sign --key "$WORK/k.key" --version 5.0.0 --model m-sc --security-counter 3 "$WORK/c5" > /dev/null 2>&1 || fail "sign 5.0.0 failed"
"$TCPOTA" image add "$WORK/c3" > "$WORK/out" 2>&1 || fail "image add 3.0.0: $(cat "$WORK/out")"
! grep -q warning "$WORK/out" || fail "the first image of a model was warned about: $(cat "$WORK/out")"
"$TCPOTA" image add "$WORK/c4" > "$WORK/out" 2>&1 || fail "image add 4.0.0: $(cat "$WORK/out")"
grep -q "^tcpota image: warning: its security counter is 0, below the 3 of image 3.0.0 ($(sha256sum "$WORK/c3" | cut -c1-12)) of model m-sc: devices that took that one decline this one (a downgrade), and a rollout of it halts on their declines; sign it with --security-counter 3 or more to reach them$" "$WORK/out" ||
  fail "a lower security counter was not warned about: $(cat "$WORK/out")"
"$TCPOTA" image add "$WORK/c5" > "$WORK/out" 2>&1 || fail "image add 5.0.0: $(cat "$WORK/out")"
! grep -q warning "$WORK/out" || fail "an equal security counter was warned about: $(cat "$WORK/out")"
ok "an image signed with a security counter below another of its model's: added, with a warning"

# A rollout whose image is older than the one of the rollout it supersedes
# offers nothing to the devices that took that one, which count as up to
# date: warned at create (a trial's typo in --image looked like a rollout
# that went well); not with --allow-downgrade, nor for a newer image.
"$TCPOTA" rollout create --image 5.0.0 --model m-sc > "$WORK/out" 2>&1 || fail "rollout 5.0.0: $(cat "$WORK/out")"
! grep -q '^warning' "$WORK/out" || fail "a first rollout was warned about: $(cat "$WORK/out")"
first=$("$TCPOTA" rollout list --json | jq_py 'max(r["id"] for r in j["rollouts"] if r["model"] == "m-sc")')
"$TCPOTA" rollout create --image 3.0.0 --model m-sc > "$WORK/out" 2>&1 || fail "rollout 3.0.0: $(cat "$WORK/out")"
grep -q "^warning: its image 3\.0\.0 is older than rollout $first's, 5\.0\.0: a device is offered only an image newer than the one it runs, so the devices that took 5\.0\.0 get nothing from this rollout and count as up to date; if a newer image was meant, cancel it (tcpota rollout cancel $((first + 1))) and create one with that image" "$WORK/out" ||
  fail "an older image than the superseded rollout's was not warned about: $(cat "$WORK/out")"
"$TCPOTA" rollout create --image 3.0.0 --model m-sc --allow-downgrade > "$WORK/out" 2>&1 || fail "rollout 3.0.0 downgrade: $(cat "$WORK/out")"
! grep -q '^warning' "$WORK/out" || fail "a downgrade on purpose was warned about: $(cat "$WORK/out")"
"$TCPOTA" rollout create --image 5.0.0 --model m-sc > "$WORK/out" 2>&1 || fail "rollout 5.0.0 again: $(cat "$WORK/out")"
! grep -q '^warning' "$WORK/out" || fail "a newer image than the superseded rollout's was warned about: $(cat "$WORK/out")"
ok "rollout create warns of an image older than the superseded rollout's (not for a downgrade on purpose, nor a newer one)"

# What an image's first bytes say against its version and model, at sign
# and at image add (server/esp_image.c): an ESP-IDF app built for another
# chip than its model names (its devices refuse it after the download), an
# app description with another version (the devices report that one, and
# are offered only newer images), an ELF given for the .bin. Added all the
# same: images are any bytes, and a model may not be a chip's name.
make_esp_app "$WORK/s3.bin" 9 1.0.3
"$TCPOTA" sign --key "$WORK/k.key" --version 1.1.0 --model esp32c3 "$WORK/s3.bin" > /dev/null 2> "$WORK/err" ||
  fail "sign s3.bin failed: $(cat "$WORK/err")"
grep -q "^tcpota sign: warning: it is built for esp32s3 (its ESP-IDF image header), not for esp32c3 as its model says: an esp32c3 device refuses it (ESP-IDF checks the chip it is built for), and a rollout of it halts; build it with \`idf.py set-target esp32c3\`, or give it model esp32s3$" "$WORK/err" &&
  grep -q "^tcpota sign: warning: its ESP-IDF app description (project ota_client) says version 1.0.3, not 1.1.0: an ESP-IDF device reports that version once it runs this image, and a server offers it only images newer than that; give it version 1.0.3, or set PROJECT_VER to 1.1.0 and build it again$" "$WORK/err" ||
  fail "sign of an esp32s3 app 1.0.3 as 1.1.0 for esp32c3 said: $(cat "$WORK/err")"
"$TCPOTA" image add "$WORK/s3.bin" > "$WORK/out" 2> "$WORK/err" || fail "image add s3.bin: $(cat "$WORK/err")"
[ "$(grep -c '^tcpota image: warning: ' "$WORK/err")" = 2 ] &&
  grep -q "^tcpota image: warning: it is built for esp32s3 (its ESP-IDF image header), not for esp32c3 as its model says" "$WORK/err" &&
  grep -q "^tcpota image: warning: its ESP-IDF app description (project ota_client) says version 1.0.3, not 1.1.0" "$WORK/err" ||
  fail "image add of an esp32s3 app 1.0.3 as 1.1.0 for esp32c3 said: $(cat "$WORK/err")"
grep -q "^added image .*: version 1.1.0, model esp32c3" "$WORK/out" || fail "s3.bin was not added: $(cat "$WORK/out")"
make_esp_app "$WORK/c3.bin" 5 v1.2.0 # a git tag's version: the same as 1.2.0
"$TCPOTA" sign --key "$WORK/k.key" --version 1.2.0 --model esp32c3 "$WORK/c3.bin" > /dev/null 2> "$WORK/err" &&
  ! grep -q warning "$WORK/err" || fail "sign of an esp32c3 app v1.2.0 as 1.2.0 said: $(cat "$WORK/err")"
"$TCPOTA" image add "$WORK/c3.bin" > /dev/null 2> "$WORK/err" && ! grep -q warning "$WORK/err" ||
  fail "image add of an esp32c3 app v1.2.0 as 1.2.0 said: $(cat "$WORK/err")"
printf '\177ELF\002\001\001' > "$WORK/fw.elf" && head -c 3000 /dev/urandom >> "$WORK/fw.elf"
"$TCPOTA" sign --key "$WORK/k.key" --version 1.0.0 --model m-sc "$WORK/fw.elf" > /dev/null 2> "$WORK/err" &&
  grep -q "^tcpota sign: warning: it is an ELF file (what \`idf.py build\` writes as build/<project>.elf): an ESP-IDF device refuses it; give the .bin beside it instead (build/<project>.bin), unless this model's devices take any file$" "$WORK/err" ||
  fail "sign of an ELF said: $(cat "$WORK/err")"
"$TCPOTA" image add "$WORK/fw.elf" > /dev/null 2> "$WORK/err" || fail "image add fw.elf: $(cat "$WORK/err")"
# both warnings, each a line of its own: the ELF's and model m-sc's counter
grep -q "^tcpota image: warning: it is an ELF file" "$WORK/err" &&
  grep -q "^tcpota image: warning: its security counter is 0, below the 3 of image" "$WORK/err" ||
  fail "image add of an ELF below m-sc's counter said: $(cat "$WORK/err")"
ok "an ESP-IDF app of another chip or version, or an ELF: sign and image add warn, one line each"
stop_fleet
