#!/usr/bin/env bash
# `make install` into a scratch DESTDIR: exactly tcpota, tcpota-proxy and
# tcpota-legacy-client land in PREFIX/bin, they run, the systemd unit (with an
# ExecReload= for `systemctl reload`) and its config file are there and
# `systemd-analyze verify` accepts the unit, and
# `make uninstall` removes them. BUILD_DIR is the build tree the test runs from.
source "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${BUILD_DIR:-}" ] && [ -f "$BUILD_DIR/CMakeCache.txt" ] || fail "BUILD_DIR must name a configured build tree"
command -v make > /dev/null || fail "make is not installed: apt-get install -y make"
command -v systemd-analyze > /dev/null || fail "systemd-analyze is not installed: apt-get install -y systemd"
ROOT=$WORK/root
cd "$WORK" # its logs and scratch files, removed (or shown on failure) by lib.sh
M=(make --no-print-directory -C "$SRC" BUILD="$BUILD_DIR" JOBS=1)

# The default prefix is /usr/local and DESTDIR goes before it.
"${M[@]}" -n install DESTDIR=/x > dry.log
grep -q 'DESTDIR="/x" cmake --install .* --prefix "/usr/local"' dry.log || fail "default install: $(cat dry.log)"
ok "make install defaults to PREFIX=/usr/local and passes DESTDIR"

"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install.log 2>&1 || fail "make install failed"
# The installs below leave out the build `make install` asks for first: it
# is done, and checking a tree of 150 targets took 5-10 s an install.
M+=(-o build)
BIN=$ROOT/opt/tcpota/bin
got=$(cd "$ROOT" && find . -type f -o -type l | sort | tr '\n' ' ')
want="./opt/tcpota/bin/tcpota ./opt/tcpota/bin/tcpota-legacy-client ./opt/tcpota/bin/tcpota-proxy \
./opt/tcpota/etc/tcpota/tcpota.conf ./opt/tcpota/lib/systemd/system/tcpota.service "
[ "$got" = "$want" ] || fail "installed files: '$got', expected '$want'"
for b in tcpota tcpota-proxy tcpota-legacy-client; do [ -x "$BIN/$b" ] || fail "$b is not executable"; done
"$BIN/tcpota" --help > help.log || fail "the installed tcpota --help failed"
grep -q '^usage:' help.log || fail "the installed tcpota --help printed no usage"
"$BIN/tcpota" version | grep -q '^tcpota [0-9]' || fail "the installed tcpota version failed"
"$BIN/tcpota-proxy" --help > /dev/null 2>&1 || fail "the installed tcpota-proxy --help failed"
"$BIN/tcpota-legacy-client" --help > /dev/null 2>&1 || fail "the installed tcpota-legacy-client --help failed"
ok "make install PREFIX=/opt/tcpota DESTDIR=...: the three binaries, and they run"

# The unit runs the installed binary with the installed config file.
UNIT=$ROOT/opt/tcpota/lib/systemd/system/tcpota.service
CONF=$ROOT/opt/tcpota/etc/tcpota/tcpota.conf
grep -qx 'ExecStart=/opt/tcpota/bin/tcpota serve --config /opt/tcpota/etc/tcpota/tcpota.conf --data /var/lib/tcpota' "$UNIT" ||
  fail "the unit's ExecStart: $(grep ExecStart "$UNIT")"
