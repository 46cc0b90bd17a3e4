/* cmd_rollout.c - `tcpota rollout create|list|show|pause|resume|cancel|open-wave`:
 * the fleet server's staged rollouts, through the control API
 * (docs/api.md, api_client.h). */
#include "api_client.h"
#include "cli.h"
#include "rollout.h" /* ROLLOUT_STATUS_MAX */
#include "table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota rollout create --image ID|VERSION --model M [--group G]\n"
            "                             [--waves PCT,...] [--halt-at PCT] [--halt-min N]\n"
            "                             [--min-finished N] [--success-pct P] [--soak SECONDS]\n"
            "                             [--allow-downgrade] [options]\n"
            "       tcpota rollout list [options]\n"
            "       tcpota rollout show ID [options]\n"
            "       tcpota rollout pause|resume|cancel|open-wave ID [options]\n"
            "\n"
            "Staged rollouts of a fleet server (tcpota serve --data DIR): an image offered to\n"
            "a growing share of the devices of a model, wave by wave, halted when too many fail.\n"
            "\n"
            "create (what is not given, the server chooses; see docs/api.md):\n"
            "  --image ID|VERSION   the image: its id (8+ hex digits will do) or a version\n"
            "                       (as given, or of the same order: v2.1 for 2.1.0)\n"
            "  --model M            the hardware model (the image's)\n"
            "  --group G            only the devices of this group (default: all of the model)\n"
            "  --waves PCT,...      cumulative percentages of the devices, at most 16, e.g.\n"
            "                       5,25,100 (default 100: every device at once)\n"
            "  --halt-at PCT        halt when more than PCT %% of the finished devices failed\n"
            "                       (default 20) ...\n"
            "  --halt-min N         ... and at least N failed (default 3)\n"
            "  --min-finished N     a wave opens the next once N of it finished (default 10) ...\n"
            "  --success-pct P      ... P %% of those updated (default 90) ...\n"
            "  --soak SECONDS       ... and it has been open this long (default 300)\n"
            "  --allow-downgrade    offer also to devices that run a newer version, or a\n"
            "                       version the image's cannot be ordered against (one\n"
            "                       that is not a semantic version: such an image needs it)\n"
            "list                   every rollout, newest first\n"
            "show ID                one rollout, wave by wave\n"
            "pause ID               no new device starts; started ones finish\n"
            "resume ID              back to active after a pause or a halt\n"
            "cancel ID              for good\n"
            "open-wave ID           open the next wave now, whatever its rule says (one held\n"
            "                       below --success-pct by devices that will not change)\n"
            "\n");
    api_usage_common(f, 0);
}

/* "5,25,100" into a JSON array of numbers; ranges are the server's to check. */
static int parse_waves(const struct api *a, const char *s, json_t **out)
{
    json_t *arr = json_array();
    const char *p = s;

    while (arr) {
        char num[24];
        size_t n = strcspn(p, ",");
        char *end;
        unsigned long long v;

        if (n && strspn(p, "0123456789") >= n && strtoull(p, NULL, 10) > 100) {
            /* Digits alone, but too many: said as the API says 101 (a
             * trial: 2^66 was "not a list of percentages"). */
            fprintf(stderr, "tcpota %s: --waves: %.*s%s is not a whole percentage from 1 to 100\n",
                    a->cmd, (int)(n > 24 ? 24 : n), p, n > 24 ? "..." : "");
            json_decref(arr);
            return 2;
        }
        if (n == 0 || n >= sizeof(num) || p[0] < '0' || p[0] > '9') break;
        memcpy(num, p, n);
        num[n] = 0;
        v = strtoull(num, &end, 10);
        if (*end || v > 1000000) break;
        json_array_append_new(arr, json_integer((json_int_t)v));
        if (!p[n] && json_array_size(arr) > ROLLOUT_MAX_WAVES) {
            /* (The API's "waves must be an array of 1 to 16" named JSON.) */
            fprintf(stderr, "tcpota %s: --waves: %zu waves; a rollout has at most %u\n", a->cmd,
                    json_array_size(arr), (unsigned)ROLLOUT_MAX_WAVES);
            json_decref(arr);
            return 2;
        }
        if (!p[n]) {
            *out = arr;
            return 0;
        }
        p += n + 1;
    }
    json_decref(arr);
    fprintf(stderr, "tcpota %s: --waves: '%s' is not a list of percentages; e.g. --waves 5,25,100\n",
            a->cmd, s);
    return 2;
}

