/*
 * inspect.c - tcpota_posix_inspect(): what a device directory would boot
 * at the next reset, found without writing a byte (see posix_port.h).
 *
 * The files are opened O_RDONLY and the bootloader's two decision steps
 * of boot.c run as they do in tcpota_posix_boot(), minus the otadata
 * write between them; the report describes the state that write would
 * leave, so it equals what tcpota_posix_running() says after a real boot.
 */
#include "posix_internal.h"

#include "tcpota/device.h"

#include <string.h>

/* Fill out->next from dev->rec, as tcpota_posix_running() would after a
 * boot that wrote `next` and picked `running`, and the otadata and slot
 * size fields of out. */
static void describe(const struct tcpota_posix_dev *dev, const struct tcpota_posix_otadata *next,
                     uint8_t running, uint8_t rolled_back, struct tcpota_posix_status *out)
{
    const struct tcpota_posix_meta *m = &dev->rec.meta[running];
    struct tcpota_posix_slot_info *si = &out->next;

    si->slot = running;
    si->pending = running == next->boot_slot && next->state == ST_PENDING;
    si->rolled_back = rolled_back;
    si->size = m->size;
    memcpy(si->sha256, m->sha256, TCPOTA_ID_LEN);
    memcpy(si->version, m->version, sizeof si->version);
    out->boot_slot = dev->rec.boot_slot;
    out->boot_state = dev->rec.state;
    out->slot_size = dev->slot_size;
}

/* The records asked for, each as it is: its length, or absent (NOENT) or
 * longer than its buffer (NOSPC), the only failures of a read of the table
 * in memory. */
static void read_records(struct tcpota_posix_dev *dev, struct tcpota_posix_record *rec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rec[i].len = tcpota_px_nvs_read(dev, rec[i].key, rec[i].buf, rec[i].cap);
    }
    dev->detail[0] = '\0'; /* a record absent or too long is no failure */
    dev->detail_rc = 0;
}

static int inspect_open(struct tcpota_posix_dev *dev, const char *dir,
                        struct tcpota_posix_status *out, struct tcpota_posix_record *rec,
                        size_t n)
{
    struct tcpota_posix_otadata next;
    uint8_t running, rolled_back;
    int rc = tcpota_px_open_readonly(dev, dir);
    int verdict = rc < 0 ? rc : tcpota_px_boot_verdict(dev, &next);

    if (verdict < 0) {
        return verdict;
    }
    rc = tcpota_px_boot_pick(dev, verdict, &running, &rolled_back);
    if (rc < 0) {
        return rc;
    }
    describe(dev, &next, running, rolled_back, out);
    rc = tcpota_px_nvs_read(dev, TCPOTA_KEY_RESUME, out->resume, sizeof out->resume);
    if (rc == TCPOTA_ERR_NOENT) {
        out->resume_len = -1;
        dev->detail[0] = '\0';
        dev->detail_rc = 0;
    } else if (rc < 0) {
        return rc;
    } else {
        out->resume_len = rc;
    }
    read_records(dev, rec, n);
    return 0;
}

int tcpota_posix_inspect_records(struct tcpota_posix_dev *dev, const char *dir,
                                 struct tcpota_posix_status *out,
                                 struct tcpota_posix_record *rec, size_t n)
{
    int rc, rc_close;

    if (!dev || !out || (n && !rec)) {
        return TCPOTA_ERR_INVAL;
    }
    for (size_t i = 0; i < n; i++) {
        rec[i].len = TCPOTA_ERR_NOENT;
    }
    memset(out, 0, sizeof *out);
    out->resume_len = -1;
    rc = inspect_open(dev, dir, out, rec, n);
    rc_close = tcpota_posix_close(dev);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        out->resume_len = -1;
        for (size_t i = 0; i < n; i++) {
            rec[i].len = TCPOTA_ERR_NOENT;
        }
        return rc;
    }
    return rc_close;
}

int tcpota_posix_inspect(struct tcpota_posix_dev *dev, const char *dir,
                         struct tcpota_posix_status *out)
{
    return tcpota_posix_inspect_records(dev, dir, out, NULL, 0);
}
