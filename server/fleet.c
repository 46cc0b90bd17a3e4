/* fleet.c - fleet mode: decisions from the store, steps back into it (see
 * fleet.h). */
#include "fleet.h"
#include "fleet_internal.h"
#include "fleet_files.h"
#include "http_ota.h"
#include "http_host.h"
#include "accept_pause.h"
#include "api.h"
#include "conn.h"
#include "legacy.h"
#include "log.h"
#include "metrics.h"
#include "offer.h"
#include "offload.h"
#include "rollout.h"
#include "server_internal.h"
#include "store.h"
#include "store_common.h" /* store_ro_status_of, store_rollout_move */
#include "store_pg.h" /* STORE_PG_CONNINFO_INVALID */
#include "sock.h"
#include "text.h"
#include "tcpota/device.h" /* TCPOTA_DECLINE_RUNNING */

#include <event2/buffer.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <event2/event.h>
#include <event2/listener.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

/* One image the fleet has loaded (the image cache of fleet mode): loaded
 * on first use, shared by every connection that streams it. */
/* An image loaded for the devices, one being loaded, or one whose file
 * failed to load. An image is loaded (read, hashed, its frames built: about
 * 1.1 ms per MiB) on a thread of its own (offload.h) the first time a
 * check-in needs it; the check-ins that need it meanwhile wait in `wait`
 * (fleet_park) and are decided once it is loaded. A failure is remembered
 * (FLEET_IMAGE_RETRY_S, and while the fleet's epoch stays): before, every
 * check-in offered that image loaded its file again on the event loop (up
 * to 64 MiB hashed) and logged the same error, so that a damaged file held
 * the loop for every device of its rollout. */
struct fleet_image {
    struct fleet_image *next;
    struct image *img;            /* NULL: loading (job), or its file failed to load */
    uint8_t id[TCPOTA_ID_LEN];
    uint32_t epoch;               /* failed: the fleet's epoch then */
    double retry_at;              /* failed: when a check-in loads it again */
    struct stat file;             /* loaded: its file when read (same_file) */
    struct offload *job;          /* loading; what follows is the job's until it ends */
    struct server *srv;
    struct store_image si;        /* what to load */
    unsigned chunk;
    struct image *loaded;         /* the job's result, or NULL with err */
    int refused;                  /* loaded, and not signed by one of --pubkey: err says why */
    double load_s;                /* how long it took */
    char err[IMAGE_ERR_LEN];
    struct store_req **wait;      /* check-ins waiting for it, in order */
    size_t nwait;
};

/* The steps not yet handed to the store (record()): one STORE_EVENTS
 * request per FLEET_EVENTS_MAX of them or per FLEET_FLUSH_MS, instead of
 * a request of sizeof(struct store_req) per step. */
#define FLEET_EVENTS_MAX 256u
#define FLEET_FLUSH_MS 50
#define FLEET_SLOTS 512u /* hash of device id -> its newest pending item; > 2 x FLEET_EVENTS_MAX */

/* Check-ins answered from memory. A known device whose HELLO (model,
 * version, running image, address; no report) is the one of its last
 * check-in, which changed nothing and was told NO_UPDATE as up to date,
 * is told the same without a store round trip while nothing that decides
 * that answer has changed: its own record (any step of its update) and
 * the fleet's epoch, which every write but a device's check-in or step
 * moves (a rollout created, paused, halted or cancelled, a wave opened, an
 * image or group changed: remember_bump()). Its time still reaches the
 * store with the others of FLEET_FLUSH_MS (STORE_SEEN). With a store that
 * other servers write too (PostgreSQL nodes) a memo holds
 * FLEET_MEMO_SHARED_S at most: what another node changed is seen as soon
 * as its pause or resume is (docs/scaling.md). */
#define FLEET_MEMO_SHARED_S 1.0
/* Steps of devices no longer registered are said at most this often. */
#define FLEET_MISSING_SAY_S 60.0
/* PostgreSQL's secret sync (sync_secrets). Each ask reads again the last
 * FLEET_SECRETS_OVERLAP generations a node has already read: a failover
 * to a standby that lost the newest writes numbers the next ones as those
 * were, and a node that had read up to there would never ask for them.
 * Every FLEET_SECRETS_REREAD_S (--secrets-reread; and on SIGHUP) a node reads every secret
 * and holds exactly those: a write it saw and the database lost (the same
 * failover) is undone, which no count can show. */
#define FLEET_SECRETS_OVERLAP 64
/* A SIGHUP's full read while the database cannot be reached. */
#define SECRETS_DOWN_SAYS "SIGHUP: the database cannot be reached now; every device secret is" \
                          " read again as soon as it can be (nothing to do)"

/* The store the API sees: it hands the pending steps to the real store
 * before each of its requests, so that the API reads what was recorded. */
struct fleet_store {
    struct store base;
    struct server *srv;
};

struct fleet {
    struct store *store;
    struct fleet_store api_store;
    struct api *api;
    struct http_ota *ota;        /* HTTP downloads (on the API's listener or --ota-listen) */
    struct store_event *ev;      /* pending steps, in order */
    size_t nev, capev;
    uint8_t progress[FLEET_EVENTS_MAX]; /* ev[i] is an ACK's plain progress */
    uint16_t slot[FLEET_SLOTS];  /* 0 empty, else 1 + index into ev */
    char (*seen)[TCPOTA_MAX_STR + 1]; /* check-ins answered from memory, for STORE_SEEN */
    size_t nseen;
    struct event *flush_timer;   /* armed while ev or seen holds anything */
    uint32_t epoch;              /* moves with every write that may change an answer */
    uint8_t memo_key[crypto_shorthash_KEYBYTES];
    struct fleet_image *images;
    struct tcpota_serve_secret *secrets; /* sorted by id (auth.h bisects) */
    size_t nsecrets;
    int64_t secrets_gen;         /* PostgreSQL: every secret set up to it is in secrets */
    struct event *sync_timer;    /* PostgreSQL: what other nodes changed (sync_tick) */
    int secret_asking;           /* the ask for secrets is in flight: 2 a full read */
    int secrets_full_due;        /* the next ask reads every secret (a SIGHUP, a count gone back) */
    int secrets_full_say;        /* say how the next full read ends (a SIGHUP asked) */
    int secrets_full_saying;     /* ... the one in flight: 1, or 2 once its failure was said */
    double secrets_full_next;    /* now_s() when the next full read is due (secrets_full_plan) */
    unsigned stops_asking;       /* asks for rollouts' states in flight (sync_stops) */
    size_t stops_turn;           /* where sync_stops's next asks begin */
    int stuck_said;              /* told that the store answers nothing (fleet_sweep) */
    int unstuck;                 /* dropped the database's connection for this stall */
    char token[API_TOKEN_HEX + 1];
    struct api_keys keys;
    unsigned checkins, db_errors;
    double missing_said;         /* monotonic s of the last "not in the registry" (events_done) */
};

static int64_t utc_now(void)
{
    return (int64_t)time(NULL);
}

/* 1 when fi was loaded from si as the store has it now: its bytes and its
 * manifest. The same bytes removed and added again with a manifest are
 * another offer (image.h, offer_fp): before, the image loaded unsigned was
 * offered still, and a device that had declined it as unsigned was held
 * back from the image signed. */
static int same_image(const struct fleet_image *fi, const struct store_image *si)
{
    return memcmp(fi->id, si->id, TCPOTA_ID_LEN) == 0 && fi->si.manifest_len == si->manifest_len &&
           memcmp(fi->si.manifest, si->manifest, si->manifest_len) == 0;
}

static struct fleet_image *image_find(struct fleet *f, const struct store_image *si)
{
    struct fleet_image *fi;

    for (fi = f->images; fi && !same_image(fi, si); fi = fi->next) {
    }
    return fi;
}

static int same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* 1 when the loaded image's file is as it was when it was read. The image
 * serves a copy of its own (image.h), so a file written over in place (a
 * disk fault, a hand) changes no byte sent; but the cache then holds a
 * damaged file, which this tells: loaded again, it is refused until the
 * same bytes are added again. A file removed (image rm drops the entry
 * first) or replaced whole (such a repair renames a good copy over it) is
 * another file: loaded again too. */
static int same_file(const struct fleet_image *fi)
{
    struct stat now;

    return stat(fi->si.path, &now) == 0 && same_stat(&now, &fi->file);
}

/* 1 when fi answers at once: loaded (its file unchanged since), or a
 * failure still remembered. */
static int image_settled(const struct fleet *f, const struct fleet_image *fi)
{
    if (fi->job || (fi->img && !same_file(fi))) {
        return 0; /* loading, or its file changed in place: loaded again (and refused) */
    }
    return fi->img || (fi->epoch == f->epoch && now_s() < fi->retry_at);
}

/* Takes fi out of the list and frees it (a transfer keeps its image). */
static void image_drop(struct fleet *f, struct fleet_image *fi)
{
    struct fleet_image **at;

    for (at = &f->images; *at != fi; at = &(*at)->next) {
    }
    *at = fi->next;
    image_unref(fi->img);
    free(fi->wait);
    free(fi);
}

/* Drops the entries of si's bytes loaded with another manifest (the image
 * removed and added again): no check-in is given them any more. One still
 * loading, or with check-ins waiting, stays until a later turn. */
static void image_drop_stale(struct fleet *f, const struct store_image *si)
{
    struct fleet_image *fi, *next;

    for (fi = f->images; fi; fi = next) {
        next = fi->next;
        if (memcmp(fi->id, si->id, TCPOTA_ID_LEN) == 0 && !same_image(fi, si) && !fi->job &&
            !fi->nwait) {
            image_drop(f, fi);
        }
    }
}

/* A new entry for si, first in the list. NULL: out of memory. */
static struct fleet_image *image_entry(struct server *srv, const struct store_image *si)
{
    struct fleet_image *fi = calloc(1, sizeof(*fi));

    if (fi) {
        memcpy(fi->id, si->id, TCPOTA_ID_LEN);
        fi->srv = srv;
        fi->si = *si;
        fi->chunk = srv->o->chunk;
        fi->next = srv->fleet->images;
        srv->fleet->images = fi;
    }
    return fi;
}

/* 1 with why in err when this server has --pubkey keys and si is not
 * signed by one of them: on PostgreSQL another node without keys (or with
 * others) may have added it, and a SQLite fleet may hold images added
 * before the keys were given. The keys are what the operator asked to be
 * served; they are checked where the image is loaded, not only at its
 * upload (a trial: a node with --pubkey served an unsigned image). */
static int fleet_unsigned_here(const struct server *srv, const struct store_image *si, char *err,
                               size_t cap)
{
    char why[700];

    if (!api_image_refused(srv->fleet->keys.nkeys ? api_verify_keys : NULL,
                           (void *)&srv->fleet->keys, si, why, sizeof(why))) {
        return 0;
    }
    snprintf(err, cap, "%s: cancel its rollouts, remove it (tcpota image rm), sign it with one of"
             " this server's --pubkey keys (tcpota sign) and add it again, then roll it out anew",
             why);
    return 1;
}

/* Loads fi's image (on the job's thread, or on the loop). */
static void image_load_work(void *arg)
{
    struct fleet_image *fi = arg;
    const struct store_image *si = &fi->si;

    double t0 = now_s();

    fi->loaded = image_open(si->path, si->version, si->model, si->manifest_len ? si->manifest : NULL,
                            si->manifest_len, fi->chunk, fi->err, sizeof(fi->err));
    fi->refused = fi->loaded && fleet_unsigned_here(fi->srv, si, fi->err, sizeof(fi->err));
    fi->load_s = now_s() - t0;
}

/* On the loop, once fi's load ended (on_loop: it ran there): the image,
 * said with how long it took, or a failure told once and remembered (a
 * file that no longer matches its id is never offered). */
static void image_settle(struct fleet_image *fi, int on_loop)
{
    struct server *srv = fi->srv;
    const struct store_image *si = &fi->si;
    struct image *img = fi->loaded;
    double retry_s = FLEET_IMAGE_RETRY_S;

    fi->loaded = NULL;
    if (img && fi->refused) {
        /* Kept on disk: the bytes are right, this server's keys refuse them. */
        say_always(srv->o, LOG_LV_ERROR, "image %.16s... (%s): not offered by this server: %s",
                   si->idhex, si->version, fi->err);
        image_unref(img);
        img = NULL;
    } else if (srv->o->db && (!img || memcmp(img->desc.id, si->id, TCPOTA_ID_LEN) != 0)) {
        /* On PostgreSQL the file is this node's cache of the database's
         * bytes: damaged, cut, unreadable or gone, the next check-in
         * fetches it again (store_pg_img.c) once it is removed. */
        char what[sizeof(fi->err) + 32];

        (void)unlink(si->path);
        if (img) {
            snprintf(what, sizeof(what), "no longer has that SHA-256 (damaged or replaced on disk)");
            snprintf(fi->err, sizeof(fi->err), "this node's copy %s was damaged", si->path);
        } else {
            snprintf(what, sizeof(what), "cannot be loaded (%s)", fi->err);
        }
        say_always(srv->o, LOG_LV_ERROR, "image %.16s... (%s): this node's copy %s %s; removed: "
                   "the next check-in fetches it again from the database", si->idhex,
                   si->version, si->path, what);
        image_unref(img);
        img = NULL;
        retry_s = FLEET_IMAGE_REFETCH_S;
    } else if (!img) {
        say_always(srv->o, LOG_LV_ERROR, "image %.16s... (%s): cannot load it (%s); not offered: "
                   "add the image again (tcpota image add with the same file restores it)",
                   si->idhex, si->version, fi->err);
    } else if (memcmp(img->desc.id, si->id, TCPOTA_ID_LEN) != 0) {
        say_always(srv->o, LOG_LV_ERROR, "image %.16s... (%s): %s no longer has that SHA-256 "
                   "(damaged or replaced on disk); not offered: add the image again (tcpota image "
                   "add with the original file restores it; the file is read again every %u s)",
                   si->idhex, si->version, si->path, FLEET_IMAGE_RETRY_S);
        snprintf(fi->err, sizeof(fi->err), "%s no longer has its SHA-256", si->path);
        image_unref(img);
        img = NULL;
    }
    if (img) {
        fi->file = img->src;
    }
    if (img) {
        say(srv, "image %.16s... (%s, %u bytes) loaded in %.*f %s%s; %zu check-in%s waited for it",
            si->idhex, si->version, img->size, fi->load_s < 1 ? 1 : 2,
            fi->load_s < 1 ? fi->load_s * 1000 : fi->load_s, fi->load_s < 1 ? "ms" : "s",
            on_loop ? " on the event loop (no thread)" : "", fi->nwait, fi->nwait == 1 ? "" : "s");
    }
    fi->img = img;
    fi->epoch = srv->fleet->epoch;
    fi->retry_at = now_s() + retry_s;
}

