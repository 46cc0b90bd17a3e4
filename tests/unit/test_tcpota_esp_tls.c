/* test_tcpota_esp_tls.c - the tcpota FreeRTOS task (esp-idf/components/
 * tcpota/tcpota_esp.c) built with CONFIG_TCPOTA_TLS and an embedded CA,
 * on the host: the task fakes of test_tcpota_esp.c (FreeRTOS, ESP-IDF's
 * OTA/NVS under the real port_esp.c) and the fake of Mbed TLS's SSL API
 * (tests/esp_fake/tls), whose toy handshake ("CH" out, "SH" in) and plain
 * records run over a real loopback connection to a server session that
 * requires authentication and checks the answer against the TLS binding.
 *
 * Covers the task's wiring of tls_esp.c: the connect hook runs the
 * handshake and hands the binding to the session before HELLO (the server
 * accepts the bound answer: without the binding it would not), records go
 * through the io hooks, the close hook ends the session and the task frees
 * TLS at its end; and tcpota_esp_start() refusing an unusable embedded CA
 * (no task, nothing left allocated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "esp_fake.h"
#include "nvs_flash.h"
#include "psa/crypto.h"
#include "esp_task_test.h"
#include "loopback.h"
#include "task_fake.h"
#include "tcpota/codec.h"
#include "tcpota/server.h"
#include "tcpota_esp.h"
#include "tcpota_esp_port.h"
#include "tls_fake.h"

/* The embedded CA as target_add_binary_data(... TEXT RENAME_TO
 * tcpota_ca_pem) lays it out, in writable memory so that a test can spoil
 * it: the text, one NUL, two symbols. */
__asm__(".data\n"
        ".global _binary_tcpota_ca_pem_start\n"
        "_binary_tcpota_ca_pem_start:\n"
        ".ascii \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"\n"
        ".byte 0\n"
        ".global _binary_tcpota_ca_pem_end\n"
        "_binary_tcpota_ca_pem_end:\n"
        ".text\n");
extern char embedded_pem[] __asm__("_binary_tcpota_ca_pem_start");
extern char embedded_pem_end[] __asm__("_binary_tcpota_ca_pem_end");

static const uint8_t secret[32] = {7, 7, 7, 1, 2, 3};
static const uint8_t nonce[TCPOTA_NONCE_LEN] = {0xa5, 1, 2, 3, 4, 5, 6, 7};

/* One connection at a time: the toy handshake, HELLO, CHALLENGE, AUTH
 * checked with the binding of the toy session, NO_UPDATE, close. */
static struct {
    int fd;
    uint16_t port;
    int connections, auths, auth_ok;
    pthread_t thread;
} srv;

static int choose_none(void *ctx, const struct tcpota_srv_hello *h,
                       const struct tcpota_srv_image **img, uint32_t *retry_after_s)
{
    (void)ctx;
    (void)h;
    *img = NULL;
    *retry_after_s = 0;
    return 0;
}

/* What the real server does with OpenSSL's exporter (server/auth.c). */
static int answer_ok(const char *id, const uint8_t *mac)
{
    uint8_t binding[TCPOTA_TLS_BINDING_LEN], msg[TCPOTA_AUTH_MSG_MAX], want[32];
    int n;

    tls_fake_exporter(TCPOTA_TLS_BINDING_LABEL, strlen(TCPOTA_TLS_BINDING_LABEL), binding,
                      sizeof(binding));
    n = tcpota_auth_message(nonce, binding, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    if (n < 0) {
        return 0;
    }
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, secret, sizeof(secret));
    crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
    crypto_auth_hmacsha256_final(&st, want);
    return memcmp(want, mac, sizeof(want)) == 0;
}

static int flush(int c, struct tcpota_srv *s)
{
    const uint8_t *out;
    size_t len;

    while ((len = tcpota_srv_output(s, &out)) > 0) {
        if (write(c, out, len) != (ssize_t)len) {
            return -1;
        }
        tcpota_srv_output_done(s, len);
    }
    return 0;
}

