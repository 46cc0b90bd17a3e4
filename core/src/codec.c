/* codec.c - frames and messages of protocol v1 (see codec.h). */
#include "tcpota/codec.h"
#include "tcpota/crc32c.h"

#include <string.h>

/* ---- frames ---------------------------------------------------------- */

int tcpota_decoder_init(struct tcpota_decoder *d, uint8_t *buf, size_t cap)
{
    if (!d || !buf || cap < TCPOTA_MIN_PAYLOAD + TCPOTA_FRAME_OVERHEAD) {
        return TCPOTA_ERR_INVAL;
    }
    d->buf = buf;
    d->cap = cap > TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD
                 ? TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD
                 : cap;
    tcpota_decoder_reset(d);
    return 0;
}

void tcpota_decoder_reset(struct tcpota_decoder *d)
{
    d->have = 0;
    d->need = 0;
    d->ready = 0;
}

/* Judges a frame's 4 header bytes before a byte of its payload is
 * buffered, so that a hostile length costs nothing. Sets *need to the
 * frame's whole length and returns 0, or returns the error. */
static int frame_need(const struct tcpota_decoder *d, const uint8_t *head, size_t *need)
{
    size_t plen = tcpota_get_u16(head + 2);

    if (head[0] == 0 || head[1] != 0) {
        return TCPOTA_ERR_PROTO;
    }
    if (plen + TCPOTA_FRAME_OVERHEAD > d->cap) {
        return TCPOTA_ERR_TOOBIG;
    }
    *need = plen + TCPOTA_FRAME_OVERHEAD;
    return 0;
}

/* The frame at buf (d->buf, or the input) is whole, `need` bytes: checks
 * its CRC and hands it out. */
static int frame_done(struct tcpota_decoder *d, const uint8_t *buf, size_t need,
                      struct tcpota_frame *f)
{
    size_t body = need - TCPOTA_FRAME_TAIL;

    if (tcpota_crc32c(buf, body) != tcpota_get_u32(buf + body)) {
        return TCPOTA_ERR_CRC;
    }
    f->type = buf[0];
    f->len = tcpota_get_u16(buf + 2);
    f->payload = buf + TCPOTA_FRAME_HEAD;
    d->ready = 1;
    return 0;
}

int tcpota_decoder_feed(struct tcpota_decoder *d, const uint8_t *in, size_t len,
                        struct tcpota_frame *f)
{
    size_t used = 0;
    int rc;

    f->type = 0;
    f->len = 0;
    f->payload = NULL;
    if (d->ready) {
        tcpota_decoder_reset(d);
    }
    /* Nothing buffered and a whole frame in the input (most frames; a
     * server reads a device's 64 ACKs per MiB this way): one copy, and
     * none for DATA, the bulk of a stream, which is checked and handed
     * out where it lies (its bytes go straight to flash). */
    if (d->have == 0 && len >= TCPOTA_FRAME_HEAD) {
        size_t need;
        if ((rc = frame_need(d, in, &need)) < 0) {
            return rc;
        }
        if (len >= need) {
            const uint8_t *frame = in;
            if (in[0] != TCPOTA_T_DATA) {
                memcpy(d->buf, in, need);
                d->have = d->need = need;
                frame = d->buf;
            }
            return (rc = frame_done(d, frame, need, f)) < 0 ? rc : (int)need;
        }
    }
    while (used < len) {
        size_t want = (d->need ? d->need : TCPOTA_FRAME_HEAD) - d->have;
        size_t take = len - used < want ? len - used : want;

        memcpy(d->buf + d->have, in + used, take);
        d->have += take;
        used += take;
        if (d->need == 0 && d->have == TCPOTA_FRAME_HEAD &&
            (rc = frame_need(d, d->buf, &d->need)) < 0) {
            return rc;
        }
        if (d->need && d->have == d->need) {
            if ((rc = frame_done(d, d->buf, d->need, f)) < 0) {
                return rc;
            }
            break;
        }
    }
    return (int)used;
}

int tcpota_decoder_idle(const struct tcpota_decoder *d)
{
    return d->ready || d->have == 0;
}

