/* test_proxy_proto.c - the PROXY protocol header (server/proxy_proto.c):
 * the spec's examples of versions 1 and 2, every split of them, and what
 * must be refused. Each case is parsed from a buffer that ends where its
 * bytes end (ASan sees any read past them). */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Parses a heap copy of p[0..n) of exactly n bytes. */
static int parse(const void *p, size_t n, struct proxy_addr *a, const char **why)
{
    uint8_t *copy = malloc(n ? n : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, p, n);
    rc = proxy_parse(copy, n, a, why);
    free(copy);
    return rc;
}

/* Every proper prefix needs more bytes; the whole is len bytes long. */
static void whole_and_splits(const void *p, size_t n, size_t len, struct proxy_addr *a)
{
    const char *why;

    for (size_t k = 0; k < len; k++) {
        assert_int_equal(parse(p, k, a, &why), 0);
    }
    memset(a, 0xa5, sizeof(*a));
    assert_int_equal(parse(p, n, a, &why), (int)len);
}

static void assert_v4(const struct proxy_addr *a, const char *host, unsigned port)
{
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a->src;
    char text[INET_ADDRSTRLEN];

    assert_int_equal(a->local, 0);
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(a->srclen, sizeof(*in));
    assert_string_equal(inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)), host);
    assert_int_equal(ntohs(in->sin_port), port);
}

static void assert_v6(const struct proxy_addr *a, const char *host, unsigned port)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a->src;
    char text[INET6_ADDRSTRLEN];

    assert_int_equal(a->local, 0);
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_int_equal(a->srclen, sizeof(*in6));
    assert_string_equal(inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)), host);
    assert_int_equal(ntohs(in6->sin6_port), port);
}

static void refused(const void *p, size_t n, const char *reason)
{
    struct proxy_addr a;
    const char *why = NULL;

    assert_int_equal(parse(p, n, &a, &why), -1);
    assert_non_null(why);
    assert_non_null(strstr(why, reason));
}

static void test_v1(void **state)
{
    /* The spec's example, then a TLS ClientHello's first bytes. */
    static const char tcp4[] = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n\x16\x03\x01";
    static const char tcp6[] = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    static const char unknown[] = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    struct proxy_addr a;
    (void)state;

    whole_and_splits(tcp4, sizeof(tcp4) - 1, sizeof(tcp4) - 1 - 3, &a);
    assert_v4(&a, "192.168.0.1", 56324);
    whole_and_splits(tcp6, sizeof(tcp6) - 1, sizeof(tcp6) - 1, &a);
    assert_v6(&a, "2001:db8::1", 65535);
    whole_and_splits(unknown, sizeof(unknown) - 1, sizeof(unknown) - 1, &a);
    assert_int_equal(a.local, 1);
    whole_and_splits("PROXY UNKNOWN\r\n", 15, 15, &a);
    assert_int_equal(a.local, 1);
}

static void test_v1_refused(void **state)
{
    char longer[120];
    (void)state;

    refused("PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", 30, "address");
    refused("PROXY TCP4 ::1 ::1 1 2\r\n", 24, "address");
    refused("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", 32, "address");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", 36, "port");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 1 -2\r\n", 33, "port");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 123456 2\r\n", 37, "port");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4  2\r\n", 31, "port");
    /* At most 5 digits, whatever their value: 000080 is not 80, and a
     * number past 64 bits must not wrap around to one (2^64 + 80). */
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 000080 2\r\n", 37, "port");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 18446744073709551696 2\r\n", 51, "port");
    /* The destination is checked as the source is (only the source is used). */
    refused("PROXY TCP4 1.2.3.4 1.2.3 1 2\r\n", 30, "address");
    refused("PROXY TCP6 ::1 1.2.3.4 1 2\r\n", 28, "address");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 \r\n", 29, "6 fields");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", 30, "6 fields");
    refused("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", 34, "6 fields");
    refused("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", 32, "TCP4, TCP6 or UNKNOWN");
    /* UNKNOWN is the whole word: a longer one is some other protocol. */
    refused("PROXY UNKNOWNS 1.2.3.4 1.2.3.4 1 2\r\n", 36, "TCP4, TCP6 or UNKNOWN");
    refused("PROXY TCP4 1.2.3.4\0 1.2.3.4 1 2\r\n", 33, "NUL");
    memset(longer, 'x', sizeof(longer));
    memcpy(longer, "PROXY TCP4 ", 11);
    refused(longer, sizeof(longer), "longer than 107");
    refused("PROXZ", 5, "no PROXY protocol header");
    refused("HELLO", 5, "no PROXY protocol header");
    refused("req0\r\n\r\n", 8, "no PROXY protocol header");
    refused("\x16\x03\x01\x02\x00", 5, "no PROXY protocol header");
}

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

