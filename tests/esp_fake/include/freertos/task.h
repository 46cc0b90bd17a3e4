/* task.h - host fake: tasks are recorded, not run (rtos_fake.h runs one on
 * request); notifications are counted; delays move the fake clock. */
#ifndef ESP_FAKE_TASK_H
#define ESP_FAKE_TASK_H

#include "freertos/FreeRTOS.h"

typedef struct esp_fake_task *TaskHandle_t;
typedef void (*TaskFunction_t)(void *arg);

BaseType_t xTaskCreate(TaskFunction_t fn, const char *name, uint32_t stack_depth, void *arg,
                       UBaseType_t priority, TaskHandle_t *created);
void vTaskDelete(TaskHandle_t task);
void vTaskDelay(TickType_t ticks);
uint32_t ulTaskNotifyTake(BaseType_t clear_on_exit, TickType_t ticks_to_wait);
BaseType_t xTaskNotifyGive(TaskHandle_t task);

#endif
