#!/usr/bin/env bash
# scripts/demo.sh, as `make demo` runs it on this build: exit 0, three
# devices on the new image, two cuts, and the verdict as the last line it
# prints (the server's and the proxies' summaries, written as they stop,
# came after it and read as the demo's result).
source "$(dirname "$0")/lib.sh"
DEMO="$(cd "$(dirname "$0")/../.." && pwd)/scripts/demo.sh"
BUILD=$(dirname "$(dirname "$TCPOTA")")

rc=0
timeout 120 bash "$DEMO" "$BUILD" > "$WORK/demo.log" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "demo.sh: exit $rc"
for d in dev-a dev-b dev-c; do
  grep -q "^$d: {\"device\":\"$d\",\"model\":\"esp32\",\"slot\":1,\"version\":\"2.0.0\"" "$WORK/demo.log" || fail "$d does not run 2.0.0"
done
grep -q '^proxy cuts: 2$' "$WORK/demo.log" || fail "the proxy did not cut twice"
last=$(grep -v '^$' "$WORK/demo.log" | tail -1)
[[ "$last" == *"demo: all three devices run 2.0.0, byte-exact (one after two cuts)"* ]] ||
  fail "the demo's last line is not its verdict: $last"
grep -q 'tcpota serve: summary: 3 devices: 3 updated and confirmed' "$WORK/demo.log" ||
  fail "no server summary before the verdict"
ok "make demo's script: three devices on 2.0.0 (one after two cuts), the verdict its last line"
