/*
 * nvs.c - the NVS-like key/value store of the POSIX port (see
 * posix_internal.h). The whole table is one record of record.c: every
 * change rewrites it to the other sector of nvs.bin.
 */
#include "posix_internal.h"

#include <string.h>

/* NVS record: magic u32, seq u32, used u32, `used` bytes of entries
 * {key_len u8, key, value_len u16, value}, then CRC32 of all before. */
#define NVS_MAGIC 0x3153564eu /* "NVS1" */
#define NVS_HDR 12u
#define NVS_MAX_USED (SECTOR - NVS_HDR - 4u)

struct kv_entry {
    const uint8_t *key;
    size_t klen;
    const uint8_t *val;
    size_t vlen;
};

/* Parse the entry at *pos of the `used` entry bytes at p. Returns 1 with
 * *e filled, 0 at the end, -1 if the entry is malformed or overruns. */
static int kv_next(const uint8_t *p, size_t used, size_t *pos, struct kv_entry *e)
{
    size_t at = *pos;

    if (at == used) {
        return 0;
    }
    e->klen = p[at];
    if (e->klen == 0 || e->klen > TCPOTA_POSIX_KV_KEY_MAX || used - at < 1 + e->klen + 2) {
        return -1;
    }
    e->key = p + at + 1;
    if (memchr(e->key, 0, e->klen)) {
        return -1;
    }
    e->vlen = tcpota_get_u16(p + at + 1 + e->klen);
    at += 1 + e->klen + 2;
    if (e->vlen > TCPOTA_POSIX_KV_VALUE_MAX || used - at < e->vlen) {
        return -1;
    }
    e->val = p + at;
    *pos = at + e->vlen;
    return 1;
}

/* A sector holds a table when it is a framed record whose entries parse. */
static int table_check(const uint8_t *sec, size_t len)
{
    uint32_t used = tcpota_get_u32(sec + 8);
    struct kv_entry e;
    size_t pos = 0;
    int rc;

    if (len != SECTOR || used > NVS_MAX_USED ||
        !tcpota_px_rec_framed(sec, NVS_HDR + used + 4u, NVS_MAGIC)) {
        return 0;
    }
    while ((rc = kv_next(sec + NVS_HDR, used, &pos, &e)) == 1) {
    }
    return rc == 0;
}

static int all_erased(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0xFF) {
            return 0;
        }
    }
    return 1;
}

/* Bytes of the record holding `used` entry bytes. */
static size_t table_len(uint32_t used)
{
    return NVS_HDR + used + 4u;
}

int tcpota_px_nvs_load(struct tcpota_posix_dev *dev)
{
    uint8_t *const buf[2] = {dev->nvs_cur, dev->nvs_scratch};
    uint32_t seq;
    int s = tcpota_px_rec_load(dev, &dev->nvs, buf, SECTOR, table_check, &seq);

    if (s == TCPOTA_ERR_NOENT) {
        /* A blank nvs.bin is an empty table (as a freshly erased NVS
         * partition); anything else is an error, never silently empty. */
        if (!all_erased(dev->nvs_cur, SECTOR) || !all_erased(dev->nvs_scratch, SECTOR)) {
            return tcpota_px_fail(dev, TCPOTA_ERR_IO, "nvs.bin: no valid table in either sector");
        }
        dev->nvs_sector = -1;
        dev->nvs_seq = 0;
        tcpota_put_u32(dev->nvs_cur + 8, 0);
        tcpota_px_rec_seal(dev->nvs_cur, table_len(0), NVS_MAGIC, 0);
        return 0;
    }
    if (s < 0) {
        return s;
    }
    dev->nvs_sector = s;
    dev->nvs_seq = seq;
    if (s == 1) {
        memcpy(dev->nvs_cur, dev->nvs_scratch, SECTOR);
    }
    return 0;
}

/* Make the scratch table (with `used` entry bytes) the current one. */
static int nvs_commit(struct tcpota_posix_dev *dev, uint32_t used)
{
    size_t len = table_len(used);
    int rc = 0, s;

    /* The core stores "N bytes of the image are in the slot" here: those
     * bytes must reach the disk before the record that claims them. */
    for (unsigned i = 0; i < 2 && rc == 0; i++) {
        rc = tcpota_px_flash_rc(dev, &dev->slot[i], tcpota_flash_sync(&dev->slot[i]));
    }
    if (rc < 0) {
        return rc;
    }
    tcpota_put_u32(dev->nvs_scratch + 8, used);
    s = tcpota_px_rec_commit(dev, &dev->nvs, dev->nvs_sector, dev->nvs_seq, NVS_MAGIC,
                             dev->nvs_scratch, len);
    if (s < 0) {
        return s;
    }
    memcpy(dev->nvs_cur, dev->nvs_scratch, len);
    dev->nvs_sector = s;
    dev->nvs_seq++;
    return 0;
}

