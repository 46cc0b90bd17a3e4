/*
 * store.h - the fleet's state (fleet mode, `tcpota serve --data DIR`): the
 * one interface every backend implements (SQLite now: store_sqlite.c; a
 * PostgreSQL backend later), so nothing above it knows which database runs.
 *
 * Every operation is asynchronous by contract. The caller fills a
 * struct store_req (inputs), hands it to store_submit(), and the backend
 * later calls req->done(req) ON THE EVENT LOOP'S THREAD with the outputs
 * and req->rc set; no query ever blocks the loop. The caller owns the
 * request and frees it with store_req_free() in (or after) done. Requests
 * run in the order they were submitted, and complete in that order but for
 * one case: while a backend's database is unreachable (PostgreSQL
 * restarting), the writes it keeps (store_req_kept()) complete once they
 * are written, after the requests behind them that failed meanwhile with
 * STORE_E_UNAVAILABLE.
 *
 * Durability:
 *   - STORE_CHECKIN with a report, STORE_EVENT of a final outcome
 *     (verified, failed, declined), STORE_EVENTS holding one, and every
 *     API operation (images, rollouts, groups, secrets) are committed
 *     (fsync) before done runs: the server acknowledges a report only from
 *     done.
 *   - Everything else (last seen, version, address, offered, progress) is
 *     written in one transaction per STORE_BATCH_MS window: SIGKILL loses at
 *     most that window of progress, never a report, image or rollout.
 *   A backend may group several durable requests in one commit. Fleet mode
 *   (server/fleet.c) gathers the steps of its devices for up to 50 ms and
 *   submits them as one STORE_EVENTS; a device's check-in and the API's
 *   requests are submitted after what was gathered before them.
 *
 * Who decides: the backend only stores and counts. The offer policy
 * (offer.c) and the rollout rules (rollout.c) run on the loop over what
 * STORE_CHECKIN returns; a wave opening or a halt is written with
 * STORE_ROLLOUT_SET, a compare-and-set, so one decider wins even when
 * several nodes share a database.
 */
#ifndef TCPOTA_SERVER_STORE_H
#define TCPOTA_SERVER_STORE_H

#include "rollout.h"
#include "tcpota/codec.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define STORE_BATCH_MS 200u     /* check-ins and progress: one commit per window */
#define STORE_FAILED_MAX 8u     /* failed images (or offers) a check-in returns */
#define STORE_GROUP_MAX 32u     /* group name bytes */
#define STORE_REASON_MAX 120u   /* reason text kept with a failure or decline */
#define STORE_ERR_MAX 512u      /* req->err */
/* How every backend's "not registered" begins ("no device ID..."): a step
 * so refused is one of a device removed while it was served
 * (u.events.missing), not one lost with a failed commit. */
#define STORE_NO_DEVICE "no device "
/* The reason and history line of a device whose failures were forgotten
 * (STORE_DEVICE_RETRY). */
#define STORE_RETRY_DETAIL "its failed images were forgotten (device retry)"
#define STORE_HISTORY_MAX 200u  /* history rows STORE_DEVICE_GET returns, newest first */
/* A device's history keeps about its newest STORE_HISTORY_MAX rows: every
 * STORE_HISTORY_PRUNE_EVERY-th row written (by the table's own sequence,
 * across all devices) drops the older rows of the device it is about, so a
 * row costs one index seek of 200 in 32, and a device holds on average
 * STORE_HISTORY_PRUNE_EVERY rows above STORE_HISTORY_MAX (exactly at most
 * that many when it alone writes, as in the tests). */
#define STORE_HISTORY_PRUNE_EVERY 32u
#define STORE_LIST_MAX 100000u  /* rows a list returns at most (limit 0: this many) */
#define STORE_TALLY_MAX 1000u   /* rows of each kind STORE_SUMMARY returns at most */

/* Errors (req->rc); req->err says what, in words an operator can act on. */
enum store_err {
    STORE_OK = 0,
    STORE_E_NOTFOUND = -1,  /* unknown image, rollout or device id */
    STORE_E_CONFLICT = -2,  /* image in use; compare-and-set lost; duplicate */
    STORE_E_INVAL = -3,     /* a field the backend cannot take (says which) */
    STORE_E_IO = -4,        /* the database failed (full disk, corrupt, ...) */
    STORE_E_UNAVAILABLE = -5, /* the database cannot be reached now; the backend reconnects
                                 by itself: try again later (devices: RETRY_AFTER, API: 503) */
    /* Not an error to report: device steps (store_req_kept()) not written
     * and never to be, which the backend has told the operator in one
     * notice for all (a --db node stopping while the database is away;
     * req->err says so too). A caller that logs failures (rc < 0) stays
     * silent: before, one line per kept batch said the same thing. */
    STORE_LOST = 1,
};

