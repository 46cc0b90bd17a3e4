/* test_http_host.c - the Host values --http-host answers to
 * (server/http_host.c): names given, localhost and addresses pass, any
 * port; other names, and a Host that is no name, are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http_host.h"

static void parse_ok(struct http_hosts *h, const char *list)
{
    char err[256] = "";

    if (http_hosts_parse(h, list, err, sizeof err) != 0) fail_msg("%s: %s", list, err);
}

static void parse_bad(const char *list, const char *says)
{
    struct http_hosts h;
    char err[256] = "";

    assert_int_equal(http_hosts_parse(&h, list, err, sizeof err), -1);
    if (!strstr(err, says)) fail_msg("%s: \"%s\" does not say \"%s\"", list, err, says);
}

static int answered(const struct http_hosts *h, const char *host)
{
    char buf[512];

    return http_host_refused(h, host, buf, sizeof buf) == NULL;
}

static void test_parse(void **state)
{
    struct http_hosts h;
    char long_name[HTTP_HOST_NAME_MAX + 2];

    (void)state;
    parse_ok(&h, "OTA.Example.com.,fleet-1.lan");
    assert_int_equal(h.n, 2);
    assert_string_equal(h.names[0], "ota.example.com");
    assert_string_equal(h.names[1], "fleet-1.lan");
    parse_ok(&h, " a.com , b.com"); /* spaces around a name, as a list is written */
    assert_int_equal(h.n, 2);
    assert_string_equal(h.names[1], "b.com");
    parse_bad("10.0.0.1", "is an IP address, which is always answered");
    parse_bad("", "names separated by commas");
    parse_bad("a,,b", "names separated by commas");
    parse_bad("a,", "names separated by commas");
    parse_bad("ota.example.com:8071", "is not a host name");
    parse_bad("a b", "is not a host name");
    parse_bad("a,b,c,d,e,f,g,h,i", "at most 8 names");
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    parse_bad(long_name, "each 1 to 253 characters");
    long_name[HTTP_HOST_NAME_MAX] = '\0';
    parse_ok(&h, long_name);
}

static void test_answered(void **state)
{
    struct http_hosts none, h;

    (void)state;
    memset(&none, 0, sizeof none);
    assert_true(answered(&none, "evil.example")); /* no names: no check */
    parse_ok(&h, "ota.example.com");
    assert_true(answered(&h, "ota.example.com"));
    assert_true(answered(&h, "OTA.example.COM:8071"));
    assert_true(answered(&h, "ota.example.com.:8071"));
    assert_true(answered(&h, "localhost:8071"));
    assert_true(answered(&h, "127.0.0.1:8071"));
    assert_true(answered(&h, "192.168.1.20"));
    assert_true(answered(&h, "[::1]:8071"));
    assert_true(answered(&h, "[fe80::1]"));
    assert_true(answered(&h, NULL)); /* HTTP/1.0 without Host: http_host_bad's */
    assert_false(answered(&h, "evil.example"));
    assert_false(answered(&h, "evil.example:8071"));
    assert_false(answered(&h, "ota.example.com.evil.example"));
    assert_false(answered(&h, "xota.example.com"));
    assert_false(answered(&h, "127.0.0.1.evil.example"));
    assert_false(answered(&h, "[::1"));
    assert_false(answered(&h, "[evil]"));
    assert_false(answered(&h, ""));
    assert_false(answered(&h, "localhost.evil.example"));
    assert_false(answered(&h, "[::1]evil.example"));
    assert_false(answered(&h, "localhost:abc"));
    assert_false(answered(&h, "localhost:"));
    assert_false(answered(&h, "localhost:123456"));
    assert_false(answered(&h, ":8071"));
}

static void test_refusal_says(void **state)
{
    struct http_hosts h;
    char buf[512], host[300];
    const char *why;

    (void)state;
    parse_ok(&h, "ota.example.com");
    why = http_host_refused(&h, "evil.example:80", buf, sizeof buf);
    assert_non_null(why);
    assert_string_equal(why, "Host evil.example:80 is not a name this server answers to: ask by a"
                        " name of its --http-host, localhost or its address, or add the name to"
                        " tcpota serve --http-host (docs/security.md, DNS rebinding)");
    /* Shown as far as printable, cut, never a quote (the API's JSON). */
    why = http_host_refused(&h, "a\"b\\c\x01", buf, sizeof buf);
    assert_non_null(strstr(why, "Host a?b?c? is not"));
    memset(host, 'x', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    why = http_host_refused(&h, host, buf, sizeof buf);
    assert_non_null(strstr(why, "xxx... is not"));
    why = http_host_refused(&h, "", buf, sizeof buf);
    assert_non_null(strstr(why, "an empty Host is not a name"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_answered),
        cmocka_unit_test(test_refusal_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
