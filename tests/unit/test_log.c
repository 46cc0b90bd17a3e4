/* test_log.c - the server's log lines (server/log.c): the time, the two
 * formats, and that no peer byte can end a line or fake its [device peer]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server_internal.h"
#include "text.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/un.h>

/* 2026-12-01T10:31:15.123Z */
static const struct timespec T = {1796121075, 123456789};
#define TS "2026-12-01T10:31:15.123Z"

static char line[LOG_LINE_MAX];

static const char *fmt_line(int json, enum log_level lv, const char *dev, const char *peer,
                            const char *msg)
{
    size_t n = log_format(line, sizeof(line), json, &T, lv, dev, peer, msg);
    assert_int_equal(n, strlen(line));
    return line;
}

static size_t count(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

/* The review's forged line: an id "x] tcpota serve: [admin" made the rest
 * of the line read as a second device's. */
static void test_text_forged_id(void **state)
{
    (void)state;
    fmt_line(0, LOG_LV_INFO, "x] tcpota serve: [admin", "1.2.3.4:5", "hello");
    assert_string_equal(line, TS " tcpota serve: [x\\x5d tcpota serve: \\x5badmin 1.2.3.4:5] hello\n");
    assert_int_equal(count(line, '['), 1);
    assert_int_equal(count(line, ']'), 1);
    assert_int_equal(count(line, '\n'), 1);
}

/* Bytes that end a line or are not ASCII, and the escape character itself
 * (else "\x5d" could be sent literally and read as an escaped ']'). */
static void test_text_escapes(void **state)
{
    (void)state;
    fmt_line(0, LOG_LV_INFO, "a\nb\rc", "p", "m");
    assert_string_equal(line, TS " tcpota serve: [a\\x0ab\\x0dc p] m\n");
    fmt_line(0, LOG_LV_INFO, "\x7f\xc3\xa9\x1f", "p", "m");
    assert_string_equal(line, TS " tcpota serve: [\\x7f\\xc3\\xa9\\x1f p] m\n");
    fmt_line(0, LOG_LV_INFO, "a\\x5d", "p", "m");
    assert_string_equal(line, TS " tcpota serve: [a\\x5cx5d p] m\n");
}

/* Peer strings reach the message too (models, versions, DECLINE and
 * ERROR texts): the message is escaped like the device. */
static void test_text_message_escaped(void **state)
{
    (void)state;
    fmt_line(0, LOG_LV_ERROR, "dev", "p", "declined: x\n" TS " tcpota serve: [admin p] ok");
    assert_string_equal(line, TS " tcpota serve: [dev p] declined: x\\x0a" TS
                              " tcpota serve: \\x5badmin p\\x5d ok\n");
    assert_int_equal(count(line, '\n'), 1);
    assert_int_equal(count(line, '['), 1);
}

/* Server lines have no [device peer]; a refused peer shows "-". Scripts
 * wait for "tcpota serve: listening on HOST:PORT". */
static void test_text_server_lines(void **state)
{
    (void)state;
    fmt_line(0, LOG_LV_INFO, NULL, NULL, "listening on 127.0.0.1:8070, image 2.0.0");
    assert_string_equal(line, TS " tcpota serve: listening on 127.0.0.1:8070, image 2.0.0\n");
    fmt_line(0, LOG_LV_INFO, NULL, "1.2.3.4:5", "refused");
    assert_string_equal(line, TS " tcpota serve: [- 1.2.3.4:5] refused\n");
}

static void test_time(void **state)
{
    struct timespec t0 = {0, 0}, t1 = {1796121075, 999999999};
    (void)state;
    log_format(line, sizeof(line), 0, &t0, LOG_LV_INFO, NULL, NULL, "m");
    assert_string_equal(line, "1970-01-01T00:00:00.000Z tcpota serve: m\n");
    /* Milliseconds are cut, never rounded up into the next second. */
    log_format(line, sizeof(line), 0, &t1, LOG_LV_INFO, NULL, NULL, "m");
    assert_string_equal(line, "2026-12-01T10:31:15.999Z tcpota serve: m\n");
}

static void test_json_line(void **state)
{
    (void)state;
    fmt_line(1, LOG_LV_ERROR, "x] tcpota serve: [admin", "1.2.3.4:5", "closed");
    assert_string_equal(line, "{\"time\":\"" TS "\",\"level\":\"error\",\"device\":"
                              "\"x] tcpota serve: [admin\",\"peer\":\"1.2.3.4:5\",\"msg\":\"closed\"}\n");
    fmt_line(1, LOG_LV_INFO, NULL, NULL, "listening on 127.0.0.1:8070");
    assert_string_equal(line, "{\"time\":\"" TS "\",\"level\":\"info\",\"msg\":\"listening on "
                              "127.0.0.1:8070\"}\n");
    fmt_line(1, LOG_LV_WARN, NULL, NULL, "warning: w");
    assert_string_equal(line, "{\"time\":\"" TS "\",\"level\":\"warn\",\"msg\":\"warning: w\"}\n");
    fmt_line(0, LOG_LV_WARN, NULL, NULL, "warning: w");
    assert_string_equal(line, TS " tcpota serve: warning: w\n");
    fmt_line(1, LOG_LV_INFO, NULL, "1.2.3.4:5", "refused");
    assert_string_equal(line, "{\"time\":\"" TS "\",\"level\":\"info\",\"peer\":\"1.2.3.4:5\","
                              "\"msg\":\"refused\"}\n");
}

/* Quotes and backslashes would end or break the string; control bytes are
 * not allowed in JSON strings; bytes >= 0x7f are not valid UTF-8 alone. */
static void test_json_escapes(void **state)
{
    (void)state;
    fmt_line(1, LOG_LV_INFO, "a\"b\\c", "p", "\n\x01\x7f\xc3\xa9]");
    assert_string_equal(line, "{\"time\":\"" TS "\",\"level\":\"info\",\"device\":\"a\\\"b\\\\c\","
                              "\"peer\":\"p\",\"msg\":\"\\u000a\\u0001\\u007f\\u00c3\\u00a9]\"}\n");
}

/* A message too long for the buffer is cut between escapes; the line
 * still ends with its end (and, in JSON, a closed string and object). */
static void test_cut(void **state)
{
    char msg[4000];
    size_t n, i;
    (void)state;
    memset(msg, '\x01', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = 0;

    n = log_format(line, LOG_LINE_MIN, 1, &T, LOG_LV_INFO, "d", "p", msg);
    assert_true(n < LOG_LINE_MIN);
    assert_string_equal(line + n - 3, "\"}\n");
    {
        const char *body = strstr(line, "\"msg\":\"") + 7;
        size_t len = (size_t)(line + n - 3 - body);
        assert_int_equal(len % 6, 0);
        for (i = 0; i < len; i += 6) assert_memory_equal(body + i, "\\u0001", 6);
    }
    n = log_format(line, LOG_LINE_MIN, 0, &T, LOG_LV_INFO, "d", "p", msg);
    assert_true(n < LOG_LINE_MIN);
    assert_int_equal(line[n - 1], '\n');
    assert_int_equal(count(line, '\n'), 1);
    assert_int_equal((size_t)(line + n - 1 - (strstr(line, "] ") + 2)) % 4, 0);
}

/* clog_(), say_always(): the whole path to stderr, with the clock. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    FILE *tmp = tmpfile();
    int saved = dup(2);
    static char buf[LOG_LINE_MAX * 4];
    size_t n;

    assert_non_null(tmp);
    fflush(stderr);
    dup2(fileno(tmp), 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    n = fread(buf, 1, sizeof(buf) - 1, tmp);
    buf[n] = 0;
    fclose(tmp);
    return buf;
}

struct fixture {
    struct tcpota_serve_opts o;
    struct server srv;
    struct conn *c;
};

static void log_some(void *arg)
{
    struct fixture *f = arg;
    clog_(f->c, 0, "hello model=%s", "esp32");
    clog_(f->c, 1, "error: %s", "frame too big");
    say_always(&f->o, LOG_LV_INFO, "summary: %u", 1u);
}

static void test_to_stderr(void **state)
{
    struct fixture f;
    regex_t text, json;
    char *out, *l, *save = NULL;
    int lines = 0;
    (void)state;

    memset(&f, 0, sizeof(f));
    f.srv.o = &f.o;
    f.c = calloc(1, sizeof(*f.c));
    assert_non_null(f.c);
    f.c->srv = &f.srv;
    snprintf(f.c->dev, sizeof(f.c->dev), "x] tcpota serve: [admin");
    snprintf(f.c->peer, sizeof(f.c->peer), "127.0.0.1:5");
    assert_int_equal(regcomp(&text, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                                    "tcpota serve: ", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regcomp(&json, "^\\{\"time\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z\","
                                    "\"level\":\"(info|error)\",.*\"msg\":\".*\"\\}$",
                             REG_EXTENDED | REG_NOSUB), 0);

    out = capture_stderr(log_some, &f);
    for (l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        assert_int_equal(regexec(&text, l, 0, NULL, 0), 0);
        assert_int_equal(count(l, '['), lines < 2);
    }
    assert_int_equal(lines, 3);

    f.o.log_json = 1;
    out = capture_stderr(log_some, &f);
    assert_non_null(strstr(out, "\"level\":\"info\",\"device\":\"x] tcpota serve: [admin\""));
    assert_non_null(strstr(out, "\"level\":\"error\",\"device\":"));
    for (l = strtok_r(out, "\n", &save), lines = 0; l; l = strtok_r(NULL, "\n", &save), lines++) {
        assert_int_equal(regexec(&json, l, 0, NULL, 0), 0);
    }
    assert_int_equal(lines, 3);

    /* --quiet: errors and the summary only. */
    f.o.quiet = 1;
    f.o.log_json = 0;
    out = capture_stderr(log_some, &f);
    assert_null(strstr(out, "hello"));
    assert_non_null(strstr(out, "error: frame too big"));
    assert_non_null(strstr(out, "summary: 1"));

    regfree(&text);
    regfree(&json);
    free(f.c);
}

/* text_sockaddr writes what getnameinfo(NI_NUMERICHOST | NI_NUMERICSERV)
 * writes, for the edges of every octet and port and random addresses; other
 * families through getnameinfo itself; "?" where that fails. */
static void check_sockaddr(const struct sockaddr *sa, socklen_t len)
{
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN], h2[TEXT_HOST_LEN], p2[TEXT_PORT_LEN];

    text_sockaddr(sa, len, host, port);
    assert_int_equal(getnameinfo(sa, len, h2, sizeof(h2), p2, sizeof(p2),
                                 NI_NUMERICHOST | NI_NUMERICSERV), 0);
    assert_string_equal(host, h2);
    assert_string_equal(port, p2);
}

