/* store_sqlite_dev.c - devices in the SQLite store: the check-in of each HELLO
 * (register, apply a report, return what the offer needs), the steps of an
 * update, and the API's device list, show and group. A device's history
 * gets one row per change of state, never one per progress step. */
#include "store_common.h"
#include "store_sqlite_internal.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_COLS                                                                             \
    "id, model, version, running, grp, addr, proto, state, image, bytes, size, reason,"      \
    " first_seen, last_seen, EXISTS (SELECT 1 FROM secrets WHERE device_id = devices.id)"

static void row_to_device(sqlite3_stmt *s, struct store_device *d)
{
    memset(d, 0, sizeof(*d));
    sq_col_text(s, 0, d->id, sizeof(d->id));
    sq_col_text(s, 1, d->model, sizeof(d->model));
    sq_col_text(s, 2, d->version, sizeof(d->version));
    sq_col_text(s, 3, d->running, sizeof(d->running));
    sq_col_text(s, 4, d->group, sizeof(d->group));
    sq_col_text(s, 5, d->addr, sizeof(d->addr));
    d->proto = (enum store_proto)sqlite3_column_int(s, 6);
    d->state = (enum store_dev_state)sqlite3_column_int(s, 7);
    sq_col_text(s, 8, d->image, sizeof(d->image));
    d->bytes = (uint32_t)sqlite3_column_int64(s, 9);
    d->size = (uint32_t)sqlite3_column_int64(s, 10);
    sq_col_text(s, 11, d->reason, sizeof(d->reason));
    d->first_seen = sqlite3_column_int64(s, 12);
    d->last_seen = sqlite3_column_int64(s, 13);
    d->has_secret = sqlite3_column_int(s, 14);
}

/* 1 and *d filled, 0 unknown id, <0 store_err. */
static int load_device(struct sstore *st, struct store_req *r, const char *id,
                       struct store_device *d)
{
    sqlite3_stmt *s = sq_prep(st, "SELECT " DEV_COLS " FROM devices WHERE id = ?1", "t", id);
    int rc;

    if (!s) {
        return sq_fail(st, r, "device");
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row_to_device(s, d);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sq_fail(st, r, "device");
}

static int add_history(struct sstore *st, struct store_req *r, const char *id,
                       enum store_dev_state state, const char *image, const char *detail)
{
    if (sq_run(st, "INSERT INTO device_history (device_id, at, state, image, detail)"
               " VALUES (?1, ?2, ?3, ?4, substr(?5, 1, ?6))", "tiitti", id, r->now,
               (int64_t)state, image, detail ? detail : "",
               (int64_t)STORE_REASON_MAX) != SQLITE_DONE) {
        return sq_fail(st, r, "device history");
    }
    if (sqlite3_last_insert_rowid(st->db) % STORE_HISTORY_PRUNE_EVERY == 0 &&
        sq_run(st, "DELETE FROM device_history WHERE device_id = ?1 AND rowid <= (SELECT rowid"
               " FROM device_history WHERE device_id = ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2)",
               "ti", id, (int64_t)STORE_HISTORY_MAX) != SQLITE_DONE) {
        return sq_fail(st, r, "device history (pruning)");
    }
    return STORE_OK;
}

/* Remembers an image (or offer fingerprint) the device failed; a repeat moves
 * it to the front of what check-in returns. */
static int add_failure(struct sstore *st, struct store_req *r, const char *id, const uint8_t *f)
{
    if (sq_run(st, "INSERT OR REPLACE INTO device_failures (device_id, failed_id)"
               " VALUES (?1, ?2)", "tb", id, (const void *)f, (int)TCPOTA_ID_LEN) != SQLITE_DONE) {
        return sq_fail(st, r, "device failures");
    }
    return STORE_OK;
}

/* ---- check-in ---- */

/* Inserts or refreshes the device; *old: its row before (state, image, group). */
static int upsert(struct sstore *st, struct store_req *r, struct store_device *old)
{
    const __typeof__(r->u.checkin) *c = &r->u.checkin;
    char running[2 * TCPOTA_ID_LEN + 1] = "";
    int rc;

    if (c->running_id) {
        store_hex(c->running_id, running);
    }
    rc = load_device(st, r, c->id, old);
    if (rc < 0) {
        return rc;
    }
    r->u.checkin.is_new = rc == 0;
    if (rc == 0) {
        memset(old, 0, sizeof(*old));
        if (sq_run(st, "INSERT INTO devices (id, model, version, running, addr, proto, state,"
                   " first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
                   "tttttii", c->id, c->model, c->version, running, c->addr ? c->addr : "",
                   (int64_t)c->proto, r->now) != SQLITE_DONE) {
            return sq_fail(st, r, "checkin");
        }
        return add_history(st, r, c->id, STORE_ST_SEEN, "", c->version);
    }
    /* Most check-ins change only the time: an UPDATE naming model (or any
     * indexed column) rewrites its index entries even when the value is
     * the same, so the usual case sets last_seen alone. */
    if (strcmp(old->model, c->model) == 0 && strcmp(old->version, c->version) == 0 &&
        strcmp(old->running, running) == 0 && strcmp(old->addr, c->addr ? c->addr : "") == 0 &&
        old->proto == c->proto) {
        if (sq_run(st, "UPDATE devices SET last_seen = ?2 WHERE id = ?1", "ti", c->id,
                   r->now) != SQLITE_DONE) {
            return sq_fail(st, r, "checkin");
        }
        return STORE_OK;
    }
    if (sq_run(st, "UPDATE devices SET model = ?2, version = ?3, running = ?4, addr = ?5,"
               " proto = ?6, last_seen = ?7 WHERE id = ?1", "tttttii", c->id, c->model,
               c->version, running, c->addr ? c->addr : "", (int64_t)c->proto,
               r->now) != SQLITE_DONE) {
        return sq_fail(st, r, "checkin");
    }
    return STORE_OK;
}

/* Moves the device's rows in the rollouts of the reported image. */
static int report_rollouts(struct sstore *st, struct store_req *r, const char *hex,
                           enum store_ro_status status)
{
    int64_t ids[ROLLOUT_MAX_WAVES];
    size_t n = 0, i;
    sqlite3_stmt *s;
    int rc;

