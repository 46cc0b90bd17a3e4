/* test_server.c - the server session: offers, resume points, re-seeks,
 * acks, and what it does with a peer that breaks the rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tcpota/crc32c.h"
#include "tcpota/server.h"

static uint8_t rx[TCPOTA_MIN_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t tx[TCPOTA_SRV_TX_MIN];
static struct tcpota_srv_image img;
static struct tcpota_srv s;

/* An ACK frame as devices send it: its offset, no TLV. */
#define ACK_LEN ((int)(TCPOTA_FRAME_OVERHEAD + TCPOTA_ACK_FIXED))

static int setup(void **state)
{
    struct tcpota_srv_config cfg;
    (void)state;
    memset(&img, 0, sizeof(img));
    for (int i = 0; i < 32; i++) img.id[i] = (uint8_t)i;
    img.size = 100000;
    img.version = "2.0.0";
    img.version_len = 5;
    memset(&cfg, 0, sizeof(cfg));
    cfg.image = &img;
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    cfg.chunk = 4096;
    cfg.idle_timeout_s = 60;
    cfg.prestream = 65536;
    assert_int_equal(tcpota_srv_init(&s, &cfg), 0);
    return 0;
}

/* Encodes m and feeds it to the session; returns the last input result. */
static int feed(const struct tcpota_msg *m, struct tcpota_srv_event *ev)
{
    uint8_t b[600];
    int n = tcpota_msg_encode(m, b, sizeof(b)), off = 0, rc = 0;
    assert_true(n > 0);
    while (off < n) {
        rc = tcpota_srv_input(&s, b + off, (size_t)(n - off), ev);
        if (rc < 0) return rc;
        off += rc;
    }
    return rc;
}

static void hello(struct tcpota_msg *m, const char *version)
{
    memset(m, 0, sizeof(*m));
    m->type = TCPOTA_T_HELLO;
    m->u.hello.proto_min = m->u.hello.proto_max = 1;
    m->u.hello.device_id.ptr = (const uint8_t *)"d1"; m->u.hello.device_id.len = 2;
    m->u.hello.model.ptr = (const uint8_t *)"esp32"; m->u.hello.model.len = 5;
    m->u.hello.version.ptr = (const uint8_t *)version; m->u.hello.version.len = (uint16_t)strlen(version);
    m->u.hello.max_payload = 4096 + 4;
}

/* Decodes the control frames queued by the session. */
static int drain(struct tcpota_msg *out, int max)
{
    static uint8_t dbuf[2048];
    const uint8_t *p;
    size_t n = tcpota_srv_output(&s, &p), off = 0;
    struct tcpota_decoder d;
    int count = 0;

    assert_int_equal(tcpota_decoder_init(&d, dbuf, sizeof(dbuf)), 0);
    while (off < n && count < max) {
        struct tcpota_frame f;
        int used = tcpota_decoder_feed(&d, p + off, n - off, &f);
        assert_true(used > 0);
        off += (size_t)used;
        assert_int_not_equal(f.type, 0);
        assert_int_equal(tcpota_msg_decode(&f, &out[count]), 0);
        if (f.type == TCPOTA_T_OFFER) { /* keep what the pointers need */
            static uint8_t keep[2048];
            memcpy(keep, dbuf, sizeof(keep));
            out[count].u.offer.image_id = keep + 4;
        }
        count++;
    }
    tcpota_srv_output_done(&s, n);
    return count;
}

static void test_fresh_device_gets_offer_and_stream(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint32_t off, total = 0, expect = 0;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_HELLO);
    assert_int_equal(ev.offered, 1);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[0].type, TCPOTA_T_WELCOME);
    assert_int_equal(out[0].u.welcome.idle_timeout_s, 60);
    assert_int_equal(out[1].type, TCPOTA_T_OFFER);
    assert_int_equal(out[1].u.offer.start, 0);
    assert_int_equal(out[1].u.offer.size, 100000);
    assert_int_equal(out[1].u.offer.chunk, 4096);
    /* Streams before ACCEPT, but only up to the prestream limit. */
    while (tcpota_srv_data_next(&s, &off, &len)) {
        assert_int_equal(off, expect);
        assert_true(len <= 4096);
        expect += len;
        total += len;
    }
    assert_int_equal(total, 65536);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACCEPT);
    while (tcpota_srv_data_next(&s, &off, &len)) {
        assert_int_equal(off, expect);
        expect += len;
    }
    assert_int_equal(expect, img.size);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_SENT_ALL);
    /* Acks: forward, duplicate; COMPLETE ends it. */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = 16384;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.duplicate, 0);
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.duplicate, 1);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_COMPLETE;
    m.u.complete.image_id = img.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_COMPLETE);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
}

static void test_default_streams_whole_image_before_accept(void **state)
{
    struct tcpota_srv_config cfg;
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint32_t off, total = 0;
    uint16_t len;
    (void)state;

    memset(&cfg, 0, sizeof(cfg));
    cfg.image = &img;
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    assert_int_equal(tcpota_srv_init(&s, &cfg), 0);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    while (tcpota_srv_data_next(&s, &off, &len)) {
        total += len;
    }
    assert_int_equal(total, img.size); /* no round trip waits for ACCEPT */
}

/* Streams the scenario below with data_next (frames == 0) or data_take
 * (that many frames per call, cycling); writes each frame as [off, len)
 * pairs to f and returns their count. A range from data_take is split at
 * the multiples of the chunk, which is where its frames must end. */