static void serve_one(int c)
{
    static uint8_t rx[4200], tx[TCPOTA_SRV_TX_MIN], in[2048];
    struct tcpota_srv s;
    struct tcpota_srv_config cfg;
    struct tcpota_srv_event ev;
    ssize_t n;

    if (read(c, in, 2) != 2 || memcmp(in, "CH", 2) != 0 || write(c, "SH", 2) != 2) {
        return;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.choose = choose_none;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof(tx);
    cfg.auth_nonce = nonce;
    if (tcpota_srv_init(&s, &cfg) < 0) {
        return;
    }
    while ((n = read(c, in, sizeof(in))) > 0) {
        size_t off = 0;
        while (off < (size_t)n) {
            int used = tcpota_srv_input(&s, in + off, (size_t)n - off, &ev);
            if (used <= 0) {
                return;
            }
            off += (size_t)used;
            if (used > 0 && ev.type == TCPOTA_SRV_EV_AUTH) {
                uint8_t offered;
                uint32_t start;
                int ok = answer_ok("esp-test", ev.msg.u.auth.mac);
                __atomic_add_fetch(&srv.auths, 1, __ATOMIC_SEQ_CST);
                __atomic_add_fetch(&srv.auth_ok, ok, __ATOMIC_SEQ_CST);
                (void)tcpota_srv_authorize(&s, ok, &offered, &start);
            }
            if (flush(c, &s) < 0) {
                return;
            }
        }
    }
}

static void *serve(void *arg)
{
    int c;

    (void)arg;
    while ((c = accept(srv.fd, NULL, NULL)) >= 0) {
        __atomic_add_fetch(&srv.connections, 1, __ATOMIC_SEQ_CST);
        serve_one(c);
        close(c);
    }
    return NULL;
}

static void srv_start(void)
{
    memset(&srv, 0, sizeof(srv));
    srv.fd = loopback_listen(&srv.port);
    assert_true(srv.fd >= 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, serve, NULL), 0);
}

static void srv_stop(void)
{
    shutdown(srv.fd, SHUT_RDWR);
    close(srv.fd);
    pthread_join(srv.thread, NULL);
}

static tcpota_esp_config_t config(uint16_t port)
{
    tcpota_esp_config_t c = esp_task_config(port);

    c.stack_size = 8192;
    c.secret = secret;
    c.secret_len = sizeof(secret);
    return c;
}

/* Stops the task at its first long wait: the check-in after NO_UPDATE,
 * noting whether a TLS session outlived its connection. */
static int live_in_wait = -1;

static void on_take(uint32_t ticks)
{
    if (ticks > 100u) {
        live_in_wait = tls_fake.ssl_live;
        (void)tcpota_esp_stop();
    }
}

/* Stops the task at its second check-in wait: two connections. */
static int waits;

static void on_take_second(uint32_t ticks)
{
    if (ticks > 100u && ++waits == 2) {
        (void)tcpota_esp_stop();
    }
}

/* The task opens its port once per process (tcpota_esp.c) and keeps its
 * NVS handle, which esp_fake_init() forgets: once a test has started the
 * task, what the port holds is opened again (handle 1), as
 * test_tcpota_esp.c does. */
static int port_opened;

static int setup(void **state)
{
    (void)state;
    esp_fake_init("1.0.0");
    esp_fake_tasks_reset();
    if (port_opened) {
        nvs_handle_t h;
        assert_int_equal(psa_crypto_init(), PSA_SUCCESS);
        assert_int_equal(nvs_flash_init_partition(TCPOTA_ESP_NVS_PARTITION), ESP_OK);
        assert_int_equal(nvs_open_from_partition(TCPOTA_ESP_NVS_PARTITION, "tcpota",
                                                 NVS_READWRITE, &h), ESP_OK);
        assert_int_equal(h, 1);
    }
    tls_fake_reset();
    tls_fake.cert_host = "127.0.0.1"; /* no CONFIG_TCPOTA_TLS_HOST: the server host */
    return 0;
}