/* The rollout id argument: a number. */
static int rollout_id(struct api *a, const char *sub, int np, const char **pos, long long *id)
{
    char ex[64];

    if (np == 0) return api_usage(a, "%s needs a rollout ID (see tcpota rollout list)", sub);
    snprintf(ex, sizeof(ex), "tcpota rollout %s 1", sub);
    if (api_number(a, "ID", pos[0], ex, id) != 0) return 2;
    if (*id == 0) { /* a bad value as any other (exit 2), not a rollout the server lacks */
        fprintf(stderr, "tcpota rollout: ID: rollout ids start at 1; e.g. %s\n", ex);
        return 2;
    }
    return 0;
}

/* The waves a rollout has open, e.g. "2/3 (50%)". */
static void waves_open(const json_t *r, char *buf, size_t cap)
{
    const json_t *waves = json_object_get(r, "waves"), *w;
    size_t i, open = 0;
    long long pct = 0;

    json_array_foreach(waves, i, w) {
        if (api_bool(w, "open")) {
            open++;
            pct = api_int(w, "percent");
        }
    }
    snprintf(buf, cap, "%zu/%zu (%lld%%)", open, json_array_size(waves), pct);
}

const char *rollout_state_text(const json_t *r, char *buf, size_t cap)
{
    /* A cancelled rollout applies to nothing: "superseded" (the store marks
     * it so when a newer one is made) would say that one replaced it. */
    snprintf(buf, cap, "%s%s", table_c(api_str(r, "state")),
             api_bool(r, "superseded") && strcmp(api_str(r, "state"), "cancelled") != 0
                 ? ", superseded" : "");
    return buf;
}

/* One rollout in full: what, rules, and a table of its waves. */
static void print_rollout(const json_t *r)
{
    const json_t *rules = json_object_get(r, "rules"), *tot = json_object_get(r, "totals"), *w;
    char when[32], when2[32], st[64];
    struct table *t;
    size_t i;

    printf("rollout %lld: %s\n", api_int(r, "id"), rollout_state_text(r, st, sizeof(st)));
    if (*api_str(r, "version")) {
        printf("  image      %s (version %s)\n", table_c(api_str(r, "image")),
               table_c(api_str(r, "version")));
    } else { /* "version": null: the image was removed after the cancel */
        printf("  image      %s (removed)\n", table_c(api_str(r, "image")));
    }
    if (*api_str(r, "status")) { /* longer than table_c's 255 bytes when halted */
        char status[ROLLOUT_STATUS_MAX];
        printf("  status     %s\n", table_clean(api_str(r, "status"), status, sizeof(status)));
    }
    printf("  model      %s\n", table_c(api_str(r, "model")));
    printf("  group      %s\n",
           *api_str(r, "group") ? table_c(api_str(r, "group")) : "(all devices of the model)");
    printf("  downgrade  %s\n", api_bool(r, "allow_downgrade") ? "allowed" : "not allowed");
    printf("  halt       when more than %lld%% of the finished failed (at least %lld)\n",
           api_int(rules, "halt_at"), api_int(rules, "halt_min"));
    if (json_array_size(json_object_get(r, "waves")) > 1) { /* one wave: no next to open */
        printf("  next wave  after %lld finished, %lld%% of them updated, %lld s open\n",
               api_int(rules, "min_finished"), api_int(rules, "success_pct"),
               api_int(rules, "soak_s"));
    }
    printf("  created    %s UTC, changed %s UTC\n",
           table_time(api_int(r, "created_at"), when, sizeof(when)),
           table_time(api_int(r, "changed_at"), when2, sizeof(when2)));
    printf("\n");
    t = table_new("WAVE", ">PERCENT", "OPEN", "OPENED (UTC)", ">TARGETED", ">OFFERED",
                  ">DOWNLOADING", ">UPDATED", ">FAILED", NULL);
    json_array_foreach(json_object_get(r, "waves"), i, w) {
        table_row(t);
        table_cell(t, "%zu", i + 1);
        table_cell(t, "%lld%%", api_int(w, "percent"));
        table_cell(t, "%s", api_bool(w, "open") ? "yes" : "no");
        table_cell(t, "%s", table_time(api_int(w, "opened_at"), when, sizeof(when)));
        table_cell(t, "%lld", api_int(w, "targeted"));
        table_cell(t, "%lld", api_int(w, "offered"));
        table_cell(t, "%lld", api_int(w, "downloading"));
        table_cell(t, "%lld", api_int(w, "updated"));
        table_cell(t, "%lld", api_int(w, "failed"));
    }
    table_row(t);
    table_cell(t, "total");
    table_cell(t, "%s", "");
    table_cell(t, "%s", "");
    table_cell(t, "%s", "");
    table_cell(t, "%lld", api_int(tot, "targeted"));
    table_cell(t, "%lld", api_int(tot, "offered"));
    table_cell(t, "%lld", api_int(tot, "downloading"));
    table_cell(t, "%lld", api_int(tot, "updated"));
    table_cell(t, "%lld", api_int(tot, "failed"));
    table_print(t, stdout);
    table_free(t);
}

