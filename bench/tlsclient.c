/* tlsclient.c - bench-loadgen's TLS client (see tlsclient.h). */
#include "tlsclient.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>

#include <openssl/err.h>

SSL_CTX *tlsc_context(const char *ca, int (*keep)(SSL *, SSL_SESSION *))
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load the CA file %s\n", ca);
        if (ctx) SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The transfer modes send what their session queued and retry the
     * rest later, from wherever the session keeps it by then. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Sessions are kept per device (keep), not in OpenSSL's cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (keep) SSL_CTX_sess_set_new_cb(ctx, keep);
    return ctx;
}

SSL *tlsc_new(SSL_CTX *ctx, int fd, void *app, SSL_SESSION *resume)
{
    SSL *ssl = SSL_new(ctx);

    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        if (ssl) SSL_free(ssl);
        return NULL;
    }
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set_app_data(ssl, app);
    if (resume) SSL_set_session(ssl, resume);
    return ssl;
}

int tlsc_handshake(SSL *ssl, uint32_t *events)
{
    int rc = SSL_connect(ssl), e;

    if (rc == 1) return 1;
    e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
        return 0;
    }
    ERR_clear_error();
    return -1;
}

ssize_t tlsc_recv(SSL *ssl, void *dst, size_t cap)
{
    int rc = SSL_read(ssl, dst, cap > INT32_MAX ? INT32_MAX : (int)cap), e;

    if (rc > 0) return rc;
    e = SSL_get_error(ssl, rc);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && rc == 0)) return 0;
    errno = ECONNRESET;
    return -1;
}

ssize_t tlsc_send(SSL *ssl, const void *p, size_t n)
{
    int rc = SSL_write(ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), e;

    if (rc > 0) return rc;
    e = SSL_get_error(ssl, rc);
    ERR_clear_error();
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
    return -1;
}

void tlsc_ended(SSL *ssl)
{
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}
