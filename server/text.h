/*
 * text.h - copying C strings into fixed-size fields, for the paths a
 * check-in takes many times a second: snprintf("%s") costs about 500
 * instructions a call (callgrind), a bounded copy a few dozen.
 */
#ifndef TCPOTA_SERVER_TEXT_H
#define TCPOTA_SERVER_TEXT_H

#include <stddef.h>
#include <string.h>

/* Copies src (NULL: "") into dst of size bytes (size > 0), cutting it to
 * size - 1 bytes, always terminated like snprintf(dst, size, "%s", src).
 * Returns the length copied. */
static inline size_t text_copy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;

    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
    return n;
}

#endif
