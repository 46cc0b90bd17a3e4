/* api_devices.c - /v1/devices: list, show, set group, retry, remove, new secret
 * (docs/api.md). */
#include "api_internal.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_LIMIT_DEFAULT 1000u
#define DEV_SECRET_LEN 32u /* bytes of a secret the API creates */

json_t *api_device_json(const struct store_device *d)
{
    uint32_t pct = d->size ? (uint32_t)((uint64_t)d->bytes * 100u / d->size) : 0;

    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:I, "
                     "s:b}",
                     "id", d->id, "model", d->model, "version", d->version, "running", d->running,
                     "group", d->group, "address", d->addr, "protocol",
                     d->proto == STORE_PROTO_LEGACY ? "legacy"
                     : d->proto == STORE_PROTO_HTTP ? "http" : "v1", "state",
                     store_state_name(d->state), "image", d->image, "bytes", (json_int_t)d->bytes,
                     "size", (json_int_t)d->size, "percent", (json_int_t)pct, "reason", d->reason,
                     "first_seen", (json_int_t)d->first_seen, "last_seen",
                     (json_int_t)d->last_seen, "has_secret", d->has_secret != 0);
}

/* A failed device request's answer. The store's "no device ID" may go on
 * with why a device that checked in is missing (store.h): said whole. */
static void device_error(struct api_call *c, const struct store_req *r, const char *field)
{
    if (r->rc == STORE_E_NOTFOUND && strncmp(r->err, "no device ", 10) == 0) {
        api_error(c, 404, field, "%s", r->err);
    } else {
        api_store_error(c, r, field, "device");
    }
}

/* ---- list ---- */

static void list_done(struct api_call *c, struct store_req *r)
{
    const struct store_device *d = r->u.list.rows;
    size_t i, n = r->u.list.n, limit = (size_t)c->id;
    json_t *arr;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "devices");
        return;
    }
    /* One row more than the page was asked for: it says that more remain. */
    int more = n > limit || (limit == STORE_LIST_MAX && n == limit);
    if (n > limit) n = limit;
    arr = json_array();
    for (i = 0; arr && i < n; i++) json_array_append_new(arr, api_device_json(&d[i]));
    /* The store's warning: the rows may miss devices (store.h). */
    api_reply(c, 200, arr ? json_pack("{s:o, s:I, s:s?, s:s?}", "devices", arr, "total",
                                      (json_int_t)r->u.list.total, "next",
                                      more && n ? d[n - 1].id : NULL, "warning",
                                      r->err[0] ? r->err : NULL)
                          : NULL);
}

/* The parameters of GET /v1/devices (docs/api.md). */
static const char *const list_params[] = {"model", "state", "group", "limit", "after", "q", NULL};

/* Validates the list's query (its names checked) into r; 0, or -1 after replying 400. */
static int list_query(struct api_call *c, struct evkeyvalq *q, struct store_req *r)
{
    const char *model = evhttp_find_header(q, "model"), *group = evhttp_find_header(q, "group");
    const char *state = evhttp_find_header(q, "state"), *limit = evhttp_find_header(q, "limit");
    const char *after = evhttp_find_header(q, "after"), *prefix = evhttp_find_header(q, "q");
    unsigned long long lim = DEV_LIMIT_DEFAULT;
    char *end = NULL;

    if (model && !api_name_ok(model, API_PRINTABLE_MAX)) {
        api_error(c, 400, "model", "model must be 1 to %u printable ASCII characters",
                  API_PRINTABLE_MAX);
        return -1;
    }
    if (group && !api_group_ok(c, group, 1)) return -1;
    if (state && store_state_parse(state) < 0) {
        api_error(c, 400, "state", "unknown state %s; one of seen, up-to-date, waiting, offered, "
                  "downloading, verified, updated, rolled-back, boot-failed, declined, failed", state);
        return -1;
    }
    if (limit) lim = (limit[0] >= '0' && limit[0] <= '9') ? strtoull(limit, &end, 10) : 0;
    if (limit && (!end || *end || lim < 1 || lim > STORE_LIST_MAX)) {
        api_error(c, 400, "limit", "limit must be a whole number from 1 to %u", STORE_LIST_MAX);
        return -1;
    }
    if (after && !api_name_ok(after, TCPOTA_MAX_STR)) {
        api_error(c, 400, "after", "after must be a device id (1 to %u printable ASCII characters)",
                  TCPOTA_MAX_STR);
        return -1;
    }
    if (prefix && !api_name_ok(prefix, TCPOTA_MAX_STR)) {
        api_error(c, 400, "q", "q must be the start of a device id (1 to %u printable ASCII"
                  " characters)",
                  TCPOTA_MAX_STR);
        return -1;
    }
    /* The query's strings die with it: the call keeps copies for the store. */
    snprintf(c->model, sizeof c->model, "%s", model ? model : "");
    snprintf(c->group, sizeof c->group, "%s", group ? group : "");
    snprintf(c->dev, sizeof c->dev, "%s", after ? after : "");
    r->u.list.model = model ? c->model : NULL;
    r->u.list.group = group ? c->group : NULL;
    r->u.list.state = state ? store_state_parse(state) : -1;
    r->u.list.after = after ? c->dev : NULL;
    snprintf(c->prefix, sizeof c->prefix, "%s", prefix ? prefix : "");
    r->u.list.prefix = prefix ? c->prefix : NULL;
    c->id = lim;
    r->u.list.limit = lim < STORE_LIST_MAX ? (size_t)lim + 1 : STORE_LIST_MAX;
    return 0;
}