static int rollout_create(struct api *a, int argc, char **argv)
{
    const char *image = NULL, *model = NULL, *group = NULL, *waves = NULL, *halt_at = NULL,
               *halt_min = NULL, *min_finished = NULL, *success_pct = NULL, *soak = NULL,
               *downgrade = NULL, *pos[1];
    const struct api_opt opts[] = {
        {"--image", "ID|VERSION", &image},
        {"--model", "M", &model},
        {"--group", "G", &group},
        {"--waves", "5,25,100", &waves},
        {"--halt-at", "PCT", &halt_at},
        {"--halt-min", "N", &halt_min},
        {"--min-finished", "N", &min_finished},
        {"--success-pct", "P", &success_pct},
        {"--soak", "SECONDS", &soak},
        {"--allow-downgrade", NULL, &downgrade},
        {NULL, NULL, NULL},
    };
    const struct {
        const char **val, *opt, *field, *example;
    } nums[] = {
        {&halt_at, "--halt-at", "halt_at", "--halt-at 20"},
        {&halt_min, "--halt-min", "halt_min", "--halt-min 3"},
        {&min_finished, "--min-finished", "min_finished", "--min-finished 10"},
        {&success_pct, "--success-pct", "success_pct", "--success-pct 90"},
        {&soak, "--soak", "soak_s", "--soak 300"},
    };
    static const char *const field_opts[][2] = {
        {"image", "--image"}, {"model", "--model"}, {"group", "--group"}, {"waves", "--waves"},
        {"halt_at", "--halt-at"}, {"halt_min", "--halt-min"}, {"min_finished", "--min-finished"},
        {"success_pct", "--success-pct"}, {"soak_s", "--soak"}, {NULL, NULL},
    };
    json_t *body, *arr = NULL, *ans = NULL;
    int np, rc = api_parse(a, opts, argc, argv, pos, 0, &np);

    a->field_opts = field_opts;
    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if (!image) return api_usage(a, "create needs --image ID|VERSION (see tcpota image list)");
    if (!model) return api_usage(a, "create needs --model M (the hardware model of the image)");
    if (group && !*group) {
        return api_usage(a, "--group is empty: name a group, or leave --group out for all devices "
                            "of the model");
    }
    if (waves && parse_waves(a, waves, &arr) != 0) return 2;
    body = json_object();
    json_object_set_new(body, "image", json_string(image));
    json_object_set_new(body, "model", json_string(model));
    if (group) json_object_set_new(body, "group", json_string(group));
    if (arr) json_object_set_new(body, "waves", arr);
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        long long v;
        if (!*nums[i].val) continue;
        if (api_number(a, nums[i].opt, *nums[i].val, nums[i].example, &v) != 0) {
            json_decref(body);
            return 2;
        }
        json_object_set_new(body, nums[i].field, json_integer((json_int_t)v));
    }
    if (downgrade) json_object_set_new(body, "allow_downgrade", json_true());
    if ((rc = api_setup(a, 0)) != 0) {
        json_decref(body);
        return rc;
    }
    rc = api_request_json(a, API_POST, "/v1/rollouts", body, &ans, NULL);
    if (rc == 0 && !a->json) {
        print_rollout(ans);
        if (api_int(ans, "supersedes") > 0) {
            printf("\nit supersedes rollout %lld (model %s, %s%s): that one no longer applies\n",
                   api_int(ans, "supersedes"), table_c(api_str(ans, "model")),
                   *api_str(ans, "group") ? "group " : "all its devices",
                   table_c(api_str(ans, "group")));
            if (*api_str(ans, "warning")) { /* the server's: an image older than that one's */
                char w[512]; /* whole: table_c() keeps 255 bytes */
                printf("\nwarning: %s\n", table_clean(api_str(ans, "warning"), w, sizeof(w)));
            }
        }
        {
            /* A last wave below 100 % leaves the rest out for good: said
             * now (a trial's devices waited for a wave that never came). */
            const json_t *ws = json_object_get(ans, "waves");
            long long last = api_int(json_array_get(ws, json_array_size(ws) - 1), "percent");
            if (json_array_size(ws) && last < 100) {
                printf("\nits last wave is %lld%%: the other devices of model %s%s%s are never "
                       "offered this image (end --waves with 100 to reach them all)\n", last,
                       table_c(api_str(ans, "model")), *api_str(ans, "group") ? ", group " : "",
                       table_c(api_str(ans, "group")));
            }
            if (api_int(json_object_get(ans, "totals"), "targeted") == 0 && last == 100) {
                /* A misspelled --group or --model made an active rollout that
                 * reaches nobody, said nowhere (a new user's trial). (Below a
                 * last wave of 100 %, few devices may all lie past it.) */
                const char *g = api_str(ans, "group");
                printf("\nit targets no device yet: none of model %s%s%s has checked in%s; are "
                       "they spelled as the devices give them? (tcpota device list --model %s%s%s "
                       "lists those that have); a device that checks in later joins the "
                       "rollout\n",
                       table_c(api_str(ans, "model")), *g ? " in group " : "", table_c(g),
                       *g ? "" : ", or each is in a group with a rollout of its own",
                       table_c(api_str(ans, "model")), *g ? " --group " : "", table_c(g));
            }
        }
        char same[API_HINT_OPTS];
        printf("\nfollow it: tcpota rollout show %lld%s\n", api_int(ans, "id"),
               api_hint_opts(a, same, sizeof(same)));
    }
    json_decref(ans);
    return rc;
}

