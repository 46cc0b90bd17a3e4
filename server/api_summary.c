/* api_summary.c - GET /v1/summary: the counts of the dashboard's overview and
 * rollouts page in one request (docs/api.md). An answer is reused for
 * API_SUMMARY_TTL_MS: however many dashboards are open, the store counts a
 * million devices at most once per interval. */
#include "api_internal.h"
#include "auth.h"

#include <event2/http.h>
#include <stdlib.h>
#include <time.h>

#define SUMMARY_FAILURES_S 3600 /* "failures in the last hour" */
#define SUMMARY_KINDS 4         /* enum store_tally_kind */

static const char *const kind_names[SUMMARY_KINDS] = {"states", "versions", "failures",
                                                      "rollout_failures"};

static json_t *tally_json(const struct store_tally *t)
{
    const char *state = store_state_name(t->state);

    switch (t->kind) {
    case STORE_TALLY_STATES:
        return json_pack("{s:s, s:s, s:I}", "model", t->model, "state", state, "count",
                         (json_int_t)t->n);
    case STORE_TALLY_VERSIONS:
        return json_pack("{s:s, s:s, s:I}", "model", t->model, "version", t->version, "count",
                         (json_int_t)t->n);
    case STORE_TALLY_FAILURES:
        return json_pack("{s:s, s:s, s:I}", "state", state, "reason", t->reason, "count",
                         (json_int_t)t->n);
    default:
        return json_pack("{s:I, s:I, s:s, s:s, s:I}", "rollout", (json_int_t)t->rollout_id,
                         "wave", (json_int_t)t->wave, "state", state, "reason", t->reason,
                         "count", (json_int_t)t->n);
    }
}

/* The answer of a summary request; NULL when out of memory. */
static json_t *summary_json(const struct store_req *r)
{
    json_t *o, *arr[SUMMARY_KINDS];
    size_t i;
    int ok;

    o = json_pack("{s:I, s:I}", "now", (json_int_t)r->now, "since", (json_int_t)r->u.summary.since);
    ok = o != NULL;
    for (i = 0; i < SUMMARY_KINDS; i++) {
        arr[i] = json_array();
        ok = ok && arr[i] && json_object_set_new(o, kind_names[i], arr[i]) == 0;
    }
    for (i = 0; ok && i < r->u.summary.n; i++) {
        const struct store_tally *t = &r->u.summary.rows[i];
        ok = (unsigned)t->kind < SUMMARY_KINDS &&
             json_array_append_new(arr[t->kind], tally_json(t)) == 0;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Latest refusal first. */
static int by_last_desc(const void *a, const void *b)
{
    const struct auth_refused_id *x = *(const struct auth_refused_id *const *)a;
    const struct auth_refused_id *y = *(const struct auth_refused_id *const *)b;

    return (x->last < y->last) - (x->last > y->last);
}

/* "auth_refused": the devices refused for authentication since the
 * server started (counted by this node, not the store: a refusal changes
 * nothing in the registry, or anyone could write there). NULL when out of
 * memory. */
static json_t *auth_json(const struct auth_refusals *t)
{
    const struct auth_refused_id *ids[AUTH_REFUSED_IDS];
    json_t *o, *counts, *devs;
    size_t i, n = 0;
    int ok;

    o = json_pack("{s:I}", "since", (json_int_t)t->since);
    counts = json_object();
    devs = json_array();
    ok = o && counts && devs;
    for (i = 0; ok && i < AUTH_REFUSAL_KINDS; i++) {
        ok = json_object_set_new(counts, auth_refusal_name((enum auth_refusal)i),
                                 json_integer((json_int_t)t->n[i])) == 0;
    }
    for (i = 0; i < AUTH_REFUSED_IDS; i++) {
        if (t->ids[i].id[0]) ids[n++] = &t->ids[i];
    }
    qsort(ids, n, sizeof(ids[0]), by_last_desc);
    for (i = 0; ok && i < n; i++) {
        ok = json_array_append_new(devs, json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", ids[i]->id,
                                   "reason", auth_refusal_name((enum auth_refusal)ids[i]->kind),
                                   "address", ids[i]->addr, "count", (json_int_t)ids[i]->count,
                                   "last", (json_int_t)ids[i]->last)) == 0;
    }
    ok = ok && json_object_set_new(o, "total", json_integer((json_int_t)auth_refusals_total(t))) == 0 &&
         json_object_set(o, "counts", counts) == 0 && json_object_set(o, "devices", devs) == 0;
    json_decref(counts);
    json_decref(devs);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* o (a summary, taken) with this server's refusals as they are now: an
 * answer reused from the cache still counts the latest. NULL: o is NULL. */
static json_t *with_auth(const struct api *a, json_t *o)
{
    json_t *auth;

    if (!o || !a->cfg.auth_refused) return o;
    auth = auth_json(a->cfg.auth_refused(a->cfg.ctx));
    if (!auth || json_object_set_new(o, "auth_refused", auth) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void summary_done(struct api_call *c, struct store_req *r)
{
    json_t *o;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "summary");
        return;
    }
    if ((o = summary_json(r)) != NULL && c->api) {
        json_decref(c->api->summary);
        c->api->summary = json_incref(o);
        c->api->summary_ms = api_mono_ms();
        o = with_auth(c->api, o);
    }
    api_reply(c, 200, o);
}

void api_summary(struct api_call *c, int method, const char *rest, const char *query)
{
    struct api *a = c->api;
    struct store_req *r;

    if (rest) {
        api_error(c, 404, NULL, "no such path /v1/summary/%s", rest);
        return;
    }
    if (method != EVHTTP_REQ_GET) {
        api_not_allowed(c, "/v1/summary", "GET, HEAD");
        return;
    }
    if (api_query(c, query, NULL, NULL) < 0 || api_no_body(c) < 0) return;
    if (a->summary && api_mono_ms() - a->summary_ms < API_SUMMARY_TTL_MS) {
        api_reply(c, 200, with_auth(a, json_incref(a->summary)));
        return;
    }
    if ((r = api_req(c, STORE_SUMMARY)) != NULL) {
        r->u.summary.since = r->now - SUMMARY_FAILURES_S;
        api_submit(c, r, summary_done);
    }
}
