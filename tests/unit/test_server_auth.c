/* test_server_auth.c - the server's device authentication (server/auth.c)
 * without sockets: right and wrong secrets, unknown ids, the TLS channel
 * binding, the backoff per device id and per address judged at every AUTH
 * (with a success wiping nothing), and the secrets file's checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define NSECRETS 3
static struct tcpota_serve_secret secrets[NSECRETS];
static struct auth a;
static uint8_t nonce[TCPOTA_NONCE_LEN];
static uint8_t tls_binding[TCPOTA_TLS_BINDING_LEN];

static int setup(void **state)
{
    static const char *ids[NSECRETS] = {"dev-a", "dev-b", "dev-c"};
    (void)state;
    assert_true(sodium_init() >= 0);
    memset(secrets, 0, sizeof(secrets));
    for (int i = 0; i < NSECRETS; i++) {
        strcpy(secrets[i].id, ids[i]);
        secrets[i].len = 32;
        memset(secrets[i].secret, 0x40 + i, 32);
    }
    for (unsigned i = 0; i < sizeof(nonce); i++) nonce[i] = (uint8_t)(i * 7);
    for (unsigned i = 0; i < sizeof(tls_binding); i++) tls_binding[i] = (uint8_t)(0xa0 ^ i);
    return auth_init(&a, secrets, NSECRETS);
}

static int teardown(void **state)
{
    (void)state;
    auth_free(&a);
    return 0;
}

/* What a device holding `secret` answers for `id` (binding NULL: plain TCP). */
static void answer(const char *id, const uint8_t *secret, size_t slen, const uint8_t *binding,
                   uint8_t mac[AUTH_MAC_LEN])
{
    uint8_t msg[TCPOTA_AUTH_MSG_MAX];
    crypto_auth_hmacsha256_state st;
    int n = tcpota_auth_message(nonce, binding, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    assert_true(n > 0);
    crypto_auth_hmacsha256_init(&st, secret, slen);
    crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
    crypto_auth_hmacsha256_final(&st, mac);
}

static void right(int i, uint8_t mac[AUTH_MAC_LEN])
{
    answer(secrets[i].id, secrets[i].secret, secrets[i].len, NULL, mac);
}

static void wrong(int i, uint8_t mac[AUTH_MAC_LEN])
{
    uint8_t other[32];
    memset(other, 0x11, sizeof(other));
    answer(secrets[i].id, other, sizeof(other), NULL, mac);
}

static enum auth_verdict judge(const char *id, const char *addr, const uint8_t *mac, double now,
                               struct auth_result *r)
{
    return auth_judge(&a, id, addr, nonce, NULL, mac, now, r);
}

static void test_right_secret(void **state)
{
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    right(0, mac);
    assert_int_equal(judge("dev-a", "10.0.0.1", mac, 100, &r), AUTH_OK);
    assert_int_equal(r.verdict, AUTH_OK);
    assert_int_equal(r.wait_s, 0);
}

static void test_wrong_secret(void **state)
{
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    wrong(0, mac);
    assert_int_equal(judge("dev-a", "10.0.0.1", mac, 100, &r), AUTH_WRONG_ANSWER);
    assert_int_equal(r.failures, 1);
    assert_int_equal(r.wait_s, 1);
    /* The device is told at once what to do. */
    assert_string_equal(auth_verdict_message(AUTH_WRONG_ANSWER),
                        "authentication refused: check the device secret");
    /* Every byte of the MAC counts, the last too. */
    right(0, mac);
    mac[AUTH_MAC_LEN - 1] ^= 1;
    assert_int_equal(judge("dev-a", "10.0.0.9", mac, 200, &r), AUTH_WRONG_ANSWER);
    mac[AUTH_MAC_LEN - 1] ^= 1;
    mac[0] ^= 0x80;
    assert_int_equal(judge("dev-a", "10.0.0.9", mac, 300, &r), AUTH_WRONG_ANSWER);
    /* Another device's right answer is no answer for this one. */
    right(1, mac);
    assert_int_equal(judge("dev-c", "10.0.0.2", mac, 100, &r), AUTH_WRONG_ANSWER);
}

static void test_unknown_id(void **state)
{
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    answer("stranger", secrets[0].secret, secrets[0].len, NULL, mac);
    assert_int_equal(judge("stranger", "10.0.0.1", mac, 100, &r), AUTH_UNKNOWN_ID);
    /* A prefix of a known id is not that id. */
    answer("dev", secrets[0].secret, secrets[0].len, NULL, mac);
    assert_int_equal(judge("dev", "10.0.0.1", mac, 100, &r), AUTH_UNKNOWN_ID);
}

/* Inside TLS the answer must cover this TLS session's exporter: an answer
 * computed for another session (or without one) does not verify. */
static void test_tls_binding(void **state)
{
    uint8_t mac[AUTH_MAC_LEN], other[TCPOTA_TLS_BINDING_LEN];
    struct auth_result r;
    (void)state;
    answer("dev-a", secrets[0].secret, secrets[0].len, tls_binding, mac);
    assert_int_equal(auth_judge(&a, "dev-a", "10.0.0.1", nonce, tls_binding, mac, 100, &r),
                     AUTH_OK);
    /* The same bound answer over plain TCP: refused. */
    assert_int_equal(auth_judge(&a, "dev-b", "10.0.0.1", nonce, NULL, mac, 100, &r),
                     AUTH_WRONG_ANSWER);
    /* An unbound answer inside TLS: refused. */
    answer("dev-c", secrets[2].secret, secrets[2].len, NULL, mac);
    assert_int_equal(auth_judge(&a, "dev-c", "10.0.0.3", nonce, tls_binding, mac, 100, &r),
                     AUTH_WRONG_ANSWER);
    /* An answer relayed from another TLS session: refused. */
    memcpy(other, tls_binding, sizeof(other));
    other[0] ^= 1;
    answer("dev-a", secrets[0].secret, secrets[0].len, other, mac);
    assert_int_equal(auth_judge(&a, "dev-a", "10.0.0.4", nonce, tls_binding, mac, 200, &r),
                     AUTH_WRONG_ANSWER);
}

/* Forty connections opened before the first guess get no forty guesses:
 * after a failure, the id waits, from whatever address and connection. */
static void test_id_backoff_at_every_auth(void **state)
{
    uint8_t good[AUTH_MAC_LEN], bad[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    right(0, good);
    wrong(0, bad);
    assert_int_equal(judge("dev-a", "10.0.0.1", bad, 100, &r), AUTH_WRONG_ANSWER);
    for (int i = 0; i < 40; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.1.0.%d", i);
        /* Not checked at all: even the right answer waits. */
        assert_int_equal(judge("dev-a", addr, good, 100.5, &r), AUTH_ID_WAITING);
        assert_int_equal(r.wait_s, 1);
    }
    assert_int_equal(judge("dev-a", "10.0.0.9", good, 101.1, &r), AUTH_OK);
}

/* Each failure doubles the id's wait, up to AUTH_ID_MAX_WAIT_S. */
static void test_id_backoff_doubles_and_caps(void **state)
{
    uint8_t bad[AUTH_MAC_LEN];
    struct auth_result r;
    double t = 100;
    unsigned want = 1;
    (void)state;
    wrong(1, bad);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(judge("dev-b", "10.0.0.1", bad, t, &r), AUTH_WRONG_ANSWER);
        assert_int_equal(r.wait_s, want);
        t += r.wait_s + 0.01;
        want = want * 2 > AUTH_ID_MAX_WAIT_S ? AUTH_ID_MAX_WAIT_S : want * 2;
    }
    assert_int_equal(r.wait_s, AUTH_ID_MAX_WAIT_S);
}

/* The wait stays at its cap however many failures follow: past 32 of them
 * a doubling computed as 1 << (failures - 1) would shift by 32 or more
 * (undefined; 1 on x86) and the wait would fall back to a second. Each try
 * from another address, so that only the id's record decides. */
static void test_id_backoff_stays_capped(void **state)
{
    uint8_t bad[AUTH_MAC_LEN];
    struct auth_result r;
    char addr[32];
    double t = 100;
    (void)state;
    wrong(1, bad);
    for (int i = 0; i < 40; i++) {
        snprintf(addr, sizeof(addr), "10.0.1.%d", i);
        assert_int_equal(judge("dev-b", addr, bad, t, &r), AUTH_WRONG_ANSWER);
        assert_int_equal(r.failures, (unsigned)i + 1);
        if (i >= 6) {
            assert_int_equal(r.wait_s, AUTH_ID_MAX_WAIT_S);
        }
        t += r.wait_s + 0.01;
    }
}

/* A success wipes nothing: the failures before it still count. */
static void test_success_wipes_nothing(void **state)
{
    uint8_t good[AUTH_MAC_LEN], bad[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    right(0, good);
    wrong(0, bad);
    assert_int_equal(judge("dev-a", "10.0.0.1", bad, 100, &r), AUTH_WRONG_ANSWER);
    assert_int_equal(r.wait_s, 1);
    assert_int_equal(judge("dev-a", "10.0.0.1", good, 102, &r), AUTH_OK);
    assert_int_equal(judge("dev-a", "10.0.0.1", bad, 103, &r), AUTH_WRONG_ANSWER);
    assert_int_equal(r.failures, 2);
    assert_int_equal(r.wait_s, 2);
    /* Forgotten only AUTH_FORGET_S after the last failure. */
    assert_int_equal(judge("dev-a", "10.0.0.1", bad, 103 + AUTH_FORGET_S + 1, &r),
                     AUTH_WRONG_ANSWER);
    assert_int_equal(r.failures, 1);
    assert_int_equal(r.wait_s, 1);
}

/* An address gets AUTH_ADDR_FREE_FAILURES failures for nothing, then
 * waits; judged at every AUTH. While it waits, unknown ids and ids with
 * failures are refused unchecked. */
static void test_addr_backoff(void **state)
{
    uint8_t mac[AUTH_MAC_LEN], good[AUTH_MAC_LEN], bad[AUTH_MAC_LEN];
    struct auth_result r;
    unsigned i;
    (void)state;
    memset(mac, 0, sizeof(mac));
    right(0, good);
    wrong(0, bad);
    /* dev-a fails once, elsewhere; its own wait is long over below. */
    assert_int_equal(judge("dev-a", "10.0.0.1", bad, 90, &r), AUTH_WRONG_ANSWER);
    for (i = 0; i < AUTH_ADDR_FREE_FAILURES; i++) {
        char id[16];
        snprintf(id, sizeof(id), "scan-%u", i);
        assert_int_equal(judge(id, "10.0.0.7", mac, 100, &r), AUTH_UNKNOWN_ID);
        assert_int_equal(r.wait_s, 0);
    }
    assert_int_equal(judge("scan-x", "10.0.0.7", mac, 100, &r), AUTH_UNKNOWN_ID);
    assert_int_equal(r.wait_s, 1);
    assert_int_equal(judge("scan-y", "10.0.0.7", mac, 100.5, &r), AUTH_ADDR_WAITING);
    /* An id with failures too, even with the right answer: naming a known
     * id takes a guesser past the address's wait only for a clean id (the
     * neighbours behind a NAT), not for one it has been guessing at. */
    assert_int_equal(judge("dev-a", "10.0.0.7", good, 100.5, &r), AUTH_ADDR_WAITING);
    /* Another address is not affected. */
    assert_int_equal(judge("scan-y", "10.0.0.8", mac, 100.5, &r), AUTH_UNKNOWN_ID);
    /* The next failure after the wait doubles it. */
    assert_int_equal(judge("scan-z", "10.0.0.7", mac, 101.5, &r), AUTH_UNKNOWN_ID);
    assert_int_equal(r.wait_s, 2);
}

/* Behind a NAT: a misconfigured device (wrong secret) fails again and
 * again from the shared address; a good device from the same address is
 * served at once, every time. */
static void test_nat_does_not_lock_out_a_good_device(void **state)
{
    uint8_t good[AUTH_MAC_LEN], bad[AUTH_MAC_LEN], mac[AUTH_MAC_LEN];
    struct auth_result r;
    double t = 100;
    (void)state;
    right(0, good);
    wrong(1, bad);
    for (int i = 0; i < 30; i++) {
        enum auth_verdict v = judge("dev-b", "192.0.2.1", bad, t, &r);
        assert_true(v == AUTH_WRONG_ANSWER || v == AUTH_ID_WAITING || v == AUTH_ADDR_WAITING);
        assert_int_equal(judge("dev-a", "192.0.2.1", good, t, &r), AUTH_OK);
        t += 1.5;
    }
    /* Someone behind the same NAT scans for ids until the address waits:
     * unknown ids are refused unchecked, the good device is still served. */
    memset(mac, 0, sizeof(mac));
    for (unsigned i = 0; i <= AUTH_ADDR_FREE_FAILURES; i++) {
        (void)judge("scan", "192.0.2.1", mac, t, &r);
    }
    assert_int_equal(judge("scan", "192.0.2.1", mac, t, &r), AUTH_ADDR_WAITING);
    assert_int_equal(judge("dev-a", "192.0.2.1", good, t, &r), AUTH_OK);
    /* ... and a clean id is still checked: a wrong answer for it is
     * refused and counted as its own failure. */
    wrong(2, mac);
    assert_int_equal(judge("dev-c", "192.0.2.1", mac, t, &r), AUTH_WRONG_ANSWER);
    right(2, mac);
    assert_int_equal(judge("dev-c", "192.0.2.1", mac, t + 0.1, &r), AUTH_ID_WAITING);
}

/* A reload (SIGHUP) brings a new set of secrets: the failures of the ids
 * in both sets stay, so a reload does not wipe a backoff. */
static void test_rebind_keeps_failures(void **state)
{
    static struct tcpota_serve_secret fresh[2];
    uint8_t good[AUTH_MAC_LEN], bad[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    right(1, good);
    wrong(1, bad);
    assert_int_equal(judge("dev-b", "10.0.0.1", bad, 100, &r), AUTH_WRONG_ANSWER);
    memset(fresh, 0, sizeof(fresh));
    fresh[0] = secrets[1]; /* dev-b, kept */
    strcpy(fresh[1].id, "dev-new");
    fresh[1].len = 16;
    assert_int_equal(auth_rebind(&a, fresh, 2), 0);
    assert_int_equal(judge("dev-b", "10.0.0.2", good, 100.5, &r), AUTH_ID_WAITING);
    assert_int_equal(judge("dev-b", "10.0.0.2", good, 101.5, &r), AUTH_OK);
    /* An id no longer in the file is unknown. */
    right(0, good);
    assert_int_equal(judge("dev-a", "10.0.0.2", good, 101.5, &r), AUTH_UNKNOWN_ID);
}

/* A secret replaced by the operator (fleet mode: tcpota device secret)
 * clears that id's throttle, and only that id's. */
static void test_forgive_clears_only_that_id(void **state)
{
    uint8_t good_b[AUTH_MAC_LEN], bad_b[AUTH_MAC_LEN], good_c[AUTH_MAC_LEN], bad_c[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    right(1, good_b);
    wrong(1, bad_b);
    right(2, good_c);
    wrong(2, bad_c);
    assert_int_equal(judge("dev-b", "10.0.0.1", bad_b, 100, &r), AUTH_WRONG_ANSWER);
    assert_int_equal(judge("dev-c", "10.0.0.2", bad_c, 100, &r), AUTH_WRONG_ANSWER);
    auth_forgive(&a, "dev-b");
    auth_forgive(&a, "no-such-id");
    assert_int_equal(judge("dev-b", "10.0.0.3", good_b, 100.1, &r), AUTH_OK);
    assert_int_equal(judge("dev-c", "10.0.0.3", good_c, 100.1, &r), AUTH_ID_WAITING);
    /* The first id of the table as well (index 0 is an id, not "none"). */
    right(0, good_b);
    wrong(0, bad_b);
    assert_int_equal(judge("dev-a", "10.0.0.4", bad_b, 100.2, &r), AUTH_WRONG_ANSWER);
    auth_forgive(&a, "dev-a");
    assert_int_equal(judge("dev-a", "10.0.0.5", good_b, 100.3, &r), AUTH_OK);
}

/* A wait is BUSY (the answer was not checked: a device with the right
 * secret tries again after it); a refusal is DENIED (the runner gives up). */
static void test_waits_are_busy_refusals_denied(void **state)
{
    (void)state;
    assert_int_equal(auth_verdict_error(AUTH_ID_WAITING), TCPOTA_ERR_BUSY);
    assert_int_equal(auth_verdict_error(AUTH_ADDR_WAITING), TCPOTA_ERR_BUSY);
    assert_int_equal(auth_verdict_error(AUTH_WRONG_ANSWER), TCPOTA_ERR_DENIED);
    assert_int_equal(auth_verdict_error(AUTH_UNKNOWN_ID), TCPOTA_ERR_DENIED);
}

/* A full table of addresses reuses the stalest slot: a scanner that fails
 * from many fresh addresses does not wipe the wait of one still waiting. */
static void test_full_address_table_keeps_the_waiting(void **state)
{
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    unsigned i;
    (void)state;
    memset(mac, 0, sizeof(mac));
    for (i = 0; i < AUTH_ADDR_SLOTS - 1; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.2.%u.%u", i / 256, i % 256);
        assert_int_equal(judge("scan", addr, mac, 50, &r), AUTH_UNKNOWN_ID);
    }
    for (i = 0; i <= AUTH_ADDR_FREE_FAILURES; i++) {
        assert_int_equal(judge("scan", "192.0.2.9", mac, 100, &r), AUTH_UNKNOWN_ID);
    }
    assert_int_equal(r.wait_s, 1);
    /* The table is full: a new address takes a slot of the stalest. */
    assert_int_equal(judge("scan", "192.0.2.10", mac, 100.2, &r), AUTH_UNKNOWN_ID);
    assert_int_equal(judge("scan", "192.0.2.9", mac, 100.5, &r), AUTH_ADDR_WAITING);
}

/* Secrets in any order (a table not from auth_read_secrets, which sorts
 * it) are all found: the binary search only runs on a sorted table. */
static void test_unsorted_secrets_found(void **state)
{
    static struct tcpota_serve_secret reversed[NSECRETS];
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    for (int i = 0; i < NSECRETS; i++) reversed[i] = secrets[NSECRETS - 1 - i];
    auth_free(&a);
    assert_int_equal(auth_init(&a, reversed, NSECRETS), 0);
    for (int i = 0; i < NSECRETS; i++) {
        right(i, mac);
        assert_int_equal(judge(secrets[i].id, "10.0.0.1", mac, 100, &r), AUTH_OK);
    }
}

/* A secret whose authentication message cannot be built (an empty id:
 * tcpota_auth_message refuses it) matches no answer: the check fails
 * closed, whatever MAC comes, rather than taking it. */
static void test_unbuildable_message_never_matches(void **state)
{
    static struct tcpota_serve_secret odd[1];
    uint8_t mac[AUTH_MAC_LEN];
    struct auth_result r;
    (void)state;
    memset(odd, 0, sizeof(odd));
    odd[0].len = 32;
    memset(odd[0].secret, 0x55, 32);
    auth_free(&a);
    assert_int_equal(auth_init(&a, odd, 1), 0);
    memset(mac, 0, sizeof(mac));
    assert_int_equal(judge("", "10.0.0.1", mac, 100, &r), AUTH_WRONG_ANSWER);
    memset(mac, 0xff, sizeof(mac));
    assert_int_equal(judge("", "10.0.0.2", mac, 200, &r), AUTH_WRONG_ANSWER); /* past its wait */
}

/* ---- the secrets file ------------------------------------------------ */

static int read_secrets(const char *text, struct tcpota_serve_secret **v, size_t *n)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    int rc;
    assert_non_null(f);
    rc = auth_read_secrets(f, "secrets", 0, v, n);
    fclose(f);
    return rc;
}

#define HEX16 "00112233445566778899aabbccddeeff"

static void test_secrets_file(void **state)
{
    struct tcpota_serve_secret *v;
    size_t n;
    (void)state;
    assert_int_equal(read_secrets("# fleet\n\ndev-1 " HEX16 "\ndev-2 " HEX16 HEX16 "\n", &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].id, "dev-1");
    assert_int_equal(v[0].len, 16);
    assert_int_equal(v[1].len, 32);
    auth_free_secrets(v, n);
}

/* A NUL byte inside a line is refused: strlen() would cut the line there
 * and drop what follows without a word. A last line without its newline
 * is read as any other. */
static void test_secrets_nul_refused(void **state)
{
    static const char text[] = "dev-1 " HEX16 "\0garbage\n";
    struct tcpota_serve_secret *v = NULL;
    size_t n = 0;
    FILE *f = fmemopen((void *)text, sizeof text - 1, "r");

    (void)state;
    assert_non_null(f);
    assert_int_equal(auth_read_secrets(f, "secrets", 0, &v, &n), -1);
    fclose(f);
    assert_int_equal(read_secrets("dev-1 " HEX16, &v, &n), 0);
    assert_int_equal(n, 1);
    auth_free_secrets(v, n);
}

/* An empty file where one may be (a reload with --auth-file emptied: every
 * secret revoked) is read as none, sorting nothing (qsort of NULL is
 * undefined: UBSan, which runs these tests, says so); where it may not be
 * (the start), it is refused. */
static void test_secrets_empty(void **state)
{
    struct tcpota_serve_secret *v = NULL;
    size_t n = 7;
    FILE *f = tmpfile();

    (void)state;
    assert_non_null(f);
    assert_int_equal(auth_read_secrets(f, "secrets", 1, &v, &n), 0);
    assert_int_equal(n, 0);
    auth_free_secrets(v, n);
    rewind(f);
    assert_int_equal(auth_read_secrets(f, "secrets", 0, &v, &n), -1);
    fclose(f);
}

/* secrets_lines(k): a file of k valid lines, read back; returns its rc. */
static int secrets_lines(size_t k, size_t *n)
{
    struct tcpota_serve_secret *v = NULL;
    FILE *f = tmpfile();
    size_t i;
    int rc;

    assert_non_null(f);
    for (i = 0; i < k; i++) {
        fprintf(f, "id%zu " HEX16 "\n", i);
    }
    rewind(f);
    rc = auth_read_secrets(f, "secrets", 0, &v, n);
    fclose(f);
    if (rc == 0) auth_free_secrets(v, *n);
    return rc;
}

/* AUTH_MAX_SECRETS lines are read; one more is refused, not written past
 * the table (its growth stops at the limit). */
static void test_secrets_limit(void **state)
{
    size_t n = 0;
    (void)state;
    assert_int_equal(secrets_lines(AUTH_MAX_SECRETS, &n), 0);
    assert_int_equal(n, AUTH_MAX_SECRETS);
    assert_int_equal(secrets_lines(AUTH_MAX_SECRETS + 1, &n), -1);
    assert_int_equal(n, 0);
}

static void test_secrets_short_refused(void **state)
{
    struct tcpota_serve_secret *v = (void *)1;
    size_t n = 9;
    (void)state;
    /* 15 bytes: guessable in principle; refused at load. */
    assert_int_equal(read_secrets("dev-1 00112233445566778899aabbccddee\n", &v, &n), -1);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_int_equal(read_secrets("dev-1 00\n", &v, &n), -1);
}

static void test_secrets_empty_refused(void **state)
{
    struct tcpota_serve_secret *v;
    size_t n;
    (void)state;
    assert_int_equal(read_secrets("", &v, &n), -1);
    assert_int_equal(read_secrets("# only a comment\n\n", &v, &n), -1);
}

static void test_secrets_malformed_refused(void **state)
{
    struct tcpota_serve_secret *v;
    size_t n;
    (void)state;
    assert_int_equal(read_secrets("dev-1\n", &v, &n), -1);
    assert_int_equal(read_secrets("dev-1 not-hex-at-all-not-hex-at-all\n", &v, &n), -1);
    assert_int_equal(read_secrets("dev-1 " HEX16 HEX16 HEX16 HEX16 "00\n", &v, &n), -1);
    /* Device ids are printable ASCII: a control character or a byte above
     * 0x7e (a binary file, say) could never match and is not echoed. */
    assert_int_equal(read_secrets("dev\x01x " HEX16 "\n", &v, &n), -1);
    assert_int_equal(read_secrets("d\xe9v " HEX16 "\n", &v, &n), -1);
    assert_int_equal(read_secrets("dev\x7f " HEX16 "\n", &v, &n), -1); /* DEL */
    assert_int_equal(read_secrets("dev~1 " HEX16 "\n", &v, &n), 0);
    auth_free_secrets(v, n);
    /* An id is at most TCPOTA_MAX_STR bytes, the room the secret's record
     * has: a longer one is refused, not copied past it. */
    {
        char text[200];
        memset(text, 'd', sizeof(text));
        memcpy(text + TCPOTA_MAX_STR, " " HEX16 "\n", sizeof(" " HEX16 "\n"));
        assert_int_equal(read_secrets(text, &v, &n), 0);
        assert_int_equal(strlen(v[0].id), TCPOTA_MAX_STR);
        auth_free_secrets(v, n);
        memset(text, 'd', sizeof(text));
        memcpy(text + TCPOTA_MAX_STR + 1, " " HEX16 "\n", sizeof(" " HEX16 "\n"));
        assert_int_equal(read_secrets(text, &v, &n), -1);
    }
    /* A third field (a comment after the secret, an id with a space) is
     * refused rather than dropped; so is a device's own secret file given
     * as the server's secrets file. */
    assert_int_equal(read_secrets("dev-1 " HEX16 " # the lab board\n", &v, &n), -1);
    assert_int_equal(read_secrets("dev-1 " HEX16 " x\n", &v, &n), -1);
    assert_int_equal(read_secrets("tcpota-secret v1 " HEX16 HEX16 "\n", &v, &n), -1);
    assert_int_equal(read_secrets("tcpota-ed25519-public v1 " HEX16 HEX16 "\n", &v, &n), -1);
    /* An id that starts like a key file's tag is an id (a review: every
     * "tcpota-" id was refused for a while). */
    assert_int_equal(read_secrets("tcpota-gw-01 " HEX16 "\ntcpota-secret " HEX16 "\n", &v, &n), 0);
    assert_int_equal(n, 2);
    auth_free_secrets(v, n);
    assert_int_equal(read_secrets("dev-1 " HEX16 " \t\r\n", &v, &n), 0);
    auth_free_secrets(v, n);
    /* Two secrets for one device: either would do, so neither is kept. */
    assert_int_equal(read_secrets("dev-1 " HEX16 "\ndev-1 " HEX16 HEX16 "\n", &v, &n), -1);
}

/* The summary's refusals: counted by kind; each id listed once with its
 * count and its last refusal (a wait aside), until it authenticates; a
 * full list gives up its stalest id. */
static void test_refusals_tally(void **state)
{
    static struct auth_refusals t;
    char id[16];
    unsigned i;

    (void)state;
    memset(&t, 0, sizeof(t));
    auth_refusal_note(&t, AUTH_REFUSED_NO_PROOF, "dev-1", "10.0.0.1", 100);
    auth_refusal_note(&t, auth_refusal_of(AUTH_WRONG_ANSWER), "dev-1", "10.0.0.2", 160);
    auth_refusal_note(&t, auth_refusal_of(AUTH_ADDR_WAITING), NULL, "10.0.0.3", 170);
    assert_int_equal(t.n[AUTH_REFUSED_NO_PROOF], 1);
    assert_int_equal(t.n[AUTH_REFUSED_WRONG], 1);
    assert_int_equal(t.n[AUTH_REFUSED_NOT_CHECKED], 1);
    assert_int_equal(auth_refusal_of(AUTH_UNKNOWN_ID), AUTH_REFUSED_UNKNOWN);
    assert_int_equal(auth_refusal_of(AUTH_ID_WAITING), AUTH_REFUSED_NOT_CHECKED);
    assert_string_equal(t.ids[0].id, "dev-1");
    assert_int_equal(t.ids[0].count, 2);
    assert_int_equal(t.ids[0].kind, AUTH_REFUSED_WRONG);
    assert_string_equal(t.ids[0].addr, "10.0.0.2");
    assert_int_equal(t.ids[0].last, 160);
    assert_string_equal(t.ids[1].id, ""); /* no id: counted only */
    assert_string_equal(auth_refusal_name(AUTH_REFUSED_WRONG), "wrong-secret");
    assert_string_equal(auth_refusal_name(AUTH_REFUSED_NO_PROOF), "no-proof");
    /* Fill the list; dev-1 (the stalest, at 160) gives way to the next new id. */
    for (i = 1; i < AUTH_REFUSED_IDS; i++) {
        snprintf(id, sizeof(id), "x-%u", i);
        auth_refusal_note(&t, AUTH_REFUSED_UNKNOWN, id, "10.0.0.9", 200 + i);
    }
    auth_refusal_note(&t, AUTH_REFUSED_UNKNOWN, "new", "10.0.0.9", 900);
    assert_string_equal(t.ids[0].id, "new");
    assert_int_equal(t.ids[0].count, 1);
    auth_refusal_note(&t, AUTH_REFUSED_UNKNOWN, "newer", "10.0.0.9", 901);
    assert_string_equal(t.ids[1].id, "newer"); /* x-1, at 201, was the stalest */
    assert_int_equal(t.n[AUTH_REFUSED_UNKNOWN], AUTH_REFUSED_IDS + 1);
    /* A wait after its failure: counted, the failure stays its reason. */
    auth_refusal_note(&t, AUTH_REFUSED_NOT_CHECKED, "new", "10.0.0.8", 950);
    assert_int_equal(t.ids[0].kind, AUTH_REFUSED_UNKNOWN);
    assert_int_equal(t.ids[0].count, 2);
    assert_int_equal(t.ids[0].last, 950);
    assert_string_equal(t.ids[0].addr, "10.0.0.8");
    assert_int_equal(t.n[AUTH_REFUSED_NOT_CHECKED], 2);
    /* Once it has authenticated it leaves the list; the counts stay. */
    auth_refusal_forget(&t, "never-refused");
    assert_string_equal(t.ids[0].id, "new");
    auth_refusal_forget(&t, "new");
    assert_string_equal(t.ids[0].id, "");
    assert_string_equal(t.ids[1].id, "newer");
    assert_int_equal(t.n[AUTH_REFUSED_UNKNOWN], AUTH_REFUSED_IDS + 1);
    /* A new id whose first refusal is a wait: that is its reason. */
    auth_refusal_note(&t, AUTH_REFUSED_NOT_CHECKED, "late", "10.0.0.7", 960);
    assert_string_equal(t.ids[0].id, "late");
    assert_int_equal(t.ids[0].kind, AUTH_REFUSED_NOT_CHECKED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_right_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_backoff_at_every_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_backoff_doubles_and_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_backoff_stays_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_wipes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addr_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nat_does_not_lock_out_a_good_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebind_keeps_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forgive_clears_only_that_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_are_busy_refusals_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_address_table_keeps_the_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsorted_secrets_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unbuildable_message_never_matches, setup, teardown),
        cmocka_unit_test(test_secrets_file),
        cmocka_unit_test(test_secrets_nul_refused),
        cmocka_unit_test(test_secrets_empty),
        cmocka_unit_test(test_secrets_limit),
        cmocka_unit_test(test_secrets_short_refused),
        cmocka_unit_test(test_secrets_empty_refused),
        cmocka_unit_test(test_secrets_malformed_refused),
        cmocka_unit_test(test_refusals_tally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
