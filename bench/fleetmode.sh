# fleetmode.sh - the fleet issue's benchmarks, sourced by run.sh (which
# defines WORK, TCPOTA, LOADGEN, IMG, QUICK, start_serve, start_nginx,
# stop_pid, proc_stats, wait_count, median, log, die):
#   checkin_bench    check-ins/s of `tcpota serve --data` vs nginx, HTTP/1.0
#   transfer_bench   N devices x 1 MiB, fleet mode vs single-image mode
#   registry_bench   the API on a store of 1,000,000 devices
# Each writes $WORK/NAME.md. Servers run on core 0, the load generator on
# core 1 (BENCH_PIN=0: unpinned), so that neither takes the other's core.

PIN_SRV=() PIN_LG=()
if [ "${BENCH_PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_SRV=(taskset -c 0) PIN_LG=(taskset -c 1)
fi
pinned() { [ ${#PIN_SRV[@]} -gt 0 ] && echo "servers on core 0, load generator on core 1" || echo "not pinned"; }

# start_fleet NAME DIR [ARGS]: `tcpota serve --data DIR` with its API (and
# the variables in SRV_ENV in its environment); sets PORT and exports
# TCPOTA_API / TCPOTA_TOKEN for the CLI.
SRV_ENV=()
start_fleet() {
  local name=$1 dir=$2 quiet=--quiet api; shift 2
  [ "${SERVE_LOG:-0}" = 1 ] && quiet=
  : > "$WORK/$name.log" # as run.sh's start_serve: no last run's port read
  env "${SRV_ENV[@]}" "${PIN_SRV[@]}" "$TCPOTA" serve --listen 127.0.0.1:0 --data "$dir" --api 127.0.0.1:0 \
    $quiet --no-progress "$@" > /dev/null 2> "$WORK/$name.log" &
  echo $! > "$WORK/$name.pid"; PIDS+=($!)
  wait_line "$WORK/$name.log" 'listening on' 60
  PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/$name.log" | head -1)
  api=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' "$WORK/$name.log" | head -1)
  export TCPOTA_API="http://127.0.0.1:$api"
  TCPOTA_TOKEN=$(cat "$dir/api.token")
  export TCPOTA_TOKEN
}

# json EXPR: a python expression over the JSON on stdin (bound to j).
json() { python3 -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# CPU seconds of a process's main thread and of its other threads (the
# store's), from schedstat as proc_stats: "MAIN OTHERS".
thread_cpu() {
  local main=0 all
  read -r main _ < "/proc/$1/task/$1/schedstat" || true
  all=$(sched_ns "$1") # read after main: the others' share is never negative
  awk -v m="$main" -v a="$all" 'BEGIN { printf "%.4f %.4f\n", m / 1e9, (a - m) / 1e9 }'
}

kv() { sed -nE "s/.* $1=([^ ]+).*/\\1/p" <<< "$2"; } # KEY LINE

# ---- check-ins per second ---------------------------------------------------
# One contender: a fresh fleet server whose pool of ids is registered first
# (--count), then a measured run. Appends a table row; checks that the
# store holds every id and that the ids answered moved their last_seen.
# Sets RATE (check-ins/s), US (server CPU µs per check-in) and LUS (the
# same, the loop's thread alone: without the store's).
RATE=0 US=0 LUS=0
checkin_tcpota() { # LABEL CONNS [ENV...]
  local label=$1 conns=$2 dir pid out t0 m0 o0 m1 o1 total moved
  shift 2
  dir=$WORK/ci-data-$conns-${#label}
  rm -rf "$dir"
  SRV_ENV=("$@")
  start_fleet ci "$dir"
  SRV_ENV=()
  pid=$(cat "$WORK/ci.pid")
  # Each device checks in twice first (registered, then nothing new): the
  # measured run is a fleet in its steady state.
  "${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PORT" --conns "$conns" --ids "$CI_IDS" \
    --count $((2 * CI_IDS)) --duration 300 > /dev/null || die "check-in warm-up failed"
  sleep 1.1 # last_seen is in whole seconds: the warm-up's all lie before t0
  t0=$(date +%s)
  read -r m0 o0 < <(thread_cpu "$pid")
  out=$("${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PORT" --conns "$conns" --ids "$CI_IDS" \
        --duration "$CI_SECONDS") || log "check-in run had failures: $out"
  read -r m1 o1 < <(thread_cpu "$pid")
  echo "$label $out" >> "$WORK/checkin.raw"
  sleep 0.5 # the last batch of last_seen times commits within 200 ms
  read -r total moved < <("$TCPOTA" device list --json --model bench-ci --limit 100000 |
    json "'%d %d' % (j['total'], sum(d['last_seen'] >= $t0 for d in j['devices']))")
  stop_pid ci
  [ "$total" -eq "$CI_IDS" ] || log "check-in: the store holds $total devices, not $CI_IDS"
  awk -v l="$label" -v c="$conns" -v m0="$m0" -v o0="$o0" -v m1="$m1" -v o1="$o1" \
      -v total="$total" -v moved="$moved" -v ids="$CI_IDS" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      srv = m1 - m0 + o1 - o0; store = o1 - o0
      ok = total == ids && moved >= v["ids_done"] && moved <= v["ids_sent"]
      printf "| %s | %d | %.0f | %.1f | %.1f | %d | %.2f | %.2f (%.0f %%) | %.2f | %s: %d of %d ids stored, %d last_seen moved (answered %d, sent %d) |\n",
        l, c, v["per_s"], v["p50_ms"], v["p99_ms"], v["failed"], srv, store,
        (srv > 0 ? 100 * store / srv : 0), v["client_cpu"], ok ? "yes" : "**NO**", total, ids,
        moved, v["ids_done"], v["ids_sent"] }' <<< "$out" >> "$WORK/checkin.md"
  RATE=$(kv per_s "$out")
  US=$(awk -v m0="$m0" -v o0="$o0" -v m1="$m1" -v o1="$o1" -v d="$(kv done "$out")" \
       'BEGIN { printf "%.2f", (d > 0 ? (m1 - m0 + o1 - o0) * 1e6 / d : 0) }')
  LUS=$(awk -v m0="$m0" -v m1="$m1" -v d="$(kv done "$out")" 'BEGIN { printf "%.2f", (d > 0 ? (m1 - m0) * 1e6 / d : 0) }')
}

checkin_nginx() { # CONNS
  local out pid c0 c1
  NGX_PIN=("${PIN_SRV[@]}")
  start_nginx
  NGX_PIN=()
  pid=$(cat "$WORK/nginx.pid")
  read -r _ _ c0 < <(proc_stats "$pid")
  out=$("${PIN_LG[@]}" "$LOADGEN" http10 --server "127.0.0.1:$NGX_PORT" --path /small.bin --size 100 \
        --conns "$1" --duration "$CI_SECONDS") || log "http10 run had failures: $out"
  read -r _ _ c1 < <(proc_stats "$pid")
  stop_pid nginx
  echo "nginx $out" >> "$WORK/checkin.raw"
  awk -v c="$1" -v c0="$c0" -v c1="$c1" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "| nginx, 100-byte file, HTTP/1.0 | %d | %.0f | %.1f | %.1f | %d | %.2f | | %.2f | |\n",
          c, v["per_s"], v["p50_ms"], v["p99_ms"], v["failed"], c1 - c0, v["client_cpu"] }' \
    <<< "$out" >> "$WORK/checkin.md"
  RATE=$(kv per_s "$out")
  US=$(awk -v c="$c0" -v e="$c1" -v d="$(kv done "$out")" 'BEGIN { printf "%.2f", (d > 0 ? (e - c) * 1e6 / d : 0) }')
}

checkin_bench() {
  local conns t n tt nn tu nu ttu nnu tl ttl ratios=""
  CI_IDS=10000 CI_SECONDS=5
  local cs=(64 256)
  [ $QUICK -eq 1 ] && CI_SECONDS=3 cs=(128)
  {
    echo "## Check-ins per second: tcpota serve --data vs nginx"
    echo
    echo "Every connection: connect, one HELLO (a device id from a pool of $CI_IDS, in turn), read until"
    echo "NO_UPDATE, close; nginx: connect, one HTTP/1.0 GET of a 100-byte file, read to the close."
    echo "$CI_SECONDS s per run, C connections in flight; $(pinned)."
    echo
    echo "| server | C | per s | p50 ms | p99 ms | failed | server CPU s | store thread CPU s (share) | load generator CPU s | recorded |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/checkin.md"
  for conns in "${cs[@]}"; do
    log "check-ins: C=$conns"
    # Interleaved, twice each: this VM's rates drift by tens of per cent
    # between runs a minute apart; the ratio of each pair is what counts.
    checkin_tcpota "tcpota serve --data" "$conns"; t=$RATE tu=$US tl=$LUS
    checkin_nginx "$conns"; n=$RATE nu=$US
    checkin_tcpota "tcpota serve --data (again)" "$conns"; tt=$RATE ttu=$US ttl=$LUS
    checkin_nginx "$conns"; nn=$RATE nnu=$US
    ratios+=$(awk -v c="$conns" -v t="$t" -v tt="$tt" -v n="$n" -v nn="$nn" \
                  -v tu="$tu" -v ttu="$ttu" -v nu="$nu" -v nnu="$nnu" -v tl="$tl" -v ttl="$ttl" \
              'BEGIN{printf "| %d | %.0f, %.0f | %.0f, %.0f | %.2f×, %.2f× | %.1f, %.1f | %.1f, %.1f | %.2f×, %.2f× | %.1f, %.1f | %.2f×, %.2f× |\\n",
                     c, t, tt, n, nn, t / n, tt / nn, tu, ttu, nu, nnu, tu / nu, ttu / nnu, tl, ttl, tl / nu, ttl / nnu}')
  done
  {
    echo
    echo "| C | tcpota check-ins/s (two runs) | nginx requests/s (two runs) | tcpota / nginx (run 1, run 2) | tcpota server CPU µs per check-in | nginx per request | CPU tcpota / nginx | tcpota's loop alone (no store thread) µs | loop alone / nginx |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%b' "$ratios"
    cat <<'EOF'

- Each device of the pool checks in twice first (a warm-up run, `--count`: registered, then a
  check-in with nothing new) and keeps its source address: the measured run is a fleet in its
  steady state. Such a check-in is answered from memory (server/fleet.c, docs/fleet.md) and its
  last_seen time is written with the others of 50 ms in one statement list (STORE_SEEN), committed
  with the store's batch (200 ms).
  "recorded": afterwards `tcpota device list --json` holds every id of the pool, and the devices
  whose last_seen is at or after the run's start are between those answered and those sent.
- Server CPU: every thread's schedstat (ns) over the measured run, for both servers (nginx: master
  + worker). Store share: the CPU time of the server's threads other
  than the main one (the SQLite store thread is the only one) over the whole process's, during
  the measured run.
- Each contender runs twice, interleaved with the other (tcpota, nginx, tcpota, nginx).
EOF
  } >> "$WORK/checkin.md"
  cat "$WORK/checkin.md"
}

# ---- transfers: fleet mode vs single-image mode ------------------------------
transfer_run() { # KIND N -> a table row (KIND: single, fleet)
  local kind=$1 n=$2 pid port out rss c0 c1 hwm srv_ok dir p0 press
  if [ "$kind" != single ]; then
    dir=$WORK/xfer-data
    rm -rf "$dir"
    SERVE_LOG=1 start_fleet xfer "$dir" --max-conns 20000 --idle-timeout 300
    # bench-loadgen's devices: model esp32, version 0.0.0, ids lg-NNNNN.
    "$TCPOTA" image add --version 2.0.0 --model esp32 "$IMG" > /dev/null || die "image add failed"
    "$TCPOTA" rollout create --image 2.0.0 --model esp32 > /dev/null || die "rollout create failed"
  else
    SERVE_LOG=1 start_serve_pinned xfer "$IMG" --max-conns 20000 --idle-timeout 300
  fi
  port=$PORT
  pid=$(cat "$WORK/xfer.pid")
  sleep 0.3
  read -r _ rss c0 < <(proc_stats "$pid")
  p0=$(tcp_pressure_ms)
  out=$("${PIN_LG[@]}" "$LOADGEN" tcpota --server "127.0.0.1:$port" --devices "$n" --size $MIB \
        --timeout 900) || log "transfer ($kind, N=$n) had failures: $out"
  wait_count "$WORK/xfer.log" 'done: image .* verified by the device' "$n" 60 > /dev/null
  read -r hwm _ c1 < <(proc_stats "$pid")
  press=$(awk -v a="$p0" -v b="$(tcp_pressure_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
  srv_ok=$(grep -cE 'done: image .* verified by the device' "$WORK/xfer.log" || true)
  if [ "$kind" != single ]; then
    sleep 0.5
    srv_ok+="; store: $("$TCPOTA" device list --json --state verified --limit 1 | json "j['total']") verified"
  fi
  stop_pid xfer
  echo "$kind $out" >> "$WORK/transfer.raw"
  awk -v k="$kind" -v n="$n" -v rss0="$rss" -v hwm="$hwm" -v c0="$c0" -v c1="$c1" -v so="$srv_ok" \
      -v press="$press" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      conns = v["peak_conns"] > 0 ? v["peak_conns"] : n
      label = k == "single" ? "single image" : "fleet (`--data`, rollout)"
      printf "| %s | %d | %.2f | %.2f | %.2f | %.0f | %.1f | %.2f | %.2f | %.1f | %s | %s of %d; server logged %s |\n",
        label, n, v["wall"], v["p50"], v["p99"],
        v["mbytes_per_s"], hwm / 1024, (hwm - rss0) / conns, c1 - c0, v["client_cpu"], press, v["ok"], n, so
      printf "%s %.3f %.3f %.4f\n", k, v["wall"], (hwm - rss0) / conns, c1 - c0 > "/dev/stderr" }' \
    <<< "$out" >> "$WORK/transfer.md" 2>> "$WORK/transfer.cmp"
}

start_serve_pinned() { # NAME IMAGE [ARGS]: start_serve on the server's core
  local -a SERVE_PIN=("${PIN_SRV[@]}")
  start_serve "$@"
}

transfer_bench() {
  local n=10000 reps rep
  reps=${FLEET_REPS:-3}
  [ $QUICK -eq 1 ] && n=1000 && reps=1
  {
    echo "## Transfers: fleet mode vs single-image mode, $n devices × 1 MiB"
    echo
    echo "The same \`bench-loadgen tcpota\` fleet and image; fleet mode: the image added with"
    echo "\`tcpota image add\` and a rollout for the devices' model (esp32, one wave of 100 %); $(pinned)."
    echo "$reps runs of each, interleaved (single, fleet, single, ...)."
    echo
    echo "| mode | N | all done s | p50 s | p99 s | MB/s | server peak RSS MiB | KiB per connected device | server CPU s | load generator CPU s | TCP memory pressure s | byte-exact |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/transfer.md"
  : > "$WORK/transfer.cmp"
  for rep in $(seq "$reps"); do
    log "transfers: N=$n, single-image mode (run $rep of $reps)"
    transfer_run single "$n"
    sleep 1
    log "transfers: N=$n, fleet mode (run $rep of $reps)"
    transfer_run fleet "$n"
    sleep 1
  done
  # Each pair's ratios (run k of fleet against run k of single), and their
  # medians.
  awk '$1 == "single" { ts[++a] = $2; ms[a] = $3; cs[a] = $4 }
       $1 == "fleet" { tf[++b] = $2; mf[b] = $3; cf[b] = $4 }
       function med(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                     return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
       END {
         for (i = 1; i <= b; i++) { rt[i] = tf[i] / ts[i]; rm[i] = mf[i] / ms[i]; rc[i] = cf[i] / cs[i]
                                    each = each (i > 1 ? ", " : "") sprintf("%.2f×", rt[i]) }
         printf "\nFleet / single, the median of the %d pairs'"'"' ratios: time **%.2f×** (%s), memory per device\n", b, med(rt, b), each
         printf "**%.2f×**, server CPU %.2f× (goal: time and memory within 1.10×).\n", med(rm, b), med(rc, b) }' \
    "$WORK/transfer.cmp" >> "$WORK/transfer.md"
  cat >> "$WORK/transfer.md" <<'EOF'

- At 10,000 the kernel's TCP memory fills on this one host (see the fleet table's notes): a
  device whose segments were dropped waits for TCP's retransmission, and the last of them set
  "all done"; p99 shows the rest. Server CPU: the loop's thread and, in fleet mode, the SQLite
  store's, which records each device's steps.
EOF
  cat "$WORK/transfer.md"
}

# ---- a registry of 1,000,000 devices ----------------------------------------
# The store's schema comes from the server itself (a first start); the rows
# go in by direct SQL into it, which is what a million check-ins would
# leave (a device row, its first history line; 1 % failed, with the failed
# image); the rollout is created through the API, by the store's own code.
registry_seed() { # DIR N
  local fail_hex
  fail_hex=$(printf 'ab%.0s' $(seq 32)) # one failed image for all of them
  # enum store_dev_state (server/store.h): 1 = up-to-date, 10 = failed.
  sqlite3 "$1/tcpota.db" > /dev/null <<EOF
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $2 - 1)
INSERT INTO devices (id, model, version, running, addr, state, image, reason, first_seen, last_seen)
SELECT printf('reg-%07d', i), 'esp32-reg', '1.0.0', '', printf('10.%d.%d.%d', (i >> 16) & 255, (i >> 8) & 255, i & 255),
       CASE WHEN i % 100 = 0 THEN 10 ELSE 1 END,
       CASE WHEN i % 100 = 0 THEN '$fail_hex' ELSE '' END,
       CASE WHEN i % 100 = 0 THEN 'the device reports integrity check failed' ELSE '' END,
       1796131200, 1796131200 + i % 86400 FROM n;
INSERT INTO device_history (device_id, at, state, image, detail)
SELECT id, first_seen, state, image, reason FROM devices;
INSERT INTO device_failures (device_id, failed_id)
SELECT id, X'$fail_hex' FROM devices WHERE state = 10;
COMMIT;
EOF
}

# time_ms CMD...: the wall time of one run of CMD in ms (output discarded).
time_ms() {
  local t0=$EPOCHREALTIME
  "$@" > /dev/null || die "failed: $*"
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f\n", (b - a) * 1000}'
}

curl_ms() { # PATH
  curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $TCPOTA_TOKEN" "$TCPOTA_API$1" |
    awk '{printf "%.1f\n", $1 * 1000}'
}

registry_bench() {
  local n=1000000 dir=$WORK/registry t0 seed_s ro_ms ro_id failed i row cli http db wal
  [ $QUICK -eq 1 ] && n=100000
  log "registry: $n devices"
  rm -rf "$dir"
  start_fleet reg "$dir"; stop_pid reg # creates the schema
  t0=$EPOCHREALTIME
  registry_seed "$dir" "$n"
  seed_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}')
  start_fleet reg "$dir"
  "$TCPOTA" image add --version 2.0.0 --model esp32-reg "$IMG" > /dev/null || die "image add failed"
  t0=$EPOCHREALTIME
  ro_id=$("$TCPOTA" rollout create --json --image 2.0.0 --model esp32-reg --waves 10,50,100 | json "j['id']")
  ro_ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", (b - a) * 1000}')
  failed=$("$TCPOTA" device list --json --model esp32-reg --state failed --limit 1 | json "j['total']")
  {
    echo "## A registry of $n devices"
    echo
    echo "Seeded by direct SQL into the schema the server created ($seed_s s): one row per device, its"
    echo "first history line, 1 % failed ($failed devices) with their failed image; then \`tcpota"
    echo "rollout create --waves 10,50,100\` over all of them through the API: ${ro_ms} ms. Median of 5"
    echo "runs, the server idle otherwise; $(pinned | sed 's/, load generator on core 1//')."
    echo
    echo "| request | \`tcpota\` CLI, whole call ms | HTTP request alone (curl) ms | goal |"
    echo "|---|---:|---:|---|"
  } > "$WORK/registry.md"
  for row in "device list --model esp32-reg --state failed|/v1/devices?model=esp32-reg&state=failed" \
             "rollout show $ro_id|/v1/rollouts/$ro_id"; do
    cli=$(for i in 1 2 3 4 5; do time_ms "$TCPOTA" ${row%%|*}; done | median)
    http=$(for i in 1 2 3 4 5; do curl_ms "${row#*|}"; done | median)
    awk -v r="${row%%|*}" -v c="$cli" -v h="$http" 'BEGIN{
      printf "| `tcpota %s` | %.1f | %.1f | < 100 ms: %s |\n", r, c, h, (c < 100 && h < 100) ? "met" : "**missed**" }' \
      >> "$WORK/registry.md"
  done
  stop_pid reg
  db=$(stat -c %s "$dir/tcpota.db")
  wal=$(stat -c %s "$dir/tcpota.db-wal" 2>/dev/null || echo 0)
  awk -v d="$db" -v w="$wal" -v n="$n" 'BEGIN{
    printf "\nDatabase: tcpota.db %.0f MiB + WAL %.0f MiB after the server stopped (%.0f bytes per device).\n",
      d / 1048576, w / 1048576, (d + w) / n }' >> "$WORK/registry.md"
  {
    echo
    echo "- \`device list\` answers the first page (the server's default limit, 1,000 rows) and the"
    echo "  total; the CLI prints it as a table (to /dev/null here). \`rollout show\` reads the"
    echo "  rollout and its per-wave counts."
  } >> "$WORK/registry.md"
  cat "$WORK/registry.md"
}
