/* auth_probe.c - a test peer for device authentication: it speaks just
 * enough protocol v1 to answer (or mis-answer) the server's CHALLENGE and
 * reports what the server did.
 *
 *   tcpota-auth-probe --server HOST:PORT --id ID [--secret FILE] [--replay] [--from ADDR]
 *                     [--stall SECONDS]
 *
 * With --stall it never answers the CHALLENGE but sends a PING every
 * second, and prints "closed after N s" when the server hangs up within
 * SECONDS, else "still open".
 *
 * Prints "offer", "no-update" or "error <code>" for the last connection
 * (and on stderr the message and retry time of an ERROR) and exits 0;
 * exits 2 on a usage or I/O error.
 *
 * With --pings N it sends N PINGs in the same write as its AUTH frame,
 * before it (their PONGs come before the answer and are skipped).
 *
 * With --tls it speaks inside TLS (without checking the certificate) and
 * binds its answer to the TLS session (codec.h, TCPOTA_TLS_BINDING_LABEL);
 * --unbound answers as over plain TCP instead, which the server must refuse. With --replay it first
 * authenticates properly, then connects again and sends the AUTH frame of
 * the first connection (answering an old nonce). */
#include "tcpota/codec.h"
#include "tool_dial.h"

#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static uint8_t rxbuf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t in[4096];
static size_t have, off;
static const char *from; /* source address: failures are counted per address */
static int stall;         /* --stall: seconds to keep the CHALLENGE unanswered */
static int pings;         /* --pings: PINGs sent with the AUTH frame */
static int use_tls, unbound; /* --tls, --unbound */
static SSL_CTX *tls_ctx;
static SSL *ssl;             /* the connection's TLS, with --tls */

static ssize_t io_send(int fd, const void *p, size_t n)
{
    if (ssl) return SSL_write(ssl, p, (int)n);
    return send(fd, p, n, MSG_NOSIGNAL);
}

static ssize_t io_recv(int fd, void *p, size_t n)
{
    if (ssl) {
        int r = SSL_read(ssl, p, (int)n);
        if (r <= 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ) {
            errno = EAGAIN;
            return -1;
        }
        return r <= 0 ? (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1) : r;
    }
    return recv(fd, p, n, 0);
}

static void io_close(int fd)
{
    if (ssl) {
        SSL_free(ssl);
        ssl = NULL;
    }
    close(fd);
}

/* Starts TLS on fd (with --tls). */
static void tls_start(int fd)
{
    if (!use_tls) return;
    if (!tls_ctx) tls_ctx = SSL_CTX_new(TLS_client_method());
    ssl = tls_ctx ? SSL_new(tls_ctx) : NULL;
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        fprintf(stderr, "auth-probe: TLS handshake failed\n");
        exit(2);
    }
}

static int dial(const char *host, int port)
{
    have = off = 0; /* a new connection: nothing buffered */
    return tool_dial("auth-probe", host, port, from, 5);
}

static void send_msg(int fd, const struct tcpota_msg *m)
{
    uint8_t b[512];
    int n = tcpota_msg_encode(m, b, sizeof(b));
    if (n < 0 || io_send(fd, b, (size_t)n) != n) {
        fprintf(stderr, "auth-probe: send failed\n");
        exit(2);
    }
}

/* Reads frames until one that is not WELCOME; returns it in *m (its
 * pointers stay valid until the next call). Returns -1 on EOF/timeout. */
static int next_msg(int fd, struct tcpota_decoder *d, struct tcpota_msg *m)
{
    for (;;) {
        struct tcpota_frame f;
        while (off < have) {
            int used = tcpota_decoder_feed(d, in + off, have - off, &f);
            if (used < 0) return -1;
            off += (size_t)used;
            if (f.type) {
                if (tcpota_msg_decode(&f, m) < 0) return -1;
                if (m->type != TCPOTA_T_WELCOME && m->type != TCPOTA_T_PONG) return 0;
            }
        }
        ssize_t n = io_recv(fd, in, sizeof(in));
        if (n <= 0) return -1;
        have = (size_t)n;
        off = 0;
    }
}

/* One connection: HELLO with the AUTH bit, then answers the CHALLENGE with
 * `forced` if given, else with the HMAC under `secret`. Saves the AUTH mac
 * it sent in `sent`. Prints and returns what the server answered. */
