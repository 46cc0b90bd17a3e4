/*
 * tcpota_runner.h - the device's connection loop, once for the host device
 * (`tcpota device`, cli/device.c) and the ESP-IDF task
 * (esp-idf/components/tcpota/tcpota_esp.c).
 *
 * One connection is tcpota_client's job (tcpota_client.h); the runner
 * decides what happens between connections: connect, run one connection,
 * close (lingering after the last frame), classify how it ended, count
 * attempts without progress, back off, and give up. The policy:
 *
 *  - Progress is the durable checkpoint moving past the highest one this
 *    runner has seen (TCPOTA_DEV_EV_CHECKPOINT, any image, since the last
 *    install or image failure), or an install. Bytes written do not count: a server that
 *    cuts each connection a little past the last checkpoint, or replays
 *    one image's offer with other bytes, or offers image after image,
 *    makes no progress, and the device gives up (or, with max_attempts 0,
 *    slows down to failure_max_ms) instead of erasing flash forever.
 *  - Transient errors (cannot connect, cut, timeout, a protocol error)
 *    back off from backoff_min_ms, doubling per attempt without progress
 *    up to backoff_max_ms (200 ms to 5 s by default).
 *  - Refusals that retrying cannot change (the server refused this
 *    device's authentication; the device refused the server's TLS
 *    certificate, or the server answered without TLS: connect's
 *    TCPOTA_ERR_DENIED; an HTTP server answered HELLO, or another
 *    service's text banner came first, the client's http_answer and
 *    text_answer: the address names no device port) end the run at once
 *    when the device may give up (TCPOTA_RUNNER_DENIED), else back off as
 *    image failures do.
 *  - Image failures (the image failed its integrity check or was refused
 *    at ota_end, or its offer was declined as known bad: the core
 *    remembers such an image, see TCPOTA_KEY_BAD in tcpota/device.h) back
 *    off from backoff_max_ms, doubling per failure in a row, up to
 *    failure_max_ms (1 hour by default): a broken release must not keep a
 *    fleet downloading, and an hour is still soon enough to pick up the
 *    fixed release without a reboot. More than TCPOTA_RUNNER_PATIENCE
 *    attempts without progress (possible only with max_attempts 0 or
 *    above it) back off the same way.
 *  - A server that answers with ERROR carrying RETRY_AFTER (busy, its
 *    database down; or a throttle after refused authentications) is
 *    waited for at least that long, capped at failure_max_ms (1 hour by
 *    default: over plain TCP anyone can forge the ERROR), with no jitter
 *    of its own (devices keep the spread they arrived with). The server's
 *    time may exceed backoff_max_ms; the attempt still counts towards
 *    max_attempts, so a device that may give up does so after
 *    max_attempts such waits, not after max_attempts quick retries.
 *  - Every backoff is uniform ("full jitter") between backoff_min_ms and the
 *    current ceiling, so that a fleet cut off at once does not come back
 *    at once.
 *  - A device that holds a secret but whose server decides (an offer, or
 *    nothing newer) without a CHALLENGE was not asked to prove who it is:
 *    that server holds no secret for its id, and anyone may use the id
 *    there (or something in between strips the challenge). The device is
 *    served all the same, and on_step is told once per runner
 *    (TCPOTA_RUNNER_UNCHALLENGED), for a warning that says so.
 *  - Periodic check-ins (check_interval_s, off by default): once the run
 *    ended up to date or with an offer declined for good,
 *    tcpota_runner_check_in() waits check_interval_s ±20 % (uniform) and
 *    the caller runs again. When the server's NO_UPDATE carried
 *    RETRY_AFTER, that wait is the server's instead, never shorter and up
 *    to 20 % longer (a fleet told the same time spreads out). Both are
 *    capped at TCPOTA_RUNNER_CHECK_MAX_S (one week).
 *
 * Time and randomness come from the caller (sleep, random callbacks), and
 * so does the connection (connect, run, close): the policy is tested on a
 * fake clock with a scripted connection (tests/unit/test_runner.c). The
 * caller's per-connection event hook must pass every session event to
 * tcpota_runner_note(), which is how the runner sees checkpoints.
 *
 * Memory: sizeof(struct tcpota_runner); no allocation.
 */
#ifndef TCPOTA_RUNNER_H
#define TCPOTA_RUNNER_H

