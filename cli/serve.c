/* serve.c - `tcpota serve`: argument parsing for the server in server/. */
#include "cli.h"
#include "keys.h"
#include "server.h"

#include "tcpota/codec.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_KEYS 8
#define MAX_SECRETS 100000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota serve [--listen HOST:PORT] [--version V] [options] FILE\n"
            "\n"
            "Serves FILE as the current image to every device that connects: tcpota v1\n"
            "devices (resume, integrity check) and the sample's req0/req1 devices alike.\n"
            "\n"
            "  --listen HOST:PORT    address to listen on (default 0.0.0.0:8070; port 0 = any)\n"
            "  --version V           version string offered (default: the file's name)\n"
            "  --max-conns N         connections at once; more are refused (default 16384)\n"
            "  --idle-timeout S      close a peer silent or not reading for S s (default 60)\n"
            "  --chunk BYTES         image bytes per DATA frame, 512..16380 (default 4096)\n"
            "  --no-progress         no line per device at every 10%% it has made durable\n"
            "  --quiet               errors and the summary only\n"
            "  --log-format F        text (default): \"<UTC time> tcpota serve: [device peer] ...\";\n"
            "                        json: one JSON object per line (time, level, device, peer, msg)\n"
            "signed images:\n"
            "  --manifest M          signed manifest of FILE (default: FILE.manifest if present)\n"
            "  --pubkey K.pub        key the manifest must be signed with (repeatable)\n"
            "  --require-signed      refuse to start unless the manifest verifies (the default\n"
            "                        when a manifest is present); --no-require-signed skips it\n"
            "  --allow-legacy        serve req0/req1 devices a signed image they cannot check\n"
            "device authentication:\n"
            "  --auth-file F         lines \"<device id> <hex secret>\"\n"
            "  --require-auth        every v1 device must prove it knows its secret\n"
            "TLS:\n"
            "  --tls-cert C --tls-key K   serve protocol v1 inside TLS (PEM files)\n");
}

