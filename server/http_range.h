/*
 * http_range.h - which bytes of an image a GET answers, by the rules of
 * RFC 9110 (section 14, Range; 13.1.5, If-Range), for the HTTP downloads of
 * fleet mode (http_ota.c). Pure: no I/O, no allocation; unit-tested in
 * tests/unit/test_http_range.c.
 *
 * What is answered:
 *   - no Range, a Range of another unit, or several ranges -> 200, all of it
 *     (RFC 9110 lets a server ignore Range; one range is all an OTA client
 *     asks for, so no multipart answers);
 *   - If-Range that is not exactly the image's strong ETag -> 200, all of it
 *     (a weak tag or a date never matches: the server sends no Last-Modified);
 *   - bytes=N-, bytes=N-M, bytes=-S within the image -> 206 with that range
 *     (M past the end is cut to the last byte);
 *   - a range starting at or past the end (a start past 64 bits too), or
 *     bytes=-0 -> 416;
 *   - bytes= with anything else (no digits, M < N, garbage) -> 400.
 */
#ifndef TCPOTA_SERVER_HTTP_RANGE_H
#define TCPOTA_SERVER_HTTP_RANGE_H

#include <stddef.h>
#include <stdint.h>

/* What to answer: status 200 / 206 (first..last, inclusive), 416 or 400. */
struct http_range {
    int status;
    uint64_t first, last; /* 200 and 206: the bytes to send */
    const char *why;      /* 400 and 416: what is wrong, for the error body */
};

/* Decides the answer for an entity of size (>= 1) bytes whose strong ETag
 * is etag (with its quotes), given the request's Range and If-Range header
 * values (NULL: absent). Returns out->status. */
int http_range_decide(const char *range, const char *if_range, const char *etag, uint64_t size,
                      struct http_range *out);

#endif
