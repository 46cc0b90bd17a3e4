/* tls_fake.c - host fake of Mbed TLS's SSL API (see tls_fake.h). */
#include "tls_fake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_crt_bundle.h"
#include "mbedtls/error.h"
#include "mbedtls/psa_util.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"

struct tls_fake tls_fake;

static void note(const char *fmt, ...)
{
    size_t n = strlen(tls_fake.log);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tls_fake.log + n, sizeof(tls_fake.log) - n, fmt, ap);
    va_end(ap);
    n = strlen(tls_fake.log);
    snprintf(tls_fake.log + n, sizeof(tls_fake.log) - n, ";");
}

void tls_fake_reset(void)
{
    memset(&tls_fake, 0, sizeof(tls_fake));
    tls_fake.cert_host = "ota.example";
    tls_fake.record_max = 64;
    tls_fake.epoch = 1;
}

void tls_fake_exporter(const char *label, size_t label_len, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        out[i] = (uint8_t)(label[i % label_len] + 3 * i);
    }
}

/* ---- config and CA ------------------------------------------------------ */

void mbedtls_ssl_config_init(mbedtls_ssl_config *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->authmode = -1;
    tls_fake.conf_live++;
}

void mbedtls_ssl_config_free(mbedtls_ssl_config *conf)
{
    memset(conf, 0, sizeof(*conf));
    tls_fake.conf_live--;
}

int mbedtls_ssl_config_defaults(mbedtls_ssl_config *conf, int endpoint, int transport, int preset)
{
    conf->defaults = 1000 + endpoint * 100 + transport * 10 + preset;
    return 0;
}

void mbedtls_ssl_conf_rng(mbedtls_ssl_config *conf, int (*f_rng)(void *, unsigned char *, size_t),
                          void *p_rng)
{
    (void)p_rng;
    conf->f_rng = f_rng;
}

void mbedtls_ssl_conf_min_tls_version(mbedtls_ssl_config *conf,
                                      mbedtls_ssl_protocol_version tls_version)
{
    conf->min_version = tls_version;
}

void mbedtls_ssl_conf_authmode(mbedtls_ssl_config *conf, int authmode)
{
    conf->authmode = authmode;
}

void mbedtls_ssl_conf_ca_chain(mbedtls_ssl_config *conf, mbedtls_x509_crt *ca_chain, void *ca_crl)
{
    (void)ca_crl;
    conf->ca_chain = ca_chain;
}

void mbedtls_x509_crt_init(mbedtls_x509_crt *crt)
{
    memset(crt, 0, sizeof(*crt));
}

void mbedtls_x509_crt_free(mbedtls_x509_crt *crt)
{
    memset(crt, 0, sizeof(*crt));
}

int mbedtls_x509_crt_parse(mbedtls_x509_crt *chain, const unsigned char *buf, size_t buflen)
{
    const char *p = (const char *)buf;
    int n = 0;

    if (!buflen || buf[buflen - 1] != 0) {
        return MBEDTLS_ERR_X509_INVALID_FORMAT; /* taken for DER, which it is not */
    }
    if (strstr(p, "BROKEN")) {
        return MBEDTLS_ERR_X509_INVALID_FORMAT;
    }
    while ((p = strstr(p, "-----BEGIN CERTIFICATE-----")) != NULL) {
        n++;
        p++;
    }
    if (strstr((const char *)buf, "PARTLY")) {
        chain->certs += n - 1;
        return 1;
    }
    chain->certs += n;
    note("ca_parse %d", n);
    return n ? 0 : MBEDTLS_ERR_X509_INVALID_FORMAT;
}

int mbedtls_x509_crt_verify_info(char *buf, size_t size, const char *prefix, uint32_t flags)
{
    int n = 0;

    if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
        n += snprintf(buf + n, size - (size_t)n, "%sThe certificate validity has expired\n", prefix);
    }
    if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        n += snprintf(buf + n, size - (size_t)n,
                      "%sThe certificate Common Name (CN) does not match with the expected CN\n",
                      prefix);
    }
    if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
        n += snprintf(buf + n, size - (size_t)n,
                      "%sThe certificate is not correctly signed by the trusted CA\n", prefix);
    }
    return n;
}

