/* test_tls_esp.c - the ESP-IDF TLS module (esp-idf/components/tcpota/
 * tls_esp.c) on the host: compiled unchanged against a fake of Mbed TLS's
 * SSL API (tests/esp_fake/tls) whose handshake and records run over a real
 * socket pair, with the shared socket client (ports/common/tcpota_client.c)
 * and a real device session (core) above it. What is tested is the part
 * that is not TLS itself: the configuration checks and their messages, the
 * menuconfig mapping (an embedded PEM, the host name defaulting to the
 * server's), the mbedTLS setup (client, TLS 1.2 minimum, verification
 * required, the CA), the poll-driven handshake and how its failures read,
 * the channel binding handed to the session before HELLO, and the io
 * hooks' contracts (WANT_* as EAGAIN, a held write retried with its own
 * length, decrypted bytes reported as pending). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "esp_err.h"
#include "fake_port.h"
#include "tcpota/codec.h"
#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tcpota_esp_tls.h"
#include "tls_fake.h"

#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

/* What EMBED_TXTFILES (target_add_binary_data ... TEXT RENAME_TO
 * tcpota_ca_pem) puts in the firmware: the text, one NUL, two symbols. */
__asm__(".section .rodata\n"
        ".global _binary_tcpota_ca_pem_start\n"
        "_binary_tcpota_ca_pem_start:\n"
        ".ascii \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n"
        ".byte 0\n"
        ".global _binary_tcpota_ca_pem_end\n"
        "_binary_tcpota_ca_pem_end:\n"
        ".text\n");

static tcpota_esp_tls_t tls;
static struct fake_port *fp;
static struct tcpota_dev dev;
static struct tcpota_client cl;
static uint8_t drx[4096], dtx[1024], net[512];
static char err[256];
static int peer = -1; /* the server's end of the socket pair */

static uint32_t real_now(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* The io hooks as tcpota_esp.c sets them. */
static long io_recv(void *ctx, void *buf, size_t n)
{
    return tcpota_esp_tls_recv(ctx, buf, n);
}

static long io_send(void *ctx, const void *buf, size_t n)
{
    return tcpota_esp_tls_send(ctx, buf, n);
}

static size_t io_pending(void *ctx)
{
    return tcpota_esp_tls_pending(ctx);
}

static tcpota_esp_tls_config_t pem_config(const char *pem)
{
    tcpota_esp_tls_config_t c;

    memset(&c, 0, sizeof(c));
    c.ca = TCPOTA_ESP_TLS_CA_PEM;
    c.ca_pem = pem;
    c.ca_pem_len = strlen(pem) + 1;
    return c;
}

/* A device session (fake flash) and a client whose fd is one end of a
 * socket pair, as after tcpota_client_connect(). */
static void client_up(void)
{
    static const uint8_t secret[32] = {1, 2, 3};
    struct tcpota_dev_config dc;
    struct tcpota_client_config cc;
    int sv[2];

    memset(&dc, 0, sizeof(dc));
    dc.port = &fp->port;
    dc.device_id = "dev-1";
    dc.model = "esp32";
    dc.version = "1.0.0";
    dc.secret = secret;
    dc.secret_len = sizeof(secret);
    dc.rx_buf = drx;
    dc.rx_cap = sizeof(drx);
    dc.tx_buf = dtx;
    dc.tx_cap = sizeof(dtx);
    dc.ack_interval = 16384;
    dc.timeout_ms = 2000;
    assert_int_equal(tcpota_dev_init(&dev, &dc), 0);
    memset(&cc, 0, sizeof(cc));
    cc.dev = &dev;
    cc.net_buf = net;
    cc.net_cap = sizeof(net);
    cc.wake_fd = -1;
    cc.flush_ms = 200;
    cc.err = err;
    cc.err_cap = sizeof(err);
    cc.now_ms = real_now;
    cc.ctx = &tls;
    cc.io_recv = io_recv;
    cc.io_send = io_send;
    cc.io_pending = io_pending;
    assert_int_equal(tcpota_client_init(&cl, &cc), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cl.fd = sv[0];
    peer = sv[1];
}

/* init + handshake with the peer's "SH" already sent. */
static void session_up(void)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(write(peer, "SH", 2), 2);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    (void)state;
    tls_fake_reset();
    memset(&tls, 0, sizeof(tls));
    memset(&dev, 0, sizeof(dev));
    err[0] = 0;
    cl.fd = -1;
    fp = calloc(1, sizeof(*fp));
    fake_port_init(fp);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tcpota_esp_tls_free(&tls);
    assert_int_equal(tls_fake.ssl_live, 0);      /* every session freed */
    assert_int_equal(tls_fake.sessions_live, 0); /* the kept session too */
    if (cl.fd >= 0) {
        close(cl.fd);
        cl.fd = -1;
    }
    if (peer >= 0) {
        close(peer);
        peer = -1;
    }
    fake_port_free(fp);
    free(fp);
    return 0;
}

/* ---- configuration ------------------------------------------------------- */

static void test_no_ca_source_refused(void **state)
{
    tcpota_esp_tls_config_t c;

    (void)state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", NULL, err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "no CA to verify the server with"));
    assert_non_null(strstr(err, "CONFIG_TCPOTA_TLS_CA_PEM"));
    /* ... and init, which the task runs at start, says the same. */
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "no CA"));
}

