/* esp_crt_bundle.h - host fake of ESP-IDF's certificate bundle attach. */
#ifndef ESP_FAKE_CRT_BUNDLE_H
#define ESP_FAKE_CRT_BUNDLE_H

#include "esp_err.h"
#include "mbedtls/ssl.h"

esp_err_t esp_crt_bundle_attach(void *conf);
void esp_crt_bundle_detach(mbedtls_ssl_config *conf);

#endif
