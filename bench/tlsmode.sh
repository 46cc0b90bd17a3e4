# tlsmode.sh - the performance issue's TLS benchmark, sourced by run.sh (which
# defines WORK, TCPOTA, LOADGEN, QUICK, start_fleet, stop_pid, proc_stats,
# log, die, start_nginx (NGX_TLS: over HTTPS), median_of, ratio_each,
# xfer_series and the XR_* settings of its runs, xfer_exact, xfer_ratios;
# PIN_SRV/PIN_LG and pinned from fleetmode.sh):
#   tls_checkin_bench   TLS check-ins per second, full and resumed handshakes:
#                       `tcpota serve --data --tls-cert` vs nginx over HTTPS
#                       (HTTP/1.0, a 100-byte file), the same ECDSA P-256
#                       certificate, stateless tickets, one ticket per
#                       handshake on both. Writes $WORK/tls.md.
#   tls_transfer_bench  the fleet benchmark inside TLS: N devices x 1 MiB,
#                       `tcpota serve --tls-cert` vs nginx over HTTPS with
#                       sendfile (and kernel TLS where the kernel has it),
#                       the same certificate; server CPU per GB. Writes
#                       $WORK/tlsxfer.md.

# The certificate both servers use: ECDSA P-256, for localhost; and the
# session ticket key both seal their tickets with (80 bytes: nginx's
# ssl_session_ticket_key, tcpota's --tls-ticket-key), so that the ticket
# settings are the same, not only alike.
tls_cert() {
  [ -s "$WORK/tls/srv.pem" ] && return 0
  mkdir -p "$WORK/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/tls/srv.key" -out "$WORK/tls/srv.pem" -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" > /dev/null 2>&1 || die "openssl req failed"
  chmod 600 "$WORK/tls/srv.key"
  "$TCPOTA" keygen --ticket-key --out "$WORK/tls/ticket.key" 2> /dev/null || die "keygen --ticket-key failed"
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
  start_fleet tlsci "$dir" --tls-cert "$WORK/tls/srv.pem" --tls-key "$WORK/tls/srv.key" \
    --tls-ticket-key "$WORK/tls/ticket.key"
  pid=$(cat "$WORK/tlsci.pid")
  # Register the pool first (as the plain check-in benchmark does).
  "${PIN_LG[@]}" "$LOADGEN" checkin --server "127.0.0.1:$PORT" --conns "$1" --ids "$TLS_IDS" \
    --count "$TLS_IDS" --duration 300 --tls "$WORK/tls/srv.pem" > /dev/null || die "TLS check-in warm-up failed"
  sleep 1.1 # its last store batch commits outside the measured run
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
  # Warmed as tcpota is (its pool registered first): one unmeasured second.
  "${PIN_LG[@]}" "$LOADGEN" http10 --server "127.0.0.1:$NGX_PORT" --path /small.bin --size 100 \
    --conns "$1" --ids "$TLS_IDS" --duration 1 --tls "$WORK/tls/srv.pem" > /dev/null ||
    die "nginx TLS warm-up failed"
  sleep 1.1
  [ "$2" = resumed ] && resume=(--resume) warm=$TLS_IDS
  out=$("${PIN_LG[@]}" "$LOADGEN" http10 --server "127.0.0.1:$NGX_PORT" --path /small.bin --size 100 \
        --conns "$1" --ids "$TLS_IDS" --duration "$TLS_SECONDS" --tls "$WORK/tls/srv.pem" \
        "${resume[@]}" --warmup "$warm" --server-pid "$pid") || log "nginx TLS run had failures: $out"
  stop_pid nginx
  echo "nginx-https-$2 $out" >> "$WORK/checkin.raw"
  tls_row "nginx, HTTPS, 100-byte file, HTTP/1.0" "$2" "$out"
}

# Whether this kernel offers kernel TLS (the "tls" upper-layer protocol,
# listed once its module is loaded).
ktls_kernel() { grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; }
ktls_state() {
  local ulp
  ulp=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null || echo "?")
  if ktls_kernel; then
    echo "offered by this kernel (tcp_available_ulp: $ulp); neither server here uses it for these small answers"
  else
    echo "not offered by this kernel (tcp_available_ulp: ${ulp:-none}), so neither server can hand records to it"
  fi
}

