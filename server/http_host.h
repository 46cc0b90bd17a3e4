/*
 * http_host.h - which Host values the HTTP listeners of fleet mode (the
 * API, the dashboard, /metrics, the downloads) answer to, with
 * `tcpota serve --http-host NAME,...` (docs/security.md, DNS rebinding).
 *
 * A web page can rename an address it may not read (a loopback or LAN
 * listener) to a name of its own site (DNS rebinding): its script then
 * reads that listener as its own origin, sending Host: <its name>. With
 * names given, a request is answered only when its Host is one of them,
 * "localhost", or an IP address (a rebinding page cannot send an
 * address: the browser sends the name it resolved); any port. Without
 * names nothing is checked (a fleet's devices may use any name for the
 * server). Pure: no I/O, no allocation; tests/unit/test_http_host.c.
 */
#ifndef TCPOTA_SERVER_HTTP_HOST_H
#define TCPOTA_SERVER_HTTP_HOST_H

#include <stddef.h>

#define HTTP_HOSTS_MAX 8u       /* names --http-host takes */
#define HTTP_HOST_NAME_MAX 253u /* a DNS name's bytes (RFC 1035, without the root's dot) */
#define HTTP_HOST_REFUSAL_MAX 400u /* room for http_host_refused's words */

/* The names --http-host gave, lowercase, without a trailing dot; n == 0:
 * every Host is answered. */
struct http_hosts {
    char names[HTTP_HOSTS_MAX][HTTP_HOST_NAME_MAX + 1];
    unsigned n;
};

/* Reads "NAME[,NAME...]" (letters, digits, '-' and '.'; at most
 * HTTP_HOSTS_MAX) into h. Returns 0, or -1 with what is wrong and what to
 * do in err. */
int http_hosts_parse(struct http_hosts *h, const char *list, char *err, size_t errlen);

/* NULL when a request with this Host value (NULL: none, which
 * http_host_bad in http_reply.h judges) may be answered; else why not, in
 * words for the client and the log (into buf, cap bytes: at least
 * HTTP_HOST_REFUSAL_MAX for all of them; the Host shown cut to 63 bytes,
 * each byte that is not printable, or is a quote or a backslash, as '?':
 * the words go into JSON as they are). */
const char *http_host_refused(const struct http_hosts *h, const char *host, char *buf, size_t cap);

#endif
