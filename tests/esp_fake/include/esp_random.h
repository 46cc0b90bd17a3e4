/* esp_random.h - host fake. */
#ifndef ESP_FAKE_ESP_RANDOM_H
#define ESP_FAKE_ESP_RANDOM_H

#include <stdint.h>

uint32_t esp_random(void);

#endif
