/* test_client.c - the shared socket client (ports/common/tcpota_client.c)
 * over a real device session (core, fake flash) reading a server's stream
 * prepared by the real server session; the client's transport hooks serve
 * it and count every send. One end of a socket pair with a byte in it
 * stands for a socket that always has more to read. When frames go out:
 * ACKs held while more input is at hand and sent together
 * (TCPOTA_CLIENT_HOLD_MS), sent at once when the input runs dry, when more
 * than tx_high bytes wait, or when the first has waited too long; ACCEPT
 * never held. How a connection ends when its last send fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fake_port.h"
#include "loopback.h"
#include "tcpota/crc32c.h"
#include "tcpota/device.h"
#include "tcpota/server.h"
#include "tcpota_client.h"

#define ACK_IV 16384u
#define IMG_SIZE (4u * ACK_IV)
#define CHUNK 4096u   /* DATA payload per frame */
#define READ_CAP 4096u /* bytes per io_recv */
#define MAX_SENDS 64
#define SPIN_LIMIT 1000000u

static uint8_t image[IMG_SIZE];
static struct tcpota_srv_image simg;
static struct fake_port *fp;
static struct tcpota_dev dev;
static uint8_t drx[CHUNK + 8], dtx[512], net[READ_CAP];
static char err[256];
static struct tcpota_client cl;
static int sv[2] = {-1, -1};

/* The server's stream, as io_recv serves it. */
static uint8_t wire[IMG_SIZE + 4096];
static size_t wire_len, wire_pos, dry_at, data_start;
static int dried;

/* What the client sent: each send's length, and all bytes. */
static uint8_t sent[4096];
static size_t sent_len, send_len[MAX_SENDS];
static int nsends;

/* The clock: clk_step ms later at every reading. */
static uint32_t clk, clk_step, clk_reads;

static uint32_t fake_now(void *ctx)
{
    (void)ctx;
    if (++clk_reads > SPIN_LIMIT) {
        fail_msg("the client spins: output held for good");
    }
    return clk += clk_step;
}

/* Sends cut short: each takes at most SHORT_SEND bytes, and the call after
 * one that was cut takes none (EAGAIN): the socket is full. */
#define SHORT_SEND 64u
static int short_sends, socket_full;
/* What the transport did, in order: r a read with bytes, s a send that
 * took bytes, a a send that took none. */
static char io_log[4096];
static size_t io_log_len;
/* A transport that holds what it has read (as TLS does): io_pending
 * reports the stream's rest, and the socket never signals input. */
static int pending_mode;

static void log_io(char e)
{
    if (io_log_len < sizeof(io_log) - 1) io_log[io_log_len++] = e;
}

static size_t io_pending(void *ctx)
{
    (void)ctx;
    return pending_mode ? wire_len - wire_pos : 0;
}

static int count_sent(uint8_t type, int k);

static long io_recv(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    if (wire_pos >= dry_at && !dried) {
        dried = 1; /* nothing to read for a moment */
        errno = EAGAIN;
        return -1;
    }
    if (wire_pos == wire_len) {
        errno = EAGAIN;
        return -1;
    }
    if (n > wire_len - wire_pos) n = wire_len - wire_pos;
    if (n > READ_CAP) n = READ_CAP;
    memcpy(buf, wire + wire_pos, n);
    wire_pos += n;
    log_io('r');
    return (long)n;
}

/* With plain recv() (test_socket_runs_dry): the stream from here on
 * reaches the socket once an ACK was sent. */
static size_t rest_from;
/* A send that carries COMPLETE fails as on a closed connection, or with
 * COMPLETE_STUCK takes nothing (EAGAIN) for ever: a server that stopped
 * reading. */
#define COMPLETE_STUCK 2
static int fail_complete;
static long io_send(void *ctx, const void *buf, size_t n)
{
    (void)ctx;
    if (short_sends) {
        if (socket_full) {
            socket_full = 0;
            log_io('a');
            errno = EAGAIN;
            return -1;
        }
        if (n > SHORT_SEND) {
            n = SHORT_SEND;
            socket_full = 1;
        }
    }
    log_io('s');
    assert_true(nsends < MAX_SENDS && sent_len + n <= sizeof(sent));
    memcpy(sent + sent_len, buf, n);
    sent_len += n;
    send_len[nsends++] = n;
    if (fail_complete && count_sent(TCPOTA_T_COMPLETE, nsends - 1) > 0) {
        sent_len -= n;
        nsends--;
        errno = fail_complete == COMPLETE_STUCK ? EAGAIN : EPIPE;
        return -1;
    }
    if (rest_from && count_sent(TCPOTA_T_ACK, -1) > 0) {
        assert_int_equal(write(sv[1], wire + rest_from, wire_len - rest_from),
                         (ssize_t)(wire_len - rest_from));
        rest_from = 0;
    }
    return (long)n;
}

