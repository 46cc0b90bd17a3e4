/* test_api.c - the control API (server/api*.c, docs/api.md) over a fake
 * in-memory store: real HTTP requests on loopback (an evhttp client on the
 * same event loop), each validation checked by a request that only it
 * refuses, and the JSON shapes parsed back with jansson. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <unistd.h>

#include "api.h"
#include "api_internal.h" /* API_STREAMS_MAX */
#include "dashboard.h"
#include "http_host.h"
#include "http_reply.h" /* HTTP_DRAIN_MAX */
#include "store.h"
#include "tcpota/manifest.h"
#include "tmpdir.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define MAX_IMAGE 1024u
#define HEAD_MS 1000u /* a connection's first request head comes within this */
#define NMAX 16

/* ---- the fake store: answers from arrays, completes on the loop ---- */

struct fake {
    struct store st;
    struct event *ev;
    struct store_req *head, *tail;
    int hold;                   /* keep requests queued */
    int fail_op, fail_rc;       /* the next request of fail_op fails so */
    int cas_conflict;           /* the next ROLLOUT_SET loses */
    struct store_image imgs[NMAX];
    size_t nimgs;
    struct store_rollout ros[NMAX];
    size_t nros;
    struct store_device devs[NMAX]; /* sorted by id */
    size_t ndevs;
    int added_file_ok;          /* IMAGE_ADD found a 0600 file of the right size */
    const char *raced;          /* the next IMAGE_ADD finds the bytes added meanwhile as this version */
    struct store_req last_set;  /* the last ROLLOUT_SET's inputs */
    size_t last_limit;
    int64_t last_since, last_now; /* of the last SUMMARY */
    int summaries;                /* SUMMARY requests answered */
    char secret_id[TCPOTA_MAX_STR + 1];
    uint8_t secret[TCPOTA_SECRET_MAX], secret_len;
};

static struct {
    struct event_base *base;
    struct fake f;
    struct api *api;
    uint16_t port;
    char dir[64];
    int changes, secrets;
    int unsecrets;             /* on_secret calls that removed one (len 0) */
    char unsecret_id[TCPOTA_MAX_STR + 1]; /* the last one's id */
    char change[512]; /* the last change's line for the log */
    char logged[512]; /* the last line of cfg.log */
    int nlogged;
    uint8_t secret[32];
    uint8_t pk[32], sk[64];
    struct api_keys keys;
    unsigned max_conns; /* the listener's connections (0: the API's default) */
    size_t max_image;   /* --max-image (0: MAX_IMAGE) */
    struct http_hosts hosts; /* --http-host (n 0: any Host) */
} T;

static void hex_of(const uint8_t id[32], char *hex)
{
    sodium_bin2hex(hex, 65, id, 32);
}

static void fake_image(struct store_req *r)
{
    struct fake *f = &T.f;
    char hex[65];
    size_t i, n = 0, at = 0, len = strlen(r->u.image.img->idhex);
    struct stat st;

    for (i = 0; i < f->nimgs; i++) {
        hex_of(f->imgs[i].id, hex);
        if (len && strncmp(hex, r->u.image.img->idhex, len) == 0) n++, at = i;
    }
    if (r->op == STORE_IMAGE_ADD) {
        if (f->nimgs == NMAX) {
            r->rc = STORE_E_IO;
            return;
        }
        f->added_file_ok = stat(r->u.image.path, &st) == 0 && (st.st_mode & 0777) == 0600 &&
                           (uint32_t)st.st_size == r->u.image.img->size;
        r->u.image.img->added_at = r->now;
        hex_of(r->u.image.img->id, r->u.image.img->idhex);
        /* Kept where a backend keeps it (a dot name: dir_entries counts
         * only what the API leaves behind). */
        snprintf(r->u.image.img->path, sizeof r->u.image.img->path, "%s/.img-%.16s", T.dir,
                 r->u.image.img->idhex);
        if (rename(r->u.image.path, r->u.image.img->path) < 0) {
            r->rc = STORE_E_IO;
            return;
        }
        if (f->raced) {
            /* Another node's add of the same bytes committed first: the
             * store answers with the row it made (PostgreSQL's ON
             * CONFLICT DO NOTHING), added 0. */
            snprintf(r->u.image.img->version, sizeof r->u.image.img->version, "%s", f->raced);
            f->raced = NULL;
            f->imgs[f->nimgs++] = *r->u.image.img;
            r->u.image.added = 0;
            return;
        }
        f->imgs[f->nimgs++] = *r->u.image.img;
        r->u.image.added = 1; /* stored now (the backends' word) */
        return;
    }
    if (n != 1) {
        store_err_set(r, n ? STORE_E_INVAL : STORE_E_NOTFOUND,
                      n ? "the prefix is ambiguous" : "no such image");
        return;
    }
    if (r->op == STORE_IMAGE_GET) {
        *r->u.image.img = f->imgs[at];
        hex_of(f->imgs[at].id, r->u.image.img->idhex);
        return;
    }
    for (i = 0; i < f->nros; i++) {
        if (f->ros[i].ro.state != ROLLOUT_STATE_CANCELLED &&
            memcmp(f->ros[i].image_id, f->imgs[at].id, 32) == 0) {
            store_err_set(r, STORE_E_CONFLICT, "image %.12s is used by rollout %llu (active); "
                          "cancel the rollout first", hex, (unsigned long long)f->ros[i].id);
            return;
        }
    }
    f->imgs[at] = f->imgs[--f->nimgs];
}

static struct store_rollout *fake_ro(uint64_t id)
{
    size_t i;

    for (i = 0; i < T.f.nros; i++) {
        if (T.f.ros[i].id == id) return &T.f.ros[i];
    }
    return NULL;
}

static void fake_rollout(struct store_req *r)
{
    struct fake *f = &T.f;
    struct store_rollout *ro = r->op == STORE_ROLLOUT_CREATE ? NULL : fake_ro(r->u.rollout.id);
    size_t i;

    if (r->op == STORE_ROLLOUT_CREATE) {
        for (i = 0; i < f->nros; i++) {
            if (strcmp(f->ros[i].model, r->u.rollout.r->model) == 0 &&
                strcmp(f->ros[i].group, r->u.rollout.r->group) == 0 && !f->ros[i].superseded) {
                f->ros[i].superseded = 1; /* the stores name the newest that applied */
                r->u.rollout.superseded = f->ros[i].id;
            }
        }
        r->u.rollout.r->id = f->nros + 1;
        r->u.rollout.r->waves[0].targeted = 5;
        f->ros[f->nros++] = *r->u.rollout.r;
        return;
    }
    if (!ro) {
        r->rc = STORE_E_NOTFOUND;
        return;
    }
    if (r->op == STORE_ROLLOUT_GET) {
        *r->u.rollout.r = *ro;
        return;
    }
    f->last_set.u.rollout = r->u.rollout;
    f->last_set.u.rollout.r = NULL; /* its record dies with the request */
    if (f->cas_conflict || ro->ro.state != r->u.rollout.expect_state ||
        ro->ro.n_open != r->u.rollout.expect_n_open) {
        f->cas_conflict = 0;
        r->rc = STORE_E_CONFLICT;
        return;
    }
    ro->ro.state = r->u.rollout.new_state;
    ro->ro.n_open = r->u.rollout.new_n_open;
}

static int dev_matches(const struct store_device *d, const struct store_req *r)
{
    return (!r->u.list.model || strcmp(d->model, r->u.list.model) == 0) &&
           (!r->u.list.group || strcmp(d->group, r->u.list.group) == 0) &&
           (r->u.list.state < 0 || (int)d->state == r->u.list.state) &&
           (!r->u.list.prefix || strncmp(d->id, r->u.list.prefix, strlen(r->u.list.prefix)) == 0);
}

static void fake_list(struct store_req *r, const void *src, size_t n, size_t size)
{
    r->u.list.rows = malloc(n ? n * size : 1);
    memcpy(r->u.list.rows, src, n * size);
    r->u.list.n = n;
}

static void fake_devices(struct store_req *r)
{
    struct fake *f = &T.f;
    struct store_device *rows = malloc(sizeof f->devs);
    size_t i, n = 0, limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX;

    f->last_limit = r->u.list.limit;
    for (i = 0; i < f->ndevs; i++) {
        if (!dev_matches(&f->devs[i], r)) continue;
        r->u.list.total++;
        if ((!r->u.list.after || strcmp(f->devs[i].id, r->u.list.after) > 0) && n < limit) {
            rows[n++] = f->devs[i];
        }
    }
    r->u.list.rows = rows;
    r->u.list.n = n;
}

static struct store_device *fake_dev(const char *id)
{
    size_t i;

    for (i = 0; i < T.f.ndevs; i++) {
        if (strcmp(T.f.devs[i].id, id) == 0) return &T.f.devs[i];
    }
    return NULL;
}

static void fake_device(struct store_req *r)
{
    struct store_device *d = fake_dev(r->u.device.id);

    if (r->op == STORE_SECRET_SET) {
        r->u.device.had_secret = strcmp(T.f.secret_id, r->u.device.id) == 0;
        r->u.device.registered = d != NULL;
        snprintf(T.f.secret_id, sizeof T.f.secret_id, "%s", r->u.device.id);
        memcpy(T.f.secret, r->u.device.secret, r->u.device.secret_len);
        T.f.secret_len = r->u.device.secret_len;
        return;
    }
    if (r->op == STORE_DEVICE_DELETE) {
        r->u.device.had_secret = T.f.secret_id[0] && strcmp(T.f.secret_id, r->u.device.id) == 0;
        r->u.device.registered = d != NULL;
        if (!d && !r->u.device.had_secret) {
            store_err_set(r, STORE_E_NOTFOUND, "no device %s", r->u.device.id);
            return;
        }
        if (r->u.device.had_secret) T.f.secret_id[0] = '\0';
        if (d) {
            memmove(d, d + 1, (size_t)(&T.f.devs[T.f.ndevs] - (d + 1)) * sizeof *d);
            T.f.ndevs--;
        }
        return;
    }
    if (!d) {
        r->rc = STORE_E_NOTFOUND;
        return;
    }
    if (r->op == STORE_DEVICE_SET_GROUP) {
        snprintf(d->group, sizeof d->group, "%s", r->u.device.group);
        return;
    }
    *r->u.device.dev = *d;
    r->u.device.history = calloc(2, sizeof *r->u.device.history);
    r->u.device.nhistory = 2;
    r->u.device.history[0].at = 200;
    r->u.device.history[0].state = d->state;
    snprintf(r->u.device.history[0].detail, sizeof r->u.device.history[0].detail, "health check failed");
    r->u.device.history[1].at = 100;
    r->u.device.history[1].state = STORE_ST_SEEN;
}

/* One row of each kind, and what the request asked. */
static void fake_summary(struct store_req *r)
{
    struct store_tally *t = calloc(4, sizeof *t);

    T.f.summaries++;
    T.f.last_since = r->u.summary.since;
    T.f.last_now = r->now;
    t[0].kind = STORE_TALLY_STATES;
    snprintf(t[0].model, sizeof t[0].model, "esp32-devkit");
    t[0].state = STORE_ST_ROLLED_BACK;
    t[0].n = 7;
    t[3].kind = STORE_TALLY_VERSIONS;
    snprintf(t[3].model, sizeof t[3].model, "esp32-devkit");
    snprintf(t[3].version, sizeof t[3].version, "1.0.0");
    t[3].n = 9;
    t[1].kind = STORE_TALLY_FAILURES;
    t[1].state = STORE_ST_FAILED;
    snprintf(t[1].reason, sizeof t[1].reason, "integrity \"check\"");
    t[1].n = 2;
    t[2].kind = STORE_TALLY_ROLLOUT_FAILED;
    t[2].rollout_id = 4;
    t[2].wave = 1;
    t[2].state = STORE_ST_ROLLED_BACK;
    snprintf(t[2].reason, sizeof t[2].reason, "health check failed");
    t[2].n = 3;
    r->u.summary.rows = t;
    r->u.summary.n = 4;
}

static void fake_answer(struct store_req *r)
{
    struct fake *f = &T.f;

    if (f->fail_op == (int)r->op) {
        f->fail_op = 0;
        store_err_set(r, f->fail_rc, "disk full (fake)");
        return;
    }
    switch (r->op) {
    case STORE_IMAGE_LIST: fake_list(r, f->imgs, f->nimgs, sizeof f->imgs[0]); break;
    case STORE_ROLLOUT_LIST: fake_list(r, f->ros, f->nros, sizeof f->ros[0]); break;
    case STORE_IMAGE_ADD:
    case STORE_IMAGE_GET:
    case STORE_IMAGE_RM: fake_image(r); break;
    case STORE_ROLLOUT_CREATE:
    case STORE_ROLLOUT_GET:
    case STORE_ROLLOUT_SET: fake_rollout(r); break;
    case STORE_DEVICE_LIST: fake_devices(r); break;
    case STORE_SUMMARY: fake_summary(r); break;
    default: fake_device(r); break;
    }
}

static void fake_run(evutil_socket_t fd, short what, void *arg)
{
    struct store_req *r;

    while (!T.f.hold && (r = T.f.head) != NULL) {
        T.f.head = r->next;
        if (!T.f.head) T.f.tail = NULL;
        fake_answer(r);
        store_req_finished(r); /* as a backend does: the loop's count of what waits */
        r->done(r);
    }
}

static int fake_submit(struct store *st, struct store_req *r)
{
    r->next = NULL;
    if (T.f.tail) T.f.tail->next = r;
    else T.f.head = r;
    T.f.tail = r;
    if (!T.f.hold) event_active(T.f.ev, 0, 0);
    return 0;
}

static void fake_close(struct store *st)
{
    T.f.hold = 0;
    fake_run(-1, 0, NULL);
}

static const struct store_vt fake_vt = {"fake", fake_submit, fake_close, 0, NULL};

static void seed(void)
{
    struct fake *f = &T.f;
    static const struct {
        const char *id, *model, *group;
        enum store_dev_state st;
    } devs[] = {{"dev-1", "esp32-devkit", "", STORE_ST_ROLLED_BACK},
                {"dev-2", "esp32-devkit", "canary", STORE_ST_UPDATED},
                {"dev-3", "other", "", STORE_ST_SEEN}};
    size_t i;

    for (i = 0; i < 3; i++) {
        struct store_image *im = &f->imgs[i];
        memset(im->id, 0x11 * (int)(i + 1), 32);
        snprintf(im->version, sizeof im->version, "%s", i ? "2.0.0" : "1.0.0");
        snprintf(im->model, sizeof im->model, "%s", i == 2 ? "other" : "esp32-devkit");
        im->size = 1000;
        im->added_at = 1796131200;
        hex_of(im->id, im->idhex); /* as a store lists them */
    }
    f->nimgs = 3;
    for (i = 0; i < 2; i++) {
        struct store_rollout *ro = &f->ros[i];
        uint32_t pct[3] = {10, 50, 100};
        ro->id = i + 1;
        memset(ro->image_id, i ? 0x11 : 0x22, 32);
        snprintf(ro->model, sizeof ro->model, "esp32-devkit");
        ro->ro.state = i ? ROLLOUT_STATE_CANCELLED : ROLLOUT_STATE_ACTIVE;
        ro->ro.n_waves = 3;
        rollout_bounds_from_pct(pct, 3, ro->ro.bound);
        memcpy(ro->pct, pct, sizeof pct);
        ro->ro.n_open = 1;
        ro->waves[0].targeted = 5;
        ro->waves[0].updated = 2;
        ro->waves[0].opened_at = 1796131200;
        ro->rules.halt_pct = 20;
        ro->created_at = ro->changed_at = 1796131200 + (int64_t)i;
    }
    f->nros = 2;
    for (i = 0; i < 3; i++) {
        struct store_device *d = &f->devs[i];
        snprintf(d->id, sizeof d->id, "%s", devs[i].id);
        snprintf(d->model, sizeof d->model, "%s", devs[i].model);
        snprintf(d->group, sizeof d->group, "%s", devs[i].group);
        snprintf(d->version, sizeof d->version, "1.0.0");
        snprintf(d->addr, sizeof d->addr, "127.0.0.1");
        d->state = devs[i].st;
        d->bytes = 500;
        d->size = 1000;
    }
    f->ndevs = 3;
}

/* ---- the API under test ---- */

static void on_change(void *ctx, const char *what)
{
    (void)ctx;
    snprintf(T.change, sizeof T.change, "%s", what);
    T.changes++;
}

