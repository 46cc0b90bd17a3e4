/* test_codec.c - frames and messages: the vectors of docs/protocol.md, any
 * split of the input, and every way a peer can send bad bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tcpota/codec.h"
#include "tcpota/crc32c.h"

#define MAXV 32
struct vec {
    char name[256];
    uint8_t b[512];
    size_t n;
};
static struct vec vecs[MAXV]; /* ```hex: whole frames */
static int nvecs;
static struct vec raws[MAXV]; /* ```bytes: other byte strings (auth messages) */
static int nraws;
static const char *doc_path = TCPOTA_SOURCE_DIR "/docs/protocol.md";

/* Reads every ```hex and ```bytes block of the protocol document. */
static void load_vectors(void)
{
    FILE *f = fopen(doc_path, "r");
    char line[256];
    struct vec *v = NULL;

    if (!f) {
        fprintf(stderr, "cannot open %s\n", doc_path);
        exit(1);
    }
    while (fgets(line, sizeof(line), f)) {
        int hex = strncmp(line, "```hex ", 7) == 0, bytes = strncmp(line, "```bytes ", 9) == 0;
        if (hex || bytes) {
            if ((hex ? nvecs : nraws) == MAXV) exit(1);
            v = hex ? &vecs[nvecs++] : &raws[nraws++];
            snprintf(v->name, sizeof(v->name), "%s", line + (hex ? 7 : 9));
            v->name[strcspn(v->name, "\n")] = 0;
            v->n = 0;
        } else if (v && strncmp(line, "```", 3) == 0) {
            v = NULL;
        } else if (v) {
            char *p = line, *end;
            for (;;) {
                unsigned long x = strtoul(p, &end, 16);
                if (end == p) break;
                if (x > 0xff || v->n == sizeof(v->b)) exit(1);
                v->b[v->n++] = (uint8_t)x;
                p = end;
            }
        }
    }
    fclose(f);
}

static const struct vec *find_vec(const char *name)
{
    for (int i = 0; i < nvecs; i++)
        if (strcmp(vecs[i].name, name) == 0) return &vecs[i];
    for (int i = 0; i < nraws; i++)
        if (strcmp(raws[i].name, name) == 0) return &raws[i];
    fail_msg("vector %s missing from protocol.md", name);
    return NULL;
}

static uint8_t dbuf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];

/* Feeds `in` in pieces of `step` bytes; expects exactly one frame at the end. */
static void decode_split(const uint8_t *in, size_t n, size_t step, struct tcpota_msg *m)
{
    struct tcpota_decoder d;
    struct tcpota_frame f = {0};
    size_t off = 0;

    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        int used = tcpota_decoder_feed(&d, in + off, k, &f);
        assert_true(used >= 0);
        off += (size_t)used;
        if (f.type) break;
        assert_int_equal((size_t)used, k);
    }
    assert_int_equal(off, n);
    assert_int_not_equal(f.type, 0);
    assert_int_equal(tcpota_msg_decode(&f, m), 0);
}

