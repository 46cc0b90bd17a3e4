/* test_store_sqlite.c - the SQLite fleet store (server/store_sqlite*.c):
 * every backend's tests (store_suite.c), then what only SQLite has: the data
 * directory, its lock, its file's damage and schema, a full disk. */
#include "store_suite.h"
#include "store_sqlite_internal.h" /* SQ_SCHEMA_VERSION */
#include "fleet_files.h"           /* fleet_lock_take */

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct store *open_sqlite(const struct fx *f, struct event_base *base, char *err,
                                 size_t errlen)
{
    return store_sqlite_open(f->dir, base, err, errlen);
}

static long long history_rows(const struct fx *f, const char *id)
{
    char path[600];
    sqlite3 *db;
    sqlite3_stmt *s;
    long long n = -1;

    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM device_history WHERE device_id = ?",
                                        -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static const struct ss_backend sqlite_backend = {open_sqlite, NULL, history_rows};

/* ---- open and close ---- */

/* Secrets and the database are the operator's alone: the WAL too. */
static void test_files_private(void **state)
{
    struct fx *f = *state;
    struct stat sb;
    char path[300];

    store_req_free(ss_checkin(f, "dev-1", NULL, 0));
    store_req_free(ss_image_add(f, 0xaa, "2.0.0"));
    snprintf(path, sizeof(path), "%s/tcpota.db-wal", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

/* A database restored with a broader mode (sqlite3's .backup and cp under
 * umask 022 write 0644) holds the secrets all the same: made 0600 at open. */
static void test_restored_db_made_private(void **state)
{
    struct fx *f = *state;
    struct stat sb;
    char path[300], err[300] = "";

    store_req_free(ss_checkin(f, "dev-1", NULL, 0));
    store_close(f->st);
    f->st = NULL;
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(chmod(path, 0644), 0);
    f->st = store_sqlite_open(f->dir, f->base, err, sizeof(err));
    assert_non_null(f->st);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void count_done(struct store_req *r)
{
    (*(unsigned *)r->arg)++;
    store_req_free(r);
}

/* A loop that lags behind the store thread must not keep the database's
 * write lock held: the store thread commits what it holds open before it
 * waits for the loop to run completions (store_worker_post). 600 check-ins
 * of new devices (writes that need no commit of their own) while the loop
 * runs none of their completions; another connection can then write. */
static void test_lagging_loop_holds_no_lock(void **state)
{
    enum { N = 600 };
    struct fx *f = *state;
    static char ids[N][16];
    struct timespec half = {0, 500000000L};
    unsigned done = 0;
    char path[300];
    sqlite3 *db;

    for (unsigned i = 0; i < N; i++) {
        struct store_req *r = store_req_new(STORE_CHECKIN, count_done, &done);
        assert_non_null(r);
        snprintf(ids[i], sizeof(ids[i]), "lag-%u", i);
        r->u.checkin.id = ids[i];
        r->u.checkin.model = MODEL;
        r->u.checkin.version = "1.0.0";
        r->u.checkin.addr = "127.0.0.1";
        r->now = 1796131200;
        assert_int_equal(store_submit(f->st, r), 0);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK | EVLOOP_ONCE); /* hands them over */
    nanosleep(&half, NULL); /* the store thread runs what it may, then waits */
    assert_true(done < N);
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    /* Not 0: the store thread may still be on its way to the wait (its
     * commit fsyncs; a loaded machine), and the lock is free only then. A
     * thread that waits holding it never frees it: this still fails. */
    sqlite3_busy_timeout(db, 10000);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    while (done < N) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void test_second_open_in_use(void **state)
{
    struct fx *f = *state;
    char err[256] = "", want[64];

    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    /* Held by this test's own process: neither a tcpota serve nor a
     * tcpota device by its command line (fleet_lock_holder). */
    assert_non_null(strstr(err, "is in use by another tcpota process"));
    snprintf(want, sizeof(want), "(pid %ld)", (long)getpid());
    assert_non_null(strstr(err, want));
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A child that holds DIR's lock (LOCK_SH or LOCK_EX) for ms, says so on
 * the pipe *rd once it does, then writes there when it let go (a double:
 * mono_s()); returns its pid. */
static pid_t hold_lock(const char *dir, int how, long ms, int *rd)
{
    int p[2];
    pid_t pid;
    char c;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char path[300];
        double at;
        int fd;
        snprintf(path, sizeof(path), "%s/" FLEET_LOCK_FILE, dir);
        fd = open(path, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || flock(fd, how) != 0 || write(p[1], "x", 1) != 1) _exit(1);
        nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
        flock(fd, LOCK_UN);
        at = mono_s();
        _exit(write(p[1], &at, sizeof at) == (ssize_t)sizeof at ? 0 : 1);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    *rd = p[0];
    return pid;
}

/* Another server starting on DIR asks whether it is in use by holding its
 * lock shared for an instant (fleet_lock_held): a server taking the lock
 * then tries once more and starts; one held for good still refuses. */
static void test_lock_held_for_an_instant(void **state)
{
    char dir[] = "/tmp/tcpota-lock-XXXXXX", err[512] = "", path[300];
    double t0, freed;
    pid_t pid;
    int fd, st, rd;
    (void)state;

    assert_non_null(mkdtemp(dir));
    pid = hold_lock(dir, LOCK_SH, 5, &rd);
    t0 = mono_s();
    fd = fleet_lock_take(dir, err, sizeof(err));
    assert_int_equal(read(rd, &freed, sizeof freed), (ssize_t)sizeof freed);
    /* The retry comes 20 ms after the first try: a refusal counts only when
     * the child let go well before it (a loaded machine may run it late). */
    if (fd < 0 && freed - t0 < 0.015) {
        fail_msg("a lock held shared for 5 ms (freed %.1f ms in) refused the start: %s",
                 (freed - t0) * 1e3, err);
    }
    if (fd >= 0) fleet_lock_release(fd);
    close(rd);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    pid = hold_lock(dir, LOCK_EX, 500, &rd);
    assert_int_equal(fleet_lock_take(dir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is in use"));
    close(rd);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    snprintf(path, sizeof(path), "%s/" FLEET_LOCK_FILE, dir);
    unlink(path);
    rmdir(dir);
}

static void test_garbage_db(void **state)
{
    char dir[] = "/tmp/tcpota-store-XXXXXX", path[300], err[300] = "", junk[4096];
    struct event_base *base = event_base_new();
    struct stat sb;
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tcpota.db", dir);
    memset(junk, 'x', sizeof(junk));
    fp = fopen(path, "wb");
    fwrite(junk, 1, sizeof(junk), fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0644), 0);
    assert_null(store_sqlite_open(dir, base, err, sizeof(err)));
    assert_non_null(strstr(err, "is not a tcpota database or is damaged"));
    assert_non_null(strstr(err, path));
    /* Refused before anything touched it: not made private. */
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    event_base_free(base);
    ss_rm_tree(dir);
}

/* Closes the fixture's store and runs sql on its database file; path
 * (cap bytes) gets the file's name. */
static void close_and_exec(struct fx *f, char *path, size_t cap, const char *sql)
{
    sqlite3 *db;

    store_close(f->st);
    f->st = NULL;
    snprintf(path, cap, "%s/tcpota.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A tcpota database damaged inside (its header intact, pages 3 to 5
 * overwritten): it opened, and every request then failed "malformed". */
static void test_damaged_db(void **state)
{
    struct fx *f = *state;
    char path[300], err[600] = "", junk[3 * 4096];
    struct stat sb;
    FILE *fp;

    /* Pages enough that the damage lands inside the file. */
    close_and_exec(f, path, sizeof(path), "CREATE TABLE pad (x); WITH RECURSIVE n(i) AS (SELECT 0"
                   " UNION ALL SELECT i + 1 FROM n WHERE i < 99) INSERT INTO pad SELECT"
                   " zeroblob(500) FROM n");
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size > 6 * 4096);
    memset(junk, 'x', sizeof(junk));
    fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 2 * 4096, SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
    fclose(fp);
    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "is damaged (SQLite's quick_check: "));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "restore the last backup"));
    assert_null(strchr(err, '\n'));
}

/* A database a newer tcpota migrated: refused, not downgraded. */
static void test_newer_schema(void **state)
{
    struct fx *f = *state;
    char path[300], err[300] = "";
    struct stat before, after;
    sqlite3 *db;

    close_and_exec(f, path, sizeof(path), "UPDATE schema_version SET version = 99");
    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 99, newer than this tcpota knows"));
    /* And another program's SQLite database is not taken for ours. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(stat(path, &before), 0);
    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "not a tcpota one"));
    /* Looked into read-only: neither made private nor switched to WAL
     * (which rewrites the header and changes the file's time). */
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_mode & 0777, 0644);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

/* Another program's database in WAL mode, in a directory whose name needs
 * escaping in a URI ('?', '#', '%', a space): refused without being made
 * private, and without a -shm or -wal left beside it. */
static void test_foreign_wal_db(void **state)
{
    char dir[] = "/tmp/tcpota-store-XXXXXX", sub[64], path[300], side[310], err[400] = "";
    struct event_base *base = event_base_new();
    struct stat sb;
    sqlite3 *db;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/a b?c#d%%41", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/tcpota.db", sub);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL; CREATE TABLE t (x);", NULL,
                                  NULL, NULL), SQLITE_OK);
    sqlite3_close(db); /* checkpoints: the table is in the file, no -wal left */
    assert_int_equal(chmod(path, 0644), 0);
    assert_null(store_sqlite_open(sub, base, err, sizeof(err)));
    assert_non_null(strstr(err, "not a tcpota one"));
    assert_non_null(strstr(err, path));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    snprintf(side, sizeof(side), "%s-shm", path);
    assert_int_equal(access(side, F_OK), -1);
    snprintf(side, sizeof(side), "%s-wal", path);
    assert_int_equal(access(side, F_OK), -1);
    /* And tcpota's own database in the same directory is still opened. */
    assert_int_equal(unlink(path), 0);
    {
        struct store *st = store_sqlite_open(sub, base, err, sizeof(err));
        assert_non_null(st);
        store_close(st);
        st = store_sqlite_open(sub, base, err, sizeof(err));
        assert_non_null(st);
        store_close(st);
    }
    event_base_free(base);
    ss_rm_tree(dir);
}

/* A database at schema 1 (before device_failures_dev) is migrated at open,
 * its rows kept. */
static void test_migrates_older_schema(void **state)
{
    struct fx *f = *state;
    char path[300], err[300] = "";
    sqlite3 *db;
    sqlite3_stmt *s;

    close_and_exec(f, path, sizeof(path), "DROP INDEX device_failures_dev;"
                                          "DROP INDEX devices_model_version;"
                                          "UPDATE schema_version SET version = 1;"
                                          "INSERT INTO secrets VALUES ('kept', x'00');");
    f->st = store_sqlite_open(f->dir, f->base, err, sizeof(err));
    assert_non_null(f->st);
    store_close(f->st);
    f->st = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT (SELECT version FROM schema_version),"
                                            " (SELECT count(*) FROM sqlite_master WHERE name ="
                                            " 'device_failures_dev') + (SELECT count(*) FROM"
                                            " sqlite_master WHERE name = 'devices_model_version'),"
                                            " (SELECT count(*) FROM secrets WHERE device_id = 'kept')",
                                        -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), SQ_SCHEMA_VERSION);
    assert_int_equal(sqlite3_column_int(s, 1), 2);
    assert_int_equal(sqlite3_column_int(s, 2), 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
    f->st = store_sqlite_open(f->dir, f->base, err, sizeof(err));
    assert_non_null(f->st);
}

