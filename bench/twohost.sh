# twohost.sh - the fleet benchmark with the server and the devices as two
# hosts, sourced by run.sh (which defines WORK, QUICK, xfer_series and the
# XR_* settings of its runs, xfer_label, xfer_exact, ratio_each,
# ratio_median, log, die):
#   twohost_bench   N devices x 1 MiB against tcpota serve and nginx, each side
#                   in a network namespace of its own behind a veth pair
#
# Why: on loopback the sender's system call carries each segment through the
# receiver's whole TCP stack, so a server pays for its devices' receive work
# (every byte of the image) and the devices pay for the server's (every
# frame they send). Across a network each host does its own. Here the
# server's namespace receives on core 0 and the devices' on core 1 (RPS on
# each end of the pair: the receive work runs on that core, in softirq, as
# a NIC's interrupt puts it on the host that owns it), with a 1,500-byte
# MTU (an ESP32's Wi-Fi or Ethernet; TWOHOST_MTU to change it) and each
# device's receive buffer at 64 KiB (lwIP's largest window without window
# scaling; TWOHOST_RCVBUF, 0 for Linux's autotuning).
#
# Needs root and network namespaces; without them the table says so. The
# addresses are the namespaces' own (10.231.0.1 and .2); nothing outside
# them changes but net.core.netdev_max_backlog (the per-core queue RPS
# hands packets to: 1,000 dropped SYNs of 10,000 devices connecting at
# once), raised for the run and set back after it.

TH_NS_SRV="" TH_NS_DEV="" TH_BACKLOG="" TH_BACKLOG_RUN=16384
TH_SRV_ADDR=10.231.0.1 TH_DEV_ADDR=10.231.0.2

# Creates the two namespaces and the veth pair between them; returns 1
# (and leaves nothing behind) when the machine does not allow it.
twohost_setup() {
  TH_NS_SRV=tcpota-srv-$$ TH_NS_DEV=tcpota-dev-$$
  local mtu=${TWOHOST_MTU:-1500}
  {
    ip netns add "$TH_NS_SRV" && ip netns add "$TH_NS_DEV" &&
      ip -n "$TH_NS_SRV" link add th-srv type veth peer name th-dev netns "$TH_NS_DEV" &&
      ip -n "$TH_NS_SRV" addr add "$TH_SRV_ADDR/24" dev th-srv &&
      ip -n "$TH_NS_DEV" addr add "$TH_DEV_ADDR/24" dev th-dev &&
      ip -n "$TH_NS_SRV" link set th-srv mtu "$mtu" up &&
      ip -n "$TH_NS_DEV" link set th-dev mtu "$mtu" up &&
      ip -n "$TH_NS_SRV" link set lo up && ip -n "$TH_NS_DEV" link set lo up &&
      # RPS: what arrives for the server is received on core 0, what
      # arrives for the devices on core 1. sysfs shows the namespace's
      # devices to a process inside it.
      ip netns exec "$TH_NS_SRV" sh -c 'echo 1 > /sys/class/net/th-srv/queues/rx-0/rps_cpus' &&
      ip netns exec "$TH_NS_DEV" sh -c 'echo 2 > /sys/class/net/th-dev/queues/rx-0/rps_cpus'
  } 2> "$WORK/twohost-setup.log" || { twohost_teardown; return 1; }
  local was
  was=$(sysctl -n net.core.netdev_max_backlog)
  if [ "$was" -lt "$TH_BACKLOG_RUN" ]; then
    if sysctl -qw net.core.netdev_max_backlog="$TH_BACKLOG_RUN"; then
      TH_BACKLOG=$was # set back by twohost_teardown
    else
      log "two hosts: cannot raise net.core.netdev_max_backlog from $was; running with it"
    fi
  fi
  return 0
}

# Sets back what twohost_setup changed; also from run.sh's cleanup, so
# nothing here may fail (set -e).
twohost_teardown() {
  if [ -n "$TH_BACKLOG" ]; then sysctl -qw net.core.netdev_max_backlog="$TH_BACKLOG" || true; fi
  if [ -n "$TH_NS_SRV" ]; then ip netns del "$TH_NS_SRV" 2>/dev/null || true; fi
  if [ -n "$TH_NS_DEV" ]; then ip netns del "$TH_NS_DEV" 2>/dev/null || true; fi
  TH_BACKLOG="" TH_NS_SRV="" TH_NS_DEV=""
  return 0
}

