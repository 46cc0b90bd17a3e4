/* port_esp.c - struct tcpota_port on esp_ota_ops, NVS, the PSA Crypto API
 * and libsodium (see tcpota_esp_port.h). */
#include "tcpota_esp_port.h"

#include <string.h>

#include "esp_app_desc.h"
#include "esp_image_format.h"
#include "esp_log.h"
#include "mbedtls/platform_util.h"
#include "nvs_flash.h"
#include "sdkconfig.h"
#ifdef CONFIG_TCPOTA_SIGNED_IMAGES
#include "sodium.h"
#endif

static const char *TAG = "tcpota";

#define READ_CHUNK 512u /* stack buffer for tcpota_esp_running_id() */
/* Signature blocks after a signed app image (ESP-IDF's esp_secure_boot.h
 * and rom/secure_boot.h): Secure Boot V1's ECDSA block (a version word and
 * 64 bytes) and V2's signature sector (RSA or ECDSA, 4096 bytes). */
#define SIG_BLOCK_V1 68u
#define SIG_SECTOR_V2 4096u

int tcpota_esp_err(esp_err_t err)
{
    switch (err) {
    case ESP_OK: /* == PSA_SUCCESS */
        return 0;
    /* PSA's codes are -128..-255 and never collide with esp_err_t's
     * (ESP_FAIL is -1, the others positive); a duplicate would not compile. */
    case PSA_ERROR_INVALID_ARGUMENT:
        return TCPOTA_ERR_INVAL;
    case PSA_ERROR_INSUFFICIENT_MEMORY:
    case PSA_ERROR_INSUFFICIENT_STORAGE:
    case PSA_ERROR_BUFFER_TOO_SMALL:
        return TCPOTA_ERR_NOSPC;
    case PSA_ERROR_NOT_SUPPORTED:
        return TCPOTA_ERR_NOTSUP;
    case PSA_ERROR_BAD_STATE: /* e.g. psa_crypto_init() not called */
        return TCPOTA_ERR_STATE;
    case PSA_ERROR_NOT_PERMITTED:
        return TCPOTA_ERR_DENIED;
    case ESP_ERR_NOT_FOUND:
    case ESP_ERR_NVS_NOT_FOUND:
        return TCPOTA_ERR_NOENT;
    case ESP_ERR_INVALID_ARG:
        return TCPOTA_ERR_INVAL;
    case ESP_ERR_NO_MEM:
    case ESP_ERR_INVALID_SIZE:
    case ESP_ERR_NVS_INVALID_LENGTH:
    case ESP_ERR_NVS_NOT_ENOUGH_SPACE:
        return TCPOTA_ERR_NOSPC;
    case ESP_ERR_INVALID_STATE:
    case ESP_ERR_OTA_PARTITION_CONFLICT:
    case ESP_ERR_OTA_ROLLBACK_INVALID_STATE:
        return TCPOTA_ERR_STATE;
    case ESP_ERR_OTA_VALIDATE_FAILED:
        return TCPOTA_ERR_INTEGRITY;
    case ESP_ERR_OTA_SMALL_SEC_VER:
        return TCPOTA_ERR_DENIED;
    case ESP_ERR_NOT_SUPPORTED:
        return TCPOTA_ERR_NOTSUP;
    default:
        return TCPOTA_ERR_IO;
    }
}

/* Keeps the failing call for the log and maps its error. */
static int esp_fail(tcpota_esp_port_t *ep, const char *call, esp_err_t err)
{
    if (err == ESP_OK) {
        return 0;
    }
    ep->last_err = err;
    ep->last_call = call;
    if (err != ESP_ERR_NVS_NOT_FOUND) {
        ESP_LOGW(TAG, "%s: %s (%d)", call, esp_err_to_name(err), (int)err);
    }
    return tcpota_esp_err(err);
}

