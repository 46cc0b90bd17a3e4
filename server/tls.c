/* tls.c - the TLS context (see tls_server.h). */
#include "tls_server.h"
#include "log.h"
#include "server.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h> /* X509_check_ca, X509_check_issued */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* "YYYY-MM-DD HH:MM:SS UTC" and its NUL, with room to spare. */
#define TLS_DATE_MAX 40u

/* What a file that OpenSSL would not take holds, for the message. */
static const char *pem_says(const char *path, int want_key)
{
    switch (tls_pem_kind(path)) {
    case TLS_PEM_EMPTY:
        return want_key ? "the file is empty; give the certificate's private key (PEM)"
                        : "the file is empty; give the server's certificate (PEM), its chain after it";
    case TLS_PEM_KEY:
        return want_key ? "" : "it holds a private key, not a certificate: are --tls-cert and "
                               "--tls-key swapped?";
    case TLS_PEM_CERT:
        return want_key ? "it holds a certificate, not a private key: are --tls-cert and "
                          "--tls-key swapped?"
                        : "";
    case TLS_PEM_OTHER: return "it holds no PEM certificate or key (-----BEGIN ...-----)";
    default: return "";
    }
}

/* Prints why `path` (the certificate, or the key when want_key) was not
 * taken: what it holds when that says more than OpenSSL's reason. */
static void tls_file_failed(const char *what, const char *path, int want_key)
{
    const char *says = pem_says(path, want_key);
    const char *why = ERR_reason_error_string(ERR_get_error());

    /* A file of the right kind that does not read: cut short or changed. */
    enum tls_pem kind = tls_pem_kind(path);
    const char *again = !*says && kind == (want_key ? TLS_PEM_KEY : TLS_PEM_CERT)
                            ? "; the file may be cut short or changed: copy it again"
                            : "";

    fprintf(stderr, "tcpota serve: cannot use the TLS %s %s: %s%s\n", what, path,
            *says ? says : why ? why : "unknown error", again);
}

/* "2026-12-03 16:00:10 UTC" from an ASN1 time into buf. */
static const char *asn1_date(const ASN1_TIME *t, char *buf, size_t cap)
{
    struct tm tm;

    if (!t || ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
        snprintf(buf, cap, "an unreadable date");
    }
    return buf;
}

int tls_cert_ca_own(X509 *x)
{
    return X509_check_ca(x) == 1 && X509_check_issued(x, x) == X509_V_OK &&
           X509_get_ext_by_NID(x, NID_subject_alt_name, -1) < 0;
}

/* tls_server.h. Said at start and reload, rather than found in the
 * devices' logs ("certificate has expired"). */
void tls_warn_cert(const struct tcpota_serve_opts *o, const char *path, SSL_CTX *ctx)
{
    X509 *x = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
    char when[TLS_DATE_MAX];

    if (!x) return;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        say_always(o, LOG_LV_WARN, "warning: the TLS certificate %s expired on %s: devices "
                   "that check dates refuse it; renew it and reload the server (SIGHUP)", path,
                   asn1_date(X509_get0_notAfter(x), when, sizeof(when)));
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        say_always(o, LOG_LV_WARN, "warning: the TLS certificate %s is not valid before %s: "
                   "devices that check dates refuse it until then; is this host's clock right?",
                   path, asn1_date(X509_get0_notBefore(x), when, sizeof(when)));
    }
    if (tls_cert_ca_own(x)) {
        say_always(o, LOG_LV_WARN, "warning: the TLS certificate %s is self-signed, a CA's "
                   "(CA:TRUE), and names no server (no subjectAltName): is it the CA's own "
                   "certificate? --tls-cert takes the certificate the CA issued for this server "
                   "(devices compare the name they connect to with its names)", path);
    }
    if (X509_check_ca(x) == 1 && X509_check_issued(x, x) != X509_V_OK) {
        say_always(o, LOG_LV_WARN, "warning: the TLS certificate %s is a CA's (basicConstraints "
                   "CA:TRUE): whoever holds its key can issue certificates that every device "
                   "trusting its issuer accepts, for any server name; issue it as a server's "
                   "(openssl: -addext basicConstraints=critical,CA:FALSE, as the README does) and "
                   "reload the server (SIGHUP)", path);
    }
}

