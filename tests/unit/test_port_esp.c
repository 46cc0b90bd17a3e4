/* test_port_esp.c - the ESP-IDF port (esp-idf/components/tcpota/port_esp.c,
 * compiled unchanged) under the device session, against the real server
 * session in memory and a fake of esp_ota_ops/esp_partition/NVS with
 * ESP-IDF's semantics (tests/esp_fake): a fresh update, resume after a
 * reboot from the NVS record, stale records (another image, another
 * partition), a failed health check rolled back and reported, a rollback
 * by the bootloader reported, and a flash failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "esp_fake.h"
#include "tcpota/codec.h"
#include "tcpota/crc32c.h"
#include "tcpota/device.h"
#include "tcpota/server.h"
#include "tcpota_esp_port.h"

#define IMG_SIZE 70000u /* not a multiple of the sector */
#define ACK_IV 8192u

static uint8_t image[IMG_SIZE];
static struct tcpota_srv_image simg;
static tcpota_esp_port_t ep;
static struct tcpota_port port;
static struct tcpota_dev dev;
static uint8_t running_id[TCPOTA_ID_LEN];
static uint8_t drx[4096 + 8], dtx[512];
static uint8_t srx[1024], stx[2048];
static struct tcpota_srv srv;
static uint8_t wire[IMG_SIZE * 2 + 65536];
static size_t wire_len, wire_read;
static uint32_t accepted_at; /* offset of the last ACCEPT */
static int accepted;

static void make_image(const char *version, uint32_t seed)
{
    esp_fake_make_image(image, IMG_SIZE, version, seed);
    memset(&simg, 0, sizeof(simg));
    crypto_hash_sha256(simg.id, image, IMG_SIZE);
    simg.size = IMG_SIZE;
    simg.version = version;
    simg.version_len = (uint16_t)strlen(version);
}

/* What an app does after reset: port up, boot decision, session up. */
static int device_start(int healthy)
{
    struct tcpota_dev_config c;
    int verdict;

    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
    verdict = tcpota_dev_boot(&port, healthy);
    if (verdict != 0) {
        return verdict;
    }
    assert_int_equal(tcpota_esp_running_id(&ep, running_id), 0);
    memset(&c, 0, sizeof(c));
    c.port = &port;
    c.device_id = "esp-1";
    c.model = esp_app_get_description()->project_name;
    c.version = esp_app_get_description()->version;
    c.running_id = running_id;
    c.rx_buf = drx;
    c.rx_cap = sizeof(drx);
    c.tx_buf = dtx;
    c.tx_cap = sizeof(dtx);
    c.ack_interval = ACK_IV;
    assert_int_equal(tcpota_dev_init(&dev, &c), 0);
    return 0;
}

/* A reset: the port's RAM state goes, the fake bootloader runs. */
static void reboot(void)
{
    tcpota_esp_port_deinit(&ep);
    esp_fake_reboot();
}

