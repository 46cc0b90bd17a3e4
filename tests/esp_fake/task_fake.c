/* task_fake.c - host fake of FreeRTOS tasks, esp_timer, esp_random,
 * esp_mac and esp_restart (see task_fake.h). */
#include "task_fake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_mac.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mbedtls/platform_util.h"

struct esp_fake_tasks esp_fake_tasks;
uint32_t esp_fake_tick_rate_hz = 100u;

static struct esp_fake_task {
    TaskFunction_t fn;
    void *arg;
} task;

void esp_fake_tasks_reset(void)
{
    memset(&esp_fake_tasks, 0, sizeof(esp_fake_tasks));
    memset(&task, 0, sizeof(task));
    esp_fake_tick_rate_hz = 100u;
}

int esp_fake_task_run(void)
{
    TaskFunction_t fn = task.fn;

    if (!fn) {
        return -1;
    }
    task.fn = NULL;
    fn(task.arg);
    return 0;
}

static void advance(TickType_t ticks)
{
    esp_fake_tasks.now_us += (int64_t)ticks * 1000000 / configTICK_RATE_HZ;
}

BaseType_t xTaskCreate(TaskFunction_t fn, const char *name, uint32_t stack_depth, void *arg,
                       UBaseType_t priority, TaskHandle_t *created)
{
    (void)name;
    (void)stack_depth;
    (void)priority;
    task.fn = fn;
    task.arg = arg;
    esp_fake_tasks.created++;
    if (created) {
        *created = &task;
    }
    return pdPASS;
}

void vTaskDelete(TaskHandle_t t)
{
    (void)t;
    esp_fake_tasks.deleted++;
}

void vTaskDelay(TickType_t ticks)
{
    if (ticks == 0 && ++esp_fake_tasks.zero_delays == 1000u) {
        fprintf(stderr, "esp_fake: vTaskDelay(0) 1000 times in a row: a busy spin\n");
        abort();
    }
    if (ticks) {
        esp_fake_tasks.zero_delays = 0;
    }
    advance(ticks);
}

uint32_t ulTaskNotifyTake(BaseType_t clear_on_exit, TickType_t ticks_to_wait)
{
    (void)clear_on_exit;
    esp_fake_tasks.last_take_ticks = ticks_to_wait;
    if (esp_fake_tasks.on_take) {
        esp_fake_tasks.on_take(ticks_to_wait);
    }
    advance(ticks_to_wait);
    return 0;
}

BaseType_t xTaskNotifyGive(TaskHandle_t t)
{
    (void)t;
    esp_fake_tasks.notified++;
    return pdPASS;
}

SemaphoreHandle_t xSemaphoreCreateMutexStatic(StaticSemaphore_t *buf)
{
    buf->held = 0;
    return buf;
}

BaseType_t xSemaphoreTake(SemaphoreHandle_t sem, TickType_t ticks)
{
    (void)ticks;
    if (sem->held) {
        return pdFAIL; /* the fake runs one thread: a second take is a bug */
    }
    sem->held = 1;
    return pdTRUE;
}

BaseType_t xSemaphoreGive(SemaphoreHandle_t sem)
{
    sem->held = 0;
    return pdTRUE;
}

int64_t esp_timer_get_time(void)
{
    return esp_fake_tasks.now_us;
}

uint32_t esp_random(void)
{
    return 0x12345678u;
}

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type)
{
    static const uint8_t fixed[6] = {0xa0, 0xb1, 0xc2, 0xd3, 0xe4, 0xf5};

    if (esp_fake_tasks.mac_fail & (1u << type)) {
        return ESP_FAIL; /* ESP_MAC_WIFI_STA on a chip without Wi-Fi */
    }
    memcpy(mac, fixed, sizeof(fixed));
    if (type == ESP_MAC_BASE) {
        mac[5] = 0xf0;
    }
    return ESP_OK;
}

void esp_restart(void)
{
    esp_fake_tasks.restarts++;
}

void mbedtls_platform_zeroize(void *buf, size_t len)
{
    volatile unsigned char *p = buf;

    while (len--) {
        *p++ = 0;
    }
}
