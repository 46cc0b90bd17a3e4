/* api_client.c - the control API client shared by the fleet commands (see
 * api_client.h and docs/api.md). */
#include "api_client.h"

#include "cli.h"
#include "text.h" /* text_bom */
#include "tls.h"

#include "tcpota/codec.h" /* tcpota_printable */
#include "tcpota/tcpota.h"

#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static const char flag_set[] = "1";
/* How early libevent's coarse clock may end a timeout, in ms. */
#define API_CLOCK_SLACK_MS 50
/* The largest answer and header block the CLI takes: the API's largest
 * answer is a page of 100,000 devices (device list --limit), up to about
 * 72 MB; beyond these it is no API answer (a trial's fake server streamed
 * one until the CLI was killed for memory, at 24 GB). */
#define API_ANSWER_MAX (256u << 20)
#define API_HEADERS_MAX (64u << 10)
/* The slowest transfer the whole answer's deadline allows for (bytes/s):
 * a second more per this much of the request's body and of the answer as
 * it comes, so that --timeout bounds a trickled answer but not a large
 * image or page over a slow link. */
#define API_MIN_RATE (16u << 10)
/* How the API's 404 for a path it does not have starts (server/api.c). */
#define API_NO_PATH "no such path "
/* The start of tcpota serve's 401 text (server/api.c), advice for an HTTP
 * client that the CLI's own line replaces. */
#define API_TOKEN_REFUSED "missing or wrong API token:"
/* Whose certificate --ca's CA signed, in its messages. */
#define API_TLS_PEER "the proxy's certificate (for a self-signed one, that certificate itself)"

void api_usage_common(FILE *f, int upload)
{
    fprintf(f,
            "options of every fleet command (image, rollout, summary, device list|show|set|\n"
            "secret|retry|rm):\n"
            "  --api URL            the server's API: http://HOST:PORT or HOST:PORT (HOST\n"
            "                       alone: port %u; http://HOST: 80), or\n"
            "                       https://HOST[:PORT][/PREFIX] of a TLS proxy in front of it\n"
            "                       (default port 443) (default: $TCPOTA_API, else\n"
            "                       %s)\n"
            "  --ca FILE            https: the certificate of the CA that signed the proxy's\n"
            "                       certificate (default: $TCPOTA_API_CA, else the system's)\n"
            "  --token-file FILE    the API token (one line); else\n"
            "  --data DIR           the server's data directory: its DIR/api.token; else\n"
            "                       $TCPOTA_TOKEN (a flag given wins over it)\n"
            "  --json               print the server's JSON answer as it came (errors too)\n",
            (unsigned)API_DEFAULT_PORT, API_DEFAULT_URL);
    if (upload) {
        fprintf(f, "  --timeout SECONDS    wait this long for the whole answer (default %d;\n"
                   "                       %d for add, and a second more per %u KiB of the file)\n",
                API_TIMEOUT_S, API_UPLOAD_TIMEOUT_S, API_MIN_RATE >> 10);
    } else {
        fprintf(f, "  --timeout SECONDS    wait this long for the whole answer (default %d)\n",
                API_TIMEOUT_S);
    }
    fprintf(f, "  --help               this text\n"
               "\n"
               "exit: 0 done, 1 the server refused or cannot be reached, 2 usage or a bad value\n"
               "      (also when the server answers 400)\n");
}

int api_usage(const struct api *a, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tcpota %s: ", a->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'tcpota %s --help'\n", a->help_cmd ? a->help_cmd : a->cmd);
    return 2;
}

int api_unknown_sub(const struct api *a, const char *word, const char *subs)
{
    if (word[0] == '-') {
        return api_usage(a, "'%s' is an option: give the subcommand (%s) first, then its options "
                            "(tcpota %s SUBCOMMAND ... %s)", word, subs, a->cmd, word);
    }
    return api_usage(a, "unknown subcommand '%s'; give %s", cli_cut(word), subs);
}

/* Matches arg ("--name" or "--name=v") against opts; NULL if none. */
static const struct api_opt *find_opt(const struct api_opt *opts, const char *arg)
{
    size_t nl = strcspn(arg, "=");

    for (; opts && opts->name; opts++) {
        if (strlen(opts->name) == nl && strncmp(arg, opts->name, nl) == 0) {
            return opts;
        }
    }
    return NULL;
}

/* An argument past the maxpos a command takes: unexpected, or one too
 * many of a list (device rm's IDs: a trial read "unexpected argument" for
 * the 101st). Returns 2. */
static int too_many(struct api *a, int maxpos, const char *arg)
{
    if (maxpos > 1) {
        return api_usage(a, "at most %d arguments: '%s' is one more; give the rest in another"
                         " command", maxpos, cli_cut(arg));
    }
    return api_usage(a, "unexpected argument '%s'", cli_cut(arg));
}

int api_parse(struct api *a, const struct api_opt *opts, int argc, char **argv, const char **pos,
              int maxpos, int *npos)
{
    const char *help = NULL;
    const struct api_opt common[] = {
        {"--api", "URL", &a->opt_api},
        {"--token-file", "FILE", &a->opt_token_file},
        {"--data", "DIR", &a->opt_data},
        {"--timeout", "SECONDS", &a->opt_timeout},
        {"--json", NULL, &a->opt_json},
        {"--ca", "FILE", &a->opt_ca},
        {"--help", NULL, &help},
        {"-h", NULL, &help},
        {NULL, NULL, NULL},
    };

    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *v;
        const struct api_opt *o;
        char why[CLI_OPT_WHY];

        if (strcmp(arg, "--") == 0) {
            /* the rest is positional: an id that starts with '-' */
            for (i++; i < argc; i++) {
                if (*npos == maxpos) return too_many(a, maxpos, argv[i]);
                pos[(*npos)++] = argv[i];
            }
            break;
        }
        /* "-1" is a (bad) number for the command to name, not an option */
        if (arg[0] != '-' || arg[1] == 0 || isdigit((unsigned char)arg[1])) {
            if (*npos == maxpos) return too_many(a, maxpos, arg);
            pos[(*npos)++] = arg;
            continue;
        }
        o = find_opt(opts, arg);
        if (!o) o = find_opt(common, arg);
        if (!o && maxpos > 0 && arg[1] != '-') {
            /* One dash: perhaps an ID that starts with '-'. */
            return api_usage(a, "unknown option '%s'; an argument that starts with '-' goes last,"
                                " after '--' (tcpota %s ... [options] -- %s)", cli_cut(arg),
                             a->cmd, cli_cut(arg));
        }
        if (!o) return api_usage(a, "unknown option '%s'", cli_cut(arg));
        if (o->val == &help) {
            return -1;
        }
        if (*o->val) return api_usage(a, "%s is given twice; give it once", o->name);
        eq = strchr(arg, '=');
        if (!o->metavar) {
            if (eq) return api_usage(a, "%s takes no value", o->name);
            *o->val = flag_set;
            continue;
        }
        if (!(v = cli_opt_value(argc, argv, &i, o->name, o->metavar, why, sizeof(why)))) {
            return api_usage(a, "%s", why);
        }
        *o->val = v;
    }
    a->json = a->opt_json != NULL;
    return 0;
}