/* The last change's log line is want, said of an API client on loopback. */
static void expect_change(const char *want)
{
    const char *client = " (API client 127.0.0.1:";
    size_t n = strlen(want);

    if (strncmp(T.change, want, n) != 0 || strncmp(T.change + n, client, strlen(client)) != 0) {
        fail_msg("change logged as \"%s\", not \"%s%s...\"", T.change, want, client);
    }
}

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    snprintf(T.logged, sizeof T.logged, "%s", line);
    T.nlogged++;
}

static void on_secret(void *ctx, const char *id, const uint8_t *secret, size_t len)
{
    if (len == 0) { /* a device removed, its secret with it */
        assert_null(secret);
        snprintf(T.unsecret_id, sizeof T.unsecret_id, "%s", id);
        T.unsecrets++;
        return;
    }
    assert_int_equal(len, 32);
    memcpy(T.secret, secret, 32);
    T.secrets++;
}

/* HTTP downloads on the API's listener (serve without --ota-listen): the
 * one tokenless answer that keeps its connection alive. */
static void fake_ota(struct evhttp_request *req, void *arg)
{
    struct evbuffer *b = evbuffer_new();

    (void)arg;
    evbuffer_add(b, "image", 5);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void start_api(api_verify_fn verify)
{
    struct api_config cfg;
    char err[256];

    memset(&cfg, 0, sizeof cfg);
    cfg.base = T.base;
    cfg.store = &T.f.st;
    cfg.host = "127.0.0.1";
    cfg.token = TOKEN;
    cfg.images_dir = T.dir;
    cfg.max_image = T.max_image ? T.max_image : MAX_IMAGE;
    cfg.head_ms = HEAD_MS;
    cfg.max_conns = T.max_conns;
    cfg.hosts = &T.hosts;
    cfg.verify = verify;
    cfg.on_change = on_change;
    cfg.on_secret = on_secret;
    cfg.log = on_log;
    cfg.ctx = verify ? (void *)&T.keys : NULL;
    cfg.ota = fake_ota; /* a download: tokenless, kept alive */
    T.api = api_start(&cfg, err, sizeof err);
    assert_non_null(T.api);
    T.port = api_port(T.api);
    assert_true(T.port != 0);
}

static int setup(void **state)
{
    memset(&T, 0, sizeof T);
    assert_true(sodium_init() >= 0);
    T.base = event_base_new();
    T.f.st.vt = &fake_vt;
    T.f.ev = event_new(T.base, -1, 0, fake_run, NULL);
    seed();
    snprintf(T.dir, sizeof T.dir, "/tmp/tcpota-api.XXXXXX");
    assert_non_null(mkdtemp(T.dir));
    crypto_sign_keypair(T.pk, T.sk);
    T.keys.keys = (const uint8_t(*)[32])T.pk;
    T.keys.nkeys = 1;
    start_api(NULL);
    return 0;
}

static int teardown(void **state)
{
    api_stop(T.api);
    store_close(&T.f.st); /* runs the detached completions */
    event_free(T.f.ev);
    event_base_free(T.base);
    tmpdir_remove(T.dir);
    return 0;
}

/* ---- an HTTP client on the same loop ---- */

struct resp {
    int done, status;
    char ctype[64];
    json_t *json;
};

/* The WWW-Authenticate header of the last answer ("" when it had none). */
static char g_www_auth[128];

static void resp_cb(struct evhttp_request *req, void *arg)
{
    struct resp *r = arg;
    const char *ct;
    struct evbuffer *b;

    r->done = 1;
    r->status = req ? evhttp_request_get_response_code(req) : -1;
    if (req) {
        ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
        ct = evhttp_find_header(evhttp_request_get_input_headers(req), "WWW-Authenticate");
        snprintf(g_www_auth, sizeof g_www_auth, "%s", ct ? ct : "");
        b = evhttp_request_get_input_buffer(req);
        r->json = json_loadb((const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b), 0, NULL);
    }
    event_base_loopbreak(T.base);
}

static enum evhttp_cmd_type method_of(const char *m)
{
    return strcmp(m, "POST") == 0     ? EVHTTP_REQ_POST
           : strcmp(m, "DELETE") == 0 ? EVHTTP_REQ_DELETE
           : strcmp(m, "PATCH") == 0  ? EVHTTP_REQ_PATCH
           : strcmp(m, "PUT") == 0    ? EVHTTP_REQ_PUT
                                      : EVHTTP_REQ_GET;
}

/* Sends one request; returns the status, the JSON answer in *out (NULL: dropped). */
static int http_full(const char *method, const char *uri, const char *token, const char *hname,
                     const char *hval, const void *body, size_t len, json_t **out)
{
    struct evhttp_connection *conn = evhttp_connection_base_new(T.base, NULL, "127.0.0.1", T.port);
    struct resp r;
    struct evhttp_request *req = evhttp_request_new(resp_cb, &r);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char auth[128];

    memset(&r, 0, sizeof r);
    evhttp_connection_set_flags(conn, EVHTTP_CON_READ_ON_WRITE_ERROR);
    evhttp_add_header(h, "Host", "127.0.0.1");
    if (token) {
        snprintf(auth, sizeof auth, "Bearer %s", token);
        evhttp_add_header(h, "Authorization", auth);
    }
    if (hname) evhttp_add_header(h, hname, hval);
    if (body) {
        char cl[24];
        snprintf(cl, sizeof cl, "%zu", len);
        evhttp_add_header(h, "Content-Length", cl); /* libevent adds it only for POST and PUT */
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    }
    assert_int_equal(evhttp_make_request(conn, req, method_of(method), uri), 0);
    while (!r.done) event_base_dispatch(T.base);
    evhttp_connection_free(conn);
    if (r.status != 413) {
        assert_string_equal(r.ctype, "application/json");
        assert_non_null(r.json);
        assert_true(json_is_object(r.json));
        if (r.status >= 400) assert_true(json_is_string(json_object_get(r.json, "error")));
    }
    if (out) *out = r.json;
    else json_decref(r.json);
    return r.status;
}

static int http(const char *method, const char *uri, const char *body, json_t **out)
{
    return http_full(method, uri, TOKEN, NULL, NULL, body, body ? strlen(body) : 0, out);
}

/* Expects code with "field": field (NULL: no field) from the request. */
static void expect_error(const char *method, const char *uri, const char *body, int code,
                         const char *field)
{
    json_t *j = NULL;
    int st = http(method, uri, body, &j);

    if (st != code) fprintf(stderr, "%s %s %s -> %d, not %d\n", method, uri, body ? body : "", st, code);
    assert_int_equal(st, code);
    if (field) {
        json_t *f = json_object_get(j, "field");
        if (!json_is_string(f) || strcmp(json_string_value(f), field) != 0) {
            fprintf(stderr, "%s %s %s: field %s, not %s\n", method, uri, body ? body : "",
                    json_is_string(f) ? json_string_value(f) : "(none)", field);
        }
        assert_true(json_is_string(f));
        assert_string_equal(json_string_value(f), field);
    }
    json_decref(j);
}

static const char *sget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* method uri (no body) answers code with exactly this error message. */
static void expect_message(const char *method, const char *uri, int code, const char *msg)
{
    json_t *j = NULL;

    assert_int_equal(http(method, uri, NULL, &j), code);
    assert_string_equal(sget(j, "error"), msg);
    json_decref(j);
}

static json_int_t iget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void run_ms(int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(T.base, &tv);
    event_base_dispatch(T.base);
}

/* ---- the tests ---- */

static void test_auth(void **state)
{
    json_t *j = NULL;

    assert_int_equal(http_full("GET", "/v1/images", NULL, NULL, NULL, NULL, 0, &j), 401);
    assert_non_null(strstr(sget(j, "error"), "Authorization: Bearer"));
    json_decref(j);
    /* A 401 says which scheme (RFC 6750): without a token no error code,
     * with a wrong one invalid_token; a 200 carries no challenge. */
    assert_string_equal(g_www_auth, "Bearer realm=\"tcpota\"");
    /* The server's log says so, once a second at most, then how many more. */
    assert_int_equal(T.nlogged, 1);
    assert_non_null(strstr(T.logged, "API: refused /v1/images from 127.0.0.1:"));
    assert_non_null(strstr(T.logged, ": missing or wrong token"));
    /* Same length, one digit off; a prefix; the token without "Bearer". */
    assert_int_equal(http_full("GET", "/v1/images",
                               "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee",
                               NULL, NULL, NULL, 0, NULL), 401);
    assert_string_equal(g_www_auth, "Bearer realm=\"tcpota\", error=\"invalid_token\"");
    assert_int_equal(http_full("GET", "/v1/images", "0123456789abcdef", NULL, NULL, NULL, 0, NULL), 401);
    /* The token and one more digit: the whole header must be the token,
     * not merely begin with it. */
    assert_int_equal(http_full("GET", "/v1/images", TOKEN "0", NULL, NULL, NULL, 0, NULL), 401);
    assert_int_equal(http_full("GET", "/v1/images", NULL, "Authorization", TOKEN, NULL, 0, NULL), 401);
    /* Another scheme of 7 bytes before the token: only Bearer carries it. */
    assert_int_equal(http_full("GET", "/v1/images", NULL, "Authorization", "Basic1 " TOKEN, NULL, 0,
                               NULL), 401);
    assert_int_equal(http_full("GET", "/v1/images", NULL, "Authorization", "bearer " TOKEN, NULL, 0,
                               NULL), 200); /* the scheme is case-insensitive */
    assert_string_equal(g_www_auth, "");
    /* Even for unknown paths, the token comes first. */
    assert_int_equal(http_full("GET", "/v1/nothing", NULL, NULL, NULL, NULL, 0, NULL), 401);
    assert_string_equal(g_www_auth, "Bearer realm=\"tcpota\"");
    assert_int_equal(http("GET", "/v1/images", NULL, NULL), 200);
    {
        int n = T.nlogged;

        assert_true(n <= 2); /* 7 refusals in well under 2 s: a line a second at most */
        usleep(1100 * 1000);
        assert_int_equal(http_full("GET", "/v1/nothing", NULL, NULL, NULL, NULL, 0, NULL), 401);
        assert_int_equal(T.nlogged, n + 1);
        assert_non_null(strstr(T.logged, "API: refused /v1/nothing from 127.0.0.1:"));
        assert_non_null(strstr(T.logged, " more refused requests not logged since the last such line)"));
    }
}

static void test_paths_and_methods(void **state)
{
    expect_error("GET", "/v1/nothing", NULL, 404, NULL);
    expect_error("GET", "/v1/imagesx", NULL, 404, NULL);
    {
        json_t *j = NULL; /* named as sent, not as parsed (host "v1", path "/images") */
        assert_int_equal(http("GET", "//v1/images?x=1", NULL, &j), 404);
        assert_string_equal(sget(j, "error"), "no such path //v1/images; see docs/api.md for the "
                                              "endpoints");
        json_decref(j);
    }
    expect_error("GET", "/v1/images/ffffffff", NULL, 404, NULL);
    expect_error("GET", "/v1/images/11111111/x", NULL, 404, NULL);
    /* The id at fault is named, as for PATCH and DELETE (a trial). */
    expect_error("GET", "/v1/rollouts/99", NULL, 404, "id");
    expect_error("POST", "/v1/rollouts/99/pause", NULL, 404, "id");
    expect_error("GET", "/v1/rollouts/abc", NULL, 404, "id");
    expect_error("POST", "/v1/rollouts//pause", NULL, 404, "id");
    {
        json_t *j = NULL; /* the id is named, not the id and the action */
        assert_int_equal(http("POST", "/v1/rollouts/abc/pause", NULL, &j), 404);
        assert_string_equal(sget(j, "error"), "no rollout abc (a rollout id is a number from 1 on)");
        json_decref(j);
    }
    {
        json_t *j = NULL; /* no id at all: said so, not "no rollout  (...)" */
        assert_int_equal(http("POST", "/v1/rollouts//pause", NULL, &j), 404);
        assert_string_equal(sget(j, "error"), "no rollout id in the path /v1/rollouts//pause (a"
                            " rollout id is a number from 1 on: /v1/rollouts/1/pause)");
        json_decref(j);
    }
    /* 2^64 + 1 has 20 digits: read as a number it would wrap to rollout 1. */
    expect_error("GET", "/v1/rollouts/18446744073709551617", NULL, 404, NULL);
    expect_error("POST", "/v1/rollouts/18446744073709551617/cancel", NULL, 404, NULL);
    /* A character below '0' is no digit: read as one, "1'" would be 1. */
    expect_error("POST", "/v1/rollouts/1'/cancel", NULL, 404, NULL);
    assert_int_equal(T.f.ros[0].ro.state, ROLLOUT_STATE_ACTIVE);
    expect_error("POST", "/v1/rollouts/1/explode", NULL, 404, NULL);
    expect_error("GET", "/v1/devices/nope", NULL, 404, "id");
    /* A '%' that escapes nothing: 400, not looked up as written (a
     * hostile trial's "%zz" was "no device %zz"). */
    expect_error("GET", "/v1/devices/%zz", NULL, 400, "id");
    expect_error("GET", "/v1/images/1.0%zz", NULL, 400, "id");
    expect_error("GET", "/v1/devices/dev-1/keys", NULL, 404, NULL);
    /* force is a parameter of the secret alone (a mutation review took it
     * everywhere and no test failed). */
    expect_error("GET", "/v1/devices/dev-1?force=1", NULL, 400, "force");
    expect_error("POST", "/v1/devices/dev-1/retry?force=1", NULL, 400, "force");
    expect_error("PUT", "/v1/images", NULL, 405, NULL);
    expect_error("PATCH", "/v1/images/11111111", NULL, 405, NULL);
    expect_error("DELETE", "/v1/rollouts", NULL, 405, NULL);
    expect_error("DELETE", "/v1/rollouts/1", NULL, 405, NULL);
    expect_error("GET", "/v1/rollouts/1/pause", NULL, 405, NULL);
    expect_error("POST", "/v1/devices", NULL, 405, NULL);
    expect_error("PUT", "/v1/devices/dev-1", NULL, 405, NULL);
    expect_error("GET", "/v1/devices/dev-1/secret", NULL, 405, NULL);
    expect_error("GET", "/v1/events/x", NULL, 404, NULL); /* not a stream */
    /* A request's bytes that are not UTF-8, echoed in the error: a 4xx that
     * says what it got, not a 500 "out of memory" (jansson refuses them). */
    {
        json_t *j = NULL;
        assert_int_equal(http("GET", "/v1/devices?state=%ff", NULL, &j), 400);
        assert_non_null(strstr(sget(j, "error"), "\\xff"));
        json_decref(j);
        j = NULL;
        assert_int_equal(http("GET", "/v1/rollouts/\xff\xfe", NULL, &j), 404);
        assert_non_null(strstr(sget(j, "error"), "\\xff\\xfe"));
        json_decref(j);
    }
}

/* Every route refuses a query parameter it does not take (docs/api.md),
 * naming it, and does nothing: a pause with a typo must not pause. */
static void test_unknown_query_refused(void **state)
{
    static const struct {
        const char *method, *uri, *body;
    } cases[] = {
        {"GET", "/v1/images?foo=1", NULL},
        {"GET", "/v1/images/22222222?foo=1", NULL},
        {"DELETE", "/v1/images/11111111?foo=1", NULL},
        {"POST", "/v1/images?version=3.0.0&model=legacy&foo=1", "image bytes"},
        {"GET", "/v1/rollouts?foo=1", NULL},
        {"POST", "/v1/rollouts?foo=1", "{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\"}"},
        {"GET", "/v1/rollouts/1?foo=1", NULL},
        {"POST", "/v1/rollouts/1/pause?foo=1", NULL},
        {"POST", "/v1/rollouts/1/cancel?foo=1", NULL},
        {"GET", "/v1/devices?foo=1", NULL},
        {"GET", "/v1/devices/dev-1?foo=1", NULL},
        {"PATCH", "/v1/devices/dev-1?foo=1", "{\"group\": \"g\"}"},
        {"POST", "/v1/devices/dev-1/secret?foo=1", NULL},
        {"GET", "/v1/summary?foo=1", NULL},
        {"GET", "/v1/events?foo=1", NULL},
    };
    size_t i;
    json_t *j = NULL;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error(cases[i].method, cases[i].uri, cases[i].body, 400, "foo");
    }
    assert_int_equal(T.changes, 0);
    assert_int_equal(T.f.ros[0].ro.state, ROLLOUT_STATE_ACTIVE);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(T.f.nros, 2);
    /* The message names the parameter and what the route takes. */
    assert_int_equal(http("GET", "/v1/summary?foo=1", NULL, &j), 400);
    assert_string_equal(sget(j, "error"), "unknown query parameter foo; this endpoint takes none: "
                                          "leave it out");
    json_decref(j);
    assert_int_equal(http("POST", "/v1/images?version=3.0.0&mode=legacy", "image bytes", &j), 400);
    assert_string_equal(sget(j, "error"), "unknown query parameter mode; this endpoint takes "
                                          "version, model");
    json_decref(j);
}

