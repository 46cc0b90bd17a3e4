/* test_runner.c - the device's connection loop (ports/common/tcpota_runner.c)
 * on a fake clock with a scripted connection, as quicly's tests run on a
 * fake clock: each scripted attempt says whether the connect succeeds,
 * which durable checkpoints the session reports, whether the image failed
 * (dev.bad_reason) and how the connection ended. The tests check what the
 * policy promises: progress is a checkpoint past the best one (bytes
 * written or checkpoints reached again do not count), attempts without
 * progress end in giving up, transient waits grow from 200 ms to 5 s,
 * image failures grow to the 1 h ceiling, a known-bad image is waited out
 * while any other decline ends the run, lingering after the last frame;
 * periodic check-ins every interval ±20 %, or after the server's
 * RETRY_AFTER (never earlier), capped at a week; a server's ERROR with
 * RETRY_AFTER (busy) waited for, the backoff as the floor, an hour at most. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tcpota_runner.h"

#define MAX_SCRIPT 128
#define MAX_CKPT 4

struct attempt {
    int connect_rc;               /* 0: connects */
    int outcome;                  /* enum tcpota_client_outcome */
    uint32_t ckpt[MAX_CKPT];      /* checkpoints reported, 0 ends the list */
    uint8_t bad;                  /* enum tcpota_dev_bad left in the session */
    uint32_t retry_after_s;       /* UP_TO_DATE: the NO_UPDATE's RETRY_AFTER */
    int last_error;               /* left in the session (the server's ERROR code) */
    uint32_t error_retry_after_s; /* the ERROR's RETRY_AFTER */
    uint8_t challenged;           /* the server sent a CHALLENGE on this connection */
};

static struct {
    struct attempt script[MAX_SCRIPT];
    size_t n, next;
    uint64_t clock_ms;
    uint32_t waits[MAX_SCRIPT];
    size_t nwaits;
    uint32_t check_ins[MAX_SCRIPT]; /* wait_ms of each TCPOTA_RUNNER_CHECK_IN step */
    uint32_t check_in_retry[MAX_SCRIPT];
    size_t ncheck_ins;
    uint32_t backoff_retry[MAX_SCRIPT]; /* retry_after_s of each TCPOTA_RUNNER_BACKOFF step */
    uint32_t lingers[MAX_SCRIPT];
    size_t ncloses;
    int random_max; /* 1: random() gives bound - 1, else 0 */
    int unreachable_seen;
    int unchallenged; /* TCPOTA_RUNNER_UNCHALLENGED steps */
    uint32_t backoff_min_ms, backoff_max_ms; /* 0: the defaults */
} f;

static struct tcpota_dev dev;
static struct tcpota_runner runner;
static char err[256];

static int fake_connect(void *ctx)
{
    (void)ctx;
    if (f.next >= f.n) {
        return TCPOTA_ERR_CANCELED; /* script over: as a stop request */
    }
    if (f.script[f.next].connect_rc < 0) {
        snprintf(err, sizeof(err), "connect: refused");
        return f.script[f.next++].connect_rc;
    }
    return 0;
}

static int fake_run(void *ctx)
{
    const struct attempt *a = &f.script[f.next++];

    (void)ctx;
    dev.state = TCPOTA_DEV_RECEIVING;
    dev.challenged = a->challenged;
    if (a->outcome != TCPOTA_CLIENT_DECLINED) {
        struct tcpota_dev_event ev; /* bytes were written: not progress */
        memset(&ev, 0, sizeof(ev));
        ev.type = TCPOTA_DEV_EV_PROGRESS;
        ev.offset = 5000;
        tcpota_runner_note(&runner, 1, &ev);
    }
    for (size_t i = 0; i < MAX_CKPT && a->ckpt[i]; i++) {
        struct tcpota_dev_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = TCPOTA_DEV_EV_CHECKPOINT;
        ev.offset = a->ckpt[i];
        tcpota_runner_note(&runner, 1, &ev);
    }
    if (a->outcome == TCPOTA_CLIENT_UP_TO_DATE) {
        struct tcpota_dev_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = TCPOTA_DEV_EV_UP_TO_DATE;
        ev.retry_after_s = a->retry_after_s;
        tcpota_runner_note(&runner, 0, &ev);
    }
    dev.bad_reason = a->bad;
    dev.last_error = a->last_error;
    dev.error_retry_after_s = a->error_retry_after_s;
    memset(dev.bad_id, 0xab, sizeof(dev.bad_id));
    if (a->outcome == TCPOTA_CLIENT_RETRY) {
        snprintf(err, sizeof(err), TCPOTA_CLIENT_CLOSED_SAYS);
    }
    return a->outcome;
}