/* ---- rows the store did not write (a hand-edited or damaged file) ---- */

static void batch_done(struct store_req *r)
{
    (*(int *)r->arg)++;
}

/* An image removed and the same bytes added again in one batch (within
 * the store's 200 ms window): the add's file stays (the removal's unlink
 * after the COMMIT took it: the row then named a missing file). */
static void test_rm_then_add_in_one_batch(void **state)
{
    struct fx *f = *state;
    struct store_req *rm, *add, *r;
    char tmp[300];
    struct stat sb;
    FILE *fp;
    int fired = 0;

    r = ss_image_add(f, 0x5a, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    snprintf(tmp, sizeof(tmp), "%s/images/.upload-again", f->dir);
    assert_non_null(fp = fopen(tmp, "wb"));
    fputs("image bytes", fp);
    fclose(fp);
    rm = store_req_new(STORE_IMAGE_RM, batch_done, &fired);
    add = store_req_new(STORE_IMAGE_ADD, batch_done, &fired);
    assert_non_null(rm);
    assert_non_null(add);
    ss_fake_id(rm->u.image.img->id, 0x5a);
    store_hex(rm->u.image.img->id, rm->u.image.img->idhex);
    add->u.image.path = tmp;
    ss_fake_id(add->u.image.img->id, 0x5a);
    snprintf(add->u.image.img->version, sizeof(add->u.image.img->version), "2.0.0");
    snprintf(add->u.image.img->model, sizeof(add->u.image.img->model), "%s", MODEL);
    add->u.image.img->size = 11;
    rm->now = add->now = NOW;
    assert_int_equal(store_submit(f->st, rm), 0);
    assert_int_equal(store_submit(f->st, add), 0);
    while (fired < 2) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(rm->rc, STORE_OK);
    assert_int_equal(add->rc, STORE_OK);
    assert_int_equal(add->u.image.added, 1);
    assert_int_equal(stat(add->u.image.img->path, &sb), 0);
    store_req_free(rm);
    store_req_free(add);
}

/* A failure row that is no image id is not handed to the offer policy. */
static void test_odd_failure_row_ignored(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    char path[300];
    struct store_req *r;

    ss_fake_id(img, 0x91);
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_ROLLED_BACK));
    close_and_exec(f, path, sizeof(path),
                   "INSERT INTO device_failures VALUES ('dev-1', x'0102')");
    ss_fx_open(f);
    r = ss_checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->nfailed, 1);
    assert_memory_equal(r->u.checkin.out->failed[0], img, TCPOTA_ID_LEN);
    store_req_free(r);
}

