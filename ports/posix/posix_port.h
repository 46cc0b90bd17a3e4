/*
 * posix_port.h - the tcpota device port for POSIX: an ESP32 in a directory.
 *
 * This port lets the device side of libtcpota run on Linux with the same
 * flash semantics as an ESP32 with app rollback enabled, so that updates,
 * resumes, power cuts and rollbacks can be tested without hardware. A
 * device is a directory of NOR flash regions (see flash_emu.h):
 *
 *   ota_0.bin, ota_1.bin  two app slots of slot_size bytes each
 *   otadata.bin           two sectors; the valid record (CRC32) with the
 *                         highest sequence number says which slot boots,
 *                         its state (new, pending verify, valid, invalid,
 *                         aborted) and, per slot, size, SHA-256, version
 *   nvs.bin               two sectors holding the whole key/value table,
 *                         rewritten to the other sector on every change
 *
 * Every record is written to the sector that does not hold the current
 * one, so a power cut at any point leaves the previous record readable.
 *
 * Use: tcpota_posix_open(), then tcpota_posix_boot() (the bootloader: it
 * picks the slot, handles rollback and checks the image SHA-256), then
 * tcpota_posix_port() to get the struct tcpota_port for the device
 * session. After set_boot or mark_invalid, call tcpota_posix_boot() again:
 * that is the reboot. tcpota_posix_close() at the end.
 *
 * To look at a device without running it (`tcpota device status`), use
 * tcpota_posix_inspect(): it reads the files read-only and tells what the
 * bootloader would run at the next reset, writing nothing.
 *
 * Memory: struct tcpota_posix_dev is allocated by the caller (about 9 KiB:
 * it holds a copy of the NVS sector and a scratch sector); nothing here
 * calls malloc. Its members are private. One device is not thread-safe.
 */
#ifndef TCPOTA_POSIX_PORT_H
#define TCPOTA_POSIX_PORT_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "flash_emu.h"
#include "tcpota/port.h"
#include "tcpota/tcpota.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Slot size used when tcpota_posix_open() is given 0 on creation. */
#define TCPOTA_POSIX_SLOT_SIZE_DEFAULT (2u * 1024u * 1024u)
/* Longest version string, NUL excluded: the core's limit, and the size of
 * the NUL-padded field in otadata (as esp_app_desc_t.version[32]). */
#define TCPOTA_POSIX_VERSION_MAX 32
/* The file of a device directory that holds its boot records: a directory
 * without it holds no device (or one whose creation was cut short). */
#define TCPOTA_POSIX_OTADATA_FILE "otadata.bin"
/* DIR's NVS (the key-value records, kv_get and kv_set). */
#define TCPOTA_POSIX_NVS_FILE "nvs.bin"
/* NVS limits: key length without NUL, largest value. */
#define TCPOTA_POSIX_KV_KEY_MAX 15
#define TCPOTA_POSIX_KV_VALUE_MAX 512
/* Room for one detail message, NUL included. */
#define TCPOTA_POSIX_DETAIL_LEN 192

/* Image states recorded in otadata, numbered as esp_ota_img_states_t. */
enum tcpota_posix_img_state {
    TCPOTA_POSIX_IMG_NEW = 0,            /* set_boot done, never booted */
    TCPOTA_POSIX_IMG_PENDING_VERIFY = 1, /* booted once, not confirmed */
    TCPOTA_POSIX_IMG_VALID = 2,          /* confirmed (or factory) */
    TCPOTA_POSIX_IMG_INVALID = 3,        /* rejected by mark_invalid */
    TCPOTA_POSIX_IMG_ABORTED = 4         /* rebooted while still pending */
};

/* What otadata knows about one slot (private). */
struct tcpota_posix_meta {
    uint8_t valid; /* 1: a complete image, set_boot was called for it */
    uint32_t size;
    uint8_t sha256[TCPOTA_ID_LEN];
    char version[TCPOTA_POSIX_VERSION_MAX + 1];
};

/* The decoded otadata record (private). */
struct tcpota_posix_otadata {
    uint32_t seq;
    uint8_t boot_slot;
    uint8_t state;
    struct tcpota_posix_meta meta[2];
};

