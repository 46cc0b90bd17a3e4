#!/usr/bin/env bash
# `tcpota serve --config FILE` (cli/serve_config.c): a flag from the file
# takes effect, the same flag on the command line wins, a bad line is
# reported with FILE:LINE, a FIFO or a directory is refused at once, and
# every option of `serve --help` can be written in a config file.
source "$(dirname "$0")/lib.sh"
cd "$WORK"
make_image img.bin 4096

# start_serve LOG ARGS...: image mode on loopback; waits for the listen line.
start_serve() {
  local log=$1
  shift
  "$TCPOTA" serve "$@" img.bin 2> "$log" &
  PIDS+=($!)
  wait_line "$log" 'listening on'
}
stop_serve() {
  kill -TERM "${PIDS[-1]}"
  wait "${PIDS[-1]}" || fail "the server exited $? on SIGTERM"
}

printf '# a comment\n\n  listen 127.0.0.1:0\nversion 1.0.0\nlog-format json\nno-progress\n' > serve.conf
start_serve file.log --config serve.conf
grep 'listening on' file.log | grep -q '^{"time":"' || fail "log-format json from the file: $(cat file.log)"
stop_serve
ok "a flag from the config file takes effect (log-format json)"

start_serve cmdline.log --config serve.conf --log-format text
grep 'listening on' cmdline.log | grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T.* tcpota serve: ' ||
  fail "--log-format text on the command line: $(cat cmdline.log)"
# ... and says so, naming the file's line it overrides (a trial's 'data'
# line went silently); the lines it does not override are not named.
grep -qx 'tcpota serve: note: --log-format on the command line overrides line 5 of serve.conf' cmdline.log ||
  fail "no note of the overridden line: $(head -3 cmdline.log)"
[ "$(grep -c 'overrides line' cmdline.log)" = 1 ] || fail "other lines said overridden: $(grep 'overrides' cmdline.log)"
stop_serve
# The opposite flag sets the same thing: --progress against the file's
# no-progress line is named too (before: nothing said), as a JSON line under
# the file's log-format json (before: bare text among the JSON).
start_serve progress.log --config serve.conf --progress
grep -q '^{"time":"[^"]*","level":"info","msg":"note: --progress on the command line overrides line 6 of serve.conf"}$' progress.log ||
  fail "no note of --progress over no-progress: $(head -3 progress.log)"
[ "$(grep -c 'overrides line' progress.log)" = 1 ] || fail "other lines said overridden: $(grep 'overrides' progress.log)"
stop_serve
# An option serve does not take overrides nothing: no note before its refusal
# (a trial: '--no-allow-legacy on the command line overrides line 1').
printf 'allow-legacy\n' > legacy.conf
rc=0; timeout 10 "$TCPOTA" serve --config legacy.conf --no-allow-legacy img.bin > /dev/null 2> nolegacy.log || rc=$?
[ $rc -eq 2 ] && grep -qx 'tcpota serve: unknown option --no-allow-legacy; see tcpota serve --help' nolegacy.log &&
  ! grep -q overrides nolegacy.log || fail "an unknown --no- option: rc $rc: $(cat nolegacy.log)"
ok "the command line wins over the config file (--log-format text, --progress), and says so (not for an option serve does not take)"

# expect_refused NAME CONTENT REGEX: a config file with CONTENT is refused
# (exit 2) with a message matching REGEX.
expect_refused() {
  printf %b "$2" > "$1.conf"
  local rc=0
  timeout 10 "$TCPOTA" serve --config "$1.conf" img.bin > /dev/null 2> "$1.log" || rc=$?
  [ $rc -eq 2 ] || fail "$1: exit $rc, expected 2: $(cat "$1.log")"
  grep -qE "$3" "$1.log" || fail "$1: no /$3/ in: $(cat "$1.log")"
}
expect_refused unknown '# x\nversion 1.0.0\nlisten-port 80\n' 'unknown.conf:3: unknown option .listen-port.'
# A typo, or the name in capitals: the option meant is named (a trial
# read only 'unknown option'); none where two are as near, or none is.
expect_refused typo 'lsiten 127.0.0.1:0\n' "typo.conf:1: unknown option 'lsiten' \\(did you mean 'listen'\\?\\); the options are those of"
expect_refused caps 'MAX-CONNS 5\n' "caps.conf:1: unknown option 'MAX-CONNS' \\(did you mean 'max-conns'\\?\\)"
expect_refused swapcaps 'LSITEN 127.0.0.1:0\n' "swapcaps.conf:1: unknown option 'LSITEN' \\(did you mean 'listen'\\?\\)"
expect_refused far 'frobnicate 5\n' "far.conf:1: unknown option 'frobnicate'; the options"
# A longer name that starts with an option: that option (a trial got none).
expect_refused longer 'tls-certificate srv.pem\n' "longer.conf:1: unknown option 'tls-certificate' \\(did you mean 'tls-cert'\\?\\)"
expect_refused dashed 'pubkey-file k.pub\n' "dashed.conf:1: unknown option 'pubkey-file' \\(did you mean 'pubkey'\\?\\)"
expect_refused notdata 'database x\n' "notdata.conf:1: unknown option 'database'; the options"
# A name longer than any option's table of distances (40): no suggestion,
# no write past the table (ASan); nor two equally near ones.
long=$(printf 'x%.0s' {1..300})
expect_refused longname "$long 1\n" "longname.conf:1: unknown option '$long'; the options"
rc=0; timeout 10 "$TCPOTA" serve "--$long" img.bin > /dev/null 2> longflag.log || rc=$?
[ $rc -eq 2 ] && grep -q "unknown option --$long" longflag.log || fail "--$long: exit $rc: $(cat longflag.log)"
expect_refused tie 'tls-cez x\n' "tie.conf:1: unknown option 'tls-cez'; the options" # tls-cert, tls-key, tls-ca: 2 edits each
expect_refused dashes '--version 1.0.0\n' 'dashes.conf:1: write the option as .version., without the leading dashes'
expect_refused equals 'version=1.0.0\n' "equals.conf:1: write 'version 1.0.0' \\(a space between the option and its value, not '='\\)"
expect_refused novalue 'version 1.0.0\nlisten\n' "novalue.conf:2: 'listen' needs a value"
expect_refused switchvalue 'quiet yes\n' "switchvalue.conf:1: 'quiet' is a switch and takes no value"
expect_refused nested 'config other.conf\n' 'nested.conf:1: a config file cannot name another'
expect_refused badvalue 'version 1.0.0\nmax-conns lots\n' "max-conns: 'lots' is not a number.*"
# The file's own flag refused: its line is named (a trial: "may be set
# there" left the operator to look), and a comment after a value is said
# to need a line of its own.
grep -q '^tcpota serve: note: that is line 2 of badvalue.conf$' badvalue.log || fail "a bad value from the file: no line: $(cat badvalue.log)"
expect_refused trailing '# the limit\nversion 1.0.0\n\nmax-conns 5 # five\n' "max-conns: '5 # five' is not a number"
grep -q '^tcpota serve: note: that is line 4 of trailing.conf (a comment takes a line of its own, starting with #)$' trailing.log ||
  fail "a comment after a value: $(cat trailing.log)"