/* The same for a PSA Crypto call (esp_err_to_name() does not know them). */
static int psa_fail(tcpota_esp_port_t *ep, const char *call, psa_status_t st)
{
    if (st == PSA_SUCCESS) {
        return 0;
    }
    ep->last_err = (esp_err_t)st;
    ep->last_call = call;
    ESP_LOGW(TAG, "%s: PSA error %d", call, (int)st);
    return tcpota_esp_err((esp_err_t)st);
}

/* ---- OTA ------------------------------------------------------------- */

static void handle_drop(tcpota_esp_port_t *ep)
{
    if (ep->handle_open) {
        (void)esp_ota_abort(ep->handle);
        ep->handle_open = false;
    }
}

static int running_pending(void)
{
    esp_ota_img_states_t st;

    return esp_ota_get_state_partition(esp_ota_get_running_partition(), &st) == ESP_OK &&
           st == ESP_OTA_IMG_PENDING_VERIFY;
}

/* The partition the next image goes to, checked against the offer. */
static int update_partition(tcpota_esp_port_t *ep, const struct tcpota_offer_info *img,
                            const esp_partition_t **out)
{
    const esp_partition_t *p = esp_ota_get_next_update_partition(NULL);

    if (!p) {
        return esp_fail(ep, "esp_ota_get_next_update_partition", ESP_ERR_NOT_FOUND);
    }
    if (!img || img->size == 0 || img->size > p->size) {
        return TCPOTA_ERR_NOSPC;
    }
    *out = p;
    return 0;
}

static int slot_load(tcpota_esp_port_t *ep, uint32_t *addr)
{
    uint8_t b[4];
    size_t len = sizeof(b);
    esp_err_t err = nvs_get_blob(ep->nvs, TCPOTA_ESP_KEY_SLOT, b, &len);

    if (err != ESP_OK) {
        return esp_fail(ep, "nvs_get_blob", err);
    }
    if (len != sizeof(b)) {
        return TCPOTA_ERR_NOENT;
    }
    *addr = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

/* Records which partition the resume point belongs to; rewritten only
 * when it changes (once per image at most), so NVS wear stays low. */
static int slot_save(tcpota_esp_port_t *ep, uint32_t addr)
{
    uint32_t old = 0; /* set when slot_load returns 0; gcc -O3 cannot see it */
    uint8_t b[4] = {(uint8_t)addr, (uint8_t)(addr >> 8), (uint8_t)(addr >> 16),
                    (uint8_t)(addr >> 24)};
    esp_err_t err;

    if (slot_load(ep, &old) == 0 && old == addr) {
        return 0;
    }
    err = nvs_set_blob(ep->nvs, TCPOTA_ESP_KEY_SLOT, b, sizeof(b));
    if (err == ESP_OK) {
        err = nvs_commit(ep->nvs);
    }
    return esp_fail(ep, "nvs_set_blob", err);
}

static int port_ota_begin(void *ctx, const struct tcpota_offer_info *img)
{
    tcpota_esp_port_t *ep = ctx;
    const esp_partition_t *p = NULL;
    int rc;

    handle_drop(ep); /* an earlier connection's image, never finished */
    if ((rc = update_partition(ep, img, &p)) < 0) {
        return rc;
    }
    rc = esp_fail(ep, "esp_ota_begin", esp_ota_begin(p, OTA_WITH_SEQUENTIAL_WRITES, &ep->handle));
    if (rc < 0) {
        return rc;
    }
    ep->handle_open = true;
    ep->update = p;
    if ((rc = slot_save(ep, p->address)) < 0) {
        handle_drop(ep);
    }
    return rc;
}

static int port_ota_resume(void *ctx, const struct tcpota_offer_info *img, uint32_t offset)
{
    tcpota_esp_port_t *ep = ctx;
    const esp_partition_t *p = NULL;
    uint32_t slot = 0;
    int rc;

    handle_drop(ep);
    if ((rc = update_partition(ep, img, &p)) < 0) {
        return rc;
    }
    if (offset > img->size || offset % TCPOTA_SECTOR_SIZE) {
        return TCPOTA_ERR_RANGE;
    }
    /* The resume point must describe bytes in this very partition, and a
     * pending image's partner slot is its rollback target: never write it. */
    if (slot_load(ep, &slot) < 0 || slot != p->address) {
        ESP_LOGW(TAG, "resume point is for another partition: starting over");
        return TCPOTA_ERR_NOENT;
    }
    if (running_pending()) {
        return esp_fail(ep, "esp_ota_resume", ESP_ERR_OTA_ROLLBACK_INVALID_STATE);
    }
    rc = esp_fail(ep, "esp_ota_resume",
                  esp_ota_resume(p, OTA_WITH_SEQUENTIAL_WRITES, offset, &ep->handle));
    if (rc == 0) {
        ep->handle_open = true;
        ep->update = p;
    }
    return rc;
}

static int port_ota_write(void *ctx, const uint8_t *data, size_t len)
{
    tcpota_esp_port_t *ep = ctx;

    if (!ep->handle_open) {
        return TCPOTA_ERR_STATE;
    }
    return esp_fail(ep, "esp_ota_write", esp_ota_write(ep->handle, data, len));
}

static int port_ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    tcpota_esp_port_t *ep = ctx;

    if (!ep->update) {
        return TCPOTA_ERR_STATE;
    }
    return esp_fail(ep, "esp_partition_read", esp_partition_read(ep->update, offset, buf, len));
}

