#!/usr/bin/env bash
# Bad input to keygen, sign, verify (and the key files of `device`): each
# case ends at once with exit 2 (1 for a check that fails) and a message that
# names what is wrong; nothing hangs, nothing is written where it must not be.
source "$(dirname "$0")/lib.sh"
T=$TCPOTA
cd "$WORK"

# expect RC REGEX CMD...: CMD exits RC within 10 s and its stderr matches REGEX.
N=0
expect() {
  local want=$1 re=$2 rc=0; shift 2
  N=$((N + 1))
  timeout 10 "$@" > "out$N.log" 2> "err$N.log" < /dev/null || rc=$?
  [ $rc -ne 124 ] || fail "hung (killed after 10 s): $*"
  [ $rc -eq "$want" ] || fail "exit $rc, expected $want: $*: $(cat "err$N.log")"
  grep -qE -- "$re" "err$N.log" || fail "no /$re/ in the message of: $*: $(cat "err$N.log")"
}

$T keygen --out k 2> keygen.log || fail "keygen failed"
$T keygen --device-secret --out dev.secret 2>> keygen.log || fail "keygen --device-secret failed"
make_image img 5000
mkfifo fifo
mkdir dir
: > empty
S="--version 2.0.0 --model esp32"

# A FIFO where a file belongs: refused at once, the FIFO named, and the
# command whose argument it was.
expect 2 "^tcpota sign: private key: fifo is not a regular file \(it is a FIFO\)" $T sign --key fifo $S img
# A misspelled fleet subcommand is named as one, with the fleet's and the
# host device's ways (a new user's trial was sent to the host's --help).
expect 2 "^tcpota device: status: unknown option '--json'" $T device status --flash dir --json
expect 2 "^tcpota device: unknown subcommand 'lst'; give status, list, show, set, secret, retry or rm, or run a host device with options" $T device lst
expect 2 "try 'tcpota device rm --help'" $T device rm --bogus x
expect 2 "image: fifo is not a regular file \(it is a FIFO\)" $T sign --key k.key $S fifo
expect 2 "^tcpota verify: public key: fifo is not a regular file \(it is a FIFO\)" $T verify --pubkey fifo img
expect 2 "image: fifo is not a regular file" $T verify --pubkey k.pub fifo
$T sign --key k.key $S img 2> sign.log || fail "sign failed: $(cat sign.log)"
expect 2 "manifest: fifo is not a regular file" $T verify --pubkey k.pub --manifest fifo img
expect 2 "--out fifo is not a regular file" $T sign --key k.key $S --out fifo img
expect 2 "^tcpota device: public key: fifo is not a regular file" \
  $T device --server 127.0.0.1:1 --flash devdir --trust fifo --max-attempts 1
expect 2 "device secret: fifo is not a regular file" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret fifo --max-attempts 1
expect 2 "--ca: fifo is not a regular file" \
  $T device --server 127.0.0.1:1 --flash devdir --ca fifo --max-attempts 1
expect 2 "--ca: dir is not a regular file \(it is a directory\)" \
  $T device --server 127.0.0.1:1 --flash devdir --ca dir --max-attempts 1
ok "a FIFO as key, image, manifest, device secret, --ca or --out is refused at once"
# A --ca that is no certificate: what the file holds (as serve says of its
# --tls-cert), not OpenSSL's "no certificate or crl found".
printf -- '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n' > ca-key.pem
expect 2 "^tcpota device: --ca: cannot load CA file ca-key.pem: it holds a private key, not a certificate; give the certificate of the CA" \
  $T device --server 127.0.0.1:1 --flash devdir --ca ca-key.pem --max-attempts 1
expect 2 "^tcpota device: --ca: cannot load CA file empty: the file is empty; give the certificate of the CA" \
  $T device --server 127.0.0.1:1 --flash devdir --ca empty --max-attempts 1
expect 2 "^tcpota device: --ca: cannot load CA file img: it holds no PEM certificate \(-----BEGIN CERTIFICATE-----\)" \
  $T device --server 127.0.0.1:1 --flash devdir --ca img --max-attempts 1
! grep -q "no certificate or crl found" err$((N - 2)).log err$((N - 1)).log err$N.log || fail "OpenSSL's reason instead of what --ca holds"
printf '\060\202\001\000\002\001\003' > like.p12 # a PKCS#12's start: a version, not a certificate
expect 2 "^tcpota device: --ca: cannot load CA file like\.p12: it holds no PEM certificate \(-----BEGIN CERTIFICATE-----\); give the CA's certificate in PEM$" \
  $T device --server 127.0.0.1:1 --flash devdir --ca like.p12 --max-attempts 1
server_cert && openssl x509 -in srv.pem -outform DER -out ca.der || fail "openssl x509 -outform DER"
expect 2 "^tcpota device: --ca: cannot load CA file ca\.der: it holds no PEM certificate \(-----BEGIN CERTIFICATE-----\); give the CA's certificate in PEM \(this looks like a binary DER one: openssl x509 -inform DER -in FILE -out CA\.pem writes it in PEM\)$" \
  $T device --server 127.0.0.1:1 --flash devdir --ca ca.der --max-attempts 1
ok "a --ca holding a key, nothing, or no PEM certificate is said to"
# A certificate cut short, or one with the server's key beside it (it would
# load, and hand the key to every client given the file).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
  -days 2 -subj /CN=localhost > /dev/null 2>&1 || fail "openssl could not make a certificate"
head -c 300 ca.pem > cut.pem
cat ca.pem ca.key > bundle.pem
expect 2 "^tcpota device: --ca: cannot load CA file cut.pem: its certificate does not read \(bad end line\): the file may be cut short or changed; copy the CA's certificate again$" \
  $T device --server 127.0.0.1:1 --flash devdir --ca cut.pem --max-attempts 1
expect 2 "^tcpota device: --ca: CA file bundle.pem holds a private key beside its certificate; a CA file goes to every client and must not: give the certificate alone \(openssl x509 -in bundle.pem -out CA-CERT.pem\)$" \
  $T device --server 127.0.0.1:1 --flash devdir --ca bundle.pem --max-attempts 1
# A certificate and a key after 80 KiB of text (OpenSSL skips text outside
# the PEM blocks), the certificate's "-----BEGIN CERTIFICATE-----" across a
# boundary of the 16 KiB reads of the check (tls_pem.c).
printf '%063d\n' $(seq 1300) > text; head -c $(( 5 * 16384 - 8 - 1 )) text > long.pem; echo >> long.pem
cat ca.pem ca.key >> long.pem
[ "$(tail -c +$(( 5 * 16384 - 8 + 1 )) long.pem | head -c 27)" = "-----BEGIN CERTIFICATE-----" ] ||
  fail "long.pem is not laid out as meant"