static int stream_frames(uint32_t frames, uint32_t (*f)[2], int max)
{
    static const uint32_t many[] = {1, 3, 7, 1000};
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint32_t off, len;
    uint16_t len16;
    int n = 0, k = 0, phase;

    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    for (phase = 0; phase < 2; phase++) {
        for (;;) {
            if (frames == 0) {
                if (!tcpota_srv_data_next(&s, &off, &len16)) break;
                len = len16;
            } else {
                uint32_t want = many[k++ % 4];
                uint32_t end;
                if (!tcpota_srv_data_take(&s, want, &off, &len)) break;
                end = off + len;
                while (off < end) { /* its frames */
                    uint32_t fl = 4096 - off % 4096;
                    if (fl > end - off) fl = end - off;
                    assert_true(n < max);
                    f[n][0] = off; f[n][1] = fl; n++;
                    off += fl;
                    assert_true(want > 0); /* no more frames than asked for */
                    want--;
                }
                continue;
            }
            assert_true(n < max);
            f[n][0] = off; f[n][1] = len; n++;
        }
        if (phase == 0) {
            /* Past the prestream limit; the device accepts elsewhere, inside a chunk. */
            assert_int_equal(f[n - 1][0] + f[n - 1][1], 65536);
            memset(&m, 0, sizeof(m));
            m.type = TCPOTA_T_ACCEPT;
            m.u.accept.image_id = img.id;
            m.u.accept.offset = 6000;
            assert_true(feed(&m, &ev) > 0);
        }
    }
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_SENT_ALL);
    assert_int_equal(tcpota_srv_data_take(&s, 5, &off, &len), 0);
    return n;
}

static void test_data_take_gives_the_frames_of_data_next(void **state)
{
    static uint32_t one[64][2], runs[64][2];
    uint32_t off, len;
    int n1, n2;
    (void)state;

    n1 = stream_frames(0, one, 64);
    n2 = stream_frames(1, runs, 64);
    assert_int_equal(n1, 16 + 24); /* 16 to the limit; from 6000: a partial frame, 22 whole, the last */
    assert_int_equal(n2, n1);
    assert_memory_equal(one, runs, sizeof(one[0]) * (size_t)n1);
    assert_int_equal(one[16][0], 6000);
    assert_int_equal(one[16][1], 8192 - 6000);
    /* Zero frames, or nothing offered: nothing due. */
    setup(NULL);
    assert_int_equal(tcpota_srv_data_take(&s, 1, &off, &len), 0);
}

static void test_resume_point_for_this_image(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint32_t off;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.resume_id = img.id;
    m.u.hello.resume_size = img.size;
    m.u.hello.resume_offset = 49152;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.start, 49152);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].u.offer.start, 49152);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 1);
    assert_int_equal(off, 49152);
}

static void test_resume_point_for_other_image_or_bad_offset_restarts(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t other[32] = {9};
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.resume_id = other;
    m.u.hello.resume_size = img.size;
    m.u.hello.resume_offset = 49152;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.start, 0);

    setup(NULL);
    hello(&m, "1.0.0");
    m.u.hello.resume_id = img.id;
    m.u.hello.resume_size = img.size;
    m.u.hello.resume_offset = 1000; /* not a sector boundary */
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.start, 0);

    setup(NULL);
    hello(&m, "1.0.0");
    m.u.hello.resume_id = img.id;
    m.u.hello.resume_size = img.size + 4096; /* same id, other size */
    m.u.hello.resume_offset = 4096;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.start, 0);
}

static void test_up_to_date_by_version_and_by_id(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint8_t other[32] = {1};
    (void)state;

    hello(&m, "2.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_NO_UPDATE);
    assert_int_equal(out[1].u.no_update.why, TCPOTA_WHY_RUNS); /* the session's own reason */

    /* Same version string but another running image: the id wins. */
    setup(NULL);
    hello(&m, "2.0.0");
    m.u.hello.running_id = other;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 1);

    setup(NULL);
    hello(&m, "0.1");
    m.u.hello.running_id = img.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 0);
}

static void test_accept_elsewhere_reseeks(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint32_t off;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.resume_id = img.id;
    m.u.hello.resume_size = img.size;
    m.u.hello.resume_offset = 8192;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 1);
    assert_int_equal(off, 8192);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    m.u.accept.offset = 0; /* the device lost its record */
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.start, 0);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 1);
    assert_int_equal(off, 0);
}

static void expect_error_frame(int code)
{
    struct tcpota_msg out[4];
    int n = drain(out, 4);
    assert_true(n >= 1);
    assert_int_equal(out[n - 1].type, TCPOTA_T_ERROR);
    assert_int_equal(out[n - 1].u.error.code, -code);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
}

/* A device's HELLO offered the image (its replies drained) and its ACCEPT
 * from 0 taken. */
static void accepted(void)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;

    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    assert_true(feed(&m, &ev) > 0);
}

static void test_violations_end_with_error_frame(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t other[32] = {5};
    (void)state;

    /* ACK before HELLO */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    expect_error_frame(TCPOTA_ERR_STATE);

    /* ACCEPT for another image */
    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = other;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    expect_error_frame(TCPOTA_ERR_STATE);

    /* ACCEPT past the end */
    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    m.u.accept.offset = img.size + 1;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_RANGE);
    expect_error_frame(TCPOTA_ERR_RANGE);

    /* ACK beyond what was sent (going backwards: test_ack_run_stops_before_a_bad_ack) */
    setup(NULL);
    accepted();
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = 4096; /* nothing sent yet */
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_RANGE);
    expect_error_frame(TCPOTA_ERR_RANGE);

    /* second HELLO */
    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);

    /* protocol version out of range */
    setup(NULL);
    hello(&m, "1.0.0");
    m.u.hello.proto_min = m.u.hello.proto_max = 2;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_VERSION);
    expect_error_frame(TCPOTA_ERR_VERSION);
    /* ... and below it: a device that speaks only a version before 1 */
    setup(NULL);
    hello(&m, "1.0.0");
    m.u.hello.proto_min = m.u.hello.proto_max = 0;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_VERSION);
    expect_error_frame(TCPOTA_ERR_VERSION);

    /* a server-only message from the device */
    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_PROTO);
}

/* A session of an image of `size` bytes that has sent it all: ACKs may
 * come for any offset up to `size`. */
static void sent_all(uint32_t size)
{
    uint32_t off, len;

    img.size = size;
    accepted();
    while (tcpota_srv_data_take(&s, UINT32_MAX, &off, &len)) {
    }
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_SENT_ALL);
}

