/*
 * codec.h - tcpota protocol v1 frames and messages (docs/protocol.md).
 *
 * A frame is: type u8, flags u8 (0 in v1), payload length u16 LE, payload,
 * CRC32C u32 LE over everything before it. The decoder takes input split
 * at any byte and hands out one whole, CRC-checked frame at a time from a
 * buffer the caller owns; an oversized length is refused as soon as the
 * four header bytes are in, before any payload is buffered.
 *
 * A payload is a fixed part followed by TLV fields (tag u8, length u16 LE,
 * value). Tags with bit 0x80 set are critical: a reader that does not know
 * one must refuse the message; other unknown tags are skipped, so later
 * versions can add fields without breaking this one. A tag appears at most
 * once, its critical twin included (tcpota_tlv_next() holds these rules). DATA is the exception:
 * after its fixed offset come the image bytes.
 *
 * struct tcpota_msg is the decoded form of every message. Decoding never
 * copies: byte strings point into the frame (the decoder's buffer, or the
 * input for a DATA frame that arrived whole) and stay valid until the
 * decoder is fed again, and as long as that input.
 */
#ifndef TCPOTA_CODEC_H
#define TCPOTA_CODEC_H

#include "tcpota.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_FRAME_HEAD 4u     /* type, flags, length */
#define TCPOTA_FRAME_TAIL 4u     /* CRC32C */
#define TCPOTA_FRAME_OVERHEAD 8u /* head + tail */
#define TCPOTA_DATA_FIXED 4u     /* DATA: offset before the bytes */
#define TCPOTA_ACK_FIXED 4u      /* ACK: its offset, before any TLV */
/* A DATA frame around its image bytes: the head tcpota_data_head() writes
 * (frame head + offset) before them, and in all (with the CRC after). */
#define TCPOTA_DATA_HEAD_LEN (TCPOTA_FRAME_HEAD + TCPOTA_DATA_FIXED)
#define TCPOTA_DATA_OVERHEAD (TCPOTA_FRAME_OVERHEAD + TCPOTA_DATA_FIXED)
#define TCPOTA_MAX_PAYLOAD 16384u /* no frame payload is ever larger */
#define TCPOTA_MIN_PAYLOAD 512u   /* every peer accepts at least this */
#define TCPOTA_MAX_STR 64u        /* device id */
#define TCPOTA_MAX_NAME 32u       /* model and version strings */
#define TCPOTA_MAX_MANIFEST 1024u
#define TCPOTA_MAX_MESSAGE 200u  /* MESSAGE: a human-readable reason */

enum tcpota_type {
    TCPOTA_T_HELLO = 0x01,     /* device -> server, first frame */
    TCPOTA_T_WELCOME = 0x02,   /* server -> device, answer to HELLO */
    TCPOTA_T_OFFER = 0x03,     /* server -> device: an image to take */
    TCPOTA_T_NO_UPDATE = 0x04, /* server -> device: nothing to take */
    TCPOTA_T_ACCEPT = 0x05,    /* device -> server: send from offset */
    TCPOTA_T_DECLINE = 0x06,   /* device -> server: will not take it */
    TCPOTA_T_DATA = 0x07,      /* server -> device: image bytes */
    TCPOTA_T_ACK = 0x08,       /* device -> server: bytes durable */
    TCPOTA_T_COMPLETE = 0x09,  /* device -> server: image verified or not */
    TCPOTA_T_ERROR = 0x0a,     /* either way: fatal error, then close */
    TCPOTA_T_PING = 0x0b,      /* either way: keepalive */
    TCPOTA_T_PONG = 0x0c,      /* answer to PING */
    TCPOTA_T_CHALLENGE = 0x0d, /* server -> device: nonce to authenticate with */
    TCPOTA_T_AUTH = 0x0e,      /* device -> server: HMAC over the nonce */
};

/* Feature bits of HELLO and WELCOME. */
enum tcpota_feature {
    TCPOTA_F_AUTH = 0x0001, /* HELLO: can answer a CHALLENGE; WELCOME: will send one */
};

#define TCPOTA_NONCE_LEN 32u
#define TCPOTA_MAC_LEN 32u
/* Device secrets: at least this many bytes (a shorter one is guessable), at
 * most TCPOTA_SECRET_MAX. Device and server refuse others. */
#define TCPOTA_SECRET_MIN 16u
#define TCPOTA_SECRET_MAX 64u