    /* Not a cancelled one: its counts are final (a trial's cancelled
     * rollout kept counting devices that updated under the next rollout of
     * the same image, counted there too); nor are a superseded one's, which
     * sq_ro_set_status tells. */
    s = sq_prep(st, "SELECT rd.rollout_id FROM rollout_devices rd JOIN rollouts ro"
                " ON ro.id = rd.rollout_id WHERE rd.device_id = ?1 AND ro.image = ?2"
                " AND ro.state != ?3 ORDER BY rd.rollout_id DESC", "tti", r->u.checkin.id, hex,
                (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!s) {
        return sq_fail(st, r, "checkin report");
    }
    /* Collected first: the moves write the table this reads. The newest few
     * rollouts of one image are all that can still count. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < ROLLOUT_MAX_WAVES) {
        ids[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return sq_fail(st, r, "checkin report");
    }
    for (i = 0; i < n; i++) {
        if ((rc = sq_ro_set_status(st, r, (uint64_t)ids[i], r->u.checkin.id, status)) < 0) {
            return rc;
        }
    }
    return STORE_OK;
}

/* Applies the report a HELLO carries, once: the device repeats it until a
 * WELCOME acknowledges it, and a repeat finds the state already saying so. */
static int apply_report(struct sstore *st, struct store_req *r, const struct store_device *old)
{
    struct store_report rep;
    char hex[2 * TCPOTA_ID_LEN + 1];
    int rc;

    if ((rc = store_report_of(r, &rep)) < 0) {
        return rc;
    }
    store_hex(r->u.checkin.report_id, hex);
    if (old->state == rep.state && strcmp(old->image, hex) == 0) {
        return STORE_OK;
    }
    /* All of the image (not "0 of 0 bytes"): STORE_REPORT_SIZE_SQL. */
    if (sq_run(st, "UPDATE devices SET state = ?2, image = ?3,"
               " bytes = " STORE_REPORT_SIZE_SQL("?3") ", size = " STORE_REPORT_SIZE_SQL("?3") ","
               " reason = ?4 WHERE id = ?1", "titt", r->u.checkin.id, (int64_t)rep.state, hex,
               rep.reason) != SQLITE_DONE) {
        return sq_fail(st, r, "checkin report");
    }
    if ((rc = add_history(st, r, r->u.checkin.id, rep.state, hex, rep.detail)) < 0 ||
        (rep.hold && (rc = add_failure(st, r, r->u.checkin.id, r->u.checkin.report_id)) < 0)) {
        return rc;
    }
    return report_rollouts(st, r, hex, rep.failed ? STORE_RO_FAILED : STORE_RO_UPDATED);
}

/* The failed images, newest first, into the check-in's output. */
static int load_failed(struct sstore *st, struct store_req *r)
{
    sqlite3_stmt *s;
    int rc;

    s = sq_prep(st, "SELECT failed_id FROM device_failures WHERE device_id = ?1"
                " ORDER BY rowid DESC LIMIT ?2", "ti", r->u.checkin.id,
                (int64_t)STORE_FAILED_MAX);
    if (!s) {
        return sq_fail(st, r, "checkin failures");
    }
    r->u.checkin.out->nfailed = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(s, 0) == TCPOTA_ID_LEN) {
            memcpy(r->u.checkin.out->failed[r->u.checkin.out->nfailed++], sqlite3_column_blob(s, 0),
                   TCPOTA_ID_LEN);
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "checkin failures");
}

/* The applicable rollout, its image and the device's status in it, after
 * the report moved the counts. */
static int load_rollout(struct sstore *st, struct store_req *r, int64_t id)
{
    __typeof__(r->u.checkin) *c = &r->u.checkin;
    char hex[2 * TCPOTA_ID_LEN + 1];
    int rc;

    rc = sq_ro_load(st, r, (uint64_t)id, &c->out->rollout);
    if (rc > 0) {
        store_hex(c->out->rollout.image_id, hex);
        rc = sq_img_load(st, r, hex, &c->out->image);
    }
    if (rc > 0) {
        rc = sq_ro_ensure(st, r, &c->out->rollout, c->id, &c->ro_status);
        /* Its image cannot be removed while the rollout counts; if it was
         * anyway, the device is simply offered nothing. */
        c->has_rollout = rc == STORE_OK;
    }
    return rc < 0 ? rc : STORE_OK;
}

/* The row of a known device after upsert() refreshed it, built from the
 * row before rather than read again: a check-in without a report changes
 * only these columns (a second SELECT was 6 % of a check-in's work). */
static void refreshed(const struct store_req *r, const struct store_device *old,
                      struct store_device *d)
{
    const __typeof__(r->u.checkin) *c = &r->u.checkin;

