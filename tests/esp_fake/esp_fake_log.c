/* esp_fake_log.c - ESP_LOGx of the fakes: quiet unless ESP_FAKE_LOG is set.
 * Its own file so that esp_fake.c and the TLS fake's stand-alone build
 * share it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_log.h"

char esp_fake_last_log[512];

void esp_fake_log(const char *tag, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(esp_fake_last_log, sizeof(esp_fake_last_log), fmt, ap);
    va_end(ap);
    if (getenv("ESP_FAKE_LOG")) {
        fprintf(stderr, "%s: %s\n", tag, esp_fake_last_log);
    }
}
