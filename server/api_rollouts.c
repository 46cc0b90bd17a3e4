/* api_rollouts.c - /v1/rollouts: create, list, show, pause, resume, cancel (docs/api.md). */
#include "api_internal.h"
#include "fleet.h" /* FLEET_LEGACY_MODEL */
#include "text.h"  /* text_version_unordered */

#include <tcpota/version.h>

#include <event2/http.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ACT_PAUSE = 1, ACT_RESUME, ACT_CANCEL, ACT_OPEN_WAVE };

/* The defaults of docs/api.md's table. */
#define DEF_HALT_AT 20u
#define DEF_HALT_MIN 3u
#define DEF_MIN_FINISHED 10u
#define DEF_SUCCESS_PCT 90u
#define DEF_SOAK_S 300u

static json_t *wave_json(const struct rollout_wave *w, uint32_t pct, int open, int with_pct)
{
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I}", "targeted", (json_int_t)w->targeted,
                          "offered", (json_int_t)w->offered, "downloading",
                          (json_int_t)w->downloading, "updated", (json_int_t)w->updated, "failed",
                          (json_int_t)w->failed);
    if (o && with_pct) {
        json_object_set_new(o, "percent", json_integer(pct));
        json_object_set_new(o, "open", json_boolean(open));
        json_object_set_new(o, "opened_at", open ? json_integer(w->opened_at) : json_null());
    }
    return o;
}

/* What a superseded rollout is told (its own state no longer applies). */
#define SUPERSEDED_SAYS "superseded by a newer rollout for its model and group: it no longer " \
                        "applies, and cancelling the newer one does not bring it back; to offer " \
                        "its image again, create a rollout"

/* 1 when a newer rollout took ro's place and ro is not cancelled (a
 * cancelled one is that, whatever replaced it). */
static int superseded_only(const struct store_rollout *ro)
{
    return ro->superseded && ro->ro.state != ROLLOUT_STATE_CANCELLED;
}

/* The rollout's status for people (rollout_explain), into buf. An image
 * this server failed to load comes first: every device of the rollout
 * waits for it, whatever the waves say. */
static const char *status_of(const struct api *a, const struct store_rollout *ro, char *buf,
                             size_t cap)
{
    const char *trouble = NULL;

    if (ro->ro.state != ROLLOUT_STATE_CANCELLED && !ro->superseded && a && a->cfg.image_trouble) {
        trouble = a->cfg.image_trouble(a->cfg.ctx, ro->image_id);
    }
    if (superseded_only(ro)) {
        /* Its wave counts stay as they stood (a trial read its devices
         * "downloading" there after they had moved to the newer one). */
        snprintf(buf, cap, "%s; its counts are what its devices did under it, and a transfer of its"
                 " image that goes on: the rest counts in the newer rollout now", SUPERSEDED_SAYS);
    } else if (trouble) {
        /* A signature this server refuses says its own remedy (adding the
         * same bytes again is refused: a trial was told to). */
        snprintf(buf, cap, "its image cannot be loaded on this server (%s): its devices are told "
                 "to wait%s", trouble, strstr(trouble, "tcpota image rm") ? ""
                 : "; add the image again (tcpota image add with the original file restores it)");
    } else {
        (void)rollout_explain(ro->id, &ro->ro, &ro->rules, ro->waves, ro->base_failed,
                              ro->base_finished, (int64_t)time(NULL), buf, cap);
    }
    return buf;
}

