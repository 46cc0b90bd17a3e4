/* device_ident.c - a host device's id, model and factory version, kept in
 * its NVS from its creation, and the check of a run's flags against them. */
#include "device_ident.h"
#include "cli.h"

#include "posix_port.h" /* TCPOTA_POSIX_NVS_FILE */
#include "tcpota/tcpota.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The record key into buf (cap bytes, NUL-terminated): 1 when present, 0
 * when DIR has none (made before records were kept), -1 on failure. */
static int get(const struct tcpota_port *port, const char *key, char *buf, size_t cap)
{
    int n = port->kv_get(port->ctx, key, (uint8_t *)buf, cap - 1);

    if (n == TCPOTA_ERR_NOENT) {
        return 0;
    }
    if (n < 0) {
        return -1;
    }
    buf[n] = 0;
    return 1;
}

static int put(const struct tcpota_port *port, const char *key, const char *val)
{
    return port->kv_set(port->ctx, key, (const uint8_t *)val, strlen(val)) < 0 ? -1 : 0;
}

#define IDENT_READ "reading the device's id and model"
#define IDENT_WRITE "recording the device's id and model"

static int nvs_failed(const char *prefix, const char *dir, const char *what)
{
    fprintf(stderr, "%s%s in %s/nvs.bin failed; see whether the directory is damaged: "
                    "tcpota device status --flash %s\n", prefix, what, dir, dir);
    return 1;
}

/* An --id or --model other than DIR's: refused, saying both. */
static int differs(const char *prefix, const struct options *o, const char *flag,
                   const char *given, const char *held)
{
    char q[4 * TCPOTA_MAX_STR + 16], qg[4 * TCPOTA_MAX_STR + 3];

    cli_shell_opt(flag, held, q, sizeof(q)); /* "--id dev1", or "--id=--dev" */
    if (strcmp(flag, "--id") == 0) {
        fprintf(stderr, "%s--flash %s belongs to device %s (its id since it was created), not %s: "
                        "give %s or leave --id out; device %s needs a --flash DIR of its "
                        "own\n",
                prefix, o->dir, held, given, q, cli_shell_word(given, qg, sizeof(qg)));
        return 2;
    }
    fprintf(stderr, "%s--model %s does not fit --flash %s: the device there is of model %s "
                    "(since it was created); give %s or leave --model out; a device of "
                    "model %s needs a --flash DIR of its own\n",
            prefix, given, o->dir, held, q, cli_shell_word(given, qg, sizeof(qg)));
    return 2;
}

/* A --slot-size or --factory-version other than DIR's: they only shape a
 * new device, and a script may pass the same ones on every run, so the run
 * goes on as DIR is, with a warning rather than an error. */
static void ignored(const char *prefix, const struct options *o, const char *flag,
                    const char *given, const char *held, const char *what)
{
    fprintf(stderr, "%swarning: %s %s ignored: --flash %s was created with %s %s, and only a "
                    "new device takes it (leave %s out, or give a new --flash DIR)\n",
            prefix, flag, given, o->dir, what, held, flag);
}

/* A DIR made by a tcpota device older than the records (2026-12-05), and
 * a flag of what is not recorded left out: refused (2), as its default
 * would be recorded for good (an upgrade trial's model-c3 device took the
 * default esp32 and esp32's image, and was then refused --model c3). */
static int unrecorded(const char *prefix, const struct options *o, const char *default_id,
                      int need_id, int need_model)
{
    int both = need_id && need_model;
    const char *what = both ? "id and model" : need_id ? "id" : "model";

    fprintf(stderr, "%s--flash %s holds a device made by an older tcpota device, which kept no "
                    "record of its %s; give the %s%s%s that device ran with (by default: %s%s%s%s) "
                    "in this run: %s recorded, and later runs take %s from %s\n",
            prefix, o->dir, what, need_id ? "--id" : "", both ? " and " : "",
            need_model ? "--model" : "", need_id ? "--id " : "", need_id ? default_id : "",
            both ? " " : "", need_model ? "--model " DEVICE_DEFAULT_MODEL : "",
            both ? "they are" : "it is", both ? "them" : "it", o->dir);
    return 2;
}

/* The id or the model: DIR's record when there is one (a flag that
 * differs is refused), else the flag's value or dflt, recorded. */
static int one(const struct tcpota_port *port, const struct options *o, int created,
               const char *key, const char *flag, const char *given, const char *dflt,
               const char *prefix, char *buf, size_t cap)
{
    int rc = created ? 0 : get(port, key, buf, cap);

    if (rc < 0) {
        return nvs_failed(prefix, o->dir, IDENT_READ);
    }
    if (rc == 1) {
        return given && strcmp(given, buf) != 0 ? differs(prefix, o, flag, given, buf) : 0;
    }
    snprintf(buf, cap, "%s", given ? given : dflt);
    return put(port, key, buf) < 0 ? nvs_failed(prefix, o->dir, IDENT_WRITE) : 0;
}

