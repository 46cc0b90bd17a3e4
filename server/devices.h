/*
 * devices.h - what `tcpota serve` (single-image mode) remembers about each
 * device while it runs: the images it reported as failed, so they are never
 * offered to it again (offer.h, rule 4), and its latest outcome, so the
 * summary counts devices rather than connections.
 *
 * It lives in memory only: a restarted server forgets it, and then the
 * device's own record of a failed image (NVS) still declines it before a
 * byte is written. At most DEVICES_MAX devices are remembered (a peer
 * without authentication can invent ids); past that, new ids are not
 * recorded and devices_get() returns NULL.
 */
#ifndef TCPOTA_SERVER_DEVICES_H
#define TCPOTA_SERVER_DEVICES_H

#include "tcpota/codec.h"
#include "tcpota/tcpota.h"

#include <stddef.h>
#include <stdint.h>

#define DEVICES_MAX 1000000u
#define DEVICE_FAILED_MAX 4u /* failed images remembered per device, newest kept */

/* A device's latest outcome, in the order the summary prints them. */
enum device_outcome {
    DEV_SEEN = 0,        /* connected; nothing decided yet */
    DEV_CONFIRMED,       /* reported the new image booted and passed its check */
    DEV_UPDATED,         /* downloaded and verified the image (COMPLETE ok) */
    DEV_UP_TO_DATE,      /* runs the image already */
    DEV_NOT_OFFERED,     /* the offer policy refused (model, version, failed) */
    DEV_ROLLED_BACK,     /* reported: health check failed, old image again */
    DEV_BOOT_FAILED,     /* reported: the bootloader fell back */
    DEV_DECLINED,        /* declined the offer */
    DEV_FAILED,          /* the transfer failed (integrity, error) */
    DEV_OUTCOMES
};

struct device_rec {
    struct device_rec *next; /* hash chain */
    enum device_outcome outcome;
    uint8_t nfailed;
    uint8_t memo_why; /* fleet mode: the remembered NO_UPDATE's enum tcpota_why */
    uint8_t failed[DEVICE_FAILED_MAX][TCPOTA_ID_LEN];
    /* Fleet mode (fleet.c): its last check-in that changed nothing, so an
     * identical one is answered without the store. */
    uint64_t memo_fp;    /* that HELLO's fingerprint; 0: none */
    uint32_t memo_epoch; /* the fleet's epoch then */
    uint32_t steps;      /* steps of its update recorded so far */
    double memo_at;      /* monotonic seconds of that check-in */
    char id[TCPOTA_MAX_STR + 1];
};

struct devices {
    struct device_rec **slots;
    size_t nslots, count, max;
};

/* Prepares an empty registry that holds at most `max` devices. Returns 0 or
 * -1 (out of memory). */
int devices_init(struct devices *d, size_t max);
/* Frees every record and the table; d is then empty (devices_init again
 * before use). */
void devices_free(struct devices *d);

/* The record of device `id`, created when create != 0 and there is room.
 * NULL: not known (or no room). */
struct device_rec *devices_get(struct devices *d, const char *id, int create);

/* Remembers that the device reported image `image_id` as failed. */
void device_mark_failed(struct device_rec *r, const uint8_t image_id[TCPOTA_ID_LEN]);
/* 1 when it did, else 0. */
int device_failed(const struct device_rec *r, const uint8_t image_id[TCPOTA_ID_LEN]);

/* How many devices have each outcome (counts[DEV_OUTCOMES]). */
void devices_count(const struct devices *d, unsigned counts[DEV_OUTCOMES]);

/* The summary's word for an outcome ("rolled back"). */
const char *device_outcome_name(enum device_outcome o);

#endif
