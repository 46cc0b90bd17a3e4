/*
 * posix_port.c - ESP32-like device in a directory (see posix_port.h).
 *
 * Sections: byte helpers and CRC; records in alternating sectors; otadata;
 * NVS; the bootloader; the struct tcpota_port functions; open/close.
 */
#include "posix_port.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR TCPOTA_SECTOR_SIZE

#if defined(__GNUC__)
#define PORT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PORT_PRINTF(f, a)
#endif

/* Image states in otadata, numbered as esp_ota_img_states_t. */
enum { ST_NEW = 0, ST_PENDING = 1, ST_VALID = 2, ST_INVALID = 3, ST_ABORTED = 4 };

/* Image being written by the port. */
enum { OTA_IDLE = 0, OTA_WRITING = 1, OTA_ENDED = 2 };

/* otadata record: magic u32, seq u32, boot_slot u8, state u8, 2 reserved
 * bytes, then per slot {valid u8, 3 reserved, size u32, sha256[32],
 * version[32] NUL-padded}, then CRC32 of everything before it. */
#define OTADATA_MAGIC 0x4154444fu /* "ODTA" */
#define META_OFF 12u
#define META_LEN 72u
#define REC_CRC_OFF (META_OFF + 2u * META_LEN)
#define REC_LEN (REC_CRC_OFF + 4u)

/* NVS sector: magic u32, seq u32, used u32, `used` bytes of entries
 * {key_len u8, key, value_len u16, value}, then CRC32 of all before. */
#define NVS_MAGIC 0x3153564eu /* "NVS1" */
#define NVS_HDR 12u
#define NVS_MAX_USED (SECTOR - NVS_HDR - 4u)

/* ---- byte helpers, CRC, messages ---------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* CRC-32 (IEEE 802.3, reflected). Bitwise: records are a few hundred
 * bytes, written rarely, and a table would cost 1 KiB for nothing. */
