/*
 * esp_image.h - what the first bytes of an image file say of it, against
 * the version and model it is signed or added with.
 *
 * An ESP-IDF app image (the .bin `idf.py build` writes) starts with
 * esp_image_header_t (magic 0xE9, the chip it is built for), its first
 * segment's header, and esp_app_desc_t (magic 0xABCD5432, the version an
 * ESP-IDF device reports once it runs the image). Three mistakes are told
 * from them before a rollout meets them on the devices:
 *   - an ELF file (the .elf beside the .bin): ESP-IDF refuses it;
 *   - an image built for another chip than the one the model names
 *     (models are the chip's name by default, CONFIG_TCPOTA_MODEL): ESP-IDF
 *     checks the chip and refuses it;
 *   - an app description whose version is not the image's: the device then
 *     reports that version, and a server offers it only newer images.
 * Anything else (a host device's file, random bytes) says nothing: images
 * are any bytes (docs/fleet.md).
 */
#ifndef TCPOTA_ESP_IMAGE_H
#define TCPOTA_ESP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* The bytes esp_image_notes() reads: the image header (24), the first
 * segment's header (8), the app description's magic, secure version and
 * reserved words (16), its version (32) and project name (32). */
#define ESP_IMAGE_PEEK 112u

/* Writes into out (cap bytes, NUL-terminated) what the first n bytes of an
 * image (head; fewer than ESP_IMAGE_PEEK when the file is shorter) say
 * against the version and model it is given, one warning per line ('\n'
 * between them; each says what to do). Returns how many; 0 leaves out "". */
int esp_image_notes(const uint8_t *head, size_t n, const char *version, const char *model,
                    char *out, size_t cap);

#endif /* TCPOTA_ESP_IMAGE_H */
