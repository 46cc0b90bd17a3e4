/* http_ota_send.c - the body of an HTTP download, window by window, and
 * where it stopped (see http_ota.h). */
#include "http_ota_internal.h"

#include "fleet.h"
#include "fleet_internal.h"
#include "log.h"
#include "metrics.h"
#include "server_internal.h"
#include "sock.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#define OTA_WINDOW (256u * 1024u)    /* bytes queued at a time (progress is known per window) */
#define OTA_ACK_POLL_MS 20           /* after the last byte: how often to look for its ack */
/* After this many polls without a byte acknowledged (--idle-timeout) the
 * client is given up. */
#define OTA_ACK_POLLS(srv) ((srv)->o->idle_timeout_s * 1000u / OTA_ACK_POLL_MS)

static struct fleet_who who_of(const struct dl *d)
{
    struct fleet_who w = {d->id, d->rollout_id, d->img ? d->img->size : 0};
    return w;
}

static void window_done(struct evhttp_connection *evcon, void *arg);

/* Queues the next window of the range (by reference to the image's file).
 * Out of memory, it closes the connection rather than send a body with a
 * hole (d is then freed: callers call it last). */
static void send_window(struct dl *d)
{
    uint32_t len = d->last + 1 - d->queued;

    if (len > OTA_WINDOW) len = OTA_WINDOW;
    if (image_add_payload(d->buf, d->img, d->queued, len) < 0) {
        say_dev(d->ota->srv, LOG_LV_ERROR, d->id, d->peer,
                "http: out of memory queueing image data; closing "
                "(the device resumes with a Range request)");
        evhttp_connection_free(d->evcon); /* http_ota_closed() records where it stopped */
        return;
    }
    d->queued += len;
    evhttp_send_reply_chunk_with_cb(d->req, d->buf, window_done, d);
}

/* How far the device has the image from its first byte: what its TCP
 * acknowledged of a range that starts within what it had before (or at 0:
 * it starts over); of a range that starts further on (a tail asked for on
 * its own), only what it had: the bytes in between never reached it. */
static uint32_t reach(const struct dl *d)
{
    return d->first <= d->had ? d->acked : d->had;
}

/* Every byte of the range reached the peer: the end of the image makes the
 * device "verified" when it has every byte before the range too (of a
 * range that ends earlier, only its progress is noted). */
static void record_done(struct dl *d)
{
    struct server *srv = d->ota->srv;
    struct fleet_who w = who_of(d);

    if (d->last + 1 == d->img->size && d->first > d->had) {
        fleet_step(srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, reach(d), NULL, 0, 1);
        say_dev(srv, LOG_LV_INFO, d->id, d->peer,
                "http: bytes %u-%u of %s sent, but the device is not known "
                "to have bytes 0-%u (it had %u): not counted as having the image", d->first,
                d->last, d->img->version, d->first - 1, d->had);
    } else if (d->last + 1 == d->img->size) {
        metrics_event(d->rollout_id, d->img->desc.id, METRICS_COMPLETED);
        srv->stats.http_whole++;
        fleet_step(srv, &w, STORE_ST_VERIFIED, d->img->desc.id, NULL, d->img->size,
                   "every byte sent over HTTP", 1, 0);
        say_dev(srv, LOG_LV_INFO, d->id, d->peer, "http: every byte of %s sent (bytes %u-%u of %u)",
                d->img->version, d->first, d->last, d->img->size);
    } else {
        fleet_step(srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, reach(d), NULL, 0, 1);
    }
}

/* The range is done: recorded, and the reply ended. */
static void finished(struct dl *d)
{
    struct evhttp_request *req = d->req;

    record_done(d);
    ota_dl_free(d); /* before the reply ends: that may close the connection (http_ota_closed()) */
    evhttp_send_reply_end(req);
}

/* The socket of d's connection, or -1. */
static int dl_fd(const struct dl *d)
{
    struct bufferevent *bev = d->evcon ? evhttp_connection_get_bufferevent(d->evcon) : NULL;

    return bev ? (int)bufferevent_getfd(bev) : -1;
}

/* Bytes written to d's socket that its peer has not acknowledged yet
 * (sock.h), or -1. */
static long unacked(const struct dl *d)
{
    return sock_unacked(dl_fd(d));
}

/* The byte up to which d's range went to the socket: d->sent (its windows
 * written whole), and of the window being written what left the
 * connection's buffer. A connection cut before its first window was
 * written whole (a slow reader, a busy machine) delivered bytes all the
 * same: counted as 0 before, so that the device's next range, from where
 * it got to, was taken for a tail asked for on its own. */
static uint32_t written_to(const struct dl *d)
{
    struct bufferevent *bev = d->evcon ? evhttp_connection_get_bufferevent(d->evcon) : NULL;
    size_t left, unsent = d->queued - d->sent;

    if (!bev) return d->sent;
    left = evbuffer_get_length(bufferevent_get_output(bev)); /* the headers too, until written */
    return left >= unsent ? d->sent : d->queued - (uint32_t)left;
}

