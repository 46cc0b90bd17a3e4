/* mbedtls/ssl.h - host fake of the part of Mbed TLS 3.6's SSL API that the
 * tcpota TLS module uses (tests/esp_fake/tls; control in tls_fake.h).
 * Names, values and calling contracts as in Mbed TLS; the "TLS" itself is
 * a toy over the BIO callbacks the module sets: the handshake sends "CH"
 * and expects "SH" from the peer, records are the plain bytes. Writes keep
 * Mbed TLS's rule that a write answered with WANT_WRITE holds its record
 * and, called again, sends that record and reports the new call's length
 * as written. Sessions: a handshake offered a session (set_session) with
 * the server's current ticket-key epoch and the same host name resumes it,
 * else it is a full one that makes a new session; TLS 1.2 sessions are
 * exportable after the handshake, TLS 1.3 ones too but useless until a
 * ticket is read, each once (mbedtls_ssl_get_session(), as Mbed TLS 3.6
 * and 4). */
#ifndef ESP_FAKE_MBEDTLS_SSL_H
#define ESP_FAKE_MBEDTLS_SSL_H

#include <stddef.h>
#include <stdint.h>

#include "mbedtls/build_info.h"
#include "mbedtls/x509_crt.h"

#define MBEDTLS_ERR_SSL_BAD_INPUT_DATA -0x7100
#define MBEDTLS_ERR_SSL_INVALID_RECORD -0x7200
#define MBEDTLS_ERR_SSL_CONN_EOF -0x7280
#define MBEDTLS_ERR_SSL_ALLOC_FAILED -0x7F00
#define MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY -0x7880
#define MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET -0x7B00
#define MBEDTLS_ERR_SSL_WANT_READ -0x6900
#define MBEDTLS_ERR_SSL_WANT_WRITE -0x6880
#define MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE -0x7080

#define MBEDTLS_SSL_IS_CLIENT 0
#define MBEDTLS_SSL_TRANSPORT_STREAM 0
#define MBEDTLS_SSL_PRESET_DEFAULT 0
#define MBEDTLS_SSL_VERIFY_NONE 0
#define MBEDTLS_SSL_VERIFY_OPTIONAL 1
#define MBEDTLS_SSL_VERIFY_REQUIRED 2

typedef enum {
    MBEDTLS_SSL_VERSION_UNKNOWN,
    MBEDTLS_SSL_VERSION_TLS1_2 = 0x0303,
    MBEDTLS_SSL_VERSION_TLS1_3 = 0x0304,
} mbedtls_ssl_protocol_version;

/* A session as the fake's "server" made it: its number, the ticket-key
 * epoch it was made under, the host name it was made for, and a ticket on
 * the heap (so that a session never freed shows as a leak under ASan). */
typedef struct mbedtls_ssl_session {
    int number; /* 0: empty */
    int epoch;
    mbedtls_ssl_protocol_version version;
    char host[256];
    unsigned char *ticket;
} mbedtls_ssl_session;

typedef int mbedtls_ssl_send_t(void *ctx, const unsigned char *buf, size_t len);
typedef int mbedtls_ssl_recv_t(void *ctx, unsigned char *buf, size_t len);
typedef int mbedtls_ssl_recv_timeout_t(void *ctx, unsigned char *buf, size_t len,
                                       uint32_t timeout);

typedef struct mbedtls_ssl_config {
    int defaults;  /* config_defaults called: endpoint*100 + transport*10 + preset */
    int authmode;  /* -1 until set */
    mbedtls_ssl_protocol_version min_version;
    int (*f_rng)(void *, unsigned char *, size_t);
    mbedtls_x509_crt *ca_chain;
    int bundle;    /* esp_crt_bundle_attach'ed */
} mbedtls_ssl_config;

typedef struct mbedtls_ssl_context {
    const mbedtls_ssl_config *conf;
    char hostname[256];
    int has_hostname;
    void *p_bio;
    mbedtls_ssl_send_t *f_send;
    mbedtls_ssl_recv_t *f_recv;
    int hs_state;  /* 0 start, 1 "CH" sent, 2 done */
    uint32_t verify_result;
    unsigned char pending[64]; /* a record WANT_WRITE left to send */
    size_t pending_len;
    unsigned char in[64];      /* a record read, not yet handed out */
    size_t in_off, in_len;
    mbedtls_ssl_protocol_version version; /* negotiated */
    mbedtls_ssl_session session;   /* the connection's (TLS 1.3: the last ticket's) */
    int exported;                  /* session exported since it last changed */
    mbedtls_ssl_session offered;   /* set by mbedtls_ssl_set_session() */
} mbedtls_ssl_context;

void mbedtls_ssl_init(mbedtls_ssl_context *ssl);
void mbedtls_ssl_free(mbedtls_ssl_context *ssl);
void mbedtls_ssl_config_init(mbedtls_ssl_config *conf);
void mbedtls_ssl_config_free(mbedtls_ssl_config *conf);
int mbedtls_ssl_config_defaults(mbedtls_ssl_config *conf, int endpoint, int transport, int preset);
void mbedtls_ssl_conf_rng(mbedtls_ssl_config *conf, int (*f_rng)(void *, unsigned char *, size_t),
                          void *p_rng);
void mbedtls_ssl_conf_min_tls_version(mbedtls_ssl_config *conf,
                                      mbedtls_ssl_protocol_version tls_version);
void mbedtls_ssl_conf_authmode(mbedtls_ssl_config *conf, int authmode);
void mbedtls_ssl_conf_ca_chain(mbedtls_ssl_config *conf, mbedtls_x509_crt *ca_chain,
                               void *ca_crl);
int mbedtls_ssl_setup(mbedtls_ssl_context *ssl, const mbedtls_ssl_config *conf);
int mbedtls_ssl_set_hostname(mbedtls_ssl_context *ssl, const char *hostname);
void mbedtls_ssl_set_bio(mbedtls_ssl_context *ssl, void *p_bio, mbedtls_ssl_send_t *f_send,
                         mbedtls_ssl_recv_t *f_recv, mbedtls_ssl_recv_timeout_t *f_recv_timeout);
int mbedtls_ssl_handshake(mbedtls_ssl_context *ssl);
uint32_t mbedtls_ssl_get_verify_result(const mbedtls_ssl_context *ssl);
int mbedtls_ssl_read(mbedtls_ssl_context *ssl, unsigned char *buf, size_t len);
int mbedtls_ssl_write(mbedtls_ssl_context *ssl, const unsigned char *buf, size_t len);
size_t mbedtls_ssl_get_bytes_avail(const mbedtls_ssl_context *ssl);
int mbedtls_ssl_check_pending(const mbedtls_ssl_context *ssl);
int mbedtls_ssl_close_notify(mbedtls_ssl_context *ssl);
void mbedtls_ssl_session_init(mbedtls_ssl_session *session);
void mbedtls_ssl_session_free(mbedtls_ssl_session *session);
int mbedtls_ssl_get_session(const mbedtls_ssl_context *ssl, mbedtls_ssl_session *session);
int mbedtls_ssl_set_session(mbedtls_ssl_context *ssl, const mbedtls_ssl_session *session);
mbedtls_ssl_protocol_version mbedtls_ssl_get_version_number(const mbedtls_ssl_context *ssl);
#ifdef MBEDTLS_SSL_KEYING_MATERIAL_EXPORT
int mbedtls_ssl_export_keying_material(mbedtls_ssl_context *ssl, uint8_t *out,
                                       const size_t key_len, const char *label,
                                       const size_t label_len, const unsigned char *context,
                                       const size_t context_len, const int use_context);
#endif

#endif