static void fake_close(void *ctx, uint32_t linger_ms)
{
    (void)ctx;
    f.lingers[f.ncloses++ % MAX_SCRIPT] = linger_ms;
}

static int fake_sleep(void *ctx, uint32_t ms)
{
    (void)ctx;
    f.clock_ms += ms;
    f.waits[f.nwaits++ % MAX_SCRIPT] = ms;
    return f.next >= f.n ? TCPOTA_ERR_CANCELED : 0;
}

static uint32_t fake_random(void *ctx, uint32_t bound)
{
    (void)ctx;
    return f.random_max ? bound - 1 : 0;
}

static void fake_step(void *ctx, const struct tcpota_runner_step *s)
{
    (void)ctx;
    if (s->type == TCPOTA_RUNNER_BACKOFF) {
        f.unreachable_seen += s->unreachable;
        f.backoff_retry[f.nwaits % MAX_SCRIPT] = s->retry_after_s; /* told before its sleep */
    }
    f.unchallenged += s->type == TCPOTA_RUNNER_UNCHALLENGED;
    if (s->type == TCPOTA_RUNNER_CHECK_IN) {
        f.check_in_retry[f.ncheck_ins % MAX_SCRIPT] = s->retry_after_s;
        f.check_ins[f.ncheck_ins++ % MAX_SCRIPT] = s->wait_ms;
    }
}

static void add(int connect_rc, int outcome, uint32_t ckpt, uint8_t bad)
{
    struct attempt *a = &f.script[f.n++];

    assert_true(f.n <= MAX_SCRIPT);
    memset(a, 0, sizeof(*a));
    a->connect_rc = connect_rc;
    a->outcome = outcome;
    a->ckpt[0] = ckpt;
    a->bad = bad;
}

static void start_checking(unsigned max_attempts, uint32_t check_interval_s)
{
    struct tcpota_runner_config c;

    memset(&c, 0, sizeof(c));
    c.dev = &dev;
    c.max_attempts = max_attempts;
    c.err = err;
    c.err_cap = sizeof(err);
    c.connect = fake_connect;
    c.run = fake_run;
    c.close = fake_close;
    c.sleep = fake_sleep;
    c.random = fake_random;
    c.on_step = fake_step;
    c.check_interval_s = check_interval_s;
    c.backoff_min_ms = f.backoff_min_ms;
    c.backoff_max_ms = f.backoff_max_ms;
    assert_int_equal(tcpota_runner_init(&runner, &c), 0);
}

static void start(unsigned max_attempts)
{
    start_checking(max_attempts, 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&f, 0, sizeof(f));
    memset(&dev, 0, sizeof(dev));
    f.random_max = 1;
    return 0;
}

/* A server that cuts each connection a little past the resume point: the
 * first connection reaches a checkpoint, none after it does. */
static void test_cut_past_checkpoint_gives_up(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 16384, 0);
    for (int i = 0; i < 60; i++) {
        add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    }
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 1 + TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_string_equal(err, TCPOTA_CLIENT_CLOSED_SAYS);
}

/* Image after image (or one image restarted): the same checkpoint reached
 * again is no progress. Fails if any checkpoint counted. */
static void test_same_checkpoint_again_is_no_progress(void **state)
{
    (void)state;
    for (int i = 0; i < 60; i++) {
        add(0, TCPOTA_CLIENT_RETRY, 16384, 0);
    }
    start(5);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 1 + 5);
}

/* A checkpoint past the best one resets the count: a slow download over
 * a link that is cut every 20 KiB goes on. */
static void test_progress_resets_attempts(void **state)
{
    (void)state;
    for (uint32_t i = 1; i <= 50; i++) {
        add(0, TCPOTA_CLIENT_RETRY, i * 16384, 0);
        add(TCPOTA_ERR_IO, 0, 0, 0); /* and a failed connect in between */
    }
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start(3);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
    assert_int_equal(f.next, 101);
    assert_int_equal(runner.attempts, 0);
    assert_int_equal(f.lingers[f.ncloses - 1], TCPOTA_RUNNER_LINGER_MS);
}

/* After an image failure the next image's progress counts from zero, not
 * from how far the bad one got. */
static void test_progress_after_image_failure(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 65536, TCPOTA_BAD_INTEGRITY);
    for (uint32_t i = 1; i <= 6; i++) {
        add(0, TCPOTA_CLIENT_RETRY, i * 16384, 0); /* another image, cut each time */
    }
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start(2);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
}