int api_number(const struct api *a, const char *name, const char *s, const char *example,
               long long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = s && isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
    if (!s || !isdigit((unsigned char)s[0]) || *end) {
        fprintf(stderr, "tcpota %s: %s: '%s' is %s; e.g. %s\n", a->cmd, name, s ? s : "",
                cli_negative(s) ? "negative" : "not a whole number", example);
        return 2;
    }
    if (errno || v > (unsigned long long)INT64_MAX) {
        fprintf(stderr, "tcpota %s: %s: '%s' is too large; e.g. %s\n", a->cmd, name, s, example);
        return 2;
    }
    *out = (long long)v;
    return 0;
}

/* Sets a->host, port, prefix, tls and url from s ("http://H:P[/prefix]",
 * "https://H[:P][/prefix]" or "H:P"); `from` names where s came from.
 * Returns 0 or 2. */
static int parse_url(struct api *a, const char *s, const char *from)
{
    char full[700];
    struct evhttp_uri *u;
    const char *host, *path, *authority, *scheme;
    int port;
    size_t plen, alen;

    if (!*s) {
        fprintf(stderr, "tcpota %s: %s is empty; give the API's address, e.g. %s\n", a->cmd, from,
                API_DEFAULT_URL);
        return 2;
    }
    a->tls = strncasecmp(s, "https://", 8) == 0; /* a scheme's case does not matter */
    if (strstr(s, "://") && strncasecmp(s, "http://", 7) != 0 && !a->tls) {
        fprintf(stderr, "tcpota %s: %s: '%s' is not an http:// or https:// URL; e.g. %s\n", a->cmd,
                from, cli_cut(s), API_DEFAULT_URL);
        return 2;
    }
    /* "https:/host" (a slash lost), not "http:8071" (a host named http) */
    if (!strstr(s, "://") && (strncasecmp(s, "http:", 5) == 0 || strncasecmp(s, "https:", 6) == 0) &&
        s[strcspn(s, ":") + 1 + strspn(s + strcspn(s, ":") + 1, "0123456789")] != '\0') {
        fprintf(stderr, "tcpota %s: %s: '%s' is not a URL: its scheme is followed by '://', as in "
                        "%s\n", a->cmd, from, cli_cut(s), API_DEFAULT_URL);
        return 2;
    }
    scheme = a->tls ? "https://" : "http://";
    snprintf(full, sizeof(full), "%s%s", scheme, strstr(s, "://") ? strstr(s, "://") + 3 : s);
    u = evhttp_uri_parse_with_flags(full, 0);
    host = u ? evhttp_uri_get_host(u) : NULL;
    if (!u || !host || !*host || evhttp_uri_get_query(u) || evhttp_uri_get_fragment(u) ||
        evhttp_uri_get_userinfo(u) || strlen(host) >= sizeof(a->host)) {
        fprintf(stderr, "tcpota %s: %s: '%s' is not an API address; give http://HOST:PORT, "
                        "https://HOST[:PORT] or HOST:PORT, e.g. %s\n", a->cmd, from, cli_cut(s),
                API_DEFAULT_URL);
        if (u) evhttp_uri_free(u);
        return 2;
    }
    port = evhttp_uri_get_port(u);
    /* "HOST:" (an unset $PORT in a script) has no port to take: not the
     * default one, which would reach another server. */
    authority = full + strlen(scheme);
    alen = strcspn(authority, "/");
    if (alen > 0 && authority[alen - 1] == ':') {
        fprintf(stderr, "tcpota %s: %s: '%s': no port after ':'; give HOST:PORT, e.g. %s\n",
                a->cmd, from, cli_cut(s), API_DEFAULT_URL);
        evhttp_uri_free(u);
        return 2;
    }
    if (port == 0) {
        fprintf(stderr, "tcpota %s: %s: '%s': port 0 is not a server's port\n", a->cmd, from, cli_cut(s));
        evhttp_uri_free(u);
        return 2;
    }
    /* "[::1]" in the URL: the host without its brackets */
    if (host[0] == '[') {
        snprintf(a->host, sizeof(a->host), "%.*s", (int)strcspn(host + 1, "]"), host + 1);
    } else {
        snprintf(a->host, sizeof(a->host), "%s", host);
    }
    /* No port: an http:// URL means HTTP's own (a proxy in front), an
     * https:// one HTTPS's, a bare HOST the API's (before: 80, where no
     * tcpota listens). */
    a->port = (uint16_t)(port >= 0 ? port : a->tls ? API_HTTPS_PORT
                                          : strstr(s, "://") ? 80 : API_DEFAULT_PORT);
    path = evhttp_uri_get_path(u);
    plen = path ? strlen(path) : 0;
    while (plen && path[plen - 1] == '/') plen--;
    /* A path is a prefix before the API's own (a proxy's mount point):
     * ".../v1" would ask for .../v1/v1/images. */
    if (plen >= strlen(API_V1) && strncmp(path + plen - strlen(API_V1), API_V1, strlen(API_V1)) == 0) {
        /* s's path starts at the first '/' after its authority */
        const char *rest = strstr(s, "://") ? strstr(s, "://") + 3 : s;
        size_t keep = (size_t)(rest - s) + strcspn(rest, "/") + plen - strlen(API_V1);
        fprintf(stderr, "tcpota %s: %s: '%s' ends in %s, which the commands add themselves; give "
                        "the address without it: %.*s\n", a->cmd, from, cli_cut(s), API_V1, (int)keep, s);
        evhttp_uri_free(u);
        return 2;
    }
    if (plen >= sizeof(a->prefix)) plen = sizeof(a->prefix) - 1;
    snprintf(a->prefix, sizeof(a->prefix), "%.*s", (int)plen, plen ? path : "");
    snprintf(a->url, sizeof(a->url), "%s%s%s%s:%u%s", scheme, V6_OPEN(a->host), a->host,
             V6_CLOSE(a->host), (unsigned)a->port, a->prefix);
    evhttp_uri_free(u);
    return 0;
}

/* Checks a token's text: one line of printable ASCII, no blanks (it goes
 * into a header). Returns 0 or -1. */
static int token_ok(const char *t)
{
    if (!*t) return -1;
    for (; *t; t++) {
        if (*t <= 0x20 || *t >= 0x7f) return -1;
    }
    return 0;
}

