/* device.c - device session state machine (see device.h). */
#include "tcpota/device.h"
#include "tcpota/crc32c.h"

#include <string.h>

#define REC_VERSION 1
#define RESUME_LEN (1 + TCPOTA_ID_LEN + 8 + 4)
#define LAST_LEN (1 + TCPOTA_ID_LEN + 4 + 4)
#define COUNTER_LEN (1 + 4 + 4) /* frozen with REC_VERSION 1: device.h, TCPOTA_KEY_COUNTER */
#define REPORT_LEN (1 + TCPOTA_ID_LEN + 2 + 4)
#define BAD_LEN (1 + TCPOTA_ID_LEN + 1 + 1 + 4) /* version, id, reason, count, CRC */
#define BAD_REASON (1 + TCPOTA_ID_LEN)
#define BAD_COUNT (2 + TCPOTA_ID_LEN)
/* A boot failure may be a power cut between the first boot and the health
 * check's verdict, and an integrity failure bytes altered on the way (plain
 * TCP) or a flash read error, neither the image's fault: such an image is
 * declined from its second failure of that kind on (one tampered transfer
 * no longer denies a device the genuine release for good). Any other
 * failure is final at once. */
#define FAILURES_FINAL 2
#define BAD_SHORT_ID 4 /* id bytes a DECLINE's sentence shows, in hex */

/* ---- persistent records: version byte, fields, CRC32C ---------------- */

/* Checks the n bytes at buf as a record of len bytes. Returns 0, or
 * TCPOTA_ERR_NOENT for a torn or foreign record: as if absent. */
static int rec_check(const uint8_t *buf, size_t n, size_t len)
{
    if (n != len || buf[0] != REC_VERSION ||
        tcpota_crc32c(buf, len - 4) != tcpota_get_u32(buf + len - 4)) {
        return TCPOTA_ERR_NOENT;
    }
    return 0;
}

static int rec_load(const struct tcpota_port *p, const char *key, uint8_t *buf, size_t len)
{
    int n = p->kv_get(p->ctx, key, buf, len);

    return n < 0 ? n : rec_check(buf, (size_t)n, len);
}

int tcpota_dev_resume_parse(const uint8_t *rec, size_t len, uint32_t slot_size,
                            struct tcpota_dev_resume *out)
{
    if (!out) {
        return TCPOTA_ERR_INVAL;
    }
    memset(out, 0, sizeof(*out));
    if (!rec || rec_check(rec, len, RESUME_LEN) < 0) {
        return TCPOTA_ERR_NOENT;
    }
    out->size = tcpota_get_u32(rec + 1 + TCPOTA_ID_LEN);
    out->offset = tcpota_get_u32(rec + 5 + TCPOTA_ID_LEN);
    /* Values this code never writes: another build's record, or a smaller
     * partition now. */
    if (out->offset > out->size || out->offset % TCPOTA_SECTOR_SIZE || out->size > slot_size) {
        out->size = out->offset = 0;
        return TCPOTA_ERR_NOENT;
    }
    memcpy(out->id, rec + 1, TCPOTA_ID_LEN);
    out->valid = 1;
    return 0;
}

int tcpota_dev_resume_stale(const struct tcpota_dev_resume *r, const uint8_t *running_id)
{
    return r && r->valid && running_id && memcmp(r->id, running_id, TCPOTA_ID_LEN) == 0;
}

static int rec_save(const struct tcpota_port *p, const char *key, uint8_t *buf, size_t len)
{
    buf[0] = REC_VERSION;
    tcpota_put_u32(buf + len - 4, tcpota_crc32c(buf, len - 4));
    return p->kv_set(p->ctx, key, buf, len);
}

static int resume_save(struct tcpota_dev *d, uint32_t offset)
{
    uint8_t b[RESUME_LEN];
    int rc;

    memcpy(b + 1, d->image, TCPOTA_ID_LEN);
    tcpota_put_u32(b + 1 + TCPOTA_ID_LEN, d->size);
    tcpota_put_u32(b + 5 + TCPOTA_ID_LEN, offset);
    rc = rec_save(d->cfg.port, TCPOTA_KEY_RESUME, b, sizeof(b));
    if (rc < 0) {
        return rc;
    }
    d->resume.valid = 1;
    memcpy(d->resume.id, d->image, TCPOTA_ID_LEN);
    d->resume.size = d->size;
    d->resume.offset = offset;
    d->ckpt = offset;
    return 0;
}

static int resume_drop(struct tcpota_dev *d)
{
    int rc = d->cfg.port->kv_erase(d->cfg.port->ctx, TCPOTA_KEY_RESUME);

    d->resume.valid = 0;
    return rc == TCPOTA_ERR_NOENT ? 0 : rc;
}

static int report_save(const struct tcpota_port *p, const uint8_t *id, uint16_t result)
{
    uint8_t b[REPORT_LEN];

    memcpy(b + 1, id, TCPOTA_ID_LEN);
    tcpota_put_u16(b + 1 + TCPOTA_ID_LEN, result);
    return rec_save(p, TCPOTA_KEY_REPORT, b, sizeof(b));
}

/* 1 when the report kept says image id was confirmed: how a boot after a
 * cut that came once the image was marked valid knows it (tcpota_dev_boot). */
static int confirmed_is(const struct tcpota_port *p, const uint8_t *id)
{
    uint8_t b[REPORT_LEN];

    return rec_load(p, TCPOTA_KEY_REPORT, b, sizeof(b)) == 0 &&
           memcmp(b + 1, id, TCPOTA_ID_LEN) == 0 &&
           tcpota_get_u16(b + 1 + TCPOTA_ID_LEN) == TCPOTA_RESULT_CONFIRMED;
}