expect 2 "^tcpota device: --ca: CA file long.pem holds a private key beside its certificate" \
  $T device --server 127.0.0.1:1 --flash devdir --ca long.pem --max-attempts 1
expect 2 "^tcpota image: --ca: CA file bundle.pem holds a private key beside" \
  $T image list --api https://127.0.0.1:1 --ca bundle.pem
expect 2 "^tcpota image: TCPOTA_API_CA: CA file bundle.pem holds a private key" \
  env TCPOTA_API_CA=bundle.pem $T image list --api https://127.0.0.1:1
ok "a --ca cut short, or with a private key in it, is refused and said to"
# Read once, whole: a file over 4 MiB is no CA certificate (a disk image
# given by mistake), refused before a byte of it is held.
truncate -s 5M huge.pem
expect 2 "^tcpota device: --ca: CA file huge.pem is over 4 MiB: not a CA certificate \(nor a bundle of them\); give the certificate of the CA$" \
  $T device --server 127.0.0.1:1 --flash devdir --ca huge.pem --max-attempts 1
ok "a --ca over 4 MiB is refused and said to"
# A device file as the server's --tls-key: refused at once, not read (a
# review's mutant read /dev/zero for ever while telling a key from a
# certificate).
expect 2 "tcpota serve: --tls-key: /dev/zero is not a regular file \(it is a character device\)" \
  $T serve --listen 127.0.0.1:0 --version 1.0.0 --tls-cert ca.pem --tls-key /dev/zero img
echo "tcpota-secret v1 00112233" > short.secret; chmod 600 short.secret
expect 2 "the secret in short.secret has 4 bytes; at least 16 are needed: get a fleet device's secret with tcpota device secret ID --out FILE, or make one for tcpota serve --auth-file with tcpota keygen --device-secret" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret short.secret --max-attempts 1
# One byte short of the rule (15 of 16): the same refusal, not a start that
# fails later with the flash's words (a review's mutant).
echo "tcpota-secret v1 00112233445566778899aabbccddee" > short15.secret; chmod 600 short15.secret
expect 2 "the secret in short15.secret has 15 bytes; at least 16 are needed" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret short15.secret --max-attempts 1
# A device's own secret file given to the server as its --auth-file: said to
# be one, with the line the server wants (it has three fields, which the
# generic refusal would also catch, without that advice).
$T keygen --device-secret --out own.secret 2> /dev/null || fail "keygen --device-secret failed"
make_image authimg 5000
expect 2 "^tcpota serve: own\.secret:1: this is a device's secret file \(tcpota keygen --device-secret\), not a secrets file; the server's line for it is \"<device id> <its hex>\": echo \"ID " \
  $T serve --listen 127.0.0.1:0 --auth-file own.secret --version 1.0.0 authimg
# A signing key or a public key given as --auth-file, or as a ticket key:
# named as what it is (a trial: "more than <device id> <hex secret>", "holds
# more than 80 bytes"). A secrets file saved with a UTF-8 byte order mark is
# read (as the config file is; before: "the device id holds byte 0xef").
expect 2 "^tcpota serve: k\.pub:1: this is a tcpota-ed25519-public file \(tcpota keygen --out\), not a secrets file \(\"<device id> <hex secret>\" per line\)$" \
  $T serve --listen 127.0.0.1:0 --auth-file k.pub --version 1.0.0 authimg
expect 2 "^tcpota serve: k\.key:1: this is a tcpota-ed25519-secret file \(tcpota keygen --out\), not a secrets file" \
  $T serve --listen 127.0.0.1:0 --auth-file k.key --version 1.0.0 authimg
[ -s srv.pem ] || server_cert
expect 2 "^tcpota serve: --tls-ticket-key k\.key holds more than 80 bytes \(it is a tcpota-ed25519-secret file\), not 80: a ticket key is 80 random bytes; make one with tcpota keygen --ticket-key --out FILE$" \
  $T serve --listen 127.0.0.1:0 --tls-cert srv.pem --tls-key srv.key --tls-ticket-key k.key --version 1.0.0 authimg
printf '\357\273\277bom-1 00112233445566778899aabbccddeeff\n' > bom.secrets; chmod 600 bom.secrets
timeout 10 $T serve --listen 127.0.0.1:0 --auth-file bom.secrets --version 1.0.0 authimg > /dev/null 2> bom.log &
bom_pid=$!
for _ in $(seq 100); do grep -q 'listening on' bom.log && break; sleep 0.1; done
kill "$bom_pid" 2> /dev/null; wait "$bom_pid" 2> /dev/null || true # timeout's status, not the test's
grep -q 'listening on' bom.log || fail "a secrets file with a byte order mark: $(cat bom.log)"
# At most 8 --trust keys (MAX_TRUST): a ninth is refused, never stored past
# the list.
nine_keys=$(for _ in 1 2 3 4 5 6 7 8 9; do printf -- '--trust k.pub '; done)
# shellcheck disable=SC2086 # nine_keys is nine options
expect 2 "^tcpota device: --trust: at most 8 keys" \
  $T device --server 127.0.0.1:1 --flash devdir $nine_keys --max-attempts 1
# 0 is no delay the runner takes (it reads 0 as its default): refused, not
# turned into 200 ms without a word or into "cannot set up the connection loop".
expect 2 "^tcpota device: --backoff-min-ms: '0' is out of range: give a whole number in 1\.\.3600000$" \
  $T device --server 127.0.0.1:1 --flash devdir --backoff-min-ms 0 --backoff-max-ms 100
expect 2 "^tcpota device: --backoff-max-ms: '0' is out of range: give a whole number in 1\.\.3600000$" \
  $T device --server 127.0.0.1:1 --flash devdir --backoff-max-ms 0
# A first backoff longer than the longest is a usage error (exit 2), said as
# such, not a connection loop that cannot be set up (exit 1).
expect 2 "^tcpota device: --backoff-min-ms 10 is larger than --backoff-max-ms 5$" \
  $T device --server 127.0.0.1:1 --flash devdir --backoff-min-ms 10 --backoff-max-ms 5
