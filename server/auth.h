/*
 * auth.h - device authentication for `tcpota serve`: checking a device's
 * answer to the CHALLENGE against the secret we hold for its id, and the
 * backoff imposed on peers whose answers were wrong. No sockets: the
 * connection code passes in what it knows.
 */
#ifndef TCPOTA_SERVER_AUTH_H
#define TCPOTA_SERVER_AUTH_H

#include "server.h"

#include "tcpota/codec.h"

#include <stdint.h>

#define BAN_SLOTS 256u          /* peers remembered for failed authentications */
#define BAN_MAX_S 300u          /* longest wait imposed after failures */

/* Failed authentications per peer address: each failure doubles the time
 * the peer must wait before it is served again. */
struct ban {
    char addr[48];
    unsigned failures;
    double until;
};

/* The record of addr in bans[BAN_SLOTS]; with create, a new one (reusing
 * the slot whose wait ends first) when there is none. NULL otherwise. */
struct ban *ban_find(struct ban *bans, const char *addr, int create);
/* A peer that authenticated starts with a clean record. */
void ban_clear(struct ban *bans, const char *addr);

/* Checks the device's answer `mac` (32 bytes) to our nonce against the
 * secret o holds for device `id`. Returns 1 when it is right, else 0 and
 * *why says what was wrong. */
int auth_check(const struct tcpota_serve_opts *o, const char *id,
               const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *mac, const char **why);

#endif