# A relative path that the config file's folder makes too long is refused
# as such (cut short, it could name another file: a mutation review).
python3 -c "print('pubkey ' + 'a/' * 2040 + 'k.pub')" > longpath.conf
rc=0; timeout 10 "$TCPOTA" serve --config "$PWD/longpath.conf" img.bin > /dev/null 2> longpath.log || rc=$?
[ $rc -eq 2 ] && grep -q "longpath.conf:1: the path, with the config file's folder before it, is too long" longpath.log ||
  fail "a path made too long by the config's folder: rc $rc: $(cut -c1-300 longpath.log)"
# A bad line the command line gives again still stops the start: said so
# (a trial read "overrides line 2" and then "that is line 2" as a contradiction).
rc=0; timeout 10 "$TCPOTA" serve --config badvalue.conf --max-conns 5 img.bin > /dev/null 2> badover.log || rc=$?
[ $rc -eq 2 ] && grep -q '^tcpota serve: note: that is line 2 of badvalue.conf; the command line gives that option again, but each line of the file must be valid too$' badover.log ||
  fail "a bad line the command line overrides: rc $rc: $(cat badover.log)"
# A binary file, and a NUL or an escape inside a line: refused, and the
# bytes are not echoed to the terminal (before: 'unknown option' with the
# file's bytes; a NUL silently cut the value).
{ printf '\001'; head -c 3000 /dev/urandom | tr -d '\n'; } > binary.conf
rc=0; "$TCPOTA" serve --config binary.conf img.bin > /dev/null 2> binary.log || rc=$?
[ $rc -eq 2 ] || fail "a binary config file: exit $rc"
grep -q 'binary.conf:1: byte 1 of the line is 0x01, which a config file cannot hold; is this a config file' binary.log ||
  fail "a binary config file: $(cat -v binary.log)"
[ "$(wc -l < binary.log)" -eq 1 ] && [ "$(wc -c < binary.log)" -lt 200 ] || fail "the file's bytes were echoed: $(cat -v binary.log)"
expect_refused nul 'listen 127.0.0.1:0\nversion 1.0.0\0garbage\n' 'nul.conf:2: byte 14 of the line is 0x00'
expect_refused esc 'version 1.0\x1b[31m\n' 'esc.conf:1: byte 12 of the line is 0x1b'
expect_refused del 'version 1.0.0\x7f\n' 'del.conf:1: byte 14 of the line is 0x7f'
# A carriage return inside a line (an old Mac editor's line end): refused,
# said in words; echoed raw it sent the cursor back over the message.
expect_refused cr 'listen 127.0.0.1:0\rno-progress\r\n' 'cr.conf:1: byte 19 of the line is a carriage return \(0x0d\) before its end: lines end with a newline \(or CR LF\)'
[ "$(tr -cd '\r' < cr.log | wc -c)" = 0 ] || fail "a CR was echoed: $(cat -v cr.log)"
# More lines than a config file holds (1024): refused at the first one past
# it, not written past the table that keeps the file's flags.
printf 'quiet\n%.0s' $(seq 1100) > long.conf
rc=0; timeout 10 "$TCPOTA" serve --config long.conf img.bin > /dev/null 2> long.log || rc=$?
[ $rc -eq 2 ] && grep -q '^tcpota serve: long.conf:1025: more than 1024 lines; is this a config file?$' long.log ||
  fail "a config file of 1100 lines: rc $rc: $(head -3 long.log)"
# Two config files: refused, not the first one dropped in silence.
rc=0; timeout 10 "$TCPOTA" serve --config del.conf --config=long.conf img.bin > /dev/null 2> twice.log || rc=$?
[ $rc -eq 2 ] && grep -qx 'tcpota serve: --config given twice; give one config file' twice.log ||
  fail "--config twice: rc $rc: $(cat twice.log)"
printf 'listen 127.0.0.1:0\r\nversion 1.0.0\r\r\n\tno-progress\n' > crlf.conf # CR CR LF: converted twice
start_serve crlf.log --config crlf.conf
stop_serve
ok "bad lines are refused with FILE:LINE and what to write instead"

# A relative path in a config file is the file's folder's, not the current
# folder's (under the service that is /: a trial's 'tls-cert rc.pem' beside
# the file was not found); a missing one is named with that folder.
mkdir -p etc && (cd etc && server_cert)
printf 'listen 127.0.0.1:0\nversion 1.0.0\ntls-cert srv.pem\ntls-key srv.key\n' > etc/rel.conf
start_serve rel.log --config etc/rel.conf
grep -q 'devices over TLS' rel.log || fail "relative TLS files beside the config file: $(grep 'listening on' rel.log)"
stop_serve
printf 'listen 127.0.0.1:0\nversion 1.0.0\ntls-cert none.pem\ntls-key srv.key\n' > etc/miss.conf
rc=0; timeout 10 "$TCPOTA" serve --config etc/miss.conf img.bin > /dev/null 2> miss.log || rc=$?
[ $rc -eq 2 ] && grep -q -- '--tls-cert: cannot open etc/none.pem' miss.log || fail "a missing relative file: rc $rc: $(cat miss.log)"
ok "a relative path in a config file is taken from the file's folder"

