# pgmode.sh - the PostgreSQL issue's benchmarks, sourced by run.sh after
# fleetmode.sh (run.sh defines WORK, ROOT, TCPOTA, LOADGEN, IMG, MIB, QUICK,
# PIDS, log, die, wait_line, stop_pid; fleetmode.sh start_fleet,
# kv, json, PIN_SRV, PIN_LG, pinned):
#   pg_bench  in one run, against (a) one node on SQLite, (b) one node on
#             PostgreSQL, (c) three nodes on PostgreSQL behind HAProxy:
#             check-ins per second (bench-loadgen checkin, as checkin_bench)
#             and a fleet transfer (bench-loadgen tcpota, as transfer_bench),
#             with their ratios to (a); and the cost of a check-in on
#             PostgreSQL: statements and round trips (pg_stat_statements)
#             and the CPU of PostgreSQL's processes. Writes $WORK/pg.md.
# It starts PostgreSQL itself in $WORK/pgb (scripts/pg_lib.sh, with
# pg_stat_statements preloaded: Debian's postgresql package ships it), the
# nodes and HAProxy with a config it writes (scripts/cluster_lib.sh), a fresh
# database for every run, and stops them all, on exit too.
# Sizes (environment): PG_BENCH_IDS check-in pool (10000; --quick 2000),
# PG_BENCH_SECONDS per check-in run (5; quick 3), PG_BENCH_CONNS connections
# in flight (64), PG_BENCH_DEVICES devices of the transfer (500; quick 100).

PGB_DIR="" PGB_DB=0 PGB_NODES=() PGB_HA="" PGB_PORT=0 PGB_API=0 PGB_HA_PID=""

# Pins a running process (all its threads) to the servers' core, like
# start_fleet's taskset (no-op when not pinned).
pgb_pin() {
  [ ${#PIN_SRV[@]} -gt 0 ] || return 0
  taskset -a -p -c "${PIN_SRV[2]}" "$1" > /dev/null 2>&1 || true
}

# The postmaster's pid.
pgb_postmaster() { head -1 "$PGB_DIR/pg/data/postmaster.pid"; }

# CPU ticks of every PostgreSQL process: the postmaster with what its
# ended children used (cutime, cstime), plus the children alive now.
pgb_pg_ticks() {
  local pm p ticks
  pm=$(pgb_postmaster)
  ticks=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm" || true); do
    [ -r "/proc/$p/stat" ] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$ticks"
}

# The same in seconds.
pgb_pg_cpu() {
  awk -v t="$(pgb_pg_ticks)" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / h }'
}

# CPU seconds of the running nodes and HAProxy (every thread's schedstat).
pgb_srv_cpu() {
  local p ns=0
  for p in "${PGB_NODES[@]}" $PGB_HA_PID; do ns=$((ns + $(sched_ns "$p"))); done
  awk -v n="$ns" 'BEGIN { printf "%.2f", n / 1e9 }'
}

pgb_sql() { pg_sql "$PGB_DIR/pg" "$1"; }
pgb_val() { # SQL: its one value
  "$(pg_bindir)/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$PGB_DIR/pg/sock" -p "$PG_PORT" -U tcpota \
    -d postgres -c "$1"
}

pgb_start_pg() {
  PGB_DIR=$WORK/pgb
  mkdir -p "$PGB_DIR"
  chmod 711 "$PGB_DIR"
  PG_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
    pg_start "$PGB_DIR/pg" || die "PostgreSQL did not start"
  pgb_sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" || die "no pg_stat_statements"
  trap 'pgb_stop_servers; pg_stop "$PGB_DIR/pg" > /dev/null 2>&1 || true; cleanup' EXIT
  pgb_pin "$(pgb_postmaster)"
  for p in $(pgrep -P "$(pgb_postmaster)" || true); do pgb_pin "$p"; done
}

pgb_stop_pg() {
  # pg_ctl detaches the postmaster from this script: its CPU is this run's
  # own all the same (run.sh, own_ticks), not other load.
  PH_EXTRA_TICKS=$((PH_EXTRA_TICKS + $(pgb_pg_ticks 2>/dev/null || echo 0)))
  pg_stop "$PGB_DIR/pg" > /dev/null 2>&1 || true
  trap cleanup EXIT
}

# pgb_start_servers SETUP [ARGS]: sqlite (one node, --data), pg1 (one node,
# --db), pg3 (three nodes and HAProxy); a fresh store each time. Sets
# PGB_PORT (where devices connect), PGB_NODES, and the CLI's TCPOTA_API
# (node 1's) and TCPOTA_TOKEN.
pgb_start_servers() {
  local setup=$1 n=1 i dir ports=() quiet=--quiet
  shift
  [ "${SERVE_LOG:-0}" = 1 ] && quiet=
  PGB_NODES=() PGB_HA_PID=""
  dir=$WORK/pgb-$setup-$((++PGB_DB))
  mkdir -p "$dir"
  chmod 711 "$dir"
  if [ "$setup" = sqlite ]; then
    start_fleet pgb-sqlite "$dir/data" "$@"
    PGB_NODES=("$(cat "$WORK/pgb-sqlite.pid")")
    PGB_PORT=$PORT
    return 0
  fi
  [ "$setup" = pg3 ] && n=3
  pgb_sql "CREATE DATABASE b$PGB_DB" || die "cannot create database b$PGB_DB"
  PG_CONNINFO="host=$PGB_DIR/pg/sock port=$PG_PORT user=tcpota dbname=b$PGB_DB"
  for ((i = 1; i <= n; i++)); do
    cluster_node "$dir" "$i" $quiet "$@" || die "node $i did not start (log: $(tail -3 "$dir/n$i.log"))"
    PIDS+=("$NODE_PID")
    PGB_NODES+=("$NODE_PID")
    ports+=("$NODE_PORT")
    [ "$i" = 1 ] && export TCPOTA_API="http://127.0.0.1:$NODE_API"
    pgb_pin "$NODE_PID"
  done
  for p in $(pgrep -P "$(pgb_postmaster)" || true); do pgb_pin "$p"; done
  TCPOTA_TOKEN=$(cat "$dir/n1/api.token")
  export TCPOTA_TOKEN
  PGB_PORT=${ports[0]}
  if [ "$n" -gt 1 ]; then
    PGB_PORT=$(free_port)
    cluster_haproxy "$dir" "$PGB_PORT" "${ports[@]}" || die "HAProxy did not start"
    PIDS+=("$HAPROXY_PID")
    PGB_HA_PID=$HAPROXY_PID
    pgb_pin "$HAPROXY_PID"
  fi
  PGB_LOGS=("$dir"/n*.log)
}

pgb_stop_servers() {
  local p
  for p in "${PGB_NODES[@]}" $PGB_HA_PID; do
    kill -TERM "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
  done
  PGB_NODES=() PGB_HA_PID=""
}

pgb_label() {
  case $1 in
    sqlite) echo "(a) 1 node, SQLite" ;;
    pg1) echo "(b) 1 node, PostgreSQL" ;;
    pg3) echo "(c) 3 nodes, PostgreSQL, HAProxy" ;;
  esac
}