/* A rollout whose image row is gone offers nothing (no rollout for the
 * check-in), rather than an image the store could not read. */
static void test_rollout_without_image_row(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    char path[300];
    struct store_req *r;

    ss_checkin_free(f, "dev-1");
    store_req_free(ss_image_add(f, 0x92, "2.0.0"));
    (void)ss_rollout_create(f, 0x92, "", pct, 1);
    close_and_exec(f, path, sizeof(path), "DELETE FROM images");
    ss_fx_open(f);
    r = ss_checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.has_rollout, 0);
    store_req_free(r);
}

/* A rollout row's waves are read as the store writes them ("10,100"), and
 * no further: "10;100" is one wave of 10 %, not two. Waves that break the
 * rules (decreasing) leave the rollout without waves: it offers nothing. */
static void test_odd_pct_row(void **state)
{
    static const uint32_t pct[] = {10, 100};
    struct fx *f = *state;
    char path[300];
    struct store_req *r;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x94, "2.0.0"));
    ro = ss_rollout_create(f, 0x94, "", pct, 2);
    close_and_exec(f, path, sizeof(path), "UPDATE rollouts SET pct = '10;100'");
    ss_fx_open(f);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.rollout.r->ro.n_waves, 1);
    assert_int_equal(r->u.rollout.r->pct[0], 10);
    store_req_free(r);
    close_and_exec(f, path, sizeof(path), "UPDATE rollouts SET pct = '50,10'");
    ss_fx_open(f);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.rollout.r->ro.n_waves, 0);
    store_req_free(r);
}

