/* rig.c - one emulated device and one server session joined in memory
 * (see rig.h). */
#include "rig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "tcpota/crc32c.h"

static const char *const files[4] = {"ota_0.bin", "ota_1.bin", "otadata.bin", "nvs.bin"};

static int fail(struct rig *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    return -1;
}

/* A port error is a power cut while the armed fault has fired, else a bug. */
static int cut_or_fail(struct rig *r, int rc, const char *what)
{
    if (r->fault_armed && r->fault.lost) {
        return RIG_CUT;
    }
    return fail(r, "%s: %s (%s)", what, tcpota_strerror(rc), tcpota_posix_strerror_detail(&r->pd));
}

int rig_image_make(struct rig_image *im, uint32_t size, uint32_t seed, const char *version)
{
    uint32_t x = seed * 2654435761u + 1u;

    memset(im, 0, sizeof(*im));
    im->bytes = malloc(size ? size : 1);
    if (!im->bytes) {
        return -1;
    }
    for (uint32_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        im->bytes[i] = (uint8_t)(x >> 7);
    }
    im->size = size;
    snprintf(im->version, sizeof(im->version), "%s", version);
    crypto_hash_sha256(im->desc.id, im->bytes, size);
    im->desc.size = size;
    im->desc.version = im->version;
    im->desc.version_len = (uint16_t)strlen(im->version);
    return 0;
}

void rig_image_free(struct rig_image *im)
{
    free(im->bytes);
    im->bytes = NULL;
}

int rig_init(struct rig *r, const char *dir, size_t wire_cap, uint16_t chunk, uint32_t ack_iv)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        return fail(r, "mkdir %s: %s", dir, strerror(errno));
    }
    r->wire = malloc(wire_cap);
    if (!r->wire) {
        return fail(r, "out of memory");
    }
    r->wire_cap = wire_cap;
    r->chunk = chunk;
    r->ack_iv = ack_iv;
    r->healthy = 1;
    return 0;
}

void rig_close(struct rig *r)
{
    if (r->open) {
        (void)tcpota_posix_close(&r->pd);
        r->open = 0;
    }
    r->session = 0;
}

void rig_free(struct rig *r)
{
    rig_close(r);
    free(r->wire);
    r->wire = NULL;
}

int rig_create(struct rig *r, uint32_t slot_size)
{
    int rc;

    rig_close(r);
    for (int i = 0; i < 4; i++) {
        char p[300];
        snprintf(p, sizeof(p), "%s/%s", r->dir, files[i]);
        (void)unlink(p);
    }
    rc = tcpota_posix_open(&r->pd, r->dir, 1, slot_size, "0.0.0");
    if (rc < 0) {
        return fail(r, "create: %s (%s)", tcpota_strerror(rc), tcpota_posix_strerror_detail(&r->pd));
    }
    r->open = 1;
    return 0;
}

/* Hashes the first `size` bytes of slot `s` as the files hold them, and
 * compares them with each acceptable image. Returns its index or -1. */
static int slot_is_one_of(struct rig *r, unsigned s, uint32_t size,
                          const uint8_t sha_recorded[TCPOTA_ID_LEN])
{
    char p[300];
    uint8_t *buf = malloc(size ? size : 1), sha[TCPOTA_ID_LEN];
    int fd, which = -1;

    snprintf(p, sizeof(p), "%s/%s", r->dir, files[s]);
    fd = open(p, O_RDONLY);
    if (!buf || fd < 0 || pread(fd, buf, size, 0) != (ssize_t)size) {
        (void)fail(r, "cannot read %s", p);
        goto out;
    }
    crypto_hash_sha256(sha, buf, size);
    if (memcmp(sha, sha_recorded, TCPOTA_ID_LEN) != 0) {
        (void)fail(r, "running slot %u does not hash to its recorded SHA-256", s);
        goto out;
    }
    for (int i = 0; i < r->n_ok; i++) {
        if (r->ok[i]->size == size && memcmp(r->ok[i]->bytes, buf, size) == 0) {
            which = i;
            break;
        }
    }
    if (which < 0) {
        (void)fail(r, "running slot %u (%u bytes) is none of the acceptable images", s, size);
    }
out:
    if (fd >= 0) close(fd);
    free(buf);
    return which;
}