static int counter_load(const struct tcpota_port *p, uint32_t *out)
{
    uint8_t b[COUNTER_LEN];
    int rc = rec_load(p, TCPOTA_KEY_COUNTER, b, sizeof(b));

    *out = 0;
    if (rc == TCPOTA_ERR_NOENT) {
        return 0;
    }
    if (rc == 0) {
        *out = tcpota_get_u32(b + 1);
    }
    return rc;
}

/* The counter only goes up: a confirmed image's counter becomes the floor. */
static int counter_raise(const struct tcpota_port *p, uint32_t counter)
{
    uint8_t b[COUNTER_LEN];
    uint32_t cur;
    int rc = counter_load(p, &cur);

    if (rc < 0 || counter <= cur) {
        return rc;
    }
    tcpota_put_u32(b + 1, counter);
    return rec_save(p, TCPOTA_KEY_COUNTER, b, sizeof(b));
}

/* ---- failed-image memory --------------------------------------------- */

/* Loads the record into b (all zero when absent or torn: no reason). */
static int bad_load(const struct tcpota_port *p, uint8_t b[BAD_LEN])
{
    int rc = rec_load(p, TCPOTA_KEY_BAD, b, BAD_LEN);

    if (rc == TCPOTA_ERR_NOENT) {
        memset(b, 0, BAD_LEN);
        return 0;
    }
    return rc;
}

/* Remembers `id` as failed for `reason`; failures of the same image for
 * the same reason are counted (up to FAILURES_FINAL). */
static int bad_save(const struct tcpota_port *p, const uint8_t *id, enum tcpota_dev_bad reason)
{
    uint8_t b[BAD_LEN];
    int rc = bad_load(p, b);

    if (rc < 0) {
        return rc;
    }
    if (b[BAD_REASON] != reason || memcmp(b + 1, id, TCPOTA_ID_LEN) != 0) {
        b[BAD_COUNT] = 0;
    }
    if (b[BAD_COUNT] < FAILURES_FINAL) {
        b[BAD_COUNT]++;
    }
    memcpy(b + 1, id, TCPOTA_ID_LEN);
    b[BAD_REASON] = (uint8_t)reason;
    return rec_save(p, TCPOTA_KEY_BAD, b, BAD_LEN);
}

static int bad_forget(const struct tcpota_port *p)
{
    int rc = p->kv_erase(p->ctx, TCPOTA_KEY_BAD);

    return rc == TCPOTA_ERR_NOENT ? 0 : rc;
}

int tcpota_dev_bad_image(const struct tcpota_port *p, uint8_t id[TCPOTA_ID_LEN])
{
    uint8_t b[BAD_LEN];
    int rc = bad_load(p, b);

    if (rc < 0) {
        return rc;
    }
    if ((b[BAD_REASON] == TCPOTA_BAD_BOOT_FAILED || b[BAD_REASON] == TCPOTA_BAD_INTEGRITY) &&
        b[BAD_COUNT] < FAILURES_FINAL) {
        return TCPOTA_BAD_NONE; /* one more chance */
    }
    if (id) {
        memcpy(id, b + 1, TCPOTA_ID_LEN);
    }
    return b[BAD_REASON];
}

int tcpota_dev_bad_text(const uint8_t id[TCPOTA_ID_LEN], int reason,
                        char out[TCPOTA_DEV_BAD_TEXT_MAX])
{
    static const char *const why[] = {
        " failed before",
        " failed its integrity check before",
        " was refused by this device's storage before", /* ota_end, or set_boot (anti-rollback) */
        " failed its health check before",
        " did not boot before",
    };
    static const char wait[] = "; waiting for another image";
    size_t n = sizeof("image ") - 1, k;

    if (reason < 0 || reason > TCPOTA_BAD_BOOT_FAILED) {
        reason = TCPOTA_BAD_NONE;
    }
    memcpy(out, "image ", n);
    tcpota_hex(out + n, id, BAD_SHORT_ID);
    n += 2 * BAD_SHORT_ID;
    k = strlen(why[reason]);
    memcpy(out + n, why[reason], k);
    memcpy(out + n + k, wait, sizeof(wait));
    return (int)(n + k + sizeof(wait) - 1);
}

/* ---- boot ------------------------------------------------------------ */

