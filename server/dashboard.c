/* dashboard.c - serves the dashboard's built-in files (see dashboard.h). */
#include "dashboard.h"
#include "http_reply.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <string.h>

#define DASH_PREFIX "/dash/"

/* Only this server's own files and API: no inline script, no other origin. */
#define DASH_CSP "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; " \
                 "base-uri 'none'; form-action 'self'"

const struct dash_asset *dash_find(const char *path)
{
    unsigned i;

    for (i = 0; i < dash_nassets; i++) {
        if (strcmp(dash_assets[i].path, path) == 0) return &dash_assets[i];
    }
    return NULL;
}

static void send_plain(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *b = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    if (b) evbuffer_add(b, text, strlen(text));
    http_reply(req, code, reason, b);
    if (b) evbuffer_free(b);
}

int dash_serve(struct evhttp_request *req, const char *path)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct dash_asset *a;
    struct evbuffer *b;

    if (strcmp(path, "/") != 0 && strncmp(path, DASH_PREFIX, strlen(DASH_PREFIX)) != 0) return 0;
    evhttp_add_header(h, "Content-Security-Policy", DASH_CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    /* The page's files need no token: their connection is closed after
     * them, so a connection that began without the token carries nothing
     * else (its bodies are small: api_gate.c), and the page's uploads go
     * on connections that began with it. */
    evhttp_add_header(h, "Connection", "close");
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        evhttp_add_header(h, "Allow", "GET, HEAD");
        send_plain(req, 405, "Method Not Allowed", "the dashboard's files take GET\n");
        return 1;
    }
    if (!(a = dash_find(path))) {
        send_plain(req, 404, "Not Found", "no such dashboard file\n");
        return 1;
    }
    evhttp_add_header(h, "Content-Type", a->type);
    if ((b = evbuffer_new()) != NULL) {
        /* The arrays are static: referenced, not copied. */
        evbuffer_add_reference(b, a->data, a->len, NULL, NULL);
    }
    http_reply(req, 200, "OK", b);
    if (b) evbuffer_free(b);
    return 1;
}
