/* esp_ota_ops.h - host fake of ESP-IDF 5.5's OTA API (tests/esp_fake), with
 * its documented semantics: OTA_WITH_SEQUENTIAL_WRITES erases each sector
 * when the writes reach it; esp_ota_resume() continues at image_offset
 * without erasing what lies before it; esp_ota_begin() refuses while the
 * running image is PENDING_VERIFY (rollback enabled) or to write the
 * running partition; esp_ota_end() validates the image and frees the
 * handle; a new boot image starts NEW and the fake bootloader
 * (esp_fake_reboot) turns it PENDING_VERIFY, or ABORTED when it was still
 * pending at the next reset. */
#ifndef ESP_FAKE_ESP_OTA_OPS_H
#define ESP_FAKE_ESP_OTA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "esp_app_desc.h"
#include "esp_err.h"
#include "esp_flash_partitions.h"
#include "esp_image_format.h"
#include "esp_partition.h"

#define OTA_SIZE_UNKNOWN 0xffffffff
#define OTA_WITH_SEQUENTIAL_WRITES 0xfffffffe

#define ESP_ERR_OTA_BASE 0x1500
#define ESP_ERR_OTA_PARTITION_CONFLICT (ESP_ERR_OTA_BASE + 0x01)
#define ESP_ERR_OTA_SELECT_INFO_INVALID (ESP_ERR_OTA_BASE + 0x02)
#define ESP_ERR_OTA_VALIDATE_FAILED (ESP_ERR_OTA_BASE + 0x03)
#define ESP_ERR_OTA_SMALL_SEC_VER (ESP_ERR_OTA_BASE + 0x04)
#define ESP_ERR_OTA_ROLLBACK_FAILED (ESP_ERR_OTA_BASE + 0x05)
#define ESP_ERR_OTA_ROLLBACK_INVALID_STATE (ESP_ERR_OTA_BASE + 0x06)

typedef uint32_t esp_ota_handle_t;

/* Each as documented in ESP-IDF's esp_ota_ops.h. */
esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size,
                        esp_ota_handle_t *out_handle);
esp_err_t esp_ota_resume(const esp_partition_t *partition, const size_t erase_size,
                         const size_t image_offset, esp_ota_handle_t *out_handle);
esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size);
esp_err_t esp_ota_end(esp_ota_handle_t handle);
esp_err_t esp_ota_abort(esp_ota_handle_t handle);
esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition);
const esp_partition_t *esp_ota_get_running_partition(void);
const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from);
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void);
/* Fake: marks the image INVALID and records a reboot request instead of
 * resetting (esp_fake.h: esp_fake_reboot_requested); returns ESP_OK. */
esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void);
const esp_partition_t *esp_ota_get_last_invalid_partition(void);
esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition,
                                      esp_ota_img_states_t *ota_state);

#endif
