/*
 * test_posix_inspect.c - tcpota_posix_inspect(): it reports what the next
 * reset boots (the same as tcpota_posix_running() after a real boot) and
 * the resume record, fails clearly on bad directories, and never changes
 * a byte, a length or an mtime of the device's files; and the read-only
 * flash regions it is built on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "posix_port.h"
#include "tcpota/device.h"
#include "tmpdir.h"

#define SEC TCPOTA_SECTOR_SIZE
#define SLOT (8u * SEC)
#define MAX_FILES 8

struct fx {
    char dir[64];
    struct tcpota_posix_dev dev;  /* the device, driven through its port */
    struct tcpota_posix_dev work; /* inspect's workspace */
    struct tcpota_port port;
    struct tcpota_posix_status st;
    uint8_t img[3 * SEC + 123];
    uint8_t id[TCPOTA_ID_LEN];
    struct tcpota_offer_info offer;
};

/* Everything of a directory that a write could change. */
struct snap {
    unsigned n;
    struct {
        char name[256];
        off_t size;
        struct timespec mtime;
        uint8_t *data;
    } f[MAX_FILES];
};

/* ---- every open() of the library, seen through -Wl,--wrap=open -------- */

int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);

static int g_watch;          /* count the opens below while set */
static unsigned g_opens;     /* opens seen */
static unsigned g_writeable; /* of which not O_RDONLY, or O_CREAT/O_TRUNC */

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (g_watch) {
        g_opens++;
        if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC))) {
            g_writeable++;
        }
    }
    return __real_open(path, flags, mode);
}

/* ---- helpers ------------------------------------------------------------ */

static void path_of(const struct fx *f, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", f->dir, name);
}

static void dev_ok(struct fx *f, int rc, const char *what)
{
    if (rc != 0) {
        fail_msg("%s: %d (%s)", what, rc, tcpota_posix_strerror_detail(&f->dev));
    }
}

/* Power on: open and run the bootloader. */
static void power_on(struct fx *f)
{
    dev_ok(f, tcpota_posix_open(&f->dev, f->dir, 1, SLOT, "1.0.0"), "open");
    dev_ok(f, tcpota_posix_boot(&f->dev), "boot");
    dev_ok(f, tcpota_posix_port(&f->dev, &f->port), "port");
}

