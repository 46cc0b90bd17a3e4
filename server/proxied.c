/* proxied.c - a trusted balancer's connections: the PROXY header first
 * (see proxied.h). */
#include "proxied.h"
#include "log.h"
#include "proxy_proto.h"
#include "server_internal.h"
#include "sock.h"
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct proxied {
    struct server *srv;
    struct proxied *prev, *next;
    evutil_socket_t fd;
    struct event *ev;
    int lowat; /* SO_RCVLOWAT raised to wait for the rest of a split header */
    ssize_t peeked; /* bytes seen at the last look (a wakeup with no more: the peer closed) */
    int local;      /* a LOCAL header was taken: waiting for a first byte after it */
    double deadline; /* monotonic: the header (and, after LOCAL, a byte) by then */
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN]; /* the balancer's */
};

/* An IPv4 peer of a dual-stack listener is written ::ffff:a.b.c.d. */
static const char *unmapped(const char *host)
{
    return strncmp(host, "::ffff:", 7) == 0 && strchr(host + 7, '.') ? host + 7 : host;
}

int proxied_from(const struct server *srv, const char *host)
{
    const char *h = unmapped(host);

    for (size_t i = 0; i < srv->o->nproxy_from; i++) {
        if (strcmp(srv->o->proxy_from[i], h) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Unlinks and frees p; closes its socket unless keep_fd. */
static void drop(struct proxied *p, int keep_fd)
{
    struct server *srv = p->srv;

    if (p->prev) p->prev->next = p->next;
    else srv->proxied = p->next;
    if (p->next) p->next->prev = p->prev;
    event_free(p->ev);
    if (!keep_fd) evutil_closesocket(p->fd);
    free(p);
}

static void refuse(struct proxied *p, const char *why)
{
    p->srv->stats.refused++;
    say_peer(p->srv, p->host, p->port, "refused: a connection from this balancer must begin with "
             "a valid PROXY protocol header (--proxy-protocol; HAProxy: send-proxy or send-proxy-v2): "
             "%s; closing", why);
    drop(p, 0);
}

/* Waits again, until the deadline (a persistent event's timeout would
 * start over at every wakeup: a byte every 9 s would hold it for minutes). */
static void wait_more(struct proxied *p)
{
    double left = p->deadline - now_s();
    struct timeval tv;

    if (left < 0) left = 0;
    tv.tv_sec = (time_t)left;
    tv.tv_usec = (suseconds_t)((left - (double)tv.tv_sec) * 1e6);
    if (event_add(p->ev, &tv) < 0) {
        refuse(p, "the server could not wait for it (out of memory?)");
    }
}

/* Hands p's socket on as a connection from host:port (which may lie in
 * p: copied before p goes). */
static void hand_on(struct proxied *p, const char *host, const char *port)
{
    struct server *srv = p->srv;
    evutil_socket_t fd = p->fd;
    char h[TEXT_HOST_LEN], pt[TEXT_PORT_LEN];

    (void)text_copy(h, sizeof(h), host);
    (void)text_copy(pt, sizeof(pt), port);
    drop(p, 1);
    accept_from(srv, fd, h, pt);
}

/* More than `seen` bytes wait unread in fd. A loop that ran late
 * (stopped, starved) sees an expired deadline before bytes that came in
 * time; those are read once more before the deadline is judged. */
static int more_waits(evutil_socket_t fd, ssize_t seen)
{
    return sock_unread(fd) > (long)seen;
}

/* After a LOCAL header (a balancer speaking for itself, as HAProxy's
 * health check with send-proxy-v2 does): a connection that ends before a
 * byte follows was a check and leaves no line; one that goes on is served
 * from the balancer's own address. */
static void after_local(struct proxied *p, short what)
{
    uint8_t b;
    ssize_t n;

    if ((what & EV_TIMEOUT) && !more_waits(p->fd, 0)) {
        drop(p, 0);
        return;
    }
    n = recv(p->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        wait_more(p);
        return;
    }
    if (n <= 0) {
        drop(p, 0); /* closed or reset: the check is over */
        return;
    }
    hand_on(p, p->host, p->port);
}

static void no_header(struct proxied *p)
{
    char w[96];

    snprintf(w, sizeof(w), "no whole header within %d s (%zd bytes came)", PROXY_HEADER_TIMEOUT_S,
             p->peeked);
    refuse(p, w);
}

static void header_cb(evutil_socket_t fd, short what, void *arg)
{
    struct proxied *p = arg;
    struct proxy_addr a;
    uint8_t buf[PROXY_HDR_MAX];
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN];
    const char *why;
    ssize_t n;
    int len, one = 1;

    if (p->local) {
        after_local(p, what);
        return;
    }
    if ((what & EV_TIMEOUT) && !more_waits(fd, p->peeked)) {
        no_header(p);
        return;
    }
    n = recv(fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        wait_more(p);
        return;
    }
    if (n <= 0) {
        /* Closed without a byte: a balancer's health check. */
        drop(p, 0);
        return;
    }
    if (n == p->peeked) {
        /* SO_RCVLOWAT asked for more: only an end of stream wakes us so. */
        refuse(p, "it closed before its header ended");
        return;
    }
    p->peeked = n;
    len = proxy_parse(buf, (size_t)n, &a, &why);
    if (len < 0) {
        refuse(p, why);
        return;
    }
    if (len == 0 && (what & EV_TIMEOUT)) {
        no_header(p); /* what came late is not all of it */
        return;
    }
    if (len == 0) {
        /* Split over segments: wake when more than this has come. */
        int more = (int)n + 1;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &more, sizeof(more)) != 0) {
            refuse(p, "its header came in pieces and the server cannot wait for the rest");
            return;
        }
        p->lowat = 1;
        wait_more(p);
        return;
    }
    if (recv(fd, buf, (size_t)len, 0) != len) {
        refuse(p, "the header could not be taken from the socket");
        return;
    }
    if (p->lowat) {
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
        p->lowat = 0;
    }
    if (a.local) {
        p->local = 1;
        wait_more(p);
        return;
    }
    text_sockaddr((const struct sockaddr *)&a.src, a.srclen, host, port);
    hand_on(p, host, port);
}

void proxied_start(struct server *srv, evutil_socket_t fd, const char *host, const char *port)
{
    struct timeval limit = {PROXY_HEADER_TIMEOUT_S, 0};
    struct proxied *p = calloc(1, sizeof(*p));

    if (!p || !(p->ev = event_new(srv->base, fd, EV_READ, header_cb, p)) ||
        event_add(p->ev, &limit) < 0) {
        if (p && p->ev) event_free(p->ev);
        free(p);
        evutil_closesocket(fd);
        return;
    }
    p->srv = srv;
    p->fd = fd;
    p->deadline = now_s() + PROXY_HEADER_TIMEOUT_S;
    (void)text_copy(p->host, sizeof(p->host), host);
    (void)text_copy(p->port, sizeof(p->port), port);
    p->next = srv->proxied;
    if (srv->proxied) srv->proxied->prev = p;
    srv->proxied = p;
}

void proxied_free_all(struct server *srv)
{
    while (srv->proxied) {
        drop(srv->proxied, 0);
    }
}
