/* test_store_pg.c - the PostgreSQL fleet store (server/store_pg*.c): every
 * backend's tests (store_suite.c), then what several nodes sharing one
 * database need: migrations run once when nodes start together, one winner
 * of a rollout's compare-and-set, images fetched from the database into a
 * node's cache (checked), a lost connection taken up again (under a COMMIT
 * too: the list runs again only if it did not commit), and the errors
 * an operator meets (unreachable, not ours, newer schema), lists of two
 * nodes writing the same devices never deadlocking, a row held past
 * lock_timeout failing only the request that needs it, and a node that
 * stops while the database is away answering every step it kept. A list
 * that PostgreSQL fails as a deadlock runs again; a refused COMMIT, or a
 * list that conflicts every time it runs, answers none of its requests OK.
 *
 * Run through with_pg.sh, which starts a cluster of the test's own and
 * passes it in TCPOTA_PG; each test gets an empty schema of its own. */
#include "store_suite.h"
#include "store_pg.h"
#include "store_pg_internal.h" /* PG_SCHEMA_VERSION */

#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NODES 4          /* stores opened at once in the migration race */
#define CAS_ROUNDS 20    /* compare-and-set races between two nodes */
#define BIG_IMAGE (600u * 1024u) /* several chunks of the database's copy */

/* ---- the backend ---- */

static PGconn *connect_or_fail(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("cannot connect to %s: %s", conninfo, PQerrorMessage(c));
    }
    return c;
}

/* Runs sql on f's schema; fails the test when it fails. */
static void sql(const struct fx *f, const char *q)
{
    PGconn *c = connect_or_fail(f->db);
    PGresult *res = PQexec(c, q);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", q, PQerrorMessage(c));
    }
    PQclear(res);
    PQfinish(c);
}

/* The one integer q returns on f's schema. */
static long long sql_int(const struct fx *f, const char *q)
{
    PGconn *c = connect_or_fail(f->db);
    PGresult *res = PQexec(c, q);
    long long v;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("%s: %s", q, PQerrorMessage(c));
    }
    v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    PQfinish(c);
    return v;
}

/* An empty schema for f (the cluster lives as long as the test binary). */
static void fresh_pg(struct fx *f)
{
    static unsigned n;
    const char *base = getenv("TCPOTA_PG");
    char schema[64], q[128];
    PGconn *c;
    PGresult *res;

    if (!base || !base[0]) {
        fail_msg("TCPOTA_PG is not set: run this test through tests/unit/with_pg.sh");
    }
    snprintf(schema, sizeof(schema), "t%ld_%u", (long)getpid(), ++n);
    snprintf(q, sizeof(q), "CREATE SCHEMA %s", schema);
    c = connect_or_fail(base);
    res = PQexec(c, q);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(c);
    snprintf(f->db, sizeof(f->db), "%s options='-csearch_path=%s'", base, schema);
}

static struct store *open_pg(const struct fx *f, struct event_base *base, char *err,
                             size_t errlen)
{
    return store_pg_open(f->db, f->dir, base, err, errlen);
}

static long long history_rows(const struct fx *f, const char *id)
{
    char q[256];

    snprintf(q, sizeof(q), "SELECT count(*) FROM device_history WHERE device_id = '%s'", id);
    return sql_int(f, q);
}

static const struct ss_backend pg_backend = {open_pg, fresh_pg, history_rows};

/* A second node on f's database: its own image cache, the same loop. */
static struct store *second_node(const struct fx *f, char *dir, size_t size)
{
    char err[256] = "";
    struct store *st;

    snprintf(dir, size, "/tmp/tcpota-node-XXXXXX");
    assert_non_null(mkdtemp(dir));
    st = store_pg_open(f->db, dir, f->base, err, sizeof(err));
    if (!st) {
        fail_msg("second node: %s", err);
    }
    return st;
}

/* ---- several nodes ---- */

/* NODES processes open a new database at the same moment: each must start,
 * and the schema is made once (without the advisory lock, the losers of the
 * race fail on tables the winner just created). */
