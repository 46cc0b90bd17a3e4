/* tcpota_esp.c - the tcpota FreeRTOS task (see tcpota_esp.h). */
#include "tcpota_esp.h"

#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "mbedtls/platform_util.h"
#include "sdkconfig.h"
#include "tcpota/device.h"
#include "tcpota_client.h"
#include "tcpota_runner.h"
#include "tcpota_esp_port.h"
#include "tcpota_esp_trust.h"
#ifdef CONFIG_TCPOTA_TLS
#include "tcpota_esp_tls.h"
#endif

static const char *TAG = "tcpota";

/* A model is never cut short (a signed image's must match it whole): one
 * too long stops the build, naming the option. */
_Static_assert(sizeof(CONFIG_TCPOTA_MODEL) - 1 <= TCPOTA_MAX_NAME,
               "CONFIG_TCPOTA_MODEL is longer than 32 characters: shorten it in menuconfig");

#define TX_CAP 512u
#define NET_CAP 1536u      /* one recv(): a TCP segment and some */
#define POLL_MAX_MS 500u   /* longest wait before a stop request is seen */
#define STOP_WAIT_MS 2000u

/* Everything the task needs lives here, not on the heap. */
static struct {
    tcpota_esp_config_t cfg;
    tcpota_esp_port_t ep;
    struct tcpota_port port;
    bool port_ready;
    struct tcpota_dev dev;
    struct tcpota_client cl;
    struct tcpota_runner runner; /* reconnect policy, shared with the host device */
    uint32_t declined_size;      /* size of the last offer declined */
    /* An image was set to boot since this boot, and the chip did not
     * restart (restart_after_update false): the next update partition is
     * that image's, so nothing is downloaded before the restart. RAM only:
     * a reset runs the image (or rolls it back) and clears it. */
    bool set_to_boot;
    uint8_t rx[CONFIG_TCPOTA_RX_BUFFER_SIZE];
    uint8_t tx[TX_CAP];
    uint8_t net[NET_CAP];
    char err[128];
    uint8_t running_id[TCPOTA_ID_LEN];
    char id[TCPOTA_MAX_STR + 1];     /* the whole id: one cut short is another device's */
    char model[TCPOTA_MAX_NAME + 1];
    char version[TCPOTA_MAX_NAME + 1];
    uint8_t keys[TCPOTA_ESP_MAX_KEYS][TCPOTA_PUBKEY_LEN];
    size_t nkeys;
    uint8_t secret[TCPOTA_ESP_SECRET_MAX];
    size_t secret_len;
    TaskHandle_t task;
    volatile bool stop;
    tcpota_esp_status_t status;
#ifdef CONFIG_TCPOTA_TLS
    /* Trust anchors and the kept TLS session per start, an SSL context per connection. */
    tcpota_esp_tls_t tls;
#endif
} s;

/* What the session receives, through the core's accessor. */
static struct tcpota_dev_transfer dev_xfer(void)
{
    struct tcpota_dev_transfer t;
    tcpota_dev_get_transfer(&s.dev, &t);
    return t;
}

static portMUX_TYPE s_mux = portMUX_INITIALIZER_UNLOCKED;
static StaticSemaphore_t s_lock_buf;
static SemaphoreHandle_t s_lock; /* the port outside the task's loop */

/* ---- status ---------------------------------------------------------- */

static void status_set(tcpota_esp_state_t st, int err, bool notify)
{
    tcpota_esp_status_t copy;

    portENTER_CRITICAL(&s_mux);
    s.status.state = st;
    if (err) {
        s.status.last_error = err;
    }
    copy = s.status;
    portEXIT_CRITICAL(&s_mux);
    if (notify && s.cfg.progress_cb) {
        s.cfg.progress_cb(&copy, s.cfg.progress_arg);
    }
}

static void status_progress(uint32_t offset, uint32_t size)
{
    portENTER_CRITICAL(&s_mux);
    s.status.offset = offset;
    s.status.size = size;
    portEXIT_CRITICAL(&s_mux);
}

void tcpota_esp_status(tcpota_esp_status_t *out)
{
    portENTER_CRITICAL(&s_mux);
    *out = s.status;
    portEXIT_CRITICAL(&s_mux);
}

