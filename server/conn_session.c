/* conn_session.c - what a connection's v1 session decides and says: the
 * offer for its device (the policy of offer.h, or the fleet's), the report
 * a HELLO carries, the device's answer to a CHALLENGE, and one log line
 * per event that matters (conn.h). conn.c moves the bytes. */
#include "conn.h"
#include "fleet.h"
#include "log.h"
#include "offer.h"
#include "server_internal.h"
#include "text.h"
#include "tls_server.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* No tcpota_err has this code: tcpota_strerror() says of it what it says
 * of any code it does not know. */
#define NO_SUCH_ERR (-32768)

/* A device's latest outcome, for the summary. A later "up to date" does not
 * hide that it was updated, nor "not offered" that it failed. */
void conn_set_outcome(struct conn *c, int outcome)
{
    enum device_outcome o = (enum device_outcome)outcome;

    if (!c->rec) {
        return;
    }
    switch (c->rec->outcome) {
    case DEV_UPDATED:
    case DEV_CONFIRMED:
        if (o == DEV_UP_TO_DATE) return;
        break;
    case DEV_ROLLED_BACK:
    case DEV_BOOT_FAILED:
    case DEV_DECLINED:
    case DEV_FAILED:
        /* Not offered the failed image again, or offered it once more (a
         * boot or an integrity failure, tcpota_srv_report_final): the
         * failure is what counts until an outcome of that offer. */
        if (o == DEV_NOT_OFFERED || o == DEV_SEEN) return;
        break;
    default:
        break;
    }
    c->rec->outcome = o;
}

/* 1 when a report says the image failed on the device (rolled back by its
 * health check or by the bootloader). */
static int result_failed(uint16_t result)
{
    return result == TCPOTA_RESULT_ROLLED_BACK || result == TCPOTA_RESULT_BOOT_FAILED;
}

int conn_report(struct conn *c, const struct tcpota_srv_hello *h, const char *more)
{
    char hex[17];
    int bad = result_failed(h->report_result);

    sodium_bin2hex(hex, sizeof(hex), h->report_id, 8);
    switch (h->report_result) {
    case TCPOTA_RESULT_CONFIRMED: conn_set_outcome(c, DEV_CONFIRMED); break;
    case TCPOTA_RESULT_ROLLED_BACK: conn_set_outcome(c, DEV_ROLLED_BACK); break;
    case TCPOTA_RESULT_BOOT_FAILED: conn_set_outcome(c, DEV_BOOT_FAILED); break;
    default:
        clog_(c, 1, "report: image %s...: unknown result %u, not recorded (this server knows "
                    "%u confirmed, %u rolled back, %u boot failed); acknowledged, so that the "
                    "device stops sending it",
              hex, (unsigned)h->report_result, TCPOTA_RESULT_CONFIRMED, TCPOTA_RESULT_ROLLED_BACK,
              TCPOTA_RESULT_BOOT_FAILED);
        return 0;
    }
    clog_(c, bad, "report: image %s... %s%s", hex,
          h->report_result == TCPOTA_RESULT_CONFIRMED    ? "confirmed"
          : h->report_result == TCPOTA_RESULT_ROLLED_BACK ? "rolled back (health check failed)"
                                                          : "rolled back by the bootloader",
          more);
    return 1;
}

/* What a boot failure's report line goes on with. */
#define SECOND_BOOT "; offered once more: the device takes an image its bootloader fell back " \
                    "from once more (a power cut in its first boot is not the image's fault) and " \
                    "declines it after a second such failure"

/* The report a HELLO carries: a rolled-back image is never offered to this
 * device again, one its bootloader fell back from once more (the device's
 * rule, tcpota_srv_report_final). Logged even with --quiet when it failed. */
static void take_report(struct conn *c, const struct tcpota_srv_hello *h)
{
    int bad = result_failed(h->report_result);
    int current, final;

    if (!h->report_id) {
        return;
    }
    current = memcmp(h->report_id, c->img->desc.id, TCPOTA_ID_LEN) == 0;
    final = tcpota_srv_report_final(h->report_result);
    if (conn_report(c, h, !bad ? (current ? " (current image)" : "")
                          : final ? (current ? " (current image); not offered to this device again"
                                             : "; not offered to this device again")
                          : current ? " (current image)" SECOND_BOOT : SECOND_BOOT) &&
        bad && final) {
        device_mark_failed(c->rec, h->report_id);
    }
}

