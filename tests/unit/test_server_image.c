/* test_server_image.c - the server's image loader (server/image.c): a FIFO,
 * a directory or an empty file is refused at once (never waited on), and a
 * regular file gets a CRC32C per aligned DATA frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "tcpota/crc32c.h"
#include "tmpdir.h"

#define HANG_S 5 /* a load that takes this long is waiting on the file */

static char dir[64];

static void hung(int sig)
{
    (void)sig;
    fprintf(stderr, "image_open waited %d s on a file that is not a regular file\n", HANG_S);
    _exit(1);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tcpota-image.XXXXXX");
    signal(SIGALRM, hung);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char sub[96];
    (void)state;
    snprintf(sub, sizeof(sub), "%s/d", dir);
    (void)rmdir(sub);
    tmpdir_remove(dir);
    return 0;
}

static struct image *load(const char *name)
{
    char path[96];
    struct image *img;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    alarm(HANG_S);
    img = image_open(path, "2.0.0", NULL, NULL, 0, 4096);
    alarm(0);
    return img;
}

static void test_fifo_refused_at_once(void **state)
{
    char path[96];
    (void)state;
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(load("fifo"));
}

static void test_directory_and_empty_refused(void **state)
{
    char path[96];
    FILE *f;
    (void)state;
    snprintf(path, sizeof(path), "%s/d", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_null(load("d"));
    snprintf(path, sizeof(path), "%s/empty", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(load("empty"));
}

static void test_regular_file_loaded(void **state)
{
    static uint8_t bytes[10000];
    char path[96];
    struct image *img;
    uint8_t head[8];
    FILE *f;
    (void)state;
    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 31);
    snprintf(path, sizeof(path), "%s/img", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, sizeof(bytes), f), sizeof(bytes));
    fclose(f);
    img = load("img");
    assert_non_null(img);
    assert_int_equal(img->size, sizeof(bytes));
    /* The last frame is short: 10000 - 2 * 4096 bytes. */
    tcpota_data_head(head, 8192, 10000 - 8192);
    assert_int_equal(img->crcs[2],
                     tcpota_crc32c_update(tcpota_crc32c(head, 8), bytes + 8192, 10000 - 8192));
    image_unref(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_and_empty_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_loaded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
