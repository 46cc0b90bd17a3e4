/*
 * tcpota-proxy: a fault-injecting TCP proxy for tests and benchmarks.
 *
 * Every accepted client gets its own upstream connection; bytes are forwarded
 * in both directions ("down" = upstream -> client, "up" = client -> upstream).
 * On the way the proxy can cut connections and flip bits at exact cumulative
 * byte offsets, split the stream into tiny pieces, add one-way latency and cap
 * the bandwidth.
 *
 * Data path of one direction (a "flow"):
 *
 *   src socket --read--> q (stamped with arrival time) --release--> out --write--> dst socket
 *
 * "Release" is where delay, rate, chunking, cuts and flips are applied, so the
 * cumulative byte counters count bytes the moment they are handed to the
 * destination. A release never happens while out holds more than a little
 * data, which keeps a cut exact: at the cut, out contains only bytes before
 * the cut point, and they are flushed before the socket is closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

enum { DIR_DOWN = 0, DIR_UP = 1 };   /* flow index; a flow writes to side [dir] */
enum { SIDE_CL = 0, SIDE_UP = 1 };   /* socket index */
static const char *const dir_name[2] = {"down", "up"};
static const char *const side_name[2] = {"client", "upstream"};

#define READ_MAX (64 * 1024)               /* bytes per read() */
#define OUT_HIGH (256 * 1024)              /* released-but-unwritten bytes before we pause */
#define DEFAULT_QUEUE_LIMIT (4u << 20)     /* per flow: stop reading above this */
#define SEG_MERGE_US 1000                  /* arrivals within 1 ms share one stamp */
#define RATE_MIN_WAIT_US 1000              /* token-bucket refill tick */
#define CONNECT_TIMEOUT_S 10
#define CUT_FLUSH_TIMEOUT_S 10
#define NO_WAKE UINT64_MAX

/* A sorted list of cumulative byte offsets, consumed front to back. */
struct points {
    uint64_t *v;
    size_t n;
    size_t next;
};

/* Arrival stamp for a run of bytes in a flow's q (only used with --delay). */
struct seg {
    struct seg *next;
    size_t len;
    uint64_t first_due; /* stamp of the first merged arrival */
    uint64_t due;       /* release time: stamp of the last merged arrival */
};

struct conn;

struct side {
    struct conn *c;
    int idx;
    evutil_socket_t fd;
    struct event *rev, *wev;
    bool reading, writing;
};

struct flow {
    struct conn *c;
    int dir;
    struct side *src, *dst;
    struct evbuffer *q;
    struct seg *head, *tail;
    struct evbuffer *out;
    struct event *pump;     /* timer: delay due, chunk gap, rate refill, EOF due */
    bool src_eof;           /* src sent FIN or failed; nothing more to read */
    bool src_reset;         /* ...and it was an error: abort instead of FIN */
    bool dst_shut;          /* EOF propagated to dst */
    uint64_t eof_due;
    double tokens;
    uint64_t refill_at;
    uint64_t next_piece_at;
};

struct conn {
    unsigned long id;
    struct conn *prev, *next;
    struct side s[2];
    struct flow f[2];
    bool connecting;
    int cut_dir;            /* -1, or the flow being flushed after a cut */
};

static struct {
    struct sockaddr_storage listen_addr, up_addr;
    socklen_t listen_len, up_len;
    char up_text[300];
    struct points cut[2], flip[2];
    size_t chunk;
    uint64_t chunk_gap_us, delay_us, rate;
    size_t queue_limit;
    unsigned long max_conns;
    bool quiet;
} opt;

static struct {
    struct event_base *base;
    struct evconnlistener *listener;
    struct event *relisten;
    struct conn *conns;
    unsigned long next_id, active, total;
    uint64_t fwd[2];
    uint64_t cuts, flips;
} g;

static void flow_pump(struct flow *f);
static void conn_close(struct conn *c, bool abortive);
static void side_failed(struct flow *f);

/* ---------- small helpers ---------- */

/* One write per line, so lines stay whole when several processes share stderr. */
static void vlog(const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof line, "proxy: ");
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    strcat(line, "\n");
    fputs(line, stderr);
}

/* Per-connection events (including a connection's errors); --quiet drops them. */
static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    va_list ap;
    if (opt.quiet)
        return;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

/* Problems of the proxy itself; always shown. */
static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timeval us_to_tv(uint64_t us)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(us / 1000000u);
    tv.tv_usec = (suseconds_t)(us % 1000000u);
    return tv;
}

static void print_stats(void)
{
    fprintf(stderr, "proxy: conns=%lu down_bytes=%" PRIu64 " up_bytes=%" PRIu64
            " cuts=%" PRIu64 " flips=%" PRIu64 "\n",
            g.total, g.fwd[DIR_DOWN], g.fwd[DIR_UP], g.cuts, g.flips);
}

static bool would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* ---------- sides ---------- */

