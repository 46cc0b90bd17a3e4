/* serve.c - `tcpota serve`: argument parsing for the server in server/. */
#include "api.h"
#include "auth.h"
#include "cli.h"
#include "fleet.h" /* FLEET_DB_TIMEOUT_S */
#include "fleet_files.h"
#include "http_host.h"
#include "key_tags.h"
#include "keys.h"
#include "log.h"
#include "serve_config.h"
#include "server.h"
#include "store_pg.h"
#include "text.h" /* text_version_unordered */
#include "tls_server.h"
#include "workers.h"

#include "tcpota/codec.h"
#include "tcpota/manifest.h"
#include "tcpota/version.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Connections one address may hold before they authenticate (TLS handshake,
 * HELLO, AUTH); --max-unauth-per-addr. Room for a NAT with a few hundred
 * devices rebooting at once, far below what fills the server's memory. */
#define DEFAULT_MAX_UNAUTH_PER_ADDR 256u
#define SERVE_SMALL_IMAGE (64u << 10) /* a --max-image below this is warned about */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota serve [--listen HOST:PORT] [--version V] [options] FILE\n"
            "       tcpota serve --data DIR [--api HOST:PORT] [--pubkey K.pub] [options]\n"
            "       tcpota serve --db URI --data DIR [...]   (one of several nodes)\n"
            "\n"
            "Serves FILE as the current image to every device that connects: tcpota v1\n"
            "devices (resume, integrity check) and the sample's req0/req1 devices alike.\n"
            "\n"
            "  --config FILE         read flags from FILE first, one \"flag value\" or \"flag\"\n"
            "                        per line (# comments); command-line flags win\n"
            "                        (docs/operations.md)\n"
            "  --listen HOST:PORT    address to listen on (default 0.0.0.0:8070; port 0 = any)\n"
            "  --version V           version offered; with a signed manifest, taken from it\n"
            "                        (a different --version is refused), else required\n"
            "  --allow-downgrade     offer FILE also to devices that run a newer version, or a\n"
            "                        version that is not a semantic version (1.2.3)\n"
            "  --max-conns N         device and HTTP download connections at once; more are\n"
            "                        refused (default 16384; per worker with --workers)\n"
            "  --workers N           N processes serve the port (SO_REUSEPORT): up to N cores,\n"
            "                        each its own connections and descriptor limit (default 1;\n"
            "                        at most %u; not in fleet mode; docs/operations.md)\n"
            "  --idle-timeout S      close a peer silent or not reading for S s, or an HTTP\n"
            "                        download without a whole request S s after accept\n"
            "                        (default 60)\n"
            "  --chunk BYTES         image bytes per DATA frame, 512..16380 (default 4096)\n"
            "  --no-progress         no progress lines (one per device when its durable\n"
            "                        bytes pass a 10%% step; ACKs are read in batches, at\n"
            "                        least once a second, so a fast transfer shows few);\n"
            "                        --progress (the default) undoes a config file's\n"
            "                        no-progress\n"
            "  --quiet               no line per connection or device: errors, warnings,\n"
            "                        the \"listening on\" line (scripts wait for it), the\n"
            "                        changes made through the API and the summary only\n"
            "  --log-format F        text (default): \"<UTC time> tcpota serve: [device peer] ...\";\n"
            "                        json: one JSON object per line (time, level, device, peer, msg)\n"
            "signed images:\n"
            "  --manifest M          signed manifest of FILE (default: FILE.manifest if present)\n"
            "  --pubkey K.pub        key the manifest must be signed with (repeatable);\n"
            "                        implies --require-signed\n"
            "  --require-signed      refuse to start unless the manifest verifies (the default\n"
            "                        when a manifest is present); --no-require-signed skips it\n"
            "  --allow-legacy        serve req0/req1 devices a signed image they cannot check\n"
            "device authentication:\n"
            "  --auth-file F         lines \"<device id> <hex secret>\" (secrets of 16..64 bytes)\n"
            "  --require-auth        every device must prove it knows its secret; req0/req1\n"
            "                        devices cannot, and are refused\n"
            "  --allow-unauthenticated-legacy   with --require-auth, serve req0/req1 devices\n"
            "                        anyway: anyone who can connect then gets the image\n"
            "  --proxy-protocol A[,A]  connections from these addresses (a TCP balancer's)\n"
            "                        begin with a PROXY protocol header (HAProxy's send-proxy\n"
            "                        or send-proxy-v2): the device's own address is taken from\n"
            "                        it, for the log, the registry and --max-unauth-per-addr\n"
            "  --max-unauth-per-addr N   connections one address may hold before they\n"
            "                        authenticate, with TLS or --require-auth (default %u;\n"
            "                        0 = no limit)\n",
            WORKERS_MAX, DEFAULT_MAX_UNAUTH_PER_ADDR);
    fprintf(f,
            "TLS:\n"
            "  --tls-cert C --tls-key K   serve protocol v1 inside TLS (PEM files)\n"
            "  --tls-ticket-key F    seal session tickets with the key in F (80 bytes; to\n"
            "                        make one, see tcpota keygen --help), so that devices\n"
            "                        resume on every node that has it and after a restart;\n"
            "                        repeat to rotate (the first seals, all open; at most\n"
            "                        %u). Default: a key of this process's own\n"
            "  --tls-ticket-lifetime S  seconds a device may resume its TLS session (1 to\n"
            "                        604800, default 7200): above its check-in interval, or\n"
            "                        each check-in costs a full handshake\n"
            "fleet mode (no FILE; images, rollouts and devices through the API):\n"
            "  --data DIR            keep the fleet in DIR (SQLite DIR/tcpota.db, images in\n"
            "                        DIR/images; created on first start, and removed again\n"
            "                        if that start fails: an empty DIR is kept, emptied);\n"
            "                        device secrets are made with\n"
            "                        `tcpota device secret ID`, not --auth-file\n"
            "  --db URI              keep the fleet in PostgreSQL instead (a libpq connection\n"
            "                        string or postgresql:// URI), shared by every node; DIR\n"
            "                        then holds this node's image cache and api.token only\n"
            "                        (docs/scaling.md)\n"
            "  --db-timeout SECONDS  with --db: the database answering nothing this long\n"
            "                        while requests wait (hung, its host stalled), the node\n"
            "                        drops its connection, tells devices to try again, and\n"
            "                        connects again (1..3600, default %u)\n"
            "  --secrets-reread SECONDS  with --db: how often this node reads every device\n"
            "                        secret again and then holds exactly the database's\n"
            "                        (after a failover that lost writes; SIGHUP: at once).\n"
            "                        1..86400, default %u; 1,000,000 secrets: about 1 s\n"
            "                        of the node's database connection (docs/scaling.md)\n"
            "  --api HOST:PORT|off   the control API (default 127.0.0.1:8071); its token is\n"
            "                        DIR/api.token (docs/api.md)\n"
            "  --api-max-conns N     connections the API's listener holds at once, the\n"
            "                        /ota/ downloads there among them; one more is answered\n"
            "                        503 and closed (default %u)\n"
            "  --max-image SIZE      largest image the API takes: bytes, or K, M, G after the\n"
            "                        number (64M = 64 MiB; the default; at most 1G)\n"
            "  --ota-listen HOST:PORT  serve HTTP(S) downloads for esp_https_ota devices here\n"
            "                        (default: on the API's listener, under /ota/; HTTPS with\n"
            "                        --tls-cert; docs/http-ota.md)\n"
            "  --http-host NAME[,NAME...]  the API, the dashboard and the downloads answer\n"
            "                        only requests sent to these names, localhost or an IP\n"
            "                        address (Host; at most %u names): a web page that renamed\n"
            "                        this server's address (DNS rebinding) is refused 421.\n"
            "                        Default: any name (docs/security.md)\n"
            "  --pubkey K.pub        images added must be signed with one of these keys\n"
            "Exit status: 0 stopped by SIGTERM or SIGINT (after its summary); 2 a bad command\n"
            "line or --config, or a path named there that cannot be used (FILE, manifest,\n"
            "keys, secrets, TLS certificate and key; a --data that is not a directory, or\n"
            "in a folder that does not exist); 1 anything else that stops the start or the\n"
            "server (a port in use, DIR's files or database, PostgreSQL).\n",
            TLS_TICKET_KEYS_MAX, FLEET_DB_TIMEOUT_S, FLEET_SECRETS_REREAD_S, API_CONNS_DEFAULT,
            HTTP_HOSTS_MAX);
}

/* A warning of a start that goes on. With the options read (o), a line of
 * the server's log: its time, and JSON under --log-format json, where a
 * bare line broke a log shipper's parse (level info, as the server's own
 * warnings). Without (NULL: a reload, whose stderr the server logs as the
 * reload's lines; or a file at start that never warns), a line on stderr. */