static int setup(void **state)
{
    (void)state;
    esp_fake_init("1.0.0");
    make_image("2.0.0", 1);
    assert_int_equal(device_start(1), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tcpota_esp_port_deinit(&ep);
    return 0;
}

static void srv_start(void)
{
    struct tcpota_srv_config c;

    memset(&c, 0, sizeof(c));
    c.image = &simg;
    c.rx_buf = srx;
    c.rx_cap = sizeof(srx);
    c.tx_buf = stx;
    c.tx_cap = sizeof(stx);
    c.chunk = 1000; /* frames straddle sectors */
    assert_int_equal(tcpota_srv_init(&srv, &c), 0);
}

static void srv_flush(void)
{
    const uint8_t *p;
    size_t n = tcpota_srv_output(&srv, &p);
    uint32_t off;
    uint16_t len;

    memcpy(wire + wire_len, p, n);
    wire_len += n;
    tcpota_srv_output_done(&srv, n);
    while (wire_len - wire_read < 20000 && tcpota_srv_data_next(&srv, &off, &len)) {
        uint8_t *f = wire + wire_len;
        assert_int_equal(tcpota_data_head(f, off, len), 8);
        memcpy(f + 8, image + off, len);
        tcpota_put_u32(f + 8 + len, tcpota_crc32c(f, 8u + len));
        wire_len += 12u + len;
    }
}

/* One connection until it ends or `cut` server bytes reached the device.
 * Returns the device's last input result. */
static int run_conn(size_t cut)
{
    struct tcpota_dev_event ev;
    struct tcpota_srv_event sev;
    int rc = 0;

    wire_len = wire_read = 0;
    accepted = 0;
    srv_start();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    for (int rounds = 0; rounds < 100000; rounds++) {
        const uint8_t *p;
        size_t n = tcpota_dev_output(&dev, &p), off = 0, room;
        while (off < n) {
            int used = tcpota_srv_input(&srv, p + off, n - off, &sev);
            if (used < 0) break;
            off += (size_t)used;
        }
        tcpota_dev_output_done(&dev, n);
        srv_flush();
        if (wire_read == wire_len) break;
        room = wire_len - wire_read;
        if (cut && wire_read + room > cut) room = cut > wire_read ? cut - wire_read : 0;
        if (room > 700) room = 700;
        if (room == 0) break;
        rc = tcpota_dev_input(&dev, wire + wire_read, room, &ev);
        if (rc < 0) break;
        if (ev.type == TCPOTA_DEV_EV_ACCEPTED) {
            accepted = 1;
            accepted_at = ev.offset;
        }
        wire_read += (size_t)rc;
        if (cut && wire_read >= cut) break;
    }
    tcpota_dev_disconnect(&dev);
    return rc;
}

/* Decodes the HELLO the session queues for a new connection. */
static void hello_of_next_connection(struct tcpota_msg *m)
{
    static uint8_t buf[1024];
    struct tcpota_decoder d;
    struct tcpota_frame f;
    const uint8_t *p;
    size_t n;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    n = tcpota_dev_output(&dev, &p);
    assert_int_equal(tcpota_decoder_init(&d, buf, sizeof(buf)), 0);
    assert_int_equal(tcpota_decoder_feed(&d, p, n, &f), (int)n);
    assert_int_equal(f.type, TCPOTA_T_HELLO);
    assert_int_equal(tcpota_msg_decode(&f, m), 0);
    tcpota_dev_disconnect(&dev);
}

static int nvs_has(const char *key)
{
    uint8_t b[128];

    return port.kv_get(port.ctx, key, b, sizeof(b)) >= 0;
}

static void assert_update_installed(void)
{
    const esp_partition_t *ota0 = esp_fake_partition(1);

    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_memory_equal(esp_fake_flash(ota0), image, IMG_SIZE);
    assert_false(nvs_has(TCPOTA_KEY_RESUME));
    assert_int_equal(esp_fake_open_handles(), 0);
}

/* ---- tests ----------------------------------------------------------- */

static void test_fresh_update(void **state)
{
    esp_ota_img_states_t st;
    struct tcpota_msg hello;
    uint8_t id[TCPOTA_ID_LEN];
    unsigned erases = esp_fake_erases();

    (void)state;
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(0));
    assert_string_equal(esp_app_get_description()->version, "1.0.0");
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
    assert_int_equal(accepted_at, 0);
    assert_update_installed();
    /* Sequential writes: only the sectors the image reaches were erased. */
    assert_int_equal(esp_fake_erases() - erases, (IMG_SIZE + 4095) / 4096);

    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(1));
    assert_int_equal(esp_ota_get_state_partition(esp_fake_partition(1), &st), ESP_OK);
    assert_int_equal(st, ESP_OTA_IMG_PENDING_VERIFY);
    assert_int_equal(device_start(1), 0); /* health check ok: confirm */
    assert_int_equal(esp_ota_get_state_partition(esp_fake_partition(1), &st), ESP_OK);
    assert_int_equal(st, ESP_OTA_IMG_VALID);
    assert_string_equal(esp_app_get_description()->version, "2.0.0");
    /* The running id is the SHA-256 of the .bin the server holds. */
    assert_int_equal(tcpota_esp_running_id(&ep, id), 0);
    assert_memory_equal(id, simg.id, TCPOTA_ID_LEN);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_CONFIRMED);
    assert_memory_equal(hello.u.hello.report_id, simg.id, TCPOTA_ID_LEN);
    /* The server knows the device runs its image by the running id. */
    run_conn(0);
    assert_int_equal(dev.state, TCPOTA_DEV_UP_TO_DATE);
}

static void test_resume_after_reboot(void **state)
{
    struct tcpota_msg hello;
    uint32_t point;
    unsigned erases;

    (void)state;
    assert_true(run_conn(40000) >= 0);
    point = dev.resume.offset;
    assert_true(point >= ACK_IV && point % 4096 == 0 && point < 40000);

    reboot(); /* power cut: OTA handle gone, NVS record kept */
    assert_int_equal(esp_fake_open_handles(), 0);
    assert_int_equal(device_start(1), 0);
    assert_true(dev.resume.valid);
    assert_int_equal(dev.resume.offset, point);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.resume_offset, point);
    assert_memory_equal(hello.u.hello.resume_id, simg.id, TCPOTA_ID_LEN);

    erases = esp_fake_erases();
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
    assert_int_equal(accepted_at, point); /* esp_ota_resume, not esp_ota_begin */
    assert_update_installed();
    /* Only the sectors from the resume point on were erased again. */
    assert_int_equal(esp_fake_erases() - erases, (IMG_SIZE - point + 4095) / 4096);
}

static void test_stale_record_for_other_image(void **state)
{
    uint32_t point;

    (void)state;
    assert_true(run_conn(30000) >= 0);
    point = dev.resume.offset;
    assert_true(point > 0);
    reboot();
    assert_int_equal(device_start(1), 0);
    assert_true(dev.resume.valid);

    make_image("3.0.0", 7); /* the server has moved on */
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
    assert_int_equal(accepted_at, 0); /* the old record was discarded */
    assert_update_installed();
}

