/*
 * unauth.h - how many connections each peer address holds that have not
 * yet proven anything (TLS handshake, HELLO, and AUTH when required).
 *
 * Each such connection costs the server a TLS session or a challenge for
 * nothing in return; one address may hold at most --max-unauth-per-addr of
 * them (docs/security.md, "Connection deadlines and limits"), so a single
 * peer cannot fill the server with half-open handshakes.
 */
#ifndef TCPOTA_SERVER_UNAUTH_H
#define TCPOTA_SERVER_UNAUTH_H

#define UNAUTH_BUCKETS 4096u

struct unauth_entry;

struct unauth {
    struct unauth_entry *buckets[UNAUTH_BUCKETS];
};

/* Counts one more connection from addr unless it already holds `limit`
 * (0: no limit). Returns 1 when counted, 0 when over the limit, -1 when
 * out of memory. */
int unauth_add(struct unauth *u, const char *addr, unsigned limit);
/* Uncounts one connection from addr (it authenticated, or closed). */
void unauth_del(struct unauth *u, const char *addr);
/* The connections addr holds now. */
unsigned unauth_count(const struct unauth *u, const char *addr);
/* Frees every entry. */
void unauth_clear(struct unauth *u);

#endif