static void serve_warn(const struct tcpota_serve_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void serve_warn(const struct tcpota_serve_opts *o, const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (o) {
        say_always(o, LOG_LV_WARN, "warning: %s", msg);
    } else {
        fprintf(stderr, "tcpota serve: warning: %s\n", msg);
    }
}

/* With --log-format json everything the start prints is a JSON log line:
 * its errors and notes (a file that does not load, a flag refused) were
 * bare text among the JSON a log shipper parses (a new user's trial). What
 * goes to stderr is caught (log_catch_begin) from the options' reading to
 * the server's start (serve_start_caught), or to the end of a start that
 * failed. */
static struct log_caught *g_start_caught;

/* Starts catching into c, unless a catch runs already. */
static void serve_start_catch(struct log_caught *c)
{
    if (!g_start_caught) {
        g_start_caught = c;
        log_catch_begin(c);
    }
}

static void serve_start_caught(const struct tcpota_serve_opts *o, int failed)
{
    if (g_start_caught) {
        log_catch_end(o, g_start_caught, failed, "");
        g_start_caught = NULL;
    }
}

/* Opens path as a regular file (a FIFO would hang the start), named by the
 * option that gave it; a file holding secrets or a private key is warned
 * about (serve_warn, o) when other users can read it. Returns the fd, or -1
 * after printing what is wrong. */
static int open_arg(const struct tcpota_serve_opts *o, const char *path, const char *what, int secret)
{
    struct stat st;
    int fd = cli_open_regular(path, what);

    if (fd >= 0 && secret && fstat(fd, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        serve_warn(o, "%s %s can be read by other users (mode %03o); chmod 600 %s", what, path,
                   (unsigned)(st.st_mode & 0777), path);
    }
    return fd;
}

/* Refuses a path that is not a regular file before a library opens it by
 * name (and would wait forever on a FIFO). Returns 0 or -1. */
static int check_arg(const struct tcpota_serve_opts *o, const char *path, const char *what, int secret)
{
    int fd = open_arg(o, path, what, secret);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* --tls-cert and --tls-key as regular files (OpenSSL would hang on a FIFO),
 * the key warned about when others can read it (not when it is the
 * certificate's own file: a certificate is no secret). At start and at
 * every SIGHUP (o NULL: warnings on stderr, caught into the reload's
 * log). Returns 0 or -1 after saying why. */
static int check_tls_files(const struct tcpota_serve_opts *o, const char *cert, const char *key)
{
    return check_arg(o, cert, "--tls-cert", 0) < 0 ||
                   check_arg(o, key, "--tls-key", tls_pem_kind(key) != TLS_PEM_CERT) < 0
               ? -1
               : 0;
}

static int load_secrets(const struct tcpota_serve_opts *o, const char *path,
                        struct tcpota_serve_secret **out, size_t *n)
{
    int fd = open_arg(o, path, "--auth-file", 1), rc;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;

    if (!f) {
        if (fd >= 0) close(fd);
        return -1;
    }
    /* At a reload (o NULL) an empty file revokes every secret: the only
     * way to revoke the last one without stopping the server (a trial). */
    rc = auth_read_secrets(f, path, o == NULL, out, n);
    fclose(f);
    if (rc == 0 && *n == 0) {
        fprintf(stderr, "tcpota serve: warning: --auth-file %s has no secrets now: every device's "
                        "secret is revoked, and with --require-auth no device is served until "
                        "lines are added (then SIGHUP again)\n", path);
    }
    return rc;
}

#define TICKET_KEY_READ_MAX 4096u

/* A --tls-ticket-key file given before (by the same name, or another name
 * of the same file: seen[0..i) are the files of paths[0..i)) is refused:
 * it opens nothing the first naming does not, and two namings mean two
 * keys were meant (a rotation: the new first, the old second), so the old
 * one is missing. Keeps fd's file in seen[i]. Returns 0, or -1 after
 * saying what is wrong. */
static int ticket_key_again(const char *const *paths, struct stat *seen, size_t i, int fd)
{
    if (fstat(fd, &seen[i]) != 0) {
        fprintf(stderr, "tcpota serve: --tls-ticket-key %s: %s\n", paths[i], strerror(errno));
        return -1;
    }
    for (size_t j = 0; j < i; j++) {
        int same_path = strcmp(paths[j], paths[i]) == 0;

        if (!same_path && (seen[i].st_dev != seen[j].st_dev || seen[i].st_ino != seen[j].st_ino)) {
            continue;
        }
        fprintf(stderr, "tcpota serve: --tls-ticket-key %s%s%s %s; give each key file once: the "
                        "first seals new tickets, the others open older ones (to rotate: the new "
                        "key first, the old one second)\n", paths[j],
                same_path ? "" : " and ", same_path ? "" : paths[i],
                same_path ? "is given twice" : "are the same file");
        return -1;
    }
    return 0;
}

/* Fewer distinct byte values than this in a ticket key's 80 bytes: not
 * random (80 random bytes show about 69; fewer than 24 has a probability
 * far below 2^-100). */
#define TICKET_KEY_DISTINCT_MIN 24u

static unsigned distinct_bytes(const uint8_t *b, size_t n)
{
    uint8_t seen[256] = {0};
    unsigned d = 0;

    for (size_t i = 0; i < n; i++) {
        d += !seen[b[i]];
        seen[b[i]] = 1;
    }
    return d;
}

/* Reads the --tls-ticket-key files (paths[0..n)) into keys, each exactly
 * TLS_TICKET_KEY_LEN bytes, and points o at them; a key others can read is
 * warned about through `warn` (serve_warn), and so is a key that another
 * file holds too (copies: a rotation that left no old key). A file given
 * twice is refused. Returns 0 or -1 after printing what is wrong. */
static int load_ticket_keys(const struct tcpota_serve_opts *warn, struct tcpota_serve_opts *o,
                            const char *const *paths, size_t n, uint8_t (*keys)[TLS_TICKET_KEY_LEN])
{
    struct stat seen[TLS_TICKET_KEYS_MAX];

    for (size_t i = 0; i < n; i++) {
        uint8_t *b = NULL;
        size_t len = 0;
        int fd = open_arg(warn, paths[i], "--tls-ticket-key", 1), rc;

        if (fd < 0) {
            return -1;
        }
        if (ticket_key_again(paths, seen, i, fd) < 0) {
            close(fd);
            return -1;
        }
        /* Up to a page, so that a wrong file's size can be named. */
        rc = cli_read_fd(fd, paths[i], "--tls-ticket-key", TICKET_KEY_READ_MAX, &b, &len);
        close(fd);
        if (rc < 0) {
            return -1;
        }
        char kind[48] = ""; /* " (it is a tcpota-ed25519-secret file)": another key of ours */
        const char *tag = key_tag_of((const char *)b, strcspn((const char *)b, " \n"));
        if (len == TLS_TICKET_KEY_LEN) {
            memcpy(keys[i], b, len);
        } else if (tag) {
            snprintf(kind, sizeof(kind), " (it is a %s file)", tag);
        }
        sodium_memzero(b, len);
        free(b);
        if (len != TLS_TICKET_KEY_LEN) {
            fprintf(stderr, "tcpota serve: --tls-ticket-key %s holds %s%zu bytes%s, not %u: a "
                            "ticket key is %u random bytes%s; make one with tcpota keygen "
                            "--ticket-key --out FILE\n", paths[i],
                    len > TLS_TICKET_KEY_LEN ? "more than " : "",
                    len > TLS_TICKET_KEY_LEN ? (size_t)TLS_TICKET_KEY_LEN : len, kind,
                    TLS_TICKET_KEY_LEN, TLS_TICKET_KEY_LEN,
                    len == 48 ? " (48-byte keys, AES-128, are not taken)" : "");
            return -1;
        }
        if (distinct_bytes(keys[i], TLS_TICKET_KEY_LEN) < TICKET_KEY_DISTINCT_MIN) {
            /* 80 letters 'a' were taken (a hostile trial): whoever guesses
             * the key opens every session's ticket, and forges them. */
            fprintf(stderr, "tcpota serve: --tls-ticket-key %s does not look random (%u distinct"
                            " byte values in %u; random bytes have about 69): make one with tcpota"
                            " keygen --ticket-key --out FILE\n", paths[i],
                    distinct_bytes(keys[i], TLS_TICKET_KEY_LEN), TLS_TICKET_KEY_LEN);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (sodium_memcmp(keys[j], keys[i], TLS_TICKET_KEY_LEN) == 0) {
                serve_warn(warn, "--tls-ticket-key %s and %s hold the same key: the second opens "
                                 "no ticket the first does not; to rotate, make a new key "
                                 "(tcpota keygen --ticket-key --out FILE) and give it first, the "
                                 "old one second", paths[j], paths[i]);
                break;
            }
        }
    }
    o->ticket_keys = (const uint8_t(*)[TLS_TICKET_KEY_LEN])keys;
    o->nticket_keys = n;
    return 0;
}

/* --proxy-protocol ADDR[,ADDR...]: each an IPv4 or IPv6 address, kept in
 * the form the server writes a peer's. Returns 0 or -1 after a message. */
static int parse_proxy_from(const char *val, char (*out)[PROXY_FROM_LEN], size_t *count)
{
    const char *s = val;

    do {
        const char *end = strchr(s, ',');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        char one[PROXY_FROM_LEN];
        uint8_t bin[16];
        int fam;

        if (n == 0 || n >= sizeof(one)) {
            fprintf(stderr, "tcpota serve: --proxy-protocol %s: give the balancers' IP addresses, "
                            "separated by commas (e.g. 10.0.0.5,10.0.0.6)\n", val);
            return -1;
        }
        memcpy(one, s, n);
        one[n] = '\0';
        fam = inet_pton(AF_INET, one, bin) == 1 ? AF_INET : inet_pton(AF_INET6, one, bin) == 1 ? AF_INET6 : 0;
        if (!fam && strchr(one, '/')) {
            fprintf(stderr, "tcpota serve: --proxy-protocol: '%s' is a network; give each"
                            " balancer's own address (e.g. 10.0.0.5,10.0.0.6): a header is"
                            " believed only from them\n", one);
            return -1;
        }
        if (!fam) {
            fprintf(stderr, "tcpota serve: --proxy-protocol: '%s' is not an IP address; give the "
                            "balancers' addresses (e.g. 10.0.0.5), not names\n", one);
            return -1;
        }
        if ((fam == AF_INET && memcmp(bin, "\0\0\0\0", 4) == 0) ||
            (fam == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *)(const void *)bin))) {
            /* No connection comes from it: the flag would believe nobody. */
            fprintf(stderr, "tcpota serve: --proxy-protocol: '%s' is no peer's address (it means"
                            " 'any' only to listen); give the balancers' own addresses\n", one);
            return -1;
        }
        if (*count == PROXY_FROM_MAX) {
            fprintf(stderr, "tcpota serve: --proxy-protocol: at most %u balancer addresses\n",
                    PROXY_FROM_MAX);
            return -1;
        }
        if (fam == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)bin)) {
            /* The server compares an IPv4 peer of a dual-stack socket in
             * its IPv4 form (proxied.c). */
            fam = AF_INET;
            memmove(bin, bin + 12, 4);
        }
        inet_ntop(fam, bin, out[(*count)++], PROXY_FROM_LEN);
        s = end ? end + 1 : NULL;
    } while (s);
    return 0;
}

