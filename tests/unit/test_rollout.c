/* test_rollout.c - the wave and halt policy of a staged rollout
 * (server/rollout.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "rollout.h"
#include "tcpota/tcpota.h"

#define SYNTH_DEVICES 10000u /* synthetic device ids for the spread tests */
#define SPREAD_TOLERANCE 200u /* ±2 % of SYNTH_DEVICES */

static uint32_t place_of(uint64_t rollout_id, const char *id)
{
    return rollout_place(rollout_id, id, strlen(id));
}

static void test_hash_vectors(void **state)
{
    (void)state;
    /* FNV-1a 64's published vectors. */
    assert_true(rollout_fnv1a64("", 0) == UINT64_C(0xcbf29ce484222325));
    assert_true(rollout_fnv1a64("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
    assert_true(rollout_fnv1a64("foobar", 6) == UINT64_C(0x85944171f73967e8));
    /* The place vectors of rollout.h: 8 bytes LE rollout id, then the id. */
    assert_true(rollout_fnv1a64("\x01\0\0\0\0\0\0\0dev-1", 13) == UINT64_C(0x9c1791e8aa1a7719));
    assert_int_equal(place_of(1, "dev-1"), 4441);
    assert_int_equal(place_of(42, "esp32-a4cf12"), 1080);
    assert_int_equal(rollout_place(7, NULL, 0), 6178);
}

static void test_place_stable(void **state)
{
    char id[32];
    uint32_t i;
    uint32_t moved = 0;
    (void)state;
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "dev-%05u", (unsigned)i);
        assert_int_equal(place_of(1, id), place_of(1, id));
        assert_true(place_of(1, id) < ROLLOUT_BP_SCALE);
        moved += place_of(1, id) != place_of(2, id);
    }
    /* Another rollout draws other waves: the first wave is not always the same devices. */
    assert_true(moved > 990);
    /* Only the given bytes count: the id "dev-1" inside a longer buffer. */
    assert_int_equal(rollout_place(1, "dev-1xyz", 5), 4441);
}

static void test_bounds(void **state)
{
    const uint32_t ok[] = {5, 25, 100};
    const uint32_t zero[] = {0, 50};
    const uint32_t over[] = {50, 101};
    const uint32_t flat[] = {50, 50};
    const uint32_t down[] = {50, 25};
    uint16_t b[ROLLOUT_MAX_WAVES];
    uint32_t many[ROLLOUT_MAX_WAVES + 1];
    uint32_t i;
    (void)state;
    assert_int_equal(rollout_bounds_from_pct(ok, 3, b), 3);
    assert_int_equal(b[0], 500);
    assert_int_equal(b[1], 2500);
    assert_int_equal(b[2], 10000);
    assert_int_equal(rollout_bounds_from_pct(ok, 0, b), TCPOTA_ERR_INVAL);
    assert_int_equal(rollout_bounds_from_pct(zero, 2, b), TCPOTA_ERR_INVAL);
    assert_int_equal(rollout_bounds_from_pct(over, 2, b), TCPOTA_ERR_INVAL);
    assert_int_equal(rollout_bounds_from_pct(flat, 2, b), TCPOTA_ERR_INVAL);
    assert_int_equal(rollout_bounds_from_pct(down, 2, b), TCPOTA_ERR_INVAL);
    for (i = 0; i <= ROLLOUT_MAX_WAVES; i++) {
        many[i] = i + 1;
    }
    assert_int_equal(rollout_bounds_from_pct(many, ROLLOUT_MAX_WAVES, b), ROLLOUT_MAX_WAVES);
    assert_int_equal(rollout_bounds_from_pct(many, ROLLOUT_MAX_WAVES + 1, b), TCPOTA_ERR_INVAL);
}

static void make_rollout(struct rollout *ro, const uint32_t *pct, uint32_t n)
{
    memset(ro, 0, sizeof(*ro));
    ro->state = ROLLOUT_STATE_ACTIVE;
    assert_int_equal(rollout_bounds_from_pct(pct, n, ro->bound), (int)n);
    ro->n_waves = n;
}