/* The resume point a process starts from is where progress starts. */
static void test_progress_starts_at_resume_point(void **state)
{
    (void)state;
    dev.resume.valid = 1;
    dev.resume.offset = 65536;
    for (int i = 0; i < 10; i++) {
        add(0, TCPOTA_CLIENT_RETRY, 32768, 0);
    }
    start(4);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 4);
}

/* Transient waits: 200 ms doubling to 5 s, each uniform from 200 ms up. */
static void test_transient_backoff(void **state)
{
    static const uint32_t want[] = {200, 400, 800, 1600, 3200, 5000, 5000};

    (void)state;
    for (int i = 0; i < 8; i++) {
        add(TCPOTA_ERR_IO, 0, 0, 0);
    }
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(f.waits[i], want[i]);
    }
    assert_int_equal(f.unreachable_seen, 8);
    /* Full jitter: the low end is the first delay, not half the ceiling. */
    setup(NULL);
    f.random_max = 0;
    for (int i = 0; i < 8; i++) {
        add(TCPOTA_ERR_IO, 0, 0, 0);
    }
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.waits[6], TCPOTA_RUNNER_BACKOFF_MIN_MS);
}

/* An image that fails its integrity check, then is declined as known bad
 * at every offer: waits grow from 5 s to the 1 h ceiling, not 5 s. */
static void test_image_failures_back_off_to_an_hour(void **state)
{
    uint32_t w = TCPOTA_RUNNER_BACKOFF_MAX_MS;

    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 16384, TCPOTA_BAD_INTEGRITY);
    for (int i = 0; i < 14; i++) {
        add(0, TCPOTA_CLIENT_DECLINED, 0, TCPOTA_BAD_INTEGRITY);
    }
    start(0); /* never give up, as the ESP-IDF task */
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    for (size_t i = 0; i < 14; i++) {
        assert_int_equal(f.waits[i], w);
        w = w * 2 > TCPOTA_RUNNER_FAILURE_MAX_MS ? TCPOTA_RUNNER_FAILURE_MAX_MS : w * 2;
    }
    assert_int_equal(f.waits[13], TCPOTA_RUNNER_FAILURE_MAX_MS);
    /* 15 connections in over 6 hours, not 15 in a minute. */
    assert_true(f.clock_ms > 6ull * 3600 * 1000);
    assert_non_null(strstr(err, "image abababab failed its integrity check before; "
                                "waiting for another image"));
    assert_int_equal(f.lingers[1], TCPOTA_RUNNER_LINGER_MS); /* the DECLINE reaches the server */
}

/* A known-bad image counts as an attempt without progress: with
 * --max-attempts 1 the device downloads it once and gives up at the next
 * offer. */
static void test_known_bad_gives_up(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 16384, TCPOTA_BAD_INTEGRITY);
    for (int i = 0; i < 10; i++) {
        add(0, TCPOTA_CLIENT_DECLINED, 0, TCPOTA_BAD_INTEGRITY);
    }
    start(1);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 2);
}

/* Any other decline (unsigned, another model, no space) ends the run. */
static void test_other_decline_ends(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_DECLINED, 0, 0);
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start(20);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DECLINED);
    assert_int_equal(f.next, 1);
    assert_int_equal(f.nwaits, 0);
}

/* More attempts than the patience without progress, never giving up: the
 * waits leave the 5 s ceiling for the long one. */
static void test_patience_then_long_waits(void **state)
{
    (void)state;
    for (unsigned i = 0; i < TCPOTA_RUNNER_PATIENCE + 10; i++) {
        add(TCPOTA_ERR_IO, 0, 0, 0);
    }
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.waits[TCPOTA_RUNNER_PATIENCE - 1], TCPOTA_RUNNER_BACKOFF_MAX_MS);
    assert_int_equal(f.waits[TCPOTA_RUNNER_PATIENCE + 2], 4 * TCPOTA_RUNNER_BACKOFF_MAX_MS);
}

/* The long waits begin after TCPOTA_RUNNER_PATIENCE attempts, not at the
 * last of them. With the defaults both give 5 s there; a ceiling that
 * doubling from backoff_min_ms has not reached by then tells them apart:
 * the PATIENCE-th wait is still the transient one, 2^(PATIENCE-1) ms. */
static void test_patience_boundary(void **state)
{
    (void)state;
    for (unsigned i = 0; i < TCPOTA_RUNNER_PATIENCE + 2; i++) {
        add(TCPOTA_ERR_IO, 0, 0, 0);
    }
    f.backoff_min_ms = 1;
    f.backoff_max_ms = 1000000;
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.waits[TCPOTA_RUNNER_PATIENCE - 1], 1u << (TCPOTA_RUNNER_PATIENCE - 1));
    assert_int_equal(f.waits[TCPOTA_RUNNER_PATIENCE], 1000000);
}

