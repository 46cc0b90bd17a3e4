/* esp_fake.c - host fake of ESP-IDF's OTA, partition and NVS APIs and of
 * the PSA Crypto calls the port makes (see esp_fake.h and include/). */
#include "esp_fake.h"
#include "sdkconfig.h" /* CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE */

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_log.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "psa/crypto.h"

#define NPART 3
#define NHANDLES 4
#define NVS_MAX 32
#define NVS_VAL_MAX 256
#define FACTORY_LEN 4096u

#define NVS_NPART 2 /* "nvs" (the default) and "tcpota_nvs" */
#define NVS_NHANDLES 4
#define PSA_NKEYS 4
#define PSA_KEY_MAX 256

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(((psa_hash_operation_t *)0)->state),
               "psa_hash_operation_t too small for libsodium's state");

static uint8_t g_flash[NPART][ESP_FAKE_SLOT];
static const esp_partition_t g_parts[NPART] = {
    {NULL, ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY, 0x10000, ESP_FAKE_SLOT,
     ESP_FAKE_SECTOR, "factory", false, false},
    {NULL, ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_0, 0x10000 + ESP_FAKE_SLOT,
     ESP_FAKE_SLOT, ESP_FAKE_SECTOR, "ota_0", false, false},
    {NULL, ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_1, 0x10000 + 2 * ESP_FAKE_SLOT,
     ESP_FAKE_SLOT, ESP_FAKE_SECTOR, "ota_1", false, false},
};

/* otadata, modelled: which partition boots and each OTA slot's state. */
static esp_ota_img_states_t g_state[NPART];
static int g_boot, g_running, g_last_invalid, g_reboot_req;

static struct {
    int used, part, need_erase;
    esp_ota_handle_t id;
    uint32_t wrote;
} g_h[NHANDLES];
static esp_ota_handle_t g_next_handle;
static unsigned g_erases, g_commits;
static int g_fail_after = -1;

struct nvs_entry {
    int used, part;
    char ns[16], key[16];
    uint8_t val[NVS_VAL_MAX];
    size_t len;
    int u32; /* 1: written by nvs_set_u32(), not a blob */
};
static struct nvs_entry g_nvs[NVS_MAX], g_nvs_committed[NVS_MAX];
static const char *const g_nvs_parts[NVS_NPART] = {NVS_DEFAULT_PART_NAME, "tcpota_nvs"};
/* RAM state, lost at a reset: which partitions are initialised, the handles. */
static int g_nvs_inited[NVS_NPART];
static esp_err_t g_nvs_init_fail[NVS_NPART];
static struct {
    int used, part;
    char ns[16];
} g_hdl[NVS_NHANDLES];

/* PSA: RAM state too. */
static int g_psa_inited;
static unsigned g_psa_init_calls;
static struct {
    int used;
    psa_key_attributes_t attr;
    uint8_t data[PSA_KEY_MAX];
    size_t len;
} g_keys[PSA_NKEYS];
static struct {
    const char *call;
    psa_status_t st;
} g_psa_fail;
static unsigned g_mac_calls;
static int g_hash_ops; /* set up and not finished or aborted */

/* ---- helpers --------------------------------------------------------- */

static int part_index(const esp_partition_t *p)
{
    for (int i = 0; i < NPART; i++) {
        if (p == &g_parts[i]) {
            return i;
        }
    }
    return -1;
}

static uint32_t get_le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* esp_image_verify, reduced to the fake format: magic and a length that fits. */
static int image_ok(int i, uint32_t *len)
{
    uint32_t n = get_le32(g_flash[i] + 4);

    if (g_flash[i][0] != ESP_IMAGE_HEADER_MAGIC || n < 64 || n > ESP_FAKE_SLOT) {
        return 0;
    }
    if (len) {
        *len = n;
    }
    return 1;
}

static int bootable(int i)
{
    if (i == 0) {
        return image_ok(0, NULL);
    }
    return (g_state[i] == ESP_OTA_IMG_VALID || g_state[i] == ESP_OTA_IMG_UNDEFINED) &&
           image_ok(i, NULL);
}

/* The image the bootloader falls back to from OTA slot i. */
static int fallback(int i)
{
    int other = i == 1 ? 2 : 1;

    return bootable(other) ? other : 0;
}

/* ---- control --------------------------------------------------------- */

