/* http_ota_conn.c - the download listener of its own (--ota-listen): its
 * connections from accept to close (see http_ota.h).
 *
 * evhttp accepts by itself and hands a connection over only once a whole
 * request came, so a peer that opens connections and never finishes a
 * TLS handshake or a request cost the server about 40 KB each, for as long
 * as it kept sending a byte now and then (2,000 of them: 111 MB). Each
 * connection therefore gets, from its accept on:
 *  - the limits of admit.h (--max-conns, --max-unauth-per-addr), as on the
 *    device port;
 *  - one deadline (--idle-timeout) to a complete request, the TLS
 *    handshake included; after each answer the same deadline runs to the
 *    next request of a kept-alive connection.
 * libevent 2.1 offers no hook between accept and the request. What it
 * does offer: the bufferevent callback (evhttp_set_bevcb) runs inside the
 * accept, before the socket is set; the connection it is for is known
 * once the accept returns (the bufferevent's callback argument), with the
 * address accept() gave. So the callback makes the bufferevent and queues
 * it, and admit_cb, made active in that same loop turn (before any read of
 * the new socket), judges the connection. */
#include "http_ota_internal.h"
#include "http_reply.h" /* http_not_head_at, http_answer_close */

#include "admit.h"
#include "log.h"
#include "server_internal.h"
#include "text.h"
#include "tls_server.h" /* tls_error_reason */

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define OTA_HEADERS_MAX 8192         /* request header bytes on the listener of its own */
#define OTA_BODY_MAX 0               /* a download request has no body */
/* A deadline moved by the loop's late time fires this much after it: a
 * timer that fires a hair early finds the deadline not passed yet. */
#define OTA_DEADLINE_SLACK_S 0.01

/* One connection of the listener. */
struct ota_conn {
    struct http_ota *ota;
    struct ota_conn *prev, *next;    /* ota->fresh until admitted, then ota->conns */
    struct bufferevent *bev;         /* a reference of ours until admit_cb */
    struct evhttp_connection *evcon; /* once admitted */
    struct event *deadline;          /* pending while no request is complete */
    struct event *first;             /* plain: the first bytes readable (first_cb);
                                      * TLS: the answer to bytes not HTTP (tls_answer_cb) */
    struct evbuffer_cb_entry *first_in; /* TLS: the first decrypted bytes (tls_first_bytes) */
    struct event *peek;              /* TLS: the first bytes readable, before TLS (peek_cb) */
    int fd;                          /* -1 until admitted */
    uint8_t counted;                 /* in srv->unauth (admit.h) */
    uint8_t answered;                /* a request came: the deadline runs from its answer */
    double armed_at, lost_at;        /* the deadline's start, and server_loop_lost then */
    char addr[48], peer[64];         /* as accept() gave them (admit_one) */
};

/* ---- the log ------------------------------------------------------------ */

/* One line about a connection that its peer can cause at will: at most
 * LOG_PEER_BURST per LOG_PEER_MS (log_limit_pass), the next one said
 * telling how many were held back. */
static void __attribute__((format(printf, 5, 6)))
say_limited(struct http_ota *ota, struct log_limit *l, enum log_level lv, const char *peer,
            const char *fmt, ...)
{
    char msg[400], more[LOG_MORE_MAX];
    va_list ap;

    if (!log_limit_say(l, LOG_PEER_MS, LOG_PEER_BURST, "such lines", more, sizeof(more))) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    say_dev(ota->srv, lv, NULL, peer, "%s%s", msg, more);
}

/* ---- the list and the socket map ---------------------------------------- */

static void unlink_conn(struct ota_conn **head, struct ota_conn *oc)
{
    if (oc->prev) oc->prev->next = oc->next;
    else *head = oc->next;
    if (oc->next) oc->next->prev = oc->prev;
    oc->prev = oc->next = NULL;
}

