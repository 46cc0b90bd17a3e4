/*
 * tcpota_esp.h - tcpota on ESP-IDF as one FreeRTOS task.
 *
 * tcpota_esp_start() starts a task that boots the session (confirming or
 * reporting the last update), connects to `tcpota serve`, downloads and
 * verifies a new image into the next OTA partition, sets it to boot and
 * restarts the chip. Interrupted downloads resume after a cut or a reset
 * from the last checkpoint kept in NVS. A new image boots pending (with
 * CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE): the application runs its health
 * check and calls tcpota_esp_confirm() or tcpota_esp_reject(); until then
 * the task waits and downloads nothing. The outcome, and a rollback by the
 * bootloader, reach the server in the next connection's HELLO.
 *
 * The task never busy-waits: sockets are non-blocking and every wait is a
 * poll() with a timeout (at most 500 ms, so tcpota_esp_stop() is seen
 * quickly) or a task notification with a timeout. One wait is not the
 * task's own: the server's name is looked up with getaddrinfo(), which
 * blocks for as long as lwIP's resolver tries (seconds when no DNS server
 * answers); a stop asked meanwhile is seen when it returns. The transfer loop uses
 * only static buffers (CONFIG_TCPOTA_RX_BUFFER_SIZE + 2 KiB) and the task
 * stack; no heap.
 *
 * Periodic check-ins: once up to date (or after declining an offer), the
 * task asks again every check_interval_s, ±20 % so that a fleet spreads
 * out, or after the server's RETRY_AFTER when its NO_UPDATE carried one
 * (the shared runner's policy, ports/common/tcpota_runner.h).
 *
 * Signed images and device authentication (docs/esp-idf.md): the task
 * trusts the Ed25519 keys of CONFIG_TCPOTA_TRUSTED_KEYS (or the config's)
 * and answers the server's challenge with the secret provisioned in NVS.
 *
 * Call nvs_flash_init() and bring the network up (esp_netif, Wi-Fi or
 * Ethernet) before tcpota_esp_start().
 */
#ifndef TCPOTA_ESP_H
#define TCPOTA_ESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TCPOTA_ESP_STOPPED = 0,   /* no task */
    TCPOTA_ESP_WAIT_CONFIRM,  /* new image pending: waiting for the health check verdict */
    TCPOTA_ESP_CONNECTING,
    TCPOTA_ESP_CONNECTED,     /* HELLO sent, waiting for the server's answer */
    TCPOTA_ESP_RECEIVING,     /* writing an image: offset/size say how far */
    TCPOTA_ESP_BACKOFF,       /* the last attempt failed: waiting to reconnect */
    TCPOTA_ESP_UP_TO_DATE,    /* the server has nothing newer; rechecks later */
    TCPOTA_ESP_UPDATED,       /* new image verified and set to boot; kept once the task
                                 ends (restart_after_update false) until the restart,
                                 and a start before it downloads nothing */
    TCPOTA_ESP_FAILED,        /* gave up (an offer declined, a setup error) */
} tcpota_esp_state_t;

typedef struct {
    tcpota_esp_state_t state;
    uint32_t offset;      /* image bytes in flash (RECEIVING, UPDATED) */
    uint32_t size;        /* size of the image being received */
    int last_error;       /* enum tcpota_err of the last failed attempt, or 0 */
    uint32_t attempts;    /* connection attempts since the last progress */
    char version[33];     /* running version (from the app description) */
    char new_version[33]; /* version of the image being received */
} tcpota_esp_status_t;

/* Called from the tcpota task at every state change and every checkpoint
 * (at most once per ack interval while receiving). Keep it short: it runs
 * inside the transfer loop. */
typedef void (*tcpota_esp_progress_cb_t)(const tcpota_esp_status_t *status, void *arg);

typedef struct {
    const char *host;          /* server name or address */
    uint16_t port;
    const char *device_id;     /* NULL: "esp-" + the station MAC in hex (the base
                                * MAC on a chip without Wi-Fi; start fails with
                                * ESP_FAIL when neither can be read) */
    const char *model;         /* NULL: CONFIG_TCPOTA_MODEL, or the chip (IDF_TARGET) */
    uint32_t ack_interval;     /* bytes per checkpoint, multiple of 4096 */
    uint32_t backoff_min_ms;   /* first reconnect delay, >= 1 */
    uint32_t backoff_max_ms;   /* largest reconnect delay */
    uint32_t timeout_ms;       /* receive silence before reconnecting */
    uint32_t check_interval_s; /* up to date or declined: ask again after this ±20 %
                                  (or the server's RETRY_AFTER), at most 604800
                                  (a week); 0: end the task */
    bool restart_after_update; /* esp_restart() once the new image is set to boot; false:
                                  the task ends in state UPDATED, the application
                                  restarts (no check-in before) */
    uint32_t stack_size;
    unsigned priority;
    tcpota_esp_progress_cb_t progress_cb; /* may be NULL */
    void *progress_arg;
    /* Signed images: Ed25519 public keys (32 bytes each, at most
     * TCPOTA_ESP_MAX_KEYS = 4) an offer's manifest must be signed by.
     * NULL: the keys of CONFIG_TCPOTA_TRUSTED_KEYS; none there either:
     * unsigned images are accepted (with a warning in the log). Copied at
     * start. */
    const uint8_t (*trusted_keys)[32];
    size_t n_trusted_keys;
    /* Device authentication: the secret shared with the server (1..64
     * bytes, copied at start, never sent or logged). NULL: read from NVS
     * (namespace "tcpota", blob "tcpota.secret"); none there either:
     * authentication off. */
    const uint8_t *secret;
    size_t secret_len;
} tcpota_esp_config_t;