void esp_fake_make_image(uint8_t *buf, uint32_t len, const char *version, uint32_t seed)
{
    for (uint32_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    }
    buf[0] = ESP_IMAGE_HEADER_MAGIC;
    buf[4] = (uint8_t)len;
    buf[5] = (uint8_t)(len >> 8);
    buf[6] = (uint8_t)(len >> 16);
    buf[7] = (uint8_t)(len >> 24);
    memset(buf + 8, 0, 32);
    memcpy(buf + 8, version, strnlen(version, 31));
}

/* What a reset loses besides the OTA handles: NVS and PSA initialisation. */
static void ram_reset(void)
{
    memset(g_nvs_inited, 0, sizeof(g_nvs_inited));
    memset(g_hdl, 0, sizeof(g_hdl));
    g_psa_inited = 0;
    g_hash_ops = 0;
    sodium_memzero(g_keys, sizeof(g_keys));
}

void esp_fake_init(const char *factory_version)
{
    esp_fake_nvs_fail_erase(NULL, ESP_OK);
    memset(g_flash, 0xff, sizeof(g_flash));
    esp_fake_make_image(g_flash[0], FACTORY_LEN, factory_version, 99);
    for (int i = 0; i < NPART; i++) {
        g_state[i] = ESP_OTA_IMG_UNDEFINED;
    }
    g_boot = g_running = 0;
    g_last_invalid = -1;
    g_reboot_req = 0;
    memset(g_h, 0, sizeof(g_h));
    memset(g_nvs, 0, sizeof(g_nvs));
    memset(g_nvs_committed, 0, sizeof(g_nvs_committed));
    memset(g_nvs_init_fail, 0, sizeof(g_nvs_init_fail));
    g_next_handle = 0;
    g_erases = g_commits = 0;
    g_fail_after = -1;
    g_mac_calls = 0;
    g_psa_init_calls = 0;
    esp_fake_fail_psa(NULL, PSA_SUCCESS);
    ram_reset();
}

void esp_fake_reboot(void)
{
    int i = g_boot;

    memset(g_h, 0, sizeof(g_h));
    memcpy(g_nvs, g_nvs_committed, sizeof(g_nvs));
    ram_reset();
    g_reboot_req = 0;
    if (i != 0) {
        if (g_state[i] == ESP_OTA_IMG_PENDING_VERIFY) {
            /* Booted once and never confirmed: the bootloader gives up on it. */
            g_state[i] = ESP_OTA_IMG_ABORTED;
            g_last_invalid = i;
        }
        if (g_state[i] == ESP_OTA_IMG_NEW && image_ok(i, NULL)) {
            g_state[i] = ESP_OTA_IMG_PENDING_VERIFY;
        } else if (!bootable(i)) {
            i = fallback(i);
            g_boot = i;
        }
    }
    g_running = i;
}

int esp_fake_reboot_requested(void)
{
    return g_reboot_req;
}

const esp_partition_t *esp_fake_partition(int index)
{
    return index >= 0 && index < NPART ? &g_parts[index] : NULL;
}

const uint8_t *esp_fake_flash(const esp_partition_t *p)
{
    int i = part_index(p);

    return i < 0 ? NULL : g_flash[i];
}

int esp_fake_open_handles(void)
{
    int n = 0;

    for (int i = 0; i < NHANDLES; i++) {
        n += g_h[i].used;
    }
    return n;
}

unsigned esp_fake_erases(void)
{
    return g_erases;
}

unsigned esp_fake_nvs_commits(void)
{
    return g_commits;
}

void esp_fake_fail_write_after(int n)
{
    g_fail_after = n;
}

const char *esp_err_to_name(esp_err_t code)
{
    switch (code) {
    case ESP_OK: return "ESP_OK";
    case ESP_FAIL: return "ESP_FAIL";
    case ESP_ERR_INVALID_ARG: return "ESP_ERR_INVALID_ARG";
    case ESP_ERR_INVALID_STATE: return "ESP_ERR_INVALID_STATE";
    case ESP_ERR_NOT_FOUND: return "ESP_ERR_NOT_FOUND";
    case ESP_ERR_OTA_VALIDATE_FAILED: return "ESP_ERR_OTA_VALIDATE_FAILED";
    case ESP_ERR_OTA_ROLLBACK_INVALID_STATE: return "ESP_ERR_OTA_ROLLBACK_INVALID_STATE";
    case ESP_ERR_OTA_PARTITION_CONFLICT: return "ESP_ERR_OTA_PARTITION_CONFLICT";
    case ESP_ERR_NVS_NOT_FOUND: return "ESP_ERR_NVS_NOT_FOUND";
    default: return "ESP_ERR_(other)";
    }
}

