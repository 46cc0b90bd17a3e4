/* legacy.c - the sample's req0/req1 protocol (see legacy.h). */
#include "tcpota/legacy.h"
#include "tcpota/codec.h"

#include <string.h>

static const char REQ0[] = "req0\r\n\r\n";

int tcpota_detect(const uint8_t *in, size_t len)
{
    if (len == 0) {
        return TCPOTA_ERR_AGAIN;
    }
    switch (in[0]) {
    case TCPOTA_T_HELLO: return TCPOTA_KIND_V1;
    case 'r': return TCPOTA_KIND_LEGACY;
    case 0x16: return TCPOTA_KIND_TLS;
    default: return TCPOTA_ERR_PROTO;
    }
}

void tcpota_legacy_init(struct tcpota_legacy *l, uint32_t size)
{
    memset(l, 0, sizeof(*l));
    l->size = size;
}

int tcpota_legacy_input(struct tcpota_legacy *l, const uint8_t *in, size_t len,
                        struct tcpota_legacy_pkg *pkg)
{
    size_t used = 0;

    memset(pkg, 0, sizeof(*pkg));
    while (used < len) {
        uint8_t c = in[used++];
        /* Both requests share all bytes but the fourth: check as they come,
         * so garbage is refused at its first byte. */
        if (l->have == 3 ? (c != '0' && c != '1') : c != (uint8_t)REQ0[l->have]) {
            return TCPOTA_ERR_PROTO;
        }
        l->req[l->have++] = c;
        if (l->have == TCPOTA_LEGACY_REQ_LEN) {
            l->have = 0;
            pkg->ready = 1;
            if (l->req[3] == '1' && l->started) {
                pkg->resend = 1; /* same package again */
            } else if (l->started) {
                uint32_t next = l->pos + l->last_len;
                l->pos = next > l->size ? l->size : next;
            }
            /* A req1 before any package asks for the first one. */
            l->started = 1;
            l->last_len = (uint16_t)(l->size - l->pos < TCPOTA_LEGACY_PKG ? l->size - l->pos
                                                                         : TCPOTA_LEGACY_PKG);
            pkg->offset = l->pos;
            pkg->len = l->last_len;
            break;
        }
    }
    return (int)used;
}

/* Decimal digits of v into p (no NUL); returns the count. */
static size_t put_dec(char *p, uint32_t v)
{
    char tmp[10];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) {
        p[i] = tmp[n - 1 - i];
    }
    return n;
}

int tcpota_legacy_header(uint32_t total, uint16_t len, char *out, size_t cap)
{
    char buf[TCPOTA_LEGACY_HEAD_MAX];
    size_t n = 0;

    memcpy(buf, "total: ", 7);
    n = 7;
    n += put_dec(buf + n, total);
    memcpy(buf + n, "\r\nlength: ", 10);
    n += 10;
    n += put_dec(buf + n, len);
    memcpy(buf + n, "\r\n\r\n", 4);
    n += 4;
    if (n > cap) {
        return TCPOTA_ERR_NOSPC;
    }
    memcpy(out, buf, n);
    return (int)n;
}