esp_err_t esp_crt_bundle_attach(void *conf)
{
    if (tls_fake.bundle_rc) {
        return tls_fake.bundle_rc;
    }
    tls_fake.bundle_loaded = 1;
    ((mbedtls_ssl_config *)conf)->bundle = 1;
    note("bundle_attach");
    return ESP_OK;
}

/* As ESP-IDF 5.5 and 6.0 do it: the process-wide bundle is gone, not only
 * this config's use of it. */
void esp_crt_bundle_detach(mbedtls_ssl_config *conf)
{
    tls_fake.bundle_loaded = 0;
    if (conf) {
        conf->bundle = 0;
    }
}

/* ---- context -------------------------------------------------------------- */

void mbedtls_ssl_init(mbedtls_ssl_context *ssl)
{
    memset(ssl, 0, sizeof(*ssl));
}

void mbedtls_ssl_free(mbedtls_ssl_context *ssl)
{
    mbedtls_ssl_session_free(&ssl->session);
    mbedtls_ssl_session_free(&ssl->offered);
    if (ssl->conf) {
        tls_fake.ssl_live--;
        note("free");
    }
    memset(ssl, 0, sizeof(*ssl));
}

int mbedtls_ssl_setup(mbedtls_ssl_context *ssl, const mbedtls_ssl_config *conf)
{
    if (tls_fake.setup_rc) {
        return tls_fake.setup_rc;
    }
    ssl->conf = conf;
    ssl->verify_result = 0xffffffffu;
    tls_fake.ssl_live++;
    note("setup");
    return 0;
}

int mbedtls_ssl_set_hostname(mbedtls_ssl_context *ssl, const char *hostname)
{
    if (hostname && strlen(hostname) >= sizeof(ssl->hostname)) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    ssl->has_hostname = hostname != NULL;
    snprintf(ssl->hostname, sizeof(ssl->hostname), "%s", hostname ? hostname : "");
    note("hostname %s", ssl->hostname);
    return 0;
}

void mbedtls_ssl_set_bio(mbedtls_ssl_context *ssl, void *p_bio, mbedtls_ssl_send_t *f_send,
                         mbedtls_ssl_recv_t *f_recv, mbedtls_ssl_recv_timeout_t *f_recv_timeout)
{
    (void)f_recv_timeout;
    ssl->p_bio = p_bio;
    ssl->f_send = f_send;
    ssl->f_recv = f_recv;
}

/* ---- sessions --------------------------------------------------------------- */

void mbedtls_ssl_session_init(mbedtls_ssl_session *session)
{
    memset(session, 0, sizeof(*session));
}

void mbedtls_ssl_session_free(mbedtls_ssl_session *session)
{
    if (session->ticket) {
        free(session->ticket);
        tls_fake.sessions_live--;
    }
    memset(session, 0, sizeof(*session));
}

static int session_copy(mbedtls_ssl_session *dst, const mbedtls_ssl_session *src)
{
    mbedtls_ssl_session_free(dst);
    *dst = *src;
    dst->ticket = NULL;
    if (src->ticket) {
        if (!(dst->ticket = malloc(16))) {
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        }
        memcpy(dst->ticket, src->ticket, 16);
        tls_fake.sessions_live++;
    }
    return 0;
}

/* The server makes a session (TLS 1.2 handshake, TLS 1.3 ticket). A TLS
 * 1.3 handshake leaves session number 0, without a ticket: exportable, as
 * in Mbed TLS, but no server resumes it. */
