/* store_stub.c - the backend-independent part of the store (store.h) for
 * the tests that run before server/store.c exists: the same behaviour
 * (calloc'd requests; free releases history and list rows; the state
 * names). Replaced by server/store.c at merge. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

static const char *const dev_names[STORE_ST_COUNT] = {
    "seen", "up-to-date", "waiting", "offered", "downloading", "verified",
    "updated", "rolled-back", "boot-failed", "declined", "failed",
};
static const char *const ro_names[] = {"active", "paused", "halted", "cancelled"};

int store_submit(struct store *st, struct store_req *r)
{
    return st->vt->submit(st, r);
}

void store_close(struct store *st)
{
    if (st) st->vt->close(st);
}

struct store_req *store_req_new(enum store_op op, store_done_fn done, void *arg)
{
    struct store_req *r = calloc(1, sizeof *r);

    if (r) {
        r->op = op;
        r->done = done;
        r->arg = arg;
    }
    return r;
}

void store_req_free(struct store_req *r)
{
    if (!r) return;
    switch (r->op) {
    case STORE_DEVICE_GET:
        free(r->u.device.history);
        break;
    case STORE_IMAGE_LIST:
    case STORE_ROLLOUT_LIST:
    case STORE_DEVICE_LIST:
    case STORE_SECRET_LIST:
        free(r->u.list.rows);
        break;
    default:
        break;
    }
    free(r);
}

const char *store_state_name(enum store_dev_state s)
{
    return (unsigned)s < STORE_ST_COUNT ? dev_names[s] : "unknown";
}

int store_state_parse(const char *name)
{
    int i;

    for (i = 0; i < STORE_ST_COUNT; i++) {
        if (strcmp(name, dev_names[i]) == 0) return i;
    }
    return -1;
}

const char *store_rollout_state_name(enum rollout_state s)
{
    return (unsigned)s <= ROLLOUT_STATE_CANCELLED ? ro_names[s] : "unknown";
}
