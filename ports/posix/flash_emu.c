/*
 * flash_emu.c - NOR flash region in a file (see flash_emu.h).
 */
#include "flash_emu.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR TCPOTA_SECTOR_SIZE

#if defined(__GNUC__)
#define FLASH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FLASH_PRINTF(f, a)
#endif

FLASH_PRINTF(3, 4)
static int fail(struct tcpota_flash *fl, int err, const char *fmt, ...)
{
    /* The region name first, so a log line says which file failed. */
    int n = snprintf(fl->detail, sizeof fl->detail, "%s: ", fl->name);
    va_list ap;

    if (n < 0 || (size_t)n >= sizeof fl->detail) {
        return err;
    }
    va_start(ap, fmt);
    vsnprintf(fl->detail + n, sizeof fl->detail - (size_t)n, fmt, ap);
    va_end(ap);
    return err;
}

static int fail_errno(struct tcpota_flash *fl, const char *what, uint32_t off)
{
    int e = errno;
    return fail(fl, TCPOTA_ERR_IO, "%s at 0x%lx: %s", what, (unsigned long)off, strerror(e));
}

static void set_name(struct tcpota_flash *fl, const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    snprintf(fl->name, sizeof fl->name, "%s", base);
}

/* Bounds with no overflow: off + len may exceed UINT32_MAX. */
static int in_bounds(const struct tcpota_flash *fl, uint32_t off, size_t len)
{
    return off <= fl->size && len <= (size_t)(fl->size - off);
}

/* Common entry checks of every data operation. */
static int check_op(struct tcpota_flash *fl, const char *what, uint32_t off, size_t len)
{
    if (fl->fd < 0) {
        return fail(fl, TCPOTA_ERR_IO, "%s on a closed region", what);
    }

    if (!in_bounds(fl, off, len)) {
        return fail(fl, TCPOTA_ERR_RANGE, "%s of %lu bytes at 0x%lx outside region of 0x%lx",
                    what, (unsigned long)len, (unsigned long)off, (unsigned long)fl->size);
    }
    if (fl->fault && fl->fault->lost) {
        return fail(fl, TCPOTA_ERR_IO, "%s at 0x%lx: power lost", what, (unsigned long)off);
    }
    return 0;
}

/* Entry checks of erase and prog: those of check_op, and a writable file. */
static int check_write(struct tcpota_flash *fl, const char *what, uint32_t off, size_t len)
{
    int rc = check_op(fl, what, off, len);

    if (rc == 0 && fl->readonly) {
        rc = fail(fl, TCPOTA_ERR_IO, "%s at 0x%lx on a read-only region", what,
                  (unsigned long)off);
    }
    return rc;
}

/* Count one erase or prog. Returns 0 to do it in full, 1 to do only half
 * (torn, then report the loss), or TCPOTA_ERR_IO when power is gone. */
static int count_op(struct tcpota_flash *fl, const char *what, uint32_t off)
{
    struct tcpota_flash_fault *f = fl->fault;

    if (!f) {
        return 0;
    }
    if (f->cut_after && f->ops >= f->cut_after) {
        /* Schedule set below the count already reached: cut now. */
        f->lost = 1;
        return fail(fl, TCPOTA_ERR_IO, "%s at 0x%lx: power lost", what, (unsigned long)off);
    }
    f->ops++;
    if (f->cut_after && f->ops == f->cut_after) {
        f->lost = 1;
        return f->tear ? 1 : 0;
    }
    return 0;
}

static int pread_all(struct tcpota_flash *fl, uint32_t off, uint8_t *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fl->fd, p + done, len - done, (off_t)off + (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return fail_errno(fl, "read", off);
        }
        if (n == 0) {
            /* Someone truncated the file after open: say so, do not
             * hand back stale buffer contents. */
            return fail(fl, TCPOTA_ERR_IO, "short read at 0x%lx (file truncated?)",
                        (unsigned long)(off + done));
        }
        done += (size_t)n;
    }
    return 0;
}

static int pwrite_all(struct tcpota_flash *fl, uint32_t off, const uint8_t *p, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fl->fd, p + done, len - done, (off_t)off + (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return fail_errno(fl, "write", off);
        }
        done += (size_t)n;
    }
    return 0;
}