static json_t *rollout_json(const struct api *a, const struct store_rollout *ro,
                            const char *version)
{
    char status[ROLLOUT_STATUS_MAX];
    char hex[2 * TCPOTA_ID_LEN + 1];
    struct rollout_wave tot;
    json_t *o, *waves = json_array();
    uint32_t i, n = ro->ro.n_waves <= ROLLOUT_MAX_WAVES ? ro->ro.n_waves : ROLLOUT_MAX_WAVES;

    memset(&tot, 0, sizeof tot);
    for (i = 0; waves && i < n; i++) {
        const struct rollout_wave *w = &ro->waves[i];
        json_array_append_new(waves, wave_json(w, ro->pct[i], i < ro->ro.n_open, 1));
        tot.targeted += w->targeted;
        tot.offered += w->offered;
        tot.downloading += w->downloading;
        tot.updated += w->updated;
        tot.failed += w->failed;
    }
    sodium_bin2hex(hex, sizeof hex, ro->image_id, TCPOTA_ID_LEN);
    o = json_pack("{s:I, s:s, s:s?, s:s, s:s, s:s, s:b, s:b, s:{s:I, s:I, s:I, s:I, s:I}, s:o*, s:o*, "
                  "s:I, s:I}",
                  "id", (json_int_t)ro->id, "image", hex, "version", version, "model", ro->model,
                  "group", ro->group, "state", store_rollout_state_name(ro->ro.state),
                  "superseded", ro->superseded, "allow_downgrade", ro->allow_downgrade, "rules",
                  "halt_at", (json_int_t)ro->rules.halt_pct, "halt_min", (json_int_t)ro->rules.halt_min,
                  "min_finished", (json_int_t)ro->rules.min_finished, "success_pct",
                  (json_int_t)ro->rules.success_pct, "soak_s", (json_int_t)ro->rules.soak_s,
                  "waves", waves, "totals", wave_json(&tot, 0, 0, 0), "created_at",
                  (json_int_t)ro->created_at, "changed_at", (json_int_t)ro->changed_at);
    if (o) json_object_set_new(o, "status", json_string(status_of(a, ro, status, sizeof status)));
    return o;
}

/* ---- one rollout: GET it, then its image's version ---- */

/* Replies with the answer held in c->json, which goes with the reply
 * (api_reply frees c, and with it what c->json still holds). */
static void answer_held(struct api_call *c)
{
    json_t *o = c->json;

    c->json = NULL;
    api_reply(c, c->code, o);
}

/* A create's answer, its "warning" when the rollout it superseded has a
 * newer image: the devices that took that one are offered nothing by this
 * one (no downgrade without allow_downgrade) and count as up to date, so a
 * wrong --image looked like a rollout that went well (a trial's). */
static void superseded_image_done(struct api_call *c, struct store_req *r)
{
    const char *mine = json_string_value(json_object_get(c->json, "version"));
    char warning[400];
    int order;

    if (r->rc == STORE_OK && mine &&
        tcpota_version_order(mine, strlen(mine), r->u.image.img->version,
                             strlen(r->u.image.img->version), &order) == 0 && order < 0) {
        snprintf(warning, sizeof warning, "its image %s is older than rollout %llu's, %s: a device"
                 " is offered only an image newer than the one it runs, so the devices that took"
                 " %s get nothing from this rollout and count as up to date; if a newer image was"
                 " meant, cancel it (tcpota rollout cancel %llu) and create one with that image (a"
                 " downgrade on purpose: --allow-downgrade)", mine,
                 (unsigned long long)c->superseded, r->u.image.img->version,
                 r->u.image.img->version, (unsigned long long)c->id);
        json_object_set_new(c->json, "warning", json_string(warning));
    }
    answer_held(c);
}

static void superseded_got(struct api_call *c, struct store_req *r)
{
    struct store_req *g;

    if (r->rc < 0) { /* the create stands: answered without the comparison */
        answer_held(c);
        return;
    }
    if ((g = api_req(c, STORE_IMAGE_GET)) != NULL) { /* else answered 500; c->json goes with c */
        sodium_bin2hex(g->u.image.img->idhex, sizeof g->u.image.img->idhex,
                       r->u.rollout.r->image_id, TCPOTA_ID_LEN);
        api_submit(c, g, superseded_image_done);
    }
}