static int port_ota_end(void *ctx)
{
    tcpota_esp_port_t *ep = ctx;

    if (!ep->handle_open) {
        return TCPOTA_ERR_STATE;
    }
    ep->handle_open = false; /* esp_ota_end() frees the handle whatever it returns */
    return esp_fail(ep, "esp_ota_end", esp_ota_end(ep->handle));
}

static int port_ota_abort(void *ctx)
{
    handle_drop(ctx);
    return 0;
}

static int port_set_boot(void *ctx)
{
    tcpota_esp_port_t *ep = ctx;

    if (!ep->update) {
        return TCPOTA_ERR_STATE;
    }
    return esp_fail(ep, "esp_ota_set_boot_partition", esp_ota_set_boot_partition(ep->update));
}

static int port_mark_valid(void *ctx)
{
    return esp_fail(ctx, "esp_ota_mark_app_valid_cancel_rollback",
                    esp_ota_mark_app_valid_cancel_rollback());
}

static int port_mark_invalid(void *ctx)
{
    /* On a device this reboots into the previous image and never returns. */
    return esp_fail(ctx, "esp_ota_mark_app_invalid_rollback_and_reboot",
                    esp_ota_mark_app_invalid_rollback_and_reboot());
}

static int port_boot_state(void *ctx, struct tcpota_boot_state *st)
{
    tcpota_esp_port_t *ep = ctx;

    st->pending = (uint8_t)running_pending();
    st->rolled_back = esp_ota_get_last_invalid_partition() != NULL;
#ifndef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    /* No pending state: a new image is final once it boots, and the core
     * confirms the last one set to boot when it runs (port.h). Its id is
     * hashed once a boot (the image does not change until the next). */
    if (!ep->run_known && tcpota_esp_running_id(ep, st->running_id) < 0) {
        ep->run_known = -1;
    }
    if (ep->run_known == 1) {
        st->running_known = 1;
        memcpy(st->running_id, ep->run_id, TCPOTA_ID_LEN);
    }
#else
    (void)ep;
#endif
    return 0;
}

/* ---- NVS ------------------------------------------------------------- */

static int port_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap)
{
    tcpota_esp_port_t *ep = ctx;
    size_t len = cap;
    esp_err_t err = nvs_get_blob(ep->nvs, key, buf, &len);

    if (err == ESP_ERR_NVS_INVALID_LENGTH) {
        /* Longer than any record of this build: another tcpota's format
         * (read after a rollback). Absent, as the core takes a torn or
         * foreign record, and written over at the next save; as an error
         * it failed the boot decision and the session's init at every
         * start, for good. (A value of another type under the key reads as
         * not found already: ESP-IDF's nvs_get_blob answers so.) */
        ESP_LOGW(TAG, "NVS \"%s\" is no record of this build (%s): ignored", key,
                 esp_err_to_name(err));
        return TCPOTA_ERR_NOENT;
    }
    if (err != ESP_OK) {
        return esp_fail(ep, "nvs_get_blob", err);
    }
    return len > cap ? TCPOTA_ERR_NOSPC : (int)len;
}

