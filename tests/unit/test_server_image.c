/* test_server_image.c - the server's image loader (server/image.c): a FIFO,
 * a directory or an empty file is refused at once (never waited on), and a
 * regular file gets a CRC32C per aligned DATA frame; queued ranges of
 * frames are the frames, byte for byte, however they are cut. */
#define _GNU_SOURCE /* O_TMPFILE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

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

/* TMPDIR as the tests found it (test_frames_queued_byte_exact changes it). */
static char tmpdir_env[256];
static int tmpdir_env_set;

static int teardown(void **state)
{
    char sub[96];
    (void)state;
    if (tmpdir_env_set) {
        setenv("TMPDIR", tmpdir_env, 1);
    } else {
        unsetenv("TMPDIR");
    }
    snprintf(sub, sizeof(sub), "%s/d", dir);
    (void)rmdir(sub);
    tmpdir_remove(dir);
    return 0;
}

/* Why the last load failed (image_open's err). */
static char load_err[IMAGE_ERR_LEN];

/* Loads the file `name` of the scratch folder as `version` for `model`. */
static struct image *load_as(const char *name, const char *version, const char *model)
{
    char path[96];
    struct image *img;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    alarm(HANG_S);
    load_err[0] = 0;
    img = image_open(path, version, model, NULL, 0, 4096, load_err, sizeof(load_err));
    alarm(0);
    return img;
}

static struct image *load(const char *name)
{
    return load_as(name, "2.0.0", NULL);
}

/* Writes n bytes to the file "img" in the scratch folder and loads it. */
static struct image *load_bytes(const uint8_t *bytes, size_t n)
{
    char path[96];
    FILE *f;

