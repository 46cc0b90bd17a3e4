/*
 * http_ota_internal.h - what the files of the HTTP downloads share
 * (http_ota.h): http_ota.c takes the requests, http_ota_conn.c runs the
 * listener of its own and its connections from accept to close (limits,
 * deadline, TLS), http_ota_decide.c answers a request once its check-in is
 * stored, http_ota_send.c sends the body and follows it to the device's
 * ack.
 * Not for use outside server/http_ota*.c.
 */
#ifndef TCPOTA_SERVER_HTTP_OTA_INTERNAL_H
#define TCPOTA_SERVER_HTTP_OTA_INTERNAL_H

#include "http_ota.h"
#include "http_range.h"
#include "log.h" /* struct log_limit */
#include "store.h"

#include "tcpota/codec.h"

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;
struct image;

#define OTA_HEADER_VALUE_MAX 200u    /* Range, If-Range: longer is refused */

#define OTA_CUT_SLOTS 1024u          /* cut downloads remembered (a hash of device ids) */
#define OTA_REFUSED_LOG_MS 1000u     /* refusals in the log: at most OTA_REFUSED_LOG_BURST */
#define OTA_REFUSED_LOG_BURST 10u    /* ... lines per OTA_REFUSED_LOG_MS (ota_refuse) */
#define OTA_LOG_URI_MAX 120          /* bytes of a refused request's URI in its line */
#define OTA_NAME_SHOWN 40            /* bytes of an unknown query name in a refusal */

/* Where a cut download's bytes went: written to the socket up to `written`
 * (what the peer's TCP acknowledged is in the registry). A device resumes
 * from what it received, which can be past what the server saw
 * acknowledged (an ACK delayed or lost in the cut) but never past what
 * was written: http_ota_decide.c takes its range as continuing there. */
struct ota_cut {
    char id[TCPOTA_MAX_STR + 1];     /* "" : free */
    uint8_t image[TCPOTA_ID_LEN];
    uint32_t written;
};

struct ota_conn;

struct http_ota {
    struct server *srv;
    struct evhttp *http;             /* the listener of its own, or NULL */
    struct evhttp_bound_socket *sock;
    /* Its connections (http_ota_conn.c): made by an accept, not judged yet
     * (fresh), then judged and kept (conns; byfd finds them by socket). */
    struct ota_conn *fresh, *conns;
    struct event *admit;             /* judges the fresh ones once their accept returned */
    struct ota_conn **byfd;
    size_t nbyfd;
    /* Lines its peers can cause at will (at most LOG_PEER_BURST a
     * LOG_PEER_MS each): refused at accept, late, failed handshakes. */
    struct log_limit refused_log, late_log, tls_failed_log, not_http_log;
    struct dl *dls;                  /* requests being decided or sent */
    size_t nsending;
    struct ota_cut *cuts;            /* OTA_CUT_SLOTS of them, or NULL (no memory: acks only) */
    struct log_limit refused;        /* refusals in the log (ota_refuse) */
};

/* One download request: decided by the store's check-in, then sent one
 * window at a time. */
struct dl {
    struct http_ota *ota;            /* NULL: orphaned by http_ota_free (the store's done frees it) */
    struct evhttp_request *req;      /* NULL once libevent freed it (the client went away) */
    struct evhttp_connection *evcon;
    struct store_req *sr;            /* the check-in in flight */
    struct dl *prev, *next;
    struct image *img;               /* a reference while sending */
    struct evbuffer *buf;
    struct event *ack_timer;         /* after the last byte: waiting for the peer's ack */
    unsigned ack_polls;
    uint64_t rollout_id;
    uint32_t first, last;            /* the range sent, inclusive */
    uint32_t queued, sent;           /* next byte to queue; bytes up to here went out */
    uint32_t acked;                  /* bytes up to here the peer's TCP acknowledged (at least) */
    uint32_t had;                    /* bytes 0..had-1 of img the registry says it had before */
    double progress_at;
    int head;                        /* HEAD: headers only */
    char has_range, has_if_range;
    char range[OTA_HEADER_VALUE_MAX + 1], if_range[OTA_HEADER_VALUE_MAX + 1];
    char id[TCPOTA_MAX_STR + 1], model[TCPOTA_MAX_NAME + 1], version[TCPOTA_MAX_NAME + 1];
    char addr[48], peer[64];
};

/* http_ota.c */
void ota_add_header(struct evhttp_request *req, const char *k, const char *v);
/* Refuses req: answers {"error": msg} with code (libevent then frees the
 * request) and logs one line "http: refused URI with CODE: msg" (a warning;
 * 5xx: an error), so that the operator sees why a device gets nothing.
 * The line names d's device and peer (d NULL, or its fields not filled
 * yet: no device, the peer of req's connection). A peer can send bad
 * requests as fast as it likes: at most OTA_REFUSED_LOG_BURST such lines
 * per OTA_REFUSED_LOG_MS, the next line said telling how many were held
 * back. */
void ota_refuse(struct http_ota *ota, const struct dl *d, struct evhttp_request *req, int code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Answers {"error": msg} with code and logs nothing: only for an answer
 * whose caller has logged the event already (the store's error, the
 * decision, a 416), with more than the device is told. */
void ota_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Unlinks d from its server's list and frees it (with its image reference). */
void ota_dl_free(struct dl *d);

/* The slot of device id among ota->cuts (NULL when there are none). */
struct ota_cut *ota_cut_slot(struct http_ota *ota, const char *id);

/* http_ota_conn.c */
/* A whole request came on req's connection: when it is one of the
 * listener's, its deadline stops, it no longer counts against its address
 * (--max-unauth-per-addr), and once the answer is out the deadline runs
 * again until the next request. */
void ota_conn_request(struct http_ota *ota, struct evhttp_request *req);
/* Stops the listener and closes its connections (http_ota_closed runs for
 * each), then frees what held them. */
void ota_conn_close_all(struct http_ota *ota);

/* http_ota_decide.c: the store's done of a request's STORE_CHECKIN: decides
 * and answers (204, 416, or ota_start()). */
void ota_checkin_done(struct store_req *r);

/* http_ota_send.c */
/* Starts the answer of d with img: headers (200 or 206 by rg) and the first
 * window; HEAD: the headers only (d is freed). */
void ota_start(struct dl *d, struct image *img, const struct http_range *rg, const char *etag);

#endif