    *d = *old;
    (void)text_copy(d->model, sizeof(d->model), c->model);
    (void)text_copy(d->version, sizeof(d->version), c->version);
    d->running[0] = '\0';
    if (c->running_id) {
        store_hex(c->running_id, d->running);
    }
    (void)text_copy(d->addr, sizeof(d->addr), c->addr);
    d->proto = c->proto;
    d->last_seen = r->now;
}

int sq_op_checkin(struct sstore *st, struct store_req *r)
{
    struct store_device old;
    struct store_rollout *tmp;
    int64_t ro_id;
    int rc;

    /* Not zeroed (3.5 KiB a check-in): dev, group and failed are always
     * written below, the rollout and the image only with has_rollout, as
     * store.h says. */
    if (!r->u.checkin.out && !(r->u.checkin.out = malloc(sizeof(*r->u.checkin.out)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    if ((rc = upsert(st, r, &old)) < 0) {
        return rc;
    }
    (void)text_copy(r->u.checkin.out->group, sizeof(r->u.checkin.out->group), old.group);
    ro_id = sq_ro_applicable(st, r, r->u.checkin.model, old.group);
    if (ro_id < 0) {
        return (int)ro_id;
    }
    /* A device new to the rollout gets its row before its report counts. */
    if (ro_id > 0 && r->u.checkin.report_id) {
        enum store_ro_status status;
        tmp = malloc(sizeof(*tmp));
        rc = !tmp ? store_err_set(r, STORE_E_IO, "out of memory") : sq_ro_load(st, r, (uint64_t)ro_id, tmp);
        if (rc > 0) {
            rc = sq_ro_ensure(st, r, tmp, r->u.checkin.id, &status);
        }
        free(tmp);
        if (rc < 0) {
            return rc;
        }
    }
    if (r->u.checkin.report_id && (rc = apply_report(st, r, &old)) < 0) {
        return rc;
    }
    /* After the report, which may finish it in the old model's rollout;
     * else a wave of that model would count a device it never sees again. */
    if (store_checkin_moved(r, old.model) &&
        (rc = sq_ro_leave(st, r, r->u.checkin.id, NULL, NULL, ro_id)) < 0) {
        return rc;
    }
    if ((rc = load_failed(st, r)) < 0) {
        return rc;
    }
    /* The device as it is now (its report applied), so that the caller
     * writes only what changes. */
    if (!r->u.checkin.report_id && !r->u.checkin.is_new) {
        refreshed(r, &old, &r->u.checkin.out->dev);
    } else if ((rc = load_device(st, r, r->u.checkin.id, &r->u.checkin.out->dev)) <= 0) {
        return rc < 0 ? rc : store_err_set(r, STORE_E_IO, "checkin: device %s vanished", r->u.checkin.id);
    }
    r->u.checkin.has_rollout = 0;
    return ro_id > 0 ? load_rollout(st, r, ro_id) : STORE_OK;
}

int sq_op_seen(struct sstore *st, struct store_req *r)
{
    size_t i;

    for (i = 0; i < r->u.seen.n; i++) {
        if (sq_run(st, "UPDATE devices SET last_seen = max(last_seen, ?2) WHERE id = ?1", "ti",
                   r->u.seen.ids[i], r->now) != SQLITE_DONE) {
            return sq_fail(st, r, "seen");
        }
    }
    return STORE_OK;
}

/* ---- events ---- */

/* Applies one step (store_common.c's rules around the SQL). STORE_E_NOTFOUND
 * (unknown device) and STORE_E_INVAL return before anything is written. */
static int apply_event(void *backend, struct store_req *r, const struct store_step *e)
{
    struct sstore *st = backend;
    char hex[2 * TCPOTA_ID_LEN + 1], detail[STORE_STEP_DETAIL_MAX];
    struct store_device old;
    int rc, status, late;

    if ((rc = store_step_check(r, e)) < 0) {
        return rc;
    }
    if ((rc = load_device(st, r, e->id, &old)) <= 0) {
        return rc < 0 ? rc : sq_missing(st, r, e->id, 1);
    }
    store_step_image(&old, e, hex);
    /* A step about the image the device has reported on came late (a
     * half-open connection timed out after the device reported on a new
     * one): its history line is written, but the report's state and
     * count stay (store_pg_dev.c has the same rule, for steps kept
     * through an outage or written by another node). A transfer's steps
     * name their image; a decision without one (no rollout: up to date)
     * is no late step but what the device is told now, nor is an offer:
     * the image offered once more after a boot or an integrity failure
     * (tcpota_srv_report_final) starts a transfer whose steps count (a
     * trial: its second boot failure was taken for a repeat). */
    if (sq_run(st, "UPDATE devices SET state = ?2, image = ?3, bytes = ?4, size = ?5,"
               " reason = substr(?6, 1, ?7), last_seen = max(last_seen, ?8) WHERE id = ?1"
               " AND NOT (?12 AND state IN (?9, ?10, ?11) AND state <> ?2 AND image = ?3)",
               "titiitiiiiii", e->id, (int64_t)e->state, hex, (int64_t)e->bytes,
               (int64_t)e->size, e->reason ? e->reason : "", (int64_t)STORE_REASON_MAX, r->now,
               (int64_t)STORE_ST_UPDATED, (int64_t)STORE_ST_ROLLED_BACK,
               (int64_t)STORE_ST_BOOT_FAILED,
               (int64_t)(e->image_id != NULL && e->state != STORE_ST_OFFERED)) != SQLITE_DONE) {
        return sq_fail(st, r, "event");
    }
    late = sqlite3_changes(st->db) == 0;
    if (!store_step_is_progress(&old, e, hex) &&
        (rc = add_history(st, r, e->id, e->state, hex,
                          store_step_detail(e, detail, sizeof(detail)))) < 0) {
        return rc;
    }
    if (e->failed_id && (rc = add_failure(st, r, e->id, e->failed_id)) < 0) {
        return rc;
    }
    if ((status = store_step_ro_status(e, late, old.state)) >= 0) {
        return sq_ro_set_status(st, r, e->rollout_id, e->id, (enum store_ro_status)status);
    }
    return STORE_OK;
}

int sq_op_event(struct sstore *st, struct store_req *r)
{
    return store_run_event(r, apply_event, st);
}

int sq_op_events(struct sstore *st, struct store_req *r)
{
    return store_run_events(r, apply_event, st);
}

/* ---- the API's device operations ---- */

/* The filters of a device list as SQL; the parameters are ?1 model, ?2
 * group, ?3 state, ?4 after, ?5 limit, ?6 and ?7 the prefix's range, each
 * bound only when used. A prefix is a range of the primary key: ids are
 * printable ASCII, so every id starting with P sorts below P "\x7f". */
static void list_where(const struct store_req *r, int paged, char *sql, size_t size)
{
    snprintf(sql, size, " WHERE 1%s%s%s%s%s", r->u.list.model ? " AND model = ?1" : "",
             r->u.list.group ? " AND grp = ?2" : "", r->u.list.state >= 0 ? " AND state = ?3" : "",
             paged && r->u.list.after ? " AND id > ?4" : "",
             r->u.list.prefix ? " AND id >= ?6 AND id < ?7" : "");
}

static sqlite3_stmt *prep_list(struct sstore *st, const struct store_req *r, const char *sql)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX;
    sqlite3_stmt *s = NULL;
    char prefix_end[TCPOTA_MAX_STR + 2];
    int n;

    snprintf(prefix_end, sizeof(prefix_end), "%s\x7f", r->u.list.prefix ? r->u.list.prefix : "");

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        return NULL;
    }
    n = sqlite3_bind_parameter_count(s);
    sqlite3_bind_text(s, 1, r->u.list.model, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->u.list.group, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, r->u.list.state);
    if (n >= 4) {
        sqlite3_bind_text(s, 4, r->u.list.after, -1, SQLITE_STATIC);
    }
    if (n >= 5) {
        sqlite3_bind_int64(s, 5, (int64_t)(limit > STORE_LIST_MAX ? STORE_LIST_MAX : limit));
    }
    if (n >= 7) {
        sqlite3_bind_text(s, 6, r->u.list.prefix, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 7, prefix_end, -1, SQLITE_TRANSIENT);
    }
    return s;
}

static int list_total(struct sstore *st, struct store_req *r)
{
    char sql[256], where[200];
    sqlite3_stmt *s;
    int rc;

    list_where(r, 0, where, sizeof(where));
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM devices%s", where);
    if (!(s = prep_list(st, r, sql))) {
        return sq_fail(st, r, "device list");
    }
    if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        r->u.list.total = (size_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? STORE_OK : sq_fail(st, r, "device list");
}

int sq_op_device_list(struct sstore *st, struct store_req *r)
{
    char sql[512], where[200];
    struct store_device *rows = NULL, *grown;
    size_t cap = 0;
    sqlite3_stmt *s;
    int rc;

    list_where(r, 1, where, sizeof(where));
    snprintf(sql, sizeof(sql), "SELECT " DEV_COLS " FROM devices%s ORDER BY id LIMIT ?5", where);
    if (!(s = prep_list(st, r, sql))) {
        return sq_fail(st, r, "device list");
    }
    r->u.list.n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(grown = store_grow(rows, &cap, r->u.list.n, sizeof(*rows)))) {
            break;
        }
        rows = grown;
        row_to_device(s, &rows[r->u.list.n++]);
    }
    sqlite3_finalize(s);
    r->u.list.rows = rows;
    if (rc != SQLITE_DONE) {
        return rc == SQLITE_ROW ? store_err_set(r, STORE_E_IO, "out of memory")
                                : sq_fail(st, r, "device list");
    }
    if ((rc = list_total(st, r)) == STORE_OK && st->commit_failed) {
        (void)store_err_set(r, STORE_OK, "the last commit failed (%s): devices that checked in"
                            " just before it are missing until their next check-in",
                            st->failed_why);
    }
    return rc;
}

static int load_history(struct sstore *st, struct store_req *r)
{
    struct store_history *h;
    sqlite3_stmt *s;
    int rc;

    h = calloc(STORE_HISTORY_MAX, sizeof(*h));
    s = sq_prep(st, "SELECT at, state, image, detail FROM device_history WHERE device_id = ?1"
                " ORDER BY rowid DESC LIMIT ?2", "ti", r->u.device.id,
                (int64_t)STORE_HISTORY_MAX);
    if (!h || !s) {
        free(h);
        return !h ? store_err_set(r, STORE_E_IO, "out of memory") : sq_fail(st, r, "device history");
    }
    r->u.device.history = h;
    r->u.device.nhistory = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && r->u.device.nhistory < STORE_HISTORY_MAX) {
        h = &r->u.device.history[r->u.device.nhistory++];
        h->at = sqlite3_column_int64(s, 0);
        h->state = (enum store_dev_state)sqlite3_column_int(s, 1);
        sq_col_text(s, 2, h->image, sizeof(h->image));
        sq_col_text(s, 3, h->detail, sizeof(h->detail));
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "device history");
}

/* r's device is not in the registry: "no device", with whether its id
 * has a secret (a secret does not register an id; the API says so). */
static int not_registered(struct sstore *st, struct store_req *r)
{
    int64_t n = 0;

    if (sq_int(st, &n, "SELECT count(*) FROM secrets WHERE device_id = ?1", "t", r->u.device.id) < 0) {
        return sq_fail(st, r, "device secret");
    }
    r->u.device.had_secret = n > 0;
    return sq_missing(st, r, r->u.device.id, 0);
}

int sq_op_device_get(struct sstore *st, struct store_req *r)
{
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, r->u.device.dev)) <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    return load_history(st, r);
}