/* A failed connect after an image failure is not another image failure:
 * the session's reason belongs to the connection that ran. */
static void test_connect_failure_after_image_failure(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 16384, TCPOTA_BAD_INTEGRITY);
    add(TCPOTA_ERR_IO, 0, 0, 0);
    add(TCPOTA_ERR_IO, 0, 0, 0);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(runner.failures, 1);
    assert_int_equal(f.waits[1], TCPOTA_RUNNER_BACKOFF_MIN_MS);
}

/* Up to date: returned at once, the counters reset; no linger. */
static void test_up_to_date_resets(void **state)
{
    (void)state;
    add(TCPOTA_ERR_IO, 0, 0, 0);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(20);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(runner.attempts, 0);
    assert_int_equal(f.lingers[1], 0);
}

static uint32_t real_now(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* With a tcpota_client and no connection callbacks, the runner uses the
 * client's own connect, close and wait: a closed port on loopback is
 * reported as unreachable, waited out, and given up on. */
static void test_client_binding(void **state)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    struct tcpota_client_config cc;
    struct tcpota_client cl;
    struct tcpota_runner_config c;
    static uint8_t net[512], tx[512];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    /* A port that is bound but not listening refuses at once. */
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    dev.cfg.tx_buf = tx;
    dev.cfg.tx_cap = sizeof(tx);
    memset(&cc, 0, sizeof(cc));
    cc.dev = &dev;
    cc.net_buf = net;
    cc.net_cap = sizeof(net);
    cc.wake_fd = -1;
    cc.err = err;
    cc.err_cap = sizeof(err);
    cc.now_ms = real_now;
    assert_int_equal(tcpota_client_init(&cl, &cc), 0);
    memset(&c, 0, sizeof(c));
    c.dev = &dev;
    c.backoff_min_ms = 1;
    c.backoff_max_ms = 2;
    c.max_attempts = 3;
    c.err = err;
    c.err_cap = sizeof(err);
    c.client = &cl;
    c.host = "127.0.0.1";
    c.port = ntohs(a.sin_port);
    c.random = fake_random;
    c.on_step = fake_step;
    assert_int_equal(tcpota_runner_init(&runner, &c), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.unreachable_seen, 2);
    assert_non_null(strstr(err, "connect to 127.0.0.1: "));
    assert_int_equal(cl.fd, -1);
    close(fd);
}

/* Each field the runner cannot run without is refused at init, one at a
 * time (a NULL random() would crash at the first backoff), and so is a
 * transient ceiling above the failure ceiling; a backoff_min equal to the
 * ceiling is a fixed delay, and allowed. Fails if any check is missing. */
static void test_config_checked(void **state)
{
    struct tcpota_runner_config ok, c;

    (void)state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(tcpota_runner_init(&runner, &c), TCPOTA_ERR_INVAL);
    start(0);
    ok = runner.cfg;
    c = ok;
    c.random = NULL;
    assert_int_equal(tcpota_runner_init(&runner, &c), TCPOTA_ERR_INVAL);
    c = ok;
    c.backoff_min_ms = 6000; /* above the default ceiling */
    assert_int_equal(tcpota_runner_init(&runner, &c), TCPOTA_ERR_INVAL);
    c = ok;
    c.backoff_max_ms = c.failure_max_ms + 1;
    assert_int_equal(tcpota_runner_init(&runner, &c), TCPOTA_ERR_INVAL);
    c = ok;
    c.backoff_min_ms = c.backoff_max_ms;
    assert_int_equal(tcpota_runner_init(&runner, &c), 0);
}

/* An install is a clean slate: the next image's checkpoints count from
 * zero, not from how far the installed one got. Fails if the runner keeps
 * the installed image's best checkpoint and gives up on the next one. */
static void test_progress_after_install(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 4 * 16384, 0);
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    for (uint32_t i = 1; i <= 3; i++) {
        add(0, TCPOTA_CLIENT_RETRY, i * 16384, 0); /* the next image, cut each time */
    }
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start(1);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
    assert_int_equal(f.next, f.n);
}

/* A session input that failed hands the runner no event to trust: a
 * checkpoint beside it is no progress, a RETRY_AFTER beside it no answer. */
