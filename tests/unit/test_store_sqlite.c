/* test_store_sqlite.c - the SQLite fleet store (server/store_sqlite*.c)
 * through its asynchronous API, for real: a libevent loop, submit, and the
 * loop run until done fires. Each test has its own data directory. */
#define _XOPEN_SOURCE 700 /* nftw() */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

#define NOW 1796131200 /* the clock every request carries */
#define MODEL "esp32-devkit"

struct fx {
    char dir[256];
    struct event_base *base;
    struct store *st;
};

/* ---- the harness ---- */

static void on_done(struct store_req *r)
{
    (*(int *)r->arg)++;
}

/* Submits r and runs the loop until its done fired; returns r. */
static struct store_req *run(struct fx *f, struct store_req *r)
{
    int fired = 0;

    r->done = on_done;
    r->arg = &fired;
    r->now = r->now ? r->now : NOW;
    assert_int_equal(store_submit(f->st, r), 0);
    while (!fired) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    return r;
}

static struct store_req *req(enum store_op op)
{
    struct store_req *r = store_req_new(op, on_done, NULL);

    assert_non_null(r);
    return r;
}

static void fx_open(struct fx *f)
{
    char err[256] = "";

    f->st = store_sqlite_open(f->dir, f->base, err, sizeof(err));
    if (!f->st) {
        fail_msg("open: %s", err);
    }
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/tcpota-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    fx_open(f);
    *state = f;
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a test's data directory: unlike tmpdir.h's flat directories, it
 * holds images/. */
static void rm_tree(const char *dir)
{
    (void)nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->st);
    event_base_free(f->base);
    rm_tree(f->dir);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    store_close(f->st);
    fx_open(f);
}

/* ---- request helpers ---- */

static void fake_id(uint8_t *id, uint8_t seed)
{
    memset(id, seed, TCPOTA_ID_LEN);
}

static struct store_req *checkin(struct fx *f, const char *id, const uint8_t *report,
                                 uint16_t result)
{
    struct store_req *r = req(STORE_CHECKIN);

    r->u.checkin.id = id;
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.0.0";
    r->u.checkin.addr = "127.0.0.1";
    r->u.checkin.report_id = report;
    r->u.checkin.report_result = result;
    return run(f, r);
}

static void checkin_free(struct fx *f, const char *id)
{
    struct store_req *r = checkin(f, id, NULL, 0);

    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
}

static int event(struct fx *f, const char *id, enum store_dev_state s, uint64_t rollout,
                 uint32_t bytes)
{
    struct store_req *r = req(STORE_EVENT);
    int rc;

    r->u.event.id = id;
    r->u.event.state = s;
    r->u.event.rollout_id = rollout;
    r->u.event.bytes = bytes;
    r->u.event.size = 1000;
    rc = run(f, r)->rc;
    store_req_free(r);
    return rc;
}

/* Item i of a STORE_EVENTS batch for device id (image: seed repeated, 0: none). */
static void item(struct store_event *e, const char *id, enum store_dev_state s, uint8_t image,
                 uint64_t rollout, uint32_t bytes, const char *reason, int durable)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->state = s;
    if (image) {
        e->has_image = 1;
        fake_id(e->image_id, image);
    }
    e->rollout_id = rollout;
    e->bytes = bytes;
    e->size = 1000;
    if (reason) {
        e->has_reason = 1;
        snprintf(e->reason, sizeof(e->reason), "%s", reason);
    }
    e->durable = (uint8_t)durable;
}

/* A STORE_EVENTS request owning a copy of the n items. */
static struct store_req *events_req(const struct store_event *items, size_t n)
{
    struct store_req *r = req(STORE_EVENTS);

    r->u.events.items = malloc(n * sizeof(*items));
    assert_non_null(r->u.events.items);
    memcpy(r->u.events.items, items, n * sizeof(*items));
    r->u.events.n = n;
    return r;
}

/* Adds an image whose (fake) id is seed repeated, from a file the caller
 * wrote in DIR/images/ as the API will. Returns the request. */
static struct store_req *image_add(struct fx *f, uint8_t seed, const char *version)
{
    struct store_req *r = req(STORE_IMAGE_ADD);
    static char tmp[300];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s/images/.upload-%u", f->dir, seed);
    fp = fopen(tmp, "wb");
    assert_non_null(fp);
    fputs("image bytes", fp);
    fclose(fp);
    r->u.image.path = tmp;
    fake_id(r->u.image.img.id, seed);
    snprintf(r->u.image.img.version, sizeof(r->u.image.img.version), "%s", version);
    snprintf(r->u.image.img.model, sizeof(r->u.image.img.model), "%s", MODEL);
    r->u.image.img.size = 11;
    return run(f, r);
}

