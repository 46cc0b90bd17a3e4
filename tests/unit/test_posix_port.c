/*
 * test_posix_port.c - the POSIX device port: A/B slots, otadata, the
 * bootloader's rollback, NVS, resume, and what power cuts leave behind.
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
#include "sync_fault.h"
#include "tmpdir.h"

#define SEC TCPOTA_SECTOR_SIZE
#define SLOT (16u * SEC)

struct fx {
    char dir[64];
    struct tcpota_posix_dev dev;
    struct tcpota_port port;
};

struct image {
    uint8_t *data;
    uint32_t size;
    uint8_t id[TCPOTA_ID_LEN];
    char version[TCPOTA_POSIX_VERSION_MAX + 1];
    struct tcpota_offer_info info;
};

/* ---- helpers ------------------------------------------------------------ */

static void boot_ok(struct fx *f)
{
    int rc = tcpota_posix_boot(&f->dev);

    if (rc != 0) {
        fail_msg("boot: %d (%s)", rc, tcpota_posix_strerror_detail(&f->dev));
    }
    assert_int_equal(tcpota_posix_port(&f->dev, &f->port), 0);
}

static void open_ok(struct fx *f, int create)
{
    int rc = tcpota_posix_open(&f->dev, f->dir, create, create ? SLOT : 0, "1.0.0");

    if (rc != 0) {
        fail_msg("open: %d (%s)", rc, tcpota_posix_strerror_detail(&f->dev));
    }
    boot_ok(f);
}

/* Power off and on: everything in RAM is gone, the files stay. */
static void reopen(struct fx *f)
{
    assert_int_equal(tcpota_posix_close(&f->dev), 0);
    open_ok(f, 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/tcpota-port-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_ok(f, 1);
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

/* Start again from a freshly created device in the same directory. */
static void recreate(struct fx *f)
{
    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    open_ok(f, 1);
}

static struct image *image_new(uint32_t size, uint32_t seed, const char *version)
{
    struct image *img = calloc(1, sizeof *img);
    uint32_t x = seed * 2654435761u + 1u;

    assert_non_null(img);
    img->data = malloc(size ? size : 1);
    assert_non_null(img->data);
    for (uint32_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        img->data[i] = (uint8_t)x;
    }
    img->size = size;
    crypto_hash_sha256(img->id, img->data, size);
    snprintf(img->version, sizeof img->version, "%s", version);
    img->info.image_id = img->id;
    img->info.size = size;
    img->info.version = img->version;
    img->info.version_len = strlen(img->version);
    return img;
}

static void image_free(struct image *img)
{
    free(img->data);
    free(img);
}

/* Write [from, to) of the image in odd pieces that straddle sectors. */
static int write_pieces(struct fx *f, const struct image *img, uint32_t from, uint32_t to)
{
    static const uint32_t sizes[] = {1, 7, 1000, 4095, 4097, 333, 2, 8191};
    unsigned i = 0;

    while (from < to) {
        uint32_t n = sizes[i++ % (sizeof sizes / sizeof sizes[0])];
        int rc;
        n = n < to - from ? n : to - from;
        rc = f->port.ota_write(f->port.ctx, img->data + from, n);
        if (rc < 0) {
            return rc;
        }
        from += n;
    }
    return 0;
}

static void download(struct fx *f, const struct image *img)
{
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(write_pieces(f, img, 0, img->size), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
}

static void full_update(struct fx *f, const struct image *img)
{
    download(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
}

static struct tcpota_posix_slot_info running(struct fx *f)
{
    struct tcpota_posix_slot_info info;

    assert_int_equal(tcpota_posix_running(&f->dev, &info), 0);
    return info;
}

static void expect_running(struct fx *f, unsigned slot, int pending, int rolled_back)
{
    struct tcpota_posix_slot_info info = running(f);
    struct tcpota_boot_state st = {.pending = 9, .rolled_back = 9};

    assert_int_equal(info.slot, slot);
    assert_int_equal(info.pending, pending);
    assert_int_equal(info.rolled_back, rolled_back);
    assert_int_equal(f->port.boot_state(f->port.ctx, &st), 0);
    assert_int_equal(st.pending, pending);
    assert_int_equal(st.rolled_back, rolled_back);
}

static void expect_slot_holds(struct fx *f, const struct image *img)
{
    uint8_t *buf = malloc(img->size ? img->size : 1);

    assert_non_null(buf);
    assert_int_equal(f->port.ota_read(f->port.ctx, 0, buf, img->size), 0);
    assert_memory_equal(buf, img->data, img->size);
    free(buf);
}

/* Overwrite bytes of a device file behind the port's back. */
static void poke(struct fx *f, const char *name, uint32_t off, const void *p, size_t len)
{
    char path[128];
    int fd;

    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, len, off), (ssize_t)len);
    close(fd);
}

static void poke_garbage(struct fx *f, const char *name, uint32_t off, size_t len, uint32_t seed)
{
    uint8_t buf[2 * SEC];

    assert_true(len <= sizeof buf);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
    poke(f, name, off, buf, len);
}

static void cut_file(struct fx *f, const char *name, off_t len)
{
    char path[128];

    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    assert_int_equal(truncate(path, len), 0);
}

/* Same CRC-32 as the port, to forge records whose CRC is right but whose
 * fields are not. */
static uint32_t test_crc32(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xFFFFFFFFu;

    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static void le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Layouts of nvs.bin tables and otadata.bin records (nvs.c, otadata.c). */
enum { NVS_HDR = 12, NVS_SEQ_OFF = 4, NVS_USED_OFF = 8 };
enum { OTADATA_REC_LEN = 160, OTADATA_CRC_OFF = 156, OTADATA_META1_SIZE_OFF = 12 + 72 + 4 };
#define OTADATA_MAGIC 0x4154444fu

static int kv_get_str(struct fx *f, const char *key, char *out, size_t cap)
{
    int n = f->port.kv_get(f->port.ctx, key, (uint8_t *)out, cap - 1);

    out[n > 0 ? n : 0] = '\0';
    return n;
}

static int kv_set_str(struct fx *f, const char *key, const char *val)
{
    return f->port.kv_set(f->port.ctx, key, (const uint8_t *)val, strlen(val));
}

/* ---- boot and update ---------------------------------------------------- */

static void test_fresh_dir_boots_factory_slot0(void **state)
{
    struct fx *f = *state;
    struct tcpota_posix_slot_info info = running(f);
    uint8_t empty[TCPOTA_ID_LEN];
    struct stat st;
    char path[128];

    expect_running(f, 0, 0, 0);
    assert_string_equal(info.version, "1.0.0");
    assert_int_equal(info.size, 0);
    crypto_hash_sha256(empty, (const uint8_t *)"", 0);
    assert_memory_equal(info.sha256, empty, sizeof empty);
    assert_int_equal(f->port.slot_size, SLOT);
    assert_null(f->port.verify_offer);
    assert_ptr_equal(f->port.ctx, &f->dev);
    snprintf(path, sizeof path, "%s/ota_1.bin", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, SLOT);
    snprintf(path, sizeof path, "%s/otadata.bin.tmp", f->dir);
    assert_int_not_equal(stat(path, &st), 0);
}

/* The key-value store of a closed device answers STATE, not what it held
 * in memory (a mutation review). */
static void test_kv_of_a_closed_device(void **state)
{
    struct fx *f = *state;
    char v[8];

    assert_int_equal(kv_set_str(f, "k", "v"), 0);
    tcpota_posix_close(&f->dev);
    assert_int_equal(kv_get_str(f, "k", v, sizeof v), TCPOTA_ERR_STATE);
    assert_int_equal(kv_set_str(f, "k", "w"), TCPOTA_ERR_STATE);
    recreate(f);
}

static void test_defaults_and_create_is_idempotent(void **state)
{
    struct fx *f = *state;
    struct tcpota_posix_slot_info info;

    recreate(f);
    assert_int_equal(kv_set_str(f, "k", "v"), 0);
    tcpota_posix_close(&f->dev);
    /* create on an existing device opens it as it is. */
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, 0, "9.9.9"), 0);
    boot_ok(f);
    assert_string_equal(running(f).version, "1.0.0");
    assert_int_equal(f->port.kv_get(f->port.ctx, "k", NULL, 0), TCPOTA_ERR_NOSPC);
    tcpota_posix_close(&f->dev);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 2 * SLOT, NULL), TCPOTA_ERR_INVAL);

    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_NOENT);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, 0, NULL), 0);
    assert_int_equal(tcpota_posix_boot(&f->dev), 0);
    assert_int_equal(tcpota_posix_running(&f->dev, &info), 0);
    assert_string_equal(info.version, "0.0.0");
    assert_int_equal(tcpota_posix_port(&f->dev, &f->port), 0);
    assert_int_equal(f->port.slot_size, TCPOTA_POSIX_SLOT_SIZE_DEFAULT);
    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, 1000, NULL), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, 0, "0123456789012345678901234567890123"),
                     TCPOTA_ERR_INVAL);
    open_ok(f, 1); /* for teardown */
}