/* ---- partitions ------------------------------------------------------ */

esp_err_t esp_partition_read(const esp_partition_t *p, size_t off, void *dst, size_t size)
{
    int i = part_index(p);

    if (i < 0 || !dst) {
        return ESP_ERR_INVALID_ARG;
    }
    if (off > p->size || size > p->size - off) {
        return ESP_ERR_INVALID_SIZE;
    }
    memcpy(dst, g_flash[i] + off, size);
    return ESP_OK;
}

esp_err_t esp_partition_write(const esp_partition_t *p, size_t off, const void *src, size_t size)
{
    int i = part_index(p);
    const uint8_t *s = src;

    if (i < 0 || !src) {
        return ESP_ERR_INVALID_ARG;
    }
    if (off > p->size || size > p->size - off) {
        return ESP_ERR_INVALID_SIZE;
    }
    for (size_t k = 0; k < size; k++) {
        if (g_flash[i][off + k] != 0xff) {
            return ESP_FAIL; /* programming a byte that was not erased */
        }
    }
    memcpy(g_flash[i] + off, s, size);
    return ESP_OK;
}

esp_err_t esp_partition_erase_range(const esp_partition_t *p, size_t off, size_t size)
{
    int i = part_index(p);

    if (i < 0 || off % p->erase_size || size % p->erase_size) {
        return ESP_ERR_INVALID_ARG;
    }
    if (off > p->size || size > p->size - off) {
        return ESP_ERR_INVALID_SIZE;
    }
    memset(g_flash[i] + off, 0xff, size);
    g_erases += (unsigned)(size / p->erase_size);
    return ESP_OK;
}

esp_err_t esp_image_get_metadata(const esp_partition_pos_t *pos, esp_image_metadata_t *md)
{
    for (int i = 0; i < NPART; i++) {
        if (g_parts[i].address == pos->offset) {
            memset(md, 0, sizeof(*md));
            md->start_addr = pos->offset;
            return image_ok(i, &md->image_len) ? ESP_OK : ESP_FAIL;
        }
    }
    return ESP_ERR_INVALID_ARG;
}

const esp_app_desc_t *esp_app_get_description(void)
{
    static esp_app_desc_t desc;

    memset(&desc, 0, sizeof(desc));
    memcpy(desc.version, g_flash[g_running] + 8, 31);
    snprintf(desc.project_name, sizeof(desc.project_name), "ota_client");
    return &desc;
}

/* ---- OTA ------------------------------------------------------------- */

static int handle_find(esp_ota_handle_t h)
{
    for (int i = 0; i < NHANDLES; i++) {
        if (g_h[i].used && g_h[i].id == h) {
            return i;
        }
    }
    return -1;
}

static esp_err_t handle_new(int part, uint32_t wrote, int need_erase, esp_ota_handle_t *out)
{
    for (int i = 0; i < NHANDLES; i++) {
        if (!g_h[i].used) {
            g_h[i].used = 1;
            g_h[i].part = part;
            g_h[i].wrote = wrote;
            g_h[i].need_erase = need_erase;
            g_h[i].id = ++g_next_handle;
            *out = g_h[i].id;
            return ESP_OK;
        }
    }
    return ESP_ERR_NO_MEM; /* a leak of handles shows here */
}

esp_err_t esp_ota_begin(const esp_partition_t *p, size_t image_size, esp_ota_handle_t *out)
{
    int i = part_index(p);
    esp_err_t err;

    if (!p || !out) {
        return ESP_ERR_INVALID_ARG;
    }
    if (i < 1) {
        return ESP_ERR_INVALID_ARG; /* not an OTA app partition */
    }
    if (i == g_running) {
        return ESP_ERR_OTA_PARTITION_CONFLICT;
    }
    if (g_running != 0 && g_state[g_running] == ESP_OTA_IMG_PENDING_VERIFY) {
        return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
    }
    if (image_size != OTA_WITH_SEQUENTIAL_WRITES) {
        size_t n = image_size == 0 || image_size == OTA_SIZE_UNKNOWN
                       ? p->size
                       : (image_size + p->erase_size - 1) / p->erase_size * p->erase_size;
        if ((err = esp_partition_erase_range(p, 0, n)) != ESP_OK) {
            return err;
        }
    }
    if ((err = handle_new(i, 0, image_size == OTA_WITH_SEQUENTIAL_WRITES, out)) != ESP_OK) {
        return err;
    }
    /* esp_ota_invalidate_inactive_ota_data_slot(): the slot's old record goes. */
    g_state[i] = ESP_OTA_IMG_UNDEFINED;
    if (g_last_invalid == i) {
        g_last_invalid = -1;
    }
    if (g_boot == i) {
        g_boot = g_running;
    }
    return ESP_OK;
}