static void session(const char *host, int port, const char *id, const uint8_t *secret,
                    size_t slen, const uint8_t *forced, uint8_t sent[32])
{
    struct tcpota_decoder d;
    struct tcpota_msg m;
    uint8_t msg[TCPOTA_AUTH_MSG_MAX];
    int fd = dial(host, port), n;
    uint8_t binding[TCPOTA_TLS_BINDING_LEN], *bind = NULL;

    tls_start(fd);
    if (ssl && !unbound) {
        if (SSL_export_keying_material(ssl, binding, sizeof(binding), TCPOTA_TLS_BINDING_LABEL,
                                       strlen(TCPOTA_TLS_BINDING_LABEL), NULL, 0, 0) != 1) {
            fprintf(stderr, "auth-probe: no TLS exporter\n");
            exit(2);
        }
        bind = binding;
    }
    tcpota_decoder_init(&d, rxbuf, sizeof(rxbuf));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_HELLO;
    m.u.hello.proto_min = m.u.hello.proto_max = 1;
    m.u.hello.features = TCPOTA_F_AUTH;
    m.u.hello.device_id.ptr = (const uint8_t *)id;
    m.u.hello.device_id.len = (uint16_t)strlen(id);
    /* A device the offer policy would serve: the test images are signed
     * for esp32, and 0.0.0 is below any of their versions. */
    m.u.hello.model.ptr = (const uint8_t *)"esp32";
    m.u.hello.model.len = 5;
    m.u.hello.version.ptr = (const uint8_t *)"0.0.0";
    m.u.hello.version.len = 5;
    send_msg(fd, &m);
    if (next_msg(fd, &d, &m) < 0 || m.type != TCPOTA_T_CHALLENGE) {
        if (m.type == TCPOTA_T_ERROR) {
            printf("error %u\n", m.u.error.code);
        } else {
            printf("no-challenge\n");
        }
        io_close(fd);
        return;
    }
    if (stall) {
        struct timeval one = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &one, sizeof(one));
        for (int t = 1; t <= stall; t++) {
            uint8_t b[256];
            memset(&m, 0, sizeof(m));
            m.type = TCPOTA_T_PING;
            m.u.ping.token = (uint32_t)t;
            {
                uint8_t f[64];
                int k = tcpota_msg_encode(&m, f, sizeof(f));
                if (k < 0 || io_send(fd, f, (size_t)k) != k) {
                    printf("closed after %d s\n", t);
                    io_close(fd);
                    return;
                }
            }
            /* Drain PONGs; a 0-byte read is the server hanging up. */
            for (;;) {
                ssize_t r = io_recv(fd, b, sizeof(b));
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                    printf("closed after %d s\n", t);
                    io_close(fd);
                    return;
                }
                if (r < 0) break;
            }
        }
        printf("still open\n");
        io_close(fd);
        return;
    }
    n = tcpota_auth_message(m.u.challenge.nonce, bind, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    if (n < 0) exit(2);
    if (forced) {
        memcpy(sent, forced, 32);
    } else {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, secret, slen);
        crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
        crypto_auth_hmacsha256_final(&st, sent);
    }
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = sent;
    if (pings) {
        /* One write: the PINGs, then the AUTH frame. */
        static uint8_t burst[16384];
        struct tcpota_msg p;
        size_t len = 0;
        int k;
        memset(&p, 0, sizeof(p));
        p.type = TCPOTA_T_PING;
        for (int i = 0; i < pings; i++) {
            p.u.ping.token = (uint32_t)i;
            if ((k = tcpota_msg_encode(&p, burst + len, sizeof(burst) - len)) < 0) exit(2);
            len += (size_t)k;
        }
        if ((k = tcpota_msg_encode(&m, burst + len, sizeof(burst) - len)) < 0) exit(2);
        len += (size_t)k;
        if (io_send(fd, burst, len) != (ssize_t)len) {
            fprintf(stderr, "auth-probe: send failed\n");
            exit(2);
        }
    } else {
        send_msg(fd, &m);
    }
    if (next_msg(fd, &d, &m) < 0) {
        printf("closed\n");
    } else if (m.type == TCPOTA_T_OFFER) {
        printf("offer\n");
    } else if (m.type == TCPOTA_T_NO_UPDATE) {
        printf("no-update\n");
    } else if (m.type == TCPOTA_T_ERROR) {
        printf("error %u\n", m.u.error.code);
        fprintf(stderr, "auth-probe: server says: %.*s (retry after %u s)\n",
                (int)m.u.error.message.len,
                m.u.error.message.ptr ? (const char *)m.u.error.message.ptr : "",
                m.u.error.retry_after_s);
    } else {
        printf("type %u\n", m.type);
    }
    io_close(fd);
}

int main(int argc, char **argv)
{
    const char *server = NULL, *id = NULL, *secret_file = NULL;
    uint8_t secret[64] = {0}, mac[32], old[32];
    size_t slen = 32;
    int replay = 0, port;
    char host[64];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc) server = argv[++i];
        else if (!strcmp(argv[i], "--id") && i + 1 < argc) id = argv[++i];
        else if (!strcmp(argv[i], "--secret") && i + 1 < argc) secret_file = argv[++i];
        else if (!strcmp(argv[i], "--replay")) replay = 1;
        else if (!strcmp(argv[i], "--tls")) use_tls = 1;
        else if (!strcmp(argv[i], "--unbound")) unbound = 1;
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(argv[i], "--stall") && i + 1 < argc) stall = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pings") && i + 1 < argc) pings = atoi(argv[++i]);
        else { fprintf(stderr, "auth-probe: bad argument %s\n", argv[i]); return 2; }
    }
    if (!server || !id || sscanf(server, "%63[^:]:%d", host, &port) != 2 || sodium_init() < 0) {
        fprintf(stderr, "usage: tcpota-auth-probe --server HOST:PORT --id ID [--secret FILE] [--replay]\n"
                        "       [--from ADDR] [--stall S] [--pings N] [--tls [--unbound]]\n");
        return 2;
    }
    if (secret_file) {
        char line[256], *hex;
        FILE *f = fopen(secret_file, "r");
        if (!f || !fgets(line, sizeof(line), f) || !(hex = strrchr(line, ' ')) ||
            sodium_hex2bin(secret, sizeof(secret), hex + 1, strcspn(hex + 1, "\r\n"), NULL, &slen, NULL)) {
            fprintf(stderr, "auth-probe: cannot read %s\n", secret_file);
            return 2;
        }
        fclose(f);
    } else {
        randombytes_buf(secret, 32); /* a wrong secret */
    }
    session(host, port, id, secret, slen, NULL, mac);
    if (replay) {
        memcpy(old, mac, 32);
        session(host, port, id, secret, slen, old, mac);
    }
    return 0;
}
