/* log.h - the server's log: one line per event, on stderr. */
#ifndef TCPOTA_SERVER_LOG_H
#define TCPOTA_SERVER_LOG_H

struct server;
struct conn;

/* One line about the server; nothing with --quiet. */
void say(const struct server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line about the server, even with --quiet (reloads, failures). */
void log_always(const struct server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line about a connection, naming the device once it is known;
 * with --quiet only when `always` is set (errors). */
void clog_(const struct conn *c, int always, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
