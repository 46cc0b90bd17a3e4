/* fuzz_proxy.c - the PROXY protocol header parser (server/proxy_proto.c):
 * never reads past n, never takes more than it was given or than
 * PROXY_HDR_MAX, needs more only below PROXY_HDR_MAX, and a header it took
 * parses the same from exactly its own bytes. */
#include "proxy_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_addr a, b;
    const char *why;
    int rc = proxy_parse(data, size, &a, &why);

    if (rc < -1 || rc > (int)size || rc > (int)PROXY_HDR_MAX || (rc == 0 && size >= PROXY_HDR_MAX)) {
        abort();
    }
    if (rc > 0) {
        uint8_t *copy = malloc((size_t)rc);
        if (!copy) return 0;
        memcpy(copy, data, (size_t)rc);
        if (proxy_parse(copy, (size_t)rc, &b, &why) != rc || b.local != a.local ||
            (!a.local && (b.srclen != a.srclen || memcmp(&b.src, &a.src, a.srclen) != 0))) {
            abort();
        }
        free(copy);
    }
    return 0;
}