static void test_migrate_once_concurrently(void **state)
{
    int gate[2], status, i, ok = 0;
    pid_t pids[NODES];
    struct fx f;
    (void)state;

    ss_fx_fresh(&f);
    assert_int_equal(pipe(gate), 0);
    for (i = 0; i < NODES; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char err[256], dir[sizeof(f.dir) + 16], c;
            struct event_base *base;
            struct store *st;
            close(gate[1]);
            (void)read(gate[0], &c, 1); /* all start when the parent closes the gate */
            base = event_base_new();
            /* Each node its own --data (a node holds its directory's lock). */
            snprintf(dir, sizeof(dir), "%s/n%d", f.dir, i);
            st = store_pg_open(f.db, dir, base, err, sizeof(err));
            if (!st) {
                fprintf(stderr, "node %d: %s\n", i, err);
                _exit(1);
            }
            store_close(st);
            event_base_free(base);
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (i = 0; i < NODES; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        ok += WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    assert_int_equal(ok, NODES);
    assert_int_equal(sql_int(&f, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(sql_int(&f, "SELECT version FROM schema_version"), PG_SCHEMA_VERSION);
    ss_rm_tree(f.dir);
}

static void on_set(struct store_req *r)
{
    (*(int *)r->arg)++;
}

static struct store_req *set_req(uint64_t id, enum rollout_state to, int *fired)
{
    struct store_req *r = store_req_new(STORE_ROLLOUT_SET, on_set, fired);

    assert_non_null(r);
    r->now = NOW + 1;
    r->u.rollout.id = id;
    r->u.rollout.expect_state = ROLLOUT_STATE_ACTIVE;
    r->u.rollout.expect_n_open = 1;
    r->u.rollout.new_state = to;
    r->u.rollout.new_n_open = to == ROLLOUT_STATE_ACTIVE ? 2 : 1;
    return r;
}

/* Two nodes decide about the same rollout at the same moment (one halts
 * it, the other opens its next wave), CAS_ROUNDS times: exactly one wins
 * each time, and the rollout holds what the winner wrote. */
static void test_cas_two_nodes(void **state)
{
    static const uint32_t pct[] = {10, 100};
    struct fx *f = *state;
    char dir_b[64];
    struct store *b = second_node(f, dir_b, sizeof(dir_b));
    int round, fired, a_won = 0, b_won = 0;

    store_req_free(ss_image_add(f, 0x91, "2.0.0"));
    for (round = 0; round < CAS_ROUNDS; round++) {
        uint64_t ro = ss_rollout_create(f, 0x91, "", pct, 2);
        struct store_req *ra = set_req(ro, ROLLOUT_STATE_HALTED, &fired);
        struct store_req *rb = set_req(ro, ROLLOUT_STATE_ACTIVE, &fired);
        struct store_req *now;

        fired = 0;
        assert_int_equal(store_submit(f->st, ra), 0);
        assert_int_equal(store_submit(b, rb), 0);
        while (fired < 2) {
            event_base_loop(f->base, EVLOOP_ONCE);
        }
        assert_true((ra->rc == STORE_OK) != (rb->rc == STORE_OK));
        assert_int_equal(ra->rc == STORE_OK ? rb->rc : ra->rc, STORE_E_CONFLICT);
        now = ss_rollout_get(f, ro);
        if (ra->rc == STORE_OK) {
            a_won++;
            assert_int_equal(now->u.rollout.r->ro.state, ROLLOUT_STATE_HALTED);
            assert_int_equal(now->u.rollout.r->ro.n_open, 1);
        } else {
            b_won++;
            assert_int_equal(now->u.rollout.r->ro.state, ROLLOUT_STATE_ACTIVE);
            assert_int_equal(now->u.rollout.r->ro.n_open, 2);
        }
        store_req_free(now);
        store_req_free(ra);
        store_req_free(rb);
    }
    assert_int_equal(a_won + b_won, CAS_ROUNDS);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* STORE_EVENTS of n zeroed items, for the caller to fill. */
static struct store_req *events_req(size_t n, int *fired)
{
    struct store_req *r = store_req_new(STORE_EVENTS, on_set, fired);

    assert_non_null(r);
    r->now = NOW;
    r->u.events.items = calloc(n, sizeof(*r->u.events.items));
    assert_non_null(r->u.events.items);
    r->u.events.n = n;
    return r;
}

/* STORE_EVENTS moving every device of ids to state in rollout ro. */
static struct store_req *moves(char (*ids)[16], size_t n, enum store_dev_state state, uint64_t ro,
                               int *fired)
{
    struct store_req *r = events_req(n, fired);
    size_t i;

    for (i = 0; i < n; i++) {
        snprintf(r->u.events.items[i].id, sizeof(r->u.events.items[i].id), "%.15s", ids[i]);
        r->u.events.items[i].state = state;
        r->u.events.items[i].rollout_id = ro;
    }
    return r;
}

/* Hands ra to f's node and rb to node b at once, waits for both (each
 * counts into *fired, from 0), and expects both done. */
static void both_nodes(struct fx *f, struct store *b, struct store_req *ra, struct store_req *rb,
                       int *fired)
{
    assert_int_equal(store_submit(f->st, ra), 0);
    assert_int_equal(store_submit(b, rb), 0);
    while (*fired < 2) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(ra->rc, STORE_OK);
    assert_int_equal(rb->rc, STORE_OK);
}

/* Both nodes report the same devices' same step at the same moment (a
 * device's retry reaching another node): each device's status moves once,
 * so the wave counts each device once (without the row lock, both nodes
 * read "offered" and both move a unit to "downloading"). */
static void test_counters_two_nodes(void **state)
{
    static const uint32_t pct[] = {100};
    enum { N = 60 };
    struct fx *f = *state;
    char dir_b[64], ids[N][16];
    struct store *b = second_node(f, dir_b, sizeof(dir_b));
    struct store_req *ra, *rb, *now;
    uint64_t ro;
    int fired = 0;
    size_t i;

    for (i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "race-%02u", (unsigned)i);
        store_req_free(ss_checkin(f, ids[i], NULL, 0));
    }
    store_req_free(ss_image_add(f, 0x92, "2.0.0"));
    ro = ss_rollout_create(f, 0x92, "", pct, 1);
    ra = moves(ids, N, STORE_ST_OFFERED, ro, &fired);
    assert_int_equal(ss_run(f, ra)->rc, STORE_OK);
    store_req_free(ra);
    fired = 0;
    ra = moves(ids, N, STORE_ST_DOWNLOADING, ro, &fired);
    rb = moves(ids, N, STORE_ST_DOWNLOADING, ro, &fired);
    both_nodes(f, b, ra, rb, &fired);
    now = ss_rollout_get(f, ro);
    assert_int_equal(now->u.rollout.r->waves[0].targeted, N);
    assert_int_equal(now->u.rollout.r->waves[0].offered, 0);
    assert_int_equal(now->u.rollout.r->waves[0].downloading, N);
    store_req_free(now);
    store_req_free(ra);
    store_req_free(rb);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* How many lines of the cluster's log (with_pg.sh's TCPOTA_PG_LOG) say
 * what, from byte `from` on. */
static int logged(long from, const char *what)
{
    const char *path = getenv("TCPOTA_PG_LOG");
    char line[1024];
    int n = 0;
    FILE *fp;

    assert_non_null(path);
    fp = fopen(path, "r");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, from, SEEK_SET), 0);
    while (fgets(line, sizeof(line), fp)) {
        n += strstr(line, what) != NULL;
    }
    fclose(fp);
    return n;
}

static long log_size(void)
{
    struct stat sb;

    assert_int_equal(stat(getenv("TCPOTA_PG_LOG"), &sb), 0);
    return (long)sb.st_size;
}

/* Two nodes write the same devices' steps at once in opposite orders (one
 * node's batch, another's check-ins of the same devices, moved there):
 * each list locks its devices' rows in id order first, so one waits for
 * the other and PostgreSQL never has to break a deadlock (without it,
 * nearly every round does, and the loser's list runs again a second
 * later). */
static void test_crossing_lists_two_nodes(void **state)
{
    enum { N = 40, ROUNDS = 3 };
    struct fx *f = *state;
    char dir_b[64], up[N][16], down[N][16];
    struct store *b = second_node(f, dir_b, sizeof(dir_b));
    struct store_req *ra, *rb;
    long from = log_size();
    int fired, k;
    size_t i;

    for (i = 0; i < N; i++) {
        snprintf(up[i], sizeof(up[i]), "cross-%02u", (unsigned)i);
        snprintf(down[N - 1 - i], sizeof(down[0]), "cross-%02u", (unsigned)i);
        store_req_free(ss_checkin(f, up[i], NULL, 0));
    }
    for (k = 0; k < ROUNDS; k++) {
        enum store_dev_state st = k % 2 ? STORE_ST_DOWNLOADING : STORE_ST_OFFERED;
        fired = 0;
        ra = moves(up, N, st, 0, &fired);
        rb = moves(down, N, st, 0, &fired);
        both_nodes(f, b, ra, rb, &fired);
        store_req_free(ra);
        store_req_free(rb);
    }
    assert_int_equal(logged(from, "deadlock detected"), 0);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* A check-in of device id (model, version 1.0.0) that counts in *fired
 * when it completes; not submitted. */
static struct store_req *checkin_req(const char *id, const char *model, int *fired)
{
    struct store_req *r = store_req_new(STORE_CHECKIN, on_set, fired);

    assert_non_null(r);
    r->now = NOW;
    r->u.checkin.id = id;
    r->u.checkin.model = model;
    r->u.checkin.version = "1.0.0";
    return r;
}

/* A list whose requests run together, one of which fails: the list runs
 * without savepoints first, then again with one around each request, so
 * the others commit and the failed one answers its own error. */
static void test_failed_op_in_list(void **state)
{
    static const char *const ids[] = {"list-1", "list-2", "list-3"};
    struct fx *f = *state;
    struct store_req *in[3], *bad, *got;
    int fired = 0;
    size_t i;

    for (i = 0; i < 3; i++) {
        in[i] = checkin_req(ids[i], "esp32", &fired);
    }
    bad = store_req_new(STORE_DEVICE_SET_GROUP, on_set, &fired);
    assert_non_null(bad);
    bad->now = NOW;
    bad->u.device.id = "nobody";
    bad->u.device.group = "g";
    /* Handed over in one turn: one list, one transaction. */
    assert_int_equal(store_submit(f->st, in[0]), 0);
    assert_int_equal(store_submit(f->st, bad), 0);
    assert_int_equal(store_submit(f->st, in[1]), 0);
    assert_int_equal(store_submit(f->st, in[2]), 0);
    while (fired < 4) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(bad->rc, STORE_E_NOTFOUND);
    assert_non_null(strstr(bad->err, "no device nobody"));
    for (i = 0; i < 3; i++) {
        assert_int_equal(in[i]->rc, STORE_OK);
        assert_int_equal(in[i]->u.checkin.is_new, 1);
        store_req_free(in[i]);
        got = ss_device_get(f, ids[i]);
        assert_int_equal(got->rc, STORE_OK);
        store_req_free(got);
    }
    store_req_free(bad);
}

/* A check-in that put its device in a rollout's wave (targeted + 1,
 * pending until the list's end) and then failed, in a list with another:
 * run again with a savepoint around each, the failed one's pending count
 * goes back with its savepoint, so the wave counts the devices that are
 * in it. */
static void test_failed_op_wave_counts(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *ok, *bad, *now;
    uint64_t ro;
    int fired = 0;
    char q[300];

    /* A new device's first check-in, with a report: registered, put in the
     * wave, then its report's history line refused. */
    snprintf(q, sizeof(q), "CREATE FUNCTION no_history() RETURNS trigger LANGUAGE plpgsql AS"
             " $$BEGIN IF NEW.device_id = 'wd-bad' AND NEW.state = %d THEN RAISE EXCEPTION"
             " 'no history'; END IF; RETURN NEW; END$$", (int)STORE_ST_UPDATED);
    sql(f, q);
    sql(f, "CREATE TRIGGER no_history BEFORE INSERT ON device_history FOR EACH ROW EXECUTE"
           " FUNCTION no_history()");
    ss_fake_id(img, 0x78);
    store_req_free(ss_image_add(f, 0x78, "2.0.0"));
    ro = ss_rollout_create(f, 0x78, "", pct, 1);
    ok = checkin_req("wd-ok", MODEL, &fired);
    bad = checkin_req("wd-bad", MODEL, &fired);
    bad->u.checkin.report_id = img;
    bad->u.checkin.report_result = TCPOTA_RESULT_CONFIRMED;
    assert_int_equal(store_submit(f->st, ok), 0);
    assert_int_equal(store_submit(f->st, bad), 0);
    while (fired < 2) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(ok->rc, STORE_OK);
    assert_int_not_equal(bad->rc, STORE_OK);
    assert_non_null(strstr(bad->err, "no history"));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM rollout_devices"), 1);
    now = ss_rollout_get(f, ro);
    assert_int_equal(now->u.rollout.r->waves[0].targeted, 1);
    store_req_free(now);
    store_req_free(ok);
    store_req_free(bad);
}

/* Another transaction holds one device's row (an operator's session, a
 * stuck node) past the node's lock_timeout, which docs/scaling.md
 * recommends: the list that writes it and another device fails only for
 * the held one; the other device's check-in commits. (The list first locks
 * all its devices' rows at once; when that lock alone failed, every
 * request of the list failed with it.) */
static void test_lock_timeout_in_list(void **state)
{
    struct fx *f = *state;
    char conninfo[sizeof(f->db) + 32], dir_b[64], err[256] = "";
    size_t len = strlen(f->db);
    struct store *b;
    struct store_req *held, *free_dev;
    PGconn *holder;
    PGresult *res;
    int fired = 0;

    store_req_free(ss_checkin(f, "lt-held", NULL, 0));
    store_req_free(ss_checkin(f, "lt-free", NULL, 0));
    /* f->db ends with its options' closing quote: the timeout goes inside. */
    assert_true(len > 0 && f->db[len - 1] == '\'');
    snprintf(conninfo, sizeof(conninfo), "%.*s -clock_timeout=200'", (int)(len - 1), f->db);
    snprintf(dir_b, sizeof(dir_b), "/tmp/tcpota-node-XXXXXX");
    assert_non_null(mkdtemp(dir_b));
    b = store_pg_open(conninfo, dir_b, f->base, err, sizeof(err));
    if (!b) {
        fail_msg("node with lock_timeout: %s", err);
    }
    holder = connect_or_fail(f->db);
    res = PQexec(holder, "BEGIN; SELECT 1 FROM devices WHERE id = 'lt-held' FOR UPDATE");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    held = checkin_req("lt-held", "esp32", &fired);
    free_dev = checkin_req("lt-free", "esp32", &fired);
    /* Handed over in one turn: one list, one transaction. */
    assert_int_equal(store_submit(b, held), 0);
    assert_int_equal(store_submit(b, free_dev), 0);
    while (fired < 2) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(free_dev->rc, STORE_OK);
    assert_int_not_equal(held->rc, STORE_OK);
    assert_non_null(strstr(held->err, "lock timeout"));
    assert_non_null(strstr(held->err, "held what this one needed past lock_timeout; try again"));
    /* Its own statement's error, not the failed lock of the whole list. */
    assert_null(strstr(held->err, "lock devices"));
    /* The API says "the database failed: " before the message: not twice. */
    assert_null(strstr(held->err, "the database failed"));

    PQclear(PQexec(holder, "ROLLBACK"));
    PQfinish(holder);
    store_req_free(held);
    store_req_free(free_dev);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* Adds real bytes (id: their SHA-256) through f's node. */
static void add_real_image(struct fx *f, const uint8_t *bytes, size_t n, const char *version,
                           uint8_t *id)
{
    struct store_req *r = ss_req(STORE_IMAGE_ADD);
    char tmp[300];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s/images/.upload-%s", f->dir, version);
    fp = fopen(tmp, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    fclose(fp);
    crypto_hash_sha256(id, bytes, n);
    r->u.image.path = tmp;
    memcpy(r->u.image.img->id, id, TCPOTA_ID_LEN);
    snprintf(r->u.image.img->version, sizeof(r->u.image.img->version), "%s", version);
    snprintf(r->u.image.img->model, sizeof(r->u.image.img->model), "%s", MODEL);
    r->u.image.img->size = (uint32_t)n;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    assert_int_equal(r->u.image.added, 1);
    store_req_free(r);
}

/* A model-wide rollout of image id. */
static void rollout_for(struct fx *f, const uint8_t *id, const uint32_t *pct, uint32_t n)
{
    struct store_req *r = ss_req(STORE_ROLLOUT_CREATE);

    memcpy(r->u.rollout.r->image_id, id, TCPOTA_ID_LEN);
    snprintf(r->u.rollout.r->model, sizeof(r->u.rollout.r->model), "%s", MODEL);
    memcpy(r->u.rollout.r->pct, pct, n * sizeof(*pct));
    r->u.rollout.r->ro.n_waves = n;
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
}

/* A check-in on node st that gets rollout ro's image; returns the request. */
static struct store_req *checkin_on(struct fx *f, struct store *st, const char *dev)
{
    struct store *mine = f->st;
    struct store_req *r;

    f->st = st;
    r = ss_checkin(f, dev, NULL, 0);
    f->st = mine;
    return r;
}

static void expect_file(const char *path, const uint8_t *bytes, size_t n)
{
    uint8_t *got = malloc(n + 1);
    FILE *fp = fopen(path, "rb");

    assert_non_null(fp);
    assert_int_equal(fread(got, 1, n + 1, fp), n);
    fclose(fp);
    assert_memory_equal(got, bytes, n);
    free(got);
}

/* New devices reach both nodes at the same moment (a device that
 * reconnects through the balancer): each is registered once (is_new on
 * exactly one node, no error on the other) and counted once in its wave. */
static void test_checkin_two_nodes(void **state)
{
    static const uint32_t pct[] = {100};
    enum { N = 40 };
    struct fx *f = *state;
    char dir_b[64], ids[N][16];
    struct store *b = second_node(f, dir_b, sizeof(dir_b));
    struct store_req *ra[N], *rb[N], *now;
    uint8_t bytes[1000], id[TCPOTA_ID_LEN];
    int fired = 0;
    size_t i;

    randombytes_buf(bytes, sizeof(bytes));
    add_real_image(f, bytes, sizeof(bytes), "2.0.0", id);
    rollout_for(f, id, pct, 1);
    for (i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "new-%02u", (unsigned)i);
        ra[i] = checkin_req(ids[i], MODEL, &fired);
        rb[i] = checkin_req(ids[i], MODEL, &fired);
        assert_int_equal(store_submit(f->st, ra[i]), 0);
        assert_int_equal(store_submit(b, rb[i]), 0);
    }
    while (fired < 2 * N) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    for (i = 0; i < N; i++) {
        if (ra[i]->rc != STORE_OK || rb[i]->rc != STORE_OK) {
            fail_msg("%s: %s / %s", ids[i], ra[i]->err, rb[i]->err);
        }
        assert_int_equal(ra[i]->u.checkin.is_new + rb[i]->u.checkin.is_new, 1);
        store_req_free(ra[i]);
        store_req_free(rb[i]);
    }
    now = ss_rollout_get(f, 1);
    assert_int_equal(now->u.rollout.r->waves[0].targeted, N);
    store_req_free(now);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* What a node told the operator last, and how often. */
static char cache_said[STORE_NOTE_MAX];
static int cache_tells;

static void on_cache_notice(void *arg, int error, const char *msg)
{
    (void)arg;
    cache_tells += error;
    snprintf(cache_said, sizeof(cache_said), "%s", msg);
}

/* Node A takes an image; node B, which never saw it, fetches it from the
 * database at its first check-in that needs it, byte for byte, into its
 * own cache. Bytes damaged in the database are refused, not cached, and
 * told (once): the check-in itself goes on, a report with it recorded (it
 * failed whole: the device told busy for ever, its rollback never
 * counted), the image then unservable for the fleet. */
static void test_image_shared(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    uint8_t *bytes = malloc(BIG_IMAGE), id[TCPOTA_ID_LEN];
    char dir_b[64], hex[2 * TCPOTA_ID_LEN + 1], path[400], q[256];
    struct store *b = second_node(f, dir_b, sizeof(dir_b));
    struct store_req *r;
    struct stat sb;

    assert_non_null(bytes);
    randombytes_buf(bytes, BIG_IMAGE);
    add_real_image(f, bytes, BIG_IMAGE, "3.0.0", id);
    store_hex(id, hex);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM image_chunks"), 3);
    /* Node B: not cached until a device needs it. */
    snprintf(path, sizeof(path), "%s/images/%s", dir_b, hex);
    assert_int_not_equal(stat(path, &sb), 0);
    rollout_for(f, id, pct, 1);
    r = checkin_on(f, b, "dev-b1");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.checkin.has_rollout, 1);
    assert_string_equal(r->u.checkin.out->image.path, path);
    store_req_free(r);
    expect_file(path, bytes, BIG_IMAGE);
    /* A damaged copy in the database: refused, nothing left in the cache. */
    assert_int_equal(unlink(path), 0);
    /* One byte changed whatever it was (a fixed value written over random
     * bytes is the same byte 1 time in 256). */
    snprintf(q, sizeof(q), "UPDATE image_chunks SET bytes = set_byte(bytes, 999,"
             " get_byte(bytes, 999) # 1) WHERE image_id = '%s' AND n = 1", hex);
    sql(f, q);
    b->notice = on_cache_notice;
    cache_tells = 0;
    {
        struct store *mine = f->st;
        f->st = b;
        r = ss_checkin(f, "dev-b2", id, TCPOTA_RESULT_ROLLED_BACK);
        f->st = mine;
    }
    if (r->rc != STORE_OK) {
        fail_msg("a report on a node that cannot cache the image: %s", r->err);
    }
    assert_int_equal(r->u.checkin.has_rollout, 1);
    store_req_free(r);
    r = ss_device_get(f, "dev-b2");
    assert_int_equal(r->u.device.dev->state, STORE_ST_ROLLED_BACK);
    store_req_free(r);
    assert_int_equal(cache_tells, 1);
    assert_non_null(strstr(cache_said, "do not hash to its id"));
    assert_non_null(strstr(cache_said, "image rm"));
    r = checkin_on(f, b, "dev-b3"); /* tried again, not told again */
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);
    assert_int_equal(cache_tells, 1);
    assert_int_not_equal(stat(path, &sb), 0);
    /* A failure of the database itself during the fetch (here its table
     * gone) is the check-in's, with its cause, not a cache failure to
     * absorb (the transaction is aborted: what followed failed with
     * "current transaction is aborted"). */
    sql(f, "ALTER TABLE image_chunks RENAME TO image_chunks_away");
    r = checkin_on(f, b, "dev-b4");
    sql(f, "ALTER TABLE image_chunks_away RENAME TO image_chunks");
    if (r->rc == STORE_OK || !strstr(r->err, "image_chunks")) {
        fail_msg("a database failure during the fetch: %d %s", r->rc, r->err);
    }
    store_req_free(r);
    free(bytes);
    store_close(b);
    ss_rm_tree(dir_b);
}

/* ---- errors and the connection ---- */

/* The server drops the node's connection (a restarted backend, a failover
 * already done): the list that meets the loss runs again at once on a new
 * connection, so nothing fails. */
static void test_reconnects(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    store_req_free(ss_checkin(f, "dev-1", NULL, 0));
    sql(f, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
           " AND datname = current_database() AND application_name = 'tcpota'");
    r = ss_checkin(f, "dev-1", NULL, 0);
    if (r->rc != STORE_OK) {
        fail_msg("after the connection was cut: %s", r->err);
    }
    store_req_free(r);
}

/* The connection breaks under a list's COMMIT (a network, a failover).
 * After COMMIT's answer arrived: the list committed and must not run
 * again, or a new device's first check-in is answered "not new" and a
 * final step's history is written twice. Before COMMIT was sent: nothing
 * committed, and the list runs again on a new connection. Then the same
 * with the database away a moment longer (the next connection refused):
 * the outage keeps the step, and asks whether it committed before it
 * writes it. Every answer is OK, and each write is there once. */
static void test_commit_answer_lost(void **state)
{
    static const struct {
        int cut;
        unsigned refused; /* reconnections that fail first */
    } cases[] = {{PG_CUT_AFTER, 0}, {PG_CUT_BEFORE, 0}, {PG_CUT_AFTER, 1}, {PG_CUT_BEFORE, 1}};
    struct fx *f = *state;
    struct pgstore *st = (struct pgstore *)f->st;
    struct store_req *r;
    char id[16], q[160];
    unsigned lost;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(id, sizeof(id), "lost-%zu", i);
        /* Set before the submit, whose lock hands them to the store thread. */
        st->cut_commit = cases[i].cut;
        lost = st->lost_commits;
        r = ss_checkin(f, id, NULL, 0);
        if (r->rc != STORE_OK) {
            fail_msg("case %zu, check-in: %s", i, r->err);
        }
        assert_int_equal(r->u.checkin.is_new, 1);
        store_req_free(r);
        /* The cut happened at COMMIT, and its outcome was asked about
         * (committed after the answer arrived, aborted when never sent). */
        assert_int_equal(st->lost_commits - lost, 1);
        st->cut_commit = cases[i].cut;
        st->fail_reconnects = cases[i].refused;
        assert_int_equal(ss_event(f, id, STORE_ST_VERIFIED, 0, 1000), STORE_OK);
        snprintf(q, sizeof(q), "SELECT count(*) FROM device_history WHERE device_id = '%s'", id);
        assert_int_equal(sql_int(f, q), 2); /* registered, then verified: once each */
    }
}

/* A partition under COMMIT: the node's socket is gone, but the backend
 * never hears of it (here: the test holds the old socket open) and keeps
 * the transaction open, 'in progress', with its row locks. The node ends
 * that backend, learns that the transaction aborted, and writes the step
 * on its new connection: OK, once. */
static void test_commit_into_partition(void **state)
{
    struct fx *f = *state;
    struct pgstore *st = (struct pgstore *)f->st;
    int held;

    ss_checkin_free(f, "part-1");
    /* The store thread is idle between two requests: its socket is ours
     * to copy. */
    held = dup(PQsocket(st->db));
    assert_true(held >= 0);
    st->cut_commit = PG_CUT_BEFORE;
    assert_int_equal(ss_event(f, "part-1", STORE_ST_VERIFIED, 0, 1000), STORE_OK);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM device_history WHERE device_id = 'part-1'"),
                     2);
    close(held);
}

/* An API change whose COMMIT lost its answer, the database away a moment
 * longer (the next connection refused): it may have committed (here it
 * did), so it is not told "try again" (a rollout made twice) but that
 * whether it committed is unknown, and what to do. */
static void test_api_write_commit_lost(void **state)
{
    struct fx *f = *state;
    struct pgstore *st = (struct pgstore *)f->st;
    struct store_req *r;

    uint8_t img[TCPOTA_ID_LEN];
    struct store_req *ci;
    int fired = 0;

    ss_checkin_free(f, "grp-1");
    ss_fake_id(img, 0x31);
    st->cut_commit = PG_CUT_AFTER;
    st->fail_reconnects = 1;
    /* In the same list, a check-in with a report: told to come back (a
     * report repeated is applied once), not "unknown". */
    ci = checkin_req("grp-2", MODEL, &fired);
    ci->u.checkin.report_id = img;
    ci->u.checkin.report_result = TCPOTA_RESULT_CONFIRMED;
    r = store_req_new(STORE_DEVICE_SET_GROUP, on_set, &fired);
    r->now = NOW;
    r->u.device.id = "grp-1";
    r->u.device.group = "canary";
    assert_int_equal(store_submit(f->st, ci), 0);
    assert_int_equal(store_submit(f->st, r), 0);
    while (fired < 2) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_int_equal(r->rc, STORE_E_IO);
    if (!strstr(r->err, "committed is unknown: check what it changes")) {
        fail_msg("told: %s", r->err);
    }
    if (ci->rc != STORE_E_UNAVAILABLE) {
        fail_msg("the check-in in that list: %d %s", ci->rc, ci->err);
    }
    store_req_free(ci);
    store_req_free(r);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM devices WHERE id = 'grp-1' AND"
                                " grp = 'canary'"), 1);
}

