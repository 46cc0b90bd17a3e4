/* api.c - the control API's listener, routing, token and replies (see api.h). */
#include "api_internal.h"
#include "dashboard.h"
#include "fleet_files.h" /* FLEET_TOKEN_FILE */
#include "http_host.h"
#include "http_ota.h" /* HTTP_OTA_PREFIX */
#include "http_reply.h"
#include "log.h"
#include "offload.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API_TOKEN_BYTES 32u
#define API_METRICS_PATH "/metrics"
#define API_HEALTH_PATH "/health" /* a balancer's check: the loop answers */
#define API_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

static const char *status_text(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 421: return "Misdirected Request";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Internal Server Error";
    }
}

struct api_call *api_call_new(struct api *a, struct evhttp_request *req)
{
    struct api_call *c = calloc(1, sizeof *c);

    if (!c) {
        return NULL;
    }
    c->api = a;
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->next = a->calls;
    if (a->calls) a->calls->prev = c;
    a->calls = c;
    return c;
}

static void call_free(struct api_call *c);

void api_call_release(struct api_call *c)
{
    c->req = NULL;
    call_free(c);
}

static void call_free(struct api_call *c)
{
    if (c->api) { /* else an orphan of api_stop(), out of the list */
        api_upload_end(c);
        if (c->prev) c->prev->next = c->next;
        else c->api->calls = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    if (c->path[0]) (void)unlink(c->path);
    if (c->body) evbuffer_free(c->body);
    json_decref(c->json);
    free(c->imgs);
    free(c->ros);
    sodium_memzero(c->secret, sizeof c->secret);
    free(c);
}

/* Sends text (JSON) with code on req; never fails the caller. */
static void send_text(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *b = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (b) evbuffer_add(b, text, strlen(text));
    http_reply(req, code, status_text(code), b);
    if (b) evbuffer_free(b);
}

static const char oom_body[] = "{\"error\":\"the server is out of memory; try again\"}";

void api_reply(struct api_call *c, int code, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

    if (c->req) {
        if (text) send_text(c->req, code, text);
        else send_text(c->req, 500, oom_body);
    }
    free(text);
    json_decref(obj);
    call_free(c);
}

json_t *api_error_object(const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    json_t *o = json_pack("{s:s}", "error", msg);
    char safe[4 * API_ERROR_MAX];
    size_t n = 0;

    for (; !o && *msg && n + 5 < sizeof safe; msg++) {
        unsigned char b = (unsigned char)*msg;
        if (b >= 0x20 && b < 0x7f) {
            safe[n++] = (char)b;
        } else {
            safe[n++] = '\\';
            safe[n++] = 'x';
            safe[n++] = hex[b >> 4];
            safe[n++] = hex[b & 15];
        }
    }
    if (!o) {
        safe[n] = '\0';
        o = json_pack("{s:s}", "error", safe);
    }
    return o;
}

void api_not_allowed(struct api_call *c, const char *path, const char *allow)
{
    const char *comma = NULL, *p;

    for (p = allow; (p = strstr(p, ", ")) != NULL; p++) comma = p; /* the last: "A, B and C" */
    if (c->req) evhttp_add_header(evhttp_request_get_output_headers(c->req), "Allow", allow);
    if (comma) {
        api_error(c, 405, NULL, "%s takes %.*s and %s", path, (int)(comma - allow), allow,
                  comma + 2);
    } else {
        api_error(c, 405, NULL, "%s takes %s", path, allow);
    }
}

void api_error(struct api_call *c, int code, const char *field, const char *fmt, ...)
{
    char msg[API_ERROR_MAX];
    va_list ap;
    json_t *o;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o = api_error_object(msg);
    if (o && field) json_object_set_new(o, "field", json_string(field));
    api_reply(c, code, o);
}

void api_store_error(struct api_call *c, const struct store_req *r, const char *field,
                     const char *what)
{
    const char *msg = r->err[0] ? r->err : "the store gave no reason";

    switch (r->rc) {
    case STORE_E_NOTFOUND:
        api_error(c, 404, field, "no %s %s", what, c->key[0] ? c->key : c->dev);
        break;
    case STORE_E_CONFLICT:
        api_error(c, 409, NULL, "%s", msg);
        break;
    case STORE_E_INVAL:
        api_error(c, 400, field, "%s", msg);
        break;
    case STORE_E_UNAVAILABLE: /* msg names the database and says what to do */
        api_error(c, 503, NULL, "%s", msg);
        break;
    default:
        api_error(c, 500, NULL, "the database failed: %s", msg);
        break;
    }
}

static void store_done(struct store_req *r)
{
    struct api_call *c = r->arg;

    if (c && (!c->api || c->answered)) { /* orphaned by api_stop(), or answered
                                           * already (api_answer_stuck): its inputs
                                           * were kept until now */
        call_free(c);
    } else if (c) {
        c->sr = NULL;
        c->cont(c, r); /* replies (ending c) or submits the next step */
    }
    store_req_free(r);
}

struct store_req *api_req(struct api_call *c, enum store_op op)
{
    struct store_req *r = store_req_new(op, store_done, c);

    if (!r) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return NULL;
    }
    r->now = (int64_t)time(NULL);
    return r;
}

