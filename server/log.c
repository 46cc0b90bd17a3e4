/* log.c - the server's log lines (see log.h). */
#include "log.h"
#include "server_internal.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A line being built: appends stop at `limit`, which keeps room for the
 * line's end, so that a cut never leaves a line without it. */
struct out {
    char *p;
    size_t n, limit;
};

/* Appends s whole, or nothing; returns 0 when it did not fit. */
static int put(struct out *o, const char *s, size_t len)
{
    if (len > o->limit - o->n) {
        return 0;
    }
    memcpy(o->p + o->n, s, len);
    o->n += len;
    return 1;
}

/* The escaped form of byte b into e (>= 7 bytes); returns its length.
 * Text: a peer byte must not end the line or open or close a "[...]", and
 * '\' is escaped so that "\x5d" in a line always means a ']' was sent.
 * JSON: RFC 8259 string escapes; bytes >= 0x7f as \u00XX keep the line
 * ASCII, hence valid UTF-8, whatever bytes arrive. */
static size_t escape(char *e, unsigned char b, int json)
{
    if (json) {
        if (b == '"' || b == '\\') {
            e[0] = '\\';
            e[1] = (char)b;
            return 2;
        }
        if (b < 0x20 || b >= 0x7f) {
            return (size_t)snprintf(e, 7, "\\u%04x", b);
        }
    } else if (b < 0x20 || b >= 0x7f || b == '[' || b == ']' || b == '\\') {
        return (size_t)snprintf(e, 7, "\\x%02x", b);
    }
    e[0] = (char)b;
    return 1;
}

/* Appends s escaped, at most `max` bytes of it, stopping before the first
 * byte whose escape does not fit whole. */
static void put_escaped(struct out *o, const char *s, size_t max, int json)
{
    size_t i;

    for (i = 0; s[i] && i < max; i++) {
        char e[8];
        if (!put(o, e, escape(e, (unsigned char)s[i], json))) {
            return;
        }
    }
}

