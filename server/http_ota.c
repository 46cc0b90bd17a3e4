/* http_ota.c - HTTP(S) downloads for esp_https_ota devices (see http_ota.h). */
#include "http_ota.h"

#include "api_internal.h" /* api_printable: one rule for names */
#include "fleet.h"
#include "fleet_internal.h"
#include "http_range.h"
#include "log.h"
#include "metrics.h"
#include "server_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h> /* SIOCOUTQ */
#endif
#include <sys/queue.h>
#include <sys/socket.h>

#define OTA_SUFFIX ".bin"
#define OTA_WINDOW (256u * 1024u)    /* bytes queued at a time (progress is known per window) */
#define OTA_HEADERS_MAX 8192         /* request header bytes on the listener of its own */
#define OTA_BODY_MAX 0               /* a download request has no body */
#define OTA_TIMEOUT_S 60             /* a client that neither sends nor reads for this long */
#define OTA_HEADER_VALUE_MAX 200u    /* Range, If-Range: longer is refused */
#define OTA_RETRY_S "30"             /* Retry-After when the store failed */
#define OTA_REASON_HEADER "X-Tcpota-Reason"
#define OTA_ACK_POLL_MS 20           /* after the last byte: how often to look for its ack */
#define OTA_ACK_POLLS (OTA_TIMEOUT_S * 1000 / OTA_ACK_POLL_MS) /* then the client is given up */

struct http_ota {
    struct server *srv;
    struct evhttp *http;             /* the listener of its own, or NULL */
    struct evhttp_bound_socket *sock;
    struct dl *dls;                  /* requests being decided or sent */
    size_t nsending;
};

/* One download request: decided by the store's check-in, then sent one
 * window at a time. */
struct dl {
    struct http_ota *ota;            /* NULL: orphaned by http_ota_free (the store's done frees it) */
    struct evhttp_request *req;      /* NULL once libevent freed it (the client went away) */
    struct evhttp_connection *evcon;
    struct store_req *sr;            /* the check-in in flight */
    struct dl *prev, *next;
    struct image *img;               /* a reference while sending */
    struct evbuffer *buf;
    struct event *ack_timer;         /* after the last byte: waiting for the peer's ack */
    unsigned ack_polls;
    uint64_t rollout_id;
    uint32_t first, last;            /* the range sent, inclusive */
    uint32_t queued, sent;           /* next byte to queue; bytes up to here went out */
    uint32_t acked;                  /* bytes up to here the peer's TCP acknowledged (at least) */
    double progress_at;
    int head;                        /* HEAD: headers only */
    char has_range, has_if_range;
    char range[OTA_HEADER_VALUE_MAX + 1], if_range[OTA_HEADER_VALUE_MAX + 1];
    char id[TCPOTA_MAX_STR + 1], model[TCPOTA_MAX_NAME + 1], version[TCPOTA_MAX_NAME + 1];
    char addr[48], peer[64];
};

/* ---- replies ------------------------------------------------------------ */

static void add_header(struct evhttp_request *req, const char *k, const char *v)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), k, v);
}

/* {"error": msg} with code; the request is answered (and freed by libevent). */
static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *o;
    char *text;
    struct evbuffer *b = evbuffer_new();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    o = json_pack("{s:s}", "error", msg);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    add_header(req, "Content-Type", "application/json");
    if (b && text) evbuffer_add(b, text, strlen(text));
    evhttp_send_reply(req, code, NULL, b);
    if (b) evbuffer_free(b);
    free(text);
    json_decref(o);
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

static void dl_free(struct dl *d)
{
    dl_unlink(d);
    if (d->buf) evbuffer_free(d->buf);
    if (d->ack_timer) event_free(d->ack_timer);
    image_unref(d->img);
    free(d);
}

/* ---- sending ------------------------------------------------------------ */

static struct fleet_who who_of(const struct dl *d)
{
    struct fleet_who w = {d->id, d->rollout_id, d->img ? d->img->size : 0};
    return w;
}

