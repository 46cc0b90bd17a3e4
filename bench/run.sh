#!/usr/bin/env bash
# run.sh [--quick] - every tcpota benchmark (bench/README.md): slow link,
# fleet scale, device footprint, resume cost, and fleet mode's (check-ins,
# transfers, a registry of a million devices: fleetmode.sh; TLS check-ins
# and transfers: tlsmode.sh; many devices at once: scalemode.sh; SQLite
# against one and three nodes on PostgreSQL: pgmode.sh). Installs what it
# lacks with apt-get, builds in $BENCH_BUILD (default /tmp/build-bench),
# prints the tables and writes them to bench/results/latest.md (--quick:
# quick.md). BENCH_ONLY="checkin transfers" runs only the named ones of
# footprint link fleet twohost resume checkin transfers registry tls many pg (tls: TLS
# check-ins and transfers; tlsxfer names the TLS transfers alone), and writes
# bench/results/only-NAMES.md (quick: only-NAMES-quick.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
BUILD=${BENCH_BUILD:-/tmp/build-bench}
RESULTS=$ROOT/bench/results
MIB=1048576
BENCH_ALL="footprint link fleet smallframes twohost resume checkin transfers registry tls many pg"
BENCH_ONLY=${BENCH_ONLY:-$BENCH_ALL}
want() { [[ " ${BENCH_ONLY//,/ } " == *" $1 "* ]]; }

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Names BENCH_ONLY may hold, and the settings runs take from the
# environment, checked before anything is installed or built.
for b in ${BENCH_ONLY//,/ }; do
  [[ " $BENCH_ALL tlsxfer " == *" $b "* ]] ||
    die "BENCH_ONLY names '$b', which is no benchmark; the names: $BENCH_ALL tlsxfer"
done
[ -z "${FLEET_REPS:-}" ] || [[ $FLEET_REPS =~ ^[1-9][0-9]?$ ]] ||
  die "FLEET_REPS=$FLEET_REPS: give the runs per N and server as a number, 1 to 99 (default 3)"

# ---- dependencies ---------------------------------------------------------
install_missing() {
  local pkgs=() policy_added=0
  # What the build needs (libevent, OpenSSL, SQLite, jansson, libpq, ...):
  # the one list `make demo` installs from.
  bash "$ROOT/scripts/deps.sh" --demo
  command -v nginx >/dev/null || pkgs+=(nginx-light)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v sqlite3 >/dev/null || pkgs+=(sqlite3)
  command -v arm-none-eabi-gcc >/dev/null || pkgs+=(gcc-arm-none-eabi)
  [ -d /usr/lib/arm-none-eabi/newlib ] || pkgs+=(libnewlib-arm-none-eabi)
  command -v riscv64-unknown-elf-gcc >/dev/null || pkgs+=(gcc-riscv64-unknown-elf)
  [ -f /usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs ] || pkgs+=(picolibc-riscv64-unknown-elf)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pkgs+=(postgresql)
  command -v haproxy >/dev/null || pkgs+=(haproxy)
  command -v ip >/dev/null || pkgs+=(iproute2) # twohost.sh's network namespaces
  [ ${#pkgs[@]} -eq 0 ] && return 0
  log "installing ${pkgs[*]}"
  # nginx's package would start a system service on port 80: the benchmark
  # runs its own nginx, so forbid service starts during the install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  [ $policy_added -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# ---- processes --------------------------------------------------------------
WORK=$(mktemp -d /tmp/tcpota-bench.XXXXXX)
chmod 755 "$WORK" # nginx's worker (www-data) reads the image from here
SHM=$(mktemp -d /dev/shm/tcpota-bench.XXXXXX 2>/dev/null || mktemp -d /tmp/tcpota-bench-flash.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # A run stopped inside many_bench leaves no kernel setting changed.
  if declare -F many_tcp_mem_restore > /dev/null; then many_tcp_mem_restore; fi
  if declare -F twohost_teardown > /dev/null; then twohost_teardown; fi
  rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT

wait_line() { # FILE REGEX [SECONDS]
  local i
  for ((i = 0; i < ${3:-10} * 20; i++)); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  die "timed out waiting for /$2/ in $1"
}

# The start_* functions run a server in the background (its pid in
# $WORK/NAME.pid) and set PORT to the port it listens on.
# SERVE_LOG=1 start_serve ...: without --quiet, so that the server logs a
# "done: image ... verified by the device" line per device (the fleet
# benchmark counts them).
# SERVE_PIN: a command prefix for the server (taskset, ip netns exec);
# SERVE_ADDR: the address it listens on (default 127.0.0.1).
PORT=0 SERVE_PIN=() SERVE_ADDR=127.0.0.1
start_serve() { # NAME IMAGE [ARGS]
  local name=$1 img=$2 quiet=--quiet; shift 2
  [ "${SERVE_LOG:-0}" = 1 ] && quiet=
  # Emptied here, before the launch: the child's own truncation may come
  # after wait_line has read the last run's "listening on" (its port, now
  # closed: 10,000 devices refused, 2026-12-05).
  : > "$WORK/$name.log"
  "${SERVE_PIN[@]}" "$TCPOTA" serve --listen "$SERVE_ADDR:0" --version 2.0.0 $quiet --no-progress "$@" "$img" \
    > /dev/null 2> "$WORK/$name.log" &
  echo $! > "$WORK/$name.pid"; PIDS+=($!)
  wait_line "$WORK/$name.log" 'listening on'
  PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+),.*/\1/p' "$WORK/$name.log" | head -1)
}

start_proxy() { # NAME UPSTREAM_PORT [ARGS]
  local name=$1 up=$2; shift 2
  : > "$WORK/$name.log" # as start_serve
  "$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$up" --quiet "$@" \
    > /dev/null 2> "$WORK/$name.log" &
  echo $! > "$WORK/$name.pid"; PIDS+=($!)
  wait_line "$WORK/$name.log" 'listening on'
  PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+).*/\1/p' "$WORK/$name.log" | head -1)
}

start_raw() {
  : > "$WORK/raw.log" # as start_serve
  "$RAW" serve --listen 127.0.0.1:0 "$IMG" > /dev/null 2> "$WORK/raw.log" &
  echo $! > "$WORK/raw.pid"; PIDS+=($!)
  wait_line "$WORK/raw.log" 'listening on'
  PORT=$(sed -nE 's/.*listening on [^ ]*:([0-9]+).*/\1/p' "$WORK/raw.log" | head -1)
}

NGX_PORT=0
NGX_PIN=() # a command prefix, e.g. (taskset -c 0)
NGX_TLS="" # a directory with srv.pem, srv.key and ticket.key: serve HTTPS with them (tlsmode.sh)
NGX_KTLS="" # 1: with NGX_TLS, let OpenSSL hand records to kernel TLS where the kernel has it
NGX_ADDR=127.0.0.1 # the address nginx listens on
NGX_NETNS=() # a command prefix that reaches NGX_ADDR, e.g. (ip netns exec NS) (twohost.sh)
start_nginx() { # one worker, like tcpota serve's one thread; sets NGX_PORT
  local try
  for try in 1 2 3 4 5; do
    start_nginx_once && return 0
    stop_pid nginx
  done
  cat "$WORK/nginx/stderr" >&2
  die "nginx did not start"
}
start_nginx_once() {
  local d=$WORK/nginx
  mkdir -p "$d/tmp" "$d/www"
  chmod 755 "$d" "$d/www"
  cp "$IMG" "$d/www/image.bin"
  head -c 100 "$IMG" > "$d/www/small.bin" # the check-in benchmark's answer
  chmod 644 "$d/www/image.bin" "$d/www/small.bin"
  # Below the ephemeral ports (32768 on): the load generator's thousands of
  # connections in TIME_WAIT must not hold the port nginx is to listen on.
  NGX_PORT=$(( 20000 + RANDOM % 12000 ))
  local ssl="" tls_conf="" url="http://$NGX_ADDR:$NGX_PORT/image.bin" ca=()
  if [ -n "$NGX_TLS" ]; then
    # The same certificate as tcpota's, stateless tickets, one per handshake
    # (OpenSSL's default is two), no server-side session cache.
    ssl=" ssl" url="https://localhost:$NGX_PORT/image.bin" ca=(--cacert "$NGX_TLS/srv.pem")
    tls_conf="ssl_certificate $NGX_TLS/srv.pem; ssl_certificate_key $NGX_TLS/srv.key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on; ssl_session_cache off;
  ssl_session_ticket_key $NGX_TLS/ticket.key; ssl_conf_command NumTickets 1;"
    # Kernel TLS (then nginx's sendfile goes through it); without the
    # kernel's support OpenSSL falls back to encrypting in user space.
    [ "$NGX_KTLS" = 1 ] && tls_conf+="
  ssl_conf_command Options KTLS;"
  fi
  cat > "$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 12000; multi_accept on; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
  uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  types { application/octet-stream bin; }
  $tls_conf
  server { listen $NGX_ADDR:$NGX_PORT$ssl backlog=1024; root $d/www; }
}
EOF
  "${NGX_PIN[@]}" nginx -p "$d" -c "$d/nginx.conf" > /dev/null 2> "$d/stderr" &
  echo $! > "$WORK/nginx.pid"; PIDS+=($!)
  for _ in $(seq 100); do
    "${NGX_NETNS[@]}" curl -s -o /dev/null "${ca[@]}" "$url" && return 0
    kill -0 "$(cat "$WORK/nginx.pid")" 2>/dev/null || return 1 # port taken: try another
    sleep 0.05
  done
  return 1
}

stop_pid() { # NAME: SIGTERM and wait
  local p
  p=$(cat "$WORK/$1.pid")
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# /proc figures of a process and its children: "VmHWM_kB VmRSS_kB cpu_s"
# CPU time from each thread's schedstat (nanoseconds), not utime + stime
# (clock ticks of 10 ms: 0.01 s against 0.02 s was all a 100-device run
# could tell). Summed in bash (64-bit): Debian's awk (mawk) prints "%d" of
# anything above 2^31 as 2147483647, which capped every figure above 2.15 s
# of CPU until 2026-12-03.
proc_stats() {
  local pids=("$1") p hwm=0 rss=0 ns=0
  for p in $(pgrep -P "$1" || true); do pids+=("$p"); done
  for p in "${pids[@]}"; do
    [ -r "/proc/$p/status" ] || continue
    hwm=$((hwm + $(awk '/^VmHWM/{print $2}' "/proc/$p/status")))
    rss=$((rss + $(awk '/^VmRSS/{print $2}' "/proc/$p/status")))
    ns=$((ns + $(sched_ns "$p")))
  done
  echo "$hwm $rss $(awk -v n=$ns 'BEGIN{printf "%.4f", n / 1e9}')"
}

# sched_ns PID: CPU nanoseconds of every thread of PID, from schedstat; 0
# when gone.
sched_ns() {
  local f ns=0 v
  for f in /proc/"$1"/task/*/schedstat; do
    read -r v _ < "$f" 2>/dev/null || continue
    ns=$((ns + v))
  done
  echo "$ns"
}

# Waits until FILE has at least N lines matching REGEX, or SECONDS pass.
# Prints the count reached and the seconds waited: "COUNT SECONDS".
wait_count() { # FILE REGEX N SECONDS
  local c=0 t0=$EPOCHREALTIME
  while :; do
    c=$(grep -cE "$2" "$1" 2>/dev/null || true)
    [ "${c:-0}" -ge "$3" ] && break
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$4" 'BEGIN{exit !(b - a >= m)}' && break
    sleep 0.1
  done
  echo "${c:-0} $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}')"
}

# Waits until tcpota serve PID, asked for its summary line (SIGUSR1) every
# 0.1 s into LOG, counts N devices verified, or SECONDS pass; prints "COUNT
# WAITED_S". The transfer benchmarks run it --quiet, as nginx runs with
# access_log off: neither writes a line per device (tcpota's two lines per
# device cost it 7-21 % more CPU at N = 1,000; bench/README.md).
wait_verified() { # PID LOG N SECONDS
  local c=0 t0=$EPOCHREALTIME
  while kill -USR1 "$1" 2>/dev/null; do
    sleep 0.1
    c=$(summary_verified "$2")
    [ "${c:-0}" -ge "$3" ] && break
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$4" 'BEGIN{exit !(b - a >= m)}' && break
  done
  echo "${c:-0} $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b - a}')"
}

median() { sort -g | awk '{v[NR]=$1} END{ if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else printf "%.6f\n", (v[NR/2]+v[NR/2+1])/2 }'; }
# median_of "V1 V2 ...": the median of space-separated values.
median_of() { tr ' ' '\n' <<< "$1" | grep . | median; }
# ratio_each "A1 A2 ..." "B1 B2 ...": "x.xx×, y.yy×, ..." of A's values over B's, pairwise.
ratio_each() {
  paste -d' ' <(tr ' ' '\n' <<< "$1" | grep .) <(tr ' ' '\n' <<< "$2" | grep .) |
    awk '{ printf "%s%.2f×", (NR > 1 ? ", " : ""), ($2 > 0 ? $1 / $2 : 0) }'
}
# ratio_median "A1 A2 ..." "B1 B2 ...": the median of A's values over B's, pairwise.
# The summaries' ratio: runs k of both contenders ran side by side (this
# VM drifts by tens of per cent between minutes), so each pair is one
# measure; a ratio of medians could pair runs that did not run together
# (2026-12-03: 1.09x that way where the pairs gave 1.33, 1.04 and 1.42x).
ratio_median() {
  paste -d' ' <(tr ' ' '\n' <<< "$1" | grep .) <(tr ' ' '\n' <<< "$2" | grep .) |
    awk '$2 > 0 { print $1 / $2 }' | median
}
# summary_verified LOG: the devices verified by tcpota serve's last summary line in LOG.
summary_verified() { sed -nE 's/.*summary: .* ([0-9]+) verified \(not confirmed yet\).*/\1/p' "$1" | tail -1; }

# ---- 1. slow link -----------------------------------------------------------
# One 1 MiB download per contender through tcpota-proxy. Each time runs from
# the client's connect to the image in hand: tcpota: the device's
# "connecting to" line to its "verify ok" line (flash written, read back,
# SHA-256 checked; the reboot and confirmation after it are not counted);
# raw: connect() to the last byte; legacy: the client's own time for the whole
# image; curl: time_total.
run_tcpota_device() { # PROXY_PORT -> seconds
  local port=$1 dir log
  dir=$(mktemp -d "$SHM/dev.XXXXXX")
  rmdir "$dir"
  log=$WORK/device-$(basename "$dir").log
  { "$TCPOTA" device --server "127.0.0.1:$port" --flash "$dir" --progress none 2>&1 >/dev/null; } |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$log"
  grep -q 'verify ok' "$log" || { cat "$log" >&2; die "tcpota device did not verify the image"; }
  "$TCPOTA" device status --flash "$dir" | grep -q "\"sha256\":\"$IMG_SHA\"" ||
    die "tcpota device does not run the image"
  awk '/connecting to/ && !s {s=$1} /verify ok/ {e=$1} END{printf "%.6f\n", e - s}' "$log"
  rm -rf "$dir"
}

run_raw() { # PORT
  local out
  out=$("$RAW" get --server "127.0.0.1:$1" --expect "$IMG") || die "raw TCP download failed"
  sed -nE 's/.*seconds=([0-9.]+).*/\1/p' <<< "$out"
}

# The protocol without the host device's emulated flash: one session of the
# same device core on bench-loadgen's in-memory port. -> "xfer verified":
# connect() to the last image byte written, and to the verified image (the
# core's read-back and SHA-256).
run_core() { # PORT
  local out
  out=$("$LOADGEN" tcpota --server "127.0.0.1:$1" --devices 1 --sources 1 --size $MIB --timeout 60) ||
    die "bench-loadgen (one device) failed: $out"
  echo "$(sed -nE 's/.* xfer_p50=([0-9.]+).*/\1/p' <<< "$out") $(sed -nE 's/.* p50=([0-9.]+).*/\1/p' <<< "$out")"
}

run_curl() { # PORT
  local t
  t=$(curl -s -o "$WORK/curl.out" -w '%{time_total}' "http://127.0.0.1:$1/image.bin") ||
    die "curl failed"
  cmp -s "$WORK/curl.out" "$IMG" || die "curl got other bytes"
  echo "$t"
}

run_legacy() { # PORT IMAGE -> seconds
  local out
  out=$("$LEGACY" --server "127.0.0.1:$1" --out "$WORK/legacy.out" --timeout 1500) ||
    die "legacy client failed"
  cmp -s "$WORK/legacy.out" "$2" || die "legacy client got other bytes"
  awk '/ ms$/ {printf "%.3f\n", $(NF-1) / 1000}' <<< "$out"
}

link_bench() {
  local reps=5 rows row delay rate label args p_t p_r p_n p_c p_l p_l50 p_l100 i
  local t_tc t_raw t_curl t_leg leg_note t_cx t_cv
  [ $QUICK -eq 1 ] && reps=1
  # rows: delay_ms rate_Bps ("-": no cap)
  rows=("0 -" "10 -" "50 -" "150 -" "10 2000000" "50 2000000")
  [ $QUICK -eq 1 ] && rows=("0 -" "50 -" "10 2000000")
  local srv_t srv_50 srv_100 raw_port
  start_serve link "$IMG"; srv_t=$PORT
  start_serve leg50 "$IMG50"; srv_50=$PORT
  start_serve leg100 "$IMG100"; srv_100=$PORT
  start_raw; raw_port=$PORT
  start_nginx
  {
    echo "## Transfer over a slow link (1 MiB image, through tcpota-proxy)"
    echo
    echo "Seconds (median of $reps runs; the sample's protocol: one run) and the ratio to raw TCP."
    echo
    echo "| link (one-way delay, cap) | raw TCP s | tcpota device s | ×raw | tcpota core, last byte s | ×raw | tcpota core, verified s | ×raw | nginx+curl s | ×raw | sample (stop-and-wait) s | ×raw | tcpota faster than the sample |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  } > "$WORK/link.md"
  for row in "${rows[@]}"; do
    read -r delay rate <<< "$row"
    args=(--delay "$delay")
    label="$delay ms"
    if [ "$rate" != "-" ]; then
      args+=(--rate "$rate")
      label="$delay ms, $((rate / 1000000)) MB/s"
    fi
    log "link: $label"
    start_proxy px_t "$srv_t" "${args[@]}"; p_t=$PORT
    start_proxy px_r "$raw_port" "${args[@]}"; p_r=$PORT
    start_proxy px_n "$NGX_PORT" "${args[@]}"; p_n=$PORT
    start_proxy px_c "$srv_t" "${args[@]}"; p_c=$PORT
    : > "$WORK/t_tc"; : > "$WORK/t_raw"; : > "$WORK/t_curl"; : > "$WORK/t_core"
    for ((i = 0; i < reps; i++)); do # interleaved: the machine's noise hits all alike
      run_raw "$p_r" >> "$WORK/t_raw"
      run_tcpota_device "$p_t" >> "$WORK/t_tc"
      run_core "$p_c" >> "$WORK/t_core"
      run_curl "$p_n" >> "$WORK/t_curl"
    done
    t_raw=$(median < "$WORK/t_raw"); t_tc=$(median < "$WORK/t_tc"); t_curl=$(median < "$WORK/t_curl")
    t_cx=$(cut -d' ' -f1 "$WORK/t_core" | median); t_cv=$(cut -d' ' -f2 "$WORK/t_core" | median)
    { printf '%s raw:' "$label"; tr '\n' ' ' < "$WORK/t_raw"; printf ' device:'; tr '\n' ' ' < "$WORK/t_tc"
      printf ' core(xfer verified):'; tr '\n' ' ' < "$WORK/t_core"; printf ' curl:'; tr '\n' ' ' < "$WORK/t_curl"; echo; } >> "$WORK/link.raw"
    # The sample's protocol: one round trip per 512-byte package. Where a whole
    # run takes minutes, time 50 and 100 packages and extrapolate to 2048.
    if [ "$delay" -le $(( QUICK ? 0 : 10 )) ]; then
      start_proxy px_l "$srv_t" "${args[@]}"; p_l=$PORT
      t_leg=$(run_legacy "$p_l" "$IMG")
      leg_note=""
      stop_pid px_l
    else
      start_proxy px_l50 "$srv_50" "${args[@]}"; p_l50=$PORT
      start_proxy px_l100 "$srv_100" "${args[@]}"; p_l100=$PORT
      local a b
      a=$(run_legacy "$p_l50" "$IMG50")
      b=$(run_legacy "$p_l100" "$IMG100")
      t_leg=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b + (2048 - 100) * (b - a) / 50}')
      leg_note=" (extrapolated)"
      stop_pid px_l50; stop_pid px_l100
    fi
    stop_pid px_t; stop_pid px_r; stop_pid px_n; stop_pid px_c
    awk -v l="$label" -v r="$t_raw" -v t="$t_tc" -v x="$t_cx" -v v="$t_cv" -v c="$t_curl" -v s="$t_leg" -v n="$leg_note" 'BEGIN{
      printf "| %s | %.4f | %.4f | %.2f | %.4f | %.2f | %.4f | %.2f | %.4f | %.2f | %.1f%s | %.0f | %.0f× |\n",
             l, r, t, t / r, x, x / r, v, v / r, c, c / r, s, n, s / r, s / t }' >> "$WORK/link.md"
  done
  stop_pid nginx; stop_pid link; stop_pid leg50; stop_pid leg100; stop_pid raw
  cat >> "$WORK/link.md" <<'EOF'

- Each contender has its own proxy with the same settings. tcpota device: `tcpota device`
  (the host device: NOR flash emulated in files in tmpfs) against `tcpota serve`, timed from
  its "connecting to" line to its "verify ok" line (whole image written, read back from flash
  and SHA-256 checked by the core, read back and hashed again by the port's set-boot check as
  `esp_ota_set_boot_partition` does, boot slot set; the reboot and confirmation connection
  after it are not counted). tcpota core: the same device core and the same server, on
  `bench-loadgen`'s in-memory flash port (one device, `--devices 1`): "last byte" is connect()
  to the last image byte written (the protocol's transfer: what raw TCP and curl time),
  "verified" adds the core's read-back and SHA-256 (one pass). The gap between "tcpota device"
  and "tcpota core, verified" is the host device's own work, not the protocol's: flash emulated
  with file I/O and a second SHA-256 pass. Raw TCP: `bench-rawtcp`
  (connect, one request line, the file as one stream). nginx+curl: Debian's nginx, one worker,
  sendfile; curl's `time_total`. Sample: `tcpota-legacy-client` (one 512-byte package per round
  trip, no added pause) against `tcpota serve`'s legacy mode; the sample's own 50 ms pause
  per package would add 102 s per MiB on top.
- "(extrapolated)": the sample's protocol timed on 50- and 100-package images at that link;
  the time for 2048 packages = t(100) + 1948 × (t(100) − t(50)) / 50.
- The proxy ends TCP on both sides: its delay adds latency to every byte but the endpoints'
  congestion windows never see the round trip, so raw TCP moves the file in one round trip
  plus loopback time, a floor no real link reaches.
EOF
  cat "$WORK/link.md"
}

# ---- 2. fleet ---------------------------------------------------------------
# ---- one transfer run: the fleet, two-host and TLS transfer tables ------------
# xfer_run KIND N: KIND (tcpota, nginx, or nginx-ka: nginx keeping the
# connection, the client closing first) serves N devices x 1 MiB of $IMG
# to one bench-loadgen. The XR_* settings say where and how:
XR_NAME=fleet     # the server's log and pid file in $WORK, and its samples' tag
XR_LABEL=fleet    # the progress lines' name
XR_SRV=()         # the server's command prefix (taskset; ip netns exec)
XR_LG=()          # the load generator's
XR_NETNS=()       # a prefix that reaches XR_ADDR (nginx's start checks it with curl)
XR_ADDR=127.0.0.1 # the address the server listens on
XR_TLS=""         # a directory with srv.pem, srv.key and ticket.key: both servers over TLS
XR_LG_ARGS=()     # more bench-loadgen options
XR_HOOK=""        # a function run with "before" and "after" around the measured span
XR_RAW=fleet.raw  # the file in $WORK that keeps the load generator's lines
# Sets XR_OUT (the load generator's line), XR_RSS0 / XR_HWM (the server's
# RSS before and peak after, kB), XR_CPU (its CPU s over the run, every
# thread's schedstat), XR_OK (the devices its summary counts verified; -
# for nginx), XR_CPG (CPU s per delivered GB), XR_RATE (aggregate MB/s)
# and XR_PRESS (seconds the kernel's TCP stack spent under memory pressure
# meanwhile, tcp_pressure_ms).
XR_OUT="" XR_RSS0=0 XR_HWM=0 XR_CPU=0 XR_OK=- XR_CPG=0 XR_RATE=0 XR_PRESS=0
# tcp_pressure_ms: the milliseconds the kernel's TCP stack has spent under
# memory pressure since boot (TcpExt TCPMemoryPressuresChrono; 0 where the
# kernel does not count it). Under pressure every socket with a byte to
# read reports it, whatever its SO_RCVLOWAT, and receivers drop segments.
tcp_pressure_ms() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1; next }
                    for (i = 2; i <= NF; i++) if (k[i] == "TCPMemoryPressuresChrono") v = $i }
       END { print v + 0 }' /proc/net/netstat 2>/dev/null || echo 0
}
xfer_run() {
  local kind=$1 n=$2 pid port cpu0 cpu1 press0 waited lgtls=() srvtls=()
  if [ -n "$XR_TLS" ]; then
    lgtls=(--tls "$XR_TLS/srv.pem") srvtls=(--tls-cert "$XR_TLS/srv.pem" --tls-key "$XR_TLS/srv.key"
      --tls-ticket-key "$XR_TLS/ticket.key")
  fi
  if [ "$kind" = tcpota ]; then
    local -a SERVE_PIN=("${XR_SRV[@]}")
    SERVE_ADDR=$XR_ADDR start_serve "$XR_NAME" "$IMG" --max-conns 20000 --idle-timeout 300 "${srvtls[@]}"
    port=$PORT pid=$(cat "$WORK/$XR_NAME.pid")
  else
    NGX_PIN=("${XR_SRV[@]}") NGX_NETNS=("${XR_NETNS[@]}") NGX_ADDR=$XR_ADDR NGX_TLS=$XR_TLS
    NGX_KTLS=${XR_TLS:+1}
    start_nginx
    NGX_PIN=() NGX_NETNS=() NGX_ADDR=127.0.0.1 NGX_TLS="" NGX_KTLS=""
    port=$NGX_PORT pid=$(cat "$WORK/nginx.pid") # master and its worker: proc_stats sums both
  fi
  sleep 0.3
  read -r _ XR_RSS0 cpu0 < <(proc_stats "$pid")
  press0=$(tcp_pressure_ms)
  [ -z "$XR_HOOK" ] || "$XR_HOOK" before
  if [ "$kind" = tcpota ]; then
    XR_OUT=$("${XR_LG[@]}" "$LOADGEN" tcpota --server "$XR_ADDR:$port" "${XR_LG_ARGS[@]}" "${lgtls[@]}" \
      --devices "$n" --size $MIB --timeout 900) || log "$XR_LABEL: N=$n against $kind: the load generator counted failures"
    # A device is done once it has queued its COMPLETE; the server counts
    # it when that frame arrives. Stop the server only once its summary
    # counts a verified completion per device (or after 60 s), not after
    # a fixed sleep.
    read -r _ waited < <(wait_verified "$pid" "$WORK/$XR_NAME.log" "$n" 60)
  else
    XR_OUT=$("${XR_LG[@]}" "$LOADGEN" http --server "$XR_ADDR:$port" "${XR_LG_ARGS[@]}" "${lgtls[@]}" \
      --path /image.bin --devices "$n" --size $MIB --keep-alive "$([ "$kind" = nginx-ka ] && echo 1 || echo 0)" \
      --timeout 900) || log "$XR_LABEL: N=$n against $kind: the load generator counted failures"
    sleep 0.5 # the last connections' ends, as tcpota's wait for its summary
  fi
  [ -z "$XR_HOOK" ] || "$XR_HOOK" after
  read -r XR_HWM _ cpu1 < <(proc_stats "$pid")
  XR_PRESS=$(awk -v a="$press0" -v b="$(tcp_pressure_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
  XR_OK=-
  if [ "$kind" = tcpota ]; then
    stop_pid "$XR_NAME"
    XR_OK=$(summary_verified "$WORK/$XR_NAME.log")
    log "$XR_LABEL: the server counted ${XR_OK:-?} of $n devices verified, ${waited} s after the load generator ended"
    [ "${XR_OK:-0}" -eq "$n" ] ||
      log "server summary does not show $n verified devices: $(grep summary "$WORK/$XR_NAME.log")"
  else
    stop_pid nginx
  fi
  echo "$XR_NAME-$kind $XR_OUT server_verified=$XR_OK" >> "$WORK/$XR_RAW"
  XR_CPU=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.4f", b - a }')
  XR_CPG=$(awk -v n="$n" -v c="$XR_CPU" 'BEGIN { printf "%.4f", c / (n * 1048576 / 1e9) }')
  XR_RATE=$(kv mbytes_per_s "$XR_OUT")
  XR_RATE=${XR_RATE:-0} # a run that printed nothing stays paired, as 0
}

# xfer_series N REPS ROW: REPS rounds of xfer_run against tcpota, nginx
# and nginx-ka in turn (interleaved: one run's ratio swings with the
# machine, 1.37x and 0.99x at 10,000 in two runs 20 minutes apart), ROW
# KIND N after each run (its table row). Collects each kind's CPU per GB
# and rate, space-separated, in XS_CPG[KIND] and XS_RATE[KIND].
declare -A XS_CPG XS_RATE
xfer_series() {
  local n=$1 reps=$2 row=$3 rep kind
  XS_CPG=() XS_RATE=()
  for rep in $(seq "$reps"); do
    for kind in tcpota nginx nginx-ka; do
      log "$XR_LABEL: N=$n against $kind (run $rep of $reps)"
      xfer_run "$kind" "$n"
      XS_CPG[$kind]+="$XR_CPG " XS_RATE[$kind]+="$XR_RATE "
      "$row" "$kind" "$n"
      sleep 1
    done
  done
}

# xfer_label KIND: the server's name in a table row.
xfer_label() {
  case $1 in
    tcpota) echo "tcpota serve" ;;
    nginx) echo "nginx (1 worker)" ;;
    *) echo "nginx, client closes" ;;
  esac
}

