/* http_ota.c - HTTP(S) downloads for esp_https_ota devices: the requests,
 * and the downloads server's life (see http_ota.h; the listener's
 * connections are http_ota_conn.c's). */
#include "http_ota_internal.h"

#include "api_internal.h" /* api_printable: one rule for names */
#include "fleet.h" /* FLEET_RETRY_DOWN_S */
#include "fleet_internal.h"
#include "http_host.h"
#include "http_reply.h"
#include "log.h"
#include "metrics.h"
#include "rollout.h" /* rollout_ids_add */
#include "server_internal.h"
#include "text.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define OTA_SUFFIX ".bin"
#define OTA_ERROR_MAX 512            /* an error's message to the device */

/* ---- replies ------------------------------------------------------------ */

void ota_add_header(struct evhttp_request *req, const char *k, const char *v)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), k, v);
}

/* Answers {"error": msg} with code. */
static void reply_error(struct evhttp_request *req, int code, const char *msg)
{
    json_t *o;
    char *text;
    struct evbuffer *b = evbuffer_new();

    o = api_error_object(msg);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    ota_add_header(req, "Content-Type", "application/json");
    /* An error ends its connection: kept alive, one peer's refused
     * requests (every one under --require-auth, a 404 anywhere) held
     * --max-conns slots for as long as it asked once per --idle-timeout,
     * released from --max-unauth-per-addr by the first (a review). A
     * device that is refused or told to come back connects again anyway. */
    ota_add_header(req, "Connection", "close");
    if (b && text) evbuffer_add(b, text, strlen(text));
    http_reply(req, code, NULL, b);
    if (b) evbuffer_free(b);
    free(text);
    json_decref(o);
}

void ota_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[OTA_ERROR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_error(req, code, msg);
}

/* "HOST" and "HOST:PORT" of req's peer into addr and peer ("?" when the
 * connection has gone). */
static void req_peer(struct evhttp_request *req, char *addr, size_t acap, char *peer, size_t pcap)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;

    if (evcon) evhttp_connection_get_peer(evcon, &host, &port);
    snprintf(addr, acap, "%s", host ? host : "?");
    snprintf(peer, pcap, "%s:%u", addr, (unsigned)port);
}

/* The log's line of a refusal (at most OTA_REFUSED_LOG_BURST a
 * OTA_REFUSED_LOG_MS), ota_refuse's and a CONNECT's. */
static void refusal_said(struct http_ota *ota, const struct dl *d, struct evhttp_request *req,
                         int code, const char *msg)
{
    char addr[sizeof(d->addr)], peer[sizeof(d->peer)], more[LOG_MORE_MAX];
    const char *uri = evhttp_request_get_uri(req);

    if (log_limit_say(&ota->refused, OTA_REFUSED_LOG_MS, OTA_REFUSED_LOG_BURST, "refusals", more,
                      sizeof(more))) {
        if (!d || !d->peer[0]) req_peer(req, addr, sizeof(addr), peer, sizeof(peer));
        say_dev(ota->srv, code >= 500 ? LOG_LV_ERROR : LOG_LV_WARN, d && d->id[0] ? d->id : NULL,
                d && d->peer[0] ? d->peer : peer, "http: refused %.*s with %d: %s%s",
                OTA_LOG_URI_MAX, uri ? uri : "(no request line)", code, msg, more);
    }
}

