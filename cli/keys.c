/* keys.c - Ed25519 keys, device secrets and signed manifests (see keys.h). */
#include "keys.h"
#include "cli.h"

#include "tcpota/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PUB_TAG "tcpota-ed25519-public v1 "
#define SEC_TAG "tcpota-ed25519-secret v1 "
#define DEV_TAG "tcpota-secret v1 "

int cli_read_file(const char *path, size_t max, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *b;
    size_t n;

    if (!f) {
        fprintf(stderr, "tcpota: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    b = malloc(max + 1);
    if (!b) {
        fclose(f);
        return -1;
    }
    n = fread(b, 1, max + 1, f);
    fclose(f);
    if (n > max) {
        fprintf(stderr, "tcpota: %s is larger than %zu bytes\n", path, max);
        free(b);
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Reads a one-line key file "<tag><hex>" into out (exactly want bytes, or
 * 1..want when `upto`). Returns the byte count or -1. */
static int load_hex(const char *path, const char *tag, uint8_t *out, size_t want, int upto)
{
    uint8_t *buf;
    size_t len, bin = 0, tlen = strlen(tag);
    int rc = -1;

    if (cli_read_file(path, 512, &buf, &len) < 0) {
        return -1;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
    buf[len] = 0;
    if (len < tlen || memcmp(buf, tag, tlen) != 0) {
        fprintf(stderr, "tcpota: %s is not a %.*s file\n", path, (int)(tlen - 4), tag);
    } else if (sodium_hex2bin(out, want, (const char *)buf + tlen, len - tlen, NULL, &bin, NULL) != 0 ||
               (upto ? bin == 0 : bin != want)) {
        fprintf(stderr, "tcpota: %s: the key is not %s%zu bytes of hex\n", path,
                upto ? "1 to " : "", want);
    } else {
        rc = (int)bin;
    }
    sodium_memzero(buf, len);
    free(buf);
    return rc;
}

int cli_load_pubkey(const char *path, uint8_t pk[32])
{
    return load_hex(path, PUB_TAG, pk, 32, 0) < 0 ? -1 : 0;
}

int cli_load_secret(const char *path, uint8_t *out, size_t cap)
{
    return load_hex(path, DEV_TAG, out, cap, 1);
}

static void key_id(const uint8_t pk[32], char out[17])
{
    uint8_t h[32];
    crypto_hash_sha256(h, pk, 32);
    sodium_bin2hex(out, 17, h, 8);
}

/* Writes a new file that must not exist yet, with `mode`. */
static int write_new(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    size_t n = strlen(text);

    if (fd < 0) {
        fprintf(stderr, "tcpota: cannot create %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (not overwriting a key)" : "");
        return -1;
    }
    if (fchmod(fd, mode) < 0 || write(fd, text, n) != (ssize_t)n || fsync(fd) < 0) {
        fprintf(stderr, "tcpota: cannot write %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    return 0;
}

int cmd_keygen(int argc, char **argv)
{
    uint8_t pk[32], sk[64];
    char hex[129], line[256], path[4096], id[17];
    const char *out = NULL;
    int secret = 0, i, rc = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--device-secret") == 0) {
            secret = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: tcpota keygen --out NAME          writes NAME.key (0600) and NAME.pub\n"
                   "       tcpota keygen --device-secret --out FILE   a 32-byte device secret (0600)\n");
            return 0;
        } else {
            fprintf(stderr, "tcpota keygen: unexpected argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "tcpota keygen: --out NAME is required\n");
        return 2;
    }
    if (sodium_init() < 0) return 1;
    if (secret) {
        uint8_t s[32];
        randombytes_buf(s, sizeof(s));
        sodium_bin2hex(hex, sizeof(hex), s, sizeof(s));
        snprintf(line, sizeof(line), DEV_TAG "%s\n", hex);
        rc = write_new(out, line, 0600) < 0;
        sodium_memzero(s, sizeof(s));
        sodium_memzero(line, sizeof(line));
        if (!rc) fprintf(stderr, "tcpota keygen: wrote device secret %s (0600)\n", out);
        return rc;
    }
    crypto_sign_keypair(pk, sk);
    sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));
    snprintf(line, sizeof(line), SEC_TAG "%s\n", hex);
    snprintf(path, sizeof(path), "%s.key", out);
    if (write_new(path, line, 0600) == 0) {
        sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
        snprintf(line, sizeof(line), PUB_TAG "%s\n", hex);
        snprintf(path, sizeof(path), "%s.pub", out);
        if (write_new(path, line, 0644) == 0) {
            key_id(pk, id);
            fprintf(stderr, "tcpota keygen: wrote %s.key (private, 0600) and %s.pub, key id %s\n",
                    out, out, id);
            rc = 0;
        } else {
            snprintf(path, sizeof(path), "%s.key", out);
            unlink(path);
        }
    }
    sodium_memzero(sk, sizeof(sk));
    sodium_memzero(hex, sizeof(hex));
    sodium_memzero(line, sizeof(line));
    return rc;
}

/* SHA-256 and size of a file, streaming. */
static int hash_file(const char *path, uint8_t out[32], uint32_t *size)
{
    crypto_hash_sha256_state st;
    uint8_t buf[65536];
    uint64_t total = 0;
    size_t n;
    FILE *f = fopen(path, "rb");

    if (!f) {
        fprintf(stderr, "tcpota: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    crypto_hash_sha256_init(&st);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        crypto_hash_sha256_update(&st, buf, n);
        total += n;
    }
    if (ferror(f) || total == 0 || total > 0xffffffffu) {
        fprintf(stderr, "tcpota: %s: %s\n", path, ferror(f) ? "read error" : "must hold 1 byte to 4 GiB - 1");
        fclose(f);
        return -1;
    }
    fclose(f);
    crypto_hash_sha256_final(&st, out);
    *size = (uint32_t)total;
    return 0;
}

int cmd_sign(int argc, char **argv)
{
    const char *key = NULL, *version = NULL, *model = NULL, *out = NULL, *image = NULL;
    unsigned long long counter = 0;
    uint8_t sk[64], sha[32], man[TCPOTA_MAX_MANIFEST];
    struct tcpota_manifest m;
    char path[4096];
    uint32_t size;
    int i, n, fd;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            printf("usage: tcpota sign --key K.key --version V --model M [--security-counter N]\n"
                   "                   [--out FILE.manifest] FILE\n");
            return 0;
        }
        if (a[0] == '-' && !v) {
            fprintf(stderr, "tcpota sign: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--key") == 0) key = v;
        else if (strcmp(a, "--version") == 0) version = v;
        else if (strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--out") == 0) out = v;
        else if (strcmp(a, "--security-counter") == 0) {
            if (cli_number(v, a, 0, 0xffffffffu, &counter) < 0) return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "tcpota sign: unknown option %s\n", a);
            return 2;
        } else if (image) {
            fprintf(stderr, "tcpota sign: one image only\n");
            return 2;
        } else {
            image = a;
            continue;
        }
        i++;
    }
    if (!key || !version || !model || !image) {
        fprintf(stderr, "tcpota sign: --key, --version, --model and FILE are required\n");
        return 2;
    }
    if (sodium_init() < 0 || load_hex(key, SEC_TAG, sk, 64, 0) < 0 || hash_file(image, sha, &size) < 0) {
        sodium_memzero(sk, sizeof(sk));
        return 1;
    }
    memset(&m, 0, sizeof(m));
    m.image_size = size;
    m.sha256 = sha;
    m.version.ptr = (const uint8_t *)version;
    m.version.len = (uint16_t)strnlen(version, 64);
    m.model.ptr = (const uint8_t *)model;
    m.model.len = (uint16_t)strnlen(model, 64);
    m.security_counter = (uint32_t)counter;
    m.created = (uint64_t)time(NULL);
    m.pubkey = sk + 32; /* libsodium's secret key ends with the public key */
    n = tcpota_manifest_encode_body(&m, man, sizeof(man) - 64);
    if (n < 0) {
        fprintf(stderr, "tcpota sign: version and model must be 1..32 printable characters\n");
        sodium_memzero(sk, sizeof(sk));
        return 2;
    }
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, sk);
    sodium_memzero(sk, sizeof(sk));
    n += 64;
    if (!out) {
        snprintf(path, sizeof(path), "%s.manifest", image);
        out = path;
    }
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, man, (size_t)n) != n || fsync(fd) < 0) {
        fprintf(stderr, "tcpota sign: cannot write %s: %s\n", out, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    close(fd);
    fprintf(stderr, "tcpota sign: wrote %s: %s %s for %s, %u bytes, counter %llu\n", out, image,
            version, model, size, counter);
    return 0;
}

int cli_check_manifest(const char *image, const uint8_t *man, size_t man_len,
                       const uint8_t (*keys)[32], size_t nkeys, int quiet)
{
    struct tcpota_manifest m;
    uint8_t sha[32];
    uint32_t size;
    char id[17], hex[65];
    size_t i;
    int rc = tcpota_manifest_parse(man, man_len, &m);

    if (rc < 0) {
        fprintf(stderr, "tcpota: manifest is malformed (%s)\n", tcpota_strerror(rc));
        return -1;
    }
    key_id(m.pubkey, id);
    for (i = 0; i < nkeys; i++) {
        if (memcmp(keys[i], m.pubkey, 32) == 0) break;
    }
    if (nkeys && i == nkeys) {
        fprintf(stderr, "tcpota: manifest is signed by key %s, which is not a trusted key\n", id);
        return -1;
    }
    if (crypto_sign_verify_detached(m.signature, m.signed_part, m.signed_len, m.pubkey) != 0) {
        fprintf(stderr, "tcpota: manifest signature does not verify (manifest altered or forged)\n");
        return -1;
    }
    if (hash_file(image, sha, &size) < 0) {
        return -1;
    }
    if (size != m.image_size) {
        fprintf(stderr, "tcpota: image is %u bytes, the manifest says %u\n", size, m.image_size);
        return -1;
    }
    if (memcmp(sha, m.sha256, 32) != 0) {
        sodium_bin2hex(hex, sizeof(hex), sha, 32);
        fprintf(stderr, "tcpota: image SHA-256 %s differs from the manifest's (image altered)\n", hex);
        return -1;
    }
    if (!quiet) {
        fprintf(stderr, "tcpota: OK: %s is version %.*s for model %.*s, counter %u, %u bytes, "
                        "signed by key %s%s\n",
                image, m.version.len, m.version.ptr, m.model.len, m.model.ptr, m.security_counter,
                m.image_size, id, nkeys ? " (trusted)" : " (key inside the manifest)");
    }
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    const char *pubkey = NULL, *manifest = NULL, *image = NULL;
    char path[4096];
    uint8_t pk[32], *man;
    size_t len;
    int i, rc;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            printf("usage: tcpota verify --pubkey K.pub [--manifest M] FILE\n");
            return 0;
        }
        if (strcmp(a, "--pubkey") == 0 && v) { pubkey = v; i++; }
        else if (strcmp(a, "--manifest") == 0 && v) { manifest = v; i++; }
        else if (a[0] == '-') { fprintf(stderr, "tcpota verify: bad option %s\n", a); return 2; }
        else if (image) { fprintf(stderr, "tcpota verify: one image only\n"); return 2; }
        else image = a;
    }
    if (!pubkey || !image) {
        fprintf(stderr, "tcpota verify: --pubkey and FILE are required\n");
        return 2;
    }
    if (!manifest) {
        snprintf(path, sizeof(path), "%s.manifest", image);
        manifest = path;
    }
    if (sodium_init() < 0 || cli_load_pubkey(pubkey, pk) < 0 ||
        cli_read_file(manifest, TCPOTA_MAX_MANIFEST, &man, &len) < 0) {
        return 1;
    }
    rc = cli_check_manifest(image, man, len, (const uint8_t(*)[32])pk, 1, 0);
    free(man);
    return rc < 0 ? 1 : 0;
}
