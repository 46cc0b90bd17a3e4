/* tcpota_client.c - one tcpota connection over BSD sockets (see tcpota_client.h). */
#include "tcpota_client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

/* Where lwIP (ESP-IDF) and a POSIX C library differ: lwIP's fcntl() knows
 * only O_NONBLOCK, it has no gai_strerror() and no EAI_SYSTEM, and there
 * are no signals to mute on send. */
#if defined(ESP_PLATFORM)
#define CLIENT_SEND_FLAGS 0
#else
#define CLIENT_SEND_FLAGS MSG_NOSIGNAL
#endif

#define CONNECT_MS_DEFAULT 10000u
#define FLUSH_MS_DEFAULT 2000u
#define IDLE_WAIT_MS 10u /* output waits for room: a short sleep, no spin */

static uint32_t now_ms(const struct tcpota_client *c)
{
    return c->cfg.now_ms(c->cfg.ctx);
}

static int stop_requested(const struct tcpota_client *c)
{
    return c->cfg.stop_requested && c->cfg.stop_requested(c->cfg.ctx);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void set_err(struct tcpota_client *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->cfg.err, c->cfg.err_cap, fmt, ap);
    va_end(ap);
}

int tcpota_client_init(struct tcpota_client *c, const struct tcpota_client_config *cfg)
{
    if (!c || !cfg || !cfg->dev || !cfg->net_buf || !cfg->net_cap || !cfg->err ||
        !cfg->err_cap || !cfg->now_ms) {
        return TCPOTA_ERR_INVAL;
    }
    memset(c, 0, sizeof(*c));
    c->cfg = *cfg;
    if (!c->cfg.connect_ms) c->cfg.connect_ms = CONNECT_MS_DEFAULT;
    if (!c->cfg.flush_ms) c->cfg.flush_ms = FLUSH_MS_DEFAULT;
    c->cfg.err[0] = 0;
    c->fd = -1;
    return 0;
}

/* ---- waiting --------------------------------------------------------- */

/* One poll() of fd (if >= 0) and the wake fd for at most ms (capped by
 * poll_max_ms). Returns TCPOTA_ERR_CANCELED when a stop was requested,
 * TCPOTA_ERR_IO when poll() failed (errno says why), else 0 with
 * *revents = the fd's events. */
static int poll_once(struct tcpota_client *c, int fd, short events, uint32_t ms, int *revents)
{
    struct pollfd p[2];
    nfds_t n = 0;
    int self = -1, wake = -1, rc;

    *revents = 0;
    if (c->cfg.poll_max_ms && ms > c->cfg.poll_max_ms) {
        ms = c->cfg.poll_max_ms;
    }
    if (ms > 0x7fffffffu) {
        ms = 0x7fffffffu;
    }
    if (c->cfg.wake_fd >= 0) {
        p[n].fd = c->cfg.wake_fd;
        p[n].events = POLLIN;
        p[n].revents = 0;
        wake = (int)n++;
    }
    if (fd >= 0) {
        p[n].fd = fd;
        p[n].events = events;
        p[n].revents = 0;
        self = (int)n++;
    }
    rc = poll(n ? p : NULL, n, (int)ms);
    if (stop_requested(c)) {
        return TCPOTA_ERR_CANCELED;
    }
    if (rc > 0 && wake >= 0 && p[wake].revents && c->cfg.on_wake) {
        c->cfg.on_wake(c->cfg.ctx);
    }
    if (rc < 0 && errno != EINTR) {
        return TCPOTA_ERR_IO;
    }
    if (rc > 0 && self >= 0) {
        *revents = p[self].revents;
    }
    return 0;
}

int tcpota_client_wait(struct tcpota_client *c, int fd, short events, uint32_t ms)
{
    uint32_t start = now_ms(c);

    for (;;) {
        uint32_t spent = now_ms(c) - start;
        int revents, rc = poll_once(c, fd, events, spent >= ms ? 0 : ms - spent, &revents);

        if (rc == TCPOTA_ERR_CANCELED) {
            return rc;
        }
        if (rc < 0) {
            return POLLERR;
        }
        if (revents) {
            return revents;
        }
        if (now_ms(c) - start >= ms) {
            return 0;
        }
    }
}

/* ---- connecting ------------------------------------------------------ */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -1;
    }