static uint32_t crc32(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;

    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

/* Sequence numbers compare modulo 2^32, so a record written after one
 * with seq 0xFFFFFFFF still wins. */
static int seq_newer(uint32_t a, uint32_t b)
{
    return a != b && (uint32_t)(a - b) < 0x80000000u;
}

PORT_PRINTF(3, 4)
static int dev_fail(struct tcpota_posix_dev *dev, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(dev->detail, sizeof dev->detail, fmt, ap);
    va_end(ap);
    return err;
}

/* Pass a flash result through, keeping the region's message on failure. */
static int flash_rc(struct tcpota_posix_dev *dev, const struct tcpota_flash *fl, int rc)
{
    if (rc < 0) {
        snprintf(dev->detail, sizeof dev->detail, "%s", tcpota_flash_detail(fl));
    }
    return rc;
}

/* ---- records in alternating sectors ------------------------------------ */

/* Replace the content of `sector` by `len` bytes and make it durable. The
 * caller picks the sector that does not hold the current record, so a cut
 * anywhere in here leaves that record intact. */
static int record_commit(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, unsigned sector,
                         const uint8_t *buf, size_t len)
{
    uint32_t off = (uint32_t)sector * SECTOR;
    int rc = flash_rc(dev, fl, tcpota_flash_erase(fl, off, SECTOR));

    if (rc == 0) {
        rc = flash_rc(dev, fl, tcpota_flash_prog(fl, off, buf, len));
    }
    if (rc == 0) {
        rc = flash_rc(dev, fl, tcpota_flash_sync(fl));
    }
    return rc;
}

/* ---- otadata ------------------------------------------------------------ */

static void meta_encode(uint8_t *p, const struct tcpota_posix_meta *m)
{
    memset(p, 0, META_LEN);
    p[0] = m->valid;
    put_le32(p + 4, m->size);
    memcpy(p + 8, m->sha256, TCPOTA_ID_LEN);
    memcpy(p + 40, m->version, strnlen(m->version, TCPOTA_POSIX_VERSION_MAX));
}

static int meta_decode(const uint8_t *p, struct tcpota_posix_meta *m)
{
    if (p[0] > 1) {
        return -1;
    }
    m->valid = p[0];
    m->size = get_le32(p + 4);
    memcpy(m->sha256, p + 8, TCPOTA_ID_LEN);
    /* NUL-padded on flash; a version of exactly 32 characters has none. */
    memcpy(m->version, p + 40, TCPOTA_POSIX_VERSION_MAX);
    m->version[TCPOTA_POSIX_VERSION_MAX] = '\0';
    return 0;
}

static void rec_encode(uint8_t out[REC_LEN], const struct tcpota_posix_otadata *r)
{
    memset(out, 0, REC_LEN);
    put_le32(out, OTADATA_MAGIC);
    put_le32(out + 4, r->seq);
    out[8] = r->boot_slot;
    out[9] = r->state;
    meta_encode(out + META_OFF, &r->meta[0]);
    meta_encode(out + META_OFF + META_LEN, &r->meta[1]);
    put_le32(out + REC_CRC_OFF, crc32(out, REC_CRC_OFF));
}

/* Returns 0 for a well-formed record, -1 for anything else (erased, torn,
 * garbage): a CRC match alone does not make out-of-range fields usable. */
static int rec_decode(const uint8_t in[REC_LEN], struct tcpota_posix_otadata *r)
{
    if (get_le32(in) != OTADATA_MAGIC || get_le32(in + REC_CRC_OFF) != crc32(in, REC_CRC_OFF)) {
        return -1;
    }
    if (in[8] > 1 || in[9] > ST_ABORTED) {
        return -1;
    }
    r->seq = get_le32(in + 4);
    r->boot_slot = in[8];
    r->state = in[9];
    if (meta_decode(in + META_OFF, &r->meta[0]) < 0 ||
        meta_decode(in + META_OFF + META_LEN, &r->meta[1]) < 0) {
        return -1;
    }
    return 0;
}

/* Read both sectors; the valid record with the newest seq becomes current. */
static int otadata_load(struct tcpota_posix_dev *dev)
{
    struct tcpota_posix_otadata r[2];
    uint8_t buf[REC_LEN];
    int ok[2];

    for (unsigned s = 0; s < 2; s++) {
        int rc = flash_rc(dev, &dev->otadata,
                          tcpota_flash_read(&dev->otadata, s * SECTOR, buf, sizeof buf));
        if (rc < 0) {
            return rc;
        }
        ok[s] = rec_decode(buf, &r[s]) == 0;
    }
    if (!ok[0] && !ok[1]) {
        return dev_fail(dev, TCPOTA_ERR_IO, "otadata.bin: no valid record in either sector");
    }
    dev->rec_sector = (!ok[0] || (ok[1] && seq_newer(r[1].seq, r[0].seq))) ? 1 : 0;
    dev->rec = r[dev->rec_sector];
    return 0;
}

/* Write `next` (its seq is ignored) as the new current record. */
static int otadata_write(struct tcpota_posix_dev *dev, const struct tcpota_posix_otadata *next)
{
    struct tcpota_posix_otadata r = *next;
    uint8_t buf[REC_LEN];
    unsigned target = dev->rec_sector ^ 1u;
    int rc;

    r.seq = dev->rec.seq + 1u;
    rec_encode(buf, &r);
    rc = record_commit(dev, &dev->otadata, target, buf, sizeof buf);
    if (rc == 0) {
        dev->rec = r;
        dev->rec_sector = (uint8_t)target;
    }
    return rc;
}

/* Same record apart from seq? Compared encoded, as struct padding and the
 * bytes after a version's NUL do not count. */
static int rec_same(const struct tcpota_posix_otadata *a, const struct tcpota_posix_otadata *b)
{
    struct tcpota_posix_otadata x = *a, y = *b;
    uint8_t ea[REC_LEN], eb[REC_LEN];

    x.seq = y.seq = 0;
    rec_encode(ea, &x);
    rec_encode(eb, &y);
    return memcmp(ea, eb, REC_LEN) == 0;
}

/* ---- NVS ---------------------------------------------------------------- */

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
    e->vlen = get_le16(p + at + 1 + e->klen);
    at += 1 + e->klen + 2;
    if (e->vlen > TCPOTA_POSIX_KV_VALUE_MAX || used - at < e->vlen) {
        return -1;
    }
    e->val = p + at;
    *pos = at + e->vlen;
    return 1;
}

/* Returns 0 if `sec` holds a well-formed table (fills seq), else -1. */
static int nvs_check(const uint8_t *sec, uint32_t *seq)
{
    uint32_t used = get_le32(sec + 8);
    struct kv_entry e;
    size_t pos = 0;
    int rc;

    if (get_le32(sec) != NVS_MAGIC || used > NVS_MAX_USED ||
        get_le32(sec + NVS_HDR + used) != crc32(sec, NVS_HDR + used)) {
        return -1;
    }
    while ((rc = kv_next(sec + NVS_HDR, used, &pos, &e)) == 1) {
    }
    *seq = get_le32(sec + 4);
    return rc;
}