int tcpota_dev_boot(const struct tcpota_port *p, int healthy)
{
    struct tcpota_boot_state st;
    uint8_t last[LAST_LEN];
    int have_last, final_now, rc;

    if (!p) {
        return TCPOTA_ERR_INVAL;
    }
    memset(&st, 0, sizeof(st));
    rc = p->boot_state(p->ctx, &st);
    if (rc < 0) {
        return rc;
    }
    rc = rec_load(p, TCPOTA_KEY_LAST, last, sizeof(last));
    if (rc < 0 && rc != TCPOTA_ERR_NOENT) {
        return rc;
    }
    have_last = rc == 0;
    /* No pending state in this port's bootloader, and the last image set to
     * boot runs: final, so confirmed now (its report, the counter), as a
     * healthy pending one is, with nothing to mark. Without it a review
     * found the counter never rose on such devices. So is an image whose
     * confirmed report was kept and that the bootloader did not undo: a
     * cut came after its mark (below), before the rest. */
    final_now = !st.pending && have_last &&
                ((st.running_known && memcmp(st.running_id, last + 1, TCPOTA_ID_LEN) == 0) ||
                 (!st.rolled_back && confirmed_is(p, last + 1)));
    if (final_now) {
        healthy = 1;
    }
    if (st.pending || final_now) {
        uint16_t result = healthy ? TCPOTA_RESULT_CONFIRMED : TCPOTA_RESULT_ROLLED_BACK;
        /* Report first, forget second: a cut in between repeats the same
         * decision at the next boot. */
        if (have_last && (rc = report_save(p, last + 1, result)) < 0) {
            return rc;
        }
        /* Remembered before the record that names it goes: the server may
         * offer the rolled-back image again at once. */
        if (have_last && !healthy && (rc = bad_save(p, last + 1, TCPOTA_BAD_ROLLED_BACK)) < 0) {
            return rc;
        }
        /* A bootloader undoes a pending image at the next reset (ESP-IDF:
         * ABORTED, the old one boots), and LAST is what a boot failure's
         * report needs: nothing that holds only for a confirmed image
         * comes before the mark. A trial's cut between the counter and the
         * mark left a rolled-back device with a CONFIRMED report and the
         * new image's counter. A cut after the mark finds it by its report
         * (above). Confirming an image forgets the failed one. */
        if (st.pending && healthy && (rc = p->mark_valid(p->ctx)) < 0) {
            return rc;
        }
        if (have_last && healthy && (rc = bad_forget(p)) < 0) {
            return rc;
        }
        /* The counter goes up before the record that carries it is erased:
         * a cut in between must not confirm the image with the old floor. */
        if (healthy && have_last &&
            (rc = counter_raise(p, tcpota_get_u32(last + 1 + TCPOTA_ID_LEN))) < 0) {
            return rc;
        }
        if (have_last && (rc = p->kv_erase(p->ctx, TCPOTA_KEY_LAST)) < 0) {
            return rc;
        }
        if (healthy) {
            return 0;
        }
        rc = p->mark_invalid(p->ctx);
        return rc < 0 ? rc : 1;
    }
    if (st.rolled_back && have_last) {
        uint8_t bad[BAD_LEN];

        /* The health check rejected it already (a cut inside the reject,
         * before the record went): that final verdict and its report stay;
         * as a boot failure it got one more download. */
        if ((rc = bad_load(p, bad)) < 0) {
            return rc;
        }
        if (bad[BAD_REASON] == TCPOTA_BAD_ROLLED_BACK &&
            memcmp(bad + 1, last + 1, TCPOTA_ID_LEN) == 0) {
            return p->kv_erase(p->ctx, TCPOTA_KEY_LAST);
        }
        /* Counted after the record that names it goes: a cut in between
         * gives the image a chance too many, never one too few. */
        if ((rc = report_save(p, last + 1, TCPOTA_RESULT_BOOT_FAILED)) < 0 ||
            (rc = p->kv_erase(p->ctx, TCPOTA_KEY_LAST)) < 0) {
            return rc;
        }
        return bad_save(p, last + 1, TCPOTA_BAD_BOOT_FAILED);
    }
    return 0;
}

/* ---- setup ----------------------------------------------------------- */

static int cfg_str_ok(const char *s, size_t max)
{
    return s && tcpota_printable(s, strlen(s), 1, max);
}

int tcpota_dev_init(struct tcpota_dev *d, const struct tcpota_dev_config *cfg)
{
    const struct tcpota_port *p = cfg ? cfg->port : NULL;
    uint8_t b[RESUME_LEN > REPORT_LEN ? RESUME_LEN : REPORT_LEN];
    int rc;

    if (!d || !p || !p->ota_begin || !p->ota_resume || !p->ota_write || !p->ota_read ||
        !p->ota_end || !p->ota_abort || !p->set_boot || !p->kv_get || !p->kv_set ||
        !p->kv_erase || !p->sha256_begin || !p->sha256_update || !p->sha256_finish) {
        return TCPOTA_ERR_INVAL;
    }
    if (!cfg_str_ok(cfg->device_id, TCPOTA_MAX_STR) || !cfg_str_ok(cfg->model, TCPOTA_MAX_NAME) ||
        !cfg_str_ok(cfg->version, TCPOTA_MAX_NAME) || !cfg->tx_buf || cfg->tx_cap < TCPOTA_DEV_TX_MIN ||
        (cfg->ack_interval % TCPOTA_SECTOR_SIZE) != 0) {
        return TCPOTA_ERR_INVAL;
    }
    if ((cfg->n_trusted_keys && (!cfg->trusted_keys || !p->ed25519_verify)) ||
        (cfg->secret && (cfg->secret_len < TCPOTA_SECRET_MIN || cfg->secret_len > TCPOTA_SECRET_MAX ||
                         !p->hmac_sha256))) {
        return TCPOTA_ERR_INVAL;
    }
    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
    if (!d->cfg.ack_interval) d->cfg.ack_interval = TCPOTA_DEV_ACK_DEFAULT;
    if (!d->cfg.keepalive_ms) d->cfg.keepalive_ms = 10000;
    if (!d->cfg.timeout_ms) d->cfg.timeout_ms = 30000;
    rc = tcpota_decoder_init(&d->dec, cfg->rx_buf, cfg->rx_cap);
    if (rc < 0) {
        return rc;
    }
    rc = p->kv_get(p->ctx, TCPOTA_KEY_RESUME, b, RESUME_LEN);
    if (rc >= 0) {
        (void)tcpota_dev_resume_parse(b, (size_t)rc, p->slot_size, &d->resume);
    } else if (rc != TCPOTA_ERR_NOENT) {
        return rc;
    }
    /* A cut after the image was set to boot and before its resume record
     * went (on_complete) left a record of the image that now runs: every
     * session would start from a resume point of it (an offer of it is
     * declined as running anyway). */
    if (tcpota_dev_resume_stale(&d->resume, cfg->running_id) && (rc = resume_drop(d)) < 0) {
        return rc;
    }
    if ((rc = counter_load(p, &d->security_counter)) < 0 && rc != TCPOTA_ERR_NOENT) {
        return rc;
    }
    rc = rec_load(p, TCPOTA_KEY_REPORT, b, REPORT_LEN);
    if (rc == 0) {
        memcpy(d->report_id, b + 1, TCPOTA_ID_LEN);
        d->report_result = tcpota_get_u16(b + 1 + TCPOTA_ID_LEN);
    } else if (rc != TCPOTA_ERR_NOENT) {
        return rc;
    }
    return 0;
}