void api_submit(struct api_call *c, struct store_req *r, api_cont_fn cont)
{
    double stuck = store_stuck_s();
    int rc;

    if (!c->stepped && stuck) {
        /* A hung database: queued behind it, the client waited its 30 s
         * for "no answer from the API" (a trial). Refused before its first
         * step only: a later one continues what the database took. */
        store_req_free(r);
        api_error(c, 503, NULL, "the database has answered nothing for %.0f s (hung, or busy"
                  " with a long request or a lock); nothing was done: try again later, or through"
                  " another node", stuck);
        return;
    }
    c->stepped = 1;
    c->cont = cont;
    c->sr = r;
    rc = store_submit(c->api->cfg.store, r);
    if (rc < 0) {
        c->sr = NULL;
        store_req_free(r);
        api_error(c, 500, NULL, "the store cannot take the request (error %d); try again", rc);
    }
}

static void job_work(void *arg)
{
    struct api_call *c = arg;

    c->work(c);
}

static void job_done(void *arg)
{
    struct api_call *c = arg;

    c->job = NULL;
    c->job_cont(c); /* replies (ending c) or starts the next step */
}

void api_offload(struct api_call *c, api_job_fn work, api_job_fn cont)
{
    c->work = work;
    c->job_cont = cont;
    c->job = offload_start(c->api->cfg.base, job_work, job_done, c);
    if (!c->job) {
        api_error(c, 500, NULL, "the server cannot start a thread for this request (%s); raise its "
                  "descriptor or thread limit (ulimit -n, LimitNOFILE=, TasksMax=) or wait for other "
                  "uploads to end, then try again", strerror(errno));
    }
}

/* The key of the member whose value ends at end in the JSON text p (a
 * number jansson refused), into key (cap bytes): 1, or 0 when the value is
 * no member's (an array's item) or the key is not plain (escapes, too long). */
static int key_before(const char *p, size_t end, char *key, size_t cap)
{
    size_t i = end, close;

    while (i > 0 && strchr("0123456789+-.eE", p[i - 1])) i--;
    while (i > 0 && strchr(" \t\r\n", p[i - 1])) i--;
    if (i == 0 || p[--i] != ':') return 0;
    while (i > 0 && strchr(" \t\r\n", p[i - 1])) i--;
    if (i == 0 || p[--i] != '"') return 0;
    close = i;
    while (i > 0 && p[i - 1] != '"' && p[i - 1] != '\\' && close - i < cap - 1) i--;
    /* An escaped quote ends no key: a key with escapes is not named. */
    if (i == 0 || p[i - 1] != '"' || close == i || (i >= 2 && p[i - 2] == '\\')) return 0;
    memcpy(key, p + i, close - i);
    key[close - i] = '\0';
    return 1;
}