/* Decides the check-ins that waited for fi (fi may be gone after). */
static void image_release(struct fleet_image *fi)
{
    struct store_req **w = fi->wait;
    size_t i, n = fi->nwait;

    fi->wait = NULL;
    fi->nwait = 0;
    for (i = 0; i < n; i++) {
        w[i]->done(w[i]); /* fleet_park lets it through now */
    }
    free(w);
}

static void image_loaded(void *arg)
{
    struct fleet_image *fi = arg;

    fi->job = NULL;
    image_settle(fi, 0);
    image_release(fi);
}

int fleet_park(struct server *srv, struct store_req *r)
{
    struct fleet *f = srv->fleet;
    const struct store_image *si;
    struct fleet_image *fi;
    struct store_req **w;

    if (!f || r->rc < 0 || !r->u.checkin.has_rollout) {
        return 0;
    }
    si = &r->u.checkin.out->image;
    fi = image_find(f, si);
    if (fi && image_settled(f, fi)) {
        return 0;
    }
    if (fi && !fi->job) { /* a failure due to be tried again, or a file that changed */
        image_drop(f, fi);
        fi = NULL;
    }
    if (!fi) {
        image_drop_stale(f, si);
        if (!(fi = image_entry(srv, si))) {
            return 0;
        }
        fi->job = offload_start(srv->base, image_load_work, image_loaded, fi);
        if (!fi->job) { /* no thread: image_for loads it on the loop */
            image_drop(f, fi);
            return 0;
        }
    }
    if (!(w = realloc(fi->wait, (fi->nwait + 1) * sizeof(*w)))) {
        return 0; /* image_for: not loaded yet, said as such */
    }
    fi->wait = w;
    fi->wait[fi->nwait++] = r;
    r->parked = 1;
    return 1;
}

/* The loaded image for si, or NULL after its failure was logged (or while
 * it is still loading: only a check-in fleet_park could not hold waits).
 * fleet_park ran first for the same check-in, in this turn of the loop:
 * an entry it left is as it judged it (its file was looked at there). It
 * left none when it could not start a job: then the image loads here, on
 * the loop. */
static struct image *image_for(struct server *srv, const struct store_image *si)
{
    struct fleet_image *fi = image_find(srv->fleet, si);

    if (fi) {
        return fi->img;
    }
    if (!(fi = image_entry(srv, si))) {
        return NULL;
    }
    image_load_work(fi);
    image_settle(fi, 1);
    return fi->img;
}

/* At stop: every load ends and the check-ins that waited are decided. */
static void images_stop(struct fleet *f)
{
    struct fleet_image *fi;

    for (;;) { /* from the head each time: a decision may drop an entry */
        for (fi = f->images; fi && !fi->job && !fi->nwait; fi = fi->next) {
        }
        if (!fi) {
            return;
        }
        if (fi->job) {
            offload_wait(fi->job);
            fi->job = NULL;
            image_settle(fi, 0);
        }
        image_release(fi);
    }
}

static void flush_events(struct server *srv);
static int has_pending(struct fleet *f, const char *id);

/* A write that may change what a device is told (an image, a rollout, a
 * group, a secret: the durable ops that are not a device's own check-in or
 * steps) starts a new epoch: no check-in is answered from memory made
 * before it. */
static void remember_bump(struct fleet *f, const struct store_req *r)
{
    if (r->op != STORE_CHECKIN && r->op != STORE_EVENT && r->op != STORE_EVENTS &&
        store_req_durable(r)) {
        f->epoch++;
    }
}

int fleet_submit(struct server *srv, struct store_req *r)
{
    int rc;

    /* A device's check-in reads what its earlier steps wrote. */
    if (r->op == STORE_CHECKIN && has_pending(srv->fleet, r->u.checkin.id)) {
        flush_events(srv);
    }
    r->now = utc_now();
    remember_bump(srv->fleet, r);
    rc = store_submit(srv->fleet->store, r);
    if (rc < 0) {
        srv->fleet->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: cannot queue a request (%s)", r->err);
        store_req_free(r);
        return -1;
    }
    return 0;
}

static void apply_rules(struct server *srv, struct store_rollout *ro);

#define FLEET_RECHECK_MAX 8 /* rollouts read again after one batch's failures */

/* A rollout read again after a failure was recorded (recheck_failures). */
static void recheck_done(struct store_req *r)
{
    if (r->rc == STORE_OK && r->u.rollout.r->ro.state == ROLLOUT_STATE_ACTIVE) {
        apply_rules(r->arg, r->u.rollout.r);
    }
    store_req_free(r);
}

/* The rollouts of the failures in a batch just recorded are read again
 * and their rules applied: a device's DECLINE or failed COMPLETE comes
 * after the check-in whose counts the rules read, and a trial's rollout
 * stayed active past its halt rule until another device checked in. A
 * failure in a check-in's own report needs none (its counts include it). */
static void recheck_failures(struct server *srv, const struct store_event *items, size_t n)
{
    uint64_t done[FLEET_RECHECK_MAX];
    size_t i, k, nd = 0;

    for (i = 0; i < n && nd < FLEET_RECHECK_MAX; i++) {
        struct store_req *g;
        uint64_t id = items[i].rollout_id;

        if (!id || store_ro_status_of(items[i].state) != STORE_RO_FAILED) continue;
        for (k = 0; k < nd && done[k] != id; k++) {
        }
        if (k < nd) continue;
        done[nd++] = id;
        if ((g = store_req_new(STORE_ROLLOUT_GET, recheck_done, srv)) != NULL) {
            g->u.rollout.id = id;
            (void)fleet_submit(srv, g);
        }
    }
}

void fleet_notify_device(struct server *srv, const struct store_device *d)
{
    api_notify_device(srv->fleet->api, d->id, store_state_name(d->state), d->bytes, d->size,
                      d->reason);
}

static void events_done(struct store_req *r)
{
    struct server *srv = r->arg;
    size_t i;

    if (r->rc < 0) {
        srv->fleet->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: recording %zu step%s of devices failed: %s",
                   r->u.events.n, r->u.events.n == 1 ? "" : "s", store_err_logged(r));
    } else if (r->u.events.skipped && r->u.events.skipped == r->u.events.missing) {
        /* Their device is not registered: removed (device rm) while it
         * was served, whose steps come once a second until it ends. News,
         * said once a minute at most (a review: an error every second). */
        double now = now_s();
        if (!srv->fleet->missing_said || now - srv->fleet->missing_said >= FLEET_MISSING_SAY_S) {
            srv->fleet->missing_said = now;
            say_always(srv->o, LOG_LV_INFO, "store: steps not recorded, their device not in the"
                       " registry (removed while it was served? said once a minute): %s", r->err);
        }
    } else if (r->u.events.skipped) {
        srv->fleet->db_errors += (unsigned)r->u.events.skipped;
        say_always(srv->o, LOG_LV_ERROR, "store: %s", r->err);
    }
    for (i = 0; r->rc == STORE_OK && srv->fleet->api && i < r->u.events.n; i++) {
        const struct store_event *e = &r->u.events.items[i];
        api_notify_device(srv->fleet->api, e->id, store_state_name(e->state), e->bytes, e->size,
                          e->reason);
    }
    if (r->rc == STORE_OK) recheck_failures(srv, r->u.events.items, r->u.events.n);
    store_req_free(r);
}

static void seen_done(struct store_req *r)
{
    struct server *srv = r->arg;

    /* Unreachable (PostgreSQL down): said once by the store; these times
     * may be lost, as a window of them may be on SIGKILL. */
    if (r->rc < 0 && r->rc != STORE_E_UNAVAILABLE) {
        srv->fleet->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: recording the time of %zu check-ins failed: %s",
                   r->u.seen.n, r->err);
    }
    store_req_free(r);
}

/* Hands the times of the check-ins answered from memory to the store. */
static void flush_seen(struct server *srv)
{
    struct fleet *f = srv->fleet;
    struct store_req *r;

    if (!f->nseen) {
        return;
    }
    r = store_req_new(STORE_SEEN, seen_done, srv);
    if (!r) {
        f->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: out of memory: the time of %zu check-ins not "
                   "recorded", f->nseen);
        f->nseen = 0;
        return;
    }
    r->u.seen.ids = f->seen;
    r->u.seen.n = f->nseen;
    f->seen = NULL;
    f->nseen = 0;
    (void)fleet_submit(srv, r);
}

/* Forgets the pending steps (their reasons too). */
static void drop_events(struct fleet *f)
{
    for (size_t i = 0; i < f->nev; i++) {
        free(f->ev[i].reason);
    }
    f->nev = 0;
}

/* Hands the pending steps to the store as one request (in their order),
 * and the times of check-ins answered from memory as another. */
static void flush_events(struct server *srv)
{
    struct fleet *f = srv->fleet;
    struct store_req *r;

    evtimer_del(f->flush_timer);
    flush_seen(srv);
    if (!f->nev) {
        return;
    }
    r = store_req_new(STORE_EVENTS, events_done, srv);
    if (!r) {
        f->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: out of memory: %zu steps of devices not recorded",
                   f->nev);
        drop_events(f);
    } else {
        struct store_event *fit = f->nev < f->capev ? realloc(f->ev, f->nev * sizeof(*fit)) : NULL;

        /* The batch waits in the store's queue, thousands of steps of a
         * busy fleet at a time: without the room it did not fill. */
        r->u.events.items = fit ? fit : f->ev;
        r->u.events.n = f->nev;
        f->ev = NULL;
        f->nev = f->capev = 0;
        (void)fleet_submit(srv, r);
    }
    memset(f->slot, 0, sizeof(f->slot));
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_events(arg);
}

/* Flushes in FLEET_FLUSH_MS unless that is arranged already. */
static void arm_flush(struct fleet *f)
{
    struct timeval tv = {0, FLEET_FLUSH_MS * 1000};

    if (!evtimer_pending(f->flush_timer, NULL)) {
        evtimer_add(f->flush_timer, &tv);
    }
}

/* The slot of device id in the hash of pending steps: the one holding it,
 * or the empty one where it goes. */
static uint16_t *slot_of(struct fleet *f, const char *id)
{
    uint32_t h = 2166136261u, i;
    const unsigned char *p;

    for (p = (const unsigned char *)id; *p; p++) {
        h = (h ^ *p) * 16777619u;
    }
    for (i = h % FLEET_SLOTS;; i = (i + 1) % FLEET_SLOTS) {
        if (!f->slot[i] || strcmp(f->ev[f->slot[i] - 1].id, id) == 0) {
            return &f->slot[i];
        }
    }
}

/* Whether device id has steps waiting: its check-in must come after them. */
static int has_pending(struct fleet *f, const char *id)
{
    return f->nev && *slot_of(f, id) != 0;
}

/* A copy of at most cap - 1 bytes of s, not cutting a UTF-8 sequence. */
static void copy_text(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void fleet_step(struct server *srv, const struct fleet_who *who, enum store_dev_state st,
                const uint8_t *image_id, const uint8_t *failed_id, uint32_t bytes,
                const char *reason, int durable, int progress)
{
    struct fleet *f = srv->fleet;
    struct store_event *e, *grown;
    struct device_rec *rec = devices_get(&srv->devices, who->dev, 0);
    uint16_t *slot;

    if (rec) {
        rec->steps++; /* what it is told next comes from the store */
        rec->memo_fp = 0;
    }
    slot = f->nev ? slot_of(f, who->dev) : NULL;
    if (progress && slot && *slot && f->progress[*slot - 1]) {
        e = &f->ev[*slot - 1];
        if (memcmp(e->image_id, image_id, TCPOTA_ID_LEN) == 0 &&
            e->rollout_id == who->rollout_id) {
            e->bytes = bytes;
            e->size = who->size;
            return;
        }
    }
    if (f->nev == f->capev) {
        size_t cap = f->capev ? 2 * f->capev : 16;
        cap = cap > FLEET_EVENTS_MAX ? FLEET_EVENTS_MAX : cap;
        if (!(grown = realloc(f->ev, cap * sizeof(*grown)))) {
            f->db_errors++;
            say_always(srv->o, LOG_LV_ERROR, "store: out of memory: %s of device %s not recorded",
                       store_state_name(st), who->dev);
            return;
        }
        f->ev = grown;
        f->capev = cap;
    }
    e = &f->ev[f->nev];
    memset(e, 0, sizeof(*e));
    copy_text(e->id, sizeof(e->id), who->dev);
    e->state = st;
    if (image_id) {
        e->has_image = 1;
        memcpy(e->image_id, image_id, TCPOTA_ID_LEN);
    }
    if (failed_id) {
        e->has_failed = 1;
        memcpy(e->failed_id, failed_id, TCPOTA_ID_LEN);
    }
    e->rollout_id = who->rollout_id;
    e->bytes = bytes;
    e->size = who->size;
    if (reason && !(e->reason = malloc(STORE_REASON_MAX + 1))) {
        f->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: out of memory: %s of device %s not recorded",
                   store_state_name(st), who->dev);
        return;
    }
    if (reason) {
        copy_text(e->reason, STORE_REASON_MAX + 1, reason);
    }
    e->durable = (uint8_t)(durable != 0);
    f->progress[f->nev] = (uint8_t)(progress && image_id && !failed_id && !reason && !durable);
    f->nev++;
    *(slot ? slot : slot_of(f, who->dev)) = (uint16_t)f->nev;
    /* A final step (verified, failed, declined) goes at once, with what
     * waits before it: SIGKILL loses no final step that was recorded, only
     * progress, as fleet.md says. */
    if (durable || f->nev >= FLEET_EVENTS_MAX) {
        flush_events(srv);
    } else {
        arm_flush(f);
    }
}

/* Who a connection's steps are about. */
static struct fleet_who who_of(const struct conn *c)
{
    struct fleet_who w = {c->dev, c->rollout_id, c->img ? c->img->size : 0};
    return w;
}

/* Adds a step of c's update (fleet_step). */
static void add_step(struct conn *c, enum store_dev_state st, const uint8_t *image_id,
                     const uint8_t *failed_id, uint32_t bytes, const char *reason, int durable,
                     int progress)
{
    struct fleet_who w = who_of(c);
    fleet_step(c->srv, &w, st, image_id, failed_id, bytes, reason, durable, progress);
}

/* Records a step of c's update (see add_step). */
static void record(struct conn *c, enum store_dev_state st, const uint8_t *image_id,
                   const uint8_t *failed_id, uint32_t bytes, const char *reason, int durable)
{
    add_step(c, st, image_id, failed_id, bytes, reason, durable, 0);
}

