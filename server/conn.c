/* conn.c - one connection: its bytes in and out of the v1 session, the
 * libevent callbacks that drive it, and flow control (see conn.h); what
 * the session's events mean is conn_session.c's.
 *
 * A connection has two events of its own (read, write) and an output
 * queue (an evbuffer: control bytes, and runs of the image's prebuilt
 * frames by reference, which evbuffer_write() sends with sendfile); what it
 * reads is handed to the session where it lies. Inside TLS the same, but
 * for the socket calls: SSL_read into the stack (conn_recv), SSL_write
 * from the queue's bytes where they lie (conn_flush); where the kernel
 * encrypts (kernel TLS) only the reads. A TLS bufferevent cost a malloc()
 * per read, level-triggered polls of ready sockets and a wakeup per 16 KiB
 * written (bench/README.md, twenty-second and forty-fifth sessions). */
#include "conn.h"
#include "fleet.h"
#include "legacy.h"
#include "log.h"
#include "metrics.h"
#include "proxy_proto.h"
#include "server_internal.h"
#include "sock.h"
#include "proxied.h" /* proxied_from */
#include "text.h"
#include "tls_server.h"

#include <errno.h>
#include <stddef.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h> /* BEV_EVENT_*: how conn_event is told an end */
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* What a plain tcpota device on the TLS port is told (ERROR DENIED; at
 * most TCPOTA_MAX_MESSAGE characters). */
#define CONN_TLS_ONLY_MSG "this port speaks TLS only: connect with TLS (tcpota device --ca " \
                          "<the server's CA certificate>; CONFIG_TCPOTA_TLS on ESP-IDF)"

#define CONN_DRAIN_CHUNK 512u        /* what a close reads of a refused peer, a call at a time */
#define CONN_DRAIN_MAX (64u << 10)   /* ... and in all */
#define TLS_FLUSH_IOV 8              /* the queue's pieces one tls_flush looks at */
#define TLS_WRITE_MAX (256u << 10)   /* what one SSL_write is given at most */
#define TLS_FLUSH_MAX (1u << 20)     /* ... and one tls_flush, then the loop's other work */

/* The answer to a TLS client on a plain port (tls_on_plain): text, whose
 * first bytes no TLS record starts with. */
#define CONN_PLAIN_ONLY_MSG "tcpota: this port speaks plain TCP, not TLS (tcpota serve without " \
                            "--tls-cert)\r\n"

_Static_assert(sizeof(CONN_TLS_ONLY_MSG) - 1 <= TCPOTA_MAX_MESSAGE, "an ERROR message is at most 200 bytes");

static void conn_take(struct conn *c);
static void tail_leave(struct conn *c, int closing);
static void conn_event(struct conn *c, short what);
/* What take_chunk() did with a chunk of input. */
enum take {
    TAKEN,    /* handed over */
    KEPT,     /* must wait: reading paused, or a legacy device waits for the store */
    KEPT_ASK, /* must wait: a legacy device just told apart, the store to be asked */
    KEPT_REST, /* taken in part, the rest kept: a legacy device's answers pile up */
    STOPPED,  /* c stopped reading (closing) or is gone */
};

static enum take take_read(struct conn *c, const uint8_t *buf, size_t n);
static ssize_t conn_flush(struct conn *c);
static int hello_overdue(struct conn *c);
static int direct_writes(struct conn *c, int to_fd);
static void tls_handshake(struct conn *c);
static void conn_write_on(struct conn *c);

/* Output goes through c->out and c->wr (direct_writes), drained by send()
 * and sendfile(), or inside TLS by SSL_write (conn_flush). */
struct evbuffer *conn_out(const struct conn *c)
{
    return c->out;
}

/* 1 when OpenSSL encrypts what c sends (TLS, but for kernel TLS): its
 * queue is written by SSL_write, not send() and sendfile(). */
static int user_tls(const struct conn *c)
{
    return c->ssl && !c->ktls;
}

/* Input read but not yet taken: what c kept (take_read); NULL when it
 * never kept any. */
static struct evbuffer *conn_in(const struct conn *c)
{
    return c->in;
}

static size_t out_len(const struct conn *c)
{
    struct evbuffer *out = conn_out(c);

    return out ? evbuffer_get_length(out) : 0;
}

static size_t in_len(const struct conn *c)
{
    struct evbuffer *in = conn_in(c);

    return in ? evbuffer_get_length(in) : 0;
}

/* 1 once c can read and write: a plain socket from the start, a TLS one
 * once its first byte has come (before it, c has no TLS state; writes
 * wait for the handshake's end, conn_flush). */
static int conn_io(const struct conn *c)
{
    return c->out != NULL;
}

/* 1 while an offer streams: from the OFFER until the session ends. */
static int offer_streams(const struct conn *c)
{
    enum tcpota_srv_state st = tcpota_srv_get_state(&c->s);

    return c->kind == K_V1 &&
           (st == TCPOTA_SRV_OFFERED || st == TCPOTA_SRV_STREAMING || st == TCPOTA_SRV_SENT_ALL);
}

/* How much DATA c queues at a time: once an offer streams, the whole image
 * (up to OUT_HIGH_REF) where it goes as runs of prebuilt frames by
 * reference (at the image's chunk, or its variant's: image_prebuilt),
 * which cost no memory until sent (sendfile; inside TLS SSL_write from
 * their mapping, as the socket takes them); OUT_HIGH_COPY where its frames
 * are built one by one (copied: heap); else OUT_HIGH. */
static size_t conn_out_cap(const struct conn *c)
{
    size_t pre = offer_streams(c) && c->img ? image_prebuilt(c->img, c->s.chunk) : 0;

    if (pre) {
        return pre < OUT_HIGH_REF ? pre : OUT_HIGH_REF;
    }
    if (offer_streams(c) && c->img && !pre) {
        return OUT_HIGH_COPY; /* a hostile trial: MAX_PAYLOAD 520 held 1 MiB of heap */
    }
    return OUT_HIGH;
}

/* conn.h. Behind runs of up to a whole image what counts is the control
 * frames queued since the queue was last empty (READ_SLACK of them); a
 * legacy device's answers, LEGACY_QUEUE_MAX; elsewhere the queue's length,
 * READ_SLACK above OUT_HIGH. */
int conn_replies_pile_up(const struct conn *c)
{
    size_t len = out_len(c);

    if (c->kind == K_LEGACY) {
        return len >= LEGACY_QUEUE_MAX; /* a trial's req0 flood held 700 KiB */
    }
    return conn_out_cap(c) > OUT_HIGH ? c->ctl_queued >= READ_SLACK : len >= OUT_HIGH + READ_SLACK;
}

/* 1 when a paused reader may read again: its queue drained (behind runs),
 * or fell to half the pause's length. */
static int replies_drained(const struct conn *c)
{
    size_t len = out_len(c);

    if (c->kind == K_LEGACY) {
        return len < LEGACY_QUEUE_MAX / 2;
    }
    return conn_out_cap(c) > OUT_HIGH ? len == 0 : len < (OUT_HIGH + READ_SLACK) / 2;
}

uint64_t conn_bytes_sent(const struct conn *c)
{
    size_t unsent, frame, chunk;

    if (c->kind != K_V1 || !conn_io(c) || !c->img) {
        return c->bytes_sent;
    }
    /* What still waits in the queue was counted when queued: take it back,
     * in image bytes (each chunk travels with its frame's overhead). */
    unsent = out_len(c);
    chunk = c->s.chunk ? c->s.chunk : c->img->chunk;
    frame = chunk + TCPOTA_DATA_OVERHEAD;
    unsent = unsent / frame * chunk + (unsent % frame > TCPOTA_DATA_OVERHEAD
                                           ? unsent % frame - TCPOTA_DATA_OVERHEAD : 0);
    return unsent < c->bytes_sent ? c->bytes_sent - unsent : 0;
}