void ota_refuse(struct http_ota *ota, const struct dl *d, struct evhttp_request *req, int code,
                const char *fmt, ...)
{
    char msg[OTA_ERROR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    refusal_said(ota, d, req, code, msg);
    reply_error(req, code, msg);
}

/* ---- the list of requests ----------------------------------------------- */

static void dl_unlink(struct dl *d)
{
    if (!d->ota) return;
    if (d->prev) d->prev->next = d->next;
    else d->ota->dls = d->next;
    if (d->next) d->next->prev = d->prev;
    if (d->img) d->ota->nsending--;
    d->prev = d->next = NULL;
}

void ota_dl_free(struct dl *d)
{
    dl_unlink(d);
    if (d->buf) evbuffer_free(d->buf);
    if (d->ack_timer) event_free(d->ack_timer);
    image_unref(d->img);
    free(d);
}

/* ---- the request -------------------------------------------------------- */

/* A header given twice is refused (400), as a query parameter is: libevent
 * would hand over the first, and neither may be guessed at. 0, or -1 after
 * refusing d's request. */
static int header_once(struct http_ota *ota, struct dl *d, struct evhttp_request *req,
                       const char *name)
{
    if (http_header_count(req, name) <= 1) return 0;
    ota_refuse(ota, d, req, 400, "%s: given twice; send it once", name);
    return -1;
}

/* Copies header name of req into dst (cap bytes); 0 absent, 1 copied, -1
 * after refusing d's request with 400 (too long, or given twice). */
static int copy_header(struct http_ota *ota, struct dl *d, struct evhttp_request *req,
                       const char *name, char *dst, size_t cap)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);

    if (header_once(ota, d, req, name) < 0) return -1;
    if (!v) return 0;
    if (strlen(v) >= cap) {
        ota_refuse(ota, d, req, 400, "%s: longer than %zu bytes", name, cap - 1);
        return -1;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 1;
}

/* A path segment percent-decoded into dst (cap bytes). Returns NULL, or
 * why it does not decode to a string that fits (each said apart: a trial
 * was told only what the path should look like). */
static const char *decode(const char *seg, size_t n, char *dst, size_t cap)
{
    char raw[3 * TCPOTA_MAX_STR + 1], unused[2];
    size_t len;
    char *s;

    if (n >= sizeof(raw)) return "too long";
    memcpy(raw, seg, n);
    raw[n] = 0;
    if (api_query_bad_escape(raw, unused, sizeof(unused))) return API_BAD_ESCAPE_SAYS;
    if (!(s = evhttp_uridecode(raw, 0, &len))) return "out of memory";
    if (len != strlen(s) || len >= cap) {
        int nul = len != strlen(s);
        free(s);
        return nul ? "%00 decodes to a byte that is not printable" : "too long";
    }
    memcpy(dst, s, len + 1);
    free(s);
    return NULL;
}

/* What is wrong with a name (an id, a model) api_name_ok refused: empty,
 * or a byte outside printable ASCII. */
static const char *name_fault(const char *s)
{
    return !*s ? "empty" : "a byte that is not printable ASCII (0x20..0x7e) in it: a percent-encoded"
                           " UTF-8 letter, or a control character";
}

/* What is wrong with version v (NULL: none came), for refuse_version;
 * buf (cap bytes) may hold it. */
static const char *version_fault(const char *v, char *buf, size_t cap)
{
    if (!v || !*v) return "none given";
    if (strlen(v) <= TCPOTA_MAX_NAME) return "a space or a character that is not printable in it";
    snprintf(buf, cap, "longer than %u characters", TCPOTA_MAX_NAME);
    return buf;
}

/* Refuses a version with 400, saying why and the whole rule: printable,
 * no spaces (the rule of the API and of a signed image's version, so that
 * a device can report the version an image is named by). */
static void refuse_version(struct http_ota *ota, struct dl *d, struct evhttp_request *req,
                           const char *why)
{
    ota_refuse(ota, d, req, 400, "version: %s; send the version the device runs (1..%u printable "
               "ASCII characters, no spaces) in the header %s (or ?version=)", why, TCPOTA_MAX_NAME,
               HTTP_OTA_VERSION_HEADER);
}

/* 1 when the raw query of req gives key a value with a '+' in it. */
static int query_plus(struct evhttp_request *req, const char *key)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    size_t k = strlen(key);

    for (; q && *q; q += strcspn(q, "&"), q += *q == '&') {
        if (strncmp(q, key, k) == 0 && q[k] == '=') {
            const char *end = q + strcspn(q, "&"), *plus = strchr(q, '+');
            if (plus && plus < end) return 1;
        }
    }
    return 0;
}