# Windows' Notepad starts a UTF-8 file with a byte-order mark: it was read
# as part of the first option ("unknown option 'listen'", the mark unseen).
printf '\xef\xbb\xbflisten 127.0.0.1:0\r\nversion 1.0.0\r\n' > bom.conf
start_serve bom.log --config bom.conf
stop_serve
# Not elsewhere: there it is named, bytes an editor does not show included.
expect_refused bom2 'version 1.0.0\n\xef\xbb\xbflisten 127.0.0.1:0\n' "bom2.conf:2: unknown option '\\\\xef\\\\xbb\\\\xbflisten'"
# A byte counted as the file holds it, the skipped mark included.
expect_refused bom3 '\xef\xbb\xbflisten\x01 127.0.0.1:0\n' 'bom3.conf:1: byte 10 of the line is 0x01'
ok "a UTF-8 byte-order mark at the start of the config file is skipped (only there)"

mkfifo fifo.conf
rc=0; timeout 10 "$TCPOTA" serve --config fifo.conf img.bin 2> fifo.log || rc=$?
[ $rc -eq 2 ] && grep -q 'fifo.conf is not a regular file (it is a FIFO)' fifo.log || fail "FIFO: exit $rc: $(cat fifo.log)"
rc=0; "$TCPOTA" serve --config . img.bin 2> dir.log || rc=$?
[ $rc -eq 2 ] && grep -q 'is not a regular file (it is a directory)' dir.log || fail "directory: exit $rc: $(cat dir.log)"
rc=0; "$TCPOTA" serve --config missing.conf img.bin 2> missing.log || rc=$?
[ $rc -eq 2 ] && grep -q 'cannot open missing.conf' missing.log || fail "missing: exit $rc: $(cat missing.log)"
ok "a FIFO, a directory or a missing config file is refused at once"

# Fleet mode's listeners each need a port: two on one port are named, and
# nothing is created (before: 'address in use, perhaps another program').
refused_listeners() {
  local rc=0
  timeout 10 "$TCPOTA" serve --data fleet "$@" > /dev/null 2> listen.log || rc=$?
  [ $rc -eq 2 ] || fail "$*: exit $rc: $(cat listen.log)"
}
refused_listeners --listen 127.0.0.1:18600 --api 127.0.0.1:18600
grep -q -- '--listen 127.0.0.1:18600 and --api 127.0.0.1:18600 take the same port; give each its own port' listen.log ||
  fail "same --listen and --api: $(cat listen.log)"
refused_listeners --listen 0.0.0.0:18601 --api 127.0.0.1:18602 --ota-listen 127.0.0.1:18601
grep -q -- '--listen 0.0.0.0:18601 and --ota-listen 127.0.0.1:18601 take the same port' listen.log ||
  fail "a wildcard --listen and --ota-listen: $(cat listen.log)"
refused_listeners --listen 127.0.0.1:0 --api 127.0.0.1:18603 --ota-listen 127.0.0.1:18603
grep -q -- '--api 127.0.0.1:18603 and --ota-listen 127.0.0.1:18603 take the same port' listen.log ||
  fail "same --api and --ota-listen: $(cat listen.log)"
refused_listeners --listen '[::1]:18604' --api '[::1]:18604'
grep -qF -- '--listen [::1]:18604 and --api [::1]:18604 take the same port' listen.log ||
  fail "IPv6 listeners are not named as typed: $(cat listen.log)"
[ ! -e fleet ] || fail "a refused start created the data directory"
ok "fleet listeners on one port are named, before anything is created"

# Single-image mode has no API: a fleet-only flag is refused, not ignored
# (before: --api and --max-image started without a word).
for flags in "--api 127.0.0.1:0" "--max-image 5" "--ota-listen 127.0.0.1:0" "--http-host a.example"; do
  rc=0
  timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --version 2.0.0 $flags img.bin > /dev/null 2> fleetonly.log || rc=$?
  [ $rc -eq 2 ] && grep -q -- "${flags% *} is a fleet-mode flag .*; it needs --data DIR" fleetonly.log ||
    fail "$flags without --data: exit $rc: $(cat fleetonly.log)"
done
ok "--api, --max-image, --ota-listen and --http-host without --data: exit 2, saying they need --data DIR"
rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --data otaoff-data --ota-listen off > /dev/null 2> otaoff.log || rc=$?
[ $rc -eq 2 ] && grep -q -- "--ota-listen takes HOST:PORT, not off: without it the HTTP downloads are served on the API's listener" otaoff.log &&
  [ ! -e otaoff-data ] || fail "--ota-listen off: exit $rc: $(cat otaoff.log)"
ok "--ota-listen off: exit 2, saying where downloads go without it"

# An empty --version: one error, not first a warning about what it means.
rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --version '' img.bin > /dev/null 2> emptyver.log || rc=$?
[ $rc -eq 2 ] && grep -q -- "--version '' must be 1 to 32 printable ASCII characters" emptyver.log &&
  [ "$(wc -l < emptyver.log)" -eq 1 ] || fail "--version '': exit $rc: $(cat emptyver.log)"
ok "--version '': exit 2 with the length error alone"

# The note that a config file's flag may be the one refused: when the
# refused option came from the file, or from a check across options; not
# when the command line's own option was refused (a trial was sent looking).
printf 'quiet\n' > quiet.conf
printf 'idle-timeout 0\n' > zero.conf
rc=0; "$TCPOTA" serve --config quiet.conf --idle-timeout 0 img.bin 2> note1.log || rc=$?
[ $rc -eq 2 ] && grep -q "idle-timeout: '0' is out of range" note1.log && ! grep -q "note: the flags of the --config" note1.log ||
  fail "a bad command-line option beside a config file: rc $rc: $(cat note1.log)"
! grep -q "note: quiet.conf gives" note1.log || fail "the file's lines named for a command-line option: $(cat note1.log)"
rc=0; "$TCPOTA" serve --config zero.conf img.bin 2> note2.log || rc=$?
[ $rc -eq 2 ] && grep -q "note: that is line 1 of zero.conf" note2.log ||
  fail "a bad option of the config file: rc $rc: $(cat note2.log)"