static void show_image_done(struct api_call *c, struct store_req *r)
{
    json_t *o = rollout_json(c->api, &c->ro, r->rc == STORE_OK ? r->u.image.img->version : NULL);
    struct store_req *g;

    if (o && c->superseded) { /* a create's answer: the rollout it replaced */
        json_object_set_new(o, "supersedes", json_integer((json_int_t)c->superseded));
        if (!c->ro.allow_downgrade) {
            if ((g = api_req(c, STORE_ROLLOUT_GET)) == NULL) { /* answered 500 */
                json_decref(o);
                return;
            }
            c->json = o;
            g->u.rollout.id = c->superseded;
            api_submit(c, g, superseded_got);
            return;
        }
    }
    api_reply(c, c->code, o);
}

static void show_got(struct api_call *c, struct store_req *r)
{
    struct store_req *g;

    if (r->rc < 0) {
        api_store_error(c, r, "id", "rollout");
        return;
    }
    c->ro = *r->u.rollout.r;
    if ((g = api_req(c, STORE_IMAGE_GET)) != NULL) {
        sodium_bin2hex(g->u.image.img->idhex, sizeof g->u.image.img->idhex, c->ro.image_id,
                       TCPOTA_ID_LEN);
        api_submit(c, g, show_image_done);
    }
}

static void show(struct api_call *c, uint64_t id, int code)
{
    struct store_req *r = api_req(c, STORE_ROLLOUT_GET);

    c->code = code;
    c->id = id;
    snprintf(c->key, sizeof c->key, "%llu", (unsigned long long)id);
    if (r) {
        r->u.rollout.id = id;
        api_submit(c, r, show_got);
    }
}

/* ---- the list, newest first, with each image's version ---- */

static int newest_first(const void *a, const void *b)
{
    const struct store_rollout *x = a, *y = b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static void list_images_done(struct api_call *c, struct store_req *r)
{
    const struct store_image *imgs = r->u.list.rows;
    json_t *arr;
    size_t i, j;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "images");
        return;
    }
    arr = json_array();
    for (i = 0; arr && i < c->nros; i++) {
        const char *version = NULL;
        for (j = 0; j < r->u.list.n && !version; j++) {
            if (memcmp(imgs[j].id, c->ros[i].image_id, TCPOTA_ID_LEN) == 0) version = imgs[j].version;
        }
        json_array_append_new(arr, rollout_json(c->api, &c->ros[i], version));
    }
    api_reply(c, 200, arr ? json_pack("{s:o}", "rollouts", arr) : NULL);
}

static void list_done(struct api_call *c, struct store_req *r)
{
    struct store_req *g;
    size_t n = r->u.list.n;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "rollouts");
        return;
    }
    c->ros = malloc((n ? n : 1) * sizeof *c->ros);
    if (!c->ros) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    if (n) memcpy(c->ros, r->u.list.rows, n * sizeof *c->ros);
    c->nros = n;
    qsort(c->ros, n, sizeof *c->ros, newest_first);
    if ((g = api_req(c, STORE_IMAGE_LIST)) != NULL) api_submit(c, g, list_images_done);
}

/* ---- pause, resume, cancel: a compare-and-set over what was read ---- */

static const char *act_name(int act)
{
    return act == ACT_PAUSE ? "paused" : act == ACT_RESUME ? "resumed" : "cancelled";
}

static void act_set_done(struct api_call *c, struct store_req *r)
{
    if (r->rc == STORE_E_CONFLICT) {
        api_error(c, 409, NULL, "rollout %llu changed meanwhile; try again",
                  (unsigned long long)c->id);
        return;
    }
    if (r->rc < 0) {
        api_store_error(c, r, "id", "rollout");
        return;
    }
    if (c->action == ACT_OPEN_WAVE) {
        api_changed(c, "rollout %llu: wave %u opened by hand", (unsigned long long)c->id,
                    r->u.rollout.new_n_open);
    } else {
        api_changed(c, "rollout %llu %s", (unsigned long long)c->id, act_name(c->action));
    }
    if (c->action == ACT_CANCEL && c->api->cfg.on_stop) {
        char why[64];
        snprintf(why, sizeof why, "rollout %llu cancelled", (unsigned long long)c->id);
        c->api->cfg.on_stop(c->api->cfg.ctx, c->id, why);
    }
    show(c, c->id, 200);
}