#if !defined(ESP_PLATFORM)
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        return -1;
    }
#endif
    return 0;
}

/* Connects one address without blocking longer than connect_ms. Returns
 * the socket, TCPOTA_ERR_IO with err set, or TCPOTA_ERR_CANCELED when a
 * stop was requested. */
static int connect_one(struct tcpota_client *c, const struct addrinfo *ai, const char *label)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int soerr = 0, one = 1, ev;
    socklen_t len = sizeof(soerr);

    if (fd < 0) {
        set_err(c, "socket: %s", strerror(errno));
        return TCPOTA_ERR_IO;
    }
    if (set_nonblock(fd) < 0) {
        soerr = errno;
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            soerr = errno;
        } else if ((ev = tcpota_client_wait(c, fd, POLLOUT, c->cfg.connect_ms)) < 0) {
            close(fd);
            return TCPOTA_ERR_CANCELED;
        } else if (ev == 0) {
            soerr = ETIMEDOUT;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
            soerr = errno;
        }
    }
    if (soerr) {
        set_err(c, "connect to %s: %s", label, strerror(soerr));
        close(fd);
        return TCPOTA_ERR_IO;
    }
    /* Small frames (ACK, PONG) must leave at once, not wait for Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static const char *gai_text(int rc)
{
#if defined(ESP_PLATFORM)
    return rc == EAI_NONAME ? "name not found" : rc == EAI_MEMORY ? "out of memory"
                                                                  : "lookup failed";
#else
    return rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
#endif
}

int tcpota_client_connect(struct tcpota_client *c, const char *host, uint16_t port,
                          const char *label)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[8];
    int fd = TCPOTA_ERR_IO, rc;

    c->cfg.err[0] = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        set_err(c, "cannot resolve %s: %s", host, gai_text(rc));
        return TCPOTA_ERR_IO;
    }
    for (ai = res; ai && fd == TCPOTA_ERR_IO; ai = ai->ai_next) {
        fd = stop_requested(c) ? TCPOTA_ERR_CANCELED : connect_one(c, ai, label);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return fd;
    }
    c->fd = fd;
    return 0;
}

void tcpota_client_close(struct tcpota_client *c, uint32_t linger_ms)
{
    if (c->fd < 0) {
        return;
    }
    if (linger_ms && shutdown(c->fd, SHUT_WR) == 0) {
        uint32_t start = now_ms(c), spent;
        while ((spent = now_ms(c) - start) < linger_ms &&
               tcpota_client_wait(c, c->fd, POLLIN, linger_ms - spent) > 0) {
            ssize_t k = recv(c->fd, c->cfg.net_buf, c->cfg.net_cap, 0);
            if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
                break;
            }
        }
    }
    close(c->fd);
    c->fd = -1;
}

/* ---- one connection -------------------------------------------------- */

#define CLIENT_CONTINUE 0 /* (internal) the connection goes on */
#define HOLD_WAITING 1    /* c->held: output waits for more input */
#define HOLD_DUE 2        /* c->held: output leaves as the socket takes it */

static size_t out_pending(const struct tcpota_client *c)
{
    const uint8_t *p;

    return tcpota_dev_output(c->cfg.dev, &p);
}

static int session_live(const struct tcpota_client *c)
{
    struct tcpota_dev_transfer t;

    tcpota_dev_get_transfer(c->cfg.dev, &t);
    return t.state == TCPOTA_DEV_HELLO_SENT || t.state == TCPOTA_DEV_RECEIVING;
}

#define HTTP_ANSWER_START "HTTP/" /* what tcpota_first_bytes_http looks for */

void tcpota_first_bytes_add(struct tcpota_first_bytes *f, const void *p, size_t len)
{
    size_t room = sizeof(f->b) - f->n;
    size_t n = len < room ? len : room;

    memcpy(f->b + f->n, p, n);
    f->n = (uint8_t)(f->n + n);
}

int tcpota_first_bytes_http(const struct tcpota_first_bytes *f)
{
    size_t n = f->n < sizeof(HTTP_ANSWER_START) - 1 ? f->n : sizeof(HTTP_ANSWER_START) - 1;

    return n >= 2 && memcmp(f->b, HTTP_ANSWER_START, n) == 0;
}