static void window_done(struct evhttp_connection *evcon, void *arg);

/* Queues the next window of the range (by reference to the image's file). */
static void send_window(struct dl *d)
{
    uint32_t len = d->last + 1 - d->queued;

    if (len > OTA_WINDOW) len = OTA_WINDOW;
    evbuffer_add_file_segment(d->buf, d->img->seg, d->queued, len);
    d->queued += len;
    evhttp_send_reply_chunk_with_cb(d->req, d->buf, window_done, d);
}

/* Every byte of the range reached the peer: the end of the image makes the
 * device "verified" (of a range that ends earlier, only its progress is
 * noted). */
static void record_done(struct dl *d)
{
    struct server *srv = d->ota->srv;
    struct fleet_who w = who_of(d);

    if (d->last + 1 == d->img->size) {
        metrics_event(d->rollout_id, d->img->desc.id, METRICS_COMPLETED);
        fleet_step(srv, &w, STORE_ST_VERIFIED, d->img->desc.id, NULL, d->img->size,
                   "every byte sent over HTTP", 1, 0);
        say_dev(srv, 0, d->id, d->peer, "http: every byte of %s sent (bytes %u-%u of %u)",
                d->img->version, d->first, d->last, d->img->size);
    } else {
        fleet_step(srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, d->last + 1, NULL, 0, 1);
    }
}

/* The range is done: recorded, and the reply ended. */
static void finished(struct dl *d)
{
    struct evhttp_request *req = d->req;

    record_done(d);
    dl_free(d); /* before the reply ends: that may close the connection (closed()) */
    evhttp_send_reply_end(req);
}

/* Bytes written to the socket that its peer has not acknowledged yet
 * (Linux: SIOCOUTQ; elsewhere 0: written counts as received), or -1 when
 * the socket cannot tell. */
static long unacked(const struct dl *d)
{
#ifdef SIOCOUTQ
    struct bufferevent *bev = d->evcon ? evhttp_connection_get_bufferevent(d->evcon) : NULL;
    int n;

    if (!bev || ioctl(bufferevent_getfd(bev), SIOCOUTQ, &n) != 0 || n < 0) return -1;
    return n;
#else
    (void)d;
    return 0;
#endif
}

/* d->acked from the socket (kept when the socket cannot tell). */
static void update_acked(struct dl *d)
{
    long n = unacked(d);
    uint32_t acked;

    if (n < 0) return;
    /* Under TLS the queue holds record overhead too: never below first. */
    acked = (unsigned long)n >= d->sent - d->first ? d->first : d->sent - (uint32_t)n;
    if (acked > d->acked) d->acked = acked;
}

/* Every byte went out: the download is done once the peer's TCP has them
 * all (so that a device cut after the server wrote its last byte, which
 * then starts over, is not taken for one that rejected a whole image). */
static void await_ack(evutil_socket_t fd, short what, void *arg)
{
    struct dl *d = arg;
    struct timeval tv = {0, OTA_ACK_POLL_MS * 1000};

    (void)fd;
    (void)what;
    update_acked(d);
    if (d->acked == d->sent) {
        finished(d);
        return;
    }
    if (++d->ack_polls > OTA_ACK_POLLS) {
        say_dev(d->ota->srv, 0, d->id, d->peer, "http: no ack of the last bytes in %d s; closing",
                OTA_TIMEOUT_S);
        evhttp_connection_free(d->evcon); /* closed() records where it stopped */
        return;
    }
    if (!d->ack_timer && !(d->ack_timer = evtimer_new(d->ota->srv->base, await_ack, d))) {
        finished(d); /* out of memory: take the write for the ack */
        return;
    }
    evtimer_add(d->ack_timer, &tv);
}

