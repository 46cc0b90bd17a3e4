/* metrics.c - fleet mode's counters and their Prometheus text (see metrics.h). */
#include "metrics.h"
#include "store.h" /* store_pending */

#include "tcpota/codec.h"
#include "tcpota/tcpota.h"

#include <event2/buffer.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define METRICS_IMAGE_HEX 12u  /* hex digits of an image id in a label (as the CLI shows) */
/* Decline reasons kept apart: -tcpota_err below this, every code of the
 * core's (TCPOTA_ERR_FAILED_BEFORE is its largest). */
#define METRICS_REASONS ((unsigned)-TCPOTA_ERR_FAILED_BEFORE + 1u)
#define METRICS_OTHER_ROW METRICS_ROLLOUTS

/* Upper bounds (seconds) of the store latency buckets; +Inf follows. */
static const double store_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define METRICS_BUCKETS (sizeof(store_bounds) / sizeof(store_bounds[0]))

struct row {
    uint8_t used;
    uint64_t rollout;
    uint8_t image[TCPOTA_ID_LEN];
    uint64_t events[METRICS_EVENT_COUNT];
    uint64_t bytes;
    uint32_t declines[METRICS_REASONS]; /* by -tcpota_err; [0]: a reason not known */
};

struct histogram {
    uint64_t buckets[METRICS_BUCKETS]; /* not cumulative: rendered cumulatively */
    uint64_t count;
    double sum;
};

static struct {
    uint64_t connections[METRICS_PROTO_COUNT];
    uint64_t checkins[METRICS_PROTO_COUNT];
    uint64_t deferred[METRICS_PROTO_COUNT][METRICS_DEFERRED_COUNT];
    struct row rows[METRICS_ROLLOUTS + 1]; /* + the "other" row */
    struct histogram store[METRICS_STORE_OP_COUNT];
} m;

static const char *const proto_names[METRICS_PROTO_COUNT] = {"v1", "legacy", "http"};
static const char *const deferred_names[METRICS_DEFERRED_COUNT] = {
    "database_unreachable", "database_hung", "database_error"};
static const char *const op_names[METRICS_STORE_OP_COUNT] = {"checkin", "events", "other"};

void metrics_reset(void)
{
    memset(&m, 0, sizeof(m));
}

void metrics_connection(enum metrics_proto p)
{
    m.connections[p]++;
}

void metrics_checkin(enum metrics_proto p)
{
    m.checkins[p]++;
}

void metrics_deferred(enum metrics_proto p, enum metrics_deferred why)
{
    m.deferred[p][why]++;
}

/* The row of (rollout, image): the one holding it, a free one, or "other". */
static struct row *row_of(uint64_t rollout, const uint8_t *image)
{
    static const uint8_t none[TCPOTA_ID_LEN];
    const uint8_t *id = image ? image : none;
    size_t i;

    for (i = 0; i < METRICS_ROLLOUTS; i++) {
        struct row *r = &m.rows[i];
        if (!r->used) {
            r->used = 1;
            r->rollout = rollout;
            memcpy(r->image, id, TCPOTA_ID_LEN);
            return r;
        }
        if (r->rollout == rollout && memcmp(r->image, id, TCPOTA_ID_LEN) == 0) {
            return r;
        }
    }
    m.rows[METRICS_OTHER_ROW].used = 1;
    return &m.rows[METRICS_OTHER_ROW];
}

void metrics_event(uint64_t rollout, const uint8_t *image, enum metrics_event ev)
{
    row_of(rollout, image)->events[ev]++;
}

void metrics_decline(uint64_t rollout, const uint8_t *image, int reason)
{
    unsigned i = reason < 0 && (unsigned)-reason < METRICS_REASONS ? (unsigned)-reason : 0;

    row_of(rollout, image)->declines[i]++;
}

void metrics_bytes(uint64_t rollout, const uint8_t *image, uint64_t n)
{
    if (n) {
        row_of(rollout, image)->bytes += n;
    }
}