/* A device's state, as `device list --state` names it (store_state_name()). */
enum store_dev_state {
    STORE_ST_SEEN = 0,     /* registered; nothing decided yet */
    STORE_ST_UP_TO_DATE,   /* runs its rollout's image, or nothing newer exists for it */
    STORE_ST_WAITING,      /* a rollout applies, but not now (wave not open, paused, halted) */
    STORE_ST_OFFERED,      /* offered an image */
    STORE_ST_DOWNLOADING,  /* accepted it; bytes durable on the device: `bytes` */
    STORE_ST_VERIFIED,     /* downloaded, its SHA-256 checked by the device (COMPLETE ok) */
    STORE_ST_UPDATED,      /* reported: booted and confirmed */
    STORE_ST_ROLLED_BACK,  /* reported: its health check failed, the old image runs */
    STORE_ST_BOOT_FAILED,  /* reported: the bootloader fell back */
    STORE_ST_DECLINED,     /* declined the offer: `reason` */
    STORE_ST_FAILED,       /* the transfer failed: `reason` (integrity, device error) */
    STORE_ST_COUNT
};

/* The rollout status of one device, counted per wave. */
enum store_ro_status {
    STORE_RO_TARGETED = 0, /* in the rollout's model/group, nothing yet */
    STORE_RO_OFFERED,
    STORE_RO_DOWNLOADING,
    STORE_RO_UPDATED,      /* confirmed (or reported up to date on the image) */
    STORE_RO_FAILED,       /* rolled back, boot failed, integrity, declined (not "running") */
};

enum store_proto { STORE_PROTO_V1 = 0, STORE_PROTO_LEGACY = 1, STORE_PROTO_HTTP = 2 };

/* An image in the store. Files live at DIR/images/<idhex>. */
struct store_image {
    uint8_t id[TCPOTA_ID_LEN];          /* SHA-256 of the bytes */
    char idhex[2 * TCPOTA_ID_LEN + 1];
    char version[TCPOTA_MAX_NAME + 1];
    char model[TCPOTA_MAX_NAME + 1];    /* from the signed manifest; "legacy" for req0/req1 */
    uint32_t size;
    uint8_t manifest[TCPOTA_MAX_MANIFEST]; /* the signed manifest (0 bytes: unsigned) */
    uint16_t manifest_len;
    char path[512];                     /* where the bytes are (backend fills it) */
    int64_t added_at;                   /* UTC seconds */
};

/* A rollout as stored, with its per-wave counts. */
struct store_rollout {
    uint64_t id;                         /* 1, 2, ... */
    uint8_t image_id[TCPOTA_ID_LEN];
    char model[TCPOTA_MAX_NAME + 1];
    char group[STORE_GROUP_MAX + 1];     /* "": every device of the model */
    int allow_downgrade;
    int superseded;                      /* a newer rollout for the same model and group exists */
    struct rollout ro;                   /* state, waves (bounds), n_open */
    struct rollout_rules rules;
    uint32_t pct[ROLLOUT_MAX_WAVES];     /* the waves as given, percent */
    struct rollout_wave waves[ROLLOUT_MAX_WAVES];
    int64_t created_at, changed_at;      /* UTC seconds */
    /* Failed and finished devices when it was last resumed from a halt:
     * the halt rule counts only what came after (STORE_ROLLOUT_SET from
     * halted to active records them). */
    uint32_t base_failed, base_finished;
};

/* One line of a device's history. */
struct store_history {
    int64_t at;                          /* UTC seconds */
    enum store_dev_state state;
    char image[2 * TCPOTA_ID_LEN + 1];   /* hex, "" when none */
    char detail[STORE_REASON_MAX + 1];   /* reason, version, "resume from N", ... */
};

