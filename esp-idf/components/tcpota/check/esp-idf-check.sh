#!/usr/bin/env bash
# esp-idf-check.sh IDF_PATH [OUT_DIR] - compiles every source of the tcpota
# ESP-IDF component for the ESP32-C3 (RV32IMC) with Debian's
# riscv64-unknown-elf GCC and picolibc, against the headers of the ESP-IDF
# copy in IDF_PATH (5.5.x: Mbed TLS 3.6; 6.x: Mbed TLS 4 + TF-PSA-Crypto;
# with components/lwip/lwip and components/mbedtls/mbedtls filled, on 6.x
# components/mbedtls/mbedtls/tf-psa-crypto too: docs/esp-idf.md says how to
# lay the trees out) and the hand-written sdkconfig.h beside this script.
# Prints the ESP-IDF version it checked (tools/cmake/version.cmake).
# Warnings are errors; a missing include folder or header is an error (never
# skipped). Prints the size of each object (OUT_DIR, default
# /tmp/tcpota-esp-idf-check-<version>, one folder per variant).
# A third argument, COMPONENT_ROOT: the component (the repository root) to
# compile, e.g. the copy the IDF Component Manager made
# (tests/idf/test_component_copy.py); default: the repository this script is in.
#
# LIBSODIUM_PATH (environment): the espressif/libsodium component (the
# libsodium/ folder of github:espressif/idf-extra-components, with its
# libsodium/ submodule filled), whose headers the Ed25519 check in
# port_esp.c needs. Set: every source is compiled as by default
# (CONFIG_TCPOTA_SIGNED_IMAGES on) and again with it off. Unset: with it
# off only, and the script says that the signed variant was not checked.
# port_esp.c is compiled once more with CONFIG_NVS_ENCRYPTION on.
# ESP_IDF_CHECK_DRY_RUN=1: check the tree and the include folders only.
set -euo pipefail

IDF=${1:?usage: esp-idf-check.sh IDF_PATH [OUT_DIR [COMPONENT_ROOT]]}
OUT=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "${3:-$HERE/../../../..}" && pwd)
COMP=$ROOT/esp-idf/components/tcpota
CC=riscv64-unknown-elf-gcc
SIZE=riscv64-unknown-elf-size
C=$IDF/components

fail() { echo "esp-idf-check: FAILED: $*" >&2; exit 1; }

[ -d "$C/app_update/include" ] || fail "$IDF is not an ESP-IDF tree (no components/app_update/include)"

# The version checked, from the tree itself (version.cmake, as idf.py reads it).
VC=$IDF/tools/cmake/version.cmake
[ -f "$VC" ] || fail "$VC missing: cannot tell which ESP-IDF this is"
major=$(sed -n 's/^set(IDF_VERSION_MAJOR \([0-9]*\))/\1/p' "$VC")
minor=$(sed -n 's/^set(IDF_VERSION_MINOR \([0-9]*\))/\1/p' "$VC")
patch=$(sed -n 's/^set(IDF_VERSION_PATCH \([0-9]*\))/\1/p' "$VC")
[ -n "$major" ] && [ -n "$minor" ] && [ -n "$patch" ] || fail "$VC: no IDF_VERSION_MAJOR/MINOR/PATCH"
ver=$major.$minor.$patch
echo "esp-idf-check: ESP-IDF $ver at $IDF"
OUT=${OUT:-/tmp/tcpota-esp-idf-check-$ver}
# ESP-IDF 5.5 ships Mbed TLS 3.6 and newlib; 6.x ships Mbed TLS 4, whose
# crypto (psa/, mbedtls/md.h, mbedtls/private/) lives in its tf-psa-crypto
# submodule, and picolibc (esp_libc). Each line has its own include folders.
if [ "$major" -eq 5 ] && [ "$minor" -ge 5 ]; then
    IDF6=
elif [ "$major" -eq 6 ]; then
    IDF6=1
else
    fail "ESP-IDF $ver is not a line this check knows (5.5.x, 6.x)"
fi

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

