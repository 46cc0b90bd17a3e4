/* tls.c - TLS client for the host device (see tls.h). */
#include "tls.h"
#include "cli.h"
#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tls_pem.h"
#include "tls_server.h" /* tls_cert_ca_own */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Why the last OpenSSL call failed, from its error queue, read once: each
 * ERR_get_error() takes an entry away, so asking twice gives the next one
 * (or none, printed as "(null)"). Takes the oldest entry, the root cause,
 * and empties the queue so that the next failure starts clean. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    return cli_tls_error_text(e, buf, cap);
}

const char *cli_tls_error_text(unsigned long e, char *buf, size_t cap)
{
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    if (r) {
        snprintf(buf, cap, "%s", r);
    } else if (e) {
        ERR_error_string_n(e, buf, cap); /* no reason text: the code in full */
    } else {
        snprintf(buf, cap, "no reason given by OpenSSL");
    }
    return buf;
}

/* The kept session's file: one line naming the server it came from and
 * the trust anchors that verified it (t->peer), then the session in DER
 * (OpenSSL's i2d_SSL_SESSION). */
#define SESSION_MAGIC "tcpota-tls-session 1 "
#define SESSION_DER_MAX (16 * 1024)

/* OpenSSL hands over each new session (TLS 1.3: when a ticket arrives,
 * after the handshake): it replaces the kept one, through a temporary file
 * and rename() so that a power cut leaves the old one or the new one. A
 * session that cannot be kept costs only the next handshake. */
static int keep_session(SSL *ssl, SSL_SESSION *sess)
{
    struct cli_tls *t = SSL_get_app_data(ssl);
    unsigned char *der = NULL;
    char tmp[4096];
    int n = i2d_SSL_SESSION(sess, &der), fd, ok;

    if (!t || !t->session_file || n <= 0 || n > SESSION_DER_MAX ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", t->session_file) >= (int)sizeof(tmp)) {
        OPENSSL_free(der);
        return 0;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    ok = fd >= 0 && dprintf(fd, "%s%s\n", SESSION_MAGIC, t->peer) > 0 &&
         write(fd, der, (size_t)n) == n;
    if (fd >= 0) close(fd);
    if (!ok || rename(tmp, t->session_file) < 0) {
        (void)unlink(tmp);
    }
    OPENSSL_free(der);
    return 0; /* no reference kept */
}

/* The kept session for t->peer, or NULL: none, another server's or
 * verified with other trust anchors, or damaged (said on stderr; the full
 * handshake's session replaces it). */
static SSL_SESSION *kept_session(struct cli_tls *t)
{
    static unsigned char buf[sizeof(SESSION_MAGIC) + CLI_TLS_PEER_MAX + SESSION_DER_MAX];
    const unsigned char *p;
    SSL_SESSION *sess = NULL;
    struct stat st;
    size_t head;
    ssize_t n;
    int fd;

    if (!t->session_file) {
        return NULL;
    }
    /* O_NONBLOCK: a FIFO put there must not stop the device. */
    fd = open(t->session_file, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP) { /* O_NOFOLLOW met a link: ELOOP's text says "too many levels" */
            fprintf(stderr, "tcpota device: cannot read the kept TLS session %s: it is a symbolic"
                            " link, which is never followed; remove it; a full handshake"
                            " follows\n", t->session_file);
        } else if (errno != ENOENT) {
            fprintf(stderr, "tcpota device: cannot read the kept TLS session %s: %s; a full "
                            "handshake follows\n", t->session_file, strerror(errno));
        }
        return NULL;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* rename() cannot put a session in its place: said, not "replaced". */
        close(fd);
        fprintf(stderr, "tcpota device: the kept TLS session %s is a directory; remove it: until"
                        " then every connection makes a full handshake\n", t->session_file);
        return NULL;
    }
    n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, buf, sizeof(buf)) : -1;
    close(fd);
    head = strlen(SESSION_MAGIC) + strlen(t->peer) + 1;
    if (n > 0 && (size_t)n > head && memcmp(buf, SESSION_MAGIC, strlen(SESSION_MAGIC)) == 0 &&
        memcmp(buf + strlen(SESSION_MAGIC), t->peer, strlen(t->peer)) == 0 &&
        buf[head - 1] == '\n') {
        p = buf + head;
        sess = d2i_SSL_SESSION(NULL, &p, (long)((size_t)n - head));
        if (sess && (p != buf + n || !SSL_SESSION_is_resumable(sess))) {
            SSL_SESSION_free(sess);
            sess = NULL;
        }
    } else if (n > 0 && (size_t)n > strlen(SESSION_MAGIC) &&
               memcmp(buf, SESSION_MAGIC, strlen(SESSION_MAGIC)) == 0) {
        return NULL; /* another server's session: not offered to this one */
    }
    ERR_clear_error();
    if (!sess) {
        fprintf(stderr, "tcpota device: the kept TLS session %s is damaged or not a file; "
                        "ignored, a full handshake follows\n", t->session_file);
    }
    return sess;
}

