/*
 * bench-loadgen: plays a fleet of devices in one process, for the fleet
 * benchmark (bench/README.md).
 *
 *   bench-loadgen image --size BYTES [--seed S] FILE
 *       Writes the deterministic benchmark image (see gen_fill) to FILE.
 *   bench-loadgen tcpota --server HOST:PORT --devices N --size BYTES [options]
 *       N tcpota device sessions (libtcpota's struct tcpota_dev, the same core
 *       that runs on the device) over real non-blocking TCP sockets on one
 *       epoll loop, all started at once.
 *   bench-loadgen http --server HOST:PORT --path /FILE --devices N --size BYTES [options]
 *       N HTTP/1.1 GETs of the same image (e.g. from nginx), the reference.
 *   bench-loadgen checkin|http10 ...
 *       Short connections, C in flight: one HELLO until NO_UPDATE or OFFER,
 *       or one HTTP/1.0 GET (checkin.h).
 *
 *   options: --seed S (default 1), --sources K (spread connections over the
 *   source addresses 127.0.0.1 .. 127.0.0.K, default 4), --first I (number
 *   the devices from I: lg-I, lg-I+1, ...; default 0, for several load
 *   generators against one server), --timeout SEC
 *   (give up on the run after SEC s, default 600), --max-retries R
 *   (reconnects per device after a dropped connection, default 5),
 *   --keep-alive 1 (http: ask to keep the connection, and close it from the
 *   client once the body is in, as a tcpota device closes after COMPLETE:
 *   then both servers close second; default 0: "Connection: close", the
 *   server closes first), --ack-interval BYTES (tcpota devices' checkpoint interval, a multiple of
 *   4096; default: the core's, 16 KiB), --rcvbuf BYTES (each device's
 *   SO_RCVBUF, as a device's small TCP window; default: Linux's
 *   autotuning), --rx-cap BYTES (tcpota devices' frame buffer, as ESP-IDF's
 *   CONFIG_TCPOTA_RX_BUFFER_SIZE, 528..4108: its HELLO offers that less 8
 *   as its largest payload, and the server's DATA frames follow; default
 *   4108, the server's 4096-byte chunks), --tls CA (tcpota and http: every
 *   connection inside TLS, the server verified against CA with SNI
 *   "localhost"; a full handshake per connection, no session offered).
 *
 * Flash without the memory: 10,000 devices x 1 MiB would need 10 GiB, so the
 * device port keeps no image bytes. The image is a pure function of
 * (seed, offset) (gen_fill). ota_write compares every byte written with the
 * generator and fails on the first difference, so each written byte is
 * checked where it lands; ota_read, used by the core's read-back check
 * after the last byte, regenerates the bytes of the range written so far,
 * and the core hashes them (SHA-256) against the image id the
 * server offered, which the server computed from its file. Both together
 * prove the file served and the bytes received are the same, byte for byte.
 * The HTTP client does what esp_https_ota does with the same port: every
 * body byte is compared as it is "written", and at the end the slot is read
 * back and its SHA-256 checked (esp_ota_end -> esp_image_verify).
 * SHA-256 is OpenSSL's (EVP; SHA-NI where the CPU has it, ~1.8 GB/s here)
 * in both modes: the load generator plays devices whose hashing is done by
 * hardware (ESP32's SHA accelerator), and libsodium's portable SHA-256
 * (~0.35 GB/s) made the hash two thirds of the generator's CPU, so that the
 * fleet rate measured the generator rather than the server.
 *
 * Output: one line on stdout,
 *   loadgen mode=M devices=N ok=K failed=F retries=R wall=S p50=S p99=S max=S
 *           xfer_p50=S xfer_max=S mbytes_per_s=X peak_conns=P client_cpu=S
 * wall runs from the first connect() to the last device done; the per-device
 * time from that device's connect() to its verified image (tcpota: the
 * core's UPDATED event; http: the last body byte, hash checked). xfer_* are
 * the per-device times from the first connect() to the last image byte
 * written, before the read-back and hash (the transfer alone; with
 * --devices 1 the link benchmark compares it with raw TCP). Exit 0 only
 * when every device got the image byte-exact.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkin.h"
#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tlsclient.h"

#define RX_CAP (4096u + 12u) /* largest DATA frame at the server's default chunk */
#define RX_CAP_MIN 528u       /* ESP-IDF's smallest CONFIG_TCPOTA_RX_BUFFER_SIZE */
#define TX_CAP 512u
#define KV_SLOTS 6
#define KV_VAL 64
#define HDR_CAP 2048

enum mode { M_TCPOTA, M_HTTP };

struct kv {
    char key[16];
    uint8_t len, used;
    uint8_t val[KV_VAL];
};

