/* test_tcpota_esp.c - the tcpota FreeRTOS task (esp-idf/components/tcpota/
 * tcpota_esp.c) compiled unchanged on the host against the fakes of
 * tests/esp_fake (ESP-IDF's OTA/NVS with the real port_esp.c, and FreeRTOS
 * tasks, notifications and a fake clock: task_fake.h).
 *
 * Covers what the task adds around the runner: waits converted to ticks
 * without the 32-bit overflow of pdMS_TO_TICKS, tcpota_esp_confirm() doing
 * nothing (and waking nobody) when no image is pending, a zero minimum
 * backoff and an over-long check-in interval refused at start, and, against
 * a server on loopback, the check-in wait after "up to date": the interval
 * or the server's RETRY_AFTER, in ticks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "esp_fake.h"
#include "esp_log.h" /* esp_fake_last_log */
#include "esp_mac.h"
#include "esp_task_test.h"
#include "loopback.h"
#include "esp_ota_ops.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h" /* vTaskDelay: the fake's own count checked */
#include "nvs.h"
#include "nvs_flash.h"
#include "psa/crypto.h"
#include "task_fake.h"
#include "tcpota/codec.h"
#include "tcpota/crc32c.h"
#include "tcpota/server.h"
#include "tcpota_esp.h"
#include "tcpota_esp_port.h"

static tcpota_esp_config_t config(uint16_t port)
{
    tcpota_esp_config_t c = esp_task_config(port);

    c.restart_after_update = true;
    c.stack_size = 6144;
    return c;
}

/* Ends the task that tcpota_esp_start() created: the fake never runs it
 * on its own, so ask it to stop (the wait for it times out on the fake
 * clock), then run it, which sees the stop and ends. */
static void end_task(void)
{
    (void)tcpota_esp_stop();
    assert_int_equal(esp_fake_task_run(), 0);
    assert_int_equal(esp_fake_tasks.deleted, 1);
}

/* The task's port opens PSA and NVS once, at its first start, and keeps
 * them, as on a device; a fresh or rebooted fake forgot both. PSA again,
 * and the same NVS handles again in tcpota's own partition: the setup's own
 * (1) and, once the port has opened its own, that one (2). */
static int port_opened;

static void start_ok(const tcpota_esp_config_t *c)
{
    assert_int_equal(tcpota_esp_start(c), ESP_OK);
    port_opened = 1;
}

static void kept_state(void)
{
    nvs_handle_t h;

    assert_int_equal(psa_crypto_init(), PSA_SUCCESS);
    assert_int_equal(nvs_flash_init_partition(TCPOTA_ESP_NVS_PARTITION), ESP_OK);
    for (nvs_handle_t want = 1; want <= (nvs_handle_t)(1 + port_opened); want++) {
        assert_int_equal(nvs_open_from_partition(TCPOTA_ESP_NVS_PARTITION, "tcpota", NVS_READWRITE, &h),
                         ESP_OK);
        assert_int_equal(h, want);
    }
}

static int setup(void **state)
{
    (void)state;
    esp_fake_init("1.0.0");
    esp_fake_tasks_reset();
    kept_state();
    return 0;
}

/* ---- ticks ------------------------------------------------------------ */

static void test_ms_to_ticks_without_overflow(void **state)
{
    (void)state;
    /* What pdMS_TO_TICKS gave: the product wraps at 2^32. */
    assert_int_equal((uint32_t)(7200000u * 1000u) / 1000u, 2905032u);   /* 2905 s at 1 kHz */
    assert_int_equal((uint32_t)(86400000u * 100u) / 1000u, 50065u);     /* 501 s at 100 Hz */
    assert_int_equal(tcpota_esp_ms_to_ticks(7200000u, 1000u), 7200000u); /* 7200 s */
    assert_int_equal(tcpota_esp_ms_to_ticks(86400000u, 100u), 8640000u); /* 86 400 s */
    /* The longest check-in (a week +20 %) at 1 kHz. */
    assert_int_equal(tcpota_esp_ms_to_ticks(725760000u, 1000u), 725760000u);
    /* Rounded up: a wait is never shorter than asked, and 0 stays 0. */
    assert_int_equal(tcpota_esp_ms_to_ticks(0, 100u), 0);
    assert_int_equal(tcpota_esp_ms_to_ticks(1, 100u), 1);
    assert_int_equal(tcpota_esp_ms_to_ticks(10, 100u), 1);
    assert_int_equal(tcpota_esp_ms_to_ticks(11, 100u), 2);
    /* Never portMAX_DELAY, which would mean "forever". */
    assert_int_equal(tcpota_esp_ms_to_ticks(UINT32_MAX, 1000u), portMAX_DELAY - 1u);
}

