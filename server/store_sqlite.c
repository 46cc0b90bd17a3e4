/* store_sqlite.c - the SQLite store (store.h): opening DIR, and the store
 * thread that owns the connection.
 *
 * Why a thread: SQLite has no asynchronous API, and a commit's fsync takes
 * milliseconds; the loop must never wait for either. submit() queues on the
 * loop's thread; the store thread runs requests in order inside ONE open
 * write transaction (the batch). A request that must be durable (store.h)
 * is followed by COMMIT before its completion is posted; the others are
 * posted at once and committed with the batch within STORE_BATCH_MS.
 * The thread, its queue and the completions' way back to the loop are
 * store_worker.c's; they run in submission order. */
#include "fleet_files.h" /* FLEET_DB_FILE */
#include "store_common.h"
#include "store_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define SQ_BUSY_TIMEOUT_MS 250 /* another process holding the file (a backup, sqlite3 CLI) */
#define SQ_DB_MODE 0600                  /* the database's mode: the server's user alone */
#define SQ_DB_MODE_OTHERS (S_IRWXG | S_IRWXO)
#define SQ_MAGIC "SQLite format 3" /* a SQLite file's first 16 bytes, its NUL included */
#define SQ_HDR_WRITE_VERSION 18   /* the header's byte: 1 rollback journal, 2 WAL */
#define SQ_HDR_ROLLBACK 1

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- completions ---- */

static int commit(struct sstore *st);

/* Adds what r wrote (it succeeded and changed rows) to w, by kind. */
static void count_writes(const struct store_req *r, struct sq_writes *w)
{
    switch (r->op) {
    case STORE_CHECKIN: w->checkins++; break;
    case STORE_EVENT: w->steps++; break;
    case STORE_EVENTS: w->steps += (unsigned)(r->u.events.n - r->u.events.skipped); break;
    default: w->other++; break; /* check-in times; the API's writes wait for their COMMIT */
    }
}

/* Posts the requests run so far (the loop runs their done). When that
 * waits for the loop, the batch is committed first: its write lock and its
 * window (STORE_BATCH_MS) must not last as long as the loop lags. */
static void post_pending(struct sstore *st)
{
    if (st->pend_head && st->in_txn && store_worker_backlogged(&st->w)) {
        (void)commit(st); /* on failure it failed the pending requests */
    }
    if (st->in_txn) { /* answered now, their rows still uncommitted */
        st->answered_writes.checkins += st->pend_writes.checkins;
        st->answered_writes.steps += st->pend_writes.steps;
        st->answered_writes.other += st->pend_writes.other;
    }
    memset(&st->pend_writes, 0, sizeof(st->pend_writes));
    store_worker_post(&st->w, st->pend_head, st->pend_tail);
    st->pend_head = st->pend_tail = NULL;
}

/* ---- the batch transaction ---- */

/* Every request not yet posted fails: its writes went with the transaction. */
static void fail_pending(struct sstore *st, const char *why)
{
    struct store_req *r;

    for (r = st->pend_head; r; r = r->next) {
        /* What failed, not "the database failed": the API says that. */
        (void)store_err_set(r, STORE_E_IO, "commit: %s", why);
    }
}

/* "2 check-ins, 5 device steps and 1 other write" into buf. */
static void say_writes(const struct sq_writes *w, char *buf, size_t size)
{
    const unsigned n[3] = {w->checkins, w->steps, w->other};
    static const char *const one[3] = {"check-in", "device step", "other write"};
    static const char *const many[3] = {"check-ins", "device steps", "other writes"};
    size_t len = 0, k, left = (n[0] != 0) + (n[1] != 0) + (n[2] != 0);

    buf[0] = '\0';
    for (k = 0; k < 3 && len < size; k++) {
        if (n[k]) {
            left--;
            len += (size_t)snprintf(buf + len, size - len, "%u %s%s", n[k],
                                    n[k] == 1 ? one[k] : many[k],
                                    left > 1 ? ", " : left == 1 ? " and " : "");
        }
    }
}