/* TLV tags. One namespace for all messages. */
enum tcpota_tag {
    TCPOTA_TAG_DEVICE_ID = 0x01,    /* str 1..64, printable ASCII */
    TCPOTA_TAG_MODEL = 0x02,        /* str 1..32 */
    TCPOTA_TAG_VERSION = 0x03,      /* str 1..32 */
    TCPOTA_TAG_RUNNING_ID = 0x04,   /* 32: SHA-256 of the running image */
    TCPOTA_TAG_RESUME = 0x05,       /* id 32, size u32, offset u32 */
    TCPOTA_TAG_MAX_PAYLOAD = 0x06,  /* u16: largest payload the sender takes */
    TCPOTA_TAG_REPORT = 0x07,       /* id 32, result u16: last update's fate */
    TCPOTA_TAG_MESSAGE = 0x08,      /* str 0..200: human-readable reason */
    TCPOTA_TAG_IDLE_TIMEOUT = 0x09, /* u16 seconds */
    TCPOTA_TAG_RETRY_AFTER = 0x0a,  /* u32 seconds */
    TCPOTA_TAG_CHUNK = 0x0b,        /* u16: DATA payload bytes the server uses */
    TCPOTA_TAG_MANIFEST = 0x0c,     /* opaque 1..1024: signed manifest */
    TCPOTA_TAG_WHY = 0x0d,          /* u16: why NO_UPDATE (enum tcpota_why) */
    TCPOTA_TAG_CRITICAL = 0x80,     /* bit: reader must understand the tag */
};

/* Results a device reports about its last update (TCPOTA_TAG_REPORT). */
enum tcpota_result {
    TCPOTA_RESULT_CONFIRMED = 1,   /* new image booted and passed health check */
    TCPOTA_RESULT_ROLLED_BACK = 2, /* health check failed: old image again */
    TCPOTA_RESULT_BOOT_FAILED = 3, /* bootloader rejected it: old image again */
};

/* Why a server answers NO_UPDATE (TCPOTA_TAG_WHY): a device tells "up to
 * date" from "held back" (docs/protocol.md). A value a device does not
 * know is still a NO_UPDATE. */
enum tcpota_why {
    TCPOTA_WHY_RUNS = 1,        /* it runs the image the server would offer */
    TCPOTA_WHY_NOT_NEWER = 2,   /* the server's image is not newer than what it runs */
    TCPOTA_WHY_HELD = 3,        /* it reported that image as failed, or declined it */
    TCPOTA_WHY_OTHER_MODEL = 4, /* the server's image is for another hardware model */
    TCPOTA_WHY_NONE = 5,        /* nothing for its model (no image, or in a fleet no rollout) */
    TCPOTA_WHY_LATER = 6,       /* an update applies, but not yet (wave not open, paused, halted) */
    TCPOTA_WHY_UNKNOWN_NOW = 7, /* the server cannot tell now (its database does not answer) */
    TCPOTA_WHY_UNSERVABLE = 8,  /* one applies, but the server cannot load its image now */
    TCPOTA_WHY_UNORDERED = 9,   /* its version and the device's have no order (not semantic) */
};

/* A short static English phrase for a NO_UPDATE's why ("it runs the
 * server's image"; for 0 or a value not listed: "the server gave no
 * reason"). Never returns NULL. */
const char *tcpota_why_str(unsigned why);

/* One decoded frame; payload points into the decoder's buffer, or, for a
 * DATA frame that arrived whole in one input, into that input. */
struct tcpota_frame {
    uint8_t type; /* 0 while no frame is complete */
    uint16_t len;
    const uint8_t *payload;
};

/* Incremental frame decoder over a caller-owned buffer. */
struct tcpota_decoder {
    uint8_t *buf;
    size_t cap;    /* payload limit is cap - TCPOTA_FRAME_OVERHEAD */
    size_t have;   /* bytes of the current frame in buf */
    size_t need;   /* bytes the current frame has in all (0: header pending) */
    uint8_t ready; /* a frame was handed out; reset on next feed */
};

/* A byte string inside a frame; ptr NULL means absent. */
struct tcpota_bytes {
    const uint8_t *ptr;
    uint16_t len;
};

/* Walks the TLVs of a message or manifest body and holds the rules every
 * TLV list of the protocol shares, so they live in one place: a tag appears
 * at most once, compared with the critical bit masked (0x0c and 0x8c are
 * the same field); a tag the reader does not know is skipped, unless its
 * critical bit is set (TCPOTA_ERR_NOTSUP); a field never runs past the end.
 * The fields are private to codec.c. */
