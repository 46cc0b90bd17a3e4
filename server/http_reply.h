/*
 * http_reply.h - one rule for every reply of the server's HTTP listeners
 * (the API, the dashboard, /metrics, HTTP downloads): a HEAD request gets
 * the headers of the GET and no body.
 */
#ifndef TCPOTA_SERVER_HTTP_REPLY_H
#define TCPOTA_SERVER_HTTP_REPLY_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* major, minor: a request's HTTP version */
#include <openssl/ssl.h>
#include <sys/queue.h> /* TAILQ_FOREACH, which keyvalq_struct.h does not bring */
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* evhttp_send_reply(req, code, reason, body), but for HEAD the body's
 * length alone, as Content-Length: libevent 2.1 leaves that header out for
 * HEAD and still writes the body after the headers, which a keep-alive
 * client (or a proxy) then reads as the start of the next response. */
static inline void http_reply(struct evhttp_request *req, int code, const char *reason,
                              struct evbuffer *body)
{
    if (!reason && code == 421) reason = "Misdirected Request"; /* not in libevent 2.1's table */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        char len[24];

        snprintf(len, sizeof len, "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_remove_header(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", len);
        evhttp_send_reply(req, code, reason, NULL);
        return;
    }
    evhttp_send_reply(req, code, reason, body);
}

/* How many times req carries header name (any case). */
/* The offset of the first byte in head[0..n) that no request head holds
 * (a control byte but CR, LF and TAB, or DEL: a tcpota device's HELLO, a
 * TLS ClientHello on a plain port), or n when there is none. Both HTTP
 * listeners answer such bytes at once (api_gate.c, http_ota_conn.c):
 * evhttp would wait for a line's end until its timeout. */
static inline size_t http_not_head_at(const char *head, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char b = (unsigned char)head[i];
        if ((b < 0x20 && b != '\r' && b != '\n' && b != '\t') || b == 0x7f) break;
    }
    return i;
}

#define HTTP_DRAIN_MAX (64u << 10) /* what an answer at once reads of its peer, at most */

#define HTTP_ANSWER_MAX 800 /* an answer at once, headers and body */

/* The bytes of an answer at once (http_answer_close) in reply[0..size):
 * their length, or 0 when they do not fit. */
static inline size_t http_answer_text(char *reply, size_t size, const char *status,
                                      const char *ctype, const char *headers, const char *body)
{
    int rl = snprintf(reply, size, "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s", status, ctype,
                      strlen(body), headers, body);

    return rl > 0 && (size_t)rl < size ? (size_t)rl : 0;
}

/* Closes evcon's socket s once its answer is sent: what the peer sent
 * already (up to HTTP_DRAIN_MAX: a peer that keeps sending must not hold
 * the loop) is read first, so that the close does not reset the
 * connection under the answer. Frees evcon. */
static inline void http_close_drained(struct evhttp_connection *evcon, evutil_socket_t s)
{
    char sink[4096];
    size_t drained = 0;
    ssize_t k;

    (void)shutdown(s, SHUT_WR);
    while (drained < HTTP_DRAIN_MAX && (k = recv(s, sink, sizeof sink, MSG_DONTWAIT)) > 0) {
        drained += (size_t)k;
    }
    evhttp_connection_free(evcon);
}

/* Answers a connection at once, before evhttp reads a request of it (on
 * its socket s): status ("400 Bad Request"), the body's content type,
 * extra headers (each ending in CRLF) and the body, then the close
 * (http_close_drained). Frees evcon. */
static inline void http_answer_close(struct evhttp_connection *evcon, evutil_socket_t s,
                                     const char *status, const char *ctype, const char *headers,
                                     const char *body)
{
    char reply[HTTP_ANSWER_MAX];
    size_t rl = http_answer_text(reply, sizeof reply, status, ctype, headers, body);

    if (rl) (void)send(s, reply, rl, MSG_DONTWAIT | MSG_NOSIGNAL);
    http_close_drained(evcon, s);
}

/* libevent 2.1 takes a CONNECT for a tunnel's start: its answer gets no
 * length (the body runs to the close), and the connection is not closed,
 * Connection: close or not, until its timeout (60 s), while the bytes
 * behind it are read as the next request (a hostile trial). Neither
 * listener is a proxy: a CONNECT is answered 405 with its length at once
 * (inside TLS by SSL_write, the handshake done), and closed
 * (http_answer_close); allow: its Allow header, ending in CRLF. Returns 1
 * when req was one (its connection is then freed, req with it). */
