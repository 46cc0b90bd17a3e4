/* server.c - server session state machine (see server.h). */
#include "tcpota/server.h"

#include <limits.h>
#include <string.h>

#define DEFAULT_CHUNK 4096u

static int queue(struct tcpota_srv *s, const struct tcpota_msg *m)
{
    int n;

    if (s->tx_head) {
        /* Compact: control frames are few and small, a memmove is cheap. */
        memmove(s->cfg.tx_buf, s->cfg.tx_buf + s->tx_head, s->tx_len);
        s->tx_head = 0;
    }
    n = tcpota_msg_encode(m, s->cfg.tx_buf + s->tx_len, s->cfg.tx_cap - s->tx_len);
    if (n < 0) {
        return n;
    }
    s->tx_len += (size_t)n;
    return 0;
}

int tcpota_srv_fail(struct tcpota_srv *s, int code, const char *message,
                    uint32_t retry_after_s)
{
    struct tcpota_msg m;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ERROR;
    m.u.error.code = (uint16_t)(code < 0 ? -code : code);
    m.u.error.retry_after_s = retry_after_s;
    if (message) {
        m.u.error.message.ptr = (const uint8_t *)message;
        m.u.error.message.len = (uint16_t)strlen(message);
    }
    s->state = TCPOTA_SRV_CLOSING;
    s->limit = 0;
    s->failed = message;
    return queue(s, &m);
}

const char *tcpota_srv_failure(const struct tcpota_srv *s)
{
    return s->failed ? s->failed : "";
}

/* An image description a session can offer. */
static int image_ok(const struct tcpota_srv_image *img)
{
    return img->size != 0 && img->version && img->version_len != 0 &&
           img->version_len <= TCPOTA_MAX_NAME && img->manifest_len <= TCPOTA_MAX_MANIFEST;
}

int tcpota_srv_init(struct tcpota_srv *s, const struct tcpota_srv_config *cfg)
{
    const struct tcpota_srv_image *img = cfg ? cfg->image : NULL;

    if (!s || !cfg || !cfg->tx_buf || cfg->tx_cap < TCPOTA_SRV_TX_MIN) {
        return TCPOTA_ERR_INVAL;
    }
    if (cfg->chunk > TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED) {
        return TCPOTA_ERR_INVAL;
    }
    if (img && !image_ok(img)) {
        return TCPOTA_ERR_INVAL;
    }
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    s->chunk = cfg->chunk ? cfg->chunk : DEFAULT_CHUNK;
    return tcpota_decoder_init(&s->dec, cfg->rx_buf, cfg->rx_cap);
}

/* The device may take the offered image from where its resume point says,
 * if that point is for this very image and lies on a sector boundary. */
static uint32_t resume_start(const struct tcpota_srv *s, const struct tcpota_srv_image *img)
{
    if (!s->hello.has_resume || memcmp(s->hello.resume_id, img->id, TCPOTA_ID_LEN) != 0) {
        return 0;
    }
    if (s->hello.resume_size != img->size || s->hello.resume_offset > img->size ||
        s->hello.resume_offset % TCPOTA_SECTOR_SIZE != 0) {
        return 0;
    }
    return s->hello.resume_offset;
}

int tcpota_srv_runs(const struct tcpota_srv_hello *h, const struct tcpota_srv_image *img)
{
    if (h->running_id) {
        return memcmp(h->running_id, img->id, TCPOTA_ID_LEN) == 0;
    }
    return strlen(h->version) == img->version_len &&
           memcmp(h->version, img->version, img->version_len) == 0;
}

int tcpota_srv_report_final(uint16_t result)
{
    return result == TCPOTA_RESULT_ROLLED_BACK;
}

int tcpota_srv_complete_final(uint16_t status)
{
    return status != 0 && status != (uint16_t)-TCPOTA_ERR_INTEGRITY;
}

static int up_to_date(const struct tcpota_srv *s, const struct tcpota_srv_image *img)
{
    struct tcpota_srv_hello h;

    tcpota_srv_get_hello(s, &h);
    return tcpota_srv_runs(&h, img);
}

