/* tls_esp.c - TLS for the tcpota task over the shared socket client (see
 * tcpota_esp_tls.h). */
#include "sdkconfig.h"

#ifdef CONFIG_TCPOTA_TLS

#include "tcpota_esp_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/poll.h>
#include <sys/socket.h>

#include "esp_log.h"
#include "mbedtls/build_info.h"
#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/platform_util.h"
#include "psa/crypto.h"
#ifdef CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
#include "esp_crt_bundle.h"
#endif
#if MBEDTLS_VERSION_MAJOR < 4
#include "mbedtls/psa_util.h"
#endif

#ifndef MBEDTLS_SSL_KEYING_MATERIAL_EXPORT
#error "tcpota TLS needs mbedtls_ssl_export_keying_material(): set CONFIG_MBEDTLS_SSL_KEYING_MATERIAL_EXPORT=y (menuconfig: Component config > mbedTLS > Enable keying material export; CONFIG_TCPOTA_TLS selects it). ESP-IDF 5.5.0 has no such option (its Mbed TLS 3.6.3 lacks the function): TLS needs ESP-IDF 5.5.1 or later"
#endif

static const char *TAG = "tcpota";

#define PEM_BEGIN "-----BEGIN CERTIFICATE-----"

/* ---- configuration ---------------------------------------------------- */

#ifdef CONFIG_TCPOTA_TLS_CA_PEM
/* CMakeLists.txt embeds CONFIG_TCPOTA_TLS_CA_PEM_PATH under this fixed name
 * (EMBED_TXTFILES: the text plus one NUL). */
extern const char tcpota_ca_pem_start[] __asm__("_binary_tcpota_ca_pem_start");
extern const char tcpota_ca_pem_end[] __asm__("_binary_tcpota_ca_pem_end");
#endif

void tcpota_esp_tls_kconfig(tcpota_esp_tls_config_t *out)
{
    memset(out, 0, sizeof(*out));
#if defined(CONFIG_TCPOTA_TLS_CA_PEM)
    out->ca = TCPOTA_ESP_TLS_CA_PEM;
    out->ca_pem = tcpota_ca_pem_start;
    out->ca_pem_len = (size_t)(tcpota_ca_pem_end - tcpota_ca_pem_start);
#elif defined(CONFIG_TCPOTA_TLS_CA_BUNDLE)
    out->ca = TCPOTA_ESP_TLS_CA_BUNDLE;
#endif
    out->host = CONFIG_TCPOTA_TLS_HOST;
}

int tcpota_esp_tls_check(const tcpota_esp_tls_config_t *cfg, const char *server_host,
                         char *host_out, char *err, size_t cap)
{
    const char *host = cfg->host && cfg->host[0] ? cfg->host : server_host;
    size_t n = cfg->ca_pem_len;

    switch (cfg->ca) {
    case TCPOTA_ESP_TLS_CA_PEM:
        if (!cfg->ca_pem || !n) {
            snprintf(err, cap, "TLS: the CA certificate (CONFIG_TCPOTA_TLS_CA_PEM_PATH) is empty");
            return TCPOTA_ERR_INVAL;
        }
        if (cfg->ca_pem[n - 1] != '\0') {
            snprintf(err, cap, "TLS: the CA certificate must be NUL-terminated PEM text "
                               "(embed it with EMBED_TXTFILES, count the NUL in ca_pem_len)");
            return TCPOTA_ERR_INVAL;
        }
        if (!strstr(cfg->ca_pem, PEM_BEGIN)) {
            snprintf(err, cap, "TLS: the CA certificate holds no \"" PEM_BEGIN "\" line "
                               "(a PEM certificate is needed, not a key or DER)");
            return TCPOTA_ERR_INVAL;
        }
        break;
    case TCPOTA_ESP_TLS_CA_BUNDLE:
#ifndef CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
        snprintf(err, cap, "TLS: the certificate bundle is not built in "
                           "(set CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y, or embed a CA PEM)");
        return TCPOTA_ERR_INVAL;
#else
        break;
#endif
    default:
        snprintf(err, cap, "TLS: no CA to verify the server with (choose "
                           "CONFIG_TCPOTA_TLS_CA_PEM or CONFIG_TCPOTA_TLS_CA_BUNDLE)");
        return TCPOTA_ERR_INVAL;
    }
    if (!host || !host[0]) {
        snprintf(err, cap, "TLS: no host name to check the server's certificate against "
                           "(set CONFIG_TCPOTA_TLS_HOST or the server host)");
        return TCPOTA_ERR_INVAL;
    }
    if (strlen(host) > TCPOTA_ESP_TLS_HOST_MAX) {
        snprintf(err, cap, "TLS: host name longer than %u characters", TCPOTA_ESP_TLS_HOST_MAX);
        return TCPOTA_ERR_INVAL;
    }
    if (host_out) {
        memcpy(host_out, host, strlen(host) + 1);
    }
    return 0;
}