/* The version of the request into d: the header's, which must agree with
 * ?version= when both came. Returns 0, or -1 after refusing it with 400. */
static int take_version(struct http_ota *ota, struct evhttp_request *req, struct dl *d)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req),
                                       HTTP_OTA_VERSION_HEADER);
    char why[48];

    if (header_once(ota, d, req, HTTP_OTA_VERSION_HEADER) < 0) return -1;
    if (v && d->version[0] && strcmp(v, d->version) != 0) {
        ota_refuse(ota, d, req, 400, "version: ?version= and %s differ", HTTP_OTA_VERSION_HEADER);
        return -1;
    }
    if (v && !d->version[0] && strlen(v) >= sizeof(d->version)) {
        refuse_version(ota, d, req, version_fault(v, why, sizeof(why)));
        return -1;
    }
    if (v) memcpy(d->version, v, strlen(v) + 1);
    if (!api_printable(d->version, TCPOTA_MAX_NAME, 0)) {
        /* A query's '+' decodes to a space: 1.0.0+build5 sent as typed
         * was told of a space it did not have (a trial). */
        refuse_version(ota, d, req, !v && query_plus(req, "version")
                                        ? "a '+' in a query stands for a space: write it as %2B"
                                          " (1.0.0%2Bbuild5)"
                                        : version_fault(d->version, why, sizeof(why)));
        return -1;
    }
    return 0;
}

/* Reads the model, device id and version of the request into d. Returns
 * 0, or -1 after refusing it with 400. */
