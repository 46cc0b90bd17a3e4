/*
 * open.c - open, create and close an emulated device (see posix_port.h),
 * and the failure messages every file of the port leaves in dev->detail.
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tcpota_px_fail(struct tcpota_posix_dev *dev, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(dev->detail, sizeof dev->detail, fmt, ap);
    va_end(ap);
    dev->detail_rc = err;
    return err;
}

int tcpota_px_flash_rc(struct tcpota_posix_dev *dev, const struct tcpota_flash *fl, int rc)
{
    if (rc < 0) {
        snprintf(dev->detail, sizeof dev->detail, "%s", tcpota_flash_detail(fl));
        dev->detail_rc = rc;
    }
    return rc;
}

static int make_path(struct tcpota_posix_dev *dev, char *out, size_t cap, const char *dir,
                     const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= cap) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "path too long: %s/%s", dir, name);
    }
    return 0;
}

#define OTADATA_TMP "otadata.bin.tmp"

/* How open_region() opens a region file. */
enum { REGION_RW = 0, REGION_CREATE = 1, REGION_READONLY = 2 };

static int open_region(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, const char *dir,
                       const char *name, uint32_t size, int how)
{
    char path[4096];
    int rc = make_path(dev, path, sizeof path, dir, name);

    if (rc == 0) {
        rc = how == REGION_READONLY ? tcpota_flash_open_readonly(fl, path, size)
                                    : tcpota_flash_open(fl, path, size, how == REGION_CREATE);
        rc = tcpota_px_flash_rc(dev, fl, rc);
    }
    if (rc == TCPOTA_ERR_NOENT) {
        rc = tcpota_px_fail(dev, rc, "%s is missing %s", dir, name);
    }
    return rc;
}

/* Make rename() durable: a crash after it must not bring the old name
 * back. */
static int sync_dir(struct tcpota_posix_dev *dev, const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0 || fsync(fd) < 0) {
        rc = tcpota_px_fail(dev, TCPOTA_ERR_IO, "%s: sync: %s", dir, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* Fresh otadata, built under a temporary name and renamed last, so a
 * device whose creation was interrupted has no otadata.bin but the
 * temporary file (made first, see create_layout) and is created again. */
static int create_otadata(struct tcpota_posix_dev *dev, const char *dir, const char *factory)
{
    char tmp[4096], path[4096];
    int rc = make_path(dev, tmp, sizeof tmp, dir, OTADATA_TMP);

    if (rc == 0) {
        rc = make_path(dev, path, sizeof path, dir, TCPOTA_POSIX_OTADATA_FILE);
    }
    if (rc == 0) {
        rc = tcpota_px_flash_rc(dev, &dev->otadata,
                                tcpota_flash_open(&dev->otadata, tmp, 2 * SECTOR, 1));
    }
    if (rc < 0) {
        return rc;
    }
    rc = tcpota_px_otadata_format(dev, &dev->otadata, factory);
    if (tcpota_flash_close(&dev->otadata) < 0 && rc == 0) {
        rc = tcpota_px_flash_rc(dev, &dev->otadata, TCPOTA_ERR_IO);
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = tcpota_px_fail(dev, TCPOTA_ERR_IO, "rename %s: %s", tmp, strerror(errno));
    }
    return rc == 0 ? sync_dir(dev, dir) : rc;
}

/* dir's creation mark (the temporary otadata) into marker; -1 (errno
 * ENAMETOOLONG) when it does not fit. */
static int marker_path(const char *dir, char *marker, size_t cap)
{
    if ((size_t)snprintf(marker, cap, "%s/" OTADATA_TMP, dir) >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int tcpota_posix_creation_begin(const char *dir)
{
    char marker[4096];
    int fd = marker_path(dir, marker, sizeof marker) < 0
                 ? -1
                 : open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        return -1;
    }
    close(fd);
    return 0;
}

int tcpota_posix_creation_abandon(const char *dir)
{
    char marker[4096];

    return marker_path(dir, marker, sizeof marker) < 0 ? -1 : unlink(marker);
}

static int create_layout(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size,
                         const char *factory)
{
    static const char *const slots[2] = {"ota_0.bin", "ota_1.bin"};
    int rc = 0;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    }
    /* The temporary otadata comes first: it marks a creation under way, so
     * that one cut short is told apart from a device that lost a file. */
    if (tcpota_posix_creation_begin(dir) < 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "%s/" OTADATA_TMP ": %s", dir, strerror(errno));
    }
    if ((rc = sync_dir(dev, dir)) < 0) {
        return rc;
    }
    for (unsigned s = 0; s < 2 && rc == 0; s++) {
        rc = open_region(dev, &dev->slot[s], dir, slots[s], slot_size, REGION_CREATE);
        tcpota_flash_close(&dev->slot[s]);
    }
    if (rc == 0) {
        rc = open_region(dev, &dev->nvs, dir, TCPOTA_POSIX_NVS_FILE, 2 * SECTOR, REGION_CREATE);
        if (rc == 0) {
            rc = tcpota_px_nvs_format(dev);
        }
        tcpota_flash_close(&dev->nvs);
    }
    return rc == 0 ? create_otadata(dev, dir, factory) : rc;
}

/* The size both slot files of an existing device must have, in *out (0:
 * whatever ota_0.bin's is). Nothing but the files records it, so when
 * they differ the one still of the default layout's size is taken as
 * right (most devices are created with it): the error then names the file
 * that changed, not the one opened second. When neither is, nothing tells
 * which one changed, and both are named. A file that is missing or not a
 * regular file is left to open_region(), which says so. */
static int expected_slot_size(struct tcpota_posix_dev *dev, const char *dir, uint32_t *out)
{
    static const char *const names[2] = {"ota_0.bin", "ota_1.bin"};
    long long len[2];

    *out = 0;
    for (unsigned s = 0; s < 2; s++) {
        char path[4096];
        struct stat st;
        int rc = make_path(dev, path, sizeof path, dir, names[s]);

        if (rc < 0) {
            return rc;
        }
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
            return 0;
        }
        len[s] = (long long)st.st_size;
    }
    if (len[0] == len[1]) {
        return 0;
    }
    if (len[0] == TCPOTA_POSIX_SLOT_SIZE_DEFAULT || len[1] == TCPOTA_POSIX_SLOT_SIZE_DEFAULT) {
        *out = TCPOTA_POSIX_SLOT_SIZE_DEFAULT;
        return 0;
    }
    return tcpota_px_fail(dev, TCPOTA_ERR_IO,
                          "ota_0.bin is %lld bytes but ota_1.bin is %lld: the two slots must "
                          "be the same size, so one was cut short or grown",
                          len[0], len[1]);
}