/* A device as the registry keeps it. */
struct store_device {
    char id[TCPOTA_MAX_STR + 1];         /* legacy devices: "legacy-<address>" */
    char model[TCPOTA_MAX_NAME + 1];
    char version[TCPOTA_MAX_NAME + 1];
    char running[2 * TCPOTA_ID_LEN + 1]; /* hex, "" when not sent */
    char group[STORE_GROUP_MAX + 1];
    char addr[48];
    enum store_proto proto;
    enum store_dev_state state;
    char image[2 * TCPOTA_ID_LEN + 1];   /* the image the state is about, hex, or "" */
    uint32_t bytes, size;                /* downloading: durable bytes of size */
    char reason[STORE_REASON_MAX + 1];
    int64_t first_seen, last_seen;       /* UTC seconds */
    int has_secret;
};

/* The large outputs of STORE_CHECKIN. */
struct store_checkin_out {
    char group[STORE_GROUP_MAX + 1];  /* the device's group ("": none) */
    /* images (and offer fingerprints) it failed or declined */
    uint8_t failed[STORE_FAILED_MAX][TCPOTA_ID_LEN];
    uint32_t nfailed;
    struct store_rollout rollout;     /* when has_rollout */
    struct store_image image;         /* the rollout's image, when has_rollout */
    struct store_device dev;          /* the device now (report applied) */
};

enum store_op {
    /* HELLO of a device (v1 after AUTH when required; legacy on its first
     * req): register or update it, apply its report, and return what the
     * offer needs. Durable before done when it carries a report. */
    STORE_CHECKIN = 1,
    /* A step of a device's update (offered, downloading, progress,
     * verified, failed, declined, up to date, waiting). */
    STORE_EVENT,
    STORE_IMAGE_ADD,      /* file at in.path, already verified by the caller */
    STORE_IMAGE_LIST,
    STORE_IMAGE_GET,
    STORE_IMAGE_RM,       /* STORE_E_CONFLICT while a rollout not cancelled uses it */
    STORE_ROLLOUT_CREATE, /* marks older ones of the same model+group superseded */
    STORE_ROLLOUT_LIST,
    STORE_ROLLOUT_GET,
    /* Compare-and-set of a rollout's state and open waves: applied only
     * when the row still has expect_state and expect_n_open, else
     * STORE_E_CONFLICT. Opening a wave sets its opened_at to `now`. */
    STORE_ROLLOUT_SET,
    /* A list may come with rc STORE_OK and a warning in r->err: the rows
     * may miss devices (SQLite: the last COMMIT failed). */
    STORE_DEVICE_LIST,
    /* An unknown id: STORE_E_NOTFOUND, r->err "no device ID", which may go
     * on ("; ...") with why a device that checked in is missing. */
    STORE_DEVICE_GET,     /* with its history, newest first */
    STORE_DEVICE_SET_GROUP,
    /* Forgets the images (and offers) the device failed or declined, which
     * hold them back (the operator's "device retry": a decline for the
     * device's own setup, a transfer altered on the way); u.device.forgot
     * says how many. With some, a history line (STORE_RETRY_DETAIL), and
     * a device whose state shows a failure (failed, declined, rolled back,
     * boot failed) becomes SEEN: its next check-in is decided anew. Any
     * other state (updated since, downloading) stays. */
    STORE_DEVICE_RETRY,
    /* Removes a device (the operator's "device rm": one decommissioned,
     * one that never was): its registry row, history and failures, its
     * rows in the rollouts it had not finished (their waves' counts with
     * them: a group change's rule, sq_ro_leave), and its secret. What it
     * finished (updated, failed) stays counted in those rollouts: a halt
     * was decided on it. u.device.registered and had_secret say what
     * there was; neither: STORE_E_NOTFOUND. Its next check-in registers it
     * anew (with --require-auth, only with a new secret). */
    STORE_DEVICE_DELETE,
    STORE_SECRET_SET,     /* creates or replaces a device's secret */
    /* Every device secret (the server keeps them in memory), or those set
     * after u.list.since: how a PostgreSQL node learns of a secret set
     * through another node (u.list.gen, fleet.c's secret sync). A row of
     * len 0 is a secret removed with its device (STORE_DEVICE_DELETE;
     * PostgreSQL: secrets_gone), for the other nodes; in the order they
     * were written (the later of a removal and a new secret wins). */
    STORE_SECRET_LIST,
    /* Steps of several devices' updates in one request (fleet mode batches
     * them: server/fleet.c): applied in order, each exactly as one
     * STORE_EVENT; an item for an unknown device (or with an unknown state)
     * is skipped and counted in u.events.skipped, r->err naming the first,
     * while rc stays STORE_OK. Durable when any item is. */
    STORE_EVENTS,
    /* Counts for the dashboard (struct store_tally rows): devices by model
     * and state, and by model and version; failures recorded since
     * u.summary.since by state and reason; failed devices of each rollout
     * not cancelled by wave, state and reason. Read only. */
    STORE_SUMMARY,
    /* Check-ins that changed nothing but their time, answered without the
     * store (fleet.c remembers them, devices.h): each device's last_seen
     * set to `now`, never moved back; unknown ids are skipped. Not
     * durable: SIGKILL loses at most FLEET_FLUSH_MS of these times. */
    STORE_SEEN,
};