json_t *api_body_object(struct api_call *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    const char *p = len ? (const char *)evbuffer_pullup(in, -1) : "";
    json_error_t je;
    json_t *o = json_loadb(p, len, JSON_REJECT_DUPLICATES, &je);

    if (!o && json_error_code(&je) == json_error_null_character) {
        /* jansson's text names its own flag (JSON_ALLOW_NUL), no help to a client. */
        api_error(c, 400, "body", "a string of the body holds \\u0000 (a NUL byte), which no field"
                  " takes (line %d, column %d); leave it out", je.line, je.column);
        return NULL;
    }
    if (!o && json_error_code(&je) == json_error_numeric_overflow) {
        /* A number jansson cannot hold (it stops there: what follows is
         * not read), which no field takes: said as a field's range is
         * ("field": the member's name), not as JSON the client got wrong. */
        char key[API_FIELD_NAME_MAX + 1];
        int named = je.position >= 0 && key_before(p, (size_t)je.position, key, sizeof key);

        api_error(c, 400, named ? key : "body", "%s%s is a number too large for any field (line %d,"
                  " column %d); see docs/api.md for the values it takes", named ? key : "a value",
                  named ? "" : " of the body", je.line, je.column);
        return NULL;
    }
    if (!o) {
        api_error(c, 400, "body", "the body is not valid JSON: %s (line %d, column %d)", je.text,
                  je.line, je.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        api_error(c, 400, "body", "the body must be a JSON object");
        return NULL;
    }
    return o;
}

int api_no_body(struct api_call *c)
{
    size_t n = evbuffer_get_length(evhttp_request_get_input_buffer(c->req));

    if (n == 0) return 0;
    api_error(c, 400, "body", "this endpoint takes no body (%zu byte%s came); send none", n, n == 1 ? "" : "s");
    return -1;
}

const char *api_json_str(const json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;

    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* 1 when s is len 1..max (0..max when empty_ok) bytes from lowest to 0x7e. */
static int chars_in(const char *s, size_t max, int empty_ok, char lowest)
{
    size_t n = strlen(s), i;

    if (n > max || (n == 0 && !empty_ok)) return 0;
    for (i = 0; i < n; i++) {
        if (s[i] < lowest || s[i] > 0x7e) return 0;
    }
    return 1;
}

int api_printable(const char *s, size_t max, int empty_ok)
{
    return chars_in(s, max, empty_ok, 0x21);
}

int api_group_ok(struct api_call *c, const char *s, int empty_ok)
{
    if (s && api_printable(s, STORE_GROUP_MAX, empty_ok)) return 1;
    if (empty_ok) {
        api_error(c, 400, "group", "group must be a string of at most %u printable ASCII"
                  " characters, no spaces (\"\": no group)", STORE_GROUP_MAX);
    } else {
        api_error(c, 400, "group", "group must be a string of 1 to %u printable ASCII"
                  " characters, no spaces (leave it out for all devices of the model)",
                  STORE_GROUP_MAX);
    }
    return 0;
}

int api_image_id(const char *s, char *out)
{
    size_t n = strlen(s), i;

    for (i = 0; i < n && isxdigit((unsigned char)s[i]); i++) {
    }
    if (i != n || n > 2 * TCPOTA_ID_LEN) return -1;
    if (n < API_PREFIX_MIN) return 0;
    for (i = 0; i <= n; i++) out[i] = (char)tolower((unsigned char)s[i]);
    return 1;
}

void api_image_id_error(struct api_call *c, const char *field, const char *fmt, ...)
{
    char tail[256] = "";
    va_list ap;

    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(tail, sizeof tail, fmt, ap);
        va_end(ap);
    }
    api_error(c, 400, field, "an image id is %u to %u hex digits (a unique prefix of its SHA-256)%s",
              API_PREFIX_MIN, 2 * TCPOTA_ID_LEN, tail);
}

int api_name_ok(const char *s, size_t max)
{
    return chars_in(s, max, 0, 0x20);
}

int api_query_nul(const char *query, char *key, size_t cap)
{
    const char *p, *pair, *eq;

    /* Only "%00" decodes to a NUL: its '%' can never be a hex digit of an
     * escape before it, so finding the text finds every NUL. */
    for (p = query ? strstr(query, "%00") : NULL; p; p = strstr(p + 3, "%00")) {
        for (pair = p; pair > query && pair[-1] != '&'; pair--) {
        }
        eq = memchr(pair, '=', (size_t)(p - pair));
        if (!eq) continue; /* in a name, which is not decoded: an unknown one */
        snprintf(key, cap, "%.*s", (int)(eq - pair), pair);
        return 1;
    }
    return 0;
}

int api_query_bad_escape(const char *query, char *key, size_t cap)
{
    const char *p, *pair, *eq;

    for (p = query ? strchr(query, '%') : NULL; p; p = strchr(p + 1, '%')) {
        if (isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            continue;
        }
        for (pair = p; pair > query && pair[-1] != '&'; pair--) {
        }
        eq = memchr(pair, '=', (size_t)(p - pair));
        snprintf(key, cap, "%.*s", eq ? (int)(eq - pair) : 0, pair);
        return 1;
    }
    return 0;
}

/* Replies 400 for the unknown parameter key of a route that takes known. */
static void refuse_param(struct api_call *c, const char *key, const char *const *known)
{
    char takes[256] = "none: leave it out";
    size_t i, n = 0;

    for (i = 0; known && known[i] && n < sizeof takes; i++) {
        n += (size_t)snprintf(takes + n, sizeof takes - n, "%s%s", i ? ", " : "", known[i]);
    }
    api_error(c, 400, key, "unknown query parameter %s; this endpoint takes %s", key, takes);
}

/* 1 when kv's name comes again after it in the query. */
static int given_twice(const struct evkeyval *kv)
{
    const struct evkeyval *o;

    for (o = TAILQ_NEXT(kv, next); o; o = TAILQ_NEXT(o, next)) {
        if (strcmp(o->key, kv->key) == 0) return 1;
    }
    return 0;
}

int api_query(struct api_call *c, const char *query, const char *const *known, struct evkeyvalq *q)
{
    struct evkeyvalq local;
    struct evkeyval *kv;
    size_t i;
    char bad[64];

    if (!q) q = &local;
    TAILQ_INIT(q);
    if (query && evhttp_parse_query_str(query, q) != 0) {
        evhttp_clear_headers(q);
        api_error(c, 400, "query", "the query string is malformed; send name=value pairs joined "
                  "by &, percent-encoded");
        return -1;
    }
    TAILQ_FOREACH(kv, q, next) {
        for (i = 0; known && known[i] && strcmp(kv->key, known[i]) != 0; i++) {
        }
        if (!known || !known[i]) {
            refuse_param(c, kv->key, known);
            evhttp_clear_headers(q);
            return -1;
        }
        /* evhttp_find_header would take the first: which one was meant? */
        if (given_twice(kv)) {
            api_error(c, 400, kv->key, "%s: given twice; send each query parameter once", kv->key);
            evhttp_clear_headers(q);
            return -1;
        }
    }
    if (api_query_bad_escape(query, bad, sizeof bad)) {
        api_error(c, 400, bad, "%s: %s", bad[0] ? bad : "the query", API_BAD_ESCAPE_SAYS);
        evhttp_clear_headers(q);
        return -1;
    }
    /* A known name: its value arrived cut at the NUL ("5.0.0%00x" is "5.0.0"). */
    if (api_query_nul(query, bad, sizeof bad)) {
        api_error(c, 400, bad, "%s: %%00 decodes to a byte that is not printable; send printable "
                  "characters only", bad);
        evhttp_clear_headers(q);
        return -1;
    }
    if (q == &local) evhttp_clear_headers(q);
    return 0;
}

/* "HOST:PORT" of evcon's peer into buf ("?:0" when evcon is NULL: the
 * client has gone). */
const char *api_peer_text(struct evhttp_connection *evcon, char *buf, size_t cap)
{
    const char *host = NULL;
    ev_uint16_t port = 0;

    if (evcon) evhttp_connection_get_peer(evcon, (char **)&host, &port);
    snprintf(buf, cap, "%s:%u", host ? host : "?", (unsigned)port);
    return buf;
}

void api_changed(struct api_call *c, const char *fmt, ...)
{
    struct api *a = c->api;
    char what[API_CHANGE_MAX], peer[80];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (n < 0) what[0] = 0;
    n = (int)strlen(what);
    /* evcon is NULL once the client has gone: the change stands all the same. */
    snprintf(what + n, sizeof what - (size_t)n, " (API client %s)",
             api_peer_text(c->evcon, peer, sizeof peer));
    if (a->cfg.on_change) a->cfg.on_change(a->cfg.ctx, what);
    api_events_publish(a, "change", json_object());
}

int api_bearer_ok(const struct api *a, const char *v, size_t n)
{
    size_t len = strlen(a->cfg.token);

    if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0) return 0; /* the scheme is case-insensitive */
    return n - 7 == len && sodium_memcmp(v + 7, a->cfg.token, len) == 0;
}

