/* serve_config.c - reads `tcpota serve --config FILE` into option arguments. */
#include "serve_config.h"

#include "cli.h"
#include "text.h" /* text_bom */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* A line longer than this is not a config line (paths stay far below). */
#define MAX_LINE 4096
/* The longest name nearest_option() compares (the options' are shorter). */
#define MAX_NAME 40
/* Lines one file may hold: the serve flags fit many times over. */
#define MAX_LINES 1024

/* The options `tcpota serve` takes (cli/serve.c), and whether each takes a
 * value: a new option of serve.c goes here too, or config files refuse it
 * (test_serve_config.sh checks every option of `serve --help` is here). */
#define PATH 2 /* takes a value that names a file or a directory */
static const struct {
    const char *name;
    int takes_value; /* 0, 1, or PATH */
} options[] = {
    {"listen", 1}, {"version", 1}, {"allow-downgrade", 0}, {"max-conns", 1}, {"workers", 1},
    {"idle-timeout", 1}, {"chunk", 1}, {"progress", 0}, {"no-progress", 0}, {"quiet", 0},
    {"log-format", 1}, {"manifest", PATH}, {"pubkey", PATH}, {"require-signed", 0},
    {"no-require-signed", 0}, {"allow-legacy", 0}, {"auth-file", PATH}, {"require-auth", 0},
    {"allow-unauthenticated-legacy", 0}, {"max-unauth-per-addr", 1}, {"tls-cert", PATH},
    {"tls-key", PATH}, {"tls-ticket-key", PATH}, {"tls-ticket-lifetime", 1}, {"data", PATH},
    {"db", 1}, {"api", 1}, {"max-image", 1}, {"ota-listen", 1}, {"proxy-protocol", 1},
    {"api-max-conns", 1}, {"db-timeout", 1}, {"http-host", 1}, {"secrets-reread", 1},
};

/* Returns the index of name in options, or -1. */
static int find_option(const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0) return (int)i;
    }
    return -1;
}

/* The edit distance between a and b (insertions, deletions, changes and
 * swaps of neighbours, case ignored), counted up to NEAR_MAX + 1. */
#define NEAR_MAX 2
static unsigned distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    unsigned d[MAX_NAME + 1][MAX_NAME + 1];

    if (la > MAX_NAME || lb > MAX_NAME) {
        return NEAR_MAX + 1;
    }
    for (i = 0; i <= la; i++) d[i][0] = (unsigned)i;
    for (j = 0; j <= lb; j++) d[0][j] = (unsigned)j;
    for (i = 1; i <= la; i++) {
        for (j = 1; j <= lb; j++) {
            unsigned c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            unsigned v = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) &&
                d[i - 2][j - 2] + 1 < v) {
                v = d[i - 2][j - 2] + 1;
            }
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

/* The option nearest to the unknown name (a typo, or a name in capitals):
 * its index when it is within NEAR_MAX edits and no other is as near; else
 * the longest option the name starts with, where a '-' goes on after it
 * or it has 6 letters or more (tls-certificate, pubkey-file, listening: a
 * trial got no suggestion; not "data" for database); or -1. */
static int nearest_option(const char *name)
{
    unsigned best = NEAR_MAX + 1, d;
    int k = -1, ties = 0;
    size_t i, n, longest = 0;

    for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if ((d = distance(name, options[i].name)) < best) {
            best = d, k = (int)i, ties = 0;
        } else if (d == best) {
            ties++;
        }
    }
    if (best <= NEAR_MAX && !ties) {
        return k;
    }
    for (i = 0, k = -1; i < sizeof(options) / sizeof(options[0]); i++) {
        n = strlen(options[i].name);
        if (n > longest && strncasecmp(name, options[i].name, n) == 0 &&
            (name[n] == '-' || (n >= 6 && name[n] != '\0'))) {
            longest = n, k = (int)i;
        }
    }
    return k;
}

int serve_option(const char *arg)
{
    int k = strncmp(arg, "--", 2) == 0 ? find_option(arg + 2, strlen(arg + 2)) : -1;

    return k < 0 ? -1 : options[k].takes_value != 0;
}