/* One emulated device. All members are private. */
struct tcpota_posix_dev {
    struct tcpota_flash slot[2];
    struct tcpota_flash otadata;
    struct tcpota_flash nvs;
    uint32_t slot_size;
    uint8_t opened;
    uint8_t booted;
    uint8_t running;
    uint8_t rolled_back;
    uint8_t refused_now; /* see tcpota_posix_slot_info */

    struct tcpota_posix_otadata rec; /* current otadata record */
    uint8_t rec_sector;              /* sector holding it */

    uint32_t nvs_seq;
    int nvs_sector;                           /* -1: nvs.bin is blank */
    uint8_t nvs_cur[TCPOTA_SECTOR_SIZE];      /* current NVS sector */
    uint8_t nvs_scratch[TCPOTA_SECTOR_SIZE];  /* next NVS sector */

    uint8_t ota_state; /* idle, writing, ended */
    uint32_t ota_pos;
    uint32_t ota_erased_to; /* end of the last sector erased for writing */
    struct tcpota_posix_meta img;

    void *sha; /* OpenSSL's EVP_MD_CTX, made at the first sha256_begin; freed by close */
    uint8_t sha_active;

    char detail[TCPOTA_POSIX_DETAIL_LEN];
    int detail_rc; /* what the failure that wrote detail returned */
};

/* The image that runs now, for status reports. */
struct tcpota_posix_slot_info {
    uint8_t slot; /* 0 or 1 */
    uint8_t pending;     /* 1: not yet confirmed (mark_valid) */
    uint8_t rolled_back; /* 1: the last boot refused the boot slot (a new image
                          * not confirmed, or bytes that no longer hash to
                          * the slot's record) and fell back to the other */
    uint8_t refused_now; /* 1: that boot refused a slot it was to run (a new
                          * image never confirmed, found so now; bytes that no
                          * longer hash); 0 when the slot was refused at an
                          * earlier reset (rejected, or aborted), as
                          * rolled_back stays 1 until the next set_boot */
    uint32_t size;
    uint8_t sha256[TCPOTA_ID_LEN];
    char version[TCPOTA_POSIX_VERSION_MAX + 1]; /* NUL-terminated */
};

/* What tcpota_posix_inspect() reports about a device directory. */
struct tcpota_posix_status {
    /* The image the bootloader would run at the next reset, described as
     * tcpota_posix_running() would describe it right after that boot: a
     * NEW image (set_boot done, not yet rebooted into) has pending = 1, as
     * that boot makes it PENDING_VERIFY; an image that is PENDING_VERIFY
     * now is refused by that boot, so the other slot is reported with
     * rolled_back = 1; likewise for INVALID, ABORTED or a boot slot whose
     * bytes do not hash to its record. */
    struct tcpota_posix_slot_info next;
    /* otadata as it is now, before that boot: the boot slot and its state
     * (enum tcpota_posix_img_state). */
    uint8_t boot_slot;
    uint8_t boot_state;
    /* The raw value of the NVS key "tcpota.resume" (TCPOTA_KEY_RESUME of
     * tcpota/device.h, the core's resume record), resume_len bytes; -1
     * when the key is absent. Not checked here: its format is the core's
     * (tcpota_dev_resume_parse reads it, given slot_size). */
    int resume_len;
    uint8_t resume[TCPOTA_POSIX_KV_VALUE_MAX];
    uint32_t slot_size; /* bytes of each app slot */
};

/* Open the device in directory `dir`. With `create` != 0 a directory
 * that holds no device (missing, without any region file, or left by an
 * interrupted creation, which leaves otadata.bin.tmp) gets a fresh layout: slot 0 holds the factory image (size 0, SHA-256 of
 * the empty string, version `factory_version`, NULL = "0.0.0") and boots;
 * slot 1 is empty; NVS is empty. An existing device is opened as it is
 * either way. `slot_size` is the size of each slot, a non-zero multiple of
 * TCPOTA_SECTOR_SIZE; 0 means TCPOTA_POSIX_SLOT_SIZE_DEFAULT on creation
 * and "whatever the files say" when opening. The device must then be
 * booted with tcpota_posix_boot().
 * A directory that holds some region files but lost others (otadata.bin
 * deleted, say) is never created over, with or without `create`: that
 * would lose the installed image and the anti-rollback counter.
 * Returns 0, TCPOTA_ERR_NOENT (no device and !create, or a region file
 * missing: the detail says "DIR is missing NAME"), TCPOTA_ERR_INVAL
 * (bad argument, slot size differs from the files) or TCPOTA_ERR_IO
 * (OS error, a region file of the wrong length, no valid otadata record,
 * an unreadable NVS). On failure nothing stays open and
 * tcpota_posix_strerror_detail() says why. */