# Every folder below must exist: a missing one (a submodule not checked out,
# a folder ESP-IDF moved) stops the check with its name, rather than being
# skipped and leaving a header to be found elsewhere or not at all.
INC=(
    "$HERE"
    "$COMP/include" "$ROOT/core/include" "$ROOT/ports/common"
    "$C/esp_common/include"
    "$C/esp_system/include"
    "$C/esp_rom/include" "$C/esp_rom/esp32c3/include" "$C/esp_rom/esp32c3/include/esp32c3" "$C/esp_rom/esp32c3"
    "$C/esp_hw_support/include" "$C/esp_hw_support/include/soc" "$C/esp_hw_support/port/esp32c3/include"
    "$C/esp_hw_support/ldo/include"
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
# esp_partition.h includes esp_blockdev.h from 5.5.5 and 6.x on; 5.5.0 to
# 5.5.4 have no such component.
if [ -n "$IDF6" ] || [ "$minor" -gt 5 ] || [ "$patch" -ge 5 ]; then
    INC+=("$C/esp_blockdev/include")
fi
if [ -z "$IDF6" ]; then
    INC+=("$C/newlib/platform_include" "$C/esp_hw_support/dma/include")
else
    # ESP-IDF 6: esp_libc replaced newlib; Mbed TLS 4's public crypto
    # headers are TF-PSA-Crypto's (the public include folders of IDF's
    # mbedtls/tfpsacrypto targets; not its private core/ and builtin/src).
    INC+=("$C/esp_libc/platform_include" "$C/esp_hw_support/etm/include"
          "$C/mbedtls/port/psa_driver/include"
          "$C/mbedtls/mbedtls/tf-psa-crypto/include"
          "$C/mbedtls/mbedtls/tf-psa-crypto/drivers/builtin/include"
          "$C/mbedtls/mbedtls/tf-psa-crypto/drivers/everest/include"
          "$C/mbedtls/mbedtls/tf-psa-crypto/drivers/p256-m")
fi
missing=()
for d in "${INC[@]}"; do
    [ -d "$d" ] || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
    printf 'esp-idf-check: include folder missing: %s\n' "${missing[@]}" >&2
    fail "${#missing[@]} include folder(s) of ESP-IDF $ver missing (submodules: components/lwip/lwip, components/mbedtls/mbedtls${IDF6:+ and its tf-psa-crypto}; see docs/esp-idf.md)"
fi
# The headers tcpota's sources include must come from the tree, never from
# elsewhere on the path: name each one and fail if it is not there.
for h in "$C/mbedtls/mbedtls${IDF6:+/tf-psa-crypto}/include/psa/crypto.h" \
         "$C/lwip/lwip/src/include/lwip/sockets.h" "$C/nvs_flash/include/nvs_flash.h" \
         "$C/app_update/include/esp_ota_ops.h"; do
    [ -f "$h" ] || fail "$h missing"
done

CFLAGS=(-march=rv32imc_zicsr_zifencei -mabi=ilp32 --specs=picolibc.specs -std=gnu2x
        -Os -ffunction-sections -fdata-sections -fno-common
        -Wall -Wextra -Werror -Wno-unused-parameter
        -DESP_PLATFORM -D_GNU_SOURCE -DIDF_VER="\"v$ver\""
        -DMBEDTLS_CONFIG_FILE='"mbedtls/esp_config.h"')
# ESP-IDF 6: what the mbedtls component's targets pass on to every
# component that requires it (components/mbedtls/CMakeLists.txt), and the
# options sdkconfig.h adds for 6.x only.
[ -z "$IDF6" ] || CFLAGS+=(-DTF_PSA_CRYPTO_USER_CONFIG_FILE='"mbedtls/esp_config.h"'
                           -DMBEDTLS_MAJOR_VERSION=4 -D__STDC_WANT_LIB_EXT1__=0 -DTCPOTA_CHECK_IDF6)
for d in "${INC[@]}"; do
    CFLAGS+=(-I "$d")
done
if [ -n "${ESP_IDF_CHECK_DRY_RUN:-}" ]; then # for tests/esp_fake/test_esp_idf_check.sh
    echo "esp-idf-check: dry run: ${#INC[@]} include folders present; IDF6=${IDF6:-no}"
    exit 0
fi

SRCS=("$COMP"/*.c "$ROOT/ports/common/tcpota_client.c" "$ROOT/ports/common/tcpota_runner.c" "$ROOT"/core/src/*.c)
# Variants: "name|label|flags[|sources]". Every source is compiled in each
# variant, unless it names its own (files of the component), for options
# only they read.
TLS_SRCS="tls_esp.c tcpota_esp.c"
if [ -n "$SODIUM" ]; then
    VARIANTS=("signed|CONFIG_TCPOTA_SIGNED_IMAGES on (default), CONFIG_TCPOTA_TLS on (default off)|"
              "unsigned|CONFIG_TCPOTA_SIGNED_IMAGES off, TLS on|-DTCPOTA_CHECK_UNSIGNED"
              "nvsenc|CONFIG_NVS_ENCRYPTION on (port_esp.c only)|-DTCPOTA_CHECK_NVS_ENCRYPTION|port_esp.c"
              "notls|CONFIG_TCPOTA_TLS off|-DTCPOTA_CHECK_NO_TLS"
              "tlsbundle|CONFIG_TCPOTA_TLS with the certificate bundle|-DTCPOTA_CHECK_TLS_BUNDLE"
              "tls13|CONFIG_MBEDTLS_SSL_PROTO_TLS1_3 on (TLS sources only)|-DTCPOTA_CHECK_TLS13|$TLS_SRCS"
              "noresume|CONFIG_TCPOTA_TLS_RESUME off (TLS sources only)|-DTCPOTA_CHECK_NO_RESUME|$TLS_SRCS")
else
    VARIANTS=("unsigned|CONFIG_TCPOTA_SIGNED_IMAGES off, TLS on|-DTCPOTA_CHECK_UNSIGNED"
              "nvsenc|CONFIG_NVS_ENCRYPTION on, signing off (port_esp.c only)|-DTCPOTA_CHECK_NVS_ENCRYPTION -DTCPOTA_CHECK_UNSIGNED|port_esp.c"
              "notls|CONFIG_TCPOTA_TLS off, signing off|-DTCPOTA_CHECK_NO_TLS -DTCPOTA_CHECK_UNSIGNED"
              "tlsbundle|CONFIG_TCPOTA_TLS with the bundle, signing off|-DTCPOTA_CHECK_TLS_BUNDLE -DTCPOTA_CHECK_UNSIGNED"
              "tls13|CONFIG_MBEDTLS_SSL_PROTO_TLS1_3 on, signing off (TLS sources only)|-DTCPOTA_CHECK_TLS13 -DTCPOTA_CHECK_UNSIGNED|$TLS_SRCS"
              "noresume|CONFIG_TCPOTA_TLS_RESUME off, signing off (TLS sources only)|-DTCPOTA_CHECK_NO_RESUME -DTCPOTA_CHECK_UNSIGNED|$TLS_SRCS")
fi
# ESP-IDF 5.5.0 ships Mbed TLS 3.6.3, which has no keying-material export
# (3.6.4, in 5.5.1, brought it): TLS cannot be built there. Every variant is
# compiled with TLS off, and tls_esp.c must stop at its #error, which tells
# a user so.
NO_EXPORT=
if [ -z "$IDF6" ] && [ "$minor" -eq 5 ] && [ "$patch" -eq 0 ]; then
    NO_EXPORT=1
    kept=()
    for v in "${VARIANTS[@]}"; do
        IFS='|' read -r name label flags own <<<"$v"
        case $name in tlsbundle | tls13 | noresume) continue ;; esac
        case $flags in
            *TCPOTA_CHECK_NO_TLS*) ;;
            *) flags="$flags -DTCPOTA_CHECK_NO_TLS"
               label="${label/, CONFIG_TCPOTA_TLS on (default off)/}" label="${label/, TLS on/}, TLS off" ;;
        esac
        kept+=("$name|$label|$flags|$own")
    done
    VARIANTS=("${kept[@]}")
fi
rm -f "$OUT"/*/*.o
n_cc=0
for v in "${VARIANTS[@]}"; do
    IFS='|' read -r name label flags own <<<"$v"
    srcs=("${SRCS[@]}")
    if [ -n "$own" ]; then
        srcs=()
        for f in $own; do srcs+=("$COMP/$f"); done
    fi
    mkdir -p "$OUT/$name"
    echo "esp-idf-check: variant $name: $label"
    for src in "${srcs[@]}"; do
        echo "  CC $(realpath --relative-to="$ROOT" "$src")"
        # shellcheck disable=SC2086 # flags: zero or more words
        "$CC" "${CFLAGS[@]}" "${SODIUM_INC[@]}" $flags -c "$src" \
            -o "$OUT/$name/$(basename "${src%.c}").o"
        n_cc=$((n_cc + 1))
    done
    (cd "$OUT/$name" && "$SIZE" -t ./*.o | sed 's|\./||')
done
if [ -n "$NO_EXPORT" ]; then
    echo "esp-idf-check: ESP-IDF $ver: TLS not built (Mbed TLS 3.6.3: no keying-material export);"
    echo "esp-idf-check: tls_esp.c with CONFIG_TCPOTA_TLS must stop at its #error saying so"
    if "$CC" "${CFLAGS[@]}" "${SODIUM_INC[@]}" -DTCPOTA_CHECK_UNSIGNED -c "$COMP/tls_esp.c" \
        -o "$OUT/tls_esp-5.5.0.o" 2>"$OUT/tls_esp-5.5.0.err"; then
        fail "tls_esp.c compiled with TLS on ESP-IDF $ver, which has no keying-material export"
    fi
    grep -q 'TLS needs ESP-IDF 5.5.1 or later' "$OUT/tls_esp-5.5.0.err" || {
        cat "$OUT/tls_esp-5.5.0.err" >&2; fail "tls_esp.c failed on ESP-IDF $ver, but not at its #error"; }
    echo "  tls_esp.c: stopped at its #error, as it should"
fi
echo "esp-idf-check: ESP-IDF $ver: ${#SRCS[@]} sources, variants: $(printf '%s, ' "${VARIANTS[@]%%|*}" | sed 's/, $//'); $n_cc compilations for rv32imc, no warning"
[ -n "$SODIUM" ] || echo "esp-idf-check: the signed variant was NOT checked (LIBSODIUM_PATH not set)"