/* 1 when path's first bytes are a manifest's magic (a FIFO or an
 * unreadable file: 0, the image's own checks say what it is). */
static int is_manifest(const char *path)
{
    char head[sizeof(TCPOTA_MANIFEST_MAGIC) - 1];
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), yes;
    struct stat st;

    if (fd < 0) return 0;
    yes = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
          read(fd, head, sizeof(head)) == (ssize_t)sizeof(head) &&
          memcmp(head, TCPOTA_MANIFEST_MAGIC, sizeof(head)) == 0;
    close(fd);
    return yes;
}

/* Reads the manifest at path (a regular file of at most TCPOTA_MAX_MANIFEST
 * bytes) into *man; what names it in messages ("--manifest", or the one
 * found next to the image, which no flag named). Returns 0 or -1 after
 * printing what is wrong. */
static int load_manifest(const char *path, const char *what, uint8_t **man, size_t *len)
{
    int fd = open_arg(NULL, path, what, 0);
    uint8_t *b = malloc(TCPOTA_MAX_MANIFEST + 1);
    size_t n = 0;
    ssize_t r;

    if (fd < 0 || !b) {
        if (fd >= 0) close(fd);
        free(b);
        return -1;
    }
    while (n <= TCPOTA_MAX_MANIFEST && (r = read(fd, b + n, TCPOTA_MAX_MANIFEST + 1 - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fprintf(stderr, "tcpota serve: cannot read %s: %s\n", path, strerror(errno));
            close(fd);
            free(b);
            return -1;
        }
        n += (size_t)r;
    }
    close(fd);
    if (n > TCPOTA_MAX_MANIFEST) {
        fprintf(stderr, "tcpota serve: manifest %s is larger than %u bytes; is it a manifest?\n",
                path, (unsigned)TCPOTA_MAX_MANIFEST);
        free(b);
        return -1;
    }
    if (n == 0) { /* as tcpota verify says of one */
        fprintf(stderr, "tcpota serve: manifest %s is empty; sign the image again (tcpota sign)\n",
                path);
        free(b);
        return -1;
    }
    *man = b;
    *len = n;
    return 0;
}

/* Point 10 of the hardening review: the offer says what the signed manifest
 * says. Version and model come from it; a --version that contradicts it is
 * refused rather than offered (devices that verify would decline it, and
 * those that do not would install a wrong version string). */
static int take_manifest_names(struct tcpota_serve_opts *o, const uint8_t *man, size_t len,
                               const char *path, char *model, size_t mcap, char *version,
                               size_t vcap, int running)
{
    struct tcpota_manifest m;
    int rc = tcpota_manifest_parse(man, len, &m);

    if (rc < 0) {
        fprintf(stderr, "tcpota serve: the manifest %s is not a tcpota manifest, or is damaged; "
                        "sign the image again (tcpota sign)\n", path);
        return -1;
    }
    if (m.version.len == 0 || m.version.len >= vcap || m.model.len >= mcap) {
        fprintf(stderr, "tcpota serve: the manifest %s has no usable version or model\n", path);
        return -1;
    }
    memcpy(version, m.version.ptr, m.version.len);
    version[m.version.len] = 0;
    memcpy(model, m.model.ptr, m.model.len);
    model[m.model.len] = 0;
    if (o->version && !tcpota_version_same(o->version, version)) {
        /* At a reload the flag is the running server's: it takes a restart. */
        fprintf(stderr, "tcpota serve: --version %s contradicts the signed manifest %s, which says "
                        "%s; %s --version (the manifest's version is offered)\n",
                o->version, path, version,
                running ? "restart the server without" : "drop");
        return -1;
    }
    o->version = version;
    o->model = model[0] ? model : NULL;
    return 0;
}

/* Where the content SIGHUP reloads comes from: the files and flags of the
 * command line, read again by the same rules each time. */
struct sources {
    const char *manifest; /* --manifest, or NULL: FILE.manifest if present */
    const char *auth_file;
    const char *version;  /* --version, or NULL */
    const char *max_image; /* --max-image as given, or NULL */
    int require_signed;   /* -1: when a manifest exists */
    uint8_t keys[CLI_MAX_KEYS][32];
    size_t nkeys;
    uint8_t ticket_keys[TLS_TICKET_KEYS_MAX][TLS_TICKET_KEY_LEN]; /* --tls-ticket-key, at start */
    const char *ticket_paths[TLS_TICKET_KEYS_MAX];                /* their files, for SIGHUP */
    size_t nticket;
    char proxy_from[PROXY_FROM_MAX][PROXY_FROM_LEN]; /* --proxy-protocol, as text_sockaddr writes them */
    size_t nproxy_from;
    const char *db_password_file; /* a config file others can read whose --db gives a password */
    unsigned db_password_mode;    /* ... its permission bits */
    int db_password_argv;         /* a --db of the command line (ps shows it) gives one */
    int running; /* the server runs: a load is a reload (SIGHUP) */
};

/* What one load allocated, freed by serve_release(). */
struct loaded {
    char version[TCPOTA_MAX_NAME + 1], model[TCPOTA_MAX_NAME + 1];
    uint8_t *manifest;
    char manifest_path[4096];
    struct tcpota_serve_secret *secrets;
    size_t nsecrets;
    uint8_t ticket_keys[TLS_TICKET_KEYS_MAX][TLS_TICKET_KEY_LEN]; /* read again by SIGHUP */
};

static void serve_release(void *ctx, struct tcpota_serve_opts *o)
{
    struct loaded *l = o->loaded;
    (void)ctx;
    if (!l) {
        return;
    }
    if (l->secrets) sodium_memzero(l->secrets, l->nsecrets * sizeof(*l->secrets));
    free(l->secrets);
    free(l->manifest);
    sodium_memzero(l->ticket_keys, sizeof(l->ticket_keys));
    free(l);
    o->loaded = NULL;
}

/* SIGHUP with TLS: the certificate and key files checked again (a FIFO
 * would hang the loop when OpenSSL opens it; the server reads them) and
 * the ticket keys read again from their files into l, which n then names.
 * Returns 0, or -1 after printing what is wrong on stderr (the server logs
 * it as the reload's). */
static int reload_tls(const struct sources *src, struct tcpota_serve_opts *n, struct loaded *l)
{
    if (!n->tls_cert) {
        return 0;
    }
    if (check_tls_files(NULL, n->tls_cert, n->tls_key) < 0) {
        return -1;
    }
    if (src->nticket &&
        load_ticket_keys(NULL, n, src->ticket_paths, src->nticket, l->ticket_keys) < 0) {
        return -1;
    }
    return 0;
}

/* 1 after saying which is missing when only one of --tls-cert and
 * --tls-key was given. */
static int tls_pair_missing(const struct tcpota_serve_opts *o)
{
    if ((o->tls_cert == NULL) == (o->tls_key == NULL)) {
        return 0;
    }
    fprintf(stderr, "tcpota serve: --tls-cert and --tls-key go together: give %s too\n",
            o->tls_cert ? "--tls-key KEY.pem (the certificate's private key)"
                        : "--tls-cert CERT.pem (the certificate of that key)");
    return 1;
}

/* Reads the manifest, checks it, takes version and model from it, and
 * reads the device secrets, into o. Returns 0, or 1 / 2 (the exit code)
 * after printing why; o is then unchanged. */
static int serve_load(void *ctx, struct tcpota_serve_opts *o)
{
    const struct sources *src = ctx;
    struct loaded *l = calloc(1, sizeof(*l));
    const char *manifest = src->manifest;
    char mpath[4096];
    size_t man_len = 0;
    int require_signed = src->require_signed, rc = 1;
    struct tcpota_serve_opts n = *o;
    struct tcpota_manifest parsed;

    if (!l) {
        fprintf(stderr, "tcpota serve: out of memory\n");
        return 1;
    }
    n.loaded = l;
    n.version = src->version;
    n.model = NULL;
    n.manifest = NULL;
    n.manifest_len = 0;
    n.manifest_path = NULL;
    n.manifest_unsigned = 0;
    n.secrets = NULL;
    n.nsecrets = 0;
    if (!manifest) {
        snprintf(mpath, sizeof(mpath), "%s.manifest", o->image);
        if (access(mpath, F_OK) == 0) manifest = mpath;
    }
    if (require_signed < 0) {
        /* A key to check against means the operator wants signed images. */
        require_signed = manifest != NULL || src->nkeys > 0;
    }
    if (require_signed && !manifest) {
        fprintf(stderr, "tcpota serve: %s, but %s has no manifest %s.manifest: sign it (tcpota "
                        "sign --key K.key --version V --model M %s) or give --manifest\n",
                src->nkeys ? "--pubkey needs a signed image" : "--require-signed", o->image,
                o->image, o->image);
        rc = 2; /* an input file missing */
        goto fail;
    }
    if (manifest) {
        if (load_manifest(manifest,
                          src->manifest ? "--manifest"
                                        : "manifest (taken next to the image; --manifest FILE names another)",
                          &l->manifest, &man_len) < 0) {
            rc = 2; /* an unusable input file, like any other */
            goto fail;
        }
        /* Here: that it is a manifest at all, and (signed) who signed it,
         * on a reload on the server's loop. The image's size and SHA-256
         * against it: by the server, on its own read of the image
         * (image_check_manifest). Unsigned serving skips who signed, not
         * what: the manifest's version is offered for FILE. */
        if (tcpota_manifest_parse(l->manifest, man_len, &parsed) < 0) {
            fprintf(stderr, "tcpota serve: the manifest %s is not a tcpota manifest, or is "
                            "damaged; sign %s again (tcpota sign)%s%s%s; %s\n", manifest,
                    o->image, require_signed ? "" : ", or remove ", require_signed ? "" : manifest,
                    require_signed ? "" : " to serve it unsigned",
                    src->running ? "the image served now stays" : "not starting");
            rc = 2; /* an unusable input file */
            goto fail;
        }
        /* Served unsigned on purpose, but a signature that does not verify
         * is a manifest altered or forged: devices with --trust decline
         * it, the others install it as its version. */
        if (!require_signed && crypto_sign_verify_detached(parsed.signature, parsed.signed_part,
                                                           parsed.signed_len, parsed.pubkey) != 0) {
            serve_warn(src->running ? NULL : o,
                       "the manifest %s's signature does not verify (altered or forged), served"
                       " anyway (--no-require-signed): devices that trust keys decline it, the"
                       " others install it as version %.*s; sign %s again (tcpota sign), or"
                       " remove %s", manifest, parsed.version.len, parsed.version.ptr, o->image,
                       manifest);
        }
        if (require_signed && cli_check_manifest(NULL, l->manifest, man_len,
                                                 (const uint8_t(*)[32])src->keys, src->nkeys,
                                                 1) < 0) {
            fprintf(stderr, "tcpota serve: the manifest %s does not verify; %s\n", manifest,
                    src->running ? "the image served now stays" : "not starting");
            rc = 2;
            goto fail;
        }
        snprintf(l->manifest_path, sizeof(l->manifest_path), "%s", manifest);
        n.manifest_path = l->manifest_path;
        n.manifest_unsigned = !require_signed;
        n.manifest = l->manifest;
        n.manifest_len = (uint16_t)man_len;
        if (take_manifest_names(&n, l->manifest, man_len, manifest, l->model, sizeof(l->model),
                                l->version, sizeof(l->version), src->running) < 0) {
            rc = 2; /* a --version the manifest contradicts, or a manifest without names */
            goto fail;
        }
    }
    if (!n.version) {
        fprintf(stderr, "tcpota serve: give --version V: %s has no signed manifest to take the "
                        "version from\n", o->image);
        rc = 2;
        goto fail;
    }
    if (src->auth_file &&
        load_secrets(src->running ? NULL : o, src->auth_file, &l->secrets, &l->nsecrets) < 0) {
        rc = 2;
        goto fail;
    }
    n.secrets = l->secrets;
    n.nsecrets = l->nsecrets;
    if (src->running && reload_tls(src, &n, l) < 0) {
        rc = 2;
        goto fail;
    }
    *o = n;
    return 0;
fail:
    serve_release(NULL, &n);
    return rc;
}

/* Settings that start the server but are probably not what was meant. */
static void warn_settings(const struct tcpota_serve_opts *o, const struct sources *src)
{
    const char *why;

    if (src->auth_file && !o->require_auth) {
        serve_warn(o, "--auth-file without --require-auth: the devices it lists must "
                      "authenticate, any other device is served without; add --require-auth to "
                      "refuse those");
    }
    if (!o->allow_downgrade && (why = text_version_unordered(o->version))) {
        serve_warn(o, "version '%s' %s: no device will be offered it unless --allow-downgrade",
                   o->version, why);
    }
    if ((o->allow_legacy || o->allow_unauth_legacy) && o->tls_cert) {
        /* Legacy devices speak req0/req1 in the clear, and with --tls-cert
         * the device port speaks TLS only: such a device is closed at its
         * first bytes whatever the flag says (a trial read the flag as
         * serving them). Warned, not refused: a config file may hold the
         * flag, and no --no-allow-legacy takes it back. */
        serve_warn(o, "%s does nothing with --tls-cert: legacy (req0/req1) devices cannot speak"
                      " TLS, and the device port then speaks TLS only; serve them from a server"
                      " without --tls-cert", o->allow_legacy ? "--allow-legacy"
                                                             : "--allow-unauthenticated-legacy");
    }
    if (o->allow_legacy && !o->manifest) {
        /* Not refused: a SIGHUP may bring a signed FILE, which it then serves. */
        serve_warn(o, "--allow-legacy changes nothing while %s is unsigned: req0/req1 devices"
                      " are served an unsigned image anyway; it lets them have a signed one",
                   o->image);
    }
    if (o->allow_unauth_legacy && o->manifest && !o->allow_legacy) {
        /* Else said only when the first one is refused (a trial). */
        serve_warn(o, "--allow-unauthenticated-legacy lets req0/req1 devices in, but %s is signed"
                      " and they cannot check a signature: they are refused all the same; add"
                      " --allow-legacy to serve them the signed image", o->image);
    }
}

static int serve_reload(void *ctx, struct tcpota_serve_opts *fresh)
{
    return serve_load(ctx, fresh) == 0 ? 0 : -1;
}

/* Fleet mode's SIGHUP: the TLS files only (images, rollouts and secrets
 * change through the API). */
static int fleet_reload(void *ctx, struct tcpota_serve_opts *fresh)
{
    struct loaded *l = calloc(1, sizeof(*l));
    struct tcpota_serve_opts n = *fresh;

    if (!l) {
        fprintf(stderr, "tcpota serve: out of memory\n");
        return -1;
    }
    n.loaded = l;
    if (reload_tls(ctx, &n, l) < 0) {
        serve_release(NULL, &n);
        return -1;
    }
    *fresh = n;
    return 0;
}

/* `tcpota serve --data DIR`: what fleet mode refuses, then the server. */
/* 1 when two listeners would take the same port: the same fixed port on
 * the same address, or on a wildcard address and any other. */
static int same_listener(const char *h1, uint16_t p1, const char *h2, uint16_t p2)
{
    static const char *const any[] = {"", "0.0.0.0", "::", "[::]", "*"};
    size_t i;

    if (p1 == 0 || p1 != p2) {
        return 0;
    }
    for (i = 0; i < sizeof any / sizeof any[0]; i++) {
        if (strcmp(h1, any[i]) == 0 || strcmp(h2, any[i]) == 0) {
            return 1;
        }
    }
    return strcmp(h1, h2) == 0;
}

/* The fleet's listeners each need a port of their own: said before the
 * data directory is made (else "address in use" blamed another program). */
static int distinct_listeners(const struct tcpota_serve_opts *o)
{
    const struct {
        const char *flag, *host;
        uint16_t port;
    } l[] = {{"--listen", o->host, o->port},
             {"--api", o->api_host, o->api_port},
             {"--ota-listen", o->ota_host, o->ota_port}};
    size_t i, j, n = sizeof l / sizeof l[0];

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            if (l[i].host && l[j].host && same_listener(l[i].host, l[i].port, l[j].host, l[j].port)) {
                /* As typed: an IPv6 address in brackets. */
                fprintf(stderr, "tcpota serve: %s %s%s%s:%u and %s %s%s%s:%u take the same port;"
                                " give each its own port\n",
                        l[i].flag, V6_OPEN(l[i].host), l[i].host, V6_CLOSE(l[i].host),
                        (unsigned)l[i].port, l[j].flag, V6_OPEN(l[j].host), l[j].host,
                        V6_CLOSE(l[j].host), (unsigned)l[j].port);
                return -1;
            }
        }
    }
    return 0;
}