/* A device that lost otadata.bin (or another region file) is never
 * created over, even when asked to create: the error names the file and
 * the slots keep their bytes. A creation cut short (otadata.bin.tmp left)
 * is done again. */
static void test_partial_device_not_recreated(void **state)
{
    struct fx *f = *state;
    char path[128], tmp[128];
    uint8_t b = 0;

    assert_int_equal(kv_set_str(f, "k", "v"), 0);
    tcpota_posix_close(&f->dev);
    snprintf(path, sizeof path, "%s/otadata.bin", f->dir);
    assert_int_equal(unlink(path), 0);
    for (int create = 0; create < 2; create++) {
        assert_int_equal(tcpota_posix_open(&f->dev, f->dir, create, SLOT, "1.0.0"),
                         TCPOTA_ERR_NOENT);
        assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "is missing otadata.bin"));
    }
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/nvs.bin", f->dir);
    {
        FILE *nvs = fopen(path, "rb"); /* NVS still holds the record */
        assert_non_null(nvs);
        assert_int_equal(fread(&b, 1, 1, nvs), 1);
        fclose(nvs);
        assert_int_not_equal(b, 0xff);
    }
    /* A slot missing instead: named too. */
    recreate(f);
    tcpota_posix_close(&f->dev);
    snprintf(path, sizeof path, "%s/ota_1.bin", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, "1.0.0"), TCPOTA_ERR_NOENT);
    assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "is missing ota_1.bin"));
    /* Cut short during creation: created again. */
    recreate(f);
    tcpota_posix_close(&f->dev);
    snprintf(path, sizeof path, "%s/otadata.bin", f->dir);
    snprintf(tmp, sizeof tmp, "%s/otadata.bin.tmp", f->dir);
    assert_int_equal(rename(path, tmp), 0);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_NOENT);
    assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "holds no device"));
    open_ok(f, 1);
    assert_int_equal(access(tmp, F_OK), -1);
}

static void test_calls_before_boot_refused(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(100, 1, "2.0.0");
    struct tcpota_posix_slot_info info;
    struct tcpota_boot_state st;

    tcpota_posix_close(&f->dev);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), 0);
    assert_int_equal(tcpota_posix_port(&f->dev, &f->port), 0);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.boot_state(f->port.ctx, &st), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_posix_running(&f->dev, &info), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_write(f->port.ctx, img->data, 1), TCPOTA_ERR_STATE);
    boot_ok(f);
    image_free(img);
}

static void test_update_pending_then_valid_survives_reopen(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3 * SEC + 1234, 2, "2.0.0");
    struct image *img2 = image_new(5 * SEC, 3, "3.0.0");
    struct tcpota_posix_slot_info info;

    download(f, img);
    expect_slot_holds(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
    expect_running(f, 0, 0, 0); /* set_boot alone does not reboot */

    boot_ok(f);
    expect_running(f, 1, 1, 0);
    info = running(f);
    assert_string_equal(info.version, "2.0.0");
    assert_int_equal(info.size, img->size);
    assert_memory_equal(info.sha256, img->id, TCPOTA_ID_LEN);

    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    expect_running(f, 1, 0, 0);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    reopen(f);
    expect_running(f, 1, 0, 0);
    assert_string_equal(running(f).version, "2.0.0");

    /* The next update goes to the other slot. */
    full_update(f, img2);
    boot_ok(f);
    expect_running(f, 0, 1, 0);
    assert_string_equal(running(f).version, "3.0.0");
    image_free(img);
    image_free(img2);
}

static void test_reboot_while_pending_rolls_back(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(2 * SEC + 1, 4, "2.0.0");
    struct image *img2 = image_new(SEC, 5, "2.0.1");

    full_update(f, img);
    boot_ok(f);
    expect_running(f, 1, 1, 0);
    boot_ok(f); /* crashed or reset before mark_valid */
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 1); /* found at this reset */
    assert_string_equal(running(f).version, "1.0.0");
    reopen(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 0); /* an earlier reset's news */
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0); /* slot 0 is valid */

    /* A later update clears the rollback flag at its boot. */
    full_update(f, img2);
    boot_ok(f);
    expect_running(f, 1, 1, 0);
    image_free(img);
    image_free(img2);
}

static void test_mark_invalid_returns_to_previous(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC + 17, 6, "2.0.0");
    struct tcpota_boot_state st;

    assert_int_equal(f->port.mark_invalid(f->port.ctx), TCPOTA_ERR_STATE); /* factory */
    full_update(f, img);
    boot_ok(f);
    assert_int_equal(f->port.mark_invalid(f->port.ctx), 0);
    /* It "reboots": nothing runs until the bootloader has run. */
    assert_int_equal(f->port.boot_state(f->port.ctx, &st), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), TCPOTA_ERR_STATE);
    boot_ok(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 0); /* rejected, not refused by the boot */
    reopen(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 0);
    image_free(img);
}

static void test_corrupted_slot_falls_back(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3 * SEC, 7, "2.0.0");
    const uint8_t bad = 0x00;

    full_update(f, img);
    poke(f, "ota_1.bin", 2 * SEC + 5, &bad, 1);
    boot_ok(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 1);

    /* Also when the image had been confirmed before it rotted. */
    recreate(f);
    full_update(f, img);
    boot_ok(f);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    poke(f, "ota_1.bin", 0, &bad, 1);
    reopen(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(running(f).refused_now, 1); /* refused again at every reset */
    reopen(f);
    assert_int_equal(running(f).refused_now, 1);
    image_free(img);
}

static void test_no_bootable_slot_is_an_error(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(2 * SEC, 8, "2.0.0");
    struct image *img2 = image_new(2 * SEC, 9, "3.0.0");
    const uint8_t bad = 0x00;

    full_update(f, img);
    boot_ok(f);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    /* Half of the next image in slot 0: its old (factory) metadata must be
     * gone before the first byte, so this slot can never boot. */
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img2->info), 0);
    assert_int_equal(write_pieces(f, img2, 0, SEC + 10), 0);
    poke(f, "ota_1.bin", 100, &bad, 1);
    tcpota_posix_close(&f->dev);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), 0);
    assert_int_equal(tcpota_posix_boot(&f->dev), TCPOTA_ERR_INTEGRITY);
    assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "no bootable slot"));
    image_free(img);
    image_free(img2);
    recreate(f);
}

static void test_set_boot_verifies_image(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(2 * SEC + 3, 10, "2.0.0");

    img->data[SEC] ^= 1; /* the bytes written differ from the id */
    download(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_INTEGRITY);
    boot_ok(f);
    expect_running(f, 0, 0, 0);
    image_free(img);
}

static void test_begin_refused_while_pending(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 11, "2.0.0");

    full_update(f, img);
    boot_ok(f);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, SEC), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    image_free(img);
}

/* ---- resume and argument checks ----------------------------------------- */

