/* cmd_image.c - `tcpota image add|list|rm`: the fleet server's images,
 * through the control API (docs/api.md, api_client.h). */
#include "api_client.h"
#include "cli.h"
#include "keys.h"
#include "table.h"
#include "server.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMAGE_MAX TCPOTA_IMAGE_UPLOAD_MAX /* the largest any server's --max-image takes */
#define MANIFEST_MAX ((size_t)64 * 1024)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota image add FILE [--manifest M] [--version V --model M] [options]\n"
            "       tcpota image list [options]\n"
            "       tcpota image rm ID|VERSION [options]\n"
            "\n"
            "The images of a fleet server (tcpota serve --data DIR), through its control API.\n"
            "\n"
            "  add FILE             uploads FILE with its signed manifest FILE.manifest when it\n"
            "                       exists (tcpota sign writes it); a server with --pubkey keys\n"
            "                       takes version and model from the manifest\n"
            "    --manifest M       the manifest is M, not FILE.manifest\n"
            "    --version V        for an unsigned image (a server without keys): its version\n"
            "    --model M          ... and the hardware model it is for\n"
            "  list                 every image: id, version, model, size, rollouts using it\n"
            "  rm ID|VERSION        removes an image no rollout uses (ID: 8+ hex digits will do;\n"
            "                       a VERSION when one image has it: see tcpota image list)\n"
            "\n");
    api_usage_common(f, 1);
}

/* One image as a table row: ID VERSION MODEL SIZE SIGNED ADDED ROLLOUTS. */
static void image_row(struct table *t, const json_t *im)
{
    char id[16], when[32], rl[128] = "";
    size_t i, n = 0;
    json_t *r;

    json_array_foreach(json_object_get(im, "rollouts"), i, r) {
        if (n < sizeof(rl) - 24) {
            n += (size_t)snprintf(rl + n, sizeof(rl) - n, "%s%lld", i ? "," : "",
                                  (long long)json_integer_value(r));
        }
    }
    table_row(t);
    table_cell(t, "%s", table_short_id(api_str(im, "id"), id, sizeof(id)));
    table_cell(t, "%s", api_str(im, "version"));
    table_cell(t, "%s", api_str(im, "model"));
    table_cell(t, "%lld", api_int(im, "size"));
    table_cell(t, "%s", api_bool(im, "signed") ? "yes" : "no");
    table_cell(t, "%s", table_time(api_int(im, "added_at"), when, sizeof(when)));
    table_cell(t, "%s", n ? rl : "-");
}

static struct table *image_table(void)
{
    return table_new("ID", "VERSION", "MODEL", ">SIZE", "SIGNED", "ADDED (UTC)", "ROLLOUTS", NULL);
}