static void test_membership_spread(void **state)
{
    const uint32_t pct[] = {10, 50, 100};
    const uint32_t want[] = {1000, 5000, 10000};
    uint32_t in_wave[3] = {0, 0, 0};
    struct rollout ro;
    char id[32];
    uint32_t i;
    uint32_t k;
    uint32_t cum = 0;
    (void)state;
    make_rollout(&ro, pct, 3);
    for (i = 0; i < SYNTH_DEVICES; i++) {
        snprintf(id, sizeof(id), "esp32-%08x", (unsigned)(i * 2654435761u));
        k = rollout_wave_of(&ro, place_of(1234, id));
        assert_true(k < 3);
        in_wave[k]++;
    }
    for (k = 0; k < 3; k++) {
        cum += in_wave[k];
        assert_in_range(cum, want[k] - SPREAD_TOLERANCE, want[k] + SPREAD_TOLERANCE);
    }
    assert_int_equal(cum, SYNTH_DEVICES);
}

static void test_wave_edges(void **state)
{
    const uint32_t pct[] = {5, 25, 50};
    struct rollout ro;
    (void)state;
    make_rollout(&ro, pct, 3);
    assert_int_equal(rollout_wave_of(&ro, 0), 0);
    assert_int_equal(rollout_wave_of(&ro, 499), 0);
    assert_int_equal(rollout_wave_of(&ro, 500), 1);
    assert_int_equal(rollout_wave_of(&ro, 2499), 1);
    assert_int_equal(rollout_wave_of(&ro, 2500), 2);
    assert_int_equal(rollout_wave_of(&ro, 4999), 2);
    /* Past the last bound: in no wave, never offered. */
    assert_int_equal(rollout_wave_of(&ro, 5000), 3);
    assert_int_equal(rollout_wave_of(&ro, ROLLOUT_BP_SCALE - 1), 3);
    ro.n_open = 3;
    /* Past the last wave: never offered, said as such (not "not yet"),
     * paused or not; a transfer it began goes on. */
    assert_int_equal(rollout_decide(&ro, 5000, 0), ROLLOUT_NOT_IN_ROLLOUT);
    assert_int_equal(rollout_decide(&ro, 4999, 0), ROLLOUT_OFFER);
    ro.state = ROLLOUT_STATE_PAUSED;
    assert_int_equal(rollout_decide(&ro, 5000, 0), ROLLOUT_NOT_IN_ROLLOUT);
    assert_int_equal(rollout_decide(&ro, 5000, 1), ROLLOUT_OFFER);
    ro.state = ROLLOUT_STATE_ACTIVE;
    ro.n_open = 1;
    assert_int_equal(rollout_decide(&ro, 2500, 0), ROLLOUT_NOT_IN_OPEN_WAVE);
    assert_int_equal(rollout_decide(&ro, 5000, 0), ROLLOUT_NOT_IN_ROLLOUT);
    assert_non_null(strstr(rollout_reason(ROLLOUT_NOT_IN_ROLLOUT), "leaves out"));
    {
        /* Its status says that every wave being open reaches 50 %. */
        struct rollout_rules rules = {10, 90, 3600, 20, 3};
        struct rollout_wave w[3];
        char buf[ROLLOUT_STATUS_MAX];
        memset(w, 0, sizeof(w));
        ro.n_open = 3;
        rollout_explain(1, &ro, &rules, w, 0, 0, 0, buf, sizeof(buf));
        assert_non_null(strstr(buf, "every wave is open; its last reaches 50.00 % of the model's devices"));
    }
}

/* Rules of the opening tests: 10 finished, 90 % success, one hour's soak. */
static const struct rollout_rules open_rules = {10, 90, 3600, 20, 3};

/* A wave of 100 devices opened at t=1000 that passes every condition at t=4600. */
static struct rollout_wave passing_wave(void)
{
    struct rollout_wave w = {100, 40, 5, 18, 2, 1000};
    return w;
}

static void test_open_passes(void **state)
{
    struct rollout_wave w = passing_wave();
    struct rollout_rules shortened = open_rules;
    (void)state;
    assert_true(rollout_may_open_next(&open_rules, &w, 1, 1000 + 3600));
    assert_true(rollout_may_open_next(&open_rules, &w, 1, 1000 + 100000));
    /* Success exactly at the ratio and finished exactly at the minimum. */
    w.updated = 9;
    w.failed = 1;
    assert_true(rollout_may_open_next(&open_rules, &w, 1, 4600));
    /* Tests shorten the soak. */
    shortened.soak_s = 0;
    assert_true(rollout_may_open_next(&shortened, &w, 1, 1000));
}

