/* server.c - `tcpota serve` on libevent (see server.h). */
#define _GNU_SOURCE /* memfd_create */
#include "server.h"

#include "tcpota/crc32c.h"
#include "tcpota/legacy.h"
#include "tcpota/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OUT_HIGH (256u * 1024u) /* queue DATA frames up to this much */
#define OUT_LOW (64u * 1024u)   /* refill when the queue drains below */
/* Stop reading a peer whose replies pile up unread (a PING flood, a legacy
 * device repeating req1 without reading): above DATA's own cap. */
#define READ_PAUSE (OUT_HIGH + 256u * 1024u)
#define RX_CAP 1024u            /* device frames are small; HELLO < 300 B */
#define BAN_SLOTS 256u          /* peers remembered for failed authentications */
#define BAN_MAX_S 300u          /* longest wait imposed after failures */

struct image {
    int fd;
    uint8_t *map;
    uint32_t size;
    uint32_t chunk;
    uint32_t *crcs; /* CRC32C of the DATA frame of each aligned chunk */
    /* Every aligned DATA frame, whole and back to back (NULL if it did not
     * fit in memory): a run of frames goes out as one reference into it,
     * so a connection's queue costs a chain, not a chain per frame, and
     * one writev sends many frames. */
    uint8_t *wire;
    size_t wire_len;
    int wire_fd; /* memfd holding `wire`, so runs of frames go out by sendfile */
    struct evbuffer_file_segment *wire_seg;
    struct evbuffer_file_segment *seg;
    struct tcpota_srv_image desc;
    char version[33];
    char idhex[65];
};

enum kind { K_UNKNOWN = 0, K_V1, K_LEGACY };

struct conn;

/* Failed authentications per peer address: each failure doubles the time
 * the peer must wait before it is served again. */
struct ban {
    char addr[48];
    unsigned failures;
    double until;
};