# A check across options (here one the file gives alone): the file's
# options are named with their lines (before: "may be set there").
printf '# TLS\ntls-cert nowhere.pem\nquiet\n' > cross.conf
rc=0; "$TCPOTA" serve --config cross.conf --version 1.0.0 img.bin 2> note3.log || rc=$?
[ $rc -eq 2 ] && grep -qx "tcpota serve: note: cross.conf gives --tls-cert (line 2), --quiet (line 3); the option named above may be one of them" note3.log ||
  fail "a check across options with a config file: rc $rc: $(cat note3.log)"
ok "the config file's note only when its flag may be the one refused, with its line when it is"

# TLS takes a certificate and its key together, in fleet mode too (with the
# key alone it would start in plaintext); --require-auth needs the secrets
# it checks. Each is refused at once, before anything is created.
refused_flags() { # refused_flags TEXT ARGS...: exit 2, saying TEXT
  local text=$1 rc=0
  shift
  timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 "$@" > /dev/null 2> refused.log || rc=$?
  [ $rc -eq 2 ] && grep -q -- "$text" refused.log || fail "$*: exit $rc: $(cat refused.log)"
}
refused_flags '--tls-cert and --tls-key go together: give --tls-cert CERT.pem (the certificate of that key) too$' --data fleet-tls --api off --tls-key img.bin
refused_flags "--tls-cert and --tls-key go together: give --tls-key KEY.pem (the certificate's private key) too$" --data fleet-tls --api off --tls-cert img.bin
refused_flags '--tls-cert and --tls-key go together: give --tls-cert CERT.pem' --version 2.0.0 --tls-key img.bin img.bin
refused_flags '--tls-cert and --tls-key go together: give --tls-key KEY.pem' --version 2.0.0 --tls-cert img.bin img.bin
# --db without --data would be ignored by image mode; --workers would run
# several writers on fleet mode's one SQLite store.
refused_flags '--db needs --data DIR too' --db postgresql://127.0.0.1/x --version 2.0.0
# With a FILE, not "add --data" (that then refused the FILE: a trial).
refused_flags '--db serves a fleet, whose images are added through its API, not a FILE: give --data DIR (this node.s image cache and its api.token) instead of img.bin, and add it with `tcpota image add img.bin --version 2.0.0 --model MODEL` once the node runs (a signed image: its manifest says both)$' --db postgresql://127.0.0.1/x --version 2.0.0 img.bin
# An empty --db (an unset variable in a unit) would be libpq's defaults: a
# local server's socket, not what was meant.
refused_flags '--db is empty; give the database' --db '' --data fleet-tls --api off
# A connection string libpq cannot take is said to be one, with libpq's
# reason and without the password (before: "check that PostgreSQL runs and
# that --db reaches it", and the whole URI, password and all, echoed).
refused_flags '^tcpota serve: --db: the connection string is not valid: invalid URI query parameter: "bogus"$' \
  --db 'postgresql://u:Pw0rd@127.0.0.1:1/x?bogus=1' --data fleet-tls --api off
refused_flags '^tcpota serve: --db: the connection string is not valid: end of string reached when looking for matching "]" in IPv6 host address in URI: "\*\*\*"$' \
  --db 'postgresql://u:Pw0rd@[::1/x' --data fleet-tls --api off
# Longer than a node keeps: a bad argument too (a trial: exit 1).
refused_flags '^tcpota serve: --db: the connection string has 2000 bytes; it may have at most 1023$' \
  --db "$(head -c 2000 /dev/zero | tr '\0' a)" --data fleet-tls --api off
# Another database's URI, which libpq would take for a database's name.
refused_flags '^tcpota serve: --db: the connection string is not valid: a URI other than postgresql:// or postgres:// (give postgresql://USER@HOST:PORT/DATABASE)$' \
  --db 'mysql://u@127.0.0.1/x' --data fleet-tls --api off
# A value libpq refuses only as it connects: the same, after the start,
# and the same exit status (2: a bad argument; it was 1, a failed start).
rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --db 'postgresql://u:Pw0rd@127.0.0.1:1/x?sslmode=bogus' \
  --data fleet-sslmode --api off > /dev/null 2> sslmode.log || rc=$?
[ $rc -eq 2 ] && grep -q -- '--db: the connection string is not valid: invalid sslmode value: "bogus"$' sslmode.log ||
  fail "sslmode=bogus: exit $rc: $(cat sslmode.log)"
! grep -q 'PostgreSQL runs' sslmode.log || fail "sslmode=bogus: told to check PostgreSQL: $(cat sslmode.log)"
! grep -q Pw0rd refused.log sslmode.log || fail "the --db password was shown"

# libpq is loaded only for --db (server/pq_dl.h): without a usable one
# every other command runs, and --db is refused at once, saying what is
# missing and what to install, with nothing created. LD_LIBRARY_PATH puts
# a libpq.so.5 first that is an empty file, then one without libpq's
# functions. Before, tcpota linked libpq and did not start at all.
mkdir -p pq-empty pq-stub
: > pq-empty/libpq.so.5
printf 'int tcpota_not_libpq;\n' > pq-stub.c
gcc -shared -fPIC -Wl,-soname,libpq.so.5 -o pq-stub/libpq.so.5 pq-stub.c 2> gcc.log || fail "gcc: $(cat gcc.log)"
nopq() { # nopq DIR WHY: --db with DIR's libpq.so.5 is refused, saying WHY
  local rc=0
  LD_LIBRARY_PATH=$WORK/$1 timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 \
    --db postgresql://127.0.0.1:1/x --data "fleet-$1" --api off > /dev/null 2> "$1.log" || rc=$?
  [ $rc -eq 2 ] && grep -qE "^tcpota serve: --db: PostgreSQL.s client library \(libpq\.so\.5\) did not load: $2; install it \(Debian: apt-get install libpq5\)$" "$1.log" ||
    fail "--db with $1/libpq.so.5: exit $rc: $(cat "$1.log")"
  [ ! -e "fleet-$1" ] || fail "--db with $1/libpq.so.5 created its data directory"
}
nopq pq-empty '.*file too short'
nopq pq-stub 'it has no PQ[a-zA-Z]+ \(an older libpq\?\)'
LD_LIBRARY_PATH=$WORK/pq-empty "$TCPOTA" keygen --out nopq > nopq-keygen.log 2>&1 ||
  fail "tcpota keygen needs libpq: $(cat nopq-keygen.log)"
