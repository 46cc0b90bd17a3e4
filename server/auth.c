/* auth.c - device authentication and its backoff (see auth.h). */
#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

struct ban *ban_find(struct ban *bans, const char *addr, int create)
{
    struct ban *oldest = &bans[0];
    unsigned i;

    for (i = 0; i < BAN_SLOTS; i++) {
        if (strcmp(bans[i].addr, addr) == 0) return &bans[i];
        if (bans[i].until < oldest->until) oldest = &bans[i];
    }
    if (!create) return NULL;
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
    return oldest;
}

void ban_clear(struct ban *bans, const char *addr)
{
    struct ban *b = ban_find(bans, addr, 0);
    if (b) memset(b, 0, sizeof(*b));
}

int auth_check(const struct tcpota_serve_opts *o, const char *id,
               const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *mac, const char **why)
{
    uint8_t msg[TCPOTA_AUTH_MSG_MAX], want[32];
    size_t i;
    int n;

    for (i = 0; i < o->nsecrets; i++) {
        if (strcmp(o->secrets[i].id, id) == 0) break;
    }
    if (i == o->nsecrets) {
        *why = "unknown device";
        return 0;
    }
    n = tcpota_auth_message(nonce, NULL, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    if (n < 0) {
        *why = "bad device id";
        return 0;
    }
    {
        /* The streaming API takes keys of any length, as the device's does. */
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, o->secrets[i].secret, o->secrets[i].len);
        crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
        crypto_auth_hmacsha256_final(&st, want);
        sodium_memzero(&st, sizeof(st));
    }
    if (sodium_memcmp(want, mac, 32) != 0) {
        *why = "wrong answer to the challenge";
        return 0;
    }
    return 1;
}