/* Each message in a state where it has no place ends the session with
 * ERROR(STATE) (each of these passed every test with its check removed):
 * an ACK after the OFFER but before ACCEPT, a second ACCEPT, COMPLETE
 * before the last byte was sent, COMPLETE naming another image. */
/* Feeds ACCEPT or COMPLETE (type) naming image id: refused, ERROR(STATE)
 * whose message is why. */
static void refused_with_id(uint8_t type, const uint8_t *id, const char *why)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    int n;

    memset(&m, 0, sizeof(m));
    m.type = type;
    if (type == TCPOTA_T_ACCEPT) {
        m.u.accept.image_id = id;
    } else {
        m.u.complete.image_id = id;
    }
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    n = drain(out, 4);
    assert_true(n >= 1);
    assert_int_equal(out[n - 1].type, TCPOTA_T_ERROR);
    assert_int_equal(out[n - 1].u.error.code, -TCPOTA_ERR_STATE);
    assert_int_equal(out[n - 1].u.error.message.len, strlen(why));
    assert_memory_equal(out[n - 1].u.error.message.ptr, why, strlen(why));
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
}

static void test_messages_out_of_state(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t other[32] = {7};
    (void)state;

    /* PING before HELLO: HELLO comes first, whatever the message (a PING
     * has no check of its own that would refuse it) */
    setup(NULL);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 1;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    expect_error_frame(TCPOTA_ERR_STATE);

    /* ACK before ACCEPT (the stream has begun: the offset is in range) */
    setup(NULL);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_OFFERED);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = 0;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    expect_error_frame(TCPOTA_ERR_STATE);

    /* a second ACCEPT */
    setup(NULL);
    accepted();
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_STREAMING);
    refused_with_id(TCPOTA_T_ACCEPT, img.id, "ACCEPT without matching OFFER");

    /* COMPLETE while bytes remain to be sent */
    setup(NULL);
    accepted();
    refused_with_id(TCPOTA_T_COMPLETE, img.id, "COMPLETE before all bytes were sent");

    /* COMPLETE of another image once all was sent; then of this one */
    setup(NULL);
    sent_all(img.size);
    refused_with_id(TCPOTA_T_COMPLETE, other, "COMPLETE names another image than the one sent");
    setup(NULL);
    sent_all(img.size);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_COMPLETE;
    m.u.complete.image_id = img.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_COMPLETE);
}

/* Appends an ACK frame for `offset` at b + *n; returns where it starts. */
static uint8_t *put_ack(uint8_t *b, size_t *n, uint32_t offset)
{
    struct tcpota_msg m;
    uint8_t *at = b + *n;
    int k;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = offset;
    k = tcpota_msg_encode(&m, at, 64);
    assert_int_equal(k, ACK_LEN);
    *n += (size_t)k;
    return at;
}

/* Appends `count` ACK frames at b + *n: 4096, 8192, ... */
static void put_acks(uint8_t *b, size_t *n, unsigned count)
{
    for (unsigned i = 1; i <= count; i++) {
        put_ack(b, n, i * 4096u);
    }
}

/* Sets a frame's CRC again after its bytes were changed. */
static void seal(uint8_t *frame, size_t len)
{
    tcpota_put_u32(frame + len - TCPOTA_FRAME_TAIL, tcpota_crc32c(frame, len - TCPOTA_FRAME_TAIL));
}

static void test_ack_run_taken_in_one_call(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t b[256];
    size_t n = 0;
    (void)state;

    sent_all(100000);
    put_acks(b, &n, 3);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), 3 * ACK_LEN);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, 12288);
    assert_int_equal(ev.duplicate, 0);
    /* A run that moves nothing is a duplicate; one that moves it after a
     * repeat is not. */
    n = 0;
    put_ack(b, &n, 12288);
    put_ack(b, &n, 12288);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), 2 * ACK_LEN);
    assert_int_equal(ev.duplicate, 1);
    n = 0;
    put_ack(b, &n, 12288);
    put_ack(b, &n, 16384);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), 2 * ACK_LEN);
    assert_int_equal(ev.msg.u.ack.offset, 16384);
    assert_int_equal(ev.duplicate, 0);
    /* The run ends where another frame starts: COMPLETE comes next. */
    n = 0;
    put_ack(b, &n, 20480);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_COMPLETE;
    m.u.complete.image_id = img.id;
    n += (size_t)tcpota_msg_encode(&m, b + n, sizeof(b) - n);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), ACK_LEN);
    assert_int_equal(ev.msg.u.ack.offset, 20480);
    assert_int_equal(tcpota_srv_input(&s, b + ACK_LEN, n - ACK_LEN, &ev), (int)(n - ACK_LEN));
    assert_int_equal(ev.type, TCPOTA_SRV_EV_COMPLETE);
}

static void test_ack_run_around_a_partial_frame(void **state)
{
    struct tcpota_srv_event ev;
    uint8_t b[256];
    size_t n = 0;
    (void)state;

    sent_all(100000);
    put_acks(b, &n, 3);
    /* The run takes the whole ACK; 5 bytes of the next wait in the
     * decoder, which then takes the rest of that frame alone. */
    assert_int_equal(tcpota_srv_input(&s, b, ACK_LEN + 5, &ev), ACK_LEN);
    assert_int_equal(ev.msg.u.ack.offset, 4096);
    assert_int_equal(tcpota_srv_input(&s, b + ACK_LEN, 5, &ev), 5);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_NONE);
    assert_int_equal(tcpota_srv_input(&s, b + ACK_LEN + 5, n - ACK_LEN - 5, &ev), ACK_LEN - 5);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, 8192);
    assert_int_equal(tcpota_srv_input(&s, b + 2 * ACK_LEN, ACK_LEN, &ev), ACK_LEN);
    assert_int_equal(ev.msg.u.ack.offset, 12288);
    /* Bytes that continue a frame the decoder holds are that frame's, even
     * when they look like a whole ACK: here the head of a 16-byte frame,
     * which the ACK's 12 bytes complete with a CRC that does not match. */
    b[0] = TCPOTA_T_ACK;
    b[1] = 0;
    tcpota_put_u16(b + 2, TCPOTA_ACK_FIXED + 4);
    assert_int_equal(tcpota_srv_input(&s, b, TCPOTA_FRAME_HEAD, &ev), TCPOTA_FRAME_HEAD);
    n = 0;
    put_ack(b, &n, 16384);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), TCPOTA_ERR_CRC);
}