ok "without a usable libpq: keygen runs; --db is refused at once, saying to install libpq5"

# A password in --db that other users can read is warned about, pointing
# to a password file, never showing it: in a config file they may read
# (mode & 044), or on the command line (ps shows it). Before: no word. The
# database (port 1) is not there: the warning comes before the connection.
db_pw() { # db_pw LOG ARGS...: a fleet start on --db that fails to connect
  local log=$1 rc=0
  shift
  timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --data fleet-pw --api off "$@" > /dev/null 2> "$log" || rc=$?
  [ $rc -ne 0 ] && grep -q 'cannot connect to the database' "$log" || fail "$*: exit $rc: $(cat "$log")"
  ! grep -q Pw0rd "$log" || fail "$*: the password was shown: $(cat "$log")"
}
pw_how='put the password in a file of mode 0600 that PGPASSFILE names, or ~/.pgpass (lines HOST:PORT:DATABASE:USER:PASSWORD), not in --db (docs/scaling.md)$'
printf 'db postgresql://tcpota:Pw0rd@127.0.0.1:1/tcpota\n' > pw.conf
chmod 644 pw.conf
db_pw pw644.log --config pw.conf
grep -q "warning: --db in pw.conf gives a password, and other users can read pw.conf (mode 644): $pw_how" pw644.log ||
  fail "a password in a config file of mode 644: $(cat pw644.log)"
chmod 640 pw.conf
db_pw pw640.log --config pw.conf
grep -q "warning: --db in pw.conf gives a password, and other users can read pw.conf (mode 640)" pw640.log ||
  fail "a password in a config file of mode 640: $(cat pw640.log)"
chmod 600 pw.conf
db_pw pw600.log --config pw.conf
! grep -q 'gives a password' pw600.log || fail "a password in a config file of mode 600 warned about: $(cat pw600.log)"
db_pw pwargv.log --db 'host=127.0.0.1 port=1 dbname=tcpota password=Pw0rd'
grep -q "warning: --db on the command line gives a password, which other users can read (ps, /proc/PID/cmdline): put it in a file of mode 0600 that PGPASSFILE names" pwargv.log ||
  fail "a password in --db on the command line: $(cat pwargv.log)"
db_pw pwnone.log --db 'postgresql://tcpota@127.0.0.1:1/tcpota'
! grep -q 'gives a password' pwnone.log || fail "--db without a password warned about: $(cat pwnone.log)"
ok "a --db password others can read (a config file of mode 644 or 640, the command line) is warned about, never shown"
# A database that wants a password none gave: what to fix is the password,
# not "check that PostgreSQL runs" (a new user's trial). A fake server that
# answers the startup with AuthenticationCleartextPassword.
# pg_fake MODE: tests/e2e/pg_fake.py started; its port in PG_FAKE_PORT.
pg_fake() {
  python3 "$E2E/pg_fake.py" "$1" > "pg-$1.port" &
  PIDS+=($!)
  for _ in $(seq 50); do [ -s "pg-$1.port" ] && break; sleep 0.1; done
  PG_FAKE_PORT=$(cat "pg-$1.port")
}
pg_fake password
PGPASSFILE=/nonexistent db_pw pwwant.log --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable"
grep -q "cannot connect to the database (--db): .*password.*; PGPASSFILE names /nonexistent, which does not exist: put the role's password there (mode 0600, lines HOST:PORT:DATABASE:USER:PASSWORD; docs/scaling.md)$" pwwant.log ||
  fail "a database wanting a password, PGPASSFILE naming no file: $(cat pwwant.log)"
: > empty.pgpass
chmod 600 empty.pgpass
PGPASSFILE=empty.pgpass db_pw pwwant2.log --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable"
# The file is there and has no line for --db: said so (a trial: told to
# give a file that was given).
grep -q "cannot connect to the database (--db): .*password.*; PGPASSFILE names empty.pgpass, which has no line for --db's host, port, database and role (HOST:PORT:DATABASE:USER:PASSWORD, \* for any), or is not of mode 0600 (libpq then ignores it)$" pwwant2.log ||
  fail "a database wanting a password, PGPASSFILE naming a file without its line: $(cat pwwant2.log)"
PGPASSFILE= db_pw pwwant3.log --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable"
grep -q "cannot connect to the database (--db): .*password.*; give the role's password in a file of mode 0600 that PGPASSFILE names, or in ~/.pgpass (lines HOST:PORT:DATABASE:USER:PASSWORD; docs/scaling.md)$" pwwant3.log ||
  fail "a database wanting a password none gave: $(cat pwwant3.log)"
# A password given and refused: said to be the wrong one, not a missing one.
pg_fake refuse
printf '127.0.0.1:%s:tcpota:tcpota:Pw0rd\n' "$PG_FAKE_PORT" > wrong.pgpass
chmod 600 wrong.pgpass
PGPASSFILE=wrong.pgpass db_pw pwwrong.log --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable"
grep -q "cannot connect to the database (--db): .*password authentication failed.*; the password given was refused: check it where it is given (in --db, in the file PGPASSFILE names, or in ~/.pgpass" pwwrong.log ||
  fail "a password refused: $(cat pwwrong.log)"
ok "a database that wants a password none gave: the message says to give it (or that PGPASSFILE names no file); one that refuses it: said to be the wrong one"
# SIGHUP and SIGUSR1 while the start waits (here for a database that never
# answers) are ignored, not fatal (before: exit 129 / 138; a systemd reload
# just after a start killed the service).
# A server at its connection limit: what to raise (a trial: "check that
# PostgreSQL runs").
pg_fake full
db_pw full.log --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable"
grep -q "cannot connect to the database (--db): .*too many clients already.*; PostgreSQL holds as many connections as it allows (max_connections, or the role's CONNECTION LIMIT): raise the limit, or run fewer nodes" full.log ||
  fail "a database at its connection limit: $(cat full.log)"