# Whether the OpenSSL the servers link was built with kernel TLS support
# (its configuration header does not define OPENSSL_NO_KTLS).
ktls_openssl() {
  ! printf '#include <openssl/opensslconf.h>\n' | cc -E -dM -x c - 2>/dev/null | grep -q 'define OPENSSL_NO_KTLS'
}

# The kernel TLS line of the transfer table.
ktls_transfer_state() {
  local ulp lib=built
  ulp=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null || echo "?")
  ktls_openssl || lib="not built"
  if ktls_kernel && ktls_openssl; then
    echo "offered by this kernel (tcp_available_ulp: $ulp) and OpenSSL $(openssl version | cut -d' ' -f2) was $lib with it:"
    echo "nginx sends the file with sendfile through kernel TLS (\`ssl_conf_command Options KTLS\`); tcpota serve"
    echo "does not use it yet and encrypts in user space (SSL_write from its prebuilt frames)"
  else
    echo "**not available**: this kernel does not offer it (tcp_available_ulp: ${ulp:-none}; OpenSSL"
    echo "$(openssl version | cut -d' ' -f2) was $lib with it), so both servers encrypt in user space: nginx reads"
    echo "the file (pread, 32 KiB at a time) and SSL_writes it in 16 KiB records (\`sendfile on\` and"
    echo "\`Options KTLS\` have no effect without it), tcpota serve SSL_writes its prebuilt DATA frames"
    echo "from memory"
  fi
}

# Runs per mode (or N) and server, interleaved (tcpota, nginx, tcpota, ...):
# one pair's ratio swung from 0.79x to 1.34x in five runs of an hour on this
# shared VM; the ratio rows take each server's median.
TLS_REPS=${TLS_REPS:-3}

tls_checkin_bench() {
  local conns=64 mode t n tc nc ts ns tcs ncs rep reps=$TLS_REPS ratios=""
  TLS_IDS=2000 TLS_SECONDS=5
  [ $QUICK -eq 1 ] && TLS_SECONDS=3 reps=1
  tls_cert
  {
    echo "## TLS check-ins per second: tcpota serve --data --tls-cert vs nginx over HTTPS"
    echo
    echo "Every connection: TCP connect, a TLS handshake (the same ECDSA P-256 certificate; TLS 1.3;"
    echo "stateless tickets sealed with one shared 80-byte key file, one per handshake, no"
    echo "server-side session cache on either), then tcpota:"
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
    ts="" ns="" tcs="" ncs=""
    for rep in $(seq "$reps"); do
      log "TLS check-ins: $mode handshakes (run $rep of $reps)"
      tls_tcpota "$conns" "$mode"; ts+="$RATE " tcs+="$CPK "
      tls_nginx "$conns" "$mode"; ns+="$RATE " ncs+="$CPK "
    done
    t=$(median_of "$ts") n=$(median_of "$ns")
    tc=$(median_of "$tcs") nc=$(median_of "$ncs")
    ratios+=$(awk -v m="$mode" -v t="$t" -v n="$n" -v tc="$tc" -v nc="$nc" -v each="$(ratio_each "$tcs" "$ncs")" \
              -v qr="$(ratio_median "$ts" "$ns")" -v qc="$(ratio_median "$tcs" "$ncs")" \
              'BEGIN{printf "| %s | %.0f | %.0f | %.2f× | %.1f | %.1f | %.2f× | %s |\\n", m, t, n, qr, tc, nc, qc, each}')
  done
  {
    echo
    echo "Medians of $reps runs per handshake and server; each ratio is the median of the runs' ratios"
    echo "(run k of tcpota against run k of nginx, which ran beside it):"
    echo
    echo "| handshake | tcpota check-ins/s | nginx requests/s | rate tcpota / nginx | tcpota server CPU ms per 1,000 | nginx | CPU tcpota / nginx | each run's CPU ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
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

# ---- TLS transfers -----------------------------------------------------------
tls_xfer_row() { # KIND N: a row of $WORK/tlsxfer.md, after xfer_run
  local l
  case $1 in
    tcpota) l="tcpota serve --tls-cert" ;;
    nginx) l="nginx, HTTPS (1 worker)" ;;
    *) l="nginx, HTTPS, client closes" ;;
  esac
  awk -v n="$2" -v l="$l" -v cpu="$XR_CPU" -v cpg="$XR_CPG" -v exact="$(xfer_exact "$2")" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      printf "| %d | %s | %.2f | %.2f | %.2f | %.0f | %.2f | %.3f | %.2f | %s |\n",
        n, l, v["wall"], v["p50"], v["p99"], v["mbytes_per_s"], cpu, cpg, v["client_cpu"], exact }' \
    <<< "$XR_OUT" >> "$WORK/tlsxfer.md"
}

