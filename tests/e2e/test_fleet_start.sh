#!/usr/bin/env bash
# What a fleet server (tcpota serve --data) refuses at start, and what it
# mends (docs/operations.md, "The files in --data"):
#  - every refusal says that the server is not starting ("not starting:
#    ..."), exit 1: an API token others may read (and why that is refused),
#    a token that is a symbolic link or not a regular file, a --data in use,
#    a device or API port in use;
#  - a backup restored with its modes (tcpota.db 0644, images/ 0755, its
#    files 0644) is made the server's alone again, with a line saying what
#    changed, and the server starts.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"

# refused WHAT REGEX [ARGS...]: a start on $DATA (ARGS coming last: the
# last value of a flag counts) must exit 1, saying REGEX after "tcpota
# serve: not starting: ", and never listen.
refused() {
  local rc=0 what=$1 re=$2
  shift 2
  set -- "$what" "$re" "$@"
  timeout 20 "$TCPOTA" serve --listen 127.0.0.1:0 --api 127.0.0.1:0 --data "$DATA" --no-progress \
    "${@:3}" > /dev/null 2> "$WORK/refused.log" || rc=$?
  [ $rc -eq 1 ] || fail "$1: exit $rc, not 1: $(cat "$WORK/refused.log")"
  grep -qE "tcpota serve: not starting: $2" "$WORK/refused.log" || fail "$1: $(cat "$WORK/refused.log")"
  ! grep -q 'listening on' "$WORK/refused.log" || fail "$1: the server listened"
  ok "$1: $(grep -o 'not starting: .*' "$WORK/refused.log")"
}

start_fleet
make_image "$WORK/fw.bin" 50000
"$TCPOTA" image add "$WORK/fw.bin" --version 2.0.0 --model esp32 > /dev/null || fail "image add"
stop_fleet
TOKEN=$DATA/api.token

# --- the token: a secret; refused, with why -----------------------------
chmod 644 "$TOKEN"
refused "a token others may read" "$TOKEN may be read by other users \(mode 0644\), and it is the API's secret: chmod 600 $TOKEN if nobody else could have read it, else remove it for a new token"
[ "$(stat -c %a "$TOKEN")" = 644 ] || fail "the refused token's mode was changed"
chmod 600 "$TOKEN"
mv "$TOKEN" "$WORK/token.real"
ln -s "$WORK/token.real" "$TOKEN"
refused "a token that is a symbolic link" "$TOKEN is a symbolic link, not a regular file; remove it"
rm "$TOKEN"; mkdir "$TOKEN"
refused "a token that is a directory" "$TOKEN is not a regular file; remove it"
rmdir "$TOKEN"; mv "$WORK/token.real" "$TOKEN"

# --- a --data in use, ports in use ---------------------------------------
start_fleet
refused "a --data in use" "$DATA is in use by another tcpota serve \(pid $SERVER_PID\); stop it or use another --data"
refused "a device port in use" "cannot listen on 127.0.0.1:$SERVER_PORT: Address already in use" \
  --data "$WORK/other" --listen "127.0.0.1:$SERVER_PORT"
refused "an API port in use" "cannot start the API: cannot listen on 127.0.0.1:$API_PORT for the API: Address already in use" \
  --data "$WORK/other" --api "127.0.0.1:$API_PORT"
# A failed start beside someone else's files removes the fleet's files it
# made there, and only those: left, the next start took the directory for
# a fleet's and no longer warned (a trial).
mkdir -p "$WORK/beside" && echo notes > "$WORK/beside/notes.txt"
refused "a device port in use, beside someone else's files" "cannot listen on 127.0.0.1:$SERVER_PORT: Address already in use" \
  --data "$WORK/beside" --listen "127.0.0.1:$SERVER_PORT"
grep -q "removed the fleet's files this failed start made in --data $WORK/beside (the other files there are kept)" "$WORK/refused.log" ||
  fail "the failed start beside others' files said: $(tail -2 "$WORK/refused.log")"
[ "$(ls -A "$WORK/beside")" = notes.txt ] || fail "after the failed start --data holds: $(ls -A "$WORK/beside")"
stop_fleet

