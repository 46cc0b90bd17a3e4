/* test_port_esp.c - the ESP-IDF port (esp-idf/components/tcpota/port_esp.c
 * and trust_esp.c, compiled unchanged) under the device session, against
 * the real server session in memory and a fake of esp_ota_ops/esp_partition/
 * NVS/PSA Crypto with ESP-IDF's semantics (tests/esp_fake): a fresh update,
 * resume after a reboot from the NVS record, stale records (another image,
 * another partition), a failed health check rolled back and reported, a
 * rollback by the bootloader reported, and a flash failure; then signed
 * images (the port's Ed25519 on the host's libsodium) accepted and refused,
 * the port's SHA-256 (PSA) against known vectors and its HMAC-SHA-256 (PSA)
 * against RFC 4231, psa_crypto_init() before either, PSA errors mapped,
 * answering the server's challenge with the secret provisioned in NVS,
 * tcpota's records kept in their own NVS partition (safe from the
 * application's nvs_flash_erase()), and the trusted-key parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "esp_fake.h"
#include "tcpota/codec.h"
#include "tcpota/crc32c.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "psa/crypto.h"
#include "tcpota/device.h"
#include "tcpota/manifest.h"
#include "tcpota/server.h"
#include "tcpota_esp_port.h"
#include "tcpota_esp_trust.h"

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
/* What the next device_start() trusts and proves (reset by setup). */
static uint8_t dev_keys[TCPOTA_ESP_MAX_KEYS][TCPOTA_PUBKEY_LEN];
static size_t dev_nkeys;
static uint8_t dev_secret[TCPOTA_ESP_SECRET_MAX];
static size_t dev_secret_len;
/* The server side of authentication: on when srv_secret_len > 0. */
static uint8_t srv_secret[TCPOTA_ESP_SECRET_MAX], srv_nonce[TCPOTA_NONCE_LEN];
static size_t srv_secret_len;
static int srv_auth_ok = -1; /* verdict of the last AUTH, -1: none */
/* The last DECLINE the server read: its reason and sentence. */
static int declined_reason;
static char declined_why[TCPOTA_DEV_BAD_TEXT_MAX + 64];

static int secret_from_nvs(void);
static void provision_secret(const uint8_t *secret, size_t len);

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
    c.trusted_keys = dev_nkeys ? (const uint8_t(*)[TCPOTA_PUBKEY_LEN])dev_keys : NULL;
    c.n_trusted_keys = dev_nkeys;
    c.secret = dev_secret_len ? dev_secret : NULL;
    c.secret_len = dev_secret_len;
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
    dev_nkeys = dev_secret_len = srv_secret_len = 0;
    srv_auth_ok = -1;
    declined_reason = 0;
    declined_why[0] = 0;
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
    if (srv_secret_len) {
        randombytes_buf(srv_nonce, sizeof(srv_nonce));
        c.auth_nonce = srv_nonce;
    }
    assert_int_equal(tcpota_srv_init(&srv, &c), 0);
}

/* What `tcpota serve --require-auth` does with an AUTH: recompute the MAC
 * from the secret it holds for the device id, compare, decide. */
static void srv_check_auth(const struct tcpota_srv_event *sev)
{
    crypto_auth_hmacsha256_state st;
    uint8_t msg[TCPOTA_AUTH_MSG_MAX], want[32];
    const char *id = tcpota_srv_device_id(&srv);
    int n = tcpota_auth_message(srv_nonce, NULL, (const uint8_t *)id, strlen(id), msg, sizeof(msg));
    uint8_t offered;
    uint32_t start;

    assert_true(n > 0);
    crypto_auth_hmacsha256_init(&st, srv_secret, srv_secret_len);
    crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)n);
    crypto_auth_hmacsha256_final(&st, want);
    srv_auth_ok = sodium_memcmp(want, sev->msg.u.auth.mac, sizeof(want)) == 0;
    tcpota_srv_authorize(&srv, srv_auth_ok, &offered, &start);
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
            if (sev.type == TCPOTA_SRV_EV_AUTH) srv_check_auth(&sev);
            if (sev.type == TCPOTA_SRV_EV_DECLINE) {
                const struct tcpota_bytes *w = &sev.msg.u.decline.message;
                size_t k = w->len < sizeof(declined_why) - 1 ? w->len : sizeof(declined_why) - 1;
                declined_reason = -(int)sev.msg.u.decline.reason;
                memcpy(declined_why, w->ptr, k);
                declined_why[k] = 0;
            }
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
    /* The same offer starts over (before: the connection failed, and only
     * the next one did). */
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
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

/* The server offers `simg` again: the device declines it with the reason
 * before it writes (erases) a byte. */
static void assert_declined_as_bad(const char *why)
{
    unsigned erases = esp_fake_erases();
    char want[TCPOTA_DEV_BAD_TEXT_MAX + 64];

    assert_true(run_conn(0) >= 0);
    assert_false(accepted);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(declined_reason, TCPOTA_ERR_FAILED_BEFORE);
    snprintf(want, sizeof(want), "image %02x%02x%02x%02x %s; waiting for another image",
             simg.id[0], simg.id[1], simg.id[2], simg.id[3], why);
    assert_string_equal(declined_why, want);
    assert_int_equal(esp_fake_erases(), erases);
    assert_int_equal(esp_fake_open_handles(), 0);
}

/* A rogue server replays a valid offer with other bytes: the image fails
 * its integrity check; a first failure may be bytes altered on the way, so
 * the image is taken once more (one tampered transfer must not deny the
 * genuine release for good); after the second it is remembered across
 * resets and its offer declined, until another image is installed and
 * confirmed. */