int rig_boot(struct rig *r)
{
    struct tcpota_dev_config cfg;
    int rc, verdict;

    if (!r->open) {
        rc = tcpota_posix_open(&r->pd, r->dir, 0, 0, NULL);
        if (rc < 0) {
            return fail(r, "open: %s (%s)", tcpota_strerror(rc), tcpota_posix_strerror_detail(&r->pd));
        }
        r->open = 1;
        if (r->fault_armed) {
            tcpota_posix_set_fault(&r->pd, &r->fault);
        }
    }
    r->session = 0;
    r->boots++;
    if ((rc = tcpota_posix_boot(&r->pd)) < 0) {
        return cut_or_fail(r, rc, "bootloader");
    }
    if ((rc = tcpota_posix_running(&r->pd, &r->running)) < 0 ||
        (rc = tcpota_posix_port(&r->pd, &r->port)) < 0) {
        return cut_or_fail(r, rc, "running slot");
    }
    /* What the bootloader chose must be whole: one of the known images,
     * byte for byte, never a mix and never one it did not verify. */
    if (r->n_ok) {
        r->last_which = slot_is_one_of(r, r->running.slot, r->running.size, r->running.sha256);
        if (r->last_which < 0) {
            return -1;
        }
    }
    verdict = tcpota_dev_boot(&r->port, r->healthy);
    if (verdict < 0) {
        return cut_or_fail(r, verdict, "boot check");
    }
    if (verdict == 1) {
        if ((rc = tcpota_posix_boot(&r->pd)) < 0) {
            return cut_or_fail(r, rc, "bootloader after rollback");
        }
    }
    /* After the health check: confirmed, or the previous image. */
    if ((rc = tcpota_posix_running(&r->pd, &r->running)) < 0) {
        return cut_or_fail(r, rc, "running slot");
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.port = &r->port;
    cfg.device_id = "rig-dev";
    cfg.model = "esp32";
    cfg.version = r->running.version;
    cfg.running_id = r->running.sha256;
    cfg.rx_buf = r->drx;
    cfg.rx_cap = sizeof(r->drx);
    cfg.tx_buf = r->dtx;
    cfg.tx_cap = sizeof(r->dtx);
    cfg.ack_interval = r->ack_iv;
    if ((rc = tcpota_dev_init(&r->dev, &cfg)) < 0) {
        return cut_or_fail(r, rc, "session init");
    }
    r->session = 1;
    return 0;
}

static void on_srv_event(struct rig *r, const struct tcpota_srv_event *ev, struct rig_conn_result *res)
{
    const struct tcpota_msg *m = &ev->msg;

    if (ev->type == TCPOTA_SRV_EV_HELLO) {
        res->start = ev->start;
        res->offered = ev->offered;
        if (m->u.hello.report_id) {
            if (memcmp(m->u.hello.report_id, r->img->desc.id, TCPOTA_ID_LEN) == 0 &&
                m->u.hello.report_result == TCPOTA_RESULT_CONFIRMED) {
                r->reports_confirmed_new++;
            } else {
                r->reports_other++;
            }
        }
    } else if (ev->type == TCPOTA_SRV_EV_COMPLETE) {
        if (m->u.complete.status == 0) r->completes++;
        else r->complete_failures++;
    }
}

/* Moves the server's control output, then DATA frames, onto the wire,
 * keeping at most `window` bytes ahead of what the device has read. */
static void srv_flush(struct rig *r, size_t rd, size_t window)
{
    const uint8_t *p;
    size_t n = tcpota_srv_output(&r->srv, &p);
    uint32_t off;
    uint16_t len;

    if (n && r->wire_len + n <= r->wire_cap) {
        memcpy(r->wire + r->wire_len, p, n);
        r->wire_len += n;
        tcpota_srv_output_done(&r->srv, n);
    }
    while (r->wire_len - rd < window && r->wire_len + 12u + r->chunk <= r->wire_cap &&
           tcpota_srv_data_next(&r->srv, &off, &len)) {
        uint8_t *f = r->wire + r->wire_len;
        tcpota_data_head(f, off, len);
        memcpy(f + 8, r->img->bytes + off, len);
        tcpota_put_u32(f + 8 + len, tcpota_crc32c(f, 8u + len));
        r->wire_len += 12u + len;
    }
}

int rig_connect(struct rig *r, const struct rig_conn_opts *o, struct rig_conn_result *res)
{
    struct tcpota_srv_config c;
    size_t rd = 0, up = 0, piece = o->piece ? o->piece : 1500;
    int srv_dead = 0, rc;
    static uint8_t tmp[TCPOTA_MAX_PAYLOAD + 64];

    memset(res, 0, sizeof(*res));
    memset(&c, 0, sizeof(c));
    c.image = &r->img->desc;
    c.rx_buf = r->srx;
    c.rx_cap = sizeof(r->srx);
    c.tx_buf = r->stx;
    c.tx_cap = sizeof(r->stx);
    c.chunk = r->chunk;
    if ((rc = tcpota_srv_init(&r->srv, &c)) < 0) {
        return fail(r, "server init: %s", tcpota_strerror(rc));
    }
    if (piece > sizeof(tmp)) {
        piece = sizeof(tmp);
    }
    r->wire_len = 0;
    r->rx_active = 0;
    r->rx_pos = 0;
    r->connections++;
    if ((rc = tcpota_dev_connect(&r->dev, 0)) < 0) {
        return fail(r, "connect: %s", tcpota_strerror(rc));
    }
    for (unsigned long guard = 0;; guard++) {
        const uint8_t *p;
        size_t n = tcpota_dev_output(&r->dev, &p);
        const uint8_t *in;

        if (guard > 10000000ul) {
            return fail(r, "connection does not end");
        }
        if (n && !srv_dead) {
            size_t off = 0;
            memcpy(tmp, p, n);
            if (o->flip_up >= 0 && (size_t)o->flip_up >= up && (size_t)o->flip_up < up + n) {
                tmp[(size_t)o->flip_up - up] ^= 0x20;
            }
            while (off < n) {
                struct tcpota_srv_event ev;
                int u = tcpota_srv_input(&r->srv, tmp + off, n - off, &ev);
                if (u < 0) {
                    res->srv_rc = u;
                    srv_dead = 1; /* its ERROR frame still goes out */
                    break;
                }
                on_srv_event(r, &ev, res);
                off += (size_t)u;
            }
            up += n;
        }
        if (n) {
            tcpota_dev_output_done(&r->dev, n);
        }
        srv_flush(r, rd, 65536);
        if (rd == r->wire_len) {
            break; /* both sides have said everything */
        }
        n = r->wire_len - rd;
        if (n > piece) n = piece;
        if (o->cut && rd + n > o->cut) n = o->cut > rd ? o->cut - rd : 0;
        if (n == 0) {
            break;
        }
        in = r->wire + rd;
        if (o->flip_down >= 0 && (size_t)o->flip_down >= rd && (size_t)o->flip_down < rd + n) {
            memcpy(tmp, in, n);
            tmp[(size_t)o->flip_down - rd] ^= 0x20;
            in = tmp;
        }
        struct tcpota_dev_event ev;
        rc = tcpota_dev_input(&r->dev, in, n, &ev);
        r->rx_active = r->dev.state == TCPOTA_DEV_RECEIVING;
        r->rx_pos = r->rx_active ? r->dev.pos : 0;
        if (rc < 0) {
            res->dev_rc = rc;
            break;
        }
        rd += (size_t)rc;
        if (o->cut && rd >= o->cut) {
            break;
        }
    }
    res->down = rd;
    res->up = up;
    tcpota_dev_disconnect(&r->dev);
    if (r->fault_armed && r->fault.lost) {
        return RIG_CUT;
    }
    if (!o->cut && o->flip_down < 0 && o->flip_up < 0 && (res->dev_rc < 0 || res->srv_rc < 0)) {
        /* Nothing disturbed this link: an error here is a bug. */
        r->clean_errors++;
        snprintf(r->err, sizeof(r->err), "undisturbed connection failed: device %s, server %s",
                 tcpota_strerror(res->dev_rc), tcpota_strerror(res->srv_rc));
    }
    return 0;
}

int rig_run(struct rig *r, unsigned max_steps)
{
    static const struct rig_conn_opts plain = {0, -1, -1, 0};

    for (unsigned step = 0; step < max_steps; step++) {
        struct rig_conn_result res;
        int rc;

        if (!r->session && (rc = rig_boot(r)) < 0) {
            return rc;
        }
        if ((rc = rig_connect(r, &plain, &res)) < 0) {
            return rc;
        }
        switch (r->dev.state) {
        case TCPOTA_DEV_UPDATED:
            r->session = 0; /* reboot into it */
            break;
        case TCPOTA_DEV_UP_TO_DATE:
            if (!r->running.pending && r->dev.report_result == 0 &&
                memcmp(r->running.sha256, r->img->desc.id, TCPOTA_ID_LEN) == 0) {
                return 0;
            }
            break;
        default:
            break; /* the link ended early: connect again */
        }
    }
    return fail(r, "no confirmed update after %u steps (state %d, last error %s)", max_steps,
                (int)r->dev.state, tcpota_strerror(r->dev.last_error));
}

int rig_check_final(struct rig *r, const struct rig_image *im)
{
    int n_ok = r->n_ok, which;
    const struct rig_image *ok0 = r->ok[0];

    if (!r->open || !r->session) {
        return fail(r, "final check needs a booted device");
    }
    if (r->running.pending) {
        return fail(r, "final image still pending");
    }
    if (memcmp(r->running.sha256, im->desc.id, TCPOTA_ID_LEN) != 0) {
        return fail(r, "device does not run the new image");
    }
    r->ok[0] = im;
    r->n_ok = 1;
    which = slot_is_one_of(r, r->running.slot, r->running.size, r->running.sha256);
    r->ok[0] = ok0;
    r->n_ok = n_ok;
    return which == 0 ? 0 : -1;
}

int rig_snapshot_take(struct rig *r, struct rig_snapshot *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 4; i++) {
        char p[300];
        struct stat st;
        int fd;
        snprintf(p, sizeof(p), "%s/%s", r->dir, files[i]);
        fd = open(p, O_RDONLY);
        if (fd < 0 || fstat(fd, &st) < 0 || !(s->data[i] = malloc((size_t)st.st_size + 1)) ||
            pread(fd, s->data[i], (size_t)st.st_size, 0) != st.st_size) {
            if (fd >= 0) close(fd);
            return fail(r, "snapshot of %s failed", p);
        }
        s->len[i] = (size_t)st.st_size;
        close(fd);
    }
    return 0;
}

