# fleet_pg_lib.sh - the tests of several nodes on PostgreSQL (sourced after
# lib.sh and fleet_lib.sh): start_pg_cluster starts, in $WORK, PostgreSQL,
# three `tcpota serve --db` nodes and HAProxy in front (scripts/cluster_lib.sh),
# all stopped at the end whatever happens. It sets ports[] (the nodes' device
# ports), apis[], HA_PORT and TCPOTA_TOKEN (the token of every node);
# `api N ARGS...` runs the CLI against node N's API; `slow_devices` starts
# devices that stay in their transfers for seconds.
source "$(dirname "$0")/../../scripts/pg_lib.sh"
source "$(dirname "$0")/../../scripts/cluster_lib.sh"

api() { local n=$1; shift; TCPOTA_API="http://127.0.0.1:${apis[$((n - 1))]}" "$TCPOTA" "$@"; }

# pgq SQL: its rows, unaligned, through the test's own session.
pgq() { "$(pg_bindir)/psql" -X -tA -h "$WORK/pg/sock" -p "$PG_PORT" -U tcpota -d postgres -c "$1"; }
# wait_pg SQL N WHAT: until SQL counts N or more (10 s), or the test fails saying WHAT.
wait_pg() {
  local i
  for ((i = 0; i < 200; i++)); do
    [ "$(pgq "$1")" -ge "$2" ] 2> /dev/null && return 0
    sleep 0.05
  done
  fail "$3 (counted $(pgq "$1"))"
}
# "$LOCKWAIT CONDITION" counts the other sessions waiting on a lock.
LOCKWAIT="SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND"
# hold_table TABLE MODE: a session of the test holds TABLE in MODE (Share,
# Exclusive: what a node's writes of it then wait for) until release_table.
hold_table() {
  "$(pg_bindir)/psql" -X -q -h "$WORK/pg/sock" -p "$PG_PORT" -U tcpota -d postgres \
    -c "BEGIN; LOCK TABLE $1 IN ${2^^} MODE; SELECT pg_sleep(60); COMMIT;" > /dev/null 2>&1 &
  HOLD=$!
  wait_pg "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND l.mode = '${2}Lock' AND l.granted" 1 \
    "the test's session did not take the table $1"
}
release_table() {
  pgq "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" > /dev/null
  wait "$HOLD" 2> /dev/null || true
}

# slow_devices PREFIX N [ARGS...]: devices PREFIX-1..N (flash $WORK/dI, log
# $WORK/PREFIX-I.log) updating through the proxy the test started in front
# of HAProxy (start_proxy ... --rate: PROXY_PORT), retrying quickly and for
# long; sets pids[].
slow_devices() {
  local prefix=$1 n=$2 i
  shift 2
  pids=()
  for i in $(seq 1 "$n"); do
    "$TCPOTA" device --server "127.0.0.1:$PROXY_PORT" --flash "$WORK/d$i" --id "$prefix-$i" \
      --model esp32 --factory-version 1.0.0 --slot-size 1048576 --progress none \
      --backoff-min-ms 100 --backoff-max-ms 1000 --max-attempts 200 "$@" 2> "$WORK/$prefix-$i.log" &
    pids+=($!)
  done
  PIDS+=("${pids[@]}")
}

start_pg_cluster() {
  command -v haproxy > /dev/null || fail "haproxy is not installed (scripts/deps.sh installs it)"
  # The database's owner (an unprivileged user under root) must reach its folder.
  chmod 711 "$WORK"
  trap 'rc=$?; pg_stop "$WORK/pg" > /dev/null 2>&1 || true; set +e; (exit $rc); cleanup' EXIT
  pg_start "$WORK/pg" || fail "cannot start PostgreSQL"
  ports=() apis=()
  local i
  for i in 1 2 3; do
    cluster_node "$WORK" "$i" "$@" || fail "node $i did not start"
    PIDS+=("$NODE_PID")
    ports+=("$NODE_PORT")
    apis+=("$NODE_API")
  done
  # A free port is released before HAProxy binds it: another test's server
  # may take it meanwhile (rarely); then another port.
  for i in 1 2 3; do
    HA_PORT=$(free_port)
    cluster_haproxy "$WORK" "$HA_PORT" "${ports[0]}:${apis[0]}" "${ports[1]}:${apis[1]}" \
      "${ports[2]}:${apis[2]}" && break
    [ "$i" -lt 3 ] || fail "HAProxy did not start (3 ports tried)"
  done
  PIDS+=("$HAPROXY_PID")
  TCPOTA_TOKEN=$(cat "$WORK/n1/api.token")
  export TCPOTA_TOKEN
}

# stop_pg_cluster: HAProxy, then each node still running must exit 0 on SIGTERM.
stop_pg_cluster() {
  local i pid rc
  kill -TERM "$HAPROXY_PID"
  for i in 1 2 3; do
    pid=$(cat "$WORK/n$i.pid")
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid"
    rc=0; wait "$pid" || rc=$?
    [ $rc -eq 0 ] || fail "node $i exited $rc on SIGTERM$(sanitizer_said "$WORK/n$i.log" | sed '1s/^/:\n/')"
  done
}