static inline int http_refuse_connect(struct evhttp_request *req, const char *allow,
                                      const char *body)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    char reply[HTTP_ANSWER_MAX];
    size_t n;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_CONNECT || !bev) {
        return 0;
    }
    if (!ssl) {
        http_answer_close(evcon, bufferevent_getfd(bev), "405 Method Not Allowed",
                          "application/json", allow, body);
        return 1;
    }
    if ((n = http_answer_text(reply, sizeof reply, "405 Method Not Allowed", "application/json",
                              allow, body)) != 0) {
        (void)SSL_write(ssl, reply, (int)n);
    }
    http_close_drained(evcon, bufferevent_getfd(bev));
    return 1;
}

static inline unsigned http_header_count(struct evhttp_request *req, const char *name)
{
    const struct evkeyval *kv;
    unsigned n = 0;

    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        n += strcasecmp(kv->key, name) == 0;
    }
    return n;
}

/* The bytes of an HTTP token (RFC 9110, 5.6.2): a header's name. */
#define HTTP_TOKEN_CHARS                                                                       \
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

/* Why req's framing cannot be trusted, or NULL: libevent 2.1 takes the
 * first of several Content-Length headers, and one with a sign in it,
 * where a proxy in front may have framed the same bytes otherwise (request
 * smuggling). A Transfer-Encoding other than chunked (gzip, xchunked)
 * libevent ignores: it reads the body by Content-Length, or none, and the
 * body's bytes became the next request (a hostile trial ran a smuggled
 * rollout pause so). Debian 12's libevent (2.1.12 with its security fixes)
 * refuses one beside a Content-Length itself, as it does chunked beside
 * one or after a chunked one; upstream 2.1.12 read such a body chunked.
 * Nor may a HEAD or a TRACE carry a body: libevent reads none for them, so
 * the bytes of one would be read as the next request, where a proxy took
 * them for a body. Such a request is answered 400 and its connection
 * closed (Connection: close), so that no byte after it is read as a
 * request of its own. */
static inline const char *http_framing_bad(struct evhttp_request *req)
{
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const struct evkeyval *kv;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int bodyless = m == EVHTTP_REQ_HEAD || m == EVHTTP_REQ_TRACE;
    unsigned lengths = 0;

    TAILQ_FOREACH(kv, h, next) {
        /* A name is a token (RFC 9112, 5.1: whitespace before the colon is
         * answered 400): libevent keeps "Content-Length " as a name of its
         * own, neither checked here nor used, where a lenient proxy in
         * front framed the body by it (a review smuggled a request so). */
        if (!kv->key[0] || strspn(kv->key, HTTP_TOKEN_CHARS) != strlen(kv->key)) {
            return "a header name holds a space or another byte a name may not hold; send each name "
                   "as a token with its colon right after it";
        }
        if (strcasecmp(kv->key, "Content-Length") == 0) {
            if (++lengths > 1) return "Content-Length given twice; send one, of digits";
            if (!kv->value[0] || strspn(kv->value, "0123456789") != strlen(kv->value)) {
                return "Content-Length is not a number of bytes; send one, of digits";
            }
            if (bodyless && strspn(kv->value, "0") != strlen(kv->value)) {
                return "a HEAD or TRACE request carries no body, and this one says it has one";
            }
        } else if (strcasecmp(kv->key, "Transfer-Encoding") == 0) {
            if (bodyless) {
                return "a HEAD or TRACE request carries no body, and this one says it has one";
            }
            if (strcasecmp(kv->value, "chunked") != 0) {
                return "a Transfer-Encoding other than chunked; send chunked, or a Content-Length";
            }
        }
    }
    return NULL;
}

/* What is wrong with req's Host header, with what to send, or NULL: an
 * HTTP/1.1 request carries exactly one (RFC 9112, 3.2: a server answers
 * 400 otherwise), and of two a proxy in front may route by the one libevent
 * does not hand over. An HTTP/1.0 request may leave it out (HAProxy's
 * health check does). */
static inline const char *http_host_bad(const struct evhttp_request *req)
{
    unsigned n = http_header_count((struct evhttp_request *)req, "Host");

    if (n > 1) return "Host given twice; send it once";
    if (n == 0 && (req->major > 1 || (req->major == 1 && req->minor >= 1))) {
        return "an HTTP/1.1 request without Host; send Host: <the address the request is sent to>";
    }
    return NULL;
}

/* The name a request is for (RFC 9112, 3.2.2): the authority of an
 * absolute-form target ("GET http://NAME:PORT/..."), which a server takes
 * over Host, else its Host header (NULL: none); buf (cap bytes) holds the
 * former. What --http-host judges (http_host.h). */
static inline const char *http_target_host(struct evhttp_request *req, char *buf, size_t cap)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *h = u ? evhttp_uri_get_host(u) : NULL;

    if (h) {
        int port = evhttp_uri_get_port(u);
        if (port >= 0) snprintf(buf, cap, "%s:%d", h, port);
        else snprintf(buf, cap, "%s", h);
        return buf;
    }
    return evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
}

#endif
