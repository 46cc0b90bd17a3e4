/* test_manifest.c - signed manifests: layout, and each of the device's
 * acceptance rules refusing with its own reason. Every check is also
 * removed in turn by a test that expects the refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "tcpota/manifest.h"

static uint8_t pk[32], sk[64], pk2[32], sk2[64];
static uint8_t sha[32];
static uint8_t man[512];
static size_t man_len;

static int verify(void *ctx, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t k[32])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, len, k);
}

static size_t make(const uint8_t *spk, const uint8_t *ssk, const char *model, uint32_t counter,
                   uint32_t size)
{
    struct tcpota_manifest m;
    int n;

    memset(&m, 0, sizeof(m));
    m.image_size = size;
    m.sha256 = sha;
    m.version.ptr = (const uint8_t *)"2.0.0";
    m.version.len = 5;
    m.model.ptr = (const uint8_t *)model;
    m.model.len = (uint16_t)strlen(model);
    m.security_counter = counter;
    m.created = 1764000000;
    m.pubkey = spk;
    n = tcpota_manifest_encode_body(&m, man, sizeof(man) - 64);
    assert_true(n > 0);
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, ssk);
    man_len = (size_t)n + 64;
    return man_len;
}

static struct tcpota_trust trust(uint32_t counter)
{
    struct tcpota_trust t;
    t.keys = (const uint8_t(*)[32])&pk;
    t.nkeys = 1;
    t.verify = verify;
    t.verify_ctx = NULL;
    t.model = "esp32";
    t.security_counter = counter;
    return t;
}

static char why[TCPOTA_MAX_MESSAGE + 1];

/* An OFFER as the codec decodes it: image id, size, version, manifest. */
static struct tcpota_msg offer(const uint8_t *id, uint32_t size, const char *version,
                               const uint8_t *manifest, size_t len)
{
    struct tcpota_msg o;
    memset(&o, 0, sizeof(o));
    o.type = TCPOTA_T_OFFER;
    o.u.offer.image_id = id;
    o.u.offer.size = size;
    o.u.offer.version.ptr = (const uint8_t *)version;
    o.u.offer.version.len = (uint16_t)strlen(version);
    o.u.offer.manifest.ptr = manifest;
    o.u.offer.manifest.len = (uint16_t)len;
    return o;
}

static int check_full(const struct tcpota_trust *t, const uint8_t *id, uint32_t size,
                      const char *version)
{
    struct tcpota_msg o = offer(id, size, version, man, man_len);
    int rc;

    memset(why, 'x', sizeof(why));
    rc = tcpota_manifest_check(t, &o, NULL, why, sizeof(why));
    if (rc < 0) {
        assert_true(strlen(why) > 0); /* every refusal says why */
    } else {
        assert_string_equal(why, "");
    }
    return rc;
}

static int check(uint32_t device_counter, uint32_t offer_size)
{
    struct tcpota_trust t = trust(device_counter);
    return check_full(&t, sha, offer_size, "2.0.0");
}

static void test_roundtrip(void **state)
{
    struct tcpota_manifest m;
    (void)state;
    make(pk, sk, "esp32", 7, 1000);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), 0);
    assert_int_equal(m.image_size, 1000);
    assert_int_equal(m.security_counter, 7);
    assert_int_equal(m.created, 1764000000);
    assert_memory_equal(m.sha256, sha, 32);
    assert_memory_equal(m.pubkey, pk, 32);
    assert_memory_equal(m.model.ptr, "esp32", 5);
    assert_int_equal(m.signed_len, man_len - 64);
    assert_int_equal(check(0, 1000), 0);
    assert_int_equal(check(7, 1000), 0);
}

