/* fuzz_decoder.c - frame decoder + message decoder + re-encoding.
 * Input byte 0 sets the piece size the stream is fed in. A decoded message
 * must re-encode to a frame that decodes to the same bytes. An OFFER's
 * manifest also goes through the device's acceptance rules (signature
 * taken as good), whose reason must be a valid DECLINE message. A second
 * decoder fed the same bytes one at a time (never a whole frame in one call)
 * must hand out the same frames and stop at the same error. */
#include <stdint.h>
#include <string.h>

#include "tcpota/codec.h"
#include "tcpota/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t out[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t rbuf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];

/* The byte-at-a-time decoder's next frame: 1 (in *rf), 0 at the end of the
 * input, or its error. */
static int ref_next(struct tcpota_decoder *r, const uint8_t *data, size_t size, size_t *roff,
                    struct tcpota_frame *rf)
{
    while (*roff < size) {
        int u = tcpota_decoder_feed(r, data + *roff, 1, rf);
        if (u < 0) return u;
        *roff += (size_t)u;
        if (rf->type) return 1;
    }
    return 0;
}

static int any_sig(void *ctx, const uint8_t sig[TCPOTA_SIG_LEN], const uint8_t *msg, size_t len,
                   const uint8_t pk[TCPOTA_PUBKEY_LEN])
{
    (void)ctx, (void)sig, (void)msg, (void)len, (void)pk;
    return 0;
}

static void check_offer(const struct tcpota_msg *m)
{
    struct tcpota_manifest man;
    struct tcpota_trust t;
    struct tcpota_msg dec;
    uint8_t key[1][TCPOTA_PUBKEY_LEN];
    char why[TCPOTA_MAX_MESSAGE + 1];

    memset(key, 0, sizeof(key));
    if (tcpota_manifest_parse(m->u.offer.manifest.ptr, m->u.offer.manifest.len, &man) == 0) {
        memcpy(key[0], man.pubkey, TCPOTA_PUBKEY_LEN);
    }
    memset(&t, 0, sizeof(t));
    t.keys = (const uint8_t(*)[TCPOTA_PUBKEY_LEN])key;
    t.nkeys = 1;
    t.verify = any_sig;
    t.model = "esp32";
    t.security_counter = 3;
    if (tcpota_manifest_check(&t, m, NULL, why, sizeof(why)) < 0) {
        memset(&dec, 0, sizeof(dec));
        dec.type = TCPOTA_T_DECLINE;
        dec.u.decline.image_id = m->u.offer.image_id;
        dec.u.decline.message.ptr = (const uint8_t *)why;
        dec.u.decline.message.len = (uint16_t)strlen(why);
        if (tcpota_msg_encode(&dec, out, sizeof(out)) <= 0) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tcpota_decoder d, r;
    size_t step, cap, off = 0, roff = 0;

    if (size < 2) return 0;
    step = (size_t)(data[0] % 64) + 1;
    data++, size--;
    cap = (size_t)(data[0] & 1) ? 520 : sizeof(buf);
    if (tcpota_decoder_init(&d, buf, cap) < 0 || tcpota_decoder_init(&r, rbuf, cap) < 0) return 0;
    while (off < size) {
        struct tcpota_frame f, rf;
        struct tcpota_msg m;
        size_t k = size - off < step ? size - off : step;
        int used = tcpota_decoder_feed(&d, data + off, k, &f);
        if (used < 0) {
            if (ref_next(&r, data, size, &roff, &rf) != used) __builtin_trap();
            break;
        }
        off += (size_t)used;
        if (!f.type) continue;
        if (ref_next(&r, data, size, &roff, &rf) != 1 || roff != off || rf.type != f.type ||
            rf.len != f.len || memcmp(rf.payload, f.payload, f.len) != 0) {
            __builtin_trap();
        }
        if (tcpota_msg_decode(&f, &m) == 0) {
            int n;
            if (m.type == TCPOTA_T_OFFER) {
                check_offer(&m);
            }
            n = tcpota_msg_encode(&m, out, sizeof(out));
            /* Unknown optional TLVs are dropped on re-encoding, so only
             * check that what we emit is itself a valid frame. */
            if (n > 0) {
                struct tcpota_decoder d2;
                struct tcpota_frame f2;
                struct tcpota_msg m2;
                static uint8_t buf2[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
                tcpota_decoder_init(&d2, buf2, sizeof(buf2));
                if (tcpota_decoder_feed(&d2, out, (size_t)n, &f2) != n || !f2.type ||
                    tcpota_msg_decode(&f2, &m2) != 0 || m2.type != m.type) {
                    __builtin_trap();
                }
            }
        }
    }
    return 0;
}
