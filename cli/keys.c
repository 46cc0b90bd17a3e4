/* keys.c - Ed25519 keys, device secrets and signed manifests (see keys.h). */
#include "keys.h"
#include "api.h" /* api_key_id */
#include "digest.h"
#include "esp_image.h"
#include "key_tags.h"
#include "cli.h"

#include "tcpota/manifest.h"
#include "tcpota/version.h"
#include "server.h" /* TLS_TICKET_KEY_LEN */

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PUB_TAG KEY_TAG_PUBLIC " " KEY_TAG_VERSION " "
#define SEC_TAG KEY_TAG_PRIVATE " " KEY_TAG_VERSION " "
#define DEV_TAG KEY_TAG_DEVICE " " KEY_TAG_VERSION " "
#define KEY_FILE_MAX 512 /* a key file is one line of at most ~160 bytes */

/* The three kinds of key file, so that a file of one kind given where
 * another belongs is named for what it is. */
enum key_kind { KEY_PUBLIC, KEY_PRIVATE, KEY_DEVICE, KEY_KINDS };
/* hint: what to give instead; writer: what writes such a file. A device
 * secret has two: a fleet server makes and keeps one per device (`tcpota
 * device secret`, docs/fleet.md), single-image mode's --auth-file lists
 * ones keygen made (docs/security.md). */
static const struct {
    const char *tag, *what, *noun, *hint, *writer;
} kinds[KEY_KINDS] = {
    {PUB_TAG, "public key", "an Ed25519 public key", "NAME.pub, written by `tcpota keygen --out NAME`",
     "`tcpota keygen`"},
    {SEC_TAG, "private key", "an Ed25519 private key", "NAME.key, written by `tcpota keygen --out NAME`",
     "`tcpota keygen`"},
    {DEV_TAG, "device secret", "a device secret",
     "the file written for this device by `tcpota device secret ID --out FILE` (a fleet server, "
     "tcpota serve --data) or by `tcpota keygen --device-secret --out FILE` (a server's "
     "--auth-file)",
     "`tcpota device secret ID --out FILE` or `tcpota keygen --device-secret`"},
};

/* Reads all of fd (at most max bytes) into a malloc'd buffer with room for
 * a terminating 0. Returns 0, or -1 after printing what is wrong. */
