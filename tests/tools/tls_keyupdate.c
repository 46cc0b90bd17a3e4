/* tls_keyupdate.c - a TLS 1.3 device that asks the server for a key update
 * while the server's socket is full (tests/e2e/test_tls_ends.sh).
 *
 *   tcpota-tls-keyupdate --server HOST:PORT --image FILE [--hold MS]
 *
 * It sends HELLO (model esp32, version 0.0.0), reads WELCOME and the OFFER
 * and accepts it (the server streams the image at once), and reads nothing for MS
 * milliseconds (default 1000): the server's socket fills. It then sends a
 * KeyUpdate that asks the server to update its keys too, with a PING
 * behind it, waits MS milliseconds more (the server reads both and must
 * answer the KeyUpdate first, through a full socket), and reads the
 * stream: every DATA frame in order, each checked against FILE, until the
 * whole image. The server's answers are checked as they come: its
 * KeyUpdate (OpenSSL's message callback sees it) and the PING's PONG. Then
 * it acknowledges it all, reports COMPLETE and waits for the server's end of stream.
 *
 * Prints "ok: N bytes, the server's key update, PONG" and exits 0, or
 * prints what went wrong and exits 1; 2 on a usage or set-up error. */
#include "tcpota/codec.h"
#include "tool_dial.h"

#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PING_TOKEN 0x6b657975u /* "keyu" */
#define READ_TIMEOUT_S 10      /* a read that waits longer: the server is stuck */

static uint8_t rxbuf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t in[16384];
static size_t have, off;
static unsigned server_key_updates; /* KeyUpdate messages the server sent */

static void die(int code, const char *what)
{
    printf("%s\n", what);
    exit(code);
}

/* OpenSSL's message callback: counts the server's KeyUpdate messages. */
static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    (void)arg;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        ((const uint8_t *)buf)[0] == SSL3_MT_KEY_UPDATE) {
        server_key_updates++;
    }
}

static void send_msg(SSL *ssl, const struct tcpota_msg *m)
{
    uint8_t b[512];
    int n = tcpota_msg_encode(m, b, sizeof(b));

    if (n < 0 || SSL_write(ssl, b, n) != n) {
        die(1, "send failed");
    }
}

