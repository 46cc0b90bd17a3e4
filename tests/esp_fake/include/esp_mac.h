/* esp_mac.h - host fake: a fixed station MAC. */
#ifndef ESP_FAKE_ESP_MAC_H
#define ESP_FAKE_ESP_MAC_H

#include <stdint.h>

#include "esp_err.h"

typedef enum { ESP_MAC_WIFI_STA = 0 } esp_mac_type_t;

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type);

#endif
