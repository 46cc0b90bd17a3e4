/* store_suite.c - the tests every fleet store backend must pass (store.h),
 * through its asynchronous API, for real: a libevent loop, submit, and the
 * loop run until done fires. Each test has its own data directory and, for
 * a database server, its own empty schema (ss_backend->fresh). The SQLite
 * and the PostgreSQL tests (test_store_sqlite.c, test_store_pg.c) run these
 * and their own. */
#define _XOPEN_SOURCE 700 /* nftw() */
#include "store_suite.h"
#include "store_common.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const struct ss_backend *ss_backend;

#define NO_UPLOAD "/nonexistent-dir/upload" /* a path no file is at */

/* ---- the harness ---- */

static void on_done(struct store_req *r)
{
    (*(int *)r->arg)++;
}

/* Submits r and runs the loop until its done fired; returns r. */
struct store_req *ss_run(struct fx *f, struct store_req *r)
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

struct store_req *ss_req(enum store_op op)
{
    struct store_req *r = store_req_new(op, on_done, NULL);

    assert_non_null(r);
    return r;
}

void ss_fx_open(struct fx *f)
{
    char err[256] = "";

    f->st = ss_backend->open(f, f->base, err, sizeof(err));
    if (!f->st) {
        fail_msg("open: %s", err);
    }
}

void ss_fx_fresh(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tcpota-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    if (ss_backend->fresh) {
        ss_backend->fresh(f);
    }
}

int ss_setup(void **state)
{
    struct fx *f = malloc(sizeof(*f));

    assert_non_null(f);
    ss_fx_fresh(f);
    f->base = event_base_new();
    ss_fx_open(f);
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
void ss_rm_tree(const char *dir)
{
    (void)nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int ss_teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->st);
    event_base_free(f->base);
    ss_rm_tree(f->dir);
    free(f);
    return 0;
}

void ss_reopen(struct fx *f)
{
    store_close(f->st);
    ss_fx_open(f);
}

/* ---- request helpers ---- */

void ss_fake_id(uint8_t *id, uint8_t seed)
{
    memset(id, seed, TCPOTA_ID_LEN);
}

struct store_req *ss_checkin(struct fx *f, const char *id, const uint8_t *report,
                                 uint16_t result)
{
    struct store_req *r = ss_req(STORE_CHECKIN);

    r->u.checkin.id = id;
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.0.0";
    r->u.checkin.addr = "127.0.0.1";
    r->u.checkin.report_id = report;
    r->u.checkin.report_result = result;
    return ss_run(f, r);
}

void ss_checkin_free(struct fx *f, const char *id)
{
    struct store_req *r = ss_checkin(f, id, NULL, 0);

    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
}

int ss_event(struct fx *f, const char *id, enum store_dev_state s, uint64_t rollout,
                 uint32_t bytes)
{
    struct store_req *r = ss_req(STORE_EVENT);
    int rc;

    r->u.event.id = id;
    r->u.event.state = s;
    r->u.event.rollout_id = rollout;
    r->u.event.bytes = bytes;
    r->u.event.size = 1000;
    rc = ss_run(f, r)->rc;
    store_req_free(r);
    return rc;
}

/* Item i of a STORE_EVENTS batch for device id (image: seed repeated, 0: none). */
static void ss_item(struct store_event *e, const char *id, enum store_dev_state s, uint8_t image,
                 uint64_t rollout, uint32_t bytes, const char *reason, int durable)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->state = s;
    if (image) {
        e->has_image = 1;
        ss_fake_id(e->image_id, image);
    }
    e->rollout_id = rollout;
    e->bytes = bytes;
    e->size = 1000;
    if (reason) {
        e->reason = strdup(reason); /* freed with the request that takes it */
        assert_non_null(e->reason);
    }
    e->durable = (uint8_t)durable;
}

/* A STORE_EVENTS request owning a copy of the n items. */
static struct store_req *ss_events_req(const struct store_event *items, size_t n)
{
    struct store_req *r = ss_req(STORE_EVENTS);

    r->u.events.items = malloc(n * sizeof(*items));
    assert_non_null(r->u.events.items);
    memcpy(r->u.events.items, items, n * sizeof(*items));
    r->u.events.n = n;
    return r;
}

/* One step of device id about image seed, alone in a STORE_EVENTS batch;
 * it must apply. */
static void ss_item_run(struct fx *f, const char *id, enum store_dev_state st, uint8_t image,
                        uint32_t bytes, uint32_t size)
{
    struct store_event it;
    struct store_req *r;

    ss_item(&it, id, st, image, 0, bytes, NULL, 0);
    it.size = size;
    r = ss_run(f, ss_events_req(&it, 1));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 0);
    store_req_free(r);
}

/* Device id checks in (registered, no report), then a final step of its
 * own in rollout ro: state st about image seed, with reason; it must apply. */
static void ss_final_step(struct fx *f, const char *id, enum store_dev_state st, uint8_t image,
                          uint64_t rollout, const char *reason)
{
    struct store_event it;
    struct store_req *r;

    ss_checkin_free(f, id);
    ss_item(&it, id, st, image, rollout, 0, reason, 1);
    r = ss_run(f, ss_events_req(&it, 1));
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
}

struct store_req *ss_image_add_from(struct fx *f, uint8_t seed, const char *version,
                                   const char *model, const char *path)
{
    struct store_req *r = ss_req(STORE_IMAGE_ADD);

    r->u.image.path = path;
    ss_fake_id(r->u.image.img->id, seed);
    snprintf(r->u.image.img->version, sizeof(r->u.image.img->version), "%s", version);
    snprintf(r->u.image.img->model, sizeof(r->u.image.img->model), "%s", model);
    r->u.image.img->size = 11;
    return ss_run(f, r);
}

/* Adds an image whose (fake) id is seed repeated, from a file the caller
 * wrote in DIR/images/ as the API will. Returns the request. */
struct store_req *ss_image_add(struct fx *f, uint8_t seed, const char *version)
{
    static char tmp[300];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s/images/.upload-%u", f->dir, seed);
    fp = fopen(tmp, "wb");
    assert_non_null(fp);
    fputs("image bytes", fp);
    fclose(fp);
    return ss_image_add_from(f, seed, version, MODEL, tmp);
}

/* The rollout the last rollout_create_rc superseded, as the store said
 * (0: none). */
static uint64_t created_superseded;

/* STORE_ROLLOUT_CREATE of image seed for model; its rc, *id the new id. */
static int rollout_create_rc(struct fx *f, uint8_t seed, const char *model, const char *group,
                             const uint32_t *pct, uint32_t n, uint64_t *id)
{
    struct store_req *r = ss_req(STORE_ROLLOUT_CREATE);
    int rc;

    ss_fake_id(r->u.rollout.r->image_id, seed);
    snprintf(r->u.rollout.r->model, sizeof(r->u.rollout.r->model), "%s", model);
    snprintf(r->u.rollout.r->group, sizeof(r->u.rollout.r->group), "%s", group);
    memcpy(r->u.rollout.r->pct, pct, n * sizeof(*pct));
    r->u.rollout.r->ro.n_waves = n;
    r->u.rollout.r->rules.halt_pct = 20;
    rc = ss_run(f, r)->rc;
    *id = r->u.rollout.r->id;
    created_superseded = r->u.rollout.superseded;
    store_req_free(r);
    return rc;
}

uint64_t ss_rollout_create(struct fx *f, uint8_t seed, const char *group,
                               const uint32_t *pct, uint32_t n)
{
    uint64_t id = 0;

    assert_int_equal(rollout_create_rc(f, seed, MODEL, group, pct, n, &id), STORE_OK);
    assert_true(id > 0);
    return id;
}

/* The rollout as stored now (the caller frees the request). */
struct store_req *ss_rollout_get(struct fx *f, uint64_t id)
{
    struct store_req *r = ss_req(STORE_ROLLOUT_GET);

    r->u.rollout.id = id;
    ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    return r;
}

int ss_rollout_set(struct fx *f, uint64_t id, enum rollout_state from, uint32_t from_open,
                       enum rollout_state to, uint32_t to_open)
{
    struct store_req *r = ss_req(STORE_ROLLOUT_SET);
    int rc;

    r->u.rollout.id = id;
    r->u.rollout.expect_state = from;
    r->u.rollout.expect_n_open = from_open;
    r->u.rollout.new_state = to;
    r->u.rollout.new_n_open = to_open;
    r->now = NOW + 60;
    rc = ss_run(f, r)->rc;
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

static void ss_dev_name(char *buf, size_t size, unsigned i)
{
    snprintf(buf, size, "dev-%04u", i);
}

/* Registers n devices, all submitted before the loop runs (one batch). */
void ss_register_devices(struct fx *f, unsigned n)
{
    struct store_req **rs = calloc(n, sizeof(*rs));
    char (*ids)[16] = calloc(n, sizeof(*ids));
    int fired = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        ss_dev_name(ids[i], sizeof(ids[i]), i);
        rs[i] = ss_req(STORE_CHECKIN);
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

struct store_req *ss_device_get(struct fx *f, const char *id)
{
    struct store_req *r = ss_req(STORE_DEVICE_GET);

    r->u.device.id = id;
    return ss_run(f, r);
}

/* ---- open and close ---- */

/* What the open found and left, for the server's log: a new database from
 * 0 to the version this program writes; opened again, nothing migrated. */
static void test_schema_versions(void **state)
{
    struct fx *f = *state;
    int to = f->st->schema_to;

    assert_int_equal(f->st->schema_from, 0);
    assert_true(to >= 4);
    ss_reopen(f);
    assert_int_equal(f->st->schema_from, to);
    assert_int_equal(f->st->schema_to, to);
}

static void test_reopen_keeps_data(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    ss_checkin_free(f, "dev-1");
    store_req_free(ss_image_add(f, 0xaa, "2.0.0"));
    ss_reopen(f);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->rc, STORE_OK);
    assert_string_equal(r->u.device.dev->model, MODEL);
    assert_int_equal(r->u.device.dev->first_seen, NOW);
    store_req_free(r);
    r = ss_run(f, ss_req(STORE_IMAGE_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_image *)r->u.list.rows)[0].version, "2.0.0");
    store_req_free(r);
}

/* ---- check-in and reports ---- */

static void test_checkin_registers_once(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    r = ss_checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.is_new, 1);
    assert_int_equal(r->u.checkin.has_rollout, 0);
    assert_int_equal(r->u.checkin.out->nfailed, 0);
    store_req_free(r);
    r = ss_checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->u.checkin.is_new, 0);
    store_req_free(r);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_SEEN);
    assert_string_equal(r->u.device.dev->addr, "127.0.0.1");
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

    ss_checkin_free(f, "dev-1");
    r = ss_req(STORE_CHECKIN);
    r->u.checkin.id = "dev-1";
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.2.3";
    r->u.checkin.addr = "127.0.0.9";
    r->u.checkin.running_id = running;
    r->u.checkin.proto = STORE_PROTO_LEGACY;
    r = ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    d = r->u.checkin.out->dev;
    store_req_free(r);
    g = ss_device_get(f, "dev-1");
    assert_string_equal(d.version, "1.2.3");
    assert_string_equal(d.version, g->u.device.dev->version);
    assert_string_equal(d.addr, "127.0.0.9");
    assert_string_equal(d.addr, g->u.device.dev->addr);
    assert_string_equal(d.running, g->u.device.dev->running);
    assert_int_equal(strncmp(d.running, "ab010203", 8), 0);
    assert_string_equal(d.model, g->u.device.dev->model);
    assert_string_equal(d.group, g->u.device.dev->group);
    assert_int_equal(d.proto, STORE_PROTO_LEGACY);
    assert_int_equal(d.proto, g->u.device.dev->proto);
    assert_int_equal(d.state, g->u.device.dev->state);
    assert_int_equal(d.last_seen, g->u.device.dev->last_seen);
    assert_int_equal(d.first_seen, g->u.device.dev->first_seen);
    store_req_free(g);
}

/* Check-in of dev-1 as ss_checkin() makes it but for its running image,
 * protocol and model; returns the device as stored then (caller frees). */
static struct store_req *checkin_stored(struct fx *f, const uint8_t *running,
                                        enum store_proto proto, const char *model)
{
    struct store_req *r = ss_req(STORE_CHECKIN);

    r->u.checkin.id = "dev-1";
    r->u.checkin.model = model;
    r->u.checkin.version = "1.0.0";
    r->u.checkin.addr = "127.0.0.1";
    r->u.checkin.running_id = running;
    r->u.checkin.proto = proto;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    return ss_device_get(f, "dev-1");
}

/* A check-in that changes one column of a known device is stored, not
 * taken for the usual one that changes only the time: a rebuild of the same
 * version (another running image), another protocol, another model. */
