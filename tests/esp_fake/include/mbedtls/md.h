/* mbedtls/md.h - host fake of the part of mbedTLS 3.6's generic message
 * digest API the tcpota ESP-IDF port uses (HMAC-SHA-256), over libsodium's
 * crypto_auth_hmacsha256. Names, values and contracts as in mbedTLS 3.6. */
#ifndef ESP_FAKE_MBEDTLS_MD_H
#define ESP_FAKE_MBEDTLS_MD_H

#include <stddef.h>

#define MBEDTLS_ERR_MD_FEATURE_UNAVAILABLE -0x5080
#define MBEDTLS_ERR_MD_BAD_INPUT_DATA -0x5100
#define MBEDTLS_ERR_MD_ALLOC_FAILED -0x5180

typedef enum {
    MBEDTLS_MD_NONE = 0,
    MBEDTLS_MD_MD5 = 0x03,
    MBEDTLS_MD_RIPEMD160 = 0x04,
    MBEDTLS_MD_SHA1 = 0x05,
    MBEDTLS_MD_SHA224 = 0x08,
    MBEDTLS_MD_SHA256 = 0x09,
    MBEDTLS_MD_SHA384 = 0x0a,
    MBEDTLS_MD_SHA512 = 0x0b,
} mbedtls_md_type_t;

typedef struct mbedtls_md_info_t mbedtls_md_info_t;

/* The info of md_type, or NULL when not available (here: only SHA-256). */
const mbedtls_md_info_t *mbedtls_md_info_from_type(mbedtls_md_type_t md_type);

/* output = HMAC(md_info, key, input); 0 or MBEDTLS_ERR_MD_BAD_INPUT_DATA
 * (NULL md_info or another digest than SHA-256 here, NULL buffers with a
 * non-zero length), or the error esp_fake_fail_hmac() injected. */
int mbedtls_md_hmac(const mbedtls_md_info_t *md_info, const unsigned char *key, size_t keylen,
                    const unsigned char *input, size_t ilen, unsigned char *output);

#endif
