/* http_host.c - the Host values --http-host answers to (http_host.h). */
#include "http_host.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* 1 for a byte of a DNS name as --http-host takes it. */
static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.';
}

int http_hosts_parse(struct http_hosts *h, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    unsigned char addr[16];

    memset(h, 0, sizeof(*h));
    for (;;) {
        size_t len, i;
        char *name;

        while (*p == ' ') p++; /* "a.com, b.com" */
        len = strcspn(p, ",");
        while (len && p[len - 1] == ' ') len--;
        if (len && p[len - 1] == '.') len--; /* "example.com." is example.com */
        if (len == 0 || len > HTTP_HOST_NAME_MAX) {
            snprintf(err, errlen, "--http-host takes names separated by commas (each 1 to %u"
                     " characters), not '%.80s'", HTTP_HOST_NAME_MAX, list);
            return -1;
        }
        if (h->n == HTTP_HOSTS_MAX) {
            snprintf(err, errlen, "--http-host takes at most %u names", HTTP_HOSTS_MAX);
            return -1;
        }
        name = h->names[h->n++];
        for (i = 0; i < len; i++) {
            if (!name_char(p[i])) {
                snprintf(err, errlen, "--http-host: '%.*s' is not a host name (letters, digits,"
                         " '-' and '.'; an IP address needs no --http-host)", (int)len, p);
                return -1;
            }
            name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
        }
        name[len] = '\0';
        if (inet_pton(AF_INET, name, addr) == 1) {
            snprintf(err, errlen, "--http-host: %s is an IP address, which is always answered;"
                     " give names only", name);
            return -1;
        }
        p += strcspn(p, ",");
        if (!*p) return 0;
        p++;
    }
}

/* 1 when s is ":" and 1 to 5 digits, or empty (no port). */
static int port_ok(const char *s)
{
    size_t n;

    if (!*s) return 1;
    n = strspn(s + 1, "0123456789");
    return s[0] == ':' && n >= 1 && n <= 5 && s[1 + n] == '\0';
}

/* The name part of a Host value into out (its port and, for an IPv6
 * address, its brackets gone); 0, or -1 when it does not fit or is no
 * host[:port]. *v6: it was in brackets. */
static int host_name(const char *host, char *out, size_t cap, int *v6)
{
    size_t len;
    const char *end;

    *v6 = host[0] == '[';
    if (*v6) {
        if (!(end = strchr(host, ']'))) return -1;
        host++;
        len = (size_t)(end - host);
        end++;
    } else {
        end = strrchr(host, ':');
        len = end ? (size_t)(end - host) : strlen(host);
        end = host + len;
    }
    if (len == 0 || len >= cap || !port_ok(end)) return -1;
    memcpy(out, host, len);
    out[len] = '\0';
    if (len && out[len - 1] == '.') out[len - 1] = '\0';
    return 0;
}

const char *http_host_refused(const struct http_hosts *h, const char *host, char *buf, size_t cap)
{
    char name[HTTP_HOST_NAME_MAX + 2], shown[64];
    unsigned char addr[16];
    size_t i;
    int v6;

    if (!h || h->n == 0 || !host) return NULL;
    if (host_name(host, name, sizeof(name), &v6) == 0) {
        if (v6 ? inet_pton(AF_INET6, name, addr) == 1 : inet_pton(AF_INET, name, addr) == 1) {
            return NULL;
        }
        if (strcasecmp(name, "localhost") == 0) return NULL;
        for (i = 0; i < h->n; i++) {
            if (strcasecmp(name, h->names[i]) == 0) return NULL;
        }
    }
    for (i = 0; host[i] && i + 1 < sizeof(shown); i++) {
        shown[i] = host[i] > ' ' && host[i] < 0x7f && host[i] != '"' && host[i] != '\\' ? host[i]
                                                                                       : '?';
    }
    shown[i] = '\0';
    snprintf(buf, cap, "%s%s%s is not a name this server answers to: ask by a name of its"
             " --http-host, localhost or its address, or add the name to tcpota serve --http-host"
             " (docs/security.md, DNS rebinding)", *host ? "Host " : "an empty Host", shown,
             host[i] ? "..." : "");
    return buf;
}