struct tcpota_tlv_iter {
    const uint8_t *p;
    size_t left;
    const uint8_t *known; /* tags the reader understands, critical bit clear */
    size_t n_known;
    uint32_t seen[4]; /* one bit per tag, critical bit masked: 128 tags */
};

/* Starts a walk over buf[0..len). `known` lists the n_known tags (critical
 * bit clear) the caller understands; it must outlive the walk. */
void tcpota_tlv_iter_init(struct tcpota_tlv_iter *it, const uint8_t *buf, size_t len,
                          const uint8_t *known, size_t n_known);

/* Moves to the next TLV with a known tag: returns 1 and sets *tag (critical
 * bit cleared), *val (points into the buffer) and *len; returns 0 at the
 * end; TCPOTA_ERR_PROTO for a truncated field or a repeated tag (either
 * spelling), TCPOTA_ERR_NOTSUP for an unknown critical tag. Unknown
 * optional tags are skipped, though a repeat of one is still refused. */
int tcpota_tlv_next(struct tcpota_tlv_iter *it, uint8_t *tag, const uint8_t **val,
                    uint16_t *len);

struct tcpota_msg {
    uint8_t type;    /* enum tcpota_type */
    uint8_t bad_tag; /* tcpota_msg_decode() failed on this field's value (0: elsewhere) */
    union {
        struct {
            uint8_t proto_min, proto_max;
            uint16_t features;
            struct tcpota_bytes device_id, model, version;
            const uint8_t *running_id; /* NULL: not sent */
            const uint8_t *resume_id;  /* NULL: no resume point */
            uint32_t resume_size, resume_offset;
            uint16_t max_payload;     /* 0: not sent (means the minimum) */
            const uint8_t *report_id; /* NULL: nothing to report */
            uint16_t report_result;   /* enum tcpota_result */
        } hello;
        struct {
            uint8_t proto;
            uint16_t features;
            uint16_t idle_timeout_s; /* 0: not sent */
        } welcome;
        struct {
            const uint8_t *image_id;
            uint32_t size, start; /* DATA follows from `start` */
            uint16_t chunk;       /* 0: not sent */
            struct tcpota_bytes version, manifest;
        } offer;
        struct {
            uint32_t retry_after_s; /* 0: not sent */
            uint16_t why;           /* enum tcpota_why; 0: not sent */
        } no_update;
        struct {
            const uint8_t *image_id;
            uint32_t offset;
        } accept;
        struct {
            const uint8_t *image_id;
            uint16_t reason; /* positive tcpota_err */
            struct tcpota_bytes message;
        } decline;
        struct {
            uint32_t offset;
            struct tcpota_bytes bytes;
        } data;
        struct {
            uint32_t offset;
        } ack;
        struct {
            const uint8_t *image_id;
            uint16_t status; /* 0: verified and set to boot; else positive tcpota_err */
        } complete;
        struct {
            uint16_t code; /* positive tcpota_err */
            uint32_t retry_after_s;
            struct tcpota_bytes message;
        } error;
        struct {
            uint32_t token;
        } ping; /* PING and PONG */
        struct {
            const uint8_t *nonce; /* TCPOTA_NONCE_LEN bytes */
        } challenge;
        struct {
            const uint8_t *mac; /* TCPOTA_MAC_LEN bytes */
        } auth;
    } u;
};

/* Prepares `d` to decode frames into `buf` (cap bytes, at least
 * TCPOTA_MIN_PAYLOAD + TCPOTA_FRAME_OVERHEAD). Returns 0 or
 * TCPOTA_ERR_INVAL. */
int tcpota_decoder_init(struct tcpota_decoder *d, uint8_t *buf, size_t cap);

/* Forgets any partial frame (a new connection starts). */
void tcpota_decoder_reset(struct tcpota_decoder *d);

/* Feeds up to `len` bytes. Returns the number of bytes consumed (0..len).
 * When a whole frame has arrived it stops right after it and fills *f
 * (f->type != 0); f stays valid until the next call, and as long as `in`
 * does: a DATA frame found whole at the start of `in` is not copied, its
 * payload points into `in`. Otherwise f->type is
 * 0 and all input was consumed. Errors: TCPOTA_ERR_TOOBIG (length above
 * the buffer), TCPOTA_ERR_CRC, TCPOTA_ERR_PROTO (flags not 0, type 0); after
 * an error the stream is unusable until tcpota_decoder_reset(). */
