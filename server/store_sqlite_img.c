/* store_sqlite_img.c - images in the SQLite store: a row per image, its bytes
 * at DIR/images/<sha256 hex>. Content-addressed, so adding the same bytes
 * twice is the same image, and a file's name says what it must hold. */
#include "store_common.h"
#include "store_sqlite_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMG_COLS "id, version, model, size, manifest, added_at"

static void row_to_image(const struct sstore *st, sqlite3_stmt *s, struct store_image *out)
{
    int n = sqlite3_column_bytes(s, 4);

    memset(out, 0, sizeof(*out));
    sq_col_text(s, 0, out->idhex, sizeof(out->idhex));
    (void)store_unhex(out->idhex, out->id);
    sq_col_text(s, 1, out->version, sizeof(out->version));
    sq_col_text(s, 2, out->model, sizeof(out->model));
    out->size = (uint32_t)sqlite3_column_int64(s, 3);
    if (n > 0 && (size_t)n <= sizeof(out->manifest)) {
        memcpy(out->manifest, sqlite3_column_blob(s, 4), (size_t)n);
        out->manifest_len = (uint16_t)n;
    }
    out->added_at = sqlite3_column_int64(s, 5);
    sq_image_path(st, out->idhex, out->path, sizeof(out->path));
}

int sq_img_load(struct sstore *st, struct store_req *r, const char *hex, struct store_image *out)
{
    sqlite3_stmt *s = sq_prep(st, "SELECT " IMG_COLS " FROM images WHERE id = ?1", "t", hex);
    int rc;

    if (!s) {
        return sq_fail(st, r, "image");
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        row_to_image(st, s, out);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sq_fail(st, r, "image");
}

/* The statement that finds key: "v:<version>" (of model, when given), or an
 * id or a prefix of at least STORE_IMG_PREFIX_MIN hex digits (lowercased in lower). */
static sqlite3_stmt *prep_lookup(struct sstore *st, struct store_req *r, const char *key,
                                 const char *model, char *lower)
{
    if (strncmp(key, "v:", 2) == 0) {
        return model[0] ? sq_prep(st, "SELECT " IMG_COLS " FROM images WHERE version = ?1"
                                  " AND model = ?2 LIMIT 2", "tt", key + 2, model)
                        : sq_prep(st, "SELECT " IMG_COLS " FROM images WHERE version = ?1"
                                  " LIMIT 2", "t", key + 2);
    }
    if (store_image_prefix(r, key, lower) < 0) {
        return NULL;
    }
    /* Every hex digit sorts below 'g': the prefix's range in the primary key. */
    return sq_prep(st, "SELECT " IMG_COLS " FROM images WHERE id >= ?1 AND id < ?1 || 'g'"
                   " LIMIT 2", "t", lower);
}

/* Finds the image r->u.image.img->idhex names, into r->u.image.img-> */
static int lookup(struct sstore *st, struct store_req *r)
{
    char key[2 * TCPOTA_ID_LEN + 3 + TCPOTA_MAX_NAME], lower[2 * TCPOTA_ID_LEN + 1];
    char model[TCPOTA_MAX_NAME + 1];
    sqlite3_stmt *s;
    int rc, n = 0;

    snprintf(key, sizeof(key), "%s", r->u.image.img->idhex);
    snprintf(model, sizeof(model), "%s", r->u.image.img->model);
    s = prep_lookup(st, r, key, model, lower);
    if (!s) {
        return r->rc < 0 ? r->rc : sq_fail(st, r, "image");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < 2) {
        if (n++ == 0) {
            row_to_image(st, s, r->u.image.img);
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return sq_fail(st, r, "image");
    }
    return store_image_matches(r, n, key);
}

int sq_op_image_get(struct sstore *st, struct store_req *r)
{
    return lookup(st, r);
}

/* Makes a rename in DIR/images durable (the row will name the file). */
static int sync_images_dir(const struct sstore *st)
{
    char path[512];
    int fd, rc;

    snprintf(path, sizeof(path), "%s/images", st->dir);
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* CONFLICT when another image of the new one's model has its version
 * (store_version_taken): the API checked before the upload was written;
 * this store has one writer, and checks again as PostgreSQL's must. */
static int version_free(struct sstore *st, struct store_req *r, const char *hex)
{
    sqlite3_stmt *s = sq_prep(st, "SELECT " IMG_COLS " FROM images WHERE model = ?1 AND id <> ?2",
                              "tt", r->u.image.img->model, hex);
    struct store_image other;
    char msg[STORE_ERR_MAX];
    int rc, taken = 0;

    if (!s) {
        return sq_fail(st, r, "image add");
    }
    while (!taken && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        row_to_image(st, s, &other);
        taken = store_version_taken(&other, r->u.image.img, msg, sizeof(msg));
    }
    sqlite3_reset(s);
    if (taken) {
        return store_err_set(r, STORE_E_CONFLICT, "%s", msg);
    }
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(st, r, "image add");
}

int sq_op_image_add(struct sstore *st, struct store_req *r)
{
    struct store_image *img = r->u.image.img;
    const char *tmp = r->u.image.path;
    char hex[2 * TCPOTA_ID_LEN + 1], path[sizeof(img->path)];
    int rc;

    store_hex(img->id, hex);
    sq_image_path(st, hex, path, sizeof(path));
    r->u.image.added = 0;
    rc = sq_img_load(st, r, hex, img);
    if (rc != 0) {
        /* The same bytes again: the stored image stands. */
        if (rc > 0 && strcmp(tmp, path) != 0) {
            (void)unlink(tmp);
        }
        return rc < 0 ? rc : STORE_OK;
    }
    if ((rc = version_free(st, r, hex)) < 0) {
        return rc;
    }
    if (strcmp(tmp, path) != 0 && rename(tmp, path) != 0) {
        return store_err_set(r, STORE_E_IO, "cannot move %s to %s: %s", tmp, path, strerror(errno));
    }
    if (sync_images_dir(st) != 0) {
        return store_err_set(r, STORE_E_IO, "cannot sync %s/images: %s", st->dir, strerror(errno));
    }
    if (sq_run(st, "INSERT INTO images (id, version, model, size, manifest, added_at)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", "tttibi", hex, img->version, img->model,
               (int64_t)img->size, (const void *)img->manifest, (int)img->manifest_len,
               r->now) != SQLITE_DONE) {
        return sq_fail(st, r, "image add");
    }
    memcpy(img->idhex, hex, sizeof(hex));
    memcpy(img->path, path, sizeof(path));
    img->added_at = r->now;
    r->u.image.added = 1;
    return STORE_OK;
}

/* CONFLICT naming the rollouts (not cancelled) that use the image, if any. */
static int check_unused(struct sstore *st, struct store_req *r, const char *hex)
{
    struct store_users u = {0};
    sqlite3_stmt *s;
    int rc;

    s = sq_prep(st, "SELECT id, state, superseded FROM rollouts WHERE image = ?1 AND state <> ?2"
                " ORDER BY superseded, id DESC",
                "ti", hex, (int64_t)ROLLOUT_STATE_CANCELLED);
    if (!s) {
        return sq_fail(st, r, "image rm");
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_users_add(&u, (long long)sqlite3_column_int64(s, 0),
                        (enum rollout_state)sqlite3_column_int(s, 1), sqlite3_column_int(s, 2));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        return sq_fail(st, r, "image rm");
    }
    return store_users_conflict(r, hex, &u);
}

int sq_op_image_rm(struct sstore *st, struct store_req *r)
{
    int rc;

    if ((rc = lookup(st, r)) < 0 || (rc = check_unused(st, r, r->u.image.img->idhex)) < 0) {
        return rc;
    }
    /* The file goes after the commit (store_sqlite.c), never before its row. */
    if (sq_run(st, "DELETE FROM images WHERE id = ?1", "t", r->u.image.img->idhex) !=
        SQLITE_DONE) {
        return sq_fail(st, r, "image rm");
    }
    return STORE_OK;
}

int sq_op_image_list(struct sstore *st, struct store_req *r)
{
    size_t limit = r->u.list.limit ? r->u.list.limit : STORE_LIST_MAX, cap = 0;
    struct store_image *rows = NULL, *grown;
    sqlite3_stmt *s;
    int rc;

    s = sq_prep(st, "SELECT " IMG_COLS " FROM images ORDER BY added_at DESC, rowid DESC"
                " LIMIT ?1", "i", (int64_t)limit);
    if (!s) {
        return sq_fail(st, r, "image list");
    }
    r->u.list.n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!(grown = store_grow(rows, &cap, r->u.list.n, sizeof(*rows)))) {
            break;
        }
        rows = grown;
        row_to_image(st, s, &rows[r->u.list.n++]);
    }
    sqlite3_reset(s);
    r->u.list.rows = rows;
    r->u.list.total = r->u.list.n;
    if (rc != SQLITE_DONE) {
        return rc == SQLITE_ROW ? store_err_set(r, STORE_E_IO, "out of memory")
                                : sq_fail(st, r, "image list");
    }
    return STORE_OK;
}
