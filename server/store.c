/* store.c - the backend-independent half of the fleet store (store.h):
 * dispatch through the backend's table, requests, and the names the API and
 * the CLI print. */
#include "store.h"
#include "metrics.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Indexed by enum store_dev_state; the API's words (docs/api.md). */
static const char *const state_names[STORE_ST_COUNT] = {
    "seen",       "up-to-date",  "waiting",     "offered",  "downloading", "verified",
    "updated",    "rolled-back", "boot-failed", "declined", "failed",
};

/* Indexed by enum rollout_state. */
static const char *const rollout_state_names[] = {"active", "paused", "halted", "cancelled"};

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Requests submitted and not finished, and when the store last finished
 * one (or got one while it had none): the loop's view of whether the
 * store answers (store_waiting_s). Loop thread only. */
static unsigned long pending;
static double progress_at;

int store_submit(struct store *st, struct store_req *r)
{
    int rc;

    r->submitted = mono_s();
    rc = st->vt->submit(st, r);
    if (rc == 0 && pending++ == 0) {
        progress_at = r->submitted;
    }
    return rc;
}

void store_req_finished(const struct store_req *r)
{
    enum metrics_store_op op = r->op == STORE_CHECKIN  ? METRICS_STORE_CHECKIN
                               : r->op == STORE_EVENTS ? METRICS_STORE_EVENTS
                                                       : METRICS_STORE_OTHER;

    progress_at = mono_s();
    if (pending) {
        pending--;
    }
    metrics_store_latency(op, progress_at - r->submitted);
}

static atomic_int down;
/* When a backend's database last answered a statement (mono_s() in
 * microseconds; any thread): a request of many statements (an image of
 * hundreds of MB fetched in chunks) is slow, not hung. */
static atomic_llong answered_us;

/* The loop dropped a hung database's connection, and nothing answered
 * since: down, as for GET /health, until something does. */
static atomic_int cut;

void store_note_answer(int statement)
{
    atomic_store(&answered_us, (long long)(mono_s() * 1e6));
    if (statement) {
        atomic_store(&cut, 0);
    }
}

void store_note_cut(void)
{
    atomic_store(&cut, 1);
}

void store_set_down(int on)
{
    atomic_store(&down, on);
}

int store_down(void)
{
    return atomic_load(&down) || atomic_load(&cut);
}

double store_waiting_s(void)
{
    double answered = (double)atomic_load(&answered_us) / 1e6;

    return pending ? mono_s() - (answered > progress_at ? answered : progress_at) : 0;
}

double store_stuck_s(void)
{
    double waited = store_waiting_s();

    return waited > STORE_STUCK_S ? waited : 0;
}

unsigned long store_pending(void)
{
    return pending;
}

void store_close(struct store *st)
{
    if (st) {
        st->vt->close(st);
    }
}

/* Each record follows the request in one allocation (store_req_new). */
_Static_assert(sizeof(struct store_req) % _Alignof(struct store_image) == 0 &&
                   sizeof(struct store_req) % _Alignof(struct store_rollout) == 0 &&
                   sizeof(struct store_req) % _Alignof(struct store_device) == 0,
               "a record after the request would be misaligned");

struct store_req *store_req_new(enum store_op op, store_done_fn done, void *arg)
{
    int image = op == STORE_IMAGE_ADD || op == STORE_IMAGE_GET || op == STORE_IMAGE_RM;
    int rollout = op == STORE_ROLLOUT_CREATE || op == STORE_ROLLOUT_GET || op == STORE_ROLLOUT_SET;
    int device = op == STORE_DEVICE_GET || op == STORE_DEVICE_SET_GROUP ||
                 op == STORE_DEVICE_RETRY || op == STORE_DEVICE_DELETE ||
                 op == STORE_SECRET_SET;
    size_t record = image     ? sizeof(struct store_image)
                    : rollout ? sizeof(struct store_rollout)
                    : device  ? sizeof(struct store_device)
                              : 0;
    struct store_req *r = calloc(1, sizeof(*r) + record);

    if (!r) {
        return NULL;
    }
    r->op = op;
    r->done = done;
    r->arg = arg;
    r->err = "";
    if (image) {
        r->u.image.img = (struct store_image *)(void *)(r + 1);
    } else if (rollout) {
        r->u.rollout.r = (struct store_rollout *)(void *)(r + 1);
    } else if (device) {
        r->u.device.dev = (struct store_device *)(void *)(r + 1);
    }
    return r;
}

static int is_list(enum store_op op)
{
    return op == STORE_IMAGE_LIST || op == STORE_ROLLOUT_LIST || op == STORE_DEVICE_LIST ||
           op == STORE_SECRET_LIST;
}

