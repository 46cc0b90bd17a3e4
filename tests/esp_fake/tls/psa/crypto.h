/* psa/crypto.h - host fake: only psa_crypto_init() (tests/esp_fake/tls). */
#ifndef ESP_FAKE_TLS_PSA_CRYPTO_H
#define ESP_FAKE_TLS_PSA_CRYPTO_H

#include <stdint.h>

typedef int32_t psa_status_t;
#define PSA_SUCCESS ((psa_status_t)0)

psa_status_t psa_crypto_init(void);

#endif
