/* test_server_deadline.c - deadlines from a connect against a loop that
 * ran late (server_time_left, server/server.c), on a clock the test sets;
 * and what a PEM file holds wherever a mark falls in the 16 KiB reads of
 * tls_pem_kind (server/tls_pem.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h> /* mkdtemp */
#include <string.h>
#include <unistd.h>

#include "server_internal.h"
#include "tls_pem.h"
#include "tmpdir.h"

#define LIMIT 2.0 /* the idle timeout, s */
#define T0 100.0  /* the sweep's last run */

#define near(a, b) assert_true((a) - (b) < 1e-9 && (b) - (a) < 1e-9)

/* A server whose sweep last ran at T0, having counted `lost` late seconds. */
static struct server at(double lost)
{
    struct server srv;

    memset(&srv, 0, sizeof(srv));
    srv.swept_at = T0;
    srv.loop_lost_s = lost;
    return srv;
}

/* The sweep runs at t: what sweep_cb counts. */
static void sweep(struct server *srv, double t)
{
    srv->loop_lost_s = server_loop_lost(srv, t);
    srv->swept_at = t;
}

static void on_time_loop(void **state)
{
    struct server srv = at(0);
    (void)state;
    /* The sweep is due at T0 + 1; half a period more is not lateness. */
    near(server_loop_lost(&srv, T0 + 1.5), 0);
    near(server_time_left(&srv, T0, 0, LIMIT, T0 + 1.5), LIMIT - 1.5);
    sweep(&srv, T0 + 1);
    sweep(&srv, T0 + 2);
    near(server_time_left(&srv, T0, 0, LIMIT, T0 + 2.5), -0.5);
}

static void a_stop_is_left_out(void **state)
{
    struct server srv = at(0);
    double since = T0 + 0.2, lost_at = server_loop_lost(&srv, since);
    (void)state;
    near(lost_at, 0);
    /* Stopped from T0 + 0.5 to T0 + 3.5: the sweep is 2.5 s late, the
     * connection 3.3 s old, of which 2 (at most the limit) are the loop's. */
    near(server_loop_lost(&srv, T0 + 3.5), 2.5);
    near(server_time_left(&srv, since, lost_at, LIMIT, T0 + 3.5), LIMIT - (3.3 - 2.0));
    /* The sweep runs and counts it: the same answer after. */
    sweep(&srv, T0 + 3.5);
    near(srv.loop_lost_s, 2.5);
    near(server_time_left(&srv, since, lost_at, LIMIT, T0 + 3.5), LIMIT - (3.3 - 2.0));
    /* Then on time: the deadline is since + LIMIT + 2. */
    sweep(&srv, T0 + 4.5);
    near(server_time_left(&srv, since, lost_at, LIMIT, since + LIMIT + 2.0 + 0.1), -0.1);
    /* A loop late at every turn does not stretch it further. */
    srv.loop_lost_s = 1000;
    near(server_time_left(&srv, since, lost_at, LIMIT, since + 2 * LIMIT + 0.1), -0.1);
}

static void no_credit_before_the_connect(void **state)
{
    struct server srv = at(5);
    /* Connected in the late turn itself (the sweep 3 s late, not run yet):
     * that lateness came before it. */
    double since = T0 + 4, lost_at = server_loop_lost(&srv, since);
    (void)state;
    near(lost_at, 5 + 3);
    sweep(&srv, since);
    sweep(&srv, since + 1);
    sweep(&srv, since + 2);
    near(server_time_left(&srv, since, lost_at, LIMIT, since + LIMIT + 0.1), -0.1);
}

/* A file of `pad` bytes of text, then what follows. */
static enum tls_pem kind_after(const char *path, size_t pad, const char *then)
{
    FILE *f = fopen(path, "w");
    size_t i;

    assert_non_null(f);
    for (i = 0; i + 1 < pad; i++) fputc(i % 64 == 63 ? '\n' : 'x', f);
    if (pad) fputc('\n', f);
    fputs(then, f);
    assert_int_equal(fclose(f), 0);
    return tls_pem_kind(path);
}

static void pem_marks_across_reads(void **state)
{
    static const char cert[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    static const char key[] = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
    char dir[64], path[96], both[sizeof(cert) + sizeof(key)];
    size_t pad;
    (void)state;

    snprintf(dir, sizeof(dir), "/tmp/tcpota-pem-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/f.pem", dir);
    snprintf(both, sizeof(both), "%s%s", cert, key);
    /* Each mark starting at every offset around the first and the fourth
     * read's end (the marks are 27 and 16 bytes). */
    for (pad = TLS_PEM_CHUNK - 40; pad <= TLS_PEM_CHUNK + 2; pad++) {
        assert_int_equal(kind_after(path, pad, cert), TLS_PEM_CERT);
        assert_int_equal(kind_after(path, pad, key), TLS_PEM_KEY);
        assert_int_equal(kind_after(path, pad, both), TLS_PEM_BOTH);
        assert_int_equal(kind_after(path, 3 * TLS_PEM_CHUNK + pad, both), TLS_PEM_BOTH);
    }
    assert_int_equal(kind_after(path, 0, ""), TLS_PEM_EMPTY);
    assert_int_equal(kind_after(path, 5 * TLS_PEM_CHUNK, "no mark\n"), TLS_PEM_OTHER);
    tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(on_time_loop),
        cmocka_unit_test(a_stop_is_left_out),
        cmocka_unit_test(no_credit_before_the_connect),
        cmocka_unit_test(pem_marks_across_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