static void test_resume_after_reopen_is_byte_exact(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(5 * SEC + 777, 12, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    /* Power goes off 500 bytes into the third sector. */
    assert_int_equal(write_pieces(f, img, 0, 2 * SEC + 500), 0);
    reopen(f);
    assert_int_equal(f->port.ota_write(f->port.ctx, img->data, 1), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, 2 * SEC), 0);
    /* The half-written sector is erased again when writing reaches it,
     * else the strict emulator would refuse these progs. */
    assert_int_equal(write_pieces(f, img, 2 * SEC, img->size), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    expect_slot_holds(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
    boot_ok(f);
    expect_running(f, 1, 1, 0);
    assert_memory_equal(running(f).sha256, img->id, TCPOTA_ID_LEN);
    image_free(img);
}

static void test_resume_checks(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3 * SEC + 9, 13, "2.0.0");
    struct image *other = image_new(3 * SEC + 9, 14, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(write_pieces(f, img, 0, 2 * SEC), 0);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, 100), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, SEC + 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, 4 * SEC), TCPOTA_ERR_RANGE);

    /* As on ESP-IDF the caller's word is taken for the bytes before the
     * offset; a splice of two images never becomes bootable. */
    assert_int_equal(f->port.ota_resume(f->port.ctx, &other->info, SEC), 0);
    assert_int_equal(write_pieces(f, other, SEC, other->size), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_INTEGRITY);
    boot_ok(f);
    expect_running(f, 0, 0, 0);

    /* Offset 0 is a fresh start. */
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, 0), 0);
    assert_int_equal(write_pieces(f, img, 0, img->size), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    expect_slot_holds(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
    image_free(img);
    image_free(other);
}

/* A slot already set to boot stops being bootable as soon as writing into
 * it starts again, so a cut then boots the running image. */
static void test_writing_unmarks_a_bootable_slot(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3 * SEC, 24, "2.0.0");

    full_update(f, img);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, SEC), 0);
    assert_int_equal(write_pieces(f, img, SEC, SEC + 10), 0);
    reopen(f);
    expect_running(f, 0, 0, 0);

    full_update(f, img);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    reopen(f);
    expect_running(f, 0, 0, 0);
    image_free(img);
}

static void test_resume_at_image_end(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(2 * SEC, 15, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(write_pieces(f, img, 0, img->size), 0);
    reopen(f);
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, img->size), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    assert_int_equal(f->port.set_boot(f->port.ctx), 0);
    image_free(img);
}

static void test_image_larger_than_slot_nospc(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SLOT + 1, 16, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), TCPOTA_ERR_NOSPC);
    img->info.size = SLOT; /* exactly full is fine */
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    img->info.size = SLOT + 1;
    assert_int_equal(f->port.ota_resume(f->port.ctx, &img->info, SEC), TCPOTA_ERR_NOSPC);
    image_free(img);
}

/* The port's words for a failure explain that failure only: a later
 * failure with another code (the core's own) gets none of them. */
static void test_detail_for_its_own_failure(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SLOT + 1, 16, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), TCPOTA_ERR_NOSPC);
    assert_non_null(strstr(tcpota_posix_detail_for(&f->dev, TCPOTA_ERR_NOSPC), "exceeds slot"));
    assert_string_equal(tcpota_posix_detail_for(&f->dev, TCPOTA_ERR_INTEGRITY), "");
    assert_string_equal(tcpota_posix_detail_for(&f->dev, 0), "");
    assert_int_equal(f->port.kv_get(f->port.ctx, "none", NULL, 0), TCPOTA_ERR_NOENT);
    assert_string_equal(tcpota_posix_detail_for(&f->dev, TCPOTA_ERR_NOSPC), "");
    assert_non_null(strstr(tcpota_posix_detail_for(&f->dev, TCPOTA_ERR_NOENT), "none"));
    image_free(img);
}

static void test_write_past_size_range(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(100, 17, "2.0.0");
    uint8_t buf[200] = {0};

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, img->data, 60), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, buf, 41), TCPOTA_ERR_RANGE);
    assert_int_equal(f->port.ota_write(f->port.ctx, img->data + 60, 40), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, buf, 1), TCPOTA_ERR_RANGE);
    assert_int_equal(f->port.ota_end(f->port.ctx), 0);
    expect_slot_holds(f, img);
    image_free(img);
}

static void test_state_machine_of_an_image(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC + 1, 18, "2.0.0");

    assert_int_equal(f->port.ota_end(f->port.ctx), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(write_pieces(f, img, 0, SEC), 0);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.ota_end(f->port.ctx), TCPOTA_ERR_STATE); /* 1 byte missing */
    assert_int_equal(write_pieces(f, img, SEC, img->size), 0);
    assert_int_equal(f->port.ota_abort(f->port.ctx), 0);
    assert_int_equal(f->port.ota_end(f->port.ctx), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_STATE);
    full_update(f, img);
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_STATE); /* only once */
    image_free(img);
}

static void test_bad_offers_rejected(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(10, 19, "2.0.0");
    struct tcpota_offer_info bad = img->info;
    static const char longv[] = "0123456789abcdef0123456789abcdef!"; /* 33 */
    static const char nulv[] = {'1', '\0', '2'};

    assert_int_equal(f->port.ota_begin(f->port.ctx, NULL), TCPOTA_ERR_INVAL);
    bad.image_id = NULL;
    assert_int_equal(f->port.ota_begin(f->port.ctx, &bad), TCPOTA_ERR_INVAL);
    bad = img->info;
    bad.version = longv;
    bad.version_len = strlen(longv);
    assert_int_equal(f->port.ota_begin(f->port.ctx, &bad), TCPOTA_ERR_INVAL);
    bad.version = nulv;
    bad.version_len = sizeof nulv;
    assert_int_equal(f->port.ota_begin(f->port.ctx, &bad), TCPOTA_ERR_INVAL);
    bad.version = NULL;
    bad.version_len = 0; /* no version is fine */
    assert_int_equal(f->port.ota_begin(f->port.ctx, &bad), 0);
    assert_int_equal(f->port.ota_write(f->port.ctx, NULL, 3), TCPOTA_ERR_INVAL);
    image_free(img);
}

/* 32 characters, the core's limit, fill the otadata field without a NUL. */
static void test_longest_version_round_trips(void **state)
{
    struct fx *f = *state;
    static const char v32[] = "0123456789abcdef0123456789ABCDEF";
    struct image *img = image_new(SEC, 25, v32);

    assert_int_equal(strlen(img->version), 32);
    full_update(f, img);
    reopen(f);
    expect_running(f, 1, 1, 0);
    assert_string_equal(running(f).version, v32);

    recreate(f);
    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, v32), 0);
    boot_ok(f);
    assert_string_equal(running(f).version, v32);
    image_free(img);
}

static void test_ota_read_bounds(void **state)
{
    struct fx *f = *state;
    uint8_t buf[8];

    assert_int_equal(f->port.ota_read(f->port.ctx, SLOT - 8, buf, 8), 0);
    assert_int_equal(f->port.ota_read(f->port.ctx, SLOT - 7, buf, 8), TCPOTA_ERR_RANGE);
    assert_int_equal(f->port.ota_read(f->port.ctx, UINT32_MAX, buf, 8), TCPOTA_ERR_RANGE);
    assert_int_equal(f->port.ota_read(f->port.ctx, 0, NULL, 8), TCPOTA_ERR_INVAL);
}

static void test_sha256_incremental(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3000, 20, "x");
    uint8_t out[TCPOTA_ID_LEN];

    assert_int_equal(f->port.sha256_update(f->port.ctx, img->data, 1), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.sha256_finish(f->port.ctx, out), TCPOTA_ERR_STATE);
    assert_int_equal(f->port.sha256_begin(f->port.ctx), 0);
    assert_int_equal(f->port.sha256_update(f->port.ctx, img->data, 1), 0);
    assert_int_equal(f->port.sha256_update(f->port.ctx, img->data + 1, 0), 0);
    assert_int_equal(f->port.sha256_update(f->port.ctx, img->data + 1, 2999), 0);
    assert_int_equal(f->port.sha256_finish(f->port.ctx, out), 0);
    assert_memory_equal(out, img->id, TCPOTA_ID_LEN);
    assert_int_equal(f->port.sha256_finish(f->port.ctx, out), TCPOTA_ERR_STATE);
    image_free(img);
}

/* ---- NVS ---------------------------------------------------------------- */