int tcpota_px_nvs_format(struct tcpota_posix_dev *dev)
{
    int s;

    /* An empty table in sector 0, so that one valid table always exists,
     * whatever a power cut does to the next kv_set. */
    tcpota_put_u32(dev->nvs_scratch + 8, 0);
    s = tcpota_px_rec_commit(dev, &dev->nvs, -1, 0, NVS_MAGIC, dev->nvs_scratch, table_len(0));
    return s < 0 ? s : 0;
}

static int key_is(const struct kv_entry *e, const char *key)
{
    return e->klen == strlen(key) && memcmp(e->key, key, e->klen) == 0;
}

/* Find `key` in the current table: 0 with *out filled, or TCPOTA_ERR_NOENT. */
static int kv_find(struct tcpota_posix_dev *dev, const char *key, struct kv_entry *out)
{
    uint32_t used = tcpota_get_u32(dev->nvs_cur + 8);
    size_t pos = 0;

    while (kv_next(dev->nvs_cur + NVS_HDR, used, &pos, out) == 1) {
        if (key_is(out, key)) {
            return 0;
        }
    }
    return tcpota_px_fail(dev, TCPOTA_ERR_NOENT, "nvs: no key \"%s\"", key);
}

/* Copy every entry but `skip` into the scratch sector; returns the bytes
 * used. Never overflows: the current table already fits a sector. */
static uint32_t kv_copy_except(struct tcpota_posix_dev *dev, const char *skip)
{
    uint32_t used = tcpota_get_u32(dev->nvs_cur + 8);
    uint8_t *out = dev->nvs_scratch + NVS_HDR;
    size_t pos = 0, at = 0, start = 0;
    struct kv_entry e;

    while (kv_next(dev->nvs_cur + NVS_HDR, used, &pos, &e) == 1) {
        if (!key_is(&e, skip)) {
            memcpy(out + at, dev->nvs_cur + NVS_HDR + start, pos - start);
            at += pos - start;
        }
        start = pos;
    }
    return (uint32_t)at;
}

/* Checks every kv call makes: device open, key 1..15 characters. */
static int key_check(struct tcpota_posix_dev *dev, const char *key)
{
    size_t n = key ? strnlen(key, TCPOTA_POSIX_KV_KEY_MAX + 1) : 0;

    if (!dev->opened) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "device not open");
    }
    if (n == 0 || n > TCPOTA_POSIX_KV_KEY_MAX) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "nvs key must be 1..%d characters",
                              TCPOTA_POSIX_KV_KEY_MAX);
    }
    return 0;
}

int tcpota_px_nvs_read(struct tcpota_posix_dev *dev, const char *key, uint8_t *buf, size_t cap)
{
    struct kv_entry e;
    int rc = kv_find(dev, key, &e);

    if (rc < 0) {
        return rc;
    }
    if (e.vlen > cap || (e.vlen && !buf)) {
        return tcpota_px_fail(dev, TCPOTA_ERR_NOSPC, "nvs: \"%s\" holds %lu bytes, buffer %lu",
                              key, (unsigned long)e.vlen, (unsigned long)cap);
    }
    if (e.vlen) {
        memcpy(buf, e.val, e.vlen);
    }
    return (int)e.vlen;
}

int tcpota_px_kv_get(struct tcpota_posix_dev *dev, const char *key, uint8_t *buf, size_t cap)
{
    int rc = key_check(dev, key);

    return rc < 0 ? rc : tcpota_px_nvs_read(dev, key, buf, cap);
}

int tcpota_px_kv_set(struct tcpota_posix_dev *dev, const char *key, const uint8_t *buf,
                     size_t len)
{
    uint8_t *p;
    uint32_t used;
    size_t klen;
    int rc = key_check(dev, key);

    if (rc < 0) {
        return rc;
    }
    if (len > TCPOTA_POSIX_KV_VALUE_MAX) {
        return tcpota_px_fail(dev, TCPOTA_ERR_NOSPC, "nvs: value of %lu bytes, max %d",
                              (unsigned long)len, TCPOTA_POSIX_KV_VALUE_MAX);
    }
    if (len && !buf) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "kv_set from NULL");
    }
    klen = strlen(key);
    used = kv_copy_except(dev, key);
    if (NVS_MAX_USED - used < 1 + klen + 2 + len) {
        return tcpota_px_fail(dev, TCPOTA_ERR_NOSPC, "nvs: table full");
    }
    p = dev->nvs_scratch + NVS_HDR + used;
    p[0] = (uint8_t)klen;
    memcpy(p + 1, key, klen);
    tcpota_put_u16(p + 1 + klen, (uint16_t)len);
    if (len) {
        memcpy(p + 1 + klen + 2, buf, len);
    }
    return nvs_commit(dev, used + (uint32_t)(1 + klen + 2 + len));
}

int tcpota_px_kv_erase(struct tcpota_posix_dev *dev, const char *key)
{
    struct kv_entry e;
    int rc = key_check(dev, key);

    if (rc == 0) {
        rc = kv_find(dev, key, &e);
    }
    return rc < 0 ? rc : nvs_commit(dev, kv_copy_except(dev, key));
}
