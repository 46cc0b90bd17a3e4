/*
 * store_pg.h - the fleet store on PostgreSQL (store.h's interface), so that
 * several `tcpota serve --db URI` nodes share one fleet: any node continues
 * any device, and a rollout's decisions are taken once (docs/scaling.md).
 * Its own library (tcpota_store_pg). libpq is loaded by the first call of
 * any function here (pq_dl.h), not linked.
 */
#ifndef TCPOTA_SERVER_STORE_PG_H
#define TCPOTA_SERVER_STORE_PG_H

#include <stddef.h>

struct event_base;
struct store;

/* Opens the PostgreSQL store at conninfo (a libpq connection string or a
 * postgresql:// URI), migrating its schema once however many nodes start
 * together, with dir/images as this node's cache of the image bytes the
 * database holds (dir created 0700 when missing). Completions are posted to
 * base. Returns the store, or NULL with a message in err (libpq did not
 * load, cannot connect, not a tcpota database, newer schema than this
 * program, dir unusable). */
struct store *store_pg_open(const char *conninfo, const char *dir, struct event_base *base,
                            char *err, size_t errlen);

/* Whether conninfo (--db) is a connection string libpq cannot take, as
 * against a database it cannot reach: before a connection (failure NULL),
 * when libpq cannot parse it; after one failed (failure: libpq's message),
 * also when libpq refused one of its values (sslmode=bogus), and a URI of
 * another scheme (mysql://...). A database's bare name (no '=', no URI) is
 * one libpq takes as it is. Returns 0, or -1
 * with "--db: the connection string is not valid: REASON" in err, REASON
 * libpq's with any part of a password in it written as "***"; also -1, with
 * "--db: " and pq_load()'s message, when libpq does not load. */
int store_pg_conninfo_check(const char *conninfo, const char *failure, char *err, size_t errlen);
/* How store_pg_conninfo_check's (and so store_pg_open's) err begins for a
 * connection string libpq cannot take: a bad argument, not a database
 * that failed. */
#define STORE_PG_CONNINFO_INVALID "--db: the connection string is not valid: "
/* The longest --db a node keeps, its NUL included. */
#define STORE_PG_CONNINFO_MAX 1024

/* 1 when conninfo (--db) gives a password (user:password@ in a URI, or a
 * password keyword), else 0 (also for a string libpq cannot parse, and
 * when libpq does not load). */
int store_pg_conninfo_password(const char *conninfo);

#endif
