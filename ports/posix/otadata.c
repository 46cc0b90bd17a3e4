/*
 * otadata.c - the otadata record: which slot boots, its state and what
 * each slot holds (see posix_internal.h). Kept by record.c in the two
 * sectors of otadata.bin.
 */
#include "posix_internal.h"

#include <string.h>

/* otadata record: magic u32, seq u32, boot_slot u8, state u8, 2 reserved
 * bytes, then per slot {valid u8, 3 reserved, size u32, sha256[32],
 * version[32] NUL-padded}, then CRC32 of everything before it. */
#define OTADATA_MAGIC 0x4154444fu /* "ODTA" */
#define META_OFF 12u
#define META_LEN 72u
#define REC_CRC_OFF (META_OFF + 2u * META_LEN)
#define REC_LEN (REC_CRC_OFF + 4u)

static void meta_encode(uint8_t *p, const struct tcpota_posix_meta *m)
{
    memset(p, 0, META_LEN);
    p[0] = m->valid;
    tcpota_put_u32(p + 4, m->size);
    memcpy(p + 8, m->sha256, TCPOTA_ID_LEN);
    memcpy(p + 40, m->version, strnlen(m->version, TCPOTA_POSIX_VERSION_MAX));
}

static int meta_decode(const uint8_t *p, struct tcpota_posix_meta *m)
{
    if (p[0] > 1) {
        return -1;
    }
    m->valid = p[0];
    m->size = tcpota_get_u32(p + 4);
    memcpy(m->sha256, p + 8, TCPOTA_ID_LEN);
    /* NUL-padded on flash; a version of exactly 32 characters has none. */
    memcpy(m->version, p + 40, TCPOTA_POSIX_VERSION_MAX);
    m->version[TCPOTA_POSIX_VERSION_MAX] = '\0';
    return 0;
}

/* The body only: magic, seq and CRC are record.c's. */
static void body_encode(uint8_t out[REC_LEN], const struct tcpota_posix_otadata *r)
{
    memset(out, 0, REC_LEN);
    out[8] = r->boot_slot;
    out[9] = r->state;
    meta_encode(out + META_OFF, &r->meta[0]);
    meta_encode(out + META_OFF + META_LEN, &r->meta[1]);
}

/* Returns 0 for a well-formed record, -1 for anything else (erased, torn,
 * garbage): a CRC match alone does not make out-of-range fields usable. */
static int rec_decode(const uint8_t in[REC_LEN], struct tcpota_posix_otadata *r)
{
    if (!tcpota_px_rec_framed(in, REC_LEN, OTADATA_MAGIC) || in[8] > 1 || in[9] > ST_ABORTED) {
        return -1;
    }
    r->seq = tcpota_get_u32(in + PX_REC_SEQ_OFF);
    r->boot_slot = in[8];
    r->state = in[9];
    if (meta_decode(in + META_OFF, &r->meta[0]) < 0 ||
        meta_decode(in + META_OFF + META_LEN, &r->meta[1]) < 0) {
        return -1;
    }
    return 0;
}

static int rec_check(const uint8_t *p, size_t len)
{
    struct tcpota_posix_otadata r;

    return len == REC_LEN && rec_decode(p, &r) == 0;
}

int tcpota_px_otadata_load(struct tcpota_posix_dev *dev)
{
    uint8_t b0[REC_LEN], b1[REC_LEN];
    uint8_t *const buf[2] = {b0, b1};
    uint32_t seq;
    int s = tcpota_px_rec_load(dev, &dev->otadata, buf, REC_LEN, rec_check, &seq);

    if (s == TCPOTA_ERR_NOENT) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "otadata.bin: no valid record in either sector");
    }
    if (s < 0) {
        return s;
    }
    rec_decode(buf[s], &dev->rec);
    dev->rec_sector = (uint8_t)s;
    return 0;
}

int tcpota_px_otadata_write(struct tcpota_posix_dev *dev, const struct tcpota_posix_otadata *next)
{
    uint8_t buf[REC_LEN];
    int s;

    body_encode(buf, next);
    s = tcpota_px_rec_commit(dev, &dev->otadata, dev->rec_sector, dev->rec.seq, OTADATA_MAGIC, buf,
                             sizeof buf);
    if (s < 0) {
        return s;
    }
    dev->rec = *next;
    dev->rec.seq++;
    dev->rec_sector = (uint8_t)s;
    return 0;
}

/* Compared encoded, as struct padding and the bytes after a version's NUL
 * do not count. */
int tcpota_px_otadata_same(const struct tcpota_posix_otadata *a,
                           const struct tcpota_posix_otadata *b)
{
    uint8_t ea[REC_LEN], eb[REC_LEN];

    body_encode(ea, a);
    body_encode(eb, b);
    return memcmp(ea, eb, REC_LEN) == 0;
}

int tcpota_px_otadata_format(struct tcpota_posix_dev *dev, struct tcpota_flash *fl,
                             const char *factory)
{
    struct tcpota_posix_otadata r;
    uint8_t buf[REC_LEN];
    int s;

    memset(&r, 0, sizeof r);
    r.boot_slot = 0;
    r.state = ST_VALID;
    r.meta[0].valid = 1;
    crypto_hash_sha256(r.meta[0].sha256, (const uint8_t *)"", 0);
    memcpy(r.meta[0].version, factory, strlen(factory));
    body_encode(buf, &r);
    /* No current record: this one gets seq 1 in sector 0. */
    s = tcpota_px_rec_commit(dev, fl, -1, 0, OTADATA_MAGIC, buf, sizeof buf);
    return s < 0 ? s : 0;
}