int sq_op_device_set_group(struct sstore *st, struct store_req *r)
{
    const char *group = r->u.device.group ? r->u.device.group : "";
    struct store_device *d = r->u.device.dev;
    struct store_rollout *ro;
    enum store_ro_status status;
    int64_t ro_id;
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, d)) <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    if (sq_run(st, "UPDATE devices SET grp = ?2 WHERE id = ?1", "tt", d->id, group) !=
        SQLITE_DONE) {
        return sq_fail(st, r, "device group");
    }
    snprintf(d->group, sizeof(d->group), "%s", group);
    /* Where it finished still counts; where it had not, it leaves. */
    if ((ro_id = sq_ro_applicable(st, r, d->model, group)) < 0 ||
        (rc = sq_ro_leave(st, r, d->id, NULL, NULL, ro_id)) < 0) {
        return ro_id < 0 ? (int)ro_id : rc;
    }
    if (ro_id == 0) {
        return STORE_OK;
    }
    if (!(ro = malloc(sizeof(*ro)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = sq_ro_load(st, r, (uint64_t)ro_id, ro);
    if (rc > 0) {
        rc = sq_ro_ensure(st, r, ro, d->id, &status);
    }
    free(ro);
    return rc < 0 ? rc : STORE_OK;
}

int sq_op_device_retry(struct sstore *st, struct store_req *r)
{
    struct store_device *d = r->u.device.dev;
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, d)) <= 0) {
        return rc < 0 ? rc : not_registered(st, r);
    }
    if (sq_run(st, "DELETE FROM device_failures WHERE device_id = ?1", "t", d->id) != SQLITE_DONE) {
        return sq_fail(st, r, "device failures");
    }
    r->u.device.forgot = (uint32_t)sqlite3_changes(st->db);
    if (r->u.device.forgot == 0) {
        return STORE_OK; /* nothing held back: nothing to change */
    }
    /* A state that shows a failure no longer holds; another (updated
     * since, downloading) is still the device's. */
    if (store_ro_status_of(d->state) == STORE_RO_FAILED) {
        if (sq_run(st, "UPDATE devices SET state = ?2, reason = ?3 WHERE id = ?1", "tit", d->id,
                   (int64_t)STORE_ST_SEEN, STORE_RETRY_DETAIL) != SQLITE_DONE) {
            return sq_fail(st, r, "device state");
        }
        d->state = STORE_ST_SEEN;
        snprintf(d->reason, sizeof(d->reason), "%s", STORE_RETRY_DETAIL);
    }
    return add_history(st, r, d->id, d->state, "", STORE_RETRY_DETAIL);
}

