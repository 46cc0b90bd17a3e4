/*
 * tcpota_esp_tls.h - TLS for the tcpota task (CONFIG_TCPOTA_TLS), with
 * mbedTLS's SSL API on the socket ports/common/tcpota_client.c connected.
 *
 * This module runs mbedtls_ssl_* over the client's connected, non-blocking
 * fd, not esp-tls (which could adopt the socket but brings its own
 * handshake loop and an allocated client session): the connect, poll and
 * reconnect code stays the one the host device uses (docs/esp-idf.md,
 * "Why not esp-tls"). Per task start, tcpota_esp_tls_init() checks the
 * configuration and loads the trust anchors (an embedded CA PEM or ESP-IDF's
 * certificate bundle); per connection, tcpota_esp_tls_handshake() runs the
 * handshake (TLS 1.2 or later, server certificate and host name verified),
 * driven by poll() through tcpota_client_wait() like cli/tls.c, and
 * tcpota_esp_tls_bind() hands the session's channel binding (the TLS
 * exporter, label TCPOTA_TLS_BINDING_LABEL, 32 bytes, no context;
 * docs/security.md) to the tcpota session before its first input, so that
 * an answer to a CHALLENGE is valid for this TLS session only. Records then
 * flow through the client's io hooks (tcpota_esp_tls_recv/send/pending);
 * tcpota_esp_tls_end() closes the session, tcpota_esp_tls_free() the rest.
 *
 * Session resumption (CONFIG_TCPOTA_TLS_RESUME): the session of the last
 * connection is kept in RAM (TLS 1.2: taken after the handshake; TLS 1.3:
 * taken when the server's NewSessionTicket arrives, which the io hooks read
 * past) and offered at the next handshake, so a periodic check-in costs a
 * resumed handshake. It is kept in the tcpota_esp_tls_t, which holds the
 * one host name and the one set of trust anchors tcpota_esp_tls_init()
 * loaded: a new init (other host, other CA) starts without one, so a
 * session is never offered to a server it was not made with. A session the
 * server refuses costs a full handshake, whose session replaces it; a
 * failed handshake drops it.
 *
 * Needs CONFIG_MBEDTLS_SSL_KEYING_MATERIAL_EXPORT (off by default in ESP-IDF
 * 5.5 and 6.0; CONFIG_TCPOTA_TLS selects it), and for the bundle
 * CONFIG_MBEDTLS_CERTIFICATE_BUNDLE (on by default).
 *
 * Memory: sizeof(tcpota_esp_tls_t) (the mbedTLS config, context and CA
 * chain structs) in the caller's storage; mbedTLS allocates its record
 * buffers and the handshake state on the heap per connection (see
 * docs/esp-idf.md, "TLS").
 */
#ifndef TCPOTA_ESP_TLS_H
#define TCPOTA_ESP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "sdkconfig.h"
#include "mbedtls/ssl.h"
#include "mbedtls/x509_crt.h"
#include "tcpota/device.h"
#include "tcpota_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest host name checked against the certificate (mbedTLS's limit). */
#define TCPOTA_ESP_TLS_HOST_MAX 255u
/* Handshake time limit when the config gives 0. */
#define TCPOTA_ESP_TLS_HANDSHAKE_MS 10000u

/* Where the trust anchors come from. */
typedef enum {
    TCPOTA_ESP_TLS_CA_NONE = 0, /* none: refused by tcpota_esp_tls_check() */
    TCPOTA_ESP_TLS_CA_PEM,      /* ca_pem: one or more PEM certificates */
    TCPOTA_ESP_TLS_CA_BUNDLE,   /* ESP-IDF's x509 bundle (esp_crt_bundle_attach) */
} tcpota_esp_tls_ca_t;

typedef struct {
    tcpota_esp_tls_ca_t ca;
    /* TCPOTA_ESP_TLS_CA_PEM: the PEM text, its terminating NUL included in
     * ca_pem_len (mbedtls_x509_crt_parse() takes PEM only so; files
     * embedded with EMBED_TXTFILES end in one). */
    const char *ca_pem;
    size_t ca_pem_len;
    /* Name the server's certificate must carry (and the SNI sent); NULL or
     * "": the server host the task connects to. */
    const char *host;
    uint32_t handshake_ms; /* 0: TCPOTA_ESP_TLS_HANDSHAKE_MS */
} tcpota_esp_tls_config_t;

