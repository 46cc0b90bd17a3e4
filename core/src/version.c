/* version.c - the order of firmware versions (see version.h). */
#include "tcpota/version.h"

#include "tcpota/tcpota.h"

#include <stdint.h>
#include <string.h>

struct ver {
    uint32_t field[TCPOTA_VERSION_FIELDS];
    const char *pre; /* pre-release identifiers, or NULL */
    size_t pre_len;
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_ident(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Reads 1..TCPOTA_VERSION_DIGITS digits at s[*i]. Returns 0 or -1. */
static int number(const char *s, size_t len, size_t *i, uint32_t *out)
{
    size_t start = *i;
    uint32_t v = 0;

    while (*i < len && is_digit(s[*i])) {
        if (*i - start == TCPOTA_VERSION_DIGITS) {
            return -1;
        }
        v = v * 10u + (uint32_t)(s[*i] - '0');
        (*i)++;
    }
    *out = v;
    return *i > start ? 0 : -1;
}

/* Dot-separated, non-empty identifiers of [0-9A-Za-z-] up to `len`. */
static int identifiers(const char *s, size_t len)
{
    size_t i, run = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (run == 0) return -1;
            run = 0;
        } else if (is_ident(s[i])) {
            run++;
        } else {
            return -1;
        }
    }
    return run ? 0 : -1;
}

static int parse(const char *s, size_t len, struct ver *v)
{
    size_t i = 0, end = len, n;
    unsigned f;

    for (f = 0; f < TCPOTA_VERSION_FIELDS; f++) v->field[f] = 0;
    v->pre = NULL;
    v->pre_len = 0;
    if (!s) return -1;
    if (i < len && (s[i] == 'v' || s[i] == 'V')) i++;
    for (f = 0;; f++) {
        if (f == TCPOTA_VERSION_FIELDS || number(s, len, &i, &v->field[f]) < 0) return -1;
        if (i < len && s[i] == '.') {
            i++;
            continue;
        }
        break;
    }
    for (n = i; n < len; n++) {
        if (s[n] == '+') {
            if (identifiers(s + n + 1, len - n - 1) < 0) return -1;
            end = n;
            break;
        }
    }
    if (i == end) return 0;
    if (s[i] != '-' || identifiers(s + i + 1, end - i - 1) < 0) return -1;
    v->pre = s + i + 1;
    v->pre_len = end - i - 1;
    return 0;
}

static int cmp_u32(uint32_t a, uint32_t b)
{
    return a < b ? -1 : a > b;
}

/* One pre-release identifier against another (SemVer 2.0.0, rule 11.4). */
static int cmp_ident(const char *a, size_t al, const char *b, size_t bl)
{
    size_t i, an = 1, bn = 1;

    for (i = 0; i < al; i++) an = an && is_digit(a[i]);
    for (i = 0; i < bl; i++) bn = bn && is_digit(b[i]);
    if (an && bn) {
        /* Compare by value: longer means larger once leading zeros go. */
        while (al > 1 && *a == '0') a++, al--;
        while (bl > 1 && *b == '0') b++, bl--;
        if (al != bl) return al < bl ? -1 : 1;
    } else if (an != bn) {
        return an ? -1 : 1; /* numeric identifiers sort first */
    }
    for (i = 0; i < al && i < bl; i++) {
        if (a[i] != b[i]) return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    }
    return cmp_u32((uint32_t)al, (uint32_t)bl);
}

static size_t ident_len(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && s[n] != '.') n++;
    return n;
}

static int cmp_pre(const struct ver *a, const struct ver *b)
{
    const char *p = a->pre, *q = b->pre;
    size_t pl = a->pre_len, ql = b->pre_len;

    if (!p || !q) return p ? -1 : q ? 1 : 0; /* a release is above its pre-releases */
    for (;;) {
        size_t x = ident_len(p, pl), y = ident_len(q, ql);
        int c = cmp_ident(p, x, q, y);
        if (c) return c;
        if (x == pl || y == ql) return x == pl ? (y == ql ? 0 : -1) : 1;
        p += x + 1, pl -= x + 1;
        q += y + 1, ql -= y + 1;
    }
}

int tcpota_version_order(const char *a, size_t alen, const char *b, size_t blen, int *order)
{
    struct ver va, vb;
    unsigned f;

    if (!order || parse(a, alen, &va) < 0 || parse(b, blen, &vb) < 0) {
        return TCPOTA_ERR_INVAL;
    }
    for (f = 0; f < TCPOTA_VERSION_FIELDS; f++) {
        int c = cmp_u32(va.field[f], vb.field[f]);
        if (c) {
            *order = c;
            return 0;
        }
    }
    *order = cmp_pre(&va, &vb);
    return 0;
}

int tcpota_version_same(const char *a, const char *b)
{
    size_t alen = strlen(a), blen = strlen(b);
    int order;

    /* memcmp, not strcmp: the core calls no more of libc (core-check.sh) */
    return (alen == blen && memcmp(a, b, alen) == 0) ||
           (tcpota_version_order(a, alen, b, blen, &order) == 0 && order == 0);
}
