/* rollout.c - the wave and halt policy of a staged rollout (see rollout.h). */
#include "rollout.h"

#include "tcpota/tcpota.h"

#include <stdio.h>
#include <string.h>

/* One rule for the hash, used by both public functions. */
static uint64_t fnv1a64_update(uint64_t h, const uint8_t *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= ROLLOUT_FNV_PRIME;
    }
    return h;
}

uint64_t rollout_fnv1a64(const void *data, size_t len)
{
    return fnv1a64_update(ROLLOUT_FNV_OFFSET, data, len);
}

uint32_t rollout_place(uint64_t rollout_id, const char *device_id, size_t device_id_len)
{
    uint8_t le[ROLLOUT_ID_BYTES];
    uint64_t h;
    size_t i;

    /* Byte by byte, little-endian, so every host and every SQL node agree. */
    for (i = 0; i < ROLLOUT_ID_BYTES; i++) {
        le[i] = (uint8_t)(rollout_id >> (8 * i));
    }
    h = fnv1a64_update(ROLLOUT_FNV_OFFSET, le, sizeof(le));
    h = fnv1a64_update(h, (const uint8_t *)device_id, device_id_len);
    return (uint32_t)(h % ROLLOUT_BP_SCALE);
}

int rollout_bounds_from_pct(const uint32_t *pct, uint32_t n, uint16_t *bound)
{
    uint32_t i;

    if (n == 0 || n > ROLLOUT_MAX_WAVES) {
        return TCPOTA_ERR_INVAL;
    }
    for (i = 0; i < n; i++) {
        if (pct[i] == 0 || pct[i] > ROLLOUT_PCT_SCALE || (i > 0 && pct[i] <= pct[i - 1])) {
            return TCPOTA_ERR_INVAL;
        }
    }
    for (i = 0; i < n; i++) {
        bound[i] = (uint16_t)(pct[i] * (ROLLOUT_BP_SCALE / ROLLOUT_PCT_SCALE));
    }
    return (int)n;
}

uint32_t rollout_wave_of(const struct rollout *ro, uint32_t place)
{
    uint32_t k;

    for (k = 0; k < ro->n_waves; k++) {
        if (place < ro->bound[k]) {
            return k;
        }
    }
    return ro->n_waves;
}

/* The three conditions of opening the wave after w, one rule each (read
 * by rollout_may_open_next and rollout_explain). */
/* The finished devices a wave needs: min_finished, but one at least in
 * the first wave (the canary): --min-finished 0 opened the second wave
 * after the soak with none of the first finished (a trial). Later waves
 * may open on their soak alone, the waves before them being the evidence. */
static uint32_t finished_needed(const struct rollout_rules *rules, int first)
{
    return first && rules->min_finished == 0 ? 1 : rules->min_finished;
}

static int enough_finished(const struct rollout_rules *rules, const struct rollout_wave *w,
                           int first)
{
    uint64_t finished = (uint64_t)w->updated + w->failed;

    /* "All of it" needs one device at least in the first wave: one none of
     * whose devices has checked in (a small first wave of a small fleet
     * may hold none) is no evidence, and opens the next only by hand. */
    return finished >= finished_needed(rules, first) ||
           ((w->targeted > 0 || !first) && finished >= w->targeted);
}

static int successful(const struct rollout_rules *rules, const struct rollout_wave *w)
{
    uint64_t finished = (uint64_t)w->updated + w->failed;

    return (uint64_t)w->updated * ROLLOUT_PCT_SCALE >= (uint64_t)rules->success_pct * finished;
}

static int soaked(const struct rollout_rules *rules, const struct rollout_wave *w, int64_t now)
{
    /* now - opened_at >= soak_s, in unsigned arithmetic: the difference of
     * two int64 may not fit in one, but with now >= opened_at it fits in a
     * uint64. */
    return now >= w->opened_at && (uint64_t)now - (uint64_t)w->opened_at >= rules->soak_s;
}

int rollout_may_open_next(const struct rollout_rules *rules, const struct rollout_wave *w,
                          int first, int64_t now)
{
    return enough_finished(rules, w, first) && successful(rules, w) && soaked(rules, w, now);
}

int rollout_should_halt(const struct rollout_rules *rules, const struct rollout_wave *waves,
                        uint32_t n)
{
    uint64_t failed = 0;
    uint64_t finished = 0;
    uint32_t k;

    for (k = 0; k < n; k++) {
        failed += waves[k].failed;
        finished += (uint64_t)waves[k].updated + waves[k].failed;
    }
    if (failed < rules->halt_min) {
        return 0;
    }
    return failed * ROLLOUT_PCT_SCALE > (uint64_t)rules->halt_pct * finished;
}

int rollout_halt_due(const struct rollout_rules *rules, const struct rollout_wave *waves,
                     uint32_t n, uint32_t base_failed, uint32_t base_finished)
{
    struct rollout_wave since;
    uint32_t k, failed = 0, finished = 0;

    for (k = 0; k < n; k++) {
        failed += waves[k].failed;
        finished += waves[k].failed + waves[k].updated;
    }
    memset(&since, 0, sizeof(since));
    since.failed = failed > base_failed ? failed - base_failed : 0;
    finished = finished > base_finished ? finished - base_finished : 0;
    since.updated = finished > since.failed ? finished - since.failed : 0;
    return rollout_should_halt(rules, &since, 1);
}