int device_ident(const struct tcpota_port *port, const struct options *o, int created,
                 const char *default_id, const char *prefix, struct device_ident *out)
{
    char factory[TCPOTA_MAX_NAME + 1], slots[32], given[24], named[TCPOTA_MAX_STR + 16];
    int rc;

    if (!created && o->slot_size && o->slot_size != port->slot_size) {
        snprintf(slots, sizeof(slots), "%lu bytes", (unsigned long)port->slot_size);
        snprintf(given, sizeof(given), "%lu", (unsigned long)o->slot_size);
        ignored(prefix, o, "--slot-size", given, slots, "slots of");
    }
    /* Only a device made with the record has it: the factory slot of an
     * older one may have been overwritten by an update since. */
    rc = created ? put(port, DEVICE_KEY_FACTORY, o->factory)
                 : get(port, DEVICE_KEY_FACTORY, factory, sizeof(factory));
    if (rc < 0) {
        return nvs_failed(prefix, o->dir, created ? IDENT_WRITE : IDENT_READ);
    }
    if (rc == 1 && o->factory_given && strcmp(o->factory, factory) != 0) {
        ignored(prefix, o, "--factory-version", o->factory, factory, "factory version");
    }
    /* A factory record without the others: this tcpota's creation, cut
     * short before it recorded them (a kill, a full disk); they are
     * recorded now, as at a creation. No record at all: an older tcpota's. */
    if (!created && rc == 0) {
        int has_id = get(port, DEVICE_KEY_ID, out->id, sizeof(out->id));
        int has_model = get(port, DEVICE_KEY_MODEL, out->model, sizeof(out->model));

        if (has_id < 0 || has_model < 0) {
            return nvs_failed(prefix, o->dir, IDENT_READ);
        }
        if ((!has_id && !o->id) || (!has_model && !o->model_given)) {
            return unrecorded(prefix, o, default_id, !has_id && !o->id,
                              !has_model && !o->model_given);
        }
    }
    rc = one(port, o, created, DEVICE_KEY_ID, "--id", o->id, default_id, prefix, out->id,
             sizeof(out->id));
    if (rc != 0) {
        return rc;
    }
    /* The id known, the lines name it, not DIR (a trial: "device devs/r1:"
     * for device r1), as the run's lines do from here on. */
    snprintf(named, sizeof(named), "device %s: ", out->id);
    return one(port, o, created, DEVICE_KEY_MODEL, "--model", o->model_given ? o->model : NULL,
               o->model, named, out->model, sizeof(out->model));
}

/* 1 when every key of a (na keys) is among b's (nb keys). */
static int keys_within(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;

        while (j < nb && memcmp(a + i * TCPOTA_PUBKEY_LEN, b + j * TCPOTA_PUBKEY_LEN,
                                TCPOTA_PUBKEY_LEN) != 0) {
            j++;
        }
        if (j == nb) {
            return 0;
        }
    }
    return 1;
}

int device_trust_count(int n)
{
    if (n == TCPOTA_ERR_NOENT) {
        return 0;
    }
    return n < 0 || (size_t)n % TCPOTA_PUBKEY_LEN != 0 ? -1 : (int)((size_t)n / TCPOTA_PUBKEY_LEN);
}

int device_trust(const struct tcpota_port *port, struct options *o, const char *prefix)
{
    uint8_t kept[MAX_TRUST * TCPOTA_PUBKEY_LEN + 1];
    int n = port->kv_get(port->ctx, DEVICE_KEY_TRUST, kept, sizeof(kept));
    /* Longer than any list (NOSPC) or not a number of keys: no list, but
     * --trust or --no-trust write over it. */
    int count = device_trust_count(n), bad = count < 0;
    size_t nkept = bad ? 0 : (size_t)count;

    if (n < 0 && n != TCPOTA_ERR_NOENT && n != TCPOTA_ERR_NOSPC) {
        return nvs_failed(prefix, o->dir, "reading the trusted keys");
    }
    if (o->no_trust) {
        if (n != TCPOTA_ERR_NOENT && port->kv_erase(port->ctx, DEVICE_KEY_TRUST) < 0) {
            return nvs_failed(prefix, o->dir, "forgetting the trusted keys");
        }
        if (n != TCPOTA_ERR_NOENT) {
            fprintf(stderr, "%sforgot the trusted keys %s kept (--no-trust): unsigned images are"
                            " accepted\n", prefix, o->dir);
        }
        return 0;
    }
    if (o->ntrust) {
        const uint8_t *given = o->trust[0];

        if (!bad && keys_within(given, o->ntrust, kept, nkept) &&
            keys_within(kept, nkept, given, o->ntrust)) {
            return 0; /* the same keys, in any order */
        }
        if (port->kv_set(port->ctx, DEVICE_KEY_TRUST, given, o->ntrust * TCPOTA_PUBKEY_LEN) < 0) {
            return nvs_failed(prefix, o->dir, "recording the trusted keys");
        }
        if (n != TCPOTA_ERR_NOENT) {
            fprintf(stderr, "%sthe --trust keys replace the keys %s kept: later runs trust these\n",
                    prefix, o->dir);
        } else if (!o->quiet) { /* said once: from now on a run without --trust is not a run without keys */
            fprintf(stderr, "%s%s keeps the --trust keys: later runs without --trust use them"
                            " (--no-trust drops them)\n", prefix, o->dir);
        }
        return 0;
    }
    if (bad) {
        fprintf(stderr, "%s%s/nvs.bin " DEVICE_TRUST_BAD "; give the keys again with --trust, or "
                        "drop them with --no-trust\n", prefix, o->dir);
        return 1;
    }
    memcpy(o->trust, kept, nkept * TCPOTA_PUBKEY_LEN);
    o->ntrust = nkept;
    return 0;
}