static void test_integrity_failure_remembered(void **state)
{
    uint8_t id[TCPOTA_ID_LEN];
    unsigned erases;

    (void)state;
    image[IMG_SIZE - 1] ^= 1; /* the offer still names the good image */
    assert_int_equal(run_conn(0), TCPOTA_ERR_INTEGRITY);
    assert_int_equal(dev.bad_reason, TCPOTA_BAD_INTEGRITY);
    assert_int_equal(tcpota_dev_bad_image(&port, id), TCPOTA_BAD_NONE); /* one more chance */
    erases = esp_fake_erases();
    assert_int_equal(run_conn(0), TCPOTA_ERR_INTEGRITY); /* taken, written, failed again */
    assert_true(esp_fake_erases() > erases);
    assert_int_equal(tcpota_dev_bad_image(&port, id), TCPOTA_BAD_INTEGRITY);
    assert_memory_equal(id, simg.id, TCPOTA_ID_LEN);
    assert_declined_as_bad("failed its integrity check before");
    assert_int_equal(dev.bad_reason, TCPOTA_BAD_INTEGRITY);
    reboot();
    assert_int_equal(device_start(1), 0);
    assert_declined_as_bad("failed its integrity check before");

    make_image("3.0.0", 5); /* the server moves on */
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_INTEGRITY);
    reboot();
    assert_int_equal(device_start(1), 0); /* confirmed: the record goes */
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_NONE);
}

/* tcpota_esp_reject() saves the report, then the failed-image record
 * (ROLLED_BACK: final), erases the "last update" record, then rolls back.
 * A power cut after the failed-image record and before the erase: the
 * bootloader aborts the still pending image, and the start after it took
 * the "last update" record for a boot failure, overwriting the health
 * check's final verdict with BOOT_FAILED counted once (one more chance):
 * the rejected image was downloaded and installed again. */
static void test_cut_inside_reject_keeps_verdict(void **state)
{
    struct tcpota_msg hello;
    uint8_t id[TCPOTA_ID_LEN];

    (void)state;
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    reboot();
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
    esp_fake_nvs_fail_erase(TCPOTA_KEY_LAST, ESP_FAIL); /* the cut, there */
    assert_true(tcpota_dev_boot(&port, 0) < 0);
    assert_false(esp_fake_reboot_requested());
    esp_fake_nvs_fail_erase(NULL, ESP_OK);
    reboot(); /* power back: the bootloader aborts the pending image */
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(0));
    assert_int_equal(device_start(1), 0);
    assert_int_equal(tcpota_dev_bad_image(&port, id), TCPOTA_BAD_ROLLED_BACK);
    assert_memory_equal(id, simg.id, TCPOTA_ID_LEN);
    assert_false(nvs_has(TCPOTA_KEY_LAST));
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_ROLLED_BACK);
    assert_declined_as_bad("failed its health check before");
}

/* An image esp_ota_end refuses (not an app image) is remembered too. */
static void test_ota_end_refusal_remembered(void **state)
{
    (void)state;
    tcpota_put_u32(image + 4, IMG_SIZE + 4); /* the header claims more than arrives */
    crypto_hash_sha256(simg.id, image, IMG_SIZE); /* the bytes are what the id says */
    assert_true(run_conn(0) < 0);
    /* esp_ota_end's ESP_ERR_OTA_VALIDATE_FAILED is the port's INTEGRITY. */
    assert_int_equal(dev.last_error, TCPOTA_ERR_INTEGRITY);
    assert_int_equal(dev.bad_reason, TCPOTA_BAD_INTEGRITY);
    /* Taken once more (an integrity failure's one more chance), refused again. */
    assert_true(run_conn(0) < 0);
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), dev.bad_reason);
    assert_true(run_conn(0) >= 0);
    assert_false(accepted);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
}

/* A rolled-back image is not downloaded again (the ESP-IDF task has no
 * guard of its own): download, boot, fail, roll back, decline. */
static void test_rolled_back_image_not_downloaded_again(void **state)
{
    (void)state;
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    reboot();
    assert_int_equal(device_start(0), 1); /* health check failed */
    reboot();
    assert_int_equal(device_start(1), 0);
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_ROLLED_BACK);
    assert_declined_as_bad("failed its health check before");
    assert_false(nvs_has(TCPOTA_KEY_REPORT)); /* the report went with that HELLO */
}

/* What the example app does on ESP_ERR_NVS_NEW_VERSION_FOUND (and ESP-IDF's
 * examples on NO_FREE_PAGES): nvs_flash_erase() + nvs_flash_init() of the
 * default partition. tcpota's records live in their own partition: the
 * failed-image record, the report and the device secret all survive. */
static void test_records_safe_from_app_nvs_erase(void **state)
{
    uint8_t secret[32];
    int n;

    (void)state;
    randombytes_buf(secret, sizeof(secret));
    provision_secret(secret, sizeof(secret));
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    reboot();
    assert_int_equal(device_start(0), 1); /* health check failed: rolled back */
    reboot();
    assert_int_equal(esp_fake_nvs_count(NVS_DEFAULT_PART_NAME), 0); /* nothing of tcpota's */
    n = esp_fake_nvs_count(TCPOTA_ESP_NVS_PARTITION);
    assert_true(n >= 3); /* secret, failed image, report at least */

    assert_int_equal(nvs_flash_init(), ESP_OK);
    assert_int_equal(nvs_flash_erase(), ESP_OK);
    assert_int_equal(nvs_flash_init(), ESP_OK);
    assert_int_equal(esp_fake_nvs_count(TCPOTA_ESP_NVS_PARTITION), n);
    assert_int_equal(secret_from_nvs(), 32);
    assert_memory_equal(dev_secret, secret, 32);
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_ROLLED_BACK);
    assert_declined_as_bad("failed its health check before");
}

