/*
 * posix_internal.h - what the files of the POSIX port share. Private: not
 * installed, not for users of posix_port.h.
 *
 * One job per file:
 *   record.c      records in two alternating sectors: framing (magic,
 *                 sequence number, CRC32), finding the newest, committing
 *                 the next one to the other sector
 *   otadata.c     the otadata record: boot slot, its state, slot metadata
 *   nvs.c         the key/value table in nvs.bin
 *   boot.c        the bootloader: slot checks, rollback, tcpota_posix_boot()
 *   inspect.c     tcpota_posix_inspect(): the next boot, read-only
 *   open.c        open, create and close a device; failure messages
 *   posix_port.c  the struct tcpota_port functions
 *
 * Symbols shared between these files are prefixed tcpota_px_ (the public
 * API is tcpota_posix_). Every function that can fail returns 0 or a
 * count, else a negative enum tcpota_err, and leaves the reason in
 * dev->detail.
 */
#ifndef TCPOTA_POSIX_INTERNAL_H
#define TCPOTA_POSIX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "posix_port.h"
#include "tcpota/codec.h" /* tcpota_get_u32() and the other little-endian helpers */

#define SECTOR TCPOTA_SECTOR_SIZE

#if defined(__GNUC__)
#define PX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PX_PRINTF(f, a)
#endif

/* Image states in otadata (enum tcpota_posix_img_state). */
enum {
    ST_NEW = TCPOTA_POSIX_IMG_NEW,
    ST_PENDING = TCPOTA_POSIX_IMG_PENDING_VERIFY,
    ST_VALID = TCPOTA_POSIX_IMG_VALID,
    ST_INVALID = TCPOTA_POSIX_IMG_INVALID,
    ST_ABORTED = TCPOTA_POSIX_IMG_ABORTED
};

/* Image being written by the port. */
enum { OTA_IDLE = 0, OTA_WRITING = 1, OTA_ENDED = 2 };

/* ---- failure messages (open.c) --------------------------------------------- */

/* Print the reason into dev->detail; returns err. */
PX_PRINTF(3, 4)
int tcpota_px_fail(struct tcpota_posix_dev *dev, int err, const char *fmt, ...);

/* Pass a flash result through, copying the region's message on failure. */
int tcpota_px_flash_rc(struct tcpota_posix_dev *dev, const struct tcpota_flash *fl, int rc);

/* Open the device in `dir` with every file read-only (O_RDONLY) and load
 * otadata and NVS, as tcpota_posix_open(dev, dir, 0, 0, NULL) would, but
 * without marking it open for the port: nothing can write through it.
 * Close it with tcpota_posix_close(). Returns as tcpota_posix_open(). */
int tcpota_px_open_readonly(struct tcpota_posix_dev *dev, const char *dir);

/* ---- records in two alternating sectors (record.c) ------------------------ */

/* A record sits at the start of sector 0 or 1 of a region:
 *   magic u32 | seq u32 | body | CRC32 (IEEE) of every byte before it.
 * The valid record with the newest seq is current; the next one goes to
 * the other sector, so a power cut at any point leaves the current one
 * readable. Both otadata.bin and nvs.bin work this way. */

/* Offsets of the fields every record starts with. */
#define PX_REC_SEQ_OFF 4u
#define PX_REC_BODY_OFF 8u

/* 1 if the `len` bytes at p are framed as a record with `magic`: the magic
 * matches and the last 4 bytes are the CRC32 of those before. */
int tcpota_px_rec_framed(const uint8_t *p, size_t len, uint32_t magic);

/* Write magic, seq and the trailing CRC32 around the body already in
 * buf[PX_REC_BODY_OFF .. len-4). */
void tcpota_px_rec_seal(uint8_t *buf, size_t len, uint32_t magic, uint32_t seq);

/* Says whether the `len` bytes read from a sector hold a valid record of
 * one format (framing and body): 1 or 0. */
typedef int tcpota_px_rec_check(const uint8_t *p, size_t len);

/* Read the first `len` bytes of both sectors of `fl` into buf[0] and
 * buf[1]. Returns the sector (0 or 1) of the newest record `check`
 * accepts and stores its seq, TCPOTA_ERR_NOENT when neither sector holds
 * one, or the read error. Reads only. */
int tcpota_px_rec_load(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, uint8_t *const buf[2],
                       size_t len, tcpota_px_rec_check *check, uint32_t *seq);

/* Make the body in buf[PX_REC_BODY_OFF .. len-4) the record that follows
 * the current one (in sector `cur`, -1 for none, with sequence `seq`):
 * seal it with seq + 1, erase the other sector (sector 0 when cur < 0),
 * program and sync it. Returns the sector written or a negative error. */