# One of the two left to its default: the default is said to be one, and
# which way out there is (not "--backoff-min-ms is larger", never given).
expect 2 "^tcpota device: --backoff-max-ms 100 is below --backoff-min-ms \(default 200\): raise it or lower --backoff-min-ms$" \
  $T device --server 127.0.0.1:1 --flash devdir --backoff-max-ms 100
expect 2 "^tcpota device: --backoff-min-ms 9000 is above --backoff-max-ms \(default 5000\): lower it or raise --backoff-max-ms$" \
  $T device --server 127.0.0.1:1 --flash devdir --backoff-min-ms 9000
# Names the protocol carries: 1..max printable ASCII characters, each bound.
expect 2 "^tcpota device: --id: need 1..64 printable ASCII characters" \
  $T device --server 127.0.0.1:1 --flash devdir --id ''
expect 2 "^tcpota device: --id: need 1..64 printable ASCII characters" \
  $T device --server 127.0.0.1:1 --flash devdir --id "$(printf 'dev\t1')"
expect 2 "^tcpota device: --model: need 1..32 printable ASCII characters" \
  $T device --server 127.0.0.1:1 --flash devdir --model "$(printf '%033d' 0)"
expect 2 "^tcpota device: --factory-version: need 1..32 printable ASCII characters" \
  $T device --server 127.0.0.1:1 --flash devdir --factory-version "$(printf '%033d' 0)"
# At the bounds, taken: a 64-character --id and a 32-character --model (the
# error said is the next one, of the backoffs).
expect 2 "^tcpota device: --backoff-min-ms 10 is larger than --backoff-max-ms 5$" \
  $T device --server 127.0.0.1:1 --flash devdir --id "$(printf '%064d' 0)" --model "$(printf '%032d' 0)" \
  --backoff-min-ms 10 --backoff-max-ms 5
# A version is 1..32 characters wherever it is taken (TCPOTA_MAX_NAME): 32
# will do as the factory version too, and the flash keeps it whole.
expect 1 "running slot 0, version $(printf '%032d' 0)$" \
  $T device --server 127.0.0.1:1 --flash fv32 --factory-version "$(printf '%032d' 0)" --max-attempts 1
# Sizes on the flash's 4096-byte sectors, the server's port, the health.
expect 2 "^tcpota device: --slot-size: 1052673 is not a multiple of 4096 \(a flash sector\); give 1052672 or 1056768$" \
  $T device --server 127.0.0.1:1 --flash devdir --slot-size 1052673
# A size as serve's --max-image takes one: 12K is 12288 (the run fails to connect, exit 1).
expect 1 "gave up after 1 attempt" $T device --server 127.0.0.1:1 --flash slotk --slot-size 12K --max-attempts 1
# Letters alone: not called "not a number", as if K, M and G were not taken.
expect 2 "^tcpota device: --slot-size: 'abc' is not a size: give bytes, or a whole number with K, M or G \(KiB, MiB, GiB\) after it, in 4096\.\.4294963200 bytes$" \
  $T device --server 127.0.0.1:1 --flash devdir --slot-size abc
expect 2 "^tcpota device: --flash is empty: give the device's directory$" \
  $T device --server 127.0.0.1:1 --flash ""
expect 2 "^tcpota device: status: --flash is empty: give the device's directory$" $T device status --flash ""
expect 2 "^tcpota device: --slot-size: '4G' is out of range: give a size in 4096\.\.4294963200 bytes" \
  $T device --server 127.0.0.1:1 --flash devdir --slot-size 4G
expect 2 "^tcpota device: --ack-interval: 6000 is not a multiple of 4096 \(a flash sector\); give 4096 or 8192$" \
  $T device --server 127.0.0.1:1 --flash devdir --ack-interval 6000
expect 2 "^tcpota device: --server: port 0 is not a server's port" \
  $T device --server 127.0.0.1:0 --flash devdir
expect 2 "^tcpota device: --health: 'maybe' is not ok, fail or crash$" \
  $T device --server 127.0.0.1:1 --flash devdir --health maybe

# A directory, a missing file, an empty file.
expect 2 "private key: dir is not a regular file \(it is a directory\)" $T sign --key dir $S img
expect 2 "image: dir is not a regular file \(it is a directory\)" $T sign --key k.key $S dir
expect 2 "--out dir is not a regular file \(it is a directory\)" $T sign --key k.key $S --out dir img
expect 2 "--out /dev/null is not a regular file; give a file name" $T sign --key k.key $S --out /dev/null img
# Without --out: the default place named as itself, not as "--out".
mkdir -p dimg.manifest && cp img dimg
expect 2 "^tcpota sign: dimg.manifest is not a regular file \(it is a directory\); it is where the manifest goes without --out: move it away, or give --out FILE$" \
  $T sign --key k.key $S dimg
expect 2 "cannot write nodir/x.manifest: its directory does not exist; create it first$" $T sign --key k.key $S --out nodir/x.manifest img
expect 2 "public key: cannot open nothere.pub: No such file" $T verify --pubkey nothere.pub img
expect 2 "image: cannot open nothere: No such file" $T sign --key k.key $S nothere
expect 2 "private key: empty is empty; give NAME.key" $T sign --key empty $S img
expect 2 "image: empty is empty" $T sign --key k.key $S empty
expect 2 "^tcpota serve: image: empty is empty; give the firmware image to serve$" \
  $T serve --listen 127.0.0.1:0 --version 2.0.0 empty
expect 2 "^tcpota serve: image: fifo is not a regular file \(it is a FIFO\)" $T serve --listen 127.0.0.1:0 --version 2.0.0 fifo
# The manifest next to the image is named as that, not as a --manifest
# never given (a trial).
mkdir -p dirimg.bin.manifest; cp img dirimg.bin
expect 2 "^tcpota serve: manifest \(taken next to the image; --manifest FILE names another\): dirimg.bin.manifest is not a regular file \(it is a directory\)" \
  $T serve --listen 127.0.0.1:0 --version 2.0.0 dirimg.bin
truncate -s 4294967296 huge.bin # sparse: 4 GiB, one byte over what an image can have
expect 2 "^tcpota serve: image: huge.bin has 4294967296 bytes, more than an image can have \(4 GiB - 1" \
  $T serve --listen 127.0.0.1:0 --version 2.0.0 huge.bin
rm -f huge.bin
expect 2 "^tcpota serve: manifest empty is empty; sign the image again \(tcpota sign\)$" \
  $T serve --listen 127.0.0.1:0 --manifest empty img
