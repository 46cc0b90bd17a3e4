/* store_sqlite_ro.c - rollouts in the SQLite store, and their per-wave
 * counters. The rules of rollout.h read the counters on every check-in, so
 * they are kept, not counted: each status change of a device's row moves one
 * unit from its old bucket to its new one in the same transaction. */
#include "store_common.h"
#include "store_sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RO_COLS                                                                              \
    "id, image, model, grp, allow_downgrade, superseded, state, n_waves, pct, n_open,"       \
    " min_finished, success_pct, soak_s, halt_pct, halt_min, created_at, changed_at,"      \
    " base_failed, base_finished"

/* The columns of RO_COLS into out (waves not loaded). */
static void row_to_rollout(sqlite3_stmt *s, struct store_rollout *out)
{
    char hex[2 * TCPOTA_ID_LEN + 1], pct[STORE_PCT_TEXT_MAX];

    memset(out, 0, sizeof(*out));
    out->id = (uint64_t)sqlite3_column_int64(s, 0);
    sq_col_text(s, 1, hex, sizeof(hex));
    (void)store_unhex(hex, out->image_id);
    sq_col_text(s, 2, out->model, sizeof(out->model));
    sq_col_text(s, 3, out->group, sizeof(out->group));
    out->allow_downgrade = sqlite3_column_int(s, 4);
    out->superseded = sqlite3_column_int(s, 5);
    out->ro.state = (enum rollout_state)sqlite3_column_int(s, 6);
    sq_col_text(s, 8, pct, sizeof(pct));
    store_pct_parse(pct, out);
    out->ro.n_open = (uint32_t)sqlite3_column_int64(s, 9);
    out->rules.min_finished = (uint32_t)sqlite3_column_int64(s, 10);
    out->rules.success_pct = (uint32_t)sqlite3_column_int64(s, 11);
    out->rules.soak_s = (uint32_t)sqlite3_column_int64(s, 12);
    out->rules.halt_pct = (uint32_t)sqlite3_column_int64(s, 13);
    out->rules.halt_min = (uint32_t)sqlite3_column_int64(s, 14);
    out->created_at = sqlite3_column_int64(s, 15);
    out->changed_at = sqlite3_column_int64(s, 16);
    out->base_failed = (uint32_t)sqlite3_column_int64(s, 17);
    out->base_finished = (uint32_t)sqlite3_column_int64(s, 18);
}

static int load_waves(struct sstore *st, struct store_req *r, struct store_rollout *out)
{
    sqlite3_stmt *s;
    int rc;

    s = sq_prep(st, "SELECT wave, targeted, offered, downloading, updated, failed, opened_at"
                " FROM rollout_waves WHERE rollout_id = ?1 ORDER BY wave", "i",
                (int64_t)out->id);
    if (!s) {
        return sq_fail(st, r, "rollout waves");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t w = sqlite3_column_int64(s, 0);
        if (w < 0 || w >= (int64_t)ROLLOUT_MAX_WAVES) {
            continue;
        }
        out->waves[w].targeted = (uint32_t)sqlite3_column_int64(s, 1);
        out->waves[w].offered = (uint32_t)sqlite3_column_int64(s, 2);
        out->waves[w].downloading = (uint32_t)sqlite3_column_int64(s, 3);
        out->waves[w].updated = (uint32_t)sqlite3_column_int64(s, 4);
        out->waves[w].failed = (uint32_t)sqlite3_column_int64(s, 5);
        out->waves[w].opened_at = sqlite3_column_int64(s, 6);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "rollout waves");
}

int sq_ro_load(struct sstore *st, struct store_req *r, uint64_t id, struct store_rollout *out)
{
    sqlite3_stmt *s = sq_prep(st, "SELECT " RO_COLS " FROM rollouts WHERE id = ?1", "i",
                              (int64_t)id);
    int rc;

    if (!s) {
        return sq_fail(st, r, "rollout");
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row_to_rollout(s, out);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        return rc == SQLITE_DONE ? 0 : sq_fail(st, r, "rollout");
    }
    rc = load_waves(st, r, out);
    return rc < 0 ? rc : 1;
}

