/* store_pg_ro.c - rollouts in the PostgreSQL store, and their per-wave
 * counters: store_sqlite_ro.c's rules, safe when several nodes move the
 * counters at once. A device's row in a rollout is read FOR UPDATE before
 * its status moves (two nodes cannot both move it from the same old
 * status), counters move by relative UPDATEs, and the compare-and-set of a
 * rollout's state is one conditional UPDATE: under READ COMMITTED a second
 * writer waits for the first, then finds the row changed and matches
 * nothing, so exactly one node opens a wave or halts. */
#include "store_common.h"
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RO_COLS                                                                              \
    "id, image, model, grp, allow_downgrade, superseded, state, n_waves, pct, n_open,"       \
    " min_finished, success_pct, soak_s, halt_pct, halt_min, created_at, changed_at,"      \
    " base_failed, base_finished"

static void row_to_rollout(const PGresult *res, int i, struct store_rollout *out)
{
    char hex[2 * TCPOTA_ID_LEN + 1], pct[STORE_PCT_TEXT_MAX];

    memset(out, 0, sizeof(*out));
    out->id = (uint64_t)pg_col_i64(res, i, 0);
    pg_col_text(res, i, 1, hex, sizeof(hex));
    (void)store_unhex(hex, out->image_id);
    pg_col_text(res, i, 2, out->model, sizeof(out->model));
    pg_col_text(res, i, 3, out->group, sizeof(out->group));
    out->allow_downgrade = (int)pg_col_i64(res, i, 4);
    out->superseded = (int)pg_col_i64(res, i, 5);
    out->ro.state = (enum rollout_state)pg_col_i64(res, i, 6);
    pg_col_text(res, i, 8, pct, sizeof(pct));
    store_pct_parse(pct, out);
    out->ro.n_open = (uint32_t)pg_col_i64(res, i, 9);
    out->rules.min_finished = (uint32_t)pg_col_i64(res, i, 10);
    out->rules.success_pct = (uint32_t)pg_col_i64(res, i, 11);
    out->rules.soak_s = (uint32_t)pg_col_i64(res, i, 12);
    out->rules.halt_pct = (uint32_t)pg_col_i64(res, i, 13);
    out->rules.halt_min = (uint32_t)pg_col_i64(res, i, 14);
    out->created_at = pg_col_i64(res, i, 15);
    out->changed_at = pg_col_i64(res, i, 16);
    out->base_failed = (uint32_t)pg_col_i64(res, i, 17);
    out->base_finished = (uint32_t)pg_col_i64(res, i, 18);
}

/* ---- wave counters, written at the transaction's end ---- */

static int wave_write(struct pgstore *st, struct store_req *r, const struct pg_wave_delta *w)
{
    return pg_run(st, r, "rollout counters", "UPDATE rollout_waves SET targeted = targeted + $3,"
                  " offered = offered + $4, downloading = downloading + $5,"
                  " updated = updated + $6, failed = failed + $7 WHERE rollout_id = $1 AND"
                  " wave = $2", "iiiiiii", (int64_t)w->rollout_id, (int64_t)w->wave,
                  (int64_t)w->d[PG_WD_TARGETED], (int64_t)w->d[PG_WD_OFFERED],
                  (int64_t)w->d[PG_WD_DOWNLOADING], (int64_t)w->d[PG_WD_UPDATED],
                  (int64_t)w->d[PG_WD_FAILED]);
}

/* Adds d to the wave's pending changes; with no room left (a list touching
 * more than PG_WAVE_DELTAS waves) it is written at once, as before. */
static int wave_add(struct pgstore *st, struct store_req *r, uint64_t rollout_id, uint32_t wave,
                    const int32_t d[PG_WD_N])
{
    struct pg_wave_delta *w = NULL;
    size_t i;

    for (i = 0; i < st->nwd && !w; i++) {
        if (st->wd[i].rollout_id == rollout_id && st->wd[i].wave == wave) {
            w = &st->wd[i];
        }
    }
    if (!w && st->nwd == PG_WAVE_DELTAS) {
        struct pg_wave_delta now = {rollout_id, wave, {0}};
        memcpy(now.d, d, sizeof(now.d));
        return wave_write(st, r, &now) < 0 ? r->rc : STORE_OK;
    }
    if (!w) {
        w = &st->wd[st->nwd++];
        memset(w, 0, sizeof(*w));
        w->rollout_id = rollout_id;
        w->wave = wave;
    }
    for (i = 0; i < PG_WD_N; i++) {
        w->d[i] += d[i];
    }
    return STORE_OK;
}

