#!/usr/bin/env bash
# upload_stall.sh [TCPOTA...]: how long a fleet server's event loop is held
# while a 64 MiB image is uploaded, and while it is loaded for its first
# offer. For each tcpota binary given (default: this build's), one `tcpota
# serve --data` on loopback; a probe asks GET /metrics (answered on the
# loop, from memory) back to back on one kept-alive connection while ROUNDS
# images of SIZE random bytes are uploaded one after the other with curl,
# then while each is made a rollout's image and first asked for (an HTTP
# download's first byte: the server loads the image then). The table gives
# the probe's longest and 99th percentile wait during each phase, and
# without either. Give the build before a change and the one after to
# compare them in one run, e.g.
#   bash bench/upload_stall.sh /tmp/old/cli/tcpota build/cli/tcpota
set -euo pipefail
SIZE=${SIZE:-67108864}
ROUNDS=${ROUNDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- "$here/../build/cli/tcpota"
WORK=$(mktemp -d /tmp/tcpota-stall.XXXXXX)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2> /dev/null; rm -rf "$WORK"' EXIT
for t in "$@"; do [ -x "$t" ] || { echo "upload_stall: $t is not an executable tcpota" >&2; exit 2; }; done
for i in $(seq 1 "$ROUNDS"); do head -c "$SIZE" /dev/urandom > "$WORK/img$i"; done

echo "| tcpota | idle: p99 / max (ms) | during ${ROUNDS} uploads of $((SIZE >> 20)) MiB: p99 / max (ms) | probes during uploads | upload time, median (s) | during their first offers: p99 / max (ms) | first byte, median (s) |"
echo "|---|---|---|---|---|---|---|"
for t in "$@"; do
  rm -rf "$WORK/data"
  : > "$WORK/server.log" # emptied before the launch: not the last tool's port (run.sh's start_serve)
  "$t" serve --listen 127.0.0.1:0 --data "$WORK/data" --api 127.0.0.1:0 --no-progress --quiet \
    --max-image "$SIZE" 2> "$WORK/server.log" &
  srv=$!
  for _ in $(seq 100); do grep -q 'listening on' "$WORK/server.log" && break; sleep 0.1; done
  api=$(sed -nE 's/.*API on [^ ]*:([0-9]+).*/\1/p' "$WORK/server.log" | tail -1)
  [ -n "$api" ] || { echo "upload_stall: $t did not start: $(cat "$WORK/server.log")" >&2; exit 1; }
  python3 - "$api" "$(cat "$WORK/data/api.token")" "$WORK" "$ROUNDS" "$t" <<'PY'
import http.client, statistics, subprocess, sys, threading, time
port, token, work, rounds, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
stop = False
samples = []  # (start, wait) in seconds
def probe():
    c = http.client.HTTPConnection("127.0.0.1", port)
    while not stop:
        t0 = time.monotonic()
        c.request("GET", "/metrics")
        r = c.getresponse(); r.read()
        if r.status != 200:
            raise SystemExit("probe: /metrics answered %d" % r.status)
        samples.append((t0, time.monotonic() - t0))
th = threading.Thread(target=probe); th.start()
time.sleep(2.0)
idle_end = time.monotonic()
windows, took = [], []
for i in range(1, rounds + 1):
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                          "Authorization: Bearer " + token, "--data-binary", "@%s/img%d" % (work, i),
                          "http://127.0.0.1:%d/v1/images?version=%d.0.0&model=m" % (port, i)],
                         capture_output=True, text=True)
    t1 = time.monotonic()
    if out.stdout != "201":
        raise SystemExit("upload %d answered %s %s" % (i, out.stdout, out.stderr))
    windows.append((t0, t1)); took.append(t1 - t0)
    time.sleep(0.5)
# First offers: each image a rollout's in turn (superseding the one before),
# then one HTTP download's first byte, which loads it.
def call(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request(method, path, body=body, headers={"Authorization": "Bearer " + token,
                                                "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, data
offers, first = [], []
for i in range(1, rounds + 1):
    st, data = call("POST", "/v1/rollouts", '{"image": "%d.0.0", "model": "m"}' % i)
    if st != 201:
        raise SystemExit("rollout %d: %d %s" % (i, st, data))
    time.sleep(0.5)
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/ota/m?device=probe-%d" % i, headers={"X-Tcpota-Version": "0.0.1", "Range": "bytes=0-0"})
    r = c.getresponse(); r.read(); c.close()
    t1 = time.monotonic()
    if r.status not in (200, 206):
        raise SystemExit("first offer %d answered %d" % (i, r.status))
    offers.append((t0, t1)); first.append(t1 - t0)
    time.sleep(0.5)
stop = True; th.join()
def stats(xs):
    xs = sorted(xs)
    return xs[int(0.99 * (len(xs) - 1))] * 1e3, xs[-1] * 1e3
idle = [w for s, w in samples if s < idle_end]
busy = [w for s, w in samples if any(a <= s + w and s <= b for a, b in windows)]
load = [w for s, w in samples if any(a <= s + w and s <= b for a, b in offers)]
print("| %s | %.2f / %.2f | %.1f / %.1f | %d | %.2f | %.1f / %.1f | %.3f |" % ((name,) + stats(idle) + stats(busy) + (len(busy), statistics.median(took)) + stats(load) + (statistics.median(first),)))
PY
  kill -TERM "$srv"; wait "$srv" || true; srv=
done