struct server {
    const struct tcpota_serve_opts *o;
    SSL_CTX *tls;
    struct ban bans[BAN_SLOTS];
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *sigint, *sigterm, *sweep;
    struct image img;
    struct conn *conns;
    unsigned nconns;
    uint64_t next_id;
    struct {
        unsigned connections, updated, up_to_date, failed, refused, legacy_done, auth_failed;
        uint64_t bytes_sent;
    } stats;
    double started;
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    struct conn *prev, *next;
    enum kind kind;
    uint64_t id;
    char peer[64];
    char dev[TCPOTA_MAX_STR + 1];
    struct tcpota_srv s;
    struct tcpota_legacy leg;
    uint32_t stream_from;
    uint32_t next_pct;
    uint64_t bytes_sent;
    double started;
    double progress_at; /* last time the device's ACKs moved (or it connected) */
    uint8_t legacy_done;
    uint8_t closing; /* conn_close() ran: free once the output is out */
    uint8_t read_paused; /* reading stopped until our replies drain */
    char addr[48];
    uint8_t nonce[TCPOTA_NONCE_LEN];
    uint8_t rx[RX_CAP];
    uint8_t tx[TCPOTA_SRV_TX_MIN];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(const struct server *srv, const char *fmt, ...)
{
    va_list ap;
    if (srv->o->quiet) {
        return;
    }
    fputs("tcpota serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* One log line about a connection, naming the device once it is known. */
static void clog_(const struct conn *c, int always, const char *fmt, ...)
{
    va_list ap;
    if (c->srv->o->quiet && !always) {
        return;
    }
    fprintf(stderr, "tcpota serve: [%s %s] ", c->dev[0] ? c->dev : "-", c->peer);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- image ----------------------------------------------------------- */

/* Room for every aligned DATA frame back to back: in a memfd where Linux
 * has one (then runs of frames go to sockets by sendfile, never copied
 * through user space), else on the heap (then by reference and writev).
 * Returns the memfd or -1; *wire is NULL when neither worked. */
static int wire_create(size_t len, uint8_t **wire)
{
    int fd = -1;
    void *p;

#ifdef MFD_CLOEXEC
    fd = memfd_create("tcpota-frames", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)len) == 0 &&
        (p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) != MAP_FAILED) {
        *wire = p;
        return fd;
    }
    if (fd >= 0) close(fd);
#endif
    *wire = malloc(len);
    return -1;
}

static int image_load(struct image *img, const char *path, const char *version, unsigned chunk)
{
    struct stat st;
    uint32_t i, n;
    size_t vlen = strlen(version);

    memset(img, 0, sizeof(*img));
    img->fd = -1;
    img->wire_fd = -1;
    if (vlen == 0 || vlen > 32) {
        fprintf(stderr, "tcpota serve: --version must be 1..32 characters\n");
        return -1;
    }
    for (i = 0; i < vlen; i++) {
        if (version[i] < 0x20 || version[i] > 0x7e) {
            fprintf(stderr, "tcpota serve: --version must be printable ASCII\n");
            return -1;
        }
    }
    img->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (img->fd < 0 || fstat(img->fd, &st) < 0) {
        fprintf(stderr, "tcpota serve: cannot open image %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "tcpota serve: image %s is not a regular file\n", path);
        return -1;
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > 0xffffffffu) {
        fprintf(stderr, "tcpota serve: image %s must have 1 byte to 4 GiB - 1 (has %lld)\n", path,
                (long long)st.st_size);
        return -1;
    }
    img->size = (uint32_t)st.st_size;
    img->map = mmap(NULL, img->size, PROT_READ, MAP_PRIVATE, img->fd, 0);
    if (img->map == MAP_FAILED) {
        img->map = NULL;
        fprintf(stderr, "tcpota serve: cannot map %s: %s\n", path, strerror(errno));
        return -1;
    }
    crypto_hash_sha256(img->desc.id, img->map, img->size);
    sodium_bin2hex(img->idhex, sizeof(img->idhex), img->desc.id, TCPOTA_ID_LEN);
    memcpy(img->version, version, vlen + 1);
    img->desc.size = img->size;
    img->desc.version = img->version;
    img->desc.version_len = (uint16_t)vlen;
    img->chunk = chunk;
    n = (img->size + chunk - 1) / chunk;
    img->crcs = calloc(n, sizeof(*img->crcs));
    if (!img->crcs) {
        fprintf(stderr, "tcpota serve: out of memory\n");
        return -1;
    }
    for (i = 0; i < n; i++) {
        uint32_t off = i * chunk, len = img->size - off < chunk ? img->size - off : chunk;
        uint8_t head[8];
        tcpota_data_head(head, off, (uint16_t)len);
        img->crcs[i] = tcpota_crc32c_update(tcpota_crc32c(head, 8), img->map + off, len);
    }
    img->wire_len = (size_t)n * (chunk + 12u);
    img->wire_fd = wire_create(img->wire_len, &img->wire);
    for (i = 0; img->wire && i < n; i++) {
        uint32_t off = i * chunk, len = img->size - off < chunk ? img->size - off : chunk;
        uint8_t *f = img->wire + (size_t)i * (chunk + 12u);
        tcpota_data_head(f, off, (uint16_t)len);
        memcpy(f + 8, img->map + off, len);
        tcpota_put_u32(f + 8 + len, img->crcs[i]);
    }
    if (img->wire_fd >= 0) {
        img->wire_seg = evbuffer_file_segment_new(img->wire_fd, 0, (ev_off_t)img->wire_len, 0);
    }
    img->seg = evbuffer_file_segment_new(img->fd, 0, img->size, 0);
    if (!img->seg) {
        fprintf(stderr, "tcpota serve: cannot prepare %s for sending\n", path);
        return -1;
    }
    return 0;
}

static void image_free(struct image *img)
{
    if (img->wire_seg) evbuffer_file_segment_free(img->wire_seg);
    if (img->wire_fd >= 0) {
        if (img->wire) munmap(img->wire, img->wire_len);
        close(img->wire_fd);
        img->wire = NULL;
    }
    if (img->seg) evbuffer_file_segment_free(img->seg);
    if (img->map) munmap(img->map, img->size);
    if (img->fd >= 0) close(img->fd);
    free(img->crcs);
    free(img->wire);
    memset(img, 0, sizeof(*img));
    img->fd = -1;
    img->wire_fd = -1;
}

/* ---- connections ----------------------------------------------------- */

static void conn_free(struct conn *c)
{
    struct server *srv = c->srv;

    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    srv->stats.bytes_sent += c->bytes_sent;
    bufferevent_free(c->bev);
    free(c);
}

/* Ends a connection once what is queued has gone out (or at once).
 * Returns 1 when c was freed. */
static int conn_close(struct conn *c, int now)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (now || evbuffer_get_length(out) == 0) {
        conn_free(c);
        return 1;
    }
    /* Stop reading; the write callback frees it once drained. */
    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    return 0;
}

/* Appends a few bytes right after a file segment. Not evbuffer_add: there
 * libevent sizes the new chain like the segment chain before it (offset +
 * length in the file), i.e. up to the image size for each DATA frame, which
 * a peer that does not read turns into megabytes of heap. */
static void add_after_segment(struct evbuffer *out, const uint8_t *p, size_t n)
{
    struct evbuffer_iovec v;

    if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) == 1 && v.iov_len >= n) {
        memcpy(v.iov_base, p, n);
        v.iov_len = n;
        if (evbuffer_commit_space(out, &v, 1) == 0) {
            return;
        }
    }
    evbuffer_add(out, p, n);
}

