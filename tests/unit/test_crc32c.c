/* test_crc32c.c - CRC32C against the iSCSI vectors of RFC 3720 (B.4) and a
 * bit-by-bit reference, for each build of crc32c.c: the core's (the crc32
 * instruction on an x86-64 host with SSE4.2), slicing-by-8
 * (-DTCPOTA_FAST_CRC -DTCPOTA_NO_HW_CRC), the table, and the nibble build
 * (-DTCPOTA_SMALL). */
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

/* CRC32C one bit at a time, straight from the polynomial. */
static uint32_t crc_bitwise(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xffffffffu;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Every length up to 600 at every start modulo 16, then every 7th up to
 * 5,000 (rounds of three blocks side by side and their tails: 768 bytes a
 * round on an x86-64 host), and pieces split at odd places: a path that
 * handles a head before aligned words, 8-byte words, blocks side by side
 * and a tail must get each part right. */
static void test_lengths_and_alignments(void **state)
{
    static uint8_t b[5040];
    uint32_t x = 0x12345678u;
    (void)state;
    for (size_t i = 0; i < sizeof(b); i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    for (size_t start = 0; start < 16; start++) {
        for (size_t len = 0; len <= 5000; len += len < 600 ? 1 : 7) {
            uint32_t want = crc_bitwise(b + start, len);
            size_t cut = (len * 7) / 13;
            assert_int_equal(tcpota_crc32c(b + start, len), want);
            assert_int_equal(tcpota_crc32c_update(tcpota_crc32c(b + start, cut), b + start + cut, len - cut),
                             want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_incremental_equals_one_shot),
        cmocka_unit_test(test_lengths_and_alignments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
