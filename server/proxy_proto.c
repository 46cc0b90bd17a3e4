/* proxy_proto.c - the PROXY protocol header, versions 1 and 2 (see
 * proxy_proto.h). */
#include "proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V1_MAX 107u  /* the whole line, CRLF included (the spec's limit) */
#define V1_TOKENS 6u /* PROXY TCP4 src dst sport dport */
#define V2_FIXED 16u
#define V2_CMD_LOCAL 0x0u
#define V2_CMD_PROXY 0x1u
#define V2_FAM_UNSPEC 0x00u
#define V2_FAM_TCP4 0x11u
#define V2_FAM_TCP6 0x21u
#define V2_TCP4_LEN 12u /* two addresses of 4 bytes, two ports */
#define V2_TCP6_LEN 36u /* two addresses of 16 bytes, two ports */

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int fail(const char **why, const char *what)
{
    *why = what;
    return -1;
}

/* 1 when p[0..n) could still begin with want[0..wn) (or does), else 0. */
static int prefix_of(const uint8_t *p, size_t n, const void *want, size_t wn)
{
    return memcmp(p, want, n < wn ? n : wn) == 0;
}

static void set_v4(struct proxy_addr *out, const void *addr, uint16_t port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&out->src;

    memset(&out->src, 0, sizeof(out->src));
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    in->sin_port = htons(port);
    out->srclen = sizeof(*in);
}

static void set_v6(struct proxy_addr *out, const void *addr, uint16_t port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&out->src;

    memset(&out->src, 0, sizeof(out->src));
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    in6->sin6_port = htons(port);
    out->srclen = sizeof(*in6);
}

/* A decimal port: 1 to 5 digits, at most 65535. */
static int v1_port(const char *s, uint16_t *port)
{
    unsigned long v = 0;
    size_t i;

    for (i = 0; s[i]; i++) {
        if (i == 5 || s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (i == 0 || v > 65535) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static int parse_v1(const uint8_t *p, size_t n, struct proxy_addr *out, const char **why)
{
    char line[V1_MAX + 1], *tok[V1_TOKENS + 1], *s;
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    size_t len = 0, k = 0;
    int fam;

    while (len + 1 < n && len + 1 < V1_MAX && !(p[len] == '\r' && p[len + 1] == '\n')) {
        len++;
    }
    if (len + 1 >= V1_MAX) {
        return fail(why, "a version 1 line longer than 107 bytes");
    }
    if (len + 1 >= n) {
        return 0;
    }
    memcpy(line, p, len);
    line[len] = '\0';
    if (memchr(line, '\0', len)) {
        return fail(why, "a NUL in a version 1 line");
    }
    for (s = line; k <= V1_TOKENS; k++) {
        tok[k] = s;
        if (!(s = strchr(s, ' '))) {
            k++;
            break;
        }
        *s++ = '\0';
    }
    if (k >= 2 && strcmp(tok[1], "UNKNOWN") == 0) {
        out->local = 1;
        return (int)len + 2;
    }
    if (k != V1_TOKENS) {
        return fail(why, "a version 1 line without its 6 fields");
    }
    fam = strcmp(tok[1], "TCP4") == 0 ? AF_INET : strcmp(tok[1], "TCP6") == 0 ? AF_INET6 : 0;
    if (!fam) {
        return fail(why, "a version 1 protocol other than TCP4, TCP6 or UNKNOWN");
    }
    if (inet_pton(fam, tok[2], src) != 1 || inet_pton(fam, tok[3], dst) != 1) {
        return fail(why, "a version 1 address that does not fit its protocol");
    }
    if (v1_port(tok[4], &sport) < 0 || v1_port(tok[5], &dport) < 0) {
        return fail(why, "a version 1 port that is not 0 to 65535");
    }
    out->local = 0;
    if (fam == AF_INET) {
        set_v4(out, src, sport);
    } else {
        set_v6(out, src, sport);
    }
    return (int)len + 2;
}

static int parse_v2(const uint8_t *p, size_t n, struct proxy_addr *out, const char **why)
{
    size_t len, total;
    unsigned cmd, fam;

    if (n < V2_FIXED) {
        return 0;
    }
    if ((p[12] >> 4) != 2) {
        return fail(why, "a version 2 signature with another version");
    }
    cmd = p[12] & 0x0fu;
    fam = p[13];
    len = (size_t)p[14] << 8 | p[15];
    total = V2_FIXED + len;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY) {
        return fail(why, "a version 2 command other than LOCAL or PROXY");
    }
    if (total > PROXY_HDR_MAX) {
        return fail(why, "a version 2 header longer than 256 bytes (drop HAProxy's TLV options: "
                         "send-proxy-v2-ssl*, proxy-v2-options)");
    }
    if (n < total) {
        return 0;
    }
    if (cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC) {
        out->local = 1;
        return (int)total;
    }
    out->local = 0;
    if (fam == V2_FAM_TCP4 && len >= V2_TCP4_LEN) {
        set_v4(out, p + V2_FIXED, (uint16_t)(p[V2_FIXED + 8] << 8 | p[V2_FIXED + 9]));
    } else if (fam == V2_FAM_TCP6 && len >= V2_TCP6_LEN) {
        set_v6(out, p + V2_FIXED, (uint16_t)(p[V2_FIXED + 32] << 8 | p[V2_FIXED + 33]));
    } else if (fam == V2_FAM_TCP4 || fam == V2_FAM_TCP6) {
        return fail(why, "a version 2 address block too short for its family");
    } else {
        return fail(why, "a version 2 family other than TCP over IPv4 or IPv6");
    }
    return (int)total;
}

int proxy_parse(const uint8_t *p, size_t n, struct proxy_addr *out, const char **why)
{
    static const char v1[] = V1_PREFIX;

    *why = "";
    if (n == 0) {
        return 0;
    }
    if (prefix_of(p, n, v2_sig, sizeof(v2_sig))) {
        return n < sizeof(v2_sig) ? 0 : parse_v2(p, n, out, why);
    }
    if (prefix_of(p, n, v1, sizeof(v1) - 1)) {
        return n < sizeof(v1) - 1 ? 0 : parse_v1(p, n, out, why);
    }
    return fail(why, "no PROXY protocol header (the connection's first bytes are something else)");
}
