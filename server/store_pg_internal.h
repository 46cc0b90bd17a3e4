/*
 * store_pg_internal.h - what the files of the PostgreSQL store share:
 *   store_pg.c         open, transactions (on the thread of store_worker.c)
 *   store_pg_outage.c  the database unreachable: reconnect, keep device steps
 *   store_pg_schema.c  the numbered migrations, under an advisory lock
 *   store_pg_sql.c     prepared statements, parameters, columns, errors
 *   store_pg_dev.c     check-in, events, devices, secrets
 *   store_pg_ro.c      rollouts and their per-wave counters
 *   store_pg_img.c     images: rows, bytes in the database, the local cache
 *   store_pg_sum.c     the dashboard's counts (STORE_SUMMARY)
 * Every function here runs on the store thread (except during open and
 * close, when that thread does not run), inside the transaction of the list
 * of requests being run. Ops return STORE_OK or a negative enum store_err
 * with r->err written. Hex, errors and list growth: store.h's helpers.
 */
#ifndef TCPOTA_SERVER_STORE_PG_INTERNAL_H
#define TCPOTA_SERVER_STORE_PG_INTERNAL_H

#include "store.h"
#include "store_pg.h"
#include "store_worker.h"

#include <libpq-fe.h>
#include <stdatomic.h>

/* One prepared statement, kept for the connection's life (keyed by its SQL). */
struct pg_cached {
    const char *sql;
    char name[16];
};

/* A wave's counter changes made by the transaction under way, not yet
 * written (store_pg_ro.c): they go in just before COMMIT, in (rollout,
 * wave) order, so that a wave's row is the last lock a transaction takes
 * and every node takes such locks in one order. Before, a node writing a
 * batch of device steps locked a device, then the wave, then the next
 * device, while another took the same in the other order: PostgreSQL
 * broke a deadlock in nearly every run of 20 devices on three nodes, and
 * the rerun stalled check-ins for seconds. */
#define PG_WAVE_DELTAS 64u
enum { PG_WD_TARGETED, PG_WD_OFFERED, PG_WD_DOWNLOADING, PG_WD_UPDATED, PG_WD_FAILED, PG_WD_N };
struct pg_wave_delta {
    uint64_t rollout_id;
    uint32_t wave;
    int32_t d[PG_WD_N];
};

struct pgstore {
    struct store base;       /* first: a struct store * is a struct pgstore * */
    PGconn *db;
    /* For the loop's pgs_unstick: a duplicate of the connection's socket
     * while it is up (-1: none), ours to close, so that it never names
     * another file after libpq closed its own (set by the store thread
     * once connected, closed before the next connection is made, under
     * sock_mu); and when the database last answered a statement, or a
     * new connection came up (pg_answered, pg_connect_new; monotonic ms). */
    pthread_mutex_t sock_mu;
    int sock;
    atomic_llong answered_ms;
    atomic_llong stmt_ms;   /* when a statement was last answered (pg_answered) */
    char conninfo[STORE_PG_CONNINFO_MAX];
    char dir[400];           /* the local image cache's parent: dir/images */
    int lock_fd;             /* dir/tcpota.lock, ours (fleet_lock_take); -1 before */
    struct store_worker w;   /* the store thread, its queue, the completions */
    /* Store thread only: */
    struct pg_cached *cache;
    size_t ncache, capcache;
    unsigned next_stmt;      /* names s1, s2, ... */
    int64_t changes;         /* rows the last pg_run touched */
    int rerun;               /* a serialization failure or deadlock: run the list again */
    int64_t xid;             /* the list's transaction id (pg_begin; 0: a list of reads) */
    int xid_pid;             /* the backend that runs it (pg_begin) */
    unsigned lost_commits;   /* COMMITs whose answer was lost (tests read it) */
    /* The last image this node could not put in its cache, and when that
     * was told (load_rollout: once per PG_CACHE_TELL_MS). */
    char cache_failed[2 * TCPOTA_ID_LEN + 1];
    int64_t cache_told_ms;
    unsigned fail_reconnects; /* tests: so many reconnections fail before trying */
    /* Set by the close once it cut a hung database's connection: no new
     * one is tried (each waited connect_timeout, three of them past the
     * unit's stop timeout, and one that connected could hang again: a
     * review); what is left is lost, and said so. */
    atomic_int no_reconnect;
    int cut_commit;          /* tests: PG_CUT_BEFORE or PG_CUT_AFTER drops the connection at the
                                next COMMIT, before it is sent or before its answer is read */
    struct pg_wave_delta wd[PG_WAVE_DELTAS]; /* the transaction's, unwritten */
    size_t nwd;
    struct pg_wave_delta wd_op[PG_WAVE_DELTAS]; /* wd before the op under way */
    /* The database unreachable (store_pg_outage.c); store thread only but
     * `down`, which the loop reads to fail requests at once: */
    atomic_int down;
    int64_t down_since_ms, retry_at_ms; /* monotonic */
    int64_t quiet_since_ms;             /* the last answer before the outage (monotonic) */
    unsigned retry_ms;       /* the backoff: PG_RETRY_FIRST_MS .. PG_RETRY_MAX_MS */
    struct store_req *kept_head, *kept_tail; /* device steps waiting for the database */
    size_t kept_steps, dropped;
    size_t kept_max;         /* PG_KEPT_MAX (a test makes it smaller) */
};

