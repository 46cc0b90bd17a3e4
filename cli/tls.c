/* tls.c - TLS client for the host device (see tls.h). */
#include "tls.h"
#include "tcpota_client.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

int cli_tls_init(struct cli_tls *t, const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    memset(t, 0, sizeof(*t));
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fprintf(stderr, "tcpota device: cannot load CA file %s: %s\n", ca_file,
                ERR_reason_error_string(ERR_get_error()));
        if (ctx) SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    t->ctx = ctx;
    return 0;
}

int cli_tls_handshake(struct cli_tls *t, struct tcpota_client *cl, const char *host,
                      uint32_t timeout_ms, char *err, size_t cap)
{
    SSL *ssl = SSL_new(t->ctx);
    uint32_t waited = 0;

    t->ssl = ssl;
    if (!ssl || SSL_set_fd(ssl, cl->fd) != 1 || SSL_set1_host(ssl, host) != 1) {
        snprintf(err, cap, "TLS setup failed");
        return -1;
    }
    SSL_set_tlsext_host_name(ssl, host); /* SNI; an IP address is sent as is */
    for (;;) {
        int rc = SSL_connect(ssl), e;
        short ev;
        if (rc == 1) {
            return 0;
        }
        e = SSL_get_error(ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            long v = SSL_get_verify_result(ssl);
            snprintf(err, cap, "TLS handshake failed: %s",
                     v != X509_V_OK ? X509_verify_cert_error_string(v)
                                    : ERR_reason_error_string(ERR_get_error())
                                          ? ERR_reason_error_string(ERR_get_error())
                                          : "connection closed");
            return -1;
        }
        ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        if (waited >= timeout_ms || tcpota_client_wait(cl, cl->fd, ev, 100) < 0) {
            snprintf(err, cap, "TLS handshake timed out");
            return -1;
        }
        waited += 100;
    }
}

long cli_tls_recv(struct cli_tls *t, void *buf, size_t n)
{
    int rc = SSL_read(t->ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n), e;

    if (rc > 0) {
        return rc;
    }
    e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    errno = ECONNRESET;
    return -1;
}

long cli_tls_send(struct cli_tls *t, const void *buf, size_t n)
{
    int rc = SSL_write(t->ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n), e;

    if (rc > 0) {
        return rc;
    }
    e = SSL_get_error(t->ssl, rc);
    errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : EPIPE;
    return -1;
}

size_t cli_tls_pending(struct cli_tls *t)
{
    return t->ssl ? (size_t)SSL_pending(t->ssl) : 0;
}

void cli_tls_end(struct cli_tls *t)
{
    if (t->ssl) {
        (void)SSL_shutdown(t->ssl); /* best effort close_notify */
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    ERR_clear_error();
}

void cli_tls_free(struct cli_tls *t)
{
    cli_tls_end(t);
    if (t->ctx) {
        SSL_CTX_free(t->ctx);
        t->ctx = NULL;
    }
}