/* STORE_DEVICE_DELETE (store.h). The rows that name the device go before
 * its own (foreign keys). */
int sq_op_device_delete(struct sstore *st, struct store_req *r)
{
    struct store_device *d = r->u.device.dev;
    int64_t n = 0;
    int rc;

    if ((rc = load_device(st, r, r->u.device.id, d)) < 0) {
        return rc;
    }
    r->u.device.registered = rc > 0;
    if (sq_int(st, &n, "SELECT count(*) FROM secrets WHERE device_id = ?1", "t",
               r->u.device.id) < 0) {
        return sq_fail(st, r, "device secret");
    }
    r->u.device.had_secret = n > 0;
    if (!r->u.device.registered && !r->u.device.had_secret) {
        return sq_missing(st, r, r->u.device.id, 0);
    }
    if (r->u.device.registered &&
        ((rc = sq_ro_leave(st, r, d->id, NULL, NULL, 0)) < 0 ||
         sq_run(st, "DELETE FROM device_history WHERE device_id = ?1", "t", d->id) != SQLITE_DONE ||
         sq_run(st, "DELETE FROM device_failures WHERE device_id = ?1", "t", d->id) !=
             SQLITE_DONE ||
         sq_run(st, "DELETE FROM devices WHERE id = ?1", "t", d->id) != SQLITE_DONE)) {
        return rc < 0 ? rc : sq_fail(st, r, "device delete");
    }
    if (r->u.device.had_secret && sq_run(st, "DELETE FROM secrets WHERE device_id = ?1", "t",
                                         r->u.device.id) != SQLITE_DONE) {
        return sq_fail(st, r, "device secret delete");
    }
    return STORE_OK;
}

