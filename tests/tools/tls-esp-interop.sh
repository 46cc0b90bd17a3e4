#!/usr/bin/env bash
# tls-esp-interop.sh MBEDTLS_SRC BUILD_DIR - the ESP-IDF TLS module
# (tls_esp.c) on a real Mbed TLS against a real `tcpota serve --tls-cert`
# (OpenSSL), with --require-auth: TLS 1.3 and TLS 1.2 must authenticate (the
# device's binding, from mbedtls_ssl_export_keying_material(), equals the
# server's, from OpenSSL) and download; a wrong binding, a wrong host name
# and a foreign CA must fail. By hand, not in `make test`: it needs an Mbed
# TLS 3.6 source tree (e.g. components/mbedtls/mbedtls of an ESP-IDF 5.5
# tree laid out as docs/esp-idf.md says), which it compiles for the host
# (about 30 s on 2 cores) with the default config plus
# MBEDTLS_SSL_KEYING_MATERIAL_EXPORT. BUILD_DIR: a host build of tcpota
# (cli/tcpota, the core and client libraries). Needs openssl, libsodium.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 MBEDTLS_SRC BUILD_DIR" >&2; exit 2; }
MB=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$MB/include/mbedtls/ssl.h" ] && [ -d "$MB/library" ] || { echo "$MB: no Mbed TLS source tree" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/tls-esp-interop.XXXXXX")
SRV=
# shellcheck disable=SC2086 # SRV: the servers' pids
cleanup() { [ -z "$SRV" ] || kill $SRV 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

echo "tls-esp-interop: Mbed TLS $(sed -n 's/^#define MBEDTLS_VERSION_STRING *"\(.*\)"/\1/p' "$MB/include/mbedtls/build_info.h") from $MB"
printf '#define MBEDTLS_SSL_KEYING_MATERIAL_EXPORT\n#undef MBEDTLS_DEBUG_C\n#define MBEDTLS_PLATFORM_MEMORY\n' > "$W/user_config.h"
mkdir "$W/obj"
# Mbed TLS 3.6's library Makefile generates a debug helper with its
# framework's scripts; without MBEDTLS_DEBUG_C the file is empty anyway.
: > "$W/ssl_debug_helpers_generated.c"
ls "$MB"/library/*.c | grep -v '/ssl_debug_helpers_generated\.c$' |
    xargs -P2 -I{} sh -c 'gcc -O1 -I"$1/include" -I"$1/library" -DMBEDTLS_USER_CONFIG_FILE="\"$2/user_config.h\"" -c {} -o "$2/obj/$(basename {} .c).o"' _ "$MB" "$W"
ar rcs "$W/libmbedtls.a" "$W"/obj/*.o
build() { # OUT EXTRA_FLAGS...: the interop program on tls_esp.c
    local out=$1
    shift
    gcc -O1 -Wall -Wextra -Werror -D_DEFAULT_SOURCE -DCONFIG_TCPOTA_TLS=1 -DCONFIG_TCPOTA_TLS_HOST='""' "$@" \
        -DMBEDTLS_USER_CONFIG_FILE="\"$W/user_config.h\"" -I"$MB/include" \
        -I"$ROOT/tests/esp_fake/include" -I"$ROOT/esp-idf/components/tcpota/include" \
        -I"$ROOT/core/include" -I"$ROOT/ports/common" -I"$ROOT/tests/unit" \
        "$ROOT/tests/tools/tls_esp_interop.c" "$ROOT/esp-idf/components/tcpota/tls_esp.c" \
        "$ROOT/tests/unit/fake_port.c" "$B/ports/common/libtcpota_client.a" "$B/core/libtcpota_core.a" \
        "$W/libmbedtls.a" $(pkg-config --libs libsodium) -o "$W/$out"
}
build interop -DCONFIG_TCPOTA_TLS_RESUME=1
build interop-noresume

cd "$W"
q() { "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=interop-ca
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca2.key -out ca2.pem -days 2 -subj /CN=other-ca
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.pem -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -CA ca.pem -CAkey ca.key
head -c 200000 /dev/urandom > img.bin
q "$B/cli/tcpota" keygen --device-secret --out dev1.secret
SECRET=$(cut -d' ' -f3 dev1.secret)
echo "dev1 $SECRET" > secrets
chmod 600 secrets

fails=0
serve() { # PORT: a server on it, logging to server-PORT.log; its pid appended to SRV
    "$B/cli/tcpota" serve --listen "127.0.0.1:$1" --version 2.0.0 --require-auth --auth-file secrets \
        --tls-cert srv.pem --tls-key srv.key img.bin > "server-$1.log" 2>&1 &
    SRV="$SRV $!"
    for _ in $(seq 50); do grep -qs listening "server-$1.log" && break; sleep 0.1; done
}
serve_and_run() { # EXPECT(0 updated / other: rc) then interop args after the port
    local expect=$1 port log rc
    shift
    port=$((20000 + RANDOM % 20000))
    log=server-$port.log
    serve "$port"
    rc=0
    ./interop "$port" "$@" || rc=$?
    # shellcheck disable=SC2086 # one pid
    { kill $SRV; wait $SRV 2>/dev/null || true; }
    SRV=
    if [ "$rc" -ne "$expect" ]; then
        echo "tls-esp-interop: FAIL ($*): exit $rc, expected $expect; server log:" >&2
        sed 's/^/    /' "$log" >&2
        fails=$((fails + 1))
    fi
    case "$expect$*" in
    0*) grep -q "authenticated: offer" "$log" || { echo "tls-esp-interop: FAIL: not authenticated" >&2; fails=$((fails + 1)); } ;;
    1*bad) grep -q "wrong answer to the challenge" "$log" || { echo "tls-esp-interop: FAIL: bad binding not refused as such" >&2; fails=$((fails + 1)); } ;;
    esac
}
serve_and_run 0 ca.pem "$SECRET" localhost 13
serve_and_run 0 ca.pem "$SECRET" localhost 12
serve_and_run 0 ca.pem "$SECRET" "" 13          # host name defaults to the server's address
serve_and_run 1 ca.pem "$SECRET" localhost bad
serve_and_run 6 ca.pem "$SECRET" other.example 13
serve_and_run 6 ca2.pem "$SECRET" localhost 13
# resume_run PROGRAM MODE WANT: connections to A, A, B, B; WANT is what each
# server must log, "full resumed" (resumption) or "full full" (none).
resume_run() {
    local prog=$1 mode=$2 want=$3 a b p got rc=0
    a=$((20000 + RANDOM % 20000)) b=$((a + 1))
    serve "$a"
    serve "$b"
    echo "tls-esp-interop: $prog, TLS mode $mode, connections to A, A, B, B"
    "./$prog" "$a,$a,$b,$b" ca.pem "$SECRET" localhost "$mode" | sed 's/^/    /' || rc=$?
    # shellcheck disable=SC2086 # two pids
    kill $SRV; wait 2>/dev/null || true; SRV=
    for p in "$a" "$b"; do
        got=$(sed -n 's/.*TLS handshake done (\(full\|resumed session\)).*/\1/p' "server-$p.log" |
              sed 's/resumed session/resumed/' | tr '\n' ' ' | sed 's/ $//')
        if [ "$rc" -ne 0 ] || [ "$got" != "$want" ] ||
           [ "$(grep -c "authenticated: offer" "server-$p.log")" -ne 2 ]; then
            echo "tls-esp-interop: FAIL ($prog $mode): server $p logged \"$got\", wanted \"$want\", exit $rc:" >&2
            sed 's/^/    /' "server-$p.log" >&2
            fails=$((fails + 1))
        else
            echo "tls-esp-interop: server $p: $got, both authenticated"
        fi
    done
}
resume_run interop 13 "full resumed"
resume_run interop 12 "full resumed"
resume_run interop-noresume 13 "full full"
resume_run interop-noresume 12 "full full"
[ "$fails" -eq 0 ] && echo "tls-esp-interop: all passed" || { echo "tls-esp-interop: $fails failed" >&2; exit 1; }
