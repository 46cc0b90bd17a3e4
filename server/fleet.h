/*
 * fleet.h - fleet mode of `tcpota serve` (--data DIR): every device's
 * decision comes from the store (store.h) through the offer policy
 * (offer.h) and the rollout rules (rollout.h), and every step of its update
 * goes back into the store.
 *
 * How a v1 connection goes:
 *   HELLO (+ AUTH)  -> fleet_choose(): STORE_CHECKIN (registers the device,
 *                      applies its report durably); the session waits in
 *                      CHOOSING, then fleet_checkin_done() decides and calls
 *                      tcpota_srv_offer(). A halt or a wave opening that the
 *                      counts call for is written first (compare-and-set)
 *                      and applies to this very decision.
 *   ACCEPT, ACK     -> downloading (progress at most once per second)
 *   COMPLETE, DECLINE, ERROR -> verified / failed / declined (durable)
 * The steps are gathered and written as one STORE_EVENTS per 50 ms (or 256
 * steps; a device's newer progress replaces its pending one; a final step
 * goes at once with what waits before it); a device's check-in, the API's
 * requests and fleet_close() hand them over first.
 * A legacy (req0/req1) connection is registered as "legacy-<address>" of
 * model "legacy" and gets the image of the `legacy` rollout, or is closed.
 */
#ifndef TCPOTA_SERVER_FLEET_H
#define TCPOTA_SERVER_FLEET_H

#include "tcpota/server.h"

#include <stddef.h>
#include <stdint.h>

struct server;
struct conn;
struct tcpota_serve_opts;

#define FLEET_PROGRESS_S 1.0     /* a transfer's progress is written at most this often */
#define FLEET_RETRY_ERROR_S 30u  /* a device that met a database error asks again after */
/* A device whose check-in found the database unreachable (PostgreSQL
 * restarting) asks again after: NO_UPDATE with this RETRY_AFTER, or, when
 * it carries a report, an ERROR (BUSY) so that it keeps the report. */
#define FLEET_RETRY_DOWN_S 10u
#define FLEET_LEGACY_MODEL "legacy"
/* An image whose file failed to load is loaded again after this long (or
 * at the next change through the API); its devices are told to wait so
 * long (v1: NO_UPDATE WHY 8 with RETRY_AFTER; HTTP: 503, Retry-After). */
#define FLEET_IMAGE_RETRY_S 30u
/* On PostgreSQL a node's damaged copy of an image is removed; the first
 * check-in after this long fetches it again from the database (sooner,
 * the check-ins of the same moment would find no file). */
#define FLEET_IMAGE_REFETCH_S 1.0
/* How often a PostgreSQL node asks for the device secrets set through
 * other nodes, and for the state of the rollouts whose transfers it runs:
 * a secret set or replaced anywhere is checked everywhere, and a rollout
 * cancelled or halted on any node stops its transfers on every node,
 * within about this long (fleet.c, sync_tick). */
#define FLEET_SYNC_MS 1000
/* The rollouts a node asks about in one tick (their transfers running on
 * it); with more, the next ones at the next tick, in turn. At most
 * FLEET_SYNC_SCAN_MAX of them are known at a time. */
#define FLEET_SYNC_ROLLOUTS_MAX 8u
#define FLEET_SYNC_SCAN_MAX 256u
/* --db-timeout's default, seconds: a PostgreSQL node whose database has
 * answered neither a request nor a statement this long, with requests
 * waiting, drops its connection (store_vt.unstick). Well above any one
 * statement of ours on a working database (a request of many, such as an
 * image stored in 256 KiB chunks, answers each). */
#define FLEET_DB_TIMEOUT_S 60u
/* PostgreSQL: a node reads every device secret again this often (give or
 * take a tenth) and then holds exactly the database's (--secrets-reread;
 * fleet.c, sync_secrets). */
#define FLEET_SECRETS_REREAD_S 300u
/* A stop's wait on a hung database (at most --db-timeout) before it cuts
 * the connection: its last attempt to connect (libpq's connect_timeout, 10 s
 * by default) still ends within the unit's TimeoutStopSec (30 s). */
#define FLEET_STOP_DB_WAIT_S 15u
/* The registry's reason then, with the rollout's id. */
#define FLEET_UNSERVABLE_SAYS "rollout %llu: its image cannot be loaded on the server (see its log)"
#define FLEET_TRIM_BYTES (64 << 20) /* free heap glibc keeps rather than trims (fleet_open) */

/* Makes the files of o->data_dir private (fleet_files.h), opens the store
 * in it, loads the device secrets into srv->auth, starts the API (unless
 * o->api is "off"). Returns 0, or -1 after logging "not starting: " and
 * why, FLEET_OPEN_BAD_ARG when that was a bad argument (a --db string libpq
 * cannot take: the exit status of a usage error). */
#define FLEET_OPEN_BAD_ARG (-2)
int fleet_open(struct server *srv);
/* Stops the API, hands the gathered steps to the store, finishes what it has
 * queued (nothing recorded is lost at SIGTERM), closes it, drops the
 * image cache. NULL fleet: no-op. */
void fleet_close(struct server *srv);
/* Once a second (the server's sweep): tells once when the store has
 * answered nothing for STORE_STUCK_S while requests wait, and once when
 * it answers again; past --db-timeout, drops the database's connection
 * (once per stall, said). */
void fleet_sweep(struct server *srv);

/* SIGHUP with PostgreSQL (--db): the node reads every device secret again
 * and then holds exactly what the database has (after a failover that
 * lost writes, at once rather than within FLEET_SECRETS_FULL_S). Returns
 * 1 when that began, 0 with SQLite (this node wrote every secret it holds). */
int fleet_reread_secrets(struct server *srv);

/* The session's choose() in fleet mode: always TCPOTA_SRV_CHOOSE_LATER
 * (the store answers), unless the store cannot take the request (then 0
 * and NO_UPDATE... never: an ERROR is queued instead and 0 returned). */
int fleet_choose(struct conn *c, const struct tcpota_srv_hello *h,
                 const struct tcpota_srv_image **chosen, uint32_t *retry_after_s);
/* A session event after the decision (tcpota_srv_event): records the step. */
void fleet_on_event(struct conn *c, const struct tcpota_srv_event *ev);
/* A legacy device connected: asks the store; reading pauses until the
 * answer. Returns 0, or -1 when c was closed. */
int fleet_legacy_start(struct conn *c);
/* A legacy device has been sent every byte. */
void fleet_legacy_done(struct conn *c);
/* c is being freed: its store request in flight, if any, is detached. */
void fleet_conn_gone(struct conn *c);

/* The line "listening on ..." adds what fleet mode serves. */
void fleet_describe(const struct server *srv, char *buf, size_t cap);
/* Where this server answers HTTP (the API, downloads), or how to turn it
 * on, for the line that refuses an HTTP request on the device port. */
void fleet_http_where(const struct server *srv, char *buf, size_t cap);

#endif