/* ---- the port, shared with confirm/reject ----------------------------- */

static void lock_init(void)
{
    portENTER_CRITICAL(&s_mux);
    if (!s_lock) {
        s_lock = xSemaphoreCreateMutexStatic(&s_lock_buf);
    }
    portEXIT_CRITICAL(&s_mux);
}

/* Opens the port once; call with s_lock held. */
static esp_err_t port_ready(void)
{
    esp_err_t err;

    if (s.port_ready) {
        return ESP_OK;
    }
    err = tcpota_esp_port_init(&s.ep, &s.port);
    s.port_ready = err == ESP_OK;
    return err;
}

static bool image_pending(void)
{
    struct tcpota_boot_state st = {0};

    return s.port.boot_state(s.port.ctx, &st) == 0 && st.pending;
}

/* Runs the core's boot decision under the lock: from the task at start
 * (from_app false), or for the application's verdict, which applies only
 * to a pending image and then wakes a task waiting for it. Nothing
 * pending: no decision and no wake-up, so that a confirm does not cut the
 * task's check-in wait short. */
static esp_err_t boot_decision(int healthy, bool from_app)
{
    esp_err_t err;
    bool decided = false;
    int rc = 0;

    lock_init();
    xSemaphoreTake(s_lock, portMAX_DELAY);
    err = port_ready();
    if (err == ESP_OK && (!from_app || image_pending())) {
        rc = tcpota_dev_boot(&s.port, healthy);
        err = rc < 0 ? (s.ep.last_err ? s.ep.last_err : ESP_FAIL) : ESP_OK;
        decided = true;
    } else if (err == ESP_OK && !healthy) {
        err = ESP_ERR_INVALID_STATE; /* nothing pending to reject */
    }
    if (from_app && decided && err == ESP_OK && s.task) {
        xTaskNotifyGive(s.task); /* under s_lock: the task is alive (task_main's end) */
    }
    xSemaphoreGive(s_lock);
    return err;
}

esp_err_t tcpota_esp_confirm(void)
{
    return boot_decision(1, true);
}

esp_err_t tcpota_esp_reject(void)
{
    esp_err_t err = boot_decision(0, true);

    /* Only reached when the rollback did not reboot. */
    return err == ESP_OK ? ESP_FAIL : err;
}

/* ---- the shared socket loop's callbacks ------------------------------ */

static uint32_t now_ms(void *ctx)
{
    (void)ctx;
    return (uint32_t)(esp_timer_get_time() / 1000);
}

static int stop_requested(void *ctx)
{
    (void)ctx;
    return s.stop;
}

static int on_input(void *ctx, int rc, const struct tcpota_dev_event *ev)
{
    (void)ctx;
    tcpota_runner_note(&s.runner, rc, ev);
    if (rc < 0) {
        return 0;
    }
    switch (ev->type) {
    case TCPOTA_DEV_EV_ACCEPTED:
        portENTER_CRITICAL(&s_mux);
        {
            struct tcpota_dev_transfer t;
            tcpota_dev_get_transfer(&s.dev, &t);
            snprintf(s.status.new_version, sizeof(s.status.new_version), "%s", t.version);
        }
        s.status.new_version[sizeof(s.status.new_version) - 1] = 0;
        portEXIT_CRITICAL(&s_mux);
        status_progress(ev->offset, ev->size);
        ESP_LOGI(TAG, "offer %s (%lu bytes), starting at %lu", s.status.new_version,
                 (unsigned long)ev->size, (unsigned long)ev->offset);
        status_set(TCPOTA_ESP_RECEIVING, 0, true);
        break;
    case TCPOTA_DEV_EV_PROGRESS:
        status_progress(ev->offset, ev->size);
        break;
    case TCPOTA_DEV_EV_CHECKPOINT:
        status_progress(ev->offset, dev_xfer().size);
        status_set(TCPOTA_ESP_RECEIVING, 0, true);
        break;
    case TCPOTA_DEV_EV_UPDATED:
        status_progress(ev->offset, ev->size);
        break;
    case TCPOTA_DEV_EV_DECLINED:
        s.declined_size = ev->size;
        break;
    default:
        break;
    }
    return 0;
}

/* ---- the task -------------------------------------------------------- */