/* POST .../open-wave: the operator opens the next wave now, whatever its
 * rule says (a wave held below --success-pct by devices that will not
 * change). Only an active rollout: a paused or halted one is resumed first,
 * so that a halt is looked at before more devices get the image. */
static void open_wave(struct api_call *c, const struct store_rollout *ro)
{
    struct store_req *s;

    if (ro->ro.state != ROLLOUT_STATE_ACTIVE) {
        api_error(c, 409, NULL, "rollout %llu is %s; only an active rollout opens a wave (%s)",
                  (unsigned long long)c->id, store_rollout_state_name(ro->ro.state),
                  ro->ro.state == ROLLOUT_STATE_CANCELLED
                      ? "a cancelled one never runs again: create a new rollout"
                      : "resume it first");
        return;
    }
    if (ro->ro.n_open >= ro->ro.n_waves) {
        api_error(c, 409, NULL, "rollout %llu has every wave open already (%u of %u)",
                  (unsigned long long)c->id, ro->ro.n_open, ro->ro.n_waves);
        return;
    }
    if ((s = api_req(c, STORE_ROLLOUT_SET)) != NULL) {
        s->u.rollout.id = c->id;
        s->u.rollout.expect_state = ro->ro.state;
        s->u.rollout.new_state = ro->ro.state;
        s->u.rollout.expect_n_open = ro->ro.n_open;
        s->u.rollout.new_n_open = ro->ro.n_open + 1;
        api_submit(c, s, act_set_done);
    }
}

static void act_got(struct api_call *c, struct store_req *r)
{
    enum rollout_state st = r->u.rollout.r->ro.state, to;
    struct store_req *s;
    int ok;

    if (r->rc < 0) {
        api_store_error(c, r, "id", "rollout");
        return;
    }
    if (superseded_only(r->u.rollout.r) && c->action != ACT_CANCEL) {
        /* Its state no longer applies: a pause or resume would change nothing. */
        api_error(c, 409, NULL, "rollout %llu is %s", (unsigned long long)c->id, SUPERSEDED_SAYS);
        return;
    }
    if (c->action == ACT_OPEN_WAVE) {
        open_wave(c, r->u.rollout.r);
        return;
    }
    ok = c->action == ACT_PAUSE    ? st == ROLLOUT_STATE_ACTIVE
         : c->action == ACT_RESUME ? st == ROLLOUT_STATE_PAUSED || st == ROLLOUT_STATE_HALTED
                                   : st != ROLLOUT_STATE_CANCELLED;
    if (!ok) {
        int already = (c->action == ACT_PAUSE && st == ROLLOUT_STATE_PAUSED) ||
                      (c->action == ACT_RESUME && st == ROLLOUT_STATE_ACTIVE) ||
                      c->action == ACT_CANCEL; /* refused only when cancelled */
        if (already) {
            api_error(c, 409, NULL, "rollout %llu is %s already", (unsigned long long)c->id,
                      store_rollout_state_name(st));
        } else if (st == ROLLOUT_STATE_CANCELLED) {
            api_error(c, 409, NULL, "rollout %llu is cancelled; it cannot be %s: a cancelled "
                      "rollout stays so; create a new one (tcpota rollout create)",
                      (unsigned long long)c->id, act_name(c->action));
        } else {
            /* Paused or halted, it offers nothing already (a trial: the
             * refusal did not say what to do instead). */
            api_error(c, 409, NULL, "rollout %llu is %s; it cannot be %s: it offers nothing "
                      "already; resume it (tcpota rollout resume %llu) or cancel it",
                      (unsigned long long)c->id, store_rollout_state_name(st),
                      act_name(c->action), (unsigned long long)c->id);
        }
        return;
    }
    to = c->action == ACT_PAUSE    ? ROLLOUT_STATE_PAUSED
         : c->action == ACT_RESUME ? ROLLOUT_STATE_ACTIVE
                                   : ROLLOUT_STATE_CANCELLED;
    if ((s = api_req(c, STORE_ROLLOUT_SET)) != NULL) {
        s->u.rollout.id = c->id;
        s->u.rollout.expect_state = st;
        s->u.rollout.new_state = to;
        s->u.rollout.expect_n_open = r->u.rollout.r->ro.n_open;
        s->u.rollout.new_n_open = r->u.rollout.r->ro.n_open;
        api_submit(c, s, act_set_done);
    }
}