static void test_crc32c_check_value(void **state)
{
    (void)state;
    assert_int_equal(tcpota_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(tcpota_crc32c_update(tcpota_crc32c("1234", 4), "56789", 5), 0xe3069283u);
    assert_int_equal(tcpota_crc32c("", 0), 0);
}

static void test_vectors_roundtrip_any_split(void **state)
{
    (void)state;
    assert_true(nvecs >= 12);
    for (int i = 0; i < nvecs; i++) {
        const struct vec *v = &vecs[i];
        uint8_t out[512];
        /* Whole, byte by byte, and split in two at every point. */
        for (size_t step = 1; step <= v->n; step = step == 1 ? v->n : step + 1) {
            struct tcpota_msg m;
            decode_split(v->b, v->n, step, &m);
            int n = tcpota_msg_encode(&m, out, sizeof(out));
            assert_int_equal(n, (int)v->n);
            assert_memory_equal(out, v->b, v->n);
        }
        for (size_t cut = 1; cut < v->n; cut++) {
            struct tcpota_decoder d;
            struct tcpota_frame f;
            assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
            assert_int_equal(tcpota_decoder_feed(&d, v->b, cut, &f), (int)cut);
            assert_int_equal(f.type, 0);
            assert_int_equal(tcpota_decoder_feed(&d, v->b + cut, v->n - cut, &f), (int)(v->n - cut));
            assert_int_equal(f.type, v->b[0]);
        }
    }
}

static void test_vector_fields(void **state)
{
    struct tcpota_msg m;
    (void)state;

    decode_split(find_vec("HELLO resume")->b, find_vec("HELLO resume")->n, 1000, &m);
    assert_int_equal(m.type, TCPOTA_T_HELLO);
    assert_int_equal(m.u.hello.device_id.len, 5);
    assert_memory_equal(m.u.hello.device_id.ptr, "dev-1", 5);
    assert_memory_equal(m.u.hello.model.ptr, "esp32", 5);
    assert_int_equal(m.u.hello.resume_size, 1048576);
    assert_int_equal(m.u.hello.resume_offset, 65536);
    assert_int_equal(m.u.hello.resume_id[0], 0xa0);
    assert_int_equal(m.u.hello.max_payload, 4096);
    assert_null(m.u.hello.report_id);

    decode_split(find_vec("OFFER")->b, find_vec("OFFER")->n, 1000, &m);
    assert_int_equal(m.u.offer.size, 1048576);
    assert_int_equal(m.u.offer.start, 65536);
    assert_int_equal(m.u.offer.chunk, 4092);
    assert_memory_equal(m.u.offer.version.ptr, "1.1.0", 5);

    decode_split(find_vec("DATA")->b, find_vec("DATA")->n, 1000, &m);
    assert_int_equal(m.u.data.offset, 65536);
    assert_int_equal(m.u.data.bytes.len, 4);
    assert_memory_equal(m.u.data.bytes.ptr, "abcd", 4);

    decode_split(find_vec("ERROR")->b, find_vec("ERROR")->n, 1000, &m);
    assert_int_equal(m.u.error.code, 74);

    decode_split(find_vec("DECLINE")->b, find_vec("DECLINE")->n, 1000, &m);
    assert_int_equal(m.u.decline.reason, 28);
}

static void test_data_head_matches_encoder(void **state)
{
    uint8_t head[8], frame[64];
    struct tcpota_msg m;
    (void)state;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_DATA;
    m.u.data.offset = 0x12345678;
    m.u.data.bytes.ptr = (const uint8_t *)"hello";
    m.u.data.bytes.len = 5;
    assert_int_equal(tcpota_msg_encode(&m, frame, sizeof(frame)), 8 + 4 + 5);
    assert_int_equal(tcpota_data_head(head, 0x12345678, 5), 8);
    assert_memory_equal(head, frame, 8);
    uint32_t crc = tcpota_crc32c_update(tcpota_crc32c(head, 8), "hello", 5);
    assert_int_equal(crc, tcpota_get_u32(frame + 13));
    assert_int_equal(tcpota_data_head(head, 0, TCPOTA_MAX_PAYLOAD), TCPOTA_ERR_INVAL);
}

/* Flip each bit of each vector: the decoder must refuse the frame (or, for
 * the length field, still be waiting for bytes); never accept it. */
static void test_every_bit_flip_is_refused(void **state)
{
    (void)state;
    for (int i = 0; i < nvecs; i++) {
        const struct vec *v = &vecs[i];
        for (size_t byte = 0; byte < v->n; byte++) {
            for (int bit = 0; bit < 8; bit++) {
                uint8_t b[512];
                struct tcpota_decoder d;
                struct tcpota_frame f;
                memcpy(b, v->b, v->n);
                b[byte] ^= (uint8_t)(1u << bit);
                assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
                int rc = tcpota_decoder_feed(&d, b, v->n, &f);
                if (rc >= 0) {
                    assert_int_equal(f.type, 0); /* length grew: incomplete */
                    assert_true(byte == 2 || byte == 3);
                }
            }
        }
    }
}

/* A DATA frame that arrives whole is handed out where it lies (its payload
 * points into the input: no copy of the bulk of a stream); one that comes
 * in pieces, and every other frame, from the decoder's buffer. Two frames
 * in one input: the second decodes after the first. */
static void test_whole_data_is_not_copied(void **state)
{
    const struct vec *data = find_vec("DATA"), *offer = find_vec("OFFER");
    uint8_t in[1024];
    struct tcpota_decoder d;
    struct tcpota_frame f;
    (void)state;

    memcpy(in, data->b, data->n);
    memcpy(in + data->n, offer->b, offer->n);
    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, in, data->n + offer->n, &f), (int)data->n);
    assert_int_equal(f.type, TCPOTA_T_DATA);
    assert_ptr_equal(f.payload, in + TCPOTA_FRAME_HEAD);
    assert_int_equal(tcpota_decoder_feed(&d, in + data->n, offer->n, &f), (int)offer->n);
    assert_int_equal(f.type, TCPOTA_T_OFFER);
    assert_ptr_equal(f.payload, dbuf + TCPOTA_FRAME_HEAD);

    tcpota_decoder_reset(&d);
    assert_int_equal(tcpota_decoder_feed(&d, in, 5, &f), 5);
    assert_int_equal(tcpota_decoder_feed(&d, in + 5, data->n - 5, &f), (int)data->n - 5);
    assert_int_equal(f.type, TCPOTA_T_DATA);
    assert_ptr_equal(f.payload, dbuf + TCPOTA_FRAME_HEAD);
    assert_memory_equal(f.payload + 4, "abcd", 4);
}

static void test_oversized_length_refused_at_header(void **state)
{
    static uint8_t small[520];
    struct tcpota_decoder d;
    struct tcpota_frame f;
    uint8_t head[4] = {TCPOTA_T_DATA, 0, 0x00, 0x40}; /* 16384 > 512 */
    (void)state;

    assert_int_equal(tcpota_decoder_init(&d, small, sizeof(small)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, head, 3, &f), 3);
    assert_int_equal(tcpota_decoder_feed(&d, head + 3, 1, &f), TCPOTA_ERR_TOOBIG);
    head[2] = 0xff; head[3] = 0xff;
    tcpota_decoder_reset(&d);
    assert_int_equal(tcpota_decoder_feed(&d, head, 4, &f), TCPOTA_ERR_TOOBIG);
    assert_int_equal(tcpota_decoder_init(&d, small, 100), TCPOTA_ERR_INVAL);
}

static void test_bad_header_fields(void **state)
{
    struct tcpota_decoder d;
    struct tcpota_frame f;
    uint8_t flags[4] = {TCPOTA_T_PING, 1, 4, 0};
    uint8_t zero[4] = {0, 0, 0, 0};
    (void)state;

    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, flags, 4, &f), TCPOTA_ERR_PROTO);
    tcpota_decoder_reset(&d);
    assert_int_equal(tcpota_decoder_feed(&d, zero, 4, &f), TCPOTA_ERR_PROTO);
}

/* Builds a frame with the given payload and a right CRC, then decodes it. */
static int decode_payload(uint8_t type, const uint8_t *p, size_t n, struct tcpota_msg *m)
{
    static uint8_t b[1024];
    struct tcpota_decoder d;
    struct tcpota_frame f;

    b[0] = type; b[1] = 0;
    tcpota_put_u16(b + 2, (uint16_t)n);
    memcpy(b + 4, p, n);
    tcpota_put_u32(b + 4 + n, tcpota_crc32c(b, 4 + n));
    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, b, n + 8, &f), (int)(n + 8));
    assert_int_equal(f.type, type);
    return tcpota_msg_decode(&f, m);
}