/* One row of STORE_SUMMARY: a count of devices sharing the fields its kind names. */
enum store_tally_kind {
    STORE_TALLY_STATES = 0,      /* model, state */
    STORE_TALLY_VERSIONS,        /* model, version */
    STORE_TALLY_FAILURES,        /* state, reason (history lines since u.summary.since) */
    STORE_TALLY_ROLLOUT_FAILED,  /* rollout_id, wave (0-based), state, reason */
};

struct store_tally {
    enum store_tally_kind kind;
    char model[TCPOTA_MAX_NAME + 1];
    char version[TCPOTA_MAX_NAME + 1];
    enum store_dev_state state;
    uint64_t rollout_id;
    uint32_t wave;
    char reason[STORE_REASON_MAX + 1];
    uint64_t n;
};

/* One item of STORE_EVENTS: STORE_EVENT's inputs, the id held in place
 * (160 bytes; a batch is one array, its rare reasons apart). */
struct store_event {
    char id[TCPOTA_MAX_STR + 1];          /* the device */
    enum store_dev_state state;           /* the new state */
    uint8_t has_image, has_failed;
    uint8_t durable;                      /* a final step: the batch commits before done */
    uint8_t image_id[TCPOTA_ID_LEN];      /* when has_image */
    uint8_t failed_id[TCPOTA_ID_LEN];     /* when has_failed */
    uint64_t rollout_id;                  /* 0: not part of a rollout */
    uint32_t bytes, size;
    /* failed/declined/waiting: at most STORE_REASON_MAX bytes, malloc'd,
     * owned by the request (store_req_free frees it); NULL: none. Most
     * steps have none, and a batch can hold thousands of steps. */
    char *reason;
};

struct store_req;
typedef void (*store_done_fn)(struct store_req *r);