int cli_read_fd(int fd, const char *path, const char *what, size_t max, uint8_t **buf, size_t *len)
{
    uint8_t *b = malloc(max + 2);
    size_t n = 0;
    ssize_t r = 1;

    if (!b) {
        cli_err("%s: out of memory reading %s\n", what, path);
        return -1;
    }
    while (n <= max && r != 0) {
        r = read(fd, b + n, max + 1 - n);
        if (r < 0 && errno != EINTR) {
            cli_err("%s: cannot read %s: %s\n", what, path, strerror(errno));
            free(b);
            return -1;
        }
        n += r > 0 ? (size_t)r : 0;
    }
    if (n > max) {
        cli_err("%s: %s is larger than the %zu bytes allowed; is it the right file?\n",
                what, path, max);
        free(b);
        return -1;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

/* Opens (refusing a FIFO, a directory, a device) and reads a small file. */
static int read_small(const char *path, const char *what, size_t max, uint8_t **buf, size_t *len)
{
    int fd = cli_open_regular(path, what), rc;

    if (fd < 0) {
        return -1;
    }
    rc = cli_read_fd(fd, path, what, max, buf, len);
    close(fd);
    return rc;
}

int cli_read_file(const char *path, const char *what, size_t max, uint8_t **buf, size_t *len)
{
    return read_small(path, what, max, buf, len);
}

/* Explains why buf (a key file's text, len > 0) is not of kind k. */
static void wrong_kind(const char *path, enum key_kind k, const uint8_t *buf, size_t len)
{
    int j;

    for (j = 0; j < KEY_KINDS; j++) {
        size_t tl = strlen(kinds[j].tag);
        if (len >= tl && memcmp(buf, kinds[j].tag, tl) == 0) {
            cli_err("%s: %s holds %s, not %s; give %s\n", kinds[k].what, path,
                    kinds[j].noun, kinds[k].noun, kinds[k].hint);
            return;
        }
    }
    cli_err("%s: %s is not a tcpota key file; give %s\n", kinds[k].what, path,
            kinds[k].hint);
}

/* Parses a key file's text (trailing newline stripped) of kind k into out
 * (exactly want bytes, or 1..want when `upto`). Returns the byte count, or
 * -1 after saying what the file is instead. */
static int parse_key(const char *path, enum key_kind k, const char *text, size_t len, uint8_t *out,
                     size_t want, int upto)
{
    size_t bin = 0, tlen = strlen(kinds[k].tag);

    if (len == 0) {
        cli_err("%s: %s is empty; give %s\n", kinds[k].what, path, kinds[k].hint);
        return -1;
    }
    if (len < tlen || memcmp(text, kinds[k].tag, tlen) != 0) {
        wrong_kind(path, k, (const uint8_t *)text, len);
        return -1;
    }
    if (memchr(text, '\n', len)) {
        /* A key and its line are fine; what follows them is not the key. */
        cli_err("%s: %s has more than one line; a key file is one line, as %s wrote it: remove"
                " what follows it\n", kinds[k].what, path, kinds[k].writer);
        return -1;
    }
    if (sodium_hex2bin(out, want, text + tlen, len - tlen, NULL, &bin, NULL) != 0 ||
        (upto ? bin == 0 : bin != want)) {
        /* A secret's length said as the protocol takes it (16 to 64 bytes),
         * not as this parse does (any): a shorter one is refused after it,
         * with what to do (device_opts.c). */
        char range[32] = "";
        if (upto) snprintf(range, sizeof range, "%u to ", TCPOTA_SECRET_MIN);
        cli_err("%s: %s is damaged: the key is not %s%zu bytes of hex; use the file "
                        "as %s wrote it\n", kinds[k].what, path, range, want,
                kinds[k].writer);
        return -1;
    }
    return (int)bin;
}

/* Reads the one-line key file of kind k at path into out (see parse_key).
 * A private key or device secret that others may read is warned about once
 * it is known to be one. Returns the byte count or -1. */
static int load_hex(const char *path, enum key_kind k, uint8_t *out, size_t want, int upto)
{
    uint8_t *buf;
    size_t len;
    int rc = -1, fd = cli_open_regular(path, kinds[k].what);

    if (fd < 0) {
        return -1;
    }
    if (cli_read_fd(fd, path, kinds[k].what, KEY_FILE_MAX, &buf, &len) == 0) {
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
        buf[len] = 0;
        rc = parse_key(path, k, (const char *)buf, len, out, want, upto);
        if (rc >= 0 && k != KEY_PUBLIC) {
            cli_warn_if_exposed(path, fd);
        }
        sodium_memzero(buf, len);
        free(buf);
    }
    close(fd);
    return rc;
}

int cli_load_pubkey(const char *path, uint8_t pk[32])
{
    return load_hex(path, KEY_PUBLIC, pk, 32, 0) < 0 ? -1 : 0;
}

int cli_load_secret(const char *path, uint8_t *out, size_t cap)
{
    return load_hex(path, KEY_DEVICE, out, cap, 1);
}

/* One option of a subcommand: "--name VALUE" (or "--name=VALUE"), or a
 * flag when metavar is NULL. `missing` (for required ones) says what the
 * value is, for the message when it is absent. An option that may be given
 * up to max times (max > 1) fills val[0..max-1] and counts them in *n. */
struct opt {
    const char *name, *metavar, *missing;
    const char **val;
    unsigned max, *n;
};

static const char *const flag_set = "1";

/* Matches argv[*i] against opts. Returns 1 when matched (value stored, *i
 * advanced past it), 0 when arg is not an option, -1 after a message. */
static int parse_opt(const char *cmd, const struct opt *opts, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *eq = a[1] == '-' ? strchr(a, '=') : NULL, *v;
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    char why[CLI_OPT_WHY];

    if (a[0] != '-' || a[1] == 0) {
        return 0;
    }
    for (; opts->name; opts++) {
        if (strlen(opts->name) == nl && strncmp(a, opts->name, nl) == 0) break;
    }
    if (!opts->name) {
        fprintf(stderr, "tcpota %s: unknown option %s; see tcpota %s --help\n", cmd, a, cmd);
        return -1;
    }
    if (opts->max > 1 && *opts->n == opts->max) {
        fprintf(stderr, "tcpota %s: %s is given more than %u times; give at most %u\n", cmd,
                opts->name, opts->max, opts->max);
        return -1;
    }
    if (opts->max <= 1 && *opts->val) {
        fprintf(stderr, "tcpota %s: %s is given twice; give it once\n", cmd, opts->name);
        return -1;
    }
    if (!opts->metavar) {
        if (eq) {
            fprintf(stderr, "tcpota %s: %s takes no value\n", cmd, opts->name);
            return -1;
        }
        *opts->val = flag_set;
        return 1;
    }
    if (!(v = cli_opt_value(argc, argv, i, opts->name, opts->metavar, why, sizeof(why)))) {
        fprintf(stderr, "tcpota %s: %s\n", cmd, why);
        return -1;
    }
    if (!*v) {
        fprintf(stderr, "tcpota %s: %s is empty; give %s %s\n", cmd, opts->name, opts->name,
                opts->metavar);
        return -1;
    }
    if (opts->max > 1) {
        opts->val[(*opts->n)++] = v;
    } else {
        *opts->val = v;
    }
    return 1;
}

/* Parses argv for cmd. `file` receives the one positional argument (NULL:
 * none accepted). Returns 0, 1 when --help was printed, -1 after a message. */
static int parse_args(const char *cmd, const struct opt *opts, const char **file, const char *usage,
                      int argc, char **argv)
{
    int i, rc;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", usage);
            return 1;
        }
    }
    for (i = 1; i < argc; i++) {
        rc = parse_opt(cmd, opts, argc, argv, &i);
        if (rc < 0) return -1;
        if (rc > 0) continue;
        if (!file) {
            fprintf(stderr, "tcpota %s: unexpected argument '%s'; see tcpota %s --help\n", cmd,
                    argv[i], cmd);
            return -1;
        }
        if (*file) {
            fprintf(stderr, "tcpota %s: two files given ('%s' and '%s'); give one FILE\n", cmd, *file,
                    argv[i]);
            return -1;
        }
        *file = argv[i];
    }
    return 0;
}