# An upload limit the API could not hold in memory (it took up to 4 GiB,
# and the CLI refused images over 1 GiB).
expect 2 "tcpota serve: --max-image: '2000000000' is out of range" $T serve --data d --max-image 2000000000
# A flag that would do nothing is refused, not ignored.
expect 2 "tcpota serve: --allow-unauthenticated-legacy applies only with --require-auth \(without it every legacy device is served, and so is every device whose id has no secret\); add --require-auth, or drop it" \
  $T serve --listen 127.0.0.1:0 --version 2.0.0 --allow-unauthenticated-legacy img
# With --tls-cert the legacy flags can do nothing: warned (a config file
# may hold them, and nothing takes them back), and the server starts.
echo "dev1 $(printf '%064d' 7)" > legacy-secrets && chmod 600 legacy-secrets
for f in --allow-legacy --allow-unauthenticated-legacy; do
  rc=0
  timeout --preserve-status -s TERM 3 $T serve --listen 127.0.0.1:0 --version 2.0.0 --tls-cert srv.pem --tls-key srv.key \
    --require-auth --auth-file legacy-secrets $f img > /dev/null 2> legacy-tls.log || rc=$?
  [ $rc -eq 0 ] && grep -q "warning: $f does nothing with --tls-cert: legacy (req0/req1) devices cannot speak TLS, and the device port then speaks TLS only; serve them from a server without --tls-cert" legacy-tls.log &&
    grep -q 'listening on' legacy-tls.log || fail "$f with --tls-cert: exit $rc: $(cat legacy-tls.log)"
done
expect 2 "public key: empty is empty; give NAME.pub" $T verify --pubkey empty img
ln -s nowhere dangling.pub
expect 2 "public key: dangling.pub is a symbolic link to nowhere, which does not exist; give the path of a file" \
  $T verify --pubkey dangling.pub img
ln -s nodir dangling-dir
expect 2 "^tcpota device: --flash: dangling-dir is a symbolic link to nodir, which does not exist; create that folder, or give the device's directory" \
  $T device --server 127.0.0.1:1 --flash dangling-dir
{ cat k.pub; echo junk; } > twolines.pub
expect 2 "public key: twolines.pub has more than one line; a key file is one line, as .tcpota keygen. wrote it: remove what follows it" \
  $T verify --pubkey twolines.pub img
expect 1 "manifest empty is empty; sign the image again" $T verify --pubkey k.pub --manifest empty img
printf 'garbage, not a manifest' > garbage.manifest
expect 1 "manifest is not a tcpota manifest, or is damaged; sign the image again with .tcpota sign." \
  $T verify --pubkey k.pub --manifest garbage.manifest img
! grep -q "protocol violation" "err$N.log" || fail "a damaged manifest was called a protocol violation"
expect 2 "private key: img is larger than the 512 bytes allowed" $T sign --key img $S img
ok "a directory, a missing file and an empty file are named as such"

# A key file of the wrong kind, or damaged.
expect 2 "private key: k.pub holds an Ed25519 public key, not an Ed25519 private key; give NAME.key" \
  $T sign --key k.pub $S img
! grep -q 'warning' "err$N.log" || fail "a public key given as a private key was called exposed"
expect 2 "private key: dev.secret holds a device secret, not an Ed25519 private key" \
  $T sign --key dev.secret $S img
expect 2 "public key: k.key holds an Ed25519 private key, not an Ed25519 public key; give NAME.pub" \
  $T verify --pubkey k.key img
expect 2 "public key: img.manifest is not a tcpota key file; give NAME.pub" $T verify --pubkey img.manifest img
sed 's/ [0-9a-f]*$/ 00zz/' k.pub > damaged.pub
expect 2 "public key: damaged.pub is damaged" $T verify --pubkey damaged.pub img
# A key one byte short: refused, never taken with its last byte unset.
sed 's/..$//' k.pub > short.pub
expect 2 "public key: short.pub is damaged: the key is not 32 bytes of hex" $T verify --pubkey short.pub img
# A byte too many, or anything after the key's hex: damaged as well.
sed 's/$/00/' k.pub > long.pub
expect 2 "public key: long.pub is damaged: the key is not 32 bytes of hex" $T verify --pubkey long.pub img
sed 's/$/ zz/' k.pub > trailing.pub
expect 2 "public key: trailing.pub is damaged: the key is not 32 bytes of hex" $T verify --pubkey trailing.pub img
(umask 077; sed 's/..$//' k.key > short.key)
expect 2 "private key: short.key is damaged: the key is not 64 bytes of hex" $T sign --key short.key $S img
# A device secret of no bytes at all is damaged, not a short secret.
(umask 077; echo "tcpota-secret v1 " > none.secret)
expect 2 "device secret: none.secret is damaged: the key is not 16 to 64 bytes of hex; use the file as \`tcpota device secret ID --out FILE\` or \`tcpota keygen --device-secret\` wrote it$" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret none.secret --max-attempts 1
# A device secret that is no such file names both ways to get one: a fleet
# server's `device secret` (before: only keygen, which makes a secret no
# fleet server knows) and keygen for an --auth-file.
dev_hint="give the file written for this device by \`tcpota device secret ID --out FILE\` \(a fleet server, tcpota serve --data\) or by \`tcpota keygen --device-secret --out FILE\` \(a server's --auth-file\)$"
expect 2 "device secret: k.pub holds an Ed25519 public key, not a device secret; $dev_hint" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret k.pub --max-attempts 1
(umask 077; : > empty.secret; echo "not a key" > junk.secret)
expect 2 "device secret: empty.secret is empty; $dev_hint" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret empty.secret --max-attempts 1
expect 2 "device secret: junk.secret is not a tcpota key file; $dev_hint" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret junk.secret --max-attempts 1
ok "a key file of the wrong kind is named for what it holds"

