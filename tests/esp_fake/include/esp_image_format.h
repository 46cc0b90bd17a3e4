/* esp_image_format.h - host fake: image metadata. A fake app image is
 * byte 0 = 0xE9 (ESP_IMAGE_HEADER_MAGIC), bytes 4..7 = its total length
 * (little-endian), bytes 8..39 = its version string; see esp_fake.h. */
#ifndef ESP_FAKE_ESP_IMAGE_FORMAT_H
#define ESP_FAKE_ESP_IMAGE_FORMAT_H

#include <stdint.h>

#include "esp_err.h"

#define ESP_IMAGE_HEADER_MAGIC 0xE9

typedef struct {
    uint32_t offset;
    uint32_t size;
} esp_partition_pos_t;

typedef struct {
    uint32_t start_addr;
    uint32_t image_len; /* length of the image on flash, in bytes */
    uint8_t image_digest[32];
} esp_image_metadata_t;

/* Fills metadata of the image in `part` (image_len: bytes 4..7 of the
 * fake image, its length up to the appended hash; as ESP-IDF's, it leaves
 * out a Secure Boot signature block appended after it); ESP_ERR_IMAGE_INVALID-like
 * failure (ESP_FAIL) when its header is not an image's. */
esp_err_t esp_image_get_metadata(const esp_partition_pos_t *part, esp_image_metadata_t *metadata);

#endif
