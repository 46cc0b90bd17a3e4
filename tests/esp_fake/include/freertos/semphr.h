/* semphr.h - host fake: a mutex that records whether it is held. */
#ifndef ESP_FAKE_SEMPHR_H
#define ESP_FAKE_SEMPHR_H

#include "freertos/FreeRTOS.h"

typedef struct {
    int held;
} StaticSemaphore_t;
typedef StaticSemaphore_t *SemaphoreHandle_t;

SemaphoreHandle_t xSemaphoreCreateMutexStatic(StaticSemaphore_t *buf);
BaseType_t xSemaphoreTake(SemaphoreHandle_t sem, TickType_t ticks);
BaseType_t xSemaphoreGive(SemaphoreHandle_t sem);

#endif