# xfer_exact N: the byte-exact column of the last run.
xfer_exact() {
  awk -v n="$1" -v so="$XR_OK" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "%s%s", (v["failed"] == 0 && v["ok"] == n) ? "all " v["ok"] : v["ok"] " of " n " (" v["failed"] " failed)",
          so == "-" ? "" : "; server: " so " verified" }' <<< "$XR_OUT"
}

FLEET_NOTE="" # after N in the fleet table's rows, e.g. ", tcp_mem raised"
FLEET_MD=fleet # the table fleet_row writes: $WORK/$FLEET_MD.md
fleet_row() { # KIND N: a row of $WORK/$FLEET_MD.md
  awk -v n="$2" -v note="$FLEET_NOTE" -v l="$(xfer_label "$1")" -v rss0="$XR_RSS0" -v hwm="$XR_HWM" \
      -v cpu="$XR_CPU" -v cpg="$XR_CPG" -v press="$XR_PRESS" -v exact="$(xfer_exact "$2")" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      conns = v["peak_conns"] > 0 ? v["peak_conns"] : n;
      printf "| %d%s | %s | %.2f | %.2f | %.2f | %.0f | %.1f | %.1f | %.2f | %.3f | %.1f | %s | %s |\n",
        n, note, l, v["wall"], v["p50"], v["p99"], v["mbytes_per_s"], hwm / 1024, (hwm - rss0) / conns, cpu, cpg,
        v["client_cpu"], press, exact }' <<< "$XR_OUT" >> "$WORK/$FLEET_MD.md"
}