static void test_kv_set_get_erase_survive_reopen(void **state)
{
    struct fx *f = *state;
    char buf[64];

    assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), TCPOTA_ERR_NOENT);
    assert_int_equal(kv_set_str(f, "a", "one"), 0);
    assert_int_equal(kv_set_str(f, "bb", "two"), 0);
    assert_int_equal(kv_set_str(f, "a", "three"), 0);
    assert_int_equal(kv_set_str(f, "empty", ""), 0);
    assert_int_equal(kv_set_str(f, "fifteen_chars__", "max key"), 0);
    assert_int_equal(f->port.kv_erase(f->port.ctx, "bb"), 0);
    assert_int_equal(f->port.kv_erase(f->port.ctx, "bb"), TCPOTA_ERR_NOENT);
    reopen(f);
    assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), 5);
    assert_string_equal(buf, "three");
    assert_int_equal(kv_get_str(f, "bb", buf, sizeof buf), TCPOTA_ERR_NOENT);
    assert_int_equal(kv_get_str(f, "empty", buf, sizeof buf), 0);
    assert_int_equal(kv_get_str(f, "fifteen_chars__", buf, sizeof buf), 7);
    /* A prefix of a key is another key. */
    assert_int_equal(kv_get_str(f, "fifteen", buf, sizeof buf), TCPOTA_ERR_NOENT);
    assert_int_equal(f->port.kv_get(f->port.ctx, "a", (uint8_t *)buf, 4), TCPOTA_ERR_NOSPC);
}

static void test_kv_bad_keys_and_sizes(void **state)
{
    struct fx *f = *state;
    uint8_t big[TCPOTA_POSIX_KV_VALUE_MAX + 1];
    char key[16];
    int rc = 0, n = 0;

    memset(big, 0x5A, sizeof big);
    assert_int_equal(f->port.kv_set(f->port.ctx, "k", big, sizeof big), TCPOTA_ERR_NOSPC);
    assert_int_equal(f->port.kv_set(f->port.ctx, "sixteen_chars___", big, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.kv_set(f->port.ctx, "", big, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.kv_set(f->port.ctx, NULL, big, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.kv_set(f->port.ctx, "k", NULL, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.kv_get(f->port.ctx, "sixteen_chars___", big, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(f->port.kv_set(f->port.ctx, "k", big, sizeof big - 1), 0);

    /* Fill the sector: the set that does not fit fails, others stay. */
    while (rc == 0) {
        snprintf(key, sizeof key, "f%d", n++);
        rc = f->port.kv_set(f->port.ctx, key, big, TCPOTA_POSIX_KV_VALUE_MAX);
    }
    assert_int_equal(rc, TCPOTA_ERR_NOSPC);
    assert_true(n > 3);
    /* Replacing a value by one of the same size still fits. */
    assert_int_equal(f->port.kv_set(f->port.ctx, "f0", big, TCPOTA_POSIX_KV_VALUE_MAX), 0);
    reopen(f);
    assert_int_equal(f->port.kv_get(f->port.ctx, "f0", big, sizeof big), TCPOTA_POSIX_KV_VALUE_MAX);
    assert_int_equal(f->port.kv_get(f->port.ctx, key, big, sizeof big), TCPOTA_ERR_NOENT);
}

/* ---- power cuts --------------------------------------------------------- */

static void test_kv_set_power_cut_at_every_op(void **state)
{
    struct fx *f = *state;
    struct tcpota_flash_fault fault = {0};
    uint32_t n;
    char buf[32];

    /* How many flash operations one kv_set makes. */
    assert_int_equal(kv_set_str(f, "a", "old"), 0);
    tcpota_posix_set_fault(&f->dev, &fault);
    assert_int_equal(kv_set_str(f, "a", "new"), 0);
    n = fault.ops;
    assert_true(n >= 2);

    for (uint8_t tear = 0; tear < 2; tear++) {
        for (uint32_t k = 1; k <= n; k++) {
            int rc;
            recreate(f);
            assert_int_equal(kv_set_str(f, "keep", "kept"), 0);
            assert_int_equal(kv_set_str(f, "a", "old"), 0);
            memset(&fault, 0, sizeof fault);
            fault.cut_after = k;
            fault.tear = tear;
            tcpota_posix_set_fault(&f->dev, &fault);
            rc = kv_set_str(f, "a", "new");
            assert_int_equal(fault.lost, 1);
            reopen(f);
            assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), 3);
            if (rc == 0) {
                assert_string_equal(buf, "new");
            } else if (strcmp(buf, "old") != 0) {
                assert_string_equal(buf, "new");
            }
            assert_int_equal(kv_get_str(f, "keep", buf, sizeof buf), 4);
            assert_string_equal(buf, "kept");
            /* The device keeps working after the cut. */
            assert_int_equal(kv_set_str(f, "a", "after"), 0);
        }
    }
}

static void test_otadata_power_cut_at_every_op(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(2 * SEC + 5, 21, "2.0.0");
    struct tcpota_flash_fault fault = {0};

    for (uint8_t tear = 0; tear < 2; tear++) {
        for (uint32_t k = 1;; k++) {
            struct tcpota_posix_slot_info info;
            int rc;
            recreate(f);
            download(f, img);
            memset(&fault, 0, sizeof fault);
            fault.cut_after = k;
            fault.tear = tear;
            tcpota_posix_set_fault(&f->dev, &fault);
            rc = f->port.set_boot(f->port.ctx);
            if (!fault.lost) {
                assert_int_equal(rc, 0);
                break;
            }
            reopen(f);
            info = running(f);
            /* The old record (factory boots) or the new one (pending). */
            if (rc == 0 || info.slot == 1) {
                expect_running(f, 1, 1, 0);
            } else {
                expect_running(f, 0, 0, 0);
            }
        }
    }

    /* Same for mark_valid: confirmed, or still pending and so rolled back. */
    for (uint32_t k = 1;; k++) {
        int rc;
        recreate(f);
        full_update(f, img);
        boot_ok(f);
        memset(&fault, 0, sizeof fault);
        fault.cut_after = k;
        fault.tear = 1;
        tcpota_posix_set_fault(&f->dev, &fault);
        rc = f->port.mark_valid(f->port.ctx);
        if (!fault.lost) {
            assert_int_equal(rc, 0);
            break;
        }
        reopen(f);
        if (running(f).slot == 1) {
            expect_running(f, 1, 0, 0);
        } else {
            assert_int_not_equal(rc, 0);
            expect_running(f, 0, 0, 1);
        }
    }
    image_free(img);
}

/* A whole update with a cut at every operation: the device always boots,
 * into the old image or the new pending one, never into half an image. */
static void test_update_power_cut_at_every_op(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(3 * SEC + 100, 22, "2.0.0");
    struct tcpota_flash_fault fault = {0};
    uint32_t total = 0;

    for (uint8_t tear = 0; tear < 2; tear++) {
        for (uint32_t k = 1;; k++) {
            struct tcpota_posix_slot_info info;
            int rc, set_boot_ok = 0;
            recreate(f);
            memset(&fault, 0, sizeof fault);
            fault.cut_after = k;
            fault.tear = tear;
            tcpota_posix_set_fault(&f->dev, &fault);
            rc = f->port.ota_begin(f->port.ctx, &img->info);
            if (rc == 0) {
                rc = write_pieces(f, img, 0, img->size);
            }
            if (rc == 0) {
                rc = f->port.ota_end(f->port.ctx);
            }
            if (rc == 0) {
                rc = f->port.set_boot(f->port.ctx);
                set_boot_ok = rc == 0;
            }
            if (rc == 0) {
                rc = tcpota_posix_boot(&f->dev);
            }
            if (!fault.lost) {
                assert_int_equal(rc, 0);
                total = k - 1;
                break;
            }
            reopen(f);
            info = running(f);
            if (info.slot == 1) {
                assert_true(info.pending);
                assert_memory_equal(info.sha256, img->id, TCPOTA_ID_LEN);
            } else if (info.rolled_back) {
                /* Only once the new image had booted (PENDING written)
                 * and power went before it was confirmed. */
                assert_true(set_boot_ok);
            }
        }
    }
    /* otadata twice, 4 sectors erased, progs, otadata twice more. */
    assert_true(total >= 2 + 4 + 4 + 4);
    image_free(img);
}

/* ---- damaged files ------------------------------------------------------ */

static void test_truncated_files_fail_clearly(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = {"otadata.bin", "nvs.bin", "ota_1.bin"};

    for (unsigned i = 0; i < 3; i++) {
        recreate(f);
        tcpota_posix_close(&f->dev);
        cut_file(f, names[i], 5000);
        assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
        assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), names[i]));
        cut_file(f, names[i], 0);
        assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
    }
    recreate(f);
}

/* Opens the device in f->dir, which must fail with TCPOTA_ERR_IO, and
 * checks the detail says `want`. */
static void open_fails_saying(struct fx *f, const char *want)
{
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
    if (!strstr(tcpota_posix_strerror_detail(&f->dev), want)) {
        fail_msg("said \"%s\", not \"%s\"", tcpota_posix_strerror_detail(&f->dev), want);
    }
}

/* A slot file of the wrong size is the one named, as shorter or longer:
 * the slot size is taken from both slot files, not from ota_0.bin alone.
 * Fails if a cut ota_0.bin blames the intact ota_1.bin, or a grown file is
 * called truncated. On the default layout the file that left its size is
 * named; off it, nothing tells which one changed and both are named. */
static void test_slot_of_the_wrong_size_named(void **state)
{
    struct fx *f = *state;
    const uint32_t def = TCPOTA_POSIX_SLOT_SIZE_DEFAULT;

    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, 0, NULL), 0);
    tcpota_posix_close(&f->dev);
    cut_file(f, "ota_0.bin", def / 2);
    open_fails_saying(f, "ota_0.bin: file is 1048576 bytes, shorter than the 2097152 expected "
                         "(cut short?)");
    cut_file(f, "ota_0.bin", def);
    cut_file(f, "ota_1.bin", def * 2);
    open_fails_saying(f, "ota_1.bin: file is 4194304 bytes, longer than the 2097152 expected "
                         "(grown?)");
    cut_file(f, "ota_1.bin", def);
    cut_file(f, "nvs.bin", 4 * SEC);
    open_fails_saying(f, "nvs.bin: file is 16384 bytes, longer than the 8192 expected (grown?)");

    recreate(f); /* SLOT: not the default size */
    tcpota_posix_close(&f->dev);
    cut_file(f, "ota_0.bin", SLOT / 2);
    open_fails_saying(f, "ota_0.bin is 32768 bytes but ota_1.bin is 65536: the two slots must "
                         "be the same size");
    recreate(f);
}