/* tcpota's partition is never erased by the port, even when NVS says it
 * would need to be: init fails with the error and the records stay. */
static void test_nvs_partition_error_not_erased(void **state)
{
    static const esp_err_t errs[] = {ESP_ERR_NVS_NEW_VERSION_FOUND, ESP_ERR_NVS_NO_FREE_PAGES};
    uint8_t secret[16] = {1, 2, 3};
    int n;

    (void)state;
    provision_secret(secret, sizeof(secret));
    n = esp_fake_nvs_count(TCPOTA_ESP_NVS_PARTITION);
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        reboot();
        esp_fake_nvs_fail_init(TCPOTA_ESP_NVS_PARTITION, errs[i]);
        assert_int_equal(tcpota_esp_port_init(&ep, &port), errs[i]);
        assert_string_equal(ep.last_call, "nvs_flash_init_partition");
        assert_false(ep.nvs_open);
        assert_int_equal(esp_fake_nvs_count(TCPOTA_ESP_NVS_PARTITION), n);
    }
    esp_fake_nvs_fail_init(TCPOTA_ESP_NVS_PARTITION, ESP_OK);
    assert_int_equal(secret_from_nvs(), 16);
}

/* After the bootloader fell back from it: a first time may be a power cut
 * before the health check, so it is fetched once more; the second time is
 * final. */
static void test_boot_failure_not_downloaded_again(void **state)
{
    (void)state;
    assert_true(run_conn(0) >= 0);
    reboot(); /* boots pending ... */
    reboot(); /* ... and resets before its health check */
    assert_int_equal(device_start(1), 0);
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_NONE);
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
    assert_update_installed();
    reboot();
    reboot();
    assert_int_equal(device_start(1), 0);
    assert_int_equal(tcpota_dev_bad_image(&port, NULL), TCPOTA_BAD_BOOT_FAILED);
    assert_declined_as_bad("did not boot before");
}

/* "No space" says both sizes: the DECLINED event carries the offer's. */
static void test_no_space_event_has_size(void **state)
{
    struct tcpota_dev_event ev;
    uint8_t buf[256];
    struct tcpota_msg m;
    int n;

    (void)state;
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = TCPOTA_PROTO_VERSION;
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    n = tcpota_msg_encode(&m, buf, sizeof(buf));
    assert_int_equal(tcpota_dev_input(&dev, buf, (size_t)n, &ev), n);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = port.slot_size + 1;
    m.u.offer.version.ptr = (const uint8_t *)"9.0.0";
    m.u.offer.version.len = 5;
    n = tcpota_msg_encode(&m, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(tcpota_dev_input(&dev, buf, (size_t)n, &ev), n);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_DECLINED);
    assert_int_equal(ev.error, TCPOTA_ERR_NOSPC);
    assert_int_equal(ev.size, port.slot_size + 1);
    tcpota_dev_disconnect(&dev);
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

/* Records under tcpota's keys that this build did not write: blobs longer
 * than its records (a later tcpota's format, read after a rollback to this
 * image), for which ESP-IDF answers ESP_ERR_NVS_INVALID_LENGTH: the port
 * read it as an error, so the boot decision and the session's init failed
 * at every start and the device never updated again; and values of
 * another type (another component's nvs_set_u32), which ESP-IDF's
 * nvs_get_blob answers as not found. Both read as absent, as a torn record
 * does, and are written over. */
static void test_foreign_records_read_as_absent(void **state)
{
    static const char *const longer[] = {TCPOTA_KEY_RESUME, TCPOTA_KEY_LAST, TCPOTA_KEY_REPORT,
                                         TCPOTA_ESP_KEY_SLOT};
    static const char *const other_type[] = {TCPOTA_KEY_COUNTER, TCPOTA_KEY_BAD};
    uint8_t blob[200];
    nvs_handle_t h;

    (void)state;
    memset(blob, 0x5a, sizeof(blob));
    blob[0] = 1; /* the records' version byte */
    assert_int_equal(nvs_open_from_partition(TCPOTA_ESP_NVS_PARTITION, TCPOTA_ESP_NVS_NAMESPACE,
                                             NVS_READWRITE, &h),
                     ESP_OK);
    for (size_t i = 0; i < sizeof(longer) / sizeof(longer[0]); i++) {
        assert_int_equal(nvs_set_blob(h, longer[i], blob, sizeof(blob)), ESP_OK);
    }
    for (size_t i = 0; i < sizeof(other_type) / sizeof(other_type[0]); i++) {
        assert_int_equal(nvs_set_u32(h, other_type[i], 7), ESP_OK);
    }
    assert_int_equal(nvs_commit(h), ESP_OK);
    nvs_close(h);
    reboot();

    assert_int_equal(device_start(1), 0); /* boot decision and init go through */
    assert_false(dev.resume.valid);
    assert_int_equal(port.kv_get(port.ctx, TCPOTA_KEY_COUNTER, blob, sizeof(blob)),
                     TCPOTA_ERR_NOENT);
    assert_true(run_conn(0) >= 0); /* and the update too, from the start */
    assert_int_equal(accepted_at, 0);
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
    assert_int_equal(tcpota_esp_err(PSA_ERROR_INVALID_ARGUMENT), TCPOTA_ERR_INVAL);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_INSUFFICIENT_MEMORY), TCPOTA_ERR_NOSPC);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_BUFFER_TOO_SMALL), TCPOTA_ERR_NOSPC);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_NOT_SUPPORTED), TCPOTA_ERR_NOTSUP);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_BAD_STATE), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_NOT_PERMITTED), TCPOTA_ERR_DENIED);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_HARDWARE_FAILURE), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_esp_err(PSA_ERROR_CORRUPTION_DETECTED), TCPOTA_ERR_IO);
}