uint32_t tcpota_esp_ms_to_ticks(uint32_t ms, uint32_t tick_rate_hz)
{
    uint64_t t = ((uint64_t)ms * tick_rate_hz + 999u) / 1000u;

    return t < (uint64_t)portMAX_DELAY ? (uint32_t)t : (uint32_t)portMAX_DELAY - 1u;
}

/* Blocks up to ms (no busy wait); returns early on stop or confirm. */
static void nap(uint32_t ms)
{
    (void)ulTaskNotifyTake(pdTRUE, (TickType_t)tcpota_esp_ms_to_ticks(ms, configTICK_RATE_HZ));
}

/* ---- TLS (CONFIG_TCPOTA_TLS, tls_esp.c) ------------------------------ */

#ifdef CONFIG_TCPOTA_TLS
/* The runner's connect hook: TCP, the handshake, then the channel binding
 * handed to the session before HELLO. */
static int tls_connect(void *ctx)
{
    int rc = tcpota_client_connect(&s.cl, s.cfg.host, s.cfg.port, s.cfg.host);

    (void)ctx;
    if (rc == 0 && (rc = tcpota_esp_tls_handshake(&s.tls, &s.cl, s.err, sizeof(s.err))) == 0) {
        rc = tcpota_esp_tls_bind(&s.tls, &s.dev, s.err, sizeof(s.err));
    }
    return rc;
}

static void tls_close(void *ctx, uint32_t linger_ms)
{
    (void)ctx;
    tcpota_esp_tls_end(&s.tls);
    tcpota_client_close(&s.cl, linger_ms);
}

static long tls_recv(void *ctx, void *buf, size_t n)
{
    (void)ctx;
    return tcpota_esp_tls_recv(&s.tls, buf, n);
}

static long tls_send(void *ctx, const void *buf, size_t n)
{
    (void)ctx;
    return tcpota_esp_tls_send(&s.tls, buf, n);
}

static size_t tls_pending(void *ctx)
{
    (void)ctx;
    return tcpota_esp_tls_pending(&s.tls);
}

/* Checks the TLS options and loads the CA once per start. */
static esp_err_t tls_start(const tcpota_esp_config_t *cfg)
{
    tcpota_esp_tls_config_t tc;
    int rc;

    tcpota_esp_tls_kconfig(&tc);
    if ((rc = tcpota_esp_tls_init(&s.tls, &tc, cfg->host, s.err, sizeof(s.err))) < 0) {
        ESP_LOGE(TAG, "%s", s.err);
        tcpota_esp_tls_free(&s.tls);
        return rc == TCPOTA_ERR_NOSPC ? ESP_ERR_NO_MEM : ESP_ERR_INVALID_ARG;
    }
    ESP_LOGI(TAG, "TLS: verifying the server as \"%s\" against %s", s.tls.host,
             tc.ca == TCPOTA_ESP_TLS_CA_BUNDLE ? "the certificate bundle" : "the embedded CA");
    return ESP_OK;
}

static void tls_wire(struct tcpota_client_config *cc, struct tcpota_runner_config *rc)
{
    if (cc) {
        cc->io_recv = tls_recv;
        cc->io_send = tls_send;
        cc->io_pending = tls_pending;
    }
    if (rc) {
        rc->connect = tls_connect;
        rc->close = tls_close;
    }
}

static void tls_stop(void)
{
    tcpota_esp_tls_free(&s.tls);
}
#else
static esp_err_t tls_start(const tcpota_esp_config_t *cfg)
{
    (void)cfg;
    return ESP_OK;
}

static void tls_wire(struct tcpota_client_config *cc, struct tcpota_runner_config *rc)
{
    (void)cc;
    (void)rc;
}

static void tls_stop(void)
{
}
#endif

/* ---- the runner's callbacks (ports/common/tcpota_runner.h) ----------- */

static int runner_sleep(void *ctx, uint32_t ms)
{
    (void)ctx;
    nap(ms);
    return s.stop ? TCPOTA_ERR_CANCELED : 0;
}

static uint32_t runner_random(void *ctx, uint32_t bound)
{
    (void)ctx;
    return esp_random() % bound;
}

