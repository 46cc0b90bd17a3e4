#!/usr/bin/env bash
# `make install` into a scratch DESTDIR: exactly tcpota, tcpota-proxy and
# tcpota-legacy-client land in PREFIX/bin, they run, and `make uninstall`
# removes them. BUILD_DIR is the build tree the test runs from.
source "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${BUILD_DIR:-}" ] && [ -f "$BUILD_DIR/CMakeCache.txt" ] || fail "BUILD_DIR must name a configured build tree"
command -v make > /dev/null || fail "make is not installed: apt-get install -y make"
ROOT=$WORK/root
M=(make --no-print-directory -C "$SRC" BUILD="$BUILD_DIR" JOBS=1)

# The default prefix is /usr/local and DESTDIR goes before it.
"${M[@]}" -n install DESTDIR=/x > dry.log
grep -q 'DESTDIR="/x" cmake --install .* --prefix "/usr/local"' dry.log || fail "default install: $(cat dry.log)"
ok "make install defaults to PREFIX=/usr/local and passes DESTDIR"

"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install.log 2>&1 || fail "make install failed"
BIN=$ROOT/opt/tcpota/bin
got=$(cd "$ROOT" && find . -type f -o -type l | sort | tr '\n' ' ')
want="./opt/tcpota/bin/tcpota ./opt/tcpota/bin/tcpota-legacy-client ./opt/tcpota/bin/tcpota-proxy "
[ "$got" = "$want" ] || fail "installed files: '$got', expected '$want'"
for b in tcpota tcpota-proxy tcpota-legacy-client; do [ -x "$BIN/$b" ] || fail "$b is not executable"; done
"$BIN/tcpota" --help > help.log || fail "the installed tcpota --help failed"
grep -q '^usage:' help.log || fail "the installed tcpota --help printed no usage"
"$BIN/tcpota" version | grep -q '^tcpota [0-9]' || fail "the installed tcpota version failed"
"$BIN/tcpota-proxy" --help > /dev/null 2>&1 || fail "the installed tcpota-proxy --help failed"
"$BIN/tcpota-legacy-client" --help > /dev/null 2>&1 || fail "the installed tcpota-legacy-client --help failed"
ok "make install PREFIX=/opt/tcpota DESTDIR=...: the three binaries, and they run"

"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall.log 2>&1 || fail "make uninstall failed"
[ -z "$(cd "$ROOT" && find . -type f)" ] || fail "make uninstall left files: $(find "$ROOT" -type f)"
ok "make uninstall removes them"
