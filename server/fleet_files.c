/* fleet_files.c - the files of --data are the server's user's alone
 * (fleet_files.h). */
#include "fleet_files.h"
#include "store.h" /* struct store_image */
#include "text.h" /* text_file_kind */
#include "tcpota/codec.h" /* TCPOTA_ID_LEN */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILES_OTHERS (S_IRWXG | S_IRWXO)

/* What the server keeps at the top of --data, besides images/ and the
 * token (which api.c refuses rather than mends). */
static const char *const top_files[] = {FLEET_DB_FILE, FLEET_DB_FILE "-wal", FLEET_DB_FILE "-shm",
                                        FLEET_LOCK_FILE, FLEET_NODE_FILE};

int fleet_files_own(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(top_files) / sizeof(top_files[0]); i++) {
        if (strcmp(name, top_files[i]) == 0) return 1;
    }
    return strcmp(name, FLEET_IMAGES_DIR) == 0 || strcmp(name, FLEET_TOKEN_FILE) == 0;
}

/* path (a directory when dir, else a regular file) private when others may
 * reach it; not through a link (left as it is). Another kind of file there
 * is refused (a trial's FIFO as tcpota.lock gave "Invalid argument"; a file
 * named images/ was made 0644 -> 0600, then the start failed); check: only
 * that, so that a first pass refuses before anything is changed (a review:
 * tcpota.db was made private, then the FIFO after it refused). Returns 1
 * changed (*was: its mode before), 0 nothing to do, -1 with err. */
static int make_private(const char *path, int dir, int check, unsigned *was, char *err,
                        size_t errlen)
{
    struct stat sb;
    mode_t want;

    if (lstat(path, &sb) != 0 || S_ISLNK(sb.st_mode)) {
        return 0;
    }
    if (dir ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s is %s, where tcpota serve keeps %s; move it away", path,
                 text_file_kind(sb.st_mode), dir ? "a directory" : "a file of its own");
        return -1;
    }
    if (check || (sb.st_mode & FILES_OTHERS) == 0) {
        return 0;
    }
    want = S_ISDIR(sb.st_mode) ? 0700 : 0600;
    *was = (unsigned)(sb.st_mode & 07777);
    if (chmod(path, want) != 0) {
        snprintf(err, errlen, "%s may be read by other users (mode %04o) and cannot be made the"
                 " server's alone (%s); chmod %o %s", path, *was, strerror(errno),
                 (unsigned)want, path);
        return -1;
    }
    return 1;
}

/* Appends "NAME (0644)" to said, comma-separated. */
static void add_said(char *said, size_t saidlen, const char *name, unsigned was)
{
    size_t len = strlen(said);

    if (len < saidlen) {
        snprintf(said + len, saidlen - len, "%s%s (%04o)", len ? ", " : "", name, was);
    }
}

const char *fleet_files_owner_hint(int err_no, const char *path, const char *dir, char *buf,
                                   size_t cap)
{
    struct stat sb;
    struct passwd *pw;
    char owner[64], me[64];
    uid_t uid = geteuid();

    buf[0] = '\0';
    if ((err_no != EACCES && err_no != EPERM) || stat(path, &sb) != 0 || sb.st_uid == uid) {
        return buf;
    }
    pw = getpwuid(sb.st_uid);
    snprintf(owner, sizeof(owner), "%s", pw ? pw->pw_name : "?");
    pw = getpwuid(uid);
    snprintf(me, sizeof(me), "%s", pw ? pw->pw_name : "?");
    /* A restore by root, a service running as its own user (an operations
     * trial got "Permission denied" alone). */
    snprintf(buf, cap, "; it belongs to user %s (uid %u) and tcpota serve runs as user %s (uid %u):"
             " chown -R %s %s, or run the server as %s", owner, (unsigned)sb.st_uid, me,
             (unsigned)uid, me, dir, owner);
    return buf;
}

int fleet_files_is_node(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/" FLEET_NODE_FILE, dir);
    return lstat(path, &st) == 0;
}