static int port_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    tcpota_esp_port_t *ep = ctx;
    esp_err_t err = nvs_set_blob(ep->nvs, key, buf, len);

    if (err != ESP_OK) {
        return esp_fail(ep, "nvs_set_blob", err);
    }
    /* esp_ota_write() programs flash synchronously: once the commit is
     * done, the record and every byte it points past are durable. */
    return esp_fail(ep, "nvs_commit", nvs_commit(ep->nvs));
}

static int port_kv_erase(void *ctx, const char *key)
{
    tcpota_esp_port_t *ep = ctx;
    esp_err_t err = nvs_erase_key(ep->nvs, key);

    if (err != ESP_OK) {
        return esp_fail(ep, "nvs_erase_key", err);
    }
    return esp_fail(ep, "nvs_commit", nvs_commit(ep->nvs));
}

/* ---- SHA-256 (PSA) --------------------------------------------------- */

static void sha_drop(tcpota_esp_port_t *ep)
{
    if (ep->sha_open) {
        (void)psa_hash_abort(&ep->sha);
        ep->sha_open = false;
    }
}

static int port_sha256_begin(void *ctx)
{
    tcpota_esp_port_t *ep = ctx;

    sha_drop(ep); /* an earlier hash never finished */
    ep->sha = psa_hash_operation_init();
    ep->sha_open = true;
    return psa_fail(ep, "psa_hash_setup", psa_hash_setup(&ep->sha, PSA_ALG_SHA_256));
}

static int port_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    tcpota_esp_port_t *ep = ctx;

    if (!ep->sha_open) {
        return TCPOTA_ERR_STATE;
    }
    return psa_fail(ep, "psa_hash_update", psa_hash_update(&ep->sha, data, len));
}

static int port_sha256_finish(void *ctx, uint8_t out[TCPOTA_ID_LEN])
{
    tcpota_esp_port_t *ep = ctx;
    size_t len = 0;
    int rc;

    if (!ep->sha_open) {
        return TCPOTA_ERR_STATE;
    }
    rc = psa_fail(ep, "psa_hash_finish", psa_hash_finish(&ep->sha, out, TCPOTA_ID_LEN, &len));
    if (rc == 0 && len != TCPOTA_ID_LEN) {
        rc = TCPOTA_ERR_IO;
    }
    sha_drop(ep); /* a failed finish leaves the operation to abort; a done one, a no-op */
    return rc;
}

/* ---- signatures and authentication ----------------------------------- */

_Static_assert(PSA_MAC_LENGTH(PSA_KEY_TYPE_HMAC, 256, PSA_ALG_HMAC(PSA_ALG_SHA_256)) == 32,
               "HMAC-SHA-256 gives 32 bytes");

/* HMAC-SHA-256 for the authentication challenge, once per connection: the
 * secret becomes a volatile PSA key for one psa_mac_compute() and is
 * destroyed (its copy wiped and freed) whatever the result. */
static int port_hmac_sha256(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *msg,
                            size_t len, uint8_t out[32])
{
    tcpota_esp_port_t *ep = ctx;
    psa_key_attributes_t attr = PSA_KEY_ATTRIBUTES_INIT;
    psa_key_id_t id = 0;
    size_t out_len = 0;
    psa_status_t st;
    int rc;

    psa_set_key_type(&attr, PSA_KEY_TYPE_HMAC);
    psa_set_key_usage_flags(&attr, PSA_KEY_USAGE_SIGN_MESSAGE);
    psa_set_key_algorithm(&attr, PSA_ALG_HMAC(PSA_ALG_SHA_256));
    rc = psa_fail(ep, "psa_import_key", psa_import_key(&attr, key, key_len, &id));
    psa_reset_key_attributes(&attr);
    if (rc < 0) {
        return rc;
    }
    rc = psa_fail(ep, "psa_mac_compute",
                  psa_mac_compute(id, PSA_ALG_HMAC(PSA_ALG_SHA_256), msg, len, out, 32, &out_len));
    if (rc == 0 && out_len != 32) {
        rc = TCPOTA_ERR_IO;
    }
    st = psa_destroy_key(id);
    return rc < 0 ? rc : psa_fail(ep, "psa_destroy_key", st);
}

