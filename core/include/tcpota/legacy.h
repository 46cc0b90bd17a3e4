/*
 * legacy.h - the original sample's protocol, server side, sans I/O.
 *
 * Devices already in the field run the sample client: they send
 * "req0\r\n\r\n" for the next package of at most 512 bytes, or
 * "req1\r\n\r\n" for the last package again, and read each answer
 * "total: <size>\r\nlength: <n>\r\n\r\n<n bytes>" with one receive into a
 * 768-byte buffer. tcpota serves them on the same port as protocol v1:
 * tcpota_detect() tells the two apart from the first byte. Each connection
 * keeps its own position, so any number of legacy devices update at once.
 */
#ifndef TCPOTA_LEGACY_H
#define TCPOTA_LEGACY_H

#include "tcpota.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_LEGACY_PKG 512u     /* bytes per package, as in the sample */
#define TCPOTA_LEGACY_REQ_LEN 8u   /* "req0\r\n\r\n" */
#define TCPOTA_LEGACY_HEAD_MAX 40u /* longest "total: ...length: ...\r\n\r\n" */

enum tcpota_proto_kind {
    TCPOTA_KIND_V1 = 1,     /* first byte is a HELLO frame type */
    TCPOTA_KIND_LEGACY = 2, /* first byte 'r' of "req0"/"req1" */
    TCPOTA_KIND_TLS = 3,    /* first byte 0x16: a TLS ClientHello (reserved) */
};

/* Tells which protocol a connection speaks from its first byte(s). Returns
 * an enum tcpota_proto_kind, TCPOTA_ERR_AGAIN when len is 0, or
 * TCPOTA_ERR_PROTO for anything else. */
int tcpota_detect(const uint8_t *in, size_t len);

struct tcpota_legacy {
    uint32_t size;     /* image size ("total") */
    uint32_t pos;      /* offset of the last package sent */
    uint16_t last_len; /* its length; the next req0 starts after it */
    uint8_t started;   /* a package was sent */
    uint8_t have;      /* request bytes buffered */
    uint8_t req[TCPOTA_LEGACY_REQ_LEN];
};

/* One package to send: image bytes [offset, offset + len); len 0 after the end. */
struct tcpota_legacy_pkg {
    uint8_t ready;
    uint8_t resend; /* 1 for req1 */
    uint32_t offset;
    uint16_t len;
};

/* Starts a legacy connection for an image of `size` bytes. */
void tcpota_legacy_init(struct tcpota_legacy *l, uint32_t size);

/* Consumes request bytes (split anywhere). Returns the count consumed; when
 * a whole request has arrived it stops after it and sets pkg->ready. Returns
 * TCPOTA_ERR_PROTO for bytes that are not req0/req1. */
int tcpota_legacy_input(struct tcpota_legacy *l, const uint8_t *in, size_t len,
                        struct tcpota_legacy_pkg *pkg);

/* Writes the package header for `len` bytes of an image of `total` bytes
 * into out (no NUL). Returns its length or TCPOTA_ERR_NOSPC. */
int tcpota_legacy_header(uint32_t total, uint16_t len, char *out, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_LEGACY_H */