/* A COMMIT answered FATAL (here a deferred trigger ends its own backend,
 * once: a shutdown, or pg_terminate_backend() while a synchronous standby
 * is awaited, after the commit is local) is a lost answer: libpq's last
 * result is the connection's loss, with no SQLSTATE, so the node asks
 * (txid_status: aborted here), then runs it again: written once. Taken for
 * a refusal, it would run again without asking. */
static void test_commit_fatal_asked(void **state)
{
    struct fx *f = *state;
    struct pgstore *st = (struct pgstore *)f->st;
    unsigned lost;

    ss_checkin_free(f, "fatal-1");
    sql(f, "CREATE SEQUENCE fatal_once");
    sql(f, "CREATE FUNCTION fatal_end() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF"
           " nextval('fatal_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END"
           " IF; RETURN NULL; END$$");
    sql(f, "CREATE CONSTRAINT TRIGGER fatal_end AFTER INSERT ON device_history DEFERRABLE"
           " INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fatal_end()");
    lost = st->lost_commits;
    assert_int_equal(ss_event(f, "fatal-1", STORE_ST_VERIFIED, 0, 1000), STORE_OK);
    assert_int_equal(st->lost_commits - lost, 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM device_history WHERE device_id ="
                                " 'fatal-1'"), 2);
    sql(f, "DROP TRIGGER fatal_end ON device_history");
}