/* One emulated device: its port state, its session and its socket. */
struct dev {
    unsigned idx;
    int fd;
    uint32_t events; /* what epoll watches on fd */
    SSL *ssl; /* --tls: the connection's TLS, NULL before and without */
    uint8_t connecting, handshaking, done, failed;
    unsigned retries;
    double t_start, t_done;
    double t_last; /* when the last image byte was written (0: not yet) */
    /* in-memory flash port */
    uint32_t pos;       /* write position: bytes [0, pos) checked against the generator */
    uint8_t begun, booted;
    struct kv kv[KV_SLOTS];
    EVP_MD_CTX *sha; /* while a hash is under way */
    /* tcpota session */
    struct tcpota_dev s;
    struct tcpota_port port;
    uint8_t held;      /* ACKs wait for the input to run dry ... */
    uint32_t held_at;  /* ... since (now_ms32) */
    char id[16];
    uint8_t *rx, *tx;
    /* http */
    uint8_t *hdr;
    size_t hdr_len;
    uint8_t in_body;
    uint64_t body_len, body_got;
};

static struct {
    enum mode mode;
    struct sockaddr_storage srv;
    socklen_t srv_len;
    const char *path;
    int keep_alive; /* http: no "Connection: close"; the client closes first */
    unsigned n, sources, max_retries;
    unsigned first; /* --first: the first device's number (several load generators) */
    uint32_t ack_interval; /* tcpota devices' checkpoint interval; 0: the core's default */
    int rcvbuf;            /* --rcvbuf: each device's receive buffer; 0: the kernel's autotuning */
    uint32_t rx_cap;       /* --rx-cap: each tcpota device's frame buffer, at most RX_CAP */
    uint32_t size;
    uint64_t seed;
    double timeout_s;
    SSL_CTX *tls; /* --tls CA: connections inside TLS */
    uint8_t id[TCPOTA_ID_LEN]; /* SHA-256 of the generator image */
    uint8_t *img; /* the image, made once (IMAGE_IN_MEMORY_MAX), or NULL */
    int ep;
    struct dev *devs;
    unsigned open_conns, peak_conns, finished, retries_total;
    double t0;
    char first_error[256];
} g;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t now_ms32(void)
{
    return (uint32_t)(uint64_t)((now_s() - g.t0) * 1000.0);
}

/* ---- the deterministic image ---------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Image bytes [off, off+len): byte o is byte (o % 8) (little-endian) of
 * splitmix64(seed * 2^32 + o / 8). Random access, incompressible. */
static void gen_fill(uint64_t seed, uint32_t off, uint8_t *out, size_t len)
{
    uint64_t base = seed << 32;
    size_t i = 0;

    /* An unaligned head and tail byte by byte; whole words in between. */
    while (i < len && ((off + i) & 7u)) {
        uint64_t o = (uint64_t)off + i;
        out[i++] = (uint8_t)(splitmix64(base + (o >> 3)) >> (8 * (o & 7u)));
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w = splitmix64(base + (((uint64_t)off + i) >> 3));
        unsigned b;
        for (b = 0; b < 8; b++) {
            out[i + b] = (uint8_t)(w >> (8 * b));
        }
    }
    while (i < len) {
        uint64_t o = (uint64_t)off + i;
        out[i++] = (uint8_t)(splitmix64(base + (o >> 3)) >> (8 * (o & 7u)));
    }
}

/* Images up to this size are made once and kept: every device's bytes are
 * then checked with memcmp() instead of being made again (splitmix64 per 8
 * bytes), so that the load generator, not the server, stays the cheap end. */
#define IMAGE_IN_MEMORY_MAX (256u * 1024u * 1024u)

static void image_keep(void)
{
    if (g.size <= IMAGE_IN_MEMORY_MAX && (g.img = malloc(g.size)) != NULL) {
        gen_fill(g.seed, 0, g.img, g.size);
    }
}

/* Image bytes [off, off+len): from the kept image, or made. */
static void image_bytes(uint32_t off, uint8_t *out, size_t len)
{
    if (g.img) {
        memcpy(out, g.img + off, len);
    } else {
        gen_fill(g.seed, off, out, len);
    }
}

/* 1 when data equals the image bytes at [off, off+len). */
static int gen_equal(uint32_t off, const uint8_t *data, size_t len)
{
    uint8_t buf[4096];

    if (g.img) {
        return off <= g.size && len <= g.size - off && memcmp(g.img + off, data, len) == 0;
    }
    while (len) {
        size_t n = len < sizeof(buf) ? len : sizeof(buf);
        gen_fill(g.seed, off, buf, n);
        if (memcmp(buf, data, n) != 0) {
            return 0;
        }
        off += (uint32_t)n;
        data += n;
        len -= n;
    }
    return 1;
}

