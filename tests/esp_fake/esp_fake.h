/*
 * esp_fake.h - control of the host fake of ESP-IDF's OTA, partition and NVS
 * APIs and of the PSA Crypto API (tests/esp_fake), for tests that run the
 * real ESP-IDF port
 * (esp-idf/components/tcpota/port_esp.c) on the host.
 *
 * The fake flash holds factory, ota_0 and ota_1 app partitions of
 * ESP_FAKE_SLOT bytes each; otadata is modelled as a boot choice plus one
 * esp_ota_img_states_t per OTA partition, with CONFIG_BOOTLOADER_APP_
 * ROLLBACK_ENABLE semantics. esp_fake_reboot() is a reset: RAM state (OTA
 * handles, uncommitted NVS values, which NVS partitions are initialised,
 * whether psa_crypto_init() ran, PSA keys) is lost and the bootloader picks
 * the image to run as ESP-IDF's does. NVS has two partitions, the default
 * "nvs" and "tcpota_nvs" (nvs_flash.h).
 *
 * The PSA calls (psa/crypto.h: psa_hash_*, psa_import_key, psa_mac_compute,
 * psa_destroy_key) are thin wrappers over libsodium that refuse any call
 * before psa_crypto_init(), so a port calling them wrongly, or too early,
 * fails the tests' known vectors. Ed25519 needs no fake: port_esp.c is
 * compiled against the host's <sodium.h> and libsodium, the library
 * ESP-IDF's libsodium component packages.
 */
#ifndef ESP_FAKE_H
#define ESP_FAKE_H

#include <stddef.h>
#include <stdint.h>

#include "esp_ota_ops.h"
#include "psa/crypto.h"

#define ESP_FAKE_SLOT (128u * 1024u)
#define ESP_FAKE_SECTOR 4096u

/* Fresh device: factory image of `factory_version` running, OTA slots
 * erased, otadata and NVS empty. */
void esp_fake_init(const char *factory_version);

/* Writes a fake app image of `len` bytes (>= 64) into buf: magic 0xE9,
 * length, version, then bytes derived from seed. */
void esp_fake_make_image(uint8_t *buf, uint32_t len, const char *version, uint32_t seed);

/* A reset: drops OTA handles and uncommitted NVS values, runs the
 * bootloader (NEW -> PENDING_VERIFY; still PENDING_VERIFY -> ABORTED and
 * fall back to the other valid image). */
void esp_fake_reboot(void);

/* 1 once esp_ota_mark_app_invalid_rollback_and_reboot() asked for a reset
 * that has not happened yet. */
int esp_fake_reboot_requested(void);

/* The partitions: 0 factory, 1 ota_0, 2 ota_1. */
const esp_partition_t *esp_fake_partition(int index);

/* Raw bytes of a partition (for assertions). */
const uint8_t *esp_fake_flash(const esp_partition_t *p);

/* OTA handles open now (ESP-IDF allocates one per begin/resume). */
int esp_fake_open_handles(void);

/* Number of esp_partition_erase_range() sectors and NVS commits so far. */
unsigned esp_fake_erases(void);
unsigned esp_fake_nvs_commits(void);

/* Makes the next esp_ota_write() fail with ESP_ERR_FLASH_OP_FAIL-like
 * ESP_FAIL after `n` more successful writes (-1: never). */
void esp_fake_fail_write_after(int n);

/* Makes every call of the PSA function named `call` (e.g. "psa_mac_compute",
 * "psa_crypto_init") return st; NULL or PSA_SUCCESS: none. */
void esp_fake_fail_psa(const char *call, psa_status_t st);

/* Calls of psa_crypto_init() and psa_mac_compute() so far. */
unsigned esp_fake_psa_init_calls(void);
unsigned esp_fake_psa_mac_calls(void);

/* PSA keys imported and not destroyed yet, and hash operations set up and
 * neither finished nor aborted (with ESP-IDF's SHA driver, one holds the
 * SHA peripheral). */
int esp_fake_psa_keys(void);
int esp_fake_psa_hash_ops(void);

/* Makes nvs_flash_init_partition(part) return err (ESP_OK: succeed again);
 * cleared by nvs_flash_erase_partition(part), as on a device. */
void esp_fake_nvs_fail_init(const char *part, esp_err_t err);

/* Makes nvs_erase_key(key) fail with err (NULL: none) until cleared; a
 * step that fails there and a reset after it is a power cut there. */
void esp_fake_nvs_fail_erase(const char *key, esp_err_t err);

/* Committed NVS entries in partition `part` (all namespaces). */
int esp_fake_nvs_count(const char *part);

#endif
