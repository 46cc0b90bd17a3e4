/* api_gate.c - the API listener's body limit, set from a connection's first
 * request head before evhttp reads a byte of its body.
 *
 * evhttp reads a request's whole body before the API sees the request, so
 * before its token is checked: with one limit for every request, --max-image
 * (64 MiB), anyone who could reach the listener had the server hold up to
 * that much per connection, as many connections as it liked (a review:
 * 10 connections, 664 MiB). libevent 2.1 offers no hook between a request's
 * head and its body. So, as the download listener does (http_ota_conn.c),
 * each connection is caught right after its accept (evhttp_set_bevcb, then
 * an event made active in the same loop turn, before any read), its reading
 * is held, and its first request head is looked at with MSG_PEEK, up to its
 * first Authorization line (within API_GATE_PEEK_MAX bytes):
 *  - the API's token there (Authorization: Bearer) lets the connection's
 *    requests have bodies up to --max-image (an upload);
 *  - any other keeps API_BODY_MAX (JSON requests are far smaller): a head
 *    that declares more is answered at once (refuse_body), a larger body
 *    that did not say so evhttp answers 413 while it reads and drops it
 *    (EVHTTP_SERVER_LINGERING_CLOSE): nothing is held. Each request of such
 *    a connection comes whole within API_WATCH_MS (watch_cb).
 * Then evhttp reads the connection as before. Only the first head is
 * looked at: a connection that began without the token cannot upload,
 * which no client of ours does (the dashboard's files, /health and
 * /metrics asked without the token, and a 401, close their connection:
 * dashboard.c, api.c). A head that does not come within
 * head_ms (API_TIMEOUT_S) of the accept closes the connection, however it
 * trickles, with a line in the log (at most one a second).
 *
 * The gate also counts the listener's connections, from the admission to
 * their close callback (api_conn_closed, set here), by descriptor: at
 * max_conns one more is answered 503 at once, before a byte of it is read,
 * and closed (logged at most once a second). */
#define _GNU_SOURCE /* POLLRDHUP */
#include "api_internal.h"
#include "http_reply.h" /* http_not_head_at, http_answer_close */
#include "text.h"        /* text_s */

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* A connection from its accept until its first request head was judged. */
struct api_gate {
    struct api *api;
    struct api_gate *prev, *next; /* a->gates */
    struct bufferevent *bev;      /* our reference, until the admission */
    struct evhttp_connection *evcon;
    struct event *ev;             /* the socket readable, or the deadline; a watch's timer */
    int64_t deadline_ms;          /* head_ms after the accept (monotonic) */
    int watching;                 /* judged without the token: each request timed (watch) */
};

static void unlink_gate(struct api *a, struct api_gate *g)
{
    if (g->prev) g->prev->next = g->next;
    else a->gates = g->next;
    if (g->next) g->next->prev = g->prev;
}

static void gate_free(struct api *a, struct api_gate *g)
{
    unlink_gate(a, g);
    if (g->ev) event_free(g->ev);
    if (g->bev) bufferevent_decref(g->bev);
    free(g);
}

/* What the n bytes of a request head peeked so far (the request line
 * first) say of its token: GATE_WAIT (nothing yet: the head goes on),
 * GATE_TOKEN (its first Authorization header, whole, is the API's bearer
 * token, as evhttp would take it) or GATE_NONE (another, or the head ended
 * without one). */
enum { GATE_WAIT, GATE_TOKEN, GATE_NONE };
static int head_token(const struct api *a, const char *head, size_t n)
{
    const char *p = memchr(head, '\n', n), *end = head + n;

    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((eol ? eol : end) - p);

        if (*p == '\r' || *p == '\n') return GATE_NONE; /* the blank line: the head ended */
        if (!eol) return GATE_WAIT;                      /* a line not whole yet */
        if (len > 14 && strncasecmp(p, "Authorization:", 14) == 0) {
            const char *v = p + 14;
            const char *ve = p + len;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            return api_bearer_ok(a, v, (size_t)(ve - v)) ? GATE_TOKEN : GATE_NONE;
        }
        p = eol;
    }
    return GATE_WAIT;
}

/* The length of a whole request head in head[0..n) (through its blank
 * line), or 0 while it is not all there. */
static size_t head_whole(const char *head, size_t n)
{
    const char *p = head, *end = head + n;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL && ++p < end) {
        if (*p == '\n') return (size_t)(p + 1 - head);
        if (*p == '\r' && p + 1 < end && p[1] == '\n') return (size_t)(p + 2 - head);
    }
    return 0;
}

