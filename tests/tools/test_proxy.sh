#!/usr/bin/env bash
# Self-test of tcpota-proxy's fault injection, on loopback only.
# usage: test_proxy.sh PATH/TO/tcpota-proxy PATH/TO/tcpota-test-source
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 TCPOTA_PROXY TCPOTA_TEST_SOURCE" >&2
  exit 2
fi
PROXY=$1
SRC=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tcpota-proxy-test.XXXXXX")
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAIL: $*" >&2
  if [[ -n ${PX_LOG:-} && -f ${PX_LOG:-} ]]; then
    echo "--- proxy log ($PX_LOG) ---" >&2
    tail -n 30 "$PX_LOG" >&2
  fi
  exit 1
}
pass() { echo "ok: $*"; }

# wait_listen LOG PID: print the port from "... listening on 127.0.0.1:PORT".
wait_listen() {
  local log=$1 pid=$2 i line
  for ((i = 0; i < 200; i++)); do
    line=$(grep -m1 -oE 'listening on 127\.0\.0\.1:[0-9]+' "$log" 2>/dev/null || true)
    if [[ -n $line ]]; then
      echo "${line##*:}"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# start_source NAME ARGS... -> SRC_PORT
start_source() {
  local name=$1 pid
  shift
  "$SRC" serve --listen 127.0.0.1:0 "$@" 2>"$WORK/$name.log" &
  pid=$!
  PIDS+=("$pid")
  SRC_PORT=$(wait_listen "$WORK/$name.log" "$pid") || fail "source $name did not start"
}

# start_proxy NAME ARGS... -> PX_PID PX_PORT PX_LOG
start_proxy() {
  local name=$1
  shift
  PX_LOG=$WORK/proxy-$name.log
  "$PROXY" --listen 127.0.0.1:0 "$@" 2>"$PX_LOG" &
  PX_PID=$!
  PIDS+=("$PX_PID")
  PX_PORT=$(wait_listen "$PX_LOG" "$PX_PID") || fail "proxy $name did not start"
}

# stop_proxy: SIGTERM must give exit 0 (and, under ASan, no leaks) plus a stats line.
stop_proxy() {
  local rc=0
  kill -TERM "$PX_PID" 2>/dev/null || fail "proxy died early"
  wait "$PX_PID" || rc=$?
  [[ $rc -eq 0 ]] || fail "proxy exited with $rc after SIGTERM"
  STATS=$(grep -E '^proxy: conns=' "$PX_LOG" | tail -n 1)
  [[ -n $STATS ]] || fail "no stats line on exit"
}

# fetch NAME: read everything through the proxy into $WORK/NAME.out -> FETCH line
fetch() {
  FETCH=$("$SRC" fetch --connect "127.0.0.1:$PX_PORT" --out "$WORK/$1.out") ||
    fail "fetch $1 failed: $FETCH"
}

field() { # field LINE KEY -> value of KEY=value
  local kv
  for kv in $1; do
    [[ $kv == "$2="* ]] && { echo "${kv#*=}"; return 0; }
  done
  return 1
}

expect_prefix() { # expect_prefix FILE PATTERN_FILE N: FILE is exactly the first N bytes
  local size
  size=$(stat -c %s "$1")
  [[ $size -eq $3 ]] || fail "$1: expected $3 bytes, got $size"
  head -c "$3" "$2" | cmp -s - "$1" || fail "$1: content differs from the pattern"
}

"$SRC" pattern --bytes 1048576 --out "$WORK/pat1m"
"$SRC" pattern --bytes 4000 --out "$WORK/pat4k"

# --- 0. a bad value: one line that names it, and where the options are; exit 2 ---
rc=0
"$PROXY" --listen 127.0.0.1:0 --upstream 127.0.0.1:1 --delay 10x 2>"$WORK/bad.err" || rc=$?
[[ $rc -eq 2 ]] || fail "--delay 10x: expected exit 2, got $rc"
[[ "$(cat "$WORK/bad.err")" == "tcpota-proxy: --delay: expected a number in [0, 3600000], got '10x'
try 'tcpota-proxy --help'" ]] || fail "--delay 10x: unexpected message: $(cat "$WORK/bad.err")"
# A value left out before the next option: that option is named, not the
# value after it ("unexpected argument '127.0.0.1:1'", a trial).
rc=0
"$PROXY" --listen --upstream 127.0.0.1:1 2>"$WORK/noval.err" || rc=$?
[[ $rc -eq 2 ]] && grep -qx -- "tcpota-proxy: --listen needs a value (got the option --upstream; if it is meant as the value, write --listen=--upstream)" "$WORK/noval.err" ||
  fail "--listen without a value: exit $rc: $(cat "$WORK/noval.err")"
# ...and written so, it is the value, whatever it looks like (a mutation
# review: nothing ran the form the message advises).
rc=0
"$PROXY" --listen=--x --upstream 127.0.0.1:1 2>"$WORK/eqval.err" || rc=$?
[[ $rc -eq 2 ]] && ! grep -q 'needs a value' "$WORK/eqval.err" && grep -q -- "'--x'" "$WORK/eqval.err" ||
  fail "--listen=--x: exit $rc: $(cat "$WORK/eqval.err")"
rc=0
"$PROXY" 2>"$WORK/none.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q -- '^  --cut-at' "$WORK/none.err" || fail "no arguments: expected the usage"

# Its own address as --upstream: refused at start (each connection would
# open one more to itself until the descriptors ran out). A port taken
# meanwhile fails the bind instead: another port is tried.
for try in 1 2 3 4 5; do
  port=$(( (RANDOM % 20000) + 30000 ))
  rc=0
  timeout 10 "$PROXY" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$port" 2>"$WORK/self.err" || rc=$?
  grep -q 'Address already in use' "$WORK/self.err" || break
done
[[ $rc -eq 2 ]] && grep -q "^tcpota-proxy: --upstream is the proxy's own --listen address (127.0.0.1:$port); give the server's address$" "$WORK/self.err" ||
  fail "its own address as --upstream: exit $rc: $(cat "$WORK/self.err")"
rc=0 # 0.0.0.0 as --upstream reaches this host's every address, the listener's too
timeout 10 "$PROXY" --listen "127.0.0.1:$port" --upstream "0.0.0.0:$port" 2>"$WORK/self.err" || rc=$?
[[ $rc -eq 2 ]] && grep -q "own --listen address" "$WORK/self.err" ||
  fail "0.0.0.0 and its own port as --upstream: exit $rc: $(cat "$WORK/self.err")"

# --- 1. no faults: bytes pass unchanged, also with concurrent connections ---
start_source big --bytes 1048576
BIG_PORT=$SRC_PORT
start_proxy plain --upstream "127.0.0.1:$BIG_PORT"
fetch plain
expect_prefix "$WORK/plain.out" "$WORK/pat1m" 1048576
[[ $(field "$FETCH" end) == eof ]] || fail "plain: $FETCH"
cpids=()
for i in 1 2 3 4 5; do
  "$SRC" fetch --connect "127.0.0.1:$PX_PORT" --out "$WORK/par$i.out" >/dev/null &
  cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p" || fail "parallel fetch failed"; done
for i in 1 2 3 4 5; do expect_prefix "$WORK/par$i.out" "$WORK/pat1m" 1048576; done
kill -USR1 "$PX_PID"
for ((i = 0; i < 50; i++)); do
  grep -q '^proxy: conns=6 ' "$PX_LOG" && break
  sleep 0.05
done
grep -q '^proxy: conns=6 ' "$PX_LOG" || fail "SIGUSR1 did not print stats"
stop_proxy
[[ $STATS == "proxy: conns=6 down_bytes=$((6 * 1048576)) up_bytes=0 cuts=0 flips=0" ]] ||
  fail "stats: $STATS"
pass "pass-through, 6 connections, 6 MiB intact"

# --- 2. --cut-at: exact cumulative cut points, then EOF ---
start_source small --bytes 4000
SMALL_PORT=$SRC_PORT
start_proxy cut --upstream "127.0.0.1:$SMALL_PORT" --cut-at 6000,1000
expected=(1000 4000 1000 4000) # cumulative: 1000 | 1000..5000 | 5000..6000 | 6000..10000
for i in 0 1 2 3; do
  fetch "cut$i"
  [[ $(field "$FETCH" end) == eof ]] || fail "cut$i: expected EOF: $FETCH"
  expect_prefix "$WORK/cut$i.out" "$WORK/pat4k" "${expected[$i]}"
done
grep -q 'cut at down byte 1000$' "$PX_LOG" || fail "no log line for cut at 1000"
grep -q 'cut at down byte 6000$' "$PX_LOG" || fail "no log line for cut at 6000"
stop_proxy
[[ $STATS == *" cuts=2 "* ]] || fail "stats: $STATS"

start_proxy cutbig --upstream "127.0.0.1:$BIG_PORT" --cut-at 777777
fetch cutbig
[[ $(field "$FETCH" end) == eof ]] || fail "cutbig: expected EOF: $FETCH"
expect_prefix "$WORK/cutbig.out" "$WORK/pat1m" 777777
stop_proxy
pass "cut-at cuts at exact cumulative offsets (1000, 6000, 777777) with EOF"

# --- 3. --flip-at: exactly one byte changes, by XOR 1, once ---
start_proxy flip --upstream "127.0.0.1:$SMALL_PORT" --flip-at 1234
fetch flip1
diffs=$(cmp -l "$WORK/flip1.out" "$WORK/pat4k" || true)
[[ $(wc -l <<<"$diffs") -eq 1 ]] || fail "flip: expected one differing byte, got: $diffs"
read -r pos a b <<<"$diffs"
[[ $pos -eq 1235 ]] || fail "flip: byte $((pos - 1)) changed instead of 1234"
[[ $(((8#$a) ^ (8#$b))) -eq 1 ]] || fail "flip: byte changed by more than one bit"
fetch flip2
cmp -s "$WORK/flip2.out" "$WORK/pat4k" || fail "flip: second connection was altered"
grep -q 'conn 1 flipped down byte 1234$' "$PX_LOG" || fail "no log line for the flip"
stop_proxy
[[ $STATS == *" flips=1" ]] || fail "stats: $STATS"
pass "flip-at changes exactly byte 1234 by one bit, once"

# --- 4. --chunk 1: tiny pieces, still intact ---
# Without a gap, how many pieces the reader sees merged depends on scheduling
# (on a loaded machine 20,000 one-byte pieces arrived in 9 reads), so only the
# bytes are checked; with a gap every piece must arrive on its own, which is
# what shows that the proxy writes them one by one.
start_source chunky --bytes 20000
start_proxy chunk --upstream "127.0.0.1:$SRC_PORT" --chunk 1
fetch chunk
"$SRC" pattern --bytes 20000 --out "$WORK/pat20k"
expect_prefix "$WORK/chunk.out" "$WORK/pat20k" 20000
reads=$(field "$FETCH" reads)
stop_proxy
start_proxy chunkgap --upstream "127.0.0.1:$SMALL_PORT" --chunk 1 --chunk-gap-us 100
fetch chunkgap
expect_prefix "$WORK/chunkgap.out" "$WORK/pat4k" 4000
gap_reads=$(field "$FETCH" reads)
[[ $gap_reads -ge 1000 ]] || fail "chunk 1, gap 100 us: only $gap_reads reads for 4000 bytes"
stop_proxy
pass "chunk 1 delivers 20000 bytes intact in $reads reads; with a gap, 4000 bytes in $gap_reads reads"

# --- 5. --delay: one-way latency in both directions ---
start_source echo --echo
ECHO_PORT=$SRC_PORT
start_proxy delay --upstream "127.0.0.1:$ECHO_PORT" --delay 50
out=$("$SRC" ping --connect "127.0.0.1:$PX_PORT" --size 64) || fail "ping via delay proxy: $out"
rtt=$(field "$out" rtt_us)
[[ $rtt -ge 100000 ]] || fail "delay 50: round trip took only $rtt us"
[[ $rtt -lt 2000000 ]] || fail "delay 50: round trip took $rtt us"
stop_proxy
pass "delay 50 gives a ${rtt} us round trip"

# --- 6. --rate: bandwidth cap ---
start_source rate --bytes 50000
start_proxy rate --upstream "127.0.0.1:$SRC_PORT" --rate 100000
fetch rate
"$SRC" pattern --bytes 50000 --out "$WORK/pat50k"
expect_prefix "$WORK/rate.out" "$WORK/pat50k" 50000
ms=$(field "$FETCH" ms)
[[ $ms -ge 400 ]] || fail "rate 100000: 50000 bytes took only $ms ms"
stop_proxy
pass "rate 100000 B/s: 50000 bytes in $ms ms"

# --- 7. --dir up: faults on the client->server direction ---
start_proxy up --upstream "127.0.0.1:$ECHO_PORT" --dir up --flip-at 3
if "$SRC" ping --connect "127.0.0.1:$PX_PORT" --size 16 >/dev/null 2>"$WORK/ping-up.err"; then
  fail "dir up: flipped request came back unchanged"
fi
grep -q 'mismatch at byte 3' "$WORK/ping-up.err" || fail "dir up: $(cat "$WORK/ping-up.err")"
"$SRC" ping --connect "127.0.0.1:$PX_PORT" --size 16 >/dev/null || fail "dir up: second ping"
stop_proxy
[[ $STATS == *" up_bytes=32 cuts=0 flips=1" ]] || fail "stats: $STATS"
pass "dir up flips the request byte 3"

# --- 8. upstream refuses: client is closed, proxy keeps running ---
start_source gone --bytes 1
GONE_PORT=$SRC_PORT
kill "${PIDS[-1]}"
wait "${PIDS[-1]}" 2>/dev/null || true
start_proxy refused --upstream "127.0.0.1:$GONE_PORT"
fetch refused
[[ $(field "$FETCH" bytes) -eq 0 ]] || fail "refused: $FETCH"
grep -q 'conn 1 upstream connect to .* failed' "$PX_LOG" || fail "refused: no log line"
kill -0 "$PX_PID" || fail "proxy died after a refused upstream connect"
stop_proxy
pass "refused upstream closes the client and the proxy keeps running"

# --- 9. --cut-random: deterministic, sorted, in range ---
start_proxy rnd1 --upstream "127.0.0.1:$SMALL_PORT" --cut-random 5 --seed 42 --cut-range 100:200
line1=$(grep -m1 '^proxy: cut points:' "$PX_LOG")
stop_proxy
start_proxy rnd2 --upstream "127.0.0.1:$SMALL_PORT" --cut-random 5 --seed 42 --cut-range 100:200
line2=$(grep -m1 '^proxy: cut points:' "$PX_LOG")
stop_proxy
[[ $line1 == "$line2" ]] || fail "same seed, different points: '$line1' vs '$line2'"
read -r -a pts <<<"${line1#proxy: cut points: }"
[[ ${#pts[@]} -eq 5 ]] || fail "expected 5 cut points: $line1"
prev=0
for p in "${pts[@]}"; do
  [[ $p -ge 100 && $p -lt 200 && $p -ge $prev ]] || fail "bad cut points: $line1"
  prev=$p
done
pass "cut-random: $line1"

# --- 10. a side that resets: what it sent first still goes through ---
# A device that finds a corrupt frame sends its ERROR and closes with bytes unread (a reset),
# while the proxy may be writing toward it; the ERROR must reach the server all the same, as
# on a real path. Ten connections, each a race between the proxy's failed write and its read.
PEER=$(dirname "$0")/proxy_reset_peer.py
python3 "$PEER" upstream "$WORK/reset.port" "$WORK/reset.out" 2>"$WORK/reset-up.log" &
PIDS+=($!)
for ((i = 0; i < 100; i++)); do [[ -s $WORK/reset.port ]] && break; sleep 0.05; done
[[ -s $WORK/reset.port ]] || fail "the reset check's upstream did not start"
start_proxy reset --upstream "127.0.0.1:$(cat "$WORK/reset.port")"
python3 "$PEER" client "$PX_PORT" 10 || fail "the reset check's client failed"
for ((i = 0; i < 100; i++)); do
  [[ $(wc -l <"$WORK/reset.out" 2>/dev/null || echo 0) -ge 10 ]] && break
  sleep 0.05
done
[[ $(wc -l <"$WORK/reset.out") -eq 10 ]] || fail "upstream saw $(wc -l <"$WORK/reset.out") of 10 ends"
lost=$(grep -vc '^BYE ' "$WORK/reset.out" || true)
[[ $lost -eq 0 ]] || fail "$lost of 10 clients' last bytes were dropped at their reset: $(sort "$WORK/reset.out" | uniq -c)"
stop_proxy
pass "a side's bytes before its reset reach the other side (10 of 10)"

# --- 11. bad flags: usage error, exit 2 ---
PX_LOG=
for args in "--chunk abc" "--chunk 0" "--delay -5" "--cut-at 1,,x" "--cut-random 3" \
  "--cut-random 2 --cut-range 9:3" "--dir sideways" "--rate 10x" "--bogus"; do
  rc=0
  # shellcheck disable=SC2086 # word splitting of $args is intended
  "$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$SMALL_PORT" $args 2>/dev/null || rc=$?
  [[ $rc -eq 2 ]] || fail "'$args' gave exit $rc, expected 2"
done
rc=0
"$PROXY" --listen 127.0.0.1:0 2>/dev/null || rc=$?
[[ $rc -eq 2 ]] || fail "missing --upstream gave exit $rc, expected 2"
pass "bad flags give exit 2"

echo "all proxy checks passed"
