/* util.c - argument parsing and file opening shared by the subcommands. */
#include "cli.h"
#include "text.h" /* text_file_kind, text_version_unordered */
#include "tcpota/version.h"

#include <arpa/inet.h>
#include <net/if.h> /* IF_NAMESIZE */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *cli_prog = "tcpota";
int cli_stdout_errno;
int cli_stdout_closed;

const char *cli_stdout_why(int err)
{
    return cli_stdout_closed ? "it is closed" : strerror(err);
}

int cli_flush(void)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) {
        return 0;
    }
    if (!cli_stdout_errno) {
        cli_stdout_errno = errno ? errno : EIO;
    }
    return -1;
}

void cli_err(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* 1 when the n bytes at s are an IPv6 address (without brackets), with
 * a zone (fe80::1%eth0) or without. */
static int ipv6_literal(const char *s, size_t n)
{
    char b[INET6_ADDRSTRLEN + IF_NAMESIZE];
    struct in6_addr a;

    if (n >= sizeof(b)) return 0;
    memcpy(b, s, n);
    b[n] = 0;
    b[strcspn(b, "%")] = 0;
    return inet_pton(AF_INET6, b, &a) == 1;
}

int cli_hostport(const char *s, const char *what, int listen, char *host, size_t hcap,
                 uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    unsigned long long p;

    if (!s || !*s) {
        cli_err("%s: expected HOST:PORT\n", what);
        return -1;
    }
    if (strstr(s, "://")) {
        /* "http://host:8080": the scheme would be taken for the host. */
        cli_err("%s: '%s' is a URL; give HOST:PORT, without a scheme or a path\n", what, s);
        return -1;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') {
            cli_err("%s: '%s' is not [IPv6]:PORT\n", what, s);
            return -1;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            cli_err("%s: '%s' has no :PORT\n", what, s);
            return -1;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 && s[0] == ':' && listen) {
        /* this machine first: the safer of the two (--api is a control API) */
        cli_err("%s: '%s' has no host before ':'; give 127.0.0.1%s (this machine only) or "
                "0.0.0.0%s (every address)\n", what, cli_cut(s), s, s);
        return -1;
    }
    if (hlen == 0 && s[0] == ':') {
        cli_err("%s: '%s' has no host before ':'; give the server's name or address, e.g. "
                "127.0.0.1%s\n", what, cli_cut(s), s);
        return -1;
    }
    if (hlen == 0 || hlen >= hcap) {
        cli_err("%s: bad host in '%s'\n", what, cli_cut(s));
        return -1;
    }
    if (s[0] != '[' && memchr(s, ':', hlen) && !ipv6_literal(s, hlen)) {
        /* "127.0.0.1:8070:1": taken whole, the host failed only when it was
         * resolved (a new user's trial). */
        cli_err("%s: '%s' has more than one ':'; give HOST:PORT (an IPv6 address in brackets: "
                "[::1]:8070)\n", what, cli_cut(s));
        return -1;
    }
    if (strchr(colon + 1, '/')) {
        /* "host:8070/ota": the path was read as part of the port. */
        cli_err("%s: '%s' has a path after the port; give HOST:PORT alone\n", what, cli_cut(s));
        return -1;
    }
    if (colon[1] == 0) {
        cli_err("%s: '%s' has no port after ':'; give HOST:PORT\n", what, s);
        return -1;
    }
    /* Port 0 is "any" to listen on, and no server's port to connect to. */
    if (!listen && strcmp(colon + 1, "0") == 0) {
        cli_err("%s: port 0 is not a server's port\n", what);
        return -1;
    }
    if (cli_number(colon + 1, what, listen ? 0 : 1, 65535, &p) < 0) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port = (uint16_t)p;
    return 0;
}

const char *cli_opt_value(int argc, char **argv, int *i, const char *name, const char *metavar,
                          char *why, size_t cap)
{
    const char *a = argv[*i], *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL, *v;
    char usage[128];

    if (eq) {
        return eq + 1;
    }
    v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (v && strncmp(v, "--", 2) != 0) {
        ++*i;
        return v;
    }
    snprintf(usage, sizeof(usage), "%s%s%s%s", metavar ? ": " : "", metavar ? name : "",
             metavar ? " " : "", metavar ? metavar : "");
    if (!v) {
        snprintf(why, cap, "%s needs a value%s", name, usage);
    } else {
        snprintf(why, cap, "%s needs a value%s (got the option %s; if %s is meant as the value, "
                           "write %s=%s)", name, usage, v, v, name, v);
    }
    return NULL;
}

int cli_negative(const char *s)
{
    size_t n = s && s[0] == '-' ? strlen(s + 1) : 0;

    return n > 0 && strspn(s + 1, "0123456789") == n && strspn(s + 1, "0") != n;
}

int cli_number(const char *s, const char *what, unsigned long long min, unsigned long long max,
               unsigned long long *out)
{
    char *end;
    unsigned long long v;

    if (!s || !*s) {
        cli_err("%s: expected a number in %llu..%llu\n", what, min, max);
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s == '-' || *s == '+' || *s == ' ' || errno || *end || v < min || v > max) {
        cli_err("%s: '%s' is %s: give a whole number in %llu..%llu\n", what, s,
                cli_negative(s) ? "negative"
                : *end || *s == '-' || *s == '+' || *s == ' ' || (errno && errno != ERANGE)
                    ? "not a number"
                    : "out of range",
                min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_size(const char *s, const char *what, unsigned long long min, unsigned long long max,
             unsigned long long *out)
{
    static const char units[] = "KMG";
    const char *u;
    char c;
    size_t n = s ? strspn(s, "0123456789") : 0;
    unsigned long long v;
    unsigned shift;

    /* Plain digits, and what cli_number names better (empty, negative). */
    if (!s || !*s || *s == '-' || (n > 0 && !s[n])) return cli_number(s, what, min, max, out);
    c = s[n] >= 'a' && s[n] <= 'z' ? (char)(s[n] - 'a' + 'A') : s[n]; /* 64m as 64M */
    u = strchr(units, c);
    if (n == 0 || !u || !*u || (s[n + 1] && strcmp(s + n + 1, "iB") != 0)) {
        cli_err("%s: '%s' is not a size: give bytes, or a whole number with K, M or G (KiB, MiB, "
                "GiB) after it, in %llu..%llu bytes\n", what, s, min, max);
        return -1;
    }
    shift = 10u * (unsigned)(u - units + 1);
    errno = 0;
    v = strtoull(s, NULL, 10); /* n digits, then the unit */
    if (errno || v > (max >> shift) || (v << shift) < min) {
        cli_err("%s: '%s' is out of range: give a size in %llu..%llu bytes\n", what, s, min, max);
        return -1;
    }
    *out = v << shift;
    return 0;
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *cli_file_kind(mode_t m)
{
    return text_file_kind(m); /* the server's words for it too */
}

int cli_version_unordered(const char *version)
{
    return text_version_unordered(version) != NULL;
}

void cli_warn_unordered(const char *cmd, const char *version)
{
    const char *why = text_version_unordered(version);

    if (why) {
        fprintf(stderr, "tcpota %s: warning: version '%s' %s: servers offer it to no device"
                        " unless --allow-downgrade\n", cmd, version, why);
    }
}

/* 1 when path is a symbolic link to nothing, its target (cut to cap) in
 * target: "cannot open X: No such file or directory" did not say why. */
static int dangling(const char *path, char *target, size_t cap)
{
    struct stat st;
    ssize_t n;

    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode) || cap == 0) return 0;
    n = readlink(path, target, cap - 1);
    target[n > 0 ? (size_t)n : 0] = 0;
    return 1;
}

/* The first part of path (up to a '/') that exists and is no directory,
 * into part; "a part of it" when none is found (it changed meanwhile). */
static void not_a_dir_on_the_way(const char *path, char *part, size_t cap)
{
    struct stat st;

    for (const char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
        size_t n = (size_t)(s - path);
        if (n >= cap) break;
        memcpy(part, path, n);
        part[n] = '\0';
        if (stat(part, &st) == 0 && !S_ISDIR(st.st_mode)) return;
    }
    snprintf(part, cap, "a part of it");
}

int cli_check_dir(const char *path, const char *what, int missing_ok)
{
    struct stat st;
    char target[1024];

    if (stat(path, &st) < 0) {
        int e = errno;

        if (e == ENOENT && dangling(path, target, sizeof target)) {
            cli_err("%s: %s is a symbolic link to %s, which does not exist; create that folder,"
                    " or give the device's directory\n", what, path, target);
            return -1;
        }
        errno = e;
        if (errno == ENOENT && missing_ok) {
            /* Created later, as one folder: the folder it goes in must be there. */
            char parent[4096];
            const char *slash = strrchr(path, '/');
            size_t n = slash ? (size_t)(slash - path) : 0;
            if (n == 0 || n >= sizeof(parent)) {
                return 0; /* in the current folder, or under / */
            }
            memcpy(parent, path, n);
            parent[n] = 0;
            if (stat(parent, &st) == 0 && S_ISDIR(st.st_mode)) {
                return 0;
            }
            cli_err("%s: %s cannot be created: %s %s; create that folder first "
                            "(mkdir -p %s), or give a path in a folder that exists\n",
                    what, path, parent, errno == ENOENT ? "does not exist" : "is not a folder",
                    parent);
            return -1;
        }
        if (errno == ENOENT) {
            cli_err("%s: %s does not exist; give the device's directory\n", what, path);
        } else if (errno == ENOTDIR) { /* a file on the way: "a.bin/sub" */
            char part[4096];
            not_a_dir_on_the_way(path, part, sizeof part);
            cli_err("%s: %s: %s is not a directory; give the device's directory\n", what, path,
                    part);
        } else {
            cli_err("%s: %s: %s; give the device's directory\n", what, path, strerror(errno));
        }
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_err("%s: %s is not a directory (it is %s); %s takes the directory "
                        "that holds the device's flash files\n",
                what, path, S_ISREG(st.st_mode) ? "a regular file" : cli_file_kind(st.st_mode), what);
        return -1;
    }
    return 0;
}

/* open() of a UNIX socket fails with ENXIO ("No such device or address"),
 * which misleads; name what the path is instead when stat can tell. */
static void open_failed(const char *path, const char *what, int err)
{
    struct stat st;
    char target[1024];

    if (err == ENOENT && dangling(path, target, sizeof target)) {
        cli_err("%s: %s is a symbolic link to %s, which does not exist; give the path of a"
                " file\n", what, path, target);
        return;
    }
    if (err != ENOENT && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        cli_err("%s: %s is not a regular file (it is %s); give the path of a file\n",
                what, path, cli_file_kind(st.st_mode));
        return;
    }
    cli_err("%s: cannot open %s: %s\n", what, path, strerror(err));
}

int cli_open_regular(const char *path, const char *what)
{
    struct stat st;
    int fd, fl;

    if (!what) what = "file";
    if (!path || !*path) {
        cli_err("%s: the file name is empty; give the path of a file\n", what);
        return -1;
    }
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        open_failed(path, what, errno);
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        cli_err("%s: %s: %s\n", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        cli_err("%s: %s is not a regular file (it is %s); give the path of a file\n",
                what, path, cli_file_kind(st.st_mode));
        close(fd);
        return -1;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        cli_err("%s: %s: %s\n", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int cli_warn_if_exposed(const char *path, int fd)
{
    struct stat st;
    mode_t m;
    const char *how, *who;

    if (fstat(fd, &st) < 0 || (st.st_mode & 077) == 0) {
        return 0;
    }
    m = st.st_mode & 07777;
    how = (m & 044) ? "readable" : "writable";
    who = (m & (how[0] == 'r' ? 004 : 002)) ? "others" : "its group";
    cli_err("warning: %s is %s by %s (mode %04o); chmod 600 %s\n", path, how, who,
            (unsigned)m, path);
    return 1;
}

FILE *cli_fopen_regular(const char *path, const char *what)
{
    int fd = cli_open_regular(path, what);
    FILE *f;

    if (fd < 0) {
        return NULL;
    }
    f = fdopen(fd, "r");
    if (!f) {
        cli_err("%s: %s: %s\n", what ? what : "file", path, strerror(errno));
        close(fd);
    }
    return f;
}

/* 1 when dir exists and holds nothing but "." and "..", and `except`
 * when not NULL. */
static int dir_empty_but(const char *dir, const char *except)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d) {
        return 0;
    }
    while (n == 0 && (e = readdir(d)) != NULL) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
             (!except || strcmp(e->d_name, except) != 0);
    }
    closedir(d);
    return n == 0;
}

int cli_dir_empty(const char *dir)
{
    return dir_empty_but(dir, FLASH_LOCK_FILE);
}

int cli_dir_holds_nothing(const char *dir)
{
    return dir_empty_but(dir, NULL);
}

const char *cli_cut(const char *s)
{
    static char slot[CLI_CUT_SLOTS][CLI_CUT_KEEP + 48];
    static unsigned next;
    size_t n = strlen(s);
    char *buf;

    if (n <= CLI_CUT_KEEP) {
        return s;
    }
    buf = slot[next++ % CLI_CUT_SLOTS];
    snprintf(buf, sizeof(slot[0]), "%.*s... (%zu characters)", (int)(CLI_CUT_KEEP - 16), s, n);
    return buf;
}

const char *cli_shell_word(const char *s, char *buf, size_t cap)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                               "._-+=:,@%/";
    size_t n = 0;

    if (*s && s[strspn(s, safe)] == 0) {
        snprintf(buf, cap, "%s", s);
        return buf;
    }
    /* n + 5: room for the longest piece ('\'') and the closing quote */
    for (buf[n++] = '\''; *s && n + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n++] = '\'';
    buf[n < cap ? n : cap - 1] = 0;
    return buf;
}

const char *cli_shell_opt(const char *opt, const char *value, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s%s", opt, strncmp(value, "--", 2) == 0 ? "=" : " ");

    if (n < 0 || (size_t)n + 8 > cap) return buf; /* no room for the value: cut short */
    cli_shell_word(value, buf + n, cap - (size_t)n);
    return buf;
}

/* Empties the directory open as fd (which it closes), depth first; a
 * symbolic link is removed, never followed. 0 or a negative errno. */
static int empty_dir(int fd, unsigned depth)
{
    DIR *d = fdopendir(fd);
    struct dirent *e;
    int rc = 0;

    if (!d) {
        rc = -errno;
        close(fd);
        return rc;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        int sub;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = -errno;
        } else if (depth >= 16) { /* deeper than anything serve makes: not ours */
            rc = -ELOOP;
        } else if ((sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)) < 0) {
            rc = -errno;
        } else if ((rc = empty_dir(sub, depth + 1)) == 0 &&
                   unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0) {
            rc = -errno;
        }
    }
    closedir(d);
    return rc;
}

int cli_empty_tree(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);

    return fd < 0 ? -errno : empty_dir(fd, 0);
}

int cli_remove_tree(const char *dir)
{
    int rc = cli_empty_tree(dir);

    if (rc != 0) return rc;
    return rmdir(dir) == 0 ? 0 : -errno;
}
