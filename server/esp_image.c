/* esp_image.c - an ESP-IDF app image's header against its version and model
 * (esp_image.h). The layouts are ESP-IDF's esp_app_format.h and
 * esp_app_desc.h (5.x and 6.0 alike). */
#include "esp_image.h"

#include "tcpota/codec.h" /* tcpota_get_u16, tcpota_get_u32: little-endian */
#include "tcpota/version.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ELF_MAGIC "\177ELF"
#define ESP_IMAGE_MAGIC 0xE9u        /* esp_image_header_t.magic */
#define ESP_CHIP_ID_AT 12u           /* esp_image_header_t.chip_id, 16 bits LE */
#define ESP_APP_DESC_AT 32u          /* header (24) + first segment's header (8) */
#define ESP_APP_DESC_MAGIC 0xABCD5432u
#define ESP_APP_VERSION_AT (ESP_APP_DESC_AT + 16u)
#define ESP_APP_PROJECT_AT (ESP_APP_VERSION_AT + 32u)
#define ESP_APP_STR 32u              /* version[32], project_name[32]: NUL-padded */
_Static_assert(ESP_APP_PROJECT_AT + ESP_APP_STR == ESP_IMAGE_PEEK,
               "ESP_IMAGE_PEEK is the bytes up to the app description's project name's end");

/* ESP-IDF's esp_chip_id_t and the CONFIG_IDF_TARGET of each chip. */
static const struct {
    uint16_t id;
    const char *target;
} chips[] = {
    {0x0000, "esp32"},   {0x0002, "esp32s2"}, {0x0005, "esp32c3"},  {0x0009, "esp32s3"},
    {0x000C, "esp32c2"}, {0x000D, "esp32c6"}, {0x0010, "esp32h2"},  {0x0012, "esp32p4"},
    {0x0014, "esp32c61"}, {0x0017, "esp32c5"}, {0x0019, "esp32h21"}, {0x001C, "esp32h4"},
};

static const char *chip_target(uint16_t id)
{
    size_t i;

    for (i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
        if (chips[i].id == id) return chips[i].target;
    }
    return NULL;
}

/* The chip model names (any case), as the ESP-IDF port's default model
 * does, or NULL. */
static const char *model_chip(const char *model)
{
    size_t i;

    for (i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
        if (strcasecmp(model, chips[i].target) == 0) return chips[i].target;
    }
    return NULL;
}

/* One of the app description's NUL-padded strings into out (33 bytes);
 * 0 when it is empty or not printable ASCII (then it is not one). */
static int app_str(const uint8_t *p, char out[ESP_APP_STR + 1])
{
    size_t i;

    for (i = 0; i < ESP_APP_STR && p[i]; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) return 0;
        out[i] = (char)p[i];
    }
    out[i] = 0;
    return i > 0;
}

/* Appends one warning line to out (cap bytes); returns 1. */
static int add_line(char *out, size_t cap, const char *line)
{
    size_t len = strlen(out);

    if (len + 1 < cap) snprintf(out + len, cap - len, "%s%s", len ? "\n" : "", line);
    return 1;
}

int esp_image_notes(const uint8_t *head, size_t n, const char *version, const char *model,
                    char *out, size_t cap)
{
    char app_version[ESP_APP_STR + 1], project[ESP_APP_STR + 1], line[512];
    const char *built_for, *wanted = model_chip(model);
    int count = 0;

    if (!cap) return 0;
    out[0] = 0;
    if (n >= sizeof(ELF_MAGIC) - 1 && memcmp(head, ELF_MAGIC, sizeof(ELF_MAGIC) - 1) == 0) {
        return add_line(out, cap, "it is an ELF file (what `idf.py build` writes as "
                        "build/<project>.elf): an ESP-IDF device refuses it; give the .bin beside "
                        "it instead (build/<project>.bin), unless this model's devices take any "
                        "file");
    }
    if (n < ESP_IMAGE_PEEK || head[0] != ESP_IMAGE_MAGIC) {
        return 0;
    }
    if (tcpota_get_u32(head + ESP_APP_DESC_AT) != ESP_APP_DESC_MAGIC) {
        return 0; /* a bootloader's or another file's 0xE9: not an app */
    }
    built_for = chip_target(tcpota_get_u16(head + ESP_CHIP_ID_AT));
    if (built_for && wanted && strcmp(wanted, built_for) != 0) {
        snprintf(line, sizeof(line), "it is built for %s (its ESP-IDF image header), not for %s "
                 "as its model says: an %s device refuses it (ESP-IDF checks the chip it is "
                 "built for), and a rollout of it halts; build it with `idf.py set-target %s`, or "
                 "give it model %s",
                 built_for, model, wanted, wanted, built_for);
        count += add_line(out, cap, line);
    }
    if (built_for && wanted && strcmp(model, wanted) != 0) {
        snprintf(line, sizeof(line), "its model %s is the chip %s in other letters: an ESP-IDF "
                 "device reports %s unless it was set otherwise (CONFIG_TCPOTA_MODEL), and models "
                 "must match exactly; give it model %s unless its devices report %s",
                 model, wanted, wanted, wanted, model);
        count += add_line(out, cap, line);
    }
    if (app_str(head + ESP_APP_VERSION_AT, app_version) && !tcpota_version_same(app_version, version)) {
        if (!app_str(head + ESP_APP_PROJECT_AT, project)) snprintf(project, sizeof(project), "?");
        snprintf(line, sizeof(line), "its ESP-IDF app description (project %s) says version %s, "
                 "not %s: an ESP-IDF device reports that version once it runs this image, and a "
                 "server offers it only images newer than that; give it version %s, or set "
                 "PROJECT_VER to %s and build it again", project, app_version, version, app_version, version);
        count += add_line(out, cap, line);
    }
    return count;
}
