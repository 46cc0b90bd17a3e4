/* device_opts.c - the options of `tcpota device` (see device_opts.h). */
#include "device_opts.h"

#include "cli.h"
#include "keys.h"
#include "posix_port.h"
#include "tcpota_runner.h"

#include "tcpota/codec.h"
#include "tcpota/device.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota device --server HOST:PORT --flash DIR [options]\n"
            "       tcpota device status --flash DIR\n"
            "\n"
            "Runs an emulated ESP32 whose flash lives in DIR: boots it, fetches and\n"
            "installs the server's image, reboots into it and reports the outcome.\n"
            "\n"
            "options:\n"
            "  --server HOST:PORT     tcpota server to update from\n"
            "  --flash DIR            device flash (created when DIR does not exist); one\n"
            "                         tcpota device at a time (it holds DIR/tcpota.lock)\n"
            "  --init                 start a new device in DIR even though it exists (empty)\n"
            "  --id ID                device id (default: dev-<hash of DIR's path>)\n"
            "  --model M              device model (default esp32)\n"
            "  --factory-version V    factory image version in a new DIR (default 0.0.0)\n"
            "  --slot-size SIZE       app slot size in a new DIR: bytes, or K, M, G after the\n"
            "                         number (default %u)\n"
            "                         A new DIR keeps its id, model and factory version:\n"
            "                         later runs take them from DIR, refuse another --id or\n"
            "                         --model (exit 2), warn about another --factory-version\n"
            "                         or --slot-size and go on\n"
            "  --health ok|fail|crash outcome of the new image's health check (default ok);\n"
            "                         crash: it resets before the verdict, as a crash or a\n"
            "                         watchdog does, and the bootloader undoes it (boot failed)\n"
            "  --ack-interval BYTES   checkpoint interval, multiple of 4096 (default %u)\n"
            "  --max-attempts N       attempts without progress before giving up (default 20)\n"
            "  --backoff-min-ms MS    first reconnect delay (default 200)\n"
            "  --backoff-max-ms MS    largest reconnect delay (default 5000)\n"
            "  --timeout-ms MS        receive silence before reconnecting (default 30000)\n"
            "  --check-interval S     keep running: check in again every S seconds, +-20%%\n"
            "                         (or after the server's RETRY_AFTER); default: exit\n"
            "                         once up to date\n"
            "  --progress MODE        auto|bar|lines|none (default auto)\n"
            "  --quiet                only errors, warnings, the outcome and the stats line\n"
            "  --trust PUBKEY_FILE    accept only images signed with this key (repeatable);\n"
            "                         DIR keeps the keys: later runs without --trust use\n"
            "                         them, as an ESP32 keeps the keys its firmware holds\n"
            "  --no-trust             drop the keys DIR keeps: unsigned images are accepted\n"
            "  --secret FILE          device secret for the server's challenge (never sent);\n"
            "                         DIR keeps it (nvs.bin, mode 600): later runs without\n"
            "                         --secret use it, as an ESP32 keeps it in its NVS\n"
            "  --no-secret            drop the secret DIR keeps\n"
            "  --ca CA_FILE           connect with TLS and verify the server's certificate\n"
            "  --help                 this text\n"
            "An option given twice takes its last value (a wrapper's defaults can be\n"
            "overridden after them); --trust adds a key each time.\n"
            "\n"
            "`device status` prints the running image and resume point as JSON.\n"
            "`device list|show|set|secret|retry|rm` are a fleet server's devices: tcpota device list --help\n"
            "exit: 0 up to date (or nothing newer for it), 1 failure or an image held back from\n"
            "this device (the server says why) or a damaged --flash or one in use by another\n"
            "tcpota device, 2 usage (a --flash that is no directory, an empty one without\n"
            "--init, --init on one not empty, an --id or --model other than DIR's device's)\n"
            "or an unusable --trust, --secret or --ca,\n"
            "130/143 on SIGINT/SIGTERM (SIGUSR1 is ignored: it is a server's signal)\n",
            (unsigned)TCPOTA_POSIX_SLOT_SIZE_DEFAULT, (unsigned)TCPOTA_DEV_ACK_DEFAULT);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("tcpota device: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\ntry 'tcpota device --help'\n", stderr);
    return 2;
}