static int wave_cmp(const void *a, const void *b)
{
    const struct pg_wave_delta *x = a, *y = b;

    if (x->rollout_id != y->rollout_id) return x->rollout_id < y->rollout_id ? -1 : 1;
    return x->wave < y->wave ? -1 : x->wave > y->wave;
}

int pg_waves_flush(struct pgstore *st, struct store_req *r)
{
    size_t i, n = st->nwd;

    st->nwd = 0;
    qsort(st->wd, n, sizeof(st->wd[0]), wave_cmp);
    for (i = 0; i < n; i++) {
        const int32_t *d = st->wd[i].d;
        if ((d[0] || d[1] || d[2] || d[3] || d[4]) && wave_write(st, r, &st->wd[i]) < 0) {
            return r->rc;
        }
    }
    return STORE_OK;
}

/* A wave's counters as this transaction sees them: the rows, and what it
 * changed and has not written yet. */
static void add_pending(const struct pgstore *st, struct store_rollout *out)
{
    size_t i;

    for (i = 0; i < st->nwd; i++) {
        const struct pg_wave_delta *w = &st->wd[i];
        if (w->rollout_id != out->id || w->wave >= ROLLOUT_MAX_WAVES) {
            continue;
        }
        out->waves[w->wave].targeted += (uint32_t)w->d[PG_WD_TARGETED];
        out->waves[w->wave].offered += (uint32_t)w->d[PG_WD_OFFERED];
        out->waves[w->wave].downloading += (uint32_t)w->d[PG_WD_DOWNLOADING];
        out->waves[w->wave].updated += (uint32_t)w->d[PG_WD_UPDATED];
        out->waves[w->wave].failed += (uint32_t)w->d[PG_WD_FAILED];
    }
}

static int load_waves(struct pgstore *st, struct store_req *r, struct store_rollout *out)
{
    PGresult *res;
    int i, n;

    res = pg_q(st, r, "rollout waves", "SELECT wave, targeted, offered, downloading, updated,"
               " failed, opened_at FROM rollout_waves WHERE rollout_id = $1 ORDER BY wave", "i",
               (int64_t)out->id);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        int64_t w = pg_col_i64(res, i, 0);
        if (w < 0 || w >= (int64_t)ROLLOUT_MAX_WAVES) {
            continue;
        }
        out->waves[w].targeted = (uint32_t)pg_col_i64(res, i, 1);
        out->waves[w].offered = (uint32_t)pg_col_i64(res, i, 2);
        out->waves[w].downloading = (uint32_t)pg_col_i64(res, i, 3);
        out->waves[w].updated = (uint32_t)pg_col_i64(res, i, 4);
        out->waves[w].failed = (uint32_t)pg_col_i64(res, i, 5);
        out->waves[w].opened_at = pg_col_i64(res, i, 6);
    }
    PQclear(res);
    add_pending(st, out);
    return STORE_OK;
}

int pg_ro_load(struct pgstore *st, struct store_req *r, uint64_t id, struct store_rollout *out)
{
    PGresult *res = pg_q(st, r, "rollout", "SELECT " RO_COLS " FROM rollouts WHERE id = $1",
                         "i", (int64_t)id);
    int found, rc;

    if (!res) {
        return r->rc;
    }
    if ((found = PQntuples(res) > 0)) {
        row_to_rollout(res, 0, out);
    }
    PQclear(res);
    if (!found) {
        return 0;
    }
    rc = load_waves(st, r, out);
    return rc < 0 ? rc : 1;
}