/* An OFFER whose CHUNK is 0 (no DATA could carry a byte) is refused. */
static void test_offer_chunk_zero(void **state)
{
    static const uint8_t chunk[] = {TCPOTA_TAG_CHUNK, 2, 0, 0xfc, 0x0f}; /* 4092 */
    const struct vec *o = find_vec("OFFER");
    struct tcpota_msg m;
    uint8_t p[256];
    size_t n = o->n - 8, i;
    (void)state;

    assert_true(n <= sizeof(p));
    memcpy(p, o->b + 4, n);
    assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n, &m), 0);
    for (i = 0; i + sizeof(chunk) <= n && memcmp(p + i, chunk, sizeof(chunk)) != 0; i++) {
    }
    assert_true(i + sizeof(chunk) <= n); /* the vector has its CHUNK */
    p[i + 3] = 0;
    p[i + 4] = 0;
    assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO);
}

/* A TLV whose length runs 1, 2 or 3 bytes past what is left, in a heap
 * buffer of exactly its size (ASan sees a read past it): refused at that
 * TLV, before any byte of its value is handed out (a review's mutant took
 * lengths up to TLV_HEAD past the end and walked on beyond the frame). One
 * that ends exactly at the end is taken. */
static void test_tlv_length_at_the_end(void **state)
{
    static const uint8_t known[] = {TCPOTA_TAG_DEVICE_ID};
    struct tcpota_tlv_iter it;
    const uint8_t *val;
    uint16_t len;
    uint8_t tag;
    (void)state;

    for (unsigned past = 0; past <= 3; past++) {
        uint8_t *b = malloc(5);
        assert_non_null(b);
        memcpy(b, "\x01\x00\x00xy", 5); /* DEVICE_ID, 2 bytes of value there */
        b[1] = (uint8_t)(2 + past);
        tcpota_tlv_iter_init(&it, b, 5, known, sizeof known);
        if (past == 0) {
            assert_int_equal(tcpota_tlv_next(&it, &tag, &val, &len), 1);
            assert_int_equal(len, 2);
            assert_int_equal(tcpota_tlv_next(&it, &tag, &val, &len), 0);
        } else {
            assert_int_equal(tcpota_tlv_next(&it, &tag, &val, &len), TCPOTA_ERR_PROTO);
        }
        free(b);
    }
}

