/* server.c - `tcpota serve` (see server.h): the listener, signals, the
 * once-a-second sweep and the summary. What each other file does:
 * server_internal.h. */
#include "server.h"
#include "admit.h"
#include "api.h"
#include "proxied.h"
#include "conn.h"
#include "esp_image.h"
#include "fleet.h"
#include "log.h"
#include "notify.h"
#include "offload.h"
#include "server_internal.h"
#include "sock.h" /* sock_unsent */
#include "accept_pause.h"
#include "text.h"
#include "tls_server.h"
#include "workers.h"
#include "tcpota/version.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *srv = arg;
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN];
    (void)lis;

    text_sockaddr(sa, (socklen_t)salen, host, port);
    if (srv->o->nproxy_from && proxied_from(srv, host)) {
        proxied_start(srv, fd, host, port); /* then accept_from, with the device's address */
        return;
    }
    accept_from(srv, fd, host, port);
}

void accept_from(struct server *srv, evutil_socket_t fd, const char *host, const char *port)
{
    uint8_t counted;
    enum admit_verdict v = admit_conn(srv, host, &counted);
    char why[160];

    if (v != ADMIT_OK) {
        if (admit_why(srv, v, host, why, sizeof(why))) say_peer(srv, host, port, "refused: %s", why);
        evutil_closesocket(fd);
        return;
    }
    conn_new(srv, fd, host, port, counted);
}

/* Where a listener's accept failures are said (accept_pause.h). */
void server_say_line(void *arg, const char *msg)
{
    say(arg, "%s", msg);
}

/* Out of descriptors and the like: the listener pauses (accept_pause.h)
 * and the connections it holds go on. */
static void guard_listener(struct server *srv)
{
    if (accept_pause_guard(srv->base, srv->lis, "device connections", server_say_line, srv) < 0) {
        say(srv, "cannot guard the listener against accept() failures: out of memory");
    }
}

double server_loop_lost(const struct server *srv, double now)
{
    double late = now - srv->swept_at - SWEEP_PERIOD_S;

    return srv->loop_lost_s + (late > SWEEP_LATE_MIN_S ? late : 0);
}

double server_time_left(const struct server *srv, double since, double lost_at, double limit,
                        double now)
{
    double lost = server_loop_lost(srv, now) - lost_at;

    return limit - (now - since - (lost < limit ? lost : limit));
}

/* 1 when c, found without progress, is given one more sweep: what waits
 * unread may be its ACKs or its request, behind a loop that ran late
 * (stopped, starved: tests/reliability/test_stall.sh), read first
 * (conn_lowat_tick, or the events) and judged at the next sweep. */
static int grace_given(struct conn *c)
{
    if (c->idle_grace || !conn_input_unread(c)) {
        return 0;
    }
    c->idle_grace = 1;
    return 1;
}