/* mbedTLS's text for rc, or its code when the library has no texts. */
static const char *tls_reason(int rc, char *buf, size_t cap)
{
#ifdef MBEDTLS_ERROR_C
    size_t n;

    mbedtls_strerror(rc, buf, cap);
    n = strlen(buf);
    snprintf(buf + n, cap - n, " (-0x%04x)", (unsigned)-rc);
#else
    snprintf(buf, cap, "mbedTLS error -0x%04x", (unsigned)-rc);
#endif
    return buf;
}

static int load_ca(tcpota_esp_tls_t *t, const tcpota_esp_tls_config_t *cfg, char *err, size_t cap)
{
    char why[96];
    int rc;

    if (cfg->ca == TCPOTA_ESP_TLS_CA_BUNDLE) {
#ifdef CONFIG_MBEDTLS_CERTIFICATE_BUNDLE
        if (esp_crt_bundle_attach(&t->conf) != ESP_OK) {
            snprintf(err, cap, "TLS: cannot attach the certificate bundle");
            return TCPOTA_ERR_NOSPC;
        }
#endif
        return 0;
    }
    rc = mbedtls_x509_crt_parse(&t->ca, (const unsigned char *)cfg->ca_pem, cfg->ca_pem_len);
    if (rc != 0) {
        /* > 0: that many certificates of the PEM did not parse; a CA file
         * half of which is ignored is a mistake worth stopping for. */
        snprintf(err, cap, "TLS: cannot parse the CA certificate: %s",
                 rc > 0 ? "some certificates in it are invalid" : tls_reason(rc, why, sizeof(why)));
        return rc == MBEDTLS_ERR_X509_ALLOC_FAILED ? TCPOTA_ERR_NOSPC : TCPOTA_ERR_INVAL;
    }
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
    return 0;
}

int tcpota_esp_tls_init(tcpota_esp_tls_t *t, const tcpota_esp_tls_config_t *cfg,
                        const char *server_host, char *err, size_t cap)
{
    char why[96];
    int rc;

    memset(t, 0, sizeof(*t));
    t->fd = -1;
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_ssl_init(&t->ssl);
#ifdef CONFIG_TCPOTA_TLS_RESUME
    mbedtls_ssl_session_init(&t->kept);
#endif
    t->ready = 1; /* from here on tcpota_esp_tls_free() has work */
    if ((rc = tcpota_esp_tls_check(cfg, server_host, t->host, err, cap)) < 0) {
        return rc;
    }
    t->handshake_ms = cfg->handshake_ms ? cfg->handshake_ms : TCPOTA_ESP_TLS_HANDSHAKE_MS;
    /* ESP-IDF starts PSA at boot on 6.x; on 5.5 TLS 1.3 and the random
     * generator below need it too. Repeated calls are harmless. */
    if ((rc = (int)psa_crypto_init()) != PSA_SUCCESS) {
        snprintf(err, cap, "TLS: psa_crypto_init failed (%d)", rc);
        return TCPOTA_ERR_NOSPC;
    }
    rc = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                     MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        snprintf(err, cap, "TLS: cannot set up: %s", tls_reason(rc, why, sizeof(why)));
        return TCPOTA_ERR_NOSPC;
    }
#if MBEDTLS_VERSION_MAJOR < 4
    /* Mbed TLS 4 draws from PSA itself and has no such call. */
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
#endif
    mbedtls_ssl_conf_min_tls_version(&t->conf, MBEDTLS_SSL_VERSION_TLS1_2);
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
#if defined(CONFIG_TCPOTA_TLS_RESUME) && defined(MBEDTLS_SSL_PROTO_TLS1_3) && \
    defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
    /* Mbed TLS 3.6 drops TLS 1.3 tickets unless asked to hand them over
     * (Mbed TLS 4 always does, and has no such call). */
    mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
        &t->conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
    return load_ca(t, cfg, err, cap);
}

