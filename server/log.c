/* log.c - the server's log lines (see log.h). */
#include "log.h"
#include "server_internal.h"

#include <stdarg.h>
#include <stdio.h>

void say(const struct server *srv, const char *fmt, ...)
{
    va_list ap;
    if (srv->o->quiet) {
        return;
    }
    fputs("tcpota serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void log_always(const struct server *srv, const char *fmt, ...)
{
    va_list ap;
    (void)srv;
    fputs("tcpota serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* One log line about a connection, naming the device once it is known. */
void clog_(const struct conn *c, int always, const char *fmt, ...)
{
    va_list ap;
    if (c->srv->o->quiet && !always) {
        return;
    }
    fprintf(stderr, "tcpota serve: [%s %s] ", c->dev[0] ? c->dev : "-", c->peer);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
