/* test_metrics.c - the counters of fleet mode and their Prometheus text
 * (server/metrics.c): rows per (rollout, image), the overflow row, declines
 * by reason, the live figures added at a scrape, a cumulative histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tcpota/tcpota.h"

/* The rendered text, NUL-terminated (freed by the caller). */
static char *render(const struct metrics_live *live, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *text;

    assert_non_null(b);
    assert_int_equal(metrics_render(b, live, n), 0);
    len = evbuffer_get_length(b);
    text = malloc(len + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, len);
    text[len] = 0;
    evbuffer_free(b);
    return text;
}

static void has_line(const char *text, const char *line)
{
    char want[256];

    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want)) {
        fail_msg("missing line: %s\n--- text:\n%s", line, text);
    }
}

/* How many times needle occurs in text. */
static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;

    for (; (text = strstr(text, needle)) != NULL; text++) {
        n++;
    }
    return n;
}

static const uint8_t img_a[32] = {0x9f, 0x2c, 0x41, 0xd0, 0xe1, 0xa7, 0xff};
static const uint8_t img_b[32] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06};

static void test_rows_and_protocols(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_connection(METRICS_V1);
    metrics_connection(METRICS_V1);
    metrics_connection(METRICS_HTTP);
    metrics_checkin(METRICS_LEGACY);
    metrics_event(1, img_a, METRICS_OFFERED);
    metrics_event(1, img_a, METRICS_OFFERED);
    metrics_event(2, img_b, METRICS_UPDATED);
    metrics_decline(1, img_a, TCPOTA_ERR_UNSIGNED);
    metrics_decline(1, img_a, -9999); /* not a known reason */
    metrics_bytes(1, img_a, 1000);
    t = render(NULL, 0);
    has_line(t, "tcpota_connections_total{protocol=\"v1\"} 2");
    has_line(t, "tcpota_connections_total{protocol=\"http\"} 1");
    has_line(t, "tcpota_checkins_total{protocol=\"legacy\"} 1");
    has_line(t, "tcpota_offers_total{rollout=\"1\",image=\"9f2c41d0e1a7\"} 2");
    has_line(t, "tcpota_offers_total{rollout=\"2\",image=\"010203040506\"} 0");
    has_line(t, "tcpota_updates_total{rollout=\"2\",image=\"010203040506\"} 1");
    has_line(t, "tcpota_declines_total{rollout=\"1\",image=\"9f2c41d0e1a7\",reason=\"image is not signed\"} 1");
    has_line(t, "tcpota_declines_total{rollout=\"1\",image=\"9f2c41d0e1a7\",reason=\"unknown\"} 1");
    has_line(t, "tcpota_bytes_sent_total{rollout=\"1\",image=\"9f2c41d0e1a7\"} 1000");
    has_line(t, "# TYPE tcpota_offers_total counter");
    has_line(t, "# TYPE tcpota_active_transfers gauge");
    free(t);
}

/* A check-in the store could not decide counts by protocol and why, each
 * pair apart, every pair rendered from zero (a rate over it needs the 0). */
static void test_deferred_checkins(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_deferred(METRICS_V1, METRICS_DB_HUNG);
    metrics_deferred(METRICS_V1, METRICS_DB_HUNG);
    metrics_deferred(METRICS_HTTP, METRICS_DB_UNREACHABLE);
    metrics_deferred(METRICS_LEGACY, METRICS_DB_ERROR);
    t = render(NULL, 0);
    has_line(t, "# TYPE tcpota_checkins_deferred_total counter");
    has_line(t, "tcpota_checkins_deferred_total{protocol=\"v1\",why=\"database_hung\"} 2");
    has_line(t, "tcpota_checkins_deferred_total{protocol=\"v1\",why=\"database_unreachable\"} 0");
    has_line(t, "tcpota_checkins_deferred_total{protocol=\"http\",why=\"database_unreachable\"} 1");
    has_line(t, "tcpota_checkins_deferred_total{protocol=\"legacy\",why=\"database_error\"} 1");
    has_line(t, "tcpota_checkins_total{protocol=\"v1\"} 0"); /* not decided: not a check-in */
    assert_int_equal(count_of(t, "\ntcpota_checkins_deferred_total{"),
                     METRICS_PROTO_COUNT * METRICS_DEFERRED_COUNT);
    free(t);
}

/* A row is one (rollout, image): two images of one rollout count apart. */
static void test_rows_by_image(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_event(1, img_a, METRICS_OFFERED);
    metrics_event(1, img_b, METRICS_OFFERED);
    metrics_event(1, img_b, METRICS_OFFERED);
    t = render(NULL, 0);
    has_line(t, "tcpota_offers_total{rollout=\"1\",image=\"9f2c41d0e1a7\"} 1");
    has_line(t, "tcpota_offers_total{rollout=\"1\",image=\"010203040506\"} 2");
    free(t);
}