static uint64_t rollout_create(struct fx *f, uint8_t seed, const char *group,
                               const uint32_t *pct, uint32_t n)
{
    struct store_req *r = req(STORE_ROLLOUT_CREATE);
    uint64_t id;

    fake_id(r->u.rollout.r.image_id, seed);
    snprintf(r->u.rollout.r.model, sizeof(r->u.rollout.r.model), "%s", MODEL);
    snprintf(r->u.rollout.r.group, sizeof(r->u.rollout.r.group), "%s", group);
    memcpy(r->u.rollout.r.pct, pct, n * sizeof(*pct));
    r->u.rollout.r.ro.n_waves = n;
    r->u.rollout.r.rules.halt_pct = 20;
    run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    id = r->u.rollout.r.id;
    assert_true(id > 0);
    store_req_free(r);
    return id;
}

/* The rollout as stored now (the caller frees the request). */
static struct store_req *rollout_get(struct fx *f, uint64_t id)
{
    struct store_req *r = req(STORE_ROLLOUT_GET);

    r->u.rollout.id = id;
    run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    return r;
}

static int rollout_set(struct fx *f, uint64_t id, enum rollout_state from, uint32_t from_open,
                       enum rollout_state to, uint32_t to_open)
{
    struct store_req *r = req(STORE_ROLLOUT_SET);
    int rc;

    r->u.rollout.id = id;
    r->u.rollout.expect_state = from;
    r->u.rollout.expect_n_open = from_open;
    r->u.rollout.new_state = to;
    r->u.rollout.new_n_open = to_open;
    r->now = NOW + 60;
    rc = run(f, r)->rc;
    store_req_free(r);
    return rc;
}

/* The wave of a device, counted independently of the store. */
static uint32_t wave_of(uint64_t ro_id, const char *dev, const uint32_t *pct, uint32_t n)
{
    uint32_t place = rollout_place(ro_id, dev, strlen(dev)), k;

    for (k = 0; k < n; k++) {
        if (place < pct[k] * 100u) {
            return k;
        }
    }
    return n;
}

static void dev_name(char *buf, size_t size, unsigned i)
{
    snprintf(buf, size, "dev-%04u", i);
}

/* Registers n devices, all submitted before the loop runs (one batch). */
static void register_devices(struct fx *f, unsigned n)
{
    struct store_req **rs = calloc(n, sizeof(*rs));
    char (*ids)[16] = calloc(n, sizeof(*ids));
    int fired = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        dev_name(ids[i], sizeof(ids[i]), i);
        rs[i] = req(STORE_CHECKIN);
        rs[i]->arg = &fired;
        rs[i]->now = NOW;
        rs[i]->u.checkin.id = ids[i];
        rs[i]->u.checkin.model = MODEL;
        rs[i]->u.checkin.version = "1.0.0";
        assert_int_equal(store_submit(f->st, rs[i]), 0);
    }
    while (fired < (int)n) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    for (i = 0; i < n; i++) {
        assert_int_equal(rs[i]->rc, STORE_OK);
        assert_int_equal(rs[i]->u.checkin.is_new, 1);
        store_req_free(rs[i]);
    }
    free(rs);
    free(ids);
}

static struct store_req *device_get(struct fx *f, const char *id)
{
    struct store_req *r = req(STORE_DEVICE_GET);

    r->u.device.id = id;
    return run(f, r);
}

/* ---- open and close ---- */

static void test_reopen_keeps_data(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct stat sb;
    char path[300];

    checkin_free(f, "dev-1");
    store_req_free(image_add(f, 0xaa, "2.0.0"));
    /* Secrets and the database are the operator's alone: the WAL too. */
    snprintf(path, sizeof(path), "%s/tcpota.db-wal", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    reopen(f);
    r = device_get(f, "dev-1");
    assert_int_equal(r->rc, STORE_OK);
    assert_string_equal(r->u.device.dev.model, MODEL);
    assert_int_equal(r->u.device.dev.first_seen, NOW);
    store_req_free(r);
    r = run(f, req(STORE_IMAGE_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_image *)r->u.list.rows)[0].version, "2.0.0");
    store_req_free(r);
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void test_second_open_in_use(void **state)
{
    struct fx *f = *state;
    char err[256] = "", want[64];

    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "is in use by another tcpota serve"));
    snprintf(want, sizeof(want), "(pid %ld)", (long)getpid());
    assert_non_null(strstr(err, want));
}

static void test_garbage_db(void **state)
{
    char dir[] = "/tmp/tcpota-store-XXXXXX", path[300], err[300] = "", junk[4096];
    struct event_base *base = event_base_new();
    FILE *fp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tcpota.db", dir);
    memset(junk, 'x', sizeof(junk));
    fp = fopen(path, "wb");
    fwrite(junk, 1, sizeof(junk), fp);
    fclose(fp);
    assert_null(store_sqlite_open(dir, base, err, sizeof(err)));
    assert_non_null(strstr(err, "is not a tcpota database or is damaged"));
    assert_non_null(strstr(err, path));
    event_base_free(base);
    rm_tree(dir);
}

