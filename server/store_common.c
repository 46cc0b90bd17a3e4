/* store_common.c - the fleet store's rules that are not SQL (store_common.h):
 * written once, called by the SQLite and the PostgreSQL backends alike. */
#include "store_common.h"
#include "tcpota/server.h" /* tcpota_srv_report_final */
#include "tcpota/version.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_step_check(struct store_req *r, const struct store_step *s)
{
    if (!s->id || (unsigned)s->state >= STORE_ST_COUNT) {
        return store_err_set(r, STORE_E_INVAL, "event: %s",
                             !s->id ? "id: required" : "state: unknown");
    }
    return STORE_OK;
}

void store_step_image(const struct store_device *old, const struct store_step *s, char *hex)
{
    if (s->image_id) {
        store_hex(s->image_id, hex);
    } else if (s->state == STORE_ST_UP_TO_DATE && old->state != STORE_ST_UPDATED &&
               old->state != STORE_ST_UP_TO_DATE && old->state != STORE_ST_VERIFIED) {
        /* Up to date with no image (no rollout for it now) after a
         * transfer it never finished, or an image that failed: it runs
         * what it ran, not that image (a trial's device list showed
         * "up-to-date 911126dd" for one that had 100 KB of it). */
        hex[0] = '\0';
    } else {
        memcpy(hex, old->image, 2 * TCPOTA_ID_LEN + 1);
    }
}

int store_step_is_progress(const struct store_device *old, const struct store_step *s,
                           const char *hex)
{
    return old->state == STORE_ST_DOWNLOADING && s->state == STORE_ST_DOWNLOADING &&
           strcmp(old->image, hex) == 0 && !s->reason;
}

const char *store_step_detail(const struct store_step *s, char *buf, size_t size)
{
    if (s->reason) {
        return s->reason;
    }
    buf[0] = '\0';
    if (s->state == STORE_ST_DOWNLOADING) {
        snprintf(buf, size, "from byte %u of %u", (unsigned)s->bytes, (unsigned)s->size);
    }
    return buf;
}

int store_ro_status_of(enum store_dev_state s)
{
    switch (s) {
    case STORE_ST_OFFERED: return STORE_RO_OFFERED;
    case STORE_ST_DOWNLOADING:
    case STORE_ST_VERIFIED: return STORE_RO_DOWNLOADING; /* not a success before it boots */
    case STORE_ST_UPDATED:
    case STORE_ST_UP_TO_DATE: return STORE_RO_UPDATED;
    case STORE_ST_ROLLED_BACK:
    case STORE_ST_BOOT_FAILED:
    case STORE_ST_FAILED:
    case STORE_ST_DECLINED: return STORE_RO_FAILED;
    default: return -1;
    }
}

int store_step_ro_status(const struct store_step *s, int late, enum store_dev_state was)
{
    if (!s->rollout_id || (late && (s->state != STORE_ST_UP_TO_DATE || was != STORE_ST_UPDATED))) {
        return -1;
    }
    return store_ro_status_of(s->state);
}

int store_checkin_moved(const struct store_req *r, const char *was)
{
    /* A device registered by this very check-in was in no rollout yet. */
    return !r->u.checkin.is_new && strcmp(was, r->u.checkin.model) != 0;
}

int store_run_event(struct store_req *r, store_step_fn apply, void *backend)
{
    struct store_step s;

    s.id = r->u.event.id;
    s.state = r->u.event.state;
    s.image_id = r->u.event.image_id;
    s.failed_id = r->u.event.failed_id;
    s.rollout_id = r->u.event.rollout_id;
    s.bytes = r->u.event.bytes;
    s.size = r->u.event.size;
    s.reason = r->u.event.reason;
    return apply(backend, r, &s);
}

/* Item it as a step (its strings stay in the item). */
static void step_of_item(const struct store_event *it, struct store_step *s)
{
    s->id = it->id;
    s->state = it->state;
    s->image_id = it->has_image ? it->image_id : NULL;
    s->failed_id = it->has_failed ? it->failed_id : NULL;
    s->rollout_id = it->rollout_id;
    s->bytes = it->bytes;
    s->size = it->size;
    s->reason = it->reason;
}

