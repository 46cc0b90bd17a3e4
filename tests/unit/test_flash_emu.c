/*
 * test_flash_emu.c - the file-backed NOR flash emulator and its power cuts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flash_emu.h"
#include "sync_fault.h"

#define SEC TCPOTA_SECTOR_SIZE

struct fixture {
    char dir[64];
    char path[96];
    struct tcpota_flash fl;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    strcpy(f->dir, "/tmp/tcpota-flash-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/region.bin", f->dir);
    f->fl.fd = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tcpota_flash_close(&f->fl);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A region of `n` sectors, freshly created. */
static struct tcpota_flash *fresh(void **state, uint32_t n)
{
    struct fixture *f = *state;

    assert_int_equal(tcpota_flash_open(&f->fl, f->path, n * SEC, 1), 0);
    return &f->fl;
}

static void expect_bytes(struct tcpota_flash *fl, uint32_t off, size_t len, uint8_t v)
{
    uint8_t buf[SEC];

    assert_true(len <= sizeof buf);
    assert_int_equal(tcpota_flash_read(fl, off, buf, len), 0);
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != v) {
            fail_msg("byte 0x%lx is 0x%02x, expected 0x%02x", (unsigned long)(off + i), buf[i], v);
        }
    }
}

/* Fill a whole sector with `v` (it must be erased). */
static void fill_sector(struct tcpota_flash *fl, uint32_t off, uint8_t v)
{
    uint8_t buf[SEC];

    memset(buf, v, sizeof buf);
    assert_int_equal(tcpota_flash_prog(fl, off, buf, sizeof buf), 0);
}

static void test_created_region_reads_erased(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 3);
    struct stat st;

    assert_int_equal(fl->size, 3 * SEC);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_size, 3 * SEC);
    for (uint32_t s = 0; s < 3; s++) {
        expect_bytes(fl, s * SEC, SEC, 0xFF);
    }
}

static void test_prog_then_read_persists(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 2);
    const uint8_t data[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0};
    uint8_t buf[12];

    assert_int_equal(tcpota_flash_prog(fl, SEC - 5, data, sizeof data), 0);
    assert_int_equal(tcpota_flash_read(fl, SEC - 6, buf, sizeof buf), 0);
    assert_int_equal(buf[0], 0xFF);
    assert_memory_equal(buf + 1, data, sizeof data);
    assert_int_equal(buf[11], 0xFF);

    /* Reopened with size 0, the region takes its size from the file. */
    assert_int_equal(tcpota_flash_close(fl), 0);
    assert_int_equal(tcpota_flash_open(fl, f->path, 0, 0), 0);
    assert_int_equal(fl->size, 2 * SEC);
    assert_int_equal(tcpota_flash_read(fl, SEC - 5, buf, sizeof data), 0);
    assert_memory_equal(buf, data, sizeof data);
}

static void test_prog_over_programmed_byte_fails(void **state)
{
    struct tcpota_flash *fl = fresh(state, 1);
    const uint8_t zero = 0x00, ab = 0xAB;
    uint8_t span[8];

    assert_int_equal(tcpota_flash_prog(fl, 0x123, &zero, 1), 0);
    assert_int_equal(tcpota_flash_prog(fl, 0x123, &ab, 1), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(fl), "prog at 0x123 over non-erased byte"));
    assert_non_null(strstr(tcpota_flash_detail(fl), "region.bin"));

    /* Strict even when the value would not change. */
    assert_int_equal(tcpota_flash_prog(fl, 0x200, &ab, 1), 0);
    assert_int_equal(tcpota_flash_prog(fl, 0x200, &ab, 1), TCPOTA_ERR_IO);

    /* A prog that overlaps one programmed byte writes nothing at all. */
    memset(span, 0x11, sizeof span);
    assert_int_equal(tcpota_flash_prog(fl, 0x120, span, sizeof span), TCPOTA_ERR_IO);
    expect_bytes(fl, 0x120, 3, 0xFF);
    expect_bytes(fl, 0x124, 4, 0xFF);
}

