/*
 * http_ota.h - HTTP(S) downloads in fleet mode, for devices that run
 * ESP-IDF's stock esp_https_ota (docs/http-ota.md):
 *
 *   GET /ota/<model>?device=<id>     or     GET /ota/<model>/<id>.bin
 *   X-Tcpota-Version: <running version>   (or ?version=<v>)
 *   [Range: bytes=N- | N-M | -S]  [If-Range: "<sha256>"]
 *
 * No API token: devices hold none. Each request is a check-in of the
 * device (registered with protocol "http"), decided by the same rules as a
 * tcpota device (fleet_internal.h): 200/206 with the image its rollout
 * assigns (ETag: its SHA-256, ranges as RFC 9110 says: http_range.h), or
 * 204 with the reason in X-Tcpota-Reason. The body goes from the image's
 * file by sendfile (libevent file segments), one window at a time, so a
 * download costs no copy of the image and its progress is known. The
 * device moves through "downloading" (bytes sent) to "verified" (every
 * byte sent); its next request with the image's version makes it
 * "updated", and a new download (not a resume) with its old version after
 * every byte was sent makes it "failed" (rolled back or rejected).
 *
 * Served on the API's listener (api.h: the API hands /ota/ paths to
 * http_ota_handle) or on a listener of its own (http_ota_listen), inside
 * TLS when the server has a certificate.
 */
#ifndef TCPOTA_SERVER_HTTP_OTA_H
#define TCPOTA_SERVER_HTTP_OTA_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct http_ota;
struct evhttp_request;
struct evhttp_connection;
struct metrics_live;

#define HTTP_OTA_PREFIX "/ota/"                 /* the paths this module answers */
#define HTTP_OTA_VERSION_HEADER "X-Tcpota-Version" /* the device's running version */

/* A downloads server for fleet mode's srv (srv->fleet open). Returns it,
 * or NULL when out of memory. */
struct http_ota *http_ota_new(struct server *srv);

/* Also listens on host:port (port 0: any; http_ota_port tells), inside TLS
 * when srv->tls is set. Returns 0, or -1 with a message in err. */
int http_ota_listen(struct http_ota *ota, const char *host, uint16_t port, char *err,
                    size_t errlen);
/* The port http_ota_listen listens on (0: none). */
uint16_t http_ota_port(const struct http_ota *ota);
/* Its listener (for accept_pause.h), or NULL when it has none. */
struct evconnlistener *http_ota_listener(const struct http_ota *ota);

/* Answers one request whose path starts with HTTP_OTA_PREFIX (an
 * evhttp callback; arg is the struct http_ota). */
void http_ota_handle(struct evhttp_request *req, void *arg);
/* The connection of some requests closed (a cut, a timeout, the client
 * done): a download stops where its acknowledged bytes stopped (from an
 * evhttp close callback; arg is the struct http_ota). Harmless for a
 * connection that carries none. */
void http_ota_closed(struct evhttp_connection *evcon, void *arg);

/* The downloads running now, one entry each in out (at most cap); returns
 * how many were written. For GET /metrics. */
size_t http_ota_live(const struct http_ota *ota, struct metrics_live *out, size_t cap);
/* Adds the rollout ids of the downloads running now to ids[0..*n) when
 * not there yet, while *n < cap. */
void http_ota_rollouts(const struct http_ota *ota, uint64_t *ids, size_t *n, size_t cap);
/* How many downloads are running now. */
size_t http_ota_count(const struct http_ota *ota);
/* Ends the downloads of rollout_id still sending (halted or cancelled):
 * each is cut where its bytes stopped, as a closed connection is, its
 * line in the log saying why. Returns how many. NULL: 0. */
unsigned http_ota_stop(struct http_ota *ota, uint64_t rollout_id, const char *why);
/* Downloads waiting for their check-in on a database that has answered
 * nothing for stuck s (fleet_sweep) are answered 503 with Retry-After, as
 * a new one is then (ota NULL: none). */
void http_ota_answer_stuck(struct http_ota *ota, double stuck);

/* Stops listening and drops the downloads (a check-in still in the store
 * is detached: its completion only frees it). Call after the API stopped
 * (its connections may carry downloads) and before the store closes.
 * NULL: no-op. */
void http_ota_free(struct http_ota *ota);

#endif