/* A wave row past ROLLOUT_MAX_WAVES is skipped: read, it would land on the
 * rollout's other fields. */
static void test_wave_row_out_of_range(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    char path[300], sql[200];
    struct store_req *r;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x93, "2.0.0"));
    ro = ss_rollout_create(f, 0x93, "", pct, 1);
    snprintf(sql, sizeof(sql), "INSERT INTO rollout_waves VALUES (%llu, %u, 7, 7, 7, 7, 7, 7)",
             (unsigned long long)ro, ROLLOUT_MAX_WAVES);
    close_and_exec(f, path, sizeof(path), sql);
    ss_fx_open(f);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->created_at, NOW);
    assert_int_equal(r->u.rollout.r->base_failed, 0);
    store_req_free(r);
}

/* An image added from the very file the store keeps it in (the path the
 * store names it by) keeps that file when it is added again. */
static void test_add_from_stored_path(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    char path[512];

    r = ss_image_add(f, 0x94, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    snprintf(path, sizeof(path), "%s", r->u.image.img->path);
    store_req_free(r);
    r = ss_image_add_from(f, 0x94, "2.0.0", MODEL, path);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 0);
    store_req_free(r);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_dir_not_a_dir(void **state)
{
    char dir[] = "/tmp/tcpota-store-XXXXXX", path[300], err[300] = "";
    struct event_base *base = event_base_new();
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/file", dir);
    fp = fopen(path, "wb");
    fclose(fp);
    assert_null(store_sqlite_open(path, base, err, sizeof(err)));
    assert_non_null(strstr(err, "is not a directory"));
    unlink(path);
    /* A FIFO: no open() that would wait for a writer. */
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    err[0] = '\0';
    assert_null(store_sqlite_open(path, base, err, sizeof(err)));
    assert_non_null(strstr(err, "FIFO"));
    unlink(path);
    /* Missing: created, 0700. */
    snprintf(path, sizeof(path), "%s/data", dir);
    {
        struct store *st = store_sqlite_open(path, base, err, sizeof(err));
        struct stat sb;
        assert_non_null(st);
        store_close(st);
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0700);
    }
    ss_rm_tree(path);
    event_base_free(base);
    rmdir(dir);
}

