/* manifest.c - signed manifest layout and acceptance rules (see manifest.h). */
#include "tcpota/manifest.h"

#include <string.h>

#define HEAD 8u
enum {
    M_SIZE = 0x01, M_SHA = 0x02, M_VERSION = 0x03, M_MODEL = 0x04,
    M_COUNTER = 0x05, M_CREATED = 0x06, M_PUBKEY = 0x07,
};

static int printable(const uint8_t *p, size_t n)
{
    size_t i;
    if (n == 0 || n > 32) return 0;
    for (i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) return 0;
    }
    return 1;
}

static int take(struct tcpota_manifest *m, uint8_t tag, const uint8_t *v, uint16_t n)
{
    switch (tag) {
    case M_SIZE:
        if (n != 4) return TCPOTA_ERR_PROTO;
        m->image_size = tcpota_get_u32(v);
        return 0;
    case M_SHA:
        if (n != TCPOTA_ID_LEN) return TCPOTA_ERR_PROTO;
        m->sha256 = v;
        return 0;
    case M_VERSION:
    case M_MODEL:
        if (!printable(v, n)) return TCPOTA_ERR_PROTO;
        if (tag == M_VERSION) {
            m->version.ptr = v;
            m->version.len = n;
        } else {
            m->model.ptr = v;
            m->model.len = n;
        }
        return 0;
    case M_COUNTER:
        if (n != 4) return TCPOTA_ERR_PROTO;
        m->security_counter = tcpota_get_u32(v);
        return 0;
    case M_CREATED:
        if (n != 8) return TCPOTA_ERR_PROTO;
        m->created = (uint64_t)tcpota_get_u32(v) | ((uint64_t)tcpota_get_u32(v + 4) << 32);
        return 0;
    case M_PUBKEY:
        if (n != TCPOTA_PUBKEY_LEN) return TCPOTA_ERR_PROTO;
        m->pubkey = v;
        return 0;
    default:
        return (tag & TCPOTA_TAG_CRITICAL) ? TCPOTA_ERR_NOTSUP : 0;
    }
}

int tcpota_manifest_parse(const uint8_t *buf, size_t len, struct tcpota_manifest *m)
{
    uint32_t seen = 0;
    size_t body, off;
    int have_size = 0, have_counter = 0, have_created = 0;

    memset(m, 0, sizeof(*m));
    if (!buf || len < HEAD + TCPOTA_SIG_LEN || memcmp(buf, "tOTM", 4) != 0) {
        return TCPOTA_ERR_PROTO;
    }
    if (buf[4] != TCPOTA_MANIFEST_FORMAT || buf[5] != 0) {
        return TCPOTA_ERR_NOTSUP;
    }
    body = tcpota_get_u16(buf + 6);
    if (HEAD + body + TCPOTA_SIG_LEN != len) {
        return TCPOTA_ERR_PROTO;
    }
    for (off = HEAD; off < HEAD + body;) {
        uint8_t tag;
        uint16_t n;
        int rc;
        if (HEAD + body - off < 3) return TCPOTA_ERR_PROTO;
        tag = buf[off];
        n = tcpota_get_u16(buf + off + 1);
        if ((size_t)n > HEAD + body - off - 3) return TCPOTA_ERR_PROTO;
        if (tag < 32) {
            if (seen & (1u << tag)) return TCPOTA_ERR_PROTO;
            seen |= 1u << tag;
        }
        if ((rc = take(m, tag, buf + off + 3, n)) < 0) return rc;
        have_size |= tag == M_SIZE;
        have_counter |= tag == M_COUNTER;
        have_created |= tag == M_CREATED;
        off += 3 + (size_t)n;
    }
    if (!have_size || !m->sha256 || !m->version.ptr || !m->model.ptr || !have_counter ||
        !have_created || !m->pubkey || m->image_size == 0) {
        return TCPOTA_ERR_PROTO;
    }
    m->signed_part = buf;
    m->signed_len = HEAD + body;
    m->signature = buf + HEAD + body;
    return 0;
}

