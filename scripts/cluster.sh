#!/usr/bin/env bash
# cluster.sh start|stop|status DIR, restart DIR N: a whole fleet deployment on this machine,
# in DIR (created): a PostgreSQL cluster (DIR/pg), three `tcpota serve --db`
# nodes (DIR/n1..n3: image cache, api.token, logs DIR/nN.log) and HAProxy in
# TCP mode in front of them (DIR/haproxy.cfg). Devices connect to HAProxy;
# the CLI talks to any node's API with the one token. `make cluster` runs
# `start /tmp/tcpota-cluster` (CLUSTER_DIR). docs/scaling.md shows the same on
# several machines.
#
# Environment: TCPOTA (default: build/cli/tcpota, else tcpota on PATH),
# CLUSTER_PORT (HAProxy's device port, default 8070), CLUSTER_API (node 1's
# API port, default 8071; nodes 2 and 3 take the next ones).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/pg_lib.sh"
. "$here/cluster_lib.sh"

usage() { echo "usage: $0 start|stop|status DIR, or $0 restart DIR N (node N, 1..3)" >&2; exit 2; }
[ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$1" = restart ]; } || usage
cmd=$1
dir=$(realpath -m "$2")
NODES=3

if [ -z "${TCPOTA:-}" ]; then
  if [ -x "$here/../build/cli/tcpota" ]; then TCPOTA="$here/../build/cli/tcpota"; else TCPOTA=$(command -v tcpota || true); fi
fi

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  local f=$1 pid i
  running "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid"
  # 20 s: a node whose database hangs waits up to 15 s for it while it
  # stops (FLEET_STOP_DB_WAIT_S), to hand over the device steps it kept.
  for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "cluster: $f ($pid) did not stop in 20 s; killing it" >&2; kill -KILL "$pid"; }
  rm -f "$f"
}

do_stop() {
  stop_pid "$dir/haproxy.pid"
  local i
  for i in $(seq 1 $NODES); do stop_pid "$dir/n$i.pid"; done
  pg_stop "$dir/pg" || true
  echo "cluster: stopped ($dir)"
}

do_start() {
  [ -n "$TCPOTA" ] && [ -x "$TCPOTA" ] || { echo "cluster: no tcpota binary; run make build or set TCPOTA" >&2; exit 1; }
  command -v haproxy > /dev/null || { echo "cluster: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
  running "$dir/haproxy.pid" && { echo "cluster: already running in $dir; $0 stop $dir first" >&2; exit 1; }
  port_free "${CLUSTER_PORT:-8070}" "the devices' port (CLUSTER_PORT)" || exit 1
  mkdir -p "$dir"
  # From here, a failure stops what was started.
  trap 'echo "cluster: start failed; stopping what started" >&2; do_stop' ERR
  pg_start "$dir/pg"
  local i ports=() api=${CLUSTER_API:-8071}
  for i in $(seq 1 $NODES); do
    cluster_node "$dir" "$i" --api "127.0.0.1:$((api + i - 1))"
    ports+=("$NODE_PORT:$NODE_API")
  done
  cluster_haproxy "$dir" "${CLUSTER_PORT:-8070}" "${ports[@]}"
  trap - ERR
  cat <<MSG
cluster: running in $dir
  devices:    127.0.0.1:${CLUSTER_PORT:-8070} (HAProxy, TCP mode) -> nodes on ${ports[*]} (device port:API port, checked by GET /health)
  APIs:       http://127.0.0.1:$api .. $((api + NODES - 1)), token $dir/n1/api.token (the same on every node)
  database:   $PG_CONNINFO
  try:        $TCPOTA image add --api 127.0.0.1:$api --data $dir/n1 --version 2.0.0 --model esp32 fw.bin
  stop:       $0 stop $dir
MSG
}

# Node N again (stopped first if it runs), on the device and API ports
# HAProxy's config names for it, so that its health check takes it back.
do_restart() {
  local n=$3 line port api
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le $NODES ] || { echo "cluster: node '$n': give 1..$NODES" >&2; exit 2; }
  [ -f "$dir/haproxy.cfg" ] && running "$dir/haproxy.pid" ||
    { echo "cluster: no cluster runs in $dir ($0 start $dir)" >&2; exit 1; }
  line=$(grep -E "^  server n$n " "$dir/haproxy.cfg") || { echo "cluster: node $n is not in $dir/haproxy.cfg" >&2; exit 1; }
  port=$(sed -nE 's/.* 127\.0\.0\.1:([0-9]+) check port ([0-9]+).*/\1/p' <<< "$line")
  api=$(sed -nE 's/.* 127\.0\.0\.1:([0-9]+) check port ([0-9]+).*/\2/p' <<< "$line")
  stop_pid "$dir/n$n.pid"
  PG_CONNINFO=$(pg_conninfo "$dir/pg")
  cluster_node "$dir" "$n" --listen "127.0.0.1:$port" --api "127.0.0.1:$api" ||
    { echo "cluster: node $n did not start again: see $dir/n$n.log" >&2; exit 1; }
  echo "cluster: node $n running again (pid $NODE_PID), devices 127.0.0.1:$port, API 127.0.0.1:$api"
}

do_status() {
  local f
  for f in "$dir"/haproxy.pid "$dir"/n*.pid; do
    [ -e "$f" ] || continue
    if running "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid): not running"; fi
  done
  # Its pid file outlives a crash (a trial: "running" after kill -9): the
  # process named in its first line must be there.
  if [ -f "$dir/pg/data/postmaster.pid" ] && [ -d "/proc/$(head -1 "$dir/pg/data/postmaster.pid")" ]; then
    echo "postgres: running (pid $(head -1 "$dir/pg/data/postmaster.pid"))"
  elif [ -f "$dir/pg/data/postmaster.pid" ]; then
    echo "postgres: not running (it ended without its stop: see $dir/pg/postgres.log)"
  else
    echo "postgres: not running"
  fi
}

# stop and status on a folder that holds no cluster (a typo in DIR or
# CLUSTER_DIR) say so, rather than "stopped" or "postgres: not running".
if [ "$cmd" != start ] && [ ! -d "$dir" ]; then
  echo "cluster: $dir does not exist: no cluster was started there (give the DIR of $0 start DIR)" >&2
  exit 1
fi

case $cmd in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  restart) do_restart "$@" ;;
  *) usage ;;
esac