/* ---- create ---- */

/* The log's line for rollout id, created from c->ro. */
static void created(struct api_call *c, uint64_t id)
{
    const struct store_rollout *ro = &c->ro;
    char idhex[2 * TCPOTA_ID_LEN + 1], waves[ROLLOUT_MAX_WAVES * 5], sup[48] = "";
    size_t i, n = 0;

    sodium_bin2hex(idhex, sizeof idhex, ro->image_id, TCPOTA_ID_LEN);
    waves[0] = 0;
    for (i = 0; i < ro->ro.n_waves && n < sizeof waves; i++) {
        n += (size_t)snprintf(waves + n, sizeof waves - n, "%s%u", i ? "," : "", (unsigned)ro->pct[i]);
    }
    if (c->superseded) {
        snprintf(sup, sizeof sup, "; supersedes rollout %llu", (unsigned long long)c->superseded);
    }
    api_changed(c, "rollout %llu created: image %.12s for model %s, %s%s, waves %s%%, halts when "
                "more than %u%% of the finished failed (at least %u)%s%s", (unsigned long long)id, idhex,
                ro->model, ro->group[0] ? "group " : "every group", ro->group, waves,
                (unsigned)ro->rules.halt_pct, (unsigned)ro->rules.halt_min,
                ro->allow_downgrade ? ", downgrade allowed" : "", sup);
}

static void create_done(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) {
        api_store_error(c, r, NULL, "image");
        return;
    }
    c->superseded = r->u.rollout.superseded;
    created(c, r->u.rollout.r->id);
    show(c, r->u.rollout.r->id, 201);
}

/* The image is known: check its model and create the rollout. */
static void create_with(struct api_call *c, const struct store_image *img)
{
    struct store_req *r;
    const char *why;
    char msg[700];

    if (strcmp(img->model, c->ro.model) != 0) {
        api_error(c, 400, "model", "image %.12s is for model %s, not %s", img->idhex, img->model,
                  c->ro.model);
        return;
    }
    /* A version with no place in the order is offered to no device but by
     * a rollout that allows downgrades (offer.c): a trial's rollout of
     * "factory" was made without a word, said every wave open, and left
     * each device waiting for good. Legacy devices report no version. */
    if (!c->ro.allow_downgrade && strcmp(img->model, FLEET_LEGACY_MODEL) != 0 &&
        (why = text_version_unordered(img->version))) {
        api_error(c, 400, NULL, "image %.12s has version '%s', which %s: it cannot be ordered"
                  " against what the devices run, so no device "
                  "would be offered it; create the rollout allowing downgrades (\"allow_downgrade\":"
                  " true; tcpota rollout create --allow-downgrade), which offers it to every device"
                  " of the model that does not run it, or add the image again with a version"
                  " of at most " TEXT_STR(TCPOTA_VERSION_FIELDS) " numbers of at most "
                  TEXT_STR(TCPOTA_VERSION_DIGITS) " digits, like 2.1.0 (a signed image: signed"
                  " again with one)", img->idhex, img->version, why);
        return;
    }
    /* With --pubkey, a node serves only images signed by one of its keys:
     * another node of a cluster, with other keys or none, may have added
     * this one (a trial's rollout of such an image superseded the working
     * one and left every device waiting). */
    if (api_image_refused(c->api->cfg.verify, c->api->cfg.ctx, img, msg, sizeof(msg))) {
        api_error(c, 409, "image", "image %.12s (%s) would not be served by this server: %s; remove"
                  " the image, sign it with one of this server's keys (tcpota sign) and add it"
                  " again (on a cluster, every node needs the same --pubkey keys: docs/scaling.md)",
                  img->idhex, img->version, msg);
        return;
    }
    memcpy(c->ro.image_id, img->id, TCPOTA_ID_LEN);
    if ((r = api_req(c, STORE_ROLLOUT_CREATE)) != NULL) {
        c->ro.created_at = c->ro.changed_at = r->now;
        c->ro.waves[0].opened_at = r->now;
        *r->u.rollout.r = c->ro;
        api_submit(c, r, create_done);
    }
}

