#!/usr/bin/env bash
# The API beyond loopback: it speaks plain HTTP (its token in clear) and
# anyone who reaches it can take all its connections, so tcpota serve warns at start when
# --api listens on more than loopback. Run in a network namespace of its own
# (only its loopback exists: 0.0.0.0 there reaches nothing else).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fleet_lib.sh"
cd "$WORK"
unshare -n true 2> /dev/null || fail "unshare -n failed: this test needs root (network namespaces)"
# serve_says API: starts a fleet server with --api API in a namespace of its
# own, stops it once it listens; its log is in api-NAME.log.
serve_says() {
  rm -rf "$WORK/d"
  # Emptied now: the shell opens the log in the child, and the previous
  # server's "API on" read before that got the new one killed at its start.
  : > "$WORK/api.log"
  unshare -n sh -c 'ip link set lo up && exec "$0" serve --listen 127.0.0.1:0 --data "$1" --api "$2" --no-progress $3' \
    "$TCPOTA" "$WORK/d" "$1" "${2:-}" 2> "$WORK/api.log" &
  local pid=$!
  PIDS+=("$pid")
  wait_line "$WORK/api.log" 'API on'
  kill -TERM "$pid"
  wait "$pid" || fail "the server with --api $1 exited $?: $(tail -3 "$WORK/api.log")"
}
serve_says 0.0.0.0:0
grep -q 'warning: the API listens beyond loopback: it speaks plain HTTP, so its token crosses the network in clear, and anyone who reaches it can take all of its 1024 connections (--api-max-conns; a client without the token may hold 64 KiB of request body on each)' api.log ||
  fail "no warning for --api 0.0.0.0: $(cat api.log)"
serve_says 0.0.0.0:0 --api-max-conns=40
grep -q 'can take all of its 40 connections (--api-max-conns;' api.log ||
  fail "the warning with --api-max-conns 40: $(cat api.log)"
serve_says 127.0.0.1:0
! grep -q 'beyond loopback' api.log || fail "a warning for --api 127.0.0.1: $(grep beyond api.log)"
ok "--api beyond loopback is warned of (plain HTTP, its connections for the taking); loopback is not"
