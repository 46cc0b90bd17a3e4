/*
 * store_worker.h - the thread a fleet store backend runs its requests on,
 * and the way their completions come back to the event loop; one module for
 * every backend (store_sqlite.c, store_pg.c), which differ only in how they
 * run a list of requests.
 *
 * On the loop's thread, store_worker_submit() gathers the requests of one
 * turn of the loop and hands them to the store thread together (one lock
 * and one wake-up per turn, not per request: both threads may share a
 * core). The store thread calls the backend's `run` with each list taken
 * from the queue, in submission order; the backend posts requests it has
 * finished with store_worker_post(), and the loop runs their `done`, in the
 * order posted, when it reads the worker's pipe (no libevent threading
 * needed). The backend embeds the struct (its memory is the caller's) and
 * reads nothing of it but through these functions.
 */
#ifndef TCPOTA_SERVER_STORE_WORKER_H
#define TCPOTA_SERVER_STORE_WORKER_H

#include "store.h"

#include <pthread.h>
#include <stdint.h>

struct event;
struct event_base;

/* What the backend gives the worker; ctx is passed back to each call. */
struct store_worker_ops {
    void *ctx;
    /* Store thread: runs list (linked by ->next, in submission order; NULL
     * when woken by idle_ms or by the stop) and posts every request of it,
     * now or later. stopping: this is the last call unless list is not
     * NULL (the worker calls again until the queue is empty). */
    void (*run)(void *ctx, struct store_req *list, int stopping);
    /* Store thread, with the queue empty: milliseconds until `run` wants a
     * call without requests (a batch window that ends, a connection to try
     * again), 0 at once, < 0 none. NULL: always < 0. */
    int64_t (*idle_ms)(void *ctx);
    /* Loop thread, in store_worker_submit: 0 to queue r, else r completes
     * as it is (the backend wrote its rc and err: it fails fast, e.g. while
     * the database is unreachable). NULL: always queued. */
    int (*admit)(void *ctx, struct store_req *r);
    /* Whose notice runs the backend's words (store_worker_notice). */
    struct store *owner;
};

/* One line for the operator, waiting for the loop (store_worker_notice). */
#define STORE_NOTE_MAX 640u /* its bytes, NUL included (a longer line is cut) */
struct store_worker_note {
    struct store_worker_note *next;
    int error;
    char msg[STORE_NOTE_MAX];
};

struct store_worker {
    struct store_worker_ops ops;
    int pipe_rd, pipe_wr;    /* the store thread writes a byte when completions wait */
    struct event *ev;        /* the loop's side of the pipe */
    struct event *kick;      /* hands this turn's requests over */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;      /* guards q_*, done_*, stopping */
    pthread_cond_t cv;       /* a request arrived, the stop, or the loop ran the
                              * completions (monotonic clock) */
    struct store_req *q_head, *q_tail;       /* handed over, not yet taken */
    struct store_req *done_head, *done_tail; /* posted, done not yet run */
    size_t ndone;                            /* how many of them */
    struct store_worker_note *notes;         /* posted, newest first, not yet told */
    int stopping;
    int ended;                               /* the store thread is about to return */
    struct store_req *out_head, *out_tail;   /* loop only: this turn's requests */
};

/* Sets w up (its lock; no pipe, no thread yet) so that
 * store_worker_release() is safe whatever happens next. Call first. */
void store_worker_init(struct store_worker *w);
/* Creates the pipe and its loop event on base and starts the store thread,
 * which calls ops. Returns 0, or -1 with a message in err (the caller then
 * calls store_worker_release). */
int store_worker_start(struct store_worker *w, const struct store_worker_ops *ops,
                       struct event_base *base, char *err, size_t errlen);
/* Loop thread: queues r (r->done runs later on the loop). Returns
 * STORE_OK, STORE_E_INVAL for a request without done, STORE_E_IO once the
 * worker is stopping (r->done then never runs). */
int store_worker_submit(struct store_worker *w, struct store_req *r);
/* Completions that may wait for the loop at once: the store thread waits
 * in store_worker_post() for the loop to run them beyond that. A request's
 * results (a check-in's are 3 KB) live until its done has run; with the
 * loop busy (10,000 devices checking in at once while others stream) the
 * store thread had finished 2,000 of them ahead of it. */
#define STORE_DONE_HIGH 256u

/* Store thread (or the loop's, while no store thread runs): appends the
 * requests head..tail (linked by ->next) to the completions and wakes the
 * loop. On the store thread it first waits while STORE_DONE_HIGH
 * completions wait for the loop (not once the worker is stopping). NULL
 * head: no-op. */
void store_worker_post(struct store_worker *w, struct store_req *head, struct store_req *tail);
/* Store thread: 1 when a store_worker_post() now would wait for the loop
 * (a backend commits what it holds open first: a transaction must not stay
 * open while the loop lags). */
int store_worker_backlogged(struct store_worker *w);

/* Store thread (or the loop's): a line for the operator, told on the loop
 * through owner->notice (stderr without one) before the completions
 * posted after it run. Out of memory: the line is lost. */
void store_worker_notice(struct store_worker *w, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Loop thread: hands over what this turn submitted, lets the store thread
 * run everything queued and stop, joins it, then runs every completion not
 * run yet: every submitted request gets its done. */
void store_worker_stop(struct store_worker *w);
/* store_worker_stop, but after wait_s (0: never) of the store thread not
 * ending, late(arg) is called once on this thread (a backend cuts a hung
 * database's connection there, so that its thread ends), and the join goes
 * on. Returns 1 when late was called, else 0. */
int store_worker_stop_within(struct store_worker *w, unsigned wait_s, void (*late)(void *),
                             void *arg);
/* Frees the pipe, its events, the lock; after store_worker_stop (or a
 * failed start). */
void store_worker_release(struct store_worker *w);

#endif
