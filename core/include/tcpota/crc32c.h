/*
 * crc32c.h - CRC32C (Castagnoli), the checksum that ends every tcpota frame.
 *
 * CRC32C detects all burst errors up to 32 bits and is the CRC of iSCSI,
 * ext4 and SCTP. It is computed incrementally, so a frame whose bytes come
 * from several places (a header built on the stack, payload from a file)
 * can be checked without joining them.
 */
#ifndef TCPOTA_CRC32C_H
#define TCPOTA_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the CRC32C of `len` bytes at `data`. tcpota_crc32c("123456789", 9)
 * is 0xE3069283. */
uint32_t tcpota_crc32c(const void *data, size_t len);

/* Continues a CRC32C: pass 0 for the first piece, then the previous
 * result. Equal to tcpota_crc32c() over the pieces joined. */
uint32_t tcpota_crc32c_update(uint32_t crc, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_CRC32C_H */
