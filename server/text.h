/*
 * text.h - copying C strings into fixed-size fields, for the paths a
 * check-in takes many times a second: snprintf("%s") costs about 500
 * instructions a call (callgrind), a bounded copy a few dozen.
 */
#ifndef TCPOTA_SERVER_TEXT_H
#define TCPOTA_SERVER_TEXT_H

#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "tcpota/version.h"

/* Sizes of text_sockaddr's two strings: any IPv6 address (an IPv6 scope
 * longer than its room makes getnameinfo fail: "?"), and a port. */
#define TEXT_HOST_LEN 48u
#define TEXT_PORT_LEN 8u

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

/* What kind of file mode m is, as a message names it ("a FIFO"): for a
 * file found where another kind belongs. */
static inline const char *text_file_kind(mode_t m)
{
    if (S_ISREG(m)) return "a regular file";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a file";
}

#define TEXT_STR_(x) #x
#define TEXT_STR(x) TEXT_STR_(x) /* a number macro as a string literal */

/* What is wrong with version v, to follow "version 'V' " in a message, when
 * it has no place in the offer policy's order (tcpota/version.h); NULL
 * when it has one. A number too long or a field too many is named: a
 * trial's "1.0.20261207" was told it was "not a semantic version". */
static inline const char *text_version_unordered(const char *v)
{
    size_t i = 0, digits = 0, fields = 1;
    int order;

    if (!v || tcpota_version_order(v, strlen(v), v, strlen(v), &order) == 0) {
        return NULL;
    }
    i = v[0] == 'v' || v[0] == 'V';
    for (; v[i] >= '0' && v[i] <= '9'; i++) {
        digits++;
        if (v[i + 1] == '.' && v[i + 2] >= '0' && v[i + 2] <= '9') {
            if (digits > TCPOTA_VERSION_DIGITS) break;
            fields++, i++, digits = 0;
        }
    }
    if (digits > TCPOTA_VERSION_DIGITS) {
        return "has a number of more than " TEXT_STR(TCPOTA_VERSION_DIGITS) " digits (a version's"
               " numbers have at most " TEXT_STR(TCPOTA_VERSION_DIGITS) ", like 2026.1207.1)";
    }
    if (fields > TCPOTA_VERSION_FIELDS) {
        return "has more than " TEXT_STR(TCPOTA_VERSION_FIELDS) " numbers (a version has at most "
               TEXT_STR(TCPOTA_VERSION_FIELDS) ", like 1.2.3.4)";
    }
    return "is not a semantic version (like 2.1.0)";
}

/* "s" to put after a noun counted n, "" for one: "%u connection%s". */
static inline const char *text_s(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

/* Writes v in decimal at o and returns the end (no terminator). */
static inline char *text_u16(char *o, unsigned v)
{
    char d[5];
    int n = 0;

    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 5);
    while (n) *o++ = d[--n];
    return o;
}

/* The address and port of `sa` as numbers, as getnameinfo() with
 * NI_NUMERICHOST | NI_NUMERICSERV writes them ("127.0.0.1", "40312"; "?"
 * when it fails). Every accepted device takes this: for an IPv4 socket it
 * costs a few dozen instructions, where glibc's getnameinfo took 2,500
 * (callgrind); other families go to getnameinfo (on an IPv6 socket, IPv4
 * devices too, as ::ffff:a.b.c.d). */
static inline void text_sockaddr(const struct sockaddr *sa, socklen_t len,
                                 char host[TEXT_HOST_LEN], char port[TEXT_PORT_LEN])
{
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        const uint8_t *b = (const uint8_t *)&in->sin_addr;
        char *o = host;
        int i;

        for (i = 0; i < 4; i++) {
            o = text_u16(o, b[i]);
            *o++ = i < 3 ? '.' : '\0';
        }
        *text_u16(port, ntohs(in->sin_port)) = '\0';
        return;
    }
    if (getnameinfo(sa, len, host, TEXT_HOST_LEN, port, TEXT_PORT_LEN,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        memcpy(host, "?", 2);
        memcpy(port, "?", 2);
    }
}

/* The UTF-8 byte order mark some editors put first in a text file (read
 * as text, it became part of the first name or token: config files, token
 * files, secrets files take it as nothing). */
#define TEXT_UTF8_BOM "\xef\xbb\xbf"
#define TEXT_UTF8_BOM_LEN (sizeof(TEXT_UTF8_BOM) - 1)

/* TEXT_UTF8_BOM_LEN when p (n bytes) starts with the mark, else 0. */
static inline size_t text_bom(const char *p, size_t n)
{
    return n >= TEXT_UTF8_BOM_LEN && memcmp(p, TEXT_UTF8_BOM, TEXT_UTF8_BOM_LEN) == 0
               ? TEXT_UTF8_BOM_LEN
               : 0;
}

#endif
