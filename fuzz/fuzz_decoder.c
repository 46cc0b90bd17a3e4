/* fuzz_decoder.c - frame decoder + message decoder + re-encoding.
 * Input byte 0 sets the piece size the stream is fed in. A decoded message
 * must re-encode to a frame that decodes to the same bytes. */
#include <stdint.h>
#include <string.h>

#include "tcpota/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t buf[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];
static uint8_t out[TCPOTA_MAX_PAYLOAD + TCPOTA_FRAME_OVERHEAD];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tcpota_decoder d;
    size_t step, off = 0;

    if (size < 2) return 0;
    step = (size_t)(data[0] % 64) + 1;
    data++, size--;
    if (tcpota_decoder_init(&d, buf, (size_t)(data[0] & 1) ? 520 : sizeof(buf)) < 0) return 0;
    while (off < size) {
        struct tcpota_frame f;
        struct tcpota_msg m;
        size_t k = size - off < step ? size - off : step;
        int used = tcpota_decoder_feed(&d, data + off, k, &f);
        if (used < 0) break;
        off += (size_t)used;
        if (!f.type) continue;
        if (tcpota_msg_decode(&f, &m) == 0) {
            int n = tcpota_msg_encode(&m, out, sizeof(out));
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