static void side_read(struct side *s, bool on)
{
    if (on == s->reading || s->fd < 0)
        return;
    if (on)
        event_add(s->rev, NULL);
    else
        event_del(s->rev);
    s->reading = on;
}

static void side_write(struct side *s, bool on)
{
    if (on == s->writing || s->fd < 0)
        return;
    if (on)
        event_add(s->wev, NULL);
    else
        event_del(s->wev);
    s->writing = on;
}

static void side_close(struct side *s, bool abortive)
{
    if (s->fd < 0)
        return;
    side_read(s, false);
    side_write(s, false);
    if (abortive) {
        /* RST instead of FIN, so the peer sees the failure as one. */
        struct linger lg = {1, 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    evutil_closesocket(s->fd);
    s->fd = -1;
}

static void set_nodelay(evutil_socket_t fd)
{
    /* Every write must leave as its own segment (--chunk), and a proxy should
     * not add Nagle latency the real path does not have. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ---------- flows ---------- */

static size_t flow_queued(const struct flow *f)
{
    return evbuffer_get_length(f->q) + evbuffer_get_length(f->out);
}

static int seg_push(struct flow *f, size_t len, uint64_t due)
{
    /* Merging bounds the list to about one node per millisecond of delay;
     * merged bytes leave at the latest stamp, so never early, at most 1 ms late. */
    if (f->tail && due - f->tail->first_due <= SEG_MERGE_US) {
        f->tail->len += len;
        f->tail->due = due;
        return 0;
    }
    struct seg *s = malloc(sizeof *s);
    if (!s)
        return -1;
    s->next = NULL;
    s->len = len;
    s->first_due = s->due = due;
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    return 0;
}

static void seg_consume(struct flow *f, size_t n)
{
    while (n > 0 && f->head) {
        struct seg *s = f->head;
        if (s->len > n) {
            s->len -= n;
            return;
        }
        n -= s->len;
        f->head = s->next;
        if (!f->head)
            f->tail = NULL;
        free(s);
    }
}

static void seg_free_all(struct flow *f)
{
    while (f->head) {
        struct seg *s = f->head;
        f->head = s->next;
        free(s);
    }
    f->tail = NULL;
}

/* Bytes of q whose delay has expired (up to about 'want'); sets *wake when the
 * head of the queue is still waiting. */
static size_t flow_eligible(const struct flow *f, uint64_t now, size_t want, uint64_t *wake)
{
    if (opt.delay_us == 0)
        return evbuffer_get_length(f->q);
    size_t sum = 0;
    for (const struct seg *s = f->head; s && sum < want; s = s->next) {
        if (s->due > now) {
            if (sum == 0 && s->due < *wake)
                *wake = s->due;
            break;
        }
        sum += s->len;
    }
    return sum;
}

static void flow_refill(struct flow *f, uint64_t now)
{
    /* Burst of 5 ms worth of bytes (at least 1), so the cap holds on short scales too. */
    double burst = (double)opt.rate / 200.0;
    if (burst < 1.0)
        burst = 1.0;
    if (now > f->refill_at)
        f->tokens += (double)opt.rate * (double)(now - f->refill_at) / 1e6;
    f->refill_at = now;
    if (f->tokens > burst)
        f->tokens = burst;
}

/* Move up to n bytes from q to out, stopping at the next cut point and
 * flipping bytes on the way. Returns the number moved; *cut tells whether the
 * connection must now be cut. */
static size_t flow_release(struct flow *f, size_t n, bool *cut)
{
    struct points *cp = &opt.cut[f->dir];
    struct points *fp = &opt.flip[f->dir];
    uint64_t base = g.fwd[f->dir];

    *cut = false;
    if (cp->next < cp->n && cp->v[cp->next] - base <= n) {
        n = (size_t)(cp->v[cp->next] - base);
        cp->next++;
        *cut = true;
    }
    size_t before = evbuffer_get_length(f->out);
    if (n > 0)
        evbuffer_remove_buffer(f->q, f->out, n);
    seg_consume(f, n);

    while (fp->next < fp->n && fp->v[fp->next] < base + n) {
        uint64_t off = fp->v[fp->next++];
        struct evbuffer_ptr p;
        struct evbuffer_iovec v;
        if (evbuffer_ptr_set(f->out, &p, before + (size_t)(off - base), EVBUFFER_PTR_SET) == 0 &&
            evbuffer_peek(f->out, 1, &p, &v, 1) >= 1 && v.iov_len >= 1) {
            ((unsigned char *)v.iov_base)[0] ^= 0x01;
            g.flips++;
            logmsg("conn %lu flipped %s byte %" PRIu64, f->c->id, dir_name[f->dir], off);
        }
    }
    g.fwd[f->dir] += n;
    return n;
}

/* Hand out to the kernel. Returns -1 when dst failed. */
static int flow_write(struct flow *f)
{
    while (evbuffer_get_length(f->out) > 0) {
        int n = evbuffer_write(f->out, f->dst->fd);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block(errno))
                break;
            return -1;
        }
        if (n == 0)
            break;
    }
    side_write(f->dst, evbuffer_get_length(f->out) > 0);
    return 0;
}

static void cut_finish(struct conn *c)
{
    struct flow *f = &c->f[c->cut_dir];
    evutil_socket_t fd = f->dst->fd;
    /* FIN after the last byte before the cut; then discard whatever the peer
     * already sent, because close() with unread data would send RST and could
     * destroy the bytes still in flight. */
    shutdown(fd, SHUT_WR);
    char junk[4096];
    for (int i = 0; i < 256; i++) {
        ssize_t r = recv(fd, junk, sizeof junk, MSG_DONTWAIT);
        if (r <= 0)
            break;
    }
    conn_close(c, false);
}

static void cut_flush(struct conn *c)
{
    struct flow *f = &c->f[c->cut_dir];
    while (evbuffer_get_length(f->out) > 0) {
        int n = evbuffer_write(f->out, f->dst->fd);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && would_block(errno))
            break;
        if (n <= 0) {
            logmsg("conn %lu write to %s failed during cut: %s", c->id,
                   side_name[f->dst->idx], strerror(errno));
            conn_close(c, true);
            return;
        }
    }
    if (evbuffer_get_length(f->out) == 0) {
        cut_finish(c);
        return;
    }
    /* Peer is slow to read: wait for room, but not forever. */
    struct timeval tv = {CUT_FLUSH_TIMEOUT_S, 0};
    event_add(f->dst->wev, &tv);
    f->dst->writing = true;
}

