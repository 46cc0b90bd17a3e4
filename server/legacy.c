/* legacy.c - the sample's req0/req1 devices (see legacy.h). */
#include "legacy.h"
#include "conn.h"
#include "fleet.h"
#include "log.h"
#include "server_internal.h"

#include <event2/buffer.h>
#include <string.h>

int legacy_auth_refused(const struct tcpota_serve_opts *o)
{
    return o->require_auth && !o->allow_unauth_legacy;
}

const char *legacy_refusal(const struct tcpota_serve_opts *o, int is_signed)
{
    if (legacy_auth_refused(o)) {
        return "--require-auth is on and legacy devices cannot authenticate "
               "(--allow-unauthenticated-legacy serves them anyway: then anyone who can "
               "connect gets the image)";
    }
    if (is_signed && !o->allow_legacy) {
        return "the image is signed and legacy devices cannot check it (--allow-legacy "
               "serves them anyway)";
    }
    return NULL;
}

/* Writes one legacy package in one piece: a single write when nothing is
 * queued (conn_write_now), so a device that reads it with one recv() gets
 * all of it. Returns 0, or -1 when c ran out of memory and was freed. */
static int legacy_send(struct conn *c, const struct tcpota_legacy_pkg *pkg)
{
    const struct image *img = c->img;
    uint8_t buf[TCPOTA_LEGACY_HEAD_MAX + TCPOTA_LEGACY_PKG];
    int h = tcpota_legacy_header(img->size, pkg->len, (char *)buf, TCPOTA_LEGACY_HEAD_MAX);
    size_t n = (size_t)h + pkg->len;
    struct evbuffer *out = conn_out(c);
    size_t w;

    memcpy(buf + h, img->map + pkg->offset, pkg->len);
    w = conn_write_now(c, buf, n);
    if (w < n) {
        if (evbuffer_add(out, buf + w, n - w) < 0) {
            return -conn_out_of_memory(c, "queueing a package");
        }
        conn_queued(c);
    }
    c->bytes_sent += pkg->len;
    if (pkg->offset + pkg->len > c->legacy_top) {
        /* Progress: a package it had not had (a req1 repeats one). */
        c->legacy_top = pkg->offset + pkg->len;
        c->progress_at = now_s();
    }
    if (!c->legacy_done && pkg->offset + pkg->len == img->size && pkg->len) {
        c->legacy_done = 1;
        c->srv->stats.legacy_done++;
        if (c->srv->fleet) {
            fleet_legacy_done(c);
        }
        clog_(c, 0, "legacy device: sent the last package (%u bytes in %.2f s); "
                    "the legacy protocol has no integrity check",
              img->size, now_s() - c->started);
    }
    return 0;
}

int legacy_input(struct conn *c, const uint8_t *p, size_t n)
{
    const size_t given = n;

    while (n) {
        struct tcpota_legacy_pkg pkg;
        int used;

        if (conn_replies_pile_up(c)) {
            /* Its answers pile up unread (LEGACY_QUEUE_MAX): the rest of
             * the requests wait (4 KiB of req1 would queue 512 packages,
             * 276 KiB). */
            return (int)(given - n);
        }
        used = tcpota_legacy_input(&c->leg, p, n, &pkg);
        if (used < 0) {
            c->srv->stats.failed++;
            clog_(c, 1, "legacy device sent something that is not req0/req1; closing");
            (void)conn_close(c, 1);
            return -1;
        }
        if (pkg.ready && legacy_send(c, &pkg) < 0) {
            return -1; /* c is gone */
        }
        p += used;
        n -= (size_t)used;
    }
    return (int)given;
}