static void test_checkin_stores_one_change(void **state)
{
    struct fx *f = *state;
    static const uint8_t running[TCPOTA_ID_LEN] = {0xcd, 4, 5, 6};
    struct store_req *g;

    ss_checkin_free(f, "dev-1");
    g = checkin_stored(f, running, STORE_PROTO_V1, MODEL);
    assert_int_equal(strncmp(g->u.device.dev->running, "cd040506", 8), 0);
    store_req_free(g);
    g = checkin_stored(f, running, STORE_PROTO_HTTP, MODEL);
    assert_int_equal(g->u.device.dev->proto, STORE_PROTO_HTTP);
    store_req_free(g);
    /* A secret for it says it checks in over HTTP (which cannot
     * authenticate: the API warns, docs/api.md). */
    g = ss_req(STORE_SECRET_SET);
    g->u.device.id = "dev-1";
    g->u.device.secret = running;
    g->u.device.secret_len = 16;
    assert_int_equal(ss_run(f, g)->rc, STORE_OK);
    assert_int_equal(g->u.device.registered, 1);
    assert_int_equal(g->u.device.had_secret, 0);
    assert_int_equal(g->u.device.http, 1);
    store_req_free(g);
    g = checkin_stored(f, running, STORE_PROTO_HTTP, "esp32-other");
    assert_string_equal(g->u.device.dev->model, "esp32-other");
    store_req_free(g);
}

/* STORE_SEEN: each known device's last_seen moves to the request's time,
 * never back; an unknown id (or one a text[] literal must escape) does not
 * stop the others. */
static void seen_at(struct fx *f, int64_t now, const char *const *ids, size_t n)
{
    struct store_req *r = ss_req(STORE_SEEN);
    size_t i;

    r->u.seen.ids = calloc(n, sizeof(*r->u.seen.ids));
    assert_non_null(r->u.seen.ids);
    for (i = 0; i < n; i++) {
        snprintf(r->u.seen.ids[i], sizeof(r->u.seen.ids[i]), "%s", ids[i]);
    }
    r->u.seen.n = n;
    r->now = now;
    r = ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
}

static int64_t last_seen(struct fx *f, const char *id)
{
    struct store_req *r = ss_device_get(f, id);
    int64_t t = r->u.device.dev->last_seen;

    store_req_free(r);
    return t;
}

static void test_seen(void **state)
{
    struct fx *f = *state;
    static const char odd[] = "odd \"quoted\" \\ {id},";
    const char *const ids[] = {"dev-1", "nobody", odd, "dev-2"};

    ss_checkin_free(f, "dev-1");
    ss_checkin_free(f, odd);
    ss_checkin_free(f, "dev-2");
    seen_at(f, NOW + 100, ids, 4);
    assert_int_equal(last_seen(f, "dev-1"), NOW + 100);
    assert_int_equal(last_seen(f, odd), NOW + 100);
    assert_int_equal(last_seen(f, "dev-2"), NOW + 100);
    seen_at(f, NOW + 50, ids, 1);
    assert_int_equal(last_seen(f, "dev-1"), NOW + 100);
    seen_at(f, NOW + 150, ids + 2, 1);
    assert_int_equal(last_seen(f, odd), NOW + 150);
    assert_int_equal(last_seen(f, "dev-1"), NOW + 100);
}

/* A step carries the time it was recorded, which may be older than the
 * device's last check-in (a batch that waited, another node's clock):
 * last_seen never goes back. */
static void test_step_keeps_last_seen(void **state)
{
    struct fx *f = *state;
    const char *const ids[] = {"dev-1"};

    ss_checkin_free(f, "dev-1");
    seen_at(f, NOW + 100, ids, 1);
    assert_int_equal(ss_event(f, "dev-1", STORE_ST_DOWNLOADING, 0, 10), STORE_OK);
    assert_int_equal(last_seen(f, "dev-1"), NOW + 100);
}

static void test_report_applied_once(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t nhist;
    int i;

    ss_fake_id(img, 0x11);
    ss_checkin_free(f, "dev-1");
    for (i = 0; i < 3; i++) {
        r = ss_checkin(f, "dev-1", img, TCPOTA_RESULT_ROLLED_BACK);
        assert_int_equal(r->rc, STORE_OK);
        /* The failed image comes back for the offer policy. */
        assert_int_equal(r->u.checkin.out->nfailed, 1);
        assert_memory_equal(r->u.checkin.out->failed[0], img, TCPOTA_ID_LEN);
        store_req_free(r);
    }
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_ROLLED_BACK);
    nhist = r->u.device.nhistory;
    assert_int_equal(nhist, 2); /* seen, rolled back: once */
    assert_int_equal(r->u.device.history[0].state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
}

/* A child process checks in with a report and dies without closing. */
static void crash_child(const struct fx *parent, int with_report)
{
    char err[256];
    struct event_base *base = event_base_new();
    struct fx f = *parent;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;

    f.base = base;
    f.st = ss_backend->open(&f, base, err, sizeof(err));
    if (!f.st) {
        _exit(2);
    }
    ss_fake_id(img, 0x22);
    r = ss_checkin(&f, "dev-crash", with_report == 1 ? img : NULL, TCPOTA_RESULT_CONFIRMED);
    if (r->rc != STORE_OK) {
        _exit(3);
    }
    if (with_report == 2) {
        /* A batch holding a final step: on disk when done runs. */
        struct store_event it[2];
        ss_item(&it[0], "dev-crash", STORE_ST_DOWNLOADING, 0x22, 0, 0, NULL, 0);
        ss_item(&it[1], "dev-crash", STORE_ST_VERIFIED, 0x22, 0, 1000, NULL, 1);
        r = ss_run(&f, ss_events_req(it, 2));
        _exit(r->rc == STORE_OK ? 0 : 4); /* at once: no batch window passes */
    }
    if (!with_report) {
        r = ss_req(STORE_EVENT);
        r->u.event.id = "dev-crash";
        r->u.event.state = STORE_ST_DOWNLOADING;
        r->u.event.bytes = 4096;
        r->u.event.size = 8192;
        ss_run(&f, r);
        /* Past its batch window the progress must reach the disk: waited
         * out with room for a commit's fsync on a loaded machine (3
         * windows, 600 ms, was tight there). */
        usleep(10 * STORE_BATCH_MS * 1000);
    }
    _exit(0); /* no close: as SIGKILL would */
}

static void ss_crash_and_reopen(struct fx *f, int with_report)
{
    int status;
    pid_t pid;

    store_close(f->st);
    f->st = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        crash_child(f, with_report);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ss_fx_open(f);
}

static void test_report_survives_crash(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    char hex[2 * TCPOTA_ID_LEN + 1];

    ss_crash_and_reopen(f, 1);
    r = ss_device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev->state, STORE_ST_UPDATED);
    memset(hex, '2', 2 * TCPOTA_ID_LEN);
    hex[2 * TCPOTA_ID_LEN] = '\0';
    assert_string_equal(r->u.device.dev->image, hex);
    store_req_free(r);
}

static void test_progress_one_batch_behind(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    ss_crash_and_reopen(f, 0);
    r = ss_device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev->state, STORE_ST_DOWNLOADING);
    assert_int_equal(r->u.device.dev->bytes, 4096);
    store_req_free(r);
}

/* A child whose files may not grow (as on a full disk) keeps getting
 * answers: errors, never a crash, and every done runs. */
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

    ss_register_devices(f, 200);
    store_req_free(ss_image_add(f, 0x33, "2.0.0"));
    ro = ss_rollout_create(f, 0x33, "", pct, 3);
    r = ss_rollout_get(f, ro);
    for (i = 0; i < 200; i++) {
        ss_dev_name(id, sizeof(id), i);
        want[wave_of(ro, id, pct, 3)]++;
    }
    for (i = 0; i < 3; i++) {
        assert_int_equal(r->u.rollout.r->waves[i].targeted, want[i]);
        assert_int_equal(r->u.rollout.r->pct[i], pct[i]);
    }
    assert_int_equal(r->u.rollout.r->ro.n_open, 1);
    assert_int_equal(r->u.rollout.r->ro.bound[1], 5000);
    assert_int_equal(r->u.rollout.r->waves[0].opened_at, NOW);
    assert_int_equal(r->u.rollout.r->ro.state, ROLLOUT_STATE_ACTIVE);
    store_req_free(r);
    /* Waves that stop at half: the rest is in no wave, counted nowhere. */
    ro2 = ss_rollout_create(f, 0x33, "", half, 2);
    r = ss_rollout_get(f, ro2);
    for (i = 0; i < 200; i++) {
        ss_dev_name(id, sizeof(id), i);
        want_half[wave_of(ro2, id, half, 2)]++;
    }
    assert_int_equal(r->u.rollout.r->waves[0].targeted, want_half[0]);
    assert_int_equal(r->u.rollout.r->waves[1].targeted, want_half[1]);
    assert_true(want_half[2] > 0);
    store_req_free(r);
    /* A device registered after the rollout joins its wave at check-in. */
    r = ss_checkin(f, "late-device", NULL, 0);
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
    struct store_req *r = ss_rollout_get(f, ro);
    const struct rollout_wave *w = &r->u.rollout.r->waves[wave];

    assert_int_equal(w->offered, offered);
    assert_int_equal(w->downloading, downloading);
    assert_int_equal(w->updated, updated);
    assert_int_equal(w->failed, failed);
    store_req_free(r);
}

/* A cancelled rollout's counts are final: a device it counted that then
 * reports under a new rollout of the same image moves there only (a trial
 * saw the cancelled one count it again). */
static void test_cancelled_counts_final(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    uint64_t first, second;

    ss_checkin_free(f, "dev-c");
    ss_checkin_free(f, "dev-d");
    store_req_free(ss_image_add(f, 0x45, "2.0.0"));
    first = ss_rollout_create(f, 0x45, "", pct, 1);
    ss_fake_id(img, 0x45);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_OFFERED, first, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_DOWNLOADING, first, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-d", STORE_ST_OFFERED, first, 0), STORE_OK);
    expect_counts(f, first, 0, 1, 1, 0, 0);
    assert_int_equal(ss_rollout_set(f, first, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    second = ss_rollout_create(f, 0x45, "", pct, 1);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_OFFERED, second, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_VERIFIED, second, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-c", img, TCPOTA_RESULT_CONFIRMED));
    expect_counts(f, second, 0, 0, 0, 1, 0);
    expect_counts(f, first, 0, 1, 1, 0, 0);
    /* Nor does a step that names the cancelled one (a transfer its cancel
     * spared, a step queued before it). */
    assert_int_equal(ss_event(f, "dev-d", STORE_ST_DOWNLOADING, first, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-d", STORE_ST_FAILED, first, 0), STORE_OK);
    expect_counts(f, first, 0, 1, 1, 0, 0);
}

/* So are a superseded rollout's: a newer rollout of the same image (a new
 * halt rule, --allow-downgrade, a halted one made again) counts what its
 * devices do from then on, the older one what they did under it (a trial
 * saw the superseded one count every device again that updated or failed
 * under the newer one, in rollout list and the summary). */
static void test_superseded_counts_final(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    uint64_t first, second;

    ss_checkin_free(f, "dev-s1");
    ss_checkin_free(f, "dev-s2");
    ss_checkin_free(f, "dev-s3");
    store_req_free(ss_image_add(f, 0x46, "2.0.0"));
    first = ss_rollout_create(f, 0x46, "", pct, 1);
    ss_fake_id(img, 0x46);
    assert_int_equal(ss_event(f, "dev-s1", STORE_ST_OFFERED, first, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-s1", STORE_ST_VERIFIED, first, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-s1", img, TCPOTA_RESULT_CONFIRMED));
    assert_int_equal(ss_event(f, "dev-s3", STORE_ST_OFFERED, first, 0), STORE_OK);
    expect_counts(f, first, 0, 1, 0, 1, 0);
    second = ss_rollout_create(f, 0x46, "", pct, 1);
    assert_int_equal(created_superseded, first);
    assert_int_equal(ss_event(f, "dev-s2", STORE_ST_OFFERED, second, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-s2", STORE_ST_VERIFIED, second, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-s2", img, TCPOTA_RESULT_CONFIRMED));
    assert_int_equal(ss_event(f, "dev-s3", STORE_ST_OFFERED, second, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-s3", img, TCPOTA_RESULT_ROLLED_BACK));
    expect_counts(f, second, 0, 0, 0, 1, 1);
    expect_counts(f, first, 0, 1, 0, 1, 0);
    /* Nor does a step that names the superseded one (a transfer it had
     * started, a step queued before the newer one was made). */
    assert_int_equal(ss_event(f, "dev-s3", STORE_ST_DOWNLOADING, first, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-s3", STORE_ST_FAILED, first, 0), STORE_OK);
    expect_counts(f, first, 0, 1, 0, 1, 0);
}

/* ... but a rollout superseded by one of another image still counts what
 * its devices do with its image: a transfer it began goes on there, and
 * no other rollout would count it (a review). */
static void test_superseded_other_image_counts(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    uint64_t first, second;

    ss_checkin_free(f, "dev-o1");
    store_req_free(ss_image_add(f, 0x47, "2.0.0"));
    store_req_free(ss_image_add(f, 0x48, "3.0.0"));
    first = ss_rollout_create(f, 0x47, "", pct, 1);
    ss_fake_id(img, 0x47);
    assert_int_equal(ss_event(f, "dev-o1", STORE_ST_OFFERED, first, 0), STORE_OK);
    second = ss_rollout_create(f, 0x48, "", pct, 1);
    assert_int_equal(created_superseded, first);
    assert_int_equal(ss_event(f, "dev-o1", STORE_ST_DOWNLOADING, first, 0), STORE_OK);
    expect_counts(f, first, 0, 0, 1, 0, 0);
    assert_int_equal(ss_event(f, "dev-o1", STORE_ST_VERIFIED, first, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-o1", img, TCPOTA_RESULT_ROLLED_BACK));
    expect_counts(f, first, 0, 0, 0, 0, 1);
    expect_counts(f, second, 0, 0, 0, 0, 0);
}

static void test_counters_follow_events(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    uint64_t ro;

    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    store_req_free(ss_image_add(f, 0x44, "2.0.0"));
    ro = ss_rollout_create(f, 0x44, "", pct, 1);
    ss_fake_id(img, 0x44);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 1, 0, 0, 0);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_DOWNLOADING, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_DOWNLOADING, ro, 500), STORE_OK);
    expect_counts(f, ro, 0, 0, 1, 0, 0);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_VERIFIED, ro, 1000), STORE_OK);
    expect_counts(f, ro, 0, 0, 1, 0, 0);
    /* The report, twice: counted once. */
    store_req_free(ss_checkin(f, "dev-a", img, TCPOTA_RESULT_CONFIRMED));
    r = ss_checkin(f, "dev-a", img, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(r->u.checkin.ro_status, STORE_RO_UPDATED);
    assert_int_equal(r->u.checkin.out->rollout.waves[0].updated, 1);
    store_req_free(r);
    expect_counts(f, ro, 0, 0, 0, 1, 0);
    /* A late offer does not undo a success. */
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 1, 0);
    /* A failure, repeated: counted once. */
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_OFFERED, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_FAILED, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_DECLINED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 1, 1);
    /* A late download does not undo a failure either... */
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_DOWNLOADING, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 1, 1);
    /* ...but the device found running the image after all is a success. */
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_UP_TO_DATE, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 2, 0);
    /* A state past the last one is refused, nothing written. */
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_COUNT, ro, 0), STORE_E_INVAL);
    expect_counts(f, ro, 0, 0, 0, 2, 0);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->waves[0].targeted, 2);
    store_req_free(r);
}