static void new_session(mbedtls_ssl_context *ssl)
{
    mbedtls_ssl_session_free(&ssl->session);
    ssl->session.number = ++tls_fake.next_number;
    ssl->session.epoch = tls_fake.epoch;
    ssl->session.version = ssl->version;
    snprintf(ssl->session.host, sizeof(ssl->session.host), "%s", ssl->hostname);
    if ((ssl->session.ticket = calloc(1, 16)) != NULL) {
        tls_fake.sessions_live++;
    }
    ssl->exported = 0;
}

/* The server takes an offered session made under its current key for the
 * same name (Mbed TLS itself does not offer a TLS 1.3 ticket for another). */
static int resumable(const mbedtls_ssl_context *ssl)
{
    return ssl->offered.number && ssl->offered.epoch == tls_fake.epoch &&
           strcmp(ssl->offered.host, ssl->hostname) == 0 &&
           (ssl->offered.version == MBEDTLS_SSL_VERSION_TLS1_3) == (tls_fake.tls13 != 0);
}

int mbedtls_ssl_get_session(const mbedtls_ssl_context *ssl, mbedtls_ssl_session *session)
{
    mbedtls_ssl_context *s = (mbedtls_ssl_context *)ssl; /* as Mbed TLS: marks it exported */

    if (ssl->hs_state != 2) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    if (ssl->exported) {
        return MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE;
    }
    s->exported = 1;
    note("get_session %d", ssl->session.number);
    return session_copy(session, &ssl->session);
}

int mbedtls_ssl_set_session(mbedtls_ssl_context *ssl, const mbedtls_ssl_session *session)
{
    if (tls_fake.set_session_rc) {
        return tls_fake.set_session_rc;
    }
    note("set_session %d", session->number);
    return session_copy(&ssl->offered, session);
}

mbedtls_ssl_protocol_version mbedtls_ssl_get_version_number(const mbedtls_ssl_context *ssl)
{
    return ssl->version;
}