/* Reads the whole image (regular file, 1..IMAGE_MAX bytes). */
static int read_image(const char *path, uint8_t **buf, size_t *len)
{
    struct stat st;
    size_t got = 0;
    int fd = cli_open_regular(path, "firmware"); /* "tcpota image: firmware: ...", not "image: image:" */

    if (fd < 0) return 2;
    if (fstat(fd, &st) < 0) {
        fprintf(stderr, "tcpota image: %s: %s\n", path, strerror(errno));
        close(fd);
        return 2;
    }
    if (st.st_size == 0 || (unsigned long long)st.st_size > IMAGE_MAX) {
        fprintf(stderr, "tcpota image: %s %s; give a firmware image\n", path,
                st.st_size == 0 ? "is empty" : "is larger than 1 GiB");
        close(fd);
        return 2;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len);
    if (!*buf) {
        fprintf(stderr, "tcpota image: out of memory for %s (%zu bytes)\n", path, *len);
        close(fd);
        return 1;
    }
    while (got < *len) {
        ssize_t n = read(fd, *buf + got, *len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "tcpota image: cannot read %s: %s\n", path,
                    n < 0 ? strerror(errno) : "it shrank while being read");
            free(*buf);
            *buf = NULL;
            close(fd);
            return 1;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

#define MANIFEST_PATH_MAX 4200

/* Reads the manifest (--manifest, else FILE.manifest when it exists) and
 * base64-encodes it into *b64 (NULL: none); its path into path (size
 * MANIFEST_PATH_MAX; "" for none), for the server's errors about it. */
static int read_manifest(const char *image, const char *given, char **b64, char *path)
{
    uint8_t *m = NULL;
    size_t mlen = 0, cap;

    *b64 = NULL;
    if (!given) {
        snprintf(path, MANIFEST_PATH_MAX, "%s.manifest", image);
        if (access(path, F_OK) != 0) {
            struct stat st;
            if (errno != ENOENT) {
                fprintf(stderr, "tcpota image: cannot look at %s: %s; fix it, or give --manifest M\n",
                        path, strerror(errno));
                return 2;
            }
            if (lstat(path, &st) == 0) { /* there, as a link to nothing */
                fprintf(stderr, "tcpota image: %s is a symbolic link to a file that does not "
                                "exist; fix or remove it (without it the image goes unsigned)\n",
                        path);
                return 2;
            }
            path[0] = '\0';
            return 0; /* unsigned */
        }
    } else {
        snprintf(path, MANIFEST_PATH_MAX, "%s", given);
    }
    /* Opened once first so that a FIFO or a directory is named as the
     * --manifest (or FILE.manifest) it was given as. */
    {
        int fd = cli_open_regular(path, given ? "--manifest" : "manifest");
        if (fd < 0) return 2;
        close(fd);
    }
    if (cli_read_file(path, given ? "--manifest" : "manifest", MANIFEST_MAX, &m, &mlen) < 0) {
        return 2;
    }
    if (mlen == 0) {
        fprintf(stderr, "tcpota image: manifest %s is empty; sign the image again (tcpota sign)\n",
                path);
        free(m);
        return 2;
    }
    if (sodium_init() < 0) {
        free(m);
        fprintf(stderr, "tcpota image: libsodium failed to start\n");
        return 1;
    }
    cap = sodium_base64_encoded_len(mlen, sodium_base64_VARIANT_ORIGINAL);
    *b64 = malloc(cap);
    if (!*b64) {
        free(m);
        return 1;
    }
    sodium_bin2base64(*b64, cap, m, mlen, sodium_base64_VARIANT_ORIGINAL);
    free(m);
    return 0;
}

/* After an add: the rollouts in `used` (the image's "rollouts": those not
 * cancelled, newest first) that still apply to it, each named with how to
 * follow it. One a newer rollout for its model and group superseded no
 * longer does (its devices moved to the newer one): naming it sent the
 * user to a rollout that offers the image to nobody. Returns how many were
 * named; 0 (none applies, or none could be read) leaves the caller to say
 * how to roll the image out. */
static size_t name_applying_rollouts(struct api *a, const json_t *used)
{
    size_t i, n = 0;
    json_t *r;

    json_array_foreach(used, i, r) {
        json_int_t ro = json_integer_value(r);
        json_t *d = NULL;
        char path[64];
        const char *group;

        snprintf(path, sizeof(path), "/v1/rollouts/%lld", (long long)ro);
        if (api_request(a, API_GET, path, NULL, 0, NULL, NULL, NULL, &d, NULL) != 0) continue;
        if (!api_bool(d, "superseded") && strcmp(api_str(d, "state"), "cancelled") != 0) {
            group = table_c(api_str(d, "group"));
            char same[API_HINT_OPTS];
            printf("rollout %lld%s%s%s uses it: follow it with tcpota rollout show %lld%s\n",
                   (long long)ro, *group ? " (group " : "", group, *group ? ")" : "",
                   (long long)ro, api_hint_opts(a, same, sizeof(same)));
            n++;
        }
        json_decref(d);
    }
    return n;
}

static int image_add(struct api *a, int argc, char **argv)
{
    const char *manifest = NULL, *version = NULL, *model = NULL, *pos[1];
    const struct api_opt opts[] = {
        {"--manifest", "M", &manifest},
        {"--version", "V", &version},
        {"--model", "M", &model},
        {NULL, NULL, NULL},
    };
    char path[1024], *b64 = NULL, *ev = NULL, *em = NULL, id[16], mpath[MANIFEST_PATH_MAX] = "";
    char word[4 * TCPOTA_MAX_NAME + 16]; /* --model and the model, quoted for a shell */
    uint8_t *img = NULL;
    size_t len = 0;
    json_t *ans = NULL;
    int np, rc, status = 0;

    rc = api_parse(a, opts, argc, argv, pos, 1, &np);
    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0) return api_usage(a, "add needs the image FILE; e.g. tcpota image add fw.bin");
    if ((rc = api_setup(a, 1)) != 0) return rc;
    /* The image first: what is wrong with FILE itself (missing, a FIFO)
     * is the first thing to say. */
    if ((rc = read_image(pos[0], &img, &len)) != 0) return rc;
    if ((rc = read_manifest(pos[0], manifest, &b64, mpath)) != 0) {
        free(img);
        return rc;
    }
    /* Unsigned without both: every server refuses it (one with keys wants
     * a manifest, one without wants both), in API terms; say it in ours. */
    if (!b64 && !version && !model) {
        free(img);
        return api_usage(a, "%s has no manifest (%s.manifest): sign it (tcpota sign --key K.key "
                         "--version V --model M %s), or, for a server without --pubkey keys, "
                         "give --version V --model M", pos[0], pos[0], pos[0]);
    }
    if (!b64 && (!version || !model)) {
        free(img);
        return api_usage(a, "%s has no manifest (%s.manifest), so it needs --version and --model "
                         "both: %s is missing", pos[0], pos[0], version ? "--model M" : "--version V");
    }
    {
        const char *too_long = version && strlen(version) > TCPOTA_MAX_NAME ? version
                             : model && strlen(model) > TCPOTA_MAX_NAME     ? model
                                                                            : NULL;
        if (too_long) {
            rc = api_usage(a, "%s is too long (%zu characters): at most %u",
                           too_long == version ? "--version" : "--model", strlen(too_long),
                           TCPOTA_MAX_NAME);
            goto out;
        }
    }
    ev = version ? api_encode(version) : NULL;
    em = model ? api_encode(model) : NULL;
    if ((version && !ev) || (model && !em)) {
        fprintf(stderr, "tcpota image: out of memory\n");
        rc = 1;
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/images%s%s%s%s%s%s", ev || em ? "?" : "",
             ev ? "version=" : "", ev ? ev : "", ev && em ? "&" : "", em ? "model=" : "",
             em ? em : "");
    {
        /* The server's errors about the manifest or the bytes name the
         * file they came from ("fw.bin.manifest: the manifest is signed by
         * key ..."): FILE.manifest is read without being named; about
         * the version or model, the option when one was given (else they
         * came from the manifest). */
        const char *const field_opts[][2] = {
            {mpath[0] ? "manifest" : "", mpath},
            {"body", pos[0]},
            {version ? "version" : "", "--version"},
            {model ? "model" : "", "--model"},
            {NULL, NULL},
        };
        a->field_opts = field_opts;
        rc = api_request(a, API_POST, path, img, len, "application/octet-stream",
                         b64 ? "Tcpota-Manifest" : NULL, b64, &ans, &status);
        a->field_opts = NULL;
    }
    if (rc == 0 && status == 201) {
        cli_warn_unordered("image", api_str(ans, "version"));
        /* The server's: a security counter below another's, an ELF, an
         * ESP-IDF app of another chip or version (server/esp_image.h). */
        const char *w = api_str(ans, "warning");
        char line[512]; /* whole: table_c() keeps 255 bytes */
        for (size_t n; *w; w += n + (w[n] != 0)) {
            n = strcspn(w, "\n");
            snprintf(line, sizeof(line), "%.*s", (int)n, w);
            fprintf(stderr, "tcpota image: warning: %s\n", table_clean(line, line, sizeof(line)));
        }
    }
    if (rc == 0 && !a->json) {
        printf(status == 201 ? "added image %s: version %s, model %s, %lld bytes, %s\n"
               : api_bool(ans, "repaired") && api_bool(ans, "was_missing")
                   ? "image %s is already stored; its file was not on this server (a --db node"
                     " fetches an image at its first use; else it was removed) and is written"
                     " again: version %s, model %s, %lld bytes, %s\n"
               : api_bool(ans, "repaired")
                   ? "image %s stored again (its file on the server was damaged): "
                     "version %s, model %s, %lld bytes, %s\n"
                   : "image %s is already stored: version %s, model %s, %lld bytes, %s\n",
               table_c(api_str(ans, "id")), table_c(api_str(ans, "version")),
               table_c(api_str(ans, "model")), api_int(ans, "size"),
               api_bool(ans, "signed") ? "signed" : "unsigned");
        const char *m = table_c(api_str(ans, "model"));
        /* A rollout that applies is named, not a command that would make
         * another one and supersede it. */
        if (name_applying_rollouts(a, json_object_get(ans, "rollouts")) > 0) goto out;
        char same[API_HINT_OPTS];
        /* A version with no place in the order: only a rollout that
         * allows downgrades offers it (the server refuses one that does not). */
        printf("roll it out: tcpota rollout create --image %s %s%s%s\n",
               table_short_id(api_str(ans, "id"), id, sizeof(id)),
               cli_shell_opt("--model", m, word, sizeof(word)),
               cli_version_unordered(api_str(ans, "version")) ? " --allow-downgrade" : "",
               api_hint_opts(a, same, sizeof(same)));
    }
out:
    json_decref(ans);
    free(img);
    free(b64);
    free(ev);
    free(em);
    return rc;
}

static int image_list(struct api *a, int argc, char **argv)
{
    const char *pos[1];
    json_t *ans = NULL, *im;
    struct table *t;
    size_t i;
    int np, rc = api_parse(a, NULL, argc, argv, pos, 0, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    if ((rc = api_request(a, API_GET, "/v1/images", NULL, 0, NULL, NULL, NULL, &ans, NULL)) != 0) {
        return rc;
    }
    if (!a->json) {
        t = image_table();
        json_array_foreach(json_object_get(ans, "images"), i, im) image_row(t, im);
        if (table_rows(t) == 0) {
            printf("no images; add one with tcpota image add FILE\n");
        } else {
            table_print(t, stdout);
        }
        table_free(t);
        json_array_foreach(json_object_get(ans, "images"), i, im) {
            char id[16];
            if (!api_bool(im, "file_missing")) continue;
            fprintf(stderr, "tcpota image: warning: image %s (%s) has no intact file on the server"
                    " (its images/): not offered until restored: copy it from the backup's"
                    " images/, or add the same file again (tcpota image add)\n",
                    table_short_id(api_str(im, "id"), id, sizeof(id)), table_c(api_str(im, "version")));
        }
    }
    json_decref(ans);
    return 0;
}

static int image_rm(struct api *a, int argc, char **argv)
{
    const char *pos[1];
    char path[600], *e;
    json_t *ans = NULL;
    int np, rc = api_parse(a, NULL, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (np == 0 || !*pos[0]) {
        return api_usage(a, "rm needs an image ID or version%s (see tcpota image list)",
                         np ? ", and the one given is empty" : "");
    }
    if ((rc = api_setup(a, 0)) != 0) return rc;
    e = api_encode(pos[0]);
    if (!e || strlen(e) > 500) {
        free(e);
        return api_usage(a, "'%s' is not an image ID or version (see tcpota image list)", pos[0]);
    }
    snprintf(path, sizeof(path), "/v1/images/%s", e);
    free(e);
    rc = api_request(a, API_DELETE, path, NULL, 0, NULL, NULL, NULL, &ans, NULL);
    if (rc == 0 && !a->json) printf("removed image %s\n", table_c(api_str(ans, "deleted")));
    json_decref(ans);
    return rc;
}

int cmd_image(int argc, char **argv)
{
    struct api a;

    memset(&a, 0, sizeof(a));
    a.cmd = "image";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "add") == 0) return image_add(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "ls") == 0) {
        return image_list(&a, argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "rm") == 0) return image_rm(&a, argc - 1, argv + 1);
    return api_unknown_sub(&a, argv[1], "add, list or rm");
}