static void test_open_needs_finished(void **state)
{
    struct rollout_wave w = passing_wave();
    (void)state;
    w.updated = 9;
    w.failed = 0; /* 9 finished, all good, soaked: still too few */
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 4600));
    /* ...unless every targeted device finished: a small wave. */
    w.targeted = 9;
    assert_true(rollout_may_open_next(&open_rules, &w, 1, 4600));
    /* A wave no device of which checked in is no evidence, soaked or not
     * (a small first wave of a small fleet): opened by hand only. */
    memset(&w, 0, sizeof(w));
    w.opened_at = 1000;
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 4600));
    /* A later wave as empty opens the next after its soak. */
    assert_true(rollout_may_open_next(&open_rules, &w, 0, 4600));
    assert_false(rollout_may_open_next(&open_rules, &w, 0, 4599));
    /* One device of it, finished and updated: all of it. */
    w.targeted = 1;
    w.updated = 1;
    assert_true(rollout_may_open_next(&open_rules, &w, 1, 4600));
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 4599));
}

/* --min-finished 0: the first wave still needs one finished device (the
 * canary), empty or not; a later wave opens on its soak alone. */
static void test_open_min_finished_zero(void **state)
{
    struct rollout_rules none = {0, 90, 3600, 20, 3};
    struct rollout_wave w;
    char buf[600];
    struct rollout ro;
    struct rollout_wave waves[2];
    (void)state;
    memset(&w, 0, sizeof(w));
    w.opened_at = 1000;
    assert_false(rollout_may_open_next(&none, &w, 1, 4600)); /* empty first wave */
    w.targeted = 5;
    assert_false(rollout_may_open_next(&none, &w, 1, 4600)); /* none of 5 finished */
    w.updated = 1;
    assert_true(rollout_may_open_next(&none, &w, 1, 4600));
    assert_false(rollout_may_open_next(&none, &w, 1, 4599));
    memset(&w, 0, sizeof(w));
    w.opened_at = 1000;
    w.targeted = 5;
    assert_true(rollout_may_open_next(&none, &w, 0, 4600)); /* a later wave: its soak */
    /* rollout show says the one device the first wave needs. */
    memset(&ro, 0, sizeof(ro));
    memset(waves, 0, sizeof(waves));
    ro.state = ROLLOUT_STATE_ACTIVE;
    ro.n_waves = 2;
    ro.n_open = 1;
    ro.bound[0] = 500;
    ro.bound[1] = 10000;
    waves[0].targeted = 5;
    waves[0].opened_at = 1000;
    rollout_explain(1, &ro, &none, waves, 0, 0, 4600, buf, sizeof(buf));
    assert_non_null(strstr(buf, "wave 2 opens when wave 1 has 1 finished device or all of them "
                                "(0 of 5: no)"));
}

static void test_open_needs_success(void **state)
{
    struct rollout_wave w = passing_wave();
    (void)state;
    w.updated = 17;
    w.failed = 3; /* 85 % < 90 %, enough finished, soaked */
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 4600));
    w.updated = 8;
    w.failed = 1; /* 88.9 %: just under, even with the targeted all done */
    w.targeted = 9;
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 4600));
}

static void test_open_needs_soak(void **state)
{
    struct rollout_wave w = passing_wave();
    (void)state;
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 1000 + 3599));
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 1000));
    /* A clock behind the opening (a node's clock stepped back) is no soak. */
    assert_false(rollout_may_open_next(&open_rules, &w, 1, 0));
    w.opened_at = INT64_MAX;
    assert_false(rollout_may_open_next(&open_rules, &w, 1, INT64_MIN));
    /* The widest span does not overflow (UBSan would say so). */
    w.opened_at = INT64_MIN;
    assert_true(rollout_may_open_next(&open_rules, &w, 1, INT64_MAX));
}