enum { PG_CUT_NONE = 0, PG_CUT_BEFORE, PG_CUT_AFTER };
/* How long a list whose COMMIT lost its answer waits for the old
 * transaction to end (txid_status 'in progress'): polls, PG_OUTCOME_POLL_MS
 * apart; after PG_OUTCOME_KILL_POLLS its backend, which may not know yet
 * that its client is gone (a partition: hours), is ended, which settles
 * it and frees its row locks. */
#define PG_OUTCOME_POLLS 250u
#define PG_OUTCOME_POLL_MS 20u
#define PG_OUTCOME_KILL_POLLS 50u

/* ---- store_pg_outage.c ---- */

#define PG_RETRY_FIRST_MS 100u  /* the first reconnection attempt after a loss */
#define PG_RETRY_MAX_MS 2000u   /* the backoff doubles up to this */
#define PG_KEPT_MAX 65536u      /* device steps kept while unreachable (~20 MiB); beyond it
                                   the oldest progress steps go, final steps stay */
/* What to do when the database cannot be reached: at the start and in an
 * outage, one wording. */
#define PG_CHECK_HINT "check that PostgreSQL runs and that --db reaches it"
/* What to do when it takes no writes. */
#define PG_READ_ONLY_HINT "the database takes no writes (a standby, or default_transaction_read_only" \
                          " set): give --db the primary, or its hosts with"                            \
                          " target_session_attrs=read-write (docs/scaling.md)"
/* What to do when it refused the role's password, or wanted one. */
#define PG_PASSWORD_HINT "give the role's password in a file of mode 0600 that PGPASSFILE names, or " \
                         "in ~/.pgpass (lines HOST:PORT:DATABASE:USER:PASSWORD; docs/scaling.md)"
/* A request whose COMMIT lost its answer (a printf format: what became of
 * the connection, then the transaction's id as a long long). */
#define PG_UNKNOWN_MSG "the connection to the database broke during COMMIT and %s: whether"  \
                       " transaction %lld (this request) committed is unknown: check what it" \
                       " changes (list or show it) before trying again"
#define PG_DOWN_MSG "the database (PostgreSQL, --db) cannot be reached now; this node"        \
                    " reconnects by itself: try again in a few seconds. If it stays so, the"   \
                    " node's log says why (its store: lines: a password refused, a database"  \
                    " that takes no writes)"

#define PG_CACHE_TELL_MS 30000 /* an image the cache cannot take is told this often at most */
/* store_pg_outage.c: the monotonic clock, in milliseconds. */
int64_t pg_mono_ms(void);

/* A new connection in place of the lost one (blocks up to connect_timeout):
 * 0, or -1 (PQerrorMessage says why). */
int pg_reconnect(struct pgstore *st);
/* store_pg.c: a new connection in st->db's place (see there): 0, or -1. */
int pg_connect_new(struct pgstore *st);
/* store_pg.c: what to do after libpq's message msg (a password refused,
 * none given, else PG_CHECK_HINT); buf (cap bytes) may hold it. */
const char *pg_hint(const char *msg, char *buf, size_t cap);
/* 1 while the database is unreachable (any thread). */
int pg_outage_on(struct pgstore *st);
/* The list head met a lost connection that could not be made again: the
 * outage begins (told once), then pg_outage_keep(head). */
void pg_outage_start(struct pgstore *st, struct store_req *head);
/* During the outage: keeps head's device steps, in order, and fails the
 * other requests with STORE_E_UNAVAILABLE (posted). */
void pg_outage_keep(struct pgstore *st, struct store_req *head);
/* Reconnects when the backoff allows it (stopping: now, the last time).
 * Back: the outage ends (told) and the kept requests are returned, to be
 * run before anything else. Not back: NULL; when stopping, the kept
 * requests fail (told). */