/* Names each required option that is absent. Returns 0 if none is. */
static int require(const char *cmd, const struct opt *opts, const char *file, const char *file_what)
{
    int rc = 0;

    for (; opts->name; opts++) {
        if (opts->missing && !*opts->val) {
            fprintf(stderr, "tcpota %s: %s is missing: give %s %s (%s)\n", cmd, opts->name,
                    opts->name, opts->metavar, opts->missing);
            rc = -1;
        }
    }
    if (file_what && !file) {
        fprintf(stderr, "tcpota %s: FILE is missing: give %s as the last argument\n", cmd, file_what);
        rc = -1;
    }
    if (rc < 0) {
        fprintf(stderr, "tcpota %s: see tcpota %s --help\n", cmd, cmd);
    }
    return rc;
}

/* The file names keygen suggests for a device secret and a ticket key. */
#define KEYGEN_SECRET_EG "dev1.secret"
#define KEYGEN_TICKET_EG "ticket.key"

/* 1 when a new file's failure (errno err) lies in the output name the user
 * gave (no such folder, not a folder, not writable): exit 2, as a bad
 * argument; else (a full disk, an I/O error) 1. keygen and sign alike. */
static int out_name_at_fault(int err)
{
    return err == ENOENT || err == EACCES || err == ENOTDIR;
}

/* Explains why a new file could not be created at path (errno err); eg:
 * a file name to suggest in a directory given as --out (KEYGEN_SECRET_EG,
 * KEYGEN_TICKET_EG), NULL when path is NAME.key or NAME.pub of a key pair,
 * whose NAME the user gave. Returns the exit code: 2 when the name given is
 * at fault, else 1. */
static int create_failed(const char *cmd, const char *path, int err, const char *eg)
{
    struct stat st;
    int there = err == EEXIST && lstat(path, &st) == 0;
    int dir = there && S_ISDIR(st.st_mode);

    if (dir && !eg) {
        fprintf(stderr, "tcpota %s: %s is a directory; choose another --out NAME (NAME.key and "
                        "NAME.pub are written)\n", cmd, path);
    } else if (dir) {
        fprintf(stderr, "tcpota %s: %s is a directory; give a file name in it, e.g. %s/%s\n", cmd,
                path, path, eg);
    } else if (there && !S_ISREG(st.st_mode)) {
        /* Not a key (a trial's FIFO was called one). */
        fprintf(stderr, "tcpota %s: %s already exists and is %s, not a file to write a key to; "
                        "choose another name\n", cmd, path, cli_file_kind(st.st_mode));
    } else if (err == EEXIST) {
        fprintf(stderr, "tcpota %s: %s already exists; not overwriting a key: remove it or choose "
                        "another name\n", cmd, path);
    } else if (err == ENOENT) {
        fprintf(stderr, "tcpota %s: cannot create %s: its directory does not exist; create it first\n",
                cmd, path);
    } else {
        fprintf(stderr, "tcpota %s: cannot create %s: %s\n", cmd, path, strerror(err));
        return out_name_at_fault(err) ? 2 : 1;
    }
    return 2;
}

/* Writes a new file that must not exist yet, with `mode`. O_EXCL also
 * means a FIFO or a symlink planted at path is never opened. Returns 0 or
 * the exit code after a message. */
