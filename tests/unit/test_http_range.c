/* test_http_range.c - Range and If-Range of the HTTP downloads
 * (server/http_range.c), against RFC 9110's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http_range.h"

#define SIZE 1000u
static const char etag[] = "\"abc123\"";

static void expect(const char *range, const char *if_range, int status, uint64_t first,
                   uint64_t last)
{
    struct http_range r;

    assert_int_equal(http_range_decide(range, if_range, etag, SIZE, &r), status);
    assert_int_equal(r.status, status);
    if (status == 200 || status == 206) {
        assert_int_equal(r.first, first);
        assert_int_equal(r.last, last);
    } else {
        assert_non_null(r.why);
    }
}

static void test_no_range_is_all(void **state)
{
    (void)state;
    expect(NULL, NULL, 200, 0, SIZE - 1);
    expect(NULL, etag, 200, 0, SIZE - 1); /* If-Range without Range: ignored */
}

static void test_ranges(void **state)
{
    (void)state;
    expect("bytes=0-", NULL, 206, 0, SIZE - 1);
    expect("bytes=100-", NULL, 206, 100, SIZE - 1);
    expect("bytes=100-199", NULL, 206, 100, 199);
    expect("bytes=999-999", NULL, 206, 999, 999);
    expect("bytes=100-5000", NULL, 206, 100, SIZE - 1); /* cut to the last byte */
    /* M one past the last byte (M = the size): cut too, never a byte past
     * the image's end. */
    expect("bytes=0-1000", NULL, 206, 0, SIZE - 1);
    expect("bytes=999-1000", NULL, 206, 999, SIZE - 1);
    expect("bytes=-10", NULL, 206, SIZE - 10, SIZE - 1);
    expect("bytes=-5000", NULL, 206, 0, SIZE - 1);
    expect("BYTES=5-6", NULL, 206, 5, 6);               /* the unit is case-insensitive */
    expect("bytes= 5-6 ", NULL, 206, 5, 6);             /* whitespace around the range */
    expect("bytes=5 - 6", NULL, 400, 0, 0);             /* ... not inside it */
    expect("bytes=100-99999999999999999999999", NULL, 206, 100, SIZE - 1); /* huge M: cut */
    expect("bytes=-99999999999999999999999", NULL, 206, 0, SIZE - 1);     /* huge suffix: all */
    expect("bytes=000000000000000000000100-199", NULL, 206, 100, 199);    /* 21 digits, small */
}

static void test_unsatisfiable(void **state)
{
    (void)state;
    expect("bytes=1000-", NULL, 416, 0, 0);
    expect("bytes=5000-6000", NULL, 416, 0, 0);
    expect("bytes=-0", NULL, 416, 0, 0);
    /* A start past 64 bits is past the end too (RFC 9110 14.1.1: any
     * number of digits), not a malformed range. */
    expect("bytes=18446744073709551615-", NULL, 416, 0, 0);
    expect("bytes=18446744073709551616-", NULL, 416, 0, 0);
    expect("bytes=99999999999999999999999-", NULL, 416, 0, 0);
    expect("bytes=99999999999999999999999-99999999999999999999999", NULL, 416, 0, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    expect("bytes=", NULL, 400, 0, 0);
    {
        /* Said as what it is, not as a range of the wrong form. */
        struct http_range r;
        http_range_decide("bytes=", NULL, etag, SIZE, &r);
        assert_non_null(strstr(r.why, "names no range"));
        http_range_decide("bytes=  ", NULL, etag, SIZE, &r);
        assert_non_null(strstr(r.why, "names no range"));
    }
    expect("bytes=abc", NULL, 400, 0, 0);
    expect("bytes=5", NULL, 400, 0, 0);
    expect("bytes=9-3", NULL, 400, 0, 0);
    /* Something else than the dash after the first number: not read as one. */
    expect("bytes=5x9", NULL, 400, 0, 0);
    expect("bytes=5 9", NULL, 400, 0, 0);
    expect("bytes=1-2x", NULL, 400, 0, 0);
    expect("bytes=-", NULL, 400, 0, 0);
    expect("bytes=-1x", NULL, 400, 0, 0);
    expect("bytes=99999999999999999999999-5", NULL, 400, 0, 0); /* M before a huge N */
}

static void test_ignored(void **state)
{
    (void)state;
    expect("items=0-5", NULL, 200, 0, SIZE - 1);      /* another unit */
    expect("bytes=0-5,10-20", NULL, 200, 0, SIZE - 1); /* several: no multipart */
}

static void test_if_range(void **state)
{
    (void)state;
    expect("bytes=100-", "\"abc123\"", 206, 100, SIZE - 1);
    expect("bytes=100-", "\"abc124\"", 200, 0, SIZE - 1);        /* another image */
    expect("bytes=100-", "W/\"abc123\"", 200, 0, SIZE - 1);      /* weak: never */
    expect("bytes=100-", "Tue, 01 Dec 2026 10:00:00 GMT", 200, 0, SIZE - 1); /* a date */
    expect("bytes=5000-", "\"other\"", 200, 0, SIZE - 1); /* not matching: all, not 416 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_range_is_all),  cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_unsatisfiable),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_ignored),          cmocka_unit_test(test_if_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