static void add_data_frame(struct conn *c, struct evbuffer *out, uint32_t off, uint16_t len)
{
    const struct image *img = &c->srv->img;
    uint8_t head[8], tail[4];
    uint32_t crc;

    tcpota_data_head(head, off, len);
    if (off % img->chunk == 0 && (len == img->chunk || off + len == img->size)) {
        crc = img->crcs[off / img->chunk];
    } else {
        crc = tcpota_crc32c_update(tcpota_crc32c(head, 8), img->map + off, len);
    }
    tcpota_put_u32(tail, crc);
    evbuffer_add(out, head, sizeof(head));
    /* The payload goes by sendfile where the platform has it. */
    evbuffer_add_file_segment(out, img->seg, off, len);
    add_after_segment(out, tail, sizeof(tail));
    c->bytes_sent += len;
}

/* Moves queued control frames, then DATA frames, into the socket's queue.
 * Returns 1 when the session ended and c was freed. */
/* Queues frames [at, at + len) of the prebuilt frame area. */
static void add_run(struct evbuffer *out, const struct image *img, size_t at, size_t len)
{
    if (img->wire_seg) {
        evbuffer_add_file_segment(out, img->wire_seg, (ev_off_t)at, (ev_off_t)len);
    } else {
        evbuffer_add_reference(out, img->wire + at, len, NULL, NULL);
    }
}

static int pump(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const uint8_t *p;
    size_t n = tcpota_srv_output(&c->s, &p);
    const struct image *img = &c->srv->img;
    size_t run_at = 0, run_len = 0, queued;
    uint32_t off;
    uint16_t len;

    if (n) {
        evbuffer_add(out, p, n);
        tcpota_srv_output_done(&c->s, n);
    }
    queued = evbuffer_get_length(out);
    while (queued + run_len < OUT_HIGH && tcpota_srv_data_next(&c->s, &off, &len)) {
        size_t at = (size_t)(off / img->chunk) * (img->chunk + 12u);
        if (img->wire && off % img->chunk == 0 && (len == img->chunk || off + len == img->size)) {
            if (run_len && at != run_at + run_len) { /* not contiguous: flush the run */
                add_run(out, img, run_at, run_len);
                queued += run_len;
                run_len = 0;
            }
            if (!run_len) run_at = at;
            run_len += len + 12u;
            c->bytes_sent += len;
            continue;
        }
        if (run_len) {
            add_run(out, img, run_at, run_len);
            run_len = 0;
        }
        add_data_frame(c, out, off, len);
        queued = evbuffer_get_length(out);
    }
    if (run_len) {
        add_run(out, img, run_at, run_len);
    }
    if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
        return conn_close(c, 0);
    }
    return 0;
}

static const char *result_name(uint16_t r)
{
    switch (r) {
    case TCPOTA_RESULT_CONFIRMED: return "confirmed";
    case TCPOTA_RESULT_ROLLED_BACK: return "rolled back (health check failed)";
    case TCPOTA_RESULT_BOOT_FAILED: return "rolled back by the bootloader";
    default: return "unknown result";
    }
}

static void on_auth(struct conn *c, const uint8_t *mac);