int store_run_events(struct store_req *r, store_step_fn apply, void *backend)
{
    char first[STORE_ERR_MAX] = "";
    struct store_step s;
    size_t i;
    int rc;

    r->u.events.skipped = r->u.events.missing = 0;
    if (r->u.events.n && !r->u.events.items) {
        return store_err_set(r, STORE_E_INVAL, "events: items: required");
    }
    for (i = 0; i < r->u.events.n; i++) {
        step_of_item(&r->u.events.items[i], &s);
        rc = apply(backend, r, &s);
        if (rc == STORE_E_NOTFOUND || rc == STORE_E_INVAL) {
            /* Nothing of it was written: the others still apply. */
            if (r->u.events.skipped++ == 0) {
                snprintf(first, sizeof(first), "%s", r->err);
            }
            r->u.events.missing += rc == STORE_E_NOTFOUND &&
                                   strncmp(r->err, STORE_NO_DEVICE, strlen(STORE_NO_DEVICE)) == 0;
            r->rc = STORE_OK;
            continue;
        }
        if (rc < 0) {
            return rc; /* the database failed: the whole batch goes back */
        }
    }
    store_err_clear(r);
    if (r->u.events.skipped) {
        (void)store_err_set(r, STORE_OK, "%u of %u events skipped, the first: %.120s",
                            (unsigned)r->u.events.skipped, (unsigned)r->u.events.n, first);
    }
    return STORE_OK;
}

int store_report_of(struct store_req *r, struct store_report *out)
{
    switch (r->u.checkin.report_result) {
    case TCPOTA_RESULT_CONFIRMED:
        out->state = STORE_ST_UPDATED;
        out->detail = "reported: confirmed";
        out->reason = "";
        break;
    case TCPOTA_RESULT_ROLLED_BACK:
        out->state = STORE_ST_ROLLED_BACK;
        out->detail = "reported: rolled back";
        out->reason = "health check failed, the old image runs";
        break;
    case TCPOTA_RESULT_BOOT_FAILED:
        out->state = STORE_ST_BOOT_FAILED;
        out->detail = "reported: boot failed";
        out->reason = "the bootloader fell back to the old image";
        break;
    default:
        return store_err_set(r, STORE_E_INVAL, "report_result: unknown result %u",
                             (unsigned)r->u.checkin.report_result);
    }
    out->failed = out->state != STORE_ST_UPDATED;
    out->hold = tcpota_srv_report_final(r->u.checkin.report_result);
    return STORE_OK;
}

int store_rollout_set_check(struct store_req *r)
{
    const struct store_rollout *cur = r->u.rollout.r;
    uint32_t from = r->u.rollout.expect_n_open, to = r->u.rollout.new_n_open;

    if ((unsigned)r->u.rollout.new_state > ROLLOUT_STATE_CANCELLED) {
        return store_err_set(r, STORE_E_INVAL, "state: unknown rollout state");
    }
    if (to < 1 || to > cur->ro.n_waves || to < from) {
        return store_err_set(r, STORE_E_INVAL, "n_open: %u waves cannot be open (rollout %llu"
                             " has %u; waves never close)", (unsigned)to,
                             (unsigned long long)r->u.rollout.id, (unsigned)cur->ro.n_waves);
    }
    return STORE_OK;
}

int store_version_taken(const struct store_image *stored, const struct store_image *img,
                        char *msg, size_t len)
{
    /* The stored version as stored, then the new one when it is written
     * otherwise (before, the other way round). */
    int alike = strcmp(stored->version, img->version) == 0;

    if (strcmp(stored->model, img->model) != 0 || memcmp(stored->id, img->id, TCPOTA_ID_LEN) == 0 ||
        !tcpota_version_same(stored->version, img->version)) {
        return 0;
    }
    snprintf(msg, len, "model %s has version %s already (image %.12s, other bytes)%s%s%s; give "
             "this image a new version, or remove that one first (tcpota image rm %.12s)",
             img->model, stored->version, stored->idhex, alike ? "" : ", the same version as "
             "this image's ", alike ? "" : img->version, alike ? "" : " (the same precedence)",
             stored->idhex);
    return 1;
}