const char *tcpota_client_reason(const struct tcpota_client *c, int rc)
{
    const char *why = tcpota_dev_reason(c->cfg.dev);

    if (rc == TCPOTA_ERR_PROTO && c->http_answer) {
        return "the server answered in HTTP: " TCPOTA_CLIENT_HTTP_PORT_SAYS;
    }
    if (rc == TCPOTA_ERR_PROTO && c->text_answer) {
        return "the server answered in text, not in tcpota's frames: the address names another"
               " service's port (SSH, mail?), not tcpota serve's device port (--listen)";
    }
    return strcmp(why, tcpota_strerror(rc)) == 0 ? "" : why;
}

const char *tcpota_client_origin(const struct tcpota_client *c)
{
    struct tcpota_dev_transfer t;

    tcpota_dev_get_transfer(c->cfg.dev, &t);
    return t.server_error ? "the server reported: " : "";
}

/* Sends what the session has queued until the socket is full. Returns 0
 * or -1 with err set. */
static int flush_some(struct tcpota_client *c)
{
    const uint8_t *p;
    size_t n;

    while ((n = tcpota_dev_output(c->cfg.dev, &p)) > 0) {
        ssize_t k = c->cfg.io_send ? (ssize_t)c->cfg.io_send(c->cfg.ctx, p, n)
                                   : send(c->fd, p, n, CLIENT_SEND_FLAGS);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            if (errno == ECONNRESET) {
                set_err(c, TCPOTA_CLIENT_RESET_SAYS); /* as a read says it */
            } else {
                set_err(c, "send: %s", strerror(errno));
            }
            return -1;
        }
        tcpota_dev_output_done(c->cfg.dev, (size_t)k);
    }
    c->held = 0; /* all sent: the next output is held afresh */
    return 0;
}

/* A stop mid-session: what the transfer wrote is kept to its last whole
 * sector (tcpota_dev_keep), and the output held back (TCPOTA_CLIENT_HOLD_MS:
 * ACKs) goes out first, as far as the socket takes it at once. Each ACK
 * names bytes this device has made durable: without them the server
 * recorded a stopped download at an older offset, 0 for a stop within its
 * first ACKs (a trial: "at 0 of 20000000 bytes durable" for a device at
 * 524288). */
static int stopped(struct tcpota_client *c)
{
    /* (A HELLO not yet sent stays unsent: nothing began.) */
    if (tcpota_dev_keep(c->cfg.dev) > 0 || c->held) {
        (void)flush_some(c);
    }
    return TCPOTA_CLIENT_STOPPED;
}

/* Whether the queued output leaves now (see TCPOTA_CLIENT_HOLD_MS). Once
 * due, it stays due until all of it is sent. */
static int send_due(struct tcpota_client *c, uint32_t now)
{
    size_t n = out_pending(c);
    /* Bytes the transport holds (io_pending) are read before any poll(),
     * so input_flowing stays set while they last. */
    int input_at_hand = c->net_off < c->net_len || c->input_flowing;

    if (n == 0) {
        return 0;
    }
    if (c->held == HOLD_DUE) {
        return 1;
    }
    if (n > c->cfg.tx_high || !input_at_hand ||
        tcpota_dev_output_urgent(c->cfg.dev) ||
        (c->held && now - c->held_at >= TCPOTA_CLIENT_HOLD_MS)) {
        c->held = HOLD_DUE;
        return 1;
    }
    if (!c->held) {
        c->held = HOLD_WAITING;
        c->held_at = now;
    }
    return 0;
}

/* Sends everything queued, waiting up to flush_ms. Returns 0 or -1 (err
 * set when a send failed). */
static int flush_all(struct tcpota_client *c)
{
    uint32_t start = now_ms(c), spent;

    for (;;) {
        if (flush_some(c) < 0) {
            return -1;
        }
        if (out_pending(c) == 0) {
            return 0;
        }
        spent = now_ms(c) - start;
        if (spent >= c->cfg.flush_ms ||
            tcpota_client_wait(c, c->fd, POLLOUT, c->cfg.flush_ms - spent) <= 0) {
            return -1;
        }
    }
}

/* What an HTTP server's answer starts with. */
#define HTTP_ANSWER "HTTP/1."
#define TEXT_HEAD_MIN 4u /* printable bytes that make a head text */