static void runner_step(void *ctx, const struct tcpota_runner_step *st)
{
    (void)ctx;
    portENTER_CRITICAL(&s_mux);
    s.status.attempts = st->attempts;
    portEXIT_CRITICAL(&s_mux);
    switch (st->type) {
    case TCPOTA_RUNNER_CONNECTING:
        status_set(TCPOTA_ESP_CONNECTING, 0, true);
        break;
    case TCPOTA_RUNNER_CONNECTED:
        status_set(TCPOTA_ESP_CONNECTED, 0, false);
        break;
    case TCPOTA_RUNNER_BACKOFF:
        if (st->retry_after_s) {
            ESP_LOGW(TAG, "%s; retrying in %lu s (the server asked for %lu s)",
                     st->why[0] ? st->why : "connection ended",
                     (unsigned long)((st->wait_ms + 999u) / 1000u), (unsigned long)st->retry_after_s);
        } else {
            ESP_LOGW(TAG, "%s%s; retrying in %lu ms", st->unreachable ? "cannot reach the server: " : "",
                     st->why[0] ? st->why : "connection ended", (unsigned long)st->wait_ms);
        }
        status_set(TCPOTA_ESP_BACKOFF, dev_xfer().last_error ? dev_xfer().last_error : TCPOTA_ERR_IO, true);
        break;
    case TCPOTA_RUNNER_CHECK_IN:
        if (st->retry_after_s) {
            ESP_LOGI(TAG, "next check-in in %lu s (the server's RETRY_AFTER %lu s)",
                     (unsigned long)(st->wait_ms / 1000u), (unsigned long)st->retry_after_s);
        } else {
            ESP_LOGI(TAG, "next check-in in %lu s", (unsigned long)(st->wait_ms / 1000u));
        }
        break;
    case TCPOTA_RUNNER_UNCHALLENGED:
        ESP_LOGW(TAG, "the server did not ask this device to authenticate: it holds no secret for "
                      "this device id, so the device's secret was not checked and anyone can use "
                      "the id there; give the server this device's secret (its --auth-file, or in "
                      "fleet mode provision the one tcpota device secret ID makes)");
        break;
    }
}

static int runner_init(void)
{
    struct tcpota_runner_config rc;

    memset(&rc, 0, sizeof(rc));
    rc.dev = &s.dev;
    rc.backoff_min_ms = s.cfg.backoff_min_ms;
    rc.backoff_max_ms = s.cfg.backoff_max_ms;
    rc.failure_max_ms = s.cfg.backoff_max_ms > TCPOTA_RUNNER_FAILURE_MAX_MS
                            ? s.cfg.backoff_max_ms
                            : TCPOTA_RUNNER_FAILURE_MAX_MS;
    rc.max_attempts = 0; /* a device never gives up; it slows down instead */
    rc.check_interval_s = s.cfg.check_interval_s;
    rc.err = s.err;
    rc.err_cap = sizeof(s.err);
    rc.client = &s.cl; /* its own connect, run and close */
    rc.host = s.cfg.host;
    rc.port = s.cfg.port;
    rc.sleep = runner_sleep; /* a task notification: confirm or stop wakes it */
    rc.random = runner_random;
    rc.on_step = runner_step;
    tls_wire(NULL, &rc); /* with TLS: connect and close through it */
    return tcpota_runner_init(&s.runner, &rc);
}