/* 1 when the request carries the right bearer token (constant time). */
static int authorized(const struct api *a, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

    return h && api_bearer_ok(a, h, strlen(h));
}

/* An answer to a request without the token ends its connection: one that
 * began without the token keeps small bodies (api_gate.c), so an upload
 * after it on the same connection met libevent's HTML 413 however right
 * its token (a security review: /health, then an upload, with curl's
 * --next or a requests.Session). The 401 and the dashboard's files end
 * theirs too. */
static void tokenless_ends(const struct api *a, struct evhttp_request *req)
{
    if (!authorized(a, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    }
}

/* The challenge a 401 carries (RFC 9110 section 11.6.1 requires one; RFC
 * 6750 section 3 gives Bearer's): a request that sent no Authorization
 * gets no error code, one that sent a token that is not the API's gets
 * invalid_token, so that a client can tell "log in" from "wrong token". */
static void challenge(struct evhttp_request *req)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(req);

    /* The connection ends with it: one that began without the token keeps
     * small bodies (api_gate.c), and a dashboard that logs in again after
     * a wrong token must not upload on it. */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      evhttp_find_header(in, "Authorization")
                          ? "Bearer realm=\"" API_REALM "\", error=\"invalid_token\""
                          : "Bearer realm=\"" API_REALM "\"");
}