static void full_disk_child(const char *dir)
{
    struct event_base *base = event_base_new();
    uint8_t img[TCPOTA_ID_LEN];
    struct rlimit lim = {256 * 1024, 256 * 1024};
    char err[256], id[64];
    struct store_req *r;
    struct fx f;
    int i, failed = 0;

    memset(&f, 0, sizeof(f));
    f.base = base;
    f.st = store_sqlite_open(dir, base, err, sizeof(err));
    if (!f.st) {
        _exit(2);
    }
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    for (i = 0; i < 400 && failed < 5; i++) {
        snprintf(id, sizeof(id), "full-%03d-%0*d", i, 40, i);
        ss_fake_id(img, (uint8_t)i);
        r = ss_checkin(&f, id, img, TCPOTA_RESULT_ROLLED_BACK);
        if (r->rc == STORE_E_IO && r->err[0]) {
            if (strstr(r->err, "the database failed")) {
                _exit(5); /* the API says that before the message: it came out twice */
            }
            failed++;
        } else if (r->rc != STORE_OK) {
            _exit(3);
        }
        store_req_free(r);
    }
    store_close(f.st);
    event_base_free(base);
    _exit(failed ? 0 : 4);
}

/* Runs child(dir) in a process of its own (its file size limit must not
 * outlive it), with the store closed meanwhile: it must exit 0; the store
 * is opened again after. */
static void in_child(struct fx *f, void (*child)(const char *dir))
{
    int status;
    pid_t pid;

    store_close(f->st);
    f->st = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child(f->dir);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ss_fx_open(f);
}