static void on_event(struct conn *c, const struct tcpota_srv_event *ev)
{
    struct server *srv = c->srv;
    const struct tcpota_msg *m = &ev->msg;
    uint32_t size = srv->img.size;

    switch (ev->type) {
    case TCPOTA_SRV_EV_HELLO:
        memcpy(c->dev, m->u.hello.device_id.ptr, m->u.hello.device_id.len);
        c->dev[m->u.hello.device_id.len] = 0;
        if (m->u.hello.report_id) {
            char hex[17];
            sodium_bin2hex(hex, sizeof(hex), m->u.hello.report_id, 8);
            clog_(c, 0, "report: image %s... %s%s", hex, result_name(m->u.hello.report_result),
                  memcmp(m->u.hello.report_id, srv->img.desc.id, TCPOTA_ID_LEN) == 0
                      ? " (current image)" : "");
        }
        if (ev->auth_pending) {
            clog_(c, 0, "hello model=%.*s version=%.*s: challenge sent", m->u.hello.model.len,
                  m->u.hello.model.ptr, m->u.hello.version.len, m->u.hello.version.ptr);
            return;
        }
        if (!ev->offered) {
            srv->stats.up_to_date++;
            clog_(c, 0, "hello model=%.*s version=%.*s: up to date", m->u.hello.model.len,
                  m->u.hello.model.ptr, m->u.hello.version.len, m->u.hello.version.ptr);
            return;
        }
        c->stream_from = ev->start;
        c->next_pct = (uint32_t)((uint64_t)ev->start * 10 / size + 1) * 10;
        clog_(c, 0, "hello model=%.*s version=%.*s: offer %s (%u bytes) %s %u",
              m->u.hello.model.len, m->u.hello.model.ptr, m->u.hello.version.len,
              m->u.hello.version.ptr, srv->img.version, size,
              ev->start ? "resume from" : "from", ev->start);
        return;
    case TCPOTA_SRV_EV_ACCEPT:
        c->progress_at = now_s();
        if (ev->start != c->stream_from) {
            clog_(c, 0, "accept: device resumes at %u instead, re-seeking", ev->start);
            c->stream_from = ev->start;
        }
        return;
    case TCPOTA_SRV_EV_DECLINE:
        srv->stats.failed++;
        clog_(c, 1, "declined: %s (%.*s)", tcpota_strerror(m->u.decline.reason),
              m->u.decline.message.len, m->u.decline.message.ptr ? (const char *)m->u.decline.message.ptr : "");
        return;
    case TCPOTA_SRV_EV_ACK:
        if (!ev->duplicate) {
            c->progress_at = now_s();
        }
        if (srv->o->progress && !ev->duplicate && size &&
            (uint64_t)m->u.ack.offset * 100 >= (uint64_t)c->next_pct * size) {
            clog_(c, 0, "%3u%% (%u/%u bytes durable)",
                  (unsigned)((uint64_t)m->u.ack.offset * 100 / size), m->u.ack.offset, size);
            c->next_pct = (uint32_t)((uint64_t)m->u.ack.offset * 10 / size + 1) * 10;
        }
        return;
    case TCPOTA_SRV_EV_COMPLETE:
        if (m->u.complete.status == 0) {
            srv->stats.updated++;
            clog_(c, 0, "done: image %s verified by the device, %u bytes from %u in %.2f s, "
                        "%llu sent on this connection",
                  srv->img.version, size, c->stream_from, now_s() - c->started,
                  (unsigned long long)c->bytes_sent);
        } else {
            srv->stats.failed++;
            clog_(c, 1, "failed: device reports %s", tcpota_strerror(m->u.complete.status));
        }
        return;
    case TCPOTA_SRV_EV_AUTH:
        on_auth(c, m->u.auth.mac);
        return;
    case TCPOTA_SRV_EV_PEER_ERROR:
        clog_(c, 1, "device error: %s (%.*s)", tcpota_strerror(m->u.error.code),
              m->u.error.message.len, m->u.error.message.ptr ? (const char *)m->u.error.message.ptr : "");
        return;
    default:
        return;
    }
}

static int v1_input(struct conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        struct tcpota_srv_event ev;
        int used = tcpota_srv_input(&c->s, p, n, &ev);
        if (used < 0) {
            c->srv->stats.failed++;
            clog_(c, 1, "error: %s; closing", tcpota_strerror(used));
            (void)pump(c); /* flushes the ERROR frame, then closes */
            return -1;
        }
        on_event(c, &ev);
        p += used;
        n -= (size_t)used;
        if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
            break; /* the rest is ignored */
        }
    }
    return pump(c) ? -1 : 0;
}

