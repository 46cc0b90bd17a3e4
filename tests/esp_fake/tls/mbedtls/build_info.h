/* mbedtls/build_info.h - host fake (tests/esp_fake/tls): the configuration
 * the tcpota TLS module (esp-idf/components/tcpota/tls_esp.c) is tested
 * with, as ESP-IDF 5.5 (Mbed TLS 3.6) builds it with
 * CONFIG_MBEDTLS_SSL_KEYING_MATERIAL_EXPORT on. */
#ifndef ESP_FAKE_MBEDTLS_BUILD_INFO_H
#define ESP_FAKE_MBEDTLS_BUILD_INFO_H

#define MBEDTLS_VERSION_MAJOR 3
#ifndef ESP_FAKE_TLS_NO_EXPORT
#define MBEDTLS_SSL_KEYING_MATERIAL_EXPORT
#endif
#define MBEDTLS_ERROR_C

#endif