static void create_by_version(struct api_call *c, struct store_req *r)
{
    const struct store_image *imgs = r->u.list.rows, *found = NULL;
    char id[2 * TCPOTA_ID_LEN + 1];
    size_t i, n = 0;
    int pass;

    if (r->rc < 0) {
        api_store_error(c, r, "image", "image");
        return;
    }
    /* The version as given; else one of the same precedence ("5.0" or
     * "v5.0.0" for 5.0.0), as image add compares them (a trial: refused
     * there as the same version, not found here). One a model at most.
     * Not for a version naming a build (+...): that build or none. */
    for (pass = 0; pass < (strchr(c->key, '+') ? 1 : 2) && n == 0; pass++) {
        for (i = 0; i < r->u.list.n; i++) {
            if (strcmp(imgs[i].model, c->ro.model) == 0 &&
                (pass ? tcpota_version_same(imgs[i].version, c->key)
                      : strcmp(imgs[i].version, c->key) == 0)) {
                found = &imgs[i];
                n++;
            }
        }
    }
    if (n > 1) {
        api_error(c, 400, "image", "%zu images of model %s have version %s; give the image id",
                  n, c->ro.model, c->key);
    } else if (!found && api_image_id(c->key, id) == 0) {
        /* hex digits too few for an id, and no version either: most
         * likely a short id (7 digits, as git shows them) */
        api_image_id_error(c, "image", ", and %s is not a version of an image of model %s either",
                           c->key, c->ro.model);
    } else if (!found) {
        api_error(c, 404, "image", "no image has the id or prefix %s, nor is it a version of an "
                  "image of model %s", c->key, c->ro.model);
    } else {
        create_with(c, found);
    }
}

static void create_by_id(struct api_call *c, struct store_req *r)
{
    struct store_req *l;

    if (r->rc == STORE_OK) {
        create_with(c, r->u.image.img);
    } else if (r->rc == STORE_E_NOTFOUND) { /* maybe a version that looks like hex */
        if ((l = api_req(c, STORE_IMAGE_LIST)) != NULL) api_submit(c, l, create_by_version);
    } else {
        api_store_error(c, r, "image", "image");
    }
}

/* Reads the optional unsigned field name of b (integer 0..max) into *out;
 * 0, or -1 after replying 400. */
static int get_u32(struct api_call *c, json_t *b, const char *name, uint32_t max, uint32_t *out)
{
    json_t *v = json_object_get(b, name);

    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t)max) {
        api_error(c, 400, name, "%s must be a whole number from 0 to %u", name, max);
        return -1;
    }
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int get_waves(struct api_call *c, json_t *b)
{
    json_t *w = json_object_get(b, "waves"), *e;
    struct store_rollout *ro = &c->ro;
    size_t i;

    if (!w) {
        ro->pct[0] = ROLLOUT_PCT_SCALE;
        ro->ro.n_waves = (uint32_t)rollout_bounds_from_pct(ro->pct, 1, ro->ro.bound);
        return 0;
    }
    if (!json_is_array(w) || json_array_size(w) == 0 || json_array_size(w) > ROLLOUT_MAX_WAVES) {
        api_error(c, 400, "waves", "waves must be an array of 1 to %u percentages", ROLLOUT_MAX_WAVES);
        return -1;
    }
    json_array_foreach(w, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 1 ||
            json_integer_value(e) > ROLLOUT_PCT_SCALE) {
            api_error(c, 400, "waves", "each wave is a whole percentage from 1 to 100");
            return -1;
        }
        ro->pct[i] = (uint32_t)json_integer_value(e);
    }
    if (rollout_bounds_from_pct(ro->pct, (uint32_t)i, ro->ro.bound) < 0) {
        api_error(c, 400, "waves", "waves are cumulative: each must be larger than the one before");
        return -1;
    }
    ro->ro.n_waves = (uint32_t)i;
    return 0;
}

