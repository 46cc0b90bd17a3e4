/*
 * tcpota-legacy-client: an OTA client that behaves exactly like the original
 * ESP32 sample's device code, to compare the project's server against.
 *
 * The sample protocol: the device sends "req0\r\n\r\n" (next package) or
 * "req1\r\n\r\n" (the last package again). Each answer is
 *   "total: <image size>\r\nlength: <n>\r\n\r\n" + n bytes   (n <= 512)
 * The device reads each answer with ONE recv() into a 768-byte buffer. If
 * that single read does not hold a well-formed header plus all n bytes, the
 * answer is discarded and req1 is sent; otherwise the bytes are kept and req0
 * is sent. It stops once it holds 'total' bytes.
 *
 * The single recv() is deliberate: it reproduces the sample's weakness when
 * TCP splits or merges answers. Do not "fix" it by looping.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define RECV_BUF 768           /* the sample's receive buffer */
#define MAX_PACKAGE 512        /* the sample's largest package */
#define MAX_CLIENTS 10000
#define THREAD_STACK (256 * 1024)

static const char REQ0[] = "req0\r\n\r\n";
static const char REQ1[] = "req1\r\n\r\n";

static struct {
    const char *server_text;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *out;
    unsigned clients;
    uint64_t req1_every;
    uint64_t timeout_ms;
    uint64_t saw_ms;
} opt;

struct client {
    unsigned idx;
    pthread_t thread;
    bool started;
    char path[PATH_MAX];
    /* results */
    bool ok;
    uint64_t bytes, packages, req1, total, ms;
    uint64_t short_reads, malformed, dropped;
    char err[256];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void fail(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->ok = false;
}

/* ---------- the sample's header parser ---------- */

static bool take(const unsigned char *b, size_t n, size_t *i, const char *lit)
{
    size_t l = strlen(lit);
    if (n - *i < l || memcmp(b + *i, lit, l) != 0)
        return false;
    *i += l;
    return true;
}

static bool take_num(const unsigned char *b, size_t n, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    size_t start = *i;
    while (*i < n && b[*i] >= '0' && b[*i] <= '9') {
        v = v * 10u + (uint64_t)(b[*i] - '0');
        if (v > UINT32_MAX) /* the device keeps sizes in 32 bits */
            return false;
        (*i)++;
    }
    *out = v;
    return *i > start;
}

/* Length of the header at the start of b, or 0 if it is incomplete or malformed. */
static size_t parse_header(const unsigned char *b, size_t n, uint64_t *total, uint64_t *len)
{
    size_t i = 0;
    if (!take(b, n, &i, "total: ") || !take_num(b, n, &i, total) ||
        !take(b, n, &i, "\r\nlength: ") || !take_num(b, n, &i, len) ||
        !take(b, n, &i, "\r\n\r\n"))
        return 0;
    return i;
}

/* ---------- one client ---------- */

static int connect_deadline(struct client *c, uint64_t deadline)
{
    int fd = socket(opt.addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        fail(c, "socket: %s", strerror(errno));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&opt.addr, opt.addr_len) < 0) {
        if (errno != EINPROGRESS) {
            fail(c, "connect to %s: %s", opt.server_text, strerror(errno));
            close(fd);
            return -1;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int r;
        do {
            uint64_t now = now_ms();
            int wait = now >= deadline ? 0 : (int)(deadline - now > INT_MAX ? INT_MAX : deadline - now);
            r = poll(&p, 1, wait);
        } while (r < 0 && errno == EINTR);
        int err = 0;
        socklen_t el = sizeof err;
        if (r == 0)
            err = ETIMEDOUT;
        else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err) {
            fail(c, "connect to %s: %s", opt.server_text, strerror(err));
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, fl);
    return fd;
}

static int send_req(struct client *c, int fd, const char *req)
{
    size_t n = strlen(req), off = 0;
    while (off < n) {
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fail(c, "send %.4s: %s", req, strerror(errno));
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* The sample's loop. Returns with c->ok set. */
static void client_session(struct client *c, int fd, FILE *out, uint64_t deadline)
{
    unsigned char buf[RECV_BUF];
    bool total_known = false;
    bool resending = false; /* the answer we await replaces a simulated loss */

    if (send_req(c, fd, REQ0) < 0)
        return;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            fail(c, "timeout after %" PRIu64 " s", opt.timeout_ms / 1000u);
            return;
        }
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t left = deadline - now;
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(c, "poll: %s", strerror(errno));
            return;
        }
        if (r == 0)
            continue; /* deadline check above reports it */

        /* The one recv() per answer that the sample does. */
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (got < 0) {
            fail(c, "recv after %" PRIu64 " of %" PRIu64 " bytes: %s", c->bytes, c->total,
                 strerror(errno));
            return;
        }
        if (got == 0) {
            if (total_known)
                fail(c, "connection closed by server after %" PRIu64 " of %" PRIu64 " bytes",
                     c->bytes, c->total);
            else
                fail(c, "connection closed by server before the first package");
            return;
        }

        uint64_t total = 0, len = 0;
        size_t hl = parse_header(buf, (size_t)got, &total, &len);
        bool good = hl > 0 && len <= MAX_PACKAGE && (size_t)got - hl >= len;
        if (!good) {
            /* Short read, merged answers or garbage: the sample just asks again. */
            if (hl > 0 && len <= MAX_PACKAGE)
                c->short_reads++;
            else
                c->malformed++;
            if (opt.saw_ms)
                sleep_ms(opt.saw_ms);
            if (send_req(c, fd, REQ1) < 0)
                return;
            c->req1++;
            continue;
        }

        if (!total_known) {
            c->total = total;
            total_known = true;
        } else if (total != c->total) {
            fail(c, "malformed total: %" PRIu64 " after earlier %" PRIu64, total, c->total);
            return;
        }
        if (len == 0 && c->bytes < c->total) {
            fail(c, "server sent an empty package after %" PRIu64 " of %" PRIu64 " bytes",
                 c->bytes, c->total);
            return;
        }
        if (len > c->total - c->bytes) {
            fail(c, "server sent more than total: %" PRIu64 " + %" PRIu64 " > %" PRIu64,
                 c->bytes, len, c->total);
            return;
        }
        if (len > 0 && opt.req1_every && !resending &&
            (c->packages + 1) % opt.req1_every == 0) {
            /* Pretend this one was lost; the resend is always accepted. */
            resending = true;
            c->dropped++;
            if (opt.saw_ms)
                sleep_ms(opt.saw_ms);
            if (send_req(c, fd, REQ1) < 0)
                return;
            c->req1++;
            continue;
        }
        resending = false;
        if (len > 0 && fwrite(buf + hl, 1, (size_t)len, out) != (size_t)len) {
            fail(c, "write %s: %s", c->path, strerror(errno));
            return;
        }
        c->bytes += len;
        c->packages++;
        if (c->bytes == c->total) {
            c->ok = true;
            return;
        }
        if (opt.saw_ms)
            sleep_ms(opt.saw_ms);
        if (send_req(c, fd, REQ0) < 0)
            return;
    }
}

