/* unauth.c - unauthenticated connections per address (see unauth.h): a
 * chained hash table, one entry per address with at least one. */
#include "unauth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct unauth_entry {
    struct unauth_entry *next;
    unsigned count;
    char addr[]; /* NUL-terminated */
};

static struct unauth_entry **slot(const struct unauth *u, const char *addr)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *addr; addr++) h = (h ^ (uint8_t)*addr) * 16777619u;
    return (struct unauth_entry **)&u->buckets[h % UNAUTH_BUCKETS];
}

static struct unauth_entry **find(const struct unauth *u, const char *addr)
{
    struct unauth_entry **p = slot(u, addr);
    while (*p && strcmp((*p)->addr, addr) != 0) p = &(*p)->next;
    return p;
}

int unauth_add(struct unauth *u, const char *addr, unsigned limit)
{
    struct unauth_entry **p = find(u, addr), *e = *p;
    size_t len = strlen(addr);

    if (e) {
        if (limit && e->count >= limit) return 0;
        e->count++;
        return 1;
    }
    if (!(e = malloc(sizeof(*e) + len + 1))) return -1;
    e->next = NULL;
    e->count = 1;
    memcpy(e->addr, addr, len + 1);
    *p = e;
    return 1;
}

void unauth_del(struct unauth *u, const char *addr)
{
    struct unauth_entry **p = find(u, addr), *e = *p;

    if (e && --e->count == 0) {
        *p = e->next;
        free(e);
    }
}

unsigned unauth_count(const struct unauth *u, const char *addr)
{
    struct unauth_entry *e = *find(u, addr);
    return e ? e->count : 0;
}

void unauth_clear(struct unauth *u)
{
    unsigned i;
    for (i = 0; i < UNAUTH_BUCKETS; i++) {
        while (u->buckets[i]) {
            struct unauth_entry *e = u->buckets[i];
            u->buckets[i] = e->next;
            free(e);
        }
    }
}
