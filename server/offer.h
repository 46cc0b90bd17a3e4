/*
 * offer.h - the offer policy of `tcpota serve`: whether a device that said
 * HELLO is offered an image, and if not, why. Pure: no I/O, no clock, no
 * allocation, so every rule is unit-tested (tests/unit/test_offer.c) and
 * the fleet's per-model rollouts reuse it.
 *
 * The rules, in the order they are applied:
 *   1. nothing to offer                                  -> OFFER_NO_IMAGE
 *   2. the device runs this very image (tcpota_srv_runs(), the session's
 *      own rule)                                         -> OFFER_RUNNING
 *   3. the image is for another hardware model (when the image's model is
 *      known, i.e. it has a signed manifest)             -> OFFER_OTHER_MODEL
 *   4. versions (tcpota/version.h): the image is older    -> OFFER_DOWNGRADE,
 *      of the same precedence                             -> OFFER_SAME_VERSION,
 *      either version has no place in the order           -> OFFER_UNORDERED;
 *      allow_downgrade lets all three through (the operator says so).
 *   5. the device reported this image as failed: rolled back, rejected by
 *      its bootloader, failed its integrity check, declined (any reason but
 *      "already running")                                -> OFFER_FAILED_BEFORE
 *      (after 4: a failure holds back only what would be offered; a device
 *      on a newer version is up to date, not failed)
 *   Otherwise                                            -> OFFER_YES.
 */
#ifndef TCPOTA_SERVER_OFFER_H
#define TCPOTA_SERVER_OFFER_H

#include "tcpota/codec.h"
#include "tcpota/server.h"

#include <stdint.h>

enum offer_verdict {
    OFFER_YES = 0,
    OFFER_NO_IMAGE,
    OFFER_RUNNING,
    OFFER_OTHER_MODEL,
    OFFER_FAILED_BEFORE,
    OFFER_DOWNGRADE,
    OFFER_SAME_VERSION,
    OFFER_UNORDERED,
};

/* The image the server could offer. */
struct offer_image {
    const struct tcpota_srv_image *desc; /* NULL: no image */
    const char *model; /* from the signed manifest; NULL or "": any model */
};

/* The device, as its HELLO and the server's memory describe it. */
struct offer_device {
    const struct tcpota_srv_hello *hello;
    int failed_before; /* it failed this image (reported, declined, or an HTTP download not booted) */
};

/* Applies the rules above. Returns an enum offer_verdict. */
enum offer_verdict offer_decide(const struct offer_image *img, const struct offer_device *dev,
                                int allow_downgrade);

/* A short English reason for a verdict, for the log ("runs a newer version"). */
const char *offer_reason(enum offer_verdict v);

/* The verdict as NO_UPDATE tells it to the device (enum tcpota_why,
 * codec.h); 0 for OFFER_YES. */
uint16_t offer_why(enum offer_verdict v);

/* 1 when the version an HTTP device says it runs (dev) is image version
 * img: the same string, or the same but for one leading 'v' or 'V' on
 * either ("v5.0.0" of image 5.0.0, as git describe gives it: a trial's
 * updated devices were counted failed). Not precedence
 * (tcpota_version_same): "2.0.0+b1" is not image "2.0.0+b2", nor "2.0"
 * image "2.0.0", and a device that rolled back to one must not count as
 * running the other (a review). */
int offer_version_is(const char *dev, const char *img);

#endif
