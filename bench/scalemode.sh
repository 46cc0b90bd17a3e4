# scalemode.sh - the performance issue's "many devices at once" benchmark,
# sourced by run.sh (which defines WORK, TCPOTA, LOADGEN, QUICK,
# start_serve_pinned, stop_pid, proc_stats, wait_count, log, die, kv, pinned):
#   many_bench  100,000 devices connected at once (20,000 quick), each
#               updating a 64 KiB image byte-exact: the server's memory per
#               connection and the time to complete; with server workers and
#               several load generators where one process's descriptor limit
#               is below that. Writes $WORK/many.md.

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
  local want=100000 hard per w n i each first out pid rss hwm c0 c1 srv_ok img=$WORK/img64k
  local lg_pids=() peak=0 sampler wflag=()
  [ $QUICK -eq 1 ] && want=20000
  many_limit $((want + 1000))
  hard=$MANY_HARD
  n=$want
  # Each process (a server worker, a load generator) holds one descriptor
  # per device. Where one process cannot hold them all, the server runs
  # --workers (server/workers.h) and the devices come from as many load
  # generators, each below the limit with room for SO_REUSEPORT's uneven
  # spread (a worker's --max-conns is the limit less 500).
  per=$(( (hard - 1000) / 100 * 100 ))
  [ "$per" -ge 100 ] || die "many: a descriptor limit of $hard leaves no room for devices"
  w=1
  [ "$per" -lt "$n" ] && w=$(( (n + per - 1) / per ))
  if [ "$w" -gt 64 ]; then # serve's WORKERS_MAX
    w=64 n=$((64 * per))
  fi
  [ "$w" -gt 1 ] && wflag=(--workers "$w")
  "$LOADGEN" image --size 65536 "$img" > /dev/null || die "cannot write the 64 KiB image"
  many_tcp_mem "$n"
  {
    echo "## Many devices at once: 64 KiB each"
    echo
    echo "Goal: 100,000 devices connected at once, all byte-exact, ≤ 8 KiB of server memory per"
    echo "connection. Descriptor limit per process here: hard $hard (asked for $((want + 1000)); $(cap_note))."
    if [ "$w" -gt 1 ]; then
      echo "So the server runs \`--workers $w\` (processes on one port, SO_REUSEPORT) with"
      echo "\`--max-conns $((hard - 500))\` each, and $w load generators bring $n devices between them."
    fi
    echo "Kernel TCP memory (net.ipv4.tcp_mem, pages): $MANY_TCP_MEM_NOTE."
    echo "Run with N = $n; source addresses 127.0.0.1-16; $(pinned) (every server process on"
    echo "the server's core: this measures connections at once, not the use of more cores)."
    echo
    echo "| N | server processes | all done s | p50 s (slowest generator) | p99 s (slowest) | most server connections at once (ss) | server peak RSS MiB (all processes) | server RSS per connection KiB | server CPU s | byte-exact |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  } > "$WORK/many.md"
  log "many: N=$n (hard descriptor limit $hard), $w server worker(s)"
  SERVE_LOG=1 start_serve_pinned many "$img" --max-conns $((hard - 500)) --idle-timeout 600 \
    "${wflag[@]}"
  pid=$(cat "$WORK/many.pid")
  if [ "$w" -gt 1 ]; then
    for ((i = 0; i < 100; i++)); do
      [ "$(pgrep -c -P "$pid")" -eq "$w" ] && break
      sleep 0.05
    done
  fi
  sleep 0.3
  read -r _ rss c0 < <(proc_stats "$pid")
  # Established server-side connections, sampled (ss filters in the kernel).
  # On the load generators' core, so that it takes nothing from the server.
  "${PIN_LG[@]}" bash -c 'while :; do
      ss -Htn state established "( sport = :$1 )" | wc -l
      sleep 0.5 # a walk of 200,000 sockets costs CPU: not too often
    done' sampler "$PORT" > "$WORK/many.ss" &
  sampler=$!
  first=0
  for ((i = 0; i < w; i++)); do
    each=$(( (n - first) / (w - i) ))
    "${PIN_LG[@]}" "$LOADGEN" tcpota --server "127.0.0.1:$PORT" --devices "$each" --first "$first" \
      --size 65536 --sources 16 --timeout 900 > "$WORK/many.lg$i" &
    lg_pids+=($!)
    first=$((first + each))
  done
  for i in "${lg_pids[@]}"; do wait "$i" || log "many: a load generator reported failures"; done
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  wait_count "$WORK/many.log" 'done: image .* verified by the device' "$n" 60 > /dev/null
  read -r hwm _ c1 < <(proc_stats "$pid")
  srv_ok=$(grep -cE 'done: image .* verified by the device' "$WORK/many.log" || true)
  peak=$(sort -n "$WORK/many.ss" | tail -1)
  stop_pid many
  many_tcp_mem_restore
  cat "$WORK"/many.lg* | sed 's/^/many /' >> "$WORK/fleet.raw"
  cat "$WORK"/many.lg* | awk -v n="$n" -v w="$w" -v rss0="$rss" -v hwm="$hwm" -v c0="$c0" -v c1="$c1" \
      -v so="$srv_ok" -v peak="${peak:-0}" '
    { split("", v)
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      ok += v["ok"]; if (v["wall"] > wall) wall = v["wall"]
      if (v["p50"] > p50) p50 = v["p50"]; if (v["p99"] > p99) p99 = v["p99"] }
    END {
      conns = peak > 0 ? peak : n
      printf "| %d | %s | %.2f | %.2f | %.2f | %d | %.1f | %.2f | %.2f | %d of %d (load generators); server: %s verified |\n",
        n, (w > 1 ? w " workers + supervisor" : "1"), wall, p50, p99, peak, hwm / 1024,
        (hwm - rss0) / conns, c1 - c0, ok, n, so }' >> "$WORK/many.md"
  cat >> "$WORK/many.md" <<'NOTES'

- Every device connects at once (each load generator one epoll loop, all started together), gets
  the offer and the whole image, verifies it (SHA-256 of the read-back) and reports. "Most server
  connections at once": the largest count of established connections on the server's port,
  sampled with `ss` every 0.5 s. RSS per connection: (peak RSS − RSS before, summed over the
  server's processes) / that count.
- With workers, each device's connection lands on the worker the kernel's SO_REUSEPORT hash
  picks; each worker's peak RSS is its own, so the sum can only overstate the memory in use at
  one moment.
NOTES
  cat "$WORK/many.md"
}

# The kernel's TCP memory (net.ipv4.tcp_mem, in pages: below LOW no
# pressure, above HIGH no socket may grow) is sized from RAM at boot, about
# 2.2 GB at most here. N devices with a 64 KiB image each in flight at once
# need about N x 128 KiB of it (the server's send queue and the device's
# receive queue both count the bytes, though loopback shares the pages):
# past it, receivers drop segments, senders back off to RTOs of minutes,
# and devices finish only after --idle-timeout. A server for 100,000 devices
# is tuned so; the benchmark raises it for the run when it may (root), and
# puts the old value back. Sets MANY_TCP_MEM_NOTE.
MANY_TCP_MEM_SAVED=""
many_tcp_mem() { # N [KIB]: KIB per device counted (default 128: a 64 KiB image)
  local f=/proc/sys/net/ipv4/tcp_mem old need want half low high max
  old=$(tr -s '\t ' ' ' < "$f" 2>/dev/null || echo "?")
  need=$(( $1 * ${2:-128} * 1024 / 4096 )) # pages
  want=$need
  # Never more than half the machine's memory (loopback shares the pages
  # that both queues count, so the real use is far below what is counted).
  half=$(awk '/^MemTotal:/{printf "%d", $2 / 4 / 2}' /proc/meminfo)
  [ "$want" -gt "$half" ] && want=$half
  read -r low high max <<< "$old"
  if [ "${max:-0}" -ge "$want" ] 2>/dev/null; then
    MANY_TCP_MEM_NOTE="$old, enough for N (about $need pages needed)"
  elif echo "$((want * 2 / 3)) $((want * 5 / 6)) $want" > "$f" 2>/dev/null; then
    MANY_TCP_MEM_SAVED=$old
    MANY_TCP_MEM_NOTE="raised for the run from $old to $(tr -s '\t ' ' ' < "$f") (N needs about $need; at most half of RAM), then put back"
  else
    MANY_TCP_MEM_NOTE="$old, below the about $need pages N needs, and this process may not raise it: expect devices that finish only after their retries"
  fi
}
many_tcp_mem_restore() {
  [ -n "$MANY_TCP_MEM_SAVED" ] || return 0
  echo "$MANY_TCP_MEM_SAVED" > /proc/sys/net/ipv4/tcp_mem 2>/dev/null || log "could not put tcp_mem back to $MANY_TCP_MEM_SAVED"
  MANY_TCP_MEM_SAVED=""
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