void api_answer_stuck(struct api *a, double stuck)
{
    struct api_call *c;
    char msg[API_ERROR_MAX];
    json_t *o;
    char *text;

    for (c = a ? a->calls : NULL; c; c = c->next) {
        enum evhttp_cmd_type m;
        if (!c->sr || !c->req) {
            continue;
        }
        m = evhttp_request_get_command(c->req);
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            continue;
        }
        snprintf(msg, sizeof msg, "the database has answered nothing for %.0f s (hung, or busy"
                 " with a long request or a lock); this request only read: try again later, or"
                 " through another node", stuck);
        o = api_error_object(msg);
        text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        send_text(c->req, 503, text ? text : oom_body);
        free(text);
        json_decref(o);
        c->req = NULL;
        c->answered = 1; /* its request's end frees it: no further step */
    }
}

/* The client went away: libevent frees a request of a call still attached
 * to the connection, so forget it; a detached one (EOF while we work) is
 * ours, and replying to it later frees it. */
void api_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct api *a = arg;
    struct api_call *c;

    api_events_conn_closed(a, evcon);
    for (c = a->calls; c; c = c->next) {
        if (c->evcon != evcon) continue;
        c->evcon = NULL;
        if (c->req && evhttp_request_get_connection(c->req) != NULL) c->req = NULL;
    }
    if (a->cfg.ota_closed) a->cfg.ota_closed(evcon, a->cfg.ota_arg);
    api_gate_closed(a, evcon);
}

static void route(struct api_call *c, int method, const char *path, const char *query)
{
    static const struct {
        const char *prefix;
        int kind;
    } routes[] = {{"/v1/images", 0}, {"/v1/rollouts", 1}, {"/v1/devices", 2},
                  {"/v1/summary", 3}, {"/v1/events", 4}};
    size_t i, n;

    for (i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        n = strlen(routes[i].prefix);
        if (strncmp(path, routes[i].prefix, n) != 0 || (path[n] && path[n] != '/')) continue;
        const char *rest = path[n] && path[n + 1] ? path + n + 1 : NULL;
        if (path[n] == '/' && !rest) break; /* "/v1/images/" */
        /* HEAD is a GET without the body (RFC 9110, 9.3.2; http_reply sends
         * none), but for the event stream, which has no end to measure. */
        if (method == EVHTTP_REQ_HEAD && routes[i].kind != 4) method = EVHTTP_REQ_GET;
        if (routes[i].kind == 0) api_images(c, method, rest, query);
        else if (routes[i].kind == 1) api_rollouts(c, method, rest, query);
        else if (routes[i].kind == 2) api_devices(c, method, rest, query);
        else if (routes[i].kind == 3) api_summary(c, method, rest, query);
        else api_events(c, method, rest, query);
        return;
    }
    /* Named as sent: "//v1/images" parses as host "v1", path "/images". */
    const char *sent = evhttp_request_get_uri(c->req);
    api_error(c, 404, NULL, "no such path %.*s; see docs/api.md for the endpoints",
              (int)strcspn(sent, "?"), sent);
}

/* The rules of a path served without the token (GET or HEAD, no body):
 * 1 when req keeps them, else 0 after its 405 or 400. */
static int tokenless_get(struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    char body[160];

    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        snprintf(body, sizeof body, "{\"error\":\"%s answers GET and HEAD only\"}", path);
        send_text(req, 405, body);
        return 0;
    }
    if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > 0) {
        /* As every endpoint that takes none (api_no_body). */
        snprintf(body, sizeof body, "{\"error\":\"%s takes no body; send none\",\"field\":"
                 "\"body\"}", path);
        send_text(req, 400, body);
        return 0;
    }
    return 1;
}

/* GET /health: 200 as long as the node's event loop answers, for a
 * balancer's HTTP check (docs/scaling.md): a node stopped or hung keeps
 * accepting TCP connections into its backlog, so a TCP check keeps it in
 * rotation. No token, no data. */