/* Why a listener could not be set up, and what to do: a port in use, a
 * privileged port, an address not of this host, a host that does not
 * resolve (whatever errno a failed bind left). */
static void test_listen_failed(void **state)
{
    char buf[512];
    (void)state;
    assert_string_equal(log_listen_failed(buf, sizeof buf, "127.0.0.1", 8071, "the API", "--api",
                                          EADDRINUSE),
                        "cannot listen on 127.0.0.1:8071 for the API: Address already in use "
                        "(another program, perhaps another tcpota serve, listens there: stop it "
                        "or give another --api)");
    log_listen_failed(buf, sizeof buf, "127.0.0.1", 1023, NULL, "--listen", EACCES);
    assert_non_null(strstr(buf, "cannot listen on 127.0.0.1:1023: "));
    assert_non_null(strstr(buf, "(a port below 1024 needs root or CAP_NET_BIND_SERVICE: give "
                                "another --listen)"));
    log_listen_failed(buf, sizeof buf, "127.0.0.1", 1024, NULL, "--listen", EACCES);
    assert_null(strstr(buf, "below 1024"));
    assert_non_null(strstr(buf, "(give another --listen)"));
    log_listen_failed(buf, sizeof buf, "127.0.0.1", 8071, "the API", "--api", 0);
    assert_non_null(strstr(buf, ": not an address of this host (give another --api)"));
    /* .invalid never resolves (RFC 6761): said so, not errno's word. */
    log_listen_failed(buf, sizeof buf, "nosuch.invalid", 8071, "the API", "--api", EADDRINUSE);
    assert_non_null(strstr(buf, "cannot listen on nosuch.invalid:8071 for the API: "));
    assert_null(strstr(buf, "another program"));
    assert_null(strstr(buf, "Address already in use"));
    assert_non_null(strstr(buf, "(give another --api)"));
}

