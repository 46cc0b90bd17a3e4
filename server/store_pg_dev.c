/* store_pg_dev.c - devices in the PostgreSQL store: the same operations and
 * rules as store_sqlite_dev.c (check-in, the steps of an update, the API's
 * device list, show and group, secrets), written so that two nodes doing
 * them at once for one device stay right: an insert that another node may
 * have made first is ON CONFLICT DO NOTHING, and decides by its row count. */
#include "store_common.h"
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_COLS                                                                             \
    "id, model, version, running, grp, addr, proto, state, image, bytes, size, reason,"      \
    " first_seen, last_seen, EXISTS (SELECT 1 FROM secrets WHERE device_id = devices.id)"
#define DEV_NCOLS 15 /* the columns of DEV_COLS */

static void row_to_device(const PGresult *res, int i, struct store_device *d)
{
    memset(d, 0, sizeof(*d));
    pg_col_text(res, i, 0, d->id, sizeof(d->id));
    pg_col_text(res, i, 1, d->model, sizeof(d->model));
    pg_col_text(res, i, 2, d->version, sizeof(d->version));
    pg_col_text(res, i, 3, d->running, sizeof(d->running));
    pg_col_text(res, i, 4, d->group, sizeof(d->group));
    pg_col_text(res, i, 5, d->addr, sizeof(d->addr));
    d->proto = (enum store_proto)pg_col_i64(res, i, 6);
    d->state = (enum store_dev_state)pg_col_i64(res, i, 7);
    pg_col_text(res, i, 8, d->image, sizeof(d->image));
    d->bytes = (uint32_t)pg_col_i64(res, i, 9);
    d->size = (uint32_t)pg_col_i64(res, i, 10);
    pg_col_text(res, i, 11, d->reason, sizeof(d->reason));
    d->first_seen = pg_col_i64(res, i, 12);
    d->last_seen = pg_col_i64(res, i, 13);
    d->has_secret = (int)pg_col_i64(res, i, 14);
}

/* The device of res's first row (res: a query of DEV_COLS, NULL when it
 * failed; cleared here): 1 and *d filled, 0 no row, <0 store_err. */
static int device_of(struct store_req *r, PGresult *res, struct store_device *d)
{
    int found;

    if (!res) {
        return r->rc;
    }
    found = PQntuples(res) > 0;
    if (found) {
        row_to_device(res, 0, d);
    }
    PQclear(res);
    return found;
}

/* 1 and *d filled, 0 unknown id, <0 store_err. */
static int load_device(struct pgstore *st, struct store_req *r, const char *id,
                       struct store_device *d)
{
    return device_of(r, pg_q(st, r, "device", "SELECT " DEV_COLS " FROM devices WHERE id = $1",
                             "t", id), d);
}

static int add_history(struct pgstore *st, struct store_req *r, const char *id,
                       enum store_dev_state state, const char *image, const char *detail)
{
    /* The DELETE sees the table as before the INSERT: it keeps that many
     * older rows beside the new one (store.h, STORE_HISTORY_PRUNE_EVERY). */
    return pg_run(st, r, "device history",
                  "WITH ins AS (INSERT INTO device_history (device_id, at, state, image, detail)"
                  " VALUES ($1, $2, $3, $4, substr($5, 1, $6)) RETURNING seq)"
                  " DELETE FROM device_history WHERE device_id = $1"
                  " AND (SELECT seq FROM ins) % $7 = 0 AND seq <= (SELECT seq FROM device_history"
                  " WHERE device_id = $1 ORDER BY seq DESC OFFSET $8 LIMIT 1)",
                  "tiittiii", id, r->now, (int64_t)state, image, detail ? detail : "",
                  (int64_t)STORE_REASON_MAX, (int64_t)STORE_HISTORY_PRUNE_EVERY,
                  (int64_t)STORE_HISTORY_MAX);
}

/* Remembers an image (or offer fingerprint) the device failed; a repeat moves
 * it to the front of what check-in returns. */
static int add_failure(struct pgstore *st, struct store_req *r, const char *id, const uint8_t *f)
{
    return pg_run(st, r, "device failures",
                  "INSERT INTO device_failures (device_id, failed_id) VALUES ($1, $2)"
                  " ON CONFLICT (device_id, failed_id) DO UPDATE SET"
                  " seq = nextval(pg_get_serial_sequence('device_failures', 'seq'))",
                  "tb", id, (const void *)f, (int)TCPOTA_ID_LEN);
}

/* ---- check-in ---- */

/* Refreshes the device's row, or registers it; *dev: its row now, was: the
 * model it had. A known device costs one statement: the UPDATE returns the
 * row as it is once its lock is ours (what another node committed before
 * included), where a SELECT before and after took three round trips. The
 * old model comes from the same statement: its CTE takes the row's lock
 * first, so it reads the row the UPDATE then writes over, not an older one. */