static void dev_up(size_t tx_cap, uint32_t ack_interval)
{
    struct tcpota_dev_config c;

    memset(&c, 0, sizeof(c));
    c.port = &fp->port;
    c.device_id = "dev-1";
    c.model = "esp32";
    c.version = "1.0.0";
    c.rx_buf = drx;
    c.rx_cap = sizeof(drx);
    c.tx_buf = dtx;
    c.tx_cap = tx_cap;
    c.ack_interval = ack_interval;
    c.keepalive_ms = 0xffffffu;
    c.timeout_ms = 0xffffffu;
    assert_int_equal(tcpota_dev_init(&dev, &c), 0);
}

/* The server session's answer to this device's HELLO, OFFER and every
 * DATA frame, into wire[]. */
static void make_stream(void)
{
    static uint8_t srx[1024], stx[TCPOTA_SRV_TX_MIN];
    struct tcpota_srv srv;
    struct tcpota_srv_config c;
    struct tcpota_srv_event ev;
    const uint8_t *p;
    size_t n, off = 0;
    uint32_t at;
    uint16_t len;

    memset(&c, 0, sizeof(c));
    c.image = &simg;
    c.rx_buf = srx;
    c.rx_cap = sizeof(srx);
    c.tx_buf = stx;
    c.tx_cap = sizeof(stx);
    c.chunk = CHUNK;
    assert_int_equal(tcpota_srv_init(&srv, &c), 0);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    n = tcpota_dev_output(&dev, &p);
    while (off < n) {
        int used = tcpota_srv_input(&srv, p + off, n - off, &ev);
        assert_true(used > 0);
        off += (size_t)used;
    }
    tcpota_dev_disconnect(&dev);
    wire_len = tcpota_srv_output(&srv, &p);
    memcpy(wire, p, wire_len);
    tcpota_srv_output_done(&srv, wire_len);
    data_start = wire_len;
    while (tcpota_srv_data_next(&srv, &at, &len)) {
        uint8_t *f = wire + wire_len;
        assert_true(wire_len + TCPOTA_DATA_OVERHEAD + len <= sizeof(wire));
        assert_int_equal(tcpota_data_head(f, at, len), 8);
        memcpy(f + 8, image + at, len);
        tcpota_put_u32(f + 8 + len, tcpota_crc32c(f, 8u + len));
        wire_len += TCPOTA_DATA_OVERHEAD + len;
    }
}

static int setup(void **state)
{
    struct tcpota_client_config cc;

    (void)state;
    for (uint32_t i = 0; i < IMG_SIZE; i++) image[i] = (uint8_t)((i * 2654435761u) >> 13);
    memset(&simg, 0, sizeof(simg));
    crypto_hash_sha256(simg.id, image, IMG_SIZE);
    simg.size = IMG_SIZE;
    simg.version = "2.0.0";
    simg.version_len = 5;
    fp = calloc(1, sizeof(*fp));
    assert_non_null(fp);
    fake_port_init(fp);
    dev_up(sizeof(dtx), ACK_IV);
    make_stream();
    wire_pos = 0;
    rest_from = 0;
    fail_complete = 0;
    short_sends = socket_full = 0;
    io_log_len = 0;
    memset(io_log, 0, sizeof(io_log));
    pending_mode = 0;
    dry_at = (size_t)-1;
    dried = 0;
    sent_len = 0;
    nsends = 0;
    clk = clk_step = clk_reads = 0;

    /* A socket that always has more to read: a byte nobody takes. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    memset(&cc, 0, sizeof(cc));
    cc.dev = &dev;
    cc.net_buf = net;
    cc.net_cap = sizeof(net);
    cc.wake_fd = -1;
    cc.err = err;
    cc.err_cap = sizeof(err);
    cc.now_ms = fake_now;
    cc.io_recv = io_recv;
    cc.io_send = io_send;
    cc.io_pending = io_pending;
    assert_int_equal(tcpota_client_init(&cl, &cc), 0);
    cl.fd = sv[0];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(sv[0]);
    close(sv[1]);
    fake_port_free(fp);
    free(fp);
    return 0;
}

/* Frames of each type in what the client sent, and in send number k. */
static int count_sent(uint8_t type, int k)
{
    static uint8_t buf[1024];
    struct tcpota_decoder d;
    struct tcpota_frame f;
    size_t from = 0, to = sent_len, off;
    int n = 0;

    for (int i = 0; k >= 0 && i < k; i++) from += send_len[i];
    if (k >= 0) to = from + send_len[k];
    assert_int_equal(tcpota_decoder_init(&d, buf, sizeof(buf)), 0);
    for (off = from; off < to;) {
        int used = tcpota_decoder_feed(&d, sent + off, to - off, &f);
        assert_true(used > 0);
        off += (size_t)used;
        if (f.type == type) n++;
    }
    return n;
}

/* The session ends verified, the image byte-exact in the slot. */
static void run_to_updated(void)
{
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_UPDATED);
    assert_int_equal(fp->size, IMG_SIZE);
    assert_memory_equal(fp->slot, image, IMG_SIZE);
    assert_int_equal(count_sent(TCPOTA_T_HELLO, short_sends ? -1 : 0), 1);
    assert_int_equal(count_sent(TCPOTA_T_COMPLETE, -1), 1);
}

