/* test_legacy.c - the sample's req0/req1 protocol, server side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tcpota/legacy.h"

static int req(struct tcpota_legacy *l, const char *r, struct tcpota_legacy_pkg *p, size_t step)
{
    size_t n = strlen(r), off = 0;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        int rc = tcpota_legacy_input(l, (const uint8_t *)r + off, k, p);
        if (rc < 0) return rc;
        off += (size_t)rc;
    }
    return 0;
}

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(tcpota_detect((const uint8_t *)"\x01", 1), TCPOTA_KIND_V1);
    assert_int_equal(tcpota_detect((const uint8_t *)"req0", 4), TCPOTA_KIND_LEGACY);
    assert_int_equal(tcpota_detect((const uint8_t *)"\x16\x03", 2), TCPOTA_KIND_TLS);
    assert_int_equal(tcpota_detect((const uint8_t *)"GET", 3), TCPOTA_ERR_PROTO);
    assert_int_equal(tcpota_detect(NULL, 0), TCPOTA_ERR_AGAIN);
}

static void test_sequence_with_resend(void **state)
{
    struct tcpota_legacy l;
    struct tcpota_legacy_pkg p;
    (void)state;

    tcpota_legacy_init(&l, 1000);
    for (size_t step = 1; step <= 8; step++) {
        tcpota_legacy_init(&l, 1000);
        assert_int_equal(req(&l, "req0\r\n\r\n", &p, step), 0);
        assert_true(p.ready);
        assert_int_equal(p.offset, 0);
        assert_int_equal(p.len, 512);
        assert_int_equal(req(&l, "req1\r\n\r\n", &p, step), 0);
        assert_true(p.resend);
        assert_int_equal(p.offset, 0);
        assert_int_equal(p.len, 512);
        assert_int_equal(req(&l, "req0\r\n\r\n", &p, step), 0);
        assert_int_equal(p.offset, 512);
        assert_int_equal(p.len, 488);
        assert_int_equal(req(&l, "req0\r\n\r\n", &p, step), 0);
        assert_int_equal(p.offset, 1000);
        assert_int_equal(p.len, 0);
        assert_int_equal(req(&l, "req0\r\n\r\n", &p, step), 0);
        assert_int_equal(p.offset, 1000);
        assert_int_equal(p.len, 0);
    }
}

static void test_two_requests_in_one_read(void **state)
{
    struct tcpota_legacy l;
    struct tcpota_legacy_pkg p;
    const char *two = "req0\r\n\r\nreq0\r\n\r\n";
    (void)state;

    tcpota_legacy_init(&l, 5000);
    assert_int_equal(tcpota_legacy_input(&l, (const uint8_t *)two, 16, &p), 8);
    assert_int_equal(p.offset, 0);
    assert_int_equal(tcpota_legacy_input(&l, (const uint8_t *)two + 8, 8, &p), 8);
    assert_int_equal(p.offset, 512);
}

static void test_first_req1_gets_first_package(void **state)
{
    struct tcpota_legacy l;
    struct tcpota_legacy_pkg p;
    (void)state;
    tcpota_legacy_init(&l, 100);
    assert_int_equal(req(&l, "req1\r\n\r\n", &p, 8), 0);
    assert_int_equal(p.offset, 0);
    assert_int_equal(p.len, 100);
}

static void test_garbage_refused_at_first_bad_byte(void **state)
{
    struct tcpota_legacy l;
    struct tcpota_legacy_pkg p;
    (void)state;
    tcpota_legacy_init(&l, 100);
    assert_int_equal(tcpota_legacy_input(&l, (const uint8_t *)"req2", 4, &p), TCPOTA_ERR_PROTO);
    tcpota_legacy_init(&l, 100);
    assert_int_equal(tcpota_legacy_input(&l, (const uint8_t *)"rex", 3, &p), TCPOTA_ERR_PROTO);
    tcpota_legacy_init(&l, 100);
    assert_int_equal(tcpota_legacy_input(&l, (const uint8_t *)"req0\n", 5, &p), TCPOTA_ERR_PROTO);
}

static void test_header(void **state)
{
    char out[64];
    (void)state;
    int n = tcpota_legacy_header(1048576, 512, out, sizeof(out));
    assert_int_equal(n, (int)strlen("total: 1048576\r\nlength: 512\r\n\r\n"));
    assert_memory_equal(out, "total: 1048576\r\nlength: 512\r\n\r\n", (size_t)n);
    n = tcpota_legacy_header(0, 0, out, sizeof(out));
    assert_memory_equal(out, "total: 0\r\nlength: 0\r\n\r\n", (size_t)n);
    n = tcpota_legacy_header(4294967295u, 512, out, sizeof(out));
    assert_memory_equal(out, "total: 4294967295\r\nlength: 512\r\n\r\n", (size_t)n);
    assert_int_equal(tcpota_legacy_header(1, 1, out, 5), TCPOTA_ERR_NOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_sequence_with_resend),
        cmocka_unit_test(test_two_requests_in_one_read),
        cmocka_unit_test(test_first_req1_gets_first_package),
        cmocka_unit_test(test_garbage_refused_at_first_bad_byte),
        cmocka_unit_test(test_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
