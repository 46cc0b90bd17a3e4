/*
 * store_sqlite_internal.h - what the files of the SQLite store share:
 *   store_sqlite.c         open, lock, batching (on the thread of store_worker.c)
 *   store_sqlite_schema.c  the numbered migrations
 *   store_sqlite_sql.c     statement cache, binding, columns, hex, errors
 *   store_sqlite_dev.c     check-in, events, devices, secrets
 *   store_sqlite_ro.c      rollouts and their per-wave counters
 *   store_sqlite_img.c     images
 *   store_sqlite_sum.c     the dashboard's counts (STORE_SUMMARY)
 * Every function here runs on the store thread (except during open and
 * close, when that thread does not run), inside the batch transaction.
 * Ops return STORE_OK or a negative enum store_err with r->err written.
 */
#ifndef TCPOTA_SERVER_STORE_SQLITE_INTERNAL_H
#define TCPOTA_SERVER_STORE_SQLITE_INTERNAL_H

#include "store.h"
#include "store_worker.h"

#include <sqlite3.h>
#include <sys/types.h>

/* One prepared statement, kept for the store's life (keyed by its SQL). */
struct sq_cached {
    const char *sql;
    sqlite3_stmt *stmt;
};

struct sstore {
    struct store base;       /* first: a struct store * is a struct sstore * */
    sqlite3 *db;
    char dir[400];
    int lock_fd; /* DIR/tcpota.lock, ours (fleet_lock_take); -1 before */
    struct store_worker w;   /* the store thread, its queue, the completions */
    /* Store thread only: */
    int in_txn;              /* the batch transaction is open */
    int commit_failed;       /* the last COMMIT that wrote failed (a full disk, an I/O
                              * error): until one succeeds, no request is answered
                              * before its COMMIT (run_list) */
    int batch_wrote;         /* a request of the open batch wrote rows and succeeded */
    /* What the open batch wrote, by kind, for the line a failed COMMIT
     * logs: of the requests not yet answered (their callers are told), and
     * of those answered already (nobody else will say they are lost). */
    struct sq_writes {
        unsigned checkins, steps, other;
    } pend_writes, answered_writes;
    unsigned failed_commits;  /* since the last COMMIT that wrote */
    int64_t failed_since_ms;  /* monotonic, the first of them */
    char failed_why[160];     /* short: why the last COMMIT failed ("disk full: free space
                               * on the disk holding DIR"), for the notes of sq_missing() */
    char why[640];           /* sq_why()'s message: dir and SQLite's */
    int64_t txn_started_ms;  /* monotonic, for STORE_BATCH_MS */
    struct store_req *pend_head, *pend_tail; /* ran, completion not posted */
    struct sq_cached *cache;
    size_t ncache, capcache;
    /* The files opened (sq_replaced): a database put in their place while
     * the server runs (a backup restored into DIR) is never written. */
    dev_t db_dev;
    ino_t db_ino, wal_ino; /* wal_ino 0: no -wal seen yet */
    int replaced;          /* found replaced: every request fails from then on */
    int64_t files_checked_ms; /* monotonic: the last look at them */
};

/* ---- store_sqlite_schema.c ---- */

/* The schema version this program writes. */
#define SQ_SCHEMA_VERSION 4

/* Brings db to SQ_SCHEMA_VERSION in one transaction. Returns the version it
 * had (0: a new database), or -1 with a message naming path in err (newer
 * schema, not ours, SQLite error). */
int sq_migrate(sqlite3 *db, const char *path, char *err, size_t errlen);

/* -1 with a message naming path in err when db holds tables but not
 * tcpota's; 0 otherwise (empty, ours, or unreadable: the open that follows
 * says why). Reads only. */
int sq_foreign(sqlite3 *db, const char *path, char *err, size_t errlen);

/* ---- store_sqlite_sql.c ---- */

/* The cached statement for sql, reset, with its parameters bound from fmt,
 * one letter each: 'i' int64_t, 't' const char * (NULL binds NULL),
 * 'b' const void * then int length. NULL on a SQLite error. */
sqlite3_stmt *sq_prep(struct sstore *st, const char *sql, const char *fmt, ...);
/* sq_prep then one step to its end. Returns a SQLite code (SQLITE_DONE,
 * SQLITE_ROW when it returned a row, or an error); the statement is reset. */