static void window_done(struct evhttp_connection *evcon, void *arg)
{
    struct dl *d = arg;
    double now = now_s();

    (void)evcon;
    metrics_bytes(d->rollout_id, d->img->desc.id, d->queued - d->sent);
    d->sent = d->queued;
    if (d->sent > d->last) {
        await_ack(-1, 0, d);
        return;
    }
    update_acked(d);
    if (now - d->progress_at >= FLEET_PROGRESS_S) {
        struct fleet_who w = who_of(d);
        d->progress_at = now;
        fleet_step(d->ota->srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, d->acked, NULL,
                   0, 1);
    }
    send_window(d);
}

/* The connection of some requests closed (a cut, a timeout, the client
 * done): a download stops where its bytes stopped. */
static void closed(struct evhttp_connection *evcon, void *arg)
{
    struct http_ota *ota = arg;
    struct dl *d, *next;

    for (d = ota->dls; d; d = next) {
        next = d->next;
        if (d->evcon != evcon) continue;
        if (d->img) update_acked(d); /* the socket is still open here, and keeps its
                                        count after a reset */
        d->evcon = NULL;
        /* Detached from the connection (EOF while it was ours): ours to
         * free; attached: libevent frees it after this callback. */
        if (d->req && evhttp_request_get_connection(d->req) == NULL) evhttp_request_free(d->req);
        d->req = NULL;
        if (!d->img) continue; /* still waiting for the store: its done frees d */
        if (d->sent > d->last && d->acked == d->sent) {
            record_done(d); /* the client took every byte and closed before the next look */
            dl_free(d);
            continue;
        }
        {
            struct fleet_who w = who_of(d);
            fleet_step(ota->srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, d->acked, NULL,
                       0, 1);
        }
        say_dev(ota->srv, 0, d->id, d->peer, "http: connection closed: %u bytes of range %u-%u "
                "written, up to byte %u acknowledged (image of %u bytes)", d->sent - d->first,
                d->first, d->last, d->acked, d->img->size);
        dl_free(d);
    }
}

/* Starts the answer: headers (200 or 206) and the first window. */
static void start(struct dl *d, struct image *img, const struct http_range *rg, const char *etag)
{
    struct server *srv = d->ota->srv;
    struct evhttp_request *req = d->req;
    char len[24], cr[80];
    struct fleet_who w;

    snprintf(len, sizeof(len), "%u", (unsigned)(rg->last - rg->first + 1));
    add_header(req, "Content-Type", "application/octet-stream");
    add_header(req, "Content-Length", len);
    add_header(req, "ETag", etag);
    add_header(req, "Accept-Ranges", "bytes");
    add_header(req, "Cache-Control", "no-store"); /* the answer depends on the device */
    add_header(req, HTTP_OTA_VERSION_HEADER, img->version);
    if (rg->status == 206) {
        snprintf(cr, sizeof(cr), "bytes %u-%u/%u", (unsigned)rg->first, (unsigned)rg->last,
                 img->size);
        add_header(req, "Content-Range", cr);
    }
    say_dev(srv, 0, d->id, d->peer, "http: %s %s: %d, image %s (rollout %llu), bytes %u-%u of %u",
            d->head ? "HEAD" : "GET", d->has_range ? d->range : "(no Range)", rg->status,
            img->version, (unsigned long long)d->rollout_id, (unsigned)rg->first,
            (unsigned)rg->last, img->size);
    if (d->head) {
        evhttp_send_reply(req, rg->status, NULL, NULL);
        dl_free(d);
        return;
    }
    if (!(d->buf = evbuffer_new())) {
        reply_error(req, 500, "the server is out of memory; try again");
        dl_free(d);
        return;
    }
    d->img = image_ref(img);
    d->ota->nsending++;
    d->first = d->queued = d->sent = d->acked = (uint32_t)rg->first;
    d->last = (uint32_t)rg->last;
    d->progress_at = now_s();
    if (d->first == 0) metrics_event(d->rollout_id, img->desc.id, METRICS_OFFERED);
    w = who_of(d);
    fleet_step(srv, &w, STORE_ST_DOWNLOADING, img->desc.id, NULL, d->first, NULL, 0, 0);
    evhttp_send_reply_start(req, rg->status, NULL);
    send_window(d);
}