/* The batch is gone (its COMMIT failed, or SQLite rolled it back): the
 * requests not yet answered fail with why, and their callers say so. The
 * writes of those answered already (within STORE_BATCH_MS of non-durable
 * requests) are lost with nobody told: the log says so here, whenever
 * commits start failing (while they fail, every request waits for its
 * COMMIT, run_list, so none answered is lost and nothing more is said:
 * each failed request's caller says it). */
static void batch_failed(struct sstore *st, const char *why)
{
    const struct sq_writes *lost = &st->answered_writes;
    char what[128], *cut;
    int first = !st->commit_failed;

    fail_pending(st, why);
    snprintf(st->failed_why, sizeof(st->failed_why), "%s", why);
    if ((cut = strstr(st->failed_why, " (SQLite: ")) != NULL) {
        *cut = '\0'; /* SQLite's words are in the log line */
    }
    st->commit_failed = 1;
    if (first) {
        st->failed_since_ms = mono_ms();
    }
    st->failed_commits++;
    say_writes(lost, what, sizeof(what));
    if (first || what[0]) {
        store_worker_notice(&st->w, 1, "commit: %s; %s%s%s. Until a commit succeeds, every"
                            " request waits for its commit and devices are told to try again"
                            " later", why, what[0] ? "lost with it: " : "nothing answered was lost",
                            what, what[0] ? " already answered (the devices' next check-ins put"
                            " the registry right)" : "");
    }
    memset(&st->answered_writes, 0, sizeof(st->answered_writes));
    memset(&st->pend_writes, 0, sizeof(st->pend_writes));
}

/* Ends the batch. Returns 0, or -1 (pending requests then failed). */
/* 1 when a request after r in its batch added an image at r's path. */
static int added_later(const struct store_req *r)
{
    const struct store_req *q;

    for (q = r->next; q; q = q->next) {
        if (q->op == STORE_IMAGE_ADD && q->rc == STORE_OK &&
            strcmp(q->u.image.img->path, r->u.image.img->path) == 0) {
            return 1;
        }
    }
    return 0;
}

#define SQ_FILES_CHECK_MS 10 /* at most this between two looks at the files (sq_replaced) */
#define SQ_REPLACED_SAYS "the database was replaced while the server runs (see its log): nothing" \
                         " is read or written in it; restart the server to use it"

/* What changed of the files open_db opened, or NULL: DIR/tcpota.db is
 * another file or gone, or its -wal (once seen) is gone or another file.
 * A stat that fails otherwise (EACCES, EIO on network storage) is no
 * answer: asked again at the next batch. */
static const char *sq_files_changed(struct sstore *st)
{
    char path[sizeof(st->dir) + sizeof(FLEET_DB_FILE) + 8];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", st->dir, FLEET_DB_FILE);
    if (stat(path, &sb) != 0) {
        return errno == ENOENT ? "was removed" : NULL;
    }
    if (sb.st_dev != st->db_dev || sb.st_ino != st->db_ino) {
        return "was replaced";
    }
    snprintf(path, sizeof(path), "%s/%s-wal", st->dir, FLEET_DB_FILE);
    if (stat(path, &sb) != 0) {
        return errno == ENOENT && st->wal_ino ? "lost its -wal file" : NULL;
    }
    if (!st->wal_ino) {
        st->wal_ino = sb.st_ino; /* made since the open */
    } else if (sb.st_ino != st->wal_ino) {
        return "had its -wal file replaced";
    }
    return NULL;
}

