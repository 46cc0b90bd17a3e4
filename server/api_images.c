/* api_images.c - /v1/images: list, upload, show, delete (docs/api.md). */
#include "api_internal.h"
#include "http_reply.h" /* http_header_count */
#include "digest.h"
#include "esp_image.h"
#include "store_common.h" /* store_version_taken */

#include "tcpota/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPLOAD_CHUNKS 16 /* evbuffer chunks looked at per peek */

json_t *api_image_json(const struct store_image *img, const struct store_rollout *ros, size_t nros)
{
    char hex[2 * TCPOTA_ID_LEN + 1];
    json_t *o, *used = json_array();
    size_t i;

    for (i = 0; used && i < nros; i++) {
        if (ros[i].ro.state != ROLLOUT_STATE_CANCELLED &&
            memcmp(ros[i].image_id, img->id, TCPOTA_ID_LEN) == 0) {
            json_array_append_new(used, json_integer((json_int_t)ros[i].id));
        }
    }
    sodium_bin2hex(hex, sizeof hex, img->id, TCPOTA_ID_LEN);
    o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:I, s:o*}", "id", hex, "version", img->version,
                  "model", img->model, "size", (json_int_t)img->size, "signed",
                  img->manifest_len > 0, "added_at", (json_int_t)img->added_at, "rollouts", used);
    return o;
}

/* img's JSON o says "file_missing" when its file (the only copy on
 * SQLite) is gone or not of its size: the start says so once, and an
 * operator's `image list` showed such an image as any other (a trial). */
static void say_file(const struct api_call *c, const struct store_image *img, json_t *o)
{
    struct stat st;

    if (o && c->api && c->api->cfg.check_files &&
        (stat(img->path, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != img->size)) {
        json_object_set_new(o, "file_missing", json_true());
    }
}

/* The rollouts are known: answer the image(s) held in c. */
static void images_with_rollouts(struct api_call *c, struct store_req *r)
{
    const struct store_rollout *ros = r->u.list.rows;
    json_t *arr;
    size_t i;

    if (r->rc < 0) {
        api_store_error(c, r, NULL, "rollouts");
        return;
    }
    if (c->action == 0) { /* one image */
        json_t *o = api_image_json(&c->imgs[0], ros, r->u.list.n);
        say_file(c, &c->imgs[0], o);
        if (o && c->warning[0]) json_object_set_new(o, "warning", json_string(c->warning));
        if (o && c->repaired) json_object_set_new(o, "repaired", json_true());
        if (o && c->repaired) json_object_set_new(o, "was_missing", json_boolean(c->repaired == 2));
        api_reply(c, c->code, o);
        return;
    }
    arr = json_array();
    for (i = 0; arr && i < c->nimgs; i++) {
        json_t *o = api_image_json(&c->imgs[i], ros, r->u.list.n);
        say_file(c, &c->imgs[i], o);
        json_array_append_new(arr, o);
    }
    /* The upload limit too: a 413 is libevent's, with no word of it. */
    api_reply(c, 200, arr ? json_pack("{s:o, s:I}", "images", arr, "max_image",
                                      (json_int_t)(c->api ? c->api->cfg.max_image : 0))
                          : NULL);
}

/* Holds n images in c and asks for the rollouts that use them. */
static void hold_images(struct api_call *c, const struct store_image *imgs, size_t n, int list)
{
    struct store_req *r;

    c->imgs = malloc((n ? n : 1) * sizeof *imgs);
    if (!c->imgs) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    if (n) memcpy(c->imgs, imgs, n * sizeof *imgs);
    c->nimgs = n;
    c->action = list;
    if ((r = api_req(c, STORE_ROLLOUT_LIST)) != NULL) api_submit(c, r, images_with_rollouts);
}

static void list_done(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) api_store_error(c, r, NULL, "images");
    else hold_images(c, r->u.list.rows, r->u.list.n, 1);
}

static void get_done(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) api_store_error(c, r, "id", "image");
    else hold_images(c, r->u.image.img, 1, 0);
}

static void rm_done(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) {
        api_store_error(c, r, "id", "image");
        return;
    }
    api_changed(c, "image %.12s removed", c->key);
    api_reply(c, 200, json_pack("{s:s}", "deleted", c->key));
}

/* Removes the image found (by id or version). */
static void rm_resolved_image(struct api_call *c, const struct store_image *img)
{
    struct store_req *rm;

    sodium_bin2hex(c->key, sizeof c->key, img->id, TCPOTA_ID_LEN);
    if ((rm = api_req(c, STORE_IMAGE_RM)) != NULL) {
        snprintf(rm->u.image.img->idhex, sizeof rm->u.image.img->idhex, "%s", c->key);
        api_submit(c, rm, rm_done);
    }
}