static void test_other_image_mid_transfer(void **state)
{
    (void)state;
    assert_true(run_conn(30000) >= 0); /* cut, no reset: the OTA handle is still open */
    assert_int_equal(esp_fake_open_handles(), 1);
    make_image("3.0.0", 7);
    assert_true(run_conn(0) >= 0);
    assert_int_equal(accepted_at, 0);
    assert_update_installed(); /* the first image's handle was dropped, not leaked */
}

static void test_stale_record_for_other_partition(void **state)
{
    const uint8_t ota1[4] = {0x00, 0x00, 0x05, 0x00}; /* 0x50000: ota_1 */

    (void)state;
    assert_true(run_conn(30000) >= 0);
    assert_true(dev.resume.offset > 0);
    /* The record says the bytes lie in another partition than the one the
     * next image goes to: resuming would boot a patchwork. */
    assert_int_equal(port.kv_set(port.ctx, TCPOTA_ESP_KEY_SLOT, ota1, sizeof(ota1)), 0);
    reboot();
    assert_int_equal(device_start(1), 0);
    assert_true(run_conn(0) < 0); /* refused: the connection ends */
    assert_false(nvs_has(TCPOTA_KEY_RESUME));
    assert_true(run_conn(0) >= 0); /* the next one starts over */
    assert_int_equal(accepted_at, 0);
    assert_update_installed();
}

static void test_failed_health_check_rolls_back_and_reports(void **state)
{
    esp_ota_img_states_t st;
    struct tcpota_msg hello;

    (void)state;
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(1));
    /* Health check failed: the verdict asks for the reboot ESP-IDF does. */
    assert_int_equal(device_start(0), 1);
    assert_true(esp_fake_reboot_requested());
    assert_int_equal(esp_ota_get_state_partition(esp_fake_partition(1), &st), ESP_OK);
    assert_int_equal(st, ESP_OTA_IMG_INVALID);

    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(0));
    assert_string_equal(esp_app_get_description()->version, "1.0.0");
    assert_int_equal(device_start(1), 0);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_ROLLED_BACK);
    assert_memory_equal(hello.u.hello.report_id, simg.id, TCPOTA_ID_LEN);
    /* Once the server has read the HELLO (WELCOME), the report is cleared. */
    assert_true(nvs_has(TCPOTA_KEY_REPORT));
    run_conn(0);
    assert_false(nvs_has(TCPOTA_KEY_REPORT));
}

static void test_bootloader_rollback_reported(void **state)
{
    struct tcpota_msg hello;

    (void)state;
    assert_true(run_conn(0) >= 0);
    reboot();             /* new image boots pending ... */
    reboot();             /* ... and resets before its health check */
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(0));
    assert_true(esp_ota_get_last_invalid_partition() == esp_fake_partition(1));
    assert_int_equal(device_start(1), 0);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_BOOT_FAILED);
    assert_memory_equal(hello.u.hello.report_id, simg.id, TCPOTA_ID_LEN);
}

static void test_no_update_while_pending(void **state)
{
    (void)state;
    assert_true(run_conn(0) >= 0);
    reboot();
    /* An app that connects before its health check verdict: esp_ota_begin
     * refuses to overwrite the rollback target. */
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
    make_image("3.0.0", 9);
    {
        struct tcpota_offer_info info = {simg.id, simg.size, "3.0.0", 5, NULL, 0};
        assert_int_equal(port.ota_begin(port.ctx, &info), TCPOTA_ERR_STATE);
        assert_int_equal(ep.last_err, ESP_ERR_OTA_ROLLBACK_INVALID_STATE);
    }
    assert_int_equal(esp_fake_open_handles(), 0);
}

static void test_flash_failure_ends_connection(void **state)
{
    (void)state;
    esp_fake_fail_write_after(20);
    assert_int_equal(run_conn(0), TCPOTA_ERR_IO);
    assert_int_equal(ep.last_err, ESP_FAIL);
    assert_string_equal(ep.last_call, "esp_ota_write");
    esp_fake_fail_write_after(-1);
    assert_true(run_conn(0) >= 0); /* resumes or restarts, then completes */
    assert_update_installed();
}

static void test_err_mapping(void **state)
{
    (void)state;
    assert_int_equal(tcpota_esp_err(ESP_OK), 0);
    assert_int_equal(tcpota_esp_err(ESP_ERR_NVS_NOT_FOUND), TCPOTA_ERR_NOENT);
    assert_int_equal(tcpota_esp_err(ESP_ERR_OTA_VALIDATE_FAILED), TCPOTA_ERR_INTEGRITY);
    assert_int_equal(tcpota_esp_err(ESP_ERR_OTA_ROLLBACK_INVALID_STATE), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_esp_err(ESP_ERR_NVS_INVALID_LENGTH), TCPOTA_ERR_NOSPC);
    assert_int_equal(tcpota_esp_err(ESP_FAIL), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_esp_err(0x7777), TCPOTA_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_reboot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_record_for_other_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_image_mid_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_record_for_other_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_health_check_rolls_back_and_reports, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bootloader_rollback_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_update_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flash_failure_ends_connection, setup, teardown),
        cmocka_unit_test(test_err_mapping),
    };
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