/* After a start that failed (tcpota_serve returns non-zero only before it
 * served anything): undoes what it made in --data, database, images and
 * api.token included, so that the next start is a first one again rather
 * than one over a half-made fleet. created: dir did not exist before this
 * run, and goes whole; else it existed and was empty (nothing in it was
 * there before), and only what is in it goes. Any other directory is never
 * touched. Nothing goes either while another process holds dir's lock: a
 * server that started on it meanwhile, whose files these are. */
/* 1 when another server holds dir's lock file now; else 0, *fd the lock
 * file opened and locked by this process (-1: none there), to close once
 * what is undone is gone. */
static int lock_elsewhere(const char *dir, int *fd)
{
    char lock[4200];

    snprintf(lock, sizeof(lock), "%s/%s", dir, FLEET_LOCK_FILE);
    *fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (*fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        close(*fd);
        *fd = -1;
        return 1;
    }
    return 0;
}

static void undo_data_dir(const struct tcpota_serve_opts *o, const char *dir, int created)
{
    int fd, rc;

    if (lock_elsewhere(dir, &fd)) {
        return; /* another server runs on dir now */
    }
    if (!created && cli_dir_holds_nothing(dir)) { /* the start made nothing there */
        if (fd >= 0) close(fd);
        return;
    }
    rc = created ? cli_remove_tree(dir) : cli_empty_tree(dir);
    if (fd >= 0) close(fd); /* the lock file is gone, or it stays with the rest */
    if (rc == -ENOENT && created) {
        return; /* the start failed before it made the directory */
    }
    if (rc < 0 && created) {
        say_always(o, LOG_LV_ERROR, "the start failed, and --data %s, which it created, could not"
                   " be removed whole (%s); remove it before the next start", dir, strerror(-rc));
    } else if (rc < 0) {
        say_always(o, LOG_LV_ERROR, "the start failed, and what it created in --data %s (empty"
                   " before) could not all be removed (%s); empty it before the next start", dir,
                   strerror(-rc));
    } else if (created) {
        say_always(o, LOG_LV_INFO, "removed --data %s, which this failed start created", dir);
    } else {
        say_always(o, LOG_LV_INFO, "removed what this failed start created in --data %s (it was"
                   " empty before; the directory is kept)", dir);
    }
}

