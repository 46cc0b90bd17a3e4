/* digest.c - SHA-256 through OpenSSL's EVP (see digest.h). */
#include "digest.h"

#include <openssl/evp.h>
#include <string.h>

int digest_init(struct digest *d)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    d->ctx = ctx;
    return ctx ? 0 : -1;
}

void digest_update(struct digest *d, const void *p, size_t n)
{
    if (d->ctx && EVP_DigestUpdate(d->ctx, p, n) != 1) {
        EVP_MD_CTX_free(d->ctx);
        d->ctx = NULL; /* digest_final says it failed */
    }
}

int digest_final(struct digest *d, uint8_t out[TCPOTA_ID_LEN])
{
    unsigned int len = 0;
    int ok = d->ctx && EVP_DigestFinal_ex(d->ctx, out, &len) == 1 && len == TCPOTA_ID_LEN;

    EVP_MD_CTX_free(d->ctx);
    d->ctx = NULL;
    if (!ok) {
        memset(out, 0, TCPOTA_ID_LEN);
    }
    return ok ? 0 : -1;
}

int digest_once(const void *p, size_t n, uint8_t out[TCPOTA_ID_LEN])
{
    struct digest d;

    if (digest_init(&d) < 0) {
        memset(out, 0, TCPOTA_ID_LEN);
        return -1;
    }
    digest_update(&d, p, n);
    return digest_final(&d, out);
}
