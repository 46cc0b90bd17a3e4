/*
 * store_common.h - the rules of the fleet store that are not SQL: what both
 * backends (store_sqlite_*.c, store_pg_*.c) call around their queries, so
 * that each rule is written once and both apply it alike: what a step of an
 * update and a device's report mean, how a batch of steps is applied and
 * counted, and what a rollout's compare-and-set accepts and says when it
 * loses. Every function here runs on the backend's store thread and touches
 * no database.
 */
#ifndef TCPOTA_SERVER_STORE_COMMON_H
#define TCPOTA_SERVER_STORE_COMMON_H

#include "store.h"

/* One step of a device's update, as STORE_EVENT and each item of
 * STORE_EVENTS give it (NULL: not given). */
struct store_step {
    const char *id;
    enum store_dev_state state;
    const uint8_t *image_id, *failed_id;
    uint64_t rollout_id;
    uint32_t bytes, size;
    const char *reason;
};

/* A backend's writer of one step: STORE_OK, or a negative store_err with
 * r->err written. STORE_E_NOTFOUND (unknown device) and STORE_E_INVAL (see
 * store_step_check()) must return before anything is written: a batch skips
 * such a step and applies the others. */
typedef int (*store_step_fn)(void *backend, struct store_req *r, const struct store_step *s);

/* STORE_EVENT: r's step through apply; its result. */
int store_run_event(struct store_req *r, store_step_fn apply, void *backend);
/* STORE_EVENTS: each item of r through apply, in order. A step refused
 * with STORE_E_NOTFOUND or STORE_E_INVAL is skipped and counted in
 * r->u.events.skipped, r->err then saying "K of N events skipped, the
 * first: <why>", rc STORE_OK. Another error stops the batch and is
 * returned (the backend rolls the whole batch back). */
int store_run_events(struct store_req *r, store_step_fn apply, void *backend);

/* STORE_OK, or STORE_E_INVAL with r->err when s has no id or an unknown
 * state: what a backend checks before it reads anything. */
int store_step_check(struct store_req *r, const struct store_step *s);
/* The image hex (2 * TCPOTA_ID_LEN + 1 bytes) a step sets in the device's
 * row: its own; without one, the row's, but none for "up to date" after
 * anything but an update (no rollout for the device now: it runs what it
 * ran). */
void store_step_image(const struct store_device *old, const struct store_step *s, char *hex);
/* 1 when s is progress of the download old already is in (same image hex,
 * no reason): the device's row moves, its history gets no line. */
int store_step_is_progress(const struct store_device *old, const struct store_step *s,
                           const char *hex);
#define STORE_STEP_DETAIL_MAX 64u /* "from byte N of M" with its NUL */

/* SQL (both backends) for the bytes and the size of the device row a
 * report of image p (its hex id's parameter) sets: a report comes after the
 * device had every byte, so all of the image the row followed, or of the
 * reported one when the row lost track of it (its steps went with a failed
 * commit, or another server had them): the image's size as stored, 0 (not
 * known) when the store has no such image. */
#define STORE_REPORT_SIZE_SQL(p)                                                              \
    "coalesce(nullif(CASE WHEN image = " p " THEN size ELSE 0 END, 0),"                       \
    " (SELECT size FROM images WHERE id = " p "), 0)"

/* SQL (both backends) that is 1 when rollout `id` counts no more steps of
 * device `dev` (its parameters; `cancelled` ROLLOUT_STATE_CANCELLED's): a
 * cancelled rollout's counts are final; so are a superseded one's for a
 * device that a newer rollout of the same image holds, which counts it
 * from then on (a trial: the superseded one counted again each device that
 * updated or failed under the newer one); a device it alone holds of that
 * image (the newer one offers another) finishes its transfer there (a
 * review). */
#define STORE_RO_FINAL_SQL(id, cancelled, dev)                                                \
    "SELECT CAST(ro.state = " cancelled " OR (ro.superseded <> 0 AND EXISTS (SELECT 1 FROM"   \
    " rollout_devices rd JOIN rollouts n ON n.id = rd.rollout_id WHERE rd.device_id = " dev    \
    " AND n.image = ro.image AND n.id > ro.id AND n.state <> " cancelled ")) AS integer)"      \
    " FROM rollouts ro WHERE ro.id = " id