grep -qx 'StateDirectory=tcpota' "$UNIT" || fail "the unit keeps no state in /var/lib/tcpota"
grep -qx 'DynamicUser=yes' "$UNIT" || fail "the unit does not run as a user of its own"
# Type=notify (server/notify.h; e2e_notify checks what the server sends):
# started once it listens, a reload not sent before then.
grep -qx 'Type=notify' "$UNIT" || fail "the unit's Type: $(grep '^Type=' "$UNIT")"
# `systemctl reload tcpota` (docs/operations.md) needs an ExecReload= that
# sends SIGHUP to the server (before, the unit had none and reload failed).
grep -qx 'ExecReload=/bin/kill -HUP \$MAINPID' "$UNIT" || fail "the unit's ExecReload: '$(grep ExecReload "$UNIT")'"
# systemd-analyze checks the unit against this host's systemd: every key
# known, ExecStart an executable. Outside the DESTDIR the binary is not at
# /opt/tcpota/bin yet, so the copy it checks has DESTDIR put before the
# install paths, as a package manager would unpack them.
mkdir -p verify
sed "s|/opt/tcpota/|$ROOT/opt/tcpota/|g" "$UNIT" > verify/tcpota.service
systemd-analyze verify verify/tcpota.service > verify.log 2>&1 || fail "systemd-analyze verify: $(cat verify.log)"
[ ! -s verify.log ] || fail "systemd-analyze verify warned: $(cat verify.log)"
ok "systemd-analyze verify accepts the installed tcpota.service, and it has ExecReload="

# The database's password (docs/operations.md): the unit's DynamicUser= has
# no ~/.pgpass and the config file is 0644, so the unit and the config show
# the drop-in that hands a pgpass file over (before, nothing said how). The
# unit's commented lines, as a drop-in beside the checked copy, are accepted
# by systemd-analyze (keys known, the %d specifier resolved).
sed -n 's/^#\(LoadCredential=pgpass:\|Environment=PGPASSFILE=\)/\1/p' "$UNIT" > pgpass.conf
[ "$(cat pgpass.conf)" = "$(printf 'LoadCredential=pgpass:/etc/tcpota/pgpass\nEnvironment=PGPASSFILE=%%d/pgpass')" ] ||
  fail "the unit shows no pgpass drop-in: '$(cat pgpass.conf)'"
grep -q 'Environment=PGPASSFILE=%d/pgpass' "$CONF" || fail "tcpota.conf's db setting does not say where its password goes"
! grep -qiE '^#?db .*(password=|://[^/@]*:[^/@]*@)' "$CONF" || fail "tcpota.conf (0644) shows a password in db"
mkdir -p verify/tcpota.service.d
{ echo '[Service]'; cat pgpass.conf; } > verify/tcpota.service.d/pgpass.conf
systemd-analyze verify verify/tcpota.service > verify-pg.log 2>&1 || fail "systemd-analyze verify, pgpass drop-in: $(cat verify-pg.log)"
[ ! -s verify-pg.log ] || fail "systemd-analyze verify warned about the pgpass drop-in: $(cat verify-pg.log)"
ok "the unit and tcpota.conf show the pgpass drop-in, and systemd-analyze verify accepts it"

# The shipped config file documents every setting commented out; each one,
# uncommented, is a line `tcpota serve --config` takes.
grep -q '^#listen ' "$CONF" || fail "the installed tcpota.conf documents no listen"
sed -n 's/^#\([a-z][a-z-]*\)\( .*\)\{0,1\}$/\1\2/p' "$CONF" | grep -v '^pubkey ' > all.conf
[ "$(wc -l < all.conf)" -ge 10 ] || fail "too few settings in tcpota.conf: $(cat all.conf)"
"$BIN/tcpota" serve --config all.conf --help > /dev/null 2> conf.log || fail "the shipped settings, uncommented: $(cat conf.log)"
ok "every setting in the installed tcpota.conf is one serve --config takes"

# ... and it lists every option the service's fleet mode takes: each option
# of the one list a config file may hold (cli/serve_config.c) is in the
# file, or fleet mode refuses it (single-image mode's), or is one of these:
# data (the unit gives it), progress (the default; no-progress is listed).
# Before, the file lacked tls-ticket-key, proxy-protocol, require-auth and
# more.
opts=$(grep -oE '\{"[a-z][a-z-]*", [01]\}' "$SRC/cli/serve_config.c" | tr -d '{}",' | tr ' ' ':')
[ "$(echo "$opts" | wc -l)" -ge 25 ] || fail "too few options read from cli/serve_config.c: $opts"
for ov in $opts; do
  o=${ov%:*}
  grep -qE "^#?$o( |\$)" "$CONF" && continue
  case $o in data | progress) continue ;; esac
  val=(); [ "${ov#*:}" = 1 ] && val=(2)
  rc=0
  timeout 10 "$BIN/tcpota" serve --data "$WORK/fleet-opt" --api off --listen 127.0.0.1:0 "--$o" "${val[@]}" \
    > opt.log 2>&1 || rc=$?
  [ $rc -eq 2 ] && grep -q -- "--$o" opt.log ||
    fail "tcpota.conf does not list '$o', which fleet mode takes (exit $rc: $(head -3 opt.log))"