static void conn_cut(struct conn *c, struct flow *f)
{
    logmsg("conn %lu cut at %s byte %" PRIu64, c->id, dir_name[f->dir], g.fwd[f->dir]);
    g.cuts++;
    c->cut_dir = f->dir;
    for (int d = 0; d < 2; d++) {
        event_del(c->f[d].pump);
        side_read(&c->s[d], false);
        side_write(&c->s[d], false);
    }
    /* The sending side goes away at once; the receiving side gets exactly the
     * bytes up to the cut point, then EOF. */
    side_close(f->src, false);
    cut_flush(c);
}

static void flow_arm(struct flow *f, uint64_t wake, uint64_t now)
{
    struct timeval tv = us_to_tv(wake > now ? wake - now : 0);
    event_add(f->pump, &tv);
}

/* Release whatever delay, rate and chunking allow, write it, propagate EOF,
 * and (re)arm reading and the timer. May free the connection. */
static void flow_pump(struct flow *f)
{
    struct conn *c = f->c;
    uint64_t now = now_us();
    uint64_t wake = NO_WAKE;

    if (c->connecting || c->cut_dir >= 0 || f->dst_shut)
        return;

    for (;;) {
        size_t outlen = evbuffer_get_length(f->out);
        size_t room;
        if (opt.chunk) {
            if (outlen > 0)
                break; /* previous piece still in flight; the write event resumes */
            if (now < f->next_piece_at) {
                wake = f->next_piece_at;
                break;
            }
            room = opt.chunk;
        } else {
            if (outlen >= OUT_HIGH)
                break;
            room = OUT_HIGH - outlen;
        }
        size_t n = flow_eligible(f, now, room, &wake);
        if (n == 0)
            break;
        if (n > room)
            n = room;
        if (opt.rate) {
            flow_refill(f, now);
            if (f->tokens < 1.0) {
                uint64_t w = (uint64_t)((1.0 - f->tokens) * 1e6 / (double)opt.rate) + 1;
                wake = now + (w > RATE_MIN_WAIT_US ? w : RATE_MIN_WAIT_US);
                break;
            }
            if ((double)n > f->tokens)
                n = (size_t)f->tokens;
        }
        bool cut;
        n = flow_release(f, n, &cut);
        if (opt.rate)
            f->tokens -= (double)n;
        if (cut) {
            conn_cut(c, f);
            return;
        }
        if (flow_write(f) < 0) {
            side_failed(f);
            return;
        }
        if (opt.chunk) {
            /* One piece per loop iteration, even with a zero gap, so every
             * piece is its own write() and its own segment. */
            f->next_piece_at = now + opt.chunk_gap_us;
            if (evbuffer_get_length(f->q) > 0 && f->next_piece_at < wake)
                wake = f->next_piece_at;
            break;
        }
    }

    /* EOF travels behind the data, with the same delay. */
    if (f->src_eof && evbuffer_get_length(f->q) == 0 && evbuffer_get_length(f->out) == 0) {
        if (now >= f->eof_due) {
            if (f->src_reset) {
                logmsg("conn %lu %s reset the connection", c->id, side_name[f->src->idx]);
                conn_close(c, true);
                return;
            }
            shutdown(f->dst->fd, SHUT_WR);
            f->dst_shut = true;
            if (c->f[0].dst_shut && c->f[1].dst_shut) {
                conn_close(c, false);
                return;
            }
        } else if (f->eof_due < wake) {
            wake = f->eof_due;
        }
    }

    if (!f->src_eof && !f->src->reading && flow_queued(f) <= opt.queue_limit / 2)
        side_read(f->src, true);
    if (wake != NO_WAKE)
        flow_arm(f, wake, now);
}