/* "had a secret" * 4 + "is registered" * 2 + "checks in over HTTP", of id. */
#define SECRET_STATE_SQL(p, http)                                                             \
    "SELECT (SELECT count(*) FROM secrets WHERE device_id = " p ") * 4 + "                      \
    "(SELECT count(*) FROM devices WHERE id = " p ") * 2 + "                                    \
    "(SELECT count(*) FROM devices WHERE id = " p " AND proto = " http ")"

int sq_op_secret_set(struct sstore *st, struct store_req *r)
{
    int64_t n = 0;

    if (sq_int(st, &n, SECRET_STATE_SQL("?1", "?2"), "ti", r->u.device.id,
               (int64_t)STORE_PROTO_HTTP) < 0) {
        return sq_fail(st, r, "secret set");
    }
    r->u.device.had_secret = (n & 4) != 0;
    r->u.device.registered = (n & 2) != 0;
    r->u.device.http = (n & 1) != 0;
    if (sq_run(st, "INSERT OR REPLACE INTO secrets (device_id, secret) VALUES (?1, ?2)", "tb",
               r->u.device.id, (const void *)r->u.device.secret,
               (int)r->u.device.secret_len) != SQLITE_DONE) {
        return sq_fail(st, r, "secret set");
    }
    return STORE_OK;
}