/* --tls-ticket-key: the keys of one server context, the first for new
 * tickets, kept in the context's ex_data so that a context a reload
 * (SIGHUP) replaced goes on with its own keys for as long as a connection
 * holds it; wiped and freed with the context. Read by OpenSSL's ticket
 * callback. */
#define TICKET_NAME_LEN 16u
#define TICKET_HMAC_LEN 32u
#define TICKET_AES_LEN 32u
_Static_assert(TICKET_NAME_LEN + TICKET_HMAC_LEN + TICKET_AES_LEN == TLS_TICKET_KEY_LEN,
               "a ticket key file is its name, its HMAC key and its AES key");
#define TICKET_HMAC(k) ((k) + TICKET_NAME_LEN)
#define TICKET_AES(k) ((k) + TICKET_NAME_LEN + TICKET_HMAC_LEN)
struct ticket_keys {
    size_t n;
    uint8_t k[TLS_TICKET_KEYS_MAX][TLS_TICKET_KEY_LEN];
};
static int ticket_keys_idx = -1;

static void ticket_keys_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                             void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (ptr) OPENSSL_clear_free(ptr, sizeof(struct ticket_keys));
}

/* OpenSSL asks for a key to seal a new ticket (enc 1) or for the key that
 * sealed a ticket a client offers (enc 0: found by its name). Returns 1
 * after sealing; 2 after opening, "renew": the client gets a new ticket,
 * sealed with the first key (OpenSSL 3.0 sends a TLS 1.3 client a ticket
 * after a resumption only when told to renew, and a client that uses each
 * TLS 1.3 ticket once, as RFC 8446 advises and bench-loadgen and openssl
 * s_client do, would otherwise make a full handshake every other
 * check-in); 0 for a ticket of no key here (a full handshake follows); -1
 * on an error. */
static int ticket_cb(SSL *ssl, unsigned char name[TICKET_NAME_LEN],
                     unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    const struct ticket_keys *tk = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticket_keys_idx);
    OSSL_PARAM params[3];
    size_t k = 0;

    if (!tk || !tk->n) {
        return -1;
    }
    if (enc) {
        /* A new ticket: the first key, a fresh IV. */
        memcpy(name, tk->k[0], TICKET_NAME_LEN);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) {
            return -1;
        }
    } else {
        while (k < tk->n && CRYPTO_memcmp(name, tk->k[k], TICKET_NAME_LEN) != 0) {
            k++;
        }
        if (k == tk->n) {
            return 0;
        }
    }
    if (EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, TICKET_AES(tk->k[k]), iv, enc) != 1) {
        return -1;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)TICKET_HMAC(tk->k[k]),
                                                  TICKET_HMAC_LEN);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) {
        return -1;
    }
    return enc ? 1 : 2;
}

/* Tickets sealed with the operator's keys: the same on every node behind
 * a balancer and across restarts and reloads, so a device resumes
 * wherever it lands. */
static int use_ticket_keys(SSL_CTX *ctx, const struct tcpota_serve_opts *o)
{
    struct ticket_keys *tk;

    if (!o->nticket_keys) {
        return 0;
    }
    if (ticket_keys_idx < 0) {
        ticket_keys_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ticket_keys_free);
    }
    tk = ticket_keys_idx >= 0 ? OPENSSL_zalloc(sizeof(*tk)) : NULL;
    if (!tk) {
        fprintf(stderr, "tcpota serve: out of memory for the TLS ticket keys\n");
        return -1;
    }
    tk->n = o->nticket_keys < TLS_TICKET_KEYS_MAX ? o->nticket_keys : TLS_TICKET_KEYS_MAX;
    memcpy(tk->k, o->ticket_keys, tk->n * TLS_TICKET_KEY_LEN);
    if (SSL_CTX_set_ex_data(ctx, ticket_keys_idx, tk) != 1) {
        OPENSSL_clear_free(tk, sizeof(*tk));
        fprintf(stderr, "tcpota serve: out of memory for the TLS ticket keys\n");
        return -1;
    }
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
        fprintf(stderr, "tcpota serve: OpenSSL refused the ticket key callback: %s\n",
                ERR_reason_error_string(ERR_get_error()));
        return -1;
    }
    return 0;
}