/* A PING among ACKs is no ACK, though it has their length: it gets its
 * PONG. */
static void test_ping_among_acks_gets_pong(void **state)
{
    struct tcpota_msg m, out[2];
    struct tcpota_srv_event ev;
    uint8_t b[64];
    size_t n = 0;
    (void)state;

    sent_all(100000);
    put_ack(b, &n, 8192);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 12288; /* would be an offset in range */
    assert_int_equal(tcpota_msg_encode(&m, b + n, sizeof(b) - n), ACK_LEN);
    n += ACK_LEN;
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), ACK_LEN);
    assert_int_equal(ev.msg.u.ack.offset, 8192);
    assert_int_equal(tcpota_srv_input(&s, b + ACK_LEN, ACK_LEN, &ev), ACK_LEN);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_PING);
    assert_int_equal(drain(out, 2), 1);
    assert_int_equal(out[0].type, TCPOTA_T_PONG);
    assert_int_equal(out[0].u.ping.token, 12288);
}

/* Feeds a good ACK then `bad`: the run takes the good one only, and the
 * next call judges `bad` as the frame-by-frame path does. */
static void run_stops_before(const uint8_t *bad, size_t bad_len, int err)
{
    struct tcpota_srv_event ev;
    uint8_t b[256];
    size_t n = 0;

    put_ack(b, &n, 8192);
    memcpy(b + n, bad, bad_len);
    n += bad_len;
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), ACK_LEN);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, 8192);
    assert_int_equal(tcpota_srv_input(&s, b + ACK_LEN, n - ACK_LEN, &ev), err);
    expect_error_frame(err);
}

static void test_ack_run_stops_before_a_bad_ack(void **state)
{
    uint8_t bad[64];
    size_t n;
    (void)state;

    /* Its CRC wrong. */
    setup(NULL);
    sent_all(100000);
    n = 0;
    put_ack(bad, &n, 12288)[ACK_LEN - 1] ^= 1;
    run_stops_before(bad, n, TCPOTA_ERR_CRC);
    /* Beyond the bytes sent. */
    setup(NULL);
    sent_all(100000);
    n = 0;
    put_ack(bad, &n, 100001);
    run_stops_before(bad, n, TCPOTA_ERR_RANGE);
    assert_string_equal(tcpota_srv_failure(&s), "ACK past the bytes sent");
    /* Going backwards. */
    setup(NULL);
    sent_all(100000);
    n = 0;
    put_ack(bad, &n, 4096);
    run_stops_before(bad, n, TCPOTA_ERR_RANGE);
    assert_string_equal(tcpota_srv_failure(&s), "ACK below an earlier one (ACKs never go back)");
    /* Flags not 0, its CRC right. */
    setup(NULL);
    sent_all(100000);
    n = 0;
    put_ack(bad, &n, 12288)[1] = 1;
    seal(bad, n);
    run_stops_before(bad, n, TCPOTA_ERR_PROTO);
}

/* An ACK with a TLV after its offset is one frame, even when its first 12
 * bytes look like a whole plain ACK (a TLV whose 4 bytes equal the CRC of
 * the 8 before them): the run reads a frame's length before its CRC. */
static void test_ack_with_tlv_is_one_frame(void **state)
{
    struct tcpota_srv_event ev;
    uint8_t b[64];
    uint32_t x, crc = 0;
    size_t n = 0;
    (void)state;

    b[0] = TCPOTA_T_ACK;
    b[1] = 0;
    tcpota_put_u16(b + 2, TCPOTA_ACK_FIXED + 4); /* offset, then a 1-byte TLV */
    for (x = 0; x < 0x7fffffffu; x++) {
        tcpota_put_u32(b + 4, x);
        crc = tcpota_crc32c(b, 8);
        /* TLV: an unknown tag (skipped, its critical bit clear), length 1. */
        if ((crc & 0xff) >= 0x20 && (crc & 0xff) < 0x80 && ((crc >> 8) & 0xffff) == 1) {
            break;
        }
    }
    assert_true(x < 0x7fffffffu);
    tcpota_put_u32(b + 8, crc);
    seal(b, 16);
    n = 16;
    put_ack(b, &n, x);
    sent_all(0x7fffffffu);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), 16);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, x);
    assert_int_equal(tcpota_srv_input(&s, b + 16, ACK_LEN, &ev), ACK_LEN);
    assert_int_equal(ev.duplicate, 1);
}

/* An ACK for exactly the bytes sent so far is in range, by the run of
 * plain ACKs and by the frame-by-frame path (an ACK with a TLV); one byte
 * further is not. */
static void test_ack_at_the_last_byte_sent(void **state)
{
    struct tcpota_srv_event ev;
    uint32_t off, len;
    uint8_t b[64];
    size_t n = 0;
    (void)state;

    setup(NULL);
    accepted();
    assert_int_equal(tcpota_srv_data_take(&s, 2, &off, &len), 1);
    assert_int_equal(off + len, 8192);
    put_ack(b, &n, 8192);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), ACK_LEN);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, 8192);
    assert_int_equal(ev.duplicate, 0);

    assert_int_equal(tcpota_srv_data_take(&s, 1, &off, &len), 1);
    assert_int_equal(off + len, 12288);
    b[0] = TCPOTA_T_ACK; /* offset, then an unknown optional TLV, empty */
    b[1] = 0;
    tcpota_put_u16(b + 2, TCPOTA_ACK_FIXED + 3);
    tcpota_put_u32(b + 4, 12288);
    memcpy(b + 8, "\x40\x00\x00", 3);
    n = TCPOTA_FRAME_OVERHEAD + TCPOTA_ACK_FIXED + 3;
    seal(b, n);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), (int)n);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_ACK);
    assert_int_equal(ev.msg.u.ack.offset, 12288);

    n = 0;
    put_ack(b, &n, 12289);
    assert_int_equal(tcpota_srv_input(&s, b, n, &ev), TCPOTA_ERR_RANGE);
    expect_error_frame(TCPOTA_ERR_RANGE);
}