static void test_tlv_rules(void **state)
{
    struct tcpota_msg m;
    const struct vec *h = find_vec("HELLO fresh");
    uint8_t p[256];
    size_t n = h->n - 8;
    (void)state;

    memcpy(p, h->b + 4, n);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), 0);
    /* unknown optional tag: skipped */
    memcpy(p + n, "\x40\x02\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), 0);
    /* unknown critical tag: refused */
    memcpy(p + n, "\xc0\x02\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), TCPOTA_ERR_NOTSUP);
    /* repeated tag: the structure, no field's value (bad_tag 0) */
    memcpy(p + n, "\x02\x02\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(m.bad_tag, 0);
    /* a field and its critical twin are one field: refused in either order */
    memcpy(p + n, "\x82\x02\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), TCPOTA_ERR_PROTO);
    p[4] |= TCPOTA_TAG_CRITICAL; /* DEVICE_ID, sent critical: understood */
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), 0);
    assert_memory_equal(m.u.hello.device_id.ptr, "dev-1", 5);
    memcpy(p + n, "\x01\x02\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), TCPOTA_ERR_PROTO);
    p[4] &= (uint8_t)~TCPOTA_TAG_CRITICAL;
    /* an unknown tag repeated is refused too, even if optional */
    memcpy(p + n, "\x40\x00\x00\xc0\x00\x00", 6);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 6, &m), TCPOTA_ERR_PROTO);
    /* TLV length past the end */
    memcpy(p + n, "\x40\x09\x00xy", 5);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 5, &m), TCPOTA_ERR_PROTO);
    /* truncated TLV header */
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n + 2, &m), TCPOTA_ERR_PROTO);
    /* missing required DEVICE_ID: drop the first TLV (3 + 5 bytes) */
    memmove(p + 4, p + 12, n - 12);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n - 8, &m), TCPOTA_ERR_PROTO);
    /* non-printable device id: the field named, for the server's log */
    memcpy(p, h->b + 4, n);
    p[7] = 0x01;
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(m.type, TCPOTA_T_HELLO);
    assert_int_equal(m.bad_tag, TCPOTA_TAG_DEVICE_ID);
    /* fixed part too short, unknown type, empty DATA */
    assert_int_equal(decode_payload(TCPOTA_T_ACK, p, 3, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(decode_payload(0x7f, p, 3, &m), TCPOTA_ERR_NOTSUP);
    assert_int_equal(decode_payload(TCPOTA_T_DATA, p, 4, &m), TCPOTA_ERR_PROTO);
}

/* Appends one TLV to the payload p of n bytes; returns the new length. */
static size_t put_tlv(uint8_t *p, size_t n, uint8_t tag, const void *v, size_t len)
{
    p[n] = tag;
    tcpota_put_u16(p + n + 1, (uint16_t)len);
    memcpy(p + n + 3, v, len);
    return n + 3 + len;
}

/* Decodes a payload as a frame of `type` without a decoder (any length). */
static int decode_raw(uint8_t type, const uint8_t *p, size_t n, struct tcpota_msg *m)
{
    struct tcpota_frame f = {type, (uint16_t)n, p};
    return tcpota_msg_decode(&f, m);
}

/* Writes the smallest valid HELLO payload into p (its fixed part and the
 * three strings of one byte); returns its length, where TLVs may follow. */
static size_t minimal_hello(uint8_t *p)
{
    size_t n;

    p[0] = 1; p[1] = 1; p[2] = 0; p[3] = 0;
    n = put_tlv(p, 4, TCPOTA_TAG_DEVICE_ID, "d", 1);
    n = put_tlv(p, n, TCPOTA_TAG_MODEL, "m", 1);
    return put_tlv(p, n, TCPOTA_TAG_VERSION, "v", 1);
}

/* A HELLO with the three strings of the given lengths (0: left out). */
static int hello_strings(size_t id_len, size_t model_len, size_t version_len, struct tcpota_msg *m)
{
    static uint8_t p[512];
    uint8_t s[128];
    size_t n = 4;

    memset(s, 'a', sizeof(s));
    p[0] = 1; p[1] = 1; p[2] = 0; p[3] = 0;
    if (id_len) n = put_tlv(p, n, TCPOTA_TAG_DEVICE_ID, s, id_len);
    if (model_len) n = put_tlv(p, n, TCPOTA_TAG_MODEL, s, model_len);
    if (version_len) n = put_tlv(p, n, TCPOTA_TAG_VERSION, s, version_len);
    return decode_raw(TCPOTA_T_HELLO, p, n, m);
}

/* HELLO's strings: a server copies them into buffers of TCPOTA_MAX_STR + 1
 * and TCPOTA_MAX_NAME + 1 bytes, so one byte longer than the limit is
 * refused; all three are required. */
static void test_hello_string_limits(void **state)
{
    struct tcpota_msg m;
    (void)state;

    assert_int_equal(hello_strings(TCPOTA_MAX_STR, 32, 32, &m), 0);
    assert_int_equal(m.u.hello.device_id.len, TCPOTA_MAX_STR);
    assert_int_equal(m.u.hello.model.len, 32);
    assert_int_equal(m.u.hello.version.len, 32);
    assert_int_equal(hello_strings(TCPOTA_MAX_STR + 1, 32, 32, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(hello_strings(TCPOTA_MAX_STR, 33, 32, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(hello_strings(TCPOTA_MAX_STR, 32, 33, &m), TCPOTA_ERR_PROTO);
    /* each of the three is required */
    assert_int_equal(hello_strings(0, 1, 1, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(hello_strings(1, 0, 1, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(hello_strings(1, 1, 0, &m), TCPOTA_ERR_PROTO);
    /* printable ASCII only, each of the three: a byte of 0x80 or more (a
     * review: "dev\xffx" was registered, and the API could not list it),
     * one below 0x20 and DEL are refused; the edges 0x20 and 0x7e taken. */
    {
        static const uint8_t bad[] = {0x7f, 0x80, 0xff, 0x1f};
        static const uint8_t tags[] = {TCPOTA_TAG_DEVICE_ID, TCPOTA_TAG_MODEL, TCPOTA_TAG_VERSION};
        uint8_t p[64];
        char s[] = "dev-x";
        for (size_t t = 0; t < sizeof tags; t++) {
            for (size_t b = 0; b < sizeof bad; b++) {
                size_t n = 4;
                p[0] = 1; p[1] = 1; p[2] = 0; p[3] = 0;
                for (size_t k = 0; k < sizeof tags; k++) {
                    s[3] = k == t ? (char)bad[b] : 'x';
                    n = put_tlv(p, n, tags[k], s, 5);
                }
                assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
            }
        }
        s[3] = ' ';
        s[4] = '~';
        p[0] = 1; p[1] = 1; p[2] = 0; p[3] = 0;
        {
            size_t n = put_tlv(p, 4, TCPOTA_TAG_DEVICE_ID, s, 5);
            n = put_tlv(p, n, TCPOTA_TAG_MODEL, s, 5);
            n = put_tlv(p, n, TCPOTA_TAG_VERSION, s, 5);
            assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), 0);
        }
    }
}

/* The fixed-size TLVs take their exact size only: a longer RUNNING_ID or
 * RESUME, or a CHUNK of 3 bytes, is refused, not read in part. */
static void test_tlv_exact_sizes(void **state)
{
    uint8_t p[256], v[64], off[TCPOTA_ID_LEN + 8];
    struct tcpota_msg m;
    size_t base, n;
    (void)state;

    memset(v, 0x11, sizeof(v));
    base = minimal_hello(p);
    n = put_tlv(p, base, TCPOTA_TAG_RUNNING_ID, v, TCPOTA_ID_LEN);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), 0);
    assert_non_null(m.u.hello.running_id);
    n = put_tlv(p, base, TCPOTA_TAG_RUNNING_ID, v, TCPOTA_ID_LEN + 1);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
    n = put_tlv(p, base, TCPOTA_TAG_RUNNING_ID, v, TCPOTA_ID_LEN - 1);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);

    memset(off, 0, sizeof(off));
    tcpota_put_u32(off + TCPOTA_ID_LEN, 8192);
    tcpota_put_u32(off + TCPOTA_ID_LEN + 4, 4096);
    n = put_tlv(p, base, TCPOTA_TAG_RESUME, off, sizeof(off));
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), 0);
    assert_int_equal(m.u.hello.resume_offset, 4096);
    memcpy(v, off, sizeof(off));
    v[sizeof(off)] = 0;
    n = put_tlv(p, base, TCPOTA_TAG_RESUME, v, sizeof(off) + 1);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);

    /* OFFER: id, size 100, start 0, VERSION, then CHUNK of 2 or 3 bytes */
    memset(p, 0x22, TCPOTA_ID_LEN);
    tcpota_put_u32(p + TCPOTA_ID_LEN, 100);
    tcpota_put_u32(p + TCPOTA_ID_LEN + 4, 0);
    base = put_tlv(p, TCPOTA_ID_LEN + 8, TCPOTA_TAG_VERSION, "2.0", 3);
    n = put_tlv(p, base, TCPOTA_TAG_CHUNK, "\x00\x10", 2);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, n, &m), 0);
    assert_int_equal(m.u.offer.chunk, 4096);
    n = put_tlv(p, base, TCPOTA_TAG_CHUNK, "\x00\x10\x00", 3);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO);
}