/* A stop whose task does not end in time waits in ticks, not by spinning:
 * pdMS_TO_TICKS(20) is 0 below 50 Hz, and vTaskDelay(0) lets no time pass
 * (the fake aborts on a run of them). */
static void test_stop_waits_at_a_slow_tick(void **state)
{
    tcpota_esp_config_t c = config(1);

    (void)state;
    /* The fake counts a run of vTaskDelay(0), which a delay of a tick ends
     * (else the check below would hold whatever the stop did). */
    vTaskDelay(0);
    assert_int_equal(esp_fake_tasks.zero_delays, 1);
    vTaskDelay(1);
    assert_int_equal(esp_fake_tasks.zero_delays, 0);
    esp_fake_tick_rate_hz = 10u;
    start_ok(&c);
    assert_int_equal(tcpota_esp_stop(), ESP_ERR_TIMEOUT); /* the task has not run */
    assert_int_equal(esp_fake_tasks.zero_delays, 0);
    assert_true(esp_fake_tasks.now_us >= 2000000); /* the 2 s it promises */
    assert_int_equal(esp_fake_task_run(), 0);
    assert_int_equal(esp_fake_tasks.deleted, 1);
}

/* ---- confirm ---------------------------------------------------------- */

static void test_confirm_without_pending_image_does_nothing(void **state)
{
    tcpota_esp_config_t c = config(1);
    unsigned commits;

    (void)state;
    start_ok(&c);
    assert_int_equal(esp_fake_tasks.created, 1);
    commits = esp_fake_nvs_commits();
    /* Called at every boot by an application, or again and again. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tcpota_esp_confirm(), ESP_OK);
    }
    assert_int_equal(esp_fake_tasks.notified, 0); /* the task's wait goes on */
    assert_int_equal(esp_fake_nvs_commits(), commits); /* no report stored */
    /* Nothing to reject either. */
    assert_int_equal(tcpota_esp_reject(), ESP_ERR_INVALID_STATE);
    assert_int_equal(esp_fake_reboot_requested(), 0);
    end_task();
}

/* A new image booted pending: confirm marks it valid and wakes the task
 * waiting for the verdict. */
static void test_confirm_pending_image(void **state)
{
    static uint8_t img[8192];
    tcpota_esp_config_t c = config(1);
    const esp_partition_t *p = esp_ota_get_next_update_partition(NULL);
    esp_ota_handle_t h;
    esp_ota_img_states_t st;

    (void)state;
    esp_fake_make_image(img, sizeof(img), "2.0.0", 7);
    assert_int_equal(esp_ota_begin(p, OTA_WITH_SEQUENTIAL_WRITES, &h), ESP_OK);
    assert_int_equal(esp_ota_write(h, img, sizeof(img)), ESP_OK);
    assert_int_equal(esp_ota_end(h), ESP_OK);
    assert_int_equal(esp_ota_set_boot_partition(p), ESP_OK);
    esp_fake_reboot();
    kept_state();
    assert_int_equal(esp_ota_get_state_partition(p, &st), ESP_OK);
    assert_int_equal(st, ESP_OTA_IMG_PENDING_VERIFY);

    start_ok(&c);
    assert_int_equal(tcpota_esp_confirm(), ESP_OK);
    assert_int_equal(esp_ota_get_state_partition(p, &st), ESP_OK);
    assert_int_equal(st, ESP_OTA_IMG_VALID);
    assert_int_equal(esp_fake_tasks.notified, 1);
    /* Now nothing is pending: a second confirm is a no-op. */
    assert_int_equal(tcpota_esp_confirm(), ESP_OK);
    assert_int_equal(esp_fake_tasks.notified, 1);
    end_task();
}

/* ---- start's checks --------------------------------------------------- */