static int parse_target(struct http_ota *ota, struct evhttp_request *req, const char *path,
                        const char *query, struct dl *d)
{
    const char *model = path + strlen(HTTP_OTA_PREFIX), *slash = strchr(model, '/');
    const char *file = slash ? slash + 1 : NULL;
    struct evkeyvalq q;
    struct evkeyval *kv;
    size_t flen;
    char bad[TCPOTA_MAX_NAME + 1], why[48];
    const char *fault;

    fault = decode(model, slash ? (size_t)(slash - model) : strlen(model), d->model,
                   sizeof(d->model));
    if (fault || !api_name_ok(d->model, TCPOTA_MAX_NAME)) {
        ota_refuse(ota, d, req, 400, "model: %s; 1..%u printable ASCII characters expected in"
                   " /ota/<model>", fault ? fault : name_fault(d->model), TCPOTA_MAX_NAME);
        return -1;
    }
    if (file) {
        flen = strlen(file);
        if (flen <= strlen(OTA_SUFFIX) || strcmp(file + flen - strlen(OTA_SUFFIX), OTA_SUFFIX) != 0) {
            ota_refuse(ota, d, req, 400, "device: expected /ota/<model>/<device id>.bin, the id "
                       "1..%u printable ASCII characters", TCPOTA_MAX_STR);
            return -1;
        }
        if ((fault = decode(file, flen - strlen(OTA_SUFFIX), d->id, sizeof(d->id))) != NULL) {
            d->id[0] = '\0'; /* not an id: the log names none */
            ota_refuse(ota, d, req, 400, "device: %s; an id in /ota/<model>/<id>.bin is 1..%u"
                       " printable ASCII characters", fault, TCPOTA_MAX_STR);
            return -1;
        }
    }
    TAILQ_INIT(&q);
    if (api_query_bad_escape(query, bad, sizeof(bad))) {
        ota_refuse(ota, d, req, 400, "%s: %s", bad[0] ? bad : "the query", API_BAD_ESCAPE_SAYS);
        return -1;
    }
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        ota_refuse(ota, d, req, 400, "the query string is malformed");
        return -1;
    }
    for (kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        char *dst = strcmp(kv->key, "device") == 0 ? d->id : strcmp(kv->key, "version") == 0 ? d->version : NULL;
        size_t cap = dst == d->id ? sizeof(d->id) : sizeof(d->version);
        /* A device named by the path has its id (never empty) in d->id
         * already: dst[0] refuses it too, the message says which. */
        if (dst == d->version && !dst[0] && strlen(kv->value) >= cap) {
            refuse_version(ota, d, req, version_fault(kv->value, why, sizeof(why)));
            evhttp_clear_headers(&q);
            return -1;
        }
        if (dst == d->id && !dst[0] && !file && strlen(kv->value) >= cap) {
            ota_refuse(ota, d, req, 400, "device: longer than %u characters: an id is 1 to %u "
                       "printable ASCII characters", TCPOTA_MAX_STR, TCPOTA_MAX_STR);
            evhttp_clear_headers(&q);
            return -1;
        }
        if (!dst || dst[0] || strlen(kv->value) >= cap) {
            /* The name shortened: the reason must fit the answer (a trial's
             * 700-byte name left nothing of it). */
            ota_refuse(ota, d, req, 400, "%.*s%s: %s", OTA_NAME_SHOWN, kv->key,
                       strlen(kv->key) > OTA_NAME_SHOWN ? "..." : "",
                       !dst ? "unknown query parameter (device and version are known)"
                       : dst == d->id && file ? "the path names the device already"
                       : dst[0] ? "given twice" : "too long");
            evhttp_clear_headers(&q);
            return -1;
        }
        memcpy(dst, kv->value, strlen(kv->value) + 1);
    }
    evhttp_clear_headers(&q);
    if (api_query_nul(query, bad, sizeof(bad))) { /* refused, not cut short */
        if (strcmp(bad, "version") == 0) {
            refuse_version(ota, d, req, "%00 decodes to a byte that is not printable");
            return -1;
        }
        /* The log's line names no device: the id before the NUL is
         * another's, perhaps a real one (a trial's "a%00" was logged as a). */
        if (strcmp(bad, "device") == 0) d->id[0] = '\0';
        ota_refuse(ota, d, req, 400, "%s: %%00 decodes to a byte that is not printable; send "
                   "1..%u printable ASCII characters", bad,
                   strcmp(bad, "device") == 0 ? TCPOTA_MAX_STR : TCPOTA_MAX_NAME);
        return -1;
    }
    if (!api_name_ok(d->id, TCPOTA_MAX_STR)) {
        fault = d->id[0] ? name_fault(d->id) : NULL;
        d->id[0] = '\0'; /* not an id: the log names none */
        if (fault) {
            ota_refuse(ota, d, req, 400, "device: %s; an id is 1..%u printable ASCII characters",
                       fault, TCPOTA_MAX_STR);
        } else {
            ota_refuse(ota, d, req, 400, "device: give the device id (1..%u printable ASCII"
                                         " characters)"
                       " as ?device=<id> or /ota/<model>/<id>.bin", TCPOTA_MAX_STR);
        }
        return -1;
    }
    return take_version(ota, req, d);
}

/* Whether the request may be served at all; answers it when not. */
static int admitted(struct http_ota *ota, struct evhttp_request *req, const struct dl *d)
{
    int secret = fleet_has_secret(ota->srv, d->id);

    if (!ota->srv->o->require_auth && !secret) return 1;
    /* Counted as a device that did not authenticate (the fleet summary). */
    server_auth_refused(ota->srv, AUTH_REFUSED_NO_PROOF, d->id, d->addr);
    if (ota->srv->o->require_auth) {
        ota_refuse(ota, d, req, 403, "this server requires device authentication (--require-auth); "
                   "HTTP downloads cannot authenticate a device");
    } else {
        ota_refuse(ota, d, req, 403, "device %s authenticates with a secret: it is served by the "
                   "tcpota protocol only, never over HTTP without proof", d->id);
    }
    return 0;
}

/* A download on a database that has answered nothing for stuck s: queued
 * behind it, it waited until the device's HTTP client gave up. Told to come
 * back (503, Retry-After), as a v1 check-in is (fleet.c, hung_no_update). */
