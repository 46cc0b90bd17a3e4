/* devices.c - the in-memory device registry of single-image mode (see devices.h). */
#include "devices.h"

#include <stdlib.h>
#include <string.h>

#define DEVICES_SLOTS_MIN 1024u

/* FNV-1a: ids are short, and a peer choosing colliding ids only slows its
 * own chain, bounded by DEVICES_MAX. */
static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) {
        h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    }
    return (size_t)h;
}

int devices_init(struct devices *d, size_t max)
{
    memset(d, 0, sizeof(*d));
    d->nslots = DEVICES_SLOTS_MIN;
    d->max = max;
    d->slots = calloc(d->nslots, sizeof(*d->slots));
    return d->slots ? 0 : -1;
}

void devices_free(struct devices *d)
{
    size_t i;
    for (i = 0; d->slots && i < d->nslots; i++) {
        struct device_rec *r = d->slots[i], *next;
        for (; r; r = next) {
            next = r->next;
            free(r);
        }
    }
    free(d->slots);
    memset(d, 0, sizeof(*d));
}

/* Doubles the table when it is full; keeps the old one if memory is short. */
static void grow(struct devices *d)
{
    size_t n = d->nslots * 2, i;
    struct device_rec **s = calloc(n, sizeof(*s));

    if (!s) {
        return;
    }
    for (i = 0; i < d->nslots; i++) {
        struct device_rec *r = d->slots[i], *next;
        for (; r; r = next) {
            next = r->next;
            r->next = s[hash(r->id) & (n - 1)];
            s[hash(r->id) & (n - 1)] = r;
        }
    }
    free(d->slots);
    d->slots = s;
    d->nslots = n;
}

struct device_rec *devices_get(struct devices *d, const char *id, int create)
{
    size_t len = strlen(id);
    struct device_rec *r;

    if (len == 0 || len > TCPOTA_MAX_STR) {
        return NULL;
    }
    for (r = d->slots[hash(id) & (d->nslots - 1)]; r; r = r->next) {
        if (strcmp(r->id, id) == 0) {
            return r;
        }
    }
    if (!create || d->count >= d->max || !(r = calloc(1, sizeof(*r)))) {
        return NULL;
    }
    memcpy(r->id, id, len + 1);
    if (d->count >= d->nslots) {
        grow(d);
    }
    r->next = d->slots[hash(id) & (d->nslots - 1)];
    d->slots[hash(id) & (d->nslots - 1)] = r;
    d->count++;
    return r;
}

int device_failed(const struct device_rec *r, const uint8_t image_id[TCPOTA_ID_LEN])
{
    unsigned i;
    for (i = 0; r && i < r->nfailed; i++) {
        if (memcmp(r->failed[i], image_id, TCPOTA_ID_LEN) == 0) {
            return 1;
        }
    }
    return 0;
}

void device_mark_failed(struct device_rec *r, const uint8_t image_id[TCPOTA_ID_LEN])
{
    if (!r || device_failed(r, image_id)) {
        return;
    }
    if (r->nfailed == DEVICE_FAILED_MAX) { /* forget the oldest */
        memmove(r->failed[0], r->failed[1], (DEVICE_FAILED_MAX - 1) * TCPOTA_ID_LEN);
        r->nfailed--;
    }
    memcpy(r->failed[r->nfailed++], image_id, TCPOTA_ID_LEN);
}

void devices_count(const struct devices *d, unsigned counts[DEV_OUTCOMES])
{
    size_t i;
    memset(counts, 0, DEV_OUTCOMES * sizeof(counts[0]));
    for (i = 0; i < d->nslots; i++) {
        const struct device_rec *r;
        for (r = d->slots[i]; r; r = r->next) {
            counts[r->outcome]++;
        }
    }
}

const char *device_outcome_name(enum device_outcome o)
{
    static const char *const names[DEV_OUTCOMES] = {
        [DEV_SEEN] = "connected without an outcome",
        [DEV_CONFIRMED] = "updated and confirmed",
        [DEV_UPDATED] = "verified (not confirmed yet)",
        [DEV_UP_TO_DATE] = "up to date",
        [DEV_NOT_OFFERED] = "not offered",
        [DEV_ROLLED_BACK] = "rolled back",
        [DEV_BOOT_FAILED] = "boot failed",
        [DEV_DECLINED] = "declined",
        [DEV_FAILED] = "failed",
    };
    return o < DEV_OUTCOMES ? names[o] : "?";
}
