/* tcpota_runner.c - the device's connection loop (see tcpota_runner.h). */
#include "tcpota_runner.h"

#include <stdio.h>
#include <string.h>

int tcpota_runner_init(struct tcpota_runner *r, const struct tcpota_runner_config *cfg)
{
    struct tcpota_dev_transfer t;

    if (!r || !cfg || !cfg->dev || !cfg->err || !cfg->err_cap || !cfg->random ||
        (!cfg->client && (!cfg->connect || !cfg->run || !cfg->close || !cfg->sleep)) ||
        (cfg->client && !cfg->connect && !cfg->host)) {
        return TCPOTA_ERR_INVAL;
    }
    memset(r, 0, sizeof(*r));
    r->cfg = *cfg;
    if (!r->cfg.backoff_min_ms) r->cfg.backoff_min_ms = TCPOTA_RUNNER_BACKOFF_MIN_MS;
    if (!r->cfg.backoff_max_ms) r->cfg.backoff_max_ms = TCPOTA_RUNNER_BACKOFF_MAX_MS;
    if (!r->cfg.failure_max_ms) r->cfg.failure_max_ms = TCPOTA_RUNNER_FAILURE_MAX_MS;
    if (!r->cfg.linger_ms) r->cfg.linger_ms = TCPOTA_RUNNER_LINGER_MS;
    if (r->cfg.backoff_min_ms > r->cfg.backoff_max_ms ||
        r->cfg.backoff_max_ms > r->cfg.failure_max_ms ||
        r->cfg.check_interval_s > TCPOTA_RUNNER_CHECK_MAX_S) {
        return TCPOTA_ERR_INVAL;
    }
    tcpota_dev_get_transfer(cfg->dev, &t);
    r->best = t.resume.valid ? t.resume.offset : 0;
    return 0;
}

static void step(struct tcpota_runner *r, struct tcpota_runner_step *s,
                 enum tcpota_runner_step_type type);

/* The server's decision came: an offer (taken or declined) or NO_UPDATE. */
static int decided(const struct tcpota_dev_event *ev)
{
    return ev->type == TCPOTA_DEV_EV_ACCEPTED || ev->type == TCPOTA_DEV_EV_DECLINED ||
           ev->type == TCPOTA_DEV_EV_UP_TO_DATE;
}

void tcpota_runner_note(struct tcpota_runner *r, int rc, const struct tcpota_dev_event *ev)
{
    const struct tcpota_dev *d = r->cfg.dev;

    if (rc < 0) {
        return;
    }
    /* A secret that no server asked for protects nothing: say so once.
     * (The session's own flag: a field of its public struct, read as
     * bad_reason is, so that the core does not grow for it.) */
    if (decided(ev) && d->cfg.secret && !d->challenged && !r->told_unchallenged) {
        struct tcpota_runner_step s;

        r->told_unchallenged = 1;
        memset(&s, 0, sizeof(s));
        step(r, &s, TCPOTA_RUNNER_UNCHALLENGED);
    }
    if (ev->type == TCPOTA_DEV_EV_CHECKPOINT && ev->offset > r->best) {
        r->best = ev->offset;
        r->advanced = 1;
    } else if (ev->type == TCPOTA_DEV_EV_UP_TO_DATE) {
        r->retry_after_s = ev->retry_after_s;
        r->why = ev->why;
    }
}

/* ---- the connection: the caller's callbacks or the client's own ------ */

static int conn_connect(struct tcpota_runner *r)
{
    const struct tcpota_runner_config *c = &r->cfg;

    return c->connect ? c->connect(c->ctx)
                      : tcpota_client_connect(c->client, c->host, c->port, c->host);
}

static int conn_run(struct tcpota_runner *r)
{
    return r->cfg.run ? r->cfg.run(r->cfg.ctx) : tcpota_client_run(r->cfg.client);
}

static void conn_close(struct tcpota_runner *r, uint32_t linger_ms)
{
    if (r->cfg.close) {
        r->cfg.close(r->cfg.ctx, linger_ms);
    } else {
        tcpota_client_close(r->cfg.client, linger_ms);
    }
}

static int conn_sleep(struct tcpota_runner *r, uint32_t ms)
{
    if (r->cfg.sleep) {
        return r->cfg.sleep(r->cfg.ctx, ms);
    }
    return tcpota_client_wait(r->cfg.client, -1, 0, ms) < 0 ? TCPOTA_ERR_CANCELED : 0;
}

/* ---- the policy ------------------------------------------------------ */

/* An install or an up-to-date answer: the slate is clean. */
static void forget(struct tcpota_runner *r)
{
    r->attempts = r->failures = 0;
    r->best = 0;
}