static void test_sockaddr(void **state)
{
    static const uint32_t edges[] = {0, 1, 9, 10, 99, 100, 199, 255, 256, 65535, 0x7f000001u,
                                     0x0a090807u, 0xffffffffu, 0x64640a0au};
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN];
    size_t i, j;
    (void)state;

    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        for (j = 0; j < sizeof(edges) / sizeof(edges[0]); j++) {
            in.sin_addr.s_addr = htonl(edges[i]);
            in.sin_port = htons((uint16_t)edges[j]);
            check_sockaddr((struct sockaddr *)&in, sizeof(in));
        }
    }
    srand(7);
    for (i = 0; i < 20000; i++) {
        in.sin_addr.s_addr = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
        in.sin_port = (uint16_t)rand();
        check_sockaddr((struct sockaddr *)&in, sizeof(in));
    }
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(8443);
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr), 1);
    check_sockaddr((struct sockaddr *)&in6, sizeof(in6));
    text_sockaddr((struct sockaddr *)&in6, sizeof(in6), host, port);
    assert_string_equal(host, "::ffff:127.0.0.1");
    assert_string_equal(port, "8443");
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    check_sockaddr((struct sockaddr *)&un, sizeof(un));
    /* Too short to be an IPv4 address: getnameinfo fails, "?". */
    text_sockaddr((struct sockaddr *)&in, 4, host, port);
    assert_string_equal(host, "?");
    assert_string_equal(port, "?");
}