/* The line sq_replaced and teardown say. */
static void sq_say_replaced(const struct sstore *st, const char *what, char *buf, size_t cap)
{
    if (strcmp(what, "was removed") == 0) {
        /* Not a restore (a trial was told of one): the open file is now the
         * data's only copy, gone at the stop. */
        snprintf(buf, cap, "%s/%s was removed while the server runs: nothing more is written; its"
                 " data now lives only in this process's open file (ls -l /proc/%ld/fd), lost at"
                 " the stop: copy it out from there first, or restore a backup (docs/operations.md)",
                 st->dir, FLEET_DB_FILE, (long)getpid());
        return;
    }
    snprintf(buf, cap, "%s/%s %s while the server runs (a backup restored into its folder?):"
             " nothing more is read or written in it, so that what was put there stays as it is;"
             " every request fails until the server is restarted on it (stop it before a"
             " restore: docs/operations.md)", st->dir, FLEET_DB_FILE, what);
}

/* 1 when the files the store opened were replaced (sq_files_changed): a
 * backup restored into DIR while the server runs (cp of a copy and rm of
 * the -wal, or a mv over it). Nothing more is written then: a batch, or
 * the close's checkpoint, would put the running server's pages into the
 * restored database (a trial's restore was silently undone at the stop).
 * Said once. A cp over the file that keeps the -wal is not seen (the same
 * files): docs/operations.md says to stop the server. Store thread. */
static int sq_replaced(struct sstore *st)
{
    const char *what;
    char line[sizeof(st->dir) + 400];

    if (st->replaced) {
        return 1;
    }
    if (!(what = sq_files_changed(st))) {
        return 0;
    }
    st->replaced = 1;
    store_set_down(1); /* GET /health answers 503: a balancer sends devices elsewhere */
    sq_say_replaced(st, what, line, sizeof(line));
    store_worker_notice(&st->w, 1, "%s", line);
    return 1;
}

/* Says line at once on the calling thread (the main one, after the store
 * thread joined: its notices end with it). */
static void sq_say_now(const struct sstore *st, const char *line)
{
    if (st->base.notice) {
        st->base.notice(st->base.notice_arg, 1, line);
    } else {
        fprintf(stderr, "tcpota store: %s\n", line);
    }
}

/* After a replaced database's close: this server's -wal, where it is still
 * (a database moved over tcpota.db), is renamed away with its -shm, since
 * SQLite would apply its pages to the database put there at the next open
 * (nothing in a -wal names its database). */
static void sq_set_wal_aside(struct sstore *st)
{
    static const char *const ends[] = {"-wal", "-shm"};
    char path[sizeof(st->dir) + sizeof(FLEET_DB_FILE) + 8], aside[sizeof(path) + 16];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s-wal", st->dir, FLEET_DB_FILE);
    if (!st->wal_ino || stat(path, &sb) != 0 || sb.st_ino != st->wal_ino) {
        return; /* removed, or the restore's own: not ours */
    }
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s%s", st->dir, FLEET_DB_FILE, ends[i]);
        snprintf(aside, sizeof(aside), "%s.replaced", path);
        if (rename(path, aside) == 0) {
            char msg[3 * sizeof(aside) + sizeof(st->dir) + 200];
            (void)chmod(aside, SQ_DB_MODE); /* the device secrets' pages */
            snprintf(msg, sizeof(msg), "the replaced database's %s moved aside to %s, so that it"
                     " is not applied to a database put at %s/%s (remove it once the restore is"
                     " known good)", path, aside, st->dir, FLEET_DB_FILE);
            sq_say_now(st, msg);
        }
    }
}

/* Notes the files open_db opened, for sq_replaced. */
static void sq_note_files(struct sstore *st)
{
    char path[sizeof(st->dir) + sizeof(FLEET_DB_FILE) + 8];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", st->dir, FLEET_DB_FILE);
    if (stat(path, &sb) == 0) {
        st->db_dev = sb.st_dev;
        st->db_ino = sb.st_ino;
    }
    snprintf(path, sizeof(path), "%s/%s-wal", st->dir, FLEET_DB_FILE);
    st->wal_ino = stat(path, &sb) == 0 ? sb.st_ino : 0;
}