void conn_free(struct conn *c)
{
    struct server *srv = c->srv;
    uint64_t sent = conn_bytes_sent(c);

    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    srv->stats.bytes_sent += sent;
    if (c->img) metrics_bytes(c->rollout_id, c->img->desc.id, sent);
    if (c->unauth) unauth_del(&srv->unauth, c->addr);
    tail_leave(c, 1);
    fleet_conn_gone(c);
    if (c->first_byte) event_free(c->first_byte);
    if (c->rd) event_free(c->rd);
    if (c->wr) event_free(c->wr);
    /* The queue's chains refer into the image, but freeing a chain never
     * reads its bytes. */
    if (c->out) evbuffer_free(c->out);
    if (c->in) evbuffer_free(c->in);
    /* No close_notify (nor did libevent's TLS bufferevent send one): the
     * session's own frames say where it ends. */
    if (c->ssl) SSL_free(c->ssl);
    evutil_closesocket(c->fd);
    image_unref(c->img);
    free(c);
}

/* While a connection streams (from its OFFER until the session ends), its
 * device's ACKs (12 bytes per 16 KiB written by default) need not wake the
 * loop one by one: the socket reports input only once STREAM_RCVLOWAT
 * bytes wait (Linux counts SO_RCVLOWAT for epoll too; inside TLS the bytes
 * of as many one-ACK records: STREAM_RCVLOWAT_TLS, all read at once, see
 * conn_take). Progress is then seen 64 ACKs at a time, and at least once a
 * second (conn_lowat_tick). Whatever ends a session is seen at once all
 * the same (within TAIL_MS once the whole image is out, see tail_enter): a
 * device half-closes after its COMPLETE (the runner's linger) or closes
 * after an ERROR or DECLINE, and an end of stream or an error is reported
 * whatever the watermark. A peer that says COMPLETE and stays connected
 * is read within a second. */
static void stream_lowat(struct conn *c, int on)
{
    int v = !on ? 1 : c->srv->tls ? (int)STREAM_RCVLOWAT_TLS : (int)STREAM_RCVLOWAT;

    if (!conn_io(c) || c->lowat == on) {
        return;
    }
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0) {
        c->lowat = (uint8_t)on;
    }
}

int conn_input_unread(const struct conn *c)
{
    return conn_io(c) && sock_unread(c->fd) > 0;
}

/* Whether the socket takes more now: a write that timed out while the loop
 * ran late (stopped, starved) may have had room since, the peer reading
 * all along; libevent reports the expired timeout alone even then. */
static int output_room(const struct conn *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};

    return conn_io(c) && poll(&p, 1, 0) == 1 && (p.revents & POLLOUT);
}

/* Reading. A connection reads with an event of its own: one recv() into
 * the stack per readable event (inside TLS, SSL_read: conn_recv), handed
 * to the session where it lies (take_read). A bufferevent's read asks
 * FIONREAD first and has the kernel write into the buffer's new memory:
 * two system calls, and a page the kernel has not touched. The idle
 * timeout starts again with each readable event, and reading stops when
 * it passes. */
static int conn_reading(const struct conn *c)
{
    return c->rd_on;
}

/* The tail: a connection that has handed its whole image to the
 * kernel (tcpota_srv_all_sent, nothing queued) waits only for what its
 * device still sends: the last ACKs, COMPLETE, the close. Nothing there is
 * urgent, and in the loop each device's end would wake the server on its
 * own (1,000 devices x 1 MiB: 1,140 wakeups; 215 with the tail, and 5 to
 * 10 % less server CPU on a quiet machine, more when other work shares
 * its core: bench/README.md, fifteenth session). Its socket moves to an
 * epoll instance of its own (srv->tail_ep), which tail_cb reads every
 * TAIL_MS while it holds any: the ends of all devices that finished
 * meanwhile in one turn. The once-a-second tick reads them as it reads
 * every streaming connection (conn_lowat_tick), for input below the
 * watermark. */
static void tail_cb(evutil_socket_t fd, short what, void *arg);

static void tail_arm(struct server *srv)
{
    struct timeval tv = {0, TAIL_MS * 1000};

    if (srv->ntail && !evtimer_pending(srv->tail_ev, NULL)) {
        evtimer_add(srv->tail_ev, &tv);
    }
}

static void tail_enter(struct conn *c)
{
    struct server *srv = c->srv;
    struct epoll_event ev;

    if (!c->rd || !c->rd_on || c->tail || c->closing || !c->lowat || !tcpota_srv_all_sent(&c->s)) {
        return;
    }
    if (srv->tail_ep < 0) {
        srv->tail_ep = epoll_create1(EPOLL_CLOEXEC);
    }
    if (srv->tail_ep >= 0 && !srv->tail_ev) {
        srv->tail_ev = evtimer_new(srv->base, tail_cb, srv);
    }
    if (!srv->tail_ev) {
        return; /* out of memory or descriptors: it stays in the loop, as before */
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(srv->tail_ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        return;
    }
    event_del(c->rd);
    c->rd_on = 0;
    c->tail = 1;
    srv->ntail++;
    tail_arm(srv);
}

/* Back into the loop's hands (reading on or off), or gone (freed: the
 * descriptor's close takes it out of the tail's epoll). */
static void tail_leave(struct conn *c, int closing)
{
    if (!c->tail) {
        return;
    }
    if (!closing) {
        (void)epoll_ctl(c->srv->tail_ep, EPOLL_CTL_DEL, c->fd, NULL);
    }
    c->tail = 0;
    c->srv->ntail--;
}

void conn_read_on(struct conn *c)
{
    tail_leave(c, 0);
    if (c->rd) {
        struct timeval tv;
        tv.tv_sec = (time_t)c->srv->o->idle_timeout_s;
        tv.tv_usec = 0;
        /* A pending event: its timeout restarts. No idle timeout (0): none,
         * as a bufferevent takes a zero timeout. */
        c->rd_on = event_add(c->rd, tv.tv_sec ? &tv : NULL) == 0;
    }
}

void conn_read_off(struct conn *c)
{
    tail_leave(c, 0);
    if (c->rd) {
        event_del(c->rd);
        c->rd_on = 0;
    }
}

/* Reading stopped by the end of the stream, an error or the idle timeout
 * (`what`, as a bufferevent reports it): conn_event, with errno kept. */
static void read_ended(struct conn *c, short what)
{
    int err = errno;

    conn_read_off(c);
    errno = err;
    conn_event(c, (short)(BEV_EVENT_READING | what));
}

/* One read of c's socket into buf: recv(), or inside TLS SSL_read of the
 * next record and every whole one OpenSSL holds (tls_read). Returns the
 * bytes read; 0 at the peer's end; -1 with errno EAGAIN when nothing waits
 * (nor is held), or another errno (0 inside TLS: c->tls_err says why).
 * Inside TLS a failure met behind bytes is the next call's answer. */
static ssize_t conn_recv(struct conn *c, uint8_t *buf, size_t cap)
{
    int n, later;

    if (!c->ssl) {
        return recv(c->fd, buf, cap, MSG_DONTWAIT);
    }
    if (c->tls_later) {
        n = -(int)c->tls_later;
        errno = c->tls_later_errno;
        c->tls_later = 0;
    } else {
        n = tls_read(c->ssl, buf, cap, &c->tls_err, &later);
        if (n > 0 && later) {
            c->tls_later = (uint8_t)-later;
            c->tls_later_errno = errno;
        }
    }
    if (n > 0 || n == -TLS_IO_ERROR) {
        return n > 0 ? n : -1;
    }
    if (n == -TLS_IO_AGAIN) {
        if (SSL_want_write(c->ssl)) {
            /* Its answer to a KeyUpdate waits for room: the write event
             * reads again once there is (wr_cb). */
            c->read_wants_write = 1;
            conn_write_on(c);
        }
        errno = EAGAIN;
        return -1;
    }
    return 0; /* TLS_IO_EOF */
}

/* 1 when OpenSSL holds input of c, or a failure to report (tls_read). */
static int tls_more(const struct conn *c)
{
    return c->ssl && (c->tls_later || tls_holds_input(c->ssl));
}

/* A kernel TLS connection whose device asked for a key update: the answer
 * the RFC wants before any more data cannot be sent (tls_key_update_pending);
 * it ends, the device resumes on its next connection. Returns 1 when c
 * was closed and freed. */
static int ktls_key_update(struct conn *c)
{
    if (!c->ktls || !tls_key_update_pending(c->ssl)) {
        return 0;
    }
    c->srv->stats.failed++;
    clog_(c, 1, "the device asked for a TLS key update, which kernel TLS cannot answer on this "
                "connection; closing (the device resumes on its next connection)");
    (void)conn_close(c, 1);
    return 1;
}

/* One read of what waits (conn_recv), handed to the session (take_read;
 * behind input kept before it, through c->in); an end of stream or an
 * error to conn_event. Inside TLS, again while OpenSSL holds more and the
 * session took all: the socket does not signal what OpenSSL read ahead.
 * restart: the idle timeout starts again after a read (the sweep's read;
 * the read event's own timeout restarts each time it fires). c may be
 * gone after. */
static void read_now(struct conn *c, int restart)
{
    /* On the stack: a page the kernel wrote for the last read. */
    uint8_t buf[READ_MAX];
    ssize_t n;

    do {
        n = conn_recv(c, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return; /* nothing waits */
        }
        if (n <= 0) {
            read_ended(c, n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR);
            return;
        }
        if (ktls_key_update(c)) {
            return;
        }
        if (restart && !c->tail) {
            conn_read_on(c);
            restart = 0;
        }
        if (in_len(c) == 0) {
            if (hello_overdue(c) || take_read(c, buf, (size_t)n) != TAKEN) {
                return; /* c is gone, closing, or keeps the rest for later */
            }
            continue;
        }
        if (evbuffer_add(c->in, buf, (size_t)n) < 0) {
            /* Behind bytes kept before: as take_read's keeping (and as rare:
             * a paused connection does not read). */
            (void)conn_out_of_memory(c, "keeping what the device sent");
            return;
        }
        conn_take(c); /* takes what OpenSSL holds too */
        return;
    } while (tls_more(c));
}

/* Reads each tail connection with input waiting or its end reached, one
 * at a time (a read may end any connection: none is held between two),
 * at most TAIL_BATCH of them; comes back while any is left. */
static void tail_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    struct epoll_event ev;
    unsigned k;
    (void)fd;
    (void)what;

    for (k = 0; k < TAIL_BATCH && srv->ntail && epoll_wait(srv->tail_ep, &ev, 1, 0) == 1; k++) {
        read_now(ev.data.ptr, 0);
    }
    tail_arm(srv);
}

