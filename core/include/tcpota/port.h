/*
 * port.h - what the device side of libtcpota needs from its platform.
 *
 * The device session never touches flash, NVS or a hash engine itself: it
 * calls the functions of one struct tcpota_port, each handed the port's
 * `ctx`. The calls map one to one onto ESP-IDF so that the ESP-IDF port is
 * a thin shim, and the POSIX port (ports/posix) emulates the same
 * semantics on files:
 *
 *   ota_begin    -> esp_ota_begin(next_update_partition, OTA_WITH_SEQUENTIAL_WRITES)
 *   ota_resume   -> esp_ota_resume(next_update_partition, ..., offset)
 *   ota_write    -> esp_ota_write
 *   ota_read     -> esp_partition_read(update partition)
 *   ota_end      -> esp_ota_end
 *   ota_abort    -> esp_ota_abort
 *   set_boot     -> esp_ota_set_boot_partition
 *   mark_valid   -> esp_ota_mark_app_valid_cancel_rollback
 *   mark_invalid -> esp_ota_mark_app_invalid_rollback_and_reboot
 *   boot_state   -> esp_ota_get_state_partition(running) and
 *                   esp_ota_get_last_invalid_partition
 *   kv_get/kv_set/kv_erase -> nvs_get_blob / nvs_set_blob+nvs_commit / nvs_erase_key
 *   sha256_*     -> mbedtls_sha256_* (ESP-IDF) / libsodium (POSIX)
 *
 * Every function returns 0 (or a byte count where stated) on success and a
 * negative enum tcpota_err on failure. None may block for longer than a
 * flash operation takes.
 */
#ifndef TCPOTA_PORT_H
#define TCPOTA_PORT_H

#include "tcpota.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the device booted from, as the bootloader left it. */
struct tcpota_boot_state {
    uint8_t pending;     /* 1: running image is new and not yet confirmed */
    uint8_t rolled_back; /* 1: the bootloader rejected the last new image */
    /* A port whose bootloader has no pending state (ESP-IDF without
     * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: a new image is final once set
     * to boot) sets running_known and the running image's id: when it is
     * the last one set to boot, tcpota_dev_boot() confirms it as a healthy
     * pending one (report, anti-rollback counter), with nothing to mark.
     * Other ports leave both 0. */
    uint8_t running_known;
    uint8_t running_id[TCPOTA_ID_LEN];
};

/* Offer details handed to the optional verify_offer hook (signed images,
 * issue 4). Pointers stay valid only during the call. */
struct tcpota_offer_info {
    const uint8_t *image_id; /* TCPOTA_ID_LEN bytes: SHA-256 of the image */
    uint32_t size;
    const char *version;
    size_t version_len;
    const uint8_t *manifest; /* NULL when the offer carries none */
    size_t manifest_len;
};

struct tcpota_port {
    void *ctx;

    /* Largest image the update slot holds, in bytes. */
    uint32_t slot_size;

    /* Start the image described by `img` (img->size bytes) in the inactive
     * slot. Sectors are erased as the writes reach them (sequential-write
     * mode). ESP-IDF uses only img->size; a port may keep the id and
     * version to label the slot. */
    int (*ota_begin)(void *ctx, const struct tcpota_offer_info *img);
    /* Continue the image `img` whose first `offset` bytes are already in
     * the slot; `offset` is a multiple of TCPOTA_SECTOR_SIZE and <= size.
     * TCPOTA_ERR_NOENT: the slot does not hold them after all (ESP-IDF: the
     * resume point was for the other partition); the image starts over. */
    int (*ota_resume)(void *ctx, const struct tcpota_offer_info *img, uint32_t offset);
    /* Append `len` bytes at the current write position. */
    int (*ota_write)(void *ctx, const uint8_t *data, size_t len);
    /* Read back `len` bytes at `offset` of the update slot. */
    int (*ota_read)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);
    /* Finish the image: all writes durable; the slot is not yet bootable. */
    int (*ota_end)(void *ctx);
    /* Drop the image being written (it will never be bootable). */
    int (*ota_abort)(void *ctx);
    /* Make the finished image boot next, in the "pending" state.
     * TCPOTA_ERR_DENIED: this image can never boot here (ESP-IDF: its
     * secure version is below the chip's anti-rollback eFuse); the device
     * remembers it as refused, as it does a refusal at ota_end. */
    int (*set_boot)(void *ctx);
    /* Confirm the running (pending) image: cancels the rollback. */
    int (*mark_valid)(void *ctx);
    /* Reject the running pending image: the previous one boots next. On a
     * real device this does not return (it reboots). */
    int (*mark_invalid)(void *ctx);
    /* Fill *st for the image that runs now. */
    int (*boot_state)(void *ctx, struct tcpota_boot_state *st);

    /* Small persistent records (NVS). kv_get returns the stored length
     * (<= cap) or TCPOTA_ERR_NOENT; kv_set returns 0 once the record and
     * every earlier ota_write are durable (survive a power cut). Keys are
     * at most 15 characters, as NVS requires. */
    int (*kv_get)(void *ctx, const char *key, uint8_t *buf, size_t cap);
    int (*kv_set)(void *ctx, const char *key, const uint8_t *buf, size_t len);
    int (*kv_erase)(void *ctx, const char *key);

    /* One SHA-256 computation at a time, state kept by the port. */
    int (*sha256_begin)(void *ctx);
    int (*sha256_update)(void *ctx, const uint8_t *data, size_t len);
    int (*sha256_finish)(void *ctx, uint8_t out[TCPOTA_ID_LEN]);

    /* Optional (may be NULL unless the device uses signed images): checks
     * an Ed25519 signature; returns 0 when it verifies. */
    int (*ed25519_verify)(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len,
                          const uint8_t pk[32]);
    /* Optional (may be NULL unless the device authenticates): HMAC-SHA-256
     * of msg under key into out. */
    int (*hmac_sha256)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *msg,
                       size_t len, uint8_t out[32]);

    /* Optional (may be NULL): judge an offer before any byte is written.
     * Returns 0 to accept or a negative code (sent as the decline reason).
     * Signature, model and anti-rollback checks hook in here. */
    int (*verify_offer)(void *ctx, const struct tcpota_offer_info *offer);
};

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_PORT_H */
