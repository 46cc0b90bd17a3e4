/* rogue_server.c - tcpota-rogue: a broken or malicious tcpota server, to
 * show that a device's flash work stays bounded whatever a server does
 * (tests/e2e/test_rogue.sh).
 *
 * It serves one device connection at a time, speaking protocol v1 with the
 * core's codec: HELLO is answered with WELCOME and an OFFER of IMAGE (its
 * SHA-256 as id, --version, the --manifest file if given), and after the
 * device's ACCEPT at offset O it streams DATA from O, then:
 *   --mode replay  sends the whole image with its last byte changed: the
 *                  offer is valid (and signed, with --manifest) but the
 *                  bytes are not that image;
 *   --mode cut     stops 3,000 bytes past a checkpoint: at --ack + 3000 on
 *                  a fresh start, at O + 3000 on a resume; the device
 *                  keeps resuming at the same point (and erasing the same
 *                  sector) without ever writing a whole sector more (a
 *                  cut keeps the last whole sector written: a cut 5,000
 *                  bytes past let it move on by one each time).
 * Then it half-closes and drains, so the device reads every byte sent.
 * Two more modes keep the line busy without progress, until the device
 * closes it:
 *   --mode pings   answers HELLO with WELCOME alone, then a PING every
 *                  HOLD_MS: never a decision;
 *   --mode stale   after the ACCEPT, 16 bytes of DATA every HOLD_MS at an
 *                  offset past the device's: never a byte it can write.
 *
 * One line per event on stderr: "listening on HOST:PORT", "accept at O",
 * "decline reason R: TEXT", "complete status S", "cut at X". It runs until
 * killed.
 *
 * usage: tcpota-rogue --listen HOST:PORT --mode replay|cut|pings|stale [--version V]
 *                     [--manifest FILE] [--ack BYTES] IMAGE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "tcpota/codec.h"
#include "tcpota/crc32c.h"

#define CHUNK 4096u
#define CUT_PAST 3000u /* less than a sector (TCPOTA_SECTOR_SIZE) */
#define DRAIN_MS 2000
#define READ_MS 10000
#define HOLD_MS 500 /* pings, stale: how often a frame that is no progress goes */

static uint8_t *g_img, *g_sent; /* the image, and the bytes streamed */
static uint32_t g_size, g_ack = 16384;
static uint8_t g_id[TCPOTA_ID_LEN];
static const char *g_version = "9.9.9";
static uint8_t g_manifest[4096];
static size_t g_manifest_len;
static int g_cut, g_pings, g_stale;

static uint8_t *load(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
        fprintf(stderr, "tcpota-rogue: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "tcpota-rogue: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_msg(int fd, const struct tcpota_msg *m)
{
    uint8_t buf[8192];
    int n = tcpota_msg_encode(m, buf, sizeof(buf));

    return n < 0 ? -1 : send_all(fd, buf, (size_t)n);
}

/* Reads frames until one of `want` (or any type with want 0) arrives.
 * Returns its type (decoded into *m), or 0 on close or timeout. */
static int read_msg(int fd, struct tcpota_decoder *dec, uint8_t *in, size_t *have, size_t *off,
                    struct tcpota_msg *m)
{
    for (;;) {
        while (*off < *have) {
            struct tcpota_frame f;
            int used = tcpota_decoder_feed(dec, in + *off, *have - *off, &f);
            if (used < 0) return 0;
            *off += (size_t)used;
            if (f.type && tcpota_msg_decode(&f, m) == 0) return m->type;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, READ_MS) <= 0) return 0;
        ssize_t k = recv(fd, in, 4096, 0);
        if (k <= 0) return 0;
        *have = (size_t)k;
        *off = 0;
    }
}

static void stream(int fd, uint32_t from, uint32_t to)
{
    static uint8_t frame[CHUNK + 12];

    for (uint32_t off = from; off < to;) {
        uint16_t len = (uint16_t)(to - off < CHUNK ? to - off : CHUNK);
        tcpota_data_head(frame, off, len);
        memcpy(frame + 8, g_sent + off, len);
        tcpota_put_u32(frame + 8 + len, tcpota_crc32c(frame, 8u + len));
        if (send_all(fd, frame, 12u + len) < 0) return;
        off += len;
    }
}

/* Half-closes and reads until the device closes, logging its last words. */
static void drain(int fd, struct tcpota_decoder *dec, uint8_t *in, size_t *have, size_t *off)
{
    struct tcpota_msg m;
    int t;

    shutdown(fd, SHUT_WR);
    while ((t = read_msg(fd, dec, in, have, off, &m)) != 0) {
        if (t == TCPOTA_T_COMPLETE) {
            fprintf(stderr, "complete status %u\n", (unsigned)m.u.complete.status);
        }
    }
}

/* Sends m every HOLD_MS (a PING's token counting up) until the device
 * closes the connection or a send fails. */
static void hold(int fd, struct tcpota_msg *m)
{
    uint8_t junk[4096];

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, HOLD_MS) > 0 && recv(fd, junk, sizeof(junk), 0) <= 0) return;
        if (m->type == TCPOTA_T_PING) m->u.ping.token++;
        if (send_msg(fd, m) < 0) return;
    }
}