int64_t pg_ro_applicable(struct pgstore *st, struct store_req *r, const char *model,
                         const char *group)
{
    int64_t id = 0;
    int rc;

    /* The group's own rollout before the model-wide one; the newest of each. */
    rc = pg_int(st, r, "applicable rollout", &id, "SELECT max(id) FROM rollouts WHERE"
                " model = $1 AND grp = $2 AND state <> $3 AND superseded = 0", "tti", model,
                group, (int64_t)ROLLOUT_STATE_CANCELLED);
    if (rc >= 0 && group[0] && id <= 0) {
        id = 0;
        rc = pg_int(st, r, "applicable rollout", &id, "SELECT max(id) FROM rollouts WHERE"
                    " model = $1 AND grp = $2 AND state <> $3 AND superseded = 0", "tti", model,
                    "", (int64_t)ROLLOUT_STATE_CANCELLED);
    }
    if (rc < 0) {
        return rc;
    }
    return id > 0 ? id : 0;
}

int pg_ro_ensure(struct pgstore *st, struct store_req *r, struct store_rollout *ro,
                 const char *device_id, enum store_ro_status *status)
{
    uint32_t wave;
    int64_t v = 0;
    int rc;

    rc = pg_int(st, r, "rollout device", &v, "SELECT status FROM rollout_devices WHERE"
                " rollout_id = $1 AND device_id = $2", "it", (int64_t)ro->id, device_id);
    if (rc != 0) {
        *status = (enum store_ro_status)v;
        return rc < 0 ? rc : STORE_OK;
    }
    wave = rollout_wave_of(&ro->ro, rollout_place(ro->id, device_id, strlen(device_id)));
    /* Another node may add it at the same moment: the one that inserts counts it. */
    if ((rc = pg_run(st, r, "rollout device", "INSERT INTO rollout_devices (rollout_id,"
                     " device_id, wave, status) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                     "iti", (int64_t)ro->id, device_id, (int64_t)wave)) < 0) {
        return rc;
    }
    if (st->changes == 1 && wave < ro->ro.n_waves) {
        static const int32_t one[PG_WD_N] = {[PG_WD_TARGETED] = 1};
        if ((rc = wave_add(st, r, ro->id, wave, one)) < 0) {
            return rc;
        }
        ro->waves[wave].targeted++;
    }
    *status = STORE_RO_TARGETED;
    return STORE_OK;
}

/* The row of a device a rollout never saw: added, then moved. */
static int ensure_by_id(struct pgstore *st, struct store_req *r, uint64_t rollout_id,
                        const char *device_id)
{
    struct store_rollout *ro = malloc(sizeof(*ro));
    enum store_ro_status status;
    int rc;

    if (!ro) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = pg_ro_load(st, r, rollout_id, ro);
    if (rc == 0) {
        rc = store_err_set(r, STORE_E_NOTFOUND, "no rollout %llu",
                           (unsigned long long)rollout_id);
    } else if (rc > 0) {
        rc = pg_ro_ensure(st, r, ro, device_id, &status);
    }
    free(ro);
    return rc;
}

int pg_ro_set_status(struct pgstore *st, struct store_req *r, uint64_t rollout_id,
                     const char *device_id, enum store_ro_status status)
{
    int64_t wave, old, final = 0;
    PGresult *res;
    int rc, found;

    /* Counts that are final (STORE_RO_FINAL_SQL). */
    if ((rc = pg_int(st, r, "rollout state", &final, STORE_RO_FINAL_SQL("$1", "$2", "$3"), "iit",
                     (int64_t)rollout_id, (int64_t)ROLLOUT_STATE_CANCELLED, device_id)) < 0) {
        return rc;
    }
    if (final) {
        return STORE_OK;
    }
    res = pg_q(st, r, "rollout device", "SELECT wave, status FROM rollout_devices WHERE"
               " rollout_id = $1 AND device_id = $2 FOR UPDATE", "it", (int64_t)rollout_id,
               device_id);
    if (!res) {
        return r->rc;
    }
    found = PQntuples(res) > 0;
    wave = found ? pg_col_i64(res, 0, 0) : 0;
    old = found ? pg_col_i64(res, 0, 1) : STORE_RO_TARGETED;
    PQclear(res);
    if (!found) {
        rc = ensure_by_id(st, r, rollout_id, device_id);
        return rc < 0 ? rc : pg_ro_set_status(st, r, rollout_id, device_id, status);
    }
    /* A late "offered" or "downloading" does not undo a finished device. */
    if (old == (int64_t)status || ((old == STORE_RO_UPDATED || old == STORE_RO_FAILED) &&
                                   status != STORE_RO_UPDATED && status != STORE_RO_FAILED)) {
        return STORE_OK;
    }
    if ((rc = pg_run(st, r, "rollout device", "UPDATE rollout_devices SET status = $3 WHERE"
                     " rollout_id = $1 AND device_id = $2", "iti", (int64_t)rollout_id,
                     device_id, (int64_t)status)) < 0) {
        return rc;
    }
    {
        int32_t d[PG_WD_N] = {0};
        d[PG_WD_OFFERED] = (status == STORE_RO_OFFERED) - (old == STORE_RO_OFFERED);
        d[PG_WD_DOWNLOADING] = (status == STORE_RO_DOWNLOADING) - (old == STORE_RO_DOWNLOADING);
        d[PG_WD_UPDATED] = (status == STORE_RO_UPDATED) - (old == STORE_RO_UPDATED);
        d[PG_WD_FAILED] = (status == STORE_RO_FAILED) - (old == STORE_RO_FAILED);
        return wave_add(st, r, rollout_id, (uint32_t)wave, d);
    }
}

int pg_ro_leave(struct pgstore *st, struct store_req *r, const char *dev, const char *model,
                const char *group, int64_t keep)
{
    PGresult *res;
    int i;

#define LEAVE_COUNTED " RETURNING rollout_id, wave, status) SELECT g.rollout_id, g.wave," \
                      " g.status, count(*) FROM gone g JOIN rollouts ro ON ro.id ="         \
                      " g.rollout_id WHERE g.wave < ro.n_waves GROUP BY 1, 2, 3"
    res = dev ? pg_q(st, r, "rollout leave", "WITH gone AS (DELETE FROM rollout_devices WHERE"
                     " device_id = $1 AND rollout_id <> $2 AND status < $3 AND rollout_id IN"
                     " (SELECT id FROM rollouts WHERE superseded = 0 AND state <> $4)"
                     LEAVE_COUNTED, "tiii", dev, keep, (int64_t)STORE_RO_UPDATED,
                     (int64_t)ROLLOUT_STATE_CANCELLED)
              : pg_q(st, r, "rollout leave", "WITH gone AS (DELETE FROM rollout_devices WHERE"
                     " rollout_id <> $3 AND status < $4 AND rollout_id IN (SELECT id FROM"
                     " rollouts WHERE model = $1 AND superseded = 0 AND state <> $5) AND"
                     " device_id IN (SELECT id FROM devices WHERE model = $1 AND grp = $2)"
                     LEAVE_COUNTED, "ttiii", model, group, keep, (int64_t)STORE_RO_UPDATED,
                     (int64_t)ROLLOUT_STATE_CANCELLED);
#undef LEAVE_COUNTED
    if (!res) {
        return r->rc;
    }
    for (i = 0; i < PQntuples(res); i++) {
        int64_t status = pg_col_i64(res, i, 2);
        int32_t n = (int32_t)pg_col_i64(res, i, 3), d[PG_WD_N] = {0};
        d[PG_WD_TARGETED] = -n;
        d[PG_WD_OFFERED] = status == STORE_RO_OFFERED ? -n : 0;
        d[PG_WD_DOWNLOADING] = status == STORE_RO_DOWNLOADING ? -n : 0;
        if (wave_add(st, r, (uint64_t)pg_col_i64(res, i, 0), (uint32_t)pg_col_i64(res, i, 1),
                     d) < 0) {
            PQclear(res);
            return r->rc;
        }
    }
    PQclear(res);
    return STORE_OK;
}

/* ---- create ---- */

static int check_create(struct pgstore *st, struct store_req *r, char *hex)
{
    struct store_image *img;
    int rc;

    if ((rc = store_rollout_create_check(r)) < 0) {
        return rc;
    }
    store_hex(r->u.rollout.r->image_id, hex);
    /* Creates and removals of one image take turns across nodes, then
     * creates of one model (PG_IMAGE_USE_LOCK, PG_ROLLOUT_LOCK: to the
     * commit, always in this order): two creates at once each marked the
     * older rollouts superseded without seeing the other's, uncommitted,
     * and both stayed active (a trial). */
    if (pg_lock_xact(st, r, "rollout create", PG_IMAGE_USE_LOCK, hex) < 0 ||
        pg_lock_xact(st, r, "rollout create", PG_ROLLOUT_LOCK, r->u.rollout.r->model) < 0) {
        return r->rc;
    }
    if (!(img = malloc(sizeof(*img)))) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    rc = pg_img_load(st, r, hex, img);
    if (rc >= 0) {
        rc = store_rollout_image_check(r, rc > 0, img, hex);
    }
    free(img);
    return rc < 0 ? rc : STORE_OK;
}

static int insert_rollout(struct pgstore *st, struct store_req *r, const char *hex, int64_t *id)
{
    const struct store_rollout *in = r->u.rollout.r;
    char pct[STORE_PCT_TEXT_MAX];
    uint32_t k;
    int rc;

    store_pct_text(in->pct, in->ro.n_waves, pct);
    rc = pg_int(st, r, "rollout create", id, "INSERT INTO rollouts (image, model, grp,"
                " allow_downgrade, superseded, state, n_waves, pct, n_open, min_finished,"
                " success_pct, soak_s, halt_pct, halt_min, created_at, changed_at) VALUES ($1, $2,"
                " $3, $4, 0, $5, $6, $7, 1, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
                "tttiiitiiiiii", hex, in->model, in->group, (int64_t)(in->allow_downgrade != 0),
                (int64_t)ROLLOUT_STATE_ACTIVE, (int64_t)in->ro.n_waves, pct,
                (int64_t)in->rules.min_finished, (int64_t)in->rules.success_pct,
                (int64_t)in->rules.soak_s, (int64_t)in->rules.halt_pct,
                (int64_t)in->rules.halt_min, r->now);
    if (rc <= 0) {
        return rc < 0 ? rc : store_err_set(r, STORE_E_IO, "rollout create: no id returned");
    }
    {
        /* The one it supersedes (at most one is not superseded), for the
         * answer: an operator is told. A cancelled one applied to nothing
         * any more; it is marked below all the same, but not named. */
        int64_t old = 0;
        if ((rc = pg_int(st, r, "rollout supersede", &old, "SELECT id FROM rollouts WHERE"
                         " model = $1 AND grp = $2 AND id <> $3 AND superseded = 0"
                         " AND state <> $4 ORDER BY id DESC LIMIT 1", "ttii", in->model,
                         in->group, *id, (int64_t)ROLLOUT_STATE_CANCELLED)) < 0) {
            return rc;
        }
        r->u.rollout.superseded = rc > 0 && old > 0 ? (uint64_t)old : 0;
    }
    if ((rc = pg_run(st, r, "rollout supersede", "UPDATE rollouts SET superseded = 1,"
                     " changed_at = $3 WHERE model = $1 AND grp = $2 AND id <> $4"
                     " AND superseded = 0", "ttii", in->model, in->group, r->now, *id)) < 0) {
        return rc;
    }
    for (k = 0; k < in->ro.n_waves; k++) {
        if ((rc = pg_run(st, r, "rollout waves", "INSERT INTO rollout_waves (rollout_id, wave,"
                         " opened_at) VALUES ($1, $2, $3)", "iii", *id, (int64_t)k,
                         k == 0 ? r->now : (int64_t)0)) < 0) {
            return rc;
        }
    }
    return STORE_OK;
}

/* Devices a rollout's rows are inserted for in one statement: one round
 * trip per this many, not one per device; a statement's arrays stay a few
 * hundred KiB. */
#define RO_TARGETS_BATCH 4096

/* Two PostgreSQL array literals being built: device ids and their waves. */
struct targets {
    struct pg_array ids, waves;
};

/* Adds a device and its wave as the next elements. */
static int targets_add(struct targets *t, const char *dev, uint32_t wave)
{
    char num[16];

    snprintf(num, sizeof(num), "%u", (unsigned)wave);
    return pg_array_add(&t->ids, dev) != 0 || pg_array_add(&t->waves, num) != 0 ? -1 : 0;
}

/* Inserts the rows t holds (one round trip) and counts the new ones per
 * wave into count[]; t is emptied. */
static int targets_flush(struct pgstore *st, struct store_req *r, int64_t id, struct targets *t,
                         uint32_t *count)
{
    const char *ids, *waves;
    PGresult *res;
    int i;

    if (t->ids.n == 0) {
        return STORE_OK;
    }
    ids = pg_array_end(&t->ids);
    waves = pg_array_end(&t->waves);
    if (!ids || !waves) {
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    res = pg_q(st, r, "rollout targets", "WITH ins AS (INSERT INTO rollout_devices (rollout_id,"
               " device_id, wave, status) SELECT $1, d, w, 0 FROM unnest($2::text[], $3::int[])"
               " AS t(d, w) ON CONFLICT DO NOTHING RETURNING wave)"
               " SELECT wave, count(*) FROM ins GROUP BY wave", "itt", id, ids, waves);
    if (!res) {
        return r->rc;
    }
    for (i = 0; i < PQntuples(res); i++) {
        int64_t wave = pg_col_i64(res, i, 0);
        if (wave >= 0 && wave <= ROLLOUT_MAX_WAVES) {
            count[wave] += (uint32_t)pg_col_i64(res, i, 1);
        }
    }
    PQclear(res);
    return STORE_OK;
}

/* Every registered device of the rollout's model (and group) gets its row,
 * RO_TARGETS_BATCH to a statement, counted and written once per wave (as
 * store_sqlite_ro.c). */
static int target_devices(struct pgstore *st, struct store_req *r, int64_t id)
{
    const struct store_rollout *in = r->u.rollout.r;
    uint32_t count[ROLLOUT_MAX_WAVES + 1] = {0};
    struct targets t = {0};
    PGresult *res;
    uint32_t k;
    int i, n, rc = STORE_OK;

    /* A model-wide rollout leaves out the devices of groups that have their
     * own: it does not apply to them (pg_ro_applicable). */
    res = pg_q(st, r, "rollout targets", "SELECT id FROM devices WHERE model = $1"
               " AND ($2 = '' OR grp = $2) AND ($2 <> '' OR grp NOT IN (SELECT grp FROM"
               " rollouts WHERE model = $1 AND grp <> '' AND superseded = 0 AND state <> $3))",
               "tti", in->model, in->group, (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    for (i = 0; i < n && rc == STORE_OK; i++) {
        const char *dev = PQgetvalue(res, i, 0);
        uint32_t wave = rollout_wave_of(&in->ro, rollout_place((uint64_t)id, dev, strlen(dev)));
        if (targets_add(&t, dev, wave) != 0) {
            rc = store_err_set(r, STORE_E_IO, "out of memory");
        } else if (t.ids.n == RO_TARGETS_BATCH || i == n - 1) {
            rc = targets_flush(st, r, id, &t, count);
        }
    }
    PQclear(res);
    pg_array_free(&t.ids);
    pg_array_free(&t.waves);
    for (k = 0; rc == STORE_OK && k < in->ro.n_waves; k++) {
        rc = pg_run(st, r, "rollout targets", "UPDATE rollout_waves SET targeted = targeted + $3"
                    " WHERE rollout_id = $1 AND wave = $2", "iii", id, (int64_t)k,
                    (int64_t)count[k]);
    }
    /* A group's rollout takes its devices over from the model-wide one:
     * those that have not finished there leave it. */
    return rc == STORE_OK && in->group[0] ? pg_ro_leave(st, r, NULL, in->model, in->group, id)
                                          : rc;
}

int pg_op_rollout_create(struct pgstore *st, struct store_req *r)
{
    char hex[2 * TCPOTA_ID_LEN + 1];
    int64_t id = 0;
    int rc;

    if ((rc = check_create(st, r, hex)) < 0 || (rc = insert_rollout(st, r, hex, &id)) < 0 ||
        (rc = target_devices(st, r, id)) < 0) {
        return rc;
    }
    rc = pg_ro_load(st, r, (uint64_t)id, r->u.rollout.r);
    r->u.rollout.id = (uint64_t)id;
    return rc < 0 ? rc : STORE_OK;
}

/* ---- list, get, set ---- */

int pg_op_rollout_list(struct pgstore *st, struct store_req *r)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX;
    struct store_rollout *rows;
    PGresult *res;
    int i, n, rc;

    res = pg_q(st, r, "rollout list", "SELECT " RO_COLS " FROM rollouts ORDER BY id DESC"
               " LIMIT $1", "i", (int64_t)limit);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    if (!(rows = calloc(n ? (size_t)n : 1, sizeof(*rows)))) {
        PQclear(res);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (i = 0; i < n; i++) {
        row_to_rollout(res, i, &rows[i]);
    }
    PQclear(res);
    r->u.list.rows = rows;
    r->u.list.n = r->u.list.total = (size_t)n;
    for (i = 0; i < n; i++) {
        if ((rc = load_waves(st, r, &rows[i])) < 0) {
            return rc;
        }
    }
    return STORE_OK;
}

int pg_op_rollout_get(struct pgstore *st, struct store_req *r)
{
    int rc = pg_ro_load(st, r, r->u.rollout.id, r->u.rollout.r);

    if (rc == 0) {
        return store_err_set(r, STORE_E_NOTFOUND, "no rollout %llu",
                             (unsigned long long)r->u.rollout.id);
    }
    return rc < 0 ? rc : STORE_OK;
}

int pg_op_rollout_set(struct pgstore *st, struct store_req *r)
{
    uint64_t id = r->u.rollout.id;
    uint32_t from = r->u.rollout.expect_n_open, to = r->u.rollout.new_n_open;
    int rc;

    /* Its SQL reads the waves' counters (a resume's base): written first. */
    if ((rc = pg_waves_flush(st, r)) < 0 || (rc = pg_op_rollout_get(st, r)) < 0) {
        return rc;
    }
    if ((rc = store_rollout_set_check(r)) < 0) {
        return rc;
    }
    if ((rc = pg_run(st, r, "rollout set", "UPDATE rollouts SET state = $1, n_open = $2,"
                     " changed_at = $3 WHERE id = $4 AND state = $5 AND n_open = $6 AND ($7 = 0"
                     " OR (base_failed = $8 AND base_finished = $9))", "iiiiiiiii",
                     (int64_t)r->u.rollout.new_state, (int64_t)to, r->now, (int64_t)id,
                     (int64_t)r->u.rollout.expect_state, (int64_t)from,
                     (int64_t)r->u.rollout.expect_base, (int64_t)r->u.rollout.base_failed,
                     (int64_t)r->u.rollout.base_finished)) < 0) {
        return rc;
    }
    if (st->changes == 0) {
        /* What the winner wrote, for the message (the read above may predate it). */
        (void)pg_op_rollout_get(st, r);
        return store_rollout_set_conflict(r);
    }
    /* Resumed after a halt: the halt rule counts from here. */
    if (r->u.rollout.expect_state == ROLLOUT_STATE_HALTED &&
        r->u.rollout.new_state == ROLLOUT_STATE_ACTIVE &&
        (rc = pg_run(st, r, "rollout set", "UPDATE rollouts SET base_failed = (SELECT sum(failed)"
                     " FROM rollout_waves WHERE rollout_id = $1), base_finished = (SELECT"
                     " sum(failed + updated) FROM rollout_waves WHERE rollout_id = $1)"
                     " WHERE id = $1", "i", (int64_t)id)) < 0) {
        return rc;
    }
    if (to > from && (rc = pg_run(st, r, "rollout set", "UPDATE rollout_waves SET opened_at = $1"
                                  " WHERE rollout_id = $2 AND wave >= $3 AND wave < $4", "iiii",
                                  r->now, (int64_t)id, (int64_t)from, (int64_t)to)) < 0) {
        return rc;
    }
    return pg_op_rollout_get(st, r);
}
