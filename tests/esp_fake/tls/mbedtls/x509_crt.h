/* mbedtls/x509_crt.h - host fake: a CA chain that records what was parsed. */
#ifndef ESP_FAKE_MBEDTLS_X509_CRT_H
#define ESP_FAKE_MBEDTLS_X509_CRT_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/build_info.h"

#define MBEDTLS_ERR_X509_INVALID_FORMAT -0x2180
#define MBEDTLS_ERR_X509_CERT_VERIFY_FAILED -0x2700
#define MBEDTLS_ERR_X509_ALLOC_FAILED -0x2880
#define MBEDTLS_X509_BADCERT_EXPIRED 0x01
#define MBEDTLS_X509_BADCERT_CN_MISMATCH 0x04
#define MBEDTLS_X509_BADCERT_NOT_TRUSTED 0x08

typedef struct mbedtls_x509_crt {
    int certs; /* certificates parsed into the chain */
} mbedtls_x509_crt;

void mbedtls_x509_crt_init(mbedtls_x509_crt *crt);
/* As Mbed TLS: PEM only with the terminating NUL counted in buflen. A
 * buffer containing "BROKEN" fails, one containing "PARTLY" parses all but
 * one certificate (returns 1). */
int mbedtls_x509_crt_parse(mbedtls_x509_crt *chain, const unsigned char *buf, size_t buflen);
int mbedtls_x509_crt_verify_info(char *buf, size_t size, const char *prefix, uint32_t flags);
void mbedtls_x509_crt_free(mbedtls_x509_crt *crt);

#endif
