/*
 * dashboard.h - the web dashboard's files, built into the binary
 * (the .html, .js and .css files of server/dashboard/, turned into byte arrays at build
 * time by server/dashboard/embed.cmake), and how the API's listener serves
 * them. The page logs in with the API token, which it keeps in the
 * browser's sessionStorage and sends as the bearer header; the files
 * themselves need no token (they hold no data). docs/dashboard.md.
 */
#ifndef TCPOTA_SERVER_DASHBOARD_H
#define TCPOTA_SERVER_DASHBOARD_H

#include <stddef.h>

struct evhttp_request;

struct dash_asset {
    const char *path;          /* "/" (index.html) or "/dash/<name>" */
    const char *type;          /* Content-Type */
    const unsigned char *data;
    size_t len;
};

/* The generated table (dashboard_assets.c). */
extern const struct dash_asset dash_assets[];
extern const unsigned dash_nassets;

/* The asset served at path, or NULL. */
const struct dash_asset *dash_find(const char *path);

/* Answers req when path is a dashboard file ("/" or "/dash/..."): the file
 * for GET and HEAD, 405 for another method, 404 for an unknown /dash/ name,
 * each with headers that forbid framing, sniffing and scripts from
 * elsewhere. Returns 1 when it answered, 0 when path is not the
 * dashboard's (the API handles it). */
int dash_serve(struct evhttp_request *req, const char *path);

#endif