/* all_sent: every byte handed out, before ACCEPT (no prestream limit) or
 * after it; not while a prestream limit holds the rest back, nor before
 * the offer or after the session ended. */
static void test_all_sent(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint32_t off, len;
    (void)state;

    setup(NULL);
    assert_int_equal(tcpota_srv_all_sent(&s), 0); /* no HELLO yet */
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    assert_int_equal(tcpota_srv_all_sent(&s), 0); /* offered, 64 KiB may go */
    while (tcpota_srv_data_take(&s, UINT32_MAX, &off, &len)) {
    }
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_OFFERED);
    assert_int_equal(tcpota_srv_all_sent(&s), 0); /* the prestream limit: ACCEPT is awaited */

    /* Without a prestream limit the whole image goes before ACCEPT. */
    setup(NULL);
    s.cfg.prestream = 0;
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain((struct tcpota_msg[4]){0}, 4);
    while (tcpota_srv_data_take(&s, UINT32_MAX, &off, &len)) {
    }
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_OFFERED);
    assert_int_equal(tcpota_srv_all_sent(&s), 1);

    /* After ACCEPT: once the last byte is out. */
    setup(NULL);
    accepted();
    assert_int_equal(tcpota_srv_data_take(&s, 1, &off, &len), 1);
    assert_int_equal(tcpota_srv_all_sent(&s), 0);
    while (tcpota_srv_data_take(&s, UINT32_MAX, &off, &len)) {
    }
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_SENT_ALL);
    assert_int_equal(tcpota_srv_all_sent(&s), 1);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_COMPLETE;
    m.u.complete.image_id = img.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(tcpota_srv_all_sent(&s), 0); /* ended */
}

static void test_garbage_and_oversize(void **state)
{
    struct tcpota_srv_event ev;
    uint8_t big[4] = {TCPOTA_T_HELLO, 0, 0xff, 0x7f};
    uint8_t junk[16] = "GET / HTTP/1.1\r\n";
    (void)state;

    assert_int_equal(tcpota_srv_input(&s, big, 4, &ev), TCPOTA_ERR_TOOBIG);
    expect_error_frame(TCPOTA_ERR_TOOBIG);
    setup(NULL);
    assert_true(tcpota_srv_input(&s, junk, sizeof(junk), &ev) < 0);
    /* Once closing, further input is swallowed, never parsed. */
    assert_int_equal(tcpota_srv_input(&s, junk, sizeof(junk), &ev), (int)sizeof(junk));
}

/* A HELLO without MAX_PAYLOAD: the device takes TCPOTA_MIN_PAYLOAD, so the
 * offer's chunk and every DATA frame fit it. */
static void test_no_max_payload_means_the_minimum(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint32_t off;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.max_payload = 0; /* not sent */
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_OFFER);
    assert_int_equal(out[1].u.offer.chunk, TCPOTA_MIN_PAYLOAD - TCPOTA_DATA_FIXED);
    while (tcpota_srv_data_next(&s, &off, &len)) {
        assert_true(len <= TCPOTA_MIN_PAYLOAD - TCPOTA_DATA_FIXED);
    }
}

static void test_small_device_buffer_limits_chunk(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint32_t off;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.max_payload = 512;
    assert_true(feed(&m, &ev) > 0);
    while (tcpota_srv_data_next(&s, &off, &len)) {
        assert_true(len <= 512 - 4);
    }
}

static void test_ping_gets_pong(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    (void)state;

    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    drain(out, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 42;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(drain(out, 4), 1);
    assert_int_equal(out[0].type, TCPOTA_T_PONG);
    assert_int_equal(out[0].u.ping.token, 42);
}

/* More PINGs than the reply buffer holds: the session ends instead of
 * silently dropping answers. */
static void test_ping_flood_ends_session(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    int rc = 0;
    (void)state;
    hello(&m, "1.0.0");
    m.u.hello.max_payload = 512;
    assert_true(feed(&m, &ev) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    for (int i = 0; i < 400 && rc >= 0; i++) {
        rc = feed(&m, &ev);
    }
    assert_int_equal(rc, TCPOTA_ERR_NOSPC);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
    assert_non_null(strstr(tcpota_srv_failure(&s), "(a PING flood?)"));
}

static void test_init_rejects_bad_config(void **state)
{
    struct tcpota_srv_config cfg;
    struct tcpota_srv t;
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = 100;
    assert_int_equal(tcpota_srv_init(&t, &cfg), TCPOTA_ERR_INVAL);
    cfg.tx_cap = sizeof(tx);
    cfg.chunk = 20000;
    assert_int_equal(tcpota_srv_init(&t, &cfg), TCPOTA_ERR_INVAL);
    /* The bound exactly: the largest chunk whose DATA frame fits
     * TCPOTA_MAX_PAYLOAD is taken, one byte more is not. */
    cfg.chunk = TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED;
    assert_int_equal(tcpota_srv_init(&t, &cfg), 0);
    cfg.chunk = TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED + 1;
    assert_int_equal(tcpota_srv_init(&t, &cfg), TCPOTA_ERR_INVAL);
    /* An image no OFFER can describe: a version longer than TCPOTA_MAX_NAME
     * or a manifest longer than TCPOTA_MAX_MANIFEST. */
    {
        static const uint8_t man[TCPOTA_MAX_MANIFEST + 1];
        struct tcpota_srv_image bad = img;
        cfg.chunk = 0;
        cfg.image = &bad;
        assert_int_equal(tcpota_srv_init(&t, &cfg), 0);
        bad.version = "123456789012345678901234567890123"; /* 33 */
        bad.version_len = TCPOTA_MAX_NAME + 1;
        assert_int_equal(tcpota_srv_init(&t, &cfg), TCPOTA_ERR_INVAL);
        bad = img;
        bad.manifest = man;
        bad.manifest_len = TCPOTA_MAX_MANIFEST;
        assert_int_equal(tcpota_srv_init(&t, &cfg), 0);
        bad.manifest_len = TCPOTA_MAX_MANIFEST + 1;
        assert_int_equal(tcpota_srv_init(&t, &cfg), TCPOTA_ERR_INVAL);
    }
}

static uint8_t nonce[32];

/* A session with a nonce: every device must authenticate, or (auth_for)
 * those it names. */
static void start_auth(int (*auth_for)(void *, const char *))
{
    struct tcpota_srv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.image = &img;
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    for (int i = 0; i < 32; i++) nonce[i] = (uint8_t)(0x40 + i);
    cfg.auth_nonce = nonce;
    cfg.auth_for = auth_for;
    assert_int_equal(tcpota_srv_init(&s, &cfg), 0);
}

static int setup_auth(void **state)
{
    setup(state);
    start_auth(NULL);
    return 0;
}

/* auth_for: only device "d1" has a secret (the server's per-id rule). */
static int auth_for_calls;
static int only_d1(void *ctx, const char *id)
{
    (void)ctx;
    auth_for_calls++;
    return strcmp(id, "d1") == 0;
}

static int setup_auth_for(void **state)
{
    setup(state);
    start_auth(only_d1);
    auth_for_calls = 0;
    return 0;
}

/* An id with a secret must authenticate; refused when it cannot, saying why. */
static void test_auth_for_id_with_secret(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    int n;
    (void)state;

    hello(&m, "1.0.0");
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_DENIED);
    assert_int_equal(auth_for_calls, 1);
    n = drain(out, 4);
    assert_true(n >= 1);
    assert_int_equal(out[n - 1].type, TCPOTA_T_ERROR);
    assert_int_equal(out[n - 1].u.error.code, -TCPOTA_ERR_DENIED);
    {
        const char want[] = "this device id has a secret on this server: it must authenticate";
        assert_true(out[n - 1].u.error.message.len >= sizeof want - 1);
        assert_memory_equal(out[n - 1].u.error.message.ptr, want, sizeof want - 1);
    }
    setup_auth_for(NULL);
    hello(&m, "1.0.0");
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.auth_pending, 1);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[0].u.welcome.features & TCPOTA_F_AUTH, TCPOTA_F_AUTH);
    assert_int_equal(out[1].type, TCPOTA_T_CHALLENGE);
}

