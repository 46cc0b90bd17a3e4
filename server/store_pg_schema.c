/* store_pg_schema.c - the PostgreSQL store's schema: the SQLite store's
 * numbered migrations (store_sqlite_schema.c) in PostgreSQL's dialect, with
 * the same version numbers, in the connection's current schema (the first
 * of its search_path). All due ones run in one transaction, under an
 * advisory lock: nodes that start together wait for the first, which
 * migrates, then find the schema current. Never edit a migration that has
 * shipped: add the next one, here and in the SQLite store. */
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Migration 1: the SQLite store's tables, plus what PostgreSQL needs in its
 * place: a seq column where SQLite's rowid gave an order (history and
 * failures newest first, images by age), a sequence for rollout ids, and
 * the image bytes themselves (image_chunks: every node fetches from there
 * into its local cache, store_pg_img.c). Text ids sort bytewise (COLLATE
 * "C") as in SQLite, whatever the database's locale: a page of devices
 * ends where the next begins. */
static const char migration_1[] =
    "CREATE TABLE images ("
    " id TEXT COLLATE \"C\" PRIMARY KEY, version TEXT NOT NULL, model TEXT NOT NULL,"
    " size BIGINT NOT NULL, manifest BYTEA, added_at BIGINT NOT NULL, seq BIGSERIAL);"
    "CREATE TABLE image_chunks ("
    " image_id TEXT COLLATE \"C\" NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
    " n INTEGER NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (image_id, n));"
    "CREATE TABLE devices ("
    " id TEXT COLLATE \"C\" PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL,"
    " running TEXT NOT NULL DEFAULT '', grp TEXT NOT NULL DEFAULT '',"
    " addr TEXT NOT NULL DEFAULT '', proto INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0, image TEXT NOT NULL DEFAULT '',"
    " bytes BIGINT NOT NULL DEFAULT 0, size BIGINT NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " first_seen BIGINT NOT NULL, last_seen BIGINT NOT NULL);"
    "CREATE INDEX devices_model_state ON devices(model, state, id);"
    "CREATE INDEX devices_state ON devices(state, id);"
    "CREATE INDEX devices_grp ON devices(grp, id);"
    "CREATE TABLE device_history ("
    " device_id TEXT COLLATE \"C\" NOT NULL REFERENCES devices(id), at BIGINT NOT NULL,"
    " state INTEGER NOT NULL, image TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '',"
    " seq BIGSERIAL);"
    "CREATE INDEX device_history_dev ON device_history(device_id, seq);"
    "CREATE TABLE device_failures ("
    " device_id TEXT COLLATE \"C\" NOT NULL REFERENCES devices(id), failed_id BYTEA NOT NULL,"
    " seq BIGSERIAL, PRIMARY KEY (device_id, failed_id));"
    "CREATE TABLE rollouts ("
    " id BIGSERIAL PRIMARY KEY, image TEXT NOT NULL, model TEXT NOT NULL,"
    " grp TEXT NOT NULL DEFAULT '', allow_downgrade INTEGER NOT NULL DEFAULT 0,"
    " superseded INTEGER NOT NULL DEFAULT 0, state INTEGER NOT NULL,"
    " n_waves INTEGER NOT NULL, pct TEXT NOT NULL, n_open INTEGER NOT NULL,"
    " min_finished BIGINT NOT NULL, success_pct BIGINT NOT NULL,"
    " soak_s BIGINT NOT NULL, halt_pct BIGINT NOT NULL, halt_min BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL, changed_at BIGINT NOT NULL,"
    " base_failed BIGINT NOT NULL DEFAULT 0, base_finished BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX rollouts_model ON rollouts(model, grp);"
    "CREATE INDEX rollouts_image ON rollouts(image);"
    "CREATE TABLE rollout_waves ("
    " rollout_id BIGINT NOT NULL REFERENCES rollouts(id), wave INTEGER NOT NULL,"
    " targeted BIGINT NOT NULL DEFAULT 0, offered BIGINT NOT NULL DEFAULT 0,"
    " downloading BIGINT NOT NULL DEFAULT 0, updated BIGINT NOT NULL DEFAULT 0,"
    " failed BIGINT NOT NULL DEFAULT 0, opened_at BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (rollout_id, wave));"
    "CREATE TABLE rollout_devices ("
    " rollout_id BIGINT NOT NULL REFERENCES rollouts(id), device_id TEXT COLLATE \"C\" NOT NULL,"
    " wave INTEGER NOT NULL, status INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (rollout_id, device_id));"
    "CREATE INDEX rollout_devices_dev ON rollout_devices(device_id);"
    "CREATE TABLE secrets (device_id TEXT COLLATE \"C\" PRIMARY KEY, secret BYTEA NOT NULL);";

