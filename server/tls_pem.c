/* tls_pem.c - what a PEM file holds (see tls_pem.h). */
#define _GNU_SOURCE /* memmem */
#include "tls_pem.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PEM_CERT_MARK "-----BEGIN CERTIFICATE-----"
#define PEM_KEY_MARK "PRIVATE KEY-----"
/* Bytes kept from the end of one read for the next: a mark that spans two. */
#define PEM_CARRY (sizeof(PEM_CERT_MARK) - 1)

/* What a file of total bytes holds, by the marks seen in it. */
static enum tls_pem kind_of(size_t total, int cert, int key)
{
    if (total == 0) {
        return TLS_PEM_EMPTY;
    }
    return cert && key ? TLS_PEM_BOTH : cert ? TLS_PEM_CERT : key ? TLS_PEM_KEY : TLS_PEM_OTHER;
}

enum tls_pem tls_pem_kind_mem(const char *buf, size_t n)
{
    return kind_of(n, memmem(buf, n, PEM_CERT_MARK, strlen(PEM_CERT_MARK)) != NULL,
                   memmem(buf, n, PEM_KEY_MARK, strlen(PEM_KEY_MARK)) != NULL);
}

enum tls_pem tls_pem_kind(const char *path)
{
    char buf[PEM_CARRY + TLS_PEM_CHUNK];
    /* Never waits: a FIFO (or anything but a regular file) is not read. */
    int fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : -1;
    struct stat st;
    ssize_t r;
    size_t kept = 0, total = 0;
    int cert = 0, key = 0;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return TLS_PEM_UNREAD;
    }
    /* The whole file: a key after a bundle of certificates counts. */
    while (!(cert && key) && (r = read(fd, buf + kept, TLS_PEM_CHUNK)) > 0) {
        size_t n = kept + (size_t)r;

        total += (size_t)r;
        cert = cert || memmem(buf, n, PEM_CERT_MARK, strlen(PEM_CERT_MARK)) != NULL;
        key = key || memmem(buf, n, PEM_KEY_MARK, strlen(PEM_KEY_MARK)) != NULL;
        kept = n < PEM_CARRY ? n : PEM_CARRY;
        memmove(buf, buf + n - kept, kept);
    }
    close(fd);
    return kind_of(total, cert, key);
}