/* SHA-256 by OpenSSL's EVP: a fresh context, or NULL when out of memory. */
static EVP_MD_CTX *sha_begin(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* Writes the digest (zeros when *c is NULL or fails) and frees *c. */
static int sha_finish(EVP_MD_CTX **c, uint8_t out[TCPOTA_ID_LEN])
{
    unsigned len = 0;
    int ok = *c && EVP_DigestFinal_ex(*c, out, &len) == 1 && len == TCPOTA_ID_LEN;
    if (!ok) memset(out, 0, TCPOTA_ID_LEN);
    EVP_MD_CTX_free(*c);
    *c = NULL;
    return ok ? 0 : -1;
}

static void gen_digest(uint8_t out[TCPOTA_ID_LEN])
{
    EVP_MD_CTX *st = sha_begin();
    uint8_t buf[4096];
    uint32_t off;

    for (off = 0; off < g.size; off += sizeof(buf)) {
        size_t n = g.size - off < sizeof(buf) ? g.size - off : sizeof(buf);
        gen_fill(g.seed, off, buf, n);
        EVP_DigestUpdate(st, buf, n);
    }
    sha_finish(&st, out);
}

/* ---- the in-memory device port ---------------------------------------- */

static void dev_error(struct dev *d, const char *what)
{
    if (!g.first_error[0]) {
        snprintf(g.first_error, sizeof(g.first_error), "device %u: %s", d->idx, what);
    }
}

static int p_begin_check(struct dev *d, const struct tcpota_offer_info *img)
{
    if (img->size != g.size || memcmp(img->image_id, g.id, TCPOTA_ID_LEN) != 0) {
        dev_error(d, "the server offers an image that is not the generator's");
        return TCPOTA_ERR_IO;
    }
    return 0;
}

static int p_ota_begin(void *ctx, const struct tcpota_offer_info *img)
{
    struct dev *d = ctx;
    int rc = p_begin_check(d, img);
    if (rc == 0) {
        d->pos = 0;
        d->begun = 1;
    }
    return rc;
}

static int p_ota_resume(void *ctx, const struct tcpota_offer_info *img, uint32_t offset)
{
    struct dev *d = ctx;
    int rc = p_begin_check(d, img);
    if (rc == 0) {
        if (offset > d->pos) {
            dev_error(d, "resume past the bytes written");
            return TCPOTA_ERR_RANGE;
        }
        d->pos = offset;
        d->begun = 1;
    }
    return rc;
}

static int p_ota_write(void *ctx, const uint8_t *data, size_t len)
{
    struct dev *d = ctx;

    if (!d->begun || len > g.size - d->pos) {
        dev_error(d, "write past the image");
        return TCPOTA_ERR_RANGE;
    }
    if (!gen_equal(d->pos, data, len)) {
        dev_error(d, "a written byte differs from the image");
        return TCPOTA_ERR_IO;
    }
    d->pos += (uint32_t)len;
    if (d->pos == g.size && d->t_last == 0) d->t_last = now_s();
    return 0;
}

static int p_ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    struct dev *d = ctx;

    if (offset > d->pos || len > d->pos - offset) {
        return TCPOTA_ERR_RANGE; /* only checked bytes can be read back */
    }
    image_bytes(offset, buf, len);
    return 0;
}

static int p_ota_end(void *ctx)
{
    struct dev *d = ctx;
    return d->begun && d->pos == g.size ? 0 : TCPOTA_ERR_STATE;
}

static int p_ota_abort(void *ctx)
{
    struct dev *d = ctx;
    d->pos = 0;
    d->begun = 0;
    return 0;
}

static int p_set_boot(void *ctx)
{
    ((struct dev *)ctx)->booted = 1;
    return 0;
}

static int p_nop(void *ctx)
{
    (void)ctx;
    return 0;
}

static int p_boot_state(void *ctx, struct tcpota_boot_state *st)
{
    (void)ctx;
    memset(st, 0, sizeof(*st));
    return 0;
}

static struct kv *kv_find(struct dev *d, const char *key, int create)
{
    int i;
    for (i = 0; i < KV_SLOTS; i++) {
        if (d->kv[i].used && strcmp(d->kv[i].key, key) == 0) return &d->kv[i];
    }
    if (!create) return NULL;
    for (i = 0; i < KV_SLOTS; i++) {
        if (!d->kv[i].used) {
            snprintf(d->kv[i].key, sizeof(d->kv[i].key), "%s", key);
            d->kv[i].used = 1;
            return &d->kv[i];
        }
    }
    return NULL;
}

