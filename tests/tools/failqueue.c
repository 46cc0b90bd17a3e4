/* failqueue.c - an LD_PRELOAD library for tests/e2e/test_oom.sh: every
 * TCPOTA_TEST_FAIL_EVERY-th call that queues image bytes by reference
 * (evbuffer_add_file_segment, evbuffer_add_reference), and with
 * TCPOTA_TEST_FAIL_ADD=1 every such evbuffer_add (copied bytes: a legacy
 * package the socket did not take), fails as libevent fails when it
 * cannot allocate: -1, nothing queued. With TCPOTA_TEST_FAIL_READ=1 only
 * evbuffer_prepend is failed so, every N-th call in the server: conn.c's
 * keep_input keeps with it the bytes a connection read but could not hand
 * over (reading paused behind its replies piling up unread, a legacy
 * device waiting for the fleet store), and no other code of the server
 * calls it. With TCPOTA_TEST_SENDFILE_EAGAIN=N
 * every N-th sendfile() sends nothing and fails with EAGAIN, as the kernel
 * does when TCP's memory runs short. With TCPOTA_TEST_FREAD_EIO_AFTER=N
 * fread() fails with EIO (the stream's error set) once N bytes were read
 * from a stream: a disk that fails midway through an image. With
 * TCPOTA_TEST_FSYNC_GATE=PATH an upload's fsync waits for PATH (fsync
 * below), and fails with EIO while TCPOTA_TEST_FSYNC_EIO=PATH exists (a
 * file whose name holds TCPOTA_TEST_FSYNC_EIO_NAME instead, when given:
 * `tcpota sign`'s temporary manifest);
 * with TCPOTA_TEST_PIPE2_EMFILE=PATH pipe2() fails while PATH
 * exists; with TCPOTA_TEST_OPEN_GATE=PATH a stored image's open waits
 * for PATH (open below). With TCPOTA_TEST_IMAGE_EOF=1 copy_file_range()
 * finds its source's end at once (returns 0), as when the image file was
 * cut shorter while the server copies it; with =2 copy_file_range() fails
 * with EXDEV (another file system) and pread() finds the end instead.
 * The failure is libevent's own (the
 * call made on a buffer frozen at the end it would change), so that what libevent does to
 * the caller's objects when it fails happens too. Each failure is told
 * on stderr ("failqueue: ..."), so that the test can match every one with
 * the server's own account of it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

static unsigned long calls;
static int frozen_result;

/* `call` (a libevent function on buf) made with buf frozen at its end (at
 * its front: front 1), so that it fails as libevent fails without memory;
 * its result. */
#define FAILING_AT(buf, front, call)                             \
    (evbuffer_freeze((buf), (front)), frozen_result = (call),    \
     evbuffer_unfreeze((buf), (front)), frozen_result)
#define FAILING(buf, call) FAILING_AT((buf), 0, (call))

/* TCPOTA_TEST_FAIL_READ=1: reads fail, queueing does not. */
static int reads_only(void)
{
    static int on = -1;

    if (on < 0) {
        on = getenv("TCPOTA_TEST_FAIL_READ") != NULL;
    }
    return on;
}

static int fail_now(const char *what)
{
    static long every = -1;

    if (every < 0) {
        const char *e = getenv("TCPOTA_TEST_FAIL_EVERY");
        every = e ? strtol(e, NULL, 10) : 0;
    }
    if (every <= 0 || ++calls % (unsigned long)every) {
        return 0;
    }
    fprintf(stderr, "failqueue: %s fails (call %lu)\n", what, calls);
    return 1;
}

int evbuffer_add_file_segment(struct evbuffer *buf, struct evbuffer_file_segment *seg,
                              ev_off_t offset, ev_off_t length)
{
    static int (*real)(struct evbuffer *, struct evbuffer_file_segment *, ev_off_t, ev_off_t);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "evbuffer_add_file_segment");
    }
    /* The server's one-byte probe of libevent (image.c) is let through and
     * not counted: its own failure is on purpose. */
    if (length != 1 && !reads_only() && fail_now("evbuffer_add_file_segment")) {
        return FAILING(buf, real(buf, seg, offset, length));
    }
    return real(buf, seg, offset, length);
}

int evbuffer_add_reference(struct evbuffer *buf, const void *data, size_t len,
                           evbuffer_ref_cleanup_cb cleanupfn, void *cleanupfn_arg)
{
    static int (*real)(struct evbuffer *, const void *, size_t, evbuffer_ref_cleanup_cb, void *);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "evbuffer_add_reference");
    }
    if (!reads_only() && fail_now("evbuffer_add_reference")) {
        return FAILING(buf, real(buf, data, len, cleanupfn, cleanupfn_arg));
    }
    return real(buf, data, len, cleanupfn, cleanupfn_arg);
}

int evbuffer_add(struct evbuffer *buf, const void *data, size_t len)
{
    static int (*real)(struct evbuffer *, const void *, size_t);
    static int on = -1;

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "evbuffer_add");
        on = getenv("TCPOTA_TEST_FAIL_ADD") != NULL;
    }
    if (on && !reads_only() && fail_now("evbuffer_add")) {
        return FAILING(buf, real(buf, data, len));
    }
    return real(buf, data, len);
}