/* STORE_SECRET_LIST since gen: its request (the caller frees it). */
static struct store_req *secrets_since(struct fx *f, int64_t gen)
{
    struct store_req *r = ss_req(STORE_SECRET_LIST);

    r->u.list.since = gen;
    ss_run(f, r);
    assert_int_equal(r->rc, STORE_OK);
    return r;
}

static void secret_put(struct fx *f, const char *id, uint8_t byte)
{
    uint8_t secret[TCPOTA_SECRET_MIN];
    struct store_req *r = ss_req(STORE_SECRET_SET);

    memset(secret, byte, sizeof(secret));
    r->u.device.id = id;
    r->u.device.secret = secret;
    r->u.device.secret_len = sizeof(secret);
    assert_int_equal(ss_run(f, r)->rc, STORE_OK);
    store_req_free(r);
}

/* How a node learns of the secrets set through other nodes (fleet.c's
 * secret sync): a list since generation G has the secrets set or replaced
 * after G, and the generation it is complete to; since 0, all of them. */
static void test_secrets_since(void **state)
{
    struct fx *f = *state;
    struct store_req *r;
    int64_t g0, g1;

    secret_put(f, "sec-a", 1);
    r = secrets_since(f, 0);
    assert_int_equal(r->u.list.n, 1);
    g0 = r->u.list.gen;
    assert_true(g0 >= 1);
    store_req_free(r);
    r = secrets_since(f, g0);
    assert_int_equal(r->u.list.n, 0);
    assert_int_equal(r->u.list.gen, g0);
    store_req_free(r);
    secret_put(f, "sec-b", 2);
    secret_put(f, "sec-a", 3); /* replaced */
    r = secrets_since(f, g0);
    assert_int_equal(r->u.list.n, 2);
    g1 = r->u.list.gen;
    assert_true(g1 >= g0 + 2); /* a replacement may take two (insert, then update) */
    /* In the order written: the later of two changes of an id is last. */
    assert_string_equal(((struct store_secret *)r->u.list.rows)[0].id, "sec-b");
    assert_string_equal(((struct store_secret *)r->u.list.rows)[1].id, "sec-a");
    assert_int_equal(((struct store_secret *)r->u.list.rows)[1].secret[0], 3);
    store_req_free(r);
    r = secrets_since(f, 0);
    assert_int_equal(r->u.list.n, 2);
    store_req_free(r);
    /* Written by a node of an older tcpota (a rolling upgrade), which knows
     * nothing of generations: numbered all the same. */
    sql(f, "INSERT INTO secrets (device_id, secret) VALUES ('sec-old', '\\x0101010101010101"
           "0101010101010101') ON CONFLICT (device_id) DO UPDATE SET secret = EXCLUDED.secret");
    r = secrets_since(f, g1);
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_secret *)r->u.list.rows)[0].id, "sec-old");
    assert_true(r->u.list.gen > g1);
    store_req_free(r);
}

/* --db-timeout's cut (store_vt.unstick, from the loop): none while the
 * database answered a statement within idle_s (a long request of many is
 * slow, not hung); past it the connection is dropped, and the next request
 * runs on a new one. */
static void test_unstick(void **state)
{
    struct fx *f = *state;

    store_req_free(secrets_since(f, 0)); /* a statement answered now */
    assert_int_equal(f->st->vt->unstick(f->st, 1), 0);
    usleep(1100 * 1000);
    assert_int_equal(f->st->vt->unstick(f->st, 1), 1);
    store_req_free(secrets_since(f, 0)); /* OK: again on a new connection */
    assert_int_equal(f->st->vt->unstick(f->st, 1), 0);
}

/* A database of the schema before migration 5 (an older tcpota's; a rolling
 * upgrade's first new node): migrated at the open, which says from which
 * version (the server logs it: an older tcpota no longer starts on it),
 * its secrets kept and numbered for the sync. */