static void test_erase_restores_one_sector(void **state)
{
    struct tcpota_flash *fl = fresh(state, 3);
    const uint8_t v = 0x42;

    fill_sector(fl, 0, 0x00);
    fill_sector(fl, SEC, 0x00);
    fill_sector(fl, 2 * SEC, 0x00);
    assert_int_equal(tcpota_flash_erase(fl, SEC, SEC), 0);
    expect_bytes(fl, SEC, SEC, 0xFF);
    expect_bytes(fl, 0, SEC, 0x00);
    expect_bytes(fl, 2 * SEC, SEC, 0x00);
    assert_int_equal(tcpota_flash_prog(fl, SEC + 7, &v, 1), 0);
    assert_int_equal(tcpota_flash_erase(fl, 0, 3 * SEC), 0);
    for (uint32_t s = 0; s < 3; s++) {
        expect_bytes(fl, s * SEC, SEC, 0xFF);
    }
}

static void test_unaligned_erase_rejected(void **state)
{
    struct tcpota_flash *fl = fresh(state, 2);

    fill_sector(fl, 0, 0x00);
    assert_int_equal(tcpota_flash_erase(fl, 100, SEC), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_erase(fl, 0, 100), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_erase(fl, 0, 0), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_erase(fl, SEC / 2, SEC / 2), TCPOTA_ERR_INVAL);
    expect_bytes(fl, 0, SEC, 0x00);
}

static void test_out_of_bounds_rejected(void **state)
{
    struct tcpota_flash *fl = fresh(state, 2);
    uint8_t buf[4] = {0};

    assert_int_equal(tcpota_flash_read(fl, 2 * SEC - 1, buf, 2), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_read(fl, 2 * SEC + 1, buf, 0), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_read(fl, UINT32_MAX, buf, 2), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_read(fl, 2 * SEC, buf, 0), 0);
    assert_int_equal(tcpota_flash_prog(fl, 2 * SEC - 2, buf, 4), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_erase(fl, 2 * SEC, SEC), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_erase(fl, SEC, 2 * SEC), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_erase(fl, UINT32_MAX - SEC + 1, SEC), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_flash_prog(fl, 0, NULL, 1), TCPOTA_ERR_INVAL);
    /* Nothing of the rejected prog landed. */
    expect_bytes(fl, 2 * SEC - 2, 2, 0xFF);
}

static void test_open_rejects_bad_files(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = &f->fl;
    uint8_t buf[8];

    assert_int_equal(tcpota_flash_open(fl, f->path, SEC, 0), TCPOTA_ERR_NOENT);
    assert_int_equal(fl->fd, -1);
    assert_int_equal(tcpota_flash_open(fl, f->path, 100, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_open(fl, f->path, 0, 1), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_open(fl, f->path, 2 * SEC, 1), 0);
    assert_int_equal(tcpota_flash_close(fl), 0);
    assert_int_equal(tcpota_flash_close(fl), 0);

    /* Wrong size, truncated, or a length no region can have. */
    assert_int_equal(tcpota_flash_open(fl, f->path, 3 * SEC, 0), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(fl), "expected"));
    assert_int_equal(truncate(f->path, SEC + 10), 0);
    assert_int_equal(tcpota_flash_open(fl, f->path, 2 * SEC, 0), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_flash_open(fl, f->path, 0, 0), TCPOTA_ERR_IO);
    assert_int_equal(fl->fd, -1);

    /* A file cut short behind an open region: an error, not stale data. */
    assert_int_equal(truncate(f->path, 2 * SEC), 0);
    assert_int_equal(tcpota_flash_open(fl, f->path, 2 * SEC, 0), 0);
    assert_int_equal(truncate(f->path, SEC), 0);
    assert_int_equal(tcpota_flash_read(fl, SEC + 4, buf, sizeof buf), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(fl), "short read"));

    /* A directory is not a region. */
    assert_int_equal(tcpota_flash_close(fl), 0);
    assert_int_equal(tcpota_flash_open(fl, f->dir, 0, 0), TCPOTA_ERR_IO);
}