/* Once a second: a device that is sent an image must acknowledge some of it
 * within the idle timeout. A peer that keeps the connection busy with
 * PINGs but never reads would otherwise hold its socket buffers forever,
 * since the server then has nothing queued whose write could time out. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct conn *c, *next;
    double now = now_s();
    /* A late sweep: the loop was stopped or starved that long, which no
     * peer's deadline should count (server_time_left). */
    srv->loop_lost_s = server_loop_lost(srv, now);
    srv->swept_at = now;
    /* Past SWEEP_READS connections, each one's input below the watermark
     * is read in turn, every `every` sweeps; one found idle is read at once. */
    uint64_t every = srv->nconns > SWEEP_READS ? (srv->nconns + SWEEP_READS - 1) / SWEEP_READS : 1;
    uint64_t turn = srv->sweeps++ % every;
    (void)fd;
    (void)what;

    if (srv->fleet) {
        fleet_sweep(srv); /* may end connections (fleet.c, answer_queued) */
    }

    for (c = srv->conns; c; c = next) {
        enum tcpota_srv_state st = tcpota_srv_get_state(&c->s);
        int idle; /* no progress within the idle timeout */
        next = c->next;
        if (conn_check_deadline(c, now)) {
            continue;
        }
        idle = now - c->progress_at > (double)srv->o->idle_timeout_s;
        if (!idle) {
            c->idle_grace = 0;
        }
        /* The same deadline holds for answering a CHALLENGE: PINGs must not
         * keep an unauthenticated peer's slot. */
        if (c->kind == K_V1 && !c->closing &&
            (st == TCPOTA_SRV_OFFERED || st == TCPOTA_SRV_STREAMING || st == TCPOTA_SRV_SENT_ALL ||
             st == TCPOTA_SRV_AUTH_WAIT || st == TCPOTA_SRV_AUTH_CHECK) &&
            idle && !grace_given(c)) {
            srv->stats.failed++;
            /* What the device failed to do: a hostile trial's device read
             * the whole image, then sent PINGs, and was told it did not
             * read (the kernel's send queue tells the two apart: all of
             * it received by the device's TCP, or not). */
            clog_(c, 1, "idle for %u s (%s); closing", srv->o->idle_timeout_s,
                  st == TCPOTA_SRV_AUTH_WAIT || st == TCPOTA_SRV_AUTH_CHECK
                      ? "no answer to the authentication challenge"
                  : sock_unsent(c->fd) > 0 || (conn_out(c) && evbuffer_get_length(conn_out(c)) > 0)
                      ? "not reading what we send"
                  : st == TCPOTA_SRV_OFFERED
                      ? "no answer to the offer, though its TCP received all we sent"
                      : "acknowledging nothing new, though its TCP received all we sent");
            (void)conn_close(c, 1);
            continue;
        }
        /* A legacy device that asks for no package it has not had within
         * the idle timeout (req1 after req1, or a request trickled in a
         * byte at a time, each of which kept the socket's timeout away:
         * a hostile trial held one 40 s under --idle-timeout 3). A sample
         * device closes once it has the last package. */
        if (c->kind == K_LEGACY && c->img && !c->closing && idle && !grace_given(c)) {
            if (c->legacy_done) {
                clog_(c, 0, "legacy device: sent the whole image, and it has asked for nothing new"
                            " in %u s (--idle-timeout); closing", srv->o->idle_timeout_s);
            } else {
                srv->stats.failed++;
                clog_(c, 1, "legacy device: no package it had not had for %u s (--idle-timeout;"
                            " %u of %u bytes sent); closing",
                      srv->o->idle_timeout_s, c->legacy_top, c->img->size);
            }
            (void)conn_close(c, 1);
            continue;
        }
        /* idle_grace: found idle with input unread, to be judged at the
         * next sweep: read now, whoever's turn it is. */
        if (c->idle_grace || c->id % every == turn) {
            conn_lowat_tick(c); /* last: its read may end c */
        }
    }
}

/* Counts devices, not connections, and names every kind of failure, so a
 * rollback can never hide behind "N updated". */
static void print_summary(const struct server *srv)
{
    unsigned counts[DEV_OUTCOMES], i;
    char line[1024], tls[128] = "", http[240] = "";
    uint64_t auth_refused = auth_refusals_total(&srv->auth_refused);
    size_t n;

    devices_count(&srv->devices, counts);
    n = (size_t)snprintf(line, sizeof(line), "summary: %zu device%s", srv->devices.count,
                         text_s(srv->devices.count));
    for (i = DEV_CONFIRMED; i < DEV_OUTCOMES; i++) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s %u %s", i == DEV_CONFIRMED ? ":" : ",",
                              counts[i], device_outcome_name((enum device_outcome)i));
    }
    if (counts[DEV_SEEN]) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, ", %u %s", counts[DEV_SEEN],
                              device_outcome_name(DEV_SEEN));
    }
    if (srv->tls) {
        (void)snprintf(tls, sizeof(tls), "; TLS: %u full handshake%s, %u resumed, %u sent by kernel TLS",
                       srv->stats.tls_full, text_s(srv->stats.tls_full), srv->stats.tls_resumed,
                       srv->stats.tls_kernel);
    }
    if (srv->o->data_dir) { /* the devices above are tcpota's; esp_https_ota ones download over HTTP */
        /* Said so: "summary: 0 devices" read as wrong after HTTP devices
         * had updated (a trial). */
        (void)snprintf(http, sizeof(http), "; HTTP downloads (their devices are not in the count"
                       " above; `tcpota summary` counts every device): %u with every byte sent, %u"
                       " failed (the device back on its old version), %.1f MB", srv->stats.http_whole,
                       srv->stats.http_failed, (double)srv->stats.http_bytes / 1e6);
    }
    /* Refused for authentication: every kind the fleet summary counts (a
     * wrong secret, no proof, an unknown id, not checked), so that the log
     * and `tcpota summary` say the same number. Each connection counts in
     * one of "ended by an error", "refused" and this. */
    say_always(srv->o, LOG_LV_INFO,
               "%s; %u legacy device%s served%s; %u connection%s, %u ended by an error, "
               "%u refused (limits; legacy devices, a signed image); authentication refused %llu time%s; "
               "%.1f MB sent in %.1f s%s",
               line, srv->stats.legacy_done, text_s(srv->stats.legacy_done), http,
               srv->stats.connections, text_s(srv->stats.connections), srv->stats.failed,
               srv->stats.refused, (unsigned long long)auth_refused, text_s(auth_refused),
               (double)(srv->stats.bytes_sent + srv->stats.http_bytes) / 1e6,
               now_s() - srv->started, tls);
}