/* 1 when the first TEXT_HEAD_MIN bytes (all of them there) are printable
 * ASCII: no tcpota frame starts so. */
static int text_head(const uint8_t *p, size_t n)
{
    return n >= TEXT_HEAD_MIN && tcpota_printable(p, TEXT_HEAD_MIN, 1, TEXT_HEAD_MIN);
}

/* Feeds received bytes to the session, one frame per call, while its
 * replies have room. */
static int feed(struct tcpota_client *c)
{
    while (c->net_off < c->net_len && out_pending(c) <= c->cfg.tx_high && session_live(c)) {
        struct tcpota_dev_event ev;
        int rc = tcpota_dev_input(c->cfg.dev, c->cfg.net_buf + c->net_off,
                                  c->net_len - c->net_off, &ev);

        if (rc < 0) {
            /* The session's own words (a decline's reason, the server's
             * ERROR text such as "authentication refused: check the
             * device secret") say more than the code. */
            const char *why;
            /* An HTTP listener (tcpota serve's API, its downloads, a web
             * server) answered HELLO: the address is wrong, not the frames. */
            c->http_answer = c->net_len - c->net_off >= sizeof(HTTP_ANSWER) - 1 &&
                             memcmp(c->cfg.net_buf + c->net_off, HTTP_ANSWER,
                                    sizeof(HTTP_ANSWER) - 1) == 0;
            /* Text as the connection's first bytes: another service's
             * banner (a frame starts with its type, a control byte). */
            c->text_answer = !c->http_answer && !c->fed &&
                             text_head(c->cfg.net_buf + c->net_off, c->net_len - c->net_off);
            why = tcpota_client_reason(c, rc);
            set_err(c, "session failed: %s%s%s%s", tcpota_client_origin(c), tcpota_strerror(rc),
                    why[0] ? ": " : "", why);
            if (c->cfg.on_input) {
                (void)c->cfg.on_input(c->cfg.ctx, rc, &ev);
            }
            (void)flush_all(c); /* best effort: the ERROR frame, if any */
            return TCPOTA_CLIENT_RETRY;
        }
        if (rc == 0) { /* cannot happen with input left; never spin on it */
            set_err(c, "session consumed no input");
            return TCPOTA_CLIENT_RETRY;
        }
        c->net_off += (size_t)rc;
        c->fed = 1;
        if (c->cfg.on_input && c->cfg.on_input(c->cfg.ctx, rc, &ev)) {
            return TCPOTA_CLIENT_ENDED;
        }
    }
    return CLIENT_CONTINUE;
}

/* The session reached an end state: send its last frames. */
static int finished(struct tcpota_client *c)
{
    struct tcpota_dev_transfer t;

    tcpota_dev_get_transfer(c->cfg.dev, &t);
    switch (t.state) {
    case TCPOTA_DEV_UP_TO_DATE:
        return TCPOTA_CLIENT_UP_TO_DATE;
    case TCPOTA_DEV_UPDATED:
        if (flush_all(c) < 0 && !c->cfg.err[0]) {
            set_err(c, "timed out");
        }
        return TCPOTA_CLIENT_UPDATED;
    case TCPOTA_DEV_DECLINED:
        (void)flush_all(c);
        return TCPOTA_CLIENT_DECLINED;
    default:
        (void)flush_some(c);
        set_err(c, "session ended: %s",
                tcpota_strerror(t.last_error ? t.last_error : TCPOTA_ERR_STATE));
        return TCPOTA_CLIENT_RETRY;
    }
}

/* Reads what the socket has. Returns 0 or -1 with err set. */
static int net_read(struct tcpota_client *c)
{
    ssize_t k = c->cfg.io_recv ? (ssize_t)c->cfg.io_recv(c->cfg.ctx, c->cfg.net_buf, c->cfg.net_cap)
                               : recv(c->fd, c->cfg.net_buf, c->cfg.net_cap, 0);

    c->input_flowing = k > 0;
    if (k > 0) {
        c->net_off = 0;
        c->net_len = (size_t)k;
        return 0;
    }
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    /* What the device sees is its TCP peer: the server, or a proxy or
     * balancer that cut the link (make demo's proxy was taken for the
     * server). */
    if (k == 0) {
        set_err(c, TCPOTA_CLIENT_CLOSED_SAYS);
    } else if (errno == ECONNRESET) {
        set_err(c, TCPOTA_CLIENT_RESET_SAYS);
    } else if (errno == EPROTO && c->cfg.io_recv) {
        /* The io hooks' word for a record their TLS refused. */
        set_err(c, "recv: a TLS record failed its check (bytes altered on the way, or a TLS"
                   " error)");
    } else {
        set_err(c, "recv: %s", strerror(errno));
    }
    return -1;
}

