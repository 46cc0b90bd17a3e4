/* store_pg_conninfo.c - --db as libpq reads it (store_pg.h): a connection
 * string it cannot take told apart from a database it cannot reach, and
 * libpq's reason said without the password the string may hold. */
#include "store_pg.h"

#include <ctype.h>
#include "pq_dl.h" /* libpq through pq_load()'s pointers */
#include <stdio.h>
#include <string.h>

/* The passwords a string may give as written, pieces of it; at most this
 * many (a URI's user info, and the password keywords after it). */
#define SECRETS_MAX 4

struct secret {
    const char *at;
    size_t len;
};

/* The length of s's URI prefix (libpq's two), or 0. */
static size_t uri_prefix(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 ? 13 : strncmp(s, "postgres://", 11) == 0 ? 11 : 0;
}

/* libpq takes its dbname as a connection string when it holds '=' or
 * starts with a URI prefix (fe-connect.c, recognized_connection_string);
 * else as a database's name, which has nothing to parse. */
static int is_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || uri_prefix(s) > 0;
}

/* The value of a "password" keyword at v (after its '='), as written: a
 * quoted value to its closing quote; else to '&' (a URI's query) or to a
 * space, and on over the words after it that hold no '=' (an unquoted
 * password with a space: libpq reads its second word as a keyword and
 * echoes it, "missing "=" after "..."). */
static struct secret keyword_value(const char *v)
{
    struct secret s = {v, 0};

    if (*v == '\'') {
        const char *e = v + 1;
        while (*e && *e != '\'') e += e[0] == '\\' && e[1] ? 2 : 1;
        s.at = v + 1;
        s.len = (size_t)(e - s.at);
        return s;
    }
    for (;;) {
        size_t word = strcspn(v + s.len, " \t\n\r\f\v&");
        const char *next;

        s.len += word;
        next = v + s.len + strspn(v + s.len, " \t\n\r\f\v");
        if (v[s.len] == '&' || !*next || memchr(next, '=', strcspn(next, " \t\n\r\f\v")) != NULL) {
            return s;
        }
        s.len = (size_t)(next - v);
    }
}

/* The passwords conninfo gives as written into out; returns how many. */
static size_t find_secrets(const char *conninfo, struct secret *out)
{
    size_t n = 0, uri = uri_prefix(conninfo);
    const char *k = conninfo;

    if (uri) {
        /* user:password@host, as libpq's URI parser reads the user info */
        const char *user = conninfo + uri, *end = user + strcspn(user, "@/"), *colon;

        if (*end == '@' && (colon = memchr(user, ':', (size_t)(end - user))) != NULL) {
            out[n].at = colon + 1;
            out[n++].len = (size_t)(end - colon - 1);
        }
    }
    while (n < SECRETS_MAX && (k = strstr(k, "password")) != NULL) {
        const char *v = k + 8;

        if (k > conninfo && (isalnum((unsigned char)k[-1]) || k[-1] == '_')) {
            k = v;
            continue;
        }
        v += strspn(v, " \t\n\r\f\v");
        if (*v == '=') {
            v++;
            out[n++] = keyword_value(v + strspn(v, " \t\n\r\f\v"));
        }
        k = v;
    }
    return n;
}

/* 1 when q (qlen bytes) and a secret hold one another: a piece of the
 * password, or the password within more. */
static int holds_secret(const char *q, size_t qlen, const struct secret *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i].len == 0) continue;
        for (size_t o = 0; o + qlen <= s[i].len; o++) {
            if (memcmp(s[i].at + o, q, qlen) == 0) return 1;
        }
        for (size_t o = 0; o + s[i].len <= qlen; o++) {
            if (memcmp(q + o, s[i].at, s[i].len) == 0) return 1;
        }
    }
    return 0;
}

/* libpq's msg about conninfo into out, each quoted part of it (libpq
 * quotes what it echoes of the string) that holds the password or a piece
 * of it written as "***". */