/* Write header and CRC around the `used` entry bytes already in `sec`. */
static size_t nvs_seal(uint8_t *sec, uint32_t seq, uint32_t used)
{
    put_le32(sec, NVS_MAGIC);
    put_le32(sec + 4, seq);
    put_le32(sec + 8, used);
    put_le32(sec + NVS_HDR + used, crc32(sec, NVS_HDR + used));
    return NVS_HDR + used + 4u;
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

/* Load the newest valid table into nvs_cur. A blank nvs.bin is an empty
 * table (as a freshly erased NVS partition); anything else without one
 * valid table is an error, never silently an empty store. */
static int nvs_load(struct tcpota_posix_dev *dev)
{
    uint8_t *buf[2] = {dev->nvs_cur, dev->nvs_scratch};
    uint32_t seq[2];
    int ok[2];

    for (unsigned s = 0; s < 2; s++) {
        int rc = flash_rc(dev, &dev->nvs, tcpota_flash_read(&dev->nvs, s * SECTOR, buf[s], SECTOR));
        if (rc < 0) {
            return rc;
        }
        ok[s] = nvs_check(buf[s], &seq[s]) == 0;
    }
    if (!ok[0] && !ok[1]) {
        if (!all_erased(dev->nvs_cur, SECTOR) || !all_erased(dev->nvs_scratch, SECTOR)) {
            return dev_fail(dev, TCPOTA_ERR_IO, "nvs.bin: no valid table in either sector");
        }
        dev->nvs_sector = -1;
        dev->nvs_seq = 0;
        nvs_seal(dev->nvs_cur, 0, 0);
        return 0;
    }
    dev->nvs_sector = (!ok[0] || (ok[1] && seq_newer(seq[1], seq[0]))) ? 1 : 0;
    dev->nvs_seq = seq[dev->nvs_sector];
    if (dev->nvs_sector == 1) {
        memcpy(dev->nvs_cur, dev->nvs_scratch, SECTOR);
    }
    return 0;
}

/* Checks every kv call makes: device open, key 1..15 characters. */
static int key_check(struct tcpota_posix_dev *dev, const char *key)
{
    size_t n = key ? strnlen(key, TCPOTA_POSIX_KV_KEY_MAX + 1) : 0;

    if (!dev->opened) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "device not open");
    }
    if (n == 0 || n > TCPOTA_POSIX_KV_KEY_MAX) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "nvs key must be 1..%d characters",
                        TCPOTA_POSIX_KV_KEY_MAX);
    }
    return 0;
}

static int key_is(const struct kv_entry *e, const char *key)
{
    return e->klen == strlen(key) && memcmp(e->key, key, e->klen) == 0;
}

/* Find `key` in the current table. Returns 1 (found, *out filled) or 0. */
static int kv_find(const struct tcpota_posix_dev *dev, const char *key, struct kv_entry *out)
{
    uint32_t used = get_le32(dev->nvs_cur + 8);
    size_t pos = 0;

    while (kv_next(dev->nvs_cur + NVS_HDR, used, &pos, out) == 1) {
        if (key_is(out, key)) {
            return 1;
        }
    }
    return 0;
}

/* Copy every entry but `skip` into the scratch sector; returns the bytes
 * used. Never overflows: the current table already fits a sector. */