/* Ends this server's transfers of rollout id, halted or cancelled (said
 * in why: "rollout 3 halted"): v1 connections still streaming, legacy
 * connections, HTTP downloads. Each is cut as a lost connection is: the
 * device keeps what it has and, at its next check-in, is told why it waits
 * (or resumes, once the rollout is resumed): reset, so that what is still
 * queued for it never arrives. One whose every byte the server's TCP has
 * sent (the session handed out the whole image, none is left in our queue,
 * which holds up to the whole image, nor in the socket's) finishes: a reset
 * cannot take back what is on its way (it was judged by the bytes not yet
 * acknowledged, and a device whose ACK was a moment late was logged as
 * stopped, had every byte, installed and reported), and its verification is
 * what a halt waits for. That holds before the server has read its ACCEPT
 * too (the whole image streams before it, which the tail's watermark may
 * leave unread): a trial's device logged as stopped there installed the
 * image 70 ms later, uncounted. Behind a balancer (--proxy-protocol) the
 * socket says nothing of the device: the balancer's buffers take a whole
 * image at once (a trial's three devices behind HAProxy, at 20 kB/s,
 * installed a cancelled image a minute later), so there only a device
 * whose ACKs say it holds every byte finishes. */
static void stop_transfers(struct server *srv, uint64_t id, const char *why)
{
    struct conn *c, *next;
    unsigned n = 0, spared = 0;

    /* Behind a balancer the ACKs decide: those waiting below the stream's
     * watermark (read once a second) are read first, or a device whose
     * last ACK was a moment late would be stopped with every byte (a
     * review). A read may end the connection. */
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (c->rollout_id == id && c->img && !c->closing && c->kind == K_V1 &&
            conn_behind_balancer(c)) {
            conn_read_stream(c);
        }
    }
    for (c = srv->conns; c; c = next) {
        enum tcpota_srv_state st = tcpota_srv_get_state(&c->s);
        int streams = st == TCPOTA_SRV_OFFERED || st == TCPOTA_SRV_STREAMING ||
                      st == TCPOTA_SRV_SENT_ALL;
        int running;

        next = c->next;
        if (c->rollout_id != id || !c->img || c->closing) {
            continue;
        }
        if (c->kind == K_LEGACY) {
            running = !c->legacy_done;
        } else if (streams && conn_behind_balancer(c)) {
            running = c->s.acked < c->img->size;
        } else {
            running = streams && (!tcpota_srv_all_sent(&c->s) || evbuffer_get_length(conn_out(c)) != 0 ||
                                  sock_unsent(c->fd) != 0);
        }
        if (!running && streams && !c->spared && c->kind != K_LEGACY) {
            /* Said (once: a halt, then a cancel), or the operator sees a
             * halted rollout's devices finish the image with no word why (a
             * trial, behind a proxy that had taken the whole image). An
             * ACCEPT still to come that asks for other bytes (a resume point
             * the device dropped) would have the image sent again: v1_input
             * stops it then (c->spared). */
            clog_(c, 1, "%s: every byte of the image was sent already (a reset cannot take it "
                        "back): the transfer may finish", why);
            c->spared = 1;
            spared++;
        }
        if (!running) {
            continue;
        }
        clog_(c, 1, "%s: transfer stopped; closing", why);
        n++;
        sock_reset_on_close(c->fd);
        (void)conn_close(c, 1);
    }
    n += http_ota_stop(srv->fleet->ota, id, why);
    if (n || spared) {
        char more[64] = "";
        if (spared) {
            snprintf(more, sizeof(more), ", %u that may finish (every byte sent already)", spared);
        }
        say_always(srv->o, LOG_LV_INFO, "%s: %u transfer%s stopped on this server%s", why, n,
                   text_s(n), more);
    }
}

static void transition_done(struct store_req *r)
{
    struct server *srv = r->arg;
    const struct store_rollout *ro = r->u.rollout.r;

    if (r->rc == STORE_E_CONFLICT) {
        /* Another check-in (or node, or the operator) moved it first. */
    } else if (r->rc < 0) {
        srv->fleet->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: rollout %llu: %s",
                   (unsigned long long)r->u.rollout.id, store_err_logged(r));
    } else if (r->u.rollout.new_state == ROLLOUT_STATE_HALTED) {
        char why[64];

        say_always(srv->o, LOG_LV_ERROR, "rollout %llu halted by itself: failures passed %u%% "
                   "of its finished devices; resume or cancel it (tcpota rollout resume|cancel %llu)",
                   (unsigned long long)ro->id, ro->rules.halt_pct, (unsigned long long)ro->id);
        snprintf(why, sizeof(why), "rollout %llu halted", (unsigned long long)ro->id);
        stop_transfers(srv, ro->id, why);
    } else {
        say(srv, "rollout %llu: wave %u (%u%%) opens", (unsigned long long)ro->id,
            r->u.rollout.new_n_open, ro->pct[r->u.rollout.new_n_open - 1]);
    }
    store_req_free(r);
}

/* Applies the halt rule, then the opening rule, to the counts a check-in
 * read; writes what they call for (compare-and-set) and applies it to *ro
 * at once, so the device being decided already sees it. */
static void apply_rules(struct server *srv, struct store_rollout *ro)
{
    struct store_req *r;
    enum rollout_state to = ro->ro.state;
    uint32_t n_open = ro->ro.n_open;

    switch (rollout_next_move(&ro->ro, &ro->rules, ro->waves, ro->base_failed,
                              ro->base_finished, utc_now())) {
    case ROLLOUT_HALT:
        to = ROLLOUT_STATE_HALTED;
        break;
    case ROLLOUT_OPEN_NEXT:
        n_open++;
        break;
    case ROLLOUT_HOLD:
    default:
        return;
    }
    r = store_req_new(STORE_ROLLOUT_SET, transition_done, srv);
    if (!r) {
        return;
    }
    store_rollout_move(r, ro, to, n_open);
    ro->ro.state = to;
    ro->ro.n_open = n_open;
    (void)fleet_submit(srv, r);
}

/* Whether the device failed or declined the registry's image si (img: it
 * loaded, NULL: its file did not): a decline is kept as the offer's
 * fingerprint, the loaded image's, or made from the registry's manifest. */