/* An id without one is offered at once, AUTH-capable or not, and an AUTH
 * it sends unasked is a violation. */
static void test_auth_for_id_without_secret(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.device_id.ptr = (const uint8_t *)"d2";
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(auth_for_calls, 1);
    assert_int_equal(ev.auth_pending, 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[0].type, TCPOTA_T_WELCOME);
    assert_int_equal(out[0].u.welcome.features & TCPOTA_F_AUTH, 0);
    assert_int_equal(out[1].type, TCPOTA_T_OFFER);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = nonce;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_srv_failure(&s), "AUTH without CHALLENGE");
}

static void test_auth_required_without_capability_denied(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    (void)state;
    hello(&m, "1.0.0");
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_DENIED);
    expect_error_frame(TCPOTA_ERR_DENIED);
}

static void test_auth_challenge_then_offer_only_after_verdict(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint8_t mac[32] = {1}, offered = 9;
    uint32_t off, start = 9;
    uint16_t len;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.auth_pending, 1);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[0].type, TCPOTA_T_WELCOME);
    assert_int_equal(out[0].u.welcome.features & TCPOTA_F_AUTH, TCPOTA_F_AUTH);
    assert_int_equal(out[1].type, TCPOTA_T_CHALLENGE);
    assert_memory_equal(out[1].u.challenge.nonce, nonce, 32);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 0); /* nothing streams yet */
    assert_string_equal(tcpota_srv_device_id(&s), "d1");
    assert_int_equal(tcpota_srv_authorize(&s, 1, &offered, &start), TCPOTA_ERR_STATE);

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = mac;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_AUTH);
    assert_memory_equal(ev.msg.u.auth.mac, mac, 32);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 0);
    assert_int_equal(tcpota_srv_authorize(&s, 1, &offered, &start), 0);
    assert_int_equal(offered, 1);
    assert_int_equal(start, 0);
    assert_int_equal(drain(out, 4), 1);
    assert_int_equal(out[0].type, TCPOTA_T_OFFER);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 1);
    /* A second AUTH is a violation, named as such. */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = mac;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_srv_failure(&s), "second AUTH");
}

static void test_auth_refused_closes(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint8_t mac[32] = {0};
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    drain(out, 4);
    /* ACCEPT before authentication is a violation */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);

    setup_auth(NULL);
    hello(&m, "1.0.0");
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    drain(out, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = mac;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(tcpota_srv_authorize(&s, 0, NULL, NULL), TCPOTA_ERR_DENIED);
    expect_error_frame(TCPOTA_ERR_DENIED);
}

/* A DECLINE while no offer stands (waiting for AUTH) is a violation, not
 * a verdict on an image. Fails if the core accepts it. */
static void test_decline_without_offer_is_violation(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    (void)state;

    hello(&m, "1.0.0");
    m.u.hello.features = TCPOTA_F_AUTH;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.auth_pending, 1);
    (void)drain(out, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_DECLINE;
    m.u.decline.image_id = img.id;
    m.u.decline.reason = (uint16_t)-TCPOTA_ERR_REFUSED;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
}

/* A DECLINE's reason is an error code: 0 ("ok") is refused, not recorded
 * as the device's verdict (a hostile trial's registry read "declined: ok"). */
static void test_decline_needs_a_reason(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    (void)state;

    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 1);
    (void)drain(out, 4);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_DECLINE;
    m.u.decline.image_id = img.id;
    m.u.decline.reason = 0;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_PROTO);
    assert_int_not_equal(ev.type, TCPOTA_SRV_EV_DECLINE);
    assert_string_equal(tcpota_srv_failure(&s), "DECLINE without a reason (0 is no error code)");
    expect_error_frame(TCPOTA_ERR_PROTO);
}

