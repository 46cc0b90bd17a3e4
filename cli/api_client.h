/*
 * api_client.h - the CLI's client of the fleet server's control API
 * (docs/api.md): the options every fleet command shares (--api, the token,
 * --json, --timeout), one HTTP request with libevent's evhttp, the JSON
 * answer (jansson) and the messages for everything that can go wrong.
 *
 * The commands themselves: cmd_image.c (`tcpota image`), cmd_rollout.c
 * (`tcpota rollout`), cmd_fleet_device.c (`tcpota device list|show|set|secret|retry|rm`),
 * cmd_summary.c (`tcpota summary`).
 */
#ifndef TCPOTA_CLI_API_CLIENT_H
#define TCPOTA_CLI_API_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define API_DEFAULT_PORT 8071 /* tcpota serve --api's, and HOST alone's */
#define API_DEFAULT_URL "http://127.0.0.1:8071"
#define API_HTTPS_PORT 443 /* an https:// address without a port */
#define API_V1 "/v1" /* the path the API's endpoints start with */
#define API_TIMEOUT_S 30         /* default wait for an answer */
#define API_UPLOAD_TIMEOUT_S 300 /* default for `image add` (large bodies) */

/* One option of a fleet command: "--name VALUE" or "--name=VALUE"; a flag
 * (no value) when metavar is NULL, *val then becomes "1". A list ends with
 * a NULL name. */
struct api_opt {
    const char *name, *metavar;
    const char **val;
};

enum api_method { API_GET, API_POST, API_PATCH, API_DELETE };

struct api {
    const char *cmd; /* "image", "rollout", "device", "summary": starts every message */
    const char *help_cmd; /* for "try 'tcpota HELP_CMD --help'" (NULL: cmd) */
    /* the common options, as given */
    const char *opt_api, *opt_token_file, *opt_data, *opt_timeout, *opt_json, *opt_ca;
    int json;           /* --json: print the server's JSON as it came */
    unsigned timeout_s; /* 0 until api_setup */
    /* resolved by api_setup */
    char url[600];      /* e.g. http://127.0.0.1:8071, for messages */
    int tls;            /* an https:// address: TLS to a proxy in front of the API */
    const char *ca_file; /* https: --ca, else $TCPOTA_API_CA, else NULL (the system's CAs) */
    const char *ca_from; /* "--ca" or "TCPOTA_API_CA", for messages */
    int default_url;    /* url is API_DEFAULT_URL: neither --api nor TCPOTA_API */
    const char *url_from; /* "--api", "TCPOTA_API" or "the default API address" */
    char host[256];
    uint16_t port;
    char prefix[256];   /* path before /v1 ("" normally) */
    char token[512];
    char token_from[600]; /* where the token was taken from, for a 401 */
    /* The command's options for the API's fields, for its errors: pairs
     * {field, option}, ended by {NULL, NULL}; NULL: none. */
    const char *const (*field_opts)[2];
    int asking_limit; /* a 413's follow-up request runs (api_client.c) */
    /* A write that got no answer it can trust: what to do, when "check
     * with ... before running the command again" would not tell (a new
     * secret, shown only in the answer); NULL: that. */
    const char *unknown_note;
};

/* Parses argv[0..argc-1] (argv[0] is the subcommand, skipped) into the
 * command's options `opts`, the common ones, and at most maxpos positional
 * arguments (pos[], *npos). Returns 0, 2 after a usage message, or -1 when
 * --help was given (the caller prints its help; exit 0). */
int api_parse(struct api *a, const struct api_opt *opts, int argc, char **argv, const char **pos,
              int maxpos, int *npos);
/* Prints "tcpota CMD: <fmt...>" and "try 'tcpota CMD --help'" on stderr;
 * returns 2 (the usage exit code). */
int api_usage(const struct api *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for a first word that is no subcommand of a.cmd (subs:
 * "add, list or rm"): an option there is told to go after the subcommand. */
int api_unknown_sub(const struct api *a, const char *word, const char *subs);
/* Prints the options every fleet command takes (image, rollout, device
 * list|show|set|secret, summary) and the exit codes, the end of each one's --help.
 * upload: the command uploads (its own longer timeout is named). */
void api_usage_common(FILE *f, int upload);
/* Parses a whole non-negative number for option `name` (no range check:
 * the server checks ranges); on failure says so with `example` ("--halt-at
 * 20") and returns 2, else 0. */
int api_number(const struct api *a, const char *name, const char *s, const char *example,
               long long *out);
/* Room for api_hint_opts' text. */
#define API_HINT_OPTS 9000
/* The common options given on the command line that say which server and
 * how (--api, --ca, --token-file, --data; not the environment's, which the
 * next command has too), as " OPT VALUE..." to append to a command the
 * output suggests, so that pasted it reaches the same server; "" when
 * none, or when they would not fit (a command cut short is worse than one
 * without them). Into buf (cap API_HINT_OPTS); returns buf. */
const char *api_hint_opts(const struct api *a, char *buf, size_t cap);

/* Resolves the API address (--api, TCPOTA_API, the default) and the token
 * (--token-file, --data DIR's api.token, TCPOTA_TOKEN: a flag beats the
 * environment), and the timeout
 * (upload: the longer default). Returns 0, or 2 after saying what to give. */
int api_setup(struct api *a, int upload);

/* Sends one request; `path` ("/v1/...") is already percent-encoded where
 * needed. body/len: the request body (NULL: none) of type ctype; one extra
 * header hdr_name: hdr_val when hdr_name is not NULL. Returns 0 when the
 * server answered 2xx, with *out its JSON (NULL for an empty body; the
 * caller json_decref's it); 2 after printing the server's 400 (a bad value,
 * the usage exit code); or 1 after printing why not: cannot connect,
 * timeout, the server's other "error" (and "field"), a refused token. With
 * --json the answer's JSON (an error's too) is printed on stdout as it
 * came. *status (may be NULL) receives the HTTP status (0: none). */
int api_request(struct api *a, enum api_method m, const char *path, const void *body, size_t len,
                const char *ctype, const char *hdr_name, const char *hdr_val, json_t **out,
                int *status);
/* The same with a JSON object body, which it takes (json_decref's). */
int api_request_json(struct api *a, enum api_method m, const char *path, json_t *body,
                     json_t **out, int *status);
/* Percent-encodes s for a path segment or a query value (malloc'd; NULL
 * when out of memory). */
char *api_encode(const char *s);

/* A rollout's state as the fleet commands print it: "halted", or
 * "active, superseded" (cmd_rollout.c; also tcpota summary's). Returns buf. */
const char *rollout_state_text(const json_t *r, char *buf, size_t cap);

/* Reading an answer: the string member key of o ("" when absent or not a
 * string), the integer member (0 when absent), the boolean (0). */
const char *api_str(const json_t *o, const char *key);
long long api_int(const json_t *o, const char *key);
int api_bool(const json_t *o, const char *key);

#endif