static void test_pem_must_be_nul_terminated(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    c.ca_pem_len--; /* the NUL left out, as from a binary embed */
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", NULL, err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "NUL-terminated"));
    assert_string_equal(tls_fake.log, ""); /* refused before mbedTLS saw it */
}

static void test_pem_empty_or_not_a_certificate(void **state)
{
    tcpota_esp_tls_config_t c = pem_config("-----BEGIN PRIVATE KEY-----\nMC4\n");

    (void)state;
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", NULL, err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "no \"-----BEGIN CERTIFICATE-----\" line"));
    c.ca_pem_len = 0;
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", NULL, err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "is empty"));
    c.ca_pem = NULL;
    c.ca_pem_len = 5;
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", NULL, err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
}

static void test_host_defaults_to_server(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);
    char host[TCPOTA_ESP_TLS_HOST_MAX + 1];
    char longname[TCPOTA_ESP_TLS_HOST_MAX + 2];

    (void)state;
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", host, err, sizeof(err)), 0);
    assert_string_equal(host, "ota.example");
    c.host = "";
    assert_int_equal(tcpota_esp_tls_check(&c, "10.0.0.2", host, err, sizeof(err)), 0);
    assert_string_equal(host, "10.0.0.2");
    c.host = "cert.example"; /* connect by address, check the certificate's name */
    assert_int_equal(tcpota_esp_tls_check(&c, "10.0.0.2", host, err, sizeof(err)), 0);
    assert_string_equal(host, "cert.example");
    c.host = NULL;
    assert_int_equal(tcpota_esp_tls_check(&c, "", host, err, sizeof(err)), TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "no host name"));
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    c.host = longname;
    assert_int_equal(tcpota_esp_tls_check(&c, "x", host, err, sizeof(err)), TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "longer than 255"));
    longname[TCPOTA_ESP_TLS_HOST_MAX] = 0; /* exactly the limit is fine */
    assert_int_equal(tcpota_esp_tls_check(&c, "x", host, err, sizeof(err)), 0);
}

/* The menuconfig mapping: the embedded file with its NUL, the host from
 * CONFIG_TCPOTA_TLS_HOST (empty here, so the server's). */
static void test_kconfig_embedded_pem(void **state)
{
    tcpota_esp_tls_config_t c;
    char host[TCPOTA_ESP_TLS_HOST_MAX + 1];

    (void)state;
    tcpota_esp_tls_kconfig(&c);
    assert_int_equal(c.ca, TCPOTA_ESP_TLS_CA_PEM);
    assert_int_equal(c.ca_pem_len, sizeof(CA_PEM));
    assert_memory_equal(c.ca_pem, CA_PEM, sizeof(CA_PEM));
    assert_int_equal(tcpota_esp_tls_check(&c, "ota.example", host, err, sizeof(err)), 0);
    assert_string_equal(host, "ota.example");
}

/* ---- mbedTLS setup ------------------------------------------------------- */

static void test_init_sets_up_client(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM CA_PEM);

    (void)state;
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(tls.conf.defaults, 1000 + MBEDTLS_SSL_IS_CLIENT * 100); /* client, stream */
    assert_int_equal(tls.conf.min_version, MBEDTLS_SSL_VERSION_TLS1_2);
    assert_int_equal(tls.conf.authmode, MBEDTLS_SSL_VERIFY_REQUIRED);
    assert_ptr_equal(tls.conf.ca_chain, &tls.ca);
    assert_int_equal(tls.ca.certs, 2);
    assert_non_null(tls.conf.f_rng); /* Mbed TLS 3.6 needs one */
    assert_int_equal(tls.handshake_ms, TCPOTA_ESP_TLS_HANDSHAKE_MS);
    assert_string_equal(tls.host, "ota.example");
}