done
ok "the installed tcpota.conf lists every serve option of fleet mode"

# Installing again over the config file as shipped, never edited: it is
# ours, replaced and then removed by uninstall (before: the second install
# kept it as "the operator's" and uninstall left it behind).
"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install1b.log 2>&1 || fail "make install (twice) failed"
! grep -q 'Kept:' install1b.log || fail "make install kept the unedited tcpota.conf: $(grep Kept: install1b.log)"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall1b.log 2>&1 || fail "make uninstall (after two installs) failed"
[ -z "$(cd "$ROOT" && find . -type f)" ] || fail "make install twice, then uninstall, left: $(cd "$ROOT" && find . -type f)"
ok "make install twice then uninstall: the unedited tcpota.conf goes too"

# An edited config file is the operator's: uninstall keeps it, even when
# the install that wrote it is the last one (it is in the manifest).
"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install1c.log 2>&1 || fail "make install (again) failed"
echo "quiet" >> "$CONF"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall1c.log 2>&1 || fail "make uninstall failed"
[ "$(cd "$ROOT" && find . -type f)" = ./opt/tcpota/etc/tcpota/tcpota.conf ] && [ "$(tail -1 "$CONF")" = quiet ] ||
  fail "make uninstall after an edit: left '$(cd "$ROOT" && find . -type f)'; $(cat uninstall1c.log)"
grep -q "Kept: $CONF (edited" uninstall1c.log || fail "make uninstall did not say it kept the edited file: $(cat uninstall1c.log)"
ok "make uninstall keeps a tcpota.conf edited since its install, and says so"

# Installing again keeps a config file the operator edited.
"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install1d.log 2>&1 || fail "make install (again) failed"
"${M[@]}" install PREFIX=/opt/tcpota DESTDIR="$ROOT" > install2.log 2>&1 || fail "make install (again) failed"
[ "$(tail -1 "$CONF")" = quiet ] || fail "make install replaced the operator's tcpota.conf"
ok "make install again keeps the operator's tcpota.conf"

# The last install kept the edited file ("Kept:"), so it wrote no copy of
# its own; uninstall still keeps it and says so (before, that install left it
# out of install_manifest.txt and uninstall said nothing about it).
grep -q "Kept: $CONF (edited" install2.log || fail "make install did not say it kept the edited file: $(cat install2.log)"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall.log 2>&1 || fail "make uninstall failed"
got=$(cd "$ROOT" && find . -type f)
[ "$got" = ./opt/tcpota/etc/tcpota/tcpota.conf ] || fail "make uninstall left: '$got' (only the edited tcpota.conf should stay)"
grep -q "Kept: $CONF (edited" uninstall.log ||
  fail "make uninstall after an install that kept the edited file did not say it kept it: $(cat uninstall.log)"
rm "$CONF"
ok "make uninstall removes them, but for the config file the operator edited, and says so"

# PREFIX=/usr (a distribution's layout): the config goes to /etc.
"${M[@]}" install PREFIX=/usr DESTDIR="$ROOT" > install3.log 2>&1 || fail "make install PREFIX=/usr failed"
[ -f "$ROOT/etc/tcpota/tcpota.conf" ] || fail "PREFIX=/usr: no /etc/tcpota/tcpota.conf"
grep -qx 'ExecStart=/usr/bin/tcpota serve --config /etc/tcpota/tcpota.conf --data /var/lib/tcpota' \
  "$ROOT/usr/lib/systemd/system/tcpota.service" || fail "PREFIX=/usr: the unit's ExecStart"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall3.log 2>&1 || fail "make uninstall (PREFIX=/usr) failed"
