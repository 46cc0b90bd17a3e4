/* store_sqlite_schema.c - the SQLite store's schema as numbered migrations.
 * Migration k brings version k-1 to k; all due ones run in one transaction at
 * open, so a crash midway leaves the old version, never half of a new one.
 * Never edit a migration that has shipped: add the next one. */
#include "store_sqlite_internal.h"

#include <stdio.h>

/* Migration 1: everything. Counters in rollout_waves are kept in step with
 * rollout_devices by the store (store_sqlite_ro.c), in the same transaction.
 * Indexes name id last where a list orders by it, so a filtered page is an
 * index range scan, not a sort (a million devices). */
static const char migration_1[] =
    "CREATE TABLE images ("
    " id TEXT PRIMARY KEY, version TEXT NOT NULL, model TEXT NOT NULL,"
    " size INTEGER NOT NULL, manifest BLOB, added_at INTEGER NOT NULL);"
    "CREATE TABLE devices ("
    " id TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL,"
    " running TEXT NOT NULL DEFAULT '', grp TEXT NOT NULL DEFAULT '',"
    " addr TEXT NOT NULL DEFAULT '', proto INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0, image TEXT NOT NULL DEFAULT '',"
    " bytes INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);"
    "CREATE INDEX devices_model_state ON devices(model, state, id);"
    "CREATE INDEX devices_state ON devices(state, id);"
    "CREATE INDEX devices_grp ON devices(grp, id);"
    /* The index on device_id alone ends in the rowid: newest first for free. */
    "CREATE TABLE device_history ("
    " device_id TEXT NOT NULL REFERENCES devices(id), at INTEGER NOT NULL,"
    " state INTEGER NOT NULL, image TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX device_history_dev ON device_history(device_id);"
    "CREATE TABLE device_failures ("
    " device_id TEXT NOT NULL REFERENCES devices(id), failed_id BLOB NOT NULL,"
    " PRIMARY KEY (device_id, failed_id));"
    /* No foreign key to images: a cancelled rollout keeps naming the image
     * after it is removed. */
    "CREATE TABLE rollouts ("
    " id INTEGER PRIMARY KEY, image TEXT NOT NULL, model TEXT NOT NULL,"
    " grp TEXT NOT NULL DEFAULT '', allow_downgrade INTEGER NOT NULL DEFAULT 0,"
    " superseded INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL,"
    " n_waves INTEGER NOT NULL, pct TEXT NOT NULL, n_open INTEGER NOT NULL,"
    " min_finished INTEGER NOT NULL, success_pct INTEGER NOT NULL,"
    " soak_s INTEGER NOT NULL, halt_pct INTEGER NOT NULL, halt_min INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, changed_at INTEGER NOT NULL,"
    " base_failed INTEGER NOT NULL DEFAULT 0, base_finished INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX rollouts_model ON rollouts(model, grp);"
    "CREATE INDEX rollouts_image ON rollouts(image);"
    "CREATE TABLE rollout_waves ("
    " rollout_id INTEGER NOT NULL REFERENCES rollouts(id), wave INTEGER NOT NULL,"
    " targeted INTEGER NOT NULL DEFAULT 0, offered INTEGER NOT NULL DEFAULT 0,"
    " downloading INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, opened_at INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (rollout_id, wave)) WITHOUT ROWID;"
    "CREATE TABLE rollout_devices ("
    " rollout_id INTEGER NOT NULL REFERENCES rollouts(id), device_id TEXT NOT NULL,"
    " wave INTEGER NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (rollout_id, device_id)) WITHOUT ROWID;"
    "CREATE INDEX rollout_devices_dev ON rollout_devices(device_id);"
    "CREATE TABLE secrets (device_id TEXT PRIMARY KEY, secret BLOB NOT NULL);";

/* A device's failures newest first straight from an index: without it,
 * every check-in sorted them in a temporary b-tree, whose pages SQLite
 * allocated and freed each time (bench/README.md, fleet mode). */
static const char migration_2[] =
    "CREATE INDEX device_failures_dev ON device_failures(device_id);";

/* The dashboard counts devices by model and version (STORE_SUMMARY): from
 * this covering index, 0.2 s on a million devices instead of 4 s of row
 * look-ups. A device's version changes only when it updates. */
static const char migration_3[] =
    "CREATE INDEX devices_model_version ON devices(model, version);";

/* PostgreSQL's migration 4 indexes the history by time for the dashboard's
 * failures; SQLite finds them from its rowid (store_sqlite_sum.c) and needs
 * nothing. The number stays taken so that both schemas count alike. */
static const char migration_4[] = "";

static const char *const migrations[SQ_SCHEMA_VERSION] = {migration_1, migration_2, migration_3,
                                                          migration_4};

/* The version the database is at: 0 for a new (empty) file, -1 with err when
 * it holds tables but not ours, -2 on a SQLite error. */
static int64_t current_version(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int64_t v = 0, ntables = 0;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT count(*), sum(name = 'schema_version') FROM sqlite_master"
                            " WHERE type = 'table'", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        ntables = sqlite3_column_int64(s, 0);
        v = sqlite3_column_int64(s, 1);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) {
        return -2;
    }
    if (ntables == 0) {
        return 0;
    }
    if (v == 0) {
        snprintf(err, errlen, "%s is a SQLite database but not a tcpota one (no schema_version"
                 " table); use another --data directory", path);
        return -1;
    }
    rc = sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        v = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? v : -2;
}

static int run_due(sqlite3 *db, int64_t from)
{
    char sql[64];
    int64_t k;
    int rc = SQLITE_OK;

    if (from == 0) {
        rc = sqlite3_exec(db, "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                          "INSERT INTO schema_version VALUES (0);", NULL, NULL, NULL);
    }
    for (k = from; k < SQ_SCHEMA_VERSION && rc == SQLITE_OK; k++) {
        rc = sqlite3_exec(db, migrations[k], NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", (int)(k + 1));
            rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        }
    }
    return rc;
}

int sq_foreign(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    return current_version(db, path, err, errlen) == -1 ? -1 : 0;
}

int sq_migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int64_t v;
    int rc;

    /* IMMEDIATE: two servers racing past the lock file (they cannot, but a
     * copy of the file might be opened by hand) still migrate once. */
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot start the schema migration: %s", path,
                 sqlite3_errmsg(db));
        return -1;
    }
    v = current_version(db, path, err, errlen);
    if (v == -1 || v == -2 || v > SQ_SCHEMA_VERSION) {
        if (v == -2) {
            snprintf(err, errlen, "%s: cannot read the schema version: %s", path,
                     sqlite3_errmsg(db));
        } else if (v > SQ_SCHEMA_VERSION) {
            snprintf(err, errlen, "%s has schema version %lld, newer than this tcpota knows (%d);"
                     " run a newer tcpota or restore a backup", path, (long long)v,
                     SQ_SCHEMA_VERSION);
        }
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    rc = run_due(db, v);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: schema migration to version %d failed: %s", path,
                 SQ_SCHEMA_VERSION, sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return (int)v;
}