/* Writes one legacy package in one piece: a single send() when nothing is
 * queued, so a device that reads it with one recv() gets all of it. */
static void legacy_send(struct conn *c, const struct tcpota_legacy_pkg *pkg)
{
    const struct image *img = &c->srv->img;
    uint8_t buf[TCPOTA_LEGACY_HEAD_MAX + TCPOTA_LEGACY_PKG];
    int h = tcpota_legacy_header(img->size, pkg->len, (char *)buf, TCPOTA_LEGACY_HEAD_MAX);
    size_t n = (size_t)h + pkg->len;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    ssize_t w = 0;

    memcpy(buf + h, img->map + pkg->offset, pkg->len);
    if (evbuffer_get_length(out) == 0 && !c->srv->tls) {
        w = send(bufferevent_getfd(c->bev), buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) w = 0;
    }
    if ((size_t)w < n) {
        evbuffer_add(out, buf + w, n - (size_t)w);
    }
    c->bytes_sent += pkg->len;
    if (!c->legacy_done && pkg->offset + pkg->len == img->size && pkg->len) {
        c->legacy_done = 1;
        c->srv->stats.legacy_done++;
        clog_(c, 0, "legacy device: sent the last package (%u bytes in %.2f s); "
                    "the legacy protocol has no integrity check",
              img->size, now_s() - c->started);
    }
}

static int legacy_input(struct conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        struct tcpota_legacy_pkg pkg;
        int used = tcpota_legacy_input(&c->leg, p, n, &pkg);
        if (used < 0) {
            c->srv->stats.failed++;
            clog_(c, 1, "legacy device sent something that is not req0/req1; closing");
            (void)conn_close(c, 1);
            return -1;
        }
        if (pkg.ready) {
            legacy_send(c, &pkg);
        }
        p += used;
        n -= (size_t)used;
    }
    return 0;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    uint8_t buf[4096];

    /* A peer that trickles bytes resets the idle timer forever: its HELLO
     * must be complete within one idle timeout of connecting. */
    if (c->kind != K_LEGACY && !c->s.got_hello && now_s() - c->started > c->srv->o->idle_timeout_s) {
        c->srv->stats.failed++;
        clog_(c, 1, "no HELLO within %u s (too slow); closing", c->srv->o->idle_timeout_s);
        (void)conn_close(c, 1);
        return;
    }
    while (evbuffer_get_length(in)) {
        int n;
        if (evbuffer_get_length(bufferevent_get_output(bev)) >= READ_PAUSE) {
            /* The write callback resumes once the peer reads again; if it
             * never does, the write timeout ends the connection. */
            c->read_paused = 1;
            bufferevent_disable(bev, EV_READ);
            return;
        }
        n = evbuffer_remove(in, buf, sizeof(buf));
        if (n <= 0) break;
        if (c->kind == K_UNKNOWN) {
            int k = tcpota_detect(buf, (size_t)n);
            if (k == TCPOTA_KIND_V1) {
                c->kind = K_V1;
            } else if (k == TCPOTA_KIND_LEGACY && c->srv->o->manifest && !c->srv->o->allow_legacy) {
                c->srv->stats.refused++;
                clog_(c, 1, "legacy (req0/req1) device refused: the image is signed and legacy "
                            "devices cannot check it (--allow-legacy serves them anyway)");
                (void)conn_close(c, 1);
                return;
            } else if (k == TCPOTA_KIND_LEGACY) {
                int one = 1;
                c->kind = K_LEGACY;
                setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                snprintf(c->dev, sizeof(c->dev), "legacy");
                clog_(c, 0, "legacy (req0/req1) device connected");
            } else {
                c->srv->stats.failed++;
                clog_(c, 1, "unknown protocol (first byte 0x%02x%s); closing", buf[0],
                      k == TCPOTA_KIND_TLS ? ", TLS is not enabled" : "");
                (void)conn_close(c, 1);
                return;
            }
        }
        if ((c->kind == K_V1 ? v1_input(c, buf, (size_t)n) : legacy_input(c, buf, (size_t)n)) < 0) {
            return; /* c may be gone */
        }
        if (c->kind == K_V1 && tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
            return; /* waiting for the output to drain */
        }
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    int resume = 0;

    if (c->read_paused && !c->closing &&
        evbuffer_get_length(bufferevent_get_output(bev)) < READ_PAUSE / 2) {
        c->read_paused = 0;
        bufferevent_enable(bev, EV_READ);
        resume = 1;
    }
    if (c->kind == K_V1) {
        if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CLOSING) {
            if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
                conn_free(c);
            }
            return;
        }
        if (pump(c)) {
            return; /* c is gone */
        }
    } else if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        /* Not "reading disabled": a TLS bufferevent reports that during
         * its handshake. */
        conn_free(c);
        return;
    }
    if (resume && evbuffer_get_length(bufferevent_get_input(bev))) {
        read_cb(bev, c); /* what arrived while reading was paused */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;

    if (what == BEV_EVENT_CONNECTED) {
        return; /* a TLS handshake finished: nothing ends here */
    }
    if (what & BEV_EVENT_TIMEOUT) {
        c->srv->stats.failed++;
        clog_(c, 1, "idle for %u s (%s); closing", c->srv->o->idle_timeout_s,
              (what & BEV_EVENT_READING) ? "nothing received" : "not reading what we send");
    } else if (what & BEV_EVENT_ERROR) {
        clog_(c, 0, "connection error: %s; closed", strerror(EVUTIL_SOCKET_ERROR()));
    } else if (what & BEV_EVENT_EOF) {
        if (c->kind == K_V1 && (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_OFFERED ||
                                tcpota_srv_get_state(&c->s) == TCPOTA_SRV_STREAMING ||
                                tcpota_srv_get_state(&c->s) == TCPOTA_SRV_SENT_ALL)) {
            clog_(c, 0, "disconnected mid-transfer; it can resume");
        } else {
            clog_(c, 0, "closed");
        }
    }
    conn_free(c);
}

