/*
 * fleet_internal.h - what fleet.c shares with the other ways devices reach
 * fleet mode (http_ota.c: HTTP downloads), so that every device is decided
 * by the same rules (offer policy, rollout waves and halts) and its steps
 * are recorded the same way. Not for use outside server/.
 */
#ifndef TCPOTA_SERVER_FLEET_INTERNAL_H
#define TCPOTA_SERVER_FLEET_INTERNAL_H

#include "metrics.h"
#include "store.h"

#include "tcpota/server.h"

#include <stddef.h>
#include <stdint.h>

struct server;
struct image;

/* Who a step is about: the device, the rollout its image came from (0:
 * none: the step counts in no rollout), the image's size. */
struct fleet_who {
    const char *dev;
    uint64_t rollout_id;
    uint32_t size;
};

/* Submits r to the store after the steps gathered for its device (a
 * check-in reads what they wrote), with r->now set. Returns 0, or -1 after
 * logging why and freeing r (the store cannot even queue it). */
int fleet_submit(struct server *srv, struct store_req *r);

/* Why the store did not decide the check-in r it failed, as
 * tcpota_checkins_deferred_total counts it (fleet.c, http_ota_decide.c). */
static inline enum metrics_deferred fleet_deferred_why(const struct store_req *r)
{
    return r->rc == STORE_E_UNAVAILABLE ? METRICS_DB_UNREACHABLE : METRICS_DB_ERROR;
}

/* Called first by the done of a STORE_CHECKIN r: 1 when r's rollout image
 * is not loaded yet. Its load then runs off the loop (or already does), r
 * waits for it, and r->done runs again once it has ended (or at stop),
 * when this returns 0; r->parked says so meanwhile. 0 too when r needs no
 * image, or no job could be started (fleet_decide then loads it on the
 * loop). */
int fleet_park(struct server *srv, struct store_req *r);

/* A step for device_id in r's rollout found after the store read r (an
 * HTTP download's outcome, known once the device asks again), added to
 * the counts r holds as the store will add it (a finished device does not
 * go back), so that the decision on r already counts it: a failure that
 * calls for a halt halts at the request that revealed it, not at the next
 * check-in. */
void fleet_count_now(struct store_req *r, const char *device_id, enum store_ro_status to);

/* The decision for a device whose STORE_CHECKIN r completed (h: what it
 * said; failed: it failed the rollout's image, whatever the store holds):
 * the image to offer (the fleet's reference: take one with image_ref()),
 * or NULL with the reason in why, and the state to record in *st
 * (STORE_ST_COUNT: record nothing, e.g. keep "rolled-back"); *about is the
 * rollout's image as the registry has it, offered or not, loaded or not
 * (NULL: no rollout applies), *rollout_id the
 * rollout's id (untouched when none applies). A halt or a wave opening the
 * counts call for is written first and applies to this decision.
 * *why_code (may be NULL) gets the NULL answer's enum tcpota_why, for the
 * device's NO_UPDATE. */
struct image *fleet_decide(struct server *srv, struct store_req *r,
                           const struct tcpota_srv_hello *h, int failed, uint64_t *rollout_id,
                           enum store_dev_state *st, const struct store_image **about, char *why,
                           size_t cap, uint16_t *why_code);

/* Whether recording state st (about the image about, for why) changes what the store
 * holds for the device of check-in r: repeated check-ins then write nothing
 * but their last-seen time, and the history keeps one line per change. A
 * device confirmed on an image stays "updated" when it later runs it: no
 * change, unless rollout_id (the rollout decided under, 0: none) has not
 * counted it yet (store_step_ro_status: the store then keeps the row and
 * counts the device in that rollout, once). */
int fleet_changes(const struct store_req *r, uint64_t rollout_id, enum store_dev_state st,
                  const struct store_image *about, const char *why);

/* Whether device id has a secret (it authenticates as a tcpota device). */
int fleet_has_secret(const struct server *srv, const char *id);

/* Says device d's record on the API's event stream (a "device" event):
 * its first check-in, a report, a step recorded. */
void fleet_notify_device(struct server *srv, const struct store_device *d);

/* Records a step of a device's update: gathered and written with the
 * others (fleet.h); durable: a final step, written at once. progress: a
 * plain progress step, which replaces the device's pending one of the same
 * image. image_id, failed_id, reason: NULL when none. */
void fleet_step(struct server *srv, const struct fleet_who *who, enum store_dev_state st,
                const uint8_t *image_id, const uint8_t *failed_id, uint32_t bytes,
                const char *reason, int durable, int progress);

#endif