/* A device's failures newest first straight from an index. */
static const char migration_2[] =
    "CREATE INDEX device_failures_dev ON device_failures(device_id, seq);";

/* Devices by model and version from an index (the dashboard's counts, as
 * SQLite's migration 3). */
static const char migration_3[] =
    "CREATE INDEX devices_model_version ON devices(model, version);";

/* The dashboard's failures since a time (store_pg_sum.c) as a range of an
 * index: SQLite walks back its rowid for that, but here several nodes
 * append history, so seq order is not quite time order. */
static const char migration_4[] = "CREATE INDEX device_history_at ON device_history(at);";

/* The secrets set through any node, in the order they committed: each set
 * takes the next generation under the one row's lock (held to its
 * COMMIT), so a node that has read generation G has every secret set up
 * to G (store_pg_dev.c, fleet.c's secret sync). Those set before are of
 * generation 1: a list since 0 has them all. A trigger numbers every
 * write, a node's of an older tcpota too (a rolling upgrade); the row has
 * a key, as logical replication of updates wants. */
static const char migration_5[] =
    "CREATE TABLE secrets_gen (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),"
    " gen BIGINT NOT NULL);"
    "INSERT INTO secrets_gen (gen) VALUES (1);"
    "ALTER TABLE secrets ADD COLUMN changed BIGINT NOT NULL DEFAULT 1;"
    "CREATE INDEX secrets_changed ON secrets(changed);"
    "CREATE FUNCTION tcpota_secret_changed() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
    " UPDATE secrets_gen SET gen = gen + 1 RETURNING gen INTO NEW.changed; RETURN NEW; END$$;"
    "CREATE TRIGGER secrets_changed BEFORE INSERT OR UPDATE ON secrets FOR EACH ROW"
    " EXECUTE FUNCTION tcpota_secret_changed();";

/* The secrets removed with their device (STORE_DEVICE_DELETE), numbered
 * as migration 5 numbers the secrets set, so that a node's sync learns of
 * a removal as of a new secret. A table of its own, not a row of no bytes
 * in secrets: an older node beside a newer one (a rolling upgrade) reads
 * every row of secrets, and took such a row for a secret of no bytes
 * (a review: its AUTH then passed with an empty key). */
static const char migration_6[] =
    "CREATE TABLE secrets_gone (device_id TEXT COLLATE \"C\" PRIMARY KEY,"
    " changed BIGINT NOT NULL DEFAULT 1);"
    "CREATE INDEX secrets_gone_changed ON secrets_gone(changed);"
    "CREATE TRIGGER secrets_gone_changed BEFORE INSERT OR UPDATE ON secrets_gone FOR EACH ROW"
    " EXECUTE FUNCTION tcpota_secret_changed();";

static const char *const migrations[PG_SCHEMA_VERSION] = {migration_1, migration_2, migration_3,
                                                          migration_4, migration_5, migration_6};

/* err from the connection's last error, after what. */
static void conn_err(PGconn *db, const char *what, char *err, size_t errlen)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(db));
    msg[strcspn(msg, "\n")] = '\0';
    /* The role may not make the schema (PostgreSQL 15: public is no
     * longer everyone's to write): say what gives it that right (a trial
     * got PostgreSQL's words alone). */
    snprintf(err, errlen, "%s: %s%s", what, msg,
             strstr(msg, "permission denied") || strstr(msg, "no schema has been selected")
                 ? "; the role --db connects as must own its database (createdb -O ROLE DB) or"
                   " have CREATE on its schema (GRANT CREATE ON SCHEMA public TO ROLE)"
                 : "");
}