static SSL_CTX *tls_context(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tcpota serve: cannot use TLS certificate %s / key %s: %s\n", cert,
                key ? key : cert, ERR_reason_error_string(ERR_get_error()));
        if (ctx) SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static struct ban *ban_find(struct server *srv, const char *addr, int create)
{
    struct ban *oldest = &srv->bans[0];
    unsigned i;

    for (i = 0; i < BAN_SLOTS; i++) {
        if (strcmp(srv->bans[i].addr, addr) == 0) return &srv->bans[i];
        if (srv->bans[i].until < oldest->until) oldest = &srv->bans[i];
    }
    if (!create) return NULL;
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
    return oldest;
}

/* A peer that authenticated starts with a clean record. */
static void ban_clear(struct server *srv, const char *addr)
{
    struct ban *b = ban_find(srv, addr, 0);
    if (b) memset(b, 0, sizeof(*b));
}

/* Checks the device's answer to our nonce against the secret we hold. */
static int auth_check(struct conn *c, const uint8_t *mac, const char **why)
{
    const struct tcpota_serve_opts *o = c->srv->o;
    const char *id = tcpota_srv_device_id(&c->s);
    uint8_t msg[TCPOTA_AUTH_MSG_MAX], want[32];
    size_t i;
    int n;

    for (i = 0; i < o->nsecrets; i++) {
        if (strcmp(o->secrets[i].id, id) == 0) break;
    }
    if (i == o->nsecrets) {
        *why = "unknown device";
        return 0;
    }
    n = tcpota_auth_message(c->nonce, NULL, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    if (n < 0) {
        *why = "bad device id";
        return 0;
    }
    {
        /* The streaming API takes keys of any length, as the device's does. */
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, o->secrets[i].secret, o->secrets[i].len);
        crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
        crypto_auth_hmacsha256_final(&st, want);
        sodium_memzero(&st, sizeof(st));
    }
    if (sodium_memcmp(want, mac, 32) != 0) {
        *why = "wrong answer to the challenge";
        return 0;
    }
    return 1;
}