static void test_start_refuses_zero_backoff_and_long_interval(void **state)
{
    tcpota_esp_config_t c = config(1);

    (void)state;
    c.backoff_min_ms = 0; /* it would retry a failing server in a tight loop */
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    c = config(1);
    c.check_interval_s = 604801; /* over a week */
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_int_equal(esp_fake_tasks.created, 0);
    c.check_interval_s = 604800;
    start_ok(&c);
    end_task();
}

/* Each refusal names the value and its menuconfig option (a silent
 * ESP_ERR_INVALID_ARG left an ESP_ERROR_CHECKing product in a reboot loop);
 * a device id or a model is never cut short: one cut is another device's. */
static void test_start_says_why(void **state)
{
    char id65[66];
    tcpota_esp_config_t c;
    (void)state;
    c = config(1);
    c.ack_interval = 16384 + 512;
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_string_equal(esp_fake_last_log, "ack_interval 16896 is not a multiple of 4096, the flash "
                                           "sector (CONFIG_TCPOTA_ACK_INTERVAL)");
    c = config(1);
    c.backoff_min_ms = 6000;
    c.backoff_max_ms = 5000;
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_string_equal(esp_fake_last_log, "backoff_min_ms 6000 is above backoff_max_ms 5000 "
                                           "(CONFIG_TCPOTA_BACKOFF_MIN_MS, CONFIG_TCPOTA_BACKOFF_MAX_MS)");
    c = config(1);
    c.timeout_ms = 99;
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_non_null(strstr(esp_fake_last_log, "timeout_ms 99 is below 100"));
    c = config(1);
    c.host = "";
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_non_null(strstr(esp_fake_last_log, "no server: host and port are required"));
    memset(id65, 'x', 65);
    id65[65] = '\0';
    c = config(1);
    c.device_id = id65;
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_string_equal(esp_fake_last_log, "device_id must be 1..64 printable ASCII characters"
                                           " (65 given)");
    c.device_id = "tab\there";
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    c = config(1);
    c.model = "a-model-name-of-thirty-three-char";
    assert_int_equal(tcpota_esp_start(&c), ESP_ERR_INVALID_ARG);
    assert_string_equal(esp_fake_last_log, "model must be 1..32 printable ASCII characters (33"
                                           " given)");
    assert_int_equal(esp_fake_tasks.created, 0);
    id65[64] = '\0'; /* 64 will do (a check-in sends a long one: run_check_ins) */
    c = config(1);
    c.device_id = id65;
    start_ok(&c);
    end_task();
}

/* ---- check-ins, against a server on loopback -------------------------- */

/* One connection at a time: HELLO, then NO_UPDATE (with RETRY_AFTER when
 * set), then close; `connections` counts them. */
static struct {
    int fd;
    uint16_t port;
    uint32_t retry_after_s;
    int connections;
    char model[40]; /* what the last HELLO said */
    char id[80];
    pthread_t thread;
    const struct tcpota_srv_image *img; /* offered when set; its bytes in img_bytes */
    const uint8_t *img_bytes;
} srv;

/* An id longer than the 23 characters the task once kept (it cut them). */
static const char long_id[] = "a-device-id-that-is-longer-than-twenty-three-characters";

static int choose_none(void *ctx, const struct tcpota_srv_hello *h,
                       const struct tcpota_srv_image **img, uint32_t *retry_after_s)
{
    (void)ctx;
    snprintf(srv.model, sizeof(srv.model), "%s", h->model);
    snprintf(srv.id, sizeof(srv.id), "%s", h->device_id);
    *retry_after_s = srv.retry_after_s;
    *img = srv.img;
    return 0;
}