int fleet_files_mark_node(const char *dir, char *err, size_t errlen)
{
    static const char line[] = "a tcpota serve --db node's image cache: start it with --db\n";
    char path[PATH_MAX];
    int fd, ok;

    snprintf(path, sizeof(path), "%s/" FLEET_NODE_FILE, dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        return 0;
    }
    ok = fd >= 0 && write(fd, line, sizeof(line) - 1) == (ssize_t)(sizeof(line) - 1);
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s (it tells a start without --db that this is"
                 " a node's directory)", path, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return ok ? 0 : -1;
}

int fleet_files_image_name(const char *name)
{
    return strlen(name) == 2 * TCPOTA_ID_LEN &&
           strspn(name, "0123456789abcdef") == 2 * TCPOTA_ID_LEN;
}

/* Adds one name to a gaps list ("a, b, ..."), the first FLEET_GAPS_NAMED
 * only; *n counts them all. */
static void gaps_add(char *buf, size_t cap, unsigned *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void gaps_add(char *buf, size_t cap, unsigned *n, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;

    if ((*n)++ >= FLEET_GAPS_NAMED || len + 3 >= cap) {
        return;
    }
    if (len) {
        len += (size_t)snprintf(buf + len, cap - len, ", ");
    }
    va_start(ap, fmt);
    (void)vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

static void gaps_more(char *buf, size_t cap, unsigned n)
{
    size_t len = strlen(buf);

    if (n > FLEET_GAPS_NAMED && len < cap) {
        snprintf(buf + len, cap - len, " and %u more", n - FLEET_GAPS_NAMED);
    }
}

static int cmp_hex(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int fleet_files_image_gaps(const char *images, const struct store_image *rows, size_t n,
                           struct fleet_files_gaps *g)
{
    const char **ids = malloc((n ? n : 1) * sizeof(*ids));
    struct dirent *e;
    struct stat sb;
    size_t i;
    DIR *d;

    memset(g, 0, sizeof(*g));
    for (i = 0; i < n; i++) {
        const struct store_image *si = &rows[i];

        /* stat, not lstat: an image file that is a link is served
         * (image_open follows it), so it is not missing (a review). */
        if (stat(si->path, &sb) != 0) {
            gaps_add(g->missing, sizeof(g->missing), &g->nmissing, "%.16s... (%s, %s)", si->idhex,
                     si->version, errno == ENOENT ? "no file" : strerror(errno));
        } else if (!S_ISREG(sb.st_mode)) {
            gaps_add(g->missing, sizeof(g->missing), &g->nmissing, "%.16s... (%s, %s)", si->idhex,
                     si->version, text_file_kind(sb.st_mode));
        } else if ((uint64_t)sb.st_size != si->size) {
            gaps_add(g->missing, sizeof(g->missing), &g->nmissing,
                     "%.16s... (%s, %llu bytes where it has %u)", si->idhex, si->version,
                     (unsigned long long)sb.st_size, (unsigned)si->size);
        }
        if (ids) {
            ids[i] = si->idhex;
        }
    }
    gaps_more(g->missing, sizeof(g->missing), g->nmissing);
    if (!ids || !(d = opendir(images))) {
        free(ids);
        return -1;
    }
    qsort(ids, n, sizeof(*ids), cmp_hex);
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;

        if (fleet_files_image_name(name) && !bsearch(&name, ids, n, sizeof(*ids), cmp_hex)) {
            gaps_add(g->extra, sizeof(g->extra), &g->nextra, "%.16s...", name);
        }
    }
    closedir(d);
    free(ids);
    gaps_more(g->extra, sizeof(g->extra), g->nextra);
    return 0;
}

/* The image files in images/ (their directory made private first). */
static int images_private(const char *images, int check, unsigned *n, unsigned *was, char *err,
                          size_t errlen)
{
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(images);
    int rc = 0;

    for (*n = 0; d && rc >= 0 && (e = readdir(d)) != NULL;) {
        /* Another program's file there is not the server's to change (a
         * trial: a photo in a --data given by mistake was made 0600); its
         * own temporary files are 0600 already. */
        if (!fleet_files_image_name(e->d_name)) {
            continue;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", images, e->d_name) >= sizeof(path)) {
            continue;
        }
        if ((rc = make_private(path, 0, check, was, err, errlen)) > 0) {
            (*n)++;
        }
    }
    if (d) {
        closedir(d);
    }
    return rc < 0 ? -1 : 0;
}

/* One pass of fleet_files_private: check, or make private and say so. */
static int files_pass(const char *dir, int check, char *said, size_t saidlen, char *err,
                      size_t errlen)
{
    char path[PATH_MAX];
    unsigned was = 0, nimg = 0;
    int changed = 0, rc;
    size_t i;

    said[0] = '\0';
    for (i = 0; i < sizeof(top_files) / sizeof(top_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, top_files[i]);
        if ((rc = make_private(path, 0, check, &was, err, errlen)) < 0) {
            return -1;
        }
        if (rc > 0) {
            add_said(said, saidlen, top_files[i], was);
            changed++;
        }
    }
    snprintf(path, sizeof(path), "%s/" FLEET_IMAGES_DIR, dir);
    if ((rc = make_private(path, 1, check, &was, err, errlen)) < 0) {
        return -1;
    }
    if (rc > 0) {
        add_said(said, saidlen, "images/", was);
        changed++;
    }
    if (images_private(path, check, &nimg, &was, err, errlen) < 0) {
        return -1;
    }
    if (nimg) {
        size_t len = strlen(said);
        if (len < saidlen) {
            snprintf(said + len, saidlen - len, "%s%u file%s in images/", len ? ", " : "", nimg,
                     nimg == 1 ? "" : "s");
        }
        changed += (int)nimg;
    }
    return changed;
}

int fleet_files_private(const char *dir, char *said, size_t saidlen, char *err, size_t errlen)
{
    said[0] = '\0';
    return files_pass(dir, 1, said, saidlen, err, errlen) < 0
               ? -1
               : files_pass(dir, 0, said, saidlen, err, errlen);
}

/* err: who holds the lock of fd (dir's), from the pid written in it. */
static void in_use(int fd, const char *dir, char *err, size_t errlen)
{
    char pid[32];
    ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);

    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    snprintf(err, errlen, "%s is in use by another %s (pid %s); stop it or use another --data",
             dir, fleet_lock_holder(pid), pid[0] ? pid : "unknown");
}

int fleet_lock_held(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int fd, held = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, FLEET_LOCK_FILE) >= sizeof(path) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
        return 0;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        in_use(fd, dir, err, errlen);
        held = 1;
    }
    close(fd); /* releases a shared lock taken */
    return held;
}