static void test_failed_input_is_no_progress(void **state)
{
    struct tcpota_dev_event ev;

    (void)state;
    start(1);
    memset(&ev, 0, sizeof(ev));
    ev.type = TCPOTA_DEV_EV_CHECKPOINT;
    ev.offset = 16384;
    tcpota_runner_note(&runner, TCPOTA_ERR_INTEGRITY, &ev);
    assert_int_equal(runner.best, 0);
    assert_int_equal(runner.advanced, 0);
}

/* A long streak of image failures (a device that never gives up, offered
 * only the known-bad image for days) waits the 1 h ceiling every time: the
 * doubling stops at the ceiling and never wraps to a zero wait that would
 * hammer the server. */
static void test_failure_streak_waits_stay_at_the_ceiling(void **state)
{
    enum { STREAK = 100 }; /* past the 64 doublings a uint64_t holds */

    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 16384, TCPOTA_BAD_INTEGRITY);
    for (int i = 0; i < STREAK; i++) {
        add(0, TCPOTA_CLIENT_DECLINED, 0, TCPOTA_BAD_INTEGRITY);
    }
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.nwaits, STREAK + 1);
    for (size_t i = 10; i < f.nwaits; i++) {
        assert_int_equal(f.waits[i], TCPOTA_RUNNER_FAILURE_MAX_MS);
    }
}

/* A stop request that arrives while connecting (the connect callback says
 * TCPOTA_ERR_CANCELED) ends the run at once: it is no failed attempt, so
 * no backoff is logged or waited and the last allowed attempt does not
 * read as giving up. */
static void test_stop_while_connecting(void **state)
{
    (void)state;
    add(TCPOTA_ERR_CANCELED, 0, 0, 0);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(1);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.nwaits, 0);
}

/* An offer this device declined itself with TCPOTA_ERR_DENIED (its
 * verify_offer refused it) is a decline, not the server refusing who the
 * device is: the run ends DECLINED. Fails if any DENIED left in the
 * session is taken for an authentication refusal. */
static void test_own_denied_decline_is_a_decline(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_DECLINED, 0, 0);
    f.script[0].last_error = TCPOTA_ERR_DENIED;
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DECLINED);
}

/* ---- periodic check-ins --------------------------------------------- */

static void add_up_to_date(uint32_t retry_after_s)
{
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    f.script[f.n - 1].retry_after_s = retry_after_s;
}

/* A day's interval, ±20 %: the extremes of the random draw give 0.8 and
 * 1.2 days exactly, in milliseconds (no overflow on the way). */
/* A check-in that gave up (a server down for a while) leaves the next one
 * all of max_attempts, not none: each run of a check-in agent tries as
 * often as the first. */
static void test_check_in_after_giving_up(void **state)
{
    (void)state;
    for (int i = 0; i < 6; i++) {
        add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    }
    start_checking(3, 60);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 3);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 6);
}

static void test_check_in_interval_jitter(void **state)
{
    (void)state;
    add_up_to_date(0);
    add_up_to_date(0);
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start_checking(0, 86400);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    f.random_max = 1;
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    f.random_max = 0;
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
    assert_int_equal(f.ncheck_ins, 2);
    assert_int_equal(f.check_ins[0], 103680000u); /* 1.2 * 86 400 000 */
    assert_int_equal(f.check_ins[1], 69120000u);  /* 0.8 * 86 400 000 */
    assert_int_equal(f.check_in_retry[0], 0);
    assert_int_equal(f.nwaits, 2);
    assert_int_equal(f.waits[0], 103680000u);
    assert_int_equal(f.clock_ms, 103680000u + 69120000u);
    /* The longest interval at its longest still fits. */
    start_checking(0, TCPOTA_RUNNER_CHECK_MAX_S);
    f.random_max = 1;
    assert_int_equal(tcpota_runner_check_in_ms(&runner, NULL), 725760000u);
}

/* NO_UPDATE's RETRY_AFTER replaces the interval for the next check-in:
 * never earlier, at most 20 % later; the run after forgets it. */
static void test_check_in_honours_retry_after(void **state)
{
    (void)state;
    add_up_to_date(7200);
    add_up_to_date(7200);
    add_up_to_date(0);
    add(0, TCPOTA_CLIENT_UPDATED, 0, 0);
    start_checking(0, 86400);
    f.random_max = 0;
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    f.random_max = 1;
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UPDATED);
    assert_int_equal(f.ncheck_ins, 3);
    assert_int_equal(f.check_ins[0], 7200000u); /* exactly the server's time */
    assert_int_equal(f.check_in_retry[0], 7200);
    assert_int_equal(f.check_ins[1], 8640000u); /* +20 % at most */
    assert_int_equal(f.check_ins[2], 103680000u); /* the interval again */
    assert_int_equal(f.check_in_retry[2], 0);
}

