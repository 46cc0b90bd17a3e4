#!/usr/bin/env bash
# Lays out a kernel with the `tls` module for the kernel-TLS test's virtual
# machine (tests/e2e/test_ktls.sh), since the kernel a test runs on may not
# offer kernel TLS (this project's own machines do not). From Debian's
# linux-image package, unpacked into a cache, not installed: the kernel
# (vmlinuz), its tls module and the modules of the AES-GCM it encrypts with
# (the kernel asks for them by name, through a modprobe the guest does not
# have), in the order they load (modules.order); nothing else (the package
# holds ~400 MB of modules). Run by scripts/deps.sh, so by `make test`.
# `guest-kernel.sh --print-dir` prints where it lays them out (the test's
# TCPOTA_GUEST_KERNEL, else root's /var/cache, else the user's cache).
set -euo pipefail
system=/var/cache/tcpota/guest-kernel
if [ -n "${TCPOTA_GUEST_KERNEL:-}" ]; then
  dir=$TCPOTA_GUEST_KERNEL
elif [ "$(id -u)" -eq 0 ]; then
  dir=$system
else
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/tcpota/guest-kernel
  # One root laid out (sudo make deps) serves every user.
  [ -s "$dir/vmlinuz" ] || [ ! -s "$system/vmlinuz" ] || dir=$system
fi
if [ "${1:-}" = --print-dir ]; then
  echo "$dir"
  exit 0
fi
# gf128mul before ghash-generic, which needs it; gcm(aes) takes ctr and ghash.
mods=(crypto/gf128mul crypto/ghash-generic crypto/ctr crypto/gcm net/tls/tls)
[ -s "$dir/vmlinuz" ] && [ -s "$dir/modules.order" ] && exit 0
if [ "$(dpkg --print-architecture)" != amd64 ]; then
  echo "guest-kernel: only amd64 is laid out (this machine: $(dpkg --print-architecture)); the kernel-TLS test fails here" >&2
  exit 1
fi
pkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
name=$(pkg)
if [ -z "$name" ] && [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq
  name=$(pkg)
fi
[ -n "$name" ] || { echo "guest-kernel: apt knows no linux-image-amd64 package (run apt-get update as root)" >&2; exit 1; }
echo "guest-kernel: unpacking $name into $dir"
tmp=$(mktemp -d) # 0700: no one else may swap the package before it is unpacked
trap 'rm -rf "$tmp"' EXIT
# apt-get download writes into the current folder; as this user, not _apt,
# which cannot enter a 0700 folder. A stale package list (the kernel moved
# on, a 404) gets one apt-get update and one more try.
get() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "$name"); }
if ! get; then
  [ "$(id -u)" -eq 0 ] || { echo "guest-kernel: cannot download $name (run as root for apt-get update)" >&2; exit 1; }
  apt-get update -qq
  name=$(pkg)
  get
fi
debs=("$tmp"/*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] && [ ! -L "${debs[0]}" ] ||
  { echo "guest-kernel: expected one package in $tmp, found: ${debs[*]}" >&2; exit 1; }
dpkg-deb -x "${debs[0]}" "$tmp/x"
rm -rf "$dir/new"
mkdir -p "$dir/new"
# Debian 12 ships /lib/modules, later releases /usr/lib/modules.
moddir=$(find "$tmp/x" -maxdepth 4 -type d -path '*lib/modules/*' -name '[0-9]*' | head -1)
[ -n "$moddir" ] || { echo "guest-kernel: $name has no lib/modules" >&2; exit 1; }
for m in "${mods[@]}"; do
  # Built into this kernel: nothing to load.
  grep -q "/$m.ko\$" "$moddir/modules.builtin" 2>/dev/null && continue
  ko=$(find "$moddir/kernel" -path "*/$m.ko*" -type f | head -1 || true)
  [ -n "$ko" ] || { echo "guest-kernel: $name has no module $m" >&2; exit 1; }
  out=$dir/new/$(basename "$m").ko
  case $ko in
    *.xz) xz -dc "$ko" > "$out" ;;
    *.zst) zstd -qdc "$ko" > "$out" ;;
    *) cp "$ko" "$out" ;;
  esac
  basename "$out" >> "$dir/new/modules.order"
done
vml=("$tmp"/x/boot/vmlinuz-*)
[ -f "${vml[0]}" ] && [ ! -L "${vml[0]}" ] || { echo "guest-kernel: $name has no /boot/vmlinuz" >&2; exit 1; }
cp "${vml[0]}" "$dir/new/vmlinuz"
echo "$name" > "$dir/new/package"
rm -f "$dir"/*.ko "$dir/vmlinuz" "$dir/modules.order" "$dir/package"
mv "$dir"/new/* "$dir/"
rmdir "$dir/new"
