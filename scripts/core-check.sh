#!/usr/bin/env bash
# Proves the core's promises: no heap, no OS or stdio calls, and how big it is
# on a Cortex-M4 (arm-none-eabi-gcc -Os), as littlefs reports its size.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -ffreestanding -Icore/include)
for f in core/src/*.c; do
  gcc "${cflags[@]}" -O2 -c "$f" -o "$out/host-$(basename "$f" .c).o"
done
defined=$(nm --defined-only "$out"/host-*.o | awk 'NF==3 {print $3}' | sort -u)
bad=$(nm -u "$out"/host-*.o | awk '{print $2}' | sort -u | grep -vxF "$defined" |
      grep -Ev '^(memcpy|memmove|memset|memcmp|strlen)$' || true)
if [ -n "$bad" ]; then
  echo "core-check: the core calls outside functions it must not use:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "core-check: undefined symbols of the core are only memcpy/memmove/memset/memcmp/strlen: no malloc, no I/O"

if command -v arm-none-eabi-gcc >/dev/null; then
  for variant in default small; do
    extra=()
    [ $variant = small ] && extra=(-DTCPOTA_SMALL)
    for f in core/src/*.c; do
      arm-none-eabi-gcc "${cflags[@]}" "${extra[@]}" -Os -mcpu=cortex-m4 -mthumb -c "$f" \
        -o "$out/m4-$variant-$(basename "$f" .c).o"
    done
    echo "core-check: Cortex-M4, arm-none-eabi-gcc -Os -mthumb ${extra[*]:-(default build)}:"
    arm-none-eabi-size -t "$out"/m4-$variant-*.o | sed "s|$out/m4-$variant-||"
    dev=$(arm-none-eabi-size -t "$out"/m4-$variant-{codec,crc32c,device,manifest,tcpota}.o | tail -1 | awk '{print $1}')
    echo "core-check: device side (codec+crc32c+device+manifest+tcpota), $variant build: .text = $dev bytes"
  done
  # The README's target, held here so that it cannot pass unseen again (it
  # did by 128 B on 2026-12-07): the code a device links (bench/footprint.sh,
  # Cortex-M4, default build) within 8 KiB.
  budget=8192
  bash bench/footprint.sh "$out/footprint.md" >/dev/null
  linked=$(awk '/^### Cortex-M4/ {m = 1} m && $2 == "default" {print $4; exit}' "$out/footprint.md")
  if ! [ "${linked:-x}" -le $budget ] 2>/dev/null; then
    echo "core-check: the device core's linked Cortex-M4 code is ${linked:-not measured} B, over its" \
         "$budget B budget (README's footprint row): make it smaller, or raise the budget here" \
         "and say so in README.md and bench/README.md" >&2
    exit 1
  fi
  echo "core-check: linked as a device links it (Cortex-M4, default build): .text = $linked of $budget bytes"
else
  echo "core-check: arm-none-eabi-gcc is not installed: the Cortex-M4 sizes and their budget are not checked (make deps installs it)" >&2
fi