/* ---- signed images --------------------------------------------------- */

static uint8_t sign_pk[32], sign_sk[64], man[400];

/* A manifest for the server's current image naming `pubkey` and signed
 * with `sk` (a pubkey that is not sk's makes a forgery). */
static void sign_image_with(const uint8_t *pubkey, const uint8_t *sk, const char *model,
                            uint32_t counter)
{
    struct tcpota_manifest m;
    int n;

    memset(&m, 0, sizeof(m));
    m.image_size = simg.size;
    m.sha256 = simg.id;
    m.version.ptr = (const uint8_t *)simg.version;
    m.version.len = simg.version_len;
    m.model.ptr = (const uint8_t *)model;
    m.model.len = (uint16_t)strlen(model);
    m.security_counter = counter;
    m.created = 1700000000u;
    m.pubkey = pubkey;
    n = tcpota_manifest_encode_body(&m, man, sizeof(man) - TCPOTA_SIG_LEN);
    assert_true(n > 0);
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, sk);
    simg.manifest = man;
    simg.manifest_len = (uint16_t)(n + TCPOTA_SIG_LEN);
}

static void trust(const uint8_t pk[32])
{
    assert_true(dev_nkeys < TCPOTA_ESP_MAX_KEYS);
    memcpy(dev_keys[dev_nkeys++], pk, 32);
}

/* Restarts the device with what dev_keys/dev_secret now say. */
static void restart_device(void)
{
    reboot();
    assert_int_equal(device_start(1), 0);
}

/* A refused offer left flash, the OTA state and the boot choice alone. */
static void assert_nothing_written(unsigned erases_before)
{
    assert_int_equal(esp_fake_erases(), erases_before);
    assert_int_equal(esp_fake_open_handles(), 0);
    assert_false(nvs_has(TCPOTA_KEY_RESUME));
    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(0));
    assert_string_equal(esp_app_get_description()->version, "1.0.0");
}

static void test_signed_offer_accepted(void **state)
{
    uint8_t old_pk[32], old_sk[64], b[16];

    (void)state;
    crypto_sign_keypair(old_pk, old_sk);
    crypto_sign_keypair(sign_pk, sign_sk);
    trust(old_pk); /* key rotation: the image is signed by the second key */
    trust(sign_pk);
    restart_device();
    sign_image_with(sign_pk, sign_sk, "ota_client", 3);
    assert_true(run_conn(0) >= 0);
    assert_true(accepted);
    assert_update_installed();
    /* Confirmed at boot: the device's security counter rises to the image's. */
    restart_device();
    assert_string_equal(esp_app_get_description()->version, "2.0.0");
    assert_int_equal(port.kv_get(port.ctx, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 3);
}

static void test_unsigned_offer_declined(void **state)
{
    unsigned erases;

    (void)state;
    crypto_sign_keypair(sign_pk, sign_sk);
    trust(sign_pk);
    restart_device();
    erases = esp_fake_erases();
    run_conn(0); /* simg carries no manifest */
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_UNSIGNED);
    assert_false(accepted);
    assert_int_equal(tcpota_srv_get_state(&srv), TCPOTA_SRV_CLOSING); /* told why */
    assert_nothing_written(erases);
}

/* Each wrongly signed offer is declined with its reason, before a byte. */
static void declined_with(int reason)
{
    unsigned erases = esp_fake_erases();

    run_conn(0);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, reason);
    assert_false(accepted);
    assert_int_equal(esp_fake_erases(), erases);
    assert_int_equal(esp_fake_open_handles(), 0);
}

static void test_wrongly_signed_offers_declined(void **state)
{
    uint8_t pk2[32], sk2[64];
    struct tcpota_manifest m;
    unsigned erases;

    (void)state;
    crypto_sign_keypair(sign_pk, sign_sk);
    crypto_sign_keypair(pk2, sk2);
    trust(sign_pk);
    restart_device();
    erases = esp_fake_erases();

    /* Names the trusted key, signed by another: the port's Ed25519 says no. */
    sign_image_with(sign_pk, sk2, "ota_client", 1);
    declined_with(TCPOTA_ERR_BADSIG);
    /* Signed properly, then one byte of the signed body changed. */
    sign_image_with(sign_pk, sign_sk, "ota_client", 1);
    assert_int_equal(tcpota_manifest_parse(man, simg.manifest_len, &m), 0);
    man[m.sha256 - man] ^= 0x01;
    declined_with(TCPOTA_ERR_BADSIG);
    /* Signed by a key the device does not trust. */
    sign_image_with(pk2, sk2, "ota_client", 1);
    declined_with(TCPOTA_ERR_NOKEY);
    /* Signed by the trusted key for another model. */
    sign_image_with(sign_pk, sign_sk, "other_board", 1);
    declined_with(TCPOTA_ERR_MODEL);
    assert_nothing_written(erases);

    /* The same offer signed properly goes through. */
    assert_int_equal(device_start(1), 0);
    sign_image_with(sign_pk, sign_sk, "ota_client", 1);
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
}

