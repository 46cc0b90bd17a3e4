/* test_store_worker.c - the store thread and its completions
 * (server/store_worker.c), with a backend of the test's own that finishes
 * each request at once: completions waiting for a loop that does not run
 * stop the store thread at STORE_DONE_HIGH; the loop running them lets it
 * go on; a stop while it waits neither hangs nor loses a request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "store_worker.h"

#define REQS 1000u

struct fx {
    struct event_base *base;
    struct store_worker w;
    unsigned done;
};

/* The backend's run: every request of the list finished, posted one by
 * one (as SQLite posts requests that need no commit). */
static void run(void *ctx, struct store_req *list, int stopping)
{
    struct fx *f = ctx;
    struct store_req *r, *next;

    (void)stopping;
    for (r = list; r; r = next) {
        next = r->next;
        r->next = NULL;
        store_worker_post(&f->w, r, r);
    }
}

static void done(struct store_req *r)
{
    struct fx *f = r->arg;

    f->done++;
    store_req_free(r);
}

static size_t waiting(struct fx *f)
{
    size_t n;

    pthread_mutex_lock(&f->w.mu);
    n = f->w.ndone;
    pthread_mutex_unlock(&f->w.mu);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 10 s: a loaded machine, a sanitized build) until the store
 * thread has posted STORE_DONE_HIGH completions, then a moment more, in
 * which it must post none: it stopped there. A fixed sleep before the
 * check failed when the thread had not been scheduled yet. */
static void stops_at_high(struct fx *f)
{
    for (int i = 0; i < 10000 && waiting(f) < STORE_DONE_HIGH; i++) {
        sleep_ms(1);
    }
    sleep_ms(50);
    assert_int_equal(waiting(f), STORE_DONE_HIGH);
}

static int setup(void **state)
{
    static struct fx f;
    struct store_worker_ops ops = {0};
    char err[200];

    memset(&f, 0, sizeof(f));
    f.base = event_base_new();
    assert_non_null(f.base);
    store_worker_init(&f.w);
    ops.ctx = &f;
    ops.run = run;
    assert_int_equal(store_worker_start(&f.w, &ops, f.base, err, sizeof(err)), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    store_worker_release(&f->w);
    event_base_free(f->base);
    return 0;
}

/* Submits REQS requests and hands them to the store thread (one loop turn,
 * which cannot run completions posted later). */
static void submit_all(struct fx *f)
{
    for (unsigned i = 0; i < REQS; i++) {
        struct store_req *r = store_req_new(STORE_SEEN, done, f);
        assert_non_null(r);
        assert_int_equal(store_worker_submit(&f->w, r), STORE_OK);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
}

static void test_waits_for_the_loop(void **state)
{
    struct fx *f = *state;
    int i;

    submit_all(f);
    stops_at_high(f); /* the store thread finished what it may */
    assert_int_equal(f->done, 0);
    for (i = 0; i < 20000 && f->done < REQS; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        sleep_ms(1);
    }
    assert_int_equal(f->done, REQS);
    assert_int_equal(waiting(f), 0);
    store_worker_stop(&f->w);
}

static void test_stop_while_waiting(void **state)
{
    struct fx *f = *state;

    submit_all(f);
    stops_at_high(f);
    store_worker_stop(&f->w); /* must not wait for a loop that is not running */
    assert_int_equal(f->done, REQS);
}

/* A request without its done is refused; one submitted in this loop turn
 * is run by the stop (it was never handed over); after the stop, nothing
 * is queued. */
static void test_submit_edges(void **state)
{
    struct fx *f = *state;
    struct store_req *r = store_req_new(STORE_SEEN, NULL, f);

    assert_non_null(r);
    assert_int_equal(store_worker_submit(&f->w, r), STORE_E_INVAL);
    store_req_free(r);
    r = store_req_new(STORE_SEEN, done, f);
    assert_non_null(r);
    assert_int_equal(store_worker_submit(&f->w, r), STORE_OK);
    store_worker_stop(&f->w); /* no loop turn ran: the stop hands it over */
    assert_int_equal(f->done, 1);
    r = store_req_new(STORE_SEEN, done, f);
    assert_non_null(r);
    assert_int_equal(store_worker_submit(&f->w, r), STORE_E_IO);
    store_req_free(r);
}

/* store_waiting_s: how long requests have waited with none finished and
 * no statement answered: a request that runs long while its database
 * answers statements (an image fetched in chunks) is no hung database (a
 * trial: GET /health 503 and "answered nothing for 10 s" during a fetch). */
static int keep(struct store *st, struct store_req *r)
{
    (void)st;
    (void)r;
    return 0;
}

static void test_waiting_counts_answers(void **state)
{
    static const struct store_vt vt = {.name = "test", .submit = keep};
    struct store st = {.vt = &vt};
    struct store_req r;
    struct timespec t = {0, 300000000};

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_true(store_waiting_s() == 0);
    assert_int_equal(store_submit(&st, &r), 0);
    nanosleep(&t, NULL);
    assert_true(store_waiting_s() >= 0.29);
    store_note_answer(1);
    assert_true(store_waiting_s() < 0.1);
    nanosleep(&t, NULL);
    assert_true(store_waiting_s() >= 0.29);
    store_req_finished(&r);
    assert_true(store_waiting_s() == 0);
}

/* A hung database's connection dropped (store_note_cut): down until a
 * statement is answered; a new connection alone is not one (a database
 * that takes connections and answers nothing behind a lock still hangs). */
static void test_cut_until_a_statement(void **state)
{
    (void)state;
    assert_false(store_down());
    store_note_cut();
    assert_true(store_down());
    store_note_answer(0);
    assert_true(store_down());
    store_note_answer(1);
    assert_false(store_down());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_waits_for_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_edges, setup, teardown),
        cmocka_unit_test(test_waiting_counts_answers),
        cmocka_unit_test(test_cut_until_a_statement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
