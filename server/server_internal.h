/*
 * server_internal.h - what the files of `tcpota serve` share: the server and
 * the per-connection structs, and the flow-control limits.
 *
 * Where each job lives:
 *   server.c  the listener, signals, the once-a-second sweep, the summary
 *   workers.c --workers: N processes on one port, and their supervisor
 *   conn.c    one connection: its state, its bytes, the libevent callbacks
 *   conn_session.c what its v1 session decides and logs: offer, report, AUTH
 *   legacy.c  serving the sample's req0/req1 devices on a connection
 *   auth.c    device secrets: checking an answer to a CHALLENGE, backoff
 *   unauth.c  connections per address that have not authenticated yet
 *   admit.c   the limits every listener applies at accept (admit.h)
 *   proxied.c a trusted balancer's connections: their PROXY header first
 *             (proxy_proto.c parses it, versions 1 and 2)
 *   image.c   the image: load, CRCs, the prebuilt DATA frames (memfd)
 *   digest.c  SHA-256 of image bytes (OpenSSL's)
 *   esp_image.c an image's first bytes against its version and model (an
 *             ELF, an ESP-IDF app of another chip or version)
 *   offload.c blocking work (hashing, file writes) on a thread, its end on the loop
 *   offer.c   whether a device is offered the image (model, version, failures)
 *   devices.c what each device reported (failures, outcome)
 *   tls.c     the TLS context, the channel binding of an AUTH
 *   log.c     one log line per event
 *   fleet.c   fleet mode (--data): decisions from the store, steps into it
 *   store.c   fleet mode's store (store.h); store_sqlite*.c its SQLite backend,
 *             file by file in store_sqlite_internal.h
 *   rollout.c the wave and halt rules of staged rollouts
 *   api*.c    the control API (HTTP/JSON) of fleet mode (api.h)
 *   metrics.c fleet mode's counters, exported at GET /metrics (metrics.h)
 *   http_ota*.c fleet mode's HTTP(S) downloads for esp_https_ota devices
 *             (requests, the listener's connections, decisions, sending:
 *             http_ota_internal.h); http_range.c their Range / If-Range rules
 */
#ifndef TCPOTA_SERVER_INTERNAL_H
#define TCPOTA_SERVER_INTERNAL_H

#include "auth.h"
#include "devices.h"
#include "image.h"
#include "log.h" /* struct log_limit */
#include "server.h"
#include "unauth.h"

#include "tcpota/legacy.h"
#include "tcpota/server.h"

#include <event2/util.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <time.h>

#define OUT_HIGH (256u * 1024u) /* queue DATA frames up to this much */
/* Runs of prebuilt frames queued by reference (a file segment of the
 * image's memfd: a few dozen bytes of heap whatever its length) may hold
 * the whole image: the kernel's send buffer, not this queue, bounds what
 * waits in memory, and one sendfile() then takes all the socket takes
 * instead of one per OUT_HIGH; inside TLS SSL_write encrypts from the
 * segment's mapping as the socket takes the records (with OUT_HIGH, a
 * queue the socket took at once waited for the device's next ACKs, below
 * the read watermark: 256 KiB a second). The largest ESP32 flash is 16 MiB. */
#define OUT_HIGH_REF (16u * 1024u * 1024u)
#define OUT_LOW (64u * 1024u)   /* refill when the queue drains below */
/* DATA frames built one by one (a device whose MAX_PAYLOAD is below the
 * image's chunk, a resume inside a chunk) are copied into the queue, whose
 * bytes are then heap: this much at a time. The kernel's send buffer holds
 * what is in flight; the queue only refills it at each writable event. */
#define OUT_HIGH_COPY (4u * 1024u)
/* ... and refilled at most this many times a writable turn (64 KiB): the
 * rest waits for the next turn, after the other connections'. */
#define OUT_COPY_TURNS 16u
/* A legacy device is stop-and-wait: one package answers each request, and
 * one that keeps asking without reading stops being read once this much
 * of its answers waits (about 30 packages). */
