/* store_pg_sum.c - STORE_SUMMARY on PostgreSQL: the dashboard's counts, the
 * same four GROUP BY queries as store_sqlite_sum.c with the same columns and
 * the same order (ties broken bytewise, COLLATE "C", whatever the
 * database's locale), so both backends return the same rows. */
#include "store_common.h" /* STORE_RO_FAILED_COLS */
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <stdlib.h>
#include <string.h>

/* Devices by model and state, and by model and version (the indexes
 * devices_model_state and devices_model_version cover them). */
static const char sql_states[] =
    "SELECT model, '', state, count(*) FROM devices GROUP BY model, state"
    " ORDER BY 4 DESC, model COLLATE \"C\", 3 LIMIT $1";
static const char sql_versions[] =
    "SELECT model, version, 0, count(*) FROM devices GROUP BY model, version"
    " ORDER BY 4 DESC, model COLLATE \"C\", version COLLATE \"C\" LIMIT $1";

/* Failure lines of the history since $1, by state and detail: a range of
 * the index device_history_at (migration 4). SQLite walks its rowid
 * instead; here several nodes append, so seq order is not time order. */
static const char sql_failures[] =
    "SELECT state, detail, count(*) FROM device_history WHERE at >= $1"
    " AND state IN ($2, $3, $4, $5) GROUP BY state, detail"
    " ORDER BY 3 DESC, 1, detail COLLATE \"C\" LIMIT $6";

/* Failed devices of every rollout not cancelled, by wave, state and reason
 * (named in a subquery: a reason ordered bytewise is an expression, which
 * PostgreSQL takes of input columns only). */
static const char sql_rollouts[] =
    "SELECT id, wave, state, why, n FROM (SELECT rd.rollout_id AS id, rd.wave AS wave, "
    STORE_RO_FAILED_COLS("$4", "$5", "$6", "$7", "$8") ", count(*) AS n FROM rollouts r"
    " JOIN rollout_devices rd ON rd.rollout_id = r.id JOIN devices d ON d.id = rd.device_id"
    " WHERE r.state != $1 AND rd.status = $2 GROUP BY 1, 2, 3, 4) f"
    " ORDER BY id DESC, wave, n DESC, state, why COLLATE \"C\" LIMIT $3";

/* Appends the rows of res as tallies of kind (columns as the queries above
 * give them). STORE_OK, or STORE_E_IO when out of memory. */
static int collect(struct store_req *r, PGresult *res, enum store_tally_kind kind, size_t *cap)
{
    struct store_tally *rows, *t;
    int i, n = PQntuples(res);

    for (i = 0; i < n; i++) {
        if (!(rows = store_grow(r->u.summary.rows, cap, r->u.summary.n, sizeof(*rows)))) {
            PQclear(res);
            return store_err_set(r, STORE_E_IO, "out of memory");
        }
        r->u.summary.rows = rows;
        t = &rows[r->u.summary.n++];
        memset(t, 0, sizeof(*t));
        t->kind = kind;
        if (kind == STORE_TALLY_STATES || kind == STORE_TALLY_VERSIONS) {
            pg_col_text(res, i, 0, t->model, sizeof(t->model));
            pg_col_text(res, i, 1, t->version, sizeof(t->version));
            t->state = (enum store_dev_state)pg_col_i64(res, i, 2);
            t->n = (uint64_t)pg_col_i64(res, i, 3);
        } else if (kind == STORE_TALLY_FAILURES) {
            t->state = (enum store_dev_state)pg_col_i64(res, i, 0);
            pg_col_text(res, i, 1, t->reason, sizeof(t->reason));
            t->n = (uint64_t)pg_col_i64(res, i, 2);
        } else {
            t->rollout_id = (uint64_t)pg_col_i64(res, i, 0);
            t->wave = (uint32_t)pg_col_i64(res, i, 1);
            t->state = (enum store_dev_state)pg_col_i64(res, i, 2);
            pg_col_text(res, i, 3, t->reason, sizeof(t->reason));
            t->n = (uint64_t)pg_col_i64(res, i, 4);
        }
    }
    PQclear(res);
    return STORE_OK;
}

int pg_op_summary(struct pgstore *st, struct store_req *r)
{
    const int64_t max = STORE_TALLY_MAX;
    size_t cap = 0;
    PGresult *res;

    r->u.summary.rows = NULL;
    r->u.summary.n = 0;
    if (!(res = pg_q(st, r, "summary", sql_states, "i", max)) ||
        collect(r, res, STORE_TALLY_STATES, &cap) < 0) {
        return r->rc;
    }
    if (!(res = pg_q(st, r, "summary", sql_versions, "i", max)) ||
        collect(r, res, STORE_TALLY_VERSIONS, &cap) < 0) {
        return r->rc;
    }
    if (!(res = pg_q(st, r, "summary", sql_failures, "iiiiii", r->u.summary.since,
                     (int64_t)STORE_ST_ROLLED_BACK, (int64_t)STORE_ST_BOOT_FAILED,
                     (int64_t)STORE_ST_DECLINED, (int64_t)STORE_ST_FAILED, max)) ||
        collect(r, res, STORE_TALLY_FAILURES, &cap) < 0) {
        return r->rc;
    }
    if (!(res = pg_q(st, r, "summary", sql_rollouts, "iiiiiiit", (int64_t)ROLLOUT_STATE_CANCELLED,
                     (int64_t)STORE_RO_FAILED, max, (int64_t)STORE_ST_ROLLED_BACK,
                     (int64_t)STORE_ST_BOOT_FAILED, (int64_t)STORE_ST_DECLINED,
                     (int64_t)STORE_ST_FAILED, STORE_MOVED_ON_REASON))) {
        return r->rc;
    }
    return collect(r, res, STORE_TALLY_ROLLOUT_FAILED, &cap);
}