/* What a --ca file OpenSSL would not take holds, when that says more than
 * OpenSSL's "no certificate or crl found", into buf; "" when it does not.
 * peer: whose certificate the CA signed ("the server's"). */
static const char *ca_says(const char *pem, size_t n, const char *peer, char *buf, size_t cap)
{
    char why[160];

    switch (tls_pem_kind_mem(pem, n)) {
    case TLS_PEM_EMPTY:
        snprintf(buf, cap, "the file is empty; give the certificate of the CA that signed %s", peer);
        break;
    case TLS_PEM_KEY:
        snprintf(buf, cap, "it holds a private key, not a certificate; give the certificate of the "
                 "CA that signed %s, never a key", peer);
        break;
    case TLS_PEM_OTHER:
        /* 30 82 LL LL 30 82: a DER SEQUENCE of two length bytes holding
         * another (the tbsCertificate), a binary certificate (a .der or
         * .cer file); a PKCS#12 or a DER key has 02 01 (a version) there */
        snprintf(buf, cap, "it holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the "
                 "CA's certificate in PEM%s", n >= 6 && (unsigned char)pem[0] == 0x30 &&
                 (unsigned char)pem[1] == 0x82 && (unsigned char)pem[4] == 0x30 &&
                 (unsigned char)pem[5] == 0x82 ? " (this looks like a binary DER one: openssl x509 "
                 "-inform DER -in FILE -out CA.pem writes it in PEM)" : "");
        break;
    case TLS_PEM_CERT:
    case TLS_PEM_BOTH:
        /* Its certificate starts, and does not read: cut short, edited. */
        snprintf(buf, cap, "its certificate does not read (%s): the file may be cut short or "
                 "changed; copy the CA's certificate again", ssl_reason(why, sizeof(why)));
        break;
    default: buf[0] = '\0';
    }
    return buf;
}

/* Reads the --ca file whole (at most CLI_CA_FILE_MAX bytes) into *out
 * (malloc'ed) and *n: what is loaded is then what is hashed, one read of
 * a file that may be replaced meanwhile. 0, or -1 after printing. */
static int read_ca(const char *cmd, const char *path, const char *what, char **out, size_t *n)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    ssize_t r = 0;
    /* OpenSSL would block forever on a FIFO: refuse anything but a file. */
    int fd = cli_open_regular(path, what);

    if (fd < 0) return -1;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "tcpota %s: %s: cannot read CA file %s: %s\n", cmd, what, path,
                strerror(errno));
        close(fd);
        return -1;
    }
    if (st.st_size > (off_t)CLI_CA_FILE_MAX) {
        fprintf(stderr, "tcpota %s: %s: CA file %s is over %u MiB: not a CA certificate (nor a "
                        "bundle of them); give the certificate of the CA\n", cmd, what, path,
                CLI_CA_FILE_MAX >> 20);
        close(fd);
        return -1;
    }
    /* One byte more than it said: a file that grew is read to its end. */
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        fprintf(stderr, "tcpota %s: out of memory reading %s\n", cmd, path);
        close(fd);
        return -1;
    }
    while (got <= (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size + 1 - got)) > 0) {
        got += (size_t)r;
    }
    close(fd);
    if (r < 0 || got > (size_t)st.st_size) {
        fprintf(stderr, "tcpota %s: %s: cannot read CA file %s: %s\n", cmd, what, path,
                r < 0 ? strerror(errno) : "it grew while it was read; try again");
        free(buf);
        return -1;
    }
    *out = buf;
    *n = got;
    return 0;
}

/* Puts the certificates (and CRLs) of the PEM text into ctx's store, as
 * SSL_CTX_load_verify_locations() does with a file. 1, or 0 when there is
 * none or the text does not parse (OpenSSL's error queue says why). */