/* The slots and NVS of an existing device (otadata is open already). */
static int open_regions(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size,
                        int how)
{
    uint32_t expected;
    int rc = expected_slot_size(dev, dir, &expected);

    if (rc == 0) {
        rc = open_region(dev, &dev->slot[0], dir, "ota_0.bin", expected, how);
    }

    if (rc == 0 && slot_size && dev->slot[0].size != slot_size) {
        rc = tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "slot size %lu differs from the device's %lu",
                            (unsigned long)slot_size, (unsigned long)dev->slot[0].size);
    }
    if (rc == 0) {
        rc = open_region(dev, &dev->slot[1], dir, "ota_1.bin", dev->slot[0].size, how);
    }
    if (rc == 0) {
        rc = open_region(dev, &dev->nvs, dir, TCPOTA_POSIX_NVS_FILE, 2 * SECTOR, how);
    }
    dev->slot_size = dev->slot[0].size;
    return rc;
}

static int file_exists(struct tcpota_posix_dev *dev, const char *dir, const char *name)
{
    char path[4096];
    struct stat st;

    return make_path(dev, path, sizeof path, dir, name) == 0 && lstat(path, &st) == 0;
}

/* otadata.bin is missing. A directory with none of the other region files,
 * or with what a creation cut short leaves (OTADATA_TMP), holds no device:
 * TCPOTA_ERR_NOENT, or 0 when `create` says to make one. A directory
 * holding some of them lost otadata.bin: it is never created over (that
 * would erase the installed image and the anti-rollback counter), and
 * the error names the file. */
static int others_present(struct tcpota_posix_dev *dev, const char *dir)
{
    static const char *const others[] = {"ota_0.bin", "ota_1.bin", TCPOTA_POSIX_NVS_FILE};
    int present = 0;

    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        present += file_exists(dev, dir, others[i]);
    }
    return present;
}

int tcpota_posix_holds_device_files(const char *dir)
{
    struct tcpota_posix_dev scratch;

    memset(&scratch, 0, sizeof(scratch));
    return others_present(&scratch, dir) || file_exists(&scratch, dir, OTADATA_TMP) ||
           file_exists(&scratch, dir, TCPOTA_POSIX_OTADATA_FILE);
}

static int no_otadata(struct tcpota_posix_dev *dev, const char *dir, int create)
{
    int present = others_present(dev, dir);

    if (present && !file_exists(dev, dir, OTADATA_TMP)) {
        return tcpota_px_fail(dev, TCPOTA_ERR_NOENT, "%s is missing otadata.bin", dir);
    }
    return create ? 0 : tcpota_px_fail(dev, TCPOTA_ERR_NOENT, "%s holds no device (no otadata.bin)", dir);
}

int tcpota_posix_creation_cut_short(const char *dir)
{
    struct tcpota_posix_dev scratch;

    memset(&scratch, 0, sizeof(scratch));
    return file_exists(&scratch, dir, OTADATA_TMP) && !file_exists(&scratch, dir, TCPOTA_POSIX_OTADATA_FILE);
}