/* Each entry of dir that is a fleet's own (fleet_files_own) through fn;
 * returns how many there were, or -1 when fn failed for one. */
static int own_entries(const char *dir, int (*fn)(const char *path))
{
    char path[4200];
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0, failed = 0;

    if (!d) return 0;
    while ((e = readdir(d)) != NULL) {
        if (!fleet_files_own(e->d_name)) continue;
        n++;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        failed |= fn && fn(path) < 0;
    }
    closedir(d);
    return failed ? -1 : n;
}

/* path gone, a directory with all it holds. */
static int remove_path(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0) return 0;
    return S_ISDIR(st.st_mode) ? cli_remove_tree(path) : unlink(path);
}

/* A failed start that made a new fleet's files beside someone else's in
 * dir (it held none of them before) removes those it made, and only
 * those: left, they made the next start take dir for a fleet's, without
 * the warning that it holds someone else's files (a trial). */
static void undo_own_files(const struct tcpota_serve_opts *o, const char *dir)
{
    int fd, failed;

    if (lock_elsewhere(dir, &fd)) {
        return; /* another server runs on dir now */
    }
    failed = own_entries(dir, remove_path) < 0;
    if (fd >= 0) close(fd);
    say_always(o, failed ? LOG_LV_ERROR : LOG_LV_INFO,
               failed ? "the start failed, and the fleet's files it made in --data %s (beside"
                        " files that are not a fleet's) could not all be removed; remove them"
                        " before the next start"
                      : "removed the fleet's files this failed start made in --data %s (the"
                        " other files there are kept)", dir);
}

/* The first entry of dir that is not a fleet's own (fleet_files_own) nor a
 * mount point's lost+found, into name (cap bytes); 1 when there is one and
 * dir holds no tcpota.db: a new fleet would be made among someone else's
 * files. */
static int foreign_files(const char *dir, int with_db, char *name, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int db = 0, other = 0;

    if (!d) return 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        db |= strcmp(e->d_name, FLEET_DB_FILE) == 0;
        if (!other && !fleet_files_own(e->d_name) && strcmp(e->d_name, "lost+found") != 0) {
            other = 1;
            snprintf(name, cap, "%s", e->d_name);
        }
    }
    closedir(d);
    return other && (with_db || !db);
}

/* The first flag of single-image mode's sources that src holds, into *flag,
 * and where fleet mode takes what it sets from, into *why: each flag its
 * own reason (one reason for all told a --version about device secrets).
 * Returns 1, or 0 when src holds none. */
static int image_mode_source(const struct sources *src, const char **flag, const char **why)
{
    if (src->version) {
        *flag = "--version";
        *why = "each image brings its version: its signed manifest's, or the one given to "
               "`tcpota image add FILE --version V`";
    } else if (src->manifest) {
        *flag = "--manifest";
        *why = "each image brings its manifest: `tcpota image add FILE` sends FILE.manifest, or "
               "the one --manifest M names";
    } else if (src->auth_file) {
        *flag = "--auth-file";
        *why = "device secrets come from `tcpota device secret ID`";
    } else if (src->require_signed >= 0) { /* either way: --pubkey decides, not these */
        *flag = src->require_signed ? "--require-signed" : "--no-require-signed";
        *why = "--pubkey says it: with keys the API takes only images signed with one of them, "
               "without any it takes unsigned images too";
    } else {
        return 0;
    }
    return 1;
}

