# cluster_lib.sh - several `tcpota serve --db` nodes on one PostgreSQL, behind
# HAProxy in TCP mode, all in one scratch folder (sourced after pg_lib.sh;
# used by scripts/cluster.sh and tests/e2e/test_fleet_pg.sh).
#
#   cluster_node DIR I [ARGS...]   starts node I: DIR/nI (image cache, api.token,
#                                  the same token as node 1's), log DIR/nI.log
#                                  (appended to); sets NODE_PID NODE_PORT NODE_API
#   cluster_haproxy DIR PORT P:A...  HAProxy on 127.0.0.1:PORT in front of the
#                                  device ports P..., each node checked by
#                                  GET /health on its API port A (a TCP check
#                                  keeps a stopped node in rotation); sets
#                                  HAPROXY_PID
#   free_port                      a free TCP port on 127.0.0.1
#   port_free PORT WHAT            whether 127.0.0.1:PORT can be listened on;
#                                  if not, says why (WHAT names the port)
# TCPOTA (the binary) and PG_CONNINFO (pg_start) must be set.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A bind with SO_REUSEADDR fails on Linux only while a socket listens there
# (connections in TIME_WAIT do not count). HAProxy binds with SO_REUSEPORT:
# beside a listener of the same user it would bind too and share the port.
# Any other failure (a port below 1024 without root, not a number) is
# said as it is, not taken for "in use".
port_free() {
  python3 -c 'import errno, socket, sys
port, what = sys.argv[1], sys.argv[2]
try:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port)))
except OSError as e:
    why = ("is in use (another cluster, or another program): stop it, or give"
           if e.errno == errno.EADDRINUSE else "cannot be used (%s): give" % e.strerror)
    sys.exit("cluster: 127.0.0.1:%s, %s, %s another port" % (port, what, why))
except (ValueError, OverflowError):
    sys.exit("cluster: %r, %s, is not a port number: give one in 1..65535" % (port, what))' "$1" "$2"
}

# cluster_wait FILE REGEX PID [FROM]: waits up to 10 s for a line of FILE,
# past its first FROM bytes (what an earlier run wrote), written by process
# PID (a process that exited will not write it: its last lines say why).
cluster_wait() {
  local i
  for ((i = 0; i < 200; i++)); do
    tail -c +$((${4:-0} + 1)) "$1" 2>/dev/null | grep -qE "$2" && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      echo "cluster: $(basename "$1" .log) exited before /$2/ in $1:" >&2
      tail -5 "$1" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "cluster: timed out waiting for /$2/ in $1:" >&2
  tail -5 "$1" >&2
  return 1
}

cluster_node() {
  local dir=$1 i=$2 log
  shift 2
  log="$dir/n$i.log"
  mkdir -p -m 700 "$dir/n$i"
  # One token for every node: any node's API takes it.
  if [ "$i" != 1 ] && [ -f "$dir/n1/api.token" ]; then
    install -m 600 "$dir/n1/api.token" "$dir/n$i/api.token"
  fi
  # Kept across starts: the lines of what ended the last run are what
  # its operator reads after a restart (a trial lost them).
  local from
  from=$(stat -c %s "$log" 2>/dev/null || echo 0)
  echo "--- cluster: node $i started $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$log"
  "$TCPOTA" serve --db "$PG_CONNINFO" --data "$dir/n$i" --listen 127.0.0.1:0 \
    --api 127.0.0.1:0 --no-progress "$@" < /dev/null >> "$log" 2>&1 &
  NODE_PID=$!
  echo "$NODE_PID" > "$dir/n$i.pid"
  cluster_wait "$log" 'listening on' "$NODE_PID" "$from" || return 1
  NODE_PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$log" | tail -1)
  NODE_API=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' "$log" | tail -1)
}

cluster_haproxy() {
  local dir=$1 port=$2 k=0 p
  shift 2
  {
    echo "global"
    echo "  maxconn 4096"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 2s"
    # A node that died refuses: try another one (its health check takes a second or two).
    echo "  retries 3"
    echo "  option redispatch"
    # Longer than the nodes' --idle-timeout: a node, not HAProxy, ends a silent device.
    echo "  timeout client 120s"
    echo "  timeout server 120s"
    echo "frontend devices"
    echo "  bind 127.0.0.1:$port"
    echo "  default_backend nodes"
    echo "backend nodes"
    echo "  balance roundrobin"
    # Checked by HTTP on the node's API port: a node stopped or hung still
    # accepts TCP connections (its kernel's backlog), and a TCP check would
    # keep it in rotation; GET /health needs its loop to answer.
    echo "  option httpchk GET /health"
    echo "  timeout check 1s"
    for p in "$@"; do
      k=$((k + 1))
      echo "  server n$k 127.0.0.1:${p%%:*} check port ${p#*:} inter 1s fall 2 rise 1"
    done
  } > "$dir/haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg" || return 1
  echo "--- cluster: HAProxy started $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$dir/haproxy.log"
  haproxy -db -f "$dir/haproxy.cfg" < /dev/null >> "$dir/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  echo "$HAPROXY_PID" > "$dir/haproxy.pid"
  local i
  for ((i = 0; i < 100; i++)); do
    # Before the probe: an HAProxy that could not bind has exited, and
    # whatever answers on the port is not it.
    kill -0 "$HAPROXY_PID" 2>/dev/null || break
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
      "$port" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "cluster: HAProxy did not start listening on $port:" >&2
  cat "$dir/haproxy.log" >&2
  return 1
}