static int open_check_args(struct tcpota_posix_dev *dev, const char *dir, uint32_t slot_size,
                           const char *factory)
{
    if (!dir || !*dir) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "no directory");
    }
    if (slot_size % SECTOR != 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "slot size %lu not a multiple of %u",
                              (unsigned long)slot_size, SECTOR);
    }
    if (strlen(factory) > TCPOTA_POSIX_VERSION_MAX) {
        return tcpota_px_fail(dev, TCPOTA_ERR_INVAL, "factory version longer than %d characters",
                              TCPOTA_POSIX_VERSION_MAX);
    }
    if (sodium_init() < 0) {
        return tcpota_px_fail(dev, TCPOTA_ERR_IO, "sodium_init failed");
    }
    return 0;
}

/* The body of tcpota_posix_open() and tcpota_px_open_readonly(): with
 * REGION_READONLY, `create` must be 0 and nothing is ever written. */
static int open_device(struct tcpota_posix_dev *dev, const char *dir, int create,
                       uint32_t slot_size, const char *factory, int how)
{
    int rc;

    memset(dev, 0, sizeof *dev);
    dev->slot[0].fd = dev->slot[1].fd = dev->otadata.fd = dev->nvs.fd = -1;
    dev->nvs_sector = -1;
    rc = open_check_args(dev, dir, slot_size, factory);
    if (rc == 0) {
        rc = open_region(dev, &dev->otadata, dir, TCPOTA_POSIX_OTADATA_FILE, 2 * SECTOR, how);
    }
    if (rc == TCPOTA_ERR_NOENT && (rc = no_otadata(dev, dir, create)) == 0) {
        rc = create_layout(dev, dir, slot_size ? slot_size : TCPOTA_POSIX_SLOT_SIZE_DEFAULT,
                           factory);
        if (rc == 0) {
            rc = open_region(dev, &dev->otadata, dir, TCPOTA_POSIX_OTADATA_FILE, 2 * SECTOR, how);
        }
    }
    if (rc == 0) {
        rc = open_regions(dev, dir, slot_size, how);
    }
    if (rc == 0) {
        rc = tcpota_px_otadata_load(dev);
    }
    if (rc == 0) {
        rc = tcpota_px_nvs_load(dev);
    }
    if (rc < 0) {
        tcpota_posix_close(dev);
    }
    return rc;
}

int tcpota_posix_open(struct tcpota_posix_dev *dev, const char *dir, int create,
                      uint32_t slot_size, const char *factory_version)
{
    int rc;

    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    rc = open_device(dev, dir, create, slot_size, factory_version ? factory_version : "0.0.0",
                     REGION_RW);
    if (rc == 0) {
        dev->opened = 1;
    }
    return rc;
}

int tcpota_px_open_readonly(struct tcpota_posix_dev *dev, const char *dir)
{
    return open_device(dev, dir, 0, 0, "", REGION_READONLY);
}

int tcpota_posix_close(struct tcpota_posix_dev *dev)
{
    struct tcpota_flash *fl[4];
    int rc = 0;

    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    fl[0] = &dev->slot[0];
    fl[1] = &dev->slot[1];
    fl[2] = &dev->otadata;
    fl[3] = &dev->nvs;

    for (unsigned i = 0; i < 4; i++) {
        int r = tcpota_flash_close(fl[i]);
        if (r < 0 && rc == 0) {
            rc = tcpota_px_flash_rc(dev, fl[i], r);
        }
    }
    tcpota_px_sha_free(&dev->sha);
    /* NVS may hold a device secret (the host device keeps its --secret). */
    sodium_memzero(dev->nvs_cur, sizeof(dev->nvs_cur));
    sodium_memzero(dev->nvs_scratch, sizeof(dev->nvs_scratch));
    dev->sha_active = 0;
    dev->opened = 0;
    dev->booted = 0;
    dev->ota_state = OTA_IDLE;
    return rc;
}

int tcpota_posix_set_fault(struct tcpota_posix_dev *dev, struct tcpota_flash_fault *fault)
{
    if (!dev) {
        return TCPOTA_ERR_INVAL;
    }
    tcpota_flash_set_fault(&dev->slot[0], fault);
    tcpota_flash_set_fault(&dev->slot[1], fault);
    tcpota_flash_set_fault(&dev->otadata, fault);
    tcpota_flash_set_fault(&dev->nvs, fault);
    return 0;
}

const char *tcpota_posix_strerror_detail(const struct tcpota_posix_dev *dev)
{
    return dev ? dev->detail : "";
}

const char *tcpota_posix_detail_for(const struct tcpota_posix_dev *dev, int rc)
{
    return dev && rc < 0 && dev->detail_rc == rc ? dev->detail : "";
}
