/*
 * http_reply.h - one rule for every reply of the server's HTTP listeners
 * (the API, the dashboard, /metrics, HTTP downloads): a HEAD request gets
 * the headers of the GET and no body.
 */
#ifndef TCPOTA_SERVER_HTTP_REPLY_H
#define TCPOTA_SERVER_HTTP_REPLY_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>

/* evhttp_send_reply(req, code, reason, body), but for HEAD the body's
 * length alone, as Content-Length: libevent 2.1 leaves that header out for
 * HEAD and still writes the body after the headers, which a keep-alive
 * client (or a proxy) then reads as the start of the next response. */
static inline void http_reply(struct evhttp_request *req, int code, const char *reason,
                              struct evbuffer *body)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        char len[24];

        snprintf(len, sizeof len, "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_remove_header(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", len);
        evhttp_send_reply(req, code, reason, NULL);
        return;
    }
    evhttp_send_reply(req, code, reason, body);
}

#endif