/* OpenSSL's passphrase callback: never a prompt (OpenSSL's own reads the
 * terminal: a reload then stopped the event loop at "Enter PEM pass
 * phrase:", and without a terminal the start said "processing error").
 * Notes in *asked that a passphrase was wanted. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf, (void)size, (void)rwflag;
    if (asked) *(int *)asked = 1;
    return -1;
}

SSL_CTX *tls_context(const struct tcpota_serve_opts *o, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *k = key ? key : cert;
    int mismatch = 0, asked = 0;

    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        fprintf(stderr, "tcpota serve: OpenSSL cannot make a TLS context: %s\n",
                ERR_reason_error_string(ERR_get_error()));
        goto fail;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        tls_file_failed("certificate", cert, 0);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, k, SSL_FILETYPE_PEM) != 1) {
        if (asked) {
            fprintf(stderr, "tcpota serve: the TLS key %s is protected by a passphrase, which "
                            "tcpota serve cannot be given (it may start unattended and reloads on "
                            "SIGHUP); write the key without one, readable by the server alone: "
                            "openssl pkey -in %s -out KEY.pem && chmod 600 KEY.pem, and give "
                            "--tls-key KEY.pem\n", k, k);
            goto fail;
        }
        if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
            tls_file_failed("key", k, 1);
            goto fail;
        }
        /* OpenSSL compares the key with the certificate as it loads it:
         * said below, as SSL_CTX_check_private_key's failure would be. */
        mismatch = 1;
    }
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL); /* asked is this call's */
    if (mismatch || SSL_CTX_check_private_key(ctx) != 1) {
        fprintf(stderr, "tcpota serve: the TLS key %s is not the key of the certificate %s; give "
                        "the key the certificate was made for\n", k, cert);
        goto fail;
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
    if (use_ticket_keys(ctx, o) < 0) {
        goto fail;
    }
    if (o->tls_ticket_lifetime_s) {
        /* A device that checks in less often than this makes a full
         * handshake every time. */
        (void)SSL_CTX_set_timeout(ctx, (long)o->tls_ticket_lifetime_s);
    }
    return ctx;
fail:
    ERR_clear_error();
    if (ctx) SSL_CTX_free(ctx);
    return NULL;
}


void tls_context_free(SSL_CTX *ctx)
{
    if (ctx) SSL_CTX_free(ctx); /* its ticket keys with it (ticket_keys_free) */
}

const char *tls_cert_says(SSL_CTX *ctx, SSL_CTX *before, char *buf, size_t cap)
{
    X509 *x = SSL_CTX_get0_certificate(ctx), *was = before ? SSL_CTX_get0_certificate(before) : NULL;
    char when[TLS_DATE_MAX];

    snprintf(buf, cap, "%svalid until %s",
             x && was && X509_cmp(x, was) == 0 ? "unchanged: the file holds the certificate "
                                                  "already in use, " : "",
             asn1_date(x ? X509_get0_notAfter(x) : NULL, when, sizeof(when)));
    return buf;
}