/* The decision that a device runs a rollout's image (up to date), about
 * the image its report made its row: counted updated in that rollout when
 * the row says updated (a device an earlier rollout updated: the waves of
 * a rollout of the same image waited for it), the row kept; a row that
 * says rolled back keeps its failure (a review: the first rule took it). */
static void test_up_to_date_after_report(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_event it;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    uint64_t first, second;

    store_req_free(ss_image_add(f, 0x78, "2.0.0"));
    first = ss_rollout_create(f, 0x78, "", pct, 1);
    ss_fake_id(img, 0x78);
    store_req_free(ss_checkin(f, "dev-u", img, TCPOTA_RESULT_CONFIRMED));
    expect_counts(f, first, 0, 0, 0, 1, 0);
    second = ss_rollout_create(f, 0x78, "", pct, 1); /* supersedes the first */
    store_req_free(ss_checkin(f, "dev-r", img, TCPOTA_RESULT_ROLLED_BACK));
    expect_counts(f, second, 0, 0, 0, 0, 1);
    for (int k = 0; k < 2; k++) { /* twice: counted once */
        ss_item(&it, "dev-u", STORE_ST_UP_TO_DATE, 0x78, second, 0, "runs it", 0);
        r = ss_run(f, ss_events_req(&it, 1));
        assert_int_equal(r->rc, STORE_OK);
        store_req_free(r);
        ss_item(&it, "dev-r", STORE_ST_UP_TO_DATE, 0x78, second, 0, "runs it", 0);
        r = ss_run(f, ss_events_req(&it, 1));
        assert_int_equal(r->rc, STORE_OK);
        store_req_free(r);
        expect_counts(f, second, 0, 0, 0, 1, 1);
    }
    r = ss_checkin(f, "dev-u", NULL, 0);
    assert_int_equal(r->u.checkin.out->dev.state, STORE_ST_UPDATED); /* the row kept */
    store_req_free(r);
    r = ss_checkin(f, "dev-r", NULL, 0);
    assert_int_equal(r->u.checkin.out->dev.state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
}

/* A declined offer is a failure of the rollout (rollout.h's halt rule),
 * also when no failure came before it. */
static void test_decline_counts_failed(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint64_t ro;

    ss_checkin_free(f, "dev-a");
    store_req_free(ss_image_add(f, 0x45, "2.0.0"));
    ro = ss_rollout_create(f, 0x45, "", pct, 1);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 1, 0, 0, 0);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_DECLINED, ro, 0), STORE_OK);
    expect_counts(f, ro, 0, 0, 0, 0, 1);
}

/* The operator's retry (STORE_DEVICE_RETRY): the device's failed images
 * are forgotten, its state is SEEN with a history line saying why, and its
 * next check-in no longer lists them; a second retry forgets nothing and
 * changes nothing; an unknown device is not found. */
static struct store_req *retry(struct fx *f, const char *id)
{
    struct store_req *r = ss_req(STORE_DEVICE_RETRY);

    r->u.device.id = id;
    return ss_run(f, r);
}

/* A retry of id forgets `forgot` failures and leaves the device in
 * `want`, with the history line saying so. */
static void expect_retried(struct fx *f, const char *id, uint32_t forgot, enum store_dev_state want)
{
    struct store_req *r = retry(f, id);

    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.forgot, forgot);
    assert_int_equal(r->u.device.dev->state, want);
    store_req_free(r);
    r = ss_device_get(f, id);
    assert_int_equal(r->u.device.dev->state, want);
    assert_true(r->u.device.nhistory > 0);
    assert_int_equal(r->u.device.history[0].state, want);
    assert_string_equal(r->u.device.history[0].detail, STORE_RETRY_DETAIL);
    store_req_free(r);
}

static void test_device_retry(void **state)
{
    struct fx *f = *state;
    uint8_t img[2][TCPOTA_ID_LEN];
    struct store_req *r;

    ss_fake_id(img[0], 0x22);
    ss_fake_id(img[1], 0x23);
    ss_checkin_free(f, "dev-r");
    store_req_free(ss_checkin(f, "dev-r", img[0], TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "dev-r", img[1], TCPOTA_RESULT_ROLLED_BACK));
    expect_retried(f, "dev-r", 2, STORE_ST_SEEN);
    r = ss_device_get(f, "dev-r");
    assert_string_equal(r->u.device.dev->reason, STORE_RETRY_DETAIL);
    store_req_free(r);
    r = ss_checkin(f, "dev-r", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->nfailed, 0);
    store_req_free(r);
    {
        /* Nothing to forget: nothing changes, and the history does not
         * say that something was forgotten (a review found it did, with
         * that check removed). */
        uint32_t lines;
        r = ss_device_get(f, "dev-r");
        lines = (uint32_t)r->u.device.nhistory;
        store_req_free(r);
        r = retry(f, "dev-r");
        assert_int_equal(r->rc, STORE_OK);
        assert_int_equal(r->u.device.forgot, 0);
        store_req_free(r);
        r = ss_device_get(f, "dev-r");
        assert_int_equal(r->u.device.nhistory, lines);
        store_req_free(r);
    }
    r = retry(f, "nobody");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
    /* A device updated since its failure: the failure is forgotten, its
     * state stays (it is no failure to clear), the history says so. */
    ss_checkin_free(f, "dev-u");
    store_req_free(ss_checkin(f, "dev-u", img[0], TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "dev-u", img[1], TCPOTA_RESULT_CONFIRMED));
    expect_retried(f, "dev-u", 1, STORE_ST_UPDATED);
}

/* A report of another image's failure, while the device's state already
 * names the same kind of failure of an earlier image, is applied rather
 * than taken for a repeat: that image is held back from it too. */
static void test_report_of_another_image(void **state)
{
    struct fx *f = *state;
    uint8_t first[TCPOTA_ID_LEN], second[TCPOTA_ID_LEN];
    struct store_req *r;

    ss_fake_id(first, 0x12);
    ss_fake_id(second, 0x13);
    ss_checkin_free(f, "dev-1");
    store_req_free(ss_checkin(f, "dev-1", first, TCPOTA_RESULT_ROLLED_BACK));
    r = ss_checkin(f, "dev-1", second, TCPOTA_RESULT_ROLLED_BACK);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->nfailed, 2);
    assert_memory_equal(r->u.checkin.out->failed[0], second, TCPOTA_ID_LEN);
    assert_memory_equal(r->u.checkin.out->failed[1], first, TCPOTA_ID_LEN);
    store_req_free(r);
}

/* A device the store first hears of through its report (updated by
 * another server, or before its row was restored) still counts in the
 * rollout of that image: the halt rule must see its failure. */
static void test_first_checkin_report_counts(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x14, "2.0.0"));
    ro = ss_rollout_create(f, 0x14, "", pct, 1);
    ss_fake_id(img, 0x14);
    r = ss_checkin(f, "dev-new", img, TCPOTA_RESULT_BOOT_FAILED);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.is_new, 1);
    assert_int_equal(r->u.checkin.ro_status, STORE_RO_FAILED);
    /* Counted failed, but not held back: the device takes an image its
     * bootloader fell back from once more (tcpota_srv_report_final). */
    assert_int_equal(r->u.checkin.out->nfailed, 0);
    store_req_free(r);
    expect_counts(f, ro, 0, 0, 0, 0, 1);
    r = ss_checkin(f, "dev-new", img, TCPOTA_RESULT_ROLLED_BACK);
    assert_int_equal(r->u.checkin.out->nfailed, 1); /* a health check's is final */
    store_req_free(r);
}

/* A report of an image the device's row did not follow (its steps lost
 * with a failed commit, or the row new: updated by another server) names
 * the image's size, all of it had: not "0 of 0 bytes". An image the store
 * does not know leaves the size unknown (0). */
static void test_report_names_the_size(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN], gone[TCPOTA_ID_LEN];
    struct store_req *r;

    store_req_free(ss_image_add(f, 0x17, "2.0.0"));
    ss_fake_id(img, 0x17);
    r = ss_checkin(f, "dev-new", img, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->dev.state, STORE_ST_UPDATED);
    assert_int_equal(r->u.checkin.out->dev.size, 11);
    assert_int_equal(r->u.checkin.out->dev.bytes, 11);
    store_req_free(r);
    /* Followed from the start: its steps' size stays. */
    ss_checkin_free(f, "dev-1");
    ss_item_run(f, "dev-1", STORE_ST_VERIFIED, 0x17, 1000, 1000);
    r = ss_checkin(f, "dev-1", img, TCPOTA_RESULT_ROLLED_BACK);
    assert_int_equal(r->u.checkin.out->dev.size, 1000);
    assert_int_equal(r->u.checkin.out->dev.bytes, 1000);
    store_req_free(r);
    ss_fake_id(gone, 0x18);
    r = ss_checkin(f, "dev-2", gone, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->dev.size, 0);
    assert_int_equal(r->u.checkin.out->dev.bytes, 0);
    store_req_free(r);
}

/* A step that names no image (a device told to wait, or why not) leaves
 * the image its row follows as it was. */
