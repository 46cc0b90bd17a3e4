/* mbedtls/sha256.h - host fake of mbedTLS 3.6's SHA-256 API over libsodium. */
#ifndef ESP_FAKE_MBEDTLS_SHA256_H
#define ESP_FAKE_MBEDTLS_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    union {
        unsigned char bytes[128]; /* crypto_hash_sha256_state, opaque here */
        uint64_t align;
    } state;
    int started;
} mbedtls_sha256_context;

/* Each as documented in mbedTLS's sha256.h (is224 must be 0 here). */
void mbedtls_sha256_init(mbedtls_sha256_context *ctx);
void mbedtls_sha256_free(mbedtls_sha256_context *ctx);
int mbedtls_sha256_starts(mbedtls_sha256_context *ctx, int is224);
int mbedtls_sha256_update(mbedtls_sha256_context *ctx, const unsigned char *input, size_t ilen);
int mbedtls_sha256_finish(mbedtls_sha256_context *ctx, unsigned char *output);

#endif