static void *client_run(void *arg)
{
    struct client *c = arg;
    uint64_t start = now_ms();
    uint64_t deadline = start + opt.timeout_ms;

    c->ok = false;
    /* Connected first: a client that cannot connect writes no file (nor
     * empties one that was there). */
    int fd = connect_deadline(c, deadline);
    if (fd < 0) {
        c->ms = now_ms() - start;
        return NULL;
    }
    FILE *out = fopen(c->path, "wb");
    if (!out) {
        fail(c, "cannot write %s: %s", c->path, strerror(errno));
        close(fd);
        c->ms = now_ms() - start;
        return NULL;
    }
    client_session(c, fd, out, deadline);
    close(fd);
    if (fclose(out) != 0 && c->ok)
        fail(c, "write %s: %s", c->path, strerror(errno));
    c->ms = now_ms() - start;
    return NULL;
}

/* ---------- command line ---------- */

static void usage(FILE *f)
{
    fputs("usage: tcpota-legacy-client --server HOST:PORT --out FILE [--clients N]\n"
          "                            [--req1-every K] [--timeout SEC] [--stop-and-wait-ms MS]\n"
          "  --clients N           run N clients at once (default 1); with N > 1, client i\n"
          "                        (0..N-1) writes FILE.i\n"
          "  --req1-every K        discard every K-th good package and ask for it again\n"
          "  --timeout SEC         give up on a client after SEC seconds (default 120)\n"
          "  --stop-and-wait-ms MS sleep MS after each answer before the next request\n",
          f);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tcpota-legacy-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    usage(stderr);
    exit(2);
}

