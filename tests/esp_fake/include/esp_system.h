/* esp_system.h - host fake: esp_restart() is counted (rtos_fake.h). */
#ifndef ESP_FAKE_ESP_SYSTEM_H
#define ESP_FAKE_ESP_SYSTEM_H

#include "esp_err.h"

void esp_restart(void);

#endif
