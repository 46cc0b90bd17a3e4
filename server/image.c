/* image.c - the image offered, and its prebuilt DATA frames (see image.h). */
#define _GNU_SOURCE /* memfd_create, O_TMPFILE */
#include "image.h"
#include "digest.h"
#include "text.h" /* text_file_kind */

#include "tcpota/crc32c.h"
#include "tcpota/manifest.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* One aligned DATA frame as it goes on the wire: header, payload, CRC;
 * the last frame's slot, longer than the frame, is zeroed after it. */
static void frame_fill(const struct image *img, uint32_t i, uint8_t *f)
{
    uint32_t off = i * img->chunk, len = img->size - off < img->chunk ? img->size - off : img->chunk;

    tcpota_data_head(f, off, (uint16_t)len);
    memcpy(f + TCPOTA_DATA_HEAD_LEN, img->map + off, len);
    tcpota_put_u32(f + TCPOTA_DATA_HEAD_LEN + len, img->crcs[i]);
    memset(f + TCPOTA_DATA_OVERHEAD + len, 0, img->chunk - len);
}

/* Frames written to an unnamed temporary file at a time (1 MiB at the
 * default chunk). */
#define WIRE_BATCH 256u

/* The frames in an unnamed temporary file (O_TMPFILE) in $TMPDIR (where
 * it is set, else /var/tmp), written with large writes: the page cache
 * then keeps them in large folios where the filesystem has them (XFS;
 * ext4 from Linux 6.16), and sendfile
 * finds a run's pages a folio at a time; in a memfd it looks up each
 * 4 KiB page (shmem). Returns the file, or -1 (no such directory, no
 * space: the caller keeps the frames in memory). */
static int unnamed_file(void)
{
#ifdef O_TMPFILE
    const char *dir = getenv("TMPDIR");
    return open(dir && dir[0] ? dir : "/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#else
    errno = ENOTSUP;
    return -1;
#endif
}

static int wire_tmpfile(const struct image *img, uint32_t n)
{
#ifdef O_TMPFILE
    size_t frame = img->chunk + TCPOTA_DATA_OVERHEAD;
    uint8_t *buf;
    int fd = unnamed_file();
    uint32_t i, k;

    if (fd < 0 || !(buf = malloc(WIRE_BATCH * frame))) {
        if (fd >= 0) close(fd);
        return -1;
    }
    for (i = 0; i < n; i += k) {
        size_t len, done = 0;
        for (k = 0; k < WIRE_BATCH && i + k < n; k++) {
            frame_fill(img, i + k, buf + k * frame);
        }
        len = (size_t)k * frame;
        while (done < len) {
            ssize_t w = pwrite(fd, buf + done, len - done, (off_t)((size_t)i * frame + done));
            if (w <= 0) break;
            done += (size_t)w;
        }
        if (done < len) {
            free(buf);
            close(fd);
            return -1;
        }
    }
    free(buf);
    return fd;
#else
    (void)img;
    (void)n;
    return -1;
#endif
}

/* Every aligned DATA frame back to back, n of them: in a file where Linux
 * has one (then runs of frames go to sockets by sendfile, never copied
 * through user space; the mapping serves TLS, which must encrypt them):
 * a temporary file, else a memfd; else on the heap (then by reference
 * and writev). Sets img->wire (NULL when none of these worked) and
 * returns the file or -1. */
static int wire_create(struct image *img, uint32_t n)
{
    int fd = wire_tmpfile(img, n);
    void *p;
    uint32_t i;

    if (fd >= 0) {
        p = mmap(NULL, img->wire_len, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            img->wire = p;
            return fd;
        }
        close(fd);
        fd = -1;
    }
#ifdef MFD_CLOEXEC
    fd = memfd_create("tcpota-frames", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)img->wire_len) == 0 &&
        (p = mmap(NULL, img->wire_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) != MAP_FAILED) {
        img->wire = p;
    } else if (fd >= 0) {
        close(fd);
        fd = -1;
    }
#endif
    if (!img->wire) {
        img->wire = malloc(img->wire_len);
    }
    for (i = 0; img->wire && i < n; i++) {
        frame_fill(img, i, img->wire + (size_t)i * (img->chunk + TCPOTA_DATA_OVERHEAD));
    }
    return fd;
}

