/* http_ota_decide.c - the answer to an HTTP download request once its
 * check-in is stored: the device's earlier download judged, then the same
 * decision as a tcpota device's (see http_ota.h). */
#include "http_ota_internal.h"

#include "fleet.h"
#include "fleet_internal.h"
#include "log.h"
#include "metrics.h"
#include "offer.h" /* offer_version_is */
#include "server_internal.h"

#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#define OTA_RETRY_S "30"             /* Retry-After when the store failed */
#define OTA_REASON_HEADER "X-Tcpota-Reason"

/* What the device's earlier download says now that it asks again: it runs
 * the image (updated), or it was sent every byte and starts over on its old
 * version (failed: rolled back, or the image was rejected). `restart`: the
 * request is a new download from byte 0 (a GET without a Range, or with
 * one from 0); a HEAD or a range from further in says nothing of the
 * kind. Returns 1 for a failure. */
static int outcome_of_last(struct dl *d, struct store_req *r, int restart)
{
    struct store_checkin_out *o = r->u.checkin.out;
    struct store_device *dev = &o->dev;
    struct fleet_who w = {d->id, o->rollout.id, o->image.size};
    char why[2 * STORE_REASON_MAX]; /* the store keeps STORE_REASON_MAX bytes of it */

    if (!r->u.checkin.has_rollout || strcmp(dev->image, o->image.idhex) != 0 ||
        (dev->state != STORE_ST_VERIFIED && dev->state != STORE_ST_DOWNLOADING)) {
        return 0;
    }
    if (offer_version_is(d->version, o->image.version)) {
        snprintf(why, sizeof(why), "runs %s (%s)", d->version, HTTP_OTA_VERSION_HEADER);
        metrics_event(o->rollout.id, o->image.id, METRICS_UPDATED);
        fleet_step(d->ota->srv, &w, STORE_ST_UPDATED, o->image.id, NULL, o->image.size, why, 1, 0);
        fleet_count_now(r, d->id, STORE_RO_UPDATED);
        dev->state = STORE_ST_UPDATED;
        say_dev(d->ota->srv, LOG_LV_INFO, d->id, d->peer, "http: report: runs %s now: updated",
                d->version);
        return 0;
    }
    if (dev->state != STORE_ST_VERIFIED || !restart) {
        return 0;
    }
    snprintf(why, sizeof(why), "sent every byte of %s, asks again on %s: rolled back or rejected it",
             o->image.version, d->version);
    metrics_event(o->rollout.id, o->image.id, METRICS_FAILED);
    d->ota->srv->stats.http_failed++;
    fleet_step(d->ota->srv, &w, STORE_ST_FAILED, o->image.id, o->image.id, 0, why, 1, 0);
    fleet_count_now(r, d->id, STORE_RO_FAILED);
    dev->state = STORE_ST_FAILED;
    say_dev(d->ota->srv, LOG_LV_ERROR, d->id, d->peer, "http: %s; not offered again", why);
    return 1;
}

/* 1 when the registry's row dev says the device holds bytes of its image
 * (dev->image): it downloads, verified or waits on it (or, updated_too,
 * runs it). */
static int holds_bytes(const struct store_device *dev, int updated_too)
{
    return dev->state == STORE_ST_DOWNLOADING || dev->state == STORE_ST_VERIFIED ||
           dev->state == STORE_ST_WAITING || (updated_too && dev->state == STORE_ST_UPDATED);
}

/* The bytes of image idhex (size bytes) the registry's row dev says the
 * device has (holds_bytes), else 0. */
static uint32_t bytes_held(const struct store_device *dev, const char *idhex, uint32_t size,
                           int updated_too)
{
    return holds_bytes(dev, updated_too) && strcmp(dev->image, idhex) == 0 && dev->bytes <= size
               ? (uint32_t)dev->bytes
               : 0;
}