static void test_garbage_otadata_falls_back_or_fails(void **state)
{
    /* Byte offsets in an otadata record: boot slot, state, slot 0's valid. */
    static const struct {
        uint32_t off;
        uint8_t value;
    } bad_fields[] = {{8, 7}, {9, TCPOTA_POSIX_IMG_ABORTED + 1}, {12, 2}};
    struct fx *f = *state;
    struct image *img = image_new(SEC, 23, "2.0.0");
    uint8_t rec[160];

    /* Records: create -> sector 0, ota_begin -> 1, set_boot -> 0. */
    full_update(f, img);
    tcpota_posix_close(&f->dev);
    poke_garbage(f, "otadata.bin", 0, SEC, 1);
    open_ok(f, 0);
    expect_running(f, 0, 0, 0); /* the ota_begin record: slot 0 boots */

    /* Garbage behind an open device: the bootloader rereads otadata. */
    full_update(f, img);
    poke_garbage(f, "otadata.bin", 0, 2 * SEC, 2);
    assert_int_equal(tcpota_posix_boot(&f->dev), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "otadata.bin"));
    tcpota_posix_close(&f->dev);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);

    /* Right CRC, impossible fields: not a record either. Each is the one
     * wrong field of its record (boot slot 7, a state past ABORTED, a
     * slot's valid flag 2), so each check is needed on its own. */
    for (size_t i = 0; i < sizeof bad_fields / sizeof bad_fields[0]; i++) {
        memset(rec, 0, sizeof rec);
        le32(rec, OTADATA_MAGIC);
        le32(rec + 4, 100);
        rec[bad_fields[i].off] = bad_fields[i].value;
        le32(rec + 156, test_crc32(rec, 156));
        poke(f, "otadata.bin", 0, rec, sizeof rec);
        assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
    }
    image_free(img);
    recreate(f);
}

static void test_garbage_nvs_falls_back_or_fails(void **state)
{
    struct fx *f = *state;
    uint8_t ff[2 * SEC];
    char buf[16];

    /* Tables: create -> sector 0, then 1, then 0 again. */
    assert_int_equal(kv_set_str(f, "a", "1"), 0);
    assert_int_equal(kv_set_str(f, "a", "2"), 0);
    tcpota_posix_close(&f->dev);
    poke_garbage(f, "nvs.bin", 4, 10, 3);
    open_ok(f, 0);
    assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), 1);
    assert_string_equal(buf, "1");

    tcpota_posix_close(&f->dev);
    poke_garbage(f, "nvs.bin", SEC + 8, 4, 4); /* the other one too */
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_posix_strerror_detail(&f->dev), "nvs.bin"));

    /* Blank (all erased) is an empty store, as a fresh NVS partition. */
    memset(ff, 0xFF, sizeof ff);
    poke(f, "nvs.bin", 0, ff, sizeof ff);
    open_ok(f, 0);
    assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), TCPOTA_ERR_NOENT);
    assert_int_equal(kv_set_str(f, "a", "3"), 0);
    reopen(f);
    assert_int_equal(kv_get_str(f, "a", buf, sizeof buf), 1);
    assert_string_equal(buf, "3");
}

/* A table cut at any length (CRC made right again) is accepted only when
 * the cut falls between two entries. */
static void test_nvs_table_cut_anywhere(void **state)
{
    struct fx *f = *state;
    uint8_t orig[SEC], sec[2 * SEC];
    char path[128];
    uint32_t total;
    int fd;

    assert_int_equal(kv_set_str(f, "key", "val"), 0); /* 1+3+2+3 = 9 */
    assert_int_equal(kv_set_str(f, "k2", "value"), 0); /* 1+2+2+5 = 10 */
    assert_int_equal(kv_set_str(f, "k3", ""), 0);      /* 1+2+2+0 = 5 */
    tcpota_posix_close(&f->dev);
    /* Tables went to sectors 0 (create), 1, 0, 1: the last is in 1. */
    snprintf(path, sizeof path, "%s/nvs.bin", f->dir);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, orig, SEC, SEC), SEC);
    close(fd);
    total = orig[8] | (uint32_t)orig[9] << 8;
    assert_int_equal(total, 24);

    for (uint32_t cut = 0; cut <= total; cut++) {
        int boundary = cut == 0 || cut == 9 || cut == 19 || cut == 24;
        int rc;
        memcpy(sec, orig, SEC);
        memset(sec + SEC, 0xFF, SEC);
        le32(sec + 8, cut);
        le32(sec + 12 + cut, test_crc32(sec, 12 + cut));
        poke(f, "nvs.bin", 0, sec, sizeof sec);
        rc = tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL);
        if (rc != (boundary ? 0 : TCPOTA_ERR_IO)) {
            fail_msg("cut at %u: open %d", (unsigned)cut, rc);
        }
        tcpota_posix_close(&f->dev);
    }
    /* A key no kv_set can write (NUL inside) marks a forged table. */
    memcpy(sec, orig, SEC);
    sec[12 + 2] = 0; /* "key" -> "k\0y" */
    le32(sec + 12 + total, test_crc32(sec, 12 + total));
    poke(f, "nvs.bin", 0, sec, sizeof sec);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), TCPOTA_ERR_IO);
    memcpy(sec, orig, SEC);
    le32(sec + 12 + total, test_crc32(sec, 12 + total));
    poke(f, "nvs.bin", 0, sec, sizeof sec);
    open_ok(f, 0);
}

static uint32_t rnd(uint32_t *x)
{
    *x = *x * 1103515245u + 12345u;
    return *x >> 8;
}

/* Random but mostly well-formed entries {klen, key, vlen, value} in at
 * most `cap` bytes, one byte then maybe mutated. Returns the bytes used. */
static uint32_t forge_entries(uint8_t *p, uint32_t cap, uint32_t *x)
{
    uint32_t at = 0;

    for (;;) {
        uint32_t klen = 1 + rnd(x) % 16, vlen = rnd(x) % 540;
        if (at + 1 + klen + 2 + vlen > cap) {
            break;
        }
        p[at] = (uint8_t)klen;
        for (uint32_t i = 0; i < klen; i++) {
            p[at + 1 + i] = (uint8_t)('a' + rnd(x) % 3);
        }
        p[at + 1 + klen] = (uint8_t)vlen;
        p[at + 2 + klen] = (uint8_t)(vlen >> 8);
        for (uint32_t i = 0; i < vlen; i++) {
            p[at + 3 + klen + i] = (uint8_t)rnd(x);
        }
        at += 1 + klen + 2 + vlen;
    }
    if (at && rnd(x) % 2) {
        p[rnd(x) % at] = (uint8_t)rnd(x);
    }
    return at;
}