enum opt_id {
    OPT_SERVER, OPT_FLASH, OPT_ID, OPT_MODEL, OPT_FACTORY, OPT_SLOT, OPT_HEALTH, OPT_ACK,
    OPT_ATTEMPTS, OPT_BMIN, OPT_BMAX, OPT_TIMEOUT, OPT_PROGRESS, OPT_QUIET, OPT_HELP,
    OPT_TRUST, OPT_NO_TRUST, OPT_SECRET, OPT_NO_SECRET, OPT_CA, OPT_INIT, OPT_CHECK,
};

static const struct {
    const char *name;
    enum opt_id id;
    int has_arg;
} g_opts[] = {
    {"--server", OPT_SERVER, 1},         {"--flash", OPT_FLASH, 1},
    {"--id", OPT_ID, 1},                 {"--model", OPT_MODEL, 1},
    {"--factory-version", OPT_FACTORY, 1}, {"--slot-size", OPT_SLOT, 1},
    {"--health", OPT_HEALTH, 1},         {"--ack-interval", OPT_ACK, 1},
    {"--max-attempts", OPT_ATTEMPTS, 1}, {"--backoff-min-ms", OPT_BMIN, 1},
    {"--backoff-max-ms", OPT_BMAX, 1},   {"--timeout-ms", OPT_TIMEOUT, 1},
    {"--progress", OPT_PROGRESS, 1},     {"--quiet", OPT_QUIET, 0},
    {"--help", OPT_HELP, 0},             {"-h", OPT_HELP, 0},
    {"--trust", OPT_TRUST, 1},           {"--no-trust", OPT_NO_TRUST, 0},
    {"--no-secret", OPT_NO_SECRET, 0},
    {"--secret", OPT_SECRET, 1},
    {"--ca", OPT_CA, 1},                 {"--init", OPT_INIT, 0},
    {"--check-interval", OPT_CHECK, 1},
};