static int write_new_bytes(const char *path, const void *p, size_t n, mode_t mode, const char *eg)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);

    if (fd < 0) {
        return create_failed("keygen", path, errno, eg);
    }
    if (fchmod(fd, mode) < 0 || write(fd, p, n) != (ssize_t)n || fsync(fd) < 0) {
        fprintf(stderr, "tcpota keygen: cannot write %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return 1;
    }
    close(fd);
    return 0;
}

static int write_new(const char *path, const char *text, mode_t mode, const char *eg)
{
    return write_new_bytes(path, text, strlen(text), mode, eg);
}

/* --out must name a file: "" or "dir/" would write hidden ".key"/".pub"
 * files, and "release.key" would write "release.key.key". */
static int check_out_name(const char *out, const char *eg)
{
    const char *base = strrchr(out, '/') ? strrchr(out, '/') + 1 : out;
    size_t n = strlen(out);

    struct stat st;

    /* A key pair's NAME that is an existing directory too: --out /tmp
     * wrote /tmp.key and /tmp.pub beside it, not in it (a trial). (A FILE
     * that is one is refused where it is written.) */
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        (!eg && stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, "tcpota keygen: --out %s names a directory, not a file; give %s, e.g. "
                        "--out %s%s%s\n", out, eg ? "a FILE" : "a NAME", out,
                *base && out[n - 1] != '/' ? "/" : "", eg ? eg : "release");
        return -1;
    }
    if (!eg && n > 4 && (strcmp(out + n - 4, ".key") == 0 || strcmp(out + n - 4, ".pub") == 0)) {
        fprintf(stderr, "tcpota keygen: --out takes the NAME without .key or .pub: --out %.*s writes "
                        "%.*s.key and %.*s.pub\n", (int)(n - 4), out, (int)(n - 4), out, (int)(n - 4), out);
        return -1;
    }
    return 0;
}

static int keygen_secret(const char *out)
{
    char hex[65], line[128];
    uint8_t s[32];
    int rc;

    randombytes_buf(s, sizeof(s));
    sodium_bin2hex(hex, sizeof(hex), s, sizeof(s));
    snprintf(line, sizeof(line), DEV_TAG "%s\n", hex);
    rc = write_new(out, line, 0600, KEYGEN_SECRET_EG);
    sodium_memzero(s, sizeof(s));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(line, sizeof(line));
    if (!rc) fprintf(stderr, "tcpota keygen: wrote device secret %s (0600)\n", out);
    return rc;
}

/* A TLS session ticket key for tcpota serve --tls-ticket-key: raw random
 * bytes, nginx's 80-byte ssl_session_ticket_key layout (server.h). */
static int keygen_ticket_key(const char *out)
{
    uint8_t k[TLS_TICKET_KEY_LEN];
    int rc;

    randombytes_buf(k, sizeof(k));
    rc = write_new_bytes(out, k, sizeof(k), 0600, KEYGEN_TICKET_EG);
    sodium_memzero(k, sizeof(k));
    if (!rc) fprintf(stderr, "tcpota keygen: wrote TLS ticket key %s (0600)\n", out);
    return rc;
}

static int keygen_pair(const char *out)
{
    uint8_t pk[32], sk[64];
    char hex[129], line[256], key[4096], pub[4096], id[API_KEY_ID_HEX + 1];
    struct stat st;
    int rc;

    if (snprintf(key, sizeof(key), "%s.key", out) >= (int)sizeof(key) ||
        snprintf(pub, sizeof(pub), "%s.pub", out) >= (int)sizeof(pub)) {
        fprintf(stderr, "tcpota keygen: --out NAME is too long\n");
        return 2;
    }
    if (lstat(pub, &st) == 0) { /* checked first: no private key left behind */
        return create_failed("keygen", pub, EEXIST, NULL);
    }
    crypto_sign_keypair(pk, sk);
    sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));
    snprintf(line, sizeof(line), SEC_TAG "%s\n", hex);
    rc = write_new(key, line, 0600, NULL);
    if (rc == 0) {
        sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
        snprintf(line, sizeof(line), PUB_TAG "%s\n", hex);
        rc = write_new(pub, line, 0644, NULL);
        if (rc == 0) {
            api_key_id(pk, id);
            fprintf(stderr, "tcpota keygen: wrote %s (private, 0600) and %s, key id %s\n", key, pub, id);
        } else {
            unlink(key);
        }
    }
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(line, sizeof(line));
    return rc;
}

