/* esp_mac.h - host fake: fixed station and base MACs (unlike a chip, not
 * alike, so that a test tells which was read), each may fail
 * (esp_fake_tasks.mac_fail, task_fake.h). */
#ifndef ESP_FAKE_ESP_MAC_H
#define ESP_FAKE_ESP_MAC_H

#include <stdint.h>

#include "esp_err.h"

typedef enum { ESP_MAC_WIFI_STA = 0, ESP_MAC_BASE = 5 } esp_mac_type_t; /* ESP-IDF's values */

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type);

#endif