/* An OFFER must name its version (the device compares and keeps it), and
 * its MANIFEST is at most TCPOTA_MAX_MANIFEST bytes. */
static void test_offer_version_and_manifest_limit(void **state)
{
    static uint8_t p[TCPOTA_MAX_MANIFEST + 128], man[TCPOTA_MAX_MANIFEST + 1];
    struct tcpota_msg m;
    size_t base, n;
    (void)state;

    memset(man, 0x5a, sizeof(man));
    memset(p, 0x22, TCPOTA_ID_LEN);
    tcpota_put_u32(p + TCPOTA_ID_LEN, 100);
    tcpota_put_u32(p + TCPOTA_ID_LEN + 4, 0);
    n = put_tlv(p, TCPOTA_ID_LEN + 8, TCPOTA_TAG_CHUNK, "\x00\x10", 2);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO); /* no VERSION */
    base = put_tlv(p, n, TCPOTA_TAG_VERSION, "2.0", 3);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, base, &m), 0);
    n = put_tlv(p, base, TCPOTA_TAG_MANIFEST, man, TCPOTA_MAX_MANIFEST);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, n, &m), 0);
    assert_int_equal(m.u.offer.manifest.len, TCPOTA_MAX_MANIFEST);
    n = put_tlv(p, base, TCPOTA_TAG_MANIFEST, man, TCPOTA_MAX_MANIFEST + 1);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO);
}

/* MESSAGE is at most TCPOTA_MAX_MESSAGE bytes: a device copies an ERROR's
 * into a buffer of TCPOTA_MAX_MESSAGE + 1. */
static void test_message_limit(void **state)
{
    static uint8_t p[TCPOTA_MAX_MESSAGE + 64], s[TCPOTA_MAX_MESSAGE + 1];
    struct tcpota_msg m;
    size_t n;
    (void)state;

    memset(s, 'x', sizeof(s));
    p[0] = 0; p[1] = 5;
    n = put_tlv(p, 2, TCPOTA_TAG_MESSAGE, s, TCPOTA_MAX_MESSAGE);
    assert_int_equal(decode_raw(TCPOTA_T_ERROR, p, n, &m), 0);
    assert_int_equal(m.u.error.message.len, TCPOTA_MAX_MESSAGE);
    n = put_tlv(p, 2, TCPOTA_TAG_MESSAGE, s, TCPOTA_MAX_MESSAGE + 1);
    assert_int_equal(decode_raw(TCPOTA_T_ERROR, p, n, &m), TCPOTA_ERR_PROTO);
    memset(p, 0x22, TCPOTA_ID_LEN);
    p[TCPOTA_ID_LEN] = 0; p[TCPOTA_ID_LEN + 1] = 1;
    n = put_tlv(p, TCPOTA_ID_LEN + 2, TCPOTA_TAG_MESSAGE, s, TCPOTA_MAX_MESSAGE + 1);
    assert_int_equal(decode_raw(TCPOTA_T_DECLINE, p, n, &m), TCPOTA_ERR_PROTO);
}

/* WELCOME's second byte is reserved: anything but 0 is refused. */
static void test_welcome_reserved_byte(void **state)
{
    uint8_t p[4] = {TCPOTA_PROTO_VERSION, 0, 1, 0}; /* features: AUTH */
    struct tcpota_msg m;
    (void)state;

    assert_int_equal(decode_raw(TCPOTA_T_WELCOME, p, 4, &m), 0);
    assert_int_equal(m.u.welcome.features, TCPOTA_F_AUTH);
    p[1] = 1;
    assert_int_equal(decode_raw(TCPOTA_T_WELCOME, p, 4, &m), TCPOTA_ERR_PROTO);
}

/* Each tag belongs to its messages: the decoder fills a union by message
 * type, so a HELLO field in an OFFER (or the reverse) would overwrite
 * another message's fields. Such a TLV is refused. */
static void test_tag_in_wrong_message_refused(void **state)
{
    uint8_t h[256], o[256], id[TCPOTA_ID_LEN + 8];
    struct tcpota_msg m;
    size_t hn, on, n;
    (void)state;

    memset(id, 0, sizeof(id));
    hn = minimal_hello(h);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, h, hn, &m), 0);
    memset(o, 0x22, TCPOTA_ID_LEN);
    tcpota_put_u32(o + TCPOTA_ID_LEN, 100);
    tcpota_put_u32(o + TCPOTA_ID_LEN + 4, 0);
    on = put_tlv(o, TCPOTA_ID_LEN + 8, TCPOTA_TAG_VERSION, "2.0", 3);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, o, on, &m), 0);

    /* HELLO's fields in an OFFER */
    n = put_tlv(o, on, TCPOTA_TAG_DEVICE_ID, "d", 1);
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, o, n, &m), TCPOTA_ERR_PROTO);
    n = put_tlv(o, on, TCPOTA_TAG_RESUME, id, sizeof(id));
    assert_int_equal(decode_raw(TCPOTA_T_OFFER, o, n, &m), TCPOTA_ERR_PROTO);
    /* OFFER's fields in a HELLO */
    n = put_tlv(h, hn, TCPOTA_TAG_MANIFEST, "abc", 3);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, h, n, &m), TCPOTA_ERR_PROTO);
    n = put_tlv(h, hn, TCPOTA_TAG_CHUNK, "\x00\x10", 2);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, h, n, &m), TCPOTA_ERR_PROTO);
    /* MESSAGE only in ERROR and DECLINE */
    n = put_tlv(h, hn, TCPOTA_TAG_MESSAGE, "hi", 2);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, h, n, &m), TCPOTA_ERR_PROTO);
}