/* ---- deciding ----------------------------------------------------------- */

/* What the device's earlier download says now that it asks again: it runs
 * the image (updated), or it was sent every byte and starts over on its old
 * version (failed: rolled back, or the image was rejected). Returns 1 for
 * the latter. */
static int outcome_of_last(struct dl *d, struct store_req *r, int resuming)
{
    struct store_checkin_out *o = r->u.checkin.out;
    struct store_device *dev = &o->dev;
    struct fleet_who w = {d->id, o->rollout.id, o->image.size};
    char why[2 * STORE_REASON_MAX]; /* the store keeps STORE_REASON_MAX bytes of it */

    if (!r->u.checkin.has_rollout || strcmp(dev->image, o->image.idhex) != 0 ||
        (dev->state != STORE_ST_VERIFIED && dev->state != STORE_ST_DOWNLOADING)) {
        return 0;
    }
    if (strcmp(d->version, o->image.version) == 0) {
        snprintf(why, sizeof(why), "runs %s (%s)", d->version, HTTP_OTA_VERSION_HEADER);
        metrics_event(o->rollout.id, o->image.id, METRICS_UPDATED);
        fleet_step(d->ota->srv, &w, STORE_ST_UPDATED, o->image.id, NULL, o->image.size, why, 1, 0);
        dev->state = STORE_ST_UPDATED;
        say_dev(d->ota->srv, 0, d->id, d->peer, "http: report: runs %s now: updated", d->version);
        return 0;
    }
    if (dev->state != STORE_ST_VERIFIED || resuming) {
        return 0;
    }
    snprintf(why, sizeof(why), "sent every byte of %s, asks again on %s: rolled back or rejected it",
             o->image.version, d->version);
    metrics_event(o->rollout.id, o->image.id, METRICS_FAILED);
    fleet_step(d->ota->srv, &w, STORE_ST_FAILED, o->image.id, o->image.id, 0, why, 1, 0);
    dev->state = STORE_ST_FAILED;
    say_dev(d->ota->srv, 1, d->id, d->peer, "http: %s; not offered again", why);
    return 1;
}

