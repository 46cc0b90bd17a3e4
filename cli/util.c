/* util.c - argument parsing shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cli_hostport(const char *s, const char *what, char *host, size_t hcap, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    unsigned long long p;

    if (!s || !*s) {
        fprintf(stderr, "tcpota: %s: expected HOST:PORT\n", what);
        return -1;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') {
            fprintf(stderr, "tcpota: %s: '%s' is not [IPv6]:PORT\n", what, s);
            return -1;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            fprintf(stderr, "tcpota: %s: '%s' has no :PORT\n", what, s);
            return -1;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hcap) {
        fprintf(stderr, "tcpota: %s: bad host in '%s'\n", what, s);
        return -1;
    }
    if (cli_number(colon + 1, what, 0, 65535, &p) < 0) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port = (uint16_t)p;
    return 0;
}

int cli_number(const char *s, const char *what, unsigned long long min, unsigned long long max,
               unsigned long long *out)
{
    char *end;
    unsigned long long v;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') {
        fprintf(stderr, "tcpota: %s: expected a number\n", what);
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max) {
        fprintf(stderr, "tcpota: %s: '%s' is not a number in %llu..%llu\n", what, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cli_open_regular(const char *path, const char *what)
{
    struct stat st;
    int fd, fl;

    if (!path || !*path) {
        fprintf(stderr, "tcpota: %s: no file name given\n", what);
        return -1;
    }
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tcpota: %s: cannot open %s: %s\n", what, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        fprintf(stderr, "tcpota: %s: %s: %s\n", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "tcpota: %s: %s is not a regular file%s; give the path of a file\n", what,
                path, S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
        close(fd);
        return -1;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        fprintf(stderr, "tcpota: %s: %s: %s\n", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

FILE *cli_fopen_regular(const char *path, const char *what)
{
    int fd = cli_open_regular(path, what);
    FILE *f;

    if (fd < 0) {
        return NULL;
    }
    f = fdopen(fd, "r");
    if (!f) {
        fprintf(stderr, "tcpota: %s: %s: %s\n", what, path, strerror(errno));
        close(fd);
    }
    return f;
}