static int commit(struct sstore *st)
{
    struct store_req *r;

    if (!st->in_txn) {
        return 0;
    }
    st->in_txn = 0;
    if (sq_replaced(st)) {
        /* Replaced while the batch was open (a check-in keeps one open
         * for STORE_BATCH_MS): its writes go nowhere; an autocheckpoint
         * after its COMMIT would write into the restored file. */
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        for (r = st->pend_head; r; r = r->next) {
            (void)store_err_set(r, STORE_E_IO, "%s", SQ_REPLACED_SAYS);
        }
        return -1;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        batch_failed(st, sq_why(st));
        if (!sqlite3_get_autocommit(st->db)) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        }
        return -1;
    }
    memset(&st->answered_writes, 0, sizeof(st->answered_writes));
    memset(&st->pend_writes, 0, sizeof(st->pend_writes));
    /* A read alone, or writes rolled back to their savepoint, prove
     * nothing of the disk. */
    if (st->batch_wrote && st->commit_failed) {
        store_worker_notice(&st->w, 0, "the database takes writes again: a commit succeeded"
                            " after %u failed in %.1f s", st->failed_commits,
                            (double)(mono_ms() - st->failed_since_ms) / 1e3);
        st->commit_failed = 0;
        st->failed_commits = 0;
    }
    /* A removed image's file goes only once its row is gone for good;
     * not when the same bytes were added again later in the batch (the
     * add renamed its upload there already: a review). */
    for (r = st->pend_head; r; r = r->next) {
        if (r->op == STORE_IMAGE_RM && r->rc == STORE_OK && !added_later(r)) {
            (void)unlink(r->u.image.img->path);
        }
    }
    return 0;
}

static int dispatch(struct sstore *st, struct store_req *r)
{
    int rc = store_req_check(r);

    if (rc < 0) {
        return rc;
    }
    switch (r->op) {
    case STORE_CHECKIN: return sq_op_checkin(st, r);
    case STORE_EVENT: return sq_op_event(st, r);
    case STORE_EVENTS: return sq_op_events(st, r);
    case STORE_IMAGE_ADD: return sq_op_image_add(st, r);
    case STORE_IMAGE_LIST: return sq_op_image_list(st, r);
    case STORE_IMAGE_GET: return sq_op_image_get(st, r);
    case STORE_IMAGE_RM: return sq_op_image_rm(st, r);
    case STORE_ROLLOUT_CREATE: return sq_op_rollout_create(st, r);
    case STORE_ROLLOUT_LIST: return sq_op_rollout_list(st, r);
    case STORE_ROLLOUT_GET: return sq_op_rollout_get(st, r);
    case STORE_ROLLOUT_SET: return sq_op_rollout_set(st, r);
    case STORE_DEVICE_LIST: return sq_op_device_list(st, r);
    case STORE_DEVICE_GET: return sq_op_device_get(st, r);
    case STORE_DEVICE_SET_GROUP: return sq_op_device_set_group(st, r);
    case STORE_DEVICE_RETRY: return sq_op_device_retry(st, r);
    case STORE_DEVICE_DELETE: return sq_op_device_delete(st, r);
    case STORE_SECRET_SET: return sq_op_secret_set(st, r);
    case STORE_SECRET_LIST: return sq_op_secret_list(st, r);
    case STORE_SUMMARY: return sq_op_summary(st, r);
    case STORE_SEEN: return sq_op_seen(st, r);
    }
    return store_err_set(r, STORE_E_INVAL, "unknown store operation %d", (int)r->op);
}

/* Runs one request inside the batch, in a savepoint so a failed op leaves
 * nothing half done while the batch goes on. */