/* A HELLO with a critical field this server does not know: NOTSUP, and
 * its text says so (it said "malformed message"). */
static void test_unknown_critical_field_said(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t b[600];
    int n;
    (void)state;

    hello(&m, "1.0.0");
    n = tcpota_msg_encode(&m, b, sizeof(b) - 3);
    assert_true(n > 0);
    /* A TLV of tag 0xf0 (critical), empty, before the CRC; the length grows by 3. */
    n -= (int)TCPOTA_FRAME_TAIL;
    b[n] = 0xf0, b[n + 1] = 0, b[n + 2] = 0;
    n += 3 + (int)TCPOTA_FRAME_TAIL;
    tcpota_put_u16(b + 2, (uint16_t)(tcpota_get_u16(b + 2) + 3));
    seal(b, (size_t)n);
    assert_int_equal(tcpota_srv_input(&s, b, (size_t)n, &ev), TCPOTA_ERR_NOTSUP);
    assert_string_equal(tcpota_srv_failure(&s),
                        "a critical field this server does not know (is the device newer?)");
}

static void test_auth_without_challenge_is_violation(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t mac[32] = {0};
    (void)state;
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_AUTH;
    m.u.auth.mac = mac;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
}

/* The caller's choice: what it is told, and NO_UPDATE with RETRY_AFTER. */
static struct tcpota_srv_hello seen;
static char seen_model[40], seen_version[40];
static const struct tcpota_srv_image *chosen;
static uint32_t chosen_retry;
static int choose_later; /* choose() answers TCPOTA_SRV_CHOOSE_LATER */

static int choose_cb(void *ctx, const struct tcpota_srv_hello *h,
                     const struct tcpota_srv_image **pick, uint32_t *retry_after_s)
{
    assert_ptr_equal(ctx, &seen);
    seen = *h;
    snprintf(seen_model, sizeof(seen_model), "%s", h->model);
    snprintf(seen_version, sizeof(seen_version), "%s", h->version);
    *retry_after_s = chosen_retry;
    *pick = chosen;
    return choose_later ? TCPOTA_SRV_CHOOSE_LATER : 0;
}

static void setup_choose(void)
{
    struct tcpota_srv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.choose = choose_cb;
    cfg.ctx = &seen;
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    cfg.chunk = 4096;
    assert_int_equal(tcpota_srv_init(&s, &cfg), 0);
}

static void test_choose_no_update_carries_retry_after(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    static const uint8_t rep[32] = {9, 9, 9};
    (void)state;

    chosen = NULL;
    chosen_retry = 3600;
    setup_choose();
    hello(&m, "1.0.0");
    m.u.hello.report_id = rep;
    m.u.hello.report_result = TCPOTA_RESULT_ROLLED_BACK;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 0);
    assert_string_equal(seen.device_id, "d1");
    assert_string_equal(seen_model, "esp32");
    assert_string_equal(seen_version, "1.0.0");
    assert_null(seen.running_id);
    assert_non_null(seen.report_id);
    assert_memory_equal(seen.report_id, rep, 32);
    assert_int_equal(seen.report_result, TCPOTA_RESULT_ROLLED_BACK);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_NO_UPDATE);
    assert_int_equal(out[1].u.no_update.retry_after_s, 3600);
    assert_int_equal(out[1].u.no_update.why, 0); /* the caller gave none */
    assert_null(tcpota_srv_offered_image(&s));
    /* The caller's reason goes out with the NO_UPDATE. */
    chosen_retry = 0;
    setup_choose();
    tcpota_srv_set_why(&s, TCPOTA_WHY_HELD);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_NO_UPDATE);
    assert_int_equal(out[1].u.no_update.why, TCPOTA_WHY_HELD);
    /* No image and no choose(): none for this device. */
    {
        struct tcpota_srv_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
        cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
        assert_int_equal(tcpota_srv_init(&s, &cfg), 0);
        hello(&m, "1.0.0");
        assert_true(feed(&m, &ev) > 0);
        assert_int_equal(drain(out, 4), 2);
        assert_int_equal(out[1].type, TCPOTA_T_NO_UPDATE);
        assert_int_equal(out[1].u.no_update.why, TCPOTA_WHY_NONE);
    }
}

static void test_choose_offers_the_chosen_image(void **state)
{
    static struct tcpota_srv_image other;
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    (void)state;

    other = img;
    other.id[0] = 0xee;
    other.size = 5000;
    chosen = &other;
    chosen_retry = 0;
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 1);
    assert_ptr_equal(tcpota_srv_offered_image(&s), &other);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_OFFER);
    assert_int_equal(out[1].u.offer.size, 5000);
    assert_int_equal(out[1].u.offer.image_id[0], 0xee);
    /* A chosen image the device already runs is still NO_UPDATE, and says
     * so whatever the caller set. */
    setup_choose();
    tcpota_srv_set_why(&s, TCPOTA_WHY_LATER);
    hello(&m, "1.0.0");
    m.u.hello.running_id = other.id;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].u.no_update.why, TCPOTA_WHY_RUNS);
    /* A broken description from the caller offers nothing. */
    other.version_len = 0;
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 0);
}

/* choose() may answer later (a fleet server asks its database): the session
 * waits in CHOOSING, sends nothing but WELCOME and PONGs, refuses frames
 * that need an offer, and sends the decision tcpota_srv_offer() gives. */