/* Keeps what HELLO said: the decision may come after a CHALLENGE, when the
 * frame buffer holds other bytes. */
static void keep_hello(struct tcpota_srv *s, const struct tcpota_msg *h)
{
    memcpy(s->hello.device_id, h->u.hello.device_id.ptr, h->u.hello.device_id.len);
    s->hello.device_id[h->u.hello.device_id.len] = 0;
    memcpy(s->hello.version, h->u.hello.version.ptr, h->u.hello.version.len);
    s->hello.version[h->u.hello.version.len] = 0;
    memcpy(s->hello.model, h->u.hello.model.ptr, h->u.hello.model.len);
    s->hello.model[h->u.hello.model.len] = 0;
    s->hello.report_result = h->u.hello.report_id ? h->u.hello.report_result : 0;
    if (s->hello.report_result) {
        memcpy(s->hello.report_id, h->u.hello.report_id, TCPOTA_ID_LEN);
    }
    s->hello.has_running = h->u.hello.running_id != NULL;
    if (s->hello.has_running) {
        memcpy(s->hello.running_id, h->u.hello.running_id, TCPOTA_ID_LEN);
    }
    s->hello.has_resume = h->u.hello.resume_id != NULL;
    if (s->hello.has_resume) {
        memcpy(s->hello.resume_id, h->u.hello.resume_id, TCPOTA_ID_LEN);
        s->hello.resume_size = h->u.hello.resume_size;
        s->hello.resume_offset = h->u.hello.resume_offset;
    }
    s->hello.max_payload = h->u.hello.max_payload ? h->u.hello.max_payload : TCPOTA_MIN_PAYLOAD;
}

void tcpota_srv_get_hello(const struct tcpota_srv *s, struct tcpota_srv_hello *h)
{
    h->device_id = s->hello.device_id;
    h->model = s->hello.model;
    h->version = s->hello.version;
    h->running_id = s->hello.has_running ? s->hello.running_id : NULL;
    h->report_id = s->hello.report_result ? s->hello.report_id : NULL;
    h->report_result = s->hello.report_result;
}

void tcpota_srv_set_why(struct tcpota_srv *s, uint16_t why)
{
    s->why = why;
}

const struct tcpota_srv_image *tcpota_srv_offered_image(const struct tcpota_srv *s)
{
    return s->img;
}

/* Sends OFFER (and starts the stream) or NO_UPDATE for img. */
static int send_decision(struct tcpota_srv *s, const struct tcpota_srv_image *img,
                         uint32_t retry_after, uint8_t *offered, uint32_t *start)
{
    struct tcpota_msg m;
    int rc;

    memset(&m, 0, sizeof(m));
    if (img && !image_ok(img)) {
        img = NULL; /* the caller's mistake: offer nothing rather than garbage */
    }
    if (!img || up_to_date(s, img)) {
        m.type = TCPOTA_T_NO_UPDATE;
        m.u.no_update.retry_after_s = retry_after;
        m.u.no_update.why = img                 ? (uint16_t)TCPOTA_WHY_RUNS
                            : !s->cfg.choose && !s->cfg.image ? (uint16_t)TCPOTA_WHY_NONE
                                                               : s->why;
        s->state = TCPOTA_SRV_CLOSING;
        *offered = 0;
        return queue(s, &m);
    }
    s->img = img;
    /* Never send a frame bigger than the device said it takes. */
    if (s->chunk > s->hello.max_payload - TCPOTA_DATA_FIXED) {
        s->chunk = (uint16_t)(s->hello.max_payload - TCPOTA_DATA_FIXED);
    }
    s->start = resume_start(s, img);
    s->send_pos = s->start;
    s->acked = s->start;
    s->limit = s->cfg.prestream && img->size - s->start > s->cfg.prestream
                   ? s->start + s->cfg.prestream
                   : img->size;
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = img->id;
    m.u.offer.size = img->size;
    m.u.offer.start = s->start;
    m.u.offer.chunk = s->chunk;
    m.u.offer.version.ptr = (const uint8_t *)img->version;
    m.u.offer.version.len = img->version_len;
    m.u.offer.manifest.ptr = img->manifest;
    m.u.offer.manifest.len = img->manifest_len;
    *offered = 0;
    if ((rc = queue(s, &m)) < 0) {
        /* No room for the OFFER (replies to a PING flood fill the output):
         * no DATA may follow a missing OFFER, so the session ends. */
        s->limit = 0;
        s->state = TCPOTA_SRV_CLOSING;
        return rc;
    }
    s->state = TCPOTA_SRV_OFFERED;
    *offered = 1;
    *start = s->start;
    return 0;
}