static void health(const struct api *a, struct evhttp_request *req)
{
    double waited = store_stuck_s();
    char body[256];

    if (!tokenless_get(req, API_HEALTH_PATH)) {
        return;
    }
    if (waited) {
        /* The loop answers, its database does not: every check-in here
         * waits (a trial's hung PostgreSQL left the node in rotation). */
        snprintf(body, sizeof(body), "{\"status\": \"the database has answered nothing for %.0f"
                 " s\", \"waiting\": %lu}", waited, store_pending());
        send_text(req, 503, body);
        return;
    }
    if (store_down()) {
        /* This node alone may have lost it (a network cut, a password
         * changed): every check-in here is told to come back later, where
         * another node could serve it (a trial: 200 all along). */
        snprintf(body, sizeof(body), "{\"status\": \"%s\"}",
                 a->cfg.down_status ? a->cfg.down_status
                                    : "the database cannot be used now; the log says why");
        send_text(req, 503, body);
        return;
    }
    send_text(req, 200, "{\"status\": \"ok\"}");
}

/* GET /metrics: Prometheus' text format, without the API token (counts
 * only: no device id, no secret; docs/api.md). */
static void metrics(struct api *a, struct evhttp_request *req)
{
    struct evbuffer *b;

    if (!tokenless_get(req, API_METRICS_PATH)) {
        return;
    }
    b = evbuffer_new();
    if (!b || a->cfg.metrics(a->cfg.ctx, b) < 0) {
        if (b) evbuffer_free(b);
        send_text(req, 500, oom_body);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", API_METRICS_TYPE);
    http_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

int64_t api_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A request refused for its token, in the log: someone has a wrong token,
 * or is guessing. One line a second at most (a guesser must not flood the
 * log), saying how many were refused meanwhile. */
int api_log_pass(struct api *a, struct log_limit *l, const char *what, char *more, size_t cap)
{
    more[0] = '\0';
    return a->cfg.log && log_limit_say(l, API_DENIED_LOG_MS, 1, what, more, cap);
}

static void denied(struct api *a, struct evhttp_request *req, const char *path)
{
    char line[320], more[LOG_MORE_MAX], peer[80];

    if (!api_log_pass(a, &a->denied, "refused requests", more, sizeof more)) return;
    snprintf(line, sizeof line, "API: refused %.64s from %s: missing or wrong token%s",
             path ? path : "/", api_peer_text(evhttp_request_get_connection(req), peer, sizeof peer),
             more);
    a->cfg.log(a->cfg.ctx, line);
}

/* A download asked of the API while downloads have a listener of their
 * own (--ota-listen): 404 saying where they are, without the token (a
 * trial's device got "missing or wrong API token", which sent it looking
 * for a token), and a line in the log (one a second at most). */
static void misdirected(struct api *a, struct evhttp_request *req, const char *path)
{
    char where[160], body[400], line[480], more[LOG_MORE_MAX], peer[80];

    a->cfg.ota_where(a->cfg.ctx, where, sizeof where);
    snprintf(body, sizeof body, "{\"error\":\"this is the API of tcpota serve, not its download "
             "port: %s (--ota-listen); point the device's URL there\"}", where);
    if (api_log_pass(a, &a->misdirected, "such requests", more, sizeof more)) {
        snprintf(line, sizeof line, "API: %.64s asked of the API by %s: %s (--ota-listen); "
                 "answered 404%s", path,
                 api_peer_text(evhttp_request_get_connection(req), peer, sizeof peer), where, more);
        a->cfg.log(a->cfg.ctx, line);
    }
    send_text(req, 404, body);
}

/* 1 when path is the downloads' (HTTP_OTA_PREFIX), or "/ota" alone: a
 * device's URL without the model is told what to send (http_ota.c's 404),
 * not asked for the API's token (a trial). */
static int ota_path(const char *path)
{
    return path && (strncmp(path, HTTP_OTA_PREFIX, strlen(HTTP_OTA_PREFIX)) == 0 ||
                    strcmp(path, "/ota") == 0);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct api *a = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL, *bad = http_framing_bad(req);
    const char *host_bad = bad ? NULL : http_host_bad(req);
    char why[HTTP_HOST_REFUSAL_MAX], target[HTTP_HOST_NAME_MAX + 8];
    struct api_call *c;

    /* Set at the admission too (api_gate.c); again for a connection the
     * gate could not record, out of memory: what a request leaves in flight
     * must learn of its close. */
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), api_conn_closed, a);
    if (http_refuse_connect(req, "Allow: GET, HEAD, POST, PATCH, DELETE\r\n",
                            "{\"error\":\"CONNECT is not a method of this API (it is no"
                            " proxy); see docs/api.md\"}")) {
        return;
    }
    api_gate_request(a, req);
    /* A download's own handler checks its Host, and logs a refusal as it
     * logs every download's. */
    if (!bad && !host_bad && !(a->cfg.ota && ota_path(path)) &&
        http_host_refused(a->cfg.hosts, http_target_host(req, target, sizeof target), why,
                          sizeof why)) {
        /* Before every path, the tokenless ones too: what a page that
         * renamed this address could read is /metrics and the images (the
         * text holds no quote: http_host.h). */
        char body[sizeof why + 16];
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", why);
        send_text(req, 421, body);
        return;
    }
    if (bad || host_bad) {
        char body[200];
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", bad ? bad : host_bad);
        send_text(req, 400, body);
        return;
    }
    if (http_header_count(req, "Authorization") > 1) {
        /* libevent hands over the first, a proxy in front may check the
         * other: neither is taken (the downloads refuse any header twice). */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        send_text(req, 400, "{\"error\":\"Authorization: given twice; send it once\"}");
        return;
    }
    if (a->cfg.ota && ota_path(path)) {
        a->cfg.ota(req, a->cfg.ota_arg);
        return;
    }
    if (a->cfg.ota_where && ota_path(path)) {
        misdirected(a, req, path);
        return;
    }
    if (a->cfg.metrics && path && strcmp(path, API_METRICS_PATH) == 0) {
        tokenless_ends(a, req);
        metrics(a, req);
        return;
    }
    if (path && strcmp(path, API_HEALTH_PATH) == 0) {
        tokenless_ends(a, req);
        health(a, req);
        return;
    }
    if (dash_serve(req, path ? path : "/")) return; /* the page: no token, no data */
    c = api_call_new(a, req);
    if (!c) {
        send_text(req, 500, oom_body);
        return;
    }
    if (!authorized(a, req)) {
        denied(a, req, path);
        challenge(req);
        api_error(c, 401, NULL, "%s", API_TOKEN_MSG);
        return;
    }
    route(c, (int)evhttp_request_get_command(req), path ? path : "/",
          uri ? evhttp_uri_get_query(uri) : NULL);
}