static void run_one(struct sstore *st, struct store_req *r)
{
    char why[sizeof(st->why)];
    int64_t before;

    why[0] = '\0'; /* not the whole buffer: this runs for every request */
    /* As a batch opens, and within an open one every SQ_FILES_CHECK_MS
     * (a batch stays open STORE_BATCH_MS: a trial's download right after
     * a restore was served from the database it replaced). */
    if ((!st->in_txn || mono_ms() - st->files_checked_ms >= SQ_FILES_CHECK_MS) &&
        (st->files_checked_ms = mono_ms(), sq_replaced(st))) {
        (void)store_err_set(r, STORE_E_IO, "%s", SQ_REPLACED_SAYS);
        return;
    }
    if (!st->in_txn) {
        if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
            sq_fail(st, r, "begin");
            return;
        }
        st->in_txn = 1;
        st->txn_started_ms = mono_ms();
        st->batch_wrote = 0;
    }
    /* Cached statements, not sqlite3_exec(): that parses its SQL on every
     * call, 8 % of a check-in's instructions (callgrind). */
    if (sq_run(st, "SAVEPOINT op", "") != SQLITE_DONE) {
        sq_fail(st, r, "savepoint");
        return;
    }
    before = sqlite3_total_changes64(st->db);
    if (dispatch(st, r) != STORE_OK) {
        /* Why, before the savepoint's own statements overwrite it. */
        snprintf(why, sizeof(why), "%s", sq_why(st));
        (void)sq_run(st, "ROLLBACK TO op", "");
    } else if (sqlite3_total_changes64(st->db) != before) {
        st->batch_wrote = 1; /* rows this batch keeps, if its COMMIT succeeds */
        count_writes(r, &st->pend_writes);
    }
    (void)sq_run(st, "RELEASE op", "");
    if (sqlite3_get_autocommit(st->db)) {
        /* SQLite rolled the whole batch back (disk full, I/O error). */
        st->in_txn = 0;
        batch_failed(st, why[0] ? why : sq_why(st));
    }
}

/* Runs a list of requests taken from the queue. Durable ones wait for one
 * COMMIT at the end of the list (several share an fsync); the others are
 * posted at once while no durable one is waiting ahead of them. While
 * commits fail (a full disk), every request waits for its COMMIT: a
 * check-in is not answered, and no device offered an image, on writes
 * that will not last (at most one batch window's check-ins are, before
 * the first COMMIT fails). */
static void run_list(struct sstore *st, struct store_req *r)
{
    struct store_req *next;
    int need_commit = 0;

    for (; r; r = next) {
        next = r->next;
        r->next = NULL;
        r->rc = STORE_OK;
        store_err_clear(r);
        run_one(st, r);
        if (st->pend_tail) {
            st->pend_tail->next = r;
        } else {
            st->pend_head = r;
        }
        st->pend_tail = r;
        need_commit |= store_req_durable(r) || st->commit_failed;
        if (!need_commit) {
            post_pending(st);
        }
    }
    if (need_commit) {
        commit(st);
    }
    post_pending(st);
}

/* The worker's `run`: the list, then the batch's commit when its window
 * is over (or the store stops). */
static void run(void *ctx, struct store_req *list, int stopping)
{
    struct sstore *st = ctx;

    run_list(st, list);
    if (st->in_txn && (stopping || mono_ms() - st->txn_started_ms >= STORE_BATCH_MS)) {
        commit(st);
    }
}

/* The worker's `idle_ms`: an open batch is committed when its window ends,
 * requests or not. */
static int64_t idle_ms(void *ctx)
{
    struct sstore *st = ctx;
    int64_t left;

    if (!st->in_txn) {
        return -1;
    }
    left = st->txn_started_ms + STORE_BATCH_MS - mono_ms();
    return left > 0 ? left : 0;
}

/* ---- the backend's table ---- */

static int sq_submit(struct store *base, struct store_req *r)
{
    return store_worker_submit(&((struct sstore *)base)->w, r);
}

