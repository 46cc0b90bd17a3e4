/* tls.c - the TLS context (see tls.h). */
#include "tls.h"

#include <event2/buffer.h>
#include <openssl/err.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* What one tls_pull takes at most: a device's frames are small (the rest
 * of a larger record waits for the next call). */
#define TLS_PULL_CAP 4096u

SSL_CTX *tls_context(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tcpota serve: cannot use TLS certificate %s / key %s: %s\n", cert,
                key ? key : cert, ERR_reason_error_string(ERR_get_error()));
        if (ctx) SSL_CTX_free(ctx);
        return NULL;
    }
    /* Devices resume their session on the next check-in (a ticket costs
     * the server no state; the host device keeps it with its flash): one
     * ticket per handshake is all a device uses, not OpenSSL's two. */
    (void)SSL_CTX_set_num_tickets(ctx, 1);
    /* Tickets carry the session: no server-side cache. OpenSSL's default
     * one keeps every session of the last 5 minutes (up to 20,480) in a
     * hash that it sweeps every 255 handshakes, memory and CPU that
     * resumption by ticket never reads. */
    (void)SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* A connection holds OpenSSL's 17 KiB record buffers only while a
     * record is in them: idle and check-in connections hold none, and a
     * streaming one reuses the same freed block for every record rather
     * than keeping its own (as nginx does). */
    (void)SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}


int tls_binding(SSL *ssl, uint8_t out[TCPOTA_TLS_BINDING_LEN])
{
    if (!ssl || !SSL_is_init_finished(ssl) ||
        SSL_export_keying_material(ssl, out, TCPOTA_TLS_BINDING_LEN, TCPOTA_TLS_BINDING_LABEL,
                                   strlen(TCPOTA_TLS_BINDING_LABEL), NULL, 0, 0) != 1) {
        return -1;
    }
    return 0;
}

void tls_conn_setup(SSL *ssl)
{
    SSL_set_read_ahead(ssl, 1);
}

size_t tls_pull(SSL *ssl, struct evbuffer *in)
{
    uint8_t buf[TLS_PULL_CAP];
    int n;

    if (!SSL_has_pending(ssl)) {
        return 0;
    }
    n = SSL_read(ssl, buf, sizeof(buf));
    if (n <= 0) {
        ERR_clear_error(); /* WANT_READ, or an error libevent meets next */
        return 0;
    }
    return evbuffer_add(in, buf, (size_t)n) == 0 ? (size_t)n : 0;
}

size_t tls_write_now(SSL *ssl, const void *p, size_t n)
{
    int w;

    if (n == 0 || n > INT_MAX) {
        return 0;
    }
    w = SSL_write(ssl, p, (int)n);
    if (w <= 0) {
        ERR_clear_error(); /* WANT_WRITE, or an error libevent meets next */
        return 0;
    }
    return (size_t)w; /* n, or less with partial writes on: the caller queues the rest */
}

int tls_holds_input(SSL *ssl)
{
    return ssl && SSL_has_pending(ssl) ? 1 : 0;
}

const char *tls_error_reason(unsigned long err)
{
    const char *r = err ? ERR_reason_error_string(err) : NULL;
    return r ? r : "the peer closed or reset the connection without a TLS alert";
}