/* Decides from what HELLO said: the fixed image, or choose()'s, which may
 * come later (state CHOOSING, *offered 0). */
static int offer(struct tcpota_srv *s, uint8_t *offered, uint32_t *start)
{
    const struct tcpota_srv_image *img = s->cfg.image;
    uint32_t retry_after = 0;

    if (s->cfg.choose) {
        struct tcpota_srv_hello h;
        tcpota_srv_get_hello(s, &h);
        img = NULL;
        if (s->cfg.choose(s->cfg.ctx, &h, &img, &retry_after) == TCPOTA_SRV_CHOOSE_LATER) {
            s->state = TCPOTA_SRV_CHOOSING;
            *offered = 0;
            return 0;
        }
    }
    return send_decision(s, img, retry_after, offered, start);
}

int tcpota_srv_offer(struct tcpota_srv *s, const struct tcpota_srv_image *img,
                     uint32_t retry_after_s, uint8_t *offered, uint32_t *start)
{
    uint8_t o = 0;
    uint32_t st = 0;
    int rc;

    if (s->state != TCPOTA_SRV_CHOOSING) {
        return TCPOTA_ERR_STATE;
    }
    rc = send_decision(s, img, retry_after_s, &o, &st);
    if (offered) *offered = o;
    if (start) *start = st;
    return rc;
}

static int on_hello(struct tcpota_srv *s, struct tcpota_srv_event *ev)
{
    const struct tcpota_msg *h = &ev->msg;
    struct tcpota_msg m;
    int rc, must;

    if (h->u.hello.proto_min > TCPOTA_PROTO_VERSION ||
        h->u.hello.proto_max < TCPOTA_PROTO_VERSION) {
        tcpota_srv_fail(s, TCPOTA_ERR_VERSION, "server speaks protocol 1", 0);
        return TCPOTA_ERR_VERSION;
    }
    s->got_hello = 1;
    keep_hello(s, h);
    must = s->cfg.auth_nonce &&
           (!s->cfg.auth_for || s->cfg.auth_for(s->cfg.ctx, s->hello.device_id));
    if (must && !(h->u.hello.features & TCPOTA_F_AUTH)) {
        tcpota_srv_fail(s, TCPOTA_ERR_DENIED,
                        s->cfg.auth_for ? "this device id has a secret on this server: it must "
                                          "authenticate (give the device its secret)"
                                        : "this server requires device authentication: give"
                                          " the device its secret (tcpota device --secret FILE;"
                                          " NVS on ESP-IDF, docs/esp-idf.md)",
                        0);
        return TCPOTA_ERR_DENIED;
    }
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = TCPOTA_PROTO_VERSION;
    m.u.welcome.features = must ? TCPOTA_F_AUTH : 0;
    m.u.welcome.idle_timeout_s = s->cfg.idle_timeout_s;
    if ((rc = queue(s, &m)) < 0) {
        return rc;
    }
    if (must) {
        memset(&m, 0, sizeof(m));
        m.type = TCPOTA_T_CHALLENGE;
        m.u.challenge.nonce = s->cfg.auth_nonce;
        s->state = TCPOTA_SRV_AUTH_WAIT;
        s->challenged = 1;
        ev->auth_pending = 1;
        return queue(s, &m);
    }
    return offer(s, &ev->offered, &ev->start);
}

