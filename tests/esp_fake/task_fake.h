/*
 * task_fake.h - control of the host fake of FreeRTOS, esp_timer,
 * esp_random, esp_mac and esp_restart (tests/esp_fake), for tests that run
 * the real tcpota task code (esp-idf/components/tcpota/tcpota_esp.c) on the
 * host. xTaskCreate() records the task without running it;
 * esp_fake_task_run() runs it to its end on the test's thread. Every
 * notification is counted; every wait (vTaskDelay, ulTaskNotifyTake)
 * moves the fake clock and records its ticks.
 */
#ifndef ESP_FAKE_TASK_FAKE_H
#define ESP_FAKE_TASK_FAKE_H

#include <stddef.h>
#include <stdint.h>

struct esp_fake_tasks {
    unsigned created;        /* xTaskCreate calls */
    unsigned deleted;        /* vTaskDelete calls */
    unsigned notified;       /* xTaskNotifyGive calls */
    unsigned restarts;       /* esp_restart calls */
    uint32_t last_take_ticks; /* ticks_to_wait of the last ulTaskNotifyTake */
    int64_t now_us;          /* the fake clock */
    /* Called at every ulTaskNotifyTake (may be NULL): the test's chance to
     * act while the task waits. */
    void (*on_take)(uint32_t ticks);
    unsigned mac_fail;       /* bit 1 << esp_mac_type_t: esp_read_mac fails */
    unsigned zero_delays;    /* vTaskDelay(0) calls in a row: no time passes,
                              * as on FreeRTOS; a run of them is a busy spin,
                              * and the fake aborts at the thousandth */
};

extern struct esp_fake_tasks esp_fake_tasks;

/* Forgets every task and count; the clock starts at 0. */
void esp_fake_tasks_reset(void);

/* Runs the task xTaskCreate() recorded last (once); returns 0, or -1 when
 * there is none. */
int esp_fake_task_run(void);

#endif
