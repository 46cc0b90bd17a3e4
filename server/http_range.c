/* http_range.c - Range and If-Range of an image's GET (see http_range.h). */
#include "http_range.h"

#include <string.h>
#include <strings.h>

#define RANGE_UNIT "bytes="

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* A decimal number of 1 or more digits at *p; advances *p. One past 64
 * bits is UINT64_MAX: RFC 9110 allows any number of digits, and a number
 * that large is past the end of any image (a start: 416; an end or a
 * suffix: the image's last byte), never malformed. Returns 0, or -1 when
 * there is no digit. */
static int number(const char **p, uint64_t *v)
{
    const char *s = *p;
    size_t n = 0;
    uint64_t d;

    *v = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        d = (uint64_t)(s[n] - '0');
        *v = *v > (UINT64_MAX - d) / 10u ? UINT64_MAX : *v * 10u + d;
        n++;
    }
    *p = s + n;
    return n ? 0 : -1;
}

static int answer(struct http_range *out, int status, uint64_t first, uint64_t last, const char *why)
{
    out->status = status;
    out->first = first;
    out->last = last;
    out->why = why;
    return status;
}

/* One range-spec (first-pos "-" [last-pos] or "-" suffix-length), all of s. */
static int one_range(const char *s, uint64_t size, struct http_range *out)
{
    uint64_t a, b;

    s = skip_ows(s);
    if (*s == '-') {
        s++;
        if (number(&s, &b) < 0 || *skip_ows(s)) {
            return answer(out, 400, 0, 0, "Range: a suffix bytes=-N needs N, digits only");
        }
        if (b == 0) {
            return answer(out, 416, 0, 0, "Range: bytes=-0 asks for no byte");
        }
        return answer(out, 206, b >= size ? 0 : size - b, size - 1, NULL);
    }
    if (number(&s, &a) < 0 || *s++ != '-') {
        return answer(out, 400, 0, 0, "Range: expected bytes=N-, bytes=N-M or bytes=-N");
    }
    s = skip_ows(s);
    b = UINT64_MAX;
    if (*s && (number(&s, &b) < 0 || *skip_ows(s))) {
        return answer(out, 400, 0, 0, "Range: the end of bytes=N-M must be digits only");
    }
    if (b < a) {
        return answer(out, 400, 0, 0, "Range: in bytes=N-M, M is before N");
    }
    if (a >= size) {
        return answer(out, 416, 0, 0, "Range: starts at or past the end of the image");
    }
    return answer(out, 206, a, b >= size ? size - 1 : b, NULL);
}

int http_range_decide(const char *range, const char *if_range, const char *etag, uint64_t size,
                      struct http_range *out)
{
    const char *spec;

    answer(out, 200, 0, size - 1, NULL);
    if (!range) {
        return 200;
    }
    spec = skip_ows(range);
    if (strncasecmp(spec, RANGE_UNIT, strlen(RANGE_UNIT)) != 0) {
        return 200; /* another unit: RFC 9110 says ignore it */
    }
    if (if_range && strcmp(skip_ows(if_range), etag) != 0) {
        return 200; /* the client's copy is of another image: all of this one */
    }
    spec += strlen(RANGE_UNIT);
    if (!*skip_ows(spec)) {
        return answer(out, 400, 0, 0, "Range: bytes= names no range");
    }
    if (strchr(spec, ',')) {
        return 200; /* several ranges: served whole rather than as multipart */
    }
    return one_range(spec, size, out);
}