static void test_step_without_image_keeps_image(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    char hex[2 * TCPOTA_ID_LEN + 1];
    struct store_event it;
    struct store_req *r;

    ss_fake_id(img, 0x15);
    store_hex(img, hex);
    ss_checkin_free(f, "dev-1");
    ss_item(&it, "dev-1", STORE_ST_DOWNLOADING, 0x15, 0, 100, NULL, 0);
    r = ss_run(f, ss_events_req(&it, 1));
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    assert_int_equal(ss_event(f, "dev-1", STORE_ST_WAITING, 0, 0), STORE_OK);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_WAITING);
    assert_string_equal(r->u.device.dev->image, hex);
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

    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    store_req_free(ss_image_add(f, 0x46, "2.0.0"));
    ro = ss_rollout_create(f, 0x46, "", pct, 1);
    ss_item(&it[0], "dev-a", STORE_ST_OFFERED, 0x46, ro, 0, NULL, 0);
    ss_item(&it[1], "dev-ghost", STORE_ST_DOWNLOADING, 0x46, ro, 0, NULL, 0);
    ss_item(&it[2], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 100, NULL, 0);
    ss_item(&it[3], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 500, NULL, 0); /* progress */
    ss_item(&it[4], "dev-b", STORE_ST_OFFERED, 0x46, ro, 0, NULL, 0);
    ss_item(&it[5], "dev-b", STORE_ST_FAILED, 0x46, ro, 0, "integrity", 1);
    it[5].has_failed = 1;
    ss_fake_id(it[5].failed_id, 0x46);
    ss_item(&it[6], "dev-a", STORE_ST_DOWNLOADING, 0x46, ro, 900, NULL, 0);   /* progress */
    ss_item(&it[7], "dev-a", STORE_ST_VERIFIED, 0x46, ro, 1000, NULL, 0);
    r = ss_run(f, ss_events_req(it, 8));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 1);
    assert_non_null(strstr(r->err, "no device dev-ghost"));
    store_req_free(r);
    for (size_t i = 0; i < TCPOTA_ID_LEN; i++) {
        memcpy(hex + 2 * i, "46", 2);
    }
    hex[2 * TCPOTA_ID_LEN] = '\0';
    r = ss_device_get(f, "dev-a");
    assert_int_equal(r->u.device.dev->state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.dev->bytes, 1000);
    assert_string_equal(r->u.device.dev->image, hex);
    /* One line per change, newest first, progress none: the order held. */
    assert_int_equal(r->u.device.nhistory, 4);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_string_equal(r->u.device.history[1].detail, "from byte 100 of 1000");
    assert_int_equal(r->u.device.history[2].state, STORE_ST_OFFERED);
    assert_int_equal(r->u.device.history[3].state, STORE_ST_SEEN);
    store_req_free(r);
    r = ss_device_get(f, "dev-b");
    assert_int_equal(r->u.device.dev->state, STORE_ST_FAILED);
    assert_string_equal(r->u.device.dev->reason, "integrity");
    store_req_free(r);
    r = ss_checkin(f, "dev-b", NULL, 0);
    assert_int_equal(r->u.checkin.out->nfailed, 1);
    store_req_free(r);
    expect_counts(f, ro, 0, 0, 1, 0, 1);
    r = ss_device_get(f, "dev-ghost");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
    /* An empty batch is a no-op; a batch of unknown devices only skips. */
    r = ss_run(f, ss_req(STORE_EVENTS));
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    r = ss_run(f, ss_events_req(&it[1], 1));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 1);
    store_req_free(r);
}

/* A download of another image is a change, not progress of the first: it
 * gets its own line in the history; so does a step with a reason. */
static void test_download_of_another_image(void **state)
{
    struct fx *f = *state;
    struct store_event it[3];
    struct store_req *r;

    ss_checkin_free(f, "dev-a");
    ss_item(&it[0], "dev-a", STORE_ST_DOWNLOADING, 0x47, 0, 100, NULL, 0);
    ss_item(&it[1], "dev-a", STORE_ST_DOWNLOADING, 0x48, 0, 200, NULL, 0);
    /* A step that says why is news too, even of the same image. */
    ss_item(&it[2], "dev-a", STORE_ST_DOWNLOADING, 0x48, 0, 300, "resumed", 0);
    r = ss_run(f, ss_events_req(it, 3));
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "dev-a");
    assert_int_equal(r->u.device.nhistory, 4); /* seen, one line per image, the reason */
    assert_string_equal(r->u.device.history[0].detail, "resumed");
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_int_equal(strncmp(r->u.device.history[1].image, "4848", 4), 0);
    assert_int_equal(strncmp(r->u.device.history[2].image, "4747", 4), 0);
    store_req_free(r);
}

/* An invalid step in a batch (a state past the last) is skipped as an
 * unknown device's is: the batch's other steps are still recorded. */
static void test_events_batch_skips_invalid(void **state)
{
    struct fx *f = *state;
    struct store_event it[3];
    struct store_req *r;

    ss_checkin_free(f, "dev-a");
    ss_item(&it[0], "dev-a", STORE_ST_COUNT, 0, 0, 0, NULL, 0);
    ss_item(&it[1], "dev-zz", STORE_ST_OFFERED, 0x49, 0, 0, NULL, 0);
    ss_item(&it[2], "dev-a", STORE_ST_VERIFIED, 0x49, 0, 1000, NULL, 1);
    r = ss_run(f, ss_events_req(it, 3));
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.events.skipped, 2);
    /* Of them, the one of a device not registered (removed while it was
     * served: news in the log, not an error); not the unknown state. */
    assert_int_equal(r->u.events.missing, 1);
    /* The operator is told how many, and why the first was. */
    assert_string_equal(r->err, "2 of 3 events skipped, the first: event: state: unknown");
    store_req_free(r);
    r = ss_device_get(f, "dev-a");
    assert_int_equal(r->u.device.dev->state, STORE_ST_VERIFIED);
    store_req_free(r);
}

static void test_events_batch_survives_crash(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    ss_crash_and_reopen(f, 2);
    r = ss_device_get(f, "dev-crash");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev->state, STORE_ST_VERIFIED);
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

    ss_checkin_free(f, "dev-plain");
    ss_checkin_free(f, "dev-canary");
    store_req_free(ss_image_add(f, 0x51, "2.0.0"));
    store_req_free(ss_image_add(f, 0x52, "2.1.0"));
    all1 = ss_rollout_create(f, 0x51, "", pct, 1);
    /* Grouping a device adds it to its group's rollout once one exists. */
    r = ss_req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "dev-canary";
    r->u.device.group = "canary";
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_string_equal(r->u.device.dev->group, "canary");
    store_req_free(r);
    canary = ss_rollout_create(f, 0x52, "canary", pct, 1);
    assert_int_equal(created_superseded, 0); /* the group's first */
    r = ss_rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r->waves[0].targeted, 1);
    store_req_free(r);
    all2 = ss_rollout_create(f, 0x52, "", pct, 1);
    assert_int_equal(created_superseded, all1); /* said to the creator */
    r = ss_rollout_get(f, all1);
    assert_int_equal(r->u.rollout.r->superseded, 1);
    store_req_free(r);
    r = ss_rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r->superseded, 0);
    store_req_free(r);
    /* The group's rollout first, even when a newer model-wide one exists. */
    r = ss_checkin(f, "dev-canary", NULL, 0);
    assert_string_equal(r->u.checkin.out->group, "canary");
    assert_int_equal(r->u.checkin.out->rollout.id, canary);
    store_req_free(r);
    r = ss_checkin(f, "dev-plain", NULL, 0);
    assert_int_equal(r->u.checkin.out->rollout.id, all2);
    st = r->u.checkin.ro_status;
    assert_int_equal(st, STORE_RO_TARGETED);
    store_req_free(r);
    /* Moving a device into the group adds its row in the group's rollout. */
    r = ss_req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "dev-plain";
    r->u.device.group = "canary";
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_rollout_get(f, canary);
    assert_int_equal(r->u.rollout.r->waves[0].targeted, 2);
    store_req_free(r);
    /* A group without a rollout of its own: the model-wide one. */
    r = ss_req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "dev-plain";
    r->u.device.group = "beta";
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_checkin(f, "dev-plain", NULL, 0);
    assert_int_equal(r->u.checkin.out->rollout.id, all2);
    store_req_free(r);
    r = ss_req(STORE_DEVICE_SET_GROUP);
    r->u.device.id = "nobody";
    r->u.device.group = "x";
    assert_int_equal(ss_run(f, r)->rc, STORE_E_NOTFOUND);
    store_req_free(r);
}

/* STORE_DEVICE_SET_GROUP of device id to group; its rc. */
static int set_group(struct fx *f, const char *id, const char *group)
{
    struct store_req *r = ss_req(STORE_DEVICE_SET_GROUP);
    int rc;

    r->u.device.id = id;
    r->u.device.group = group;
    rc = ss_run(f, r)->rc;
    store_req_free(r);
    return rc;
}

/* A wave's targeted and offered counts, and its finished devices. */
static void expect_wave(struct fx *f, uint64_t ro, uint32_t targeted, uint32_t offered,
                        uint32_t updated)
{
    struct store_req *r = ss_rollout_get(f, ro);

    assert_int_equal(r->u.rollout.r->waves[0].targeted, targeted);
    assert_int_equal(r->u.rollout.r->waves[0].offered, offered);
    assert_int_equal(r->u.rollout.r->waves[0].updated, updated);
    store_req_free(r);
}

/* A device counts where it finished, or in the rollout that applies to it:
 * a group's rollout takes over the devices of the model-wide one that had
 * not finished there, a model-wide rollout leaves out the groups that have
 * their own, and a device moved to another group leaves the rollout that
 * no longer applies. Else a model-wide wave would wait for devices it will
 * never see finish ("all finished" never holds). */
static void test_group_takes_over(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint64_t all, canary, all2, beta;

    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    ss_checkin_free(f, "dev-c");
    store_req_free(ss_image_add(f, 0x81, "2.0.0"));
    store_req_free(ss_image_add(f, 0x82, "2.1.0"));
    all = ss_rollout_create(f, 0x81, "", pct, 1);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, all, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_UP_TO_DATE, all, 0), STORE_OK);
    expect_wave(f, all, 3, 1, 1);
    /* Grouped while the group has no rollout: the model-wide one still applies. */
    assert_int_equal(set_group(f, "dev-a", "canary"), STORE_OK);
    assert_int_equal(set_group(f, "dev-c", "canary"), STORE_OK);
    expect_wave(f, all, 3, 1, 1);
    /* The group's rollout: dev-a (offered) leaves, dev-c (updated) stays. */
    canary = ss_rollout_create(f, 0x82, "canary", pct, 1);
    expect_wave(f, canary, 2, 0, 0);
    expect_wave(f, all, 2, 0, 1);
    /* A new model-wide rollout targets only dev-b. */
    all2 = ss_rollout_create(f, 0x82, "", pct, 1);
    assert_int_equal(created_superseded, all);
    expect_wave(f, all2, 1, 0, 0);
    /* dev-b offered, then moved into the group: it leaves all2. */
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_OFFERED, all2, 0), STORE_OK);
    assert_int_equal(set_group(f, "dev-b", "canary"), STORE_OK);
    expect_wave(f, all2, 0, 0, 0);
    expect_wave(f, canary, 3, 0, 0);
    /* And back out to a group without a rollout: it leaves canary. */
    assert_int_equal(set_group(f, "dev-b", "beta"), STORE_OK);
    expect_wave(f, canary, 2, 0, 0);
    expect_wave(f, all2, 1, 0, 0);
    /* A rollout created after a cancelled one for its group supersedes
     * nothing that applied: the creator is not told it replaced one. */
    beta = ss_rollout_create(f, 0x82, "beta", pct, 1);
    assert_int_equal(created_superseded, 0);
    assert_int_equal(ss_rollout_set(f, beta, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    (void)ss_rollout_create(f, 0x82, "beta", pct, 1);
    assert_int_equal(created_superseded, 0);
}

/* A group name of STORE_GROUP_MAX bytes is stored whole; one byte more is
 * refused, not cut to fit (it would name another group). */
static void test_group_name_length(void **state)
{
    struct fx *f = *state;
    char group[STORE_GROUP_MAX + 2];
    struct store_req *r;

    ss_checkin_free(f, "dev-1");
    memset(group, 'g', STORE_GROUP_MAX);
    group[STORE_GROUP_MAX] = '\0';
    assert_int_equal(set_group(f, "dev-1", group), STORE_OK);
    r = ss_device_get(f, "dev-1");
    assert_string_equal(r->u.device.dev->group, group);
    store_req_free(r);
    group[STORE_GROUP_MAX] = 'g';
    group[STORE_GROUP_MAX + 1] = '\0';
    assert_int_equal(set_group(f, "dev-1", group), STORE_E_INVAL);
}

/* Resumed after a halt, a rollout's halt rule counts from there: its base
 * holds the failed and finished devices of the moment it resumed. */
static void test_rollout_resume_base(void **state)
{
    static const uint32_t pct[] = {50, 100};
    struct fx *f = *state;
    struct store_rollout before, after;
    struct store_req *r;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x62, "2.0.0"));
    ro = ss_rollout_create(f, 0x62, "", pct, 2);
    ss_checkin_free(f, "dev-1");
    assert_int_equal(ss_event(f, "dev-1", STORE_ST_FAILED, ro, 0), STORE_OK);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_HALTED, 1),
                     STORE_OK);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->waves[0].failed, 1);
    assert_int_equal(r->u.rollout.r->base_failed, 0);
    /* What a check-in of another node read before the halt: active, one
     * failure of one finished since base 0, the halt due. */
    before = *r->u.rollout.r;
    before.ro.state = ROLLOUT_STATE_ACTIVE;
    store_req_free(r);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_HALTED, 1, ROLLOUT_STATE_ACTIVE, 1),
                     STORE_OK);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->base_failed, 1);
    assert_int_equal(r->u.rollout.r->base_finished, 1);
    after = *r->u.rollout.r;
    store_req_free(r);
    /* The halt judged on counts read before the resume: stale, refused
     * (else it would undo the resume); judged on the base as it is now, it
     * goes through. A wave opened on the old counts is no halt: it needs
     * only the state and the waves as seen. */
    for (int now = 0; now < 2; now++) {
        r = ss_req(STORE_ROLLOUT_SET);
        store_rollout_move(r, now ? &after : &before, ROLLOUT_STATE_HALTED, 1);
        assert_int_equal(ss_run(f, r)->rc, now ? STORE_OK : STORE_E_CONFLICT);
        store_req_free(r);
    }
    /* A wave opened on counts read before a resume is no halt: it needs
     * only the state and the waves as seen. */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_HALTED, 1, ROLLOUT_STATE_ACTIVE, 1),
                     STORE_OK);
    ss_checkin_free(f, "dev-2");
    assert_int_equal(ss_event(f, "dev-2", STORE_ST_FAILED, ro, 0), STORE_OK);
    r = ss_rollout_get(f, ro);
    before = *r->u.rollout.r;
    store_req_free(r);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_HALTED, 1),
                     STORE_OK);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_HALTED, 1, ROLLOUT_STATE_ACTIVE, 1),
                     STORE_OK);
    r = ss_req(STORE_ROLLOUT_SET);
    store_rollout_move(r, &before, ROLLOUT_STATE_ACTIVE, 2);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_int_equal(r->u.rollout.r->ro.n_open, 2);
    assert_int_equal(r->u.rollout.r->base_failed, 2);
    store_req_free(r);
}