static void checkin_done(struct store_req *r)
{
    struct dl *d = r->arg;
    struct server *srv;
    struct tcpota_srv_hello h;
    struct image *img, *cand;
    struct http_range rg;
    enum store_dev_state st;
    char why[160], etag[2 * TCPOTA_ID_LEN + 3];
    int failed = 0, resuming = 0;

    d->sr = NULL;
    if (!d->ota || !d->req) { /* orphaned, or the client went away */
        store_req_free(r);
        if (d->ota) dl_free(d);
        else free(d);
        return;
    }
    srv = d->ota->srv;
    if (r->rc < 0) {
        say_dev(srv, 1, d->id, d->peer, "http: store error: %s", r->err);
        add_header(d->req, "Retry-After", OTA_RETRY_S);
        reply_error(d->req, 503, "the server's database failed; try again in %s s", OTA_RETRY_S);
        store_req_free(r);
        dl_free(d);
        return;
    }
    metrics_checkin(METRICS_HTTP);
    if (r->u.checkin.has_rollout) {
        struct store_image *si = &r->u.checkin.out->image;
        snprintf(etag, sizeof(etag), "\"%s\"", si->idhex);
        resuming = http_range_decide(d->has_range ? d->range : NULL,
                                     d->has_if_range ? d->if_range : NULL, etag, si->size,
                                     &rg) == 206 && rg.first > 0;
    }
    failed = outcome_of_last(d, r, resuming);
    memset(&h, 0, sizeof(h));
    h.device_id = d->id;
    h.model = d->model;
    h.version = d->version;
    img = fleet_decide(srv, r, &h, failed, &d->rollout_id, &st, &cand, why, sizeof(why));
    if (!img) {
        const struct image *about = cand;
        if (fleet_changes(&r->u.checkin.out->dev, st, about, why)) {
            struct fleet_who w = {d->id, d->rollout_id, about ? about->size : 0};
            fleet_step(srv, &w, st, about ? about->desc.id : NULL, NULL, 0, why, 0, 0);
        }
        say_dev(srv, 0, d->id, d->peer, "http: decision: %s: %s",
                st == STORE_ST_WAITING ? "waiting" : "no update", why);
        add_header(d->req, OTA_REASON_HEADER, why);
        evhttp_send_reply(d->req, 204, NULL, NULL);
        store_req_free(r);
        dl_free(d);
        return;
    }
    store_req_free(r);
    snprintf(etag, sizeof(etag), "\"%s\"", img->idhex);
    http_range_decide(d->has_range ? d->range : NULL, d->has_if_range ? d->if_range : NULL, etag,
                      img->size, &rg);
    if (rg.status == 416) {
        char cr[40];
        snprintf(cr, sizeof(cr), "bytes */%u", img->size);
        add_header(d->req, "Content-Range", cr);
        add_header(d->req, "ETag", etag);
        say_dev(srv, 0, d->id, d->peer, "http: %s: 416 (the image has %u bytes)", d->range,
                img->size);
        reply_error(d->req, 416, "%s (the image has %u bytes)", rg.why, img->size);
        dl_free(d);
        return;
    }
    start(d, img, &rg, etag);
}

/* ---- the request -------------------------------------------------------- */

/* Copies header name of req into dst (cap bytes); 0 absent, 1 copied, -1
 * after answering 400 (too long). */
static int copy_header(struct evhttp_request *req, const char *name, char *dst, size_t cap)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), name);

    if (!v) return 0;
    if (strlen(v) >= cap) {
        reply_error(req, 400, "%s: longer than %zu bytes", name, cap - 1);
        return -1;
    }
    memcpy(dst, v, strlen(v) + 1);
    return 1;
}

/* A path segment percent-decoded into dst (cap bytes); -1 when it does not
 * decode to a string (a NUL inside) or does not fit. */
static int decode(const char *seg, size_t n, char *dst, size_t cap)
{
    char raw[3 * TCPOTA_MAX_STR + 1];
    size_t len;
    char *s;

    if (n >= sizeof(raw)) return -1;
    memcpy(raw, seg, n);
    raw[n] = 0;
    if (!(s = evhttp_uridecode(raw, 0, &len))) return -1;
    if (len != strlen(s) || len >= cap) {
        free(s);
        return -1;
    }
    memcpy(dst, s, len + 1);
    free(s);
    return 0;
}

/* Reads the model, device id and version of the request into d. Returns
 * 0, or -1 after answering 400. */
static int parse_target(struct evhttp_request *req, const char *path, const char *query,
                        struct dl *d)
{
    const char *model = path + strlen(HTTP_OTA_PREFIX), *slash = strchr(model, '/');
    const char *file = slash ? slash + 1 : NULL, *v;
    struct evkeyvalq q;
    struct evkeyval *kv;
    size_t flen;

