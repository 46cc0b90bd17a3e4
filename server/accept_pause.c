/* accept_pause.c - see accept_pause.h. */
#include "accept_pause.h"

#include "log.h" /* struct log_limit */

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct guard {
    struct evconnlistener *lis;
    struct event *resume;
    const char *what;
    accept_pause_say_fn say;
    void *ctx;
    struct log_limit said; /* the error in the log: once per ACCEPT_SAY_EVERY_S */
};

/* libevent hands the error callback the listener's own argument (for an
 * evhttp listener, the evhttp): the guard is found by its listener. */
static struct guard *guards[ACCEPT_PAUSE_MAX];

static struct guard *find(struct evconnlistener *lis)
{
    int i;
    for (i = 0; i < ACCEPT_PAUSE_MAX; i++) {
        if (guards[i] && guards[i]->lis == lis) return guards[i];
    }
    return NULL;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct guard *g = arg;
    (void)fd;
    (void)what;
    (void)evconnlistener_enable(g->lis);
}

static void error_cb(struct evconnlistener *lis, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct guard *g = find(lis);
    const struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    int64_t now = log_mono_ms(), last;
    unsigned long held;
    char msg[400];
    (void)arg;

    if (!g) return;
    (void)evconnlistener_disable(lis);
    (void)evtimer_add(g->resume, &pause);
    last = g->said.window_ms; /* the last line's time: one line a window */
    if (!log_limit_pass(&g->said, now, ACCEPT_SAY_EVERY_S * 1000u, 1, &held)) {
        return;
    }
    snprintf(msg, sizeof(msg), "accepting %s failed: %s%s; accepting waits %d ms after each failure",
             g->what, evutil_socket_error_to_string(err),
             err == EMFILE || err == ENFILE
                 ? " (every descriptor the process may hold is in use: raise its limit, "
                   "ulimit -n or systemd's LimitNOFILE=, or lower --max-conns)"
                 : "",
             ACCEPT_PAUSE_MS);
    if (held) {
        size_t n = strlen(msg);
        snprintf(msg + n, sizeof(msg) - n, " (%lu more times in the last %ld s)", held,
                 (long)((now - last) / 1000));
    }
    g->say(g->ctx, msg);
}

int accept_pause_guard(struct event_base *base, struct evconnlistener *lis, const char *what,
                       accept_pause_say_fn say_line, void *ctx)
{
    struct guard *g;
    int i;

    for (i = 0; i < ACCEPT_PAUSE_MAX && guards[i]; i++) {
    }
    if (i == ACCEPT_PAUSE_MAX || !(g = calloc(1, sizeof(*g)))) return -1;
    if (!(g->resume = evtimer_new(base, resume_cb, g))) {
        free(g);
        return -1;
    }
    g->lis = lis;
    g->what = what;
    g->say = say_line;
    g->ctx = ctx;
    guards[i] = g;
    evconnlistener_set_error_cb(lis, error_cb);
    return 0;
}

void accept_pause_unguard(struct evconnlistener *lis)
{
    int i;
    for (i = 0; i < ACCEPT_PAUSE_MAX; i++) {
        if (guards[i] && guards[i]->lis == lis) {
            event_free(guards[i]->resume);
            free(guards[i]);
            guards[i] = NULL;
        }
    }
}
