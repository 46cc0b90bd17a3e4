/* store_pg_outage.c - the PostgreSQL store while its database is
 * unreachable (restarting, failing over, a network cut): what a node does
 * from the moment a list meets the loss until the connection is back.
 *
 * - The store thread reconnects with a backoff (PG_RETRY_FIRST_MS doubling
 *   to PG_RETRY_MAX_MS); the operator is told once when the outage begins
 *   and once when it ends.
 * - Device steps (store_req_kept(): progress, verified, failed, declined,
 *   ...) are kept in memory in their order and written, first of all, once
 *   the connection is back; no device sends them again. At most
 *   PG_KEPT_MAX steps are kept: beyond it the oldest progress steps go
 *   (what a crash may lose anyway, store.h); final steps always stay, and
 *   there is at most one per transfer that was running, since no new offer
 *   is made while the database is away.
 * - Everything else fails at once with STORE_E_UNAVAILABLE, on the loop
 *   (pg_outage_admit) without waiting for the store thread, which may be
 *   in a connection attempt: check-ins (the device keeps its report and
 *   comes back), the API's reads and writes (503).
 * The transfers themselves never wait for the database: the image is in
 * the node's cache, and their steps are only recorded. */
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t pg_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What libpq says of the connection, its first line. */
static void why_lost(struct pgstore *st, char *out, size_t size)
{
    snprintf(out, size, "%s", PQerrorMessage(st->db));
    out[strcspn(out, "\n")] = '\0';
    if (!out[0]) {
        snprintf(out, size, "the connection was lost");
    }
}

int pg_reconnect(struct pgstore *st)
{
    if (atomic_load(&st->no_reconnect)) {
        return -1;
    }
    if (st->fail_reconnects > 0) {
        st->fail_reconnects--; /* tests: the database away a moment longer */
        return -1;
    }
    pg_cache_reset(st); /* a new connection has no prepared statements */
    return pg_connect_new(st);
}

int pg_outage_on(struct pgstore *st)
{
    return atomic_load(&st->down);
}

static size_t steps_of(const struct store_req *r)
{
    return r->op == STORE_EVENTS ? r->u.events.n : 1;
}

/* Beyond PG_KEPT_MAX steps: the oldest progress goes, final steps stay. */
static void trim(struct pgstore *st)
{
    struct store_req *r;
    size_t i, n, before = st->dropped;

    for (r = st->kept_head; r && st->kept_steps > st->kept_max; r = r->next) {
        if (r->op != STORE_EVENTS) {
            continue;
        }
        for (i = n = 0; i < r->u.events.n; i++) {
            if (r->u.events.items[i].durable || st->kept_steps <= st->kept_max) {
                r->u.events.items[n++] = r->u.events.items[i];
            } else {
                free(r->u.events.items[i].reason);
                st->kept_steps--;
                st->dropped++;
            }
        }
        r->u.events.n = n;
    }
    if (before == 0 && st->dropped) {
        store_worker_notice(&st->w, 1, "more than %zu device steps wait for the database: the"
                            " oldest progress steps are no longer kept (final steps always are;"
                            " the devices' own resume points are not affected)", st->kept_max);
    }
}

void pg_outage_keep(struct pgstore *st, struct store_req *head)
{
    struct store_req *r, *next, *fh = NULL, *ft = NULL;

    for (r = head; r; r = next) {
        next = r->next;
        r->next = NULL;
        if (store_req_kept(r)) {
            store_req_reset(r);
            if (st->kept_tail) {
                st->kept_tail->next = r;
            } else {
                st->kept_head = r;
            }
            st->kept_tail = r;
            st->kept_steps += steps_of(r);
            continue;
        }
        store_req_reset(r);
        if (r->backend_tag && store_req_durable(r) && r->op != STORE_CHECKIN) {
            /* Its transaction may have committed: "try again" would make a
             * second rollout. (A check-in's report is applied once however
             * often it comes; a read changes nothing.) */
            (void)store_err_set(r, STORE_E_IO, PG_UNKNOWN_MSG, "no new one could be made",
                                (long long)r->backend_tag);
        } else {
            (void)store_err_set(r, STORE_E_UNAVAILABLE, PG_DOWN_MSG);
        }
        if (ft) {
            ft->next = r;
        } else {
            fh = r;
        }
        ft = r;
    }
    trim(st);
    store_worker_post(&st->w, fh, ft);
}