/* A line a peer can repeat: at most `burst` per window, the rest counted
 * and told by the next line said; a window opens at the first line said
 * after the last ended (a clock at 0 is a time like any other). */
static void test_limit(void **state)
{
    struct log_limit l;
    unsigned long held = 99;
    int i;

    (void)state;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_pass(&l, 0, 1000, 3, &held), 1);
    assert_int_equal(held, 0);
    assert_int_equal(log_limit_pass(&l, 10, 1000, 3, &held), 1);
    assert_int_equal(log_limit_pass(&l, 20, 1000, 3, NULL), 1);
    for (i = 0; i < 5; i++) assert_int_equal(log_limit_pass(&l, 30 + i, 1000, 3, &held), 0);
    assert_int_equal(log_limit_pass(&l, 999, 1000, 3, &held), 0); /* still the first window */
    assert_int_equal(log_limit_pass(&l, 1000, 1000, 3, &held), 1);
    assert_int_equal(held, 6);
    assert_int_equal(log_limit_pass(&l, 1001, 1000, 3, &held), 1);
    assert_int_equal(held, 0); /* told once */
    /* Burst 1 (a refused API token): one line a window, the window from it. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_pass(&l, 5000, 1000, 1, &held), 1);
    assert_int_equal(log_limit_pass(&l, 5999, 1000, 1, &held), 0);
    assert_int_equal(log_limit_pass(&l, 7000, 1000, 1, &held), 1);
    assert_int_equal(held, 1);
    assert_int_equal(l.window_ms, 7000);
    assert_int_equal(log_limit_pass(&l, 7500, 1000, 1, &held), 0);
}

/* The line's tail in one wording (log_limit_say, on the real clock: a
 * window of 1 ms, waited out). */
static void test_limit_say(void **state)
{
    struct log_limit l;
    char more[LOG_MORE_MAX];
    struct timespec two_ms = {0, 2000000};

    (void)state;
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_say(&l, 1000000, 1, "refusals", more, sizeof(more)), 1);
    assert_string_equal(more, "");
    assert_int_equal(log_limit_say(&l, 1000000, 1, "refusals", more, sizeof(more)), 0);
    assert_string_equal(more, "");
    assert_int_equal(log_limit_say(&l, 1000000, 1, "refusals", more, sizeof(more)), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(log_limit_say(&l, 1, 1, "x", more, sizeof(more)), 1);
    assert_int_equal(log_limit_say(&l, 1000000, 1, "x", more, sizeof(more)), 0);
    assert_int_equal(log_limit_say(&l, 1000000, 1, "x", more, sizeof(more)), 0);
    nanosleep(&two_ms, NULL);
    assert_int_equal(log_limit_say(&l, 1, 1, "refused requests", more, sizeof(more)), 1);
    assert_string_equal(more, " (and 2 more refused requests not logged since the last such line)");
    assert_int_equal(log_limit_say(&l, 1000000, 1, "refused requests", more, sizeof(more)), 0);
    nanosleep(&two_ms, NULL);
    assert_int_equal(log_limit_say(&l, 1, 1, "refused requests", more, sizeof(more)), 1);
    assert_string_equal(more, " (and 1 more refused requests not logged since the last such line)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_forged_id),
        cmocka_unit_test(test_text_escapes),
        cmocka_unit_test(test_text_message_escaped),
        cmocka_unit_test(test_text_server_lines),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_to_stderr),
        cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_listen_failed),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_limit_say),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
