/* tls_pem.c - what a PEM file holds (see tls_pem.h). */
#include "tls_pem.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum tls_pem tls_pem_kind(const char *path)
{
    char buf[TLS_PEM_PEEK + 1];
    /* Never waits: a FIFO (or anything but a regular file) is not read. */
    int fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : -1;
    struct stat st;
    ssize_t r;
    size_t n = 0;
    int cert, key;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return TLS_PEM_UNREAD;
    }
    while (n < TLS_PEM_PEEK && (r = read(fd, buf + n, TLS_PEM_PEEK - n)) > 0) {
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (n == 0) {
        return TLS_PEM_EMPTY;
    }
    cert = strstr(buf, "-----BEGIN CERTIFICATE-----") != NULL;
    key = strstr(buf, "PRIVATE KEY-----") != NULL;
    return cert && key ? TLS_PEM_BOTH : cert ? TLS_PEM_CERT : key ? TLS_PEM_KEY : TLS_PEM_OTHER;
}