esp_err_t esp_ota_resume(const esp_partition_t *p, const size_t erase_size,
                         const size_t image_offset, esp_ota_handle_t *out)
{
    int i = part_index(p);

    if (!p || !out || image_offset > p->size || i < 1) {
        return ESP_ERR_INVALID_ARG;
    }
    if (i == g_running) {
        return ESP_ERR_OTA_PARTITION_CONFLICT;
    }
    return handle_new(i, (uint32_t)image_offset, erase_size == OTA_WITH_SEQUENTIAL_WRITES, out);
}

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size)
{
    int k = handle_find(handle);
    const uint8_t *b = data;
    esp_err_t err;

    if (!data) {
        return ESP_ERR_INVALID_ARG;
    }
    if (size == 0) {
        return ESP_OK;
    }
    if (k < 0) {
        return ESP_ERR_INVALID_ARG;
    }
    if (g_fail_after == 0) {
        return ESP_FAIL;
    }
    if (g_fail_after > 0) {
        g_fail_after--;
    }
    if (g_h[k].need_erase) {
        /* The arithmetic of ESP-IDF's esp_ota_write(): erase the sectors the
         * write reaches, starting with the current one when aligned. */
        const esp_partition_t *p = &g_parts[g_h[k].part];
        uint32_t w = g_h[k].wrote, first = w / p->erase_size;
        uint32_t last = (uint32_t)((w + size - 1) / p->erase_size);
        err = ESP_OK;
        if (w % p->erase_size == 0) {
            err = esp_partition_erase_range(p, w, (last - first + 1) * p->erase_size);
        } else if (first != last) {
            err = esp_partition_erase_range(p, (first + 1) * p->erase_size,
                                            (last - first) * p->erase_size);
        }
        if (err != ESP_OK) {
            return err;
        }
    }
    if (g_h[k].wrote == 0 && b[0] != ESP_IMAGE_HEADER_MAGIC) {
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    err = esp_partition_write(&g_parts[g_h[k].part], g_h[k].wrote, b, size);
    if (err == ESP_OK) {
        g_h[k].wrote += (uint32_t)size;
    }
    return err;
}

esp_err_t esp_ota_end(esp_ota_handle_t handle)
{
    int k = handle_find(handle);
    esp_err_t err = ESP_OK;
    uint32_t len;

    if (k < 0) {
        return ESP_ERR_NOT_FOUND;
    }
    if (g_h[k].wrote == 0) {
        err = ESP_ERR_INVALID_ARG;
    } else if (!image_ok(g_h[k].part, &len) || len > g_h[k].wrote) {
        err = ESP_ERR_OTA_VALIDATE_FAILED;
    }
    g_h[k].used = 0;
    return err;
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle)
{
    int k = handle_find(handle);

    if (k < 0) {
        return ESP_ERR_NOT_FOUND;
    }
    g_h[k].used = 0;
    return ESP_OK;
}

esp_err_t esp_ota_set_boot_partition(const esp_partition_t *p)
{
    int i = part_index(p);

    if (i < 0) {
        return ESP_ERR_INVALID_ARG;
    }
    if (!image_ok(i, NULL)) {
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    if (i != 0) {
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
        g_state[i] = ESP_OTA_IMG_NEW; /* boots PENDING_VERIFY */
#else
        g_state[i] = ESP_OTA_IMG_UNDEFINED; /* final: boots as it is */
#endif
    }
    g_boot = i;
    return ESP_OK;
}

const esp_partition_t *esp_ota_get_running_partition(void)
{
    return &g_parts[g_running];
}

const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from)
{
    int i = start_from ? part_index(start_from) : g_running;

    return &g_parts[i == 1 ? 2 : 1];
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void)
{
    if (g_running != 0 && g_state[g_running] == ESP_OTA_IMG_PENDING_VERIFY) {
        g_state[g_running] = ESP_OTA_IMG_VALID;
    }
    return ESP_OK;
}

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void)
{
    int to;

    if (g_running == 0) {
        return ESP_ERR_OTA_ROLLBACK_FAILED;
    }
    to = fallback(g_running);
    g_state[g_running] = ESP_OTA_IMG_INVALID;
    g_last_invalid = g_running;
    g_boot = to;
    g_reboot_req = 1; /* the real one calls esp_restart() here */
    return ESP_OK;
}