int tcpota_decoder_feed(struct tcpota_decoder *d, const uint8_t *in, size_t len,
                        struct tcpota_frame *f);

/* 1 when `d` holds no part of a frame: the next input starts a frame (a
 * frame handed out is done with), else 0. */
int tcpota_decoder_idle(const struct tcpota_decoder *d);

/* 1 when `in` (len bytes) starts with a whole frame of `type` whose payload
 * is exactly `payload_len` bytes, its flags 0 and its CRC right: what the
 * decoder would hand out for those bytes. Else 0 (another frame, a partial
 * one, or a bad one: the decoder names what is wrong). For a reader that
 * takes a run of one small frame quickly without buffering it. */
int tcpota_frame_whole(const uint8_t *in, size_t len, uint8_t type, uint16_t payload_len);

/* Parses frame `f` into *m (pointers into the frame). Returns 0, or
 * TCPOTA_ERR_PROTO for a malformed or incomplete message (m->type set, and
 * m->bad_tag when a field's value was out of its rules), or
 * TCPOTA_ERR_NOTSUP for an unknown critical TLV or an unknown type. */
int tcpota_msg_decode(const struct tcpota_frame *f, struct tcpota_msg *m);

/* Encodes message *m as one whole frame into out[0..cap). Returns the
 * frame length, TCPOTA_ERR_NOSPC if cap is too small, or TCPOTA_ERR_INVAL
 * if *m breaks a size rule (string too long, missing required field). */
int tcpota_msg_encode(const struct tcpota_msg *m, uint8_t *out, size_t cap);

/* Writes the 8 bytes that precede the image bytes of a DATA frame that
 * carries `len` bytes from `offset` (frame head + offset). The CRC trailer
 * is tcpota_crc32c over these 8 bytes and the image bytes, LE. Lets a
 * server send image bytes straight from a file. Returns 8 or
 * TCPOTA_ERR_INVAL if len exceeds TCPOTA_MAX_PAYLOAD - 4. */
int tcpota_data_head(uint8_t out[8], uint32_t offset, uint16_t len);

/* Channel binding of an authentication inside TLS: the TLS exporter
 * (RFC 5705 / RFC 8446 section 7.5) with this label, no context, this many
 * bytes. Both ends derive it from their own TLS session, so an answer to a
 * CHALLENGE relayed from another TLS connection does not verify. */
#define TCPOTA_TLS_BINDING_LABEL "EXPORTER-tcpota-auth-v1"
#define TCPOTA_TLS_BINDING_LEN 32u
/* Longest authentication message: label, nonce, binding, device id. */
#define TCPOTA_AUTH_MSG_MAX (20u + TCPOTA_NONCE_LEN + TCPOTA_TLS_BINDING_LEN + TCPOTA_MAX_STR)

/* The bytes a device authenticates with. Over plain TCP (binding NULL):
 * "tcpota-auth-v1", the server's nonce, the device id. Inside TLS
 * (binding = TCPOTA_TLS_BINDING_LEN bytes of the exporter above):
 * "tcpota-auth-v1-tls", the nonce, the binding, the device id. Both sides
 * build them here, so the rule lives in one place. Returns the length
 * written (at most TCPOTA_AUTH_MSG_MAX), or TCPOTA_ERR_NOSPC / _INVAL. */
int tcpota_auth_message(const uint8_t nonce[TCPOTA_NONCE_LEN], const uint8_t *binding,
                        const uint8_t *device_id, size_t id_len, uint8_t *out, size_t cap);

/* 1 when p[0..len) is min..max bytes of printable ASCII (0x20..0x7e), else
 * 0: the rule of every string the protocol and the manifest carry (device
 * ids, models, versions, messages), and of the device's own config. */
int tcpota_printable(const void *p, size_t len, size_t min, size_t max);

/* Writes the n bytes at p as 2n lowercase hex digits to out (no NUL): how
 * the device's reasons show the first bytes of an image id. */
void tcpota_hex(char *out, const uint8_t *p, size_t n);

/* Little-endian helpers shared by the codec and the ports. */
static inline void tcpota_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void tcpota_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint16_t tcpota_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t tcpota_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_CODEC_H */