/* What a reload leaves in force, for its log lines. */
static void reload_serving(const struct server *srv, char *buf, size_t cap)
{
    int n = 0;

    if (srv->img) {
        n = snprintf(buf, cap, "image %s (sha256 %.16s...)", srv->img->version, srv->img->idhex);
    }
    if (srv->tls && n >= 0 && (size_t)n < cap) {
        snprintf(buf + n, cap - (size_t)n, "%sthe TLS certificate loaded before",
                 srv->img ? " and " : "");
    }
}

/* With TLS: a context from the certificate, key and ticket keys read
 * again (fresh), sealing tickets as the one in force did (the operator's
 * keys, or OpenSSL's own carried over). NULL after printing why. */
static SSL_CTX *reload_tls(const struct server *srv, const struct tcpota_serve_opts *fresh)
{
    SSL_CTX *tls = tls_context(fresh, fresh->tls_cert, fresh->tls_key);

    if (tls && tls_keep_own_tickets(tls, srv->tls) < 0) {
        fprintf(stderr, "tcpota serve: warning: OpenSSL did not hand this process's session "
                        "ticket key to the new TLS context: each device makes one full "
                        "handshake (give --tls-ticket-key to keep tickets across reloads)\n");
    }
    return tls;
}

/* Hands a set of options a reload filled (o->reload) back to its
 * loader, and frees it. */
static void opts_free(struct tcpota_serve_opts *set)
{
    set->release(set->ctx, set);
    free(set);
}

/* A single-image reload whose image is read and hashed on a thread
 * (offload.h): the loop serves the image in force meanwhile. */
struct reload_job {
    struct server *srv;
    struct tcpota_serve_opts *fresh; /* the command line's files read again */
    struct offload *job;
    struct image *img; /* the work's: the new image, or NULL and err */
    char err[IMAGE_ERR_LEN];
};

static void reload(struct server *srv);

/* What the image's first bytes say against its version and model (an ELF,
 * an ESP-IDF app of another chip or version: esp_image.h), one warning a
 * line; when is "" at start, "SIGHUP: " at a reload. */
static void say_image_notes(const struct tcpota_serve_opts *o, const struct image *img,
                            const char *when)
{
    char notes[1200], *line, *next;

    if (esp_image_notes(img->map, img->size < ESP_IMAGE_PEEK ? img->size : ESP_IMAGE_PEEK,
                        img->version, img->model, notes, sizeof(notes)) == 0) {
        return;
    }
    for (line = notes; line; line = next) {
        if ((next = strchr(line, '\n')) != NULL) *next++ = '\0';
        say_always(o, LOG_LV_WARN, "%swarning: %s: %s", when, o->image, line);
    }
}

/* The end of a reload (on the loop): fresh is the command line's files read
 * again (loaded: by o->reload, else nothing to release), img the new image
 * (single-image mode; NULL: failed, err logged). With TLS the certificate
 * and keys are read here. Anything wrong leaves the server as it was. */
static void reload_apply(struct server *srv, struct tcpota_serve_opts *fresh, int loaded,
                         struct image *img)
{
    const struct tcpota_serve_opts *o = srv->o;
    SSL_CTX *tls = NULL;
    struct log_caught caught;
    char serving[IMAGE_ERR_LEN], said[IMAGE_ERR_LEN], secrets[48] = "";
    int failed = !loaded || (!srv->fleet && !img), order;