static void test_task_binds_before_hello(void **state)
{
    tcpota_esp_config_t c;
    tcpota_esp_status_t st;
    const char *done, *export, *write1;

    (void)state;
    srv_start();
    c = config(srv.port);
    esp_fake_tasks.on_take = on_take;
    assert_int_equal(tcpota_esp_start(&c), ESP_OK);
    port_opened = 1;
    assert_int_equal(tls_fake.conf_live, 1); /* the CA is loaded at start */
    assert_int_equal(esp_fake_task_run(), 0);
    esp_fake_tasks.on_take = NULL;
    srv_stop();
    assert_int_equal(srv.connections, 1);
    assert_int_equal(srv.auths, 1);
    assert_int_equal(srv.auth_ok, 1); /* the answer covered this session's binding */
    tcpota_esp_status(&st);
    assert_int_equal(st.state, TCPOTA_ESP_STOPPED);
    /* Handshake, binding, then the first record (HELLO); closed at the end. */
    done = strstr(tls_fake.log, "hostname 127.0.0.1;handshake done;");
    export = strstr(tls_fake.log, "export " TCPOTA_TLS_BINDING_LABEL " 32 ctx=null/0/0;");
    write1 = strstr(tls_fake.log, ";write ");
    assert_non_null(done);
    assert_non_null(export);
    assert_non_null(write1);
    assert_true(done < export && export < write1);
    assert_non_null(strstr(tls_fake.log, "close_notify;free;"));
    assert_int_equal(live_in_wait, 0); /* ended with its connection, not at the next */
    /* The task freed TLS when it ended. */
    assert_int_equal(tls_fake.ssl_live, 0);
    assert_int_equal(tls_fake.conf_live, 0);
}

/* The next check-in resumes the session of the last one: the task keeps
 * its TLS object between connections (CONFIG_TCPOTA_TLS_RESUME), and the
 * answer to the CHALLENGE is bound to the resumed session too. */
static void test_check_in_resumes_session(void **state)
{
    tcpota_esp_config_t c;

    (void)state;
    srv_start();
    c = config(srv.port);
    waits = 0;
    esp_fake_tasks.on_take = on_take_second;
    assert_int_equal(tcpota_esp_start(&c), ESP_OK);
    port_opened = 1;
    assert_int_equal(esp_fake_task_run(), 0);
    esp_fake_tasks.on_take = NULL;
    srv_stop();
    assert_int_equal(srv.connections, 2);
    assert_int_equal(srv.auth_ok, 2);
    assert_int_equal(tls_fake.full, 1);
    assert_int_equal(tls_fake.resumed, 1);
    assert_non_null(strstr(tls_fake.log, "set_session 1;handshake resumed 1;"));
    assert_int_equal(tls_fake.sessions_live, 0); /* the kept session freed at the end */
    assert_int_equal(tls_fake.conf_live, 0);
}

static void test_start_refuses_unusable_ca(void **state)
{
    tcpota_esp_config_t c = config(1);
    /* Through an integer: to the compiler the symbol is an array of
     * unknown start, and "end - 1" would read before it. */
    char *nul = (char *)((uintptr_t)embedded_pem_end - 1);

    (void)state;
    assert_int_equal(*nul, 0);
    *nul = '\n'; /* as if embedded without its NUL */
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    *nul = 0;
    assert_int_equal(esp_fake_tasks.created, 0);
    assert_int_equal(tls_fake.conf_live, 0); /* nothing left allocated */
    assert_string_equal(tls_fake.log, "");
    /* Intact again, it starts. */
    assert_int_equal(tcpota_esp_start(&c), ESP_OK);
    assert_int_equal(esp_fake_tasks.created, 1);
    (void)tcpota_esp_stop();
    assert_int_equal(esp_fake_task_run(), 0);
    assert_int_equal(tls_fake.conf_live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_task_binds_before_hello, setup),
        cmocka_unit_test_setup(test_check_in_resumes_session, setup),
        cmocka_unit_test_setup(test_start_refuses_unusable_ca, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