/* A database a newer tcpota migrated: refused, not downgraded. */
static void test_newer_schema(void **state)
{
    struct fx *f = *state;
    char path[300], err[300] = "";
    sqlite3 *db;

    store_close(f->st);
    f->st = NULL;
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 99, newer than this tcpota knows"));
    /* And another program's SQLite database is not taken for ours. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(store_sqlite_open(f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "not a tcpota one"));
}

/* A database at schema 1 (before device_failures_dev) is migrated at open,
 * its rows kept. */
static void test_migrates_older_schema(void **state)
{
    struct fx *f = *state;
    char path[300], err[300] = "";
    sqlite3 *db;
    sqlite3_stmt *s;

    store_close(f->st);
    f->st = NULL;
    snprintf(path, sizeof(path), "%s/tcpota.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP INDEX device_failures_dev;"
                                      "DROP INDEX devices_model_version;"
                                      "UPDATE schema_version SET version = 1;"
                                      "INSERT INTO secrets VALUES ('kept', x'00');",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
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
    assert_int_equal(sqlite3_column_int(s, 0), 3);
    assert_int_equal(sqlite3_column_int(s, 1), 2);
    assert_int_equal(sqlite3_column_int(s, 2), 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
    f->st = store_sqlite_open(f->dir, f->base, err, sizeof(err));
    assert_non_null(f->st);
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
    rm_tree(path);
    event_base_free(base);
    rmdir(dir);
}

/* ---- check-in and reports ---- */

static void test_checkin_registers_once(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    r = checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.is_new, 1);
    assert_int_equal(r->u.checkin.has_rollout, 0);
    assert_int_equal(r->u.checkin.nfailed, 0);
    store_req_free(r);
    r = checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->u.checkin.is_new, 0);
    store_req_free(r);
    r = device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev.state, STORE_ST_SEEN);
    assert_string_equal(r->u.device.dev.addr, "127.0.0.1");
    store_req_free(r);
}

/* What a check-in returns as the device is what the store holds, whether
 * it was read again or built from the row before (no report). */
static void test_checkin_returns_stored_row(void **state)
{
    struct fx *f = *state;
    static const uint8_t running[TCPOTA_ID_LEN] = {0xab, 1, 2, 3};
    struct store_req *r, *g;
    struct store_device d;

    checkin_free(f, "dev-1");
    r = req(STORE_CHECKIN);
    r->u.checkin.id = "dev-1";
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.2.3";
    r->u.checkin.addr = "127.0.0.9";
    r->u.checkin.running_id = running;
    r->u.checkin.proto = STORE_PROTO_LEGACY;
    r = run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    d = r->u.checkin.out->dev;
    store_req_free(r);
    g = device_get(f, "dev-1");
    assert_string_equal(d.version, "1.2.3");
    assert_string_equal(d.version, g->u.device.dev.version);
    assert_string_equal(d.addr, "127.0.0.9");
    assert_string_equal(d.addr, g->u.device.dev.addr);
    assert_string_equal(d.running, g->u.device.dev.running);
    assert_int_equal(strncmp(d.running, "ab010203", 8), 0);
    assert_string_equal(d.model, g->u.device.dev.model);
    assert_string_equal(d.group, g->u.device.dev.group);
    assert_int_equal(d.proto, STORE_PROTO_LEGACY);
    assert_int_equal(d.proto, g->u.device.dev.proto);
    assert_int_equal(d.state, g->u.device.dev.state);
    assert_int_equal(d.last_seen, g->u.device.dev.last_seen);
    assert_int_equal(d.first_seen, g->u.device.dev.first_seen);
    store_req_free(g);
}

static void test_report_applied_once(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t nhist;
    int i;

    fake_id(img, 0x11);
    checkin_free(f, "dev-1");
    for (i = 0; i < 3; i++) {
        r = checkin(f, "dev-1", img, TCPOTA_RESULT_ROLLED_BACK);
        assert_int_equal(r->rc, STORE_OK);
        /* The failed image comes back for the offer policy. */
        assert_int_equal(r->u.checkin.nfailed, 1);
        assert_memory_equal(r->u.checkin.failed[0], img, TCPOTA_ID_LEN);
        store_req_free(r);
    }
    r = device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev.state, STORE_ST_ROLLED_BACK);
    nhist = r->u.device.nhistory;
    assert_int_equal(nhist, 2); /* seen, rolled back: once */
    assert_int_equal(r->u.device.history[0].state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
}

/* A child process checks in with a report and dies without closing. */
static void crash_child(const char *dir, int with_report)
{
    char err[256];
    struct event_base *base = event_base_new();
    struct store *st = store_sqlite_open(dir, base, err, sizeof(err));
    struct fx f;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;

    if (!st) {
        _exit(2);
    }
    memset(&f, 0, sizeof(f));
    f.base = base;
    f.st = st;
    fake_id(img, 0x22);
    r = checkin(&f, "dev-crash", with_report == 1 ? img : NULL, TCPOTA_RESULT_CONFIRMED);
    if (r->rc != STORE_OK) {
        _exit(3);
    }
    if (with_report == 2) {
        /* A batch holding a final step: on disk when done runs. */
        struct store_event it[2];
        item(&it[0], "dev-crash", STORE_ST_DOWNLOADING, 0x22, 0, 0, NULL, 0);
        item(&it[1], "dev-crash", STORE_ST_VERIFIED, 0x22, 0, 1000, NULL, 1);
        r = run(&f, events_req(it, 2));
        _exit(r->rc == STORE_OK ? 0 : 4); /* at once: no batch window passes */
    }
    if (!with_report) {
        r = req(STORE_EVENT);
        r->u.event.id = "dev-crash";
        r->u.event.state = STORE_ST_DOWNLOADING;
        r->u.event.bytes = 4096;
        r->u.event.size = 8192;
        run(&f, r);
        /* Past one batch window: the progress must be on disk by now. */
        usleep(3 * STORE_BATCH_MS * 1000);
    }
    _exit(0); /* no close: as SIGKILL would */
}