static uint32_t kv_copy_except(struct tcpota_posix_dev *dev, const char *skip)
{
    uint32_t used = get_le32(dev->nvs_cur + 8);
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

/* Make the scratch table (with `used` entry bytes) the current one. */
static int nvs_commit(struct tcpota_posix_dev *dev, uint32_t used)
{
    unsigned target = dev->nvs_sector < 0 ? 0u : (unsigned)dev->nvs_sector ^ 1u;
    size_t len = nvs_seal(dev->nvs_scratch, dev->nvs_seq + 1u, used);
    int rc = 0;

    /* The core stores "N bytes of the image are in the slot" here: those
     * bytes must reach the disk before the record that claims them. */
    for (unsigned s = 0; s < 2 && rc == 0; s++) {
        rc = flash_rc(dev, &dev->slot[s], tcpota_flash_sync(&dev->slot[s]));
    }
    if (rc == 0) {
        rc = record_commit(dev, &dev->nvs, target, dev->nvs_scratch, len);
    }
    if (rc == 0) {
        memcpy(dev->nvs_cur, dev->nvs_scratch, len);
        dev->nvs_sector = (int)target;
        dev->nvs_seq++;
    }
    return rc;
}

/* ---- the bootloader ----------------------------------------------------- */

/* SHA-256 of the first `size` bytes of a slot. */
static int slot_hash(struct tcpota_posix_dev *dev, unsigned s, uint32_t size,
                     uint8_t out[TCPOTA_ID_LEN])
{
    crypto_hash_sha256_state st;
    uint8_t buf[SECTOR];

    crypto_hash_sha256_init(&st);
    for (uint32_t off = 0; off < size;) {
        uint32_t n = size - off < SECTOR ? size - off : SECTOR;
        int rc = flash_rc(dev, &dev->slot[s], tcpota_flash_read(&dev->slot[s], off, buf, n));
        if (rc < 0) {
            return rc;
        }
        crypto_hash_sha256_update(&st, buf, n);
        off += n;
    }
    crypto_hash_sha256_final(&st, out);
    return 0;
}

/* 1 if slot `s` holds the complete image its metadata describes, 0 if
 * not, or a negative error when it cannot be read. */
static int slot_ok(struct tcpota_posix_dev *dev, unsigned s)
{
    const struct tcpota_posix_meta *m = &dev->rec.meta[s];
    uint8_t sha[TCPOTA_ID_LEN];
    int rc;

    if (!m->valid || m->size > dev->slot_size) {
        return 0;
    }
    rc = slot_hash(dev, s, m->size, sha);
    if (rc < 0) {
        return rc;
    }
    return sodium_memcmp(sha, m->sha256, TCPOTA_ID_LEN) == 0;
}

/* Decide whether the boot slot may run. Returns 1 (run it), 0 (refuse it)
 * or a negative error. Writes the state changes the bootloader makes. */
static int boot_slot_accept(struct tcpota_posix_dev *dev)
{
    struct tcpota_posix_otadata next = dev->rec;
    int ok;

    switch (dev->rec.state) {
    case ST_NEW:
        ok = slot_ok(dev, dev->rec.boot_slot);
        if (ok != 1) {
            return ok;
        }
        next.state = ST_PENDING;
        ok = otadata_write(dev, &next);
        return ok < 0 ? ok : 1;
    case ST_PENDING:
        /* Booted once and never confirmed: the new app failed. */
        next.state = ST_ABORTED;
        ok = otadata_write(dev, &next);
        return ok < 0 ? ok : 0;
    case ST_VALID:
        return slot_ok(dev, dev->rec.boot_slot);
    default:
        return 0;
    }
}

int tcpota_posix_boot(struct tcpota_posix_dev *dev)
{
    unsigned other;
    int rc;

    if (!dev || !dev->opened) {
        return dev ? dev_fail(dev, TCPOTA_ERR_STATE, "device not open") : TCPOTA_ERR_INVAL;
    }
    /* A reset loses RAM: no image in progress, no hash, nothing booted. */
    dev->booted = 0;
    dev->ota_state = OTA_IDLE;
    dev->sha_active = 0;
    rc = otadata_load(dev);
    if (rc == 0) {
        rc = boot_slot_accept(dev);
    }
    if (rc < 0) {
        return rc;
    }
    dev->running = dev->rec.boot_slot;
    dev->rolled_back = 0;
    if (rc == 0) {
        other = dev->rec.boot_slot ^ 1u;
        rc = slot_ok(dev, other);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            return dev_fail(dev, TCPOTA_ERR_INTEGRITY,
                            "no bootable slot: slot %u refused, slot %u invalid",
                            (unsigned)dev->rec.boot_slot, other);
        }
        dev->running = (uint8_t)other;
        dev->rolled_back = 1;
    }
    dev->booted = 1;
    return 0;
}

/* ---- struct tcpota_port functions --------------------------------------- */

static int need_booted(struct tcpota_posix_dev *dev)
{
    if (!dev->opened || !dev->booted) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "device not booted");
    }
    return 0;
}

static unsigned update_slot(const struct tcpota_posix_dev *dev)
{
    return dev->running ^ 1u;
}

/* The slot that runs is either the boot slot (its state is in otadata) or
 * the previous image the bootloader fell back to, which is valid. */
static uint8_t running_state(const struct tcpota_posix_dev *dev)
{
    return dev->running == dev->rec.boot_slot ? dev->rec.state : (uint8_t)ST_VALID;
}

/* Turn an offer into slot metadata (valid = 0 until set_boot). */
static int img_meta(struct tcpota_posix_dev *dev, const struct tcpota_offer_info *img,
                    struct tcpota_posix_meta *m)
{
    if (!img || !img->image_id || (!img->version && img->version_len)) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "image without id or version");
    }
    if (img->size > dev->slot_size) {
        return dev_fail(dev, TCPOTA_ERR_NOSPC, "image of %lu bytes exceeds slot of %lu",
                        (unsigned long)img->size, (unsigned long)dev->slot_size);
    }
    if (img->version_len > TCPOTA_POSIX_VERSION_MAX ||
        (img->version_len && memchr(img->version, 0, img->version_len))) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "version must be at most %d characters, no NUL",
                        TCPOTA_POSIX_VERSION_MAX);
    }
    memset(m, 0, sizeof *m);
    m->size = img->size;
    memcpy(m->sha256, img->image_id, TCPOTA_ID_LEN);
    if (img->version_len) {
        memcpy(m->version, img->version, img->version_len);
    }
    return 0;
}

/* Common checks of ota_begin and ota_resume. */
static int ota_prepare(struct tcpota_posix_dev *dev, const struct tcpota_offer_info *img,
                       struct tcpota_posix_meta *m)
{
    int rc = need_booted(dev);

    if (rc == 0) {
        rc = img_meta(dev, img, m);
    }
    if (rc == 0 && running_state(dev) == ST_PENDING) {
        /* The other slot is the rollback target until mark_valid. */
        rc = dev_fail(dev, TCPOTA_ERR_STATE, "running image not confirmed yet");
    }
    return rc;
}

/* Claim the update slot for the image `m`, writing from `offset` on.
 * Before any byte lands, otadata says the slot holds no valid image (only
 * the start of this one) and the running slot boots: a cut during the
 * download can never boot half an image. */
