/* test_version.c - the order of firmware versions (core/src/version.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tcpota/tcpota.h"
#include "tcpota/version.h"

static int order(const char *a, const char *b)
{
    int o = 99;
    int rc = tcpota_version_order(a, strlen(a), b, strlen(b), &o);
    return rc < 0 ? rc : o;
}

/* Each pair is strictly increasing: a < b, and b > a. */
static void test_increasing(void **state)
{
    static const char *const seq[] = {
        "0.0.1", "0.9", "0.10.0", "1.0.0-0", "1.0.0-2", "1.0.0-10", "1.0.0-alpha",
        "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
        "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2", "v1.10", "2.0.0.1", "2.0.1", "10.0.0",
        "999999999.0.0",
    };
    size_t i, j;
    (void)state;
    for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        for (j = 0; j < sizeof(seq) / sizeof(seq[0]); j++) {
            int want = i < j ? -1 : i > j;
            if (order(seq[i], seq[j]) != want) {
                fail_msg("%s vs %s: got %d, want %d", seq[i], seq[j], order(seq[i], seq[j]), want);
            }
        }
    }
}

static void test_same_precedence(void **state)
{
    (void)state;
    assert_int_equal(order("2.1", "2.1.0"), 0);
    assert_int_equal(order("v2.1.0", "2.1.0.0"), 0);
    assert_int_equal(order("2.1.0+build.5", "2.1.0+build.6"), 0);
    assert_int_equal(order("1.0.0-rc.01", "1.0.0-rc.1"), 0);
    /* leading zeros are read by value (date versions), as version.h says */
    assert_int_equal(order("01.2.3", "1.2.3"), 0);
    assert_int_equal(order("2024.01.05", "2024.1.5"), 0);
    assert_int_equal(order("2024.01.09", "2024.01.10"), -1);
}

static void test_not_versions(void **state)
{
    static const char *const bad[] = {
        "", "v", "factory", "firmware.bin", "1..2", "1.2.", ".1", "1.2.3.4.5", "1.2.3 final",
        "1.2.3-", "1.2.3-rc..1", "1.2.3+", "1.2.3-rc_1", "1234567890.0", "-1.0", "1.0.0+b+c",
    };
    size_t i;
    int o = 7;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (order(bad[i], "1.0.0") != TCPOTA_ERR_INVAL || order("1.0.0", bad[i]) != TCPOTA_ERR_INVAL) {
            fail_msg("'%s' was taken for a version", bad[i]);
        }
    }
    /* Lengths are honoured: no NUL needed, nothing read past alen. */
    assert_int_equal(tcpota_version_order("1.2.3garbage", 5, "1.2.0", 5, &o), 0);
    assert_int_equal(o, 1);
    assert_int_equal(tcpota_version_order("1.0", 3, "1.0", 3, NULL), TCPOTA_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_increasing),
        cmocka_unit_test(test_same_precedence),
        cmocka_unit_test(test_not_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
