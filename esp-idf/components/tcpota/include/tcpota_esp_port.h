/*
 * tcpota_esp_port.h - the tcpota device port on ESP-IDF: struct tcpota_port
 * (core/include/tcpota/port.h) over esp_ota_ops, esp_partition, NVS,
 * mbedTLS's SHA-256 and HMAC, and libsodium's Ed25519.
 *
 * Most applications use the task API (tcpota_esp.h), which owns one port.
 * This header is for those that drive the sans-I/O session themselves
 * (and for the host tests, which compile port_esp.c unchanged against a
 * fake of these ESP-IDF APIs, tests/esp_fake).
 *
 *   ota_begin    -> esp_ota_begin(esp_ota_get_next_update_partition(NULL),
 *                                 OTA_WITH_SEQUENTIAL_WRITES): sectors are
 *                   erased as the writes reach them
 *   ota_resume   -> esp_ota_resume(same partition, OTA_WITH_SEQUENTIAL_WRITES,
 *                                  offset): refused when the resume point
 *                   was recorded for another partition
 *   ota_write / ota_end / ota_abort -> esp_ota_write / esp_ota_end / esp_ota_abort
 *   ota_read     -> esp_partition_read(update partition)
 *   set_boot     -> esp_ota_set_boot_partition(update partition)
 *   mark_valid   -> esp_ota_mark_app_valid_cancel_rollback
 *   mark_invalid -> esp_ota_mark_app_invalid_rollback_and_reboot (no return)
 *   boot_state   -> esp_ota_get_state_partition(running) == PENDING_VERIFY,
 *                   esp_ota_get_last_invalid_partition() != NULL
 *   kv_*         -> nvs_get_blob / nvs_set_blob + nvs_commit / nvs_erase_key
 *                   + nvs_commit in the NVS namespace "tcpota"
 *   sha256_*     -> mbedtls_sha256_*
 *   hmac_sha256  -> mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256))
 *   ed25519_verify -> crypto_sign_verify_detached (espressif/libsodium;
 *                   NULL when CONFIG_TCPOTA_SIGNED_IMAGES is off)
 *
 * The application must have called nvs_flash_init() before
 * tcpota_esp_port_init(). Memory: sizeof(tcpota_esp_port_t) (about 130
 * bytes plus mbedTLS's SHA-256 context); esp_ota_begin()/esp_ota_resume()
 * allocate ESP-IDF's small OTA handle once per offer, never per write;
 * mbedtls_md_hmac() its context once per authenticated connection. The
 * trusted keys and the device secret: tcpota_esp_trust.h.
 */
#ifndef TCPOTA_ESP_PORT_H
#define TCPOTA_ESP_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "mbedtls/sha256.h"
#include "nvs.h"
#include "tcpota/port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NVS namespace of every tcpota record. */
#define TCPOTA_ESP_NVS_NAMESPACE "tcpota"
/* NVS key of the port's own record: the address of the partition the
 * resume point belongs to (written once per image, at ota_begin). */
#define TCPOTA_ESP_KEY_SLOT "tcpota.slot"

typedef struct tcpota_esp_port {
    const esp_partition_t *update; /* partition the current image goes to */
    esp_ota_handle_t handle;
    bool handle_open;
    nvs_handle_t nvs;
    bool nvs_open;
    mbedtls_sha256_context sha;
    bool sha_open;
    esp_err_t last_err;    /* the last ESP-IDF error a port call returned */
    const char *last_call; /* the ESP-IDF function that returned it */
} tcpota_esp_port_t;

/* Opens the NVS namespace and fills *port with the functions above, its
 * ctx pointing at ep, and slot_size = the update partition's size.
 * Returns ESP_OK, ESP_ERR_NOT_FOUND when the partition table has no OTA
 * app partition to update, or nvs_open()'s error. */
esp_err_t tcpota_esp_port_init(tcpota_esp_port_t *ep, struct tcpota_port *port);

/* Drops an unfinished OTA handle and closes NVS. */
void tcpota_esp_port_deinit(tcpota_esp_port_t *ep);

/* Maps an esp_err_t, or one of the negative MBEDTLS_ERR_MD_* codes of
 * mbedtls_md_hmac(), onto the one enum tcpota_err code that describes it
 * best (ESP_OK -> 0; never returns a positive value). */
int tcpota_esp_err(esp_err_t err);

/* The SHA-256 of the running app image as it lies in flash, from its
 * first byte to the end of its appended hash (and signature block): the
 * id `tcpota serve` gives the same .bin file. Reads the whole image once
 * through a small stack buffer. Returns 0 or a negative tcpota_err. */
int tcpota_esp_running_id(tcpota_esp_port_t *ep, uint8_t id[TCPOTA_ID_LEN]);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_ESP_PORT_H */