# The statements PostgreSQL ran in database b$PGB_DB since the last reset:
# "STATEMENTS TXN_CONTROL" (calls of queries, and of BEGIN, COMMIT,
# SAVEPOINT, RELEASE: each its own round trip from the node). The SET LOCAL
# and the txid_current() that a list's BEGIN carries in its query string
# (server/store_pg_sql.c, pg_begin) ride in BEGIN's round trip: not counted.
pgb_calls() {
  pgb_val "SELECT coalesce(sum(calls) FILTER (WHERE query !~* '^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET)'), 0)
             || ' ' || coalesce(sum(calls) FILTER (WHERE query ~* '^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET)'), 0)
           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'b$PGB_DB')
             AND query !~* '^SET LOCAL synchronous_commit' AND query !~* '^SELECT txid_current[(][)]$'"
}

# One check-in run against SETUP: the pool registered first, then measured.
# Appends a row to $WORK/pg-ci.md and, on PostgreSQL, to $WORK/pg-cost.md.
# Sets PGB_RATE.
PGB_RATE=0
pgb_checkin() { # SETUP
  local setup=$1 out s0 s1 p0 p1 st tc total done_
  pgb_start_servers "$setup"
  "${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PGB_PORT" --conns "$PGB_CONNS" \
    --ids "$PGB_IDS" --count "$PGB_IDS" --duration 300 > /dev/null || die "check-in warm-up failed ($setup)"
  sleep 1.1
  [ "$setup" != sqlite ] && pgb_val "SELECT pg_stat_statements_reset()" > /dev/null
  s0=$(pgb_srv_cpu)
  [ "$setup" != sqlite ] && p0=$(pgb_pg_cpu)
  out=$("${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PGB_PORT" --conns "$PGB_CONNS" \
        --ids "$PGB_IDS" --duration "$PGB_SECONDS") || log "check-in run ($setup) had failures: $out"
  sleep 0.5 # the last batch commits: its CPU and its statements both counted
  s1=$(pgb_srv_cpu)
  p1=-
  if [ "$setup" != sqlite ]; then
    p1=$(pgb_pg_cpu)
    read -r st tc < <(pgb_calls)
    pgb_val "SELECT calls || ' ' || regexp_replace(left(query, 90), '\s+', ' ', 'g')
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'b$PGB_DB')
             ORDER BY calls DESC LIMIT 12" > "$WORK/pgb-top-$setup.txt"
  fi
  total=$("$TCPOTA" device list --json --model bench-ci --limit 1 | json "j['total']")
  pgb_stop_servers
  echo "pg-$setup $out" >> "$WORK/checkin.raw"
  [ "$total" -eq "$PGB_IDS" ] || log "check-in ($setup): the store holds $total devices, not $PGB_IDS"
  done_=$(kv done "$out")
  awk -v l="$(pgb_label "$setup")" -v s="$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", b - a}')" \
      -v p="$( [ "$p1" = - ] && echo - || awk -v a="$p0" -v b="$p1" 'BEGIN{printf "%.2f", b - a}')" \
      -v total="$total" -v ids="$PGB_IDS" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "| %s | %.0f | %.1f | %.1f | %d | %s | %s | %.2f | %d of %d |\n", l, v["per_s"],
          v["p50_ms"], v["p99_ms"], v["failed"], s, p, v["client_cpu"], total, ids }' \
    <<< "$out" >> "$WORK/pg-ci.md"
  if [ "$setup" != sqlite ]; then
    awk -v l="$(pgb_label "$setup")" -v d="$done_" -v st="$st" -v tc="$tc" -v p0="$p0" -v p1="$p1" 'BEGIN {
      printf "| %s | %d | %d | %.2f | %d | %.2f | %.2f | %.2f | %.0f |\n", l, d, st, (d ? st / d : 0),
        tc, (d ? tc / d : 0), (d ? (st + tc) / d : 0), p1 - p0, (d ? (p1 - p0) / d * 1e6 : 0) }' \
      >> "$WORK/pg-cost.md"
  fi
  PGB_RATE=$(kv per_s "$out")
}

