/*
 * server.h - the server side of one tcpota v1 connection, sans I/O.
 *
 * The caller (the libevent server, a test, a fuzzer) owns the socket. It
 * feeds received bytes to tcpota_srv_input(), which handles at most one
 * frame per call and reports what happened as an event; it sends the
 * control frames that tcpota_srv_output() exposes; and, while its socket
 * can take more, it asks tcpota_srv_data_next() which image range to send
 * as the next DATA frame. The session never touches image bytes, so the
 * caller can send them straight from a file (tcpota_data_head() builds the
 * frame head; the CRC of aligned chunks can be computed once per image).
 *
 * Memory: sizeof(struct tcpota_srv) plus the two caller buffers: rx of at
 * least TCPOTA_MIN_PAYLOAD + TCPOTA_FRAME_OVERHEAD bytes (device frames are
 * small), tx of at least TCPOTA_SRV_TX_MIN bytes.
 */
#ifndef TCPOTA_SERVER_H
#define TCPOTA_SERVER_H

#include "codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Smallest tx buffer: WELCOME + OFFER with the largest manifest + ERROR. */
#define TCPOTA_SRV_TX_MIN 1536u
/* Default for tcpota_srv_config.prestream: stream the whole image without
 * waiting for ACCEPT. Waiting costs one round trip per connection, which on
 * a slow link is most of a small image's time; a device that declines
 * discards what is in flight, which TCP's buffers bound anyway. */
#define TCPOTA_SRV_PRESTREAM_ALL 0u

/* The image a server offers; the caller keeps it alive while sessions use it. */
struct tcpota_srv_image {
    uint8_t id[TCPOTA_ID_LEN]; /* SHA-256 of the image bytes */
    uint32_t size;
    const char *version; /* printable, 1..32 chars */
    uint16_t version_len;
    const uint8_t *manifest; /* NULL: none */
    uint16_t manifest_len;
};

/* What a device's HELLO said, as the caller's choice of an image needs it
 * (strings NUL-terminated; ids NULL when not sent). */
struct tcpota_srv_hello {
    const char *device_id, *model, *version;
    const uint8_t *running_id; /* SHA-256 of the running image */
    const uint8_t *report_id;  /* the image the last update's report is about */
    uint16_t report_result;    /* enum tcpota_result; 0: no report */
};

/* choose()'s answer "later": the caller calls tcpota_srv_offer() itself. */
#define TCPOTA_SRV_CHOOSE_LATER 1

struct tcpota_srv_config {
    /* The image offered to every device that does not run it yet, when
     * `choose` is NULL. NULL: nothing to offer. */
    const struct tcpota_srv_image *image;
    /* Chooses this device's image once HELLO (and AUTH, if required) are
     * in: sets *img to the image to offer, or to NULL to answer NO_UPDATE,
     * then with *retry_after_s (0: not sent) telling the device when to ask
     * again, and returns 0. Or returns TCPOTA_SRV_CHOOSE_LATER when the
     * answer needs a wait (a database): the session stays CHOOSING until
     * the caller calls tcpota_srv_offer(). The session still answers
     * NO_UPDATE when the device already runs the chosen image. The image
     * must stay alive while the session uses it. */
    int (*choose)(void *ctx, const struct tcpota_srv_hello *hello,
                  const struct tcpota_srv_image **img, uint32_t *retry_after_s);
    void *ctx; /* handed to choose */
    uint8_t *rx_buf;
    size_t rx_cap;
    uint8_t *tx_buf;
    size_t tx_cap;
    uint16_t chunk;          /* DATA payload bytes (<= 16380); 0: 4096 */
    uint16_t idle_timeout_s; /* announced in WELCOME; the caller enforces it */
    /* Device authentication: a fresh random nonce for this connection, or
     * NULL. With a nonce every device must answer CHALLENGE before it gets
     * an offer; the caller checks the answer (TCPOTA_SRV_EV_AUTH) and calls
     * tcpota_srv_authorize(). */
    const uint8_t *auth_nonce;
    /* With auth_nonce: whether the device that sent HELLO (by its id) must
     * authenticate (1) or is offered at once (0); it may fill auth_nonce's
     * bytes now. NULL: every device must. A device that must but does not
     * announce authentication is refused (ERROR DENIED). */
    int (*auth_for)(void *ctx, const char *device_id);
    /* Bytes streamed past the offer's start before ACCEPT arrives;
     * TCPOTA_SRV_PRESTREAM_ALL (0): no limit. */
    uint32_t prestream;
};

enum tcpota_srv_state {
    TCPOTA_SRV_HELLO_WAIT = 0, /* nothing received yet */
    TCPOTA_SRV_AUTH_WAIT,      /* CHALLENGE sent, waiting for AUTH */
    TCPOTA_SRV_AUTH_CHECK,     /* AUTH received, waiting for tcpota_srv_authorize() */
    TCPOTA_SRV_CHOOSING,       /* choose() said later: waiting for tcpota_srv_offer() */
    TCPOTA_SRV_OFFERED,        /* offer sent, streaming (up to the prestream limit) */
    TCPOTA_SRV_STREAMING,      /* accepted: streaming to the end */
    TCPOTA_SRV_SENT_ALL,       /* every byte sent, waiting for COMPLETE */
    TCPOTA_SRV_CLOSING,        /* flush output, then close */
};

