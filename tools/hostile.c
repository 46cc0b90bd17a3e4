/* hostile.c - tcpota-hostile: many bad and slow peers against a server.
 *
 * Opens the requested number of connections of each kind to a tcpota
 * server and behaves badly on them, all from one poll() loop:
 *   idle       connects and sends nothing
 *   slow       sends a valid HELLO one byte per second
 *   random     sends random bytes (a v1 frame type first, then noise)
 *   oversize   sends a frame head with the largest length (65535)
 *   truncated  sends the first half of a valid HELLO, then nothing
 *   badver     sends a valid HELLO that speaks only protocol 9
 *   noread     sends a valid HELLO, reads the OFFER, accepts it (the server
 *              then streams the whole image) and never reads again; its
 *              receive buffer is tiny
 *   pinger     as noread, but sends a PING every second: only the unread
 *              output shows that it is stuck. `--ping-ms MS --ping-burst N`
 *              send N PINGs every MS milliseconds instead (a paced flood,
 *              whose PONGs pile up behind the unread image), and announce
 *              the payload `tcpota device` does; `--ping-for S` stops
 *              sending after S seconds (the peer stays, silent, unread)
 *   tlsslow    starts a TLS handshake (a record header announcing a
 *              512-byte ClientHello) and sends its body one byte per
 *              second, so no read ever times out
 *   stayer     a well-behaved download (ACCEPT, every DATA byte read)
 *              that sends COMPLETE and then neither closes nor half-closes:
 *              only the server's reading of the COMPLETE can end it
 *   decliner   reads the OFFER, sends DECLINE and stays connected
 *   erring     accepts the offer and, at the first DATA frame, sends an
 *              ERROR (IO, "flash write failed"), as a device whose flash
 *              failed, and reads on until the server closes
 *   quitter    accepts the offer, then at once half-closes (shutdown of its
 *              sending side) and reads on: a device that gave up mid-transfer,
 *              whose end of stream alone tells the server it is gone
 *   finisher   as stayer, but half-closes after its COMPLETE, as `tcpota
 *              device` does, and waits for the server to close: reports how
 *              long the server took after the COMPLETE, at most
 *   garbler    as noread, but a second after its ACCEPT it sends a frame with
 *              a wrong CRC: the ERROR the server owes it would wait behind
 *              DATA it never reads
 *   slowacker  as stayer, but after the last DATA byte it acknowledges the
 *              image in SLOW_ACKS steps, one every SLOW_ACK_S seconds,
 *              before its COMPLETE: a device whose flash is slow, and the
 *              server's once-a-second reads are all that hears it
 * `--term PID` sends SIGTERM to PID the moment a stayer's COMPLETE is out:
 * a server stopped with that COMPLETE unread in its socket.
 * Every connection that reads waits for the server to close it (EOF or
 * reset). `--ports FILE` writes "kind local-port" per connection, so a test
 * can find each peer's close reason in the server log (a peer that never
 * reads cannot see the close itself).
 *
 * `--frames` instead connects once as a fresh device and prints where the
 * server's first frames end, up to the first DATA frame ("frame TYPE END").
 *
 * Peers stay open until the server closed every reading peer and at least
 * --min-hold seconds passed (so peers that never read stay that long), or
 * until --hold seconds passed.
 *
 * `--from ADDR` binds every peer to this local address (the server counts
 * some limits per address). The summary gives, per kind, how long the
 * server took to close the last of its peers.
 *
 * exit: 0 when every reading peer was closed by the server before --hold
 * seconds passed, 1 otherwise, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpota/codec.h"
#include "tcpota/device.h" /* TCPOTA_DECLINE_RUNNING_IT */

enum kind {
    IDLE, SLOW, RANDOM, OVERSIZE, TRUNCATED, BADVER, NOREAD, PINGER, TLSSLOW, STAYER, DECLINER,
    SLOWACKER, QUITTER, FINISHER, ERRING, GARBLER, NKINDS
};
static const char *const kind_name[NKINDS] = {"idle",    "slow",   "random", "oversize",
                                               "truncated", "badver", "noread", "pinger",
                                               "tlsslow", "stayer", "decliner", "slowacker",
                                               "quitter", "finisher", "erring", "garbler"};
