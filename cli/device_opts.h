/*
 * device_opts.h - the options of `tcpota device` and their parser
 * (cli/device_opts.c); the device itself is cli/device.c.
 */
#ifndef TCPOTA_CLI_DEVICE_OPTS_H
#define TCPOTA_CLI_DEVICE_OPTS_H

#include "keys.h"
#include "progress.h"

#include "tcpota/manifest.h"

#include <stddef.h>
#include <stdint.h>

#define HOST_MAX 256
#define MAX_TRUST CLI_MAX_KEYS
#define DEVICE_DEFAULT_MODEL "esp32" /* --model when none is given */
/* The largest --slot-size: the last whole sector a u32 size reaches. */
#define DEVICE_SLOT_MAX ((uint64_t)UINT32_MAX - TCPOTA_SECTOR_SIZE + 1)

/* --health crash: the new image resets before its health check's verdict. */
#define DEVICE_HEALTH_CRASH 2

struct options {
    const char *server;
    char host[HOST_MAX];
    uint16_t port;
    const char *dir;
    const char *id;
    const char *model;
    const char *factory;
    int model_given, factory_given; /* --model, --factory-version given (device_ident.c) */
    uint32_t slot_size; /* 0: default on creation, the files' size otherwise */
    int healthy; /* 1: ok, 0: fail, DEVICE_HEALTH_CRASH */
    uint32_t ack_interval;
    unsigned max_attempts;
    uint32_t check_interval; /* --check-interval seconds; 0: exit when up to date */
    uint32_t backoff_min, backoff_max, timeout_ms;
    enum progress_mode progress;
    int quiet;
    int init; /* --init: DIR may exist (empty): start a new device there */
    uint8_t trust[MAX_TRUST][TCPOTA_PUBKEY_LEN]; /* --trust: keys images must be signed with */
    size_t ntrust;
    int no_trust; /* --no-trust: forget the keys DIR keeps */
    uint8_t secret[TCPOTA_SECRET_MAX]; /* --secret (or DIR's): answers the server's CHALLENGE */
    size_t secret_len;
    int secret_given; /* --secret was given (else secret is DIR's, device_secret) */
    int no_secret;    /* --no-secret: forget the secret DIR keeps */
    const char *ca;     /* --ca: speak TLS and verify the server against it */
};

/* Parses argv into *o, loading --trust keys and the --secret file. Returns
 * 0, -1 after printing --help (exit 0), or 2 after a message (usage). */
int device_parse_options(struct options *o, int argc, char **argv);

#endif