#include "tcpota/device.h"
#include "tcpota_client.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_RUNNER_BACKOFF_MIN_MS 200u
#define TCPOTA_RUNNER_BACKOFF_MAX_MS 5000u
#define TCPOTA_RUNNER_FAILURE_MAX_MS 3600000u /* 1 hour */
#define TCPOTA_RUNNER_ATTEMPTS_DEFAULT 20u
/* Attempts without progress after which waits grow to failure_max_ms. */
#define TCPOTA_RUNNER_PATIENCE TCPOTA_RUNNER_ATTEMPTS_DEFAULT
#define TCPOTA_RUNNER_LINGER_MS 1000u
/* Longest check-in interval, and cap of a server's RETRY_AFTER: a week
 * (+20 % jitter still fits a uint32_t of milliseconds). */
#define TCPOTA_RUNNER_CHECK_MAX_S 604800u
#define TCPOTA_RUNNER_CHECK_JITTER_PCT 20u

/* How tcpota_runner_run() ended; the caller must tell these apart. */
enum tcpota_runner_outcome {
    TCPOTA_RUNNER_UP_TO_DATE = 0, /* the server has nothing newer */
    TCPOTA_RUNNER_UPDATED,        /* new image verified and set to boot: reboot */
    TCPOTA_RUNNER_DECLINED,       /* offer refused for good (dev->last_error says why) */
    TCPOTA_RUNNER_ENDED,          /* the caller's event hook ended a connection */
    TCPOTA_RUNNER_GAVE_UP,        /* max_attempts without progress (err says the last why) */
    TCPOTA_RUNNER_DENIED,         /* the server refused this device's authentication (err says
                                   * the server's words), connect refused the server
                                   * (TCPOTA_ERR_DENIED: its TLS certificate, or no TLS; err
                                   * says why), or an HTTP server answered (err says so):
                                   * returned at once when max_attempts is set; with 0 the
                                   * runner waits as after an image failure (and at least the
                                   * server's RETRY_AFTER), and tries again */
    TCPOTA_RUNNER_STOPPED,        /* connect or sleep said a stop was requested */
};

/* What the runner is about to do, for logs and status (on_step). */
enum tcpota_runner_step_type {
    TCPOTA_RUNNER_CONNECTING = 1,
    TCPOTA_RUNNER_CONNECTED,
    TCPOTA_RUNNER_BACKOFF,
    TCPOTA_RUNNER_CHECK_IN, /* waiting wait_ms for the next periodic check-in */
    /* The device holds a secret, and the server of this connection decided
     * without asking for it (no CHALLENGE): it holds no secret for this id.
     * Told once per runner, the first time; the connection goes on. */
    TCPOTA_RUNNER_UNCHALLENGED,
};

struct tcpota_runner_step {
    enum tcpota_runner_step_type type;
    unsigned attempts;  /* attempts without progress, the current one included */
    unsigned failures;  /* image failures in a row */
    /* TCPOTA_RUNNER_BACKOFF and TCPOTA_RUNNER_CHECK_IN: */
    uint32_t wait_ms;      /* the wait that starts now */
    /* The server's RETRY_AFTER this wait honours, 0: none.
     * TCPOTA_RUNNER_CHECK_IN: NO_UPDATE's (seconds, capped), else the wait
     * is check_interval_s ±20 %. TCPOTA_RUNNER_BACKOFF: the ERROR's, as
     * the server asked; wait_ms is at least that, or failure_max_ms when
     * the server asked for more. */
    uint32_t retry_after_s;
    /* TCPOTA_RUNNER_BACKOFF only: */
    uint8_t unreachable;   /* the last attempt could not reach the server
                              (connect returned TCPOTA_ERR_IO) */
    uint8_t image_failed;  /* ... ended with an image failure */
    const char *why;       /* the config's err text */
};

struct tcpota_runner_config {
    struct tcpota_dev *dev;  /* initialised session (tcpota_dev_init) */
    uint32_t backoff_min_ms; /* 0: TCPOTA_RUNNER_BACKOFF_MIN_MS */
    uint32_t backoff_max_ms; /* 0: TCPOTA_RUNNER_BACKOFF_MAX_MS; >= backoff_min_ms */
    uint32_t failure_max_ms; /* 0: TCPOTA_RUNNER_FAILURE_MAX_MS; >= backoff_max_ms */
    unsigned max_attempts;   /* attempts without progress before giving up; 0: never */
    uint32_t linger_ms;      /* after COMPLETE or DECLINE; 0: TCPOTA_RUNNER_LINGER_MS */
    /* Seconds between periodic check-ins (tcpota_runner_check_in()), at
     * most TCPOTA_RUNNER_CHECK_MAX_S; 0: none, a run that ends up to date
     * is the end. */
    uint32_t check_interval_s;
    char *err;               /* why the last attempt failed, NUL-terminated; the */
    size_t err_cap;          /* connection writes it too (>= 1) */