static void test_bad_ca_refused_at_init(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM "BROKEN");

    (void)state;
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "cannot parse the CA certificate: fake mbedTLS error -8576"));
    assert_non_null(strstr(err, "(-0x2180)"));
    tcpota_esp_tls_free(&tls);
    /* A file of which one certificate is bad is refused too. */
    c = pem_config(CA_PEM CA_PEM "PARTLY");
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)),
                     TCPOTA_ERR_INVAL);
    assert_non_null(strstr(err, "some certificates in it are invalid"));
}

static void test_bundle_attached(void **state)
{
    tcpota_esp_tls_config_t c;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.ca = TCPOTA_ESP_TLS_CA_BUNDLE;
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(tls.conf.bundle, 1);
    assert_int_equal(tls_fake.bundle_loaded, 1);
    tcpota_esp_tls_free(&tls);
    assert_int_equal(tls_fake.conf_live, 0);
    /* ESP-IDF's detach unloads the bundle for the whole application: an
     * HTTPS or MQTT client's handshake elsewhere would then fail ("No
     * certificates in bundle"), and a bundle it set would be dropped. */
    assert_int_equal(tls_fake.bundle_loaded, 1);
    tls_fake.bundle_rc = ESP_FAIL;
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)),
                     TCPOTA_ERR_NOSPC);
    assert_non_null(strstr(err, "cannot attach the certificate bundle"));
}

static void test_psa_failure_reported(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    tls_fake.psa_rc = -134;
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)),
                     TCPOTA_ERR_NOSPC);
    assert_non_null(strstr(err, "psa_crypto_init failed (-134)"));
}

/* ---- one connection ------------------------------------------------------- */

/* The handshake waits in poll() when mbedTLS wants the socket, then the
 * binding goes to the session before its first byte (HELLO) is written. */
static void test_handshake_bind_then_hello(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);
    uint8_t want[TCPOTA_TLS_BINDING_LEN], got[64];
    char log[512];

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    tls_fake.hs_want_read = 2;
    assert_int_equal(write(peer, "SH", 2), 2);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), 0);
    assert_int_equal(dev.bound, 0);
    assert_int_equal(tcpota_esp_tls_bind(&tls, &dev, err, sizeof(err)), 0);
    assert_int_equal(dev.bound, 1);
    tls_fake_exporter(TCPOTA_TLS_BINDING_LABEL, strlen(TCPOTA_TLS_BINDING_LABEL), want,
                      sizeof(want));
    assert_memory_equal(dev.binding, want, sizeof(want));
    /* The server saw the handshake, then reads HELLO and closes. */
    assert_int_equal(read(peer, got, 2), 2);
    assert_memory_equal(got, "CH", 2);
    shutdown(peer, SHUT_WR);
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_RETRY);
    assert_string_equal(err, "the server (or a proxy on the way) closed the connection");
    assert_true(read(peer, got, sizeof(got)) > (ssize_t)TCPOTA_FRAME_OVERHEAD);
    assert_int_equal(got[0], TCPOTA_T_HELLO);
    snprintf(log, sizeof(log), "ca_parse 1;setup;hostname ota.example;handshake want_read;"
                               "handshake want_read;handshake done;get_session 1;"
                               "export " TCPOTA_TLS_BINDING_LABEL " 32 ctx=null/0/0;write ");
    assert_memory_equal(tls_fake.log, log, strlen(log));
    tcpota_esp_tls_end(&tls);
    assert_non_null(strstr(tls_fake.log, ";close_notify;free;"));
    assert_int_equal(tls_fake.ssl_live, 0);
}

static void test_wrong_certificate_name(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    c.host = "other.example";
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(write(peer, "SH", 2), 2);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_DENIED);
    assert_string_equal(err, "TLS: server certificate rejected for \"other.example\": The "
                             "certificate Common Name (CN) does not match with the expected CN");
    assert_int_equal(tcpota_esp_tls_bind(&tls, &dev, err, sizeof(err)), TCPOTA_ERR_PROTO);
    assert_int_equal(dev.bound, 0);
}

