/* api_events.c - GET /v1/events: server-sent events for the dashboard
 * (docs/api.md). Each stream is a chunked reply that stays open; a device's
 * step and any change made through the API are written to every stream as
 * they happen. A client that reads too slowly is cut, its connection freed
 * (it reconnects and reads the current state again), so a storm of steps
 * never piles up in memory. The token is checked like every request's: the browser reads the
 * stream with fetch() and sends the bearer header, so no token goes in a URL. */
#include "api_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct api_stream {
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct api_stream *next;
};

/* Unlinks s and frees it; ends its reply unless the connection is gone. */
static void stream_end(struct api *a, struct api_stream *s, int send_end)
{
    struct api_stream **p;

    for (p = &a->streams; *p && *p != s; p = &(*p)->next) {
    }
    if (*p) *p = s->next;
    a->nstreams--;
    if (send_end) evhttp_send_reply_end(s->req);
    free(s);
}

/* A client API_STREAM_BACKLOG behind is cut: its connection is freed with
 * what waits for it (it reconnects and reads the current state again).
 * Ending the reply alone left that backlog, and the connection without a
 * timeout, for as long as the client held the socket: memory without a
 * bound. Said in the log, once a second at most. */
static void stream_cut(struct api *a, struct api_stream *s)
{
    struct evhttp_connection *evcon = s->evcon;
    char line[320], peer[80], more[LOG_MORE_MAX];

    if (api_log_pass(a, &a->cut, "cut streams", more, sizeof more)) {
        snprintf(line, sizeof line, "API: event stream of %s cut: %u KiB of events waited for"
                 " it unread%s", api_peer_text(evcon, peer, sizeof peer),
                 API_STREAM_BACKLOG >> 10, more);
        a->cfg.log(a->cfg.ctx, line);
    }
    stream_end(a, s, 0); /* out of the list first: the close callback must not find it */
    evhttp_connection_free(evcon); /* frees the request with it */
}

/* Sends text to one stream, or cuts it when its client lags too far behind. */
static void stream_send(struct api *a, struct api_stream *s, const char *text, size_t len)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
    struct evbuffer *b;

    if (bev && evbuffer_get_length(bufferevent_get_output(bev)) > API_STREAM_BACKLOG) {
        stream_cut(a, s);
        return;
    }
    if ((b = evbuffer_new()) != NULL) {
        evbuffer_add(b, text, len);
        evhttp_send_reply_chunk(s->req, b);
        evbuffer_free(b);
    }
}

static void send_all(struct api *a, const char *text, size_t len)
{
    struct api_stream *s, *next;

    for (s = a->streams; s; s = next) {
        next = s->next; /* s may end */
        stream_send(a, s, text, len);
    }
}

void api_events_publish(struct api *a, const char *event, json_t *data)
{
    char *json = data && a->streams ? json_dumps(data, JSON_COMPACT) : NULL;
    size_t len;
    char *text;

    json_decref(data);
    if (!json) return;
    len = strlen(event) + strlen(json) + sizeof "event: \ndata: \n\n";
    if ((text = malloc(len)) != NULL) {
        snprintf(text, len, "event: %s\ndata: %s\n\n", event, json);
        send_all(a, text, strlen(text));
    }
    free(text);
    free(json);
}

void api_notify_device(struct api *a, const char *id, const char *state, uint32_t bytes,
                       uint32_t size, const char *reason)
{
    uint32_t pct = size ? (uint32_t)((uint64_t)bytes * 100u / size) : 0;

    if (!a || !a->streams) return;
    api_events_publish(a, "device", json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "id", id, "state",
                                              state, "bytes", (json_int_t)bytes, "size",
                                              (json_int_t)size, "percent", (json_int_t)pct,
                                              "reason", reason ? reason : ""));
}

/* A comment line now and then: proxies keep the stream, and a client gone
 * without a word is noticed when the write fails. */
static void beat(evutil_socket_t fd, short what, void *arg)
{
    static const char text[] = ": beat\n\n";

    (void)fd;
    (void)what;
    send_all(arg, text, sizeof text - 1);
}

void api_events_conn_closed(struct api *a, struct evhttp_connection *evcon)
{
    struct api_stream *s, *next;

    for (s = a->streams; s; s = next) {
        next = s->next;
        if (s->evcon != evcon) continue;
        /* A reply not ended is detached from its failed connection and left
         * to us; one still attached goes with the connection. */
        if (evhttp_request_get_connection(s->req) == NULL) evhttp_request_free(s->req);
        stream_end(a, s, 0);
    }
}

void api_events(struct api_call *c, int method, const char *rest, const char *query)
{
    static const char hello[] = "retry: 2000\n: tcpota events\n\n";
    struct api *a = c->api;
    struct evhttp_request *req = c->req;
    struct api_stream *s;
    struct timeval tv = {API_STREAM_BEAT_S, 0};

    if (rest) {
        api_error(c, 404, NULL, "no such path /v1/events/%s", rest);
        return;
    }
    if (method != EVHTTP_REQ_GET) {
        api_not_allowed(c, "/v1/events", "GET");
        return;
    }
    if (api_query(c, query, NULL, NULL) < 0 || api_no_body(c) < 0) return;
    if (a->nstreams >= API_STREAMS_MAX) {
        api_error(c, 503, NULL, "%u event streams are open already; close a dashboard",
                  API_STREAMS_MAX);
        return;
    }
    if (!a->beat && (!(a->beat = event_new(a->cfg.base, -1, EV_PERSIST, beat, a)) ||
                     event_add(a->beat, &tv) != 0)) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    if (!(s = calloc(1, sizeof *s))) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    s->req = req;
    s->evcon = c->evcon;
    s->next = a->streams;
    a->streams = s;
    a->nstreams++;
    api_call_release(c); /* the stream owns the request from here */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    /* A stream outlives the API's idle timeout: the beat and the backlog
     * check notice a client that went away. */
    evhttp_connection_set_timeout(s->evcon, -1);
    evhttp_send_reply_start(req, 200, "OK");
    stream_send(a, s, hello, sizeof hello - 1);
}

void api_events_stop(struct api *a)
{
    /* The server stops: each chunked stream's last chunk is written now,
     * as the loop will not run again, so that a client reads the stream's
     * end and not a cut (curl: exit 18; a dashboard reconnects either
     * way). The API is plain HTTP, so what the bufferevent holds is what
     * goes on the wire; what the socket does not take at once is lost, as
     * it was. An HTTP/1.0 stream (nginx proxies so by default) is not
     * chunked: its end is the close, and ending its reply here would free
     * the request and the connection under us. The stream leaves the list
     * first: the connection's close callback must not find it. */
    while (a->streams) {
        struct api_stream *s = a->streams;
        struct evhttp_request *req = s->req;
        struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);

        stream_end(a, s, 0); /* evhttp_free frees the requests */
        /* (evhttp_send_reply_start chunks a reply, and says so in this
         * header, for HTTP/1.1 and later only.) */
        if (!evhttp_find_header(evhttp_request_get_output_headers(req), "Transfer-Encoding")) continue;
        evhttp_send_reply_end(req);
        if (bev) {
            /* (evbuffer_write refuses it: a socket bufferevent keeps its
             * output's front frozen but for its own write callback.) */
            struct evbuffer *out = bufferevent_get_output(bev);
            size_t len = evbuffer_get_length(out);
            unsigned char *p = evbuffer_pullup(out, -1); /* at most API_STREAM_BACKLOG + a chunk */
            if (p) (void)send(bufferevent_getfd(bev), p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
    }
    if (a->beat) event_free(a->beat);
    a->beat = NULL;
}
