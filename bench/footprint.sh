#!/usr/bin/env bash
# footprint.sh OUT.md - device footprint of libtcpota: the core's objects
# cross-compiled for Cortex-M4 and RV32 (ESP32-C3 class), .text/.data/.bss
# per object, and the RAM one device session needs. Writes Markdown to OUT.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out_md=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

common=(-std=c11 -Wall -Wextra -Werror -pedantic -ffreestanding -Os -ffunction-sections
        -fdata-sections -Icore/include)
declare -A cc=(
  [m4]="arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb"
  [rv32]="riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32 -specs=/usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs"
)
declare -A size_tool=([m4]=arm-none-eabi-size [rv32]=riscv64-unknown-elf-size)
declare -A nm_tool=([m4]=arm-none-eabi-nm [rv32]=riscv64-unknown-elf-nm)
declare -A title=(
  [m4]="Cortex-M4: \`arm-none-eabi-gcc -Os -mcpu=cortex-m4 -mthumb\`"
  [rv32]="RV32 (ESP32-C3 class): \`riscv64-unknown-elf-gcc -Os -march=rv32imc -mabi=ilp32\` (picolibc)"
)
# Objects the server side alone links: not on the device.
server_only="server legacy version"

# The probe: sizes of the session structs on the target, as symbol sizes.
cat > "$tmp/probe.c" <<'EOF'
#include "tcpota/device.h"
#include "tcpota/server.h"
char probe_sizeof_tcpota_dev[sizeof(struct tcpota_dev)];
char probe_sizeof_tcpota_srv[sizeof(struct tcpota_srv)];
EOF

{
  echo "## Device footprint"
  echo
  echo "Every object of \`core/src/\` compiled with \`-Os -ffreestanding -ffunction-sections\`"
  echo "(sizes of the objects, before linking drops unused functions). \"Device side\" is every"
  echo "core object except $(for s in $server_only; do printf '`%s.o` ' "$s"; done)(which only the server links)."
  echo
} > "$out_md"

