/* test_offer.c - the offer policy (server/offer.c) and the device registry
 * of single-image mode (server/devices.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "devices.h"
#include "offer.h"
#include "store.h" /* STORE_REASON_MAX */

static const uint8_t img_id[32] = {1, 2, 3};
static const uint8_t other_id[32] = {7, 7, 7};

static enum offer_verdict decide(const char *img_model, const char *img_ver, const char *dev_model,
                                 const char *dev_ver, const uint8_t *running, int failed,
                                 int allow)
{
    struct tcpota_srv_image desc;
    struct tcpota_srv_hello h;
    struct offer_image img;
    struct offer_device dev;

    memset(&desc, 0, sizeof(desc));
    memcpy(desc.id, img_id, sizeof(desc.id));
    desc.size = 1000;
    desc.version = img_ver;
    desc.version_len = (uint16_t)strlen(img_ver);
    memset(&h, 0, sizeof(h));
    h.device_id = "d1";
    h.model = dev_model;
    h.version = dev_ver;
    h.running_id = running;
    img.desc = &desc;
    img.model = img_model;
    dev.hello = &h;
    dev.failed_before = failed;
    return offer_decide(&img, &dev, allow);
}

static void test_rules(void **state)
{
    struct tcpota_srv_hello h = {"d1", "esp32", "1.0.0", NULL, NULL, 0};
    struct offer_device dev = {&h, 0};
    const struct offer_image no_desc = {NULL, "esp32"};
    (void)state;
    assert_int_equal(offer_decide(NULL, &dev, 0), OFFER_NO_IMAGE);
    /* An image without a descriptor is nothing to offer either (offer.h:
     * desc NULL), whatever the operator allows. */
    assert_int_equal(offer_decide(&no_desc, &dev, 1), OFFER_NO_IMAGE);
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "1.0.0", NULL, 0, 0), OFFER_YES);
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "1.0.0", NULL, 0, 0), OFFER_YES);
    assert_int_equal(decide("", "2.0.0", "esp32", "1.0.0", other_id, 0, 0), OFFER_YES);
    /* Running it: by id when the device sends one, else by version. */
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "1.0.0", img_id, 0, 0), OFFER_RUNNING);
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "2.0.0", NULL, 0, 0), OFFER_RUNNING);
    /* Model, when the image's is known; even allow_downgrade keeps it. */
    assert_int_equal(decide("esp32s3", "2.0.0", "esp32", "1.0.0", NULL, 0, 1), OFFER_OTHER_MODEL);
    /* Failed before: never again, whatever the operator allows. */
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "1.0.0", NULL, 1, 1), OFFER_FAILED_BEFORE);
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "1.0.0", NULL, 1, 0), OFFER_FAILED_BEFORE);
    /* ...but only where it would be offered: on a newer version, the same
     * one, or one without an order the device is told that (a trial's, on
     * 5.0.0, was recorded failed for an older image it had once failed). */
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "5.0.0", NULL, 1, 0), OFFER_DOWNGRADE);
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "2.0.0+b1", other_id, 1, 0),
                     OFFER_SAME_VERSION);
    assert_int_equal(decide("esp32", "2.0.0", "esp32", "factory", NULL, 1, 0), OFFER_UNORDERED);
    /* Versions. */
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "5.0.0", NULL, 0, 0), OFFER_DOWNGRADE);
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "5.0.0", NULL, 0, 1), OFFER_YES);
    assert_int_equal(decide(NULL, "2.0.0+b2", "esp32", "2.0.0+b1", other_id, 0, 0),
                     OFFER_SAME_VERSION);
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "factory", NULL, 0, 0), OFFER_UNORDERED);
    assert_int_equal(decide(NULL, "firmware.bin", "esp32", "1.0.0", NULL, 0, 0), OFFER_UNORDERED);
    assert_int_equal(decide(NULL, "firmware.bin", "esp32", "1.0.0", NULL, 0, 1), OFFER_YES);
    /* Equal strings are the same version, ordered or not (other bytes). */
    assert_int_equal(decide(NULL, "build-7", "esp32", "build-7", other_id, 0, 0),
                     OFFER_SAME_VERSION);
    assert_int_equal(decide(NULL, "2.0.0-rc.1", "esp32", "2.0.0", NULL, 0, 0), OFFER_DOWNGRADE);
    assert_int_equal(decide(NULL, "2.0.0", "esp32", "2.0.0-rc.1", NULL, 0, 0), OFFER_YES);
}

static void test_reasons_named(void **state)
{
    int v;
    (void)state;
    for (v = OFFER_YES; v <= OFFER_UNORDERED; v++) {
        assert_string_not_equal(offer_reason((enum offer_verdict)v), "?");
    }
    /* What the device is told (NO_UPDATE's WHY): held back only when it
     * failed here; not newer for the version rules, unordered apart. */
    assert_int_equal(offer_why(OFFER_YES), 0);
    assert_int_equal(offer_why(OFFER_NO_IMAGE), TCPOTA_WHY_NONE);
    assert_int_equal(offer_why(OFFER_RUNNING), TCPOTA_WHY_RUNS);
    assert_int_equal(offer_why(OFFER_OTHER_MODEL), TCPOTA_WHY_OTHER_MODEL);
    assert_int_equal(offer_why(OFFER_FAILED_BEFORE), TCPOTA_WHY_HELD);
    /* Every reason fits the registry's STORE_REASON_MAX behind "rollout N: "
     * (a six-digit N): the failure's was cut mid-word there (a trial). */
    for (int k = OFFER_YES; k <= OFFER_UNORDERED; k++) {
        assert_true(strlen("rollout 999999: ") + strlen(offer_reason((enum offer_verdict)k)) <=
                    STORE_REASON_MAX);
    }
    assert_int_equal(offer_why(OFFER_DOWNGRADE), TCPOTA_WHY_NOT_NEWER);
    assert_int_equal(offer_why(OFFER_SAME_VERSION), TCPOTA_WHY_NOT_NEWER);
    assert_int_equal(offer_why(OFFER_UNORDERED), TCPOTA_WHY_UNORDERED);
}