static void power_off(struct fx *f)
{
    assert_int_equal(tcpota_posix_close(&f->dev), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/tcpota-inspect-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (size_t i = 0; i < sizeof f->img; i++) {
        f->img[i] = (uint8_t)(i * 131u + 7u);
    }
    crypto_hash_sha256(f->id, f->img, sizeof f->img);
    f->offer.image_id = f->id;
    f->offer.size = sizeof f->img;
    f->offer.version = "2.0.0";
    f->offer.version_len = 5;
    power_on(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Download the image into the update slot and set_boot it (state NEW). */
static void update(struct fx *f)
{
    assert_int_equal(f->port.ota_begin(f->port.ctx, &f->offer), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, f->img, sizeof f->img), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
}

static void snap_take(const struct fx *f, struct snap *s)
{
    DIR *d = opendir(f->dir);
    struct dirent *e;

    assert_non_null(d);
    memset(s, 0, sizeof *s);
    while ((e = readdir(d)) != NULL) {
        char path[512];
        struct stat st;
        FILE *fp;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        assert_true(s->n < MAX_FILES);
        path_of(f, e->d_name, path, sizeof path);
        assert_int_equal(stat(path, &st), 0);
        snprintf(s->f[s->n].name, sizeof s->f[s->n].name, "%s", e->d_name);
        s->f[s->n].size = st.st_size;
        s->f[s->n].mtime = st.st_mtim;
        s->f[s->n].data = malloc((size_t)st.st_size + 1);
        assert_non_null(s->f[s->n].data);
        fp = fopen(path, "rb");
        assert_non_null(fp);
        assert_int_equal(fread(s->f[s->n].data, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
        fclose(fp);
        s->n++;
    }
    closedir(d);
}

static void snap_free(struct snap *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        free(s->f[i].data);
    }
}

/* Same files, same sizes, same bytes, same mtimes (to the nanosecond). */
static void snap_expect_same(const struct snap *a, const struct snap *b)
{
    assert_int_equal(a->n, b->n);
    for (unsigned i = 0; i < a->n; i++) {
        unsigned j = 0;
        while (j < b->n && strcmp(a->f[i].name, b->f[j].name) != 0) {
            j++;
        }
        if (j == b->n) {
            fail_msg("%s disappeared", a->f[i].name);
        }
        assert_int_equal(a->f[i].size, b->f[j].size);
        assert_memory_equal(a->f[i].data, b->f[j].data, (size_t)a->f[i].size);
        assert_int_equal(a->f[i].mtime.tv_sec, b->f[j].mtime.tv_sec);
        assert_int_equal(a->f[i].mtime.tv_nsec, b->f[j].mtime.tv_nsec);
    }
}

/* Set every file's mtime far into the past, so that any write, even one
 * within the same clock tick, shows as a new mtime. */
static void age_files(const struct fx *f)
{
    static const char *const names[] = {"otadata.bin", "nvs.bin", "ota_0.bin", "ota_1.bin"};
    const struct timespec t[2] = {{1000000000, 0}, {1000000000, 123}};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        path_of(f, names[i], path, sizeof path);
        if (access(path, F_OK) == 0) {
            assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
        }
    }
}

/* Inspect, checking that the directory is left exactly as it was. */
static int inspect(struct fx *f)
{
    struct snap before, after;
    int rc;

    age_files(f);
    snap_take(f, &before);
    g_opens = g_writeable = 0;
    g_watch = 1;
    rc = tcpota_posix_inspect(&f->work, f->dir, &f->st);
    g_watch = 0;
    snap_take(f, &after);
    /* Every file opened read-only; on success all four were opened. */
    assert_int_equal(g_writeable, 0);
    assert_true(rc < 0 || g_opens == 4);
    snap_expect_same(&before, &after);
    snap_free(&before);
    snap_free(&after);
    return rc;
}

static void inspect_ok(struct fx *f)
{
    int rc = inspect(f);

    if (rc != 0) {
        fail_msg("inspect: %d (%s)", rc, tcpota_posix_strerror_detail(&f->work));
    }
}

/* The report must be what a reset really does: power-cycle the device and
 * compare with tcpota_posix_running(). */
static void expect_next_boot_matches(struct fx *f)
{
    struct tcpota_posix_slot_info run;

    power_off(f);
    power_on(f);
    assert_int_equal(tcpota_posix_running(&f->dev, &run), 0);
    assert_int_equal(f->st.next.slot, run.slot);
    assert_int_equal(f->st.next.pending, run.pending);
    assert_int_equal(f->st.next.rolled_back, run.rolled_back);
    assert_int_equal(f->st.next.size, run.size);
    assert_memory_equal(f->st.next.sha256, run.sha256, TCPOTA_ID_LEN);
    assert_string_equal(f->st.next.version, run.version);
}

static void expect_next(struct fx *f, unsigned slot, int pending, int rolled_back,
                        unsigned boot_slot, unsigned boot_state)
{
    assert_int_equal(f->st.next.slot, slot);
    assert_int_equal(f->st.next.pending, pending);
    assert_int_equal(f->st.next.rolled_back, rolled_back);
    assert_int_equal(f->st.boot_slot, boot_slot);
    assert_int_equal(f->st.boot_state, boot_state);
}

static void expect_runs_update(const struct fx *f)
{
    assert_int_equal(f->st.next.size, sizeof f->img);
    assert_memory_equal(f->st.next.sha256, f->id, TCPOTA_ID_LEN);
    assert_string_equal(f->st.next.version, "2.0.0");
}

static void expect_runs_factory(const struct fx *f)
{
    uint8_t empty[TCPOTA_ID_LEN];

    crypto_hash_sha256(empty, (const uint8_t *)"", 0);
    assert_int_equal(f->st.next.size, 0);
    assert_memory_equal(f->st.next.sha256, empty, TCPOTA_ID_LEN);
    assert_string_equal(f->st.next.version, "1.0.0");
}

static void write_file(const struct fx *f, const char *name, off_t off, const void *p, size_t len)
{
    char path[512];
    int fd;

    path_of(f, name, path, sizeof path);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, len, off), (ssize_t)len);
    close(fd);
}

static void expect_error(struct fx *f, int err, const char *detail)
{
    assert_int_equal(inspect(f), err);
    if (!strstr(tcpota_posix_strerror_detail(&f->work), detail)) {
        fail_msg("detail \"%s\" lacks \"%s\"", tcpota_posix_strerror_detail(&f->work), detail);
    }
    assert_int_equal(f->st.resume_len, -1);
    assert_int_equal(f->st.next.size, 0);
}

/* ---- what the next reset boots ------------------------------------------ */

static void test_fresh_dir(void **state)
{
    struct fx *f = *state;

    inspect_ok(f);
    expect_next(f, 0, 0, 0, 0, TCPOTA_POSIX_IMG_VALID);
    expect_runs_factory(f);
    assert_int_equal(f->st.resume_len, -1);
    expect_next_boot_matches(f);
}

/* After set_boot, before the reboot: the new image runs at the next start
 * and is reported pending, as that boot makes it PENDING_VERIFY. */
static void test_after_update_before_reboot(void **state)
{
    struct fx *f = *state;

    update(f);
    inspect_ok(f);
    expect_next(f, 1, 1, 0, 1, TCPOTA_POSIX_IMG_NEW);
    expect_runs_update(f);
    /* Inspecting again gives the same answer: nothing was consumed. */
    inspect_ok(f);
    expect_next(f, 1, 1, 0, 1, TCPOTA_POSIX_IMG_NEW);
    expect_next_boot_matches(f);
}

/* Booted into the new image, not confirmed: a reset now aborts it, so the
 * next boot runs the previous image and says it rolled back. */
static void test_pending(void **state)
{
    struct fx *f = *state;

    update(f);
    power_off(f);
    power_on(f);
    inspect_ok(f);
    expect_next(f, 0, 0, 1, 1, TCPOTA_POSIX_IMG_PENDING_VERIFY);
    expect_runs_factory(f);
    expect_next_boot_matches(f);
}

static void test_confirmed(void **state)
{
    struct fx *f = *state;

    update(f);
    power_off(f);
    power_on(f);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    inspect_ok(f);
    expect_next(f, 1, 0, 0, 1, TCPOTA_POSIX_IMG_VALID);
    expect_runs_update(f);
    expect_next_boot_matches(f);
}

static void test_rolled_back(void **state)
{
    struct fx *f = *state;

    update(f);
    power_off(f);
    power_on(f);
    assert_int_equal(f->port.mark_invalid(f->port.ctx), 0);
    inspect_ok(f);
    expect_next(f, 0, 0, 1, 1, TCPOTA_POSIX_IMG_INVALID);
    expect_runs_factory(f);
    expect_next_boot_matches(f);
    /* And once the device has rebooted onto the old image. */
    inspect_ok(f);
    expect_next(f, 0, 0, 1, 1, TCPOTA_POSIX_IMG_INVALID);
    expect_next_boot_matches(f);
}

/* A NEW image whose bytes changed after set_boot is refused, as by the
 * bootloader: the SHA-256 is checked, not only the state. */
static void test_corrupted_new_image_is_refused(void **state)
{
    struct fx *f = *state;

    update(f);
    write_file(f, "ota_1.bin", 100, "X", 1);
    inspect_ok(f);
    expect_next(f, 0, 0, 1, 1, TCPOTA_POSIX_IMG_NEW);
    expect_runs_factory(f);
    expect_next_boot_matches(f);
}

static void test_no_bootable_slot(void **state)
{
    struct fx *f = *state;

    /* Confirm an image in slot 1, then one in slot 0; break both. */
    for (int i = 0; i < 2; i++) {
        update(f);
        power_off(f);
        power_on(f);
        assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    }
    write_file(f, "ota_0.bin", 0, "X", 1);
    write_file(f, "ota_1.bin", 0, "X", 1);
    expect_error(f, TCPOTA_ERR_INTEGRITY, "no bootable slot");
    power_off(f);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), 0);
    assert_int_equal(tcpota_posix_boot(&f->dev), TCPOTA_ERR_INTEGRITY);
}