struct store_req *pg_outage_retry(struct pgstore *st, int stopping);
/* The worker's idle_ms and admit (store_worker.h). */
int64_t pg_outage_idle_ms(void *ctx);
int pg_outage_admit(void *ctx, struct store_req *r);

/* ---- store_pg_schema.c ---- */

/* The schema version this program writes (the SQLite store's numbering). */
#define PG_SCHEMA_VERSION 6
/* The advisory lock key every node takes around its migration ("tcpota"). */
#define PG_MIGRATE_LOCK 0x7463706f7461LL
/* The first key of the two-key advisory lock an image add takes on its
 * model (the second: hashtext(model)): adds of one model take turns. */
#define PG_IMAGE_ADD_LOCK 0x74636f69 /* "tcoi" */
/* ... the one a rollout create and an image rm take on the image (the
 * second key: hashtext(its hex id)): a removal then sees a rollout another
 * node is creating of it, and a create an image another node removes. */
#define PG_IMAGE_USE_LOCK 0x74636f75 /* "tcou" */
/* ... and the one a rollout create takes on its model (hashtext(model)):
 * creates of one model take turns, each superseding the one before. */
#define PG_ROLLOUT_LOCK 0x74636f72 /* "tcor" */

/* Brings the database (its current schema) to PG_SCHEMA_VERSION in one
 * transaction, under PG_MIGRATE_LOCK so that nodes starting together
 * migrate once. Returns the version it had (0: a new database), or -1 with
 * a message in err. */
int pg_migrate(PGconn *db, char *err, size_t errlen);

/* ---- store_pg_sql.c ---- */

/* Store thread: the database answered a statement now (pgs_unstick). */
void pg_answered(struct pgstore *st);

/* Runs the cached statement for sql with parameters from fmt, one letter
 * each: 'i' int64_t, 't' const char * (NULL: NULL), 'b' const void * then
 * int length (bytea). Returns the result (the caller PQclear()s it) when it
 * succeeded, else NULL with r's error written as "what: <server message>"
 * (STORE_E_IO; a serialization failure or a deadlock also sets st->rerun:
 * the list runs again). */
PGresult *pg_q(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
               const char *fmt, ...);
/* pg_q for a statement whose rows are not read: STORE_OK (st->changes set
 * to the rows it touched) or the negative store_err. */
int pg_run(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
           const char *fmt, ...);
/* Waits for the advisory lock (key, hashtext(name)) of this transaction,
 * held to its commit: what two nodes must do one after the other (image
 * adds of a model, rollout creates of a model, an image's create and
 * removal). STORE_OK or the negative store_err. */
int pg_lock_xact(struct pgstore *st, struct store_req *r, const char *what, int64_t key,
                 const char *name);
/* pg_run for a statement of one text parameter ($1), planned with its
 * value each time, not prepared: one whose best plan depends on it. A prepared statement
 * soon runs a generic plan, made once from the statistics of that moment:
 * for `id = ANY($1)` on a table that was small then, a sequential scan
 * comparing every row with every element, kept while the table grows
 * (6 ms per list of 32 check-ins at 10,000 devices, bench/README.md). */
int pg_run_once(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
                const char *text);
/* The one int64 the query returns: 1 and *out set, 0 when no row (or NULL),
 * <0 store_err. */
int pg_int(struct pgstore *st, struct store_req *r, const char *what, int64_t *out,
           const char *sql, const char *fmt, ...);
/* Runs sql (no parameters, not cached) for the transaction's control:
 * 0, or -1 with the server's message in r (r may be NULL). */
int pg_exec(struct pgstore *st, struct store_req *r, const char *sql);
/* BEGIN, with synchronous_commit off for the transaction unless durable,
 * and unless reads (a list of reads alone: run again, it changes nothing)
 * its id into st->xid (txid_current) and its backend's into st->xid_pid, in
 * one round trip: 0, or -1 with the server's message in r. */
int pg_begin(struct pgstore *st, struct store_req *r, int durable, int reads);
/* COMMIT (sent: already sent, only its answer is read): 0; -1 refused (r
 * says why; st->rerun after a serialization failure); -2 no answer: the
 * connection failed under it, which may have committed (r is left as it
 * was). */
int pg_commit(struct pgstore *st, struct store_req *r, int sent);
/* Forgets the prepared statements (a new connection has none). */
void pg_cache_reset(struct pgstore *st);
void pg_cache_free(struct pgstore *st);
/* Column c of row i: as int64 (0 when NULL), as text copied into buf
 * (truncated, always terminated), as a bytea decoded into buf (at most size
 * bytes; returns the length, or -1 when longer or not a bytea). */