static void test_registry(void **state)
{
    struct devices d;
    struct device_rec *r;
    unsigned counts[DEV_OUTCOMES];
    uint8_t id[32];
    char name[16];
    int i;
    (void)state;

    assert_int_equal(devices_init(&d, 3000), 0);
    assert_null(devices_get(&d, "dev-1", 0));
    r = devices_get(&d, "dev-1", 1);
    assert_non_null(r);
    assert_ptr_equal(devices_get(&d, "dev-1", 0), r);
    assert_null(devices_get(&d, "", 1));
    /* Failed images: remembered, the newest DEVICE_FAILED_MAX kept. */
    assert_int_equal(device_failed(r, img_id), 0);
    device_mark_failed(r, img_id);
    device_mark_failed(r, img_id);
    assert_int_equal(r->nfailed, 1);
    assert_int_equal(device_failed(r, img_id), 1);
    assert_int_equal(device_failed(r, other_id), 0);
    for (i = 0; i < (int)DEVICE_FAILED_MAX; i++) {
        memset(id, 0x40 + i, sizeof(id));
        device_mark_failed(r, id);
    }
    assert_int_equal(device_failed(r, img_id), 0);
    assert_int_equal(device_failed(r, id), 1);
    assert_int_equal(device_failed(NULL, id), 0);
    /* Many devices: the table grows, each found again, the cap holds. */
    for (i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "d%d", i);
        r = devices_get(&d, name, 1);
        if (i < 2999) {
            assert_non_null(r);
            r->outcome = i % 2 ? DEV_ROLLED_BACK : DEV_UPDATED;
        } else {
            assert_null(r); /* dev-1 holds the 3000th place */
        }
    }
    assert_non_null(devices_get(&d, "d1234", 0));
    /* The table doubled as it filled: chains stay about one record long. */
    assert_true(d.count <= d.nslots);
    devices_count(&d, counts);
    assert_int_equal(counts[DEV_UPDATED], 1500);
    assert_int_equal(counts[DEV_ROLLED_BACK], 1499);
    assert_int_equal(counts[DEV_SEEN], 1);
    assert_string_equal(device_outcome_name(DEV_ROLLED_BACK), "rolled back");
    assert_string_equal(device_outcome_name(DEV_CONFIRMED), "updated and confirmed");
    assert_string_equal(device_outcome_name(DEV_OUTCOMES), "?"); /* no outcome of ours */
    devices_free(&d);
}

/* The longest id a HELLO may carry is recorded; a longer one, which would
 * not fit the record, is refused. */
static void test_registry_id_length(void **state)
{
    struct devices d;
    char id[TCPOTA_MAX_STR + 2];
    (void)state;

    assert_int_equal(devices_init(&d, 10), 0);
    memset(id, 'x', TCPOTA_MAX_STR);
    id[TCPOTA_MAX_STR] = '\0';
    assert_non_null(devices_get(&d, id, 1));
    assert_non_null(devices_get(&d, id, 0));
    id[TCPOTA_MAX_STR] = 'x';
    id[TCPOTA_MAX_STR + 1] = '\0';
    assert_null(devices_get(&d, id, 1));
    devices_free(&d);
}

/* What an HTTP device reports is the image's version: the same string, a
 * leading v or V on either side forgiven, nothing else (a mutation review:
 * only "v2.0.0" against 2.0.0 was tested). */
static void test_version_is(void **state)
{
    static const struct {
        const char *dev, *img;
        int is;
    } cases[] = {
        {"2.0.0", "2.0.0", 1},      {"v2.0.0", "2.0.0", 1},     {"V2.0.0", "2.0.0", 1},
        {"2.0.0", "v2.0.0", 1},     {"2.0.0", "V2.0.0", 1},     {"v2.0.0", "v2.0.0", 1},
        {"x2.0.0", "2.0.0", 0},     {"2.0.0", "x2.0.0", 0},     {"vv2.0.0", "2.0.0", 0},
        {"2.0", "2.0.0", 0},        {"2.0.0+b1", "2.0.0+b2", 0}, {"2.0.0+b1", "2.0.0", 0},
        {"2.0.0", "2.0.1", 0},      {"v2.0.0", "v2.0.1", 0},    {"", "2.0.0", 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (offer_version_is(cases[i].dev, cases[i].img) != cases[i].is) {
            fail_msg("offer_version_is(\"%s\", \"%s\") is not %d", cases[i].dev, cases[i].img,
                     cases[i].is);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_reasons_named),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_registry_id_length),
        cmocka_unit_test(test_version_is),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
