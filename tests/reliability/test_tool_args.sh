#!/usr/bin/env bash
# The reliability tools' flags (docs/reliability.md tells users to run them
# with other sizes): a value that is no whole number in its range is a usage
# error, exit 2 at once with the flag named, not a setup failure or a FAIL
# of the run (exit 1), which a trial read as a reliability failure.
set -u
fails=0
# bad TOOL REGEX ARGS...: TOOL ARGS exits 2 within 10 s, saying REGEX.
bad() {
  local tool=$1 re=$2 rc=0 out
  shift 2
  out=$(timeout 10 "$tool" "$@" 2>&1 > /dev/null) || rc=$?
  if [ $rc -ne 2 ] || ! grep -qE -- "$re" <<< "$out"; then
    echo "FAIL: $(basename "$tool") $*: exit $rc: $out"
    fails=$((fails + 1))
  fi
}
for t in "$POWERCUT:powercut" "$FRAMECUT:framecut"; do
  tool=${t%%:*} name=${t##*:}
  bad "$tool" "^$name: --size: 'abc' is not a whole number in 8192\.\.67108864$" --size abc
  bad "$tool" "^$name: --size: '-5' is not a whole number" --size -5
  bad "$tool" "^$name: --size: '8191' is not a whole number" --size 8191
  bad "$tool" "^$name: --size needs a value" --size
  bad "$tool" "^$name: --chunk: '0' is not a whole number in 1\.\.16380$" --chunk 0
  bad "$tool" "^$name: --chunk: '16381' is not" --chunk 16381
  bad "$tool" "^$name: --ack 6000 is not a multiple of 4096" --ack 6000
  bad "$tool" "^$name: --ack: '1000' is not a whole number" --ack 1000
  bad "$tool" "^usage: " --bogus
done
bad "$FRAMECUT" "^framecut: --samples: '-1' is not a whole number in 1\.\.1000$" --samples -1
bad "$FRAMECUT" "^framecut: --size 67108864 in --chunk 512 frames is 131072 frames; at most 4080" --size 67108864 --chunk 512
[ $fails -eq 0 ] || exit 1
echo "ok: the reliability tools refuse bad flag values with exit 2"