    if (decode(model, slash ? (size_t)(slash - model) : strlen(model), d->model, sizeof(d->model)) < 0 ||
        !api_printable(d->model, TCPOTA_MAX_NAME, 0)) {
        reply_error(req, 400, "model: 1..%u printable characters expected in /ota/<model>",
                    TCPOTA_MAX_NAME);
        return -1;
    }
    if (file) {
        flen = strlen(file);
        if (flen <= strlen(OTA_SUFFIX) || strcmp(file + flen - strlen(OTA_SUFFIX), OTA_SUFFIX) != 0 ||
            decode(file, flen - strlen(OTA_SUFFIX), d->id, sizeof(d->id)) < 0) {
            reply_error(req, 400, "device: expected /ota/<model>/<device id>.bin, the id 1..%u "
                        "printable characters", TCPOTA_MAX_STR);
            return -1;
        }
    }
    TAILQ_INIT(&q);
    if (query && evhttp_parse_query_str(query, &q) < 0) {
        reply_error(req, 400, "the query string is malformed");
        return -1;
    }
    for (kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        char *dst = strcmp(kv->key, "device") == 0 ? d->id : strcmp(kv->key, "version") == 0 ? d->version : NULL;
        size_t cap = dst == d->id ? sizeof(d->id) : sizeof(d->version);
        if (!dst || (dst == d->id && file) || dst[0] || strlen(kv->value) >= cap) {
            reply_error(req, 400, "%s: %s", kv->key, !dst ? "unknown query parameter (device and "
                        "version are known)" : dst == d->id && file ? "the path names the device "
                        "already" : dst[0] ? "given twice" : "too long");
            evhttp_clear_headers(&q);
            return -1;
        }
        memcpy(dst, kv->value, strlen(kv->value) + 1);
    }
    evhttp_clear_headers(&q);
    if (!api_printable(d->id, TCPOTA_MAX_STR, 0)) {
        reply_error(req, 400, "device: give the device id (1..%u printable characters) as "
                    "?device=<id> or /ota/<model>/<id>.bin", TCPOTA_MAX_STR);
        return -1;
    }
    v = evhttp_find_header(evhttp_request_get_input_headers(req), HTTP_OTA_VERSION_HEADER);
    if (v && d->version[0] && strcmp(v, d->version) != 0) {
        reply_error(req, 400, "version: ?version= and %s differ", HTTP_OTA_VERSION_HEADER);
        return -1;
    }
    if (v && strlen(v) < sizeof(d->version)) memcpy(d->version, v, strlen(v) + 1);
    if (!api_printable(d->version, TCPOTA_MAX_NAME, 0)) {
        reply_error(req, 400, "version: send the version the device runs (1..%u printable "
                    "characters) in the header %s (or ?version=)", TCPOTA_MAX_NAME,
                    HTTP_OTA_VERSION_HEADER);
        return -1;
    }
    return 0;
}

/* Whether the request may be served at all; answers it when not. */
static int admitted(struct http_ota *ota, struct evhttp_request *req, const char *id)
{
    if (ota->srv->o->require_auth) {
        reply_error(req, 403, "this server requires device authentication (--require-auth); HTTP "
                    "downloads cannot authenticate a device");
        return 0;
    }
    if (fleet_has_secret(ota->srv, id)) {
        reply_error(req, 403, "device %s authenticates with a secret: it is served by the tcpota "
                    "protocol only, never over HTTP without proof", id);
        return 0;
    }
    return 1;
}

static void peer_of(struct evhttp_request *req, struct dl *d)
{
    char *host = NULL;
    ev_uint16_t port = 0;

    evhttp_connection_get_peer(evhttp_request_get_connection(req), &host, &port);
    snprintf(d->addr, sizeof(d->addr), "%s", host ? host : "?");
    snprintf(d->peer, sizeof(d->peer), "%s:%u", d->addr, (unsigned)port);
}

