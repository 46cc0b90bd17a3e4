# pg_lib.sh - a throwaway PostgreSQL cluster in a scratch folder, for the
# tests and scripts/cluster.sh (sourced; bash). Debian's postgresql package
# is enough: initdb and pg_ctl from /usr/lib/postgresql/<newest>/bin, no
# system service. PostgreSQL refuses to run as root, so as root the cluster
# belongs to an unprivileged user (PG_USER, default nobody). It listens on
# a unix socket in the folder only (no TCP port to collide with), with trust
# authentication: nothing but the folder's owner and root can reach it.
#
#   pg_start DIR     initdb (first time) and start; sets PG_CONNINFO
#   pg_conninfo DIR  prints the conninfo of the cluster started in DIR
#   pg_stop DIR      fast shutdown, waits for it
#   pg_sql DIR SQL   runs SQL with psql as the cluster's superuser
# PG_OPTS: more server options for pg_start ("-c name=value ..."), e.g. a
# preloaded library for a benchmark.

PG_USER=${PG_USER:-nobody}
PG_PORT=${PG_PORT:-5432}   # only names the socket file, in DIR/sock

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || {
    echo "pg_lib: no PostgreSQL server found in /usr/lib/postgresql/*/bin; install the" \
         "Debian package postgresql (scripts/deps.sh does)" >&2
    return 1
  }
  echo "$d"
}

# pg_as CMD...: runs CMD as the cluster's owner (from /: the caller's
# folder may be closed to that user; every path given is absolute).
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    "$@"
  fi
}

pg_start() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  mkdir -p "$dir/sock"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id "$PG_USER" > /dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    chown "$PG_USER" "$dir" "$dir/sock"
    runuser -u "$PG_USER" -- test -w "$dir" || {
      echo "pg_lib: user $PG_USER cannot reach $dir (a parent directory is closed to it);" \
           "use a folder under /tmp" >&2
      return 1
    }
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as "$bin/initdb" -D "$dir/data" -U tcpota --auth=trust --locale=C -E UTF8 --no-sync \
      > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
    -o "-c listen_addresses='' -k $dir/sock -p $PG_PORT -c max_connections=50 ${PG_OPTS:-}" start \
    > /dev/null || { tail -20 "$dir/postgres.log" >&2; return 1; }
  PG_CONNINFO=$(pg_conninfo "$dir")
  export PG_CONNINFO
}

# pg_conninfo DIR: the conninfo of the cluster pg_start DIR started; the
# port (which names the socket file) from its postmaster.pid when it runs,
# whatever PG_PORT says now.
pg_conninfo() {
  local port
  port=$(sed -n 4p "$1/data/postmaster.pid" 2>/dev/null)
  echo "host=$(cd "$1" && pwd)/sock port=${port:-$PG_PORT} user=tcpota dbname=postgres"
}

pg_stop() {
  local dir=$1 bin
  bin=$(pg_bindir) || return 1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  # Ended already (killed, crashed): nothing to stop (pg_ctl said "could
  # not send stop signal" before "stopped"). /proc, not kill -0: a caller
  # who may not signal the server (another user's) must still stop it.
  [ -d "/proc/$(head -1 "$dir/data/postmaster.pid")" ] || return 0
  # A server stopped with SIGSTOP (a test of a hung database that failed
  # before its SIGCONT) would wait out the timeout and stay, stopped, after
  # its folder was removed: carried on first.
  local pm
  pm=$(head -1 "$dir/data/postmaster.pid")
  kill -CONT "$pm" $(pgrep -P "$pm") 2> /dev/null || true
  dir=$(cd "$dir" && pwd)
  pg_as "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop > /dev/null
}

pg_sql() {
  local bin
  bin=$(pg_bindir) || return 1
  "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$1/sock" -p "$PG_PORT" -U tcpota -d postgres -c "$2"
}