static void test_migrates_from_4(void **state)
{
    struct fx *f = *state;
    struct store_req *r;

    store_close(f->st);
    f->st = NULL;
    sql(f, "DROP TABLE secrets_gone; DROP TRIGGER secrets_changed ON secrets;"
           " DROP FUNCTION tcpota_secret_changed();"
           " DROP INDEX secrets_changed; ALTER TABLE secrets DROP COLUMN changed;"
           " DROP TABLE secrets_gen; UPDATE schema_version SET version = 4");
    sql(f, "INSERT INTO secrets (device_id, secret) VALUES ('sec-4', '\\x0404040404040404"
           "0404040404040404')");
    ss_reopen(f);
    assert_int_equal(f->st->schema_from, 4);
    assert_int_equal(f->st->schema_to, PG_SCHEMA_VERSION);
    assert_int_equal(sql_int(f, "SELECT version FROM schema_version"), PG_SCHEMA_VERSION);
    r = secrets_since(f, 0);
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_secret *)r->u.list.rows)[0].id, "sec-4");
    assert_int_equal(((struct store_secret *)r->u.list.rows)[0].secret[0], 4);
    store_req_free(r);
    secret_put(f, "sec-5", 5);
    r = secrets_since(f, 1);
    assert_int_equal(r->u.list.n, 1);
    assert_string_equal(((struct store_secret *)r->u.list.rows)[0].id, "sec-5");
    store_req_free(r);
}

/* Runs f's loop for ms milliseconds, or until *fired reaches want. */
static void loop_for(struct fx *f, int ms, const int *fired, int want)
{
    struct timeval tick = {0, 50 * 1000};
    int waited;

    for (waited = 0; waited < ms && (!fired || *fired < want); waited += 50) {
        event_base_loopexit(f->base, &tick);
        event_base_dispatch(f->base);
    }
}

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the store told the operator. */
struct told {
    int down, up, dropped;
    char up_msg[STORE_NOTE_MAX]; /* the last "reachable again" */
};

static void on_notice(void *arg, int error, const char *msg)
{
    struct told *t = arg;

    t->down += error && strstr(msg, "the database is unreachable") != NULL;
    t->dropped += error && strstr(msg, "no longer kept") != NULL;
    if (!error && strstr(msg, "reachable again") != NULL) {
        t->up++;
        snprintf(t->up_msg, sizeof(t->up_msg), "%s", msg);
    }
}

/* A device step (STORE_EVENT) of dev-1 about image 0x77. */
static struct store_req *step_of(enum store_dev_state state, int durable, int *fired)
{
    static uint8_t img[TCPOTA_ID_LEN];
    struct store_req *r = store_req_new(STORE_EVENT, on_set, fired);

    assert_non_null(r);
    ss_fake_id(img, 0x77);
    r->now = NOW;
    r->u.event.id = "dev-1";
    r->u.event.state = state;
    r->u.event.image_id = img;
    r->u.event.durable = durable;
    return r;
}

/* An outage test's own database, named prefix_PID into name: created
 * through admin, opened in f with its notices counted in told, at most
 * kept_max steps kept while it is away, dev-1 checked in. */
static void outage_open(struct fx *f, struct fx *admin, const char *prefix, char name[64],
                        size_t kept_max, struct told *told)
{
    const char *base = getenv("TCPOTA_PG");
    char q[200];

    ss_fx_fresh(f);
    snprintf(name, 64, "%s_%ld", prefix, (long)getpid());
    memset(admin, 0, sizeof(*admin));
    snprintf(admin->db, sizeof(admin->db), "%s", base);
    snprintf(q, sizeof(q), "CREATE DATABASE %s", name);
    sql(admin, q);
    assert_true(strlen(base) + strlen(name) + 8 < sizeof(f->db));
    snprintf(f->db, sizeof(f->db), "%.900s dbname=%s", base, name);
    f->base = event_base_new();
    ss_fx_open(f);
    f->st->notice = on_notice;
    f->st->notice_arg = told;
    ((struct pgstore *)f->st)->kept_max = kept_max;
    ss_checkin_free(f, "dev-1");
}

/* The database goes away, as while PostgreSQL restarts: new connections
 * refused, the store's cut. */
static void outage_begin(struct fx *admin, const char *name)
{
    char q[200];

    snprintf(q, sizeof(q), "ALTER DATABASE %s ALLOW_CONNECTIONS false", name);
    sql(admin, q);
    snprintf(q, sizeof(q), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
             " datname = '%s'", name);
    sql(admin, q);
}

/* The end of an outage test: f's store closed (unless already), its
 * loop freed, its database dropped through admin, its directory gone. */
static void outage_close(struct fx *f, struct fx *admin, const char *name)
{
    char q[200];

    if (f->st) {
        store_close(f->st);
    }
    event_base_free(f->base);
    snprintf(q, sizeof(q), "DROP DATABASE %s WITH (FORCE)", name);
    sql(admin, q);
    ss_rm_tree(f->dir);
}

/* The database goes away (its connections cut, new ones refused, as while
 * PostgreSQL restarts) and comes back: the device steps submitted meanwhile
 * are kept and written, in order, once it is back; check-ins and reads
 * fail at once with STORE_E_UNAVAILABLE rather than wait; beyond the bound
 * of kept steps the oldest progress goes, the final step stays; the
 * operator is told once of the outage and once of the recovery. Without
 * the reconnection the kept step never completes; without the keeping it
 * fails. */
static void test_outage(void **state)
{
    char name[64], q[200];
    struct fx f, admin;
    struct told told = {0, 0, 0, ""};
    struct store_req *single, *batch, *r;
    int fired = 0;
    double t0;
    size_t i;
    (void)state;

    outage_open(&f, &admin, "tdown", name, 4, &told);
    outage_begin(&admin, name);
    /* Steps: one alone, then a batch of progress and the final step. */
    single = step_of(STORE_ST_OFFERED, 0, &fired);
    assert_int_equal(store_submit(f.st, single), 0);
    batch = events_req(5, &fired);
    for (i = 0; i < 5; i++) {
        struct store_event *e = &batch->u.events.items[i];
        snprintf(e->id, sizeof(e->id), "dev-1");
        e->has_image = 1;
        ss_fake_id(e->image_id, 0x77);
        e->state = i < 4 ? STORE_ST_DOWNLOADING : STORE_ST_VERIFIED;
        e->bytes = i < 4 ? (uint32_t)(i + 1) * 100 : 1000;
        e->size = 1000;
        e->durable = i == 4;
    }
    /* A step the trim drops owns its reason: freed with it (ASan). */
    batch->u.events.items[0].reason = strdup("waiting: a reason the trim frees");
    assert_non_null(batch->u.events.items[0].reason);
    assert_int_equal(store_submit(f.st, batch), 0);
    /* A check-in (the request that meets the loss, or one after it) and a
     * read fail, and fast. */
    t0 = mono_now();
    r = ss_checkin(&f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_E_UNAVAILABLE);
    assert_non_null(strstr(r->err, "database"));
    store_req_free(r);
    r = ss_device_get(&f, "dev-1");
    assert_int_equal(r->rc, STORE_E_UNAVAILABLE);
    store_req_free(r);
    assert_true(mono_now() - t0 < 2.0);
    assert_int_equal(told.down, 1);
    assert_int_equal(told.dropped, 1);
    /* Several reconnection attempts fail: the steps wait. */
    loop_for(&f, 700, NULL, 0);
    assert_int_equal(fired, 0);
    assert_int_equal(told.down, 1);

    snprintf(q, sizeof(q), "ALTER DATABASE %s ALLOW_CONNECTIONS true", name);
    sql(&admin, q);
    loop_for(&f, 5000, &fired, 2);
    assert_int_equal(fired, 2);
    assert_int_equal(single->rc, STORE_OK);
    assert_int_equal(batch->rc, STORE_OK);
    assert_int_equal(batch->u.events.n, 3); /* progress at 100 and 200 went */
    assert_int_equal(told.up, 1);
    store_req_free(single);
    store_req_free(batch);
    r = ss_device_get(&f, "dev-1");
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.device.dev->state, STORE_ST_VERIFIED);
    assert_true(r->u.device.nhistory >= 3);
    assert_int_equal(r->u.device.history[0].state, STORE_ST_VERIFIED);
    assert_int_equal(r->u.device.history[1].state, STORE_ST_DOWNLOADING);
    assert_non_null(strstr(r->u.device.history[1].detail, "from byte 300"));
    assert_int_equal(r->u.device.history[2].state, STORE_ST_OFFERED);
    store_req_free(r);

    outage_close(&f, &admin, name);
}

/* An outage during which no device step waited (a check-in met it, and
 * failed at once): the recovery says so, not "writing the 0 device steps
 * kept meanwhile". */
static void test_outage_nothing_kept(void **state)
{
    char name[64], q[200];
    struct fx f, admin;
    struct told told = {0, 0, 0, ""};
    struct store_req *r;
    double t0;
    (void)state;

    outage_open(&f, &admin, "tnone", name, 4, &told);
    outage_begin(&admin, name);
    r = ss_checkin(&f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_E_UNAVAILABLE);
    store_req_free(r);
    assert_int_equal(told.down, 1);
    snprintf(q, sizeof(q), "ALTER DATABASE %s ALLOW_CONNECTIONS true", name);
    sql(&admin, q);
    for (t0 = mono_now(); told.up == 0 && mono_now() - t0 < 10.0;) {
        loop_for(&f, 100, NULL, 0);
    }
    assert_int_equal(told.up, 1);
    assert_non_null(strstr(told.up_msg, "the database is reachable again after "));
    if (strstr(told.up_msg, "writing") || strstr(told.up_msg, " 0 ")) {
        fail_msg("the recovery said: %s", told.up_msg);
    }
    r = ss_checkin(&f, "dev-1", NULL, 0);
    assert_int_equal(r->rc, STORE_OK);
    store_req_free(r);

    outage_close(&f, &admin, name);
}