/* ---- output ---------------------------------------------------------- */

/* Every message this side sends starts here, all its fields absent: one
 * call where each sender had a memset of its own (smaller device code). */
static void msg_new(struct tcpota_msg *m, uint8_t type)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
}

static int queue(struct tcpota_dev *d, const struct tcpota_msg *m)
{
    int n;

    if (d->tx_head) {
        memmove(d->cfg.tx_buf, d->cfg.tx_buf + d->tx_head, d->tx_len);
        d->tx_head = 0;
    }
    n = tcpota_msg_encode(m, d->cfg.tx_buf + d->tx_len, d->cfg.tx_cap - d->tx_len);
    if (n < 0) {
        return n;
    }
    d->tx_urgent = (uint8_t)((d->tx_len ? d->tx_urgent : 0) | (m->type != TCPOTA_T_ACK));
    d->tx_len += (size_t)n;
    return 0;
}

static struct tcpota_bytes str_bytes(const char *s)
{
    struct tcpota_bytes b;

    b.ptr = (const uint8_t *)s;
    b.len = (uint16_t)strlen(s);
    return b;
}

/* Keeps the reason for tcpota_dev_reason(); why may be d->reason itself. */
static void set_reason(struct tcpota_dev *d, const char *why)
{
    size_t n = strlen(why);

    if (n > TCPOTA_MAX_MESSAGE) {
        n = TCPOTA_MAX_MESSAGE;
    }
    memmove(d->reason, why, n);
    d->reason[n] = 0;
}

/* Tells the server why this side gives up, then returns `code`. */
static int fail(struct tcpota_dev *d, int code, const char *why)
{
    struct tcpota_msg m;

    set_reason(d, why);
    msg_new(&m, TCPOTA_T_ERROR);
    m.u.error.code = (uint16_t)-code;
    m.u.error.message = str_bytes(d->reason);
    (void)queue(d, &m); /* best effort: the connection ends either way */
    d->last_error = code;
    return code;
}

int tcpota_dev_connect(struct tcpota_dev *d, uint32_t now_ms)
{
    struct tcpota_msg m;
    int rc;

    tcpota_decoder_reset(&d->dec);
    d->tx_head = d->tx_len = 0;
    d->state = TCPOTA_DEV_HELLO_SENT;
    d->now = d->last_rx = d->last_tx = d->last_progress = now_ms;
    d->last_error = 0;
    d->error_retry_after_s = 0;
    d->reason[0] = 0;
    d->challenged = 0;
    d->welcomed = 0;
    d->server_error = 0;
    d->auth_announced = 0;
    d->bad_reason = TCPOTA_BAD_NONE;
    msg_new(&m, TCPOTA_T_HELLO);
    m.u.hello.proto_min = TCPOTA_PROTO_VERSION;
    m.u.hello.proto_max = TCPOTA_PROTO_VERSION;
    m.u.hello.device_id = str_bytes(d->cfg.device_id);
    m.u.hello.model = str_bytes(d->cfg.model);
    m.u.hello.version = str_bytes(d->cfg.version);
    m.u.hello.running_id = d->cfg.running_id;
    m.u.hello.features = d->cfg.secret ? TCPOTA_F_AUTH : 0;
    m.u.hello.max_payload = (uint16_t)(d->dec.cap - TCPOTA_FRAME_OVERHEAD);
    if (d->resume.valid) {
        m.u.hello.resume_id = d->resume.id;
        m.u.hello.resume_size = d->resume.size;
        m.u.hello.resume_offset = d->resume.offset;
    }
    if (d->report_result) {
        m.u.hello.report_id = d->report_id;
        m.u.hello.report_result = d->report_result;
    }
    rc = queue(d, &m);
    d->report_sent = rc == 0 && d->report_result;
    return rc;
}

int tcpota_dev_set_binding(struct tcpota_dev *d, const uint8_t *binding)
{
    d->bound = binding != NULL;
    if (binding) {
        memcpy(d->binding, binding, TCPOTA_TLS_BINDING_LEN);
    } else {
        memset(d->binding, 0, TCPOTA_TLS_BINDING_LEN);
    }
    return 0;
}

/* The last whole sector written: where a resume point may lie. */
static uint32_t sector_point(const struct tcpota_dev *d)
{
    return d->pos - d->pos % TCPOTA_SECTOR_SIZE;
}

int tcpota_dev_keep(struct tcpota_dev *d)
{
    uint32_t point = sector_point(d);
    struct tcpota_msg a;
    int rc;

    /* Every byte below pos went through ota_write: any whole sector of
     * them may be a resume point. Not of a whole image: finish() set it to
     * boot (a review: its record's drop failing, a resume rewrote the slot
     * set to boot). */
    if (d->state != TCPOTA_DEV_RECEIVING || point <= d->ckpt || d->pos == d->size) {
        return 0;
    }
    if ((rc = resume_save(d, point)) < 0) {
        return rc;
    }
    msg_new(&a, TCPOTA_T_ACK);
    a.u.ack.offset = point;
    (void)queue(d, &a); /* a skipped ACK is covered by the next one */
    return 1;
}