/* Write 0xFF over [off, off+len). */
static int fill_erased(struct tcpota_flash *fl, uint32_t off, size_t len)
{
    uint8_t ff[SECTOR];

    memset(ff, 0xFF, sizeof ff);
    while (len > 0) {
        size_t n = len < sizeof ff ? len : sizeof ff;
        int rc = pwrite_all(fl, off, ff, n);
        if (rc < 0) {
            return rc;
        }
        off += (uint32_t)n;
        len -= n;
    }
    return 0;
}

/* Opened with O_NONBLOCK: a FIFO in place of a region file would block a
 * read-only open() (`tcpota device status`) until some writer came, for
 * ever; so open() returns at once and check_existing() refuses it as not
 * a regular file, as it does for `tcpota device`. Cleared again right
 * after: region I/O must wait, not return EAGAIN. */
static int open_file(struct tcpota_flash *fl, const char *path, int create)
{
    int flags = (fl->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW |
                (create ? O_CREAT | O_TRUNC : 0);

    fl->fd = open(path, flags, 0644);
    if (fl->fd < 0) {
        if (errno == ENOENT) {
            return fail(fl, TCPOTA_ERR_NOENT, "no such file");
        }
        if (errno == ELOOP) {
            /* Followed, a link made two regions (or two devices) one file:
             * an update wrote over the running slot (a hostile trial). */
            return fail(fl, TCPOTA_ERR_IO, "a symbolic link: a device's flash files are its own;"
                        " put the file itself there");
        }
        if (errno == EACCES || errno == EPERM || errno == EROFS) {
            /* Intact, but not ours to write (or read): not damage. */
            int e = errno;
            return fail(fl, TCPOTA_ERR_DENIED, "open: %s", strerror(e));
        }
        return fail_errno(fl, "open", 0);
    }
    flags = fcntl(fl->fd, F_GETFL);
    if (flags < 0 || fcntl(fl->fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        return fail_errno(fl, "open", 0); /* closed by region_open() */
    }
    return 0;
}

/* A region file must be a regular file whose length is the region size. */
static int check_existing(struct tcpota_flash *fl, uint32_t size)
{
    struct stat st;

    if (fstat(fl->fd, &st) < 0) {
        return fail_errno(fl, "stat", 0);
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(fl, TCPOTA_ERR_IO, "not a regular file");
    }
    if (st.st_nlink > 1) {
        /* Another name for it (both slots one file, a device's nvs shared
         * with another, a `cp -al` backup): writing one changes the other. */
        return fail(fl, TCPOTA_ERR_IO, "the file has %lu names (hard links): a device's flash"
                    " files are its own; make it a copy of its own (cp, not ln)",
                    (unsigned long)st.st_nlink);
    }
    if (size == 0) {
        if (st.st_size <= 0 || (uintmax_t)st.st_size > UINT32_MAX || st.st_size % SECTOR != 0) {
            return fail(fl, TCPOTA_ERR_IO, "file is %lld bytes, not a multiple of %u",
                        (long long)st.st_size, SECTOR);
        }
        size = (uint32_t)st.st_size;
    } else if (st.st_size < 0 || (uintmax_t)st.st_size != size) {
        int shorter = (uintmax_t)st.st_size < size;

        return fail(fl, TCPOTA_ERR_IO, "file is %lld bytes, %s than the %lu expected (%s?)",
                    (long long)st.st_size, shorter ? "shorter" : "longer", (unsigned long)size,
                    shorter ? "cut short" : "grown");
    }
    fl->size = size;
    return 0;
}

static int region_open(struct tcpota_flash *fl, const char *path, uint32_t size, int create,
                       int readonly)
{
    int rc;

    fl->fd = -1;
    fl->size = 0;
    fl->fault = NULL;
    fl->readonly = (uint8_t)(readonly != 0);
    fl->detail[0] = '\0';
    set_name(fl, path ? path : "(null)");
    if (!path || size % SECTOR != 0 || (create && size == 0)) {
        return fail(fl, TCPOTA_ERR_INVAL, "bad region size %lu", (unsigned long)size);
    }
    rc = open_file(fl, path, create);
    if (rc == 0 && create) {
        fl->size = size;
        rc = fill_erased(fl, 0, size);
        if (rc == 0 && fdatasync(fl->fd) < 0) {
            rc = fail_errno(fl, "sync", 0);
        }
    } else if (rc == 0) {
        rc = check_existing(fl, size);
    }
    if (rc < 0 && fl->fd >= 0) {
        close(fl->fd);
        fl->fd = -1;
        fl->size = 0;
    }
    return rc;
}

int tcpota_flash_open(struct tcpota_flash *fl, const char *path, uint32_t size, int create)
{
    return region_open(fl, path, size, create, 0);
}

int tcpota_flash_open_readonly(struct tcpota_flash *fl, const char *path, uint32_t size)
{
    return region_open(fl, path, size, 0, 1);
}

int tcpota_flash_close(struct tcpota_flash *fl)
{
    int fd = fl->fd;

    fl->fd = -1;
    if (fd >= 0 && close(fd) < 0) {
        return fail_errno(fl, "close", 0);
    }
    return 0;
}

int tcpota_flash_read(struct tcpota_flash *fl, uint32_t off, void *buf, size_t len)
{
    int rc = check_op(fl, "read", off, len);

    if (rc < 0) {
        return rc;
    }
    if (len == 0) {
        return 0;
    }
    if (!buf) {
        return fail(fl, TCPOTA_ERR_INVAL, "read into NULL");
    }
    return pread_all(fl, off, buf, len);
}

static int erase_sector(struct tcpota_flash *fl, uint32_t off)
{
    int rc = count_op(fl, "erase", off);

    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        /* Torn: the first half is erased, the rest keeps its old data. */
        rc = fill_erased(fl, off, SECTOR / 2);
        return rc < 0 ? rc
                      : fail(fl, TCPOTA_ERR_IO, "erase at 0x%lx: power lost (torn)",
                             (unsigned long)off);
    }
    return fill_erased(fl, off, SECTOR);
}

int tcpota_flash_erase(struct tcpota_flash *fl, uint32_t off, uint32_t len)
{
    int rc;

    if (off % SECTOR != 0 || len % SECTOR != 0 || len == 0) {
        return fail(fl, TCPOTA_ERR_INVAL, "erase of 0x%lx bytes at 0x%lx not sector aligned",
                    (unsigned long)len, (unsigned long)off);
    }
    rc = check_write(fl, "erase", off, len);
    for (uint32_t s = off; rc == 0 && s < off + len; s += SECTOR) {
        rc = erase_sector(fl, s);
    }
    return rc;
}

/* Fails unless every byte of [off, off+len) reads 0xFF. */
static int check_erased(struct tcpota_flash *fl, uint32_t off, size_t len)
{
    uint8_t cur[512];

    while (len > 0) {
        size_t n = len < sizeof cur ? len : sizeof cur;
        int rc = pread_all(fl, off, cur, n);
        if (rc < 0) {
            return rc;
        }
        for (size_t i = 0; i < n; i++) {
            if (cur[i] != 0xFF) {
                return fail(fl, TCPOTA_ERR_IO, "prog at 0x%lx over non-erased byte 0x%02x",
                            (unsigned long)(off + i), cur[i]);
            }
        }
        off += (uint32_t)n;
        len -= n;
    }
    return 0;
}

int tcpota_flash_prog(struct tcpota_flash *fl, uint32_t off, const void *buf, size_t len)
{
    int rc = check_write(fl, "prog", off, len);

    if (rc < 0 || len == 0) {
        return rc;
    }
    if (!buf) {
        return fail(fl, TCPOTA_ERR_INVAL, "prog from NULL");
    }
    rc = check_erased(fl, off, len);
    if (rc < 0) {
        return rc;
    }
    rc = count_op(fl, "prog", off);
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        rc = pwrite_all(fl, off, buf, len / 2);
        return rc < 0 ? rc
                      : fail(fl, TCPOTA_ERR_IO, "prog at 0x%lx: power lost (torn)",
                             (unsigned long)off);
    }
    return pwrite_all(fl, off, buf, len);
}

int tcpota_flash_sync(struct tcpota_flash *fl)
{
    int rc = check_op(fl, "sync", 0, 0);

    if (rc < 0) {
        return rc;
    }
    if (fdatasync(fl->fd) < 0) {
        return fail_errno(fl, "sync", 0);
    }
    return 0;
}

int tcpota_flash_set_fault(struct tcpota_flash *fl, struct tcpota_flash_fault *fault)
{
    fl->fault = fault;
    return 0;
}

const char *tcpota_flash_detail(const struct tcpota_flash *fl)
{
    return fl->detail;
}
