#!/usr/bin/env bash
# Runs every libFuzzer target for N seconds from its committed seed corpus.
# New inputs go to a scratch corpus, so the repo's corpus stays small.
set -euo pipefail
build=$1 secs=$2
cd "$(dirname "$0")/.."
rc=0
for t in decoder server device legacy; do
  scratch=$(mktemp -d)
  echo "fuzz: $t for ${secs}s"
  if ! "$build/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -max_len=20000 \
       -artifact_prefix="$build/fuzz-$t-" "$scratch" "fuzz/corpus/$t" 2>"$build/fuzz-$t.log"; then
    echo "fuzz: $t FAILED, see $build/fuzz-$t.log" >&2
    tail -40 "$build/fuzz-$t.log" >&2
    rc=1
  fi
  grep -E 'stat::number_of_executed_units|cov:' "$build/fuzz-$t.log" | tail -2 || true
  rm -rf "$scratch"
done
exit $rc