static void rm_resolved(struct api_call *c, struct store_req *r)
{
    if (r->rc < 0) api_store_error(c, r, "id", "image");
    else rm_resolved_image(c, r->u.image.img);
}

/* ---- an image named by its version (GET and DELETE /v1/images/{id}) ---- */

#define ACT_RM 1 /* c->action until the image is found: DELETE */

/* The image of the version in c->key, among all images (versions are
 * unique per model, not across models: several are named, not guessed). */
static void by_version(struct api_call *c, struct store_req *r)
{
    const struct store_image *imgs = r->u.list.rows, *found = NULL;
    char names[512] = "", id[2 * TCPOTA_ID_LEN + 1];
    size_t i, n = 0, len = 0;

    if (r->rc < 0) {
        api_store_error(c, r, "id", "image");
        return;
    }
    for (i = 0; i < r->u.list.n; i++) {
        if (strcmp(imgs[i].version, c->key) != 0) continue;
        found = &imgs[i];
        if (len < sizeof names) {
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%.12s (model %s)",
                                    n ? ", " : "", imgs[i].idhex, imgs[i].model);
        }
        n++;
    }
    if (n > 1) {
        api_error(c, 400, "id", "%zu images have version %s: %s; give the id of one", n, c->key,
                  names);
    } else if (!found) {
        /* A name that matches no image is 404 whatever it looks like: hex
         * digits too few for an id (a short id, or a version) no less than
         * "xyz123" (before: 400 "an image id is 8 to 64 hex digits"). */
        int kind = api_image_id(c->key, id);
        char note[200] = "";

        if (kind == 0) {
            snprintf(note, sizeof note, "; an image id is %u to %u hex digits, so %s is too "
                     "short for one", API_PREFIX_MIN, 2 * TCPOTA_ID_LEN, c->key);
        }
        api_error(c, 404, "id", "no image has the %s %s (tcpota image list shows ids and "
                  "versions%s)", kind == 1 ? "id, prefix or version" : "version", c->key, note);
    } else if (c->action == ACT_RM) {
        rm_resolved_image(c, found);
    } else {
        hold_images(c, found, 1, 0);
    }
}

static void by_id(struct api_call *c, struct store_req *r)
{
    struct store_req *l;

    if (r->rc == STORE_E_NOTFOUND) { /* maybe a version that looks like hex */
        if ((l = api_req(c, STORE_IMAGE_LIST)) != NULL) api_submit(c, l, by_version);
    } else if (c->action == ACT_RM) {
        rm_resolved(c, r);
    } else {
        get_done(c, r);
    }
}

/* Looks up the image the path segment s names: an id or a unique prefix of
 * one (8+ hex digits), else a version (percent-decoded). 400 when it can
 * be neither (a space, a control character); 404 when it names no image.
 * c->key keeps s as given, for a version that looks like hex. */
static void find_image(struct api_call *c, const char *s, int rm)
{
    struct store_req *r;
    size_t n = 0;
    char *dec, bad[2];

    c->code = 200;
    c->action = rm ? ACT_RM : 0;
    if (api_image_id(s, c->key) == 1) { /* at most 64 hex digits: c->key holds them */
        if ((r = api_req(c, STORE_IMAGE_GET)) != NULL) {
            snprintf(r->u.image.img->idhex, sizeof r->u.image.img->idhex, "%s", c->key);
            snprintf(c->key, sizeof c->key, "%s", s);
            api_submit(c, r, by_id);
        }
        return;
    }
    if (api_query_bad_escape(s, bad, sizeof bad)) { /* as a device id's (api_devices.c) */
        api_error(c, 400, "id", "%s", API_BAD_ESCAPE_SAYS);
        return;
    }
    dec = strlen(s) < 3 * API_PRINTABLE_MAX + 1 ? evhttp_uridecode(s, 0, &n) : NULL;
    if (!dec || n != strlen(dec) || !api_printable(dec, API_PRINTABLE_MAX, 0)) {
        free(dec);
        api_image_id_error(c, "id", ", or a version (1 to %u printable ASCII characters, no"
                           " spaces); "
                           "tcpota image list shows both", API_PRINTABLE_MAX);
        return;
    }
    memcpy(c->key, dec, n + 1);
    free(dec);
    if ((r = api_req(c, STORE_IMAGE_LIST)) != NULL) api_submit(c, r, by_version);
}

/* ---- upload ---- */

static void lookup(struct api_call *c);

