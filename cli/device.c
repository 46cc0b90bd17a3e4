/*
 * device.c - `tcpota device`: a host process that behaves like an ESP32
 * running tcpota, and `tcpota device status`.
 *
 * The device keeps its flash in a directory (ports/posix) and drives the
 * sans-I/O session of core/device.c over one TCP connection at a time:
 * boot (bootloader, then the health-check decision), connect, feed every
 * received byte to the session and send what it queues, reconnect with
 * backoff after a failure, and "reboot" after an update so that the next
 * HELLO carries the outcome. It may be SIGKILLed at any moment: all state
 * that matters lives in DIR and is written by the core and the port, so a
 * restart with the same DIR resumes from the last durable point. Nothing
 * here ever erases or rewrites DIR by itself.
 *
 * The socket side of one connection (connect with a timeout, poll, feed,
 * flush, tick) is ports/common/tcpota_client.c and the reconnect policy
 * (backoff, attempts without progress, giving up) is
 * ports/common/tcpota_runner.c, both shared with the ESP-IDF component;
 * this file adds the options, the signals, TLS, logging and the emulated
 * reboot.
 *
 * `tcpota device status` is cli/device_status.c.
 *
 * The options and their parser are cli/device_opts.c.
 *
 * Sections: signals; logging; flash and boot; network helpers;
 * one connection; the runner's callbacks; the connection loop;
 * statistics; entry point.
 */
#include "cli.h"
#include "device_ident.h"
#include "device_opts.h"
#include "fleet_files.h" /* fleet_lock_holder */
#include "keys.h"
#include "posix_port.h"
#include "progress.h"
#include "text.h" /* text_version_unordered */
#include "tls.h"
#include "tcpota/codec.h"
#include "tcpota_client.h"
#include "tcpota_runner.h"
#include "tcpota/crc32c.h"
#include "tcpota/device.h"
#include "tcpota/tcpota.h"
#include "tcpota/version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__)
#define DEV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DEV_PRINTF(f, a)
#endif

/* The server sends 4096-byte DATA chunks: payload 4 + 4096, frame + 8,
 * so 4108 bytes hold the largest frame; HELLO announces 4100. */
#define RX_CAP (4096u + 12u)
#define TX_CAP 512u
#define ID_SHOWN_BYTES 6u /* an image named by 12 hex digits, as the fleet's logs name it */
#define NET_BUF (16u * 1024u)
/* Feed no more input while this much output waits: the session's replies
 * (ACK, PONG, COMPLETE, ERROR) must always find room in the tx buffer. */
#define TX_HIGH (TX_CAP / 2u)
#define CONNECT_MAX_MS 10000u /* cap of one connect() wait */
#define FLUSH_MS 2000u        /* best effort for the last frames before close */

/* ---- signals --------------------------------------------------------- */

/* The handler only records the signal and wakes poll() through a pipe, so
 * a signal that arrives just before poll() is never missed. */
static volatile sig_atomic_t g_signal;
static int g_wake[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;

    g_signal = sig;
    if (g_wake[1] >= 0) {
        ssize_t n = write(g_wake[1], "x", 1);
        (void)n; /* a full pipe already wakes poll() */
    }
    errno = saved;
}

/* Empties the wake-up pipe, so that poll() does not keep reporting it. */
static void wake_drain(void)
{
    char buf[16];

    while (g_wake[0] >= 0 && read(g_wake[0], buf, sizeof(buf)) > 0) {
    }
}

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        return -1;
    }
    return 0;
}

static int signals_install(void)
{
    struct sigaction sa;

    if (pipe(g_wake) < 0 || set_nonblock_cloexec(g_wake[0]) < 0 ||
        set_nonblock_cloexec(g_wake[1]) < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() and connect() return EINTR */
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        return -1;
    }
    sa.sa_handler = SIG_IGN;
    /* SIGUSR1 means nothing to a device, but it is what a server is sent
     * for its summary, and a `pkill -USR1 tcpota` meant for one reaches
     * every device on the host too: its default action would end an update
     * half-way (exit 138). SIGHUP keeps its default: a hangup ends a
     * foreground program, and DIR resumes from its last durable point. */
    if (sigaction(SIGPIPE, &sa, NULL) < 0) {
        return -1;
    }
    return sigaction(SIGUSR1, &sa, NULL);
}

static void signals_remove(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    for (int i = 0; i < 2; i++) {
        if (g_wake[i] >= 0) {
            close(g_wake[i]);
            g_wake[i] = -1;
        }
    }
}

/* ---- state ----------------------------------------------------------- */

/* Counters for the stats line printed at exit. */
struct stats {
    uint8_t image_id[TCPOTA_ID_LEN]; /* image the counters below describe */
    int have_image;
    uint32_t image_size;
    uint32_t base;    /* offset the first ACCEPT of this process started at */
    uint32_t max_pos; /* highest offset this process wrote up to */
    uint64_t whole;   /* bytes needed by earlier images written to their end */
    uint64_t written; /* image bytes written to flash by this process */
    unsigned connections;
    uint64_t stale_frames; /* from sessions already replaced by a reboot */
    int tracking;          /* this connection accepted an offer */
    uint32_t last_pos;     /* session write position already counted */
};

struct device {
    struct options o;
    char id[TCPOTA_MAX_STR + 1];
    char prefix[TCPOTA_MAX_STR + 16]; /* "device ID: " */

    struct tcpota_posix_dev flash;
    int flash_open;
    int lock_fd; /* DIR/tcpota.lock, held for the process's life; -1 before */
    int lock_made; /* this run made the lock file */
    struct tcpota_port port;
    int created;                /* flash_open made DIR a new device in this run */
    struct device_ident ident;  /* the id and model DIR's device runs as */
    struct tcpota_posix_slot_info running;
    char version[TCPOTA_POSIX_VERSION_MAX + 1];

    /* The last boot of this process rolled a new image back: report it on
     * the next connection and stop, else the server offers it again. */
    int rollback;
    const char *rollback_why;
    char rejected[TCPOTA_POSIX_VERSION_MAX + 1];

    struct tcpota_dev dev;
    uint8_t rx[RX_CAP];
    uint8_t tx[TX_CAP];
    uint8_t net[NET_BUF];
    struct tcpota_client cl; /* the socket side of one connection */
    struct tcpota_runner runner; /* connect, back off, give up */
    int told_unreachable;    /* "cannot reach the server" said since the last connect */
    int tls_failed;          /* the last attempt's TLS handshake (or binding) failed */
    int tls_refused;         /* then cli_tls_handshake's return (CLI_TLS_NOT_TLS, ...) */
    int connected;           /* the current (or last) attempt got a connection */
    int answered;            /* ... and bytes from the server */
    uint32_t declined_size;  /* size of the last offer declined */
    struct cli_tls tls;      /* with --ca */
    char tls_session[4096];  /* DIR/tls-session: the TLS session kept for the next connection */
    int had_report;          /* this connection's HELLO carries a report */
    struct tcpota_dev_resume kept; /* the resume record as this connection began */

    struct progress prog;
    int quarter; /* last 25% step logged as a checkpoint */
    struct stats st;
    char err[CLI_TLS_TODO_LEN + 512]; /* why the last attempt failed (with a --ca path) */
    char detail[TCPOTA_POSIX_DETAIL_LEN];
};

/* ---- logging --------------------------------------------------------- */