int64_t sq_ro_applicable(struct sstore *st, struct store_req *r, const char *model,
                         const char *group)
{
    int64_t id = 0;
    int rc;

    /* The group's own rollout before the model-wide one; the newest of
     * each. Two lookups on the (model, grp) index rather than one sort:
     * a sort builds a temporary b-tree at every check-in. */
    rc = group[0] ? sq_int(st, &id, "SELECT max(id) FROM rollouts WHERE model = ?1 AND grp = ?2"
                           " AND state <> ?3 AND superseded = 0", "tti", model, group,
                           (int64_t)ROLLOUT_STATE_CANCELLED)
                  : 0;
    if (rc >= 0 && id <= 0) {
        id = 0;
        rc = sq_int(st, &id, "SELECT max(id) FROM rollouts WHERE model = ?1 AND grp = ''"
                    " AND state <> ?2 AND superseded = 0", "ti", model,
                    (int64_t)ROLLOUT_STATE_CANCELLED);
    }
    if (rc < 0) {
        return sq_fail(st, r, "applicable rollout");
    }
    return id > 0 ? id : 0;
}

int sq_ro_ensure(struct sstore *st, struct store_req *r, struct store_rollout *ro,
                 const char *device_id, enum store_ro_status *status)
{
    uint32_t wave;
    int64_t v = 0;
    int rc;

    rc = sq_int(st, &v, "SELECT status FROM rollout_devices WHERE rollout_id = ?1"
                " AND device_id = ?2", "it", (int64_t)ro->id, device_id);
    if (rc != 0) {
        *status = (enum store_ro_status)v;
        return rc < 0 ? sq_fail(st, r, "rollout device") : STORE_OK;
    }
    wave = rollout_wave_of(&ro->ro, rollout_place(ro->id, device_id, strlen(device_id)));
    if (sq_run(st, "INSERT INTO rollout_devices (rollout_id, device_id, wave, status)"
               " VALUES (?1, ?2, ?3, 0)", "iti", (int64_t)ro->id, device_id,
               (int64_t)wave) != SQLITE_DONE) {
        return sq_fail(st, r, "rollout device");
    }
    /* Past the last bound: in no wave, counted nowhere. */
    if (wave < ro->ro.n_waves) {
        if (sq_run(st, "UPDATE rollout_waves SET targeted = targeted + 1"
                   " WHERE rollout_id = ?1 AND wave = ?2", "ii", (int64_t)ro->id,
                   (int64_t)wave) != SQLITE_DONE) {
            return sq_fail(st, r, "rollout wave");
        }
        ro->waves[wave].targeted++;
    }
    *status = STORE_RO_TARGETED;
    return STORE_OK;
}

/* The row of a device a rollout never saw (it checked in before the
 * rollout, with another model or group): added, then moved. */
static int ensure_by_id(struct sstore *st, struct store_req *r, uint64_t rollout_id,
                        const char *device_id)
{
    struct store_rollout *ro = malloc(sizeof(*ro));
    enum store_ro_status status;
    int rc;

    if (!ro) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = sq_ro_load(st, r, rollout_id, ro);
    if (rc == 0) {
        rc = store_err_set(r, STORE_E_NOTFOUND, "no rollout %llu", (unsigned long long)rollout_id);
    } else if (rc > 0) {
        rc = sq_ro_ensure(st, r, ro, device_id, &status);
    }
    free(ro);
    return rc;
}

int sq_ro_set_status(struct sstore *st, struct store_req *r, uint64_t rollout_id,
                     const char *device_id, enum store_ro_status status)
{
    sqlite3_stmt *s;
    int64_t wave, old, final = 0;
    int rc;

    /* A step of a transfer a cancel spared, or one queued before it,
     * changes nothing there; nor, for most devices, one of a superseded
     * rollout (STORE_RO_FINAL_SQL). */
    if (sq_int(st, &final, STORE_RO_FINAL_SQL("?1", "?2", "?3"), "iit", (int64_t)rollout_id,
               (int64_t)ROLLOUT_STATE_CANCELLED, device_id) < 0) {
        return sq_fail(st, r, "rollout state");
    }
    if (final) {
        return STORE_OK;
    }
    s = sq_prep(st, "SELECT wave, status FROM rollout_devices WHERE rollout_id = ?1"
                " AND device_id = ?2", "it", (int64_t)rollout_id, device_id);
    if (!s) {
        return sq_fail(st, r, "rollout device");
    }
    rc = sqlite3_step(s);
    wave = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    old = rc == SQLITE_ROW ? sqlite3_column_int64(s, 1) : STORE_RO_TARGETED;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) {
        rc = ensure_by_id(st, r, rollout_id, device_id);
        return rc < 0 ? rc : sq_ro_set_status(st, r, rollout_id, device_id, status);
    }
    if (rc != SQLITE_ROW) {
        return sq_fail(st, r, "rollout device");
    }
    /* A late "offered" or "downloading" (a retry, a resume) does not undo a
     * finished device: its success or failure is what the rules count. */
    if (old == (int64_t)status || ((old == STORE_RO_UPDATED || old == STORE_RO_FAILED) &&
                                   status != STORE_RO_UPDATED && status != STORE_RO_FAILED)) {
        return STORE_OK;
    }
    if (sq_run(st, "UPDATE rollout_devices SET status = ?3 WHERE rollout_id = ?1"
               " AND device_id = ?2", "iti", (int64_t)rollout_id, device_id,
               (int64_t)status) != SQLITE_DONE ||
        sq_run(st, "UPDATE rollout_waves SET offered = offered + (?3 = 1) - (?4 = 1),"
               " downloading = downloading + (?3 = 2) - (?4 = 2),"
               " updated = updated + (?3 = 3) - (?4 = 3), failed = failed + (?3 = 4) - (?4 = 4)"
               " WHERE rollout_id = ?1 AND wave = ?2", "iiii", (int64_t)rollout_id, wave,
               (int64_t)status, old) != SQLITE_DONE) {
        return sq_fail(st, r, "rollout counters");
    }
    return STORE_OK;
}