/* slowacker: ACKs after the last DATA byte, and the time between them. */
#define SLOW_ACKS 8u
#define SLOW_ACK_S 1.5

struct peer {
    int fd;
    enum kind kind;
    uint8_t out[4096]; /* a burst of up to 250 PINGs */
    size_t out_len, sent;
    double next_send;
    unsigned port;
    uint8_t closed;   /* the server closed it (EOF or reset) */
    double closed_after; /* seconds from the start until then */
    double answered_at;  /* when COMPLETE or DECLINE went out (0: not yet) */
    uint8_t accepted; /* noread/pinger/garbler: ACCEPT queued, reading stops */
    uint8_t answered; /* stayer: COMPLETE queued; decliner: DECLINE queued; erring: ERROR */
    uint8_t acks_left; /* slowacker: ACKs still to send, then COMPLETE */
    uint8_t image[TCPOTA_ID_LEN];
    uint32_t size, pos; /* stayer: the offer's size, the next byte expected */
    struct tcpota_decoder dec;
    uint8_t *dbuf;
};

static double now_s(void);

static pid_t term_pid; /* --term: stopped after a stayer's COMPLETE */

/* Queues one message as the peer's next output. */
static void queue_msg(struct peer *q, const struct tcpota_msg *m)
{
    int len = tcpota_msg_encode(m, q->out, sizeof(q->out));
    q->out_len = len > 0 ? (size_t)len : 0;
    q->sent = 0;
}

/* stayer/decliner: reads the server's frames and answers as a device
 * would: DECLINE at once, or ACCEPT and, after the last DATA byte,
 * COMPLETE. Returns 0 at EOF or on an error (the peer is done), 1 while
 * the connection is open. */
