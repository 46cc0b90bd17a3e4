/*
 * server.h - `tcpota serve`: one event-driven process (libevent) that offers
 * one image to many devices at once (or N such processes on one port:
 * workers.h).
 *
 * Each connection is a small struct with its own state and its own sans-I/O
 * session (core/server.h for protocol v1, core/legacy.h for the sample's
 * req0/req1 devices), told apart by the first byte. Image bytes go from the
 * file to the socket with sendfile (libevent file segments); the CRC32C of
 * every aligned chunk is computed once when the image is loaded.
 */
#ifndef TCPOTA_SERVE_H
#define TCPOTA_SERVE_H

#include "tcpota/codec.h"

#include <stddef.h>
#include <stdint.h>

/* The largest image an upload may have (--max-image, and the CLI's own
 * check before it sends): the API holds an upload in memory whole, and an
 * ESP32 app partition is at most 16 MiB. */
#define TCPOTA_IMAGE_UPLOAD_MAX ((size_t)1 << 30)

/* A TLS session ticket key (--tls-ticket-key): 80 random bytes, laid out as
 * nginx's ssl_session_ticket_key file (a 16-byte name, a 32-byte
 * HMAC-SHA-256 key, a 32-byte AES-256 key), so one file serves both. */
#define TLS_TICKET_KEY_LEN 80u
#define TLS_TICKET_KEYS_MAX 4u
/* The longest a TLS 1.3 ticket may live (RFC 8446, 4.6.1): 7 days. */
#define TLS_TICKET_LIFETIME_MAX 604800u
/* --proxy-protocol: at most this many balancer addresses, each as text of
 * at most PROXY_FROM_LEN - 1 bytes (an IPv6 address). */
#define PROXY_FROM_MAX 16u
#define PROXY_FROM_LEN 48u

/* What the server (and a --workers supervisor) logs of a SIGUSR2, which it
 * ignores: operators used to nginx send it for a binary upgrade, and its
 * default action would end the server without a summary or a clean stop
 * of the store. */
#define SERVE_SIGUSR2_LINE                                                                    \
    "SIGUSR2: not used by tcpota serve; ignored, still serving (no binary upgrade by signal:"  \
    " restart to upgrade; SIGHUP reloads, SIGUSR1 prints the summary, SIGTERM stops)"

struct event_base;
struct store;

/* A device the server can authenticate: its id and shared secret. */
struct tcpota_serve_secret {
    char id[65];        /* NUL-terminated, at most TCPOTA_MAX_STR bytes */
    uint8_t secret[TCPOTA_SECRET_MAX]; /* len bytes used (TCPOTA_SECRET_MIN..TCPOTA_SECRET_MAX) */
    uint8_t len;
};