/* Only rows something happened to are rendered, and only the decline
 * reasons that occurred: no line for zero bytes sent, an unused row or a
 * reason never given. */
static void test_only_what_happened(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_bytes(5, img_b, 0);
    metrics_decline(1, img_a, TCPOTA_ERR_UNSIGNED);
    t = render(NULL, 0);
    assert_null(strstr(t, "rollout=\"5\""));
    assert_int_equal(count_of(t, "\ntcpota_offers_total{"), 1);
    assert_int_equal(count_of(t, "\ntcpota_declines_total{"), 1);
    has_line(t, "tcpota_declines_total{rollout=\"1\",image=\"9f2c41d0e1a7\",reason=\"image is not signed\"} 1");
    free(t);
}

static void test_live_figures_add_up(void **state)
{
    struct metrics_live live[3] = {{1, img_a, 1, 500}, {1, img_a, 1, 250}, {3, img_b, 0, 7}};
    char *t;

    (void)state;
    metrics_reset();
    metrics_bytes(1, img_a, 1000);
    t = render(live, 3);
    has_line(t, "tcpota_active_transfers{rollout=\"1\",image=\"9f2c41d0e1a7\"} 2");
    has_line(t, "tcpota_bytes_sent_total{rollout=\"1\",image=\"9f2c41d0e1a7\"} 1750");
    has_line(t, "tcpota_active_transfers{rollout=\"3\",image=\"010203040506\"} 0");
    has_line(t, "tcpota_bytes_sent_total{rollout=\"3\",image=\"010203040506\"} 7");
    free(t);
}

static void test_rows_beyond_the_table_go_to_other(void **state)
{
    uint64_t r;
    char *t;
    struct metrics_live live = {METRICS_ROLLOUTS + 10, img_a, 1, 300};

    (void)state;
    metrics_reset();
    for (r = 1; r <= METRICS_ROLLOUTS + 5; r++) {
        metrics_event(r, img_a, METRICS_OFFERED);
    }
    metrics_decline(METRICS_ROLLOUTS + 9, img_a, TCPOTA_ERR_UNSIGNED);
    t = render(&live, 1);
    has_line(t, "tcpota_offers_total{rollout=\"64\",image=\"9f2c41d0e1a7\"} 1");
    has_line(t, "tcpota_offers_total{rollout=\"other\",image=\"other\"} 5");
    /* Every family renders the other row: declines, transfers, bytes. */
    has_line(t, "tcpota_declines_total{rollout=\"other\",image=\"other\",reason=\"image is not signed\"} 1");
    has_line(t, "tcpota_active_transfers{rollout=\"other\",image=\"other\"} 1");
    has_line(t, "tcpota_bytes_sent_total{rollout=\"other\",image=\"other\"} 300");
    assert_null(strstr(t, "rollout=\"65\""));
    free(t);
}

static void test_histogram_is_cumulative(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_store_latency(METRICS_STORE_CHECKIN, 0.0001);
    metrics_store_latency(METRICS_STORE_CHECKIN, 0.003);
    metrics_store_latency(METRICS_STORE_CHECKIN, 10.0);
    t = render(NULL, 0);
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"checkin\",le=\"0.0005\"} 1");
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"checkin\",le=\"0.0025\"} 1");
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"checkin\",le=\"0.005\"} 2");
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"checkin\",le=\"2.5\"} 2");
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"checkin\",le=\"+Inf\"} 3");
    has_line(t, "tcpota_store_request_seconds_count{op=\"checkin\"} 3");
    has_line(t, "tcpota_store_request_seconds_count{op=\"events\"} 0");
    has_line(t, "tcpota_store_requests_waiting 0");
    free(t);
}

/* A bucket's bound is "less or equal" (Prometheus' le); a negative time
 * (a clock step) counts in the first bucket and adds nothing to the sum. */
static void test_histogram_bounds(void **state)
{
    char *t;

    (void)state;
    metrics_reset();
    metrics_store_latency(METRICS_STORE_EVENTS, 0.001);
    metrics_store_latency(METRICS_STORE_EVENTS, -0.5);
    t = render(NULL, 0);
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"events\",le=\"0.0005\"} 1");
    has_line(t, "tcpota_store_request_seconds_bucket{op=\"events\",le=\"0.001\"} 2");
    has_line(t, "tcpota_store_request_seconds_sum{op=\"events\"} 0.001000000");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_protocols),
        cmocka_unit_test(test_deferred_checkins),
        cmocka_unit_test(test_rows_by_image),
        cmocka_unit_test(test_only_what_happened),
        cmocka_unit_test(test_live_figures_add_up),
        cmocka_unit_test(test_rows_beyond_the_table_go_to_other),
        cmocka_unit_test(test_histogram_is_cumulative),
        cmocka_unit_test(test_histogram_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