static void test_fault_counts_operations(void **state)
{
    struct tcpota_flash *fl = fresh(state, 3);
    struct tcpota_flash_fault fault = {0};
    const uint8_t v = 0;

    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_erase(fl, 0, 2 * SEC), 0);
    assert_int_equal(fault.ops, 2); /* one per sector */
    assert_int_equal(tcpota_flash_prog(fl, 5, &v, 1), 0);
    assert_int_equal(fault.ops, 3);
    assert_int_equal(tcpota_flash_prog(fl, 6, &v, 0), 0);
    assert_int_equal(tcpota_flash_prog(fl, 5, &v, 1), TCPOTA_ERR_IO); /* refused */
    assert_int_equal(tcpota_flash_erase(fl, 1, SEC), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_flash_read(fl, 0, NULL, 0), 0);
    assert_int_equal(fault.ops, 3);
    assert_int_equal(fault.lost, 0);
}

static void test_fault_cut_after_k_stops_exactly(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 2);
    struct tcpota_flash_fault fault = {.cut_after = 3};
    const uint8_t a = 0xA1, b = 0xB2, c = 0xC3;
    struct tcpota_flash again;
    uint8_t got[3];

    fill_sector(fl, SEC, 0x00);
    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_prog(fl, 0, &a, 1), 0);       /* op 1 */
    assert_int_equal(tcpota_flash_erase(fl, SEC, SEC), 0);      /* op 2 */
    assert_int_equal(tcpota_flash_prog(fl, SEC, &b, 1), 0);     /* op 3, the last */
    assert_int_equal(fault.lost, 1);
    assert_int_equal(tcpota_flash_prog(fl, 1, &c, 1), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(fl), "power lost"));
    assert_int_equal(tcpota_flash_erase(fl, 0, SEC), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_flash_read(fl, 0, got, 1), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_flash_sync(fl), TCPOTA_ERR_IO);
    assert_int_equal(fault.ops, 3);

    /* After the "reboot" the first three operations are there, no more. */
    assert_int_equal(tcpota_flash_open(&again, f->path, 2 * SEC, 0), 0);
    assert_int_equal(tcpota_flash_read(&again, 0, got, 2), 0);
    assert_int_equal(got[0], a);
    assert_int_equal(got[1], 0xFF);
    assert_int_equal(tcpota_flash_read(&again, SEC, got, 2), 0);
    assert_int_equal(got[0], b);
    assert_int_equal(got[1], 0xFF);
    tcpota_flash_close(&again);
}

static void test_fault_schedule_already_passed_cuts_next(void **state)
{
    struct tcpota_flash *fl = fresh(state, 1);
    struct tcpota_flash_fault fault = {.ops = 5, .cut_after = 2};
    const uint8_t v = 1;

    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_prog(fl, 0, &v, 1), TCPOTA_ERR_IO);
    assert_int_equal(fault.lost, 1);
    tcpota_flash_set_fault(fl, NULL);
    expect_bytes(fl, 0, 1, 0xFF);
}

static void test_tear_prog_lands_first_half(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 1);
    struct tcpota_flash_fault fault = {.cut_after = 1, .tear = 1};
    const uint8_t data[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct tcpota_flash again;
    uint8_t got[11];

    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_prog(fl, 64, data, sizeof data), TCPOTA_ERR_IO);
    assert_int_equal(fault.ops, 1);
    assert_int_equal(tcpota_flash_open(&again, f->path, SEC, 0), 0);
    assert_int_equal(tcpota_flash_read(&again, 64, got, sizeof got), 0);
    assert_memory_equal(got, data, 5);
    for (size_t i = 5; i < sizeof got; i++) {
        assert_int_equal(got[i], 0xFF);
    }
    tcpota_flash_close(&again);
}