/* The database stays away while steps keep coming (a device's progress
 * every 50 ms) and then the node stops. Reconnection attempts back off
 * (100 ms doubling: a handful in 1.6 s, not one per step or per 100 ms);
 * beyond the bound of kept steps a batch's progress goes but its final
 * step, first in it, stays, and the operator is told once; at the stop
 * every kept step is answered, as not written: none is left without an
 * answer. */
static void test_outage_stop(void **state)
{
    char name[64], refused[120];
    struct fx f, admin;
    struct told told = {0, 0, 0, ""};
    struct store_req *steps[32], *batch;
    int fired = 0, attempts;
    long from;
    size_t i, n = 0;
    (void)state;

    outage_open(&f, &admin, "tstop", name, 5, &told);
    outage_begin(&admin, name);
    from = log_size();
    batch = events_req(3, &fired);
    for (i = 0; i < 3; i++) {
        struct store_event *e = &batch->u.events.items[i];
        snprintf(e->id, sizeof(e->id), "dev-%zu", i + 2);
        e->state = i == 0 ? STORE_ST_FAILED : STORE_ST_DOWNLOADING;
        e->durable = i == 0;
    }
    assert_int_equal(store_submit(f.st, batch), 0);
    for (n = 0; n < sizeof(steps) / sizeof(steps[0]); n++) {
        steps[n] = step_of(STORE_ST_DOWNLOADING, 0, &fired);
        assert_int_equal(store_submit(f.st, steps[n]), 0);
        loop_for(&f, 50, NULL, 0);
    }
    assert_int_equal(told.down, 1);
    assert_int_equal(told.dropped, 1);
    assert_int_equal(fired, 0);
    snprintf(refused, sizeof(refused), "\"%s\" is not currently accepting connections", name);
    attempts = logged(from, refused);
    if (attempts < 2 || attempts > 8) {
        fail_msg("%d reconnection attempts in 1.6 s", attempts);
    }
    store_close(f.st);
    f.st = NULL;
    assert_int_equal(fired, (int)n + 1);
    /* Lost, told once by the store: not an error each caller says again. */
    assert_int_equal(batch->rc, STORE_LOST);
    assert_int_equal(batch->u.events.n, 1);
    assert_int_equal(batch->u.events.items[0].state, STORE_ST_FAILED);
    store_req_free(batch);
    for (i = 0; i < n; i++) {
        assert_int_equal(steps[i]->rc, STORE_LOST);
        assert_non_null(strstr(steps[i]->err, "still unreachable"));
        store_req_free(steps[i]);
    }
    outage_close(&f, &admin, name);
}

/* Waits until f's node waits for a lock, then asks another session for
 * device id's row without waiting: 1 when the node holds it. */
static int node_holds_row(struct fx *f, const char *id)
{
    char q[128];
    PGconn *probe;
    PGresult *res;
    int waited, held;

    for (waited = 0; sql_int(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                             " 'tcpota' AND wait_event_type = 'Lock'") == 0; waited++) {
        assert_true(waited < 100);
        loop_for(f, 50, NULL, 0);
    }
    snprintf(q, sizeof q, "SELECT 1 FROM devices WHERE id = '%s' FOR UPDATE NOWAIT", id);
    probe = connect_or_fail(f->db);
    res = PQexec(probe, q);
    held = PQresultStatus(res) == PGRES_FATAL_ERROR &&
           strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "55P03") == 0;
    PQclear(res);
    PQfinish(probe);
    return held;
}

/* A removal takes its locks in the order every list does: its device's
 * row with the list's others, in id order, then secrets_gen (a list of
 * several that holds a device's row and sets a secret takes them so; a
 * removal that took secrets_gen first could wait for it while it waited:
 * a review). With secrets_gen held by another session, a removal alone
 * waits in the statement that locks secrets_gen, its device's row locked
 * already; with lo-2's row held, a list of a removal of lo-2 and a step of
 * lo-1 waits for lo-2 holding lo-1. */
static void test_delete_lock_order(void **state)
{
    static char step_of[1][16] = {"lo-1"};
    struct fx *f = *state;
    struct store_req *r, *step;
    PGconn *holder;
    PGresult *res;
    int fired = 0;

    ss_checkin_free(f, "lo-3");
    secret_put(f, "lo-3", 3);
    holder = connect_or_fail(f->db);
    res = PQexec(holder, "BEGIN; SELECT 1 FROM secrets_gen FOR UPDATE");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    r = store_req_new(STORE_DEVICE_DELETE, on_set, &fired);
    assert_non_null(r);
    r->now = NOW;
    r->u.device.id = "lo-3";
    assert_int_equal(store_submit(f->st, r), 0);
    if (!node_holds_row(f, "lo-3")) fail_msg("lo-3's row was not locked before secrets_gen");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                             " 'tcpota' AND wait_event_type = 'Lock' AND query LIKE"
                             " '%FROM secrets_gen FOR UPDATE%'"), 1);
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    loop_for(f, 10000, &fired, 1);
    assert_int_equal(fired, 1);
    if (r->rc != STORE_OK) fail_msg("the removal: %s", r->err);
    assert_int_equal(r->u.device.registered, 1);
    assert_int_equal(r->u.device.had_secret, 1);
    store_req_free(r);
    /* A list of several: lo-1 first, then lo-2 (held). */
    ss_checkin_free(f, "lo-1");
    ss_checkin_free(f, "lo-2");
    holder = connect_or_fail(f->db);
    res = PQexec(holder, "BEGIN; SELECT 1 FROM devices WHERE id = 'lo-2' FOR UPDATE");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    fired = 0;
    step = moves(step_of, 1, STORE_ST_OFFERED, 0, &fired);
    r = store_req_new(STORE_DEVICE_DELETE, on_set, &fired);
    assert_non_null(r);
    r->now = NOW;
    r->u.device.id = "lo-2";
    /* Handed over in one turn: one list. */
    assert_int_equal(store_submit(f->st, r), 0);
    assert_int_equal(store_submit(f->st, step), 0);
    if (!node_holds_row(f, "lo-1")) fail_msg("lo-1's row was not locked before lo-2's");
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    loop_for(f, 10000, &fired, 2);
    assert_int_equal(fired, 2);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(step->rc, STORE_OK);
    store_req_free(r);
    store_req_free(step);
}

/* Another session holds one of a list's devices and then waits for one
 * the list holds: PostgreSQL breaks the deadlock by failing the node's
 * transaction (SQLSTATE 40P01), which runs again once the other session
 * is done; the step is written, not failed. One request alone, so no
 * savepoint fallback hides a failed rerun. */
static void test_deadlock_runs_again(void **state)
{
    static char ids[2][16] = {"dl-1", "dl-2"};
    struct fx *f = *state;
    struct store_req *r;
    PGconn *holder;
    PGresult *res;
    long from = log_size();
    size_t len = strlen(f->db);
    int fired = 0, waited;

    /* PostgreSQL looks for a deadlock once per wait, deadlock_timeout after
     * it began, and fails the session that looks first and finds one. The
     * node waits first, so it looks first; but if the holder's request is
     * not queued by then (a loaded machine), the node finds nothing and the
     * holder is the one failed. The node looks after 3 s, the holder never
     * within this test. */
    assert_true(len > 0 && f->db[len - 1] == '\'' && len + 24 < sizeof(f->db));
    snprintf(f->db + len - 1, sizeof(f->db) - len + 1, " -cdeadlock_timeout=3s'");
    store_close(f->st);
    ss_fx_open(f);
    ss_checkin_free(f, ids[0]);
    ss_checkin_free(f, ids[1]);
    holder = connect_or_fail(f->db);
    res = PQexec(holder, "SET deadlock_timeout = '10min'"); /* superuser: with_pg.sh's role */
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexec(holder, "BEGIN; SELECT 1 FROM devices WHERE id = 'dl-2' FOR UPDATE");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    r = moves(ids, 2, STORE_ST_OFFERED, 0, &fired);
    assert_int_equal(store_submit(f->st, r), 0);
    /* The node holds dl-1 and waits for dl-2. */
    for (waited = 0; sql_int(f, "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                             " 'tcpota' AND wait_event_type = 'Lock'") == 0; waited++) {
        assert_true(waited < 100);
        loop_for(f, 50, NULL, 0);
    }
    assert_int_equal(PQsendQuery(holder, "SELECT 1 FROM devices WHERE id = 'dl-1' FOR UPDATE"), 1);
    /* The holder gets dl-1 once the node's transaction is broken. */
    for (waited = 0; PQconsumeInput(holder) && PQisBusy(holder); waited++) {
        assert_true(waited < 200);
        loop_for(f, 50, NULL, 0);
    }
    while ((res = PQgetResult(holder))) {
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        PQclear(res);
    }
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);
    loop_for(f, 10000, &fired, 1);
    assert_int_equal(fired, 1);
    if (r->rc != STORE_OK) {
        fail_msg("after the deadlock: %s", r->err);
    }
    store_req_free(r);
    assert_true(logged(from, "deadlock detected") >= 1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM devices WHERE state = "
                                "(SELECT state FROM devices WHERE id = 'dl-1')"), 2);
}

/* Hands over a check-in of each of the n ids in one turn (one list, one
 * transaction) and asserts that none was answered OK or stored: each
 * failed with STORE_E_IO saying `why`. */