int tcpota_client_run(struct tcpota_client *c)
{
    struct tcpota_dev *d = c->cfg.dev;
    int rc;

    c->net_off = c->net_len = 0;
    c->input_flowing = c->held = c->http_answer = c->text_answer = c->fed = 0;
    /* Room for COMPLETE behind held ACKs (the session may have been set
     * up after the client: its tx buffer is known only now). */
    if (!c->cfg.tx_high) {
        c->cfg.tx_high = d->cfg.tx_cap / 2;
    }
    if (c->cfg.tx_high > d->cfg.tx_cap - TCPOTA_CLIENT_REPLY_ROOM) {
        c->cfg.tx_high = d->cfg.tx_cap - TCPOTA_CLIENT_REPLY_ROOM;
    }
    c->cfg.err[0] = 0;
    if ((rc = tcpota_dev_connect(d, now_ms(c))) < 0) {
        set_err(c, "cannot queue HELLO: %s", tcpota_strerror(rc));
        return TCPOTA_CLIENT_RETRY;
    }
    for (;;) {
        uint32_t wait_ms, now;
        short events;
        int out, revents;

        if (stop_requested(c)) {
            return stopped(c);
        }
        now = now_ms(c);
        if (tcpota_dev_tick(d, now) == TCPOTA_ERR_TIMEDOUT) {
            if (tcpota_dev_stalled(d)) {
                /* Also a link too slow for a frame within the timeout: a
                 * trial's 300 B/s link was called a stuck server. */
                set_err(c, "no progress for %lu ms: bytes come, but no decision of the server and no"
                        " whole frame of the image in that time (a link this slow needs a longer"
                        " timeout: tcpota device --timeout-ms, CONFIG_TCPOTA_TIMEOUT_MS; else a"
                        " server stuck or hostile)",
                        (unsigned long)d->cfg.timeout_ms * TCPOTA_DEV_STALL_TIMES);
            } else {
                set_err(c, "no data from the server for %lu ms", (unsigned long)d->cfg.timeout_ms);
            }
            return TCPOTA_CLIENT_RETRY;
        }
        if ((out = feed(c)) != CLIENT_CONTINUE) {
            return out;
        }
        if (!session_live(c)) {
            return finished(c); /* it sends the last frames */
        }
        if (send_due(c, now) && flush_some(c) < 0) {
            return TCPOTA_CLIENT_RETRY;
        }
        if (c->net_off < c->net_len && out_pending(c) <= c->cfg.tx_high) {
            continue; /* the output drained: feed the rest at once */
        }
        if (c->net_off == c->net_len && c->cfg.io_pending && c->cfg.io_pending(c->cfg.ctx)) {
            /* The transport holds decrypted bytes the socket will not
             * signal again. */
            if (net_read(c) < 0) {
                return TCPOTA_CLIENT_RETRY;
            }
            continue;
        }
        events = (short)((c->net_off == c->net_len ? POLLIN : 0) | (out_pending(c) ? POLLOUT : 0));
        /* Ticks are due after next_tick ms; 0 only while output waits for
         * room, where a short sleep avoids spinning. */
        wait_ms = tcpota_dev_next_tick(d);
        rc = poll_once(c, c->fd, events, wait_ms ? wait_ms : IDLE_WAIT_MS, &revents);
        if (rc == TCPOTA_ERR_CANCELED) {
            return stopped(c);
        }
        if (rc < 0) {
            set_err(c, "poll: %s", strerror(errno));
            return TCPOTA_CLIENT_RETRY;
        }
        if (c->net_off < c->net_len) {
            continue;
        }
        if (!(revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            c->input_flowing = 0; /* nothing more to read: what waits goes out */
        } else if (net_read(c) < 0) {
            return TCPOTA_CLIENT_RETRY;
        }
    }
}