/* Reads the token from a file (what: "--token-file" or "--data"). */
static int token_from_file(struct api *a, const char *path, const char *what)
{
    char buf[sizeof(a->token) + 2 + TEXT_UTF8_BOM_LEN];
    ssize_t n;
    size_t len = 0, bom;
    int fd = cli_open_regular(path, what);

    if (fd < 0) return 2;
    cli_warn_if_exposed(path, fd);
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "tcpota %s: %s: cannot read %s: %s\n", a->cmd, what, path,
                    strerror(errno));
            close(fd);
            return 2;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = 0;
    if ((bom = text_bom(buf, len)) != 0) {
        /* Skipped, as a config file's is (a trial's token file saved by an
         * editor was "not a token"). */
        len -= bom;
        memmove(buf, buf + bom, len + 1);
    }
    if (len && buf[len - 1] == '\n') buf[--len] = 0;
    if (len && buf[len - 1] == '\r') buf[--len] = 0;
    if (len == 0) {
        fprintf(stderr, "tcpota %s: %s: %s is empty; give the file that holds the server's "
                        "token (DIR/api.token of tcpota serve --data DIR)\n", a->cmd, what, path);
        return 2;
    }
    if (len >= sizeof(a->token) || token_ok(buf) < 0) {
        fprintf(stderr, "tcpota %s: %s: %s does not hold a token (one line, no blanks); give "
                        "the server's DIR/api.token\n", a->cmd, what, path);
        return 2;
    }
    memcpy(a->token, buf, len + 1);
    return 0;
}

const char *api_hint_opts(const struct api *a, char *buf, size_t cap)
{
    const char *const opt[][2] = {
        {"--api", a->opt_api}, {"--ca", a->opt_ca},
        {"--token-file", a->opt_token_file}, {"--data", a->opt_data},
    };
    char one[2100];
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        if (!opt[i][1]) continue;
        /* quoted, a value grows to 4 characters per one at most */
        if (strlen(opt[i][1]) * 4 + 32 >= sizeof(one)) goto none;
        cli_shell_opt(opt[i][0], opt[i][1], one, sizeof(one));
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, " %s", one);
        if (n >= cap) goto none;
    }
    return buf;
none:
    buf[0] = '\0';
    return buf;
}

int api_setup(struct api *a, int upload)
{
    const char *env_api = getenv("TCPOTA_API"), *env_tok = getenv("TCPOTA_TOKEN");
    int rc;

    a->timeout_s = upload ? API_UPLOAD_TIMEOUT_S : API_TIMEOUT_S;
    if (a->opt_timeout) {
        long long t;
        if (api_number(a, "--timeout", a->opt_timeout, "--timeout 60", &t) != 0) return 2;
        if (t < 1 || t > 86400) {
            fprintf(stderr, "tcpota %s: --timeout: '%s' is out of range: give 1..86400 seconds\n",
                    a->cmd, a->opt_timeout);
            return 2;
        }
        a->timeout_s = (unsigned)t;
    }
    a->url_from = a->opt_api ? "--api" : env_api && *env_api ? "TCPOTA_API" : "the default API address";
    if (a->opt_api) {
        rc = parse_url(a, a->opt_api, a->url_from);
    } else if (env_api && *env_api) {
        rc = parse_url(a, env_api, a->url_from);
    } else {
        rc = parse_url(a, API_DEFAULT_URL, a->url_from);
        a->default_url = 1;
    }
    if (rc) return rc;
    if (a->opt_ca && !a->tls) {
        fprintf(stderr, "tcpota %s: --ca is for an https:// API address, and the API's is %s; "
                        "give --api https://HOST[:PORT] (a TLS proxy in front of it), or leave "
                        "--ca out\n", a->cmd, a->url);
        return 2;
    }
    if (a->tls) {
        const char *env_ca = getenv("TCPOTA_API_CA");
        void *ctx;

        a->ca_file = a->opt_ca ? a->opt_ca : env_ca && *env_ca ? env_ca : NULL;
        a->ca_from = a->opt_ca ? "--ca" : "TCPOTA_API_CA";
        /* A CA file that cannot be used is a bad value, said before any
         * request (each request makes its own context). */
        if (!(ctx = cli_tls_client_ctx(a->cmd, a->ca_file, a->ca_from, API_TLS_PEER))) return 2;
        cli_tls_ctx_free(ctx);
    }

    if (a->opt_token_file) {
        snprintf(a->token_from, sizeof(a->token_from), "--token-file %s", a->opt_token_file);
        return token_from_file(a, a->opt_token_file, "--token-file");
    }
    /* What the command line says beats the environment: --data DIR names
     * the server meant here, TCPOTA_TOKEN may be an export left from
     * another one. */
    if (a->opt_data) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/api.token", a->opt_data);
        snprintf(a->token_from, sizeof(a->token_from), "%s/api.token (--data %s)", a->opt_data,
                 a->opt_data);
        return token_from_file(a, path, "--data");
    }
    if (env_tok && *env_tok) {
        snprintf(a->token_from, sizeof(a->token_from), "the environment variable TCPOTA_TOKEN");
        if (strlen(env_tok) >= sizeof(a->token) || token_ok(env_tok) < 0) {
            fprintf(stderr, "tcpota %s: TCPOTA_TOKEN does not hold a token (one line, no blanks); "
                            "set it to the line of the server's DIR/api.token\n", a->cmd);
            return 2;
        }
        snprintf(a->token, sizeof(a->token), "%s", env_tok);
        return 0;
    }
    if (env_tok) { /* set, but to nothing: typically $(cat FILE) of a FILE not there */
        fprintf(stderr, "tcpota %s: no API token: TCPOTA_TOKEN is set but empty (as $(cat FILE) "
                        "leaves it when FILE cannot be read); set it to the line of the server's "
                        "DIR/api.token, or give --token-file FILE or --data DIR\n", a->cmd);
        return 2;
    }
    fprintf(stderr, "tcpota %s: no API token: give --token-file FILE, set TCPOTA_TOKEN, or give "
                    "--data DIR (the server's data directory, which holds api.token)\n", a->cmd);
    return 2;
}

/* ---- one request ---- */

struct reply {
    struct event_base *base;
    int done, status, err, has_err;
    char reason[64];
    char ctype[128];
    struct evbuffer *body;
    /* https: the TLS layer, and what it said when the request failed */
    struct bufferevent *tls_bev;
    long tls_verify;         /* X509_V_OK, or why the certificate was refused */
    unsigned long tls_error; /* OpenSSL's error, 0: none */
    int tls_started;         /* the handshake began: TCP connected */
    int tls_done;            /* the handshake completed */
    uint64_t waited_ms;      /* from the request's start to its end */
    /* The whole answer's deadline: --timeout from the start, and a second
     * more per API_MIN_RATE bytes sent or received (deadline_arm). */
    struct event *deadline_ev;
    uint64_t started_ms;
    unsigned timeout_s, allowed_s;
    size_t moved;            /* the request's body and the answer so far */
    int deadline;            /* the deadline passed before the whole answer */
};

/* What the failure messages need of the TLS layer is recorded as it
 * happens: evhttp resets a failed connection (the SSL is cleared) before
 * any callback of the request runs. The SSL's app data is the reply. */
