/*
 * tcpota_client.h - one tcpota connection over BSD sockets, shared by the
 * host device (`tcpota device`, cli/device.c) and the ESP-IDF component
 * (esp-idf/components/tcpota, on lwIP's sockets).
 *
 * The core (core/include/tcpota/device.h) is sans-I/O; this module is the
 * smallest piece of I/O around it that both platforms have in common:
 * resolve and connect with a timeout, then run one connection: queue
 * HELLO, wait with poll() for the socket (and an optional wake-up fd),
 * feed every received byte to tcpota_dev_input(), send what the session
 * queues, tick its clock, and return how the connection ended. The
 * reconnect policy is tcpota_runner.h; logging and the reboot after an
 * update stay with the caller.
 *
 * It uses only socket(), fcntl(O_NONBLOCK), connect(), getsockopt(),
 * setsockopt(), getaddrinfo(), poll(), recv(), send(), shutdown() and
 * close(), which lwIP provides under the same names. The socket is
 * non-blocking and every wait is a poll() with a timeout, so no call
 * blocks for longer than the session's own timers allow. It never
 * allocates (getaddrinfo() does, inside the C library or lwIP, once per
 * connection attempt, before any transfer).
 *
 * Memory: sizeof(struct tcpota_client) plus the caller's receive buffer
 * (any size; 4 KiB or more keeps the number of poll() calls low) and error
 * text buffer.
 */
#ifndef TCPOTA_CLIENT_H
#define TCPOTA_CLIENT_H

#include "tcpota/device.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How one connection ended (tcpota_client_run). */
enum tcpota_client_outcome {
    TCPOTA_CLIENT_RETRY = 1,   /* failed or ended early: back off and reconnect */
    TCPOTA_CLIENT_UP_TO_DATE,  /* the server has nothing newer */
    TCPOTA_CLIENT_UPDATED,     /* new image verified and set to boot: reboot */
    TCPOTA_CLIENT_DECLINED,    /* the session refused the offer */
    TCPOTA_CLIENT_ENDED,       /* the on_input callback ended the connection */
    TCPOTA_CLIENT_STOPPED,     /* stop_requested() said so */
};

struct tcpota_client_config {
    struct tcpota_dev *dev; /* initialised session (tcpota_dev_init) */
    uint8_t *net_buf;       /* receive buffer, owned by the caller */
    size_t net_cap;
    /* Feed no more input while more than this many bytes wait to be sent,
     * so the session's replies always find room in its tx buffer: at most
     * the tx buffer less TCPOTA_CLIENT_REPLY_ROOM (a larger value is
     * lowered to that when a connection starts). 0: half the session's
     * tx buffer. */
    size_t tx_high;
    uint32_t connect_ms;    /* cap of one connect() wait; 0: 10000 */
    uint32_t flush_ms;      /* time for the last frames before a close; 0: 2000 */
    /* Longest single poll() wait; 0: as long as the session's timers
     * allow. A caller without a wake-up fd sets it to bound how late a
     * stop request is seen. */
    uint32_t poll_max_ms;
    /* -1, or an fd that becomes readable to interrupt every wait (a
     * self-pipe written by a signal handler). */
    int wake_fd;
    char *err;              /* why the last attempt failed, NUL-terminated */
    size_t err_cap;         /* >= 1 */

    void *ctx;              /* handed to every callback */
    /* Monotonic milliseconds; may wrap. Required. */
    uint32_t (*now_ms)(void *ctx);
    /* Nonzero once the caller wants to stop (checked before and after
     * every wait). May be NULL. */
    int (*stop_requested)(void *ctx);
    /* wake_fd became readable: drain it. May be NULL. */
    void (*on_wake)(void *ctx);
    /* Called after every tcpota_dev_input() call that consumed input (rc >
     * 0, *ev filled) or failed (rc < 0; err already says "session failed:
     * ..." and may be rewritten here). Returns 0 to go on, nonzero to end
     * the connection with TCPOTA_CLIENT_ENDED (ignored when rc < 0). May be
     * NULL. */
    int (*on_input)(void *ctx, int rc, const struct tcpota_dev_event *ev);
    /* Optional transport layered on the connected socket (TLS on the
     * host); NULL: plain recv()/send(). Both return a byte count, 0
     * (io_recv: the peer closed), or -1 with errno set (EAGAIN or
     * EWOULDBLOCK: try again after poll(); io_recv's EPROTO: a record the
     * transport refused, said so). io_pending returns bytes the
     * transport already holds, readable without waiting on the socket. */
    long (*io_recv)(void *ctx, void *buf, size_t n);
    long (*io_send)(void *ctx, const void *buf, size_t n);
    size_t (*io_pending)(void *ctx);
};

/* When the session's ACKs go out: before the client waits. While more
 * input is at hand (bytes not yet fed, bytes the transport holds, or a
 * poll() that found the socket readable again), the ACKs the session
 * queues wait and leave together, one send() and one TLS record for
 * several. They go out at once when the input runs dry, when more than
 * tx_high bytes wait, when the first of them has waited
 * TCPOTA_CLIENT_HOLD_MS, or with any other frame (HELLO, ACCEPT, AUTH,
 * PING, PONG, COMPLETE, DECLINE, ERROR: tcpota_dev_output_urgent), which
 * never waits. The server does not wait for ACKs: it uses them for
 * progress and to close a device that acknowledged nothing new for its
 * idle timeout (60 s by default), which a quarter of a second does not
 * touch; the device saved its resume point before queueing each ACK, so
 * ACKs still held when a connection is cut or stopped cost nothing. The
 * server reads and answers fewer segments. */
