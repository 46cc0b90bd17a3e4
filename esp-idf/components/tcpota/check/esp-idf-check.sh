#!/usr/bin/env bash
# esp-idf-check.sh IDF_PATH [OUT_DIR] - compiles every source of the tcpota
# ESP-IDF component for the ESP32-C3 (RV32IMC) with Debian's
# riscv64-unknown-elf GCC and picolibc, against the headers of the ESP-IDF
# copy in IDF_PATH (5.5 or later, with components/lwip/lwip and
# components/mbedtls/mbedtls filled) and the hand-written sdkconfig.h
# beside this script. Warnings are errors. Prints the size of each object.
# A third argument, COMPONENT_ROOT: the component (the repository root) to compile, e.g. the
# copy the IDF Component Manager made (tests/idf/test_component_copy.py);
# default: the repository this script is in.
#
# LIBSODIUM_PATH (environment): the espressif/libsodium component (the
# libsodium/ folder of github:espressif/idf-extra-components, with its
# libsodium/ submodule filled), whose headers the Ed25519 check in
# port_esp.c needs. Set: every source is compiled as by default
# (CONFIG_TCPOTA_SIGNED_IMAGES on), and port_esp.c and tcpota_esp.c once
# more with it off. Unset: every source is compiled with it off only, and
# the script says that the signed variant was not checked.
set -euo pipefail

IDF=${1:?usage: esp-idf-check.sh IDF_PATH [OUT_DIR [COMPONENT_ROOT]]}
OUT=${2:-/tmp/tcpota-esp-idf-check}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "${3:-$HERE/../../../..}" && pwd)
COMP=$ROOT/esp-idf/components/tcpota
CC=riscv64-unknown-elf-gcc
SIZE=riscv64-unknown-elf-size
C=$IDF/components

[ -d "$C/app_update/include" ] || { echo "esp-idf-check: $IDF is not an ESP-IDF tree" >&2; exit 1; }
for sub in lwip/lwip/src/include mbedtls/mbedtls/include; do
    [ -d "$C/$sub" ] || { echo "esp-idf-check: $C/$sub missing (submodule not checked out)" >&2; exit 1; }
done