    snprintf(path, sizeof(path), "%s/img", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return load("img");
}

static void test_fifo_refused_at_once(void **state)
{
    char path[96];
    (void)state;
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(load("fifo"));
    assert_non_null(strstr(load_err, "/fifo is not a regular file"));
}

static void test_directory_and_empty_refused(void **state)
{
    char path[96];
    FILE *f;
    (void)state;
    snprintf(path, sizeof(path), "%s/d", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_null(load("d"));
    assert_non_null(strstr(load_err, "/d is not a regular file (it is a directory)"));
    snprintf(path, sizeof(path), "%s/empty", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(load("empty"));
    assert_non_null(strstr(load_err, "/empty must have 1 byte to 4 GiB - 1 (has 0)"));
}

static void test_regular_file_loaded(void **state)
{
    static uint8_t bytes[10000];
    struct image *img;
    uint8_t head[8];
    (void)state;
    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 31);
    img = load_bytes(bytes, sizeof(bytes));
    assert_non_null(img);
    assert_int_equal(img->size, sizeof(bytes));
    /* The last frame is short: 10000 - 2 * 4096 bytes. */
    tcpota_data_head(head, 8192, 10000 - 8192);
    assert_int_equal(img->crcs[2],
                     tcpota_crc32c_update(tcpota_crc32c(head, 8), bytes + 8192, 10000 - 8192));
    image_unref(img);
}

/* --version and the model are checked here, whoever calls (the CLI, a
 * reload, the fleet): 1..TCPOTA_MAX_NAME printable ASCII characters; a
 * model of at most TCPOTA_MAX_NAME. */
static void test_version_and_model_checked(void **state)
{
    static const uint8_t one[1] = {7};
    char longest[TCPOTA_MAX_NAME + 2];
    struct image *img;
    (void)state;
    assert_non_null(img = load_bytes(one, sizeof(one)));
    image_unref(img);
    memset(longest, 'v', sizeof(longest));
    longest[TCPOTA_MAX_NAME] = 0;
    assert_non_null(img = load_as("img", longest, longest));
    assert_string_equal(img->version, longest);
    assert_string_equal(img->model, longest);
    image_unref(img);
    assert_null(load_as("img", "", NULL));
    assert_non_null(strstr(load_err, "--version must be 1..32 characters"));
    longest[TCPOTA_MAX_NAME] = 'v';
    longest[TCPOTA_MAX_NAME + 1] = 0;
    assert_null(load_as("img", longest, NULL));
    assert_non_null(strstr(load_err, "--version must be 1..32 characters"));
    assert_null(load_as("img", "2.0.0", longest));
    assert_non_null(strstr(load_err, "is longer than 32 characters"));
    assert_null(load_as("img", "2.0\x1f", NULL));
    assert_non_null(strstr(load_err, "--version must be printable ASCII"));
    assert_null(load_as("img", "2.0\x7f", NULL));
    assert_non_null(strstr(load_err, "--version must be printable ASCII"));
    assert_non_null(img = load_as("img", " 2.0~", NULL));
    image_unref(img);
}

/* An image of 4 GiB or more is refused, not served as its size modulo
 * 4 GiB (a sparse file: no disk space taken). */
static void test_4gib_refused(void **state)
{
    char path[96];
    int fd;
    (void)state;
    snprintf(path, sizeof(path), "%s/huge", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    if (ftruncate(fd, (off_t)0x100000000LL + 1) != 0) {
        close(fd);
        skip(); /* a filesystem without files this large */
    }
    close(fd);
    assert_null(load("huge"));
    assert_non_null(strstr(load_err, "/huge must have 1 byte to 4 GiB - 1 (has 4294967297)"));
}

/* The frames of image bytes [off, off + len) as a session with frames of
 * `chunk` bytes sends them, built one by one: head, payload, CRC32C. */
static size_t reference_frames(const uint8_t *image, uint32_t chunk, uint32_t off, uint32_t len,
                               uint8_t *out)
{
    size_t n = 0;
    uint32_t end = off + len;

    while (off < end) {
        uint32_t fl = chunk - off % chunk;
        if (fl > end - off) fl = end - off;
        tcpota_data_head(out + n, off, (uint16_t)fl);
        memcpy(out + n + TCPOTA_DATA_HEAD_LEN, image + off, fl);
        tcpota_put_u32(out + n + TCPOTA_DATA_HEAD_LEN + fl,
                       tcpota_crc32c(out + n, TCPOTA_DATA_HEAD_LEN + fl));
        n += fl + TCPOTA_DATA_OVERHEAD;
        off += fl;
    }
    return n;
}

/* What holds img's prebuilt frames: the file's name as /proc shows it. */
static void wire_name(const struct image *img, char *name, size_t cap)
{
    char link[64];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", img->wire_fd);
    n = readlink(link, name, cap - 1);
    assert_true(n > 0);
    name[n] = 0;
}

struct frames_case {
    uint32_t chunk, off, len;
    int chains; /* evbuffer chains expected; 0: not checked */
};

/* Each case queued from img (whose bytes are `bytes`) is the frames a
 * session builds one by one. */
static void frames_cases_byte_exact(struct image *img, const uint8_t *bytes,
                                    const struct frames_case *cases, size_t ncases)
{
    static uint8_t want[12000], got[12000];
    for (size_t k = 0; k < ncases; k++) {
        struct evbuffer *out = evbuffer_new();
        size_t queued = 0, n = reference_frames(bytes, cases[k].chunk, cases[k].off, cases[k].len, want);
        assert_int_equal(image_add_frames(out, img, cases[k].chunk, cases[k].off, cases[k].len, &queued), 0);
        assert_int_equal(queued, n);
        assert_int_equal(evbuffer_get_length(out), n);
        if (cases[k].chains) {
            assert_int_equal(evbuffer_peek(out, -1, NULL, NULL, 0), cases[k].chains);
        }
        assert_int_equal(evbuffer_remove(out, got, sizeof(got)), (int)n);
        assert_memory_equal(got, want, n);
        evbuffer_free(out);
    }
}

static void frames_queued_byte_exact(void)
{
    static uint8_t bytes[10240];
    static const struct frames_case cases[] = {
        {4096, 0, 10000, 1},    /* the whole image: one run of prebuilt frames */
        {4096, 4096, 5904, 1},  /* from a resume point */
        {4096, 100, 9900, 2},   /* from inside a chunk (a re-seek): a frame of its own (copied), then a run */
        {4096, 0, 6000, 2},     /* to a limit inside a chunk: a run, then a frame copied */
        {1024, 0, 10000, 1},    /* a device's smaller chunk: frames built one by one, in one chain */
        {512, 100, 9000, 1},    /* the protocol's smallest, from inside a frame */
    };
    /* A device's chunk whose last frame is whole and starts on a frame of
     * the image's own chunk: still built, never a prebuilt slot (of the
     * image's frame size). */
    static const struct frames_case whole_last[] = {
        {2048, 0, 10240, 0},
        {2048, 8192, 2048, 0},
    };
    struct image *img;
    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 7 + (i >> 8));
    img = load_bytes(bytes, 10000);
    assert_non_null(img);
    assert_int_equal(image_prebuilt(img, 1024), 0); /* none before a device asks */
    frames_cases_byte_exact(img, bytes, cases, sizeof(cases) / sizeof(cases[0]));
    /* The first smaller chunk asked for is prebuilt too (its frames went
     * as one run above: one chain); a second one is built frame by frame. */
    assert_int_equal(image_prebuilt(img, 4096), img->wire_len);
    assert_int_equal(image_prebuilt(img, 1024), 10 * (1024 + TCPOTA_DATA_OVERHEAD));
    assert_int_equal(image_prebuilt(img, 512), 0);
    image_unref(img);
    img = load_bytes(bytes, sizeof(bytes));
    assert_non_null(img);
    frames_cases_byte_exact(img, bytes, whole_last, sizeof(whole_last) / sizeof(whole_last[0]));
    image_unref(img);
}

/* A whole image of more frames than are written to the file at a time
 * (image.c: WIRE_BATCH, 256), the last one short: the frames queued are
 * those a session builds one by one. */
static void frames_whole_image_byte_exact(void)
{
    enum { N = 300 * 4096 + 100 };
    static uint8_t bytes[N], want[N + 400 * TCPOTA_DATA_OVERHEAD], got[sizeof(want)];
    struct evbuffer *out = evbuffer_new();
    struct image *img;
    size_t n = 0, queued = 0;

    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 11 + (i >> 12));
    img = load_bytes(bytes, sizeof(bytes));
    assert_non_null(img);
    assert_non_null(out);
    n = reference_frames(bytes, 4096, 0, N, want);
    assert_int_equal(image_add_frames(out, img, 4096, 0, N, &queued), 0);
    assert_int_equal(queued, n);
    assert_int_equal(evbuffer_remove(out, got, sizeof(got)), (int)n);
    assert_memory_equal(got, want, n);
    /* The last frame's slot holds zeros after it, never stale memory. */
    assert_non_null(img->wire);
    for (size_t i = n; i < img->wire_len; i++) assert_int_equal(img->wire[i], 0);
    evbuffer_free(out);
    image_unref(img);
}

/* The frames go out byte-exact wherever they are kept: in a temporary
 * file in $TMPDIR (where that filesystem has unnamed temporary files),
 * and, where it cannot be made there, in a memfd. */
static void test_frames_queued_byte_exact(void **state)
{
    char name[512], sub[96];
    struct image *img;
    static const uint8_t one[1] = {7};
    int probe;
    (void)state;
    snprintf(sub, sizeof(sub), "%s/d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    probe = open(sub, O_TMPFILE | O_RDWR, 0600);
    if (probe >= 0) close(probe);
    setenv("TMPDIR", sub, 1);
    img = load_bytes(one, sizeof(one));
    assert_non_null(img);
    wire_name(img, name, sizeof(name));
    if (probe >= 0) {
        assert_true(strncmp(name, sub, strlen(sub)) == 0); /* "<sub>/#123 (deleted)" */
    } else {
        assert_true(strncmp(name, "/memfd:", 7) == 0);
    }
    image_unref(img);
    frames_queued_byte_exact();
    frames_whole_image_byte_exact();
    setenv("TMPDIR", "/nonexistent/tcpota-test", 1);
    img = load_bytes(one, sizeof(one));
    assert_non_null(img);
    wire_name(img, name, sizeof(name));
    assert_true(strncmp(name, "/memfd:", 7) == 0);
    image_unref(img);
    frames_queued_byte_exact();
    frames_whole_image_byte_exact();
}

/* The image's private copy (image.c): in a temporary file in $TMPDIR,
 * else a memfd, else memory (a file size limit: no file takes it), its
 * payload queued byte-exact from each; never the file itself, which may
 * change under the server (cut short here after the load). */
static void test_private_copy(void **state)
{
    static uint8_t bytes[30000];
    struct evbuffer *out;
    struct image *img;
    struct rlimit was, small;
    char name[512], link[64], sub[96], path[96];
    uint8_t back[sizeof(bytes)];
    ssize_t n;
    int probe;
    (void)state;
    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 7 + 3);
    snprintf(sub, sizeof(sub), "%s/d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    probe = open(sub, O_TMPFILE | O_RDWR, 0600);
    if (probe >= 0) close(probe);
    snprintf(path, sizeof(path), "%s/img", dir);
    for (int where = 0; where < 3; where++) {
        setenv("TMPDIR", where == 0 ? sub : "/nonexistent/tcpota-test", 1);
        if (where == 2) {
            /* No file takes 30000 bytes: a size limit below it, SIGXFSZ
             * ignored (EFBIG), set once the file is written. */
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            assert_int_equal(fwrite(bytes, 1, sizeof(bytes), f), sizeof(bytes));
            fclose(f);
            signal(SIGXFSZ, SIG_IGN);
            assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
            small = was;
            small.rlim_cur = 4096;
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
            img = load("img");
            assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);
        } else {
            img = load_bytes(bytes, sizeof(bytes));
        }
        assert_non_null(img);
        if (where == 2) {
            assert_int_equal(img->fd, -1);
            assert_true(img->heap);
        } else {
            snprintf(link, sizeof(link), "/proc/self/fd/%d", img->fd);
            n = readlink(link, name, sizeof(name) - 1);
            assert_true(n > 0);
            name[n] = 0;
            if (where == 0 && probe >= 0) {
                assert_true(strncmp(name, sub, strlen(sub)) == 0);
            } else {
                assert_true(strncmp(name, "/memfd:tcpota-image", 19) == 0);
            }
        }
        assert_int_equal(truncate(path, 10), 0); /* the file changes under it */
        out = evbuffer_new();
        assert_int_equal(image_add_payload(out, img, 0, sizeof(bytes)), 0);
        assert_int_equal(evbuffer_get_length(out), sizeof(bytes));
        assert_int_equal(evbuffer_remove(out, back, sizeof(back)), (int)sizeof(back));
        assert_memory_equal(back, bytes, sizeof(bytes));
        evbuffer_free(out);
        image_unref(img);
    }
    signal(SIGXFSZ, SIG_DFL);
    /* From another filesystem (tmpfs to $TMPDIR's): copy_file_range says
     * EXDEV on most kernels, and the copy is read and written instead. */
    if (probe >= 0 && access("/dev/shm", W_OK) == 0) {
        char shm[64];
        FILE *f;
        snprintf(shm, sizeof(shm), "/dev/shm/tcpota-image-%ld", (long)getpid());
        assert_non_null(f = fopen(shm, "w"));
        assert_int_equal(fwrite(bytes, 1, sizeof(bytes), f), sizeof(bytes));
        fclose(f);
        setenv("TMPDIR", sub, 1);
        img = image_open(shm, "1.0.0", NULL, NULL, 0, 4096, name, sizeof(name));
        assert_int_equal(unlink(shm), 0);
        assert_non_null(img);
        assert_true(img->fd >= 0 && !img->heap);
        out = evbuffer_new();
        assert_int_equal(image_add_payload(out, img, 0, sizeof(bytes)), 0);
        assert_int_equal(evbuffer_remove(out, back, sizeof(back)), (int)sizeof(back));
        assert_memory_equal(back, bytes, sizeof(bytes));
        evbuffer_free(out);
        image_unref(img);
    }
}

/* libevent's allocator for this process: fails the allocation numbered
 * fail_at (counting from 1; 0: none), and counts them all. */
static unsigned long allocs, fail_at;

static void *counted_malloc(size_t n)
{
    return ++allocs == fail_at ? NULL : malloc(n);
}

static void *counted_realloc(void *p, size_t n)
{
    return ++allocs == fail_at ? NULL : realloc(p, n);
}

/* Out of memory at any allocation while queueing frames: image_add_frames
 * says so (the connection then ends) and never reports frames queued that
 * are not; and after it the image still sends byte-exact frames (from
 * memory: libevent may have dropped its file segment, image.c). */
static void test_frames_out_of_memory_reported(void **state)
{
    static uint8_t bytes[10000], want[12000], got[12000];
    struct image *img;
    (void)state;
    for (size_t i = 0; i < sizeof(bytes); i++) bytes[i] = (uint8_t)(i * 13 + 5);
    img = load_bytes(bytes, sizeof(bytes));
    assert_non_null(img);
    /* From inside a chunk to the end: a frame of its own (head, payload,
     * tail) then a run; with a device's smaller chunk, frames one by one. */
    for (int c = 0; c < 2; c++) {
        uint32_t chunk = c ? 1024 : 4096;
        size_t n = reference_frames(bytes, chunk, 100, 9900, want), queued;
        unsigned long k, needed, failed = 0;
        struct evbuffer *out = evbuffer_new();
        assert_non_null(out);
        allocs = 0;
        assert_int_equal(image_add_frames(out, img, chunk, 100, 9900, &queued), 0);
        needed = allocs;
        evbuffer_free(out);
        for (k = 1; k <= needed; k++) {
            int rc;
            out = evbuffer_new();
            assert_non_null(out);
            allocs = 0;
            fail_at = k;
            rc = image_add_frames(out, img, chunk, 100, 9900, &queued);
            fail_at = 0;
            if (rc < 0) {
                failed++;
                assert_true(evbuffer_get_length(out) < n); /* never whole after a failure */
            } else { /* the failed allocation had a way around it */
                assert_int_equal(rc, 0);
                assert_int_equal(queued, n);
                assert_int_equal(evbuffer_get_length(out), n);
            }
            evbuffer_free(out);
        }
        /* Frames built one by one are copied whole: a failed allocation has
         * a way around (image_add_bytes: evbuffer_add after a failed
         * reserve); the run's file segment has none. */
        if (c == 0) assert_true(failed > 0);
        out = evbuffer_new();
        assert_non_null(out);
        assert_int_equal(image_add_frames(out, img, chunk, 100, 9900, &queued), 0);
        assert_int_equal(evbuffer_remove(out, got, sizeof(got)), (int)n);
        assert_memory_equal(got, want, n);
        evbuffer_free(out);
    }
    image_unref(img);
}

/* The server's own check of a manifest against the bytes it read (start,
 * SIGHUP): a damaged manifest is refused as such, by image_check_manifest
 * itself, whatever its caller parsed before. */
static void test_damaged_manifest_refused_by_the_server(void **state)
{
    static const uint8_t bytes[5000] = {1, 2, 3};
    static const uint8_t garbage[100] = {0x54, 0x4f, 0x41, 0x31, 0xff, 0xff};
    char path[96], err[IMAGE_ERR_LEN];
    struct image *img;
    FILE *f;
    (void)state;
    snprintf(path, sizeof(path), "%s/img", dir);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(fwrite(bytes, 1, sizeof(bytes), f), sizeof(bytes));
    fclose(f);
    img = image_open(path, "2.0.0", NULL, garbage, sizeof(garbage), 4096, err, sizeof(err));
    assert_non_null(img);
    err[0] = 0;
    assert_int_equal(image_check_manifest(img, path, "img.manifest", 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a tcpota manifest, or is damaged"));
    image_unref(img);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    if (t) {
        snprintf(tmpdir_env, sizeof(tmpdir_env), "%s", t);
        tmpdir_env_set = 1;
    }
    /* Before libevent allocates anything. */
    event_set_mem_functions(counted_malloc, counted_realloc, free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_damaged_manifest_refused_by_the_server),
        cmocka_unit_test_setup_teardown(test_fifo_refused_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_and_empty_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_and_model_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_4gib_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_queued_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_private_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_out_of_memory_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
