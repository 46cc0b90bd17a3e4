/*
 * rollout.h - the wave and halt policy of a staged rollout (fleet issue,
 * point 5): which wave a device belongs to, when the next wave opens, when
 * a rollout halts by itself, and whether one device may start or resume the
 * rollout's image now. Pure: no I/O, no clock (the caller passes `now`), no
 * allocation, so every rule is unit-tested (tests/unit/test_rollout.c) and
 * every store (SQLite, PostgreSQL) applies the same rules. The store keeps
 * the counts and the state; this module only decides. offer.h still decides
 * model, version and "failed before"; a device gets the image only when both
 * say yes.
 *
 * Place of a device (stable, portable: another node computing it in SQL or
 * another language must agree byte for byte):
 *   input  = the rollout id as 8 bytes, little-endian (uint64),
 *            followed by the device id's bytes as sent in HELLO (no
 *            terminator, no length prefix; the fixed-size rollout id keeps
 *            the split unambiguous);
 *   hash   = FNV-1a 64 over input: h = 0xcbf29ce484222325; for each byte b:
 *            h ^= b; h *= 0x100000001b3 (mod 2^64);
 *   place  = h mod ROLLOUT_BP_SCALE, in [0, 10000) basis points.
 *   Vector: rollout 1, device "dev-1": input 01 00 00 00 00 00 00 00 64 65 76
 *   2d 31, hash 0x9c1791e8aa1a7719, place 4441.
 *
 * Waves: cumulative bounds in basis points, strictly increasing, the last
 * at most ROLLOUT_BP_SCALE (percentages 5,25,100 -> 500,2500,10000). A device
 * is in wave k, the first k with place < bound[k]; a device at or past the
 * last bound is in no wave (e.g. waves 5,25,50 never reach half the fleet).
 * Waves open in order and never close; waves 0 .. n_open-1 are open.
 *
 * Opening rule: wave k+1 opens when wave k (which is open) has
 *   1. enough finished devices: finished >= min_finished, or every targeted
 *      device finished (finished >= targeted; so an empty wave passes), and
 *   2. success among finished: updated * 100 >= success_pct * finished
 *      (no finished device counts as success), and
 *   3. soaked: now - opened_at >= soak_s (seconds, caller's clock).
 *   finished = updated + failed. Only an active rollout opens waves.
 *
 * Halt rule: over all waves, failed >= halt_min and
 *   failed * 100 > halt_pct * finished ("passes" halt_pct: strictly more).
 *   Failed = rolled back, boot failed, integrity failure, declined for any
 *   reason but "already running" (the store counts those as updated/up to
 *   date, not failed). A halted rollout stays halted until an operator
 *   resumes it (state back to active) or cancels it.
 *
 * Decision for one device, in order:
 *   cancelled                          -> ROLLOUT_CANCELLED
 *   halted (even if it started)        -> ROLLOUT_HALTED
 *   started (resume of a transfer it began while its wave was open; a
 *   pause lets it finish)              -> ROLLOUT_OFFER
 *   past the last wave (one below 100 % leaves the rest of the model's
 *   devices out, for good)             -> ROLLOUT_NOT_IN_ROLLOUT
 *   paused and not started             -> ROLLOUT_PAUSED
 *   its wave is not open               -> ROLLOUT_NOT_IN_OPEN_WAVE
 *   otherwise                          -> ROLLOUT_OFFER
 */
#ifndef TCPOTA_SERVER_ROLLOUT_H
#define TCPOTA_SERVER_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#define ROLLOUT_BP_SCALE 10000u  /* places and bounds are basis points of this */
#define ROLLOUT_PCT_SCALE 100u   /* percentages (waves, success_pct, halt_pct) */
#define ROLLOUT_MAX_WAVES 16u    /* waves one rollout may have */
#define ROLLOUT_FNV_OFFSET UINT64_C(0xcbf29ce484222325) /* FNV-1a 64 offset basis */
#define ROLLOUT_FNV_PRIME UINT64_C(0x100000001b3) /* FNV-1a 64 prime */
#define ROLLOUT_ID_BYTES 8u      /* the rollout id's share of the hash input */

enum rollout_state {
    ROLLOUT_STATE_ACTIVE = 0,
    ROLLOUT_STATE_PAUSED,    /* by the operator: no new starts, started ones finish */
    ROLLOUT_STATE_HALTED,    /* by the halt rule: nothing starts or resumes */
    ROLLOUT_STATE_CANCELLED, /* by the operator: for good */
};

enum rollout_verdict {
    ROLLOUT_OFFER = 0,
    ROLLOUT_NOT_IN_OPEN_WAVE,
    ROLLOUT_NOT_IN_ROLLOUT,
    ROLLOUT_PAUSED,
    ROLLOUT_HALTED,
    ROLLOUT_CANCELLED,
};

/* The operator's thresholds (see the rules above). */
struct rollout_rules {
    uint32_t min_finished; /* opening: finished devices wave k needs */
    uint32_t success_pct;  /* opening: updated/finished, percent, 0..100 */
    uint32_t soak_s;       /* opening: seconds since wave k opened */
    uint32_t halt_pct;     /* halt: failed/finished must pass this, percent */
    uint32_t halt_min;     /* halt: and at least this many failures */
};

/* One wave as the store counts it. offered/downloading are for display
 * (rollout show); the rules read targeted, updated, failed, opened_at. */