int tcpota_srv_authorize(struct tcpota_srv *s, int ok, uint8_t *offered, uint32_t *start)
{
    uint8_t o = 0;
    uint32_t st = 0;
    int rc;

    if (s->state != TCPOTA_SRV_AUTH_CHECK) {
        return TCPOTA_ERR_STATE;
    }
    if (!ok) {
        tcpota_srv_fail(s, TCPOTA_ERR_DENIED, "authentication failed", 0);
        return TCPOTA_ERR_DENIED;
    }
    rc = offer(s, &o, &st);
    if (offered) *offered = o;
    if (start) *start = st;
    return rc;
}

const char *tcpota_srv_device_id(const struct tcpota_srv *s)
{
    return s->hello.device_id;
}

static int violation(struct tcpota_srv *s, int code, const char *why)
{
    tcpota_srv_fail(s, code, why, 0);
    return code;
}

/* 1 once the device streams: ACKs may come. */
static int acks_due(const struct tcpota_srv *s)
{
    return s->state == TCPOTA_SRV_STREAMING || s->state == TCPOTA_SRV_SENT_ALL;
}

/* 1 when an ACK at `offset` is in range: no further than the bytes sent,
 * never behind what the device reported before. */
static int ack_in_range(const struct tcpota_srv *s, uint32_t offset)
{
    return offset <= s->send_pos && offset >= s->acked;
}

static int on_frame(struct tcpota_srv *s, struct tcpota_srv_event *ev)
{
    const struct tcpota_msg *m = &ev->msg;
    const struct tcpota_srv_image *img = s->img;

    if (!s->got_hello && m->type != TCPOTA_T_HELLO) {
        return violation(s, TCPOTA_ERR_STATE, "expected HELLO first");
    }
    switch (m->type) {
    case TCPOTA_T_HELLO:
        if (s->got_hello) {
            return violation(s, TCPOTA_ERR_STATE, "second HELLO");
        }
        ev->type = TCPOTA_SRV_EV_HELLO;
        return on_hello(s, ev);
    case TCPOTA_T_AUTH:
        if (s->state != TCPOTA_SRV_AUTH_WAIT) {
            /* (a security review: a second AUTH was told "without CHALLENGE") */
            return violation(s, TCPOTA_ERR_STATE,
                             s->challenged ? "second AUTH" : "AUTH without CHALLENGE");
        }
        s->state = TCPOTA_SRV_AUTH_CHECK;
        ev->type = TCPOTA_SRV_EV_AUTH;
        return 0;
    case TCPOTA_T_ACCEPT:
        if (s->state != TCPOTA_SRV_OFFERED ||
            memcmp(m->u.accept.image_id, img->id, TCPOTA_ID_LEN) != 0) {
            return violation(s, TCPOTA_ERR_STATE, "ACCEPT without matching OFFER");
        }
        if (m->u.accept.offset > img->size) {
            return violation(s, TCPOTA_ERR_RANGE, "ACCEPT offset past the end");
        }
        ev->type = TCPOTA_SRV_EV_ACCEPT;
        if (m->u.accept.offset != s->start) {
            /* The device resumes elsewhere than its HELLO said: re-seek. Frames
             * already sent carry their offset, so it skips them. */
            s->start = s->send_pos = s->acked = m->u.accept.offset;
        }
        ev->start = s->start;
        s->limit = img->size;
        s->state = s->send_pos == img->size ? TCPOTA_SRV_SENT_ALL : TCPOTA_SRV_STREAMING;
        return 0;
    case TCPOTA_T_DECLINE:
        /* Only an offer can be declined: the caller takes a decline as
         * the device's verdict on the offered image. */
        if (s->state != TCPOTA_SRV_OFFERED && s->state != TCPOTA_SRV_STREAMING &&
            s->state != TCPOTA_SRV_SENT_ALL) {
            return violation(s, TCPOTA_ERR_STATE, "DECLINE without an OFFER");
        }
        if (m->u.decline.reason == 0) {
            /* 0 is no error code: the registry would say the device
             * declined for "ok" (a hostile trial). */
            return violation(s, TCPOTA_ERR_PROTO, "DECLINE without a reason (0 is no error code)");
        }
        ev->type = TCPOTA_SRV_EV_DECLINE;
        s->state = TCPOTA_SRV_CLOSING;
        s->limit = 0;
        return 0;
    case TCPOTA_T_ACK:
        if (!acks_due(s)) {
            return violation(s, TCPOTA_ERR_STATE, "ACK before ACCEPT");
        }
        if (!ack_in_range(s, m->u.ack.offset)) {
            /* Which rule: a hostile trial's ACK going back was told it
             * lay "outside the bytes sent". */
            return violation(s, TCPOTA_ERR_RANGE, m->u.ack.offset < s->acked
                                                      ? "ACK below an earlier one (ACKs never go back)"
                                                      : "ACK past the bytes sent");
        }
        ev->type = TCPOTA_SRV_EV_ACK;
        ev->duplicate = m->u.ack.offset == s->acked;
        s->acked = m->u.ack.offset;
        return 0;
    case TCPOTA_T_COMPLETE:
        if (s->state != TCPOTA_SRV_SENT_ALL) {
            return violation(s, TCPOTA_ERR_STATE, "COMPLETE before all bytes were sent");
        }
        if (memcmp(m->u.complete.image_id, img->id, TCPOTA_ID_LEN) != 0) {
            /* Said apart: a device that checked another image than the
             * one it was sent (a trial read "before all bytes"). */
            return violation(s, TCPOTA_ERR_STATE, "COMPLETE names another image than the one sent");
        }
        ev->type = TCPOTA_SRV_EV_COMPLETE;
        s->state = TCPOTA_SRV_CLOSING;
        return 0;
    case TCPOTA_T_ERROR:
        ev->type = TCPOTA_SRV_EV_PEER_ERROR;
        s->state = TCPOTA_SRV_CLOSING;
        s->limit = 0;
        return 0;
    case TCPOTA_T_PING: {
        struct tcpota_msg pong;
        memset(&pong, 0, sizeof(pong));
        pong.type = TCPOTA_T_PONG;
        pong.u.ping.token = m->u.ping.token;
        ev->type = TCPOTA_SRV_EV_PING;
        return queue(s, &pong);
    }
    case TCPOTA_T_PONG:
        return 0;
    default:
        return violation(s, TCPOTA_ERR_PROTO, "message not for a server");
    }
}