void conn_read_stream(struct conn *c)
{
    if (c->rd && c->lowat && (c->rd_on || c->tail) && !c->closing) {
        read_now(c, 0);
    }
}

static int cmp_cut(const void *a, const void *b)
{
    return strcmp(((const struct conn_cut *)a)->id, ((const struct conn_cut *)b)->id);
}

unsigned conn_cut_authed(struct server *srv, struct conn_cut *cuts, size_t n)
{
    struct conn *c, *next;
    const struct conn_cut *cut;
    struct conn_cut key;
    unsigned k = 0;

    if (!n) return 0;
    qsort(cuts, n, sizeof(*cuts), cmp_cut);
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (!c->authed) continue;
        key.id = tcpota_srv_device_id(&c->s);
        if (!(cut = bsearch(&key, cuts, n, sizeof(*cuts), cmp_cut))) continue;
        if (c->img) {
            clog_(c, 1, "%s: connection cut, at %u of %u bytes durable", cut->why, c->s.acked,
                  c->img->size);
        } else {
            clog_(c, 1, "%s: connection cut", cut->why);
        }
        /* A reset: what the kernel still holds for it is dropped, not sent
         * (a review: a graceful close let 94 kB more reach a device
         * removed at 98 kB of 900 kB). */
        sock_reset_on_close(c->fd);
        (void)conn_close(c, 1);
        k++;
    }
    return k;
}

void conn_drain_streams(struct server *srv)
{
    struct conn *c, *next;

    for (c = srv->conns; c; c = next) {
        next = c->next;
        conn_read_stream(c);
    }
}

static void rd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;

    if (what & EV_TIMEOUT) {
        read_ended(c, BEV_EVENT_TIMEOUT);
        return;
    }
    if (c->ssl && !c->tls_up) {
        tls_handshake(c);
        return;
    }
    read_now(c, 0);
}

void conn_lowat_tick(struct conn *c)
{
    if (!c->lowat || !conn_io(c)) {
        return;
    }
    /* Input waiting below the watermark is read now: progress is then seen
     * at least once a second, a COMPLETE or DECLINE from a device that
     * stays connected within a second, and a slow device's ACKs before the
     * idle timeout judges it. Below the watermark less than STREAM_RCVLOWAT
     * waits: one read takes it (lowering the watermark for the loop to read
     * would cost four system calls more and a wakeup). */
    if (conn_reading(c) || c->tail) {
        read_now(c, 1);
    }
}

/* conn.h */
/* Without --require-auth, a device whose id has a secret authenticates all
 * the same: the secret was given so that no one else reports or updates
 * under that id (tcpota device secret says so). */
static int conn_auth_for(void *ctx, const char *device_id)
{
    struct conn *c = ctx;

    if (!auth_has(&c->srv->auth, device_id)) return 0;
    randombytes_buf(c->nonce, sizeof(c->nonce));
    return 1;
}

void conn_admitted(struct conn *c)
{
    if (c->unauth) {
        unauth_del(&c->srv->unauth, c->addr);
        c->unauth = 0;
    }
}

int conn_close(struct conn *c, int now)
{
    if (now || out_len(c) == 0) {
        conn_free(c);
        return 1;
    }
    /* Stop reading; the write callback frees it once drained. */
    c->closing = 1;
    conn_read_off(c);
    conn_queued(c);
    return 0;
}

/* Plain: watching for writability, with the idle timeout (it restarts
 * with each write: a peer that reads nothing for that long is ended). */
static void conn_write_on(struct conn *c)
{
    struct timeval tv;

    tv.tv_sec = (time_t)c->srv->o->idle_timeout_s;
    tv.tv_usec = 0;
    c->wr_on = event_add(c->wr, tv.tv_sec ? &tv : NULL) == 0;
}

static void conn_write_off(struct conn *c)
{
    event_del(c->wr);
    c->wr_on = 0;
}

void conn_queued(struct conn *c)
{
    if (!conn_io(c)) {
        return;
    }
    if (out_len(c) && !c->wr_on) {
        conn_write_on(c);
    } else if (!out_len(c)) {
        tail_enter(c);
    }
}

size_t conn_write_now(struct conn *c, const void *p, size_t n)
{
    ssize_t w;

    if (!conn_io(c) || out_len(c) || (c->ssl && !c->tls_up)) {
        return 0;
    }
    if (user_tls(c)) {
        return tls_write_now(c->ssl, p, n);
    }
    w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return w > 0 ? (size_t)w : 0;
}

int conn_out_of_memory(struct conn *c, const char *what)
{
    c->srv->stats.failed++;
    clog_(c, 1, "out of memory %s; closing (the device resumes when it connects again)", what);
    return conn_close(c, 1);
}

/* Hands the session's control frames to the socket: with nothing queued
 * at once (conn_write_now: a check-in's answer then costs no write event,
 * and its close follows at once), else behind the queue. Adds the bytes
 * handed over to *moved. Returns 0, or 1 when c ran out of memory and was
 * freed. */
static int move_replies(struct conn *c, size_t *moved)
{
    struct evbuffer *out = conn_out(c);
    const uint8_t *p;
    size_t n = tcpota_srv_output(&c->s, &p), sent = 0;
    /* The session's buffer lies in the connection's own memory, new with
     * each device; a plain socket's send() reads a copy on the stack
     * instead, a page the kernel read for the last device: 7 % less server
     * CPU per delivered GB at 1,000 devices x 1 MiB (bench/README.md,
     * tenth session). */
    uint8_t hot[sizeof(c->tx)];
    const uint8_t *from = p;

    if (evbuffer_get_length(out) == 0) {
        c->ctl_queued = 0;
    }
    if (!n) {
        return 0;
    }
    if (!user_tls(c) && evbuffer_get_length(out) == 0) { /* conn_write_now sends */
        memcpy(hot, p, n); /* n <= sizeof(c->tx): p lies in it */
        from = hot;
    }
    sent = conn_write_now(c, from, n);
    if (sent < n) {
        if (image_add_bytes(out, p + sent, n - sent) < 0) { /* maybe behind a run */
            return conn_out_of_memory(c, "queueing a reply");
        }
        c->ctl_queued += n - sent;
    }
    tcpota_srv_output_done(&c->s, n);
    *moved += n;
    return 0;
}