static void serve_one(int c)
{
    static uint8_t rx[4200], tx[TCPOTA_SRV_TX_MIN], in[2048];
    struct tcpota_srv s;
    struct tcpota_srv_config cfg;
    struct tcpota_srv_event ev;
    ssize_t n;

    memset(&cfg, 0, sizeof(cfg));
    cfg.choose = choose_none;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof(rx);
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof(tx);
    if (tcpota_srv_init(&s, &cfg) < 0) {
        return;
    }
    while ((n = read(c, in, sizeof(in))) > 0) {
        size_t off = 0;
        while (off < (size_t)n) {
            int used = tcpota_srv_input(&s, in + off, (size_t)n - off, &ev);
            const uint8_t *out;
            size_t len;
            if (used <= 0) {
                return;
            }
            off += (size_t)used;
            while ((len = tcpota_srv_output(&s, &out)) > 0) {
                if (write(c, out, len) != (ssize_t)len) {
                    return;
                }
                tcpota_srv_output_done(&s, len);
            }
            if (srv.img_bytes) { /* the image's DATA frames, all of them */
                static uint8_t f[12 + 4096];
                uint32_t at;
                uint16_t k;
                while (tcpota_srv_data_next(&s, &at, &k)) {
                    (void)tcpota_data_head(f, at, k);
                    memcpy(f + 8, srv.img_bytes + at, k);
                    tcpota_put_u32(f + 8 + k, tcpota_crc32c(f, 8u + k));
                    if (write(c, f, 12u + k) != (ssize_t)(12u + k)) {
                        return;
                    }
                }
            }
        }
    }
}

static void *serve(void *arg)
{
    int c;

    (void)arg;
    while ((c = accept(srv.fd, NULL, NULL)) >= 0) {
        __atomic_add_fetch(&srv.connections, 1, __ATOMIC_SEQ_CST);
        serve_one(c);
        close(c);
    }
    return NULL;
}

static void srv_start(uint32_t retry_after_s)
{
    memset(&srv, 0, sizeof(srv));
    srv.retry_after_s = retry_after_s;
    srv.fd = loopback_listen(&srv.port);
    assert_true(srv.fd >= 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, serve, NULL), 0);
}

static void srv_stop(void)
{
    shutdown(srv.fd, SHUT_RDWR);
    close(srv.fd);
    pthread_join(srv.thread, NULL);
}

/* The task's long waits, seen where it blocks (ulTaskNotifyTake). */
static uint32_t takes[8];
static int ntakes;

static void on_take(uint32_t ticks)
{
    if (ticks > 100u) { /* not one of the short polls */
        takes[ntakes++] = ticks;
    }
    if (ntakes == 2) {
        (void)tcpota_esp_stop(); /* after the second check-in wait */
    }
}

/* Two check-ins of a task with id (NULL: the default, from the MAC); the
 * server must see want_id. */
static void run_check_ins_as(uint32_t interval_s, uint32_t retry_after_s, const char *id,
                             const char *want_id)
{
    tcpota_esp_config_t c;
    tcpota_esp_status_t st;

    srv_start(retry_after_s);
    c = config(srv.port);
    c.check_interval_s = interval_s;
    c.model = NULL; /* and TCPOTA_MODEL emptied: the chip's name, not the project's */
    c.device_id = id;
    ntakes = 0;
    esp_fake_tasks.on_take = on_take;
    start_ok(&c);
    assert_int_equal(esp_fake_task_run(), 0); /* until the stop in on_take */
    esp_fake_tasks.on_take = NULL;
    srv_stop();
    assert_int_equal(esp_fake_tasks.deleted, 1);
    assert_int_equal(srv.connections, 2);
    assert_int_equal(ntakes, 2);
    assert_string_equal(srv.model, "esp32");
    assert_string_equal(srv.id, want_id);
    tcpota_esp_status(&st);
    assert_int_equal(st.state, TCPOTA_ESP_STOPPED);
}

/* A day's interval at ESP-IDF's 100 Hz: each wait is 0.8 to 1.2 days of
 * ticks (pdMS_TO_TICKS made it 501 s). */
static void run_check_ins(uint32_t interval_s, uint32_t retry_after_s)
{
    run_check_ins_as(interval_s, retry_after_s, long_id, long_id); /* whole: cut, it named
                                                                    * another device */
}

/* The default id is the Wi-Fi station's MAC, else (a chip without Wi-Fi)
 * the base MAC; with neither the start fails: every such device would be
 * esp-000000000000. */
