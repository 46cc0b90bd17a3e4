/* fuzz_legacy.c - the legacy request parser: any bytes, any split. Every
 * package handed out must lie inside the image and be at most 512 bytes. */
#include <stdint.h>

#include "tcpota/legacy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tcpota_legacy l;
    size_t off = 0, step;

    if (size < 2) return 0;
    step = (size_t)(data[0] % 9) + 1;
    tcpota_legacy_init(&l, (uint32_t)data[1] * 97u);
    data += 2, size -= 2;
    (void)tcpota_detect(data, size);
    while (off < size) {
        struct tcpota_legacy_pkg p;
        size_t k = size - off < step ? size - off : step;
        int used = tcpota_legacy_input(&l, data + off, k, &p);
        if (used < 0) break;
        off += (size_t)used;
        if (p.ready && (p.len > TCPOTA_LEGACY_PKG || p.offset > l.size ||
                        p.len > l.size - p.offset)) {
            __builtin_trap();
        }
    }
    return 0;
}
