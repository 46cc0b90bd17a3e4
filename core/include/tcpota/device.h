/*
 * device.h - the device side of tcpota v1, sans I/O.
 *
 * One struct tcpota_dev lives as long as the device runs; it spans many
 * connections. For each connection the caller calls tcpota_dev_connect()
 * (which queues HELLO with the durable resume point, so the server can
 * stream from there at once), feeds every received byte to
 * tcpota_dev_input(), sends what tcpota_dev_output() exposes, and calls
 * tcpota_dev_tick() with the time so the session can send keepalives and
 * notice a silent server. Storage is reached only through struct
 * tcpota_port (port.h).
 *
 * Durability: every ack_interval bytes the session saves a resume record
 * (image id, size, offset rounded down to a sector) with kv_set and sends
 * ACK for that offset; when a connection ends (tcpota_dev_disconnect) or
 * the device stops (tcpota_dev_keep) it saves its last whole sector too. A
 * device whose connection was cut goes on from that sector: less than one
 * sector is fetched again. One that lost power goes on from the last
 * record: at most ack_interval + one sector.
 *
 * At boot, before any session, the application calls tcpota_dev_boot()
 * with the outcome of its health check; it confirms or rejects a pending
 * image and keeps a report that the next HELLO carries to the server.
 *
 * Memory: sizeof(struct tcpota_dev) plus the caller's rx buffer (largest
 * DATA payload + 8, at least 520 bytes; 4104 is a good size) and tx buffer
 * (at least TCPOTA_DEV_TX_MIN bytes).
 */
#ifndef TCPOTA_DEVICE_H
#define TCPOTA_DEVICE_H

#include "codec.h"
#include "manifest.h"
#include "port.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest frame a device sends: a HELLO with every field at its
 * longest (4 fixed bytes; DEVICE_ID, MODEL, VERSION, RUNNING_ID, RESUME,
 * MAX_PAYLOAD and REPORT, each behind a 3-byte TLV head): 269 bytes. The
 * smallest tx buffer a session takes holds it. */
#define TCPOTA_DEV_HELLO_MAX                                                              \
    (TCPOTA_FRAME_OVERHEAD + 4u + 7u * 3u + TCPOTA_MAX_STR + 2u * TCPOTA_MAX_NAME +      \
     TCPOTA_ID_LEN + (TCPOTA_ID_LEN + 8u) + 2u + (TCPOTA_ID_LEN + 2u))
#define TCPOTA_DEV_TX_MIN TCPOTA_DEV_HELLO_MAX
#define TCPOTA_DEV_ACK_DEFAULT 16384u
/* A connection without progress ends after this many receive timeouts
 * (tcpota_dev_config.timeout_ms): 2 min by default. */
#define TCPOTA_DEV_STALL_TIMES 4u

/* NVS keys the session owns (<= 15 chars). */
#define TCPOTA_KEY_RESUME "tcpota.resume"
#define TCPOTA_KEY_LAST "tcpota.last"
#define TCPOTA_KEY_REPORT "tcpota.report"
/* The anti-rollback floor. Its record (version byte 1, u32 counter, CRC32C:
 * 9 bytes) is frozen: a record this build cannot read counts as absent, a
 * floor of 0, so a later build that wrote it in another form would hand the
 * floor back to older firmware booted after it. Extend other records, never
 * this one. */
#define TCPOTA_KEY_COUNTER "tcpota.counter"
#define TCPOTA_KEY_BAD "tcpota.bad" /* failed-image memory: id + reason */

/* Why an image is remembered as bad (TCPOTA_KEY_BAD). The device declines
 * an offer of that image, before writing a byte, until another image is
 * installed and confirmed: a server that offers it again cannot make the
 * device erase and rewrite its flash for nothing. One image is remembered
 * (the last that failed). */
enum tcpota_dev_bad {
    TCPOTA_BAD_NONE = 0,
    TCPOTA_BAD_INTEGRITY = 1,   /* the slot read back did not hash to the id:
                                   declined from the second time on (the first
                                   may be bytes altered on the way) */
    TCPOTA_BAD_REFUSED = 2,     /* the port refused it: at ota_end, or at set_boot
                                   (ESP-IDF: below the eFuse anti-rollback) */
    TCPOTA_BAD_ROLLED_BACK = 3, /* it failed the health check: rolled back */
    TCPOTA_BAD_BOOT_FAILED = 4, /* the bootloader fell back from it: declined
                                   from the second time on (the first may be a
                                   power cut before the health check) */
};

