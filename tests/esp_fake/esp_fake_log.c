/* esp_fake_log.c - ESP_LOGx of the fakes: quiet unless ESP_FAKE_LOG is set.
 * Its own file so that esp_fake.c and the TLS fake's stand-alone build
 * share it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_log.h"

void esp_fake_log(const char *tag, const char *fmt, ...)
{
    va_list ap;

    if (!getenv("ESP_FAKE_LOG")) {
        return;
    }
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