static void push_conn(struct ota_conn **head, struct ota_conn *oc)
{
    oc->prev = NULL;
    oc->next = *head;
    if (*head) (*head)->prev = oc;
    *head = oc;
}

/* Room for socket fd in ota->byfd (a request finds its connection there).
 * 0, or -1 when out of memory. */
static int byfd_room(struct http_ota *ota, int fd)
{
    size_t n = ota->nbyfd ? ota->nbyfd : 256;
    struct ota_conn **p;

    if ((size_t)fd < ota->nbyfd) return 0;
    while (n <= (size_t)fd) n *= 2;
    if (!(p = realloc(ota->byfd, n * sizeof(*p)))) return -1;
    memset(p + ota->nbyfd, 0, (n - ota->nbyfd) * sizeof(*p));
    ota->byfd = p;
    ota->nbyfd = n;
    return 0;
}

/* The connection of req, when it is one of the listener's. */
static struct ota_conn *conn_of(const struct http_ota *ota, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev ? (int)bufferevent_getfd(bev) : -1;
    struct ota_conn *oc = fd >= 0 && (size_t)fd < ota->nbyfd ? ota->byfd[fd] : NULL;

    return oc && oc->evcon == evcon ? oc : NULL;
}

/* ---- the deadline ------------------------------------------------------- */

static void deadline_in(struct ota_conn *oc, double s)
{
    struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};

    evtimer_add(oc->deadline, &tv);
}

static void arm_deadline(struct ota_conn *oc)
{
    oc->armed_at = now_s();
    oc->lost_at = server_loop_lost(oc->ota->srv, oc->armed_at);
    deadline_in(oc, (double)oc->ota->srv->o->idle_timeout_s);
}

/* No complete request within --idle-timeout: of its accept (a handshake or
 * a request that did not finish, logged), or of its last answer (a
 * kept-alive connection that has nothing more to ask: closed quietly). */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_conn *oc = arg;
    struct http_ota *ota = oc->ota;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(oc->evcon);
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    unsigned s = ota->srv->o->idle_timeout_s;
    double left = server_time_left(ota->srv, oc->armed_at, oc->lost_at, (double)s, now_s());

    (void)fd;
    (void)what;
    if (left >= 0) {
        /* The loop ran late (stopped, starved): not the peer's time. */
        deadline_in(oc, left + OTA_DEADLINE_SLACK_S);
        return;
    }
    if (!oc->answered) {
        say_limited(ota, &ota->late_log, LOG_LV_WARN, oc->peer,
                    ssl && !SSL_is_init_finished(ssl)
                        ? "http: TLS handshake not finished within %u s of connecting; closing"
                        : "http: no complete request within %u s of connecting; closing",
                    s);
    }
    evhttp_connection_free(oc->evcon); /* conn_closed() frees oc */
}

/* ---- a connection's life ------------------------------------------------ */

static void conn_free(struct ota_conn *oc)
{
    if (oc->deadline) event_free(oc->deadline);
    if (oc->first) event_free(oc->first);
    if (oc->peek) event_free(oc->peek);
    free(oc);
}

/* The answer to bytes no HTTP request starts with. */
#define OTA_NOT_HTTP_BODY                                                                         \
    "not an HTTP request: this is tcpota serve's HTTP download port (--ota-listen); a tcpota"     \
    " device connects to its device port (--listen, default 8070)\n"
#define OTA_FIRST_PEEK 16u           /* the first bytes first_cb judges */
#define OTA_TLS_RECORD_HANDSHAKE 0x16 /* a TLS ClientHello's first byte */

/* The line for a connection whose first bytes are not HTTP (byte b). */
static void say_not_http(struct ota_conn *oc, unsigned char b)
{
    say_limited(oc->ota, &oc->ota->not_http_log, LOG_LV_INFO, oc->peer,
                "http: not an HTTP request (byte 0x%02x: a tcpota device? it connects to the"
                " device port, --listen); answered 400, closing", b);
}