static void test_untrusted_certificate(void **state)
{
    (void)state;
    tls_fake.verify_flags = MBEDTLS_X509_BADCERT_NOT_TRUSTED | MBEDTLS_X509_BADCERT_EXPIRED;
    client_up();
    {
        tcpota_esp_tls_config_t c = pem_config(CA_PEM);
        assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    }
    assert_int_equal(write(peer, "SH", 2), 2);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_DENIED);
    /* Several reasons on one line. */
    assert_non_null(strstr(err, "has expired; The certificate is not correctly signed"));
    assert_null(strchr(err, '\n'));
}

static void test_server_not_speaking_tls(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    shutdown(peer, SHUT_WR); /* closes without a word */
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_PROTO);
    assert_non_null(strstr(err, "is it speaking TLS on this port, or at its limits?"));
}

/* A plain tcpota port answers a TLS client with a line of text (a plain
 * HTTP port with its 400): no TLS record, so the same next time. */
static void test_server_answers_without_tls(void **state)
{
    static const char line[] = "tcpota: this port speaks plain TCP, not TLS\r\n";
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(write(peer, line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_DENIED);
    assert_non_null(strstr(err, "the server answered without TLS: this port does not speak TLS"));
    assert_non_null(strstr(err, "turn CONFIG_TCPOTA_TLS off"));
}

/* An HTTP port (the API's, or plain downloads) answers 400 in the clear:
 * said as an HTTP port, not as a plain tcpota one (a trial's device was
 * told to turn TLS off). */
static void test_server_answers_in_http(void **state)
{
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(write(peer, answer, sizeof(answer) - 1), (ssize_t)sizeof(answer) - 1);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_DENIED);
    assert_non_null(strstr(err, "the server answered in HTTP, without TLS: the address names an "
                                "HTTP port (tcpota serve's API or downloads?)"));
}

static void test_handshake_times_out(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);
    uint32_t t0;

    (void)state;
    c.handshake_ms = 150;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    t0 = real_now(NULL);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_TIMEDOUT);
    assert_true(real_now(NULL) - t0 >= 150);
    assert_non_null(strstr(err, "TLS handshake timed out after"));
}

static void test_bind_needs_handshake(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(tcpota_esp_tls_bind(&tls, &dev, err, sizeof(err)), TCPOTA_ERR_PROTO);
    assert_non_null(strstr(err, "cannot derive the channel binding"));
    assert_int_equal(dev.bound, 0);
}

/* ---- records --------------------------------------------------------------- */

/* Mbed TLS holds a record after WANT_WRITE and, called again, reports the
 * new call's length as written: the retry must have the held length. */
static void test_held_write_retried_with_its_length(void **state)
{
    static const uint8_t data[40] = "0123456789abcdefghijklmnopqrstuvwxyzABCD";
    uint8_t got[64];

    (void)state;
    session_up();
    assert_int_equal(read(peer, got, 2), 2); /* "CH" */
    tls_fake.write_want = 1;
    errno = 0;
    assert_int_equal(tcpota_esp_tls_send(&tls, data, 10), -1);
    assert_int_equal(errno, EAGAIN);
    /* Meanwhile the session queued more: the queue is now 40 bytes long. */
    assert_int_equal(tcpota_esp_tls_send(&tls, data, 40), 10);
    assert_int_equal(tcpota_esp_tls_send(&tls, data + 10, 30), 30);
    assert_int_equal(read(peer, got, sizeof(got)), 40);
    assert_memory_equal(got, data, 40);
}

static void test_pending_bytes_reported(void **state)
{
    uint8_t buf[16];

    (void)state;
    session_up();
    assert_int_equal(tcpota_esp_tls_pending(&tls), 0);
    assert_int_equal(write(peer, "0123456789abcdefghijklmnop", 26), 26);
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), 16);
    /* The rest of the record is decrypted already: poll() would not say. */
    assert_int_equal(tcpota_esp_tls_pending(&tls), 10);
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), 10);
    assert_memory_equal(buf, "ghijklmnop", 10);
    assert_int_equal(tcpota_esp_tls_pending(&tls), 0);
    errno = 0;
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN); /* WANT_READ */
    shutdown(peer, SHUT_WR);
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), 0); /* closed */
    tcpota_esp_tls_end(&tls);
    assert_int_equal(tcpota_esp_tls_pending(&tls), 0);
}