static int upsert(struct pgstore *st, struct store_req *r, struct store_device *dev,
                  char was[TCPOTA_MAX_NAME + 1])
{
    const __typeof__(r->u.checkin) *c = &r->u.checkin;
    char running[2 * TCPOTA_ID_LEN + 1] = "";
    PGresult *res;
    int rc;

    if (c->running_id) {
        store_hex(c->running_id, running);
    }
    res = pg_q(st, r, "checkin", "WITH o AS (SELECT model AS was FROM devices WHERE id = $1"
               " FOR NO KEY UPDATE) UPDATE devices SET model = $2, version = $3, running = $4,"
               " addr = $5, proto = $6, last_seen = $7 FROM o WHERE id = $1 RETURNING "
               DEV_COLS ", o.was", "tttttii", c->id, c->model, c->version, running,
               c->addr ? c->addr : "", (int64_t)c->proto, r->now);
    if (!res) {
        return r->rc;
    }
    if (PQntuples(res) > 0) {
        pg_col_text(res, 0, DEV_NCOLS, was, TCPOTA_MAX_NAME + 1);
    }
    r->u.checkin.is_new = 0;
    if (device_of(r, res, dev) != 0) {
        return STORE_OK;
    }
    /* Another node may register it at the same moment: one insert wins,
     * the other reads the row it made. */
    if ((rc = pg_run(st, r, "checkin", "INSERT INTO devices (id, model, version, running,"
                     " addr, proto, state, first_seen, last_seen) VALUES ($1, $2, $3, $4,"
                     " $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING", "tttttii", c->id,
                     c->model, c->version, running, c->addr ? c->addr : "",
                     (int64_t)c->proto, r->now)) < 0) {
        return rc;
    }
    r->u.checkin.is_new = st->changes == 1;
    if (r->u.checkin.is_new &&
        (rc = add_history(st, r, c->id, STORE_ST_SEEN, "", c->version)) < 0) {
        return rc;
    }
    if ((rc = load_device(st, r, c->id, dev)) <= 0) {
        return rc < 0 ? rc : store_err_set(r, STORE_E_IO, "checkin: device %s vanished", c->id);
    }
    /* Registered just now (here or by another node): no rollout to leave. */
    snprintf(was, TCPOTA_MAX_NAME + 1, "%s", dev->model);
    return STORE_OK;
}

/* Moves the device's rows in the rollouts of the reported image. */
static int report_rollouts(struct pgstore *st, struct store_req *r, const char *hex,
                           enum store_ro_status status)
{
    int64_t ids[ROLLOUT_MAX_WAVES];
    int n, i, rc;
    PGresult *res;