    reload_serving(srv, serving, sizeof(serving));
    if (!failed && srv->tls) {
        log_catch_begin(&caught);
        failed = !(tls = reload_tls(srv, fresh));
        log_catch_end(srv->o, &caught, failed, "SIGHUP: ");
    }
    /* The new secrets keep the old ones' failures (auth_rebind). */
    if (!failed && !srv->fleet && auth_rebind(&srv->auth, fresh->secrets, fresh->nsecrets) < 0) {
        say_always(srv->o, LOG_LV_ERROR, "SIGHUP: out of memory; still serving %s", serving);
        failed = 1;
    } else if (failed) {
        say_always(srv->o, LOG_LV_ERROR, "SIGHUP: reload failed (see above); still serving %s",
                   serving);
    }
    if (failed) {
        image_unref(img);
        tls_context_free(tls);
        if (loaded) {
            opts_free(fresh);
        } else {
            free(fresh); /* a copy: nothing of its own to release */
        }
        return;
    }
    if (tls) {
        tls_warn_cert(srv->o, fresh->tls_cert, tls);
        (void)tls_cert_says(tls, srv->tls, said, sizeof(said));
        tls_context_free(srv->tls); /* open connections hold theirs */
        srv->tls = tls;
    }
    if (srv->fleet) {
        /* Only the TLS context changed: the fleet's threads go on reading
         * the options they started with. */
        opts_free(fresh);
        say_always(srv->o, LOG_LV_INFO, "SIGHUP: reloaded the TLS certificate %s (%s) and its key%s",
                   o->tls_cert, said, o->nticket_keys ? " and the ticket keys" : "");
        return;
    }
    if (strcmp(img->version, srv->img->version) == 0 && strcmp(img->idhex, srv->img->idhex) != 0) {
        /* Served all the same, but devices compare versions: one that ran
         * the old bytes is up to date by version, and never offered these. */
        say_always(srv->o, LOG_LV_WARN, "SIGHUP: warning: the new image has the old one's version %s but "
                   "other bytes: devices that got the old image are not offered it; give it a "
                   "new version (%s)", img->version,
                   img->manifest ? "sign it again with one, then SIGHUP"
                                 : "--version is the command line's: restart the server with "
                                   "another");
    }
    if (!fresh->allow_downgrade &&
        tcpota_version_order(img->version, strlen(img->version), srv->img->version,
                             strlen(srv->img->version), &order) == 0 && order < 0) {
        /* Served, and offered to no device that runs anything newer. */
        say_always(srv->o, LOG_LV_WARN, "SIGHUP: warning: the new image %s is older than %s, "
                   "served until now: devices that run a version newer than %s are not "
                   "offered it (start the server with --allow-downgrade to offer it to them)",
                   img->version, srv->img->version, img->version);
    }
    say_image_notes(fresh, img, "SIGHUP: ");
    image_unref(srv->img);
    srv->img = img;
    /* Every secret revoked (an empty --auth-file) is said as 0; read before
     * the options it replaces are freed. */
    if (fresh->nsecrets || srv->o->nsecrets || fresh->require_auth) {
        snprintf(secrets, sizeof(secrets), ", %zu device secret%s", fresh->nsecrets,
                 text_s(fresh->nsecrets));
    }
    if (srv->reloaded) {
        opts_free(srv->reloaded);
    }
    srv->reloaded = fresh;
    srv->o = fresh;
    say_always(srv->o, LOG_LV_INFO, "SIGHUP: reloaded: image %s (%u bytes, sha256 %s)%s%s%s%s%s",
               img->version, img->size, img->idhex, secrets,
               tls ? ", the TLS certificate (" : "", tls ? said : "", tls ? ") and its key" : "",
               tls && fresh->nticket_keys ? " and the ticket keys" : "");
}

/* o's image read, hashed and framed, at start and on a reload's thread.
 * The loader checked the manifest's signature only: its size and SHA-256
 * are checked here, against the bytes just read (read once). NULL with why
 * in err; *unusable set when the manifest does not describe them. */
static struct image *load_image(const struct tcpota_serve_opts *o, char *err, size_t errlen,
                                int *unusable)
{
    struct image *img = image_open(o->image, o->version, o->model, o->manifest, o->manifest_len,
                                   o->chunk, err, errlen);

    *unusable = img && image_check_manifest(img, o->image, o->manifest_path,
                                            o->manifest_unsigned, err, errlen) < 0;
    if (*unusable) {
        image_unref(img);
        img = NULL;
    }
    return img;
}

/* A reload ended, applied or not: ready again, for the service manager.
 * Not once the server stops (STOPPING=1 was said), nor in a --workers
 * supervisor (it has no loop), which says it once it has passed the
 * SIGHUP on to its workers (workers_run). */
static void reload_ended(struct server *srv)
{
    if (srv->base && !event_base_got_exit(srv->base)) {
        notify_ready(srv->o);
    }
}

/* On the reload's thread: the new image read and hashed. */
static void reload_work(void *arg)
{
    struct reload_job *j = arg;
    int unusable;

    j->img = load_image(j->fresh, j->err, sizeof(j->err), &unusable);
}

/* Back on the loop: the reload ends; a SIGHUP that came meanwhile starts
 * the next (the files may have changed again). */