static void add_done(struct api_call *c, struct store_req *r)
{
    if (r->rc == STORE_E_CONFLICT) {
        /* Another image of the model took this version meanwhile (another
         * node's add: the store checks it again inside the add,
         * store_version_taken). Answered as it is, not looked up again: an
         * image list shows the newest STORE_LIST_MAX only, and the store
         * looked at all of them. */
        api_error(c, 409, "version", "%s", r->err);
        return;
    }
    if (r->rc == STORE_OK && !r->u.image.added) {
        /* Added meanwhile (through another node: uploads to one node take
         * turns, upload_turn()): judged as if it had been there first, so
         * that other names for the same bytes are refused (409). The store
         * answers such an add with the row stored first: taken as this
         * one's, it was "added" under the other node's version (a trial,
         * 4 tries of 4). */
        lookup(c);
        return;
    }
    if (r->rc < 0) {
        api_store_error(c, r, "body", "image");
        return;
    }
    api_changed(c, "image %.12s added: version %s, model %s, %lu bytes, %s", r->u.image.img->idhex,
                r->u.image.img->version, r->u.image.img->model, (unsigned long)r->u.image.img->size,
                r->u.image.img->manifest_len ? "signed" : "unsigned");
    hold_images(c, r->u.image.img, 1, 0);
}

/* Writes c->body to a new file in images_dir (0600, fsync'd): c->path.
 * Returns 0, or -1 with errno. Off the loop (api_offload). */
static int write_body(struct api_call *c)
{
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[UPLOAD_CHUNKS];
    size_t done = 0, total = evbuffer_get_length(c->body);
    int fd, n, i, err = 0; /* the first error */

    snprintf(c->path, sizeof c->path, "%s/" API_UPLOAD_PREFIX "XXXXXX", c->api->cfg.images_dir);
    fd = mkstemp(c->path); /* O_EXCL, 0600 */
    if (fd < 0) {
        c->path[0] = 0;
        return -1;
    }
    evbuffer_ptr_set(c->body, &pos, 0, EVBUFFER_PTR_SET);
    while (!err && done < total && (n = evbuffer_peek(c->body, -1, &pos, v, UPLOAD_CHUNKS)) > 0) {
        for (i = 0; !err && i < n && i < UPLOAD_CHUNKS; i++) {
            const char *p = v[i].iov_base;
            size_t left = v[i].iov_len;
            while (!err && left) {
                ssize_t w = write(fd, p, left);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    err = w < 0 ? errno : EIO; /* 0: nothing written, no errno */
                } else {
                    p += w;
                    left -= (size_t)w;
                }
            }
            done += v[i].iov_len;
        }
        evbuffer_ptr_set(c->body, &pos, done, EVBUFFER_PTR_SET);
    }
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    errno = err;
    return err ? -1 : 0;
}

/* 1 when version, taken as an image id (8 or more hex digits, in either
 * case), starts idhex: looked up as a name, it would be that image. */
static int version_names_id(const char *version, const char *idhex)
{
    char hex[2 * TCPOTA_ID_LEN + 1];

    return api_image_id(version, hex) == 1 && strncmp(idhex, hex, strlen(hex)) == 0;
}

static void add_list_done(struct api_call *c, struct store_req *r);

/* 1 when a stored image's file is there: a regular file of its size whose
 * SHA-256 is its id; 0 when it is missing, damaged or replaced (the loop
 * then offers the image to no device, fleet.c image_for). */
