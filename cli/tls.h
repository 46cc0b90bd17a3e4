/* tls.h - TLS for the host device (`tcpota device --ca CA`), on OpenSSL,
 * layered on the shared client's socket through its io_* hooks. The server
 * certificate must chain to CA and name the host the device dialled. */
#ifndef TCPOTA_CLI_TLS_H
#define TCPOTA_CLI_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "tcpota_client.h" /* struct tcpota_first_bytes */

struct tcpota_client;
struct tcpota_dev;

/* Room for "host:port anchors=..." naming the server a kept session
 * belongs to and what the device trusted when it was verified. */
#define CLI_TLS_PEER_MAX 340
/* Room for the trust anchors' name: "ca-" and the hex of the first
 * CLI_TLS_ANCHOR_BYTES of the --ca file's SHA-256, or "system". */
#define CLI_TLS_ANCHOR_BYTES 8u
#define CLI_TLS_ANCHORS_MAX (3u + 2u * CLI_TLS_ANCHOR_BYTES + 1u)
/* A --ca file larger than this is refused (the system's bundle is ~200 KiB). */
#define CLI_CA_FILE_MAX (4u << 20)

struct cli_tls {
    void *ctx;                /* SSL_CTX */
    void *ssl;                /* SSL of the current connection, or NULL */
    const char *session_file; /* where the session is kept, or NULL */
    char peer[CLI_TLS_PEER_MAX]; /* the server of the current connection */
    int resumed;              /* the last handshake resumed a kept session */
    const char *ca_file;      /* the --ca file, or NULL: the system's CAs */
    char anchors[CLI_TLS_ANCHORS_MAX]; /* what verified a kept session (cli_tls_init) */
    struct tcpota_first_bytes first; /* the server's first bytes on this connection */
    char mismatch[700]; /* a certificate refused for its name: the names it is for */
};

/* A client context (SSL_CTX) that verifies servers, TLS 1.2 at least,
 * trusting the certificates in ca_file (a regular file; NULL: the system's,
 * OpenSSL's default paths). NULL after "tcpota CMD: WHAT: cannot load CA
 * file FILE: REASON" on stderr, WHAT where the file was named ("--ca"),
 * REASON what the file holds instead when it is not a certificate, and to
 * give the CA that signed `peer` ("the server's"). Free it with
 * cli_tls_ctx_free(). */
void *cli_tls_client_ctx(const char *cmd, const char *ca_file, const char *what, const char *peer);
void cli_tls_ctx_free(void *ctx);
/* OpenSSL's error e as text into buf: its reason, else the code in full
 * (e 0: "no reason given by OpenSSL"). Returns buf. */
const char *cli_tls_error_text(unsigned long e, char *buf, size_t cap);

/* What to do about a peer certificate OpenSSL did not accept (verify
 * result v, an X509_V_ERR_ code), into buf: name the host the certificate
 * is for (given with host_flag, "--server"), renew `whose` certificate
 * ("the server's") or put it right, or give the CA that signed it: ca_file
 * (named by ca_from, "--ca") does not hold it, or, no file given, with
 * ca_flags ("--ca FILE"). Returns buf; CLI_TLS_TODO_LEN holds any. */
#define CLI_TLS_TODO_LEN 4352u /* a --ca path of up to 4 KiB and the advice around it */
const char *cli_tls_verify_todo(long v, const char *whose, const char *host_flag,
                                const char *ca_from, const char *ca_file, const char *ca_flags,
                                char *buf, size_t cap);

/* Loads the CA file (cli_tls_client_ctx). session_file (NULL: none) is where the session the
 * server last gave (its TLS 1.3 ticket, or 1.2 session) is kept between
 * connections and runs, so the next connection to the same host:port
 * resumes it: one ECDHE and no certificate chain instead of a full
 * handshake. A session is resumed only with the trust anchors that
 * verified it (the --ca file's contents, or the system's): a resumption
 * skips the certificate, so a device given another CA must verify again.
 * A damaged or foreign file is ignored (a full handshake follows, and a
 * good session replaces it). Returns 0 or -1 with a message on stderr. */
int cli_tls_init(struct cli_tls *t, const char *ca_file, const char *session_file);
/* cli_tls_handshake's returns when retrying cannot help: the server's
 * certificate did not verify (another CA, name, dates: a configuration to
 * fix, or a rogue server), or the server answered without TLS (a plain
 * port). */
#define CLI_TLS_CERT_REFUSED (-2)
#define CLI_TLS_NOT_TLS (-3)
/* Runs the handshake on the client's connected socket, verifying the
 * certificate for `host`, within timeout_ms. Returns 0, or with the reason
 * in err CLI_TLS_CERT_REFUSED ("certificate verify failed: hostname
 * mismatch; give --server ..."), CLI_TLS_NOT_TLS ("the server answered
 * without TLS ...") or -1:
 * OpenSSL's other reasons ("sslv3 alert handshake failure"), the server
 * closed the connection during the handshake, or a timeout. */
int cli_tls_handshake(struct cli_tls *t, struct tcpota_client *cl, const char *host,
                      uint16_t port, uint32_t timeout_ms, char *err, size_t cap);
/* Derives this TLS session's channel binding (RFC 5705 / 8446 exporter,
 * label TCPOTA_TLS_BINDING_LABEL, no context) and hands it to the device
 * session with tcpota_dev_set_binding(), so its answer to a CHALLENGE
 * verifies only inside this TLS session. Call right after a successful
 * cli_tls_handshake(). Returns 0, or -1 with the reason in err. */
int cli_tls_bind(struct cli_tls *t, struct tcpota_dev *d, char *err, size_t cap);
/* Transport hooks for struct tcpota_client_config (ctx = the cli_tls),
 * with its io_recv/io_send/io_pending contract: a byte count, 0 (recv: the
 * peer closed) or -1 with errno (EAGAIN: wait in poll and call again);
 * pending: decrypted bytes readable without waiting on the socket. */
long cli_tls_recv(struct cli_tls *t, void *buf, size_t n);
long cli_tls_send(struct cli_tls *t, const void *buf, size_t n);
size_t cli_tls_pending(struct cli_tls *t);
/* Ends the connection's TLS session (before the socket closes). */
void cli_tls_end(struct cli_tls *t);
/* Ends any session and frees the context of cli_tls_init (safe after a
 * failed init). */
void cli_tls_free(struct cli_tls *t);

#endif