/* Full jitter between backoff_min_ms and a ceiling that doubles with each
 * attempt without progress (transient) or each image failure in a row. */
static uint32_t backoff_ms(const struct tcpota_runner *r, int image_failed)
{
    const struct tcpota_runner_config *c = &r->cfg;
    uint64_t base = c->backoff_min_ms, cap = c->backoff_max_ms;
    unsigned n = r->attempts;

    if (image_failed || r->attempts > TCPOTA_RUNNER_PATIENCE) {
        base = c->backoff_max_ms;
        cap = c->failure_max_ms;
        n = image_failed ? r->failures : r->attempts - TCPOTA_RUNNER_PATIENCE;
    }
    for (unsigned i = 1; i < n && base < cap; i++) {
        base *= 2;
    }
    if (base > cap) {
        base = cap;
    }
    return c->backoff_min_ms +
           c->random(c->ctx, (uint32_t)(base - c->backoff_min_ms) + 1u);
}

/* The wait after a connection whose ERROR carried RETRY_AFTER (busy,
 * denied, any code): at least the server's time, since coming back sooner
 * only meets the same answer, but no longer than failure_max_ms (1 h by
 * default): over plain TCP anyone can forge the ERROR, and a device must
 * not be silenced for longer than a broken release would. The backoff
 * stays the floor, and *asked_s gets the server's time (0: none). */
static uint32_t honour_error_retry_after(const struct tcpota_runner *r, uint32_t backoff,
                                         uint32_t *asked_s)
{
    struct tcpota_dev_transfer t;
    uint64_t want;

    tcpota_dev_get_transfer(r->cfg.dev, &t);
    want = (uint64_t)t.retry_after_s * 1000u;
    *asked_s = t.retry_after_s;
    if (want > r->cfg.failure_max_ms) {
        want = r->cfg.failure_max_ms;
    }
    return want > backoff ? (uint32_t)want : backoff;
}

static void step(struct tcpota_runner *r, struct tcpota_runner_step *s,
                 enum tcpota_runner_step_type type)
{
    s->type = type;
    s->attempts = r->attempts;
    s->failures = r->failures;
    s->why = r->cfg.err;
    if (r->cfg.on_step) {
        r->cfg.on_step(r->cfg.ctx, s);
    }
}

/* One attempt: connect, run, close. Returns an enum tcpota_client_outcome;
 * *unreachable says the server could not be reached (TCPOTA_ERR_IO from
 * connect), *refused that connect refused the server (TCPOTA_ERR_DENIED:
 * its TLS certificate), *ran that a connection ran (and the session's
 * bad_reason is this connection's). */
static int attempt(struct tcpota_runner *r, uint8_t *unreachable, int *refused, int *ran)
{
    struct tcpota_dev *d = r->cfg.dev;
    uint32_t kept = d->resume.valid ? d->resume.offset : 0; /* before this connection */
    struct tcpota_runner_step s;
    int rc, out = TCPOTA_CLIENT_RETRY;

    memset(&s, 0, sizeof(s));
    r->cfg.err[0] = 0;
    r->advanced = 0;
    r->retry_after_s = 0;
    r->why = 0;
    step(r, &s, TCPOTA_RUNNER_CONNECTING);
    rc = conn_connect(r);
    *unreachable = rc == TCPOTA_ERR_IO;
    *refused = rc == TCPOTA_ERR_DENIED;
    *ran = rc == 0;
    if (rc == TCPOTA_ERR_CANCELED) {
        out = TCPOTA_CLIENT_STOPPED;
    } else if (rc == 0) {
        step(r, &s, TCPOTA_RUNNER_CONNECTED);
        out = conn_run(r);
    }
    conn_close(r, out == TCPOTA_CLIENT_UPDATED || out == TCPOTA_CLIENT_DECLINED ? r->cfg.linger_ms
                                                                                : 0);
    tcpota_dev_disconnect(d);
    /* The disconnect keeps the last whole sector written: progress too,
     * though no checkpoint came (a link cut before each one). */
    if (d->resume.valid && d->resume.offset > kept && d->resume.offset > r->best) {
        r->best = d->resume.offset;
        r->advanced = 1;
    }
    return out;
}