/* A string field: 0, or -1 after replying 400 (missing when required, not
 * a string, not 1..max printable bytes; spaces only in a name: api_name_ok). */
static int get_str(struct api_call *c, json_t *b, const char *name, size_t max, int required,
                   int name_ok, char *out)
{
    json_t *v = json_object_get(b, name);
    const char *s = api_json_str(v);

    if (!v && !required) return 0;
    if (!v) {
        api_error(c, 400, name, "%s is required", name);
        return -1;
    }
    if (!s || !(name_ok ? api_name_ok(s, max) : api_printable(s, max, 0))) {
        /* What is wrong with it, not only the rule (before: "a b" was
         * told to be 1 to 64 printable ASCII characters, which it is). */
        size_t n = s ? strlen(s) : 0;
        const char *why = !s ? "is not a string" : n == 0 ? "is empty"
                          : n > max ? "is too long"
                          : name_ok || !strchr(s, ' ') ? "has a character that is not printable ASCII"
                          : "has a space";
        api_error(c, 400, name, "%s must be a string of 1 to %zu printable ASCII characters%s:"
                                " this one "
                  "%s%s", name, max, name_ok ? "" : ", no spaces", why,
                  strcmp(name, "image") == 0 ? "; give the image's id or version as tcpota image "
                  "list shows them" : "");
        return -1;
    }
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

/* The optional group. Left out, the rollout is for all devices of the
 * model; "" is refused, so that an empty variable in a script cannot widen
 * a staged rollout to every device. */
static int get_group(struct api_call *c, json_t *b, char *out)
{
    json_t *v = json_object_get(b, "group");
    const char *s = api_json_str(v);

    if (!v) return 0;
    if (!api_group_ok(c, s, 0)) return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int check_known(struct api_call *c, json_t *b)
{
    static const char *const known[] = {"image", "model", "group", "waves", "halt_at",
                                        "halt_min", "min_finished", "success_pct", "soak_s",
                                        "allow_downgrade"};
    const char *k;
    json_t *v;
    size_t i;

    json_object_foreach(b, k, v) {
        for (i = 0; i < sizeof known / sizeof known[0] && strcmp(k, known[i]) != 0; i++) {
        }
        if (i == sizeof known / sizeof known[0]) {
            api_error(c, 400, k, "unknown field %s; see docs/api.md", k);
            return -1;
        }
    }
    return 0;
}

static int parse_create(struct api_call *c, json_t *b)
{
    struct store_rollout *ro = &c->ro;
    json_t *dg = json_object_get(b, "allow_downgrade");

    ro->rules.halt_pct = DEF_HALT_AT;
    ro->rules.halt_min = DEF_HALT_MIN;
    ro->rules.min_finished = DEF_MIN_FINISHED;
    ro->rules.success_pct = DEF_SUCCESS_PCT;
    ro->rules.soak_s = DEF_SOAK_S;
    ro->ro.state = ROLLOUT_STATE_ACTIVE;
    ro->ro.n_open = 1;
    if (check_known(c, b) < 0 || get_str(c, b, "image", 2 * TCPOTA_ID_LEN, 1, 0, c->key) < 0 ||
        get_str(c, b, "model", API_PRINTABLE_MAX, 1, 1, ro->model) < 0 ||
        get_group(c, b, ro->group) < 0 || get_waves(c, b) < 0 ||
        get_u32(c, b, "halt_at", ROLLOUT_PCT_SCALE, &ro->rules.halt_pct) < 0 ||
        get_u32(c, b, "halt_min", UINT32_MAX, &ro->rules.halt_min) < 0 ||
        get_u32(c, b, "min_finished", UINT32_MAX, &ro->rules.min_finished) < 0 ||
        get_u32(c, b, "success_pct", ROLLOUT_PCT_SCALE, &ro->rules.success_pct) < 0 ||
        get_u32(c, b, "soak_s", UINT32_MAX, &ro->rules.soak_s) < 0) {
        return -1;
    }
    if (dg && !json_is_boolean(dg)) {
        api_error(c, 400, "allow_downgrade", "allow_downgrade must be true or false");
        return -1;
    }
    ro->allow_downgrade = json_is_true(dg);
    return 0;
}

static void create(struct api_call *c)
{
    json_t *b = api_body_object(c);
    struct store_req *r;
    char id[2 * TCPOTA_ID_LEN + 1];

    if (!b) return;
    if (parse_create(c, b) < 0) {
        json_decref(b);
        return;
    }
    json_decref(b);
    if (api_image_id(c->key, id) == 1) { /* an id or a prefix, or a hex-looking version */
        if ((r = api_req(c, STORE_IMAGE_GET)) != NULL) {
            memcpy(r->u.image.img->idhex, id, strlen(id) + 1);
            api_submit(c, r, create_by_id);
        }
    } else if ((r = api_req(c, STORE_IMAGE_LIST)) != NULL) {
        api_submit(c, r, create_by_version);
    }
}

/* The rollout id of a path segment (1.. digits), or 0. */
static uint64_t parse_id(const char *s, size_t len)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0 || len > 19) return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v;
}