static int rollout_list(struct api *a, int argc, char **argv)
{
    const char *pos[1];
    json_t *ans = NULL, *r;
    struct table *t;
    size_t i;
    int np, rc = api_parse(a, NULL, argc, argv, pos, 0, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    if ((rc = api_request(a, API_GET, "/v1/rollouts", NULL, 0, NULL, NULL, NULL, &ans, NULL))) {
        return rc;
    }
    if (!a->json) {
        t = table_new(">ID", "STATE", "IMAGE", "VERSION", "MODEL", "GROUP", "WAVES OPEN",
                      ">TARGETED", ">UPDATED", ">FAILED", "CREATED (UTC)", NULL);
        json_array_foreach(json_object_get(ans, "rollouts"), i, r) {
            char id[16], wv[48], when[32], st[64];
            const json_t *tot = json_object_get(r, "totals");
            waves_open(r, wv, sizeof(wv));
            table_row(t);
            table_cell(t, "%lld", api_int(r, "id"));
            table_cell(t, "%s", rollout_state_text(r, st, sizeof(st)));
            table_cell(t, "%s", table_short_id(api_str(r, "image"), id, sizeof(id)));
            table_cell(t, "%s", *api_str(r, "version") ? api_str(r, "version") : "(removed)");
            table_cell(t, "%s", api_str(r, "model"));
            table_cell(t, "%s", *api_str(r, "group") ? api_str(r, "group") : "-");
            table_cell(t, "%s", wv);
            table_cell(t, "%lld", api_int(tot, "targeted"));
            table_cell(t, "%lld", api_int(tot, "updated"));
            table_cell(t, "%lld", api_int(tot, "failed"));
            table_cell(t, "%s", table_time(api_int(r, "created_at"), when, sizeof(when)));
        }
        if (table_rows(t) == 0) {
            printf("no rollouts; start one with tcpota rollout create --image ID --model M\n");
        } else {
            table_print(t, stdout);
        }
        table_free(t);
    }
    json_decref(ans);
    return 0;
}

/* show, pause, resume, cancel: one rollout by id. */
static int rollout_one(struct api *a, const char *sub, int argc, char **argv)
{
    const char *pos[1];
    char path[128], st[64];
    json_t *ans = NULL;
    long long id;
    int np, rc = api_parse(a, NULL, argc, argv, pos, 1, &np);

    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if ((rc = rollout_id(a, sub, np, pos, &id)) != 0) return rc;
    if ((rc = api_setup(a, 0)) != 0) return rc;
    if (strcmp(sub, "show") == 0) {
        snprintf(path, sizeof(path), "/v1/rollouts/%lld", id);
        rc = api_request(a, API_GET, path, NULL, 0, NULL, NULL, NULL, &ans, NULL);
    } else {
        snprintf(path, sizeof(path), "/v1/rollouts/%lld/%s", id, sub);
        rc = api_request(a, API_POST, path, NULL, 0, NULL, NULL, NULL, &ans, NULL);
    }
    if (rc == 0 && !a->json) {
        if (strcmp(sub, "show") == 0) {
            print_rollout(ans);
        } else {
            if (strcmp(sub, "open-wave") == 0) {
                char waves[32];
                waves_open(ans, waves, sizeof(waves));
                printf("rollout %lld: waves open %s\n", id, waves);
            } else {
                printf("rollout %lld is now %s\n", id, rollout_state_text(ans, st, sizeof(st)));
            }
        }
    }
    json_decref(ans);
    return rc;
}

int cmd_rollout(int argc, char **argv)
{
    static const char *const one[] = {"show", "pause", "resume", "cancel", "open-wave"};
    struct api a;

    memset(&a, 0, sizeof(a));
    a.cmd = "rollout";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "create") == 0) return rollout_create(&a, argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "ls") == 0) {
        return rollout_list(&a, argc - 1, argv + 1);
    }
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        if (strcmp(argv[1], one[i]) == 0) return rollout_one(&a, one[i], argc - 1, argv + 1);
    }
    return api_unknown_sub(&a, argv[1], "create, list, show, pause, resume, cancel or open-wave");
}