void store_rollout_move(struct store_req *r, const struct store_rollout *seen,
                        enum rollout_state to, uint32_t n_open)
{
    r->u.rollout.id = seen->id;
    *r->u.rollout.r = *seen;
    r->u.rollout.expect_state = seen->ro.state;
    r->u.rollout.expect_n_open = seen->ro.n_open;
    r->u.rollout.expect_base = to == ROLLOUT_STATE_HALTED;
    r->u.rollout.base_failed = seen->base_failed;
    r->u.rollout.base_finished = seen->base_finished;
    r->u.rollout.new_state = to;
    r->u.rollout.new_n_open = n_open;
}

int store_rollout_set_conflict(struct store_req *r)
{
    const struct store_rollout *cur = r->u.rollout.r;

    return store_err_set(r, STORE_E_CONFLICT, "rollout %llu is %s with %u of %u waves open,"
                         " not %s with %u: it changed meanwhile",
                         (unsigned long long)r->u.rollout.id,
                         store_rollout_state_name(cur->ro.state), (unsigned)cur->ro.n_open,
                         (unsigned)cur->ro.n_waves,
                         store_rollout_state_name(r->u.rollout.expect_state),
                         (unsigned)r->u.rollout.expect_n_open);
}

static int check_image_add(struct store_req *r)
{
    const struct store_image *img = r->u.image.img;

    if (!r->u.image.path) return store_err_set(r, STORE_E_INVAL, "path: required");
    if (img->manifest_len > sizeof(img->manifest)) {
        return store_err_set(r, STORE_E_INVAL, "manifest: too long");
    }
    if (!img->model[0]) return store_err_set(r, STORE_E_INVAL, "model: required");
    if (!img->version[0]) return store_err_set(r, STORE_E_INVAL, "version: required");
    return STORE_OK;
}

static int check_secret_set(struct store_req *r)
{
    size_t len = r->u.device.id ? strlen(r->u.device.id) : 0;

    if (len == 0 || len > TCPOTA_MAX_STR) {
        return store_err_set(r, STORE_E_INVAL, "id: 1 to %u bytes", TCPOTA_MAX_STR);
    }
    if (!r->u.device.secret || r->u.device.secret_len == 0 ||
        r->u.device.secret_len > TCPOTA_SECRET_MAX) {
        return store_err_set(r, STORE_E_INVAL, "secret: 1 to %u bytes", TCPOTA_SECRET_MAX);
    }
    return STORE_OK;
}

int store_req_check(struct store_req *r)
{
    switch (r->op) {
    case STORE_CHECKIN:
        if (!r->u.checkin.id || !r->u.checkin.id[0] || !r->u.checkin.model ||
            !r->u.checkin.version) {
            return store_err_set(r, STORE_E_INVAL, "checkin: id, model and version are required");
        }
        break;
    case STORE_SEEN:
        if (r->u.seen.n && !r->u.seen.ids) {
            return store_err_set(r, STORE_E_INVAL, "seen: ids: required");
        }
        break;
    case STORE_DEVICE_GET:
    case STORE_DEVICE_SET_GROUP:
    case STORE_DEVICE_RETRY:
    case STORE_DEVICE_DELETE:
        if (!r->u.device.id) {
            return store_err_set(r, STORE_E_INVAL, "id: required");
        }
        if (r->op == STORE_DEVICE_SET_GROUP && r->u.device.group &&
            strlen(r->u.device.group) > STORE_GROUP_MAX) {
            return store_err_set(r, STORE_E_INVAL, "group: at most %u bytes", STORE_GROUP_MAX);
        }
        break;
    case STORE_SECRET_SET: return check_secret_set(r);
    case STORE_IMAGE_ADD: return check_image_add(r);
    default: break;
    }
    return STORE_OK;
}

/* ---- images ---- */