/* The connection's first bytes are readable (a plain listener's): ours
 * from the socket, or evhttp's, when its read came first and holds them
 * while it waits for a line's end. A byte no request head holds
 * (http_not_head_at: a tcpota device's HELLO, a TLS ClientHello) is
 * answered 400 at once and the connection closed; before, evhttp waited
 * for a line's end that never came and the device for its timeout (30 s),
 * then tried again (http_answer_close: the peer's bytes read first). */
static void first_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_conn *oc = arg;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(oc->evcon);
    char head[OTA_FIRST_PEEK];
    ssize_t n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    size_t at;

    (void)what;
    if (n <= 0 && bev) {
        n = (ssize_t)evbuffer_copyout(bufferevent_get_input(bev), head, sizeof(head));
    }
    if (n <= 0 || (at = http_not_head_at(head, (size_t)n)) == (size_t)n) {
        return; /* HTTP so far, the end of the stream or nothing: evhttp's */
    }
    if ((unsigned char)head[0] == OTA_TLS_RECORD_HANDSHAKE) {
        say_limited(oc->ota, &oc->ota->not_http_log, LOG_LV_INFO, oc->peer,
                    "http: a TLS handshake on the plain download port: the device's URL must be"
                    " http://, or give the server --tls-cert for https://; closing");
    } else {
        say_not_http(oc, (unsigned char)head[at]);
    }
    /* conn_closed() frees oc */
    http_answer_close(oc->evcon, fd, "400 Bad Request", "text/plain", "", OTA_NOT_HTTP_BODY);
}

/* The answer on the HTTPS port to a client without TLS. */
#define OTA_NOT_TLS_BODY                                                                          \
    "this is tcpota serve's HTTPS download port: the device's URL must be https:// (a tcpota"      \
    " device connects to its device port, --listen)\n"

/* A TLS listener's connection: its first bytes readable, before OpenSSL
 * reads them. A TLS handshake (0x16) is left to TLS; anything else (plain
 * HTTP, a tcpota device without TLS) is answered 400 in the clear, which
 * curl shows and a tcpota device reads as an HTTP port (before: the
 * handshake failed without a word to the client, and a plain device tried
 * 20 times, 37 s, silent under --quiet). */
static void peek_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_conn *oc = arg;
    char head[OTA_FIRST_PEEK];
    ssize_t n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);

    (void)what;
    if (n <= 0 || (unsigned char)head[0] == OTA_TLS_RECORD_HANDSHAKE) {
        return; /* TLS, or the end of the stream: OpenSSL's */
    }
    if (http_not_head_at(head, (size_t)n) == (size_t)n) {
        say_limited(oc->ota, &oc->ota->not_http_log, LOG_LV_INFO, oc->peer,
                    "http: a plain HTTP request on the HTTPS download port: the device's URL must "
                    "be https://; answered 400, closing");
    } else {
        say_limited(oc->ota, &oc->ota->not_http_log, LOG_LV_INFO, oc->peer,
                    "http: not TLS on the HTTPS download port (byte 0x%02x: a tcpota device "
                    "without TLS? it connects to the device port, --listen); answered 400, "
                    "closing", (unsigned char)head[0]);
    }
    /* conn_closed() frees oc */
    http_answer_close(oc->evcon, fd, "400 Bad Request", "text/plain", "", OTA_NOT_TLS_BODY);
}

/* The 400 to bytes not HTTP inside TLS went out, or the peer went away
 * first: the connection closes (conn_closed() frees oc). */
static void tls_answered_cb(struct bufferevent *bev, void *arg)
{
    struct ota_conn *oc = arg;

    (void)bev;
    evhttp_connection_free(oc->evcon);
}

static void tls_answer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    tls_answered_cb(bev, arg);
}

/* What the peer sends meanwhile is read and dropped: unread at the close,
 * it would reset the connection under the answer. */
static void tls_answer_drain_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    (void)arg;
    (void)evbuffer_drain(in, evbuffer_get_length(in));
}

