/* test_server_unauth.c - unauthenticated connections per address
 * (server/unauth.c): the cap, addresses kept apart, counts released. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "unauth.h"

static struct unauth u;

static void test_cap_per_address(void **state)
{
    (void)state;
    memset(&u, 0, sizeof(u));
    for (int i = 0; i < 3; i++) assert_int_equal(unauth_add(&u, "10.0.0.1", 3), 1);
    assert_int_equal(unauth_add(&u, "10.0.0.1", 3), 0);
    assert_int_equal(unauth_count(&u, "10.0.0.1"), 3);
    /* Another address, even one that shares a prefix, has its own count. */
    assert_int_equal(unauth_add(&u, "10.0.0.11", 3), 1);
    assert_int_equal(unauth_add(&u, "::1", 3), 1);
    assert_int_equal(unauth_count(&u, "10.0.0.11"), 1);
    /* One authenticates (or closes): room for one more. */
    unauth_del(&u, "10.0.0.1");
    assert_int_equal(unauth_add(&u, "10.0.0.1", 3), 1);
    assert_int_equal(unauth_add(&u, "10.0.0.1", 3), 0);
    unauth_clear(&u);
    assert_int_equal(unauth_count(&u, "10.0.0.1"), 0);
}

static void test_no_limit_and_release(void **state)
{
    char addr[32];
    (void)state;
    memset(&u, 0, sizeof(u));
    for (int i = 0; i < 5000; i++) assert_int_equal(unauth_add(&u, "10.0.0.1", 0), 1);
    assert_int_equal(unauth_count(&u, "10.0.0.1"), 5000);
    for (int i = 0; i < 5000; i++) unauth_del(&u, "10.0.0.1");
    assert_int_equal(unauth_count(&u, "10.0.0.1"), 0);
    /* Many addresses (more than buckets): each counted on its own. */
    for (int i = 0; i < 10000; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(unauth_add(&u, addr, 1), 1);
    }
    for (int i = 0; i < 10000; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(unauth_add(&u, addr, 1), 0);
        unauth_del(&u, addr);
    }
    /* Releasing an address never counted does nothing. */
    unauth_del(&u, "192.0.2.1");
    unauth_clear(&u); /* frees what is left (ASan checks) */
}

/* An address whose last connection is released leaves no entry behind: a
 * peer with many source addresses (an IPv6 /64) must not grow the table
 * for good by connecting once from each. */
static void test_released_addresses_leave_nothing(void **state)
{
    char addr[48];
    (void)state;
    memset(&u, 0, sizeof(u));
    for (int i = 0; i < 10000; i++) {
        snprintf(addr, sizeof(addr), "2001:db8::%x", i);
        assert_int_equal(unauth_add(&u, addr, 2), 1);
        assert_int_equal(unauth_add(&u, addr, 2), 1);
        unauth_del(&u, addr);
        unauth_del(&u, addr);
    }
    for (unsigned b = 0; b < UNAUTH_BUCKETS; b++) assert_null(u.buckets[b]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_per_address),
        cmocka_unit_test(test_no_limit_and_release),
        cmocka_unit_test(test_released_addresses_leave_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