static void without_secrets(const char *conninfo, const char *msg, char *out, size_t size)
{
    struct secret s[SECRETS_MAX];
    size_t n = find_secrets(conninfo, s), o = 0;

    while (*msg && o + 1 < size) {
        const char *close = *msg == '"' ? strchr(msg + 1, '"') : NULL;

        if (close && close > msg + 1 && holds_secret(msg + 1, (size_t)(close - msg - 1), s, n)) {
            o += (size_t)snprintf(out + o, size - o, "\"***\"");
            msg = close + 1;
            continue;
        }
        out[o++] = *msg++;
    }
    out[o < size ? o : size - 1] = '\0';
}

/* Where in msg (a failed connection's first line) libpq says it refused a
 * value of the connection string it had parsed, or NULL. No error code
 * tells these from a server that cannot be reached, so they are known by
 * libpq's words (fe-connect.c, 15 to 17), in English as this process never
 * sets a locale; a wording not listed falls back to "cannot connect". */
static const char *refused_value(const char *msg)
{
    static const char *const said[] = {
        "invalid integer value \"", "invalid port number: \"", "could not match ",
        "invalid SSL protocol version range", "weak sslmode \"", " invalid when SSL support is not",
        " invalid when GSSAPI support is not",
    };
    const char *p, *failed = strstr(msg, "failed: ");
    const char *start = failed ? failed + 8 : msg;

    for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++) {
        if ((p = strstr(start, said[i])) != NULL) return said[i][0] == ' ' ? start : p;
    }
    /* "invalid sslmode value: "x"", "invalid require_auth method: "x"" */
    for (p = start; (p = strstr(p, "invalid ")) != NULL; p++) {
        const char *after = p + 8 + strspn(p + 8, "abcdefghijklmnopqrstuvwxyz_");

        if (after > p + 8 &&
            (strncmp(after, " value: \"", 9) == 0 || strncmp(after, " method: \"", 10) == 0)) {
            return p;
        }
    }
    return NULL;
}

int store_pg_conninfo_check(const char *conninfo, const char *failure, char *err, size_t errlen)
{
    static const char head[] = STORE_PG_CONNINFO_INVALID;
    char *why = NULL, clean[512];
    const char *bad = NULL;
    PQconninfoOption *opts;

    if (pq_load(clean, sizeof(clean)) != 0) {
        snprintf(err, errlen, "--db: %s", clean);
        return -1;
    }
    if (strlen(conninfo) >= STORE_PG_CONNINFO_MAX) {
        /* A usage error (exit 2) like any other bad --db, not a failure
         * to open it (a trial: exit 1). */
        snprintf(err, errlen, "--db: the connection string has %zu bytes; it may have at most %d",
                 strlen(conninfo), STORE_PG_CONNINFO_MAX - 1);
        return -1;
    }
    if (!is_conninfo(conninfo) && strstr(conninfo, "://")) {
        /* libpq would take "mysql://h/db" as a database's name. */
        snprintf(err, errlen, "%sa URI other than postgresql:// or postgres:// (give "
                 "postgresql://USER@HOST:PORT/DATABASE)", head);
        return -1;
    }
    if (!is_conninfo(conninfo)) {
        return 0;
    }
    if (!(opts = PQconninfoParse(conninfo, &why))) {
        if (!why) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        bad = why;
    } else if (failure) {
        bad = refused_value(failure);
    }
    PQconninfoFree(opts);
    if (!bad) {
        return 0;
    }
    without_secrets(conninfo, bad, clean, sizeof(clean));
    clean[strcspn(clean, "\n")] = '\0';
    snprintf(err, errlen, "%s%s", head, clean);
    PQfreemem(why);
    return -1;
}

int store_pg_conninfo_password(const char *conninfo)
{
    char unused[8];
    PQconninfoOption *opts;
    int found = 0;

    if (pq_load(unused, sizeof(unused)) != 0) {
        return 0; /* store_pg_conninfo_check says why */
    }
    opts = is_conninfo(conninfo) ? PQconninfoParse(conninfo, NULL) : NULL;

    for (const PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) found = 1;
    }
    PQconninfoFree(opts);
    return found;
}