static void list(struct api_call *c, const char *query)
{
    struct evkeyvalq q;
    struct store_req *r;

    if (api_query(c, query, list_params, &q) < 0) return;
    if (api_no_body(c) < 0) {
        evhttp_clear_headers(&q);
        return;
    }
    if ((r = api_req(c, STORE_DEVICE_LIST)) != NULL) {
        if (list_query(c, &q, r) < 0) store_req_free(r);
        else api_submit(c, r, list_done);
    }
    evhttp_clear_headers(&q);
}

/* ---- one device ---- */

/* The 404 for an id that has a secret and never checked in: a secret does
 * not register an id (its first check-in does), but it changes how the id
 * is served: said rather than "no device". what: what the request could not
 * do yet ("" for a read). Returns 1 when it answered. */
static int not_yet_registered(struct api_call *c, const struct store_req *r, const char *field,
                              const char *what)
{
    if (r->rc != STORE_E_NOTFOUND || !r->u.device.had_secret) {
        return 0;
    }
    api_error(c, 404, field, "device %s has not checked in yet, so it is not in the registry%s; "
              "it has a secret (tcpota device secret), so it must authenticate with it, and "
              "HTTP downloads for it are refused", c->dev, what);
    return 1;
}

static void show_done(struct api_call *c, struct store_req *r)
{
    json_t *o, *h;
    size_t i;

    if (not_yet_registered(c, r, "id", "")) {
        return;
    }
    if (r->rc < 0) {
        device_error(c, r, "id");
        return;
    }
    o = api_device_json(r->u.device.dev);
    h = json_array();
    for (i = 0; h && i < r->u.device.nhistory; i++) {
        const struct store_history *e = &r->u.device.history[i];
        json_array_append_new(h, json_pack("{s:I, s:s, s:s, s:s}", "at", (json_int_t)e->at, "state",
                                           store_state_name(e->state), "image", e->image, "detail",
                                           e->detail));
    }
    if (o && h) {
        json_object_set_new(o, "history", h);
    } else {
        json_decref(o);
        json_decref(h);
        o = NULL;
    }
    api_reply(c, 200, o);
}

static void show(struct api_call *c)
{
    struct store_req *r = api_req(c, STORE_DEVICE_GET);

    if (r) {
        r->u.device.id = c->dev;
        api_submit(c, r, show_done);
    }
}

static void group_done(struct api_call *c, struct store_req *r)
{
    const char *g;

    if (not_yet_registered(c, r, "id", " and its group can be set once it has")) {
        return;
    }
    if (r->rc < 0) {
        /* An unknown device is the path's fault, not the group's. */
        device_error(c, r, r->rc == STORE_E_NOTFOUND ? "id" : "group");
        return;
    }
    g = api_json_str(json_object_get(c->json, "group"));
    if (g && g[0]) api_changed(c, "device %s moved to group %s", c->dev, g);
    else api_changed(c, "device %s taken out of its group", c->dev);
    show(c);
}

static void set_group(struct api_call *c)
{
    json_t *b = api_body_object(c), *g;
    const char *k;
    struct store_req *r;

    if (!b) return;
    json_object_foreach(b, k, g) {
        if (strcmp(k, "group") != 0) {
            api_error(c, 400, k, "unknown field %s; PATCH takes {\"group\": \"...\"}", k);
            json_decref(b);
            return;
        }
    }
    g = json_object_get(b, "group");
    if (!g) { /* {}: said as missing, not as malformed (a trial) */
        api_error(c, 400, "group", "group is missing; PATCH takes {\"group\": \"...\"}"
                  " (\"\": no group)");
        json_decref(b);
        return;
    }
    if (!api_group_ok(c, api_json_str(g), 1)) {
        json_decref(b);
        return;
    }
    c->json = b; /* keeps the group's string until done */
    if ((r = api_req(c, STORE_DEVICE_SET_GROUP)) != NULL) {
        r->u.device.id = c->dev;
        r->u.device.group = json_string_value(g);
        api_submit(c, r, group_done);
    }
}

