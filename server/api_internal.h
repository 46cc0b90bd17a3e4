/*
 * api_internal.h - what the control API's files share (api.c: listener,
 * routing, token, replies; api_images.c, api_rollouts.c, api_devices.c:
 * the endpoints). Not for use outside server/api*.c.
 *
 * One struct api_call lives per HTTP request that waits for the store. It
 * holds at most one store request (call->sr) or one job off the loop
 * (call->job) at a time; its end runs the call's continuation, which
 * replies or starts the next step.
 */
#ifndef TCPOTA_SERVER_API_INTERNAL_H
#define TCPOTA_SERVER_API_INTERNAL_H

#include "api.h"
#include "log.h" /* struct log_limit */
#include "store.h"

#include <jansson.h>
#include <stdarg.h>

struct evbuffer;
struct offload;
struct evhttp;
struct evhttp_request;
struct evhttp_connection;
struct evhttp_bound_socket;
struct evkeyvalq;

#define API_PRINTABLE_MAX TCPOTA_MAX_NAME /* model, version: 1..32 printable bytes */
#define API_PREFIX_MIN 8u                 /* hex digits an image id prefix needs */
#define API_ERROR_MAX 1024u               /* an error message's bytes */
#define API_FIELD_NAME_MAX 32u            /* a body member's name an error names */
#define API_TIMEOUT_S 60                  /* a client silent this long is dropped */
#define API_HEADERS_MAX 32768             /* header bytes (a manifest is ~1.4 KB of base64) */
/* A connection's first request head is judged by its Authorization line
 * within this many bytes, or taken as without the token (api_gate.c): each
 * segment of a trickled head costs a look at this much at most. */
#define API_GATE_PEEK_MAX 8192u
/* A connection without the token sends each whole request within this of
 * its head or its last answer (api_gate.c): twice the head's deadline, so
 * that evhttp's idle timeout ends an idle one first. */
#define API_WATCH_MS(a) (2u * (a)->cfg.head_ms)
#define API_REALM "tcpota" /* the realm of the 401s' Bearer challenge */
#define API_TOKEN_MSG "missing or wrong API token: send Authorization: Bearer <the token in DIR/api.token>"
#define API_FULL_RETRY_S 5                /* Retry-After of a 503 at --api-max-conns */

#define API_STREAMS_MAX 64u               /* event streams open at once (dashboards) */
#define API_STREAM_BEAT_S 15              /* a comment on every stream this often */
/* Bytes unsent to a stream before it is cut. Each event is a chunk of its
 * own in the connection's buffer, which holds about 5 times its bytes
 * (measured): 256 KiB waiting costs about 1.2 MiB, 64 streams 80 MiB. */
#define API_STREAM_BACKLOG (256u << 10)
#define API_SUMMARY_TTL_MS 2000           /* a summary is reused this long */
#define API_CHANGE_MAX 1024u              /* a change's line for the log (api_changed) */
#define API_DENIED_LOG_MS 1000            /* a refused token is logged at most this often */

struct api_stream;

struct api {
    struct api_config cfg;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    struct api_call *calls; /* in flight (waiting for the store) */
    struct api_stream *streams; /* open event streams (api_events.c) */
    unsigned nstreams;
    struct event *beat;         /* the streams' heartbeat, once one opened */
    struct api_call *upload_owner;             /* the upload past its lookup (api_images.c) */
    struct api_call *upload_head, *upload_tail; /* uploads waiting for their turn */
    struct log_limit denied;    /* refused tokens in the log (api.c) */
    struct log_limit misdirected; /* downloads asked of the API with --ota-listen (api.c) */
    struct log_limit cut;       /* event streams cut in the log (api_events.c) */
    struct api_gate *gates;     /* connections until their first head is judged (api_gate.c) */
    struct event *admit;        /* judges the accepts of a loop turn (api_gate.c) */
    struct log_limit gate_log;  /* connections without a request in the log (api_gate.c) */
    struct log_limit not_http_log; /* bytes no request starts with, in the log (api_gate.c) */
    struct log_limit full_log;  /* connections refused at the limit in the log (api_gate.c) */
    uint8_t *held;              /* by descriptor: 1 while the connection counts in nheld */
    size_t held_cap;            /* entries of held */
    unsigned nheld;             /* connections held now (at most cfg.max_conns) */
    json_t *summary;            /* the last GET /v1/summary answer (api_summary.c) */
    int64_t summary_ms;         /* when (monotonic ms) */
};