# --- a backup restored with its modes: made private, said, started --------
chmod 644 "$DATA/tcpota.db"
chmod 755 "$DATA/images"
chmod 602 "$DATA"/images/*   # others may write, not read: private too
start_fleet
grep -q "made private what other users could read or write in $DATA (a backup restored with its modes?): tcpota.db (0644), images/ (0755), 1 file in images/; the files in --data are the server's alone (docs/operations.md)" \
  "$WORK/server.log" || fail "no word of the modes made private: $(head -5 "$WORK/server.log")"
[ "$(stat -c %a "$DATA/tcpota.db")" = 600 ] && [ "$(stat -c %a "$DATA/images")" = 700 ] &&
  [ "$(stat -c %a "$DATA"/images/* | sort -u)" = 600 ] ||
  fail "not private: $(stat -c '%a %n' "$DATA/tcpota.db" "$DATA/images" "$DATA"/images/*)"
"$TCPOTA" image list > /dev/null || fail "image list after the restore"
stop_fleet
: > "$WORK/server.log"
start_fleet
! grep -q 'made private' "$WORK/server.log" || fail "a private --data was said to be made private"
stop_fleet
ok "a restored tcpota.db 0644, images/ 0755 and its files 0644: made 0600/0700/0600, said once, started"

# --- a --data that holds someone else's files: warned, once ----------------
# (a device's --flash, a home directory given by mistake); a fleet's own
# directory, a provisioned api.token alone or a mount point's lost+found
# are not.
! grep -q 'holds files that are not a fleet' "$WORK/server.log" || fail "a fleet's own --data was warned about"
DATA=$WORK/foreign
mkdir -p "$DATA/lost+found" && echo notes > "$DATA/notes.txt"
start_fleet
grep -q "warning: --data $DATA holds files that are not a fleet's (the first: notes.txt) and no tcpota.db: a new fleet is made beside them; if this is not the fleet's directory, stop the server and give a new or empty one" \
  "$WORK/server.log" || fail "a --data of someone else's files was not warned about: $(head -3 "$WORK/server.log")"
stop_fleet
start_fleet
! grep -q 'holds files that are not a fleet' "$WORK/server.log" || fail "warned again once the fleet was made there"
stop_fleet
DATA=$WORK/mount
mkdir -p "$DATA/lost+found"
start_fleet
! grep -q 'holds files that are not a fleet' "$WORK/server.log" || fail "a mount point's lost+found was warned about"
stop_fleet
ok "a --data holding someone else's files is warned about; a fleet's own or a mount point's is not"

# --- symbolic links in --data are never followed ---------------------------
# A tcpota.lock that links elsewhere: followed, the server truncated the
# file it names and wrote its pid there. A link among the images to a file
# of others' (mode 0644): followed by the chmod that makes --data private,
# the file outside became 0600.
DATA=$WORK/links
mkdir -p "$DATA"
echo keep > "$WORK/victim"
ln -s "$WORK/victim" "$DATA/tcpota.lock"
refused "a tcpota.lock that is a symbolic link" "cannot open the fleet store: $DATA/tcpota.lock is a symbolic link, not the server.s own lock file; remove it"
[ "$(cat "$WORK/victim")" = keep ] || fail "the file a linked tcpota.lock names was written: $(cat "$WORK/victim")"
rm "$DATA/tcpota.lock"
start_fleet
stop_fleet
echo outside > "$WORK/outside"
chmod 644 "$WORK/outside"
ln -s "$WORK/outside" "$DATA/images/$(printf 'ab%.0s' {1..32})" # named as an image
ln -s "$WORK/outside" "$DATA/tcpota.db-wal.link"
start_fleet
stop_fleet
[ "$(stat -c %a "$WORK/outside")" = 644 ] || fail "a file outside --data, linked from images/, was made $(stat -c %a "$WORK/outside")"
! grep -q 'made private' "$WORK/server.log" || fail "a link was made private: $(grep 'made private' "$WORK/server.log")"
ok "links in --data are not followed: the lock file's is refused, an image's left alone"

# --- someone else's files in --data are not touched -------------------------
# Another program's tcpota.db (0644, WAL): refused before the pass that
# makes the fleet's files private (it was made 0600, then refused); a file
# in images/ not named as an image (a photo, in a --data given by mistake)
# is not made private.
DATA=$WORK/others
mkdir -p "$DATA/images"
python3 -c "import sqlite3; c = sqlite3.connect('$DATA/tcpota.db'); c.execute('pragma journal_mode=wal'); c.execute('create table notes (x)'); c.commit(); c.close()"
chmod 644 "$DATA/tcpota.db"
refused "another program's tcpota.db" "cannot open the fleet store: $DATA/tcpota.db is a SQLite database but not a tcpota one"
[ "$(stat -c %a "$DATA/tcpota.db")" = 644 ] || fail "another program's tcpota.db was made $(stat -c %a "$DATA/tcpota.db") before it was refused"
rm "$DATA/tcpota.db"
# (Hex but short, 64 characters but not hex, 64 hex digits and a suffix:
# none is an image's name.)
others="cat.jpg cafe $(printf 'g%.0s' {1..64}) $(printf 'a%.0s' {1..64}).jpg"
for f in $others; do echo photo > "$DATA/images/$f"; chmod 644 "$DATA/images/$f"; done
start_fleet
stop_fleet
for f in $others; do
  [ "$(stat -c %a "$DATA/images/$f")" = 644 ] || fail "a file in images/ not named as an image ($f) was made $(stat -c %a "$DATA/images/$f")"
done
# A table of the fleet's removed by hand: not starting, and what to do.
DATA=$WORK/notable
start_fleet
stop_fleet
python3 -c "import sqlite3; c = sqlite3.connect('$DATA/tcpota.db'); c.execute('drop table secrets'); c.commit(); c.close()"
refused "a fleet database without its secrets table" "cannot read the device secrets: .*no such table: secrets.*; the database's tables are not as this tcpota made them \(one removed by hand\?\): restore it from a backup"
# A tcpota.db that is no file at all: said so, not SQLite's words for it.
DATA=$WORK/dbdir
mkdir -p "$DATA/tcpota.db"
refused "a tcpota.db that is a directory" "cannot open the fleet store: $DATA/tcpota.db is not a regular file; move it away"
# The lock a FIFO or a directory, images/ a file: said what it is, before
# anything in --data is changed (the file named images/ kept its mode).
DATA=$WORK/oddlock
mkdir -p "$DATA" && mkfifo "$DATA/tcpota.lock"
echo shm > "$DATA/tcpota.db-shm" && chmod 644 "$DATA/tcpota.db-shm" # checked before it: left as it is
refused "a FIFO as tcpota.lock" "$DATA/tcpota.lock is a FIFO, where tcpota serve keeps a file of its own; move it away"
[ "$(stat -c %a "$DATA/tcpota.db-shm")" = 644 ] || fail "tcpota.db-shm was made $(stat -c %a "$DATA/tcpota.db-shm") before the FIFO was refused"
rm "$DATA/tcpota.db-shm"
rm "$DATA/tcpota.lock" && mkdir "$DATA/tcpota.lock"
refused "a directory as tcpota.lock" "$DATA/tcpota.lock is a directory, where tcpota serve keeps a file of its own; move it away"
DATA=$WORK/imgfile
mkdir -p "$DATA" && echo x > "$DATA/images" && chmod 644 "$DATA/images"
refused "a file named images" "$DATA/images is a regular file, where tcpota serve keeps a directory; move it away"
[ "$(stat -c %a "$DATA/images")" = 644 ] || fail "a file named images was made $(stat -c %a "$DATA/images") before the start was refused"
ok "another program's tcpota.db is refused untouched; a file in images/ not named as an image is left as it is"

# --data owned by another user than the server's (a restore by root, the
# service running as its own user): the refusal says whose it is and what
# to do (before: "Permission denied" alone). The server runs as nobody.
DATA=$WORK/owned
start_fleet
stop_fleet
chmod 755 "$WORK"
rc=0
timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups "$TCPOTA" serve --listen 127.0.0.1:0 \
  --api 127.0.0.1:0 --data "$DATA" --no-progress > /dev/null 2> "$WORK/owned.log" || rc=$?
chmod 700 "$WORK"
[ $rc -eq 1 ] && grep -q "not starting: cannot open the fleet store: the data directory $DATA is not writable: Permission denied; it belongs to user root (uid 0) and tcpota serve runs as user nobody (uid 65534): chown -R nobody $DATA, or run the server as root" "$WORK/owned.log" ||
  fail "a --data of another user: rc $rc: $(cat "$WORK/owned.log")"
ok "a --data of another user: refused, saying whose it is and what to do"

# --- a --db node's --data holding someone else's files: warned too ---------
# (a trial gave a node a device's --flash: it took the device's lock and
# wrote its token there without a word). The warning comes before the
# database is reached, so an unreachable one shows it as well.
mkdir -p "$WORK/devflash" && echo x > "$WORK/devflash/ota_0.bin"
timeout 20 "$TCPOTA" serve --db "postgresql://tcpota@127.0.0.1:1/tcpota?connect_timeout=2" \
  --data "$WORK/devflash" --listen 127.0.0.1:0 --api 127.0.0.1:0 2> "$WORK/dbdata.log" && fail "a node without its database started"
grep -q "warning: --data $WORK/devflash holds files that are not a node's (the first: ota_0.bin): the node's files are made beside them" "$WORK/dbdata.log" ||
  fail "a --db node on someone else's files was not warned about: $(head -3 "$WORK/dbdata.log")"
# A tcpota.db among them does not make them a node's (a SQLite fleet's
# --data: refused after, as another store's).
: > "$WORK/devflash/tcpota.db"
timeout 20 "$TCPOTA" serve --db "postgresql://tcpota@127.0.0.1:1/tcpota?connect_timeout=2" \
  --data "$WORK/devflash" --listen 127.0.0.1:0 --api 127.0.0.1:0 2> "$WORK/dbdata.log" && fail "a node without its database started"
grep -q "warning: --data $WORK/devflash holds files that are not a node's" "$WORK/dbdata.log" ||
  fail "a --db node on someone else's files and a tcpota.db was not warned about: $(head -3 "$WORK/dbdata.log")"
ok "a --db node's --data holding someone else's files is warned about"