/* Defaults from menuconfig (Kconfig, "tcpota"). */
#define TCPOTA_ESP_CONFIG_DEFAULT()                                                          \
    {                                                                                        \
        .host = CONFIG_TCPOTA_SERVER_HOST, .port = CONFIG_TCPOTA_SERVER_PORT,                \
        .device_id = NULL, .model = NULL, .ack_interval = CONFIG_TCPOTA_ACK_INTERVAL,        \
        .backoff_min_ms = CONFIG_TCPOTA_BACKOFF_MIN_MS,                                      \
        .backoff_max_ms = CONFIG_TCPOTA_BACKOFF_MAX_MS, .timeout_ms = CONFIG_TCPOTA_TIMEOUT_MS, \
        .check_interval_s = CONFIG_TCPOTA_CHECK_INTERVAL_S, .restart_after_update = true,      \
        .stack_size = CONFIG_TCPOTA_TASK_STACK_SIZE, .priority = CONFIG_TCPOTA_TASK_PRIORITY, \
        .progress_cb = NULL, .progress_arg = NULL, .trusted_keys = NULL, .n_trusted_keys = 0,  \
        .secret = NULL, .secret_len = 0,                                                     \
    }

/* Starts the tcpota task with a copy of *cfg (strings must outlive the
 * task; keys and secret are copied). Returns ESP_OK, ESP_ERR_INVALID_STATE
 * when it runs already, ESP_ERR_INVALID_ARG for a bad config (including a
 * malformed CONFIG_TCPOTA_TRUSTED_KEYS, too many keys, a secret longer
 * than 64 bytes, a backoff_min_ms of 0, which would retry a failing server
 * without pause, a backoff_min_ms above backoff_max_ms, an ack_interval
 * that is no multiple of 4096, a device_id over 64 or a model over 32
 * characters (never cut short: a cut id is another device's), or a
 * check_interval_s over a week; each logged, naming the value),
 * ESP_ERR_NOT_SUPPORTED for trusted keys with
 * CONFIG_TCPOTA_SIGNED_IMAGES off, ESP_ERR_NO_MEM when the task cannot be
 * created, or the port's setup error (NVS, partition table). A secret in
 * NVS that cannot be used (too long, empty) is logged and authentication
 * stays off. */
esp_err_t tcpota_esp_start(const tcpota_esp_config_t *cfg);

/* Asks the task to end (it closes its connection; the download resumes at
 * the next start) and waits up to 2 s for it. Returns ESP_OK, or
 * ESP_ERR_TIMEOUT when the task has not ended yet (a name lookup holds it:
 * see above); it ends on its own once the lookup returns, and
 * tcpota_esp_start() answers ESP_ERR_INVALID_STATE until then: call
 * tcpota_esp_stop() again before starting. */
esp_err_t tcpota_esp_stop(void);

/* Copies the current status (safe from any task). */
void tcpota_esp_status(tcpota_esp_status_t *out);

/* The health check passed: confirms a pending new image
 * (esp_ota_mark_app_valid_cancel_rollback) and keeps a CONFIRMED report
 * for the server; lets a waiting task go on. When nothing is pending it
 * does nothing (no report, no wake-up of the task, whose check-in wait
 * goes on), so it may be called at every boot. Returns ESP_OK or an error
 * of NVS/OTA. */
esp_err_t tcpota_esp_confirm(void);

/* The health check failed: keeps a ROLLED_BACK report and rolls back
 * (esp_ota_mark_app_invalid_rollback_and_reboot: does not return on
 * success). Returns an error when nothing is pending or rollback fails. */
esp_err_t tcpota_esp_reject(void);

/* Milliseconds to FreeRTOS ticks at tick_rate_hz (configTICK_RATE_HZ),
 * rounded up, computed in 64 bits and capped below portMAX_DELAY (which
 * means "forever"). pdMS_TO_TICKS() multiplies in 32 bits: a 7200 s wait
 * at 1 kHz came out as 2905 s, 86400 s at 100 Hz as 501 s. The task's
 * waits use this. */
uint32_t tcpota_esp_ms_to_ticks(uint32_t ms, uint32_t tick_rate_hz);

#ifdef __cplusplus
}
#endif

#endif /* TCPOTA_ESP_H */