int tls_keep_own_tickets(SSL_CTX *to, SSL_CTX *from)
{
    unsigned char keys[TLS_TICKET_KEY_LEN];
    int ok;

    if (ticket_keys_idx >= 0 &&
        (SSL_CTX_get_ex_data(to, ticket_keys_idx) || SSL_CTX_get_ex_data(from, ticket_keys_idx))) {
        return 0; /* the operator's keys, read again from their files */
    }
    ok = SSL_CTX_get_tlsext_ticket_keys(from, NULL, 0) == (long)sizeof(keys) &&
         SSL_CTX_get_tlsext_ticket_keys(from, keys, sizeof(keys)) == 1 &&
         SSL_CTX_set_tlsext_ticket_keys(to, keys, sizeof(keys)) == 1;
    OPENSSL_cleanse(keys, sizeof(keys));
    if (!ok) {
        ERR_clear_error();
        return -1;
    }
    return 0;
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
    /* Writes from the queue's bytes wherever they lie now (conn.c,
     * tls_flush): a retry may find them at another address. Not
     * SSL_MODE_ENABLE_PARTIAL_WRITE: with it OpenSSL frees its write
     * buffer after every record (SSL_MODE_RELEASE_BUFFERS), without it
     * after each call's bytes (256 KiB): 3.5 % less server CPU per GB. No
     * renegotiation (TLS 1.2; OpenSSL 3 refuses a client's already): an
     * SSL_write then never waits for a read. */
    (void)SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    (void)SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    /* OpenSSL 3 calls a TCP end without close_notify an error, and sends
     * the peer a fatal alert (a hostile trial): it is a device's close, or
     * its power cut, and tcpota's framing does not rely on close_notify
     * (every frame has its length and CRC, an image its hash). */
    (void)SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_set_accept_state(ssl);
    /* Where the kernel cannot (no `tls` module, a cipher it lacks) OpenSSL
     * goes on in user space, as without the option. */
    (void)SSL_set_options(ssl, SSL_OP_ENABLE_KTLS);
}

int tls_key_update_pending(SSL *ssl)
{
    return ssl && SSL_get_key_update_type(ssl) != SSL_KEY_UPDATE_NONE ? 1 : 0;
}

int tls_kernel_sends(SSL *ssl)
{
    return ssl && BIO_get_ktls_send(SSL_get_wbio(ssl)) ? 1 : 0;
}

int tls_io_failed(SSL *ssl, int r, unsigned long *err)
{
    int sys = errno, code = SSL_get_error(ssl, r);
    unsigned long last = ERR_peek_last_error();

    ERR_clear_error();
    *err = 0;
    errno = 0;
    switch (code) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_EOF; /* close_notify */
    case SSL_ERROR_SYSCALL:
        if (!last) {
            errno = sys; /* the socket's error; none: its end */
            return sys ? TLS_IO_ERROR : TLS_IO_EOF;
        }
        break;
    default:
        break;
    }
    *err = last;
    return TLS_IO_ERROR;
}

int tls_read(SSL *ssl, uint8_t *buf, size_t cap, unsigned long *err, int *later)
{
    size_t got = 0;
    int n, r;

    *err = 0;
    *later = 0;
    if (cap > INT_MAX) {
        cap = INT_MAX;
    }
    /* Every whole record OpenSSL holds (read ahead), as far as buf goes:
     * the socket does not signal them again. */
    do {
        ERR_clear_error();
        errno = 0; /* SSL_ERROR_SYSCALL's errno is this call's own */
        n = SSL_read(ssl, buf + got, (int)(cap - got));
        if (n <= 0) {
            r = tls_io_failed(ssl, n, err);
            if (!got) {
                return -r;
            }
            /* OpenSSL says a failure once (a bad record behind good ones:
             * a review): kept for the caller, after the bytes. */
            *later = r == TLS_IO_AGAIN ? 0 : -r;
            return (int)got;
        }
        got += (size_t)n;
    } while (got < cap && SSL_has_pending(ssl));
    return (int)got;
}

int tls_write(SSL *ssl, const void *p, size_t n, unsigned long *err)
{
    int w;

    *err = 0;
    ERR_clear_error();
    errno = 0;
    w = SSL_write(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    return w > 0 ? w : -tls_io_failed(ssl, w, err);
}

size_t tls_write_now(SSL *ssl, const void *p, size_t n)
{
    unsigned long err;
    int w;

    if (n == 0) {
        return 0;
    }
    /* WANT_WRITE, or an error the queue's write meets next: none taken. */
    w = tls_write(ssl, p, n, &err);
    return w > 0 ? (size_t)w : 0; /* n: written; 0: the caller queues them */
}

int tls_accept_step(SSL *ssl, unsigned long *err)
{
    int r;

    *err = 0;
    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(ssl);
    return r == 1 ? 1 : -tls_io_failed(ssl, r, err);
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