enum rollout_move rollout_next_move(const struct rollout *ro, const struct rollout_rules *rules,
                                    const struct rollout_wave *waves, uint32_t base_failed,
                                    uint32_t base_finished, int64_t now)
{
    if (ro->state != ROLLOUT_STATE_ACTIVE) {
        return ROLLOUT_HOLD;
    }
    if (rollout_halt_due(rules, waves, ro->n_waves, base_failed, base_finished)) {
        return ROLLOUT_HALT;
    }
    if (ro->n_open < ro->n_waves &&
        rollout_may_open_next(rules, &waves[ro->n_open - 1], ro->n_open == 1, now)) {
        return ROLLOUT_OPEN_NEXT;
    }
    return ROLLOUT_HOLD;
}

enum rollout_verdict rollout_decide(const struct rollout *ro, uint32_t place, int started)
{
    if (ro->state == ROLLOUT_STATE_CANCELLED) {
        return ROLLOUT_CANCELLED;
    }
    if (ro->state == ROLLOUT_STATE_HALTED) {
        return ROLLOUT_HALTED;
    }
    if (started) {
        return ROLLOUT_OFFER;
    }
    if (rollout_wave_of(ro, place) >= ro->n_waves) {
        /* Not "not yet": no wave of it will ever hold this device (a
         * trial's was told to wait, and checked in for nothing). */
        return ROLLOUT_NOT_IN_ROLLOUT;
    }
    if (ro->state == ROLLOUT_STATE_PAUSED) {
        return ROLLOUT_PAUSED;
    }
    if (rollout_wave_of(ro, place) >= ro->n_open) {
        return ROLLOUT_NOT_IN_OPEN_WAVE;
    }
    return ROLLOUT_OFFER;
}

/* Failed and finished devices of the rollout since base (a resume). */
static void count_since(const struct rollout_wave *waves, uint32_t n, uint32_t base_failed,
                        uint32_t base_finished, uint64_t *failed, uint64_t *finished)
{
    uint32_t k;

    *failed = *finished = 0;
    for (k = 0; k < n; k++) {
        *failed += waves[k].failed;
        *finished += (uint64_t)waves[k].failed + waves[k].updated;
    }
    *failed = *failed > base_failed ? *failed - base_failed : 0;
    *finished = *finished > base_finished ? *finished - base_finished : 0;
}

/* The success condition's figure for rollout_explain, e.g. "75 %: no". A
 * rate over no finished device is none: the condition then holds only
 * because there is nothing to count, which says so instead of "0 %: yes". */
static void success_said(const struct rollout_rules *rules, const struct rollout_wave *w,
                         char *buf, size_t cap)
{
    uint64_t done = (uint64_t)w->updated + w->failed;

    if (done == 0) {
        snprintf(buf, cap, "%s", w->targeted ? "none finished yet" : "the wave has no devices");
        return;
    }
    snprintf(buf, cap, "%llu %%: %s", (unsigned long long)w->updated * ROLLOUT_PCT_SCALE / done,
             successful(rules, w) ? "yes" : "no");
}