static void hung_refuse(struct http_ota *ota, const struct dl *d, struct evhttp_request *req,
                        double stuck)
{
    char retry[16];

    snprintf(retry, sizeof(retry), "%u", FLEET_RETRY_DOWN_S);
    ota_add_header(req, "Retry-After", retry);
    ota_refuse(ota, d, req, 503, "the server's database has answered nothing for %.0f s; try"
               " again in %s s", stuck, retry);
    metrics_deferred(METRICS_HTTP, METRICS_DB_HUNG);
}

void http_ota_answer_stuck(struct http_ota *ota, double stuck)
{
    struct dl *d;

    for (d = ota ? ota->dls : NULL; d; d = d->next) {
        if (d->sr && d->req && !d->sr->parked && !d->img) {
            /* Answered: its check-in's done (the store still reads d's
             * strings) finds no request and frees d. */
            hung_refuse(ota, d, d->req, stuck);
            d->req = NULL;
        }
    }
}

void http_ota_handle(struct evhttp_request *req, void *arg)
{
    struct http_ota *ota = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *bad, *host_bad = NULL;
    char why[HTTP_HOST_REFUSAL_MAX], target[HTTP_HOST_NAME_MAX + 8];
    struct store_req *r;
    struct http_range probe;
    struct dl *d;
    double stuck;
    int rc;

    if (m == EVHTTP_REQ_CONNECT) { /* logged as every refusal, answered as none (http_reply.h) */
        refusal_said(ota, NULL, req, 405, "downloads answer GET and HEAD only (CONNECT: closed)");
        (void)http_refuse_connect(req, "Allow: GET, HEAD\r\n",
                                  "{\"error\":\"downloads answer GET and HEAD only\"}");
        return;
    }
    if (ota->http) ota_conn_request(ota, req); /* the listener's: its deadline stops */
    if (!path) { /* the request line or its headers did not parse, or were too long */
        rc = evhttp_request_get_response_code(req);
        ota_refuse(ota, NULL, req, rc >= 400 ? rc : 400, "malformed request (or headers over "
                   "the limit)");
        return;
    }
    if ((bad = http_framing_bad(req)) != NULL || (host_bad = http_host_bad(req)) != NULL) {
        ota_refuse(ota, NULL, req, 400, "%s", bad ? bad : host_bad);
        return;
    }
    if (http_host_refused(ota->srv->o->http_hosts, http_target_host(req, target, sizeof target),
                          why, sizeof why)) {
        ota_refuse(ota, NULL, req, 421, "%s", why);
        return;
    }
    if (strncmp(path, HTTP_OTA_PREFIX, strlen(HTTP_OTA_PREFIX)) != 0) {
        /* On the listener of its own, a fleet CLI, a browser or a scraper
         * given this port for the API's is told where the API is. Named
         * as sent: "//ota/esp32/x.bin" parses as host "ota", path
         * "/esp32/x.bin" (a trial was told "no such path /esp32/x.bin"). */
        const char *sent = evhttp_request_get_uri(req);
        int len = (int)strcspn(sent, "?");
        ota_refuse(ota, NULL, req, 404, "no such path %.*s%s; downloads are GET "
                   "/ota/<model>?device=<id> (docs/http-ota.md)",
                   len < OTA_LOG_URI_MAX ? len : OTA_LOG_URI_MAX, sent,
                   ota->http ? " on tcpota serve's HTTP download port (--ota-listen): the API,"
                               " the dashboard and /metrics are on its --api address" : "");
        return;
    }
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        ota_add_header(req, "Allow", "GET, HEAD");
        ota_refuse(ota, NULL, req, 405, "downloads answer GET and HEAD only");
        return;
    }
    metrics_connection(METRICS_HTTP);
    if (!(d = calloc(1, sizeof(*d)))) {
        ota_refuse(ota, NULL, req, 500, "the server is out of memory; try again");
        return;
    }
    d->head = m == EVHTTP_REQ_HEAD;
    req_peer(req, d->addr, sizeof(d->addr), d->peer, sizeof(d->peer));
    if (parse_target(ota, req, path, evhttp_uri_get_query(uri), d) < 0 || !admitted(ota, req, d) ||
        (rc = copy_header(ota, d, req, "Range", d->range, sizeof(d->range))) < 0) {
        free(d);
        return;
    }
    d->has_range = (char)rc;
    if ((rc = copy_header(ota, d, req, "If-Range", d->if_range, sizeof(d->if_range))) < 0) {
        free(d);
        return;
    }
    d->has_if_range = (char)rc;
    /* A malformed Range is refused before it costs a check-in. */
    if (d->has_range && http_range_decide(d->range, NULL, "", UINT64_MAX, &probe) == 400) {
        ota_refuse(ota, d, req, 400, "%s", probe.why);
        free(d);
        return;
    }
    if ((stuck = store_stuck_s())) {
        hung_refuse(ota, d, req, stuck);
        free(d);
        return;
    }
    r = store_req_new(STORE_CHECKIN, ota_checkin_done, d);
    if (!r) {
        ota_refuse(ota, d, req, 500, "the server is out of memory; try again");
        free(d);
        return;
    }
    r->u.checkin.id = d->id;
    r->u.checkin.model = d->model;
    r->u.checkin.version = d->version;
    r->u.checkin.addr = d->addr;
    r->u.checkin.proto = STORE_PROTO_HTTP;
    d->ota = ota;
    d->req = req;
    d->evcon = evhttp_request_get_connection(req);
    d->next = ota->dls;
    if (ota->dls) ota->dls->prev = d;
    ota->dls = d;
    /* Each connection calls http_ota_closed from its close callback: the
     * listener's (http_ota_conn.c) and the API's (api_conn_closed). */
    d->sr = r;
    if (fleet_submit(ota->srv, r) < 0) {
        d->sr = NULL;
        ota_refuse(ota, d, req, 503, "the server's database cannot take the request; try again");
        ota_dl_free(d);
    }
}

