/* offload.c - one thread per piece of blocking work, its end told to the
 * loop through a pipe (offload.h). */
#define _GNU_SOURCE /* pipe2 */
#include "offload.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

struct offload {
    pthread_t thread;
    int fd[2]; /* the pipe: its write end says work has returned */
    struct event *ev;
    offload_fn work, done;
    void *arg;
};

static void *job_main(void *p)
{
    struct offload *j = p;
    char b = 1;
    ssize_t n;

    j->work(j->arg);
    do {
        n = write(j->fd[1], &b, 1);
    } while (n < 0 && errno == EINTR);
    return NULL;
}

static void job_free(struct offload *j)
{
    (void)pthread_join(j->thread, NULL);
    event_free(j->ev);
    (void)close(j->fd[0]);
    (void)close(j->fd[1]);
    free(j);
}

static void job_ended(evutil_socket_t fd, short what, void *p)
{
    struct offload *j = p;
    offload_fn done = j->done;
    void *arg = j->arg;

    (void)fd;
    (void)what;
    job_free(j);
    done(arg);
}

/* Starts j's thread with the signals sent to the process blocked: the
 * loop's thread takes them (SIGHUP, SIGTERM), and the job's writes are
 * never interrupted. A fault of its own (SIGSEGV, SIGBUS, SIGFPE, SIGILL)
 * still reaches it, and whatever reports it (ASan). Returns 0, or an
 * errno value. */
static int start(struct offload *j)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&j->thread, NULL, job_main, j);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

struct offload *offload_start(struct event_base *base, offload_fn work, offload_fn done, void *arg)
{
    struct offload *j = calloc(1, sizeof(*j));
    int err = ENOMEM;

    if (j && pipe2(j->fd, O_CLOEXEC) == 0) {
        j->work = work;
        j->done = done;
        j->arg = arg;
        j->ev = event_new(base, j->fd[0], EV_READ, job_ended, j);
        if (j->ev && event_add(j->ev, NULL) == 0 && (err = start(j)) == 0) {
            return j;
        }
        if (j->ev) event_free(j->ev);
        (void)close(j->fd[0]);
        (void)close(j->fd[1]);
    } else if (j) {
        err = errno;
    }
    free(j);
    errno = err;
    return NULL;
}

void offload_wait(struct offload *j)
{
    if (j) job_free(j);
}