# Missing, empty, repeated and unknown arguments.
expect 2 "--version is missing: give --version V" $T sign --key k.key --model esp32 img
expect 2 "--model is missing" $T sign --key k.key --version 2.0.0 img
expect 2 "--key is missing: give --key NAME.key" $T sign $S img
expect 2 "FILE is missing: give the firmware image to sign" $T sign --key k.key $S
expect 2 "--key needs a value: --key NAME.key" $T sign $S img --key
expect 2 "--key needs a value: --key NAME.key \(got the option --version; if --version is meant as the value, write --key=--version\)$" $T sign --key --version 2.0.0 img
expect 2 "--version is given twice" $T sign --key k.key $S --version 3 img
expect 2 "unknown option --frobnicate; see tcpota sign --help" $T sign --frobnicate $S img
expect 2 "two files given \('img' and 'img2'\)" $T sign --key k.key $S img img2
expect 2 "--version '.*' must be 1 to 32 printable" $T sign --key k.key --model m --version "$(printf 'a%.0s' {1..33})" img
expect 2 "--version '2.0.*1' must be 1 to 32 printable" $T sign --key k.key --model m --version "$(printf '2.0\t1')" img
# A negative number is said to be one (as the fleet commands say), with the range.
expect 2 "--security-counter: '-1' is negative: give a whole number in 0..4294967295" $T sign --key k.key $S --security-counter -1 img
expect 2 "--security-counter: '-0' is not a number" $T sign --key k.key $S --security-counter -0 img
expect 2 "--security-counter: '\+5' is not a number" $T sign --key k.key $S --security-counter +5 img
# A version no device orders (as serve warns): signed, with a warning.
expect 0 "warning: version 'factory' is not a semantic version \(like 2.1.0\): servers offer it to no device unless --allow-downgrade" \
  $T sign --key k.key --version factory --model esp32 --out factory.manifest img
$T sign --key k.key $S --out semver.manifest img 2> semver.log
! grep -q warning semver.log || fail "a semantic version was warned about: $(cat semver.log)"
# What keeps a version that looks like one out of the order is named: a
# number longer than 9 digits, a fifth number (at 9 digits and 4 numbers:
# no warning).
expect 0 "warning: version '1.0.20261207001' has a number of more than 9 digits \(a version's numbers have at most 9, like 2026.1207.1\): servers offer it to no device unless --allow-downgrade" \
  $T sign --key k.key --version 1.0.20261207001 --model esp32 --out long.manifest img
expect 0 "warning: version 'v1.2.3.4.5' has more than 4 numbers \(a version has at most 4, like 1.2.3.4\)" \
  $T sign --key k.key --version v1.2.3.4.5 --model esp32 --out five.manifest img
$T sign --key k.key --version v1.2.3.123456789-rc.1234567890 --model esp32 --out nine.manifest img 2> nine.log
! grep -q warning nine.log || fail "a version of 4 numbers of up to 9 digits was warned about: $(cat nine.log)"
# Its value left out: the image was taken as the counter, and that is said
# (not "FILE is missing").
expect 2 "--security-counter: 'img' is not a number" $T sign --key k.key $S --security-counter img
expect 2 "--pubkey needs a value" $T verify img --pubkey
expect 2 "--pubkey is missing" $T verify img
expect 2 "--pubkey is given more than 8 times; give at most 8" $T verify $(printf -- '--pubkey k.pub %.0s' {1..9}) img
expect 2 "FILE is missing: give the firmware image to check" $T verify --pubkey k.pub
expect 2 "unknown option -x; see tcpota verify --help" $T verify -x --pubkey k.pub img
make_image img2 100
expect 2 "img2 has no manifest \(img2.manifest does not exist\); sign it" $T verify --pubkey k.pub img2
# The manifest of another image: its size is named before its SHA-256.
$T sign --key k.key $S --out img2.other img2 2> /dev/null || fail "sign img2 failed"
expect 1 "image is 5000 bytes, the manifest says 100$" $T verify --pubkey k.pub --manifest img2.other img
# Signing again replaces the manifest whole (a new file renamed over it),
# keeping the mode it had, and says so; no temporary file is left.
chmod 600 img2.other
$T sign --key k.key $S --out img2.other img2 2> resign.log || fail "sign img2 again failed"
grep -q "^tcpota sign: wrote img2.other (replacing the manifest that was there): img2 2.0.0" resign.log ||
  fail "signing again did not say it replaced the manifest: $(cat resign.log)"
$T sign --key k.key $S --out fresh.manifest img2 2> fresh.log || fail "sign to a new file failed"
! grep -q replacing fresh.log || fail "a new manifest was said to replace one: $(cat fresh.log)"
[ "$(stat -c %a img2.other)" = 600 ] || fail "a re-signed manifest went from mode 600 to $(stat -c %a img2.other)"
[ -z "$(ls img2.other.* 2> /dev/null)" ] || fail "sign left $(ls img2.other.*)"
$T sign --help | grep -q 'usage: tcpota sign' || fail "sign --help"
$T verify --pubkey=k.pub img 2> v.log || fail "--pubkey=FILE not accepted: $(cat v.log)"
! grep -q warning v.log || fail "a public key (0644, as keygen writes it) was warned about: $(cat v.log)"
expect 2 "tcpota: unknown command 'frob'; give one of those below" $T frob
expect 2 "tcpota: no command given" $T
# HOST: (an unset $PORT) says what is missing, not "expected a number".
expect 2 "tcpota device: --server: '127\.0\.0\.1:' has no port after ':'; give HOST:PORT" \
  $T device --server 127.0.0.1: --flash devdir
expect 2 "tcpota serve: --listen: '127\.0\.0\.1:' has no port after ':'; give HOST:PORT" \
  $T serve --listen 127.0.0.1: --version 2.0.0 img
expect 2 "tcpota device: --server: '\[::1\]80' is not \[IPv6\]:PORT" $T device --server '[::1]80' --flash devdir
expect 2 "tcpota device: --server: ':80' has no host before ':'; give the server's name or address, e\.g\. 127\.0\.0\.1:80$" $T device --server :80 --flash devdir
# A URL (an --ota-listen address copied for an HTTP client): said at once,
# not 20 attempts to resolve "http" (a new user's trial).
expect 2 "tcpota device: --server: 'http://127\.0\.0\.1:8080' is a URL; give HOST:PORT, without a scheme or a path$" $T device --server http://127.0.0.1:8080 --flash devdir
expect 2 "tcpota device: --server: '127\.0\.0\.1:8070/ota' has a path after the port; give HOST:PORT alone$" $T device --server 127.0.0.1:8070/ota --flash devdir
# A host of 256 characters does not fit the 255 and a 0 kept for it.
expect 2 "tcpota device: --server: bad host in 'h{48}\.\.\. \(259 characters\)'" $T device --server "$(printf 'h%.0s' {1..256}):80" --flash devdir
expect 2 "tcpota device: --server: '65536' is out of range: give a whole number in 1\.\.65535" \
  $T device --server 127.0.0.1:65536 --flash devdir
# Two colons: said at once, not when the host "127.0.0.1:8070" fails to
# resolve (a new user's trial); an IPv6 address without brackets still is one.
expect 2 "tcpota device: --server: '127\.0\.0\.1:8070:1' has more than one ':'; give HOST:PORT \(an IPv6 address in brackets: \[::1\]:8070\)$" \
  $T device --server 127.0.0.1:8070:1 --flash devdir