static int failed_before(const struct store_req *r, const struct store_image *si,
                         const struct image *img)
{
    uint8_t made[TCPOTA_ID_LEN];
    const uint8_t *fp = img ? img->offer_fp : made;
    uint32_t i;

    if (r->u.checkin.out->nfailed == 0) {
        return 0; /* most check-ins: no hash */
    }
    if (!img) {
        image_offer_fp(si->id, si->manifest, si->manifest_len, made);
    }
    for (i = 0; i < r->u.checkin.out->nfailed; i++) {
        if (memcmp(r->u.checkin.out->failed[i], si->id, TCPOTA_ID_LEN) == 0 ||
            memcmp(r->u.checkin.out->failed[i], fp, TCPOTA_ID_LEN) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The counter of a wave that status is counted in; NULL for targeted. */
static uint32_t *wave_bucket(struct rollout_wave *w, enum store_ro_status status)
{
    switch (status) {
    case STORE_RO_OFFERED: return &w->offered;
    case STORE_RO_DOWNLOADING: return &w->downloading;
    case STORE_RO_UPDATED: return &w->updated;
    case STORE_RO_FAILED: return &w->failed;
    default: return NULL;
    }
}

void fleet_count_now(struct store_req *r, const char *device_id, enum store_ro_status to)
{
    struct store_rollout *ro = &r->u.checkin.out->rollout;
    enum store_ro_status from = r->u.checkin.ro_status;
    int finished = from == STORE_RO_UPDATED || from == STORE_RO_FAILED;
    uint32_t wave, *out, *in;

    if (!r->u.checkin.has_rollout || from == to ||
        (finished && to != STORE_RO_UPDATED && to != STORE_RO_FAILED)) {
        return;
    }
    r->u.checkin.ro_status = to;
    wave = rollout_wave_of(&ro->ro, rollout_place(ro->id, device_id, strlen(device_id)));
    if (wave >= ro->ro.n_waves) {
        return; /* in no wave, counted nowhere */
    }
    out = wave_bucket(&ro->waves[wave], from);
    in = wave_bucket(&ro->waves[wave], to);
    if (out && *out > 0) {
        (*out)--;
    }
    if (in) {
        (*in)++;
    }
}

/* Whether the registry's row of device d says it failed image si. */
static int shows_failure(const struct store_device *d, const struct store_image *si)
{
    switch (d->state) {
    case STORE_ST_ROLLED_BACK:
    case STORE_ST_BOOT_FAILED:
    case STORE_ST_FAILED:
    case STORE_ST_DECLINED: return strcmp(d->image, si->idhex) == 0;
    default: return 0;
    }
}

struct image *fleet_decide(struct server *srv, struct store_req *r,
                           const struct tcpota_srv_hello *h, int failed, uint64_t *rollout_id,
                           enum store_dev_state *st, const struct store_image **about, char *why,
                           size_t cap, uint16_t *why_code)
{
    struct store_rollout *ro = &r->u.checkin.out->rollout;
    const struct store_image *si = &r->u.checkin.out->image;
    struct tcpota_srv_image stored = {0};
    struct image *img;
    struct offer_image oi;
    struct offer_device od;
    enum offer_verdict ov;
    enum rollout_verdict rv;
    uint32_t place;
    uint16_t code_unused;

    if (!why_code) why_code = &code_unused;
    *why_code = TCPOTA_WHY_NONE;
    *st = STORE_ST_UP_TO_DATE;
    *about = NULL;
    if (!r->u.checkin.has_rollout) {
        snprintf(why, cap, "no rollout for model %s%s%s", h->model,
                 r->u.checkin.out->group[0] ? " and group " : "", r->u.checkin.out->group);
        return NULL;
    }
    *rollout_id = ro->id;
    *about = si;
    /* The counts include this very check-in's report: a halt it causes
     * applies to it and to everyone after. */
    apply_rules(srv, ro);
    img = image_for(srv, si);
    /* The policy reads the registry's id, version, model and manifest
     * (what the image is loaded from) when the file does not load: a
     * device that runs the image already, or is not to have it, is told
     * so, not to wait for it. */
    if (!img) {
        memcpy(stored.id, si->id, TCPOTA_ID_LEN);
        stored.size = si->size;
        stored.version = si->version;
        stored.version_len = (uint16_t)strlen(si->version);
    }
    oi.desc = img ? &img->desc : &stored;
    oi.model = si->model;
    od.hello = h;
    od.failed_before = failed || failed_before(r, si, img);
    ov = offer_decide(&oi, &od, ro->allow_downgrade);
    if (ov != OFFER_YES) {
        *why_code = offer_why(ov);
        if (ov == OFFER_FAILED_BEFORE) {
            /* Its failure stays its state (rolled-back says more than
             * failed), unless a decision since replaced it (under another
             * model or group, or with no rollout): then the failure is what
             * it is told now, on the device only. Counted against this
             * rollout it would halt a rollout of the image made again after
             * a halt, by devices that never tried it there (a review), and
             * depend on what the device did in between. */
            if (!shows_failure(&r->u.checkin.out->dev, si)) {
                *st = STORE_ST_FAILED;
                *rollout_id = 0;
            } else {
                *st = STORE_ST_COUNT;
            }
        } else if (ov == OFFER_UNORDERED) {
            /* Not up to date: nobody can tell, so not one of the
             * rollout's successes (a wave it counted in would open). */
            *st = STORE_ST_WAITING;
        }
        if (od.failed_before && (ov == OFFER_DOWNGRADE || ov == OFFER_SAME_VERSION ||
                                 ov == OFFER_UNORDERED)) {
            /* It failed this image, and runs another version now (offer.h:
             * the versions' rules come first): told so, but none of the
             * rollout's successes; its failure there stays counted (a
             * review: the halt rule lost it). */
            *rollout_id = 0;
        }
        snprintf(why, cap, "rollout %llu: %s", (unsigned long long)ro->id, offer_reason(ov));
        return NULL;
    }
    if (!img) {
        /* Waiting, with why, in the registry (device list, the dashboard):
         * not only in the server's log; the device asks again once the
         * failure is no longer remembered (before: told "no image for it",
         * it took itself as up to date). */
        *st = STORE_ST_WAITING;
        *why_code = TCPOTA_WHY_UNSERVABLE;
        snprintf(why, cap, FLEET_UNSERVABLE_SAYS, (unsigned long long)ro->id);
        return NULL;
    }
    place = rollout_place(ro->id, h->device_id, strlen(h->device_id));
    rv = rollout_decide(&ro->ro, place, r->u.checkin.ro_status == STORE_RO_DOWNLOADING);
    if (rv == ROLLOUT_NOT_IN_ROLLOUT) {
        /* Nothing for it, for good: up to date as it is (exit 0, no
         * waiting); the reason says why. */
        *why_code = TCPOTA_WHY_NONE;
        *st = STORE_ST_UP_TO_DATE;
        *about = NULL;     /* not the rollout's image: it runs what it ran */
        *rollout_id = 0;   /* and is none of the rollout's updates */
        snprintf(why, cap, "rollout %llu: %s", (unsigned long long)ro->id, rollout_reason(rv));
        return NULL;
    }
    if (rv != ROLLOUT_OFFER) {
        *why_code = TCPOTA_WHY_LATER;
        *st = STORE_ST_WAITING;
        snprintf(why, cap, "rollout %llu: %s", (unsigned long long)ro->id, rollout_reason(rv));
        return NULL;
    }
    return img;
}

int fleet_changes(const struct store_req *r, uint64_t rollout_id, enum store_dev_state st,
                   const struct store_image *about, const char *why)
{
    const struct store_device *d = &r->u.checkin.out->dev;
    const char *hex = about ? about->idhex : "";

    if (st == STORE_ST_COUNT) {
        return 0;
    }
    if (st == STORE_ST_UP_TO_DATE && d->state == STORE_ST_UPDATED && strcmp(d->image, hex) == 0) {
        return rollout_id && r->u.checkin.has_rollout && r->u.checkin.ro_status != STORE_RO_UPDATED;
    }
    /* A step without an image keeps the row's (the store's rule): with no
     * rollout, an image from before is no change, or every check-in of
     * such a device would write a step and a history line. */
    return d->state != st || (about && strcmp(d->image, hex) != 0) ||
           strncmp(d->reason, why, STORE_REASON_MAX) != 0;
}

/* What a check-in request reads, owned by the request (the connection may
 * end while the store thread works on it). */
struct checkin {
    struct conn *c; /* NULL once the connection is gone */
    uint64_t fp;    /* v1: its HELLO's fingerprint (remember()) */
    uint32_t epoch; /* the fleet's epoch, */
    uint32_t steps; /* and the device's steps when it was asked */
    char id[TCPOTA_MAX_STR + 1];
    char model[TCPOTA_MAX_NAME + 1], version[TCPOTA_MAX_NAME + 1];
    char addr[48];
    uint8_t running[TCPOTA_ID_LEN], report[TCPOTA_ID_LEN];
};

/* A check-in request for c, its inputs copied; NULL: out of memory. */
static struct store_req *checkin_new(struct conn *c, store_done_fn done, const char *model,
                                     const char *version, enum store_proto proto)
{
    struct checkin *ci = calloc(1, sizeof(*ci));
    struct store_req *r = ci ? store_req_new(STORE_CHECKIN, done, ci) : NULL;

    if (!r) {
        free(ci);
        return NULL;
    }
    ci->c = c;
    (void)text_copy(ci->id, sizeof(ci->id), c->dev);
    (void)text_copy(ci->model, sizeof(ci->model), model);
    (void)text_copy(ci->version, sizeof(ci->version), version);
    (void)text_copy(ci->addr, sizeof(ci->addr), c->addr);
    r->u.checkin.id = ci->id;
    r->u.checkin.model = ci->model;
    r->u.checkin.version = ci->version;
    r->u.checkin.addr = ci->addr;
    r->u.checkin.proto = proto;
    return r;
}

/* The connection of a completed check-in (NULL: it ended meanwhile), its
 * context freed. */
static struct conn *checkin_conn(struct store_req *r)
{
    struct checkin *ci = r->arg;
    struct conn *c = ci->c;

    free(ci);
    r->arg = NULL;
    if (c) {
        c->req = NULL;
    }
    return c;
}

/* Counts the report a completed check-in applied (metrics.h), under the
 * rollout that applies to the device when that rollout is of this image. */
static void count_report(const struct store_req *r)
{
    const struct store_checkin_out *o = r->u.checkin.out;
    uint64_t ro = 0;

    if (r->rc < 0 || !r->u.checkin.report_id) {
        return;
    }
    if (r->u.checkin.has_rollout &&
        memcmp(o->image.id, r->u.checkin.report_id, TCPOTA_ID_LEN) == 0) {
        ro = o->rollout.id;
    }
    metrics_event(ro, r->u.checkin.report_id,
                  r->u.checkin.report_result == TCPOTA_RESULT_CONFIRMED     ? METRICS_UPDATED
                  : r->u.checkin.report_result == TCPOTA_RESULT_ROLLED_BACK ? METRICS_ROLLED_BACK
                                                                            : METRICS_BOOT_FAILED);
}

/* The fingerprint of what a v1 HELLO without a report tells the store: a
 * keyed SipHash (a device cannot aim at another fingerprint); never 0. */
static uint64_t hello_fp(const struct fleet *f, const struct conn *c,
                         const struct tcpota_srv_hello *h)
{
    unsigned char buf[2 * (TCPOTA_MAX_NAME + 1) + 1 + TCPOTA_ID_LEN + sizeof(c->addr)], *p = buf;
    uint64_t fp;
    size_t n;

    n = strlen(h->model) + 1;
    memcpy(p, h->model, n);
    p += n;
    n = strlen(h->version) + 1;
    memcpy(p, h->version, n);
    p += n;
    *p++ = h->running_id != NULL;
    if (h->running_id) {
        memcpy(p, h->running_id, TCPOTA_ID_LEN);
        p += TCPOTA_ID_LEN;
    }
    n = strlen(c->addr) + 1;
    memcpy(p, c->addr, n);
    p += n;
    (void)crypto_shorthash((unsigned char *)&fp, buf, (unsigned long long)(p - buf), f->memo_key);
    return fp ? fp : 1;
}

/* Whether c's check-in (HELLO h, no report) may be answered as the last one
 * was (see FLEET_MEMO_SHARED_S). */
static int remembered(const struct conn *c, uint64_t fp)
{
    const struct fleet *f = c->srv->fleet;
    const struct device_rec *d = c->rec;

    return d && d->memo_fp == fp && d->memo_epoch == f->epoch &&
           (!f->store->vt->shared || now_s() - d->memo_at <= FLEET_MEMO_SHARED_S);
}

/* After a check-in that changed nothing and was told NO_UPDATE, up to date:
 * remembers it unless the fleet or the device moved while the store
 * worked on it. */
static void remember(struct conn *c, const struct checkin *ci, uint16_t why)
{
    struct device_rec *d = c->rec;

    if (d && ci->fp && ci->epoch == c->srv->fleet->epoch && ci->steps == d->steps) {
        d->memo_fp = ci->fp;
        d->memo_epoch = ci->epoch;
        d->memo_at = now_s();
        d->memo_why = (uint8_t)why;
    }
}

/* Notes the time of a check-in answered from memory (STORE_SEEN). */
static void add_seen(struct server *srv, const char *id)
{
    struct fleet *f = srv->fleet;

    if (!f->seen && !(f->seen = malloc(FLEET_EVENTS_MAX * sizeof(*f->seen)))) {
        f->db_errors++;
        say_always(srv->o, LOG_LV_ERROR, "store: out of memory: the time of a check-in of %s "
                   "not recorded", id);
        return;
    }
    copy_text(f->seen[f->nseen], sizeof(f->seen[0]), id);
    if (++f->nseen == FLEET_EVENTS_MAX) {
        flush_events(srv);
    } else {
        arm_flush(f);
    }
}

/* A v1 check-in without a report, on a database that has answered
 * nothing for stuck s: said, counted, its why set; returns the RETRY_AFTER
 * of its NO_UPDATE. Queued behind it, the check-in waited until the
 * device gave up, told that the server sent nothing (a trial): told to
 * come back, as while the database is unreachable. at_hello: the answer
 * to HELLO itself, which the hello's own line says (log_offer); else one
 * that was asking the store, said here. */
static uint32_t hung_no_update(struct conn *c, double stuck, int at_hello)
{
    if (at_hello) {
        c->hung_s = (uint16_t)(stuck < UINT16_MAX ? stuck : UINT16_MAX);
        c->hung_retry_s = FLEET_RETRY_DOWN_S;
    } else {
        clog_(c, 0, "decision: no update: the database has answered nothing for %.0f s; asks"
              " again in %u s", stuck, FLEET_RETRY_DOWN_S);
    }
    metrics_deferred(METRICS_V1, METRICS_DB_HUNG);
    tcpota_srv_set_why(&c->s, TCPOTA_WHY_UNKNOWN_NOW);
    return FLEET_RETRY_DOWN_S;
}

/* A legacy device's check-in on a database that has answered nothing for
 * stuck s: a legacy device has no word for "come back": closed, it asks
 * again on its own. */
static void hung_close_legacy(struct conn *c, double stuck)
{
    clog_(c, 0, "decision: no update: the database has answered nothing for %.0f s; closing"
          " (the device asks again)", stuck);
    metrics_deferred(METRICS_LEGACY, METRICS_DB_HUNG);
    (void)conn_close(c, 1);
}

/* The store answered a v1 device's check-in: decide and answer it. */
static void checkin_done(struct store_req *r)
{
    struct conn *c;
    struct checkin memo = *(struct checkin *)r->arg;

    if (memo.c && fleet_park(memo.c->srv, r)) {
        return; /* decided once its image is loaded */
    }

    count_report(r); /* before checkin_conn frees what report_id points to */
    c = checkin_conn(r);
    struct server *srv;
    struct tcpota_srv_hello h;
    const struct store_image *about;
    struct image *img;
    enum store_dev_state st;
    char why[160];
    uint16_t why_code;
    uint8_t offered = 0;
    uint32_t start = 0;

    if (!c) {
        store_req_free(r); /* the connection ended meanwhile */
        return;
    }
    srv = c->srv;
    if (r->rc == STORE_E_UNAVAILABLE && !r->u.checkin.report_id) {
        /* Nothing to acknowledge: the device asks again later. */
        clog_(c, 0, "decision: no update: the database is unreachable; asks again in %u s",
              FLEET_RETRY_DOWN_S);
        metrics_deferred(METRICS_V1, METRICS_DB_UNREACHABLE);
        tcpota_srv_set_why(&c->s, TCPOTA_WHY_UNKNOWN_NOW);
        (void)tcpota_srv_offer(&c->s, NULL, FLEET_RETRY_DOWN_S, &offered, &start);
        store_req_free(r);
        (void)conn_pump(c);
        return;
    }
    if (r->rc < 0) {
        uint32_t retry = r->rc == STORE_E_UNAVAILABLE ? FLEET_RETRY_DOWN_S : FLEET_RETRY_ERROR_S;
        srv->fleet->db_errors++;
        metrics_deferred(METRICS_V1, fleet_deferred_why(r));
        clog_(c, 1, "store error: %s; the device is told to try again in %u s%s", store_err_logged(r), retry,
              r->u.checkin.report_id ? " (its report is not acknowledged: it keeps it)" : "");
        /* ERROR, not NO_UPDATE: the device keeps its report for next time. */
        (void)tcpota_srv_fail(&c->s, TCPOTA_ERR_BUSY, "server database error; try again later",
                              retry);
        store_req_free(r);
        (void)conn_pump(c);
        return;
    }
    srv->fleet->checkins++;
    if (r->u.checkin.report_id || r->u.checkin.is_new) {
        fleet_notify_device(srv, &r->u.checkin.out->dev);
    }
    metrics_checkin(METRICS_V1);
    tcpota_srv_get_hello(&c->s, &h);
    img = fleet_decide(srv, r, &h, 0, &c->rollout_id, &st, &about, why, sizeof(why), &why_code);
    if (img) {
        c->img = image_ref(img);
    } else {
        tcpota_srv_set_why(&c->s, why_code);
    }
    if (tcpota_srv_offer(&c->s, img ? &img->desc : NULL,
                         why_code == TCPOTA_WHY_UNSERVABLE ? FLEET_IMAGE_RETRY_S : 0, &offered,
                         &start) < 0) {
        store_req_free(r);
        (void)conn_pump(c);
        return;
    }
    if (offered) {
        conn_offered(c, "decision", start);
        metrics_event(c->rollout_id, img->desc.id, METRICS_OFFERED);
        record(c, STORE_ST_OFFERED, img->desc.id, NULL, start, NULL, 0);
    } else {
        if (img) {
            /* choose() said this image; the session found it running. */
            st = STORE_ST_UP_TO_DATE;
            why_code = TCPOTA_WHY_RUNS;
            snprintf(why, sizeof(why), "rollout %llu: runs this image already",
                     (unsigned long long)c->rollout_id);
        }
        clog_(c, 0, "decision: %s: %s", st == STORE_ST_WAITING ? "waiting" : "no update", why);
        conn_set_outcome(c, st == STORE_ST_UP_TO_DATE ? DEV_UP_TO_DATE : DEV_NOT_OFFERED);
        if (fleet_changes(r, c->rollout_id, st, about, why)) {
            record(c, st, about ? about->id : NULL, NULL, 0, why, 0);
        } else if (st == STORE_ST_UP_TO_DATE) {
            remember(c, &memo, why_code);
        }
        image_unref(c->img);
        c->img = NULL;
    }
    store_req_free(r);
    (void)conn_pump(c);
}

int fleet_choose(struct conn *c, const struct tcpota_srv_hello *h,
                 const struct tcpota_srv_image **chosen, uint32_t *retry_after_s)
{
    struct store_req *r;
    struct checkin *ci;
    double stuck;

    struct fleet *f = c->srv->fleet;
    uint64_t fp = h->report_id ? 0 : hello_fp(f, c, h);

    *chosen = NULL;
    *retry_after_s = FLEET_RETRY_ERROR_S;
    snprintf(c->dev, sizeof(c->dev), "%s", h->device_id);
    if (fp && remembered(c, fp)) {
        f->checkins++;
        c->remembered = 1;
        metrics_checkin(METRICS_V1);
        conn_set_outcome(c, DEV_UP_TO_DATE);
        add_seen(c->srv, c->dev);
        *retry_after_s = 0;
        tcpota_srv_set_why(&c->s, c->rec->memo_why);
        return 0; /* NO_UPDATE, as last time */
    }
    if (!h->report_id && (stuck = store_stuck_s())) {
        *retry_after_s = hung_no_update(c, stuck, 1);
        return 0;
    }
    r = checkin_new(c, checkin_done, h->model, h->version, STORE_PROTO_V1);
    if (!r) {
        return 0; /* NO_UPDATE: out of memory (nothing was acknowledged) */
    }
    ci = r->arg;
    ci->fp = fp;
    ci->epoch = f->epoch;
    ci->steps = c->rec ? c->rec->steps : 0;
    if (h->running_id) {
        memcpy(ci->running, h->running_id, TCPOTA_ID_LEN);
        r->u.checkin.running_id = ci->running;
    }
    /* A result this server does not know goes no further than the log:
     * the store would refuse it (and the device, never acknowledged, would
     * send it again at every check-in). */
    if (h->report_id && conn_report(c, h, "")) {
        memcpy(ci->report, h->report_id, TCPOTA_ID_LEN);
        r->u.checkin.report_id = ci->report;
        r->u.checkin.report_result = h->report_result;
    }
    if (fleet_submit(c->srv, r) < 0) {
        free(ci);
        return 0;
    }
    c->req = r;
    return TCPOTA_SRV_CHOOSE_LATER;
}

void fleet_on_event(struct conn *c, const struct tcpota_srv_event *ev)
{
    const struct tcpota_msg *m = &ev->msg;
    const struct image *img = c->img;
    double now;
    char why[STORE_REASON_MAX + 1];

    if (!img) {
        return;
    }
    switch (ev->type) {
    case TCPOTA_SRV_EV_ACCEPT:
        c->progress_logged_at = now_s();
        c->progress_bytes = ev->start;
        record(c, STORE_ST_DOWNLOADING, img->desc.id, NULL, ev->start, NULL, 0);
        return;
    case TCPOTA_SRV_EV_ACK:
        now = now_s();
        if (ev->duplicate || (now - c->progress_logged_at < FLEET_PROGRESS_S &&
                              m->u.ack.offset != img->size)) {
            return;
        }
        c->progress_logged_at = now;
        c->progress_bytes = m->u.ack.offset;
        add_step(c, STORE_ST_DOWNLOADING, img->desc.id, NULL, m->u.ack.offset, NULL, 0, 1);
        return;
    case TCPOTA_SRV_EV_COMPLETE:
        if (m->u.complete.status == 0) {
            metrics_event(c->rollout_id, img->desc.id, METRICS_COMPLETED);
            record(c, STORE_ST_VERIFIED, img->desc.id, NULL, img->size, NULL, 1);
        } else {
            metrics_event(c->rollout_id, img->desc.id, METRICS_FAILED);
            snprintf(why, sizeof(why), "the device reports %s", tcpota_strerror(m->u.complete.status));
            /* Held back only when final on the device's side too: it takes
             * an image that failed its integrity check once more. */
            record(c, STORE_ST_FAILED, img->desc.id,
                   tcpota_srv_complete_final(m->u.complete.status) ? img->desc.id : NULL, 0, why, 1);
        }
        return;
    case TCPOTA_SRV_EV_DECLINE:
        snprintf(why, sizeof(why), "%s (%.*s)", tcpota_strerror(m->u.decline.reason),
                 m->u.decline.message.len,
                 m->u.decline.message.ptr ? (const char *)m->u.decline.message.ptr : "");
        if (m->u.decline.reason == (uint16_t)-TCPOTA_ERR_REFUSED &&
            m->u.decline.message.ptr &&
            m->u.decline.message.len >= strlen(TCPOTA_DECLINE_RUNNING) &&
            memcmp(m->u.decline.message.ptr, TCPOTA_DECLINE_RUNNING,
                   strlen(TCPOTA_DECLINE_RUNNING)) == 0) {
            /* "already running": a success for the rollout, not a failure.
             * An image the device failed before is FAILED_BEFORE; a device
             * of an older core declines it REFUSED with other words, and
             * offered it again after `device retry` it was recorded up to
             * date and counted updated: only these words count as running. */
            record(c, STORE_ST_UP_TO_DATE, img->desc.id, NULL, 0, why, 1);
        } else {
            metrics_decline(c->rollout_id, img->desc.id, -(int)m->u.decline.reason);
            record(c, STORE_ST_DECLINED, img->desc.id, img->offer_fp, 0, why, 1);
        }
        return;
    case TCPOTA_SRV_EV_PEER_ERROR:
        conn_peer_error(m, why, sizeof(why));
        metrics_event(c->rollout_id, img->desc.id, METRICS_FAILED);
        {
            uint64_t ro = c->rollout_id;
            c->rollout_id = 0; /* not a failure of the image: no rollout count */
            record(c, STORE_ST_FAILED, img->desc.id, NULL, 0, why, 1);
            c->rollout_id = ro;
        }
        return;
    default:
        return;
    }
}

/* The store answered a legacy device's check-in. */
static void legacy_checkin_done(struct store_req *r)
{
    const struct checkin *ci = r->arg;
    struct conn *c;

    if (ci->c && fleet_park(ci->c->srv, r)) {
        return; /* decided once its image is loaded */
    }
    c = checkin_conn(r);
    struct store_rollout *ro;
    struct image *img = NULL;
    const char *why = NULL;
    char reason[STORE_REASON_MAX];
    enum rollout_verdict rv;
    /* What the registry says when nothing is sent, as for a v1 device:
     * STORE_ST_COUNT leaves the device's state as it is. */
    enum store_dev_state st = STORE_ST_COUNT;
    int refused = 0;

    if (!c) {
        store_req_free(r);
        return;
    }
    if (r->rc < 0) {
        clog_(c, 1, "store error: %s; closing", store_err_logged(r));
        metrics_deferred(METRICS_LEGACY, fleet_deferred_why(r));
        store_req_free(r);
        (void)conn_close(c, 1);
        return;
    }
    metrics_checkin(METRICS_LEGACY);
    ro = &r->u.checkin.out->rollout;
    if (!r->u.checkin.has_rollout) {
        why = "no rollout for model legacy (tcpota rollout create --model legacy ...)";
        st = STORE_ST_UP_TO_DATE;
    } else if (r->u.checkin.ro_status == STORE_RO_UPDATED) {
        why = "it was sent every byte of this rollout's image already";
    } else {
        c->rollout_id = ro->id;
        apply_rules(c->srv, ro);
        rv = rollout_decide(&ro->ro, rollout_place(ro->id, c->dev, strlen(c->dev)),
                            r->u.checkin.ro_status == STORE_RO_DOWNLOADING);
        if (rv != ROLLOUT_OFFER) {
            snprintf(reason, sizeof(reason), "rollout %llu: %s", (unsigned long long)ro->id,
                     rollout_reason(rv));
            why = reason;
            st = rv == ROLLOUT_NOT_IN_ROLLOUT ? STORE_ST_UP_TO_DATE : STORE_ST_WAITING;
        } else if (!(img = image_for(c->srv, &r->u.checkin.out->image))) {
            snprintf(reason, sizeof(reason), FLEET_UNSERVABLE_SAYS, (unsigned long long)ro->id);
            why = reason;
            st = STORE_ST_WAITING;
        } else if ((why = legacy_refusal(c->srv->o, img->manifest != NULL)) != NULL) {
            c->srv->stats.refused++;
            img = NULL;
            refused = 1;
        }
    }
    if (!img) {
        /* A refusal the options made is said even with --quiet, as in
         * image mode; "nothing to offer" is not news. */
        clog_(c, refused, "legacy device: nothing to send: %s; closing", why);
        if (fleet_changes(r, 0, st, NULL, why)) {
            record(c, st, NULL, NULL, 0, why, 0);
        }
        store_req_free(r);
        (void)conn_close(c, 1);
        return;
    }
    c->img = image_ref(img);
    tcpota_legacy_init(&c->leg, img->size);
    clog_(c, 0, "legacy device: rollout %llu, image %s (%u bytes)", (unsigned long long)ro->id,
          img->version, img->size);
    metrics_event(c->rollout_id, img->desc.id, METRICS_OFFERED);
    record(c, STORE_ST_DOWNLOADING, img->desc.id, NULL, 0, NULL, 0);
    store_req_free(r);
    conn_read_on(c);
    conn_read_again(c);
}

int fleet_legacy_start(struct conn *c)
{
    struct store_req *r;
    struct checkin *ci;
    double stuck;

    snprintf(c->dev, sizeof(c->dev), "legacy-%s", c->addr);
    if ((stuck = store_stuck_s())) {
        hung_close_legacy(c, stuck);
        return -1;
    }
    r = checkin_new(c, legacy_checkin_done, FLEET_LEGACY_MODEL, "", STORE_PROTO_LEGACY);
    if (!r) {
        (void)conn_close(c, 1);
        return -1;
    }
    ci = r->arg;
    if (fleet_submit(c->srv, r) < 0) {
        free(ci);
        (void)conn_close(c, 1);
        return -1;
    }
    c->req = r;
    conn_read_off(c);
    return 0;
}

void fleet_legacy_done(struct conn *c)
{
    if (c->img) {
        metrics_event(c->rollout_id, c->img->desc.id, METRICS_COMPLETED);
        record(c, STORE_ST_UPDATED, c->img->desc.id, NULL, c->img->size,
               "sent every byte (legacy devices cannot report)", 1);
    }
}

void fleet_conn_gone(struct conn *c)
{
    enum tcpota_srv_state st = tcpota_srv_get_state(&c->s);

    /* A transfer that ends before its COMPLETE: what the device reported
     * durable since the store was last told goes in now, so that the
     * registry shows where it resumes (before: up to FLEET_PROGRESS_S of
     * ACKs behind, until the device came back). */
    if (c->srv->fleet && c->img && c->kind == K_V1 && c->s.acked > c->progress_bytes &&
        (st == TCPOTA_SRV_STREAMING || st == TCPOTA_SRV_SENT_ALL)) {
        c->progress_bytes = c->s.acked;
        add_step(c, STORE_ST_DOWNLOADING, c->img->desc.id, NULL, c->s.acked, NULL, 0, 1);
    }
    if (c->req) {
        ((struct checkin *)c->req->arg)->c = NULL;
        c->req = NULL;
    }
}

/* Check-ins queued behind a database that has answered nothing for stuck
 * s: answered as one that comes now is (fleet_choose; fleet_legacy_start):
 * a v1 device without a report told to come back, a legacy device closed.
 * Before, one queued in the seconds before the hang was said waited until
 * its device gave up (30 s: a trial; --db-timeout is 60 s). A report waits
 * for the database, which alone acknowledges it. Their requests stay in
 * the store's queue, without a connection, as those of a device gone. So
 * do HTTP downloads waiting for their check-in (http_ota_answer_stuck). */
static void answer_queued(struct server *srv, double stuck)
{
    struct conn *c, *next;

    for (c = srv->conns; c; c = next) {
        next = c->next;
        /* (One whose image loads has its answer: not the database's wait.) */
        if (!c->req || c->closing || c->req->parked ||
            (c->kind == K_V1 && (tcpota_srv_get_state(&c->s) != TCPOTA_SRV_CHOOSING ||
                                 c->req->u.checkin.report_id))) {
            continue;
        }
        ((struct checkin *)c->req->arg)->c = NULL;
        c->req = NULL;
        if (c->kind == K_LEGACY) {
            hung_close_legacy(c, stuck);
        } else if (c->kind == K_V1) {
            uint8_t offered = 0;
            uint32_t start = 0;
            (void)tcpota_srv_offer(&c->s, NULL, hung_no_update(c, stuck, 0), &offered, &start);
            (void)conn_pump(c);
        }
    }
    http_ota_answer_stuck(srv->fleet->ota, stuck);
    api_answer_stuck(srv->fleet->api, stuck);
}

/* --db-timeout, or its default. */
static unsigned db_timeout_s(const struct server *srv)
{
    return srv->o->db_timeout_s ? srv->o->db_timeout_s : FLEET_DB_TIMEOUT_S;
}

void fleet_sweep(struct server *srv)
{
    struct fleet *f = srv->fleet;
    double waited = store_waiting_s();
    unsigned timeout = db_timeout_s(srv);

    if (waited > STORE_STUCK_S && !f->stuck_said) {
        unsigned long n = store_pending();

        f->stuck_said = 1;
        say_always(srv->o, LOG_LV_ERROR, "store: the database has answered nothing for %.0f s"
                   " while %lu request%s wait%s (a hung database, a stalled disk, a lock held long?):"
                   " check-ins without a report, HTTP downloads and API requests are told to come"
                   " back, and GET /health answers 503 so that a balancer sends devices elsewhere",
                   waited, n, n == 1 ? "" : "s", n == 1 ? "s" : "");
    }
    if (waited > STORE_STUCK_S) {
        answer_queued(srv, waited);
    } else if (waited <= STORE_STUCK_S && f->stuck_said && !store_down()) {
        /* Not while down: requests that failed (a cut, an outage) are no
         * answer, and the outage's lines say when it is back. */
        f->stuck_said = 0;
        say_always(srv->o, LOG_LV_INFO, "store: the database answers again");
    }
    if (waited <= (double)timeout) {
        f->unstuck = 0; /* answered since (a stall of its own from here) */
    } else if (!f->unstuck && f->store->vt->unstick && f->store->vt->unstick(f->store, timeout)) {
        /* Without it a hung database held every check-in here until the
         * device gave up, and the node's requests for ever. */
        f->unstuck = 1;
        store_note_cut();
        say_always(srv->o, LOG_LV_ERROR, "store: the database has answered nothing for %.0f s"
                   " (--db-timeout %u): its connection is dropped; what waited on it fails as"
                   " after a network cut (devices are told to try again), and the node connects"
                   " again", waited, timeout);
    }
}

/* ---- start and stop ---------------------------------------------------- */

static int cmp_secret(const void *a, const void *b)
{
    return strcmp(((const struct tcpota_serve_secret *)a)->id,
                  ((const struct tcpota_serve_secret *)b)->id);
}

int fleet_has_secret(const struct server *srv, const char *id)
{
    const struct fleet *f = srv->fleet;
    struct tcpota_serve_secret key;

    if (!f->nsecrets || strlen(id) >= sizeof(key.id)) {
        return 0;
    }
    snprintf(key.id, sizeof(key.id), "%s", id);
    return bsearch(&key, f->secrets, f->nsecrets, sizeof(*f->secrets), cmp_secret) != NULL;
}

/* Logs why the server does not start, saying so first ("not starting:
 * ..."): a refusal such as "X may be read by others; chmod 600 X" read
 * like a warning, and nothing said the server had not started. Returns -1. */
static int not_starting(const struct server *srv, const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    say_always(srv->o, LOG_LV_ERROR, "not starting: %s", msg);
    return -1;
}

/* Runs r to completion on the loop (start-up only: nothing else runs yet). */
static void wait_done(struct store_req *r)
{
    *(int *)r->arg = 1;
}

static int run_sync(struct server *srv, struct store_req *r)
{
    int done = 0;

    r->done = wait_done;
    r->arg = &done;
    r->now = utc_now();
    if (store_submit(srv->fleet->store, r) < 0) {
        return -1;
    }
    while (!done) {
        event_base_loop(srv->base, EVLOOP_ONCE);
    }
    return r->rc;
}

/* 1 when a row of STORE_SECRET_LIST can be a device's secret, or (no
 * bytes) its removal: the API makes no other, and one written by hand into
 * the database (too short, too long) is not taken. */
static int secret_row_ok(const struct store_secret *row)
{
    const struct tcpota_serve_secret *s = NULL;

    return strlen(row->id) < sizeof(s->id) && row->len <= sizeof(s->secret) &&
           (row->len == 0 || row->len >= TCPOTA_SECRET_MIN);
}

/* 1 when row changes what all[0..n) (sorted) holds: a new id, another
 * secret, or a removal (no bytes) of an id held; *at: the id's entry, or
 * NULL. A row that can be no secret (secret_row_ok) changes nothing. */
static int secret_differs(struct tcpota_serve_secret *all, size_t n, const struct store_secret *row,
                          struct tcpota_serve_secret **at)
{
    struct tcpota_serve_secret key;

    *at = NULL;
    if (!secret_row_ok(row)) {
        return 0;
    }
    memcpy(key.id, row->id, strlen(row->id) + 1);
    *at = n ? bsearch(&key, all, n, sizeof(*all), cmp_secret) : NULL;
    if (row->len == 0) {
        return *at != NULL;
    }
    return !*at || (*at)->len != row->len ||
           sodium_memcmp((*at)->secret, row->secret, row->len) != 0;
}

/* What put_secrets logs for each change, per device: set (a new or another
 * secret), gone (a removal). NULL: nothing (the node's own API logs its
 * changes itself). */
struct secret_lines {
    const char *set, *gone;
};

/* Puts rows[0..n) into the server's secrets (a new id added, a known one
 * replaced when its secret differs, one of no bytes removed: its device
 * was, STORE_DEVICE_DELETE) and rebinds authentication to them.
 * Returns how many changed, or -1 out of memory (nothing changed). Rows
 * that change nothing cost no copy: a sync asks every second, and the
 * secrets of a large fleet are megabytes. */
static int put_secrets(struct server *srv, const struct store_secret *rows, size_t n,
                       const struct secret_lines *say)
{
    struct fleet *f = srv->fleet;
    struct tcpota_serve_secret *all, *at;
    size_t i, k, count = f->nsecrets;
    uint8_t *did; /* rows[i] changed a secret (2: one held before): its failures are forgiven */
    int changed = 0;

    for (i = 0; i < n && !secret_differs(f->secrets, f->nsecrets, &rows[i], &at); i++) {
    }
    if (i == n) {
        return 0;
    }
    if (!(all = malloc((count + n ? count + n : 1) * sizeof(*all)))) {
        return -1;
    }
    if (!(did = calloc(n ? n : 1, 1))) {
        free(all);
        return -1;
    }
    if (count) {
        memcpy(all, f->secrets, count * sizeof(*all));
    }
    for (i = 0; i < n; i++) {
        int gone = rows[i].len == 0;
        if (!secret_differs(all, f->nsecrets, &rows[i], &at)) {
            continue;
        }
        did[i] = at ? 2 : 1; /* (the search covers the secrets held before) */
        if (gone) {
            sodium_memzero(at->secret, sizeof(at->secret));
            at->len = 0; /* taken out below, after the last bsearch */
        } else {
            if (!at) {
                at = &all[count++];
                memset(at, 0, sizeof(*at));
                memcpy(at->id, rows[i].id, strlen(rows[i].id) + 1);
            }
            memcpy(at->secret, rows[i].secret, rows[i].len);
            at->len = rows[i].len;
        }
        changed++;
        if (say && (gone ? say->gone : say->set)) {
            say_dev(srv, LOG_LV_INFO, rows[i].id, NULL, "%s", gone ? say->gone : say->set);
        }
    }
    if (!changed) {
        sodium_memzero(all, (f->nsecrets + n ? f->nsecrets + n : 1) * sizeof(*all));
        free(all);
        free(did);
        return 0;
    }
    for (i = k = 0; i < count; i++) { /* the removed ones out */
        if (all[i].len) {
            all[k++] = all[i];
        }
    }
    sodium_memzero(all + k, (count - k) * sizeof(*all));
    count = k;
    qsort(all, count, sizeof(*all), cmp_secret);
    if (auth_rebind(&srv->auth, all, count) < 0) {
        sodium_memzero(all, count * sizeof(*all));
        free(all);
        free(did);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (did[i]) {
            auth_forgive(&srv->auth, rows[i].id);
        }
    }
    if (f->secrets) {
        sodium_memzero(f->secrets, f->nsecrets * sizeof(*f->secrets));
        free(f->secrets);
    }
    f->secrets = all;
    f->nsecrets = count;
    /* A session that proved the old secret proves nothing now (a device
     * removed, a secret replaced because it leaked): it ends here. One
     * pass over the connections (a full read may change thousands). */
    {
        struct conn_cut *cuts = malloc((size_t)changed * sizeof(*cuts));
        size_t ncut = 0;
        for (i = 0; cuts && i < n; i++) {
            if (did[i] == 2) {
                cuts[ncut].id = rows[i].id;
                cuts[ncut++].why = rows[i].len ? "device secret replaced" : "device secret removed";
            }
        }
        if (cuts) {
            (void)conn_cut_authed(srv, cuts, ncut);
        } else {
            say_always(srv->o, LOG_LV_ERROR, "out of memory: connections authenticated with"
                       " the %d secrets just changed or removed are not cut", changed);
        }
        free(cuts);
    }
    free(did);
    return changed;
}

/* --secrets-reread, or its default. */
static unsigned secrets_reread_s(const struct server *srv)
{
    return srv->o->secrets_reread_s ? srv->o->secrets_reread_s : FLEET_SECRETS_REREAD_S;
}

/* The next full read of the secrets: secrets_reread_s() from now, give
 * or take a tenth at random, so that nodes started together (or back
 * together from an outage) do not all read at once. */
static void secrets_full_plan(struct server *srv)
{
    srv->fleet->secrets_full_next =
        now_s() + secrets_reread_s(srv) * (0.9 + randombytes_uniform(201) / 1000.0);
}

static int load_secrets(struct server *srv)
{
    struct fleet *f = srv->fleet;
    struct store_req *r = store_req_new(STORE_SECRET_LIST, NULL, NULL);
    const struct store_secret *rows;
    size_t i;

    if (!r || run_sync(srv, r) < 0) {
        (void)not_starting(srv, "cannot read the device secrets: %s%s", r ? r->err : "out of memory",
                           r && (strstr(r->err, "does not exist") || strstr(r->err, "no such table"))
                               ? "; the database's tables are not as this tcpota made them (one"
                                 " removed by hand?): restore it from a backup (docs/scaling.md,"
                                 " Backups; docs/operations.md for SQLite)"
                               : "");
        store_req_free(r);
        return -1;
    }
    rows = r->u.list.rows;
    f->secrets = calloc(r->u.list.n ? r->u.list.n : 1, sizeof(*f->secrets));
    if (!f->secrets) {
        store_req_free(r);
        return not_starting(srv, "out of memory");
    }
    for (i = 0, f->nsecrets = 0; i < r->u.list.n; i++) {
        struct tcpota_serve_secret *s = &f->secrets[f->nsecrets];

        if (!secret_row_ok(&rows[i]) || rows[i].len == 0) {
            continue; /* a removal is no secret */
        }
        snprintf(s->id, sizeof(s->id), "%s", rows[i].id);
        memcpy(s->secret, rows[i].secret, rows[i].len);
        s->len = rows[i].len;
        f->nsecrets++;
    }
    f->secrets_gen = r->u.list.gen;
    secrets_full_plan(srv);
    qsort(f->secrets, f->nsecrets, sizeof(*f->secrets), cmp_secret);
    store_req_free(r);
    return 0;
}

/* The API stored a new secret (or removed one, len 0, with its device):
 * the next AUTH of that device checks it. */
static void on_secret(void *ctx, const char *id, const uint8_t *secret, size_t len)
{
    struct server *srv = ctx;
    struct store_secret row;

    memset(&row, 0, sizeof(row));
    snprintf(row.id, sizeof(row.id), "%s", id);
    if (len) {
        memcpy(row.secret, secret, len);
    }
    row.len = (uint8_t)len;
    if (put_secrets(srv, &row, 1, NULL) < 0) {
        say_always(srv->o, LOG_LV_ERROR, "out of memory: the %s of %s takes effect at the next"
                   " start", len ? "new secret" : "removal of the secret", id);
    }
    sodium_memzero(&row, sizeof(row)); /* the API logs the change (api_changed) */
}

static int cmp_secret_row(const void *a, const void *b)
{
    return strcmp(((const struct store_secret *)a)->id, ((const struct store_secret *)b)->id);
}

/* What a full read changes (secrets_diff): removals the database
 * recorded (secrets_gone: a device removed through another node), or
 * everything else. */
enum secrets_change { SECRETS_REMOVED, SECRETS_OTHER };

/* The changes of one kind that make the node's secrets what rows[0..n)
 * (sorted by id, secrets and recorded removals) say: into out when not
 * NULL; returns how many. An id the node holds and rows lack is dropped
 * (a row of no bytes). */
static size_t secrets_diff(const struct fleet *f, const struct store_secret *rows, size_t n,
                           enum secrets_change kind, struct store_secret *out)
{
    size_t i = 0, j = 0, k = 0;

    while (i < n || j < f->nsecrets) {
        int c = i == n ? 1 : j == f->nsecrets ? -1 : strcmp(rows[i].id, f->secrets[j].id);
        int put;
        if (c > 0) { /* held here, not in the database */
            if (kind == SECRETS_OTHER && out) {
                memset(&out[k], 0, sizeof(out[k]));
                memcpy(out[k].id, f->secrets[j].id, strlen(f->secrets[j].id) + 1);
            }
            k += kind == SECRETS_OTHER;
            j++;
            continue;
        }
        if (rows[i].len == 0) { /* removed: a change when held */
            put = c == 0 && kind == SECRETS_REMOVED;
        } else {
            put = kind == SECRETS_OTHER &&
                  (c < 0 || f->secrets[j].len != rows[i].len ||
                   sodium_memcmp(f->secrets[j].secret, rows[i].secret, rows[i].len) != 0);
        }
        if (put && out) {
            out[k] = rows[i];
        }
        k += put;
        i++;
        j += c == 0;
    }
    return k;
}

/* One kind of change of a full read, put; returns as put_secrets. */
static int replace_kind(struct server *srv, const struct store_secret *rows, size_t n,
                        enum secrets_change kind, const struct secret_lines *say)
{
    size_t nchg = secrets_diff(srv->fleet, rows, n, kind, NULL);
    struct store_secret *chg;
    int rc;

    if (!nchg) {
        return 0;
    }
    if (!(chg = calloc(nchg, sizeof(*chg)))) {
        return -1;
    }
    (void)secrets_diff(srv->fleet, rows, n, kind, chg);
    rc = put_secrets(srv, chg, nchg, say);
    sodium_memzero(chg, nchg * sizeof(*chg));
    free(chg);
    return rc;
}

/* A full read (every secret in the database, and the removals it
 * recorded): the node then holds exactly those secrets. rows (the
 * request's) are reordered. Returns as put_secrets. */
static int replace_secrets(struct server *srv, struct store_secret *rows, size_t n,
                           const struct secret_lines *removed)
{
    static const struct secret_lines other = {
        "device secret set as the database has it (every secret read again): its next AUTH"
        " is checked against it",
        "device secret dropped: the database has none for it (every secret read again)"};
    size_t i, k, gone = 0;
    int a = 0, b, sorted = 1, c;

    for (i = k = 0; i < n; i++) {
        if (!secret_row_ok(&rows[i])) {
            continue;
        }
        c = k ? strcmp(rows[k - 1].id, rows[i].id) : -1;
        sorted = sorted && c <= 0;
        if (c == 0) {
            /* An id both set and removed (written by hand, a restore): the
             * later row, as the store orders them, is what holds. */
            k--;
        }
        if (k != i) {
            rows[k] = rows[i];
        }
        k++;
    }
    if (!sorted) { /* the store sorts them (STORE_SECRET_LIST); a check costs less */
        qsort(rows, k, sizeof(*rows), cmp_secret_row);
    }
    for (i = 0; i < k; i++) {
        gone += rows[i].len == 0;
    }
    if ((gone && (a = replace_kind(srv, rows, k, SECRETS_REMOVED, removed)) < 0) ||
        (b = replace_kind(srv, rows, k, SECRETS_OTHER, &other)) < 0) {
        return -1;
    }
    return a + b;
}

/* The secrets set through other nodes since the last ask (PostgreSQL):
 * without it a secret set or replaced through one node's API was checked
 * by the others only after their restart (a trial: the device without it,
 * or with the replaced one, served by two nodes of three; an HTTP download
 * of a device with a secret given the image). A failed ask (the database
 * away: the store says so) is tried again at the next tick. */
static void secrets_synced(struct store_req *r)
{
    static const struct secret_lines say = {
        "device secret set through another node: its next AUTH is checked against it",
        "device removed through another node, its secret with it"};
    struct server *srv = r->arg;
    struct fleet *f = srv->fleet;
    int full, rc;

    if (!f) {
        store_req_free(r);
        return;
    }
    full = f->secret_asking == 2;
    f->secret_asking = 0;
    if (r->rc < 0) {
        if (full) {
            f->secrets_full_due = 1; /* again at the next tick */
            if (f->secrets_full_saying == 1 && r->rc == STORE_E_UNAVAILABLE) {
                /* Once: an outage fails every second. (r->err is the
                 * API's words, "try again", not an operator's here.) */
                say_always(srv->o, LOG_LV_WARN, "%s", SECRETS_DOWN_SAYS);
            } else if (f->secrets_full_saying == 1) {
                say_always(srv->o, LOG_LV_WARN, "SIGHUP: could not read the device secrets"
                           " again: %s; tried again every second", r->err);
            }
            if (f->secrets_full_saying && !f->secrets_full_say) {
                f->secrets_full_say = 2; /* the next read says how it ended, not why it waits */
            }
        }
    } else if (!full && r->u.list.gen < f->secrets_gen) {
        /* The database's count went back (a failover to a standby
         * that had not all of it, a restore): what is numbered from
         * here may be below what this node has, and would never be
         * asked for. Everything, at the next tick. */
        f->secrets_full_due = 1;
    } else if ((rc = full ? replace_secrets(srv, r->u.list.rows, r->u.list.n, &say)
                          : put_secrets(srv, r->u.list.rows, r->u.list.n, &say)) >= 0) {
        f->secrets_gen = r->u.list.gen;
        if (full && (f->secrets_full_saying || rc)) {
            say_always(srv->o, LOG_LV_INFO, "read the %zu device secrets again from the"
                       " database: %d changed here", f->nsecrets, rc);
        }
    } else if (full) { /* out of memory: not every second; the rows since are asked for */
        say_always(srv->o, LOG_LV_WARN, "out of memory applying the %zu device secrets read"
                   " again from the database; the next full read in about %u s",
                   r->u.list.n, secrets_reread_s(srv));
    }
    store_req_free(r);
}

/* Asks for the secrets set since the last ask (FLEET_SECRETS_OVERLAP
 * generations before it), or for all of them when a full read is due.
 * Generation 1 is migration 5's for the rows written before it, which
 * load_secrets read: an ask never goes below it, or a node whose count is
 * still low would read every secret every second. */
static void sync_secrets(struct server *srv)
{
    struct fleet *f = srv->fleet;
    struct store_req *r;
    int full = f->secrets_full_due || now_s() >= f->secrets_full_next;

    if (f->secret_asking || !(r = store_req_new(STORE_SECRET_LIST, secrets_synced, srv))) {
        return;
    }
    if (full) {
        r->u.list.since = 0;
    } else if (f->secrets_gen > FLEET_SECRETS_OVERLAP + 1) {
        r->u.list.since = f->secrets_gen - FLEET_SECRETS_OVERLAP;
    } else {
        r->u.list.since = 1;
    }
    r->now = utc_now();
    if (store_submit(f->store, r) < 0) {
        store_req_free(r);
        return;
    }
    f->secret_asking = full ? 2 : 1;
    if (full) {
        /* A SIGHUP from now on asks for another read (this one may miss
         * what it was sent for); a failure makes it due again. */
        f->secrets_full_due = 0;
        f->secrets_full_saying = f->secrets_full_say;
        f->secrets_full_say = 0;
        secrets_full_plan(srv);
    }
}

int fleet_reread_secrets(struct server *srv)
{
    struct fleet *f = srv->fleet;

    if (!f->store->vt->shared) {
        return 0;
    }
    f->secrets_full_due = f->secrets_full_say = 1;
    if (store_down()) {
        /* One line, not "reading ..." and then why it cannot (a trial). */
        say_always(srv->o, LOG_LV_WARN, "%s", SECRETS_DOWN_SAYS);
        f->secrets_full_say = 2; /* said: its failures are not said again */
    } else {
        say_always(srv->o, LOG_LV_INFO, "SIGHUP: reading every device secret again from the"
                   " database%s", f->secret_asking ? " once the last ask is answered" : "");
    }
    sync_secrets(srv);
    return 1;
}

/* The state of a rollout whose transfers this node runs: cancelled or
 * halted on another node (its API, its halt rule), they stop here too, as
 * on that node (stop_transfers; they ran to the end, and their devices
 * installed the image of a cancelled rollout). */
static void stops_synced(struct store_req *r)
{
    struct server *srv = r->arg;
    struct fleet *f = srv->fleet;
    const struct store_rollout *ro = r->u.rollout.r;

    if (f) {
        f->stops_asking--;
        if (r->rc == STORE_OK && (ro->ro.state == ROLLOUT_STATE_CANCELLED ||
                                  ro->ro.state == ROLLOUT_STATE_HALTED)) {
            char why[80];

            /* Mostly another node's doing; a transfer begun as this node
             * halted or cancelled it is stopped here too. */
            snprintf(why, sizeof(why), "rollout %llu %s, as the database says",
                     (unsigned long long)r->u.rollout.id,
                     ro->ro.state == ROLLOUT_STATE_CANCELLED ? "cancelled" : "halted");
            stop_transfers(srv, r->u.rollout.id, why);
        }
    }
    store_req_free(r);
}

/* Asks for the state of FLEET_SYNC_ROLLOUTS_MAX of the rollouts whose
 * transfers run here, the next ones each tick (a fixed first few would
 * leave the others unasked for as long as they run). */
static void sync_stops(struct server *srv)
{
    struct fleet *f = srv->fleet;
    uint64_t ids[FLEET_SYNC_SCAN_MAX];
    size_t n = 0, k, ask;
    const struct conn *c;

    if (f->stops_asking) {
        return;
    }
    for (c = srv->conns; c && n < FLEET_SYNC_SCAN_MAX; c = c->next) {
        if (c->img && c->rollout_id && !c->closing) {
            rollout_ids_add(ids, &n, FLEET_SYNC_SCAN_MAX, c->rollout_id);
        }
    }
    http_ota_rollouts(f->ota, ids, &n, FLEET_SYNC_SCAN_MAX);
    ask = n < FLEET_SYNC_ROLLOUTS_MAX ? n : FLEET_SYNC_ROLLOUTS_MAX;
    for (k = 0; k < ask; k++) {
        struct store_req *r = store_req_new(STORE_ROLLOUT_GET, stops_synced, srv);

        if (!r) {
            return;
        }
        r->u.rollout.id = ids[(f->stops_turn + k) % n];
        r->now = utc_now();
        if (store_submit(f->store, r) < 0) {
            store_req_free(r);
            return;
        }
        f->stops_asking++;
    }
    f->stops_turn += ask;
}

/* PostgreSQL, every FLEET_SYNC_MS: what other nodes changed. A failed ask
 * (the database away: the store says so) is tried again at the next tick. */
static void sync_tick(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;

    sync_secrets(srv);
    sync_stops(srv);
}

static int fleet_verify(void *ctx, const uint8_t id[32], const uint8_t *man, size_t len,
                        char *version, char *model, char *err, size_t errlen)
{
    struct server *srv = ctx;
    return api_verify_keys(&srv->fleet->keys, id, man, len, version, model, err, errlen);
}

/* A change through the API (api_changed): a new epoch, so that no answer
 * made before it is reused, and an image whose file failed to load is
 * loaded again (image_for): the same bytes added again repaired it. */
static void fleet_api_changed(void *ctx, const char *what)
{
    struct server *srv = ctx;
    struct fleet_image *fi, *next;

    say_always(srv->o, LOG_LV_INFO, "%s", what); /* the operators' trail: --quiet keeps it */
    srv->fleet->epoch++;
    /* A failure to load is forgotten: the next check-in loads it again,
     * and a rollout's status no longer says it (fleet_image_trouble). An
     * image whose file is gone (image rm; a repair renamed another over
     * it) goes too: its open file held the disk space until a restart.
     * Transfers still running keep their reference to it. */
    for (fi = srv->fleet->images; fi; fi = next) {
        next = fi->next;
        if (!fi->job && !fi->nwait && (!fi->img || !same_file(fi))) {
            image_drop(srv->fleet, fi);
        }
    }
}

/* The API's ota_where: fleet_http_where for the server ctx. */
static void ota_where(void *ctx, char *buf, size_t cap)
{
    fleet_http_where(ctx, buf, cap);
}

/* api_config.log: a warning (a refused token). */
static void fleet_api_log(void *ctx, const char *line)
{
    struct server *srv = ctx;

    say_always(srv->o, LOG_LV_WARN, "%s", line);
}

/* api_config.on_stop: the operator cancelled rollout id. */
static void fleet_rollout_stopped(void *ctx, uint64_t id, const char *why)
{
    stop_transfers(ctx, id, why);
}

/* api_config.image_trouble: a failure to load still remembered. */
static const char *fleet_image_trouble(void *ctx, const uint8_t *id)
{
    struct server *srv = ctx;
    const struct fleet_image *fi;

    for (fi = srv->fleet->images; fi; fi = fi->next) { /* any manifest: the same file */
        if (memcmp(fi->id, id, TCPOTA_ID_LEN) == 0 && !fi->img && !fi->job && fi->err[0]) {
            return fi->err;
        }
    }
    return NULL;
}

/* api_config.auth_refused: the devices refused for authentication. */
static const struct auth_refusals *fleet_auth_refused(void *ctx)
{
    const struct server *srv = ctx;

    return &srv->auth_refused;
}

/* GET /metrics: the counters, with what only the open connections know
 * (transfers running, bytes queued so far) added. */
static int fleet_metrics(void *ctx, struct evbuffer *out)
{
    struct server *srv = ctx;
    size_t nhttp = http_ota_count(srv->fleet->ota), cap = srv->nconns + nhttp + 1;
    struct metrics_live *live = calloc(cap, sizeof(*live));
    const struct conn *c;
    size_t n = 0;
    int rc;

    if (!live) {
        return -1;
    }
    for (c = srv->conns; c && n < srv->nconns; c = c->next) {
        if (!c->img) continue;
        live[n].rollout = c->rollout_id;
        live[n].image = c->img->desc.id;
        live[n].active = !c->closing && (c->kind == K_LEGACY ? !c->legacy_done
                                         : tcpota_srv_get_state(&c->s) == TCPOTA_SRV_OFFERED ||
                                           tcpota_srv_get_state(&c->s) == TCPOTA_SRV_STREAMING ||
                                           tcpota_srv_get_state(&c->s) == TCPOTA_SRV_SENT_ALL);
        live[n].bytes = conn_bytes_sent(c);
        n++;
    }
    if (srv->fleet->ota) n += http_ota_live(srv->fleet->ota, live + n, cap - n);
    rc = metrics_render(out, live, n);
    free(live);
    return rc;
}

/* What the store tells the operator (its database went away, came back). */
static void store_notice(void *arg, int error, const char *msg)
{
    struct server *srv = arg;

    say_always(srv->o, error ? LOG_LV_ERROR : LOG_LV_INFO, "store: %s", msg);
}

static int api_store_submit(struct store *st, struct store_req *r)
{
    struct server *srv = ((struct fleet_store *)st)->srv;

    flush_events(srv);
    remember_bump(srv->fleet, r);
    /* The backend's own submit: the API's store_submit() counted the
     * request already. Counted twice and finished once, every API request
     * left one "waiting" for good, and an idle node's /health answered 503
     * 10 s after its first API call (a trial). */
    return srv->fleet->store->vt->submit(srv->fleet->store, r);
}

static void api_store_close(struct store *st)
{
    (void)st; /* the real one closes in fleet_close */
}

/* Removes the temporary files of uploads an earlier run did not finish
 * (killed while writing one: api_images.c's DIR/images/.upload-XXXXXX),
 * which nothing else would ever remove. This server holds the data
 * directory (its lock), so none is being written. */
static void sweep_uploads(struct server *srv)
{
    const char *dir = srv->o->images_dir;
    char path[PATH_MAX];
    struct dirent *e;
    unsigned up = 0, fetch = 0;
    DIR *d;

    if (!dir || !(d = opendir(dir))) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        /* An upload's file, or a --db node's fetch cut by a kill (its
         * bytes are fetched again when a check-in needs them). */
        int is_up = strncmp(e->d_name, API_UPLOAD_PREFIX, strlen(API_UPLOAD_PREFIX)) == 0;

        if ((is_up || strncmp(e->d_name, FLEET_FETCH_PREFIX, strlen(FLEET_FETCH_PREFIX)) == 0) &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < sizeof(path) &&
            unlink(path) == 0) {
            is_up ? up++ : fetch++;
        }
    }
    closedir(d);
    /* Said apart: a fetch needs nothing of the operator (a trial was told
     * to add an image again after one). */
    if (up) {
        say(srv, "removed %u unfinished upload%s left in %s by an earlier run (an upload cut"
            " short: add %s again)", up, text_s(up), dir, up == 1 ? "that image" : "those images");
    }
    if (fetch) {
        say(srv, "removed %u image fetch%s cut short in %s by an earlier run (fetched again from"
            " the database when a check-in needs %s)", fetch, fetch == 1 ? "" : "es", dir,
            fetch == 1 ? "it" : "them");
    }
}

/* A SQLite fleet's images/ against its database, said at start: before,
 * a backup restored without its images/ (or a file removed or changed by
 * hand) was said only at the first check-in that needed the image, and a
 * file the database does not name (an older database restored, an image
 * rm killed between its commit and its unlink) never. Neither stops the
 * start: the other images serve. On PostgreSQL images/ is a node's cache. */
static void check_image_files(struct server *srv)
{
    struct store_req *r;
    struct fleet_files_gaps g;
    const char *dir = srv->o->images_dir;

    if (srv->o->db || !dir || !(r = store_req_new(STORE_IMAGE_LIST, NULL, NULL))) {
        return;
    }
    if (run_sync(srv, r) < 0) {
        say_always(srv->o, LOG_LV_WARN, "cannot list the images to check their files in %s: %s",
                   dir, r->err);
        store_req_free(r);
        return;
    }
    if (fleet_files_image_gaps(dir, r->u.list.rows, r->u.list.n, &g) < 0 && g.nmissing == 0 &&
        r->u.list.n) {
        say_always(srv->o, LOG_LV_WARN, "cannot read %s: %s (the images are read from it when a"
                   " device needs one)", dir, strerror(errno));
    }
    if (g.nmissing) {
        say_always(srv->o, LOG_LV_WARN, "%u of the %zu images the database names %s no intact"
                   " file in %s (a backup restored without its images/, or a file removed or"
                   " changed by hand): %s; not offered until restored: copy them from the"
                   " backup's images/, or add each again (tcpota image add with the same file"
                   " restores it)", g.nmissing, r->u.list.n, g.nmissing == 1 ? "has" : "have",
                   dir, g.missing);
    }
    if (g.nextra) {
        say_always(srv->o, LOG_LV_WARN, "%u file%s in %s %s an image's name but no image in the"
                   " database (a database restored older than its images/, or an image rm cut"
                   " short): %s; not offered: to serve %s, add the file again (tcpota image add),"
                   " else remove %s", g.nextra, text_s(g.nextra), dir,
                   g.nextra == 1 ? "has" : "have", g.extra, g.nextra == 1 ? "it" : "one",
                   g.nextra == 1 ? "it" : "them");
    }
    store_req_free(r);
}

/* The API speaks plain HTTP, so its token crosses the network in clear,
 * and anyone who reaches it can take all of its --api-max-conns
 * connections (a client without the token holds at most API_BODY_MAX of
 * body on each: api_gate.c), shutting the operators out. On loopback only
 * this host's users reach it; beyond it, say so at start. */
static void warn_api_exposed(const struct server *srv, const struct api *a)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int loopback;

    if (getsockname(evconnlistener_get_fd(api_listener(a)), (struct sockaddr *)&ss, &sl) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET6) {
        loopback = IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
    } else {
        loopback = ss.ss_family == AF_INET &&
                   (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    }
    if (!loopback) {
        say_always(srv->o, LOG_LV_WARN,
                   "warning: the API listens beyond loopback: it speaks plain HTTP, so its token"
                   " crosses the network in clear, and anyone who reaches it can take all of its"
                   " %u connections (--api-max-conns; a client without the token may hold %u KiB"
                   " of request body on each); keep --api on a network you trust or behind a TLS"
                   " proxy, and give devices --ota-listen",
                   srv->o->api_max_conns ? srv->o->api_max_conns : API_CONNS_DEFAULT,
                   API_BODY_MAX >> 10);
    }
}

static const struct store_vt api_store_vt = {"fleet", api_store_submit, api_store_close, 0, NULL};

/* The rule for the files of --data (fleet_files.h): what others may read is
 * made private, and the log says what changed. */
static int files_private(struct server *srv)
{
    char said[400], err[600];
    int n = fleet_files_private(srv->o->data_dir, said, sizeof(said), err, sizeof(err));

    if (n < 0) {
        return not_starting(srv, "%s", err);
    }
    if (n > 0) {
        say_always(srv->o, LOG_LV_WARN, "made private what other users could read or write in %s (a"
                   " backup restored with its modes?): %s; the files in --data are the server's"
                   " alone (docs/operations.md)", srv->o->data_dir, said);
    }
    return 0;
}

/* 1 when dir holds an image file (its name 64 hex digits). */
static int holds_images(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;

    while (d && !found && (e = readdir(d)) != NULL) {
        found = fleet_files_image_name(e->d_name);
    }
    if (d) closedir(d);
    return found;
}

/* 1 after refusing a tcpota.db of 0 bytes, or a SQLite file without a table
 * (a cp of a running server's file: its data in the -wal left behind), and
 * no -wal to replay, in a --data that was used: SQLite takes either for a
 * new database, and the server then served an empty fleet without a word,
 * its devices' secrets gone (three trials: what a failed copy, restore or
 * full disk leaves). A first start makes the database before api.token and
 * before any image, so neither is there after a first start cut short. */
static int emptied_db(struct server *srv, const char *path)
{
    const struct tcpota_serve_opts *o = srv->o;
    char wal[PATH_MAX + sizeof("-wal")], token[PATH_MAX];
    struct stat st;
    int has_token, has_images, empty;

    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(token, sizeof(token), "%s/" FLEET_TOKEN_FILE, o->data_dir);
    if ((lstat(wal, &st) == 0 && st.st_size > 0) || !store_sqlite_blank(path)) {
        return 0;
    }
    empty = lstat(path, &st) == 0 && st.st_size == 0;
    has_token = lstat(token, &st) == 0;
    has_images = o->images_dir && holds_images(o->images_dir);
    if (!has_token && !has_images) {
        return 0;
    }
    return not_starting(srv, "%s %s, but --data %s was used (it holds %s%s%s): its fleet's"
                        " devices, secrets and rollouts are not there, and serving it would start"
                        " an empty fleet; restore %s from a backup (docs/operations.md), or give"
                        " an empty --data for a new fleet", path,
                        empty ? "is empty (0 bytes)"
                              : "holds no table (a copy of a running server's file made without"
                                " its -wal? back up with sqlite3's .backup)",
                        o->data_dir, has_token ? FLEET_TOKEN_FILE : "",
                        has_token && has_images ? " and " : "", has_images ? "images" : "",
                        FLEET_DB_FILE) < 0;
}

/* The fleet a start serves is the one its flags name: a --data of one kind
 * given to the other served an empty fleet without a word (a trial: a
 * SQLite node's DIR given --db; a --db node's DIR whose config lost its db
 * line, behind a balancer, registering devices anew). Refused instead. */
static int store_kind_mismatch(struct server *srv)
{
    const struct tcpota_serve_opts *o = srv->o;
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/" FLEET_DB_FILE, o->data_dir);
    if (o->db && lstat(path, &st) == 0) {
        return not_starting(srv, "--data %s holds a SQLite fleet (%s), and --db serves the"
                            " PostgreSQL one: a --db node keeps only its image cache and api.token"
                            " in --data; give it another directory (the SQLite fleet's devices,"
                            " secrets and rollouts are not moved to PostgreSQL: docs/scaling.md)",
                            o->data_dir, path);
    }
    if (!o->db && emptied_db(srv, path)) {
        return -1;
    }
    if (!o->db && lstat(path, &st) != 0 && errno == ENOENT && o->images_dir) {
        int images = holds_images(o->images_dir);

        if (images || fleet_files_is_node(o->data_dir)) {
            return not_starting(srv, "--data %s holds %s but no %s: it is a --db node's %s, or"
                                " its database was lost; give --db to serve that PostgreSQL"
                                " fleet, restore %s from a backup (docs/operations.md), or give"
                                " an empty --data for a new fleet", o->data_dir,
                                images ? "images" : FLEET_NODE_FILE, FLEET_DB_FILE,
                                images ? "image cache" : "directory", FLEET_DB_FILE);
        }
    }
    return 0;
}

int fleet_open(struct server *srv)
{
    const struct tcpota_serve_opts *o = srv->o;
    struct fleet *f = calloc(1, sizeof(*f));
    struct api_config ac;
    char err[512];

    if (!f) {
        return not_starting(srv, "out of memory");
    }
#ifdef M_TRIM_THRESHOLD
    /* SQLite frees and allocates tens of KiB per statement on the store
     * thread; glibc's default trims the heap back to the kernel each time
     * (an madvise per check-in, 230 us of the store thread's 250: see
     * bench/README.md, fleet mode). Keep up to FLEET_TRIM_BYTES instead. */
    (void)mallopt(M_TRIM_THRESHOLD, FLEET_TRIM_BYTES);
#endif
    srv->fleet = f;
    f->api_store.base.vt = &api_store_vt;
    f->api_store.srv = srv;
    f->epoch = 1;
    crypto_shorthash_keygen(f->memo_key);
    f->flush_timer = evtimer_new(srv->base, flush_cb, srv);
    if (!f->flush_timer) {
        return not_starting(srv, "out of memory");
    }
    /* A directory another server runs on: said so, before anything is
     * checked or changed there, not taken for a lost database or another
     * store's folder (a trial's node directory, given without --db, was
     * told to restore tcpota.db from a backup). */
    if (fleet_lock_held(o->data_dir, err, sizeof(err))) {
        return not_starting(srv, "%s", err);
    }
    /* Another program's tcpota.db is refused before files_private makes
     * it 0600 (a trial: made private, then refused). */
    if (!o->db && store_sqlite_check(o->data_dir, err, sizeof(err)) < 0) {
        return not_starting(srv, "cannot open the fleet store: %s", err);
    }
    if (files_private(srv) < 0 || store_kind_mismatch(srv) < 0) {
        return -1;
    }
    f->store = o->db && o->open_db ? o->open_db(o->db, o->data_dir, srv->base, err, sizeof(err))
                                   : store_sqlite_open(o->data_dir, srv->base, err, sizeof(err));
    if (!f->store) {
        (void)not_starting(srv, "cannot open the fleet store: %s", err);
        /* A --db string libpq cannot take is a bad argument (exit 2), as
         * one refused before the start is; a database that fails is not. */
        return strncmp(err, STORE_PG_CONNINFO_INVALID, strlen(STORE_PG_CONNINFO_INVALID)) == 0
                   ? FLEET_OPEN_BAD_ARG
                   : -1;
    }
    f->store->notice = store_notice;
    if (o->db && fleet_files_mark_node(o->data_dir, err, sizeof(err)) < 0) {
        say_always(o, LOG_LV_WARN, "%s", err);
    }
    f->store->notice_arg = srv;
    if (f->store->schema_from > 0 && f->store->schema_from < f->store->schema_to) {
        /* Said: from now on an older tcpota refuses this database (a
         * rolling upgrade's old node that restarts, a binary put back). */
        say_always(srv->o, LOG_LV_INFO, "store: the database's schema was migrated from version"
                   " %d to %d: a tcpota that knows only version %d or below no longer starts on"
                   " it (going back means restoring a backup; docs/operations.md, Upgrades)",
                   f->store->schema_from, f->store->schema_to, f->store->schema_to - 1);
    }
    if (load_secrets(srv) < 0) {
        return -1;
    }
    if (auth_init(&srv->auth, f->secrets, f->nsecrets) < 0) {
        return not_starting(srv, "out of memory");
    }
    if (o->db) {
        struct timeval every = {FLEET_SYNC_MS / 1000, (FLEET_SYNC_MS % 1000) * 1000};
        if (!(f->sync_timer = event_new(srv->base, -1, EV_PERSIST, sync_tick, srv)) ||
            event_add(f->sync_timer, &every) < 0) {
            return not_starting(srv, "out of memory");
        }
    }
    if (!(f->ota = http_ota_new(srv))) {
        return not_starting(srv, "out of memory");
    }
    if (o->ota_host && http_ota_listen(f->ota, o->ota_host, o->ota_port, err, sizeof(err)) < 0) {
        return not_starting(srv, "%s", err);
    }
    if (o->ota_host) {
        (void)accept_pause_guard(srv->base, http_ota_listener(f->ota), "HTTP downloads",
                                 server_say_line, srv);
    }
    sweep_uploads(srv);
    check_image_files(srv);
    if (o->api_host == NULL) {
        return 0; /* --api off */
    }
    if (api_token_load_or_create(o->data_dir, f->token, sizeof(f->token), err, sizeof(err)) < 0) {
        return not_starting(srv, "%s", err);
    }
    memset(&ac, 0, sizeof(ac));
    ac.base = srv->base;
    ac.store = &f->api_store.base;
    ac.host = o->api_host;
    ac.port = o->api_port;
    ac.token = f->token;
    ac.images_dir = o->images_dir;
    ac.check_files = !o->db; /* on PostgreSQL images/ is a node's cache */
    ac.max_image = o->max_image;
    ac.max_conns = o->api_max_conns;
    ac.hosts = o->http_hosts;
    f->keys.keys = o->pubkeys;
    f->keys.nkeys = o->npubkeys;
    ac.verify = o->npubkeys ? fleet_verify : NULL;
    ac.on_secret = on_secret;
    /* SQLite is down only once its file was replaced (a restore into a
     * running server: a trial read "unreachable" as PostgreSQL's word). */
    ac.down_status = o->db ? "the database is unreachable from this node; its log says why"
                           : "the database file was replaced while the server runs; restart it"
                             " (its log says why)";
    ac.metrics = fleet_metrics;
    if (!o->ota_host) { /* downloads on the API's listener */
        ac.ota = http_ota_handle;
        ac.ota_closed = http_ota_closed;
        ac.ota_arg = f->ota;
    } else {
        ac.ota_where = ota_where;
    }
    ac.on_change = fleet_api_changed;
    ac.image_trouble = fleet_image_trouble;
    ac.auth_refused = fleet_auth_refused;
    ac.on_stop = fleet_rollout_stopped;
    ac.log = fleet_api_log;
    ac.ctx = srv;
    f->api = api_start(&ac, err, sizeof(err));
    if (!f->api) {
        return not_starting(srv, "cannot start the API: %s", err);
    }
    (void)accept_pause_guard(srv->base, api_listener(f->api), "API connections", server_say_line,
                             srv);
    warn_api_exposed(srv, f->api);
    return 0;
}

void fleet_close(struct server *srv)
{
    struct fleet *f = srv->fleet;
    struct fleet_image *fi, *next;

    if (!f) {
        return;
    }
    if (f->api) {
        unsigned cut = api_uploads(f->api); /* their clients get no answer */
        if (cut) {
            say_always(srv->o, LOG_LV_WARN, "stopping: %u image upload%s in progress %s not "
                       "stored; add %s again once the server runs", cut, cut == 1 ? "" : "s",
                       cut == 1 ? "is" : "are", cut == 1 ? "it" : "them");
        }
        accept_pause_unguard(api_listener(f->api));
        api_stop(f->api);
    }
    if (f->ota && http_ota_listener(f->ota)) accept_pause_unguard(http_ota_listener(f->ota));
    f->api = NULL; /* the steps flushed below must not tell a stopped API */
    http_ota_free(f->ota); /* after the API: its connections may carry downloads */
    /* A halt the store takes in its close stops transfers (transition_done):
     * none here now (it read the freed server: a review). */
    f->ota = NULL;
    /* What was recorded and not yet handed over goes before the store closes
     * (store_close runs every done, events_done among them). */
    images_stop(f); /* its decisions record steps: before they are flushed */
    if (f->store) {
        flush_events(srv);
        /* The sweep's --db-timeout cut runs no more: the close waits on a
         * hung database this long, then cuts it (within systemd's stop
         * timeout, with room for the last connection attempt). */
        unsigned timeout = db_timeout_s(srv);
        f->store->stop_wait_s = timeout < FLEET_STOP_DB_WAIT_S ? timeout : FLEET_STOP_DB_WAIT_S;
    }
    store_close(f->store);
    if (f->flush_timer) event_free(f->flush_timer);
    if (f->sync_timer) event_free(f->sync_timer);
    drop_events(f);
    free(f->ev);
    free(f->seen);
    for (fi = f->images; fi; fi = next) {
        next = fi->next;
        image_unref(fi->img);
        free(fi->wait);
        free(fi);
    }
    if (f->secrets) {
        sodium_memzero(f->secrets, f->nsecrets * sizeof(*f->secrets));
        free(f->secrets);
    }
    sodium_memzero(f->token, sizeof(f->token));
    free(f);
    srv->fleet = NULL;
}

/* The store named without its connection string (it may hold a password). */
#define FLEET_DB_NOTE(o) ((o)->db ? ", fleet on PostgreSQL" : "")

void fleet_describe(const struct server *srv, char *buf, size_t cap)
{
    const struct tcpota_serve_opts *o = srv->o;

    char api[300] = "API off", ota[300] = "";

    if (srv->fleet && srv->fleet->api) {
        snprintf(api, sizeof(api), "API on %s:%u", o->api_host, api_port(srv->fleet->api));
    }
    /* An HTTP download cannot authenticate its device: under
     * --require-auth each is refused (403), which the line says (a trial
     * read "HTTP downloads on the API's listener" and tried them). */
    const char *refused = o->require_auth ? ": each refused (--require-auth)" : "";

    if (o->ota_host && srv->fleet && srv->fleet->ota) {
        snprintf(ota, sizeof(ota), ", HTTP%s downloads on %s:%u%s", srv->tls ? "S" : "",
                 o->ota_host, http_ota_port(srv->fleet->ota), refused);
    } else if (srv->fleet && srv->fleet->api) {
        snprintf(ota, sizeof(ota), ", HTTP downloads on the API's listener%s", refused);
    }
    if (o->http_hosts && o->http_hosts->n) { /* said as --require-auth is (a trial) */
        char more[32] = "";
        if (o->http_hosts->n > 1) {
            snprintf(more, sizeof(more), " and %u more", o->http_hosts->n - 1);
        }
        snprintf(buf, cap, "fleet mode (%s%s), %s%s, HTTP answering only Host %.64s%s, localhost"
                 " or an address", o->data_dir, FLEET_DB_NOTE(o), api, ota,
                 o->http_hosts->names[0], more);
        return;
    }
    snprintf(buf, cap, "fleet mode (%s%s), %s%s", o->data_dir, FLEET_DB_NOTE(o), api, ota);
}

/* "HOST:PORT" of a listener, or "port PORT of this server" when it listens
 * on every address (0.0.0.0 is no address a device can be given). */
static const char *listener_where(const char *host, unsigned port, char *buf, size_t cap)
{
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]") || !*host) {
        snprintf(buf, cap, "port %u of this server", port);
    } else {
        snprintf(buf, cap, "%s:%u", host, port);
    }
    return buf;
}

void fleet_http_where(const struct server *srv, char *buf, size_t cap)
{
    const struct tcpota_serve_opts *o = srv->o;
    char where[80];

    if (!srv->fleet) {
        snprintf(buf, cap, "HTTP downloads (esp_https_ota) need fleet mode: --data DIR --ota-listen HOST:PORT");
    } else if (o->ota_host && srv->fleet->ota) {
        snprintf(buf, cap, "HTTP%s downloads are on %s", srv->tls ? "S" : "",
                 listener_where(o->ota_host, http_ota_port(srv->fleet->ota), where, sizeof where));
    } else if (srv->fleet->api) {
        snprintf(buf, cap, "the API and HTTP downloads (/ota/) are on %s",
                 listener_where(o->api_host, api_port(srv->fleet->api), where, sizeof where));
    } else {
        snprintf(buf, cap, "serve HTTP downloads with --ota-listen HOST:PORT");
    }
}