static char *trim(char *s)
{
    char *e = s + strlen(s);
    while (*s && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    *e = 0;
    return s;
}

static int bad(const char *path, unsigned line, const char *what)
{
    fprintf(stderr, "tcpota serve: %s:%u: %s\n", path, line, what);
    return 2;
}

/* Adds s (copied), from the file's line, to its arguments. Returns 0 or -1. */
static int add(struct serve_config_args *out, const char *s, size_t len, unsigned line)
{
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = 0;
    out->lines[out->nowned] = line;
    out->owned[out->nowned++] = c;
    return 0;
}

/* Reads one line of f into buf (cap > MAX_LINE + 1), its newline dropped
 * and terminated; *len counts every byte read, NULs included. Returns 1,
 * 0 at the end of the file, or -1 for a line longer than MAX_LINE. */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
    int ch;

    *len = 0;
    while ((ch = getc(f)) != EOF && ch != '\n') {
        if (*len == MAX_LINE || *len + 1 >= cap) {
            return -1;
        }
        buf[(*len)++] = (char)ch;
    }
    buf[*len] = 0;
    return ch == EOF && *len == 0 ? 0 : 1;
}

/* The first byte of a line a text file cannot hold (a control character
 * but tab, and carriage returns at the line's end: CRLF, CR CR LF of a
 * file converted twice; NUL included): its
 * offset, or len. Such a line is refused and never echoed (a binary file's
 * bytes would reach the terminal; a lone CR, from an old Mac editor, sends
 * the cursor back over the message), and a NUL must not silently end a
 * value. */
static size_t not_text(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t' && !(c == '\r' && strspn(s + i, "\r") == len - i)) ||
            c == 0x7f) {
            break;
        }
    }
    return i;
}

/* name into out (size bytes) with every byte outside printable ASCII as
 * \xNN: an option name that differs from a known one only by bytes an
 * editor does not show (a byte-order mark, a no-break space) shows them. */
static void visible(const char *name, char *out, size_t size)
{
    size_t o = 0;

    for (; *name && o + 5 < size; name++) {
        unsigned char c = (unsigned char)*name;
        o += (size_t)snprintf(out + o, size - o, c < 0x20 || c > 0x7e ? "\\x%02x" : "%c", c);
    }
    out[o] = '\0';
}

/* Reads the flags of f (named path) into out->owned. Returns 0 or 2. */
static int read_flags(FILE *f, const char *path, struct serve_config_args *out)
{
    char buf[MAX_LINE + 2], msg[MAX_LINE + 160], opt[MAX_LINE + 3];
    unsigned line = 0;

    for (;;) {
        char *b = buf, *s, *val;
        size_t nlen, len, at, bom;
        int k, got = read_line(f, buf, sizeof(buf), &len);

        if (got == 0) {
            break;
        }
        line++;
        if (got < 0) {
            snprintf(msg, sizeof(msg), "line longer than %d bytes; is this a config file?", MAX_LINE);
            return bad(path, line, msg);
        }
        /* Editors on Windows start a UTF-8 file with a byte-order mark;
         * read as text, it became part of the first option's name. */
        if (line == 1 && (bom = text_bom(b, len)) != 0) {
            b += bom;
            len -= bom;
        }
        if ((at = not_text(b, len)) < len && b[at] == '\r') {
            snprintf(msg, sizeof(msg), "byte %zu of the line is a carriage return (0x0d) before its "
                     "end: lines end with a newline (or CR LF); save the file with Unix or Windows "
                     "line ends", (size_t)(b - buf) + at + 1);
            return bad(path, line, msg);
        }
        if (at < len) {
            snprintf(msg, sizeof(msg), "byte %zu of the line is 0x%02x, which a config file cannot "
                                       "hold; is this a config file?",
                     (size_t)(b - buf) + at + 1, (unsigned)(unsigned char)b[at]);
            return bad(path, line, msg);
        }
        if (line > MAX_LINES) {
            snprintf(msg, sizeof(msg), "more than %d lines; is this a config file?", MAX_LINES);
            return bad(path, line, msg);
        }
        s = trim(b);
        if (!*s || *s == '#') continue;
        nlen = strcspn(s, " \t");
        val = trim(s + nlen);
        s[nlen] = 0;
        if (s[0] == '-') {
            snprintf(msg, sizeof(msg), "write the option as '%s', without the leading dashes",
                     s + strspn(s, "-"));
            return bad(path, line, msg);
        }
        if (strcmp(s, "config") == 0) return bad(path, line, "a config file cannot name another "
                                                              "(--config goes on the command line)");
        if ((k = find_option(s, nlen)) < 0 && strchr(s, '=') &&
            find_option(s, strcspn(s, "=")) >= 0) {
            /* "version=2.0.0": the command line's form. */
            snprintf(msg, sizeof(msg), "write '%.*s %s' (a space between the option and its value,"
                     " not '=')", (int)strcspn(s, "="), s, s + strcspn(s, "=") + 1);
            return bad(path, line, msg);
        }
        if (k < 0) {
            int near = nearest_option(s);
            visible(s, opt, sizeof(opt));
            snprintf(msg, sizeof(msg), "unknown option '%s'%s%s%s; the options are those of `tcpota "
                     "serve --help`, without the leading --", opt, near < 0 ? "" : " (did you mean '",
                     near < 0 ? "" : options[near].name, near < 0 ? "" : "'?)");
            return bad(path, line, msg);
        }
        if (options[k].takes_value && !*val) {
            snprintf(msg, sizeof(msg), "'%s' needs a value: write '%s VALUE'", s, s);
            return bad(path, line, msg);
        }
        if (!options[k].takes_value && *val) {
            snprintf(msg, sizeof(msg), "'%s' is a switch and takes no value (got '%s'); write "
                                       "'%s' alone, or remove the line", s, val, s);
            return bad(path, line, msg);
        }
        /* One argument, "--name=VALUE": a value is taken as written, even
         * one that starts with "--" (as the next option would be). A
         * relative path is the config file's folder's (as Prometheus takes
         * its config's): under the service the current folder is /, and a
         * trial's 'tls-cert rc.pem' beside the file was not found. */
        if (options[k].takes_value == PATH && val[0] != '/' && strrchr(path, '/')) {
            int dir = (int)(strrchr(path, '/') - path); /* 0: the file is in / */
            if (snprintf(opt, sizeof(opt), "--%s=%.*s/%s", s, dir, path, val) >= (int)sizeof(opt)) {
                return bad(path, line, "the path, with the config file's folder before it, is"
                                       " too long");
            }
        } else {
            snprintf(opt, sizeof(opt), "--%s%s%s", s, *val ? "=" : "", val);
        }
        if (add(out, opt, strlen(opt), line) < 0) goto oom;
    }
    if (ferror(f)) return bad(path, line + 1, "read error");
    return 0;
oom:
    fprintf(stderr, "tcpota serve: out of memory\n");
    return 2;
}