/* One operation. Strings are NUL-terminated; ids are bytes unless named hex. */
struct store_req {
    enum store_op op;
    store_done_fn done;
    void *arg;               /* the caller's */
    int64_t now;             /* UTC seconds of the request (the caller's clock) */
    int rc;                  /* out: STORE_OK or an enum store_err */
    /* out: why, when rc < 0 or STORE_LOST; "" otherwise. Written by store_err_set only
     * (at most STORE_ERR_MAX - 1 bytes, in err_room: a request that never
     * fails carries 8 bytes for it, not STORE_ERR_MAX). */
    const char *err;
    char *err_room;          /* store_err_set's, allocated on the first error */
    /* The backend's own mark, kept across store_req_reset (store_pg: the
     * transaction that may already have written it, when the answer to its
     * COMMIT was lost and no new connection could ask; 0: none). */
    int64_t backend_tag;
    union {
        struct {                              /* STORE_CHECKIN */
            const char *id, *model, *version; /* in */
            const uint8_t *running_id;        /* in: NULL when not sent */
            const char *addr;                 /* in */
            enum store_proto proto;           /* in */
            const uint8_t *report_id;         /* in: NULL: no report */
            uint16_t report_result;           /* in: enum tcpota_result */
            int is_new;                       /* out: first HELLO of this id */
            /* out: the rollout that applies to it (the newest not
             * superseded nor cancelled for its model, its group's before
             * the model-wide one), and its image (out->rollout, out->image);
             * has_rollout 0: none. */
            int has_rollout;
            enum store_ro_status ro_status;   /* out: its status in that rollout */
            /* out: allocated by the backend when it runs the request (a
             * queued check-in stays small), freed by store_req_free; NULL
             * when the request failed before. out->dev, out->group and
             * out->failed are always set; out->rollout and out->image only
             * with has_rollout (the rest may be left unwritten). */
            struct store_checkin_out *out;
        } checkin;
        struct {                              /* STORE_EVENT */
            const char *id;                   /* in: the device */
            enum store_dev_state state;       /* in: the new state */
            const uint8_t *image_id;          /* in: the image it is about (or NULL) */
            const uint8_t *failed_id;         /* in: remember this image/offer fp as failed */
            uint64_t rollout_id;              /* in: 0: not part of a rollout */
            uint32_t bytes, size;             /* in: downloading progress */
            const char *reason;               /* in: failed/declined/waiting, or NULL */
            int durable;                      /* in: commit before done */
        } event;
        struct {                              /* STORE_EVENTS */
            struct store_event *items;        /* in: malloc'd, owned by the request
                                                 (store_req_free frees it) */
            size_t n;                         /* in */
            size_t skipped;                   /* out: items not applied (unknown device) */
            /* out: of them, those whose device is not registered (removed
             * while it was served: STORE_DEVICE_DELETE; their error begins
             * STORE_NO_DEVICE, where one lost with a failed commit says so) */
            size_t missing;
        } events;
        struct {                              /* STORE_IMAGE_ADD / GET / RM */
            const char *path;                 /* in (ADD): the verified file; the backend copies it */
            struct store_image *img;          /* in (ADD: id, version, model, size, manifest),
                                                 out (GET, ADD: path, added_at);
                                                 in (GET/RM): idhex, or version as "v:<version>";
                                                 allocated with the request (store_req_new) */
            int added;                        /* out (ADD): 1 stored now, 0 already there (201/200) */
        } image;
        struct {                              /* STORE_ROLLOUT_CREATE / GET / SET */
            struct store_rollout *r;          /* in (CREATE: all but id/waves counts), out;
                                                 allocated with the request */
            uint64_t id;                      /* in (GET/SET) */
            enum rollout_state expect_state, new_state; /* in (SET) */
            uint32_t expect_n_open, new_n_open;         /* in (SET) */
            /* in (SET): with expect_base, the row's base_failed and
             * base_finished must be these too: a rule's move on counts
             * read before a resume (which moves the base) is stale, or a
             * halt would come back on the failures the resume put aside. */
            int expect_base;
            uint32_t base_failed, base_finished;
            uint64_t superseded;              /* out (CREATE): the rollout it superseded, 0: none */
        } rollout;
        struct {                              /* STORE_DEVICE_GET / SET_GROUP / RETRY / DELETE,
                                                 SECRET_SET */
            const char *id;                   /* in */
            const char *group;                /* in (SET_GROUP): "" clears it */
            const uint8_t *secret;            /* in (SECRET_SET) */
            uint8_t secret_len;
            struct store_device *dev;         /* out (GET); allocated with the request */
            struct store_history *history;    /* out (GET): nhistory rows, newest first */
            size_t nhistory;
            /* out (SECRET_SET, DELETE: before it; GET: when STORE_E_NOTFOUND):
             * id had a secret. A secret is kept apart from the registry: an
             * id gets a registry row at its first check-in, not from its
             * secret. */
            int had_secret;
            int registered;                   /* out (SECRET_SET, DELETE): id is (was) in
                                                 the registry */
            /* out (SECRET_SET): its last check-in was over HTTP (an
             * esp_https_ota device, which cannot authenticate: refused from
             * now on, docs/http-ota.md) */
            int http;
            uint32_t forgot;                  /* out (RETRY): images and offers forgotten */
        } device;
        struct {                              /* every *_LIST */
            const char *model, *group;        /* in (DEVICE_LIST): NULL: any */
            int state;                        /* in (DEVICE_LIST): -1: any */
            size_t limit;                     /* in: 0: STORE_LIST_MAX */
            const char *after;                /* in (DEVICE_LIST): ids after this one (paging) */
            const char *prefix;               /* in (DEVICE_LIST): ids starting so; NULL: any */
            void *rows;                       /* out: store_image/rollout/device/secret array */
            size_t n;                         /* out */
            size_t total;                     /* out (DEVICE_LIST): matching rows, all pages */
            /* SECRET_LIST: in, only the secrets set after generation since
             * (0: all); out, the generation the rows are complete up to
             * (PostgreSQL, always >= 1; SQLite, one node: 0, and every
             * secret whatever since says). Rows in the order written, or
             * by id (strcmp's order; one id twice in the order written)
             * when since is 0 or the store is SQLite. */
            int64_t since, gen;
        } list;
        struct {                              /* STORE_SEEN */
            char (*ids)[TCPOTA_MAX_STR + 1];  /* in: malloc'd, owned by the request */
            size_t n;                         /* in */
        } seen;
        struct {                              /* STORE_SUMMARY */
            int64_t since;                    /* in: failures recorded at or after (UTC s) */
            struct store_tally *rows;         /* out: by kind, each kind's largest counts first */
            size_t n;                         /* out */
        } summary;
    } u;
    struct store_req *next;  /* the backend's queue */
    double submitted;        /* monotonic seconds at store_submit() (metrics) */
    uint8_t parked;          /* answered, and held until its image loads (fleet_park) */
};