int rig_snapshot_restore(struct rig *r, const struct rig_snapshot *s)
{
    rig_close(r);
    for (int i = 0; i < 4; i++) {
        char p[300];
        int fd;
        snprintf(p, sizeof(p), "%s/%s", r->dir, files[i]);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, s->data[i], s->len[i]) != (ssize_t)s->len[i]) {
            if (fd >= 0) close(fd);
            return fail(r, "restore of %s failed", p);
        }
        close(fd);
    }
    return 0;
}

void rig_snapshot_free(struct rig_snapshot *s)
{
    for (int i = 0; i < 4; i++) {
        free(s->data[i]);
        s->data[i] = NULL;
    }
}

size_t rig_frame_ends(const struct rig *r, size_t *ends, size_t cap)
{
    static uint8_t buf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
    struct tcpota_decoder d;
    size_t pos = 0, n = 0;

    tcpota_decoder_init(&d, buf, sizeof(buf));
    while (pos < r->wire_len && n < cap) {
        struct tcpota_frame f;
        int u = tcpota_decoder_feed(&d, r->wire + pos, r->wire_len - pos, &f);
        if (u <= 0) {
            break;
        }
        pos += (size_t)u;
        if (f.type) {
            ends[n++] = pos;
        }
    }
    return n;
}