static void crash_and_reopen(struct fx *f, int with_report)
{
    int status;
    pid_t pid;

    store_close(f->st);
    f->st = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        crash_child(f->dir, with_report);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    fx_open(f);
}

static void test_report_survives_crash(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    char hex[2 * TCPOTA_ID_LEN + 1];

    crash_and_reopen(f, 1);
    r = device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev.state, STORE_ST_UPDATED);
    memset(hex, '2', 2 * TCPOTA_ID_LEN);
    hex[2 * TCPOTA_ID_LEN] = '\0';
    assert_string_equal(r->u.device.dev.image, hex);
    store_req_free(r);
}

static void test_progress_one_batch_behind(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    crash_and_reopen(f, 0);
    r = device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev.state, STORE_ST_DOWNLOADING);
    assert_int_equal(r->u.device.dev.bytes, 4096);
    store_req_free(r);
}

/* A child whose files may not grow (as on a full disk) keeps getting
 * answers: errors, never a crash, and every done runs. */
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
        fake_id(img, (uint8_t)i);
        r = checkin(&f, id, img, TCPOTA_RESULT_ROLLED_BACK);
        if (r->rc == STORE_E_IO && r->err[0]) {
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

static void test_disk_full(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    int status;
    pid_t pid;

    store_close(f->st);
    f->st = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        full_disk_child(f->dir);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* What was committed before the disk filled is intact. */
    fx_open(f);
    r = device_get(f, "full-000-0000000000000000000000000000000000000000");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev.state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
}

/* ---- rollouts ---- */

static void test_rollout_waves_targeted(void **state)
{
    static const uint32_t pct[] = {10, 50, 100}, half[] = {10, 50};
    struct fx *f = *state;
    uint32_t want[4] = {0}, want_half[3] = {0};
    struct store_req *r;
    char id[16];
    uint64_t ro, ro2;
    unsigned i;

    register_devices(f, 200);
    store_req_free(image_add(f, 0x33, "2.0.0"));
    ro = rollout_create(f, 0x33, "", pct, 3);
    r = rollout_get(f, ro);
    for (i = 0; i < 200; i++) {
        dev_name(id, sizeof(id), i);
        want[wave_of(ro, id, pct, 3)]++;
    }
    for (i = 0; i < 3; i++) {
        assert_int_equal(r->u.rollout.r.waves[i].targeted, want[i]);
        assert_int_equal(r->u.rollout.r.pct[i], pct[i]);
    }
    assert_int_equal(r->u.rollout.r.ro.n_open, 1);
    assert_int_equal(r->u.rollout.r.ro.bound[1], 5000);
    assert_int_equal(r->u.rollout.r.waves[0].opened_at, NOW);
    assert_int_equal(r->u.rollout.r.ro.state, ROLLOUT_STATE_ACTIVE);
    store_req_free(r);
    /* Waves that stop at half: the rest is in no wave, counted nowhere. */
    ro2 = rollout_create(f, 0x33, "", half, 2);
    r = rollout_get(f, ro2);
    for (i = 0; i < 200; i++) {
        dev_name(id, sizeof(id), i);
        want_half[wave_of(ro2, id, half, 2)]++;
    }
    assert_int_equal(r->u.rollout.r.waves[0].targeted, want_half[0]);
    assert_int_equal(r->u.rollout.r.waves[1].targeted, want_half[1]);
    assert_true(want_half[2] > 0);
    store_req_free(r);
    /* A device registered after the rollout joins its wave at check-in. */
    r = checkin(f, "late-device", NULL, 0);
    assert_int_equal(r->u.checkin.has_rollout, 1);
    assert_int_equal(r->u.checkin.out->rollout.id, ro2);
    assert_int_equal(r->u.checkin.ro_status, STORE_RO_TARGETED);
    i = wave_of(ro2, "late-device", half, 2);
    if (i < 2) {
        assert_int_equal(r->u.checkin.out->rollout.waves[i].targeted, want_half[i] + 1);
    }
    assert_string_equal(r->u.checkin.out->image.version, "2.0.0");
    assert_non_null(strstr(r->u.checkin.out->image.path, "/images/3333"));
    store_req_free(r);
}

static void expect_counts(struct fx *f, uint64_t ro, uint32_t wave, uint32_t offered,
                          uint32_t downloading, uint32_t updated, uint32_t failed)
{
    struct store_req *r = rollout_get(f, ro);
    const struct rollout_wave *w = &r->u.rollout.r.waves[wave];

    assert_int_equal(w->offered, offered);
    assert_int_equal(w->downloading, downloading);
    assert_int_equal(w->updated, updated);
    assert_int_equal(w->failed, failed);
    store_req_free(r);
}

static void test_counters_follow_events(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    uint64_t ro;

    checkin_free(f, "dev-a");
    checkin_free(f, "dev-b");
    store_req_free(image_add(f, 0x44, "2.0.0"));
    ro = rollout_create(f, 0x44, "", pct, 1);
    fake_id(img, 0x44);
    assert_int_equal(event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 1, 0, 0, 0);
    assert_int_equal(event(f, "dev-a", STORE_ST_DOWNLOADING, ro, 0), STORE_OK);
    assert_int_equal(event(f, "dev-a", STORE_ST_DOWNLOADING, ro, 500), STORE_OK);
    expect_counts(f, ro, 0, 0, 1, 0, 0);
    assert_int_equal(event(f, "dev-a", STORE_ST_VERIFIED, ro, 1000), STORE_OK);
    expect_counts(f, ro, 0, 0, 1, 0, 0);
    /* The report, twice: counted once. */
    store_req_free(checkin(f, "dev-a", img, TCPOTA_RESULT_CONFIRMED));
    r = checkin(f, "dev-a", img, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(r->u.checkin.ro_status, STORE_RO_UPDATED);
    assert_int_equal(r->u.checkin.out->rollout.waves[0].updated, 1);
    store_req_free(r);
    expect_counts(f, ro, 0, 0, 0, 1, 0);
    /* A late offer does not undo a success. */
    assert_int_equal(event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 1, 0);
    /* A failure, repeated: counted once. */
    assert_int_equal(event(f, "dev-b", STORE_ST_OFFERED, ro, 0), STORE_OK);
    assert_int_equal(event(f, "dev-b", STORE_ST_FAILED, ro, 0), STORE_OK);
    assert_int_equal(event(f, "dev-b", STORE_ST_DECLINED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 1, 1);
    r = rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r.waves[0].targeted, 2);
    store_req_free(r);
}

/* STORE_EVENTS: the items apply in order, each as one STORE_EVENT would;
 * one for an unknown device is skipped, counted and named, the rest stay. */
static void test_events_batch(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_event it[8];
    struct store_req *r;
    char hex[2 * TCPOTA_ID_LEN + 1];
    uint64_t ro;

    checkin_free(f, "dev-a");
    checkin_free(f, "dev-b");
    store_req_free(image_add(f, 0x46, "2.0.0"));
    ro = rollout_create(f, 0x46, "", pct, 1);
    item(&it[0], "dev-a", STORE_ST_OFFERED, 0x46, ro, 0, NULL, 0);
    item(&it[1], "dev-ghost", STORE_ST_DOWNLOADING, 0x46, ro, 0, NULL, 0);
    item(&it[2], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 100, NULL, 0);
    item(&it[3], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 500, NULL, 0); /* progress */
    item(&it[4], "dev-b", STORE_ST_OFFERED, 0x46, ro, 0, NULL, 0);
    item(&it[5], "dev-b", STORE_ST_FAILED, 0x46, ro, 0, "integrity", 1);
    it[5].has_failed = 1;
    fake_id(it[5].failed_id, 0x46);
    item(&it[6], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 900, NULL, 0);   /* progress */
    item(&it[7], "dev-a", STORE_ST_VERIFIED, 0x46, ro, 1000, NULL, 0);
    r = run(f, events_req(it, 8));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 1);
    assert_non_null(strstr(r->err, "no device dev-ghost"));
    store_req_free(r);
    for (size_t i = 0; i < TCPOTA_ID_LEN; i++) {
        memcpy(hex + 2 * i, "46", 2);
    }
    hex[2 * TCPOTA_ID_LEN] = '\0';
    r = device_get(f, "dev-a");
    assert_int_equal(r->u.device.dev.state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.dev.bytes, 1000);
    assert_string_equal(r->u.device.dev.image, hex);
    /* One line per change, newest first, progress none: the order held. */
    assert_int_equal(r->u.device.nhistory, 4);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_string_equal(r->u.device.history[1].detail, "from byte 100 of 1000");
    assert_int_equal(r->u.device.history[2].state, STORE_ST_OFFERED);
    assert_int_equal(r->u.device.history[3].state, STORE_ST_SEEN);
    store_req_free(r);
    r = device_get(f, "dev-b");
    assert_int_equal(r->u.device.dev.state, STORE_ST_FAILED);
    assert_string_equal(r->u.device.dev.reason, "integrity");
    store_req_free(r);
    r = checkin(f, "dev-b", NULL, 0);
    assert_int_equal(r->u.checkin.nfailed, 1);
    store_req_free(r);
    expect_counts(f, ro, 0, 0, 1, 0, 1);
    r = device_get(f, "dev-ghost");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
    /* An empty batch is a no-op; a batch of unknown devices only skips. */
    r = run(f, req(STORE_EVENTS));
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    r = run(f, events_req(&it[1], 1));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 1);
    store_req_free(r);
}