void http_ota_handle(struct evhttp_request *req, void *arg)
{
    struct http_ota *ota = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct store_req *r;
    struct http_range probe;
    struct dl *d;
    int rc;

    if (!path) { /* the request line or its headers did not parse, or were too long */
        rc = evhttp_request_get_response_code(req);
        reply_error(req, rc >= 400 ? rc : 400, "malformed request (or headers over %d bytes)",
                    OTA_HEADERS_MAX);
        return;
    }
    if (strncmp(path, HTTP_OTA_PREFIX, strlen(HTTP_OTA_PREFIX)) != 0) {
        reply_error(req, 404, "no such path %s; downloads are GET /ota/<model>?device=<id> "
                    "(docs/http-ota.md)", path);
        return;
    }
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        add_header(req, "Allow", "GET, HEAD");
        reply_error(req, 405, "downloads answer GET and HEAD only");
        return;
    }
    metrics_connection(METRICS_HTTP);
    if (!(d = calloc(1, sizeof(*d)))) {
        reply_error(req, 500, "the server is out of memory; try again");
        return;
    }
    d->head = m == EVHTTP_REQ_HEAD;
    if (parse_target(req, path, evhttp_uri_get_query(uri), d) < 0 || !admitted(ota, req, d->id) ||
        (rc = copy_header(req, "Range", d->range, sizeof(d->range))) < 0) {
        free(d);
        return;
    }
    d->has_range = (char)rc;
    if ((rc = copy_header(req, "If-Range", d->if_range, sizeof(d->if_range))) < 0) {
        free(d);
        return;
    }
    d->has_if_range = (char)rc;
    /* A malformed Range is refused before it costs a check-in. */
    if (d->has_range && http_range_decide(d->range, NULL, "", UINT64_MAX, &probe) == 400) {
        reply_error(req, 400, "%s", probe.why);
        free(d);
        return;
    }
    peer_of(req, d);
    r = store_req_new(STORE_CHECKIN, checkin_done, d);
    if (!r) {
        reply_error(req, 500, "the server is out of memory; try again");
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
    evhttp_connection_set_closecb(d->evcon, closed, ota);
    d->sr = r;
    if (fleet_submit(ota->srv, r) < 0) {
        d->sr = NULL;
        reply_error(req, 503, "the server's database cannot take the request; try again");
        dl_free(d);
    }
}

/* ---- the listener ------------------------------------------------------- */

struct http_ota *http_ota_new(struct server *srv)
{
    struct http_ota *ota = calloc(1, sizeof(*ota));

    if (ota) ota->srv = srv;
    return ota;
}

/* Every connection of the listener inside TLS (evhttp's hook). */
static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    struct http_ota *ota = arg;
    SSL *ssl = SSL_new(ota->srv->tls);

    return ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE)
               : NULL;
}

int http_ota_listen(struct http_ota *ota, const char *host, uint16_t port, char *err,
                    size_t errlen)
{
    if (!(ota->http = evhttp_new(ota->srv->base))) {
        snprintf(err, errlen, "out of memory starting the HTTP downloads");
        return -1;
    }
    ota->sock = evhttp_bind_socket_with_handle(ota->http, host, port);
    if (!ota->sock) {
        snprintf(err, errlen, "cannot listen on %s:%u for HTTP downloads (--ota-listen): address "
                 "in use or not valid here; choose another", host, (unsigned)port);
        return -1;
    }
    if (ota->srv->tls) evhttp_set_bevcb(ota->http, tls_bev, ota);
    evhttp_set_max_headers_size(ota->http, OTA_HEADERS_MAX);
    evhttp_set_max_body_size(ota->http, OTA_BODY_MAX);
    evhttp_set_timeout(ota->http, OTA_TIMEOUT_S);
    /* Every method reaches http_ota_handle, which answers 405 itself. */
    evhttp_set_allowed_methods(ota->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(ota->http, http_ota_handle, ota);
    return 0;
}

uint16_t http_ota_port(const struct http_ota *ota)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (!ota->sock || getsockname(evhttp_bound_socket_get_fd(ota->sock), (struct sockaddr *)&ss, &sl) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
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

size_t http_ota_count(const struct http_ota *ota)
{
    return ota ? ota->nsending : 0;
}

void http_ota_free(struct http_ota *ota)
{
    struct dl *d, *next;

    if (!ota) return;
    if (ota->http) evhttp_free(ota->http); /* closes its connections: closed() runs */
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
        dl_free(d);
    }
    free(ota);
}