size_t rollout_explain(uint64_t id, const struct rollout *ro,
                       const struct rollout_rules *rules, const struct rollout_wave *waves, uint32_t base_failed,
                       uint32_t base_finished, int64_t now, char *buf, size_t cap)
{
    const struct rollout_wave *w;
    uint64_t failed, finished, done;
    char rate[32];
    int n = 0;

    count_since(waves, ro->n_waves, base_failed, base_finished, &failed, &finished);
    switch (ro->state) {
    case ROLLOUT_STATE_CANCELLED:
        n = snprintf(buf, cap, "cancelled: it offers nothing, for good");
        break;
    case ROLLOUT_STATE_PAUSED:
        n = snprintf(buf, cap, "paused by an operator: devices that began the image finish it, "
                               "no other starts; resume it to go on");
        break;
    case ROLLOUT_STATE_HALTED:
        n = snprintf(buf, cap, "halted itself: %llu of %llu finished devices failed%s, more than "
                               "%u %% (--halt-at) and at least %u (--halt-min); look at the "
                               "failures (tcpota device list --state S for each of failed, "
                               "rolled-back, boot-failed and declined: all count), then resume "
                               "it (failures count from then) or cancel it",
                     (unsigned long long)failed, (unsigned long long)finished,
                     base_finished ? " since it was resumed" : "", rules->halt_pct,
                     rules->halt_min);
        break;
    case ROLLOUT_STATE_ACTIVE:
        if (ro->n_open >= ro->n_waves) {
            uint32_t last = ro->bound[ro->n_waves - 1];
            n = last >= ROLLOUT_BP_SCALE
                    ? snprintf(buf, cap, "every wave is open")
                    : snprintf(buf, cap, "every wave is open; its last reaches %u.%02u %% of the"
                                         " model's devices, the others are never offered this"
                                         " image (a new rollout of it with a last wave of 100"
                                         " reaches them)", last / 100, last % 100);
            break;
        }
        w = &waves[ro->n_open - 1];
        done = (uint64_t)w->updated + w->failed;
        success_said(rules, w, rate, sizeof(rate));
        n = snprintf(buf, cap, "wave %u opens when wave %u has %u finished device%s or all of them "
                               "(%llu of %u: %s), %u %% of them updated (%s) and was open "
                               "%u s (%s)",
                     ro->n_open + 1, ro->n_open, finished_needed(rules, ro->n_open == 1),
                     finished_needed(rules, ro->n_open == 1) == 1 ? "" : "s",
                     (unsigned long long)done,
                     w->targeted, enough_finished(rules, w, ro->n_open == 1) ? "yes" : "no",
                     rules->success_pct, rate, rules->soak_s, soaked(rules, w, now) ? "yes" : "no");
        if (n >= 0 && (size_t)n < cap && ro->n_open == 1 && !enough_finished(rules, w, 1) &&
            w->targeted == 0) {
            n += snprintf(buf + n, cap - (size_t)n,
                          "; the first wave holds no device yet (with few devices a small wave "
                          "may hold none), so it gives no evidence: open the next by hand when "
                          "you are ready (tcpota rollout open-wave %llu)",
                          (unsigned long long)id);
        } else if (n >= 0 && (size_t)n < cap && enough_finished(rules, w, ro->n_open == 1) &&
                   done >= w->targeted && !successful(rules, w)) {
            n += snprintf(buf + n, cap - (size_t)n,
                          "; every device of the wave has finished, so it will not open by "
                          "itself: open it anyway (tcpota rollout open-wave %llu), or cancel "
                          "this rollout",
                          (unsigned long long)id);
        }
        break;
    }
    if (n >= 0 && (size_t)n < cap &&
        (ro->state == ROLLOUT_STATE_HALTED || ro->state == ROLLOUT_STATE_CANCELLED)) {
        /* Its downloading count is devices that began the image and did not
         * finish it, not transfers running: a halt or a cancel stops those. */
        uint64_t begun = 0, offered = 0;
        uint32_t i;
        for (i = 0; i < ro->n_waves; i++) {
            begun += waves[i].downloading;
            offered += waves[i].offered;
        }
        if (begun && ro->state == ROLLOUT_STATE_HALTED) {
            n += snprintf(buf + n, cap - (size_t)n,
                          "; %llu device%s began the image and %s not finished it (its "
                          "downloading count, not transfers running): one sent every byte "
                          "before the halt may still finish, the others go on where they "
                          "stopped once it is resumed",
                          (unsigned long long)begun, begun == 1 ? "" : "s",
                          begun == 1 ? "has" : "have");
        } else if (begun) {
            /* Its counts stopped at the cancel: a transfer that ended after
             * it (one sent whole, one another node served) is not in them
             * (a trial: "have not finished it" of devices that had). */
            n += snprintf(buf + n, cap - (size_t)n,
                          "; %llu device%s had begun the image and not finished it when it was "
                          "cancelled (its downloading count, kept as it was then): what %s "
                          "after that is not counted here, but in a newer rollout of the image "
                          "that holds it (tcpota device show tells where it stands)",
                          (unsigned long long)begun, begun == 1 ? "" : "s",
                          begun == 1 ? "that device did" : "they did");
        }
        if (offered && n >= 0 && (size_t)n < cap) {
            /* A transfer streams before its device's ACCEPT is read (the
             * server reads a transfer's input about once a second): one the
             * halt stopped within that second counts as offered, though the
             * device may hold some of the image (a trial: 12 such). */
            int one = offered == 1;

            n += snprintf(buf + n, cap - (size_t)n,
                          "; %llu device%s as offered, which may include transfers stopped "
                          "before the server read their acceptance (it reads a transfer's "
                          "acknowledgements about once a second): such a device may hold part of "
                          "the image%s",
                          (unsigned long long)offered, one ? " counts" : "s count",
                          ro->state == ROLLOUT_STATE_HALTED ? ", and goes on from there once the "
                          "rollout is resumed" : "");
        }
    }
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

const char *rollout_reason(enum rollout_verdict v)
{
    switch (v) {
    case ROLLOUT_OFFER: return "in an open wave of the rollout";
    case ROLLOUT_NOT_IN_OPEN_WAVE: return "its wave of the rollout is not open yet";
    case ROLLOUT_NOT_IN_ROLLOUT:
        return "its last wave leaves out the rest of the model's devices, this one among them";
    case ROLLOUT_PAUSED: return "the rollout is paused by the operator";
    case ROLLOUT_HALTED:
        return "the rollout halted itself: too many devices failed "
               "(an operator resumes or cancels it)";
    case ROLLOUT_CANCELLED: return "the rollout was cancelled";
    }
    return "?";
}