/* How many frames of the session's size fill `room` bytes of queue (the
 * last one may pass it). */
static uint32_t frames_for(const struct conn *c, size_t room)
{
    size_t frame = (size_t)c->s.chunk + TCPOTA_DATA_OVERHEAD, n = (room + frame - 1) / frame;

    return n < UINT32_MAX ? (uint32_t)n : UINT32_MAX;
}

/* DATA into out, up to cap bytes queued: whole runs of frames per call,
 * one reference each into the prebuilt frames where they fit
 * (image_add_frames). Returns 0, or what conn_out_of_memory() returns. */
static int queue_data(struct conn *c, struct evbuffer *out, size_t cap)
{
    size_t queued = evbuffer_get_length(out), added;
    uint32_t off, len;

    while (queued < cap && tcpota_srv_data_take(&c->s, frames_for(c, cap - queued), &off, &len)) {
        if (image_add_frames(out, c->img, c->s.chunk, off, len, &added) < 0) {
            return conn_out_of_memory(c, "queueing image data");
        }
        c->bytes_sent += len;
        queued += added;
    }
    return 0;
}

int conn_pump(struct conn *c)
{
    struct evbuffer *out = conn_out(c);
    size_t n = c->moved, ahead, cap = conn_out_cap(c);
    int rc;

    /* While the store decides, WELCOME waits for the decision: both go
     * out in one write (a check-in is then one segment each way). */
    if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CHOOSING) {
        return 0;
    }
    ahead = evbuffer_get_length(out);
    c->moved = 0;
    if (move_replies(c, &n)) { /* n: what the session said since the last pump */
        return 1;
    }
    if (c->ended_choosing && !c->closing) {
        /* Answered: said once, whatever the answer (a NO_UPDATE closes
         * anyway, below). After an OFFER: a device that ended its side
         * sends no ACCEPT, and no DATA goes out ahead of one. */
        c->ended_choosing = 0;
        clog_(c, 0, "the device ended its side before its answer came: answered; closing");
        if (tcpota_srv_get_state(&c->s) != TCPOTA_SRV_CLOSING) {
            return conn_close(c, 0);
        }
    }
    if ((rc = queue_data(c, out, cap)) != 0) {
        return rc;
    }
    if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
        if (c->closing) {
            return 0; /* already closing: the write callback frees it */
        }
        if (n == 0 || ahead > OUT_HIGH ||
            (c->bytes_sent && ahead + (size_t)sock_unsent(c->fd) > OUT_HIGH)) {
            /* Nothing of the session's own to say (a DECLINE, the device's
             * ERROR), or its last frame (an ERROR for a protocol violation)
             * would wait behind more than OUT_HIGH of DATA, here or not yet
             * sent by the kernel (asked only when DATA went out): what
             * waits is DATA no one reads, up to a whole image (how much of
             * it the kernel took depends on how far its buffers grew). The
             * kernel sends what it holds and then the FIN; the log has the
             * reason. */
            return conn_close(c, 1);
        }
        conn_queued(c); /* its last frame goes out, then it closes */
        return conn_close(c, 0);
    }
    if (evbuffer_get_length(out) && !c->wr_on) {
        /* Not watching for writability: the socket took all it was given,
         * so it likely takes more now; one write here (sendfile for a run)
         * rather than an epoll_ctl() and a loop turn. Its error, if any,
         * the write event's own write meets again and reports. */
        (void)conn_flush(c);
        /* Frames built one by one queue OUT_HIGH_COPY at a time, less than
         * the socket's buffer may take: while it takes all, the next ones
         * (else nothing would ask for more until the device's next ACK),
         * up to OUT_COPY_TURNS of them; the last is left queued for the
         * write event, so other connections get the loop in between (a
         * review: a fast reader held it for a whole 80 MB image, 75 ms). */
        for (unsigned turn = 1; cap == OUT_HIGH_COPY && !evbuffer_get_length(out) &&
                                !tcpota_srv_all_sent(&c->s); turn++) {
            if ((rc = queue_data(c, out, cap)) != 0) {
                return rc;
            }
            if (!evbuffer_get_length(out) || turn == OUT_COPY_TURNS) {
                break; /* nothing due now (the prestream limit), or its turn is over */
            }
            (void)conn_flush(c);
        }
    }
    conn_queued(c);
    return 0;
}

/* Starts the stream of an offer just sent, and logs it (conn.h). */
void conn_offered(struct conn *c, const char *what, uint32_t start)
{
    stream_lowat(c, 1);
    conn_set_outcome(c, DEV_SEEN);
    c->stream_from = start;
    c->next_pct = (uint32_t)((uint64_t)start * 10 / c->img->size + 1) * 10;
    clog_(c, 0, "%s: offer %s (%u bytes) %s %u", what, c->img->version, c->img->size,
          start ? "resume from" : "from", start);
}

/* Names for the log of a device's malformed message (docs/protocol.md). */
static const char *msg_name(uint8_t type)
{
    switch (type) {
    case TCPOTA_T_HELLO: return "HELLO";
    case TCPOTA_T_ACCEPT: return "ACCEPT";
    case TCPOTA_T_DECLINE: return "DECLINE";
    case TCPOTA_T_ACK: return "ACK";
    case TCPOTA_T_COMPLETE: return "COMPLETE";
    case TCPOTA_T_ERROR: return "ERROR";
    case TCPOTA_T_AUTH: return "AUTH";
    default: return "a message";
    }
}

static const char *tag_name(uint8_t tag)
{
    switch (tag) {
    case TCPOTA_TAG_DEVICE_ID: return "device id";
    case TCPOTA_TAG_MODEL: return "model";
    case TCPOTA_TAG_VERSION: return "version";
    case TCPOTA_TAG_RUNNING_ID: return "running image id";
    case TCPOTA_TAG_RESUME: return "resume";
    case TCPOTA_TAG_MAX_PAYLOAD: return "max payload";
    case TCPOTA_TAG_REPORT: return "report";
    case TCPOTA_TAG_MESSAGE: return "message";
    default: return NULL;
    }
}

static int v1_input(struct conn *c, const uint8_t *p, size_t n)
{
    const uint8_t *out;

    while (n) {
        struct tcpota_srv_event ev;
        int used = tcpota_srv_input(&c->s, p, n, &ev);
        if (used < 0) {
            if (used != TCPOTA_ERR_DENIED) {
                c->srv->stats.failed++; /* a refusal for authentication is counted there */
            }
            if (!c->dev[0]) {
                /* A HELLO refused (its device id is known all the same). */
                (void)text_copy(c->dev, sizeof(c->dev), tcpota_srv_device_id(&c->s));
            }
            if (used == TCPOTA_ERR_DENIED) {
                /* The one refusal of input: a HELLO without the AUTH
                 * feature (the core's on_hello). */
                server_auth_refused(c->srv, AUTH_REFUSED_NO_PROOF, c->dev, c->addr);
                clog_(c, 1, "refused: the device does not authenticate (no secret given to it, "
                            "or a build without authentication) and %s; give the device its "
                            "secret (tcpota device --secret FILE); closing",
                      c->srv->o->require_auth ? "this server requires it (--require-auth)"
                                              : "its id has a secret on this server");
            } else {
                char field[96] = "", tag[24];
                const char *why = tcpota_srv_failure(&c->s), *name = tag_name(ev.msg.bad_tag);

                if (strcmp(why, tcpota_strerror(used)) == 0) {
                    why = ""; /* "frame CRC mismatch" once */
                }
                if (ev.msg.bad_tag) {
                    if (!name) {
                        snprintf(tag, sizeof(tag), "field of tag 0x%02x", ev.msg.bad_tag);
                        name = tag;
                    }
                    snprintf(field, sizeof(field), " (%s: its %s%s is out of the protocol's rules)",
                             msg_name(ev.msg.type), name, name == tag ? "" : " field");
                }
                clog_(c, 1, "error: %s%s%s%s; closing", tcpota_strerror(used), *why ? ": " : "",
                      why, field);
            }
            (void)conn_pump(c); /* flushes the ERROR frame, then closes */
            return -1;
        }
        conn_session_event(c, &ev);
        if (c->reseek_stopped) {
            clog_(c, 1, "its rollout was halted or cancelled once every byte had been sent, and it "
                        "asks for the image from byte %u again: transfer stopped; closing",
                  ev.start);
            sock_reset_on_close(c->fd);
            (void)conn_close(c, 1);
            return -1; /* c is gone */
        }
        p += used;
        n -= (size_t)used;
        if (tcpota_srv_output(&c->s, &out) > sizeof(c->tx) / 2 &&
            tcpota_srv_get_state(&c->s) != TCPOTA_SRV_CHOOSING) {
            /* Replies to many small frames in one read (PINGs): queued now,
             * so the session's buffer never runs out; the read pause
             * (conn_replies_pile_up) bounds what may queue. */
            if (move_replies(c, &c->moved)) {
                return -1; /* c is gone */
            }
        }
        if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
            break; /* the rest is ignored */
        }
    }
    if (offer_streams(c) && !c->lowat) {
        stream_lowat(c, 1); /* lowered by conn_lowat_tick, still streaming */
    }
    return conn_pump(c) ? -1 : 0;
}