static void test_rollout_cas(void **state)
{
    static const uint32_t pct[] = {10, 100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x61, "2.0.0"));
    ro = ss_rollout_create(f, 0x61, "", pct, 2);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_PAUSED, 1),
                     STORE_OK);
    /* The second decider lost. */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_HALTED, 1),
                     STORE_E_CONFLICT);
    assert_int_equal(ss_rollout_set(f, 99, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_PAUSED, 1),
                     STORE_E_NOTFOUND);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_PAUSED, 1, ROLLOUT_STATE_ACTIVE, 2),
                     STORE_OK);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->ro.state, ROLLOUT_STATE_ACTIVE);
    assert_int_equal(r->u.rollout.r->ro.n_open, 2);
    assert_int_equal(r->u.rollout.r->waves[1].opened_at, NOW + 60);
    assert_int_equal(r->u.rollout.r->changed_at, NOW + 60);
    store_req_free(r);
    /* Waves never close. */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 2, ROLLOUT_STATE_ACTIVE, 1),
                     STORE_E_INVAL);
    /* Nor open past the last: a device in no wave would be offered. */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 2, ROLLOUT_STATE_ACTIVE, 3),
                     STORE_E_INVAL);
    /* A state past the last is no rollout's; a rollout has a wave open
     * from its creation (refused as such, not as a lost race). */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 2,
                                    (enum rollout_state)(ROLLOUT_STATE_CANCELLED + 1), 2),
                     STORE_E_INVAL);
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 0, ROLLOUT_STATE_ACTIVE, 0),
                     STORE_E_INVAL);
    r = ss_req(STORE_ROLLOUT_LIST);
    ss_run(f, r);
    assert_int_equal(r->u.list.n, 1);
    assert_int_equal(((struct store_rollout *)r->u.list.rows)[0].ro.n_open, 2);
    store_req_free(r);
}

/* A rollout of an image built for another model is refused: its devices
 * would be offered firmware for other hardware. */
static void test_rollout_model_must_match(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t id = 0;

    store_req_free(ss_image_add(f, 0x62, "2.0.0"));
    assert_int_equal(rollout_create_rc(f, 0x62, "esp32-other", "", pct, 1, &id), STORE_E_INVAL);
    r = ss_req(STORE_ROLLOUT_CREATE); /* no model: said so, not "for model esp32, not " */
    ss_fake_id(r->u.rollout.r->image_id, 0x62);
    memcpy(r->u.rollout.r->pct, pct, sizeof(pct));
    r->u.rollout.r->ro.n_waves = 1;
    assert_int_equal(ss_run(f, r)->rc, STORE_E_INVAL);
    assert_string_equal(r->err, "model: required");
    store_req_free(r);
    /* An image the store does not have: not found, not "another model". */
    assert_int_equal(rollout_create_rc(f, 0x63, MODEL, "", pct, 1, &id), STORE_E_NOTFOUND);
    assert_int_equal(rollout_create_rc(f, 0x62, MODEL, "", pct, 1, &id), STORE_OK);
}

/* ---- images ---- */

static int image_rm(struct fx *f, const char *key, char *err)
{
    struct store_req *r = ss_req(STORE_IMAGE_RM);
    int rc;

    snprintf(r->u.image.img->idhex, sizeof(r->u.image.img->idhex), "%s", key);
    rc = ss_run(f, r)->rc;
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
    char err[STORE_ERR_MAX], path[512], lower[2 * TCPOTA_ID_LEN + 1];
    uint64_t ro;

    r = ss_image_add(f, 0x71, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    snprintf(path, sizeof(path), "%s", r->u.image.img->path);
    assert_int_equal(access(path, F_OK), 0);
    store_req_free(r);
    /* The same bytes again: the stored image, and the upload is gone. */
    r = ss_image_add(f, 0x71, "2.0.0");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 0);
    assert_int_equal(r->u.image.img->added_at, NOW);
    assert_int_not_equal(access(r->u.image.path, F_OK), 0);
    store_req_free(r);
    /* Prefixes: 8 digits will do; fewer will not; a shared one is ambiguous. */
    r = ss_req(STORE_IMAGE_GET);
    strcpy(r->u.image.img->idhex, "71717171");
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_string_equal(r->u.image.img->version, "2.0.0");
    store_req_free(r);
    r = ss_req(STORE_IMAGE_GET);
    strcpy(r->u.image.img->idhex, "v:2.0.0");
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    assert_int_equal(image_rm(f, "7171", NULL), STORE_E_INVAL);
    assert_int_equal(image_rm(f, "7171717", NULL), STORE_E_INVAL); /* one digit short */
    assert_int_equal(image_rm(f, "7171717g", NULL), STORE_E_INVAL); /* not hex */
    /* A key longer than an id (the request's field holds no more, the rule
     * does not rely on it): refused before it is copied. */
    r = ss_req(STORE_IMAGE_GET);
    memset(path, '7', 2 * TCPOTA_ID_LEN + 1);
    path[2 * TCPOTA_ID_LEN + 1] = '\0';
    assert_int_equal(store_image_prefix(r, path, lower), STORE_E_INVAL);
    path[2 * TCPOTA_ID_LEN] = '\0';
    assert_int_equal(store_image_prefix(r, path, lower), STORE_OK);
    store_req_free(r);
    assert_int_equal(image_rm(f, "12345678", NULL), STORE_E_NOTFOUND);
    store_req_free(ss_image_add(f, 0x72, "2.0.1"));
    r = ss_req(STORE_IMAGE_GET);
    strcpy(r->u.image.img->idhex, "7");
    assert_int_equal(ss_run(f, r)->rc, STORE_E_INVAL);
    store_req_free(r);
    /* Used by a rollout: refused, naming it; allowed once cancelled. */
    ro = ss_rollout_create(f, 0x71, "", pct, 1);
    assert_int_equal(image_rm(f, "71717171", err), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "rollout 1 (active)"));
    /* Superseded (a newer rollout for its model and group): said so, not
     * "active" (it no longer applies, whatever its state). */
    ss_rollout_create(f, 0x72, "", pct, 1);
    assert_int_equal(image_rm(f, "71717171", err), STORE_E_CONFLICT);
    assert_non_null(strstr(err, "is used by rollout 1 (superseded); cancel the rollout first"));
    /* More than the message holds: the one that applies is named first,
     * and the rest are counted, not cut off mid-word. */
    {
        uint64_t last = 0;
        int k;
        for (k = 0; k < 40; k++) { /* about 25 bytes each: past STORE_ERR_MAX */
            last = ss_rollout_create(f, 0x71, "g", pct, 1);
        }
        assert_int_equal(image_rm(f, "71717171", err), STORE_E_CONFLICT);
        snprintf(lower, sizeof(lower), "rollouts %llu (active), ", (unsigned long long)last);
        assert_non_null(strstr(err, lower));
        assert_non_null(strstr(err, " more; cancel them first"));
        for (k = 0; k < 40; k++) {
            assert_int_equal(ss_rollout_set(f, last - (uint64_t)k, ROLLOUT_STATE_ACTIVE, 1,
                                            ROLLOUT_STATE_CANCELLED, 1),
                             STORE_OK);
        }
    }
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    assert_int_equal(image_rm(f, "71717171", NULL), STORE_OK);
    assert_int_not_equal(access(path, F_OK), 0);
    r = ss_run(f, ss_req(STORE_IMAGE_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_image *)r->u.list.rows)[0].version, "2.0.1");
    store_req_free(r);
}

/* An add that fails half way (its upload cannot be read, after the row
 * would be inserted) leaves nothing: the image is not listed, and adding
 * the same bytes again stores them (on PostgreSQL a request alone in its
 * transaction used to commit what it had written before failing). */
static void test_failed_add_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    r = ss_image_add_from(f, 0x5a, "9.9.9", MODEL, NO_UPLOAD);
    assert_true(r->rc < 0);
    store_req_free(r);
    r = ss_req(STORE_IMAGE_GET);
    strcpy(r->u.image.img->idhex, "v:9.9.9");
    assert_int_equal(ss_run(f, r)->rc, STORE_E_NOTFOUND);
    store_req_free(r);
    r = ss_image_add(f, 0x5a, "9.9.9");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    store_req_free(r);
}

/* An image without a model would be offered to every model: refused, and
 * so is one without a version. */
static void test_image_needs_model_and_version(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    r = ss_image_add_from(f, 0x5b, "1.0.0", "", NO_UPLOAD);
    assert_int_equal(r->rc, STORE_E_INVAL);
    store_req_free(r);
    r = ss_image_add_from(f, 0x5b, "", MODEL, NO_UPLOAD);
    assert_int_equal(r->rc, STORE_E_INVAL);
    store_req_free(r);
}

/* A cancelled rollout does not revive the one it superseded: the model's
 * devices are offered nothing until a new rollout is created. */