int tcpota_frame_whole(const uint8_t *in, size_t len, uint8_t type, uint16_t payload_len)
{
    size_t body = TCPOTA_FRAME_HEAD + (size_t)payload_len;

    return len >= body + TCPOTA_FRAME_TAIL && in[0] == type && in[1] == 0 &&
           tcpota_get_u16(in + 2) == payload_len &&
           tcpota_crc32c(in, body) == tcpota_get_u32(in + body);
}

int tcpota_data_head(uint8_t out[8], uint32_t offset, uint16_t len)
{
    if (len > TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED) {
        return TCPOTA_ERR_INVAL;
    }
    out[0] = TCPOTA_T_DATA;
    out[1] = 0;
    tcpota_put_u16(out + 2, (uint16_t)(len + TCPOTA_DATA_FIXED));
    tcpota_put_u32(out + 4, offset);
    return 8;
}

/* ---- decoding -------------------------------------------------------- */

/* Fixed-part size of each message type; DATA's bytes follow its fixed part. */
static int fixed_size(uint8_t type)
{
    switch (type) {
    case TCPOTA_T_HELLO: return 4;
    case TCPOTA_T_WELCOME: return 4;
    case TCPOTA_T_OFFER: return TCPOTA_ID_LEN + 8;
    case TCPOTA_T_NO_UPDATE: return 0;
    case TCPOTA_T_ACCEPT: return TCPOTA_ID_LEN + 4;
    case TCPOTA_T_DECLINE: return TCPOTA_ID_LEN + 2;
    case TCPOTA_T_DATA: return 4;
    case TCPOTA_T_ACK: return TCPOTA_ACK_FIXED;
    case TCPOTA_T_COMPLETE: return TCPOTA_ID_LEN + 2;
    case TCPOTA_T_ERROR: return 2;
    case TCPOTA_T_PING:
    case TCPOTA_T_PONG: return 4;
    case TCPOTA_T_CHALLENGE: return TCPOTA_NONCE_LEN;
    case TCPOTA_T_AUTH: return TCPOTA_MAC_LEN;
    default: return TCPOTA_ERR_NOTSUP;
    }
}