static void hex(const char *h, uint8_t *out, size_t len)
{
    assert_int_equal(sodium_hex2bin(out, len, h, strlen(h), NULL, NULL, NULL), 0);
}

/* RFC 8032, 7.1, tests 1 and 2: the port's Ed25519 is standard Ed25519. */
static void test_ed25519_rfc8032(void **state)
{
    uint8_t pk[32], sig[64], msg = 0x72;

    (void)state;
    assert_non_null(port.ed25519_verify);
    hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", pk, 32);
    hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
        "1cf9b46bd25bf5f0595bbe24655141438e7a100b", sig, 64);
    assert_int_equal(port.ed25519_verify(port.ctx, sig, (const uint8_t *)"", 0, pk), 0);
    assert_int_equal(port.ed25519_verify(port.ctx, sig, &msg, 1, pk), TCPOTA_ERR_BADSIG);
    hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", pk, 32);
    hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
        "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00", sig, 64);
    assert_int_equal(port.ed25519_verify(port.ctx, sig, &msg, 1, pk), 0);
    sig[63] ^= 0x40;
    assert_int_equal(port.ed25519_verify(port.ctx, sig, &msg, 1, pk), TCPOTA_ERR_BADSIG);
}

/* ---- authentication -------------------------------------------------- */

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block). */
static void test_hmac_rfc4231(void **state)
{
    static const char *want[3] = {
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    };
    static const char *data[3] = {"Hi There", "what do ya want for nothing?",
                                  "Test Using Larger Than Block-Size Key - Hash Key First"};
    uint8_t key[3][131], out[32], expect[32];
    size_t key_len[3] = {20, 4, 131};
    unsigned calls = esp_fake_psa_mac_calls();

    (void)state;
    memset(key[0], 0x0b, 20);
    memcpy(key[1], "Jefe", 4);
    memset(key[2], 0xaa, 131);
    assert_non_null(port.hmac_sha256);
    for (int i = 0; i < 3; i++) {
        hex(want[i], expect, 32);
        assert_int_equal(port.hmac_sha256(port.ctx, key[i], key_len[i], (const uint8_t *)data[i],
                                          strlen(data[i]), out),
                         0);
        assert_memory_equal(out, expect, 32);
        assert_int_equal(esp_fake_psa_keys(), 0); /* psa_destroy_key() after each */
    }
    assert_int_equal(esp_fake_psa_mac_calls() - calls, 3);
}

/* A PSA error of any step becomes a tcpota error, names its call, and
 * leaves no key behind. */
static void test_hmac_errors_mapped(void **state)
{
    uint8_t out[32];
    static const struct {
        const char *call;
        psa_status_t st;
        int tcpota;
    } cases[] = {
        {"psa_import_key", PSA_ERROR_INSUFFICIENT_MEMORY, TCPOTA_ERR_NOSPC},
        {"psa_import_key", PSA_ERROR_NOT_SUPPORTED, TCPOTA_ERR_NOTSUP},
        {"psa_mac_compute", PSA_ERROR_INVALID_ARGUMENT, TCPOTA_ERR_INVAL},
        {"psa_mac_compute", PSA_ERROR_HARDWARE_FAILURE, TCPOTA_ERR_IO},
        {"psa_mac_compute", PSA_ERROR_BAD_STATE, TCPOTA_ERR_STATE},
        {"psa_destroy_key", PSA_ERROR_CORRUPTION_DETECTED, TCPOTA_ERR_IO},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        esp_fake_fail_psa(cases[i].call, cases[i].st);
        ep.last_call = NULL;
        assert_int_equal(port.hmac_sha256(port.ctx, (const uint8_t *)"k", 1,
                                          (const uint8_t *)"m", 1, out),
                         cases[i].tcpota);
        assert_int_equal(ep.last_err, cases[i].st);
        assert_non_null(ep.last_call);
        assert_string_equal(ep.last_call, cases[i].call);
        esp_fake_fail_psa(NULL, PSA_SUCCESS);
        if (strcmp(cases[i].call, "psa_destroy_key") != 0) {
            assert_int_equal(esp_fake_psa_keys(), 0);
        } else {
            assert_int_equal(psa_destroy_key(1), PSA_SUCCESS); /* the fake's only key */
        }
    }
}

/* ---- SHA-256 through PSA --------------------------------------------- */

/* The port's streaming SHA-256 of msg, fed in pieces of `piece` bytes. */
static void port_sha256(const uint8_t *msg, size_t len, size_t piece, uint8_t out[32])
{
    assert_int_equal(port.sha256_begin(port.ctx), 0);
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        assert_int_equal(port.sha256_update(port.ctx, msg + off, n), 0);
    }
    assert_int_equal(port.sha256_finish(port.ctx, out), 0);
}

/* FIPS 180-2 / NIST CAVS vectors: "", "abc", the 448-bit message, and a
 * million 'a' (fed in 1000-byte pieces); each short one also at every
 * split point, as one stream must hash like one call. */