static int session_init(void)
{
    struct tcpota_dev_config dc;
    struct tcpota_dev_transfer t;
    struct tcpota_client_config cc;
    int rc;

    memset(&dc, 0, sizeof(dc));
    dc.port = &s.port;
    dc.device_id = s.id;
    dc.model = s.model;
    dc.version = s.version;
    dc.running_id = tcpota_esp_running_id(&s.ep, s.running_id) == 0 ? s.running_id : NULL;
    dc.rx_buf = s.rx;
    dc.rx_cap = sizeof(s.rx);
    dc.tx_buf = s.tx;
    dc.tx_cap = sizeof(s.tx);
    dc.ack_interval = s.cfg.ack_interval;
    dc.keepalive_ms = s.cfg.timeout_ms / 3 ? s.cfg.timeout_ms / 3 : 1;
    dc.timeout_ms = s.cfg.timeout_ms;
    dc.trusted_keys = s.nkeys ? (const uint8_t(*)[TCPOTA_PUBKEY_LEN])s.keys : NULL;
    dc.n_trusted_keys = s.nkeys;
    dc.secret = s.secret_len ? s.secret : NULL;
    dc.secret_len = s.secret_len;
    if ((rc = tcpota_dev_init(&s.dev, &dc)) < 0) {
        return rc;
    }
    tcpota_dev_get_transfer(&s.dev, &t);
    if (t.resume.valid) {
        ESP_LOGI(TAG, "resume point: %lu of %lu bytes", (unsigned long)t.resume.offset,
                 (unsigned long)t.resume.size);
    }
    memset(&cc, 0, sizeof(cc));
    cc.dev = &s.dev;
    cc.net_buf = s.net;
    cc.net_cap = sizeof(s.net);
    cc.poll_max_ms = POLL_MAX_MS;
    cc.wake_fd = -1;
    cc.err = s.err;
    cc.err_cap = sizeof(s.err);
    cc.now_ms = now_ms;
    cc.stop_requested = stop_requested;
    cc.on_input = on_input;
    tls_wire(&cc, NULL); /* with TLS: records through the io hooks */
    if ((rc = tcpota_client_init(&s.cl, &cc)) < 0) {
        return rc;
    }
    return runner_init();
}

static void log_declined(void)
{
    if (dev_xfer().last_error == TCPOTA_ERR_NOSPC) {
        ESP_LOGW(TAG, "declined the offer: the image (%lu bytes) is larger than the slot (%lu bytes)",
                 (unsigned long)s.declined_size, (unsigned long)s.port.slot_size);
    } else {
        ESP_LOGW(TAG, "declined the offer: %s", tcpota_strerror(dev_xfer().last_error));
    }
}

/* Runs the shared runner until stopped, updated (restart) or told to end;
 * checks in again every check_interval_s (the runner's policy). */
static void run(void)
{
    while (!s.stop) {
        switch (tcpota_runner_run(&s.runner)) {
        case TCPOTA_RUNNER_UPDATED:
            ESP_LOGI(TAG, "image %s verified and set to boot", s.status.new_version);
            s.set_to_boot = true;
            status_set(TCPOTA_ESP_UPDATED, 0, true);
            if (s.cfg.restart_after_update) {
                esp_restart();
            }
            return;
        case TCPOTA_RUNNER_UP_TO_DATE:
            /* The server's reason (codec.h, enum tcpota_why): "up to date"
             * only when it says so or gives none. */
            if (s.runner.why && s.runner.why != TCPOTA_WHY_RUNS) {
                ESP_LOGW(TAG, "no update, running %s: %s", s.version,
                         tcpota_why_str(s.runner.why));
            } else {
                ESP_LOGI(TAG, "up to date, running %s", s.version);
            }
            status_set(TCPOTA_ESP_UP_TO_DATE, 0, true);
            break;
        case TCPOTA_RUNNER_DECLINED:
            log_declined();
            status_set(TCPOTA_ESP_FAILED, dev_xfer().last_error, true);
            break;
        default: /* stopped (the runner never gives up here) */
            return;
        }
        if (!s.cfg.check_interval_s || tcpota_runner_check_in(&s.runner) < 0) {
            return;
        }
    }
}

