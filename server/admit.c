/* admit.c - the limits a connection meets at accept, on every listener
 * (see admit.h). */
#include "admit.h"

#include "server_internal.h"
#include "text.h"

#include <stdio.h>

/* Connections the server holds: its devices' and its download listener's. */
static unsigned held(const struct server *srv)
{
    return srv->nconns + srv->nhttp;
}

enum admit_verdict admit_conn(struct server *srv, const char *host, uint8_t *counted)
{
    const struct tcpota_serve_opts *o = srv->o;
    int rc;

    *counted = 0;
    if (held(srv) >= o->max_conns) {
        srv->stats.refused++;
        return ADMIT_FULL;
    }
    /* Authentication is judged at AUTH (auth.h), not here: refusing an
     * address at accept would lock out every device behind its NAT. What
     * one address may hold before it proves anything is capped instead. */
    if (!o->max_unauth_per_addr || !(srv->tls || o->require_auth)) {
        return ADMIT_OK;
    }
    rc = unauth_add(&srv->unauth, host, o->max_unauth_per_addr);
    if (rc <= 0) {
        srv->stats.refused++;
        return rc == 0 ? ADMIT_ADDR_FULL : ADMIT_NOMEM;
    }
    *counted = 1;
    return ADMIT_OK;
}

const char *admit_why(const struct server *srv, enum admit_verdict v, const char *host, char *buf,
                      size_t cap)
{
    unsigned n;

    switch (v) {
    case ADMIT_FULL:
        n = held(srv);
        snprintf(buf, cap, "%u connection%s already (limit)", n, text_s(n));
        return buf;
    case ADMIT_ADDR_FULL:
        n = unauth_count(&srv->unauth, host);
        snprintf(buf, cap, "%s already holds %u connection%s that %s not authenticated "
                 "(--max-unauth-per-addr)", host, n, text_s(n), n == 1 ? "has" : "have");
        return buf;
    default:
        return NULL;
    }
}