static void test_events_batch_survives_crash(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    crash_and_reopen(f, 2);
    r = device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev.state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.nhistory, 3); /* seen, downloading, verified */
    store_req_free(r);
}

static void test_supersede_and_group(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t all1, canary, all2;
    enum store_ro_status st;

    checkin_free(f, "dev-plain");
    checkin_free(f, "dev-canary");
    store_req_free(image_add(f, 0x51, "2.0.0"));
    store_req_free(image_add(f, 0x52, "2.1.0"));
    all1 = rollout_create(f, 0x51, "", pct, 1);
    /* Grouping a device adds it to its group's rollout once one exists. */
    r = req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "dev-canary";
    r->u.device.group = "canary";
    assert_int_equal(run(f, r)->rc, STORE_OK);
    assert_string_equal(r->u.device.dev.group, "canary");
    store_req_free(r);
    canary = rollout_create(f, 0x52, "canary", pct, 1);
    r = rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r.waves[0].targeted, 1);
    store_req_free(r);
    all2 = rollout_create(f, 0x52, "", pct, 1);
    r = rollout_get(f, all1);
    assert_int_equal(r->u.rollout.r.superseded, 1);
    store_req_free(r);
    r = rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r.superseded, 0);
    store_req_free(r);
    /* The group's rollout first, even when a newer model-wide one exists. */
    r = checkin(f, "dev-canary", NULL, 0);
    assert_string_equal(r->u.checkin.group, "canary");
    assert_int_equal(r->u.checkin.out->rollout.id, canary);
    store_req_free(r);
    r = checkin(f, "dev-plain", NULL, 0);
    assert_int_equal(r->u.checkin.out->rollout.id, all2);
    st = r->u.checkin.ro_status;
    assert_int_equal(st, STORE_RO_TARGETED);
    store_req_free(r);
    /* Moving a device into the group adds its row in the group's rollout. */
    r = req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "dev-plain";
    r->u.device.group = "canary";
    assert_int_equal(run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r.waves[0].targeted, 2);
    store_req_free(r);
    r = req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "nobody";
    r->u.device.group = "x";
    assert_int_equal(run(f, r)->rc, STORE_E_NOTFOUND);
    store_req_free(r);
}