static void task_main(void *arg)
{
    int rc;

    (void)arg;
    /* A pending image downloads nothing before the health check verdict:
     * its partner slot is the rollback target. */
    xSemaphoreTake(s_lock, portMAX_DELAY);
    bool pending = image_pending();
    xSemaphoreGive(s_lock);
    if (pending) {
        ESP_LOGI(TAG, "new image pending: waiting for tcpota_esp_confirm()");
        status_set(TCPOTA_ESP_WAIT_CONFIRM, 0, true);
        while (!s.stop) {
            nap(POLL_MAX_MS);
            xSemaphoreTake(s_lock, portMAX_DELAY);
            pending = image_pending();
            xSemaphoreGive(s_lock);
            if (!pending) {
                break;
            }
        }
    }
    if (!s.stop && boot_decision(1, false) != ESP_OK) { /* the task's own, at start */
        ESP_LOGE(TAG, "boot check failed: %s", esp_err_to_name(s.ep.last_err));
    }
    if (!s.stop && s.set_to_boot) {
        /* Another download would go into the slot set to boot, erasing
         * the verified image (the server offers it again: the running id
         * is still the old image's). */
        ESP_LOGW(TAG, "a new image is set to boot: restart to run it; nothing is downloaded "
                      "before that");
        status_set(TCPOTA_ESP_UPDATED, 0, true);
    } else if (!s.stop && (rc = session_init()) < 0) {
        ESP_LOGE(TAG, "cannot start the session: %s", tcpota_strerror(rc));
        status_set(TCPOTA_ESP_FAILED, rc, true);
    } else if (!s.stop) {
        run();
    }
    /* UPDATED stays (restart_after_update false): the application reads
     * that an image waits for its restart. */
    if (s.status.state != TCPOTA_ESP_FAILED && s.status.state != TCPOTA_ESP_UPDATED) {
        status_set(TCPOTA_ESP_STOPPED, 0, true);
    }
    mbedtls_platform_zeroize(s.secret, sizeof(s.secret)); /* reloaded at the next start */
    s.secret_len = 0;
    tls_stop();
    /* Under s_lock: a stop or a confirm that notifies the task holds it,
     * so it never notifies a task that has deleted itself (a review). */
    xSemaphoreTake(s_lock, portMAX_DELAY);
    portENTER_CRITICAL(&s_mux);
    s.task = NULL;
    portEXIT_CRITICAL(&s_mux);
    xSemaphoreGive(s_lock);
    vTaskDelete(NULL);
}

/* The default id, esp-<MAC>: the Wi-Fi station's (the base MAC on the chips
 * that have Wi-Fi), else the base MAC (a chip without Wi-Fi, where
 * ESP_MAC_WIFI_STA is an error). ESP_FAIL when neither can be read: every
 * such device would be esp-000000000000, one device to the server. */
static esp_err_t mac_id(void)
{
    uint8_t mac[6] = {0};
    esp_err_t err = esp_read_mac(mac, ESP_MAC_WIFI_STA);

    if (err != ESP_OK) {
        err = esp_read_mac(mac, ESP_MAC_BASE);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "cannot read the chip's MAC for the device id (%s): give device_id",
                 esp_err_to_name(err));
        return ESP_FAIL;
    }
    snprintf(s.id, sizeof(s.id), "esp-%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);
    return ESP_OK;
}

static esp_err_t make_ids(void)
{
    const esp_app_desc_t *app = esp_app_get_description();

    if (s.cfg.device_id) {
        snprintf(s.id, sizeof(s.id), "%s", s.cfg.device_id);
    } else if (mac_id() != ESP_OK) {
        return ESP_FAIL;
    }
    if (s.cfg.model) {
        snprintf(s.model, sizeof(s.model), "%s", s.cfg.model);
    } else if (CONFIG_TCPOTA_MODEL[0]) {
        snprintf(s.model, sizeof(s.model), "%s", CONFIG_TCPOTA_MODEL);
    } else {
        /* Emptied in menuconfig: the chip, as the Kconfig default and the
         * host device's "esp32" say, never the project's name (a signed
         * image's model would not match it). */
        snprintf(s.model, sizeof(s.model), "%.32s", CONFIG_IDF_TARGET);
    }
    snprintf(s.version, sizeof(s.version), "%.32s", app->version);
    memcpy(s.status.version, s.version, sizeof(s.status.version));
    return ESP_OK;
}