/* TLS 1.3 tickets arrive as records of their own: read on past them. */
static void test_ticket_then_data(void **state)
{
    uint8_t buf[16];

    (void)state;
    session_up();
    tls_fake.tickets = 2;
    assert_int_equal(write(peer, "abc", 3), 3);
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "abc", 3);
}

/* A record read from the socket but not yet decrypted counts as pending. */
static void test_undecrypted_record_pending(void **state)
{
    (void)state;
    session_up();
    assert_int_equal(tcpota_esp_tls_pending(&tls), 0);
    tls_fake.undecrypted = 1;
    assert_true(tcpota_esp_tls_pending(&tls) > 0);
}

/* TLS errors on records end the connection with an errno the client
 * reports; WANT_WRITE from a full socket is EAGAIN. */
static void test_record_errors(void **state)
{
    uint8_t buf[16], junk[4096];

    (void)state;
    session_up();
    tls_fake.read_rc = -0x7180; /* MAC check failed, say */
    errno = 0;
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EPROTO); /* a refused record, not a reset by the server */
    tls_fake.write_rc = -0x7180;
    errno = 0;
    assert_int_equal(tcpota_esp_tls_send(&tls, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EPIPE);
    memset(junk, 0, sizeof(junk));
    while (write(cl.fd, junk, sizeof(junk)) > 0) {
        /* fill the socket */
    }
    errno = 0;
    assert_int_equal(tcpota_esp_tls_send(&tls, buf, sizeof(buf)), -1);
    assert_int_equal(errno, EAGAIN);
}

/* A socket error during the handshake says which call failed and why. */
static void test_handshake_socket_error(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    close(peer);
    peer = -1;
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_PROTO);
    assert_string_equal(err, "TLS handshake failed: send: Broken pipe");
}

static void test_setup_failure(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    client_up();
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    tls_fake.setup_rc = -0x7F00;
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_NOSPC);
    assert_non_null(strstr(err, "TLS setup failed: fake mbedTLS error -32512"));
}

/* A new connection ends the last one's session first. */
static void test_reconnect_frees_old_session(void **state)
{
    int sv[2];

    (void)state;
    session_up();
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(cl.fd);
    close(peer);
    cl.fd = sv[0];
    peer = sv[1];
    assert_int_equal(write(peer, "SH", 2), 2);
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), 0);
    assert_int_equal(tls_fake.ssl_live, 1);
}

/* ---- session resumption (CONFIG_TCPOTA_TLS_RESUME) ----------------------- */

/* The next connection: a new socket pair, the server's "SH" sent, the
 * handshake run; returns its result. */
static int next_connection(void)
{
    int sv[2];

    tcpota_esp_tls_end(&tls);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(cl.fd);
    close(peer);
    cl.fd = sv[0];
    peer = sv[1];
    assert_int_equal(write(peer, "SH", 2), 2);
    tls_fake.log[0] = 0;
    return tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err));
}

/* TLS 1.2: the session is taken after the handshake and offered at the
 * next one, which the server resumes; the resumed session is kept again. */
static void test_tls12_session_resumed(void **state)
{
    (void)state;
    session_up();
    assert_non_null(strstr(tls_fake.log, "handshake done;get_session 1;"));
    assert_int_equal(next_connection(), 0);
    assert_string_equal(tls_fake.log, "setup;hostname ota.example;set_session 1;"
                                      "handshake resumed 1;get_session 1;");
    assert_int_equal(next_connection(), 0);
    assert_int_equal(tls_fake.full, 1);
    assert_int_equal(tls_fake.resumed, 2);
    tcpota_esp_tls_end(&tls);
    assert_int_equal(tls_fake.sessions_live, 1); /* the kept one only */
}

/* TLS 1.3: no session after the handshake (it has no ticket yet); the
 * ticket the server sends after it is read past and kept, the last one
 * wins, and the next connection offers it. */
static void test_tls13_ticket_kept_and_resumed(void **state)
{
    uint8_t buf[8];

    (void)state;
    tls_fake.tls13 = 1;
    session_up();
    assert_null(strstr(tls_fake.log, "get_session"));
    tls_fake.tickets = 2;
    assert_int_equal(write(peer, "hi", 2), 2);
    assert_int_equal(tcpota_esp_tls_recv(&tls, buf, sizeof(buf)), 2);
    assert_non_null(strstr(tls_fake.log, "get_session 1;get_session 2;"));
    assert_int_equal(tls_fake.sessions_live, 2); /* the connection's and the kept one */
    assert_int_equal(next_connection(), 0);
    assert_non_null(strstr(tls_fake.log, "set_session 2;handshake resumed 2;"));
    assert_null(strstr(tls_fake.log, "get_session")); /* no ticket yet on this one */
    assert_int_equal(tls_fake.full, 1);
}