/* An ACK frame as devices send it: its offset and no TLV. */
#define ACK_PLAIN_LEN (TCPOTA_FRAME_OVERHEAD + TCPOTA_ACK_FIXED)

/* Takes the run of plain ACK frames at the start of `in` in one step: a
 * device sends 64 per MiB and the server needs only the last. Each must be
 * one the frame-by-frame path would take the same way (whole, flags 0, its
 * CRC right, in range): the run stops before anything else, a bad ACK
 * included, which that path then judges and names. Fills *ev as for the
 * run's last ACK, `duplicate` when none moved the offset. Returns the bytes
 * taken (0: the input does not start with one). */
static size_t take_acks(struct tcpota_srv *s, const uint8_t *in, size_t len,
                        struct tcpota_srv_event *ev)
{
    size_t used = 0;
    uint8_t moved = 0;

    if (len > INT_MAX) {
        len = INT_MAX; /* the count is returned as an int */
    }
    while (tcpota_frame_whole(in + used, len - used, TCPOTA_T_ACK, TCPOTA_ACK_FIXED)) {
        uint32_t offset = tcpota_get_u32(in + used + TCPOTA_FRAME_HEAD);
        if (!ack_in_range(s, offset)) {
            break;
        }
        moved |= offset != s->acked;
        s->acked = offset;
        used += ACK_PLAIN_LEN;
    }
    if (used) {
        ev->type = TCPOTA_SRV_EV_ACK;
        ev->msg.type = TCPOTA_T_ACK;
        ev->msg.u.ack.offset = s->acked;
        ev->duplicate = !moved;
    }
    return used;
}