/* 1 when the n bytes at v are "Bearer " and the API's token (the scheme in
 * any case; constant time). */
int api_bearer_ok(const struct api *a, const char *v, size_t n);

/* ---- api_gate.c ---- */

/* Makes each new connection of the listener wait until its first request
 * head is judged: with the token, bodies up to --max-image; without,
 * API_BODY_MAX. 0, or -1 when out of memory. */
int api_gate_start(struct api *a);
/* Forgets the connections still waiting (before evhttp_free frees them). */
void api_gate_stop(struct api *a);
/* The close callback of every connection of the listener (set at its
 * admission, and again by each API request): detaches what was in flight
 * on evcon (api.c's calls, event streams, the /ota/ downloads) and stops
 * counting it. arg is the struct api. */
void api_conn_closed(struct evhttp_connection *evcon, void *arg);
/* Stops counting evcon, when it counted, and timing its requests
 * (api_gate.c; from api_conn_closed). */
void api_gate_closed(struct api *a, struct evhttp_connection *evcon);
/* A whole request of req's connection reached the API (first thing in its
 * handler): on a connection judged without the token, not timed until it is
 * answered, then the next one is (api_gate.c). */
void api_gate_request(struct api *a, struct evhttp_request *req);

/* A line for the log about the API that a client can cause at will passes
 * l (one per API_DENIED_LOG_MS): 1, with more (cap >= LOG_MORE_MAX) the
 * line's tail telling how many WHAT were held back since (log_limit_say);
 * 0 when it is held back, or there is no log. */
int api_log_pass(struct api *a, struct log_limit *l, const char *what, char *more, size_t cap);

/* "HOST:PORT" of evcon's peer into buf ("?:0" when evcon is NULL: the
 * client has gone). Returns buf. */
const char *api_peer_text(struct evhttp_connection *evcon, char *buf, size_t cap);

struct api_call;
/* What runs when the call's store request is done (r is freed after). */
typedef void (*api_cont_fn)(struct api_call *c, struct store_req *r);
/* Work of a call off the loop, or what runs on the loop once it is done (api_offload). */
typedef void (*api_job_fn)(struct api_call *c);

struct api_call {
    struct api *api;                 /* NULL: orphaned by api_stop(), freed by its done */
    struct evhttp_request *req;      /* NULL: the client is gone, do not reply */
    struct evhttp_connection *evcon; /* req's connection, to notice its close */
    struct store_req *sr;            /* in flight, or NULL */
    int stepped;                     /* a store request of it was submitted already */
    int answered;                    /* a read answered 503 while the database hung */
    api_cont_fn cont;
    struct offload *job;             /* work on a thread of its own, or NULL (api_offload) */
    api_job_fn work, job_cont;
    int job_rc, job_errno;           /* what the work left: 0 or -1, and errno */
    struct api_call *prev, *next;
    /* The endpoint's state between steps. */
    int code;                        /* status of the final answer */
    int action;                      /* rollout: pause/resume/cancel */
    int repaired;                    /* upload: the same bytes restored a missing/damaged file */
    uint64_t id;                     /* rollout id */
    uint64_t superseded;             /* rollout create: the one it superseded (0: none) */
    char key[2 * TCPOTA_ID_LEN + 1]; /* image id (hex) or device id */
    char dev[TCPOTA_MAX_STR + 1];    /* device id (device list: after) */
    char prefix[TCPOTA_MAX_STR + 1]; /* device list: q, the ids' start */
    char model[TCPOTA_MAX_NAME + 1]; /* device list: the filters */
    char group[STORE_GROUP_MAX + 1];
    char path[512];                  /* upload: the temporary file */
    json_t *json;                    /* a partial answer, or the request's body */
    struct store_rollout ro;         /* rollout create: what is created */
    struct store_image img;          /* image being added */
    struct evbuffer *body;           /* upload: its bytes, taken from the request */
    struct store_image stored;       /* upload: the same bytes' record, to repair its file */
    struct api_call *upload_next;    /* upload: the next waiting for its turn */
    int upload_queued;               /* upload: waiting for its turn */
    struct store_image *imgs;        /* image list waiting for its rollouts */
    size_t nimgs;
    char warning[1200];              /* upload: said in its answer ("warning": one a line) */
    struct store_rollout *ros;       /* rollout list waiting for its images */
    size_t nros;
    uint8_t secret[32];
};