int tcpota_printable(const void *p, size_t len, size_t min, size_t max)
{
    const uint8_t *b = p;
    size_t i;

    if (len < min || len > max) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (b[i] < 0x20 || b[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

void tcpota_hex(char *out, const uint8_t *p, size_t n)
{
    static const char digit[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digit[p[i] >> 4];
        out[2 * i + 1] = digit[p[i] & 15];
    }
}

/* Checks one TLV value against the rule for its tag (one of msg_tags,
 * critical bit clear) and fills *m. Returns 0 or TCPOTA_ERR_PROTO. */
static int take_tlv(struct tcpota_msg *m, uint8_t tag, const uint8_t *v, uint16_t n)
{
    struct tcpota_bytes b;

    b.ptr = v;
    b.len = n;
    switch (tag) {
    case TCPOTA_TAG_DEVICE_ID:
        if (m->type != TCPOTA_T_HELLO || !tcpota_printable(v, n, 1, TCPOTA_MAX_STR)) {
            return TCPOTA_ERR_PROTO;
        }
        m->u.hello.device_id = b;
        return 0;
    case TCPOTA_TAG_MODEL:
        if (m->type != TCPOTA_T_HELLO || !tcpota_printable(v, n, 1, TCPOTA_MAX_NAME)) {
            return TCPOTA_ERR_PROTO;
        }
        m->u.hello.model = b;
        return 0;
    case TCPOTA_TAG_VERSION:
        if (!tcpota_printable(v, n, 1, TCPOTA_MAX_NAME)) return TCPOTA_ERR_PROTO;
        if (m->type == TCPOTA_T_HELLO) {
            m->u.hello.version = b;
        } else if (m->type == TCPOTA_T_OFFER) {
            m->u.offer.version = b;
        } else {
            return TCPOTA_ERR_PROTO;
        }
        return 0;
    case TCPOTA_TAG_RUNNING_ID:
        if (m->type != TCPOTA_T_HELLO || n != TCPOTA_ID_LEN) return TCPOTA_ERR_PROTO;
        m->u.hello.running_id = v;
        return 0;
    case TCPOTA_TAG_RESUME:
        if (m->type != TCPOTA_T_HELLO || n != TCPOTA_ID_LEN + 8) return TCPOTA_ERR_PROTO;
        m->u.hello.resume_id = v;
        m->u.hello.resume_size = tcpota_get_u32(v + TCPOTA_ID_LEN);
        m->u.hello.resume_offset = tcpota_get_u32(v + TCPOTA_ID_LEN + 4);
        if (m->u.hello.resume_offset > m->u.hello.resume_size) return TCPOTA_ERR_PROTO;
        return 0;
    case TCPOTA_TAG_MAX_PAYLOAD:
        if (m->type != TCPOTA_T_HELLO || n != 2) return TCPOTA_ERR_PROTO;
        m->u.hello.max_payload = tcpota_get_u16(v);
        if (m->u.hello.max_payload < TCPOTA_MIN_PAYLOAD) return TCPOTA_ERR_PROTO;
        return 0;
    case TCPOTA_TAG_REPORT:
        if (m->type != TCPOTA_T_HELLO || n != TCPOTA_ID_LEN + 2) return TCPOTA_ERR_PROTO;
        m->u.hello.report_id = v;
        m->u.hello.report_result = tcpota_get_u16(v + TCPOTA_ID_LEN);
        return 0;
    case TCPOTA_TAG_MESSAGE:
        if (!tcpota_printable(v, n, 0, TCPOTA_MAX_MESSAGE)) return TCPOTA_ERR_PROTO;
        if (m->type == TCPOTA_T_ERROR) {
            m->u.error.message = b;
        } else if (m->type == TCPOTA_T_DECLINE) {
            m->u.decline.message = b;
        } else {
            return TCPOTA_ERR_PROTO;
        }
        return 0;
    case TCPOTA_TAG_IDLE_TIMEOUT:
        if (m->type != TCPOTA_T_WELCOME || n != 2) return TCPOTA_ERR_PROTO;
        m->u.welcome.idle_timeout_s = tcpota_get_u16(v);
        return 0;
    case TCPOTA_TAG_RETRY_AFTER:
        if (n != 4) return TCPOTA_ERR_PROTO;
        if (m->type == TCPOTA_T_NO_UPDATE) {
            m->u.no_update.retry_after_s = tcpota_get_u32(v);
        } else if (m->type == TCPOTA_T_ERROR) {
            m->u.error.retry_after_s = tcpota_get_u32(v);
        } else {
            return TCPOTA_ERR_PROTO;
        }
        return 0;
    case TCPOTA_TAG_CHUNK:
        if (m->type != TCPOTA_T_OFFER || n != 2) return TCPOTA_ERR_PROTO;
        m->u.offer.chunk = tcpota_get_u16(v);
        if (m->u.offer.chunk == 0) return TCPOTA_ERR_PROTO;
        return 0;
    case TCPOTA_TAG_MANIFEST:
        if (m->type != TCPOTA_T_OFFER || n == 0 || n > TCPOTA_MAX_MANIFEST) return TCPOTA_ERR_PROTO;
        m->u.offer.manifest = b;
        return 0;
    case TCPOTA_TAG_WHY:
        if (m->type != TCPOTA_T_NO_UPDATE || n != 2) return TCPOTA_ERR_PROTO;
        m->u.no_update.why = tcpota_get_u16(v);
        return 0;
    default:
        return TCPOTA_ERR_PROTO; /* a tag in msg_tags without a rule here */
    }
}

/* ---- TLVs ------------------------------------------------------------ */

#define TLV_HEAD 3u /* tag u8, length u16 */

void tcpota_tlv_iter_init(struct tcpota_tlv_iter *it, const uint8_t *buf, size_t len,
                          const uint8_t *known, size_t n_known)
{
    memset(it, 0, sizeof(*it));
    it->p = buf;
    it->left = len;
    it->known = known;
    it->n_known = n_known;
}

static int tag_known(const struct tcpota_tlv_iter *it, uint8_t tag)
{
    size_t i;

    for (i = 0; i < it->n_known; i++) {
        if (it->known[i] == tag) {
            return 1;
        }
    }
    return 0;
}

int tcpota_tlv_next(struct tcpota_tlv_iter *it, uint8_t *tag, const uint8_t **val,
                    uint16_t *len)
{
    while (it->left) {
        uint8_t raw, t;
        uint16_t n;
        const uint8_t *v;

        if (it->left < TLV_HEAD) {
            return TCPOTA_ERR_PROTO;
        }
        raw = it->p[0];
        n = tcpota_get_u16(it->p + 1);
        if ((size_t)n > it->left - TLV_HEAD) {
            return TCPOTA_ERR_PROTO;
        }
        /* The critical bit says how to treat an unknown tag, not which
         * field it is: a tag and its critical twin are one field. */
        t = raw & (uint8_t)~TCPOTA_TAG_CRITICAL;
        if (it->seen[t >> 5] & (1u << (t & 31))) {
            return TCPOTA_ERR_PROTO;
        }
        it->seen[t >> 5] |= 1u << (t & 31);
        v = it->p + TLV_HEAD;
        it->p += TLV_HEAD + (size_t)n;
        it->left -= TLV_HEAD + (size_t)n;
        if (tag_known(it, t)) {
            *tag = t;
            *val = v;
            *len = n;
            return 1;
        }
        if (raw & TCPOTA_TAG_CRITICAL) {
            return TCPOTA_ERR_NOTSUP;
        }
    }
    return 0;
}

/* Every tag a message may carry; which message takes which is take_tlv's. */
static const uint8_t msg_tags[] = {
    TCPOTA_TAG_DEVICE_ID, TCPOTA_TAG_MODEL, TCPOTA_TAG_VERSION, TCPOTA_TAG_RUNNING_ID,
    TCPOTA_TAG_RESUME, TCPOTA_TAG_MAX_PAYLOAD, TCPOTA_TAG_REPORT, TCPOTA_TAG_MESSAGE,
    TCPOTA_TAG_IDLE_TIMEOUT, TCPOTA_TAG_RETRY_AFTER, TCPOTA_TAG_CHUNK, TCPOTA_TAG_MANIFEST,
    TCPOTA_TAG_WHY,
};

static int decode_tlvs(struct tcpota_msg *m, const uint8_t *p, size_t len)
{
    struct tcpota_tlv_iter it;
    const uint8_t *v;
    uint16_t n;
    uint8_t tag;
    int rc;

    tcpota_tlv_iter_init(&it, p, len, msg_tags, sizeof(msg_tags));
    while ((rc = tcpota_tlv_next(&it, &tag, &v, &n)) > 0) {
        if ((rc = take_tlv(m, tag, v, n)) < 0) {
            m->bad_tag = tag; /* for a log that says which field */
            return rc;
        }
    }
    return rc;
}

int tcpota_msg_decode(const struct tcpota_frame *f, struct tcpota_msg *m)
{
    const uint8_t *p = f->payload;
    int fixed = fixed_size(f->type);
    int rc;

    memset(m, 0, sizeof(*m));
    m->type = f->type;
    if (fixed < 0) {
        return fixed;
    }
    if (f->len < (size_t)fixed) {
        return TCPOTA_ERR_PROTO;
    }
    switch (f->type) {
    case TCPOTA_T_HELLO:
        m->u.hello.proto_min = p[0];
        m->u.hello.proto_max = p[1];
        m->u.hello.features = tcpota_get_u16(p + 2);
        break;
    case TCPOTA_T_WELCOME:
        m->u.welcome.proto = p[0];
        if (p[1] != 0) {
            return TCPOTA_ERR_PROTO;
        }
        m->u.welcome.features = tcpota_get_u16(p + 2);
        break;
    case TCPOTA_T_OFFER:
        m->u.offer.image_id = p;
        m->u.offer.size = tcpota_get_u32(p + TCPOTA_ID_LEN);
        m->u.offer.start = tcpota_get_u32(p + TCPOTA_ID_LEN + 4);
        if (m->u.offer.start > m->u.offer.size || m->u.offer.size == 0) {
            return TCPOTA_ERR_PROTO;
        }
        break;
    case TCPOTA_T_ACCEPT:
        m->u.accept.image_id = p;
        m->u.accept.offset = tcpota_get_u32(p + TCPOTA_ID_LEN);
        break;
    case TCPOTA_T_DECLINE:
        m->u.decline.image_id = p;
        m->u.decline.reason = tcpota_get_u16(p + TCPOTA_ID_LEN);
        break;
    case TCPOTA_T_DATA:
        m->u.data.offset = tcpota_get_u32(p);
        m->u.data.bytes.ptr = p + 4;
        m->u.data.bytes.len = (uint16_t)(f->len - 4);
        if (m->u.data.bytes.len == 0) {
            return TCPOTA_ERR_PROTO;
        }
        return 0;
    case TCPOTA_T_ACK:
        m->u.ack.offset = tcpota_get_u32(p);
        break;
    case TCPOTA_T_COMPLETE:
        m->u.complete.image_id = p;
        m->u.complete.status = tcpota_get_u16(p + TCPOTA_ID_LEN);
        break;
    case TCPOTA_T_ERROR:
        m->u.error.code = tcpota_get_u16(p);
        break;
    case TCPOTA_T_PING:
    case TCPOTA_T_PONG:
        m->u.ping.token = tcpota_get_u32(p);
        break;
    case TCPOTA_T_CHALLENGE:
        m->u.challenge.nonce = p;
        break;
    case TCPOTA_T_AUTH:
        m->u.auth.mac = p;
        break;
    default:
        break;
    }
    rc = decode_tlvs(m, p + fixed, f->len - (size_t)fixed);
    if (rc < 0) {
        return rc;
    }
    if (m->type == TCPOTA_T_HELLO &&
        (!m->u.hello.device_id.ptr || !m->u.hello.model.ptr || !m->u.hello.version.ptr)) {
        return TCPOTA_ERR_PROTO;
    }
    if (m->type == TCPOTA_T_OFFER && !m->u.offer.version.ptr) {
        return TCPOTA_ERR_PROTO;
    }
    return 0;
}

/* ---- encoding -------------------------------------------------------- */

struct writer {
    uint8_t *p;
    size_t cap, len;
    int err;
};

static void put(struct writer *w, const void *src, size_t n)
{
    if (w->err) {
        return; /* keep the first error */
    }
    if (n > w->cap - w->len) {
        w->err = TCPOTA_ERR_NOSPC;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put8(struct writer *w, uint8_t v) { put(w, &v, 1); }

static void put16(struct writer *w, uint16_t v)
{
    uint8_t b[2];
    tcpota_put_u16(b, v);
    put(w, b, 2);
}

static void put32(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    tcpota_put_u32(b, v);
    put(w, b, 4);
}

static void tlv(struct writer *w, uint8_t tag, const void *v, uint16_t n)
{
    put8(w, tag);
    put16(w, n);
    put(w, v, n);
}

static void tlv_str(struct writer *w, uint8_t tag, struct tcpota_bytes b, size_t min, size_t max)
{
    if (!b.ptr) {
        return;
    }
    if (!tcpota_printable(b.ptr, b.len, min, max)) {
        w->err = w->err ? w->err : TCPOTA_ERR_INVAL;
        return;
    }
    tlv(w, tag, b.ptr, b.len);
}

static void tlv_u16(struct writer *w, uint8_t tag, uint16_t v)
{
    uint8_t b[2];
    tcpota_put_u16(b, v);
    tlv(w, tag, b, 2);
}

static void tlv_u32(struct writer *w, uint8_t tag, uint32_t v)
{
    uint8_t b[4];
    tcpota_put_u32(b, v);
    tlv(w, tag, b, 4);
}

static void encode_hello(struct writer *w, const struct tcpota_msg *m)
{
    uint8_t b[TCPOTA_ID_LEN + 8];

    if (!m->u.hello.device_id.ptr || !m->u.hello.model.ptr || !m->u.hello.version.ptr) {
        w->err = TCPOTA_ERR_INVAL;
        return;
    }
    put8(w, m->u.hello.proto_min);
    put8(w, m->u.hello.proto_max);
    put16(w, m->u.hello.features);
    tlv_str(w, TCPOTA_TAG_DEVICE_ID, m->u.hello.device_id, 1, TCPOTA_MAX_STR);
    tlv_str(w, TCPOTA_TAG_MODEL, m->u.hello.model, 1, TCPOTA_MAX_NAME);
    tlv_str(w, TCPOTA_TAG_VERSION, m->u.hello.version, 1, TCPOTA_MAX_NAME);
    if (m->u.hello.running_id) {
        tlv(w, TCPOTA_TAG_RUNNING_ID, m->u.hello.running_id, TCPOTA_ID_LEN);
    }
    if (m->u.hello.resume_id) {
        memcpy(b, m->u.hello.resume_id, TCPOTA_ID_LEN);
        tcpota_put_u32(b + TCPOTA_ID_LEN, m->u.hello.resume_size);
        tcpota_put_u32(b + TCPOTA_ID_LEN + 4, m->u.hello.resume_offset);
        tlv(w, TCPOTA_TAG_RESUME, b, TCPOTA_ID_LEN + 8);
    }
    if (m->u.hello.max_payload) {
        tlv_u16(w, TCPOTA_TAG_MAX_PAYLOAD, m->u.hello.max_payload);
    }
    if (m->u.hello.report_id) {
        memcpy(b, m->u.hello.report_id, TCPOTA_ID_LEN);
        tcpota_put_u16(b + TCPOTA_ID_LEN, m->u.hello.report_result);
        tlv(w, TCPOTA_TAG_REPORT, b, TCPOTA_ID_LEN + 2);
    }
}

static void encode_body(struct writer *w, const struct tcpota_msg *m)
{
    switch (m->type) {
    case TCPOTA_T_HELLO:
        encode_hello(w, m);
        break;
    case TCPOTA_T_WELCOME:
        put8(w, m->u.welcome.proto);
        put8(w, 0);
        put16(w, m->u.welcome.features);
        if (m->u.welcome.idle_timeout_s) {
            tlv_u16(w, TCPOTA_TAG_IDLE_TIMEOUT, m->u.welcome.idle_timeout_s);
        }
        break;
    case TCPOTA_T_OFFER:
        if (!m->u.offer.image_id || !m->u.offer.version.ptr || m->u.offer.size == 0 ||
            m->u.offer.start > m->u.offer.size ||
            m->u.offer.manifest.len > TCPOTA_MAX_MANIFEST) {
            w->err = TCPOTA_ERR_INVAL;
            return;
        }
        put(w, m->u.offer.image_id, TCPOTA_ID_LEN);
        put32(w, m->u.offer.size);
        put32(w, m->u.offer.start);
        tlv_str(w, TCPOTA_TAG_VERSION, m->u.offer.version, 1, TCPOTA_MAX_NAME);
        if (m->u.offer.chunk) {
            tlv_u16(w, TCPOTA_TAG_CHUNK, m->u.offer.chunk);
        }
        if (m->u.offer.manifest.ptr && m->u.offer.manifest.len) {
            tlv(w, TCPOTA_TAG_MANIFEST, m->u.offer.manifest.ptr, m->u.offer.manifest.len);
        }
        break;
    case TCPOTA_T_NO_UPDATE:
        if (m->u.no_update.retry_after_s) {
            tlv_u32(w, TCPOTA_TAG_RETRY_AFTER, m->u.no_update.retry_after_s);
        }
        if (m->u.no_update.why) {
            tlv_u16(w, TCPOTA_TAG_WHY, m->u.no_update.why);
        }
        break;
    case TCPOTA_T_ACCEPT:
    case TCPOTA_T_DECLINE:
    case TCPOTA_T_COMPLETE:
        /* The three share their fixed part's shape: image id, then a number. */
        if (!m->u.accept.image_id) {
            w->err = TCPOTA_ERR_INVAL;
            return;
        }
        put(w, m->u.accept.image_id, TCPOTA_ID_LEN);
        if (m->type == TCPOTA_T_ACCEPT) {
            put32(w, m->u.accept.offset);
        } else if (m->type == TCPOTA_T_DECLINE) {
            put16(w, m->u.decline.reason);
            tlv_str(w, TCPOTA_TAG_MESSAGE, m->u.decline.message, 0, TCPOTA_MAX_MESSAGE);
        } else {
            put16(w, m->u.complete.status);
        }
        break;
    case TCPOTA_T_DATA:
        if (!m->u.data.bytes.ptr || m->u.data.bytes.len == 0 ||
            m->u.data.bytes.len > TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED) {
            w->err = TCPOTA_ERR_INVAL;
            return;
        }
        put32(w, m->u.data.offset);
        put(w, m->u.data.bytes.ptr, m->u.data.bytes.len);
        break;
    case TCPOTA_T_ACK:
        put32(w, m->u.ack.offset);
        break;
    case TCPOTA_T_ERROR:
        put16(w, m->u.error.code);
        if (m->u.error.retry_after_s) {
            tlv_u32(w, TCPOTA_TAG_RETRY_AFTER, m->u.error.retry_after_s);
        }
        tlv_str(w, TCPOTA_TAG_MESSAGE, m->u.error.message, 0, TCPOTA_MAX_MESSAGE);
        break;
    case TCPOTA_T_PING:
    case TCPOTA_T_PONG:
        put32(w, m->u.ping.token);
        break;
    case TCPOTA_T_CHALLENGE:
    case TCPOTA_T_AUTH:
        /* Both are one 32-byte value. */
        if (!m->u.challenge.nonce) {
            w->err = TCPOTA_ERR_INVAL;
            return;
        }
        put(w, m->u.challenge.nonce, TCPOTA_NONCE_LEN);
        break;
    default:
        w->err = TCPOTA_ERR_INVAL;
        break;
    }
}

int tcpota_auth_message(const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *binding,
                        const uint8_t *device_id, size_t id_len, uint8_t *out, size_t cap)
{
    static const char plain[] = "tcpota-auth-v1", tls[] = "tcpota-auth-v1-tls";
    const char *label = binding ? tls : plain;
    size_t n = binding ? sizeof(tls) - 1 : sizeof(plain) - 1;
    size_t blen = binding ? TCPOTA_TLS_BINDING_LEN : 0;

    if (!nonce || !device_id || id_len == 0 || id_len > TCPOTA_MAX_STR) {
        return TCPOTA_ERR_INVAL;
    }
    if (cap < n + TCPOTA_NONCE_LEN + blen + id_len) {
        return TCPOTA_ERR_NOSPC;
    }
    memcpy(out, label, n);
    memcpy(out + n, nonce, TCPOTA_NONCE_LEN);
    if (binding) {
        memcpy(out + n + TCPOTA_NONCE_LEN, binding, blen);
    }
    memcpy(out + n + TCPOTA_NONCE_LEN + blen, device_id, id_len);
    return (int)(n + TCPOTA_NONCE_LEN + blen + id_len);
}

int tcpota_msg_encode(const struct tcpota_msg *m, uint8_t *out, size_t cap)
{
    struct writer w;
    size_t plen;

    if (!m || !out || cap < TCPOTA_FRAME_OVERHEAD) {
        return TCPOTA_ERR_NOSPC;
    }
    w.p = out;
    w.cap = cap - TCPOTA_FRAME_TAIL;
    w.len = TCPOTA_FRAME_HEAD;
    w.err = 0;
    encode_body(&w, m);
    if (w.err) {
        return w.err;
    }
    plen = w.len - TCPOTA_FRAME_HEAD;
    if (plen > TCPOTA_MAX_PAYLOAD) {
        return TCPOTA_ERR_INVAL;
    }
    out[0] = m->type;
    out[1] = 0;
    tcpota_put_u16(out + 2, (uint16_t)plen);
    tcpota_put_u32(out + w.len, tcpota_crc32c(out, w.len));
    return (int)(w.len + TCPOTA_FRAME_TAIL);
}