/* The keys an offer must be signed by: the application's, else menuconfig's. */
static esp_err_t trust_keys(const tcpota_esp_config_t *cfg)
{
    s.nkeys = 0;
    if (cfg->trusted_keys || cfg->n_trusted_keys) {
        if (!cfg->trusted_keys || !cfg->n_trusted_keys ||
            cfg->n_trusted_keys > TCPOTA_ESP_MAX_KEYS) {
            return ESP_ERR_INVALID_ARG;
        }
        memcpy(s.keys, cfg->trusted_keys, cfg->n_trusted_keys * TCPOTA_PUBKEY_LEN);
        s.nkeys = cfg->n_trusted_keys;
    } else {
#ifdef CONFIG_TCPOTA_SIGNED_IMAGES
        size_t bad = 0;
        int n = tcpota_esp_parse_keys(CONFIG_TCPOTA_TRUSTED_KEYS, s.keys, TCPOTA_ESP_MAX_KEYS,
                                      &bad);
        if (n < 0) {
            ESP_LOGE(TAG, "CONFIG_TCPOTA_TRUSTED_KEYS: key %u %s", (unsigned)bad + 1,
                     n == TCPOTA_ERR_NOSPC ? "is one too many" : "is not 64 hex digits");
            return ESP_ERR_INVALID_ARG;
        }
        s.nkeys = (size_t)n;
#endif
    }
#ifndef CONFIG_TCPOTA_SIGNED_IMAGES
    if (s.nkeys) {
        ESP_LOGE(TAG, "trusted keys given, but CONFIG_TCPOTA_SIGNED_IMAGES is off");
        s.nkeys = 0;
        return ESP_ERR_NOT_SUPPORTED;
    }
#endif
    if (s.nkeys) {
        ESP_LOGI(TAG, "signed images only: %u trusted key(s)", (unsigned)s.nkeys);
    } else {
        ESP_LOGW(TAG, "no trusted key: UNSIGNED images are accepted "
                      "(set CONFIG_TCPOTA_TRUSTED_KEYS)");
    }
    return ESP_OK;
}

/* The secret for authentication: the application's, else the one in NVS.
 * Call with s_lock held (the port's NVS handle). */
static esp_err_t trust_secret(const tcpota_esp_config_t *cfg)
{
    int n;

    mbedtls_platform_zeroize(s.secret, sizeof(s.secret));
    s.secret_len = 0;
    if (cfg->secret || cfg->secret_len) {
        if (!cfg->secret || !cfg->secret_len || cfg->secret_len > sizeof(s.secret)) {
            return ESP_ERR_INVALID_ARG;
        }
        memcpy(s.secret, cfg->secret, cfg->secret_len);
        s.secret_len = cfg->secret_len;
        return ESP_OK;
    }
    n = tcpota_esp_load_secret(&s.ep, s.secret, sizeof(s.secret));
    if (n > 0) {
        s.secret_len = (size_t)n;
        ESP_LOGI(TAG, "device secret from NVS: authentication on");
    } else if (n == 0) {
        ESP_LOGI(TAG, "no device secret in NVS (" TCPOTA_ESP_NVS_NAMESPACE "/" TCPOTA_ESP_KEY_SECRET
                      "): authentication off");
    } else {
        ESP_LOGE(TAG, "device secret in NVS unusable (%s): authentication off",
                 tcpota_strerror(n));
    }
    return ESP_OK;
}

/* 1 when s is 1..max printable ASCII characters (as the host device takes
 * an id and a model), else 0. */
static int printable_name(const char *name, size_t max)
{
    return tcpota_printable(name, strlen(name), 1, max);
}

/* Why cfg cannot start (logged, each value named as menuconfig names it),
 * or ESP_OK. A refusal without a word left a product that ESP_ERROR_CHECKs
 * the start in a reboot loop nobody could explain. */
static esp_err_t config_check(const tcpota_esp_config_t *cfg)
{
    if (!cfg) {
        ESP_LOGE(TAG, "tcpota_esp_start: no config");
        return ESP_ERR_INVALID_ARG;
    }
    if (!cfg->host || !cfg->host[0] || !cfg->port) {
        ESP_LOGE(TAG, "no server: host and port are required (CONFIG_TCPOTA_SERVER_HOST, "
                      "CONFIG_TCPOTA_SERVER_PORT)");
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->ack_interval % TCPOTA_SECTOR_SIZE) {
        ESP_LOGE(TAG, "ack_interval %lu is not a multiple of %u, the flash sector "
                      "(CONFIG_TCPOTA_ACK_INTERVAL)",
                 (unsigned long)cfg->ack_interval, (unsigned)TCPOTA_SECTOR_SIZE);
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->backoff_min_ms > cfg->backoff_max_ms) {
        ESP_LOGE(TAG, "backoff_min_ms %lu is above backoff_max_ms %lu "
                      "(CONFIG_TCPOTA_BACKOFF_MIN_MS, CONFIG_TCPOTA_BACKOFF_MAX_MS)",
                 (unsigned long)cfg->backoff_min_ms, (unsigned long)cfg->backoff_max_ms);
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->timeout_ms < 100) {
        ESP_LOGE(TAG, "timeout_ms %lu is below 100 (CONFIG_TCPOTA_TIMEOUT_MS)",
                 (unsigned long)cfg->timeout_ms);
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->device_id && !printable_name(cfg->device_id, TCPOTA_MAX_STR)) {
        ESP_LOGE(TAG, "device_id must be 1..%u printable ASCII characters (%u given)",
                 (unsigned)TCPOTA_MAX_STR, (unsigned)strlen(cfg->device_id));
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->model && !printable_name(cfg->model, TCPOTA_MAX_NAME)) {
        ESP_LOGE(TAG, "model must be 1..%u printable ASCII characters (%u given)",
                 (unsigned)TCPOTA_MAX_NAME, (unsigned)strlen(cfg->model));
        return ESP_ERR_INVALID_ARG;
    }
    if (!cfg->model && CONFIG_TCPOTA_MODEL[0] && !printable_name(CONFIG_TCPOTA_MODEL, TCPOTA_MAX_NAME)) {
        ESP_LOGE(TAG, "CONFIG_TCPOTA_MODEL must be printable ASCII characters");
        return ESP_ERR_INVALID_ARG;
    }
    return ESP_OK;
}