static void segment_freed(struct evbuffer_file_segment const *seg, int flags, void *arg)
{
    (void)seg;
    (void)flags;
    *(int *)arg = 1;
}

/* 1 when this libevent, failing to add a file segment to a buffer, drops
 * a reference to the segment that it never took (2.1.12, Debian 12's,
 * does: the segment is then freed at once, or once the last queue that
 * refers to it lets go, while its owner still holds it); 0 when it does
 * not; -1 until asked (segment_drops_probe). */
static _Atomic int segment_drops = -1; /* images load on threads too (fleet.c) */

/* Asks, once, with a scratch segment of fd's first byte: added to a buffer
 * (which maps it, so that the next add meets no mapping to fail), then
 * added again with the buffer frozen at its end, a failure on the same
 * path as an allocation's; then the buffer is freed. A libevent that took
 * one reference too many has freed the segment by then. Without memory
 * to ask, nothing is learned (and a failure later counts as a drop). */
static void segment_drops_probe(int fd)
{
    struct evbuffer_file_segment *seg;
    struct evbuffer *b;
    int freed = 0, refused = 0;

    if (segment_drops >= 0 || fd < 0 || !(b = evbuffer_new())) {
        return;
    }
    if (!(seg = evbuffer_file_segment_new(fd, 0, 1, 0))) {
        evbuffer_free(b);
        return;
    }
    evbuffer_file_segment_add_cleanup_cb(seg, segment_freed, &freed);
    if (evbuffer_add_file_segment(b, seg, 0, 1) == 0) {
        evbuffer_freeze(b, 0);
        refused = evbuffer_add_file_segment(b, seg, 0, 1) < 0;
    }
    evbuffer_free(b); /* the queue lets its references go */
    if (refused || freed) {
        segment_drops = freed; /* else nothing was learned */
    }
    if (!freed) {
        evbuffer_file_segment_free(seg);
    }
}

/* Says why a load failed: into err (errlen bytes), for the caller to print
 * or log as its context wants. */