static void reload_done(void *arg)
{
    struct reload_job *j = arg;
    struct server *srv = j->srv;

    srv->reloading = NULL;
    if (!j->img) {
        say_always(srv->o, LOG_LV_ERROR, "SIGHUP: %s", j->err);
    }
    reload_apply(srv, j->fresh, 1, j->img);
    free(j);
    reload_ended(srv);
    /* Not once the server stops: its exit would wait for a whole read. */
    if (srv->reload_again && srv->base && !event_base_got_exit(srv->base)) {
        srv->reload_again = 0;
        reload(srv);
    }
}

/* SIGHUP. Single-image mode: the image, its manifest and the device
 * secrets are read again, the image on a thread of its own (hashing
 * 256 MiB takes most of a second). With TLS, in either mode: the
 * certificate, its key and the ticket keys (a renewed certificate, rotated
 * keys) without cutting a connection. Connections already open keep the
 * image and the TLS context they started with (each holds a reference);
 * new ones get the new. Anything wrong with the new files leaves the
 * server exactly as it was. */
static void reload(struct server *srv)
{
    const struct tcpota_serve_opts *o = srv->o;
    struct tcpota_serve_opts *fresh;
    struct reload_job *j;
    struct log_caught caught;
    char serving[IMAGE_ERR_LEN];
    int loaded;

    if (srv->fleet && fleet_reread_secrets(srv) && !o->reload) {
        return; /* nothing else to reload: it said what it does */
    }
    if (!o->reload) {
        say_always(srv->o, LOG_LV_INFO, "%s", srv->fleet
                   ? "SIGHUP: nothing to reload: in fleet mode images, rollouts, groups and "
                     "secrets change through the API and apply at once, and a --config file is"
                     " read at start only (a restart applies it)"
                   : "SIGHUP: nothing to reload");
        return;
    }
    if (srv->reloading) {
        srv->reload_again = 1;
        say_always(srv->o, LOG_LV_INFO, "SIGHUP: the last reload is still reading its image; "
                   "the files are read again once it ends");
        return;
    }
    reload_serving(srv, serving, sizeof(serving));
    notify_reloading(o); /* each way out below ends with reload_ended */
    if (!(fresh = malloc(sizeof(*fresh)))) {
        say_always(srv->o, LOG_LV_ERROR, "SIGHUP: out of memory; still serving %s", serving);
        reload_ended(srv);
        return;
    }
    *fresh = *o;
    log_catch_begin(&caught);
    loaded = o->reload(o->ctx, fresh) == 0;
    log_catch_end(srv->o, &caught, !loaded, "SIGHUP: ");
    if (!loaded || srv->fleet) {
        reload_apply(srv, fresh, loaded, NULL);
        reload_ended(srv);
        return;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        say_always(srv->o, LOG_LV_ERROR, "SIGHUP: out of memory; still serving %s", serving);
        opts_free(fresh);
        reload_ended(srv);
        return;
    }
    j->srv = srv;
    j->fresh = fresh;
    /* A --workers supervisor has no loop (workers.h): it reads here, as
     * when no thread can be had. */
    if (!srv->base || !(j->job = offload_start(srv->base, reload_work, reload_done, j))) {
        reload_work(j);
        reload_done(j);
        return;
    }
    srv->reloading = j;
}

/* A reload still reading its image when the loop ends: waited for,
 * nothing applied. */
static void reload_abandon(struct server *srv)
{
    struct reload_job *j = srv->reloading;

    if (!j) return;
    offload_wait(j->job);
    image_unref(j->img);
    opts_free(j->fresh);
    free(j);
    srv->reloading = NULL;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (sig == SIGHUP) {
        reload(srv);
        return;
    }
    if (sig == SIGUSR1) {
        print_summary(srv);
        return;
    }
    if (sig == SIGUSR2) {
        say_always(srv->o, LOG_LV_WARN, "%s", SERVE_SIGUSR2_LINE);
        return;
    }
    say(srv, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    notify_stopping(srv->o);
    conn_drain_streams(srv); /* a COMPLETE received is counted */
    event_base_loopexit(srv->base, NULL);
}

/* What the device port asks of a device, when it is TLS or --require-auth:
 * a plain device, or one without its secret, is refused there, so the line
 * that names the port says so. After "HOST:PORT", behind a comma (scripts
 * read the port as "HOST:PORT,"). */
static const char *listen_devices(const struct server *srv)
{
    if (srv->o->require_auth) {
        return srv->tls ? ", devices over TLS, must authenticate" : ", devices must authenticate";
    }
    return srv->tls ? ", devices over TLS" : "";
}

/* The line tests and scripts wait for: where fd listens, and what. */
static void say_listening(const struct server *srv, int fd, unsigned workers)
{
    const struct tcpota_serve_opts *o = srv->o;
    char host[64] = "?", sport[8] = "?", what[600], nw[40] = "";
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), sport, sizeof(sport),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    }
    if (workers > 1) {
        snprintf(nw, sizeof(nw), "; %u workers", workers);
    }
    if (srv->fleet) {
        fleet_describe(srv, what, sizeof(what));
        say_always(o, LOG_LV_INFO, "listening on %s:%s%s, %s%s", host, sport, listen_devices(srv), what,
                   nw);
        return;
    }
    say_always(o, LOG_LV_INFO, "listening on %s:%s%s, image %s (%u bytes, sha256 %s)%s", host, sport,
               listen_devices(srv), srv->img->version, srv->img->size, srv->img->idhex, nw);
}