/* Frees what open set up; safe on a partly opened store. */
static void teardown(struct sstore *st)
{
    store_worker_release(&st->w);
    sq_cache_free(st);
    if (st->db && !st->replaced && st->db_ino) {
        /* Once more, the store thread joined: a restore just before a stop
         * that no request followed (a review: the stop's checkpoint undid
         * it). Said at once: the worker's notices end with its thread. */
        const char *what = sq_files_changed(st);
        if (what) {
            char line[sizeof(st->dir) + 400];
            st->replaced = 1;
            sq_say_replaced(st, what, line, sizeof(line));
            sq_say_now(st, line);
        }
    }
    if (st->db) {
        if (st->replaced) {
            /* Its checkpoint would copy this server's pages into the
             * database put in its place (and the -wal is kept). */
            (void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        }
        sqlite3_close(st->db);
        if (st->replaced) {
            sq_set_wal_aside(st);
        }
    }
    fleet_lock_release(st->lock_fd);
    free(st);
}

static void sq_close(struct store *base)
{
    struct sstore *st = (struct sstore *)base;

    store_worker_stop(&st->w); /* runs what is queued, commits, every done */
    teardown(st);
}

static const struct store_vt sqlite_vt = {"sqlite", sq_submit, sq_close, 0, NULL};

/* ---- open ---- */

/* DIR exists as a writable directory (created 0700 when missing). */
static int prepare_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;
    char images[512];

    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT || mkdir(dir, 0700) != 0 || stat(dir, &sb) != 0) {
            snprintf(err, errlen, "cannot create the data directory %s: %s", dir, strerror(errno));
            return -1;
        }
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a directory (it is a %s); give --data a directory", dir,
                 S_ISREG(sb.st_mode) ? "regular file" : S_ISFIFO(sb.st_mode) ? "FIFO" : "special file");
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        int e = errno;
        char hint[FLEET_OWNER_HINT_MAX];
        snprintf(err, errlen, "the data directory %s is not writable: %s%s", dir, strerror(e),
                 fleet_files_owner_hint(e, dir, dir, hint, sizeof(hint)));
        return -1;
    }
    snprintf(images, sizeof(images), "%s/images", dir);
    if (mkdir(images, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", images, strerror(errno));
        return -1;
    }
    if (stat(images, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a directory; move it away", images);
        return -1;
    }
    return 0;
}

/* SQLite's quick_check finds damaged pages, b-trees and records (not index
 * contents, which only integrity_check compares, at many times the cost).
 * Without it a damaged file opened fine and every request then failed
 * "database disk image is malformed" behind a server that said it was
 * listening. It reads the whole file once: docs/operations.md gives the
 * time for a large store. Returns 0 when the check says ok, else -1. */
static int check_db(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    const char *what = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        what = (const char *)sqlite3_column_text(s, 0);
        if (what && strcmp(what, "ok") == 0) {
            sqlite3_finalize(s);
            return 0;
        }
    }
    /* Its first finding, or SQLite's error when the check itself could
     * not read the file (a damaged schema page). */
    /* (Not sqlite3's .recover: Debian 12's shell lacks the sqlite_dbpage
     * table it needs, and writes an empty file; a .dump stops at its first
     * error with a ROLLBACK, made a COMMIT here to keep the rows read.) */
    snprintf(err, errlen, "%s is damaged (SQLite's quick_check: %s); not starting on it: restore"
             " the last backup (docs/operations.md, Backups), or save what is readable with"
             " `sqlite3 %s .dump | sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | sqlite3"
             " recovered.db` and put recovered.db in its place",
             path, what ? what : sqlite3_errmsg(db), path);
    for (char *c = err; *c; c++) {
        if (*c == '\n') *c = ' '; /* the check's findings come one per line */
    }
    sqlite3_finalize(s);
    return -1;
}

/* path as a SQLite URI ("file:" and the path, each byte outside RFC 3986's
 * unreserved set and '/' as %XX) with query appended, into out. Returns 0,
 * or -1 when it does not fit. */