/* The session's choose(): the offer policy (offer.h) for this device,
 * once HELLO (and AUTH, when required) are in. */
int conn_session_choose(void *ctx, const struct tcpota_srv_hello *h,
                       const struct tcpota_srv_image **chosen, uint32_t *retry_after_s)
{
    struct conn *c = ctx;
    struct server *srv = c->srv;
    struct image *img = c->img;
    struct offer_image oi;
    struct offer_device od;

    *retry_after_s = 0;
    (void)text_copy(c->dev, sizeof(c->dev), h->device_id);
    c->rec = devices_get(&srv->devices, h->device_id, 1);
    if (srv->fleet) {
        return fleet_choose(c, h, chosen, retry_after_s);
    }
    oi.desc = &img->desc;
    oi.model = img->model;
    if (!c->rec && !srv->devices_full_said) {
        /* Said once: past DEVICES_MAX ids (a peer without --require-auth can
         * invent them) new devices go unrecorded, and only their own NVS
         * record keeps a failed image from being fetched again. */
        srv->devices_full_said = 1;
        say_always(srv->o, LOG_LV_ERROR, "device registry full (%u devices): new device ids are "
                   "not recorded; use --require-auth so that ids cannot be invented",
                   DEVICES_MAX);
    }
    take_report(c, h);
    od.hello = h;
    od.failed_before = device_failed(c->rec, img->desc.id) || device_failed(c->rec, img->offer_fp);
    c->verdict = (uint8_t)offer_decide(&oi, &od, srv->o->allow_downgrade);
    *chosen = NULL;
    if (c->verdict != OFFER_YES) {
        conn_set_outcome(c, c->verdict == OFFER_RUNNING ? DEV_UP_TO_DATE : DEV_NOT_OFFERED);
        tcpota_srv_set_why(&c->s, offer_why((enum offer_verdict)c->verdict));
        return 0;
    }
    *chosen = &img->desc;
    return 0;
}

/* One line saying what the device was offered, or why nothing, after
 * `what` ("hello model=… version=…", "authenticated"). */
static void log_offer(struct conn *c, const char *what, int offered, uint32_t start)
{
    if (tcpota_srv_get_state(&c->s) == TCPOTA_SRV_CHOOSING) {
        clog_(c, 0, "%s: asking the fleet store", what);
        return;
    }
    if (!offered && c->remembered) {
        clog_(c, 0, "%s: no update: nothing changed since its last check-in", what);
        return;
    }
    if (!offered && c->hung_s) {
        clog_(c, 0, "%s: no update: the database has answered nothing for %u s; asks again in %u s",
              what, c->hung_s, c->hung_retry_s);
        return;
    }
    if (!offered) {
        clog_(c, 0, "%s: %s: %s", what, c->verdict == OFFER_RUNNING ? "up to date" : "not offered",
              offer_reason((enum offer_verdict)c->verdict));
        return;
    }
    conn_offered(c, what, start);
}

/* The log line of a refused AUTH. One held back by a backoff was not
 * judged at all: it says "not checked" and until when, so that an
 * operator does not take the device's secret for wrong. */
