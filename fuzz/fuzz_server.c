/* fuzz_server.c - a server session fed arbitrary device bytes, with the
 * stream pulled as a real server would. Must never crash, read out of
 * bounds, or hand out a DATA range outside the image.
 *
 * Two sessions take the same bytes: one in the fuzzer's pieces (whole
 * frames at once, runs of ACKs in one call), the other in slices shorter
 * than any ACK frame, so that each frame goes through the decoder byte by
 * byte. After each piece both must stand in the same state with the same
 * replies: the quick path for ACK runs takes exactly what the frame-by-frame
 * path takes.
 *
 * The first byte chooses the piece length (low 5 bits) and, with bit 0x80,
 * has the harness set each frame's CRC right before feeding it, so that
 * the fuzzer's changes reach the session's rules and not only the CRC
 * check. */
#include <stdint.h>
#include <string.h>

#include "tcpota/crc32c.h"
#include "tcpota/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Shorter than an ACK frame: never a whole one in a slice. */
#define SLICE (TCPOTA_FRAME_OVERHEAD + TCPOTA_ACK_FIXED - 1u)

struct side {
    struct tcpota_srv s;
    uint8_t rx[1024], tx[TCPOTA_SRV_TX_MIN];
};

static struct side a, b;

static void start(struct side *x, const struct tcpota_srv_image *img)
{
    struct tcpota_srv_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.image = img;
    cfg.rx_buf = x->rx; cfg.rx_cap = sizeof(x->rx);
    cfg.tx_buf = x->tx; cfg.tx_cap = sizeof(x->tx);
    if (tcpota_srv_init(&x->s, &cfg) < 0) __builtin_trap();
}

/* Feeds p[0..n) in calls of at most `most` bytes. Returns 0, or the error
 * that ended the session. */
static int feed(struct side *x, const uint8_t *p, size_t n, size_t most)
{
    size_t off = 0;

    while (off < n) {
        struct tcpota_srv_event ev;
        size_t k = n - off < most ? n - off : most;
        int used = tcpota_srv_input(&x->s, p + off, k, &ev);
        if (used < 0) return used;
        if ((size_t)used > k) __builtin_trap();
        off += (size_t)used;
    }
    return 0;
}

/* Sets the CRC of each whole frame in p[0..n) as its header reads. */
static void seal(uint8_t *p, size_t n)
{
    size_t at = 0;

    while (n - at >= TCPOTA_FRAME_OVERHEAD) {
        size_t body = TCPOTA_FRAME_HEAD + tcpota_get_u16(p + at + 2);
        if (body + TCPOTA_FRAME_TAIL > n - at) break;
        tcpota_put_u32(p + at + body, tcpota_crc32c(p + at, body));
        at += body + TCPOTA_FRAME_TAIL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t sealed[1 << 16];
    static const uint8_t id[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                   0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
                                   0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
                                   0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    struct tcpota_srv_image img;
    size_t off = 0, step;

    if (size < 1) return 0;
    step = (size_t)(data[0] % 32) + 1;
    if ((data[0] & 0x80) && size - 1 <= sizeof(sealed)) {
        memcpy(sealed, data + 1, size - 1);
        seal(sealed, size - 1);
        data = sealed;
    } else {
        data++;
    }
    size--;
    memset(&img, 0, sizeof(img));
    memcpy(img.id, id, 32);
    img.size = 1048576;
    img.version = "1.1.0";
    img.version_len = 5;
    start(&a, &img);
    start(&b, &img);
    while (off < size) {
        const uint8_t *pa, *pb;
        uint32_t oa, ob;
        uint16_t la, lb;
        size_t k = size - off < step ? size - off : step, na, nb;
        int ra = feed(&a, data + off, k, k), rb = feed(&b, data + off, k, SLICE);
        off += k;
        na = tcpota_srv_output(&a.s, &pa);
        nb = tcpota_srv_output(&b.s, &pb);
        if (ra != rb || tcpota_srv_get_state(&a.s) != tcpota_srv_get_state(&b.s) ||
            a.s.acked != b.s.acked || a.s.send_pos != b.s.send_pos || na != nb ||
            memcmp(pa, pb, na) != 0) {
            __builtin_trap();
        }
        if (ra < 0) break;
        tcpota_srv_output_done(&a.s, na);
        tcpota_srv_output_done(&b.s, nb);
        for (int i = 0; i < 4; i++) {
            int ga = tcpota_srv_data_next(&a.s, &oa, &la), gb = tcpota_srv_data_next(&b.s, &ob, &lb);
            if (ga != gb) __builtin_trap();
            if (!ga) break;
            if (oa != ob || la != lb) __builtin_trap();
            if (la == 0 || oa >= img.size || la > img.size - oa) __builtin_trap();
        }
    }
    return 0;
}
