/* cmd_fleet_device.c - `tcpota device list|show|set|secret|retry|rm`: the devices a
 * fleet server knows, through the control API (docs/api.md,
 * api_client.h). Every other `tcpota device ...` is the host device
 * simulator (device.c); cmd_device hands these six words over to here. */
#include "api_client.h"
#include "key_tags.h"
#include "cli.h"
#include "table.h"

#include "tcpota/codec.h" /* TCPOTA_MAX_STR */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota device list [--model M] [--state S] [--group G] [--limit N]\n"
            "                          [--after ID] [--id-prefix P] [options]\n"
            "       tcpota device show ID [options]\n"
            "       tcpota device set ID --group G [options]\n"
            "       tcpota device secret ID [--out FILE] [--force] [options]\n"
            "       tcpota device retry ID [options]\n"
            "       tcpota device rm ID [ID...] [options]\n"
            "\n"
            "The devices a fleet server (tcpota serve --data DIR) has seen, through its\n"
            "control API. (tcpota device --server ... runs a host device: tcpota device --help.)\n"
            "\n"
            "  list                 devices, filtered (exact match), at most --limit (server\n"
            "                       default 1000); --after ID: the page after that device\n"
            "    --state S          seen, up-to-date, waiting, offered, downloading, verified,\n"
            "                       updated, rolled-back, boot-failed, declined, failed\n"
            "    --group G          the devices of group G (--group \"\": those in no group)\n"
            "    --id-prefix P      the devices whose id starts with P\n"
            "  show ID              one device: its state and history\n"
            "  set ID --group G     puts it in group G (--group \"\" takes it out)\n"
            "  secret ID            creates a new secret for the device (it replaces the old\n"
            "                       one, and the server resets the connections that\n"
            "                       authenticated with it) and prints it once, as a secret\n"
            "                       file's line\n"
            "    --out FILE         writes that file instead (created, mode 0600)\n"
            "    --force            also for a device that checks in over HTTP (esp_https_ota),\n"
            "                       which cannot authenticate: its downloads are refused\n"
            "                       from then on (right for one moving to tcpota's protocol)\n"
            "  retry ID             forgets the images the device failed or declined, which\n"
            "                       the server holds back from it: they are offered again at\n"
            "                       its next check-in (after fixing a device's setup, say)\n"
            "  rm ID [ID...]        removes each device (decommissioned or replaced; at most\n"
            "                       100): its record, history and secret; a rollout keeps\n"
            "                       counting what it finished there. One that checks in\n"
            "                       again is registered anew; with tcpota serve\n"
            "                       --require-auth it cannot, having no secret (tcpota\n"
            "                       device secret makes one). Its connections that\n"
            "                       authenticated are reset. Exit 1 when any was not there;\n"
            "                       --json: one answer a line\n"
            "\n");
    api_usage_common(f, 0);
}

/* "/v1/devices/<id percent-encoded><tail>" into buf; 2 after a message. */
static int device_path(struct api *a, const char *id, const char *tail, char *buf, size_t cap)
{
    char *e;

    if (!*id) return api_usage(a, "the device ID is empty");
    for (e = (char *)id; *e; e++) {
        /* Said here, before any request (a trial: device rm refused one
         * only after removing those before it). */
        if ((unsigned char)*e < 0x20 || (unsigned char)*e > 0x7e) {
            return api_usage(a, "the device ID '%s' holds a byte that is not printable ASCII: a"
                             " device id is 1 to %u printable ASCII characters", table_c(id),
                             (unsigned)TCPOTA_MAX_STR);
        }
    }
    e = strlen(id) > TCPOTA_MAX_STR ? NULL : api_encode(id);
    if (!e || strlen(e) + strlen(tail) + 16 > cap) {
        free(e);
        /* Its length, not the id: a trial's 100,000 characters filled the
         * terminal. */
        return api_usage(a, "the device ID is too long (%zu characters): at most %u", strlen(id),
                         (unsigned)TCPOTA_MAX_STR);
    }
    snprintf(buf, cap, "/v1/devices/%s%s", e, tail);
    free(e);
    return 0;
}