/* ---- the resume record ---------------------------------------------------- */

static void test_resume_record_returned_raw(void **state)
{
    struct fx *f = *state;
    uint8_t rec[45], big[TCPOTA_POSIX_KV_VALUE_MAX];

    for (size_t i = 0; i < sizeof rec; i++) {
        rec[i] = (uint8_t)(0xA0 + i);
    }
    assert_int_equal(f->port.kv_set(f->port.ctx, "other", (const uint8_t *)"x", 1), 0);
    assert_int_equal(f->port.kv_set(f->port.ctx, TCPOTA_KEY_RESUME, rec, sizeof rec), 0);
    inspect_ok(f);
    assert_int_equal(f->st.resume_len, (int)sizeof rec);
    assert_memory_equal(f->st.resume, rec, sizeof rec);

    /* The largest value fits; an empty one is present, not absent. */
    memset(big, 0x5A, sizeof big);
    assert_int_equal(f->port.kv_set(f->port.ctx, TCPOTA_KEY_RESUME, big, sizeof big), 0);
    inspect_ok(f);
    assert_int_equal(f->st.resume_len, (int)sizeof big);
    assert_memory_equal(f->st.resume, big, sizeof big);
    assert_int_equal(f->port.kv_set(f->port.ctx, TCPOTA_KEY_RESUME, NULL, 0), 0);
    inspect_ok(f);
    assert_int_equal(f->st.resume_len, 0);

    assert_int_equal(f->port.kv_erase(f->port.ctx, TCPOTA_KEY_RESUME), 0);
    inspect_ok(f);
    assert_int_equal(f->st.resume_len, -1);
    assert_string_equal(tcpota_posix_strerror_detail(&f->work), "");
}