# One fleet transfer against SETUP: PG_BENCH_DEVICES devices x 1 MiB through
# a rollout. Appends a row to $WORK/pg-xfer.md; sets PGB_XRATE (MB/s).
PGB_XRATE=0
pgb_transfer() { # SETUP
  local setup=$1 out s0 s1 p0 p1 ok=0 f i stored
  SERVE_LOG=1 pgb_start_servers "$setup" --max-conns 20000 --idle-timeout 300
  [ "$setup" = sqlite ] && PGB_LOGS=("$WORK/pgb-sqlite.log")
  "$TCPOTA" image add --version 2.0.0 --model esp32 "$IMG" > /dev/null || die "image add failed ($setup)"
  "$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || die "rollout create failed ($setup)"
  sleep 0.3
  s0=$(pgb_srv_cpu)
  p0=$([ "$setup" = sqlite ] && echo 0 || pgb_pg_cpu)
  out=$("${PIN_LG[@]}" "$LOADGEN" tcpota --server "127.0.0.1:$PGB_PORT" --devices "$PGB_DEVICES" \
        --size "$MIB" --timeout 900) || log "transfer ($setup) had failures: $out"
  for ((i = 0; i < 600; i++)); do # the servers' own count, at most 60 s
    ok=0
    for f in "${PGB_LOGS[@]}"; do
      ok=$((ok + $(grep -cE 'done: image .* verified by the device' "$f" || true)))
    done
    [ "$ok" -ge "$PGB_DEVICES" ] && break
    sleep 0.1
  done
  s1=$(pgb_srv_cpu)
  p1=$([ "$setup" = sqlite ] && echo - || pgb_pg_cpu)
  sleep 0.5
  stored=$("$TCPOTA" device list --json --state verified --limit 1 | json "j['total']")
  pgb_stop_servers
  echo "pg-xfer-$setup $out" >> "$WORK/transfer.raw"
  awk -v l="$(pgb_label "$setup")" -v n="$PGB_DEVICES" -v so="$ok" -v st="$stored" \
      -v s="$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", b - a}')" \
      -v p="$( [ "$p1" = - ] && echo - || awk -v a="$p0" -v b="$p1" 'BEGIN{printf "%.2f", b - a}')" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "| %s | %d | %.2f | %.2f | %.2f | %.0f | %s | %s | %.1f | %s of %d; servers logged %d, store: %d verified |\n",
          l, n, v["wall"], v["p50"], v["p99"], v["mbytes_per_s"], s, p, v["client_cpu"], v["ok"], n, so, st }' \
    <<< "$out" >> "$WORK/pg-xfer.md"
  PGB_XRATE=$(kv mbytes_per_s "$out")
}

