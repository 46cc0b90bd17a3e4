/*
 * auth.h - device authentication for `tcpota serve`: the secrets the server
 * holds, checking a device's answer to the CHALLENGE, and the backoff that
 * slows down wrong answers. No sockets and no clock of its own: the
 * connection code passes in the device id, the peer's address, the nonce,
 * the TLS binding and the time, so every rule here has a unit test
 * (tests/unit/test_server_auth.c).
 *
 * The backoff rule (docs/security.md, "Authentication backoff"):
 *  - Failures are counted per device id and per peer address, and judged
 *    at every AUTH, not only when a connection is accepted.
 *  - A known device id that failed waits 1, 2, 4 ... AUTH_ID_MAX_WAIT_S
 *    seconds after each failure; an AUTH for it in that time is refused
 *    without looking at the answer (BUSY, auth_verdict_error), whichever
 *    address it comes from.
 *  - An address may fail AUTH_ADDR_FREE_FAILURES times for nothing (a
 *    NAT hides many devices); after that it waits 1, 2, 4 ...
 *    AUTH_ADDR_MAX_WAIT_S seconds. While it waits, it can still
 *    authenticate a known device whose own record is clean, so one
 *    misconfigured device behind a NAT never locks out a good one; unknown
 *    ids and ids with failures from it are refused unchecked.
 *  - A success wipes nothing. A record is forgotten AUTH_FORGET_S seconds
 *    after its last failure.
 */
#ifndef TCPOTA_SERVER_AUTH_H
#define TCPOTA_SERVER_AUTH_H

#include "server.h"

#include "tcpota/codec.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AUTH_MIN_SECRET_LEN TCPOTA_SECRET_MIN /* shorter secrets are refused at load */
#define AUTH_MAX_SECRET_LEN 64u      /* = sizeof(struct tcpota_serve_secret.secret) */
#define AUTH_MAX_SECRETS 100000u     /* lines in one --auth-file */
#define AUTH_ID_MAX_WAIT_S 60u       /* longest wait of one device id */
#define AUTH_ADDR_FREE_FAILURES 10u  /* failures an address makes before it waits */
#define AUTH_ADDR_MAX_WAIT_S 60u     /* longest wait of one address */
#define AUTH_FORGET_S 900u           /* a record this long without a failure is dropped */
#define AUTH_ADDR_SLOTS 1024u        /* addresses remembered (the stalest is reused) */
#define AUTH_ADDR_LEN 48u            /* room for a numeric IPv6 address */
#define AUTH_MAC_LEN 32u             /* HMAC-SHA-256 */

/* Failures of one device id or one address. */
struct auth_record {
    unsigned failures;
    double last;  /* time of the last failure */
    double until; /* no AUTH is checked before this time */
};

struct auth_addr_record {
    char addr[AUTH_ADDR_LEN];
    struct auth_record r;
};

struct auth {
    const struct tcpota_serve_secret *secrets; /* caller-owned */
    size_t nsecrets;
    int sorted;                /* secrets sorted by id: looked up by bisection */
    struct auth_record *by_id; /* one per secret */
    struct auth_addr_record by_addr[AUTH_ADDR_SLOTS];
};

enum auth_verdict {
    AUTH_OK = 0,
    AUTH_WRONG_ANSWER,  /* a known device, a wrong MAC: a wrong secret (or a replay) */
    AUTH_UNKNOWN_ID,    /* no secret for this device id */
    AUTH_ID_WAITING,    /* this device id failed recently: not checked */
    AUTH_ADDR_WAITING,  /* this address failed often: not checked */
};

struct auth_result {
    enum auth_verdict verdict;
    unsigned failures; /* of the record that decided (id, else address) */
    unsigned wait_s;   /* seconds until that record lets the next AUTH through */
};

/* Reads "<device id> <hex secret>" lines ('#' starts a comment) from f,
 * named path in messages. Refuses (-1, after printing the line and what is
 * wrong, never the secret) a malformed line, an id over TCPOTA_MAX_STR
 * bytes, a secret shorter than AUTH_MIN_SECRET_LEN or longer than
 * AUTH_MAX_SECRET_LEN bytes, a duplicate id, and a file with no secrets
 * unless allow_empty (a reload: every secret revoked, which a running
 * server can only be told so). On success *out (free with
 * auth_free_secrets) holds *n secrets, at least 1 unless allow_empty. */
int auth_read_secrets(FILE *f, const char *path, int allow_empty, struct tcpota_serve_secret **out,
                      size_t *n);
/* Wipes and frees what auth_read_secrets returned. */
void auth_free_secrets(struct tcpota_serve_secret *s, size_t n);

/* Prepares a with n caller-owned secrets (kept until auth_free or
 * auth_rebind; sorted by id, as auth_read_secrets returns them, they are
 * found by bisection). Returns 0 or -1 when out of memory. */