static void test_sha256_known_vectors(void **state)
{
    static const char *msg[3] = {"", "abc",
                                 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"};
    static const char *want[3] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    };
    static uint8_t million[1000000];
    uint8_t out[32], expect[32];

    (void)state;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(msg[i]);
        hex(want[i], expect, 32);
        for (size_t piece = 1; piece <= (len ? len : 1); piece++) {
            port_sha256((const uint8_t *)msg[i], len, piece, out);
            assert_memory_equal(out, expect, 32);
        }
    }
    memset(million, 'a', sizeof(million));
    port_sha256(million, sizeof(million), 1000, out);
    hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", expect, 32);
    assert_memory_equal(out, expect, 32);
    /* A hash begun again drops the unfinished one (psa_hash_abort). */
    assert_int_equal(port.sha256_begin(port.ctx), 0);
    assert_int_equal(port.sha256_update(port.ctx, (const uint8_t *)"xyz", 3), 0);
    port_sha256((const uint8_t *)"abc", 3, 3, out);
    hex(want[1], expect, 32);
    assert_memory_equal(out, expect, 32);
    assert_int_equal(esp_fake_psa_hash_ops(), 0);
    assert_int_equal(port.sha256_update(port.ctx, (const uint8_t *)"a", 1), TCPOTA_ERR_STATE);
    /* Deinit drops an unfinished one too. */
    assert_int_equal(port.sha256_begin(port.ctx), 0);
    tcpota_esp_port_deinit(&ep);
    assert_int_equal(esp_fake_psa_hash_ops(), 0);
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
}

static void test_sha256_errors_mapped(void **state)
{
    uint8_t out[32], id[TCPOTA_ID_LEN];

    (void)state;
    esp_fake_fail_psa("psa_hash_setup", PSA_ERROR_NOT_SUPPORTED);
    assert_int_equal(port.sha256_begin(port.ctx), TCPOTA_ERR_NOTSUP);
    assert_string_equal(ep.last_call, "psa_hash_setup");
    assert_int_equal(ep.last_err, PSA_ERROR_NOT_SUPPORTED);
    esp_fake_fail_psa("psa_hash_update", PSA_ERROR_HARDWARE_FAILURE);
    ep.run_known = 0; /* hashed at the start: hashed again */
    assert_int_equal(tcpota_esp_running_id(&ep, id), TCPOTA_ERR_IO);
    assert_string_equal(ep.last_call, "psa_hash_update");
    esp_fake_fail_psa("psa_hash_finish", PSA_ERROR_INSUFFICIENT_MEMORY);
    assert_int_equal(port.sha256_begin(port.ctx), 0);
    assert_int_equal(port.sha256_finish(port.ctx, out), TCPOTA_ERR_NOSPC);
    assert_string_equal(ep.last_call, "psa_hash_finish");
    esp_fake_fail_psa(NULL, PSA_SUCCESS);
    assert_int_equal(esp_fake_psa_hash_ops(), 0); /* each failed hash was aborted */
    assert_int_equal(tcpota_esp_running_id(&ep, id), 0); /* all well again */
    assert_memory_equal(id, running_id, TCPOTA_ID_LEN);
}

/* psa_crypto_init() comes first: the fake (like Mbed TLS) refuses PSA calls
 * before it, and forgets it at a reset; the port calls it at init and
 * fails plainly when it fails. */
static void test_psa_init_first(void **state)
{
    uint8_t out[32];
    size_t len;
    unsigned before;

    (void)state;
    reboot(); /* a reset: PSA not initialised */
    assert_int_equal(psa_hash_compute(PSA_ALG_SHA_256, (const uint8_t *)"abc", 3, out,
                                      sizeof(out), &len),
                     PSA_ERROR_BAD_STATE);
    before = esp_fake_psa_init_calls();
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
    assert_int_equal(esp_fake_psa_init_calls() - before, 1);
    assert_int_equal(port.sha256_begin(port.ctx), 0);
    assert_int_equal(port.sha256_finish(port.ctx, out), 0);
    assert_int_equal(port.hmac_sha256(port.ctx, (const uint8_t *)"k", 1, (const uint8_t *)"m",
                                      1, out),
                     0);
    tcpota_esp_port_deinit(&ep);

    reboot();
    esp_fake_fail_psa("psa_crypto_init", PSA_ERROR_INSUFFICIENT_MEMORY);
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_ERR_INVALID_STATE);
    assert_string_equal(ep.last_call, "psa_crypto_init");
    assert_int_equal(ep.last_err, PSA_ERROR_INSUFFICIENT_MEMORY);
    assert_false(ep.nvs_open);
    esp_fake_fail_psa(NULL, PSA_SUCCESS);
    assert_int_equal(device_start(1), 0);
}

/* The factory writes the secret into NVS (nvs_partition_gen on a real line). */
static void provision_secret(const uint8_t *secret, size_t len)
{
    nvs_handle_t h;

    assert_int_equal(nvs_flash_init_partition(TCPOTA_ESP_NVS_PARTITION), ESP_OK);
    assert_int_equal(nvs_open_from_partition(TCPOTA_ESP_NVS_PARTITION, TCPOTA_ESP_NVS_NAMESPACE,
                                             NVS_READWRITE, &h),
                     ESP_OK);
    assert_int_equal(nvs_set_blob(h, TCPOTA_ESP_KEY_SECRET, secret, len), ESP_OK);
    assert_int_equal(nvs_commit(h), ESP_OK);
    nvs_close(h);
}

/* What tcpota_esp_start() does: the secret comes from NVS after a reset. */
static int secret_from_nvs(void)
{
    int n;

    reboot();
    assert_int_equal(tcpota_esp_port_init(&ep, &port), ESP_OK);
    n = tcpota_esp_load_secret(&ep, dev_secret, sizeof(dev_secret));
    tcpota_esp_port_deinit(&ep);
    dev_secret_len = n > 0 ? (size_t)n : 0;
    assert_int_equal(device_start(1), 0);
    return n;
}

