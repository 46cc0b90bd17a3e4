/*
 * api.h - the control API of fleet mode (docs/api.md): HTTP/1.1 with JSON
 * bodies on the server's own event loop (libevent's evhttp), JSON read and
 * written with jansson. Every answer comes from the asynchronous store
 * (store.h): a handler validates the request, submits store requests and
 * replies from their `done`, so no request ever blocks the loop on the
 * database. A client that goes away while its store request runs is
 * forgotten safely; api_stop() detaches what is still in flight.
 *
 * Usage: fill a struct api_config, api_start() it on the loop's base, run
 * the loop, api_stop() before store_close() (the store then runs the
 * detached completions, which only free their requests).
 */
#ifndef TCPOTA_SERVER_API_H
#define TCPOTA_SERVER_API_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct evhttp_request;
struct evhttp_connection;
struct store;
struct api;
struct auth_refusals;

#define API_TOKEN_HEX 64u                      /* hex digits of the API token */
#define API_MAX_IMAGE_DEFAULT (64u << 20)      /* bytes an upload may have by default */
/* A request's body on a connection that did not begin with the token
 * (api_gate.c; the smaller of this and --max-image); one that did takes
 * --max-image. */
#define API_BODY_MAX (64u << 10)
#define API_UPLOAD_PREFIX ".upload-"           /* an upload's temporary file in the images dir */
#define API_CONNS_DEFAULT 1024u                /* connections the listener holds at once */

/* Checks a signed manifest for image bytes whose SHA-256 is id, against
 * the server's trusted keys (the API has already parsed it and checked that
 * it describes these bytes). Fills version and model (TCPOTA_MAX_NAME + 1
 * bytes each). Returns 0, or -1 with a one-line reason in err. */
typedef int (*api_verify_fn)(void *ctx, const uint8_t id[32], const uint8_t *man, size_t len,
                             char *version, char *model, char *err, size_t errlen);

struct api_config {
    struct event_base *base;
    struct store *store;
    const char *host;       /* listen address, e.g. "127.0.0.1" */
    uint16_t port;          /* 0: any free port (api_port() tells) */
    const char *token;      /* the bearer token (api_token_load_or_create()) */
    const char *images_dir; /* uploads are written here before STORE_IMAGE_ADD */
    int check_files;        /* 1: an image's file is its only copy (SQLite): an image whose
                             * file is gone or of another size says so ("file_missing") */
    size_t max_image;       /* bytes an upload may have; 0: API_MAX_IMAGE_DEFAULT */
    unsigned head_ms;       /* a connection's first request head comes within this, or it
                             * is closed (api_gate.c); 0: API_TIMEOUT_S */
    /* The Host values answered (--http-host, http_host.h); NULL: any. */
    const struct http_hosts *hosts;
    unsigned max_conns;     /* connections held at once (the /ota/ downloads' among them);
                             * one more is answered 503 at its accept and closed
                             * (api_gate.c); 0: API_CONNS_DEFAULT */
    /* NULL: the server has no keys. Unsigned images are then taken with
     * ?version=&model=, and a manifest, when sent, must still carry a valid
     * signature by the key it names. api_verify_keys() is one. */
    api_verify_fn verify;
    /* What GET /health says while the store is down (store_down()): the
     * text of its "status", which names the backend's way of being down
     * (NULL: "the database cannot be used now; the log says why"). */
    const char *down_status;
    /* Told after a device secret is stored (the server updates its table). */
    void (*on_secret)(void *ctx, const char *id, const uint8_t *secret, size_t len);
    /* Appends the Prometheus metrics to out (GET /metrics, no token);
     * returns 0, or -1 (then 500). NULL: /metrics is not served. */
    int (*metrics)(void *ctx, struct evbuffer *out);
    /* Requests whose path starts with /ota/ (HTTP_OTA_PREFIX) go to ota
     * (ota_arg), without the token: HTTP downloads (http_ota.h). NULL: none. */
    void (*ota)(struct evhttp_request *req, void *arg);
    void *ota_arg;
    /* Told, with ota_arg, when any connection of the listener closes (its
     * downloads stop there); set with ota. */
    void (*ota_closed)(struct evhttp_connection *evcon, void *arg);
    /* Where HTTP downloads are when not here (ota NULL: --ota-listen), in
     * words into buf ("HTTPS downloads are on HOST:PORT"): a device sent
     * to the API is told so, without the token. NULL: no such answer. */
    void (*ota_where)(void *ctx, char *buf, size_t cap);
    /* Told after rollout id was cancelled (why: "rollout 3 cancelled"):
     * its transfers running here stop. */
    void (*on_stop)(void *ctx, uint64_t id, const char *why);
    /* Why this server cannot load the image of that id now (its file
     * missing or damaged), or NULL: it can, or has not tried. A rollout's
     * status says it first. NULL: not asked. */
    const char *(*image_trouble)(void *ctx, const uint8_t *id);
    /* A line for the server's log about the API itself (a request refused
     * for its token); NULL: none. */
    void (*log)(void *ctx, const char *line);
    /* Told after any change to images, rollouts or groups; what: one
     * line saying what changed and from which client ("image 3fa2... added
     * ... (API client 127.0.0.1:40312)"), for the server's log. */
    void (*on_change)(void *ctx, const char *what);
    /* The devices refused for authentication since this server started
     * (auth.h): GET /v1/summary's "auth_refused". NULL: not in the summary. */
    const struct auth_refusals *(*auth_refused)(void *ctx);
    void *ctx;              /* passed to verify, on_secret, on_stop, image_trouble, on_change,
                             * auth_refused */
};