/* Made active by tls_first_bytes for bytes no request head holds, once
 * libevent is out of the buffer's callbacks: answers 400 inside TLS and
 * closes once it is sent. The connection is ours from here: evhttp, still
 * waiting for a line's end, gets no more of its events. */
static void tls_answer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ota_conn *oc = arg;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(oc->evcon);
    char reply[HTTP_ANSWER_MAX];
    size_t rl = http_answer_text(reply, sizeof reply, "400 Bad Request", "text/plain", "",
                                 OTA_NOT_HTTP_BODY);

    (void)fd;
    (void)what;
    evtimer_del(oc->deadline); /* answered: no "no complete request" line later */
    tls_answer_drain_cb(bev, oc); /* what came already */
    bufferevent_setcb(bev, tls_answer_drain_cb, tls_answered_cb, tls_answer_event_cb, oc);
    if (!rl || bufferevent_write(bev, reply, rl) != 0 || bufferevent_enable(bev, EV_WRITE) != 0) {
        evhttp_connection_free(oc->evcon);
    }
}

/* evbuffer callback on a TLS connection's decrypted input, once: its
 * first bytes, judged as first_cb judges a plain connection's (a tcpota
 * device with --tls on the HTTPS download port; before, evhttp waited for
 * a line's end and the device for its timeout, 20 times). */
static void tls_first_bytes(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
    struct ota_conn *oc = arg;
    char head[OTA_FIRST_PEEK];
    ev_ssize_t n;
    size_t at;

    if (!info->n_added) return;
    n = evbuffer_copyout(in, head, sizeof(head));
    (void)evbuffer_remove_cb_entry(in, oc->first_in); /* libevent allows it here */
    oc->first_in = NULL;
    if (n <= 0 || (at = http_not_head_at(head, (size_t)n)) == (size_t)n) return;
    say_not_http(oc, (unsigned char)head[at]);
    event_active(oc->first, EV_TIMEOUT, 0);
}

/* The connection closed (evhttp's close callback): its downloads stop
 * where they got (http_ota_closed), and it no longer counts. */
static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct ota_conn *oc = arg;
    struct http_ota *ota = oc->ota;
    struct server *srv = ota->srv;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

    http_ota_closed(evcon, ota);
    if (oc->first_in && bev) {
        (void)evbuffer_remove_cb_entry(bufferevent_get_input(bev), oc->first_in);
    }
    if (ssl) SSL_set_app_data(ssl, NULL); /* tls_info: the SSL outlives this call */
    if (oc->counted) unauth_del(&srv->unauth, oc->addr);
    if (oc->fd >= 0 && (size_t)oc->fd < ota->nbyfd) ota->byfd[oc->fd] = NULL;
    srv->nhttp--;
    unlink_conn(&ota->conns, oc);
    conn_free(oc);
}

/* The answer to a request went out: a kept-alive connection has the same
 * deadline to its next request (a trickled second request must not keep
 * it forever). */
static void answered_cb(struct evhttp_request *req, void *arg)
{
    struct ota_conn *oc = arg;

    (void)req;
    arm_deadline(oc);
}

void ota_conn_request(struct http_ota *ota, struct evhttp_request *req)
{
    struct ota_conn *oc = conn_of(ota, req);

    if (!oc) return;
    evtimer_del(oc->deadline);
    evhttp_connection_set_timeout(oc->evcon, (int)ota->srv->o->idle_timeout_s);
    oc->answered = 1;
    if (oc->counted) { /* it proved what an HTTP peer can: a whole request */
        unauth_del(&ota->srv->unauth, oc->addr);
        oc->counted = 0;
    }
    evhttp_request_set_on_complete_cb(req, answered_cb, oc);
}

/* Judges one connection evhttp has just made (see the top of the file).
 * Returns 0 when it is kept; else it is closed. */