int cmd_keygen(int argc, char **argv)
{
    const char *out = NULL, *secret = NULL, *ticket = NULL;
    const struct opt opts[] = {
        {"--out", "NAME", "where to write: NAME.key and NAME.pub, or the device secret or ticket key FILE", &out, 0, NULL},
        {"--device-secret", NULL, NULL, &secret, 0, NULL},
        {"--ticket-key", NULL, NULL, &ticket, 0, NULL},
        {NULL, NULL, NULL, NULL, 0, NULL},
    };
    int rc = parse_args("keygen", opts, NULL,
                        "usage: tcpota keygen --out NAME          writes NAME.key (0600) and NAME.pub\n"
                        "       tcpota keygen --device-secret --out FILE   a 32-byte device secret (0600)\n"
                        "       tcpota keygen --ticket-key --out FILE      a TLS session ticket key for\n"
                        "                                           tcpota serve --tls-ticket-key (0600)\n"
                        "Existing files are never overwritten.\n"
                        "Exit status: 0 written, 1 failed, 2 bad arguments or output name.\n",
                        argc, argv);

    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    if (secret && ticket) {
        fprintf(stderr, "tcpota keygen: --device-secret and --ticket-key make different files; "
                        "give one of them\n");
        return 2;
    }
    if (require("keygen", opts, NULL, NULL) < 0 ||
        check_out_name(out, secret ? KEYGEN_SECRET_EG : ticket ? KEYGEN_TICKET_EG : NULL) < 0) {
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "tcpota keygen: libsodium failed to initialise\n");
        return 1;
    }
    return secret ? keygen_secret(out) : ticket ? keygen_ticket_key(out) : keygen_pair(out);
}

/* SHA-256 and size of a file, streaming. */
/* The image's id: the server's own SHA-256 (digest.h, OpenSSL's). A read
 * that fails midway is an error, not the id of the bytes read so far. */
static int hash_file(const char *path, uint8_t out[32], uint32_t *size,
                     uint8_t head[ESP_IMAGE_PEEK], size_t *head_n)
{
    struct digest st;
    uint8_t buf[65536];
    uint64_t total = 0;
    size_t n;
    int bad;
    FILE *f = cli_fopen_regular(path, "image");

    if (!f) {
        return -1;
    }
    if (digest_init(&st) < 0) {
        cli_err("image: out of memory hashing %s\n", path);
        fclose(f);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (head && total < ESP_IMAGE_PEEK) {
            size_t k = ESP_IMAGE_PEEK - (size_t)total < n ? ESP_IMAGE_PEEK - (size_t)total : n;
            memcpy(head + total, buf, k);
            *head_n = (size_t)total + k;
        }
        digest_update(&st, buf, n);
        total += n;
    }
    bad = ferror(f) || total == 0 || total > 0xffffffffu;
    if (ferror(f)) {
        cli_err("image: cannot read %s: %s\n", path, strerror(errno));
    } else if (total == 0) {
        cli_err("image: %s is empty; give the firmware image file\n", path);
    } else if (total > 0xffffffffu) {
        cli_err("image: %s is 4 GiB or larger; an image must be smaller\n", path);
    }
    fclose(f);
    if (digest_final(&st, out) < 0 && !bad) {
        cli_err("image: out of memory hashing %s\n", path);
        bad = 1;
    }
    if (bad) {
        return -1;
    }
    *size = (uint32_t)total;
    return 0;
}

/* Refuses at once an image that cannot be signed or checked (missing, not
 * a regular file, empty, too large), so that it counts as bad input. */
static int check_image(const char *path)
{
    struct stat st;
    int fd = cli_open_regular(path, "image"), rc = -1;

    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        cli_err("image: %s: %s\n", path, strerror(errno));
    } else if (st.st_size == 0) {
        cli_err("image: %s is empty; give the firmware image file\n", path);
    } else if ((uint64_t)st.st_size > 0xffffffffu) {
        cli_err("image: %s is 4 GiB or larger; an image must be smaller\n", path);
    } else {
        rc = 0;
    }
    close(fd);
    return rc;
}

/* A manifest's version and model: 1..32 printable ASCII characters. */
int cli_check_label(const char *cmd, const char *opt, const char *v)
{
    size_t i, n = strlen(v);

    for (i = 0; i < n && v[i] >= 0x20 && v[i] <= 0x7e; i++) {
    }
    if (n == 0 || n > TCPOTA_MAX_NAME || i < n) {
        fprintf(stderr, "tcpota %s: %s '%s' must be 1 to %u printable ASCII characters\n", cmd, opt,
                cli_cut(v), TCPOTA_MAX_NAME);
        return -1;
    }
    return 0;
}

/* 1 when the regular file `path` (size bytes) may be replaced by a new
 * manifest: it is one, or its name says it is one (a damaged manifest is
 * signed again over). Anything else, a key, an image, a config given to
 * --out by mistake, is kept. */