static void serve(int fd)
{
    static uint8_t rx[8192], in[4096];
    struct tcpota_decoder dec;
    struct tcpota_msg m, r;
    size_t have = 0, off = 0;
    uint32_t from, to;

    tcpota_decoder_init(&dec, rx, sizeof(rx));
    if (read_msg(fd, &dec, in, &have, &off, &m) != TCPOTA_T_HELLO) return;
    memset(&r, 0, sizeof(r));
    r.type = TCPOTA_T_WELCOME;
    r.u.welcome.proto = TCPOTA_PROTO_VERSION;
    if (send_msg(fd, &r) < 0) return;
    if (g_pings) {
        memset(&r, 0, sizeof(r));
        r.type = TCPOTA_T_PING;
        fprintf(stderr, "holding with pings\n");
        hold(fd, &r);
        return;
    }
    memset(&r, 0, sizeof(r));
    r.type = TCPOTA_T_OFFER;
    r.u.offer.image_id = g_id;
    r.u.offer.size = g_size;
    r.u.offer.version.ptr = (const uint8_t *)g_version;
    r.u.offer.version.len = (uint16_t)strlen(g_version);
    if (g_manifest_len) {
        r.u.offer.manifest.ptr = g_manifest;
        r.u.offer.manifest.len = (uint16_t)g_manifest_len;
    }
    if (send_msg(fd, &r) < 0) return;
    switch (read_msg(fd, &dec, in, &have, &off, &m)) {
    case TCPOTA_T_ACCEPT:
        break;
    case TCPOTA_T_DECLINE:
        fprintf(stderr, "decline reason %u: %.*s\n", (unsigned)m.u.decline.reason,
                (int)m.u.decline.message.len, (const char *)m.u.decline.message.ptr);
        return;
    default:
        return;
    }
    from = m.u.accept.offset;
    fprintf(stderr, "accept at %lu\n", (unsigned long)from);
    if (g_stale) {
        memset(&r, 0, sizeof(r));
        r.type = TCPOTA_T_DATA;
        r.u.data.offset = from + CHUNK < g_size - 16 ? from + CHUNK : 0;
        r.u.data.bytes.ptr = g_sent + r.u.data.offset;
        r.u.data.bytes.len = 16;
        fprintf(stderr, "holding with stale data at %lu\n", (unsigned long)r.u.data.offset);
        hold(fd, &r);
        return;
    }
    to = g_size;
    if (g_cut) {
        to = (from ? from : g_ack) + CUT_PAST;
        if (to > g_size) to = g_size;
        fprintf(stderr, "cut at %lu\n", (unsigned long)to);
    }
    stream(fd, from, to);
    drain(fd, &dec, in, &have, &off);
}

static int listen_on(const char *spec)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd, one = 1;

    if (!colon || (size_t)(colon - spec) >= sizeof(host)) return -1;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        return -1;
    }
    fprintf(stderr, "listening on %s:%u\n", host, (unsigned)ntohs(a.sin_port));
    return fd;
}

int main(int argc, char **argv)
{
    const char *listen_spec = NULL, *mode = NULL, *manifest = NULL, *image = NULL;
    size_t len;
    int lfd;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc) listen_spec = argv[++i];
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--version") && i + 1 < argc) g_version = argv[++i];
        else if (!strcmp(argv[i], "--manifest") && i + 1 < argc) manifest = argv[++i];
        else if (!strcmp(argv[i], "--ack") && i + 1 < argc) g_ack = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (argv[i][0] != '-' && !image) image = argv[i];
        else image = NULL, i = argc;
    }
    if (!listen_spec || !mode || !image ||
        (strcmp(mode, "replay") && strcmp(mode, "cut") && strcmp(mode, "pings") &&
         strcmp(mode, "stale"))) {
        fprintf(stderr, "usage: tcpota-rogue --listen HOST:PORT --mode replay|cut|pings|stale"
                        " [--version V]\n"
                        "                    [--manifest FILE] [--ack BYTES] IMAGE\n");
        return 2;
    }
    g_cut = !strcmp(mode, "cut");
    g_pings = !strcmp(mode, "pings");
    g_stale = !strcmp(mode, "stale");
    g_img = load(image, &len);
    g_size = (uint32_t)len;
    crypto_hash_sha256(g_id, g_img, len);
    g_sent = malloc(len + 1);
    if (!g_sent || len == 0) return 2;
    memcpy(g_sent, g_img, len);
    if (!g_cut) g_sent[len - 1] ^= 0x5a; /* other bytes under a valid offer */
    if (manifest) {
        uint8_t *mf = load(manifest, &g_manifest_len);
        if (g_manifest_len > sizeof(g_manifest)) return 2;
        memcpy(g_manifest, mf, g_manifest_len);
        free(mf);
    }
    signal(SIGPIPE, SIG_IGN);
    if ((lfd = listen_on(listen_spec)) < 0) {
        fprintf(stderr, "tcpota-rogue: cannot listen on %s: %s\n", listen_spec, strerror(errno));
        return 1;
    }
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        serve(fd);
        close(fd);
    }
}
