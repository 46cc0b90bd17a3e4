/* api_summary.c - GET /v1/summary: the counts of the dashboard's overview and
 * rollouts page in one request (docs/api.md). */
#include "api_internal.h"

#include <event2/http.h>

#define SUMMARY_FAILURES_S 3600 /* "failures in the last hour" */

static json_t *tally_json(const struct store_tally *t)
{
    const char *state = store_state_name(t->state);

    switch (t->kind) {
    case STORE_TALLY_DEVICES:
        return json_pack("{s:s, s:s, s:s, s:I}", "model", t->model, "version", t->version,
                         "state", state, "count", (json_int_t)t->n);
    case STORE_TALLY_FAILURES:
        return json_pack("{s:s, s:s, s:I}", "state", state, "reason", t->reason, "count",
                         (json_int_t)t->n);
    default:
        return json_pack("{s:I, s:I, s:s, s:s, s:I}", "rollout", (json_int_t)t->rollout_id,
                         "wave", (json_int_t)t->wave, "state", state, "reason", t->reason,
                         "count", (json_int_t)t->n);
    }
}

static void summary_done(struct api_call *c, struct store_req *r)
{
    static const char *const names[] = {"devices", "failures", "rollout_failures"};
    json_t *o, *arr[3];
    size_t i;
    int ok;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "summary");
        return;
    }
    o = json_pack("{s:I, s:I}", "now", (json_int_t)r->now, "since", (json_int_t)r->u.summary.since);
    ok = o != NULL;
    for (i = 0; i < 3; i++) {
        arr[i] = json_array();
        ok = ok && arr[i] && json_object_set_new(o, names[i], arr[i]) == 0;
    }
    for (i = 0; ok && i < r->u.summary.n; i++) {
        const struct store_tally *t = &r->u.summary.rows[i];
        ok = (unsigned)t->kind < 3 && json_array_append_new(arr[t->kind], tally_json(t)) == 0;
    }
    if (!ok) {
        json_decref(o);
        o = NULL;
    }
    api_reply(c, 200, o);
}

void api_summary(struct api_call *c, int method, const char *rest)
{
    struct store_req *r;

    if (rest) {
        api_error(c, 404, NULL, "no such path /v1/summary/%s", rest);
        return;
    }
    if (method != EVHTTP_REQ_GET) {
        api_error(c, 405, NULL, "/v1/summary takes GET");
        return;
    }
    if ((r = api_req(c, STORE_SUMMARY)) != NULL) {
        r->u.summary.since = r->now - SUMMARY_FAILURES_S;
        api_submit(c, r, summary_done);
    }
}