/* A server cannot silence a device for more than a week. */
static void test_check_in_retry_after_capped(void **state)
{
    uint32_t honoured;

    (void)state;
    add_up_to_date(0xffffffffu);
    start_checking(0, 60);
    f.random_max = 0;
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in_ms(&runner, &honoured),
                     TCPOTA_RUNNER_CHECK_MAX_S * 1000u);
    assert_int_equal(honoured, TCPOTA_RUNNER_CHECK_MAX_S);
}

/* An offer declined for good is asked about again at the next check-in,
 * after the interval: an earlier run's RETRY_AFTER is forgotten. */
static void test_check_in_after_decline(void **state)
{
    (void)state;
    add_up_to_date(60);
    add(0, TCPOTA_CLIENT_DECLINED, 0, 0);
    add_up_to_date(0);
    start_checking(0, 3600);
    f.random_max = 0;
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(f.check_ins[0], 60000u);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DECLINED);
    assert_int_equal(tcpota_runner_check_in(&runner), 0);
    assert_int_equal(f.check_ins[1], 2880000u);
    assert_int_equal(f.check_in_retry[1], 0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
}

/* Off (the host device's default): no wait, the caller ends. A stop
 * during the wait ends it. An interval over a week is refused. */
static void test_check_in_off_stop_and_limit(void **state)
{
    struct tcpota_runner_config c;

    (void)state;
    add_up_to_date(3600);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(tcpota_runner_check_in_ms(&runner, NULL), 0);
    assert_int_equal(tcpota_runner_check_in(&runner), TCPOTA_ERR_INVAL);
    assert_int_equal(f.nwaits, 0);
    assert_int_equal(f.ncheck_ins, 0);
    /* The script is over: the fake sleep reports a stop request. */
    start_checking(0, 60);
    assert_int_equal(tcpota_runner_check_in(&runner), TCPOTA_ERR_CANCELED);
    c = runner.cfg;
    c.check_interval_s = TCPOTA_RUNNER_CHECK_MAX_S + 1;
    assert_int_equal(tcpota_runner_init(&runner, &c), TCPOTA_ERR_INVAL);
}

/* The server refused the device's authentication (ERROR DENIED): the same
 * secret would be refused again, so a device that may give up stops at once
 * with the server's words, and one that never gives up waits at least the
 * server's RETRY_AFTER and as after an image failure. Fails if DENIED is
 * retried like a cut connection. */
static void test_denied_is_not_transient(void **state)
{
    (void)state;
    add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    f.script[0].last_error = TCPOTA_ERR_DENIED;
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DENIED);
    assert_int_equal(f.next, 1);
    assert_int_equal(f.nwaits, 0);

    setup(NULL); /* random at its top: each wait is its ceiling */
    add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    f.script[0].last_error = TCPOTA_ERR_DENIED;
    f.script[0].error_retry_after_s = 60;
    add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    f.script[1].last_error = TCPOTA_ERR_DENIED; /* no RETRY_AFTER this time */
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.nwaits, 2);
    assert_int_equal(f.waits[0], 60000); /* the server's RETRY_AFTER, above 5 s */
    /* Without one, the image-failure scale: 5 s doubled, not 400 ms. */
    assert_int_equal(f.waits[1], 2 * TCPOTA_RUNNER_BACKOFF_MAX_MS);

    /* A week asked for (a forged ERROR over plain TCP): an hour at most. */
    setup(NULL);
    add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    f.script[0].last_error = TCPOTA_ERR_DENIED;
    f.script[0].error_retry_after_s = 7 * 86400;
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.waits[0], TCPOTA_RUNNER_FAILURE_MAX_MS);
}

/* An HTTP server answered HELLO, or another service's banner came first
 * (the client's http_answer, text_answer): the address is wrong, and the
 * same again next time, so a device that may give up stops at once, and
 * one that never gives up waits as after an image failure. Fails if such
 * an answer is retried as a transient protocol error. */