static void why(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void why(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* size bytes of src into dst from offset 0: by copy_file_range (in the
 * kernel; a reflink where the filesystem shares blocks), else read and
 * write. Returns 0, or -1 with errno (EAGAIN: src ended before size). */
static int copy_all(int src, int dst, uint32_t size)
{
    char buf[64 * 1024];
    off_t in = 0, out = 0;
    ssize_t n = 0;
    int by_copy = 1;

    while ((uint64_t)in < size) {
        size_t want = size - (uint32_t)in;
        if (by_copy) {
            n = copy_file_range(src, &in, dst, &out, want, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
                          errno == EOPNOTSUPP || errno == EBADF)) {
                by_copy = 0;
                continue;
            }
        } else {
            n = pread(src, buf, want < sizeof(buf) ? want : sizeof(buf), in);
            if (n > 0 && pwrite(dst, buf, (size_t)n, out) != n) {
                return -1;
            }
            if (n > 0) {
                in += n;
                out += n;
            }
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
    return 0;
}

/* A private copy of the image file, which the server then reads, hashes
 * and serves: the file itself may be rewritten in place while served (cp
 * new.bin fw.bin, the obvious way to put a new image in place): served
 * from it, a legacy device got the old image's first bytes and the new
 * one's rest under the old total, and a file made shorter stopped the
 * server with SIGBUS (a trial). In an unnamed temporary file (as the
 * frames), else a memfd: mapped, and sent by sendfile; where neither can
 * take it (no space in $TMPDIR, a file size limit), in memory, sent by
 * reference. Sets img->fd (-1 in memory), img->map and img->heap.
 * Returns 0, or -1 with why in err. */
static int private_copy(struct image *img, int src, const char *path, char *err, size_t errlen)
{
    int fd = unnamed_file(), e = 0;
    ssize_t n;
    uint32_t got;

    for (int memfd = 0; memfd < 2; memfd++) {
#ifdef MFD_CLOEXEC
        if (memfd) {
            fd = memfd_create("tcpota-image", MFD_CLOEXEC);
        }
#endif
        if (fd < 0) {
            continue;
        }
        if (copy_all(src, fd, img->size) == 0) {
            void *p = mmap(NULL, img->size, PROT_READ, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) {
                img->fd = fd;
                img->map = p;
                return 0;
            }
        }
        e = errno;
        close(fd);
        fd = -1;
        if (e == EAGAIN) {
            break; /* the file became shorter: no other copy does better */
        }
    }
    if (e != EAGAIN && (img->map = malloc(img->size)) != NULL) {
        img->heap = 1;
        for (got = 0; got < img->size; got += (uint32_t)n) {
            n = pread(src, img->map + got, img->size - got, got);
            if (n < 0 && errno == EINTR) {
                n = 0;
                continue;
            }
            if (n <= 0) {
                e = n < 0 ? errno : EAGAIN;
                break;
            }
        }
        if (got == img->size) {
            return 0;
        }
    } else if (e != EAGAIN) {
        e = ENOMEM;
    }
    why(err, errlen, e == EAGAIN
            ? "image %s became shorter while it was read (being written?); try again once it is written whole"
            : "cannot make a private copy of image %s: %s",
        path, strerror(e));
    return -1;
}

/* img's frames of `chunk` bytes: the CRC of each (img->crcs) and all of
 * them prebuilt (img->wire: NULL when they did not fit anywhere). -1 when
 * out of memory for the CRCs. */
static int frames_build(struct image *img, uint32_t chunk)
{
    uint32_t i, n = (uint32_t)(((uint64_t)img->size + chunk - 1) / chunk); /* no wrap near 4 GiB */

    img->chunk = chunk;
    img->crcs = calloc(n, sizeof(*img->crcs));
    if (!img->crcs) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        uint32_t off = i * chunk, len = img->size - off < chunk ? img->size - off : chunk;
        uint8_t head[TCPOTA_DATA_HEAD_LEN];
        tcpota_data_head(head, off, (uint16_t)len);
        img->crcs[i] = tcpota_crc32c_update(tcpota_crc32c(head, TCPOTA_DATA_HEAD_LEN), img->map + off, len);
    }
    img->wire_len = (size_t)n * (chunk + TCPOTA_DATA_OVERHEAD);
    img->wire_fd = wire_create(img, n);
    if (img->wire_fd >= 0) {
        img->wire_seg = evbuffer_file_segment_new(img->wire_fd, 0, (ev_off_t)img->wire_len, 0);
    }
    return 0;
}

static int image_load(struct image *img, const char *path, const char *version, unsigned chunk,
                      char *err, size_t errlen)
{
    struct stat st;
    size_t vlen = strlen(version);
    int src, copied;

    memset(img, 0, sizeof(*img));
    img->fd = -1;
    img->wire_fd = -1;
    if (vlen == 0 || vlen > TCPOTA_MAX_NAME) {
        why(err, errlen, "--version must be 1..32 characters");
        return -1;
    }
    if (!tcpota_printable(version, vlen, 1, TCPOTA_MAX_NAME)) {
        why(err, errlen, "--version must be printable ASCII");
        return -1;
    }
    /* O_NONBLOCK: a FIFO would otherwise wait for a writer forever. */
    img->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (img->fd < 0 || fstat(img->fd, &st) < 0) {
        why(err, errlen, "cannot open image %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        why(err, errlen, "image %s is not a regular file (it is %s)", path,
            text_file_kind(st.st_mode));
        return -1;
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > 0xffffffffu) {
        why(err, errlen, "image %s must have 1 byte to 4 GiB - 1 (has %lld)", path,
                (long long)st.st_size);
        return -1;
    }
    img->size = (uint32_t)st.st_size;
    img->src = st;
    src = img->fd;
    img->fd = -1;
    copied = private_copy(img, src, path, err, errlen);
    close(src);
    if (copied < 0) {
        return -1;
    }
    if (digest_once(img->map, img->size, img->desc.id) < 0) {
        why(err, errlen, "out of memory");
        return -1;
    }
    sodium_bin2hex(img->idhex, sizeof(img->idhex), img->desc.id, TCPOTA_ID_LEN);
    memcpy(img->version, version, vlen + 1);
    img->desc.size = img->size;
    img->desc.version = img->version;
    img->desc.version_len = (uint16_t)vlen;
    if (frames_build(img, chunk) < 0) {
        why(err, errlen, "out of memory");
        return -1;
    }
    if (img->fd < 0) {
        return 0; /* in memory: its bytes go by reference (add_segment) */
    }
    img->seg = evbuffer_file_segment_new(img->fd, 0, img->size, 0);
    segment_drops_probe(img->fd);
    if (!img->seg) {
        why(err, errlen, "cannot prepare %s for sending", path);
        return -1;
    }
    return 0;
}

static void image_free(struct image *img)
{
    if (img->variant) image_free(img->variant);
    if (img->wire_seg) evbuffer_file_segment_free(img->wire_seg);
    if (img->wire_fd >= 0) {
        if (img->wire) munmap(img->wire, img->wire_len);
        close(img->wire_fd);
        img->wire = NULL;
    }
    if (img->seg) evbuffer_file_segment_free(img->seg);
    if (img->borrowed) {
        /* a variant: its bytes are its parent's */
    } else if (img->map && img->heap) {
        free(img->map);
    } else if (img->map) {
        munmap(img->map, img->size);
    }
    if (img->fd >= 0) close(img->fd);
    free(img->crcs);
    free(img->wire);
    free(img->manifest);
    free(img);
}

struct image *image_open(const char *path, const char *version, const char *model,
                         const uint8_t *manifest, uint16_t manifest_len, unsigned chunk,
                         char *err, size_t errlen)
{
    struct image *img = calloc(1, sizeof(*img));

    if (!img) {
        why(err, errlen, "out of memory");
        return NULL;
    }
    if (image_load(img, path, version, chunk, err, errlen) < 0) {
        image_free(img);
        return NULL;
    }
    if (model && strlen(model) > TCPOTA_MAX_NAME) {
        why(err, errlen, "model '%s' is longer than %u characters", model,
                TCPOTA_MAX_NAME);
        image_free(img);
        return NULL;
    }
    snprintf(img->model, sizeof(img->model), "%s", model ? model : "");
    if (manifest && manifest_len) {
        if (!(img->manifest = malloc(manifest_len))) {
            why(err, errlen, "out of memory");
            image_free(img);
            return NULL;
        }
        memcpy(img->manifest, manifest, manifest_len);
        img->desc.manifest = img->manifest;
        img->desc.manifest_len = manifest_len;
    }
    image_offer_fp(img->desc.id, img->manifest, img->manifest ? img->desc.manifest_len : 0,
                   img->offer_fp);
    img->refs = 1;
    return img;
}

void image_offer_fp(const uint8_t *id, const uint8_t *manifest, size_t manifest_len, uint8_t *out)
{
    crypto_hash_sha256_state st;

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, id, TCPOTA_ID_LEN);
    if (manifest && manifest_len) {
        crypto_hash_sha256_update(&st, manifest, manifest_len);
    }
    crypto_hash_sha256_final(&st, out);
}

int image_check_manifest(const struct image *img, const char *path, const char *manifest_path,
                         int may_unsign, char *err, size_t errlen)
{
    struct tcpota_manifest m;
    char hex[2 * TCPOTA_ID_LEN + 1];
    const char *todo = may_unsign ? "give the image's own manifest, or sign it again (tcpota "
                                    "sign), or remove the manifest to serve the image unsigned"
                                  : "give the image's own manifest, or sign it again (tcpota sign)";

    if (!img->manifest) {
        return 0;
    }
    if (tcpota_manifest_parse(img->manifest, img->desc.manifest_len, &m) < 0) {
        why(err, errlen, "the manifest %s of %s is not a tcpota manifest, or is damaged; %s",
            manifest_path, path, todo);
        return -1;
    }
    if (m.image_size != img->size) {
        why(err, errlen, "%s is %u bytes, its manifest %s says %u (another image's manifest, or this "
            "image altered after signing?); %s",
            path, img->size, manifest_path, m.image_size, todo);
        return -1;
    }
    if (memcmp(m.sha256, img->desc.id, TCPOTA_ID_LEN) != 0) {
        sodium_bin2hex(hex, sizeof(hex), img->desc.id, TCPOTA_ID_LEN);
        why(err, errlen, "%s has SHA-256 %s, not the one its manifest %s gives (another image's "
            "manifest, or this image altered after signing?); %s", path, hex, manifest_path, todo);
        return -1;
    }
    return 0;
}

struct image *image_ref(struct image *img)
{
    img->refs++;
    return img;
}

void image_unref(struct image *img)
{
    if (img && --img->refs == 0) {
        image_free(img);
    }
}

int image_add_bytes(struct evbuffer *out, const uint8_t *p, size_t n)
{
    struct evbuffer_iovec v;

    if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) == 1 && v.iov_len >= n) {
        memcpy(v.iov_base, p, n);
        v.iov_len = n;
        if (evbuffer_commit_space(out, &v, 1) == 0) {
            return 0;
        }
    }
    return evbuffer_add(out, p, n) == 0 ? 0 : -1;
}