static void tls_info(const SSL *ssl, int where, int ret)
{
    struct reply *r = SSL_get_app_data(ssl);

    (void)ret;
    if (r && (where & SSL_CB_HANDSHAKE_START)) r->tls_started = 1;
    if (r && (where & SSL_CB_HANDSHAKE_DONE)) r->tls_done = 1;
}

static int tls_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct reply *r = ssl ? SSL_get_app_data(ssl) : NULL;

    if (!ok && r && r->tls_verify == X509_V_OK) r->tls_verify = X509_STORE_CTX_get_error(store);
    return ok;
}

/* Takes OpenSSL's errors of a failed request from libevent's TLS layer. */
static void tls_note(struct reply *r)
{
    unsigned long e;

    while (r->tls_bev && (e = bufferevent_get_openssl_error(r->tls_bev)) != 0) {
        /* libevent also lists SSL_get_error()'s code for a failed read or
         * write (no library in it): SSL_ERROR_SYSCALL when the peer closed.
         * That is told by no_answer; OpenSSL's own first error is the cause. */
        if (!r->tls_error && ERR_GET_LIB(e) != 0) r->tls_error = e;
    }
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct reply *r = arg;
    r->err = (int)e;
    r->has_err = 1;
    tls_note(r);
}

/* --timeout is for the whole answer: evhttp's own timeout is per read, and
 * a server that sent a byte every 2 s held the CLI for as long as it
 * went on (a trial: 78 s for 41 bytes). */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct reply *r = arg;

    (void)fd;
    (void)what;
    r->deadline = 1;
    event_base_loopbreak(r->base);
}

/* (Re)sets the deadline for what has moved so far. Returns 0 or -1. */
static int deadline_arm(struct reply *r)
{
    uint64_t at, now = cli_now_ms();
    struct timeval tv;

    r->allowed_s = r->timeout_s + (unsigned)(r->moved / API_MIN_RATE);
    at = r->started_ms + (uint64_t)r->allowed_s * 1000u;
    at = at > now ? at - now : 0;
    tv.tv_sec = (time_t)(at / 1000u);
    tv.tv_usec = (suseconds_t)(at % 1000u) * 1000;
    return evtimer_add(r->deadline_ev, &tv);
}

/* Part of the answer's body came: kept, and the deadline moves with it. */
static void on_chunk(struct evhttp_request *req, void *arg)
{
    struct reply *r = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    r->moved += evbuffer_get_length(in);
    evbuffer_add_buffer(r->body, in);
    (void)deadline_arm(r);
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct reply *r = arg;

    r->done = 1;
    if (req && evhttp_request_get_response_code(req) > 0) {
        const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        const char *line = evhttp_request_get_response_code_line(req);
        r->status = evhttp_request_get_response_code(req);
        snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
        snprintf(r->reason, sizeof(r->reason), "%s", line ? line : "");
        evbuffer_add_buffer(r->body, evhttp_request_get_input_buffer(req));
    }
    event_base_loopbreak(r->base);
}

/* Says that the API's host name does not resolve (getaddrinfo's gai). */
static void say_unresolved(const struct api *a, int gai)
{
    fprintf(stderr, "tcpota %s: cannot reach the API at %s (cannot resolve %s: %s); give "
                    "--api with the server's address\n", a->cmd, a->url, a->host,
            gai_strerror(gai));
}

/* 1 when the API's host name resolves, else says why and returns 0: before
 * a request, since evhttp tried a name that does not resolve until
 * --timeout and then said "is the server busy?", and for a change that it
 * may have been made (a new user's trial: 30 s, 300 s for an upload). */
static int host_resolves(const struct api *a)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int gai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    gai = getaddrinfo(a->host, port, &hints, &res);
    if (gai != 0) {
        say_unresolved(a, gai);
        return 0;
    }
    freeaddrinfo(res);
    return 1;
}

/* Connects once more, blocking, to tell why evhttp could not: returns 0
 * when a connection opens now, an errno, or -1 (host unknown; *gai set). */
static int probe_connect(const struct api *a, int *gai)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int err = ECONNREFUSED;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    *gai = getaddrinfo(a->host, port, &hints, &res);
    if (*gai != 0) return -1;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            err = 0;
        } else if (errno != EINPROGRESS) {
            err = errno;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t sl = sizeof(err);
            int n = poll(&p, 1, 5000);
            if (n == 0) {
                err = ETIMEDOUT;
            } else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0) {
                err = errno;
            }
        }
        close(fd);
        if (err == 0) break;
    }
    freeaddrinfo(res);
    return err;
}

/* The command that shows whether a change of command cmd was made. */
static const char *check_cmd(const char *cmd)
{
    if (strcmp(cmd, "image") == 0) return "tcpota image list";
    if (strcmp(cmd, "rollout") == 0) return "tcpota rollout list";
    if (strcmp(cmd, "device") == 0) return "tcpota device show ID";
    return "a list of what it changes";
}

/* Room for what unknown_change says (an unknown_note is the longest). */
#define API_CHANGE_NOTE_MAX 640

/* For a request of method m that got no answer it can trust, into buf:
 * "" for a GET; for a write, that it may have been made and how to check
 * (the server goes on after the client stops waiting, so running it again
 * blindly could do it twice). Returns buf. */
static const char *unknown_change(const struct api *a, enum api_method m, char *buf, size_t cap)
{
    if (m == API_GET) {
        buf[0] = '\0';
    } else if (a->unknown_note) {
        snprintf(buf, cap, "%s", a->unknown_note);
    } else {
        snprintf(buf, cap, "the server may still have made the change: check with %s before "
                 "running the command again", check_cmd(a->cmd));
    }
    return buf;
}

/* Prints that no answer came within --timeout. A request that changes
 * something may have done so: the server goes on after the client stops
 * waiting, so running it again blindly could do it twice. */
static void timed_out(const struct api *a, enum api_method m, unsigned waited_s)
{
    if (m == API_GET) {
        fprintf(stderr, "tcpota %s: no answer from the API at %s within %u s; is the server "
                        "busy? (--timeout SECONDS waits longer)\n", a->cmd, a->url, waited_s);
        return;
    }
    char change[API_CHANGE_NOTE_MAX];

    fprintf(stderr, "tcpota %s: no answer from the API at %s within %u s; %s (--timeout SECONDS "
                    "waits longer for a busy server)\n",
            a->cmd, a->url, waited_s, unknown_change(a, m, change, sizeof(change)));
}

/* https: prints why the TLS layer failed, and returns 1; 0 when it did
 * not (the connection itself failed, or TLS is not in use). */