# Core 0's busy time in clock ticks: the server and the receive work done
# on its core, also while the server slept (softirq in the idle task).
twohost_core0_ticks() { awk '/^cpu0 /{ print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }

# "InSegs OutSegs RetransSegs TxPackets" of the server's namespace: TCP's
# segments, and the packets its end of the pair sent (a GSO packet carries
# several segments).
twohost_segs() {
  ip netns exec "$TH_NS_SRV" awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 }
    else printf "%s %s %s ", $c["InSegs"], $c["OutSegs"], $c["RetransSegs"] }' /proc/net/snmp
  ip netns exec "$TH_NS_SRV" cat /sys/class/net/th-srv/statistics/tx_packets
}

# Checks the phase's settings (run.sh, before it installs or builds); dies
# saying which is wrong and what it takes.
twohost_check_env() {
  local mtu=${TWOHOST_MTU:-1500} rcv=${TWOHOST_RCVBUF:-65536}
  [[ $mtu =~ ^[0-9]{1,5}$ ]] && [ "$mtu" -ge 576 ] && [ "$mtu" -le 65535 ] ||
    die "TWOHOST_MTU=$mtu: give the link's MTU in bytes, 576 to 65535 (default 1500)"
  [[ $rcv =~ ^[0-9]{1,9}$ ]] && [ "$rcv" -le 268435456 ] ||
    die "TWOHOST_RCVBUF=$rcv: give each device's receive buffer in bytes, 0 (Linux's autotuning) to 268435456 (default 65536)"
  return 0
}

# XR_HOOK of the phase's runs: core 0's ticks and the namespace's counters
# at the measured span's start ("before") and end ("after").
TH_READ=() # t0 in0 out0 re0 tx0 t1 in1 out1 re1 tx1
twohost_read() {
  local segs
  segs=$(twohost_segs)
  if [ "$1" = before ]; then
    read -r -a TH_READ <<< "$(twohost_core0_ticks) $segs"
  else
    read -r -a TH_READ <<< "${TH_READ[*]:0:5} $(twohost_core0_ticks) $segs"
  fi
}

declare -A TH_CORES
twohost_row() { # KIND N: a row of $WORK/twohost.md
  local kind=$1 n=$2 r=("${TH_READ[@]}") hz
  hz=$(getconf CLK_TCK)
  TH_CORES[$kind]+=$(awk -v n="$n" -v a="${r[0]}" -v b="${r[5]}" -v hz="$hz" 'BEGIN { printf "%.4f ", (b - a) / hz / (n * 1048576 / 1e9) }')
  awk -v n="$n" -v l="$(xfer_label "$kind")" -v cpg="$XR_CPG" -v t0="${r[0]}" -v t1="${r[5]}" -v hz="$hz" \
      -v i="$((r[6] - r[1]))" -v o="$((r[7] - r[2]))" -v re="$((r[8] - r[3]))" -v p="$((r[9] - r[4]))" \
      -v exact="$(xfer_exact "$n")" '
    { for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] } }
    END {
      gb = n * 1048576 / 1e9
      printf "| %d | %s | %.2f | %.0f | %.3f | %.3f | %.1f / %.1f | %.1f | %.2f | %s |\n", n, l,
        v["wall"], v["mbytes_per_s"], cpg, (t1 - t0) / hz / gb, i / n, o / n, p / n, re / n, exact }' \
    <<< "$XR_OUT" >> "$WORK/twohost.md"
}

