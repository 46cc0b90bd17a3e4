/*
 * device_ident.h - what a host device is (`tcpota device --flash DIR`): the
 * id, model and factory version it was created with. A real ESP32 keeps
 * them in its NVS, written once when it is provisioned; the host device
 * keeps them in DIR's NVS the same way, so that a later run with other
 * flags cannot silently turn DIR into another device.
 *
 * Use: after tcpota_posix_open() (and before the first boot, which may
 * write), device_ident() with the run's options; run the device as the
 * id and model it returns.
 */
#ifndef TCPOTA_CLI_DEVICE_IDENT_H
#define TCPOTA_CLI_DEVICE_IDENT_H

#include "device_opts.h"

#include "tcpota/codec.h"
#include "tcpota/port.h"

#include <stddef.h>

/* The host device's records in NVS (the core's keys start "tcpota."). */
#define DEVICE_KEY_ID "host.id"
#define DEVICE_KEY_MODEL "host.model"
#define DEVICE_KEY_FACTORY "host.factory"
#define DEVICE_KEY_TRUST "host.trust" /* the trusted keys, TCPOTA_PUBKEY_LEN bytes each */
#define DEVICE_KEY_SECRET "host.secret" /* the device secret (--secret) */
#define DEVICE_KEY_SCRUB "host.scrub"   /* set and erased at once: both NVS sectors written */

struct device_ident {
    char id[TCPOTA_MAX_STR + 1];
    char model[TCPOTA_MAX_NAME + 1];
};

/* Records the identity of a device created in this run (created != 0):
 * --id (else default_id), --model and --factory-version. For one that
 * exists, checks the flags against its records: an --id or --model that
 * differs from DIR's is refused (the server would take DIR for another
 * device); a --factory-version or --slot-size that differs is ignored with
 * a warning (they only shape a new device); what was not given is taken
 * from DIR. A DIR made before these records existed takes the id and model
 * of this run, from then on, both given: a flag left out of what DIR does
 * not record is refused (2), as its default would be recorded for good (a
 * factory record alone: this tcpota's creation cut short, finished as one).
 * port: the open device's (kv_get, kv_set, slot_size). Messages start with prefix ("device ID: ").
 * Returns 0 with *out filled; 2 after a message when the flags do not fit
 * DIR (a usage error, exit 2); 1 after a message when NVS failed. */
int device_ident(const struct tcpota_port *port, const struct options *o, int created,
                 const char *default_id, const char *prefix, struct device_ident *out);

/* The keys the device trusts, kept in DIR as an ESP32's firmware keeps
 * them: --trust keys replace what DIR kept (and are kept from now on);
 * none given, DIR's keys are loaded into o->trust (a run that left --trust
 * out silently accepted unsigned images on a device that had only run
 * signed ones: a trial); --no-trust forgets them. Says what changed, with
 * prefix. Returns 0, or 1 after a message when NVS failed or holds a
 * record that is not a list of keys. */
int device_trust(const struct tcpota_port *port, struct options *o, const char *prefix);

/* The keys a trust record holds, from kv_get's answer n (its length or an
 * error) for a buffer of MAX_TRUST keys: 0 when DIR keeps none
 * (TCPOTA_ERR_NOENT), their count, or -1 when it is no list of keys (a
 * length no key count makes, or more keys than a list holds: NOSPC). What
 * device_trust refuses to run on and device status shows as null. */
int device_trust_count(int n);
/* The device's secret, kept in DIR as an ESP32 keeps it in NVS (provisioned
 * once): --secret replaces what DIR kept (and is kept from now on, DIR's
 * nvs.bin made mode 600); none given, DIR's is loaded into o->secret (a
 * trial's device, run later without --secret, was refused by a server
 * that knew its id's secret); --no-secret forgets it. Says what changed,
 * with prefix. Returns 0, or 1 after a message when NVS failed or holds a
 * record that is no secret. */
int device_secret(const struct tcpota_port *port, struct options *o, const char *prefix);
/* 1 when kv_get's answer n (a length, or an error) is a secret's length:
 * what device_secret runs with and device status shows as true. */
int device_secret_len_ok(int n);
#define DEVICE_SECRET_BAD "holds a device secret record that is not one (its length)"

/* How both say such a record ("DIR/nvs.bin " before it). */
#define DEVICE_TRUST_BAD "holds a record of trusted keys that is not a list of keys"


#endif
