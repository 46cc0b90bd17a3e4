/*
 * flash_emu.h - a NOR flash region emulated by one file, with power cuts.
 *
 * The POSIX port keeps each "partition" of its emulated ESP32 (app slots,
 * otadata, NVS) in one file of fixed size and reaches it only through this
 * module, so that the rules of real NOR flash hold everywhere: erased bytes
 * read 0xFF, erasing works on whole 4096-byte sectors, and a byte can be
 * programmed only once between two erases. The emulator is stricter than
 * silicon on purpose: a prog over a byte that is not 0xFF fails (even when
 * the new value equals the old one), so a caller that forgets an erase is
 * caught at once instead of corrupting data on a real device.
 *
 * Power-cut injection: regions of one device point to one shared
 * struct tcpota_flash_fault that counts every erase (one per sector) and
 * prog call. With cut_after = k, the k-th operation is the last that
 * happens and every later operation (and read and sync) fails with
 * TCPOTA_ERR_IO, as if the device had lost power; a test then reopens the
 * files without a fault to see what a reboot would see. Data goes to the
 * file with pwrite as each call runs, so a process killed with SIGKILL
 * leaves exactly what a power cut would.
 *
 * Nothing here allocates: struct tcpota_flash is owned by the caller.
 * Every function returns 0 on success or a negative enum tcpota_err; the
 * reason of the last failure, for logs, is in tcpota_flash_detail().
 */
#ifndef TCPOTA_FLASH_EMU_H
#define TCPOTA_FLASH_EMU_H

#include <stddef.h>
#include <stdint.h>

#include "tcpota/tcpota.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Room for one detail message, NUL included. */
#define TCPOTA_FLASH_DETAIL_LEN 128

/* Power-cut schedule shared by all regions of one device. All-zero means
 * "never cut"; the test owns it and may read or reset it at any time. */
struct tcpota_flash_fault {
    /* Erase (per sector) and prog operations that reached the flash. */
    uint32_t ops;
    /* 0: never; k: power is lost right after the k-th operation. */
    uint32_t cut_after;
    /* 1: the k-th operation is torn: a prog lands only its first half
     * (rounded down), an erase sets only the first half of the sector to
     * 0xFF and leaves the second half as it was. */
    uint8_t tear;
    /* Set by the emulator once power is lost. */
    uint8_t lost;
};

/* One region. Members are private except `size` (read-only). */
struct tcpota_flash {
    int fd;
    uint32_t size;
    struct tcpota_flash_fault *fault;
    uint8_t readonly;
    char name[32];
    char detail[TCPOTA_FLASH_DETAIL_LEN];
};

/* Open the region stored in the file `path`. With `create` != 0 the file
 * is created (or truncated) and filled with 0xFF to `size` bytes. Without,
 * the file must exist and be a regular file of exactly `size` bytes, or of
 * any non-zero multiple of TCPOTA_SECTOR_SIZE when `size` is 0 (then
 * fl->size tells it). `size` must be a multiple of TCPOTA_SECTOR_SIZE.
 * Returns 0, TCPOTA_ERR_NOENT (no such file), TCPOTA_ERR_DENIED (this user
 * may not open it so: permissions, an immutable file, a read-only mount),
 * TCPOTA_ERR_INVAL (bad size) or TCPOTA_ERR_IO (wrong length, not a file,
 * OS error). On failure no
 * file descriptor stays open. */
int tcpota_flash_open(struct tcpota_flash *fl, const char *path, uint32_t size, int create);

/* Open the existing region in `path` for reading only (O_RDONLY): the
 * checks of tcpota_flash_open() without create, and every later erase or
 * prog fails with TCPOTA_ERR_IO before touching the file or the fault
 * counter. For inspecting a device without changing a byte of it. Returns
 * as tcpota_flash_open(). */
int tcpota_flash_open_readonly(struct tcpota_flash *fl, const char *path, uint32_t size);

/* Close the file. Safe to call twice and on a region whose open failed
 * (once fl->fd is -1). Returns 0 or TCPOTA_ERR_IO. */
int tcpota_flash_close(struct tcpota_flash *fl);

/* Read `len` bytes at `off`. Returns 0, TCPOTA_ERR_RANGE (outside the
 * region), TCPOTA_ERR_INVAL or TCPOTA_ERR_IO (power lost, OS error, file
 * shorter than it was at open). */
int tcpota_flash_read(struct tcpota_flash *fl, uint32_t off, void *buf, size_t len);

/* Erase [off, off+len) to 0xFF; both must be multiples of
 * TCPOTA_SECTOR_SIZE and len > 0. Each sector is one operation for the
 * fault counter, so a cut may leave the first sectors of a range erased.
 * Returns 0, TCPOTA_ERR_INVAL (unaligned), TCPOTA_ERR_RANGE or
 * TCPOTA_ERR_IO (power lost, read-only region, OS error). */
int tcpota_flash_erase(struct tcpota_flash *fl, uint32_t off, uint32_t len);

/* Program `len` bytes at `off`: every target byte must read 0xFF, else
 * nothing is written and TCPOTA_ERR_IO is returned with a detail naming
 * the offset. One call is one operation for the fault counter (len 0 is
 * none). Returns 0, TCPOTA_ERR_RANGE, TCPOTA_ERR_INVAL or TCPOTA_ERR_IO
 * (also on a read-only region). */
int tcpota_flash_prog(struct tcpota_flash *fl, uint32_t off, const void *buf, size_t len);

/* Make every completed prog and erase durable (fdatasync). Returns 0 or
 * TCPOTA_ERR_IO. */
int tcpota_flash_sync(struct tcpota_flash *fl);

/* Attach a power-cut schedule (NULL detaches). Always returns 0. */
int tcpota_flash_set_fault(struct tcpota_flash *fl, struct tcpota_flash_fault *fault);

/* The message of the last failure, e.g. "ota_1.bin: prog at 0x1234 over
 * non-erased byte 0x00", or "" if none. Never NULL; valid until the next
 * call on the region. */
const char *tcpota_flash_detail(const struct tcpota_flash *fl);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_FLASH_EMU_H */