/* A write toward f's destination failed (it reset the connection). What that
 * side sent before its reset is still in its socket and goes on toward the
 * other side, as on a real path, before the reset does: a device's last frame
 * (an ERROR) is not lost because the proxy happened to write to it first.
 * Frees the connection, now or once those bytes are out. */
static void side_failed(struct flow *f)
{
    struct conn *c = f->c;
    struct side *x = f->dst;
    struct flow *back = &c->f[1 - f->dir]; /* the flow whose source is x */
    logmsg("conn %lu write to %s failed: %s", c->id, side_name[x->idx], strerror(errno));
    if (back->dst_shut) { /* nothing more flows the other way either */
        conn_close(c, true);
        return;
    }
    /* Nothing more goes toward x. */
    f->dst_shut = true;
    event_del(f->pump);
    side_read(f->src, false);
    evbuffer_drain(f->q, evbuffer_get_length(f->q));
    evbuffer_drain(f->out, evbuffer_get_length(f->out));
    seg_free_all(f);
    side_write(x, false);
    if (!back->src_eof) {
        uint64_t due = now_us() + opt.delay_us;
        int n;
        while ((n = evbuffer_read(back->q, x->fd, READ_MAX)) > 0) {
            if (opt.delay_us && seg_push(back, (size_t)n, due) < 0) {
                logmsg("conn %lu out of memory", c->id);
                conn_close(c, true);
                return;
            }
        }
        back->src_eof = true;
        back->eof_due = due;
        side_read(x, false);
    }
    back->src_reset = true;
    flow_pump(back);
}

/* ---------- event callbacks ---------- */

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flow_pump(arg);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    struct conn *c = s->c;
    struct flow *f = &c->f[1 - s->idx]; /* the flow whose source is this side */
    (void)what;

    int n = evbuffer_read(f->q, fd, READ_MAX);
    if (n < 0 && would_block(errno))
        return;
    if (n <= 0) {
        if (n < 0) {
            logmsg("conn %lu read from %s failed: %s", c->id, side_name[s->idx],
                   strerror(errno));
            f->src_reset = true;
        }
        f->src_eof = true;
        f->eof_due = now_us() + opt.delay_us;
        side_read(s, false);
        flow_pump(f);
        return;
    }
    if (opt.delay_us && seg_push(f, (size_t)n, now_us() + opt.delay_us) < 0) {
        logmsg("conn %lu out of memory", c->id);
        conn_close(c, true);
        return;
    }
    /* Keep reading while data waits (the link stays full), but bound memory. */
    if (flow_queued(f) >= opt.queue_limit)
        side_read(s, false);
    flow_pump(f);
}

static void conn_start(struct conn *c)
{
    c->connecting = false;
    set_nodelay(c->s[SIDE_CL].fd);
    set_nodelay(c->s[SIDE_UP].fd);
    side_read(&c->s[SIDE_CL], true);
    side_read(&c->s[SIDE_UP], true);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    struct conn *c = s->c;

    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (what & EV_TIMEOUT)
            err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        event_del(s->wev);
        s->writing = false;
        if (err) {
            logmsg("conn %lu upstream connect to %s failed: %s", c->id, opt.up_text,
                   strerror(err));
            conn_close(c, false);
            return;
        }
        conn_start(c);
        return;
    }
    if (c->cut_dir >= 0) {
        if (what & EV_TIMEOUT) {
            logmsg("conn %lu %s did not read the bytes before the cut within %d s", c->id,
                   side_name[s->idx], CUT_FLUSH_TIMEOUT_S);
            conn_close(c, true);
            return;
        }
        cut_flush(c);
        return;
    }
    struct flow *f = &c->f[s->idx]; /* the flow whose destination is this side */
    if (flow_write(f) < 0) {
        side_failed(f);
        return;
    }
    flow_pump(f);
}

/* ---------- connections ---------- */