/* With input always at hand, the ACKs wait and leave with COMPLETE where
 * each was a send of its own (and, inside TLS, a record and a TCP
 * segment); ACCEPT, which the server acts on, leaves at once, alone. */
static void test_acks_leave_together(void **state)
{
    (void)state;
    run_to_updated();
    assert_int_equal(count_sent(TCPOTA_T_ACK, -1), 3);
    assert_int_equal(nsends, 3);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 1), 0);
    assert_int_equal(count_sent(TCPOTA_T_ACCEPT, 1), 1);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 2), 3);
}

/* The input runs dry after the first ACK interval: the ACK queued by then
 * goes out at once, alone. */
static void test_dry_input_sends(void **state)
{
    (void)state;
    dry_at = ACK_IV + 2 * (CHUNK + TCPOTA_DATA_OVERHEAD);
    run_to_updated();
    assert_int_equal(nsends, 4);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 2), 1);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 3), 2);
}

/* Over the socket itself (plain recv()): a poll() that finds nothing more
 * to read sends the ACK held since the last read; the server's next bytes
 * come only after it. */
static void test_socket_runs_dry(void **state)
{
    char x;

    (void)state;
    assert_int_equal(read(sv[0], &x, 1), 1); /* no byte kept waiting */
    cl.cfg.io_recv = NULL;
    rest_from = ACK_IV + 2 * (CHUNK + TCPOTA_DATA_OVERHEAD);
    assert_int_equal(write(sv[1], wire, rest_from), (ssize_t)rest_from);
    run_to_updated();
    assert_int_equal(nsends, 4);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 2), 1);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 3), 2);
}

/* Sends the socket cuts short: output that is due stays due, so what a
 * short send left goes out at the next turn (after at most the one read
 * that turn's poll() allowed), not held again; no byte is lost or sent
 * twice. */
static void test_short_sends_finish_first(void **state)
{
    (void)state;
    dev_up(TCPOTA_DEV_TX_MIN, 4096);
    cl.cfg.tx_high = TCPOTA_DEV_TX_MIN / 2;
    short_sends = 1;
    run_to_updated();
    assert_int_equal(count_sent(TCPOTA_T_ACK, -1), IMG_SIZE / 4096 - 1);
    assert_int_equal(count_sent(TCPOTA_T_ACCEPT, -1), 1);
    assert_non_null(strchr(io_log, 'a'));
    assert_null(strstr(io_log, "arr"));
}

/* A transport that holds decrypted bytes (io_pending, as TLS does) while
 * the socket signals nothing: its bytes are input at hand, and the ACKs
 * leave together. */
static void test_transport_bytes_are_input_at_hand(void **state)
{
    char x;

    (void)state;
    assert_int_equal(read(sv[0], &x, 1), 1);
    pending_mode = 1;
    run_to_updated();
    assert_int_equal(nsends, 3);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 2), 3);
}

/* tx_high set to the whole tx buffer: lowered to leave room for COMPLETE
 * behind held ACKs, so the connection ends UPDATED (with no room, COMPLETE
 * fails to queue and the verified image would end RETRY). */
