/*
 * version.h - the order of firmware versions.
 *
 * The server must never offer a device a version older than the one it runs
 * (unless the operator allows downgrades), so versions need an order. It is
 * Semantic Versioning 2.0.0's precedence, read a little more widely so that
 * the versions firmware is really given still compare:
 *
 *   [v|V] N[.N[.N[.N]]] [-PRERELEASE] [+BUILD]
 *
 * one to four decimal fields (missing ones count as 0, so "2.1" == "2.1.0"),
 * each at most 9 digits and read by value: unlike SemVer, leading zeros are
 * allowed, since date versions ("2024.01.05") are common in firmware, so
 * "01.2.3" is "1.2.3" (one version to the offer policy); PRERELEASE is dot-separated identifiers of
 * [0-9A-Za-z-] that order as SemVer says (numeric ones by value and below
 * alphanumeric ones, a shorter list below a longer one with the same start,
 * and any pre-release below the release: 2.0.0-rc.1 < 2.0.0); BUILD is
 * ignored for the order. Anything else ("factory", "firmware.bin",
 * "2.0.0 final") has no place in the order: tcpota_version_order() says so
 * and the caller decides (the server then treats the offer as a possible
 * downgrade).
 */
#ifndef TCPOTA_VERSION_H
#define TCPOTA_VERSION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TCPOTA_VERSION_FIELDS 4 /* decimal fields at most: N.N.N.N */
#define TCPOTA_VERSION_DIGITS 9 /* digits in a field at most (fits in 32 bits) */

/* Compares version a (alen bytes) with version b. Returns 0 and sets *order
 * to -1 (a is older), 0 (same precedence) or 1 (a is newer); or
 * TCPOTA_ERR_INVAL when either is not a version in the form above (*order
 * is then untouched). Neither string needs a NUL. */
int tcpota_version_order(const char *a, size_t alen, const char *b, size_t blen, int *order);

/* 1 when NUL-terminated versions a and b are one to the offer policy: the
 * same string, or the same precedence ("v4.0.2" and "4.0.2", "2.1" and
 * "2.1.0"; build metadata aside), which a device running one reads as the
 * other; else 0. (Servers and tools use it; a device need not link it.) */
int tcpota_version_same(const char *a, const char *b);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_VERSION_H */