void tcpota_dev_disconnect(struct tcpota_dev *d)
{
    (void)tcpota_dev_set_binding(d, NULL);
    /* What this connection wrote is kept to its last whole sector, not
     * only to its last checkpoint (a link cut before each checkpoint kept
     * nothing). Its ACK goes with the rest of the output: the connection
     * is gone. Best effort: if the storage refuses, the point before stands. */
    (void)tcpota_dev_keep(d);
    if (d->state == TCPOTA_DEV_HELLO_SENT || d->state == TCPOTA_DEV_RECEIVING) {
        d->state = TCPOTA_DEV_IDLE;
    }
    d->tx_head = d->tx_len = 0;
    tcpota_decoder_reset(&d->dec);
}

size_t tcpota_dev_output(const struct tcpota_dev *d, const uint8_t **out)
{
    *out = d->cfg.tx_buf + d->tx_head;
    return d->tx_len;
}

int tcpota_dev_output_urgent(const struct tcpota_dev *d)
{
    return d->tx_len && d->tx_urgent;
}

void tcpota_dev_output_done(struct tcpota_dev *d, size_t n)
{
    if (n > d->tx_len) {
        n = d->tx_len;
    }
    d->tx_head += n;
    d->tx_len -= n;
    if (!d->tx_len) {
        d->tx_head = 0;
    }
    if (n) {
        d->last_tx = d->now;
    }
}

int tcpota_dev_tick(struct tcpota_dev *d, uint32_t now_ms)
{
    d->now = now_ms;
    if (d->state != TCPOTA_DEV_HELLO_SENT && d->state != TCPOTA_DEV_RECEIVING) {
        return 0;
    }
    if ((uint32_t)(now_ms - d->last_rx) >= d->cfg.timeout_ms ||
        (uint32_t)(now_ms - d->last_progress) / TCPOTA_DEV_STALL_TIMES >= d->cfg.timeout_ms) {
        d->last_error = TCPOTA_ERR_TIMEDOUT;
        return TCPOTA_ERR_TIMEDOUT;
    }
    if ((uint32_t)(now_ms - d->last_tx) >= d->cfg.keepalive_ms && d->tx_len == 0) {
        struct tcpota_msg m;
        msg_new(&m, TCPOTA_T_PING);
        m.u.ping.token = ++d->ping_token;
        d->last_tx = now_ms; /* one PING per interval even if not yet sent */
        return queue(d, &m);
    }
    return 0;
}

void tcpota_dev_get_transfer(const struct tcpota_dev *d, struct tcpota_dev_transfer *t)
{
    t->state = d->state;
    t->image_id = d->image;
    t->version = (const char *)d->version;
    t->size = d->size;
    t->pos = d->pos;
    t->stale_frames = d->stale_frames;
    t->last_error = d->last_error;
    t->retry_after_s = d->error_retry_after_s;
    t->report_pending = d->report_result != 0;
    t->server_error = d->server_error;
    t->resume = d->resume;
}

int tcpota_dev_stalled(const struct tcpota_dev *d)
{
    return (uint32_t)(d->now - d->last_rx) < d->cfg.timeout_ms;
}

const char *tcpota_dev_reason(const struct tcpota_dev *d)
{
    return d->reason;
}

uint32_t tcpota_dev_next_tick(const struct tcpota_dev *d)
{
    uint32_t rx_left, tx_left;

    if (d->state != TCPOTA_DEV_HELLO_SENT && d->state != TCPOTA_DEV_RECEIVING) {
        return d->cfg.keepalive_ms;
    }
    rx_left = d->cfg.timeout_ms - (uint32_t)(d->now - d->last_rx);
    tx_left = d->cfg.keepalive_ms - (uint32_t)(d->now - d->last_tx);
    if ((uint32_t)(d->now - d->last_rx) >= d->cfg.timeout_ms) rx_left = 0;
    if ((uint32_t)(d->now - d->last_tx) >= d->cfg.keepalive_ms) tx_left = 0;
    return rx_left < tx_left ? rx_left : tx_left;
}

/* ---- offer, data, verification --------------------------------------- */

static int decline(struct tcpota_dev *d, const uint8_t *id, int reason, const char *why,
                   struct tcpota_dev_event *ev)
{
    struct tcpota_msg m;

    set_reason(d, why);
    msg_new(&m, TCPOTA_T_DECLINE);
    m.u.decline.image_id = id;
    m.u.decline.reason = (uint16_t)-reason;
    m.u.decline.message = str_bytes(d->reason);
    d->state = TCPOTA_DEV_DECLINED;
    d->last_error = reason;
    ev->type = TCPOTA_DEV_EV_DECLINED;
    ev->error = reason;
    return queue(d, &m);
}

/* Declines an offer of the image remembered as bad (TCPOTA_KEY_BAD), with
 * the reason in words (state DECLINED then). Returns 0 or an error. A
 * record that cannot be read blocks nothing. */
