/* fuzz_server.c - a server session fed arbitrary device bytes, with the
 * stream pulled as a real server would. Must never crash, read out of
 * bounds, or hand out a DATA range outside the image. */
#include <stdint.h>
#include <string.h>

#include "tcpota/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t rx[1024], tx[TCPOTA_SRV_TX_MIN];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t id[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                   0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
                                   0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
                                   0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
    struct tcpota_srv_image img;
    struct tcpota_srv_config cfg;
    struct tcpota_srv s;
    size_t off = 0, step;

    if (size < 1) return 0;
    step = (size_t)(data[0] % 32) + 1;
    data++, size--;
    memset(&img, 0, sizeof(img));
    memcpy(img.id, id, 32);
    img.size = 1048576;
    img.version = "1.1.0";
    img.version_len = 5;
    memset(&cfg, 0, sizeof(cfg));
    cfg.image = &img;
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    if (tcpota_srv_init(&s, &cfg) < 0) __builtin_trap();
    while (off < size) {
        struct tcpota_srv_event ev;
        const uint8_t *p;
        uint32_t o;
        uint16_t len;
        size_t k = size - off < step ? size - off : step;
        int used = tcpota_srv_input(&s, data + off, k, &ev);
        if (used < 0) break;
        off += (size_t)used;
        tcpota_srv_output_done(&s, tcpota_srv_output(&s, &p));
        for (int i = 0; i < 4 && tcpota_srv_data_next(&s, &o, &len); i++) {
            if (len == 0 || o >= img.size || len > img.size - o) __builtin_trap();
        }
    }
    return 0;
}
