/*
 * tcpota-test-source: loopback helper for the proxy self-test.
 *
 *   serve   --listen HOST:PORT --bytes N [--echo]
 *           every connection gets the same N deterministic bytes, then FIN
 *           (or, with --echo, everything received is sent back)
 *   fetch   --connect HOST:PORT --out FILE [--timeout SEC]
 *           read until EOF into FILE; print bytes, number of reads, time
 *   ping    --connect HOST:PORT [--size N] [--timeout SEC]
 *           send N pattern bytes to an echo server, read them back, print RTT
 *   pattern --bytes N --out FILE
 *           write the bytes 'serve' sends, to compare against
 *
 * Byte i of the pattern is a hash of i, so a byte moved, lost or altered at
 * any offset shows up in a plain cmp.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 16384

static uint64_t opt_bytes;
static bool opt_echo;
static unsigned opt_timeout = 30;

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    fputs("usage: tcpota-test-source serve --listen HOST:PORT --bytes N [--echo]\n"
          "       tcpota-test-source fetch --connect HOST:PORT --out FILE [--timeout SEC]\n"
          "       tcpota-test-source ping --connect HOST:PORT [--size N] [--timeout SEC]\n"
          "       tcpota-test-source pattern --bytes N --out FILE\n",
          stderr);
    exit(2);
}

static unsigned char pattern_byte(uint64_t i)
{
    uint64_t z = i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (unsigned char)(z ^ (z >> 31));
}

static void pattern_fill(unsigned char *buf, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern_byte(off + i);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static struct addrinfo *resolve(const char *arg, bool passive)
{
    char host[256];
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof host || !colon[1]) {
        fprintf(stderr, "tcpota-test-source: expected HOST:PORT, got '%s'\n", arg);
        exit(2);
    }
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "tcpota-test-source: cannot resolve '%s': %s\n", arg, gai_strerror(rc));
        exit(2);
    }
    return res;
}

static void set_timeout(int fd)
{
    struct timeval tv = {(time_t)opt_timeout, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int send_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int connect_to(const char *arg)
{
    struct addrinfo *ai = resolve(arg, false);
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "tcpota-test-source: connect to %s: %s\n", arg, strerror(errno));
        exit(1);
    }
    freeaddrinfo(ai);
    set_timeout(fd);
    return fd;
}

/* ---------- serve ---------- */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[BLOCK];
    set_timeout(fd);
    if (opt_echo) {
        for (;;) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0 || send_all(fd, buf, (size_t)r) < 0)
                break;
        }
    } else {
        uint64_t off = 0;
        while (off < opt_bytes) {
            size_t n = opt_bytes - off < BLOCK ? (size_t)(opt_bytes - off) : BLOCK;
            pattern_fill(buf, off, n);
            if (send_all(fd, buf, n) < 0)
                break; /* e.g. the proxy cut us off */
            off += n;
        }
        /* FIN, then wait for the peer's FIN so close() cannot turn into RST. */
        shutdown(fd, SHUT_WR);
        while (recv(fd, buf, sizeof buf, 0) > 0)
            ;
    }
    close(fd);
    return NULL;
}

static int cmd_serve(const char *listen_arg)
{
    struct addrinfo *ai = resolve(listen_arg, true);
    int one = 1;
    int lfd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, 128) < 0) {
        fprintf(stderr, "tcpota-test-source: cannot listen on %s: %s\n", listen_arg,
                strerror(errno));
        return 1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    fprintf(stderr, "source: listening on %s:%u\n", host, port);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "tcpota-test-source: accept: %s\n", strerror(errno));
            usleep(100000);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, &attr, serve_conn, (void *)(intptr_t)fd) != 0) {
            fprintf(stderr, "tcpota-test-source: cannot start thread\n");
            close(fd);
        }
    }
}

/* ---------- clients ---------- */