int64_t pg_col_i64(const PGresult *res, int i, int c);
void pg_col_text(const PGresult *res, int i, int c, char *buf, size_t size);
int pg_col_bytea(const PGresult *res, int i, int c, uint8_t *buf, size_t size);
/* DIR/images/<hex> into out. */
void pg_image_path(const struct pgstore *st, const char *hex, char *out, size_t size);

/* A PostgreSQL array literal built one element at a time ({"a","b\\"c"}),
 * for a statement that takes many rows in one parameter (unnest()): each
 * element quoted, its '"' and '\' escaped, whatever other bytes it holds.
 * Start from {0}; free with pg_array_free(). */
struct pg_array {
    char *buf;
    size_t len, cap;
    size_t n; /* elements added */
};
/* Adds elem; 0, or -1 out of memory. */
int pg_array_add(struct pg_array *a, const char *elem);
/* The literal of the elements added ("{}" when none), or NULL out of
 * memory; then empties a for the next one (its buffer kept). */
const char *pg_array_end(struct pg_array *a);
void pg_array_free(struct pg_array *a);

/* ---- store_pg_ro.c ---- */

int pg_ro_load(struct pgstore *st, struct store_req *r, uint64_t id, struct store_rollout *out);
/* Writes the transaction's wave counter changes (struct pg_wave_delta), in
 * (rollout, wave) order; the store calls it just before COMMIT. Returns
 * STORE_OK or the error (st->rerun set on a deadlock). */
int pg_waves_flush(struct pgstore *st, struct store_req *r);
int64_t pg_ro_applicable(struct pgstore *st, struct store_req *r, const char *model,
                         const char *group);
int pg_ro_ensure(struct pgstore *st, struct store_req *r, struct store_rollout *ro,
                 const char *device_id, enum store_ro_status *status);
int pg_ro_set_status(struct pgstore *st, struct store_req *r, uint64_t rollout_id,
                     const char *device_id, enum store_ro_status status);
/* As sq_ro_leave (store_sqlite_internal.h): a device's unfinished rows in
 * live rollouts other than keep leave them, with their waves' counts. */
int pg_ro_leave(struct pgstore *st, struct store_req *r, const char *dev, const char *model,
                const char *group, int64_t keep);
int pg_op_rollout_create(struct pgstore *st, struct store_req *r);
int pg_op_rollout_list(struct pgstore *st, struct store_req *r);
int pg_op_rollout_get(struct pgstore *st, struct store_req *r);
int pg_op_rollout_set(struct pgstore *st, struct store_req *r);

/* ---- store_pg_img.c ---- */

/* Loads the image with full hex id. 1 found, 0 not, <0 store_err. */
int pg_img_load(struct pgstore *st, struct store_req *r, const char *hex, struct store_image *out);
/* Makes sure img's bytes are in the local cache at img->path: fetched from
 * the database once, their SHA-256 checked, written and renamed into
 * place. STORE_OK or <0 store_err. */
int pg_img_cache(struct pgstore *st, struct store_req *r, const struct store_image *img);
int pg_op_image_add(struct pgstore *st, struct store_req *r);
int pg_op_image_get(struct pgstore *st, struct store_req *r);
int pg_op_image_rm(struct pgstore *st, struct store_req *r);
int pg_op_image_list(struct pgstore *st, struct store_req *r);

/* ---- store_pg_dev.c ---- */

int pg_op_checkin(struct pgstore *st, struct store_req *r);
int pg_op_event(struct pgstore *st, struct store_req *r);
int pg_op_events(struct pgstore *st, struct store_req *r);
int pg_op_seen(struct pgstore *st, struct store_req *r);
/* Locks, in id order, the rows of the devices the list from head on
 * writes (when it names two or more): two nodes' lists that write the
 * same devices in different orders (one's check-in, the other's batch of
 * steps) then wait for each other instead of deadlocking. Newly inserted
 * rows are not covered (nothing to lock yet); a deadlock there is rare and
 * rerun. STORE_OK, or the error in head (st->rerun set on a deadlock). */
int pg_lock_devices(struct pgstore *st, struct store_req *head);
int pg_op_device_list(struct pgstore *st, struct store_req *r);
int pg_op_device_get(struct pgstore *st, struct store_req *r);
int pg_op_device_set_group(struct pgstore *st, struct store_req *r);
int pg_op_device_retry(struct pgstore *st, struct store_req *r);
int pg_op_device_delete(struct pgstore *st, struct store_req *r);
int pg_op_secret_set(struct pgstore *st, struct store_req *r);
int pg_op_secret_list(struct pgstore *st, struct store_req *r);

/* ---- store_pg_sum.c ---- */

int pg_op_summary(struct pgstore *st, struct store_req *r);

#endif