static void test_tx_high_leaves_reply_room(void **state)
{
    (void)state;
    dev_up(TCPOTA_DEV_TX_MIN, 4096);
    cl.cfg.tx_high = TCPOTA_DEV_TX_MIN;
    run_to_updated();
    assert_int_equal(cl.cfg.tx_high, TCPOTA_DEV_TX_MIN - TCPOTA_CLIENT_REPLY_ROOM);
    assert_int_equal(count_sent(TCPOTA_T_ACK, -1), IMG_SIZE / 4096 - 1);
}

/* The connection breaks as COMPLETE is sent (a proxy that closed after
 * the last byte): the image is verified and set to boot all the same, so
 * the connection ends UPDATED, with the send's error (the next HELLO's
 * report tells the server), not RETRY and a second download. */
static void test_updated_when_complete_cannot_leave(void **state)
{
    (void)state;
    fail_complete = 1;
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_UPDATED);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_memory_equal(fp->slot, image, IMG_SIZE);
    assert_string_equal(err, "send: Broken pipe");
    assert_int_equal(count_sent(TCPOTA_T_COMPLETE, -1), 0);
}

/* Puts `count` PING frames into the server's stream at offset `at`. */
static void insert_pings(size_t at, int count)
{
    struct tcpota_msg m;
    uint8_t ping[16];
    int n;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 7;
    n = tcpota_msg_encode(&m, ping, sizeof(ping));
    assert_true(n > 0 && wire_len + (size_t)n * (size_t)count <= sizeof(wire));
    memmove(wire + at + (size_t)n * (size_t)count, wire + at, wire_len - at);
    for (int i = 0; i < count; i++) {
        memcpy(wire + at + (size_t)n * (size_t)i, ping, (size_t)n);
    }
    wire_len += (size_t)n * (size_t)count;
}

/* A server's PING between DATA frames while an ACK is held: the PONG
 * leaves at once, the held ACK with it, the rest later together. */
static void test_pong_is_not_held(void **state)
{
    /* After the frame that completes the first ack interval. */
    size_t frame = tcpota_get_u16(wire + data_start + 2) + (size_t)TCPOTA_FRAME_OVERHEAD;
    size_t at = data_start + (ACK_IV / (frame - TCPOTA_DATA_OVERHEAD) + 1) * frame;

    (void)state;
    insert_pings(at, 1);
    run_to_updated();
    assert_int_equal(nsends, 4);
    assert_int_equal(count_sent(TCPOTA_T_PONG, 2), 1);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 2), 1);
    assert_int_equal(count_sent(TCPOTA_T_ACK, 3), 2);
}

/* A clock that moves TCPOTA_CLIENT_HOLD_MS at every reading: no ACK waits
 * longer than that, so each leaves on its own. */
static void test_held_output_leaves_in_time(void **state)
{
    (void)state;
    clk_step = TCPOTA_CLIENT_HOLD_MS;
    run_to_updated();
    assert_int_equal(count_sent(TCPOTA_T_ACK, -1), 3);
    assert_int_equal(nsends, 6);
    for (int k = 2; k <= 4; k++) assert_int_equal(count_sent(TCPOTA_T_ACK, k), 1);
}

/* The smallest tx buffer and an ACK every 4 KiB: more ACKs than half the
 * buffer holds. They leave as that mark is passed, and none is lost. */
static void test_tx_high_sends(void **state)
{
    (void)state;
    dev_up(TCPOTA_DEV_TX_MIN, 4096);
    cl.cfg.tx_high = TCPOTA_DEV_TX_MIN / 2;
    run_to_updated();
    assert_int_equal(count_sent(TCPOTA_T_ACK, -1), IMG_SIZE / 4096 - 1);
    assert_true(nsends >= 4);
    for (int k = 2; k < nsends - 1; k++) assert_true(send_len[k] > TCPOTA_DEV_TX_MIN / 2);
}

static int always_stop(void *ctx)
{
    (void)ctx;
    return 1;
}

static uint64_t real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A caller without a wake-up fd (the ESP-IDF task) bounds each poll() with
 * poll_max_ms so that a stop request is seen that late at most: a wait of
 * WAIT_MS with a stop already requested ends within STOP_SEEN_MS, canceled.
 * Fails if the wait runs its course (the stop is not checked after each
 * poll) or if one poll() takes the whole wait (poll_max_ms ignored). */