static void conn_close(struct conn *c, bool abortive)
{
    for (int i = 0; i < 2; i++) {
        side_close(&c->s[i], abortive);
        if (c->s[i].rev)
            event_free(c->s[i].rev);
        if (c->s[i].wev)
            event_free(c->s[i].wev);
        struct flow *f = &c->f[i];
        if (f->pump)
            event_free(f->pump);
        if (f->q)
            evbuffer_free(f->q);
        if (f->out)
            evbuffer_free(f->out);
        seg_free_all(f);
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (g.conns == c)
        g.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (g.active > 0)
        g.active--;
    logmsg("conn %lu closed", c->id);
    free(c);
}

static int conn_init(struct conn *c, evutil_socket_t cfd, evutil_socket_t ufd)
{
    c->cut_dir = -1;
    c->s[SIDE_CL].fd = cfd;
    c->s[SIDE_UP].fd = ufd;
    for (int i = 0; i < 2; i++) {
        struct side *s = &c->s[i];
        s->c = c;
        s->idx = i;
        s->rev = event_new(g.base, s->fd, EV_READ | EV_PERSIST, on_read, s);
        s->wev = event_new(g.base, s->fd, EV_WRITE | EV_PERSIST, on_write, s);
        if (!s->rev || !s->wev)
            return -1;
    }
    for (int d = 0; d < 2; d++) {
        struct flow *f = &c->f[d];
        f->c = c;
        f->dir = d;
        f->dst = &c->s[d];
        f->src = &c->s[1 - d];
        f->q = evbuffer_new();
        f->out = evbuffer_new();
        f->pump = evtimer_new(g.base, on_pump, f);
        f->refill_at = now_us();
        f->tokens = 1e18; /* clamped to one full burst at the first refill */
        if (!f->q || !f->out || !f->pump)
            return -1;
    }
    return 0;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t cfd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    if (g.active >= opt.max_conns) {
        logmsg("refusing connection: --max-conns %lu reached", opt.max_conns);
        evutil_closesocket(cfd);
        return;
    }
    evutil_socket_t ufd = socket(opt.up_addr.ss_family, SOCK_STREAM, 0);
    if (ufd < 0) {
        errmsg("cannot create upstream socket: %s", strerror(errno));
        evutil_closesocket(cfd);
        return;
    }
    evutil_make_socket_nonblocking(ufd);
    evutil_make_socket_closeonexec(ufd);

    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        errmsg("out of memory");
        evutil_closesocket(cfd);
        evutil_closesocket(ufd);
        return;
    }
    c->id = ++g.next_id;
    g.total++;
    g.active++;
    c->next = g.conns;
    if (g.conns)
        g.conns->prev = c;
    g.conns = c;
    logmsg("conn %lu open", c->id);

    if (conn_init(c, cfd, ufd) < 0) {
        logmsg("conn %lu out of memory", c->id);
        conn_close(c, true);
        return;
    }
    c->connecting = true;
    if (connect(ufd, (struct sockaddr *)&opt.up_addr, opt.up_len) == 0) {
        conn_start(c);
        return;
    }
    if (errno != EINPROGRESS) {
        logmsg("conn %lu upstream connect to %s failed: %s", c->id, opt.up_text,
               strerror(errno));
        conn_close(c, false);
        return;
    }
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    event_add(c->s[SIDE_UP].wev, &tv);
    c->s[SIDE_UP].writing = true;
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    evconnlistener_enable(g.listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    errmsg("accept failed: %s", evutil_socket_error_to_string(err));
    /* Typically EMFILE: pause instead of spinning on the listening socket. */
    evconnlistener_disable(l);
    struct timeval tv = {0, 100000};
    event_add(g.relisten, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    if (sig == SIGUSR1)
        print_stats();
    else
        event_base_loopbreak(g.base);
}

/* The port of a and its address as IPv6 (an IPv4 one mapped), and whether
 * it is the any-address. */
static uint16_t addr_parts(const struct sockaddr_storage *a, struct in6_addr *ip, bool *any)
{
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)a;
        memset(ip, 0, sizeof *ip);
        ip->s6_addr[10] = ip->s6_addr[11] = 0xff;
        memcpy(&ip->s6_addr[12], &v4->sin_addr, 4);
        *any = v4->sin_addr.s_addr == htonl(INADDR_ANY);
        return v4->sin_port;
    }
    const struct sockaddr_in6 *v6 = (const void *)a;
    *ip = v6->sin6_addr;
    *any = memcmp(ip, &in6addr_any, sizeof *ip) == 0;
    return v6->sin6_port;
}

/* True when upstream is the listener's own address: the same port, and the
 * same address (IPv4 or IPv4-mapped alike), or either side the
 * any-address (a listener on every address, dual-stack included; an
 * upstream of 0.0.0.0 or :: reaches this host). */
static bool is_self(const struct sockaddr_storage *bound, const struct sockaddr_storage *up)
{
    struct in6_addr b, u;
    bool b_any, u_any;

    if ((bound->ss_family != AF_INET && bound->ss_family != AF_INET6) ||
        (up->ss_family != AF_INET && up->ss_family != AF_INET6))
        return false;
    if (addr_parts(bound, &b, &b_any) != addr_parts(up, &u, &u_any))
        return false;
    return b_any || u_any || memcmp(&b, &u, sizeof b) == 0;
}

/* ---------- option parsing ---------- */