static void test_default_id_from_the_mac(void **state)
{
    tcpota_esp_config_t c = config(1);

    (void)state;
    run_check_ins_as(60, 0, NULL, "esp-a0b1c2d3e4f5");
    esp_fake_tasks_reset();
    esp_fake_tasks.mac_fail = 1u << ESP_MAC_WIFI_STA;
    run_check_ins_as(60, 0, NULL, "esp-a0b1c2d3e4f0");
    esp_fake_tasks_reset();
    esp_fake_tasks.mac_fail = 1u << ESP_MAC_WIFI_STA | 1u << ESP_MAC_BASE;
    c.device_id = NULL;
    assert_int_equal(tcpota_esp_start(&c), ESP_FAIL);
    assert_string_equal(esp_fake_last_log,
                        "cannot read the chip's MAC for the device id (ESP_FAIL): give device_id");
    assert_int_equal(esp_fake_tasks.created, 0);
}

static void test_check_in_every_interval(void **state)
{
    (void)state;
    run_check_ins(86400, 0);
    for (int i = 0; i < 2; i++) {
        assert_in_range(takes[i], 86400u * 100u * 8u / 10u, 86400u * 100u * 12u / 10u);
    }
}

/* The server's RETRY_AFTER (2 h) replaces the day: never earlier, at
 * most 20 % later. */
static void test_check_in_after_retry_after(void **state)
{
    (void)state;
    run_check_ins(86400, 7200);
    for (int i = 0; i < 2; i++) {
        assert_in_range(takes[i], 7200u * 100u, 7200u * 100u * 12u / 10u);
    }
}


/* restart_after_update false: the application restarts when it chooses.
 * The task ended and said STOPPED ("no task"), so tcpota_esp_status()
 * never told the application that an image waits for a restart; and a
 * start before that restart downloaded the same image again, into the
 * slot set to boot (the next update partition is still the running one's
 * partner), erasing the verified image while it ran. Now the state stays
 * UPDATED and a start before the restart downloads nothing. */
static void test_no_restart_after_update(void **state)
{
    static uint8_t bytes[40000];
    static struct tcpota_srv_image img;
    tcpota_esp_config_t c;
    tcpota_esp_status_t st;
    unsigned erases;

    (void)state;
    esp_fake_make_image(bytes, sizeof(bytes), "2.0.0", 5);
    memset(&img, 0, sizeof(img));
    crypto_hash_sha256(img.id, bytes, sizeof(bytes));
    img.size = sizeof(bytes);
    img.version = "2.0.0";
    img.version_len = 5;
    srv_start(0);
    srv.img = &img;
    srv.img_bytes = bytes;
    c = config(srv.port);
    c.restart_after_update = false;
    start_ok(&c);
    assert_int_equal(esp_fake_task_run(), 0); /* downloads, sets to boot, ends */
    assert_int_equal(esp_fake_tasks.deleted, 1);
    assert_int_equal(esp_fake_tasks.restarts, 0);
    assert_int_equal(srv.connections, 1);
    assert_memory_equal(esp_fake_flash(esp_fake_partition(1)), bytes, sizeof(bytes));
    tcpota_esp_status(&st);
    assert_int_equal(st.state, TCPOTA_ESP_UPDATED);

    erases = esp_fake_erases();
    start_ok(&c); /* before the restart */
    assert_int_equal(esp_fake_task_run(), 0);
    assert_int_equal(esp_fake_tasks.deleted, 2);
    srv_stop();
    assert_int_equal(srv.connections, 1);
    assert_int_equal(esp_fake_erases(), erases);
    assert_memory_equal(esp_fake_flash(esp_fake_partition(1)), bytes, sizeof(bytes));
    tcpota_esp_status(&st);
    assert_int_equal(st.state, TCPOTA_ESP_UPDATED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ms_to_ticks_without_overflow, setup),
        cmocka_unit_test_setup(test_stop_waits_at_a_slow_tick, setup),
        cmocka_unit_test_setup(test_confirm_without_pending_image_does_nothing, setup),
        cmocka_unit_test_setup(test_confirm_pending_image, setup),
        cmocka_unit_test_setup(test_start_refuses_zero_backoff_and_long_interval, setup),
        cmocka_unit_test_setup(test_start_says_why, setup),
        cmocka_unit_test_setup(test_check_in_every_interval, setup),
        cmocka_unit_test_setup(test_default_id_from_the_mac, setup),
        cmocka_unit_test_setup(test_check_in_after_retry_after, setup),
        cmocka_unit_test_setup(test_no_restart_after_update, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
