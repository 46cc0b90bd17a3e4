/* nvs_flash.h - host fake of ESP-IDF's NVS partition initialisation
 * (tests/esp_fake): partitions "nvs" (the default) and "tcpota_nvs" exist
 * and start initialised-able and empty; a name not in the partition table
 * gives ESP_ERR_NOT_FOUND, an open before the init ESP_ERR_NVS_NOT_INITIALIZED,
 * and esp_fake_nvs_fail_init() injects the errors a real partition can give
 * (ESP_ERR_NVS_NO_FREE_PAGES, ESP_ERR_NVS_NEW_VERSION_FOUND). */
#ifndef ESP_FAKE_NVS_FLASH_H
#define ESP_FAKE_NVS_FLASH_H

#include "esp_err.h"
#include "nvs.h"

/* Each as documented in ESP-IDF's nvs_flash.h. */
esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_init_partition(const char *partition_label);
esp_err_t nvs_flash_erase(void);
esp_err_t nvs_flash_erase_partition(const char *partition_label);

#endif
