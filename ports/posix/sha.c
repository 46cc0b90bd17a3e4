/* sha.c - the emulated device's SHA-256, through OpenSSL's EVP (see
 * posix_internal.h). */
#include "posix_internal.h"

#include <openssl/evp.h>

int tcpota_px_sha_begin(void **ctx)
{
    if (!*ctx && !(*ctx = EVP_MD_CTX_new())) {
        return -1;
    }
    return EVP_DigestInit_ex(*ctx, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

int tcpota_px_sha_update(void *ctx, const uint8_t *p, size_t n)
{
    return ctx && EVP_DigestUpdate(ctx, p, n) == 1 ? 0 : -1;
}

int tcpota_px_sha_final(void *ctx, uint8_t out[TCPOTA_ID_LEN])
{
    unsigned int len = 0;

    return ctx && EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == TCPOTA_ID_LEN ? 0 : -1;
}

void tcpota_px_sha_free(void **ctx)
{
    EVP_MD_CTX_free(*ctx);
    *ctx = NULL;
}