static int load_ca(SSL_CTX *ctx, const char *pem, size_t n)
{
    BIO *b = n <= INT_MAX ? BIO_new_mem_buf(pem, (int)n) : NULL;
    /* An empty passphrase, as OpenSSL's own file loading gives: a block
     * marked encrypted fails instead of asking on the terminal. */
    STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, (void *)"") : NULL;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int i, count = 0, ok = infos != NULL;

    for (i = 0; ok && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *x = sk_X509_INFO_value(infos, i);
        if (x->x509) {
            ok = X509_STORE_add_cert(store, x->x509) == 1;
            count++;
        }
        if (ok && x->crl) {
            ok = X509_STORE_add_crl(store, x->crl) == 1;
            count++;
        }
    }
    if (ok && count == 0) {
        ERR_raise(ERR_LIB_X509, X509_R_NO_CERTIFICATE_OR_CRL_FOUND);
        ok = 0;
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(b);
    return ok;
}

/* cli_tls_client_ctx(); with the --ca file's SHA-256 into digest (NULL:
 * not wanted; without a file, left as it is). */
static SSL_CTX *client_ctx(const char *cmd, const char *ca_file, const char *what,
                           const char *peer, unsigned char digest[SHA256_DIGEST_LENGTH])
{
    const char *says;
    SSL_CTX *ctx;
    char why[256], said[512], *pem = NULL;
    size_t n = 0;

    if (ca_file && read_ca(cmd, ca_file, what, &pem, &n) < 0) {
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        (ca_file ? load_ca(ctx, pem, n) : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        says = ca_file ? ca_says(pem, n, peer, said, sizeof(said)) : "";
        if (ca_file) {
            fprintf(stderr, "tcpota %s: %s: cannot load CA file %s: %s\n", cmd, what, ca_file,
                    *says ? says : ssl_reason(why, sizeof(why)));
        } else {
            fprintf(stderr, "tcpota %s: cannot load the system's CA certificates: %s; give the "
                            "CA's certificate with --ca FILE\n", cmd, ssl_reason(why, sizeof(why)));
        }
        ERR_clear_error();
        if (ctx) SSL_CTX_free(ctx);
        free(pem);
        return NULL;
    }
    if (ca_file && tls_pem_kind_mem(pem, n) == TLS_PEM_BOTH) {
        /* It works, and hands a private key to every client given it. */
        fprintf(stderr, "tcpota %s: %s: CA file %s holds a private key beside its certificate; "
                        "a CA file goes to every client and must not: give the certificate "
                        "alone (openssl x509 -in %s -out CA-CERT.pem)\n", cmd, what, ca_file, ca_file);
        SSL_CTX_free(ctx);
        free(pem);
        return NULL;
    }
    if (ca_file && digest && !SHA256((const unsigned char *)pem, n, digest)) {
        fprintf(stderr, "tcpota %s: out of memory hashing %s\n", cmd, ca_file);
        SSL_CTX_free(ctx);
        free(pem);
        return NULL;
    }
    free(pem);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

void *cli_tls_client_ctx(const char *cmd, const char *ca_file, const char *what, const char *peer)
{
    return client_ctx(cmd, ca_file, what, peer, NULL);
}

void cli_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

/* Names the trust anchors into t->anchors: "ca-" and the first bytes of
 * the --ca file's SHA-256 (digest: of the bytes loaded), or "system". */
static void name_anchors(struct cli_tls *t, const char *ca_file,
                         const unsigned char digest[SHA256_DIGEST_LENGTH])
{
    if (!ca_file) {
        snprintf(t->anchors, sizeof(t->anchors), "system");
        return;
    }
    memcpy(t->anchors, "ca-", 3);
    (void)sodium_bin2hex(t->anchors + 3, sizeof(t->anchors) - 3, digest, CLI_TLS_ANCHOR_BYTES);
}

int cli_tls_init(struct cli_tls *t, const char *ca_file, const char *session_file)
{
    SSL_CTX *ctx;

    unsigned char digest[SHA256_DIGEST_LENGTH];

    memset(t, 0, sizeof(*t));
    if (!(ctx = client_ctx("device", ca_file, "--ca",
                           "the server's certificate (for a self-signed one, that certificate itself)",
                           digest))) {
        return -1;
    }
    name_anchors(t, ca_file, digest);
    if (session_file) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, keep_session);
    }
    t->ctx = ctx;
    t->session_file = session_file;
    t->ca_file = ca_file;
    return 0;
}

/* The peer closed the connection before the handshake was done: OpenSSL 3
 * says "unexpected eof", 1.1 reports a syscall error with nothing queued. */