# xfer_ratios N: the ratio row of a series (xfer_series), as the fleet and
# TLS tables print it.
xfer_ratios() {
  awk -v n="$1" -v ct="$(median_of "${XS_CPG[tcpota]}")" -v cn="$(median_of "${XS_CPG[nginx]}")" \
    -v rt="$(median_of "${XS_RATE[tcpota]}")" -v rn="$(median_of "${XS_RATE[nginx]}")" \
    -v each="$(ratio_each "${XS_CPG[tcpota]}" "${XS_CPG[nginx]}")" \
    -v ck="$(median_of "${XS_CPG[nginx-ka]}")" \
    -v qc="$(ratio_median "${XS_CPG[tcpota]}" "${XS_CPG[nginx]}")" \
    -v qr="$(ratio_median "${XS_RATE[tcpota]}" "${XS_RATE[nginx]}")" \
    -v qk="$(ratio_median "${XS_CPG[tcpota]}" "${XS_CPG[nginx-ka]}")" \
    -v note="$FLEET_NOTE" \
    'BEGIN { printf "| %d%s | %.3f | %.3f | %.2f× | %s | %.0f | %.0f | %.2f× | %.3f | %.2f× |\\n", n, note, ct, cn, qc, each, rt, rn, qr, ck, qk }'
}