#define LEGACY_QUEUE_MAX (16u * 1024u)
/* Stop reading a peer whose replies pile up unread (a PING flood, a legacy
 * device repeating req1 without reading): READ_SLACK of them (conn.c,
 * replies_pile_up). */
#define READ_SLACK (256u * 1024u)
/* An ACK frame on the wire: frame overhead and its 4-byte offset. */
#define ACK_FRAME_LEN (TCPOTA_FRAME_OVERHEAD + TCPOTA_ACK_FIXED)
/* A streaming connection's SO_RCVLOWAT: its device's ACKs wake the loop 64
 * at a time (once per MiB at the default 16 KiB ack interval). */
#define STREAM_ACKS_PER_READ 64u
#define STREAM_RCVLOWAT (STREAM_ACKS_PER_READ * ACK_FRAME_LEN)
/* The same inside TLS, counted as if each ACK were a record of its own
 * (12 bytes and the record's 22: TLS 1.3's 5 header, 1 content type, 16
 * tag; TLS 1.2's AES-GCM adds an 8-byte nonce). Our devices send several
 * ACKs per record while more input is at hand (ports/common/
 * tcpota_client.h), so the mark then stands for more than 64 ACKs and the
 * once-a-second read (conn_lowat_tick) or the device's half-close finds
 * them first: fewer wakeups still, progress at least once a second. */
#define TLS_RECORD_OVERHEAD 22u
#define STREAM_RCVLOWAT_TLS (STREAM_ACKS_PER_READ * (ACK_FRAME_LEN + TLS_RECORD_OVERHEAD))
/* The session's receive buffer: the protocol's smallest frame limit, the
 * most a device may send (docs/protocol.md, size limits: the server states
 * no larger one; a device's largest frame is its 269-byte HELLO,
 * TCPOTA_DEV_HELLO_MAX), and what the core's decoder asks for. A longer
 * frame ends the connection with ERROR(TOOBIG). 504 bytes less per
 * connection than the 1 KiB it was. */
#define RX_CAP (TCPOTA_MIN_PAYLOAD + TCPOTA_FRAME_OVERHEAD)
/* What one read of a plain socket takes at most: libevent's own read size
 * (EVBUFFER_MAX_READ). */
#define READ_MAX 4096u
/* How often the connections that have sent everything are looked at
 * (conn.c, tail_enter): what their devices still send (the last ACKs,
 * COMPLETE, the close) waits at most this long. */
#define TAIL_MS 20
/* What one look takes at most: the rest is taken at the next. */
#define TAIL_BATCH 1024u
/* How many connections the once-a-second sweep reads below their
 * watermark (conn_lowat_tick) per second at most, about: with more
 * connected, each is read every ceil(n / SWEEP_READS) seconds, in turn by
 * its id. At 10,000 devices x 1 MiB a read per connection per second was
 * two thirds of the server's recv() calls (half of them finding nothing)
 * for progress seen that often (bench/README.md, twentieth session). */
#define SWEEP_READS 2000u
/* The sweep runs once a period; later than that by more than
 * SWEEP_LATE_MIN_S, the loop ran late (stopped, starved) by that much, time
 * no peer's deadline counts (conn_overdue). */
#define SWEEP_PERIOD_S 1.0
#define SWEEP_LATE_MIN_S (SWEEP_PERIOD_S / 2)

/* The seconds the event loop has run late (stopped, starved), summed, by
 * now (now_s()): what the sweep counted, and what it will count when it
 * runs (it is late itself). */
double server_loop_lost(const struct server *srv, double now);
/* What is left at now of `limit` s from `since` (negative: overdue),
 * leaving out the loop's late time since then (lost_at: server_loop_lost
 * at `since`), at most `limit` of it. A deadline from a connect judges the
 * peer, not the loop: what is read now may have come in time; a loop late
 * at every turn (saturated) does not stretch a deadline further. */