static void retry_done(struct api_call *c, struct store_req *r)
{
    uint32_t n = r->u.device.forgot;

    if (not_yet_registered(c, r, "id", ", so nothing is held back from it")) {
        return;
    }
    if (r->rc < 0) {
        device_error(c, r, "id");
        return;
    }
    if (n) {
        api_changed(c, "device %s: %u failed image%s or declined offer%s forgotten: the server"
                    " may offer %s again from its next check-in", c->dev, (unsigned)n,
                    n == 1 ? "" : "s", n == 1 ? "" : "s", n == 1 ? "it" : "them");
    }
    api_reply(c, 200, json_pack("{s:s, s:i, s:s}", "id", c->dev, "forgot", (json_int_t)n,
                                "state", store_state_name(r->u.device.dev->state)));
}

/* The operator's retry: the images the device failed or declined are no
 * longer held back from it (STORE_DEVICE_RETRY). */
static void retry(struct api_call *c)
{
    struct store_req *r = api_req(c, STORE_DEVICE_RETRY);

    if (r) {
        r->u.device.id = c->dev;
        api_submit(c, r, retry_done);
    }
}

static void secret_done(struct api_call *c, struct store_req *r)
{
    char hex[2 * DEV_SECRET_LEN + 1];

    if (r->rc < 0) {
        api_store_error(c, r, "id", "device");
        return;
    }
    if (c->api->cfg.on_secret) c->api->cfg.on_secret(c->api->cfg.ctx, c->dev, c->secret, DEV_SECRET_LEN);
    api_changed(c, "device %s: %s secret made; it must authenticate with it from now on%s", c->dev,
                r->u.device.had_secret ? "a new" : "its first",
                r->u.device.http ? " (it checks in over HTTP, which cannot authenticate: its"
                                   " downloads are refused from now on)" : "");
    sodium_bin2hex(hex, sizeof hex, c->secret, DEV_SECRET_LEN);
    api_reply(c, 201, json_pack("{s:s, s:s, s:b, s:b, s:b}", "id", c->dev, "secret", hex,
                                "replaced", r->u.device.had_secret != 0, "registered",
                                r->u.device.registered != 0, "http", r->u.device.http != 0));
    sodium_memzero(hex, sizeof hex);
}

static void set_secret(struct api_call *c)
{
    struct store_req *r = api_req(c, STORE_SECRET_SET);

    if (r) {
        randombytes_buf(c->secret, DEV_SECRET_LEN);
        r->u.device.id = c->dev;
        r->u.device.secret = c->secret;
        r->u.device.secret_len = DEV_SECRET_LEN;
        api_submit(c, r, secret_done);
    }
}

/* The device as it stands, before a secret without force=1: one that checks
 * in over HTTP (esp_https_ota) cannot authenticate, and a secret, which
 * nothing takes back, would refuse its downloads for good (a trial locked
 * one out with one command; the CLI warned only after). */
static void secret_checked(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0 && r->rc != STORE_E_NOTFOUND) {
        device_error(c, r, "id");
        return;
    }
    /* A new secret for one that has a secret already changes nothing of
     * that (its downloads are refused already): a rotation is no lock-out. */
    if (r->rc >= 0 && r->u.device.dev->proto == STORE_PROTO_HTTP && !r->u.device.dev->has_secret) {
        api_error(c, 409, "id", "device %s checks in over HTTP (esp_https_ota), which cannot "
                  "authenticate: with a secret its downloads are refused (403) until the device is "
                  "removed (tcpota device rm, which forgets its history too); that is right only "
                  "for a device moving to tcpota's own protocol: then ask again with force=1 "
                  "(tcpota device secret --force)",
                  c->dev);
        return;
    }
    set_secret(c);
}

static void new_secret(struct api_call *c, int force)
{
    struct store_req *r;

    if (force) {
        set_secret(c);
    } else if ((r = api_req(c, STORE_DEVICE_GET)) != NULL) {
        r->u.device.id = c->dev;
        api_submit(c, r, secret_checked);
    }
}