enum tcpota_srv_event_type {
    TCPOTA_SRV_EV_NONE = 0,
    TCPOTA_SRV_EV_HELLO,    /* msg.u.hello; `offered` says offer or no-update */
    TCPOTA_SRV_EV_ACCEPT,   /* msg.u.accept; `resent` if it re-seeks */
    TCPOTA_SRV_EV_DECLINE,  /* msg.u.decline */
    TCPOTA_SRV_EV_ACK,      /* msg.u.ack; `duplicate` when nothing new */
    TCPOTA_SRV_EV_COMPLETE, /* msg.u.complete */
    TCPOTA_SRV_EV_PEER_ERROR, /* msg.u.error: the device gave up */
    TCPOTA_SRV_EV_PING,
    TCPOTA_SRV_EV_AUTH, /* msg.u.auth: check the MAC, then tcpota_srv_authorize() */
};

struct tcpota_srv_event {
    enum tcpota_srv_event_type type;
    struct tcpota_msg msg; /* pointers valid until the next input call */
    uint8_t offered;       /* HELLO/authorize: 1 offer sent, 0 no update */
    uint8_t auth_pending;  /* HELLO: a CHALLENGE was sent instead of an offer */
    uint8_t duplicate;     /* ACK: the offset was already acknowledged (a run's: none moved it) */
    uint32_t start;        /* HELLO/ACCEPT: where DATA (re)starts */
};

struct tcpota_srv {
    struct tcpota_srv_config cfg;
    struct tcpota_decoder dec;
    enum tcpota_srv_state state;
    size_t tx_head, tx_len; /* pending control bytes in cfg.tx_buf */
    uint16_t chunk;
    uint32_t send_pos; /* next image byte to send */
    uint32_t limit;    /* send only below this offset */
    uint32_t acked;    /* highest offset the device reported durable */
    uint32_t start;    /* where this connection's stream began */
    uint8_t got_hello;
    uint8_t challenged; /* a CHALLENGE was sent */
    uint16_t why; /* NO_UPDATE's enum tcpota_why, tcpota_srv_set_why(); 0: none */
    const char *failed; /* the last tcpota_srv_fail()'s message, or NULL */
    const struct tcpota_srv_image *img; /* the image offered, or NULL */
    /* What HELLO said, kept for the offer that may come after CHALLENGE. */
    struct {
        char device_id[TCPOTA_MAX_STR + 1];
        char model[TCPOTA_MAX_NAME + 1];
        char version[TCPOTA_MAX_NAME + 1];
        uint8_t report_id[TCPOTA_ID_LEN];
        uint16_t report_result;
        uint8_t running_id[TCPOTA_ID_LEN], resume_id[TCPOTA_ID_LEN];
        uint8_t has_running, has_resume;
        uint32_t resume_size, resume_offset;
        uint16_t max_payload;
    } hello;
};

/* Prepares a session for one new connection. Returns 0 or TCPOTA_ERR_INVAL
 * (buffer too small, chunk too large, bad image description). */
int tcpota_srv_init(struct tcpota_srv *s, const struct tcpota_srv_config *cfg);

/* Consumes up to `len` received bytes, at most one frame's worth, and fills
 * *ev (type NONE when no frame completed). A run of whole ACK frames is
 * taken in one call, as one ACK event: the run's last offset, `duplicate`
 * when none of them moved it (a device sends 64 per MiB; each is checked
 * as if taken alone, and the run stops before anything else, a bad ACK
 * included, for the next call). Returns the bytes consumed
 * (>= 0; call again with the rest), or a negative error after which the
 * connection must end: an ERROR frame explaining it is queued in the
 * output, to be flushed before closing. */
int tcpota_srv_input(struct tcpota_srv *s, const uint8_t *in, size_t len,
                     struct tcpota_srv_event *ev);

/* Points *out at pending control bytes and returns their count (0: none).
 * Send them before any DATA frame. */
size_t tcpota_srv_output(const struct tcpota_srv *s, const uint8_t **out);

/* Marks the first n pending control bytes as sent. */
void tcpota_srv_output_done(struct tcpota_srv *s, size_t n);

/* Asks for the next DATA frame. Returns 1 and sets [*offset, *offset+*len)
 * when one is due now (the session counts it as sent), or 0 when nothing is
 * due (before ACCEPT past the prestream limit, or all sent). Ranges never
 * cross a multiple of the chunk size, so aligned frames repeat exactly. */
int tcpota_srv_data_next(struct tcpota_srv *s, uint32_t *offset, uint16_t *len);