int tcpota_srv_input(struct tcpota_srv *s, const uint8_t *in, size_t len,
                     struct tcpota_srv_event *ev)
{
    struct tcpota_frame f;
    size_t acks;
    int used, rc;

    memset(ev, 0, sizeof(*ev));
    if (s->state == TCPOTA_SRV_CLOSING) {
        return (int)len; /* ignore whatever still arrives */
    }
    if (acks_due(s) && tcpota_decoder_idle(&s->dec) && (acks = take_acks(s, in, len, ev)) != 0) {
        return (int)acks;
    }
    used = tcpota_decoder_feed(&s->dec, in, len, &f);
    if (used < 0) {
        return violation(s, used, used == TCPOTA_ERR_CRC ? "frame CRC mismatch"
                                  : used == TCPOTA_ERR_TOOBIG ? "frame too big"
                                                              : "malformed frame");
    }
    if (!f.type) {
        return used;
    }
    rc = tcpota_msg_decode(&f, &ev->msg);
    if (rc < 0) {
        /* The device reads the text: a field it sent that this server
         * does not know (a newer device's) is not "malformed" (a trial). */
        return violation(s, rc, rc == TCPOTA_ERR_NOTSUP ? "a critical field this server does not"
                                                          " know (is the device newer?)"
                                                        : "malformed message");
    }
    rc = on_frame(s, ev);
    if (rc < 0) {
        if (s->state != TCPOTA_SRV_CLOSING) {
            /* e.g. no room left for a reply (a PING flood): end it too,
             * saying why (a security review read "no space: cannot answer"). */
            (void)tcpota_srv_fail(s, rc, rc == TCPOTA_ERR_NOSPC
                                             ? "more requests than this server answers before the"
                                               " device reads the answers (a PING flood?)"
                                             : "cannot answer", 0);
            s->state = TCPOTA_SRV_CLOSING;
        }
        return rc;
    }
    return used;
}

size_t tcpota_srv_output(const struct tcpota_srv *s, const uint8_t **out)
{
    *out = s->cfg.tx_buf + s->tx_head;
    return s->tx_len;
}

void tcpota_srv_output_done(struct tcpota_srv *s, size_t n)
{
    if (n > s->tx_len) {
        n = s->tx_len;
    }
    s->tx_head += n;
    s->tx_len -= n;
    if (s->tx_len == 0) {
        s->tx_head = 0;
    }
}

int tcpota_srv_all_sent(const struct tcpota_srv *s)
{
    return (s->state == TCPOTA_SRV_OFFERED || s->state == TCPOTA_SRV_STREAMING ||
            s->state == TCPOTA_SRV_SENT_ALL) &&
           s->img && s->send_pos == s->img->size;
}

int tcpota_srv_data_take(struct tcpota_srv *s, uint32_t frames, uint32_t *offset, uint32_t *len)
{
    uint64_t end;

    if ((s->state != TCPOTA_SRV_OFFERED && s->state != TCPOTA_SRV_STREAMING) ||
        s->send_pos >= s->limit || frames == 0) {
        return 0;
    }
    /* The end of the frames'th frame: frames end on multiples of the chunk
     * (or at the limit), wherever the first one starts. */
    end = ((uint64_t)(s->send_pos / s->chunk) + frames) * s->chunk;
    if (end > s->limit) {
        end = s->limit;
    }
    *offset = s->send_pos;
    *len = (uint32_t)end - s->send_pos;
    s->send_pos = (uint32_t)end;
    if (s->state == TCPOTA_SRV_STREAMING && s->send_pos == s->img->size) {
        s->state = TCPOTA_SRV_SENT_ALL;
    }
    return 1;
}

int tcpota_srv_data_next(struct tcpota_srv *s, uint32_t *offset, uint16_t *len)
{
    uint32_t n;

    if (!tcpota_srv_data_take(s, 1, offset, &n)) {
        return 0;
    }
    *len = (uint16_t)n; /* within one chunk: at most 16380 */
    return 1;
}

enum tcpota_srv_state tcpota_srv_get_state(const struct tcpota_srv *s)
{
    return s->state;
}
