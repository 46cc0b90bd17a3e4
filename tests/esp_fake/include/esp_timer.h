/* esp_timer.h - host fake: microseconds of the fake clock (rtos_fake.h). */
#ifndef ESP_FAKE_ESP_TIMER_H
#define ESP_FAKE_ESP_TIMER_H

#include <stdint.h>

int64_t esp_timer_get_time(void);

#endif