static int decline_known_bad(struct tcpota_dev *d, const uint8_t *id, struct tcpota_dev_event *ev)
{
    uint8_t bad[TCPOTA_ID_LEN];
    char why[TCPOTA_DEV_BAD_TEXT_MAX];
    int reason = tcpota_dev_bad_image(d->cfg.port, bad);

    if (reason <= TCPOTA_BAD_NONE || memcmp(bad, id, TCPOTA_ID_LEN) != 0) {
        return 0;
    }
    (void)tcpota_dev_bad_text(id, reason, why);
    d->bad_reason = (uint8_t)reason;
    memcpy(d->bad_id, id, TCPOTA_ID_LEN);
    return decline(d, id, TCPOTA_ERR_FAILED_BEFORE, why, ev);
}

static int on_offer(struct tcpota_dev *d, const struct tcpota_msg *m, struct tcpota_dev_event *ev)
{
    const struct tcpota_port *p = d->cfg.port;
    struct tcpota_offer_info info;
    struct tcpota_msg a;
    uint32_t start = 0;
    int rc = decline_known_bad(d, m->u.offer.image_id, ev);

    if (rc < 0 || d->state == TCPOTA_DEV_DECLINED) {
        return rc;
    }
    if (m->u.offer.size > p->slot_size) {
        rc = decline(d, m->u.offer.image_id, TCPOTA_ERR_NOSPC, "image larger than the slot", ev);
        ev->size = m->u.offer.size; /* the caller can say both sizes */
        return rc;
    }
    if (d->cfg.running_id &&
        memcmp(d->cfg.running_id, m->u.offer.image_id, TCPOTA_ID_LEN) == 0) {
        return decline(d, m->u.offer.image_id, TCPOTA_ERR_REFUSED, TCPOTA_DECLINE_RUNNING_IT, ev);
    }
    info.image_id = m->u.offer.image_id;
    info.size = m->u.offer.size;
    info.version = (const char *)m->u.offer.version.ptr;
    info.version_len = m->u.offer.version.len;
    info.manifest = m->u.offer.manifest.ptr;
    info.manifest_len = m->u.offer.manifest.len;
    d->image_counter = 0;
    if (d->cfg.n_trusted_keys) {
        struct tcpota_trust t;
        struct tcpota_manifest man;
        t.keys = d->cfg.trusted_keys;
        t.nkeys = d->cfg.n_trusted_keys;
        t.verify = p->ed25519_verify;
        t.verify_ctx = p->ctx;
        t.model = d->cfg.model;
        t.security_counter = d->security_counter;
        rc = tcpota_manifest_check(&t, m, &man, d->reason, sizeof(d->reason));
        if (rc < 0) {
            return decline(d, m->u.offer.image_id, rc, d->reason, ev);
        }
        d->image_counter = man.security_counter;
    }
    if (strlen(d->cfg.version) == m->u.offer.version.len &&
        memcmp(d->cfg.version, m->u.offer.version.ptr, m->u.offer.version.len) == 0) {
        return decline(d, m->u.offer.image_id, TCPOTA_ERR_REFUSED,
                       TCPOTA_DECLINE_RUNNING_VERSION, ev);
    }
    if (p->verify_offer && (rc = p->verify_offer(p->ctx, &info)) < 0) {
        return decline(d, m->u.offer.image_id, rc, "offer refused by the device's checks", ev);
    }
    memcpy(d->image, m->u.offer.image_id, TCPOTA_ID_LEN);
    memcpy(d->version, m->u.offer.version.ptr, m->u.offer.version.len);
    d->version[m->u.offer.version.len] = 0;
    d->size = m->u.offer.size;
    rc = TCPOTA_ERR_NOENT; /* no resume point for this image */
    if (d->resume.valid && d->resume.size == d->size &&
        memcmp(d->resume.id, d->image, TCPOTA_ID_LEN) == 0) {
        start = d->resume.offset;
        rc = p->ota_resume(p->ctx, &info, start);
        d->ckpt = start;
    }
    if (rc == TCPOTA_ERR_NOENT) {
        /* None (one for another image is stale: the slot is rewritten), or
         * the slot does not hold its bytes after all (port.h): from the
         * start, on this very offer (a review: that failed the connection,
         * with a backoff and a storage error in the server's log). */
        start = 0;
        rc = p->ota_begin(p->ctx, &info);
        if (rc == 0) {
            rc = resume_save(d, 0);
        }
    }
    if (rc < 0) {
        /* A record the storage refuses must not block every later offer. */
        (void)resume_drop(d);
        return fail(d, rc, "storage refused the image");
    }
    d->pos = start;
    d->state = TCPOTA_DEV_RECEIVING;
    d->last_progress = d->now;
    msg_new(&a, TCPOTA_T_ACCEPT);
    a.u.accept.image_id = d->image;
    a.u.accept.offset = start;
    ev->type = TCPOTA_DEV_EV_ACCEPTED;
    ev->offset = start;
    ev->size = d->size;
    return queue(d, &a);
}

/* Reads the whole slot back through the port and compares its SHA-256
 * with the offered id: what counts is what flash holds, not what arrived. */
static int verify_slot(struct tcpota_dev *d)
{
    const struct tcpota_port *p = d->cfg.port;
    uint8_t digest[TCPOTA_ID_LEN];
    uint8_t *buf = d->cfg.rx_buf; /* the frame in it was written already */
    size_t cap = d->dec.cap;
    uint32_t off;
    int rc;

    if ((rc = p->sha256_begin(p->ctx)) < 0) {
        return rc;
    }
    for (off = 0; off < d->size;) {
        size_t n = d->size - off < cap ? d->size - off : cap;
        if ((rc = p->ota_read(p->ctx, off, buf, n)) < 0 ||
            (rc = p->sha256_update(p->ctx, buf, n)) < 0) {
            return rc;
        }
        off += (uint32_t)n;
    }
    if ((rc = p->sha256_finish(p->ctx, digest)) < 0) {
        return rc;
    }
    return memcmp(digest, d->image, TCPOTA_ID_LEN) == 0 ? 0 : TCPOTA_ERR_INTEGRITY;
}