static int serve_fleet(struct tcpota_serve_opts *o, struct sources *src, const char *api,
                       const char *ota, const char *http_host)
{
    static char images[4096], api_host[256], ota_host[256];
    static struct http_hosts hosts;
    char err[256];
    const char *flag, *why;
    struct stat st;
    int created, was_empty, beside, rc;

    if (o->image) {
        fprintf(stderr, "tcpota serve: --data serves the fleet's images; add %s with "
                        "`tcpota image add %s` instead of naming it here\n", o->image, o->image);
        return 2;
    }
    if (image_mode_source(src, &flag, &why)) {
        fprintf(stderr, "tcpota serve: %s does not apply with --data (%s)\n", flag, why);
        return 2;
    }
    if (o->allow_downgrade) {
        fprintf(stderr, "tcpota serve: --allow-downgrade does not apply with --data (each rollout "
                        "says it: `tcpota rollout create --allow-downgrade ...`)\n");
        return 2;
    }
    if (!*o->data_dir) {
        fprintf(stderr, "tcpota serve: --data is empty; give the fleet's directory (it is "
                        "created if missing)\n");
        return 2;
    }
    if (stat(o->data_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "tcpota serve: --data %s is not a directory; give a directory (it is "
                        "created if missing)\n", o->data_dir);
        return 2;
    }
    /* Created as one folder, as device --flash is: the folder it goes in
     * must be there (else: which one is missing, and mkdir -p for it). */
    created = stat(o->data_dir, &st) != 0 && errno == ENOENT;
    if (created && cli_check_dir(o->data_dir, "--data", 1) < 0) {
        return 2;
    }
    was_empty = !created && cli_dir_holds_nothing(o->data_dir);
    beside = !created && !was_empty && own_entries(o->data_dir, NULL) == 0;
    if (strcmp(api, "off") != 0 &&
        cli_hostport(api, "--api", 1, api_host, sizeof(api_host), &o->api_port) < 0) {
        return 2;
    }
    o->api_host = strcmp(api, "off") == 0 ? NULL : api_host;
    if (ota && strcmp(ota, "off") == 0) {
        /* --api takes "off"; this one has nothing to turn off. */
        fprintf(stderr, "tcpota serve: --ota-listen takes HOST:PORT, not off: without it the HTTP"
                        " downloads are served on the API's listener (--api), under /ota/; drop"
                        " --ota-listen for that\n");
        return 2;
    }
    if (ota && cli_hostport(ota, "--ota-listen", 1, ota_host, sizeof(ota_host), &o->ota_port) < 0) {
        return 2;
    }
    o->ota_host = ota ? ota_host : NULL;
    if (http_host && http_hosts_parse(&hosts, http_host, err, sizeof(err)) < 0) {
        fprintf(stderr, "tcpota serve: %s\n", err);
        return 2;
    }
    if (http_host && !o->api_host && !o->ota_host) {
        fprintf(stderr, "tcpota serve: --http-host names what the API's and the downloads'"
                        " listeners answer to; with --api off and no --ota-listen there is"
                        " neither: drop it\n");
        return 2;
    }
    o->http_hosts = http_host ? &hosts : NULL;
    if (distinct_listeners(o) < 0) {
        return 2;
    }
    if (ota && o->require_auth) {
        serve_warn(o, "--ota-listen with --require-auth: an HTTP download cannot prove which "
                      "device asks, so every one is refused (403); only tcpota devices are "
                      "served (docs/http-ota.md)");
    }
    snprintf(images, sizeof(images), "%s/" FLEET_IMAGES_DIR, o->data_dir);
    o->images_dir = images;
    o->pubkeys = (const uint8_t(*)[32])src->keys;
    o->npubkeys = src->nkeys;
    if (o->max_image && o->max_image < SERVE_SMALL_IMAGE) {
        /* "--max-image 100" meant 100 MiB, most likely: no firmware is that small. */
        const char *given = src->max_image ? src->max_image : "";
        int mib = o->max_image <= (TCPOTA_IMAGE_UPLOAD_MAX >> 20);

        if (given[strspn(given, "0123456789")]) { /* a unit was given: meant as it is */
            serve_warn(o, "--max-image %s takes images of at most %zu bytes, and firmware is "
                          "rarely under %u KiB; give a larger size (64M is the default)",
                       given, o->max_image, SERVE_SMALL_IMAGE >> 10);
        } else {
            serve_warn(o, "--max-image %zu takes images of at most %zu bytes, and firmware is "
                          "rarely under %u KiB; if you meant %s, give --max-image %zu%s",
                       o->max_image, o->max_image, SERVE_SMALL_IMAGE >> 10, mib ? "MiB" : "KiB",
                       o->max_image, mib ? "M" : "K");
        }
    }
    /* Pointed to a password file (docs/scaling.md), never the password. */
    if (src->db_password_file) {
        serve_warn(o, "--db in %s gives a password, and other users can read %s (mode %03o): put "
                      "the password in a file of mode 0600 that PGPASSFILE names, or ~/.pgpass "
                      "(lines HOST:PORT:DATABASE:USER:PASSWORD), not in --db (docs/scaling.md)",
                   src->db_password_file, src->db_password_file, src->db_password_mode & 0777);
    }
    if (src->db_password_argv) {
        serve_warn(o, "--db on the command line gives a password, which other users can read "
                      "(ps, /proc/PID/cmdline): put it in a file of mode 0600 that PGPASSFILE "
                      "names, or ~/.pgpass (lines HOST:PORT:DATABASE:USER:PASSWORD), not in --db "
                      "(docs/scaling.md)");
    }
    if (!created && !was_empty) {
        char other[256];
        /* A --db node's --data holds no database: any other file is
         * foreign (a trial gave one a device's --flash: it took the
         * device's lock and wrote its token there, without a word). */
        if (foreign_files(o->data_dir, o->db != NULL, other, sizeof(other))) {
            serve_warn(o, o->db ? "--data %s holds files that are not a node's (the first: %s): "
                                  "the node's files are made beside them; if this is not the "
                                  "node's directory, stop the server and give a new or empty one"
                                : "--data %s holds files that are not a fleet's (the first: %s) "
                                  "and no tcpota.db: a new fleet is made beside them; if this is "
                                  "not the fleet's directory, stop the server and give a new or "
                                  "empty one",
                       o->data_dir, other);
        }
    }
    if (!src->nkeys && o->api_host) { /* --api off: no images arrive here */
        serve_warn(o, "no --pubkey: the API takes unsigned images; give --pubkey K.pub so that "
                      "only signed images are served");
    }
    if (o->tls_cert) {
        o->reload = fleet_reload;
        o->release = serve_release;
        o->ctx = src;
    }
    serve_start_caught(o, 0);
    rc = tcpota_serve(o);
    if (rc != 0 && (created || was_empty)) {
        undo_data_dir(o, o->data_dir, created);
    } else if (rc != 0 && beside) {
        undo_own_files(o, o->data_dir);
    }
    return rc;
}

/* Notes in src a password that --db val, argv[at], shows to other users:
 * on the command line (ps, /proc/PID/cmdline), or in a config file they
 * may read (cfg; its flags are argv[1..cfg->nowned]). Warned about once
 * the log's format is known (serve_fleet); a password overridden by a
 * later --db is still where others read it. */
static void note_db_password(struct sources *src, const char *val,
                             const struct serve_config_args *cfg, int at)
{
    if (!store_pg_conninfo_password(val)) {
        return;
    }
    if (at > cfg->nowned) {
        src->db_password_argv = 1;
    } else if (cfg->mode & (S_IRGRP | S_IROTH)) {
        src->db_password_file = cfg->path;
        src->db_password_mode = cfg->mode;
    }
}

/* Whether the flags (a config file's first, when merged) end with
 * --log-format json: the last one given wins, as serve_args takes it. */
static int wants_json(int argc, char *const *argv)
{
    static const char flag[] = "--log-format";
    const char *v = NULL;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0 && i + 1 < argc) {
            v = argv[++i];
        } else if (strncmp(argv[i], flag, sizeof(flag) - 1) == 0 && argv[i][sizeof(flag) - 1] == '=') {
            v = argv[i] + sizeof(flag);
        }
    }
    return v && strcmp(v, "json") == 0;
}

/* `tcpota serve` with its arguments (cfg: a config file's flags first). */
/* Parses and runs; *stopped_at is the argv index of the option being read
 * when it returned, or 0 once all were read (a check across options). */
