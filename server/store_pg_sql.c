/* store_pg_sql.c - the small helpers every op of the PostgreSQL store uses:
 * statements prepared once per connection (a check-in runs a dozen; parsing
 * and planning them each time would cost more than running them),
 * parameters from a format, columns of a text-format result, errors. */
#include "store_pg_internal.h"
#include "pq_dl.h" /* libpq through pq_load()'s pointers */

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_PARAMS_MAX 16 /* parameters one statement of ours binds at most */
#define PG_INT_TEXT 24   /* an int64 in decimal, with sign and NUL */

void pg_answered(struct pgstore *st)
{
    /* A statement that failed for a connection cut under it (the loop's
     * --db-timeout cut of a hung database) is no answer: counted as one,
     * the node said "the database answers again" and /health 200 while it
     * still hung (a trial). */
    if (PQstatus(st->db) != CONNECTION_OK) {
        return;
    }
    atomic_store(&st->answered_ms, (long long)pg_mono_ms());
    atomic_store(&st->stmt_ms, (long long)pg_mono_ms());
    store_note_answer(1); /* a fetch of many chunks is no hung database (a trial) */
}

/* Parameters as libpq takes them: int64s printed in place, bytea binary. */
struct params {
    int n;
    const char *values[PG_PARAMS_MAX];
    int lengths[PG_PARAMS_MAX];
    int formats[PG_PARAMS_MAX];
    char ints[PG_PARAMS_MAX][PG_INT_TEXT];
};

/* 0, or -1 on a format this file does not know (a typo must not read the
 * wrong argument) or too many parameters. */
