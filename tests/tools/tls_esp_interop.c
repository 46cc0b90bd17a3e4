/* tls_esp_interop.c - the ESP-IDF TLS module (esp-idf/components/tcpota/
 * tls_esp.c) on the host, on a real Mbed TLS, against a real `tcpota serve
 * --tls-cert` (OpenSSL): one connection of a device session (fake flash,
 * tests/unit/fake_port.c) through tcpota_client and the module's io hooks,
 * as the ESP-IDF task's connect hook runs it. Built and run by
 * tls-esp-interop.sh; not part of `make test` (it needs Mbed TLS sources).
 *
 * usage: tls_esp_interop PORTS CA_PEM SECRET_HEX HOST MODE
 * PORTS: one port, or several separated by commas: one connection to each
 * in turn with the same TLS object, as the task's check-ins (with
 * CONFIG_TCPOTA_TLS_RESUME the kept session is offered at each).
 * MODE: "13" (TLS 1.3 when both have it), "12" (at most TLS 1.2), "bad"
 * (a zeroed binding handed to the session: the server must refuse).
 * Prints one line per step; exits 0 when every connection downloaded and
 * verified the image, 1 when one ended otherwise, 2+ on an early failure. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "esp_log.h"
#include "mbedtls/platform.h"
#include "sdkconfig.h"
#include "fake_port.h"
#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tcpota_esp_tls.h"

void esp_fake_log(const char *tag, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Mbed TLS's heap, counted (MBEDTLS_PLATFORM_MEMORY in the script's
 * config): what stays allocated between connections is the CA chain and,
 * with resumption, the kept session. */
#define HEAP_HEAD 16
static size_t heap_live;

static void *count_calloc(size_t n, size_t size)
{
    unsigned char *p;
    size_t len;

    if (size && n > (SIZE_MAX - HEAP_HEAD) / size) {
        return NULL;
    }
    len = n * size;
    if (!(p = calloc(1, len + HEAP_HEAD))) {
        return NULL;
    }
    memcpy(p, &len, sizeof(len));
    heap_live += len;
    return p + HEAP_HEAD;
}

static void count_free(void *q)
{
    unsigned char *p = q;
    size_t len;

    if (!p) {
        return;
    }
    p -= HEAP_HEAD;
    memcpy(&len, p, sizeof(len));
    heap_live -= len;
    free(p);
}

static tcpota_esp_tls_t tls;
static struct fake_port fp;
static struct tcpota_dev dev;
static struct tcpota_client cl;
static uint8_t drx[4108], dtx[1024], net[1536];
static char err[256], pem[16384];