/* The history line's detail for s into buf (size bytes): its reason, else
 * "from byte N of M" for a download, else "". Returns what to write (s's
 * reason itself, or buf). */
const char *store_step_detail(const struct store_step *s, char *buf, size_t size);
/* The rollout status a device state means (enum store_ro_status), or -1
 * when the state leaves it as it is (seen, waiting). */
int store_ro_status_of(enum store_dev_state s);
/* The rollout status step s sets for its device in s->rollout_id, or -1 for
 * none: none without a rollout, or for a state that leaves it (seen,
 * waiting), or for a late step (late: the row kept its report's state,
 * was: that state; see the backends' apply_event), unless the step is the
 * decision that the device runs the image (up to date) and the row says
 * "updated": a rollout made of an image its devices got from an earlier one
 * counts them as updated, or its waves wait for them for good (a trial). A
 * row that says rolled back or boot failed keeps the rollout's failure. */
int store_step_ro_status(const struct store_step *s, int late, enum store_dev_state was);

/* The reason a summary gives a rollout's failed device whose row no
 * longer says its failure there (updated since by a newer rollout, say):
 * its state is shown as failed, not as what it is now (a trial read
 * "updated: runs 5.0.0" among a rollout's failed devices). */
#define STORE_MOVED_ON_REASON "failed under this rollout, then moved on (tcpota device show ID tells where it stands)"
/* A summary's rollout failures: the row's state and reason while it says
 * its failure about the rollout's image, else failed and the reason
 * STORE_MOVED_ON_REASON: the backend's parameters (?k, $k) of the states
 * ROLLED_BACK, BOOT_FAILED, DECLINED, FAILED and of that reason. */
#define STORE_RO_FAILED_IS(rb, bf, dec, fail)                                                 \
    "d.image = r.image AND d.state IN (" rb ", " bf ", " dec ", " fail ")"
#define STORE_RO_FAILED_COLS(rb, bf, dec, fail, moved)                                        \
    "CASE WHEN " STORE_RO_FAILED_IS(rb, bf, dec, fail) " THEN d.state ELSE " fail " END AS state, " \
    "CASE WHEN " STORE_RO_FAILED_IS(rb, bf, dec, fail) " THEN d.reason ELSE " moved " END AS why"


/* 1 when the device of check-in r was registered under another model than
 * the one it reports now (was: the model its row had): the rollouts of the
 * old model no longer apply to it, so the backend moves its rows out of
 * them as a group change does (docs/fleet.md): where it finished it stays
 * counted, where it had not it leaves. */
int store_checkin_moved(const struct store_req *r, const char *was);

/* What a device's report (STORE_CHECKIN's report_result) means. */
struct store_report {
    enum store_dev_state state;  /* updated, rolled-back or boot-failed */
    const char *detail;          /* the history's line: "reported: rolled back", ... */
    const char *reason;          /* the device row's reason ("" when confirmed) */
    int failed;                  /* 1: its rollouts count it failed */
    /* 1: remember the image as failed, held back from the device: only a
     * failure final on the device's side (tcpota_srv_report_final): it
     * takes an image its bootloader fell back from once more, and its
     * second failure comes back as a DECLINE. */
    int hold;
};
/* Fills *out from r's report_result: STORE_OK, or STORE_E_INVAL with r->err
 * for a result that is not a report. */
int store_report_of(struct store_req *r, struct store_report *out);

/* STORE_ROLLOUT_SET: STORE_OK when r's new state and n_open may be written
 * over the rollout as loaded into r->u.rollout.r (a known state; 1 to its
 * waves open, never fewer than expected: waves never close), else
 * STORE_E_INVAL with r->err. */
int store_rollout_set_check(struct store_req *r);
/* Whether stored, an image of other bytes, takes the version of img (same
 * model, tcpota_version_same): then 1, with why (and what to do) in msg;
 * else 0. Devices on one would never be offered the other, and rollouts
 * naming the version would be ambiguous. The API checks it before an
 * upload is written, each store again inside the add (nodes on one
 * database add at the same moment). */
int store_version_taken(const struct store_image *stored, const struct store_image *img,
                        char *msg, size_t len);