static int closed_early(int rc, int e)
{
    unsigned long q = ERR_peek_error();

#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    if (q && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return 1;
    }
#endif
    return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !q && (rc == 0 || errno == 0));
}

const char *cli_tls_verify_todo(long v, const char *whose, const char *host_flag,
                                const char *ca_from, const char *ca_file, const char *ca_flags,
                                char *buf, size_t cap)
{
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        snprintf(buf, cap, "give %s the name the certificate is for", host_flag);
    } else if (v == X509_V_ERR_CERT_HAS_EXPIRED || v == X509_V_ERR_CERT_NOT_YET_VALID) {
        snprintf(buf, cap, "renew %s certificate (or set this machine's clock right)", whose);
    } else if (v != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT &&
               v != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY &&
               v != X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT &&
               v != X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN &&
               v != X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE) {
        /* not a question of which CA: the certificate (or its chain) is
         * at fault, as OpenSSL's reason says */
        snprintf(buf, cap, "%s certificate must be put right", whose);
    } else if (ca_file) {
        snprintf(buf, cap, "%s %s does not hold the certificate of the CA that signed it: give "
                 "that one (for a self-signed certificate, that certificate itself)", ca_from,
                 ca_file);
    } else {
        snprintf(buf, cap, "give the certificate of the CA that signed it with %s", ca_flags);
    }
    return buf;
}

/* The names a certificate is for, into buf: its subjectAltName's DNS names
 * and IP addresses, else its CN ("" when it has neither). A name of bytes
 * a terminal does not show as they are (the peer's, unchecked) is "?". */
static const char *cert_names(X509 *x, char *buf, size_t cap)
{
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t n = 0;
    int i;

    buf[0] = 0;
    for (i = 0; san && i < sk_GENERAL_NAME_num(san) && n + 1 < cap; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
        char ip[INET6_ADDRSTRLEN] = "";
        const char *name = NULL;
        int len = 0;
        if (g->type == GEN_DNS) {
            name = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
            len = ASN1_STRING_length(g->d.dNSName);
            if (len <= 0 || !tcpota_printable(name, (size_t)len, 1, (size_t)len)) {
                name = "?";
                len = 1;
            }
        } else if (g->type == GEN_IPADD && (g->d.iPAddress->length == 4 || g->d.iPAddress->length == 16)) {
            name = inet_ntop(g->d.iPAddress->length == 4 ? AF_INET : AF_INET6,
                             ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof(ip));
            len = name ? (int)strlen(name) : 0;
        }
        if (name) {
            int k = snprintf(buf + n, cap - n, "%s%.*s", n ? ", " : "", len, name);
            n = k < 0 || (size_t)k >= cap - n ? cap - 1 : n + (size_t)k;
        }
    }
    GENERAL_NAMES_free(san);
    if (n == 0) {
        char cn[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (len > 0) {
            snprintf(buf, cap, "CN %s", tcpota_printable(cn, (size_t)len, 1, (size_t)len) ? cn : "?");
        }
    }
    return buf;
}

/* For a name that is not the certificate's: the names it is for, and,
 * when it is a CA's own (self-signed, CA:TRUE, no subjectAltName), that
 * the server may have been given its CA's certificate (a new user's
 * trial: serve given ca.pem; the device said only "give --server the name
 * the certificate is for", my-ota-ca). */
static void mismatch_detail(X509 *x, char *buf, size_t cap)
{
    char names[512];

    cert_names(x, names, sizeof(names));
    if (tls_cert_ca_own(x)) {
        snprintf(buf, cap, " (the server's certificate is for %s, and is a CA's own: was the "
                 "server given its CA's certificate, --tls-cert, instead of the one the CA "
                 "issued for it?)", names[0] ? names : "no name");
    } else {
        snprintf(buf, cap, " (the server's certificate is for %s)", names[0] ? names : "no name");
    }
}

/* Verify callback of a device's connection: keeps mismatch_detail() of a
 * certificate refused for its name (OpenSSL keeps no peer certificate
 * after a failed handshake). */
static int verify_names(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct cli_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    int e = X509_STORE_CTX_get_error(store);
    X509 *x = X509_STORE_CTX_get_current_cert(store);

    if (!ok && t && x && (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)) {
        mismatch_detail(x, t->mismatch, sizeof(t->mismatch));
    }
    return ok;
}

/* BIO callback: keeps the server's first bytes (t->first), which tell an
 * HTTP port's answer from another that is no TLS. */
static long first_bytes(BIO *b, int oper, const char *argp, size_t len, int argi, long argl,
                        int ret, size_t *processed)
{
    struct cli_tls *t = (struct cli_tls *)BIO_get_callback_arg(b);

    (void)len;
    (void)argi;
    (void)argl;
    if (t && oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed) {
        tcpota_first_bytes_add(&t->first, argp, *processed);
    }
    return ret;
}

/* 1 when the handshake failed on the server's first bytes not being a
 * TLS record: a plain tcpota port (tcpota serve answers a TLS client there
 * with a line of text), an HTTP one, anything else that is not TLS. */
static int answered_plain(int e)
{
    unsigned long q = ERR_peek_error();

    return e == SSL_ERROR_SSL && q && ERR_GET_LIB(q) == ERR_LIB_SSL &&
           ERR_GET_REASON(q) == SSL_R_WRONG_VERSION_NUMBER;
}

/* For a certificate whose issuer was not found: when the server sent it
 * without any other, "; it came alone, issued by ...", which tells a server
 * that leaves out its intermediate certificate (a trial's: the device
 * blamed its own --ca, which held the right root) from a --ca of another
 * CA. Else "". (A self-issued one fails as self-signed, not here.) */
static const char *sent_alone(SSL *ssl, char *buf, size_t cap)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509 *leaf = chain && sk_X509_num(chain) == 1 ? sk_X509_value(chain, 0) : NULL;
    BIO *mem = leaf ? BIO_new(BIO_s_mem()) : NULL;
    char issuer[160];
    int n;

    /* RFC 2253, as openssl x509 -issuer -nameopt RFC2253 prints it; a
     * longer one is cut where "..." says */
    n = mem && X509_NAME_print_ex(mem, X509_get_issuer_name(leaf), 0, XN_FLAG_RFC2253) >= 0
            ? BIO_read(mem, issuer, (int)sizeof(issuer) - 1) : -1;
    if (n > 0 && BIO_pending(mem) > 0) {
        memcpy(issuer + n - 3, "...", 3);
    }
    BIO_free(mem);
    if (n <= 0) {
        return "";
    }
    issuer[n] = 0;
    snprintf(buf, cap, "; it came alone, issued by %s: if that is an intermediate CA, the server "
             "must send it too: give the server its whole chain (its certificate, then the "
             "intermediate ones, in one file)", issuer);
    return buf;
}