/* Listens on --listen, or (a worker) on the socket the supervisor opened. */
static int listen_on(struct server *srv, int worker_fd)
{
    const struct tcpota_serve_opts *o = srv->o;
    struct addrinfo *ai = NULL;
    int e;

    if (worker_fd >= 0) {
        /* Backlog 0: listening already (workers_listen). */
        srv->lis = evconnlistener_new(srv->base, accept_cb, srv,
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, worker_fd);
        if (!srv->lis) {
            say_always(o, LOG_LV_ERROR, "not starting: cannot serve the listening socket: %s",
                       strerror(errno));
            close(worker_fd);
            return -1;
        }
        guard_listener(srv);
        return 0;
    }

    if (listen_resolve(o, &ai) < 0) {
        return -1;
    }
    srv->lis = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                           LEV_OPT_CLOSE_ON_EXEC,
                                       LISTEN_BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    e = errno;
    freeaddrinfo(ai);
    if (!srv->lis) {
        listen_failed(o, e);
        return -1;
    }
    guard_listener(srv);
    say_listening(srv, evconnlistener_get_fd(srv->lis), 1); /* always: scripts wait for it */
    return 0;
}

/* Descriptors the server holds besides its connections (listeners, log,
 * store, signal pipes), with room to spare. */
#define FD_RESERVED 32u

/* Each connection holds a descriptor: raise the soft limit to the hard one
 * (the default soft limit, often 1024, would refuse a fleet long before
 * --max-conns), and say so when it is still below --max-conns. */
static void raise_fd_limit(const struct tcpota_serve_opts *o)
{
    struct rlimit rl;
    /* The API's listener holds up to its own limit on top (fleet mode). */
    unsigned api = o->data_dir && o->api_host ? (o->api_max_conns ? o->api_max_conns
                                                                   : API_CONNS_DEFAULT) : 0;
    unsigned long long reserved = FD_RESERVED + (unsigned long long)api;
    char plus[80] = "";

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (api) {
        snprintf(plus, sizeof plus, " and the API's %u (--api-max-conns)", api);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= reserved) {
        /* No --max-conns would fit (a security review was told "past about
         * 0 connections ... or give --max-conns 0", which is refused). */
        say_always(o, LOG_LV_ERROR, "descriptor limit %llu is below --max-conns %u%s, and leaves "
                   "none for device connections beside the server's own %u%s: once descriptors "
                   "run out, new connections wait in the backlog (\"accepting device connections "
                   "failed: Too many open files\") rather than being refused; raise the limit "
                   "(ulimit -n, or LimitNOFILE= of the service) to at least %llu%s",
                   (unsigned long long)rl.rlim_cur, o->max_conns, plus, FD_RESERVED,
                   api ? " and the API's" : "", (unsigned long long)o->max_conns + reserved,
                   api ? ", or lower --api-max-conns" : "");
    } else if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)o->max_conns + reserved) {
        unsigned long long room = rl.rlim_cur - reserved;
        /* The server still starts: a limit set on purpose is the operator's. */
        say_always(o, LOG_LV_ERROR, "descriptor limit %llu is below --max-conns %u%s: past about "
                   "%llu connections, new ones wait in the backlog (\"accepting device connections "
                   "failed: Too many open files\") rather than being refused; raise the limit (ulimit -n, or LimitNOFILE= of "
                   "the service) to at least %llu, or give --max-conns %llu",
                   (unsigned long long)rl.rlim_cur, o->max_conns, plus, room,
                   (unsigned long long)o->max_conns + reserved, room);
    } else if (!o->quiet) {
        say_always(o, LOG_LV_INFO, "descriptor limit %llu: room for --max-conns %u connection%s%s",
                   (unsigned long long)rl.rlim_cur, o->max_conns, text_s(o->max_conns), plus);
    }
}

