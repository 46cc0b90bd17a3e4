/* mbedtls/platform_util.h - host fake. */
#ifndef ESP_FAKE_MBEDTLS_PLATFORM_UTIL_H
#define ESP_FAKE_MBEDTLS_PLATFORM_UTIL_H

#include <stddef.h>

void mbedtls_platform_zeroize(void *buf, size_t len);

#endif
