/*
 * posix_port.c - the struct tcpota_port functions of the POSIX device (see
 * posix_port.h, tcpota_posix_port): OTA writes into the update slot,
 * set_boot and the image states, NVS access, hashing and signatures.
 */
#include "posix_internal.h"

#include <string.h>

static int need_booted(struct tcpota_posix_dev *dev)
{
    if (!dev->opened || !dev->booted) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "device not booted");
    }
    return 0;
}

static unsigned update_slot(const struct tcpota_posix_dev *dev)
{
    return dev->running ^ 1u;
}

/* Turn an offer into slot metadata (valid = 0 until set_boot). */
static int img_meta(struct tcpota_posix_dev *dev, const struct tcpota_offer_info *img,
                    struct tcpota_posix_meta *m)
{
    if (!img || !img->image_id || (!img->version && img->version_len)) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "image without id or version");
    }
    if (img->size > dev->slot_size) {
        return tcpota_px_fail(dev, TCPOTA_ERR_NOSPC, "image of %lu bytes exceeds slot of %lu",
                              (unsigned long)img->size, (unsigned long)dev->slot_size);
    }
    if (img->version_len > TCPOTA_POSIX_VERSION_MAX ||
        (img->version_len && memchr(img->version, 0, img->version_len))) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL,
                              "version must be at most %d characters, no NUL",
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
    if (rc == 0 && tcpota_px_running_state(dev) == ST_PENDING) {
        /* The other slot is the rollback target until mark_valid. */
        rc = tcpota_px_fail(dev, TCPOTA_ERR_STATE, "running image not confirmed yet");
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
    if (!tcpota_px_otadata_same(&next, &dev->rec)) {
        rc = tcpota_px_otadata_write(dev, &next);
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
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "resume offset 0x%lx not sector aligned",
                              (unsigned long)offset);
    }
    if (offset > img->size) {
        return tcpota_px_fail(dev, TCPOTA_ERR_RANGE, "resume offset %lu beyond image size %lu",
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
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "ota_write without ota_begin");
    }
    if (len > dev->img.size - dev->ota_pos) {
        return tcpota_px_fail(dev, TCPOTA_ERR_RANGE,
                              "write of %lu bytes at %lu past image size %lu",
                              (unsigned long)len, (unsigned long)dev->ota_pos,
                              (unsigned long)dev->img.size);
    }
    if (len && !data) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "ota_write from NULL");
    }
    while (len > 0 && rc == 0) {
        size_t n;
        if (dev->ota_pos == dev->ota_erased_to) {
            /* Sequential-write mode: erase each sector as writing reaches it. */
            rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_erase(fl, dev->ota_pos, SECTOR));
            if (rc < 0) {
                break;
            }
            dev->ota_erased_to += SECTOR;
        }
        n = dev->ota_erased_to - dev->ota_pos;
        n = len < n ? len : n;
        rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_prog(fl, dev->ota_pos, data, n));
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
    return tcpota_px_flash_rc(dev, &dev->slot[s],
                              tcpota_flash_read(&dev->slot[s], offset, buf, len));
}

static int port_ota_end(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_flash *fl = &dev->slot[update_slot(dev)];
    int rc;

    if (dev->ota_state != OTA_WRITING || dev->ota_pos != dev->img.size) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "ota_end with %lu of %lu bytes written",
                              (unsigned long)dev->ota_pos, (unsigned long)dev->img.size);
    }
    rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_sync(fl));
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
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "set_boot before ota_end");
    }
    /* As esp_ota_set_boot_partition verifies the image: never mark a slot
     * bootable whose bytes are not the offered image. */
    rc = tcpota_px_slot_hash(dev, s, dev->img.size, sha);
    if (rc < 0) {
        return rc;
    }
    if (sodium_memcmp(sha, dev->img.sha256, TCPOTA_ID_LEN) != 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INTEGRITY, "slot %u does not hash to the image id",
                              s);
    }
    next = dev->rec;
    next.boot_slot = (uint8_t)s;
    next.state = ST_NEW;
    next.meta[s] = dev->img;
    next.meta[s].valid = 1;
    rc = tcpota_px_otadata_write(dev, &next);
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

    if (rc < 0 || tcpota_px_running_state(dev) == ST_VALID) {
        return rc;
    }
    if (tcpota_px_running_state(dev) != ST_PENDING) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "running image was rejected");
    }
    next = dev->rec;
    next.state = ST_VALID;
    return tcpota_px_otadata_write(dev, &next);
}

static int port_mark_invalid(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;
    struct tcpota_posix_otadata next;
    int rc = need_booted(dev);

    if (rc < 0) {
        return rc;
    }
    if (tcpota_px_running_state(dev) != ST_PENDING) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "running image is not pending verification");
    }
    if (!dev->rec.meta[update_slot(dev)].valid) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "no previous image to roll back to");
    }
    /* INVALID on the boot slot makes the bootloader run the other one. */
    next = dev->rec;
    next.state = ST_INVALID;
    rc = tcpota_px_otadata_write(dev, &next);
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
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "boot_state into NULL");
    }
    st->pending = tcpota_px_running_state(dev) == ST_PENDING;
    st->rolled_back = dev->rolled_back;
    return 0;
}

/* NVS is nvs.c's; these only adapt the signatures. */
static int port_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap)
{
    return tcpota_px_kv_get(ctx, key, buf, cap);
}

static int port_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    return tcpota_px_kv_set(ctx, key, buf, len);
}

static int port_kv_erase(void *ctx, const char *key)
{
    return tcpota_px_kv_erase(ctx, key);
}

static int port_sha256_begin(void *ctx)
{
    struct tcpota_posix_dev *dev = ctx;

    if (tcpota_px_sha_begin(&dev->sha) < 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "out of memory for a SHA-256");
    }
    dev->sha_active = 1;
    return 0;
}

static int port_sha256_update(void *ctx, const uint8_t *data, size_t len)
{
    struct tcpota_posix_dev *dev = ctx;

    if (!dev->sha_active) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "sha256_update without sha256_begin");
    }
    if (len && !data) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "sha256_update from NULL");
    }
    if (tcpota_px_sha_update(dev->sha, data, len) < 0) {
        dev->sha_active = 0;
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "SHA-256 update failed");
    }
    return 0;
}

static int port_sha256_finish(void *ctx, uint8_t out[TCPOTA_ID_LEN])
{
    struct tcpota_posix_dev *dev = ctx;

    if (!dev->sha_active) {
        return tcpota_px_fail(dev, TCPOTA_ERR_STATE, "sha256_finish without sha256_begin");
    }
    if (!out) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "sha256_finish into NULL");
    }
    dev->sha_active = 0;
    if (tcpota_px_sha_final(dev->sha, out) < 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "SHA-256 final failed");
    }
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