fleet_bench() {
  local ns n ratios="" reps
  ns=(100 1000 10000)
  reps=${FLEET_REPS:-3}
  [ $QUICK -eq 1 ] && ns=(100 1000) && reps=1
  {
    echo "## Fleet: N devices at once, 1 MiB each, one server"
    echo
    echo "$(pinned)."
    echo
    echo "| N | server | all done s | p50 s | p99 s | aggregate MB/s | server peak RSS MiB | RSS per connected device KiB | server CPU s | server CPU s per GB | load generator CPU s | TCP memory pressure s | byte-exact |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/fleet.md"
  XR_NAME=fleet XR_LABEL=fleet XR_SRV=("${PIN_SRV[@]}") XR_LG=("${PIN_LG[@]}") XR_RAW=fleet.raw
  for n in "${ns[@]}"; do
    xfer_series "$n" "$reps" fleet_row
    ratios+=$(xfer_ratios "$n")
  done
  # 10,000 x 1 MiB on one host fills the kernel's TCP memory (the load
  # generator's receive queues and the server's send queues): again with
  # room for it, as a server for that many devices is tuned (scalemode.sh).
  if [ $QUICK -eq 0 ]; then
    many_tcp_mem 10000 $((2 * MIB / 1024)) # KiB per device: its image in both queues
    FLEET_NOTE=", tcp_mem raised" XR_LABEL="fleet (tcp_mem raised)"
    xfer_series 10000 "$reps" fleet_row
    ratios+=$(xfer_ratios 10000)
    FLEET_NOTE="" XR_LABEL=fleet
    many_tcp_mem_restore
  fi
  XR_SRV=() XR_LG=()
  {
    echo
    echo "Medians of $reps runs per N and server; each ratio is the median of the runs' ratios (run k"
    echo "of tcpota against run k of the other, which ran beside it):"
    echo
    echo "| N | tcpota server CPU s per GB | nginx | CPU tcpota / nginx (goal ≤ 1) | each run's CPU ratio | tcpota MB/s | nginx MB/s | rate tcpota / nginx (goal ≥ 1) | nginx, client closes: CPU s per GB | CPU tcpota / that |"
    echo "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    printf '%b' "$ratios"
  } >> "$WORK/fleet.md"
  cat >> "$WORK/fleet.md" <<'EOF'

- Load generator: `bench-loadgen`, one process, one epoll loop, N non-blocking TCP connections
  opened at once from 127.0.0.1-4. tcpota: N sessions of the device core (`struct tcpota_dev`)
  with an in-memory flash port; nginx: a minimal HTTP/1.1 GET per device. Both check every byte
  as it is written (against the deterministic image) and read the whole image back and check
  its SHA-256 at the end (tcpota: the core's own check; HTTP: as `esp_ota_end` does). SHA-256
  is OpenSSL's in both (SHA-NI; devices hash in hardware too).
- "nginx, client closes": the same GET without `Connection: close` (nginx keeps the connection),
  and the client closes once the body is in, as a tcpota device closes after its COMPLETE; in the
  "nginx" rows nginx closes first. On loopback the side that closes second pays, inside its
  close(), for the FIN's whole trip: the peer socket's TIME_WAIT and both sockets' teardown
  (perf: tcpota's close() 23 M ns against nginx's 3.5 M ns per 1,000 devices). Only the last
  column compares servers that close alike.
- Times run from a device's connect() to its verified image; "all done" to the last device.
  Aggregate MB/s = N × 1 MiB / all done. Server RSS is VmHWM (peak) from /proc; per connected
  device: (peak − RSS before the run) / the most connections open at once. Server CPU is
  CPU time of every thread from /proc/PID/task/*/schedstat (nanoseconds) over the run (nginx: master + worker).
- "server: K verified": the server's own count of COMPLETE frames reporting a verified image
  (its summary line); the run waits until the server's summary (asked for with SIGUSR1 every
  0.1 s) counts one per device (at most 60 s) before it stops the server; nginx's run ends 0.5 s
  after the load generator's, for its last connections' ends. Neither server writes a line per
  device: tcpota serve runs --quiet, nginx with access_log off.
- The server runs on core 0 and the load generator on core 1 (`taskset`), so that neither takes
  the other's core; the load generator's CPU is shown because it bounds the aggregate rate: it
  is one process on one core, busy for the whole run (its CPU s ≈ all done s).
- Server CPU per GB: the server's CPU time (schedstat) over the run / (N × 1 MiB delivered).
- TCP memory pressure s: how long the kernel's TCP stack was under memory pressure during the
  run (`TCPMemoryPressuresChrono` in /proc/net/netstat; net.ipv4.tcp_mem is sized from RAM at
  boot). At 10,000 both queues of every connection are on this one host, the load generator's
  receive queues (it is the slower side) and the server's send queues. Under pressure the
  receivers drop segments, and every socket with a byte to read reports it, whatever its
  `SO_RCVLOWAT`: a tcpota device's ACKs then wake the server a few at a time instead of 64. The
  "tcp_mem raised" rows run 10,000 again with net.ipv4.tcp_mem raised for them, as for 100,000
  devices at once, and put back after.
EOF
  [ $QUICK -eq 1 ] || echo "- tcp_mem for the raised rows: $MANY_TCP_MEM_NOTE." >> "$WORK/fleet.md"
  cat "$WORK/fleet.md"
}

# The fleet benchmark with devices of ESP-IDF's smallest frame buffer
# (CONFIG_TCPOTA_RX_BUFFER_SIZE 528: MAX_PAYLOAD 520): the server sends
# frames prebuilt at their 512-byte chunk (its image's variant, made at the
# first such device), where the fleet table's take the image's own.
smallframes_bench() {
  local n=1000 reps=${FLEET_REPS:-3} ratios
  [ $QUICK -eq 1 ] && n=100 && reps=1
  {
    echo "## Small frames: N devices with a 528-byte frame buffer, 1 MiB each, one server"
    echo
    echo "$(pinned). The fleet benchmark (above), its tcpota devices announcing MAX_PAYLOAD 520"
    echo "(\`bench-loadgen --rx-cap 528\`, ESP-IDF's smallest CONFIG_TCPOTA_RX_BUFFER_SIZE): the server"
    echo "sends them frames prebuilt at their 512-byte chunk (the image's variant, made once, at the"
    echo "first such device), by sendfile as the fleet table's 4096-byte ones. nginx: the same GET."
    echo
    echo "| N | server | all done s | p50 s | p99 s | aggregate MB/s | server peak RSS MiB | RSS per connected device KiB | server CPU s | server CPU s per GB | load generator CPU s | TCP memory pressure s | byte-exact |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/smallframes.md"
  XR_NAME=smallframes XR_LABEL="small frames" XR_SRV=("${PIN_SRV[@]}") XR_LG=("${PIN_LG[@]}")
  XR_RAW=fleet.raw XR_LG_ARGS=(--rx-cap 528) FLEET_MD=smallframes
  xfer_series "$n" "$reps" fleet_row
  ratios=$(xfer_ratios "$n")
  XR_SRV=() XR_LG=() XR_LG_ARGS=() FLEET_MD=fleet
  {
    echo
    echo "Medians of $reps runs; each ratio is the median of the runs' ratios:"
    echo
    echo "| N | tcpota server CPU s per GB | nginx | CPU tcpota / nginx | each run's CPU ratio | tcpota MB/s | nginx MB/s | rate tcpota / nginx | nginx, client closes: CPU s per GB | CPU tcpota / that |"
    echo "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    printf '%b' "$ratios"
  } >> "$WORK/smallframes.md"
  cat "$WORK/smallframes.md"
}

# ---- 4. resume cost -----------------------------------------------------------
resume_bench() {
  local size=$((16 * MIB)) img=$WORK/resume.bin port px dir out clean cut cuts refetched conns
  log "resume: 100 random cuts through one 16 MiB update"
  "$LOADGEN" image --size $size --seed 7 "$img"
  start_serve resume "$img"; port=$PORT
  run_resume() { # PROXY_ARGS... -> "down_bytes cuts refetched connections"
    start_proxy px_res "$port" "$@"; px=$PORT
    dir=$SHM/resume-dev
    rm -rf "$dir"
    out=$("$TCPOTA" device --server "127.0.0.1:$px" --flash "$dir" --slot-size $((20 * MIB)) \
          --progress none --quiet --backoff-min-ms 10 --backoff-max-ms 100 --max-attempts 1000 2>&1) ||
      { echo "$out" >&2; die "device failed in the resume benchmark"; }
    "$TCPOTA" device status --flash "$dir" | grep -q "\"sha256\":\"$(sha256sum "$img" | cut -d' ' -f1)\"" ||
      die "resume device does not run the image"
    stop_pid px_res
    local stats
    stats=$(grep 'proxy: conns=' "$WORK/px_res.log" | tail -1)
    echo "$(sed -nE 's/.*down_bytes=([0-9]+).*/\1/p' <<< "$stats") \
$(sed -nE 's/.* cuts=([0-9]+).*/\1/p' <<< "$stats") \
$(sed -nE 's/.*refetched=([0-9]+).*/\1/p' <<< "$out") \
$(sed -nE 's/.*connections=([0-9]+).*/\1/p' <<< "$out")"
  }
  read -r clean _ _ _ < <(run_resume)
  read -r cut cuts refetched conns < <(run_resume --cut-random 100 --cut-range "0:$size" --seed 42)
  stop_pid resume
  {
    echo "## Resume cost: 100 random cuts through one update"
    echo
    echo "A 16 MiB image through tcpota-proxy, which cuts the connection at 100 random points of"
    echo "the downstream byte count (seed 42); the device reconnects and resumes each time."
    echo
    echo "| cuts | connections | image bytes written again (device \`refetched=\`) | per cut | bytes delivered again (proxy, vs. a run without cuts) | per cut | ack interval |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    awk -v c="$cuts" -v n="$conns" -v r="$refetched" -v cut="$cut" -v clean="$clean" 'BEGIN{
      printf "| %d | %d | %d | %.0f (%.2f KiB) | %d | %.0f (%.2f KiB) | 16384 |\n",
        c, n, r, r / c, r / c / 1024, cut - clean, (cut - clean) / c, (cut - clean) / c / 1024 }'
    echo
    echo "- \"written again\": image bytes the device wrote to flash twice (after a cut it resumes at"
    echo "  the last whole 4 KiB sector it wrote: none with the default 4096-byte frames). \"Delivered again\": all bytes the"
    echo "  device received beyond a clean run (re-sent DATA, frames lost in the cut, the handshakes"
    echo "  of the extra connections)."
  } > "$WORK/resume.md"
  cat "$WORK/resume.md"
}