/* Records the caller names are read in the same pass: a value, an absent
 * one, one longer than its buffer (nothing copied), an empty one; a failed
 * inspection reports every record absent. */
static void test_records(void **state)
{
    struct fx *f = *state;
    uint8_t a[8], b[8], c[2], d[4];
    struct tcpota_posix_record rec[] = {
        {"host.id", a, sizeof a, 99}, {"host.none", b, sizeof b, 99},
        {"host.long", c, sizeof c, 99}, {"host.empty", d, sizeof d, 99},
    };
    char path[512], keep[600];

    memset(c, 0xEE, sizeof c);
    assert_int_equal(f->port.kv_set(f->port.ctx, "host.id", (const uint8_t *)"dev-7", 5), 0);
    assert_int_equal(f->port.kv_set(f->port.ctx, "host.long", (const uint8_t *)"abc", 3), 0);
    assert_int_equal(f->port.kv_set(f->port.ctx, "host.empty", NULL, 0), 0);
    assert_int_equal(tcpota_posix_inspect_records(&f->work, f->dir, &f->st, rec, 4), 0);
    assert_int_equal(rec[0].len, 5);
    assert_memory_equal(a, "dev-7", 5);
    assert_int_equal(rec[1].len, TCPOTA_ERR_NOENT);
    assert_int_equal(rec[2].len, TCPOTA_ERR_NOSPC);
    assert_int_equal(c[0], 0xEE);
    assert_int_equal(rec[3].len, 0);
    /* What the records found missing is no failure of the inspection. */
    assert_string_equal(tcpota_posix_strerror_detail(&f->work), "");
    expect_runs_factory(f);

    path_of(f, "ota_1.bin", path, sizeof path);
    snprintf(keep, sizeof keep, "%s.keep", path);
    assert_int_equal(rename(path, keep), 0);
    assert_int_equal(tcpota_posix_inspect_records(&f->work, f->dir, &f->st, rec, 4),
                     TCPOTA_ERR_NOENT);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(rec[i].len, TCPOTA_ERR_NOENT);
    }
    assert_int_equal(rename(keep, path), 0);
    assert_int_equal(tcpota_posix_inspect_records(&f->work, f->dir, &f->st, NULL, 1),
                     TCPOTA_ERR_INVAL);
}

/* A device in the middle of a download is inspected as it runs. */
static void test_inspect_while_device_runs(void **state)
{
    struct fx *f = *state;
    uint8_t rec[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    assert_int_equal(f->port.ota_begin(f->port.ctx, &f->offer), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, f->img, SEC + 10), 0);
    assert_int_equal(f->port.kv_set(f->port.ctx, TCPOTA_KEY_RESUME, rec, sizeof rec), 0);
    inspect_ok(f);
    expect_next(f, 0, 0, 0, 0, TCPOTA_POSIX_IMG_VALID);
    assert_int_equal(f->st.resume_len, (int)sizeof rec);
    /* The running device goes on undisturbed. */
    assert_int_equal(f->port.ota_write(f->port.ctx, f->img + SEC + 10, sizeof f->img - SEC - 10),
                     0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
    inspect_ok(f);
    expect_next(f, 1, 1, 0, 1, TCPOTA_POSIX_IMG_NEW);
}

/* ---- bad directories -------------------------------------------------------- */

static void test_missing_device(void **state)
{
    struct fx *f = *state;
    char path[512];

    assert_int_equal(tcpota_posix_inspect(&f->work, "/tmp/tcpota-inspect-no-such-dir", &f->st),
                     TCPOTA_ERR_NOENT);
    assert_int_equal(access("/tmp/tcpota-inspect-no-such-dir", F_OK), -1);

    /* Each region file missing in turn: no device, nothing created. */
    static const char *const names[] = {"otadata.bin", "ota_0.bin", "ota_1.bin", "nvs.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char keep[600];
        path_of(f, names[i], path, sizeof path);
        snprintf(keep, sizeof keep, "%s.keep", path);
        assert_int_equal(rename(path, keep), 0);
        expect_error(f, TCPOTA_ERR_NOENT, names[i]);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(rename(keep, path), 0);
    }
    inspect_ok(f);
}

/* An interrupted creation (only otadata.bin.tmp) is not a device, and
 * inspect does not finish the creation. */
static void test_interrupted_creation(void **state)
{
    struct fx *f = *state;
    char path[512], tmp[512];

    path_of(f, "otadata.bin", path, sizeof path);
    path_of(f, "otadata.bin.tmp", tmp, sizeof tmp);
    assert_int_equal(rename(path, tmp), 0);
    expect_error(f, TCPOTA_ERR_NOENT, "otadata.bin");
    assert_int_equal(access(path, F_OK), -1);
}

static void test_garbage_files(void **state)
{
    struct fx *f = *state;
    uint8_t junk[2 * SEC];
    uint32_t x = 12345;

    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (uint8_t)(x >> 16);
    }
    power_off(f);
    write_file(f, "nvs.bin", 0, junk, sizeof junk);
    expect_error(f, TCPOTA_ERR_IO, "nvs.bin");
    write_file(f, "otadata.bin", 0, junk, sizeof junk);
    expect_error(f, TCPOTA_ERR_IO, "otadata.bin: no valid record");
}