/* Fills STORE_ROLLOUT_SET r (id, rollout and compare-and-set) with a rule's
 * move of rollout seen, as a check-in read it, to state to with n_open waves
 * open. The write holds only while the rollout's state and open waves are
 * still as seen, and a halt only while its base is too: a resume since the
 * read (another node's, or while the check-in waited for an image) moved
 * the base, and a halt on the counts read before would undo that resume. */
void store_rollout_move(struct store_req *r, const struct store_rollout *seen,
                        enum rollout_state to, uint32_t n_open);
/* STORE_ROLLOUT_SET lost its compare-and-set: STORE_E_CONFLICT with r->err
 * saying what the rollout (as r->u.rollout.r holds it now) is instead. */
int store_rollout_set_conflict(struct store_req *r);

/* What a request must carry before a backend reads anything: a check-in's
 * id, model and version; a device's id; a group of at most
 * STORE_GROUP_MAX bytes; a secret's id (1 to TCPOTA_MAX_STR bytes) and
 * secret (1 to TCPOTA_SECRET_MAX); an image's file, model, version and a
 * manifest that fits; the ids of SEEN. STORE_OK, or STORE_E_INVAL with
 * r->err naming the field. Both backends call it before each op. */
int store_req_check(struct store_req *r);

/* ---- images ---- */

#define STORE_IMG_PREFIX_MIN 8u /* hex digits an image id prefix needs (docs/api.md) */

/* An image key that is an id or a prefix (not "v:VERSION"): STORE_OK with
 * it lowercased into lower, or STORE_E_INVAL with r->err when it is not
 * STORE_IMG_PREFIX_MIN to 2 * TCPOTA_ID_LEN hex digits. */
int store_image_prefix(struct store_req *r, const char *key, char lower[2 * TCPOTA_ID_LEN + 1]);
/* A lookup of key found n images (it reads at most 2): STORE_OK for one,
 * else STORE_E_NOTFOUND or STORE_E_CONFLICT (ambiguous) with r->err. */
int store_image_matches(struct store_req *r, int n, const char *key);

/* The rollouts (not cancelled) that keep an image from being removed, for
 * image rm's CONFLICT. Rows are added in the order the backend reads them:
 * the ones still applying first (ORDER BY superseded, id DESC), so the
 * rollout an operator must cancel is never the one cut off when the list
 * outgrows r->err. */
struct store_users {
    char text[STORE_ERR_MAX / 2];
    size_t len;
    unsigned n, shown;
};
void store_users_add(struct store_users *u, long long id, enum rollout_state state,
                     int superseded);
/* STORE_OK when no rollout was added; else STORE_E_CONFLICT with r->err
 * naming them ("and N more" past what fits) and what to do. */
int store_users_conflict(struct store_req *r, const char *hex, const struct store_users *u);

/* ---- rollouts ---- */

/* A rollout's waves as its row keeps them: cumulative percentages as text,
 * "10,50,100". The room is for waves by the rules (each at most 100,
 * store_rollout_create_check); anything longer is cut, never overrun. */
#define STORE_PCT_TEXT_MAX (4u * ROLLOUT_MAX_WAVES + 1u)
void store_pct_text(const uint32_t *pct, uint32_t n, char out[STORE_PCT_TEXT_MAX]);
/* The row's text into out->pct, out->ro.n_waves and out->ro.bound. A
 * stored row is trusted but checked: waves that break the rules of
 * rollout_bounds_from_pct() leave n_waves 0 (a rollout that offers
 * nothing). */
void store_pct_parse(const char *text, struct store_rollout *out);

/* STORE_ROLLOUT_CREATE before anything is read: its waves, a model (the
 * group's length is its field's). STORE_OK, or STORE_E_INVAL with r->err. */
int store_rollout_create_check(struct store_req *r);
/* STORE_ROLLOUT_CREATE once the rollout's image (hex) was looked up:
 * found 0, STORE_E_NOTFOUND; img for another model than the rollout's,
 * STORE_E_INVAL; each with r->err. Else STORE_OK. */
int store_rollout_image_check(struct store_req *r, int found, const struct store_image *img,
                              const char *hex);

#endif