/* DIR's NVS made private before it holds the secret (and before a kept one
 * is used). 0, or 1 after a message. */
static int nvs_private(const char *dir, const char *prefix)
{
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/" TCPOTA_POSIX_NVS_FILE, dir);

    if (n < 0 || (size_t)n >= sizeof(path) || chmod(path, S_IRUSR | S_IWUSR) < 0) {
        fprintf(stderr, "%scannot make %s/" TCPOTA_POSIX_NVS_FILE " private (chmod 600) for the "
                        "device secret: %s\n", prefix, dir,
                n < 0 || (size_t)n >= sizeof(path) ? "path too long" : strerror(errno));
        return 1;
    }
    return 0;
}

/* NVS writes its table to one sector, then the next change to the other:
 * the sector before a secret was replaced or forgotten still holds it. Two
 * more changes (a record set, then erased) write both sectors again. */
static int nvs_scrub(const struct tcpota_port *port)
{
    static const uint8_t nothing = 0;

    if (port->kv_set(port->ctx, DEVICE_KEY_SCRUB, &nothing, sizeof(nothing)) < 0) {
        return -1;
    }
    return port->kv_erase(port->ctx, DEVICE_KEY_SCRUB) < 0 ? -1 : 0;
}

int device_secret_len_ok(int n)
{
    return n >= (int)TCPOTA_SECRET_MIN && n <= (int)TCPOTA_SECRET_MAX;
}

int device_secret(const struct tcpota_port *port, struct options *o, const char *prefix)
{
    uint8_t kept[TCPOTA_SECRET_MAX + 1];
    int n = port->kv_get(port->ctx, DEVICE_KEY_SECRET, kept, sizeof(kept));
    int rc = 0;

    if (n < 0 && n != TCPOTA_ERR_NOENT && n != TCPOTA_ERR_NOSPC) {
        return nvs_failed(prefix, o->dir, "reading the device secret");
    }
    if (o->no_secret) {
        if (n != TCPOTA_ERR_NOENT &&
            (port->kv_erase(port->ctx, DEVICE_KEY_SECRET) < 0 || nvs_scrub(port) < 0)) {
            rc = nvs_failed(prefix, o->dir, "forgetting the device secret");
        } else if (n != TCPOTA_ERR_NOENT) {
            fprintf(stderr, "%sforgot the secret %s kept (--no-secret): it answers no challenge "
                            "until --secret is given\n", prefix, o->dir);
        }
    } else if (o->secret_given) {
        if (device_secret_len_ok(n) && (size_t)n == o->secret_len &&
            sodium_memcmp(kept, o->secret, o->secret_len) == 0) {
            rc = 0; /* the same secret */
        } else if ((rc = nvs_private(o->dir, prefix)) != 0) {
            /* not written where other users can read it */
        } else if (port->kv_set(port->ctx, DEVICE_KEY_SECRET, o->secret, o->secret_len) < 0 ||
                   (n != TCPOTA_ERR_NOENT && nvs_scrub(port) < 0)) {
            rc = nvs_failed(prefix, o->dir, "recording the device secret");
        } else if (n != TCPOTA_ERR_NOENT) {
            fprintf(stderr, "%sthe --secret replaces the secret %s kept: later runs answer with "
                            "this one\n", prefix, o->dir);
        } else if (!o->quiet) { /* said once, as the --trust keys are */
            fprintf(stderr, "%s%s keeps the --secret (in " TCPOTA_POSIX_NVS_FILE ", mode 600): "
                            "later runs without --secret use it (--no-secret drops it)\n",
                    prefix, o->dir);
        }
    } else if (n != TCPOTA_ERR_NOENT && !device_secret_len_ok(n)) {
        fprintf(stderr, "%s%s/" TCPOTA_POSIX_NVS_FILE " " DEVICE_SECRET_BAD "; give it again with "
                        "--secret, or drop it with --no-secret\n", prefix, o->dir);
        rc = 1;
    } else if (n > 0 && (rc = nvs_private(o->dir, prefix)) == 0) {
        memcpy(o->secret, kept, (size_t)n);
        o->secret_len = (size_t)n;
    }
    sodium_memzero(kept, sizeof(kept));
    return rc;
}