static void test_halt(void **state)
{
    /* halt_pct 20, halt_min 3. */
    struct rollout_wave w[2];
    (void)state;
    memset(w, 0, sizeof(w));
    w[0].updated = 12;
    w[0].failed = 3; /* 3/15 = 20 %: at, not past */
    assert_false(rollout_should_halt(&open_rules, w, 1));
    w[0].updated = 11; /* 3/14 = 21.4 % */
    assert_true(rollout_should_halt(&open_rules, w, 1));
    /* The minimum: 2 of 2 is 100 % but only two failures. */
    w[0].updated = 0;
    w[0].failed = 2;
    assert_false(rollout_should_halt(&open_rules, w, 1));
    /* Summed over the waves: 2 + 1 failures of 4 finished. */
    w[1].updated = 1;
    w[1].failed = 1;
    assert_false(rollout_should_halt(&open_rules, w, 1));
    assert_true(rollout_should_halt(&open_rules, w, 2));
    /* Offered and downloading devices have not finished: they do not dilute. */
    w[1].offered = 1000;
    w[1].downloading = 1000;
    assert_true(rollout_should_halt(&open_rules, w, 2));
}

/* Resumed from a halt, the rule counts what came after the resume. */
static void test_halt_since_resume(void **state)
{
    /* halt_pct 20, halt_min 3. */
    struct rollout_wave w[2];
    (void)state;
    memset(w, 0, sizeof(w));
    w[0].updated = 3;
    w[0].failed = 3; /* it halted here: 3 of 6 */
    assert_true(rollout_halt_due(&open_rules, w, 1, 0, 0));
    /* Resumed: the failures that halted it do not halt it again. */
    assert_false(rollout_halt_due(&open_rules, w, 1, 3, 6));
    /* 3 new failures of 12 finished since: 25 %, it halts again. Against
     * all 18 finished, or with each failure counted twice, it would not. */
    w[1].updated = 9;
    w[1].failed = 3;
    assert_true(rollout_halt_due(&open_rules, w, 2, 3, 6));
    /* Counts below the bases (rows lost) leave nothing, not a wrapped count
     * that would halt, or dilute the failures left so that it would not. */
    assert_false(rollout_halt_due(&open_rules, w, 2, 100, 100));
    assert_true(rollout_halt_due(&open_rules, w, 2, 0, 100));
}

/* apply_rules' choice: only an active rollout moves, a halt first, and the
 * wave that opens the next is the last open one. */
static void test_next_move(void **state)
{
    const uint32_t pct[] = {10, 50, 100};
    struct rollout ro;
    struct rollout_wave w[3];
    (void)state;
    make_rollout(&ro, pct, 3);
    ro.n_open = 1;
    memset(w, 0, sizeof(w));
    w[0] = passing_wave();
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_OPEN_NEXT);
    ro.state = ROLLOUT_STATE_PAUSED;
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_HOLD);
    ro.state = ROLLOUT_STATE_ACTIVE;
    /* Wave 1 (passing, soaked) would pass: it is not the one read... */
    w[0].opened_at = 4000;
    w[1] = passing_wave();
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_HOLD);
    /* ...until it is the last open one (wave 0, unsoaked, no longer counts)... */
    ro.n_open = 2;
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_OPEN_NEXT);
    /* ...and an unsoaked last open wave holds even when wave 0 would pass. */
    w[0].opened_at = 1000;
    w[1].opened_at = 4000;
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_HOLD);
    /* With every wave open, none opens. */
    ro.n_open = 3;
    w[1].opened_at = 0;
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_HOLD);
    /* Failures past the halt rule halt it; those it was resumed over do not. */
    memset(&w[1], 0, sizeof(w[1]));
    w[1].failed = 3;
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 0, 0, 4600), ROLLOUT_HALT);
    assert_int_equal(rollout_next_move(&ro, &open_rules, w, 5, 23, 4600), ROLLOUT_HOLD);
}

/* What rollout show says: each condition of the next wave's opening as the
 * rule reads it, a wave that will never open, a halt's figures. */