/* Asks for up to `frames` DATA frames at once: returns 1 and sets
 * [*offset, *offset+*len) to the bytes of the frames due now, which
 * tcpota_srv_data_next() would have given one by one (the session counts
 * them as sent), or 0 when nothing is due. The range's inner frame
 * boundaries are the multiples of the chunk size; it ends on one, at the
 * image's end, or at the prestream limit. For a caller that sends runs of
 * frames prebuilt per image: one call per run, not one per frame. */
int tcpota_srv_data_take(struct tcpota_srv *s, uint32_t frames, uint32_t *offset, uint32_t *len);

/* 1 when the session has handed out every byte of its image (all of it
 * streamed before ACCEPT, or SENT_ALL): what the device still sends is
 * ACKs, COMPLETE or DECLINE, or an ACCEPT elsewhere, none of which a
 * server must answer at once. 0 otherwise. */
int tcpota_srv_all_sent(const struct tcpota_srv *s);

/* After TCPOTA_SRV_EV_AUTH: ok != 0 sends the offer (or NO_UPDATE) at
 * once, *offered and *start telling which; ok == 0 sends ERROR(DENIED)
 * and closes. Returns 0, TCPOTA_ERR_STATE when no AUTH awaits a verdict,
 * or TCPOTA_ERR_DENIED after a refusal. */
int tcpota_srv_authorize(struct tcpota_srv *s, int ok, uint8_t *offered, uint32_t *start);

/* The decision choose() deferred (state TCPOTA_SRV_CHOOSING): offers img
 * (NULL: NO_UPDATE with retry_after_s, 0: none), as choose() would have.
 * *offered and *start (either may be NULL) tell which. Returns 0, or
 * TCPOTA_ERR_STATE when no decision is awaited. */
int tcpota_srv_offer(struct tcpota_srv *s, const struct tcpota_srv_image *img,
                     uint32_t retry_after_s, uint8_t *offered, uint32_t *start);

/* Why the NO_UPDATE this session may send has no image (enum tcpota_why,
 * codec.h): set by the caller that chose nothing, in choose() or before
 * tcpota_srv_offer(NULL). The session itself says TCPOTA_WHY_RUNS when
 * the device runs the chosen image, and TCPOTA_WHY_NONE when it has no
 * image and no choose(). 0 (the default) sends no reason. */
void tcpota_srv_set_why(struct tcpota_srv *s, uint16_t why);

/* What HELLO said (all strings "" and ids NULL before HELLO). */
void tcpota_srv_get_hello(const struct tcpota_srv *s, struct tcpota_srv_hello *h);

/* 1 when the device that said HELLO h runs image img already: its running
 * SHA-256 is the image id, or, when it sent none, its version string is the
 * image's. The one rule for "up to date", for the session and its caller's
 * choice alike; else 0. */
int tcpota_srv_runs(const struct tcpota_srv_hello *h, const struct tcpota_srv_image *img);

/* 1 when a server holds an image back from a device after this failure:
 * a REPORT of TCPOTA_RESULT_ROLLED_BACK (its health check failed), a
 * COMPLETE with any error but TCPOTA_ERR_INTEGRITY, negated (its storage
 * refused the image, or failed: the device holds no storage error against
 * the image, but offered it at every check-in it would rewrite its flash
 * each time). 0 for the failures the device itself takes the image once
 * more after: its bootloader fell back from it, or it failed its
 * integrity check (a power cut in its first boot, bytes altered on the
 * way are not the image's fault: tcpota_dev_bad_image); its second one
 * comes back as a DECLINE, which holds the image back. The server's side
 * of the device's rule (device.c): tests/unit/test_device.c checks that
 * the two agree. */
int tcpota_srv_report_final(uint16_t result);
int tcpota_srv_complete_final(uint16_t status);

/* The image offered on this connection, or NULL (none offered yet, or
 * NO_UPDATE). */
const struct tcpota_srv_image *tcpota_srv_offered_image(const struct tcpota_srv *s);

/* Why the session failed: the message of its ERROR frame (a protocol
 * violation's, e.g. "ACK outside the bytes sent"), "" when none was given
 * or it has not failed. For the server's log, beside tcpota_strerror(). */
const char *tcpota_srv_failure(const struct tcpota_srv *s);

/* The device id HELLO gave (NUL-terminated; "" before HELLO). */
const char *tcpota_srv_device_id(const struct tcpota_srv *s);

/* Queues an ERROR frame with `code` (a tcpota_err) and an optional message,
 * and moves to CLOSING (server shutting down, idle timeout, overload).
 * message must live as long as the session (a string literal): it is kept
 * for tcpota_srv_failure(). Returns 0 or TCPOTA_ERR_NOSPC. */
int tcpota_srv_fail(struct tcpota_srv *s, int code, const char *message,
                    uint32_t retry_after_s);

/* The session's state (enum tcpota_srv_state). */
enum tcpota_srv_state tcpota_srv_get_state(const struct tcpota_srv *s);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_SERVER_H */