pg_bench() {
  local setup ci=() xf=() k
  command -v haproxy > /dev/null || die "haproxy is not installed (scripts/deps.sh installs it)"
  . "$ROOT/scripts/pg_lib.sh"
  . "$ROOT/scripts/cluster_lib.sh"
  PGB_IDS=${PG_BENCH_IDS:-10000} PGB_SECONDS=${PG_BENCH_SECONDS:-5}
  PGB_CONNS=${PG_BENCH_CONNS:-64} PGB_DEVICES=${PG_BENCH_DEVICES:-500}
  if [ $QUICK -eq 1 ]; then
    PGB_IDS=${PG_BENCH_IDS:-2000} PGB_SECONDS=${PG_BENCH_SECONDS:-3} PGB_DEVICES=${PG_BENCH_DEVICES:-100}
  fi
  log "pg: PostgreSQL $(basename "$(dirname "$(pg_bindir)")") in $WORK/pgb"
  pgb_start_pg
  : > "$WORK/pg-ci.md"; : > "$WORK/pg-cost.md"; : > "$WORK/pg-xfer.md"
  for setup in sqlite pg1 pg3; do
    log "pg: check-ins, $(pgb_label "$setup")"
    pgb_checkin "$setup"; ci+=("$PGB_RATE")
    log "pg: transfer, $(pgb_label "$setup")"
    pgb_transfer "$setup"; xf+=("$PGB_XRATE")
  done
  pgb_stop_pg
  {
    echo "## PostgreSQL: one node on SQLite, one and three nodes on PostgreSQL"
    echo
    echo "Check-ins: a pool of $PGB_IDS device ids registered first, then $PGB_SECONDS s of check-ins"
    echo "again, $PGB_CONNS connections in flight (as the check-in benchmark). Transfer: $PGB_DEVICES devices"
    echo "× 1 MiB through a rollout, all at once (as the fleet transfer benchmark). A fresh store for"
    echo "every run; $(pinned) (the nodes, HAProxy and PostgreSQL's processes all on the servers' core)."
    echo
    echo "| setup | check-ins/s | ratio to (a) | transfer MB/s | ratio to (a) |"
    echo "|---|---:|---:|---:|---:|"
    for k in 0 1 2; do
      setup=$(echo sqlite pg1 pg3 | cut -d' ' -f$((k + 1)))
      awk -v l="$(pgb_label "$setup")" -v c="${ci[$k]}" -v c0="${ci[0]}" -v x="${xf[$k]}" -v x0="${xf[0]}" \
        'BEGIN { printf "| %s | %.0f | %.2f× | %.0f | %.2f× |\n", l, c, (c0 > 0 ? c / c0 : 0), x, (x0 > 0 ? x / x0 : 0) }'
    done
    echo
    echo "### Check-ins"
    echo
    echo "| setup | per s | p50 ms | p99 ms | failed | nodes + HAProxy CPU s | PostgreSQL CPU s | load generator CPU s | ids stored |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    cat "$WORK/pg-ci.md"
    echo
    echo "### The cost of a check-in on PostgreSQL"
    echo
    echo "| setup | check-ins | statements | per check-in | transaction control (BEGIN, COMMIT, SAVEPOINT, ...) | per check-in | round trips per check-in | PostgreSQL CPU s | µs per check-in |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    cat "$WORK/pg-cost.md"
    echo
    echo "The statements run most during the check-ins on one node (calls, statement):"
    echo
    echo '```'
    cat "$WORK/pgb-top-pg1.txt"
    echo '```'
    echo
    echo "### Transfer"
    echo
    echo "| setup | N | all done s | p50 s | p99 s | MB/s | nodes + HAProxy CPU s | PostgreSQL CPU s | load generator CPU s | byte-exact |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    cat "$WORK/pg-xfer.md"
    cat <<'EOF'

- Statements and round trips: PostgreSQL's pg_stat_statements over the measured check-in run
  (reset after the warm-up), divided by the check-ins answered; every write of the run is in
  it (check-ins batch their last_seen writes, so a check-in's share is what it costs on
  average). A node sends each statement on its own and waits for its answer (no pipelining):
  a round trip is a statement or a transaction control statement, but for the SET LOCAL and
  the txid_current() that ride in BEGIN's query string. Statements are prepared once per
  connection (not counted).
- PostgreSQL CPU: utime + stime of the postmaster, of its children alive at the end and of those
  that ended (cutime, cstime), from /proc, over the run and the last batch's commit after it.
- Nodes + HAProxy CPU: every thread of every node (the loop and the store thread, schedstat),
  and HAProxy.
- pg_stat_statements (track = all) is loaded for (b) and (c) alone: its own cost, a few per cent
  of PostgreSQL's, counts against their ratios to (a).
EOF
  } > "$WORK/pg.md"
  cat "$WORK/pg.md"
}
