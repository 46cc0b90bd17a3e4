/*
 * tls_fake.h - control of the host fake of Mbed TLS's SSL API and ESP-IDF's
 * certificate bundle (tests/esp_fake/tls), for tests that run the tcpota
 * TLS module (esp-idf/components/tcpota/tls_esp.c) on the host over a real
 * socket pair. The handshake is a toy ("CH" out, "SH" in), but the calls,
 * their order, the WANT_READ/WANT_WRITE contract and the verification
 * outcome follow Mbed TLS, and every call is written to a log the tests
 * compare. psa/crypto.h and mbedtls/platform_util.h are tests/esp_fake's;
 * a test without esp_fake.c and task_fake.c links tls_fake_alone.c.
 */
#ifndef TLS_FAKE_H
#define TLS_FAKE_H

#include <stddef.h>
#include <stdint.h>

struct tls_fake {
    char log[2048];          /* "call;call;..." in order */
    int hs_want_read;        /* the next handshake calls return WANT_READ first */
    uint32_t verify_flags;   /* nonzero: the handshake fails verification with these */
    const char *cert_host;   /* the name in the server's certificate */
    int write_want;          /* the next writes return WANT_WRITE, holding the record */
    size_t record_max;       /* largest record read or written (<= 64) */
    int setup_rc;            /* mbedtls_ssl_setup() returns this */
    int tickets;             /* the next reads return RECEIVED_NEW_SESSION_TICKET first */
    int read_rc, write_rc;   /* nonzero: the next read/write returns this */
    int undecrypted;         /* check_pending() says a record waits undecrypted */
    int psa_rc;              /* psa_crypto_init() returns this (tls_fake_alone.c) */
    int bundle_rc;           /* esp_crt_bundle_attach() returns this */
    int bundle_loaded;       /* the process-wide bundle is set (ESP-IDF's s_crt_bundle):
                              * attach loads it when unset, detach unsets it for
                              * every user of the bundle in the application */
    int ssl_live;            /* contexts set up and not yet freed */
    int conf_live;           /* configs initialised and not yet freed */
    int tls13;               /* handshakes negotiate TLS 1.3 (else 1.2) */
    int epoch;               /* the server's ticket key: older sessions are refused */
    int next_number;         /* number of the last session the server made */
    int set_session_rc;      /* mbedtls_ssl_set_session() returns this */
    int full, resumed;       /* handshakes done, each kind */
    int sessions_live;       /* sessions holding a ticket not yet freed */
};

extern struct tls_fake tls_fake;

/* Resets the fake: empty log, a certificate for "ota.example", records of
 * 64 bytes, every call succeeding. */
void tls_fake_reset(void);

/* The exporter's output for a label: what a real session would derive,
 * here a function of the label and length only. */
void tls_fake_exporter(const char *label, size_t label_len, uint8_t *out, size_t len);

#endif