double server_time_left(const struct server *srv, double since, double lost_at, double limit,
                        double now);

enum kind { K_UNKNOWN = 0, K_V1, K_LEGACY };

struct conn;
struct fleet;
struct store_req;
struct event_base;
struct evconnlistener;
struct event;
struct evbuffer;

struct server {
    const struct tcpota_serve_opts *o; /* the options in force: the caller's, or a reload's */
    struct tcpota_serve_opts *reloaded; /* the last reload's set (o points to it), or NULL */
    double swept_at; /* when the once-a-second sweep last ran (a late one: a late loop) */
    double loop_lost_s; /* seconds the loop ran late, summed from the sweep's lateness */
    struct reload_job *reloading; /* a reload reading its image on a thread (server.c), or NULL */
    uint8_t reload_again;          /* a SIGHUP came meanwhile: read the files again after it */
    SSL_CTX *tls;
    struct auth auth;
    struct unauth unauth; /* connections per address not yet authenticated */
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *sigint, *sigterm, *sighup, *sigusr1, *sigusr2, *sweep;
    struct image *img;      /* the image offered now (a reload swaps it); NULL in fleet mode */
    struct fleet *fleet;    /* fleet mode (--data), or NULL */
    struct devices devices; /* what each device reported: failures, outcome */
    uint8_t devices_full_said; /* "registry full" was logged */
    struct conn *conns;
    unsigned nconns;
    unsigned nhttp; /* connections of the download listener (http_ota_conn.c): --max-conns counts them too */
    struct proxied *proxied; /* a trusted balancer's connections before their header (proxied.h) */
    /* Plain connections that have handed their whole image to the kernel
     * (conn.c, tail_enter): watched by an epoll instance of their own,
     * outside the loop, which tail_ev reads every TAIL_MS while any is
     * there. */
    int tail_ep;            /* -1 until the first one */
    unsigned ntail;
    struct event *tail_ev;
    uint64_t next_id;
    uint64_t sweeps; /* the once-a-second sweeps so far (server.c) */
    struct {
        unsigned connections, failed, refused, legacy_done; /* failed: connections ended by an error */
        unsigned http_whole, http_failed; /* fleet mode's HTTP downloads (http_ota*.c) */
        unsigned tls_full, tls_resumed; /* TLS handshakes finished, full or resumed */
        unsigned tls_kernel;            /* ... of which the kernel encrypts the sends */
        uint64_t bytes_sent;
        uint64_t http_bytes;            /* of the HTTP downloads' ranges, to the socket */
    } stats;
    /* Devices refused for authentication since the start, by kind and id,
     * for the fleet summary (auth.h; noted by server_auth_refused). */
    struct auth_refusals auth_refused;
    /* "plain ... client on the TLS port", and "unknown protocol" for a
     * PROXY header or an HTTP request (conn.c): a peer (a balancer, a
     * browser) repeats them. */
    struct log_limit plain_on_tls_log, hint_log, tls_fail_log;
    double started;
};