static int replaceable(const char *path, off_t size)
{
    struct tcpota_manifest m;
    uint8_t *b = NULL;
    size_t n = strlen(path), len = 0;
    int fd, ok = 0;

    if (n >= sizeof(".manifest") && strcmp(path + n - strlen(".manifest"), ".manifest") == 0) {
        return 1;
    }
    if (size <= 0 || size > TCPOTA_MAX_MANIFEST || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return 0;
    }
    if (cli_read_fd(fd, path, "--out", TCPOTA_MAX_MANIFEST, &b, &len) == 0) {
        ok = tcpota_manifest_parse(b, len, &m) == 0;
    }
    close(fd);
    free(b);
    return ok;
}

/* Writes the manifest to `out` whole or not at all: into a temporary file
 * beside it, renamed over `out` once synced, so that a full disk or a kill
 * leaves no empty or partial manifest and keeps a previous one. Refuses
 * anything at `out` but a regular file (a FIFO would block) and the image
 * or key itself (it would be destroyed); a symbolic link is followed, as
 * a write would. Returns 0, or the exit code after a message. */
static int write_manifest(const char *out, int given, const char *image, const char *key,
                          const uint8_t *man, int n, int *replaced)
{
    struct stat st, other;
    char target[4096], tmp[4096 + 8], *slash;
    mode_t mask, mode;
    int fd, dfd, ok, err, exists = stat(out, &st) == 0;

    *replaced = exists;

    if (exists) {
        if (!S_ISREG(st.st_mode)) {
            /* Named as the user met it: a trial gave no --out and was told
             * "--out FILE.manifest". */
            fprintf(stderr, "tcpota sign: %s%s is not a regular file%s%s%s; %s\n",
                    given ? "--out " : "", out,
                    S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) ? " (it is " : "",
                    S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) ? cli_file_kind(st.st_mode) : "",
                    S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) ? ")" : "",
                    given ? "give a file name" : "it is where the manifest goes without --out:"
                                                 " move it away, or give --out FILE");
            return 2;
        }
        if ((stat(image, &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino) ||
            (stat(key, &other) == 0 && other.st_dev == st.st_dev && other.st_ino == st.st_ino)) {
            fprintf(stderr, "tcpota sign: --out %s is the image or the key itself; give another "
                            "file, e.g. %s.manifest\n", out, image);
            return 2;
        }
        /* The file the rename replaces: a link's target, not its name. */
        if (!replaceable(realpath(out, target) ? target : out, st.st_size)) {
            fprintf(stderr, "tcpota sign: --out %s exists and is not a manifest (%lld bytes); sign "
                            "replaces only a manifest or a FILE.manifest: give another --out, or "
                            "remove %s first\n", out, (long long)st.st_size, out);
            return 2;
        }
    }
    if (!realpath(out, target) && snprintf(target, sizeof(target), "%s", out) >= (int)sizeof(target)) {
        fprintf(stderr, "tcpota sign: --out %s: path too long\n", out);
        return 2;
    }
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", target);
    if ((fd = mkstemp(tmp)) < 0) {
        err = errno;
        if (err == ENOENT) {
            fprintf(stderr, "tcpota sign: cannot write %s: its directory does not exist; create "
                            "it first\n", out);
        } else {
            fprintf(stderr, "tcpota sign: cannot write %s: %s (sign writes a new file beside it "
                            "and renames it over)\n", out, strerror(err));
        }
        return out_name_at_fault(err) ? 2 : 1;
    }
    mask = umask(0);
    umask(mask);
    mode = exists ? st.st_mode & 07777 : 0644 & ~mask; /* a manifest replaced keeps its mode */
    errno = EIO; /* a short write sets none */
    ok = fchmod(fd, mode) == 0 && write(fd, man, (size_t)n) == n && fsync(fd) == 0;
    err = errno;
    if (close(fd) < 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok && rename(tmp, target) < 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        fprintf(stderr, "tcpota sign: cannot write %s: %s%s\n", out, strerror(err),
                err == ENOSPC || err == EDQUOT ? "; free space there and sign again (nothing was "
                                                 "written)" : "");
        unlink(tmp);
        return 1;
    }
    /* The rename itself lasts once the directory is synced. */
    slash = strrchr(target, '/');
    if (slash) *slash = '\0';
    dfd = open(slash ? (*target ? target : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Encodes and signs the manifest of an image into man (cap bytes).
 * Returns its length, or -1 after a message. */
static int make_manifest(const uint8_t sk[64], const uint8_t sha[32], uint32_t size, const char *version,
                         const char *model, uint32_t counter, uint8_t *man, size_t cap)
{
    struct tcpota_manifest m;
    int n;

    memset(&m, 0, sizeof(m));
    m.image_size = size;
    m.sha256 = sha;
    m.version.ptr = (const uint8_t *)version;
    m.version.len = (uint16_t)strlen(version);
    m.model.ptr = (const uint8_t *)model;
    m.model.len = (uint16_t)strlen(model);
    m.security_counter = counter;
    m.created = (uint64_t)time(NULL);
    m.pubkey = sk + 32; /* libsodium's secret key ends with the public key */
    n = tcpota_manifest_encode_body(&m, man, cap - TCPOTA_SIG_LEN);
    if (n < 0) {
        fprintf(stderr, "tcpota sign: cannot encode the manifest (%s)\n", tcpota_strerror(n));
        return -1;
    }
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, sk);
    return n + TCPOTA_SIG_LEN;
}

int cmd_sign(int argc, char **argv)
{
    const char *key = NULL, *version = NULL, *model = NULL, *out = NULL, *image = NULL, *cnt = NULL;
    const struct opt opts[] = {
        {"--key", "NAME.key", "the private key, written by `tcpota keygen --out NAME`", &key, 0, NULL},
        {"--version", "V", "the image's version, e.g. 2.0.0", &version, 0, NULL},
        {"--model", "M", "the hardware model the image is for, e.g. esp32", &model, 0, NULL},
        {"--security-counter", "N", NULL, &cnt, 0, NULL},
        {"--out", "FILE", NULL, &out, 0, NULL},
        {NULL, NULL, NULL, NULL, 0, NULL},
    };
    unsigned long long counter = 0;
    uint8_t sk[64], sha[32], man[TCPOTA_MAX_MANIFEST], head[ESP_IMAGE_PEEK];
    char path[4096], notes[1200], *line;
    size_t head_n = 0;
    uint32_t size;
    int n, replaced = 0, rc = parse_args("sign", opts, &image,
                               "usage: tcpota sign --key NAME.key --version V --model M\n"
                               "                   [--security-counter N] [--out FILE.manifest] FILE\n"
                               "Writes FILE.manifest (or --out), replacing an existing manifest.\n"
                               "Exit status: 0 signed, 1 failed, 2 bad arguments, input files or --out.\n",
                               argc, argv);

    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    /* The counter first: with its value left out, the image was taken as
     * the value, and "not a number" says what happened. */
    if ((cnt && cli_number(cnt, "--security-counter", 0, 0xffffffffu, &counter) < 0) ||
        require("sign", opts, image, "the firmware image to sign") < 0 ||
        cli_check_label("sign", "--version", version) < 0 ||
        cli_check_label("sign", "--model", model) < 0) {
        return 2;
    }
    cli_warn_unordered("sign", version); /* devices compare versions to decide an update */
    if (strchr(version, ' ')) { /* the manifest's rule allows it; the API's does not */
        fprintf(stderr, "tcpota sign: warning: version '%s' has a space: a fleet server's image add "
                "refuses it (rollouts name images by version); sign with a version without "
                "spaces to serve it in fleet mode\n", version);
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "tcpota sign: libsodium failed to initialise\n");
        return 1;
    }
    if (load_hex(key, KEY_PRIVATE, sk, 64, 0) < 0 || check_image(image) < 0) {
        sodium_memzero(sk, sizeof(sk));
        return 2;
    }
    if (hash_file(image, sha, &size, head, &head_n) < 0) {
        sodium_memzero(sk, sizeof(sk));
        return 1;
    }
    if (esp_image_notes(head, head_n, version, model, notes, sizeof(notes)) > 0) {
        for (line = strtok(notes, "\n"); line; line = strtok(NULL, "\n")) {
            fprintf(stderr, "tcpota sign: warning: %s\n", line);
        }
    }
    n = make_manifest(sk, sha, size, version, model, (uint32_t)counter, man, sizeof(man));
    sodium_memzero(sk, sizeof(sk));
    if (n < 0) {
        return 1;
    }
    if (!out) {
        snprintf(path, sizeof(path), "%s.manifest", image);
        out = path;
    }
    if ((rc = write_manifest(out, out != path, image, key, man, n, &replaced)) != 0) {
        return rc;
    }
    /* Signing again replaces a manifest (a new version, a new key), said
     * so: a trial's good one went without a word. */
    fprintf(stderr, "tcpota sign: wrote %s%s: %s %s for %s, %u bytes, counter %llu\n", out,
            replaced ? " (replacing the manifest that was there)" : "", image, version, model,
            size, counter);
    return 0;
}