int auth_init(struct auth *a, const struct tcpota_serve_secret *secrets, size_t n);
/* Moves a to a new set of secrets (a reload), keeping the failures of the
 * ids that are in both: a reload does not wipe a backoff. The old secrets
 * may be freed afterwards. Returns 0, or -1 (a unchanged) when out of memory. */
int auth_rebind(struct auth *a, const struct tcpota_serve_secret *secrets, size_t n);
/* 1 when device id has a secret in a. */
int auth_has(const struct auth *a, const char *id);
/* Forgets the failures of device id (its secret was just replaced by the
 * operator: a throttle earned with the old secret must not refuse the first
 * try with the new one). Unknown ids: no-op. Address records stay. */
void auth_forgive(struct auth *a, const char *id);
/* Frees what auth_init allocated (the per-id and per-address records, not
 * the caller's secrets); a is then unusable until auth_init. */
void auth_free(struct auth *a);

/* Judges device `id`'s answer `mac` (AUTH_MAC_LEN bytes) to `nonce`, sent
 * from `addr` at time `now` (seconds, monotonic). binding: NULL over plain
 * TCP, else the TCPOTA_TLS_BINDING_LEN bytes of the TLS exporter of this
 * connection (codec.h), which the MAC must cover. Counts a failure where
 * the rule above says so. Returns r->verdict (AUTH_OK when served). */
enum auth_verdict auth_judge(struct auth *a, const char *id, const char *addr,
                             const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *binding,
                             const uint8_t *mac, double now, struct auth_result *r);

/* What the log says about a verdict ("wrong answer to the challenge"...). */
const char *auth_verdict_reason(enum auth_verdict v);
/* What the device is told in the refusal's ERROR (auth_verdict_error), and prints. */
const char *auth_verdict_message(enum auth_verdict v);

/* ---- refusals, for the fleet summary --------------------------------- */

/* Why a device id was refused for authentication (GET /v1/summary,
 * "auth_refused": docs/api.md). */
enum auth_refusal {
    AUTH_REFUSED_NO_PROOF = 0, /* it did not authenticate (a HELLO without AUTH, an HTTP
                                * download) although its id has a secret, or under
                                * --require-auth */
    AUTH_REFUSED_WRONG,        /* AUTH_WRONG_ANSWER: a wrong secret (or a replay) */
    AUTH_REFUSED_UNKNOWN,      /* AUTH_UNKNOWN_ID: no secret for the id (--require-auth) */
    AUTH_REFUSED_NOT_CHECKED,  /* AUTH_ID_WAITING, AUTH_ADDR_WAITING: not checked, told to wait */
    AUTH_REFUSAL_KINDS
};

#define AUTH_REFUSED_IDS 16u /* refused ids the summary lists (the stalest is replaced) */

/* One id among the last refused. */
struct auth_refused_id {
    char id[TCPOTA_MAX_STR + 1]; /* "": a free slot */
    char addr[AUTH_ADDR_LEN];    /* where its last refusal came from */
    uint8_t kind;                /* its last refusal's enum auth_refusal, a
                                  * not-checked one aside: the failure that
                                  * made it wait says more */
    unsigned count;              /* its refusals since it entered the list */
    int64_t last;                /* its last refusal (wall-clock seconds) */
};

/* The refusals of a server since it started: counts by kind, and the ids
 * refused last, each once with its count, so that a device retrying every
 * minute with the wrong secret is one line of the summary, not sixteen.
 * A peer can invent ids: they fill the list, the stalest going first, and
 * the counts still say how many. Zero-initialise (then set `since`). */
struct auth_refusals {
    int64_t since;                 /* when counting began (wall-clock seconds) */
    uint64_t n[AUTH_REFUSAL_KINDS];
    struct auth_refused_id ids[AUTH_REFUSED_IDS];
};

/* Counts a refusal of kind k of device id (NULL or "": none named, only
 * counted) from addr at `when` (wall-clock seconds). */
void auth_refusal_note(struct auth_refusals *t, enum auth_refusal k, const char *id,
                       const char *addr, int64_t when);
/* All refusals counted in t, of every kind: the summary's "total" and the
 * log's "authentication refused N times" (one sum for both). */
uint64_t auth_refusals_total(const struct auth_refusals *t);
/* Takes id off the list once it has authenticated: nothing is left to
 * fix for it (its refusals stay in the counts by kind). */
void auth_refusal_forget(struct auth_refusals *t, const char *id);
/* The refusal a verdict other than AUTH_OK is. */
enum auth_refusal auth_refusal_of(enum auth_verdict v);
/* Its name in the summary: "no-proof", "wrong-secret", "unknown-id", "not-checked". */
const char *auth_refusal_name(enum auth_refusal k);

/* The protocol's error for a refusal with verdict v: TCPOTA_ERR_BUSY for
 * a wait (AUTH_ID_WAITING, AUTH_ADDR_WAITING: the answer was not checked,
 * and the same secret may be right once the wait is over), else
 * TCPOTA_ERR_DENIED (the answer was checked and is wrong, or the id is
 * unknown: the same secret would be refused again). */
int auth_verdict_error(enum auth_verdict v);

#endif