static size_t put_tlv(uint8_t *p, uint8_t tag, const void *v, uint16_t n)
{
    p[0] = tag;
    tcpota_put_u16(p + 1, n);
    memcpy(p + 3, v, n);
    return 3u + n;
}

int tcpota_manifest_encode_body(const struct tcpota_manifest *m, uint8_t *out, size_t cap)
{
    uint8_t b4[4], b8[8];
    size_t n = HEAD;

    if (!m->sha256 || !m->pubkey || !printable(m->version.ptr, m->version.len) ||
        !printable(m->model.ptr, m->model.len) || m->image_size == 0) {
        return TCPOTA_ERR_INVAL;
    }
    /* 7 TLV headers + fixed values + two strings of at most 32. */
    if (cap < HEAD + 7 * 3 + 4 + 32 + 4 + 8 + 32 + m->version.len + m->model.len) {
        return TCPOTA_ERR_NOSPC;
    }
    memcpy(out, "tOTM", 4);
    out[4] = TCPOTA_MANIFEST_FORMAT;
    out[5] = 0;
    tcpota_put_u32(b4, m->image_size);
    n += put_tlv(out + n, M_SIZE, b4, 4);
    n += put_tlv(out + n, M_SHA, m->sha256, TCPOTA_ID_LEN);
    n += put_tlv(out + n, M_VERSION, m->version.ptr, m->version.len);
    n += put_tlv(out + n, M_MODEL, m->model.ptr, m->model.len);
    tcpota_put_u32(b4, m->security_counter);
    n += put_tlv(out + n, M_COUNTER, b4, 4);
    tcpota_put_u32(b8, (uint32_t)m->created);
    tcpota_put_u32(b8 + 4, (uint32_t)(m->created >> 32));
    n += put_tlv(out + n, M_CREATED, b8, 8);
    n += put_tlv(out + n, M_PUBKEY, m->pubkey, TCPOTA_PUBKEY_LEN);
    tcpota_put_u16(out + 6, (uint16_t)(n - HEAD));
    return (int)n;
}

static int reason(const char **why, const char *text, int code)
{
    if (why) *why = text;
    return code;
}

int tcpota_manifest_check(const struct tcpota_trust *t, const uint8_t *manifest, size_t len,
                          const uint8_t *offer_id, uint32_t offer_size,
                          struct tcpota_manifest *out, const char **why)
{
    struct tcpota_manifest m;
    size_t i, mlen;
    int rc;

    if (!manifest || !len) {
        return reason(why, "offer carries no signed manifest", TCPOTA_ERR_UNSIGNED);
    }
    if ((rc = tcpota_manifest_parse(manifest, len, &m)) < 0) {
        return reason(why, "malformed manifest", rc);
    }
    for (i = 0; i < t->nkeys; i++) {
        if (memcmp(t->keys[i], m.pubkey, TCPOTA_PUBKEY_LEN) == 0) break;
    }
    if (i == t->nkeys) {
        return reason(why, "manifest signed by a key this device does not trust", TCPOTA_ERR_NOKEY);
    }
    if (!t->verify || t->verify(t->verify_ctx, m.signature, m.signed_part, m.signed_len, m.pubkey) != 0) {
        return reason(why, "manifest signature does not verify", TCPOTA_ERR_BADSIG);
    }
    if (m.image_size != offer_size || memcmp(m.sha256, offer_id, TCPOTA_ID_LEN) != 0) {
        return reason(why, "manifest size/SHA-256 differ from the offer", TCPOTA_ERR_INTEGRITY);
    }
    mlen = t->model ? strlen(t->model) : 0;
    if (mlen != m.model.len || memcmp(t->model, m.model.ptr, mlen) != 0) {
        return reason(why, "image is for another hardware model", TCPOTA_ERR_MODEL);
    }
    if (m.security_counter < t->security_counter) {
        return reason(why, "security counter below the device's (downgrade)", TCPOTA_ERR_DOWNGRADE);
    }
    if (out) *out = m;
    return 0;
}