/* Says why the handshake failed in err. Returns CLI_TLS_CERT_REFUSED when
 * the server's certificate did not verify, CLI_TLS_NOT_TLS when the server
 * answered without TLS, else -1. */
static int handshake_error(const struct cli_tls *t, SSL *ssl, int rc, int e, char *err, size_t cap)
{
    long v = SSL_get_verify_result(ssl);
    char why[256], todo[CLI_TLS_TODO_LEN], alone[400];

    if (closed_early(rc, e)) {
        ERR_clear_error();
        snprintf(err, cap, "TLS handshake failed: the server closed the connection during the "
                           "handshake (is it speaking TLS on this port, or at its limits?)");
    } else if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(err, cap, "TLS handshake failed: certificate verify failed: %s; %s%s%s",
                 X509_verify_cert_error_string(v),
                 cli_tls_verify_todo(v, "the server's", "--server", "--ca", t->ca_file,
                                     "--ca FILE", todo, sizeof(todo)),
                 v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ? sent_alone(ssl, alone, sizeof(alone))
                                                                   : "",
                 v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH
                     ? t->mismatch
                     : "");
        return CLI_TLS_CERT_REFUSED;
    } else if (answered_plain(e) && tcpota_first_bytes_http(&t->first)) {
        /* The API's or the plain download port (a trial: told "a plain
         * tcpota port: leave out --ca"). */
        ERR_clear_error();
        snprintf(err, cap, "TLS handshake failed: the server answered in HTTP, without TLS: %s",
                 TCPOTA_CLIENT_HTTP_PORT_SAYS);
        return CLI_TLS_NOT_TLS;
    } else if (answered_plain(e)) {
        ERR_clear_error();
        snprintf(err, cap, "TLS handshake failed: the server answered without TLS: this port"
                 " does not speak TLS (a plain tcpota port: leave out --ca, or give its server"
                 " --tls-cert; or not tcpota's device port at all)");
        return CLI_TLS_NOT_TLS;
    } else if (e == SSL_ERROR_SSL) {
        snprintf(err, cap, "TLS handshake failed: %s", ssl_reason(why, sizeof(why)));
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(err, cap, "TLS handshake failed: %s", strerror(errno));
    } else {
        snprintf(err, cap, "TLS handshake failed: %s", ssl_reason(why, sizeof(why)));
    }
    return -1;
}