struct api *api_start(const struct api_config *cfg, char *err, size_t errlen)
{
    struct api *a;

    if (!cfg->token || strlen(cfg->token) == 0 || !cfg->store || !cfg->base) {
        snprintf(err, errlen, "the API needs an event base, a store and a token");
        return NULL;
    }
    a = calloc(1, sizeof *a);
    if (!a || !(a->http = evhttp_new(cfg->base))) {
        snprintf(err, errlen, "out of memory starting the API");
        free(a);
        return NULL;
    }
    a->cfg = *cfg;
    if (!a->cfg.max_image) a->cfg.max_image = API_MAX_IMAGE_DEFAULT;
    /* A body over --max-image is read to its end (and dropped) before the
     * 413: a client still sending would otherwise meet a closed socket and
     * never read the answer ("closed the connection without an answer"). */
    (void)evhttp_set_flags(a->http, EVHTTP_SERVER_LINGERING_CLOSE);
    a->sock = evhttp_bind_socket_with_handle(a->http, cfg->host ? cfg->host : "127.0.0.1", cfg->port);
    if (!a->sock) {
        (void)log_listen_failed(err, errlen, cfg->host ? cfg->host : "127.0.0.1", cfg->port,
                                "the API", "--api", errno);
        evhttp_free(a->http);
        free(a);
        return NULL;
    }
    if (api_gate_start(a) != 0) {
        snprintf(err, errlen, "out of memory starting the API");
        evhttp_free(a->http);
        free(a);
        return NULL;
    }
    evhttp_set_max_headers_size(a->http, API_HEADERS_MAX);
    evhttp_set_timeout(a->http, API_TIMEOUT_S);
    /* Every method reaches handle(), which answers 405 in JSON. */
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(a->http, "application/json");
    evhttp_set_gencb(a->http, handle, a);
    return a;
}

struct evconnlistener *api_listener(const struct api *a)
{
    return evhttp_bound_socket_get_listener(a->sock);
}

uint16_t api_port(const struct api *a)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(a->sock);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) return 0;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