static uint32_t now_ms(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static long io_recv(void *ctx, void *buf, size_t n) { return tcpota_esp_tls_recv(ctx, buf, n); }
static long io_send(void *ctx, const void *buf, size_t n) { return tcpota_esp_tls_send(ctx, buf, n); }
static size_t io_pending(void *ctx) { return tcpota_esp_tls_pending(ctx); }

static int session(const uint8_t secret[32])
{
    struct tcpota_dev_config dc;
    struct tcpota_client_config cc;

    fake_port_init(&fp);
    memset(&dc, 0, sizeof(dc));
    dc.port = &fp.port;
    dc.device_id = "dev1";
    dc.model = "esp32";
    dc.version = "1.0.0";
    dc.secret = secret;
    dc.secret_len = 32;
    dc.rx_buf = drx;
    dc.rx_cap = sizeof(drx);
    dc.tx_buf = dtx;
    dc.tx_cap = sizeof(dtx);
    dc.ack_interval = 16384;
    dc.timeout_ms = 5000;
    memset(&cc, 0, sizeof(cc));
    cc.dev = &dev;
    cc.net_buf = net;
    cc.net_cap = sizeof(net);
    cc.wake_fd = -1;
    cc.err = err;
    cc.err_cap = sizeof(err);
    cc.now_ms = now_ms;
    cc.ctx = &tls;
    cc.io_recv = io_recv;
    cc.io_send = io_send;
    cc.io_pending = io_pending;
    return tcpota_dev_init(&dev, &dc) < 0 || tcpota_client_init(&cl, &cc) < 0 ? -1 : 0;
}

/* How big the kept session is, in RAM and as Mbed TLS would serialise it
 * (what a copy in flash would take). */
static void print_kept(void)
{
#ifdef CONFIG_TCPOTA_TLS_RESUME
    size_t len = 0;

    if (!tls.has_kept) {
        printf("kept session: none\n");
        return;
    }
    (void)mbedtls_ssl_session_save(&tls.kept, NULL, 0, &len);
    printf("kept session: %s, sizeof(mbedtls_ssl_session) %zu, serialised %zu bytes\n",
           tls.kept.MBEDTLS_PRIVATE(tls_version) == MBEDTLS_SSL_VERSION_TLS1_3 ? "TLS 1.3 ticket"
                                                                             : "TLS 1.2",
           sizeof(tls.kept), len);
#endif
}

/* One connection to 127.0.0.1:port with the module, as the task's connect
 * hook runs it: 0 when the image was downloaded and verified. */
static int connection(const char *port, const uint8_t secret[32], int bad)
{
    int out;

    if (session(secret) < 0) {
        return 3;
    }
    if (tcpota_client_connect(&cl, "127.0.0.1", (uint16_t)atoi(port), "server") < 0) {
        printf("connect: %s\n", err);
        return 5;
    }
    if (tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)) < 0) {
        printf("handshake: %s\n", err);
        return 6;
    }
    printf("handshake: port %s, %s %s\n", port, mbedtls_ssl_get_version(&tls.ssl),
           mbedtls_ssl_get_ciphersuite(&tls.ssl));
    if (tcpota_esp_tls_bind(&tls, &dev, err, sizeof(err)) < 0) {
        printf("bind: %s\n", err);
        return 7;
    }
    if (bad) {
        static const uint8_t zero[TCPOTA_TLS_BINDING_LEN];
        (void)tcpota_dev_set_binding(&dev, zero);
    }
    out = tcpota_client_run(&cl);
    printf("outcome: %s (%s), %lu bytes written\n",
           out == TCPOTA_CLIENT_UPDATED ? "updated" : "not updated", err,
           (unsigned long)fp.wpos);
    tcpota_esp_tls_end(&tls);
    tcpota_client_close(&cl, 0);
    fake_port_free(&fp);
    print_kept();
    printf("Mbed TLS heap held between connections: %zu bytes\n", heap_live);
    return out == TCPOTA_CLIENT_UPDATED ? 0 : 1;
}

int main(int argc, char **argv)
{
    tcpota_esp_tls_config_t tc;
    uint8_t secret[32];
    size_t n;
    FILE *f;
    int rc;

    if (argc != 6 || strlen(argv[3]) != 64 || !(f = fopen(argv[2], "r"))) {
        fprintf(stderr, "usage: %s PORT CA_PEM SECRET_HEX HOST 13|12|bad\n", argv[0]);
        return 2;
    }
    n = fread(pem, 1, sizeof(pem) - 1, f);
    fclose(f);
    pem[n] = 0;
    for (int i = 0; i < 32; i++) {
        sscanf(argv[3] + 2 * i, "%2hhx", &secret[i]);
    }
    mbedtls_platform_set_calloc_free(count_calloc, count_free);
    memset(&tc, 0, sizeof(tc));
    tc.ca = TCPOTA_ESP_TLS_CA_PEM;
    tc.ca_pem = pem;
    tc.ca_pem_len = n + 1;
    tc.host = argv[4];
    if (tcpota_esp_tls_init(&tls, &tc, "127.0.0.1", err, sizeof(err)) < 0) {
        printf("init: %s\n", err);
        return 4;
    }
    if (strcmp(argv[5], "12") == 0) {
        mbedtls_ssl_conf_max_tls_version(&tls.conf, MBEDTLS_SSL_VERSION_TLS1_2);
    }
    rc = 0;
    for (char *ports = argv[1], *p; rc == 0 && (p = strsep(&ports, ",")) != NULL;) {
        rc = connection(p, secret, strcmp(argv[5], "bad") == 0);
    }
    tcpota_esp_tls_free(&tls);
    return rc;
}