static void test_disk_full(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    in_child(f, full_disk_child);
    /* What was committed before the disk filled is intact. */
    r = ss_device_get(f, "full-000-0000000000000000000000000000000000000000");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev->state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
}

/* What the store told the operator (a child's: it exits with a code). */
static struct {
    int failed, again;
    char first[640];
} told;

static void on_notice(void *arg, int error, const char *msg)
{
    (void)arg;
    if (error && strncmp(msg, "commit: ", 8) == 0 && told.failed++ == 0) {
        snprintf(told.first, sizeof(told.first), "%s", msg);
    }
    told.again += !error && strstr(msg, "takes writes again") != NULL;
}

/* Exits with code unless text holds want (and says what it held). */
static void child_expect(int code, const char *text, const char *want)
{
    if (!strstr(text, want)) {
        fprintf(stderr, "exit %d: expected \"%s\" in \"%s\"\n", code, want, text);
        _exit(code);
    }
}

/* While COMMITs fail, a check-in is answered only after its own COMMIT:
 * no device is told anything (offered an image) on writes the disk will
 * not keep; once the disk takes writes again, so does the store. The
 * first failed COMMIT, at the end of a batch window whose check-ins were
 * answered already, is told once, with what was lost; while commits fail,
 * a device whose check-in went with it is not "no device" alone (the
 * store says why), and a device list says it may miss devices. The exit
 * code says what failed. */
static void failing_commit_child(const char *dir)
{
    struct event_base *base = event_base_new();
    struct rlimit lim;
    struct stat sb;
    char err[256], id[96], lost[96], path[512];
    struct store_req *r;
    struct fx f;
    int i, refused = -1, told_at = -1;

    memset(&f, 0, sizeof(f));
    f.base = base;
    f.st = store_sqlite_open(dir, base, err, sizeof(err));
    if (!f.st || getrlimit(RLIMIT_FSIZE, &lim) != 0) {
        _exit(2);
    }
    f.st->notice = on_notice;
    signal(SIGXFSZ, SIG_IGN);
    snprintf(path, sizeof(path), "%s/tcpota.db-wal", dir);
    lim.rlim_cur = (rlim_t)(stat(path, &sb) == 0 ? sb.st_size : 0) + 64 * 1024;
    setrlimit(RLIMIT_FSIZE, &lim);
    /* Check-ins without a report: each batched, none durable. */
    for (i = 0; i < 2000 && refused < 0; i++) {
        snprintf(id, sizeof(id), "wait-%04d-%0*d", i, 60, i);
        r = ss_checkin(&f, id, NULL, 0);
        if (r->rc == STORE_E_IO) {
            refused = i;
        } else if (r->rc != STORE_OK) {
            _exit(3);
        }
        store_req_free(r);
        if (told.failed && told_at < 0) {
            told_at = i; /* notices come before the completions posted after them */
        }
        usleep(2000);
    }
    if (refused < 0) {
        _exit(4); /* all answered OK, though the disk took none */
    }
    /* The first failed COMMIT was told before check-in told_at was
     * answered; the one answered before that went with it (a commit that
     * lost none is not what this test makes: checked below). */
    if (told_at < 1) {
        _exit(7);
    }
    snprintf(lost, sizeof(lost), "wait-%04d-%0*d", told_at - 1, 60, told_at - 1);
    for (i = 0; i < 3; i++) {
        /* A read commits fine; it says nothing of the disk. */
        store_req_free(ss_device_get(&f, "wait-0000"));
        r = ss_checkin(&f, "wait-still-full", NULL, 0);
        if (r->rc != STORE_E_IO) {
            _exit(5); /* answered before a COMMIT while they fail */
        }
        store_req_free(r);
    }
    /* RLIMIT_FSIZE makes SQLite's error "disk I/O error", not "disk full". */
    child_expect(8, told.first, "commit: disk I/O error; lost with it: ");
    child_expect(8, told.first, " check-ins already answered");
    r = ss_device_get(&f, lost);
    if (r->rc != STORE_E_NOTFOUND) {
        _exit(9);
    }
    child_expect(10, r->err, "; the last commit failed (disk I/O error): a device that checked in");
    store_req_free(r);
    r = ss_req(STORE_EVENT);
    r->u.event.id = lost;
    r->u.event.state = STORE_ST_DOWNLOADING;
    r = ss_run(&f, r);
    if (r->rc != STORE_E_NOTFOUND) {
        _exit(11);
    }
    child_expect(12, r->err, "its check-in went with the commit that failed");
    store_req_free(r);
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r = ss_run(&f, r);
    if (r->rc != STORE_OK) {
        _exit(13);
    }
    child_expect(14, r->err, "the last commit failed (disk I/O error)");
    store_req_free(r);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_FSIZE, &lim);
    i = told.again;
    r = ss_checkin(&f, "wait-room-again", NULL, 0);
    if (r->rc != STORE_OK) {
        _exit(6);
    }
    store_req_free(r);
    if (told.again != i + 1) {
        _exit(15); /* the recovery is told */
    }
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r = ss_run(&f, r);
    if (r->rc != STORE_OK || r->err[0]) {
        _exit(16); /* a warning once commits succeed again */
    }
    store_req_free(r);
    store_close(f.st);
    event_base_free(base);
    _exit(0);
}