/* A query parameter given twice is refused, naming it: the first must not
 * silently win (an image stored under 5.0.0 when 6.0.0 was meant too). */
static void test_query_twice_refused(void **state)
{
    json_t *j = NULL;

    assert_int_equal(http("POST", "/v1/images?version=5.0.0&model=esp32&version=6.0.0",
                          "image bytes twice", &j), 400);
    assert_string_equal(sget(j, "field"), "version");
    assert_string_equal(sget(j, "error"), "version: given twice; send each query parameter once");
    json_decref(j);
    expect_error("POST", "/v1/images?model=esp32&version=5.0.0&model=esp32", "image bytes twice",
                 400, "model");
    expect_error("GET", "/v1/devices?state=updated&limit=5&state=failed", NULL, 400, "state");
    expect_error("GET", "/v1/devices?q=dev&q=dev", NULL, 400, "q");
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(T.changes, 0);
}

/* A %00 in a query value is refused, naming it: the value would arrive cut
 * at the NUL (as the /ota/ downloads refuse it too). */
static void test_query_nul_refused(void **state)
{
    json_t *j = NULL;

    /* libevent would hand the route "5.0.0": an image stored under it. */
    assert_int_equal(http("POST", "/v1/images?version=5.0.0%00x&model=esp32", "nul image", &j), 400);
    assert_string_equal(sget(j, "field"), "version");
    assert_non_null(strstr(sget(j, "error"), "not printable"));
    json_decref(j);
    expect_error("POST", "/v1/images?version=5.0.0&model=esp%0032", "nul image", 400, "model");
    expect_error("GET", "/v1/devices?q=dev%00zzz", NULL, 400, "q");
    expect_error("GET", "/v1/devices?limit=1&model=esp32-devkit%00", NULL, 400, "model");
    /* A '%' without two hex digits: kept as it is by libevent, refused. */
    expect_error("GET", "/v1/devices?q=dev%zz", NULL, 400, "q");
    /* Half an escape: one hex digit, then another byte or the end. */
    expect_error("GET", "/v1/devices?q=dev%4z", NULL, 400, "q");
    expect_error("GET", "/v1/devices?model=esp32%4", NULL, 400, "model");
    expect_error("POST", "/v1/images?version=5.0.0&model=esp32%", "bad escape", 400, "model");
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(T.changes, 0);
}

/* An endpoint that takes no body refuses one, before it acts (docs/api.md):
 * a client that sends fields (a secret of its own, a halt rule) must learn
 * that they are not taken, not see the action done without them. */
static void test_body_refused(void **state)
{
    static const struct {
        const char *method, *uri, *body;
    } cases[] = {
        {"POST", "/v1/rollouts/1/pause", "garbage not json"},
        {"POST", "/v1/rollouts/1/cancel", "{}"},
        {"POST", "/v1/rollouts/2/cancel", "{\"halt_pct\": 1}"}, /* before its 409 */
        {"POST", "/v1/devices/dev-1/secret", "{\"secret\": \"0000\"}"},
        {"POST", "/v1/devices/new-dev/secret", "x"},
        {"DELETE", "/v1/images/11111111", "x"},
        {"GET", "/v1/summary", "x"},
        {"GET", "/v1/devices", "x"},
        {"GET", "/v1/rollouts", "x"},
        {"GET", "/v1/events", "x"},
    };
    size_t i;
    json_t *j = NULL;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error(cases[i].method, cases[i].uri, cases[i].body, 400, "body");
    }
    T.f.ros[0].ro.state = ROLLOUT_STATE_PAUSED;
    assert_int_equal(http("POST", "/v1/rollouts/1/resume", "{\"halt_pct\": 1}", &j), 400);
    assert_string_equal(sget(j, "error"), "this endpoint takes no body (15 bytes came); send none");
    json_decref(j);
    assert_int_equal(T.f.ros[0].ro.state, ROLLOUT_STATE_PAUSED);
    assert_int_equal(T.secrets, 0);
    assert_int_equal(T.changes, 0);
    assert_int_equal(T.f.nimgs, 3);
    /* The path and the method are judged first; an empty body is none. */
    expect_error("POST", "/v1/rollouts/1/explode", "x", 404, NULL);
    expect_error("POST", "/v1/rollouts/1", "x", 405, NULL);
    assert_int_equal(http("POST", "/v1/rollouts/1/resume", "", NULL), 200);
}

static void test_images_list_show(void **state)
{
    json_t *j = NULL, *arr, *e;
    size_t i;
    int seen = 0;

    assert_int_equal(http("GET", "/v1/images", NULL, &j), 200);
    arr = json_object_get(j, "images");
    assert_int_equal(json_array_size(arr), 3);
    json_array_foreach(arr, i, e) {
        json_t *ros = json_object_get(e, "rollouts");
        assert_int_equal(strlen(sget(e, "id")), 64);
        assert_true(json_is_boolean(json_object_get(e, "signed")));
        assert_int_equal(iget(e, "size"), 1000);
        assert_int_equal(iget(e, "added_at"), 1796131200);
        assert_true(json_is_array(ros));
        if (sget(e, "id")[0] == '2') { /* used by active rollout 1 */
            assert_int_equal(json_array_size(ros), 1);
            assert_int_equal(json_integer_value(json_array_get(ros, 0)), 1);
            seen++;
        }
        if (sget(e, "id")[0] == '1') { /* only by cancelled rollout 2 */
            assert_int_equal(json_array_size(ros), 0);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    json_decref(j);
    assert_int_equal(http("GET", "/v1/images/22222222", NULL, &j), 200);
    assert_string_equal(sget(j, "id"), "2222222222222222222222222222222222222222222222222222222222222222");
    assert_string_equal(sget(j, "version"), "2.0.0");
    assert_string_equal(sget(j, "model"), "esp32-devkit");
    assert_true(json_is_false(json_object_get(j, "signed")));
    json_decref(j);
    expect_error("GET", "/v1/images/2222222", NULL, 404, "id");   /* 7 digits: no image either */
    expect_error("GET", "/v1/images/2222222g", NULL, 404, "id"); /* no id, nor a version */
}

static void test_image_delete(void **state)
{
    json_t *j = NULL;

    assert_int_equal(http("DELETE", "/v1/images/22222222", NULL, &j), 409);
    assert_non_null(strstr(sget(j, "error"), "rollout 1"));
    json_decref(j);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http("DELETE", "/v1/images/11111111", NULL, &j), 200);
    assert_string_equal(sget(j, "deleted"), "1111111111111111111111111111111111111111111111111111111111111111");
    json_decref(j);
    assert_int_equal(T.f.nimgs, 2);
    assert_int_equal(T.changes, 1);
    expect_change("image 111111111111 removed");
    expect_error("GET", "/v1/images/11111111", NULL, 404, NULL);
    expect_error("DELETE", "/v1/images/11111111", NULL, 404, NULL);
}

/* An image named by its version (as rollout create takes it): removed when
 * one image has it; several (of other models) are named, not guessed; a
 * version no image has, or a name neither id nor version, says where ids
 * and versions are shown (before: "an image id is 8 to 64 hex digits"). */
static void test_image_by_version(void **state)
{
    json_t *j = NULL;

    assert_int_equal(http("GET", "/v1/images/2.0.0", NULL, &j), 400);
    assert_string_equal(sget(j, "field"), "id");
    assert_non_null(strstr(sget(j, "error"), "2 images have version 2.0.0: 222222222222 (model "
                                             "esp32-devkit), 333333333333 (model other); give the id of one"));
    json_decref(j);
    assert_int_equal(http("DELETE", "/v1/images/2.0.0", NULL, NULL), 400);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http("DELETE", "/v1/images/9.9.9", NULL, &j), 404);
    assert_non_null(strstr(sget(j, "error"), "no image has the version 9.9.9 (tcpota image list shows ids and versions)"));
    json_decref(j);
    /* Hex digits too few for an id that are no version either name no
     * image, as "xyz123" does: 404, not 400 (before: "an image id is 8 to
     * 64 hex digits" with 400, while xyz123 was 404). */
    assert_int_equal(http("DELETE", "/v1/images/abc", NULL, &j), 404);
    assert_string_equal(sget(j, "field"), "id");
    assert_string_equal(sget(j, "error"), "no image has the version abc (tcpota image list shows ids and "
                                          "versions; an image id is 8 to 64 hex digits, so abc is too "
                                          "short for one)");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/images/abc", NULL, NULL), 404);
    assert_int_equal(http("DELETE", "/v1/images/xyz123", NULL, &j), 404);
    assert_string_equal(sget(j, "error"), "no image has the version xyz123 (tcpota image list shows ids "
                                          "and versions)");
    json_decref(j);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http("DELETE", "/v1/images/a%20b", NULL, &j), 400);
    assert_non_null(strstr(sget(j, "error"), "or a version (1 to 32 printable ASCII characters, no spaces)"));
    json_decref(j);
    /* A NUL in the path's version cuts nothing short: "1.0.0%00x" is no
     * name of image 1.0.0 (a mutation review: without the check, this
     * DELETE removed it). */
    assert_int_equal(http("DELETE", "/v1/images/1.0.0%00x", NULL, &j), 400);
    assert_string_equal(sget(j, "field"), "id");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/images/1.0.0%00x", NULL, NULL), 400);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http("GET", "/v1/images/1.0.0", NULL, &j), 200);
    assert_string_equal(sget(j, "id"), "1111111111111111111111111111111111111111111111111111111111111111");
    json_decref(j);
    assert_int_equal(http("DELETE", "/v1/images/1.0.0", NULL, &j), 200);
    assert_string_equal(sget(j, "deleted"), "1111111111111111111111111111111111111111111111111111111111111111");
    json_decref(j);
    assert_int_equal(T.f.nimgs, 2);
    expect_change("image 111111111111 removed");
    /* A version that looks like an id (8+ hex digits, in capitals): no
     * image has that id, so it is the version, as given. */
    snprintf(T.f.imgs[1].version, sizeof T.f.imgs[1].version, "DEADBEEF");
    assert_int_equal(http("GET", "/v1/images/DEADBEEF", NULL, &j), 200);
    assert_string_equal(sget(j, "version"), "DEADBEEF");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/images/deadbeef", NULL, &j), 404);
    assert_non_null(strstr(sget(j, "error"), "no image has the id, prefix or version deadbeef"));
    json_decref(j);
}

static int dir_entries(void)
{
    DIR *d = opendir(T.dir);
    struct dirent *e;
    int n = 0;

    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.' || strncmp(e->d_name, ".upload", 7) == 0;
    closedir(d);
    return n;
}

/* The same bytes added through two nodes at once under two versions: the
 * one whose add finds the other's row is judged as if it had been there
 * first (409), not told "added" under the other's version. */
static void test_upload_raced(void **state)
{
    const char body[] = "image bytes added twice";
    json_t *j = NULL;
    size_t n = T.f.nimgs;
    (void)state;

    T.f.raced = "8.0.1";
    assert_int_equal(http("POST", "/v1/images?version=8.0.0&model=legacy", body, &j), 409);
    assert_non_null(strstr(sget(j, "error"), "these bytes are stored already as image"));
    assert_non_null(strstr(sget(j, "error"), "version 8.0.1"));
    assert_string_equal(sget(j, "field"), "version");
    json_decref(j);
    assert_int_equal(T.f.nimgs, n + 1); /* the other node's */
    /* The same bytes and version for another model: the model is at fault. */
    assert_int_equal(http("POST", "/v1/images?version=8.0.1&model=other", body, &j), 409);
    assert_string_equal(sget(j, "field"), "model");
    assert_non_null(strstr(sget(j, "error"), "version 8.0.1 for model legacy"));
    json_decref(j);
}

static void test_upload_unsigned(void **state)
{
    const char body[] = "image bytes of version 3";
    uint8_t id[32];
    char hex[65], want[128];
    json_t *j = NULL;

    crypto_hash_sha256(id, (const uint8_t *)body, sizeof body - 1);
    hex_of(id, hex);
    assert_int_equal(http("POST", "/v1/images?version=3.0.0&model=legacy", body, &j), 201);
    assert_string_equal(sget(j, "id"), hex);
    assert_string_equal(sget(j, "version"), "3.0.0");
    assert_string_equal(sget(j, "model"), "legacy");
    assert_int_equal(iget(j, "size"), sizeof body - 1);
    assert_true(json_is_false(json_object_get(j, "signed")));
    assert_int_equal(json_array_size(json_object_get(j, "rollouts")), 0);
    json_decref(j);
    assert_true(T.f.added_file_ok);
    assert_int_equal(dir_entries(), 0); /* the backend copied it; the upload is gone */
    assert_int_equal(T.changes, 1);
    snprintf(want, sizeof want, "image %.12s added: version 3.0.0, model legacy, %zu bytes, unsigned",
             hex, sizeof body - 1);
    expect_change(want);
    /* The same bytes again: 200, nothing added. */
    assert_int_equal(http("POST", "/v1/images?version=3.0.0&model=legacy", body, &j), 200);
    assert_null(json_object_get(j, "repaired"));
    json_decref(j);
    assert_int_equal(T.f.nimgs, 4);
    /* Its file gone, or damaged (a byte changed, cut short): the same bytes
     * take its place. */
    for (int harm = 0; harm < 4; harm++) {
        const char *stored = T.f.imgs[3].path;
        char back[sizeof body];
        FILE *fp;
        if (harm == 0) {
            assert_int_equal(unlink(stored), 0);
        } else if (harm == 1) {
            assert_non_null(fp = fopen(stored, "r+"));
            assert_int_equal(fputc('X', fp), 'X');
            assert_int_equal(fclose(fp), 0);
        } else if (harm == 2) {
            assert_int_equal(truncate(stored, 1), 0);
        } else { /* its bytes, and one more */
            assert_non_null(fp = fopen(stored, "a"));
            assert_int_equal(fputc('X', fp), 'X');
            assert_int_equal(fclose(fp), 0);
        }
        assert_int_equal(http("POST", "/v1/images?version=3.0.0&model=legacy", body, &j), 200);
        assert_true(json_is_true(json_object_get(j, "repaired")));
        /* Gone (on a --db node: not fetched yet) is said apart from damage. */
        assert_int_equal(json_is_true(json_object_get(j, "was_missing")), harm == 0);
        assert_non_null(strstr(T.change, harm == 0 ? "not there" : "its damaged file"));
        json_decref(j);
        assert_non_null(fp = fopen(stored, "r"));
        assert_int_equal(fread(back, 1, sizeof back, fp), sizeof body - 1);
        assert_int_equal(fclose(fp), 0);
        assert_memory_equal(back, body, sizeof body - 1);
        assert_int_equal(T.f.nimgs, 4);
        assert_int_equal(dir_entries(), 0); /* no upload left behind */
    }
    /* Its id in capitals is the same id. */
    {
        char upper[65], uri[100];
        hex_of(T.f.imgs[3].id, upper);
        for (char *p = upper; *p; p++) *p = (char)toupper((unsigned char)*p);
        snprintf(uri, sizeof uri, "/v1/images/%s", upper);
        assert_int_equal(http("GET", uri, NULL, &j), 200);
        assert_string_equal(sget(j, "version"), "3.0.0");
        json_decref(j);
    }
    /* The same bytes under another version or model: refused, not renamed. */
    expect_error("POST", "/v1/images?version=3.0.1&model=legacy", body, 409, "version");
    expect_error("POST", "/v1/images?version=3.0.0&model=esp32", body, 409, "model");
    expect_error("POST", "/v1/images?model=legacy", "other bytes", 400, "version");
    expect_error("POST", "/v1/images?version=3.0.0", "other bytes", 400, "model");
    expect_error("POST", "/v1/images?version=3.0.0&model=012345678901234567890123456789012",
                 "other bytes", 400, "model");
    expect_error("POST", "/v1/images?version=3%200&model=legacy", "other bytes", 400, "version");
    /* A version that starts another image's id (in either case) would be
     * named by it: --image took that image (a security review). */
    {
        char uri[120], pre[9];
        snprintf(pre, sizeof pre, "%.8s", T.f.imgs[0].idhex);
        snprintf(uri, sizeof uri, "/v1/images?version=%s&model=legacy", pre);
        expect_error("POST", uri, "other bytes", 409, "version");
        for (char *p = pre; *p; p++) *p = (char)toupper((unsigned char)*p);
        snprintf(uri, sizeof uri, "/v1/images?version=%s&model=legacy", pre);
        expect_error("POST", uri, "other bytes", 409, "version");
        assert_int_equal(http("GET", "/v1/images/1.0.0", NULL, &j), 200); /* the seed's */
        json_decref(j);
        /* The other way: an image whose id starts with another's
         * hex-looking version (a date) would take its name. */
        {
            static const char later[] = "bytes whose id starts with a version";
            uint8_t lid[32];
            char lhex[65];
            crypto_hash_sha256(lid, (const uint8_t *)later, sizeof later - 1);
            hex_of(lid, lhex);
            snprintf(uri, sizeof uri, "/v1/images?version=%.8s&model=legacy", lhex);
            assert_int_equal(http("POST", uri, "a date-like version", &j), 201);
            json_decref(j);
            expect_error("POST", "/v1/images?version=9.9.9&model=legacy", later, 409, "body");
        }
    }
    expect_error("POST", "/v1/images?version=3.0.0&model=legacy", NULL, 400, "body");
    assert_int_equal(http_full("POST", "/v1/images?version=3.0.0&model=legacy", TOKEN,
                               "Tcpota-Manifest", "***not base64***", "x", 1, NULL), 400);
    assert_int_equal(http_full("POST", "/v1/images?version=3.0.0&model=legacy", TOKEN,
                               "Tcpota-Manifest", "AAAA", "x", 1, NULL), 400);
    assert_int_equal(T.f.nimgs, 5); /* the seed's three, 3.0.0 and the date-like version */
}