/* What STORE_SECRET_LIST returns, one per device. */
struct store_secret {
    char id[TCPOTA_MAX_STR + 1];
    uint8_t secret[TCPOTA_SECRET_MAX];
    uint8_t len;
};

struct store;

/* What a backend implements. */
struct store_vt {
    const char *name; /* "sqlite" */
    /* Queues r; r->done(r) runs later on the loop. Returns 0, or a negative
     * store_err when it cannot even be queued (r->done is then not called). */
    int (*submit)(struct store *st, struct store_req *r);
    /* Finishes what is queued (every done runs), commits, closes. */
    void (*close)(struct store *st);
    /* 1 when other servers write the same state (PostgreSQL nodes): what a
     * server remembers of it may be stale (fleet.c bounds that). */
    int shared;
    /* Loop thread, when the store has answered nothing for the server's
     * deadline (--db-timeout, idle_s): drops the database connection under
     * way if the database itself has answered no statement for idle_s
     * either (a long request of many statements is no hang), so that what
     * waits on a hung database fails as after a network cut (and the store
     * connects again). Returns 1 when it dropped one. NULL: the backend has
     * nothing to drop (SQLite). */
    int (*unstick)(struct store *st, unsigned idle_s);
};

/* What a backend tells the operator (its database went away, came back),
 * on the loop: msg is one line, error 1 for a problem, 0 for news. */
typedef void (*store_notice_fn)(void *arg, int error, const char *msg);

struct store {
    const struct store_vt *vt;
    store_notice_fn notice; /* set by the store's user after open; NULL: stderr */
    void *notice_arg;
    /* Set by open: the schema version the database had and the one it has
     * now (equal: nothing migrated; from 0: a new database). */
    int schema_from, schema_to;
    /* Set by its user before store_close: how long the close waits for a
     * request still in the database before it cuts the connection (a
     * backend with unstick; 0: for ever). */
    unsigned stop_wait_s;
};

/* Opens (creating on first use) the SQLite store in dir: dir/tcpota.db (WAL,
 * schema migrated), dir/images/. Completions are posted to base. Returns
 * the store, or NULL with a message in err (cannot create or open, locked
 * by another server, corrupt, newer schema than this program). */
struct store *store_sqlite_open(const char *dir, struct event_base *base, char *err,
                                size_t errlen);
/* Refuses a dir/tcpota.db that is not tcpota's (not a regular file, not a
 * SQLite file, another program's database) without touching it: what
 * store_sqlite_open checks first, for a caller that changes files in dir
 * before (fleet.c makes them private). Returns 0 (none there, or ours),
 * or -1 with why in err. */
int store_sqlite_check(const char *dir, char *err, size_t errlen);
/* 1 when the file at path holds no database yet: 0 bytes, or a SQLite file
 * without a table (what SQLite and this store take for a new one), read as
 * it is (its -wal not applied: the caller checks that there is none). */
int store_sqlite_blank(const char *path);

/* store->vt->submit(). */
int store_submit(struct store *st, struct store_req *r);
/* What a backend calls right before r->done(r), on the loop: counts the
 * request's latency (metrics.h). */
void store_req_finished(const struct store_req *r);
/* Loop thread: for how many seconds requests have waited with none
 * finished and no statement answered (0: none waits; store_note_answer),
 * whichever store: a database that hangs (its
 * processes stopped, its host stalled, while its kernel still answers
 * TCP) shows here and nowhere else. */
double store_waiting_s(void);
/* Any thread: the database answered a statement now (statement 1),
 * within a request that may run long, or a new connection is up (0): the
 * wait store_waiting_s counts starts again. Only a statement ends what
 * store_note_cut began (a database that takes connections and answers no
 * statement, behind a lock held, is still hung). */