#define OTA_TLS_RECORD_MAX 16384u /* a TLS record's plaintext, at most (RFC 8446, 5.1) */

/* d->acked from the socket (kept when the socket cannot tell). */
static void update_acked(struct dl *d)
{
    struct bufferevent *bev = d->evcon ? evhttp_connection_get_bufferevent(d->evcon) : NULL;
    long n = unacked(d);
    uint32_t out = written_to(d), acked;
    unsigned long behind;

    if (n < 0) return;
    /* Under TLS the queue holds record overhead too, and the device can
     * read no byte of a record it has not received whole: while bytes are
     * unacknowledged, one record's worth more is not counted (a trial's
     * HTTPS reader had 393,216 bytes where the registry said 396,559).
     * Never below first. */
    behind = (unsigned long)n + (n && bev && bufferevent_openssl_get_ssl(bev) ? OTA_TLS_RECORD_MAX : 0);
    acked = behind >= out - d->first ? d->first : out - (uint32_t)behind;
    if (acked > d->acked) d->acked = acked;
}

/* d's progress in the registry (what its TCP acknowledged), at most once
 * per FLEET_PROGRESS_S. */
static void progress(struct dl *d)
{
    double now = now_s();

    if (now - d->progress_at >= FLEET_PROGRESS_S) {
        struct fleet_who w = who_of(d);
        d->progress_at = now;
        fleet_step(d->ota->srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, reach(d), NULL,
                   0, 1);
    }
}

/* Every byte went out: the download is done once the peer's TCP has them
 * all (so that a device cut after the server wrote its last byte, which
 * then starts over, is not taken for one that rejected a whole image).
 * Its progress goes on being written meanwhile: on a fast network all of
 * a small image is in the socket at once, and a slow device reads it for
 * long after. The timeout counts polls without a byte acknowledged. */
static void await_ack(evutil_socket_t fd, short what, void *arg)
{
    struct dl *d = arg;
    struct timeval tv = {0, OTA_ACK_POLL_MS * 1000};
    uint32_t before = d->acked;

    (void)fd;
    (void)what;
    update_acked(d);
    if (d->acked == d->sent) {
        finished(d);
        return;
    }
    if (d->acked != before) {
        d->ack_polls = 0;
        progress(d);
    }
    if (++d->ack_polls > OTA_ACK_POLLS(d->ota->srv)) {
        say_dev(d->ota->srv, LOG_LV_INFO, d->id, d->peer,
                "http: no ack of the last bytes in %u s; closing",
                d->ota->srv->o->idle_timeout_s);
        evhttp_connection_free(d->evcon); /* http_ota_closed() records where it stopped */
        return;
    }
    if (!d->ack_timer && !(d->ack_timer = evtimer_new(d->ota->srv->base, await_ack, d))) {
        finished(d); /* out of memory: take the write for the ack */
        return;
    }
    evtimer_add(d->ack_timer, &tv);
}

/* n more bytes of d's range went to the socket: the metrics and the
 * summary count them (a trial: the summary said 0.0 MB sent after 6.5 MB
 * of downloads). */
static void sent_more(struct dl *d, uint32_t n)
{
    metrics_bytes(d->rollout_id, d->img->desc.id, n);
    d->ota->srv->stats.http_bytes += n;
}

static void window_done(struct evhttp_connection *evcon, void *arg)
{
    struct dl *d = arg;

    (void)evcon;
    sent_more(d, d->queued - d->sent);
    d->sent = d->queued;
    if (d->sent > d->last) {
        await_ack(-1, 0, d);
        return;
    }
    update_acked(d);
    progress(d);
    send_window(d);
}

void http_ota_closed(struct evhttp_connection *evcon, void *arg)
{
    struct http_ota *ota = arg;
    struct dl *d, *next;

    for (d = ota->dls; d; d = next) {
        next = d->next;
        if (d->evcon != evcon) continue;
        if (d->img) { /* the socket is still open here, and keeps its count after a reset */
            uint32_t out = written_to(d); /* the connection's buffer is not emptied yet either */
            struct ota_cut *cut = ota_cut_slot(ota, d->id);
            if (out > d->sent) {
                sent_more(d, out - d->sent);
                d->sent = out;
            }
            update_acked(d);
            if (cut && d->first <= d->had) { /* how far it may have got, for its next range */
                snprintf(cut->id, sizeof(cut->id), "%s", d->id);
                memcpy(cut->image, d->img->desc.id, TCPOTA_ID_LEN);
                cut->written = d->sent;
            }
        }
        d->evcon = NULL;
        /* Detached from the connection (EOF while it was ours): ours to
         * free; attached: libevent frees it after this callback. */
        if (d->req && evhttp_request_get_connection(d->req) == NULL) evhttp_request_free(d->req);
        d->req = NULL;
        if (!d->img) continue; /* still waiting for the store: its done frees d */
        if (d->sent > d->last && d->acked == d->sent) {
            record_done(d); /* the client took every byte and closed before the next look */
            ota_dl_free(d);
            continue;
        }
        {
            struct fleet_who w = who_of(d);
            fleet_step(ota->srv, &w, STORE_ST_DOWNLOADING, d->img->desc.id, NULL, reach(d), NULL,
                       0, 1);
        }
        say_dev(ota->srv, LOG_LV_INFO, d->id, d->peer,
                "http: connection closed: %u bytes of range %u-%u "
                "passed to the socket, up to byte %u acknowledged by the device's TCP (image of "
                "%u bytes)", d->sent - d->first,
                d->first, d->last, d->acked, d->img->size);
        ota_dl_free(d);
    }
}