static void test_explain(void **state)
{
    const uint32_t pct[] = {10, 50, 100};
    struct rollout ro;
    struct rollout_wave w[3];
    char buf[ROLLOUT_STATUS_MAX];
    (void)state;
    make_rollout(&ro, pct, 3);
    ro.n_open = 1;
    memset(w, 0, sizeof(w));
    /* No device of the wave finished yet: no rate, neither "yes" nor 0 %. */
    w[0] = passing_wave();
    w[0].updated = 0;
    w[0].failed = 0;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(0 of 100: no), 90 % of them updated (none finished yet)"));
    /* No device of the wave checked in: no evidence, opened by hand only. */
    w[0].targeted = 0;
    assert_false(rollout_may_open_next(&open_rules, &w[0], 1, 4600));
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(0 of 0: no), 90 % of them updated (the wave has no devices)"));
    assert_non_null(strstr(buf, "; the first wave holds no device yet (with few devices a small "
                                "wave may hold none), so it gives no evidence: open the next by "
                                "hand when you are ready (tcpota rollout open-wave 7)"));
    /* A later empty wave: the waves before it are the evidence. */
    ro.n_open = 2;
    w[1] = w[0];
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "wave 3 opens when wave 2 has 10 finished devices or all of them "
                                "(0 of 0: yes)"));
    assert_null(strstr(buf, "holds no device"));
    ro.n_open = 1;
    assert_null(strstr(buf, "will not open"));
    w[0] = passing_wave();
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_string_equal(buf, "wave 2 opens when wave 1 has 10 finished devices or all of them "
                             "(20 of 100: yes), 90 % of them updated (90 %: yes) and was open "
                             "3600 s (yes)");
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4599, buf, sizeof buf);
    assert_non_null(strstr(buf, "3600 s (no)"));
    /* Every device of the wave finished, too few updated: it never opens. */
    w[0].targeted = 3;
    w[0].updated = 2;
    w[0].failed = 1;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(3 of 3: yes), 90 % of them updated (66 %: no)"));
    assert_non_null(strstr(buf, "so it will not open by itself: open it anyway (tcpota rollout "
                                "open-wave 7), or cancel this rollout"));
    /* Finished short of the minimum: not (yet) "will not open". */
    w[0].targeted = 100;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(3 of 100: no)"));
    assert_null(strstr(buf, "will not open"));
    /* Enough finished but not all, too few updated: the devices still to
     * finish may raise the ratio, so not "will not open" either. */
    w[0].updated = 15;
    w[0].failed = 5;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(20 of 100: yes), 90 % of them updated (75 %: no)"));
    assert_null(strstr(buf, "will not open"));
    w[0].updated = 2;
    w[0].failed = 1;
    ro.n_open = 2; /* the last wave still to open */
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "wave 3 opens when wave 2 has 10 finished devices"));
    ro.n_open = 3;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_string_equal(buf, "every wave is open");
    ro.state = ROLLOUT_STATE_HALTED;
    w[1].failed = 3;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "halted itself: 4 of 6 finished devices failed, more than 20 % "
                                "(--halt-at) and at least 3 (--halt-min)"));
    rollout_explain(7, &ro, &open_rules, w, 1, 3, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "3 of 3 finished devices failed since it was resumed"));
    /* Devices that began the image: counted downloading, not transferring
     * (a trial read "8 downloading" on a halted rollout as running). */
    w[0].downloading = w[1].downloading = w[2].downloading = 0;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_null(strstr(buf, "began the image"));
    w[0].downloading = 5;
    w[2].downloading = 3;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "(--halt-min); look at the failures"));
    assert_non_null(strstr(buf, "; 8 devices began the image and have not finished it (its "
                                "downloading count, not transfers running): one sent every "
                                "byte before the halt may still finish, the others go on where "
                                "they stopped once it is resumed"));
    w[0].offered = w[1].offered = w[2].offered = 0;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_null(strstr(buf, "as offered"));
    /* Offered devices: transfers the halt stopped before their ACCEPT was
     * read (a trial read 12 offered next to the registry's 12 waiting). */
    w[1].offered = 1;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "; 1 device counts as offered, which may include transfers "
                                "stopped before the server read their acceptance (it reads a "
                                "transfer's acknowledgements about once a second): such a device "
                                "may hold part of the image, and goes on from there once the "
                                "rollout is resumed"));
    w[2].offered = 11;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "; 12 devices count as offered, which may include"));
    w[1].offered = w[2].offered = 0;
    /* The longest halt said whole: every count at its largest. */
    {
        struct rollout_wave big[3];
        struct rollout_rules r = open_rules;
        size_t len;
        memset(big, 0xff, sizeof(big));
        r.halt_pct = 100;
        r.halt_min = UINT32_MAX;
        len = rollout_explain(UINT64_MAX, &ro, &r, big, UINT32_MAX, UINT32_MAX, 4600, buf, sizeof buf);
        assert_true(len < sizeof(buf) - 1);
        assert_non_null(strstr(buf, "go on where they stopped once it is resumed"));
        assert_non_null(strstr(buf, "goes on from there once the rollout is resumed"));
    }
    ro.state = ROLLOUT_STATE_CANCELLED;
    w[0].downloading = 0;
    w[2].downloading = 1;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_string_equal(buf, "cancelled: it offers nothing, for good; 1 device had begun the "
                             "image and not finished it when it was cancelled (its downloading "
                             "count, kept as it was then): what that device did after that is "
                             "not counted here, but in a newer rollout of the image that holds "
                             "it (tcpota device show tells where it stands)");
    ro.state = ROLLOUT_STATE_PAUSED;
    rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, sizeof buf);
    assert_non_null(strstr(buf, "paused by an operator"));
    assert_null(strstr(buf, "not finished it"));
    /* A buffer too small is cut, terminated. */
    assert_int_equal(rollout_explain(7, &ro, &open_rules, w, 0, 0, 4600, buf, 8), 7);
    assert_int_equal(strlen(buf), 7);
}