/* api.c */
/* Monotonic milliseconds. */
int64_t api_mono_ms(void);
struct api_call *api_call_new(struct api *a, struct evhttp_request *req);
/* Ends the call without replying: its request now belongs to the caller. */
void api_call_release(struct api_call *c);
/* Replies obj (taken, may be NULL: out of memory: 500) with code, and ends the call. */
void api_reply(struct api_call *c, int code, json_t *obj);
/* Replies {"error": ..., "field": field} (field NULL: none), and ends the call. */
void api_error(struct api_call *c, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replies the error of a failed store request (NOTFOUND 404, CONFLICT 409,
 * INVAL 400 naming field, IO 500), with the store's message. */
void api_store_error(struct api_call *c, const struct store_req *r, const char *field,
                     const char *what);
/* How s reads as an image id (a unique prefix of its hex SHA-256): 1 when
 * it is API_PREFIX_MIN..2*TCPOTA_ID_LEN hex digits (then out, of size
 * 2*TCPOTA_ID_LEN+1, holds it in lowercase), 0 when it is hex digits but too
 * few, -1 otherwise (not hex digits, or too many). */
int api_image_id(const char *s, char *out);
/* Replies 400 naming field: what an image id is, then ", and S is not ..."
 * when fmt (a tail about the value given, NULL: none). The one message for
 * an id that is not one, from every route that takes an image id. */
void api_image_id_error(struct api_call *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A new store request for op, for this call; NULL after replying 500. */
struct store_req *api_req(struct api_call *c, enum store_op op);
/* Submits r for c; cont runs from its done (even when the client is gone). */
void api_submit(struct api_call *c, struct store_req *r, api_cont_fn cont);
/* Runs work(c) on a thread of its own (offload.h), then cont(c) on the
 * loop (even when the client is gone: c->req NULL), so that hashing and
 * writing an upload hold no device up. Until cont runs, work owns what it
 * reads and writes of c (not c->req, which the loop may drop meanwhile).
 * Replies 500 when no thread can be started. c holds one job or one store
 * request at a time. */
void api_offload(struct api_call *c, api_job_fn work, api_job_fn cont);
/* 0 when the request has no body, else -1 after replying 400 field "body".
 * For the routes that take none (all but POST /v1/images, POST /v1/rollouts
 * and PATCH /v1/devices/{id}): a body sent there holds something the client
 * meant (fields, a secret of its own) that would be ignored while the route
 * acts. Called after the route's path and method are judged, before it acts. */
int api_no_body(struct api_call *c);
/* The request body as a JSON object; NULL after replying 400 field "body". */
json_t *api_body_object(struct api_call *c);
/* 1 when s is len 1..max (or 0..max when empty_ok) printable ASCII bytes,
 * no space: versions, groups. */
int api_printable(const char *s, size_t max, int empty_ok);
/* {"error": msg}, or, when msg is not UTF-8 (a request's bytes echoed in
 * it), with every byte outside printable ASCII written as \xNN: jansson
 * refuses invalid UTF-8, and the answer became a 500 "out of memory".
 * NULL only when out of memory. */
json_t *api_error_object(const char *msg);
/* 405 for path (as the client sees it, "/v1/images/{id}"): the Allow header
 * RFC 9110 asks for ("GET, DELETE"), and the error "PATH takes GET and
 * DELETE". */
void api_not_allowed(struct api_call *c, const char *path, const char *allow);
/* v's text when v is a JSON string without a NUL byte, else NULL (v may be NULL). */
const char *api_json_str(const json_t *v);
/* The one rule for groups (docs/api.md): 1 when s is at most STORE_GROUP_MAX
 * printable bytes, no space, and not "" unless empty_ok; else 0 after
 * replying 400 field "group". s NULL: not a string. */
int api_group_ok(struct api_call *c, const char *s, int empty_ok);
/* 1 when s is a device id or a model as the protocol takes them (codec.c):
 * 1..max printable ASCII bytes, spaces too. A device registers under what
 * it sends; the API must be able to name it (percent-encoded in a path). */
int api_name_ok(const char *s, size_t max);
/* After a change to images, rollouts or groups: tells the server
 * (api_config.on_change, with one line for its log: fmt's text and the
 * client's address) and the event streams. */
void api_changed(struct api_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 when a value of query (NULL: none) decodes to a NUL byte ("%00"),
 * with its parameter's name in key (cap bytes); else 0. libevent keeps a
 * decoded value as a C string: "x%00y" would silently be "x". */
int api_query_nul(const char *query, char *key, size_t cap);
/* 1 when query (NULL: none) holds a '%' that is not followed by two hex
 * digits (libevent keeps "a%zz" as it is, RFC 3986 allows no such text),
 * with its parameter's name in key (cap bytes; "" in a name); else 0. */
int api_query_bad_escape(const char *query, char *key, size_t cap);
/* Its 400's words after "KEY: " (the API's and the download listener's). */
#define API_BAD_ESCAPE_SAYS "a '%' not followed by two hex digits; write a '%' as %25"
/* Checks the request's query (NULL: none) against the parameters a route
 * takes: known is a NULL-terminated list, or NULL when it takes none. Any
 * other parameter is refused, so that a typo never falls back to a default
 * or is ignored by an action; so is one given twice (which was meant?), and
 * one whose value holds %00 (it would arrive cut at the NUL). With q, the parsed query is left there for the
 * route (the caller clears it with evhttp_clear_headers); 0, or -1 after
 * replying 400 naming the parameter (q then holds nothing). */
int api_query(struct api_call *c, const char *query, const char *const *known, struct evkeyvalq *q);

/* The endpoints; rest is the path after the collection (NULL or "{id}[/verb]"). */
void api_images(struct api_call *c, int method, const char *rest, const char *query);
void api_rollouts(struct api_call *c, int method, const char *rest, const char *query);
void api_devices(struct api_call *c, int method, const char *rest, const char *query);
void api_summary(struct api_call *c, int method, const char *rest, const char *query);
void api_events(struct api_call *c, int method, const char *rest, const char *query);

/* api_events.c */
/* Writes "event: <event>" with data (taken, may be NULL: nothing sent) to every stream. */
void api_events_publish(struct api *a, const char *event, json_t *data);
/* The client of evcon went away: its streams end (libevent frees their requests). */
void api_events_conn_closed(struct api *a, struct evhttp_connection *evcon);
/* Ends every stream and the heartbeat (before evhttp_free). */
void api_events_stop(struct api *a);

/* An upload's call ends: its turn passes to the next waiting upload, or it
 * leaves the line (api_images.c; api.c's call_free calls it). */
void api_upload_end(struct api_call *c);

/* JSON of the store's records. */
json_t *api_image_json(const struct store_image *img, const struct store_rollout *ros, size_t nros);
json_t *api_device_json(const struct store_device *d);

#endif