static void test_tear_erase_leaves_half_sector(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 2);
    struct tcpota_flash_fault fault = {.cut_after = 1, .tear = 1};
    struct tcpota_flash again;

    fill_sector(fl, SEC, 0x5A);
    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_erase(fl, SEC, SEC), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_flash_open(&again, f->path, 2 * SEC, 0), 0);
    expect_bytes(&again, SEC, SEC / 2, 0xFF);
    expect_bytes(&again, SEC + SEC / 2, SEC / 2, 0x5A);
    tcpota_flash_close(&again);
}

static void test_cut_inside_multi_sector_erase(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = fresh(state, 3);
    struct tcpota_flash_fault fault = {.cut_after = 2};
    struct tcpota_flash again;

    for (uint32_t s = 0; s < 3; s++) {
        fill_sector(fl, s * SEC, 0x00);
    }
    tcpota_flash_set_fault(fl, &fault);
    assert_int_equal(tcpota_flash_erase(fl, 0, 3 * SEC), TCPOTA_ERR_IO);
    assert_int_equal(fault.ops, 2);
    assert_int_equal(tcpota_flash_open(&again, f->path, 3 * SEC, 0), 0);
    expect_bytes(&again, 0, SEC, 0xFF);
    expect_bytes(&again, SEC, SEC, 0xFF);
    expect_bytes(&again, 2 * SEC, SEC, 0x00);
    tcpota_flash_close(&again);
}

/* A region opened with size 0 takes its size from the file, which must be
 * a whole number of sectors that fits 32 bits: an empty file is no region,
 * and neither is a (sparse) file of 4 GiB and one sector, whose length cut
 * to 32 bits would pass for one sector. */
static void test_size_from_file_checked(void **state)
{
    struct fixture *f = *state;
    struct tcpota_flash *fl = &f->fl;
    const off_t past_4gib = (off_t)UINT32_MAX + 1 + SEC;

    assert_int_equal(tcpota_flash_open(fl, f->path, SEC, 1), 0);
    assert_int_equal(tcpota_flash_close(fl), 0);
    assert_int_equal(truncate(f->path, 0), 0);
    assert_int_equal(tcpota_flash_open(fl, f->path, 0, 0), TCPOTA_ERR_IO);
    assert_int_equal(fl->fd, -1);
    assert_int_equal(truncate(f->path, past_4gib), 0);
    assert_int_equal(tcpota_flash_open(fl, f->path, 0, 0), TCPOTA_ERR_IO);
    assert_int_equal(fl->fd, -1);
}

/* A new region's erased bytes reach the disk before its creation succeeds:
 * a sync that fails fails the creation (a mutation review: without it a
 * crash could leave zeros, not erased bytes, that every later write
 * refuses), and leaves no descriptor open. */
static void test_create_sync_failure_reported(void **state)
{
    struct fixture *f = *state;

    fail_all_fdatasync = 1;
    assert_int_equal(tcpota_flash_open(&f->fl, f->path, 2 * SEC, 1), TCPOTA_ERR_IO);
    fail_all_fdatasync = 0;
    assert_int_equal(f->fl.fd, -1);
    assert_non_null(strstr(tcpota_flash_detail(&f->fl), "sync"));
}

/* tcpota_flash_sync() reaches the disk and says when the disk failed: the
 * port's records count on it to order the bytes of a slot before the
 * record that claims them. */
static void test_sync_failure_reported(void **state)
{
    struct tcpota_flash *fl = fresh(state, 1);

    fail_sync_fd = fl->fd;
    assert_int_equal(tcpota_flash_sync(fl), TCPOTA_ERR_IO);
    assert_non_null(strstr(tcpota_flash_detail(fl), "sync"));
    fail_sync_fd = -1;
    assert_int_equal(tcpota_flash_sync(fl), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_region_reads_erased, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_sync_failure_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prog_then_read_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prog_over_programmed_byte_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erase_restores_one_sector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unaligned_erase_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_bounds_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_rejects_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_counts_operations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_cut_after_k_stops_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_schedule_already_passed_cuts_next, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tear_prog_lands_first_half, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tear_erase_leaves_half_sector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_inside_multi_sector_erase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_from_file_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failure_reported, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