/* The same bytes again while their stored file's place holds a directory
 * with something in it (the operator's to look at): the repair fails with
 * its cause and what to do, nothing is changed; once it is empty, the
 * repair goes through. */
static void test_upload_repair_fails(void **state)
{
    const char body[] = "image bytes of version 5";
    char stored[sizeof T.f.imgs[0].path], inside[sizeof stored + 8];
    json_t *j = NULL;
    int changes;

    assert_int_equal(http("POST", "/v1/images?version=5.0.0&model=legacy", body, NULL), 201);
    snprintf(stored, sizeof stored, "%s", T.f.imgs[3].path);
    snprintf(inside, sizeof inside, "%s/keep", stored);
    assert_int_equal(unlink(stored), 0);
    assert_int_equal(mkdir(stored, 0700), 0);
    assert_int_equal(mkdir(inside, 0700), 0);
    changes = T.changes;
    assert_int_equal(http("POST", "/v1/images?version=5.0.0&model=legacy", body, &j), 500);
    assert_non_null(strstr(sget(j, "error"), "is stored but its file"));
    assert_non_null(strstr(sget(j, "error"), strerror(ENOTEMPTY)));
    assert_non_null(strstr(sget(j, "error"), "remove what is at that path"));
    json_decref(j);
    assert_int_equal(T.changes, changes);
    assert_int_equal(dir_entries(), 0); /* no upload left behind */
    assert_int_equal(rmdir(inside), 0);
    assert_int_equal(http("POST", "/v1/images?version=5.0.0&model=legacy", body, &j), 200);
    assert_true(json_is_true(json_object_get(j, "repaired")));
    json_decref(j);
    assert_int_equal(T.changes, changes + 1);
    assert_non_null(strstr(T.change, "its damaged file")); /* a directory was in its place */
}

/* A connection to the API with text sent on it. */
static int raw_open(const char *text)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(T.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)connect(fd, (struct sockaddr *)&sa, sizeof sa);
    run_ms(5);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    return fd;
}

/* A stop while an upload, hashed off the loop, waits for the store: the
 * job that ended is not waited for again (c->job cleared when it ended;
 * before, api_stop joined a freed job). */
static void test_stop_after_job(void **state)
{
    static const char req[] = "POST /v1/images?version=6.0.0&model=m HTTP/1.1\r\nHost: x\r\n"
                              "Authorization: Bearer " TOKEN "\r\nContent-Length: 5\r\n\r\nhello";
    int fd, i;

    T.f.hold = 1;
    fd = raw_open(req);
    for (i = 0; i < 200 && !T.f.head; i++) run_ms(10);
    assert_non_null(T.f.head); /* hashed: its lookup waits in the store */
    assert_int_equal(T.f.head->op, STORE_IMAGE_GET);
    api_stop(T.api); /* detaches it; teardown's store_close completes it */
    T.api = NULL;
    close(fd);
}

static void make_manifest(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                          char *b64, size_t cap);
static void make_manifest_sized(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                                uint32_t size, char *b64, size_t cap);
static void make_manifest_full(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                               uint32_t size, const char *version, char *b64, size_t cap);

/* An upload of bytes (len, the manifest's size) under the manifest b64 of
 * other bytes: 400 naming the manifest, "another SHA-256". */
static void refused_other_bytes(const char *b64, const char *bytes, size_t len)
{
    json_t *j = NULL;

    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, bytes, len, &j),
                     400);
    assert_string_equal(sget(j, "field"), "manifest");
    assert_non_null(strstr(sget(j, "error"), "another SHA-256"));
    json_decref(j);
}

/* A server without keys takes a signed image too: its signature must hold
 * for the key it names, and it must describe the bytes sent. */
static void test_upload_signed_without_keys(void **state)
{
    const char body[] = "signed image bytes";
    char b64[2048];
    json_t *j = NULL;

    /* Base64 of bytes that are no manifest: said so, not "protocol violation". */
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", "aGVsbG8gd29ybGQ=",
                               body, sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    assert_string_equal(sget(j, "error"), "the manifest is not a tcpota manifest, or it is damaged;"
                                          " sign the image again (tcpota sign)");
    json_decref(j);
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, "other bytes",
                               11, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    json_decref(j);
    /* Other bytes of the manifest's size: only their SHA-256, known once
     * they are hashed off the loop, tells them apart (the signature holds:
     * without this check any bytes of that size would pass as signed). */
    refused_other_bytes(b64, "signed image bytez", sizeof body - 1);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(dir_entries(), 0);
    b64[strlen(b64) - 6] = b64[strlen(b64) - 6] == 'A' ? 'B' : 'A';
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, NULL), 400);
    /* The SHA-256 of these very bytes, but another size (signed so): the
     * size must match too, or a device, which holds the offer's size to
     * the manifest's, would refuse the image at every offer. */
    make_manifest_sized(T.sk, T.pk, body, sizeof body - 1, sizeof body, b64, sizeof b64);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    json_decref(j);
    /* A version with a space (the manifest's rule allows it): refused by
     * the rule of an unsigned add, which rollout create --image needs
     * (before: stored, then no rollout could name it). */
    make_manifest_full(T.sk, T.pk, body, sizeof body - 1, sizeof body - 1, "a b", b64, sizeof b64);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    assert_non_null(strstr(sget(j, "error"), "the manifest's version 'a b' has a space"));
    assert_non_null(strstr(sget(j, "error"), "sign the image again"));
    json_decref(j);
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 201);
    assert_string_equal(sget(j, "version"), "4.1.0");
    assert_true(json_is_true(json_object_get(j, "signed")));
    json_decref(j);
}

/* A signed manifest (by sk) for body; base64 into b64. */
static void make_manifest(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                          char *b64, size_t cap)
{
    make_manifest_sized(sk, pk, body, len, (uint32_t)len, b64, cap);
}

/* The same, with the manifest's size given (size != len: a wrong one). */
static void make_manifest_sized(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                                uint32_t size, char *b64, size_t cap)
{
    make_manifest_full(sk, pk, body, len, size, "4.1.0", b64, cap);
}

/* The same, of the version given. */
/* What make_manifest_full signs besides its arguments (a test may vary them). */
static uint64_t manifest_created = 1796131200;
static uint32_t manifest_counter = 1;

static void make_manifest_full(const uint8_t *sk, const uint8_t *pk, const char *body, size_t len,
                               uint32_t size, const char *version, char *b64, size_t cap)
{
    struct tcpota_manifest m;
    uint8_t man[TCPOTA_MAX_MANIFEST], id[32];
    int n;

    crypto_hash_sha256(id, (const uint8_t *)body, len);
    memset(&m, 0, sizeof m);
    m.image_size = size;
    m.sha256 = id;
    m.version.ptr = (const uint8_t *)version;
    m.version.len = strlen(version);
    m.model.ptr = (const uint8_t *)"esp32-devkit";
    m.model.len = 12;
    m.security_counter = manifest_counter;
    m.created = manifest_created;
    m.pubkey = pk;
    n = tcpota_manifest_encode_body(&m, man, sizeof man - 64);
    assert_true(n > 0);
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, sk);
    sodium_bin2base64(b64, cap, man, (size_t)n + 64, sodium_base64_VARIANT_ORIGINAL);
}

static void test_upload_signed(void **state)
{
    const char body[] = "signed image bytes";
    uint8_t opk[32], osk[64];
    char b64[2048];
    json_t *j = NULL, *e;

    api_stop(T.api);
    start_api(api_verify_keys);
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    /* Keys: an image without its manifest is refused, even with names. */
    assert_int_equal(http_full("POST", "/v1/images?version=1&model=m", TOKEN, NULL, NULL, body,
                               sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    json_decref(j);
    /* The manifest of other bytes. */
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, "other", 5, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    json_decref(j);
    /* ... of the same size: a trusted signature over another SHA-256. */
    refused_other_bytes(b64, "signed image bytez", sizeof body - 1);
    assert_int_equal(T.f.nimgs, 3);
    /* A manifest contradicted by the query. */
    assert_int_equal(http_full("POST", "/v1/images?version=9.9.9", TOKEN, "Tcpota-Manifest", b64,
                               body, sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "version");
    json_decref(j);
    /* Signed by a key the server does not trust. */
    crypto_sign_keypair(opk, osk);
    make_manifest(osk, opk, body, sizeof body - 1, b64, sizeof b64);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 400);
    assert_string_equal(sget(j, "field"), "manifest");
    assert_non_null(strstr(sget(j, "error"), "not one of"));
    {
        /* The key named as tcpota keygen and verify name it: the first 8
         * bytes of its SHA-256 (before: of the key itself). */
        uint8_t h[32];
        char kid[17], want[64];
        crypto_hash_sha256(h, opk, 32);
        sodium_bin2hex(kid, sizeof kid, h, 8);
        snprintf(want, sizeof want, "signed by key %s, which", kid);
        assert_non_null(strstr(sget(j, "error"), want));
    }
    json_decref(j);
    /* Signed by the trusted key, with a forged signature. */
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    b64[strlen(b64) - 6] = b64[strlen(b64) - 6] == 'A' ? 'B' : 'A';
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, NULL), 400);
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    assert_int_equal(T.f.nimgs, 3);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 201);
    assert_string_equal(sget(j, "version"), "4.1.0");
    assert_string_equal(sget(j, "model"), "esp32-devkit");
    assert_true(json_is_true(json_object_get(j, "signed")));
    json_decref(j);
    assert_int_equal(T.f.nimgs, 4);
    assert_true(T.f.imgs[3].manifest_len > 0);
    /* And the list says it is signed. */
    assert_int_equal(http("GET", "/v1/images", NULL, &j), 200);
    e = json_array_get(json_object_get(j, "images"), 3);
    assert_true(json_is_true(json_object_get(e, "signed")));
    json_decref(j);
}

/* The same bytes with a manifest the stored image lacks, or with another
 * one: 409 naming the manifest and saying what to do (before: 200 "already
 * stored ... unsigned", the manifest dropped unsaid). Removed and added
 * again, the image is signed. */
static void test_upload_manifest_for_stored(void **state)
{
    const char body[] = "signed image bytes";
    uint8_t opk[32], osk[64];
    char b64[2048], other[2048], uri[100];
    json_t *j = NULL;

    assert_int_equal(http("POST", "/v1/images?version=4.1.0&model=esp32-devkit", body, &j), 201);
    snprintf(uri, sizeof uri, "/v1/images/%.12s", sget(j, "id"));
    json_decref(j);
    make_manifest(T.sk, T.pk, body, sizeof body - 1, b64, sizeof b64);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 409);
    assert_string_equal(sget(j, "field"), "manifest");
    assert_non_null(strstr(sget(j, "error"), ", unsigned; the server does not attach a manifest "
                                             "to a stored image: remove it (tcpota image rm "));
    json_decref(j);
    assert_int_equal(T.f.imgs[3].manifest_len, 0);
    assert_int_equal(http("DELETE", uri, NULL, NULL), 200);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, &j), 201);
    assert_true(json_is_true(json_object_get(j, "signed")));
    json_decref(j);
    /* The same manifest again: 200; another one (another key): 409. */
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", b64, body,
                               sizeof body - 1, NULL), 200);
    crypto_sign_keypair(opk, osk);
    make_manifest(osk, opk, body, sizeof body - 1, other, sizeof other);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", other, body,
                               sizeof body - 1, &j), 409);
    assert_non_null(strstr(sget(j, "error"), "with another signed manifest"));
    json_decref(j);
    /* Signed again by the same key, a minute later (tcpota sign run again
     * on the same file): the same claims, stored already (200); signed again
     * with another security counter: another manifest (409). */
    manifest_created += 60;
    make_manifest(T.sk, T.pk, body, sizeof body - 1, other, sizeof other);
    assert_true(strcmp(other, b64) != 0);
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", other, body,
                               sizeof body - 1, NULL), 200);
    manifest_counter = 2;
    make_manifest(T.sk, T.pk, body, sizeof body - 1, other, sizeof other);
    manifest_created -= 60;
    manifest_counter = 1;
    assert_int_equal(http_full("POST", "/v1/images", TOKEN, "Tcpota-Manifest", other, body,
                               sizeof body - 1, &j), 409);
    assert_non_null(strstr(sget(j, "error"), "with another signed manifest"));
    json_decref(j);
    assert_int_equal(T.f.nimgs, 4);
}

static void test_upload_too_large(void **state)
{
    char *big = calloc(1, MAX_IMAGE + 1);

    memset(big, 'x', MAX_IMAGE + 1);
    assert_int_equal(http_full("POST", "/v1/images?version=1.0&model=m", TOKEN, NULL, NULL, big,
                               MAX_IMAGE + 1, NULL), 413);
    assert_int_equal(http_full("POST", "/v1/images?version=1.0&model=m", TOKEN, NULL, NULL, big,
                               MAX_IMAGE, NULL), 201);
    free(big);
}