/* "2026-12-01T10:31:15.123Z": ISO 8601, UTC, milliseconds. */
static void put_time(struct out *o, const struct timespec *when)
{
    struct tm tm;
    char t[48];
    size_t n;
    time_t sec = when->tv_sec;

    if (!gmtime_r(&sec, &tm) || (n = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
        (void)put(o, "0000-00-00T00:00:00", 19);
    } else {
        (void)put(o, t, n);
    }
    n = (size_t)snprintf(t, sizeof(t), ".%03ldZ", (long)(when->tv_nsec / 1000000) % 1000);
    (void)put(o, t, n);
}

static void put_json_field(struct out *o, const char *key, const char *val)
{
    (void)put(o, ",\"", 2);
    (void)put(o, key, strlen(key));
    (void)put(o, "\":\"", 3);
    put_escaped(o, val, LOG_FIELD_MAX, 1);
    (void)put(o, "\"", 1);
}

/* This process's worker number (workers.h); 0: the only process or the
 * supervisor. */
static unsigned log_worker;

/* Ports below this one take root or CAP_NET_BIND_SERVICE to bind. */
#define LOG_PORT_PRIVILEGED 1024u

const char *log_listen_failed(char *buf, size_t cap, const char *host, unsigned port,
                              const char *what, const char *opt, int e)
{
    struct addrinfo hints, *ai = NULL;
    int gai;

    /* libevent's evhttp resolves the host itself and, when that fails,
     * leaves errno as some earlier call set it ("No such file or
     * directory" for --api nosuch.host:8071): a host that does not resolve
     * is said so, whatever e is. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    gai = getaddrinfo(host, NULL, &hints, &ai);
    if (ai) freeaddrinfo(ai);
    if (gai != 0) {
        e = 0;
    }
    snprintf(buf, cap, "cannot listen on %s:%u%s%s: %s (%s%s)", host, port, what ? " for " : "",
             what ? what : "", gai != 0 ? gai_strerror(gai)
                               : e ? strerror(e) : "not an address of this host",
             e == EADDRINUSE ? "another program, perhaps another tcpota serve, listens there: "
                               "stop it or give another "
             : e == EACCES && port < LOG_PORT_PRIVILEGED
                 ? "a port below 1024 needs root or CAP_NET_BIND_SERVICE: give another "
                 : "give another ",
             opt);
    return buf;
}

void log_set_worker(unsigned k)
{
    log_worker = k;
}

size_t log_format(char *buf, size_t cap, int json, const struct timespec *when,
                  enum log_level lv, const char *dev, const char *peer, const char *msg)
{
    const char *end = json ? "\"}\n" : "\n";
    struct out o;

    assert(cap >= LOG_LINE_MIN);
    o.p = buf;
    o.n = 0;
    o.limit = cap - 1 - strlen(end);
    if (json) {
        (void)put(&o, "{\"time\":\"", 9);
        put_time(&o, when);
        (void)put(&o, "\",\"level\":\"", 11);
        const char *level = lv == LOG_LV_ERROR ? "error" : lv == LOG_LV_WARN ? "warn" : "info";
        (void)put(&o, level, strlen(level));
        (void)put(&o, "\"", 1);
        if (log_worker) {
            char k[24];
            (void)put(&o, k, (size_t)snprintf(k, sizeof(k), ",\"worker\":%u", log_worker));
        }
        if (dev) put_json_field(&o, "device", dev);
        if (peer) put_json_field(&o, "peer", peer);
        (void)put(&o, ",\"msg\":\"", 8);
    } else {
        put_time(&o, when);
        if (log_worker) {
            char k[40];
            (void)put(&o, k, (size_t)snprintf(k, sizeof(k), " tcpota serve[%u]: ", log_worker));
        } else {
            (void)put(&o, " tcpota serve: ", 15);
        }
        if (dev || peer) {
            (void)put(&o, "[", 1);
            put_escaped(&o, dev ? dev : "-", LOG_FIELD_MAX, 0);
            (void)put(&o, " ", 1);
            put_escaped(&o, peer ? peer : "-", LOG_FIELD_MAX, 0);
            (void)put(&o, "] ", 2);
        }
    }
    put_escaped(&o, msg, (size_t)-1, json);
    /* The room for `end` was kept out of o.limit. */
    memcpy(buf + o.n, end, strlen(end) + 1);
    return o.n + strlen(end);
}

/* Formats and writes one line with a single write, so that lines of
 * processes sharing the file do not mix. */
static void vemit(const struct tcpota_serve_opts *o, enum log_level lv, const char *dev,
                  const char *peer, const char *fmt, va_list ap)
{
    char msg[LOG_MSG_MAX], line[LOG_LINE_MAX];
    struct timespec now;
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    clock_gettime(CLOCK_REALTIME, &now);
    n = log_format(line, sizeof(line), o->log_json, &now, lv, dev, peer, msg);
    (void)fwrite(line, 1, n, stderr);
}

void say(const struct server *srv, const char *fmt, ...)
{
    va_list ap;
    if (srv->o->quiet) {
        return;
    }
    va_start(ap, fmt);
    vemit(srv->o, LOG_LV_INFO, NULL, NULL, fmt, ap);
    va_end(ap);
}

void say_always(const struct tcpota_serve_opts *o, enum log_level lv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(o, lv, NULL, NULL, fmt, ap);
    va_end(ap);
}

void say_peer(const struct server *srv, const char *host, const char *port, const char *fmt, ...)
{
    char peer[80];
    va_list ap;
    if (srv->o->quiet) {
        return;
    }
    snprintf(peer, sizeof(peer), "%s:%s", host, port);
    va_start(ap, fmt);
    vemit(srv->o, LOG_LV_INFO, NULL, peer, fmt, ap);
    va_end(ap);
}

void say_dev(const struct server *srv, enum log_level lv, const char *dev, const char *peer,
             const char *fmt, ...)
{
    va_list ap;
    if (srv->o->quiet && lv == LOG_LV_INFO) {
        return;
    }
    va_start(ap, fmt);
    vemit(srv->o, lv, dev, peer, fmt, ap);
    va_end(ap);
}

int log_limit_pass(struct log_limit *l, int64_t now_ms, unsigned every_ms, unsigned burst,
                   unsigned long *held)
{
    if (l->said == 0 || now_ms - l->window_ms >= (int64_t)every_ms) {
        l->window_ms = now_ms;
        l->said = 0;
    }
    if (l->said >= burst) {
        l->held++;
        return 0;
    }
    l->said++;
    if (held) *held = l->held;
    l->held = 0;
    return 1;
}

int log_limit_say(struct log_limit *l, unsigned every_ms, unsigned burst, const char *what,
                  char *more, size_t cap)
{
    unsigned long held = 0;

    if (cap) more[0] = '\0';
    if (!log_limit_pass(l, log_mono_ms(), every_ms, burst, &held)) {
        return 0;
    }
    if (held) {
        snprintf(more, cap, " (and %lu more %s not logged since the last such line)", held, what);
    }
    return 1;
}

int64_t log_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clog_(const struct conn *c, int always, const char *fmt, ...)
{
    va_list ap;
    if (c->srv->o->quiet && !always) {
        return;
    }
    va_start(ap, fmt);
    vemit(c->srv->o, always ? LOG_LV_ERROR : LOG_LV_INFO, c->dev[0] ? c->dev : NULL, c->peer,
          fmt, ap);
    va_end(ap);
}

/* ---- stderr caught as log lines ------------------------------------------ */

#define WARNING_SAYS "warning: " /* how a caught line that is a warning starts */
#define NOTE_SAYS "note: "       /* ... and one that adds to the line before it */

void log_catch_begin(struct log_caught *c)
{
    fflush(stderr);
    c->f = tmpfile();
    c->saved = c->f ? dup(STDERR_FILENO) : -1;
    if (c->saved >= 0) {
        dup2(fileno(c->f), STDERR_FILENO);
    }
}

/* A caught line without the program's prefix ("tcpota serve: ", "tcpota: "),
 * which start-up prints and the log line's "SIGHUP: " replaces. */
static const char *unprefixed(const char *line)
{
    static const char *const prefixes[] = {"tcpota serve: ", "tcpota: "};
    size_t i, n;

    for (i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        n = strlen(prefixes[i]);
        if (strncmp(line, prefixes[i], n) == 0) return line + n;
    }
    return line;
}

void log_catch_end(const struct tcpota_serve_opts *o, struct log_caught *c, int failed,
                   const char *prefix)
{
    static char line[LOG_LINE_MAX];

    fflush(stderr);
    if (c->saved >= 0) {
        dup2(c->saved, STDERR_FILENO);
        close(c->saved);
        c->saved = -1;
        rewind(c->f);
        while (fgets(line, sizeof(line), c->f)) {
            if (o->log_json && line[0] == '{') { /* a log line already (serve_warn) */
                (void)fputs(line, stderr);
                continue;
            }
            line[strcspn(line, "\n")] = 0;
            const char *said = unprefixed(line);
            say_always(o, strncmp(said, WARNING_SAYS, strlen(WARNING_SAYS)) == 0 ? LOG_LV_WARN
                          : strncmp(said, NOTE_SAYS, strlen(NOTE_SAYS)) == 0      ? LOG_LV_INFO
                          : failed                                                ? LOG_LV_ERROR
                                                                                  : LOG_LV_INFO,
                       "%s%s", prefix, said);
        }
    }
    if (c->f) fclose(c->f);
    c->f = NULL;
}
