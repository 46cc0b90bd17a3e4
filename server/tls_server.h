/* tls_server.h - TLS for `tcpota serve --tls-cert`: the server context, and the
 * channel binding a device's authentication covers inside TLS. */
#ifndef TCPOTA_SERVER_TLS_SERVER_H
#define TCPOTA_SERVER_TLS_SERVER_H

#include "tcpota/codec.h"
#include "tls_pem.h" /* tls_pem_kind, for cli/serve.c's checks too */

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct tcpota_serve_opts;

/* A server context (TLS 1.2 or later) with this certificate chain and key
 * (key NULL: in the certificate's file). NULL after printing why on
 * stderr; a certificate out of its dates loads (tls_warn_dates). */
SSL_CTX *tls_context(const struct tcpota_serve_opts *o, const char *cert, const char *key);

/* A certificate out of its validity still loads (a device without a clock
 * may take it), but devices that check dates refuse every handshake:
 * warns in o's log when ctx's certificate (from file `path`) has expired
 * or is not valid yet. */
void tls_warn_dates(const struct tcpota_serve_opts *o, const char *path, SSL_CTX *ctx);

/* Drops this reference to ctx (NULL: nothing); its ticket keys are wiped
 * when the last connection that holds it is freed. */
void tls_context_free(SSL_CTX *ctx);

/* "valid until DATE" of ctx's certificate into buf, said to be unchanged
 * when it is the certificate of `before` (NULL: none): a reload that read
 * an old copy (systemd's credentials are copied at start) shows. Returns
 * buf. */
const char *tls_cert_says(SSL_CTX *ctx, SSL_CTX *before, char *buf, size_t cap);

/* A reload's new context `to` seals and opens tickets with the key
 * OpenSSL made for `from` at start, when neither has the operator's keys
 * (--tls-ticket-key): devices keep resuming across a SIGHUP. Returns 0, or
 * -1 when OpenSSL would not hand the key over (devices then make one full
 * handshake each). */
int tls_keep_own_tickets(SSL_CTX *to, SSL_CTX *from);

/* Writes the TLS exporter of this connection under TCPOTA_TLS_BINDING_LABEL
 * (codec.h), the binding a device's AUTH must cover. Returns 0, or -1 when
 * the handshake has not finished. */
int tls_binding(SSL *ssl, uint8_t out[TCPOTA_TLS_BINDING_LEN]);

/* Sets up a device connection's TLS (tcpota's own, not the HTTP
 * download's, whose evhttp reads on its own terms): OpenSSL reads ahead,
 * taking every record waiting in the socket in one read() instead of two
 * read()s per record (a streaming device's ACKs are a 38-byte record
 * each). The caller must then take what OpenSSL holds (tls_pull) after
 * every read libevent made for it, and after the handshake: bytes read
 * ahead are never signalled by the socket again. Asks for kernel TLS too
 * (tls_kernel_sends). */
void tls_conn_setup(SSL *ssl);

/* Moves the bytes of the next record OpenSSL holds (read ahead) into `in`.
 * Returns the count moved; 0 when it holds no whole record, or when the
 * connection failed (libevent reports that on its next read). Reads the
 * socket only to finish a partial record. */
size_t tls_pull(SSL *ssl, struct evbuffer *in);

/* Encrypts and writes p[0..n) at once, for a caller with nothing queued
 * in the connection's bufferevent (whose own writes wait for the socket
 * to be writable: an epoll_ctl() and a loop turn). Returns the bytes
 * written (n, or less with partial writes on), 0 when the socket took
 * none: the caller then queues the rest in the bufferevent, whose write retries them as OpenSSL requires after a
 * WANT_WRITE (the same bytes, from their start). An error is left for
 * libevent's own write to meet and report. */
size_t tls_write_now(SSL *ssl, const void *p, size_t n);

/* 1 when the kernel encrypts what this connection sends (kernel TLS,
 * asked for by tls_conn_setup and set up by OpenSSL at the handshake's end
 * where the kernel offers the `tls` upper-layer protocol and the cipher
 * suits it), else 0. Then every byte written to the socket is application
 * data: the caller may send with send() and sendfile() as on a plain
 * socket, the file's pages going to the kernel's encryption uncopied. */
int tls_kernel_sends(SSL *ssl);

/* 1 when the peer asked for a TLS 1.3 key update that OpenSSL would send
 * with its next SSL_write, else 0. A connection whose sends the kernel
 * encrypts never calls SSL_write, and OpenSSL 3.0 cannot hand the kernel a
 * new sending key: such a connection must end instead of sending on. */
int tls_key_update_pending(SSL *ssl);

/* 1 when OpenSSL holds bytes of the connection not yet taken, else 0. */
int tls_holds_input(SSL *ssl);

/* Why a TLS connection failed, from OpenSSL's error code `err` (0: none
 * known): its reason string, or a plain sentence when there is none. */
const char *tls_error_reason(unsigned long err);

#endif
