/* bench_store_sqlite.c - times the SQLite store on a large fleet, by hand
 * (not a ctest: a million devices take a while under ASan):
 *   cmake --build BUILD --target bench_store_sqlite && BUILD/tests/bench_store_sqlite [N]
 * It seeds N devices straight into the database (1 % of them failed), then
 * times through the store's API what issue 13 asks to stay fast: creating a
 * rollout over all of them, `device list --model M --state failed`, and
 * check-ins with and without a report. */
#define _XOPEN_SOURCE 700 /* nftw() */
#include <event2/event.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define MODEL "esp32-devkit"

static struct event_base *base;
static struct store *st;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_done(struct store_req *r)
{
    (*(int *)r->arg)++;
}

static struct store_req *run(struct store_req *r)
{
    int fired = 0;

    r->done = on_done;
    r->arg = &fired;
    r->now = 1796131200;
    if (store_submit(st, r) != 0) {
        exit(1);
    }
    while (!fired) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    if (r->rc != STORE_OK) {
        fprintf(stderr, "op %d: %s\n", (int)r->op, r->err);
        exit(1);
    }
    return r;
}

static void open_store(const char *dir)
{
    char err[256];

    st = store_sqlite_open(dir, base, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
}

static void seed(const char *dir, unsigned n)
{
    char path[512], id[32];
    sqlite3_stmt *s;
    sqlite3 *db;
    unsigned i;

    snprintf(path, sizeof(path), "%s/tcpota.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        exit(1);
    }
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO devices (id, model, version, state, first_seen,"
                       " last_seen) VALUES (?1, ?2, '1.0.0', ?3, 0, 0)", -1, &s, NULL);
    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "dev-%07u", i);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, MODEL, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, i % 100 == 0 ? STORE_ST_FAILED : STORE_ST_SEEN);
        sqlite3_step(s);
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
}

static void add_image(const char *dir)
{
    struct store_req *r = store_req_new(STORE_IMAGE_ADD, on_done, NULL);
    char tmp[512];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s/images/.upload", dir);
    fp = fopen(tmp, "wb");
    fclose(fp);
    r->u.image.path = tmp;
    memset(r->u.image.img->id, 0x42, TCPOTA_ID_LEN);
    strcpy(r->u.image.img->version, "2.0.0");
    strcpy(r->u.image.img->model, MODEL);
    store_req_free(run(r));
}

static void create_rollout(void)
{
    static const uint32_t pct[] = {10, 50, 100};
    struct store_req *r = store_req_new(STORE_ROLLOUT_CREATE, on_done, NULL);

    memset(r->u.rollout.r->image_id, 0x42, TCPOTA_ID_LEN);
    strcpy(r->u.rollout.r->model, MODEL);
    memcpy(r->u.rollout.r->pct, pct, sizeof(pct));
    r->u.rollout.r->ro.n_waves = 3;
    run(r);
    printf("  waves targeted: %u %u %u\n", (unsigned)r->u.rollout.r->waves[0].targeted,
           (unsigned)r->u.rollout.r->waves[1].targeted, (unsigned)r->u.rollout.r->waves[2].targeted);
    store_req_free(r);
}

static void list_failed(void)
{
    struct store_req *r = store_req_new(STORE_DEVICE_LIST, on_done, NULL);

    r->u.list.model = MODEL;
    r->u.list.state = STORE_ST_FAILED;
    r->u.list.limit = 1000;
    run(r);
    printf("  rows %zu of total %zu\n", r->u.list.n, r->u.list.total);
    store_req_free(r);
}

static void checkins(unsigned n, int with_report)
{
    uint8_t report[TCPOTA_ID_LEN];
    char id[32];
    unsigned i;

    memset(report, 0x42, sizeof(report));
    for (i = 0; i < n; i++) {
        struct store_req *r = store_req_new(STORE_CHECKIN, on_done, NULL);
        snprintf(id, sizeof(id), "dev-%07u", i * 7 + (unsigned)with_report);
        r->u.checkin.id = id;
        r->u.checkin.model = MODEL;
        r->u.checkin.version = "1.0.0";
        r->u.checkin.report_id = with_report ? report : NULL;
        r->u.checkin.report_result = 1;
        store_req_free(run(r));
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000000u;
    char dir[] = "/tmp/tcpota-store-bench-XXXXXX";
    double t;

    if (!mkdtemp(dir)) {
        return 1;
    }
    base = event_base_new();
    open_store(dir);
    store_close(st);
    t = now_s();
    seed(dir, n);
    printf("seed %u devices (direct SQL): %.2f s\n", n, now_s() - t);
    open_store(dir);
    add_image(dir);
    t = now_s();
    create_rollout();
    printf("rollout create over %u devices: %.2f s\n", n, now_s() - t);
    t = now_s();
    list_failed();
    printf("device list model=M state=failed limit 1000: %.1f ms\n", (now_s() - t) * 1e3);
    t = now_s();
    checkins(10000, 0);
    printf("10000 check-ins, one at a time, no report: %.1f us each\n", (now_s() - t) * 1e2);
    t = now_s();
    checkins(200, 1);
    printf("200 check-ins with a report (commit each): %.2f ms each\n", (now_s() - t) * 5);
    store_close(st);
    event_base_free(base);
    (void)nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
