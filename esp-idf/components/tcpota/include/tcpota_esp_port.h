/*
 * tcpota_esp_port.h - the tcpota device port on ESP-IDF: struct tcpota_port
 * (core/include/tcpota/port.h) over esp_ota_ops, esp_partition, NVS, the
 * PSA Crypto API's SHA-256 and HMAC-SHA-256, and libsodium's Ed25519.
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
 *                   + nvs_commit in the NVS namespace "tcpota" of tcpota's
 *                   own NVS partition (CONFIG_TCPOTA_NVS_PARTITION)
 *   sha256_*     -> psa_hash_setup(PSA_ALG_SHA_256) / psa_hash_update /
 *                   psa_hash_finish
 *   hmac_sha256  -> psa_import_key (a volatile PSA_KEY_TYPE_HMAC key) +
 *                   psa_mac_compute(PSA_ALG_HMAC(PSA_ALG_SHA_256)) +
 *                   psa_destroy_key
 *   ed25519_verify -> crypto_sign_verify_detached (espressif/libsodium;
 *                   NULL when CONFIG_TCPOTA_SIGNED_IMAGES is off)
 *
 * Crypto goes through <psa/crypto.h> only, the one API that ESP-IDF 5.5
 * (Mbed TLS 3.6) and ESP-IDF 6 (Mbed TLS 4 / TF-PSA-Crypto 1.x, where the
 * legacy mbedtls_sha256_* and mbedtls_md_hmac are private) both offer.
 * tcpota_esp_port_init() calls psa_crypto_init() first: ESP-IDF 6 calls it
 * at startup, ESP-IDF 5.5 does not, and it may be called again.
 *
 * The records that guard the device (the anti-rollback counter, the
 * failed-image record, the device secret) live in a partition of their own
 * so that an application that erases the default "nvs" partition (as
 * ESP-IDF's examples do on ESP_ERR_NVS_NEW_VERSION_FOUND) cannot wipe them;
 * tcpota_esp_port_init() initialises it with nvs_flash_init_partition() (or
 * nvs_flash_secure_init_partition() with CONFIG_NVS_ENCRYPTION) and never
 * erases it. Memory: sizeof(tcpota_esp_port_t) (about 40 bytes plus PSA's
 * psa_hash_operation_t, 232 bytes with ESP-IDF's configuration);
 * esp_ota_begin()/esp_ota_resume() allocate ESP-IDF's small OTA handle once
 * per offer, never per write; psa_import_key() a copy of the secret (at
 * most 64 bytes) once per authenticated connection, freed by
 * psa_destroy_key(). The trusted keys and the device secret:
 * tcpota_esp_trust.h.
 */
#ifndef TCPOTA_ESP_PORT_H
#define TCPOTA_ESP_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "nvs.h"
#include "psa/crypto.h"
#include "sdkconfig.h"
#include "tcpota/port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NVS namespace of every tcpota record. */
#define TCPOTA_ESP_NVS_NAMESPACE "tcpota"
/* NVS partition that holds it (partitions.csv: `tcpota_nvs, data, nvs, ...`),
 * never the application's default "nvs". */
#ifdef CONFIG_TCPOTA_NVS_PARTITION
#define TCPOTA_ESP_NVS_PARTITION CONFIG_TCPOTA_NVS_PARTITION
#else
#define TCPOTA_ESP_NVS_PARTITION "tcpota_nvs"
#endif
/* NVS key of the port's own record: the address of the partition the
 * resume point belongs to (written once per image, at ota_begin). */
#define TCPOTA_ESP_KEY_SLOT "tcpota.slot"

typedef struct tcpota_esp_port {
    const esp_partition_t *update; /* partition the current image goes to */
    esp_ota_handle_t handle;
    bool handle_open;
    nvs_handle_t nvs;
    bool nvs_open;
    psa_hash_operation_t sha;
    bool sha_open;
    int8_t run_known;      /* the running image's id: 1 in run_id, -1 not to be had, 0 not yet */
    uint8_t run_id[TCPOTA_ID_LEN];
    esp_err_t last_err;    /* the last esp_err_t, or psa_status_t, a call returned */
    const char *last_call; /* the ESP-IDF or PSA function that returned it */
} tcpota_esp_port_t;

/* Calls psa_crypto_init(), initialises and opens tcpota's NVS partition
 * (TCPOTA_ESP_NVS_PARTITION, namespace TCPOTA_ESP_NVS_NAMESPACE) and fills
 * *port with the functions above, its ctx pointing at ep, and slot_size =
 * the update partition's size. Returns ESP_OK; ESP_ERR_NOT_FOUND when the
 * partition table has no OTA app partition to update or no NVS partition
 * of that name; ESP_ERR_INVALID_STATE when psa_crypto_init() fails (its
 * status in ep->last_err); else the NVS error (e.g. ESP_ERR_NVS_NO_FREE_PAGES,
 * ESP_ERR_NVS_NEW_VERSION_FOUND: the partition is never erased to get past
 * them, since that would drop the anti-rollback counter; ep->last_call
 * names the call). Each failure is logged. */
esp_err_t tcpota_esp_port_init(tcpota_esp_port_t *ep, struct tcpota_port *port);

/* Drops an unfinished OTA handle and closes NVS. */
void tcpota_esp_port_deinit(tcpota_esp_port_t *ep);

/* Maps an esp_err_t, or a negative psa_status_t of the PSA Crypto API
 * (PSA_ERROR_*, from -128 to -255, apart from every esp_err_t), onto the
 * one enum tcpota_err code that describes it best (ESP_OK / PSA_SUCCESS
 * -> 0; never returns a positive value). */
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
