/* offer.c - the offer policy (see offer.h). */
#include "offer.h"

#include "tcpota/tcpota.h"
#include "tcpota/version.h"

#include <string.h>

enum offer_verdict offer_decide(const struct offer_image *img, const struct offer_device *dev,
                                int allow_downgrade)
{
    const struct tcpota_srv_hello *h = dev->hello;
    enum offer_verdict v;
    int order = 0;

    if (!img || !img->desc) {
        return OFFER_NO_IMAGE;
    }
    if (tcpota_srv_runs(h, img->desc)) {
        return OFFER_RUNNING;
    }
    if (img->model && img->model[0] && strcmp(img->model, h->model) != 0) {
        return OFFER_OTHER_MODEL;
    }
    if (allow_downgrade) {
        v = OFFER_YES;
    } else if (strlen(h->version) == img->desc->version_len &&
               memcmp(h->version, img->desc->version, img->desc->version_len) == 0) {
        v = OFFER_SAME_VERSION; /* "build-7" and "build-7": equal, order or not */
    } else if (tcpota_version_order(img->desc->version, img->desc->version_len, h->version,
                                    strlen(h->version), &order) < 0) {
        v = OFFER_UNORDERED;
    } else {
        v = order > 0 ? OFFER_YES : order < 0 ? OFFER_DOWNGRADE : OFFER_SAME_VERSION;
    }
    /* A failure holds back only an image that would be offered: a device
     * that runs a newer version is up to date, not failed (a trial's,
     * moved into a group whose rollout offers an older image it once
     * failed, was recorded failed while it ran the newer one). */
    return v == OFFER_YES && dev->failed_before ? OFFER_FAILED_BEFORE : v;
}

const char *offer_reason(enum offer_verdict v)
{
    switch (v) {
    case OFFER_YES: return "offered";
    case OFFER_NO_IMAGE: return "no image to offer";
    case OFFER_RUNNING: return "runs this image already";
    case OFFER_OTHER_MODEL: return "the image is for another model";
    case OFFER_FAILED_BEFORE:
        /* An HTTP device reports nothing: its failure is a whole
         * download it did not boot (a trial read "reported" as untrue).
         * No "device retry" here: single-image mode has no registry to
         * retry in (a trial was sent to one). */
        /* Short enough for the registry's STORE_REASON_MAX with "rollout N: "
         * before it (it was cut mid-word, a trial). */
        return "the image failed on this device before (reported, declined, or downloaded over HTTP"
               " and not booted)";
    case OFFER_DOWNGRADE: return "the device runs a newer version (--allow-downgrade offers it)";
    case OFFER_SAME_VERSION:
        return "the device runs the same version built differently (--allow-downgrade offers it)";
    case OFFER_UNORDERED:
        return "the versions cannot be ordered: use semantic versions like 2.1.0 "
               "(--allow-downgrade offers it)";
    }
    return "?";
}

uint16_t offer_why(enum offer_verdict v)
{
    switch (v) {
    case OFFER_YES: return 0;
    case OFFER_NO_IMAGE: return TCPOTA_WHY_NONE;
    case OFFER_RUNNING: return TCPOTA_WHY_RUNS;
    case OFFER_OTHER_MODEL: return TCPOTA_WHY_OTHER_MODEL;
    case OFFER_FAILED_BEFORE: return TCPOTA_WHY_HELD;
    case OFFER_DOWNGRADE:
    case OFFER_SAME_VERSION: return TCPOTA_WHY_NOT_NEWER;
    case OFFER_UNORDERED: return TCPOTA_WHY_UNORDERED;
    }
    return 0;
}

int offer_version_is(const char *dev, const char *img)
{
    return strcmp(dev, img) == 0 || ((dev[0] == 'v' || dev[0] == 'V') && strcmp(dev + 1, img) == 0) ||
           ((img[0] == 'v' || img[0] == 'V') && strcmp(img + 1, dev) == 0);
}