/* Tables with a correct CRC around forged entries: the parser must accept
 * or refuse each without reading outside the sector. */
static void test_forged_nvs_tables_never_crash(void **state)
{
    struct fx *f = *state;
    uint8_t sec[2 * SEC];
    uint32_t x = 12345;
    int accepted = 0, refused = 0;

    for (int round = 0; round < 300; round++) {
        uint32_t used;
        int rc;
        char buf[TCPOTA_POSIX_KV_VALUE_MAX + 1];
        tcpota_posix_close(&f->dev);
        memset(sec, 0xFF, sizeof sec); /* sector 1 blank: no fallback */
        used = forge_entries(sec + 12, rnd(&x) % (SEC - 16 + 1), &x);
        le32(sec, 0x3153564eu);
        le32(sec + 4, 1000);
        le32(sec + 8, round % 50 == 0 ? 0xFFFFFFF0u : used);
        le32(sec + 12 + used, test_crc32(sec, 12 + used));
        poke(f, "nvs.bin", 0, sec, sizeof sec);
        rc = tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL);
        if (rc == 0) {
            boot_ok(f);
            rc = kv_get_str(f, "a", buf, sizeof buf);
            assert_true(rc == TCPOTA_ERR_NOENT || (rc >= 0 && rc <= TCPOTA_POSIX_KV_VALUE_MAX));
            rc = kv_set_str(f, "b", "x");
            assert_true(rc == 0 || rc == TCPOTA_ERR_NOSPC);
            accepted++;
        } else {
            assert_int_equal(rc, TCPOTA_ERR_IO);
            refused++;
        }
    }
    /* Both paths of the parser were taken. */
    assert_true(accepted > 10);
    assert_true(refused > 10);
    recreate(f);
}

/* ---- records (record.c) ------------------------------------------------- */


/* Read bytes of a device file behind the port's back. */
static void peek(struct fx *f, const char *name, uint32_t off, void *p, size_t len)
{
    char path[128];
    int fd;

    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, p, len, off), (ssize_t)len);
    close(fd);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The sector of nvs.bin that holds the newer table (both must hold one,
 * with small sequence numbers). */
static unsigned nvs_newer(struct fx *f)
{
    uint8_t s0[4], s1[4];

    peek(f, "nvs.bin", NVS_SEQ_OFF, s0, 4);
    peek(f, "nvs.bin", SEC + NVS_SEQ_OFF, s1, 4);
    return rd32(s1) > rd32(s0) ? 1 : 0;
}

/* Sets the u32 at `off` of the NVS table in `sector` to `v`, and its CRC
 * right again. */
static void nvs_reseal(struct fx *f, unsigned sector, uint32_t off, uint32_t v)
{
    uint8_t table[SEC];
    uint32_t used;

    peek(f, "nvs.bin", sector * SEC, table, sizeof table);
    used = rd32(table + NVS_USED_OFF);
    assert_true(NVS_HDR + used + 4 <= sizeof table);
    le32(table + off, v);
    le32(table + NVS_HDR + used, test_crc32(table, NVS_HDR + used));
    poke(f, "nvs.bin", sector * SEC, table, NVS_HDR + used + 4);
}

/* Two tables: the older says k=a, the newer k=b. Closes the device and
 * returns the newer one's sector. */
static unsigned two_tables(struct fx *f)
{
    assert_int_equal(kv_set_str(f, "k", "a"), 0);
    assert_int_equal(kv_set_str(f, "k", "b"), 0);
    tcpota_posix_close(&f->dev);
    return nvs_newer(f);
}

static void expect_k(struct fx *f, const char *want)
{
    char buf[8];

    assert_int_equal(kv_get_str(f, "k", buf, sizeof buf), (int)strlen(want));
    assert_string_equal(buf, want);
}

/* Sequence numbers compare modulo 2^32: on a device whose records reached
 * 0xFFFFFFFF, the next one (seq 0) is the newer, and survives a reboot.
 * Then the sector of that seq 0 table is lost: the one left, seq
 * 0xFFFFFFFF, is read whichever sector it is in. Fails if the larger
 * number always wins, or an invalid sector is taken for the newer one. */
static void test_record_seq_wraps(void **state)
{
    struct fx *f = *state;
    static const char *const vals[] = {"a", "b", "c"};

    for (size_t n = 2; n <= 3; n++) { /* the newer table in sector 0, then 1 */
        unsigned newer;

        recreate(f);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(kv_set_str(f, "k", vals[i]), 0);
        }
        tcpota_posix_close(&f->dev);
        newer = nvs_newer(f);
        nvs_reseal(f, newer, NVS_SEQ_OFF, 0xFFFFFFFFu);
        nvs_reseal(f, newer ^ 1u, NVS_SEQ_OFF, 0xFFFFFFFEu);
        open_ok(f, 0);
        expect_k(f, vals[n - 1]);
        assert_int_equal(kv_set_str(f, "k", "z"), 0); /* seq 0, in the other sector */
        reopen(f);
        expect_k(f, "z");
        tcpota_posix_close(&f->dev);
        poke_garbage(f, "nvs.bin", (newer ^ 1u) * SEC, SEC, (uint32_t)n);
        open_ok(f, 0);
        expect_k(f, vals[n - 1]);
    }
}

/* A table changed behind the port (one byte of a value, the structure
 * intact) fails its CRC, and one that carries another record's magic (an
 * otadata record's, its CRC right) is no table: the older table is read.
 * Fails if either check is missing. */
static void test_record_crc_and_magic_checked(void **state)
{
    struct fx *f = *state;
    const uint8_t upper_b = 'B';
    unsigned newer = two_tables(f);

    poke(f, "nvs.bin", newer * SEC + NVS_HDR + 1 + 1 + 2, &upper_b, 1); /* k's value */
    open_ok(f, 0);
    expect_k(f, "a");
    recreate(f);
    newer = two_tables(f);
    nvs_reseal(f, newer, 0, OTADATA_MAGIC);
    open_ok(f, 0);
    expect_k(f, "a");
}

/* A record is on the disk before the call that wrote it returns, and the
 * slot bytes a resume record claims are on it before that record: a disk
 * that fails to sync the NVS file, or a slot file, fails kv_set. Fails if
 * either sync is skipped or its error dropped. */
static void test_record_syncs_checked(void **state)
{
    struct fx *f = *state;
    const int fds[] = {f->dev.nvs.fd, f->dev.slot[0].fd, f->dev.slot[1].fd};

    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        fail_sync_fd = fds[i];
        assert_int_equal(kv_set_str(f, "k", "v"), TCPOTA_ERR_IO);
    }
    fail_sync_fd = -1;
    assert_int_equal(kv_set_str(f, "k", "v"), 0);
}

/* A slot whose download finished but was never set to boot (power cut
 * between ota_end and set_boot) is no rollback target, though its bytes
 * hash to its metadata: only set_boot makes a slot bootable. With the
 * running image damaged, no slot boots. Fails if the bootloader boots a
 * slot whose valid flag is 0. */
static void test_slot_never_set_to_boot_never_boots(void **state)
{
    struct fx *f = *state;
    struct image *a = image_new(SEC, 41, "2.0.0"), *b = image_new(SEC, 42, "3.0.0");

    full_update(f, a);
    reopen(f); /* slot 1, pending */
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    download(f, b); /* into slot 0, never set to boot */
    tcpota_posix_close(&f->dev);
    poke_garbage(f, "ota_1.bin", 0, SEC, 3);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 0, 0, NULL), 0);
    assert_int_equal(tcpota_posix_boot(&f->dev), TCPOTA_ERR_INTEGRITY);
    image_free(a);
    image_free(b);
    recreate(f);
}

/* Sets the u32 at `off` of the otadata record in `sector`, its CRC right
 * again (a record damaged in a way only its fields show). */
static void otadata_reseal(struct fx *f, unsigned sector, uint32_t off, uint32_t v)
{
    uint8_t rec[OTADATA_REC_LEN];

    peek(f, "otadata.bin", sector * SEC, rec, sizeof rec);
    le32(rec + off, v);
    le32(rec + OTADATA_CRC_OFF, test_crc32(rec, OTADATA_CRC_OFF));
    poke(f, "otadata.bin", sector * SEC, rec, sizeof rec);
}