static int p_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap)
{
    struct kv *e = kv_find(ctx, key, 0);
    if (!e) return TCPOTA_ERR_NOENT;
    if (e->len > cap) return TCPOTA_ERR_NOSPC;
    memcpy(buf, e->val, e->len);
    return e->len;
}

static int p_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    struct kv *e;
    if (len > KV_VAL || strlen(key) > 15) return TCPOTA_ERR_NOSPC;
    if (!(e = kv_find(ctx, key, 1))) return TCPOTA_ERR_NOSPC;
    memcpy(e->val, buf, len);
    e->len = (uint8_t)len;
    return 0;
}

static int p_kv_erase(void *ctx, const char *key)
{
    struct kv *e = kv_find(ctx, key, 0);
    if (e) e->used = 0;
    return 0;
}

static int p_sha_begin(void *ctx)
{
    struct dev *d = ctx;
    EVP_MD_CTX_free(d->sha);
    d->sha = sha_begin();
    return d->sha ? 0 : TCPOTA_ERR_IO;
}

static int p_sha_update(void *ctx, const uint8_t *data, size_t len)
{
    struct dev *d = ctx;
    return d->sha && EVP_DigestUpdate(d->sha, data, len) == 1 ? 0 : TCPOTA_ERR_IO;
}

static int p_sha_finish(void *ctx, uint8_t out[TCPOTA_ID_LEN])
{
    return sha_finish(&((struct dev *)ctx)->sha, out) == 0 ? 0 : TCPOTA_ERR_IO;
}

static int dev_setup(struct dev *d)
{
    struct tcpota_dev_config cfg;

    memset(&d->port, 0, sizeof(d->port));
    d->port.ctx = d;
    d->port.slot_size = g.size;
    d->port.ota_begin = p_ota_begin;
    d->port.ota_resume = p_ota_resume;
    d->port.ota_write = p_ota_write;
    d->port.ota_read = p_ota_read;
    d->port.ota_end = p_ota_end;
    d->port.ota_abort = p_ota_abort;
    d->port.set_boot = p_set_boot;
    d->port.mark_valid = p_nop;
    d->port.mark_invalid = p_nop;
    d->port.boot_state = p_boot_state;
    d->port.kv_get = p_kv_get;
    d->port.kv_set = p_kv_set;
    d->port.kv_erase = p_kv_erase;
    d->port.sha256_begin = p_sha_begin;
    d->port.sha256_update = p_sha_update;
    d->port.sha256_finish = p_sha_finish;
    snprintf(d->id, sizeof(d->id), "lg-%05u", d->idx);
    memset(&cfg, 0, sizeof(cfg));
    cfg.port = &d->port;
    cfg.device_id = d->id;
    cfg.model = "esp32";
    cfg.version = "0.0.0";
    cfg.rx_buf = d->rx;
    cfg.rx_cap = g.rx_cap ? g.rx_cap : RX_CAP;
    cfg.tx_buf = d->tx;
    cfg.tx_cap = TX_CAP;
    cfg.timeout_ms = 600000; /* the run's own --timeout bounds it */
    cfg.ack_interval = g.ack_interval;
    return tcpota_dev_init(&d->s, &cfg);
}

/* ---- connections ------------------------------------------------------ */

static void conn_close(struct dev *d)
{
    d->held = 0;
    if (d->ssl) {
        SSL_free(d->ssl); /* no close_notify: devices just close */
        d->ssl = NULL;
    }
    if (d->fd >= 0) {
        epoll_ctl(g.ep, EPOLL_CTL_DEL, d->fd, NULL);
        close(d->fd);
        d->fd = -1;
        g.open_conns--;
    }
}

static void dev_finish(struct dev *d, int ok, const char *why)
{
    conn_close(d);
    if (d->done || d->failed) return;
    if (ok) {
        d->done = 1;
        d->t_done = now_s();
    } else {
        d->failed = 1;
        dev_error(d, why);
    }
    g.finished++;
}

static int conn_open(struct dev *d)
{
    struct epoll_event ev;
    int one = 1;
    int fd = socket(g.srv.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        dev_finish(d, 0, strerror(errno));
        return -1;
    }
    if (g.rcvbuf > 0) {
        /* A device's receive window is small (lwIP's TCP_WND: 5,744 bytes by
         * default, 64 KiB at most without window scaling); Linux's
         * autotuning would grow each of N sockets to megabytes, and on one
         * machine the devices' buffers and the server's share the kernel's
         * TCP memory. */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g.rcvbuf, sizeof(g.rcvbuf));
    }
    if (g.srv.ss_family == AF_INET && g.sources > 1) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000001u + d->idx % g.sources);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            close(fd);
            dev_finish(d, 0, "bind to a source address failed");
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&g.srv, g.srv_len) < 0 && errno != EINPROGRESS) {
        close(fd);
        dev_finish(d, 0, strerror(errno));
        return -1;
    }
    d->fd = fd;
    d->connecting = 1;
    d->handshaking = 0;
    g.open_conns++;
    if (g.open_conns > g.peak_conns) g.peak_conns = g.open_conns;
    memset(&ev, 0, sizeof(ev));
    ev.events = d->events = EPOLLOUT;
    ev.data.ptr = d;
    epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