static int stored_file_intact(const struct store_image *si)
{
    uint8_t buf[65536], id[TCPOTA_ID_LEN];
    struct digest st = {NULL}; /* digest_final below even when digest_init never ran */
    struct stat sb;
    uint32_t left = si->size;
    int fd = open(si->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), ok;

    if (fd < 0) {
        return 0;
    }
    ok = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == si->size &&
         digest_init(&st) == 0;
    while (ok && left) {
        ssize_t n = read(fd, buf, left < sizeof buf ? left : sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        if (ok) {
            digest_update(&st, buf, (size_t)n);
            left -= (uint32_t)n;
        }
    }
    (void)close(fd);
    if (digest_final(&st, id) < 0 || !ok) {
        return 0;
    }
    return sodium_memcmp(id, si->id, TCPOTA_ID_LEN) == 0;
}

/* Off the loop: when the stored file of the same bytes (c->stored) is
 * missing or damaged, the upload takes its place (written and fsync'd
 * beside it, then renamed over it): c->repaired. c->job_rc: 0, or -1 with
 * c->job_errno. */
static void repair_work(struct api_call *c)
{
    const char *path = c->stored.path;

    c->job_rc = 0;
    if (stored_file_intact(&c->stored)) return;
    /* 2: not there at all, which on a --db node only means that this node
     * has not fetched it from the database yet (not a damage to report). */
    c->repaired = access(path, F_OK) != 0 && errno == ENOENT ? 2 : 1;
    /* An empty directory in its place goes (rename would refuse it); one
     * with something in it is the operator's to look at. */
    if (!c->api->cfg.images_dir || write_body(c) < 0 ||
        (rmdir(path) < 0 && errno != ENOTDIR && errno != ENOENT) || rename(c->path, path) < 0) {
        c->job_rc = -1; /* the temporary file goes at the call's end */
        c->job_errno = c->api->cfg.images_dir ? errno : 0;
        return;
    }
    c->path[0] = 0;
}

static void repaired(struct api_call *c)
{
    if (c->job_rc < 0) {
        api_error(c, 500, NULL, "image %.12s is stored but its file %s is missing or damaged, "
                  "and writing this upload in its place failed: %s; remove what is at that "
                  "path and make its folder writable for the server, then add the image again",
                  c->stored.idhex, c->stored.path,
                  c->job_errno ? strerror(c->job_errno) : "no images directory");
        return;
    }
    if (c->repaired) { /* the loop may offer it again (fleet.c image_for) */
        api_changed(c, c->repaired == 2 ? "image %.12s: its file %s, not there (a --db node fetches"
                                          " an image at its first use), written from an upload"
                                        : "image %.12s: its damaged file %s written again from an upload",
                    c->stored.idhex, c->stored.path);
    } else if (c->api->cfg.image_trouble && c->api->cfg.image_trouble(c->api->cfg.ctx, c->stored.id)) {
        /* Intact now (put back by hand), while the server remembers its
         * failed load: forgotten, as the failure's line advised (a trial
         * was answered 503 another 30 s). */
        api_changed(c, "image %.12s: its file %s is intact again; the next check-in loads it",
                    c->stored.idhex, c->stored.path);
    }
    hold_images(c, &c->stored, 1, 0);
}

/* 1 when two manifests (both verified) say the same of the same bytes:
 * size, digest, version, model, security counter and signing key; only
 * their signing time and signature differ (tcpota sign run again on the
 * same file: a new user was told to remove the stored image). */
static int same_claims(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    struct tcpota_manifest x, y;

    return tcpota_manifest_parse(a, alen, &x) == 0 && tcpota_manifest_parse(b, blen, &y) == 0 &&
           x.image_size == y.image_size && memcmp(x.sha256, y.sha256, TCPOTA_ID_LEN) == 0 &&
           x.version.len == y.version.len &&
           memcmp(x.version.ptr, y.version.ptr, x.version.len) == 0 &&
           x.model.len == y.model.len && memcmp(x.model.ptr, y.model.ptr, x.model.len) == 0 &&
           x.security_counter == y.security_counter &&
           memcmp(x.pubkey, y.pubkey, TCPOTA_PUBKEY_LEN) == 0;
}

static void add_lookup_done(struct api_call *c, struct store_req *r)
{
    struct store_req *add;

    if (r->rc == STORE_OK && (strcmp(r->u.image.img->version, c->img.version) != 0 ||
                              strcmp(r->u.image.img->model, c->img.model) != 0)) {
        /* The same bytes under another name: an image's version and model
         * never change under the devices that were offered it. */
        /* The field at fault: a trial's other model was blamed on --version. */
        api_error(c, 409, strcmp(r->u.image.img->version, c->img.version) != 0 ? "version" : "model",
                  "these bytes are stored already as image %.12s, version %s "
                  "for model %s; remove it first (tcpota image rm %.12s) to add them as %s for %s",
                  r->u.image.img->idhex, r->u.image.img->version, r->u.image.img->model,
                  r->u.image.img->idhex, c->img.version, c->img.model);
        return;
    }
    if (r->rc == STORE_OK && c->img.manifest_len &&
        (r->u.image.img->manifest_len != c->img.manifest_len ||
         memcmp(r->u.image.img->manifest, c->img.manifest, c->img.manifest_len) != 0) &&
        !(r->u.image.img->manifest_len &&
          same_claims(r->u.image.img->manifest, r->u.image.img->manifest_len, c->img.manifest,
                      c->img.manifest_len))) {
        /* The same bytes with a manifest the stored image lacks (or with
         * another one): never answered "already stored" (the manifest
         * would be dropped unsaid), nor attached under the rollouts and
         * the devices that were offered the stored image as it is (a
         * device that declined it as unsigned is held back from that
         * offer only; the image added again is a new offer). */
        const struct store_image *s = r->u.image.img;
        api_error(c, 409, "manifest", "these bytes are stored already as image %.12s, %s; the "
                  "server does not attach a manifest to a stored image: remove it (tcpota image "
                  "rm %.12s; cancel the rollouts using it first) and add it again with this "
                  "manifest", s->idhex, s->manifest_len ? "with another signed manifest" : "unsigned",
                  s->idhex);
        return;
    }
    if (r->rc == STORE_OK) { /* the same bytes again: their file checked (and mended) off the loop */
        c->code = 200;
        c->stored = *r->u.image.img;
        api_offload(c, repair_work, repaired);
        return;
    }
    if (r->rc != STORE_E_NOTFOUND) {
        api_store_error(c, r, "body", "image");
        return;
    }
    /* New bytes: first, no other image of this model may have this
     * version (devices on either would never be offered the other, and
     * rollouts naming the version would be ambiguous). */
    if ((add = api_req(c, STORE_IMAGE_LIST)) != NULL) {
        api_submit(c, add, add_list_done);
    }
}

/* Off the loop: the new image's file (write_body). */
static void write_work(struct api_call *c)
{
    c->job_rc = c->api->cfg.images_dir ? write_body(c) : -1;
    c->job_errno = c->api->cfg.images_dir ? errno : 0;
}

static void written(struct api_call *c)
{
    struct store_req *add;

    if (!c->req) { /* the connection is freed (not merely closed): keep nothing */
        api_reply(c, 500, NULL);
        return;
    }
    if (c->job_rc < 0) {
        int e = c->job_errno, full = e == ENOSPC || e == EDQUOT;
        api_error(c, full ? 507 : 500, NULL, "cannot write the image into %s: %s; %s, then add the "
                  "image again", c->api->cfg.images_dir ? c->api->cfg.images_dir : "(no images directory)",
                  e ? strerror(e) : "no directory", full ? "free space on that disk"
                  : "make that folder writable for the server and check its disk");
        return;
    }
    if ((add = api_req(c, STORE_IMAGE_ADD)) != NULL) {
        add->u.image.path = c->path;
        *add->u.image.img = c->img;
        api_submit(c, add, add_done);
    }
}

/* Appends line to c->warning, the answer's "warning" (one per line); a
 * line that does not fit whole is left out. */
static void add_warning(struct api_call *c, const char *line)
{
    size_t len = strlen(c->warning), n = strlen(line);

    if (len + 1 + n < sizeof(c->warning)) {
        if (len) c->warning[len++] = '\n';
        memcpy(c->warning + len, line, n + 1);
    }
}

/* What the image's first bytes say against its version and model: an ELF,
 * an ESP-IDF app of another chip or version (esp_image.h). The first of
 * c->warning's lines. */
static void esp_note(struct api_call *c)
{
    uint8_t head[ESP_IMAGE_PEEK];
    ev_ssize_t n = evbuffer_copyout(c->body, head, sizeof(head));

    c->warning[0] = 0;
    if (n > 0) {
        (void)esp_image_notes(head, (size_t)n, c->img.version, c->img.model, c->warning,
                              sizeof(c->warning));
    }
}

/* A signed image of the model with a higher security counter than the new
 * one's: the devices that took it decline the new one (a downgrade), and a
 * rollout of it halts on their declines (a trial's did; nothing said so
 * before). Written into c->warning for the answer. */
static void counter_note(struct api_call *c, const struct store_image *imgs, size_t n)
{
    struct tcpota_manifest mine, theirs;
    const struct store_image *top = NULL;
    char line[400];
    uint32_t high = 0;
    size_t i;

    if (!c->img.manifest_len ||
        tcpota_manifest_parse(c->img.manifest, c->img.manifest_len, &mine) != 0) {
        return;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(imgs[i].model, c->img.model) != 0 || !imgs[i].manifest_len ||
            tcpota_manifest_parse(imgs[i].manifest, imgs[i].manifest_len, &theirs) != 0 ||
            theirs.security_counter <= mine.security_counter || theirs.security_counter <= high) {
            continue;
        }
        high = theirs.security_counter;
        top = &imgs[i];
    }
    if (top) {
        snprintf(line, sizeof(line), "its security counter is %u, below the %u of "
                 "image %s (%.12s) of model %s: devices that took that one decline this one (a "
                 "downgrade), and a rollout of it halts on their declines; sign it with "
                 "--security-counter %u or more to reach them", mine.security_counter, high,
                 top->version, top->idhex, c->img.model, high);
        add_warning(c, line);
    }
}