#ifdef CONFIG_TCPOTA_SIGNED_IMAGES
/* Ed25519 from ESP-IDF's libsodium component (mbedTLS has none). Its only
 * failure, -1, means "does not verify" (also for a small-order or
 * non-canonical key or signature): a verdict on the peer's bytes, not an
 * I/O error, hence BADSIG here rather than tcpota_esp_err(ESP_FAIL).
 * No sodium_init(): this function depends on nothing it sets up (CPU
 * features, the RNG, implementation choices of other primitives), and
 * calling it would link some 85 KB of primitives tcpota never uses. An
 * application that uses libsodium itself calls sodium_init() as usual. */
static int port_ed25519_verify(void *ctx, const uint8_t sig[64], const uint8_t *msg,
                               size_t len, const uint8_t pk[32])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, (unsigned long long)len, pk) == 0
               ? 0
               : TCPOTA_ERR_BADSIG;
}
#endif

/* ---- setup ----------------------------------------------------------- */

/* Initialises tcpota's own NVS partition (idempotent) and opens its
 * namespace. Never erases it: ESP_ERR_NVS_NO_FREE_PAGES and
 * ESP_ERR_NVS_NEW_VERSION_FOUND are returned, not "repaired", because an
 * erase would drop the anti-rollback counter, the failed-image record and
 * the device secret. With NVS encryption the partition is encrypted with
 * the default scheme's keys, which nvs_flash_init() set up. */
static esp_err_t nvs_part_open(tcpota_esp_port_t *ep)
{
    const char *call = "nvs_flash_init_partition";
    esp_err_t err;

#ifdef CONFIG_NVS_ENCRYPTION
    nvs_sec_cfg_t sec;
    nvs_sec_scheme_t *scheme = nvs_flash_get_default_security_scheme();

    call = "nvs_flash_read_security_cfg_v2";
    err = scheme ? nvs_flash_read_security_cfg_v2(scheme, &sec) : ESP_ERR_INVALID_STATE;
    if (err == ESP_OK) {
        call = "nvs_flash_secure_init_partition";
        err = nvs_flash_secure_init_partition(TCPOTA_ESP_NVS_PARTITION, &sec);
    }
    mbedtls_platform_zeroize(&sec, sizeof(sec)); /* a memset the compiler may drop */
#else
    err = nvs_flash_init_partition(TCPOTA_ESP_NVS_PARTITION);
#endif
    if (err == ESP_OK) {
        call = "nvs_open_from_partition";
        err = nvs_open_from_partition(TCPOTA_ESP_NVS_PARTITION, TCPOTA_ESP_NVS_NAMESPACE,
                                      NVS_READWRITE, &ep->nvs);
    }
    if (err != ESP_OK) {
        ep->last_err = err;
        ep->last_call = call;
        ESP_LOGE(TAG, "%s(\"%s\"): %s%s", call, TCPOTA_ESP_NVS_PARTITION, esp_err_to_name(err),
                 err == ESP_ERR_NOT_FOUND ? ": add a data/nvs partition of that name to the "
                                            "partition table (or set TCPOTA_NVS_PARTITION)"
                                          : "; left as it is (erasing it would drop tcpota's "
                                            "anti-rollback counter and device secret)");
    }
    return err;
}