/* ---- the socket under mbedTLS ------------------------------------------ */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    tcpota_esp_tls_t *t = ctx;
    ssize_t k = send(t->fd, buf, len, 0);

    if (k >= 0) {
        return (int)k;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    t->last_errno = errno;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    tcpota_esp_tls_t *t = ctx;
    ssize_t k = recv(t->fd, buf, len, 0);

    if (k > 0) {
        tcpota_first_bytes_add(&t->first, buf, (size_t)k); /* they tell an HTTP port */
    }
    if (k >= 0) {
        return (int)k; /* 0: the server closed; mbedTLS says CONN_EOF */
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    t->last_errno = errno;
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* ---- the kept session (CONFIG_TCPOTA_TLS_RESUME) --------------------------- */

#ifdef CONFIG_TCPOTA_TLS_RESUME
/* Drops the kept session; why (NULL: no log line) says at debug level. */
static void forget_session(tcpota_esp_tls_t *t, const char *why)
{
    if (t->has_kept) {
        if (why) {
            ESP_LOGD(TAG, "TLS: kept session dropped (%s); the next handshake is a full one",
                     why);
        }
        mbedtls_ssl_session_free(&t->kept);
        mbedtls_ssl_session_init(&t->kept);
        t->has_kept = 0;
    }
}

/* Keeps the connection's session for the next handshake, in place of the
 * kept one. Mbed TLS exports each session once: TLS 1.2's after the
 * handshake, each TLS 1.3 ticket when it arrives. */
static void keep_session(tcpota_esp_tls_t *t)
{
    char why[96];
    int rc;

    forget_session(t, NULL);
    rc = mbedtls_ssl_get_session(&t->ssl, &t->kept);
    if (rc != 0) {
        ESP_LOGD(TAG, "TLS: session not kept: %s", tls_reason(rc, why, sizeof(why)));
        mbedtls_ssl_session_free(&t->kept);
        mbedtls_ssl_session_init(&t->kept);
        return;
    }
    t->has_kept = 1;
}

/* Offers the kept session to the new connection. One Mbed TLS does not
 * take (another version's, a ciphersuite no longer enabled) makes the
 * handshake a full one, as when the server refuses it; that handshake's
 * session then replaces it. */
static void offer_session(tcpota_esp_tls_t *t)
{
    char why[96];
    int rc;

    if (!t->has_kept) {
        return;
    }
    rc = mbedtls_ssl_set_session(&t->ssl, &t->kept);
    if (rc != 0) {
        ESP_LOGD(TAG, "TLS: kept session not offered: %s", tls_reason(rc, why, sizeof(why)));
    }
}

/* After a successful handshake. TLS 1.3 sessions come with the server's
 * ticket, after the handshake (tcpota_esp_tls_recv). */
static void handshake_done(tcpota_esp_tls_t *t)
{
    if (mbedtls_ssl_get_version_number(&t->ssl) != MBEDTLS_SSL_VERSION_TLS1_3) {
        keep_session(t);
    }
}
#else
static void forget_session(tcpota_esp_tls_t *t, const char *why)
{
    (void)t;
    (void)why;
}
static void keep_session(tcpota_esp_tls_t *t)
{
    (void)t;
}
static void offer_session(tcpota_esp_tls_t *t)
{
    (void)t;
}
static void handshake_done(tcpota_esp_tls_t *t)
{
    (void)t;
}
#endif /* CONFIG_TCPOTA_TLS_RESUME */

/* ---- one connection ---------------------------------------------------- */

/* Says why mbedtls_ssl_handshake() returned rc in err; returns the code:
 * TCPOTA_ERR_DENIED for a certificate refused or an answer that is no TLS
 * record (a plain port: tcpota serve answers a TLS client there with a
 * line of text; an HTTP one): the same again next time, and the runner
 * backs off as after an image failure; TCPOTA_ERR_PROTO for the rest (cut,
 * alert, socket error: transient; never TCPOTA_ERR_IO, which the runner
 * takes for "server unreachable"). */
static int handshake_error(tcpota_esp_tls_t *t, int rc, char *err, size_t cap)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char why[256];

    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || (flags != 0 && flags != (uint32_t)-1)) {
#if !defined(MBEDTLS_X509_REMOVE_INFO)
        /* Each reason ends in a newline; the log wants one line, "; "
         * between them. */
        int n = mbedtls_x509_crt_verify_info(why, sizeof(why), "; ", flags);
        while (n > 0 && why[n - 1] == '\n') {
            why[--n] = 0;
        }
        for (char *p = why; (p = strchr(p, '\n')) != NULL;) {
            memmove(p, p + 1, strlen(p + 1) + 1);
        }
        if (n <= 0) {
            snprintf(why, sizeof(why), "; verify flags 0x%lx", (unsigned long)flags);
        }
#else
        snprintf(why, sizeof(why), "; verify flags 0x%lx", (unsigned long)flags);
#endif
        snprintf(err, cap, "TLS: server certificate rejected for \"%s\": %s", t->host, why + 2);
        return TCPOTA_ERR_DENIED;
    }
    if (rc == MBEDTLS_ERR_SSL_INVALID_RECORD && tcpota_first_bytes_http(&t->first)) {
        snprintf(err, cap, "TLS handshake failed: the server answered in HTTP, without TLS: %s",
                 TCPOTA_CLIENT_HTTP_PORT_SAYS);
        return TCPOTA_ERR_DENIED;
    }
    if (rc == MBEDTLS_ERR_SSL_INVALID_RECORD) {
        snprintf(err, cap, "TLS handshake failed: the server answered without TLS: this port does"
                           " not speak TLS (a plain tcpota port: turn CONFIG_TCPOTA_TLS off, or give"
                           " its server --tls-cert; or not tcpota's device port at all)");
        return TCPOTA_ERR_DENIED;
    }
    if (rc == MBEDTLS_ERR_SSL_CONN_EOF) {
        snprintf(err, cap, "TLS handshake failed: the server closed the connection during the "
                           "handshake (is it speaking TLS on this port, or at its limits?)");
        return TCPOTA_ERR_PROTO;
    }
    if ((rc == MBEDTLS_ERR_NET_SEND_FAILED || rc == MBEDTLS_ERR_NET_RECV_FAILED) && t->last_errno) {
        snprintf(err, cap, "TLS handshake failed: %s: %s",
                 rc == MBEDTLS_ERR_NET_SEND_FAILED ? "send" : "recv", strerror(t->last_errno));
        return TCPOTA_ERR_PROTO; /* not IO: the server was reached (tcpota_runner.h) */
    }
    snprintf(err, cap, "TLS handshake failed: %s", tls_reason(rc, why, sizeof(why)));
    return TCPOTA_ERR_PROTO;
}