static void test_wrong_port_is_not_transient(void **state)
{
    static struct tcpota_client answered;
    int k;

    (void)state;
    for (k = 0; k < 2; k++) {
        setup(NULL); /* random at its top: each wait is its ceiling */
        memset(&answered, 0, sizeof(answered));
        if (k == 0) answered.http_answer = 1;
        else answered.text_answer = 1;
        add(0, TCPOTA_CLIENT_RETRY, 0, 0);
        f.script[0].last_error = TCPOTA_ERR_PROTO;
        add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
        start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
        runner.cfg.client = &answered; /* read for its flags; connect and run are the script's */
        assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DENIED);
        assert_int_equal(f.next, 1);
        assert_int_equal(f.nwaits, 0);

        setup(NULL);
        add(0, TCPOTA_CLIENT_RETRY, 0, 0);
        f.script[0].last_error = TCPOTA_ERR_PROTO;
        add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
        start(0);
        runner.cfg.client = &answered;
        assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
        assert_int_equal(f.nwaits, 1);
        assert_int_equal(f.waits[0], TCPOTA_RUNNER_BACKOFF_MAX_MS); /* the failure scale, not 200 ms */
    }
}

/* connect refused the server (its TLS certificate does not verify): the
 * same certificate is refused again, so a device that may give up stops
 * at once, and one that never gives up waits as after an image failure;
 * a handshake cut or timed out (another code) is retried as transient.
 * Fails if connect's DENIED is retried like a refused connection. */
static void test_server_refused_at_connect(void **state)
{
    (void)state;
    add(TCPOTA_ERR_DENIED, 0, 0, 0);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_DENIED);
    assert_int_equal(f.next, 1);
    assert_int_equal(f.nwaits, 0);
    assert_string_equal(err, "connect: refused");

    setup(NULL); /* random at its top: each wait is its ceiling */
    add(TCPOTA_ERR_DENIED, 0, 0, 0);
    add(TCPOTA_ERR_DENIED, 0, 0, 0);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.nwaits, 2);
    assert_int_equal(f.waits[0], TCPOTA_RUNNER_BACKOFF_MAX_MS);
    assert_int_equal(f.waits[1], 2 * TCPOTA_RUNNER_BACKOFF_MAX_MS);

    setup(NULL);
    add(TCPOTA_ERR_PROTO, 0, 0, 0);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.nwaits, 1);
    assert_true(f.waits[0] <= TCPOTA_RUNNER_BACKOFF_MIN_MS * 2);
}

static void add_busy(uint32_t retry_after_s)
{
    add(0, TCPOTA_CLIENT_RETRY, 0, 0);
    f.script[f.n - 1].last_error = TCPOTA_ERR_BUSY;
    f.script[f.n - 1].error_retry_after_s = retry_after_s;
}

/* A busy server (its database down) answers ERROR BUSY with RETRY_AFTER
 * 30 s: each wait is the server's 30 s, not 200 ms, 400 ms, ... and the
 * step tells the caller the server asked for it. Fails if RETRY_AFTER is
 * honoured only for DENIED. */
static void test_busy_error_honours_retry_after(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        add_busy(30);
    }
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.nwaits, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f.waits[i], 30000);
        assert_int_equal(f.backoff_retry[i], 30);
    }
}

/* The backoff stays the floor (a server asking for 1 s does not make the
 * device retry faster than it would anyway), and a failed connect after a
 * busy answer waits the plain backoff: that RETRY_AFTER was the earlier
 * connection's (the fake session still holds it, as the real one does). */
static void test_busy_error_backoff_is_the_floor(void **state)
{
    static const uint32_t want[] = {1000, 1000, 1000, 1600};

    (void)state;
    for (int i = 0; i < 4; i++) {
        add_busy(1);
    }
    add(TCPOTA_ERR_IO, 0, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(f.waits[i], want[i]);
    }

    setup(NULL);
    add_busy(30);
    add(TCPOTA_ERR_IO, 0, 0, 0);
    start(TCPOTA_RUNNER_ATTEMPTS_DEFAULT);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_STOPPED);
    assert_int_equal(f.waits[0], 30000);
    assert_int_equal(f.waits[1], 400);
    assert_int_equal(f.backoff_retry[1], 0);
}

/* Busy answers count as attempts without progress: with --max-attempts 3
 * the device gives up after three of them and two 30 s waits. A week asked
 * for (a forged ERROR over plain TCP) is waited an hour at most. */
static void test_busy_error_attempts_and_cap(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++) {
        add_busy(30);
    }
    start(3);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_GAVE_UP);
    assert_int_equal(f.next, 3);
    assert_int_equal(f.clock_ms, 2 * 30000);

    setup(NULL);
    add_busy(7 * 86400);
    add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
    start(0);
    assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
    assert_int_equal(f.waits[0], TCPOTA_RUNNER_FAILURE_MAX_MS);
    assert_int_equal(f.backoff_retry[0], 7 * 86400); /* what the server asked */
}

/* A device with a secret that its server never challenges is told once
 * (the first decision, whichever), never when challenged or secretless. */