static void test_auth_with_secret_from_nvs(void **state)
{
    uint8_t secret[32];
    unsigned calls;
    struct tcpota_msg hello;

    (void)state;
    randombytes_buf(secret, sizeof(secret));
    provision_secret(secret, sizeof(secret));
    assert_int_equal(secret_from_nvs(), 32);
    assert_memory_equal(dev_secret, secret, 32);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.features & TCPOTA_F_AUTH, TCPOTA_F_AUTH);
    memcpy(srv_secret, secret, sizeof(secret));
    srv_secret_len = sizeof(secret);
    calls = esp_fake_psa_mac_calls();
    assert_true(run_conn(0) >= 0);
    assert_int_equal(srv_auth_ok, 1);
    assert_int_equal(esp_fake_psa_mac_calls() - calls, 1); /* through psa_mac_compute */
    assert_update_installed();
}

static void test_auth_with_wrong_secret_denied(void **state)
{
    uint8_t secret[32];
    unsigned erases;

    (void)state;
    randombytes_buf(secret, sizeof(secret));
    provision_secret(secret, sizeof(secret));
    assert_int_equal(secret_from_nvs(), 32);
    randombytes_buf(srv_secret, 32); /* the server holds another secret */
    srv_secret_len = 32;
    erases = esp_fake_erases();
    assert_int_equal(run_conn(0), TCPOTA_ERR_DENIED);
    assert_int_equal(srv_auth_ok, 0);
    assert_nothing_written(erases);
}

static void test_no_secret_no_auth(void **state)
{
    struct tcpota_msg hello;
    unsigned calls = esp_fake_psa_mac_calls();

    (void)state;
    assert_int_equal(secret_from_nvs(), 0); /* nothing provisioned */
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.features & TCPOTA_F_AUTH, 0);
    /* A server that requires authentication gets nothing it could use. */
    randombytes_buf(srv_secret, 32);
    srv_secret_len = 32;
    assert_int_equal(run_conn(0), TCPOTA_ERR_DENIED);
    assert_int_equal(srv_auth_ok, -1);
    assert_int_equal(esp_fake_psa_mac_calls(), calls);
}

static void test_load_secret_limits(void **state)
{
    uint8_t big[TCPOTA_ESP_SECRET_MAX + 1], buf[TCPOTA_ESP_SECRET_MAX];

    (void)state;
    memset(big, 0x5a, sizeof(big));
    provision_secret(big, TCPOTA_ESP_SECRET_MAX);
    assert_int_equal(tcpota_esp_load_secret(&ep, buf, sizeof(buf)), TCPOTA_ESP_SECRET_MAX);
    provision_secret(big, sizeof(big)); /* one byte too long */
    assert_int_equal(tcpota_esp_load_secret(&ep, buf, sizeof(buf)), TCPOTA_ERR_NOSPC);
    for (size_t i = 0; i < sizeof(buf); i++) {
        assert_int_equal(buf[i], 0); /* no half-read secret left behind */
    }
    provision_secret(big, 0);
    assert_int_equal(tcpota_esp_load_secret(&ep, buf, sizeof(buf)), TCPOTA_ERR_RANGE);
    assert_int_equal(tcpota_esp_load_secret(&ep, buf, 0), TCPOTA_ERR_INVAL);
}

/* ---- CONFIG_TCPOTA_TRUSTED_KEYS -------------------------------------- */

static uint8_t keys[TCPOTA_ESP_MAX_KEYS][TCPOTA_PUBKEY_LEN];

static int parse(const char *text, size_t *bad)
{
    return tcpota_esp_parse_keys(text, keys, TCPOTA_ESP_MAX_KEYS, bad);
}

static void test_parse_keys(void **state)
{
    uint8_t k1[32], k2[32];
    char h1[65], h2[65], text[400];
    size_t bad = 99;

    (void)state;
    randombytes_buf(k1, 32);
    randombytes_buf(k2, 32);
    sodium_bin2hex(h1, sizeof(h1), k1, 32);
    sodium_bin2hex(h2, sizeof(h2), k2, 32);

    /* Good: one key; two with ", "; upper case; separators around. */
    assert_int_equal(parse(h1, &bad), 1);
    assert_memory_equal(keys[0], k1, 32);
    snprintf(text, sizeof(text), "%s, %s", h1, h2);
    assert_int_equal(parse(text, &bad), 2);
    assert_memory_equal(keys[0], k1, 32);
    assert_memory_equal(keys[1], k2, 32);
    for (char *c = h2; *c; c++) {
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 'a' + 'A' : *c);
    }
    snprintf(text, sizeof(text), " ,%s\t\n%s,, ", h2, h1);
    assert_int_equal(parse(text, &bad), 2);
    assert_memory_equal(keys[0], k2, 32);
    assert_memory_equal(keys[1], k1, 32);

    /* Empty: no key (unsigned images accepted, the task warns). */
    assert_int_equal(parse("", &bad), 0);
    assert_int_equal(parse(NULL, &bad), 0);
    assert_int_equal(parse(" , ", &bad), 0);

    /* Bad hex in the second key. */
    snprintf(text, sizeof(text), "%s %s", h1, h1);
    text[65 + 10] = 'g';
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_INVAL);
    assert_int_equal(bad, 1);
    snprintf(text, sizeof(text), "0x%.62s", h1);
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_INVAL);
    assert_int_equal(bad, 0);
    /* Wrong length: 63 and 65 digits, and a key cut in two by a space. */
    snprintf(text, sizeof(text), "%.63s", h1);
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_INVAL);
    snprintf(text, sizeof(text), "%s0", h1);
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_INVAL);
    snprintf(text, sizeof(text), "%.32s %s", h1, h1 + 32);
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_INVAL);
    assert_int_equal(bad, 0);
    /* One key more than the device holds. */
    snprintf(text, sizeof(text), "%s %s %s %s %s", h1, h1, h1, h1, h1);
    assert_int_equal(parse(text, &bad), TCPOTA_ERR_NOSPC);
    assert_int_equal(bad, TCPOTA_ESP_MAX_KEYS);
    assert_int_equal(tcpota_esp_parse_keys(h1, NULL, 0, NULL), TCPOTA_ERR_NOSPC);
}