void store_req_reset(struct store_req *r)
{
    /* Only the ops that own these fields allocate them; the union would
     * alias them with other ops' inputs otherwise. */
    if (r->op == STORE_DEVICE_GET) {
        free(r->u.device.history);
        r->u.device.history = NULL;
        r->u.device.nhistory = 0;
    }
    if (r->op == STORE_SECRET_LIST && r->u.list.rows) { /* secrets: not left in freed memory */
        sodium_memzero(r->u.list.rows, r->u.list.n * sizeof(struct store_secret));
    }
    if (is_list(r->op)) {
        free(r->u.list.rows);
        r->u.list.rows = NULL;
        r->u.list.n = 0;
    }
    if (r->op == STORE_SUMMARY) {
        free(r->u.summary.rows);
        r->u.summary.rows = NULL;
        r->u.summary.n = 0;
    }
    r->rc = STORE_OK;
    store_err_clear(r);
}

void store_req_free(struct store_req *r)
{
    if (!r) {
        return;
    }
    store_req_reset(r);
    if (r->op == STORE_CHECKIN) {
        free(r->u.checkin.out);
    }
    if (r->op == STORE_EVENTS) {
        for (size_t i = 0; r->u.events.items && i < r->u.events.n; i++) {
            free(r->u.events.items[i].reason);
        }
        free(r->u.events.items);
    }
    if (r->op == STORE_SEEN) {
        free(r->u.seen.ids);
    }
    free(r->err_room);
    free(r);
}

int store_req_kept(const struct store_req *r)
{
    return r->op == STORE_EVENT || r->op == STORE_EVENTS;
}

int store_req_durable(const struct store_req *r)
{
    size_t i;

    switch (r->op) {
    case STORE_CHECKIN:
        return r->u.checkin.report_id != NULL;
    case STORE_EVENT:
        return r->u.event.durable;
    case STORE_EVENTS:
        /* Items missing: refused by store_run_events, not read here. */
        for (i = 0; r->u.events.items && i < r->u.events.n; i++) {
            if (r->u.events.items[i].durable) {
                return 1;
            }
        }
        return 0;
    case STORE_IMAGE_ADD:
    case STORE_IMAGE_RM:
    case STORE_ROLLOUT_CREATE:
    case STORE_ROLLOUT_SET:
    case STORE_DEVICE_SET_GROUP:
    case STORE_DEVICE_RETRY:
    case STORE_DEVICE_DELETE:
    case STORE_SECRET_SET:
        return 1;
    default:
        return 0;
    }
}

const char *store_state_name(enum store_dev_state s)
{
    if ((unsigned)s >= STORE_ST_COUNT) {
        return "unknown";
    }
    return state_names[s];
}

int store_state_parse(const char *name)
{
    int i;

    for (i = 0; name && i < (int)STORE_ST_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *store_rollout_state_name(enum rollout_state s)
{
    if ((unsigned)s >= sizeof(rollout_state_names) / sizeof(rollout_state_names[0])) {
        return "unknown";
    }
    return rollout_state_names[s];
}

const char *store_rollout_use_name(enum rollout_state s, int superseded)
{
    return superseded && s != ROLLOUT_STATE_CANCELLED ? "superseded" : store_rollout_state_name(s);
}

/* ---- what every backend's ops use ---- */

int store_err_set(struct store_req *r, int rc, const char *fmt, ...)
{
    va_list ap;

    r->rc = rc;
    if (!r->err_room && !(r->err_room = malloc(STORE_ERR_MAX))) {
        r->err = "out of memory (while saying what failed)";
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(r->err_room, STORE_ERR_MAX, fmt, ap);
    va_end(ap);
    r->err = r->err_room;
    return rc;
}

void store_err_clear(struct store_req *r)
{
    r->err = "";
}

void store_hex(const uint8_t *id, char *out)
{
    sodium_bin2hex(out, 2 * TCPOTA_ID_LEN + 1, id, TCPOTA_ID_LEN);
}

int store_unhex(const char *hex, uint8_t *id)
{
    size_t len = strlen(hex), n = 0;

    /* Without hex_end, libsodium refuses anything but hex digits. */
    if (len != 2 * TCPOTA_ID_LEN ||
        sodium_hex2bin(id, TCPOTA_ID_LEN, hex, len, NULL, &n, NULL) != 0 || n != TCPOTA_ID_LEN) {
        return -1;
    }
    return 0;
}

void *store_grow(void *rows, size_t *cap, size_t n, size_t elem)
{
    size_t want;
    void *grown;

    if (n < *cap) {
        return rows;
    }
    want = *cap ? 2 * *cap : STORE_ROWS_FIRST;
    if (!(grown = realloc(rows, want * elem))) {
        return NULL;
    }
    *cap = want;
    return grown;
}