/* Has epoll watch fd for `events`: a system call only when they change
 * (a device flushes its ACKs each turn; a device client polls, and makes no
 * call for it). */
static void want(struct dev *d, uint32_t events)
{
    struct epoll_event ev;
    if (d->events == events) {
        return;
    }
    d->events = events;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = d;
    epoll_ctl(g.ep, EPOLL_CTL_MOD, d->fd, &ev);
}

/* The connection broke before the device was done: the tcpota session
 * resumes from its last durable point on a new connection; HTTP restarts. */
static void conn_lost(struct dev *d, const char *why)
{
    conn_close(d);
    if (g.mode == M_TCPOTA) tcpota_dev_disconnect(&d->s);
    if (d->retries >= g.max_retries) {
        dev_finish(d, 0, why);
        return;
    }
    d->retries++;
    g.retries_total++;
    d->hdr_len = 0;
    d->in_body = 0;
    d->body_got = 0;
    conn_open(d);
}

/* The connection's bytes in and out, inside TLS with --tls: as recv() and
 * send() (a count, 0 when closed, -1 with errno). */
static ssize_t conn_recv(struct dev *d, void *buf, size_t cap)
{
    return d->ssl ? tlsc_recv(d->ssl, buf, cap) : recv(d->fd, buf, cap, MSG_DONTWAIT);
}

static ssize_t conn_send(struct dev *d, const void *p, size_t n)
{
    return d->ssl ? tlsc_send(d->ssl, p, n) : send(d->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Reads once more in this turn: up to 4 reads per event, and on while TLS
 * holds decrypted bytes the socket would not signal again. */
static int read_more(const struct dev *d, int reads)
{
    return reads < 4 || (d->ssl && SSL_pending(d->ssl) > 0);
}

/* Sends what the session has queued. Returns 0, or -1 when the connection broke. */
static int tcpota_flush(struct dev *d)
{
    const uint8_t *p;
    size_t n;

    while ((n = tcpota_dev_output(&d->s, &p)) > 0) {
        ssize_t w = conn_send(d, p, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want(d, EPOLLIN | EPOLLOUT);
                return 0;
            }
            return -1;
        }
        tcpota_dev_output_done(&d->s, (size_t)w);
    }
    d->held = 0;
    want(d, EPOLLIN);
    return 0;
}

static size_t out_len(struct dev *d)
{
    const uint8_t *p;

    return tcpota_dev_output(&d->s, &p);
}

/* Feeds what the socket has to the session. Its ACKs go out as a device's
 * do (ports/common/tcpota_client.h): they wait while more input is at hand
 * (this turn's last read got bytes) and leave together once a read finds
 * nothing, when the first has waited TCPOTA_CLIENT_HOLD_MS, when half the
 * tx buffer waits, or with another frame (ACCEPT). */
static void tcpota_readable(struct dev *d, uint8_t *buf, size_t cap)
{
    int reads, dry = 0;
    uint32_t now;

    for (reads = 0; read_more(d, reads); reads++) {
        ssize_t n = conn_recv(d, buf, cap);
        size_t off = 0;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            dry = 1;
            break;
        }
        if (n <= 0) {
            conn_lost(d, n == 0 ? "server closed the connection" : strerror(errno));
            return;
        }
        while (off < (size_t)n) {
            struct tcpota_dev_event ev;
            int used = tcpota_dev_input(&d->s, buf + off, (size_t)n - off, &ev);
            if (used < 0) {
                char why[96];
                (void)tcpota_flush(d);
                snprintf(why, sizeof(why), "session failed: %s", tcpota_strerror(used));
                dev_finish(d, 0, why);
                return;
            }
            off += (size_t)used;
            if (ev.type == TCPOTA_DEV_EV_UPDATED) {
                /* COMPLETE is queued: hand it to the socket, then done. */
                (void)tcpota_flush(d);
                dev_finish(d, d->booted && d->pos == g.size, "updated without a full image");
                return;
            }
            if (ev.type == TCPOTA_DEV_EV_UP_TO_DATE || ev.type == TCPOTA_DEV_EV_DECLINED) {
                dev_finish(d, 0, "server had no update for the device, or it declined");
                return;
            }
        }
        if ((out_len(d) > TX_CAP / 2 || tcpota_dev_output_urgent(&d->s)) && tcpota_flush(d) < 0) {
            conn_lost(d, "send failed");
            return;
        }
    }
    if (out_len(d) == 0) return;
    now = now_ms32();
    if (!d->held) {
        d->held = 1;
        d->held_at = now;
    }
    if ((dry || now - d->held_at >= TCPOTA_CLIENT_HOLD_MS) && tcpota_flush(d) < 0) {
        conn_lost(d, "send failed");
    }
}