esp_err_t tcpota_esp_start(const tcpota_esp_config_t *cfg)
{
    esp_err_t err;

    if ((err = config_check(cfg)) != ESP_OK) {
        return err;
    }
    if (!cfg->backoff_min_ms) {
        ESP_LOGE(TAG, "backoff_min_ms is 0: a failing server would be retried without pause "
                      "(CONFIG_TCPOTA_BACKOFF_MIN_MS must be at least 1)");
        return ESP_ERR_INVALID_ARG;
    }
    if (cfg->check_interval_s > TCPOTA_RUNNER_CHECK_MAX_S) {
        ESP_LOGE(TAG, "check_interval_s %lu is over a week (%u)",
                 (unsigned long)cfg->check_interval_s, TCPOTA_RUNNER_CHECK_MAX_S);
        return ESP_ERR_INVALID_ARG;
    }
    lock_init();
    if (s.task) {
        return ESP_ERR_INVALID_STATE;
    }
    if ((err = trust_keys(cfg)) != ESP_OK) {
        return err;
    }
    xSemaphoreTake(s_lock, portMAX_DELAY);
    err = port_ready();
    if (err == ESP_OK) {
        err = trust_secret(cfg);
    }
    xSemaphoreGive(s_lock);
    if (err != ESP_OK) {
        return err;
    }
    s.cfg = *cfg;
    s.cfg.trusted_keys = NULL; /* copied above; the caller's may go */
    s.cfg.secret = NULL;
    s.stop = false;
    memset(&s.status, 0, sizeof(s.status));
    if ((err = make_ids()) != ESP_OK || (err = tls_start(cfg)) != ESP_OK) {
        mbedtls_platform_zeroize(s.secret, sizeof(s.secret));
        s.secret_len = 0;
        return err;
    }
    if (xTaskCreate(task_main, "tcpota", cfg->stack_size, NULL, cfg->priority, &s.task) !=
        pdPASS) {
        s.task = NULL;
        tls_stop();
        mbedtls_platform_zeroize(s.secret, sizeof(s.secret));
        s.secret_len = 0;
        return ESP_ERR_NO_MEM;
    }
    return ESP_OK;
}

esp_err_t tcpota_esp_stop(void)
{
    TaskHandle_t t;
    int64_t until = esp_timer_get_time() + (int64_t)STOP_WAIT_MS * 1000;

    if (!s.task) {
        return ESP_OK;
    }
    /* The task clears s.task under s_lock before it deletes itself. */
    xSemaphoreTake(s_lock, portMAX_DELAY);
    if ((t = s.task) != NULL) {
        s.stop = true;
        xTaskNotifyGive(t);
    }
    xSemaphoreGive(s_lock);
    while (s.task && esp_timer_get_time() < until) {
        /* not pdMS_TO_TICKS(20): 0 ticks below 50 Hz, a busy spin */
        vTaskDelay((TickType_t)tcpota_esp_ms_to_ticks(20, configTICK_RATE_HZ));
    }
    return s.task ? ESP_ERR_TIMEOUT : ESP_OK;
}