/* Appends "&name=<value encoded>" (or "?...") to a query being built. */
static int query_add(char *buf, size_t cap, const char *name, const char *value)
{
    char *e;
    size_t n = strlen(buf);

    if (!value) return 0;
    e = api_encode(value);
    if (!e || n + strlen(name) + strlen(e) + 3 > cap) {
        free(e);
        return -1;
    }
    snprintf(buf + n, cap - n, "%c%s=%s", strchr(buf, '?') ? '&' : '?', name, e);
    free(e);
    return 0;
}

static int device_list(struct api *a, int argc, char **argv)
{
    const char *model = NULL, *state = NULL, *group = NULL, *limit = NULL, *after = NULL;
    const char *prefix = NULL, *pos[1];
    const struct api_opt opts[] = {
        {"--model", "M", &model}, {"--state", "S", &state}, {"--group", "G", &group},
        {"--limit", "N", &limit}, {"--after", "ID", &after}, {"--id-prefix", "P", &prefix},
        {NULL, NULL, NULL},
    };
    static const char *const list_fields[][2] = {
        {"model", "--model"}, {"state", "--state"}, {"group", "--group"},
        {"limit", "--limit"}, {"after", "--after"}, {"q", "--id-prefix"}, {NULL, NULL},
    };
    char path[2048] = "/v1/devices";
    json_t *ans = NULL, *d;
    struct table *t;
    long long n;
    size_t i;
    int np, rc = api_parse(a, opts, argc, argv, pos, 0, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (limit && api_number(a, "--limit", limit, "--limit 100", &n) != 0) return 2;
    if (query_add(path, sizeof(path), "model", model) || query_add(path, sizeof(path), "state", state) ||
        query_add(path, sizeof(path), "group", group) || query_add(path, sizeof(path), "limit", limit) ||
        query_add(path, sizeof(path), "after", after) || query_add(path, sizeof(path), "q", prefix)) {
        return api_usage(a, "the filters are too long");
    }
    if ((rc = api_setup(a, 0)) != 0) return rc;
    a->field_opts = list_fields;
    if ((rc = api_request(a, API_GET, path, NULL, 0, NULL, NULL, NULL, &ans, NULL)) != 0) return rc;
    if (*api_str(ans, "warning")) { /* the list may miss devices (a failed commit) */
        fprintf(stderr, "tcpota device: warning: %s\n", table_c(api_str(ans, "warning")));
    }
    if (!a->json) {
        const char *next = json_string_value(json_object_get(ans, "next"));
        t = table_new("ID", "MODEL", "VERSION", "GROUP", "STATE", "IMAGE", ">PROGRESS",
                      "LAST SEEN (UTC)", "ADDRESS", "REASON", NULL);
        json_array_foreach(json_object_get(ans, "devices"), i, d) {
            char img[16], when[32];
            table_row(t);
            table_cell(t, "%s", api_str(d, "id"));
            table_cell(t, "%s", api_str(d, "model"));
            table_cell(t, "%s", *api_str(d, "version") ? api_str(d, "version") : "-");
            table_cell(t, "%s", *api_str(d, "group") ? api_str(d, "group") : "-");
            table_cell(t, "%s", api_str(d, "state"));
            table_cell(t, "%s", table_short_id(api_str(d, "image"), img, sizeof(img)));
            if (json_is_integer(json_object_get(d, "percent")) && api_int(d, "size") > 0) {
                table_cell(t, "%lld%%", api_int(d, "percent"));
            } else {
                table_cell(t, "-");
            }
            table_cell(t, "%s", table_time(api_int(d, "last_seen"), when, sizeof(when)));
            table_cell(t, "%s", *api_str(d, "address") ? api_str(d, "address") : "-");
            table_cell(t, "%s", *api_str(d, "reason") ? api_str(d, "reason") : "-");
        }
        if (table_rows(t) == 0) {
            if (after && !model && !state && !group && !prefix) {
                printf("no devices after %s (ids in byte order)\n", after);
            } else {
                printf("no devices%s\n",
                       model || state || group || after || prefix ? " match" : " yet");
            }
            if (state && strcmp(state, "failed") == 0) {
                /* what a rollout's FAILED column counts (docs/fleet.md) */
                printf("a rollout's FAILED also counts the states rolled-back, boot-failed and "
                       "declined: tcpota device list --state rolled-back (or boot-failed, "
                       "declined)\n");
            }
        } else {
            table_print(t, stdout);
            if (next) {
                char qnext[4 * 256 + 16], same[API_HINT_OPTS];
                printf("%zu of %lld devices; the next page: tcpota device list %s%s "
                       "(with the same filters)\n",
                       table_rows(t), api_int(ans, "total"),
                       cli_shell_opt("--after", table_c(next), qnext, sizeof(qnext)),
                       api_hint_opts(a, same, sizeof(same)));
            }
        }
        table_free(t);
    }
    json_decref(ans);
    return 0;
}

static int device_show(struct api *a, int argc, char **argv)
{
    const char *pos[1];
    char path[600], when[32], img[16];
    json_t *d = NULL, *h;
    struct table *t;
    size_t i;
    int np, rc = api_parse(a, NULL, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "show needs a device ID (see tcpota device list)");
    if ((rc = device_path(a, pos[0], "", path, sizeof(path))) != 0) return rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    if ((rc = api_request(a, API_GET, path, NULL, 0, NULL, NULL, NULL, &d, NULL)) != 0) return rc;
    if (!a->json) {
        printf("device %s: %s\n", table_c(api_str(d, "id")), table_c(api_str(d, "state")));
        printf("  model       %s\n", table_c(api_str(d, "model")));
        /* "running -" read as running nothing (a trial): it is the
         * running image's id, which an HTTP device never says. */
        printf("  version     %s (running image %s)\n",
               *api_str(d, "version") ? table_c(api_str(d, "version")) : "-",
               *api_str(d, "running") ? table_c(api_str(d, "running")) : "not said by the device");
        printf("  group       %s\n", *api_str(d, "group") ? table_c(api_str(d, "group")) : "-");
        printf("  image       %s", *api_str(d, "image") ? table_c(api_str(d, "image")) : "-");
        if (*api_str(d, "image") && api_int(d, "size") > 0) { /* 0: not known (docs/api.md) */
            printf(" (%lld of %lld bytes, %lld%%)", api_int(d, "bytes"), api_int(d, "size"),
                   api_int(d, "percent"));
        }
        printf("\n");
        if (*api_str(d, "reason")) printf("  reason      %s\n", table_c(api_str(d, "reason")));
        printf("  address     %s (protocol %s)\n", table_c(api_str(d, "address")),
               table_c(api_str(d, "protocol")));
        printf("  first seen  %s UTC\n", table_time(api_int(d, "first_seen"), when, sizeof(when)));
        printf("  last seen   %s UTC\n", table_time(api_int(d, "last_seen"), when, sizeof(when)));
        printf("  secret      %s\n", api_bool(d, "has_secret") ? "yes" : "no");
        t = table_new("AT (UTC)", "STATE", "IMAGE", "DETAIL", NULL);
        json_array_foreach(json_object_get(d, "history"), i, h) {
            table_row(t);
            table_cell(t, "%s", table_time(api_int(h, "at"), when, sizeof(when)));
            table_cell(t, "%s", api_str(h, "state"));
            table_cell(t, "%s", table_short_id(api_str(h, "image"), img, sizeof(img)));
            table_cell(t, "%s", *api_str(h, "detail") ? api_str(h, "detail") : "-");
        }
        if (table_rows(t)) {
            printf("\nhistory, newest first:\n");
            table_print(t, stdout);
        }
        table_free(t);
    }
    json_decref(d);
    return 0;
}

static int device_set(struct api *a, int argc, char **argv)
{
    const char *group = NULL, *pos[1];
    const struct api_opt opts[] = {{"--group", "G", &group}, {NULL, NULL, NULL}};
    static const char *const set_fields[][2] = {{"group", "--group"}, {NULL, NULL}};
    char path[600];
    json_t *body, *d = NULL;
    int np, rc = api_parse(a, opts, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "set needs a device ID: tcpota device set ID --group G");
    if (!group) return api_usage(a, "set needs --group G (--group \"\" takes the device out of its group)");
    if ((rc = device_path(a, pos[0], "", path, sizeof(path))) != 0) return rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    body = json_pack("{s:s}", "group", group);
    a->field_opts = set_fields;
    rc = api_request_json(a, API_PATCH, path, body, &d, NULL);
    if (rc == 0 && !a->json) {
        if (*api_str(d, "group")) {
            printf("device %s: group %s\n", table_c(api_str(d, "id")), table_c(api_str(d, "group")));
        } else {
            printf("device %s: no group\n", table_c(api_str(d, "id")));
        }
    }
    json_decref(d);
    return rc;
}

/* --out FILE is created before the request (a secret the server made must
 * have somewhere to go); a signal before it is written removes it, so that
 * the command can simply be run again (an empty FILE would block that: a
 * secret file is never overwritten). Signals the caller ignores (nohup, a
 * background job) stay ignored; while the secret is written they wait, so
 * that a written file is never removed. */
static const int secret_sigs[] = {SIGINT, SIGTERM, SIGHUP};
#define SECRET_NSIGS (sizeof(secret_sigs) / sizeof(secret_sigs[0]))
static const char *volatile secret_out;
static struct sigaction secret_old[SECRET_NSIGS];

static void secret_out_signal(int sig)
{
    if (secret_out) {
        (void)unlink(secret_out); /* async-signal-safe */
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Arms the removal of path on a signal. */
static void secret_out_arm(const char *path)
{
    struct sigaction sa;
    size_t i;

    secret_out = path;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = secret_out_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < SECRET_NSIGS; i++) {
        if (sigaction(secret_sigs[i], NULL, &secret_old[i]) == 0 &&
            secret_old[i].sa_handler != SIG_IGN) {
            (void)sigaction(secret_sigs[i], &sa, NULL);
        }
    }
}

/* The signals back as they were; a signal that came meanwhile (blocked)
 * acts once they are unblocked. */
static void secret_out_disarm(void)
{
    size_t i;

    for (i = 0; i < SECRET_NSIGS; i++) {
        (void)sigaction(secret_sigs[i], &secret_old[i], NULL);
    }
    secret_out = NULL;
}

/* Blocks (on != 0) or unblocks the signals of secret_sigs. */
static void secret_sigs_block(int on)
{
    sigset_t set;
    size_t i;

    sigemptyset(&set);
    for (i = 0; i < SECRET_NSIGS; i++) {
        sigaddset(&set, secret_sigs[i]);
    }
    (void)sigprocmask(on ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* What the new secret (the API's answer d) did: an id never seen before
 * had no secret to replace, and is registered only at its first check-in
 * (before, "the previous one no longer works" for every id). */
static const char *secret_note(const json_t *d)
{
    if (!json_object_get(d, "replaced")) { /* a server that does not say */
        return "the previous one, if any, no longer works";
    }
    if (api_bool(d, "replaced")) {
        return "the previous one no longer works";
    }
    if (api_bool(d, "registered")) {
        return "the device had none: from now on it must authenticate with this one";
    }
    return "the device is not registered yet (it registers at its first check-in): give it this "
           "secret, it must authenticate with it";
}

/* The standard output failed with the new secret of id in it (a full
 * disk, a closed stdout): the server holds a secret that nobody has (a
 * trial: exit 0 and "save it"). Not shown on stderr, which may be a
 * shared log. d: the server's answer; force: --force was given (said
 * again only then: it overrides a guard). Returns 1. */
static int secret_unshown(const char *id, const json_t *d, int force)
{
    char q[4 * 256 + 16];
    int err = cli_stdout_errno;

    fprintf(stderr, "tcpota device: cannot write the new secret of device %s to the standard "
                    "output%s%s; the server holds it%s, and nobody has it: make another "
                    "(tcpota device secret %s%s --out FILE) and give the device that one\n",
            table_c(id), err ? ": " : "", err ? cli_stdout_why(err) : "",
            api_bool(d, "replaced") ? " (the previous one no longer works)" : "",
            cli_shell_word(table_c(id), q, sizeof(q)), force ? " --force" : "");
    clearerr(stdout);
    return 1;
}

static int device_secret(struct api *a, int argc, char **argv)
{
    const char *out = NULL, *force = NULL, *pos[1], *hex;
    const struct api_opt opts[] = {{"--out", "FILE", &out}, {"--force", NULL, &force},
                                   {NULL, NULL, NULL}};
    char path[600], line[300], qid[4 * 256 + 16], qout[4 * 4096 + 16], note[600];
    json_t *d = NULL;
    int np, fd = -1, rc = api_parse(a, opts, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "secret needs a device ID: tcpota device secret ID");
    if ((rc = device_path(a, pos[0], force ? "/secret?force=1" : "/secret", path, sizeof(path))) != 0)
        return rc;
    if (out && !*out) return api_usage(a, "--out is empty; give --out FILE");
    if (out && strcmp(out, "-") == 0) {
        /* Not a file named "-" (a trial found the secret there): without
         * --out the line goes to standard output already. */
        return api_usage(a, "--out - would make a file named '-'; leave --out out to print the"
                            " secret on standard output");
    }
    /* --json prints the answer, secret and all: --out is there to keep it
     * off the terminal and out of logs. */
    if (out && a->json) {
        return api_usage(a, "--json prints the secret itself and --out keeps it in FILE only; "
                            "give one of them");
    }
    if ((rc = api_setup(a, 0)) != 0) return rc;
    /* the file first: once the server made the secret, it must not get lost */
    if (out) {
        struct stat st;

        fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST && lstat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
            if (S_ISDIR(st.st_mode)) {
                fprintf(stderr, "tcpota device: --out: %s is a directory; give the name of a new"
                                " file (e.g. %s/ID.secret)\n", out, out);
            } else { /* a FIFO, a socket, a device, a symbolic link: nothing goes inside */
                fprintf(stderr, "tcpota device: --out: %s is %s; give the name of a new file"
                                " instead\n", out, cli_file_kind(st.st_mode));
            }
            return 2;
        }
        if (fd < 0) {
            fprintf(stderr, "tcpota device: --out: cannot create %s: %s%s\n", out, strerror(errno),
                    errno == EEXIST ? " (a secret file is never overwritten; give a new name)" : "");
            return 2;
        }
        secret_out_arm(out);
    }
    /* Without the answer nobody has the secret, and device show cannot
     * tell an old one from a new one (a trial). */
    snprintf(note, sizeof(note), "if the server still makes the new secret, the device's old one"
             " stops working and the new one reaches nobody: once the server answers, run"
             " tcpota device secret %s%s again and give the device that one",
             cli_shell_word(table_c(pos[0]), qid, sizeof(qid)), force ? " --force" : "");
    a->unknown_note = note;
    errno = 0;
    rc = api_request(a, API_POST, path, NULL, 0, NULL, NULL, NULL, &d, NULL);
    a->unknown_note = NULL;
    if (rc == 0 && a->json && (cli_stdout_errno || ferror(stdout))) {
        /* the answer, secret and all, was printed */
        rc = secret_unshown(pos[0], d, force != NULL);
        json_decref(d);
        return rc;
    }
    hex = api_str(d, "secret");
    if (rc == 0 && (!*hex || strlen(hex) > 256 || strspn(hex, "0123456789abcdefABCDEF") != strlen(hex))) {
        fprintf(stderr, "tcpota device: the server's answer holds no secret in hex\n");
        rc = 1;
    }
    if (rc != 0) {
        if (fd >= 0) {
            close(fd);
            unlink(out);
            secret_out_disarm();
        }
        json_decref(d);
        return rc;
    }
    if (api_bool(d, "http")) {
        /* A secret is taken back only with the device (a trial locked
         * an esp_https_ota device out this way): said before the secret. */
        fprintf(stderr, "tcpota device: warning: device %s checks in over HTTP (esp_https_ota),"
                        " which cannot authenticate: with a secret its HTTP downloads are refused"
                        " (403) from now on; that is right only for a device moving to tcpota's"
                        " own protocol (docs/http-ota.md)\n", table_c(pos[0]));
    }
    snprintf(line, sizeof(line), KEY_TAG_DEVICE " " KEY_TAG_VERSION " %s\n", hex);
    if (fd >= 0) {
        size_t len = strlen(line);
        int wrote, err;
        secret_sigs_block(1); /* from here the file is the secret's, or gone */
        wrote = write(fd, line, len) == (ssize_t)len && fsync(fd) == 0;
        err = errno;
        if (close(fd) != 0 && wrote) {
            wrote = 0;
            err = errno;
        }
        if (!wrote) {
            /* the server holds the new secret: it must reach the user anyway,
             * and the file, empty or partial, must not block the next try */
            unlink(out);
            fprintf(stderr, "tcpota device: --out: cannot write %s: %s (removed it); the new "
                            "secret is:\n%s", out, strerror(err), line);
        }
        secret_out_disarm();
        secret_sigs_block(0);
        if (!wrote) {
            json_decref(d);
            return 1;
        }
        if (!a->json) {
            printf("wrote the new secret of device %s to %s (mode 0600); %s\n", table_c(pos[0]),
                   out, secret_note(d));
            printf("the device takes it with --secret: tcpota device --server HOST:PORT --flash DIR "
                   "%s %s\n", cli_shell_opt("--id", table_c(pos[0]), qid, sizeof(qid)),
                   cli_shell_opt("--secret", out, qout, sizeof(qout)));
        }
    } else if (!a->json) {
        /* stdout: exactly a secret file (tcpota device secret ID > F works);
         * stderr: what to do with it */
        fputs(line, stdout);
        if (cli_flush() != 0) {
            rc = secret_unshown(pos[0], d, force != NULL);
            json_decref(d);
            return rc;
        }
        fprintf(stderr, "tcpota device: the new secret of device %s is shown only this once; "
                        "%s.\n"
                        "The line above is the device's secret file: save it (chmod 600) and "
                        "give it to the device with --secret:\n"
                        "  tcpota device --server HOST:PORT --flash DIR %s --secret FILE\n"
                        "(tcpota device secret %s --out FILE writes the file itself)\n",
                table_c(pos[0]), secret_note(d), cli_shell_opt("--id", table_c(pos[0]), qid, sizeof(qid)),
                cli_shell_word(table_c(pos[0]), qout, sizeof(qout)));
    }
    json_decref(d);
    return 0;
}

static int device_retry(struct api *a, int argc, char **argv)
{
    const char *pos[1];
    const struct api_opt opts[] = {{NULL, NULL, NULL}};
    char path[600];
    json_t *d = NULL;
    long long n;
    int np, rc = api_parse(a, opts, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "retry needs a device ID: tcpota device retry ID");
    if ((rc = device_path(a, pos[0], "/retry", path, sizeof(path))) != 0) return rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    rc = api_request(a, API_POST, path, NULL, 0, NULL, NULL, NULL, &d, NULL);
    if (rc == 0 && !a->json) {
        n = api_int(d, "forgot");
        if (n > 0) {
            printf("device %s: %lld failed image%s or declined offer%s forgotten; the server may"
                   " offer %s again from its next check-in (its state: %s)\n", table_c(pos[0]), n,
                   n == 1 ? "" : "s", n == 1 ? "" : "s", n == 1 ? "it" : "them",
                   table_c(api_str(d, "state")));
            /* What the server forgets, not what the device remembers (a
             * trial was told a rolled-back image would be offered again). */
            printf("the device itself still declines an image that failed its health check there,"
                   " or its integrity check or its first boot twice, until another is installed\n");
        } else {
            printf("device %s: nothing to forget: no image is held back from it (its state: %s)\n",
                   table_c(pos[0]), table_c(api_str(d, "state")));
        }
    }
    json_decref(d);
    return rc;
}

/* IDs one `device rm` takes (a list from `device list --json`, say). */
#define DEVICE_RM_MAX 100

static int device_rm(struct api *a, int argc, char **argv)
{
    static char paths[DEVICE_RM_MAX][600];
    const char *pos[DEVICE_RM_MAX];
    const struct api_opt opts[] = {{NULL, NULL, NULL}};
    int np, i, k, secrets = 0, removed = 0, worst = 0, rc = api_parse(a, opts, argc, argv, pos,
                                                                    DEVICE_RM_MAX, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "rm needs a device ID: tcpota device rm ID [ID...]");
    /* Every id checked before the first is removed; one given twice is
     * removed once (a trial: "no device X" after removing it). */
    for (i = k = 0; i < np; i++) {
        int j;
        for (j = 0; j < k && strcmp(pos[j], pos[i]) != 0; j++) {
        }
        if (j < k) continue;
        pos[k] = pos[i];
        if ((rc = device_path(a, pos[k], "", paths[k], sizeof(paths[k]))) != 0) return rc;
        k++;
    }
    np = k;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    for (i = 0; i < np; i++) {
        json_t *d = NULL;
        int status = 0;

        /* One that fails (no such device) is said, and the others go on. */
        rc = api_request(a, API_DELETE, paths[i], NULL, 0, NULL, NULL, NULL, &d, &status);
        if (rc != 0 && status != 404 && i + 1 < np) {
            /* Not about this id (the database away, no answer, the token):
             * the same for the rest, said once (a trial: the same line
             * for each, naming none). */
            fprintf(stderr, "tcpota device: stopped at %s (the error above); not tried:",
                    table_c(pos[i]));
            for (i++; i < np; i++) {
                fprintf(stderr, " %s", table_c(pos[i]));
            }
            fprintf(stderr, "\n");
            json_decref(d);
            worst = rc;
            break;
        }
        if (rc == 0 && !a->json) {
            int secret = api_bool(d, "secret");

            if (api_bool(d, "registered")) {
                printf("removed device %s%s\n", table_c(pos[i]), secret ? " and its secret" : "");
                removed++;
            } else {
                printf("device %s had not checked in: removed its secret\n", table_c(pos[i]));
            }
            secrets += secret;
        }
        if (rc > worst) worst = rc;
        json_decref(d);
    }
    if ((removed || secrets) && !a->json) {
        printf("a device that checks in after this is registered anew%s\n",
               secrets ? "; under --require-auth only with a new secret (tcpota device secret)"
                       : "");
    }
    return worst;
}

int cmd_fleet_device(int argc, char **argv)
{
    struct api a;

    memset(&a, 0, sizeof(a));
    a.cmd = "device";
    /* Each names its own: `device show` said "try 'tcpota device list --help'". */
    a.help_cmd = strcmp(argv[1], "show") == 0     ? "device show"
                 : strcmp(argv[1], "set") == 0    ? "device set"
                 : strcmp(argv[1], "secret") == 0 ? "device secret"
                 : strcmp(argv[1], "retry") == 0  ? "device retry"
                 : strcmp(argv[1], "rm") == 0     ? "device rm"
                                                  : "device list";
    if (strcmp(argv[1], "list") == 0) return device_list(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "show") == 0) return device_show(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "set") == 0) return device_set(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "secret") == 0) return device_secret(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "retry") == 0) return device_retry(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "rm") == 0) return device_rm(&a, argc - 1, argv + 1);
    return api_unknown_sub(&a, argv[1], CLI_FLEET_DEVICE_SUBS);
}

int cli_is_fleet_device(const char *word)
{
    return strcmp(word, "list") == 0 || strcmp(word, "show") == 0 || strcmp(word, "set") == 0 ||
           strcmp(word, "secret") == 0 || strcmp(word, "retry") == 0 || strcmp(word, "rm") == 0;
}