/* An image of exactly the slot's size boots. Metadata that claims more
 * than the slot holds (its record's CRC right) makes that slot
 * unbootable, so the device rolls back; the boot does not fail reading
 * past the slot. */
static void test_slot_size_bound_at_boot(void **state)
{
    struct fx *f = *state;
    struct image *full = image_new(SLOT, 51, "2.0.0"), *small = image_new(SEC, 52, "3.0.0");

    full_update(f, full);
    reopen(f);
    expect_running(f, 1, 1, 0);
    recreate(f);
    full_update(f, small);
    tcpota_posix_close(&f->dev);
    /* Records: create -> sector 0, ota_begin -> 1, set_boot -> 0. */
    otadata_reseal(f, 0, OTADATA_META1_SIZE_OFF, SLOT + SEC);
    open_ok(f, 0);
    expect_running(f, 0, 0, 1);
    image_free(full);
    image_free(small);
}

/* A newer otadata record whose CRC does not match (a bit flipped on flash,
 * its fields all in range) is not taken: the older record is (a mutation
 * review: without the frame's check a flipped record could boot an image
 * that failed its health check). */
static void test_otadata_crc_checked(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 71, "2.0.0");
    uint8_t b;

    full_update(f, img);
    tcpota_posix_close(&f->dev);
    /* Records: create -> sector 0, ota_begin -> 1, set_boot -> 0 (newest):
     * the first byte of slot 1's version there. */
    peek(f, "otadata.bin", 12 + 72 + 40, &b, 1);
    b ^= 0x01;
    poke(f, "otadata.bin", 12 + 72 + 40, &b, 1);
    open_ok(f, 0);
    expect_running(f, 0, 0, 0);
    image_free(img);
}

/* Marking the running image invalid needs the other slot to fall back to:
 * with none (otadata damaged or forged so that slot 0 is not valid), the
 * port refuses rather than leave no bootable slot. */
static void test_mark_invalid_needs_a_fallback(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 72, "2.0.0");

    full_update(f, img);
    tcpota_posix_close(&f->dev);
    otadata_reseal(f, 0, 12, 0); /* slot 0's meta: valid 0 */
    open_ok(f, 0);
    expect_running(f, 1, 1, 0);
    assert_int_equal(f->port.mark_invalid(f->port.ctx), TCPOTA_ERR_STATE);
    image_free(img);
}

/* The image state otadata records now, as `tcpota device status` reads it. */
static uint8_t recorded_state(struct fx *f)
{
    static struct tcpota_posix_dev d; /* ~9 KiB: off the stack */
    struct tcpota_posix_status st;

    assert_int_equal(tcpota_posix_inspect(&d, f->dir, &st), 0);
    return st.boot_state;
}

/* The state otadata records for the boot slot follows the bootloader: an
 * image refused at its first boot (its bytes do not hash) never ran and
 * stays NEW, not PENDING_VERIFY; one rebooted while still pending becomes
 * ABORTED. */
static void test_image_states_recorded(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 61, "2.0.0");
    uint8_t b;

    full_update(f, img);
    peek(f, "ota_1.bin", 5, &b, 1);
    b ^= 0xFF;
    poke(f, "ota_1.bin", 5, &b, 1);
    boot_ok(f);
    expect_running(f, 0, 0, 1);
    assert_int_equal(recorded_state(f), TCPOTA_POSIX_IMG_NEW);
    recreate(f);
    full_update(f, img);
    boot_ok(f); /* pending */
    boot_ok(f); /* reset before mark_valid */
    expect_running(f, 0, 0, 1);
    assert_int_equal(recorded_state(f), TCPOTA_POSIX_IMG_ABORTED);
    image_free(img);
}

/* The bootloader that finds the boot slot's image bad and cannot read the
 * other slot fails the boot: it never runs a slot it could not check.
 * Here slot 0 holds a NEW image whose bytes went bad, and ota_1.bin was
 * cut short behind the open device. */
static void test_unreadable_rollback_target_fails_the_boot(void **state)
{
    struct fx *f = *state;
    struct image *a = image_new(SEC, 71, "2.0.0"), *b = image_new(SEC, 72, "3.0.0");
    uint8_t byte;

    full_update(f, a);
    reopen(f);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0); /* slot 1 */
    full_update(f, b);                                    /* slot 0, NEW */
    peek(f, "ota_0.bin", 0, &byte, 1);
    byte ^= 0xFF;
    poke(f, "ota_0.bin", 0, &byte, 1);
    cut_file(f, "ota_1.bin", 0);
    assert_int_equal(tcpota_posix_boot(&f->dev), TCPOTA_ERR_IO);
    image_free(a);
    image_free(b);
    recreate(f);
}

/* Writes an NVS table of the given entry bytes into `sector` of nvs.bin,
 * keeping that sector's sequence number, its CRC right. */
static void nvs_forge(struct fx *f, unsigned sector, const uint8_t *entries, uint32_t used)
{
    enum { NVS_MAGIC = 0x3153564eu };
    uint8_t table[SEC];

    assert_true(NVS_HDR + used + 4 <= sizeof table);
    peek(f, "nvs.bin", sector * SEC, table, NVS_HDR);
    le32(table, NVS_MAGIC);
    le32(table + NVS_USED_OFF, used);
    memcpy(table + NVS_HDR, entries, used);
    le32(table + NVS_HDR + used, test_crc32(table, NVS_HDR + used));
    poke(f, "nvs.bin", sector * SEC, table, NVS_HDR + used + 4);
}

/* A table whose CRC is right but one of whose entries is not well formed
 * is no table: the older one is read. One case has an empty key before
 * k=b, the other a key one character longer than the maximum. Fails if
 * either rule goes unchecked. */
static void test_forged_nvs_entries_refused(void **state)
{
    enum { KEY = TCPOTA_POSIX_KV_KEY_MAX + 1 };
    static const uint8_t empty_key[] = {0, 0, 0, 1, 'k', 1, 0, 'b'};
    uint8_t long_key[1 + KEY + 2];
    struct fx *f = *state;

    memset(long_key, 'k', sizeof long_key);
    long_key[0] = KEY;
    long_key[1 + KEY] = long_key[2 + KEY] = 0; /* no value */
    nvs_forge(f, two_tables(f), empty_key, sizeof empty_key);
    open_ok(f, 0);
    expect_k(f, "a");
    recreate(f);
    nvs_forge(f, two_tables(f), long_key, sizeof long_key);
    open_ok(f, 0);
    expect_k(f, "a");
}

/* The NVS table holds SEC - 16 entry bytes (a sector less its header and
 * CRC): values that fill it to the byte are stored and read back; one byte
 * more is refused as no space, never written past the sector. */
static void test_nvs_table_full_to_the_byte(void **state)
{
    enum { ENTRY_OVERHEAD = 1 + 2, KEYLEN = 2, FULL_VALUES = 7 };
    enum { ROOM = SEC - NVS_HDR - 4, VMAX = TCPOTA_POSIX_KV_VALUE_MAX };
    enum { LAST = ROOM - FULL_VALUES * (ENTRY_OVERHEAD + KEYLEN + VMAX) - ENTRY_OVERHEAD - KEYLEN };
    static uint8_t val[VMAX], back[VMAX];
    struct fx *f = *state;
    char key[KEYLEN + 1];

    memset(val, 0x5a, sizeof val);
    for (int i = 0; i < FULL_VALUES; i++) {
        key[0] = 'k';
        key[1] = (char)('0' + i); /* FULL_VALUES < 10 */
        key[2] = '\0';
        assert_int_equal(f->port.kv_set(f->port.ctx, key, val, VMAX), 0);
    }
    assert_int_equal(f->port.kv_set(f->port.ctx, "zz", val, LAST + 1), TCPOTA_ERR_NOSPC);
    assert_int_equal(f->port.kv_set(f->port.ctx, "zz", val, LAST), 0);
    reopen(f);
    assert_int_equal(f->port.kv_get(f->port.ctx, "zz", back, sizeof back), LAST);
    assert_memory_equal(back, val, LAST);
}

/* Creating a device makes its directory entries durable (the directory
 * is synced after the renames): a directory that cannot be synced fails
 * the creation rather than leave a device a power cut may take back. */
static void test_create_syncs_the_directory(void **state)
{
    struct fx *f = *state;

    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    fail_fsync = 1;
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, NULL), TCPOTA_ERR_IO);
    fail_fsync = 0;
    recreate(f);
}

