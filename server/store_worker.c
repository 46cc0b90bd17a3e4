/* store_worker.c - the store thread, its queue and the completion pipe
 * (store_worker.h). */
#include "store_worker.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* 1 on the store thread (store_main): only there may a post wait. */
static _Thread_local int on_store_thread;

/* 1 (w->mu held) when a post must wait for the loop to run completions:
 * on the store thread only, and never once the worker is stopping. */
static int must_wait(const struct store_worker *w)
{
    return on_store_thread && w->ndone >= STORE_DONE_HIGH && !w->stopping;
}

/* ---- completions (loop thread) ---- */

void store_worker_post(struct store_worker *w, struct store_req *head, struct store_req *tail)
{
    const struct store_req *r;
    size_t n = 1;
    char b = 1;
    int wake;

    if (!head) {
        return;
    }
    for (r = head; r != tail; r = r->next) {
        n++;
    }
    pthread_mutex_lock(&w->mu);
    while (must_wait(w)) {
        pthread_cond_wait(&w->cv, &w->mu); /* run_done signals */
    }
    /* A wake-up is owed only when the loop had nothing to run: one it has
     * not drained yet runs what is appended here too. */
    wake = w->done_head == NULL && w->notes == NULL;
    if (w->done_tail) {
        w->done_tail->next = head;
    } else {
        w->done_head = head;
    }
    w->done_tail = tail;
    tail->next = NULL;
    w->ndone += n;
    pthread_mutex_unlock(&w->mu);
    if (wake && write(w->pipe_wr, &b, 1) < 0) {
        /* EAGAIN: a full pipe already holds a wake-up. */
    }
}

int store_worker_backlogged(struct store_worker *w)
{
    int full;

    pthread_mutex_lock(&w->mu);
    full = must_wait(w);
    pthread_mutex_unlock(&w->mu);
    return full;
}