static void http_send_request(struct dev *d)
{
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tcpota-bench\r\n%s\r\n",
                     g.path, g.keep_alive ? "" : "Connection: close\r\n");
    /* A fresh socket takes a few hundred bytes at once. */
    if (conn_send(d, req, (size_t)n) != n) {
        conn_lost(d, "cannot send the request");
        return;
    }
    want(d, EPOLLIN);
}

/* Parses the status line and Content-Length. Returns the header length,
 * 0 when incomplete, -1 when not a 200 with a length. */
static long http_header(struct dev *d)
{
    const char *h = (const char *)d->hdr, *end, *cl;
    d->hdr[d->hdr_len] = 0;
    end = strstr(h, "\r\n\r\n");
    if (!end) return d->hdr_len >= HDR_CAP - 1 ? -1 : 0;
    if (strncmp(h, "HTTP/1.1 200", 12) != 0 && strncmp(h, "HTTP/1.0 200", 12) != 0) return -1;
    cl = strcasestr(h, "\r\ncontent-length:");
    if (!cl || cl > end) return -1;
    d->body_len = strtoull(cl + 17, NULL, 10);
    return (long)(end - h) + 4;
}

static void http_body(struct dev *d, const uint8_t *p, size_t n)
{
    if (n > d->body_len - d->body_got || !gen_equal((uint32_t)d->body_got, p, n)) {
        dev_finish(d, 0, "a body byte differs from the image");
        return;
    }
    d->body_got += n;
    d->pos = (uint32_t)d->body_got;
    if (d->body_got == d->body_len) {
        d->t_last = now_s();
        /* As esp_ota_end() does: read the slot back and hash it. */
        uint8_t digest[TCPOTA_ID_LEN], blk[4096];
        uint32_t off;
        EVP_MD_CTX_free(d->sha);
        d->sha = sha_begin();
        for (off = 0; off < d->pos; off += sizeof(blk)) {
            size_t k = d->pos - off < sizeof(blk) ? d->pos - off : sizeof(blk);
            (void)p_ota_read(d, off, blk, k);
            if (d->sha) EVP_DigestUpdate(d->sha, blk, k);
        }
        (void)sha_finish(&d->sha, digest); /* zeros on failure: no match */
        dev_finish(d, d->body_len == g.size && memcmp(digest, g.id, TCPOTA_ID_LEN) == 0,
                   "image SHA-256 read back differs from the image's");
    }
}

static void http_readable(struct dev *d, uint8_t *buf, size_t cap)
{
    int reads;

    for (reads = 0; read_more(d, reads) && !d->done && !d->failed; reads++) {
        ssize_t n = conn_recv(d, buf, cap);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            conn_lost(d, n == 0 ? "server closed the connection early" : strerror(errno));
            return;
        }
        if (d->in_body) {
            http_body(d, buf, (size_t)n);
            continue;
        }
        {
            size_t take = (size_t)n < HDR_CAP - 1 - d->hdr_len ? (size_t)n : HDR_CAP - 1 - d->hdr_len;
            long hl;
            memcpy(d->hdr + d->hdr_len, buf, take);
            d->hdr_len += take;
            hl = http_header(d);
            if (hl < 0) {
                dev_finish(d, 0, "bad HTTP response header");
                return;
            }
            if (hl > 0) {
                size_t before = d->hdr_len - take; /* header bytes from earlier reads */
                size_t body_off = (size_t)hl - before;
                d->in_body = 1;
                if (body_off < (size_t)n) http_body(d, buf + body_off, (size_t)n - body_off);
            }
        }
    }
}

/* The connection is up (inside TLS with --tls): the device speaks first. */
static void conn_start(struct dev *d)
{
    if (g.mode == M_TCPOTA) {
        if (tcpota_dev_connect(&d->s, now_ms32()) < 0 || tcpota_flush(d) < 0) {
            conn_lost(d, "cannot send HELLO");
        }
    } else {
        http_send_request(d);
    }
}