static void test_rollout_create_refused(void **state)
{
    static const struct {
        const char *body, *field;
        int code;
    } cases[] = {
        {"{\"image\": \"2.0.0\", ", "body", 400},
        {"[1, 2]", "body", 400},
        /* A field twice: parsers differ on which one counts (a check could
         * read one, the store the other), so the body is refused whole. */
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"group\": \"a\", \"group\": \"b\"}",
         "body", 400},
        {"{\"model\": \"esp32-devkit\"}", "image", 400},
        {"{\"image\": 5, \"model\": \"esp32-devkit\"}", "image", 400},
        {"{\"image\": \"2.0.0\"}", "model", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"\"}", "model", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [50, 10]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [50, 50]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [0]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [0, 100]}", "waves", 400},
        /* negative: as a uint32_t it would wrap to 100, a valid last wave */
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [-4294967196]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [101]}", "waves", 400},
        /* 2^32 + 100: as a uint32_t it would wrap to 100, a valid last wave */
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [4294967396]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": 101}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": []}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [\"10\"]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": "
         "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", "waves", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_at\": -1}", "halt_at", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_at\": \"x\"}", "halt_at", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_at\": 101}", "halt_at", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_at\": 20.5}", "halt_at", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_min\": -3}", "halt_min", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"min_finished\": 4294967296}",
         "min_finished", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"success_pct\": 101}", "success_pct", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"soak_s\": null}", "soak_s", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"allow_downgrade\": \"yes\"}",
         "allow_downgrade", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"group\": "
         "\"abcdefghijabcdefghijabcdefghijabc\"}", "group", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"group\": \"a b\"}", "group", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"group\": 7}", "group", 400},
        /* "" is not "all devices" (that is the group left out): a staged
         * rollout must not be superseded by a 100 % one by an empty value. */
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"group\": \"\"}", "group", 400},
        {"{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"halt_pct\": 5}", "halt_pct", 400},
        {"{\"image\": \"9.9.9\", \"model\": \"esp32-devkit\"}", "image", 404},
        /* A model is a name: a space is allowed (api_name_ok), no image has it. */
        {"{\"image\": \"2.0.0\", \"model\": \"esp32 devkit\"}", "image", 404},
        {"{\"image\": \"aaaaaaaa\", \"model\": \"esp32-devkit\"}", "image", 404},
        {"{\"image\": \"33333333\", \"model\": \"esp32-devkit\"}", "model", 400},
        {"{\"image\": \"1.0.0\", \"model\": \"esp32-devkit\"}", "image", 400}, /* ambiguous */
    };
    size_t i;

    /* A second 1.0.0 of the model makes that version ambiguous. */
    T.f.imgs[3] = T.f.imgs[0];
    memset(T.f.imgs[3].id, 0x44, 32);
    T.f.nimgs = 4;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_error("POST", "/v1/rollouts", cases[i].body, cases[i].code, cases[i].field);
    }
    assert_int_equal(T.f.nros, 2);
    assert_int_equal(T.changes, 0);
    /* What is wrong is said (before: "a b" was told to be 1 to 64
     * printable ASCII characters, which it is). */
    {
        json_t *j = NULL;
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"a b\", \"model\": \"esp32-devkit\"}",
                              &j), 400);
        assert_string_equal(sget(j, "field"), "image");
        assert_non_null(strstr(sget(j, "error"), "printable ASCII characters, no spaces: this one has a space"));
        json_decref(j);
        /* A wave of 0 %: said as that, not as waves that do not grow. */
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"2.0.0\", \"model\": "
                              "\"esp32-devkit\", \"waves\": [0, 100]}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), "each wave is a whole percentage from 1 to 100"));
        json_decref(j);
        /* Above 100 %: the same (a mutation campaign: a bound of 101 was
         * refused later as waves that do not grow, the wrong reason). */
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"2.0.0\", \"model\": "
                              "\"esp32-devkit\", \"waves\": [50, 101]}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), "each wave is a whole percentage from 1 to 100"));
        json_decref(j);
    }
    /* Too many waves is refused by the bound on the array, before a
     * percentage is stored in the table of ROLLOUT_MAX_WAVES (the later
     * rule on the percentages refuses it too, but only after writing past
     * the table): the reason tells which check refused. */
    {
        json_t *j = NULL;
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", "
                              "\"waves\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), "an array of 1 to 16 percentages"));
        json_decref(j);
    }
    /* One rule for groups, worded alike wherever a group is taken. */
    {
        static const char rule[] = "printable ASCII characters, no spaces";
        json_t *j = NULL;
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"2.0.0\", \"model\": "
                              "\"esp32-devkit\", \"group\": \"a b\"}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), rule));
        json_decref(j);
        assert_int_equal(http("POST", "/v1/rollouts", "{\"image\": \"2.0.0\", \"model\": "
                              "\"esp32-devkit\", \"group\": \"\"}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), "leave it out for all devices"));
        json_decref(j);
        assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"a b\"}", &j), 400);
        assert_non_null(strstr(sget(j, "error"), rule));
        json_decref(j);
        assert_int_equal(http("GET", "/v1/devices?group=a%20b", NULL, &j), 400);
        assert_non_null(strstr(sget(j, "error"), rule));
        json_decref(j);
    }
}

static void check_rollout_shape(json_t *j)
{
    json_t *rules = json_object_get(j, "rules"), *totals = json_object_get(j, "totals");
    json_t *waves = json_object_get(j, "waves"), *w;
    size_t i;

    iget(j, "id");
    assert_int_equal(strlen(sget(j, "image")), 64);
    sget(j, "model");
    sget(j, "group");
    sget(j, "state");
    assert_true(json_is_boolean(json_object_get(j, "superseded")));
    assert_true(json_is_boolean(json_object_get(j, "allow_downgrade")));
    iget(rules, "halt_at");
    iget(rules, "halt_min");
    iget(rules, "min_finished");
    iget(rules, "success_pct");
    iget(rules, "soak_s");
    assert_true(json_array_size(waves) >= 1);
    json_array_foreach(waves, i, w) {
        iget(w, "percent");
        assert_true(json_is_boolean(json_object_get(w, "open")));
        assert_true(json_is_integer(json_object_get(w, "opened_at")) ==
                    json_is_true(json_object_get(w, "open")));
        iget(w, "targeted");
        iget(w, "offered");
        iget(w, "downloading");
        iget(w, "updated");
        iget(w, "failed");
    }
    iget(totals, "targeted");
    iget(totals, "failed");
    iget(j, "created_at");
    iget(j, "changed_at");
}

static void test_rollout_create(void **state)
{
    json_t *j = NULL, *w;

    assert_int_equal(http("POST", "/v1/rollouts",
                          "{\"image\": \"2.0.0\", \"model\": \"esp32-devkit\", \"waves\": [10, 50, 100],"
                          " \"halt_at\": 25}", &j), 201);
    check_rollout_shape(j);
    assert_int_equal(iget(j, "id"), 3);
    assert_string_equal(sget(j, "image"), "2222222222222222222222222222222222222222222222222222222222222222");
    assert_string_equal(sget(j, "version"), "2.0.0");
    assert_string_equal(sget(j, "state"), "active");
    assert_string_equal(sget(j, "group"), "");
    assert_true(json_is_false(json_object_get(j, "allow_downgrade")));
    assert_int_equal(iget(json_object_get(j, "rules"), "halt_at"), 25);
    assert_int_equal(iget(json_object_get(j, "rules"), "halt_min"), 3);
    assert_int_equal(iget(json_object_get(j, "rules"), "min_finished"), 10);
    assert_int_equal(iget(json_object_get(j, "rules"), "success_pct"), 90);
    assert_int_equal(iget(json_object_get(j, "rules"), "soak_s"), 300);
    w = json_object_get(j, "waves");
    assert_int_equal(json_array_size(w), 3);
    assert_int_equal(iget(json_array_get(w, 0), "percent"), 10);
    assert_true(json_is_true(json_object_get(json_array_get(w, 0), "open")));
    assert_true(json_is_false(json_object_get(json_array_get(w, 1), "open")));
    assert_true(json_is_null(json_object_get(json_array_get(w, 1), "opened_at")));
    assert_int_equal(iget(json_object_get(j, "totals"), "targeted"), 5);
    json_decref(j);
    assert_int_equal(T.f.ros[2].ro.bound[0], 1000);
    assert_int_equal(T.f.ros[2].ro.bound[2], 10000);
    assert_int_equal(T.f.ros[2].ro.n_open, 1);
    assert_true(T.f.ros[0].superseded);
    assert_int_equal(T.changes, 1);
    assert_non_null(strstr(T.change, "rollout 3 created: image 222222222222 for model esp32-devkit, "
                                     "every group, waves 10,50,100%, halts when more than 25% of "
                                     "the finished failed (at least 3); supersedes rollout 2 (API client 127.0.0.1:"));
    /* By an id prefix, with the defaults. */
    assert_int_equal(http("POST", "/v1/rollouts",
                          "{\"image\": \"22222222\", \"model\": \"esp32-devkit\", \"group\": \"canary\","
                          " \"allow_downgrade\": true}", &j), 201);
    assert_int_equal(json_array_size(json_object_get(j, "waves")), 1);
    assert_int_equal(iget(json_array_get(json_object_get(j, "waves"), 0), "percent"), 100);
    assert_int_equal(iget(json_object_get(j, "rules"), "halt_at"), 20);
    assert_string_equal(sget(j, "group"), "canary");
    assert_true(json_is_true(json_object_get(j, "allow_downgrade")));
    json_decref(j);
    assert_int_equal(T.f.ros[3].ro.bound[0], 10000);
}

static void test_rollout_list_show(void **state)
{
    json_t *j = NULL, *arr;

    assert_int_equal(http("GET", "/v1/rollouts", NULL, &j), 200);
    arr = json_object_get(j, "rollouts");
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(iget(json_array_get(arr, 0), "id"), 2); /* newest first */
    assert_string_equal(sget(json_array_get(arr, 0), "version"), "1.0.0");
    assert_string_equal(sget(json_array_get(arr, 0), "state"), "cancelled");
    check_rollout_shape(json_array_get(arr, 1));
    assert_string_equal(sget(json_array_get(arr, 1), "version"), "2.0.0"); /* each its image's */
    json_decref(j);
    assert_int_equal(http("GET", "/v1/rollouts/1", NULL, &j), 200);
    check_rollout_shape(j);
    assert_string_equal(sget(j, "version"), "2.0.0");
    assert_int_equal(iget(json_array_get(json_object_get(j, "waves"), 0), "updated"), 2);
    json_decref(j);
}

static void test_rollout_actions(void **state)
{
    json_t *j = NULL;

    assert_int_equal(http("POST", "/v1/rollouts/1/pause", NULL, &j), 200);
    assert_string_equal(sget(j, "state"), "paused");
    json_decref(j);
    assert_int_equal(T.f.last_set.u.rollout.expect_state, ROLLOUT_STATE_ACTIVE);
    assert_int_equal(T.f.last_set.u.rollout.expect_n_open, 1);
    assert_int_equal(T.f.last_set.u.rollout.new_n_open, 1);
    assert_int_equal(T.changes, 1);
    expect_change("rollout 1 paused");
    expect_message("POST", "/v1/rollouts/1/pause", 409, "rollout 1 is paused already");
    assert_int_equal(http("POST", "/v1/rollouts/1/resume", NULL, &j), 200);
    assert_string_equal(sget(j, "state"), "active");
    json_decref(j);
    T.f.ros[0].ro.state = ROLLOUT_STATE_HALTED;
    expect_message("POST", "/v1/rollouts/1/pause", 409, "rollout 1 is halted; it cannot be paused: "
                   "it offers nothing already; resume it (tcpota rollout resume 1) or cancel it");
    assert_int_equal(http("POST", "/v1/rollouts/1/resume", NULL, NULL), 200);
    /* Another decider changed it between our read and our write. */
    T.f.cas_conflict = 1;
    assert_int_equal(http("POST", "/v1/rollouts/1/pause", NULL, &j), 409);
    assert_non_null(strstr(sget(j, "error"), "changed meanwhile"));
    json_decref(j);
    assert_string_equal(store_rollout_state_name(T.f.ros[0].ro.state), "active");
    expect_message("POST", "/v1/rollouts/1/resume", 409, "rollout 1 is active already");
    assert_int_equal(http("POST", "/v1/rollouts/1/cancel", NULL, NULL), 200);
    assert_int_equal(T.f.ros[0].ro.state, ROLLOUT_STATE_CANCELLED);
    expect_message("POST", "/v1/rollouts/1/resume", 409, "rollout 1 is cancelled; it cannot be resumed: a cancelled rollout stays so; create a new one (tcpota rollout create)");
    expect_message("POST", "/v1/rollouts/1/cancel", 409, "rollout 1 is cancelled already");
    /* Superseded, then cancelled: cancelled is what it is and says. */
    T.f.ros[0].superseded = 1;
    expect_message("POST", "/v1/rollouts/1/resume", 409, "rollout 1 is cancelled; it cannot be resumed: a cancelled rollout stays so; create a new one (tcpota rollout create)");
    assert_int_equal(http("GET", "/v1/rollouts/1", NULL, &j), 200);
    assert_string_equal(sget(j, "status"), "cancelled: it offers nothing, for good");
    json_decref(j);
    T.f.ros[0].superseded = 0;
    expect_error("POST", "/v1/rollouts/2/pause", NULL, 409, NULL);
    expect_error("POST", "/v1/rollouts/7/cancel", NULL, 404, NULL);
    assert_int_equal(T.changes, 4);
}

