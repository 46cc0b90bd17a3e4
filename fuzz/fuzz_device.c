/* fuzz_device.c - a device session fed arbitrary server bytes over the
 * in-memory fake port. Must never crash, write outside the slot or mark an
 * image bootable whose bytes do not hash to its id. Input byte 0: the piece
 * size (bits 0-5), a device secret (bit 6), a TLS binding (bit 7). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../tests/unit/fake_port.h"
#include "tcpota/device.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t rx[4096 + 8], tx[512];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fake_port *fp;
    struct tcpota_dev_config cfg;
    struct tcpota_dev d;
    size_t off = 0, step;
    uint8_t mode;

    if (!fp) {
        if (sodium_init() < 0) abort();
        fp = malloc(sizeof(*fp));
    }
    if (size < 1) return 0;
    mode = data[0];
    step = (size_t)(mode % 64) + 1;
    data++, size--;
    fake_port_init(fp);
    memset(&cfg, 0, sizeof(cfg));
    cfg.port = &fp->port;
    cfg.device_id = "fuzz";
    cfg.model = "esp32";
    cfg.version = "1.0.0";
    cfg.rx_buf = rx; cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx; cfg.tx_cap = sizeof(tx);
    cfg.ack_interval = 4096;
    if (mode & 0x40) {
        /* A device with a secret: CHALLENGE order and the TLS binding. */
        static const uint8_t secret[32] = {1};
        cfg.secret = secret;
        cfg.secret_len = sizeof(secret);
    }
    if (tcpota_dev_init(&d, &cfg) < 0 || tcpota_dev_connect(&d, 0) < 0) abort();
    if (cfg.secret && (mode & 0x80)) {
        static const uint8_t binding[TCPOTA_TLS_BINDING_LEN] = {2};
        tcpota_dev_set_binding(&d, binding);
    }
    while (off < size) {
        struct tcpota_dev_event ev;
        const uint8_t *p;
        size_t k = size - off < step ? size - off : step;
        int used = tcpota_dev_input(&d, data + off, k, &ev);
        tcpota_dev_output_done(&d, tcpota_dev_output(&d, &p));
        if (used < 0) break;
        off += (size_t)used;
    }
    if (fp->boot_set) {
        uint8_t digest[32];
        crypto_hash_sha256(digest, fp->slot, fp->size);
        if (memcmp(digest, d.image, 32) != 0) __builtin_trap();
    }
    fake_port_free(fp);
    return 0;
}