static int ota_start(struct tcpota_posix_dev *dev, const struct tcpota_posix_meta *m,
                     uint32_t offset)
{
    struct tcpota_posix_otadata next = dev->rec;
    int rc;

    dev->ota_state = OTA_IDLE;
    next.boot_slot = dev->running;
    next.state = ST_VALID;
    next.meta[update_slot(dev)] = *m;
    if (!rec_same(&next, &dev->rec)) {
        rc = otadata_write(dev, &next);
        if (rc < 0) {
            return rc;
        }
    }
    dev->img = *m;
    dev->ota_state = OTA_WRITING;
    dev->ota_pos = offset;
    dev->ota_erased_to = offset; /* the sector at offset is erased when reached */
    return 0;
}

static int port_ota_begin(void *ctx, const struct tcpota_offer_info *img)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_meta m;
    int rc = ota_prepare(dev, img, &m);

    return rc < 0 ? rc : ota_start(dev, &m, 0);
}

/* As esp_ota_resume, the port trusts the caller that the first `offset`
 * bytes of the slot are this image's: refusing here when otadata names
 * another image would strand a caller whose resume record outlived a
 * power cut, while a wrong claim is caught anyway when set_boot hashes
 * the slot. */
static int port_ota_resume(void *ctx, const struct tcpota_offer_info *img, uint32_t offset)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_meta m;
    int rc = ota_prepare(dev, img, &m);

    if (rc < 0) {
        return rc;
    }
    if (offset % SECTOR != 0) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "resume offset 0x%lx not sector aligned",
                        (unsigned long)offset);
    }
    if (offset > img->size) {
        return dev_fail(dev, TCPOTA_ERR_RANGE, "resume offset %lu beyond image size %lu",
                        (unsigned long)offset, (unsigned long)img->size);
    }
    return ota_start(dev, &m, offset);
}

static int port_ota_write(void *ctx, const uint8_t *data, size_t len)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_flash *fl = &dev->slot[update_slot(dev)];
    int rc = 0;

    if (dev->ota_state != OTA_WRITING) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "ota_write without ota_begin");
    }
    if (len > dev->img.size - dev->ota_pos) {
        return dev_fail(dev, TCPOTA_ERR_RANGE, "write of %lu bytes at %lu past image size %lu",
                        (unsigned long)len, (unsigned long)dev->ota_pos,
                        (unsigned long)dev->img.size);
    }
    if (len && !data) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "ota_write from NULL");
    }
    while (len > 0 && rc == 0) {
        size_t n;
        if (dev->ota_pos == dev->ota_erased_to) {
            /* Sequential-write mode: erase each sector as writing reaches it. */
            rc = flash_rc(dev, fl, tcpota_flash_erase(fl, dev->ota_pos, SECTOR));
            if (rc < 0) {
                break;
            }
            dev->ota_erased_to += SECTOR;
        }
        n = dev->ota_erased_to - dev->ota_pos;
        n = len < n ? len : n;
        rc = flash_rc(dev, fl, tcpota_flash_prog(fl, dev->ota_pos, data, n));
        if (rc == 0) {
            dev->ota_pos += (uint32_t)n;
            data += n;
            len -= n;
        }
    }
    return rc;
}

static int port_ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    struct tcpota_posix_dev *dev = ctx;
    unsigned s;
    int rc = need_booted(dev);

    if (rc < 0) {
        return rc;
    }
    s = update_slot(dev);
    return flash_rc(dev, &dev->slot[s], tcpota_flash_read(&dev->slot[s], offset, buf, len));
}

static int port_ota_end(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_flash *fl = &dev->slot[update_slot(dev)];
    int rc;

    if (dev->ota_state != OTA_WRITING || dev->ota_pos != dev->img.size) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "ota_end with %lu of %lu bytes written",
                        (unsigned long)dev->ota_pos, (unsigned long)dev->img.size);
    }
    rc = flash_rc(dev, fl, tcpota_flash_sync(fl));
    if (rc == 0) {
        dev->ota_state = OTA_ENDED;
    }
    return rc;
}

static int port_ota_abort(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;

    dev->ota_state = OTA_IDLE;
    return 0;
}

static int port_set_boot(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_otadata next;
    uint8_t sha[TCPOTA_ID_LEN];
    unsigned s = update_slot(dev);
    int rc;

    if (dev->ota_state != OTA_ENDED) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "set_boot before ota_end");
    }
    /* As esp_ota_set_boot_partition verifies the image: never mark a slot
     * bootable whose bytes are not the offered image. */
    rc = slot_hash(dev, s, dev->img.size, sha);
    if (rc < 0) {
        return rc;
    }
    if (sodium_memcmp(sha, dev->img.sha256, TCPOTA_ID_LEN) != 0) {
        return dev_fail(dev, TCPOTA_ERR_INTEGRITY, "slot %u does not hash to the image id", s);
    }
    next = dev->rec;
    next.boot_slot = (uint8_t)s;
    next.state = ST_NEW;
    next.meta[s] = dev->img;
    next.meta[s].valid = 1;
    rc = otadata_write(dev, &next);
    if (rc == 0) {
        dev->ota_state = OTA_IDLE;
    }
    return rc;
}