static void remove_done(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) {
        device_error(c, r, "id");
        return;
    }
    /* Before the answer: a client told "removed" has its AUTH refused. */
    if (r->u.device.had_secret && c->api->cfg.on_secret) {
        c->api->cfg.on_secret(c->api->cfg.ctx, c->dev, NULL, 0);
    }
    if (r->u.device.registered) {
        api_changed(c, "device %s removed from the registry%s", c->dev,
                    r->u.device.had_secret ? ", its secret with it" : "");
    } else {
        api_changed(c, "device %s: its secret removed (it had not checked in)", c->dev);
    }
    api_reply(c, 200, json_pack("{s:s, s:b, s:b}", "id", c->dev, "registered",
                                r->u.device.registered != 0, "secret",
                                r->u.device.had_secret != 0));
}

/* The operator's "device rm" (STORE_DEVICE_DELETE). */
static void remove_device(struct api_call *c)
{
    struct store_req *r = api_req(c, STORE_DEVICE_DELETE);

    if (r) {
        r->u.device.id = c->dev;
        api_submit(c, r, remove_done);
    }
}

/* c->dev = the percent-decoded id of the path segment; 0 or -1 after 400. */
static int take_dev(struct api_call *c, const char *seg, size_t len)
{
    char enc[3 * TCPOTA_MAX_STR + 1], unused[2];
    size_t n = 0;
    char *dec;

    if (len >= sizeof enc) len = sizeof enc - 1; /* longer than any id: refused below */
    memcpy(enc, seg, len);
    enc[len] = 0;
    if (api_query_bad_escape(enc, unused, sizeof unused)) {
        /* libevent keeps such a '%' as it is: "%zz" was looked up, and
         * not found, as a device of that name (a hostile trial). */
        api_error(c, 400, "id", "%s", API_BAD_ESCAPE_SAYS);
        return -1;
    }
    dec = evhttp_uridecode(enc, 0, &n);
    if (!dec || n != strlen(dec) || !api_name_ok(dec, TCPOTA_MAX_STR) || len == sizeof enc - 1) {
        free(dec);
        api_error(c, 400, "id", "a device id is 1 to %u printable ASCII characters"
                  " (percent-encoded)",
                  TCPOTA_MAX_STR);
        return -1;
    }
    memcpy(c->dev, dec, n + 1);
    free(dec);
    return 0;
}

/* The parameters of POST /v1/devices/{id}/secret (docs/api.md). */
static const char *const secret_params[] = {"force", NULL};

void api_devices(struct api_call *c, int method, const char *rest, const char *query)
{
    const char *slash = rest ? strchr(rest, '/') : NULL, *v = NULL;
    struct evkeyvalq q;
    int secret, force;

    if (!rest) {
        if (method == EVHTTP_REQ_GET) list(c, query);
        else api_not_allowed(c, "/v1/devices", "GET, HEAD");
        return;
    }
    if (slash && strcmp(slash, "/secret") != 0 && strcmp(slash, "/retry") != 0) {
        api_error(c, 404, NULL, "no such path /v1/devices/%s", rest);
        return;
    }
    if (slash ? method != EVHTTP_REQ_POST
              : method != EVHTTP_REQ_GET && method != EVHTTP_REQ_PATCH &&
                    method != EVHTTP_REQ_DELETE) {
        if (slash) api_not_allowed(c, strcmp(slash, "/secret") == 0 ? "/v1/devices/{id}/secret"
                                                                     : "/v1/devices/{id}/retry",
                                   "POST");
        else api_not_allowed(c, "/v1/devices/{id}", "GET, HEAD, PATCH, DELETE");
        return;
    }
    secret = slash && strcmp(slash, "/secret") == 0;
    if (api_query(c, query, secret ? secret_params : NULL, &q) < 0) return;
    v = secret ? evhttp_find_header(&q, "force") : NULL;
    force = v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
    if (v && !force && strcmp(v, "0") != 0 && strcmp(v, "false") != 0) {
        /* (0 and false: not forced, as without it; a trial read the
         * refusal of "false" as odd.) */
        api_error(c, 400, "force", "force takes 1 or true (0 or false: not forced), not %.32s",
                  v); /* v is q's: before */
        evhttp_clear_headers(&q);
        return;
    }
    evhttp_clear_headers(&q);
    /* Only PATCH takes a body: a secret sent to /secret is not the one made. */
    if (method != EVHTTP_REQ_PATCH && api_no_body(c) < 0) return;
    if (take_dev(c, rest, slash ? (size_t)(slash - rest) : strlen(rest)) < 0) return;
    if (slash && strcmp(slash, "/retry") == 0) retry(c);
    else if (slash) new_secret(c, force);
    else if (method == EVHTTP_REQ_PATCH) set_group(c);
    else if (method == EVHTTP_REQ_DELETE) remove_device(c);
    else show(c);
}