/* The other fixed-size TLVs: MAX_PAYLOAD and IDLE_TIMEOUT 2 bytes,
 * RETRY_AFTER 4, REPORT 34; and a HELLO string is at least 1 byte. */
static void test_more_exact_sizes(void **state)
{
    uint8_t p[256], v[64];
    struct tcpota_msg m;
    size_t base, n;
    (void)state;

    memset(v, 0x02, sizeof(v));
    base = minimal_hello(p);
    n = put_tlv(p, base, TCPOTA_TAG_MAX_PAYLOAD, v, 2);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), 0);
    n = put_tlv(p, base, TCPOTA_TAG_MAX_PAYLOAD, v, 3);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
    n = put_tlv(p, base, TCPOTA_TAG_REPORT, v, TCPOTA_ID_LEN + 2);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), 0);
    n = put_tlv(p, base, TCPOTA_TAG_REPORT, v, TCPOTA_ID_LEN + 3);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
    /* an empty DEVICE_ID */
    n = put_tlv(p, 4, TCPOTA_TAG_DEVICE_ID, "", 0);
    n = put_tlv(p, n, TCPOTA_TAG_MODEL, "m", 1);
    n = put_tlv(p, n, TCPOTA_TAG_VERSION, "v", 1);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);

    p[0] = TCPOTA_PROTO_VERSION; p[1] = 0; p[2] = 0; p[3] = 0;
    n = put_tlv(p, 4, TCPOTA_TAG_IDLE_TIMEOUT, v, 2);
    assert_int_equal(decode_raw(TCPOTA_T_WELCOME, p, n, &m), 0);
    n = put_tlv(p, 4, TCPOTA_TAG_IDLE_TIMEOUT, v, 3);
    assert_int_equal(decode_raw(TCPOTA_T_WELCOME, p, n, &m), TCPOTA_ERR_PROTO);
    n = put_tlv(p, 0, TCPOTA_TAG_RETRY_AFTER, v, 4);
    assert_int_equal(decode_raw(TCPOTA_T_NO_UPDATE, p, n, &m), 0);
    n = put_tlv(p, 0, TCPOTA_TAG_RETRY_AFTER, v, 5);
    assert_int_equal(decode_raw(TCPOTA_T_NO_UPDATE, p, n, &m), TCPOTA_ERR_PROTO);
}

/* A payload that ends inside a TLV header (2 of its 3 bytes) is refused
 * by its length. The bytes after the payload are set here so that a
 * decoder reading past it would find a length of 0 and then an unknown
 * critical tag (NOTSUP), not depend on whatever memory follows. */
static void test_truncated_tlv_header(void **state)
{
    uint8_t p[64];
    struct tcpota_msg m;
    size_t n;
    (void)state;

    n = minimal_hello(p);
    memcpy(p + n, "\x40\x00" "\x00" "\xc1\x00\x00", 6);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n + 6, &m), TCPOTA_ERR_NOTSUP);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n + 2, &m), TCPOTA_ERR_PROTO);
    assert_int_equal(decode_raw(TCPOTA_T_HELLO, p, n + 1, &m), TCPOTA_ERR_PROTO);
}

/* The value of tag in a HELLO payload p of n bytes (after its 4-byte fixed
 * part), or NULL. */
static uint8_t *hello_tlv(uint8_t *p, size_t n, uint8_t tag)
{
    for (size_t i = 4; i + 3 <= n; i += 3 + tcpota_get_u16(p + i + 1)) {
        if ((p[i] & (uint8_t)~TCPOTA_TAG_CRITICAL) == tag) {
            return p + i + 3;
        }
    }
    return NULL;
}

/* RESUME's offset no further than its size; MAX_PAYLOAD at least the
 * minimum every peer takes. */
static void test_hello_resume_and_max_payload(void **state)
{
    const struct vec *h = find_vec("HELLO resume");
    struct tcpota_msg m;
    uint8_t p[256], *v;
    size_t n = h->n - 8;
    (void)state;

    memcpy(p, h->b + 4, n);
    v = hello_tlv(p, n, TCPOTA_TAG_RESUME);
    assert_non_null(v);
    tcpota_put_u32(v + TCPOTA_ID_LEN + 4, 1048576); /* offset == size: all there */
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), 0);
    assert_int_equal(m.u.hello.resume_offset, 1048576);
    tcpota_put_u32(v + TCPOTA_ID_LEN + 4, 1048577); /* past the end */
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);

    memcpy(p, h->b + 4, n);
    v = hello_tlv(p, n, TCPOTA_TAG_MAX_PAYLOAD);
    assert_non_null(v);
    tcpota_put_u16(v, TCPOTA_MIN_PAYLOAD);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), 0);
    assert_int_equal(m.u.hello.max_payload, TCPOTA_MIN_PAYLOAD);
    tcpota_put_u16(v, TCPOTA_MIN_PAYLOAD - 1);
    assert_int_equal(decode_payload(TCPOTA_T_HELLO, p, n, &m), TCPOTA_ERR_PROTO);
}

/* A payload shorter than its type's fixed part is refused by its length,
 * whatever bytes follow it in memory: here an unknown critical TLV sits
 * where the TLVs would start, which a decoder that read past the payload
 * would answer with NOTSUP. */
