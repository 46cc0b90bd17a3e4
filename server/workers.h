/*
 * workers.h - `tcpota serve --workers N`: N processes serve one port.
 *
 * The first process (the supervisor) loads the image, the secrets and the
 * TLS context, opens N listening sockets on the same address in one
 * SO_REUSEPORT group (the kernel spreads new connections over them by their
 * addresses and ports), and forks one worker per socket. Each worker runs
 * the ordinary single-process server on its socket with its own event loop,
 * its own --max-conns and its own descriptor limit: N workers use N cores,
 * and hold N times the connections one process may.
 *
 * The supervisor serves nothing. It keeps every socket open, so that the
 * connections the kernel queued for a worker that died wait for the one it
 * starts in its place; it forwards SIGTERM/SIGINT (stop), SIGHUP (reload:
 * it reloads too, so that a worker it starts later has the same) and
 * SIGUSR1 (summary) to every worker; a SIGUSR2 it logs and ignores
 * (SERVE_SIGUSR2_LINE), as each worker would. A worker that ends on its own
 * (a crash) is replaced, unless it lived less than WORKER_MIN_LIFE_S: then
 * something is wrong from the start, and every worker is stopped.
 *
 * The port is checked free at the start (workers_listen); once the group
 * exists, Linux lets any process of the same user join it: the server
 * should run under a user of its own (docs/operations.md).
 *
 * What is per worker: what a single process keeps in memory (the devices it
 * saw, failed authentications, connections per address before they
 * authenticate). Single-image mode only: fleet mode's SQLite store has one
 * writer (several nodes share PostgreSQL instead, docs/scaling.md).
 */
#ifndef TCPOTA_SERVER_WORKERS_H
#define TCPOTA_SERVER_WORKERS_H

#include <signal.h>
#include <stdint.h>

struct addrinfo;
struct tcpota_serve_opts;

#define WORKERS_MAX 64u       /* --workers */
#define WORKER_MIN_LIFE_S 1.0 /* a worker that dies sooner is not replaced */

/* Connections waiting for accept, per listening socket: as many as the
 * system allows (the kernel cuts it to net.core.somaxconn, 4096 on Linux
 * 5.4 and later). A fleet reconnecting at once after a restart overflows a
 * short queue, and each connection dropped there waits a second for the
 * handshake's retry (bench/README.md, twenty-second session). */
#define LISTEN_BACKLOG 65535

/* --listen resolved for listening (o->host, o->port): 0 with *ai (the
 * caller frees it with freeaddrinfo), or -1 after saying why ("not
 * starting: ...": start-up only, as listen_failed). */
int listen_resolve(const struct tcpota_serve_opts *o, struct addrinfo **ai);
/* Says that the server is not starting: --listen cannot be listened on
 * (errno e), and what to do. */
void listen_failed(const struct tcpota_serve_opts *o, int e);

/* Opens n listening sockets on o->host:o->port in one SO_REUSEPORT group
 * (port 0: the first one's port for all) into fds. Returns 0, or -1 after
 * saying why (every socket closed). */
int workers_listen(const struct tcpota_serve_opts *o, int *fds, unsigned n);

/* Blocks the signals the supervisor waits for (SIGINT, SIGTERM, SIGHUP,
 * SIGUSR1, SIGUSR2, SIGCHLD), the mask before into *old (NULL: not kept): before
 * the first line a script may act on, so that no signal meets a default
 * action. */
void workers_block_signals(sigset_t *old);

/* Forks a worker per socket of fds and supervises them (see above), with
 * the signals blocked by workers_block_signals. On SIGHUP it calls
 * reload(arg) before it tells the workers, so that a worker started later
 * serves what they reloaded. Returns in each worker its index (0..n-1),
 * with the other workers' sockets closed and the signals still blocked
 * (the worker sets *old back once its own handlers are in place); returns
 * -1 in the supervisor once every worker has ended, the mask set back to
 * *old, with *exit_code 0 when they were asked to stop and all ended
 * cleanly, else 1. */
int workers_run(const struct tcpota_serve_opts *o, const int *fds, unsigned n,
                const sigset_t *old, void (*reload)(void *arg), void *arg, int *exit_code);

#endif