unsigned api_uploads(const struct api *a)
{
    const struct api_call *c;
    unsigned n = 0;

    for (c = a ? a->calls : NULL; c; c = c->next) {
        n += c->body != NULL;
    }
    return n;
}

void api_stop(struct api *a)
{
    if (!a) return;
    while (a->calls) {
        struct api_call *c = a->calls;
        /* Work off the loop ends first (it reads c->api): the loop will not
         * run its end. */
        offload_wait(c->job);
        c->job = NULL;
        a->calls = c->next;
        if (c->req && evhttp_request_get_connection(c->req) == NULL) evhttp_request_free(c->req);
        c->req = NULL;
        c->api = NULL;
        /* The store still reads the inputs the call holds (ids, paths): the
         * call lives on as an orphan that the store request's done frees. */
        if (!c->sr) call_free(c);
    }
    api_events_stop(a);
    api_gate_stop(a);
    json_decref(a->summary);
    evhttp_free(a->http);
    free(a);
}

/* Reads an existing token file (fd open); 0 or -1 with err. */
static int token_read(int fd, const char *path, char *token, size_t cap, char *err, size_t errlen)
{
    char buf[API_TOKEN_HEX + 4];
    struct stat st;
    ssize_t n;
    size_t len, i;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file; remove it (a new token is created)", path);
        return -1;
    }
    /* Refused, not mended as the other files of DIR are (fleet_files.h):
     * whoever read it may use it, and a chmod does not take that back. */
    if (st.st_mode & 077) {
        snprintf(err, errlen, "%s may be read by other users (mode %04o), and it is the API's"
                 " secret: chmod 600 %s if nobody else could have read it, else remove it for a"
                 " new token (and give that to the operators)", path,
                 (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    n = read(fd, buf, sizeof buf);
    len = n > 0 ? (size_t)n : 0;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    for (i = 0; i < len && ((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')); i++) {
    }
    if (n < 0 || len != API_TOKEN_HEX || i != len) {
        /* What is wrong, said (a trial's editor had put a byte-order mark
         * first, and "does not hold one token" did not tell). */
        char what[160];
        if (n < 0) {
            snprintf(what, sizeof what, "it cannot be read: %s", strerror(errno));
        } else if (i != len) {
            snprintf(what, sizeof what, "byte %zu is 0x%02x, not a lowercase hex digit (an editor's"
                     " byte-order mark, a space, capitals?)", i + 1, (unsigned)(unsigned char)buf[i]);
        } else {
            snprintf(what, sizeof what, "it holds %zu%s characters", len,
                     (size_t)n == sizeof buf ? " or more" : "");
        }
        snprintf(err, errlen, "%s does not hold one token of %u hex digits: %s; write the token "
                 "back as it was, or remove the file (a new token is created)", path,
                 API_TOKEN_HEX, what);
        return -1;
    }
    memcpy(token, buf, len);
    token[len] = 0;
    sodium_memzero(buf, sizeof buf);
    return 0;
}

/* Creates path with a new token; 0, 1 (it exists now) or -1 with err. */
static int token_create(const char *path, char *token, char *err, size_t errlen)
{
    uint8_t raw[API_TOKEN_BYTES];
    char line[API_TOKEN_HEX + 2];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (fd < 0) {
        if (errno == EEXIST) return 1;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(token, API_TOKEN_HEX + 1, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    snprintf(line, sizeof line, "%s\n", token);
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        (void)unlink(path);
        return -1;
    }
    sodium_memzero(line, sizeof line);
    close(fd);
    return 0;
}

int api_token_load_or_create(const char *dir, char *token, size_t cap, char *err, size_t errlen)
{
    char path[1024];
    int fd, rc, tries;

    if (cap < API_TOKEN_HEX + 1 || sodium_init() < 0) {
        snprintf(err, errlen, "cannot prepare the API token (buffer or libsodium)");
        return -1;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, FLEET_TOKEN_FILE) >= sizeof path) {
        snprintf(err, errlen, "the data directory's path is too long");
        return -1;
    }
    for (tries = 0; tries < 2; tries++) {
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            rc = token_read(fd, path, token, cap, err, errlen);
            close(fd);
            return rc;
        }
        if (errno == ELOOP) {
            snprintf(err, errlen, "%s is a symbolic link, not a regular file; remove it", path);
            return -1;
        }
        if (errno != ENOENT) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        rc = token_create(path, token, err, errlen);
        if (rc <= 0) return rc;
    }
    snprintf(err, errlen, "%s keeps appearing and vanishing; is another server starting?", path);
    return -1;
}
