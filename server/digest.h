/* digest.h - SHA-256 of image bytes, the server's one way to compute an
 * image's id: OpenSSL's, which uses the CPU's SHA instructions where it
 * has them (SHA-NI: 64 MiB in about 40 ms on the project's VM, against
 * 220 ms for libsodium's portable code). An image is hashed when it is
 * uploaded (api_images.c) and first offered (image_open, from fleet.c), each
 * on a thread of its own (offload.h); single-image mode hashes its image
 * at start.
 *
 * Use: digest_init, digest_update for each piece, digest_final; or
 * digest_once for bytes in one piece. A digest that failed to start
 * (out of memory) takes updates and finals that do nothing and fail.
 */
#ifndef TCPOTA_SERVER_DIGEST_H
#define TCPOTA_SERVER_DIGEST_H

#include "tcpota/codec.h" /* TCPOTA_ID_LEN */

#include <stddef.h>
#include <stdint.h>

struct digest {
    void *ctx; /* OpenSSL's EVP_MD_CTX; NULL when init failed */
};

/* Starts a SHA-256. Returns 0, or -1 when out of memory. */
int digest_init(struct digest *d);
/* Adds n bytes at p. */
void digest_update(struct digest *d, const void *p, size_t n);
/* Writes the hash to out and frees d's state. Returns 0, or -1 when the
 * digest failed (init or an update): out is then zeros. */
int digest_final(struct digest *d, uint8_t out[TCPOTA_ID_LEN]);
/* The SHA-256 of n bytes at p into out. Returns 0 or -1 (out of memory). */
int digest_once(const void *p, size_t n, uint8_t out[TCPOTA_ID_LEN]);

#endif