static void test_rollout_cas(void **state)
{
    static const uint32_t pct[] = {10, 100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t ro;

    store_req_free(image_add(f, 0x61, "2.0.0"));
    ro = rollout_create(f, 0x61, "", pct, 2);
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_PAUSED, 1),
                     STORE_OK);
    /* The second decider lost. */
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_HALTED, 1),
                     STORE_E_CONFLICT);
    assert_int_equal(rollout_set(f, 99, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_PAUSED, 1),
                     STORE_E_NOTFOUND);
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_PAUSED, 1, ROLLOUT_STATE_ACTIVE, 2),
                     STORE_OK);
    r = rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r.ro.state, ROLLOUT_STATE_ACTIVE);
    assert_int_equal(r->u.rollout.r.ro.n_open, 2);
    assert_int_equal(r->u.rollout.r.waves[1].opened_at, NOW + 60);
    assert_int_equal(r->u.rollout.r.changed_at, NOW + 60);
    store_req_free(r);
    /* Waves never close. */
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 2, ROLLOUT_STATE_ACTIVE, 1),
                     STORE_E_INVAL);
    r = req(STORE_ROLLOUT_LIST);
    run(f, r);
    assert_int_equal(r->u.list.n, 1);
    assert_int_equal(((struct store_rollout *)r->u.list.rows)[0].ro.n_open, 2);
    store_req_free(r);
}

/* ---- images ---- */

static int image_rm(struct fx *f, const char *key, char *err)
{
    struct store_req *r = req(STORE_IMAGE_RM);
    int rc;

    snprintf(r->u.image.img.idhex, sizeof(r->u.image.img.idhex), "%s", key);
    rc = run(f, r)->rc;
    if (err) {
        strcpy(err, r->err);
    }
    store_req_free(r);
    return rc;
}