static int port_mark_valid(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_otadata next;
    int rc = need_booted(dev);

    if (rc < 0 || running_state(dev) == ST_VALID) {
        return rc;
    }
    if (running_state(dev) != ST_PENDING) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "running image was rejected");
    }
    next = dev->rec;
    next.state = ST_VALID;
    return otadata_write(dev, &next);
}

static int port_mark_invalid(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_otadata next;
    int rc = need_booted(dev);

    if (rc < 0) {
        return rc;
    }
    if (running_state(dev) != ST_PENDING) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "running image is not pending verification");
    }
    if (!dev->rec.meta[update_slot(dev)].valid) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "no previous image to roll back to");
    }
    /* INVALID on the boot slot makes the bootloader run the other one. */
    next = dev->rec;
    next.state = ST_INVALID;
    rc = otadata_write(dev, &next);
    if (rc == 0) {
        /* On a device this call reboots: nothing may run until the next
         * tcpota_posix_boot() (an ota_begin now would undo the INVALID). */
        dev->booted = 0;
        dev->ota_state = OTA_IDLE;
    }
    return rc;
}

static int port_boot_state(void *ctx, struct tcpota_boot_state *st)
{
    struct tcpota_posix_dev *dev = ctx;
    int rc = need_booted(dev);

    if (rc < 0) {
        return rc;
    }
    if (!st) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "boot_state into NULL");
    }
    st->pending = running_state(dev) == ST_PENDING;
    st->rolled_back = dev->rolled_back;
    return 0;
}

static int port_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap)
{
    struct tcpota_posix_dev *dev = ctx;
    struct kv_entry e;
    int rc = key_check(dev, key);

    if (rc < 0) {
        return rc;
    }
    if (!kv_find(dev, key, &e)) {
        return dev_fail(dev, TCPOTA_ERR_NOENT, "nvs: no key \"%s\"", key);
    }
    if (e.vlen > cap || (e.vlen && !buf)) {
        return dev_fail(dev, TCPOTA_ERR_NOSPC, "nvs: \"%s\" holds %lu bytes, buffer %lu", key,
                        (unsigned long)e.vlen, (unsigned long)cap);
    }
    if (e.vlen) {
        memcpy(buf, e.val, e.vlen);
    }
    return (int)e.vlen;
}

static int port_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    struct tcpota_posix_dev *dev = ctx;
    uint8_t *p;
    uint32_t used;
    size_t klen;
    int rc = key_check(dev, key);

    if (rc < 0) {
        return rc;
    }
    if (len > TCPOTA_POSIX_KV_VALUE_MAX) {
        return dev_fail(dev, TCPOTA_ERR_NOSPC, "nvs: value of %lu bytes, max %d",
                        (unsigned long)len, TCPOTA_POSIX_KV_VALUE_MAX);
    }
    if (len && !buf) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "kv_set from NULL");
    }
    klen = strlen(key);
    used = kv_copy_except(dev, key);
    if (NVS_MAX_USED - used < 1 + klen + 2 + len) {
        return dev_fail(dev, TCPOTA_ERR_NOSPC, "nvs: table full");
    }
    p = dev->nvs_scratch + NVS_HDR + used;
    p[0] = (uint8_t)klen;
    memcpy(p + 1, key, klen);
    put_le16(p + 1 + klen, (uint16_t)len);
    if (len) {
        memcpy(p + 1 + klen + 2, buf, len);
    }
    return nvs_commit(dev, used + (uint32_t)(1 + klen + 2 + len));
}

static int port_kv_erase(void *ctx, const char *key)
{
    struct tcpota_posix_dev *dev = ctx;
    struct kv_entry e;
    int rc = key_check(dev, key);

    if (rc < 0) {
        return rc;
    }
    if (!kv_find(dev, key, &e)) {
        return dev_fail(dev, TCPOTA_ERR_NOENT, "nvs: no key \"%s\"", key);
    }
    return nvs_commit(dev, kv_copy_except(dev, key));
}

static int port_sha256_begin(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;

    crypto_hash_sha256_init(&dev->sha);
    dev->sha_active = 1;
    return 0;
}

static int port_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    struct tcpota_posix_dev *dev = ctx;

    if (!dev->sha_active) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "sha256_update without sha256_begin");
    }
    if (len && !data) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "sha256_update from NULL");
    }
    crypto_hash_sha256_update(&dev->sha, data, len);
    return 0;
}