struct conn {
    struct server *srv;
    struct ssl_st *ssl; /* TLS: its state (NULL until the first byte); plain: NULL */
    struct conn *prev, *next;
    enum kind kind;
    uint64_t id;
    char peer[64];
    char dev[TCPOTA_MAX_STR + 1];
    struct tcpota_srv s;
    struct tcpota_legacy leg;
    struct image *img;       /* the image this connection streams (a reference), or NULL */
    struct device_rec *rec;  /* the device's record, once HELLO named it */
    /* Fleet mode: the store request in flight (its done finds c through
     * it; conn_free detaches it), the rollout the offer came from, and when
     * progress was last written. */
    struct store_req *req;
    uint64_t rollout_id;
    double progress_logged_at;
    uint32_t progress_bytes; /* fleet: the offset the store was last told (fleet.c) */
    uint8_t verdict;         /* enum offer_verdict of its HELLO */
    uint8_t remembered;      /* fleet mode: answered from memory (fleet.c) */
    uint16_t hung_s, hung_retry_s; /* fleet mode: told to come back at HELLO, the database
                                    * silent this long (fleet.c), and in how long */
    uint32_t stream_from;
    uint32_t next_pct;
    uint64_t bytes_sent;
    double started;
    double lost_at;     /* server_loop_lost() when it connected: deadlines from `started`
                         * leave out the loop's late time since (conn_overdue) */
    double progress_at; /* last time the device's ACKs moved, a legacy device was sent a
                         * package it had not had (legacy_top), or it connected */
    uint32_t legacy_top; /* a legacy device's furthest package end sent */
    size_t ctl_queued;   /* control bytes queued since the queue was last empty */
    size_t moved;        /* control bytes v1_input handed over before conn_pump */
    uint8_t legacy_done;
    uint8_t spared;  /* a halt or a cancel let it finish: every byte was sent (fleet.c) */
    uint8_t reseek_stopped; /* ... and its ACCEPT then asked for bytes again (conn_session.c) */
    uint8_t closing; /* conn_close() ran: free once the output is out */
    uint8_t ended_choosing; /* its end of stream came while the store chose (conn_event) */
    uint8_t authed;  /* its AUTH passed (on_auth): it holds a device's secret */
    uint8_t read_paused; /* reading stopped until our replies drain */
    uint8_t unauth;      /* counted in srv->unauth until it authenticates */
    uint8_t tls_up;      /* TLS: the handshake finished */
    uint8_t ktls;        /* TLS: the kernel encrypts its sends (tls_kernel_sends) */
    uint8_t tls_later;   /* TLS: a read's failure met behind its bytes (tls_read), and */
    int tls_later_errno; /* ... its errno, for the next read (conn.c, conn_recv) */
    uint8_t read_wants_write; /* TLS: a read must write first (a KeyUpdate's answer) */
    unsigned long tls_err; /* TLS: OpenSSL's reason for the failure conn_event reports */
    uint8_t lowat;       /* SO_RCVLOWAT raised while streaming (conn.c) */
    uint8_t idle_grace;  /* the sweep found it idle with input unread: it is
                          * read, and judged at the next sweep (server.c) */
    /* TLS: waiting for the first byte, before any TLS state is allocated
     * (then ssl, rd, wr and out are NULL). */
    struct event *first_byte;
    /* The socket's read and write events (conn.c, conn_read_on,
     * conn_queued), its output queue, and input the session could not take
     * yet (reading paused, a legacy device waiting for the store; made on
     * first use). Inside TLS the same, OpenSSL reading and writing the
     * socket (conn.c, conn_recv and conn_flush). */
    struct event *rd, *wr;
    struct evbuffer *out, *in;
    uint8_t rd_on; /* rd is added: reading */
    uint8_t tail;  /* in srv->tail_ep instead of the loop (conn.c) */
    uint8_t wr_on; /* wr is added: waiting to write */
    evutil_socket_t fd;
    char addr[48];
    uint8_t nonce[TCPOTA_NONCE_LEN];
    uint8_t rx[RX_CAP];
    uint8_t tx[TCPOTA_SRV_TX_MIN];
};

/* Says msg as a line of the server's log (arg: the struct server); the
 * listeners' accept_pause_say_fn. */
void server_say_line(void *arg, const char *msg);

/* A connection accepted from host:port (the device's own address, also
 * behind a trusted balancer: proxied.h): the connection limits, then
 * conn_new (server.c). */
void accept_from(struct server *srv, evutil_socket_t fd, const char *host, const char *port);

/* Notes that device id (NULL: none named) was refused for authentication,
 * for reason k, from addr (conn.c, conn_session.c, http_ota.c). */
static inline void server_auth_refused(struct server *srv, enum auth_refusal k, const char *id,
                                       const char *addr)
{
    auth_refusal_note(&srv->auth_refused, k, id, addr, (int64_t)time(NULL));
}

/* Monotonic seconds. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
