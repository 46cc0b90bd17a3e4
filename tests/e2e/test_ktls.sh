#!/usr/bin/env bash
# Kernel TLS: where the kernel offers it, a TLS device connection's sends go
# through the kernel's encryption, and its image leaves by sendfile from
# the prebuilt frames, as in the clear (no copy through the server's memory).
# The machine a test runs on may have no `tls` module (this project's do not),
# so the test boots a small virtual machine: Debian's kernel with its tls.ko
# (scripts/guest-kernel.sh, run by `make test`), busybox, and this build's
# tcpota with its libraries, in an initramfs; qemu without a disk or a
# network card (its loopback is all it uses), emulated. Inside it: one server with an ECDSA certificate, a device that
# updates over TLS 1.3 and one held to TLS 1.2 (whose receive side the
# kernel may take as well). Each must end on the image byte-exact; the
# server must say that the kernel encrypted each connection's sends, and
# must have read the image's bytes by sendfile (/proc/PID/io, as
# test_zero_copy.sh in the clear).
here=$(cd "$(dirname "$0")" && pwd)
TCPOTA=$(readlink -f "$TCPOTA") # the test runs in its scratch folder
source "$here/lib.sh"
cd "$WORK"
KDIR=$(bash "$here/../../scripts/guest-kernel.sh" --print-dir)
[ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/modules.order" ] ||
  fail "no guest kernel in $KDIR: run scripts/guest-kernel.sh (make test does, through scripts/deps.sh)"
command -v qemu-system-x86_64 > /dev/null || fail "no qemu-system-x86_64: apt-get install qemu-system-x86 (make test does)"
BUSYBOX=$(command -v busybox) || fail "no busybox: apt-get install busybox-static (make test does)"

size=$((4 * 1024 * 1024))
make_image img $size
server_cert

# The initramfs: busybox, tcpota and every library it loads, the test's files.
ir=$WORK/ir
mkdir -p "$ir"/{bin,proc,sys,dev,tmp,etc,t}
cp "$BUSYBOX" "$ir/bin/busybox"
mkdir "$ir/mod"
while read -r m; do cp "$KDIR/$m" "$ir/mod/"; done < "$KDIR/modules.order"
cp "$KDIR/modules.order" "$ir/mod/"
OPENSSL=$(command -v openssl) || fail "no openssl: apt-get install openssl (make test does)"
cp "$TCPOTA" "$ir/t/tcpota"
cp "$OPENSSL" "$ir/t/openssl"
for lib in $(ldd "$TCPOTA" "$OPENSSL" | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u); do
  mkdir -p "$ir$(dirname "$lib")"
  cp -L "$lib" "$ir$lib"
done
cp img srv.pem srv.key "$ir/t/"
echo "127.0.0.1 localhost" > "$ir/etc/hosts"
printf 'hosts: files\n' > "$ir/etc/nsswitch.conf"
# The second device: OpenSSL's configuration caps it at TLS 1.2.
cat > "$ir/t/tls12.cnf" <<'CNF'
openssl_conf = conf
[conf]
ssl_conf = ssl
[ssl]
system_default = sys
[sys]
MaxProtocol = TLSv1.2
CNF
cat > "$ir/init" <<GUEST
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
ip link set lo up
echo
while read -r m; do insmod /mod/\$m || echo "GUEST insmod \$m failed"; done < /mod/modules.order
echo "GUEST ulp: \$(cat /proc/sys/net/ipv4/tcp_available_ulp)"
cd /t
export TCPOTA_SANITIZED=${TCPOTA_SANITIZED:-0} ASAN_OPTIONS=detect_leaks=1
./tcpota serve --listen 127.0.0.1:0 --version 2.0.0 --tls-cert srv.pem --tls-key srv.key --no-progress img 2> server.log &
srv=\$!
for i in \$(seq 200); do grep -q 'listening on' server.log && break; sleep 0.1; done
port=\$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' server.log | head -1)
io() { awk -v f="\$1:" '\$1 == f {print \$2}' /proc/\$srv/io; }
r0=\$(io rchar) c0=\$(io syscr)
./tcpota device --server localhost:\$port --flash d13 --slot-size $size --id k13 --ca srv.pem --max-attempts 1 2> d13.log
echo "GUEST device13 rc=\$?"
echo "GUEST io13 rchar=\$((\$(io rchar) - r0)) syscr=\$((\$(io syscr) - c0))"
OPENSSL_CONF=/t/tls12.cnf ./tcpota device --server localhost:\$port --flash d12 --slot-size $size --id k12 --ca srv.pem --max-attempts 1 2> d12.log
echo "GUEST device12 rc=\$?"
for d in d13 d12; do
  echo "GUEST status \$d \$(./tcpota device status --flash \$d)"
done
# A client that asks for a TLS 1.3 key update (s_client's K), then sends a
# legacy request: kernel TLS cannot answer the update, so the server ends
# the connection rather than sending on under the old key.
# (s_client takes a command from the start of what one read of its input
# gives: K goes once the handshake is done - in an emulated guest on a
# loaded machine that takes seconds - and the request a second later.)
(for i in \$(seq 200); do grep -q 'Verify return code' ku.out 2>/dev/null && break; sleep 0.1; done
 printf 'K\n'; sleep 1; printf 'req0\n\n'; sleep 2) |
  timeout 20 ./openssl s_client -connect 127.0.0.1:\$port -crlf -tls1_3 -CAfile srv.pem > ku.out 2>&1
kill -TERM \$srv; wait \$srv
echo "GUEST server rc=\$?"
sed 's/^/GUEST server.log: /' server.log
sed 's/^/GUEST d12.log: /' d12.log
sed 's/^/GUEST d13.log: /' d13.log
sed 's/^/GUEST ku.out: /' ku.out
echo "GUEST end"
poweroff -f
GUEST
chmod +x "$ir/init"
(cd "$ir" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 > "$WORK/initrd.gz") ||
  fail "could not pack the initramfs"

# Emulated, not under KVM: a nested KVM may refuse the CPU model or hang at
# boot, and the guest's work here is small (the boot takes seconds).
timeout 240 qemu-system-x86_64 -accel tcg -cpu max -m 768 -smp 1 -nic none -nographic -no-reboot \
  -kernel "$KDIR/vmlinuz" -initrd initrd.gz -append "console=ttyS0 quiet panic=-1" \
  < /dev/null > guest.log 2> qemu.log || true
accel=tcg
tr -d '\r' < guest.log > guest.txt
grep -q '^GUEST end' guest.txt || fail "the virtual machine ($accel) did not finish: $(tail -5 guest.txt) $(tail -3 qemu.log)"
g() { sed -nE "s/^GUEST $1//p" guest.txt | head -1; }

g 'ulp: ' | grep -qw tls || fail "the guest kernel offers no tls upper-layer protocol: $(g 'ulp: ')"
for v in 13 12; do
  [ "$(g "device$v rc=")" = 0 ] || fail "the TLS 1.${v#1} device failed: $(grep "^GUEST d$v.log" guest.txt | tail -3)"
  g "status d$v " | grep -q "\"sha256\":\"$(sha256sum img | cut -d' ' -f1)\"" ||
    fail "the TLS 1.${v#1} device does not run the image: $(g "status d$v ")"
done
[ "$(g 'server rc=')" = 0 ] || fail "the server exited $(g 'server rc=') on SIGTERM"
grep -q "^GUEST server.log: .*the device asked for a TLS key update, which kernel TLS cannot answer on this connection; closing" guest.txt ||
  fail "a client's TLS key update did not end its kernel TLS connection: $(grep 'GUEST ku.out' guest.txt | tail -5)"
! grep -q "^GUEST ku.out: total: " guest.txt || fail "the server answered after a key update it could not send"
kernel=$(grep -c "^GUEST server.log: .*TLS handshake done (.*): TLSv1\.[23], the kernel encrypts what it sends" guest.txt || true)
full=$(grep -c "^GUEST server.log: .*TLS handshake done" guest.txt || true)
[ "$kernel" -ge 2 ] && [ "$kernel" = "$full" ] ||
  fail "the kernel encrypted the sends of $kernel of $full TLS connections: $(grep 'GUEST server.log' guest.txt | head -5)"
for v in 1.2 1.3; do
  grep -q "^GUEST server.log: .*\] TLS handshake done (full): TLSv$v, the kernel encrypts" guest.txt ||
    fail "no full TLS $v handshake whose sends the kernel encrypted: $(grep 'handshake done' guest.txt)"
done
grep -q "^GUEST server.log: .*summary:.* $kernel sent by kernel TLS" guest.txt ||
  fail "the summary does not count $kernel connections sent by kernel TLS: $(grep summary guest.txt)"
io=$(g 'io13 ')
rchar=$(echo "$io" | sed -nE 's/.*rchar=([0-9]+).*/\1/p') syscr=$(echo "$io" | sed -nE 's/.*syscr=([0-9]+).*/\1/p')
[ "${rchar:-0}" -ge "$size" ] ||
  fail "inside kernel TLS the server read $rchar bytes for a $size-byte image: it encrypted from its own memory, not by sendfile"
[ "${syscr:-0}" -lt $((size / 65536)) ] ||
  fail "inside kernel TLS the server made $syscr read calls for a $size-byte image: not by sendfile"
ok "kernel TLS ($accel guest, $(g 'ulp: ')): TLS 1.3 and 1.2 devices byte-exact, $kernel of $full connections sent by the kernel, the image by sendfile ($rchar bytes in $syscr read calls)"