static void test_stop_seen_within_poll_max(void **state)
{
    enum { WAIT_MS = 3000, POLL_MAX_MS = 10, STOP_SEEN_MS = 1000 };
    uint64_t t0 = real_ms();

    (void)state;
    cl.cfg.stop_requested = always_stop;
    cl.cfg.poll_max_ms = POLL_MAX_MS;
    clk_step = POLL_MAX_MS; /* the fake clock moves as the polls take time */
    assert_int_equal(tcpota_client_wait(&cl, -1, 0, WAIT_MS), TCPOTA_ERR_CANCELED);
    assert_true(real_ms() - t0 < STOP_SEEN_MS);
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* A signal that is no stop request (a handler installed without
 * SA_RESTART) interrupts poll() with EINTR: the wait goes on to its end
 * and times out as usual. Fails if EINTR is taken for a poll() failure
 * (POLLERR, and a connection given up as "poll: Interrupted"). */
static void test_signal_does_not_end_a_wait(void **state)
{
    enum { WAIT_MS = 200, SIGNAL_AFTER_US = 20000 };
    struct sigaction sa, old;
    struct itimerval it;

    (void)state;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm; /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    memset(&it, 0, sizeof(it));
    it.it_value.tv_usec = SIGNAL_AFTER_US;
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
    clk_step = WAIT_MS / 4; /* the wait polls again after the signal */
    assert_int_equal(tcpota_client_wait(&cl, -1, 0, WAIT_MS), 0);
    assert_int_equal(sigaction(SIGALRM, &old, NULL), 0);
}

/* A wait of 0 ms (a caller's; the host device's backoffs are 1 ms at least) polls once and returns,
 * even on a clock that has not moved. Fails if the wait ends only after
 * the clock passed its end, spinning until then. */
static void test_zero_wait_returns_at_once(void **state)
{
    (void)state;
    assert_int_equal(tcpota_client_wait(&cl, -1, 0, 0), 0);
    assert_true(clk_reads < 4);
}

/* A connect that gets no answer within connect_ms fails as timed out: a
 * listener whose accept queue is full drops the SYNs of further connects.
 * Fails if the socket of a connect still under way is taken for a
 * connection. */
static void test_connect_times_out(void **state)
{
    enum { CONNECT_MS = 100, MAX_TRIES = 32 };
    uint16_t port = 0; /* loopback_listen sets it; the optimiser cannot see that */
    int lfd = loopback_listen(&port), rc = 0;

    (void)state;
    assert_true(lfd >= 0);
    clk_step = CONNECT_MS / 4; /* the fake clock moves as each poll() waits */
    cl.cfg.connect_ms = CONNECT_MS;
    /* Connections nobody accepts fill the queue; then one times out. */
    for (int i = 0; i < MAX_TRIES && rc == 0; i++) {
        rc = tcpota_client_connect(&cl, "127.0.0.1", port, "the full listener");
        tcpota_client_close(&cl, 0);
    }
    assert_int_equal(rc, TCPOTA_ERR_IO);
    assert_non_null(strstr(err, "connect to the full listener: "));
    close(lfd);
}

/* A stop requested before connecting opens no connection at all. Fails if
 * the address is connected to first (the server sees a connection). */
static void test_stop_before_connect_opens_nothing(void **state)
{
    enum { LISTEN_MS = 200 };
    uint16_t port = 0;
    int lfd = loopback_listen(&port);
    struct pollfd p;

    (void)state;
    assert_true(lfd >= 0);
    cl.cfg.stop_requested = always_stop;
    assert_int_equal(tcpota_client_connect(&cl, "127.0.0.1", port, "server"),
                     TCPOTA_ERR_CANCELED);
    p.fd = lfd;
    p.events = POLLIN;
    assert_int_equal(poll(&p, 1, LISTEN_MS), 0);
    close(lfd);
}

/* The linger after the last frames ends when the server closes its side,
 * not when linger_ms runs out: a peer's EOF stays readable, so reading on
 * after it would spin for the whole linger. */
static void test_linger_ends_at_eof(void **state)
{
    enum { LINGER_MS = 1000, READS_MAX = 8 };

    (void)state;
    clk_step = 1;
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0); /* after the byte in it */
    tcpota_client_close(&cl, LINGER_MS);
    sv[0] = -1; /* closed by the client */
    assert_int_equal(cl.fd, -1);
    assert_true(clk_reads < READS_MAX);
}

/* A server that stops reading as COMPLETE is sent (the socket polls
 * writable, each send takes nothing): the last flush gives up after
 * flush_ms and says so, the image set to boot all the same. Fails if the
 * flush waits on past flush_ms, here for ever. */
static void test_last_flush_gives_up_in_time(void **state)
{
    (void)state;
    fail_complete = COMPLETE_STUCK;
    clk_step = 1;
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_UPDATED);
    assert_memory_equal(fp->slot, image, IMG_SIZE);
    assert_string_equal(err, "timed out");
}

