/* store_pg_img.c - images in the PostgreSQL store. The rows are the SQLite
 * store's; the bytes live in the database too (image_chunks, PG_CHUNK bytes
 * a row), so that every node can serve every image: a node that lacks one
 * fetches it once into its cache, DIR/images/<sha256 hex>, checks that the
 * bytes hash to their name, and from then on serves the file (sendfile, the
 * image cache of fleet.c) as a single server would. Content-addressed: a
 * cached file never goes stale, and nodes never need to agree on files. */
#include "store_common.h"
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */
#include "digest.h"
#include "fleet_files.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMG_COLS "id, version, model, size, manifest, added_at"
#define PG_CHUNK (256u * 1024u)    /* image bytes a row of image_chunks holds */

static void row_to_image(const struct pgstore *st, const PGresult *res, int i,
                         struct store_image *out)
{
    int n;

    memset(out, 0, sizeof(*out));
    pg_col_text(res, i, 0, out->idhex, sizeof(out->idhex));
    (void)store_unhex(out->idhex, out->id);
    pg_col_text(res, i, 1, out->version, sizeof(out->version));
    pg_col_text(res, i, 2, out->model, sizeof(out->model));
    out->size = (uint32_t)pg_col_i64(res, i, 3);
    n = PQgetisnull(res, i, 4) ? 0 : pg_col_bytea(res, i, 4, out->manifest, sizeof(out->manifest));
    out->manifest_len = (uint16_t)(n > 0 ? n : 0);
    out->added_at = pg_col_i64(res, i, 5);
    pg_image_path(st, out->idhex, out->path, sizeof(out->path));
}

int pg_img_load(struct pgstore *st, struct store_req *r, const char *hex, struct store_image *out)
{
    PGresult *res = pg_q(st, r, "image", "SELECT " IMG_COLS " FROM images WHERE id = $1", "t",
                         hex);
    int found;

    if (!res) {
        return r->rc;
    }
    if ((found = PQntuples(res) > 0)) {
        row_to_image(st, res, 0, out);
    }
    PQclear(res);
    return found;
}

/* ---- the local cache ---- */

/* Writes all n bytes of buf to fd. Returns 0, or -1 with errno: a short
 * write is written on until the next one says why (a full disk was said
 * "Resource temporarily unavailable", a stale errno: a trial). */