/* Drives mbedtls_ssl_handshake() with poll() until it is done, fails,
 * times out (handshake_ms from start) or a stop is requested. */
static int run_handshake(tcpota_esp_tls_t *t, struct tcpota_client *cl, uint32_t start,
                         char *err, size_t cap)
{
    for (;;) {
        uint32_t spent;
        int rc, w;

        rc = mbedtls_ssl_handshake(&t->ssl);
        if (rc == 0) {
            return 0;
        }
        if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return handshake_error(t, rc, err, cap);
        }
        spent = cl->cfg.now_ms(cl->cfg.ctx) - start;
        if (spent >= t->handshake_ms) {
            snprintf(err, cap, "TLS handshake timed out after %lu ms", (unsigned long)spent);
            return TCPOTA_ERR_TIMEDOUT;
        }
        w = tcpota_client_wait(cl, cl->fd, rc == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT,
                               t->handshake_ms - spent);
        if (w == TCPOTA_ERR_CANCELED) {
            snprintf(err, cap, "stopped during the TLS handshake");
            return w;
        }
    }
}

int tcpota_esp_tls_handshake(tcpota_esp_tls_t *t, struct tcpota_client *cl, char *err,
                             size_t cap)
{
    uint32_t start = cl->cfg.now_ms(cl->cfg.ctx);
    char why[96];
    int rc;

    tcpota_esp_tls_end(t);
    t->fd = cl->fd;
    t->last_errno = 0;
    t->first.n = 0;
    t->write_len = 0;
    if ((rc = mbedtls_ssl_setup(&t->ssl, &t->conf)) != 0 ||
        (rc = mbedtls_ssl_set_hostname(&t->ssl, t->host)) != 0) {
        snprintf(err, cap, "TLS setup failed: %s", tls_reason(rc, why, sizeof(why)));
        mbedtls_ssl_free(&t->ssl);
        mbedtls_ssl_init(&t->ssl);
        return TCPOTA_ERR_NOSPC;
    }
    t->active = 1;
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    offer_session(t);
    rc = run_handshake(t, cl, start, err, cap);
    if (rc == 0) {
        handshake_done(t);
    } else if (rc != TCPOTA_ERR_CANCELED) {
        /* Whatever failed, the next attempt should not hinge on the
         * session: it starts from a full handshake. */
        forget_session(t, "the handshake failed");
    }
    return rc;
}