static void test_short_fixed_part(void **state)
{
    static const uint8_t b[] = {0, 0, 0, 0, 0xc0, 0, 0};
    struct tcpota_frame f = {TCPOTA_T_ACK, TCPOTA_ACK_FIXED - 1, b};
    struct tcpota_msg m;
    (void)state;

    assert_int_equal(tcpota_msg_decode(&f, &m), TCPOTA_ERR_PROTO);
    f.len = TCPOTA_ACK_FIXED + 3; /* the same bytes, all of them its own */
    assert_int_equal(tcpota_msg_decode(&f, &m), TCPOTA_ERR_NOTSUP);
}

/* NO_UPDATE's WHY: carried through encode and decode, refused in another
 * message or at another length, and absent when 0. */
static void test_no_update_why(void **state)
{
    struct tcpota_msg m, out;
    struct tcpota_decoder d;
    struct tcpota_frame f;
    uint8_t b[64];
    int n;
    (void)state;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    m.u.no_update.why = TCPOTA_WHY_HELD;
    m.u.no_update.retry_after_s = 60;
    n = tcpota_msg_encode(&m, b, sizeof(b));
    assert_int_equal(n, 8 + 7 + 5);
    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, b, (size_t)n, &f), n);
    assert_int_equal(tcpota_msg_decode(&f, &out), 0);
    assert_int_equal(out.u.no_update.why, TCPOTA_WHY_HELD);
    assert_int_equal(out.u.no_update.retry_after_s, 60);
    m.u.no_update.why = 0;
    m.u.no_update.retry_after_s = 0;
    assert_int_equal(tcpota_msg_encode(&m, b, sizeof(b)), 8); /* nothing but the head */
    /* a WHY of another length, or in another message: refused */
    assert_int_equal(decode_payload(TCPOTA_T_NO_UPDATE, (const uint8_t *)"\x0d\x01\x00\x03", 4, &out),
                     TCPOTA_ERR_PROTO);
    assert_int_equal(decode_payload(TCPOTA_T_NO_UPDATE, (const uint8_t *)"\x0d\x02\x00\x06\x00", 5, &out), 0);
    assert_int_equal(out.u.no_update.why, TCPOTA_WHY_LATER);
    assert_int_equal(decode_payload(TCPOTA_T_PING, (const uint8_t *)"\0\0\0\1\x0d\x02\x00\x00\x03", 9, &out),
                     TCPOTA_ERR_PROTO);
    /* a value this device does not know is still a NO_UPDATE */
    assert_int_equal(decode_payload(TCPOTA_T_NO_UPDATE, (const uint8_t *)"\x0d\x02\x00\x00\x01", 5, &out), 0);
    assert_int_equal(out.u.no_update.why, 256);
    assert_string_equal(tcpota_why_str(256), "the server gave no reason");
    assert_string_equal(tcpota_why_str(TCPOTA_WHY_RUNS), "it runs the server's image");
    /* A halted rollout answers WHY_LATER too: the device must not say only
     * "wave, or paused" to an operator looking for why nothing moves. */
    assert_non_null(strstr(tcpota_why_str(TCPOTA_WHY_LATER), "halted"));
}

static void test_offer_sanity(void **state)
{
    struct tcpota_msg m;
    const struct vec *o = find_vec("OFFER");
    uint8_t p[256];
    size_t n = o->n - 8;
    (void)state;

    memcpy(p, o->b + 4, n);
    tcpota_put_u32(p + 36, 2000000); /* start past size */
    assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO);
    memcpy(p, o->b + 4, n);
    tcpota_put_u32(p + 32, 0); /* empty image */
    tcpota_put_u32(p + 36, 0);
    assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n, &m), TCPOTA_ERR_PROTO);
}

/* Two MANIFEST fields, one of them critical: the last must not win. */
static void test_offer_manifest_twice(void **state)
{
    struct tcpota_msg m;
    const struct vec *o = find_vec("OFFER");
    static const uint8_t tags[2][2] = {{0x0c, 0x8c}, {0x8c, 0x0c}};
    uint8_t p[256];
    size_t n = o->n - 8;
    (void)state;

    for (int i = 0; i < 2; i++) {
        memcpy(p, o->b + 4, n);
        memcpy(p + n, "\x0c\x03\x00" "abc" "\x0c\x03\x00" "xyz", 12);
        p[n] = tags[i][0];
        p[n + 6] = tags[i][1];
        assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n + 6, &m), 0);
        assert_memory_equal(m.u.offer.manifest.ptr, "abc", 3);
        assert_int_equal(decode_payload(TCPOTA_T_OFFER, p, n + 12, &m), TCPOTA_ERR_PROTO);
    }
}

/* The authentication vectors of protocol.md section 8: the message the
 * HMAC covers over plain TCP and inside TLS, and the HMAC itself. */
