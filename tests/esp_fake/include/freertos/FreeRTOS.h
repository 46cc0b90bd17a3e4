/* FreeRTOS.h - host fake (tests/esp_fake): the types, constants and macros
 * tcpota_esp.c uses, as ESP-IDF 5.5's FreeRTOS defines them (32-bit ticks;
 * pdMS_TO_TICKS multiplies in TickType_t). Control: rtos_fake.h. */
#ifndef ESP_FAKE_FREERTOS_H
#define ESP_FAKE_FREERTOS_H

#include <stdint.h>

typedef uint32_t TickType_t;
typedef int BaseType_t;
typedef unsigned UBaseType_t;

#define configTICK_RATE_HZ 100u /* ESP-IDF's default CONFIG_FREERTOS_HZ */
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