static void test_each_refusal_has_its_reason(void **state)
{
    struct tcpota_trust t = trust(0);
    (void)state;

    /* no manifest */
    {
        struct tcpota_msg o = offer(sha, 1000, "2.0.0", NULL, 0);
        assert_int_equal(tcpota_manifest_check(&t, &o, NULL, NULL, 0), TCPOTA_ERR_UNSIGNED);
    }
    /* untrusted key */
    make(pk2, sk2, "esp32", 0, 1000);
    assert_int_equal(check(0, 1000), TCPOTA_ERR_NOKEY);
    /* trusted key claimed, but signed by another: the signature fails */
    make(pk, sk2, "esp32", 0, 1000);
    assert_int_equal(check(0, 1000), TCPOTA_ERR_BADSIG);
    /* tampered manifest: each signed byte in turn */
    make(pk, sk, "esp32", 0, 1000);
    for (size_t i = 8; i < man_len - 64; i++) {
        man[i] ^= 0x01;
        int rc = check(0, 1000);
        assert_true(rc == TCPOTA_ERR_BADSIG || rc == TCPOTA_ERR_PROTO || rc == TCPOTA_ERR_NOKEY ||
                    rc == TCPOTA_ERR_NOTSUP);
        man[i] ^= 0x01;
    }
    /* tampered signature */
    man[man_len - 1] ^= 0x80;
    assert_int_equal(check(0, 1000), TCPOTA_ERR_BADSIG);
    man[man_len - 1] ^= 0x80;
    /* image differs from the manifest: size, then hash */
    assert_int_equal(check(0, 1001), TCPOTA_ERR_INTEGRITY);
    {
        struct tcpota_trust t2 = trust(0);
        uint8_t other[32];
        memcpy(other, sha, 32);
        other[31] ^= 1;
        assert_int_equal(check_full(&t2, other, 1000, "2.0.0"), TCPOTA_ERR_INTEGRITY);
    }
    /* wrong model */
    make(pk, sk, "esp32s3", 0, 1000);
    assert_int_equal(check(0, 1000), TCPOTA_ERR_MODEL);
    /* downgrade */
    make(pk, sk, "esp32", 4, 1000);
    assert_int_equal(check(5, 1000), TCPOTA_ERR_DOWNGRADE);
    assert_int_equal(check(4, 1000), 0);
}

static void test_key_rotation_second_key_trusted(void **state)
{
    uint8_t keys[2][32];
    struct tcpota_trust t = trust(0);
    (void)state;
    memcpy(keys[0], pk, 32);
    memcpy(keys[1], pk2, 32);
    t.keys = (const uint8_t(*)[32])keys;
    t.nkeys = 2;
    make(pk2, sk2, "esp32", 0, 1000);
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), 0);
}

static void test_malformed(void **state)
{
    struct tcpota_manifest m;
    (void)state;
    make(pk, sk, "esp32", 0, 1000);
    for (size_t n = 0; n < man_len; n++) {
        assert_int_not_equal(tcpota_manifest_parse(man, n, &m), 0);
    }
    /* Exactly header, body and signature: a byte more after the signature
     * is refused, not carried along unsigned. */
    man[man_len] = 0;
    assert_int_equal(tcpota_manifest_parse(man, man_len + 1, &m), TCPOTA_ERR_PROTO);
    man[5] = 1; /* the byte after the format is reserved: zero */
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_NOTSUP);
    man[5] = 0;
    man[4] = 2; /* unknown format */
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_NOTSUP);
    man[4] = 1;
    man[0] = 'x';
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
}


/* Point 10 of issue 10: each field the offer repeats is compared with the
 * signed one, and the reason names the field and both values. */
static void test_offer_fields_named_in_reason(void **state)
{
    struct tcpota_trust t = trust(0);
    uint8_t other[32];
    (void)state;

    make(pk, sk, "esp32", 3, 1000);
    assert_int_equal(check_full(&t, sha, 1000, "9.9.9"), TCPOTA_ERR_REFUSED);
    assert_string_equal(why, "offer version 9.9.9 differs from the signed manifest's 2.0.0");
    assert_int_equal(check_full(&t, sha, 1001, "2.0.0"), TCPOTA_ERR_INTEGRITY);
    assert_string_equal(why, "offer size 1001 differs from the signed manifest's 1000");
    memset(other, 0xab, sizeof(other));
    assert_int_equal(check_full(&t, other, 1000, "2.0.0"), TCPOTA_ERR_INTEGRITY);
    assert_non_null(strstr(why, "offer sha256 abababababababab"));
    assert_non_null(strstr(why, "differs from the signed manifest's"));
    t.model = "esp32s3";
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), TCPOTA_ERR_MODEL);
    assert_string_equal(why, "manifest model esp32 differs from the device's esp32s3");
    t = trust(4);
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), TCPOTA_ERR_DOWNGRADE);
    assert_string_equal(why, "manifest security counter 3 is below the device's 4 (downgrade)");
    /* A short buffer gets the reason cut short, still terminated. */
    {
        struct tcpota_msg o = offer(sha, 1000, "9.9.9", man, man_len);
        char small[8];
        memset(small, 'x', sizeof(small));
        assert_int_equal(tcpota_manifest_check(&t, &o, NULL, small, sizeof(small)),
                         TCPOTA_ERR_REFUSED);
        assert_string_equal(small, "offer v");
    }
}