static int write_all(int fd, const uint8_t *buf, size_t n)
{
    while (n) {
        ssize_t k = write(fd, buf, n);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            if (k == 0) errno = ENOSPC;
            return -1;
        }
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Writes the image's chunks to fd, hashing them; STORE_OK when they are
 * img->size bytes hashing to img->id. */
static int fetch_to(struct pgstore *st, struct store_req *r, const struct store_image *img, int fd)
{
    struct digest h;
    uint8_t *buf = malloc(PG_CHUNK), got[TCPOTA_ID_LEN];
    uint64_t total = 0;
    int64_t n;
    int rc = STORE_OK, len;

    if (!buf || digest_init(&h) < 0) {
        free(buf);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (n = 0; rc == STORE_OK && total < img->size; n++) {
        PGresult *res = pg_q(st, r, "image fetch", "SELECT bytes FROM image_chunks WHERE"
                             " image_id = $1 AND n = $2", "ti", img->idhex, n);
        if (!res) {
            rc = r->rc;
            break;
        }
        len = PQntuples(res) ? pg_col_bytea(res, 0, 0, buf, PG_CHUNK) : -1;
        PQclear(res);
        if (len <= 0 || write_all(fd, buf, (size_t)len) < 0) {
            rc = store_err_set(r, STORE_E_IO, "image %.12s: %s", img->idhex, len <= 0
                               ? "its bytes in the database are missing or damaged"
                               : strerror(errno));
            break;
        }
        digest_update(&h, buf, (size_t)len);
        total += (uint64_t)len;
    }
    free(buf);
    if (digest_final(&h, got) < 0 && rc == STORE_OK) {
        rc = store_err_set(r, STORE_E_IO, "out of memory");
    }
    if (rc == STORE_OK && (total != img->size || memcmp(got, img->id, TCPOTA_ID_LEN) != 0)) {
        rc = store_err_set(r, STORE_E_IO, "image %.12s: the bytes in the database do not hash"
                           " to its id (%llu bytes of %u); cancel its rollouts, remove it (tcpota"
                           " image rm) and add it again", img->idhex,
                           (unsigned long long)total, (unsigned)img->size);
    }
    return rc;
}

int pg_img_cache(struct pgstore *st, struct store_req *r, const struct store_image *img)
{
    char tmp[sizeof(img->path) + 16];
    struct stat sb;
    int fd, rc;

    /* Of the image's size: kept (fleet.c removes a copy that does not load
     * or hash right); else, cut short or grown, fetched again over it. */
    if (stat(img->path, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == img->size) {
        return STORE_OK;
    }
    snprintf(tmp, sizeof(tmp), "%s/" FLEET_IMAGES_DIR "/" FLEET_FETCH_PREFIX "XXXXXX", st->dir);
    if ((fd = mkstemp(tmp)) < 0) {
        return store_err_set(r, STORE_E_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    rc = fetch_to(st, r, img, fd);
    if (rc == STORE_OK && fsync(fd) != 0) {
        rc = store_err_set(r, STORE_E_IO, "cannot sync %s: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rc == STORE_OK && rename(tmp, img->path) != 0) {
        rc = store_err_set(r, STORE_E_IO, "cannot move %s to %s: %s", tmp, img->path,
                           strerror(errno));
    }
    if (rc != STORE_OK) {
        (void)unlink(tmp);
    }
    return rc;
}

/* ---- the API's operations ---- */

/* The rows key names: "v:<version>" (of model, when given), or an id or a
 * prefix of at least STORE_IMG_PREFIX_MIN hex digits. NULL with r's error. */
static PGresult *query_lookup(struct pgstore *st, struct store_req *r, const char *key,
                              const char *model)
{
    char lower[2 * TCPOTA_ID_LEN + 1];

    if (strncmp(key, "v:", 2) == 0) {
        return pg_q(st, r, "image", "SELECT " IMG_COLS " FROM images WHERE version = $1"
                    " AND ($2 = '' OR model = $2) LIMIT 2", "tt", key + 2, model);
    }
    if (store_image_prefix(r, key, lower) < 0) {
        return NULL;
    }
    /* Hex digits hold no LIKE wildcard: the prefix's range in the key. */
    return pg_q(st, r, "image", "SELECT " IMG_COLS " FROM images WHERE id LIKE $1 || '%'"
                " LIMIT 2", "t", lower);
}

static int lookup(struct pgstore *st, struct store_req *r)
{
    char key[2 * TCPOTA_ID_LEN + 3 + TCPOTA_MAX_NAME], model[TCPOTA_MAX_NAME + 1];
    PGresult *res;
    int n;

    snprintf(key, sizeof(key), "%s", r->u.image.img->idhex);
    snprintf(model, sizeof(model), "%s", r->u.image.img->model);
    if (!(res = query_lookup(st, r, key, model))) {
        return r->rc;
    }
    if ((n = PQntuples(res)) == 1) {
        row_to_image(st, res, 0, r->u.image.img);
    }
    PQclear(res);
    return store_image_matches(r, n, key);
}

int pg_op_image_get(struct pgstore *st, struct store_req *r)
{
    return lookup(st, r);
}

/* The upload's bytes into image_chunks. */
static int store_bytes(struct pgstore *st, struct store_req *r, const char *hex, const char *path)
{
    uint8_t *buf = malloc(PG_CHUNK);
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = STORE_OK;
    ssize_t got;
    int64_t n;

    if (!buf || fd < 0) {
        rc = store_err_set(r, STORE_E_IO, "image add: cannot read %s: %s", path,
                           !buf ? "out of memory" : strerror(errno));
    }
    for (n = 0; rc == STORE_OK; n++) {
        size_t len = 0;
        while (len < PG_CHUNK && (got = read(fd, buf + len, PG_CHUNK - len)) > 0) {
            len += (size_t)got;
        }
        if (len == 0) {
            break;
        }
        rc = pg_run(st, r, "image add", "INSERT INTO image_chunks (image_id, n, bytes)"
                    " VALUES ($1, $2, $3)", "tib", hex, n, (const void *)buf, (int)len);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(buf);
    return rc;
}

/* CONFLICT when another image of the new one's model has its version
 * (store_version_taken). Adds of one model take turns across nodes (an
 * advisory lock to the commit): each node's API checked the version before
 * the upload, and two nodes adding other bytes as one version at the same
 * moment both passed that check and both stored theirs. */
static int version_free(struct pgstore *st, struct store_req *r, const char *hex)
{
    struct store_image other;
    char msg[STORE_ERR_MAX];
    PGresult *res;
    int i, taken = 0;

    if (pg_lock_xact(st, r, "image add", PG_IMAGE_ADD_LOCK, r->u.image.img->model) < 0 ||
        !(res = pg_q(st, r, "image add", "SELECT " IMG_COLS " FROM images WHERE model = $1"
                     " AND id <> $2", "tt", r->u.image.img->model, hex))) {
        return r->rc;
    }
    for (i = 0; i < PQntuples(res) && !taken; i++) {
        row_to_image(st, res, i, &other);
        taken = store_version_taken(&other, r->u.image.img, msg, sizeof(msg));
    }
    PQclear(res);
    return taken ? store_err_set(r, STORE_E_CONFLICT, "%s", msg) : STORE_OK;
}

int pg_op_image_add(struct pgstore *st, struct store_req *r)
{
    struct store_image *img = r->u.image.img;
    const char *tmp = r->u.image.path;
    char hex[2 * TCPOTA_ID_LEN + 1];
    int rc;

    store_hex(img->id, hex);
    r->u.image.added = 0;
    if ((rc = version_free(st, r, hex)) < 0) {
        return rc;
    }
    /* Another node adding the same bytes at the same moment: one row. */
    if ((rc = pg_run(st, r, "image add", "INSERT INTO images (id, version, model, size, manifest,"
                     " added_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                     "tttibi", hex, img->version, img->model, (int64_t)img->size,
                     (const void *)img->manifest, (int)img->manifest_len, r->now)) < 0) {
        return rc;
    }
    r->u.image.added = st->changes == 1;
    if (r->u.image.added && (rc = store_bytes(st, r, hex, tmp)) < 0) {
        return rc;
    }
    /* The stored image's row (the first add's, when these bytes were there);
     * its upload moves into the cache after the commit (store_pg.c). */
    rc = pg_img_load(st, r, hex, img);
    return rc < 0 ? rc : rc == 0 ? store_err_set(r, STORE_E_IO, "image add: %s vanished", hex)
                                 : STORE_OK;
}

/* CONFLICT naming the rollouts (not cancelled) that use the image, if any. */
static int check_unused(struct pgstore *st, struct store_req *r, const char *hex)
{
    struct store_users u = {0};
    PGresult *res;
    int i;

    res = pg_q(st, r, "image rm", "SELECT id, state, superseded FROM rollouts WHERE image = $1"
               " AND state <> $2 ORDER BY superseded, id DESC", "ti", hex,
               (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!res) {
        return r->rc;
    }
    for (i = 0; i < PQntuples(res); i++) {
        store_users_add(&u, (long long)pg_col_i64(res, i, 0),
                        (enum rollout_state)pg_col_i64(res, i, 1), (int)pg_col_i64(res, i, 2));
    }
    PQclear(res);
    return store_users_conflict(r, hex, &u);
}

int pg_op_image_rm(struct pgstore *st, struct store_req *r)
{
    int rc;

    /* The image's lock first (PG_IMAGE_USE_LOCK, to the commit): a rollout
     * another node is creating of it, not committed yet, is then seen (a
     * trial: both succeeded, leaving an active rollout of a removed image). */
    if ((rc = lookup(st, r)) < 0 ||
        pg_lock_xact(st, r, "image rm", PG_IMAGE_USE_LOCK, r->u.image.img->idhex) < 0 ||
        (rc = check_unused(st, r, r->u.image.img->idhex)) < 0) {
        return rc < 0 ? rc : r->rc;
    }
    /* Its chunks go with it (ON DELETE CASCADE); this node's cached file
     * after the commit (store_pg.c); another node's copy is never served
     * again, as no row names it. */
    return pg_run(st, r, "image rm", "DELETE FROM images WHERE id = $1", "t",
                  r->u.image.img->idhex);
}

int pg_op_image_list(struct pgstore *st, struct store_req *r)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX;
    struct store_image *rows;
    PGresult *res;
    int i, n;

    res = pg_q(st, r, "image list", "SELECT " IMG_COLS " FROM images ORDER BY added_at DESC,"
               " seq DESC LIMIT $1", "i", (int64_t)limit);
    if (!res) {
        return r->rc;
    }
    n = PQntuples(res);
    if (!(rows = calloc(n ? (size_t)n : 1, sizeof(*rows)))) {
        PQclear(res);
        return store_err_set(r, STORE_E_IO, "out of memory");
    }
    for (i = 0; i < n; i++) {
        row_to_image(st, res, i, &rows[i]);
    }
    PQclear(res);
    r->u.list.rows = rows;
    r->u.list.n = r->u.list.total = (size_t)n;
    return STORE_OK;
}