int store_image_prefix(struct store_req *r, const char *key, char lower[2 * TCPOTA_ID_LEN + 1])
{
    size_t i, len = strlen(key);

    if (len < STORE_IMG_PREFIX_MIN || len > 2 * TCPOTA_ID_LEN) {
        return store_err_set(r, STORE_E_INVAL, "image: an id is %u hex digits, or a prefix of at"
                             " least %u", 2 * TCPOTA_ID_LEN, STORE_IMG_PREFIX_MIN);
    }
    for (i = 0; i <= len; i++) {
        lower[i] = (char)tolower((unsigned char)key[i]);
        if (i < len && !isxdigit((unsigned char)key[i])) {
            return store_err_set(r, STORE_E_INVAL, "image: \"%s\" is not a hex id", key);
        }
    }
    return STORE_OK;
}

int store_image_matches(struct store_req *r, int n, const char *key)
{
    if (n == 0) {
        return store_err_set(r, STORE_E_NOTFOUND, "image: no image matches %s", key);
    }
    if (n > 1) {
        return store_err_set(r, STORE_E_CONFLICT, "image: %s is ambiguous (several images"
                             " match); give more of the id", key);
    }
    return STORE_OK;
}

/* ---- rollouts ---- */

void store_users_add(struct store_users *u, long long id, enum rollout_state state,
                     int superseded)
{
    char one[64];
    int k = snprintf(one, sizeof one, "%s%lld (%s)", u->shown ? ", " : "", id,
                     store_rollout_use_name(state, superseded));

    /* Whole entries only, with room left for " and N more". */
    if (u->shown == u->n && k > 0 && u->len + (size_t)k + 24 < sizeof(u->text)) {
        memcpy(u->text + u->len, one, (size_t)k + 1);
        u->len += (size_t)k;
        u->shown++;
    }
    u->n++;
}

int store_users_conflict(struct store_req *r, const char *hex, const struct store_users *u)
{
    char more[32] = "";

    if (u->n == 0) {
        return STORE_OK;
    }
    if (u->n > u->shown) {
        snprintf(more, sizeof more, " and %u more", u->n - u->shown);
    }
    return store_err_set(r, STORE_E_CONFLICT, "image %.12s is used by rollout%s %s%s; cancel %s"
                         " first", hex, u->n > 1 ? "s" : "", u->text, more,
                         u->n > 1 ? "them" : "the rollout");
}

void store_pct_text(const uint32_t *pct, uint32_t n, char out[STORE_PCT_TEXT_MAX])
{
    size_t len = 0;
    uint32_t k;

    out[0] = '\0';
    for (k = 0; k < n && k < ROLLOUT_MAX_WAVES && len < STORE_PCT_TEXT_MAX; k++) {
        len += (size_t)snprintf(out + len, STORE_PCT_TEXT_MAX - len, "%s%u", k ? "," : "",
                                (unsigned)pct[k]);
    }
}

void store_pct_parse(const char *text, struct store_rollout *out)
{
    uint32_t n = 0;
    char *end;

    while (*text && n < ROLLOUT_MAX_WAVES) {
        unsigned long v = strtoul(text, &end, 10);
        if (end == text) {
            break;
        }
        out->pct[n++] = (uint32_t)v;
        text = *end == ',' ? end + 1 : end;
    }
    out->ro.n_waves = n;
    if (rollout_bounds_from_pct(out->pct, n, out->ro.bound) < 0) {
        out->ro.n_waves = 0;
    }
}

int store_rollout_create_check(struct store_req *r)
{
    struct store_rollout *in = r->u.rollout.r;

    if (rollout_bounds_from_pct(in->pct, in->ro.n_waves, in->ro.bound) < 0) {
        return store_err_set(r, STORE_E_INVAL, "waves: 1 to %u cumulative percentages,"
                             " strictly increasing, each 1..100", ROLLOUT_MAX_WAVES);
    }
    if (!in->model[0]) {
        return store_err_set(r, STORE_E_INVAL, "model: required");
    }
    return STORE_OK;
}

int store_rollout_image_check(struct store_req *r, int found, const struct store_image *img,
                              const char *hex)
{
    const struct store_rollout *in = r->u.rollout.r;

    if (!found) {
        return store_err_set(r, STORE_E_NOTFOUND, "image: no image %.12s", hex);
    }
    if (strcmp(img->model, in->model) != 0) {
        return store_err_set(r, STORE_E_INVAL, "model: image %.12s is for model %s, not %s", hex,
                             img->model, in->model);
    }
    return STORE_OK;
}