/* The event loop.
 * - It reads the clock at each timeout it arms. libevent's default reads
 *   it once per loop turn: a server stopped (SIGSTOP, swapped out,
 *   starved) in the middle of a turn then re-arms the idle timeout of
 *   every connection it reads after waking from the time before the stop,
 *   already past, and the next turn closes as idle peers whose bytes it
 *   has just read (tests/reliability/test_stall.sh). A clock read costs
 *   tens of nanoseconds (vDSO).
 * - It applies the net change of a loop turn's event_add/event_del to
 *   epoll once (a changelist), where libevent's default calls epoll_ctl at
 *   each: a TLS check-in toggled its interests about 11 times, 6 with the
 *   list (nginx: 1; a system call costs here what a hundred instructions
 *   do). The list is unsafe for descriptors that share one open file
 *   (dup(), or inherited across fork() and both registered): the server
 *   registers none (workers fork before their loop exists; libpq's
 *   sockets live in the store's thread, outside the loop). */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (!cfg) {
        return NULL;
    }
    (void)event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME |
                                         EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* libevent's own messages, which it printed on stderr as "[warn] ...",
 * out of the log's format (a trial: "[warn] getaddrinfo: nodename nor
 * servname provided" before the start's own refusal): in the log as
 * warnings and errors, but for a name that does not resolve, which the
 * listener's caller says in full. One set of options per process. */
static const struct tcpota_serve_opts *g_libevent_says;

static void libevent_log(int severity, const char *msg)
{
    if (severity < EVENT_LOG_WARN || !g_libevent_says ||
        strncmp(msg, "getaddrinfo:", strlen("getaddrinfo:")) == 0) {
        return;
    }
    say_always(g_libevent_says, severity >= EVENT_LOG_ERR ? LOG_LV_ERROR : LOG_LV_WARN,
               "libevent: %s", msg);
}

/* The supervisor's SIGHUP (workers.h): what it forks next serves the same. */
static void reload_cb(void *arg)
{
    reload(arg);
}