/* --tls: one step of the handshake; the protocol starts once it is done. */
static void tls_step(struct dev *d)
{
    uint32_t events = 0;
    int rc = tlsc_handshake(d->ssl, &events);

    if (rc < 0) {
        conn_lost(d, "TLS handshake failed");
    } else if (rc == 0) {
        want(d, events);
    } else {
        d->handshaking = 0;
        conn_start(d);
    }
}

static void on_io(struct dev *d, uint32_t events, uint8_t *buf, size_t cap)
{
    if (d->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            conn_lost(d, strerror(err));
            return;
        }
        d->connecting = 0;
        if (!g.tls) {
            conn_start(d);
        } else if (!(d->ssl = tlsc_new(g.tls, d->fd, d, NULL))) {
            conn_lost(d, "cannot set up TLS");
        } else {
            d->handshaking = 1;
            tls_step(d);
        }
        return;
    }
    if (d->handshaking) {
        tls_step(d);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (g.mode == M_TCPOTA) tcpota_readable(d, buf, cap);
        else http_readable(d, buf, cap);
        return;
    }
    if ((events & EPOLLOUT) && g.mode == M_TCPOTA && tcpota_flush(d) < 0) {
        conn_lost(d, "send failed");
    }
}

/* ---- main --------------------------------------------------------------- */

int loadgen_resolve(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    struct addrinfo hints, *ai = NULL;

    if (!colon || (size_t)(colon - text) >= sizeof(host)) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* CPU seconds (user + system) this process used so far. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench-loadgen image --size BYTES [--seed S] FILE\n"
            "       bench-loadgen tcpota --server HOST:PORT --devices N --size BYTES [options]\n"
            "       bench-loadgen http --server HOST:PORT --path /FILE --devices N --size BYTES "
            "[options]\n"
            "       bench-loadgen checkin|http10 ... (short connections; see checkin.h)\n"
            "options: --seed S --sources K --first I --timeout SEC --max-retries R\n"
            "         --ack-interval BYTES --rcvbuf BYTES --rx-cap BYTES (528..4108)\n"
            "         --tls CA --keep-alive 0|1\n");
    return 2;
}

static int cmd_image(const char *file)
{
    FILE *f = fopen(file, "wb");
    uint8_t buf[4096];
    uint32_t off;

    if (!f) {
        fprintf(stderr, "loadgen: cannot create %s\n", file);
        return 1;
    }
    for (off = 0; off < g.size; off += sizeof(buf)) {
        size_t n = g.size - off < sizeof(buf) ? g.size - off : sizeof(buf);
        gen_fill(g.seed, off, buf, n);
        if (fwrite(buf, 1, n, f) != n) {
            fclose(f);
            return 1;
        }
    }
    return fclose(f) == 0 ? 0 : 1;
}

