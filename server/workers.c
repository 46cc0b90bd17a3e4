/* workers.c - N processes serving one port (see workers.h). */
#include "workers.h"
#include "log.h"
#include "notify.h"
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_all(int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] >= 0) close(fds[i]);
        fds[i] = -1;
    }
}

/* A listening socket on addr; reuseport: in the SO_REUSEPORT group.
 * Returns the fd or -1 (errno set). */
static int open_listener(const struct sockaddr *addr, socklen_t len, int reuseport)
{
    int one = 1, fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, addr, len) < 0 || (reuseport && listen(fd, LISTEN_BACKLOG) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int listen_resolve(const struct tcpota_serve_opts *o, struct addrinfo **ai)
{
    struct addrinfo hints;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", o->port);
    if ((rc = getaddrinfo(o->host, port, &hints, ai)) != 0) {
        say_always(o, LOG_LV_ERROR, "not starting: cannot resolve %s: %s", o->host,
                   gai_strerror(rc));
        return -1;
    }
    return 0;
}

void listen_failed(const struct tcpota_serve_opts *o, int e)
{
    char why[LOG_MSG_MAX];

    say_always(o, LOG_LV_ERROR, "not starting: %s",
               log_listen_failed(why, sizeof(why), o->host, o->port, NULL, "--listen", e));
}

int workers_listen(const struct tcpota_serve_opts *o, int *fds, unsigned n)
{
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int probe;
    unsigned i;

    for (i = 0; i < n; i++) {
        fds[i] = -1;
    }
    if (listen_resolve(o, &ai) < 0) {
        return -1;
    }
    /* Any socket of the same user that sets SO_REUSEPORT may join a group,
     * and would then take a share of the connections: first a plain bind,
     * which fails while anything listens there (another tcpota serve, with
     * or without workers), and which picks the port when it is 0. (A
     * process that joins later cannot be kept out: workers.h.) */
    probe = open_listener(ai->ai_addr, (socklen_t)ai->ai_addrlen, 0);
    freeaddrinfo(ai);
    if (probe >= 0) {
        int named = getsockname(probe, (struct sockaddr *)&ss, &sl) == 0;
        close(probe);
        probe = named ? 0 : -1;
    }
    for (i = 0; probe >= 0 && i < n; i++) {
        if ((fds[i] = open_listener((struct sockaddr *)&ss, sl, 1)) < 0) {
            break;
        }
    }
    if (probe < 0 || i < n) {
        int e = errno;
        close_all(fds, n);
        listen_failed(o, e);
        return -1;
    }
    return 0;
}

struct worker {
    pid_t pid;      /* 0: not running */
    double started; /* mono_s() */
};

static void tell_all(const struct worker *w, unsigned n, int sig)
{
    for (unsigned i = 0; i < n; i++) {
        if (w[i].pid > 0) kill(w[i].pid, sig);
    }
}

static void waited_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2); /* ignored, with a line (SERVE_SIGUSR2_LINE) */
    sigaddset(set, SIGCHLD);
}

void workers_block_signals(sigset_t *old)
{
    sigset_t set;

    waited_signals(&set);
    sigprocmask(SIG_BLOCK, &set, old);
}

/* Forks worker k. Returns 1 in the child (set up as workers_run says), 0 in
 * the supervisor, -1 when fork failed. */
static int spawn(const struct tcpota_serve_opts *o, const int *fds, unsigned n, unsigned k,
                 struct worker *w)
{
    pid_t parent = getpid(), pid;

    fflush(NULL); /* nothing buffered is written twice */
    pid = fork();
    if (pid < 0) {
        say_always(o, LOG_LV_ERROR, "cannot start worker %u: fork: %s", k + 1, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        for (unsigned i = 0; i < n; i++) {
            if (i != k) close(fds[i]);
        }
        /* A supervisor killed without a word takes its workers along. */
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) {
            _exit(1);
        }
        log_set_worker(k + 1);
        return 1; /* signals still blocked: the worker's handlers come first */
    }
    w[k].pid = pid;
    w[k].started = mono_s();
    if (!o->quiet) {
        say_always(o, LOG_LV_INFO, "worker %u started (pid %d)", k + 1, (int)pid);
    }
    return 0;
}

/* How a worker ended, in words. */
static void describe(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status)) {
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else {
        snprintf(buf, cap, "ended (wait status %d)", status);
    }
}

/* The supervisor's state. */
struct supervisor {
    const struct tcpota_serve_opts *o;
    const int *fds;
    unsigned n, live;
    int stopping, failed;
    struct worker w[WORKERS_MAX];
};

