/* esp_log.h - host fake: ESP_LOGx print to stderr when ESP_FAKE_LOG is set. */
#ifndef ESP_FAKE_ESP_LOG_H
#define ESP_FAKE_ESP_LOG_H

/* printf-like; prints "tag: message" to stderr if the environment sets ESP_FAKE_LOG. */
void esp_fake_log(const char *tag, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last line logged (any level), for tests that check what a refusal
 * says. */
extern char esp_fake_last_log[512];

#define ESP_LOGE(tag, ...) esp_fake_log(tag, __VA_ARGS__)
#define ESP_LOGW(tag, ...) esp_fake_log(tag, __VA_ARGS__)
#define ESP_LOGI(tag, ...) esp_fake_log(tag, __VA_ARGS__)
#define ESP_LOGD(tag, ...) esp_fake_log(tag, __VA_ARGS__)

#endif