void api_rollouts(struct api_call *c, int method, const char *rest, const char *query)
{
    const char *slash = rest ? strchr(rest, '/') : NULL;
    uint64_t id;
    struct store_req *r;

    if (api_query(c, query, NULL, NULL) < 0) return; /* no rollout path takes one */
    if (!rest) {
        if (method == EVHTTP_REQ_POST) create(c);
        else if (method != EVHTTP_REQ_GET) api_not_allowed(c, "/v1/rollouts", "GET, HEAD, POST");
        else if (api_no_body(c) == 0 && (r = api_req(c, STORE_ROLLOUT_LIST)) != NULL) {
            api_submit(c, r, list_done);
        }
        return;
    }
    id = parse_id(rest, slash ? (size_t)(slash - rest) : strlen(rest));
    snprintf(c->key, sizeof c->key, "%.*s", (int)(slash ? slash - rest : (int)strlen(rest)), rest);
    c->action = !slash                          ? 0
                : strcmp(slash, "/pause") == 0  ? ACT_PAUSE
                : strcmp(slash, "/resume") == 0 ? ACT_RESUME
                : strcmp(slash, "/cancel") == 0 ? ACT_CANCEL
                : strcmp(slash, "/open-wave") == 0 ? ACT_OPEN_WAVE
                                                : -1;
    if (id == 0 || c->action < 0) {
        if (id) {
            api_error(c, 404, NULL, "no such path /v1/rollouts/%s", rest);
        } else if (!c->key[0]) { /* "/v1/rollouts//pause" */
            api_error(c, 404, "id", "no rollout id in the path /v1/rollouts/%s (a rollout id is a"
                      " number from 1 on: /v1/rollouts/1%s)", rest, slash ? slash : "");
        } else {
            api_error(c, 404, "id", "no rollout %s (a rollout id is a number from 1 on)", c->key);
        }
    } else if (c->action == 0 && method != EVHTTP_REQ_GET) {
        api_not_allowed(c, "/v1/rollouts/{id}", "GET, HEAD");
    } else if (c->action != 0 && method != EVHTTP_REQ_POST) {
        char path[64];
        snprintf(path, sizeof path, "/v1/rollouts/{id}%.40s", slash);
        api_not_allowed(c, path, "POST");
    } else if (api_no_body(c) < 0) {
        return; /* a pause with fields must not pause without them */
    } else if (c->action == 0) {
        show(c, id, 200);
    } else if ((r = api_req(c, STORE_ROLLOUT_GET)) != NULL) {
        c->id = id;
        r->u.rollout.id = id;
        api_submit(c, r, act_got);
    }
}