/* 0 when image's size and SHA-256 are those m gives, else -1 after saying
 * which differs. */
static int describes(const char *image, const struct tcpota_manifest *m)
{
    uint8_t sha[32];
    uint32_t size;
    char hex[65];

    if (hash_file(image, sha, &size, NULL, NULL) < 0) {
        return -1;
    }
    if (size != m->image_size) {
        cli_err("image is %u bytes, the manifest says %u\n", size, m->image_size);
        return -1;
    }
    if (memcmp(sha, m->sha256, 32) != 0) {
        sodium_bin2hex(hex, sizeof(hex), sha, 32);
        cli_err("image SHA-256 %s differs from the manifest's (image altered)\n", hex);
        return -1;
    }
    return 0;
}

int cli_check_manifest(const char *image, const uint8_t *man, size_t man_len,
                       const uint8_t (*keys)[32], size_t nkeys, int quiet)
{
    struct tcpota_manifest m;
    char id[API_KEY_ID_HEX + 1];
    size_t i;
    int rc = tcpota_manifest_parse(man, man_len, &m);

    if (rc < 0) {
        cli_err("manifest is not a tcpota manifest, or is damaged; sign the image "
                        "again with `tcpota sign`\n");
        return -1;
    }
    api_key_id(m.pubkey, id);
    for (i = 0; i < nkeys; i++) {
        if (memcmp(keys[i], m.pubkey, 32) == 0) break;
    }
    if (nkeys && i == nkeys) {
        cli_err("manifest is signed by key %s, which is not a trusted key; give the "
                        ".pub of the key that signed it, or sign again with a trusted key\n", id);
        return -1;
    }
    if (crypto_sign_verify_detached(m.signature, m.signed_part, m.signed_len, m.pubkey) != 0) {
        cli_err("manifest signature does not verify (manifest altered or forged)\n");
        return -1;
    }
    if (image && describes(image, &m) < 0) {
        return -1;
    }
    if (!quiet) {
        cli_err("OK: %s is version %.*s for model %.*s, counter %u, %u bytes, "
                        "signed by key %s%s\n",
                image, m.version.len, m.version.ptr, m.model.len, m.model.ptr, m.security_counter,
                m.image_size, id, nkeys ? " (trusted)" : " (key inside the manifest)");
    }
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    const char *pubkeys[CLI_MAX_KEYS] = {NULL}, *manifest = NULL, *image = NULL;
    unsigned npub = 0;
    const struct opt opts[] = {
        {"--pubkey", "NAME.pub", "the public key of the signer, written by `tcpota keygen`",
         pubkeys, CLI_MAX_KEYS, &npub},
        {"--manifest", "FILE", NULL, &manifest, 0, NULL},
        {NULL, NULL, NULL, NULL, 0, NULL},
    };
    char path[4096];
    uint8_t pk[CLI_MAX_KEYS][32], *man;
    size_t len;
    int rc = parse_args("verify", opts, &image,
                        "usage: tcpota verify --pubkey NAME.pub [--pubkey ...] [--manifest M] FILE\n"
                        "Checks FILE against M (default FILE.manifest), signed by one of the keys\n"
                        "NAME.pub (up to " CLI_STR(CLI_MAX_KEYS) ", as tcpota serve's --pubkey and tcpota device's\n"
                        "--trust).\n"
                        "Exit status: 0 verified, 1 does not verify (an empty or damaged manifest too),\n"
                        "             2 bad arguments or input files (missing, unreadable, not a file,\n"
                        "             a manifest too large to be one).\n",
                        argc, argv);

    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    if (require("verify", opts, image, "the firmware image to check") < 0) {
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "tcpota verify: libsodium failed to initialise\n");
        return 1;
    }
    for (unsigned i = 0; i < npub; i++) {
        if (cli_load_pubkey(pubkeys[i], pk[i]) < 0) {
            return 2;
        }
    }
    if (check_image(image) < 0) {
        return 2;
    }
    if (!manifest) {
        snprintf(path, sizeof(path), "%s.manifest", image);
        manifest = path;
        if (access(path, F_OK) != 0 && errno == ENOENT) {
            fprintf(stderr, "tcpota verify: %s has no manifest (%s does not exist); sign it with "
                            "`tcpota sign` or give --manifest FILE\n", image, path);
            return 2;
        }
    }
    if (read_small(manifest, "manifest", TCPOTA_MAX_MANIFEST, &man, &len) < 0) {
        return 2;
    }
    if (len == 0) {
        fprintf(stderr, "tcpota verify: manifest %s is empty; sign the image again with `tcpota sign`\n",
                manifest);
        free(man);
        return 1;
    }
    rc = cli_check_manifest(image, man, len, (const uint8_t(*)[32])pk, npub, 0);
    free(man);
    return rc < 0 ? 1 : 0;
}