/* Appends TLV (tag, 4-byte value) to the body of the manifest in man[] and
 * fixes the body length; the signature is not redone (parse only). */
static void append_tlv(uint8_t tag, uint8_t fill)
{
    size_t body = man_len - 64 - 8;
    memmove(man + 8 + body + 7, man + 8 + body, 64);
    man[8 + body] = tag;
    tcpota_put_u16(man + 8 + body + 1, 4);
    memset(man + 8 + body + 3, fill, 4);
    tcpota_put_u16(man + 6, (uint16_t)(body + 7));
    man_len += 7;
}

/* Point 7 of issue 10: a field and its critical twin are one field, in
 * either order; one rule with the message codec (tcpota_tlv_next). */
static void test_critical_twin_is_a_repeat(void **state)
{
    struct tcpota_manifest m;
    (void)state;

    /* The body holds IMAGE_SIZE (0x01) first: a later 0x81 repeats it. */
    make(pk, sk, "esp32", 0, 1000);
    append_tlv(0x81, 0x10);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    /* The other order: make the first one critical, repeat it plain. */
    make(pk, sk, "esp32", 0, 1000);
    man[8] = 0x81;
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), 0); /* known: understood */
    append_tlv(0x01, 0x10);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    /* Security counter (0x05) twice, plain then critical. */
    make(pk, sk, "esp32", 9, 1000);
    append_tlv(0x85, 0x00);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    /* Unknown tags: optional skipped, critical refused, repeats refused. */
    make(pk, sk, "esp32", 0, 1000);
    append_tlv(0x40, 0x00);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), 0);
    append_tlv(0xc0, 0x00);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    make(pk, sk, "esp32", 0, 1000);
    append_tlv(0xc0, 0x00);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_NOTSUP);
}

/* Removes the TLV with tag from the body of the manifest in man[] and
 * fixes the body length; the signature is not redone (parse only). */
static void remove_tlv(uint8_t tag)
{
    size_t body = man_len - 64 - 8, at = 8, n;
    while (man[at] != tag) {
        at += 3u + tcpota_get_u16(man + at + 1);
        assert_true(at < 8 + body);
    }
    n = 3u + tcpota_get_u16(man + at + 1);
    memmove(man + at, man + at + n, man_len - at - n);
    tcpota_put_u16(man + 6, (uint16_t)(body - n));
    man_len -= n;
}

/* The encoder refuses what the parser would refuse, rather than writing a
 * manifest no device can read: an empty, too long or unprintable version
 * or model, an image of zero bytes, a missing hash or key. */
static void test_encoder_refuses_bad_fields(void **state)
{
    static const char *const bad[] = {"", "123456789012345678901234567890123", "1\n0", "m\x7f"};
    struct tcpota_manifest m;
    uint8_t out[512];
    size_t i;

    (void)state;
    for (i = 0; i < 2 * (sizeof(bad) / sizeof(bad[0])) + 3; i++) {
        memset(&m, 0, sizeof(m));
        m.image_size = 1000;
        m.sha256 = sha;
        m.pubkey = pk;
        m.version.ptr = (const uint8_t *)"2.0.0";
        m.version.len = 5;
        m.model.ptr = (const uint8_t *)"esp32";
        m.model.len = 5;
        if (i < 4) { /* each bad version */
            m.version.ptr = (const uint8_t *)bad[i];
            m.version.len = (uint16_t)strlen(bad[i]);
        } else if (i < 8) { /* each bad model */
            m.model.ptr = (const uint8_t *)bad[i - 4];
            m.model.len = (uint16_t)strlen(bad[i - 4]);
        } else if (i == 8) {
            m.image_size = 0;
        } else if (i == 9) {
            m.sha256 = NULL;
        } else {
            m.pubkey = NULL;
        }
        assert_int_equal(tcpota_manifest_encode_body(&m, out, sizeof(out)), TCPOTA_ERR_INVAL);
    }
    /* The same fields, good: encoded. */
    m.pubkey = pk;
    assert_true(tcpota_manifest_encode_body(&m, out, sizeof(out)) > 0);
}

/* Every field is required: a manifest without one is malformed, not read
 * with a zero (a missing security counter would be counter 0). And an
 * image of zero bytes is no image (tcpota_manifest_encode_body refuses
 * one; the parser as well). */