static int run(void)
{
    static struct epoll_event evs[1024];
    static uint8_t buf[64 * 1024];
    double *times, *xfer, last_tick = 0, wall;
    unsigned i, ok = 0, failed = 0;
    struct rlimit rl;
    uint8_t *mem;
    size_t per = RX_CAP + TX_CAP + (g.mode == M_HTTP ? HDR_CAP : 0);

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g.n + 16) {
        fprintf(stderr, "loadgen: %u devices need %u descriptors; the limit is %llu\n", g.n,
                g.n + 16, (unsigned long long)rl.rlim_cur);
        return 1;
    }
    image_keep();
    gen_digest(g.id);
    g.devs = calloc(g.n, sizeof(*g.devs));
    mem = calloc(g.n, per);
    times = calloc(g.n, sizeof(*times));
    xfer = calloc(g.n, sizeof(*xfer));
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g.devs || !mem || !times || !xfer || g.ep < 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    g.t0 = now_s();
    for (i = 0; i < g.n; i++) {
        struct dev *d = &g.devs[i];
        d->idx = g.first + i;
        d->fd = -1;
        d->rx = mem + (size_t)i * per;
        d->tx = d->rx + RX_CAP;
        d->hdr = d->tx + TX_CAP;
        if (g.mode == M_TCPOTA && dev_setup(d) < 0) {
            fprintf(stderr, "loadgen: device setup failed\n");
            return 1;
        }
    }
    /* All start together. */
    g.t0 = now_s();
    for (i = 0; i < g.n; i++) {
        g.devs[i].t_start = now_s();
        conn_open(&g.devs[i]);
    }
    while (g.finished < g.n) {
        int k, n = epoll_wait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 200);
        double t = now_s();
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            return 1;
        }
        for (k = 0; k < n; k++) {
            struct dev *d = evs[k].data.ptr;
            if (d->fd >= 0) on_io(d, evs[k].events, buf, sizeof(buf));
        }
        if (t - g.t0 > g.timeout_s) {
            for (i = 0; i < g.n; i++) {
                if (!g.devs[i].done && !g.devs[i].failed) dev_finish(&g.devs[i], 0, "run timed out");
            }
        }
        if (g.mode == M_TCPOTA && t - last_tick > 1.0) {
            last_tick = t;
            for (i = 0; i < g.n; i++) {
                struct dev *d = &g.devs[i];
                if (d->fd < 0 || d->connecting || d->handshaking) continue;
                if (tcpota_dev_tick(&d->s, now_ms32()) < 0) {
                    conn_lost(d, "server silent");
                } else if (tcpota_flush(d) < 0) {
                    conn_lost(d, "send failed");
                }
            }
        }
    }
    wall = 0;
    for (i = 0; i < g.n; i++) {
        struct dev *d = &g.devs[i];
        if (d->done) {
            xfer[ok] = d->t_last - d->t_start;
            times[ok++] = d->t_done - d->t_start;
            if (d->t_done - g.t0 > wall) wall = d->t_done - g.t0;
        } else {
            failed++;
        }
    }
    qsort(times, ok, sizeof(*times), cmp_double);
    qsort(xfer, ok, sizeof(*xfer), cmp_double);
    printf("loadgen mode=%s devices=%u ok=%u failed=%u retries=%u wall=%.4f p50=%.4f p99=%.4f "
           "max=%.4f xfer_p50=%.4f xfer_max=%.4f mbytes_per_s=%.1f peak_conns=%u client_cpu=%.2f\n",
           g.mode == M_TCPOTA ? "tcpota" : "http", g.n, ok, failed, g.retries_total, wall,
           ok ? times[ok / 2] : 0.0, ok ? times[(size_t)((ok - 1) * 0.99)] : 0.0,
           ok ? times[ok - 1] : 0.0, ok ? xfer[ok / 2] : 0.0, ok ? xfer[ok - 1] : 0.0, wall > 0 ? (double)ok * g.size / 1e6 / wall : 0.0,
           g.peak_conns, cpu_s());
    if (failed) fprintf(stderr, "loadgen: %u devices failed; first: %s\n", failed, g.first_error);
    for (i = 0; i < g.n; i++) {
        conn_close(&g.devs[i]);
        EVP_MD_CTX_free(g.devs[i].sha);
    }
    close(g.ep);
    free(times);
    free(xfer);
    free(mem);
    free(g.devs);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *file = NULL, *ca = NULL;
    int i, rc;

    if (argc < 2) return usage();
    if (strcmp(argv[1], "checkin") == 0 || strcmp(argv[1], "http10") == 0) {
        return checkin_main(argc, argv);
    }
    if (strcmp(argv[1], "tcpota") == 0) g.mode = M_TCPOTA;
    else if (strcmp(argv[1], "http") == 0) g.mode = M_HTTP;
    else if (strcmp(argv[1], "image") != 0) return usage();
    g.seed = 1;
    g.sources = 4;
    g.timeout_s = 600;
    g.max_retries = 5;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') {
            if (file) return usage();
            file = a;
            continue;
        }
        if (!v) return usage();
        i++;
        if (strcmp(a, "--server") == 0) server = v;
        else if (strcmp(a, "--path") == 0) g.path = v;
        else if (strcmp(a, "--keep-alive") == 0) g.keep_alive = atoi(v);
        else if (strcmp(a, "--devices") == 0) g.n = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--size") == 0) g.size = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0) g.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--sources") == 0) g.sources = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--first") == 0) g.first = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--timeout") == 0) g.timeout_s = strtod(v, NULL);
        else if (strcmp(a, "--max-retries") == 0) g.max_retries = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--ack-interval") == 0) g.ack_interval = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--rcvbuf") == 0) g.rcvbuf = atoi(v);
        else if (strcmp(a, "--rx-cap") == 0) g.rx_cap = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--tls") == 0) ca = v;
        else return usage();
    }
    if (g.size == 0 || (g.rx_cap && (g.rx_cap < RX_CAP_MIN || g.rx_cap > RX_CAP))) return usage();
    if (strcmp(argv[1], "image") == 0) return file ? cmd_image(file) : usage();
    if (!server || loadgen_resolve(server, &g.srv, &g.srv_len) < 0 || g.n == 0 ||
        g.sources == 0 || g.sources > 250 ||
        (g.mode == M_HTTP && !g.path)) {
        return usage();
    }
    if (ca && !(g.tls = tlsc_context(ca, NULL))) return 2;
    signal(SIGPIPE, SIG_IGN);
    rc = run();
    free(g.img);
    if (g.tls) SSL_CTX_free(g.tls);
    return rc;
}