static void test_v2(void **state)
{
    static const uint8_t tcp4[] = {SIG, 0x21, 0x11, 0, 12, 10, 0, 0, 7, 10, 0, 0, 1,
                                   0x30, 0x39, 0x1f, 0x90, 0x16, 0x03};
    static const uint8_t tcp6[] = {SIG, 0x21, 0x21, 0, 36 + 4,
                                   0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
                                   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                                   0x00, 0x50, 0x01, 0xbb,
                                   0x04, 0x00, 0x01, 0x00}; /* a TLV after the addresses */
    static const uint8_t local[] = {SIG, 0x20, 0x00, 0, 0};
    static const uint8_t unspec[] = {SIG, 0x21, 0x00, 0, 3, 1, 2, 3};
    struct proxy_addr a;
    (void)state;

    whole_and_splits(tcp4, sizeof(tcp4), sizeof(tcp4) - 2, &a);
    assert_v4(&a, "10.0.0.7", 12345);
    whole_and_splits(tcp6, sizeof(tcp6), sizeof(tcp6), &a);
    assert_v6(&a, "2001:db8::9", 80);
    whole_and_splits(local, sizeof(local), sizeof(local), &a);
    assert_int_equal(a.local, 1);
    whole_and_splits(unspec, sizeof(unspec), sizeof(unspec), &a);
    assert_int_equal(a.local, 1);
}

static void test_v2_refused(void **state)
{
    static const uint8_t udp4[] = {SIG, 0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    static const uint8_t unix_[] = {SIG, 0x21, 0x31, 0, 0};
    static const uint8_t short4[] = {SIG, 0x21, 0x11, 0, 11, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0};
    static const uint8_t short6[] = {SIG, 0x21, 0x21, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    /* One byte short of two IPv6 addresses and two ports (36). */
    uint8_t short6by1[16 + 35] = {SIG, 0x21, 0x21, 0, 35};
    static const uint8_t v1sig[] = {SIG, 0x11, 0x11, 0, 12};
    static const uint8_t cmd2[] = {SIG, 0x22, 0x11, 0, 12};
    static const uint8_t toolong[] = {SIG, 0x21, 0x11, 0, 241};
    static const uint8_t notsig[] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B};
    (void)state;

    refused(udp4, sizeof(udp4), "other than TCP");
    refused(unix_, sizeof(unix_), "other than TCP");
    refused(short4, sizeof(short4), "too short");
    refused(short6, sizeof(short6), "too short");
    refused(short6by1, sizeof(short6by1), "too short");
    refused(v1sig, sizeof(v1sig), "another version");
    refused(cmd2, sizeof(cmd2), "LOCAL or PROXY");
    refused(toolong, sizeof(toolong), "longer than 256");
    refused(notsig, sizeof(notsig), "no PROXY protocol header");
}

/* The longest header taken, 16 + 240 bytes, is taken. */
static void test_v2_longest(void **state)
{
    uint8_t h[PROXY_HDR_MAX] = {SIG, 0x21, 0x11, 0, PROXY_HDR_MAX - 16, 127, 0, 0, 9};
    struct proxy_addr a;
    const char *why;
    (void)state;

    assert_int_equal(parse(h, sizeof(h), &a, &why), (int)PROXY_HDR_MAX);
    assert_v4(&a, "127.0.0.9", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),          cmocka_unit_test(test_v1_refused),
        cmocka_unit_test(test_v2),          cmocka_unit_test(test_v2_refused),
        cmocka_unit_test(test_v2_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