static void test_decide(void **state)
{
    const uint32_t pct[] = {10, 50, 100};
    struct rollout ro;
    const uint32_t in0 = 100;  /* a place in wave 0 */
    const uint32_t in1 = 3000; /* a place in wave 1 */
    (void)state;
    make_rollout(&ro, pct, 3);
    ro.n_open = 1;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_OFFER);
    assert_int_equal(rollout_decide(&ro, in1, 0), ROLLOUT_NOT_IN_OPEN_WAVE);
    ro.n_open = 2;
    assert_int_equal(rollout_decide(&ro, in1, 0), ROLLOUT_OFFER);
    ro.n_open = 0;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_NOT_IN_OPEN_WAVE);
    /* A started device resumes. */
    ro.n_open = 1;
    assert_int_equal(rollout_decide(&ro, in0, 1), ROLLOUT_OFFER);
    /* Paused: nothing new starts, a started transfer finishes. */
    ro.state = ROLLOUT_STATE_PAUSED;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_PAUSED);
    assert_int_equal(rollout_decide(&ro, in1, 0), ROLLOUT_PAUSED);
    assert_int_equal(rollout_decide(&ro, in0, 1), ROLLOUT_OFFER);
    /* Halted: nothing starts or resumes. */
    ro.state = ROLLOUT_STATE_HALTED;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_HALTED);
    assert_int_equal(rollout_decide(&ro, in0, 1), ROLLOUT_HALTED);
    /* Cancelled: for good. */
    ro.state = ROLLOUT_STATE_CANCELLED;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_CANCELLED);
    assert_int_equal(rollout_decide(&ro, in0, 1), ROLLOUT_CANCELLED);
    /* Resumed by the operator: active again. */
    ro.state = ROLLOUT_STATE_ACTIVE;
    assert_int_equal(rollout_decide(&ro, in0, 0), ROLLOUT_OFFER);
}

static void test_reasons_named(void **state)
{
    int v;
    (void)state;
    for (v = ROLLOUT_OFFER; v <= ROLLOUT_CANCELLED; v++) {
        assert_string_not_equal(rollout_reason((enum rollout_verdict)v), "?");
    }
    assert_string_equal(rollout_reason((enum rollout_verdict)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_place_stable),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_membership_spread),
        cmocka_unit_test(test_wave_edges),
        cmocka_unit_test(test_open_passes),
        cmocka_unit_test(test_open_needs_finished),
        cmocka_unit_test(test_open_min_finished_zero),
        cmocka_unit_test(test_open_needs_success),
        cmocka_unit_test(test_open_needs_soak),
        cmocka_unit_test(test_halt),
        cmocka_unit_test(test_halt_since_resume),
        cmocka_unit_test(test_next_move),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_reasons_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