    /* Not a cancelled one: its counts are final; nor are a superseded
     * one's (pg_ro_set_status; store_sqlite_dev.c). */
    res = pg_q(st, r, "checkin report", "SELECT rd.rollout_id FROM rollout_devices rd JOIN"
               " rollouts ro ON ro.id = rd.rollout_id WHERE rd.device_id = $1 AND ro.image = $2"
               " AND ro.state != $4 ORDER BY rd.rollout_id DESC LIMIT $3", "ttii",
               r->u.checkin.id, hex, (int64_t)ROLLOUT_MAX_WAVES, (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        ids[i] = pg_col_i64(res, i, 0);
    }
    PQclear(res);
    for (i = 0; i < n; i++) {
        if ((rc = pg_ro_set_status(st, r, (uint64_t)ids[i], r->u.checkin.id, status)) < 0) {
            return rc;
        }
    }
    return STORE_OK;
}

/* Applies the report a HELLO carries, once (store_sqlite_dev.c). The row is
 * locked first: a repeat of the report through another node waits, then
 * finds the state already saying so. */
static int apply_report(struct pgstore *st, struct store_req *r)
{
    struct store_report rep;
    char hex[2 * TCPOTA_ID_LEN + 1];
    int rc;
    int64_t cur = 0;

    if ((rc = store_report_of(r, &rep)) < 0) {
        return rc;
    }
    store_hex(r->u.checkin.report_id, hex);
    rc = pg_int(st, r, "checkin report", &cur, "SELECT (state = $2 AND image = $3)::int FROM"
                " devices WHERE id = $1 FOR UPDATE", "tit", r->u.checkin.id, (int64_t)rep.state,
                hex);
    if (rc < 0 || cur == 1) {
        return rc < 0 ? rc : STORE_OK;
    }
    /* All of the image (not "0 of 0 bytes"): STORE_REPORT_SIZE_SQL. */
    if ((rc = pg_run(st, r, "checkin report", "UPDATE devices SET state = $2, image = $3,"
                     " bytes = " STORE_REPORT_SIZE_SQL("$3") ","
                     " size = " STORE_REPORT_SIZE_SQL("$3") ", reason = $4 WHERE id = $1",
                     "titt", r->u.checkin.id, (int64_t)rep.state, hex, rep.reason)) < 0 ||
        (rc = add_history(st, r, r->u.checkin.id, rep.state, hex, rep.detail)) < 0 ||
        (rep.hold && (rc = add_failure(st, r, r->u.checkin.id, r->u.checkin.report_id)) < 0)) {
        return rc;
    }
    return report_rollouts(st, r, hex, rep.failed ? STORE_RO_FAILED : STORE_RO_UPDATED);
}

/* The failed images, newest first, into the check-in's output. */
static int load_failed(struct pgstore *st, struct store_req *r)
{
    PGresult *res;
    int i, n;

    res = pg_q(st, r, "checkin failures", "SELECT failed_id FROM device_failures WHERE"
               " device_id = $1 ORDER BY seq DESC LIMIT $2", "ti", r->u.checkin.id,
               (int64_t)STORE_FAILED_MAX);
    if (!res) {
        return r->rc;
    }
    r->u.checkin.out->nfailed = 0;
    n = PQntuples(res);
    for (i = 0; i < n && r->u.checkin.out->nfailed < STORE_FAILED_MAX; i++) {
        if (pg_col_bytea(res, i, 0, r->u.checkin.out->failed[r->u.checkin.out->nfailed], TCPOTA_ID_LEN) ==
            TCPOTA_ID_LEN) {
            r->u.checkin.out->nfailed++;
        }
    }
    PQclear(res);
    return STORE_OK;
}

/* Tells the operator why image idhex could not be put in this node's cache
 * (r's error, which is cleared), at most once per PG_CACHE_TELL_MS for the
 * same image: every check-in of its rollout tries again. */
static void cache_failed(struct pgstore *st, struct store_req *r, const char *idhex)
{
    int64_t now = pg_mono_ms();

    if (strcmp(st->cache_failed, idhex) != 0 || now - st->cache_told_ms >= PG_CACHE_TELL_MS) {
        snprintf(st->cache_failed, sizeof(st->cache_failed), "%s", idhex);
        st->cache_told_ms = now;
        store_worker_notice(&st->w, 1, "cannot put the image in this node's cache: %s; its"
                            " rollout's devices are told to come back meanwhile", r->err);
    }
    store_err_clear(r);
    r->rc = STORE_OK;
}

/* The applicable rollout, its image (in the local cache) and the device's
 * status in it, after the report moved the counts. */
static int load_rollout(struct pgstore *st, struct store_req *r, int64_t id)
{
    __typeof__(r->u.checkin) *c = &r->u.checkin;
    char hex[2 * TCPOTA_ID_LEN + 1];
    int rc, cached;

    rc = pg_ro_load(st, r, (uint64_t)id, &c->out->rollout);
    if (rc > 0) {
        store_hex(c->out->rollout.image_id, hex);
        rc = pg_img_load(st, r, hex, &c->out->image);
    }
    if (rc > 0 && (cached = pg_img_cache(st, r, &c->out->image)) != STORE_OK) {
        /* Not this device's failure: its report stays recorded, and the
         * fleet, finding no loadable file, tells it to come back (the
         * image unservable), as on SQLite. Failing the check-in rolled
         * the report back: the device was told busy for ever, and a
         * rollback was never counted (a review). Told once in a while.
         * A failure of the database itself (the transaction aborted, the
         * connection gone) fails the check-in as any other would. */
        if (PQstatus(st->db) != CONNECTION_OK || PQtransactionStatus(st->db) != PQTRANS_INTRANS) {
            return cached;
        }
        cache_failed(st, r, c->out->image.idhex);
    }
    if (rc > 0) {
        rc = pg_ro_ensure(st, r, &c->out->rollout, c->id, &c->ro_status);
        c->has_rollout = rc == STORE_OK;
    }
    return rc < 0 ? rc : STORE_OK;
}

/* A device new to rollout ro_id gets its row before its report counts. */
static int ensure_in(struct pgstore *st, struct store_req *r, int64_t ro_id, const char *id)
{
    struct store_rollout *tmp = malloc(sizeof(*tmp));
    enum store_ro_status status;
    int rc;

    rc = !tmp ? store_err_set(r, STORE_E_IO, "out of memory")
              : pg_ro_load(st, r, (uint64_t)ro_id, tmp);
    if (rc > 0) {
        rc = pg_ro_ensure(st, r, tmp, id, &status);
    }
    free(tmp);
    return rc < 0 ? rc : STORE_OK;
}

int pg_op_checkin(struct pgstore *st, struct store_req *r)
{
    struct store_device *dev;
    char was[TCPOTA_MAX_NAME + 1] = "";
    int64_t ro_id;
    int rc;

    if (!r->u.checkin.out && !(r->u.checkin.out = calloc(1, sizeof(*r->u.checkin.out)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    dev = &r->u.checkin.out->dev;
    if ((rc = upsert(st, r, dev, was)) < 0) {
        return rc;
    }
    snprintf(r->u.checkin.out->group, sizeof(r->u.checkin.out->group), "%s", dev->group);
    if ((ro_id = pg_ro_applicable(st, r, r->u.checkin.model, dev->group)) < 0) {
        return (int)ro_id;
    }
    if (ro_id > 0 && r->u.checkin.report_id && (rc = ensure_in(st, r, ro_id, r->u.checkin.id)) < 0) {
        return rc;
    }
    /* The old model's rollouts are left after the report, which may finish
     * the device there (store_sqlite_dev.c). */
    if ((r->u.checkin.report_id && (rc = apply_report(st, r)) < 0) ||
        (store_checkin_moved(r, was) &&
         (rc = pg_ro_leave(st, r, r->u.checkin.id, NULL, NULL, ro_id)) < 0) ||
        (rc = load_failed(st, r)) < 0) {
        return rc;
    }
    /* The report moved its state: the row as it is now. */
    if (r->u.checkin.report_id && (rc = load_device(st, r, r->u.checkin.id, dev)) <= 0) {
        return rc < 0 ? rc : store_err_set(r, STORE_E_IO, "checkin: device %s vanished",
                                           r->u.checkin.id);
    }
    r->u.checkin.has_rollout = 0;
    return ro_id > 0 ? load_rollout(st, r, ro_id) : STORE_OK;
}

/* ---- the list's device rows, locked first ---- */

/* Adds the device ids r writes to a (none for the reading ops, and for
 * the ones keyed by something else). 0, or -1 out of memory. */
static int ids_of(const struct store_req *r, struct pg_array *a)
{
    size_t i;

    switch (r->op) {
    case STORE_CHECKIN:
        return r->u.checkin.id ? pg_array_add(a, r->u.checkin.id) : 0;
    case STORE_EVENT:
        return r->u.event.id ? pg_array_add(a, r->u.event.id) : 0;
    case STORE_EVENTS:
        for (i = 0; r->u.events.items && i < r->u.events.n; i++) {
            if (pg_array_add(a, r->u.events.items[i].id) != 0) {
                return -1;
            }
        }
        return 0;
    case STORE_SEEN:
        for (i = 0; r->u.seen.ids && i < r->u.seen.n; i++) {
            if (pg_array_add(a, r->u.seen.ids[i]) != 0) {
                return -1;
            }
        }
        return 0;
    case STORE_DEVICE_SET_GROUP:
    case STORE_DEVICE_RETRY:
    case STORE_DEVICE_DELETE:
    case STORE_SECRET_SET:
        return r->u.device.id ? pg_array_add(a, r->u.device.id) : 0;
    default:
        return 0;
    }
}

/* secrets_gen's row, locked for r's transaction (migration 5's trigger
 * numbers a secret's write under it). */
static int lock_secrets_gen_now(struct pgstore *st, struct store_req *r)
{
    int rc = pg_run(st, r, "lock secrets", "SELECT count(*) FROM (SELECT 1 FROM secrets_gen"
                    " FOR UPDATE) AS locked", "");
    return rc < 0 ? rc : STORE_OK;
}

/* A list that sets or removes a secret takes secrets_gen's row right
 * after the devices' rows, as every node does: taken where the write
 * comes, after a rollout's row, say, two nodes' lists could each wait for
 * the other's (a review). */
static int lock_secrets_gen(struct pgstore *st, struct store_req *head)
{
    const struct store_req *r;

    for (r = head; r && r->op != STORE_SECRET_SET && r->op != STORE_DEVICE_DELETE; r = r->next) {
    }
    return r ? lock_secrets_gen_now(st, head) : STORE_OK;
}

int pg_lock_devices(struct pgstore *st, struct store_req *head)
{
    struct pg_array ids = {0};
    const struct store_req *r;
    const char *lit = NULL;
    int rc = 0;

    for (r = head; r && rc == 0; r = r->next) {
        rc = ids_of(r, &ids);
    }
    if (rc == 0 && ids.n < 2) {
        pg_array_free(&ids);
        /* One row: nothing to order, but a removal's before secrets_gen,
         * as every list takes them (a list of several that sets a secret
         * and holds the row would wait for it while it waited for that:
         * a review). */
        for (r = head; r && r->op != STORE_DEVICE_DELETE; r = r->next) {
        }
        if (r && (rc = pg_run_once(st, head, "lock devices", "SELECT count(*) FROM (SELECT 1 FROM"
                                   " devices WHERE id = $1 FOR UPDATE) AS locked",
                                   r->u.device.id)) < 0) {
            return rc;
        }
        return lock_secrets_gen(st, head);
    }
    if (rc != 0 || !(lit = pg_array_end(&ids))) {
        pg_array_free(&ids);
        return store_err_set(head, STORE_E_IO, "out of memory");
    }
    /* ORDER BY comes before the locking clause: the rows are locked in
     * id order, whatever order the list's ops then write them in. The
     * mode their UPDATEs take (a key is never changed): other nodes'
     * inserts that check a foreign key to the row do not wait for it. */
    rc = pg_run_once(st, head, "lock devices", "SELECT count(*) FROM (SELECT 1 FROM devices"
                " WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE) AS locked", lit);
    pg_array_free(&ids);
    return rc < 0 ? rc : lock_secrets_gen(st, head);
}

/* One statement, one round trip, however many devices. */
int pg_op_seen(struct pgstore *st, struct store_req *r)
{
    struct pg_array ids = {0};
    const char *lit = NULL;
    size_t i;
    int rc = 0;

    if (!r->u.seen.n) {
        return STORE_OK;
    }
    for (i = 0; i < r->u.seen.n && rc == 0; i++) {
        rc = pg_array_add(&ids, r->u.seen.ids[i]);
    }
    if (rc != 0 || !(lit = pg_array_end(&ids))) {
        pg_array_free(&ids);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = pg_run(st, r, "seen", "UPDATE devices d SET last_seen = greatest(d.last_seen, $2)"
                " FROM unnest($1::text[]) AS u(id) WHERE d.id = u.id", "ti", lit, r->now);
    pg_array_free(&ids);
    return rc < 0 ? rc : STORE_OK;
}

/* ---- events ---- */

/* Applies one step (store_sqlite_dev.c's rules, store_common.c's checks). */
static int apply_event(void *backend, struct store_req *r, const struct store_step *e)
{
    struct pgstore *st = backend;
    char hex[2 * TCPOTA_ID_LEN + 1], detail[STORE_STEP_DETAIL_MAX];
    struct store_device old;
    int rc, status, late;

    if ((rc = store_step_check(r, e)) < 0) {
        return rc;
    }
    /* Locked as read (a list of several has it already): a removal
     * committing between this and the UPDATE would leave the step's
     * history line without its device (a review). */
    rc = device_of(r, pg_q(st, r, "device", "SELECT " DEV_COLS " FROM devices WHERE id = $1"
                           " FOR NO KEY UPDATE", "t", e->id), &old);
    if (rc <= 0) {
        return rc < 0 ? rc : store_err_set(r, STORE_E_NOTFOUND, STORE_NO_DEVICE "%s", e->id);
    }
    store_step_image(&old, e, hex);
    /* A step about the image the device has reported on came late (kept
     * while the database was unreachable, or through another node): its
     * history line is written, but the report's state and count stay. In
     * the UPDATE's condition, so that a report committed meanwhile by
     * another node counts (the row as it is once its lock is ours). A
     * transfer's steps name their image; a decision without one (no
     * rollout: up to date) is no late step but what the device is told
     * now, nor is an offer (the image offered once more after a boot or
     * an integrity failure: store_sqlite_dev.c). */
    if ((rc = pg_run(st, r, "event", "UPDATE devices SET state = $2, image = $3, bytes = $4,"
                     " size = $5, reason = substr($6, 1, $7), last_seen = greatest(last_seen, $8)"
                     " WHERE id = $1 AND NOT ($12 = 1 AND state IN ($9, $10, $11) AND"
                     " state <> $2 AND image = $3)", "titiitiiiiii", e->id, (int64_t)e->state,
                     hex, (int64_t)e->bytes, (int64_t)e->size, e->reason ? e->reason : "",
                     (int64_t)STORE_REASON_MAX, r->now, (int64_t)STORE_ST_UPDATED,
                     (int64_t)STORE_ST_ROLLED_BACK, (int64_t)STORE_ST_BOOT_FAILED,
                     (int64_t)(e->image_id != NULL && e->state != STORE_ST_OFFERED))) < 0) {
        return rc;
    }
    late = st->changes == 0;
    if (!store_step_is_progress(&old, e, hex) &&
        (rc = add_history(st, r, e->id, e->state, hex,
                          store_step_detail(e, detail, sizeof(detail)))) < 0) {
        return rc;
    }
    if (e->failed_id && (rc = add_failure(st, r, e->id, e->failed_id)) < 0) {
        return rc;
    }
    if ((status = store_step_ro_status(e, late, old.state)) >= 0) {
        return pg_ro_set_status(st, r, e->rollout_id, e->id, (enum store_ro_status)status);
    }
    return STORE_OK;
}

int pg_op_event(struct pgstore *st, struct store_req *r)
{
    return store_run_event(r, apply_event, st);
}

int pg_op_events(struct pgstore *st, struct store_req *r)
{
    return store_run_events(r, apply_event, st);
}

/* ---- the API's device operations ---- */

/* The filters of a device list as SQL; every parameter is always passed
 * ($1 model, $2 group, $3 state, then $4 after and $5 limit for a page), a
 * filter not given is a NULL that matches everything. A search by id prefix
 * is a statement of its own ($6 and $7 the prefix's range, or $4 and $5 in
 * the count): with it in the shared one, a generic plan could not use the
 * primary key's range. Ids are TEXT COLLATE "C", so the range is bytewise
 * as in SQLite (store_sqlite_dev.c): every printable id starting with P
 * sorts below P "\x7f". */
#define LIST_WHERE                                                                            \
    " WHERE ($1::text IS NULL OR model = $1) AND ($2::text IS NULL OR grp = $2)"              \
    " AND ($3::int < 0 OR state = $3)"
#define LIST_PAGE " AND ($4::text IS NULL OR id > $4) ORDER BY id LIMIT $5"

static const char sql_list[] = "SELECT " DEV_COLS " FROM devices" LIST_WHERE LIST_PAGE;
static const char sql_list_prefix[] =
    "SELECT " DEV_COLS " FROM devices" LIST_WHERE " AND id >= $6 AND id < $7" LIST_PAGE;
static const char sql_total[] = "SELECT count(*) FROM devices" LIST_WHERE;
static const char sql_total_prefix[] =
    "SELECT count(*) FROM devices" LIST_WHERE " AND id >= $4 AND id < $5";

static int list_total(struct pgstore *st, struct store_req *r, const char *prefix_end)
{
    int64_t total = 0;
    int rc = r->u.list.prefix
                 ? pg_int(st, r, "device list", &total, sql_total_prefix, "ttitt", r->u.list.model,
                          r->u.list.group, (int64_t)r->u.list.state, r->u.list.prefix, prefix_end)
                 : pg_int(st, r, "device list", &total, sql_total, "tti", r->u.list.model,
                          r->u.list.group, (int64_t)r->u.list.state);

    r->u.list.total = (size_t)total;
    return rc < 0 ? rc : STORE_OK;
}

int pg_op_device_list(struct pgstore *st, struct store_req *r)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX;
    int64_t lim = (int64_t)(limit > STORE_LIST_MAX ? STORE_LIST_MAX : limit);
    char prefix_end[TCPOTA_MAX_STR + 2];
    struct store_device *rows;
    PGresult *res;
    int i, n;

    snprintf(prefix_end, sizeof(prefix_end), "%s\x7f", r->u.list.prefix ? r->u.list.prefix : "");
    res = r->u.list.prefix
              ? pg_q(st, r, "device list", sql_list_prefix, "ttititt", r->u.list.model,
                     r->u.list.group, (int64_t)r->u.list.state, r->u.list.after, lim,
                     r->u.list.prefix, prefix_end)
              : pg_q(st, r, "device list", sql_list, "ttiti", r->u.list.model, r->u.list.group,
                     (int64_t)r->u.list.state, r->u.list.after, lim);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    rows = calloc(n ? (size_t)n : 1, sizeof(*rows));
    if (!rows) {
        PQclear(res);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (i = 0; i < n; i++) {
        row_to_device(res, i, &rows[i]);
    }
    PQclear(res);
    r->u.list.rows = rows;
    r->u.list.n = (size_t)n;
    return list_total(st, r, prefix_end);
}

static int load_history(struct pgstore *st, struct store_req *r)
{
    struct store_history *h;
    PGresult *res;
    int i, n;

    res = pg_q(st, r, "device history", "SELECT at, state, image, detail FROM device_history"
               " WHERE device_id = $1 ORDER BY seq DESC LIMIT $2", "ti", r->u.device.id,
               (int64_t)STORE_HISTORY_MAX);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    if (!(h = calloc(STORE_HISTORY_MAX, sizeof(*h)))) {
        PQclear(res);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (i = 0; i < n && i < (int)STORE_HISTORY_MAX; i++) {
        h[i].at = pg_col_i64(res, i, 0);
        h[i].state = (enum store_dev_state)pg_col_i64(res, i, 1);
        pg_col_text(res, i, 2, h[i].image, sizeof(h[i].image));
        pg_col_text(res, i, 3, h[i].detail, sizeof(h[i].detail));
    }
    PQclear(res);
    r->u.device.history = h;
    r->u.device.nhistory = (size_t)i;
    return STORE_OK;
}

/* r's device is not in the registry: "no device", with whether its id
 * has a secret (a secret does not register an id; the API says so). */
static int not_registered(struct pgstore *st, struct store_req *r)
{
    int64_t n = 0;
    int rc;

    if ((rc = pg_int(st, r, "device secret", &n, "SELECT count(*) FROM secrets WHERE device_id = $1",
                     "t", r->u.device.id)) < 0) {
        return rc;
    }
    r->u.device.had_secret = n > 0;
    return store_err_set(r, STORE_E_NOTFOUND, STORE_NO_DEVICE "%s", r->u.device.id);
}

int pg_op_device_get(struct pgstore *st, struct store_req *r)
{
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, r->u.device.dev)) <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    return load_history(st, r);
}

int pg_op_device_set_group(struct pgstore *st, struct store_req *r)
{
    const char *group = r->u.device.group ? r->u.device.group : "";
    struct store_device *d = r->u.device.dev;
    int64_t ro_id;
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, d)) <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    if ((rc = pg_run(st, r, "device group", "UPDATE devices SET grp = $2 WHERE id = $1", "tt",
                     d->id, group)) < 0) {
        return rc;
    }
    snprintf(d->group, sizeof(d->group), "%s", group);
    /* Where it finished still counts; where it had not, it leaves. */
    if ((ro_id = pg_ro_applicable(st, r, d->model, group)) < 0 ||
        (rc = pg_ro_leave(st, r, d->id, NULL, NULL, ro_id)) < 0) {
        return ro_id < 0 ? (int)ro_id : rc;
    }
    return ro_id > 0 ? ensure_in(st, r, ro_id, d->id) : STORE_OK;
}

int pg_op_device_retry(struct pgstore *st, struct store_req *r)
{
    struct store_device *d = r->u.device.dev;
    int rc;

    /* The row locked first: a check-in on another node that is adding a
     * failure commits before the DELETE looks (not after it, its failure
     * kept while this one said all were forgotten). */
    rc = device_of(r, pg_q(st, r, "device", "SELECT " DEV_COLS " FROM devices WHERE id = $1"
                           " FOR NO KEY UPDATE", "t", r->u.device.id), d);
    if (rc <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    if ((rc = pg_run(st, r, "device failures", "DELETE FROM device_failures WHERE device_id = $1",
                     "t", d->id)) < 0) {
        return rc;
    }
    r->u.device.forgot = (uint32_t)st->changes;
    if (r->u.device.forgot == 0) {
        return STORE_OK; /* nothing held back: nothing to change */
    }
    /* A state that shows a failure no longer holds; another (updated
     * since, downloading) is still the device's. */
    if (store_ro_status_of(d->state) == STORE_RO_FAILED) {
        if ((rc = pg_run(st, r, "device state", "UPDATE devices SET state = $2, reason = $3"
                         " WHERE id = $1", "tit", d->id, (int64_t)STORE_ST_SEEN,
                         STORE_RETRY_DETAIL)) < 0) {
            return rc;
        }
        d->state = STORE_ST_SEEN;
        snprintf(d->reason, sizeof(d->reason), "%s", STORE_RETRY_DETAIL);
    }
    return add_history(st, r, d->id, d->state, "", STORE_RETRY_DETAIL);
}

/* STORE_DEVICE_DELETE (store.h). The row locked first (pg_lock_devices,
 * and here for a list of one request); the rows that name the device go
 * before its own (foreign keys); its secret's removal is a row of
 * secrets_gone (migration 6), numbered as a secret set is, so that the
 * other nodes learn of it. */
int pg_op_device_delete(struct pgstore *st, struct store_req *r)
{
    struct store_device *d = r->u.device.dev;
    int rc;

    rc = device_of(r, pg_q(st, r, "device", "SELECT " DEV_COLS " FROM devices WHERE id = $1"
                           " FOR UPDATE", "t", r->u.device.id), d);
    if (rc < 0) {
        return rc;
    }
    r->u.device.registered = rc > 0;
    if ((rc = lock_secrets_gen_now(st, r)) < 0) { /* as a secret set does */
        return rc;
    }
    if ((rc = pg_run(st, r, "device secret delete", "DELETE FROM secrets WHERE device_id = $1",
                     "t", r->u.device.id)) < 0) {
        return rc;
    }
    r->u.device.had_secret = st->changes > 0;
    if (!r->u.device.registered && !r->u.device.had_secret) {
        return store_err_set(r, STORE_E_NOTFOUND, STORE_NO_DEVICE "%s", r->u.device.id);
    }
    if (r->u.device.registered &&
        ((rc = pg_ro_leave(st, r, d->id, NULL, NULL, 0)) < 0 ||
         (rc = pg_run(st, r, "device delete", "DELETE FROM device_history WHERE device_id = $1",
                      "t", d->id)) < 0 ||
         (rc = pg_run(st, r, "device delete", "DELETE FROM device_failures WHERE device_id = $1",
                      "t", d->id)) < 0 ||
         (rc = pg_run(st, r, "device delete", "DELETE FROM devices WHERE id = $1", "t",
                      d->id)) < 0)) {
        return rc;
    }
    if (r->u.device.had_secret &&
        (rc = pg_run(st, r, "device secret delete", "INSERT INTO secrets_gone (device_id)"
                     " VALUES ($1) ON CONFLICT (device_id) DO UPDATE SET changed = 0", "t",
                     r->u.device.id)) < 0) {
        return rc;
    }
    return STORE_OK;
}

int pg_op_secret_set(struct pgstore *st, struct store_req *r)
{
    int64_t n = 0;
    int rc;

    /* secrets_gen before the row of secrets_gone a removal of id may hold,
     * as every list takes it (pg_lock_devices did, but for a list run
     * again with savepoints and no first locks: a review). */
    if ((rc = lock_secrets_gen_now(st, r)) < 0) {
        return rc;
    }
    /* "had a secret" * 4 + "is registered" * 2 + "checks in over HTTP", of id. */
    if ((rc = pg_int(st, r, "secret set", &n, "SELECT (SELECT count(*) FROM secrets WHERE"
                     " device_id = $1) * 4 + (SELECT count(*) FROM devices WHERE id = $1) * 2 +"
                     " (SELECT count(*) FROM devices WHERE id = $1 AND proto = $2)", "ti",
                     r->u.device.id, (int64_t)STORE_PROTO_HTTP)) < 0) {
        return rc;
    }
    r->u.device.had_secret = (n & 4) != 0;
    r->u.device.registered = (n & 2) != 0;
    r->u.device.http = (n & 1) != 0;
    /* Its generation comes from migration 5's trigger (the row of
     * secrets_gen locked until COMMIT: pg_lock_devices took it first).
     * A removal of the id before it is forgotten: a node that reads both
     * must not take the removal for the later. */
    if ((rc = pg_run(st, r, "secret set", "DELETE FROM secrets_gone WHERE device_id = $1", "t",
                     r->u.device.id)) < 0) {
        return rc;
    }
    return pg_run(st, r, "secret set", "INSERT INTO secrets (device_id, secret) VALUES ($1, $2)"
                  " ON CONFLICT (device_id) DO UPDATE SET secret = EXCLUDED.secret", "tb",
                  r->u.device.id, (const void *)r->u.device.secret, (int)r->u.device.secret_len);
}

int pg_op_secret_list(struct pgstore *st, struct store_req *r)
{
    struct store_secret *rows;
    PGresult *res;
    int i, n, len, rc;

    /* The generation first: a secret set after it is read again next
     * time, none before it is missed (each statement its own snapshot). */
    if ((rc = pg_int(st, r, "secret list", &r->u.list.gen, "SELECT gen FROM secrets_gen", "")) < 0) {
        return rc;
    }
    /* All of them (since 0) by id, as a node holds them: PostgreSQL sorts,
     * not the node's loop (0.12 s for 500,000 there). device_id is
     * COLLATE "C": strcmp's order. An id in both tables (only by hand)
     * comes twice, the later write last. */
    if (!(res = pg_q(st, r, "secret list", r->u.list.since
                     ? "SELECT device_id, secret, changed FROM secrets WHERE changed > $1"
                       " UNION ALL SELECT device_id, ''::bytea, changed FROM secrets_gone"
                       " WHERE changed > $1 ORDER BY 3"
                     : "SELECT device_id, secret, changed FROM secrets WHERE changed > $1"
                       " UNION ALL SELECT device_id, ''::bytea, changed FROM secrets_gone"
                       " WHERE changed > $1 ORDER BY 1, 3", "i", r->u.list.since))) {
        return r->rc;
    }
    n = PQntuples(res);
    if (!(rows = calloc(n ? (size_t)n : 1, sizeof(*rows)))) {
        PQclear(res);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (i = 0; i < n; i++) {
        pg_col_text(res, i, 0, rows[i].id, sizeof(rows[i].id));
        len = pg_col_bytea(res, i, 1, rows[i].secret, sizeof(rows[i].secret));
        rows[i].len = (uint8_t)(len > 0 ? len : 0);
        /* libpq's copy, in hex, not left in freed memory either */
        sodium_memzero(PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    }
    PQclear(res);
    r->u.list.rows = rows;
    r->u.list.n = r->u.list.total = (size_t)n;
    return STORE_OK;
}