static void log_refusal(const struct conn *c, const struct auth_result *r)
{
    /* An unknown id has no record of its own: the failures counted, and
     * the wait, are its address's (auth_judge). */
    const char *whose = r->verdict == AUTH_ADDR_WAITING || r->verdict == AUTH_UNKNOWN_ID
                            ? "from this address"
                            : "for this device id";
    time_t until = time(NULL) + (time_t)r->wait_s;
    struct tm tm;
    char when[32] = "?";

    if (r->verdict != AUTH_ID_WAITING && r->verdict != AUTH_ADDR_WAITING) {
        char in[24] = "at once"; /* no backoff yet (a trial read "in 0 s") */
        if (r->wait_s) snprintf(in, sizeof(in), "in %u s", r->wait_s);
        clog_(c, 1, "authentication failed: %s (%u failure%s %s; the next AUTH %s is checked %s)",
              auth_verdict_reason(r->verdict), r->failures, text_s(r->failures), whose, whose, in);
        return;
    }
    if (gmtime_r(&until, &tm)) (void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    clog_(c, 1, "authentication not checked: %s (%u failure%s; backoff until %s: the next AUTH %s "
          "is checked in %u s)", auth_verdict_reason(r->verdict), r->failures, text_s(r->failures),
          when, whose, r->wait_s);
}

/* Judges the device's answer to our CHALLENGE (inside TLS, bound to this
 * TLS session) and sends the offer, or ERROR(DENIED) with a message the
 * device prints and the time after which its next try is checked. */
static void on_auth(struct conn *c, const uint8_t *mac)
{
    struct server *srv = c->srv;
    uint8_t binding[TCPOTA_TLS_BINDING_LEN];
    struct auth_result r;
    uint8_t offered = 0;
    uint32_t start = 0;

    if (srv->tls && tls_binding(c->ssl, binding) < 0) {
        srv->stats.failed++;
        clog_(c, 1, "error: no TLS channel binding for the authentication; closing");
        (void)tcpota_srv_fail(&c->s, TCPOTA_ERR_DENIED, "server error: no TLS channel binding", 0);
        return;
    }
    if (auth_judge(&srv->auth, tcpota_srv_device_id(&c->s), c->addr, c->nonce,
                   srv->tls ? binding : NULL, mac, now_s(), &r) != AUTH_OK) {
        server_auth_refused(srv, auth_refusal_of(r.verdict), tcpota_srv_device_id(&c->s), c->addr);
        log_refusal(c, &r);
        /* A wait is BUSY: a device with the right secret, held back by
         * failures of someone else's, tries again after it (the runner
         * gives up at once on DENIED). */
        (void)tcpota_srv_fail(&c->s, auth_verdict_error(r.verdict), auth_verdict_message(r.verdict),
                              r.wait_s);
        return;
    }
    auth_refusal_forget(&srv->auth_refused, tcpota_srv_device_id(&c->s));
    c->authed = 1;
    conn_admitted(c);
    if (tcpota_srv_authorize(&c->s, 1, &offered, &start) == 0) {
        c->stream_from = start;
        log_offer(c, "authenticated", offered, start);
    }
}

void conn_peer_error(const struct tcpota_msg *m, char *buf, size_t cap)
{
    const char *text = tcpota_strerror(m->u.error.code);
    const char *said = m->u.error.message.ptr ? (const char *)m->u.error.message.ptr : "";
    size_t n = m->u.error.message.len;
    char code[48];

    /* Code 0 is "ok", and a code tcpota has no name for said as a number
     * (a hostile trial: "device error: ok (disk on fire)") */
    if (m->u.error.code == 0 || strcmp(text, tcpota_strerror(NO_SUCH_ERR)) == 0) {
        snprintf(code, sizeof(code), "error code %u, which tcpota has no name for",
                 (unsigned)m->u.error.code);
        text = code;
    }

    if (n == 0 || (n == strlen(text) && memcmp(said, text, n) == 0)) {
        snprintf(buf, cap, "device error: %s", text);
    } else {
        snprintf(buf, cap, "device error: %s (%.*s)", text, (int)n, said);
    }
}

void conn_session_event(struct conn *c, const struct tcpota_srv_event *ev)
{
    struct server *srv = c->srv;
    const struct tcpota_msg *m = &ev->msg;
    uint32_t size = c->img ? c->img->size : 0;
    char why[TCPOTA_MAX_MESSAGE + 128];

    if (srv->fleet) {
        fleet_on_event(c, ev);
    }
    switch (ev->type) {
    case TCPOTA_SRV_EV_HELLO:
        memcpy(c->dev, m->u.hello.device_id.ptr, m->u.hello.device_id.len);
        c->dev[m->u.hello.device_id.len] = 0;
        if (!ev->auth_pending) {
            conn_admitted(c);
        } else {
            clog_(c, 0, "hello model=%.*s version=%.*s: challenge sent", m->u.hello.model.len,
                  m->u.hello.model.ptr, m->u.hello.version.len, m->u.hello.version.ptr);
            return;
        }
        {
            /* Formatted only for a log line that is written (1 k
             * instructions of every device under --quiet). */
            char what[2 * TCPOTA_MAX_NAME + 32] = "";
            if (!srv->o->quiet) {
                snprintf(what, sizeof(what), "hello model=%.*s version=%.*s",
                         m->u.hello.model.len, (const char *)m->u.hello.model.ptr,
                         m->u.hello.version.len, (const char *)m->u.hello.version.ptr);
            }
            log_offer(c, what, ev->offered, ev->start);
        }
        return;
    case TCPOTA_SRV_EV_ACCEPT:
        c->progress_at = now_s();
        if (ev->start != c->stream_from && c->spared) {
            /* Spared by a halt or a cancel for having every byte; asking
             * for them again, it would be sent the image after it. */
            c->reseek_stopped = 1;
            return;
        }
        if (ev->start != c->stream_from) {
            clog_(c, 0, "accept: device resumes at %u instead, re-seeking", ev->start);
            c->stream_from = ev->start;
        }
        return;
    case TCPOTA_SRV_EV_DECLINE:
        /* The policy offers no image the device runs already, so any
         * decline would only repeat: the image is a failure for it. */
        device_mark_failed(c->rec, c->img->offer_fp);
        conn_set_outcome(c, DEV_DECLINED);
        {
            char sizes[48] = "", reason[48]; /* no space: say how much was offered */
            unsigned mlen = m->u.decline.message.ptr ? m->u.decline.message.len : 0;
            const char *said = tcpota_strerror(-(int)m->u.decline.reason);

            if (m->u.decline.reason == (uint16_t)-TCPOTA_ERR_NOSPC) {
                snprintf(sizes, sizeof(sizes), "; the image is %u bytes", c->img->size);
            }
            if (strcmp(said, tcpota_strerror(NO_SUCH_ERR)) == 0) { /* (0: the core refuses it) */
                snprintf(reason, sizeof(reason), "a reason unknown to this server (code %u)",
                         (unsigned)m->u.decline.reason);
                said = reason;
            }
            clog_(c, 1, "declined: %s%s%.*s%s%s", said, mlen ? " (" : "", (int)mlen,
                  mlen ? (const char *)m->u.decline.message.ptr : "", mlen ? ")" : "", sizes);
        }
        return;
    case TCPOTA_SRV_EV_ACK:
        if (!ev->duplicate) {
            c->progress_at = now_s();
        }
        if (srv->o->progress && !ev->duplicate && size &&
            (uint64_t)m->u.ack.offset * 100 >= (uint64_t)c->next_pct * size) {
            clog_(c, 0, "%3u%% (%u/%u bytes durable)",
                  (unsigned)((uint64_t)m->u.ack.offset * 100 / size), m->u.ack.offset, size);
            c->next_pct = (uint32_t)((uint64_t)m->u.ack.offset * 10 / size + 1) * 10;
        }
        return;
    case TCPOTA_SRV_EV_COMPLETE:
        if (m->u.complete.status == 0) {
            conn_set_outcome(c, DEV_UPDATED);
            clog_(c, 0, "done: image %s verified by the device, %u bytes from %u in %.2f s, "
                        "%llu sent on this connection",
                  c->img->version, size, c->stream_from, now_s() - c->started,
                  (unsigned long long)conn_bytes_sent(c));
        } else if (tcpota_srv_complete_final(m->u.complete.status)) {
            device_mark_failed(c->rec, c->img->desc.id);
            conn_set_outcome(c, DEV_FAILED);
            clog_(c, 1, "failed: device reports %s; image %.16s... is not offered to it again",
                  tcpota_strerror(m->u.complete.status), c->img->idhex);
        } else {
            /* The device takes it once more (integrity: bytes altered on
             * the way). */
            conn_set_outcome(c, DEV_FAILED);
            clog_(c, 1, "failed: device reports %s; image %.16s... is offered to it once more (the "
                        "device takes an image once more after an integrity failure, and declines "
                        "it after a second one)",
                  tcpota_strerror(m->u.complete.status), c->img->idhex);
        }
        return;
    case TCPOTA_SRV_EV_AUTH:
        on_auth(c, m->u.auth.mac);
        return;
    case TCPOTA_SRV_EV_PEER_ERROR:
        conn_set_outcome(c, DEV_FAILED);
        conn_peer_error(m, why, sizeof(why));
        clog_(c, 1, "%s", why);
        return;
    default:
        return;
    }
}