/* ---- the downloads server ------------------------------------------------ */

struct http_ota *http_ota_new(struct server *srv)
{
    struct http_ota *ota = calloc(1, sizeof(*ota));

    if (ota) {
        ota->srv = srv;
        ota->cuts = calloc(OTA_CUT_SLOTS, sizeof(*ota->cuts));
    }
    return ota;
}

struct ota_cut *ota_cut_slot(struct http_ota *ota, const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    if (!ota->cuts) return NULL;
    for (; *id; id++) h = (h ^ (uint8_t)*id) * 16777619u;
    return &ota->cuts[h % OTA_CUT_SLOTS];
}

size_t http_ota_live(const struct http_ota *ota, struct metrics_live *out, size_t cap)
{
    const struct dl *d;
    size_t n = 0;

    for (d = ota->dls; d && n < cap; d = d->next) {
        if (!d->img) continue;
        out[n].rollout = d->rollout_id;
        out[n].image = d->img->desc.id;
        out[n].active = 1;
        out[n].bytes = 0; /* counted per window as it goes out */
        n++;
    }
    return n;
}

void http_ota_rollouts(const struct http_ota *ota, uint64_t *ids, size_t *n, size_t cap)
{
    const struct dl *d;

    for (d = ota ? ota->dls : NULL; d && *n < cap; d = d->next) {
        if (d->img && d->rollout_id) rollout_ids_add(ids, n, cap, d->rollout_id);
    }
}

size_t http_ota_count(const struct http_ota *ota)
{
    return ota ? ota->nsending : 0;
}

void http_ota_free(struct http_ota *ota)
{
    struct dl *d, *next;

    if (!ota) return;
    ota_conn_close_all(ota); /* closes the listener's connections: http_ota_closed() runs */
    for (d = ota->dls; d; d = next) {
        next = d->next;
        if (d->evcon) evhttp_connection_set_closecb(d->evcon, NULL, NULL);
        if (d->req && evhttp_request_get_connection(d->req) == NULL) evhttp_request_free(d->req);
        d->req = NULL;
        if (d->sr) { /* the store still reads its strings: its done frees d */
            d->ota = NULL;
            d->prev = d->next = NULL;
            continue;
        }
        ota_dl_free(d);
    }
    free(ota->cuts);
    free(ota);
}