static int fill_params(struct params *p, const char *fmt, va_list ap)
{
    memset(p, 0, sizeof(*p));
    for (; fmt && *fmt; fmt++, p->n++) {
        if (p->n == PG_PARAMS_MAX) {
            return -1;
        }
        if (*fmt == 'i') {
            snprintf(p->ints[p->n], PG_INT_TEXT, "%lld", (long long)va_arg(ap, int64_t));
            p->values[p->n] = p->ints[p->n];
        } else if (*fmt == 't') {
            p->values[p->n] = va_arg(ap, const char *);
        } else if (*fmt == 'b') {
            p->values[p->n] = va_arg(ap, const void *);
            p->lengths[p->n] = va_arg(ap, int);
            p->formats[p->n] = 1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* The name of sql's prepared statement, preparing it on first use; NULL
 * with r's error written when the server refused it. */
static const char *cached(struct pgstore *st, struct store_req *r, const char *what,
                          const char *sql)
{
    struct pg_cached *c;
    PGresult *res;
    size_t i;

    for (i = 0; i < st->ncache; i++) {
        if (st->cache[i].sql == sql || strcmp(st->cache[i].sql, sql) == 0) {
            return st->cache[i].name;
        }
    }
    if (st->ncache == st->capcache) {
        size_t cap = st->capcache ? 2 * st->capcache : 32;
        if (!(c = realloc(st->cache, cap * sizeof(*c)))) {
            store_err_set(r, STORE_E_IO, "%s: out of memory", what);
            return NULL;
        }
        st->cache = c;
        st->capcache = cap;
    }
    c = &st->cache[st->ncache];
    snprintf(c->name, sizeof(c->name), "s%u", ++st->next_stmt);
    res = PQprepare(st->db, c->name, sql, 0, NULL);
    pg_answered(st);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_err_set(r, STORE_E_IO, "%s: %s", what,
                      PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                          ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                          : PQerrorMessage(st->db));
        PQclear(res);
        return NULL;
    }
    PQclear(res);
    c->sql = sql;
    st->ncache++;
    return c->name;
}

/* r's error from a failed result; a serialization failure or a deadlock
 * (SQLSTATE class 40) marks the transaction for a rerun (store_pg.c). */
static void fail(struct pgstore *st, struct store_req *r, const char *what, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char conn[STORE_ERR_MAX];

    if (state && strncmp(state, "40", 2) == 0) {
        st->rerun = 1;
    }
    if (!msg) {
        snprintf(conn, sizeof(conn), "%s", PQerrorMessage(st->db));
        conn[strcspn(conn, "\n")] = '\0';
        msg = conn;
    }
    /* Not "the database failed": whoever reports STORE_E_IO says so
     * (server/api.c), as for SQLite (sq_fail). A lock_timeout's (55P03,
     * lock_not_available) says what it waited for (a review: a create
     * behind another node's create of the model said only "canceling
     * statement due to lock timeout"). */
    store_err_set(r, STORE_E_IO, "%s: %s%s", what, msg,
                  state && strcmp(state, "55P03") == 0
                      ? " (another transaction, another node's or an operator's session, held"
                        " what this one needed past lock_timeout; try again)"
                      : "");
}

/* Runs sql with p: prepared once and cached, or (once) planned with the
 * parameters' values each time. */
static PGresult *exec_p(struct pgstore *st, struct store_req *r, const char *what, int once,
                        const char *sql, const struct params *p)
{
    const char *name;
    PGresult *res;
    ExecStatusType s;

    if (once) {
        res = PQexecParams(st->db, sql, p->n, NULL, p->values, p->lengths, p->formats, 0);
    } else if (!(name = cached(st, r, what, sql))) {
        return NULL;
    } else {
        res = PQexecPrepared(st->db, name, p->n, p->values, p->lengths, p->formats, 0);
    }
    pg_answered(st);
    s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        fail(st, r, what, res);
        PQclear(res);
        return NULL;
    }
    return res;
}

static PGresult *query_v(struct pgstore *st, struct store_req *r, const char *what,
                         const char *sql, const char *fmt, va_list ap)
{
    struct params p;

    if (fill_params(&p, fmt, ap) != 0) {
        store_err_set(r, STORE_E_INVAL, "%s: bad parameter format \"%s\"", what, fmt);
        return NULL;
    }
    return exec_p(st, r, what, 0, sql, &p);
}

PGresult *pg_q(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
               const char *fmt, ...)
{
    PGresult *res;
    va_list ap;

    va_start(ap, fmt);
    res = query_v(st, r, what, sql, fmt, ap);
    va_end(ap);
    return res;
}

/* pg_run's answer for res (cleared here; NULL: the statement failed). */
static int ran(struct pgstore *st, struct store_req *r, PGresult *res)
{
    if (!res) {
        return r->rc < 0 ? r->rc : STORE_E_IO;
    }
    st->changes = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return STORE_OK;
}

int pg_run(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
           const char *fmt, ...)
{
    PGresult *res;
    va_list ap;

    va_start(ap, fmt);
    res = query_v(st, r, what, sql, fmt, ap);
    va_end(ap);
    return ran(st, r, res);
}

int pg_lock_xact(struct pgstore *st, struct store_req *r, const char *what, int64_t key,
                 const char *name)
{
    return pg_run(st, r, what, "SELECT pg_advisory_xact_lock($1, hashtext($2))", "it", key, name);
}

int pg_run_once(struct pgstore *st, struct store_req *r, const char *what, const char *sql,
                const char *text)
{
    struct params p;

    memset(&p, 0, sizeof(p));
    p.n = 1;
    p.values[0] = text;
    return ran(st, r, exec_p(st, r, what, 1, sql, &p));
}

int pg_int(struct pgstore *st, struct store_req *r, const char *what, int64_t *out,
           const char *sql, const char *fmt, ...)
{
    PGresult *res;
    va_list ap;
    int found;

    va_start(ap, fmt);
    res = query_v(st, r, what, sql, fmt, ap);
    va_end(ap);
    if (!res) {
        return r->rc < 0 ? r->rc : STORE_E_IO;
    }
    found = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
    if (found) {
        *out = pg_col_i64(res, 0, 0);
    }
    PQclear(res);
    return found;
}

int pg_exec(struct pgstore *st, struct store_req *r, const char *sql)
{
    PGresult *res = PQexec(st->db, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok && r) {
        fail(st, r, sql, res);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int pg_begin(struct pgstore *st, struct store_req *r, int durable, int reads)
{
    /* One query string: the transaction block BEGIN opens lasts past it.
     * READ COMMITTED whatever the database's default: a statement after a
     * wait (an image add's version check behind its model's advisory lock,
     * a rollout's compare-and-set behind the row) must see what the
     * transaction it waited for committed (a review: under REPEATABLE READ
     * two nodes could store other bytes as one version). */
#define PG_BEGIN "BEGIN ISOLATION LEVEL READ COMMITTED"
    static const char *const sql[2][2] = {
        {PG_BEGIN "; SET LOCAL synchronous_commit TO off; SELECT txid_current(), pg_backend_pid()",
         PG_BEGIN "; SELECT txid_current(), pg_backend_pid()"},
        {PG_BEGIN "; SET LOCAL synchronous_commit TO off", PG_BEGIN}};
#undef PG_BEGIN
    PGresult *res = PQexec(st->db, sql[reads != 0][durable != 0]);
    int ok;

    pg_answered(st);
    ok = reads ? PQresultStatus(res) == PGRES_COMMAND_OK
               : PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
    st->xid = ok && !reads ? pg_col_i64(res, 0, 0) : 0;
    st->xid_pid = ok && !reads ? (int)pg_col_i64(res, 0, 1) : 0;
    if (!ok) {
        fail(st, r, "BEGIN", res);
    }
    PQclear(res);
    return ok ? 0 : -1;
}

int pg_commit(struct pgstore *st, struct store_req *r, int sent)
{
    PGresult *res = sent ? PQgetResult(st->db) : PQexec(st->db, "COMMIT"), *more;
    int rc = 0;

    pg_answered(st);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        /* The server's refusals carry an SQLSTATE; libpq's own failures do
         * not, and only a broken connection leaves the answer unknown (out
         * of memory, say, is a failure to roll back). */
        rc = res && PQresultErrorField(res, PG_DIAG_SQLSTATE) ? -1
             : PQstatus(st->db) != CONNECTION_OK              ? -2
                                                               : -1;
        if (rc == -1) {
            fail(st, r, "COMMIT", res);
        }
    }
    PQclear(res);
    while (sent && (more = PQgetResult(st->db))) {
        PQclear(more);
    }
    return rc;
}

void pg_cache_reset(struct pgstore *st)
{
    st->ncache = 0;
}

void pg_cache_free(struct pgstore *st)
{
    free(st->cache);
    st->cache = NULL;
    st->ncache = st->capcache = 0;
}

int64_t pg_col_i64(const PGresult *res, int i, int c)
{
    const char *v = PQgetvalue(res, i, c);

    /* Booleans come as "t"/"f" (EXISTS, comparisons). */
    if (v[0] == 't' || v[0] == 'f') {
        return v[0] == 't';
    }
    return strtoll(v, NULL, 10);
}

void pg_col_text(const PGresult *res, int i, int c, char *buf, size_t size)
{
    snprintf(buf, size, "%s", PQgetvalue(res, i, c));
}

int pg_col_bytea(const PGresult *res, int i, int c, uint8_t *buf, size_t size)
{
    const char *v = PQgetvalue(res, i, c);
    size_t len = (size_t)PQgetlength(res, i, c), n, k;

    /* The server's bytea_output is "hex" since PostgreSQL 9.0: \x then digits. */
    if (len < 2 || v[0] != '\\' || v[1] != 'x' || len % 2 != 0 || (n = (len - 2) / 2) > size) {
        return -1;
    }
    if (sodium_hex2bin(buf, size, v + 2, len - 2, NULL, &k, NULL) != 0 || k != n) {
        return -1;
    }
    return (int)n;
}

void pg_image_path(const struct pgstore *st, const char *hex, char *out, size_t size)
{
    snprintf(out, size, "%s/images/%s", st->dir, hex);
}

/* Appends len bytes of s; 0, or -1 out of memory. */
static int array_put(struct pg_array *a, const char *s, size_t len)
{
    char *grown;

    if (a->len + len + 1 > a->cap) {
        size_t want = 2 * (a->len + len + 1);
        if (!(grown = realloc(a->buf, want))) {
            return -1;
        }
        a->buf = grown;
        a->cap = want;
    }
    memcpy(a->buf + a->len, s, len);
    a->len += len;
    a->buf[a->len] = '\0';
    return 0;
}

int pg_array_add(struct pg_array *a, const char *elem)
{
    int rc = array_put(a, a->n ? ",\"" : "{\"", 2);

    for (; *elem && rc == 0; elem++) {
        if (*elem == '"' || *elem == '\\') {
            rc = array_put(a, "\\", 1);
        }
        rc = rc ? rc : array_put(a, elem, 1);
    }
    rc = rc ? rc : array_put(a, "\"", 1);
    a->n++;
    return rc;
}

const char *pg_array_end(struct pg_array *a)
{
    int rc = a->n ? array_put(a, "}", 1) : array_put(a, "{}", 2);

    a->len = 0;
    a->n = 0;
    return rc ? NULL : a->buf;
}

void pg_array_free(struct pg_array *a)
{
    free(a->buf);
    a->buf = NULL;
    a->len = a->cap = a->n = 0;
}
