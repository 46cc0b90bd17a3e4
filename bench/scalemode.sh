# scalemode.sh - the performance issue's "many devices at once" benchmark,
# sourced by run.sh (which defines WORK, TCPOTA, LOADGEN, QUICK,
# start_serve_pinned, stop_pid, proc_stats, wait_count, log, die, kv, pinned):
#   many_bench  as many devices as one process may hold connected at once,
#               each updating a 64 KiB image byte-exact: the server's memory
#               per connection and the time to complete. Writes $WORK/many.md.

# How many connections one process may open here: its hard descriptor limit,
# raised first as far as this machine lets it (root with CAP_SYS_RESOURCE can
# go to fs.nr_open; without it, not beyond the current hard limit).
# Sets MANY_HARD (in this shell: the servers and load generators it starts
# inherit it).
many_limit() {
  ulimit -Hn "$1" 2> /dev/null || true
  MANY_HARD=$(ulimit -Hn)
  ulimit -Sn "$MANY_HARD"
}

many_bench() {
  local want=100000 hard n out pid rss hwm c0 c1 srv_ok img=$WORK/img64k
  [ $QUICK -eq 1 ] && want=20000
  many_limit $((want + 1000))
  hard=$MANY_HARD
  # The server and the load generator each hold one descriptor per device.
  n=$want
  [ "$hard" -lt $((want + 500)) ] && n=$(( (hard - 500) / 100 * 100 ))
  "$LOADGEN" image --size 65536 "$img" > /dev/null || die "cannot write the 64 KiB image"
  {
    echo "## Many devices at once: one server, 64 KiB each"
    echo
    echo "Goal: 100,000 devices connected at once, all byte-exact, ≤ 8 KiB of server memory per"
    echo "connection. Descriptor limit per process here: hard $hard (asked for $((want + 1000)); $(cap_note))."
    echo "Run with N = $n; source addresses 127.0.0.1-16; $(pinned)."
    echo
    echo "| N | all done s | p50 s | p99 s | most connections open at once | server peak RSS MiB | server RSS per connection KiB | server CPU s | byte-exact |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/many.md"
  log "many: N=$n (hard descriptor limit $hard)"
  SERVE_LOG=1 start_serve_pinned many "$img" --max-conns $((n + 100)) --idle-timeout 600
  pid=$(cat "$WORK/many.pid")
  sleep 0.3
  read -r _ rss c0 < <(proc_stats "$pid")
  out=$("${PIN_LG[@]}" "$LOADGEN" tcpota --server "127.0.0.1:$PORT" --devices "$n" --size 65536 \
        --sources 16 --timeout 900) || log "many: the load generator reported failures: $out"
  wait_count "$WORK/many.log" 'done: image .* verified by the device' "$n" 60 > /dev/null
  read -r hwm _ c1 < <(proc_stats "$pid")
  srv_ok=$(grep -cE 'done: image .* verified by the device' "$WORK/many.log" || true)
  stop_pid many
  echo "many $out" >> "$WORK/fleet.raw"
  awk -v n="$n" -v rss0="$rss" -v hwm="$hwm" -v c0="$c0" -v c1="$c1" -v so="$srv_ok" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      conns = v["peak_conns"] > 0 ? v["peak_conns"] : n
      printf "| %d | %.2f | %.2f | %.2f | %d | %.1f | %.2f | %.2f | %s of %d (load generator); server: %s verified |\n",
        n, v["wall"], v["p50"], v["p99"], v["peak_conns"], hwm / 1024, (hwm - rss0) / conns, c1 - c0,
        v["ok"], n, so }' <<< "$out" >> "$WORK/many.md"
  cat >> "$WORK/many.md" <<'NOTES'

- Every device connects at once (one epoll loop in the load generator), gets the offer and the
  whole image, verifies it (SHA-256 of the read-back) and reports; "most connections open at
  once" is the load generator's own count. RSS per connection: (peak RSS − RSS before) / that
  count.
NOTES
  cat "$WORK/many.md"
}

# Why the descriptor limit is what it is.
cap_note() {
  if grep -q '^CapEff:' /proc/self/status &&
     (( (0x$(awk '/^CapEff:/{print $2}' /proc/self/status) >> 24) & 1 )); then
    echo "this process may raise it (CAP_SYS_RESOURCE)"
  else
    echo "this process lacks CAP_SYS_RESOURCE, so no process here can go beyond it"
  fi
}