/* The body a whole head declares: its Content-Length (saturating), or
 * UINT64_MAX for a Transfer-Encoding (a length not known before it ends);
 * 0 for none, or for a length libevent refuses itself (not digits). */
static uint64_t head_body(const char *head, size_t n)
{
    const char *p = memchr(head, '\n', n), *end = head + n;
    uint64_t len = 0;

    while (p && ++p < end && *p != '\r' && *p != '\n') {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) break;
        if ((size_t)(eol - p) > 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0) {
            return UINT64_MAX;
        }
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
            const char *v = p + 15;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            for (len = 0; v < eol && *v >= '0' && *v <= '9'; v++) {
                len = len > (UINT64_MAX - 9) / 10 ? UINT64_MAX : len * 10 + (uint64_t)(*v - '0');
            }
        }
        p = eol;
    }
    return len;
}

/* 1 when the peer will send nothing more (its FIN came, behind bytes a
 * peek does not take: recv() shows the bytes, not the end). */
static int peer_done(evutil_socket_t fd)
{
    struct pollfd p = {fd, POLLRDHUP, 0};

    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The answer to bytes that are no HTTP request. */
#define API_NOT_HTTP_BODY                                                                         \
    "{\"error\":\"not an HTTP request: this is the API of tcpota serve (HTTP); a tcpota device"   \
    " connects to its device port (tcpota serve --listen, default 8070), and with TLS only"       \
    " there\"}"

/* Lets evhttp read the connection again; the gate is done. Our event goes
 * first: libevent refuses a level-triggered read event (the bufferevent's)
 * on a descriptor that has an edge-triggered one. */
static void release(struct api *a, struct api_gate *g)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(g->evcon);

    gate_free(a, g);
    if (bev) bufferevent_enable(bev, EV_READ);
}

/* Waits on for the rest of the head, within what is left of the deadline
 * (a trickle does not move it). The event stays added (EV_PERSIST): added
 * again, epoll would report the bytes already there at once, for ever. */
static void wait_on(struct api *a, struct api_gate *g)
{
    int64_t left = g->deadline_ms - log_mono_ms();
    struct timeval tv = {0, 0};

    if (left > 0) {
        tv.tv_sec = (time_t)(left / 1000);
        tv.tv_usec = (suseconds_t)(left % 1000 * 1000);
    }
    if (event_add(g->ev, &tv) != 0) release(a, g); /* out of memory: evhttp reads it as before */
}

/* A connection judged without the token that has not sent a whole request
 * within API_WATCH_MS of its head or of its last answer: a request or a
 * body trickling (evhttp's own timeout starts again with each byte, and
 * such connections held the listener's places for ever: a trial's three
 * filled --api-max-conns 3, /health and the downloads answered 503). An
 * idle one is closed by evhttp's timeout (API_TIMEOUT_S) before this. */
static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct api_gate *g = arg;
    struct api *a = g->api;
    struct evhttp_connection *evcon = g->evcon;
    char peer[80], line[300], more[LOG_MORE_MAX];
    (void)fd;
    (void)what;

    if (api_log_pass(a, &a->gate_log, "such lines", more, sizeof more)) {
        snprintf(line, sizeof line, "API: %s, without the API's token, sent no whole request"
                 " within %.3g s (a request or its body trickling); closing%s",
                 api_peer_text(evcon, peer, sizeof peer), (double)API_WATCH_MS(a) / 1000, more);
        a->cfg.log(a->cfg.ctx, line);
    }
    gate_free(a, g);
    evhttp_connection_free(evcon);
}

static void watch_arm(struct api *a, struct api_gate *g)
{
    struct timeval tv = {(time_t)(API_WATCH_MS(a) / 1000),
                         (suseconds_t)(API_WATCH_MS(a) % 1000 * 1000)};

    (void)evtimer_add(g->ev, &tv);
}

/* Judged without the token: evhttp reads the connection from here, each of
 * its requests timed (watch_cb). Out of memory for the timer, it goes on
 * as before. */
static void watch(struct api *a, struct api_gate *g)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(g->evcon);

    event_free(g->ev); /* the edge-triggered read, before the bufferevent's read */
    g->ev = evtimer_new(a->cfg.base, watch_cb, g);
    if (!g->ev) {
        gate_free(a, g);
    } else {
        g->watching = 1;
        watch_arm(a, g);
    }
    if (bev) bufferevent_enable(bev, EV_READ);
}

