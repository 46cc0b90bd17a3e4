/* args.h - the numeric flags of the reliability tools (tcpota-powercut,
 * tcpota-framecut): a value that is not a whole number in its range is a
 * usage error, said as one (exit 2), not a setup failure or a FAIL of the
 * run (a trial read "--size abc" as a reliability failure). */
#ifndef TCPOTA_RELIABILITY_ARGS_H
#define TCPOTA_RELIABILITY_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "tcpota/codec.h"
#include "tcpota/tcpota.h" /* TCPOTA_SECTOR_SIZE */

/* What the tools take: an image of 8 KiB to 64 MiB (the rig keeps two
 * slots of it in memory), frames of 1 byte to the protocol's largest. */
#define REL_SIZE_MIN 8192ul
#define REL_SIZE_MAX (64ul << 20)
#define REL_CHUNK_MAX ((unsigned long)(TCPOTA_MAX_PAYLOAD - TCPOTA_DATA_FIXED))

/* argv[*i] against flag: 0 when it is another argument; 1 with *out set
 * (and *i past the value) for a whole number in min..max; -1 after saying
 * what is wrong (no value, not a number, out of range). */
static inline int rel_arg(const char *prog, int argc, char **argv, int *i, const char *flag,
                          unsigned long min, unsigned long max, unsigned long *out)
{
    const char *v;
    unsigned long n;

    if (strcmp(argv[*i], flag) != 0) {
        return 0;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value: a whole number in %lu..%lu\n", prog, flag, min, max);
        return -1;
    }
    v = argv[++*i];
    errno = 0;
    n = strtoul(v, NULL, 10);
    if (!*v || strspn(v, "0123456789") != strlen(v) || errno == ERANGE || n < min || n > max) {
        fprintf(stderr, "%s: %s: '%s' is not a whole number in %lu..%lu\n", prog, flag, v, min, max);
        return -1;
    }
    *out = n;
    return 1;
}

/* The flags both tools take: --size, --chunk, --ack (a multiple of a
 * sector). 0 when argv[*i] is none of them; 1 after setting it; -1 after
 * saying what is wrong. */
static inline int rel_common_arg(const char *prog, int argc, char **argv, int *i, uint32_t *size,
                                 unsigned *chunk, uint32_t *ack)
{
    unsigned long v = 0;
    int got;

    if ((got = rel_arg(prog, argc, argv, i, "--size", REL_SIZE_MIN, REL_SIZE_MAX, &v)) != 0) {
        if (got > 0) *size = (uint32_t)v;
    } else if ((got = rel_arg(prog, argc, argv, i, "--chunk", 1, REL_CHUNK_MAX, &v)) != 0) {
        if (got > 0) *chunk = (unsigned)v;
    } else if ((got = rel_arg(prog, argc, argv, i, "--ack", TCPOTA_SECTOR_SIZE, REL_SIZE_MAX,
                              &v)) != 0) {
        if (got > 0) *ack = (uint32_t)v;
        if (got > 0 && v % TCPOTA_SECTOR_SIZE) {
            fprintf(stderr, "%s: --ack %lu is not a multiple of %u (a flash sector)\n", prog, v,
                    TCPOTA_SECTOR_SIZE);
            got = -1;
        }
    }
    return got;
}

#endif
