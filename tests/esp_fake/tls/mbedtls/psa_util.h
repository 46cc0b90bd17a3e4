/* mbedtls/psa_util.h - host fake: PSA's random generator as an f_rng. */
#ifndef ESP_FAKE_MBEDTLS_PSA_UTIL_H
#define ESP_FAKE_MBEDTLS_PSA_UTIL_H

#include <stddef.h>

int mbedtls_psa_get_random(void *p_rng, unsigned char *output, size_t output_size);
#define MBEDTLS_PSA_RANDOM_STATE NULL

#endif