void store_note_answer(int statement);
/* Loop thread: the connection of a database that answered nothing was
 * dropped (store_vt.unstick): store_down() is 1 until a statement is
 * answered again (while a new connection is tried, its connect_timeout
 * long, /health answered 200: a trial). */
void store_note_cut(void);
/* Loop thread: how many requests are submitted and not finished. */
unsigned long store_pending(void);
/* Any thread: a backend whose database is unreachable says so (1), and
 * that it is back (0); store_down() tells the loop (GET /health: a node
 * that alone lost its database answers every check-in "come back later",
 * and a balancer should send its devices elsewhere). */
void store_set_down(int down);
/* 1 while a backend says it is down, or since store_note_cut(). */
int store_down(void);
/* Past this long, GET /health answers 503 and the server says so once. */
#define STORE_STUCK_S 10.0
/* r->err as the server's own log says it. The message of STORE_E_UNAVAILABLE
 * is written for an API client ("... If it stays so, the node's log says
 * why"), which the log itself must not say (a trial read it there): the
 * log's store: lines have said why already. */
static inline const char *store_err_logged(const struct store_req *r)
{
    return r->rc == STORE_E_UNAVAILABLE ? "the database cannot be used now (the store: lines say why)"
                                        : r->err;
}

/* Loop thread: store_waiting_s() once past STORE_STUCK_S (the database is
 * taken for hung: /health 503, check-ins without a report, HTTP downloads
 * and new API requests told to come back), else 0. */
double store_stuck_s(void);
/* store->vt->close(); NULL: no-op. */
void store_close(struct store *st);

/* A zeroed request for op with done/arg set (calloc); NULL: out of memory.
 * The large records of the image, rollout and device ops (u.image.img,
 * u.rollout.r, u.device.dev) are allocated with it, after the request, so
 * that the union stays the size of a check-in: thousands of devices may
 * wait in the store's queue at once, each with its check-in. */
struct store_req *store_req_new(enum store_op op, store_done_fn done, void *arg);
/* Frees r and what its outputs hold (history, list rows). NULL: no-op. */
void store_req_free(struct store_req *r);
/* 1 when r's rows must be committed (flushed) before its done runs (the
 * durability rules above), else 0: the one list every backend follows. */
int store_req_durable(const struct store_req *r);
/* 1 when r is a write that must outlive an outage of the database: the
 * steps of devices' updates (STORE_EVENT, STORE_EVENTS), which no device
 * sends again. A backend whose database may come back keeps them, in
 * order, and writes them when it does; everything else fails at once with
 * STORE_E_UNAVAILABLE meanwhile (a device keeps its report until a
 * decision acknowledges it, and comes back; the API answers 503). */
int store_req_kept(const struct store_req *r);
/* Frees what r's outputs hold (history, list rows) and clears rc and err,
 * for a backend that runs r again (its inputs and checkin.out stay). */
void store_req_reset(struct store_req *r);

/* "up-to-date", "rolled-back", ... (the API's and the CLI's words). */
const char *store_state_name(enum store_dev_state s);
/* The state named so, or -1. */
int store_state_parse(const char *name);
/* "active", "paused", "halted", "cancelled". */
const char *store_rollout_state_name(enum rollout_state s);
/* A rollout as image rm names the rollouts that use an image: "superseded"
 * when a newer one took its place (it no longer applies, whatever its own
 * state), else its state's name. */
const char *store_rollout_use_name(enum rollout_state s, int superseded);

/* ---- for backends (store_*.c): what every backend's ops use ---- */

/* Writes a formatted error into r (r->err, r->rc); returns rc. Without
 * memory for the text, r->err says so instead. */
int store_err_set(struct store_req *r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* r->err back to "" (its room is kept for the next error). */
void store_err_clear(struct store_req *r);
/* Lowercase hex of TCPOTA_ID_LEN bytes into out (2*TCPOTA_ID_LEN + 1). */
void store_hex(const uint8_t *id, char *out);
/* The bytes of a full hex id; 0, or -1 when hex is not 2*TCPOTA_ID_LEN hex digits. */
int store_unhex(const char *hex, uint8_t *id);
/* Room for row n of a list: rows as it is while n < *cap, else grown
 * (doubled, at least STORE_ROWS_FIRST rows of elem bytes) with *cap updated.
 * NULL when out of memory: rows stays valid and unchanged. */
void *store_grow(void *rows, size_t *cap, size_t n, size_t elem);
#define STORE_ROWS_FIRST 64u

#endif