static void usage(FILE *out)
{
    fputs("usage: tcpota-proxy --listen HOST:PORT --upstream HOST:PORT [options]\n"
          "  --cut-at N[,N...]        cut the connection when the cumulative byte count\n"
          "                           (all connections) reaches N; each point used once\n"
          "  --cut-random K           K random cut points in --cut-range A:B (from --seed)\n"
          "  --flip-at N[,N...]       XOR 0x01 into the byte at cumulative offset N\n"
          "  --flip-random K          K random flip offsets in --flip-range A:B\n"
          "  --seed S                 seed for --cut-random/--flip-random (default 1)\n"
          "  --dir down|up|both       direction cuts and flips apply to (default down;\n"
          "                           with both, each direction counts on its own)\n"
          "  --chunk N                forward in pieces of at most N bytes\n"
          "  --chunk-gap-us US        pause between pieces (default 0: next loop turn)\n"
          "  --delay MS               one-way delay added to each direction\n"
          "  --rate BYTES_PER_SEC     bandwidth cap per connection and direction\n"
          "  --queue-limit BYTES      per-direction buffer before reading pauses (default 4 MiB;\n"
          "                           with --rate, a small one, such as 16384, keeps a slow\n"
          "                           transfer's bytes on the server: one the proxy took whole\n"
          "                           counts there as sent, and a halt or cancel lets it finish)\n"
          "  --max-conns N            simultaneous connections (default 10000)\n"
          "  --quiet                  no per-connection log lines\n"
          "SIGUSR1 prints statistics; SIGINT/SIGTERM exit cleanly.\n",
          out);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tcpota-proxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n", stderr);
    va_end(ap);
    /* The whole usage after one bad value buried the error line above it. */
    fputs("try 'tcpota-proxy --help'\n", stderr);
    exit(2);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') /* strtoull would accept " -1" */
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static uint64_t opt_u64(const char *name, const char *s, uint64_t min, uint64_t max)
{
    uint64_t v;
    if (!parse_u64(s, min, max, &v))
        die_usage("%s: expected a number in [%" PRIu64 ", %" PRIu64 "], got '%s'", name, min,
                  max, s);
    return v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void points_add(struct points *p, uint64_t v)
{
    uint64_t *nv = realloc(p->v, (p->n + 1) * sizeof *nv);
    if (!nv) {
        fputs("tcpota-proxy: out of memory\n", stderr);
        exit(1);
    }
    p->v = nv;
    p->v[p->n++] = v;
}

static void points_parse_list(struct points *p, const char *name, const char *arg)
{
    /* Split by hand: strtok would silently skip empty fields such as "1,,2". */
    const char *t = arg;
    for (;;) {
        const char *comma = strchr(t, ',');
        size_t len = comma ? (size_t)(comma - t) : strlen(t);
        char num[32];
        uint64_t v;
        if (len == 0 || len >= sizeof num)
            die_usage("%s: bad list '%s' (expected N[,N...])", name, arg);
        memcpy(num, t, len);
        num[len] = '\0';
        if (!parse_u64(num, 0, UINT64_MAX / 2, &v))
            die_usage("%s: bad offset '%s' in '%s'", name, num, arg);
        points_add(p, v);
        if (!comma)
            break;
        t = comma + 1;
    }
}

static void parse_range(const char *name, const char *arg, uint64_t *a, uint64_t *b)
{
    const char *colon = strchr(arg, ':');
    char lo[32];
    if (!colon || (size_t)(colon - arg) >= sizeof lo)
        die_usage("%s: expected A:B, got '%s'", name, arg);
    memcpy(lo, arg, (size_t)(colon - arg));
    lo[colon - arg] = '\0';
    if (!parse_u64(lo, 0, UINT64_MAX / 2, a) || !parse_u64(colon + 1, 0, UINT64_MAX / 2, b) ||
        *b <= *a)
        die_usage("%s: expected A:B with A < B, got '%s'", name, arg);
}

/* splitmix64: tiny, deterministic, good enough to spread test offsets. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_range(uint64_t *state, uint64_t a, uint64_t b)
{
    uint64_t span = b - a;
    uint64_t limit = UINT64_MAX - UINT64_MAX % span; /* reject to avoid modulo bias */
    uint64_t r;
    do
        r = rng_next(state);
    while (r >= limit);
    return a + r % span;
}

static void points_finish(struct points *p, bool dedupe)
{
    if (p->n == 0)
        return;
    qsort(p->v, p->n, sizeof *p->v, cmp_u64);
    if (dedupe) {
        /* Flipping a byte twice would undo the flip. */
        size_t w = 1;
        for (size_t i = 1; i < p->n; i++)
            if (p->v[i] != p->v[w - 1])
                p->v[w++] = p->v[i];
        p->n = w;
    }
}

static void points_print(const char *what, const struct points *p)
{
    if (p->n == 0)
        return;
    fprintf(stderr, "proxy: %s points:", what);
    for (size_t i = 0; i < p->n; i++)
        fprintf(stderr, " %" PRIu64, p->v[i]);
    fputc('\n', stderr);
}

static int points_copy(struct points *dst, const struct points *src)
{
    dst->n = src->n;
    dst->next = 0;
    dst->v = NULL;
    if (src->n == 0)
        return 0;
    dst->v = malloc(src->n * sizeof *dst->v);
    if (!dst->v)
        return -1;
    memcpy(dst->v, src->v, src->n * sizeof *dst->v);
    return 0;
}

static void resolve(const char *name, const char *arg, bool passive,
                    struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256], port[16];
    const char *colon = strrchr(arg, ':');
    const char *h = arg;
    size_t hl = colon ? (size_t)(colon - arg) : 0;
    if (!colon || hl == 0 || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port)
        die_usage("%s: expected HOST:PORT, got '%s'", name, arg);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:80 */
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        die_usage("%s: host name too long", name);
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    uint64_t pv;
    if (!parse_u64(port, passive ? 0 : 1, 65535, &pv))
        die_usage("%s: bad port '%s'", name, port);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res)
        die_usage("%s: cannot resolve '%s': %s", name, host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        snprintf(buf, len, "?");
    }
}

