/* store_sqlite_sql.c - the small helpers every op of the SQLite store uses:
 * a cache of prepared statements (a check-in runs a dozen statements; preparing
 * them each time would cost more than running them), binding from a format,
 * columns, hex ids, error messages. */
#include "store_sqlite_internal.h"
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The cached statement for sql, prepared on first use. Keyed by the text's
 * address first (the SQL strings are literals: one pass of pointer
 * compares finds nearly every one), then by its contents. */
static sqlite3_stmt *cache_get(struct sstore *st, const char *sql)
{
    struct sq_cached *c;
    sqlite3_stmt *s = NULL;
    size_t i;

    for (i = 0; i < st->ncache; i++) {
        if (st->cache[i].sql == sql) {
            return st->cache[i].stmt;
        }
    }
    for (i = 0; i < st->ncache; i++) {
        if (strcmp(st->cache[i].sql, sql) == 0) {
            return st->cache[i].stmt;
        }
    }
    if (st->ncache == st->capcache) {
        size_t cap = st->capcache ? 2 * st->capcache : 32;
        c = realloc(st->cache, cap * sizeof(*c));
        if (!c) {
            return NULL;
        }
        st->cache = c;
        st->capcache = cap;
    }
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK) {
        return NULL;
    }
    st->cache[st->ncache].sql = sql;
    st->cache[st->ncache].stmt = s;
    st->ncache++;
    return s;
}

static int bind_v(sqlite3_stmt *s, const char *fmt, va_list ap)
{
    int i, rc = SQLITE_OK;

    for (i = 1; fmt && *fmt && rc == SQLITE_OK; fmt++, i++) {
        if (*fmt == 'i') {
            rc = sqlite3_bind_int64(s, i, va_arg(ap, int64_t));
        } else if (*fmt == 't') {
            const char *t = va_arg(ap, const char *);
            rc = t ? sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
        } else if (*fmt == 'b') {
            const void *p = va_arg(ap, const void *);
            int n = va_arg(ap, int);
            rc = sqlite3_bind_blob(s, i, p, n, SQLITE_TRANSIENT);
        } else {
            rc = SQLITE_MISUSE; /* a typo in a format must not read the wrong argument */
        }
    }
    return rc;
}

static sqlite3_stmt *prep_v(struct sstore *st, const char *sql, const char *fmt, va_list ap)
{
    sqlite3_stmt *s = cache_get(st, sql);

    if (!s) {
        return NULL;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (bind_v(s, fmt, ap) != SQLITE_OK) {
        return NULL;
    }
    return s;
}

sqlite3_stmt *sq_prep(struct sstore *st, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *s;
    va_list ap;

    va_start(ap, fmt);
    s = prep_v(st, sql, fmt, ap);
    va_end(ap);
    return s;
}

int sq_run(struct sstore *st, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *s;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    s = prep_v(st, sql, fmt, ap);
    va_end(ap);
    if (!s) {
        return SQLITE_ERROR;
    }
    rc = sqlite3_step(s);
    /* Reset keeps the error visible through sqlite3_errmsg() for sq_fail(). */
    sqlite3_reset(s);
    return rc;
}

int sq_int(struct sstore *st, int64_t *out, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *s;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    s = prep_v(st, sql, fmt, ap);
    va_end(ap);
    if (!s) {
        return -1;
    }
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

void sq_cache_free(struct sstore *st)
{
    size_t i;

    for (i = 0; i < st->ncache; i++) {
        sqlite3_finalize(st->cache[i].stmt);
    }
    free(st->cache);
    st->cache = NULL;
    st->ncache = st->capcache = 0;
}

void sq_col_text(sqlite3_stmt *s, int i, char *buf, size_t size)
{
    (void)text_copy(buf, size, (const char *)sqlite3_column_text(s, i));
}

int sq_fail(struct sstore *st, struct store_req *r, const char *what)
{
    /* Not "the database failed": whoever reports STORE_E_IO says so
     * (server/api.c), and the phrase came out twice. */
    return store_err_set(r, STORE_E_IO, "%s: %s", what, sq_why(st));
}

const char *sq_why(struct sstore *st)
{
    if ((sqlite3_errcode(st->db) & 0xff) != SQLITE_FULL) {
        return sqlite3_errmsg(st->db);
    }
    snprintf(st->why, sizeof(st->why), "disk full: free space on the disk holding %s (SQLite: %s)",
             st->dir, sqlite3_errmsg(st->db));
    return st->why;
}

int sq_missing(struct sstore *st, struct store_req *r, const char *id, int step)
{
    if (!st->commit_failed) {
        return store_err_set(r, STORE_E_NOTFOUND, STORE_NO_DEVICE "%s", id);
    }
    /* A step follows its device's check-in: the row was there, and went
     * with the COMMIT (the line that logged it says what was lost). */
    if (step) {
        return store_err_set(r, STORE_E_NOTFOUND, "device %s is not recorded: its check-in"
                             " went with the commit that failed", id);
    }
    return store_err_set(r, STORE_E_NOTFOUND, "no device %s; the last commit failed (%s): a"
                         " device that checked in just before it is missing until its next"
                         " check-in", id, st->failed_why);
}

void sq_image_path(const struct sstore *st, const char *hex, char *out, size_t size)
{
    snprintf(out, size, "%s/images/%s", st->dir, hex);
}
