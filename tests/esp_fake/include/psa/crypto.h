/* psa/crypto.h - host fake of the part of the PSA Crypto API the tcpota
 * ESP-IDF port uses (SHA-256 hashing, HMAC-SHA-256 with a volatile key),
 * over libsodium. Names, values and contracts as in Mbed TLS 3.6 (ESP-IDF
 * 5.5) and TF-PSA-Crypto 1.0 (ESP-IDF 6), which agree on all of them.
 *
 * Stricter than a library need be, so that a port that breaks the API's
 * rules fails the host tests: every call but psa_crypto_init() and the
 * aborts returns PSA_ERROR_BAD_STATE until psa_crypto_init() has succeeded
 * (esp_fake_reboot() forgets it, as a reset does); only PSA_ALG_SHA_256 and
 * PSA_ALG_HMAC(PSA_ALG_SHA_256) are supported; a key is used only for the
 * algorithm and usage it was imported with; and the keys still alive can
 * be counted (esp_fake_psa_keys()), so a missing psa_destroy_key() shows. */
#ifndef ESP_FAKE_PSA_CRYPTO_H
#define ESP_FAKE_PSA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

typedef int32_t psa_status_t;
typedef uint32_t psa_algorithm_t;
typedef uint16_t psa_key_type_t;
typedef uint32_t psa_key_usage_t;
typedef uint32_t psa_key_id_t;
typedef uint32_t psa_key_lifetime_t;

#define PSA_SUCCESS ((psa_status_t)0)
#define PSA_ERROR_GENERIC_ERROR ((psa_status_t)-132)
#define PSA_ERROR_NOT_PERMITTED ((psa_status_t)-133)
#define PSA_ERROR_NOT_SUPPORTED ((psa_status_t)-134)
#define PSA_ERROR_INVALID_ARGUMENT ((psa_status_t)-135)
#define PSA_ERROR_INVALID_HANDLE ((psa_status_t)-136)
#define PSA_ERROR_BAD_STATE ((psa_status_t)-137)
#define PSA_ERROR_BUFFER_TOO_SMALL ((psa_status_t)-138)
#define PSA_ERROR_INSUFFICIENT_MEMORY ((psa_status_t)-141)
#define PSA_ERROR_INSUFFICIENT_STORAGE ((psa_status_t)-142)
#define PSA_ERROR_HARDWARE_FAILURE ((psa_status_t)-147)
#define PSA_ERROR_CORRUPTION_DETECTED ((psa_status_t)-151)

#define PSA_ALG_SHA_256 ((psa_algorithm_t)0x02000009)
#define PSA_ALG_HMAC_BASE ((psa_algorithm_t)0x03800000)
#define PSA_ALG_HMAC(hash_alg) ((psa_algorithm_t)(PSA_ALG_HMAC_BASE | ((hash_alg)&0x000000ffu)))
#define PSA_KEY_TYPE_HMAC ((psa_key_type_t)0x1100)
#define PSA_KEY_USAGE_SIGN_MESSAGE ((psa_key_usage_t)0x00000400)
#define PSA_KEY_USAGE_VERIFY_MESSAGE ((psa_key_usage_t)0x00000800)
#define PSA_KEY_LIFETIME_VOLATILE ((psa_key_lifetime_t)0x00000000)
#define PSA_KEY_ID_NULL ((psa_key_id_t)0)
#define PSA_HASH_LENGTH(alg) ((alg) == PSA_ALG_SHA_256 ? 32u : 0u)
#define PSA_MAC_LENGTH(key_type, key_bits, alg)                                                   \
    ((alg) == PSA_ALG_HMAC(PSA_ALG_SHA_256) ? 32u : 0u)

typedef struct {
    psa_key_type_t type;
    size_t bits;
    psa_key_usage_t usage;
    psa_algorithm_t alg;
    psa_key_lifetime_t lifetime;
} psa_key_attributes_t;

#define PSA_KEY_ATTRIBUTES_INIT {0, 0, 0, 0, PSA_KEY_LIFETIME_VOLATILE}

static inline psa_key_attributes_t psa_key_attributes_init(void)
{
    const psa_key_attributes_t v = PSA_KEY_ATTRIBUTES_INIT;
    return v;
}
static inline void psa_set_key_type(psa_key_attributes_t *a, psa_key_type_t type)
{
    a->type = type;
}
static inline void psa_set_key_bits(psa_key_attributes_t *a, size_t bits)
{
    a->bits = bits;
}
static inline void psa_set_key_usage_flags(psa_key_attributes_t *a, psa_key_usage_t usage)
{
    a->usage = usage;
}
static inline void psa_set_key_algorithm(psa_key_attributes_t *a, psa_algorithm_t alg)
{
    a->alg = alg;
}
static inline void psa_set_key_lifetime(psa_key_attributes_t *a, psa_key_lifetime_t lifetime)
{
    a->lifetime = lifetime;
}
void psa_reset_key_attributes(psa_key_attributes_t *attributes);

/* A hash operation: all zero (PSA_HASH_OPERATION_INIT) is inactive. */
typedef struct {
    psa_algorithm_t alg; /* 0: inactive */
    int error;           /* a call failed: only psa_hash_abort() is allowed */
    union {
        unsigned char bytes[128]; /* crypto_hash_sha256_state, opaque here */
        uint64_t align;
    } state;
} psa_hash_operation_t;

#define PSA_HASH_OPERATION_INIT {0, 0, {{0}}}

static inline psa_hash_operation_t psa_hash_operation_init(void)
{
    const psa_hash_operation_t v = PSA_HASH_OPERATION_INIT;
    return v;
}

/* Each as documented in the PSA Certified Crypto API 1.1. */
psa_status_t psa_crypto_init(void);
psa_status_t psa_hash_setup(psa_hash_operation_t *operation, psa_algorithm_t alg);
psa_status_t psa_hash_update(psa_hash_operation_t *operation, const uint8_t *input,
                             size_t input_length);
psa_status_t psa_hash_finish(psa_hash_operation_t *operation, uint8_t *hash, size_t hash_size,
                             size_t *hash_length);
psa_status_t psa_hash_abort(psa_hash_operation_t *operation);
psa_status_t psa_hash_compute(psa_algorithm_t alg, const uint8_t *input, size_t input_length,
                              uint8_t *hash, size_t hash_size, size_t *hash_length);
psa_status_t psa_import_key(const psa_key_attributes_t *attributes, const uint8_t *data,
                            size_t data_length, psa_key_id_t *key);
psa_status_t psa_mac_compute(psa_key_id_t key, psa_algorithm_t alg, const uint8_t *input,
                             size_t input_length, uint8_t *mac, size_t mac_size,
                             size_t *mac_length);
psa_status_t psa_destroy_key(psa_key_id_t key);

#endif
