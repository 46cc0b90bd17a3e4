/* store.c - the backend-independent half of the fleet store (store.h):
 * dispatch through the backend's table, requests, and the names the API and
 * the CLI print. */
#include "store.h"
#include "metrics.h"

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

int store_submit(struct store *st, struct store_req *r)
{
    r->submitted = mono_s();
    return st->vt->submit(st, r);
}

void store_req_finished(const struct store_req *r)
{
    enum metrics_store_op op = r->op == STORE_CHECKIN  ? METRICS_STORE_CHECKIN
                               : r->op == STORE_EVENTS ? METRICS_STORE_EVENTS
                                                       : METRICS_STORE_OTHER;

    metrics_store_latency(op, mono_s() - r->submitted);
}

void store_close(struct store *st)
{
    if (st) {
        st->vt->close(st);
    }
}

struct store_req *store_req_new(enum store_op op, store_done_fn done, void *arg)
{
    struct store_req *r = calloc(1, sizeof(*r));

    if (r) {
        r->op = op;
        r->done = done;
        r->arg = arg;
    }
    return r;
}

void store_req_free(struct store_req *r)
{
    if (!r) {
        return;
    }
    /* Only the ops that own these fields allocate them; the union would
     * alias them with other ops' inputs otherwise. */
    if (r->op == STORE_DEVICE_GET) {
        free(r->u.device.history);
    }
    if (r->op == STORE_CHECKIN) {
        free(r->u.checkin.out);
    }
    if (r->op == STORE_EVENTS) {
        free(r->u.events.items);
    }
    if (r->op == STORE_SUMMARY) {
        free(r->u.summary.rows);
    }
    if (r->op == STORE_IMAGE_LIST || r->op == STORE_ROLLOUT_LIST || r->op == STORE_DEVICE_LIST ||
        r->op == STORE_SECRET_LIST) {
        free(r->u.list.rows);
    }
    free(r);
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