static int sq_uri(const char *path, const char *query, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    int w;

    w = snprintf(out, cap, "file:");
    n = (size_t)w;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p)) {
            if (n + 1 >= cap) return -1;
            out[n++] = (char)*p;
        } else {
            if (n + 3 >= cap) return -1;
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 0xf];
        }
    }
    w = snprintf(out + n, cap - n, "?%s", query);
    return w >= 0 && (size_t)w < cap - n ? 0 : -1;
}

/* Opens path read-only as it is (foreign_db's rule: mode=ro in rollback mode,
 * immutable in WAL mode). Returns 1 with *db (NULL when SQLite could not
 * open it), 0 when the file cannot be read, -1 when it does not begin as a
 * SQLite file does. */
static int open_as_is(const char *path, sqlite3 **db)
{
    unsigned char head[SQ_HDR_WRITE_VERSION + 1];
    char uri[3 * 512 + 32];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    *db = NULL;
    if (fd < 0) {
        return 0;
    }
    n = read(fd, head, sizeof(head));
    close(fd);
    if (n != (ssize_t)sizeof(head) || memcmp(head, SQ_MAGIC, sizeof(SQ_MAGIC)) != 0) {
        return -1;
    }
    if (sq_uri(path, head[SQ_HDR_WRITE_VERSION] == SQ_HDR_ROLLBACK ? "mode=ro" : "immutable=1",
               uri, sizeof(uri)) == 0 &&
        sqlite3_open_v2(uri, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return 1;
}

/* A DIR/tcpota.db that holds something else (another program's file or
 * database, a device's flash given as --data by mistake) is refused before
 * anything touches it: the open below would make it 0600, and SQLite's
 * switch to WAL rewrites a database's header. A database in rollback mode
 * is looked into read-only; one in WAL mode (as tcpota's always is) as
 * immutable (SQLite's URI parameter): a read-only open would make its -shm
 * with the file's mode, perhaps 0644, and what was written since its last
 * checkpoint, in its -wal, is not read (the schema check after the open
 * below refuses another program's database whose tables wait there).
 * Returns 0 for an empty file, a database this does not look into, a
 * tcpota one, or one that cannot be read here (the open says why). */
static int foreign_db(const char *path, const struct stat *sb, char *err, size_t errlen)
{
    sqlite3 *db;
    int rc;

    if (sb->st_size == 0) {
        return 0;
    }
    rc = open_as_is(path, &db);
    if (rc < 0) {
        snprintf(err, errlen, "%s is not a tcpota database or is damaged (it does not begin as"
                 " a SQLite file does); move it away and start again, or restore a backup", path);
        return -1;
    }
    rc = db ? sq_foreign(db, path, err, errlen) : 0;
    sqlite3_close(db);
    return rc;
}

int store_sqlite_blank(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    struct stat sb;
    int blank = 0;

    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        return 0;
    }
    if (sb.st_size == 0) {
        return 1;
    }
    if (open_as_is(path, &db) > 0 && db &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        blank = sqlite3_column_int64(s, 0) == 0;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return blank;
}

int store_sqlite_check(const char *dir, char *err, size_t errlen)
{
    char path[512];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", dir, FLEET_DB_FILE);
    if (lstat(path, &sb) != 0) {
        return 0;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file; move it away", path);
        return -1;
    }
    return foreign_db(path, &sb, err, errlen);
}

/* Opens DIR/tcpota.db (created 0600: SQLite gives its -wal and -shm the
 * same mode) with the pragmas the durability rules need, and migrates it. */
static int open_db(struct sstore *st, char *err, size_t errlen)
{
    char path[512];
    struct stat sb;
    int fd, rc;

    snprintf(path, sizeof(path), "%s/%s", st->dir, FLEET_DB_FILE);
    /* SQLite's memory statistics take a process-wide mutex on every
     * allocation (2 % of a check-in's CPU in perf): off, before SQLite
     * initialises, which foreign_db's read may be the first to do (later
     * calls are refused with SQLITE_MISUSE and change nothing). */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (store_sqlite_check(st->dir, err, errlen) != 0) {
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        int e = errno;
        char hint[FLEET_OWNER_HINT_MAX];
        snprintf(err, errlen, "cannot open %s: %s%s", path, strerror(e),
                 fleet_files_owner_hint(e, path, st->dir, hint, sizeof(hint)));
        return -1;
    }
    /* It holds the device secrets: a copy restored with another mode (cp,
     * sqlite3's .backup under umask 022 make 0644) is the server's alone
     * again, before SQLite makes its -wal and -shm in the same mode. */
    if (fstat(fd, &sb) == 0 && (sb.st_mode & SQ_DB_MODE_OTHERS) != 0 &&
        fchmod(fd, SQ_DB_MODE) != 0) {
        snprintf(err, errlen, "%s can be read by other users and cannot be made private (%s);"
                 " chmod 600 %s", path, strerror(errno), path);
        close(fd);
        return -1;
    }
    close(fd);
    /* NOMUTEX: the connection is used by one thread at a time (opened and
     * migrated here, then only the store thread, closed after it joined),
     * so SQLite's per-call mutex would only cost. */
    rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(st->db, SQ_BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(st->db, 0);
        /* temp_store = MEMORY: each request of a batch runs in a
         * savepoint, whose statement journal (the pages it changes, as they
         * were) spills to a temporary file past 64 KiB: 18 writes per
         * device of a 1,000-device rollout went there against 1.7 to the
         * WAL (bench/README.md, seventeenth session). Held in memory it is
         * at most what one request changes. */
        rc = sqlite3_exec(st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                          " PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;", NULL, NULL,
                          NULL);
    }
    if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) {
        snprintf(err, errlen, "%s is not a tcpota database or is damaged (SQLite: %s); move it"
                 " away and start again, or restore a backup", path, sqlite3_errmsg(st->db));
        return -1;
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        return -1;
    }
    if (check_db(st->db, path, err, errlen) != 0) {
        return -1;
    }
    if ((st->base.schema_from = sq_migrate(st->db, path, err, errlen)) < 0) {
        return -1;
    }
    st->base.schema_to = SQ_SCHEMA_VERSION;
    sq_note_files(st);
    return 0;
}

/* After a failed open: SQLite says "disk I/O error" where it cannot make
 * its -shm file on a full disk. When the disk holding dir has no room,
 * err says so and what to do. */
static void full_hint(const char *dir, char *err, size_t errlen)
{
    struct statvfs vfs;
    size_t len = strlen(err);

    if (statvfs(dir, &vfs) == 0 && vfs.f_bavail == 0 && len < errlen) {
        snprintf(err + len, errlen - len, "; the disk holding %s is full: free space there", dir);
    }
}

struct store *store_sqlite_open(const char *dir, struct event_base *base, char *err,
                                size_t errlen)
{
    struct sstore *st;
    struct store_worker_ops ops = {.run = run, .idle_ms = idle_ms};

    if (strlen(dir) >= sizeof(st->dir)) {
        snprintf(err, errlen, "the data directory path is too long: %s", dir);
        return NULL;
    }
    if (prepare_dir(dir, err, errlen) != 0) {
        return NULL;
    }
    st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->base.vt = &sqlite_vt;
    st->lock_fd = -1;
    store_worker_init(&st->w);
    snprintf(st->dir, sizeof(st->dir), "%s", dir);
    if ((st->lock_fd = fleet_lock_take(dir, err, errlen)) < 0 || open_db(st, err, errlen) != 0) {
        full_hint(dir, err, errlen);
        teardown(st);
        return NULL;
    }
    ops.ctx = st;
    ops.owner = &st->base;
    if (store_worker_start(&st->w, &ops, base, err, errlen) != 0) {
        teardown(st);
        return NULL;
    }
    return &st->base;
}