static int tls_failed(const struct api *a, const struct reply *r)
{
    char why[256];

    if (!a->tls) return 0;
    if (r->tls_verify != X509_V_OK) {
        long v = r->tls_verify;
        char todo[CLI_TLS_TODO_LEN];

        (void)cli_tls_verify_todo(v, "the proxy's", "--api", a->ca_from, a->ca_file,
                                  "--ca FILE (or TCPOTA_API_CA)", todo, sizeof(todo));
        fprintf(stderr, "tcpota %s: the API at %s: its TLS certificate was not accepted: %s; %s\n",
                a->cmd, a->url, X509_verify_cert_error_string(v), todo);
        return 1;
    }
    /* The peer closed during the handshake (OpenSSL 3 calls it an error):
     * no_answer says so once it knows the port takes connections. */
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    if (r->tls_error && ERR_GET_REASON(r->tls_error) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        return 0;
    }
#endif
    if (r->tls_error) {
        fprintf(stderr, "tcpota %s: the TLS handshake with the API at %s failed: %s; is it the "
                        "https:// address of a TLS proxy in front of the API (not the API's own "
                        "plain http:// port)?\n", a->cmd, a->url,
                cli_tls_error_text(r->tls_error, why, sizeof(why)));
        return 1;
    }
    return 0;
}

/* Prints why no answer came to a request of method m. */
static void no_answer(const struct api *a, enum api_method m, const struct reply *r, size_t sent)
{
    int gai = 0, err;
    char why[128];

    if (r->has_err && r->err == EVREQ_HTTP_TIMEOUT) {
        timed_out(a, m, a->timeout_s); /* evhttp's: nothing came for that long */
        return;
    }
    if (r->has_err && r->err == EVREQ_HTTP_DATA_TOO_LONG) {
        fprintf(stderr, "tcpota %s: the API at %s sent an answer larger than any of tcpota "
                        "serve's (over %u MiB, or headers over %u KiB); is it the --api address "
                        "of tcpota serve?\n", a->cmd, a->url, API_ANSWER_MAX >> 20,
                API_HEADERS_MAX >> 10);
        return;
    }
    /* A TLS handshake that never ends is not a timeout to evhttp: it ends
     * as a closed connection, after the whole --timeout (libevent's coarse
     * clock may end it a few ms early). No HTTP was sent: nothing changed. */
    if (a->tls && r->tls_started && !r->tls_done &&
        r->waited_ms + API_CLOCK_SLACK_MS >= (uint64_t)a->timeout_s * 1000) {
        fprintf(stderr, "tcpota %s: the TLS handshake with the API at %s did not finish within "
                        "%u s; is it the https:// address of a TLS proxy? (--timeout SECONDS "
                        "waits longer)\n", a->cmd, a->url, a->timeout_s);
        return;
    }
    if (r->deadline) {
        timed_out(a, m, r->allowed_s);
        return;
    }
    if (tls_failed(a, r)) {
        return;
    }
    if (r->has_err && r->err == EVREQ_HTTP_INVALID_HEADER) {
        fprintf(stderr, "tcpota %s: the API at %s answered something that is not HTTP; is it "
                        "the --api address of tcpota serve?\n", a->cmd, a->url);
        return;
    }
    err = probe_connect(a, &gai);
    if (err < 0) {
        say_unresolved(a, gai);
        return;
    }
    if (err == 0 && a->tls && !r->tls_done) { /* nothing of the request went out */
        fprintf(stderr, "tcpota %s: the API at %s closed the connection during the TLS "
                        "handshake; is it the https:// address of a TLS proxy in front of the "
                        "API?\n", a->cmd, a->url);
        return;
    }
    if (err == 0 && sent >= 65536) {
        /* libevent closes on a body over --max-image, often before the
         * client could read its 413; the device port closes on the first
         * bytes as well, which the client may not see before it has sent
         * this much; and a server that stopped or restarted meanwhile (a
         * proxy in front of it still listens): all are possible. */
        fprintf(stderr, "tcpota %s: the API at %s closed the connection during a request with "
                        "a %zu-byte body, without an answer. The server may have stopped or "
                        "restarted meanwhile (then run the command again), the body may be "
                        "above its --max-image BYTES (default 64 MiB), or this may not be the "
                        "--api address of tcpota serve (its device port closes at once)\n",
                a->cmd, a->url, sent);
        return;
    }
    if (err == 0 && a->tls) {
        fprintf(stderr, "tcpota %s: the API at %s closed the connection without an answer; is "
                        "it a TLS proxy in front of tcpota serve's --api (not its device port)?\n",
                a->cmd, a->url);
        return;
    }
    if (err == 0) {
        fprintf(stderr, "tcpota %s: the API at %s closed the connection without an answer; is "
                        "it the --api address of tcpota serve (not its device port), or a TLS "
                        "proxy's (then give https://)?\n", a->cmd, a->url);
        return;
    }
    snprintf(why, sizeof(why), "%s", strerror(err));
    why[0] = (char)tolower((unsigned char)why[0]);
    /* evhttp calls the error callback (EOF) for a connection that closed
     * during the request, not for one that was never made (refused): the
     * request answered without an error then was sent nowhere. */
    if (sent > 0 && r->has_err) { /* it was reached: it went away during the request */
        fprintf(stderr, "tcpota %s: the API at %s closed the connection during a request with "
                        "a %zu-byte body, without an answer, and no longer answers (%s): the "
                        "server stopped? "
                        "Whether the request took effect is unknown: once it runs again, %s\n",
                a->cmd, a->url, sent, why,
                strcmp(a->cmd, "image") == 0
                    ? "run the command again (adding the same image twice is harmless)"
                : strcmp(a->cmd, "rollout") == 0
                    ? "see tcpota rollout list before you run the command again (a create run "
                      "twice makes two rollouts)"
                    : "run the command again");
        return;
    }
    if (a->tls) {
        fprintf(stderr, "tcpota %s: cannot reach the API at %s (%s); is the TLS proxy in front "
                        "of the API running there?\n", a->cmd, a->url, why);
        return;
    }
    fprintf(stderr, "tcpota %s: cannot reach the API at %s (%s); is tcpota serve --data running, "
                    "with --api?%s\n", a->cmd, a->url, why,
            a->default_url ? " (this is the default address: for a server whose --api is another, "
                             "give --api http://HOST:PORT or set TCPOTA_API)" : "");
}

static const char *method_name(enum api_method m)
{
    switch (m) {
    case API_GET: return "GET";
    case API_POST: return "POST";
    case API_PATCH: return "PATCH";
    case API_DELETE: return "DELETE";
    }
    return "?";
}

static enum evhttp_cmd_type method_type(enum api_method m)
{
    switch (m) {
    case API_GET: return EVHTTP_REQ_GET;
    case API_POST: return EVHTTP_REQ_POST;
    case API_PATCH: return EVHTTP_REQ_PATCH;
    case API_DELETE: return EVHTTP_REQ_DELETE;
    }
    return EVHTTP_REQ_GET;
}

/* The API's words in its messages, for a client of HTTP (a header, an
 * encoding), that a user of a command says with the command's own: {cmd,
 * the API's phrase, the command's}. */
static const char *const api_phrases[][3] = {
    {"image", " and send its manifest (base64) in the Tcpota-Manifest header",
     ", or give its manifest with --manifest M"},
    {"device", " (percent-encoded)", ""}, /* the command encodes the ID itself */
};

