/*
 * tcpota.h - common definitions of libtcpota, the portable tcpota core.
 *
 * libtcpota is a sans-I/O protocol engine for firmware updates over TCP.
 * It never allocates, never calls the OS and never touches a socket or a
 * file: the caller hands it the bytes it received, takes the bytes it must
 * send, and gives it buffers it owns. The same code runs on a
 * microcontroller (the device side) and in the Linux server.
 *
 * Modules:
 *   crc32c.h  - CRC32C used by every frame
 *   codec.h   - frame decoder/encoder and message (de)serialisation
 *   port.h    - the device's storage/crypto port (maps onto esp_ota_ops)
 *   device.h  - device session state machine
 *   server.h  - server session state machine
 *   legacy.h  - the original sample's req0/req1 protocol (server side)
 *
 * Every function returns an int: a count or 0 on success when >= 0, else
 * one negative code of enum tcpota_err, named by tcpota_strerror().
 */
#ifndef TCPOTA_H
#define TCPOTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_VERSION_STRING "0.1.0"

/* Protocol version spoken by this build (docs/protocol.md). */
#define TCPOTA_PROTO_VERSION 1

/* Errors. Values follow errno where one fits, so logs read naturally. On
 * the wire an error travels as the positive value (u16). */
enum tcpota_err {
    TCPOTA_OK = 0,
    TCPOTA_ERR_NOENT = -2,      /* no such record / nothing stored */
    TCPOTA_ERR_MODEL = -19,     /* image is for another hardware model */
    TCPOTA_ERR_IO = -5,         /* storage or transport failure */
    TCPOTA_ERR_AGAIN = -11,     /* not now: output full, need more input */
    TCPOTA_ERR_DENIED = -13,    /* not allowed: auth or signature refused */
    TCPOTA_ERR_BUSY = -16,      /* peer is at its limit, retry later */
    TCPOTA_ERR_INVAL = -22,     /* bad argument from the caller */
    TCPOTA_ERR_NOSPC = -28,     /* buffer or slot too small */
    TCPOTA_ERR_UNSIGNED = -42,  /* a signed manifest is required and missing */
    TCPOTA_ERR_RANGE = -34,     /* offset or size out of range */
    TCPOTA_ERR_PROTO = -71,     /* malformed message or protocol violation */
    TCPOTA_ERR_STATE = -77,     /* message not valid in the current state */
    TCPOTA_ERR_CRC = -74,       /* frame CRC mismatch */
    TCPOTA_ERR_INTEGRITY = -84, /* image SHA-256 does not match the offer */
    TCPOTA_ERR_TOOBIG = -90,    /* frame longer than the agreed maximum */
    TCPOTA_ERR_VERSION = -93,   /* no common protocol version */
    TCPOTA_ERR_NOTSUP = -95,    /* unknown critical field or feature */
    TCPOTA_ERR_TIMEDOUT = -110, /* peer silent for too long */
    TCPOTA_ERR_REFUSED = -111,  /* offer declined / request refused */
    TCPOTA_ERR_DOWNGRADE = -116, /* security counter below the device's */
    TCPOTA_ERR_CANCELED = -125, /* session ended on purpose */
    TCPOTA_ERR_NOKEY = -126,    /* signed by a key the device does not trust */
    TCPOTA_ERR_BADSIG = -129,   /* signature does not verify */
    TCPOTA_ERR_FAILED_BEFORE = -131, /* the image failed on this device before (a
                                      * DECLINE's reason: TCPOTA_KEY_BAD), not
                                      * REFUSED, which a server may read as "runs it".
                                      * The largest code: a new one goes below it, or
                                      * server/metrics.c's table grows with it */
};

/* Returns a short static English description of a tcpota_err code (or of
 * its positive wire form). Never returns NULL. */
const char *tcpota_strerror(int err);

/* SHA-256 digest length: image ids are the SHA-256 of the whole image. */
#define TCPOTA_ID_LEN 32

/* NOR flash sector: resume points are always a multiple of this. */
#define TCPOTA_SECTOR_SIZE 4096u

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_H */