static void add_list_done(struct api_call *c, struct store_req *r)
{
    const struct store_image *imgs = r->u.list.rows;
    char msg[512]; /* two versions and a model, each up to TCPOTA_MAX_STR */
    size_t i;

    if (r->rc < 0) {
        api_store_error(c, r, "body", "image");
        return;
    }
    for (i = 0; i < r->u.list.n; i++) {
        if (store_version_taken(&imgs[i], &c->img, msg, sizeof(msg))) {
            api_error(c, 409, "version", "%s", msg);
            return;
        }
        /* An image is named by its id, a prefix of it, or its version, the
         * id first: a version that starts another image's id would name
         * that one (a security review: --image 1e051090 took 2.0.0). */
        if (version_names_id(c->img.version, imgs[i].idhex)) {
            api_error(c, 409, "version", "version %s is the start of the id of image %.12s "
                      "(version %s, model %s), and an id is looked up before a version: "
                      "--image %s would name that image; give this one another version",
                      c->img.version, imgs[i].idhex, imgs[i].version, imgs[i].model,
                      c->img.version);
            return;
        }
        /* The other way (a review): this image's id starting with another's
         * hex-looking version (a date, 20261207) would take that name. */
        if (version_names_id(imgs[i].version, c->img.idhex)) {
            api_error(c, 409, "body", "this image's id %.12s starts with %s, the version of image "
                      "%.12s (model %s), and an id is looked up before a version: --image %s "
                      "would name this image instead of that one; to add this one, remove that "
                      "image first (tcpota image rm %.12s)", c->img.idhex, imgs[i].version,
                      imgs[i].idhex, imgs[i].model, imgs[i].version, imgs[i].idhex);
            return;
        }
    }
    if (!c->req) { /* the connection is freed (not merely closed): keep nothing */
        api_reply(c, 500, NULL);
        return;
    }
    esp_note(c);
    counter_note(c, imgs, r->u.list.n);
    api_offload(c, write_work, written);
}