void store_worker_notice(struct store_worker *w, int error, const char *fmt, ...)
{
    struct store_worker_note *n = malloc(sizeof(*n));
    char b = 1;
    va_list ap;
    int wake;

    if (!n) {
        return;
    }
    n->error = error;
    va_start(ap, fmt);
    vsnprintf(n->msg, sizeof(n->msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&w->mu);
    wake = w->done_head == NULL && w->notes == NULL;
    n->next = w->notes;
    w->notes = n;
    pthread_mutex_unlock(&w->mu);
    if (wake && write(w->pipe_wr, &b, 1) < 0) {
        /* EAGAIN: a full pipe already holds a wake-up. */
    }
}

/* Tells the notes (oldest first) on the calling thread, and frees them. */
static void tell(struct store_worker *w, struct store_worker_note *newest)
{
    struct store_worker_note *n, *next, *oldest = NULL;
    struct store *o = w->ops.owner;

    for (n = newest; n; n = next) { /* reverse: oldest first */
        next = n->next;
        n->next = oldest;
        oldest = n;
    }
    for (n = oldest; n; n = next) {
        next = n->next;
        if (o && o->notice) {
            o->notice(o->notice_arg, n->error, n->msg);
        } else {
            fprintf(stderr, "tcpota store: %s\n", n->msg);
        }
        free(n);
    }
}

/* Runs every completion posted so far, in order, on the calling thread
 * (after the notes posted so far). */
static void run_done(struct store_worker *w)
{
    struct store_req *r, *next;
    struct store_worker_note *notes;

    pthread_mutex_lock(&w->mu);
    r = w->done_head;
    w->done_head = w->done_tail = NULL;
    w->ndone = 0;
    notes = w->notes;
    w->notes = NULL;
    pthread_cond_signal(&w->cv); /* a store thread waiting in store_worker_post */
    pthread_mutex_unlock(&w->mu);
    tell(w, notes);
    for (; r; r = next) {
        next = r->next;
        r->next = NULL;
        store_req_finished(r);
        r->done(r);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    run_done(arg);
}

/* ---- the store thread ---- */

/* Waits (w->mu held) until requests arrive, the stop, or the backend's
 * idle time is up. */
static void wait_for_work(struct store_worker *w)
{
    struct timespec ts;
    int64_t ms;

    while (!w->q_head && !w->stopping) {
        ms = w->ops.idle_ms ? w->ops.idle_ms(w->ops.ctx) : -1;
        if (ms == 0) {
            return;
        }
        if (ms < 0) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
}

static void *store_main(void *arg)
{
    struct store_worker *w = arg;
    struct store_req *list;
    int stopping;

    on_store_thread = 1;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        wait_for_work(w);
        list = w->q_head;
        w->q_head = w->q_tail = NULL;
        stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        w->ops.run(w->ops.ctx, list, stopping);
        if (stopping && !list) {
            pthread_mutex_lock(&w->mu);
            w->ended = 1; /* for store_worker_stop_within */
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
    }
}

/* ---- handing requests over (loop thread) ---- */

/* Hands the requests of this loop turn to the store thread. */
static void hand_over(struct store_worker *w)
{
    if (!w->out_head) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    if (w->q_tail) {
        w->q_tail->next = w->out_head;
    } else {
        w->q_head = w->out_head;
    }
    w->q_tail = w->out_tail;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    w->out_head = w->out_tail = NULL;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_over(arg);
}

int store_worker_submit(struct store_worker *w, struct store_req *r)
{
    if (!r || !r->done) {
        return STORE_E_INVAL;
    }
    if (w->stopping) { /* set by store_worker_stop, on this same thread */
        return STORE_E_IO;
    }
    r->next = NULL;
    if (w->ops.admit && w->ops.admit(w->ops.ctx, r) != 0) {
        store_worker_post(w, r, r); /* fails fast; done runs from the pipe, not here */
        return STORE_OK;
    }
    if (w->out_tail) {
        w->out_tail->next = r;
    } else {
        /* The first of this turn: the kick runs after the callbacks the
         * loop has already made active, so their requests join it. */
        w->out_head = r;
        event_active(w->kick, EV_TIMEOUT, 0);
    }
    w->out_tail = r;
    return STORE_OK;
}

/* ---- start and stop ---- */

void store_worker_init(struct store_worker *w)
{
    pthread_condattr_t ca;

    memset(w, 0, sizeof(*w));
    w->pipe_rd = w->pipe_wr = -1;
    pthread_mutex_init(&w->mu, NULL);
    /* Monotonic: a batch window or a backoff must not jump with the wall
     * clock. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
}

int store_worker_start(struct store_worker *w, const struct store_worker_ops *ops,
                       struct event_base *base, char *err, size_t errlen)
{
    int fds[2];

    w->ops = *ops;
    if (pipe(fds) != 0) {
        snprintf(err, errlen, "store: pipe: %s", strerror(errno));
        return -1;
    }
    w->pipe_rd = fds[0];
    w->pipe_wr = fds[1];
    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) != 0) {
        snprintf(err, errlen, "store: fcntl: %s", strerror(errno));
        return -1;
    }
    w->ev = event_new(base, w->pipe_rd, EV_READ | EV_PERSIST, on_wake, w);
    w->kick = event_new(base, -1, 0, on_kick, w);
    if (!w->ev || !w->kick || event_add(w->ev, NULL) != 0) {
        snprintf(err, errlen, "store: cannot watch the completion pipe");
        return -1;
    }
    if (pthread_create(&w->thread, NULL, store_main, w) != 0) {
        snprintf(err, errlen, "store: cannot start its thread");
        return -1;
    }
    w->thread_started = 1;
    return 0;
}

int store_worker_stop_within(struct store_worker *w, unsigned wait_s, void (*late)(void *),
                             void *arg)
{
    int was_late = 0;

    hand_over(w); /* what this turn submitted is run too */
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started && wait_s && late) {
        struct timespec until;
        int rc = 0;

        /* The cv's clock (store_worker_init). Once stopping, the store
         * thread waits on the cv no more: only this thread does. */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_s;
        pthread_mutex_lock(&w->mu);
        while (!w->ended && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
        }
        was_late = !w->ended;
        pthread_mutex_unlock(&w->mu);
        if (was_late) {
            late(arg);
        }
    }
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = 0;
    }
    /* Every submitted request gets its done, here if the loop did not run it. */
    run_done(w);
    return was_late;
}

void store_worker_stop(struct store_worker *w)
{
    (void)store_worker_stop_within(w, 0, NULL, NULL);
}

void store_worker_release(struct store_worker *w)
{
    struct store_worker_note *n, *next;

    for (n = w->notes; n; n = next) { /* posted after the last run_done */
        next = n->next;
        free(n);
    }
    if (w->ev) {
        event_free(w->ev);
    }
    if (w->kick) {
        event_free(w->kick);
    }
    if (w->pipe_rd >= 0) {
        close(w->pipe_rd);
        close(w->pipe_wr);
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}
