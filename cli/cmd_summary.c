/* cmd_summary.c - `tcpota summary`: what the dashboard's overview shows, on a
 * terminal: the fleet's devices by model and state and by running version,
 * the last hour's failures, each rollout's failed devices and the devices
 * this server refused for authentication (GET /v1/summary, docs/api.md). */
#include "api_client.h"
#include "cli.h"
#include "rollout.h" /* ROLLOUT_STATUS_MAX */
#include "table.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tcpota summary [options]\n"
            "\n"
            "The fleet at a glance, from a fleet server (tcpota serve --data DIR) through its\n"
            "control API: devices by model and state, by model and running version, the\n"
            "rollouts not cancelled (halted ones say why), the failures of the last hour, the\n"
            "failed devices of each rollout, and the devices the server refused for\n"
            "authentication since it started. The server counts the registry at most once\n"
            "per 2 s: its counts may be up to 2 s old. --json prints GET /v1/summary's answer\n"
            "alone (the rollouts: tcpota rollout list --json).\n"
            "\n");
    api_usage_common(f, 0);
}

/* Prints t under its title, or the line for an empty list. */
static void section(const char *title, struct table *t, const char *none)
{
    printf("%s\n", title);
    if (table_rows(t) == 0) {
        printf("%s\n", none);
    } else {
        table_print(t, stdout);
    }
    table_free(t);
}

/* A "states" or "versions" list: rows of model, field, count. */
static void by_model(const json_t *ans, const char *key, const char *field, const char *header,
                     const char *title, const char *none)
{
    struct table *t = table_new("MODEL", header, ">DEVICES", NULL);
    const json_t *r;
    size_t i;

    json_array_foreach(json_object_get(ans, key), i, r) {
        table_row(t);
        table_cell(t, "%s", api_str(r, "model"));
        table_cell(t, "%s", *api_str(r, field) ? api_str(r, field) : "-");
        table_cell(t, "%lld", api_int(r, "count"));
    }
    section(title, t, none);
}

/* 1 for a rollout the summary shows: one not cancelled. */
static int shown(const json_t *r)
{
    return strcmp(api_str(r, "state"), "cancelled") != 0;
}

/* The superseded rollouts not cancelled, in one line: each had the same
 * long status line (a trial's summary printed it 13 times). */
static void superseded(const json_t *list)
{
    const json_t *r;
    size_t i, n = 0, k = 0;

    json_array_foreach(json_object_get(list, "rollouts"), i, r) {
        n += shown(r) && json_is_true(json_object_get(r, "superseded"));
    }
    json_array_foreach(json_object_get(list, "rollouts"), i, r) {
        if (!shown(r) || !json_is_true(json_object_get(r, "superseded"))) continue;
        printf("%s%lld", k++ ? ", " : n == 1 ? "rollout " : "rollouts ", api_int(r, "id"));
    }
    if (n) {
        printf(": superseded by a newer rollout for %s model and group: %s no longer "
               "appl%s, %s counts are what %s devices did under %s, and %s image stays in use "
               "until %s cancelled (tcpota rollout cancel ID)\n", n == 1 ? "its" : "their",
               n == 1 ? "it" : "they", n == 1 ? "ies" : "y", n == 1 ? "its" : "their",
               n == 1 ? "its" : "their", n == 1 ? "it" : "them", n == 1 ? "its" : "each one's",
               n == 1 ? "it is" : "that one is");
    }
}

/* The rollouts not cancelled, with what each waits for or why it halted
 * (its status line, as tcpota rollout show gives it); superseded ones in
 * one line. */
static void rollouts(const json_t *list)
{
    struct table *t = table_new(">ID", "STATE", "VERSION", "MODEL", "GROUP", ">UPDATED", ">FAILED",
                                ">TARGETED", NULL);
    const json_t *r;
    size_t i;

    json_array_foreach(json_object_get(list, "rollouts"), i, r) {
        char st[64];

        if (!shown(r)) continue;
        table_row(t);
        table_cell(t, "%lld", api_int(r, "id"));
        table_cell(t, "%s", rollout_state_text(r, st, sizeof(st)));
        table_cell(t, "%s", *api_str(r, "version") ? api_str(r, "version") : "(removed)");
        table_cell(t, "%s", api_str(r, "model"));
        table_cell(t, "%s", *api_str(r, "group") ? api_str(r, "group") : "-");
        table_cell(t, "%lld", api_int(json_object_get(r, "totals"), "updated"));
        table_cell(t, "%lld", api_int(json_object_get(r, "totals"), "failed"));
        table_cell(t, "%lld", api_int(json_object_get(r, "totals"), "targeted"));
    }
    section("rollouts not cancelled (tcpota rollout show ID):", t, "none");
    json_array_foreach(json_object_get(list, "rollouts"), i, r) {
        if (shown(r) && *api_str(r, "status") && !json_is_true(json_object_get(r, "superseded"))) {
            char status[ROLLOUT_STATUS_MAX];
            printf("rollout %lld: %s\n", api_int(r, "id"),
                   table_clean(api_str(r, "status"), status, sizeof(status)));
        }
    }
    superseded(list);
}