static void test_wrong_lengths(void **state)
{
    struct fx *f = *state;
    char path[512];

    power_off(f);
    path_of(f, "ota_1.bin", path, sizeof path);
    assert_int_equal(truncate(path, SLOT - 1), 0);
    expect_error(f, TCPOTA_ERR_IO, "ota_1.bin");
    assert_int_equal(truncate(path, SLOT), 0);
    path_of(f, "otadata.bin", path, sizeof path);
    assert_int_equal(truncate(path, 0), 0);
    expect_error(f, TCPOTA_ERR_IO, "otadata.bin");
    /* A directory where a file should be. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_not_equal(tcpota_posix_inspect(&f->work, f->dir, &f->st), 0);
    assert_int_equal(rmdir(path), 0);
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;

    assert_int_equal(tcpota_posix_inspect(NULL, f->dir, &f->st), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_posix_inspect(&f->work, f->dir, NULL), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_posix_inspect(&f->work, NULL, &f->st), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_posix_inspect(&f->work, "", &f->st), TCPOTA_ERR_INVAL);
    /* The workspace is left closed and reusable. */
    inspect_ok(f);
    inspect_ok(f);
    assert_int_equal(tcpota_posix_boot(&f->work), TCPOTA_ERR_STATE);
}

/* ---- read-only flash regions ------------------------------------------------- */

static void test_readonly_region_refuses_writes(void **state)
{
    struct fx *f = *state;
    struct tcpota_flash fl;
    struct tcpota_flash_fault fault = {0, 0, 0, 0};
    struct snap before, after;
    uint8_t buf[16];
    char path[512];

    path_of(f, "nvs.bin", path, sizeof path);
    age_files(f);
    snap_take(f, &before);
    assert_int_equal(tcpota_flash_open_readonly(&fl, path, 2 * SEC), 0);
    assert_int_equal(fcntl(fl.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    tcpota_flash_set_fault(&fl, &fault);
    assert_int_equal(tcpota_flash_read(&fl, 0, buf, sizeof buf), 0);
    assert_int_equal(tcpota_flash_erase(&fl, SEC, SEC), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(&fl), "read-only"));
    assert_int_equal(tcpota_flash_prog(&fl, 2 * SEC - 16, buf, sizeof buf), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(&fl), "read-only"));
    assert_int_equal(fault.ops, 0);
    assert_int_equal(tcpota_flash_close(&fl), 0);
    snap_take(f, &after);
    snap_expect_same(&before, &after);
    snap_free(&before);
    snap_free(&after);
    /* The read-only open checks as the normal one does. */
    assert_int_equal(tcpota_flash_open_readonly(&fl, path, SEC), TCPOTA_ERR_IO);
    path_of(f, "none.bin", path, sizeof path);
    assert_int_equal(tcpota_flash_open_readonly(&fl, path, SEC), TCPOTA_ERR_NOENT);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_update_before_reboot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_new_image_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_bootable_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_record_returned_raw, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect_while_device_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_creation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_region_refuses_writes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