void metrics_store_latency(enum metrics_store_op op, double seconds)
{
    struct histogram *h = &m.store[op];
    size_t i;

    for (i = 0; i < METRICS_BUCKETS && seconds > store_bounds[i]; i++) {
    }
    if (i < METRICS_BUCKETS) {
        h->buckets[i]++;
    }
    h->count++;
    h->sum += seconds > 0 ? seconds : 0;
}

/* ---- the text format ---------------------------------------------------- */

/* The labels of a row: rollout="N",image="<12 hex>" (or rollout="other"). */
static void row_labels(const struct row *r, char *buf, size_t cap)
{
    char img[METRICS_IMAGE_HEX + 1];

    if (r == &m.rows[METRICS_OTHER_ROW]) {
        snprintf(buf, cap, "rollout=\"other\",image=\"other\"");
        return;
    }
    sodium_bin2hex(img, sizeof(img), r->image, METRICS_IMAGE_HEX / 2);
    snprintf(buf, cap, "rollout=\"%llu\",image=\"%s\"", (unsigned long long)r->rollout, img);
}

static int head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0;
}

/* One counter per used row: its count of ev. */
static int per_row(struct evbuffer *out, const char *name, const char *help, enum metrics_event ev)
{
    char labels[96];
    size_t i;
    int bad = head(out, name, "counter", help);

    for (i = 0; i <= METRICS_OTHER_ROW; i++) {
        if (!m.rows[i].used) continue;
        row_labels(&m.rows[i], labels, sizeof(labels));
        bad |= evbuffer_add_printf(out, "%s{%s} %llu\n", name, labels,
                                   (unsigned long long)m.rows[i].events[ev]) < 0;
    }
    return bad;
}

static int by_proto(struct evbuffer *out, const char *name, const char *help, const uint64_t *v)
{
    int bad = head(out, name, "counter", help);
    size_t p;

    for (p = 0; p < METRICS_PROTO_COUNT; p++) {
        bad |= evbuffer_add_printf(out, "%s{protocol=\"%s\"} %llu\n", name, proto_names[p],
                                   (unsigned long long)v[p]) < 0;
    }
    return bad;
}

static int deferred(struct evbuffer *out)
{
    static const char name[] = "tcpota_checkins_deferred_total";
    size_t p, w;
    int bad = head(out, name, "counter",
                   "Device check-ins the store could not decide (the device is told to come back),"
                   " by protocol and why.");

    for (p = 0; p < METRICS_PROTO_COUNT; p++) {
        for (w = 0; w < METRICS_DEFERRED_COUNT; w++) {
            bad |= evbuffer_add_printf(out, "%s{protocol=\"%s\",why=\"%s\"} %llu\n", name,
                                       proto_names[p], deferred_names[w],
                                       (unsigned long long)m.deferred[p][w]) < 0;
        }
    }
    return bad;
}

static int declines(struct evbuffer *out)
{
    static const char name[] = "tcpota_declines_total";
    char labels[96];
    size_t i, k;
    int bad = head(out, name, "counter", "Offers declined by devices, per rollout, image and reason.");

    for (i = 0; i <= METRICS_OTHER_ROW; i++) {
        if (!m.rows[i].used) continue;
        row_labels(&m.rows[i], labels, sizeof(labels));
        for (k = 0; k < METRICS_REASONS; k++) {
            if (!m.rows[i].declines[k]) continue;
            /* tcpota_strerror's words hold no quote, backslash or newline. */
            bad |= evbuffer_add_printf(out, "%s{%s,reason=\"%s\"} %u\n", name, labels,
                                       k ? tcpota_strerror(-(int)k) : "unknown",
                                       m.rows[i].declines[k]) < 0;
        }
    }
    return bad;
}