enum {
    O_LISTEN = 256, O_UPSTREAM, O_CUT_AT, O_CUT_RANDOM, O_CUT_RANGE, O_FLIP_AT,
    O_FLIP_RANDOM, O_FLIP_RANGE, O_SEED, O_CHUNK, O_CHUNK_GAP, O_DELAY, O_RATE, O_DIR,
    O_MAX_CONNS, O_QUIET, O_QUEUE_LIMIT, O_HELP
};

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"upstream", required_argument, NULL, O_UPSTREAM},
        {"cut-at", required_argument, NULL, O_CUT_AT},
        {"cut-random", required_argument, NULL, O_CUT_RANDOM},
        {"cut-range", required_argument, NULL, O_CUT_RANGE},
        {"flip-at", required_argument, NULL, O_FLIP_AT},
        {"flip-random", required_argument, NULL, O_FLIP_RANDOM},
        {"flip-range", required_argument, NULL, O_FLIP_RANGE},
        {"seed", required_argument, NULL, O_SEED},
        {"chunk", required_argument, NULL, O_CHUNK},
        {"chunk-gap-us", required_argument, NULL, O_CHUNK_GAP},
        {"delay", required_argument, NULL, O_DELAY},
        {"rate", required_argument, NULL, O_RATE},
        {"dir", required_argument, NULL, O_DIR},
        {"max-conns", required_argument, NULL, O_MAX_CONNS},
        {"queue-limit", required_argument, NULL, O_QUEUE_LIMIT},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *listen_arg = NULL, *up_arg = NULL, *cut_range = NULL, *flip_range = NULL;
    uint64_t cut_random = 0, flip_random = 0, seed = 1;
    bool have_cut_random = false, have_flip_random = false;
    int dirs = 1 << DIR_DOWN;
    struct points cut = {0}, flip = {0};

    opt.max_conns = 10000;
    opt.queue_limit = DEFAULT_QUEUE_LIMIT;
    opterr = 0;
    if (argc < 2) { /* nothing given: the whole usage is the answer */
        usage(stderr);
        exit(2);
    }
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        /* getopt takes the next argument as the value even when it is an
         * option ("--listen --upstream X" left X unexpected): said, unless
         * written --name=--value. */
        if (optarg && optarg == argv[optind - 1] && strncmp(optarg, "--", 2) == 0)
            die_usage("%s needs a value (got the option %s; if it is meant as the value, write "
                      "%s=%s)", argv[optind - 2], optarg, argv[optind - 2], optarg);
        switch (o) {
        case O_LISTEN: listen_arg = optarg; break;
        case O_UPSTREAM: up_arg = optarg; break;
        case O_CUT_AT: points_parse_list(&cut, "--cut-at", optarg); break;
        case O_FLIP_AT: points_parse_list(&flip, "--flip-at", optarg); break;
        case O_CUT_RANDOM:
            cut_random = opt_u64("--cut-random", optarg, 0, 1000000);
            have_cut_random = true;
            break;
        case O_FLIP_RANDOM:
            flip_random = opt_u64("--flip-random", optarg, 0, 1000000);
            have_flip_random = true;
            break;
        case O_CUT_RANGE: cut_range = optarg; break;
        case O_FLIP_RANGE: flip_range = optarg; break;
        case O_SEED: seed = opt_u64("--seed", optarg, 0, UINT64_MAX); break;
        case O_CHUNK: opt.chunk = (size_t)opt_u64("--chunk", optarg, 1, 1u << 30); break;
        case O_CHUNK_GAP:
            opt.chunk_gap_us = opt_u64("--chunk-gap-us", optarg, 0, 10000000);
            break;
        case O_DELAY: opt.delay_us = opt_u64("--delay", optarg, 0, 3600000) * 1000u; break;
        case O_RATE: opt.rate = opt_u64("--rate", optarg, 1, 1000000000000ull); break;
        case O_MAX_CONNS:
            opt.max_conns = (unsigned long)opt_u64("--max-conns", optarg, 1, 1000000);
            break;
        case O_QUEUE_LIMIT:
            opt.queue_limit = (size_t)opt_u64("--queue-limit", optarg, 1024, 1ull << 32);
            break;
        case O_DIR:
            if (strcmp(optarg, "down") == 0)
                dirs = 1 << DIR_DOWN;
            else if (strcmp(optarg, "up") == 0)
                dirs = 1 << DIR_UP;
            else if (strcmp(optarg, "both") == 0)
                dirs = (1 << DIR_DOWN) | (1 << DIR_UP);
            else
                die_usage("--dir: expected down, up or both, got '%s'", optarg);
            break;
        case O_QUIET: opt.quiet = true; break;
        case O_HELP: usage(stdout); exit(0);
        default:
            if (optopt >= O_LISTEN && optopt <= O_HELP)
                die_usage("option '%s': missing or unexpected argument", argv[optind - 1]);
            die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (!listen_arg || !up_arg)
        die_usage("--listen and --upstream are required");
    if (have_cut_random != (cut_range != NULL))
        die_usage("--cut-random and --cut-range go together");
    if (have_flip_random != (flip_range != NULL))
        die_usage("--flip-random and --flip-range go together");

    resolve("--listen", listen_arg, true, &opt.listen_addr, &opt.listen_len);
    resolve("--upstream", up_arg, false, &opt.up_addr, &opt.up_len);
    snprintf(opt.up_text, sizeof opt.up_text, "%s", up_arg);

    /* Cuts first, then flips, from one stream: same seed, same faults. */
    uint64_t state = seed;
    if (cut_range) {
        uint64_t a, b;
        parse_range("--cut-range", cut_range, &a, &b);
        for (uint64_t i = 0; i < cut_random; i++)
            points_add(&cut, rng_range(&state, a, b));
    }
    if (flip_range) {
        uint64_t a, b;
        parse_range("--flip-range", flip_range, &a, &b);
        for (uint64_t i = 0; i < flip_random; i++)
            points_add(&flip, rng_range(&state, a, b));
    }
    /* Repeated cut points stay: the next connection is cut before its first byte. */
    points_finish(&cut, false);
    points_finish(&flip, true);
    points_print("cut", &cut);
    points_print("flip", &flip);

    for (int d = 0; d < 2; d++) {
        struct points empty = {0};
        if (points_copy(&opt.cut[d], (dirs & (1 << d)) ? &cut : &empty) < 0 ||
            points_copy(&opt.flip[d], (dirs & (1 << d)) ? &flip : &empty) < 0) {
            fputs("tcpota-proxy: out of memory\n", stderr);
            exit(1);
        }
    }
    free(cut.v);
    free(flip.v);
}