static int admit_one(struct http_ota *ota, struct ota_conn *oc, struct evhttp_connection *evcon)
{
    struct server *srv = ota->srv;
    enum admit_verdict v;
    char *host = NULL, why[160];
    ev_uint16_t port = 0;

    evhttp_connection_get_peer(evcon, &host, &port);
    (void)text_copy(oc->addr, sizeof(oc->addr), host ? host : "?");
    snprintf(oc->peer, sizeof(oc->peer), "%s:%u", oc->addr, (unsigned)port);
    oc->evcon = evcon;
    if (byfd_room(ota, oc->fd) < 0 ||
        !(oc->deadline = evtimer_new(srv->base, deadline_cb, oc)) ||
        !(oc->first = srv->tls ? event_new(srv->base, -1, 0, tls_answer_cb, oc)
                               : event_new(srv->base, oc->fd, EV_READ, first_cb, oc)) ||
        (srv->tls && !(oc->first_in = evbuffer_add_cb(
                          bufferevent_get_input(evhttp_connection_get_bufferevent(evcon)),
                          tls_first_bytes, oc))) ||
        (srv->tls && !(oc->peek = event_new(srv->base, oc->fd, EV_READ, peek_cb, oc)))) {
        return -1;
    }
    v = admit_conn(srv, oc->addr, &oc->counted);
    if (v != ADMIT_OK) {
        if (admit_why(srv, v, oc->addr, why, sizeof(why))) {
            say_limited(ota, &ota->refused_log, LOG_LV_INFO, oc->peer, "http: refused: %s", why);
        }
        return -1;
    }
    ota->byfd[oc->fd] = oc;
    srv->nhttp++;
    push_conn(&ota->conns, oc);
    evhttp_connection_set_closecb(evcon, conn_closed, oc);
    arm_deadline(oc);
    event_add(srv->tls ? oc->peek : oc->first, NULL);
    return 0;
}

/* Made active by conn_bev: the accepts of this loop turn have returned. */
static void admit_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_ota *ota = arg;
    struct ota_conn *oc;

    (void)fd;
    (void)what;
    while ((oc = ota->fresh)) {
        struct bufferevent *bev = oc->bev;
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        void *evcon = NULL;

        unlink_conn(&ota->fresh, oc);
        bufferevent_getcb(bev, NULL, NULL, NULL, &evcon); /* evhttp's: the connection */
        oc->fd = (int)bufferevent_getfd(bev);
        oc->bev = NULL;
        if (!evcon || oc->fd < 0) {
            /* evhttp failed to make the connection (out of memory) and
             * dropped it: ours is the last reference. */
            if (ssl) SSL_set_app_data(ssl, NULL);
            bufferevent_decref(bev);
            conn_free(oc);
            continue;
        }
        bufferevent_decref(bev); /* the connection holds its own */
        if (admit_one(ota, oc, evcon) < 0) {
            if (ssl) SSL_set_app_data(ssl, NULL);
            evhttp_connection_free(evcon); /* no close callback set: oc is ours */
            conn_free(oc);
        }
    }
}

/* ---- TLS ------------------------------------------------------------------ */

/* A handshake that fails (plain HTTP on the HTTPS port, a client that
 * refuses the certificate) ends inside evhttp without a request: logged
 * here, as on the device port, or the operator sees nothing at all. The
 * peer is the one accept() gave (getpeername() here finds none once the
 * peer has reset). Any peer can fail handshakes as fast as it connects:
 * at most LOG_PEER_BURST lines a LOG_PEER_MS. The error stays queued for
 * libevent, which reads it next. */
static void tls_info(const SSL *ssl, int where, int ret)
{
    struct ota_conn *oc = SSL_get_app_data(ssl);
    unsigned long err;

    if (!oc || !(where & SSL_CB_ACCEPT_EXIT) || SSL_get_error(ssl, ret) != SSL_ERROR_SSL) {
        return;
    }
    err = ERR_peek_error();
    say_limited(oc->ota, &oc->ota->tls_failed_log, LOG_LV_INFO, oc->peer,
                "http: TLS handshake failed: %s; closed%s", tls_error_reason(err),
                ERR_GET_REASON(err) == SSL_R_HTTP_REQUEST
                    ? " (a plain HTTP request on the HTTPS port: the device's URL must be https://)"
                    : "");
}