/* One statement without parameters; 0, or -1 with err. */
static int exec(PGconn *db, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(db, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    PQclear(res);
    if (!ok) {
        conn_err(db, what, err, errlen);
    }
    return ok ? 0 : -1;
}

/* The version the current schema is at: 0 when it holds no table, -1 with
 * err when it holds tables but not ours, -2 on an error. */
static int64_t current_version(PGconn *db, char *err, size_t errlen)
{
    PGresult *res;
    int64_t v = -2;

    res = PQexec(db, "SELECT count(*), count(*) FILTER (WHERE tablename = 'schema_version'),"
                     " current_schema() FROM pg_tables WHERE schemaname = current_schema()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        int64_t ntables = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        int64_t ours = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        v = ntables == 0 ? 0 : ours ? -3 : -1;
        if (v == -1) {
            snprintf(err, errlen, "schema \"%s\" of the database holds tables but not tcpota's"
                     " (no schema_version table); give --db another database or schema",
                     PQgetvalue(res, 0, 2));
        }
    } else {
        conn_err(db, "cannot read the schema version", err, errlen);
    }
    PQclear(res);
    if (v != -3) {
        return v;
    }
    /* The name alone is not ours: Flyway before 5 kept its migrations in a
     * schema_version table too (a trial: tcpota's migration 3 ran against
     * another program's tables). Ours has one column, version INTEGER,
     * and from version 1 on image_chunks beside it (made in the same
     * transaction as the version's first rise). */
    /* From pg_catalog, not information_schema: that hides the columns of
     * a table the role may not use, and a tcpota database restored as
     * another role was said to be another program's (a trial). */
    /* The schema by its name as a string: a cast to regnamespace would
     * read "MySchema" as myschema (a review). The role must read and write
     * the tables, not only see them. */
#define SCHEMA_OID "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
    res = PQexec(db, "SELECT (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid ="
                     " a.attrelid WHERE c.relnamespace = " SCHEMA_OID " AND c.relname ="
                     " 'schema_version' AND a.attnum > 0 AND NOT a.attisdropped),"
                     " (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                     " WHERE c.relnamespace = " SCHEMA_OID " AND c.relname = 'schema_version'"
                     " AND a.attname = 'version' AND a.atttypid = 'integer'::regtype AND NOT"
                     " a.attisdropped), (SELECT count(*) FROM pg_tables WHERE schemaname ="
                     " current_schema() AND tablename = 'image_chunks'), current_schema(),"
                     " (SELECT coalesce(bool_and(has_table_privilege(c.oid, p)), true) FROM"
                     " pg_class c, unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p"
                     " WHERE c.relnamespace = " SCHEMA_OID " AND c.relname IN"
                     " ('schema_version', 'devices')), current_user");
#undef SCHEMA_OID
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        conn_err(db, "cannot read the schema version", err, errlen);
        PQclear(res);
        return -2;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "1") != 0 || strcmp(PQgetvalue(res, 0, 1), "1") != 0 ||
        strcmp(PQgetvalue(res, 0, 2), "1") != 0) {
        snprintf(err, errlen, "schema \"%s\" of the database holds a schema_version table that is"
                 " not tcpota's (another program's migrations?); give --db another database or"
                 " schema", PQgetvalue(res, 0, 3));
        PQclear(res);
        return -1;
    }
    if (strcmp(PQgetvalue(res, 0, 4), "t") != 0) {
        snprintf(err, errlen, "the role %s may not use tcpota's tables in schema \"%s\" (they"
                 " belong to another role: a restore as another role, or grants not given);"
                 " give --db the role that owns them, or grant it (GRANT ALL ON ALL TABLES IN"
                 " SCHEMA %s TO %s, and the same ON ALL SEQUENCES)", PQgetvalue(res, 0, 5),
                 PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 5));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    res = PQexec(db, "SELECT max(version) FROM schema_version");
    v = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
            ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -2;
    if (v == -2) {
        conn_err(db, "cannot read the schema version", err, errlen);
    }
    PQclear(res);
    return v;
}

static int run_due(PGconn *db, int64_t from, char *err, size_t errlen)
{
    char sql[64];
    int64_t k;

    if (from == 0 && exec(db, "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                              "INSERT INTO schema_version VALUES (0);",
                          "schema migration", err, errlen) != 0) {
        return -1;
    }
    for (k = from; k < PG_SCHEMA_VERSION; k++) {
        snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", (int)(k + 1));
        if (exec(db, migrations[k], "schema migration", err, errlen) != 0 ||
            exec(db, sql, "schema migration", err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

int pg_migrate(PGconn *db, char *err, size_t errlen)
{
    char lock[80];
    int64_t v;

    /* The transaction-scoped lock goes with the COMMIT or ROLLBACK. */
    snprintf(lock, sizeof(lock), "SELECT pg_advisory_xact_lock(%lld)", (long long)PG_MIGRATE_LOCK);
    if (exec(db, "BEGIN", "cannot start the schema migration", err, errlen) != 0 ||
        exec(db, lock, "cannot take the migration lock", err, errlen) != 0) {
        return -1;
    }
    v = current_version(db, err, errlen);
    if (v > PG_SCHEMA_VERSION) {
        snprintf(err, errlen, "the database has schema version %lld, newer than this tcpota"
                 " knows (%d); run a newer tcpota on every node", (long long)v,
                 PG_SCHEMA_VERSION);
    }
    if (v < 0 || v > PG_SCHEMA_VERSION || run_due(db, v, err, errlen) != 0 ||
        exec(db, "COMMIT", "schema migration", err, errlen) != 0) {
        PQclear(PQexec(db, "ROLLBACK"));
        return -1;
    }
    return (int)v;
}