int fleet_lock_take(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX], pid[32];
    int fd, len;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, FLEET_LOCK_FILE) >= sizeof(path)) {
        snprintf(err, errlen, "the data directory path is too long");
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0 && errno == ELOOP) {
        /* Followed, the server would truncate the file it names and write
         * its pid there. */
        snprintf(err, errlen, "%s is a symbolic link, not the server's own lock file; remove it",
                 path);
        return -1;
    }
    if (fd < 0) {
        int e = errno;
        char hint[FLEET_OWNER_HINT_MAX];
        snprintf(err, errlen, "cannot open %s: %s%s", path, strerror(e),
                 fleet_files_owner_hint(e, path, dir, hint, sizeof(hint)));
        return -1;
    }
    /* Once more after a moment: another server starting here may hold
     * the lock shared for an instant (fleet_lock_held), not for its life. */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 &&
        (nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL), flock(fd, LOCK_EX | LOCK_NB) != 0)) {
        in_use(fd, dir, err, errlen);
        close(fd); /* not ours: its pid stays */
        return -1;
    }
    len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        fleet_lock_release(fd);
        return -1;
    }
    return fd;
}

const char *fleet_lock_holder(const char *pid)
{
    char path[64], args[PATH_MAX + 16]; /* argv[0], as long as a path, then argv[1] */
    ssize_t n = 0;
    size_t first;
    int fd;

    if (pid[0] && strspn(pid, "0123456789") == strlen(pid) && strlen(pid) < 20) {
        snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
            n = read(fd, args, sizeof(args) - 1);
            close(fd);
        }
    }
    args[n > 0 ? n : 0] = '\0';
    first = strlen(args); /* argv[0]; argv[1] follows its NUL */
    if (n > 0 && (size_t)n > first + 1) {
        if (strcmp(args + first + 1, "serve") == 0) return "tcpota serve";
        if (strcmp(args + first + 1, "device") == 0) return "tcpota device";
    }
    return "tcpota process";
}

void fleet_lock_release(int fd)
{
    if (fd < 0) {
        return;
    }
    /* Our pid goes with the lock: a script that signals $(cat
     * DIR/tcpota.lock) must not reach a process that took the pid since. */
    (void)!ftruncate(fd, 0); /* failing, the pid stays (stale) */
    close(fd);               /* releases the flock */
}