static void failures(const json_t *ans)
{
    /* History lines, not devices: a device that failed twice counts twice
     * (a trial read 22 'DEVICES' beside 12 devices rolled back). */
    struct table *t = table_new("STATE", "REASON", ">TIMES", NULL);
    const json_t *r;
    size_t i;

    json_array_foreach(json_object_get(ans, "failures"), i, r) {
        table_row(t);
        table_cell(t, "%s", api_str(r, "state"));
        table_cell(t, "%s", *api_str(r, "reason") ? api_str(r, "reason") : "-");
        table_cell(t, "%lld", api_int(r, "count"));
    }
    section("failures in the last hour (each one: a device may count more than once):", t, "none");
}

static void rollout_failures(const json_t *ans)
{
    struct table *t = table_new(">ROLLOUT", ">WAVE", "STATE", "REASON", ">DEVICES", NULL);
    const json_t *r;
    size_t i;

    json_array_foreach(json_object_get(ans, "rollout_failures"), i, r) {
        table_row(t);
        table_cell(t, "%lld", api_int(r, "rollout"));
        table_cell(t, "%lld", api_int(r, "wave") + 1); /* 1-based, as rollout show prints */
        table_cell(t, "%s", api_str(r, "state"));
        table_cell(t, "%s", *api_str(r, "reason") ? api_str(r, "reason") : "-");
        table_cell(t, "%lld", api_int(r, "count"));
    }
    section("failed devices of rollouts not cancelled (tcpota rollout show ID):", t, "none");
}

static void auth_refused(const json_t *ans)
{
    static const char *const reasons[] = {"no-proof", "wrong-secret", "unknown-id", "not-checked"};
    const json_t *a = json_object_get(ans, "auth_refused"), *counts = json_object_get(a, "counts"), *d;
    struct table *t = table_new("ID", "REASON", "ADDRESS", ">REFUSED", "LAST (UTC)", NULL);
    char since[32], title[256];
    size_t i, len;

    len = (size_t)snprintf(title, sizeof(title), "authentication refused by this server since %s UTC: %lld",
                           table_time(api_int(a, "since"), since, sizeof(since)),
                           api_int(a, "total"));
    for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]) && len < sizeof(title); i++) {
        len += (size_t)snprintf(title + len, sizeof(title) - len, "%s%s %lld", i ? ", " : " (",
                                reasons[i], api_int(counts, reasons[i]));
    }
    if (len < sizeof(title)) snprintf(title + len, sizeof(title) - len, ")");
    json_array_foreach(json_object_get(a, "devices"), i, d) {
        char when[32];
        table_row(t);
        table_cell(t, "%s", api_str(d, "id"));
        table_cell(t, "%s", api_str(d, "reason"));
        table_cell(t, "%s", *api_str(d, "address") ? api_str(d, "address") : "-");
        table_cell(t, "%lld", api_int(d, "count"));
        table_cell(t, "%s", table_time(api_int(d, "last"), when, sizeof(when)));
    }
    if (api_int(a, "total") > 0 && table_rows(t) == 0) {
        section(title, t, "no id to list: the devices refused have authenticated since, or gave"
                          " no id (legacy req0/req1 devices under --require-auth; the server's log"
                          " has their addresses)");
    } else {
        section(title, t, "no device refused");
    }
    if (json_array_size(json_object_get(a, "devices")) > 0) {
        printf("\ngive a refused device its secret: tcpota device secret ID --out FILE, then\n"
               "tcpota device --secret FILE (or the ESP-IDF component's NVS key)\n");
    }
}

int cmd_summary(int argc, char **argv)
{
    const char *pos[1];
    json_t *ans = NULL, *list = NULL;
    struct api a;
    int np, rc;

    memset(&a, 0, sizeof(a));
    a.cmd = "summary";
    rc = api_parse(&a, NULL, argc, argv, pos, 0, &np);
    if (rc) return rc < 0 ? (usage(stdout), 0) : rc;
    if ((rc = api_setup(&a, 0)) != 0) return rc;
    if ((rc = api_request(&a, API_GET, API_V1 "/summary", NULL, 0, NULL, NULL, NULL, &ans, NULL))) {
        return rc;
    }
    if (!a.json && (rc = api_request(&a, API_GET, API_V1 "/rollouts", NULL, 0, NULL, NULL, NULL,
                                     &list, NULL))) {
        json_decref(ans);
        return rc;
    }
    if (!a.json) {
        by_model(ans, "states", "state", "STATE", "devices by model and state:",
                 "no devices yet (a device appears at its first check-in)");
        printf("\n");
        by_model(ans, "versions", "version", "VERSION", "devices by model and running version:",
                 "none");
        printf("\n");
        rollouts(list);
        printf("\n");
        failures(ans);
        printf("\n");
        rollout_failures(ans);
        printf("\n");
        auth_refused(ans);
    }
    json_decref(list);
    json_decref(ans);
    return 0;
}