static int talk(struct peer *q)
{
    uint8_t b[8192];
    ssize_t r;

    while ((r = recv(q->fd, b, sizeof(b), 0)) > 0) {
        size_t off = 0;
        while (off < (size_t)r) {
            struct tcpota_frame f;
            struct tcpota_msg m, a;
            int u = tcpota_decoder_feed(&q->dec, b + off, (size_t)r - off, &f);
            if (u < 0) return 0;
            off += (size_t)u;
            if (!f.type || q->answered || tcpota_msg_decode(&f, &m) < 0) continue;
            memset(&a, 0, sizeof(a));
            if (f.type == TCPOTA_T_OFFER) {
                memcpy(q->image, m.u.offer.image_id, TCPOTA_ID_LEN);
                q->size = m.u.offer.size;
                q->pos = m.u.offer.start;
                if (q->kind == DECLINER) {
                    a.type = TCPOTA_T_DECLINE;
                    a.u.decline.image_id = q->image;
                    a.u.decline.reason = (uint16_t)-TCPOTA_ERR_REFUSED;
                    /* As a device that runs it says it (tcpota/device.h). */
                    a.u.decline.message.ptr = (const uint8_t *)TCPOTA_DECLINE_RUNNING_IT;
                    a.u.decline.message.len = (uint16_t)strlen(TCPOTA_DECLINE_RUNNING_IT);
                    q->answered = 1;
                } else {
                    a.type = TCPOTA_T_ACCEPT;
                    a.u.accept.image_id = q->image;
                    a.u.accept.offset = q->pos;
                }
            } else if (f.type == TCPOTA_T_DATA && q->kind == ERRING) {
                static const char says[] = "flash write failed";
                a.type = TCPOTA_T_ERROR;
                a.u.error.code = (uint16_t)-TCPOTA_ERR_IO;
                a.u.error.message.ptr = (const uint8_t *)says;
                a.u.error.message.len = sizeof(says) - 1;
                q->answered = 1;
            } else if (f.type == TCPOTA_T_DATA && m.u.data.offset == q->pos) {
                q->pos += m.u.data.bytes.len;
                if (q->pos < q->size) continue;
                if (q->kind == SLOWACKER) {
                    q->acks_left = SLOW_ACKS; /* sent by the main loop */
                    q->next_send = now_s() + SLOW_ACK_S;
                    q->answered = 1;
                    continue;
                }
                a.type = TCPOTA_T_COMPLETE;
                a.u.complete.image_id = q->image;
                q->answered = 1;
            } else {
                continue;
            }
            queue_msg(q, &a);
            (void)send(q->fd, q->out, q->out_len, MSG_NOSIGNAL);
            q->sent = q->out_len;
            q->answered_at = now_s();
            if (a.type == TCPOTA_T_COMPLETE && term_pid > 0) {
                (void)kill(term_pid, SIGTERM);
            }
            if (q->kind == FINISHER && a.type == TCPOTA_T_COMPLETE) {
                (void)shutdown(q->fd, SHUT_WR);
            }
            if (q->kind == QUITTER) {
                (void)shutdown(q->fd, SHUT_WR);
                q->answered = 1;
            }
        }
    }
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* noread/pinger/garbler: reads up to the OFFER and queues its ACCEPT. */
static void read_offer(struct peer *q)
{
    uint8_t b[256];
    ssize_t r = recv(q->fd, b, sizeof(b), 0);
    size_t off = 0;

    while (r > 0 && off < (size_t)r && !q->accepted) {
        struct tcpota_frame f;
        struct tcpota_msg m, a;
        int u = tcpota_decoder_feed(&q->dec, b + off, (size_t)r - off, &f);
        if (u < 0) return;
        off += (size_t)u;
        if (f.type == TCPOTA_T_OFFER && tcpota_msg_decode(&f, &m) == 0) {
            int len;
            memset(&a, 0, sizeof(a));
            a.type = TCPOTA_T_ACCEPT;
            a.u.accept.image_id = m.u.offer.image_id;
            a.u.accept.offset = m.u.offer.start;
            len = tcpota_msg_encode(&a, q->out, sizeof(q->out));
            q->out_len = len > 0 ? (size_t)len : 0;
            q->sent = 0;
            q->accepted = 1;
        }
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The largest payload `tcpota device` announces (4096-byte DATA chunks). */
#define DEVICE_MAX_PAYLOAD 4100

static int hello(uint8_t *out, size_t cap, unsigned n, uint8_t proto, uint16_t max_payload)
{
    struct tcpota_msg m;
    char id[32];

    snprintf(id, sizeof(id), "hostile-%u", n);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_HELLO;
    m.u.hello.proto_min = m.u.hello.proto_max = proto;
    m.u.hello.device_id.ptr = (const uint8_t *)id;
    m.u.hello.device_id.len = (uint16_t)strlen(id);
    m.u.hello.model.ptr = (const uint8_t *)"esp32";
    m.u.hello.model.len = 5;
    m.u.hello.version.ptr = (const uint8_t *)"0.0.1";
    m.u.hello.version.len = 5;
    m.u.hello.max_payload = max_payload;
    return tcpota_msg_encode(&m, out, cap);
}

/* --frames: as a fresh `tcpota device` (same largest payload), prints where the server's first frames end
 * (type and cumulative byte offset) up to the first DATA frame, so a test
 * can cut a real connection at frame boundaries. Returns an exit code. */
static int print_frames(const struct sockaddr_in *sa)
{
    static uint8_t dbuf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
    struct tcpota_decoder dec;
    uint8_t out[512], b[512];
    size_t total = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), len = hello(out, sizeof(out), 0, 1, DEVICE_MAX_PAYLOAD);

    if (fd < 0 || len < 0 || connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ||
        send(fd, out, (size_t)len, MSG_NOSIGNAL) != len) {
        fprintf(stderr, "tcpota-hostile: cannot talk to the server\n");
        return 1;
    }
    tcpota_decoder_init(&dec, dbuf, sizeof(dbuf));
    for (;;) {
        ssize_t r = recv(fd, b, sizeof(b), 0);
        size_t off = 0;
        if (r <= 0) {
            fprintf(stderr, "tcpota-hostile: connection ended before a DATA frame\n");
            close(fd);
            return 1;
        }
        while (off < (size_t)r) {
            struct tcpota_frame f;
            int u = tcpota_decoder_feed(&dec, b + off, (size_t)r - off, &f);
            if (u < 0) {
                fprintf(stderr, "tcpota-hostile: bad frame from the server\n");
                close(fd);
                return 1;
            }
            off += (size_t)u;
            total += (size_t)u;
            if (f.type) {
                printf("frame %u %zu\n", (unsigned)f.type, total);
                if (f.type == TCPOTA_T_DATA) {
                    close(fd);
                    return 0;
                }
            }
        }
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tcpota-hostile --connect HOST:PORT [--idle N] [--slow N] [--random N]\n"
            "         [--oversize N] [--truncated N] [--badver N] [--noread N] [--pinger N]\n"
            "         [--tlsslow N] [--stayer N] [--decliner N] [--slowacker N] [--quitter N]\n"
            "         [--finisher N] [--erring N] [--garbler N]\n"
            "         [--hold SECONDS] [--min-hold SECONDS] [--ports FILE]\n"
            "         [--ping-ms MS --ping-burst N [--ping-for S]] [--seed S] [--from ADDR]\n"
            "         [--term PID]\n"
            "       tcpota-hostile --connect HOST:PORT --frames\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned count[NKINDS] = {0}, closed[NKINDS] = {0}, total = 0, seed = 1;
    double hold = 30, min_hold = 0, t0, deadline, ping_every = 1.0, ping_for = -1;
    unsigned ping_burst = 1;
    const char *target = NULL, *ports = NULL, *from = NULL;
    double last_close[NKINDS] = {0}, finish_wait = 0;
    int frames = 0;
    struct sockaddr_in sa;
    struct peer *p;
    struct pollfd *pf;
    struct rlimit rl;
    unsigned n = 0;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        int k;
        for (k = 0; k < NKINDS; k++) {
            char opt[32];
            snprintf(opt, sizeof(opt), "--%s", kind_name[k]);
            if (!strcmp(argv[i], opt) && i + 1 < argc) {
                count[k] = (unsigned)strtoul(argv[++i], NULL, 10);
                break;
            }
        }
        if (k < NKINDS) continue;
        if (!strcmp(argv[i], "--connect") && i + 1 < argc) target = argv[++i];
        else if (!strcmp(argv[i], "--hold") && i + 1 < argc) hold = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--min-hold") && i + 1 < argc) min_hold = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--ports") && i + 1 < argc) ports = argv[++i];
        else if (!strcmp(argv[i], "--ping-ms") && i + 1 < argc) ping_every = strtod(argv[++i], NULL) / 1000;
        else if (!strcmp(argv[i], "--ping-burst") && i + 1 < argc) ping_burst = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--ping-for") && i + 1 < argc) ping_for = strtod(argv[++i], NULL);
        else if (!strcmp(argv[i], "--frames")) frames = 1;
        else if (!strcmp(argv[i], "--term") && i + 1 < argc) term_pid = (pid_t)strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = (unsigned)strtoul(argv[++i], NULL, 10);
        else usage();
    }
    if (!target || !strchr(target, ':')) usage();
    if (!(ping_every > 0) || ping_burst < 1 || ping_burst > 250) usage(); /* 250 PINGs fit in peer.out */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(strchr(target, ':') + 1));
    {
        char host[64];
        size_t hl = (size_t)(strchr(target, ':') - target);
        if (hl >= sizeof(host)) usage();
        memcpy(host, target, hl);
        host[hl] = 0;
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) usage();
    }
    if (frames) {
        return print_frames(&sa);
    }
    for (int k = 0; k < NKINDS; k++) total += count[k];
    /* One descriptor per peer: raise the soft limit to the hard one. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    p = calloc(total ? total : 1, sizeof(*p));
    pf = calloc(total ? total : 1, sizeof(*pf));
    if (!p || !pf) {
        fprintf(stderr, "tcpota-hostile: out of memory\n");
        return 1;
    }
    srand(seed);
    for (int k = 0; k < NKINDS; k++) {
        for (unsigned j = 0; j < count[k]; j++, n++) {
            struct peer *q = &p[n];
            struct sockaddr_in me;
            socklen_t ml = sizeof(me);
            int len;

            q->kind = (enum kind)k;
            q->fd = socket(AF_INET, SOCK_STREAM, 0);
            if (q->fd < 0) {
                fprintf(stderr, "tcpota-hostile: socket: %s\n", strerror(errno));
                return 1;
            }
            if (k == NOREAD || k == PINGER || k == GARBLER) {
                int small = 4096;
                setsockopt(q->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
            }
            if (from) {
                struct sockaddr_in b;
                memset(&b, 0, sizeof(b));
                b.sin_family = AF_INET;
                if (inet_pton(AF_INET, from, &b.sin_addr) != 1 ||
                    bind(q->fd, (struct sockaddr *)&b, sizeof(b)) < 0) {
                    fprintf(stderr, "tcpota-hostile: cannot bind to %s: %s\n", from, strerror(errno));
                    return 1;
                }
            }
            if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "tcpota-hostile: connect: %s\n", strerror(errno));
                return 1;
            }
            getsockname(q->fd, (struct sockaddr *)&me, &ml);
            q->port = ntohs(me.sin_port);
            fcntl(q->fd, F_SETFL, fcntl(q->fd, F_GETFL) | O_NONBLOCK);
            switch (k) {
            case SLOW:
            case NOREAD:
            case PINGER:
            case GARBLER:
            case TRUNCATED:
            case STAYER:
            case DECLINER:
            case SLOWACKER:
            case QUITTER:
            case FINISHER:
            case ERRING:
                /* A paced flood speaks as `tcpota device` does, so that
                 * the server streams the image to it as one run. */
                len = hello(q->out, sizeof(q->out), n, 1,
                            k == PINGER && ping_every < 1 ? DEVICE_MAX_PAYLOAD : 0);
                if (len < 0) return 1;
                q->out_len = k == TRUNCATED ? (size_t)len / 2 : (size_t)len;
                if (k != SLOW && k != TRUNCATED) {
                    q->dbuf = malloc(TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD);
                    if (!q->dbuf ||
                        tcpota_decoder_init(&q->dec, q->dbuf, TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD) < 0) {
                        return 1;
                    }
                }
                break;
            case BADVER:
                len = hello(q->out, sizeof(q->out), n, 9, 0);
                if (len < 0) return 1;
                q->out_len = (size_t)len;
                break;
            case RANDOM:
                q->out[0] = (uint8_t)(1 + rand() % 12);
                for (size_t b = 1; b < 256; b++) q->out[b] = (uint8_t)rand();
                q->out_len = 256;
                break;
            case OVERSIZE:
                memcpy(q->out, "\x01\x00\xff\xff", 4);
                q->out_len = 4;
                break;
            case TLSSLOW:
                /* Handshake record, TLS 1.0 header, 512 bytes: ClientHello... */
                memcpy(q->out, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
                q->out_len = 11 + 501;
                break;
            default:
                break;
            }
            if (k != SLOW && k != TLSSLOW && q->out_len) {
                /* Sent now, not from the loop below: the server's
                 * deadline for it runs from this connect, and connecting
                 * the rest (a thousand peers and more) takes seconds on a
                 * loaded machine. The socket is new: it takes the lot. */
                ssize_t w = send(q->fd, q->out, q->out_len, MSG_NOSIGNAL);
                if (w > 0) q->sent = (size_t)w;
            }
        }
    }
    if (ports) {
        FILE *f = fopen(ports, "w");
        if (!f) {
            fprintf(stderr, "tcpota-hostile: cannot write %s\n", ports);
            return 1;
        }
        for (unsigned i = 0; i < n; i++) fprintf(f, "%s %u\n", kind_name[p[i].kind], p[i].port);
        fclose(f);
    }
    fprintf(stderr, "tcpota-hostile: %u connections open\n", n);
    t0 = now_s();
    deadline = t0 + hold;
    for (;;) {
        double t = now_s();
        unsigned open_readers = 0;
        for (unsigned i = 0; i < n; i++) {
            struct peer *q = &p[i];
            pf[i].fd = -1;
            pf[i].events = 0;
            if (q->closed) continue;
            if (q->sent < q->out_len && t >= q->next_send) {
                int slow = q->kind == SLOW || q->kind == TLSSLOW;
                size_t want = slow ? 1 : q->out_len - q->sent;
                ssize_t w = send(q->fd, q->out + q->sent, want, MSG_NOSIGNAL);
                if (w > 0) q->sent += (size_t)w;
                if (slow) q->next_send = t + 1.0;
            }
            if ((q->kind == NOREAD || q->kind == PINGER || q->kind == GARBLER) && !q->accepted) {
                pf[i].fd = q->fd; /* reading up to the OFFER */
                pf[i].events = POLLIN;
                continue;
            }
            if (q->kind == GARBLER && !q->answered && q->sent == q->out_len) {
                struct tcpota_msg m;
                if (!q->next_send) {
                    q->next_send = t + 1.0; /* the server's output piles up meanwhile */
                } else if (t >= q->next_send) {
                    memset(&m, 0, sizeof(m));
                    m.type = TCPOTA_T_PING;
                    queue_msg(q, &m);
                    if (q->out_len) q->out[q->out_len - 1] ^= 0xff; /* the CRC's last byte */
                    q->answered = 1;
                }
                continue;
            }
            if (q->kind == NOREAD || q->kind == PINGER || q->kind == GARBLER) {
                /* Keep talking so that only the unread output can stall it. */
                if (q->kind == PINGER && q->sent == q->out_len && t >= q->next_send &&
                    (ping_for < 0 || t - t0 < ping_for)) {
                    struct tcpota_msg m;
                    q->out_len = 0;
                    q->sent = 0;
                    for (unsigned b = 0; b < ping_burst; b++) {
                        int len;
                        memset(&m, 0, sizeof(m));
                        m.type = TCPOTA_T_PING;
                        m.u.ping.token = i;
                        len = tcpota_msg_encode(&m, q->out + q->out_len, sizeof(q->out) - q->out_len);
                        if (len <= 0) break;
                        q->out_len += (size_t)len;
                    }
                    q->next_send = t + ping_every;
                }
                continue;
            }
            if (q->kind == SLOWACKER && q->acks_left && q->sent == q->out_len && t >= q->next_send) {
                struct tcpota_msg m;
                memset(&m, 0, sizeof(m));
                if (--q->acks_left) {
                    m.type = TCPOTA_T_ACK;
                    m.u.ack.offset = (uint32_t)((uint64_t)q->size * (SLOW_ACKS - q->acks_left) / SLOW_ACKS);
                } else {
                    m.type = TCPOTA_T_COMPLETE;
                    m.u.complete.image_id = q->image;
                }
                queue_msg(q, &m);
                q->next_send = t + SLOW_ACK_S;
            }
            open_readers++;
            pf[i].fd = q->fd;
            pf[i].events = POLLIN;
        }
        if ((open_readers == 0 && t >= t0 + min_hold) || t >= deadline) break;
        if (poll(pf, n, ping_every < 0.1 ? (int)(ping_every * 1000) : 100) < 0 && errno != EINTR) break;
        for (unsigned i = 0; i < n; i++) {
            uint8_t buf[4096];
            ssize_t r;
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (p[i].kind == NOREAD || p[i].kind == PINGER || p[i].kind == GARBLER) {
                read_offer(&p[i]);
                continue;
            }
            if (p[i].kind == STAYER || p[i].kind == DECLINER || p[i].kind == SLOWACKER ||
                p[i].kind == QUITTER || p[i].kind == FINISHER || p[i].kind == ERRING) {
                r = talk(&p[i]) ? -1 : 0;
                errno = EAGAIN;
            } else {
                while ((r = recv(p[i].fd, buf, sizeof(buf), 0)) > 0) {
                }
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                p[i].closed = 1;
                p[i].closed_after = now_s() - t0;
                if (p[i].closed_after > last_close[p[i].kind]) last_close[p[i].kind] = p[i].closed_after;
                if (p[i].kind == FINISHER && p[i].answered_at > 0 && now_s() - p[i].answered_at > finish_wait) {
                    finish_wait = now_s() - p[i].answered_at;
                }
                closed[p[i].kind]++;
                close(p[i].fd);
            }
        }
    }
    for (int k = 0; k < NKINDS; k++) {
        if (!count[k]) continue;
        if (k == NOREAD || k == PINGER || k == GARBLER) {
            printf("tcpota-hostile: %-9s %5u peers (never read; see the server log)\n", kind_name[k], count[k]);
            continue;
        }
        printf("tcpota-hostile: %-9s %5u peers, %5u closed by the server, the last after %.1f s\n",
               kind_name[k], count[k], closed[k], last_close[k]);
        if (k == FINISHER) {
            printf("tcpota-hostile: finisher  closed at most %.3f s after its COMPLETE\n", finish_wait);
        }
        if (closed[k] != count[k]) rc = 1;
    }
    printf("tcpota-hostile: %.1f s\n", now_s() - t0);
    for (unsigned i = 0; i < n; i++) {
        if (!p[i].closed) close(p[i].fd);
        free(p[i].dbuf);
    }
    free(p);
    free(pf);
    return rc;
}
