/*
 * tcpota_esp_trust.h - what an ESP32 trusts and what it proves: the
 * Ed25519 public keys that may sign its images, and its own secret for
 * device authentication.
 *
 * The keys are public: they come from menuconfig (CONFIG_TCPOTA_TRUSTED_KEYS,
 * hex, parsed at start by tcpota_esp_parse_keys()) or from the
 * application (tcpota_esp_config_t.trusted_keys). The secret is per
 * device and must not be in the firmware image, which every device of a
 * fleet shares and which travels over the network: it is provisioned at
 * the factory into NVS (partition TCPOTA_ESP_NVS_PARTITION, "tcpota_nvs" by
 * default; namespace "tcpota", blob key "tcpota.secret"; see
 * docs/esp-idf.md for the nvs_partition_gen CSV) and read by
 * tcpota_esp_load_secret(). No secret stored: authentication stays off.
 *
 * The task API (tcpota_esp.h) does all of this; these functions are for
 * applications that drive the session themselves, and for the host tests.
 */
#ifndef TCPOTA_ESP_TRUST_H
#define TCPOTA_ESP_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "tcpota/manifest.h"
#include "tcpota_esp_port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most trusted keys a device holds (the current key plus some for rotation). */
#define TCPOTA_ESP_MAX_KEYS 4
/* Longest device secret, as the protocol allows. */
#define TCPOTA_ESP_SECRET_MAX 64
/* NVS key of the device secret, in namespace TCPOTA_ESP_NVS_NAMESPACE. */
#define TCPOTA_ESP_KEY_SECRET "tcpota.secret"

/* Parses `text`: zero or more Ed25519 public keys of exactly 64 hex digits
 * each (either case), separated by any run of spaces, tabs, newlines or
 * commas, into keys[0..cap). NULL or blank text gives 0 keys. Returns the
 * number of keys, TCPOTA_ERR_INVAL when a key is not 64 hex digits, or
 * TCPOTA_ERR_NOSPC when there are more than cap keys; on error *bad (may
 * be NULL) gets the 0-based index of the offending key and no key is
 * reported (the caller must not trust a partly parsed list). */
int tcpota_esp_parse_keys(const char *text, uint8_t (*keys)[TCPOTA_PUBKEY_LEN], size_t cap,
                          size_t *bad);

/* Reads the device secret from NVS (TCPOTA_ESP_KEY_SECRET, a blob) into
 * buf. Returns its length (1..cap), 0 when none is stored (authentication
 * off), TCPOTA_ERR_NOSPC when the stored blob is longer than cap,
 * TCPOTA_ERR_RANGE when it is empty, or another NVS error mapped by
 * tcpota_esp_err(). buf is zeroed on every result but a length. ep must be
 * set up by tcpota_esp_port_init(). */
int tcpota_esp_load_secret(tcpota_esp_port_t *ep, uint8_t *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_ESP_TRUST_H */