/* The MESSAGE of a DECLINE because the device runs the offered image (its
 * id, or its version), reason TCPOTA_ERR_REFUSED, starts with this: a
 * server tells that decline (a success for a rollout) from the others of
 * that reason (a known-bad image from a device of an older core, which
 * declined those with REFUSED too; an offer that contradicts its signed
 * manifest). */
#define TCPOTA_DECLINE_RUNNING "already run"
#define TCPOTA_DECLINE_RUNNING_IT TCPOTA_DECLINE_RUNNING "ning it"
#define TCPOTA_DECLINE_RUNNING_VERSION TCPOTA_DECLINE_RUNNING "s this version"

/* Room for tcpota_dev_bad_text(), NUL included. */
#define TCPOTA_DEV_BAD_TEXT_MAX 96u

struct tcpota_dev_config {
    const struct tcpota_port *port;
    const char *device_id; /* printable, 1..64 chars */
    const char *model;     /* 1..32 */
    const char *version;   /* running version, 1..32 */
    const uint8_t *running_id; /* SHA-256 of the running image, or NULL */
    uint8_t *rx_buf;
    size_t rx_cap;
    uint8_t *tx_buf;
    size_t tx_cap;
    uint32_t ack_interval;  /* multiple of 4096; 0: TCPOTA_DEV_ACK_DEFAULT */
    uint32_t keepalive_ms;  /* PING after this much send silence; 0: 10000 */
    /* Give up after this much receive silence; 0: 30000. And after
     * TCPOTA_DEV_STALL_TIMES times it without progress (an offer taken, or
     * image bytes written) though bytes keep coming: a server that answers
     * with PINGs, stale DATA or a frame a byte at a time would otherwise
     * hold the device for ever (a hostile trial). */
    uint32_t timeout_ms;
    /* Signed images: with n_trusted_keys > 0 every offer must carry a
     * manifest signed by one of these keys (port->ed25519_verify needed),
     * for this model, with a security counter not below the device's. */
    const uint8_t (*trusted_keys)[TCPOTA_PUBKEY_LEN];
    size_t n_trusted_keys;
    /* Device authentication: the secret shared with the server
     * (TCPOTA_SECRET_MIN..TCPOTA_SECRET_MAX
     * bytes, port->hmac_sha256 needed), or NULL. Never sent. */
    const uint8_t *secret;
    size_t secret_len;
};

enum tcpota_dev_state {
    TCPOTA_DEV_IDLE = 0,    /* not connected */
    TCPOTA_DEV_HELLO_SENT,  /* waiting for WELCOME and OFFER/NO_UPDATE */
    TCPOTA_DEV_RECEIVING,   /* accepted an offer, writing DATA */
    TCPOTA_DEV_UP_TO_DATE,  /* server has nothing newer: done */
    TCPOTA_DEV_UPDATED,     /* image verified and set to boot: reboot now */
    TCPOTA_DEV_DECLINED,    /* offer refused (reason in last_error) */
};

enum tcpota_dev_event_type {
    TCPOTA_DEV_EV_NONE = 0,
    TCPOTA_DEV_EV_WELCOME,
    TCPOTA_DEV_EV_ACCEPTED, /* offer taken; `offset` = first byte expected */
    TCPOTA_DEV_EV_PROGRESS, /* `offset` bytes of `size` are in the slot */
    TCPOTA_DEV_EV_CHECKPOINT, /* resume point saved at `offset` */
    TCPOTA_DEV_EV_UPDATED,  /* whole image verified, boot slot switched */
    TCPOTA_DEV_EV_UP_TO_DATE, /* `retry_after_s` = the server's RETRY_AFTER (0: none) */
    TCPOTA_DEV_EV_DECLINED, /* `error` = reason; with NOSPC, `size` = the offer's */
};