static uint64_t parse_num(const char *name, const char *s, uint64_t min, uint64_t max)
{
    if (!s || *s < '0' || *s > '9')
        die_usage("%s: expected a number, got '%s'", name, s ? s : "");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        die_usage("%s: expected a number in [%" PRIu64 ", %" PRIu64 "], got '%s'", name, min,
                  max, s);
    return v;
}

static void resolve_server(const char *arg)
{
    char host[256];
    const char *colon = strrchr(arg, ':');
    const char *h = arg;
    size_t hl = colon ? (size_t)(colon - arg) : 0;
    if (!colon || hl == 0 || !colon[1])
        die_usage("--server: expected HOST:PORT, got '%s'", arg);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        die_usage("--server: host name too long");
    memcpy(host, h, hl);
    host[hl] = '\0';
    parse_num("--server port", colon + 1, 1, 65535);

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res)
        die_usage("--server: cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&opt.addr, res->ai_addr, res->ai_addrlen);
    opt.addr_len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    opt.server_text = arg;
}

static void parse_args(int argc, char **argv)
{
    const char *server = NULL;
    opt.clients = 1;
    opt.timeout_ms = 120000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = strcmp(a, "--server") == 0 || strcmp(a, "--out") == 0 ||
                     strcmp(a, "--clients") == 0 || strcmp(a, "--req1-every") == 0 ||
                     strcmp(a, "--timeout") == 0 || strcmp(a, "--stop-and-wait-ms") == 0;
        if (!known)
            die_usage("unknown option '%s'", a);
        if (!v)
            die_usage("%s needs a value", a);
        if (strncmp(v, "--", 2) == 0) /* "--server --out x": not "unknown option 'x'" */
            die_usage("%s needs a value (got the option %s)", a, v);
        i++;
        if (strcmp(a, "--server") == 0)
            server = v;
        else if (strcmp(a, "--out") == 0)
            opt.out = v;
        else if (strcmp(a, "--clients") == 0)
            opt.clients = (unsigned)parse_num(a, v, 1, MAX_CLIENTS);
        else if (strcmp(a, "--req1-every") == 0)
            opt.req1_every = parse_num(a, v, 1, UINT32_MAX);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout_ms = parse_num(a, v, 1, 86400) * 1000u;
        else
            opt.saw_ms = parse_num(a, v, 0, 60000);
    }
    if (!server || !opt.out || !*opt.out)
        die_usage("--server and --out are required");
    resolve_server(server);
}

static void raise_fd_limit(unsigned clients)
{
    /* Each client holds a socket and its output file. */
    struct rlimit rl;
    rlim_t need = (rlim_t)clients * 2 + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(opt.clients);

    struct client *cl = calloc(opt.clients, sizeof *cl);
    if (!cl) {
        fputs("tcpota-legacy-client: out of memory\n", stderr);
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);

    for (unsigned i = 0; i < opt.clients; i++) {
        struct client *c = &cl[i];
        c->idx = i;
        int n = opt.clients > 1 ? snprintf(c->path, sizeof c->path, "%s.%u", opt.out, i)
                                : snprintf(c->path, sizeof c->path, "%s", opt.out);
        if (n < 0 || (size_t)n >= sizeof c->path) {
            fail(c, "output path too long");
            continue;
        }
        if (opt.clients == 1) {
            client_run(c); /* no thread needed */
            continue;
        }
        int e = pthread_create(&c->thread, &attr, client_run, c);
        if (e != 0)
            fail(c, "cannot start thread: %s", strerror(e));
        else
            c->started = true;
    }
    pthread_attr_destroy(&attr);

    int rc = 0;
    for (unsigned i = 0; i < opt.clients; i++) {
        struct client *c = &cl[i];
        if (c->started)
            pthread_join(c->thread, NULL);
        printf("legacy-client %u: %" PRIu64 " bytes, %" PRIu64 " packages, %" PRIu64 " req1, %"
               PRIu64 " ms\n",
               i, c->bytes, c->packages, c->req1, c->ms);
        if (!c->ok) {
            fprintf(stderr, "legacy-client %u: error: %s (%" PRIu64 " short reads, %" PRIu64
                    " malformed answers)\n",
                    i, c->err[0] ? c->err : "unknown failure", c->short_reads, c->malformed);
            rc = 1;
        }
    }
    fflush(stdout);
    free(cl);
    return rc;
}