/* The marker of a creation under way is durable before any region file is
 * made: when its directory's sync fails, the creation stops there, with no
 * slot file (a mutation review: without that sync, a cut after the slots
 * were made could read as a device that lost its otadata, refused rather
 * than made again). */
static void test_create_marker_synced_first(void **state)
{
    struct fx *f = *state;
    char path[128];

    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    fail_next_fsync = 1;
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, NULL), TCPOTA_ERR_IO);
    fail_next_fsync = 0;
    snprintf(path, sizeof path, "%s/ota_0.bin", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    recreate(f);
}

/* A slot file that is no regular file is named as such, also on a device
 * whose slots are not of the default size (where two lengths that differ
 * would otherwise read as a slot cut short). */
static void test_slot_not_a_regular_file_named(void **state)
{
    struct fx *f = *state;
    char path[128];

    tcpota_posix_close(&f->dev);
    snprintf(path, sizeof path, "%s/ota_0.bin", f->dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0644), 0);
    open_fails_saying(f, "ota_0.bin: not a regular file");
    assert_int_equal(unlink(path), 0);
    recreate(f);
}

/* Two region files that are one file (a hard link, a symbolic link: a
 * hostile trial linked ota_0.bin to ota_1.bin, and an update wrote over
 * the running slot) are refused, each saying why; the files are left. */
static void test_linked_region_files_refused(void **state)
{
    struct fx *f = *state;
    char p0[128], p1[128];
    struct stat st;

    tcpota_posix_close(&f->dev);
    snprintf(p0, sizeof p0, "%s/ota_0.bin", f->dir);
    snprintf(p1, sizeof p1, "%s/ota_1.bin", f->dir);
    assert_int_equal(unlink(p0), 0);
    assert_int_equal(link(p1, p0), 0);
    open_fails_saying(f, "ota_0.bin: the file has 2 names (hard links): a device's flash files are"
                         " its own; make it a copy of its own (cp, not ln)");
    assert_int_equal(unlink(p0), 0);
    assert_int_equal(symlink("ota_1.bin", p0), 0);
    open_fails_saying(f, "ota_0.bin: a symbolic link: a device's flash files are its own; put the"
                         " file itself there");
    assert_int_equal(lstat(p0, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(unlink(p0), 0);
    recreate(f);
}

/* A slot size that is no whole number of sectors is refused before
 * anything is written: no directory, no half-made device. */
static void test_bad_slot_size_writes_nothing(void **state)
{
    struct fx *f = *state;
    struct stat st;

    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SEC + 1, NULL), TCPOTA_ERR_INVAL);
    assert_int_not_equal(stat(f->dir, &st), 0);
    recreate(f);
}

/* A factory version of TCPOTA_POSIX_VERSION_MAX characters is stored whole;
 * one character more is refused, not cut. */
static void test_factory_version_bounds(void **state)
{
    struct fx *f = *state;
    char v[TCPOTA_POSIX_VERSION_MAX + 2];

    memset(v, '7', sizeof v - 1);
    v[sizeof v - 1] = '\0'; /* one too long */
    tcpota_posix_close(&f->dev);
    tmpdir_remove(f->dir);
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, v), TCPOTA_ERR_INVAL);
    v[TCPOTA_POSIX_VERSION_MAX] = '\0';
    assert_int_equal(tcpota_posix_open(&f->dev, f->dir, 1, SLOT, v), 0);
    boot_ok(f);
    assert_string_equal(running(f).version, v);
}

/* ota_end puts the image's bytes on the disk before it returns: a slot
 * that cannot be synced fails it, and the image is not set to boot. */
static void test_ota_end_syncs_the_slot(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 81, "2.0.0");

    assert_int_equal(f->port.ota_begin(f->port.ctx, &img->info), 0);
    assert_int_equal(write_pieces(f, img, 0, img->size), 0);
    fail_sync_fd = f->dev.slot[1].fd;
    assert_int_equal(f->port.ota_end(f->port.ctx), TCPOTA_ERR_IO);
    fail_sync_fd = -1;
    assert_int_equal(f->port.set_boot(f->port.ctx), TCPOTA_ERR_STATE);
    image_free(img);
}

/* Only an image pending verification can be rejected: a confirmed one
 * with a previous image in the other slot stays, so a confirmed release
 * is never rolled back to the one before it. */
static void test_confirmed_image_cannot_be_rejected(void **state)
{
    struct fx *f = *state;
    struct image *img = image_new(SEC, 91, "2.0.0");

    full_update(f, img);
    reopen(f);
    assert_int_equal(f->port.mark_valid(f->port.ctx), 0);
    assert_int_equal(f->port.mark_invalid(f->port.ctx), TCPOTA_ERR_STATE);
    reopen(f);
    expect_running(f, 1, 0, 0);
    image_free(img);
}

/* The port's signature check refuses a signature over other bytes or by
 * another key: it is what keeps an unsigned image from being installed
 * on a device with --trust. */
static void test_ed25519_verify_refuses_forgeries(void **state)
{
    struct fx *f = *state;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t other_pk[crypto_sign_PUBLICKEYBYTES], other_sk[crypto_sign_SECRETKEYBYTES];
    uint8_t sig[crypto_sign_BYTES], msg[] = "manifest";

    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(other_pk, other_sk);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
    assert_int_equal(f->port.ed25519_verify(f->port.ctx, sig, msg, sizeof msg, pk), 0);
    assert_int_equal(f->port.ed25519_verify(f->port.ctx, sig, msg, sizeof msg, other_pk),
                     TCPOTA_ERR_BADSIG);
    msg[0] ^= 1;
    assert_int_equal(f->port.ed25519_verify(f->port.ctx, sig, msg, sizeof msg, pk),
                     TCPOTA_ERR_BADSIG);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_dir_boots_factory_slot0),
        T(test_defaults_and_create_is_idempotent),
        T(test_partial_device_not_recreated),
        T(test_calls_before_boot_refused),
        T(test_update_pending_then_valid_survives_reopen),
        T(test_reboot_while_pending_rolls_back),
        T(test_mark_invalid_returns_to_previous),
        T(test_corrupted_slot_falls_back),
        T(test_no_bootable_slot_is_an_error),
        T(test_set_boot_verifies_image),
        T(test_begin_refused_while_pending),
        T(test_resume_after_reopen_is_byte_exact),
        T(test_resume_checks),
        T(test_writing_unmarks_a_bootable_slot),
        T(test_resume_at_image_end),
        T(test_image_larger_than_slot_nospc),
        T(test_detail_for_its_own_failure),
        T(test_write_past_size_range),
        T(test_state_machine_of_an_image),
        T(test_bad_offers_rejected),
        T(test_longest_version_round_trips),
        T(test_ota_read_bounds),
        T(test_sha256_incremental),
        T(test_kv_set_get_erase_survive_reopen),
        T(test_kv_bad_keys_and_sizes),
        T(test_kv_set_power_cut_at_every_op),
        T(test_otadata_power_cut_at_every_op),
        T(test_update_power_cut_at_every_op),
        T(test_truncated_files_fail_clearly),
        T(test_slot_of_the_wrong_size_named),
        T(test_garbage_otadata_falls_back_or_fails),
        T(test_garbage_nvs_falls_back_or_fails),
        T(test_nvs_table_cut_anywhere),
        T(test_forged_nvs_tables_never_crash),
        T(test_record_seq_wraps),
        T(test_record_crc_and_magic_checked),
        T(test_record_syncs_checked),
        T(test_slot_never_set_to_boot_never_boots),
        T(test_slot_size_bound_at_boot),
        T(test_otadata_crc_checked),
        T(test_kv_of_a_closed_device),
        T(test_create_marker_synced_first),
        T(test_mark_invalid_needs_a_fallback),
        T(test_image_states_recorded),
        T(test_unreadable_rollback_target_fails_the_boot),
        T(test_forged_nvs_entries_refused),
        T(test_nvs_table_full_to_the_byte),
        T(test_create_syncs_the_directory),
        T(test_slot_not_a_regular_file_named),
        T(test_linked_region_files_refused),
        T(test_bad_slot_size_writes_nothing),
        T(test_factory_version_bounds),
        T(test_ota_end_syncs_the_slot),
        T(test_confirmed_image_cannot_be_rejected),
        T(test_ed25519_verify_refuses_forgeries),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