static struct api_gate *watcher(const struct api *a, const struct evhttp_connection *evcon)
{
    struct api_gate *g;

    for (g = a->gates; g && evcon; g = g->next) {
        if (g->watching && g->evcon == evcon) return g;
    }
    return NULL;
}

static void answered_cb(struct evhttp_request *req, void *arg)
{
    struct api *a = arg;
    struct api_gate *g = watcher(a, evhttp_request_get_connection(req));

    if (g) watch_arm(a, g); /* the next request, whole, within API_WATCH_MS */
}

void api_gate_request(struct api *a, struct evhttp_request *req)
{
    struct api_gate *g = watcher(a, evhttp_request_get_connection(req));

    if (!g) return;
    evtimer_del(g->ev); /* the request is whole: not timed while it is answered */
    evhttp_request_set_on_complete_cb(req, answered_cb, a);
}

/* A head without the token that declares a body larger than such a
 * connection takes (or one of a length not known, chunked) is answered at
 * once, before a byte of the body is read: evhttp read and dropped all of
 * it first (EVHTTP_SERVER_LINGERING_CLOSE) and answered only then, never
 * for a length of 2^40 (a trial). An API path gets the 401 it would get
 * (a wrong token's upload was told "too large"), another a 413. Returns 1
 * when answered (the connection freed). */
static int refuse_body(struct api *a, struct api_gate *g, evutil_socket_t fd, const char *head,
                       size_t n)
{
    uint64_t body = head_body(head, n), limit = a->cfg.max_image < API_BODY_MAX
                                                    ? a->cfg.max_image : API_BODY_MAX;
    struct evhttp_connection *evcon = g->evcon;
    const char *sp = memchr(head, ' ', n);
    int api_path = sp && (size_t)(head + n - sp) > 4 && strncmp(sp + 1, "/v1/", 4) == 0;
    char peer[80], line[300], more[LOG_MORE_MAX], body_text[300];

    if (body <= limit || (body == UINT64_MAX && !api_path)) {
        return 0; /* a chunked body elsewhere: evhttp holds it to the limit, watch_cb to time */
    }
    if (api_log_pass(a, api_path ? &a->denied : &a->gate_log, api_path ? "refused requests" : "such lines", more,
                     sizeof more)) {
        snprintf(line, sizeof line, "API: refused %s: a request without the API's token that"
                 " declares a body (%s); answered %s before reading it%s",
                 api_peer_text(evcon, peer, sizeof peer),
                 body == UINT64_MAX ? "chunked" : "larger than such a request takes",
                 api_path ? "401" : "413", more);
        a->cfg.log(a->cfg.ctx, line);
    }
    gate_free(a, g); /* its event off the socket before the socket closes */
    if (api_path) {
        snprintf(body_text, sizeof body_text, "{\"error\":\"%s\"}", API_TOKEN_MSG);
        http_answer_close(evcon, fd, "401 Unauthorized", "application/json",
                          "WWW-Authenticate: Bearer realm=\"" API_REALM "\"\r\n", body_text);
    } else {
        snprintf(body_text, sizeof body_text, "{\"error\":\"a request without the API's token"
                 " takes a body of at most %llu bytes\"}", (unsigned long long)limit);
        http_answer_close(evcon, fd, "413 Payload Too Large", "application/json", "", body_text);
    }
    return 1;
}

