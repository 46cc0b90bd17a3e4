#!/usr/bin/env bash
# Installs the Debian packages tcpota needs that this machine lacks.
# Used by `make test` and `make deps` (everything), `make demo` (--demo: the
# build's packages) and `make cluster` (--cluster: the build's, PostgreSQL and
# HAProxy); runs apt-get only when something is missing.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libevent-dev libsodium-dev libcmocka-dev libssl-dev openssl
      libsqlite3-dev libjansson-dev libpq-dev postgresql haproxy clang libclang-rt-14-dev llvm gcc-arm-none-eabi libnewlib-arm-none-eabi procps iproute2 python3
      chromium prometheus curl systemd qemu-system-x86 busybox-static sqlite3 strace)
build_pkgs=(build-essential cmake pkg-config libevent-dev libsodium-dev libcmocka-dev libssl-dev libsqlite3-dev libjansson-dev libpq-dev procps)
case "${1:-}" in
  --demo) pkgs=("${build_pkgs[@]}") ;;
  --cluster) pkgs=("${build_pkgs[@]}" postgresql haproxy python3) ;;
  "") ;;
  *) echo "usage: $0 [--demo | --cluster]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The browser tests' node and npm (tests/browser): Debian's nodejs and npm,
# unless a node with its npm is there already (e.g. NodeSource's nodejs, which
# carries npm and conflicts with Debian's npm package).
if [ -z "${1:-}" ] && ! { command -v node && command -v npm; } > /dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages and not root; run as root or install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The kernel-TLS test's guest kernel (tests/e2e/test_ktls.sh): unpacked from
# Debian's package into a cache, not installed. Without it that one test
# fails and says why; the rest runs.
if [ -z "${1:-}" ]; then
  bash "$(dirname "$0")/guest-kernel.sh" ||
    echo "deps: the guest kernel was not laid out; tests/e2e/test_ktls.sh will fail (run scripts/guest-kernel.sh)" >&2
fi