[ ! -e devdir ] || fail "a bad --server made the device directory"
expect 2 "tcpota serve: --listen: 'localhost:1:2' has more than one ':'" $T serve --listen localhost:1:2 img
expect 1 "cannot connect|refused|unreachable|gave up" $T device --server ::1:1 --flash v6dir --max-attempts 1
expect 1 "cannot connect|refused|unreachable|gave up|resolve" $T device --server fe80::1%lo:1 --flash v6zone --max-attempts 1
# tcpota help COMMAND is COMMAND --help; extra words after help or version
# are refused rather than dropped.
$T help sign > help-sign.out || fail "tcpota help sign failed"
grep -q 'usage: tcpota sign' help-sign.out || fail "tcpota help sign: $(cat help-sign.out)"
expect 2 "tcpota: help: unknown command 'frob'" $T help frob
expect 2 "tcpota: help takes at most one COMMAND \(got 'sign' and 'verify'\)" $T help sign verify
expect 2 "tcpota: version takes no argument \(got 'extra'\)" $T version extra
# version has a help of its own, as the usage's last line promises every
# command does (a new user's trial: "version takes no argument (got
# '--help')", and "help: unknown command 'version'").
for h in "version --help" "help version" "--version -h"; do
  # shellcheck disable=SC2086
  $T $h > vh.out 2> vh.err || fail "tcpota $h: exit $?: $(cat vh.err)"
  grep -q '^usage: tcpota version' vh.out || fail "tcpota $h: $(cat vh.out vh.err)"
done
ok "missing, empty, repeated and unknown arguments are named"

# tcpota --help's summary names every option of these commands' usages
# (their own --help): a user reading it alone misses none.
$T --help > help.out || fail "tcpota --help failed"
summary() { sed -n '/^  tcpota '"$1"' /,/^  tcpota [a-z]/p' help.out | sed '$d'; }
for c in "keygen --out --device-secret --ticket-key" \
         "sign --key --version --model --security-counter --out" \
         "device list --model --state --group --limit --after"; do
  set -- $c
  cmd=$1; shift
  [ "$cmd" = device ] && { cmd="device list"; shift; }
  for o in "$@"; do
    $T $cmd --help | grep -- "$o" > /dev/null || fail "tcpota $cmd --help has no $o"
    summary "$cmd" | grep -- "$o" > /dev/null || fail "tcpota --help does not name $cmd's $o: $(summary "$cmd")"
  done
done
ok "tcpota --help names every option of keygen, sign and device list"

# sign never overwrites the image or the key with the manifest.
sum=$(sha256sum img)
expect 2 "--out img is the image or the key itself" $T sign --key k.key $S --out img img
expect 2 "--out k.key is the image or the key itself" $T sign --key k.key $S --out k.key img
[ "$(sha256sum img)" = "$sum" ] || fail "sign --out img changed the image"
$T verify --pubkey k.pub img 2> v.log || fail "the key was damaged by sign --out k.key"
# Nor over another key, an image or any file that is not a manifest; a
# manifest (or a damaged FILE.manifest) it replaces.
cp k.key other.key && cp img other.bin && echo "listen 0.0.0.0:8070" > other.conf
for f in other.key other.bin other.conf; do
  sum=$(sha256sum "$f")
  expect 2 "--out $f exists and is not a manifest \([0-9]* bytes\); sign replaces only a manifest or a FILE.manifest: give another --out, or remove $f first" \
    $T sign --key k.key $S --out "$f" img
  [ "$(sha256sum "$f")" = "$sum" ] || fail "sign --out $f changed it"
done
# A FILE.manifest that is a symbolic link to another key: the file written
# is the link's target, which is judged, not the link's name.
ln -s other.key link.manifest
sum=$(sha256sum other.key)
expect 2 "--out link.manifest exists and is not a manifest" $T sign --key k.key $S --out link.manifest img
[ "$(sha256sum other.key)" = "$sum" ] || fail "sign --out link.manifest (a link to other.key) replaced the key"
$T sign --key k.key $S --out m.sig img 2> /dev/null || fail "sign --out m.sig (new) failed"
$T sign --key k.key $S --out m.sig img 2> /dev/null || fail "sign --out m.sig over a manifest failed"
head -c 100 /dev/urandom > img.manifest
$T sign --key k.key $S img 2> /dev/null || fail "sign over a damaged img.manifest failed"
$T verify --pubkey k.pub img 2> v.log || fail "img.manifest signed again does not verify: $(cat v.log)"
ok "sign refuses to write its manifest over the image, a key or any file not a manifest"

# keygen: the output name.
expect 2 "--out is empty; give --out NAME" $T keygen --out ""
expect 2 "--out needs a value: --out NAME$" $T keygen --out
expect 2 "--out needs a value: --out NAME \(got the option --device-secret; if --device-secret is meant as the value, write --out=--device-secret\)$" $T keygen --out --device-secret
expect 2 "--out dir/ names a directory, not a file; give a NAME, e.g. --out dir/release" $T keygen --out dir/
# An existing directory without its slash: not dir.key and dir.pub beside it.
expect 2 "--out dir names a directory, not a file; give a NAME, e.g. --out dir/release$" $T keygen --out dir
[ ! -e dir.key ] && [ ! -e dir.pub ] || fail "keygen --out dir wrote dir.key or dir.pub"
expect 2 "--out . names a directory" $T keygen --device-secret --out .
expect 2 "--out dir/\.\. names a directory, not a file; give a NAME" $T keygen --out dir/..
expect 2 "--out takes the NAME without .key or .pub: --out rel writes rel.key and rel.pub" $T keygen --out rel.key
expect 2 "dir is a directory; give a file name in it, e\.g\. dir/dev1\.secret$" $T keygen --device-secret --out dir
# The name suggested is one of the kind asked for: a ticket key, not a device secret.
expect 2 "dir is a directory; give a file name in it, e\.g\. dir/ticket\.key$" $T keygen --ticket-key --out dir
expect 2 "--out dir/ names a directory, not a file; give a FILE, e\.g\. --out dir/ticket\.key$" $T keygen --ticket-key --out dir/
mkdir q.pub qk.key
expect 2 "^tcpota keygen: q.pub is a directory; choose another --out NAME \(NAME.key and NAME.pub are written\)$" $T keygen --out q
expect 2 "^tcpota keygen: qk.key is a directory; choose another --out NAME" $T keygen --out qk
[ ! -e q.key ] && [ ! -e qk.pub ] || fail "keygen left half a pair beside a directory: $(ls q* )"
expect 2 "cannot create nodir/x.key: its directory does not exist" $T keygen --out nodir/x
# An output name under a file: the name is at fault (2), for keygen as for
# sign's --out (a trial: keygen said 1 where sign said 2).
expect 2 "^tcpota keygen: cannot create img/x.key: Not a directory$" $T keygen --out img/x
# A manifest whose bytes do not reach the disk is not renamed over a good
# one (a mutation review: without the fsync a crash could leave an empty
# or partial manifest, and every device trusting the key declines).
if [ "$TCPOTA_SANITIZED" != 1 ]; then
  with_failqueue ./tcpota-fq
  $T sign --key k.key --version 1.0.0 --model esp32 --out good.manifest img 2> /dev/null || fail "sign good.manifest"
  sum=$(sha256sum good.manifest)
  touch fsync.eio
  TCPOTA_TEST_FSYNC_EIO=fsync.eio TCPOTA_TEST_FSYNC_EIO_NAME=good.manifest. \
    expect 1 "^tcpota sign: cannot write good\.manifest: Input/output error$" \
    ./tcpota-fq sign --key k.key --version 1.0.1 --model esp32 --out good.manifest img
  [ "$(sha256sum good.manifest)" = "$sum" ] || fail "a manifest whose sync failed replaced the good one"
  ! ls good.manifest.?????? > /dev/null 2>&1 || fail "sign left its temporary file: $(ls good.manifest.*)"
