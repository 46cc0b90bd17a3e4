/* esp_flash_partitions.h - host fake: otadata image states (ESP-IDF's
 * values; a uint32_t here, since ISO C limits enumerators to int). */
#ifndef ESP_FAKE_ESP_FLASH_PARTITIONS_H
#define ESP_FAKE_ESP_FLASH_PARTITIONS_H

#include <stdint.h>

typedef uint32_t esp_ota_img_states_t;
#define ESP_OTA_IMG_NEW 0x0U
#define ESP_OTA_IMG_PENDING_VERIFY 0x1U
#define ESP_OTA_IMG_VALID 0x2U
#define ESP_OTA_IMG_INVALID 0x3U
#define ESP_OTA_IMG_ABORTED 0x4U
#define ESP_OTA_IMG_UNDEFINED 0xFFFFFFFFU

#endif
