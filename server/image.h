/*
 * image.h - the image `tcpota serve` offers, loaded once: mapped, its
 * SHA-256 (the image id), the CRC32C of every aligned DATA frame, and all
 * aligned DATA frames prebuilt back to back (in a memfd where Linux has
 * one), so a connection's DATA goes out by sendfile.
 */
#ifndef TCPOTA_SERVER_IMAGE_H
#define TCPOTA_SERVER_IMAGE_H

#include "tcpota/server.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

struct evbuffer;
struct evbuffer_file_segment;

struct image {
    /* A private copy of the file (image.c, private_copy): what was read,
     * hashed and is served, whatever happens to the file since. */
    int fd;
    struct stat src; /* the file itself when it was read (fleet.c: changed since?) */
    uint8_t *map;   /* the copy's bytes: mapped, or (heap, fd -1) in memory */
    int heap;
    uint32_t size;
    uint32_t chunk;
    uint32_t *crcs; /* CRC32C of the DATA frame of each aligned chunk */
    /* Every aligned DATA frame, whole and back to back (NULL if it did not
     * fit in memory): a run of frames goes out as one reference into it,
     * so a connection's queue costs a chain, not a chain per frame, and
     * one writev sends many frames. */
    uint8_t *wire;
    size_t wire_len;
    int wire_fd; /* file holding `wire` (image.c: wire_create), so runs of frames go out by
                  * sendfile; -1 when they are on the heap */
    struct evbuffer_file_segment *wire_seg;
    struct evbuffer_file_segment *seg;
    struct tcpota_srv_image desc;
    char version[TCPOTA_MAX_NAME + 1];
    char model[TCPOTA_MAX_NAME + 1]; /* from the signed manifest; "": any model */
    char idhex[2 * TCPOTA_ID_LEN + 1];
    uint8_t *manifest;               /* owned copy, or NULL */
    /* SHA-256 of the image id and the manifest: what a device declined. A
     * decline is about the offer (unsigned, wrong key, ...), so the same
     * bytes signed again are a new offer; a rollback is about the bytes. */
    uint8_t offer_fp[TCPOTA_ID_LEN];
    unsigned refs;                   /* the server and each connection using it */
    /* The frames prebuilt at one other chunk (devices whose MAX_PAYLOAD is
     * below the image's chunk), made at their first use (image_add_frames):
     * an image of its own but for its bytes, which are this one's (borrowed).
     * NULL: none yet; variant_failed: none could be made (frames are then
     * built one by one). */
    struct image *variant;
    uint8_t borrowed, variant_failed;
};

/* Loads the image at path, offered as `version` for `model` ("" or NULL:
 * any) with a copy of its signed manifest (NULL: none), in DATA frames of
 * `chunk` bytes. Returns it with one reference, or NULL with why in err
 * (errlen bytes: IMAGE_ERR_LEN is enough). A connection that streams it
 * holds a reference of its own, so a reload (SIGHUP) never pulls an image
 * from under a transfer. */
#define IMAGE_ERR_LEN 4608u /* a path of up to 4 KiB and the sentence around it */
struct image *image_open(const char *path, const char *version, const char *model,
                         const uint8_t *manifest, uint16_t manifest_len, unsigned chunk,
                         char *err, size_t errlen);
/* 0 when img's bytes (read from path) are those its manifest (read from
 * manifest_path) describes, its size and SHA-256; else -1 with why in err,
 * and what to do: sign the image again, or (may_unsign: the manifest's
 * signature is not required) remove the manifest to serve it unsigned. No
 * manifest: 0. What the start and a reload check (server.c), on the read
 * that hashed the image and built its frames. */
int image_check_manifest(const struct image *img, const char *path, const char *manifest_path,
                         int may_unsign, char *err, size_t errlen);
/* Takes another reference; returns img. */
struct image *image_ref(struct image *img);
/* Drops a reference; the last one frees the image (NULL: no-op). */
void image_unref(struct image *img);

/* Each of these returns 0, or -1 when libevent could not allocate: then
 * part of what was asked may be queued, and the caller must end the
 * connection (its stream has a hole). After such a failure the image's
 * bytes go by reference to memory instead of by sendfile (image.c). */

/* Queues one DATA frame of len image bytes from off, copied (a frame not
 * among the prebuilt ones: a device's smaller chunk, a resume inside a
 * chunk; len at most TCPOTA_MAX_PAYLOAD). */
int image_add_frame(struct evbuffer *out, struct image *img, uint32_t off, uint16_t len);
/* Queues image bytes [off, off + len) as they are (an HTTP download's
 * body), by sendfile where the platform has it. */
int image_add_payload(struct evbuffer *out, struct image *img, uint32_t off, uint32_t len);
/* Appends a few bytes (a frame's tail, a control frame) to out, which may
 * end in a file segment. Not evbuffer_add: there libevent sizes the new
 * chain like the segment chain before it (offset + length in the file),
 * i.e. up to the image size for each frame, which a peer that does not
 * read turns into megabytes of heap. */
int image_add_bytes(struct evbuffer *out, const uint8_t *p, size_t n);
/* Queues bytes [at, at + len) of the prebuilt frames (img->wire). */
int image_add_run(struct evbuffer *out, struct image *img, size_t at, size_t len);
/* The largest image whose frames are prebuilt at a second chunk too (the
 * largest ESP32 flash is 16 MiB; they are made on the loop, about 1 ms a
 * MiB). */
#define IMAGE_VARIANT_MAX (64u * 1024u * 1024u)
/* The bytes of img's frames prebuilt at `chunk` (its own chunk's, or those
 * of its variant), 0 when there are none (yet): what a connection at that
 * chunk may queue by reference. */
size_t image_prebuilt(const struct image *img, uint32_t chunk);
/* Queues the DATA frames of image bytes [off, off + len) as a session with
 * frames of `chunk` bytes cuts them (tcpota_srv_data_take): whole aligned
 * frames, and the image's last, as one run of prebuilt frames where the
 * session's chunk is the image's or its variant's (made here for the first
 * smaller chunk a device asks for, images up to IMAGE_VARIANT_MAX); any
 * other frame on its own. Sets *queued to the bytes queued. */
int image_add_frames(struct evbuffer *out, struct image *img, uint32_t chunk, uint32_t off,
                     uint32_t len, size_t *queued);

/* An offer's fingerprint (struct image's offer_fp): SHA-256 of the image's
 * id and then its signed manifest (none: the id alone), into out. */
void image_offer_fp(const uint8_t *id, const uint8_t *manifest, size_t manifest_len, uint8_t *out);

#endif