#define TCPOTA_CLIENT_HOLD_MS 250u

/* Room the tx buffer keeps above tx_high for the one reply an input may
 * add behind held ACKs: COMPLETE (frame, image id, status), the largest. */
#define TCPOTA_CLIENT_REPLY_ROOM (TCPOTA_FRAME_OVERHEAD + TCPOTA_ID_LEN + 2u)

struct tcpota_client {
    struct tcpota_client_config cfg;
    int fd;                  /* connected socket or -1 */
    size_t net_off, net_len; /* received bytes not yet fed to the session */
    int http_answer;         /* the session failed on bytes that began "HTTP/1." */
    int text_answer;         /* ... on the connection's first bytes, text (another
                              * service's banner: SSH, SMTP) */
    int fed;                 /* the session took bytes on this connection */
    int input_flowing;       /* the last read got bytes, and no poll() since found none */
    int held;                /* 0, or queued output waits / is due (see above) */
    uint32_t held_at;        /* since when it waits (now_ms) */
};

/* Checks the config and prepares an unconnected client. Returns 0 or
 * TCPOTA_ERR_INVAL. */
int tcpota_client_init(struct tcpota_client *c, const struct tcpota_client_config *cfg);

/* Resolves host (a name or a numeric address) and connects to the first
 * of its addresses that answers within connect_ms each, with TCP_NODELAY.
 * `label` names the server in error text. Returns 0 (c->fd is set),
 * TCPOTA_ERR_CANCELED when a stop was requested, or TCPOTA_ERR_IO with
 * cfg.err set. */
int tcpota_client_connect(struct tcpota_client *c, const char *host, uint16_t port,
                          const char *label);

/* Runs one connection on c->fd until it ends; returns an enum
 * tcpota_client_outcome. With TCPOTA_CLIENT_RETRY cfg.err says why; with
 * TCPOTA_CLIENT_UPDATED cfg.err is empty unless COMPLETE could not be sent
 * (the next HELLO's report tells the server anyway). The socket stays
 * open: the caller closes it with tcpota_client_close() and calls
 * tcpota_dev_disconnect() before the next connection as it sees fit. */
int tcpota_client_run(struct tcpota_client *c);

/* Closes the socket (no-op when closed). With linger_ms > 0 it first
 * half-closes and waits that long for the server's FIN, so that closing
 * with unread bytes cannot turn into a reset that destroys the last frame
 * (COMPLETE, DECLINE). */
void tcpota_client_close(struct tcpota_client *c, uint32_t linger_ms);

/* Waits up to ms for `events` (POLLIN/POLLOUT) on fd, or just sleeps when
 * fd < 0, waking early for the wake fd. Returns the fd's revents (POLLERR
 * when poll() itself failed), 0 on timeout, or TCPOTA_ERR_CANCELED when a
 * stop was requested. */
int tcpota_client_wait(struct tcpota_client *c, int fd, short events, uint32_t ms);

/* What a device is told when its connection's peer closed it: the server,
 * or a proxy or balancer on the way (the device cannot tell which). */
#define TCPOTA_CLIENT_CLOSED_SAYS "the server (or a proxy on the way) closed the connection"
/* ... and when it reset it, seen by a read or a send. */
#define TCPOTA_CLIENT_RESET_SAYS "the server (or a proxy on the way) reset the connection"

/* What a device is told when the address answered in HTTP (the API's or the
 * download listener's port), in the clear or where a TLS handshake met it:
 * one text for the plain client and both TLS layers. */
#define TCPOTA_CLIENT_HTTP_PORT_SAYS                                                          \
    "the address names an HTTP port (tcpota serve's API or downloads?), not its device port " \
    "(tcpota serve --listen)"
/* A connection's first bytes as a TLS layer read them, kept to tell an HTTP
 * port's answer in the clear from another that is no TLS (both TLS layers:
 * the host device's BIO callback, the ESP-IDF port's bio_recv). */
struct tcpota_first_bytes {
    uint8_t b[8];
    uint8_t n;
};

/* Keeps what of p[0..len) still fits in f (the first bytes only). */
void tcpota_first_bytes_add(struct tcpota_first_bytes *f, const void *p, size_t len);

/* 1 when f's bytes (at least two) begin an HTTP answer ("HTTP/1.1 400 ...";
 * no TLS record does: its first byte is a content type, 20..24), else 0. */
int tcpota_first_bytes_http(const struct tcpota_first_bytes *f);

/* The session's own words on why it failed with rc (tcpota_dev_reason:
 * the server's ERROR text, a decline's reason), or "" when they only
 * repeat tcpota_strerror(rc): "frame CRC mismatch" is said once. A
 * protocol error on bytes that began "HTTP/1." is said to be an HTTP
 * port's answer (the --server address is wrong, not the frames). */
const char *tcpota_client_reason(const struct tcpota_client *c, int rc);

/* "the server reported: " when the session's failure came in the server's
 * ERROR (its CRC check of this device's frames, say), else "": a hostile
 * trial found both sides' "frame CRC mismatch" said alike. */
const char *tcpota_client_origin(const struct tcpota_client *c);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_CLIENT_H */