/* Queues len bytes at `at` of *seg (by sendfile where the platform has it),
 * or, without a segment, by reference to the same bytes at mem. */
static int add_segment(struct evbuffer *out, struct evbuffer_file_segment **seg,
                       const uint8_t *mem, size_t at, size_t len)
{
    if (!*seg) {
        return evbuffer_add_reference(out, mem, len, NULL, NULL);
    }
    if (evbuffer_add_file_segment(out, *seg, (ev_off_t)at, (ev_off_t)len) == 0) {
        return 0;
    }
    if (segment_drops != 0) {
        /* libevent took our reference: the segment is not ours to use nor
         * to free any more. The image's bytes go by reference to memory
         * from now on. (Where the failure was mapping the file, before
         * any reference moved, one segment leaks.) */
        *seg = NULL;
    }
    return -1;
}

int image_add_payload(struct evbuffer *out, struct image *img, uint32_t off, uint32_t len)
{
    return add_segment(out, &img->seg, img->map + off, off, len);
}

/* 1 when image bytes [off, off + len) are one aligned frame of the image's
 * chunk: the frames whose CRC is kept (img->crcs) and prebuilt (img->wire). */
static int aligned_frame(const struct image *img, uint32_t off, uint32_t len)
{
    return off % img->chunk == 0 && (len == img->chunk || off + len == img->size);
}

