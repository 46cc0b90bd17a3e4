/*
 * admit.h - what a connection must pass the moment it is accepted, on the
 * device port and on the HTTP(S) download listener (--ota-listen) alike:
 * one rule, in one place (docs/security.md, "Connection deadlines and
 * limits").
 *
 *  - The server holds at most --max-conns connections: its devices' and
 *    its download listener's together (both cost a descriptor and memory).
 *  - With TLS or --require-auth, one address holds at most
 *    --max-unauth-per-addr connections that have not yet proven anything:
 *    on the device port the TLS handshake, HELLO and AUTH (when required);
 *    on the download listener the TLS handshake and a complete request.
 *    Both ports count in the one table (srv->unauth), so an address cannot
 *    hold that many half-open handshakes on each. Without TLS and
 *    --require-auth nothing is counted (tcpota serve then refuses the
 *    flag).
 *
 * The caller logs a refusal in its own words (admit_why) and closes.
 */
#ifndef TCPOTA_SERVER_ADMIT_H
#define TCPOTA_SERVER_ADMIT_H

#include <stddef.h>
#include <stdint.h>

struct server;

enum admit_verdict {
    ADMIT_OK = 0,
    ADMIT_FULL,      /* --max-conns connections already */
    ADMIT_ADDR_FULL, /* the address holds --max-unauth-per-addr unproven ones */
    ADMIT_NOMEM,     /* out of memory counting it: closed without a line */
};

/* Judges a connection just accepted from host. ADMIT_OK: kept, *counted
 * set to 1 when it was counted in srv->unauth (the caller uncounts it with
 * unauth_del once it proves itself, or closes), else 0. Any other verdict
 * counts nothing but the refusal (srv->stats.refused). */
enum admit_verdict admit_conn(struct server *srv, const char *host, uint8_t *counted);

/* Why a refusal of host happened, as the log says it after "refused: ",
 * into buf (cap bytes); NULL for ADMIT_OK and ADMIT_NOMEM (no line). */
const char *admit_why(const struct server *srv, enum admit_verdict v, const char *host, char *buf,
                      size_t cap);

#endif