static void test_cancel_revives_nothing(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t newer;

    ss_checkin_free(f, "dev-1");
    store_req_free(ss_image_add(f, 0x5c, "2.0.0"));
    store_req_free(ss_image_add(f, 0x5d, "2.1.0"));
    (void)ss_rollout_create(f, 0x5c, "", pct, 1);
    newer = ss_rollout_create(f, 0x5d, "", pct, 1);
    assert_int_equal(ss_rollout_set(f, newer, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    r = ss_checkin(f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.has_rollout, 0);
    store_req_free(r);
}

static void test_image_ambiguous(void **state)
{
    struct fx *f = *state;
    struct store_req *r = ss_req(STORE_IMAGE_ADD);
    char tmp[300];
    FILE *fp;

    store_req_free(ss_image_add(f, 0x81, "1"));
    /* A second id with the same first 4 bytes (8 hex digits). */
    snprintf(tmp, sizeof(tmp), "%s/images/.upload-x", f->dir);
    fp = fopen(tmp, "wb");
    fclose(fp);
    r->u.image.path = tmp;
    ss_fake_id(r->u.image.img->id, 0x81);
    r->u.image.img->id[31] = 0;
    strcpy(r->u.image.img->version, "2");
    strcpy(r->u.image.img->model, MODEL);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_req(STORE_IMAGE_GET);
    strcpy(r->u.image.img->idhex, "81818181");
    assert_int_equal(ss_run(f, r)->rc, STORE_E_CONFLICT);
    assert_non_null(strstr(r->err, "ambiguous"));
    store_req_free(r);
}

/* Another image of the model with the version (or the same precedence) is
 * refused inside the add: nodes on one database whose APIs each checked
 * the version before either added (both were stored). Another model, another
 * version, the same bytes again: added, or found. */
static void test_image_version_taken(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    char tmp[300];
    FILE *fp;

    store_req_free(ss_image_add(f, 0x71, "3.1.0"));
    r = ss_image_add(f, 0x72, "v3.1");
    assert_int_equal(r->rc, STORE_E_CONFLICT);
    assert_string_equal(r->err, "model " MODEL " has version 3.1.0 already (image 717171717171, other"
                                " bytes), the same version as this image's v3.1 (the same"
                                " precedence); give this image a new version, or remove that one"
                                " first (tcpota image rm 717171717171)");
    assert_int_equal(r->u.image.added, 0);
    store_req_free(r);
    r = ss_image_add(f, 0x72, "3.1.0");
    assert_int_equal(r->rc, STORE_E_CONFLICT);
    store_req_free(r);
    r = ss_image_add(f, 0x72, "3.1.1");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    store_req_free(r);
    snprintf(tmp, sizeof(tmp), "%s/images/.upload-other", f->dir);
    assert_non_null(fp = fopen(tmp, "wb"));
    fputs("image bytes", fp);
    fclose(fp);
    r = ss_image_add_from(f, 0x73, "3.1.0", "other-model", tmp);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    store_req_free(r);
    r = ss_image_add(f, 0x71, "3.1.0");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 0);
    store_req_free(r);
    r = ss_req(STORE_IMAGE_LIST);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_int_equal(r->u.list.n, 3);
    store_req_free(r);
}

/* ---- devices ---- */

static struct store_req *device_list(struct fx *f, const char *group, int state_,
                                     const char *after, size_t limit)
{
    struct store_req *r = ss_req(STORE_DEVICE_LIST);

    r->u.list.model = MODEL;
    r->u.list.group = group;
    r->u.list.state = state_;
    r->u.list.after = after;
    r->u.list.limit = limit;
    return ss_run(f, r);
}


/* STORE_SECRET_SET of id: it must succeed and say whether the id had a
 * secret before and is registered. */
static void secret_set_says(struct fx *f, const char *id, const uint8_t *secret, size_t len,
                            int had, int registered)
{
    struct store_req *r = ss_req(STORE_SECRET_SET);

    r->u.device.id = id;
    r->u.device.secret = secret;
    r->u.device.secret_len = len;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_int_equal(r->u.device.had_secret, had);
    assert_int_equal(r->u.device.registered, registered);
    assert_int_equal(r->u.device.http, 0); /* none of these checked in over HTTP */
    store_req_free(r);
}

/* STORE_DEVICE_SET_GROUP of an id not in the registry: not found, and
 * whether it has a secret (had). */
static void set_group_missing(struct fx *f, const char *id, int had)
{
    struct store_req *r = ss_req(STORE_DEVICE_SET_GROUP);

    r->u.device.id = id;
    r->u.device.group = "canary";
    assert_int_equal(ss_run(f, r)->rc, STORE_E_NOTFOUND);
    assert_int_equal(r->u.device.had_secret, had);
    store_req_free(r);
}
static void test_device_list(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct store_device *d;
    char after[TCPOTA_MAX_STR + 1] = "", id[16];
    unsigned i, seen = 0;
    static const uint8_t secret[4] = {1, 2, 3, 4};

    ss_register_devices(f, 30);
    for (i = 0; i < 30; i += 3) {
        ss_dev_name(id, sizeof(id), i);
        assert_int_equal(ss_event(f, id, STORE_ST_FAILED, 0, 0), STORE_OK);
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
            ss_dev_name(id, sizeof(id), seen);
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
    /* What it did: a registered device's first secret. */
    secret_set_says(f, "dev-0001", secret, sizeof(secret), 0, 1);
    r = ss_device_get(f, "dev-0001");
    assert_int_equal(r->u.device.dev->has_secret, 1);
    store_req_free(r);
    /* An id never seen: its secret does not register it, and a second one
     * replaces the first; looking it up says it has one. */
    secret_set_says(f, "ghost", secret, sizeof(secret), 0, 0);
    secret_set_says(f, "ghost", secret, sizeof(secret), 1, 0);
    r = ss_device_get(f, "ghost");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    assert_int_equal(r->u.device.had_secret, 1);
    store_req_free(r);
    r = ss_device_get(f, "nobody");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    assert_int_equal(r->u.device.had_secret, 0);
    store_req_free(r);
    /* Its group cannot be set before it checks in: said the same way. */
    set_group_missing(f, "ghost", 1);
    set_group_missing(f, "nobody", 0);
    r = ss_run(f, ss_req(STORE_SECRET_LIST));
    assert_int_equal(r->u.list.n, 2);
    assert_memory_equal(((struct store_secret *)r->u.list.rows)[0].secret, secret, 4);
    store_req_free(r);
}

/* STORE_DEVICE_DELETE of id: its rc, and what it says there was. */
static int device_delete(struct fx *f, const char *id, int *registered, int *had_secret)
{
    struct store_req *r = ss_req(STORE_DEVICE_DELETE);
    int rc;

    r->u.device.id = id;
    rc = ss_run(f, r)->rc;
    *registered = r->u.device.registered;
    *had_secret = r->u.device.had_secret;
    store_req_free(r);
    return rc;
}

/* The secrets STORE_SECRET_LIST returns after generation since: how many,
 * and how many of them are removals (no bytes). *gen: the list's. */
static size_t secrets_since(struct fx *f, int64_t since, size_t *removed, int64_t *gen)
{
    struct store_req *r = ss_req(STORE_SECRET_LIST);
    const struct store_secret *s;
    size_t i, n;

    r->u.list.since = since;
    s = ss_run(f, r)->u.list.rows;
    assert_int_equal(r->rc, STORE_OK);
    n = r->u.list.n;
    for (i = 0, *removed = 0; i < n; i++) {
        *removed += s[i].len == 0;
    }
    *gen = r->u.list.gen;
    store_req_free(r);
    return n;
}

/* The ids STORE_SECRET_LIST returns after since, joined by spaces. */
static void secret_ids_since(struct fx *f, int64_t since, char *out, size_t cap)
{
    struct store_req *r = ss_req(STORE_SECRET_LIST);
    const struct store_secret *s;
    size_t i, at = 0;

    r->u.list.since = since;
    s = ss_run(f, r)->u.list.rows;
    assert_int_equal(r->rc, STORE_OK);
    out[0] = '\0';
    for (i = 0; i < r->u.list.n; i++) {
        at += (size_t)snprintf(out + at, cap - at, "%s%s", i ? " " : "", s[i].id);
        assert_true(at < cap);
    }
    store_req_free(r);
}

/* A full list (since 0) comes sorted by id as strcmp orders them, as a
 * node holds its secrets (fleet.c merges it without sorting it on its
 * loop); a list after a generation in the order written (PostgreSQL; a
 * node applies the rows in turn). */
static void test_secret_list_order(void **state)
{
    static const uint8_t secret[TCPOTA_SECRET_MIN] = {9};
    struct fx *f = *state;
    char ids[128];
    size_t removed;
    int64_t gen0;

    (void)secrets_since(f, 0, &removed, &gen0);
    secret_set_says(f, "m-2", secret, sizeof(secret), 0, 0);
    secret_set_says(f, "z-1", secret, sizeof(secret), 0, 0);
    secret_set_says(f, "a-3", secret, sizeof(secret), 0, 0);
    secret_set_says(f, "Z-4", secret, sizeof(secret), 0, 0);
    secret_ids_since(f, 0, ids, sizeof(ids));
    assert_string_equal(ids, "Z-4 a-3 m-2 z-1");
    if (gen0 > 0) {
        secret_ids_since(f, gen0, ids, sizeof(ids));
        assert_string_equal(ids, "m-2 z-1 a-3 Z-4");
    }
}

/* The operator's "device rm" (STORE_DEVICE_DELETE): the device leaves the
 * registry, with its history, failures and secret; it leaves the rollouts
 * it had not finished (their counts with it) and stays counted where it
 * finished; a removed secret is one for every reader (PostgreSQL keeps a
 * row of no bytes for the other nodes, which only a list after a
 * generation returns); a device that checks in again starts anew. */
static void test_device_delete(void **state)
{
    static const uint32_t pct[] = {100};
    static const uint8_t secret[TCPOTA_SECRET_MIN] = {7};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    int reg = -1, had = -1;
    size_t removed;
    int64_t gen0, gen;
    uint64_t ro;

    ss_fake_id(img, 0x91);
    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    ss_checkin_free(f, "dev-c");
    ss_checkin_free(f, "dev-d");
    store_req_free(ss_checkin(f, "dev-a", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_image_add(f, 0x92, "2.0.0"));
    ro = ss_rollout_create(f, 0x92, "", pct, 1);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_UP_TO_DATE, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-c", STORE_ST_DECLINED, ro, 0), STORE_OK);
    expect_wave(f, ro, 4, 1, 1);
    secret_set_says(f, "dev-a", secret, sizeof(secret), 0, 1);
    secret_set_says(f, "ghost", secret, sizeof(secret), 0, 0);
    (void)secrets_since(f, 0, &removed, &gen0);

    /* Offered (not finished): it leaves the wave. */
    assert_int_equal(device_delete(f, "dev-a", &reg, &had), STORE_OK);
    assert_int_equal(reg, 1);
    assert_int_equal(had, 1);
    expect_wave(f, ro, 3, 0, 1);
    r = ss_device_get(f, "dev-a");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    assert_int_equal(r->u.device.had_secret, 0);
    store_req_free(r);
    r = device_list(f, NULL, -1, NULL, 0);
    assert_int_equal(r->u.list.total, 3);
    store_req_free(r);
    assert_int_equal(device_delete(f, "dev-a", &reg, &had), STORE_E_NOTFOUND);
    assert_int_equal(reg, 0);
    assert_int_equal(had, 0);
    /* Finished (updated, failed): counted where it finished. */
    assert_int_equal(device_delete(f, "dev-b", &reg, &had), STORE_OK);
    assert_int_equal(had, 0);
    assert_int_equal(device_delete(f, "dev-c", &reg, &had), STORE_OK);
    expect_wave(f, ro, 3, 0, 1);
    expect_counts(f, ro, 0, 0, 0, 1, 1);
    /* An id with a secret only: the secret goes. */
    assert_int_equal(device_delete(f, "ghost", &reg, &had), STORE_OK);
    assert_int_equal(reg, 0);
    assert_int_equal(had, 1);
    /* No reader sees a removed secret as one; PostgreSQL lists each
     * removal (no bytes) for the other nodes, from generation 0 too (a
     * node whose count went back reads all again); SQLite's one node
     * numbers nothing and lists the secrets it holds. */
    assert_int_equal(secrets_since(f, 0, &removed, &gen), gen0 > 0 ? 2 : 0);
    assert_int_equal(removed, gen0 > 0 ? 2 : 0);
    if (gen0 > 0) {
        assert_int_equal(secrets_since(f, gen0, &removed, &gen), 2);
        assert_int_equal(removed, 2);
    }
    r = ss_device_get(f, "ghost");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    assert_int_equal(r->u.device.had_secret, 0);
    store_req_free(r);
    secret_set_says(f, "ghost", secret, sizeof(secret), 0, 0);
    /* A secret after the removal: the removal is not listed beside it
     * (a node reading both would take whichever came last in the list). */
    assert_int_equal(secrets_since(f, 0, &removed, &gen) - removed, 1);
    assert_int_equal(removed, gen0 > 0 ? 1 : 0);
    /* Back: registered anew, nothing held back, its history new. */
    r = ss_checkin(f, "dev-a", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.out->nfailed, 0);
    assert_int_equal(r->u.checkin.out->dev.has_secret, 0);
    store_req_free(r);
    r = ss_device_get(f, "dev-a");
    assert_int_equal(r->rc, STORE_OK);
    assert_true(r->u.device.nhistory <= 1);
    store_req_free(r);
    expect_wave(f, ro, 4, 0, 1);
}

/* STORE_SECRET_SET of id with a secret of len bytes; its rc. */
static int secret_set(struct fx *f, const char *id, size_t len)
{
    static const uint8_t bytes[TCPOTA_SECRET_MAX + 1];
    struct store_req *r = ss_req(STORE_SECRET_SET);
    int rc;

    r->u.device.id = id;
    r->u.device.secret = bytes;
    r->u.device.secret_len = len;
    rc = ss_run(f, r)->rc;
    store_req_free(r);
    return rc;
}

/* The longest id and secret AUTH carries are stored; one byte more of
 * either is refused (the server's table of secrets holds no more). */
static void test_secret_lengths(void **state)
{
    struct fx *f = *state;
    char id[TCPOTA_MAX_STR + 2];
    struct store_req *r;

    memset(id, 's', TCPOTA_MAX_STR);
    id[TCPOTA_MAX_STR] = '\0';
    assert_int_equal(secret_set(f, id, TCPOTA_SECRET_MAX), STORE_OK);
    assert_int_equal(secret_set(f, "dev-1", TCPOTA_SECRET_MAX + 1), STORE_E_INVAL);
    id[TCPOTA_MAX_STR] = 's';
    id[TCPOTA_MAX_STR + 1] = '\0';
    assert_int_equal(secret_set(f, id, 1), STORE_E_INVAL);
    r = ss_run(f, ss_req(STORE_SECRET_LIST));
    assert_int_equal(r->u.list.n, 1);
    assert_int_equal(((struct store_secret *)r->u.list.rows)[0].len, TCPOTA_SECRET_MAX);
    store_req_free(r);
}

/* r's rc is STORE_E_INVAL and its message says err; frees r. */
static void assert_refused(struct fx *f, struct store_req *r, const char *err)
{
    assert_int_equal(ss_run(f, r)->rc, STORE_E_INVAL);
    assert_string_equal(r->err, err);
    store_req_free(r);
}

/* Requests without what their op needs are refused, naming the field,
 * before anything is read or written (store_req_check, one rule for both
 * backends): the API and the server always fill them, a mistake in a new
 * caller must not become a row. */
static void test_requests_missing_fields(void **state)
{
    static const uint8_t secret[1];
    struct fx *f = *state;
    struct store_req *r;

    r = ss_req(STORE_CHECKIN);
    r->u.checkin.id = "";
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.0.0";
    assert_refused(f, r, "checkin: id, model and version are required");
    r = ss_req(STORE_CHECKIN);
    r->u.checkin.id = "dev-1";
    r->u.checkin.model = MODEL;
    assert_refused(f, r, "checkin: id, model and version are required");
    r = ss_req(STORE_CHECKIN);
    r->u.checkin.id = "dev-1";
    r->u.checkin.version = "1.0.0";
    assert_refused(f, r, "checkin: id, model and version are required");
    r = ss_req(STORE_CHECKIN);
    r->u.checkin.model = MODEL;
    r->u.checkin.version = "1.0.0";
    assert_refused(f, r, "checkin: id, model and version are required");
    r = ss_req(STORE_SEEN);
    r->u.seen.n = 1;
    assert_refused(f, r, "seen: ids: required");
    assert_refused(f, ss_req(STORE_DEVICE_GET), "id: required");
    assert_refused(f, ss_req(STORE_DEVICE_SET_GROUP), "id: required");
    r = ss_req(STORE_SECRET_SET);
    r->u.device.id = "";
    r->u.device.secret = secret;
    r->u.device.secret_len = sizeof(secret);
    assert_refused(f, r, "id: 1 to 64 bytes");
    r = ss_req(STORE_SECRET_SET);
    r->u.device.id = "dev-1";
    r->u.device.secret_len = sizeof(secret);
    assert_refused(f, r, "secret: 1 to 64 bytes");
    r = ss_req(STORE_SECRET_SET);
    r->u.device.id = "dev-1";
    r->u.device.secret = secret;
    assert_refused(f, r, "secret: 1 to 64 bytes");
    r = ss_req(STORE_IMAGE_ADD);
    snprintf(r->u.image.img->model, sizeof(r->u.image.img->model), "%s", MODEL);
    snprintf(r->u.image.img->version, sizeof(r->u.image.img->version), "2.0.0");
    assert_refused(f, r, "path: required");
    r = ss_req(STORE_IMAGE_ADD);
    r->u.image.path = "/nonexistent";
    snprintf(r->u.image.img->model, sizeof(r->u.image.img->model), "%s", MODEL);
    snprintf(r->u.image.img->version, sizeof(r->u.image.img->version), "2.0.0");
    r->u.image.img->manifest_len = sizeof(r->u.image.img->manifest) + 1;
    assert_refused(f, r, "manifest: too long");
    /* A step without its device, a batch that says it has steps and has none. */
    r = ss_req(STORE_EVENT);
    r->u.event.state = STORE_ST_OFFERED;
    assert_refused(f, r, "event: id: required");
    r = ss_req(STORE_EVENTS);
    r->u.events.n = 1;
    assert_refused(f, r, "events: items: required");
    /* Nothing of it was stored. */
    r = ss_run(f, ss_req(STORE_DEVICE_LIST));
    assert_int_equal(r->u.list.n, 0);
    store_req_free(r);
}

/* A device's history keeps its newest STORE_HISTORY_MAX rows or a few more
 * (store.h), whatever it wrote before; another device's is left alone. */
static void test_history_pruned(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    long long rows;
    unsigned i;

    ss_checkin_free(f, "dev-long");
    ss_checkin_free(f, "dev-short");
    assert_int_equal(ss_event(f, "dev-short", STORE_ST_OFFERED, 0, 0), STORE_OK);
    for (i = 0; i < 3 * STORE_HISTORY_MAX; i++) {
        /* Each a change of state: a row each. */
        assert_int_equal(ss_event(f, "dev-long", i % 2 ? STORE_ST_FAILED : STORE_ST_OFFERED, 0, i),
                         STORE_OK);
    }
    ss_reopen(f); /* committed: a batch's rows are seen by another connection after it */
    rows = ss_backend->history_rows(f, "dev-long");
    assert_true(rows >= (long long)STORE_HISTORY_MAX);
    assert_true(rows <= (long long)(STORE_HISTORY_MAX + STORE_HISTORY_PRUNE_EVERY));
    assert_int_equal(ss_backend->history_rows(f, "dev-short"), 2); /* seen, offered */
    r = ss_device_get(f, "dev-long");
    assert_int_equal(r->u.device.nhistory, STORE_HISTORY_MAX);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_FAILED); /* the last, i = 599 */
    assert_int_equal(r->u.device.history[1].state, STORE_ST_OFFERED);
    store_req_free(r);
}

static void test_history_order(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    ss_checkin_free(f, "dev-h");
    assert_int_equal(ss_event(f, "dev-h", STORE_ST_OFFERED, 0, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 100), STORE_OK);
    assert_int_equal(ss_event(f, "dev-h", STORE_ST_DOWNLOADING, 0, 200), STORE_OK);
    assert_int_equal(ss_event(f, "dev-h", STORE_ST_FAILED, 0, 200), STORE_OK);
    assert_int_equal(ss_event(f, "nobody", STORE_ST_FAILED, 0, 0), STORE_E_NOTFOUND);
    r = ss_device_get(f, "dev-h");
    assert_int_equal(r->u.device.nhistory, 4);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_FAILED);
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_int_equal(r->u.device.history[2].state, STORE_ST_OFFERED);
    assert_int_equal(r->u.device.history[3].state, STORE_ST_SEEN);
    assert_int_equal(r->u.device.dev->bytes, 200);
    store_req_free(r);
    r = ss_device_get(f, "nobody");
    assert_int_equal(r->rc, STORE_E_NOTFOUND);
    store_req_free(r);
}

/* ---- the dashboard's queries (STORE_DEVICE_LIST's prefix, STORE_SUMMARY) ---- */

/* q of the API: ids starting with a prefix are a range of the primary key,
 * paged with `after` like any list, the total counting every page. */
static void test_device_list_prefix(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct store_device *d;

    ss_register_devices(f, 30);
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-001";
    r->u.list.after = "dev-0014";
    r->u.list.limit = 3;
    ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.list.total, 10);
    assert_int_equal(r->u.list.n, 3);
    d = r->u.list.rows;
    assert_string_equal(d[0].id, "dev-0015");
    assert_string_equal(d[2].id, "dev-0017");
    store_req_free(r);
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-0029";
    ss_run(f, r);
    assert_int_equal(r->u.list.n, 1);
    store_req_free(r);
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.prefix = "dev-003";
    ss_run(f, r);
    assert_int_equal(r->u.list.n, 0);
    assert_int_equal(r->u.list.total, 0);
    store_req_free(r);
}