/* Bytes enough to call them a PROXY header's start: "PROXY " (v1), or as
 * many of v2's signature ("\r\n" alone is a person at a terminal). */
#define PROXY_SIG_MIN 6u

/* An HTTP request's method: HTTP_METHOD_MIN to HTTP_METHOD_MAX capitals,
 * then a space ("GET ", "OPTIONS "). */
#define HTTP_METHOD_MIN 3u
#define HTTP_METHOD_MAX 7u

static int looks_like_http(const uint8_t *buf, size_t n)
{
    size_t i = 0;

    while (i < n && i < HTTP_METHOD_MAX && buf[i] >= 'A' && buf[i] <= 'Z') {
        i++;
    }
    return i >= HTTP_METHOD_MIN && i < n && buf[i] == ' ';
}

/* 1 when buf[0..n) starts a balancer's PROXY header, else 0. */
static int is_proxy_header(const uint8_t *buf, size_t n)
{
    struct proxy_addr unused;
    const char *why;

    return n >= PROXY_SIG_MIN && proxy_parse(buf, n, &unused, &why) >= 0;
}

int conn_behind_balancer(const struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[TEXT_HOST_LEN], port[TEXT_PORT_LEN];

    if (!c->srv->o->nproxy_from || getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0) {
        return 0;
    }
    text_sockaddr((struct sockaddr *)&ss, sl, host, port);
    return proxied_from(c->srv, host);
}

/* "unknown protocol", with what the first bytes look like when that says
 * what to change (TLS, a balancer's PROXY header, an HTTP client). The
 * PROXY header's and the HTTP request's lines are at most LOG_PEER_BURST a
 * LOG_PEER_MS together: a balancer's health checks repeat theirs every few
 * seconds, a browser retries. */
static void unknown_said(struct conn *c, const uint8_t *buf, size_t n, int kind)
{
    const char *hint = "";
    char more[LOG_MORE_MAX] = "", http[320];
    int is_proxy = kind != TCPOTA_KIND_TLS && is_proxy_header(buf, n);
    int is_http = kind != TCPOTA_KIND_TLS && !is_proxy && looks_like_http(buf, n);

    if ((is_proxy || is_http) && !log_limit_say(&c->srv->hint_log, LOG_PEER_MS, LOG_PEER_BURST,
                                                "such lines", more, sizeof(more))) {
        return;
    }
    if (kind == TCPOTA_KIND_TLS) {
        hint = ": a TLS client, but this server runs without --tls-cert";
    } else if (is_proxy && conn_behind_balancer(c)) {
        /* Its balancer's header was read already: this one is a client's,
         * passed through (a hostile trial was advised to list the address
         * it claimed). */
        hint = ": a second PROXY protocol header, after the balancer's: a client's own header sent"
               " through it (or send-proxy given twice); not read";
    } else if (is_proxy) {
        hint = c->srv->o->nproxy_from
                   ? ": a PROXY protocol header from an address --proxy-protocol does not list: "
                     "add it if it is your balancer's"
                   : ": a PROXY protocol header (a balancer's send-proxy): give --proxy-protocol "
                     "with the balancer's address, or turn send-proxy off";
    } else if (is_http) {
        char where[256];
        fleet_http_where(c->srv, where, sizeof(where));
        snprintf(http, sizeof(http), ": an HTTP request, but this port speaks tcpota's protocol; %s", where);
        hint = http;
    }
    clog_(c, 1, "unknown protocol (first byte 0x%02x%s); closing%s", buf[0], hint, more);
}

/* Reads what a refused peer sent, before the answer and the close (a
 * close over unread bytes is a reset, which can overtake the answer);
 * bounded: a peer that keeps sending must not hold the loop. */