static int store_histogram(struct evbuffer *out)
{
    static const char name[] = "tcpota_store_request_seconds";
    size_t op, i;
    uint64_t cum;
    int bad = head(out, name, "histogram",
                   "Time from a store request's submission to its completion, on the event loop.");

    for (op = 0; op < METRICS_STORE_OP_COUNT; op++) {
        const struct histogram *h = &m.store[op];
        for (i = 0, cum = 0; i < METRICS_BUCKETS; i++) {
            cum += h->buckets[i];
            bad |= evbuffer_add_printf(out, "%s_bucket{op=\"%s\",le=\"%g\"} %llu\n", name,
                                       op_names[op], store_bounds[i], (unsigned long long)cum) < 0;
        }
        bad |= evbuffer_add_printf(out, "%s_bucket{op=\"%s\",le=\"+Inf\"} %llu\n"
                                   "%s_sum{op=\"%s\"} %.9f\n%s_count{op=\"%s\"} %llu\n",
                                   name, op_names[op], (unsigned long long)h->count, name,
                                   op_names[op], h->sum, name, op_names[op],
                                   (unsigned long long)h->count) < 0;
    }
    bad |= head(out, "tcpota_store_requests_waiting", "gauge",
                "Store requests submitted and not yet answered (GET /health answers 503 once they"
                " have waited 10 s with none answered).");
    bad |= evbuffer_add_printf(out, "tcpota_store_requests_waiting %lu\n", store_pending()) < 0;
    return bad;
}

/* Active transfers and bytes: the live figures added to the rows'. */
static int transfers(struct evbuffer *out, const struct metrics_live *live, size_t n)
{
    static const char active[] = "tcpota_active_transfers", bytes[] = "tcpota_bytes_sent_total";
    unsigned act[METRICS_ROLLOUTS + 1] = {0};
    uint64_t more[METRICS_ROLLOUTS + 1] = {0};
    char labels[96];
    size_t i;
    int bad;

    for (i = 0; i < n; i++) {
        size_t k = (size_t)(row_of(live[i].rollout, live[i].image) - m.rows);
        act[k] += live[i].active;
        more[k] += live[i].bytes;
    }
    bad = head(out, active, "gauge", "Transfers running now, per rollout and image.");
    for (i = 0; i <= METRICS_OTHER_ROW; i++) {
        if (!m.rows[i].used) continue;
        row_labels(&m.rows[i], labels, sizeof(labels));
        bad |= evbuffer_add_printf(out, "%s{%s} %u\n", active, labels, act[i]) < 0;
    }
    bad |= head(out, bytes, "counter",
                "Image bytes queued to devices (sent, or on their way), per rollout and image.");
    for (i = 0; i <= METRICS_OTHER_ROW; i++) {
        if (!m.rows[i].used) continue;
        row_labels(&m.rows[i], labels, sizeof(labels));
        bad |= evbuffer_add_printf(out, "%s{%s} %llu\n", bytes, labels,
                                   (unsigned long long)(m.rows[i].bytes + more[i])) < 0;
    }
    return bad;
}

int metrics_render(struct evbuffer *out, const struct metrics_live *live, size_t n)
{
    int bad = 0;

    bad |= by_proto(out, "tcpota_connections_total",
                    "Device connections by protocol (http: download requests).", m.connections);
    bad |= by_proto(out, "tcpota_checkins_total",
                    "Device check-ins decided from the store, by protocol.", m.checkins);
    bad |= deferred(out);
    bad |= per_row(out, "tcpota_offers_total", "Images offered, per rollout and image.",
                   METRICS_OFFERED);
    bad |= per_row(out, "tcpota_completions_total",
                   "Downloads completed (v1: checked by the device; legacy, http: every byte sent).",
                   METRICS_COMPLETED);
    bad |= per_row(out, "tcpota_updates_total", "Devices that reported the image booted and confirmed.",
                   METRICS_UPDATED);
    bad |= per_row(out, "tcpota_rollbacks_total",
                   "Devices that reported a failed health check (the old image runs again).",
                   METRICS_ROLLED_BACK);
    bad |= per_row(out, "tcpota_boot_failures_total",
                   "Devices whose bootloader fell back to the old image.", METRICS_BOOT_FAILED);
    bad |= per_row(out, "tcpota_transfer_failures_total",
                   "Transfers that failed (integrity, device error, http: old version after a download).",
                   METRICS_FAILED);
    bad |= declines(out);
    bad |= transfers(out, live, n);
    bad |= store_histogram(out);
    return bad ? -1 : 0;
}
