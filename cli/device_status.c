/*
 * device_status.c - `tcpota device status --flash DIR`: what an emulated
 * device (cli/device.c, ports/posix) runs and where its download resumes,
 * as one line of JSON, without changing DIR.
 */
#include "api.h" /* api_key_id: a key named as tcpota keygen names it */
#include "cli.h"
#include "device_ident.h"
#include "posix_port.h"
#include "tcpota/device.h"
#include "tcpota/tcpota.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static int usage_error(const char *fmt, const char *arg)
{
    fputs("tcpota device: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\ntry 'tcpota device status --help'\n", stderr);
    return 2;
}

static void copy_version(char *dst, const char *src)
{
    size_t n = strnlen(src, TCPOTA_POSIX_VERSION_MAX);

    memcpy(dst, src, n);
    dst[n] = 0;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20 || c > 0x7e) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static void print_id(const uint8_t id[TCPOTA_ID_LEN])
{
    char hex[2 * TCPOTA_ID_LEN + 1];

    fputs(sodium_bin2hex(hex, sizeof(hex), id, TCPOTA_ID_LEN), stdout);
}

/* The host device's records that status shows (device_ident.h). */
enum { REC_ID, REC_MODEL, REC_TRUST, REC_SECRET, REC_COUNT };

struct records {
    struct tcpota_posix_record r[REC_COUNT];
    char id[TCPOTA_MAX_STR + 1];
    char model[TCPOTA_MAX_NAME + 1];
    uint8_t trust[MAX_TRUST * TCPOTA_PUBKEY_LEN];
    uint8_t secret[TCPOTA_SECRET_MAX + 1]; /* read to be told apart, never shown */
};

static void records_init(struct records *rec)
{
    rec->r[REC_ID] = (struct tcpota_posix_record){DEVICE_KEY_ID, (uint8_t *)rec->id,
                                                  sizeof rec->id - 1, 0};
    rec->r[REC_MODEL] = (struct tcpota_posix_record){DEVICE_KEY_MODEL, (uint8_t *)rec->model,
                                                     sizeof rec->model - 1, 0};
    rec->r[REC_TRUST] = (struct tcpota_posix_record){DEVICE_KEY_TRUST, rec->trust,
                                                     sizeof rec->trust, 0};
    rec->r[REC_SECRET] = (struct tcpota_posix_record){DEVICE_KEY_SECRET, rec->secret,
                                                      sizeof rec->secret, 0};
}

/* A text record as a JSON string, or null when DIR has none (a device made
 * by an older tcpota device, or one whose creation is not finished) or one
 * longer than any id or model, said on stderr. */
static void print_text(const char *name, const char *what, const struct tcpota_posix_record *r,
                       char *text, const char *dir)
{
    printf("\"%s\":", name);
    if (r->len == TCPOTA_ERR_NOSPC) {
        cli_err("%s/nvs.bin holds a %s longer than a %s can be (%s: null); tcpota device refuses "
                "to run it: give the device a new --flash DIR\n", dir, what, what, name);
    }
    if (r->len < 0) {
        printf("null");
        return;
    }
    text[r->len] = 0;
    json_string(text);
}

/* The keys the device trusts, each by its key id (as tcpota keygen and
 * verify name it): [] when it keeps none (it accepts unsigned images);
 * null, said on stderr, when the record is not a list of keys (the next
 * run refuses to start until --trust or --no-trust is given). */
static void print_trust(const struct tcpota_posix_record *r, const char *dir)
{
    char kid[API_KEY_ID_HEX + 1];
    int n = device_trust_count(r->len);

    printf(",\"trusted_keys\":");
    if (n < 0) {
        cli_err("%s/nvs.bin " DEVICE_TRUST_BAD " (trusted_keys: null); give the keys again with "
                "tcpota device --trust, or drop them with --no-trust\n", dir);
        printf("null");
        return;
    }
    putchar('[');
    for (int i = 0; i < n; i++) {
        api_key_id(r->buf + (size_t)i * TCPOTA_PUBKEY_LEN, kid);
        printf("%s\"%s\"", i ? "," : "", kid);
    }
    putchar(']');
}

/* Whether DIR keeps a secret (device_secret), never its bytes: null, said
 * on stderr, for a record that is none (the next run refuses to start
 * until --secret or --no-secret is given). */
static void print_secret(const struct tcpota_posix_record *r, const char *dir)
{
    printf(",\"secret\":");
    if (r->len == TCPOTA_ERR_NOENT) {
        printf("false");
    } else if (device_secret_len_ok(r->len)) {
        printf("true");
    } else {
        cli_err("%s/" TCPOTA_POSIX_NVS_FILE " " DEVICE_SECRET_BAD " (secret: null); give it again "
                "with tcpota device --secret, or drop it with --no-secret\n", dir);
        printf("null");
    }
}

/* resume: where the next download goes on, or NULL for none the device
 * would use (absent, torn or implausible: the core's rule). */