static void test_unchallenged_secret_told_once(void **state)
{
    static const uint8_t secret[TCPOTA_SECRET_MIN];
    struct tcpota_dev_event ev;
    int i;

    (void)state;
    dev.cfg.secret = secret;
    dev.cfg.secret_len = sizeof(secret);
    for (i = 0; i < 3; i++) {
        add(0, TCPOTA_CLIENT_UP_TO_DATE, 0, 0);
        f.script[f.n - 1].challenged = i == 0; /* the first server asks; the next two do not */
    }
    start_checking(0, 60);
    for (i = 0; i < 3; i++) {
        assert_int_equal(tcpota_runner_run(&runner), TCPOTA_RUNNER_UP_TO_DATE);
        assert_int_equal(f.unchallenged, i == 0 ? 0 : 1);
    }
    /* An offer without a challenge, in the same runner: said already. */
    memset(&ev, 0, sizeof(ev));
    ev.type = TCPOTA_DEV_EV_ACCEPTED;
    tcpota_runner_note(&runner, 0, &ev);
    assert_int_equal(f.unchallenged, 1);
    /* A new runner (a new run of the device): told again, at an offer. */
    start(0);
    tcpota_runner_note(&runner, TCPOTA_ERR_PROTO, &ev); /* a failed input: nothing decided */
    assert_int_equal(f.unchallenged, 1);
    ev.type = TCPOTA_DEV_EV_WELCOME; /* no decision yet */
    tcpota_runner_note(&runner, 0, &ev);
    assert_int_equal(f.unchallenged, 1);
    ev.type = TCPOTA_DEV_EV_DECLINED;
    tcpota_runner_note(&runner, 0, &ev);
    assert_int_equal(f.unchallenged, 2);
    /* Without a secret there is nothing to warn about. */
    dev.cfg.secret = NULL;
    start(0);
    ev.type = TCPOTA_DEV_EV_UP_TO_DATE;
    tcpota_runner_note(&runner, 0, &ev);
    assert_int_equal(f.unchallenged, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_cut_past_checkpoint_gives_up, setup),
        cmocka_unit_test_setup(test_same_checkpoint_again_is_no_progress, setup),
        cmocka_unit_test_setup(test_progress_resets_attempts, setup),
        cmocka_unit_test_setup(test_progress_starts_at_resume_point, setup),
        cmocka_unit_test_setup(test_progress_after_image_failure, setup),
        cmocka_unit_test_setup(test_transient_backoff, setup),
        cmocka_unit_test_setup(test_image_failures_back_off_to_an_hour, setup),
        cmocka_unit_test_setup(test_known_bad_gives_up, setup),
        cmocka_unit_test_setup(test_other_decline_ends, setup),
        cmocka_unit_test_setup(test_patience_boundary, setup),
        cmocka_unit_test_setup(test_patience_then_long_waits, setup),
        cmocka_unit_test_setup(test_connect_failure_after_image_failure, setup),
        cmocka_unit_test_setup(test_up_to_date_resets, setup),
        cmocka_unit_test_setup(test_client_binding, setup),
        cmocka_unit_test_setup(test_config_checked, setup),
        cmocka_unit_test_setup(test_progress_after_install, setup),
        cmocka_unit_test_setup(test_failed_input_is_no_progress, setup),
        cmocka_unit_test_setup(test_failure_streak_waits_stay_at_the_ceiling, setup),
        cmocka_unit_test_setup(test_stop_while_connecting, setup),
        cmocka_unit_test_setup(test_own_denied_decline_is_a_decline, setup),
        cmocka_unit_test_setup(test_check_in_after_giving_up, setup),
        cmocka_unit_test_setup(test_check_in_interval_jitter, setup),
        cmocka_unit_test_setup(test_check_in_honours_retry_after, setup),
        cmocka_unit_test_setup(test_check_in_retry_after_capped, setup),
        cmocka_unit_test_setup(test_check_in_after_decline, setup),
        cmocka_unit_test_setup(test_check_in_off_stop_and_limit, setup),
        cmocka_unit_test_setup(test_denied_is_not_transient, setup),
        cmocka_unit_test_setup(test_wrong_port_is_not_transient, setup),
        cmocka_unit_test_setup(test_server_refused_at_connect, setup),
        cmocka_unit_test_setup(test_busy_error_honours_retry_after, setup),
        cmocka_unit_test_setup(test_busy_error_backoff_is_the_floor, setup),
        cmocka_unit_test_setup(test_busy_error_attempts_and_cap, setup),
        cmocka_unit_test_setup(test_unchallenged_secret_told_once, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
