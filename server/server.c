/* server.c - `tcpota serve` (see server.h): the listener, signals, the
 * once-a-second sweep and the summary. What each other file does:
 * server_internal.h. */
#include "server.h"
#include "conn.h"
#include "log.h"
#include "server_internal.h"
#include "tls.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *srv = arg;
    char host[48] = "?", port[8] = "?";
    (void)lis;

    getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    if (srv->nconns >= srv->o->max_conns) {
        srv->stats.refused++;
        say_peer(srv, host, port, "refused: %u connections already (limit)", srv->nconns);
        evutil_closesocket(fd);
        return;
    }
    {
        struct ban *b = ban_find(srv->bans, host, 0);
        if (b && b->until > now_s()) {
            srv->stats.refused++;
            say_peer(srv, host, port, "refused: %u failed authentications, wait %.0f s",
                     b->failures, b->until - now_s());
            evutil_closesocket(fd);
            return;
        }
    }
    conn_new(srv, fd, host, port);
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    struct server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    (void)lis;
    /* Out of descriptors and the like: keep serving the others. */
    say(srv, "accept failed: %s", evutil_socket_error_to_string(err));
}

/* Once a second: a device that is sent an image must acknowledge some of it
 * within the idle timeout. A peer that keeps the connection busy with
 * PINGs but never reads would otherwise hold its socket buffers forever,
 * since the server then has nothing queued whose write could time out. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct conn *c = srv->conns, *next;
    double now = now_s();
    (void)fd;
    (void)what;

    for (; c; c = next) {
        enum tcpota_srv_state st = tcpota_srv_get_state(&c->s);
        next = c->next;
        /* The same deadline holds for answering a CHALLENGE: PINGs must not
         * keep an unauthenticated peer's slot. */
        if (c->kind == K_V1 && !c->closing &&
            (st == TCPOTA_SRV_OFFERED || st == TCPOTA_SRV_STREAMING || st == TCPOTA_SRV_SENT_ALL ||
             st == TCPOTA_SRV_AUTH_WAIT || st == TCPOTA_SRV_AUTH_CHECK) &&
            now - c->progress_at > (double)srv->o->idle_timeout_s) {
            srv->stats.failed++;
            clog_(c, 1, "idle for %u s (not reading what we send); closing", srv->o->idle_timeout_s);
            (void)conn_close(c, 1);
        }
    }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    say(srv, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    event_base_loopexit(srv->base, NULL);
}

static int listen_on(struct server *srv)
{
    const struct tcpota_serve_opts *o = srv->o;
    struct addrinfo hints, *ai = NULL;
    char port[8], host[64], sport[8];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", o->port);
    rc = getaddrinfo(o->host, port, &hints, &ai);
    if (rc != 0) {
        say_always(o, LOG_LV_ERROR, "cannot resolve %s: %s", o->host, gai_strerror(rc));
        return -1;
    }
    srv->lis = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                           LEV_OPT_CLOSE_ON_EXEC,
                                       1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!srv->lis) {
        say_always(o, LOG_LV_ERROR, "cannot listen on %s:%u: %s", o->host, o->port,
                   strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(srv->lis, accept_error_cb);
    getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), sport, sizeof(sport),
                NI_NUMERICHOST | NI_NUMERICSERV);
    /* Always printed: tests and scripts wait for this line. */
    say_always(o, LOG_LV_INFO, "listening on %s:%s, image %s (%u bytes, sha256 %s)", host, sport,
               srv->img.version, srv->img.size, srv->img.idhex);
    return 0;
}

/* Each connection holds a descriptor: raise the soft limit to the hard one
 * (the default soft limit, often 1024, would refuse a fleet long before
 * --max-conns), and say so when it is still below --max-conns. */
static void raise_fd_limit(const struct tcpota_serve_opts *o)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)o->max_conns + 32) {
        say_always(o, LOG_LV_ERROR, "descriptor limit %llu is below --max-conns %u",
                   (unsigned long long)rl.rlim_cur, o->max_conns);
    } else if (!o->quiet) {
        say_always(o, LOG_LV_INFO, "descriptor limit %llu", (unsigned long long)rl.rlim_cur);
    }
}

int tcpota_serve(const struct tcpota_serve_opts *o)
{
    struct server srv;
    int rc = 1;

    memset(&srv, 0, sizeof(srv));
    srv.o = o;
    srv.img.fd = -1;
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(o);
    if (sodium_init() < 0) {
        say_always(o, LOG_LV_ERROR, "libsodium failed to initialise");
        return 1;
    }
    if (image_load(&srv.img, o->image, o->version, o->chunk) < 0) {
        image_free(&srv.img);
        return 1;
    }
    srv.img.desc.manifest = o->manifest;
    srv.img.desc.manifest_len = o->manifest_len;
    if (o->tls_cert && !(srv.tls = tls_context(o->tls_cert, o->tls_key))) {
        image_free(&srv.img);
        return 1;
    }
    srv.base = event_base_new();
    if (!srv.base || listen_on(&srv) < 0) {
        goto out;
    }
    srv.sigint = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
    event_add(srv.sigint, NULL);
    event_add(srv.sigterm, NULL);
    {
        struct timeval second = {1, 0};
        srv.sweep = event_new(srv.base, -1, EV_PERSIST, sweep_cb, &srv);
        event_add(srv.sweep, &second);
    }
    srv.started = now_s();
    event_base_dispatch(srv.base);
    while (srv.conns) {
        conn_free(srv.conns);
    }
    say_always(o, LOG_LV_INFO,
               "summary: %u connections, %u devices updated (verified), %u up to date, "
               "%u legacy devices served, %u errors, %u failed authentications, %u refused, "
               "%.1f MB sent in %.1f s",
               srv.stats.connections, srv.stats.updated, srv.stats.up_to_date,
               srv.stats.legacy_done, srv.stats.failed, srv.stats.auth_failed, srv.stats.refused,
               (double)srv.stats.bytes_sent / 1e6, now_s() - srv.started);
    rc = 0;
out:
    if (srv.sigint) event_free(srv.sigint);
    if (srv.sigterm) event_free(srv.sigterm);
    if (srv.sweep) event_free(srv.sweep);
    if (srv.lis) evconnlistener_free(srv.lis);
    if (srv.base) event_base_free(srv.base);
    if (srv.tls) SSL_CTX_free(srv.tls);
    image_free(&srv.img);
    return rc;
}
