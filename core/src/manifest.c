/* manifest.c - signed manifest layout and acceptance rules (see manifest.h). */
#include "tcpota/manifest.h"

#include <string.h>

#define HEAD 8u
enum {
    M_SIZE = 0x01, M_SHA = 0x02, M_VERSION = 0x03, M_MODEL = 0x04,
    M_COUNTER = 0x05, M_CREATED = 0x06, M_PUBKEY = 0x07,
};

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
        if (!tcpota_printable(v, n, 1, TCPOTA_MAX_NAME)) return TCPOTA_ERR_PROTO;
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
        return TCPOTA_ERR_PROTO; /* a tag in known_tags without a rule here */
    }
}

#define ALL_TAGS (1u << M_SIZE | 1u << M_SHA | 1u << M_VERSION | 1u << M_MODEL | \
                  1u << M_COUNTER | 1u << M_CREATED | 1u << M_PUBKEY)
static const uint8_t known_tags[] = {
    M_SIZE, M_SHA, M_VERSION, M_MODEL, M_COUNTER, M_CREATED, M_PUBKEY,
};

int tcpota_manifest_parse(const uint8_t *buf, size_t len, struct tcpota_manifest *m)
{
    struct tcpota_tlv_iter it;
    const uint8_t *v;
    uint16_t n;
    uint8_t tag;
    size_t body;
    unsigned seen = 0;
    int rc;

    memset(m, 0, sizeof(*m));
    if (!buf || len < HEAD + TCPOTA_SIG_LEN || memcmp(buf, TCPOTA_MANIFEST_MAGIC, 4) != 0) {
        return TCPOTA_ERR_PROTO;
    }
    if (buf[4] != TCPOTA_MANIFEST_FORMAT || buf[5] != 0) {
        return TCPOTA_ERR_NOTSUP;
    }
    body = tcpota_get_u16(buf + 6);
    if (HEAD + body + TCPOTA_SIG_LEN != len) {
        return TCPOTA_ERR_PROTO;
    }
    tcpota_tlv_iter_init(&it, buf + HEAD, body, known_tags, sizeof(known_tags));
    while ((rc = tcpota_tlv_next(&it, &tag, &v, &n)) > 0) {
        if ((rc = take(m, tag, v, n)) < 0) return rc;
        seen |= 1u << tag;
    }
    if (rc < 0) {
        return rc;
    }
    /* Every field is required, and a size of 0 is refused. */
    if (seen != ALL_TAGS || m->image_size == 0) {
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

    if (!m->sha256 || !m->pubkey || m->image_size == 0 ||
        !tcpota_printable(m->version.ptr, m->version.len, 1, TCPOTA_MAX_NAME) ||
        !tcpota_printable(m->model.ptr, m->model.len, 1, TCPOTA_MAX_NAME)) {
        return TCPOTA_ERR_INVAL;
    }
    /* 7 TLV headers + fixed values + two strings of at most 32. */
    if (cap < HEAD + 7 * 3 + 4 + 32 + 4 + 8 + 32 + m->version.len + m->model.len) {
        return TCPOTA_ERR_NOSPC;
    }
    memcpy(out, TCPOTA_MANIFEST_MAGIC, 4);
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

/* ---- the device's acceptance rules ---------------------------------- */

/* A reason being written into the caller's buffer; always NUL-terminated,
 * cut short when the buffer is. No printf: the core links no stdio. */
struct text {
    char *p;
    size_t cap, len;
};

static void text_put(struct text *t, const char *s, size_t n)
{
    if (!t->p || !t->cap) return;
    if (n > t->cap - 1 - t->len) n = t->cap - 1 - t->len;
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

static void text_str(struct text *t, const char *s) { text_put(t, s, strlen(s)); }

static void text_bytes(struct text *t, struct tcpota_bytes b)
{
    text_put(t, (const char *)b.ptr, b.len);
}

static void text_u32(struct text *t, uint32_t v)
{
    char b[10];
    size_t n = 0;

    do {
        b[sizeof(b) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    text_put(t, b + sizeof(b) - n, n);
}

/* The first bytes of an id are enough for a person to tell two apart. */
#define SHORT_ID 8u

static void text_id(struct text *t, const uint8_t *id)
{
    char b[2 * SHORT_ID];

    tcpota_hex(b, id, SHORT_ID);
    text_put(t, b, sizeof(b));
    text_str(t, "...");
}

static int same(struct tcpota_bytes a, struct tcpota_bytes b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Every manifest field the offer repeats must say the same, or the offer
 * is not the image that was signed. Returns 0 or an error, with the field
 * and both values in *t. */
static int offer_matches(const struct tcpota_manifest *m, const struct tcpota_msg *offer,
                         struct text *t)
{
    if (!same(offer->u.offer.version, m->version)) {
        text_str(t, "offer version ");
        text_bytes(t, offer->u.offer.version);
        text_str(t, " differs from the signed manifest's ");
        text_bytes(t, m->version);
        return TCPOTA_ERR_REFUSED;
    }
    if (offer->u.offer.size != m->image_size) {
        text_str(t, "offer size ");
        text_u32(t, offer->u.offer.size);
        text_str(t, " differs from the signed manifest's ");
        text_u32(t, m->image_size);
        return TCPOTA_ERR_INTEGRITY;
    }
    if (memcmp(offer->u.offer.image_id, m->sha256, TCPOTA_ID_LEN) != 0) {
        text_str(t, "offer sha256 ");
        text_id(t, offer->u.offer.image_id);
        text_str(t, " differs from the signed manifest's ");
        text_id(t, m->sha256);
        return TCPOTA_ERR_INTEGRITY;
    }
    return 0;
}

int tcpota_manifest_check(const struct tcpota_trust *t, const struct tcpota_msg *offer,
                          struct tcpota_manifest *out, char *why, size_t why_cap)
{
    struct text w = {why, why_cap, 0};
    struct tcpota_manifest m;
    struct tcpota_bytes model;
    size_t i;
    int rc;

    text_put(&w, "", 0);
    if (!offer->u.offer.manifest.ptr || !offer->u.offer.manifest.len) {
        text_str(&w, "offer carries no signed manifest");
        return TCPOTA_ERR_UNSIGNED;
    }
    rc = tcpota_manifest_parse(offer->u.offer.manifest.ptr, offer->u.offer.manifest.len, &m);
    if (rc < 0) {
        text_str(&w, "malformed manifest");
        return rc;
    }
    for (i = 0; i < t->nkeys; i++) {
        if (memcmp(t->keys[i], m.pubkey, TCPOTA_PUBKEY_LEN) == 0) break;
    }
    if (i == t->nkeys) {
        text_str(&w, "manifest signed by a key this device does not trust");
        return TCPOTA_ERR_NOKEY;
    }
    if (!t->verify || t->verify(t->verify_ctx, m.signature, m.signed_part, m.signed_len, m.pubkey) != 0) {
        text_str(&w, "manifest signature does not verify");
        return TCPOTA_ERR_BADSIG;
    }
    if ((rc = offer_matches(&m, offer, &w)) < 0) {
        return rc;
    }
    model.ptr = (const uint8_t *)t->model;
    model.len = (uint16_t)(t->model ? strlen(t->model) : 0);
    if (!same(model, m.model)) {
        text_str(&w, "manifest model ");
        text_bytes(&w, m.model);
        text_str(&w, " differs from the device's ");
        text_bytes(&w, model);
        return TCPOTA_ERR_MODEL;
    }
    if (m.security_counter < t->security_counter) {
        text_str(&w, "manifest security counter ");
        text_u32(&w, m.security_counter);
        text_str(&w, " is below the device's ");
        text_u32(&w, t->security_counter);
        text_str(&w, " (downgrade)");
        return TCPOTA_ERR_DOWNGRADE;
    }
    if (out) *out = m;
    return 0;
}