/* ---------- main ---------- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an error return, not a crash */

    int rc = 1;
    struct event *sigs[3] = {NULL, NULL, NULL};
    struct event_config *cfg = event_config_new();
    if (cfg) {
        /* Microsecond timers (timerfd) so --chunk-gap-us and --delay are honest. */
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        g.base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!g.base) {
        fputs("tcpota-proxy: cannot create event base\n", stderr);
        goto out;
    }
    g.listener = evconnlistener_new_bind(g.base, on_accept, NULL,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                             LEV_OPT_CLOSE_ON_EXEC,
                                         -1, (struct sockaddr *)&opt.listen_addr,
                                         (int)opt.listen_len);
    if (!g.listener) {
        char a[300];
        format_addr(&opt.listen_addr, a, sizeof a);
        fprintf(stderr, "tcpota-proxy: cannot listen on %s: %s\n", a, strerror(errno));
        goto out;
    }
    evconnlistener_set_error_cb(g.listener, on_accept_error);
    g.relisten = evtimer_new(g.base, on_relisten, NULL);
    static const int signums[3] = {SIGINT, SIGTERM, SIGUSR1};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(g.base, signums[i], on_signal, NULL);
        if (!sigs[i] || event_add(sigs[i], NULL) < 0) {
            fputs("tcpota-proxy: cannot install signal handlers\n", stderr);
            goto out;
        }
    }
    if (!g.relisten)
        goto out;

    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char text[300];
    if (getsockname(evconnlistener_get_fd(g.listener), (struct sockaddr *)&bound, &blen) < 0) {
        fprintf(stderr, "tcpota-proxy: getsockname: %s\n", strerror(errno));
        goto out;
    }
    format_addr(&bound, text, sizeof text);
    if (is_self(&bound, &opt.up_addr)) {
        /* Each connection would open one more to itself until the
         * descriptors ran out (a trial: 20,000 in 3 s). */
        fprintf(stderr, "tcpota-proxy: --upstream is the proxy's own --listen address (%s); give"
                        " the server's address\n", text);
        rc = 2; /* a bad argument, as the others */
        goto out;
    }
    fprintf(stderr, "proxy: listening on %s\n", text);

    event_base_dispatch(g.base);
    rc = 0;

out:
    while (g.conns) {
        bool q = opt.quiet;
        opt.quiet = true; /* shutting down: no per-connection noise */
        conn_close(g.conns, false);
        opt.quiet = q;
    }
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (g.relisten)
        event_free(g.relisten);
    if (g.listener)
        evconnlistener_free(g.listener);
    if (g.base)
        event_base_free(g.base);
    for (int d = 0; d < 2; d++) {
        free(opt.cut[d].v);
        free(opt.flip[d].v);
    }
    if (rc == 0)
        print_stats();
    libevent_global_shutdown();
    return rc;
}
