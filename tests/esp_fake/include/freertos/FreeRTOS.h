/* FreeRTOS.h - host fake (tests/esp_fake): the types, constants and macros
 * tcpota_esp.c uses, as ESP-IDF 5.5's FreeRTOS defines them (32-bit ticks;
 * pdMS_TO_TICKS multiplies in TickType_t). Control: rtos_fake.h. */
#ifndef ESP_FAKE_FREERTOS_H
#define ESP_FAKE_FREERTOS_H

#include <stdint.h>

typedef uint32_t TickType_t;
typedef int BaseType_t;
typedef unsigned UBaseType_t;

/* CONFIG_FREERTOS_HZ: 100 (ESP-IDF's default) unless a test sets
 * esp_fake_tick_rate_hz (task_fake.h; menuconfig allows 1 to 1000) */
extern uint32_t esp_fake_tick_rate_hz;
#define configTICK_RATE_HZ esp_fake_tick_rate_hz
#define portMAX_DELAY ((TickType_t)0xffffffffUL)
#define pdMS_TO_TICKS(xTimeInMs) \
    ((TickType_t)(((TickType_t)(xTimeInMs) * (TickType_t)configTICK_RATE_HZ) / (TickType_t)1000U))
#define pdFALSE 0
#define pdTRUE 1
#define pdPASS 1
#define pdFAIL 0

typedef struct {
    int owner;
} portMUX_TYPE;
#define portMUX_INITIALIZER_UNLOCKED {0}
#define portENTER_CRITICAL(mux) ((void)(mux))
#define portEXIT_CRITICAL(mux) ((void)(mux))

#endif