struct tcpota_dev_event {
    enum tcpota_dev_event_type type;
    uint32_t offset, size;
    int error;
    /* TCPOTA_DEV_EV_UP_TO_DATE: when to ask again, in seconds, as the
     * server's NO_UPDATE said (RETRY_AFTER, docs/protocol.md); 0: it did
     * not say. The device's runner honours it (tcpota_runner.h). */
    uint32_t retry_after_s;
    /* TCPOTA_DEV_EV_UP_TO_DATE: why the server has no update (enum
     * tcpota_why, codec.h; tcpota_why_str() names it); 0: it did not say. */
    uint16_t why;
};

/* A durable resume point: image id, its size, the offset to go on from. */
struct tcpota_dev_resume {
    uint8_t valid;
    uint8_t id[TCPOTA_ID_LEN];
    uint32_t size, offset;
};

/* Reads a resume record as the session keeps it under TCPOTA_KEY_RESUME:
 * the len bytes at rec (what kv_get returned). The session reads its own
 * record this way; a tool that shows where a device's download resumes
 * (tcpota device status) calls it on the raw value instead of knowing the
 * format. Fills *out (valid = 1) and returns 0 for an intact record that a
 * slot of slot_size bytes can resume from (offset on a sector boundary,
 * offset <= size <= slot_size). Returns TCPOTA_ERR_NOENT with *out zeroed
 * for a torn, foreign or implausible record, which the session discards
 * as if absent, and TCPOTA_ERR_INVAL when out is NULL. */
int tcpota_dev_resume_parse(const uint8_t *rec, size_t len, uint32_t slot_size,
                            struct tcpota_dev_resume *out);

/* 1 when r (parsed as above) is a resume point of the image that runs,
 * running_id (NULL: none known, as for an empty factory slot), else 0: a
 * record a cut left between set_boot and its erasure. A session erases it
 * when it starts (tcpota_dev_init) and would not resume from it; a tool
 * that shows a device's resume point shows none. */
int tcpota_dev_resume_stale(const struct tcpota_dev_resume *r, const uint8_t *running_id);

struct tcpota_dev {
    struct tcpota_dev_config cfg;
    struct tcpota_decoder dec;
    enum tcpota_dev_state state;
    size_t tx_head, tx_len;
    struct tcpota_dev_resume resume; /* durable resume point (mirror of NVS) */
    uint8_t image[TCPOTA_ID_LEN];    /* image being received */
    uint8_t version[33];             /* its version, NUL-terminated */
    uint32_t size, pos, ckpt;        /* image size, next byte, last saved point */
    uint8_t report_id[TCPOTA_ID_LEN];
    uint16_t report_result; /* 0: no report pending */
    uint8_t report_sent;
    uint8_t tx_urgent;      /* the pending output holds a frame other than ACK */
    uint32_t now, last_rx, last_tx, ping_token;
    uint32_t last_progress; /* the offer taken, or the last image bytes written */
    uint32_t stale_frames; /* DATA frames skipped: not at the expected offset */
    uint32_t security_counter; /* lowest counter accepted (NVS) */
    uint32_t image_counter;    /* counter of the image being received */
    uint8_t challenged;        /* a CHALLENGE was answered on this connection (reset by
                                * tcpota_dev_connect; the runner reads it: a device with a
                                * secret served without one warns, tcpota_runner.h) */
    uint8_t welcomed;          /* WELCOME arrived on this connection */
    uint8_t server_error;      /* last_error is the server's ERROR, not this side's */
    uint8_t auth_announced;    /* ... and announced TCPOTA_F_AUTH */
    uint8_t bound;             /* binding holds this connection's TLS binding */
    uint8_t binding[TCPOTA_TLS_BINDING_LEN];
    int last_error;        /* why the last connection or offer ended */
    uint32_t error_retry_after_s; /* RETRY_AFTER of the server's ERROR on this connection (0: none) */
    char reason[TCPOTA_MAX_MESSAGE + 1]; /* the same in words (tcpota_dev_reason) */
    /* enum tcpota_dev_bad: on this connection the image failed for this
     * reason and is now remembered as bad, or (state DECLINED) its offer
     * was declined as known bad; bad_id is that image. 0: neither. */
    uint8_t bad_reason;
    uint8_t bad_id[TCPOTA_ID_LEN];
};

