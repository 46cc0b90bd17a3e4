/* test_crc32c.c - CRC32C against the iSCSI vectors of RFC 3720 (B.4), for
 * the table build and, compiled with -DTCPOTA_SMALL, the nibble build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tcpota/crc32c.h"

static void test_rfc3720_vectors(void **state)
{
    uint8_t b[32];
    (void)state;
    memset(b, 0, sizeof(b));
    assert_int_equal(tcpota_crc32c(b, 32), 0x8a9136aau);
    memset(b, 0xff, sizeof(b));
    assert_int_equal(tcpota_crc32c(b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    assert_int_equal(tcpota_crc32c(b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    assert_int_equal(tcpota_crc32c(b, 32), 0x113fdb5cu);
    assert_int_equal(tcpota_crc32c("123456789", 9), 0xe3069283u);
}

static void test_incremental_equals_one_shot(void **state)
{
    uint8_t b[300];
    (void)state;
    for (int i = 0; i < 300; i++) b[i] = (uint8_t)(i * 7 + 3);
    uint32_t whole = tcpota_crc32c(b, sizeof(b));
    for (size_t cut = 0; cut <= sizeof(b); cut++) {
        assert_int_equal(tcpota_crc32c_update(tcpota_crc32c(b, cut), b + cut, sizeof(b) - cut), whole);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_incremental_equals_one_shot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