int tcpota_runner_run(struct tcpota_runner *r)
{
    struct tcpota_dev *d = r->cfg.dev;

    for (;;) {
        struct tcpota_runner_step s;
        char why[TCPOTA_DEV_BAD_TEXT_MAX];
        uint8_t unreachable;
        int image_failed, denied, refused, out, ran;

        r->attempts++;
        out = attempt(r, &unreachable, &refused, &ran);
        image_failed = ran && d->bad_reason != TCPOTA_BAD_NONE;
        /* The server refused who we are, or we refused its certificate
         * (or its answer was not TLS), or an HTTP server answered: the same
         * secret, certificate or address will fail again, so this is no
         * transient error to retry at once. */
        denied = refused ||
                 (ran && out == TCPOTA_CLIENT_RETRY &&
                  (d->last_error == TCPOTA_ERR_DENIED ||
                   (r->cfg.client &&
                    (r->cfg.client->http_answer || r->cfg.client->text_answer))));
        if (denied && r->cfg.max_attempts) {
            return TCPOTA_RUNNER_DENIED;
        }
        switch (out) {
        case TCPOTA_CLIENT_STOPPED:
            return TCPOTA_RUNNER_STOPPED;
        case TCPOTA_CLIENT_UP_TO_DATE:
            forget(r);
            return TCPOTA_RUNNER_UP_TO_DATE;
        case TCPOTA_CLIENT_UPDATED:
            forget(r);
            return TCPOTA_RUNNER_UPDATED;
        case TCPOTA_CLIENT_ENDED:
            return TCPOTA_RUNNER_ENDED;
        case TCPOTA_CLIENT_DECLINED:
            if (!image_failed) {
                return TCPOTA_RUNNER_DECLINED;
            }
            /* A known-bad image: wait for the server to offer another. */
            (void)tcpota_dev_bad_text(d->bad_id, d->bad_reason, why);
            snprintf(r->cfg.err, r->cfg.err_cap, "%s", why);
            break;
        default:
            break;
        }
        if (r->advanced) {
            r->attempts = 0;
        }
        if (image_failed) {
            /* That image is declined from now on: the next one's progress
             * starts from nothing, not from how far the bad one got. */
            r->failures++;
            r->best = 0;
        } else if (denied) {
            r->failures++;
        }
        if (r->cfg.max_attempts && r->attempts >= r->cfg.max_attempts) {
            return TCPOTA_RUNNER_GAVE_UP;
        }
        memset(&s, 0, sizeof(s));
        s.wait_ms = backoff_ms(r, image_failed || denied);
        if (ran) {
            s.wait_ms = honour_error_retry_after(r, s.wait_ms, &s.retry_after_s);
        }
        s.unreachable = unreachable;
        s.image_failed = (uint8_t)image_failed;
        step(r, &s, TCPOTA_RUNNER_BACKOFF);
        if (conn_sleep(r, s.wait_ms) < 0) {
            return TCPOTA_RUNNER_STOPPED;
        }
    }
}

/* ---- periodic check-ins ---------------------------------------------- */

uint32_t tcpota_runner_check_in_ms(const struct tcpota_runner *r, uint32_t *retry_after_s)
{
    const struct tcpota_runner_config *c = &r->cfg;
    uint32_t s = r->retry_after_s, lo, spread;

    if (retry_after_s) {
        *retry_after_s = 0;
    }
    if (!c->check_interval_s) {
        return 0;
    }
    if (s) {
        /* The server's time: never earlier, spread out above it. */
        s = s < TCPOTA_RUNNER_CHECK_MAX_S ? s : TCPOTA_RUNNER_CHECK_MAX_S;
        if (retry_after_s) {
            *retry_after_s = s;
        }
        lo = s * 1000u;
        spread = lo / 100u * TCPOTA_RUNNER_CHECK_JITTER_PCT;
    } else {
        uint32_t ms = c->check_interval_s * 1000u;

        spread = ms / 100u * TCPOTA_RUNNER_CHECK_JITTER_PCT * 2u;
        lo = ms - spread / 2u;
    }
    /* At most 604 800 000 + 120 960 000 ms: no overflow. */
    return lo + c->random(c->ctx, spread + 1u);
}

int tcpota_runner_check_in(struct tcpota_runner *r)
{
    struct tcpota_runner_step s;

    if (!r->cfg.check_interval_s) {
        return TCPOTA_ERR_INVAL;
    }
    memset(&s, 0, sizeof(s));
    s.wait_ms = tcpota_runner_check_in_ms(r, &s.retry_after_s);
    step(r, &s, TCPOTA_RUNNER_CHECK_IN);
    /* Each check-in has max_attempts of its own: one that gave up (a
     * server down for a while) does not leave the next with none. Image
     * failures in a row and the best checkpoint are kept. */
    r->attempts = 0;
    return conn_sleep(r, s.wait_ms) < 0 ? TCPOTA_ERR_CANCELED : 0;
}