static void test_devices_list(void **state)
{
    json_t *j = NULL, *d;

    assert_int_equal(http("GET", "/v1/devices", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 3);
    assert_int_equal(iget(j, "total"), 3);
    assert_true(json_is_null(json_object_get(j, "next")));
    d = json_array_get(json_object_get(j, "devices"), 0);
    assert_string_equal(sget(d, "id"), "dev-1");
    assert_string_equal(sget(d, "state"), "rolled-back");
    assert_string_equal(sget(d, "protocol"), "v1");
    assert_string_equal(sget(d, "address"), "127.0.0.1");
    assert_int_equal(iget(d, "percent"), 50);
    sget(d, "running");
    sget(d, "image");
    sget(d, "reason");
    iget(d, "first_seen");
    assert_true(json_is_false(json_object_get(d, "has_secret")));
    json_decref(j);
    assert_int_equal(T.f.last_limit, 1001);
    assert_int_equal(http("GET", "/v1/devices?model=esp32-devkit&state=rolled-back", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 1);
    assert_int_equal(iget(j, "total"), 1);
    json_decref(j);
    assert_int_equal(http("GET", "/v1/devices?group=canary", NULL, &j), 200);
    assert_string_equal(sget(json_array_get(json_object_get(j, "devices"), 0), "id"), "dev-2");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/devices?limit=1", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 1);
    assert_string_equal(sget(j, "next"), "dev-1");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/devices?limit=2&after=dev-1", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "devices")), 2);
    assert_string_equal(sget(json_array_get(json_object_get(j, "devices"), 0), "id"), "dev-2");
    assert_true(json_is_null(json_object_get(j, "next")));
    json_decref(j);
    assert_int_equal(http("GET", "/v1/devices?limit=100000", NULL, NULL), 200);
    assert_int_equal(T.f.last_limit, STORE_LIST_MAX); /* no more than a list returns */
    expect_error("GET", "/v1/devices?state=broken", NULL, 400, "state");
    expect_error("GET", "/v1/devices?limit=0", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?limit=100001", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?limit=99999999999999999999999", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?limit=-1", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?limit=10x", NULL, 400, "limit");
    /* Digits only: strtoull would take a sign or leading space. */
    expect_error("GET", "/v1/devices?limit=%2B5", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?limit=%205", NULL, 400, "limit");
    expect_error("GET", "/v1/devices?group=abcdefghijabcdefghijabcdefghijabc", NULL, 400, "group");
    /* a model as devices send it: spaces too, control bytes not */
    expect_error("GET", "/v1/devices?model=a%01b", NULL, 400, "model");
    assert_int_equal(http("GET", "/v1/devices?model=a%20b", NULL, NULL), 200);
    expect_error("GET", "/v1/devices?model=", NULL, 400, "model");
    expect_error("GET", "/v1/devices?colour=red", NULL, 400, "colour");
    /* q: the start of an id, as the dashboard's search sends it. */
    assert_int_equal(http("GET", "/v1/devices?q=dev-2", NULL, &j), 200);
    assert_int_equal(iget(j, "total"), 1);
    assert_string_equal(sget(json_array_get(json_object_get(j, "devices"), 0), "id"), "dev-2");
    json_decref(j);
    assert_int_equal(http("GET", "/v1/devices?q=dev&model=other", NULL, &j), 200);
    assert_int_equal(iget(j, "total"), 1);
    json_decref(j);
    /* after: a device id, as the store compares it with the ids it keeps. */
    expect_error("GET", "/v1/devices?after=", NULL, 400, "after");
    expect_error("GET", "/v1/devices?after=a%01b", NULL, 400, "after");
    expect_error("GET", "/v1/devices?q=", NULL, 400, "q");
    expect_error("GET", "/v1/devices?q=a%7fb", NULL, 400, "q");
    assert_int_equal(http("GET", "/v1/devices?q=a%20b", NULL, NULL), 200);
}

static void test_summary(void **state)
{
    json_t *j = NULL, *t;

    /* A store error is the store's message, and nothing is kept of it. */
    T.f.fail_op = STORE_SUMMARY;
    T.f.fail_rc = STORE_E_IO;
    expect_error("GET", "/v1/summary", NULL, 500, NULL);
    assert_int_equal(http("GET", "/v1/summary", NULL, &j), 200);
    assert_int_equal(T.f.summaries, 1);
    assert_int_equal(T.f.last_now - T.f.last_since, 3600);
    assert_int_equal(iget(j, "now") - iget(j, "since"), 3600);
    t = json_array_get(json_object_get(j, "states"), 0);
    assert_string_equal(sget(t, "model"), "esp32-devkit");
    assert_string_equal(sget(t, "state"), "rolled-back");
    assert_int_equal(iget(t, "count"), 7);
    assert_int_equal(json_array_size(json_object_get(j, "states")), 1);
    t = json_array_get(json_object_get(j, "versions"), 0);
    assert_string_equal(sget(t, "version"), "1.0.0");
    assert_int_equal(iget(t, "count"), 9);
    t = json_array_get(json_object_get(j, "failures"), 0);
    assert_string_equal(sget(t, "state"), "failed");
    assert_string_equal(sget(t, "reason"), "integrity \"check\"");
    assert_int_equal(iget(t, "count"), 2);
    t = json_array_get(json_object_get(j, "rollout_failures"), 0);
    assert_int_equal(iget(t, "rollout"), 4);
    assert_int_equal(iget(t, "wave"), 1);
    assert_string_equal(sget(t, "reason"), "health check failed");
    assert_int_equal(iget(t, "count"), 3);
    json_decref(j);
    expect_error("POST", "/v1/summary", "{}", 405, NULL);
    expect_error("GET", "/v1/summary/x", NULL, 404, NULL);
    assert_int_equal(http_full("GET", "/v1/summary", NULL, NULL, NULL, NULL, 0, NULL), 401);
    /* Within API_SUMMARY_TTL_MS the answer is reused, not counted again. */
    assert_int_equal(http("GET", "/v1/summary", NULL, NULL), 200);
    assert_int_equal(T.f.summaries, 1);
    for (int waited = 0; waited <= API_SUMMARY_TTL_MS; waited += 100) run_ms(100);
    assert_int_equal(http("GET", "/v1/summary", NULL, NULL), 200);
    assert_int_equal(T.f.summaries, 2);
}

/* ---- raw sockets: the dashboard's files and the event streams ---- */

/* What arrived on fd after the loop ran ms; NUL-terminated in out. */
static size_t raw_read(int fd, char *out, size_t cap, int ms)
{
    size_t n = 0;
    ssize_t k;

    run_ms(ms);
    while (n + 1 < cap && (k = read(fd, out + n, cap - 1 - n)) > 0) n += (size_t)k;
    out[n] = 0;
    return n;
}

/* Sends text on a new connection; what arrived after the loop ran ms
 * (raw_read), the connection then closed. */
static size_t raw_ask(const char *text, char *out, size_t cap, int ms)
{
    int fd = raw_open(text);
    size_t n = raw_read(fd, out, cap, ms);

    close(fd);
    return n;
}

#define EVENTS_REQ "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN "\r\n\r\n"

/* A connection's first request head is judged once it is all in, however
 * it is cut into segments; one that does not come within HEAD_MS of the
 * accept closes the connection, however it trickles, and the log says so. */
static void test_head_deadline(void **state)
{
    static char buf[4096];
    int fd, i, logged = T.nlogged;
    ssize_t k;

    (void)state;
    fd = raw_open("GET /v1/images HTTP/1.1\r\nHost: x\r\n");
    run_ms(200);
    assert_true(send(fd, "Authorization: Bearer " TOKEN "\r\nConnection: close\r\n\r\n",
                     strlen("Authorization: Bearer " TOKEN "\r\nConnection: close\r\n\r\n"),
                     MSG_NOSIGNAL) > 0);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a head in two parts: %s", buf);

    /* A head that stops halfway costs no CPU while it waits (the gate's
     * event, added again, was reported ready at once, for ever: a core). */
    {
        struct rusage r0, r1;
        long us;
        fd = raw_open("GET /v1/images HTTP/1.1\r\nHost: x\r\n");
        getrusage(RUSAGE_SELF, &r0);
        run_ms(500);
        getrusage(RUSAGE_SELF, &r1);
        us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1000000L +
             (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
             (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1000000L +
             (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
        if (us > 200000) fail_msg("a half head cost %ld us of CPU in 500 ms", us);
        /* Its peer's end, behind the bytes a peek leaves: closed at once. */
        shutdown(fd, SHUT_WR);
        run_ms(50);
        k = read(fd, buf, sizeof buf);
        assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
        close(fd);
    }
    /* A 401 ends its connection: one that began without the token keeps
     * small bodies, so a client that then logs in must not upload on it. */
    fd = raw_open("GET /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 100);
    k = read(fd, buf + strlen(buf), 1);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 401") || !strstr(buf, "Connection: close") || k != 0) {
        fail_msg("a 401 did not close its connection: %s", buf);
    }

    logged = T.nlogged;
    fd = raw_open("GET /v1/images HTTP/1.1\r\n");
    for (i = 0; i < 6; i++) { /* a line every 250 ms: 1.5 s in all */
        run_ms(250);
        (void)send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL);
    }
    run_ms(50);
    k = read(fd, buf, sizeof buf);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
    close(fd);
    assert_int_equal(T.nlogged, logged + 1);
    assert_non_null(strstr(T.logged, "API: no request from 127.0.0.1:"));
    assert_non_null(strstr(T.logged, " within 1 s of connecting; closing"));
}

/* Connections accepted in one loop turn are admitted in the order they
 * came: with room for 3, a burst of 5 has its last two refused (the
 * newest of a turn were admitted first: a trial's second and third got
 * the 503 while its fourth and fifth were held). */
static void test_conn_limit_burst(void **state)
{
    enum { BURST = 5, ROOM = 3 };
    struct sockaddr_in sa;
    static char buf[4096];
    int fd[BURST], i;

    (void)state;
    api_stop(T.api);
    T.max_conns = ROOM;
    start_api(NULL);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(T.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < BURST; i++) { /* all in the backlog before the loop runs */
        fd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fd[i] >= 0);
        (void)connect(fd[i], (struct sockaddr *)&sa, sizeof sa);
    }
    run_ms(50);
    for (i = 0; i < BURST; i++) {
        ssize_t n = read(fd[i], buf, sizeof buf - 1);
        int refused;

        buf[n > 0 ? n : 0] = '\0';
        refused = strstr(buf, "HTTP/1.1 503") != NULL;
        if (refused != (i >= ROOM)) fail_msg("connection %d of the burst: %s", i, n > 0 ? buf : "held");
    }
    for (i = 0; i < BURST; i++) close(fd[i]);
}

/* The listener holds max_conns connections: one more is answered 503 at
 * its accept, saying so, and closed; each that closes (a request answered,
 * a client gone, a head that never came) makes room again. */
static void test_conn_limit(void **state)
{
    static const char ok[] = "GET /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                             "\r\nConnection: close\r\n\r\n";
    static char buf[4096];
    int held[3], fd, i, logged;

    (void)state;
    api_stop(T.api);
    T.max_conns = 3;
    start_api(NULL);
    /* Connections that close make room: many more than 3 in turn. */
    for (i = 0; i < 8; i++) assert_int_equal(http("GET", "/v1/images", NULL, NULL), 200);
    fd = raw_open(ok);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a raw request after 8: %s", buf);

    for (i = 0; i < 3; i++) held[i] = raw_open("GET /v1/images HTTP/1.1\r\n"); /* half heads */
    run_ms(50);
    logged = T.nlogged;
    fd = raw_open(ok);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 503") || !strstr(buf, "Retry-After: ") ||
        !strstr(buf, "the API holds 3 connections already, its limit (tcpota serve --api-max-conns)")) {
        fail_msg("a fourth connection: %s", buf);
    }
    assert_int_equal(T.nlogged, logged + 1);
    assert_non_null(strstr(T.logged, "API: refused 127.0.0.1:"));
    assert_non_null(strstr(T.logged, "the listener holds 3 connections already (--api-max-conns)"));

    close(held[0]); /* a client gone: its place is free once the server sees it */
    run_ms(50);
    fd = raw_open(ok);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("after one closed: %s", buf);

    run_ms((int)HEAD_MS + 200); /* the two heads never came: closed, their places free */
    close(held[1]);
    close(held[2]);
    for (i = 0; i < 3; i++) held[i] = raw_open("GET /v1/images HTTP/1.1\r\n");
    run_ms(50);
    fd = raw_open(ok);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 503")) fail_msg("three held again, a fourth: %s", buf);
    for (i = 0; i < 3; i++) close(held[i]);
}

/* Framing a proxy in front could read otherwise (two Content-Lengths, a
 * signed one): 400, and the
 * connection closed, so that the bytes after it are never a request of
 * their own (request smuggling). libevent took the first length. */
static void test_framing_refused(void **state)
{
    /* (A HEAD: libevent reads no body for it, so an empty Content-Length
     * or a body it announces would leave bytes read as the next request.) */
    static const char *const cases[][3] = {
        {"POST", "Content-Length: 2\r\nContent-Length: 40", "Content-Length given twice"},
        {"POST", "Content-Length: +2", "Content-Length is not a number of bytes"},
        /* libevent read no body for these, and "{}" became the next request. */
        {"POST", "Transfer-Encoding: gzip", "a Transfer-Encoding other than chunked"},
        {"POST", "Transfer-Encoding: xchunked", "a Transfer-Encoding other than chunked"},
        {"POST", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
         "a Transfer-Encoding other than chunked"},
        /* A name with whitespace before its colon: libevent keeps it as a
         * name of its own, and a lenient proxy framed the body by it. */
        {"GET", "Content-Length : 2", "a header name holds a space"},
        {"GET", "Content-Length\t: 2", "a header name holds a space"},
        {"GET", "Transfer-Encoding : chunked", "a header name holds a space"},
        {"GET", "X(y): 1", "a header name holds a space or another byte"},
        /* (The answer to a HEAD has no body to hold the reason.) */
        {"HEAD", "Content-Length:", "HTTP/1.1 400"},
        {"HEAD", "Content-Length: 64", "HTTP/1.1 400"},
        {"HEAD", "Transfer-Encoding: chunked", "HTTP/1.1 400"},
    };
    static char buf[8192];

    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char req[512];
        const char *p;
        int fd, n = 0, post = strcmp(cases[k][0], "POST") == 0;
        /* A chunked body where the request says chunked (libevent reads
         * it so), else "{}". */
        int chunked = post && strstr(cases[k][1], "Transfer-Encoding: chunked") != NULL;
        snprintf(req, sizeof req, "%s /v1/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 TOKEN "\r\n%s\r\n\r\n%sGET /v1/images HTTP/1.1\r\nHost: x\r\n"
                 "Authorization: Bearer " TOKEN "\r\n\r\n", cases[k][0],
                 post ? "rollouts" : "images", cases[k][1],
                 chunked ? "2\r\n{}\r\n0\r\n\r\n" : post ? "{}" : "");
        fd = raw_open(req);
        raw_read(fd, buf, sizeof buf, 100);
        close(fd);
        for (p = buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++) n++;
        if (n != 1 || !strstr(buf, "HTTP/1.1 400") || !strstr(buf, cases[k][2]) ||
            !strstr(buf, "Connection: close")) {
            fail_msg("%s with %s: %s", cases[k][0], cases[k][1], buf);
        }
    }
    /* HEAD saying 0 is answered as ever (here the 405 of a path that
     * takes GET, HEAD and POST). */
    {
        int fd = raw_open("HEAD /v1/rollouts/1/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          TOKEN "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        raw_read(fd, buf, sizeof buf, 100);
        close(fd);
        if (!strstr(buf, "HTTP/1.1 405")) fail_msg("HEAD with Content-Length 0: %s", buf);
    }
}

/* HEAD wherever GET is (RFC 9110, 9.3.2): a GET's status and headers, its
 * Content-Length that of the GET's body, and no body (a trial had 405 for
 * HEAD /v1/images); the event stream, which has no end, takes GET only. */
static void test_head_as_get(void **state)
{
    static const char *const paths[] = {"/v1/images", "/v1/rollouts", "/v1/rollouts/1",
                                        "/v1/devices", "/v1/summary", "/v1/rollouts/99"};
    static char buf[8192], get[8192];

    (void)state;
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        char req[512], len[48];
        const char *body, *cl;

        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                 "\r\nConnection: close\r\n\r\n", paths[k]);
        raw_ask(req, get, sizeof get, 100);
        body = strstr(get, "\r\n\r\n");
        assert_non_null(body);
        snprintf(len, sizeof len, "Content-Length: %zu\r\n", strlen(body + 4));
        memcpy(req, "HEAD", 4); /* "HEAD" over "GET " */
        memmove(req + 4, req + 3, strlen(req + 3) + 1);
        req[4] = ' ';
        raw_ask(req, buf, sizeof buf, 100);
        cl = strstr(buf, "\r\n\r\n");
        if (strncmp(buf, get, 12) != 0 || !strstr(buf, len) || !cl || cl[4]) {
            fail_msg("HEAD %s: %s\n(the GET: %s)", paths[k], buf, get);
        }
    }
    raw_ask("HEAD /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
            "\r\nConnection: close\r\n\r\n", buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 405") || !strstr(buf, "Allow: GET\r\n")) {
        fail_msg("HEAD /v1/events: %s", buf);
    }
}

/* --http-host: a request sent to another name is answered 421 and closed
 * on every path (the tokenless ones, and before the token's check), as a
 * page that renamed the address (DNS rebinding) would send it; the names
 * given, localhost and an address are answered. (The downloads' handler
 * checks its own, and logs it: e2e_http_ota.) */
static void test_http_host(void **state)
{
    static const char *const refused[] = {
        "GET /metrics", "GET /health", "GET /v1/images", "GET /",
    };
    static const char *const answered[] = {"fleet.example:8071", "FLEET.example", "localhost",
                                           "127.0.0.1:9", "[::1]:8071"};
    static char buf[8192];
    char req[512], err[128];
    size_t k;

    (void)state;
    api_stop(T.api);
    assert_int_equal(http_hosts_parse(&T.hosts, "fleet.example", err, sizeof err), 0);
    start_api(NULL);
    for (k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        snprintf(req, sizeof req, "%s HTTP/1.1\r\nHost: evil.example:8071\r\nAuthorization: Bearer "
                 TOKEN "\r\n\r\n", refused[k]);
        raw_ask(req, buf, sizeof buf, 100);
        if (!strstr(buf, "HTTP/1.1 421 Misdirected Request\r\n") ||
            !strstr(buf, "Connection: close\r\n") ||
            !strstr(buf, "{\"error\":\"Host evil.example:8071 is not a name this server answers to")) {
            fail_msg("%s with Host evil.example: %s", refused[k], buf);
        }
    }
    for (k = 0; k < sizeof answered / sizeof answered[0]; k++) {
        snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                 answered[k]);
        raw_ask(req, buf, sizeof buf, 100);
        if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) fail_msg("Host %s: %s", answered[k], buf);
    }
    /* An absolute-form target's name is the one judged (RFC 9112, 3.2.2:
     * it stands over Host). */
    raw_ask("GET http://evil.example/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 421 ") || !strstr(buf, "Host evil.example is not a name")) {
        fail_msg("absolute-form target evil.example: %s", buf);
    }
    raw_ask("GET http://fleet.example:8071/health HTTP/1.1\r\nHost: evil.example\r\n"
            "Connection: close\r\n\r\n", buf, sizeof buf, 100);
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) fail_msg("absolute-form target fleet.example: %s", buf);
    /* Without names, any Host (a fleet's devices use any name for it). */
    api_stop(T.api);
    memset(&T.hosts, 0, sizeof T.hosts);
    start_api(NULL);
    raw_ask("GET /health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", buf,
            sizeof buf, 100);
    if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0) fail_msg("no --http-host, Host evil.example: %s", buf);
}

/* Host: an HTTP/1.1 request without one, or with two, is answered 400 and
 * closed (RFC 9112, 3.2), the request behind it never read; HTTP/1.0 may
 * leave it out (HAProxy's health check does). */
