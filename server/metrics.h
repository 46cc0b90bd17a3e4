/*
 * metrics.h - the counters fleet mode exports at GET /metrics in
 * Prometheus' text format 0.0.4 (docs/api.md, "Metrics").
 *
 * One process-wide set, touched only on the event loop's thread: every
 * function here is a plain increment (a short scan of a small fixed table
 * at most), with no lock, no allocation and no formatting, so callers put
 * them where the event happens. metrics_render() formats them on a scrape.
 *
 * Per-rollout counters are kept in a fixed table of METRICS_ROLLOUTS rows
 * keyed by (rollout id, image id); the rows beyond it add into one row
 * labelled rollout="other". Rollout 0 means "no rollout" (a report of an
 * image no rollout of the device uses now).
 */
#ifndef TCPOTA_SERVER_METRICS_H
#define TCPOTA_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define METRICS_ROLLOUTS 64u /* (rollout, image) rows kept apart */

/* How a device reached the server. */
enum metrics_proto { METRICS_V1 = 0, METRICS_LEGACY, METRICS_HTTP, METRICS_PROTO_COUNT };

/* What happened to a device's update, counted per (rollout, image). */
enum metrics_event {
    METRICS_OFFERED = 0,   /* offered an image (v1: OFFER; legacy, http: the first byte sent) */
    METRICS_COMPLETED,     /* every byte arrived (v1: COMPLETE ok, checked by the device) */
    METRICS_UPDATED,       /* reported: booted and confirmed */
    METRICS_ROLLED_BACK,   /* reported: its health check failed */
    METRICS_BOOT_FAILED,   /* reported: the bootloader fell back */
    METRICS_FAILED,        /* the transfer failed (integrity, device error) */
    METRICS_EVENT_COUNT
};

/* Why a check-in was not decided: the device is told to come back. */
enum metrics_deferred {
    METRICS_DB_UNREACHABLE = 0, /* the store cannot reach its database */
    METRICS_DB_HUNG,            /* the database has answered nothing for STORE_STUCK_S */
    METRICS_DB_ERROR,           /* the store failed the check-in (another error) */
    METRICS_DEFERRED_COUNT
};

/* What a store request is, for its latency histogram. */
enum metrics_store_op { METRICS_STORE_CHECKIN = 0, METRICS_STORE_EVENTS, METRICS_STORE_OTHER,
                        METRICS_STORE_OP_COUNT };

/* What the caller knows only at scrape time (fleet.c walks its connections). */
struct metrics_live {
    uint64_t rollout;          /* the transfer's rollout */
    const uint8_t *image;      /* its image id (32 bytes) */
    unsigned active;           /* transfers running now */
    uint64_t bytes;            /* image bytes queued so far by connections still open */
};

/* Forgets every count (tests; a server starts with zeros). */
void metrics_reset(void);

/* A connection (v1, legacy) or an HTTP download request (http) arrived. */
void metrics_connection(enum metrics_proto p);
/* A device checked in (its decision was taken from the store's answer). */
void metrics_checkin(enum metrics_proto p);
/* A device's check-in was not decided (why), and it was told to come
 * back (a legacy device: closed, as it retries itself). */
void metrics_deferred(enum metrics_proto p, enum metrics_deferred why);
/* ev happened to a device in rollout (0: none) about image (32 bytes). */
void metrics_event(uint64_t rollout, const uint8_t *image, enum metrics_event ev);
/* A device declined an offer; reason: the tcpota_err it gave (negative). */
void metrics_decline(uint64_t rollout, const uint8_t *image, int reason);
/* n image bytes went to a device of rollout (a connection's total when it ends). */
void metrics_bytes(uint64_t rollout, const uint8_t *image, uint64_t n);
/* A store request took seconds from submission to its done. */
void metrics_store_latency(enum metrics_store_op op, double seconds);

/* Appends every metric in the text exposition format 0.0.4, the live
 * figures (n of them; active transfers, bytes of open connections) added
 * to their rows. Returns 0, or -1 when out could not take it all. */
int metrics_render(struct evbuffer *out, const struct metrics_live *live, size_t n);

#endif