pg_fake mute
"$TCPOTA" serve --listen 127.0.0.1:0 --data fleet-mute --api off \
  --db "postgresql://tcpota@127.0.0.1:$PG_FAKE_PORT/tcpota?sslmode=disable&connect_timeout=20" 2> mute.log &
mute=$!
PIDS+=($mute)
sleep 1
kill -HUP $mute; kill -USR1 $mute
sleep 0.5
kill -0 $mute 2>/dev/null || fail "SIGHUP/SIGUSR1 during the start ended the server: $(cat mute.log)"
kill -KILL $mute
ok "SIGHUP and SIGUSR1 during the start are ignored"
# A start that fails before it makes --data (a TLS file that is no PEM) says
# why, and nothing about removing a folder it never made (before: "could
# not be removed whole (No such file or directory)").
rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --data fleet-never --api off \
  --tls-cert img.bin --tls-key img.bin 2> never.log || rc=$?
[ $rc -ne 0 ] && grep -q 'cannot use the TLS certificate img.bin' never.log && [ ! -e fleet-never ] &&
  ! grep -q 'could not be removed' never.log || fail "a start failed before --data existed (exit $rc): $(cat never.log)"
refused_flags '--workers is for single-image mode: fleet mode (--data) runs one process, as its SQLite store' --data fleet-tls --api off --workers 2
# With --db, not SQLite's writer (before: the SQLite reason for a PostgreSQL node).
refused_flags '--workers is for single-image mode: fleet mode runs one process per node; to spread the fleet over more processes or machines, run more --db nodes' \
  --db postgresql://127.0.0.1/x --data fleet-tls --api off --workers 2
! grep -q SQLite refused.log || fail "--workers with --db speaks of SQLite: $(cat refused.log)"
# A log format other than text or json is a typo, not text.
refused_flags '--log-format must be text or json (got xml)' --log-format xml --version 2.0.0 img.bin
# Image-mode sources do not apply in fleet mode: an --auth-file there would
# look like authentication and check nothing.
refused_flags '--auth-file does not apply with --data' --data fleet-tls --api off --auth-file img.bin
refused_flags '--require-signed does not apply with --data' --data fleet-tls --api off --require-signed
# ... and so is the other of the pair, from a config file or the command
# line, with --pubkey or without (before: taken, and ignored, without a word).
signed_why='does not apply with --data (--pubkey says it: with keys the API takes only images signed with one of them, without any it takes unsigned images too)$'
printf 'no-require-signed\n' > fleet-nosig.conf
refused_flags "^tcpota serve: --no-require-signed $signed_why" --config fleet-nosig.conf --data fleet-tls --api off
refused_flags "^tcpota serve: --no-require-signed $signed_why" --data fleet-tls --api off --no-require-signed
refused_flags "^tcpota serve: --require-signed $signed_why" --data fleet-tls --api off --require-signed
# Each with its own reason (before: one shared reason, so that `version
# 1.0.0` in a config file was told that secrets come from `device secret`).
printf 'version 1.0.0\n' > fleet-version.conf
refused_flags '^tcpota serve: --version does not apply with --data (each image brings its version: its signed manifest.s, or the one given to `tcpota image add FILE --version V`)$' \
  --config fleet-version.conf --data fleet-tls --api off
refused_flags '^tcpota serve: --manifest does not apply with --data (each image brings its manifest: `tcpota image add FILE` sends FILE.manifest, or the one --manifest M names)$' \
  --data fleet-tls --api off --manifest img.bin
refused_flags '^tcpota serve: --auth-file does not apply with --data (device secrets come from `tcpota device secret ID`)$' \
  --data fleet-tls --api off --auth-file img.bin
# Numbers out of their range: 2^32 unauthenticated connections per address
# would wrap to 0 (no limit); a chunk outside 512..16380 does not fit a frame.
refused_flags "--max-unauth-per-addr: '4294967296' is out of range" --max-unauth-per-addr 4294967296 --version 2.0.0 img.bin
refused_flags "--max-unauth-per-addr: '1000001' is out of range" --max-unauth-per-addr 1000001 --version 2.0.0 img.bin
refused_flags "--chunk: '16381' is out of range" --chunk 16381 --version 2.0.0 img.bin
refused_flags "--chunk: '511' is out of range" --chunk 511 --version 2.0.0 img.bin
# Negative: said to be (not "not a number"), with the range taken.
refused_flags "--max-unauth-per-addr: '-1' is negative: give a whole number in 0..1000000" --max-unauth-per-addr -1 --version 2.0.0 img.bin
refused_flags "--max-conns: '-5' is negative: give a whole number in 1..1000000" --max-conns -5 --version 2.0.0 img.bin
refused_flags "--listen: '-1' is negative: give a whole number in 0..65535" --listen 127.0.0.1:-1 --version 2.0.0 img.bin
# No host before the port: which addresses to give, not "bad host".
refused_flags "--listen: ':22601' has no host before ':'; give 127.0.0.1:22601 (this machine only) or 0.0.0.0:22601 (every address)" --listen :22601 --version 2.0.0 img.bin
refused_flags "--api: ':8071' has no host before ':'; give 127.0.0.1:8071 (this machine only) or 0.0.0.0:8071 (every address)" --data fleet-nohost --api :8071
# At most 8 --pubkey: a ninth is refused, not stored past the table.
"$TCPOTA" keygen --out trust 2> /dev/null || fail "keygen failed"
refused_flags "^tcpota serve: --no-require-signed $signed_why" --pubkey trust.pub --data fleet-tls --api off --no-require-signed
keys=(); for i in 1 2 3 4 5 6 7 8 9; do "$TCPOTA" keygen --out "k$i" 2> /dev/null; keys+=(--pubkey "k$i.pub"); done
refused_flags '^tcpota serve: --pubkey k9.pub: at most 8 different keys; remove those no image is signed with any more$' \
  "${keys[@]}" --data fleet-tls --api off