static int finish(struct tcpota_dev *d, struct tcpota_dev_event *ev)
{
    const struct tcpota_port *p = d->cfg.port;
    uint8_t last[LAST_LEN];
    struct tcpota_msg m;
    int rc = p->ota_end(p->ctx);
    /* The port refused the image itself; a storage error (ESP-IDF: the
     * last encrypted block's write failing as ESP_ERR_INVALID_STATE) is not
     * its fault and is not remembered (a review: it blacklisted the image). */
    enum tcpota_dev_bad bad = rc == TCPOTA_ERR_DENIED || rc == TCPOTA_ERR_REFUSED
                                  ? TCPOTA_BAD_REFUSED
                                  : TCPOTA_BAD_NONE;

    if (rc == 0) {
        rc = verify_slot(d);
    }
    if (rc == 0) {
        memcpy(last + 1, d->image, TCPOTA_ID_LEN);
        tcpota_put_u32(last + 1 + TCPOTA_ID_LEN, d->image_counter);
        rc = rec_save(p, TCPOTA_KEY_LAST, last, sizeof(last));
    }
    if (rc == 0 && (rc = p->set_boot(p->ctx)) == TCPOTA_ERR_DENIED) {
        /* Never bootable here: remembered, or the same image would be
         * fetched whole and refused again at every offer (a review: with
         * eFuse anti-rollback, 20 quick tries, then one an hour). */
        bad = TCPOTA_BAD_REFUSED;
    }
    msg_new(&m, TCPOTA_T_COMPLETE);
    m.u.complete.image_id = d->image;
    if (rc < 0) {
        /* Never bootable; start over from zero next time. No "last update"
         * record either, or a later rollback would be blamed on it. An
         * image that is not what its id says (or that the port refuses) is
         * remembered, so that its next offer is declined before a byte is
         * written; a storage error on the way is not the image's fault. */
        if (rc == TCPOTA_ERR_INTEGRITY) {
            bad = TCPOTA_BAD_INTEGRITY;
        }
        if (bad != TCPOTA_BAD_NONE && bad_save(p, d->image, bad) == 0) {
            d->bad_reason = (uint8_t)bad;
            memcpy(d->bad_id, d->image, TCPOTA_ID_LEN);
        }
        (void)p->ota_abort(p->ctx);
        (void)resume_drop(d);
        (void)p->kv_erase(p->ctx, TCPOTA_KEY_LAST);
        m.u.complete.status = (uint16_t)-rc;
        (void)queue(d, &m);
        d->last_error = rc;
        d->state = TCPOTA_DEV_IDLE;
        return rc;
    }
    /* The image is bootable now; a resume record for it would be stale. */
    if ((rc = resume_drop(d)) < 0) {
        return fail(d, rc, "could not clear the resume record");
    }
    d->state = TCPOTA_DEV_UPDATED;
    ev->type = TCPOTA_DEV_EV_UPDATED;
    ev->offset = ev->size = d->size;
    return queue(d, &m);
}

static int on_data(struct tcpota_dev *d, const struct tcpota_msg *m, struct tcpota_dev_event *ev)
{
    const struct tcpota_port *p = d->cfg.port;
    uint32_t off = m->u.data.offset, n = m->u.data.bytes.len;
    int rc;

    if (d->state == TCPOTA_DEV_DECLINED) {
        return 0; /* streamed before the server read our DECLINE */
    }
    if (d->state != TCPOTA_DEV_RECEIVING) {
        return fail(d, TCPOTA_ERR_STATE, "DATA without an accepted offer");
    }
    if (off > d->size || n > d->size - off) {
        return fail(d, TCPOTA_ERR_RANGE, "DATA past the end of the image");
    }
    if (off != d->pos) {
        d->stale_frames++; /* sent before the server saw where we resume */
        return 0;
    }
    if ((rc = p->ota_write(p->ctx, m->u.data.bytes.ptr, n)) < 0) {
        return fail(d, rc, "flash write failed");
    }
    d->pos += n;
    d->last_progress = d->now;
    ev->type = TCPOTA_DEV_EV_PROGRESS;
    ev->offset = d->pos;
    ev->size = d->size;
    if (d->pos == d->size) {
        return finish(d, ev);
    }
    if (sector_point(d) - d->ckpt >= d->cfg.ack_interval) {
        if ((rc = tcpota_dev_keep(d)) < 0) {
            return fail(d, rc, "could not save the resume point");
        }
        ev->type = TCPOTA_DEV_EV_CHECKPOINT;
        ev->offset = d->ckpt;
    }
    return 0;
}

/* Proves the device knows its secret without sending it: HMAC-SHA-256
 * over the server's fresh nonce, the TLS binding if any, and the device
 * id. Only a server that announced AUTH in its WELCOME gets an answer, and
 * only one: a device that answered any CHALLENGE at any time would let a
 * rogue server relay a real server's nonce and log in as this device. */
