/*
 * conn.h - one connection of `tcpota serve`: a small struct (server_internal.h)
 * with its own sans-I/O session, driven by libevent: a read and a write
 * event of its own on its socket, in the clear or inside TLS.
 */
#ifndef TCPOTA_SERVER_CONN_H
#define TCPOTA_SERVER_CONN_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct conn;
struct evbuffer;
struct tcpota_msg;
struct tcpota_srv_event;
struct tcpota_srv_hello;
struct tcpota_srv_image;

/* Takes over the accepted socket fd from host:port and starts serving it
 * (inside TLS when the server has a TLS context). unauth: the caller
 * counted it in srv->unauth (uncounted once it authenticates or closes).
 * Closes fd on failure. */
void conn_new(struct server *srv, evutil_socket_t fd, const char *host, const char *port,
              int unauth);
/* Unlinks and frees c and its socket at once. */
void conn_free(struct conn *c);
/* Ends a connection once what is queued has gone out (now: at once).
 * Returns 1 when c was freed. */
int conn_close(struct conn *c, int now);
/* 1 when c's TCP peer is a balancer --proxy-protocol lists (c's address
 * came from its PROXY header): what c's socket sent reached the balancer,
 * not yet the device. */
int conn_behind_balancer(const struct conn *c);

/* Writes p[0..n) to c's socket at once when nothing is queued before it
 * (plain: send(); TLS: SSL_write once the handshake is done), so that an
 * answer costs no write event and no loop turn. Returns the bytes
 * written; the caller queues the rest (conn_queued). */
size_t conn_write_now(struct conn *c, const void *p, size_t n);
/* Ends c at once when libevent could not allocate for its output or for
 * bytes already read (what says what it was doing, for the log: "queueing
 * image data"): what was asked may be partly queued, and a peer must
 * never read a stream with a hole, nor, inside TLS, other bytes than
 * those OpenSSL was given before a WANT_WRITE. Returns 1 (c is freed). */
int conn_out_of_memory(struct conn *c, const char *what);
/* c's output queue, or NULL before a TLS connection's first byte. Call conn_queued() after adding. */
struct evbuffer *conn_out(const struct conn *c);
/* Call after adding to c's output: makes the socket watch for writability
 * (it does not until something is queued). */
void conn_queued(struct conn *c);
/* Moves what the session queued into the socket's queue (control frames,
 * then DATA). Returns 1 when the session ended and c was freed. */
int conn_pump(struct conn *c);
/* Image bytes of c that have left its queue for the socket (legacy: sent). */
uint64_t conn_bytes_sent(const struct conn *c);
/* Logs an offer just sent ("<what>: offer V (N bytes) from S") and starts
 * the stream: its progress accounting, its device's ACKs read in batches. */
void conn_offered(struct conn *c, const char *what, uint32_t start);
/* Reading on (the idle timeout starts again) or off. */
void conn_read_on(struct conn *c);
void conn_read_off(struct conn *c);
/* Feeds what waits in the input buffer (reading was paused for the store). */
void conn_read_again(struct conn *c);
/* The device's latest outcome for the summary (devices.h); a later "up to
 * date" does not hide an update, nor "not offered" a failure. */
void conn_set_outcome(struct conn *c, int outcome);

/* Logs the report a HELLO carries ("report: image ID... confirmed" and
 * `more`) and sets the summary's outcome for it. Returns 1 for a result
 * this server knows, 0 for one it does not (logged, not recorded): the
 * caller acknowledges it all the same, so that a device newer than this
 * server stops sending it rather than being refused at every check-in. */
int conn_report(struct conn *c, const struct tcpota_srv_hello *h, const char *more);

/* Closes c when it missed the deadline from accept to HELLO (TLS servers,
 * where a trickled handshake keeps reads from timing out). Returns 1 when
 * c was closed and freed. Called once a second for every connection. */
int conn_check_deadline(struct conn *c, double now);

/* Once a second: a streaming connection with input waiting below its
 * SO_RCVLOWAT reads it (see conn.c), inside TLS too; what it reads is
 * handed to the session at once, which may end c: use c no more after. */
void conn_lowat_tick(struct conn *c);
/* A streaming connection reads once what waits below its watermark or in
 * the tail: its ACKs and COMPLETE as they stand now. c may be gone after. */
void conn_read_stream(struct conn *c);
/* Before the server stops: each streaming connection reads once what
 * waits below its watermark or in the tail (conn.c), so that a COMPLETE
 * already received is counted, not dropped. */
void conn_drain_streams(struct server *srv);

/* 1 when bytes the peer sent wait unread in c's socket: a loop that ran
 * late (the process stopped or starved) must not call such a peer idle. */
int conn_input_unread(const struct conn *c);
/* 1 when more than the idle timeout has passed since c connected, the
 * time the event loop ran late (stopped, starved) left out: a deadline
 * from the connect (its HELLO, its TLS handshake) judges the peer, not the
 * loop. now: now_s(). */
int conn_overdue(const struct conn *c, double now);

/* 1 when c's replies pile up unread (a PING flood, a legacy device
 * repeating req1 without reading): reading stops until they drain, and a
 * legacy device's requests are taken no further (legacy_input). */
int conn_replies_pile_up(const struct conn *c);

/* "device error: TEXT (MESSAGE)" of a device's ERROR m into buf: TEXT the
 * code's (tcpota_strerror), MESSAGE the device's own words, left out when
 * empty or when they repeat TEXT ("frame CRC mismatch" twice). */
void conn_peer_error(const struct tcpota_msg *m, char *buf, size_t cap);

/* A device whose secret changed (conn_cut_authed): its id, and why its
 * sessions end ("device secret removed"). */
struct conn_cut {
    const char *id;
    const char *why;
};

/* Resets, at once, every connection that authenticated (AUTH) as one of
 * the ids of cuts[0..n) (reordered), logging why: its secret was replaced
 * or removed (fleet mode, on this node or another). One pass over the
 * connections whatever n. An update in flight resumes, if the device can
 * still authenticate, from what it acknowledged. Returns how many. */
unsigned conn_cut_authed(struct server *srv, struct conn_cut *cuts, size_t n);

/* The connection proved what it must (HELLO, and AUTH where required): it
 * no longer counts against its address's unauthenticated connections. */
void conn_admitted(struct conn *c);

/* conn_session.c: the session's choose() callback (ctx is the conn): the
 * offer policy (offer.h), or the fleet's, once HELLO (and AUTH, when
 * required) are in. */
int conn_session_choose(void *ctx, const struct tcpota_srv_hello *h,
                        const struct tcpota_srv_image **chosen, uint32_t *retry_after_s);
/* conn_session.c: records and logs what one event of c's session means
 * (a HELLO's offer or why none, ACCEPT, DECLINE, ACK progress, COMPLETE,
 * AUTH judged, a device's ERROR), and tells the fleet. */
void conn_session_event(struct conn *c, const struct tcpota_srv_event *ev);

#endif