static int cmd_fetch(const char *connect_arg, const char *out_path)
{
    FILE *out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "tcpota-test-source: cannot write %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    uint64_t t0 = now_us();
    int fd = connect_to(connect_arg);
    unsigned char buf[BLOCK];
    uint64_t total = 0, reads = 0;
    const char *end = "eof";
    int rc = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            end = (errno == EAGAIN || errno == EWOULDBLOCK) ? "timeout" : strerror(errno);
            rc = 1;
            break;
        }
        if (r == 0)
            break;
        reads++;
        total += (uint64_t)r;
        if (fwrite(buf, 1, (size_t)r, out) != (size_t)r) {
            end = "write error";
            rc = 1;
            break;
        }
    }
    close(fd);
    if (fclose(out) != 0)
        rc = 1;
    printf("fetch: bytes=%" PRIu64 " reads=%" PRIu64 " ms=%" PRIu64 " end=%s\n", total, reads,
           (now_us() - t0) / 1000u, end);
    return rc;
}

static int cmd_ping(const char *connect_arg, uint64_t size)
{
    unsigned char *tx = malloc(size), *rx = malloc(size);
    if (!tx || !rx) {
        fprintf(stderr, "tcpota-test-source: out of memory\n");
        return 1;
    }
    pattern_fill(tx, 0, size);
    int fd = connect_to(connect_arg);
    int rc = 0;
    uint64_t t0 = now_us();
    if (send_all(fd, tx, size) < 0) {
        fprintf(stderr, "ping: send: %s\n", strerror(errno));
        rc = 1;
    }
    size_t got = 0;
    while (rc == 0 && got < size) {
        ssize_t r = recv(fd, rx + got, size - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "ping: %s after %zu of %" PRIu64 " bytes\n",
                    r == 0 ? "EOF" : strerror(errno), got, size);
            rc = 1;
            break;
        }
        got += (size_t)r;
    }
    uint64_t rtt = now_us() - t0;
    close(fd);
    if (rc == 0) {
        for (size_t i = 0; i < size; i++) {
            if (rx[i] != tx[i]) {
                fprintf(stderr, "ping: mismatch at byte %zu\n", i);
                rc = 1;
                break;
            }
        }
    }
    if (rc == 0)
        printf("ping: bytes=%" PRIu64 " rtt_us=%" PRIu64 "\n", size, rtt);
    free(tx);
    free(rx);
    return rc;
}

static int cmd_pattern(const char *out_path)
{
    FILE *out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "tcpota-test-source: cannot write %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    unsigned char buf[BLOCK];
    int rc = 0;
    for (uint64_t off = 0; off < opt_bytes;) {
        size_t n = opt_bytes - off < BLOCK ? (size_t)(opt_bytes - off) : BLOCK;
        pattern_fill(buf, off, n);
        if (fwrite(buf, 1, n, out) != n) {
            rc = 1;
            break;
        }
        off += n;
    }
    if (fclose(out) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "tcpota-test-source: write %s failed\n", out_path);
    return rc;
}

int main(int argc, char **argv)
{
    const char *listen_arg = NULL, *connect_arg = NULL, *out_path = NULL;
    uint64_t size = 16, v;
    bool have_bytes = false;

    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--echo") == 0) {
            opt_echo = true;
            continue;
        }
        if (!val) {
            fprintf(stderr, "tcpota-test-source: %s needs a value\n", a);
            usage();
        }
        i++;
        if (strcmp(a, "--listen") == 0)
            listen_arg = val;
        else if (strcmp(a, "--connect") == 0)
            connect_arg = val;
        else if (strcmp(a, "--out") == 0)
            out_path = val;
        else if (strcmp(a, "--bytes") == 0 && parse_u64(val, UINT64_MAX / 2, &opt_bytes))
            have_bytes = true;
        else if (strcmp(a, "--size") == 0 && parse_u64(val, 1u << 26, &size) && size > 0)
            ;
        else if (strcmp(a, "--timeout") == 0 && parse_u64(val, 86400, &v) && v > 0)
            opt_timeout = (unsigned)v;
        else {
            fprintf(stderr, "tcpota-test-source: bad option %s %s\n", a, val);
            usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cmd, "serve") == 0 && listen_arg && (have_bytes || opt_echo))
        return cmd_serve(listen_arg);
    if (strcmp(cmd, "fetch") == 0 && connect_arg && out_path)
        return cmd_fetch(connect_arg, out_path);
    if (strcmp(cmd, "ping") == 0 && connect_arg)
        return cmd_ping(connect_arg, size);
    if (strcmp(cmd, "pattern") == 0 && have_bytes && out_path)
        return cmd_pattern(out_path);
    usage();
}