static void test_host_required(void **state)
{
    static const char *const cases[][2] = {
        {"", "an HTTP/1.1 request without Host; send Host: <the address the request is sent to>"},
        {"Host: x\r\nHost: y\r\n", "Host given twice; send it once"},
    };
    static char buf[4096];

    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char req[512];
        const char *p;
        int n = 0;

        snprintf(req, sizeof req, "GET /v1/images HTTP/1.1\r\n%sAuthorization: Bearer " TOKEN
                 "\r\n\r\nGET /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                 "\r\n\r\n", cases[k][0]);
        raw_ask(req, buf, sizeof buf, 100);
        /* Answers counted by their Date (the body says "HTTP/1.1"). */
        for (p = buf; (p = strstr(p, "\r\nDate: ")) != NULL; p++) n++;
        if (n != 1 || !strstr(buf, "HTTP/1.1 400") || !strstr(buf, "Connection: close") ||
            !strstr(buf, cases[k][1])) {
            fail_msg("case %zu: %s", k, buf);
        }
    }
    raw_ask("GET /v1/images HTTP/1.0\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", buf,
            sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.0 200")) fail_msg("HTTP/1.0 without Host: %s", buf);
}

/* CONNECT: libevent takes it for a tunnel's start (its answer had no
 * length, the connection stayed 60 s whatever Connection said, and the
 * request behind it was answered too: a hostile trial). 405 with its
 * length, with or without the token, and the connection closed at once. */
static void test_connect_refused(void **state)
{
    static const char *const auth[] = {"Authorization: Bearer " TOKEN "\r\n", ""};
    static char buf[4096];

    (void)state;
    for (size_t k = 0; k < sizeof auth / sizeof auth[0]; k++) {
        char req[512];
        const char *p;
        int fd, n = 0;

        snprintf(req, sizeof req, "CONNECT /v1/images HTTP/1.1\r\nHost: x\r\n%s\r\nGET /v1/images"
                 " HTTP/1.1\r\nHost: x\r\n%s\r\n", auth[k], auth[k]);
        fd = raw_open(req);
        raw_read(fd, buf, sizeof buf, 100);
        for (p = buf; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++) n++;
        if (n != 1 || !strstr(buf, "HTTP/1.1 405") || !strstr(buf, "Content-Length: ") ||
            !strstr(buf, "\r\nAllow: GET, HEAD, POST, PATCH, DELETE\r\n") ||
            !strstr(buf, "CONNECT is not a method of this API")) {
            fail_msg("CONNECT (%s): %s", k ? "no token" : "token", buf);
        }
        assert_int_equal(read(fd, buf, 1), 0); /* closed, not held for its timeout */
        close(fd);
    }
}

/* Bytes no request head holds (a tcpota device's HELLO, a TLS
 * ClientHello): 400 at once, saying where devices go; evhttp, waiting for
 * a line's end, kept such a client until its own timeout. */
static void raw_send_all(int fd, const char *p, size_t n);

static void test_not_http(void **state)
{
    static char buf[4096];
    int fd;

    (void)state;
    fd = raw_open("\x01\x00\x10tcpota hello, no line end");
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 400") || !strstr(buf, "Connection: close") ||
        !strstr(buf, "not an HTTP request: this is the API of tcpota serve (HTTP); a tcpota device"
                     " connects to its device port (tcpota serve --listen, default 8070)")) {
        fail_msg("binary bytes: %s", buf);
    }
    /* ... and the operator is told too. */
    assert_non_null(strstr(T.logged, "API: not an HTTP request from 127.0.0.1:"));
    assert_non_null(strstr(T.logged, "(byte 0x01: a tcpota device? it connects to the device port,"
                                     " --listen); answered 400, closing"));
    /* A DEL in a head not yet whole is no head's byte either: answered at
     * once, not after evhttp's wait for a line's end. */
    fd = raw_open("GET /v1/images HTTP/1.1\r\nHost: x\x7f");
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 400") || !strstr(buf, "not an HTTP request")) {
        fail_msg("a DEL in a head: %s", buf);
    }
    /* A TAB is a head's byte (between a header's name and value): a head
     * that holds one and comes in two pieces is answered as HTTP. */
    fd = raw_open("GET /health HTTP/1.1\r\nHost:\tlocalhost\r\n");
    run_ms(100);
    raw_send_all(fd, "\r\n", 2);
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a TAB in a head in two pieces: %s", buf);
    /* What the answer at once reads of its peer before the close is
     * bounded (HTTP_DRAIN_MAX): a peer that keeps sending must not hold the
     * loop. Here 1 MB waits: the server reads 64 KiB of it and closes with
     * the rest unread, which resets the connection (read whole, it would
     * be an orderly close). */
    {
        static char junk[1 << 20];
        size_t sent = 0;
        ssize_t k;
        int reset = 0;
        memset(junk, 0x01, sizeof junk);
        fd = raw_open("\x01");
        while (sent < sizeof junk && (k = send(fd, junk + sent, sizeof junk - sent,
                                               MSG_NOSIGNAL)) > 0) {
            sent += (size_t)k;
        }
        assert_true(sent > 2 * HTTP_DRAIN_MAX);
        /* The answer's FIN comes first (its shutdown), the reset behind it:
         * the socket's error says which (EPIPE after the FIN). */
        for (int tries = 0; tries < 50 && !reset; tries++) {
            int err = 0;
            socklen_t len = sizeof err;
            run_ms(10);
            assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
            reset = err == ECONNRESET || err == EPIPE;
        }
        close(fd);
        if (!reset) fail_msg("a peer sending 1 MB: the close was orderly, so all of it was read");
    }
}

/* Writes n bytes to the non-blocking fd, running the loop (the server is
 * ours) while the socket is full. */
static void raw_send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            run_ms(2);
            continue;
        }
        if (k <= 0) return; /* the server closed (a 413 read to its end comes first) */
        p += k;
        n -= (size_t)k;
    }
}

/* The status of an upload of GATE_BODY bytes whose head is head1, then
 * (after a pause, when head2) head2: the gate judges the connection by
 * its first head, however it came. */
#define GATE_BODY (200u << 10)
static int gate_upload(const char *head1, const char *head2)
{
    static char buf[4096];
    char *body = malloc(GATE_BODY);
    int fd, status = -1;

    assert_non_null(body);
    memset(body, 'g', GATE_BODY);
    fd = raw_open(head1);
    if (head2) {
        run_ms(300);
        raw_send_all(fd, head2, strlen(head2));
    }
    raw_send_all(fd, body, GATE_BODY);
    raw_read(fd, buf, sizeof buf, 200);
    close(fd);
    free(body);
    if (strncmp(buf, "HTTP/1.1 ", 9) == 0) status = atoi(buf + 9);
    return status;
}

/* The gate's rule, where --max-image is larger than the 64 KiB a
 * connection without the token may send: the token, whole and right, in
 * the first Authorization line of the first head lets a body be large;
 * a wrong token does not; a head cut inside that line, or written in lower
 * case, is the same head; one whose first 8 KiB hold no Authorization is
 * answered, not held. */
static void test_gate_rules(void **state)
{
    static char pad[9000 + 64], buf[4096];
    char head[512];
    int fd, st;
    const char *up = "POST /v1/images?version=%s&model=m HTTP/1.1\r\nHost: x\r\n%s"
                     "Content-Length: 204800\r\nConnection: close\r\n\r\n";

    (void)state;
    api_stop(T.api);
    T.max_image = 300u << 10;
    start_api(NULL);

    snprintf(head, sizeof head, up, "7.0.1", "Authorization: Bearer " TOKEN "\r\n");
    st = gate_upload(head, NULL);
    if (st == 413 || st < 0) fail_msg("an upload with the token: %d", st);
    snprintf(head, sizeof head, up, "7.0.2", "authorization: bearer " TOKEN "\r\n");
    st = gate_upload(head, NULL);
    if (st == 413 || st < 0) fail_msg("an upload with the header in lower case: %d", st);
    /* Cut inside the Authorization line: the gate waits for its end. */
    snprintf(head, sizeof head, "POST /v1/images?version=7.0.3&model=m HTTP/1.1\r\nHost: x\r\n"
             "Authorization: Bearer %.20s", TOKEN);
    {
        char rest[200];
        snprintf(rest, sizeof rest, "%s\r\nContent-Length: 204800\r\nConnection: close\r\n\r\n",
                 TOKEN + 20);
        st = gate_upload(head, rest);
    }
    if (st == 413 || st < 0) fail_msg("an upload whose head was cut in its token: %d", st);
    snprintf(head, sizeof head, up, "7.0.4", "Authorization: Bearer nope\r\n");
    st = gate_upload(head, NULL);
    if (st != 401) fail_msg("an upload with a wrong token: %d, not 401", st);

    /* 9,000 bytes of header before Authorization: judged without the
     * token at 8 KiB (a small body), and answered at once, not held. */
    memset(pad, 'p', 9000);
    pad[9000] = 0;
    {
        char *req = malloc(12000);
        assert_non_null(req);
        snprintf(req, 12000, "GET /v1/images HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nAuthorization: "
                 "Bearer " TOKEN "\r\nConnection: close\r\n\r\n", pad);
        fd = raw_open("");
        raw_send_all(fd, req, strlen(req));
        free(req);
        raw_read(fd, buf, sizeof buf, 200);
        close(fd);
    }
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a head with 9,000 bytes before its token: %.200s", buf);
}

/* A connection without the token: a body larger than it takes, or chunked
 * on an API path, is answered at once, before a byte of it (an API path
 * 401, another 413); a request or body that trickles is cut API_WATCH_MS
 * (2 x HEAD_MS here) after its head or the last answer, as the first
 * request or a later one; whole requests in time are served, a keep-alive
 * one after another. */
static void test_tokenless_bodies(void **state)
{
    static char buf[4096];
    int fd, i, logged;
    ssize_t k;

    (void)state;
    /* 2^40 bytes declared: answered at once, without the body. */
    logged = T.nlogged;
    fd = raw_open("POST /v1/images?version=1.0&model=m HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 1099511627776\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 300);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 401") || !strstr(buf, "WWW-Authenticate: Bearer realm=") ||
        !strstr(buf, "missing or wrong API token: send Authorization: Bearer")) {
        fail_msg("2^40 bytes declared without the token: %s", buf);
    }
    assert_int_equal(T.nlogged, logged + 1);
    assert_non_null(strstr(T.logged, "API: refused 127.0.0.1:"));
    assert_non_null(strstr(T.logged, "without the API's token that declares a body (larger than"
                                     " such a request takes); answered 401 before reading it"));
    /* A wrong token is no token: the same answer, before a byte of the
     * body (a mutation campaign: the gate that took any Authorization
     * header as the token, letting its connection send up to --max-image,
     * survived every test). The one-a-second limit on the line: past it. */
    run_ms(1100);
    logged = T.nlogged;
    fd = raw_open("POST /v1/images?version=1.0&model=m HTTP/1.1\r\nHost: x\r\n"
                  "Authorization: Bearer 00000000000000000000000000000000\r\n"
                  "Content-Length: 1099511627776\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 300);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 401") || !strstr(buf, "WWW-Authenticate: Bearer realm=")) {
        fail_msg("2^40 bytes declared with a wrong token: %s", buf);
    }
    assert_int_equal(T.nlogged, logged + 1);
    assert_non_null(strstr(T.logged, "answered 401 before reading it"));
    fd = raw_open("PATCH /v1/devices/d1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 300);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 401")) fail_msg("a chunked body without the token: %s", buf);
    fd = raw_open("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 300);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 413") ||
        !strstr(buf, "a request without the API's token takes a body of at most 1024 bytes")) {
        fail_msg("100,000 bytes declared to /health: %s", buf);
    }

    /* A small body, a byte at a time: cut at 2 x HEAD_MS, logged; with a
     * wrong token too. */
    for (int wrong = 0; wrong < 2; wrong++) {
        run_ms(1100); /* the line's one-a-second limit */
        logged = T.nlogged;
        fd = raw_open(wrong ? "POST /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                              "00000000000000000000000000000000\r\nContent-Length: 1000\r\n\r\n"
                            : "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
        for (i = 0; i < 12; i++) { /* a byte every 250 ms: 3 s in all */
            run_ms(250);
            (void)send(fd, "x", 1, MSG_NOSIGNAL);
        }
        k = read(fd, buf, sizeof buf);
        assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
        close(fd);
        assert_int_equal(T.nlogged, logged + 1);
        assert_non_null(strstr(T.logged, ", without the API's token, sent no whole request within"
                                         " 2 s (a request or its body trickling); closing"));
    }

    /* A tokenless answer ends its connection: one kept alive would keep
     * small bodies, and an upload after it met libevent's HTML 413 however
     * right its token (a security review: /health, then an upload, with
     * curl's --next). With the token, it stays open. */
    fd = raw_open("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 200") || !strstr(buf, "Connection: close")) {
        fail_msg("a tokenless /health: %s", buf);
    }
    k = read(fd, buf, sizeof buf);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
    close(fd);
    /* Keep-alive (downloads): two whole requests served; a third
     * trickling is cut. */
#define OTA_GET "GET /ota/esp32 HTTP/1.1\r\nHost: x\r\n\r\n"
    fd = raw_open(OTA_GET);
    raw_read(fd, buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a first download: %s", buf);
    run_ms(1500);
    raw_send_all(fd, OTA_GET, strlen(OTA_GET));
    raw_read(fd, buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a second download 1.5 s later: %s", buf);
    run_ms(1500); /* past 2 s from the first answer: the second one timed it anew */
    raw_send_all(fd, "GET /ota/esp32 HTTP/1.1\r\n", strlen("GET /ota/esp32 HTTP/1.1\r\n"));
    for (i = 0; i < 12; i++) {
        run_ms(250);
        (void)send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL);
    }
    k = read(fd, buf, sizeof buf);
    assert_true(k == 0 || (k < 0 && errno == ECONNRESET));
    close(fd);
#define HEALTH_TOKEN "GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN "\r\n\r\n"
    fd = raw_open(HEALTH_TOKEN);
    raw_read(fd, buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 200") || strstr(buf, "Connection: close")) {
        fail_msg("a /health with the token: %s", buf);
    }
    raw_send_all(fd, HEALTH_TOKEN, strlen(HEALTH_TOKEN));
    raw_read(fd, buf, sizeof buf, 100);
    if (!strstr(buf, "HTTP/1.1 200")) fail_msg("a second /health with the token: %s", buf);
    close(fd);
}

/* Two Authorization headers: 400, neither taken (libevent hands over the
 * first; a proxy in front may have checked the other). The token first
 * and a wrong one second was served before. */
static void test_authorization_twice(void **state)
{
    static char buf[4096];
    int fd;

    (void)state;
    fd = raw_open("GET /v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                  "\r\nAuthorization: Bearer x\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 100);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 400") || !strstr(buf, "Authorization: given twice; send it once") ||
        !strstr(buf, "Connection: close")) {
        fail_msg("two Authorization headers: %s", buf);
    }
}

/* Two Tcpota-Manifest headers: 400 naming it, the image not stored
 * (libevent handed over the first: good then bad was taken). */