static void test_failing_commits_answer_nothing_early(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    in_child(f, failing_commit_child);
    r = ss_device_get(f, "wait-room-again");
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "wait-still-full");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
}

/* Ids as the stores keep them: 64 lowercase hex digits, read back in
 * either case; anything else is refused (libsodium's codec). */
static void test_hex_ids(void **state)
{
    uint8_t id[TCPOTA_ID_LEN], back[TCPOTA_ID_LEN];
    char hex[2 * TCPOTA_ID_LEN + 2];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(id); i++) {
        id[i] = (uint8_t)(i * 37 + 0xa5);
    }
    store_hex(id, hex);
    assert_int_equal(strlen(hex), 2 * TCPOTA_ID_LEN);
    assert_int_equal(strncmp(hex, "a5caef", 6), 0);
    assert_int_equal(store_unhex(hex, back), 0);
    assert_memory_equal(back, id, sizeof(id));
    hex[0] = 'A';
    assert_int_equal(store_unhex(hex, back), 0);
    hex[1] = 'g';
    assert_int_equal(store_unhex(hex, back), -1);
    hex[1] = '5';
    hex[2 * TCPOTA_ID_LEN - 1] = '\0'; /* one digit short */
    assert_int_equal(store_unhex(hex, back), -1);
    hex[2 * TCPOTA_ID_LEN - 1] = '0';
    hex[2 * TCPOTA_ID_LEN] = '0'; /* one digit more */
    hex[2 * TCPOTA_ID_LEN + 1] = '\0';
    assert_int_equal(store_unhex(hex, back), -1);
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test_setup_teardown(test_files_private, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_restored_db_made_private, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_second_open_in_use, ss_setup, ss_teardown),
        cmocka_unit_test(test_lock_held_for_an_instant),
        cmocka_unit_test_setup_teardown(test_lagging_loop_holds_no_lock, ss_setup, ss_teardown),
        cmocka_unit_test(test_hex_ids),
        cmocka_unit_test(test_garbage_db),
        cmocka_unit_test(test_dir_not_a_dir),
        cmocka_unit_test_setup_teardown(test_damaged_db, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, ss_setup, ss_teardown),
        cmocka_unit_test(test_foreign_wal_db),
        cmocka_unit_test_setup_teardown(test_rm_then_add_in_one_batch, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_migrates_older_schema, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_odd_failure_row_ignored, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_rollout_without_image_row, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_odd_pct_row, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_wave_row_out_of_range, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_add_from_stored_path, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_failing_commits_answer_nothing_early, ss_setup,
                                        ss_teardown),
    };
    return ss_run_all("store_sqlite", &sqlite_backend, own, sizeof(own) / sizeof(own[0]));
}