static void test_images(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    char err[STORE_ERR_MAX], path[512];
    uint64_t ro;

    r = image_add(f, 0x71, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    snprintf(path, sizeof(path), "%s", r->u.image.img.path);
    assert_int_equal(access(path, F_OK), 0);
    store_req_free(r);
    /* The same bytes again: the stored image, and the upload is gone. */
    r = image_add(f, 0x71, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 0);
    assert_int_equal(r->u.image.img.added_at, NOW);
    assert_int_not_equal(access(r->u.image.path, F_OK), 0);
    store_req_free(r);
    /* Prefixes: 8 digits will do; fewer will not; a shared one is ambiguous. */
    r = req(STORE_IMAGE_GET);
    strcpy(r->u.image.img.idhex, "71717171");
    assert_int_equal(run(f, r)->rc, STORE_OK);
    assert_string_equal(r->u.image.img.version, "2.0.0");
    store_req_free(r);
    r = req(STORE_IMAGE_GET);
    strcpy(r->u.image.img.idhex, "v:2.0.0");
    assert_int_equal(run(f, r)->rc, STORE_OK);
    store_req_free(r);
    assert_int_equal(image_rm(f, "7171", NULL), STORE_E_INVAL);
    assert_int_equal(image_rm(f, "12345678", NULL), STORE_E_NOTFOUND);
    store_req_free(image_add(f, 0x72, "2.0.1"));
    r = req(STORE_IMAGE_GET);
    strcpy(r->u.image.img.idhex, "7");
    assert_int_equal(run(f, r)->rc, STORE_E_INVAL);
    store_req_free(r);
    /* Used by a rollout: refused, naming it; allowed once cancelled. */
    ro = rollout_create(f, 0x71, "", pct, 1);
    assert_int_equal(image_rm(f, "71717171", err), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "rollout 1 (active)"));
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    assert_int_equal(image_rm(f, "71717171", NULL), STORE_OK);
    assert_int_not_equal(access(path, F_OK), 0);
    r = run(f, req(STORE_IMAGE_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_image *)r->u.list.rows)[0].version, "2.0.1");
    store_req_free(r);
}