ver=$(sed -n 's/^set(IDF_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$IDF/tools/cmake/version.cmake" | paste -sd.)
echo "esp-idf-check: ESP-IDF $ver at $IDF"

SODIUM=${LIBSODIUM_PATH:-}
SODIUM_INC=()
if [ -n "$SODIUM" ]; then
    [ -f "$SODIUM/port_include/sodium.h" ] && [ -f "$SODIUM/idf_component.yml" ] || {
        echo "esp-idf-check: LIBSODIUM_PATH=$SODIUM is not the espressif/libsodium component" >&2; exit 1; }
    [ -f "$SODIUM/libsodium/src/libsodium/include/sodium.h" ] || {
        echo "esp-idf-check: $SODIUM/libsodium missing (submodule not checked out)" >&2; exit 1; }
    # The component's order (CONFIG_LIBSODIUM_USE_MBEDTLS_SHA=y): its port
    # headers first, then upstream's.
    SODIUM_INC=(-I "$SODIUM/port_include" -I "$SODIUM/libsodium/src/libsodium/include")
    sver=$(sed -n 's/^version: *"\(.*\)"/\1/p' "$SODIUM/idf_component.yml")
    uver=$(sed -n 's/^AC_INIT(\[libsodium\],\[\([^]]*\)\].*/\1/p' "$SODIUM/libsodium/configure.ac")
    echo "esp-idf-check: espressif/libsodium $sver (libsodium $uver) at $SODIUM"
else
    echo "esp-idf-check: LIBSODIUM_PATH not set: compiling with CONFIG_TCPOTA_SIGNED_IMAGES off only;"
    echo "esp-idf-check: the Ed25519 code of port_esp.c is NOT checked (set LIBSODIUM_PATH to"
    echo "esp-idf-check: idf-extra-components/libsodium with its submodule to check it)"
fi

INC=(
    "$HERE"
    "$COMP/include" "$ROOT/core/include" "$ROOT/ports/common"
    "$C/newlib/platform_include"
    "$C/esp_common/include"
    "$C/esp_system/include"
    "$C/esp_rom/include" "$C/esp_rom/esp32c3/include" "$C/esp_rom/esp32c3/include/esp32c3" "$C/esp_rom/esp32c3"
    "$C/esp_hw_support/include" "$C/esp_hw_support/include/soc" "$C/esp_hw_support/port/esp32c3/include"
    "$C/esp_hw_support/etm/include" "$C/esp_hw_support/dma/include" "$C/esp_hw_support/ldo/include"
    "$C/esp_hw_support/debug_probe/include" "$C/esp_hw_support/mspi_timing_tuning/include"
    "$C/soc/include" "$C/soc/esp32c3/include" "$C/soc/esp32c3/register"
    "$C/hal/include" "$C/hal/esp32c3/include" "$C/hal/platform_port/include"
    "$C/log/include"
    "$C/heap/include"
    "$C/riscv/include"
    "$C/freertos/config/include" "$C/freertos/config/include/freertos" "$C/freertos/config/riscv/include"
    "$C/freertos/FreeRTOS-Kernel/include" "$C/freertos/FreeRTOS-Kernel/portable/riscv/include"
    "$C/freertos/FreeRTOS-Kernel/portable/riscv/include/freertos"
    "$C/freertos/esp_additions/include"
    "$C/esp_timer/include"
    "$C/app_update/include"
    "$C/esp_partition/include"
    "$C/spi_flash/include"
    "$C/bootloader_support/include" "$C/bootloader_support/bootloader_flash/include"
    "$C/esp_app_format/include" "$C/esp_bootloader_format/include"
    "$C/nvs_flash/include"
    "$C/mbedtls/port/include" "$C/mbedtls/mbedtls/include" "$C/mbedtls/esp_crt_bundle/include"
    "$C/lwip/include" "$C/lwip/port/include" "$C/lwip/port/freertos/include"
    "$C/lwip/port/esp32xx/include" "$C/lwip/port/esp32xx/include/arch"
    "$C/lwip/lwip/src/include"
    "$C/vfs/include"
    "$C/esp_security/include" "$C/efuse/include" "$C/efuse/esp32c3/include"
)
CFLAGS=(-march=rv32imc_zicsr_zifencei -mabi=ilp32 --specs=picolibc.specs -std=gnu2x
        -Os -ffunction-sections -fdata-sections -fno-common
        -Wall -Wextra -Werror -Wno-unused-parameter
        -DESP_PLATFORM -D_GNU_SOURCE -DIDF_VER="\"v$ver\""
        -DMBEDTLS_CONFIG_FILE='"mbedtls/esp_config.h"')
for d in "${INC[@]}"; do
    [ -d "$d" ] && CFLAGS+=(-I "$d")
done

SRCS=("$COMP"/*.c "$ROOT/ports/common/tcpota_client.c" "$ROOT/ports/common/tcpota_runner.c" "$ROOT"/core/src/*.c)
mkdir -p "$OUT"
rm -f "$OUT"/*.o
objs=()
cc1() { # source, object, label, extra flags...
    local src=$1 obj=$2 label=$3
    shift 3
    echo "  CC $(realpath --relative-to="$ROOT" "$src")$label"
    "$CC" "${CFLAGS[@]}" "$@" -c "$src" -o "$obj"
}
if [ -n "$SODIUM" ]; then
    for src in "${SRCS[@]}"; do
        obj="$OUT/$(basename "${src%.c}").o"
        cc1 "$src" "$obj" "" "${SODIUM_INC[@]}"
        objs+=("$obj")
    done
    off=()
    for src in "$COMP/port_esp.c" "$COMP/tcpota_esp.c"; do
        obj="$OUT/$(basename "${src%.c}")-unsigned.o"
        cc1 "$src" "$obj" " (CONFIG_TCPOTA_SIGNED_IMAGES off)" -DTCPOTA_CHECK_UNSIGNED
        off+=("$obj")
    done
    echo "esp-idf-check: ${#objs[@]} sources (+${#off[@]} with signing off) compiled for rv32imc with no warning"
else
    for src in "${SRCS[@]}"; do
        obj="$OUT/$(basename "${src%.c}").o"
        cc1 "$src" "$obj" "" -DTCPOTA_CHECK_UNSIGNED
        objs+=("$obj")
    done
    echo "esp-idf-check: ${#objs[@]} sources compiled for rv32imc with no warning (signing off; see above)"
fi
"$SIZE" "${objs[@]}"
"$SIZE" -t "${objs[@]}" | tail -1
[ -z "$SODIUM" ] || "$SIZE" "${off[@]}"