static void print_status(const struct tcpota_posix_slot_info *run,
                         const struct tcpota_dev_resume *resume, struct records *rec,
                         const char *dir)
{
    char version[TCPOTA_POSIX_VERSION_MAX + 1];

    copy_version(version, run->version);
    putchar('{');
    print_text("device", "device id", &rec->r[REC_ID], rec->id, dir);
    putchar(',');
    print_text("model", "model", &rec->r[REC_MODEL], rec->model, dir);
    printf(",\"slot\":%u,\"version\":", (unsigned)run->slot);
    json_string(version);
    printf(",\"size\":%lu,\"sha256\":", (unsigned long)run->size);
    if (run->size) {
        putchar('"');
        print_id(run->sha256);
        putchar('"');
    } else {
        printf("null"); /* an empty factory slot: no image, not the hash of nothing */
    }
    printf(",\"pending\":%s,\"rolled_back\":%s,\"resume\":", run->pending ? "true" : "false",
           run->rolled_back ? "true" : "false");
    if (resume) {
        printf("{\"offset\":%lu,\"size\":%lu,\"image\":\"", (unsigned long)resume->offset,
               (unsigned long)resume->size);
        print_id(resume->id);
        printf("\"}");
    } else {
        printf("null");
    }
    print_trust(&rec->r[REC_TRUST], dir);
    print_secret(&rec->r[REC_SECRET], dir);
    printf("}\n");
}

/* `tcpota device status --flash DIR`. DIR is only read (its files opened
 * O_RDONLY, see tcpota_posix_inspect): the JSON describes what the
 * bootloader picks at the next reset, i.e. what the device runs now or,
 * after an update not yet rebooted into, at its next start (pending). */
int cmd_device_status(int argc, char **argv)
{
    static struct tcpota_posix_dev dev; /* ~9 KiB of workspace: off the stack */
    static struct tcpota_posix_status st;
    static struct records rec;
    struct tcpota_dev_resume resume;
    const char *dir = NULL;
    char why[CLI_OPT_WHY];
    int rc, resumable;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tcpota device status --flash DIR\n\n"
                   "Prints the device in DIR (its id and model), the image it runs (or boots\n"
                   "next), its resume point, the keys it trusts (by key id; []: none, so it\n"
                   "accepts unsigned images) and whether it keeps a --secret (never its\n"
                   "bytes) as JSON. DIR is only read.\n");
            return 0;
        } else if (strcmp(argv[i], "--flash") == 0 || strncmp(argv[i], "--flash=", 8) == 0) {
            if (!(dir = cli_opt_value(argc, argv, &i, "--flash", "DIR", why, sizeof(why)))) {
                return usage_error("%s", why);
            }
        } else {
            return usage_error(argv[i][0] == '-' ? "status: unknown option '%s'"
                                                 : "status: unexpected argument '%s'",
                               argv[i]);
        }
    }
    if (!dir) {
        return usage_error("%s", "status: --flash DIR is required");
    }
    if (!*dir) { /* as tcpota device says it (device_opts.c) */
        return usage_error("%s", "status: --flash is empty: give the device's directory");
    }
    if (cli_check_dir(dir, "--flash", 0) < 0) {
        return 2; /* a bad argument, as in tcpota device */
    }
    records_init(&rec);
    rc = tcpota_posix_inspect_records(&dev, dir, &st, rec.r, REC_COUNT);
    /* The records are copied out; DIR's NVS tables (a kept secret among
     * them) are not needed again, nor the secret's bytes: its length is. */
    sodium_memzero(dev.nvs_cur, sizeof(dev.nvs_cur));
    sodium_memzero(dev.nvs_scratch, sizeof(dev.nvs_scratch));
    sodium_memzero(rec.secret, sizeof(rec.secret));
    if (rc == TCPOTA_ERR_NOENT) {
        const char *d = tcpota_posix_strerror_detail(&dev);
        if (tcpota_posix_creation_cut_short(dir)) {
            cli_err("%s holds no device yet: its creation was cut short (a full disk?); run the "
                    "same tcpota device command again to finish it (with the same --id and "
                    "--model: it starts over, and takes what this run gives)\n", dir);
        } else if (!cli_dir_empty(dir) && !tcpota_posix_holds_device_files(dir)) {
            cli_err("%s " FLASH_NOT_A_DEVICE "\n", dir); /* as tcpota device says it */
            return 2;
        } else if (*d && !cli_dir_empty(dir)) { /* as tcpota device says it */
            cli_err("%s; " FLASH_MISSING_HINT "\n", d);
        } else if (*d) {
            cli_err("%s\n", d); /* "DIR holds no device (...)" */
        } else {
            cli_err("no device flash in %s\n", dir);
        }
        return cli_dir_empty(dir) ? 2 : 1; /* an empty one: the wrong --flash, as in tcpota device */
    }
    if (rc < 0) {
        cli_err("cannot open device flash in %s: %s (%s)\n", dir, tcpota_strerror(rc),
                tcpota_posix_strerror_detail(&dev));
        cli_err("%s\n", FLASH_DAMAGED_HINT);
        return 1;
    }
    /* As the device's next session takes it: a record of the image that
     * runs (a cut between set_boot and its erasure) is none. */
    resumable = st.resume_len >= 0 &&
                tcpota_dev_resume_parse(st.resume, (size_t)st.resume_len, st.slot_size, &resume) == 0 &&
                !tcpota_dev_resume_stale(&resume, st.next.size ? st.next.sha256 : NULL);
    print_status(&st.next, resumable ? &resume : NULL, &rec, dir);
    return cli_flush() == 0 ? 0 : 1;
}

