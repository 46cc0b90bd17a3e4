/* esp_task_test.h - the ESP-IDF task's configuration shared by its host
 * tests (test_tcpota_esp.c, test_tcpota_esp_tls.c): a device on loopback
 * with the runner's usual timings; each test changes what it is about. */
#ifndef TCPOTA_TEST_ESP_TASK_H
#define TCPOTA_TEST_ESP_TASK_H

#include <stdint.h>
#include <string.h>

#include "tcpota_esp.h"

static inline tcpota_esp_config_t esp_task_config(uint16_t port)
{
    tcpota_esp_config_t c;

    memset(&c, 0, sizeof(c));
    c.host = "127.0.0.1";
    c.port = port;
    c.device_id = "esp-test";
    c.model = "ota_client";
    c.ack_interval = 16384;
    c.backoff_min_ms = 200;
    c.backoff_max_ms = 5000;
    c.timeout_ms = 30000;
    c.check_interval_s = 3600;
    c.priority = 5;
    return c;
}

#endif