    /* The connection. With `client` (initialised, tcpota_client_init)
     * each of connect, run, close and sleep may be NULL for the client's
     * own: tcpota_client_connect(client, host, port, host),
     * tcpota_client_run(), tcpota_client_close(), tcpota_client_wait()
     * with no fd. Without it all four are required. */
    struct tcpota_client *client;
    const char *host;
    uint16_t port;

    void *ctx; /* handed to every callback */
    /* Connects. Returns 0, TCPOTA_ERR_CANCELED when a stop was requested,
     * TCPOTA_ERR_IO when the server cannot be reached, TCPOTA_ERR_DENIED
     * when the server was refused (its TLS certificate does not verify:
     * retrying would be refused again), or another negative tcpota_err (a
     * TLS handshake cut or timed out, say: transient), with err set. */
    int (*connect)(void *ctx);
    /* Runs one connection; returns an enum tcpota_client_outcome
     * (tcpota_client_run()). */
    int (*run)(void *ctx);
    /* Closes the connection (no-op when none), lingering linger_ms when
     * not 0 (tcpota_client_close()). */
    void (*close)(void *ctx, uint32_t linger_ms);
    /* Waits ms. Returns 0, or TCPOTA_ERR_CANCELED when a stop was
     * requested. */
    int (*sleep)(void *ctx, uint32_t ms);
    /* A uniformly random number in [0, bound). Required. */
    uint32_t (*random)(void *ctx, uint32_t bound);
    /* Told before each connect, after it, before each wait, and once
     * TCPOTA_RUNNER_UNCHALLENGED (from tcpota_runner_note). May be NULL. */
    void (*on_step)(void *ctx, const struct tcpota_runner_step *step);
};

struct tcpota_runner {
    struct tcpota_runner_config cfg;
    unsigned attempts;  /* attempts without progress */
    unsigned failures;  /* image failures in a row */
    uint32_t best;      /* highest durable checkpoint since the last install */
    uint8_t advanced;   /* the current connection moved `best` */
    uint32_t retry_after_s; /* RETRY_AFTER of the last NO_UPDATE, 0: none */
    uint16_t why;           /* its enum tcpota_why (codec.h), 0: none */
    uint8_t told_unchallenged; /* TCPOTA_RUNNER_UNCHALLENGED was told */
};

/* Checks the config and starts counting; the session's durable resume
 * point (if any) is where progress starts. Returns 0 or TCPOTA_ERR_INVAL
 * (also for check_interval_s above TCPOTA_RUNNER_CHECK_MAX_S). */
int tcpota_runner_init(struct tcpota_runner *r, const struct tcpota_runner_config *cfg);

/* Connects and reconnects until the device is up to date, updated (the
 * caller reboots, starts a new session in the same struct tcpota_dev and
 * may call this again), declined an offer for good, gave up, or was
 * stopped; returns that enum tcpota_runner_outcome. Counters survive
 * between calls and are reset by an install or an up-to-date answer.
 * For periodic check-ins, call tcpota_runner_check_in() after
 * TCPOTA_RUNNER_UP_TO_DATE or TCPOTA_RUNNER_DECLINED and then this again. */
int tcpota_runner_run(struct tcpota_runner *r);

/* The wait before the next check-in, in milliseconds: the RETRY_AFTER of
 * the last run's NO_UPDATE when it carried one (0 to +20 %), else
 * check_interval_s -20 % to +20 % (uniform, cfg.random); both capped at
 * TCPOTA_RUNNER_CHECK_MAX_S +20 %. 0 when check-ins are off. Draws one
 * random number; *retry_after_s (may be NULL) gets the RETRY_AFTER
 * honoured, or 0. */
uint32_t tcpota_runner_check_in_ms(const struct tcpota_runner *r, uint32_t *retry_after_s);

/* Waits for the next check-in: tells on_step (TCPOTA_RUNNER_CHECK_IN,
 * wait_ms from tcpota_runner_check_in_ms()) and sleeps through cfg.sleep;
 * the next run has max_attempts of its own (one that gave up, as after a
 * server outage, leaves the next with all of them). Returns 0 (run
 * again), TCPOTA_ERR_CANCELED when a stop was requested, or
 * TCPOTA_ERR_INVAL when check-ins are off (check_interval_s 0). */
int tcpota_runner_check_in(struct tcpota_runner *r);

/* Passes one result of tcpota_dev_input() (rc, and *ev when rc >= 0) to
 * the runner; call it from the connection's event hook for every call.
 * May tell on_step TCPOTA_RUNNER_UNCHALLENGED. */
void tcpota_runner_note(struct tcpota_runner *r, int rc, const struct tcpota_dev_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_RUNNER_H */