# The same key again (the config file's and the unit's) is taken once, said
# so, and does not count towards the 8 (a trial: nine copies were refused).
keys=(); for i in 1 2 3 4 5 6 7 8 9; do keys+=(--pubkey trust.pub); done
refused_flags 'log-format' "${keys[@]}" --data fleet-tls --api off --log-format xml
[ "$(grep -c '^tcpota serve: note: --pubkey trust.pub is a key given before; taken once$' refused.log)" = 8 ] &&
  ! grep -q 'at most' refused.log || fail "nine copies of one --pubkey: $(cat refused.log)"
# From a config file, the note names the line (as the other notes do).
printf 'pubkey trust.pub\npubkey trust.pub\n' > pk.conf
refused_flags 'log-format' --config pk.conf --data fleet-tls --api off --log-format xml
grep -qx 'tcpota serve: note: --pubkey trust.pub (line 2 of pk.conf) is a key given before; taken once' refused.log ||
  fail "a config file's second pubkey line: $(cat refused.log)"
[ ! -e fleet-tls ] || fail "a refused fleet start created its data directory"
refused_flags '--require-auth needs --auth-file' --version 2.0.0 --require-auth img.bin
# --max-unauth-per-addr caps connections that have not authenticated yet,
# which only a server with --require-auth or TLS counts: without either it
# did nothing, silently (a test of this repository gave it so, believing it
# did). Refused as --allow-unauthenticated-legacy without --require-auth is,
# in both modes, whatever the number (0 too); with --require-auth it starts.
unauth_why='--max-unauth-per-addr applies only with --require-auth or --tls-cert (it caps the connections one address holds before they authenticate, and without either the server counts none); add one of them, or drop it'
refused_flags "$unauth_why" --max-unauth-per-addr 16 --version 2.0.0 img.bin
refused_flags "$unauth_why" --max-unauth-per-addr 0 --version 2.0.0 img.bin
refused_flags "$unauth_why" --max-unauth-per-addr 16 --data fleet-unauth --api off
[ ! -e fleet-unauth ] || fail "a refused fleet start created its data directory"
"$TCPOTA" serve --listen 127.0.0.1:0 --data fleet-unauth --api off --require-auth --max-unauth-per-addr 16 2> unauth.log &
PIDS+=($!)
wait_line unauth.log 'listening on'
stop_serve
ok "--max-unauth-per-addr without --require-auth or --tls-cert is refused (it would cap nothing); with --require-auth it is taken"
ok "--tls-cert or --tls-key alone (fleet and image mode), --require-auth without --auth-file, --db without --data, empty or not a valid connection string, --workers with --data, --log-format xml, --auth-file or --require-signed with --data, --max-unauth-per-addr or --chunk out of range, 9 different --pubkey keys: exit 2 (9 copies of one: taken once)"

# A descriptor limit below --max-conns: the warning says what happens and
# what to do (before: only that the limit was below).
(ulimit -n 200 && start_serve fdlimit.log --listen 127.0.0.1:0 --version 1.0.0 --max-conns 1000 &&
  stop_serve) || fail "the server did not start under a descriptor limit of 200"
grep -q -- 'descriptor limit 200 is below --max-conns 1000: past about 168 connections, new ones wait in the backlog .*raise the limit (ulimit -n.* to at least 1032, or give --max-conns 168' fdlimit.log ||
  fail "descriptor limit below --max-conns: $(cat fdlimit.log)"
# fleet_under LIMIT LOG: a fleet server started and stopped under a
# descriptor limit of LIMIT, its log in LOG.
fleet_under() {
  (
    ulimit -n "$1"
    "$TCPOTA" serve --listen 127.0.0.1:0 --data fd-data --api 127.0.0.1:0 --max-conns 1000 2> "$2" &
    pid=$!
    wait_line "$2" 'listening on'
    kill -TERM "$pid"
    wait "$pid"
  ) || fail "a fleet server under a descriptor limit of $1: $(cat "$2")"
}
# In fleet mode the API's connections need descriptors too (--api-max-conns).
fleet_under 1500 fdapi.log
grep -q -- 'descriptor limit 1500 is below --max-conns 1000 and the API.s 1024 (--api-max-conns): .* to at least 2056' fdapi.log ||
  fail "the API's connections left out of the descriptor budget: $(grep descriptor fdapi.log)"
# A limit the API's connections take whole: no "give --max-conns 0",
# which is refused (a security review).
fleet_under 1024 fdnone.log
grep -q -- "descriptor limit 1024 is below --max-conns 1000 and the API.s 1024 (--api-max-conns), and leaves none for device connections beside the server's own 32 and the API's: .* to at least 2056, or lower --api-max-conns$" fdnone.log &&
  ! grep -q -- '--max-conns 0' fdnone.log ||
  fail "a descriptor limit the API takes whole: $(grep descriptor fdnone.log)"
ok "a descriptor limit below --max-conns: says what the server will do and what to change (the API's connections counted)"

# Every option `serve --help` lists is one a config file may set.
names=$("$TCPOTA" serve --help | grep -oE -- '--[a-z][a-z-]+' | sort -u | sed 's/^--//' | grep -vx -e help -e config)
[ "$(echo "$names" | wc -l)" -ge 20 ] || fail "too few options in serve --help: $names"
for n in $names; do
  echo "$n" > one.conf
  "$TCPOTA" serve --config one.conf --help > /dev/null 2> one.log || true
  ! grep -q 'unknown option' one.log || fail "serve --help lists --$n, but a config file cannot set it"
done
ok "every option of serve --help can be set in a config file"