/* ---- the listener --------------------------------------------------------- */

/* evhttp's bufferevent callback: runs inside each accept, before the
 * socket is set. Makes the connection's bufferevent (inside TLS when the
 * server has a certificate) and queues it for admit_cb. Out of memory for
 * our record, the connection goes on untracked (no deadline): TLS all the
 * same, never plain HTTP on the HTTPS port. */
static struct bufferevent *conn_bev(struct event_base *base, void *arg)
{
    struct http_ota *ota = arg;
    struct ota_conn *oc = calloc(1, sizeof(*oc));
    struct bufferevent *bev;
    SSL *ssl = NULL;

    if (ota->srv->tls) {
        if (!(ssl = SSL_new(ota->srv->tls))) {
            free(oc);
            return NULL; /* libevent makes a plain one, which cannot speak to a TLS client */
        }
        SSL_set_app_data(ssl, oc);
        SSL_set_info_callback(ssl, tls_info);
        bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev || !oc) {
        if (!bev) free(oc); /* libevent freed ssl with it */
        else if (ssl) SSL_set_app_data(ssl, NULL);
        return bev;
    }
    oc->ota = ota;
    oc->fd = -1;
    oc->bev = bev;
    bufferevent_incref(bev); /* admit_cb learns whether evhttp kept it */
    push_conn(&ota->fresh, oc);
    event_active(ota->admit, EV_TIMEOUT, 0);
    return bev;
}

int http_ota_listen(struct http_ota *ota, const char *host, uint16_t port, char *err,
                    size_t errlen)
{
    if (!(ota->http = evhttp_new(ota->srv->base)) ||
        !(ota->admit = event_new(ota->srv->base, -1, 0, admit_cb, ota))) {
        snprintf(err, errlen, "out of memory starting the HTTP downloads");
        return -1;
    }
    ota->sock = evhttp_bind_socket_with_handle(ota->http, host, port);
    if (!ota->sock) {
        (void)log_listen_failed(err, errlen, host, port, "HTTP downloads", "--ota-listen", errno);
        return -1;
    }
    evhttp_set_bevcb(ota->http, conn_bev, ota);
    evhttp_set_max_headers_size(ota->http, OTA_HEADERS_MAX);
    evhttp_set_max_body_size(ota->http, OTA_BODY_MAX);
    /* Until its first request a connection has the deadline above alone
     * (evhttp's timeout would race it and close without a line): this is
     * only a backstop for one we could not track (out of memory).
     * ota_conn_request then sets --idle-timeout between reads and writes
     * (a device that stops reading its download). */
    evhttp_set_timeout(ota->http, 2 * (int)ota->srv->o->idle_timeout_s);
    /* Every method reaches http_ota_handle, which answers 405 itself. */
    evhttp_set_allowed_methods(ota->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                               EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(ota->http, http_ota_handle, ota);
    return 0;
}

struct evconnlistener *http_ota_listener(const struct http_ota *ota)
{
    return ota->sock ? evhttp_bound_socket_get_listener(ota->sock) : NULL;
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

void ota_conn_close_all(struct http_ota *ota)
{
    struct ota_conn *oc;

    if (ota->http) evhttp_free(ota->http); /* closes its connections: conn_closed() runs */
    ota->http = NULL;
    while ((oc = ota->fresh)) { /* none outside an accept's loop turn; for safety */
        unlink_conn(&ota->fresh, oc);
        bufferevent_decref(oc->bev);
        conn_free(oc);
    }
    if (ota->admit) event_free(ota->admit);
    ota->admit = NULL;
    free(ota->byfd);
    ota->byfd = NULL;
    ota->nbyfd = 0;
}
