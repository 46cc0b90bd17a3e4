/*
 * boot.c - the bootloader of the emulated ESP32 (see posix_port.h,
 * tcpota_posix_boot): which slot runs, rollback, image checks.
 *
 * The decision is split in two steps that write nothing
 * (tcpota_px_boot_verdict, tcpota_px_boot_pick), so that
 * tcpota_posix_inspect() makes exactly the choice a reset would make;
 * only tcpota_posix_boot() writes the state change between the two.
 */
#include "posix_internal.h"

#include <string.h>

int tcpota_px_slot_hash(struct tcpota_posix_dev *dev, unsigned s, uint32_t size,
                        uint8_t out[TCPOTA_ID_LEN])
{
    void *st = NULL;
    uint8_t buf[SECTOR];
    int rc = 0;

    if (tcpota_px_sha_begin(&st) < 0) {
        tcpota_px_sha_free(&st); /* a context made, its init failed */
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "out of memory for a SHA-256");
    }
    for (uint32_t off = 0; off < size && rc == 0;) {
        uint32_t n = size - off < SECTOR ? size - off : SECTOR;
        rc = tcpota_px_flash_rc(dev, &dev->slot[s], tcpota_flash_read(&dev->slot[s], off, buf, n));
        if (rc == 0 && tcpota_px_sha_update(st, buf, n) < 0) {
            rc = tcpota_px_fail(dev, TCPOTA_ERR_IO, "SHA-256 update failed");
        }
        off += n;
    }
    if (rc == 0 && tcpota_px_sha_final(st, out) < 0) {
        rc = tcpota_px_fail(dev, TCPOTA_ERR_IO, "SHA-256 final failed");
    }
    tcpota_px_sha_free(&st);
    return rc;
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
    rc = tcpota_px_slot_hash(dev, s, m->size, sha);
    if (rc < 0) {
        return rc;
    }
    return sodium_memcmp(sha, m->sha256, TCPOTA_ID_LEN) == 0;
}

/* 1 for a state whose slot the bootloader refuses without looking at it:
 * refused at an earlier reset (rejected by the application: INVALID; never
 * confirmed: ABORTED). */
static int refused_before(uint8_t state)
{
    return state != ST_NEW && state != ST_PENDING && state != ST_VALID;
}

int tcpota_px_boot_verdict(struct tcpota_posix_dev *dev, struct tcpota_posix_otadata *next)
{
    *next = dev->rec;
    if (refused_before(dev->rec.state)) {
        return 0;
    }
    switch (dev->rec.state) {
    case ST_NEW: {
        int ok = slot_ok(dev, dev->rec.boot_slot);
        if (ok == 1) {
            next->state = ST_PENDING;
        }
        return ok;
    }
    case ST_PENDING:
        /* Booted once and never confirmed: the new app failed. */
        next->state = ST_ABORTED;
        return 0;
    default: /* ST_VALID */
        return slot_ok(dev, dev->rec.boot_slot);
    }
}

int tcpota_px_boot_pick(struct tcpota_posix_dev *dev, int verdict, uint8_t *running,
                        uint8_t *rolled_back)
{
    unsigned other = dev->rec.boot_slot ^ 1u;
    int rc;

    *running = dev->rec.boot_slot;
    *rolled_back = 0;
    if (verdict) {
        return 0;
    }
    rc = slot_ok(dev, other);
    if (rc < 0) {
        return rc;
    }
    if (rc == 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INTEGRITY,
                              "no bootable slot: slot %u refused, slot %u invalid",
                              (unsigned)dev->rec.boot_slot, other);
    }
    *running = (uint8_t)other;
    *rolled_back = 1;
    return 0;
}

int tcpota_posix_boot(struct tcpota_posix_dev *dev)
{
    struct tcpota_posix_otadata next;
    int verdict, rc;
    uint8_t was;

    if (!dev || !dev->opened) {
        return dev ? tcpota_px_fail(dev, TCPOTA_ERR_STATE, "device not open") : TCPOTA_ERR_INVAL;
    }
    /* A reset loses RAM: no image in progress, no hash, nothing booted. */
    dev->booted = 0;
    dev->ota_state = OTA_IDLE;
    dev->sha_active = 0;
    rc = tcpota_px_otadata_load(dev);
    if (rc < 0) {
        return rc;
    }
    was = dev->rec.state;
    verdict = tcpota_px_boot_verdict(dev, &next);
    if (verdict < 0) {
        return verdict;
    }
    if (!tcpota_px_otadata_same(&next, &dev->rec)) {
        rc = tcpota_px_otadata_write(dev, &next);
        if (rc < 0) {
            return rc;
        }
    }
    rc = tcpota_px_boot_pick(dev, verdict, &dev->running, &dev->rolled_back);
    /* This boot's refusal, or one decided before it (a PENDING slot
     * becomes ABORTED now: refused by this boot). */
    dev->refused_now = dev->rolled_back && !refused_before(was);
    if (rc == 0) {
        dev->booted = 1;
    }
    return rc;
}

uint8_t tcpota_px_running_state(const struct tcpota_posix_dev *dev)
{
    return dev->running == dev->rec.boot_slot ? dev->rec.state : (uint8_t)ST_VALID;
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
    out->pending = tcpota_px_running_state(dev) == ST_PENDING;
    out->rolled_back = dev->rolled_back;
    out->refused_now = dev->refused_now;
    out->size = m->size;
    memcpy(out->sha256, m->sha256, TCPOTA_ID_LEN);
    memcpy(out->version, m->version, sizeof out->version);
    return 0;
}