/* Sets up a device: checks the config and loads the resume record and any
 * pending report through the port. A corrupt record is discarded (the
 * image is then fetched from the start). Returns 0, TCPOTA_ERR_INVAL for a
 * bad config, or a port error. */
int tcpota_dev_init(struct tcpota_dev *d, const struct tcpota_dev_config *cfg);

/* Boot-time decision, to call once after reset and before connecting.
 * With a pending image: healthy != 0 confirms it (mark_valid) and keeps a
 * CONFIRMED report; healthy == 0 keeps a ROLLED_BACK report and calls
 * mark_invalid (which reboots on a real device; a host port returns 0 and
 * its caller reboots). After the bootloader fell back (rolled_back), keeps
 * a BOOT_FAILED report. On a port without a pending state
 * (tcpota_boot_state.running_known), the last image set to boot that now
 * runs is confirmed as a healthy pending one, whatever healthy says, and
 * nothing is marked. A confirmed signed image raises the device's
 * security counter to the image's (anti-rollback). A rolled-back or
 * failed image is remembered as bad (TCPOTA_KEY_BAD); confirming an image
 * forgets it. Returns 0, 1 when the
 * caller must reboot now, or a port error. */
int tcpota_dev_boot(const struct tcpota_port *port, int healthy);

/* Reads the failed-image memory: when offers of an image are declined,
 * copies its id to id (may be NULL) and returns the enum tcpota_dev_bad
 * reason; returns 0 when none is (no record, a torn one, or a first boot
 * or integrity failure), or a port error. */
int tcpota_dev_bad_image(const struct tcpota_port *port, uint8_t id[TCPOTA_ID_LEN]);

/* Writes the sentence a DECLINE of a known-bad image carries, e.g. "image
 * 1a2b3c4d failed its integrity check before; waiting for another image"
 * (the id shortened to its first 4 bytes in hex; reason an enum
 * tcpota_dev_bad), NUL-terminated, into out. Returns its length. */
int tcpota_dev_bad_text(const uint8_t id[TCPOTA_ID_LEN], int reason,
                        char out[TCPOTA_DEV_BAD_TEXT_MAX]);

/* A new connection is up at time `now_ms`: resets the decoder and queues
 * HELLO. Returns 0 or TCPOTA_ERR_NOSPC. */
int tcpota_dev_connect(struct tcpota_dev *d, uint32_t now_ms);

/* Binds the device's answer to a CHALLENGE to the TLS session of the
 * current connection (docs/protocol.md, "Device authentication"):
 * binding is the TCPOTA_TLS_BINDING_LEN bytes the TLS exporter gives for
 * label TCPOTA_TLS_BINDING_LABEL, no context (codec.h), or NULL for a plain
 * TCP connection. Call it after the TLS handshake, before the first
 * tcpota_dev_input() of the connection (before or after
 * tcpota_dev_connect()). The bytes are copied; tcpota_dev_disconnect()
 * forgets them, so every TLS connection must set its own. Returns 0. */
int tcpota_dev_set_binding(struct tcpota_dev *d, const uint8_t *binding);

/* Keeps what the transfer wrote so far: when the last whole sector
 * (TCPOTA_SECTOR_SIZE) of image bytes written lies past the last resume
 * point saved, saves it as the resume point (TCPOTA_KEY_RESUME) and queues
 * its ACK, as a checkpoint does, whatever the ack interval. For a device
 * that ends a transfer on purpose (a stop): call it, send the output, then
 * close, and the server records the stop where the device's record is.
 * Returns 1 when a point was saved, 0 when there was nothing to save (not
 * receiving, or no new whole sector), or the storage's error (the point
 * before stands). */
int tcpota_dev_keep(struct tcpota_dev *d);

/* The connection ended (closed, timed out, failed). Data already written
 * stays: as tcpota_dev_keep() (its ACK dropped with the rest of the
 * output), the next connection resumes from the last whole sector
 * written, not only from the last checkpoint. A power cut keeps the last
 * checkpoint only. Forgets the TLS binding (tcpota_dev_set_binding). */