/* STORE_SUMMARY with failures of the last hour; it must succeed. */
static struct store_req *summary_last_hour(struct fx *f)
{
    struct store_req *r = ss_req(STORE_SUMMARY);

    r->u.summary.since = NOW - 3600;
    ss_run(f, r);
    if (r->rc != STORE_OK) fail_msg("summary: %d: %s", r->rc, r->err);
    return r;
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

    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    ss_checkin_free(f, "dev-c");
    store_req_free(ss_image_add(f, 0x44, "2.0.0"));
    ro = ss_rollout_create(f, 0x44, "", pct, 1);
    ss_fake_id(img, 0x44);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-a", img, TCPOTA_RESULT_ROLLED_BACK));
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_OFFERED, ro, 0), STORE_OK);
    store_req_free(ss_checkin(f, "dev-b", img, TCPOTA_RESULT_ROLLED_BACK));
    r = summary_last_hour(f);
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
    /* dev-b updated since, to another image: still one of the rollout's
     * failed devices, shown as failed and moved on, not as "updated". */
    ss_fake_id(img, 0x45);
    store_req_free(ss_checkin(f, "dev-b", img, TCPOTA_RESULT_CONFIRMED));
    r = summary_last_hour(f);
    for (i = 0, nro = 0; i < r->u.summary.n; i++) {
        t = &r->u.summary.rows[i];
        if (t->kind != STORE_TALLY_ROLLOUT_FAILED) continue;
        nro++;
        assert_int_equal(t->n, 1);
        if (t->state == STORE_ST_FAILED) {
            assert_string_equal(t->reason, STORE_MOVED_ON_REASON);
        } else {
            assert_int_equal(t->state, STORE_ST_ROLLED_BACK);
            assert_non_null(strstr(t->reason, "health check failed"));
        }
    }
    assert_int_equal(nro, 2);
    store_req_free(r);
    /* Failures older than `since` are not counted; nor those of a cancelled rollout. */
    assert_int_equal(ss_rollout_set(f, ro, ROLLOUT_STATE_ACTIVE, 1, ROLLOUT_STATE_CANCELLED, 1),
                     STORE_OK);
    r = ss_req(STORE_SUMMARY);
    r->u.summary.since = NOW + 1;
    ss_run(f, r);
    for (i = 0; i < r->u.summary.n; i++) {
        assert_true(r->u.summary.rows[i].kind == STORE_TALLY_STATES ||
                    r->u.summary.rows[i].kind == STORE_TALLY_VERSIONS);
    }
    store_req_free(r);
}


/* A checked-in device of model and version (not MODEL's 1.0.0). */
static void checkin_as(struct fx *f, const char *id, const char *model, const char *version)
{
    struct store_req *r = ss_req(STORE_CHECKIN);

    r->u.checkin.id = id;
    r->u.checkin.model = model;
    r->u.checkin.version = version;
    r->u.checkin.addr = "127.0.0.1";
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
}

/* A device that checks in under another model leaves the rollouts of the
 * old one it had not finished, as one moved to another group does: else a
 * wave counts a device it never sees again. Where it finished it stays
 * counted; back under the model, it is targeted again. */
static void test_model_change_leaves(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    uint64_t ro;

    ss_checkin_free(f, "dev-a");
    ss_checkin_free(f, "dev-b");
    store_req_free(ss_image_add(f, 0x91, "2.0.0"));
    ro = ss_rollout_create(f, 0x91, "", pct, 1);
    assert_int_equal(ss_event(f, "dev-a", STORE_ST_OFFERED, ro, 0), STORE_OK);
    assert_int_equal(ss_event(f, "dev-b", STORE_ST_FAILED, ro, 0), STORE_OK);
    expect_wave(f, ro, 2, 1, 0);
    checkin_as(f, "dev-a", "other", "1.0.0");
    checkin_as(f, "dev-b", "other", "1.0.0");
    expect_wave(f, ro, 1, 0, 0);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->waves[0].failed, 1); /* dev-b finished there */
    store_req_free(r);
    r = ss_checkin(f, "dev-a", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.has_rollout, 1);
    assert_int_equal(r->u.checkin.ro_status, STORE_RO_TARGETED);
    store_req_free(r);
    expect_wave(f, ro, 2, 0, 0);
}

/* A prefix with the other filters: the range and the filters both hold. */
static void test_device_list_prefix_filtered(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    struct store_device *d;

    checkin_as(f, "ab-1", "m-x", "1.0");
    checkin_as(f, "ab-2", "m-y", "1.0");
    checkin_as(f, "ab", "m-x", "1.0");
    checkin_as(f, "abc", "m-x", "1.0");
    checkin_as(f, "ac", "m-x", "1.0");
    checkin_as(f, "a", "m-x", "1.0");
    r = ss_req(STORE_DEVICE_LIST);
    r->u.list.state = -1;
    r->u.list.model = "m-x";
    r->u.list.prefix = "ab";
    ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.list.total, 3);
    assert_int_equal(r->u.list.n, 3);
    d = r->u.list.rows;
    assert_string_equal(d[0].id, "ab"); /* the prefix itself matches */
    assert_string_equal(d[1].id, "ab-1");
    assert_string_equal(d[2].id, "abc");
    store_req_free(r);
}

/* Ties in the counts come in one order, bytewise (uppercase first), on
 * every backend: the rows are the same whoever answers. Every model here
 * has 2 devices; its versions 2, 2, then 1 and 1. */
