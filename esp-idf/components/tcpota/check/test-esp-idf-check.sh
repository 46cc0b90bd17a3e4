#!/usr/bin/env bash
# test-esp-idf-check.sh - tests esp-idf-check.sh's own checks on fake
# ESP-IDF trees (empty folders, no compiler needed; ESP_IDF_CHECK_DRY_RUN):
# it names the version it checks, refuses a tree without version.cmake or of
# an unknown line, and fails - naming it - when any include folder or
# header it needs is missing, on the 5.5 and the 6.x layout. Run by ctest
# (tests/unit/esp.cmake).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CHECK=$HERE/esp-idf-check.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

run() { # tree -> output in $T/out, status in $rc
    ESP_IDF_CHECK_DRY_RUN=1 LIBSODIUM_PATH= bash "$CHECK" "$1" "$T/obj" >"$T/out" 2>&1
    rc=$?
}

# A tree of major.minor.patch with version.cmake and app_update only.
mktree() {
    mkdir -p "$1/tools/cmake" "$1/components/app_update/include"
    printf 'set(IDF_VERSION_MAJOR %s)\nset(IDF_VERSION_MINOR %s)\nset(IDF_VERSION_PATCH %s)\n' \
        "$2" "$3" "$4" >"$1/tools/cmake/version.cmake"
}

# Completes a tree with whatever the script says is missing, one round for
# folders and one per header; gives up after 20 rounds.
complete() {
    for _ in $(seq 20); do
        run "$1"
        [ $rc -eq 0 ] && return 0
        local got=0
        while read -r d; do mkdir -p "$d"; got=1; done \
            < <(sed -n 's/^esp-idf-check: include folder missing: //p' "$T/out")
        h=$(sed -n 's/^esp-idf-check: FAILED: \(.*\.h\) missing$/\1/p' "$T/out")
        if [ -n "$h" ]; then mkdir -p "$(dirname "$h")"; : >"$h"; got=1; fi
        [ $got -eq 1 ] || { cat "$T/out"; return 1; }
    done
    return 1
}

for line in "5 5 1" "5 5 5" "6 0 2"; do
    set -- $line
    tree=$T/idf-$1.$2.$3
    mktree "$tree" "$1" "$2" "$3"
    run "$tree"
    if [ $rc -ne 0 ] && grep -q "include folder missing: $tree/components/lwip/lwip/src/include" "$T/out"; then
        ok "$1.$2.$3: an empty tree fails and names the missing folders"
    else
        bad "$1.$2.$3: an empty tree was not refused with the folder named (rc=$rc)"; cat "$T/out"
    fi
    if complete "$tree" && grep -q "^esp-idf-check: ESP-IDF $1.$2.$3 at $tree" "$T/out"; then
        ok "$1.$2.$3: a complete tree passes and the version checked is printed"
    else
        bad "$1.$2.$3: the completed tree did not pass with its version printed"; cat "$T/out"
        continue
    fi
    # Every folder it asked for is needed: take away every 6th leaf folder
    # (one loop in the script checks them all; a run costs ~0.2 s here) and
    # the ones only this line has, in turn.
    n=0
    while read -r d; do
        mv "$d" "$d.away"
        run "$tree"
        if [ $rc -eq 0 ] || ! grep -q "include folder missing: $d\$" "$T/out"; then
            bad "$1.$2.$3: missing $d not reported"
        fi
        mv "$d.away" "$d"
        n=$((n + 1))
    done < <({ find "$tree/components" -mindepth 1 -type d -empty | sort | awk 'NR % 6 == 1'
               find "$tree/components" -mindepth 1 -type d -empty \
                   \( -path '*/newlib/*' -o -path '*/esp_libc/*' -o -path '*tf-psa-crypto*' \); } | sort -u)
    if [ $n -ge 5 ]; then ok "$1.$2.$3: each of $n folders taken away is an error naming it"
    else bad "$1.$2.$3: only $n folders taken away"; fi
done

# The 6.x layout needs TF-PSA-Crypto's headers, the 5.5 one does not.
[ -d "$T/idf-6.0.2/components/mbedtls/mbedtls/tf-psa-crypto/include/psa" ] &&
    [ ! -e "$T/idf-5.5.5/components/mbedtls/mbedtls/tf-psa-crypto" ] &&
    ok "6.x needs tf-psa-crypto, 5.5 does not" || bad "tf-psa-crypto layout"
# esp_blockdev came with 5.5.5 (esp_partition.h includes it from then on):
# needed there and in 6.x, not asked of 5.5.0-5.5.4.
[ -d "$T/idf-5.5.5/components/esp_blockdev/include" ] && [ -d "$T/idf-6.0.2/components/esp_blockdev/include" ] &&
    [ ! -e "$T/idf-5.5.1/components/esp_blockdev" ] &&
    ok "esp_blockdev from 5.5.5 and in 6.x only" || bad "esp_blockdev layout"
rm "$T/idf-6.0.2/components/mbedtls/mbedtls/tf-psa-crypto/include/psa/crypto.h"
run "$T/idf-6.0.2"
[ $rc -ne 0 ] && grep -q "tf-psa-crypto/include/psa/crypto.h missing" "$T/out" &&
    ok "6.x: a missing psa/crypto.h is an error naming it" || bad "6.x: missing psa/crypto.h not reported"

rm "$T/idf-5.5.5/tools/cmake/version.cmake"
run "$T/idf-5.5.5"
[ $rc -ne 0 ] && grep -q "version.cmake missing" "$T/out" && ok "no version.cmake: refused" ||
    bad "no version.cmake was not refused"
mktree "$T/idf-5.4" 5 4 0
run "$T/idf-5.4"
[ $rc -ne 0 ] && grep -q "ESP-IDF 5.4.0 is not a line this check knows" "$T/out" &&
    ok "5.4: refused" || bad "5.4 was not refused"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all esp-idf-check.sh checks hold"