static void peek_cb(evutil_socket_t fd, short what, void *arg)
{
    static char head[API_GATE_PEEK_MAX];
    struct api_gate *g = arg;
    struct api *a = g->api;
    ssize_t n;

    if (what & EV_TIMEOUT) {
        struct evhttp_connection *evcon = g->evcon;
        char peer[80], line[320], more[LOG_MORE_MAX];
        if (api_log_pass(a, &a->gate_log, "such lines", more, sizeof more)) {
            snprintf(line, sizeof line, "API: no request from %s within %.3g s of connecting;"
                     " closing%s", api_peer_text(evcon, peer, sizeof peer),
                     (double)a->cfg.head_ms / 1000, more);
            a->cfg.log(a->cfg.ctx, line);
        }
        gate_free(a, g); /* its event off the socket before the socket closes */
        evhttp_connection_free(evcon);
        return;
    }
    n = recv(fd, head, API_GATE_PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wait_on(a, g);
        return;
    }
    if (n > 0) {
        /* (All n bytes are the head's while it says nothing yet: a body
         * follows the blank line, which decides.) */
        int t = head_token(a, head, (size_t)n);
        /* A byte no head holds: a tcpota device's HELLO or a TLS
         * ClientHello on this plain port, whose client waits for an
         * answer (a device sent here waited 30 s for a hint). */
        if (t == GATE_WAIT && http_not_head_at(head, (size_t)n) < (size_t)n) {
            struct evhttp_connection *evcon = g->evcon;
            char peer[80], line[300], more[LOG_MORE_MAX];
            unsigned char b = (unsigned char)head[http_not_head_at(head, (size_t)n)];
            /* Logged too (a trial: the device was told, the operator not). */
            if (api_log_pass(a, &a->not_http_log, "such lines", more, sizeof more)) {
                snprintf(line, sizeof line, "API: not an HTTP request from %s (%s); answered 400,"
                         " closing%s", api_peer_text(evcon, peer, sizeof peer),
                         (unsigned char)head[0] == 0x16
                             ? "a TLS handshake: the API speaks plain HTTP; a TLS proxy goes in "
                               "front of it (docs/operations.md)"
                         : b == 0x01 ? "byte 0x01: a tcpota device? it connects to the device "
                                       "port, --listen"
                                     : "a byte no request holds",
                         more);
                a->cfg.log(a->cfg.ctx, line);
            }
            gate_free(a, g); /* its event off the socket before the socket closes */
            http_answer_close(evcon, fd, "400 Bad Request", "application/json", "", API_NOT_HTTP_BODY);
            return;
        }
        if (t == GATE_WAIT && (size_t)n < API_GATE_PEEK_MAX && !peer_done(fd)) {
            wait_on(a, g); /* the head is not far enough yet: the next bytes wake us */
            return;
        }
        if (t == GATE_TOKEN) {
            evhttp_connection_set_max_body_size(g->evcon, (ev_ssize_t)a->cfg.max_image);
            release(a, g);
            return;
        }
        size_t whole = head_whole(head, (size_t)n);
        if (whole && refuse_body(a, g, fd, head, whole)) {
            return;
        }
        watch(a, g);
        return;
    }
    /* Judged (the token, or none by the head's end or its first
     * API_GATE_PEEK_MAX bytes), or bytes no head holds (a TLS handshake:
     * the client waits for an answer), the end of the stream or an error
     * (evhttp meets them too): handed on. */
    release(a, g);
}

/* 1 when the descriptor s is counted now, growing the table to hold it:
 * the connection is held. 0: the listener is full, or out of memory for
 * the table (the connection goes on uncounted, as one the gate could not
 * record). */
static int hold(struct api *a, evutil_socket_t s, int *full)
{
    size_t i = (size_t)s;

    *full = 0;
    if (i >= a->held_cap) {
        size_t cap = a->held_cap ? a->held_cap : 256;
        uint8_t *t;
        while (cap <= i) cap *= 2;
        if (!(t = realloc(a->held, cap))) return 0;
        memset(t + a->held_cap, 0, cap - a->held_cap);
        a->held = t;
        a->held_cap = cap;
    }
    if (a->held[i]) return 1; /* a close not seen (its descriptor reused): counted once */
    if (a->nheld >= a->cfg.max_conns) {
        *full = 1;
        return 0;
    }
    a->held[i] = 1;
    a->nheld++;
    return 1;
}

void api_gate_closed(struct api *a, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t s = bev ? bufferevent_getfd(bev) : -1;
    struct api_gate *g = watcher(a, evcon);

    if (g) gate_free(a, g);

    if (s >= 0 && (size_t)s < a->held_cap && a->held[s]) {
        a->held[s] = 0;
        a->nheld--;
    }
}

/* One connection over max_conns: told so in the answer to a request it has
 * not sent yet (the client reads it as the answer to its first one). */
