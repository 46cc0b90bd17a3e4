/* tls_server.h - TLS for `tcpota serve --tls-cert`: the server context, and the
 * channel binding a device's authentication covers inside TLS. */
#ifndef TCPOTA_SERVER_TLS_SERVER_H
#define TCPOTA_SERVER_TLS_SERVER_H

#include "tcpota/codec.h"
#include "tls_pem.h" /* tls_pem_kind, for cli/serve.c's checks too */

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

struct tcpota_serve_opts;

/* A server context (TLS 1.2 or later) with this certificate chain and key
 * (key NULL: in the certificate's file). NULL after printing why on
 * stderr; a certificate out of its dates loads (tls_warn_cert). */
SSL_CTX *tls_context(const struct tcpota_serve_opts *o, const char *cert, const char *key);

/* A certificate out of its validity still loads (a device without a clock
 * may take it), but devices that check dates refuse every handshake:
 * warns in o's log when ctx's certificate (from file `path`) has expired
 * or is not valid yet. Warns too when it is a CA's (basicConstraints
 * CA:TRUE) issued by another: whoever holds its key can issue certificates
 * for any name that devices trusting its issuer accept (a self-signed one,
 * the devices' only anchor, gives its key nothing more than this server). */
void tls_warn_cert(const struct tcpota_serve_opts *o, const char *path, SSL_CTX *ctx);

/* 1 when x is a CA's own certificate: self-signed, CA:TRUE, naming no
 * server (no subjectAltName), as a CA made with the README's recipe is; a
 * self-signed server certificate names itself there. Serve warns of one
 * given as --tls-cert (tls_warn_cert), a device refused for its name says
 * it may be that (cli/tls.c): a new user's trial gave serve ca.pem. */
int tls_cert_ca_own(X509 *x);

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
 * download's, whose evhttp reads on its own terms) as the server's end,
 * for SSL_read and SSL_write on its socket (conn.c): OpenSSL reads ahead,
 * taking every record waiting in the socket in one read() instead of two
 * read()s per record (a streaming device's ACKs are a 38-byte record
 * each), so the caller must take all it holds (tls_read); SSL_write's
 * retry after a WANT_WRITE may pass the same bytes from another address;
 * no renegotiation. Asks for kernel TLS too (tls_kernel_sends). */
void tls_conn_setup(SSL *ssl);

/* What an SSL_read, SSL_write or SSL_do_handshake that returned r <= 0
 * means, as the socket calls would say it. */
enum tls_io {
    TLS_IO_AGAIN = 1, /* wait for the socket (WANT_READ, WANT_WRITE) */
    TLS_IO_EOF,       /* the peer's end: close_notify, or the TCP end without
                       * it (SSL_OP_IGNORE_UNEXPECTED_EOF, tls_conn_setup);
                       * during the handshake the caller's to call a failure */
    TLS_IO_ERROR,     /* errno: the socket's error; 0: *err, OpenSSL's reason
                       * (0: none known, a close during the handshake) */
};

/* Maps an OpenSSL call's failure (return value r) to enum tls_io, and
 * clears OpenSSL's error queue; *err is the reason of a TLS_IO_ERROR
 * (else 0). Call it at once after the call, with errno as it left it. */
int tls_io_failed(SSL *ssl, int r, unsigned long *err);

/* Reads plaintext into buf[0..cap): the next record, and every further
 * whole record OpenSSL holds (read ahead) while buf has room. Returns the
 * bytes read (> 0), or minus an enum tls_io (tls_io_failed; *err its
 * reason). A failure met after bytes were read (a bad record behind good
 * ones) is not lost, as OpenSSL says it only once: the bytes are returned
 * and *later is minus its enum tls_io (else 0), *err and errno as
 * tls_io_failed left them, for the caller to report after the bytes. */
int tls_read(SSL *ssl, uint8_t *buf, size_t cap, unsigned long *err, int *later);

/* Encrypts and writes p[0..n), in records of up to 16 KiB. Returns n, or
 * minus an enum tls_io (tls_io_failed; *err its reason): after
 * TLS_IO_AGAIN (some records may be out) the next call must pass the same
 * bytes from their start (at any address), and may pass more. */
int tls_write(SSL *ssl, const void *p, size_t n, unsigned long *err);

/* One step of the server's handshake (tls_conn_setup). Returns 1 when it
 * is done, or minus an enum tls_io: TLS_IO_AGAIN, then SSL_want_write()
 * says whether it waits for room to write, else for the peer. */
int tls_accept_step(SSL *ssl, unsigned long *err);

/* Encrypts and writes p[0..n) at once, for a caller with nothing queued
 * (whose queued writes wait for the socket to be writable: an epoll_ctl()
 * and a loop turn). Returns n, or 0 when the socket did not take them
 * all: the caller then queues them, and its next write must pass the same
 * bytes from their start, as OpenSSL requires after a WANT_WRITE. An
 * error is left for that write to meet and report. */
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