int tcpota_posix_open(struct tcpota_posix_dev *dev, const char *dir, int create,
                      uint32_t slot_size, const char *factory_version);

/* 1 when `dir` holds a device whose creation was cut short (a full disk,
 * a kill): the temporary otadata that creation makes first, and no
 * otadata.bin. tcpota_posix_open() with `create` makes such a device anew;
 * nothing in it was ever a device's. 0 otherwise (also for a missing dir). */
int tcpota_posix_creation_cut_short(const char *dir);

/* 1 when dir holds any file of a device's flash (otadata, a slot, NVS, or
 * the mark of a creation), 0 when none: a folder that is no device's. */
int tcpota_posix_holds_device_files(const char *dir);

/* Marks dir (which exists) as holding a creation under way, as
 * tcpota_posix_open() with `create` does first, so that a kill before that
 * (a caller that made dir and locked it) is one cut short too. Returns 0,
 * or -1 with errno. */
int tcpota_posix_creation_begin(const char *dir);

/* Removes the mark tcpota_posix_creation_begin() made, for a caller that
 * gives up before the creation began. Returns 0, or -1 with errno. */
int tcpota_posix_creation_abandon(const char *dir);

/* Close every file of the device. Safe to call twice. Returns 0,
 * TCPOTA_ERR_INVAL (NULL dev) or TCPOTA_ERR_IO. */
int tcpota_posix_close(struct tcpota_posix_dev *dev);

/* Reset, as the ESP32 bootloader with rollback enabled: a NEW image
 * becomes PENDING_VERIFY and runs; an image still PENDING_VERIFY (never
 * confirmed) becomes ABORTED and the other slot runs; INVALID or ABORTED
 * runs the other slot; the chosen slot must have valid metadata and hash
 * to its recorded SHA-256, else the other slot runs. rolled_back is set
 * whenever the boot slot was refused. Any image being written is dropped
 * (RAM does not survive a reset). Returns 0, TCPOTA_ERR_INTEGRITY (no slot
 * is bootable), TCPOTA_ERR_STATE (not open) or TCPOTA_ERR_IO. */
int tcpota_posix_boot(struct tcpota_posix_dev *dev);

/* Fill *port with this device's functions (ctx = dev). verify_offer is
 * NULL. The device must stay open while the port is used. Returns 0 or
 * TCPOTA_ERR_INVAL.
 *
 * Where port.h leaves room, the functions behave as ESP-IDF does:
 *  - every OTA call and boot_state need a booted device (else
 *    TCPOTA_ERR_STATE); the update slot is always the one not running.
 *  - ota_begin/ota_resume: TCPOTA_ERR_NOSPC if img->size > slot_size,
 *    TCPOTA_ERR_STATE while the running image is pending verification
 *    (the other slot is its rollback target), TCPOTA_ERR_INVAL for a
 *    version over 32 bytes or with a NUL. Before any byte is
 *    written, otadata marks the slot as not bootable. ota_resume needs
 *    offset % 4096 == 0 (INVAL) and offset <= size (RANGE); like
 *    esp_ota_resume it trusts the caller about the bytes before offset.
 *  - ota_write past img->size: TCPOTA_ERR_RANGE, nothing written.
 *  - ota_end: TCPOTA_ERR_STATE unless all img->size bytes were written.
 *  - set_boot: only once after ota_end (else STATE); it hashes the slot
 *    and refuses with TCPOTA_ERR_INTEGRITY when the bytes are not the
 *    image whose id was offered (as esp_ota_set_boot_partition verifies).
 *  - mark_invalid: TCPOTA_ERR_STATE unless the running image is pending;
 *    on success the device counts as rebooting: call tcpota_posix_boot().
 *  - kv_get: TCPOTA_ERR_NOSPC if the value is longer than cap. kv_erase of
 *    a missing key: TCPOTA_ERR_NOENT. kv_set: TCPOTA_ERR_NOSPC for a value
 *    over TCPOTA_POSIX_KV_VALUE_MAX or a full table (about 4 KiB in all);
 *    it syncs both slots before writing the table.
 *  - rolled_back stays 1 after a rejected image until the next set_boot
 *    or ota_begin changes otadata (as esp_ota_get_last_invalid_partition). */