/* Finds the option `arg` names ("--name" or "--name=value"); -1 if none. */
static int opt_find(const char *arg)
{
    size_t len = strcspn(arg, "=");

    for (size_t i = 0; i < sizeof(g_opts) / sizeof(g_opts[0]); i++) {
        if (strlen(g_opts[i].name) == len && strncmp(arg, g_opts[i].name, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

_Static_assert(TCPOTA_POSIX_VERSION_MAX >= TCPOTA_MAX_NAME,
               "the flash holds any version the protocol carries (--factory-version)");

/* 1..max printable ASCII characters, as the protocol requires. */
static int printable(const char *s, size_t max)
{
    return tcpota_printable(s, strlen(s), 1, max);
}

static int u32_opt(const char *v, const char *what, uint32_t min, uint32_t max, uint32_t *out)
{
    unsigned long long n;

    if (cli_number(v, what, min, max, &n) < 0) {
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

/* Stores one option value. Returns 0 or 2 (usage error, message printed). */
static int opt_apply(struct options *o, enum opt_id id, const char *name, const char *v)
{
    uint32_t n;

    switch (id) {
    case OPT_SERVER:
        o->server = v;
        return cli_hostport(v, name, 0, o->host, sizeof(o->host), &o->port) < 0 ? 2 : 0;
    case OPT_FLASH:
        o->dir = v;
        return *v ? 0 : usage_error("%s is empty: give the device's directory", name);
    case OPT_ID:
        o->id = v;
        return printable(v, TCPOTA_MAX_STR)
                   ? 0
                   : usage_error("%s: need 1..%u printable ASCII characters", name,
                                 TCPOTA_MAX_STR);
    case OPT_MODEL:
        o->model = v;
        o->model_given = 1;
        return printable(v, TCPOTA_MAX_NAME)
                   ? 0
                   : usage_error("%s: need 1..%u printable ASCII characters", name,
                                 TCPOTA_MAX_NAME);
    case OPT_FACTORY: /* a version as the protocol carries it; the flash keeps as many */
        o->factory = v;
        o->factory_given = 1;
        return printable(v, TCPOTA_MAX_NAME)
                   ? 0
                   : usage_error("%s: need 1..%u printable ASCII characters", name,
                                 TCPOTA_MAX_NAME);
    case OPT_SLOT: {
        unsigned long long sz;
        /* A size, as serve's --max-image: "4M" as well as 4194304. */
        if (cli_size(v, name, TCPOTA_SECTOR_SIZE, DEVICE_SLOT_MAX, &sz) < 0) {
            return 2;
        }
        o->slot_size = (uint32_t)sz;
        return sz % TCPOTA_SECTOR_SIZE
                   ? usage_error("%s: %llu is not a multiple of %u (a flash sector); give %llu or"
                                 " %llu", name, sz, TCPOTA_SECTOR_SIZE,
                                 sz / TCPOTA_SECTOR_SIZE * TCPOTA_SECTOR_SIZE,
                                 (sz / TCPOTA_SECTOR_SIZE + 1) * TCPOTA_SECTOR_SIZE)
                   : 0;
    }
    case OPT_HEALTH:
        if (strcmp(v, "ok") && strcmp(v, "fail") && strcmp(v, "crash")) {
            return usage_error("--health: '%s' is not ok, fail or crash", v);
        }
        o->healthy = !strcmp(v, "ok") ? 1 : !strcmp(v, "crash") ? DEVICE_HEALTH_CRASH : 0;
        return 0;
    case OPT_ACK:
        if (u32_opt(v, name, TCPOTA_SECTOR_SIZE, 1u << 30, &n) < 0) {
            return 2;
        }
        o->ack_interval = n;
        return n % TCPOTA_SECTOR_SIZE
                   ? usage_error("%s: %u is not a multiple of %u (a flash sector); give %u or %u",
                                 name, (unsigned)n, TCPOTA_SECTOR_SIZE,
                                 (unsigned)(n / TCPOTA_SECTOR_SIZE * TCPOTA_SECTOR_SIZE),
                                 (unsigned)((n / TCPOTA_SECTOR_SIZE + 1) * TCPOTA_SECTOR_SIZE))
                   : 0;
    case OPT_ATTEMPTS:
        if (u32_opt(v, name, 1, 1000000, &n) < 0) {
            return 2;
        }
        o->max_attempts = n;
        return 0;
    case OPT_BMIN:
        return u32_opt(v, name, 1, 3600000, &o->backoff_min) < 0 ? 2 : 0;
    case OPT_BMAX:
        return u32_opt(v, name, 1, 3600000, &o->backoff_max) < 0 ? 2 : 0;
    case OPT_TIMEOUT:
        return u32_opt(v, name, 100, 86400000, &o->timeout_ms) < 0 ? 2 : 0;
    case OPT_CHECK:
        return u32_opt(v, name, 1, TCPOTA_RUNNER_CHECK_MAX_S, &o->check_interval) < 0 ? 2 : 0;
    case OPT_PROGRESS:
        return progress_parse(v, &o->progress) < 0
                   ? usage_error("--progress: '%s' is not auto, bar, lines or none", v)
                   : 0;
    case OPT_QUIET:
        o->quiet = 1;
        return 0;
    case OPT_INIT:
        o->init = 1;
        return 0;
    case OPT_NO_TRUST:
        o->no_trust = 1;
        return 0;
    case OPT_NO_SECRET:
        o->no_secret = 1;
        return 0;
    case OPT_TRUST:
        if (o->ntrust == MAX_TRUST) {
            return usage_error("%s: at most %u keys", name, (unsigned)MAX_TRUST);
        }
        if (sodium_init() < 0 || cli_load_pubkey(v, o->trust[o->ntrust]) < 0) {
            return 2;
        }
        o->ntrust++;
        return 0;
    case OPT_SECRET: {
        int len = sodium_init() < 0 ? -1 : cli_load_secret(v, o->secret, sizeof(o->secret));
        if (len < 0) {
            return 2;
        }
        if ((size_t)len < TCPOTA_SECRET_MIN) {
            fprintf(stderr, "tcpota device: %s: the secret in %s has %d bytes; at least %u are "
                            "needed: get a fleet device's secret with tcpota device secret ID "
                            "--out FILE, or make one for tcpota serve --auth-file with tcpota "
                            "keygen --device-secret\n",
                    name, v, len, TCPOTA_SECRET_MIN);
            return 2;
        }
        o->secret_len = (size_t)len;
        o->secret_given = 1;
        return 0;
    }
    case OPT_CA:
        o->ca = v;
        return *v ? 0 : usage_error("%s: empty file name", name);
    case OPT_HELP:
        break;
    }
    return 0;
}

/* Parses argv[1..]. Returns 0, 2 (usage error) or -1 (--help printed). */
int device_parse_options(struct options *o, int argc, char **argv)
{
    int bmin_given = 0, bmax_given = 0;

    memset(o, 0, sizeof(*o));
    o->model = DEVICE_DEFAULT_MODEL;
    o->factory = "0.0.0";
    o->healthy = 1;
    o->ack_interval = TCPOTA_DEV_ACK_DEFAULT;
    o->max_attempts = TCPOTA_RUNNER_ATTEMPTS_DEFAULT;
    o->backoff_min = TCPOTA_RUNNER_BACKOFF_MIN_MS;
    o->backoff_max = TCPOTA_RUNNER_BACKOFF_MAX_MS;
    o->timeout_ms = 30000;
    o->progress = PROGRESS_AUTO;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '='), *val = NULL;
        char why[CLI_OPT_WHY];
        int k = opt_find(arg), rc;

        if (k < 0) {
            return usage_error(arg[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'",
                               arg);
        }
        if (g_opts[k].id == OPT_HELP) {
            usage(stdout);
            return -1;
        }
        if (!g_opts[k].has_arg) {
            if (eq) {
                return usage_error("%s takes no value", g_opts[k].name);
            }
        } else if (!(val = cli_opt_value(argc, argv, &i, g_opts[k].name, NULL, why, sizeof(why)))) {
            return usage_error("%s", why);
        }
        bmin_given |= g_opts[k].id == OPT_BMIN;
        bmax_given |= g_opts[k].id == OPT_BMAX;
        rc = opt_apply(o, g_opts[k].id, g_opts[k].name, val);
        if (rc) {
            return rc;
        }
    }
    if (!o->server) {
        return usage_error("%s is required", "--server HOST:PORT");
    }
    if (!o->dir) {
        return usage_error("%s is required", "--flash DIR");
    }
    if (o->backoff_min > o->backoff_max) { /* named as given: a default is said to be one */
        if (!bmin_given) {
            return usage_error("--backoff-max-ms %u is below --backoff-min-ms (default %u): raise "
                               "it or lower --backoff-min-ms", (unsigned)o->backoff_max,
                               (unsigned)o->backoff_min);
        }
        if (!bmax_given) {
            return usage_error("--backoff-min-ms %u is above --backoff-max-ms (default %u): lower "
                               "it or raise --backoff-max-ms", (unsigned)o->backoff_min,
                               (unsigned)o->backoff_max);
        }
        return usage_error("--backoff-min-ms %u is larger than --backoff-max-ms %u",
                           (unsigned)o->backoff_min, (unsigned)o->backoff_max);
    }
    if (o->no_trust && o->ntrust) {
        return usage_error("--no-trust and --trust do not go together: --trust gives the keys "
                           "DIR keeps from now on, --no-trust drops them");
    }
    if (o->no_secret && o->secret_given) {
        return usage_error("--no-secret and --secret do not go together: --secret gives the "
                           "secret DIR keeps from now on, --no-secret drops it");
    }
    if (o->quiet) {
        o->progress = PROGRESS_NONE;
    }
    return 0;
}

