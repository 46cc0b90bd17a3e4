/* mbedtls/error.h - host fake: mbedtls_strerror() says "fake mbedTLS error N". */
#ifndef ESP_FAKE_MBEDTLS_ERROR_H
#define ESP_FAKE_MBEDTLS_ERROR_H

#include <stddef.h>

void mbedtls_strerror(int errnum, char *buffer, size_t buflen);

#endif