void tcpota_dev_disconnect(struct tcpota_dev *d);

/* Consumes up to `len` bytes, at most one frame, and fills *ev. Returns the
 * count consumed (call again with the rest) or a negative error after which
 * the connection must be closed once the output (which may hold an ERROR
 * frame) is flushed: TCPOTA_ERR_CRC etc. for bad frames, TCPOTA_ERR_PROTO /
 * _STATE for protocol violations, the server's code for an ERROR frame, a
 * port error, or TCPOTA_ERR_INTEGRITY when the image read back does not
 * hash to the offered id (the partial image is then dropped and the image
 * remembered as bad: bad_reason says so). */
int tcpota_dev_input(struct tcpota_dev *d, const uint8_t *in, size_t len,
                     struct tcpota_dev_event *ev);

/* Points *out at pending bytes to send and returns their count. */
size_t tcpota_dev_output(const struct tcpota_dev *d, const uint8_t **out);

/* Nonzero when the pending output holds a frame other than ACK. The server
 * does not wait for ACKs (it streams on; they tell it of progress), so a
 * caller may hold them back while more input is at hand and send several
 * together (ports/common/tcpota_client.h); any other frame (HELLO, ACCEPT,
 * AUTH, PING, PONG, COMPLETE, DECLINE, ERROR) should leave at once. */
int tcpota_dev_output_urgent(const struct tcpota_dev *d);

/* Marks n pending bytes as sent at time now (for keepalive). */
void tcpota_dev_output_done(struct tcpota_dev *d, size_t n);

/* Advances the clock: queues a PING after keepalive_ms of send silence.
 * Returns 0, or TCPOTA_ERR_TIMEDOUT after timeout_ms without a received
 * byte, or TCPOTA_DEV_STALL_TIMES times that without progress (close and
 * reconnect; tcpota_dev_stalled() tells them apart; tcpota_dev_next_tick
 * does not count the second: the next keepalive tick finds it). now_ms
 * may wrap. */
int tcpota_dev_tick(struct tcpota_dev *d, uint32_t now_ms);

/* 1 when the last TCPOTA_ERR_TIMEDOUT of tcpota_dev_tick() was for
 * progress missing (bytes came), 0 for receive silence. */
int tcpota_dev_stalled(const struct tcpota_dev *d);

/* Why the last connection or offer ended, in words naming the cause
 * (e.g. "offer version 9.9.9 differs from the signed manifest's 2.0.0"):
 * the MESSAGE of the DECLINE or ERROR this side sent, or of the ERROR the
 * server sent. "" when there is none; valid until the next call into d.
 * last_error holds the code. */
const char *tcpota_dev_reason(const struct tcpota_dev *d);

/* The image the session receives (or last received) and where it would
 * resume, for logs, progress bars, statistics and a runner's decisions, so
 * callers need not read the session's fields. */
struct tcpota_dev_transfer {
    enum tcpota_dev_state state;
    const uint8_t *image_id; /* TCPOTA_ID_LEN bytes; all zero before an offer */
    const char *version;     /* the offer's version; "" before an offer */
    uint32_t size;           /* image size; 0 before an offer */
    uint32_t pos;            /* next image byte to be written */
    uint32_t stale_frames;   /* DATA frames skipped: not at the write position */
    int last_error;          /* why the last connection or offer ended (0: it did not) */
    uint32_t retry_after_s;  /* RETRY_AFTER of the server's ERROR on this connection (0: none) */
    uint8_t report_pending;  /* the next HELLO carries a report of the last update */
    uint8_t server_error;    /* last_error came in the server's ERROR (its words in
                              * tcpota_dev_reason), not from this side's checks */
    struct tcpota_dev_resume resume; /* the durable resume point (valid 0: none) */
};

/* Fills *t; the pointers stay valid while d lives and until its next input. */
void tcpota_dev_get_transfer(const struct tcpota_dev *d, struct tcpota_dev_transfer *t);

/* Milliseconds until tcpota_dev_tick() has something to do. */
uint32_t tcpota_dev_next_tick(const struct tcpota_dev *d);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_DEVICE_H */
