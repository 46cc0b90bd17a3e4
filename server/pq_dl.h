/*
 * pq_dl.h - libpq, loaded when the PostgreSQL store is first used instead
 * of linked into tcpota.
 *
 * Why: libpq brings about twenty libraries with it (Kerberos, LDAP, GnuTLS,
 * SASL, ...). Linked, every start of tcpota loaded and relocated them: a
 * `tcpota --version` took 19-21 ms to start and exit, 10-13 ms without
 * them (2-core VM), for every `tcpota device`, `tcpota sign`, every CLI
 * call, and servers on SQLite that never speak to PostgreSQL. Loaded on
 * first use, only `serve --db` pays, once.
 *
 * Use: the store_pg_*.c files include this header after libpq-fe.h (through
 * store_pg_internal.h); each PQ... call in them then goes through the
 * pointer pq_load() filled. Call pq_load() before the first (store_pg_open
 * and the conninfo checks do). A PQ... function used there that is not in
 * PQ_FUNCS fails the link (tcpota links no libpq): add it to the list.
 * Files that link libpq themselves (tests/unit/test_store_pg.c) do not
 * include this header.
 */
#ifndef TCPOTA_SERVER_PQ_DL_H
#define TCPOTA_SERVER_PQ_DL_H

#include <libpq-fe.h>
#include <stddef.h>

/* libpq's soname: the same since PostgreSQL 8.2 (Debian's package libpq5). */
#define PQ_SONAME "libpq.so.5"

#define PQ_FUNCS(X) \
    X(PQclear) X(PQcmdTuples) X(PQconnectdb) X(PQconnectdbParams) X(PQconninfoFree) \
    X(PQconninfoParse) X(PQconsumeInput) X(PQerrorMessage) X(PQexec) X(PQexecParams) \
    X(PQexecPrepared) X(PQfinish) X(PQfreemem) X(PQgetisnull) X(PQgetlength) X(PQgetResult) \
    X(PQgetvalue) X(PQisBusy) X(PQntuples) X(PQprepare) X(PQresultErrorField) \
    X(PQresultStatus) X(PQsendQuery) X(PQsetNoticeProcessor) X(PQsocket) X(PQstatus) \
    X(PQtransactionStatus)

#define PQ_DL_MEMBER(f) __typeof__(f) *f;
struct pq_dl {
    PQ_FUNCS(PQ_DL_MEMBER)
};
#undef PQ_DL_MEMBER

/* Filled by pq_load(); read-only afterwards. */
extern struct pq_dl pq_dl;

/* Loads libpq (once, whichever thread asks first; later calls return the
 * first's result). Returns 0, or -1 with "PostgreSQL's client library
 * (libpq.so.5) did not load: REASON; install it (Debian: apt-get install
 * libpq5)" in err, REASON dlopen's, or the function it lacks. */
int pq_load(char *err, size_t errlen);

#ifndef PQ_DL_IMPL
#define PQclear (pq_dl.PQclear)
#define PQcmdTuples (pq_dl.PQcmdTuples)
#define PQconnectdb (pq_dl.PQconnectdb)
#define PQconnectdbParams (pq_dl.PQconnectdbParams)
#define PQconninfoFree (pq_dl.PQconninfoFree)
#define PQconninfoParse (pq_dl.PQconninfoParse)
#define PQconsumeInput (pq_dl.PQconsumeInput)
#define PQerrorMessage (pq_dl.PQerrorMessage)
#define PQexec (pq_dl.PQexec)
#define PQexecParams (pq_dl.PQexecParams)
#define PQexecPrepared (pq_dl.PQexecPrepared)
#define PQfinish (pq_dl.PQfinish)
#define PQfreemem (pq_dl.PQfreemem)
#define PQgetisnull (pq_dl.PQgetisnull)
#define PQgetlength (pq_dl.PQgetlength)
#define PQgetResult (pq_dl.PQgetResult)
#define PQgetvalue (pq_dl.PQgetvalue)
#define PQisBusy (pq_dl.PQisBusy)
#define PQntuples (pq_dl.PQntuples)
#define PQprepare (pq_dl.PQprepare)
#define PQresultErrorField (pq_dl.PQresultErrorField)
#define PQresultStatus (pq_dl.PQresultStatus)
#define PQsendQuery (pq_dl.PQsendQuery)
#define PQsetNoticeProcessor (pq_dl.PQsetNoticeProcessor)
#define PQsocket (pq_dl.PQsocket)
#define PQstatus (pq_dl.PQstatus)
#define PQtransactionStatus (pq_dl.PQtransactionStatus)
#endif

#endif