/* Reads "<device id> <hex secret>" lines; '#' starts a comment. */
static int load_secrets(const char *path, struct tcpota_serve_secret **out, size_t *n)
{
    FILE *f = fopen(path, "r");
    char line[512];
    size_t cap = 0, lineno = 0;
    struct tcpota_serve_secret *v = NULL;

    *n = 0;
    if (!f) {
        fprintf(stderr, "tcpota serve: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char id[128], hex[200];
        size_t bin = 0;
        lineno++;
        if (line[0] == '#' || strspn(line, " \t\r\n") == strlen(line)) continue;
        if (sscanf(line, "%127s %199s", id, hex) != 2 || strlen(id) > 64) {
            fprintf(stderr, "tcpota serve: %s:%zu: expected \"<device id> <hex secret>\"\n", path, lineno);
            goto bad;
        }
        if (*n == cap) {
            struct tcpota_serve_secret *nv;
            cap = cap ? cap * 2 : 16;
            if (cap > MAX_SECRETS || !(nv = realloc(v, cap * sizeof(*v)))) goto bad;
            v = nv;
        }
        memset(&v[*n], 0, sizeof(v[*n]));
        memcpy(v[*n].id, id, strlen(id) + 1); /* <= 64 + NUL, checked above */
        if (sodium_hex2bin(v[*n].secret, sizeof(v[*n].secret), hex, strlen(hex), NULL, &bin, NULL) != 0 ||
            bin == 0) {
            /* Never echo the secret itself. */
            fprintf(stderr, "tcpota serve: %s:%zu: the secret of %s is not 1..64 bytes of hex\n",
                    path, lineno, id);
            goto bad;
        }
        v[*n].len = (uint8_t)bin;
        (*n)++;
        sodium_memzero(hex, sizeof(hex));
    }
    sodium_memzero(line, sizeof(line));
    fclose(f);
    *out = v;
    return 0;
bad:
    sodium_memzero(line, sizeof(line));
    if (v) sodium_memzero(v, cap * sizeof(*v));
    free(v);
    fclose(f);
    return -1;
}

int cmd_serve(int argc, char **argv)
{
    struct tcpota_serve_opts o;
    char host[256] = "0.0.0.0", mpath[4096];
    const char *manifest = NULL, *auth_file = NULL;
    uint8_t keys[MAX_KEYS][32], *man = NULL;
    struct tcpota_serve_secret *secrets = NULL;
    size_t nkeys = 0, man_len = 0, nsecrets = 0;
    int require_signed = -1, rc;
    unsigned long long v;
    int i;

    memset(&o, 0, sizeof(o));
    o.host = host;
    o.port = 8070;
    o.max_conns = 16384;
    o.idle_timeout_s = 60;
    o.chunk = 4096;
    o.progress = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--progress") == 0) { o.progress = 1; continue; }
        if (strcmp(a, "--require-signed") == 0) { require_signed = 1; continue; }
        if (strcmp(a, "--no-require-signed") == 0) { require_signed = 0; continue; }
        if (strcmp(a, "--allow-legacy") == 0) { o.allow_legacy = 1; continue; }
        if (strcmp(a, "--require-auth") == 0) { o.require_auth = 1; continue; }
        if (strcmp(a, "--no-progress") == 0) { o.progress = 0; continue; }
        if (strcmp(a, "--quiet") == 0) { o.quiet = 1; continue; }
        if (a[0] == '-' && a[1] == '-' && !val) {
            fprintf(stderr, "tcpota serve: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--listen") == 0) {
            if (cli_hostport(val, "--listen", host, sizeof(host), &o.port) < 0) return 2;
        } else if (strcmp(a, "--version") == 0) {
            o.version = val;
        } else if (strcmp(a, "--log-format") == 0) {
            if (strcmp(val, "text") != 0 && strcmp(val, "json") != 0) {
                fprintf(stderr, "tcpota serve: --log-format must be text or json (got %s)\n", val);
                return 2;
            }
            o.log_json = strcmp(val, "json") == 0;
        } else if (strcmp(a, "--manifest") == 0) {
            manifest = val;
        } else if (strcmp(a, "--pubkey") == 0) {
            if (nkeys == MAX_KEYS) {
                fprintf(stderr, "tcpota serve: at most %d --pubkey\n", MAX_KEYS);
                return 2;
            }
            if (sodium_init() < 0 || cli_load_pubkey(val, keys[nkeys]) < 0) return 2;
            nkeys++;
        } else if (strcmp(a, "--auth-file") == 0) {
            auth_file = val;
        } else if (strcmp(a, "--tls-cert") == 0) {
            o.tls_cert = val;
        } else if (strcmp(a, "--tls-key") == 0) {
            o.tls_key = val;
        } else if (strcmp(a, "--max-conns") == 0) {
            if (cli_number(val, a, 1, 1000000, &v) < 0) return 2;
            o.max_conns = (unsigned)v;
        } else if (strcmp(a, "--idle-timeout") == 0) {
            if (cli_number(val, a, 1, 65535, &v) < 0) return 2;
            o.idle_timeout_s = (unsigned)v;
        } else if (strcmp(a, "--chunk") == 0) {
            if (cli_number(val, a, 512, 16380, &v) < 0) return 2;
            o.chunk = (unsigned)v;
        } else if (a[0] == '-') {
            fprintf(stderr, "tcpota serve: unknown option %s\n", a);
            usage(stderr);
            return 2;
        } else {
            if (o.image) {
                fprintf(stderr, "tcpota serve: one image only (got %s and %s)\n", o.image, a);
                return 2;
            }
            o.image = a;
            continue;
        }
        i++;
    }
    if (!o.image) {
        fprintf(stderr, "tcpota serve: no image FILE given\n");
        usage(stderr);
        return 2;
    }
    if (!o.version) {
        const char *slash = strrchr(o.image, '/');
        o.version = slash ? slash + 1 : o.image;
        if (strlen(o.version) > 32) {
            fprintf(stderr, "tcpota serve: file name too long for a version; give --version\n");
            return 2;
        }
    }
    if (sodium_init() < 0) {
        return 1;
    }
    if (!manifest) {
        snprintf(mpath, sizeof(mpath), "%s.manifest", o.image);
        if (access(mpath, F_OK) == 0) manifest = mpath;
    }
    if (require_signed < 0) {
        require_signed = manifest != NULL;
    }
    if (require_signed && !manifest) {
        fprintf(stderr, "tcpota serve: --require-signed, but %s has no manifest (tcpota sign)\n", o.image);
        return 1;
    }
    if (manifest) {
        if (cli_read_file(manifest, TCPOTA_MAX_MANIFEST, &man, &man_len) < 0) return 1;
        if (require_signed &&
            cli_check_manifest(o.image, man, man_len, (const uint8_t(*)[32])keys, nkeys, 0) < 0) {
            fprintf(stderr, "tcpota serve: refusing to start: the manifest %s does not verify\n",
                    manifest);
            free(man);
            return 1;
        }
        o.manifest = man;
        o.manifest_len = (uint16_t)man_len;
    }
    if (o.require_auth && !auth_file) {
        fprintf(stderr, "tcpota serve: --require-auth needs --auth-file\n");
        free(man);
        return 2;
    }
    if (auth_file && load_secrets(auth_file, &secrets, &nsecrets) < 0) {
        free(man);
        return 2;
    }
    if ((o.tls_cert == NULL) != (o.tls_key == NULL)) {
        fprintf(stderr, "tcpota serve: --tls-cert and --tls-key go together\n");
        free(man);
        free(secrets);
        return 2;
    }
    o.secrets = secrets;
    o.nsecrets = nsecrets;
    rc = tcpota_serve(&o);
    if (secrets) sodium_memzero(secrets, nsecrets * sizeof(*secrets));
    free(secrets);
    free(man);
    return rc;
}
