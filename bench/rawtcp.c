/*
 * bench-rawtcp: the floor of the link benchmark. The least any protocol can
 * do to move a file: connect, send a one-line request, receive the bytes as
 * one TCP stream until the server closes.
 *
 *   bench-rawtcp serve --listen 127.0.0.1:0 FILE
 *       Prints "rawtcp: listening on HOST:PORT" on stderr, then for every
 *       connection reads one line (up to '\n') and answers with the whole
 *       file (sendfile), then closes. One connection at a time.
 *   bench-rawtcp get --server HOST:PORT [--expect FILE]
 *       Connects, sends "GET\n", reads to EOF. Prints on stdout
 *       "rawtcp bytes=N seconds=S" where S runs from just before connect()
 *       to the last byte. With --expect, the bytes must equal FILE (exit 1
 *       otherwise).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-rawtcp serve --listen HOST:PORT FILE\n"
                    "       bench-rawtcp get --server HOST:PORT [--expect FILE]\n");
    return 2;
}

/* Splits "HOST:PORT" and resolves it numerically. Returns 0 or -1. */
static int resolve(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    struct addrinfo hints, *ai = NULL;

    if (!colon || (size_t)(colon - text) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void serve_one(int c, int fd, off_t size)
{
    char line[256];
    size_t have = 0;
    off_t off = 0;

    /* The request: one line. */
    while (have < sizeof(line)) {
        ssize_t n = read(c, line + have, sizeof(line) - have);
        if (n <= 0) {
            return;
        }
        if (memchr(line + have, '\n', (size_t)n)) {
            break;
        }
        have += (size_t)n;
    }
    while (off < size) {
        ssize_t n = sendfile(c, fd, &off, (size_t)(size - off));
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "rawtcp: sendfile: %s\n", strerror(errno));
            return;
        }
    }
}

static int cmd_serve(int argc, char **argv)
{
    const char *listen_at = NULL, *file = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct stat st;
    char host[64], port[8];
    int i, one = 1, fd, s;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen_at = argv[++i];
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else return usage();
    }
    if (!listen_at || !file || resolve(listen_at, &ss, &sl) < 0) {
        return usage();
    }
    fd = open(file, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "rawtcp: cannot open %s: %s\n", file, strerror(errno));
        return 1;
    }
    s = socket(ss.ss_family, SOCK_STREAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s < 0 || bind(s, (struct sockaddr *)&ss, sl) < 0 || listen(s, 64) < 0) {
        fprintf(stderr, "rawtcp: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    sl = sizeof(ss);
    getsockname(s, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    fprintf(stderr, "rawtcp: listening on %s:%s\n", host, port);
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "rawtcp: accept: %s\n", strerror(errno));
            return 1;
        }
        serve_one(c, fd, st.st_size);
        close(c);
    }
}

static int cmd_get(int argc, char **argv)
{
    const char *server = NULL, *expect = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    static char buf[1 << 16];
    const unsigned char *want = NULL;
    size_t want_len = 0, got = 0;
    int i, s, bad = 0;
    double t0, t1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) server = argv[++i];
        else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) expect = argv[++i];
        else return usage();
    }
    if (!server || resolve(server, &ss, &sl) < 0) {
        return usage();
    }
    if (expect) {
        struct stat st;
        int fd = open(expect, O_RDONLY);
        if (fd < 0 || fstat(fd, &st) < 0) {
            fprintf(stderr, "rawtcp: cannot open %s\n", expect);
            return 1;
        }
        want_len = (size_t)st.st_size;
        want = mmap(NULL, want_len, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (want == MAP_FAILED) {
            return 1;
        }
    }
    t0 = now_s();
    s = socket(ss.ss_family, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&ss, sl) < 0) {
        fprintf(stderr, "rawtcp: cannot connect to %s: %s\n", server, strerror(errno));
        return 1;
    }
    if (write(s, "GET\n", 4) != 4) {
        fprintf(stderr, "rawtcp: cannot send the request\n");
        return 1;
    }
    for (;;) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fprintf(stderr, "rawtcp: read: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0) break;
        if (want && (got + (size_t)n > want_len || memcmp(want + got, buf, (size_t)n) != 0)) {
            bad = 1;
        }
        got += (size_t)n;
    }
    t1 = now_s();
    close(s);
    printf("rawtcp bytes=%zu seconds=%.6f\n", got, t1 - t0);
    if (want && (bad || got != want_len)) {
        fprintf(stderr, "rawtcp: received bytes differ from %s\n", expect);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "get") == 0) return cmd_get(argc - 1, argv + 1);
    return usage();
}