static void test_each_field_required(void **state)
{
    static const uint8_t tags[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
    struct tcpota_manifest m;
    (void)state;

    for (size_t i = 0; i < sizeof(tags); i++) {
        make(pk, sk, "esp32", 3, 1000);
        remove_tlv(tags[i]);
        assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    }
    make(pk, sk, "esp32", 3, 1000);
    assert_int_equal(man[8], 0x01); /* IMAGE_SIZE comes first */
    tcpota_put_u32(man + 11, 0);
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
}

/* Makes the value of the TLV with tag one byte longer (that byte `fill`)
 * and fixes the body length; the signature is not redone (parse only). */
static void grow_tlv(uint8_t tag, uint8_t fill)
{
    size_t body = man_len - 64 - 8, at = 8, end;
    while (man[at] != tag) {
        at += 3u + tcpota_get_u16(man + at + 1);
        assert_true(at < 8 + body);
    }
    end = at + 3u + tcpota_get_u16(man + at + 1);
    memmove(man + end + 1, man + end, man_len - end);
    man[end] = fill;
    tcpota_put_u16(man + at + 1, (uint16_t)(tcpota_get_u16(man + at + 1) + 1));
    tcpota_put_u16(man + 6, (uint16_t)(body + 1));
    man_len += 1;
}

/* Fixed-size fields take their size only (a longer one is malformed, not
 * read in part), and version and model are 1..32 printable bytes. */
static void test_field_sizes_and_strings(void **state)
{
    static const uint8_t fixed[] = {0x01, 0x02, 0x05, 0x06, 0x07};
    struct tcpota_manifest m;
    size_t at;
    (void)state;

    for (size_t i = 0; i < sizeof(fixed); i++) {
        make(pk, sk, "esp32", 3, 1000);
        grow_tlv(fixed[i], 0);
        assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    }
    /* a 32-byte version is taken, a 33-byte one is not */
    make(pk, sk, "esp32", 3, 1000);
    for (int i = 0; i < 27; i++) grow_tlv(0x03, 'a'); /* "2.0.0" + 27 = 32 */
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), 0);
    assert_int_equal(m.version.len, 32);
    grow_tlv(0x03, 'a');
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    /* a control byte in the version or the model */
    make(pk, sk, "esp32", 3, 1000);
    for (at = 8; man[at] != 0x03; at += 3u + tcpota_get_u16(man + at + 1)) {
    }
    man[at + 4] = 0x0a;
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
    make(pk, sk, "esp32", 3, 1000);
    for (at = 8; man[at] != 0x04; at += 3u + tcpota_get_u16(man + at + 1)) {
    }
    man[at + 3] = 0x7f;
    assert_int_equal(tcpota_manifest_parse(man, man_len, &m), TCPOTA_ERR_PROTO);
}

/* A key is trusted only if all its 32 bytes match a trusted one: here the
 * manifest is signed (validly) by a key that differs from the trusted key
 * in its last byte only, as an attacker's key could differ in any part. */
static void test_key_matched_in_full(void **state)
{
    uint8_t near[1][32];
    struct tcpota_trust t = trust(0);
    (void)state;

    memcpy(near[0], pk, 32);
    near[0][31] ^= 0x01;
    t.keys = (const uint8_t(*)[32])near;
    make(pk, sk, "esp32", 0, 1000);
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), TCPOTA_ERR_NOKEY);
    memcpy(near[0], pk, 32);
    near[0][0] ^= 0x01;
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), TCPOTA_ERR_NOKEY);
}

/* Without a verify function nothing verifies: refused, not called. */
static void test_no_verify_function_refused(void **state)
{
    struct tcpota_trust t = trust(0);
    (void)state;

    make(pk, sk, "esp32", 0, 1000);
    t.verify = NULL;
    assert_int_equal(check_full(&t, sha, 1000, "2.0.0"), TCPOTA_ERR_BADSIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_each_refusal_has_its_reason),
        cmocka_unit_test(test_key_rotation_second_key_trusted),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_offer_fields_named_in_reason),
        cmocka_unit_test(test_critical_twin_is_a_repeat),
        cmocka_unit_test(test_encoder_refuses_bad_fields),
        cmocka_unit_test(test_each_field_required),
        cmocka_unit_test(test_field_sizes_and_strings),
        cmocka_unit_test(test_key_matched_in_full),
        cmocka_unit_test(test_no_verify_function_refused),
    };
    if (sodium_init() < 0) return 1;
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    randombytes_buf(sha, sizeof(sha));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