/* Listens on cfg->host:cfg->port and serves the API on cfg->base. The
 * strings of cfg must outlive the API. Returns the API, or NULL with a
 * message in err (cannot listen: address in use, bad address; no token). */
struct api *api_start(const struct api_config *cfg, char *err, size_t errlen);

/* The port the API listens on (the one chosen when cfg->port was 0). */
uint16_t api_port(const struct api *a);

/* The API's listener (for accept_pause.h). */
struct evconnlistener *api_listener(const struct api *a);

/* How many image uploads are in progress (received, not yet answered):
 * api_stop() ends them unstored. a NULL: 0. */
unsigned api_uploads(const struct api *a);

/* A hung database (fleet.c's sweep, past STORE_STUCK_S; stuck: how long
 * it has answered nothing): each GET (or HEAD) whose store request waits is
 * answered 503 now, rather than when the database answers or its
 * connection is dropped (--db-timeout); it only read, so trying again
 * loses nothing. Writes wait for their answer: their outcome is the
 * database's. The calls stay until their requests end, then are freed
 * without a further step. NULL: no-op. */
void api_answer_stuck(struct api *a, double stuck);

/* Stops listening, drops the connections and detaches the store requests
 * still in flight (their done only frees them). NULL: no-op. */
void api_stop(struct api *a);

/* Tells the dashboards' event streams (GET /v1/events) that device id is now
 * in state (store_state_name()), with bytes of size and reason ("" or NULL:
 * none). Cheap when no stream is open. a NULL: no-op. */
void api_notify_device(struct api *a, const char *id, const char *state, uint32_t bytes,
                       uint32_t size, const char *reason);

/* Reads dir/api.token into token (API_TOKEN_HEX hex digits and a NUL; cap
 * at least API_TOKEN_HEX + 1), creating it on first use from 32 random
 * bytes (mode 0600, O_EXCL). Refuses a token file that is not a regular
 * file, that group or others may read, or that does not hold one token.
 * Returns 0, or -1 with a message in err. */
int api_token_load_or_create(const char *dir, char *token, size_t cap, char *err, size_t errlen);

/* The trusted keys api_verify_keys() checks against. */
struct api_keys {
    const uint8_t (*keys)[32]; /* Ed25519 public keys */
    size_t nkeys;
};

/* An api_verify_fn over ctx, a struct api_keys: the manifest must be
 * signed by one of the keys, with a signature that verifies. */
int api_verify_keys(void *ctx, const uint8_t id[32], const uint8_t *man, size_t len,
                    char *version, char *model, char *err, size_t errlen);

struct store_image;
/* 1 with why in err ("it is unsigned", "its manifest is not signed by one
 * of this server's --pubkey keys (...)"; the caller says what to do) when
 * a server whose keys verify (with ctx) checks would not serve si: with
 * keys it serves only images signed by one of them. 0 when it would, or
 * verify is NULL (no keys). The one rule of an image's load (fleet.c)
 * and of a rollout's creation (api_rollouts.c). */
int api_image_refused(api_verify_fn verify, void *ctx, const struct store_image *si, char *err,
                      size_t cap);

#define API_KEY_ID_HEX 16u /* hex digits of a signing key's id */

/* A signing key's id, as every tool names it (tcpota keygen, sign, verify,
 * the API's errors): the first 8 bytes of the SHA-256 of its Ed25519 public
 * key pk, in lowercase hex, written with a NUL into out. */
void api_key_id(const uint8_t pk[32], char out[API_KEY_ID_HEX + 1]);

#endif