struct tcpota_serve_opts {
    const char *host;      /* listen address, e.g. "0.0.0.0" */
    uint16_t port;         /* 0: any free port (printed) */
    const char *image;     /* path of the image file */
    const char *version;   /* version string offered (1..32 printable) */
    const char *model;     /* the image's hardware model (from its manifest), or NULL: any */
    int allow_downgrade;   /* offer even when the device runs a newer or unordered version */
    unsigned max_conns;    /* connections beyond this are closed at once (per worker) */
    /* Processes serving the port (server/workers.h), single-image mode
     * only; 0 or 1: this one alone. */
    unsigned workers;
    unsigned idle_timeout_s;
    unsigned chunk;        /* DATA payload bytes, <= 16380 */
    int progress;          /* 1: one line per device per 10% */
    int quiet;             /* 1: errors only */
    int log_json;          /* 1: log lines are JSON objects (server/log.h) */
    const uint8_t *manifest; /* signed manifest offered with the image, or NULL */
    uint16_t manifest_len;
    const char *manifest_path; /* the file it was read from, for messages */
    /* 1: the manifest's signature is not required (--no-require-signed):
     * a mismatch's message offers to remove it and serve the image unsigned. */
    int manifest_unsigned;
    int allow_legacy;      /* serve req0/req1 devices even though the image is signed */
    /* With require_auth: serve req0/req1 devices anyway (they cannot
     * authenticate, so anyone who connects gets the image). */
    int allow_unauth_legacy;
    /* Connections one address may hold before they authenticate (TLS
     * handshake, HELLO, AUTH), on servers with TLS or require_auth; 0: no limit. */
    unsigned max_unauth_per_addr;
    const struct tcpota_serve_secret *secrets; /* device secrets */
    size_t nsecrets;
    int require_auth;      /* every device must answer a CHALLENGE (legacy ones cannot) */
    const char *tls_cert, *tls_key; /* PEM files: serve v1 inside TLS */
    /* TLS session ticket keys (tls_server.h), the first for new tickets,
     * each for tickets it made; 0 keys: OpenSSL's own, made at start. */
    const uint8_t (*ticket_keys)[TLS_TICKET_KEY_LEN];
    size_t nticket_keys;
    /* How long a TLS session (its ticket) may be resumed, in seconds; 0:
     * OpenSSL's default, 7,200. */
    unsigned tls_ticket_lifetime_s;
    /* --proxy-protocol: balancers whose connections begin with a PROXY
     * protocol header (proxied.h), as text_sockaddr writes an address. */
    const char (*proxy_from)[PROXY_FROM_LEN];
    size_t nproxy_from;
    /* Fleet mode (image == NULL): the store's directory (store.h), and the
     * control API (api.h) on api_host:api_port (api_host NULL: no API).
     * images_dir: where uploads are written before the store takes them
     * (data_dir/images). pubkeys: an uploaded image must be signed by one
     * of these (npubkeys 0: unsigned images are taken too). */
    const char *data_dir;
    /* Fleet mode on a shared database (tcpota serve --db): its connection
     * string, and the backend that opens it (store_pg_open, given by the
     * caller so that only it links the database's client library);
     * data_dir then holds this node's image cache and api.token only.
     * db NULL: SQLite in data_dir. */
    const char *db;
    struct store *(*open_db)(const char *db, const char *dir, struct event_base *base,
                             char *err, size_t errlen);
    /* --db-timeout: the database answering nothing this long, its
     * connection is dropped (store_vt.unstick); 0: FLEET_DB_TIMEOUT_S. */
    unsigned db_timeout_s;
    /* --secrets-reread: a node reads every device secret again this
     * often; 0: FLEET_SECRETS_REREAD_S. */
    unsigned secrets_reread_s;
    const char *api_host;
    uint16_t api_port;
    const char *images_dir;
    /* HTTP(S) downloads (http_ota.h) on a listener of their own (ota_host
     * NULL: on the API's listener, under /ota/). */
    const char *ota_host;
    uint16_t ota_port;
    size_t max_image; /* 1..TCPOTA_IMAGE_UPLOAD_MAX; 0: the API's default */
    /* --http-host: the Host values the API's and the downloads' listeners
     * answer to (http_host.h); NULL: any. */
    const struct http_hosts *http_hosts;
    unsigned api_max_conns; /* the API listener's connections at once; 0: its default */
    const uint8_t (*pubkeys)[32];
    size_t npubkeys;
    /* SIGHUP: fills *fresh, a copy of these options, with the image,
     * version, model, manifest and device secrets read again from their
     * files by the rules of the start, but for the image's bytes: a
     * manifest's signature is checked here, the size and SHA-256 it gives
     * by the server on the bytes it loads (image_check_manifest), off its
     * loop. Runs on the loop: file reads only. Returns 0, or -1 after printing why:
     * the server then keeps serving what it has. The server hands every
     * set it was given back to release() once no longer used. NULL: SIGHUP
     * only says that nothing can be reloaded. */
    int (*reload)(void *ctx, struct tcpota_serve_opts *fresh);
    void (*release)(void *ctx, struct tcpota_serve_opts *fresh);
    void *ctx;
    void *loaded; /* the caller's record of what reload() allocated for this set */
};

/* Loads the image and serves until SIGINT/SIGTERM (each prints the
 * summary). SIGHUP reloads (see reload above); SIGUSR1 prints the summary
 * and goes on. Returns 0 on a clean shutdown, or 1 after printing why it
 * could not start. */
int tcpota_serve(const struct tcpota_serve_opts *o);

#endif