static int serve_args(const struct serve_config_args *cfg, int *stopped_at)
{
    int argc = cfg->argc;
    char **argv = cfg->argv;
    struct tcpota_serve_opts o;
    struct sources src;
    struct stat st;
    char host[256] = "0.0.0.0";
    const char *api = "127.0.0.1:8071", *ota = NULL, *http_host = NULL;
    const char *fleet_only = NULL; /* the last flag given that only fleet mode reads */
    char dbwhy[600];
    unsigned long long v;
    int i, rc, unauth_given = 0;

    memset(&o, 0, sizeof(o));
    memset(&src, 0, sizeof(src));
    src.require_signed = -1;
    o.host = host;
    o.port = 8070;
    o.max_conns = 16384;
    o.idle_timeout_s = 60;
    o.chunk = 4096;
    o.progress = 1;
    o.max_unauth_per_addr = DEFAULT_MAX_UNAUTH_PER_ADDR;
    o.max_image = 64u << 20;
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i], *val;
        /* "--name=VALUE": the name alone in a, for the comparisons below */
        size_t nl = strncmp(arg, "--", 2) == 0 ? strcspn(arg, "=") : strlen(arg);
        char a[64], why[CLI_OPT_WHY];
        int kind, at = i;

        *stopped_at = i;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (arg[0] != '-') {
            if (o.image) {
                fprintf(stderr, "tcpota serve: one image only (got %s and %s)\n", o.image, arg);
                return 2;
            }
            o.image = arg;
            continue;
        }
        snprintf(a, sizeof(a), "%.*s", (int)nl, arg);
        kind = strcmp(a, "--config") == 0 ? 1 : serve_option(a);
        if (kind < 0 || nl >= sizeof(a)) {
            fprintf(stderr, "tcpota serve: unknown option %s; see tcpota serve --help\n", arg);
            return 2;
        }
        if (kind == 0 && arg[nl]) {
            fprintf(stderr, "tcpota serve: %s takes no value\n", a);
            return 2;
        }
        if (strcmp(a, "--progress") == 0) { o.progress = 1; continue; }
        if (strcmp(a, "--require-signed") == 0) { src.require_signed = 1; continue; }
        if (strcmp(a, "--no-require-signed") == 0) { src.require_signed = 0; continue; }
        if (strcmp(a, "--allow-legacy") == 0) { o.allow_legacy = 1; continue; }
        if (strcmp(a, "--allow-downgrade") == 0) { o.allow_downgrade = 1; continue; }
        if (strcmp(a, "--require-auth") == 0) { o.require_auth = 1; continue; }
        if (strcmp(a, "--allow-unauthenticated-legacy") == 0) { o.allow_unauth_legacy = 1; continue; }
        if (strcmp(a, "--no-progress") == 0) { o.progress = 0; continue; }
        if (strcmp(a, "--quiet") == 0) { o.quiet = 1; continue; }
        if (!(val = cli_opt_value(argc, argv, &i, a, NULL, why, sizeof(why)))) {
            fprintf(stderr, "tcpota serve: %s\n", why);
            return 2;
        }
        if (strcmp(a, "--config") == 0) {
            /* read by serve_config_load() */
        } else if (strcmp(a, "--listen") == 0) {
            if (cli_hostport(val, "--listen", 1, host, sizeof(host), &o.port) < 0) return 2;
        } else if (strcmp(a, "--version") == 0) {
            /* Here, before any warning about what the version means. */
            if (cli_check_label("serve", a, val) < 0) return 2;
            src.version = val;
        } else if (strcmp(a, "--log-format") == 0) {
            if (strcmp(val, "text") != 0 && strcmp(val, "json") != 0) {
                fprintf(stderr, "tcpota serve: --log-format must be text or json (got %s)\n", val);
                return 2;
            }
            o.log_json = strcmp(val, "json") == 0;
        } else if (strcmp(a, "--manifest") == 0) {
            src.manifest = val;
        } else if (strcmp(a, "--pubkey") == 0) {
            uint8_t key[sizeof(src.keys[0])];
            size_t k;

            if (sodium_init() < 0 || check_arg(NULL, val, "--pubkey", 0) < 0 ||
                cli_load_pubkey(val, key) < 0) return 2;
            for (k = 0; k < src.nkeys && memcmp(src.keys[k], key, sizeof(key)) != 0; k++) {
            }
            if (k < src.nkeys) {
                /* The config file's and the unit's, say: the same key
                 * twice counted twice towards CLI_MAX_KEYS (a trial). */
                char where[600] = "";
                if (i <= cfg->nowned) { /* the config file's line, as the other notes */
                    snprintf(where, sizeof(where), " (line %u of %s)", cfg->lines[i - 1], cfg->path);
                }
                fprintf(stderr, "tcpota serve: note: --pubkey %s%s is a key given before; taken once\n",
                        val, where);
                continue;
            }
            if (src.nkeys == CLI_MAX_KEYS) {
                fprintf(stderr, "tcpota serve: --pubkey %s: at most %d different keys; remove those"
                        " no image is signed with any more\n", val, CLI_MAX_KEYS);
                return 2;
            }
            memcpy(src.keys[src.nkeys++], key, sizeof(key));
        } else if (strcmp(a, "--auth-file") == 0) {
            src.auth_file = val;
        } else if (strcmp(a, "--tls-cert") == 0) {
            o.tls_cert = val;
        } else if (strcmp(a, "--tls-key") == 0) {
            o.tls_key = val;
        } else if (strcmp(a, "--proxy-protocol") == 0) {
            if (parse_proxy_from(val, src.proxy_from, &src.nproxy_from) < 0) return 2;
            o.proxy_from = (const char(*)[PROXY_FROM_LEN])src.proxy_from;
            o.nproxy_from = src.nproxy_from;
        } else if (strcmp(a, "--tls-ticket-lifetime") == 0) {
            if (cli_number(val, a, 1, TLS_TICKET_LIFETIME_MAX, &v) < 0) return 2;
            o.tls_ticket_lifetime_s = (unsigned)v;
        } else if (strcmp(a, "--tls-ticket-key") == 0) {
            if (src.nticket == TLS_TICKET_KEYS_MAX) {
                fprintf(stderr, "tcpota serve: at most %u --tls-ticket-key (the first seals new "
                                "tickets, the others open older ones)\n", TLS_TICKET_KEYS_MAX);
                return 2;
            }
            src.ticket_paths[src.nticket++] = val;
        } else if (strcmp(a, "--max-conns") == 0) {
            if (cli_number(val, a, 1, 1000000, &v) < 0) return 2;
            o.max_conns = (unsigned)v;
        } else if (strcmp(a, "--workers") == 0) {
            if (cli_number(val, a, 1, WORKERS_MAX, &v) < 0) return 2;
            o.workers = (unsigned)v;
        } else if (strcmp(a, "--idle-timeout") == 0) {
            if (cli_number(val, a, 1, 65535, &v) < 0) return 2;
            o.idle_timeout_s = (unsigned)v;
        } else if (strcmp(a, "--max-unauth-per-addr") == 0) {
            if (cli_number(val, a, 0, 1000000, &v) < 0) return 2;
            o.max_unauth_per_addr = (unsigned)v;
            unauth_given = 1;
        } else if (strcmp(a, "--data") == 0) {
            o.data_dir = val;
        } else if (strcmp(a, "--db") == 0) {
            o.db = val;
            o.open_db = store_pg_open;
            note_db_password(&src, val, cfg, at);
        } else if (strcmp(a, "--db-timeout") == 0) {
            if (cli_number(val, a, 1, 3600, &v) < 0) return 2;
            o.db_timeout_s = (unsigned)v;
        } else if (strcmp(a, "--secrets-reread") == 0) {
            if (cli_number(val, a, 1, 86400, &v) < 0) return 2;
            o.secrets_reread_s = (unsigned)v;
        } else if (strcmp(a, "--api") == 0) {
            api = val;
            fleet_only = "--api"; /* not a: it ends with this turn of the loop */
        } else if (strcmp(a, "--api-max-conns") == 0) {
            if (cli_number(val, a, 1, 1000000, &v) < 0) return 2;
            o.api_max_conns = (unsigned)v;
            fleet_only = "--api-max-conns";
        } else if (strcmp(a, "--ota-listen") == 0) {
            ota = val;
            fleet_only = "--ota-listen";
        } else if (strcmp(a, "--http-host") == 0) {
            http_host = val;
            fleet_only = "--http-host";
        } else if (strcmp(a, "--max-image") == 0) {
            if (cli_size(val, a, 1, TCPOTA_IMAGE_UPLOAD_MAX, &v) < 0) return 2;
            src.max_image = val;
            o.max_image = (size_t)v;
            fleet_only = "--max-image";
        } else if (strcmp(a, "--chunk") == 0) {
            if (cli_number(val, a, 512, 16380, &v) < 0) return 2;
            o.chunk = (unsigned)v;
        } else { /* listed in serve_option() but not taken here */
            fprintf(stderr, "tcpota serve: unknown option %s; see tcpota serve --help\n", a);
            return 2;
        }
    }
    *stopped_at = 0;
    if (tls_pair_missing(&o)) {
        return 2;
    }
    if (o.allow_unauth_legacy && !o.require_auth) {
        /* Without it every legacy device is served anyway: the flag would
         * do nothing, and a reader would take it to mean some did not. */
        fprintf(stderr, "tcpota serve: --allow-unauthenticated-legacy applies only with "
                        "--require-auth (without it every legacy device is served, and so is "
                        "every device whose id has no secret); add --require-auth, or drop it\n");
        return 2;
    }
    if (unauth_given && !o.require_auth && !o.tls_cert) {
        /* The cap counts connections that have not authenticated yet
         * (server.c, accept_from), and only a server that makes them wait
         * for it counts them: here it would cap nothing. */
        fprintf(stderr, "tcpota serve: --max-unauth-per-addr applies only with --require-auth or "
                        "--tls-cert (it caps the connections one address holds before they "
                        "authenticate, and without either the server counts none); add one of "
                        "them, or drop it\n");
        return 2;
    }
    if ((src.nticket || o.tls_ticket_lifetime_s) && !o.tls_cert) {
        fprintf(stderr, "tcpota serve: %s needs --tls-cert and --tls-key: its tickets resume TLS "
                        "sessions\n", src.nticket ? "--tls-ticket-key" : "--tls-ticket-lifetime");
        return 2;
    }
    if (src.nticket &&
        load_ticket_keys(&o, &o, src.ticket_paths, src.nticket, src.ticket_keys) < 0) {
        sodium_memzero(&src, sizeof(src));
        return 2;
    }
    if (o.db && !*o.db) {
        /* libpq would take "" as every default: a local server's socket. */
        fprintf(stderr, "tcpota serve: --db is empty; give the database's connection string or "
                        "postgresql:// URI, or leave --db out (SQLite in --data DIR)\n");
        return 2;
    }
    if (o.db && !o.data_dir && o.image) {
        /* Not "add --data": that then refused FILE (a trial); and an
         * unsigned FILE takes its version and model in image add (a
         * review: the advice alone was refused). */
        fprintf(stderr, "tcpota serve: --db serves a fleet, whose images are added through its API,"
                        " not a FILE: give --data DIR (this node's image cache and its api.token)"
                        " instead of %s, and add it with `tcpota image add %s --version %s --model"
                        " MODEL` once the node runs (a signed image: its manifest says both)\n",
                o.image, o.image, src.version ? src.version : "V");
        return 2;
    }
    if (o.db && !o.data_dir) {
        fprintf(stderr, "tcpota serve: --db needs --data DIR too: the directory for this node's "
                        "image cache and its api.token\n");
        return 2;
    }
    /* Before the data directory is made, and said as what it is: not a
     * database to check on (libpq's reason, the password kept out). */
    if (o.db && store_pg_conninfo_check(o.db, NULL, dbwhy, sizeof(dbwhy)) < 0) {
        fprintf(stderr, "tcpota serve: %s\n", dbwhy);
        return 2;
    }
    if (o.data_dir && o.workers > 1) {
        if (o.db) { /* not SQLite's one writer: a node is one process */
            fprintf(stderr, "tcpota serve: --workers is for single-image mode: fleet mode runs "
                            "one process per node; to spread the fleet over more processes or "
                            "machines, run more --db nodes, each with its own --data "
                            "(docs/scaling.md)\n");
        } else {
            fprintf(stderr, "tcpota serve: --workers is for single-image mode: fleet mode (--data) "
                            "runs one process, as its SQLite store has one writer (to spread a "
                            "fleet over processes, run several --db nodes: docs/scaling.md)\n");
        }
        return 2;
    }
    if (o.db_timeout_s && !o.db) {
        /* Else silently ignored: a SQLite fleet's database is a file. */
        fprintf(stderr, "tcpota serve: --db-timeout is for a node on PostgreSQL (--db URI); drop "
                        "it%s\n", o.data_dir ? " (a --data fleet's SQLite database is a file of "
                        "its own, with nothing to time out)" : "");
        return 2;
    }
    if (o.secrets_reread_s && !o.db) {
        fprintf(stderr, "tcpota serve: --secrets-reread is for a node on PostgreSQL (--db URI);"
                        " drop it%s\n", o.data_dir ? " (a --data fleet's one server writes every"
                        " secret it holds: nothing to read again)" : "");
        return 2;
    }
    if (o.data_dir) {
        if (sodium_init() < 0) return 1;
        if (o.tls_cert && check_tls_files(&o, o.tls_cert, o.tls_key) < 0) {
            return 2;
        }
        rc = serve_fleet(&o, &src, api, ota, http_host);
        sodium_memzero(&src, sizeof(src));
        return rc;
    }
    /* Single-image mode has no API, no HTTP downloads and no image
     * uploads: such a flag would be silently ignored. */
    if (fleet_only) {
        fprintf(stderr, "tcpota serve: %s is a fleet-mode flag (the API, its uploads and "
                        "downloads); it needs --data DIR, or drop it to serve FILE alone\n",
                fleet_only);
        return 2;
    }
    /* Here, not before fleet mode: there --no-require-signed is refused
     * whatever --pubkey says, with fleet mode's reason. */
    if (src.nkeys && src.require_signed == 0) {
        fprintf(stderr, "tcpota serve: --pubkey requires a signature and --no-require-signed skips "
                        "it; drop one of them\n");
        return 2;
    }
    if (!o.image) {
        fprintf(stderr, "tcpota serve: no image FILE given (or --data DIR for fleet mode)\n");
        if (o.log_json) { /* a hundred lines of help are no log lines */
            fprintf(stderr, "tcpota serve: see tcpota serve --help\n");
        } else {
            usage(stderr);
        }
        return 2;
    }
    if (check_arg(&o, o.image, "image", 0) < 0) {
        return 2;
    }
    if (stat(o.image, &st) == 0 && st.st_size == 0) {
        fprintf(stderr, "tcpota serve: image: %s is empty; give the firmware image to serve\n",
                o.image);
        return 2;
    }
    if (stat(o.image, &st) == 0 && (uint64_t)st.st_size > UINT32_MAX) {
        /* A bad argument as an empty one is (exit 2, as serve --help says),
         * not a failure to serve (a trial got 1). */
        fprintf(stderr, "tcpota serve: image: %s has %lld bytes, more than an image can have "
                        "(4 GiB - 1: sizes are 32-bit in the protocol and the manifest); give the "
                        "firmware image to serve\n", o.image, (long long)st.st_size);
        return 2;
    }
    if (sodium_init() < 0) {
        return 1;
    }
    if (o.require_auth && !src.auth_file) {
        fprintf(stderr, "tcpota serve: --require-auth needs --auth-file\n");
        return 2;
    }
    if (tls_pair_missing(&o)) {
        return 2;
    }
    if (o.tls_cert && check_tls_files(&o, o.tls_cert, o.tls_key) < 0) {
        return 2;
    }
    if (is_manifest(o.image)) {
        /* Served, its 200-odd bytes would be the image (a trial was told
         * to sign it, as fw.bin.manifest.manifest was missing). At the
         * start only: a reload reads the image off the loop. */
        size_t len = strlen(o.image), ext = sizeof(".manifest") - 1;
        int named = len > ext && strcmp(o.image + len - ext, ".manifest") == 0;
        fprintf(stderr, "tcpota serve: %s is a manifest (tcpota sign writes it beside the image), "
                        "not an image: give the image itself%s%.*s%s\n", o.image,
                named ? " (" : "", named ? (int)(len - ext) : 0, o.image, named ? ")" : "");
        return 2;
    }
    if ((rc = serve_load(&src, &o)) != 0) {
        return rc;
    }
    warn_settings(&o, &src);
    src.running = 1;
    o.reload = serve_reload;
    o.release = serve_release;
    o.ctx = &src;
    serve_start_caught(&o, 0);
    rc = tcpota_serve(&o);
    serve_release(NULL, &o);
    sodium_memzero(&src, sizeof(src));
    return rc;
}