[ -z "$(cd "$ROOT" && find . -type f)" ] || fail "make uninstall left files: $(find "$ROOT" -type f)"
ok "make install PREFIX=/usr: /usr/bin, /usr/lib/systemd/system and /etc/tcpota"

# A relative PREFIX is made absolute from the source tree (as cmake took
# it): the unit names absolute paths, which systemd requires (before:
# ExecStart=pfxrel/bin/tcpota, refused by systemd).
"${M[@]}" install PREFIX=rel/pfx DESTDIR="$ROOT" > install5.log 2>&1 || fail "make install PREFIX=rel/pfx failed: $(cat install5.log)"
grep -qx "ExecStart=$SRC/rel/pfx/bin/tcpota serve --config $SRC/rel/pfx/etc/tcpota/tcpota.conf --data /var/lib/tcpota" \
  "$ROOT$SRC/rel/pfx/lib/systemd/system/tcpota.service" || fail "a relative PREFIX: $(grep ExecStart "$ROOT$SRC"/rel/pfx/lib/systemd/system/tcpota.service)"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall5.log 2>&1 || fail "make uninstall (relative PREFIX) failed"
[ -z "$(cd "$ROOT" && find . -type f)" ] || fail "make uninstall left files: $(find "$ROOT" -type f)"
# A PREFIX with a space: refused before a file is copied (the unit's
# ExecStart would split it: systemd could not start it).
rc=0; "${M[@]}" install "PREFIX=/opt/my dir" DESTDIR="$ROOT" > install7.log 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "make install: the prefix '/opt/my dir' holds a space or a tab, which the systemd unit's ExecStart would split" install7.log &&
  [ -z "$(cd "$ROOT" && find . -type f)" ] || fail "a PREFIX with a space: rc $rc: $(cat install7.log)"
# A directory where the config file goes: said, with what to do.
mkdir -p "$ROOT/usr/x/etc/tcpota/tcpota.conf"
rc=0; "${M[@]}" install PREFIX=/usr/x DESTDIR="$ROOT" > install6.log 2>&1 || rc=$?
# (CMake wraps its message's lines.)
[ $rc -ne 0 ] && tr -s ' \n' '  ' < install6.log | grep -qF "$ROOT/usr/x/etc/tcpota/tcpota.conf is there and is not a file (a directory?): the config file is installed at that path; move it away, or give another PREFIX" ||
  fail "a directory where the config goes: rc $rc: $(cat install6.log)"
# ... before a file is written (before: the programs and the unit were in
# place, and make uninstall, reading the last install's list, missed them).
[ -z "$(find "$ROOT/usr/x" -type f)" ] || fail "a refused install left files: $(find "$ROOT/usr/x" -type f)"
"${M[@]}" uninstall DESTDIR="$ROOT" > /dev/null 2>&1 || true
rm -rf "$ROOT/usr/x"
ok "a relative PREFIX is made absolute; a directory where the config goes is said"

# An uninstall that finds none of the last install's files (given another
# DESTDIR; the manifest keeps only the last install): said, exit non-zero
# (before: nothing printed, exit 0, every file left in place).
"${M[@]}" install PREFIX=/usr DESTDIR="$ROOT" > install4.log 2>&1 || fail "make install failed"
rc=0; "${M[@]}" uninstall DESTDIR="$ROOT-elsewhere" > uninstall4.log 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "make uninstall: none of the files of the last install from .* is there (DESTDIR='$ROOT-elsewhere'; the first: /usr/lib/systemd/system/tcpota.service): uninstalled already, or installed with another DESTDIR" uninstall4.log ||
  fail "an uninstall with another DESTDIR: rc $rc: $(cat uninstall4.log)"
[ -f "$ROOT/usr/bin/tcpota" ] || fail "an uninstall with another DESTDIR removed the installed files"
"${M[@]}" uninstall DESTDIR="$ROOT" > uninstall4b.log 2>&1 || fail "make uninstall failed: $(cat uninstall4b.log)"
ok "make uninstall that finds none of the installed files says so"