for t in m4 rv32; do
  read -r -a c <<< "${cc[$t]}"
  if ! command -v "${c[0]}" >/dev/null; then
    printf '### %s\n\n%s is not installed: not measured.\n\n' "${title[$t]}" "${c[0]}" >> "$out_md"
    continue
  fi
  mkdir -p "$tmp/$t"
  for f in core/src/*.c; do
    "${c[@]}" "${common[@]}" -c "$f" -o "$tmp/$t/$(basename "$f" .c).o"
  done
  "${c[@]}" "${common[@]}" -c "$tmp/probe.c" -o "$tmp/probe-$t.o"
  heap=$("${nm_tool[$t]}" -u "$tmp/$t"/*.o | awk '{print $2}' |
         grep -E '^(malloc|calloc|realloc|free|_sbrk|sbrk)$' || true)
  dev_sz=$((16#$("${nm_tool[$t]}" -S "$tmp/probe-$t.o" | awk '$4=="probe_sizeof_tcpota_dev"{print $2}')))
  srv_sz=$((16#$("${nm_tool[$t]}" -S "$tmp/probe-$t.o" | awk '$4=="probe_sizeof_tcpota_srv"{print $2}')))
  # What a device links: the device-side objects with every public
  # tcpota_dev_* entry point kept, unused sections dropped (--gc-sections);
  # the C library's memcpy & co. are left out (unresolved on purpose).
  # Twice: the default build, and -DTCPOTA_SMALL (the core's option for
  # microcontrollers: smaller CRC32C table, no message table).
  linked=()
  for variant in default small; do
    vdir=$tmp/$t-$variant
    mkdir -p "$vdir"
    extra=()
    label=$variant
    if [ $variant = small ]; then
      extra=(-DTCPOTA_SMALL)
      label='small (`-DTCPOTA_SMALL`)'
    fi
    dev_objs=()
    for f in core/src/*.c; do
      b=$(basename "$f" .c)
      case " $server_only " in *" $b "*) continue ;; esac
      "${c[@]}" "${common[@]}" "${extra[@]}" -c "$f" -o "$vdir/$b.o"
      dev_objs+=("$vdir/$b.o")
    done
    keep=$("${nm_tool[$t]}" --defined-only "${dev_objs[@]}" |
           awk '$2=="T" && $3 ~ /^tcpota_dev_/ {printf " -Wl,-u,%s", $3}')
    # shellcheck disable=SC2086
    "${c[@]}" -nostdlib -nostartfiles -Wl,--gc-sections -Wl,--unresolved-symbols=ignore-all \
      -Wl,-e,0 $keep "${dev_objs[@]}" -o "$vdir/dev.elf"
    read -r ltext lrodata lram < <("${size_tool[$t]}" -A "$vdir/dev.elf" | awk '
        $1==".text"{t=$2} $1==".rodata"||$1==".srodata"{r+=$2}
        $1==".data"||$1==".bss"||$1==".sdata"||$1==".sbss"{d+=$2}
        END{printf "%d %d %d\n", t, r, d}')
    if [ "$lrodata" -gt 0 ]; then
      linked+=("| $label | $ltext | $lrodata | $((ltext + lrodata)) | $lram |")
    else
      linked+=("| $label | $ltext (with .rodata) | in .text | $ltext | $lram |")
    fi
  done
  {
    printf '### %s\n\n' "${title[$t]}"
    echo "Linked as a device links it (every \`tcpota_dev_*\` entry point kept, \`--gc-sections\`):"
    echo
    echo "| build | .text (code) | .rodata | flash total | static RAM (.data+.bss) |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${linked[@]}"
    echo
    echo "Per object (\`size\` counts .rodata in .text here):"
    echo
    echo "| object | .text | .data | .bss | side |"
    echo "|---|---:|---:|---:|---|"
    "${size_tool[$t]}" "$tmp/$t"/*.o | awk -v so=" $server_only " 'NR>1 {
        n=$6; sub(".*/", "", n); b=n; sub("\\.o$", "", b);
        side = index(so, " " b " ") ? "server" : "device";
        printf "| %s | %d | %d | %d | %s |\n", n, $1, $2, $3, side;
        if (side == "device") { dt+=$1; dd+=$2; db+=$3 }
        at+=$1; ad+=$2; ab+=$3 }
      END { printf "| **device side** | **%d** | **%d** | **%d** | |\n", dt, dd, db;
            printf "| all of core/src | %d | %d | %d | |\n", at, ad, ab }'
    echo
    echo "- heap: $( [ -z "$heap" ] && echo "no malloc/calloc/realloc/free referenced by any core object" || echo "REFERENCES $heap")"
    echo "- \`sizeof(struct tcpota_dev)\` = $dev_sz bytes (one device session's state; \`sizeof(struct tcpota_srv)\` = $srv_sz)"
    echo "- RAM per device session: state $dev_sz + rx buffer 4108 (4096-byte DATA payload + 4 offset + 8 frame) + tx buffer 512 = **$((dev_sz + 4108 + 512)) bytes**, all caller-owned (static or on the caller's stack), none from a heap"
    echo
  } >> "$out_md"
done

port_dir=esp-idf/components/tcpota
{
  echo "### The device port"
  echo
  if ls "$port_dir"/*.c >/dev/null 2>&1; then
    echo "The ESP-IDF component (\`$port_dir\`) needs ESP-IDF's own headers and toolchain"
    echo "(\`esp_ota_ops.h\`, lwIP, FreeRTOS), which are not Debian packages: its size is not"
    echo "measured here. The POSIX port (\`ports/posix\`) is host-only and not a device port."
  else
    echo "No device port to measure: the ESP-IDF component is not in this tree yet, and the POSIX"
    echo "port (\`ports/posix\`) is host-only. The figures above are the core only."
  fi
  echo
} >> "$out_md"
cat "$out_md"