/* The length of flag's setting name (up to '=') and where it starts:
 * --no-progress and --progress set one thing (as do --no-require-signed and
 * --require-signed), so both name "progress". */
static const char *setting_of(const char *flag, size_t *len)
{
    const char *name = flag + strspn(flag, "-");

    if (strncmp(name, "no-", 3) == 0) name += 3;
    *len = strcspn(name, "=");
    return name;
}

/* The index of the command line's flag that sets again what the file's
 * flag argv[i] (i in 1..nowned) sets, the last one (which wins), or 0;
 * --pubkey adds up instead. */
static int overridden_later(const struct serve_config_args *a, int i)
{
    size_t n, m;
    const char *s = setting_of(a->argv[i], &n), *t;
    int j, last = 0;

    if (n == strlen("pubkey") && strncmp(s, "pubkey", n) == 0) return 0;
    for (j = a->nowned + 1; j < a->argc; j++) {
        char flag[64];

        if (strncmp(a->argv[j], "--", 2) != 0) continue; /* a value */
        /* Only an option serve takes overrides (a trial's --no-allow-legacy
         * was said to, then refused as unknown). */
        snprintf(flag, sizeof(flag), "%.*s", (int)strcspn(a->argv[j], "="), a->argv[j]);
        if (serve_option(flag) < 0) continue;
        t = setting_of(a->argv[j], &m);
        if (m == n && strncmp(s, t, n) == 0) last = j;
    }
    return last;
}

#define SERVE_CONFIG_NOTE_MAX 12 /* the file's flags a note names */

/* A flag of the config file that the command line gives again (or its
 * opposite: --progress against a no-progress line) is said to be
 * overridden: a trial's 'data /tmp' line was silently replaced by the
 * unit's --data. */
static void config_overridden(const struct serve_config_args *a)
{
    int i, j;

    for (i = 1; i <= a->nowned; i++) {
        if ((j = overridden_later(a, i)) > 0) {
            fprintf(stderr, "tcpota serve: note: %.*s on the command line overrides line %u of %s\n",
                    (int)strcspn(a->argv[j], "="), a->argv[j], a->lines[i - 1], a->path);
        }
    }
}

int cmd_serve(int argc, char **argv)
{
    struct serve_config_args args;
    struct log_caught caught;
    int rc, json;

    /* SIGHUP and SIGUSR1 end a process by default: sent during the start
     * (a service manager's reload just after its start), before the
     * server's handlers are in place, they are ignored, not fatal. Such a
     * reload is lost: a file changed after the start read it (a TLS
     * certificate while --db connects) waits for the next SIGHUP. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    /* The command line's --log-format json covers the config file's own
     * errors; the file's, what follows its reading. */
    json = wants_json(argc, argv);
    if (json) {
        serve_start_catch(&caught);
    }
    rc = serve_config_load(argc, argv, &args);
    if (rc == 0) {
        json = wants_json(args.argc, args.argv);
    }
    if (rc == 0 && json) {
        serve_start_catch(&caught);
    }
    if (rc == 0) {
        int at = 0;
        config_overridden(&args);
        rc = serve_args(&args, &at);
        if (json) { /* the server ran, and failed: its notes below too */
            serve_start_catch(&caught);
        }
        /* Not when the command line's own option was the one refused. */
        if (rc == 2 && args.nowned > 0 && at >= 1 && at <= args.nowned) {
            /* The file's own flag (argv[at] is "--name=VALUE"): its line. */
            const char *v = strchr(args.argv[at], '=');
            fprintf(stderr, "tcpota serve: note: that is line %u of %s%s%s\n", args.lines[at - 1],
                    args.path, v && (strstr(v, " #") || strstr(v, "\t#"))
                                   ? " (a comment takes a line of its own, starting with #)"
                                   : "",
                    overridden_later(&args, at)
                        ? "; the command line gives that option again, but each line of the file"
                          " must be valid too"
                        : "");
        } else if (rc == 2 && args.nowned > 0 && at <= args.nowned) {
            /* A rule between options (--tls-key needs --tls-cert): the
             * file's lines are named, so that one of them need not be
             * looked for (a trial: "may be set there" left that to do). */
            int i;
            fprintf(stderr, "tcpota serve: note: %s gives", args.path);
            for (i = 1; i <= args.nowned && i <= SERVE_CONFIG_NOTE_MAX; i++) {
                fprintf(stderr, "%s %.*s (line %u)", i > 1 ? "," : "",
                        (int)strcspn(args.argv[i], "="), args.argv[i], args.lines[i - 1]);
            }
            fprintf(stderr, "%s; the option named above may be one of them\n",
                    args.nowned > SERVE_CONFIG_NOTE_MAX ? ", ..." : "");
        }
    }
    if (g_start_caught) {
        struct tcpota_serve_opts as_json;

        memset(&as_json, 0, sizeof(as_json));
        as_json.log_json = 1;
        serve_start_caught(&as_json, rc != 0);
    }
    serve_config_free(&args);
    return rc;
}