int sq_ro_leave(struct sstore *st, struct store_req *r, const char *dev, const char *model,
                const char *group, int64_t keep)
{
    sqlite3_stmt *s;
    int rc;

    /* RETURNING's rows are computed at the first step, so the counters can
     * be written while they are read. */
    s = dev ? sq_prep(st, "DELETE FROM rollout_devices WHERE device_id = ?1 AND rollout_id <> ?3"
                      " AND status < ?4 AND rollout_id IN (SELECT id FROM rollouts WHERE"
                      " superseded = 0 AND state <> ?5) RETURNING rollout_id, wave, status",
                      "ttiii", dev, "", keep, (int64_t)STORE_RO_UPDATED,
                      (int64_t)ROLLOUT_STATE_CANCELLED)
            : sq_prep(st, "DELETE FROM rollout_devices WHERE rollout_id <> ?3 AND status < ?4"
                      " AND rollout_id IN (SELECT id FROM rollouts WHERE model = ?1 AND"
                      " superseded = 0 AND state <> ?5) AND device_id IN (SELECT id FROM"
                      " devices WHERE model = ?1 AND grp = ?2) RETURNING rollout_id, wave,"
                      " status", "ttiii", model, group, keep, (int64_t)STORE_RO_UPDATED,
                      (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!s) {
        return sq_fail(st, r, "rollout leave");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        /* A row past the last wave has no counters: the UPDATE finds none. */
        if (sq_run(st, "UPDATE rollout_waves SET targeted = targeted - 1,"
                   " offered = offered - (?3 = 1), downloading = downloading - (?3 = 2)"
                   " WHERE rollout_id = ?1 AND wave = ?2", "iii", sqlite3_column_int64(s, 0),
                   sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)) != SQLITE_DONE) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "rollout leave");
}

/* ---- create ---- */