static void assert_list_fails(struct fx *f, const char *const *ids, size_t n, const char *why)
{
    struct store_req *in[4], *got;
    int fired = 0;
    size_t i;

    assert_true(n <= sizeof(in) / sizeof(in[0]));
    for (i = 0; i < n; i++) {
        in[i] = checkin_req(ids[i], "esp32", &fired);
        assert_int_equal(store_submit(f->st, in[i]), 0);
    }
    while (fired < (int)n) {
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    for (i = 0; i < n; i++) {
        assert_int_equal(in[i]->rc, STORE_E_IO);
        assert_non_null(strstr(in[i]->err, why));
        store_req_free(in[i]);
        got = ss_device_get(f, ids[i]);
        assert_int_equal(got->rc, STORE_E_NOTFOUND);
        store_req_free(got);
    }
}

/* The server refuses a list's COMMIT (here a deferred constraint on one
 * device): nothing of the list is written, so no request of it may be
 * answered OK: the one that caused it nor the others. */
static void test_commit_refused(void **state)
{
    static const char *const ids[] = {"cr-1", "boom", "cr-2"};
    struct fx *f = *state;

    sql(f, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.id = 'boom'"
           " THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END$$");
    sql(f, "CREATE CONSTRAINT TRIGGER boom AFTER INSERT OR UPDATE ON devices DEFERRABLE"
           " INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION boom()");
    assert_list_fails(f, ids, 3, "refused at commit");
}

/* A list that meets a serialization failure every time it runs (here a
 * trigger's, on one device) runs again a bounded number of times, then
 * fails as a whole: none of it was written, so none of it is answered
 * OK, not even the request that ran without error before it. */
static void test_rerun_bounded(void **state)
{
    static const char *const ids[] = {"sf-1", "sf-boom"};
    struct fx *f = *state;

    sql(f, "CREATE FUNCTION sf() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN IF NEW.id = 'sf-boom'"
           " THEN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END IF;"
           " RETURN NEW; END$$");
    sql(f, "CREATE TRIGGER sf BEFORE INSERT OR UPDATE ON devices FOR EACH ROW EXECUTE FUNCTION"
           " sf()");
    assert_list_fails(f, ids, 2, "again and again");
}

/* A wave row past ROLLOUT_MAX_WAVES (written by hand, or by a newer
 * node) is skipped: read, it would land past the rollout's waves. */
static void test_wave_row_out_of_range(void **state)
{
    static const uint32_t pct[] = {100};
    struct fx *f = *state;
    struct store_req *r;
    char q[200];
    uint64_t ro;

    store_req_free(ss_image_add(f, 0x93, "2.0.0"));
    ro = ss_rollout_create(f, 0x93, "", pct, 1);
    snprintf(q, sizeof(q), "INSERT INTO rollout_waves (rollout_id, wave, targeted, offered,"
             " downloading, updated, failed, opened_at) VALUES (%llu, %u, 7, 7, 7, 7, 7, 7)",
             (unsigned long long)ro, ROLLOUT_MAX_WAVES);
    sql(f, q);
    r = ss_rollout_get(f, ro);
    assert_int_equal(r->rc, STORE_OK);
    assert_int_equal(r->u.rollout.r->created_at, NOW);
    assert_int_equal(r->u.rollout.r->base_failed, 0);
    store_req_free(r);
}

/* What an operator meets at the start: the message says what is wrong. */
static void test_open_errors(void **state)
{
    struct event_base *base = event_base_new();
    char dir[] = "/tmp/tcpota-node-XXXXXX", err[300] = "", file[128], cache[64];
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    assert_null(store_pg_open("host=/nonexistent-dir port=1 connect_timeout=2", dir, base, err,
                              sizeof(err)));
    assert_non_null(strstr(err, "cannot connect to the database (--db)"));
    /* ... and what to do, as an outage says it (before: libpq's words only). */
    assert_true(strlen(err) > strlen(PG_CHECK_HINT));
    assert_string_equal(err + strlen(err) - strlen(PG_CHECK_HINT), PG_CHECK_HINT);
    assert_string_equal(PG_CHECK_HINT, "check that PostgreSQL runs and that --db reaches it");
    /* A string libpq cannot take is said to be one, not a database to
     * check on (before: "cannot connect ...; check that PostgreSQL runs"). */
    {
        /* A database that is not there: what to do is to make it. */
        char none[512];
        snprintf(none, sizeof none, "%s dbname=tcpota_no_such_db connect_timeout=5",
                 getenv("TCPOTA_PG"));
        assert_null(store_pg_open(none, dir, base, err, sizeof(err)));
        if (!strstr(err, "does not exist") || !strstr(err, "create it (createdb -O ROLE DB")) {
            fail_msg("%s", err);
        }
    }
    assert_null(store_pg_open("postgresql://[bad", dir, base, err, sizeof(err)));
    assert_string_equal(err, "--db: the connection string is not valid: end of string reached when "
                             "looking for matching \"]\" in IPv6 host address in URI: "
                             "\"postgresql://[bad\"");
    /* ... and one whose values libpq refuses only as it connects. */
    assert_null(store_pg_open("postgresql://u:p@127.0.0.1:1/x?sslmode=bogus", dir, base, err,
                              sizeof(err)));
    assert_string_equal(err, "--db: the connection string is not valid: invalid sslmode value: "
                             "\"bogus\"");
    assert_null(store_pg_open("host=127.0.0.1 port=1 connect_timeout=soon", dir, base, err,
                              sizeof(err)));
    assert_string_equal(err, "--db: the connection string is not valid: invalid integer value "
                             "\"soon\" for connection option \"connect_timeout\"");
    /* The image cache's directory is checked before the database is. */
    snprintf(file, sizeof(file), "%s/file", dir);
    fclose(fopen(file, "w"));
    assert_null(store_pg_open(getenv("TCPOTA_PG"), file, base, err, sizeof(err)));
    assert_non_null(strstr(err, "is not a writable directory"));
    mkdir(cache, 0700);
    snprintf(file, sizeof(file), "%s/images", cache);
    fclose(fopen(file, "w"));
    assert_null(store_pg_open(getenv("TCPOTA_PG"), cache, base, err, sizeof(err)));
    assert_non_null(strstr(err, "images is not a directory"));
    event_base_free(base);
    ss_rm_tree(dir);
}

/* --db checked before a connection: libpq's reason for a string it cannot
 * parse, never with the password the string gives (libpq echoes what it
 * could not read: the whole URI, a token, a word). */
static void test_conninfo_check(void **state)
{
    static const char *const bad[] = {
        "postgresql://u:Pw0rd@[::1/x",                /* the whole URI echoed */
        "postgresql://u:Pw0rd%zz@127.0.0.1/x",        /* the token */
        "host=127.0.0.1 password=Pw0rd Pw1rd",        /* the word after a space */
        "host=127.0.0.1 password='Pw0rd Pw1rd' Pw2rd", /* not a password: named */
        "postgresql://u@h/x?password=Pw0rd=Pw1rd",    /* the parameter */
    };
    static const char *const said[] = {
        "end of string reached when looking for matching \"]\" in IPv6 host address in URI: "
        "\"***\"",
        "invalid percent-encoded token: \"***\"",
        "missing \"=\" after \"***\" in connection info string",
        "missing \"=\" after \"Pw2rd\" in connection info string",
        "extra key/value separator \"***\" in URI query parameter: \"password\"",
    };
    char err[300], want[300];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(store_pg_conninfo_check(bad[i], NULL, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "--db: the connection string is not valid: %s", said[i]);
        assert_string_equal(err, want);
        assert_null(strstr(err, "Pw0rd"));
        assert_null(strstr(err, "Pw1rd"));
    }
    /* Usable: a URI, key=value, a database's bare name (as libpq takes it). */
    assert_int_equal(store_pg_conninfo_check("postgresql://u:p@h/x?sslmode=require", NULL, err,
                                             sizeof(err)), 0);
    assert_int_equal(store_pg_conninfo_check("host=h dbname=x", NULL, err, sizeof(err)), 0);
    assert_int_equal(store_pg_conninfo_check("tcpota", NULL, err, sizeof(err)), 0);
    /* Whether it gives a password (serve warns when others can read it). */
    assert_int_equal(store_pg_conninfo_password("postgresql://u:Pw0rd@h/x"), 1);
    assert_int_equal(store_pg_conninfo_password("postgresql://u@h/x?password=Pw0rd"), 1);
    assert_int_equal(store_pg_conninfo_password("host=h password='Pw0rd'"), 1);
    assert_int_equal(store_pg_conninfo_password("postgresql://u@h/x"), 0);
    assert_int_equal(store_pg_conninfo_password("postgresql://u:@h/x"), 0);
    assert_int_equal(store_pg_conninfo_password("host=h passfile=/etc/tcpota/pgpass"), 0);
    assert_int_equal(store_pg_conninfo_password("tcpota"), 0);
    /* A failure that is the database's: not the string's. */
    assert_int_equal(store_pg_conninfo_check("host=h", "connection to server at \"h\", port 5432 "
                                             "failed: Connection refused", err, sizeof(err)), 0);
}

/* --db as a postgresql:// URI, whose own settings win over the node's
 * defaults (here its application_name over "tcpota"). */
static void test_uri(void **state)
{
    struct fx *f = *state;
    char host[256] = "", port[16] = "", uri[600], err[256] = "", q[200], dir[sizeof(f->dir) + 8];
    const char *base = getenv("TCPOTA_PG");
    struct store *st;

    assert_int_equal(sscanf(strstr(base, "host="), "host=%255s", host), 1);
    assert_int_equal(sscanf(strstr(base, "port="), "port=%15s", port), 1);
    snprintf(uri, sizeof(uri), "postgresql://tcpota@/postgres?host=%s&port=%s"
             "&application_name=node-b&options=-csearch_path%%3D%s", host, port,
             strstr(f->db, "search_path=") + strlen("search_path="));
    uri[strlen(uri) - 1] = '\0'; /* the closing quote of f->db's options */
    /* Another node: its own --data (the fixture's store holds f->dir's lock). */
    snprintf(dir, sizeof(dir), "%s/b", f->dir);
    st = store_pg_open(uri, dir, f->base, err, sizeof(err));
    if (!st) {
        fail_msg("%s: %s", uri, err);
    }
    snprintf(q, sizeof(q), "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
             " 'node-b'");
    assert_int_equal(sql_int(f, q), 1);
    store_close(st);
}

/* A schema whose name needs quotes ("Mixed_N") opens again after its
 * first start (a review: its check cast the name to regnamespace, which
 * folded it to lower case, and every restart failed). */
static void test_mixed_case_schema(void **state)
{
    const char *base = getenv("TCPOTA_PG");
    char schema[64], q[160], db[1024], dir[] = "/tmp/tcpota-store-XXXXXX", err[300] = "";
    struct event_base *eb = event_base_new();
    struct store *st;
    PGconn *c;
    PGresult *res;
    int k;
    (void)state;

    assert_non_null(base);
    snprintf(schema, sizeof schema, "Mixed_%ld", (long)getpid());
    snprintf(q, sizeof q, "CREATE SCHEMA \"%s\"", schema);
    c = connect_or_fail(base);
    res = PQexec(c, q);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(c);
    snprintf(db, sizeof db, "%s options='-csearch_path=\"%s\"'", base, schema);
    assert_non_null(mkdtemp(dir));
    for (k = 0; k < 2; k++) { /* made, then opened again */
        if (!(st = store_pg_open(db, dir, eb, err, sizeof err))) fail_msg("open %d: %s", k, err);
        store_close(st);
    }
    ss_rm_tree(dir);
    event_base_free(eb);
}

static void test_not_ours_or_newer(void **state)
{
    struct fx *f = *state;
    struct fx other;
    char err[300] = "";

    store_close(f->st);
    f->st = NULL;
    sql(f, "UPDATE schema_version SET version = 99");
    assert_null(store_pg_open(f->db, f->dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 99, newer than this tcpota knows"));
    ss_fx_fresh(&other);
    sql(&other, "CREATE TABLE t (x int)");
    assert_null(store_pg_open(other.db, other.dir, f->base, err, sizeof(err)));
    assert_non_null(strstr(err, "holds tables but not tcpota's"));
    ss_rm_tree(other.dir);
    /* A schema_version of another program (Flyway before 5 used the name;
     * one of one integer column holding 42 but no tcpota table beside it):
     * not ours, said so, not migrated into nor called newer. */
    ss_fx_fresh(&other);
    sql(&other, "CREATE TABLE schema_version (installed_rank int, version varchar(50),"
                " description text); INSERT INTO schema_version VALUES (1, '1', 'init');"
                " CREATE TABLE devices (id int PRIMARY KEY, owner text)");
    assert_null(store_pg_open(other.db, other.dir, f->base, err, sizeof(err)));
    if (!strstr(err, "holds a schema_version table that is not tcpota's")) fail_msg("%s", err);
    ss_rm_tree(other.dir);
    ss_fx_fresh(&other);
    sql(&other, "CREATE TABLE schema_version (version int); INSERT INTO schema_version VALUES (42)");
    assert_null(store_pg_open(other.db, other.dir, f->base, err, sizeof(err)));
    if (!strstr(err, "holds a schema_version table that is not tcpota's")) fail_msg("%s", err);
    ss_rm_tree(other.dir);
    /* A session that may not write (a standby; here the option): refused
     * at start, naming target_session_attrs, not failing every request. */
    {
        char ro[sizeof f->db + 64];
        snprintf(ro, sizeof ro, "%s", f->db);
        ro[strlen(ro) - 1] = '\0'; /* the closing quote of its options */
        strncat(ro, " -c default_transaction_read_only=on'", sizeof ro - strlen(ro) - 1);
        /* libpq's refusal (the node asks for target_session_attrs=read-write,
         * also when it connects again), then the store's own check for a
         * connection string that asks for any session. */
        assert_null(store_pg_open(ro, f->dir, f->base, err, sizeof(err)));
        if (!strstr(err, "cannot connect to the database") || !strstr(err, "takes no writes") ||
            !strstr(err, "target_session_attrs=read-write")) {
            fail_msg("%s", err);
        }
        strncat(ro, " target_session_attrs=any", sizeof ro - strlen(ro) - 1);
        assert_null(store_pg_open(ro, f->dir, f->base, err, sizeof(err)));
        if (!strstr(err, "transaction_read_only is on") ||
            !strstr(err, "target_session_attrs=read-write")) {
            fail_msg("%s", err);
        }
    }
    /* A role that may not create the schema (PostgreSQL 15: public is no
     * longer everyone's): PostgreSQL's words, and what gives it the right. */
    {
        char noperm[sizeof f->db + 32];
        ss_fx_fresh(&other);
        sql(&other, "DO $$BEGIN CREATE ROLE tcpota_noperm LOGIN; EXCEPTION WHEN duplicate_object"
                    " THEN NULL; END$$");
        snprintf(noperm, sizeof noperm, "%s user=tcpota_noperm", other.db);
        assert_null(store_pg_open(noperm, other.dir, f->base, err, sizeof(err)));
        /* (No USAGE on the schema either: "no schema has been selected".) */
        if (!strstr(err, "schema migration: ") || !strstr(err, "createdb -O ROLE DB") ||
            !strstr(err, "GRANT CREATE ON SCHEMA")) {
            fail_msg("%s", err);
        }
        {
            /* USAGE without CREATE: "permission denied". */
            char q[200], schema[64];
            const char *at = strstr(other.db, "search_path=");
            assert_non_null(at);
            snprintf(schema, sizeof schema, "%.*s", (int)strcspn(at + 12, "'"), at + 12);
            snprintf(q, sizeof q, "GRANT USAGE ON SCHEMA %s TO tcpota_noperm", schema);
            sql(&other, q);
            assert_null(store_pg_open(noperm, other.dir, f->base, err, sizeof(err)));
            if (!strstr(err, "permission denied") || !strstr(err, "createdb -O ROLE DB")) {
                fail_msg("%s", err);
            }
            snprintf(q, sizeof q, "REVOKE USAGE ON SCHEMA %s FROM tcpota_noperm", schema);
            sql(&other, q);
        }
        ss_rm_tree(other.dir);
        {
            /* tcpota's own tables, of another role (a restore as another
             * role): said as the role's missing grants, not as another
             * program's schema_version (information_schema hid its
             * columns from the role: a trial). */
            char q[200], schema[64], mine[sizeof f->db + 32];
            const char *at = strstr(f->db, "search_path=");
            assert_non_null(at);
            snprintf(schema, sizeof schema, "%.*s", (int)strcspn(at + 12, "'"), at + 12);
            snprintf(q, sizeof q, "GRANT USAGE ON SCHEMA %s TO tcpota_noperm", schema);
            sql(f, q);
            snprintf(mine, sizeof mine, "%s user=tcpota_noperm", f->db);
            assert_null(store_pg_open(mine, f->dir, f->base, err, sizeof(err)));
            if (!strstr(err, "the role tcpota_noperm may not use tcpota's tables in schema") ||
                !strstr(err, "GRANT ALL ON ALL TABLES IN SCHEMA")) {
                fail_msg("%s", err);
            }
            /* Reading alone is not enough: every check-in writes (a review:
             * SELECT let it start, and every check-in then failed). */
            snprintf(q, sizeof q, "GRANT SELECT ON ALL TABLES IN SCHEMA %s TO tcpota_noperm",
                     schema);
            sql(f, q);
            assert_null(store_pg_open(mine, f->dir, f->base, err, sizeof(err)));
            if (!strstr(err, "may not use tcpota's tables")) fail_msg("%s", err);
            snprintf(q, sizeof q, "REVOKE SELECT ON ALL TABLES IN SCHEMA %s FROM tcpota_noperm",
                     schema);
            sql(f, q);
            snprintf(q, sizeof q, "REVOKE USAGE ON SCHEMA %s FROM tcpota_noperm", schema);
            sql(f, q);
        }
    }
}

int main(void)
{
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_migrate_once_concurrently),
        cmocka_unit_test(test_mixed_case_schema),
        cmocka_unit_test_setup_teardown(test_cas_two_nodes, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_counters_two_nodes, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_checkin_two_nodes, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_crossing_lists_two_nodes, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_failed_op_in_list, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_failed_op_wave_counts, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_lock_timeout_in_list, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_image_shared, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_reconnects, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_commit_answer_lost, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_commit_into_partition, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_api_write_commit_lost, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_commit_fatal_asked, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_secrets_since, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_migrates_from_4, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_unstick, ss_setup, ss_teardown),
        cmocka_unit_test(test_outage),
        cmocka_unit_test(test_outage_nothing_kept),
        cmocka_unit_test(test_outage_stop),
        cmocka_unit_test_setup_teardown(test_deadlock_runs_again, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_delete_lock_order, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_commit_refused, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_rerun_bounded, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_wave_row_out_of_range, ss_setup, ss_teardown),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_conninfo_check),
        cmocka_unit_test_setup_teardown(test_uri, ss_setup, ss_teardown),
        cmocka_unit_test_setup_teardown(test_not_ours_or_newer, ss_setup, ss_teardown),
    };
    if (sodium_init() < 0) {
        return 1;
    }
    return ss_run_all("store_pg", &pg_backend, own, sizeof(own) / sizeof(own[0]));
}