int evbuffer_prepend(struct evbuffer *buf, const void *data, size_t len)
{
    static int (*real)(struct evbuffer *, const void *, size_t);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "evbuffer_prepend");
    }
    if (reads_only() && fail_now("evbuffer_prepend")) {
        return FAILING_AT(buf, 1, real(buf, data, len));
    }
    return real(buf, data, len);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    static ssize_t (*real)(int, int, off_t *, size_t);
    static long every = -1;
    static unsigned long n;

    if (!real) {
        const char *e = getenv("TCPOTA_TEST_SENDFILE_EAGAIN");
        *(void **)&real = dlsym(RTLD_NEXT, "sendfile");
        every = e ? strtol(e, NULL, 10) : 0;
    }
    if (every > 0 && ++n % (unsigned long)every == 0) {
        fprintf(stderr, "failqueue: sendfile says EAGAIN (call %lu)\n", n);
        errno = EAGAIN;
        return -1;
    }
    return real(out_fd, in_fd, offset, count);
}

static long image_eof(void)
{
    static long mode = -1;

    if (mode < 0) {
        const char *e = getenv("TCPOTA_TEST_IMAGE_EOF");
        mode = e ? strtol(e, NULL, 10) : 0;
    }
    return mode;
}

ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t len,
                        unsigned flags)
{
    static ssize_t (*real)(int, off_t *, int, off_t *, size_t, unsigned);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "copy_file_range");
    }
    if (image_eof() == 1) {
        static int told; /* once: a loop that asked again would fill the log */
        if (!told++) fprintf(stderr, "failqueue: copy_file_range finds the end\n");
        return 0;
    }
    if (image_eof() == 2) {
        errno = EXDEV;
        return -1;
    }
    return real(in, in_off, out, out_off, len, flags);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "pread");
    }
    if (image_eof() == 2) {
        static int told;
        if (!told++) fprintf(stderr, "failqueue: pread finds the end\n");
        return 0;
    }
    return real(fd, buf, n, off);
}

/* The stream whose fread failed: ferror says so for it (its own error
 * flag is libc's, out of reach). */
static FILE *fread_failed;

size_t fread(void *ptr, size_t size, size_t nmemb, FILE *stream)
{
    static size_t (*real)(void *, size_t, size_t, FILE *);
    static long after = -1;
    static unsigned long long got;
    size_t n;

    if (!real) {
        const char *e = getenv("TCPOTA_TEST_FREAD_EIO_AFTER");
        *(void **)&real = dlsym(RTLD_NEXT, "fread");
        after = e ? strtol(e, NULL, 10) : -1;
    }
    if (after >= 0 && got >= (unsigned long long)after) {
        fprintf(stderr, "failqueue: fread fails with EIO after %llu bytes\n", got);
        fread_failed = stream;
        errno = EIO;
        return 0;
    }
    n = real(ptr, size, nmemb, stream);
    got += (unsigned long long)n * size;
    return n;
}

int ferror(FILE *stream)
{
    static int (*real)(FILE *);

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "ferror");
    }
    return stream == fread_failed ? 1 : real(stream);
}

/* TCPOTA_TEST_FSYNC_GATE=PATH: an fsync of an upload's temporary file
 * (a name with "/.upload-" in it: the control API's, api_images.c) waits
 * until PATH exists (60 s at most), so that a test can see what the
 * server does meanwhile. Every other fsync (the database's) is left alone. */
int fsync(int fd)
{
    static int (*real)(int);
    const char *gate = getenv("TCPOTA_TEST_FSYNC_GATE"), *eio = getenv("TCPOTA_TEST_FSYNC_EIO");
    const char *eio_name = getenv("TCPOTA_TEST_FSYNC_EIO_NAME");
    char link[64], name[4096];
    ssize_t n;
    int i;

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    }
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = gate || eio ? readlink(link, name, sizeof name - 1) : -1;
    if (n > 0) {
        name[n] = 0;
        if (eio && strstr(name, eio_name ? eio_name : "/.upload-") && access(eio, F_OK) == 0) {
            fprintf(stderr, "failqueue: fsync fails with EIO: %s\n", name);
            errno = EIO;
            return -1;
        }
        if (gate && strstr(name, "/.upload-")) {
            fprintf(stderr, "failqueue: fsync of %s waits for %s\n", name, gate);
            for (i = 0; i < 6000 && access(gate, F_OK) != 0; i++) {
                usleep(10000);
            }
        }
    }
    return real(fd);
}

/* TCPOTA_TEST_PIPE2_EMFILE=PATH: while PATH exists, pipe2() fails with
 * EMFILE, as when the descriptors run out (a job off the loop cannot
 * start: server/offload.c). The test makes PATH once the server runs. */
int pipe2(int fd[2], int flags)
{
    static int (*real)(int[2], int);
    const char *when = getenv("TCPOTA_TEST_PIPE2_EMFILE");

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "pipe2");
    }
    if (when && access(when, F_OK) == 0) {
        fprintf(stderr, "failqueue: pipe2 fails with EMFILE\n");
        errno = EMFILE;
        return -1;
    }
    return real(fd, flags);
}

/* TCPOTA_TEST_OPEN_GATE=PATH: an open() for reading of a stored image
 * (a name with "/images/" in it: fleet mode loading an image to offer it)
 * waits until PATH exists (60 s at most), so that a test can see what the
 * server does while an image loads. */
int open(const char *path, int flags, ...)
{
    static int (*real)(const char *, int, ...);
    const char *gate = getenv("TCPOTA_TEST_OPEN_GATE");
    mode_t mode = 0;
    int i;

    if (!real) {
        *(void **)&real = dlsym(RTLD_NEXT, "open");
    }
    if (flags & O_CREAT || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (gate && strstr(path, "/images/") && (flags & O_ACCMODE) == O_RDONLY &&
        !(flags & O_DIRECTORY)) {
        fprintf(stderr, "failqueue: open of %s waits for %s\n", path, gate);
        for (i = 0; i < 6000 && access(gate, F_OK) != 0; i++) {
            usleep(10000);
        }
    }
    return real(path, flags, mode);
}