twohost_bench() {
  local ns n reps ratios="" mask hz
  hz=$(getconf CLK_TCK)
  ns=(1000 10000) reps=${FLEET_REPS:-3}
  [ $QUICK -eq 1 ] && ns=(1000) && reps=1
  {
    echo "## Fleet, two hosts: N devices at once, 1 MiB each, across a veth pair"
    echo
  } > "$WORK/twohost.md"
  if [ "$(nproc)" -lt 2 ] || ! command -v taskset > /dev/null || ! twohost_setup; then
    {
      echo "Not run: this needs root, two cores and network namespaces (\`ip netns add\` said:"
      echo "$(head -c 300 "$WORK/twohost-setup.log" 2>/dev/null | tr '\n' ' ')). The loopback table above stands alone."
    } >> "$WORK/twohost.md"
    cat "$WORK/twohost.md"
    return 0
  fi
  {
    echo "The server in one network namespace, receiving on core 0; the load generator in another,"
    echo "receiving on core 1; a veth pair between them, MTU ${TWOHOST_MTU:-1500}; each device's receive buffer"
    echo "${TWOHOST_RCVBUF:-65536} bytes (0: Linux's autotuning)."
    echo
    echo "| N | server | all done s | aggregate MB/s | server CPU s per GB | server's core s per GB | segments in / out per device | packets out per device | retransmitted per device | byte-exact |"
    echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
  } >> "$WORK/twohost.md"
  # The script's own loops (the summary polls, the readings) run on the
  # load generator's core: core 0's busy time is the server's host. Its
  # mask is set back after the phase (the phases after it start processes
  # of their own unpinned).
  mask=$(taskset -p $$ | awk '{ print $NF }')
  taskset -pc 1 $$ > /dev/null
  XR_NAME=twohost XR_LABEL="two hosts" XR_ADDR=$TH_SRV_ADDR XR_RAW=fleet.raw XR_HOOK=twohost_read
  XR_NETNS=(ip netns exec "$TH_NS_SRV") XR_SRV=(ip netns exec "$TH_NS_SRV" taskset -c 0)
  XR_LG=(ip netns exec "$TH_NS_DEV" taskset -c 1)
  XR_LG_ARGS=(--sources 1 --rcvbuf "${TWOHOST_RCVBUF:-65536}")
  for n in "${ns[@]}"; do
    TH_CORES=()
    xfer_series "$n" "$reps" twohost_row
    ratios+=$(awk -v n="$n" -v each="$(ratio_each "${TH_CORES[tcpota]}" "${TH_CORES[nginx]}")" \
      -v qc="$(ratio_median "${TH_CORES[tcpota]}" "${TH_CORES[nginx]}")" \
      -v qs="$(ratio_median "${XS_CPG[tcpota]}" "${XS_CPG[nginx]}")" \
      -v qk="$(ratio_median "${TH_CORES[tcpota]}" "${TH_CORES[nginx-ka]}")" \
      -v qr="$(ratio_median "${XS_RATE[tcpota]}" "${XS_RATE[nginx]}")" \
      'BEGIN { printf "| %d | %.2f× | %s | %.2f× | %.2f× | %.2f× |\\n", n, qc, each, qs, qk, qr }')
  done
  XR_ADDR=127.0.0.1 XR_HOOK="" XR_NETNS=() XR_SRV=() XR_LG=() XR_LG_ARGS=()
  taskset -p "$mask" $$ > /dev/null
  twohost_teardown
  {
    echo
    echo "Each ratio is the median of the runs' ratios (run k of tcpota against run k of the other):"
    echo
    echo "| N | server's core per GB, tcpota / nginx (goal ≤ 1) | each run | server CPU per GB (its own threads), tcpota / nginx | server's core, tcpota / nginx, client closes | rate tcpota / nginx |"
    echo "|---:|---:|---|---:|---:|---:|"
    printf '%b' "$ratios"
    echo
    echo "- Server CPU: the server's threads' schedstat over the run, as in the loopback table; here it"
    echo "  holds the receive work only when it came while the server ran. Server's core: core 0's busy"
    echo "  time (/proc/stat, ticks of 1/$hz s), the server and the receive work done on its core while"
    echo "  it slept; the script itself runs on core 1. Not run at N = 100: 0.1 GB is a few ticks."
    echo "- The receive work done on core 0 while the server slept is softirq in the idle task: the"
    echo "  run's \"other load\" row counts it as other processes' load for this phase."
    echo "- Segments: the server namespace's TCP counters (/proc/net/snmp) over the run, per device;"
    echo "  packets: what its end of the pair sent (veth passes GSO packets whole: one packet may"
    echo "  carry several segments, and the devices acknowledge packets)."
    echo "  A tcpota device sends HELLO, ACCEPT, its ACKs (held while data is at hand) and COMPLETE;"
    echo "  an HTTP client its GET."
    echo "- The load generator connects from one address (10.231.0.2), and N = 10,000 devices connect"
    echo "  at once: net.core.netdev_max_backlog is raised to $TH_BACKLOG_RUN for the run (its default, 1,000,"
    echo "  dropped SYNs: runs that waited for TCP's retransmission timeout)."
    echo "- Devices' receive buffers: with Linux's autotuning (up to 32 MiB each here) 10,000 sockets"
    echo "  filled the kernel's TCP memory, which the server's namespace shares: the devices' sockets"
    echo "  dropped what arrived, and tcpota's runs ended after 22, 73 and 53 s (a few devices in"
    echo "  retransmission backoff; p99 14 s) against nginx's 14-22 s. An ESP32's window is 64 KiB at"
    echo "  most (lwIP without window scaling): SO_RCVBUF 65,536 (the kernel reserves twice that, half"
    echo "  for its own overhead); with it, 14.5-15.5 s in eight runs."
  } >> "$WORK/twohost.md"
  cat "$WORK/twohost.md"
}