static int port_sha256_finish(void *ctx, uint8_t out[TCPOTA_ID_LEN])
{
    struct tcpota_posix_dev *dev = ctx;

    if (!dev->sha_active) {
        return dev_fail(dev, TCPOTA_ERR_STATE, "sha256_finish without sha256_begin");
    }
    if (!out) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "sha256_finish into NULL");
    }
    crypto_hash_sha256_final(&dev->sha, out);
    dev->sha_active = 0;
    return 0;
}

/* Signed manifests and device authentication use libsodium's primitives. */
static int port_ed25519_verify(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len,
                               const uint8_t pk[32])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : TCPOTA_ERR_BADSIG;
}

static int port_hmac_sha256(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *msg,
                            size_t len, uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    (void)ctx;
    if (crypto_auth_hmacsha256_init(&st, key, key_len) != 0 ||
        crypto_auth_hmacsha256_update(&st, msg, len) != 0 ||
        crypto_auth_hmacsha256_final(&st, out) != 0) {
        return TCPOTA_ERR_IO;
    }
    sodium_memzero(&st, sizeof(st));
    return 0;
}

int tcpota_posix_port(struct tcpota_posix_dev *dev, struct tcpota_port *port)
{
    if (!dev || !port) {
        return TCPOTA_ERR_INVAL;
    }
    memset(port, 0, sizeof *port);
    port->ctx = dev;
    port->slot_size = dev->slot_size;
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
    port->ed25519_verify = port_ed25519_verify;
    port->hmac_sha256 = port_hmac_sha256;
    port->verify_offer = NULL;
    return 0;
}

/* ---- open, create, close ------------------------------------------------ */

static int make_path(struct tcpota_posix_dev *dev, char *out, size_t cap, const char *dir,
                     const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= cap) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "path too long: %s/%s", dir, name);
    }
    return 0;
}

static int open_region(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, const char *dir,
                       const char *name, uint32_t size, int create)
{
    char path[4096];
    int rc = make_path(dev, path, sizeof path, dir, name);

    if (rc == 0) {
        rc = flash_rc(dev, fl, tcpota_flash_open(fl, path, size, create));
    }
    return rc;
}

/* Make rename() durable: a crash after it must not bring the old name
 * back. */
static int sync_dir(struct tcpota_posix_dev *dev, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0 || fsync(fd) < 0) {
        rc = dev_fail(dev, TCPOTA_ERR_IO, "%s: sync: %s", dir, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* Fresh otadata: slot 0 holds the factory image and boots. It is built
 * under a temporary name and renamed last, so a device whose creation was
 * interrupted has no otadata.bin and is created again. */
static int create_otadata(struct tcpota_posix_dev *dev, const char *dir, const char *factory)
{
    struct tcpota_posix_otadata r;
    uint8_t buf[REC_LEN];
    char tmp[4096], path[4096];
    int rc = make_path(dev, tmp, sizeof tmp, dir, "otadata.bin.tmp");

    if (rc == 0) {
        rc = make_path(dev, path, sizeof path, dir, "otadata.bin");
    }
    if (rc == 0) {
        rc = flash_rc(dev, &dev->otadata, tcpota_flash_open(&dev->otadata, tmp, 2 * SECTOR, 1));
    }
    if (rc < 0) {
        return rc;
    }
    memset(&r, 0, sizeof r);
    r.seq = 1;
    r.boot_slot = 0;
    r.state = ST_VALID;
    r.meta[0].valid = 1;
    crypto_hash_sha256(r.meta[0].sha256, (const uint8_t *)"", 0);
    memcpy(r.meta[0].version, factory, strlen(factory));
    rec_encode(buf, &r);
    rc = record_commit(dev, &dev->otadata, 0, buf, sizeof buf);
    if (tcpota_flash_close(&dev->otadata) < 0 && rc == 0) {
        rc = flash_rc(dev, &dev->otadata, TCPOTA_ERR_IO);
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = dev_fail(dev, TCPOTA_ERR_IO, "rename %s: %s", tmp, strerror(errno));
    }
    return rc == 0 ? sync_dir(dev, dir) : rc;
}

static int create_layout(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size,
                         const char *factory)
{
    static const char *const slots[2] = {"ota_0.bin", "ota_1.bin"};
    int rc = 0;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        return dev_fail(dev, TCPOTA_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    }
    for (unsigned s = 0; s < 2 && rc == 0; s++) {
        rc = open_region(dev, &dev->slot[s], dir, slots[s], slot_size, 1);
        tcpota_flash_close(&dev->slot[s]);
    }
    if (rc == 0) {
        /* An empty table in sector 0, so that one valid table always
         * exists, whatever a power cut does to the next kv_set. */
        rc = open_region(dev, &dev->nvs, dir, "nvs.bin", 2 * SECTOR, 1);
        if (rc == 0) {
            rc = record_commit(dev, &dev->nvs, 0, dev->nvs_scratch,
                               nvs_seal(dev->nvs_scratch, 1, 0));
        }
        tcpota_flash_close(&dev->nvs);
    }
    return rc == 0 ? create_otadata(dev, dir, factory) : rc;
}

static int open_regions(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size)
{
    int rc = open_region(dev, &dev->slot[0], dir, "ota_0.bin", 0, 0);

    if (rc == 0 && slot_size && dev->slot[0].size != slot_size) {
        rc = dev_fail(dev, TCPOTA_ERR_INVAL, "slot size %lu differs from the device's %lu",
                      (unsigned long)slot_size, (unsigned long)dev->slot[0].size);
    }
    if (rc == 0) {
        rc = open_region(dev, &dev->slot[1], dir, "ota_1.bin", dev->slot[0].size, 0);
    }
    if (rc == 0) {
        rc = open_region(dev, &dev->nvs, dir, "nvs.bin", 2 * SECTOR, 0);
    }
    dev->slot_size = dev->slot[0].size;
    return rc;
}

static int open_check_args(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size,
                           const char *factory)
{
    if (!dir || !*dir) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "no directory");
    }
    if (slot_size % SECTOR != 0) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "slot size %lu not a multiple of %u",
                        (unsigned long)slot_size, SECTOR);
    }
    if (strlen(factory) > TCPOTA_POSIX_VERSION_MAX) {
        return dev_fail(dev, TCPOTA_ERR_INVAL, "factory version longer than %d characters",
                        TCPOTA_POSIX_VERSION_MAX);
    }
    if (sodium_init() < 0) {
        return dev_fail(dev, TCPOTA_ERR_IO, "sodium_init failed");
    }
    return 0;
}