int serve_config_load(int argc, char **argv, struct serve_config_args *out)
{
    const char *path = NULL;
    struct stat st;
    FILE *f;
    int i, n = 0, rc;

    memset(out, 0, sizeof(*out));
    out->argc = argc;
    out->argv = argv;
    for (i = 1; i < argc; i++) {
        char why[CLI_OPT_WHY];

        if (strcmp(argv[i], "--config") != 0 && strncmp(argv[i], "--config=", 9) != 0) continue;
        if (path) {
            fprintf(stderr, "tcpota serve: --config given twice; give one config file\n");
            return 2;
        }
        if (!(path = cli_opt_value(argc, argv, &i, "--config", "FILE", why, sizeof(why)))) {
            fprintf(stderr, "tcpota serve: %s\n", why);
            return 2;
        }
    }
    if (!path) return 0;
    if (!(f = cli_fopen_regular(path, "--config"))) return 2;
    if (fstat(fileno(f), &st) == 0) {
        out->mode = (unsigned)(st.st_mode & 07777);
    }
    out->path = path;
    /* Each line gives at most one argument. */
    out->owned = calloc(MAX_LINES + 2, sizeof(char *));
    out->lines = calloc(MAX_LINES + 2, sizeof(unsigned));
    if (!out->owned || !out->lines) {
        fclose(f);
        fprintf(stderr, "tcpota serve: out of memory\n");
        return 2;
    }
    out->argv = NULL; /* from here on, ours (or none) */
    rc = read_flags(f, path, out);
    fclose(f);
    if (rc) return rc;
    out->argv = calloc((size_t)(argc + out->nowned + 1), sizeof(char *));
    if (!out->argv) {
        fprintf(stderr, "tcpota serve: out of memory\n");
        return 2;
    }
    out->argv[n++] = argv[0];
    for (i = 0; i < out->nowned; i++) out->argv[n++] = out->owned[i];
    for (i = 1; i < argc; i++) out->argv[n++] = argv[i];
    out->argc = n;
    return 0;
}

void serve_config_free(struct serve_config_args *out)
{
    int i;
    for (i = 0; i < out->nowned; i++) free(out->owned[i]);
    if (out->owned) free(out->argv); /* argv is ours only when a file was read */
    free(out->owned);
    free(out->lines);
    memset(out, 0, sizeof(*out));
}
