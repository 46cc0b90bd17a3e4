/*
 * accept_pause.h - a listener that stops accepting for a moment when
 * accept() fails for want of resources.
 *
 * libevent's listener is level-triggered: when accept() fails with EMFILE
 * (the process holds its descriptor limit), ENFILE, ENOBUFS or ENOMEM, the
 * pending connection stays in the backlog, the socket is readable again at
 * once, and the loop spins on the same error (a server at `ulimit -n 20`
 * logged it 1.9 million times in 2 s, at 100 % CPU). A guarded listener is
 * disabled for ACCEPT_PAUSE_MS after such an error, then tried again (a
 * connection that ended meanwhile freed a descriptor); the error is said
 * at most once per ACCEPT_SAY_EVERY_S, with how many followed.
 */
#ifndef TCPOTA_ACCEPT_PAUSE_H
#define TCPOTA_ACCEPT_PAUSE_H

struct event_base;
struct evconnlistener;

#define ACCEPT_PAUSE_MS 100    /* accepting stops this long after an error */
#define ACCEPT_SAY_EVERY_S 10  /* the error is said at most once this often */
#define ACCEPT_PAUSE_MAX 4     /* guarded listeners per process */

/* Where a guard says what happened (a line of the server's log). */
typedef void (*accept_pause_say_fn)(void *ctx, const char *msg);

/* Guards lis (the device port, the API's, the HTTP downloads'); what is
 * the listener's name in messages ("devices", "the API"). Replaces lis's
 * error callback. Returns 0, or -1 (out of memory, or more than
 * ACCEPT_PAUSE_MAX listeners) leaving lis unguarded. */
int accept_pause_guard(struct event_base *base, struct evconnlistener *lis, const char *what,
                       accept_pause_say_fn say, void *ctx);

/* Ends the guard of lis (before lis is freed); nothing when it has none. */
void accept_pause_unguard(struct evconnlistener *lis);

#endif /* TCPOTA_ACCEPT_PAUSE_H */