static void refuse_full(struct api *a, struct evhttp_connection *evcon, evutil_socket_t s)
{
    char body[300], peer[80], line[300], more[LOG_MORE_MAX], retry[40];

    snprintf(body, sizeof body, "{\"error\":\"the API holds %u connection%s already, its"
             " limit (tcpota serve --api-max-conns); try again in a moment, or restart the"
             " server with a higher limit\"}", a->cfg.max_conns, text_s(a->cfg.max_conns));
    snprintf(retry, sizeof retry, "Retry-After: %d\r\n", API_FULL_RETRY_S);
    if (api_log_pass(a, &a->full_log, "refused connections", more, sizeof more)) {
        snprintf(line, sizeof line, "API: refused %s: the listener holds %u connection%s already"
                 " (--api-max-conns)%s", api_peer_text(evcon, peer, sizeof peer),
                 a->cfg.max_conns, text_s(a->cfg.max_conns), more);
        a->cfg.log(a->cfg.ctx, line);
    }
    http_answer_close(evcon, s, "503 Service Unavailable", "application/json", retry, body);
}

/* Made active by gate_bev: the accepts of this loop turn have returned. */
static void admit_cb(evutil_socket_t fd, short what, void *arg)
{
    struct api *a = arg;
    struct api_gate *g, *newer, *oldest = NULL;
    struct timeval tv = {(time_t)(a->cfg.head_ms / 1000), (suseconds_t)(a->cfg.head_ms % 1000 * 1000)};

    (void)fd;
    (void)what;
    /* The new ones are at the front, newest first (gate_bev pushes there,
     * and each turn admits all): the first admitted one ends them, so that
     * connections waiting for their heads are not walked at every accept.
     * They are admitted oldest first, from the last new one back: first
     * come, first served (a trial's burst of five, newest first, had its
     * second and third refused and its fourth and fifth held). */
    for (g = a->gates; g && g->bev; g = g->next) oldest = g;
    for (g = oldest; g; g = newer) {
        void *evcon = NULL;
        evutil_socket_t s;
        int full;

        newer = g->prev;
        bufferevent_getcb(g->bev, NULL, NULL, NULL, &evcon); /* evhttp's: the connection */
        s = bufferevent_getfd(g->bev);
        if (!evcon || s < 0) {
            gate_free(a, g); /* evhttp dropped it (out of memory): ours was the last reference */
            continue;
        }
        bufferevent_decref(g->bev); /* the connection holds its own */
        g->evcon = evcon;
        bufferevent_disable(g->bev, EV_READ);
        g->bev = NULL;
        if (!hold(a, s, &full) && full) {
            gate_free(a, g);
            refuse_full(a, evcon, s);
            continue;
        }
        /* Also for one not counted (out of memory for the table): a
         * watcher must learn of its close (a review). */
        evhttp_connection_set_closecb(evcon, api_conn_closed, a);
        g->deadline_ms = log_mono_ms() + a->cfg.head_ms;
        if (!(g->ev = event_new(a->cfg.base, s, EV_READ | EV_ET | EV_PERSIST, peek_cb, g)) ||
            event_add(g->ev, &tv) != 0) {
            release(a, g); /* out of memory: the connection goes on with API_BODY_MAX */
        }
    }
}

/* evhttp's bufferevent callback: runs inside each accept, before the socket
 * is set. Out of memory for our record, the connection goes on unjudged,
 * with API_BODY_MAX. */
static struct bufferevent *gate_bev(struct event_base *base, void *arg)
{
    struct api *a = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct api_gate *g = bev ? calloc(1, sizeof *g) : NULL;

    if (!g) return bev;
    g->api = a;
    g->bev = bev;
    bufferevent_incref(bev); /* admit_cb learns whether evhttp kept it */
    g->next = a->gates;
    if (a->gates) a->gates->prev = g;
    a->gates = g;
    event_active(a->admit, EV_TIMEOUT, 0);
    return bev;
}

int api_gate_start(struct api *a)
{
    if (!a->cfg.head_ms) a->cfg.head_ms = API_TIMEOUT_S * 1000u;
    if (!a->cfg.max_conns) a->cfg.max_conns = API_CONNS_DEFAULT;
    if (!(a->admit = event_new(a->cfg.base, -1, 0, admit_cb, a))) return -1;
    evhttp_set_bevcb(a->http, gate_bev, a);
    evhttp_set_max_body_size(a->http, (ev_ssize_t)(a->cfg.max_image < API_BODY_MAX
                                                       ? a->cfg.max_image
                                                       : API_BODY_MAX));
    return 0;
}

void api_gate_stop(struct api *a)
{
    while (a->gates) gate_free(a, a->gates); /* evhttp_free frees the connections */
    free(a->held); /* their close callbacks then count nothing */
    a->held = NULL;
    a->held_cap = 0;
    a->nheld = 0;
    if (a->admit) event_free(a->admit);
    a->admit = NULL;
}