/* How an error about one of api_fields is said. */
enum field_say {
    SAY_SEE,   /* "message (see NAME)", unless the message names it */
    SAY_ALONE, /* the message alone: it names what was given */
};

/* The API's fields that a command takes as an argument or an option even
 * when the command's own field_opts do not name them (the option was not
 * given). */
static const struct {
    const char *cmd, *field, *name; /* name: the command's name for it */
    enum field_say say;
} api_fields[] = {
    {"image", "manifest", "--manifest", SAY_SEE},
    {"image", "id", "ID|VERSION", SAY_ALONE},
    {"device", "id", "ID", SAY_ALONE}, /* "no device X", as show says it (a trial) */
    {"rollout", "id", "ID", SAY_ALONE}, /* "no rollout 99", as the API says it */
};

/* Replaces the API's phrases (api_phrases) in msg (cap bytes) for a.cmd. */
static void say_for_cli(const struct api *a, char *msg, size_t cap)
{
    char out[1024];
    const char *at;
    size_t i, head;

    for (i = 0; i < sizeof(api_phrases) / sizeof(api_phrases[0]); i++) {
        if (strcmp(api_phrases[i][0], a->cmd) != 0 || !(at = strstr(msg, api_phrases[i][1]))) {
            continue;
        }
        head = (size_t)(at - msg);
        snprintf(out, sizeof(out), "%.*s%s%s", (int)head, msg, api_phrases[i][2],
                 at + strlen(api_phrases[i][1]));
        snprintf(msg, cap, "%s", out);
    }
}

/* Prints msg about an API field the command's field_opts did not name:
 * by the command's own name for it when it has one, else by the field. */
static void print_field_error(const struct api *a, const char *msg, const char *field)
{
    size_t i;

    for (i = 0; i < sizeof(api_fields) / sizeof(api_fields[0]); i++) {
        if (strcmp(api_fields[i].cmd, a->cmd) != 0 || strcmp(api_fields[i].field, field) != 0) {
            continue;
        }
        if (api_fields[i].say == SAY_ALONE || strstr(msg, api_fields[i].name)) {
            fprintf(stderr, "tcpota %s: %s\n", a->cmd, msg);
        } else {
            fprintf(stderr, "tcpota %s: %s (see %s)\n", a->cmd, msg, api_fields[i].name);
        }
        return;
    }
    fprintf(stderr, "tcpota %s: %s (field: %s)\n", a->cmd, msg, field);
}

/* Prints the server's error answer (status >= 300) for a person. */
static void print_error(const struct api *a, int status, const char *reason, const json_t *j)
{
    char msg[1024], field[128];
    const char *e = j ? api_str(j, "error") : "";
    const char *f = j ? api_str(j, "field") : "";

    /* the server's text may be anything: no control characters on a terminal */
    for (size_t i = 0; (msg[i] = e[i]) != 0 && i + 1 < sizeof(msg); i++) {
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) msg[i] = '?';
    }
    msg[sizeof(msg) - 1] = 0;
    for (size_t i = 0; (field[i] = f[i]) != 0 && i + 1 < sizeof(field); i++) {
        if ((unsigned char)field[i] < 0x20 || field[i] == 0x7f) field[i] = '?';
    }
    field[sizeof(field) - 1] = 0;
    say_for_cli(a, msg, sizeof(msg));
    if (status == 401) {
        if (strncmp(msg, API_TOKEN_REFUSED, strlen(API_TOKEN_REFUSED)) == 0) {
            msg[0] = '\0'; /* a proxy's own text is kept */
        }
        /* Where the address came from too: a stale TCPOTA_API naming another
         * server was read as a wrong token (a trial). */
        /* A token copied into a running server's DIR is not its token
         * yet (a trial was told to use the very file it had copied). */
        fprintf(stderr, "tcpota %s: the API at %s (%s) refused the token from %s%s%s%s; give the "
                        "token in that server's DIR/api.token (--token-file, TCPOTA_TOKEN or "
                        "--data DIR)%s%s%s%s\n", a->cmd, a->url,
                strcmp(a->url_from, "--api") == 0 ? "from --api" : a->url_from, a->token_from,
                *msg ? " (" : "", msg, *msg ? ")" : "",
                strcmp(a->url_from, "--api") == 0 ? "" : ", or check that ",
                strcmp(a->url_from, "--api") == 0 ? "" : a->url_from,
                strcmp(a->url_from, "--api") == 0 ? "" : " names the server you mean (--api URL)",
                a->opt_data && !a->opt_token_file
                    ? "; a server reads its api.token when it starts: one written there while it"
                      " runs is its token only after a restart"
                    : "");
        return;
    }
    if (!*msg) {
        fprintf(stderr, "tcpota %s: the API at %s answered %d %s\n", a->cmd, a->url, status,
                reason);
        return;
    }
    for (size_t i = 0; *field && a->field_opts && a->field_opts[i][0]; i++) {
        if (strcmp(a->field_opts[i][0], field) == 0) { /* the option the user gave */
            size_t flen = strlen(field);
            if (strncmp(msg, field, flen) == 0 && msg[flen] == ' ') {
                /* "halt_at must be ...": the option in the field's place */
                fprintf(stderr, "tcpota %s: %s%s\n", a->cmd, a->field_opts[i][1], msg + flen);
            } else {
                fprintf(stderr, "tcpota %s: %s: %s\n", a->cmd, a->field_opts[i][1], msg);
            }
            return;
        }
    }
    if (*field) {
        print_field_error(a, msg, field);
    } else if (status == 404 && *a->prefix && strncmp(msg, API_NO_PATH, strlen(API_NO_PATH)) == 0) {
        /* The request's path, with the prefix, reached tcpota serve. */
        fprintf(stderr, "tcpota %s: %s (the path %s of --api goes before each request's: a proxy "
                        "in front of the API must take it off, or --api must go without it)\n",
                a->cmd, msg, a->prefix);
    } else {
        fprintf(stderr, "tcpota %s: %s\n", a->cmd, msg);
    }
}

/* An answer's text the CLI shows whole, at most (longer: cut, "..."). */
#define ANSWER_TEXT_MAX 200u

/* The first line of an answer that is not JSON when it is plain text
 * (printable ASCII, not markup), into out (cap > ANSWER_TEXT_MAX + 3):
 * 1, or 0 with out empty. A server that answers in words says what is
 * wrong better than the JSON parser's error (a trial's CLI, given the
 * HTTPS download port, printed "'[' or '{' expected" where the server had
 * said "this is tcpota serve's HTTPS download port"). */