int tcpota_px_rec_commit(struct tcpota_posix_dev *dev, struct tcpota_flash *fl, int cur,
                         uint32_t seq, uint32_t magic, uint8_t *buf, size_t len);

/* ---- otadata (otadata.c) ---------------------------------------------------- */

/* Load the current record of dev->otadata into dev->rec and
 * dev->rec_sector. TCPOTA_ERR_IO when neither sector holds one. */
int tcpota_px_otadata_load(struct tcpota_posix_dev *dev);

/* Write `next` (its seq is ignored) as the new current record. */
int tcpota_px_otadata_write(struct tcpota_posix_dev *dev, const struct tcpota_posix_otadata *next);

/* 1 if both records are the same apart from seq. */
int tcpota_px_otadata_same(const struct tcpota_posix_otadata *a,
                           const struct tcpota_posix_otadata *b);

/* Write the first record of a new device into the freshly erased region
 * `fl`: slot 0 holds the factory image (size 0, SHA-256 of "", version
 * `factory`) and boots, VALID; slot 1 is empty. */
int tcpota_px_otadata_format(struct tcpota_posix_dev *dev, struct tcpota_flash *fl,
                             const char *factory);

/* ---- NVS (nvs.c) ------------------------------------------------------------ */

/* Load the newest table of dev->nvs into dev->nvs_cur. A blank nvs.bin is
 * an empty table; anything else without a valid table is TCPOTA_ERR_IO. */
int tcpota_px_nvs_load(struct tcpota_posix_dev *dev);

/* Write an empty table into the freshly erased dev->nvs (new device). */
int tcpota_px_nvs_format(struct tcpota_posix_dev *dev);

/* Copy the value of `key` from the loaded table, without the checks of an
 * open device (inspect uses it). Returns its length, TCPOTA_ERR_NOENT or
 * TCPOTA_ERR_NOSPC (longer than cap). */
int tcpota_px_nvs_read(struct tcpota_posix_dev *dev, const char *key, uint8_t *buf, size_t cap);

/* The kv_get, kv_set and kv_erase of struct tcpota_port (see port.h and
 * posix_port.h): they need an open device and a key of 1..15 characters. */
int tcpota_px_kv_get(struct tcpota_posix_dev *dev, const char *key, uint8_t *buf, size_t cap);
int tcpota_px_kv_set(struct tcpota_posix_dev *dev, const char *key, const uint8_t *buf,
                     size_t len);
int tcpota_px_kv_erase(struct tcpota_posix_dev *dev, const char *key);

/* ---- the bootloader (boot.c) ------------------------------------------------ */

/* SHA-256 through OpenSSL (SHA-NI where the CPU has it: 0.6 ms per MiB
 * on the project's VM, libsodium's portable code 3.4 ms, and the host
 * device hashes each image twice after its last byte: bench/README.md).
 * *ctx: NULL, or a context of an earlier begin, reused. Each returns 0 or
 * -1 (out of memory, or OpenSSL failed). */
int tcpota_px_sha_begin(void **ctx);
int tcpota_px_sha_update(void *ctx, const uint8_t *p, size_t n);
int tcpota_px_sha_final(void *ctx, uint8_t out[TCPOTA_ID_LEN]);
/* Frees *ctx (NULL: nothing) and sets it NULL. */
void tcpota_px_sha_free(void **ctx);

/* SHA-256 of the first `size` bytes of slot `s`. */
int tcpota_px_slot_hash(struct tcpota_posix_dev *dev, unsigned s, uint32_t size,
                        uint8_t out[TCPOTA_ID_LEN]);

/* First step of a boot, from dev->rec, writing nothing: may the boot slot
 * run? Fills *next with otadata as the bootloader leaves it (NEW becomes
 * PENDING_VERIFY, PENDING_VERIFY becomes ABORTED, else unchanged).
 * Returns 1 (run it), 0 (refuse it) or a read error. */
int tcpota_px_boot_verdict(struct tcpota_posix_dev *dev, struct tcpota_posix_otadata *next);

/* Second step, from dev->rec: after `verdict` (1 or 0), which slot runs.
 * With 0 the other slot must hold the image its metadata describes.
 * Fills *running and *rolled_back. Returns 0, TCPOTA_ERR_INTEGRITY (no
 * bootable slot) or a read error. Writes nothing. */
int tcpota_px_boot_pick(struct tcpota_posix_dev *dev, int verdict, uint8_t *running,
                        uint8_t *rolled_back);

/* State of the running image: the boot slot's state in otadata, or VALID
 * for the previous image the bootloader fell back to. */
uint8_t tcpota_px_running_state(const struct tcpota_posix_dev *dev);

#endif /* TCPOTA_POSIX_INTERNAL_H */