# ---- 5-7. fleet mode: check-ins, transfers, a registry of 1M devices --------
. "$ROOT/bench/fleetmode.sh"
. "$ROOT/bench/tlsmode.sh"
. "$ROOT/bench/scalemode.sh"
. "$ROOT/bench/pgmode.sh"
. "$ROOT/bench/twohost.sh"

# ---- main -------------------------------------------------------------------
if want twohost; then twohost_check_env; fi
install_missing
log "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD/main" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD/main" -j2 --target tcpota tcpota-proxy tcpota-legacy-client >/dev/null
cmake -S "$ROOT/bench" -B "$BUILD/tools" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD/tools" -j2 >/dev/null
TCPOTA=$BUILD/main/cli/tcpota
PROXY=$BUILD/main/tools/tcpota-proxy
LEGACY=$BUILD/main/tools/tcpota-legacy-client
RAW=$BUILD/tools/bench-rawtcp
LOADGEN=$BUILD/tools/bench-loadgen

IMG=$WORK/image.bin
IMG50=$WORK/image50.bin
IMG100=$WORK/image100.bin
"$LOADGEN" image --size $MIB "$IMG"
head -c $((50 * 512)) "$IMG" > "$IMG50"
head -c $((100 * 512)) "$IMG" > "$IMG100"
chmod 644 "$IMG"
IMG_SHA=$(sha256sum "$IMG" | cut -d' ' -f1)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$RESULTS"
out=$RESULTS/latest.md
[ $QUICK -eq 1 ] && out=$RESULTS/quick.md
if [ "$BENCH_ONLY" != "$BENCH_ALL" ]; then
  out=$RESULTS/only-$(tr ' ,' '--' <<< "$BENCH_ONLY")$([ $QUICK -eq 1 ] && echo -quick || true).md