tls_transfer_bench() {
  local ns n reps=$TLS_REPS ratios=""
  [ $QUICK -eq 1 ] && reps=1
  read -r -a ns <<< "${BENCH_TLS_N:-100 1000}" # BENCH_TLS_N="50 200": other fleet sizes
  tls_cert
  {
    echo "## TLS transfers: N devices at once, 1 MiB each, tcpota serve --tls-cert vs nginx over HTTPS"
    echo
    echo "The fleet benchmark inside TLS: every device connects, makes a full TLS handshake (the same"
    echo "ECDSA P-256 certificate on both servers; TLS 1.3), then tcpota: the device core's session,"
    echo "nginx: one HTTP/1.1 GET of the same image; both check every byte and the image's SHA-256."
    echo "nginx: one worker, \`sendfile on\`, \`ssl_session_tickets on\`, \`ssl_conf_command Options KTLS\`;"
    echo "$(pinned)."
    echo
    echo "Kernel TLS: $(ktls_transfer_state)."
    echo
    echo "| N | server | all done s | p50 s | p99 s | aggregate MB/s | server CPU s | server CPU s per GB | load generator CPU s | byte-exact |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/tlsxfer.md"
  XR_NAME=tlsxfer XR_LABEL="TLS transfers" XR_TLS=$WORK/tls XR_RAW=transfer.raw
  XR_SRV=("${PIN_SRV[@]}") XR_LG=("${PIN_LG[@]}")
  for n in "${ns[@]}"; do
    xfer_series "$n" "$reps" tls_xfer_row
    ratios+=$(xfer_ratios "$n")
  done
  XR_TLS="" XR_SRV=() XR_LG=()
  {
    echo
    echo "Medians of $reps runs per N and server; each ratio is the median of the runs' ratios (run k"
    echo "of tcpota against run k of nginx, which ran beside it):"
    echo
    echo "| N | tcpota server CPU s per GB | nginx | CPU tcpota / nginx (goal ≤ 1) | each run's CPU ratio | tcpota MB/s | nginx MB/s | rate tcpota / nginx | nginx, client closes: CPU s per GB | CPU tcpota / that |"
    echo "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    printf '%b' "$ratios"
    cat <<'NOTES'

- "nginx, client closes": the same GET without `Connection: close`, the client closing once the
  body is in, as a tcpota device closes after its COMPLETE (the plain fleet table's third row).
- Server CPU: every thread's schedstat (ns) from /proc over the run (nginx: master + worker), handshakes
  included; per GB: over N × 1 MiB delivered. The load generator (one process, one core)
  decrypts every byte as well, so it bounds the aggregate rate; the server's CPU per GB is the
  figure to compare.
- "server: K verified": tcpota serve's own count of COMPLETE frames reporting a verified image;
  the run waits until its summary (SIGUSR1) counts one per device (at most 60 s) before
  stopping it. Neither server writes a line per device (tcpota serve --quiet, nginx
  access_log off).
NOTES
  } >> "$WORK/tlsxfer.md"
  cat "$WORK/tlsxfer.md"
}