typedef struct {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_ssl_context ssl;
    int fd;              /* the client's socket during a connection */
    int last_errno;      /* errno of the last failed socket call, or 0 */
    size_t write_len;    /* length of a write mbedTLS has to be called again with */
    struct tcpota_first_bytes first; /* the server's first bytes on this connection */
    uint8_t ready;       /* conf and CA set up (init succeeded) */
    uint8_t active;      /* ssl set up for the current connection */
    uint32_t handshake_ms;
    char host[TCPOTA_ESP_TLS_HOST_MAX + 1];
#ifdef CONFIG_TCPOTA_TLS_RESUME
    mbedtls_ssl_session kept; /* the session offered at the next handshake */
    uint8_t has_kept;         /* kept holds one */
#endif
} tcpota_esp_tls_t;

/* Fills *out from menuconfig (CONFIG_TCPOTA_TLS_CA_PEM: the PEM embedded
 * from CONFIG_TCPOTA_TLS_CA_PEM_PATH; CONFIG_TCPOTA_TLS_CA_BUNDLE: the
 * bundle; CONFIG_TCPOTA_TLS_HOST). */
void tcpota_esp_tls_kconfig(tcpota_esp_tls_config_t *out);

/* Checks a configuration without touching mbedTLS: a CA source is chosen,
 * a PEM is non-empty, NUL-terminated and holds a "-----BEGIN CERTIFICATE"
 * line, the bundle is built in (CONFIG_MBEDTLS_CERTIFICATE_BUNDLE), and
 * the host name (cfg->host, else server_host) is set and at most
 * TCPOTA_ESP_TLS_HOST_MAX long. On success copies the name to check into
 * host_out (TCPOTA_ESP_TLS_HOST_MAX + 1 bytes) when not NULL. Returns 0, or
 * TCPOTA_ERR_INVAL with err saying what is wrong and which option to set. */
int tcpota_esp_tls_check(const tcpota_esp_tls_config_t *cfg, const char *server_host,
                         char *host_out, char *err, size_t err_cap);

/* tcpota_esp_tls_check(), then sets up the mbedTLS config: client, TLS 1.2
 * minimum, peer verification required, the CA PEM parsed (every
 * certificate in it must parse) or the bundle attached. Returns 0,
 * TCPOTA_ERR_INVAL (bad config or CA, err says why) or TCPOTA_ERR_NOSPC
 * (out of memory). Undo with tcpota_esp_tls_free() either way. */
int tcpota_esp_tls_init(tcpota_esp_tls_t *t, const tcpota_esp_tls_config_t *cfg,
                        const char *server_host, char *err, size_t err_cap);

/* Runs the handshake on cl->fd (connected by tcpota_client_connect()),
 * waiting with tcpota_client_wait() whenever mbedTLS wants the socket, for
 * at most the config's handshake_ms. With CONFIG_TCPOTA_TLS_RESUME it
 * offers the kept session (see above; one mbedTLS refuses is dropped, at
 * debug level) and, over TLS 1.2, keeps the new one; a failure drops it. Returns 0, TCPOTA_ERR_CANCELED (a stop
 * was requested), TCPOTA_ERR_TIMEDOUT, TCPOTA_ERR_NOSPC (no memory for
 * the session), TCPOTA_ERR_DENIED (certificate or host name not accepted:
 * refused again next time, so the runner backs off as after an image
 * failure) or TCPOTA_ERR_PROTO (a TLS alert, the server not speaking TLS
 * or at its limits, a socket error: transient; never TCPOTA_ERR_IO, which
 * the runner takes for "server unreachable"), with err set. */
int tcpota_esp_tls_handshake(tcpota_esp_tls_t *t, struct tcpota_client *cl, char *err,
                             size_t err_cap);

/* After the handshake: derives the channel binding and hands it to the
 * session (tcpota_dev_set_binding); call before tcpota_client_run().
 * Returns 0 or TCPOTA_ERR_PROTO with err set. */
int tcpota_esp_tls_bind(tcpota_esp_tls_t *t, struct tcpota_dev *d, char *err, size_t err_cap);

/* The client's io hooks (tcpota_client_config io_recv/io_send/io_pending),
 * on the session the handshake set up: a byte count, 0 from recv once the
 * server closed, or -1 with errno (EAGAIN: poll and call again). recv reads
 * past TLS 1.3 session tickets, keeping each (CONFIG_TCPOTA_TLS_RESUME). */
long tcpota_esp_tls_recv(tcpota_esp_tls_t *t, void *buf, size_t n);
long tcpota_esp_tls_send(tcpota_esp_tls_t *t, const void *buf, size_t n);
size_t tcpota_esp_tls_pending(tcpota_esp_tls_t *t);

/* Ends the connection's session (a close_notify, best effort, never
 * waiting) before the socket is closed. No-op without one. */
void tcpota_esp_tls_end(tcpota_esp_tls_t *t);

/* Ends any session and frees the config, the CA chain and the kept
 * session. No-op when done. */
void tcpota_esp_tls_free(tcpota_esp_tls_t *t);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_ESP_TLS_H */
