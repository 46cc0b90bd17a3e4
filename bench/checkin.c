/* checkin.c - bench-loadgen's check-in clients (see checkin.h): one epoll
 * loop keeps C short connections in flight and counts the answers. */
#define _GNU_SOURCE
#include "checkin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpota/codec.h"
#include "tcpota/tcpota.h"
#include "tlsclient.h"

#define RX_CAP 4096u /* an OFFER with its manifest fits; DATA is never read */
#define ID_MAX 32u

enum ci_mode { CI_TCPOTA, CI_HTTP10 };
enum ci_result { CI_NO_UPDATE, CI_OFFER, CI_FAILED };

/* One connection in flight. */
struct slot {
    int fd;
    int connecting;
    SSL *ssl;         /* --tls: the connection's TLS, NULL before and without */
    int handshaking;  /* --tls: SSL_connect() not done yet */
    unsigned id;      /* tcpota: index into the id pool */
    double t_start;
    struct tcpota_decoder dec;
    size_t got;       /* http10: response bytes in buf */
    uint8_t buf[RX_CAP];
};

static struct {
    enum ci_mode mode;
    struct sockaddr_storage srv;
    socklen_t srv_len;
    const char *path, *prefix, *model, *version;
    unsigned conns, ids, sources;
    unsigned long count; /* stop after this many answers (0: run the duration) */
    unsigned long warmup; /* answers before the measured run starts (not counted) */
    long server_pid;      /* --server-pid: its CPU over the measured run is reported */
    double server_cpu0;
    unsigned long size;
    double duration;
    int ep;
    unsigned long next_id, started, sent, done, no_update, offers, failed;
    unsigned char *id_seen; /* one byte per id of the pool: answered once */
    unsigned long ids_done;
    double *lat;            /* seconds per answered connection */
    size_t nlat, cap_lat;
    char first_error[160];
    SSL_CTX *tls;           /* --tls CA: connect inside TLS, verifying the server */
    int resume;             /* --resume: offer each id its last session */
    SSL_SESSION **sessions; /* --resume: one per id of the pool (or per slot for http10) */
    unsigned long full, resumed; /* TLS handshakes of the answered connections */
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note_error(const char *what)
{
    if (!g.first_error[0]) snprintf(g.first_error, sizeof(g.first_error), "%s", what);
}

static void watch(struct slot *s, int op, uint32_t events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = s;
    epoll_ctl(g.ep, op, s->fd, &ev);
}

/* Starts the slot's next connection. Returns 0, or -1 (counted as failed). */
static int slot_open(struct slot *s)
{
    struct sockaddr_in src;
    int one = 1;

    s->fd = socket(g.srv.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -1;
    s->id = (unsigned)(g.next_id++ % g.ids);
    s->got = 0;
    s->connecting = 1;
    tcpota_decoder_reset(&s->dec);
    if (g.srv.ss_family == AF_INET && g.sources > 1) {
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        /* A device keeps its address from one check-in to the next. */
        src.sin_addr.s_addr = htonl(0x7f000001u + s->id % g.sources);
        setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(s->fd, (struct sockaddr *)&src, sizeof(src)) < 0) goto fail;
    }
    g.started++;
    s->t_start = now_s();
    if (connect(s->fd, (struct sockaddr *)&g.srv, g.srv_len) < 0 && errno != EINPROGRESS) goto fail;
    watch(s, EPOLL_CTL_ADD, EPOLLOUT);
    return 0;
fail:
    note_error(strerror(errno));
    close(s->fd);
    s->fd = -1;
    return -1;
}

/* --resume: the session to offer for this connection's device. */
static SSL_SESSION **session_of(struct slot *s)
{
    return &g.sessions[s->id];
}

/* OpenSSL hands over each new session (TLS 1.3: a ticket, after the
 * handshake): the device keeps the newest for its next check-in, as
 * `tcpota device` keeps it in DIR/tls-session. */
static int keep_session(SSL *ssl, SSL_SESSION *sess)
{
    struct slot *s = SSL_get_app_data(ssl);

    if (!s || !g.resume || !SSL_SESSION_is_resumable(sess)) return 0;
    SSL_SESSION_free(*session_of(s));
    *session_of(s) = sess;
    return 1; /* the reference is ours */
}

static void slot_close(struct slot *s)
{
    if (s->ssl) {
        SSL_free(s->ssl); /* no close_notify: the benchmark's devices just close */
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        epoll_ctl(g.ep, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
        s->fd = -1;
    }
}

/* The connection answered (or failed): count it, close it. */
static void slot_finish(struct slot *s, enum ci_result r, const char *why)
{
    double t = now_s();

    if (s->ssl && r != CI_FAILED) {
        if (SSL_session_reused(s->ssl)) g.resumed++;
        else g.full++;
        /* An answered connection ends cleanly: SSL_free() after an
         * unfinished one would mark its session not resumable. */
        tlsc_ended(s->ssl);
    }
    slot_close(s);
    if (r == CI_FAILED) {
        g.failed++;
        note_error(why);
        return;
    }
    g.done++;
    if (r == CI_OFFER) g.offers++;
    else g.no_update++;
    if (g.mode == CI_TCPOTA && !g.id_seen[s->id]) {
        g.id_seen[s->id] = 1;
        g.ids_done++;
    }
    if (g.nlat == g.cap_lat) {
        size_t cap = g.cap_lat ? 2 * g.cap_lat : 65536;
        double *p = realloc(g.lat, cap * sizeof(*p));
        if (!p) return;
        g.lat = p;
        g.cap_lat = cap;
    }
    g.lat[g.nlat++] = t - s->t_start;
}

/* The first bytes of the connection: one HELLO frame, or one GET. */
static int send_request(struct slot *s)
{
    uint8_t out[512];
    char id[ID_MAX];
    struct tcpota_msg m;
    int n;

    if (g.mode == CI_HTTP10) {
        n = snprintf((char *)out, sizeof(out), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", g.path);
    } else {
        snprintf(id, sizeof(id), "%s%05u", g.prefix, s->id);
        memset(&m, 0, sizeof(m));
        m.type = TCPOTA_T_HELLO;
        m.u.hello.proto_min = m.u.hello.proto_max = TCPOTA_PROTO_VERSION;
        m.u.hello.device_id.ptr = (const uint8_t *)id;
        m.u.hello.device_id.len = (uint16_t)strlen(id);
        m.u.hello.model.ptr = (const uint8_t *)g.model;
        m.u.hello.model.len = (uint16_t)strlen(g.model);
        m.u.hello.version.ptr = (const uint8_t *)g.version;
        m.u.hello.version.len = (uint16_t)strlen(g.version);
        m.u.hello.max_payload = (uint16_t)(RX_CAP - TCPOTA_FRAME_OVERHEAD);
        n = tcpota_msg_encode(&m, out, sizeof(out));
        if (n < 0) return -1;
    }
    /* A fresh socket takes a few hundred bytes at once. */
    if ((s->ssl ? tlsc_send(s->ssl, out, (size_t)n) : send(s->fd, out, (size_t)n, MSG_NOSIGNAL)) != n) {
        return -1;
    }
    g.sent++;
    return 0;
}

/* tcpota: feeds what arrived; finishes the slot at NO_UPDATE or OFFER. */
static void tcpota_input(struct slot *s, const uint8_t *p, size_t n)
{
    struct tcpota_frame f;

    while (n > 0) {
        int used = tcpota_decoder_feed(&s->dec, p, n, &f);
        if (used < 0) {
            slot_finish(s, CI_FAILED, tcpota_strerror(used));
            return;
        }
        p += used;
        n -= (size_t)used;
        if (f.type == TCPOTA_T_NO_UPDATE || f.type == TCPOTA_T_OFFER) {
            slot_finish(s, f.type == TCPOTA_T_OFFER ? CI_OFFER : CI_NO_UPDATE, NULL);
            return;
        }
        if (f.type != 0 && f.type != TCPOTA_T_WELCOME) {
            char why[64];
            snprintf(why, sizeof(why), "the server sent frame type 0x%02x", f.type);
            slot_finish(s, CI_FAILED, why);
            return;
        }
    }
}

/* http10: the whole answer is in (the server closed): a 200 whose body has
 * the expected size. */
static void http_answer(struct slot *s)
{
    const char *h = (const char *)s->buf, *end, *cl;

    s->buf[s->got < RX_CAP ? s->got : RX_CAP - 1] = 0;
    end = strstr(h, "\r\n\r\n");
    cl = strcasestr(h, "\r\ncontent-length:");
    if (!end || (strncmp(h, "HTTP/1.1 200", 12) != 0 && strncmp(h, "HTTP/1.0 200", 12) != 0) ||
        !cl || cl > end || strtoul(cl + 17, NULL, 10) != g.size ||
        s->got - (size_t)(end + 4 - h) != g.size) {
        slot_finish(s, CI_FAILED, "not a 200 with the whole body");
        return;
    }
    slot_finish(s, CI_NO_UPDATE, NULL);
}

/* --tls: drives the handshake; sends the request once it is done.
 * Returns 0 while it goes on, 1 when the request went out, -1 failed. */
static int tls_step(struct slot *s)
{
    uint32_t events = 0;
    int rc = tlsc_handshake(s->ssl, &events);

    if (rc == 1) {
        s->handshaking = 0;
        return send_request(s) < 0 ? -1 : 1;
    }
    if (rc == 0) watch(s, EPOLL_CTL_MOD, events);
    return rc;
}

/* The connection is up: TLS starts, or the request goes out. */
static void on_connected(struct slot *s)
{
    int err = 0, rc;
    socklen_t el = sizeof(err);

    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        slot_finish(s, CI_FAILED, strerror(err));
        return;
    }
    s->connecting = 0;
    if (g.tls) {
        if (!(s->ssl = tlsc_new(g.tls, s->fd, s, g.resume ? *session_of(s) : NULL))) {
            slot_finish(s, CI_FAILED, "cannot set up TLS");
            return;
        }
        s->handshaking = 1;
        if ((rc = tls_step(s)) < 0) slot_finish(s, CI_FAILED, "TLS handshake failed");
        else if (rc == 1) watch(s, EPOLL_CTL_MOD, EPOLLIN);
        return;
    }
    if (send_request(s) < 0) {
        slot_finish(s, CI_FAILED, "cannot send the request");
        return;
    }
    watch(s, EPOLL_CTL_MOD, EPOLLIN);
}

/* Reads what arrived into dst: a count, 0 (closed) or -1 (errno; EAGAIN:
 * nothing yet). */
static ssize_t slot_recv(struct slot *s, void *dst, size_t cap)
{
    return s->ssl ? tlsc_recv(s->ssl, dst, cap) : recv(s->fd, dst, cap, MSG_DONTWAIT);
}

static void on_io(struct slot *s, uint32_t events)
{
    uint8_t tmp[RX_CAP];
    ssize_t n;
    int rc;

    if (s->connecting) {
        on_connected(s);
        return;
    }
    if (s->handshaking) {
        if ((rc = tls_step(s)) < 0) slot_finish(s, CI_FAILED, "TLS handshake failed");
        else if (rc == 1) watch(s, EPOLL_CTL_MOD, EPOLLIN);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    if (g.mode == CI_HTTP10) {
        n = slot_recv(s, s->buf + s->got, RX_CAP - 1 - s->got);
        if (n > 0) s->got += (size_t)n;
    } else {
        n = slot_recv(s, tmp, sizeof(tmp));
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
        slot_finish(s, CI_FAILED, strerror(errno));
    } else if (g.mode == CI_HTTP10 && (n == 0 || s->got == RX_CAP - 1)) {
        http_answer(s);
    } else if (n == 0) {
        slot_finish(s, CI_FAILED, "the server closed before NO_UPDATE or OFFER");
    } else if (g.mode == CI_TCPOTA) {
        tcpota_input(s, tmp, (size_t)n);
    }
}

/* CPU seconds (user + system, every thread) of process pid so far; -1 when
 * unreadable. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r"))) return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* After "pid (comm) ": state is field 3, utime 14, stime 15. */
    if (!(p = strrchr(buf, ')')) ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run(void)
{
    static struct epoll_event evs[1024];
    struct slot *slots = calloc(g.conns, sizeof(*slots));
    double t0, t_end, elapsed, server_cpu, cpu0 = cpu_s();
    unsigned i;

    g.id_seen = calloc(g.ids, 1);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!slots || !g.id_seen || g.ep < 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    t0 = now_s();
    t_end = t0 + (g.warmup ? 3600 : g.duration);
    if (g.server_pid) g.server_cpu0 = proc_cpu(g.server_pid);
    for (i = 0; i < g.conns; i++) {
        tcpota_decoder_init(&slots[i].dec, slots[i].buf, RX_CAP);
        slots[i].fd = -1;
    }
    while (now_s() < t_end && (!g.count || g.done < g.count)) {
        int k, n;
        /* --warmup: the first answers only fill the devices' sessions. */
        if (g.warmup && g.done >= g.warmup) {
            g.warmup = 0;
            g.done = g.no_update = g.offers = g.failed = g.full = g.resumed = 0;
            g.nlat = 0;
            t0 = now_s();
            t_end = t0 + g.duration;
            cpu0 = cpu_s(); /* client_cpu: the measured run's, as the server's */
            if (g.server_pid) g.server_cpu0 = proc_cpu(g.server_pid);
        }
        /* Every free slot starts its next connection at once. */
        for (i = 0; i < g.conns; i++) {
            if (slots[i].fd < 0 && slot_open(&slots[i]) < 0) g.failed++;
        }
        n = epoll_wait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 100);
        for (k = 0; k < n; k++) on_io(evs[k].data.ptr, evs[k].events);
    }
    elapsed = (now_s() < t_end ? now_s() : t_end) - t0;
    server_cpu = g.server_pid ? proc_cpu(g.server_pid) - g.server_cpu0 : 0;
    for (i = 0; i < g.conns; i++) slot_close(&slots[i]);
    qsort(g.lat, g.nlat, sizeof(*g.lat), cmp_double);
    printf("loadgen mode=%s conns=%u duration=%.2f done=%lu per_s=%.0f no_update=%lu offers=%lu "
           "failed=%lu ids=%u ids_sent=%lu ids_done=%lu p50_ms=%.2f p99_ms=%.2f client_cpu=%.2f"
           " tls_full=%lu tls_resumed=%lu server_cpu=%.3f\n",
           g.mode == CI_TCPOTA ? "checkin" : "http10", g.conns, elapsed, g.done,
           (double)g.done / elapsed, g.no_update, g.offers, g.failed,
           g.mode == CI_TCPOTA ? g.ids : 0,
           g.mode == CI_TCPOTA ? (g.sent < g.ids ? g.sent : g.ids) : 0, g.ids_done,
           g.nlat ? g.lat[g.nlat / 2] * 1e3 : 0.0,
           g.nlat ? g.lat[(size_t)((double)(g.nlat - 1) * 0.99)] * 1e3 : 0.0, cpu_s() - cpu0, g.full,
           g.resumed, server_cpu);
    if (g.failed) fprintf(stderr, "loadgen: %lu connections failed; first: %s\n", g.failed, g.first_error);
    close(g.ep);
    free(slots);
    free(g.id_seen);
    free(g.lat);
    for (i = 0; g.sessions && i < g.ids; i++) SSL_SESSION_free(g.sessions[i]);
    free(g.sessions);
    return g.failed ? 1 : 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-loadgen checkin --server HOST:PORT [--conns C] [--duration SEC]"
                    " [--count K] [--ids N] [--id-prefix P] [--model M] [--version V] [--sources K]"
                    " [--tls CA [--resume]] [--warmup K] [--server-pid P]\n"
                    "       bench-loadgen http10 --server HOST:PORT --path /FILE --size BYTES"
                    " [--conns C] [--duration SEC] [--sources K] [--ids N] [--tls CA [--resume]] [--warmup K] [--server-pid P]\n");
    return 2;
}

int checkin_main(int argc, char **argv)
{
    const char *server = NULL, *ca = NULL;
    int i;

    g.mode = strcmp(argv[1], "http10") == 0 ? CI_HTTP10 : CI_TCPOTA;
    g.conns = 128;
    g.duration = 5;
    g.ids = 10000;
    g.sources = 32;
    g.prefix = "ci-";
    g.model = "bench-ci";
    g.version = "1.0.0";
    for (i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--resume") == 0) { /* the one option without a value */
            g.resume = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) break;
        if (strcmp(a, "--server") == 0) server = v;
        else if (strcmp(a, "--tls") == 0) ca = v;
        else if (strcmp(a, "--path") == 0) g.path = v;
        else if (strcmp(a, "--size") == 0) g.size = strtoul(v, NULL, 10);
        else if (strcmp(a, "--conns") == 0) g.conns = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--duration") == 0) g.duration = strtod(v, NULL);
        else if (strcmp(a, "--count") == 0) g.count = strtoul(v, NULL, 10);
        else if (strcmp(a, "--warmup") == 0) g.warmup = strtoul(v, NULL, 10);
        else if (strcmp(a, "--server-pid") == 0) g.server_pid = strtol(v, NULL, 10);
        else if (strcmp(a, "--ids") == 0) g.ids = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--id-prefix") == 0) g.prefix = v;
        else if (strcmp(a, "--model") == 0) g.model = v;
        else if (strcmp(a, "--version") == 0) g.version = v;
        else if (strcmp(a, "--sources") == 0) g.sources = (unsigned)strtoul(v, NULL, 10);
        else return usage();
    }
    if (i != argc || !server || loadgen_resolve(server, &g.srv, &g.srv_len) < 0 ||
        g.conns == 0 || g.duration <= 0 ||
        g.ids == 0 || g.ids > 100000 || g.sources == 0 || g.sources > 250 ||
        strlen(g.prefix) > ID_MAX - 6 || (g.mode == CI_HTTP10 && (!g.path || g.size == 0))) {
        return usage();
    }
    if (g.resume && !ca) return usage();
    if (ca) {
        if (!(g.tls = tlsc_context(ca, keep_session))) return 2;
        if (g.resume && !(g.sessions = calloc(g.ids, sizeof(*g.sessions)))) return 2;
    }
    i = run();
    if (g.tls) SSL_CTX_free(g.tls);
    return i;
}