static void vsay(struct device *dv, const char *fmt, va_list ap)
{
    char line[4096];
    size_t p = strlen(dv->prefix);
    va_list aq;
    int n = -1;

    progress_clear(&dv->prog);
    /* One write a line: devices (and make demo's proxy) sharing a terminal
     * or a log had their lines cut into each other (a new user's trial:
     * "running 2.0.0proxy: conn 4 closed"). */
    va_copy(aq, ap);
    if (p < sizeof(line) - 1) {
        n = vsnprintf(line + p, sizeof(line) - p - 1, fmt, aq);
    }
    va_end(aq);
    if (n >= 0 && (size_t)n < sizeof(line) - p - 1) {
        memcpy(line, dv->prefix, p);
        line[p + (size_t)n] = '\n';
        fwrite(line, 1, p + (size_t)n + 1, stderr);
        return;
    }
    fputs(dv->prefix, stderr); /* longer than any line it says: in pieces */
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* An informational line: dropped by --quiet. */
static void DEV_PRINTF(2, 3) info(struct device *dv, const char *fmt, ...)
{
    va_list ap;

    if (dv->o.quiet) {
        return;
    }
    va_start(ap, fmt);
    vsay(dv, fmt, ap);
    va_end(ap);
}

/* An error or a final result: always printed. */
static void DEV_PRINTF(2, 3) say(struct device *dv, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(dv, fmt, ap);
    va_end(ap);
}

/* Logs a failure of the flash port with the port's own detail. */
/* rc as a failure of the flash emulator's files: TCPOTA_ERR_IO is the
 * core's "storage or transport failure", and no transport is involved (a
 * trial read it of a file cut short). */
static const char *flash_strerror(int rc)
{
    return rc == TCPOTA_ERR_IO ? "flash file failure" : tcpota_strerror(rc);
}

static int flash_fail(struct device *dv, const char *what, int rc)
{
    const char *detail = tcpota_posix_strerror_detail(&dv->flash);

    say(dv, "%s failed: %s%s%s%s", what, flash_strerror(rc), *detail ? " (" : "", detail,
        *detail ? ")" : "");
    return -1;
}

/* What the session receives, through the core's accessor. */
static struct tcpota_dev_transfer xfer(const struct device *dv)
{
    struct tcpota_dev_transfer t;
    tcpota_dev_get_transfer(&dv->dev, &t);
    return t;
}

/* ---- flash and boot -------------------------------------------------- */

/* The default id must stay the same across restarts with the same DIR, so
 * it hashes the canonical path (FNV-1a), computed once DIR exists. */
static void default_id(struct device *dv)
{
    char *abs = realpath(dv->o.dir, NULL);
    const char *p = abs ? abs : dv->o.dir;
    uint32_t h = 2166136261u;

    for (; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    free(abs);
    snprintf(dv->id, sizeof(dv->id), "dev-%08lx", (unsigned long)h);
}

static void set_prefix(struct device *dv, const char *id)
{
    snprintf(dv->prefix, sizeof(dv->prefix), "device %s: ", id);
}


/* Takes DIR/FLASH_LOCK_FILE (flock) for this process's life, as `tcpota
 * serve` takes its --data, and writes our pid in it. Two devices on one
 * DIR write the same slot, otadata and NVS in turn: the one that ends
 * second finds an image it did not write, takes it for one the
 * bootloader rejected and tells the server, which then holds the image
 * back from this device. So the second stops here, before it writes
 * anything, and names the first. DIR is made first when missing (the
 * lock lives in it); a reboot keeps the lock. `tcpota device status`
 * only reads and takes no lock. Returns 0 or -1 (said). */
static int flash_lock(struct device *dv)
{
    char path[4096], pid[32];
    ssize_t n;
    int len, made = 0, tries = 0;
    struct stat held, named;

    if (dv->lock_fd >= 0) {
        return 0;
    }
    if (mkdir(dv->o.dir, 0755) == 0) {
        made = 1;
    } else if (errno != EEXIST) {
        say(dv, "cannot create %s: %s", dv->o.dir, strerror(errno));
        return -1;
    }
    /* A DIR this run made is a creation from its first file on: killed
     * before the creation began, it held only the lock, and the same
     * command was then refused as "holds no device" (a trial, 1 kill in
     * 30); a second run that takes the lock first creates the device. */
    if (made && tcpota_posix_creation_begin(dv->o.dir) < 0) {
        say(dv, "cannot write in %s: %s", dv->o.dir, strerror(errno));
        (void)rmdir(dv->o.dir);
        return -1;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dv->o.dir, FLASH_LOCK_FILE) >=
        sizeof(path)) {
        say(dv, "%s: path too long; give a shorter --flash", dv->o.dir);
        return -1;
    }
again:
    dv->lock_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    dv->lock_made = dv->lock_fd >= 0;
    if (dv->lock_fd < 0 && errno == EEXIST) {
        dv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
    }
    if (dv->lock_fd < 0 && (errno == EISDIR || errno == ELOOP)) {
        say(dv, "%s is %s, not tcpota's lock file; remove it", path,
            errno == EISDIR ? "a directory" : "a symbolic link");
        return -1;
    }
    if (dv->lock_fd < 0) {
        say(dv, "cannot open %s: %s; the device writes its directory, so it must be writable",
            path, strerror(errno));
        if (made) { /* as it was: the next run starts as this one did */
            (void)tcpota_posix_creation_abandon(dv->o.dir);
            (void)rmdir(dv->o.dir);
        }
        return -1;
    }
    {
        struct stat st;
        if (fstat(dv->lock_fd, &st) == 0 && !S_ISREG(st.st_mode)) {
            say(dv, "%s is %s, not tcpota's lock file; remove it", path, cli_file_kind(st.st_mode));
            close(dv->lock_fd);
            dv->lock_fd = -1;
            return -1;
        }
    }
    if (flock(dv->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        n = pread(dv->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        say(dv, "%s is in use by another %s (pid %s); stop it or use another --flash",
            dv->o.dir, fleet_lock_holder(pid), pid[0] ? pid : "unknown");
        close(dv->lock_fd); /* not ours: flash_unlock must not empty it */
        dv->lock_fd = -1;
        return -1;
    }
    /* Locked a file that a run refused here removed after this one opened
     * it (flash_unlock): the name is another file now, which a third run
     * may lock too. Open the name again. */
    if (fstat(dv->lock_fd, &held) != 0 || stat(path, &named) != 0 || held.st_ino != named.st_ino ||
        held.st_dev != named.st_dev) {
        close(dv->lock_fd);
        dv->lock_fd = -1;
        if (++tries < 3) {
            goto again;
        }
        say(dv, "%s was removed or replaced three times while this run took it; is another "
                "tcpota device starting there? run again", path);
        return -1;
    }
    len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(dv->lock_fd, 0) != 0 || pwrite(dv->lock_fd, pid, (size_t)len, 0) != len) {
        say(dv, "cannot write %s: %s", path, strerror(errno));
        if (made) {
            /* Nothing of a device yet: the next run starts as this one did
             * (not in an "existing empty directory" that needs --init). */
            (void)unlink(path);
            (void)tcpota_posix_creation_abandon(dv->o.dir);
            (void)rmdir(dv->o.dir);
        }
        close(dv->lock_fd);
        dv->lock_fd = -1;
        return -1;
    }
    return 0;
}

/* The pid goes with the lock: a script that signals $(cat DIR/tcpota.lock)
 * must not reach a process that took the pid since. */
static void flash_unlock(struct device *dv)
{
    char path[4096];

    /* A lock this run made in a folder it found holding no device, and
     * left so: gone with the run (a refused run left tcpota.lock in any
     * folder given, / included: a trial). */
    if (dv->lock_fd >= 0 && dv->lock_made && !tcpota_posix_holds_device_files(dv->o.dir) &&
        (size_t)snprintf(path, sizeof(path), "%s/%s", dv->o.dir, FLASH_LOCK_FILE) < sizeof(path)) {
        (void)unlink(path);
    }
    if (dv->lock_fd >= 0) {
        (void)ftruncate(dv->lock_fd, 0);
        close(dv->lock_fd); /* releases the flock */
        dv->lock_fd = -1;
    }
}

/* DIR/FLASH_NEW_FILE: a creation of this run's kind not finished yet. The
 * port's files are complete before the id, model, factory version and
 * trusted keys are recorded in them (device_ident, device_trust): killed in
 * between, the same command refused the device as "made by an older
 * tcpota device", or ran it without the keys given (a trial). The mark goes
 * once they are recorded (new_mark_done). */
#define FLASH_NEW_FILE "tcpota.new"

static int new_mark_path(const struct device *dv, char *path, size_t cap)
{
    return (size_t)snprintf(path, cap, "%s/" FLASH_NEW_FILE, dv->o.dir) < cap ? 0 : -1;
}

static int new_mark_present(const struct device *dv)
{
    char path[4096];
    struct stat st;

    return new_mark_path(dv, path, sizeof(path)) == 0 && lstat(path, &st) == 0;
}

static int new_mark_make(struct device *dv)
{
    char path[4096];
    int fd = new_mark_path(dv, path, sizeof(path)) == 0
                 ? open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)
                 : -1;

    if (fd < 0) {
        say(dv, "cannot write in %s: %s", dv->o.dir, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

static void new_mark_done(const struct device *dv)
{
    char path[4096];

    if (new_mark_path(dv, path, sizeof(path)) == 0) {
        (void)unlink(path);
    }
}

/* Opens DIR as it is. A new device is created only where DIR does not
 * exist, or with --init: a directory that lost a file must not silently
 * become a blank device (losing the installed image and the anti-rollback
 * counter). --slot-size and --factory-version only shape a new device.
 * Returns 0, -2 when DIR is not a directory and cannot become one, or the
 * flags do not fit it (an empty one without --init, --init on one not
 * empty): a bad argument; or -1 (said). */
static int flash_open(struct device *dv, uint32_t slot_size)
{
    struct stat st;
    int exists = stat(dv->o.dir, &st) == 0, create, rc, pending;

    if (cli_check_dir(dv->o.dir, "--flash", 1) < 0) {
        return -2; /* not a directory, or not one that can be made: a bad argument */
    }
    pending = exists && new_mark_present(dv);
    if (dv->o.init && exists && !cli_dir_empty(dv->o.dir) &&
        !tcpota_posix_creation_cut_short(dv->o.dir) && !pending) {
        /* --init never runs (or blanks) what a directory already holds. */
        char otadata[PATH_MAX];
        struct stat ost;
        int device = (size_t)snprintf(otadata, sizeof(otadata), "%s/" TCPOTA_POSIX_OTADATA_FILE,
                                      dv->o.dir) < sizeof(otadata) &&
                     lstat(otadata, &ost) == 0;
        say(dv, "--init starts a new device in an empty directory, and %s is not empty; give "
                "another --flash%s", dv->o.dir,
            device ? ", or leave out --init to run the device it holds"
                   : " (this one holds no device: no " TCPOTA_POSIX_OTADATA_FILE ")");
        return -2; /* the flags do not fit the directory: a usage error */
    }
    if (flash_lock(dv) < 0) {
        return -1;
    }
    /* A creation cut short (a full disk, a kill) goes on: nothing in DIR
     * was ever a device's. */
    create = dv->o.init || !exists || tcpota_posix_creation_cut_short(dv->o.dir) ||
             (pending && !tcpota_posix_holds_device_files(dv->o.dir));
    if (create && !pending && new_mark_make(dv) < 0) {
        return -1;
    }
    rc = tcpota_posix_open(&dv->flash, dv->o.dir, create, create ? slot_size : 0, dv->o.factory);
    /* A creation whose records were not made yet is finished as one. */
    dv->created = (create || pending) && rc == 0;

    if (rc == TCPOTA_ERR_NOENT && cli_dir_empty(dv->o.dir)) {
        say(dv, "%s holds no device; start a new device there with --init", dv->o.dir);
        return -2;
    }
    if (rc == TCPOTA_ERR_NOENT && !tcpota_posix_holds_device_files(dv->o.dir)) {
        say(dv, "%s " FLASH_NOT_A_DEVICE, dv->o.dir);
        return -2; /* the wrong --flash, as an empty one is */
    }
    if (rc == TCPOTA_ERR_NOENT) {
        say(dv, "%s; " FLASH_MISSING_HINT, tcpota_posix_strerror_detail(&dv->flash));
        return -1;
    }
    if (rc < 0 && tcpota_posix_creation_cut_short(dv->o.dir)) {
        say(dv, "creating a new device in %s failed: %s; free space there (its files take twice "
                "the slot size) or mend the cause, and run the same command again: the creation "
                "starts over", dv->o.dir, tcpota_posix_strerror_detail(&dv->flash));
        return -1;
    }
    if (rc == TCPOTA_ERR_DENIED) {
        say(dv, "cannot open the flash files in %s: %s; they are not damaged: give this user"
                " write access to them (their permissions, chattr -i, a mount that is not"
                " read-only) and run again", dv->o.dir, tcpota_posix_strerror_detail(&dv->flash));
        return -1;
    }
    if (rc < 0) {
        (void)flash_fail(dv, "opening the flash", rc);
        say(dv, "%s", FLASH_DAMAGED_HINT);
        return -1;
    }
    dv->flash_open = 1;
    dv->o.init = 0; /* the device exists now: a reboot opens it as it is */
    return 0;
}

static void flash_close(struct device *dv)
{
    if (dv->flash_open) {
        if (tcpota_posix_close(&dv->flash) < 0) {
            (void)flash_fail(dv, "closing the flash", TCPOTA_ERR_IO);
        }
        dv->flash_open = 0;
    }
}

static void copy_version(char *dst, const char *src)
{
    size_t n = strnlen(src, TCPOTA_POSIX_VERSION_MAX);

    memcpy(dst, src, n);
    dst[n] = 0;
}

/* A reset: the bootloader picks the slot, then the application runs its
 * health check and confirms or rejects a pending image (a rejection is a
 * second reset into the previous image). Returns 0 or -1 (logged). */
static int boot_device(struct device *dv)
{
    struct tcpota_posix_slot_info first;
    int rc, verdict;

    rc = tcpota_posix_boot(&dv->flash);
    if (rc == 0) {
        rc = tcpota_posix_running(&dv->flash, &first);
    }
    if (rc == 0) {
        rc = tcpota_posix_port(&dv->flash, &dv->port);
    }
    if (rc < 0) {
        return flash_fail(dv, "bootloader", rc);
    }
    if (first.pending && dv->o.healthy == DEVICE_HEALTH_CRASH) {
        /* A crash or a watchdog before the verdict: a reset, at which the
         * bootloader undoes the pending image (a trial had no way to reach
         * the boot-failed path but to kill the process at a system call). */
        copy_version(dv->rejected, first.version);
        info(dv, "new image %s resets before its health check's verdict (--health crash)",
             dv->rejected);
        if ((rc = tcpota_posix_boot(&dv->flash)) < 0 ||
            (rc = tcpota_posix_running(&dv->flash, &first)) < 0) {
            return flash_fail(dv, "bootloader", rc);
        }
        dv->rollback = 1;
        dv->rollback_why = "reset before its health check's verdict";
    }
    verdict = tcpota_dev_boot(&dv->port, dv->o.healthy == 1);
    if (verdict < 0) {
        return flash_fail(dv, "boot check", verdict);
    }
    if (verdict == 1) {
        copy_version(dv->rejected, first.version);
        info(dv, "new image %s failed its health check: rebooting into the previous image",
             dv->rejected);
        dv->rollback = 1;
        dv->rollback_why = "failed its health check";
        if ((rc = tcpota_posix_boot(&dv->flash)) < 0) {
            return flash_fail(dv, "bootloader", rc);
        }
    }
    if ((rc = tcpota_posix_running(&dv->flash, &dv->running)) < 0) {
        return flash_fail(dv, "reading the running slot", rc);
    }
    copy_version(dv->version, dv->running.version);
    info(dv, "running slot %u, version %s", (unsigned)dv->running.slot, dv->version);
    if (verdict == 1) {
        info(dv, "rolled back to %s", dv->version);
    } else if (first.pending) {
        info(dv, "confirmed new image %s (health check ok)", dv->version);
    } else if (dv->running.refused_now) {
        /* Not at every start after a rollback: the flag stays set. */
        info(dv, "the bootloader refused the other slot (a new image not confirmed, or one whose "
                 "bytes no longer match its hash) and fell back; running %s", dv->version);
    }
    return 0;
}

/* Starts a session for the image that runs now. */
static int session_init(struct device *dv)
{
    struct tcpota_dev_config cfg;
    uint32_t keepalive = dv->o.timeout_ms / 3;
    int rc;

    memset(&cfg, 0, sizeof(cfg));
    cfg.port = &dv->port;
    cfg.device_id = dv->id;
    cfg.model = dv->o.model;
    cfg.version = dv->version;
    /* An empty factory slot runs no image: no id (the hash of nothing
     * was shown by the fleet as the device's running image). */
    cfg.running_id = dv->running.size ? dv->running.sha256 : NULL;
    cfg.rx_buf = dv->rx;
    cfg.rx_cap = sizeof(dv->rx);
    cfg.tx_buf = dv->tx;
    cfg.tx_cap = sizeof(dv->tx);
    cfg.ack_interval = dv->o.ack_interval;
    /* PING well before the receive timeout, so a quiet server keeps the
     * connection alive with its PONGs. */
    cfg.keepalive_ms = keepalive > 10000 ? 10000 : keepalive ? keepalive : 1;
    cfg.timeout_ms = dv->o.timeout_ms;
    cfg.trusted_keys = (const uint8_t(*)[TCPOTA_PUBKEY_LEN])dv->o.trust;
    cfg.n_trusted_keys = dv->o.ntrust;
    cfg.secret = dv->o.secret_len ? dv->o.secret : NULL;
    cfg.secret_len = dv->o.secret_len;
    dv->st.stale_frames += xfer(dv).stale_frames; /* the old session's count */
    rc = tcpota_dev_init(&dv->dev, &cfg);
    if (rc < 0) {
        return flash_fail(dv, "starting the session", rc);
    }
    if (!dv->o.quiet && xfer(dv).resume.valid && xfer(dv).resume.offset == 0) {
        /* Stopped before its first checkpoint: nothing to resume from. */
        info(dv, "no resume point yet: the %lu-byte image it was getting starts again from"
             " byte 0", (unsigned long)xfer(dv).resume.size);
    } else if (!dv->o.quiet && xfer(dv).resume.valid) {
        info(dv, "resume point: %lu of %lu bytes", (unsigned long)xfer(dv).resume.offset,
             (unsigned long)xfer(dv).resume.size);
    }
    return 0;
}

/* After an update: power-cycle the emulated device as a reset would, boot
 * the new image and start a fresh session from it. */
static int reboot(struct device *dv)
{
    uint8_t installed[TCPOTA_ID_LEN];
    char version[TCPOTA_MAX_NAME + 1];
    struct tcpota_dev_transfer t = xfer(dv);

    memcpy(installed, t.image_id, sizeof(installed));
    snprintf(version, sizeof(version), "%s", t.version);
    info(dv, "rebooting into %s", version);
    flash_close(dv);
    if (flash_open(dv, 0) < 0 || boot_device(dv) < 0) {
        return -1;
    }
    if (!dv->rollback && memcmp(dv->running.sha256, installed, TCPOTA_ID_LEN) != 0) {
        /* The bootloader refused the image: report once, as after a failed
         * health check, rather than fetch it again and again. */
        snprintf(dv->rejected, sizeof(dv->rejected), "%s", version);
        dv->rollback = 1;
        dv->rollback_why = "was rejected by the bootloader";
    }
    return session_init(dv);
}

/* ---- network helpers ------------------------------------------------- */

static uint32_t now32(void)
{
    return (uint32_t)cli_now_ms(); /* the session's clock may wrap */
}

static uint32_t client_now(void *ctx)
{
    (void)ctx;
    return now32();
}

static int client_stop(void *ctx)
{
    (void)ctx;
    return g_signal != 0;
}

static void client_wake(void *ctx)
{
    (void)ctx;
    wake_drain();
}

static int client_input(void *ctx, int rc, const struct tcpota_dev_event *ev);

static long io_recv(void *ctx, void *buf, size_t n)
{
    return cli_tls_recv(&((struct device *)ctx)->tls, buf, n);
}

static long io_send(void *ctx, const void *buf, size_t n)
{
    return cli_tls_send(&((struct device *)ctx)->tls, buf, n);
}

static size_t io_pending(void *ctx)
{
    return cli_tls_pending(&((struct device *)ctx)->tls);
}

/* Sets up the shared socket code for this device: its buffers, the
 * signal pipe as wake-up fd, and the callbacks of this file. */
/* Returns 0, or the exit code after a message: 2 for an unusable --ca. */
static int client_init(struct device *dv)
{
    struct tcpota_client_config cc;

    memset(&cc, 0, sizeof(cc));
    cc.dev = &dv->dev;
    cc.net_buf = dv->net;
    cc.net_cap = sizeof(dv->net);
    cc.tx_high = TX_HIGH;
    cc.connect_ms = dv->o.timeout_ms < CONNECT_MAX_MS ? dv->o.timeout_ms : CONNECT_MAX_MS;
    cc.flush_ms = FLUSH_MS;
    cc.wake_fd = g_wake[0];
    cc.err = dv->err;
    cc.err_cap = sizeof(dv->err);
    cc.ctx = dv;
    cc.now_ms = client_now;
    cc.stop_requested = client_stop;
    cc.on_wake = client_wake;
    cc.on_input = client_input;
    if (dv->o.ca) {
        const char *kept = NULL;
        if ((size_t)snprintf(dv->tls_session, sizeof(dv->tls_session), "%s/tls-session",
                             dv->o.dir) < sizeof(dv->tls_session)) {
            kept = dv->tls_session;
        }
        if (cli_tls_init(&dv->tls, dv->o.ca, kept) < 0) {
            return 2;
        }
        cc.io_recv = io_recv;
        cc.io_send = io_send;
        cc.io_pending = io_pending;
    }
    if (tcpota_client_init(&dv->cl, &cc) < 0) {
        fprintf(stderr, "tcpota device: cannot set up the connection\n");
        return 1;
    }
    return 0;
}

/* ---- one connection -------------------------------------------------- */

/* Counts the image bytes the session wrote since the last call: its write
 * position only moves when a DATA frame was written to flash. */
static void count_written(struct device *dv)
{
    struct stats *st = &dv->st;
    uint32_t pos = xfer(dv).pos;

    if (!st->tracking || pos <= st->last_pos) {
        return;
    }
    st->written += pos - st->last_pos;
    st->last_pos = pos;
    if (pos > st->max_pos) {
        st->max_pos = pos;
    }
}

static void on_accepted(struct device *dv, const struct tcpota_dev_event *ev)
{
    struct stats *st = &dv->st;
    struct tcpota_dev_transfer t = xfer(dv);

    if (!st->have_image || st->image_size != ev->size ||
        memcmp(st->image_id, t.image_id, TCPOTA_ID_LEN) != 0) {
        if (st->have_image && st->max_pos >= st->image_size) { /* written whole: not waste */
            st->whole += st->max_pos - st->base;
        }
        memcpy(st->image_id, t.image_id, TCPOTA_ID_LEN);
        st->have_image = 1;
        st->image_size = ev->size;
        st->base = st->max_pos = ev->offset;
    }
    st->tracking = 1;
    st->last_pos = ev->offset;
    info(dv, "offer %s (%lu bytes), starting at %lu", t.version,
         (unsigned long)ev->size, (unsigned long)ev->offset);
    if (ev->offset == 0 && dv->kept.valid && dv->kept.offset > 0) {
        /* The slot is written over: said, or the bytes a run named ("resume
         * point: ...") vanish without a word (a new user's trial). The core
         * resumes the image of its record (this port never refuses its
         * bytes), so an offer from byte 0 over a kept point is another's. */
        char hex[2 * ID_SHOWN_BYTES + 1];

        tcpota_hex(hex, dv->kept.id, ID_SHOWN_BYTES);
        hex[2 * ID_SHOWN_BYTES] = 0;
        info(dv, "the %lu bytes kept of image %s (%lu bytes) are dropped: the server offers "
                 "another image now", (unsigned long)dv->kept.offset, hex,
             (unsigned long)dv->kept.size);
    }
    dv->quarter = ev->size ? (int)((uint64_t)ev->offset * 4u / ev->size) : 4;
    progress_start(&dv->prog, ev->offset, ev->size);
}

static void on_checkpoint(struct device *dv, const struct tcpota_dev_event *ev)
{
    uint32_t size = xfer(dv).size;
    int q = size ? (int)((uint64_t)ev->offset * 4u / size) : 4;

    /* One line per 25%, not one per ACK; none with --progress none. */
    if (size && q > dv->quarter && dv->o.progress != PROGRESS_NONE) {
        dv->quarter = q;
        info(dv, "checkpoint at %lu of %lu bytes (%d%%)", (unsigned long)ev->offset,
             (unsigned long)size, (int)((uint64_t)ev->offset * 100u / size));
    }
}

/* Reacts to one session event. Returns 0 to go on, nonzero to end the
 * connection once a rollback was reported (TCPOTA_RUNNER_ENDED). */
static int on_event(struct device *dv, const struct tcpota_dev_event *ev)
{
    struct tcpota_dev_transfer t = xfer(dv);

    /* The server's decision (NO_UPDATE, or an offer) acknowledges the
     * report: it comes only once the report is stored (and after AUTH). */
    if (dv->had_report && (ev->type == TCPOTA_DEV_EV_UP_TO_DATE ||
                           ev->type == TCPOTA_DEV_EV_ACCEPTED ||
                           ev->type == TCPOTA_DEV_EV_DECLINED)) {
        dv->had_report = 0;
        info(dv, "server received the report of the last update");
        if (dv->rollback) {
            return 1;
        }
    }
    switch (ev->type) {
    case TCPOTA_DEV_EV_ACCEPTED:
        on_accepted(dv, ev);
        break;
    case TCPOTA_DEV_EV_CHECKPOINT:
        on_checkpoint(dv, ev);
        break;
    case TCPOTA_DEV_EV_DECLINED:
        dv->declined_size = ev->size;
        break;
    case TCPOTA_DEV_EV_UPDATED:
        progress_update(&dv->prog, t.pos, t.size);
        info(dv, "verify ok: image %s (%lu bytes) set to boot", t.version, (unsigned long)t.size);
        break;
    default:
        break;
    }
    if (dv->st.tracking && t.state == TCPOTA_DEV_RECEIVING) {
        progress_update(&dv->prog, t.pos, t.size);
    }
    return 0;
}

/* After each tcpota_dev_input() of the shared client: counts the bytes
 * written, says why the session failed (with the flash port's detail when
 * the port failed during this call), or reacts to the event. */
static int client_input(void *ctx, int rc, const struct tcpota_dev_event *ev)
{
    struct device *dv = ctx;
    const char *detail = tcpota_posix_detail_for(&dv->flash, rc);
    int end = 0;

    dv->answered = 1;
    tcpota_runner_note(&dv->runner, rc, ev);
    count_written(dv);
    if (rc < 0) {
        /* The flash emulator's detail when it is new, and the session's own
         * words (the server's ERROR text, a decline's reason). */
        int fresh = strcmp(detail, dv->detail) != 0 && *detail;
        const char *why = tcpota_client_reason(&dv->cl, rc);
        snprintf(dv->err, sizeof(dv->err), "session failed: %s%s%s%s%s%s%s",
                 tcpota_client_origin(&dv->cl), fresh ? flash_strerror(rc) : tcpota_strerror(rc),
                 fresh ? " (" : "",
                 fresh ? detail : "", fresh ? ")" : "", why[0] ? ": " : "", why);
    } else {
        end = on_event(dv, ev);
    }
    /* The next call's failure is told apart from this one's detail. */
    memcpy(dv->detail, tcpota_posix_strerror_detail(&dv->flash), sizeof(dv->detail));
    dv->detail[sizeof(dv->detail) - 1] = 0;
    return end;
}

/* ---- the runner's callbacks ------------------------------------------ */

/* Connects, then speaks TLS with --ca. */
static int runner_connect(void *ctx)
{
    struct device *dv = ctx;
    int rc = tcpota_client_connect(&dv->cl, dv->o.host, dv->o.port, dv->o.server);

    if (g_signal) {
        return TCPOTA_ERR_CANCELED;
    }
    dv->tls_failed = 0;
    /* Inside TLS the answer to a CHALLENGE is bound to this session. A
     * certificate refused is refused again (the runner's DENIED); a
     * handshake cut or timed out may pass next time. */
    if (rc == 0 && dv->o.ca) {
        rc = cli_tls_handshake(&dv->tls, &dv->cl, dv->o.host, dv->o.port, dv->o.timeout_ms,
                               dv->err, sizeof(dv->err));
        if (rc == 0) {
            rc = cli_tls_bind(&dv->tls, &dv->dev, dv->err, sizeof(dv->err));
        }
        if (rc != 0) {
            dv->tls_failed = 1;
            dv->tls_refused = rc;
            return rc == CLI_TLS_CERT_REFUSED || rc == CLI_TLS_NOT_TLS ? TCPOTA_ERR_DENIED
                                                                       : TCPOTA_ERR_PROTO;
        }
    }
    return rc;
}

/* Runs one connection on the connected client until it ends. */
static int runner_run(void *ctx)
{
    struct device *dv = ctx;

    dv->st.tracking = 0;
    dv->had_report = xfer(dv).report_pending; /* HELLO carries it */
    dv->kept = xfer(dv).resume;
    memcpy(dv->detail, tcpota_posix_strerror_detail(&dv->flash), sizeof(dv->detail));
    dv->detail[sizeof(dv->detail) - 1] = 0;
    return tcpota_client_run(&dv->cl);
}

static void runner_close(void *ctx, uint32_t linger_ms)
{
    struct device *dv = ctx;

    if (dv->o.ca) {
        cli_tls_end(&dv->tls);
    }
    tcpota_client_close(&dv->cl, linger_ms);
    progress_clear(&dv->prog);
}

static uint32_t runner_random(void *ctx, uint32_t bound)
{
    (void)ctx;
    return randombytes_uniform(bound);
}

/* Why a connection may end, or time out, before the server sent a byte:
 * what the server knows (its log names it) and the device cannot tell
 * apart. "" when the last attempt got no connection or an answer (an
 * ERROR says why itself). */
/* refetched: image bytes this process wrote beyond what it needed from
 * where it began, i.e. written - (highest offset reached - offset its first
 * ACCEPT of that image started at), summed over the images it wrote. For a
 * completed image the highest offset is the image size, so this is
 * "written - (size - first start)": everything a cut or a reset made this
 * process write twice. An image written to its end and then followed by
 * another (a second update in one run) is needed whole; the bytes of one
 * replaced before its end count as refetched. */
static uint64_t refetched(const struct stats *st)
{
    uint64_t useful = st->whole + (st->have_image ? st->max_pos - st->base : 0);

    return st->written > useful ? st->written - useful : 0;
}

/* Why attempts that wrote image bytes made no progress: each ended before
 * it had written a whole sector past where it began, the least a device
 * keeps of a connection (tcpota_dev_disconnect; a trial's link cut every
 * 14,000 bytes kept nothing while only checkpoints were kept), else "". */
static const char *kept_nothing(const struct device *dv)
{
    static char why[200];
    const struct stats *st = &dv->st;

    if (st->have_image && st->written == 0 && xfer(dv).last_error != TCPOTA_ERR_TIMEDOUT) {
        /* (a trial's cut every 3,000 bytes of 4 KiB frames: no hint; a
         * server that stalls is said by the timeout's own text) */
        return " (no connection carried a whole frame of the image before it ended: the link"
               " drops too soon for any progress)";
    }
    if (!st->have_image || refetched(st) == 0 || st->max_pos - st->base >= TCPOTA_SECTOR_SIZE) {
        return "";
    }
    snprintf(why, sizeof(why), " (each connection ended before it had written a whole %u-byte"
             " flash sector past where it began, the least a device keeps of a connection:"
             " the link drops too soon for any progress)", (unsigned)TCPOTA_SECTOR_SIZE);
    return why;
}

static const char *unanswered(const struct device *dv)
{
    if (!dv->connected || dv->answered) {
        return "";
    }
    if (xfer(dv).last_error == TCPOTA_ERR_TIMEDOUT) {
        return " (the server took the connection but sent nothing: check that --server names its "
               "device port (tcpota serve --listen), not its API or HTTP port; a server at its "
               "limits may also be slow to answer, and a load balancer may have sent it to a "
               "server that hangs)";
    }
    /* A balancer in front with no server up (HAProxy in TCP mode takes
     * the connection and closes it) reads the same (a trial). */
    return dv->o.ca ? " (the server ended the connection before it answered: it may be at its "
                      "connection limit, or refuse this address or device, and its log says "
                      "which; or a balancer in front of it has no server up)"
                    : " (the server ended the connection before it answered: it may be at its "
                      "connection limit, or refuse this address or device, and its log says "
                      "which; or a balancer in front of it has no server up; or it serves TLS "
                      "(tcpota serve's TLS port says so; another's may not): then give --ca with "
                      "its CA certificate)";
}

/* A wait of ms as "N s", rounded up: in tenths under 10 s ("0.9 s", not
 * the "0 s" of --check-interval 1 less its jitter), else whole seconds. */
static const char *wait_text(uint32_t ms, char *buf, size_t cap)
{
    unsigned long t = ((unsigned long)ms + 99u) / 100u;

    if (ms < 10000u) {
        snprintf(buf, cap, "%lu.%lu s", t / 10u, t % 10u);
    } else {
        snprintf(buf, cap, "%lu s", ((unsigned long)ms + 999u) / 1000u);
    }
    return buf;
}

/* Logs what the runner does. That the server cannot be reached, or that
 * its TLS handshake fails, is said at once even with --quiet, with the
 * next wait: a silent minute looks like a hang. */
static void runner_step(void *ctx, const struct tcpota_runner_step *s)
{
    struct device *dv = ctx;

    switch (s->type) {
    case TCPOTA_RUNNER_CONNECTING:
        dv->connected = dv->answered = 0;
        info(dv, "connecting to %s", dv->o.server);
        break;
    case TCPOTA_RUNNER_CONNECTED:
        dv->connected = 1;
        dv->st.connections++;
        dv->told_unreachable = 0;
        /* A resumed session skipped the certificate: it was verified with
         * these trust anchors when the session began (cli_tls_init). */
        info(dv, "connected to %s%s", dv->o.server,
             !dv->o.ca          ? ""
             : dv->tls.resumed ? " (TLS, resumed a session verified earlier with this --ca)"
                               : " (TLS, certificate verified)");
        break;
    case TCPOTA_RUNNER_CHECK_IN: {
        char wait[32];
        if (s->retry_after_s) {
            say(dv, "next check-in in %s (the server asked for %lu s%s; each device waits up to"
                    " %u %% longer, so that a fleet comes back spread out)",
                wait_text(s->wait_ms, wait, sizeof(wait)), (unsigned long)s->retry_after_s,
                s->retry_after_s == TCPOTA_RUNNER_CHECK_MAX_S ? " or more: a week at most" : "",
                (unsigned)TCPOTA_RUNNER_CHECK_JITTER_PCT);
        } else {
            say(dv, "next check-in in %s", wait_text(s->wait_ms, wait, sizeof(wait)));
        }
        break;
    }
    case TCPOTA_RUNNER_UNCHALLENGED: {
        /* Said with --quiet too: the operator believes the id protected. */
        char word[3 * TCPOTA_MAX_STR + 8], line[2 * TCPOTA_MAX_STR + 128];
        /* An --auth-file line holds an id without spaces (server/auth.c). */
        if (strpbrk(dv->id, " \t")) {
            snprintf(line, sizeof(line), "image mode's --auth-file cannot hold an id with spaces"
                     " (give the device one without)");
        } else {
            snprintf(line, sizeof(line), "in image mode a line \"%s <hex>\" in its --auth-file"
                     " (<hex>: the third field of this device's secret file)", dv->id);
        }
        say(dv, "warning: the server did not ask this device to authenticate: it holds no secret "
                "for id %s, so this device's --secret was not checked and any client can use the "
                "id there. Give the server the secret: %s; in fleet mode tcpota device secret %s"
                " --out FILE makes one, which this device then takes with --secret FILE", dv->id,
            line, cli_shell_word(dv->id, word, sizeof(word)));
        break;
    }
    case TCPOTA_RUNNER_BACKOFF:
        if (s->unreachable && !dv->told_unreachable) {
            dv->told_unreachable = 1;
            say(dv, "cannot reach the server (%s); retrying, next attempt in %lu ms", s->why,
                (unsigned long)s->wait_ms);
        } else if (dv->tls_failed && !dv->told_unreachable) {
            /* A certificate that does not verify fails every attempt:
             * said at once, --quiet or not, as an unreachable server is. */
            dv->told_unreachable = 1;
            say(dv, "%s; retrying, next attempt in %lu ms", s->why, (unsigned long)s->wait_ms);
        } else if (s->image_failed) {
            /* The core remembers the image as failed: an offer of it again
             * is declined before a byte is written (docs/security.md), but
             * after a first integrity failure (bytes altered on the way?). */
            say(dv, "%s; %s: asking the server for another in %lu ms", s->why,
                tcpota_dev_bad_image(&dv->port, NULL) > TCPOTA_BAD_NONE
                    ? "this image is remembered as failed and not taken again"
                    : "this image is remembered, taken once more at most (it may have been"
                      " altered on the way)",
                (unsigned long)s->wait_ms);
        } else if (s->retry_after_s) {
            /* Seconds: the server speaks in them, and the wait may be an hour. */
            info(dv, "%s; retrying in %lu s (the server asked for %lu s)", s->why,
                 (unsigned long)((s->wait_ms + 999u) / 1000u), (unsigned long)s->retry_after_s);
        } else {
            info(dv, "%s%s; retrying in %lu ms", s->why, unanswered(dv), (unsigned long)s->wait_ms);
        }
        break;
    }
}

static int runner_init(struct device *dv)
{
    struct tcpota_runner_config rc;

    memset(&rc, 0, sizeof(rc));
    rc.dev = &dv->dev;
    rc.backoff_min_ms = dv->o.backoff_min;
    rc.backoff_max_ms = dv->o.backoff_max;
    rc.failure_max_ms = dv->o.backoff_max > TCPOTA_RUNNER_FAILURE_MAX_MS
                            ? dv->o.backoff_max
                            : TCPOTA_RUNNER_FAILURE_MAX_MS;
    rc.max_attempts = dv->o.max_attempts;
    rc.check_interval_s = dv->o.check_interval;
    rc.err = dv->err;
    rc.err_cap = sizeof(dv->err);
    rc.ctx = dv;
    rc.connect = runner_connect;
    rc.run = runner_run;
    rc.close = runner_close;
    rc.client = &dv->cl; /* waits between attempts wake on a signal */
    rc.random = runner_random;
    rc.on_step = runner_step;
    if (tcpota_runner_init(&dv->runner, &rc) < 0) {
        say(dv, "cannot set up the connection loop");
        return -1;
    }
    return 0;
}

/* ---- the connection loop --------------------------------------------- */


static int stopped(struct device *dv)
{
    struct tcpota_dev_resume r = xfer(dv).resume;

    /* Where the next run goes on (a new user's trial asked). */
    if (r.valid) {
        say(dv, "stopped by %s; the next run resumes the %lu-byte image at byte %lu",
            g_signal == SIGINT ? "SIGINT" : "SIGTERM", (unsigned long)r.size,
            (unsigned long)r.offset);
    } else {
        say(dv, "stopped by %s", g_signal == SIGINT ? "SIGINT" : "SIGTERM");
    }
    return 128 + g_signal;
}

static void say_declined(struct device *dv)
{
    int why = xfer(dv).last_error;
    char word[3 * TCPOTA_MAX_STR + 8];

    if (why == TCPOTA_ERR_NOSPC) {
        say(dv, "declined the server's offer: the image (%lu bytes) is larger than the slot "
                "(%lu bytes)", (unsigned long)dv->declined_size, (unsigned long)dv->port.slot_size);
    } else {
        /* The core refuses before it records the offer's version. */
        const char *said = tcpota_client_reason(&dv->cl, why);
        say(dv, "declined the server's offer: %s%s%s", tcpota_strerror(why), said[0] ? ": " : "", said);
    }
    if (why == TCPOTA_ERR_NOSPC) {
        /* Its slot's size is the device's for good (--slot-size shapes a
         * new directory only): "set the device right" could not be done. */
        /* Rounded up to a sector: --slot-size takes nothing else (a trial
         * was given 100000, which it then refused). */
        uint64_t need = ((uint64_t)dv->declined_size + TCPOTA_SECTOR_SIZE - 1) /
                        TCPOTA_SECTOR_SIZE * TCPOTA_SECTOR_SIZE;
        if (need > DEVICE_SLOT_MAX) {
            /* Past what --slot-size takes (a hostile trial's offer of
             * 2^32-1 bytes was answered with advice it refused). */
            say(dv, "the server holds that offer back from this device now; no slot this device"
                    " can have takes it (--slot-size goes up to %lu), so only a smaller image is"
                    " a new offer", (unsigned long)DEVICE_SLOT_MAX);
        } else {
            say(dv, "the server holds that offer back from this device now; a device whose slot"
                    " takes it is made in a new --flash with --slot-size %lu or more (on an ESP32:"
                    " a partition table with larger app slots), or a smaller image is a new offer",
                (unsigned long)need);
        }
    } else if (why == TCPOTA_ERR_DOWNGRADE) {
        /* Nothing on the device is wrong, the image is (a trial was told
         * to set the device right): another one is another offer. */
        say(dv, "the server holds that offer back from this device now; an image signed with a"
                " security counter at least this device's is a new offer, which it makes");
    } else if (why == TCPOTA_ERR_UNSIGNED) {
        /* Either side may be the one to change. */
        say(dv, "the server holds that offer back from this device now; the image signed (tcpota"
                " sign, with a key this device trusts) is a new offer, which it makes (fleet mode:"
                " image rm, then image add with its manifest); or, if this device should not"
                " require signed images, once it is set right (--no-trust), tcpota device retry"
                " %s (fleet mode; an image-mode server forgets at its restart) lets it be offered"
                " again",
            cli_shell_word(dv->id, word, sizeof(word)));
    } else if (why != TCPOTA_ERR_REFUSED) {
        /* Any other decline is held back by the server from now on: when
         * this device's setup was the cause, say how it is offered again. */
        say(dv, "the server holds that offer back from this device now; once the device is set"
                " right, tcpota device retry %s (fleet mode; an image-mode server forgets at its"
                " restart) lets it be offered again",
            cli_shell_word(dv->id, word, sizeof(word)));
    }
}

#define WHY_TEXT_MAX 96u /* why_text's buf */

/* The server's reason for no update, or a code this tcpota does not know
 * said as one (a hostile trial's 999 read "the server gave no reason"). */
static const char *why_text(unsigned why, char *buf, size_t cap)
{
    if (why >= TCPOTA_WHY_RUNS && why <= TCPOTA_WHY_UNORDERED) {
        return tcpota_why_str(why);
    }
    snprintf(buf, cap, "a reason this tcpota does not know (code %u: a newer server's?)", why);
    return buf;
}

/* What NO_UPDATE said, and the exit code: 0 when nothing newer is there
 * for this device (it runs the server's image, or the server's is not
 * newer, or it has none for it), 1 when the server holds an image back
 * from it (it failed here before, or is for another model): a script must
 * not read that as up to date. */
static int no_update(struct device *dv)
{
    unsigned why = dv->runner.why;

    if (dv->runner.retry_after_s) {
        /* NO_UPDATE with RETRY_AFTER: "not now" (a server busy or without
         * its database, a rollout's wave not open), not "nothing newer". */
        unsigned long ra = (unsigned long)dv->runner.retry_after_s;
        char why_s[WHY_TEXT_MAX];
        say(dv, "no update now, running %s%s%s; the server asks to check again in %lu s%s",
            dv->version, why ? ": " : "", why ? why_text(why, why_s, sizeof(why_s)) : "", ra,
            ra > TCPOTA_RUNNER_CHECK_MAX_S ? " (a device waits a week at most)" : "");
        return 0;
    }
    switch (why) {
    case 0: /* a server that gives no reason: as before it could */
    case TCPOTA_WHY_RUNS:
        say(dv, "up to date, running %s", dv->version);
        return 0;
    case TCPOTA_WHY_NOT_NEWER:
    case TCPOTA_WHY_NONE:
        say(dv, "up to date, running %s: %s", dv->version, tcpota_why_str(why));
        return 0;
    case TCPOTA_WHY_LATER:
        say(dv, "no update yet, running %s: %s", dv->version, tcpota_why_str(why));
        return 0;
    case TCPOTA_WHY_HELD: {
        char word[3 * TCPOTA_MAX_STR + 8];
        if (tcpota_dev_bad_image(&dv->port, NULL) > TCPOTA_BAD_NONE) {
            /* This device's own record declines the image too: a retry
             * on the server would only be declined again. */
            say(dv, "not updated, running %s: %s; another image will be offered when the server"
                    " has one (a retry on the server would not bring this one back: this device's own"
                    " record declines it, as it failed here; docs/security.md)",
                dv->version, tcpota_why_str(why));
            return 1;
        }
        say(dv, "not updated, running %s: %s; another image will be offered when the server "
                "has one, or this one again once its operator forgets what this device failed or"
                " declined (fleet mode: tcpota device retry %s; docs/security.md)", dv->version,
            tcpota_why_str(why), cli_shell_word(dv->id, word, sizeof(word)));
        return 1;
    }
    case TCPOTA_WHY_OTHER_MODEL:
        say(dv, "not updated, running %s: %s than this device's %s (--model)", dv->version,
            tcpota_why_str(why), dv->o.model);
        return 1;
    case TCPOTA_WHY_UNORDERED:
        say(dv, "not updated, running %s: %s; give the device (--factory-version) and the image "
                "such versions, or offer it anyway (tcpota rollout create --allow-downgrade; "
                "single-image: tcpota serve --allow-downgrade)", dv->version, tcpota_why_str(why));
        return 1;
    default: {
        char why_s[WHY_TEXT_MAX];
        say(dv, "no update, running %s: %s", dv->version, why_text(why, why_s, sizeof(why_s)));
        return 0;
    }
    }
}

/* With --check-interval, what ends a run (a failure included) is followed
 * by the next check-in: said after its line. A hostile trial: a server
 * down for a minute (20 attempts) or one forged ERROR over plain TCP
 * ended a device agent for good. */
static const char *then(const struct device *dv)
{
    /* Not "trying again": what the next check-in gets is the server's to
     * say (an image that failed here is held back: a trial). */
    return dv->o.check_interval ? "; checking in again after --check-interval" : "";
}

/* Runs the runner until the device is up to date (0), fails for good (1)
 * or is stopped by a signal (128 + signal); reboots after each update.
 * With --check-interval nothing but a signal is the end: up to date, a
 * declined offer, a rollback, giving up or a refusal is followed by the
 * next check-in (the runner's), and it runs again. */
static int run(struct device *dv)
{
    for (;;) {
        int rc;

        switch (tcpota_runner_run(&dv->runner)) {
        case TCPOTA_RUNNER_STOPPED:
            return stopped(dv);
        case TCPOTA_RUNNER_UP_TO_DATE:
            rc = no_update(dv);
            break;
        case TCPOTA_RUNNER_DECLINED:
            say_declined(dv);
            rc = 1;
            break;
        case TCPOTA_RUNNER_ENDED:
            say(dv, "new image %s %s and was rolled back%s", dv->rejected, dv->rollback_why,
                then(dv));
            /* Said, and the server has the report: a later image of this
             * process (--check-interval) starts clean (a review: the flag
             * stayed, and the next acknowledged report ended its offer). */
            dv->rollback = 0;
            rc = 1;
            break;
        case TCPOTA_RUNNER_UPDATED:
            if (dv->err[0]) {
                /* The report in the next HELLO tells the server anyway. */
                info(dv, "could not send COMPLETE: %s", dv->err);
            }
            if (reboot(dv) < 0) {
                return 1;
            }
            continue;
        case TCPOTA_RUNNER_DENIED:
            if (dv->tls_failed) {
                /* This device refused the server's certificate, or the
                 * server answered without TLS. */
                say(dv, "%s; %s%s%s", dv->err, dv->o.check_interval ? "" : "not retrying: ",
                    dv->tls_refused == CLI_TLS_NOT_TLS
                        ? "the same port would answer so again"
                        : "the same certificate would be refused again", then(dv));
            } else if (dv->cl.http_answer || dv->cl.text_answer) {
                say(dv, "%s; %sthe same address would answer so again%s", dv->err,
                    dv->o.check_interval ? "" : "not retrying: ", then(dv));
            } else if (xfer(dv).retry_after_s) {
                /* A throttle after failures (of this id or address), not a
                 * verdict on the secret: say when a try is checked again. */
                say(dv, "the server refused this device (%s); it checks this device's next try "
                        "in %u s at the earliest%s", dv->err, (unsigned)xfer(dv).retry_after_s,
                    /* (a new user's trial read it as a promise, and the
                     * device then stopped without a word) */
                    dv->o.check_interval ? then(dv)
                                         : "; not retrying: put right what the server says first");
            } else {
                say(dv, "the server refused this device (%s); retrying would be refused again%s",
                    dv->err, dv->o.check_interval ? "; trying at the next check-in all the same"
                                                    " (over plain TCP anyone can forge a refusal)"
                                                  : "");
            }
            rc = 1;
            break;
        default:
            say(dv, "gave up after %u attempt%s without progress: %s%s%s%s", dv->runner.attempts,
                dv->runner.attempts == 1 ? "" : "s", dv->err, unanswered(dv),
                kept_nothing(dv), then(dv));
            rc = 1;
            break;
        }
        if (!dv->o.check_interval) {
            return rc;
        }
        if (tcpota_runner_check_in(&dv->runner) < 0) {
            return stopped(dv);
        }
    }
}

/* ---- statistics ------------------------------------------------------ */

/* The line of this process's counts (refetched: above). */
static void print_stats(struct device *dv)
{
    const struct stats *st = &dv->st;

    say(dv, "stats image=%lu written=%llu refetched=%llu connections=%u stale_frames=%llu",
        (unsigned long)st->image_size, (unsigned long long)st->written,
        (unsigned long long)refetched(st), st->connections,
        (unsigned long long)(st->stale_frames + xfer(dv).stale_frames));
}

/* ---- entry point ----------------------------------------------------- */

/* Opens and boots the device, then runs the connection loop. */
static int device_main(struct device *dv)
{
    const char *why;
    int rc;

    /* Until DIR exists the default id is not known: name the device by DIR. */
    set_prefix(dv, dv->o.id ? dv->o.id : dv->o.dir);
    /* A --flash that is no directory, or that the flags do not fit (an
     * empty one without --init, --init on one not empty, an --id or
     * --model other than it was made with), is a bad
     * argument, as an unusable --trust, --secret or --ca is (exit 2); a
     * device whose files are damaged is a failure (1). */
    if ((rc = flash_open(dv, dv->o.slot_size)) < 0) {
        return rc == -2 ? 2 : 1;
    }
    /* Who DIR is, before the first boot writes anything: flags that would
     * make it another device are refused. */
    default_id(dv);
    if ((rc = tcpota_posix_port(&dv->flash, &dv->port)) < 0) {
        (void)flash_fail(dv, "opening the flash", rc);
        return 1;
    }
    if ((rc = device_ident(&dv->port, &dv->o, dv->created, dv->id, dv->prefix, &dv->ident)) != 0) {
        return rc;
    }
    snprintf(dv->id, sizeof(dv->id), "%s", dv->ident.id);
    dv->o.model = dv->ident.model;
    set_prefix(dv, dv->id);
    if (device_trust(&dv->port, &dv->o, dv->prefix) != 0 ||
        device_secret(&dv->port, &dv->o, dv->prefix) != 0) {
        return 1;
    }
    if (dv->created) {
        new_mark_done(dv); /* what DIR is, recorded: a device like any other */
    }
    if (dv->created && (why = text_version_unordered(dv->o.factory))) {
        /* Said while it can still be changed: the version is the new
         * device's for good (a trial's could then never be updated, told
         * by the server to give it "such a version"). */
        say(dv, "warning: --factory-version '%s' %s: a server offers such a device no image"
                " unless its rollout allows downgrades; to give it one, start it again in a new"
                " --flash with --factory-version 1.0.0", cli_cut(dv->o.factory), why);
    }
    if (dv->created && strchr(dv->o.model, ' ')) {
        /* The protocol carries it, but a fleet names models without spaces
         * (rollout create refuses one): such a device gets no fleet image,
         * and a server's log line "model=es p32" reads as two fields (a
         * trial). Said while it can still be changed. */
        say(dv, "warning: --model '%s' has a space: a fleet server's rollouts name models without "
                "spaces, so this device is offered no fleet image; to change it, start it again "
                "in a new --flash", cli_cut(dv->o.model));
    }
    rc = boot_device(dv) < 0 || session_init(dv) < 0 || runner_init(dv) < 0 ? 1 : 0;
    rc = rc ? rc : run(dv);
    progress_clear(&dv->prog);
    print_stats(dv);
    return rc;
}

/* Frees dv, wiped first: it holds the secret (--secret's, or DIR's in its
 * NVS tables) and the session's state. */
static void device_free(struct device *dv)
{
    sodium_memzero(dv, sizeof(*dv));
    free(dv);
}

int cmd_device(int argc, char **argv)
{
    struct device *dv;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "status") == 0) {
        return cmd_device_status(argc - 1, argv + 1);
    }
    /* From the first instruction: a SIGUSR1 during the start (before
     * signals_install) would end the device as its default action. */
    signal(SIGUSR1, SIG_IGN);
    if (argc >= 2 && cli_is_fleet_device(argv[1])) {
        return cmd_fleet_device(argc, argv);
    }
    if (argc >= 2 && argv[1][0] != '-') {
        /* A misspelled subcommand (`device lst`): the host device takes no
         * word, and its --help does not list the fleet's (a new user's
         * trial was sent there). */
        fprintf(stderr, "tcpota device: unknown subcommand '%s'; give status, " CLI_FLEET_DEVICE_SUBS
                        ", or run a host device with options (tcpota device --help)\n",
                cli_cut(argv[1]));
        return 2;
    }
    dv = calloc(1, sizeof(*dv)); /* ~40 KiB of buffers: not on the stack */
    if (!dv) {
        fprintf(stderr, "tcpota device: out of memory\n");
        return 1;
    }
    dv->lock_fd = -1;
    rc = device_parse_options(&dv->o, argc, argv);
    if (rc != 0) {
        device_free(dv);
        return rc < 0 ? 0 : rc;
    }
    progress_init(&dv->prog, dv->o.progress, dv->prefix);
    g_signal = 0;
    if (signals_install() < 0) {
        fprintf(stderr, "tcpota device: cannot install signal handlers: %s\n", strerror(errno));
        signals_remove();
        device_free(dv);
        return 1;
    }
    if ((rc = client_init(dv)) != 0) {
        if (dv->o.ca) cli_tls_free(&dv->tls);
        signals_remove();
        device_free(dv);
        return rc;
    }
    rc = device_main(dv);
    tcpota_client_close(&dv->cl, 0);
    cli_tls_free(&dv->tls);
    flash_close(dv);
    flash_unlock(dv);
    signals_remove();
    device_free(dv);
    return rc;
}
