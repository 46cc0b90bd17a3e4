/* test_esp_image.c - what an image's first bytes say against the version
 * and model it is signed or added with (server/esp_image.c): an ELF, an
 * ESP-IDF app of another chip or version; nothing for anything else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "esp_image.h"

#define CHIP_ESP32C3 0x0005u
#define CHIP_ESP32S3 0x0009u

/* The first ESP_IMAGE_PEEK bytes of an ESP-IDF app image, as
 * esp_app_format.h and esp_app_desc.h lay them out. */
static void esp_app(uint8_t h[ESP_IMAGE_PEEK], uint16_t chip, const char *version,
                    const char *project)
{
    memset(h, 0, ESP_IMAGE_PEEK);
    h[0] = 0xE9;                                 /* esp_image_header_t.magic */
    h[1] = 4;                                    /* segments */
    h[12] = (uint8_t)chip;                       /* chip_id */
    h[13] = (uint8_t)(chip >> 8);
    h[32] = 0x32, h[33] = 0x54, h[34] = 0xCD, h[35] = 0xAB; /* ESP_APP_DESC_MAGIC_WORD */
    memcpy(h + 48, version, strlen(version));    /* version[32] */
    memcpy(h + 80, project, strlen(project));    /* project_name[32] */
}

static int notes(const uint8_t *h, size_t n, const char *version, const char *model, char *out,
                 size_t cap)
{
    return esp_image_notes(h, n, version, model, out, cap);
}

static void test_other_files_say_nothing(void **state)
{
    uint8_t h[ESP_IMAGE_PEEK];
    char out[1200];

    (void)state;
    memset(h, 0x5a, sizeof(h)); /* a host device's image */
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32c3", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    esp_app(h, CHIP_ESP32S3, "9.9.9", "p");
    h[32] = 0; /* 0xE9 without the app description: a bootloader's, another file's */
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32c3", out, sizeof(out)), 0);
    esp_app(h, CHIP_ESP32S3, "9.9.9", "p");
    /* shorter than the app description's version and name: nothing to read */
    assert_int_equal(notes(h, ESP_IMAGE_PEEK - 1, "1.0.0", "esp32c3", out, sizeof(out)), 0);
    assert_int_equal(notes(h, 0, "1.0.0", "esp32c3", out, sizeof(out)), 0);
}

static void test_elf(void **state)
{
    const uint8_t elf[] = {0x7f, 'E', 'L', 'F', 1, 1, 1};
    char out[1200];

    (void)state;
    assert_int_equal(notes(elf, sizeof(elf), "1.0.0", "anything", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "it is an ELF file"));
    assert_non_null(strstr(out, "give the .bin beside it instead"));
    assert_int_equal(notes(elf, 3, "1.0.0", "anything", out, sizeof(out)), 0); /* "\177EL" */
}

static void test_chip(void **state)
{
    uint8_t h[ESP_IMAGE_PEEK];
    char out[1200];

    (void)state;
    esp_app(h, CHIP_ESP32S3, "1.0.0", "ota");
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32c3", out, sizeof(out)), 1);
    assert_string_equal(out, "it is built for esp32s3 (its ESP-IDF image header), not for esp32c3 "
                             "as its model says: an esp32c3 device refuses it (ESP-IDF checks the "
                             "chip it is built for), and a rollout of it halts; build it with "
                             "`idf.py set-target esp32c3`, or give it model esp32s3");
    /* a model in capitals names the chip too; the build hint is the target's,
     * and the capitals are said, since models are compared exactly */
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "ESP32C3", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "not for ESP32C3 as its model says"));
    assert_non_null(strstr(out, "`idf.py set-target esp32c3`"));
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "ESP32S3", out, sizeof(out)), 1);
    assert_string_equal(out, "its model ESP32S3 is the chip esp32s3 in other letters: an ESP-IDF "
                             "device reports esp32s3 unless it was set otherwise "
                             "(CONFIG_TCPOTA_MODEL), and models must match exactly; give it model "
                             "esp32s3 unless its devices report ESP32S3");
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32s3", out, sizeof(out)), 0);
    /* a model that is no chip's name, a chip id ESP-IDF does not have */
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "gateway-v2", out, sizeof(out)), 0);
    esp_app(h, 0x00ff, "1.0.0", "ota");
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32c3", out, sizeof(out)), 0);
    esp_app(h, CHIP_ESP32C3, "1.0.0", "ota");
    assert_int_equal(notes(h, sizeof(h), "1.0.0", "esp32c3", out, sizeof(out)), 0);
}

static void test_version(void **state)
{
    uint8_t h[ESP_IMAGE_PEEK];
    char out[1200];

    (void)state;
    esp_app(h, CHIP_ESP32C3, "1.0.3", "ota_client");
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 1);
    assert_string_equal(out, "its ESP-IDF app description (project ota_client) says version "
                             "1.0.3, not 1.1.0: an ESP-IDF device reports that version once it "
                             "runs this image, and a server offers it only images newer than "
                             "that; give it version 1.0.3, or set PROJECT_VER to 1.1.0 and "
                             "build it again");
    esp_app(h, CHIP_ESP32C3, "v1.1.0", "ota_client"); /* a git tag: the same version */
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 0);
    esp_app(h, CHIP_ESP32C3, "abc1234-dirty", "ota_client"); /* git describe without a tag */
    assert_int_equal(notes(h, sizeof(h), "abc1234-dirty", "esp32c3", out, sizeof(out)), 0);
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 1);
    /* all 32 bytes used (no NUL), and one not printable: not a version to compare */
    esp_app(h, CHIP_ESP32C3, "", "ota");
    memset(h + 48, '7', 32);
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "says version 77777777777777777777777777777777, not 1.1.0"));
    h[50] = 0x01;
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 0);
    esp_app(h, CHIP_ESP32C3, "", "ota"); /* empty */
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 0);
}

static void test_both_and_small_buffers(void **state)
{
    uint8_t h[ESP_IMAGE_PEEK];
    char out[1200], small[8];

    (void)state;
    esp_app(h, CHIP_ESP32S3, "1.0.3", "ota");
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "or give it model esp32s3\nits ESP-IDF app description"));
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", small, sizeof(small)), 2);
    assert_int_equal(strlen(small), sizeof(small) - 1); /* cut, terminated */
    assert_int_equal(notes(h, sizeof(h), "1.1.0", "esp32c3", small, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_other_files_say_nothing), cmocka_unit_test(test_elf),
        cmocka_unit_test(test_chip), cmocka_unit_test(test_version),
        cmocka_unit_test(test_both_and_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