/* The next frame from the server; exits on an end, an error or a bad frame. */
static void next_msg(SSL *ssl, struct tcpota_decoder *d, struct tcpota_msg *m)
{
    for (;;) {
        struct tcpota_frame f;
        int n;

        while (off < have) {
            int used = tcpota_decoder_feed(d, in + off, have - off, &f);
            if (used < 0) {
                die(1, "a bad frame from the server");
            }
            off += (size_t)used;
            if (f.type) {
                if (tcpota_msg_decode(&f, m) < 0) {
                    die(1, "an undecodable frame from the server");
                }
                return;
            }
        }
        n = SSL_read(ssl, in, (int)sizeof(in));
        if (n <= 0) {
            printf("the server's stream ended (SSL error %d, errno %d) after %u key updates\n",
                   SSL_get_error(ssl, n), errno, server_key_updates);
            exit(1);
        }
        have = (size_t)n;
        off = 0;
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint8_t *read_image(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *p;

    if (!f || fstat(fileno(f), &st) < 0 || !(p = malloc((size_t)st.st_size + 1)) ||
        fread(p, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        perror("tls-keyupdate: the image");
        exit(2);
    }
    fclose(f);
    *len = (size_t)st.st_size;
    return p;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *image = NULL;
    long hold_ms = 1000;
    char host[64];
    int port, fd, pong = 0;
    size_t size, got = 0;
    uint8_t *img, c = 0;
    SSL_CTX *ctx;
    SSL *ssl;
    struct tcpota_decoder d;
    struct tcpota_msg m;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc) server = argv[++i];
        else if (!strcmp(argv[i], "--image") && i + 1 < argc) image = argv[++i];
        else if (!strcmp(argv[i], "--hold") && i + 1 < argc) hold_ms = atol(argv[++i]);
        else {
            fprintf(stderr, "tls-keyupdate: bad argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!server || !image || sscanf(server, "%63[^:]:%d", host, &port) != 2 || hold_ms < 0) {
        fprintf(stderr, "usage: tcpota-tls-keyupdate --server HOST:PORT --image FILE [--hold MS]\n");
        return 2;
    }
    img = read_image(image, &size);
    fd = tool_dial("tls-keyupdate", host, port, NULL, READ_TIMEOUT_S);
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        die(2, "no TLS 1.3 context");
    }
    SSL_CTX_set_msg_callback(ctx, on_msg);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* the server's TCP end: an end */
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
        die(2, "TLS handshake failed");
    }
    tcpota_decoder_init(&d, rxbuf, sizeof(rxbuf));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_HELLO;
    m.u.hello.proto_min = m.u.hello.proto_max = 1;
    m.u.hello.device_id.ptr = (const uint8_t *)"keyupdate";
    m.u.hello.device_id.len = 9;
    m.u.hello.model.ptr = (const uint8_t *)"esp32";
    m.u.hello.model.len = 5;
    m.u.hello.version.ptr = (const uint8_t *)"0.0.0";
    m.u.hello.version.len = 5;
    send_msg(ssl, &m);
    do {
        next_msg(ssl, &d, &m);
    } while (m.type == TCPOTA_T_WELCOME);
    if (m.type != TCPOTA_T_OFFER || m.u.offer.size != size || m.u.offer.start != 0) {
        printf("no offer of the whole image (frame type %u)\n", m.type);
        return 1;
    }
    uint8_t image_id[TCPOTA_ID_LEN];
    memcpy(image_id, m.u.offer.image_id, sizeof(image_id));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = image_id;
    send_msg(ssl, &m);

    /* The server streams at once; nothing is read until its socket is full. */
    sleep_ms(hold_ms);
    if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
        die(2, "SSL_key_update failed");
    }
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = PING_TOKEN;
    send_msg(ssl, &m); /* the KeyUpdate leaves first, then the PING's record */
    sleep_ms(hold_ms);

    while (got < size || !pong) {
        next_msg(ssl, &d, &m);
        if (m.type == TCPOTA_T_PONG && m.u.ping.token == PING_TOKEN) {
            pong = 1;
        } else if (m.type == TCPOTA_T_DATA) {
            if (m.u.data.offset != got || m.u.data.bytes.len > size - got ||
                memcmp(m.u.data.bytes.ptr, img + got, m.u.data.bytes.len) != 0) {
                printf("DATA at %u (%u bytes) is not the image's bytes at %zu\n",
                       m.u.data.offset, m.u.data.bytes.len, got);
                return 1;
            }
            got += m.u.data.bytes.len;
        } else if (m.type != TCPOTA_T_PONG) {
            printf("frame type %u in the stream at %zu of %zu bytes\n", m.type, got, size);
            return 1;
        }
    }
    if (!server_key_updates) {
        printf("the whole image and the PONG, but no key update from the server\n");
        return 1;
    }
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = (uint32_t)size;
    send_msg(ssl, &m);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_COMPLETE;
    m.u.complete.image_id = image_id;
    m.u.complete.status = 0;
    send_msg(ssl, &m);
    /* The server's end of stream after COMPLETE; a read that times out
     * would be a server that did not take it. */
    {
        int n = SSL_read(ssl, &c, 1), e = SSL_get_error(ssl, n);
        if (n > 0) {
            die(1, "more from the server after the image");
        }
        if (e != SSL_ERROR_ZERO_RETURN && !(e == SSL_ERROR_SYSCALL && errno == 0)) {
            printf("no end of stream after COMPLETE (SSL error %d, errno %d)\n", e, errno);
            return 1;
        }
    }
    printf("ok: %zu bytes, the server's key update, PONG\n", got);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    free(img);
    return 0;
}
