/* main.c - tcpota example: join Wi-Fi, confirm (or reject) a freshly
 * updated image after a health check, then let the tcpota task update the
 * device from `tcpota serve`, logging progress. */
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "nvs_flash.h"
#include "sdkconfig.h"
#include "tcpota_esp.h"

static const char *TAG = "ota_client";

#define GOT_IP BIT0
static EventGroupHandle_t s_net;

static void on_net_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        xEventGroupClearBits(s_net, GOT_IP);
        esp_wifi_connect(); /* and again after every drop */
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        xEventGroupSetBits(s_net, GOT_IP);
    }
}

static void wifi_start(void)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t sta = {0};

    s_net = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_net_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_net_event, NULL));
    strncpy((char *)sta.sta.ssid, CONFIG_EXAMPLE_WIFI_SSID, sizeof(sta.sta.ssid));
    strncpy((char *)sta.sta.password, CONFIG_EXAMPLE_WIFI_PASSWORD, sizeof(sta.sta.password));
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &sta));
    ESP_ERROR_CHECK(esp_wifi_start());
}

/* What "healthy" means is the application's call: here, the network came
 * up within 30 s (an image that breaks Wi-Fi is rolled back). */
static bool health_check(void)
{
    EventBits_t bits = xEventGroupWaitBits(s_net, GOT_IP, pdFALSE, pdTRUE, pdMS_TO_TICKS(30000));

#if CONFIG_EXAMPLE_HEALTH_CHECK_FAIL
    (void)bits;
    return false;
#else
    return (bits & GOT_IP) != 0;
#endif
}

static void on_progress(const tcpota_esp_status_t *st, void *arg)
{
    static const char *names[] = {"stopped",   "waiting for health check", "connecting",
                                  "connected", "receiving",                "backing off",
                                  "up to date", "updated",                 "failed"};
    (void)arg;
    if (st->state == TCPOTA_ESP_RECEIVING && st->size) {
        ESP_LOGI(TAG, "%s: %lu of %lu bytes (%lu%%)", st->new_version, (unsigned long)st->offset,
                 (unsigned long)st->size, (unsigned long)((uint64_t)st->offset * 100 / st->size));
    } else {
        ESP_LOGI(TAG, "%s (running %s)", names[st->state], st->version);
    }
}

void app_main(void)
{
    tcpota_esp_config_t cfg = TCPOTA_ESP_CONFIG_DEFAULT();
    esp_err_t err = nvs_flash_init();

    /* The default "nvs" partition holds Wi-Fi and PHY data only: erasing it
     * to get past these errors costs a re-association. tcpota's records
     * (anti-rollback counter, failed image, device secret) are in their own
     * partition (CONFIG_TCPOTA_NVS_PARTITION), which the component
     * initialises itself and never erases. Were they configured into "nvs",
     * erasing would wipe them: then stop instead. */
    if ((err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) &&
        strcmp(CONFIG_TCPOTA_NVS_PARTITION, NVS_DEFAULT_PART_NAME) != 0) {
        ESP_LOGW(TAG, "nvs: %s: erasing the default partition (tcpota's records are in \"%s\")",
                 esp_err_to_name(err), CONFIG_TCPOTA_NVS_PARTITION);
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    wifi_start();

    cfg.progress_cb = on_progress;
    ESP_ERROR_CHECK(tcpota_esp_start(&cfg)); /* waits by itself while the image is pending */

    if (health_check()) {
        ESP_ERROR_CHECK(tcpota_esp_confirm()); /* no-op unless this image is new */
    } else {
        ESP_LOGE(TAG, "health check failed: rolling back");
        tcpota_esp_reject(); /* reboots into the previous image if this one is new */
    }
}
