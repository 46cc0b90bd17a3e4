/*
 * tlsclient.h - bench-loadgen's TLS client, one place for all its modes
 * (check-ins, http10, tcpota and http transfers): a client context that
 * verifies the server against a CA file, and non-blocking handshake, read
 * and write steps on an epoll loop. Each connection is an SSL on a
 * connected non-blocking socket; the caller owns both and watches the
 * socket for the events a step asks for.
 */
#ifndef TCPOTA_BENCH_TLSCLIENT_H
#define TCPOTA_BENCH_TLSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* A client context that verifies the server's certificate against the CA
 * file `ca` (TLS 1.2 or later) and hands each new resumable session to
 * `keep` (NULL: sessions are not kept; see SSL_CTX_sess_set_new_cb for its
 * return value). Writes may be partial and retried from a moved buffer.
 * NULL after printing why. */
SSL_CTX *tlsc_context(const char *ca, int (*keep)(SSL *, SSL_SESSION *));

/* A TLS connection on the connected socket fd (SNI "localhost"), offering
 * `resume` (NULL: none), with `app` as its app data. NULL when out of
 * memory. */
SSL *tlsc_new(SSL_CTX *ctx, int fd, void *app, SSL_SESSION *resume);

/* Drives the handshake one step. Returns 1 when it is done, 0 when it
 * waits for *events (EPOLLIN or EPOLLOUT) on the socket, -1 when it failed. */
int tlsc_handshake(SSL *ssl, uint32_t *events);

/* Reads decrypted bytes into dst: a count, 0 when the server closed (a
 * close without close_notify counts as closed), or -1 with errno (EAGAIN:
 * nothing yet). */
ssize_t tlsc_recv(SSL *ssl, void *dst, size_t cap);

/* Writes up to n bytes: a count (> 0), or -1 with errno (EAGAIN: the
 * socket is full; call again with the same bytes first). */
ssize_t tlsc_send(SSL *ssl, const void *p, size_t n);

/* Marks an answered connection as cleanly ended before SSL_free(), so that
 * its session stays resumable (the benchmark's devices send no
 * close_notify; they just close). */
void tlsc_ended(SSL *ssl);

#endif