static int check_create(struct sstore *st, struct store_req *r, char *hex)
{
    struct store_image *img;
    int rc;

    if ((rc = store_rollout_create_check(r)) < 0) {
        return rc;
    }
    store_hex(r->u.rollout.r->image_id, hex);
    if (!(img = malloc(sizeof(*img)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = sq_img_load(st, r, hex, img);
    if (rc >= 0) {
        rc = store_rollout_image_check(r, rc > 0, img, hex);
    }
    free(img);
    return rc < 0 ? rc : STORE_OK;
}

static int insert_rollout(struct sstore *st, struct store_req *r, const char *hex, int64_t *id)
{
    const struct store_rollout *in = r->u.rollout.r;
    char pct[STORE_PCT_TEXT_MAX];
    uint32_t k;

    store_pct_text(in->pct, in->ro.n_waves, pct);
    if (sq_run(st, "INSERT INTO rollouts (image, model, grp, allow_downgrade, superseded, state,"
               " n_waves, pct, n_open, min_finished, success_pct, soak_s, halt_pct, halt_min,"
               " created_at, changed_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, 1, ?8, ?9, ?10,"
               " ?11, ?12, ?13, ?13)", "tttiiitiiiiii", hex, in->model, in->group,
               (int64_t)(in->allow_downgrade != 0), (int64_t)ROLLOUT_STATE_ACTIVE,
               (int64_t)in->ro.n_waves, pct, (int64_t)in->rules.min_finished,
               (int64_t)in->rules.success_pct, (int64_t)in->rules.soak_s,
               (int64_t)in->rules.halt_pct, (int64_t)in->rules.halt_min,
               r->now) != SQLITE_DONE) {
        return sq_fail(st, r, "rollout create");
    }
    *id = sqlite3_last_insert_rowid(st->db);
    {
        /* The one it supersedes (at most one is not superseded), for the
         * answer: an operator is told. A cancelled one applied to nothing
         * any more; it is marked below all the same, but not named. */
        int64_t old = 0;
        if (sq_int(st, &old, "SELECT id FROM rollouts WHERE model = ?1 AND grp = ?2 AND id <> ?3"
                   " AND superseded = 0 AND state <> ?4 ORDER BY id DESC LIMIT 1", "ttii",
                   in->model, in->group, *id, (int64_t)ROLLOUT_STATE_CANCELLED) < 0) {
            return sq_fail(st, r, "rollout supersede");
        }
        r->u.rollout.superseded = old > 0 ? (uint64_t)old : 0;
    }
    if (sq_run(st, "UPDATE rollouts SET superseded = 1, changed_at = ?3 WHERE model = ?1"
               " AND grp = ?2 AND id <> ?4 AND superseded = 0", "ttii", in->model, in->group,
               r->now, *id) != SQLITE_DONE) {
        return sq_fail(st, r, "rollout supersede");
    }
    for (k = 0; k < in->ro.n_waves; k++) {
        if (sq_run(st, "INSERT INTO rollout_waves (rollout_id, wave, opened_at)"
                   " VALUES (?1, ?2, ?3)", "iii", *id, (int64_t)k,
                   k == 0 ? r->now : (int64_t)0) != SQLITE_DONE) {
            return sq_fail(st, r, "rollout waves");
        }
    }
    return STORE_OK;
}

/* Every registered device of the rollout's model (and group) gets its row;
 * counted in C and written once per wave, so a million devices cost a
 * million inserts and no counter updates. */
static int target_devices(struct sstore *st, struct store_req *r, int64_t id)
{
    const struct store_rollout *in = r->u.rollout.r;
    uint32_t count[ROLLOUT_MAX_WAVES + 1] = {0};
    sqlite3_stmt *s;
    uint32_t k;
    int rc;

    /* A model-wide rollout leaves out the devices of groups that have their
     * own: it does not apply to them (sq_ro_applicable). */
    s = in->group[0] ? sq_prep(st, "SELECT id FROM devices WHERE model = ?1 AND grp = ?2", "tt",
                               in->model, in->group)
                     : sq_prep(st, "SELECT id FROM devices WHERE model = ?1 AND grp NOT IN"
                               " (SELECT grp FROM rollouts WHERE model = ?1 AND grp <> ''"
                               " AND superseded = 0 AND state <> ?2)", "ti", in->model,
                               (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!s) {
        return sq_fail(st, r, "rollout targets");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *dev = (const char *)sqlite3_column_text(s, 0);
        uint32_t wave = rollout_wave_of(&in->ro, rollout_place((uint64_t)id, dev, strlen(dev)));
        if (sq_run(st, "INSERT INTO rollout_devices (rollout_id, device_id, wave, status)"
                   " VALUES (?1, ?2, ?3, 0)", "iti", id, dev, (int64_t)wave) != SQLITE_DONE) {
            rc = SQLITE_ERROR;
            break;
        }
        count[wave]++;
    }
    sqlite3_reset(s);
    for (k = 0; rc == SQLITE_DONE && k < in->ro.n_waves; k++) {
        if (sq_run(st, "UPDATE rollout_waves SET targeted = ?3 WHERE rollout_id = ?1"
                   " AND wave = ?2", "iii", id, (int64_t)k, (int64_t)count[k]) != SQLITE_DONE) {
            rc = SQLITE_ERROR;
        }
    }
    if (rc != SQLITE_DONE) {
        return sq_fail(st, r, "rollout targets");
    }
    /* A group's rollout takes its devices over from the model-wide one:
     * those that have not finished there leave it. */
    return in->group[0] ? sq_ro_leave(st, r, NULL, in->model, in->group, id) : STORE_OK;
}

int sq_op_rollout_create(struct sstore *st, struct store_req *r)
{
    char hex[2 * TCPOTA_ID_LEN + 1];
    int64_t id = 0;
    int rc;

    if ((rc = check_create(st, r, hex)) < 0 || (rc = insert_rollout(st, r, hex, &id)) < 0 ||
        (rc = target_devices(st, r, id)) < 0) {
        return rc;
    }
    rc = sq_ro_load(st, r, (uint64_t)id, r->u.rollout.r);
    r->u.rollout.id = (uint64_t)id;
    return rc < 0 ? rc : STORE_OK;
}

/* ---- list, get, set ---- */

int sq_op_rollout_list(struct sstore *st, struct store_req *r)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX, cap = 0;
    struct store_rollout *rows = NULL, *grown;
    sqlite3_stmt *s;
    int rc = SQLITE_DONE;

    s = sq_prep(st, "SELECT " RO_COLS " FROM rollouts ORDER BY id DESC LIMIT ?1", "i",
                (int64_t)limit);
    if (!s) {
        return sq_fail(st, r, "rollout list");
    }
    r->u.list.n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(grown = store_grow(rows, &cap, r->u.list.n, sizeof(*rows)))) {
            break;
        }
        rows = grown;
        row_to_rollout(s, &rows[r->u.list.n++]);
    }
    sqlite3_reset(s);
    r->u.list.rows = rows;
    if (rc != SQLITE_DONE) {
        return rc == SQLITE_ROW ? store_err_set(r, STORE_E_IO, "out of memory")
                                : sq_fail(st, r, "rollout list");
    }
    for (cap = 0; cap < r->u.list.n; cap++) {
        if ((rc = load_waves(st, r, &rows[cap])) < 0) {
            return rc;
        }
    }
    r->u.list.total = r->u.list.n;
    return STORE_OK;
}

int sq_op_rollout_get(struct sstore *st, struct store_req *r)
{
    int rc = sq_ro_load(st, r, r->u.rollout.id, r->u.rollout.r);

    if (rc == 0) {
        return store_err_set(r, STORE_E_NOTFOUND, "no rollout %llu",
                      (unsigned long long)r->u.rollout.id);
    }
    return rc < 0 ? rc : STORE_OK;
}

int sq_op_rollout_set(struct sstore *st, struct store_req *r)
{
    uint64_t id = r->u.rollout.id;
    uint32_t from = r->u.rollout.expect_n_open, to = r->u.rollout.new_n_open;
    int rc;

    if ((rc = sq_op_rollout_get(st, r)) < 0) {
        return rc;
    }
    if ((rc = store_rollout_set_check(r)) < 0) {
        return rc;
    }
    if (sq_run(st, "UPDATE rollouts SET state = ?1, n_open = ?2, changed_at = ?3 WHERE id = ?4"
               " AND state = ?5 AND n_open = ?6 AND (?7 = 0 OR (base_failed = ?8 AND"
               " base_finished = ?9))", "iiiiiiiii", (int64_t)r->u.rollout.new_state,
               (int64_t)to, r->now, (int64_t)id, (int64_t)r->u.rollout.expect_state,
               (int64_t)from, (int64_t)r->u.rollout.expect_base,
               (int64_t)r->u.rollout.base_failed, (int64_t)r->u.rollout.base_finished) !=
        SQLITE_DONE) {
        return sq_fail(st, r, "rollout set");
    }
    if (sqlite3_changes(st->db) == 0) {
        return store_rollout_set_conflict(r);
    }
    /* Resumed after a halt: the halt rule counts from here (else the very
     * failures that halted it would halt it again at the next check-in). */
    if (r->u.rollout.expect_state == ROLLOUT_STATE_HALTED &&
        r->u.rollout.new_state == ROLLOUT_STATE_ACTIVE &&
        sq_run(st, "UPDATE rollouts SET base_failed = (SELECT sum(failed) FROM rollout_waves"
               " WHERE rollout_id = ?1), base_finished = (SELECT sum(failed + updated) FROM"
               " rollout_waves WHERE rollout_id = ?1) WHERE id = ?1", "i", (int64_t)id) !=
            SQLITE_DONE) {
        return sq_fail(st, r, "rollout set");
    }
    if (to > from && sq_run(st, "UPDATE rollout_waves SET opened_at = ?1 WHERE rollout_id = ?2"
                            " AND wave >= ?3 AND wave < ?4", "iiii", r->now, (int64_t)id,
                            (int64_t)from, (int64_t)to) != SQLITE_DONE) {
        return sq_fail(st, r, "rollout set");
    }
    return sq_op_rollout_get(st, r);
}