int image_add_frame(struct evbuffer *out, struct image *img, uint32_t off, uint16_t len)
{
    uint8_t frame[TCPOTA_DATA_HEAD_LEN + TCPOTA_MAX_PAYLOAD + 4];
    uint8_t *head = frame, *tail = frame + TCPOTA_DATA_HEAD_LEN + len;
    uint32_t crc;

    tcpota_data_head(head, off, len);
    if (aligned_frame(img, off, len)) {
        crc = img->crcs[off / img->chunk];
    } else {
        crc = tcpota_crc32c_update(tcpota_crc32c(head, TCPOTA_DATA_HEAD_LEN), img->map + off, len);
    }
    /* Whole, copied: frames built one by one then share the queue's chains
     * (its payload as a file segment of its own cost two chains a frame,
     * over 1 KiB of heap for each 512-byte frame: a trial's 1 MiB a
     * connection). The head maybe behind a run. */
    memcpy(head + TCPOTA_DATA_HEAD_LEN, img->map + off, len);
    tcpota_put_u32(tail, crc);
    return image_add_bytes(out, frame, (size_t)TCPOTA_DATA_HEAD_LEN + len + 4);
}

int image_add_run(struct evbuffer *out, struct image *img, size_t at, size_t len)
{
    return add_segment(out, &img->wire_seg, img->wire + at, at, len);
}