struct rollout_wave {
    uint32_t targeted;    /* devices of the rollout's model/group in this wave */
    uint32_t offered;
    uint32_t downloading;
    uint32_t updated;     /* confirmed on the new image: a success */
    uint32_t failed;      /* see the halt rule for what counts */
    int64_t opened_at;    /* caller's clock, seconds; meaningless if not open */
};

/* A rollout's state and waves. */
struct rollout {
    enum rollout_state state;
    uint32_t n_waves;                     /* 1..ROLLOUT_MAX_WAVES */
    uint16_t bound[ROLLOUT_MAX_WAVES];    /* cumulative, basis points */
    uint32_t n_open;                      /* waves 0..n_open-1 are open */
};

/* FNV-1a 64 of len bytes at data (len 0: the offset basis). */
uint64_t rollout_fnv1a64(const void *data, size_t len);

/* The place of a device in a rollout, in [0, ROLLOUT_BP_SCALE), as specified
 * above. device_id need not be NUL-terminated; NULL is allowed when len is 0. */
uint32_t rollout_place(uint64_t rollout_id, const char *device_id, size_t device_id_len);

/* Fills bound[0..n-1] from cumulative percentages pct[0..n-1]. Returns n, or
 * TCPOTA_ERR_INVAL when n is 0 or above ROLLOUT_MAX_WAVES, a percentage is 0
 * or above 100, or they do not strictly increase; bound is then untouched. */
int rollout_bounds_from_pct(const uint32_t *pct, uint32_t n, uint16_t *bound);

/* The wave holding place: the first k with place < bound[k]; n_waves when
 * the place is past the last bound (the device is in no wave). */
uint32_t rollout_wave_of(const struct rollout *ro, uint32_t place);

/* 1 when the wave after w may open by the opening rule at now, else 0.
 * w must be the last open wave, the first one when first is 1 (the
 * canary: none of whose devices checked in, it is no evidence and opens
 * the next only by hand; a later empty wave opens it after its soak, the
 * waves before it being the evidence). The caller opens the next one
 * (sets its opened_at to now and n_open + 1), only while the rollout is
 * active. */
int rollout_may_open_next(const struct rollout_rules *rules, const struct rollout_wave *w,
                          int first, int64_t now);

/* 1 when the halt rule holds for the failures and successes summed over
 * waves[0..n-1], else 0. The caller then sets the state to halted. */
int rollout_should_halt(const struct rollout_rules *rules, const struct rollout_wave *waves,
                        uint32_t n);

/* The halt rule over what happened since the rollout was last resumed from
 * a halt: the counts of waves[0..n-1] less base_failed failed and
 * base_finished finished devices, the counts at that resume (0 and 0 when
 * it never halted), so that the failures that halted it do not halt it
 * again. Counts below the bases count as none. 1 when it holds, else 0. */
int rollout_halt_due(const struct rollout_rules *rules, const struct rollout_wave *waves,
                     uint32_t n, uint32_t base_failed, uint32_t base_finished);

/* What the rules call for now (apply_rules, fleet.c): nothing, a halt, or
 * the opening of the wave after the last open one. */
enum rollout_move {
    ROLLOUT_HOLD = 0,
    ROLLOUT_HALT,
    ROLLOUT_OPEN_NEXT,
};

/* The move for rollout ro at now, waves[0..ro->n_waves) its counts and the
 * bases as rollout_halt_due() takes them: only an active rollout moves; the
 * halt rule goes before the opening rule, which reads the last open wave.
 * ro->n_open must be at least 1 (a rollout opens its first wave at once). */
enum rollout_move rollout_next_move(const struct rollout *ro, const struct rollout_rules *rules,
                                    const struct rollout_wave *waves, uint32_t base_failed,
                                    uint32_t base_finished, int64_t now);

/* The decision for one device at place (rollout_place()), started != 0 when
 * it already began this rollout's image (a resume). See the order above. */
enum rollout_verdict rollout_decide(const struct rollout *ro, uint32_t place, int started);

/* Room for rollout_explain's longest sentence. */
#define ROLLOUT_STATUS_MAX 1024u

/* Why ro stands as it does, for an operator, into buf (cap > 0): a
 * halted one's failures against its rules and what to do; an active one's
 * next wave with each condition of its opening (and, when the last open
 * wave has finished every device below --success-pct, that it never
 * will, and the command that opens it, naming rollout id); paused,
 * cancelled, or every wave open. Failures count from base
 * (a resume), as the halt rule counts them. Returns the length written. */
size_t rollout_explain(uint64_t id, const struct rollout *ro,
                       const struct rollout_rules *rules, const struct rollout_wave *waves, uint32_t base_failed,
                       uint32_t base_finished, int64_t now, char *buf, size_t cap);

/* A short English reason for a verdict, for the log and NO_UPDATE. */
const char *rollout_reason(enum rollout_verdict v);

/* Adds rollout id to the set ids[0..*n) unless it is there already or the
 * set holds cap (the rollouts of the transfers a node runs: fleet.c). */
static inline void rollout_ids_add(uint64_t *ids, size_t *n, size_t cap, uint64_t id)
{
    size_t k;

    for (k = 0; k < *n && ids[k] != id; k++) {
    }
    if (k == *n && *n < cap) ids[(*n)++] = id;
}

#endif
