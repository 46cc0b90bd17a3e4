/* serve.c - `tcpota serve`: argument parsing for the server in server/. */
#include "cli.h"
#include "keys.h"
#include "server.h"

#include "tcpota/codec.h"
#include "tcpota/manifest.h"

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
            "  --version V           version offered; with a signed manifest, taken from it\n"
            "                        (a different --version is refused), else required\n"
            "  --allow-downgrade     offer FILE also to devices that run a newer version, or a\n"
            "                        version that is not a semantic version (1.2.3)\n"
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

/* Point 10 of the hardening review: the offer says what the signed manifest
 * says. Version and model come from it; a --version that contradicts it is
 * refused rather than offered (devices that verify would decline it, and
 * those that do not would install a wrong version string). */
static int take_manifest_names(struct tcpota_serve_opts *o, const uint8_t *man, size_t len,
                               const char *path, char *model, size_t mcap, char *version,
                               size_t vcap)
{
    struct tcpota_manifest m;
    int rc = tcpota_manifest_parse(man, len, &m);

    if (rc < 0) {
        fprintf(stderr, "tcpota serve: the manifest %s is malformed (%s); sign the image again "
                        "(tcpota sign)\n", path, tcpota_strerror(rc));
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
    if (o->version && strcmp(o->version, version) != 0) {
        fprintf(stderr, "tcpota serve: --version %s contradicts the signed manifest %s, which says "
                        "%s; drop --version (the manifest's version is offered)\n",
                o->version, path, version);
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
    int require_signed;   /* -1: when a manifest exists */
    uint8_t keys[MAX_KEYS][32];
    size_t nkeys;
};

/* What one load allocated, freed by serve_release(). */
struct loaded {
    char version[TCPOTA_MAX_NAME + 1], model[TCPOTA_MAX_NAME + 1];
    uint8_t *manifest;
    struct tcpota_serve_secret *secrets;
    size_t nsecrets;
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
    free(l);
    o->loaded = NULL;
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

    if (!l) {
        fprintf(stderr, "tcpota serve: out of memory\n");
        return 1;
    }
    n.loaded = l;
    n.version = src->version;
    n.model = NULL;
    n.manifest = NULL;
    n.manifest_len = 0;
    n.secrets = NULL;
    n.nsecrets = 0;
    if (!manifest) {
        snprintf(mpath, sizeof(mpath), "%s.manifest", o->image);
        if (access(mpath, F_OK) == 0) manifest = mpath;
    }
    if (require_signed < 0) {
        require_signed = manifest != NULL;
    }
    if (require_signed && !manifest) {
        fprintf(stderr, "tcpota serve: --require-signed, but %s has no manifest (tcpota sign)\n",
                o->image);
        goto fail;
    }
    if (manifest) {
        if (cli_read_file(manifest, TCPOTA_MAX_MANIFEST, &l->manifest, &man_len) < 0) goto fail;
        if (require_signed && cli_check_manifest(o->image, l->manifest, man_len,
                                                 (const uint8_t(*)[32])src->keys, src->nkeys, 0) < 0) {
            fprintf(stderr, "tcpota serve: refusing to start: the manifest %s does not verify\n",
                    manifest);
            goto fail;
        }
        n.manifest = l->manifest;
        n.manifest_len = (uint16_t)man_len;
        if (take_manifest_names(&n, l->manifest, man_len, manifest, l->model, sizeof(l->model),
                                l->version, sizeof(l->version)) < 0) {
            goto fail;
        }
    }
    if (!n.version) {
        fprintf(stderr, "tcpota serve: give --version V: %s has no signed manifest to take the "
                        "version from\n", o->image);
        rc = 2;
        goto fail;
    }
    if (src->auth_file && load_secrets(src->auth_file, &l->secrets, &l->nsecrets) < 0) {
        rc = 2;
        goto fail;
    }
    n.secrets = l->secrets;
    n.nsecrets = l->nsecrets;
    *o = n;
    return 0;
fail:
    serve_release(NULL, &n);
    return rc;
}

static int serve_reload(void *ctx, struct tcpota_serve_opts *fresh)
{
    return serve_load(ctx, fresh) == 0 ? 0 : -1;
}

int cmd_serve(int argc, char **argv)
{
    struct tcpota_serve_opts o;
    struct sources src;
    char host[256] = "0.0.0.0";
    unsigned long long v;
    int i, rc;

    memset(&o, 0, sizeof(o));
    memset(&src, 0, sizeof(src));
    src.require_signed = -1;
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
        if (strcmp(a, "--require-signed") == 0) { src.require_signed = 1; continue; }
        if (strcmp(a, "--no-require-signed") == 0) { src.require_signed = 0; continue; }
        if (strcmp(a, "--allow-legacy") == 0) { o.allow_legacy = 1; continue; }
        if (strcmp(a, "--allow-downgrade") == 0) { o.allow_downgrade = 1; continue; }
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
            if (src.nkeys == MAX_KEYS) {
                fprintf(stderr, "tcpota serve: at most %d --pubkey\n", MAX_KEYS);
                return 2;
            }
            if (sodium_init() < 0 || cli_load_pubkey(val, src.keys[src.nkeys]) < 0) return 2;
            src.nkeys++;
        } else if (strcmp(a, "--auth-file") == 0) {
            src.auth_file = val;
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
    if (sodium_init() < 0) {
        return 1;
    }
    if (o.require_auth && !src.auth_file) {
        fprintf(stderr, "tcpota serve: --require-auth needs --auth-file\n");
        return 2;
    }
    if ((o.tls_cert == NULL) != (o.tls_key == NULL)) {
        fprintf(stderr, "tcpota serve: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if ((rc = serve_load(&src, &o)) != 0) {
        return rc;
    }
    o.reload = serve_reload;
    o.release = serve_release;
    o.ctx = &src;
    rc = tcpota_serve(&o);
    serve_release(NULL, &o);
    sodium_memzero(&src, sizeof(src));
    return rc;
}