fi
{
  echo "# tcpota benchmarks$([ $QUICK -eq 1 ] && echo " (quick run)")"
  echo
  echo "Run with \`make bench$([ $QUICK -eq 1 ] && echo " QUICK=1")\` on $(date -u '+%Y-%m-%d %H:%M UTC'):"
  echo "$(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)),"
  echo "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r),"
  echo "$(. /etc/os-release && echo "$PRETTY_NAME"), $(nginx -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2),"
  echo "descriptor limit $(ulimit -n), net.core.somaxconn $(cat /proc/sys/net/core/somaxconn). Shared machine: compare within a run."
  echo
} > "$WORK/head.md"

# Other load on this shared machine, per benchmark: the machine's busy CPU
# time (user + nice + system + irq + softirq in /proc/stat, all cores)
# minus the CPU time of this script and every process it started and
# reaped (/proc/$$/stat utime, stime, cutime, cstime; a process's stime
# holds the interrupts served while it ran, which /proc/stat files under
# irq and softirq: without those two columns a network benchmark's own
# softirqs hid up to as much other load), and of the PostgreSQL it ran
# (PH_EXTRA_TICKS: pg_ctl detaches it): what other engineers' processes
# (and kernel threads) used meanwhile; softirqs served while a core idled
# count as other load too, which errs on the side of showing it. Plus the
# busiest other processes at the end.
PH_EXTRA_TICKS=0
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8; exit}' /proc/stat; }
own_ticks() { awk -v x="$PH_EXTRA_TICKS" '{print $14 + $15 + $16 + $17 + x}' "/proc/$$/stat"; }
PH_T0=0 PH_BUSY0=0 PH_OWN0=0
phase_begin() {
  PH_T0=$EPOCHREALTIME PH_BUSY0=$(busy_ticks) PH_OWN0=$(own_ticks)
}
phase_end() { # NAME
  local busy="" pid pcpu
  while read -r pid pcpu; do
    busy+="${busy:+, }$(ps -o comm= -p "$pid" 2>/dev/null || echo "pid $pid") $pcpu %"
  done < <(top -b -n 2 -d 0.5 -o %CPU 2>/dev/null |
           awk '/^top -/{n++} n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 20 {printf "%s %.0f\n", $1, $9}')
  awk -v n="$1" -v t0="$PH_T0" -v t1="$EPOCHREALTIME" -v b0="$PH_BUSY0" -v b1="$(busy_ticks)" \
      -v o0="$PH_OWN0" -v o1="$(own_ticks)" -v hz="$(getconf CLK_TCK)" -v top="${busy:-none}" 'BEGIN{
    wall = t1 - t0; other = ((b1 - b0) - (o1 - o0)) / hz; if (other < 0) other = 0
    printf "| %s | %.0f | %.1f | %.2f | %s |\n", n, wall, other, (wall > 0 ? other / wall : 0), top }' >> "$WORK/load.md"
}