static void test_image_ambiguous(void **state)
{
    struct fx *f = *state;
    struct store_req *r = req(STORE_IMAGE_ADD);
    char tmp[300];
    FILE *fp;

    store_req_free(image_add(f, 0x81, "1"));
    /* A second id with the same first 4 bytes (8 hex digits). */
    snprintf(tmp, sizeof(tmp), "%s/images/.upload-x", f->dir);
    fp = fopen(tmp, "wb");
    fclose(fp);
    r->u.image.path = tmp;
    fake_id(r->u.image.img.id, 0x81);
    r->u.image.img.id[31] = 0;
    strcpy(r->u.image.img.version, "2");
    strcpy(r->u.image.img.model, MODEL);
    assert_int_equal(run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = req(STORE_IMAGE_GET);
    strcpy(r->u.image.img.idhex, "81818181");
    assert_int_equal(run(f, r)->rc, STORE_E_CONFLICT);
    assert_non_null(strstr(r->err, "ambiguous"));
    store_req_free(r);
}

/* ---- devices ---- */

static struct store_req *device_list(struct fx *f, const char *group, int state_,
                                     const char *after, size_t limit)
{
    struct store_req *r = req(STORE_DEVICE_LIST);

    r->u.list.model = MODEL;
    r->u.list.group = group;
    r->u.list.state = state_;
    r->u.list.after = after;
    r->u.list.limit = limit;
    return run(f, r);
}

static void test_device_list(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct store_device *d;
    char after[TCPOTA_MAX_STR + 1] = "", id[16];
    unsigned i, seen = 0;
    static const uint8_t secret[4] = {1, 2, 3, 4};

    register_devices(f, 30);
    for (i = 0; i < 30; i += 3) {
        dev_name(id, sizeof(id), i);
        assert_int_equal(event(f, id, STORE_ST_FAILED, 0, 0), STORE_OK);
    }
    r = device_list(f, NULL, STORE_ST_FAILED, NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.list.n, 10);
    assert_int_equal(r->u.list.total, 10);
    store_req_free(r);
    /* Pages of 7, in id order, the total the same on each. */
    do {
        r = device_list(f, NULL, -1, after[0] ? after : NULL, 7);
        assert_int_equal(r->u.list.total, 30);
        d = r->u.list.rows;
        for (i = 0; i < r->u.list.n; i++, seen++) {
            dev_name(id, sizeof(id), seen);
            assert_string_equal(d[i].id, id);
        }
        if (r->u.list.n) {
            strcpy(after, d[r->u.list.n - 1].id);
        }
        i = (unsigned)r->u.list.n;
        store_req_free(r);
    } while (i == 7);
    assert_int_equal(seen, 30);
    r = device_list(f, "nogroup", -1, NULL, 0);
    assert_int_equal(r->u.list.n, 0);
    store_req_free(r);
    /* has_secret, and the secrets for the server's memory. */
    r = req(STORE_SECRET_SET);
    r->u.device.id = "dev-0001";
    r->u.device.secret = secret;
    r->u.device.secret_len = sizeof(secret);
    assert_int_equal(run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = device_get(f, "dev-0001");
    assert_int_equal(r->u.device.dev.has_secret, 1);
    store_req_free(r);
    r = run(f, req(STORE_SECRET_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_memory_equal(((struct store_secret *)r->u.list.rows)[0].secret, secret, 4);
    store_req_free(r);
}

/* q of the API: ids starting with a prefix are a range of the primary key,
 * paged with `after` like any list, the total counting every page. */
static void test_device_list_prefix(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct store_device *d;

    register_devices(f, 30);
    r = req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-001";
    r->u.list.after = "dev-0014";
    r->u.list.limit = 3;
    run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.list.total, 10);
    assert_int_equal(r->u.list.n, 3);
    d = r->u.list.rows;
    assert_string_equal(d[0].id, "dev-0015");
    assert_string_equal(d[2].id, "dev-0017");
    store_req_free(r);
    r = req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-0029";
    run(f, r);
    assert_int_equal(r->u.list.n, 1);
    store_req_free(r);
    r = req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-003";
    run(f, r);
    assert_int_equal(r->u.list.n, 0);
    assert_int_equal(r->u.list.total, 0);
    store_req_free(r);
}

/* The dashboard's counts: devices by model, version and state; failures of
 * the history since a time; a rollout's failed devices by wave and reason. */
static void test_summary(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    const struct store_tally *t;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t i, ndev = 0, nver = 0, nfail = 0, nro = 0;
    uint64_t ro;

    checkin_free(f, "dev-a");
    checkin_free(f, "dev-b");
    checkin_free(f, "dev-c");
    store_req_free(image_add(f, 0x44, "2.0.0"));
    ro = rollout_create(f, 0x44, "", pct, 1);
    fake_id(img, 0x44);
    assert_int_equal(event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    store_req_free(checkin(f, "dev-a", img, TCPOTA_RESULT_ROLLED_BACK));
    assert_int_equal(event(f, "dev-b", STORE_ST_OFFERED, ro, 0), STORE_OK);
    store_req_free(checkin(f, "dev-b", img, TCPOTA_RESULT_ROLLED_BACK));
    r = req(STORE_SUMMARY);
    r->u.summary.since = NOW - 3600;
    run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    for (i = 0; i < r->u.summary.n; i++) {
        t = &r->u.summary.rows[i];
        if (t->kind == STORE_TALLY_STATES) {
            ndev++;
            assert_string_equal(t->model, MODEL);
            assert_int_equal(t->n, t->state == STORE_ST_ROLLED_BACK ? 2 : 1);
        } else if (t->kind == STORE_TALLY_VERSIONS) {
            nver++;
            assert_string_equal(t->model, MODEL);
            assert_string_equal(t->version, "1.0.0");
            assert_int_equal(t->n, 3);
        } else if (t->kind == STORE_TALLY_FAILURES) {
            nfail++;
            assert_int_equal(t->state, STORE_ST_ROLLED_BACK);
            assert_string_equal(t->reason, "reported: rolled back");
            assert_int_equal(t->n, 2);
        } else {
            nro++;
            assert_int_equal(t->rollout_id, ro);
            assert_int_equal(t->wave, 0);
            assert_non_null(strstr(t->reason, "health check failed"));
            assert_int_equal(t->n, 2);
        }
    }
    assert_int_equal(ndev, 2); /* rolled-back x2, and dev-c's state */
    assert_int_equal(nver, 1);
    assert_int_equal(nfail, 1);
    assert_int_equal(nro, 1);
    store_req_free(r);
    /* Failures older than `since` are not counted; nor those of a cancelled rollout. */
    assert_int_equal(rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1), STORE_OK);
    r = req(STORE_SUMMARY);
    r->u.summary.since = NOW + 1;
    run(f, r);
    for (i = 0; i < r->u.summary.n; i++) {
        assert_true(r->u.summary.rows[i].kind == STORE_TALLY_STATES ||
                    r->u.summary.rows[i].kind == STORE_TALLY_VERSIONS);
    }
    store_req_free(r);
}

static void test_history_order(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    checkin_free(f, "dev-h");
    assert_int_equal(event(f, "dev-h", STORE_ST_OFFERED, 0, 0), STORE_OK);
    assert_int_equal(event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 0), STORE_OK);
    assert_int_equal(event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 100), STORE_OK);
    assert_int_equal(event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 200), STORE_OK);
    assert_int_equal(event(f, "dev-h", STORE_ST_FAILED, 0, 200), STORE_OK);
    assert_int_equal(event(f, "nobody", STORE_ST_FAILED, 0, 0), STORE_E_NOTFOUND);
    r = device_get(f, "dev-h");
    assert_int_equal(r->u.device.nhistory, 4);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_FAILED);
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_int_equal(r->u.device.history[2].state, STORE_ST_OFFERED);
    assert_int_equal(r->u.device.history[3].state, STORE_ST_SEEN);
    assert_int_equal(r->u.device.dev.bytes, 200);
    store_req_free(r);
    r = device_get(f, "nobody");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
}

static void test_names(void **state)
{
    int i;
    (void)state;

    for (i = 0; i < (int)STORE_ST_COUNT; i++) {
        assert_int_equal(store_state_parse(store_state_name((enum store_dev_state)i)), i);
    }
    assert_string_equal(store_state_name(STORE_ST_ROLLED_BACK), "rolled-back");
    assert_int_equal(store_state_parse("nonsense"), -1);
    assert_string_equal(store_rollout_state_name(ROLLOUT_STATE_CANCELLED), "cancelled");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_list_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_in_use, setup, teardown),
        cmocka_unit_test(test_garbage_db),
        cmocka_unit_test(test_dir_not_a_dir),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_older_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_returns_stored_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkin_registers_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_applied_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_survives_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_one_batch_behind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_waves_targeted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_follow_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_batch_survives_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_supersede_and_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_ambiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_order, setup, teardown),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