int sq_run(struct sstore *st, const char *sql, const char *fmt, ...);
/* The one int64 the query returns: 1 and *out set, 0 when no row, -1 on an
 * error. */
int sq_int(struct sstore *st, int64_t *out, const char *sql, const char *fmt, ...);
/* Finalizes every cached statement. */
void sq_cache_free(struct sstore *st);
/* Text column i copied into buf (truncated, always terminated). */
void sq_col_text(sqlite3_stmt *s, int i, char *buf, size_t size);
/* Writes "what: <SQLite's message>" as r's error; returns STORE_E_IO. */
int sq_fail(struct sstore *st, struct store_req *r, const char *what);
/* SQLite's message for the last error, which for a full disk also names
 * the data directory and says what to do. */
const char *sq_why(struct sstore *st);
/* An unknown device id as STORE_E_NOTFOUND: "no device ID", and while
 * COMMITs fail (commit_failed), why a device that checked in may be missing
 * and what to do; step: for a device step, whose device did check in.
 * Returns STORE_E_NOTFOUND. */
int sq_missing(struct sstore *st, struct store_req *r, const char *id, int step);
/* DIR/images/<hex> into out. */
void sq_image_path(const struct sstore *st, const char *hex, char *out, size_t size);

/* ---- store_sqlite_ro.c ---- */

/* Loads rollout id with its per-wave counts. 1 found, 0 not, <0 store_err. */
int sq_ro_load(struct sstore *st, struct store_req *r, uint64_t id, struct store_rollout *out);
/* The id of the rollout applying to a device of model and group (0: none,
 * <0: store_err). */
int64_t sq_ro_applicable(struct sstore *st, struct store_req *r, const char *model,
                         const char *group);
/* Makes sure device_id has a row in rollout ro (a new row: targeted, counted
 * in its wave, and in ro's counts in memory). *status: its status. */
int sq_ro_ensure(struct sstore *st, struct store_req *r, struct store_rollout *ro,
                 const char *device_id, enum store_ro_status *status);
/* Moves a device's row in a rollout to status, keeping the wave counters in
 * step; a row that is updated or failed does not go back. */
int sq_ro_set_status(struct sstore *st, struct store_req *r, uint64_t rollout_id,
                     const char *device_id, enum store_ro_status status);
/* A device counts where it finished, or in the rollout that applies to it:
 * its rows that have not finished in the other rollouts still live (not
 * superseded, not cancelled) leave them, with their waves' counts. Of
 * device dev, or (dev NULL) of every device of model and group; keep is
 * the rollout that applies to them now (0: none). */
int sq_ro_leave(struct sstore *st, struct store_req *r, const char *dev, const char *model,
                const char *group, int64_t keep);
int sq_op_rollout_create(struct sstore *st, struct store_req *r);
int sq_op_rollout_list(struct sstore *st, struct store_req *r);
int sq_op_rollout_get(struct sstore *st, struct store_req *r);
int sq_op_rollout_set(struct sstore *st, struct store_req *r);

/* ---- store_sqlite_img.c ---- */

/* Loads the image with full hex id. 1 found, 0 not, <0 store_err. */
int sq_img_load(struct sstore *st, struct store_req *r, const char *hex, struct store_image *out);
int sq_op_image_add(struct sstore *st, struct store_req *r);
int sq_op_image_get(struct sstore *st, struct store_req *r);
int sq_op_image_rm(struct sstore *st, struct store_req *r);
int sq_op_image_list(struct sstore *st, struct store_req *r);

/* ---- store_sqlite_dev.c ---- */

int sq_op_checkin(struct sstore *st, struct store_req *r);
int sq_op_event(struct sstore *st, struct store_req *r);
int sq_op_events(struct sstore *st, struct store_req *r);
int sq_op_seen(struct sstore *st, struct store_req *r);
int sq_op_device_list(struct sstore *st, struct store_req *r);
int sq_op_device_get(struct sstore *st, struct store_req *r);
int sq_op_device_set_group(struct sstore *st, struct store_req *r);
int sq_op_device_retry(struct sstore *st, struct store_req *r);
int sq_op_device_delete(struct sstore *st, struct store_req *r);
int sq_op_secret_set(struct sstore *st, struct store_req *r);
int sq_op_secret_list(struct sstore *st, struct store_req *r);

/* ---- store_sqlite_sum.c ---- */

int sq_op_summary(struct sstore *st, struct store_req *r);

#endif