void pg_outage_start(struct pgstore *st, struct store_req *head)
{
    char why[STORE_ERR_MAX], said[PATH_MAX + 200];

    if (!pg_outage_on(st)) {
        why_lost(st, why, sizeof(why));
        st->down_since_ms = pg_mono_ms();
        st->retry_ms = PG_RETRY_FIRST_MS;
        st->retry_at_ms = st->down_since_ms + st->retry_ms;
        /* Its length counts from the last answer: a hung database's
         * outage began long before the connect that failed (a trial:
         * "after 45.7 s" of 116). */
        st->quiet_since_ms = atomic_load(&st->stmt_ms);
        if (st->quiet_since_ms <= 0 || st->quiet_since_ms > st->down_since_ms) {
            st->quiet_since_ms = st->down_since_ms;
        }
        st->dropped = 0;
        atomic_store(&st->down, 1);
        store_set_down(1);
        if (atomic_load(&st->no_reconnect)) {
            /* Stopping, its connection dropped (cut_at_close said so): no
             * "reconnecting" after "no new one is tried" (a trial). */
            pg_outage_keep(st, head);
            return;
        }
        store_worker_notice(&st->w, 1, "the database is unreachable (%s): device steps are kept"
                            " in memory and written when it is back; until then check-ins and"
                            " the API fail at once (devices are told to come back). Reconnecting"
                            " every %u ms at most; %s", why, PG_RETRY_MAX_MS,
                            pg_hint(why, said, sizeof(said)));
    }
    pg_outage_keep(st, head);
}

/* Answers every kept request as lost: the node stops and the database is
 * still away. One notice says how many steps (STORE_LOST: the callers do
 * not say it again per request). */
static void give_up(struct pgstore *st)
{
    struct store_req *r;
    size_t steps = st->kept_steps;

    if (!st->kept_head) {
        return;
    }
    for (r = st->kept_head; r; r = r->next) {
        (void)store_err_set(r, STORE_LOST, "not written: the database was still"
                            " unreachable when this node stopped");
    }
    store_worker_notice(&st->w, 1, "%zu device step%s kept for the database %s lost: it is still"
                        " unreachable as this node stops", steps, steps == 1 ? "" : "s",
                        steps == 1 ? "is" : "are");
    store_worker_post(&st->w, st->kept_head, st->kept_tail);
    st->kept_head = st->kept_tail = NULL;
    st->kept_steps = 0;
}

struct store_req *pg_outage_retry(struct pgstore *st, int stopping)
{
    struct store_req *kept;
    int64_t now = pg_mono_ms();

    if (!stopping && now < st->retry_at_ms) {
        return NULL;
    }
    if (pg_reconnect(st) != 0) {
        st->retry_ms = st->retry_ms * 2 > PG_RETRY_MAX_MS ? PG_RETRY_MAX_MS : st->retry_ms * 2;
        st->retry_at_ms = pg_mono_ms() + st->retry_ms;
        if (stopping) {
            give_up(st);
        }
        return NULL;
    }
    /* Up before it is said: a /health asked once the line is read finds
     * the node back (a review). */
    atomic_store(&st->down, 0);
    store_set_down(0);
    /* Since its last answer before the outage, to now: the connect may
     * have waited on a database that came back (a trial: "after 0.1 s" of
     * 16). */
    now = pg_mono_ms();
    if (st->kept_steps == 0) { /* nothing waited: nothing to write */
        store_worker_notice(&st->w, 0, "the database is reachable again after %.1f s",
                            (double)(now - st->quiet_since_ms) / 1e3);
    } else {
        store_worker_notice(&st->w, 0, "the database is reachable again after %.1f s: writing"
                            " the %zu device step%s kept meanwhile%s",
                            (double)(now - st->quiet_since_ms) / 1e3, st->kept_steps,
                            st->kept_steps == 1 ? "" : "s",
                            st->dropped ? " (older progress steps were dropped)" : "");
    }
    kept = st->kept_head;
    st->kept_head = st->kept_tail = NULL;
    st->kept_steps = 0;
    return kept;
}

int64_t pg_outage_idle_ms(void *ctx)
{
    struct pgstore *st = ctx;
    int64_t left;

    if (!pg_outage_on(st)) {
        return -1;
    }
    left = st->retry_at_ms - pg_mono_ms();
    return left > 0 ? left : 0;
}

int pg_outage_admit(void *ctx, struct store_req *r)
{
    struct pgstore *st = ctx;

    if (!pg_outage_on(st) || store_req_kept(r)) {
        return 0;
    }
    (void)store_err_set(r, STORE_E_UNAVAILABLE, PG_DOWN_MSG);
    return -1;
}