# An unknown option: one line and where to look (as keygen, sign, verify
# say), not the whole usage; last on the line, it is unknown, not
# "needs a value".
for args in "--bogus:--bogus" "--bogus:--bogus 1 --version 1.0.0 img.bin" "-x:--version 1.0.0 img.bin -x"; do
  bad=${args%%:*} rc=0
  # shellcheck disable=SC2086 # the arguments are words
  timeout 10 "$TCPOTA" serve ${args#*:} > /dev/null 2> unknown-opt.log || rc=$?
  [ $rc -eq 2 ] || fail "serve ${args#*:}: exit $rc: $(cat unknown-opt.log)"
  [ "$(cat unknown-opt.log)" = "tcpota serve: unknown option $bad; see tcpota serve --help" ] ||
    fail "serve ${args#*:}: $(cat unknown-opt.log)"
done
ok "an unknown serve option: one line naming it and serve --help, exit 2"

# Counts of one in the singular: "1 device", "1 connection already", not
# "1 devices", "1 connections".
start_serve one.log --listen 127.0.0.1:0 --version 2.0.0 --max-conns 1
port=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' one.log | head -1)
"$TCPOTA" device --server "127.0.0.1:$port" --flash one-dev --id one-dev --progress none 2> one-dev.log ||
  fail "the device was not updated: $(tail -2 one-dev.log)"
exec 3<>"/dev/tcp/127.0.0.1/$port" # holds the one connection allowed
sleep 0.3 # a raw connection is not logged until it sends or closes
exec 4<>"/dev/tcp/127.0.0.1/$port"
wait_line one.log 'refused: 1 connection already \(limit\)' 5
exec 3>&- 4>&-
stop_serve
grep -q 'summary: 1 device: 1 updated and confirmed' one.log || fail "the summary of one device: $(grep summary: one.log)"
grep -q 'room for --max-conns 1 connection$' one.log || fail "the descriptor line: $(grep 'descriptor limit' one.log)"
! grep -qE '(^|[^0-9])1 (devices|connections|legacy devices|full handshakes)|refused 1 times' one.log ||
  fail "a count of one in the plural: $(grep -E '(^|[^0-9])1 (devices|connections)' one.log)"
ok "counts of one are said in the singular (1 device, 1 connection already)"

# --max-image takes a size with a unit (64M), from the command line and the
# config file alike; a number of bytes no firmware fits in is warned about at
# start, naming what was probably meant (before: "--max-image 100" took
# 100-byte images without a word). Bad sizes: exit 2, saying what a size is.
printf 'max-image 3M\n' > size.conf
"$TCPOTA" serve --listen 127.0.0.1:0 --data size-data --api 127.0.0.1:0 --config size.conf 2> size.log &
PIDS+=($!)
wait_line size.log 'listening on'
api=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' size.log | head -1)
max=$(TCPOTA_API="http://127.0.0.1:$api" TCPOTA_TOKEN=$(cat size-data/api.token) "$TCPOTA" image list --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["max_image"])')
[ "$max" = 3145728 ] || fail "max-image 3M in a config file: the API takes $max bytes"
! grep -q 'warning: --max-image' size.log || fail "3M warned about: $(grep warning size.log)"
stop_serve
"$TCPOTA" serve --listen 127.0.0.1:0 --data size-data --api 127.0.0.1:0 --max-image 100 2> size100.log &
PIDS+=($!)
wait_line size100.log 'listening on'
grep -q 'warning: --max-image 100 takes images of at most 100 bytes, and firmware is rarely under 64 KiB; if you meant MiB, give --max-image 100M$' size100.log ||
  fail "--max-image 100: $(grep -i 'max-image' size100.log)"
stop_serve
# With a unit it was meant as given: no "did you mean" built from its bytes.
"$TCPOTA" serve --listen 127.0.0.1:0 --data size-data --api 127.0.0.1:0 --max-image 1K 2> size1k.log &
PIDS+=($!)
wait_line size1k.log 'listening on'
grep -q 'warning: --max-image 1K takes images of at most 1024 bytes, and firmware is rarely under 64 KiB; give a larger size (64M is the default)$' size1k.log ||
  fail "--max-image 1K: $(grep -i 'max-image' size1k.log)"
stop_serve
for bad in "12Mb|is not a size: give bytes, or a whole number with K, M or G" "2G|is out of range: give a size in 1..1073741824 bytes" \
           "0K|is out of range" "x|is not a size: give bytes, or a whole number with K"; do
  rc=0; timeout 10 "$TCPOTA" serve --listen 127.0.0.1:0 --data size-data --max-image "${bad%%|*}" > /dev/null 2> sizebad.log || rc=$?
  [ $rc -eq 2 ] && grep -q -- "--max-image: '${bad%%|*}' ${bad#*|}" sizebad.log || fail "--max-image ${bad%%|*}: exit $rc: $(cat sizebad.log)"
done
ok "--max-image 3M (config file) is 3 MiB; 100 is warned about; 12Mb, 2G, 0K, x: exit 2 with the reason"

# --quiet (here from a config file) keeps the changes made through the API
# in the log, the operators' trail (docs/operations.md), and serve --help and
# the shipped tcpota.conf say so (before, both said "errors, warnings, the
# listening on line and the summary only").
"$TCPOTA" serve --help | grep -A2 -- '^  --quiet ' | grep -q 'changes made through the API' ||
  fail "serve --help does not say --quiet keeps the API's changes: $("$TCPOTA" serve --help | grep -A2 -- '^  --quiet ')"
grep -A1 '^# No line per connection or device' "$(dirname "$0")/../../service/tcpota.conf" |
  grep -q 'changes made through the API' || fail "tcpota.conf does not say quiet keeps the API's changes"
printf 'quiet\n' > quiet.conf
"$TCPOTA" serve --listen 127.0.0.1:0 --data quiet-data --api 127.0.0.1:0 --config quiet.conf 2> quiet.log &
PIDS+=($!)
wait_line quiet.log 'listening on'
api=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' quiet.log | head -1)
TCPOTA_API="http://127.0.0.1:$api" TCPOTA_TOKEN=$(cat quiet-data/api.token) "$TCPOTA" image add \
  --version 1.0.0 --model esp32 img.bin > /dev/null 2> quiet-add.log || fail "image add: $(cat quiet-add.log)"
stop_serve
grep -qE 'tcpota serve: image [0-9a-f]{12} added: version 1\.0\.0, .*\(API client 127\.0\.0\.1:[0-9]+\)$' quiet.log ||
  fail "quiet: no line for the image added through the API: $(cat quiet.log)"
ok "--quiet keeps the changes made through the API in the log, and serve --help says so"