{
  echo "| benchmark | wall s | CPU s used by other processes | = cores on average (of $(nproc)) | other processes at ≥ 20 % of a core when it ended |"
  echo "|---|---:|---:|---:|---|"
} > "$WORK/load.md"
run_phase() { # SECTIONS NAME FUNCTION: runs when BENCH_ONLY names one of SECTIONS
  local s
  for s in $1; do
    want "$s" || continue
    phase_begin
    "$3"
    phase_end "$2"
    return 0
  done
}
footprint_bench() {
  log "footprint"
  bash "$ROOT/bench/footprint.sh" "$WORK/footprint.md" >/dev/null
}
touch "$WORK/link.md" "$WORK/fleet.md" "$WORK/smallframes.md" "$WORK/twohost.md" "$WORK/footprint.md" "$WORK/resume.md" "$WORK/checkin.md" \
      "$WORK/transfer.md" "$WORK/registry.md" "$WORK/tls.md" "$WORK/tlsxfer.md" "$WORK/link.raw" "$WORK/fleet.raw" \
      "$WORK/checkin.raw" "$WORK/transfer.raw"
run_phase footprint footprint footprint_bench
run_phase link "slow link" link_bench
run_phase fleet fleet fleet_bench
run_phase smallframes "small frames" smallframes_bench
run_phase twohost "fleet, two hosts" twohost_bench
run_phase resume resume resume_bench
run_phase checkin check-ins checkin_bench
run_phase transfers "transfers, fleet vs single" transfer_bench
run_phase registry registry registry_bench
run_phase tls "TLS check-ins" tls_checkin_bench
run_phase "tls tlsxfer" "TLS transfers" tls_transfer_bench
run_phase many "many devices at once" many_bench
run_phase pg "SQLite vs PostgreSQL" pg_bench
{ echo "Other load on the machine during the run (its busy CPU time minus this run's own processes):"
  echo; cat "$WORK/load.md"; echo; } >> "$WORK/head.md"
for f in link fleet smallframes twohost footprint resume checkin transfer registry tls tlsxfer many pg; do
  [ -s "$WORK/$f.md" ] || continue # not run (BENCH_ONLY): the loop's status must stay 0
  cat "$WORK/$f.md"; echo
done | cat "$WORK/head.md" - > "$out"
{ echo "# raw samples of ${out##*/} (link: seconds per run; fleet, check-ins, transfers: bench-loadgen's line)"
  cat "$WORK/link.raw" "$WORK/fleet.raw" "$WORK/checkin.raw" "$WORK/transfer.raw"; } > "${out%.md}-samples.txt"
echo
cat "$WORK/footprint.md"
log "results written to ${out#"$ROOT"/}"