const esp_partition_t *esp_ota_get_last_invalid_partition(void)
{
    if (g_last_invalid > 0 && (g_state[g_last_invalid] == ESP_OTA_IMG_INVALID ||
                               g_state[g_last_invalid] == ESP_OTA_IMG_ABORTED)) {
        return &g_parts[g_last_invalid];
    }
    return NULL;
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t *p, esp_ota_img_states_t *st)
{
    int i = part_index(p);

    if (i < 0 || !st) {
        return ESP_ERR_INVALID_ARG;
    }
    if (i == 0) {
        return ESP_ERR_NOT_SUPPORTED;
    }
    if (g_state[i] == ESP_OTA_IMG_UNDEFINED) {
        return ESP_ERR_NOT_FOUND;
    }
    *st = g_state[i];
    return ESP_OK;
}

/* ---- NVS ------------------------------------------------------------- */

static int nvs_part_index(const char *name)
{
    for (int i = 0; name && i < NVS_NPART; i++) {
        if (strcmp(g_nvs_parts[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void esp_fake_nvs_fail_init(const char *part, esp_err_t err)
{
    int i = nvs_part_index(part);

    if (i >= 0) {
        g_nvs_init_fail[i] = err;
    }
}

int esp_fake_nvs_count(const char *part)
{
    int i = nvs_part_index(part), n = 0;

    for (int k = 0; i >= 0 && k < NVS_MAX; k++) {
        n += g_nvs_committed[k].used && g_nvs_committed[k].part == i;
    }
    return n;
}

esp_err_t nvs_flash_init_partition(const char *name)
{
    int i = nvs_part_index(name);

    if (!name) {
        return ESP_ERR_INVALID_ARG;
    }
    if (i < 0) {
        return ESP_ERR_NOT_FOUND; /* not in the partition table */
    }
    if (g_nvs_init_fail[i]) {
        return g_nvs_init_fail[i];
    }
    g_nvs_inited[i] = 1; /* again: ESP_OK, as ESP-IDF's */
    return ESP_OK;
}

esp_err_t nvs_flash_init(void)
{
    return nvs_flash_init_partition(NVS_DEFAULT_PART_NAME);
}

esp_err_t nvs_flash_erase_partition(const char *name)
{
    int i = nvs_part_index(name);

    if (i < 0) {
        return ESP_ERR_NOT_FOUND;
    }
    for (int k = 0; k < NVS_MAX; k++) {
        if (g_nvs[k].part == i) {
            memset(&g_nvs[k], 0, sizeof(g_nvs[k]));
        }
        if (g_nvs_committed[k].part == i) {
            memset(&g_nvs_committed[k], 0, sizeof(g_nvs_committed[k]));
        }
    }
    g_nvs_inited[i] = 0; /* ESP-IDF deinitialises it first */
    g_nvs_init_fail[i] = ESP_OK;
    return ESP_OK;
}

esp_err_t nvs_flash_erase(void)
{
    return nvs_flash_erase_partition(NVS_DEFAULT_PART_NAME);
}

static struct nvs_entry *nvs_find(nvs_handle_t h, const char *key)
{
    for (int i = 0; i < NVS_MAX; i++) {
        if (g_nvs[i].used && g_nvs[i].part == g_hdl[h - 1].part &&
            strcmp(g_nvs[i].ns, g_hdl[h - 1].ns) == 0 && strcmp(g_nvs[i].key, key) == 0) {
            return &g_nvs[i];
        }
    }
    return NULL;
}

static int handle_ok(nvs_handle_t h)
{
    return h >= 1 && h <= NVS_NHANDLES && g_hdl[h - 1].used;
}

static esp_err_t nvs_check(nvs_handle_t h, const char *key)
{
    if (!handle_ok(h) || !key) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    return strlen(key) > 15 ? ESP_ERR_NVS_KEY_TOO_LONG : ESP_OK;
}

esp_err_t nvs_open_from_partition(const char *part, const char *ns, nvs_open_mode_t mode,
                                  nvs_handle_t *out)
{
    int p = nvs_part_index(part);

    (void)mode;
    if (!part || !ns || !out || strlen(ns) > 15) {
        return ESP_ERR_INVALID_ARG;
    }
    if (p < 0 || !g_nvs_inited[p]) {
        return ESP_ERR_NVS_PART_NOT_FOUND; /* ESP-IDF: no such initialised partition */
    }
    for (int i = 0; i < NVS_NHANDLES; i++) {
        if (!g_hdl[i].used) {
            g_hdl[i].used = 1;
            g_hdl[i].part = p;
            snprintf(g_hdl[i].ns, sizeof(g_hdl[i].ns), "%s", ns);
            *out = (nvs_handle_t)(i + 1);
            return ESP_OK;
        }
    }
    return ESP_ERR_NO_MEM; /* a leak of handles shows here */
}

esp_err_t nvs_open(const char *ns, nvs_open_mode_t mode, nvs_handle_t *out)
{
    if (!g_nvs_inited[0]) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    return nvs_open_from_partition(NVS_DEFAULT_PART_NAME, ns, mode, out);
}

esp_err_t nvs_get_blob(nvs_handle_t h, const char *key, void *out, size_t *length)
{
    struct nvs_entry *e;
    esp_err_t err = nvs_check(h, key);

    if (err != ESP_OK) {
        return err;
    }
    if (!length) {
        return ESP_ERR_INVALID_ARG;
    }
    if (!(e = nvs_find(h, key))) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    if (e->u32) {
        /* ESP-IDF's Storage::findItem answers any failure of the page's
         * search, a type mismatch included, as not found (v5.5 and v6.0,
         * nvs_storage.cpp): never ESP_ERR_NVS_TYPE_MISMATCH here. */
        return ESP_ERR_NVS_NOT_FOUND;
    }
    if (!out) {
        *length = e->len;
        return ESP_OK;
    }
    if (*length < e->len) {
        *length = e->len; /* as ESP-IDF: the size it would need */
        return ESP_ERR_NVS_INVALID_LENGTH;
    }
    memcpy(out, e->val, e->len);
    *length = e->len;
    return ESP_OK;
}

/* Writes key as a blob (u32 0) or a u32 (u32 1); as ESP-IDF's, a value of
 * another type under the key is replaced. */
static esp_err_t nvs_set(nvs_handle_t h, const char *key, const void *value, size_t length,
                         int u32)
{
    struct nvs_entry *e;
    esp_err_t err = nvs_check(h, key);

    if (err != ESP_OK) {
        return err;
    }
    if (length > NVS_VAL_MAX || (length && !value)) {
        return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
    }
    if (!(e = nvs_find(h, key))) {
        for (int i = 0; i < NVS_MAX && !e; i++) {
            e = g_nvs[i].used ? NULL : &g_nvs[i];
        }
        if (!e) {
            return ESP_ERR_NVS_NOT_ENOUGH_SPACE;
        }
        e->used = 1;
        e->part = g_hdl[h - 1].part;
        snprintf(e->ns, sizeof(e->ns), "%s", g_hdl[h - 1].ns);
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    if (length) {
        memcpy(e->val, value, length);
    }
    e->len = length;
    e->u32 = u32;
    return ESP_OK;
}

esp_err_t nvs_set_blob(nvs_handle_t h, const char *key, const void *value, size_t length)
{
    return nvs_set(h, key, value, length, 0);
}

esp_err_t nvs_set_u32(nvs_handle_t h, const char *key, uint32_t value)
{
    return nvs_set(h, key, &value, sizeof(value), 1);
}

static char g_erase_fail_key[16];
static esp_err_t g_erase_fail_err;

void esp_fake_nvs_fail_erase(const char *key, esp_err_t err)
{
    snprintf(g_erase_fail_key, sizeof(g_erase_fail_key), "%s", key ? key : "");
    g_erase_fail_err = key ? err : ESP_OK;
}

esp_err_t nvs_erase_key(nvs_handle_t h, const char *key)
{
    struct nvs_entry *e;
    esp_err_t err = nvs_check(h, key);

    if (err != ESP_OK) {
        return err;
    }
    if (g_erase_fail_err != ESP_OK && strcmp(key, g_erase_fail_key) == 0) {
        return g_erase_fail_err;
    }
    if (!(e = nvs_find(h, key))) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    memset(e, 0, sizeof(*e));
    return ESP_OK;
}

/* Commits every uncommitted change of the handle's partition (the fake
 * keeps one journal; the tests commit through one handle at a time). */
esp_err_t nvs_commit(nvs_handle_t h)
{
    if (!handle_ok(h)) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    memcpy(g_nvs_committed, g_nvs, sizeof(g_nvs));
    g_commits++;
    return ESP_OK;
}

void nvs_close(nvs_handle_t h)
{
    if (handle_ok(h)) {
        memset(&g_hdl[h - 1], 0, sizeof(g_hdl[h - 1]));
    }
}

/* ---- PSA Crypto ------------------------------------------------------ */

void esp_fake_fail_psa(const char *call, psa_status_t st)
{
    g_psa_fail.call = call;
    g_psa_fail.st = st;
}

unsigned esp_fake_psa_init_calls(void)
{
    return g_psa_init_calls;
}

unsigned esp_fake_psa_mac_calls(void)
{
    return g_mac_calls;
}

int esp_fake_psa_hash_ops(void)
{
    return g_hash_ops;
}

int esp_fake_psa_keys(void)
{
    int n = 0;

    for (int i = 0; i < PSA_NKEYS; i++) {
        n += g_keys[i].used;
    }
    return n;
}

/* The error injected for `call`, else BAD_STATE before psa_crypto_init(). */
static psa_status_t psa_gate(const char *call)
{
    if (g_psa_fail.call && strcmp(g_psa_fail.call, call) == 0) {
        return g_psa_fail.st;
    }
    return g_psa_inited ? PSA_SUCCESS : PSA_ERROR_BAD_STATE;
}

static crypto_hash_sha256_state *op_state(psa_hash_operation_t *op)
{
    return (crypto_hash_sha256_state *)(void *)op->state.bytes;
}

psa_status_t psa_crypto_init(void)
{
    psa_status_t st;

    g_psa_init_calls++;
    if (g_psa_fail.call && strcmp(g_psa_fail.call, "psa_crypto_init") == 0) {
        return g_psa_fail.st;
    }
    st = sodium_init() < 0 ? PSA_ERROR_HARDWARE_FAILURE : PSA_SUCCESS;
    g_psa_inited |= st == PSA_SUCCESS;
    return st;
}

psa_status_t psa_hash_setup(psa_hash_operation_t *op, psa_algorithm_t alg)
{
    psa_status_t st = psa_gate("psa_hash_setup");

    if (st == PSA_SUCCESS && op->alg) {
        st = PSA_ERROR_BAD_STATE; /* active: abort it first */
    } else if (st == PSA_SUCCESS && alg != PSA_ALG_SHA_256) {
        st = PSA_ERROR_NOT_SUPPORTED;
    }
    if (st != PSA_SUCCESS) {
        op->error = 1;
        return st;
    }
    op->alg = alg;
    g_hash_ops++;
    crypto_hash_sha256_init(op_state(op));
    return PSA_SUCCESS;
}

psa_status_t psa_hash_update(psa_hash_operation_t *op, const uint8_t *in, size_t len)
{
    psa_status_t st = psa_gate("psa_hash_update");

    if (st == PSA_SUCCESS && (!op->alg || op->error)) {
        st = PSA_ERROR_BAD_STATE;
    } else if (st == PSA_SUCCESS && !in && len) {
        st = PSA_ERROR_INVALID_ARGUMENT;
    }
    if (st != PSA_SUCCESS) {
        op->error = 1;
        return st;
    }
    crypto_hash_sha256_update(op_state(op), in, len);
    return PSA_SUCCESS;
}

psa_status_t psa_hash_finish(psa_hash_operation_t *op, uint8_t *hash, size_t size, size_t *len)
{
    psa_status_t st = psa_gate("psa_hash_finish");

    if (st == PSA_SUCCESS && (!op->alg || op->error)) {
        st = PSA_ERROR_BAD_STATE;
    } else if (st == PSA_SUCCESS && (!hash || !len)) {
        st = PSA_ERROR_INVALID_ARGUMENT;
    } else if (st == PSA_SUCCESS && size < 32) {
        st = PSA_ERROR_BUFFER_TOO_SMALL;
    }
    if (st != PSA_SUCCESS) {
        op->error = 1;
        return st;
    }
    crypto_hash_sha256_final(op_state(op), hash);
    *len = 32;
    sodium_memzero(op, sizeof(*op)); /* done: inactive again */
    g_hash_ops--;
    return PSA_SUCCESS;
}

psa_status_t psa_hash_abort(psa_hash_operation_t *op)
{
    g_hash_ops -= op->alg != 0;
    sodium_memzero(op, sizeof(*op));
    return PSA_SUCCESS;
}

psa_status_t psa_hash_compute(psa_algorithm_t alg, const uint8_t *in, size_t len, uint8_t *hash,
                              size_t size, size_t *hash_len)
{
    psa_hash_operation_t op = PSA_HASH_OPERATION_INIT;
    psa_status_t st = psa_hash_setup(&op, alg);

    if (st == PSA_SUCCESS) {
        st = psa_hash_update(&op, in, len);
    }
    if (st == PSA_SUCCESS) {
        st = psa_hash_finish(&op, hash, size, hash_len);
    }
    psa_hash_abort(&op);
    return st;
}

void psa_reset_key_attributes(psa_key_attributes_t *attr)
{
    memset(attr, 0, sizeof(*attr));
}

psa_status_t psa_import_key(const psa_key_attributes_t *attr, const uint8_t *data, size_t len,
                            psa_key_id_t *key)
{
    psa_status_t st = psa_gate("psa_import_key");

    if (st != PSA_SUCCESS) {
        return st;
    }
    if (!attr || !key || !data || len == 0 || len > PSA_KEY_MAX ||
        attr->lifetime != PSA_KEY_LIFETIME_VOLATILE ||
        (attr->bits && attr->bits != len * 8)) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    if (attr->type != PSA_KEY_TYPE_HMAC) {
        return PSA_ERROR_NOT_SUPPORTED;
    }
    for (int i = 0; i < PSA_NKEYS; i++) {
        if (!g_keys[i].used) {
            g_keys[i].used = 1;
            g_keys[i].attr = *attr;
            g_keys[i].attr.bits = len * 8;
            memcpy(g_keys[i].data, data, len);
            g_keys[i].len = len;
            *key = (psa_key_id_t)(i + 1);
            return PSA_SUCCESS;
        }
    }
    return PSA_ERROR_INSUFFICIENT_MEMORY; /* a leak of keys shows here */
}

psa_status_t psa_mac_compute(psa_key_id_t key, psa_algorithm_t alg, const uint8_t *in, size_t len,
                             uint8_t *mac, size_t size, size_t *mac_len)
{
    psa_status_t st = psa_gate("psa_mac_compute");
    crypto_auth_hmacsha256_state hs;
    int k = (int)key - 1;

    g_mac_calls++;
    if (st != PSA_SUCCESS) {
        return st;
    }
    if (k < 0 || k >= PSA_NKEYS || !g_keys[k].used) {
        return PSA_ERROR_INVALID_HANDLE;
    }
    if (alg != PSA_ALG_HMAC(PSA_ALG_SHA_256)) {
        return PSA_ERROR_NOT_SUPPORTED;
    }
    if (g_keys[k].attr.alg != alg || !(g_keys[k].attr.usage & PSA_KEY_USAGE_SIGN_MESSAGE)) {
        return PSA_ERROR_NOT_PERMITTED;
    }
    if ((!in && len) || !mac || !mac_len) {
        return PSA_ERROR_INVALID_ARGUMENT;
    }
    if (size < 32) {
        return PSA_ERROR_BUFFER_TOO_SMALL;
    }
    crypto_auth_hmacsha256_init(&hs, g_keys[k].data, g_keys[k].len);
    crypto_auth_hmacsha256_update(&hs, in, len);
    crypto_auth_hmacsha256_final(&hs, mac);
    sodium_memzero(&hs, sizeof(hs));
    *mac_len = 32;
    return PSA_SUCCESS;
}

psa_status_t psa_destroy_key(psa_key_id_t key)
{
    psa_status_t st = psa_gate("psa_destroy_key");
    int k = (int)key - 1;

    if (key == PSA_KEY_ID_NULL) {
        return PSA_SUCCESS;
    }
    if (st != PSA_SUCCESS) {
        return st;
    }
    if (k < 0 || k >= PSA_NKEYS || !g_keys[k].used) {
        return PSA_ERROR_INVALID_HANDLE;
    }
    sodium_memzero(&g_keys[k], sizeof(g_keys[k]));
    return PSA_SUCCESS;
}