/* TLS 1.3 without a ticket: the handshake's session (no ticket yet) is
 * not kept, so nothing is offered, and the next handshake is a full one. */
static void test_tls13_no_ticket_full_handshake(void **state)
{
    (void)state;
    tls_fake.tls13 = 1;
    session_up();
    assert_int_equal(next_connection(), 0);
    assert_null(strstr(tls_fake.log, "set_session"));
    assert_int_equal(tls_fake.full, 2);
}

/* A server with a new ticket key (restarted, rotated) refuses the session:
 * a full handshake, silently, whose session replaces the kept one. */
static void test_refused_session_full_then_replaced(void **state)
{
    (void)state;
    session_up();
    tls_fake.epoch = 2;
    assert_int_equal(next_connection(), 0);
    assert_non_null(strstr(tls_fake.log, "set_session 1;handshake done;get_session 2;"));
    assert_int_equal(next_connection(), 0);
    assert_non_null(strstr(tls_fake.log, "set_session 2;handshake resumed 2;"));
    assert_int_equal(tls_fake.full, 2);
    assert_int_equal(tls_fake.resumed, 1);
}

/* A failed handshake drops the session: the next attempt is a full one. */
static void test_failed_handshake_drops_session(void **state)
{
    int sv[2];

    (void)state;
    session_up();
    tcpota_esp_tls_end(&tls);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(cl.fd);
    close(peer);
    cl.fd = sv[0];
    peer = sv[1];
    shutdown(peer, SHUT_WR); /* the server hangs up mid-handshake */
    assert_int_equal(tcpota_esp_tls_handshake(&tls, &cl, err, sizeof(err)), TCPOTA_ERR_PROTO);
    assert_non_null(strstr(tls_fake.log, "set_session 1;"));
    tcpota_esp_tls_end(&tls);
    assert_int_equal(tls_fake.sessions_live, 0); /* none kept */
    assert_int_equal(next_connection(), 0);
    assert_null(strstr(tls_fake.log, "set_session"));
    assert_non_null(strstr(tls_fake.log, "handshake done;get_session 2;"));
}

/* A session Mbed TLS will not take: a full handshake, whose session
 * replaces it. */
static void test_unusable_session_replaced(void **state)
{
    (void)state;
    session_up();
    tls_fake.set_session_rc = MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    assert_int_equal(next_connection(), 0);
    assert_string_equal(tls_fake.log, "setup;hostname ota.example;handshake done;get_session 2;");
    tls_fake.set_session_rc = 0;
    assert_int_equal(next_connection(), 0);
    assert_non_null(strstr(tls_fake.log, "set_session 2;handshake resumed 2;"));
}

/* The session belongs to the host and trust anchors of one init: shut down
 * and set up again (another name here), nothing is offered, and nothing
 * is left behind (the fake counts live sessions). */
static void test_new_init_offers_nothing(void **state)
{
    tcpota_esp_tls_config_t c = pem_config(CA_PEM);

    (void)state;
    session_up();
    tcpota_esp_tls_free(&tls);
    assert_int_equal(tls_fake.sessions_live, 0);
    c.host = "ota2.example";
    tls_fake.cert_host = "ota2.example";
    assert_int_equal(tcpota_esp_tls_init(&tls, &c, "ota.example", err, sizeof(err)), 0);
    assert_int_equal(next_connection(), 0);
    assert_string_equal(tls_fake.log, "setup;hostname ota2.example;handshake done;get_session 2;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_ca_source_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pem_must_be_nul_terminated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pem_empty_or_not_a_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_defaults_to_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kconfig_embedded_pem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_sets_up_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ca_refused_at_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_attached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_psa_failure_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_bind_then_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_certificate_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_not_speaking_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_answers_without_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_answers_in_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_needs_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_write_retried_with_its_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_bytes_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticket_then_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecrypted_record_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_socket_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_frees_old_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls12_session_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls13_ticket_kept_and_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls13_no_ticket_full_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_session_full_then_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_handshake_drops_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_session_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_init_offers_nothing, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* lwIP has none; here a send to a closed peer would raise it */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
