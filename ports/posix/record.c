/*
 * record.c - records in two alternating sectors (see posix_internal.h).
 *
 * The one mechanism behind otadata.bin and nvs.bin: each holds its
 * current record in sector 0 or 1, framed by a magic, a sequence number
 * and a CRC32; a change is written whole to the other sector, so a power
 * cut at any point leaves the previous record intact and readable.
 */
#include "posix_internal.h"

/* CRC-32 (IEEE 802.3, reflected). Bitwise: records are at most a sector,
 * written rarely, and a table would cost 1 KiB for nothing. */
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

int tcpota_px_rec_framed(const uint8_t *p, size_t len, uint32_t magic)
{
    return len >= PX_REC_BODY_OFF + 4u && tcpota_get_u32(p) == magic &&
           tcpota_get_u32(p + len - 4u) == crc32(p, len - 4u);
}

void tcpota_px_rec_seal(uint8_t *buf, size_t len, uint32_t magic, uint32_t seq)
{
    tcpota_put_u32(buf, magic);
    tcpota_put_u32(buf + PX_REC_SEQ_OFF, seq);
    tcpota_put_u32(buf + len - 4u, crc32(buf, len - 4u));
}

int tcpota_px_rec_load(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, uint8_t *const buf[2],
                       size_t len, tcpota_px_rec_check *check, uint32_t *seq)
{
    uint32_t s_seq[2] = {0, 0};
    int ok[2];
    int cur;

    for (unsigned s = 0; s < 2; s++) {
        int rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_read(fl, s * SECTOR, buf[s], len));
        if (rc < 0) {
            return rc;
        }
        ok[s] = check(buf[s], len);
        if (ok[s]) {
            s_seq[s] = tcpota_get_u32(buf[s] + PX_REC_SEQ_OFF);
        }
    }
    if (!ok[0] && !ok[1]) {
        return TCPOTA_ERR_NOENT;
    }
    cur = (!ok[0] || (ok[1] && seq_newer(s_seq[1], s_seq[0]))) ? 1 : 0;
    *seq = s_seq[cur];
    return cur;
}

int tcpota_px_rec_commit(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, int cur,
                         uint32_t seq, uint32_t magic, uint8_t *buf, size_t len)
{
    unsigned target = cur < 0 ? 0u : (unsigned)cur ^ 1u;
    uint32_t off = (uint32_t)target * SECTOR;
    int rc;

    tcpota_px_rec_seal(buf, len, magic, seq + 1u);
    rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_erase(fl, off, SECTOR));
    if (rc == 0) {
        rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_prog(fl, off, buf, len));
    }
    if (rc == 0) {
        rc = tcpota_px_flash_rc(dev, fl, tcpota_flash_sync(fl));
    }
    return rc < 0 ? rc : (int)target;
}