static void test_choose_later_then_offer(void **state)
{
    struct tcpota_msg m, out[4];
    struct tcpota_srv_event ev;
    uint8_t offered = 9;
    uint32_t start = 9, off;
    uint16_t len;
    (void)state;

    chosen = NULL; /* ignored: the answer comes later */
    chosen_retry = 0;
    choose_later = 1;
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_SRV_EV_HELLO);
    assert_int_equal(ev.offered, 0);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CHOOSING);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 0);
    assert_int_equal(drain(out, 4), 1);
    assert_int_equal(out[0].type, TCPOTA_T_WELCOME);
    tcpota_srv_output_done(&s, 64);
    /* A PING is answered meanwhile. */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 7;
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(drain(out, 4), 1);
    assert_int_equal(out[0].type, TCPOTA_T_PONG);
    tcpota_srv_output_done(&s, 64);
    assert_int_equal(tcpota_srv_offer(&s, &img, 0, &offered, &start), 0);
    assert_int_equal(offered, 1);
    assert_int_equal(start, 0);
    assert_int_equal(drain(out, 4), 1);
    assert_int_equal(out[0].type, TCPOTA_T_OFFER);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_OFFERED);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 1);
    /* Only one decision per session. */
    assert_int_equal(tcpota_srv_offer(&s, &img, 0, NULL, NULL), TCPOTA_ERR_STATE);

    /* NO_UPDATE with RETRY_AFTER later, and frames that need an offer are
     * violations while choosing. */
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(tcpota_srv_offer(&s, NULL, 90, &offered, NULL), 0);
    assert_int_equal(offered, 0);
    assert_int_equal(drain(out, 4), 2);
    assert_int_equal(out[1].type, TCPOTA_T_NO_UPDATE);
    assert_int_equal(out[1].u.no_update.retry_after_s, 90);
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACCEPT;
    m.u.accept.image_id = img.id;
    assert_int_equal(feed(&m, &ev), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_srv_offer(&s, &img, 0, NULL, NULL), TCPOTA_ERR_STATE);
    choose_later = 0;
}

/* PONGs answered while choosing may leave no room for the OFFER: the
 * decision then fails and the session ends; no DATA may follow an OFFER
 * that was never sent. */
static void test_choose_later_no_room_for_offer(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    uint8_t offered = 9, probe[64];
    uint32_t off;
    uint16_t len;
    int pong;
    (void)state;

    choose_later = 1;
    setup_choose();
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CHOOSING);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PONG;
    pong = tcpota_msg_encode(&m, probe, sizeof(probe));
    assert_true(pong > 0);
    m.type = TCPOTA_T_PING;
    /* PINGs until less than two more PONGs fit: far less than an OFFER. */
    while (s.cfg.tx_cap - s.tx_len >= 2u * (size_t)pong) {
        assert_true(feed(&m, &ev) > 0);
    }
    assert_true(tcpota_srv_offer(&s, &img, 0, &offered, NULL) < 0);
    assert_int_equal(offered, 0);
    assert_int_equal(tcpota_srv_get_state(&s), TCPOTA_SRV_CLOSING);
    assert_int_equal(tcpota_srv_data_next(&s, &off, &len), 0);
    choose_later = 0;
}

/* tcpota_srv_offer() outside CHOOSING (no HELLO yet, or a fixed image) is
 * refused. */
static void test_offer_without_choosing_refused(void **state)
{
    struct tcpota_msg m;
    struct tcpota_srv_event ev;
    (void)state;

    assert_int_equal(tcpota_srv_offer(&s, &img, 0, NULL, NULL), TCPOTA_ERR_STATE);
    hello(&m, "1.0.0");
    assert_true(feed(&m, &ev) > 0);
    assert_int_equal(ev.offered, 1);
    assert_int_equal(tcpota_srv_offer(&s, &img, 0, NULL, NULL), TCPOTA_ERR_STATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fresh_device_gets_offer_and_stream, setup),
        cmocka_unit_test_setup(test_default_streams_whole_image_before_accept, setup),
        cmocka_unit_test_setup(test_data_take_gives_the_frames_of_data_next, setup),
        cmocka_unit_test_setup(test_resume_point_for_this_image, setup),
        cmocka_unit_test_setup(test_resume_point_for_other_image_or_bad_offset_restarts, setup),
        cmocka_unit_test_setup(test_up_to_date_by_version_and_by_id, setup),
        cmocka_unit_test_setup(test_accept_elsewhere_reseeks, setup),
        cmocka_unit_test_setup(test_violations_end_with_error_frame, setup),
        cmocka_unit_test(test_ack_at_the_last_byte_sent),
        cmocka_unit_test(test_all_sent),
        cmocka_unit_test_setup(test_garbage_and_oversize, setup),
        cmocka_unit_test_setup(test_ack_run_taken_in_one_call, setup),
        cmocka_unit_test_setup(test_ack_run_around_a_partial_frame, setup),
        cmocka_unit_test_setup(test_ping_among_acks_gets_pong, setup),
        cmocka_unit_test(test_ack_run_stops_before_a_bad_ack),
        cmocka_unit_test_setup(test_ack_with_tlv_is_one_frame, setup),
        cmocka_unit_test_setup(test_small_device_buffer_limits_chunk, setup),
        cmocka_unit_test_setup(test_no_max_payload_means_the_minimum, setup),
        cmocka_unit_test_setup(test_ping_gets_pong, setup),
        cmocka_unit_test_setup(test_ping_flood_ends_session, setup),
        cmocka_unit_test(test_init_rejects_bad_config),
        cmocka_unit_test(test_messages_out_of_state),
        cmocka_unit_test_setup(test_choose_no_update_carries_retry_after, setup),
        cmocka_unit_test_setup(test_choose_offers_the_chosen_image, setup),
        cmocka_unit_test_setup(test_choose_later_then_offer, setup),
        cmocka_unit_test_setup(test_choose_later_no_room_for_offer, setup),
        cmocka_unit_test_setup(test_offer_without_choosing_refused, setup),
        cmocka_unit_test_setup(test_auth_required_without_capability_denied, setup_auth),
        cmocka_unit_test_setup(test_auth_for_id_with_secret, setup_auth_for),
        cmocka_unit_test_setup(test_auth_for_id_without_secret, setup_auth_for),
        cmocka_unit_test_setup(test_auth_challenge_then_offer_only_after_verdict, setup_auth),
        cmocka_unit_test_setup(test_auth_refused_closes, setup_auth),
        cmocka_unit_test_setup(test_decline_without_offer_is_violation, setup_auth),
        cmocka_unit_test_setup(test_decline_needs_a_reason, setup),
        cmocka_unit_test_setup(test_unknown_critical_field_said, setup),
        cmocka_unit_test_setup(test_auth_without_challenge_is_violation, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