static int on_challenge(struct tcpota_dev *d, const struct tcpota_msg *m)
{
    const struct tcpota_port *p = d->cfg.port;
    uint8_t msg[TCPOTA_AUTH_MSG_MAX], mac[TCPOTA_MAC_LEN];
    struct tcpota_msg a;
    int n, rc;

    if (!d->welcomed) {
        return fail(d, TCPOTA_ERR_STATE, "CHALLENGE before WELCOME");
    }
    if (d->challenged || d->state != TCPOTA_DEV_HELLO_SENT) {
        return fail(d, TCPOTA_ERR_STATE, "CHALLENGE again or after the offer");
    }
    if (!d->auth_announced) {
        return fail(d, TCPOTA_ERR_PROTO, "CHALLENGE but WELCOME did not announce AUTH");
    }
    if (!d->cfg.secret) {
        return fail(d, TCPOTA_ERR_DENIED, "server requires authentication; no secret here");
    }
    d->challenged = 1;
    n = tcpota_auth_message(m->u.challenge.nonce, d->bound ? d->binding : NULL,
                            (const uint8_t *)d->cfg.device_id,
                            strlen(d->cfg.device_id), msg, sizeof(msg));
    if (n < 0) {
        return fail(d, n, "cannot build the authentication message");
    }
    rc = p->hmac_sha256(p->ctx, d->cfg.secret, d->cfg.secret_len, msg, (size_t)n, mac);
    if (rc < 0) {
        return fail(d, rc, "HMAC failed");
    }
    msg_new(&a, TCPOTA_T_AUTH);
    a.u.auth.mac = mac;
    return queue(d, &a);
}

/* The server's decision (OFFER or NO_UPDATE) comes only after it has
 * authenticated us and stored our report durably: only then is the report
 * forgotten. (WELCOME is too early: it precedes the CHALLENGE, and a fleet
 * server writes the report after AUTH.) */
static int report_acknowledged(struct tcpota_dev *d)
{
    int rc;

    if (!d->report_sent) {
        return 0;
    }
    rc = d->cfg.port->kv_erase(d->cfg.port->ctx, TCPOTA_KEY_REPORT);
    if (rc < 0 && rc != TCPOTA_ERR_NOENT) {
        return fail(d, rc, "could not clear the report");
    }
    d->report_result = 0;
    d->report_sent = 0;
    return 0;
}

static int on_frame(struct tcpota_dev *d, const struct tcpota_msg *m, struct tcpota_dev_event *ev)
{
    switch (m->type) {
    case TCPOTA_T_WELCOME:
        if (d->state != TCPOTA_DEV_HELLO_SENT || d->welcomed ||
            m->u.welcome.proto != TCPOTA_PROTO_VERSION) {
            return fail(d, TCPOTA_ERR_PROTO, "unexpected WELCOME");
        }
        d->welcomed = 1;
        d->auth_announced = (m->u.welcome.features & TCPOTA_F_AUTH) != 0;
        ev->type = TCPOTA_DEV_EV_WELCOME;
        return 0;
    case TCPOTA_T_CHALLENGE:
        return on_challenge(d, m);
    case TCPOTA_T_OFFER:
    case TCPOTA_T_NO_UPDATE: {
        /* The server's decision: one per connection, after HELLO. */
        int offer = m->type == TCPOTA_T_OFFER, rc;
        if (d->state != TCPOTA_DEV_HELLO_SENT) {
            return fail(d, TCPOTA_ERR_STATE, offer ? "unexpected OFFER" : "unexpected NO_UPDATE");
        }
        if ((rc = report_acknowledged(d)) < 0) {
            return rc;
        }
        if (offer) {
            return on_offer(d, m, ev);
        }
        d->state = TCPOTA_DEV_UP_TO_DATE;
        ev->type = TCPOTA_DEV_EV_UP_TO_DATE;
        ev->retry_after_s = m->u.no_update.retry_after_s;
        ev->why = m->u.no_update.why;
        return 0;
    }
    case TCPOTA_T_DATA:
        return on_data(d, m, ev);
    case TCPOTA_T_ERROR:
        d->last_error = m->u.error.code ? -(int)m->u.error.code : TCPOTA_ERR_PROTO;
        d->error_retry_after_s = m->u.error.retry_after_s;
        d->server_error = 1;
        set_reason(d, "");
        if (m->u.error.message.ptr) {
            /* The codec checked it: printable and at most TCPOTA_MAX_MESSAGE. */
            memcpy(d->reason, m->u.error.message.ptr, m->u.error.message.len);
            d->reason[m->u.error.message.len] = 0;
        }
        return d->last_error;
    case TCPOTA_T_PING: {
        struct tcpota_msg pong;
        msg_new(&pong, TCPOTA_T_PONG);
        pong.u.ping.token = m->u.ping.token;
        return queue(d, &pong);
    }
    case TCPOTA_T_PONG:
        return 0;
    default:
        return fail(d, TCPOTA_ERR_PROTO, "message not for a device");
    }
}

int tcpota_dev_input(struct tcpota_dev *d, const uint8_t *in, size_t len,
                     struct tcpota_dev_event *ev)
{
    struct tcpota_frame f;
    struct tcpota_msg m;
    int used, rc;

    memset(ev, 0, sizeof(*ev));
    if (d->state != TCPOTA_DEV_HELLO_SENT && d->state != TCPOTA_DEV_RECEIVING &&
        d->state != TCPOTA_DEV_DECLINED) {
        return (int)len; /* finished: nothing more to read on this connection */
    }
    if (len) {
        d->last_rx = d->now;
    }
    used = tcpota_decoder_feed(&d->dec, in, len, &f);
    if (used < 0) {
        return fail(d, used, used == TCPOTA_ERR_CRC ? "frame CRC mismatch" : "malformed frame");
    }
    if (!f.type) {
        return used;
    }
    rc = tcpota_msg_decode(&f, &m);
    if (rc < 0) {
        return fail(d, rc, "malformed message");
    }
    rc = on_frame(d, &m, ev);
    return rc < 0 ? rc : used;
}