int tcpota_serve(const struct tcpota_serve_opts *o)
{
    struct server srv;
    sigset_t unblocked;
    int rc = 1, worker_fd = -1, frc = 0;

    memset(&srv, 0, sizeof(srv));
    srv.tail_ep = -1;
    srv.o = o;
    g_libevent_says = o;
    event_set_log_callback(libevent_log);
    /* A peer that closes first must fail a write, not end the server.
     * SIGUSR2 ends it by default: ignored from the start (before its
     * handler below, and after libevent restores this on the way out). */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    raise_fd_limit(o);
    if (sodium_init() < 0) {
        say_always(o, LOG_LV_ERROR, "libsodium failed to initialise");
        return 1;
    }
    if (!o->data_dir) {
        char err[IMAGE_ERR_LEN];
        int unusable;

        if (!(srv.img = load_image(o, err, sizeof(err), &unusable))) {
            say_always(o, LOG_LV_ERROR, "not starting: %s", err);
            rc = unusable ? 2 : 1; /* a manifest of other bytes: an unusable input file */
            goto out;
        }
        say_image_notes(o, srv.img, "");
    }
    if (devices_init(&srv.devices, DEVICES_MAX) < 0) {
        goto out;
    }
    if (o->tls_cert) {
        struct log_caught caught;
        log_catch_begin(&caught);
        srv.tls = tls_context(o, o->tls_cert, o->tls_key);
        log_catch_end(o, &caught, srv.tls == NULL, srv.tls ? "" : "not starting: ");
        if (!srv.tls) {
            rc = 2; /* the certificate or key files cannot be used, like any input file */
            goto out;
        }
        tls_warn_cert(o, o->tls_cert, srv.tls);
    }
    /* --workers: this process forks them after what they share is loaded
     * (the secrets too: a SIGHUP reloads them here as in each worker), and
     * serves nothing itself (workers.h). */
    if (o->workers > 1 && !o->data_dir) {
        int fds[WORKERS_MAX], k;

        if (o->workers > WORKERS_MAX || auth_init(&srv.auth, o->secrets, o->nsecrets) < 0 ||
            workers_listen(o, fds, o->workers) < 0) {
            goto out;
        }
        workers_block_signals(&unblocked);
        say_listening(&srv, fds[0], o->workers);
        k = workers_run(o, fds, o->workers, &unblocked, reload_cb, &srv, &rc);
        if (k < 0) {
            for (unsigned i = 0; i < o->workers; i++) close(fds[i]);
            goto out;
        }
        worker_fd = fds[k];
        notify_forget(); /* the supervisor speaks to the service manager */
    }
    srv.base = new_base();
    if (!srv.base) {
        goto out;
    }
    /* Fleet mode: the store (and the secrets in it) before the listener. */
    if (o->data_dir ? (frc = fleet_open(&srv)) < 0
                    : worker_fd < 0 && auth_init(&srv.auth, o->secrets, o->nsecrets) < 0) {
        if (!o->data_dir) fprintf(stderr, "tcpota serve: out of memory\n");
        if (frc == FLEET_OPEN_BAD_ARG) rc = 2; /* like any argument refused */
        goto out;
    }
    /* The handlers before the "listening on" line: a script that reads it
     * and stops the server at once must find SIGTERM handled, not die of
     * it (the loop below takes the signal).  Before this point a stop
     * signal ends the start as the default action does. */
    srv.sigint = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
    srv.sighup = evsignal_new(srv.base, SIGHUP, signal_cb, &srv);
    srv.sigusr1 = evsignal_new(srv.base, SIGUSR1, signal_cb, &srv);
    srv.sigusr2 = evsignal_new(srv.base, SIGUSR2, signal_cb, &srv);
    event_add(srv.sigint, NULL);
    event_add(srv.sigterm, NULL);
    event_add(srv.sighup, NULL);
    event_add(srv.sigusr1, NULL);
    event_add(srv.sigusr2, NULL);
    if (listen_on(&srv, worker_fd) < 0) {
        goto out;
    }
    if (worker_fd >= 0) {
        sigprocmask(SIG_SETMASK, &unblocked, NULL); /* handlers in place: see workers_run */
    }
    notify_ready(o); /* (a worker has forgotten the manager's socket) */
    {
        struct timeval second = {(time_t)SWEEP_PERIOD_S, 0};
        srv.sweep = event_new(srv.base, -1, EV_PERSIST, sweep_cb, &srv);
        srv.swept_at = now_s();
        event_add(srv.sweep, &second);
    }
    srv.started = now_s();
    srv.auth_refused.since = (int64_t)time(NULL);
    event_base_dispatch(srv.base);
    /* A second stop signal (the terminal's SIGINT beside the supervisor's
     * SIGTERM; timeout(1) and systemd send one to the process and one to
     * its group), or a SIGHUP or SIGUSR1 passed on just before, must not
     * kill the server once its handlers are gone: it ends with its summary
     * and exit 0, as it was asked to (143 was seen, 2 stops in 5). The
     * store's thread is joined before the handlers go; the offload
     * threads block every signal. */
    workers_block_signals(NULL);
    /* Closed first: the kernel took a device's connection into the
     * listener's queue while the stop waited (on a hung database), and the
     * device waited its 30 s for an answer (a trial). */
    if (srv.lis) {
        accept_pause_unguard(srv.lis);
        evconnlistener_free(srv.lis);
        srv.lis = NULL;
    }
    while (srv.conns) {
        conn_free(srv.conns);
    }
    /* The fleet's HTTP connections close here, each download's line (and
     * what its close counts) before the summary: it is the last line. */
    fleet_close(&srv);
    if (srv.reloading) {
        say_always(srv.o, LOG_LV_WARN, "stopping: the reload under way (of %s) is not "
                   "applied", srv.reloading->fresh->image);
    }
    print_summary(&srv);
    rc = 0;
out:
    if (srv.sigint) event_free(srv.sigint);
    if (srv.sigterm) event_free(srv.sigterm);
    if (srv.sighup) event_free(srv.sighup);
    if (srv.sigusr1) event_free(srv.sigusr1);
    if (srv.sigusr2) event_free(srv.sigusr2);
    if (srv.sweep) event_free(srv.sweep);
    if (srv.tail_ev) event_free(srv.tail_ev);
    if (srv.tail_ep >= 0) close(srv.tail_ep);
    if (srv.lis) {
        accept_pause_unguard(srv.lis);
        evconnlistener_free(srv.lis);
    }
    proxied_free_all(&srv);
    fleet_close(&srv);
    reload_abandon(&srv);
    if (srv.base) event_base_free(srv.base);
    tls_context_free(srv.tls);
    auth_free(&srv.auth);
    unauth_clear(&srv.unauth);
    image_unref(srv.img);
    if (srv.devices.slots) devices_free(&srv.devices);
    if (srv.reloaded) {
        opts_free(srv.reloaded);
    }
    return rc;
}