int tcpota_esp_tls_bind(tcpota_esp_tls_t *t, struct tcpota_dev *d, char *err, size_t cap)
{
    static const char label[] = TCPOTA_TLS_BINDING_LABEL;
    uint8_t b[TCPOTA_TLS_BINDING_LEN];
    char why[96];
    /* No context (use_context 0), as the server's OpenSSL exporter call;
     * before the handshake is over mbedTLS refuses (BAD_INPUT_DATA). */
    int rc = mbedtls_ssl_export_keying_material(&t->ssl, b, sizeof(b), label, sizeof(label) - 1,
                                                NULL, 0, 0);

    if (rc != 0) {
        snprintf(err, cap, "TLS: cannot derive the channel binding: %s",
                 tls_reason(rc, why, sizeof(why)));
        return TCPOTA_ERR_PROTO;
    }
    (void)tcpota_dev_set_binding(d, b);
    mbedtls_platform_zeroize(b, sizeof(b));
    return 0;
}

/* ---- records --------------------------------------------------------------- */

long tcpota_esp_tls_recv(tcpota_esp_tls_t *t, void *buf, size_t n)
{
    char why[96];
    int rc;

    for (;;) {
        rc = mbedtls_ssl_read(&t->ssl, buf, n);
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
        if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
            keep_session(t); /* TLS 1.3: keep the ticket, read on */
            continue;
        }
#endif
        break;
    }
    if (rc > 0) {
        return rc;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF) {
        return 0;
    }
    ESP_LOGW(TAG, "TLS read failed: %s", tls_reason(rc, why, sizeof(why)));
    /* No socket error: a record mbedTLS refused (a bad MAC, an alert),
     * which the client names (EPROTO), not a reset by the server. */
    errno = t->last_errno ? t->last_errno : EPROTO;
    return -1;
}

long tcpota_esp_tls_send(tcpota_esp_tls_t *t, const void *buf, size_t n)
{
    char why[96];
    int rc;

    /* After WANT_WRITE mbedTLS holds a record made from the first
     * write_len bytes and must be called with that length again: a longer
     * one would be counted as sent without having been. The queue only
     * grows meanwhile, so its first write_len bytes are the same. */
    if (t->write_len && n > t->write_len) {
        n = t->write_len;
    }
    rc = mbedtls_ssl_write(&t->ssl, buf, n);
    if (rc > 0) {
        t->write_len = 0;
        return rc;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) {
        t->write_len = n;
        errno = EAGAIN;
        return -1;
    }
    ESP_LOGW(TAG, "TLS write failed: %s", tls_reason(rc, why, sizeof(why)));
    errno = t->last_errno ? t->last_errno : EPIPE;
    return -1;
}

size_t tcpota_esp_tls_pending(tcpota_esp_tls_t *t)
{
    size_t n = mbedtls_ssl_get_bytes_avail(&t->ssl); /* 0 without a session */

    /* A whole record already read from the socket but not yet decrypted:
     * poll() would not report it again. */
    return n ? n : (size_t)(mbedtls_ssl_check_pending(&t->ssl) != 0);
}

void tcpota_esp_tls_end(tcpota_esp_tls_t *t)
{
    if (t->active) {
        (void)mbedtls_ssl_close_notify(&t->ssl); /* non-blocking socket: best effort */
        mbedtls_ssl_free(&t->ssl);
        mbedtls_ssl_init(&t->ssl);
        t->active = 0;
    }
    t->fd = -1;
    t->write_len = 0;
}

void tcpota_esp_tls_free(tcpota_esp_tls_t *t)
{
    if (!t->ready) {
        return;
    }
    tcpota_esp_tls_end(t);
    forget_session(t, NULL);
    /* No esp_crt_bundle_detach(): it unloads the bundle for every user in
     * the application (ESP-IDF keeps one, s_crt_bundle), not only for this
     * config, and esp-tls never calls it either. Freeing the config is
     * all this connection's use of the bundle needs. */
    mbedtls_x509_crt_free(&t->ca);
    mbedtls_ssl_config_free(&t->conf);
    t->ready = 0;
}

#else  /* !CONFIG_TCPOTA_TLS */
typedef int tcpota_esp_tls_off; /* ISO C wants something in a file */
#endif /* CONFIG_TCPOTA_TLS */