static long mute_recv(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    (void)buf;
    (void)n;
    errno = EAGAIN;
    return -1;
}

static size_t none_pending(void *ctx)
{
    (void)ctx;
    return 0;
}

/* A server that takes the connection and says nothing (an API port, a
 * stalled peer): the run ends once the session's timeout has passed since
 * HELLO, and says so. Fails if the device's own timeout is not watched
 * (the run would wait on the server for ever). */
static void test_mute_server_times_out(void **state)
{
    enum { TIMEOUT_MS = 200 };

    (void)state;
    dev.cfg.timeout_ms = TIMEOUT_MS;
    cl.cfg.io_recv = mute_recv;
    cl.cfg.io_pending = none_pending;
    clk_step = 10;
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_RETRY);
    assert_string_equal(err, "no data from the server for 200 ms");
    assert_true(clk >= TIMEOUT_MS);
}

/* Text where a frame should start, but after the server's first frame
 * (WELCOME): a stream gone wrong, not another service's banner, so no
 * text_answer (which the runner takes for a wrong address, not retried).
 * Fails if text is judged anywhere but at the connection's first bytes. */
static void test_text_after_welcome_is_no_banner(void **state)
{
    size_t at = TCPOTA_FRAME_OVERHEAD + tcpota_get_u16(wire + 2); /* past WELCOME */

    (void)state;
    memcpy(wire + at, "SSH-2.0-x", 9);
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_RETRY);
    assert_int_equal(cl.text_answer, 0);
    assert_int_equal(cl.http_answer, 0);
    /* At the first bytes: a banner. */
    teardown(NULL);
    setup(NULL);
    memcpy(wire, "SSH-2.0-x", 9);
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_RETRY);
    assert_int_equal(cl.text_answer, 1);
}

static int end_at_accept(void *ctx, int rc, const struct tcpota_dev_event *ev)
{
    (void)ctx;
    return rc >= 0 && ev->type == TCPOTA_DEV_EV_ACCEPTED;
}

/* The caller ends the connection from on_input (the host device once the
 * server acknowledged its rollback report): the run returns ENDED at that
 * event, and the offer it was about is not downloaded. */
static void test_on_input_ends_the_connection(void **state)
{
    (void)state;
    cl.cfg.on_input = end_at_accept;
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_ENDED);
    assert_int_equal(dev.state, TCPOTA_DEV_RECEIVING);
}

/* A stop requested before the connection runs sends nothing, not even
 * the HELLO. */
static void test_stop_before_run_sends_nothing(void **state)
{
    (void)state;
    cl.cfg.stop_requested = always_stop;
    assert_int_equal(tcpota_client_run(&cl), TCPOTA_CLIENT_STOPPED);
    assert_int_equal(nsends, 0);
}

/* A server that sends a burst of PINGs in one read, to a socket that takes
 * a little at a time: the PONGs pile up past tx_high, so the client stops
 * feeding, sends, and feeds the rest of that read later, whether the
 * socket (plain) or the transport (TLS) holds it. Every PING is answered,
 * in order, and the download goes on. Fails if the client feeds on past
 * tx_high (the session's tx buffer overflows) or reads over input it has
 * not fed yet. */
static void ping_burst(int transport_holds_input)
{
    enum { PINGS = 60 };
    char x;

    if (transport_holds_input) {
        assert_int_equal(read(sv[0], &x, 1), 1);
        pending_mode = 1;
    }
    insert_pings(data_start, PINGS);
    short_sends = 1;
    run_to_updated();
    assert_int_equal(count_sent(TCPOTA_T_PONG, -1), PINGS);
}

static void test_ping_burst_over_a_slow_socket(void **state)
{
    (void)state;
    ping_burst(0);
}

static void test_ping_burst_held_by_the_transport(void **state)
{
    (void)state;
    ping_burst(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acks_leave_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_input_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_runs_dry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_updated_when_complete_cannot_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_sends_finish_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_bytes_are_input_at_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pong_is_not_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_high_leaves_reply_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_output_leaves_in_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_high_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_seen_within_poll_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_does_not_end_a_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_wait_returns_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_before_connect_opens_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linger_ends_at_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_flush_gives_up_in_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_after_welcome_is_no_banner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mute_server_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_input_ends_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_before_run_sends_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_burst_over_a_slow_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_burst_held_by_the_transport, setup, teardown),
    };
    if (sodium_init() < 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