static void test_manifest_twice(void **state)
{
    static char buf[4096];
    int fd;

    (void)state;
    fd = raw_open("POST /v1/images?version=7.7.7&model=twice HTTP/1.1\r\nHost: x\r\nAuthorization: "
                  "Bearer " TOKEN "\r\nTcpota-Manifest: AAAA\r\nTcpota-Manifest: AAAA\r\n"
                  "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    raw_read(fd, buf, sizeof buf, 200);
    close(fd);
    if (!strstr(buf, "HTTP/1.1 400") ||
        !strstr(buf, "the Tcpota-Manifest header is given twice; send it once")) {
        fail_msg("two Tcpota-Manifest headers: %s", buf);
    }
    expect_error("GET", "/v1/images/7.7.7", NULL, 404, NULL); /* not stored */
}

/* A 405 names the methods the path takes, in the Allow header RFC 9110
 * asks for, as the error's text does. */
static void test_not_allowed_names_methods(void **state)
{
    static const char *const cases[][3] = {
        {"PUT /v1/images", "Allow: GET, HEAD, POST\r\n", "/v1/images takes GET, HEAD and POST"},
        {"POST /v1/summary", "Allow: GET, HEAD\r\n", "/v1/summary takes GET and HEAD"},
        {"GET /v1/devices/dev-1/secret", "Allow: POST\r\n", "/v1/devices/{id}/secret takes POST"},
        {"PUT /v1/devices/dev-1", "Allow: GET, HEAD, PATCH, DELETE\r\n",
         "/v1/devices/{id} takes GET, HEAD, PATCH and DELETE"},
        {"GET /v1/rollouts/1/pause", "Allow: POST\r\n", "/v1/rollouts/{id}/pause takes POST"},
    };
    static char buf[8192];

    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char req[512];
        int fd;
        snprintf(req, sizeof req, "%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                 "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", cases[k][0]);
        fd = raw_open(req);
        raw_read(fd, buf, sizeof buf, 50);
        close(fd);
        if (!strstr(buf, "HTTP/1.1 405") || !strstr(buf, cases[k][1]) || !strstr(buf, cases[k][2])) {
            fail_msg("%s: %s", cases[k][0], buf);
        }
    }
}

static void test_dashboard_files(void **state)
{
    static char buf[65536];
    int fd;

    /* The page needs no token (it holds no data) and forbids foreign scripts. */
    fd = raw_open("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 50);
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "Content-Type: text/html"));
    assert_non_null(strstr(buf, "Content-Security-Policy: default-src 'self'"));
    assert_non_null(strstr(buf, "frame-ancestors 'none'"));
    /* No sniffing a file into a script, no page address sent on (a
     * mutation review removed each header and no test failed). */
    assert_non_null(strstr(buf, "X-Content-Type-Options: nosniff"));
    assert_non_null(strstr(buf, "Referrer-Policy: no-referrer"));
    assert_non_null(strstr(buf, "<script src=\"/dash/app.js\""));
    /* Each file closes its connection though the client keeps it: one that
     * began without the token keeps small bodies, and the page's own
     * upload must not go on it (a 413). */
    fd = raw_open("GET /dash/app.js HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 50);
    close(fd);
    assert_non_null(strstr(buf, "Content-Type: text/javascript"));
    assert_non_null(strstr(buf, "X-Content-Type-Options: nosniff"));
    assert_non_null(strstr(buf, "Connection: close"));
    assert_non_null(strstr(buf, "sessionStorage"));
    fd = raw_open("GET /dash/nope.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 50);
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 404"));
    fd = raw_open("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    raw_read(fd, buf, sizeof buf, 50);
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 405"));
    /* HEAD: the GET's headers, its length, and no body, so that the next
     * answer on the connection starts where the client expects it (libevent
     * wrote the body after the headers, with no length). Each listener's
     * reply: the page, a 401 of the API, /metrics. */
    {
        static const char *const heads[] = {"/", "/v1/images", "/metrics"};
        for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
            char req[256];
            const char *end, *cl;
            snprintf(req, sizeof req, "HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET /dash/nope.js"
                     " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", heads[k]);
            fd = raw_open(req);
            raw_read(fd, buf, sizeof buf, 50);
            close(fd);
            end = strstr(buf, "\r\n\r\n");
            assert_non_null(end);
            /* The page's files close their connection: nothing after. */
            if (memmem(buf, (size_t)(end - buf), "Connection: close", 17) ? end[4] != 0
                                                 : strncmp(end + 4, "HTTP/1.1 404", 12) != 0) {
                fail_msg("HEAD %s: a body after the headers: %.80s", heads[k], end + 4);
            }
            cl = strstr(buf, "Content-Length: ");
            assert_true(cl && cl < end && atoi(cl + 16) > 0);
        }
    }
    /* Only "/" and "/dash/" are the page's: the API keeps its token. */
    assert_int_equal(http_full("GET", "/dashboard", NULL, NULL, NULL, NULL, 0, NULL), 401);
    assert_non_null(dash_find("/dash/style.css"));
    assert_null(dash_find("/dash/../api.token"));
}

static void test_events(void **state)
{
    static char buf[8192];
    int fd, more[API_STREAMS_MAX], i;

    assert_int_equal(http_full("GET", "/v1/events", NULL, NULL, NULL, NULL, 0, NULL), 401);
    expect_error("POST", "/v1/events", "{}", 405, NULL);
    fd = raw_open(EVENTS_REQ);
    raw_read(fd, buf, sizeof buf, 30);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "Content-Type: text/event-stream"));
    assert_non_null(strstr(buf, "retry: "));
    api_notify_device(T.api, "dev-1", "downloading", 50, 200, NULL);
    raw_read(fd, buf, sizeof buf, 30);
    assert_non_null(strstr(buf, "event: device\ndata: {"));
    assert_non_null(strstr(buf, "\"id\":\"dev-1\""));
    assert_non_null(strstr(buf, "\"percent\":25"));
    /* A device's text cannot end the event early or forge another one. */
    api_notify_device(T.api, "x\n\nevent: change", "failed", 0, 0, "a\nb");
    raw_read(fd, buf, sizeof buf, 30);
    assert_null(strstr(buf, "\nevent: change"));
    assert_non_null(strstr(buf, "x\\n\\nevent: change"));
    /* A change made through the API is announced. */
    assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"g\"}", NULL), 200);
    raw_read(fd, buf, sizeof buf, 30);
    assert_non_null(strstr(buf, "event: change\n"));
    /* At most API_STREAMS_MAX at once; one that closes frees its place. */
    for (i = 0; i < (int)API_STREAMS_MAX - 1; i++) more[i] = raw_open(EVENTS_REQ);
    raw_read(more[0], buf, sizeof buf, 50);
    {
        /* Read for 50 ms, not until the answer ends: a stream taken past
         * the limit would never end (a mutation campaign: the test hung to
         * ctest's timeout instead of failing). */
        int over = raw_open(EVENTS_REQ), tries;
        raw_read(over, buf, sizeof buf, 50);
        for (tries = 0; tries < 40 && !strstr(buf, "HTTP/1.1 "); tries++) {
            raw_read(over, buf, sizeof buf, 50); /* a slow runner: up to 2 s for the head */
        }
        close(over);
        if (!strstr(buf, "HTTP/1.1 503")) {
            fail_msg("a stream past API_STREAMS_MAX: %s", buf);
        }
    }
    close(fd);
    run_ms(30);
    more[API_STREAMS_MAX - 1] = raw_open(EVENTS_REQ);
    raw_read(more[API_STREAMS_MAX - 1], buf, sizeof buf, 50);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    api_notify_device(T.api, "dev-2", "updated", 1, 1, NULL);
    run_ms(20);
    for (i = 0; i < (int)API_STREAMS_MAX; i++) close(more[i]);
    /* teardown stops the API with closed and open streams: no leak, no crash */
}

/* A dashboard that stops reading is cut once API_STREAM_BACKLOG bytes wait
 * for it, rather than the server keeping every event for it in memory: its
 * connection is closed with what waited (it was left open, holding them,
 * for as long as the client kept it), and the log says so. */
static void test_events_slow_reader_cut(void **state)
{
    static char buf[1 << 16], reason[4096];
    int fd, i, eof = 0, logged = T.nlogged;
    ssize_t k;

    fd = raw_open(EVENTS_REQ);
    raw_read(fd, buf, sizeof buf, 30);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_int_equal(T.api->nstreams, 1);
    memset(reason, 'r', sizeof reason - 1);
    /* 12 MB of events, never read: more than the socket buffers hold. */
    for (i = 0; i < 3000 && T.api->nstreams; i++) {
        api_notify_device(T.api, "dev-1", "downloading", 1, 2, reason);
        if (i % 50 == 0) run_ms(1);
    }
    assert_int_equal(T.api->nstreams, 0);
    assert_int_equal(T.nlogged, logged + 1);
    assert_non_null(strstr(T.logged, "API: event stream of 127.0.0.1:"));
    assert_non_null(strstr(T.logged, " cut: 256 KiB of events waited for it unread"));
    /* What the kernel holds arrives, then the end: the server let go. */
    for (i = 0; i < 200 && !eof; i++) {
        run_ms(5);
        while ((k = read(fd, buf, sizeof buf)) > 0) {
        }
        eof = k == 0 || (k < 0 && errno == ECONNRESET);
    }
    assert_true(eof);
    close(fd);
    run_ms(10);
}

static void test_device_show_patch(void **state)
{
    json_t *j = NULL, *h;

    assert_int_equal(http("GET", "/v1/devices/dev%2D1", NULL, &j), 200);
    assert_string_equal(sget(j, "id"), "dev-1");
    h = json_object_get(j, "history");
    assert_int_equal(json_array_size(h), 2);
    assert_int_equal(iget(json_array_get(h, 0), "at"), 200);
    assert_string_equal(sget(json_array_get(h, 0), "state"), "rolled-back");
    assert_string_equal(sget(json_array_get(h, 0), "detail"), "health check failed");
    sget(json_array_get(h, 0), "image");
    json_decref(j);
    assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"canary\"}", &j), 200);
    assert_string_equal(sget(j, "group"), "canary");
    json_decref(j);
    assert_string_equal(T.f.devs[0].group, "canary");
    assert_int_equal(T.changes, 1);
    expect_change("device dev-1 moved to group canary");
    assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"\"}", NULL), 200);
    assert_string_equal(T.f.devs[0].group, "");
    expect_error("PATCH", "/v1/devices/dev-1", "{\"group\": \"abcdefghijabcdefghijabcdefghijabc\"}",
                 400, "group");
    expect_error("PATCH", "/v1/devices/dev-1", "{\"group\": \"tab\\there\"}", 400, "group");
    expect_error("PATCH", "/v1/devices/dev-1", "{\"group\": 5}", 400, "group");
    expect_error("PATCH", "/v1/devices/dev-1", "{}", 400, "group");
    assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{}", &j), 400);
    assert_non_null(strstr(sget(j, "error"), "group is missing; PATCH takes {\"group\": "));
    json_decref(j);
    expect_error("PATCH", "/v1/devices/dev-1", "{\"group\": \"a\", \"x\": 1}", 400, "x");
    expect_error("PATCH", "/v1/devices/dev-1", "{\"group\": ", 400, "body");
    {
        /* A NUL escaped in a string: said so, not jansson's flag name. */
        j = NULL;
        assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"a\\u0000b\"}", &j), 400);
        assert_string_equal(sget(j, "error"), "a string of the body holds \\u0000 (a NUL byte), which"
                            " no field takes (line 1, column 20); leave it out");
        json_decref(j);
    }
    expect_error("PATCH", "/v1/devices/nobody", "{\"group\": \"a\"}", 404, "id"); /* not the group's */
    expect_error("GET", "/v1/devices/dev%001", NULL, 400, "id");
    {
        /* 65 escaped bytes: cut to the longest encoded id (3 x 64), the
         * start would decode to a valid 64-byte id. */
        char path[16 + 3 * 65 + 1] = "/v1/devices/";
        for (int i = 0; i < 65; i++) strcat(path, "%41");
        expect_error("GET", path, NULL, 400, "id");
    }
    assert_int_equal(T.changes, 2);
}

static void test_secret(void **state)
{
    json_t *j = NULL;
    char hex[65];
    char uri[200];

    assert_int_equal(http("POST", "/v1/devices/new-dev/secret", NULL, &j), 201);
    assert_string_equal(sget(j, "id"), "new-dev");
    assert_int_equal(strlen(sget(j, "secret")), 64);
    assert_int_equal(T.secrets, 1);
    hex_of(T.secret, hex);
    assert_string_equal(sget(j, "secret"), hex);
    assert_string_equal(T.f.secret_id, "new-dev");
    assert_int_equal(T.f.secret_len, 32);
    assert_memory_equal(T.f.secret, T.secret, 32);
    /* What it did: a new id's first secret (the CLI says it so). */
    assert_true(json_is_false(json_object_get(j, "replaced")));
    assert_true(json_is_false(json_object_get(j, "registered")));
    json_decref(j);
    assert_int_equal(http("POST", "/v1/devices/new-dev/secret", NULL, &j), 201);
    assert_true(json_is_true(json_object_get(j, "replaced")));
    json_decref(j);
    assert_int_equal(http("POST", "/v1/devices/dev-1/secret", NULL, &j), 201);
    assert_true(json_is_false(json_object_get(j, "replaced")));
    assert_true(json_is_true(json_object_get(j, "registered")));
    json_decref(j);
    snprintf(uri, sizeof uri, "/v1/devices/%065d/secret", 7);
    expect_error("POST", uri, NULL, 400, "id");
    expect_error("POST", "/v1/devices/a%09b/secret", NULL, 400, "id");
    assert_int_equal(T.secrets, 3);
    /* an id as a device sends it, with a space: it can be named */
    assert_int_equal(http("POST", "/v1/devices/a%20b/secret", NULL, NULL), 201);
    assert_string_equal(T.f.secret_id, "a b");
}

/* DELETE /v1/devices/{id} (the operator's "device rm"): what it removed is
 * said; a secret removed is dropped from the server's memory before the
 * answer (on_secret with no bytes); an id with neither is a 404; it takes
 * no body and no parameter. */
static void test_device_delete(void **state)
{
    json_t *j = NULL;
    size_t before = T.f.ndevs;

    (void)state;
    assert_int_equal(http("DELETE", "/v1/devices/dev%2D1", NULL, &j), 200);
    assert_string_equal(sget(j, "id"), "dev-1");
    assert_true(json_is_true(json_object_get(j, "registered")));
    assert_true(json_is_false(json_object_get(j, "secret")));
    json_decref(j);
    assert_int_equal(T.f.ndevs, before - 1);
    assert_null(fake_dev("dev-1"));
    assert_int_equal(T.unsecrets, 0);
    expect_change("device dev-1 removed from the registry");
    expect_error("DELETE", "/v1/devices/dev-1", NULL, 404, "id");
    /* An id with a secret that never checked in: its secret goes. */
    assert_int_equal(http("POST", "/v1/devices/new-dev/secret", NULL, NULL), 201);
    assert_int_equal(http("DELETE", "/v1/devices/new-dev", NULL, &j), 200);
    assert_true(json_is_false(json_object_get(j, "registered")));
    assert_true(json_is_true(json_object_get(j, "secret")));
    json_decref(j);
    assert_int_equal(T.unsecrets, 1);
    assert_string_equal(T.unsecret_id, "new-dev");
    expect_change("device new-dev: its secret removed (it had not checked in)");
    /* A registered device with a secret: both said. */
    assert_int_equal(http("POST", "/v1/devices/dev-2/secret", NULL, NULL), 201);
    expect_error("DELETE", "/v1/devices/dev-2", "{}", 400, NULL);
    expect_error("DELETE", "/v1/devices/dev-2?force=1", NULL, 400, "force");
    assert_non_null(fake_dev("dev-2"));
    assert_int_equal(http("DELETE", "/v1/devices/dev-2", NULL, &j), 200);
    assert_true(json_is_true(json_object_get(j, "registered")));
    assert_true(json_is_true(json_object_get(j, "secret")));
    json_decref(j);
    assert_int_equal(T.unsecrets, 2);
    expect_change("device dev-2 removed from the registry, its secret with it");
    expect_error("DELETE", "/v1/devices/a%09b", NULL, 400, "id");
}

static void test_store_fails(void **state)
{
    json_t *j = NULL;

    T.f.fail_op = STORE_IMAGE_LIST;
    T.f.fail_rc = STORE_E_IO;
    assert_int_equal(http("GET", "/v1/images", NULL, &j), 500);
    assert_non_null(strstr(sget(j, "error"), "disk full (fake)"));
    json_decref(j);
    T.f.fail_op = STORE_DEVICE_SET_GROUP;
    assert_int_equal(http("PATCH", "/v1/devices/dev-1", "{\"group\": \"a\"}", NULL), 500);
    assert_int_equal(T.changes, 0);
}

/* A client that leaves while its store request is in flight, and a stop
 * with requests in flight: no crash, no leak (ASan). */
static void test_client_gone(void **state)
{
    static const char req[] = "GET /v1/devices/dev-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN
                              "\r\n\r\n";
    struct sockaddr_in sa;
    int fd, i;

    T.f.hold = 1;
    for (i = 0; i < 2; i++) {
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons(T.port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)sizeof req - 1);
        run_ms(50);
        assert_non_null(T.f.head); /* the request waits in the store */
        if (i == 0) {
            close(fd);
            run_ms(50);
            T.f.hold = 0;
            fake_run(-1, 0, NULL);
            run_ms(50);
            assert_null(T.f.head);
            T.f.hold = 1;
        } else {
            api_stop(T.api); /* detaches it; teardown's store_close completes it */
            T.api = NULL;
            close(fd);
        }
    }
}

static void test_token_file(void **state)
{
    char tok[API_TOKEN_HEX + 1], again[API_TOKEN_HEX + 1], err[512], path[128];
    struct stat st;
    FILE *f;

    assert_int_equal(api_token_load_or_create(T.dir, tok, sizeof tok, err, sizeof err), 0);
    assert_int_equal(strlen(tok), 64);
    snprintf(path, sizeof path, "%s/api.token", T.dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), 0);
    assert_string_equal(tok, again);
    chmod(path, 0644);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    /* Readable by the group only, or by others only: refused as well. */
    chmod(path, 0640);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    chmod(path, 0604);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    chmod(path, 0600);
    f = fopen(path, "w");
    fputs("not a token\n", f);
    fclose(f);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, "hex"));
    /* What is wrong is said: an editor's byte-order mark first. */
    f = fopen(path, "w");
    fputs("\xef\xbb\xbf" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, ": byte 1 is 0xef, not a lowercase hex digit (an editor's byte-order"
                                " mark, a space, capitals?); write the token back as it was, or"
                                " remove the file (a new token is created)"));
    /* The right length, but not all lowercase hex digits. */
    f = fopen(path, "w");
    fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX\n", f);
    fclose(f);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, "hex"));
    unlink(path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(api_token_load_or_create(T.dir, again, sizeof again, err, sizeof err), -1);
    assert_non_null(strstr(err, "regular"));
    rmdir(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_and_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_query_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_twice_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_nul_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_images_list_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_by_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_unsigned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_raced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_repair_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_after_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_signed_without_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_manifest_for_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_create_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_list_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollout_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_show_patch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dashboard_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_allowed_names_methods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_framing_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_limit_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_as_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authorization_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenless_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_slow_reader_cut, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