static void drain_refused(evutil_socket_t fd)
{
    uint8_t junk[CONN_DRAIN_CHUNK];
    size_t drained = 0;
    ssize_t k;

    while (drained < CONN_DRAIN_MAX && (k = recv(fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0) {
        drained += (size_t)k;
    }
}

/* A TLS client on this plain port gets CONN_PLAIN_ONLY_MSG, which is no TLS
 * record: its TLS stack then fails at once saying so ("wrong version
 * number"), which the device reads as "this port does not speak TLS" and
 * stops (a close alone read as a server at its limits, retried). */
static void tls_on_plain(struct conn *c)
{
    drain_refused(c->fd);
    (void)send(c->fd, CONN_PLAIN_ONLY_MSG, sizeof(CONN_PLAIN_ONLY_MSG) - 1,
               MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Tells v1 from legacy by the first bytes and admits the connection, or
 * refuses it. Returns 0, or -1 when c was closed and freed. */
static int detect(struct conn *c, const uint8_t *buf, size_t n)
{
    int k = tcpota_detect(buf, n);
    const char *refusal;

    if (k == TCPOTA_KIND_V1) {
        c->kind = K_V1;
        metrics_connection(METRICS_V1);
        return 0;
    }
    if (k == TCPOTA_KIND_LEGACY && (refusal = legacy_refusal(c->srv->o, c->srv->o->manifest != NULL)) != NULL) {
        if (legacy_auth_refused(c->srv->o)) { /* no id: counted, not listed */
            server_auth_refused(c->srv, AUTH_REFUSED_NO_PROOF, NULL, c->addr);
        } else {
            c->srv->stats.refused++; /* each connection counted once (print_summary) */
        }
        clog_(c, 1, "legacy (req0/req1) device refused: %s", refusal);
        (void)conn_close(c, 1);
        return -1;
    }
    if (k == TCPOTA_KIND_LEGACY) {
        int one = 1;
        c->kind = K_LEGACY;
        metrics_connection(METRICS_LEGACY);
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        snprintf(c->dev, sizeof(c->dev), "legacy");
        conn_admitted(c);
        clog_(c, 0, "legacy (req0/req1) device connected%s",
              c->srv->o->require_auth ? " (unauthenticated: --allow-unauthenticated-legacy)" : "");
        return 0;
    }
    c->srv->stats.failed++;
    unknown_said(c, buf, n, k);
    if (k == TCPOTA_KIND_TLS) {
        tls_on_plain(c);
    }
    (void)conn_close(c, 1);
    return -1;
}

/* Stops reading a peer whose replies pile up: the write callback resumes
 * once the peer reads again; if it never does, the write timeout ends the
 * connection. */
static void pause_reading(struct conn *c)
{
    c->read_paused = 1;
    conn_read_off(c);
}

/* Keeps buf[0..n) in front of c's unread input (c->in, made on first
 * use), then asks the store when `t` says so (it takes them
 * through conn_read_again). The bytes are taken from the socket: without
 * memory for them the stream would have a hole, and c is closed (and
 * freed). tests/tools/failqueue.c fails the prepend on demand. */
static void keep_input(struct conn *c, const uint8_t *buf, size_t n, enum take t)
{
    if ((!c->in && !(c->in = evbuffer_new())) ||
        evbuffer_prepend(conn_in(c), buf, n) < 0) {
        (void)conn_out_of_memory(c, "keeping what the device sent");
        return;
    }
    if (t == KEPT_ASK) {
        (void)fleet_legacy_start(c);
    }
}

/* Hands one chunk of a connection's input (at most READ_MAX bytes, in
 * order) to the detector and the session, or says that it must wait: the
 * rule for each chunk, whether it lies in a buffer (take_input) or where
 * a plain read put it (take_read). */
static enum take take_chunk(struct conn *c, const uint8_t *buf, size_t n)
{
    if (conn_replies_pile_up(c)) {
        pause_reading(c);
        return KEPT;
    }
    if (c->kind == K_LEGACY && !c->img) {
        return KEPT; /* fleet mode: waiting for the store to choose its image */
    }
    if (c->kind == K_UNKNOWN && detect(c, buf, n) < 0) {
        return STOPPED; /* c is gone */
    }
    if (c->kind == K_LEGACY && !c->img) {
        return KEPT_ASK;
    }
    if (c->kind == K_LEGACY) {
        int used = legacy_input(c, buf, n);
        if (used < 0) {
            return STOPPED; /* c is gone */
        }
        if ((size_t)used < n) {
            pause_reading(c);
            keep_input(c, buf + used, n - (size_t)used, KEPT);
            return KEPT_REST;
        }
        return TAKEN;
    }
    if (v1_input(c, buf, n) < 0) {
        return STOPPED; /* c may be gone */
    }
    if (c->kind == K_V1 && tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
        return STOPPED; /* waiting for the output to drain */
    }
    return TAKEN;
}

/* Takes what waits in the input buffer. Returns 0 when it took it all,
 * -1 when c stopped reading (paused, waiting for the store, closing) or is
 * gone. */
static int take_input(struct conn *c, struct evbuffer *in)
{
    uint8_t buf[READ_MAX];

    while (evbuffer_get_length(in)) {
        enum take t;
        int n = evbuffer_remove(in, buf, sizeof(buf));
        if (n <= 0) break;
        /* Out of the buffer first: the session may end c. */
        t = take_chunk(c, buf, (size_t)n);
        if (t == TAKEN) continue;
        if (t != STOPPED && t != KEPT_REST) {
            keep_input(c, buf, (size_t)n, t); /* back where they were */
        }
        return -1;
    }
    return 0;
}

/* The bytes just read, handed over where they lie when no earlier input
 * waits (c->in empty); kept when they must wait. Returns what take_chunk
 * did: c may be gone unless TAKEN. */
static enum take take_read(struct conn *c, const uint8_t *buf, size_t n)
{
    enum take t = take_chunk(c, buf, n);

    if (t == KEPT || t == KEPT_ASK) {
        keep_input(c, buf, n, t); /* may free c */
    }
    return t;
}

/* 1 when input waits to be taken: kept, or held by OpenSSL. */
static int input_waiting(struct conn *c)
{
    return in_len(c) || tls_more(c);
}

/* 1 when c, not legacy, has sent no HELLO within one idle timeout of
 * connecting (a peer that trickles bytes resets the idle timer forever):
 * then c is closed and freed. Not judged while the loop runs late. */
static int hello_overdue(struct conn *c)
{
    if (c->kind == K_LEGACY || c->s.got_hello || !conn_overdue(c, now_s())) {
        return 0;
    }
    c->srv->stats.failed++;
    clog_(c, 1, "no HELLO within %u s (too slow); closing", c->srv->o->idle_timeout_s);
    (void)conn_close(c, 1);
    return 1;
}

/* Takes what c kept, then inside TLS what OpenSSL holds (read ahead: the
 * socket does not signal it again). c may be gone after. */
static void conn_take(struct conn *c)
{
    struct evbuffer *in = conn_in(c);

    if (hello_overdue(c)) {
        return;
    }
    if (in && take_input(c, in) < 0) {
        return;
    }
    if (tls_more(c)) {
        read_now(c, 0);
    }
}

void conn_read_again(struct conn *c)
{
    if (conn_io(c) && input_waiting(c)) {
        conn_take(c);
    }
}

/* Output drained to its low mark (OUT_LOW; 0 while closing) after a write:
 * reading resumes if it was paused, more DATA is queued, a closing
 * connection ends once all is out. */
static void conn_wrote(struct conn *c)
{
    int resume = 0;

    if (out_len(c) == 0) {
        c->ctl_queued = 0;
    }
    if (c->read_paused && !c->closing && replies_drained(c)) {
        c->read_paused = 0;
        conn_read_on(c);
        resume = 1;
    }
    if (c->kind == K_V1) {
        if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
            if (out_len(c) == 0) {
                conn_free(c);
            }
            return;
        }
        if (conn_pump(c)) {
            return; /* c is gone */
        }
    } else if (c->closing && out_len(c) == 0) {
        conn_free(c);
        return;
    }
    if (resume && input_waiting(c)) {
        conn_take(c); /* what arrived while reading was paused */
    }
}

/* Inside TLS (but for kernel TLS): SSL_write of what the queue holds, from
 * where it lies (control bytes; runs of prebuilt frames, which libevent
 * maps), a record at a time, while the socket takes them. After a
 * WANT_WRITE the next call passes the same bytes from their start, as
 * OpenSSL requires: nothing leaves the queue but what was written. */
static ssize_t tls_flush(struct conn *c)
{
    struct evbuffer_iovec v[TLS_FLUSH_IOV];
    size_t done = 0;
    int k, i;

    if (!c->tls_up) {
        errno = EAGAIN; /* the handshake first (nothing is queued before its end) */
        return -1;
    }
    k = evbuffer_peek(c->out, -1, NULL, v, TLS_FLUSH_IOV);
    for (i = 0; i < k && i < TLS_FLUSH_IOV && done < TLS_FLUSH_MAX; i++) {
        size_t off = 0;
        while (off < v[i].iov_len && done < TLS_FLUSH_MAX) {
            size_t len = v[i].iov_len - off;
            int w = tls_write(c->ssl, (const uint8_t *)v[i].iov_base + off,
                              len < TLS_WRITE_MAX ? len : TLS_WRITE_MAX, &c->tls_err);
            if (w <= 0) {
                if (done) {
                    break; /* met again by the next call */
                }
                errno = w == -TLS_IO_AGAIN ? EAGAIN : w == -TLS_IO_EOF ? EPIPE : errno;
                return -1;
            }
            off += (size_t)w;
            done += (size_t)w;
        }
        if (off < v[i].iov_len) {
            break;
        }
    }
    if (done) {
        (void)evbuffer_drain(c->out, done);
    }
    return (ssize_t)done;
}

/* One write of all the socket takes of c's queue: evbuffer_write (sendfile
 * for runs of frames), or inside TLS tls_flush. As evbuffer_write: the
 * bytes written, 0 when nothing more can go out, -1 with errno. */
static ssize_t conn_flush(struct conn *c)
{
    return user_tls(c) ? tls_flush(c) : evbuffer_write(c->out, c->fd);
}

/* The socket takes more (or the write timed out). One write of all it
 * takes (conn_flush); what a bufferevent's write does, its errors reported
 * the same way, but for one: libevent's sendfile returns 0, not -1, when
 * the socket takes nothing now (EAGAIN, which the kernel may say of a
 * socket it called writable when TCP's memory runs short), and a
 * bufferevent then ends the connection. That is tried again here. Inside
 * TLS, first the handshake's writes while it runs. */
static void wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    ssize_t n;
    (void)fd;

    if ((what & EV_TIMEOUT) && !output_room(c)) {
        conn_write_off(c);
        conn_event(c, BEV_EVENT_WRITING | BEV_EVENT_TIMEOUT);
        return;
    }
    if (c->ssl && !c->tls_up) {
        conn_write_off(c);
        tls_handshake(c);
        return;
    }
    if (c->read_wants_write && evbuffer_get_length(c->out) == 0) {
        /* A read that had to write first (conn_recv): it goes on. */
        c->read_wants_write = 0;
        conn_write_off(c);
        read_now(c, 0);
        return;
    }
    /* Timed out with room: the loop was late, not the peer. The event
     * stays, its timeout started again. */
    if (evbuffer_get_length(c->out) == 0) {
        conn_write_off(c); /* nothing to write: not armed on a writable socket */
        return;
    }
    errno = 0;
    n = conn_flush(c);
    if (n <= 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        /* 0 with no error: nothing more goes out (a file segment past the
         * file's end; libevent takes it as the end of the stream too).
         * errno is the log's. */
        int err = errno;
        conn_write_off(c);
        if (n < 0 && c->rd && !c->closing && !c->read_paused && conn_input_unread(c)) {
            /* A reset that came behind the device's last frames (the ACKs
             * a stopped device sends first): they are read before the end
             * is reported (read_now meets the error after them), or the
             * stopped download was recorded megabytes short (a test). The
             * write event stays: should reading pause or stop before the
             * error is met (a review), the next failed write reports it. */
            conn_read_on(c);
            conn_write_on(c);
            return;
        }
        errno = err;
        conn_event(c, (short)(BEV_EVENT_WRITING | (n < 0 ? BEV_EVENT_ERROR : BEV_EVENT_EOF)));
        return;
    }
    if (evbuffer_get_length(c->out) == 0) {
        conn_write_off(c);
    }
    if (evbuffer_get_length(c->out) <= (c->closing ? 0 : OUT_LOW)) {
        conn_wrote(c);
    }
}

/* The end of a connection (an end of stream, an error, a timeout), or
 * inside TLS the handshake's end (BEV_EVENT_CONNECTED). */
/* A line about a TLS handshake that did not finish ("TLS handshake
 * failed: ...", "... not finished within ..."): anyone can cause them at
 * will, a port scanner does, so at most LOG_PEER_BURST a LOG_PEER_MS, the
 * next one saying how many were not logged (a hostile trial: 600 lines
 * for 600 dropped connections). */
static void handshake_said(struct conn *c, int warn, const char *what, const char *why)
{
    char more[LOG_MORE_MAX];

    if (log_limit_say(&c->srv->tls_fail_log, LOG_PEER_MS, LOG_PEER_BURST,
                      "unfinished TLS handshakes", more, sizeof(more))) {
        clog_(c, warn, "%s%s%s", what, why, more);
    }
}

static void conn_event(struct conn *c, short what)
{
    int midway = offer_streams(c); /* the device can resume: the log says from where */
    char why[128];

    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && conn_input_unread(c)) {
        /* The read timed out, but the peer's bytes are there: the loop ran
         * late (stopped, starved) and saw the timeout before the socket.
         * Not idle: reading goes on (it stopped at the timeout). */
        conn_read_on(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CHOOSING) {
        /* Its end of stream right after HELLO (a script, a probe) while
         * the store decides (fleet mode): it still gets its answer, and
         * conn_pump closes once that is queued. Freed here, it was sent
         * nothing. Reading stopped (read_ended). */
        c->ended_choosing = 1;
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && c->srv->tls && !c->tls_up) {
        /* A peer that stopped inside the handshake (its read timed out
         * before the deadline from accept, conn_check_deadline). */
        c->srv->stats.failed++;
        snprintf(why, sizeof(why), " within %u s (the peer stopped sending); closing",
                 c->srv->o->idle_timeout_s);
        handshake_said(c, 1, "TLS handshake not finished", why);
    } else if (what & BEV_EVENT_TIMEOUT) {
        c->srv->stats.failed++;
        clog_(c, 1, "idle for %u s (%s); closing", c->srv->o->idle_timeout_s,
              (what & BEV_EVENT_READING) ? "nothing received" : "not reading what we send");
    } else if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        unsigned long tls_err = c->tls_err;
        /* TLS failures come with errno 0 (tls_io_failed): name OpenSSL's
         * reason; any failure before the handshake's end is the handshake's. */
        if (c->srv->tls && !c->tls_up) {
            snprintf(why, sizeof(why), ": %s; closed", tls_error_reason(tls_err));
            handshake_said(c, 0, "TLS handshake failed", why);
        } else if (c->srv->tls && (tls_err || !err) && midway) {
            clog_(c, 0, "TLS error mid-transfer at %u of %u bytes durable: %s; it can resume",
                  c->s.acked, c->img ? c->img->size : 0, tls_error_reason(tls_err));
        } else if (c->srv->tls && (tls_err || !err)) {
            clog_(c, 0, "TLS error: %s; closed", tls_error_reason(tls_err));
        } else if (midway) {
            clog_(c, 0, "connection error mid-transfer at %u of %u bytes durable: %s; it can resume",
                  c->s.acked, c->img ? c->img->size : 0, err ? strerror(err) : "reset by the peer");
        } else {
            clog_(c, 0, "connection error: %s; closed",
                  err ? strerror(err) : "reset by the peer");
        }
    } else if (what & BEV_EVENT_EOF) {
        if (midway) {
            clog_(c, 0, "disconnected mid-transfer at %u of %u bytes durable; it can resume",
                  c->s.acked, c->img ? c->img->size : 0);
        } else {
            clog_(c, 0, "closed");
        }
    }
    conn_free(c);
}

/* c's output buffer and write event: the buffer drains to the socket
 * (to_fd: file segments go by sendfile, not copied, as a bufferevent marks
 * its output; else inside TLS libevent maps them, for SSL_write), and the
 * event is added only once something waits in the output after a write of
 * c's own (conn_write_now, conn_pump, conn_queued): a check-in, answered by
 * one write, then costs one epoll_ctl() instead of three, and a stream
 * that the socket takes at once none. Returns 0, or -1 with neither made
 * (out of memory). */
static int direct_writes(struct conn *c, int to_fd)
{
    c->out = evbuffer_new();
    if (c->out && (!to_fd || evbuffer_set_flags(c->out, EVBUFFER_FLAG_DRAINS_TO_FD) == 0)) {
        c->wr = event_new(c->srv->base, c->fd, EV_WRITE | EV_PERSIST, wr_cb, c);
    }
    if (!c->wr) {
        if (c->out) evbuffer_free(c->out);
        c->out = NULL;
        return -1;
    }
    return 0;
}

/* The handshake finished: counted, logged, and what came with its last
 * record (HELLO, read ahead) taken. Where it left the kernel encrypting
 * the sends (kernel TLS) c writes as a plain connection: replies by
 * send(), its image by sendfile() from the prebuilt frames (as nginx's
 * SSL_sendfile does); nothing is queued yet (no reply precedes HELLO). */
static void tls_handshake_done(struct conn *c)
{
    int resumed = SSL_session_reused(c->ssl) == 1;
    int kernel = tls_kernel_sends(c->ssl) && evbuffer_get_length(c->out) == 0 &&
                 evbuffer_set_flags(c->out, EVBUFFER_FLAG_DRAINS_TO_FD) == 0;

    c->tls_up = 1;
    c->ktls = (uint8_t)kernel;
    if (resumed) {
        c->srv->stats.tls_resumed++;
    } else {
        c->srv->stats.tls_full++;
    }
    c->srv->stats.tls_kernel += (unsigned)kernel;
    clog_(c, 0, "TLS handshake done (%s): %s%s", resumed ? "resumed session" : "full",
          SSL_get_version(c->ssl), kernel ? ", the kernel encrypts what it sends" : "");
    if (input_waiting(c) || conn_input_unread(c)) {
        read_now(c, 0); /* HELLO, read ahead with the handshake's last record */
    }
}

/* One step of the TLS handshake, on the socket's events: done, waiting for
 * the peer (reading, the deadline from accept judging it:
 * conn_check_deadline) or for room to write, or failed (conn_event logs
 * OpenSSL's reason). c may be gone after. */
static void tls_handshake(struct conn *c)
{
    int r = tls_accept_step(c->ssl, &c->tls_err);

    if (r == 1) {
        tls_handshake_done(c);
        return;
    }
    if (r == -TLS_IO_AGAIN) {
        if (SSL_want_write(c->ssl)) {
            conn_write_on(c);
        }
        return;
    }
    /* An end during the handshake (errno 0: tls_io_failed) is a failed one. */
    read_ended(c, BEV_EVENT_ERROR);
}

#define CONN_PLAIN_PEEK_MAX 108u /* a PROXY v1 line at most; an HTTP method and more */

/* A tcpota device that speaks plain TCP to the TLS port is told why in
 * the protocol's own ERROR frame, plaintext (it cannot read anything
 * else): DENIED, since the same connection would be refused again until
 * the device is configured for TLS, and a device gives up at once on
 * DENIED and prints the message (tcpota device: even with --quiet).
 * What the peer sent is read first, so that the close is a FIN and not a
 * reset that could overtake the frame. A legacy or unknown client cannot
 * read the frame: it is closed. One line in the log, at most
 * LOG_PEER_BURST a LOG_PEER_MS: a peer can repeat it at will. */
static void plain_on_tls(struct conn *c, evutil_socket_t fd, int kind)
{
    struct server *srv = c->srv;
    uint8_t frame[TCPOTA_FRAME_OVERHEAD + 8 + sizeof(CONN_TLS_ONLY_MSG)];
    struct tcpota_msg m;
    char more[LOG_MORE_MAX];
    int n;

    srv->stats.failed++;
    if (kind != TCPOTA_KIND_V1 && kind != TCPOTA_KIND_LEGACY) {
        /* An HTTP request or a balancer's PROXY header: said as on a plain
         * port (a trial's curl http:// was logged as a device without TLS). */
        uint8_t head[CONN_PLAIN_PEEK_MAX];
        ssize_t k = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
        if (k > 0 && (looks_like_http(head, (size_t)k) || is_proxy_header(head, (size_t)k))) {
            unknown_said(c, head, (size_t)k, kind);
            conn_free(c); /* and the socket */
            return;
        }
    }
    if (kind == TCPOTA_KIND_V1) {
        memset(&m, 0, sizeof(m));
        m.type = TCPOTA_T_ERROR;
        m.u.error.code = (uint16_t)-TCPOTA_ERR_DENIED;
        m.u.error.message.ptr = (const uint8_t *)CONN_TLS_ONLY_MSG;
        m.u.error.message.len = (uint16_t)strlen(CONN_TLS_ONLY_MSG);
        n = tcpota_msg_encode(&m, frame, sizeof(frame));
        drain_refused(fd);
        if (n > 0) (void)send(fd, frame, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    if (log_limit_say(&srv->plain_on_tls_log, LOG_PEER_MS, LOG_PEER_BURST,
                      "plain clients on the TLS port", more, sizeof(more))) {
        /* A legacy device cannot speak TLS at all: only a plain port serves it. */
        clog_(c, 1, "plain %s client on the TLS port: %s; %s%s",
              kind == TCPOTA_KIND_V1 ? "tcpota" : kind == TCPOTA_KIND_LEGACY ? "legacy (req0/req1)"
                                                                             : "(not TLS)",
              kind == TCPOTA_KIND_LEGACY
                  ? "legacy devices cannot use TLS; serve them from a server without --tls-cert"
                  : "the device must use TLS (or serve without --tls-cert)",
              kind == TCPOTA_KIND_V1 ? "told so (ERROR DENIED), closing" : "closing", more);
    }
    conn_free(c); /* and the socket */
}

/* TLS: the first byte has arrived (or the peer closed). A TLS record
 * starts the handshake; anything else is a device that does not speak TLS
 * to a TLS port: it is told so in the log and closed at once, rather than
 * left to time out inside a handshake it cannot finish. */
static void first_byte_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct server *srv = c->srv;
    uint8_t b = 0;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK);
    int k;
    (void)what;

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->first_byte, NULL);
        return;
    }
    event_free(c->first_byte);
    c->first_byte = NULL;
    if (n <= 0) {
        handshake_said(c, 0, "closed before the TLS handshake", "");
        conn_free(c); /* and the socket */
        return;
    }
    k = tcpota_detect(&b, 1);
    if (k != TCPOTA_KIND_TLS) {
        plain_on_tls(c, fd, k);
        return;
    }
    c->ssl = SSL_new(srv->tls);
    c->rd = c->ssl ? event_new(srv->base, fd, EV_READ | EV_PERSIST, rd_cb, c) : NULL;
    if (!c->rd || SSL_set_fd(c->ssl, fd) != 1 || direct_writes(c, 0) < 0) {
        clog_(c, 1, "out of memory for TLS; closing");
        conn_free(c); /* and the socket */
        return;
    }
    tls_conn_setup(c->ssl);
    conn_read_on(c);
    tls_handshake(c); /* the ClientHello is there */
}