fi
expect 2 "^tcpota sign: cannot write img/x.manifest: Not a directory \(sign writes a new file beside it and renames it over\)$" \
  $T sign --key k.key --version 1.0.0 --model esp32 --out img/x.manifest img
expect 2 "unexpected argument 'extra'" $T keygen --out x extra
expect 2 "unknown option --bogus" $T keygen --bogus
expect 2 "--out is missing: give --out NAME" $T keygen
expect 2 "--device-secret takes no value" $T keygen --device-secret=yes --out z
[ -z "$(ls -A dir)" ] && [ ! -e .key ] && [ ! -e .pub ] && [ ! -e ...key ] && [ ! -e rel.key.key ] ||
  fail "keygen wrote a file for a refused name: $(ls -A . dir)"
ok "keygen refuses an empty, missing or directory name"

# keygen never overwrites, and leaves no half pair.
sum=$(sha256sum k.key k.pub dev.secret)
expect 2 "k.pub already exists; not overwriting a key: remove it or choose another name" $T keygen --out k
expect 2 "dev.secret already exists; not overwriting a key" $T keygen --device-secret --out dev.secret
expect 2 "^tcpota keygen: fifo already exists and is a FIFO, not a file to write a key to; choose another name$" $T keygen --device-secret --out fifo
[ "$(sha256sum k.key k.pub dev.secret)" = "$sum" ] || fail "keygen overwrote a key"
cp k.pub half.pub
expect 2 "half.pub already exists" $T keygen --out half
[ ! -e half.key ] || fail "keygen left half.key behind"
ln -s fifo trap.pub 2>/dev/null
expect 2 "trap.pub already exists" $T keygen --out trap
ok "keygen never overwrites a key and leaves no half pair"

# Point 5: a private key or device secret readable by others is warned about.
chmod 644 k.key
expect 0 "warning: k.key is readable by others \(mode 0644\); chmod 600 k.key" $T sign --key k.key $S img
chmod 640 k.key
expect 0 "warning: k.key is readable by its group \(mode 0640\); chmod 600 k.key" $T sign --key k.key $S img
chmod 604 k.key
expect 0 "warning: k.key is readable by others \(mode 0604\); chmod 600 k.key" $T sign --key k.key $S img
chmod 620 k.key
expect 0 "warning: k.key is writable by its group \(mode 0620\); chmod 600 k.key" $T sign --key k.key $S img
chmod 600 k.key
$T sign --key k.key $S img 2> quiet.log
! grep -q warning quiet.log || fail "a 0600 key was warned about: $(cat quiet.log)"
chmod 644 dev.secret
expect 1 "warning: dev.secret is readable by others \(mode 0644\); chmod 600 dev.secret" \
  $T device --server 127.0.0.1:1 --flash devdir --id d --secret dev.secret --max-attempts 1
ok "a private key or device secret readable by others is warned about, with the chmod"

# An option's value left out: the next option is not taken for it (before,
# `device --id --model m` made the id "--model", and `serve --data --api A`
# kept the fleet in a directory named "--api"). Every parser says which
# option it got instead and how to give such a value on purpose; the
# --opt=VALUE form takes anything.
swallow() { # RC OPT GOT CMD...: exit RC, "OPT needs a value ... got the option GOT ..."
  local rc=$1 opt=$2 got=$3; shift 3
  expect "$rc" "needs a value(: $opt [A-Za-z.]+)? \(got the option $got; if $got is meant as the value, write $opt=$got\)$" "$@"
  grep -qE -- "^tcpota [a-z]+: $opt needs a value" "err$N.log" || fail "the message does not start with the option: $(cat "err$N.log")"
}
swallow 2 --id --model $T device --server 127.0.0.1:1 --flash swdev --id --model m --max-attempts 1
swallow 2 --factory-version --id $T device --server 127.0.0.1:1 --flash swdev --factory-version --id x --max-attempts 1
swallow 2 --flash --quiet $T device --server 127.0.0.1:1 --flash --quiet --max-attempts 1
swallow 2 --flash --x $T device status --flash --x
swallow 2 --data --api $T serve --data --api 127.0.0.1:0
swallow 2 --listen --version $T serve --listen --version 1.0.0 img
swallow 2 --config --data $T serve --config --data x
swallow 2 --api --json $T image list --api --json
swallow 2 --model --group $T device list --model --group g
swallow 2 --key --model $T sign --key --model m --version 1 img
[ ! -e swdev ] && [ ! -e ./--model ] && [ ! -e ./--api ] && [ ! -e ./--quiet ] && [ ! -e ./--x ] ||
  fail "a refused command created a directory: $(ls -A)"
