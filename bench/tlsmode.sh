# tlsmode.sh - the performance issue's TLS benchmark, sourced by run.sh (which
# defines WORK, TCPOTA, LOADGEN, QUICK, start_fleet, stop_pid, proc_stats,
# log, die, start_nginx (NGX_TLS: over HTTPS), PIN_SRV/PIN_LG and pinned from fleetmode.sh):
#   tls_checkin_bench  TLS check-ins per second, full and resumed handshakes:
#                      `tcpota serve --data --tls-cert` vs nginx over HTTPS
#                      (HTTP/1.0, a 100-byte file), the same ECDSA P-256
#                      certificate, stateless tickets, one ticket per
#                      handshake on both. Writes $WORK/tls.md.

# The certificate both servers use: ECDSA P-256, for localhost.
tls_cert() {
  [ -s "$WORK/tls/srv.pem" ] && return 0
  mkdir -p "$WORK/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/tls/srv.key" -out "$WORK/tls/srv.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" > /dev/null 2>&1 || die "openssl req failed"
  chmod 600 "$WORK/tls/srv.key"
}

# tls_row LABEL HANDSHAKE OUT: a table row from bench-loadgen's line (its
# server_cpu= is the server's CPU over the measured run alone, warm-up
# excluded); sets RATE and CPK (server CPU ms per 1,000 answers).
tls_row() {
  local c
  RATE=$(kv per_s "$3")
  c=$(kv server_cpu "$3")
  CPK=$(awk -v c="$c" -v d="$(kv done "$3")" 'BEGIN { printf "%.1f", (d > 0 ? c * 1e6 / d : 0) }')
  awk -v l="$1" -v h="$2" -v c="$c" -v k="$CPK" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { printf "| %s | %s | %d | %.0f | %.1f | %.1f | %d | %.2f | %s | %.2f | %d / %d |\n",
          l, h, v["conns"], v["per_s"], v["p50_ms"], v["p99_ms"], v["failed"], c, k,
          v["client_cpu"], v["tls_full"], v["tls_resumed"] }' <<< "$3" >> "$WORK/tls.md"
}

# tls_tcpota CONNS MODE (full|resumed)
tls_tcpota() {
  local dir=$WORK/tls-data pid out resume=() warm
  rm -rf "$dir"
  start_fleet tlsci "$dir" --tls-cert "$WORK/tls/srv.pem" --tls-key "$WORK/tls/srv.key"
  pid=$(cat "$WORK/tlsci.pid")
  # Register the pool first (as the plain check-in benchmark does).
  "${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PORT" --conns "$1" --ids "$TLS_IDS" \
    --count "$TLS_IDS" --duration 300 --tls "$WORK/tls/srv.pem" > /dev/null || die "TLS check-in warm-up failed"
  warm=0
  [ "$2" = resumed ] && resume=(--resume) warm=$TLS_IDS
  out=$("${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PORT" --conns "$1" --ids "$TLS_IDS" \
        --duration "$TLS_SECONDS" --tls "$WORK/tls/srv.pem" "${resume[@]}" --warmup "$warm" \
        --server-pid "$pid") || log "TLS check-in run had failures: $out"
  stop_pid tlsci
  echo "tcpota-tls-$2 $out" >> "$WORK/checkin.raw"
  tls_row "tcpota serve --data --tls-cert" "$2" "$out"
}

# tls_nginx CONNS MODE
tls_nginx() {
  local pid out resume=() warm=0
  NGX_PIN=("${PIN_SRV[@]}") NGX_TLS=$WORK/tls
  start_nginx
  NGX_PIN=() NGX_TLS=""
  # The one worker process does the work (the master only watches it).
  pid=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)
  [ -n "$pid" ] || die "no nginx worker"
  [ "$2" = resumed ] && resume=(--resume) warm=$TLS_IDS
  out=$("${PIN_LG[@]}" "$LOADGEN" http10 --server "127.0.0.1:$NGX_PORT" --path /small.bin --size 100 \
        --conns "$1" --ids "$TLS_IDS" --duration "$TLS_SECONDS" --tls "$WORK/tls/srv.pem" \
        "${resume[@]}" --warmup "$warm" --server-pid "$pid") || log "nginx TLS run had failures: $out"
  stop_pid nginx
  echo "nginx-https-$2 $out" >> "$WORK/checkin.raw"
  tls_row "nginx, HTTPS, 100-byte file, HTTP/1.0" "$2" "$out"
}

# Whether this kernel offers kernel TLS (the "tls" upper-layer protocol).
ktls_state() {
  local ulp
  ulp=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null || echo "?")
  if grep -qw tls <<< "$ulp"; then
    echo "offered by this kernel (tcp_available_ulp: $ulp); neither server here uses it for these small answers"
  else
    echo "not offered by this kernel (tcp_available_ulp: ${ulp:-none}), so neither server can hand records to it"
  fi
}

tls_checkin_bench() {
  local conns=64 mode t n tc nc ratios=""
  TLS_IDS=2000 TLS_SECONDS=5
  [ $QUICK -eq 1 ] && TLS_SECONDS=3
  tls_cert
  {
    echo "## TLS check-ins per second: tcpota serve --data --tls-cert vs nginx over HTTPS"
    echo
    echo "Every connection: TCP connect, a TLS handshake (the same ECDSA P-256 certificate; TLS 1.3;"
    echo "stateless tickets, one per handshake, no server-side session cache on either), then tcpota:"
    echo "one HELLO until NO_UPDATE; nginx: one HTTP/1.0 GET of a 100-byte file to the close."
    echo "\"full\": no session offered; \"resumed\": each of $TLS_IDS device ids offers the session"
    echo "it was given on its previous connection (a warm-up of $TLS_IDS connections fills them"
    echo "first and is not counted in the rate). $TLS_SECONDS s per run, C = $conns; $(pinned)."
    echo "Kernel TLS: $(ktls_state)."
    echo
    echo "| server | handshake | C | per s | p50 ms | p99 ms | failed | server CPU s | server CPU ms per 1,000 | load generator CPU s | full / resumed handshakes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/tls.md"
  for mode in full resumed; do
    log "TLS check-ins: $mode handshakes"
    tls_tcpota "$conns" "$mode"; t=$RATE tc=$CPK
    tls_nginx "$conns" "$mode"; n=$RATE nc=$CPK
    ratios+=$(awk -v m="$mode" -v t="$t" -v n="$n" -v tc="$tc" -v nc="$nc" \
              'BEGIN{printf "| %s | %.0f | %.0f | %.2f× | %.1f | %.1f | %.2f× |\\n", m, t, n, t / n, tc, nc, tc / nc}')
  done
  {
    echo
    echo "| handshake | tcpota check-ins/s | nginx requests/s | rate tcpota / nginx | tcpota server CPU ms per 1,000 | nginx | CPU tcpota / nginx |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    printf '%b' "$ratios"
    cat <<'NOTES'

- Server CPU: utime + stime of the server process (tcpota: every thread, the store's too;
  nginx: its one worker) over the measured run alone, read by the load generator from
  /proc/PID/stat when the run starts (after a "resumed" run's warm-up) and when it ends.
- tcpota records every check-in in its SQLite store (as in the plain check-in table); nginx
  serves a file.
NOTES
  } >> "$WORK/tls.md"
  cat "$WORK/tls.md"
}