int sq_op_secret_list(struct sstore *st, struct store_req *r)
{
    struct store_secret *rows;
    int64_t count;
    sqlite3_stmt *s;
    int rc;

    /* Counted first, allocated once: a grown array's realloc would leave
     * copies of the secrets in freed memory. One writer (this thread):
     * the count holds for the read that follows. */
    if (sq_int(st, &count, "SELECT count(*) FROM secrets", "") != 1) {
        return sq_fail(st, r, "secret list");
    }
    if (!(rows = calloc(count > 0 ? (size_t)count : 1, sizeof(*rows)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    if (!(s = sq_prep(st, "SELECT device_id, secret FROM secrets ORDER BY device_id", ""))) {
        free(rows);
        return sq_fail(st, r, "secret list");
    }
    r->u.list.n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && r->u.list.n < (size_t)count) {
        int n = sqlite3_column_bytes(s, 1);
        struct store_secret *x;
        x = &rows[r->u.list.n++];
        memset(x, 0, sizeof(*x));
        sq_col_text(s, 0, x->id, sizeof(x->id));
        x->len = (uint8_t)(n > (int)TCPOTA_SECRET_MAX ? (int)TCPOTA_SECRET_MAX : n);
        memcpy(x->secret, sqlite3_column_blob(s, 1), x->len);
    }
    sqlite3_reset(s);
    r->u.list.rows = rows;
    r->u.list.total = r->u.list.n;
    if (rc != SQLITE_DONE) {
        return rc == SQLITE_ROW ? store_err_set(r, STORE_E_IO, "secret list: more secrets than"
                                                " counted a moment before")
                                : sq_fail(st, r, "secret list");
    }
    return STORE_OK;
}
