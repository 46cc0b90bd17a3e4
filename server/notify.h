/* notify.h - tells a service manager (systemd's Type=notify) where the
 * server's life stands: ready once it listens, reloading while a SIGHUP's
 * reload runs, stopping at SIGTERM or SIGINT. Only when NOTIFY_SOCKET is
 * set, and only by the process the manager started: a --workers worker
 * forgets the socket (notify_forget) as it begins, the supervisor speaks
 * for it. A failure to notify is said once and never stops the server. */
#ifndef TCPOTA_NOTIFY_H
#define TCPOTA_NOTIFY_H

struct tcpota_serve_opts;

/* The server accepts connections (again, after a reload). */
void notify_ready(const struct tcpota_serve_opts *o);
/* A SIGHUP's reload began: notify_ready follows when it ends, applied or not. */
void notify_reloading(const struct tcpota_serve_opts *o);
/* The server stops (SIGTERM, SIGINT). */
void notify_stopping(const struct tcpota_serve_opts *o);
/* This process is not the one the manager watches (a worker). */
void notify_forget(void);

#endif