static void on_auth(struct conn *c, const uint8_t *mac)
{
    struct server *srv = c->srv;
    const char *why = "";
    uint8_t offered = 0;
    uint32_t start = 0;
    int ok = auth_check(c, mac, &why);

    if (!ok) {
        struct ban *b = ban_find(srv, c->addr, 1);
        unsigned wait = b->failures < 8 ? 1u << b->failures : BAN_MAX_S;
        b->failures++;
        b->until = now_s() + (wait > BAN_MAX_S ? BAN_MAX_S : wait);
        srv->stats.auth_failed++;
        clog_(c, 1, "authentication failed: %s (failure %u from %s, next try in %u s)", why,
              b->failures, c->addr, wait > BAN_MAX_S ? BAN_MAX_S : wait);
        (void)tcpota_srv_authorize(&c->s, 0, NULL, NULL);
        return;
    }
    ban_clear(srv, c->addr);
    if (tcpota_srv_authorize(&c->s, 1, &offered, &start) == 0) {
        c->stream_from = start;
        c->next_pct = (uint32_t)((uint64_t)start * 10 / srv->img.size + 1) * 10;
        clog_(c, 0, "authenticated: %s", offered ? "offer sent" : "up to date");
        if (!offered) srv->stats.up_to_date++;
    }
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *srv = arg;
    struct tcpota_srv_config cfg;
    struct timeval tv;
    char host[48] = "?", port[8] = "?";
    struct conn *c;
    (void)lis;

    getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    if (srv->nconns >= srv->o->max_conns) {
        srv->stats.refused++;
        say(srv, "[- %s:%s] refused: %u connections already (limit)", host, port, srv->nconns);
        evutil_closesocket(fd);
        return;
    }
    {
        struct ban *b = ban_find(srv, host, 0);
        if (b && b->until > now_s()) {
            srv->stats.refused++;
            say(srv, "[- %s:%s] refused: %u failed authentications, wait %.0f s", host, port,
                b->failures, b->until - now_s());
            evutil_closesocket(fd);
            return;
        }
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->srv = srv;
    snprintf(c->addr, sizeof(c->addr), "%s", host);
    c->id = ++srv->next_id;
    c->started = now_s();
    c->progress_at = c->started;
    snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
    if (srv->tls) {
        SSL *ssl = SSL_new(srv->tls);
        c->bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
    } else {
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.image = &srv->img.desc;
    cfg.rx_buf = c->rx;
    cfg.rx_cap = sizeof(c->rx);
    cfg.tx_buf = c->tx;
    cfg.tx_cap = sizeof(c->tx);
    cfg.chunk = (uint16_t)srv->o->chunk;
    cfg.idle_timeout_s = (uint16_t)srv->o->idle_timeout_s;
    if (srv->o->require_auth) {
        randombytes_buf(c->nonce, sizeof(c->nonce));
        cfg.auth_nonce = c->nonce;
    }
    if (!c->bev || tcpota_srv_init(&c->s, &cfg) < 0) {
        if (c->bev) bufferevent_free(c->bev);
        else evutil_closesocket(fd);
        free(c);
        return;
    }
    tcpota_legacy_init(&c->leg, srv->img.size);
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->stats.connections++;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 64 * 1024);
    tv.tv_sec = srv->o->idle_timeout_s;
    tv.tv_usec = 0;
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
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
        fprintf(stderr, "tcpota serve: cannot resolve %s: %s\n", o->host, gai_strerror(rc));
        return -1;
    }
    srv->lis = evconnlistener_new_bind(srv->base, accept_cb, srv,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                           LEV_OPT_CLOSE_ON_EXEC,
                                       1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!srv->lis) {
        fprintf(stderr, "tcpota serve: cannot listen on %s:%u: %s\n", o->host, o->port,
                strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(srv->lis, accept_error_cb);
    getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), sport, sizeof(sport),
                NI_NUMERICHOST | NI_NUMERICSERV);
    /* Always printed: tests and scripts wait for this line. */
    fprintf(stderr, "tcpota serve: listening on %s:%s, image %s (%u bytes, sha256 %s)\n", host,
            sport, srv->img.version, srv->img.size, srv->img.idhex);
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
        fprintf(stderr, "tcpota serve: descriptor limit %llu is below --max-conns %u\n",
                (unsigned long long)rl.rlim_cur, o->max_conns);
    } else if (!o->quiet) {
        fprintf(stderr, "tcpota serve: descriptor limit %llu\n", (unsigned long long)rl.rlim_cur);
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
        fprintf(stderr, "tcpota serve: libsodium failed to initialise\n");
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
    fprintf(stderr,
            "tcpota serve: summary: %u connections, %u devices updated (verified), %u up to date, "
            "%u legacy devices served, %u errors, %u failed authentications, %u refused, "
            "%.1f MB sent in %.1f s\n",
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
