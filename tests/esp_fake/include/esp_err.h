/* esp_err.h - host fake of ESP-IDF's error codes (tests/esp_fake): the
 * names and values the tcpota ESP-IDF port uses, as in ESP-IDF 5.5. */
#ifndef ESP_FAKE_ESP_ERR_H
#define ESP_FAKE_ESP_ERR_H

#include <stdint.h>

typedef int esp_err_t;

#define ESP_OK 0
#define ESP_FAIL -1
#define ESP_ERR_NO_MEM 0x101
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_STATE 0x103
#define ESP_ERR_INVALID_SIZE 0x104
#define ESP_ERR_NOT_FOUND 0x105
#define ESP_ERR_NOT_SUPPORTED 0x106
#define ESP_ERR_TIMEOUT 0x107

/* Returns the macro name of an error code (a static string). */
const char *esp_err_to_name(esp_err_t code);

#endif
