#!/usr/bin/env bash
# Runs every libFuzzer target for N seconds from its committed seed corpus,
# as many at once as the machine has cores (FUZZ_JOBS overrides).
# New inputs go to a scratch corpus, so the repo's corpus stays small.
set -euo pipefail
build=$1 secs=$2
cd "$(dirname "$0")/.."
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
targets=(decoder server device legacy proxy)

# run_one T: one target; its log in $build/fuzz-T.log, exit status kept.
run_one() {
  local t=$1 scratch rc=0
  scratch=$(mktemp -d)
  "$build/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -max_len=20000 \
    -artifact_prefix="$build/fuzz-$t-" "$scratch" "fuzz/corpus/$t" 2> "$build/fuzz-$t.log" || rc=$?
  rm -rf "$scratch"
  return $rc
}

declare -A pid
rc=0
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "fuzz: $t for ${secs}s"
  run_one "$t" &
  pid[$t]=$!
done
for t in "${targets[@]}"; do
  if ! wait "${pid[$t]}"; then
    echo "fuzz: $t FAILED, see $build/fuzz-$t.log" >&2
    tail -40 "$build/fuzz-$t.log" >&2
    rc=1
  fi
  echo "fuzz: $t: $(grep -E 'stat::number_of_executed_units' "$build/fuzz-$t.log" | tail -1 || true)"
done
exit $rc
