# fleet_pg_lib.sh - the tests of several nodes on PostgreSQL (sourced after
# lib.sh and fleet_lib.sh): start_pg_cluster starts, in $WORK, PostgreSQL,
# three `tcpota serve --db` nodes and HAProxy in front (scripts/cluster_lib.sh),
# all stopped at the end whatever happens. It sets ports[] (the nodes' device
# ports), apis[], HA_PORT and TCPOTA_TOKEN (the token of every node);
# `api N ARGS...` runs the CLI against node N's API.
source "$(dirname "$0")/../../scripts/pg_lib.sh"
source "$(dirname "$0")/../../scripts/cluster_lib.sh"

api() { local n=$1; shift; TCPOTA_API="http://127.0.0.1:${apis[$((n - 1))]}" "$TCPOTA" "$@"; }

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
  HA_PORT=$(free_port)
  cluster_haproxy "$WORK" "$HA_PORT" "${ports[@]}" || fail "HAProxy did not start"
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
    [ $rc -eq 0 ] || fail "node $i exited $rc on SIGTERM"
  done
}