int cli_tls_handshake(struct cli_tls *t, struct tcpota_client *cl, const char *host,
                      uint16_t port, uint32_t timeout_ms, char *err, size_t cap)
{
    SSL *ssl = SSL_new(t->ctx);
    SSL_SESSION *kept;
    uint32_t waited = 0;

    t->ssl = ssl;
    t->resumed = 0;
    if (!ssl || SSL_set_fd(ssl, cl->fd) != 1 || SSL_set1_host(ssl, host) != 1) {
        char why[256];
        snprintf(err, cap, "TLS setup failed: %s", ssl_reason(why, sizeof(why)));
        return -1;
    }
    (void)snprintf(t->peer, sizeof(t->peer), "%s:%u anchors=%s", host, (unsigned)port,
                   t->anchors);
    SSL_set_app_data(ssl, t);
    SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_names);
    t->mismatch[0] = 0;
    t->first.n = 0;
    BIO_set_callback_ex(SSL_get_rbio(ssl), first_bytes);
    BIO_set_callback_arg(SSL_get_rbio(ssl), (char *)t);
    if ((kept = kept_session(t)) != NULL) {
        (void)SSL_set_session(ssl, kept); /* a refused one: a full handshake */
        SSL_SESSION_free(kept);
    }
    SSL_set_tlsext_host_name(ssl, host); /* SNI; an IP address is sent as is */
    ERR_clear_error();
    for (;;) {
        int rc, e;
        short ev;

        errno = 0;
        rc = SSL_connect(ssl);
        if (rc == 1) {
            t->resumed = SSL_session_reused(ssl) == 1;
            return 0;
        }
        e = SSL_get_error(ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            return handshake_error(t, ssl, rc, e, err, cap);
        }
        ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        if (waited >= timeout_ms || tcpota_client_wait(cl, cl->fd, ev, 100) < 0) {
            snprintf(err, cap, "TLS handshake timed out");
            return -1;
        }
        waited += 100;
    }
}

int cli_tls_bind(struct cli_tls *t, struct tcpota_dev *d, char *err, size_t cap)
{
    static const char label[] = TCPOTA_TLS_BINDING_LABEL;
    uint8_t b[TCPOTA_TLS_BINDING_LEN];
    char why[256];

    if (!t->ssl || SSL_export_keying_material(t->ssl, b, sizeof(b), label, sizeof(label) - 1,
                                              NULL, 0, 0) != 1) {
        snprintf(err, cap, "TLS: cannot derive the channel binding: %s",
                 ssl_reason(why, sizeof(why)));
        return -1;
    }
    (void)tcpota_dev_set_binding(d, b);
    OPENSSL_cleanse(b, sizeof(b));
    return 0;
}

long cli_tls_recv(struct cli_tls *t, void *buf, size_t n)
{
    int rc = SSL_read(t->ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n), e;

    if (rc > 0) {
        return rc;
    }
    e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    /* The server closed without close_notify (OpenSSL 3 calls that an
     * error, "unexpected eof"): a close, as mbedTLS's CONN_EOF is. */
    if (closed_early(rc, e)) {
        ERR_clear_error();
        return 0;
    }
    /* A record TLS refused (bad MAC: bytes altered on the way; an alert)
     * is no reset by the server: EPROTO, which the client names. */
    errno = e == SSL_ERROR_SSL ? EPROTO : ECONNRESET;
    ERR_clear_error();
    return -1;
}

long cli_tls_send(struct cli_tls *t, const void *buf, size_t n)
{
    int rc = SSL_write(t->ssl, buf, n > 0x7fffffff ? 0x7fffffff : (int)n), e;

    if (rc > 0) {
        return rc;
    }
    e = SSL_get_error(t->ssl, rc);
    errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : EPIPE;
    return -1;
}

size_t cli_tls_pending(struct cli_tls *t)
{
    return t->ssl ? (size_t)SSL_pending(t->ssl) : 0;
}

void cli_tls_end(struct cli_tls *t)
{
    if (t->ssl) {
        (void)SSL_shutdown(t->ssl); /* best effort close_notify */
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    ERR_clear_error();
}

void cli_tls_free(struct cli_tls *t)
{
    cli_tls_end(t);
    if (t->ctx) {
        SSL_CTX_free(t->ctx);
        t->ctx = NULL;
    }
}