static int answer_text(const char *raw, char *out, size_t cap)
{
    size_t n = strcspn(raw, "\r\n");

    out[0] = '\0';
    if (n == 0 || raw[0] == '<' || raw[0] == '{' || raw[0] == '[' || cap <= ANSWER_TEXT_MAX + 3) {
        return 0;
    }
    if (!tcpota_printable(raw, n, 1, n)) return 0; /* only what a terminal shows as it is */
    while (n && raw[n - 1] == ' ') n--;
    if (n > ANSWER_TEXT_MAX) {
        memcpy(out, raw, ANSWER_TEXT_MAX);
        memcpy(out + ANSWER_TEXT_MAX, "...", 4);
    } else {
        memcpy(out, raw, n);
        out[n] = '\0';
    }
    return n > 0;
}

/* After a 413: what the server takes (GET /v1/images says it), or what
 * --max-image means when it does not say. */
static void too_large(struct api *a, size_t sent)
{
    json_t *j = NULL, *max;
    int status = 0, json = a->json;
    long long limit = 0;
    char msg[400];

    if (!a->asking_limit) { /* a server that answered this GET 413 too is not asked again */
        a->asking_limit = 1;
        a->json = 0; /* the list is not the command's output */
        if (api_request(a, API_GET, "/v1/images", NULL, 0, NULL, NULL, NULL, &j, &status) == 0 &&
            status == 200 && (max = json_object_get(j, "max_image")) && json_is_integer(max)) {
            limit = (long long)json_integer_value(max);
        }
        json_decref(j);
        a->asking_limit = 0;
        a->json = json;
    }
    if (limit > 0 && sent <= (size_t)limit) {
        /* Within the server's limit: what refused it stands in between. */
        snprintf(msg, sizeof msg, "%zu bytes were refused as too large (413), but tcpota serve "
                 "takes images of up to %lld bytes (its --max-image): a proxy in front of the API"
                 " refused them; raise its limit on a request's body (nginx: client_max_body_size,"
                 " 1 MiB by default)", sent, limit);
    } else if (limit > 0) {
        snprintf(msg, sizeof msg, "the server refused the %zu bytes sent as too large (413): it"
                 " takes images of at most %lld bytes (its --max-image)", sent, limit);
    } else {
        snprintf(msg, sizeof msg, "the server refused the %zu bytes sent as too large (413); it"
                 " takes images of at most its --max-image BYTES (default 64 MiB)", sent);
    }
    fprintf(stderr, "tcpota %s: %s\n", a->cmd, msg);
    if (json) {
        /* The answer was libevent's HTML page: --json still gets an object,
         * as every other error gives it. */
        json_t *o = json_pack("{s:s, s:i}", "error", msg, "status", 413);
        if (o) {
            json_dumpf(o, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            (void)cli_flush();
        }
        json_decref(o);
    }
}

/* A 502, 503 or 504 that is not JSON: a proxy in front of the API that
 * could not reach tcpota serve, or waited too long for it (tcpota serve
 * answers JSON). Says so and returns 1; else 0. A write may still have
 * been made when the proxy stopped waiting. */
static int proxy_failed(const struct api *a, enum api_method m, int status, const char *reason)
{
    char change[API_CHANGE_NOTE_MAX];

    if (status < 502 || status > 504) return 0;
    unknown_change(a, m, change, sizeof(change));
    if (status == 504) {
        fprintf(stderr, "tcpota %s: a proxy in front of the API at %s answered 504 %s: it stopped "
                        "waiting for tcpota serve%s%s (raise its timeout for the server's "
                        "answers: HAProxy timeout server, nginx proxy_read_timeout)\n",
                a->cmd, a->url, reason, *change ? "; " : "", change);
        return 1;
    }
    /* A 502 may also come after the request went through (the server's
     * answer cut short): for a write, whether it took effect is unknown. */
    if (status != 502) change[0] = '\0';
    change[0] = (char)toupper((unsigned char)change[0]); /* a sentence of its own */
    fprintf(stderr, "tcpota %s: a proxy in front of the API at %s answered %d %s: it cannot reach "
                    "tcpota serve; is the server running, and is the proxy's address of its --api "
                    "right?%s%s\n", a->cmd, a->url, status, reason, *change ? " " : "", change);
    return 1;
}

/* https: a connection to a->host:port inside TLS, its certificate checked
 * against a->ca_file (or the system's CAs) and a->host; NULL after saying
 * why. The TLS layer is kept in r (r->tls_bev) for the error messages. */
static struct evhttp_connection *tls_connection(const struct api *a, struct reply *r)
{
    SSL_CTX *ctx = cli_tls_client_ctx(a->cmd, a->ca_file, a->ca_from, API_TLS_PEER);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    struct in6_addr ip;
    int literal = inet_pton(AF_INET, a->host, &ip) == 1 || inet_pton(AF_INET6, a->host, &ip) == 1;
    struct evhttp_connection *conn = NULL;

    if (!ctx) return NULL; /* said why */
    cli_tls_ctx_free(ctx); /* the SSL holds its own reference */
    /* The name in the URL must be in the certificate's subjectAltName (an
     * IP address among its IP addresses: OpenSSL 3), never only in its CN;
     * SNI names a host name, not an address. */
    if (!ssl || SSL_set1_host(ssl, a->host) != 1 ||
        (!literal && SSL_set_tlsext_host_name(ssl, a->host) != 1) ||
        SSL_set_app_data(ssl, r) != 1) {
        fprintf(stderr, "tcpota %s: cannot set up TLS to %s: out of memory\n", a->cmd, a->url);
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    SSL_set_verify(ssl, SSL_VERIFY_PEER, tls_verify);
    SSL_set_info_callback(ssl, tls_info);
    r->tls_bev = bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!r->tls_bev) { /* libevent has freed ssl (BEV_OPT_CLOSE_ON_FREE) */
        fprintf(stderr, "tcpota %s: out of memory\n", a->cmd);
        return NULL;
    }
    /* A proxy that closes without TLS's close_notify loses nothing that
     * was answered: tcpota serve's answers carry their Content-Length, and
     * evhttp fails one that ends short of it. */
    bufferevent_openssl_set_allow_dirty_shutdown(r->tls_bev, 1);
    conn = evhttp_connection_base_bufferevent_new(r->base, NULL, r->tls_bev, a->host, a->port);
    if (!conn) {
        fprintf(stderr, "tcpota %s: cannot set up a connection to %s\n", a->cmd, a->url);
        bufferevent_free(r->tls_bev); /* frees ssl (BEV_OPT_CLOSE_ON_FREE) */
        r->tls_bev = NULL;
    }
    return conn;
}

int api_request(struct api *a, enum api_method m, const char *path, const void *body, size_t len,
                const char *ctype, const char *hdr_name, const char *hdr_val, json_t **out,
                int *status)
{
    struct reply r;
    struct evhttp_connection *conn = NULL;
    struct evhttp_request *req;
    struct event *deadline = NULL;
    struct evkeyvalq *h;
    char uri[4096], hostport[300], auth[600], clen[32], *raw = NULL;
    size_t rawlen;
    json_t *j = NULL;
    json_error_t jerr;
    uint64_t started;
    int rc = 1;

    *out = NULL;
    if (status) *status = 0;
    memset(&r, 0, sizeof(r));
    if (strlen(a->prefix) + strlen(path) >= sizeof(uri)) {
        fprintf(stderr, "tcpota %s: the request path is too long\n", a->cmd);
        return 1;
    }
    memcpy(uri, a->prefix, strlen(a->prefix));
    memcpy(uri + strlen(a->prefix), path, strlen(path) + 1);
    signal(SIGPIPE, SIG_IGN); /* a server that closes early: an error, not a kill */
    r.base = event_base_new();
    r.body = evbuffer_new();
    if (!r.base || !r.body) {
        fprintf(stderr, "tcpota %s: out of memory\n", a->cmd);
        goto out;
    }
    if (!host_resolves(a)) goto out;
    conn = a->tls ? tls_connection(a, &r) : evhttp_connection_base_new(r.base, NULL, a->host, a->port);
    if (!conn && a->tls) goto out; /* tls_connection said why */
    req = conn ? evhttp_request_new(on_done, &r) : NULL;
    if (!req) {
        fprintf(stderr, "tcpota %s: cannot set up a connection to %s\n", a->cmd, a->url);
        goto out;
    }
    evhttp_connection_set_timeout(conn, (int)a->timeout_s);
    evhttp_connection_set_max_body_size(conn, API_ANSWER_MAX);
    evhttp_connection_set_max_headers_size(conn, API_HEADERS_MAX);
    /* A server or proxy that answers before the body is all sent (413)
     * and closes: its answer is read, not lost to the failed write. */
    evhttp_connection_set_flags(conn, EVHTTP_CON_READ_ON_WRITE_ERROR);
    evhttp_request_set_error_cb(req, on_error);
    h = evhttp_request_get_output_headers(req);
    snprintf(hostport, sizeof(hostport), "%s%s%s:%u", V6_OPEN(a->host), a->host,
             V6_CLOSE(a->host), (unsigned)a->port);
    snprintf(auth, sizeof(auth), "Bearer %s", a->token);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Authorization", auth);
    evhttp_add_header(h, "Accept", "application/json");
    evhttp_add_header(h, "User-Agent", "tcpota/" TCPOTA_VERSION_STRING);
    evhttp_add_header(h, "Connection", "close");
    if (m == API_POST || m == API_PATCH || body) {
        snprintf(clen, sizeof(clen), "%zu", body ? len : 0);
        evhttp_add_header(h, "Content-Length", clen);
        if (body && ctype) evhttp_add_header(h, "Content-Type", ctype);
        if (body && len) evbuffer_add_reference(evhttp_request_get_output_buffer(req), body, len,
                                                NULL, NULL);
    }
    if (hdr_name) evhttp_add_header(h, hdr_name, hdr_val);
    started = cli_now_ms();
    r.started_ms = started;
    r.timeout_s = a->timeout_s;
    r.moved = body ? len : 0;
    r.deadline_ev = deadline = evtimer_new(r.base, on_deadline, &r);
    evhttp_request_set_chunked_cb(req, on_chunk);
    if (!deadline || deadline_arm(&r) != 0) {
        fprintf(stderr, "tcpota %s: out of memory\n", a->cmd);
        evhttp_request_free(req);
        goto out;
    }
    if (evhttp_make_request(conn, req, method_type(m), uri) != 0) {
        fprintf(stderr, "tcpota %s: cannot send %s %s to %s\n", a->cmd, method_name(m), uri, a->url);
        goto out;
    }
    event_base_dispatch(r.base);
    r.waited_ms = cli_now_ms() - started;
    if (r.status == 0 || !r.done) {
        tls_note(&r);
        no_answer(a, m, &r, body ? len : 0);
        goto out;
    }
    if (status) *status = r.status;
    rawlen = evbuffer_get_length(r.body);
    raw = malloc(rawlen + 1);
    if (!raw) {
        fprintf(stderr, "tcpota %s: out of memory for a %zu-byte answer\n", a->cmd, rawlen);
        goto out;
    }
    evbuffer_remove(r.body, raw, rawlen);
    raw[rawlen] = 0;
    if (r.status == 413) {
        /* libevent answers it, before the API: an HTML body, never JSON
         * (docs/api.md, Conventions). Only an upload is that large. */
        too_large(a, body ? len : (size_t)0);
        goto out;
    }
    j = rawlen ? json_loadb(raw, rawlen, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    /* tcpota serve answers JSON: a 502-504 without it is a proxy's */
    if ((!j || !json_is_object(j)) && proxy_failed(a, m, r.status, r.reason)) {
        goto out;
    }
    if (rawlen) {
        if (!j || !json_is_object(j)) {
            char said[ANSWER_TEXT_MAX + 8];
            int text = !j && answer_text(raw, said, sizeof said);
            fprintf(stderr, "tcpota %s: the API at %s answered %d %s with a body that is not a "
                            "JSON object (%s%s); is it the --api address of tcpota serve%s?\n",
                    a->cmd, a->url, r.status, r.reason,
                    j ? "" : text ? "it says: " : "JSON error: ",
                    j ? "another JSON value" : text ? said : jerr.text,
                    r.status == 404 ? ", with the path a proxy in front of it needs "
                                      "(http[s]://HOST:PORT/PREFIX)" : "");
            goto out;
        }
        if (a->json) {
            fwrite(raw, 1, rawlen, stdout);
            if (raw[rawlen - 1] != '\n') fputc('\n', stdout);
            (void)cli_flush();
        }
    }
    if (r.status < 200 || r.status > 299) {
        print_error(a, r.status, r.reason, j);
        /* A 400 is a bad value the server caught instead of the CLI: the
         * same exit as when the CLI catches it (README, exit codes). */
        if (r.status == 400) rc = 2;
        goto out;
    }
    if (j && json_object_size(j) == 0) {
        /* Every answer of tcpota serve's API names what it is: an empty
         * object is another service's, not an empty result. */
        fprintf(stderr, "tcpota %s: the API at %s answered %d with an empty JSON object, which "
                        "tcpota serve never sends; is it the --api address of tcpota serve?\n",
                a->cmd, a->url, r.status);
        goto out;
    }
    *out = j;
    j = NULL;
    rc = 0;
out:
    json_decref(j);
    free(raw);
    if (conn) evhttp_connection_free(conn);
    if (deadline) event_free(deadline);
    if (r.body) evbuffer_free(r.body);
    if (r.base) event_base_free(r.base);
    return rc;
}

int api_request_json(struct api *a, enum api_method m, const char *path, json_t *body,
                     json_t **out, int *status)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    json_decref(body);
    if (!text) {
        fprintf(stderr, "tcpota %s: out of memory\n", a->cmd);
        *out = NULL;
        return 1;
    }
    rc = api_request(a, m, path, text, strlen(text), "application/json", NULL, NULL, out, status);
    free(text);
    return rc;
}

char *api_encode(const char *s)
{
    return evhttp_uriencode(s, -1, 0);
}

const char *api_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

long long api_int(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

int api_bool(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}