#ifdef ESP_FAKE_NO_ROLLBACK
/* Built with ESP_FAKE_NO_ROLLBACK (test_port_esp_norollback): a bootloader
 * without rollback, ESP-IDF's default. A new signed image boots final, and
 * the start after it confirms it: the report goes to the server, the
 * anti-rollback counter rises (before: neither, ever). */
static void test_final_image_confirmed_without_rollback(void **state)
{
    esp_ota_img_states_t st;
    struct tcpota_msg hello;
    uint8_t b[16];

    (void)state;
    crypto_sign_keypair(sign_pk, sign_sk);
    trust(sign_pk);
    restart_device();
    sign_image_with(sign_pk, sign_sk, "ota_client", 5);
    assert_true(run_conn(0) >= 0);
    assert_update_installed();
    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(1));
    /* No state at all (ESP_OTA_IMG_UNDEFINED, as ESP-IDF says it): never pending. */
    assert_int_equal(esp_ota_get_state_partition(esp_fake_partition(1), &st), ESP_ERR_NOT_FOUND);
    assert_int_equal(device_start(0), 0); /* no health verdict to give */
    assert_int_equal(port.kv_get(port.ctx, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 5);
    assert_false(nvs_has(TCPOTA_KEY_LAST));
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_CONFIRMED);
    assert_memory_equal(hello.u.hello.report_id, simg.id, TCPOTA_ID_LEN);
}
#endif


#ifdef ESP_FAKE_SECURE_BOOT_V2
/* Secure Boot v2: `idf.py build` (espsecure sign_data) pads the image to a
 * 4 KiB boundary and appends a 4096-byte signature sector; the .bin, and
 * so the server's image id, is all of it. esp_image_get_metadata() gives
 * the length without the signature sector, and the running id hashed only
 * that: the server never saw the device run its image (offered it at every
 * check-in, never "up to date"), and without rollback the image set to
 * boot was never recognised at its start (no report, no counter). */
#define SB_IMAGE_LEN 60000u /* up to and with the appended hash */
#define SB_SIGNED_LEN (((SB_IMAGE_LEN + 4095u) & ~4095u) + 4096u)
_Static_assert(SB_SIGNED_LEN <= IMG_SIZE, "the signed image fits the buffer");

static void test_running_id_covers_signature_sector(void **state)
{
    struct tcpota_msg hello;
    uint8_t id[TCPOTA_ID_LEN];

    (void)state;
    esp_fake_make_image(image, SB_IMAGE_LEN, "2.0.0", 7);
    memset(image + SB_IMAGE_LEN, 0xff, SB_SIGNED_LEN - 4096u - SB_IMAGE_LEN);
    for (uint32_t i = SB_SIGNED_LEN - 4096u; i < SB_SIGNED_LEN; i++) {
        image[i] = (uint8_t)(i * 7u + 3u); /* the signature block(s) */
    }
    crypto_hash_sha256(simg.id, image, SB_SIGNED_LEN); /* tcpota serve's id of the .bin */
    simg.size = SB_SIGNED_LEN;
    assert_true(run_conn(0) >= 0);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_memory_equal(esp_fake_flash(esp_fake_partition(1)), image, SB_SIGNED_LEN);
    reboot();
    assert_true(esp_ota_get_running_partition() == esp_fake_partition(1));
    assert_int_equal(device_start(1), 0);
    assert_int_equal(tcpota_esp_running_id(&ep, id), 0);
    assert_memory_equal(id, simg.id, TCPOTA_ID_LEN);
    hello_of_next_connection(&hello);
    assert_int_equal(hello.u.hello.report_result, TCPOTA_RESULT_CONFIRMED);
    run_conn(0);
    assert_int_equal(dev.state, TCPOTA_DEV_UP_TO_DATE);
}
#endif

int main(void)
{
#if defined(ESP_FAKE_SECURE_BOOT_V2)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_running_id_covers_signature_sector, setup, teardown),
    };
#elif defined(ESP_FAKE_NO_ROLLBACK)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_final_image_confirmed_without_rollback, setup,
                                        teardown),
    };
#else
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_reboot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_record_for_other_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_image_mid_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_record_for_other_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_health_check_rolls_back_and_reports, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bootloader_rollback_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integrity_failure_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_end_refusal_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_inside_reject_keeps_verdict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back_image_not_downloaded_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_boot_failure_not_downloaded_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_space_event_has_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_update_while_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flash_failure_ends_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_records_read_as_absent, setup, teardown),
        cmocka_unit_test(test_err_mapping),
        cmocka_unit_test_setup_teardown(test_signed_offer_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsigned_offer_declined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrongly_signed_offers_declined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ed25519_rfc8032, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_rfc4231, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hmac_errors_mapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_known_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha256_errors_mapped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_psa_init_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_safe_from_app_nvs_erase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nvs_partition_error_not_erased, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_with_secret_from_nvs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_with_wrong_secret_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_no_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_secret_limits, setup, teardown),
        cmocka_unit_test(test_parse_keys),
    };
#endif
    if (sodium_init() < 0) {
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