int tcpota_posix_port(struct tcpota_posix_dev *dev, struct tcpota_port *port);

/* Describe the running image. Returns 0 or TCPOTA_ERR_STATE (not
 * booted). */
int tcpota_posix_running(const struct tcpota_posix_dev *dev, struct tcpota_posix_slot_info *out);

/* Inspect the device in `dir` without changing it: every file is opened
 * O_RDONLY, nothing is created, written, renamed or synced, and no
 * file's bytes or mtime change. It runs the bootloader's decision of
 * tcpota_posix_boot() (state checks, SHA-256 of the candidate slots)
 * without its writes, and reads the resume record from NVS; see struct
 * tcpota_posix_status for what is reported. It may run while another
 * process runs the device; a report taken while that process writes may
 * be stale or, rarely, fail with TCPOTA_ERR_IO: ask again.
 * `dev` is only workspace for the buffers (no malloc): whatever it held
 * is overwritten and it is left closed; it must not be an open device.
 * Returns 0, TCPOTA_ERR_INVAL (NULL argument, empty dir), TCPOTA_ERR_NOENT
 * (no device: a region file is missing), TCPOTA_ERR_IO (OS error, a file
 * of the wrong length, no valid otadata record, unreadable NVS) or
 * TCPOTA_ERR_INTEGRITY (neither slot would boot). On failure
 * tcpota_posix_strerror_detail(dev) says why. */
int tcpota_posix_inspect(struct tcpota_posix_dev *dev, const char *dir,
                         struct tcpota_posix_status *out);

/* One NVS record a caller of tcpota_posix_inspect_records() asks for. */
struct tcpota_posix_record {
    const char *key; /* in: the NVS key */
    uint8_t *buf;    /* in: where its value goes, cap bytes */
    size_t cap;
    int len; /* out: the value's length, TCPOTA_ERR_NOENT (absent) or
              * TCPOTA_ERR_NOSPC (longer than cap: buf holds nothing) */
};

/* tcpota_posix_inspect(), and the NVS records named in rec[0..n-1] read in
 * the same read-only pass (the host device's id, model and trusted keys,
 * which only its caller knows the keys of). A record's absence or length
 * is reported in its len, not as a failure; the return and out are
 * tcpota_posix_inspect()'s (on failure every len is TCPOTA_ERR_NOENT). */
int tcpota_posix_inspect_records(struct tcpota_posix_dev *dev, const char *dir,
                                 struct tcpota_posix_status *out,
                                 struct tcpota_posix_record *rec, size_t n);

/* Attach a power-cut schedule to every region of the open device (NULL
 * detaches; tcpota_posix_open() starts without one). The fault must
 * outlive its use. Returns 0, or TCPOTA_ERR_INVAL for a NULL dev. */
int tcpota_posix_set_fault(struct tcpota_posix_dev *dev, struct tcpota_flash_fault *fault);

/* The reason of the last failure, for logs (e.g. "ota_1.bin: prog at
 * 0x1000 over non-erased byte 0x00"), or "". Never NULL. */
const char *tcpota_posix_strerror_detail(const struct tcpota_posix_dev *dev);

/* The reason of the last failure when that failure returned rc, else "":
 * a session that fails for a reason of its own (an image that does not
 * read back as its id) is not explained by an earlier, harmless failure
 * of the port (a record looked up and not found). Never NULL. */
const char *tcpota_posix_detail_for(const struct tcpota_posix_dev *dev, int rc);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_POSIX_PORT_H */