void ota_start(struct dl *d, struct image *img, const struct http_range *rg, const char *etag)
{
    struct server *srv = d->ota->srv;
    struct evhttp_request *req = d->req;
    char len[24], cr[80], why[96] = "";
    struct fleet_who w;

    snprintf(len, sizeof(len), "%u", (unsigned)(rg->last - rg->first + 1));
    ota_add_header(req, "Content-Type", "application/octet-stream");
    ota_add_header(req, "Content-Length", len);
    ota_add_header(req, "ETag", etag);
    ota_add_header(req, "Accept-Ranges", "bytes");
    ota_add_header(req, "Cache-Control", "no-store"); /* the answer depends on the device */
    ota_add_header(req, HTTP_OTA_VERSION_HEADER, img->version);
    if (rg->status == 206) {
        snprintf(cr, sizeof(cr), "bytes %u-%u/%u", (unsigned)rg->first, (unsigned)rg->last,
                 img->size);
        ota_add_header(req, "Content-Range", cr);
    }
    say_dev(srv, LOG_LV_INFO, d->id, d->peer,
            "http: %s %s: %d, image %s (rollout %llu), bytes %u-%u of %u",
            d->head ? "HEAD" : "GET", d->has_range ? d->range : "(no Range)", rg->status,
            img->version, (unsigned long long)d->rollout_id, (unsigned)rg->first,
            (unsigned)rg->last, img->size);
    if (d->head) {
        evhttp_send_reply(req, rg->status, NULL, NULL);
        ota_dl_free(d);
        return;
    }
    if (!(d->buf = evbuffer_new())) {
        ota_refuse(d->ota, d, req, 500, "the server is out of memory; try again");
        ota_dl_free(d);
        return;
    }
    d->img = image_ref(img);
    d->ota->nsending++;
    d->first = d->queued = d->sent = d->acked = (uint32_t)rg->first;
    d->last = (uint32_t)rg->last;
    d->progress_at = now_s();
    if (d->first == 0) metrics_event(d->rollout_id, img->desc.id, METRICS_OFFERED);
    w = who_of(d);
    if (d->first > d->had) {
        /* Its bytes are what it had, not where this range starts: the
         * history said "from byte 0" of a download from byte 50000 (a
         * trial). */
        snprintf(why, sizeof(why), "asks bytes %u-%u, past the %u it had: not counted as its "
                 "progress", d->first, d->last, d->had);
    }
    fleet_step(srv, &w, STORE_ST_DOWNLOADING, img->desc.id, NULL, reach(d), why[0] ? why : NULL,
               0, 0);
    evhttp_send_reply_start(req, rg->status, NULL);
    send_window(d);
}

unsigned http_ota_stop(struct http_ota *ota, uint64_t rollout_id, const char *why)
{
    struct dl *d;
    unsigned n = 0;

    if (!ota) return 0;
    for (d = ota->dls; d;) {
        struct evhttp_connection *evcon = d->evcon;

        if (d->rollout_id != rollout_id || !d->img || !evcon) {
            d = d->next;
            continue;
        }
        update_acked(d);
        if (d->acked > d->last) { /* the device has every byte: it finishes */
            d = d->next;
            continue;
        }
        say_dev(ota->srv, LOG_LV_ERROR, d->id, d->peer,
                "http: %s: download stopped at byte %u of %u", why,
                d->acked, d->img->size);
        n++;
        /* What its close would do (the cut recorded, the downloads of that
         * connection freed), then the connection, reset: the bytes still
         * queued must not reach the device. */
        sock_reset_on_close(dl_fd(d));
        http_ota_closed(evcon, ota);
        /* Its close callback (the listener's or the API's) runs
         * http_ota_closed again (nothing left of evcon) and forgets the
         * connection. */
        evhttp_connection_free(evcon);
        d = ota->dls; /* d and others may be gone: from the start */
    }
    return n;
}