static void test_summary_order(void **state)
{
    static const char *const want_states[] = {"M-c", "m-a", "m-b"};
    static const char *const want_versions[][2] = {
        {"M-c", "1.0"}, {"m-b", "1.0"}, {"m-a", "1.0"}, {"m-a", "2.0"}};
    struct fx *f = *state;
    const struct store_tally *t;
    struct store_req *r;
    size_t i, ns = 0, nv = 0;

    checkin_as(f, "d1", "m-b", "1.0");
    checkin_as(f, "d2", "m-b", "1.0");
    checkin_as(f, "d3", "m-a", "2.0");
    checkin_as(f, "d4", "M-c", "1.0");
    checkin_as(f, "d5", "m-a", "1.0");
    checkin_as(f, "d6", "M-c", "1.0");
    r = summary_last_hour(f);
    for (i = 0; i < r->u.summary.n; i++) {
        t = &r->u.summary.rows[i];
        if (t->kind == STORE_TALLY_STATES) {
            assert_true(ns < 3);
            assert_string_equal(t->model, want_states[ns]);
            ns++;
        } else if (t->kind == STORE_TALLY_VERSIONS) {
            assert_true(nv < 4);
            assert_string_equal(t->model, want_versions[nv][0]);
            assert_string_equal(t->version, want_versions[nv][1]);
            nv++;
        }
    }
    assert_int_equal(ns, 3);
    assert_int_equal(nv, 4);
    store_req_free(r);
}

/* A rollout's failed devices in the same order on every backend: by count
 * (most first), then state, then reason; a device moved on since (updated
 * to another image) among them as failed. */
static void test_summary_rollout_failures_order(void **state)
{
    static const uint32_t pct[] = {100};
    static const enum store_dev_state want[] = {STORE_ST_ROLLED_BACK, STORE_ST_DECLINED,
                                                STORE_ST_FAILED};
    static const uint64_t want_n[] = {2, 1, 1};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN], other[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t i, k = 0;
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x49, "2.0.0"));
    ro = ss_rollout_create(f, 0x49, "", pct, 1);
    ss_fake_id(img, 0x49);
    ss_fake_id(other, 0x4a);
    store_req_free(ss_checkin(f, "r1", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "r2", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "r4", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "r4", other, TCPOTA_RESULT_CONFIRMED)); /* moved on */
    ss_final_step(f, "r3", STORE_ST_DECLINED, 0x49, ro, "image is not signed");
    r = summary_last_hour(f);
    for (i = 0; i < r->u.summary.n; i++) {
        const struct store_tally *t = &r->u.summary.rows[i];
        if (t->kind != STORE_TALLY_ROLLOUT_FAILED) continue;
        assert_true(k < 3);
        assert_int_equal(t->state, want[k]);
        assert_int_equal(t->n, want_n[k]);
        if (want[k] == STORE_ST_FAILED) assert_string_equal(t->reason, STORE_MOVED_ON_REASON);
        k++;
    }
    assert_int_equal(k, 3);
    store_req_free(r);
}


/* Which of a rollout's failed devices show their own failure: those whose
 * row is still about the rollout's image, in a failure state (rolled back,
 * boot failed, declined, failed); one that moved on to another image shows
 * as failed, moved on, even when it failed that one too. A mutation review
 * dropped either half of the rule (the image, the failed state) and no
 * test failed. */
static void test_summary_rollout_failures_which(void **state)
{
    static const struct {
        enum store_dev_state st;
        const char *reason;
    } want[] = {{STORE_ST_ROLLED_BACK, NULL},
                {STORE_ST_BOOT_FAILED, NULL},
                {STORE_ST_FAILED, "download failed"},
                {STORE_ST_FAILED, STORE_MOVED_ON_REASON}};
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN], other[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t i, k, seen[4] = {0};

    store_req_free(ss_image_add(f, 0x4b, "2.0.0"));
    uint64_t ro = ss_rollout_create(f, 0x4b, "", pct, 1);
    ss_fake_id(img, 0x4b);
    ss_fake_id(other, 0x4c);
    store_req_free(ss_checkin(f, "w1", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "w2", img, TCPOTA_RESULT_BOOT_FAILED));
    store_req_free(ss_checkin(f, "w4", img, TCPOTA_RESULT_ROLLED_BACK));
    store_req_free(ss_checkin(f, "w4", other, TCPOTA_RESULT_ROLLED_BACK)); /* moved on, failed */
    ss_final_step(f, "w3", STORE_ST_FAILED, 0x4b, ro, "download failed");
    r = summary_last_hour(f);
    for (i = 0; i < r->u.summary.n; i++) {
        const struct store_tally *t = &r->u.summary.rows[i];
        if (t->kind != STORE_TALLY_ROLLOUT_FAILED) continue;
        for (k = 0; k < 4; k++) {
            if (t->state == want[k].st && (!want[k].reason || !strcmp(t->reason, want[k].reason))) {
                break;
            }
        }
        if (k == 4 || t->n != 1) {
            fail_msg("a row of state %d, reason \"%s\", %llu devices", (int)t->state, t->reason,
                     (unsigned long long)t->n);
        }
        seen[k]++;
    }
    for (k = 0; k < 4; k++) assert_int_equal(seen[k], 1);
    store_req_free(r);
}

/* A rollout's rows for many devices (more than one insert's worth on
 * PostgreSQL: 4096) and for ids holding what quotes or separates array
 * elements: each device in exactly once, counted once. */
static void test_rollout_targets_many(void **state)
{
    static const char *const odd[] = {"q\"uote", "back\\slash", "com,ma", "{brace}", "sp ace"};
    static const uint32_t pct[] = {100};
    const unsigned many = 4100;
    struct fx *f = *state;
    struct store_req *r;
    uint64_t ro;
    size_t i;

    ss_register_devices(f, many);
    for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        checkin_as(f, odd[i], MODEL, "1.0.0");
    }
    store_req_free(ss_image_add(f, 0x55, "2.0.0"));
    ro = ss_rollout_create(f, 0x55, "", pct, 1);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->waves[0].targeted, many + sizeof(odd) / sizeof(odd[0]));
    store_req_free(r);
    /* Already in it: a check-in finds its row, the count stays. */
    for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        r = ss_checkin(f, odd[i], NULL, 0);
        assert_int_equal(r->rc, STORE_OK);
        assert_int_equal(r->u.checkin.has_rollout, 1);
        assert_int_equal(r->u.checkin.out->rollout.waves[0].targeted,
                         many + sizeof(odd) / sizeof(odd[0]));
        store_req_free(r);
    }
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

/* A durable STORE_EVENT of dev-1 about image img (the caller frees it). */
static struct store_req *late_step(enum store_dev_state state, const uint8_t *img)
{
    struct store_req *r = ss_req(STORE_EVENT);

    r->u.event.id = "dev-1";
    r->u.event.state = state;
    r->u.event.image_id = img;
    r->u.event.durable = 1;
    return r;
}

/* A step about the image a device has reported on, written late (kept
 * through an outage on one PostgreSQL node while the report reached
 * another; on one node, a half-open connection that times out after the
 * device reported on a new one): the report's state stays, the step is in
 * the history. */
static void test_late_step(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;

    ss_fake_id(img, 0x77);
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_CONFIRMED));
    r = late_step(STORE_ST_VERIFIED, img);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_UPDATED);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_VERIFIED);
    store_req_free(r);
}

/* The same in a rollout: the device has reported the image confirmed
 * (updated in its wave), then an older transfer's failure arrives late.
 * The wave still counts it updated, not failed (a late step would
 * otherwise move a success into the halt rule's failures). */
static void test_late_step_in_rollout(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    uint64_t ro;

    ss_fake_id(img, 0x77);
    store_req_free(ss_image_add(f, 0x77, "2.0.0"));
    ro = ss_rollout_create(f, 0x77, "", pct, 1);
    ss_checkin_free(f, "dev-1");
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_CONFIRMED));
    r = late_step(STORE_ST_FAILED, img);
    r->u.event.rollout_id = ro;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->u.rollout.r->waves[0].updated, 1);
    assert_int_equal(r->u.rollout.r->waves[0].failed, 0);
    store_req_free(r);
}

/* A boot failure, the image offered once more (tcpota_srv_report_final),
 * its transfer, then a second boot failure: the offer starts a transfer
 * whose steps count (not late steps), so the second report is a change,
 * recorded, not taken for a repeat of the first (a trial: one line of
 * two, the second failure, which makes the image final, unsaid). */
static void test_second_boot_failure(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;
    size_t i, booted = 0;

    ss_fake_id(img, 0x78);
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_BOOT_FAILED));
    r = late_step(STORE_ST_OFFERED, img);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_OFFERED);
    store_req_free(r);
    r = late_step(STORE_ST_VERIFIED, img);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_BOOT_FAILED));
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_BOOT_FAILED);
    for (i = 0; i < r->u.device.nhistory; i++) {
        booted += r->u.device.history[i].state == STORE_ST_BOOT_FAILED;
    }
    assert_int_equal(booted, 2);
    store_req_free(r);
}

/* A decision without an image after a report (the rollout cancelled: no
 * rollout for the device's model) is no late step: the device is up to
 * date, as told, and a decision that names the reported image is not
 * taken for a transfer's late step either when it comes with no image. */
static void test_decision_after_report(void **state)
{
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r;

    ss_fake_id(img, 0x77);
    store_req_free(ss_checkin(f, "dev-1", img, TCPOTA_RESULT_ROLLED_BACK));
    r = late_step(STORE_ST_UP_TO_DATE, NULL);
    r->u.event.reason = "no rollout for model " MODEL;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "dev-1");
    assert_int_equal(r->u.device.dev->state, STORE_ST_UP_TO_DATE);
    /* It runs what it ran, not the image it rolled back: none shown. */
    assert_string_equal(r->u.device.dev->image, "");
    store_req_free(r);
    /* A device that updated keeps its image when it is told the same. */
    store_req_free(ss_checkin(f, "dev-2", img, TCPOTA_RESULT_CONFIRMED));
    r = late_step(STORE_ST_UP_TO_DATE, NULL);
    r->u.event.id = "dev-2";
    r->u.event.reason = "no rollout for model " MODEL;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
    r = ss_device_get(f, "dev-2");
    assert_int_equal(r->u.device.dev->state, STORE_ST_UP_TO_DATE);
    assert_int_equal(strlen(r->u.device.dev->image), 2 * TCPOTA_ID_LEN);
    store_req_free(r);
}

const struct CMUnitTest ss_tests[] = {
    cmocka_unit_test_setup_teardown(test_reopen_keeps_data, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_schema_versions, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_checkin_registers_once, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_checkin_returns_stored_row, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_checkin_stores_one_change, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_seen, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_step_keeps_last_seen, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_report_applied_once, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_report_survives_crash, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_progress_one_batch_behind, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_rollout_waves_targeted, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_counters_follow_events, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_up_to_date_after_report, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_late_step, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_late_step_in_rollout, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_decision_after_report, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_second_boot_failure, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_decline_counts_failed, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_report_of_another_image, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_device_retry, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_device_delete, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_secret_list_order, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_cancelled_counts_final, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_superseded_counts_final, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_superseded_other_image_counts, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_first_checkin_report_counts, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_report_names_the_size, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_step_without_image_keeps_image, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_events_batch, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_download_of_another_image, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_events_batch_skips_invalid, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_events_batch_survives_crash, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_supersede_and_group, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_group_name_length, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_group_takes_over, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_rollout_cas, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_rollout_resume_base, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_image_version_taken, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_rollout_model_must_match, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_images, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_failed_add_leaves_nothing, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_image_needs_model_and_version, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_cancel_revives_nothing, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_image_ambiguous, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_device_list, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_secret_lengths, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_requests_missing_fields, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_history_order, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_history_pruned, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_device_list_prefix, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_device_list_prefix_filtered, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_model_change_leaves, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_summary, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_summary_order, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_summary_rollout_failures_order, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_summary_rollout_failures_which, ss_setup, ss_teardown),
    cmocka_unit_test_setup_teardown(test_rollout_targets_many, ss_setup, ss_teardown),
    cmocka_unit_test(test_names),
};
const size_t ss_ntests = sizeof(ss_tests) / sizeof(ss_tests[0]);

int ss_run_all(const char *name, const struct ss_backend *b, const struct CMUnitTest *own,
               size_t nown)
{
    struct CMUnitTest *all = calloc(ss_ntests + nown, sizeof(*all));
    int rc;

    assert_non_null(all);
    ss_backend = b;
    memcpy(all, ss_tests, sizeof(ss_tests));
    if (nown) {
        memcpy(all + ss_ntests, own, nown * sizeof(*own));
    }
    rc = _cmocka_run_group_tests(name, all, ss_ntests + nown, NULL, NULL);
    free(all);
    return rc;
}