int conn_overdue(const struct conn *c, double now)
{
    return server_time_left(c->srv, c->started, c->lost_at, (double)c->srv->o->idle_timeout_s,
                            now) < 0;
}

int conn_check_deadline(struct conn *c, double now)
{
    unsigned idle = c->srv->o->idle_timeout_s;

    /* Inside TLS, a peer that trickles its ClientHello never lets a read
     * time out: one deadline from accept covers the handshake and HELLO. */
    if (!c->srv->tls || c->kind == K_LEGACY || c->s.got_hello || c->closing ||
        !conn_overdue(c, now)) {
        return 0;
    }
    c->srv->stats.failed++;
    /* Each one held a connection for the whole timeout, and at most
     * --max-unauth-per-addr of an address at once: one line each. */
    clog_(c, 1, c->tls_up ? "no HELLO within %u s of connecting (too slow); closing"
                          : "TLS handshake not finished within %u s of connecting; closing",
          idle);
    (void)conn_close(c, 1);
    return 1;
}

void conn_new(struct server *srv, evutil_socket_t fd, const char *host, const char *port,
              int unauth)
{
    struct tcpota_srv_config cfg;
    /* The session's buffers (rx, tx: most of the struct) need no zeroing:
     * one calloc() of it all was 4 k instructions of every check-in. */
    struct conn *c = malloc(sizeof(*c));
    size_t n;

    if (c) {
        memset(c, 0, offsetof(struct conn, rx));
    }
    if (!c) {
        if (unauth) unauth_del(&srv->unauth, host);
        evutil_closesocket(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->unauth = (uint8_t)unauth;
    (void)text_copy(c->addr, sizeof(c->addr), host);
    c->id = ++srv->next_id;
    c->started = now_s();
    c->lost_at = server_loop_lost(srv, c->started); /* no credit for a lateness before it came */
    c->progress_at = c->started;
    n = text_copy(c->peer, sizeof(c->peer), host);
    if (n + 1 < sizeof(c->peer)) {
        c->peer[n] = ':';
        (void)text_copy(c->peer + n + 1, sizeof(c->peer) - n - 1, port);
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.choose = conn_session_choose;
    cfg.ctx = c;
    cfg.rx_buf = c->rx;
    cfg.rx_cap = sizeof(c->rx);
    cfg.tx_buf = c->tx;
    cfg.tx_cap = sizeof(c->tx);
    cfg.chunk = (uint16_t)srv->o->chunk;
    cfg.idle_timeout_s = (uint16_t)srv->o->idle_timeout_s;
    if (srv->o->require_auth) {
        randombytes_buf(c->nonce, sizeof(c->nonce));
        cfg.auth_nonce = c->nonce;
    } else if (srv->auth.nsecrets) {
        cfg.auth_nonce = c->nonce; /* filled if its id has a secret */
        cfg.auth_for = conn_auth_for;
    }
    /* TLS state (tens of KiB) is allocated only once the first byte shows
     * a TLS record: see first_byte_cb. */
    if (srv->tls) {
        c->first_byte = event_new(srv->base, fd, EV_READ, first_byte_cb, c);
    } else {
        c->rd = event_new(srv->base, fd, EV_READ | EV_PERSIST, rd_cb, c);
        (void)direct_writes(c, 1); /* c->out and c->wr, or neither: refused below */
    }
    if ((srv->tls ? !c->first_byte : !c->out || !c->rd || !c->wr) ||
        tcpota_srv_init(&c->s, &cfg) < 0) {
        if (c->rd) event_free(c->rd);
        if (c->wr) event_free(c->wr);
        if (c->out) evbuffer_free(c->out);
        if (c->first_byte) event_free(c->first_byte);
        evutil_closesocket(fd);
        if (unauth) unauth_del(&srv->unauth, host);
        free(c);
        return;
    }
    /* The image of the moment of connecting, even if a reload swaps it;
     * fleet mode chooses one per device once the store has answered. */
    if (srv->img) {
        c->img = image_ref(srv->img);
        tcpota_legacy_init(&c->leg, c->img->size);
    }
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->stats.connections++;
    if (c->first_byte) {
        event_add(c->first_byte, NULL);
    } else {
        conn_read_on(c);
    }
}