expect 2 "^tcpota serve: --data needs a value$" $T serve --data
expect 2 "^tcpota device: --id needs a value$" $T device --server 127.0.0.1:1 --flash swdev --id
# On purpose, as --opt=VALUE: taken as given, then judged as a value.
expect 2 "^tcpota serve: --max-conns: '--5' is not a number" $T serve --max-conns=--5 --version 1.0.0 img
printf 'max-conns --5\nversion 1.0.0\n' > dash.conf # a config file's value is taken as written
expect 2 "^tcpota serve: --max-conns: '--5' is not a number" $T serve --config dash.conf img
expect 2 "^tcpota serve: --quiet takes no value" $T serve --quiet=yes --version 1.0.0 img
expect 2 "^tcpota image: --timeout: '--5' is not a whole number" $T image list --timeout=--5
expect 0 "wrote device secret --odd.secret" $T keygen --device-secret --out=--odd.secret
[ -f ./--odd.secret ] || fail "keygen --out=--odd.secret wrote no ./--odd.secret: $(ls -A)"
expect 1 "device --dev: gave up after 1 attempt" $T device --server 127.0.0.1:1 --flash swdev2 --id=--dev \
  --factory-version=--f --max-attempts 1 --backoff-min-ms 10 --backoff-max-ms 10
$T device status --flash=swdev2 | grep -q '"version":"--f"' || fail "--factory-version=--f: $($T device status --flash swdev2)"
# The id it then holds is suggested in the form that gives it.
expect 2 "belongs to device --dev \(its id since it was created\), not other: give --id=--dev or leave --id out" \
  $T device --server 127.0.0.1:1 --flash swdev2 --id other --max-attempts 1
ok "an option whose value is left out takes no other option for it (device, device status, serve, its --config, fleet commands, keygen, sign); --opt=VALUE takes anything"

# An argument of any length is repeated cut short (a trial's 100,000
# characters came back as a 100 KB line), saying how long it was.
long=$(printf '1%.0s' {1..5000})
expect 2 "--version '1{48}\.\.\. \(5000 characters\)' must be 1 to 32 printable ASCII characters" \
  $T sign --key k.key --version "$long" --model esp32 img
expect 2 "bad host in '1{48}\.\.\. \(5002 characters\)'" $T device --server "$long:1" --flash d-long
expect 2 "unknown option '--x1{45}\.\.\. \(5003 characters\)'" $T image list "--x$long"
for n in $(seq $((N - 2)) "$N"); do
  [ "$(wc -c < "err$n.log")" -lt 400 ] || fail "a long argument repeated whole: $(wc -c < "err$n.log") bytes"
done
ok "a long argument is repeated cut short, with its length"

# --db-timeout is a PostgreSQL node's: refused beside a SQLite fleet's
# --data (silently ignored, it would promise what does not happen), and
# out of its range; nothing made in --data.
expect 2 "^tcpota serve: --db-timeout is for a node on PostgreSQL \(--db URI\); drop it \(a --data fleet's SQLite database is a file of its own, with nothing to time out\)$" \
  $T serve --data dt-fleet --db-timeout 5 --listen 127.0.0.1:0 --api off
expect 2 "^tcpota serve: --db-timeout: '0' is out of range: give a whole number in 1\.\.3600" \
  $T serve --db "host=/nonexistent dbname=x" --data dt-fleet --db-timeout 0 --listen 127.0.0.1:0
[ ! -e dt-fleet ] || fail "a refused --db-timeout left --data made"
ok "--db-timeout without --db, or out of range: refused, nothing made"
expect 2 "^tcpota serve: --secrets-reread is for a node on PostgreSQL \(--db URI\); drop it \(a --data fleet's one server writes every secret it holds: nothing to read again\)$" \
  $T serve --data dt-fleet --secrets-reread 5 --listen 127.0.0.1:0 --api off
expect 2 "^tcpota serve: --secrets-reread: '0' is out of range: give a whole number in 1\.\.86400" \
  $T serve --db "host=/nonexistent dbname=x" --data dt-fleet --secrets-reread 0 --listen 127.0.0.1:0
[ ! -e dt-fleet ] || fail "a refused --secrets-reread left --data made"
ok "--secrets-reread without --db, or out of range: refused, nothing made"

# A manifest given as the image (fw.bin.manifest for fw.bin): named as one,
# with the image's name (it was told to sign the manifest); also under
# another name, by its first bytes.
$T sign --key k.key $S img 2> /dev/null || fail "sign failed"
expect 2 "^tcpota serve: img\.manifest is a manifest \(tcpota sign writes it beside the image\), not an image: give the image itself \(img\)$" \
  $T serve --listen 127.0.0.1:0 --pubkey k.pub img.manifest
cp img.manifest copied
expect 2 "^tcpota serve: copied is a manifest \(tcpota sign writes it beside the image\), not an image: give the image itself$" \
  $T serve --listen 127.0.0.1:0 --version 2.0.0 copied
ok "a manifest given as the image: said so, with the image's name"

# A full disk or a closed standard output loses what was printed: exit 1,
# said (a trial: exit 0, the list or secret lost without a word).
rc=0; $T version > /dev/full 2> full.err || rc=$?
[ $rc -eq 1 ] && grep -qx 'tcpota: cannot write to the standard output: No space left on device; what it printed is lost (anything the command changed stands)' full.err ||
  fail "version > /dev/full: rc $rc $(cat full.err)"
rc=0; $T keygen --help >&- 2> full.err || rc=$?
[ $rc -eq 1 ] && grep -q '^tcpota keygen: cannot write to the standard output: it is closed' full.err ||
  fail "keygen --help >&-: rc $rc $(cat full.err)"
ok "a standard output that takes nothing (/dev/full, closed): exit 1, said"

# device rm of several IDs: one failure that is not about its ID (no
# server here) stops it, naming those not tried (a trial: the same line
# for each, naming none); more than 100 IDs are refused as such.
printf 'tok\n' > rm.tok && chmod 600 rm.tok
expect 1 "^tcpota device: stopped at a \(the error above\); not tried: b c$" \
  $T device rm a b c --api 127.0.0.1:1 --token-file rm.tok
expect 2 "^tcpota device: at most 100 arguments: 'x101' is one more; give the rest in another command$" \
  $T device rm $(seq -f 'x%g' 1 101) --api 127.0.0.1:1 --token-file rm.tok
expect 2 "^tcpota device: the device ID 'c\?x' holds a byte that is not printable ASCII: a device id is 1 to 64 printable ASCII characters$" \
  $T device rm a b "$(printf 'c\tx')" d --api 127.0.0.1:1 --token-file rm.tok
ok "device rm: stopped at a failure not about its ID, the rest named; 101 IDs, or one not printable, refused before any request"
