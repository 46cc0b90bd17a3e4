/* api_verify.c - api_verify_keys(): a manifest checked against the server's
 * --pubkey keys, for the control API's uploads (see api.h). That it
 * describes the uploaded bytes is checked once, by the API. api_key_id():
 * the one name of a signing key, shared with tcpota keygen and verify. */
#include "api.h"
#include "store.h"

#include "tcpota/manifest.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

void api_key_id(const uint8_t pk[32], char out[API_KEY_ID_HEX + 1])
{
    uint8_t h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, pk, 32);
    sodium_bin2hex(out, API_KEY_ID_HEX + 1, h, API_KEY_ID_HEX / 2);
}

int api_verify_keys(void *ctx, const uint8_t id[32], const uint8_t *man, size_t len,
                    char *version, char *model, char *err, size_t errlen)
{
    const struct api_keys *k = ctx;
    struct tcpota_manifest m;
    char kid[API_KEY_ID_HEX + 1];
    size_t i;
    int rc = tcpota_manifest_parse(man, len, &m);

    if (rc < 0) {
        snprintf(err, errlen, "the manifest is malformed (%s); sign the image again (tcpota sign)",
                 tcpota_strerror(rc));
        return -1;
    }
    for (i = 0; i < k->nkeys && memcmp(k->keys[i], m.pubkey, TCPOTA_PUBKEY_LEN) != 0; i++) {
    }
    if (i == k->nkeys) {
        api_key_id(m.pubkey, kid); /* named as tcpota keygen and verify name it */
        snprintf(err, errlen, "the manifest is signed by key %s, which is not one of the server's "
                 "--pubkey keys; sign with a trusted key", kid);
        return -1;
    }
    if (crypto_sign_verify_detached(m.signature, m.signed_part, m.signed_len, m.pubkey) != 0) {
        snprintf(err, errlen, "the manifest's signature does not verify (altered or forged)");
        return -1;
    }
    snprintf(version, TCPOTA_MAX_NAME + 1, "%.*s", (int)m.version.len, (const char *)m.version.ptr);
    snprintf(model, TCPOTA_MAX_NAME + 1, "%.*s", (int)m.model.len, (const char *)m.model.ptr);
    return 0;
}

int api_image_refused(api_verify_fn verify, void *ctx, const struct store_image *si, char *err,
                      size_t cap)
{
    char version[TCPOTA_MAX_NAME + 1], model[TCPOTA_MAX_NAME + 1], why[512];

    if (!verify) {
        return 0;
    }
    if (!si->manifest_len) {
        snprintf(err, cap, "it is unsigned, and this server serves only images signed with one of"
                 " its --pubkey keys (it was added where no key was asked for)");
        return 1;
    }
    if (verify(ctx, si->id, si->manifest, si->manifest_len, version, model, why, sizeof(why)) != 0) {
        snprintf(err, cap, "its manifest is not signed by one of this server's --pubkey keys (%s)",
                 why);
        return 1;
    }
    return 0;
}
