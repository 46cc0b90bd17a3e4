/* store_sqlite_sum.c - STORE_SUMMARY: the counts the dashboard's overview and
 * rollouts page show, each one GROUP BY query (see store.h). Ties are
 * ordered too, as store_pg_sum.c orders them: both backends return the same
 * rows, even where STORE_TALLY_MAX cuts a kind short. */
#include "store_common.h" /* STORE_RO_FAILED_COLS */
#include "store_sqlite_internal.h"

#include <stdlib.h>
#include <string.h>

/* Devices by model and state, and by model and version: each a pass over a
 * covering index (devices_model_state, devices_model_version), no row read. */
static const char sql_states[] =
    "SELECT model, '', state, count(*) FROM devices GROUP BY model, state"
    " ORDER BY 4 DESC, 1, 3 LIMIT ?1";
static const char sql_versions[] =
    "SELECT model, version, 0, count(*) FROM devices GROUP BY model, version"
    " ORDER BY 4 DESC, 1, 2 LIMIT ?1";

/* Failure lines of the history since ?1, by state and detail. History rows
 * are appended in time order, so the scan starts after the newest row older
 * than ?1 (found walking back from the end) instead of reading it all. */
static const char sql_failures[] =
    "SELECT state, detail, count(*) FROM device_history"
    " WHERE rowid > coalesce((SELECT rowid FROM device_history WHERE at < ?1"
    " ORDER BY rowid DESC LIMIT 1), 0) AND at >= ?1 AND state IN (?2, ?3, ?4, ?5)"
    " GROUP BY state, detail ORDER BY 3 DESC, 1, 2 LIMIT ?6";

/* Failed devices of every rollout not cancelled, by wave, state and reason. */
static const char sql_rollouts[] =
    "SELECT rd.rollout_id, rd.wave, " STORE_RO_FAILED_COLS("?4", "?5", "?6", "?7", "?8")
    ", count(*) FROM rollouts r"
    " JOIN rollout_devices rd ON rd.rollout_id = r.id JOIN devices d ON d.id = rd.device_id"
    " WHERE r.state != ?1 AND rd.status = ?2 GROUP BY 1, 2, 3, 4 ORDER BY 1 DESC, 2, 5 DESC, 3, 4"
    " LIMIT ?3";

/* Room for one more row; NULL after writing the error into r. */
static struct store_tally *next_row(struct store_req *r, size_t *cap)
{
    struct store_tally *grown = store_grow(r->u.summary.rows, cap, r->u.summary.n, sizeof(*grown));

    if (!grown) {
        store_err_set(r, STORE_E_IO, "out of memory");
        return NULL;
    }
    r->u.summary.rows = grown;
    grown = &grown[r->u.summary.n++];
    memset(grown, 0, sizeof(*grown));
    return grown;
}

/* Steps s (bound, cached) to its end, a row of kind per result row. */
static int collect(struct sstore *st, struct store_req *r, sqlite3_stmt *s,
                   enum store_tally_kind kind, size_t *cap)
{
    struct store_tally *t;
    int rc;

    if (!s) {
        return sq_fail(st, r, "summary");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(t = next_row(r, cap))) {
            sqlite3_reset(s);
            return STORE_E_IO;
        }
        t->kind = kind;
        if (kind == STORE_TALLY_STATES || kind == STORE_TALLY_VERSIONS) {
            sq_col_text(s, 0, t->model, sizeof(t->model));
            sq_col_text(s, 1, t->version, sizeof(t->version));
            t->state = (enum store_dev_state)sqlite3_column_int(s, 2);
            t->n = (uint64_t)sqlite3_column_int64(s, 3);
        } else if (kind == STORE_TALLY_FAILURES) {
            t->state = (enum store_dev_state)sqlite3_column_int(s, 0);
            sq_col_text(s, 1, t->reason, sizeof(t->reason));
            t->n = (uint64_t)sqlite3_column_int64(s, 2);
        } else {
            t->rollout_id = (uint64_t)sqlite3_column_int64(s, 0);
            t->wave = (uint32_t)sqlite3_column_int(s, 1);
            t->state = (enum store_dev_state)sqlite3_column_int(s, 2);
            sq_col_text(s, 3, t->reason, sizeof(t->reason));
            t->n = (uint64_t)sqlite3_column_int64(s, 4);
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "summary");
}

int sq_op_summary(struct sstore *st, struct store_req *r)
{
    const int64_t max = STORE_TALLY_MAX;
    size_t cap = 0;
    int rc;

    r->u.summary.rows = NULL;
    r->u.summary.n = 0;
    rc = collect(st, r, sq_prep(st, sql_states, "i", max), STORE_TALLY_STATES, &cap);
    if (rc == STORE_OK) {
        rc = collect(st, r, sq_prep(st, sql_versions, "i", max), STORE_TALLY_VERSIONS, &cap);
    }
    if (rc == STORE_OK) {
        rc = collect(st, r,
                     sq_prep(st, sql_failures, "iiiiii", r->u.summary.since,
                             (int64_t)STORE_ST_ROLLED_BACK, (int64_t)STORE_ST_BOOT_FAILED,
                             (int64_t)STORE_ST_DECLINED, (int64_t)STORE_ST_FAILED, max),
                     STORE_TALLY_FAILURES, &cap);
    }
    if (rc == STORE_OK) {
        rc = collect(st, r,
                     sq_prep(st, sql_rollouts, "iiiiiiit", (int64_t)ROLLOUT_STATE_CANCELLED,
                             (int64_t)STORE_RO_FAILED, max, (int64_t)STORE_ST_ROLLED_BACK,
                             (int64_t)STORE_ST_BOOT_FAILED, (int64_t)STORE_ST_DECLINED,
                             (int64_t)STORE_ST_FAILED, STORE_MOVED_ON_REASON),
                     STORE_TALLY_ROLLOUT_FAILED, &cap);
    }
    return rc;
}