/* Tells every worker to stop; failed: the supervisor's exit is 1. */
static void stop_all(struct supervisor *s, int failed)
{
    s->failed |= failed;
    s->stopping = 1;
    tell_all(s->w, s->n, SIGTERM);
}

/* Starts worker k (a fork that fails stops them all). Returns 1 in the
 * new worker, 0 in the supervisor. */
static int start(struct supervisor *s, unsigned k)
{
    int rc = spawn(s->o, s->fds, s->n, k, s->w);

    if (rc == 1) {
        return 1;
    }
    if (rc < 0) {
        stop_all(s, 1);
    } else {
        s->live++;
    }
    return 0;
}

/* Worker k (pid) ended with status: said, and replaced unless the
 * supervisor is stopping or the worker died at once. Returns 1 in the
 * replacement, 0 in the supervisor. */
static int ended(struct supervisor *s, unsigned k, pid_t pid, int status)
{
    const struct tcpota_serve_opts *o = s->o;
    double lived = mono_s() - s->w[k].started;
    char how[96];

    s->w[k].pid = 0;
    s->live--;
    describe(status, how, sizeof(how));
    if (s->stopping) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            say_always(o, LOG_LV_ERROR, "worker %u (pid %d) %s while stopping", k + 1, (int)pid, how);
            s->failed = 1;
        }
        return 0;
    }
    if (lived < WORKER_MIN_LIFE_S) {
        say_always(o, LOG_LV_ERROR, "worker %u (pid %d) %s %.1f s after it started: "
                   "stopping every worker (see the lines above)", k + 1, (int)pid, how, lived);
        stop_all(s, 1);
        return 0;
    }
    say_always(o, LOG_LV_ERROR, "worker %u (pid %d) %s after %.0f s; starting another "
               "(its queued connections wait for it)", k + 1, (int)pid, how, lived);
    return start(s, k);
}

int workers_run(const struct tcpota_serve_opts *o, const int *fds, unsigned n,
                const sigset_t *old, void (*reload)(void *arg), void *arg, int *exit_code)
{
    struct supervisor s;
    sigset_t set;
    unsigned k;

    memset(&s, 0, sizeof(s));
    s.o = o;
    s.fds = fds;
    s.n = n;
    waited_signals(&set);
    /* Inherited "ignore" would reap the workers unseen (no SIGCHLD, no
     * status), and the supervisor would wait for them forever. SIGHUP and
     * SIGUSR1 are ignored during serve's start: waited for here, blocked,
     * so their default action never runs. */
    signal(SIGCHLD, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    for (k = 0; k < n && !s.stopping; k++) {
        if (start(&s, k)) {
            return (int)k;
        }
    }
    /* The listeners are open (connections wait in their queues for the
     * workers): ready for the service manager. */
    notify_ready(o);
    while (s.live > 0) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info), status;
        pid_t pid;

        if (sig == SIGINT || sig == SIGTERM) {
            if (!s.stopping) {
                notify_stopping(o);
            }
            if (!s.stopping && !o->quiet) {
                say_always(o, LOG_LV_INFO, "%s: stopping %u workers",
                           sig == SIGINT ? "SIGINT" : "SIGTERM", s.live);
            }
            stop_all(&s, 0);
        } else if ((sig == SIGHUP || sig == SIGUSR1) && !s.stopping) {
            /* (while stopping: a worker past its loop has no handler) */
            if (sig == SIGHUP && reload) {
                reload(arg);
            }
            tell_all(s.w, n, sig);
            if (sig == SIGHUP && reload) {
                /* The files read here, the workers told: each reloads on
                 * its own from now on (no word back). */
                notify_ready(o);
            }
        } else if (sig == SIGUSR2) {
            say_always(o, LOG_LV_WARN, "%s", SERVE_SIGUSR2_LINE); /* not passed on */
        } else if (sig == SIGCHLD) {
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (k = 0; k < n && s.w[k].pid != pid; k++) {
                }
                if (k < n && ended(&s, k, pid, status)) {
                    return (int)k;
                }
            }
            if (pid < 0 && errno == ECHILD) {
                s.live = 0; /* reaped already: nobody is left to wait for */
            }
        }
    }
    sigprocmask(SIG_SETMASK, old, NULL);
    if (s.failed || !o->quiet) {
        say_always(o, s.failed ? LOG_LV_ERROR : LOG_LV_INFO, "every worker has stopped%s",
                   s.failed ? " (not all cleanly: see above)" : "");
    }
    *exit_code = s.failed ? 1 : 0;
    return -1;
}
