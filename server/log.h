/*
 * log.h - the server's log: one line per event on stderr, each with its UTC
 * time, so that an operator can follow one device through it.
 *
 * Two formats (struct tcpota_serve_opts.log_json):
 *   text  2026-12-01T10:31:15.123Z tcpota serve: [dev-1 10.0.0.7:51234] done: ...
 *   json  {"time":"2026-12-01T10:31:15.123Z","level":"info","device":"dev-1",
 *          "peer":"10.0.0.7:51234","msg":"done: ..."}   (one object per line)
 * With --workers, a worker's lines say which: "tcpota serve[2]: ...",
 * {...,"level":"info","worker":2,...}.
 * Lines about the server itself have no [device peer] part (text) and no
 * "device"/"peer" keys (json); a connection whose device has not said who
 * it is yet shows "-" (text) and no "device" key (json).
 *
 * Device ids, models, versions and messages come from peers. So that no
 * peer byte can end a line or fake a "[device peer]" part, the text format
 * writes every byte of the device, the peer and the message that is not
 * printable ASCII, and every '[', ']' and '\', as \xNN: the first "[...]"
 * of a line is always the server's. The json format escapes them as JSON
 * strings (\uXXXX for control bytes and bytes >= 0x7f, so the line stays
 * ASCII and thus valid UTF-8).
 */
#ifndef TCPOTA_SERVER_LOG_H
#define TCPOTA_SERVER_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct server;
struct conn;
struct tcpota_serve_opts;

/* A line's level: in JSON "info", "error" or "warn" (a start or reload
 * that goes on with something probably not meant; the text says
 * "warning:"), for a log shipper that filters on it. */
enum log_level { LOG_LV_INFO = 0, LOG_LV_ERROR = 1, LOG_LV_WARN = 2 };

/* A device id or a peer is cut at LOG_FIELD_MAX bytes (both come from
 * arrays of at most 65), a message at LOG_MSG_MAX - 1. Each byte may take
 * 6 when escaped (\u00XX): LOG_LINE_MIN holds the time, level, device and
 * peer at their longest; LOG_LINE_MAX also the longest message. */
#define LOG_FIELD_MAX 128u
#define LOG_MSG_MAX 2048u
#define LOG_LINE_MIN (6u * 2u * LOG_FIELD_MAX + 128u)
#define LOG_LINE_MAX (LOG_LINE_MIN + 6u * LOG_MSG_MAX)

/* "cannot listen on HOST:PORT[ for WHAT]: <errno e's text> (what to do,
 * naming OPT)" into buf: the one wording of a listener that would not
 * bind, for the device port, the API and the HTTP downloads. e 0: the
 * address is not one this host has or can parse; a host that does not
 * resolve is said so whatever e is (evhttp's bind leaves errno stale
 * then). Returns buf. */
const char *log_listen_failed(char *buf, size_t cap, const char *host, unsigned port,
                              const char *what, const char *opt, int e);

/* Tags every line of this process as worker k's (workers.h): text
 * "tcpota serve[k]: ...", json "worker":k. */
void log_set_worker(unsigned k);

/* What a reload or the start prints on stderr (the command line's loader,
 * the image loader and the TLS context explain themselves there) is caught
 * between log_catch_begin() and log_catch_end(), then written as log lines
 * (time, level, JSON with --log-format json), so that their errors read
 * like the rest of the log. */
struct log_caught {
    FILE *f;
    int saved; /* the real stderr, or -1: nothing caught (or given back) */
};
void log_catch_begin(struct log_caught *c);
/* Gives stderr back and logs each caught line as o's log line, "prefix"
 * first, without the program's own "tcpota serve: ": at level warn for a
 * line that starts "warning: ", info for one that starts "note: ", and
 * for the rest error when failed, else info. A line that is one of o's
 * JSON log lines already goes as it is. Does nothing more for a c already
 * ended. */
void log_catch_end(const struct tcpota_serve_opts *o, struct log_caught *c, int failed,
                   const char *prefix);

/* One line about the server; nothing with --quiet. */
void say(const struct server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line about the server that --quiet does not silence: startup
 * errors, the "listening on" line that scripts wait for, the summary. */
void say_always(const struct tcpota_serve_opts *o, enum log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One line about a peer that has no connection (refused at accept), as
 * "[- HOST:PORT]"; nothing with --quiet. */
void say_peer(const struct server *srv, const char *host, const char *port, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One line about a connection, naming the device once it is known;
 * with --quiet only when `always` is set (errors, logged at level error). */
void clog_(const struct conn *c, int always, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line about a device that has no struct conn (an HTTP download):
 * "[dev peer]" (dev NULL: "-") at level lv; with --quiet only at a level
 * other than LOG_LV_INFO (errors, warnings). */
void say_dev(const struct server *srv, enum log_level lv, const char *dev, const char *peer,
             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A line that a peer can cause as often as it likes (a refused API token,
 * a refused HTTP download, a failing accept()) is said at most `burst`
 * times per window of `every_ms`; the lines held back are counted, and the
 * next line said tells how many. The log stays readable under a flood, and
 * the operator still learns that it happened. Zero-initialise it. */
struct log_limit {
    int64_t window_ms;    /* when the current window began (the first line said in it) */
    unsigned said;        /* lines said in it */
    unsigned long held;   /* lines held back since the last line said */
};

/* Whether a line may be said at now_ms (monotonic milliseconds): 1, with
 * *held (may be NULL) set to the lines held back since the last one said,
 * which are then forgotten; or 0, the line counted as held back. A window
 * opens at the first line said after the last one ended. Pure: no clock. */
int log_limit_pass(struct log_limit *l, int64_t now_ms, unsigned every_ms, unsigned burst,
                   unsigned long *held);

/* log_limit_pass at this moment, for a line that then ends with what was
 * held back: `more` (cap >= LOG_MORE_MAX) is " (and N more WHAT not logged
 * since the last such line)", or "" when none was. Returns 1 when the line
 * may be said, else 0 (counted as held back). One wording for every
 * rate-limited line. */
int log_limit_say(struct log_limit *l, unsigned every_ms, unsigned burst, const char *what,
                  char *more, size_t cap);
#define LOG_MORE_MAX 112u

/* The rate of a line about one connection that a peer can cause at will
 * (a plain client on the TLS port, a failed or unfinished TLS handshake on
 * the download port): at most LOG_PEER_BURST lines per LOG_PEER_MS. */
#define LOG_PEER_MS 1000u
#define LOG_PEER_BURST 10u

/* Monotonic milliseconds, for log_limit_pass. */
int64_t log_mono_ms(void);

/* Writes one whole line, '\n' included, into buf (cap >= LOG_LINE_MIN): the
 * time `when` (UTC), the level, the device and peer (each may be NULL: not
 * known or not about a connection) and msg, escaped as above. A line that
 * does not fit is cut at a character boundary and still ends well-formed
 * (json: closed string and object). Returns its length (< cap; buf is
 * NUL-terminated). Pure: no I/O, no clock. */
size_t log_format(char *buf, size_t cap, int json, const struct timespec *when,
                  enum log_level lv, const char *dev, const char *peer, const char *msg);

#endif