/* The toy handshake: "CH" out, "SH" in, then the certificate check. */
int mbedtls_ssl_handshake(mbedtls_ssl_context *ssl)
{
    unsigned char b[2];
    int rc;

    if (!ssl->conf || !ssl->f_send || ssl->conf->authmode != MBEDTLS_SSL_VERIFY_REQUIRED) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    if (tls_fake.hs_want_read > 0) {
        tls_fake.hs_want_read--;
        note("handshake want_read");
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    if (ssl->hs_state == 0) {
        if ((rc = ssl->f_send(ssl->p_bio, (const unsigned char *)"CH", 2)) < 0) {
            return rc;
        }
        ssl->hs_state = 1;
    }
    if ((rc = ssl->f_recv(ssl->p_bio, b, 2)) < 0) {
        return rc;
    }
    if (rc == 0) {
        return MBEDTLS_ERR_SSL_CONN_EOF;
    }
    if (rc != 2 || memcmp(b, "SH", 2) != 0) {
        return MBEDTLS_ERR_SSL_INVALID_RECORD;
    }
    if (resumable(ssl)) {
        /* No certificate in a resumed handshake: the session vouches. */
        ssl->version = ssl->offered.version;
        ssl->verify_result = 0;
        ssl->hs_state = 2;
        tls_fake.resumed++;
        note("handshake resumed %d", ssl->offered.number);
        if (ssl->version == MBEDTLS_SSL_VERSION_TLS1_2) {
            session_copy(&ssl->session, &ssl->offered);
        }
        return 0;
    }
    ssl->verify_result = tls_fake.verify_flags;
    if (!ssl->conf->ca_chain && !ssl->conf->bundle) {
        ssl->verify_result |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    }
    if (!ssl->has_hostname || strcmp(ssl->hostname, tls_fake.cert_host) != 0) {
        ssl->verify_result |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    if (ssl->verify_result) {
        note("handshake verify_failed");
        return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
    }
    ssl->hs_state = 2;
    ssl->version = tls_fake.tls13 ? MBEDTLS_SSL_VERSION_TLS1_3 : MBEDTLS_SSL_VERSION_TLS1_2;
    tls_fake.full++;
    note("handshake done");
    if (ssl->version == MBEDTLS_SSL_VERSION_TLS1_2) {
        new_session(ssl); /* TLS 1.3: with a ticket, later */
    }
    return 0;
}

uint32_t mbedtls_ssl_get_verify_result(const mbedtls_ssl_context *ssl)
{
    return ssl->verify_result;
}

/* ---- records -------------------------------------------------------------- */

int mbedtls_ssl_read(mbedtls_ssl_context *ssl, unsigned char *buf, size_t len)
{
    size_t n;

    if (ssl->hs_state != 2) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    if (tls_fake.tickets > 0) {
        tls_fake.tickets--;
        new_session(ssl);
        return MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET;
    }
    if (tls_fake.read_rc) {
        int rc = tls_fake.read_rc;
        tls_fake.read_rc = 0;
        return rc;
    }
    if (ssl->in_off == ssl->in_len) {
        int rc = ssl->f_recv(ssl->p_bio, ssl->in, tls_fake.record_max);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            return MBEDTLS_ERR_SSL_CONN_EOF;
        }
        ssl->in_off = 0;
        ssl->in_len = (size_t)rc;
    }
    n = ssl->in_len - ssl->in_off < len ? ssl->in_len - ssl->in_off : len;
    memcpy(buf, ssl->in + ssl->in_off, n);
    ssl->in_off += n;
    return (int)n;
}

int mbedtls_ssl_write(mbedtls_ssl_context *ssl, const unsigned char *buf, size_t len)
{
    size_t n = len < tls_fake.record_max ? len : tls_fake.record_max;
    int rc;

    if (ssl->hs_state != 2) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    note("write %zu", len);
    if (tls_fake.write_rc) {
        rc = tls_fake.write_rc;
        tls_fake.write_rc = 0;
        return rc;
    }
    if (ssl->pending_len) {
        /* As Mbed TLS: flush the held record, report this call's length. */
        if ((rc = ssl->f_send(ssl->p_bio, ssl->pending, ssl->pending_len)) < 0) {
            return rc;
        }
        ssl->pending_len = 0;
        return (int)n;
    }
    if (tls_fake.write_want > 0) {
        tls_fake.write_want--;
        memcpy(ssl->pending, buf, n);
        ssl->pending_len = n;
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    if ((rc = ssl->f_send(ssl->p_bio, buf, n)) < 0) {
        return rc;
    }
    return rc;
}

size_t mbedtls_ssl_get_bytes_avail(const mbedtls_ssl_context *ssl)
{
    return ssl->in_len - ssl->in_off;
}

int mbedtls_ssl_check_pending(const mbedtls_ssl_context *ssl)
{
    return ssl->in_len != ssl->in_off || tls_fake.undecrypted;
}

int mbedtls_ssl_close_notify(mbedtls_ssl_context *ssl)
{
    (void)ssl;
    note("close_notify");
    return 0;
}

int mbedtls_ssl_export_keying_material(mbedtls_ssl_context *ssl, uint8_t *out,
                                       const size_t key_len, const char *label,
                                       const size_t label_len, const unsigned char *context,
                                       const size_t context_len, const int use_context)
{
    if (ssl->hs_state != 2) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA; /* as Mbed TLS before the handshake is over */
    }
    note("export %.*s %zu ctx=%s/%zu/%d", (int)label_len, label, key_len,
         context ? "set" : "null", context_len, use_context);
    tls_fake_exporter(label, label_len, out, key_len);
    return 0;
}

/* ---- the rest ------------------------------------------------------------ */

void mbedtls_strerror(int errnum, char *buffer, size_t buflen)
{
    snprintf(buffer, buflen, "fake mbedTLS error %d", errnum);
}

int mbedtls_psa_get_random(void *p_rng, unsigned char *output, size_t output_size)
{
    (void)p_rng;
    memset(output, 0x5a, output_size);
    return 0;
}
