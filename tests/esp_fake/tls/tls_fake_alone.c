/* tls_fake_alone.c - what the rest of tests/esp_fake provides (esp_fake.c:
 * PSA and the log; task_fake.c: mbedtls_platform_zeroize), for a test that
 * links the TLS fake without them (test_tls_esp). psa_crypto_init()
 * returns tls_fake.psa_rc. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_log.h"
#include "mbedtls/platform_util.h"
#include "psa/crypto.h"
#include "tls_fake.h"

psa_status_t psa_crypto_init(void)
{
    return tls_fake.psa_rc;
}

void mbedtls_platform_zeroize(void *buf, size_t len)
{
    volatile unsigned char *p = buf;

    while (len--) {
        *p++ = 0;
    }
}