esp_err_t tcpota_esp_port_init(tcpota_esp_port_t *ep, struct tcpota_port *port)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
    esp_err_t err;

    psa_status_t st;

    memset(ep, 0, sizeof(*ep));
    memset(port, 0, sizeof(*port));
    if (!next) {
        return ESP_ERR_NOT_FOUND;
    }
    /* Before any PSA call (ESP-IDF 5.5 does not call it at startup). */
    if ((st = psa_crypto_init()) != PSA_SUCCESS) {
        (void)psa_fail(ep, "psa_crypto_init", st);
        return ESP_ERR_INVALID_STATE;
    }
    if ((err = nvs_part_open(ep)) != ESP_OK) {
        return err;
    }
    ep->nvs_open = true;
    port->ctx = ep;
    port->slot_size = (uint32_t)next->size;
    port->ota_begin = port_ota_begin;
    port->ota_resume = port_ota_resume;
    port->ota_write = port_ota_write;
    port->ota_read = port_ota_read;
    port->ota_end = port_ota_end;
    port->ota_abort = port_ota_abort;
    port->set_boot = port_set_boot;
    port->mark_valid = port_mark_valid;
    port->mark_invalid = port_mark_invalid;
    port->boot_state = port_boot_state;
    port->kv_get = port_kv_get;
    port->kv_set = port_kv_set;
    port->kv_erase = port_kv_erase;
    port->sha256_begin = port_sha256_begin;
    port->sha256_update = port_sha256_update;
    port->sha256_finish = port_sha256_finish;
    port->hmac_sha256 = port_hmac_sha256;
#ifdef CONFIG_TCPOTA_SIGNED_IMAGES
    port->ed25519_verify = port_ed25519_verify;
#endif
    return ESP_OK;
}

void tcpota_esp_port_deinit(tcpota_esp_port_t *ep)
{
    handle_drop(ep);
    sha_drop(ep);
    if (ep->nvs_open) {
        nvs_close(ep->nvs);
        ep->nvs_open = false;
    }
}

int tcpota_esp_running_id(tcpota_esp_port_t *ep, uint8_t id[TCPOTA_ID_LEN])
{
    const esp_partition_t *run = esp_ota_get_running_partition();
    esp_image_metadata_t md;
    esp_partition_pos_t pos;
    uint8_t buf[READ_CHUNK];
    uint32_t off, len;
    int rc;

    if (ep->run_known == 1) { /* hashed already since this boot */
        memcpy(id, ep->run_id, TCPOTA_ID_LEN);
        return 0;
    }
    if (!run) {
        return TCPOTA_ERR_NOENT;
    }
    pos.offset = run->address;
    pos.size = run->size;
    if ((rc = esp_fail(ep, "esp_image_get_metadata", esp_image_get_metadata(&pos, &md))) < 0) {
        return rc;
    }
    len = md.image_len;
#if defined(CONFIG_SECURE_BOOT) || defined(CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT)
    /* image_len stops at the appended hash; a signed app's .bin (what the
     * server hashes) goes on with its signature block, which ESP-IDF checks
     * but leaves out of the length: V1's ECDSA block right after it, V2's
     * sector at the next 4 KiB boundary. Without this the running id never
     * matched the server's image id. */
#ifdef CONFIG_SECURE_SIGNED_APPS_ECDSA_SCHEME
    len += SIG_BLOCK_V1;
#else
    len = ((len + SIG_SECTOR_V2 - 1u) & ~(SIG_SECTOR_V2 - 1u)) + SIG_SECTOR_V2;
#endif
#endif
    if (md.image_len == 0 || len > run->size) {
        return TCPOTA_ERR_RANGE;
    }
    if ((rc = port_sha256_begin(ep)) < 0) {
        return rc;
    }
    for (off = 0; off < len && rc == 0; off += READ_CHUNK) {
        size_t n = len - off < READ_CHUNK ? len - off : READ_CHUNK;
        rc = esp_fail(ep, "esp_partition_read", esp_partition_read(run, off, buf, n));
        if (rc == 0) {
            rc = port_sha256_update(ep, buf, n);
        }
    }
    if (rc < 0) {
        sha_drop(ep);
        return rc;
    }
    if ((rc = port_sha256_finish(ep, id)) == 0) {
        memcpy(ep->run_id, id, TCPOTA_ID_LEN);
        ep->run_known = 1;
    }
    return rc;
}