/* img's frames prebuilt at chunk, another than its own: made once, at the
 * first ask (on the loop: a CRC and a copy of the image, about 1 ms per
 * MiB), for the first such chunk; NULL for another, or when they could not
 * be made, or the image is over IMAGE_VARIANT_MAX (its frames are then
 * built one by one). A hostile trial's devices at MAX_PAYLOAD 520 made the
 * server build and copy every 512-byte frame: 10x nginx's CPU per GB. */
static struct image *variant_for(struct image *img, uint32_t chunk)
{
    struct image *v;

    if (img->variant) {
        return img->variant->chunk == chunk ? img->variant : NULL;
    }
    if (img->variant_failed || img->size > IMAGE_VARIANT_MAX || !(v = calloc(1, sizeof(*v)))) {
        img->variant_failed = 1;
        return NULL;
    }
    v->fd = -1;
    v->wire_fd = -1;
    v->borrowed = 1;
    v->map = img->map;
    v->size = img->size;
    if (frames_build(v, chunk) < 0 || !v->wire) {
        image_free(v);
        img->variant_failed = 1;
        return NULL;
    }
    img->variant = v;
    return v;
}

size_t image_prebuilt(const struct image *img, uint32_t chunk)
{
    if (img->wire && chunk == img->chunk) {
        return img->wire_len;
    }
    return img->variant && img->variant->chunk == chunk ? img->variant->wire_len : 0;
}

int image_add_frames(struct evbuffer *out, struct image *img, uint32_t chunk, uint32_t off,
                     uint32_t len, size_t *queued)
{
    const size_t frame = (size_t)img->chunk + TCPOTA_DATA_OVERHEAD;
    const uint32_t end = off + len;
    struct image *v;

    *queued = 0;
    if (chunk != img->chunk && (v = variant_for(img, chunk)) != NULL) {
        return image_add_frames(out, v, chunk, off, len, queued);
    }
    if (!img->wire || chunk != img->chunk) {
        /* Every frame built and copied: room for all of them in one chain
         * (a chain each cost twice their bytes at 512-byte frames). */
        size_t frames = len / chunk + 2; /* a partial frame at either end */
        if (evbuffer_expand(out, (size_t)len + frames * TCPOTA_DATA_OVERHEAD) < 0) {
            return -1;
        }
    }
    while (off < end) {
        uint32_t n = chunk - off % chunk, run;
        size_t wire;
        if (n > end - off) {
            n = end - off;
        }
        if (!img->wire || chunk != img->chunk || !aligned_frame(img, off, n)) {
            /* Not a prebuilt frame: after a re-seek to an offset inside
             * a chunk, a device's smaller chunk, a prestream limit. */
            if (image_add_frame(out, img, off, (uint16_t)n) < 0) {
                return -1;
            }
            *queued += n + TCPOTA_DATA_OVERHEAD;
            off += n;
            continue;
        }
        /* The whole frames from here, and the image's last one: prebuilt
         * back to back, so one reference for all of them. */
        run = end == img->size ? end - off : (end - off) / chunk * chunk;
        wire = (size_t)(run / chunk) * frame + (run % chunk ? run % chunk + TCPOTA_DATA_OVERHEAD : 0);
        if (image_add_run(out, img, (size_t)(off / chunk) * frame, wire) < 0) {
            return -1;
        }
        *queued += wire;
        off += run;
    }
    return 0;
}
