/*
 * manifest.h - signed image manifests: layout, parsing and the device's
 * acceptance rules. No cryptography here: the signature is checked by a
 * port function (Ed25519, libsodium on the host), so the core stays free of
 * crypto code and the rules live in one place for every platform.
 *
 * Layout (docs/protocol.md, "Signed manifests"):
 *
 *   0   4  magic "tOTM"
 *   4   1  format, 1
 *   5   1  flags, 0
 *   6   2  body length N, u16 LE
 *   8   N  body: TLVs (tag u8, length u16 LE, value), each tag once
 *          (critical bit masked; codec.h's tcpota_tlv_next() walks them):
 *          0x01 IMAGE_SIZE u32        0x02 SHA256 32 bytes
 *          0x03 VERSION str 1..32     0x04 MODEL str 1..32
 *          0x05 SECURITY_COUNTER u32  0x06 CREATED u64 (Unix seconds)
 *          0x07 PUBKEY 32 bytes: the Ed25519 key that signed it
 *          unknown tags with bit 0x80 set: refused; others skipped
 *   8+N 64 Ed25519 signature over bytes [0, 8+N)
 */
#ifndef TCPOTA_MANIFEST_H
#define TCPOTA_MANIFEST_H

#include "codec.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_MANIFEST_FORMAT 1
#define TCPOTA_MANIFEST_MAGIC "tOTM" /* its first 4 bytes */
#define TCPOTA_PUBKEY_LEN 32
#define TCPOTA_SIG_LEN 64

struct tcpota_manifest {
    uint32_t image_size;
    const uint8_t *sha256; /* TCPOTA_ID_LEN bytes */
    struct tcpota_bytes version, model;
    uint32_t security_counter;
    uint64_t created;
    const uint8_t *pubkey;    /* TCPOTA_PUBKEY_LEN bytes */
    const uint8_t *signature; /* TCPOTA_SIG_LEN bytes */
    const uint8_t *signed_part; /* bytes the signature covers */
    size_t signed_len;
};

/* Parses a manifest (pointers into buf). Every field is required. Returns 0
 * or TCPOTA_ERR_PROTO (malformed, missing field, trailing bytes) or
 * TCPOTA_ERR_NOTSUP (unknown format or critical tag). */
int tcpota_manifest_parse(const uint8_t *buf, size_t len, struct tcpota_manifest *m);

/* Writes the unsigned part of a manifest (header + body) for *m (its
 * signature and signed_* fields are ignored) into out. Returns its length;
 * the caller appends the 64-byte signature over those bytes. Returns
 * TCPOTA_ERR_NOSPC or TCPOTA_ERR_INVAL for a field out of its limits. */
int tcpota_manifest_encode_body(const struct tcpota_manifest *m, uint8_t *out, size_t cap);

/* Checks the Ed25519 signature `sig` over msg with public key pk: returns 0
 * if it verifies, else a negative value. Supplied by the platform. */
typedef int (*tcpota_sig_verify_fn)(void *ctx, const uint8_t sig[TCPOTA_SIG_LEN],
                                    const uint8_t *msg, size_t len,
                                    const uint8_t pk[TCPOTA_PUBKEY_LEN]);

/* What a device trusts and what it runs, for tcpota_manifest_check(). */
struct tcpota_trust {
    const uint8_t (*keys)[TCPOTA_PUBKEY_LEN]; /* trusted public keys */
    size_t nkeys;
    tcpota_sig_verify_fn verify;
    void *verify_ctx;
    const char *model;         /* this device's hardware model */
    uint32_t security_counter; /* lowest counter this device accepts */
};

/* The device's acceptance rules for an offered image (*offer, a decoded
 * OFFER; its MANIFEST TLV is the manifest), in this order: manifest
 * present and well formed (TCPOTA_ERR_UNSIGNED / _PROTO), public key among
 * the trusted ones (TCPOTA_ERR_NOKEY), signature verifies
 * (TCPOTA_ERR_BADSIG), the offer's version equals the manifest's
 * (TCPOTA_ERR_REFUSED), its size and image id equal the manifest's size
 * and SHA-256 (TCPOTA_ERR_INTEGRITY), model equals the device's
 * (TCPOTA_ERR_MODEL), counter not below the device's
 * (TCPOTA_ERR_DOWNGRADE). Returns 0 when all hold, with the parsed
 * manifest in *out (may be NULL; pointers into the offer's frame). On a
 * refusal why[0..why_cap) (may be NULL) gets a one-line reason that names
 * the field and both values, e.g. "offer version 9.9.9 differs from the
 * signed manifest's 2.0.0"; TCPOTA_MAX_MESSAGE + 1 bytes hold any reason,
 * a smaller buffer gets it cut short. */
int tcpota_manifest_check(const struct tcpota_trust *t, const struct tcpota_msg *offer,
                          struct tcpota_manifest *out, char *why, size_t why_cap);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_MANIFEST_H */