void ota_checkin_done(struct store_req *r)
{
    struct dl *d = r->arg;
    struct server *srv;
    struct tcpota_srv_hello h;
    const struct store_image *about;
    struct image *img;
    struct http_range rg;
    enum store_dev_state st;
    char why[160], etag[2 * TCPOTA_ID_LEN + 3], retry[16], other[2 * TCPOTA_ID_LEN + 1] = "";
    char mixed[200 + TCPOTA_MAX_NAME];
    int failed = 0, restart = 0;
    uint16_t why_code;

    if (d->ota && d->req && fleet_park(d->ota->srv, r)) {
        return; /* decided once its image is loaded (d->sr still r: an orphan waits for it) */
    }
    d->sr = NULL;
    if (!d->ota || !d->req) { /* orphaned, or the client went away */
        store_req_free(r);
        if (d->ota) ota_dl_free(d);
        else free(d);
        return;
    }
    srv = d->ota->srv;
    if (r->rc < 0) {
        say_dev(srv, LOG_LV_ERROR, d->id, d->peer, "http: store error: %s", store_err_logged(r));
        metrics_deferred(METRICS_HTTP, fleet_deferred_why(r));
        ota_add_header(d->req, "Retry-After", OTA_RETRY_S);
        ota_reply_error(d->req, 503, "the server's database failed; try again in %s s", OTA_RETRY_S);
        store_req_free(r);
        ota_dl_free(d);
        return;
    }
    metrics_checkin(METRICS_HTTP);
    if (r->u.checkin.is_new) {
        /* A device's first check-in is a device event, as a tcpota
         * device's is (a hostile trial: a HEAD registered one unseen) */
        fleet_notify_device(srv, &r->u.checkin.out->dev);
    }
    if (r->u.checkin.has_rollout) {
        struct store_image *si = &r->u.checkin.out->image;
        snprintf(etag, sizeof(etag), "\"%s\"", si->idhex);
        /* not a 416: from the end or past it (curl -C - on a whole file) */
        int rs = http_range_decide(d->has_range ? d->range : NULL,
                                   d->has_if_range ? d->if_range : NULL, etag, si->size, &rg);
        restart = !d->head && (rs == 200 || rs == 206) && rg.first == 0;
    }
    failed = outcome_of_last(d, r, restart);
    memset(&h, 0, sizeof(h));
    h.device_id = d->id;
    h.model = d->model;
    /* The offer's "runs this image" (no running id over HTTP: by version)
     * as outcome_of_last judges it: else "v2.0.0" of image 2.0.0 was told
     * "the same version built differently", or, with --allow-downgrade,
     * sent the image again at every check-in (a review). */
    h.version = r->u.checkin.has_rollout && offer_version_is(d->version, r->u.checkin.out->image.version)
                    ? r->u.checkin.out->image.version
                    : d->version;
    img = fleet_decide(srv, r, &h, failed, &d->rollout_id, &st, &about, why, sizeof(why), &why_code);
    if (!img) {
        if (fleet_changes(r, d->rollout_id, st, about, why)) {
            const struct store_device *dev = &r->u.checkin.out->dev;
            struct fleet_who w = {d->id, d->rollout_id, about ? about->size : 0};
            /* What it has of that image stays recorded: a device that asks
             * during a halt, and again after the resume with a Range from
             * where it got, completes it (a trial's lost its 1.8 MB and
             * was never counted as having the image). */
            uint32_t kept = st == STORE_ST_WAITING && about
                                ? bytes_held(dev, about->idhex, about->size, 0)
                                : 0;
            fleet_step(srv, &w, st, about ? about->id : NULL, NULL, kept, why, 0, 0);
        }
        say_dev(srv, LOG_LV_INFO, d->id, d->peer, "http: decision: %s: %s",
                st == STORE_ST_WAITING ? "waiting" : "no update", why);
        ota_add_header(d->req, OTA_REASON_HEADER, why);
        if (why_code == TCPOTA_WHY_UNSERVABLE) {
            /* Not "nothing for you" (204): an error esp_https_ota retries. */
            snprintf(retry, sizeof(retry), "%u", FLEET_IMAGE_RETRY_S);
            ota_add_header(d->req, "Retry-After", retry);
            ota_reply_error(d->req, 503, "%s; try again in %s s", why, retry);
        } else {
            /* Its connection ends, as a refusal's does (reply_error): kept
             * alive, a peer's check-ins held slots past the unauthenticated
             * cap (a review); a device checks in again at its interval. */
            ota_add_header(d->req, "Connection", "close");
            evhttp_send_reply(d->req, 204, NULL, NULL);
        }
        store_req_free(r);
        ota_dl_free(d);
        return;
    }
    /* What the registry says it had of this image: a range from further on
     * completes the image only on top of it (reach(), http_ota_send.c).
     * After a cut seen here, up to what was written then: the device may
     * have received more than its TCP was seen to acknowledge. */
    {
        const struct store_device *dev = &r->u.checkin.out->dev;
        const struct ota_cut *cut = ota_cut_slot(d->ota, d->id);
        d->had = bytes_held(dev, img->idhex, img->size, 1);
        if (strcmp(dev->image, img->idhex) != 0 && dev->bytes > 0 && holds_bytes(dev, 0)) {
            snprintf(other, sizeof(other), "%s", dev->image);
        }
        if (d->had && cut && strcmp(cut->id, d->id) == 0 &&
            memcmp(cut->image, img->desc.id, TCPOTA_ID_LEN) == 0 && cut->written > d->had &&
            cut->written <= img->size) {
            d->had = cut->written;
        }
    }
    store_req_free(r);
    snprintf(etag, sizeof(etag), "\"%s\"", img->idhex);
    http_range_decide(d->has_range ? d->range : NULL, d->has_if_range ? d->if_range : NULL, etag,
                      img->size, &rg);
    if (rg.status == 206 && rg.first > 0 && !d->has_if_range && other[0]) {
        /* The bytes before the range are another image's, by the registry
         * (a new rollout came between the device's download and this
         * resume). esp_https_ota sends no If-Range, and IDF 5.5 takes a 200
         * for the rest of what it has (a mixed image, failed at its end);
         * a 416 makes 5.5 and 6.0 alike start over from byte 0. */
        rg.status = 416;
        snprintf(mixed, sizeof(mixed), "the device's bytes before byte %llu are of image %.16s..."
                 " (its download in the registry), not of %s: start over from byte 0",
                 (unsigned long long)rg.first, other, img->version);
        rg.why = mixed;
    }
    if (rg.status == 416) {
        char cr[40];
        snprintf(cr, sizeof(cr), "bytes */%u", img->size);
        ota_add_header(d->req, "Content-Range", cr);
        ota_add_header(d->req, "ETag", etag);
        ota_refuse(d->ota, d, d->req, 416, "%s (%s; the image has %u bytes)", rg.why, d->range,
                   img->size);
        ota_dl_free(d);
        return;
    }
    ota_start(d, img, &rg, etag);
}