int tcpota_posix_open(struct tcpota_posix_dev *dev, const char *dir, int create,
                      uint32_t slot_size, const char *factory_version)
{
    const char *factory = factory_version ? factory_version : "0.0.0";
    int rc;

    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    memset(dev, 0, sizeof *dev);
    dev->slot[0].fd = dev->slot[1].fd = dev->otadata.fd = dev->nvs.fd = -1;
    dev->nvs_sector = -1;
    rc = open_check_args(dev, dir, slot_size, factory);
    if (rc == 0) {
        rc = open_region(dev, &dev->otadata, dir, "otadata.bin", 2 * SECTOR, 0);
    }
    if (rc == TCPOTA_ERR_NOENT && create) {
        rc = create_layout(dev, dir, slot_size ? slot_size : TCPOTA_POSIX_SLOT_SIZE_DEFAULT,
                           factory);
        if (rc == 0) {
            rc = open_region(dev, &dev->otadata, dir, "otadata.bin", 2 * SECTOR, 0);
        }
    }
    if (rc == 0) {
        rc = open_regions(dev, dir, slot_size);
    }
    if (rc == 0) {
        rc = otadata_load(dev);
    }
    if (rc == 0) {
        rc = nvs_load(dev);
    }
    if (rc < 0) {
        tcpota_posix_close(dev);
        return rc;
    }
    dev->opened = 1;
    return 0;
}

int tcpota_posix_close(struct tcpota_posix_dev *dev)
{
    struct tcpota_flash *fl[4];
    int rc = 0;

    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    fl[0] = &dev->slot[0];
    fl[1] = &dev->slot[1];
    fl[2] = &dev->otadata;
    fl[3] = &dev->nvs;

    for (unsigned i = 0; i < 4; i++) {
        int r = tcpota_flash_close(fl[i]);
        if (r < 0 && rc == 0) {
            rc = flash_rc(dev, fl[i], r);
        }
    }
    dev->opened = 0;
    dev->booted = 0;
    dev->ota_state = OTA_IDLE;
    return rc;
}

int tcpota_posix_running(const struct tcpota_posix_dev *dev, struct tcpota_posix_slot_info *out)
{
    const struct tcpota_posix_meta *m;

    if (!dev || !out) {
        return TCPOTA_ERR_INVAL;
    }
    if (!dev->opened || !dev->booted) {
        return TCPOTA_ERR_STATE;
    }
    m = &dev->rec.meta[dev->running];
    memset(out, 0, sizeof *out);
    out->slot = dev->running;
    out->pending = running_state(dev) == ST_PENDING;
    out->rolled_back = dev->rolled_back;
    out->size = m->size;
    memcpy(out->sha256, m->sha256, TCPOTA_ID_LEN);
    memcpy(out->version, m->version, sizeof out->version);
    return 0;
}

int tcpota_posix_set_fault(struct tcpota_posix_dev *dev, struct tcpota_flash_fault *fault)
{
    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    tcpota_flash_set_fault(&dev->slot[0], fault);
    tcpota_flash_set_fault(&dev->slot[1], fault);
    tcpota_flash_set_fault(&dev->otadata, fault);
    tcpota_flash_set_fault(&dev->nvs, fault);
    return 0;
}

const char *tcpota_posix_strerror_detail(const struct tcpota_posix_dev *dev)
{
    return dev ? dev->detail : "";
}