/* Off the loop: the upload's SHA-256, its id. */
static void hash_work(struct api_call *c)
{
    struct digest st;
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[UPLOAD_CHUNKS];
    size_t done = 0, total = evbuffer_get_length(c->body);
    int n, i;

    c->job_rc = -1;
    if (digest_init(&st) < 0) {
        return;
    }
    evbuffer_ptr_set(c->body, &pos, 0, EVBUFFER_PTR_SET);
    while (done < total && (n = evbuffer_peek(c->body, -1, &pos, v, UPLOAD_CHUNKS)) > 0) {
        for (i = 0; i < n && i < UPLOAD_CHUNKS; i++) {
            digest_update(&st, v[i].iov_base, v[i].iov_len);
            done += v[i].iov_len;
        }
        evbuffer_ptr_set(c->body, &pos, done, EVBUFFER_PTR_SET);
    }
    c->job_rc = digest_final(&st, c->img.id);
}

/* Takes version and model from the Tcpota-Manifest header (when present)
 * into c->img, its signature checked. That it describes the bytes sent
 * (their SHA-256) is checked once they are hashed (hashed()). Returns 1
 * (taken), 0 (no manifest), -1 (replied 400). */
static int take_manifest(struct api_call *c, const char *b64, size_t size)
{
    struct store_image *img = &c->img;
    struct tcpota_manifest m;
    char why[256] = "", v[TCPOTA_MAX_NAME + 1], mo[TCPOTA_MAX_NAME + 1];
    size_t len = 0;
    int rc;

    if (!b64) return 0;
    if (sodium_base642bin(img->manifest, sizeof img->manifest, b64, strlen(b64), " \t", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 || len == 0) {
        api_error(c, 400, "manifest", "the Tcpota-Manifest header is not base64 of a manifest of at "
                  "most %u bytes", TCPOTA_MAX_MANIFEST);
        return -1;
    }
    img->manifest_len = (uint16_t)len;
    if ((rc = tcpota_manifest_parse(img->manifest, len, &m)) < 0) {
        /* Not the codec's "protocol violation": this is a file (a trial). */
        api_error(c, 400, "manifest", "the manifest is %s; sign the image again (tcpota sign)",
                  rc == TCPOTA_ERR_NOTSUP ? "of a format this server does not read (signed by a "
                                            "newer tcpota?)"
                                          : "not a tcpota manifest, or it is damaged");
        return -1;
    }
    if (m.image_size != size) {
        api_error(c, 400, "manifest", "the manifest describes other bytes (%u bytes) than the %zu "
                  "bytes sent; send the manifest made for this file (tcpota sign writes "
                  "FILE.manifest)", m.image_size, size);
        return -1;
    }
    if (c->api->cfg.verify) {
        rc = c->api->cfg.verify(c->api->cfg.ctx, m.sha256, img->manifest, len, v, mo, why, sizeof why);
    } else { /* no trusted keys: the signature must still hold for its own key */
        rc = crypto_sign_verify_detached(m.signature, m.signed_part, m.signed_len, m.pubkey);
        snprintf(why, sizeof why, "the manifest's signature does not verify (altered or forged)");
    }
    if (rc != 0) {
        api_error(c, 400, "manifest", "%s", why);
        return -1;
    }
    snprintf(img->version, sizeof img->version, "%.*s", (int)m.version.len, (const char *)m.version.ptr);
    snprintf(img->model, sizeof img->model, "%.*s", (int)m.model.len, (const char *)m.model.ptr);
    /* The rule of an unsigned add's ?version= (take_names): a version
     * with a space (the manifest's own rule, printable ASCII, allows one)
     * was stored, then refused by rollout create --image VERSION. */
    if (!api_printable(img->version, API_PRINTABLE_MAX, 0)) {
        api_error(c, 400, "manifest", "the manifest's version '%s' has a space, and the API names "
                  "images by version (rollout create --image VERSION): sign the image again with "
                  "a version without spaces (tcpota sign --version)", img->version);
        return -1;
    }
    return 1;
}

/* The parameters of POST /v1/images (docs/api.md). */
static const char *const upload_params[] = {"version", "model", NULL};

/* version/model of the query: must agree with a manifest, or name an unsigned image. */
static int take_names(struct api_call *c, const char *query, int signed_)
{
    struct evkeyvalq q;
    char *dst[2] = {c->img.version, c->img.model};
    int i, rc = 0;

    if (api_query(c, query, upload_params, &q) < 0) return -1;
    for (i = 0; i < 2 && rc == 0; i++) {
        const char *name = upload_params[i], *v = evhttp_find_header(&q, name);
        if (!v && !signed_) {
            rc = -1;
            api_error(c, 400, name, c->api->cfg.verify ? "the server has --pubkey keys: send the "
                      "signed manifest in Tcpota-Manifest" : "an unsigned image needs ?version=V&model=M");
        } else if (v && !(i == 1 ? api_name_ok(v, API_PRINTABLE_MAX)
                                 : api_printable(v, API_PRINTABLE_MAX, 0))) {
            rc = -1;
            api_error(c, 400, name, "%s must be 1 to %u printable ASCII characters%s", name,
                      API_PRINTABLE_MAX, i == 1 ? "" : ", no spaces");
        } else if (v && signed_ && strcmp(v, dst[i]) != 0) {
            rc = -1;
            api_error(c, 400, name, "%s %s contradicts the signed manifest's %s; leave it out",
                      name, v, dst[i]);
        } else if (v) {
            snprintf(dst[i], TCPOTA_MAX_NAME + 1, "%s", v);
        }
    }
    evhttp_clear_headers(&q);
    return rc;
}

/* Is the hashed upload stored already? Asked first of all its checks
 * against the images stored (the same bytes, the same version). */
static void lookup(struct api_call *c)
{
    struct store_req *r;

    if ((r = api_req(c, STORE_IMAGE_GET)) != NULL) {
        memcpy(r->u.image.img->idhex, c->img.idhex, sizeof c->img.idhex);
        api_submit(c, r, add_lookup_done);
    }
}

/* Uploads take turns from their lookup to their end: two at once each
 * passed the checks against the images stored before either was added
 * (the same bytes under two versions, two images of one version), now
 * that hashing and writing leave the loop free for the other. The next
 * in line starts when the one before ends (api_upload_end). */
static void upload_turn(struct api_call *c)
{
    struct api *a = c->api;

    if (!a->upload_owner) {
        a->upload_owner = c;
        lookup(c);
        return;
    }
    c->upload_next = NULL;
    if (a->upload_tail) a->upload_tail->upload_next = c;
    else a->upload_head = c;
    a->upload_tail = c;
    c->upload_queued = 1;
}

void api_upload_end(struct api_call *c)
{
    struct api *a = c->api;
    struct api_call **at, *prev = NULL, *next;

    if (c->upload_queued) { /* ended while waiting (api_stop) */
        for (at = &a->upload_head; *at != c; prev = *at, at = &(*at)->upload_next) {
        }
        *at = c->upload_next;
        if (a->upload_tail == c) a->upload_tail = prev;
        c->upload_queued = 0;
        return;
    }
    if (a->upload_owner != c) return;
    a->upload_owner = NULL;
    if ((next = a->upload_head) != NULL) {
        a->upload_head = next->upload_next;
        if (!a->upload_head) a->upload_tail = NULL;
        next->upload_queued = 0;
        a->upload_owner = next;
        lookup(next);
    }
}

/* The upload is hashed: its manifest must describe these bytes; then
 * its turn (upload_turn). */
static void hashed(struct api_call *c)
{
    struct tcpota_manifest m;

    if (c->job_rc < 0) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    /* A client that closed after sending the whole body still has c->req
     * (libevent detaches it from the connection): the upload goes on
     * (docs/api.md). NULL only once the connection itself is freed. */
    if (!c->req) {
        api_reply(c, 500, NULL);
        return;
    }
    sodium_bin2hex(c->img.idhex, sizeof c->img.idhex, c->img.id, TCPOTA_ID_LEN);
    /* take_manifest parsed it already, and checked its size. */
    if (c->img.manifest_len && (tcpota_manifest_parse(c->img.manifest, c->img.manifest_len, &m) < 0 ||
                                memcmp(m.sha256, c->img.id, TCPOTA_ID_LEN) != 0)) {
        api_error(c, 400, "manifest", "the manifest describes other bytes than the %u bytes sent "
                  "(the same size, another SHA-256); send the manifest made for this file (tcpota "
                  "sign writes FILE.manifest)", c->img.size);
        return;
    }
    upload_turn(c);
}

/* POST /v1/images: what the request says is checked on the loop, then the
 * body is taken from it and hashed off the loop (a 64 MiB image: about
 * 40 ms of SHA-256 during which devices are served). */
static void upload(struct api_call *c, const char *query)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t size = evbuffer_get_length(in);
    const char *man = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Tcpota-Manifest");
    int signed_;

    if (api_query(c, query, upload_params, NULL) < 0) return; /* before hashing the body */
    if (http_header_count(c->req, "Tcpota-Manifest") > 1) {
        /* libevent hands over the first, a proxy in front may check the
         * other (a hostile trial: good then bad was taken, bad then good
         * refused): neither is taken, as Authorization twice. */
        api_error(c, 400, "manifest", "the Tcpota-Manifest header is given twice; send it once");
        return;
    }
    if (size == 0 || size > UINT32_MAX || size > c->api->cfg.max_image) {
        /* This server's limit, not the format's 4 GiB (before: "1 byte to
         * 4 GiB", while --max-image allows 64 MiB by default). */
        size_t max = c->api->cfg.max_image;
        char lim[48];

        if (max % (1024 * 1024) == 0) {
            snprintf(lim, sizeof lim, "%zu MiB", max / (1024 * 1024));
        } else {
            snprintf(lim, sizeof lim, "%zu bytes", max);
        }
        api_error(c, 400, "body", "the body %s: it must be the image's bytes, 1 byte to %s "
                  "(this server's --max-image)", size ? "is too large" : "is empty", lim);
        return;
    }
    c->img.size = (uint32_t)size;
    if ((signed_ = take_manifest(c, man, size)) < 0) return;
    if (!signed_ && c->api->cfg.verify) {
        api_error(c, 400, "manifest", "the server has --pubkey keys and takes signed images only: sign "
                  "it with one of them (tcpota sign; tcpota image add then sends FILE.manifest) "
                  "and send its manifest (base64) in the Tcpota-Manifest header");
        return;
    }
    if (take_names(c, query, signed_) < 0) return;
    c->code = 201;
    /* The bytes move (no copy) into the call: the request may end while
     * they are hashed and written. */
    if (!(c->body = evbuffer_new()) || evbuffer_add_buffer(c->body, in) < 0) {
        api_error(c, 500, NULL, "the server is out of memory; try again");
        return;
    }
    api_offload(c, hash_work, hashed);
}

void api_images(struct api_call *c, int method, const char *rest, const char *query)
{
    struct store_req *r;

    if (rest && strchr(rest, '/')) {
        api_error(c, 404, NULL, "no such path /v1/images/%s", rest);
        return;
    }
    if (!rest && method != EVHTTP_REQ_GET && method != EVHTTP_REQ_POST) {
        api_not_allowed(c, "/v1/images", "GET, HEAD, POST");
        return;
    }
    if (rest && method != EVHTTP_REQ_GET && method != EVHTTP_REQ_DELETE) {
        api_not_allowed(c, "/v1/images/{id}", "GET, HEAD, DELETE");
        return;
    }
    if (!(!rest && method == EVHTTP_REQ_POST) &&
        (api_query(c, query, NULL, NULL) < 0 || api_no_body(c) < 0)) return;
    if (!rest && method == EVHTTP_REQ_POST) {
        upload(c, query);
        return;
    }
    if (!rest) {
        if ((r = api_req(c, STORE_IMAGE_LIST)) != NULL) api_submit(c, r, list_done);
        return;
    }
    find_image(c, rest, method == EVHTTP_REQ_DELETE);
}