static void test_auth_vectors(void **state)
{
    uint8_t secret[32], nonce[32], binding[32], msg[TCPOTA_AUTH_MSG_MAX], mac[32];
    static const char *const kinds[2] = {"plain", "tls"};
    char name[64];
    (void)state;

    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)i;
        nonce[i] = (uint8_t)(0x40 + i);
        binding[i] = (uint8_t)(0x80 + i);
    }
    for (int k = 0; k < 2; k++) {
        const struct vec *want;
        int n = tcpota_auth_message(nonce, k ? binding : NULL, (const uint8_t *)"dev-1", 5, msg,
                                    sizeof(msg));
        snprintf(name, sizeof(name), "auth message %s", kinds[k]);
        want = find_vec(name);
        assert_int_equal(n, (int)want->n);
        assert_memory_equal(msg, want->b, want->n);
        crypto_auth_hmacsha256(mac, msg, (unsigned long long)n, secret);
        snprintf(name, sizeof(name), "auth mac %s", kinds[k]);
        want = find_vec(name);
        assert_int_equal(want->n, 32);
        assert_memory_equal(mac, want->b, 32);
    }
    /* The longest message fits TCPOTA_AUTH_MSG_MAX; a smaller buffer is refused. */
    {
        uint8_t id[TCPOTA_MAX_STR];
        memset(id, 'a', sizeof(id));
        int n = tcpota_auth_message(nonce, binding, id, sizeof(id), msg, sizeof(msg));
        assert_true(n > 0 && (size_t)n <= TCPOTA_AUTH_MSG_MAX);
        assert_int_equal(tcpota_auth_message(nonce, binding, id, sizeof(id), msg, (size_t)n - 1),
                         TCPOTA_ERR_NOSPC);
    }
    /* A device id longer than TCPOTA_MAX_STR, or empty, is refused. */
    {
        uint8_t id[TCPOTA_MAX_STR + 1];
        memset(id, 'a', sizeof(id));
        assert_int_equal(tcpota_auth_message(nonce, NULL, id, sizeof(id), msg, sizeof(msg)),
                         TCPOTA_ERR_INVAL);
        assert_int_equal(tcpota_auth_message(nonce, NULL, id, 0, msg, sizeof(msg)), TCPOTA_ERR_INVAL);
    }
}

static void test_encode_limits(void **state)
{
    struct tcpota_msg m;
    uint8_t out[512];
    char longs[80];
    (void)state;

    memset(longs, 'a', sizeof(longs));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_HELLO;
    m.u.hello.device_id.ptr = (const uint8_t *)longs;
    m.u.hello.device_id.len = 65;
    m.u.hello.model.ptr = (const uint8_t *)"m";
    m.u.hello.model.len = 1;
    m.u.hello.version.ptr = (const uint8_t *)"v";
    m.u.hello.version.len = 1;
    assert_int_equal(tcpota_msg_encode(&m, out, sizeof(out)), TCPOTA_ERR_INVAL);
    m.u.hello.device_id.len = 64;
    assert_true(tcpota_msg_encode(&m, out, sizeof(out)) > 0);
    assert_int_equal(tcpota_msg_encode(&m, out, 40), TCPOTA_ERR_NOSPC);
    m.u.hello.model.ptr = NULL;
    assert_int_equal(tcpota_msg_encode(&m, out, sizeof(out)), TCPOTA_ERR_INVAL);
}

/* The one printable-string rule (codec, manifest, the device's config,
 * the server's --version): its bounds and its edges. */
static void test_printable(void **state)
{
    (void)state;
    assert_int_equal(tcpota_printable(" ~", 2, 1, 2), 1);
    assert_int_equal(tcpota_printable("", 0, 0, 4), 1);
    assert_int_equal(tcpota_printable("", 0, 1, 4), 0);       /* below min */
    assert_int_equal(tcpota_printable("abc", 3, 1, 2), 0);    /* above max */
    assert_int_equal(tcpota_printable("a\x1f", 2, 1, 4), 0);  /* control */
    assert_int_equal(tcpota_printable("a\x7f", 2, 1, 4), 0);  /* DEL */
    assert_int_equal(tcpota_printable("a\x80", 2, 1, 4), 0);  /* not ASCII */
    assert_int_equal(tcpota_printable("ab\0c", 4, 1, 4), 0);  /* NUL inside */
    assert_int_equal(tcpota_printable("ab\x01", 2, 1, 4), 1); /* only len bytes */
}

/* The one hex rule of the device's reasons (tcpota_dev_bad_text, the
 * manifest's "offer sha256 ..."): lowercase, two digits a byte, no NUL. */
static void test_hex(void **state)
{
    static const uint8_t b[] = {0x00, 0x09, 0xa5, 0xff};
    char out[9];
    (void)state;
    memset(out, '#', sizeof(out));
    tcpota_hex(out, b, sizeof(b));
    assert_memory_equal(out, "0009a5ff#", 9);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_vectors_roundtrip_any_split),
        cmocka_unit_test(test_whole_data_is_not_copied),
        cmocka_unit_test(test_vector_fields),
        cmocka_unit_test(test_data_head_matches_encoder),
        cmocka_unit_test(test_every_bit_flip_is_refused),
        cmocka_unit_test(test_oversized_length_refused_at_header),
        cmocka_unit_test(test_bad_header_fields),
        cmocka_unit_test(test_tlv_rules),
        cmocka_unit_test(test_tlv_length_at_the_end),
        cmocka_unit_test(test_hello_string_limits),
        cmocka_unit_test(test_tlv_exact_sizes),
        cmocka_unit_test(test_offer_version_and_manifest_limit),
        cmocka_unit_test(test_message_limit),
        cmocka_unit_test(test_welcome_reserved_byte),
        cmocka_unit_test(test_tag_in_wrong_message_refused),
        cmocka_unit_test(test_more_exact_sizes),
        cmocka_unit_test(test_truncated_tlv_header),
        cmocka_unit_test(test_offer_chunk_zero),
        cmocka_unit_test(test_no_update_why),
        cmocka_unit_test(test_hello_resume_and_max_payload),
        cmocka_unit_test(test_short_fixed_part),
        cmocka_unit_test(test_offer_sanity),
        cmocka_unit_test(test_offer_manifest_twice),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_auth_vectors),
        cmocka_unit_test(test_printable),
        cmocka_unit_test(test_hex),
    };
    if (argc > 1) doc_path = argv[1];
    if (sodium_init() < 0) return 1;
    load_vectors();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
