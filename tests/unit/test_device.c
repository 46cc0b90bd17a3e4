/* test_device.c - the device session against the real server session in
 * memory (two peers, no sockets), over the fake port: fresh updates, cuts
 * at many points, reboots mid-image, stale resume records, bad offers,
 * corrupted frames, integrity failures, boot confirmation and reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "fake_port.h"
#include "tcpota/crc32c.h"
#include "tcpota/device.h"
#include "tcpota/server.h"
#include "tcpota/manifest.h"

#define IMG_SIZE 70000u
#define ACK_IV 8192u

static uint8_t image[IMG_SIZE];
static struct tcpota_srv_image simg;
static struct fake_port *fp;
static struct tcpota_dev dev;
static uint8_t drx[4096 + 8], dtx[512];
static uint8_t srx[1024], stx[2048];
static struct tcpota_srv srv;
static uint8_t running[32];
static uint8_t trusted[1][32];
static size_t ntrusted;
static const uint8_t *secret;
static const char *dev_version = "1.0.0";
/* Set: run_conn leaves the connection open (no tcpota_dev_disconnect). */
static int keep_open;

/* Server -> device byte stream of one connection. */
static uint8_t wire[IMG_SIZE * 2 + 65536];
static size_t wire_len, wire_read;
static int corrupted;

static void make_image(uint32_t seed)
{
    for (uint32_t i = 0; i < IMG_SIZE; i++) image[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    memset(&simg, 0, sizeof(simg));
    crypto_hash_sha256(simg.id, image, IMG_SIZE);
    simg.size = IMG_SIZE;
    simg.version = "2.0.0";
    simg.version_len = 5;
}

static void dev_init(void)
{
    struct tcpota_dev_config c;
    memset(&c, 0, sizeof(c));
    c.port = &fp->port;
    c.device_id = "dev-1";
    c.model = "esp32";
    c.version = dev_version;
    c.running_id = running;
    c.trusted_keys = (const uint8_t(*)[32])trusted;
    c.n_trusted_keys = ntrusted;
    c.secret = secret;
    c.secret_len = secret ? 32 : 0;
    c.rx_buf = drx; c.rx_cap = sizeof(drx);
    c.tx_buf = dtx; c.tx_cap = sizeof(dtx);
    c.ack_interval = ACK_IV;
    assert_int_equal(tcpota_dev_init(&dev, &c), 0);
}

static int setup(void **state)
{
    (void)state;
    fp = malloc(sizeof(*fp));
    fake_port_init(fp);
    ntrusted = 0;
    secret = NULL;
    keep_open = 0;
    dev_version = "1.0.0";
    memset(running, 0x77, sizeof(running));
    make_image(1);
    dev_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fake_port_free(fp);
    free(fp);
    return 0;
}

static void srv_start(void)
{
    struct tcpota_srv_config c;
    memset(&c, 0, sizeof(c));
    c.image = &simg;
    c.rx_buf = srx; c.rx_cap = sizeof(srx);
    c.tx_buf = stx; c.tx_cap = sizeof(stx);
    c.chunk = 1000; /* not a divisor of the sector: frames straddle sectors */
    assert_int_equal(tcpota_srv_init(&srv, &c), 0);
}

/* Moves the server's pending output (control, then DATA) onto the wire. */
static void srv_flush(int corrupt_at)
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
    if (corrupt_at >= 0 && !corrupted && (size_t)corrupt_at < wire_len) {
        wire[corrupt_at] ^= 0x10;
        corrupted = 1;
    }
}

/* Runs one connection until it ends, or until `cut` server bytes have
 * reached the device. Returns the device's last input result. */
static int run_conn(size_t cut, int corrupt_at, size_t *delivered)
{
    struct tcpota_dev_event ev;
    struct tcpota_srv_event sev;
    int rc = 0;

    wire_len = wire_read = 0;
    corrupted = 0;
    srv_start();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    for (int rounds = 0; rounds < 100000; rounds++) {
        const uint8_t *p;
        size_t n = tcpota_dev_output(&dev, &p), off = 0;
        while (off < n) {
            int used = tcpota_srv_input(&srv, p + off, n - off, &sev);
            if (used < 0) break;
            off += (size_t)used;
        }
        tcpota_dev_output_done(&dev, n);
        srv_flush(corrupt_at);
        if (wire_read == wire_len) break; /* nothing more to say */
        size_t room = wire_len - wire_read;
        if (cut && wire_read + room > cut) room = cut > wire_read ? cut - wire_read : 0;
        if (room > 700) room = 700; /* odd pieces */
        if (room == 0) break;
        rc = tcpota_dev_input(&dev, wire + wire_read, room, &ev);
        if (rc < 0) break;
        wire_read += (size_t)rc;
        if (cut && wire_read >= cut) break;
    }
    if (delivered) *delivered = wire_read;
    if (!keep_open) tcpota_dev_disconnect(&dev);
    return rc;
}

static void assert_slot_is_image(void)
{
    assert_memory_equal(fp->slot, image, IMG_SIZE);
    assert_int_equal(fp->boot_set, 1);
}

static void test_fresh_update(void **state)
{
    (void)state;
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_int_equal(tcpota_srv_get_state(&srv), TCPOTA_SRV_CLOSING);
    assert_slot_is_image();
    /* resume record dropped, last-update record kept for the boot check */
    uint8_t b[64];
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_RESUME, b, sizeof(b)), TCPOTA_ERR_NOENT);
    assert_true(fp->port.kv_get(fp, TCPOTA_KEY_LAST, b, sizeof(b)) > 0);
    assert_int_equal(fp->begins, 1);
}

/* Cuts the connection at many points (every 997th byte of the stream):
 * each time the next connection resumes from the last whole sector written
 * and fetches less than a sector again. */
static void test_cut_anywhere_resumes(void **state)
{
    (void)state;
    for (size_t cut = 1; cut < IMG_SIZE + 2000; cut += 997) {
        teardown(NULL);
        setup(NULL);
        size_t got = 0;
        run_conn(cut, -1, &got);
        uint32_t durable = dev.resume.valid ? dev.resume.offset : 0;
        uint32_t written = fp->wpos;
        if (dev.state == TCPOTA_DEV_UPDATED) continue; /* cut after the end */
        run_conn(0, -1, NULL);
        assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
        assert_slot_is_image();
        /* The cut kept the last whole sector written (tcpota_dev_disconnect). */
        assert_true(written - durable < TCPOTA_SECTOR_SIZE);
        if (durable) {
            assert_int_equal(fp->resumes, 1);
            assert_int_equal(fp->resumed_at, durable);
        }
    }
}

static void test_reboot_mid_image_resumes(void **state)
{
    (void)state;
    run_conn(40000, -1, NULL);
    uint32_t durable = dev.resume.offset;
    assert_true(durable >= ACK_IV);
    dev_init(); /* power cycle: state comes back from the records */
    assert_int_equal(dev.resume.valid, 1);
    assert_int_equal(dev.resume.offset, durable);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
    assert_int_equal(fp->resumed_at, durable);
}

/* What a connection wrote is kept to its last whole sector, past the last
 * checkpoint: by tcpota_dev_keep (a stop: with its ACK) and by
 * tcpota_dev_disconnect (a cut). Only a power cut goes back to the last
 * checkpoint. */
static void test_keep_last_sector(void **state)
{
    struct tcpota_dev_resume r;
    struct tcpota_decoder dec;
    struct tcpota_frame f;
    struct tcpota_msg m;
    const uint8_t *out;
    uint8_t b[64], rx[600];
    uint32_t point;
    size_t n;
    int k;
    (void)state;

    keep_open = 1;
    run_conn(14000, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_RECEIVING);
    point = fp->wpos - fp->wpos % TCPOTA_SECTOR_SIZE;
    assert_true(point > dev.resume.offset); /* past the last checkpoint */
    assert_int_equal(dev.resume.offset % ACK_IV, 0);
    /* A stop: the point saved, and its ACK queued for the server. */
    assert_int_equal(tcpota_dev_keep(&dev), 1);
    assert_int_equal(dev.resume.offset, point);
    k = fp->port.kv_get(fp, TCPOTA_KEY_RESUME, b, sizeof(b));
    assert_true(k > 0);
    assert_int_equal(tcpota_dev_resume_parse(b, (size_t)k, FAKE_SLOT, &r), 0);
    assert_int_equal(r.offset, point);
    n = tcpota_dev_output(&dev, &out);
    assert_int_equal(tcpota_decoder_init(&dec, rx, sizeof(rx)), 0);
    assert_true(tcpota_decoder_feed(&dec, out, n, &f) > 0);
    assert_int_equal(tcpota_msg_decode(&f, &m), 0);
    assert_int_equal(m.type, TCPOTA_T_ACK);
    assert_int_equal(m.u.ack.offset, point);
    /* Nothing new since: nothing saved, nothing queued. */
    assert_int_equal(tcpota_dev_keep(&dev), 0);
    assert_int_equal(tcpota_dev_output(&dev, &out), n);
    tcpota_dev_disconnect(&dev);
    assert_int_equal(tcpota_dev_keep(&dev), 0); /* not receiving */
    keep_open = 0;
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
    assert_int_equal(fp->resumed_at, point);
}

/* A cut keeps the last whole sector; if the storage refuses to save it,
 * the checkpoint before stands and the next connection resumes there. */
static void test_cut_keeps_sector_or_checkpoint(void **state)
{
    uint32_t ckpt;
    (void)state;

    keep_open = 1;
    run_conn(14000, -1, NULL);
    ckpt = dev.resume.offset;
    assert_true(fp->wpos - fp->wpos % TCPOTA_SECTOR_SIZE > ckpt);
    fp->cut_at = 1; /* the next kv_set fails */
    fp->cut_ops = 0;
    tcpota_dev_disconnect(&dev);
    fp->cut_at = 0;
    assert_int_equal(dev.resume.offset, ckpt);
    assert_int_equal(dev.state, TCPOTA_DEV_IDLE);
    keep_open = 0;
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
    assert_int_equal(fp->resumed_at, ckpt);
    /* Again, the storage willing: the cut keeps the sector. */
    teardown(NULL);
    setup(NULL);
    run_conn(14000, -1, NULL);
    assert_int_equal(dev.resume.offset, fp->wpos - fp->wpos % TCPOTA_SECTOR_SIZE);
    assert_true(dev.resume.offset > ckpt);
}

/* A whole image is no resume point: when its record's drop fails at the
 * end (the image set to boot), the connection's end keeps nothing more of
 * it, the last checkpoint stays the record (a review: a record at the
 * image's last whole sector, and the next connection resumed into the slot
 * set to boot; at a size of whole sectors it would ACCEPT at the end and
 * wait for DATA that never comes). */
static void test_no_resume_point_at_the_end(void **state)
{
    uint8_t b[64];
    int k;
    (void)state;

    fp->fail_erase_key = TCPOTA_KEY_RESUME;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_IO);
    assert_int_equal(fp->boot_set, 1);
    k = fp->port.kv_get(fp, TCPOTA_KEY_RESUME, b, sizeof(b));
    if (k > 0) {
        struct tcpota_dev_resume r;
        assert_int_equal(tcpota_dev_resume_parse(b, (size_t)k, FAKE_SLOT, &r), 0);
        if (r.offset % ACK_IV != 0) {
            fail_msg("a resume point at %u, no checkpoint, of a %u-byte image set to boot",
                     r.offset, IMG_SIZE);
        }
    }
}

static void test_resume_record_for_other_image_discarded(void **state)
{
    (void)state;
    run_conn(40000, -1, NULL);
    assert_true(dev.resume.offset > 0);
    make_image(2); /* server now has a different image */
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
    assert_int_equal(fp->begins, 2);
    assert_int_equal(fp->resumes, 0);
}

/* A resume record for the same id but another size is stale as well: the
 * size is part of what was being written, and its offset may lie past the
 * end of the image now offered. The slot is begun again from zero. */
static void test_resume_record_for_other_size_discarded(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    uint8_t b[600];
    (void)state;
    run_conn(40000, -1, NULL);
    assert_true(dev.resume.offset > 1000);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = 1000; /* below the resume point */
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    int n = tcpota_msg_encode(&m, b, sizeof(b));
    assert_true(n > 0);
    assert_int_equal(tcpota_dev_input(&dev, b, (size_t)n, &ev), n);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_ACCEPTED);
    assert_int_equal(ev.offset, 0);
    assert_int_equal(fp->resumes, 0);
    assert_int_equal(fp->begins, 2);
}

#define RESUME_REC 45 /* version, id, size, offset, CRC32C */

/* Builds a resume record for simg with a valid CRC: what the device could
 * have written, or not (the values are the caller's). */
static void make_resume_record(uint8_t b[RESUME_REC], uint8_t version, uint32_t size,
                               uint32_t offset)
{
    b[0] = version;
    memcpy(b + 1, simg.id, 32);
    tcpota_put_u32(b + 33, size);
    tcpota_put_u32(b + 37, offset);
    tcpota_put_u32(b + 41, tcpota_crc32c(b, 41));
}

static void put_resume_record(uint32_t size, uint32_t offset)
{
    uint8_t b[RESUME_REC];

    make_resume_record(b, 1, size, offset);
    assert_int_equal(fp->port.kv_set(fp, TCPOTA_KEY_RESUME, b, sizeof(b)), 0);
}

/* tcpota_dev_resume_parse(rec, len, slot, ...) == NOENT, *out zeroed. */
static void assert_resume_refused(const uint8_t *rec, size_t len, uint32_t slot)
{
    struct tcpota_dev_resume r;

    memset(&r, 0xa5, sizeof(r));
    assert_int_equal(tcpota_dev_resume_parse(rec, len, slot, &r), TCPOTA_ERR_NOENT);
    assert_int_equal(r.valid, 0);
    assert_int_equal(r.size, 0);
    assert_int_equal(r.offset, 0);
}

/* The parser tools use (tcpota device status) takes what the session
 * takes, and nothing else: each check of the format and of plausibility
 * refuses alone, and each bound is inclusive. */
static void test_resume_parse(void **state)
{
    const uint32_t slot = 16 * TCPOTA_SECTOR_SIZE;
    uint8_t b[RESUME_REC + 1];
    struct tcpota_dev_resume r;

    (void)state;
    make_resume_record(b, 1, slot, slot); /* every bound at its limit */
    assert_int_equal(tcpota_dev_resume_parse(b, RESUME_REC, slot, &r), 0);
    assert_int_equal(r.valid, 1);
    assert_memory_equal(r.id, simg.id, 32);
    assert_int_equal(r.size, slot);
    assert_int_equal(r.offset, slot);
    make_resume_record(b, 1, 1, 0);
    assert_int_equal(tcpota_dev_resume_parse(b, RESUME_REC, slot, &r), 0);
    assert_int_equal(r.offset, 0);

    make_resume_record(b, 1, slot, TCPOTA_SECTOR_SIZE);
    assert_resume_refused(b, RESUME_REC - 1, slot); /* torn */
    assert_resume_refused(b, RESUME_REC + 1, slot); /* another format */
    assert_resume_refused(NULL, 0, slot);
    b[5] ^= 1; /* a flipped bit */
    assert_resume_refused(b, RESUME_REC, slot);
    make_resume_record(b, 2, slot, TCPOTA_SECTOR_SIZE); /* another version */
    assert_resume_refused(b, RESUME_REC, slot);
    make_resume_record(b, 1, TCPOTA_SECTOR_SIZE, 2 * TCPOTA_SECTOR_SIZE); /* past the end */
    assert_resume_refused(b, RESUME_REC, slot);
    make_resume_record(b, 1, slot, TCPOTA_SECTOR_SIZE + 1); /* off a sector */
    assert_resume_refused(b, RESUME_REC, slot);
    make_resume_record(b, 1, slot + 1, TCPOTA_SECTOR_SIZE); /* larger than the slot */
    assert_resume_refused(b, RESUME_REC, slot);
    assert_int_equal(tcpota_dev_resume_parse(b, RESUME_REC, slot, NULL), TCPOTA_ERR_INVAL);
}

/* A record whose CRC holds but whose values this code never writes (an
 * offset past the size or off a sector, an image larger than the slot:
 * another build's record, or a smaller partition now) is not resumed
 * from. The first record is a plausible one: the format is right. */
static void test_implausible_resume_record_dropped(void **state)
{
    (void)state;
    put_resume_record(IMG_SIZE, 2 * TCPOTA_SECTOR_SIZE);
    dev_init();
    assert_int_equal(dev.resume.valid, 1);
    assert_int_equal(dev.resume.offset, 2 * TCPOTA_SECTOR_SIZE);
    put_resume_record(TCPOTA_SECTOR_SIZE, 2 * TCPOTA_SECTOR_SIZE);
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
    put_resume_record(IMG_SIZE, TCPOTA_SECTOR_SIZE + 1);
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
    put_resume_record(fp->port.slot_size + TCPOTA_SECTOR_SIZE, TCPOTA_SECTOR_SIZE);
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
    /* And the next offer starts from zero. */
    run_conn(0, -1, NULL);
    assert_slot_is_image();
    assert_int_equal(fp->resumes, 0);
}

static void test_corrupt_record_ignored(void **state)
{
    (void)state;
    run_conn(40000, -1, NULL);
    fp->kv[0].val[5] ^= 1; /* the first record written is the resume point */
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
    run_conn(0, -1, NULL);
    assert_slot_is_image();
}

static void test_flipped_byte_never_written(void **state)
{
    (void)state;
    int rc = run_conn(0, 30000, NULL);
    assert_int_equal(rc, TCPOTA_ERR_CRC);
    /* Nothing past the corrupt frame reached flash. */
    assert_true(fp->wpos <= 30000);
    assert_memory_equal(fp->slot, image, fp->wpos);
    run_conn(0, -1, NULL);
    assert_slot_is_image();
}

static void test_integrity_failure_not_bootable(void **state)
{
    (void)state;
    simg.id[0] ^= 1; /* the server lies about the hash */
    int rc = run_conn(0, -1, NULL);
    assert_int_equal(rc, TCPOTA_ERR_INTEGRITY);
    assert_int_equal(fp->boot_set, 0);
    assert_int_equal(dev.resume.valid, 0);
    /* One integrity failure may be bytes altered on the way: the image is
     * taken once more, and only the second failure is final. */
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), 0);
    /* ... and a server offers it once more (server.h). */
    assert_int_equal(tcpota_srv_complete_final((uint16_t)-TCPOTA_ERR_INTEGRITY), 0);
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_INTEGRITY);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), TCPOTA_BAD_INTEGRITY);
}

/* A reason past the known ones (a record written by newer firmware, or
 * damaged) reads as none, never past the table of sentences. */
static void test_bad_text_unknown_reason(void **state)
{
    char none[TCPOTA_DEV_BAD_TEXT_MAX], t[TCPOTA_DEV_BAD_TEXT_MAX];
    (void)state;
    tcpota_dev_bad_text(simg.id, TCPOTA_BAD_NONE, none);
    tcpota_dev_bad_text(simg.id, TCPOTA_BAD_BOOT_FAILED + 1, t);
    assert_string_equal(t, none);
    tcpota_dev_bad_text(simg.id, 200, t);
    assert_string_equal(t, none);
    tcpota_dev_bad_text(simg.id, TCPOTA_BAD_BOOT_FAILED, t);
    assert_string_not_equal(t, none);
}

static void test_image_too_big_declined(void **state)
{
    (void)state;
    fp->port.slot_size = 4096;
    dev_init();
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_NOSPC);
    assert_int_equal(fp->begins, 0);
}

/* One byte larger than the slot is too large (the bound, exactly). */
static void test_image_one_byte_too_big_declined(void **state)
{
    (void)state;
    fp->port.slot_size = IMG_SIZE - 1;
    dev_init();
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_NOSPC);
    assert_int_equal(fp->begins, 0);
}

static void test_already_running_declined(void **state)
{
    (void)state;
    memcpy(running, simg.id, 32);
    dev_init();
    /* A server that ignores the running id (serves by version only). */
    struct tcpota_msg m;
    uint8_t b[256];
    wire_len = wire_read = 0;
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = IMG_SIZE;
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    int n = tcpota_msg_encode(&m, b, sizeof(b));
    struct tcpota_dev_event ev;
    assert_int_equal(tcpota_dev_input(&dev, b, (size_t)n, &ev), n);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_DECLINED);
    assert_int_equal(ev.error, TCPOTA_ERR_REFUSED);
}

static int feed_dev(const struct tcpota_msg *m, struct tcpota_dev_event *ev)
{
    uint8_t b[600];
    int n = tcpota_msg_encode(m, b, sizeof(b));
    assert_true(n > 0);
    return tcpota_dev_input(&dev, b, (size_t)n, ev);
}

/* Feeds a WELCOME of protocol `proto` announcing `features`. */
static int feed_welcome(uint8_t proto, uint16_t features)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = proto;
    m.u.welcome.features = features;
    return feed_dev(&m, &ev);
}

/* Feeds the OFFER of a 100-byte image, version 2, with simg's id. */
static int feed_offer(struct tcpota_dev_event *ev)
{
    struct tcpota_msg m;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = 100;
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    return feed_dev(&m, ev);
}

/* Feeds a CHALLENGE with this nonce. */
static int feed_challenge(const uint8_t *nonce)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;

    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_CHALLENGE;
    m.u.challenge.nonce = nonce;
    return feed_dev(&m, &ev);
}

/* NO_UPDATE's RETRY_AFTER and WHY reach the caller in the UP_TO_DATE event. */
static void test_no_update_surfaces_retry_after(void **state)
{
    static const uint32_t sent[] = {0, 7200, 0xffffffffu};
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    (void)state;

    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
        memset(&m, 0, sizeof(m));
        m.type = TCPOTA_T_NO_UPDATE;
        m.u.no_update.retry_after_s = sent[i];
        m.u.no_update.why = (uint16_t)i; /* 0 (none), then 1 and 2 */
        assert_true(feed_dev(&m, &ev) > 0);
        assert_int_equal(ev.type, TCPOTA_DEV_EV_UP_TO_DATE);
        assert_int_equal(ev.retry_after_s, sent[i]);
        assert_int_equal(ev.why, i);
        tcpota_dev_disconnect(&dev);
    }
}

/* A new connection offered a 100-byte image (ACCEPTED), then fed 16 bytes
 * of DATA at offset; returns what the DATA's input returned. */
static int offered_then_data(uint32_t offset, struct tcpota_dev_event *ev)
{
    static const uint8_t bytes[16];
    struct tcpota_msg m;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = 100;
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    assert_true(feed_dev(&m, ev) > 0);
    assert_int_equal(ev->type, TCPOTA_DEV_EV_ACCEPTED);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_DATA;
    m.u.data.offset = offset;
    m.u.data.bytes.ptr = bytes; m.u.data.bytes.len = 16;
    return feed_dev(&m, ev);
}

static void test_data_past_end_and_out_of_state(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    uint8_t bytes[16] = {0};
    (void)state;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_DATA;
    m.u.data.bytes.ptr = bytes; m.u.data.bytes.len = 16;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_STATE); /* no offer yet */

    /* 16 bytes at 90 pass the end of 100 */
    assert_int_equal(offered_then_data(90, &ev), TCPOTA_ERR_RANGE);
    assert_int_equal(fp->writes, 0);
    /* ... and at 85 they end at 101: one byte past is past. */
    assert_int_equal(offered_then_data(85, &ev), TCPOTA_ERR_RANGE);
    assert_int_equal(fp->writes, 0);

    /* A frame that starts past the end is out of range too, not a stale
     * frame to skip: the length check alone (size - offset) wraps around
     * there, so the offset is checked first. */
    assert_int_equal(offered_then_data(200, &ev), TCPOTA_ERR_RANGE);
    assert_int_equal(dev.stale_frames, 0);
    assert_int_equal(fp->writes, 0);

    /* A frame at another offset than expected is skipped, not written. */
    assert_true(offered_then_data(16, &ev) > 0);
    assert_int_equal(fp->writes, 0);
    assert_int_equal(dev.stale_frames, 1);

    /* A second OFFER while receiving is a violation. */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = 100;
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_dev_reason(&dev), "unexpected OFFER");
}

static void test_server_error_frame(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    (void)state;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ERROR;
    m.u.error.code = 16;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_BUSY);
    assert_int_equal(dev.last_error, TCPOTA_ERR_BUSY);
    /* Said to be the server's (a CRC error it found in this device's
     * frames reads otherwise like one of ours); a new connection, or a
     * failure of this side, is not. */
    struct tcpota_dev_transfer t;
    tcpota_dev_get_transfer(&dev, &t);
    assert_int_equal(t.server_error, 1);
    tcpota_dev_disconnect(&dev);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_get_transfer(&dev, &t);
    assert_int_equal(t.server_error, 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK; /* not for a device: its own protocol error */
    assert_true(feed_dev(&m, &ev) < 0);
    tcpota_dev_get_transfer(&dev, &t);
    assert_int_equal(t.server_error, 0);
}

static void test_flash_write_failure_reported(void **state)
{
    (void)state;
    fp->fail_write_at = 5;
    int rc = run_conn(0, -1, NULL);
    assert_int_equal(rc, TCPOTA_ERR_IO);
    assert_int_equal(fp->boot_set, 0);
    fp->fail_write_at = 0;
    run_conn(0, -1, NULL);
    assert_slot_is_image();
}

static void test_boot_confirm_and_report(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    struct tcpota_srv_event sev;
    (void)state;

    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    fp->boot.pending = 1; /* reboot into the new image */
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(fp->valid_calls, 1);
    memcpy(running, simg.id, 32);
    dev_init();
    assert_int_equal(dev.report_result, TCPOTA_RESULT_CONFIRMED);
    /* The report rides in HELLO; the server sees it; its decision (not
     * WELCOME, which precedes AUTH) clears it. */
    srv_start();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    const uint8_t *p;
    size_t n = tcpota_dev_output(&dev, &p);
    assert_true(tcpota_srv_input(&srv, p, n, &sev) > 0);
    assert_int_equal(sev.type, TCPOTA_SRV_EV_HELLO);
    assert_non_null(sev.msg.u.hello.report_id);
    assert_memory_equal(sev.msg.u.hello.report_id, simg.id, 32);
    assert_int_equal(sev.msg.u.hello.report_result, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(sev.offered, 0); /* running the current image */
    tcpota_dev_output_done(&dev, n);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = 1;
    assert_true(feed_dev(&m, &ev) > 0);
    assert_int_equal(dev.report_result, TCPOTA_RESULT_CONFIRMED); /* not yet */
    uint8_t b[64];
    assert_true(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_true(feed_dev(&m, &ev) > 0);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_UP_TO_DATE);
    assert_int_equal(dev.report_result, 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)), TCPOTA_ERR_NOENT);
}

/* A connection that ends after WELCOME (the server died before it stored
 * the report, or AUTH failed) keeps the report for the next HELLO. */
static void test_report_kept_until_decision(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    const uint8_t *p;
    size_t n;
    uint8_t b[64];
    (void)state;

    run_conn(0, -1, NULL);
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 0), 1); /* rolled back */
    dev_init();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    n = tcpota_dev_output(&dev, &p);
    tcpota_dev_output_done(&dev, n);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = 1;
    assert_true(feed_dev(&m, &ev) > 0);
    /* The connection drops here; a new session loads the report again. */
    dev_init();
    assert_int_equal(dev.report_result, TCPOTA_RESULT_ROLLED_BACK);
    assert_true(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)) > 0);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    n = tcpota_dev_output(&dev, &p);
    tcpota_dev_output_done(&dev, n);
    assert_true(feed_dev(&m, &ev) > 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_true(feed_dev(&m, &ev) > 0);
    assert_int_equal(dev.report_result, 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)), TCPOTA_ERR_NOENT);
}

static void test_boot_health_failure_rolls_back(void **state)
{
    (void)state;
    run_conn(0, -1, NULL);
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 0), 1); /* caller must reboot */
    assert_int_equal(fp->invalid_calls, 1);
    assert_int_equal(fp->valid_calls, 0);
    dev_init();
    assert_int_equal(dev.report_result, TCPOTA_RESULT_ROLLED_BACK);
    assert_memory_equal(dev.report_id, simg.id, 32);
    /* Final on the device at once, and so on a server (server.h). */
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), TCPOTA_BAD_ROLLED_BACK);
    assert_int_equal(tcpota_srv_report_final(dev.report_result), 1);
    /* The next boot (old image, not pending) reports nothing new. */
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(fp->valid_calls, 0);
}

static void test_boot_bootloader_rollback_reported(void **state)
{
    (void)state;
    run_conn(0, -1, NULL);
    fp->boot.rolled_back = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    dev_init();
    assert_int_equal(dev.report_result, TCPOTA_RESULT_BOOT_FAILED);
}

static void test_keepalive_and_timeout(void **state)
{
    const uint8_t *p;
    (void)state;

    assert_int_equal(tcpota_dev_connect(&dev, 1000), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    assert_int_equal(tcpota_dev_tick(&dev, 5000), 0);
    assert_int_equal(tcpota_dev_output(&dev, &p), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 11000), 0);
    assert_int_equal(tcpota_dev_output(&dev, &p), 12); /* PING */
    assert_int_equal(p[0], TCPOTA_T_PING);
    assert_true(tcpota_dev_next_tick(&dev) <= 20000);
    assert_int_equal(tcpota_dev_tick(&dev, 31000), TCPOTA_ERR_TIMEDOUT);
    /* The clock may wrap. */
    assert_int_equal(tcpota_dev_connect(&dev, 0xfffff000u), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 0x00001000u), 0);
}

/* Feeds a PING at time t (the server keeps the line busy, nothing else). */
static void ping_at(uint32_t t)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;

    assert_int_equal(tcpota_dev_tick(&dev, t), 0);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = t;
    assert_true(feed_dev(&m, &ev) > 0);
}

/* Bytes that are no progress (PINGs, DATA at another offset) hold a device
 * TCPOTA_DEV_STALL_TIMES x timeout_ms at most, not for ever (a hostile
 * trial's server held one 150 s and counting); a decision or image bytes
 * written restart the count; silence is told apart. */
static void test_stall_without_progress(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    static const uint8_t bytes[16];
    uint32_t t;
    (void)state;

    /* WELCOME, then PINGs every 10 s: no decision. */
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 5000), 0);
    assert_true(feed_welcome(TCPOTA_PROTO_VERSION, 0) > 0);
    for (t = 10000; t < 120000; t += 10000) ping_at(t);
    assert_true(tcpota_dev_next_tick(&dev) <= 10000);
    assert_int_equal(tcpota_dev_tick(&dev, 119999), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 120000), TCPOTA_ERR_TIMEDOUT);
    assert_int_equal(tcpota_dev_stalled(&dev), 1);
    tcpota_dev_disconnect(&dev);
    /* An offer (a decision), then DATA at another offset every 10 s; image
     * bytes written at 60 s restart the count. */
    assert_int_equal(offered_then_data(50, &ev), TCPOTA_FRAME_OVERHEAD + 4 + 16);
    for (t = 10000; t <= 60000; t += 10000) {
        assert_int_equal(tcpota_dev_tick(&dev, t), 0);
        memset(&m, 0, sizeof(m));
        m.type = TCPOTA_T_DATA;
        m.u.data.offset = t == 60000 ? 0 : 50;
        m.u.data.bytes.ptr = bytes;
        m.u.data.bytes.len = 16;
        assert_true(feed_dev(&m, &ev) > 0);
    }
    for (t = 70000; t < 180000; t += 10000) ping_at(t);
    assert_int_equal(tcpota_dev_tick(&dev, 179999), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 180000), TCPOTA_ERR_TIMEDOUT);
    assert_int_equal(tcpota_dev_stalled(&dev), 1);
    tcpota_dev_disconnect(&dev);
    /* Silence is not a stall. */
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    assert_int_equal(tcpota_dev_tick(&dev, 30000), TCPOTA_ERR_TIMEDOUT);
    assert_int_equal(tcpota_dev_stalled(&dev), 0);
}

static void test_init_rejects_bad_config(void **state)
{
    struct tcpota_dev_config c;
    struct tcpota_dev d;
    int (*real_ed25519)(void *, const uint8_t *, const uint8_t *, size_t, const uint8_t *) =
        fp->port.ed25519_verify;
    (void)state;
    memset(&c, 0, sizeof(c));
    c.port = &fp->port;
    c.device_id = "bad\nid";
    c.model = "m"; c.version = "v";
    c.rx_buf = drx; c.rx_cap = sizeof(drx);
    c.tx_buf = dtx; c.tx_cap = sizeof(dtx);
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    /* Strings longer than a HELLO carries: id 65, model 33. */
    c.device_id = "12345678901234567890123456789012345678901234567890123456789012345";
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.device_id = "1234567890123456789012345678901234567890123456789012345678901234";
    assert_int_equal(tcpota_dev_init(&d, &c), 0);
    c.model = "123456789012345678901234567890123";
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.model = "m";
    c.device_id = "ok";
    c.ack_interval = 5000; /* not a sector multiple */
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.ack_interval = 0;
    c.rx_cap = 100;
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.rx_cap = sizeof(drx);
    /* Empty strings: a HELLO could never be made of them (a mutation
     * review: taken at init, every connection then failed otherwise). */
    c.device_id = "";
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.device_id = "ok";
    c.version = "";
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.version = "v";
    /* A transmit buffer shorter than the largest HELLO. */
    c.tx_cap = TCPOTA_DEV_TX_MIN - 1;
    assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
    c.tx_cap = TCPOTA_DEV_TX_MIN;
    assert_int_equal(tcpota_dev_init(&d, &c), 0);
    c.tx_cap = sizeof(dtx);
    /* A secret shorter than TCPOTA_SECRET_MIN is guessable: refused, as the
     * server refuses it; the shortest allowed one is taken. */
    {
        static const uint8_t sec[TCPOTA_SECRET_MAX + 1] = {1};
        c.rx_cap = sizeof(drx);
        c.secret = sec;
        c.secret_len = TCPOTA_SECRET_MIN - 1;
        assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
        c.secret_len = TCPOTA_SECRET_MAX + 1;
        assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
        c.secret_len = TCPOTA_SECRET_MIN;
        assert_int_equal(tcpota_dev_init(&d, &c), 0);
    }
    /* Trusted keys need the keys and a port that verifies Ed25519. */
    {
        static const uint8_t keys[1][32] = {{1}};
        c.secret = NULL;
        c.secret_len = 0;
        c.n_trusted_keys = 1;
        c.trusted_keys = NULL;
        assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
        c.trusted_keys = keys;
        fp->port.ed25519_verify = NULL;
        assert_int_equal(tcpota_dev_init(&d, &c), TCPOTA_ERR_INVAL);
        fp->port.ed25519_verify = real_ed25519;
        assert_int_equal(tcpota_dev_init(&d, &c), 0);
    }
}

/* A signed manifest for the current image, kept in man[]. */
static uint8_t pk[32], sk[64], man[400];

static void sign_image(const char *model, uint32_t counter)
{
    struct tcpota_manifest m;
    memset(&m, 0, sizeof(m));
    m.image_size = IMG_SIZE;
    m.sha256 = simg.id;
    m.version.ptr = (const uint8_t *)simg.version;
    m.version.len = simg.version_len;
    m.model.ptr = (const uint8_t *)model;
    m.model.len = (uint16_t)strlen(model);
    m.security_counter = counter;
    m.pubkey = pk;
    int n = tcpota_manifest_encode_body(&m, man, sizeof(man) - 64);
    assert_true(n > 0);
    crypto_sign_detached(man + n, NULL, man, (unsigned long long)n, sk);
    simg.manifest = man;
    simg.manifest_len = (uint16_t)(n + 64);
}

static void trust_key(void)
{
    crypto_sign_keypair(pk, sk);
    memcpy(trusted[0], pk, 32);
    ntrusted = 1;
    dev_init();
}

static void test_signed_update_raises_counter_and_refuses_downgrade(void **state)
{
    uint8_t b[64];
    (void)state;
    trust_key();
    sign_image("esp32", 5);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 5);
    /* The counter's record is frozen (device.h): older firmware booted
     * after this build must read its floor. */
    {
        static const uint8_t frozen[5] = {1, 5, 0, 0, 0};
        assert_memory_equal(b, frozen, sizeof(frozen));
        assert_int_equal(tcpota_get_u32(b + 5), tcpota_crc32c(b, 5));
    }
    /* A newer version signed with a lower counter is a downgrade. */
    make_image(3);
    simg.version = "3.0.0";
    sign_image("esp32", 4);
    fp->boot_set = 0;
    int begins = fp->begins;
    dev_init();
    assert_int_equal(dev.security_counter, 5);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_DOWNGRADE);
    assert_int_equal(fp->begins, begins);
    assert_int_equal(fp->boot_set, 0);
    /* The same counter is fine. */
    sign_image("esp32", 5);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
}

static void test_unsigned_offer_refused_when_keys_trusted(void **state)
{
    (void)state;
    trust_key();
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_UNSIGNED);
    assert_int_equal(fp->begins, 0);
    assert_int_equal(fp->writes, 0);
    /* The server heard why. */
    assert_int_equal(tcpota_srv_get_state(&srv), TCPOTA_SRV_CLOSING);
}

static void test_signed_by_other_key_or_model_refused(void **state)
{
    (void)state;
    trust_key();
    sign_image("esp32c3", 1);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.last_error, TCPOTA_ERR_MODEL);
    crypto_sign_keypair(pk, sk); /* a key the device does not trust */
    sign_image("esp32", 1);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.last_error, TCPOTA_ERR_NOKEY);
    assert_int_equal(fp->writes, 0);
}

static void test_offer_of_running_version_refused(void **state)
{
    (void)state;
    dev_version = "2.0.0";
    dev_init();
    memset(running, 0x55, sizeof(running)); /* another build, same label */
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_REFUSED);
    assert_int_equal(fp->writes, 0);
    /* The whole label must match: 2.0 is another version than the
     * running 2.0.0, not a prefix of it to refuse. */
    simg.version = "2.0";
    simg.version_len = 3;
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
}

/* WELCOME, then CHALLENGE(nonce): what a real auth server sends. */
static int welcome_then_challenge(uint16_t features, const uint8_t *nonce)
{
    assert_true(feed_welcome(1, features) > 0);
    return feed_challenge(nonce);
}

static void test_challenge_answered_with_hmac(void **state)
{
    static const uint8_t key[32] = {7, 7, 7};
    uint8_t nonce[32], msg[TCPOTA_AUTH_MSG_MAX], want[32], frame[64];
    const uint8_t *p;
    (void)state;

    secret = key;
    dev_init();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    size_t n = tcpota_dev_output(&dev, &p);
    assert_true(n > 4);
    assert_int_equal(tcpota_get_u16(p + 6) & TCPOTA_F_AUTH, TCPOTA_F_AUTH); /* HELLO features */
    tcpota_dev_output_done(&dev, n);
    randombytes_buf(nonce, sizeof(nonce));
    assert_true(welcome_then_challenge(TCPOTA_F_AUTH, nonce) > 0);
    n = tcpota_dev_output(&dev, &p);
    assert_int_equal(n, 8 + 32);
    assert_int_equal(p[0], TCPOTA_T_AUTH);
    int len = tcpota_auth_message(nonce, NULL, (const uint8_t *)"dev-1", 5, msg, sizeof(msg));
    assert_true(len > 0);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, 32);
    crypto_auth_hmacsha256_update(&st, msg, (unsigned long long)len);
    crypto_auth_hmacsha256_final(&st, want);
    assert_memory_equal(p + 4, want, 32);
    /* The secret itself never appears in what the device sends. */
    memcpy(frame, p, n);
    for (size_t i = 0; i + 32 <= n; i++) {
        assert_int_not_equal(memcmp(frame + i, key, 32), 0);
    }
    tcpota_dev_output_done(&dev, n);
}

static void test_challenge_without_secret_denied(void **state)
{
    uint8_t nonce[32] = {1};
    (void)state;
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    assert_int_equal(welcome_then_challenge(TCPOTA_F_AUTH, nonce), TCPOTA_ERR_DENIED);
}

/* Counts the device's HMAC computations: an unwanted CHALLENGE gets none. */
static int hmac_calls;
static int (*real_hmac)(void *, const uint8_t *, size_t, const uint8_t *, size_t, uint8_t *);

static int counting_hmac(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *msg,
                         size_t len, uint8_t out[32])
{
    hmac_calls++;
    return real_hmac(ctx, key, key_len, msg, len, out);
}

/* A device with a secret, connected, its HELLO already sent. */
static void auth_device(void)
{
    static const uint8_t key[32] = {7, 7, 7};
    const uint8_t *p;

    secret = key;
    real_hmac = fp->port.hmac_sha256;
    fp->port.hmac_sha256 = counting_hmac;
    hmac_calls = 0;
    dev_init();
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
}

/* After a refused CHALLENGE the device has sent one ERROR frame and
 * nothing computed from its secret. */
static void assert_only_error_sent(void)
{
    const uint8_t *p;
    size_t n = tcpota_dev_output(&dev, &p);

    assert_int_equal(hmac_calls, 0);
    assert_true(n > 8);
    assert_int_equal(p[0], TCPOTA_T_ERROR);
    assert_int_equal(n, 8u + tcpota_get_u16(p + 2));
}

/* Issue 10 point 6: a rogue server that relays a real server's nonce gets
 * no answer unless the session went HELLO, WELCOME(AUTH), CHALLENGE. */
static void test_challenge_before_welcome_refused(void **state)
{
    uint8_t nonce[32] = {9};
    (void)state;

    auth_device();
    assert_int_equal(feed_challenge(nonce), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_dev_reason(&dev), "CHALLENGE before WELCOME");
    assert_only_error_sent();
}

static void test_challenge_without_auth_announced_refused(void **state)
{
    uint8_t nonce[32] = {9};
    (void)state;

    auth_device();
    assert_int_equal(welcome_then_challenge(0, nonce), TCPOTA_ERR_PROTO);
    assert_string_equal(tcpota_dev_reason(&dev), "CHALLENGE but WELCOME did not announce AUTH");
    assert_only_error_sent();
}

static void test_second_challenge_or_welcome_refused(void **state)
{
    uint8_t nonce[32] = {9};
    const uint8_t *p;
    (void)state;

    auth_device();
    assert_true(welcome_then_challenge(TCPOTA_F_AUTH, nonce) > 0);
    assert_int_equal(hmac_calls, 1);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    assert_int_equal(feed_challenge(nonce), TCPOTA_ERR_STATE);
    hmac_calls = 0;
    assert_only_error_sent();
    /* A second WELCOME on one connection is refused as well. */
    auth_device();
    assert_true(feed_welcome(1, 0) > 0);
    assert_int_equal(feed_welcome(1, TCPOTA_F_AUTH), TCPOTA_ERR_PROTO);
    /* So is a first WELCOME for another protocol version than the one the
     * HELLO offered (the codec reads the byte; only the session judges it):
     * nothing after it could be read as this version. */
    auth_device();
    assert_int_equal(feed_welcome(TCPOTA_PROTO_VERSION + 1, 0), TCPOTA_ERR_PROTO);
    assert_string_equal(tcpota_dev_reason(&dev), "unexpected WELCOME");
}

/* Inside TLS the answer covers the TLS binding: a MAC relayed from another
 * TLS session does not verify. A new connection forgets the binding. */
static void test_challenge_bound_to_tls_session(void **state)
{
    static const uint8_t key[32] = {7, 7, 7};
    uint8_t nonce[32], binding[32], msg[TCPOTA_AUTH_MSG_MAX], want[32], plain[32];
    const uint8_t *p;
    int len;
    (void)state;

    randombytes_buf(nonce, sizeof(nonce));
    randombytes_buf(binding, sizeof(binding));
    auth_device();
    assert_int_equal(tcpota_dev_set_binding(&dev, binding), 0);
    assert_true(welcome_then_challenge(TCPOTA_F_AUTH, nonce) > 0);
    assert_int_equal(tcpota_dev_output(&dev, &p), 8u + 32u);
    assert_int_equal(p[0], TCPOTA_T_AUTH);
    len = tcpota_auth_message(nonce, binding, (const uint8_t *)"dev-1", 5, msg, sizeof(msg));
    assert_true(len > 0);
    crypto_auth_hmacsha256(want, msg, (unsigned long long)len, key);
    assert_memory_equal(p + 4, want, 32);
    len = tcpota_auth_message(nonce, NULL, (const uint8_t *)"dev-1", 5, msg, sizeof(msg));
    crypto_auth_hmacsha256(plain, msg, (unsigned long long)len, key);
    assert_memory_not_equal(want, plain, 32);
    /* Next connection, plain TCP: the binding is gone. */
    tcpota_dev_disconnect(&dev);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    assert_true(welcome_then_challenge(TCPOTA_F_AUTH, nonce) > 0);
    assert_int_equal(tcpota_dev_output(&dev, &p), 8u + 32u);
    assert_memory_equal(p + 4, plain, 32);
}

/* Issue 10 point 9: an offer whose version contradicts its signed
 * manifest is declined before a byte is written, and says so. */
static void test_offer_version_differs_from_manifest_declined(void **state)
{
    (void)state;
    trust_key();
    sign_image("esp32", 1); /* signs version 2.0.0 */
    simg.version = "9.9.9";
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_REFUSED);
    assert_string_equal(tcpota_dev_reason(&dev),
                        "offer version 9.9.9 differs from the signed manifest's 2.0.0");
    assert_int_equal(fp->begins, 0);
    assert_int_equal(fp->resumes, 0);
    assert_int_equal(fp->writes, 0);
    assert_int_equal(fp->boot_set, 0);
}

/* A device confirmed on an image of counter 5 that has installed version
 * 3.0.0 of counter 9 and rebooted into it: pending. */
static void counter_9_pending(void)
{
    trust_key();
    sign_image("esp32", 5);
    run_conn(0, -1, NULL);
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    fp->boot.pending = 0;
    make_image(3);
    simg.version = "3.0.0";
    sign_image("esp32", 9);
    dev_init();
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    fp->boot.pending = 1;
}

/* Issue 10 point 9: a counter-9 image that fails its health check must not
 * raise the floor, or it would block the counter-5 fix that follows. */
static void test_failed_health_check_keeps_counter(void **state)
{
    uint8_t b[64];
    (void)state;
    counter_9_pending(); /* then it fails its health check */
    assert_int_equal(tcpota_dev_boot(&fp->port, 0), 1);
    fp->boot.pending = 0;
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 5);
    /* The fix, 3.0.1 with counter 5, is taken. */
    make_image(4);
    simg.version = "3.0.1";
    sign_image("esp32", 5);
    dev_init();
    assert_int_equal(dev.security_counter, 5);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    assert_slot_is_image();
}

/* A power cut at each step of confirming a healthy pending image (counter
 * 9 over 5), then the next boot as the bootloader leaves it: still pending
 * at a reset, the image is undone (ESP-IDF: ABORTED, the old one boots);
 * marked valid, it stays. The device must then report what runs: boot
 * failed, the counter still 5, or confirmed, the counter 9; and keep no
 * record behind. A trial's cut between the counter and the mark reported
 * the rolled-back image confirmed and raised the counter to its 9. */
static void test_confirm_cut_at_each_step(void **state)
{
    uint8_t b[64];
    int k, cut = 1;

    (void)state;
    for (k = 1; cut; k++) {
        int marked;
        teardown(NULL);
        setup(NULL);
        counter_9_pending();
        fp->valid_calls = 0;
        fp->cut_ops = 0;
        fp->cut_at = k;
        cut = tcpota_dev_boot(&fp->port, 1) < 0;
        fp->cut_at = 0;
        marked = fp->valid_calls > 0;
        if (cut) { /* the reset, and the bootloader */
            fp->boot.pending = 0;
            fp->boot.rolled_back = !marked;
            assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
        }
        assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)), 1 + 32 + 2 + 4);
        if (tcpota_get_u16(b + 1 + 32) != (marked ? TCPOTA_RESULT_CONFIRMED : TCPOTA_RESULT_BOOT_FAILED)) {
            fail_msg("cut at step %d (marked: %d): reported %u", k, marked, tcpota_get_u16(b + 33));
        }
        assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
        if (tcpota_get_u32(b + 1) != (marked ? 9u : 5u)) {
            fail_msg("cut at step %d (marked: %d): counter %u", k, marked, tcpota_get_u32(b + 1));
        }
        if (fp->port.kv_get(fp, TCPOTA_KEY_LAST, b, sizeof(b)) != TCPOTA_ERR_NOENT) {
            fail_msg("cut at step %d (marked: %d): the LAST record is left", k, marked);
        }
    }
    assert_true(k > 5); /* the steps were cut one by one */
}

/* The same for a rejected image, on a port whose bootloader says nothing
 * of a rollback (no pending state after the reset, rolled_back not set): a
 * cut anywhere in the reject never turns into a confirmation at the next
 * boot. The report kept must say CONFIRMED for that (a mutation review:
 * any report of the last image counted, so a cut after the ROLLED_BACK
 * report confirmed it and raised the counter). */
static void test_reject_cut_at_each_step(void **state)
{
    uint8_t b[64];
    int k, cut = 1;

    (void)state;
    for (k = 1; cut; k++) {
        teardown(NULL);
        setup(NULL);
        counter_9_pending();
        fp->cut_ops = 0;
        fp->cut_at = k;
        cut = tcpota_dev_boot(&fp->port, 0) < 0;
        fp->cut_at = 0;
        if (cut) { /* the reset: the old image runs, and the port cannot tell */
            fp->boot.pending = 0;
            fp->boot.rolled_back = 0;
            fp->boot.running_known = 0;
            assert_true(tcpota_dev_boot(&fp->port, 1) >= 0);
        }
        if (fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)) > 0 &&
            tcpota_get_u16(b + 1 + 32) == TCPOTA_RESULT_CONFIRMED) {
            fail_msg("cut at step %d of a reject: reported confirmed", k);
        }
        assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
        if (tcpota_get_u32(b + 1) != 5u) {
            fail_msg("cut at step %d of a reject: counter %u", k, tcpota_get_u32(b + 1));
        }
    }
    assert_true(k > 3); /* the steps were cut one by one */
}

static void test_set_boot_failure_leaves_no_last_record(void **state)
{
    uint8_t b[64];
    (void)state;
    fp->fail_set_boot = 1;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_IO);
    assert_int_equal(fp->boot_set, 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_LAST, b, sizeof(b)), TCPOTA_ERR_NOENT);
    assert_int_equal(dev.resume.valid, 0);
    /* A storage error is not the image's fault: not remembered. */
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), 0);
}

/* A set_boot the port refuses for good (ESP-IDF: the image's secure version
 * is below the eFuse's) is remembered as a refusal at ota_end is: the image
 * is not fetched again at every offer. */
static void test_set_boot_denied_is_remembered(void **state)
{
    uint8_t id[TCPOTA_ID_LEN];
    (void)state;
    fp->fail_set_boot = TCPOTA_ERR_DENIED;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_DENIED);
    assert_int_equal(fp->boot_set, 0);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, id), TCPOTA_BAD_REFUSED);
    assert_int_equal(dev.bad_reason, TCPOTA_BAD_REFUSED);
}

/* ota_end: a refusal of the image is remembered; a storage error is not
 * the image's fault (ESP-IDF: a failed write of the last encrypted block). */
static void test_ota_end_errors(void **state)
{
    (void)state;
    fp->fail_end = TCPOTA_ERR_STATE;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_STATE);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), 0);
    /* A server holds the image back all the same (server.h: offered at
     * every check-in, a device whose storage fails would rewrite its
     * flash each time); the COMPLETE's status is -rc. */
    assert_int_equal(tcpota_srv_complete_final((uint16_t)-TCPOTA_ERR_STATE), 1);
    fp->fail_end = TCPOTA_ERR_IO;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_IO);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), 0);
    assert_int_equal(tcpota_srv_complete_final((uint16_t)-TCPOTA_ERR_IO), 1);
    fp->fail_end = TCPOTA_ERR_DENIED;
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_DENIED);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), TCPOTA_BAD_REFUSED);
    assert_int_equal(tcpota_srv_complete_final((uint16_t)-TCPOTA_ERR_DENIED), 1);
    assert_int_equal(tcpota_srv_complete_final((uint16_t)-TCPOTA_ERR_REFUSED), 1); /* the same */
}

/* A port without a pending state (ESP-IDF without bootloader rollback)
 * that runs the last image set to boot: confirmed at boot, its report kept
 * and the counter raised, nothing marked (before: nothing at all, and the
 * counter never rose). Another image running: nothing happens. */
static void test_final_image_confirmed_at_boot(void **state)
{
    uint8_t b[64];
    (void)state;
    trust_key();
    sign_image("esp32", 7);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    fp->boot.pending = 0;
    fp->boot.running_known = 1;
    memset(fp->boot.running_id, 0xee, TCPOTA_ID_LEN); /* the old image still runs */
    assert_int_equal(tcpota_dev_boot(&fp->port, 0), 0);
    assert_true(fp->port.kv_get(fp, TCPOTA_KEY_LAST, b, sizeof(b)) > 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), TCPOTA_ERR_NOENT);
    memcpy(fp->boot.running_id, simg.id, TCPOTA_ID_LEN); /* the new one runs */
    assert_int_equal(tcpota_dev_boot(&fp->port, 0), 0);   /* healthy does not matter */
    assert_int_equal(fp->valid_calls + fp->invalid_calls, 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_LAST, b, sizeof(b)), TCPOTA_ERR_NOENT);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 7);
    assert_true(fp->port.kv_get(fp, TCPOTA_KEY_REPORT, b, sizeof(b)) > 0);
    assert_memory_equal(b + 1, simg.id, TCPOTA_ID_LEN);
    assert_int_equal(tcpota_get_u16(b + 1 + TCPOTA_ID_LEN), TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), 0);
}

/* A cut between confirming and forgetting the last update must not leave
 * the image confirmed with the old counter: the counter goes up first. */
static void test_counter_raised_before_last_record_is_erased(void **state)
{
    uint8_t b[64];
    (void)state;
    trust_key();
    sign_image("esp32", 9);
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_UPDATED);
    fp->boot.pending = 1;
    fp->fail_erase_key = TCPOTA_KEY_LAST; /* the "cut" */
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), TCPOTA_ERR_IO);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 9);
}

/* The smallest tx buffer a device session takes holds the largest frame a
 * device sends: a HELLO with every field at its longest encodes to exactly
 * TCPOTA_DEV_HELLO_MAX bytes, and a byte less is no room (the minimum was
 * once 256 bytes, 13 short of it). */
static void test_tx_min_holds_largest_hello(void **state)
{
    static uint8_t out[TCPOTA_DEV_TX_MIN];
    uint8_t id[TCPOTA_ID_LEN] = {1}, resume[TCPOTA_ID_LEN] = {2}, report[TCPOTA_ID_LEN] = {3};
    char dev_id[TCPOTA_MAX_STR], model[TCPOTA_MAX_NAME], version[TCPOTA_MAX_NAME];
    struct tcpota_msg m;
    (void)state;

    memset(dev_id, 'd', sizeof(dev_id));
    memset(model, 'm', sizeof(model));
    memset(version, 'v', sizeof(version));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_HELLO;
    m.u.hello.proto_min = m.u.hello.proto_max = 1;
    m.u.hello.device_id.ptr = (const uint8_t *)dev_id;
    m.u.hello.device_id.len = sizeof(dev_id);
    m.u.hello.model.ptr = (const uint8_t *)model;
    m.u.hello.model.len = sizeof(model);
    m.u.hello.version.ptr = (const uint8_t *)version;
    m.u.hello.version.len = sizeof(version);
    m.u.hello.running_id = id;
    m.u.hello.resume_id = resume;
    m.u.hello.resume_size = 1u << 20;
    m.u.hello.resume_offset = 1u << 16;
    m.u.hello.max_payload = TCPOTA_MAX_PAYLOAD;
    m.u.hello.report_id = report;
    m.u.hello.report_result = 1;
    assert_int_equal(tcpota_msg_encode(&m, out, TCPOTA_DEV_TX_MIN), (int)TCPOTA_DEV_HELLO_MAX);
    assert_int_equal(tcpota_msg_encode(&m, out, TCPOTA_DEV_TX_MIN - 1), TCPOTA_ERR_NOSPC);
}

/* Feeds the server's stream to the device until its next CHECKPOINT
 * (an ACK queued), without sending what the device queued. */
static void feed_to_checkpoint(void)
{
    struct tcpota_dev_event ev;

    do {
        int rc;
        memset(&ev, 0, sizeof(ev));
        srv_flush(-1);
        assert_true(wire_read < wire_len);
        rc = tcpota_dev_input(&dev, wire + wire_read, wire_len - wire_read, &ev);
        assert_true(rc > 0);
        wire_read += (size_t)rc;
    } while (ev.type != TCPOTA_DEV_EV_CHECKPOINT);
}

/* The output is urgent while it holds any frame but ACK (HELLO, ACCEPT,
 * PONG): an ACK queued behind them does not make it less so, and ACKs
 * alone are not. */
static void test_output_urgent_unless_only_acks(void **state)
{
    struct tcpota_srv_event sev;
    const uint8_t *p;
    size_t n, off = 0;
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    uint8_t frame[16];
    int len;

    (void)state;
    wire_len = wire_read = 0;
    srv_start();
    assert_int_equal(tcpota_dev_output_urgent(&dev), 0);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    assert_int_equal(tcpota_dev_output_urgent(&dev), 1); /* HELLO */
    n = tcpota_dev_output(&dev, &p);
    while (off < n) {
        int used = tcpota_srv_input(&srv, p + off, n - off, &sev);
        assert_true(used > 0);
        off += (size_t)used;
    }
    feed_to_checkpoint(); /* HELLO, ACCEPT, ACK */
    assert_int_equal(tcpota_dev_output_urgent(&dev), 1);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    assert_int_equal(tcpota_dev_output_urgent(&dev), 0);
    feed_to_checkpoint(); /* an ACK alone */
    n = tcpota_dev_output(&dev, &p);
    assert_int_equal(p[0], TCPOTA_T_ACK);
    assert_int_equal(tcpota_dev_output_urgent(&dev), 0);
    /* A PING between DATA frames: its PONG goes behind the ACK. */
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_PING;
    m.u.ping.token = 7;
    len = tcpota_msg_encode(&m, frame, sizeof(frame));
    assert_true(len > 0);
    assert_int_equal(tcpota_dev_input(&dev, frame, (size_t)len, &ev), len);
    assert_true(tcpota_dev_output(&dev, &p) > n);
    assert_int_equal(tcpota_dev_output_urgent(&dev), 1);
    tcpota_dev_disconnect(&dev);
}

/* A new connection whose first server frame is an OFFER of a 100-byte
 * image (no WELCOME before it): the device accepts and is RECEIVING. */
static void offered_without_welcome(void)
{
    struct tcpota_dev_event ev;
    const uint8_t *p;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    assert_true(feed_offer(&ev) > 0);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_ACCEPTED);
    assert_int_equal(dev.state, TCPOTA_DEV_RECEIVING);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
}

/* WELCOME and NO_UPDATE answer a HELLO: once the device receives an image
 * either is a violation, not a new start (a NO_UPDATE would end the
 * transfer as "up to date", a WELCOME open the way to a CHALLENGE). */
static void test_welcome_or_no_update_while_receiving_refused(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    (void)state;

    offered_without_welcome();
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_WELCOME;
    m.u.welcome.proto = 1;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_PROTO);
    assert_string_equal(tcpota_dev_reason(&dev), "unexpected WELCOME");
    assert_int_equal(dev.welcomed, 0);

    tcpota_dev_disconnect(&dev);
    offered_without_welcome();
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_dev_reason(&dev), "unexpected NO_UPDATE");
    assert_int_equal(dev.state, TCPOTA_DEV_RECEIVING);
}

/* A device that is done with a connection (here: up to date) reads
 * nothing more from it: a late OFFER is swallowed, not acted on. */
static void test_input_after_session_end_ignored(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    const uint8_t *p;
    uint8_t b[600];
    int n;
    (void)state;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_true(feed_dev(&m, &ev) > 0);
    assert_int_equal(dev.state, TCPOTA_DEV_UP_TO_DATE);
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_OFFER;
    m.u.offer.image_id = simg.id;
    m.u.offer.size = 100;
    m.u.offer.version.ptr = (const uint8_t *)"2"; m.u.offer.version.len = 1;
    n = tcpota_msg_encode(&m, b, sizeof(b));
    assert_true(n > 0);
    assert_int_equal(tcpota_dev_input(&dev, b, (size_t)n, &ev), n);
    assert_int_equal(ev.type, TCPOTA_DEV_EV_NONE);
    assert_int_equal(dev.state, TCPOTA_DEV_UP_TO_DATE);
    assert_int_equal(tcpota_dev_output(&dev, &p), 0);
    assert_int_equal(fp->begins, 0);
}

/* A CHALLENGE after the offer (WELCOME announced AUTH but the server went
 * on to OFFER) gets no answer: the device answers one CHALLENGE, and only
 * before the decision. */
static void test_challenge_after_offer_refused(void **state)
{
    struct tcpota_dev_event ev;
    uint8_t nonce[32] = {9};
    const uint8_t *p;
    (void)state;

    auth_device();
    assert_true(feed_welcome(1, TCPOTA_F_AUTH) > 0);
    assert_true(feed_offer(&ev) > 0);
    assert_int_equal(dev.state, TCPOTA_DEV_RECEIVING);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    assert_int_equal(feed_challenge(nonce), TCPOTA_ERR_STATE);
    assert_string_equal(tcpota_dev_reason(&dev), "CHALLENGE again or after the offer");
    assert_only_error_sent();
}

static int refuse_offer(void *ctx, const struct tcpota_offer_info *offer)
{
    (void)ctx;
    (void)offer;
    return TCPOTA_ERR_MODEL;
}

/* The port's verify_offer hook has the last word: an offer it refuses is
 * declined with its code before a byte is written. */
static void test_verify_offer_hook_refusal_declines(void **state)
{
    (void)state;
    fp->port.verify_offer = refuse_offer;
    run_conn(0, -1, NULL);
    assert_int_equal(dev.state, TCPOTA_DEV_DECLINED);
    assert_int_equal(dev.last_error, TCPOTA_ERR_MODEL);
    assert_string_equal(tcpota_dev_reason(&dev), "offer refused by the device's checks");
    assert_int_equal(fp->begins, 0);
    assert_int_equal(fp->writes, 0);
}

/* Stores a record under key as rec_save would: version byte v, the
 * fields already in b, and a right CRC32C over all but the last 4 bytes. */
static void put_record(const char *key, uint8_t *b, size_t len, uint8_t v)
{
    b[0] = v;
    tcpota_put_u32(b + len - 4, tcpota_crc32c(b, len - 4));
    assert_int_equal(fp->port.kv_set(fp, key, b, len), 0);
}

/* A cut after the image was set to boot and before its resume record was
 * erased: the session of the image it names, running now, erases the
 * record (before, every later session resumed "from" the image it runs);
 * a record of another image stays. */
static void test_resume_record_of_running_image_erased(void **state)
{
    uint8_t b[1 + 32 + 4 + 4 + 4], got[64];
    (void)state;

    memcpy(b + 1, simg.id, 32);
    tcpota_put_u32(b + 33, IMG_SIZE);
    tcpota_put_u32(b + 37, 2 * TCPOTA_SECTOR_SIZE);
    put_record(TCPOTA_KEY_RESUME, b, sizeof(b), 1);
    memset(running, 0xee, sizeof(running)); /* another image runs */
    dev_init();
    assert_int_equal(dev.resume.valid, 1);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_RESUME, got, sizeof(got)), (int)sizeof(b));
    memcpy(running, simg.id, sizeof(running)); /* the one it names runs */
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_RESUME, got, sizeof(got)), TCPOTA_ERR_NOENT);
}

/* A record of another format version is as if absent, even with a right
 * CRC: its fields may mean something else. */
static void test_record_of_other_version_ignored(void **state)
{
    uint8_t b[1 + 32 + 4 + 4 + 4];
    (void)state;

    memcpy(b + 1, simg.id, 32);
    tcpota_put_u32(b + 33, IMG_SIZE);
    tcpota_put_u32(b + 37, 2 * TCPOTA_SECTOR_SIZE);
    put_record(TCPOTA_KEY_RESUME, b, sizeof(b), 1);
    dev_init();
    assert_int_equal(dev.resume.valid, 1);
    put_record(TCPOTA_KEY_RESUME, b, sizeof(b), 2);
    dev_init();
    assert_int_equal(dev.resume.valid, 0);
}

/* A record shorter than its kind is torn, whatever the bytes it leaves in
 * the caller's buffer say. Here the REPORT record is 35 bytes instead of
 * 39, and the 4 bytes after it in the buffer (left there by the RESUME
 * record read just before) happen to be the CRC of those 35: read with
 * its length unchecked, it would pass for a confirmed report. */
static void test_short_record_ignored(void **state)
{
    uint8_t r[1 + 32 + 4 + 4 + 4], x[1 + 32 + 2];
    uint32_t c;
    (void)state;

    x[0] = 1;
    memcpy(x + 1, simg.id, 32);
    tcpota_put_u16(x + 33, TCPOTA_RESULT_CONFIRMED);
    c = tcpota_crc32c(x, sizeof(x));
    memset(r, 0, sizeof(r));
    memcpy(r + 1, simg.id, 32);
    tcpota_put_u32(r + 35, c); /* the size's top half, the offset's bottom */
    put_record(TCPOTA_KEY_RESUME, r, sizeof(r), 1);
    assert_int_equal(fp->port.kv_set(fp, TCPOTA_KEY_REPORT, x, sizeof(x)), 0);
    dev_init();
    assert_int_equal(dev.report_result, 0);
}

/* The security counter only goes up: confirming an image whose LAST record
 * carries a lower counter (an unsigned image has 0) keeps the floor. */
static void test_counter_never_lowered(void **state)
{
    uint8_t cnt[1 + 4 + 4], last[1 + 32 + 4 + 4], b[64];
    (void)state;

    tcpota_put_u32(cnt + 1, 9);
    put_record(TCPOTA_KEY_COUNTER, cnt, sizeof(cnt), 1);
    memcpy(last + 1, simg.id, 32);
    tcpota_put_u32(last + 33, 5);
    put_record(TCPOTA_KEY_LAST, last, sizeof(last), 1);
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(fp->valid_calls, 1);
    assert_int_equal(fp->port.kv_get(fp, TCPOTA_KEY_COUNTER, b, sizeof(b)), 9);
    assert_int_equal(tcpota_get_u32(b + 1), 9);
    dev_init();
    assert_int_equal(dev.security_counter, 9);
}

/* Boot failures are counted per image: one failure of image A and then
 * one of image B leave B its second chance. */
static void test_boot_failures_counted_per_image(void **state)
{
    uint8_t last[1 + 32 + 4 + 4], id[32];
    (void)state;

    fp->boot.rolled_back = 1;
    memset(last + 1, 0xaa, 32);
    tcpota_put_u32(last + 33, 0);
    put_record(TCPOTA_KEY_LAST, last, sizeof(last), 1);
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, id), TCPOTA_BAD_NONE); /* one more chance */
    assert_int_equal(tcpota_srv_report_final(TCPOTA_RESULT_BOOT_FAILED), 0); /* a server's too */
    memset(last + 1, 0xbb, 32);
    put_record(TCPOTA_KEY_LAST, last, sizeof(last), 1);
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, id), TCPOTA_BAD_NONE); /* B's first */
    put_record(TCPOTA_KEY_LAST, last, sizeof(last), 1);
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, id), TCPOTA_BAD_BOOT_FAILED);
    assert_memory_equal(id, last + 1, 32);
}

/* Failures of different kinds of one image are not added up: one transfer
 * altered on the way and then one power cut at its first boot leave the
 * image its chance (a mutation review: summed, they held a good release
 * back for good). */
static void test_failures_of_other_kinds_not_summed(void **state)
{
    uint8_t last[1 + 32 + 4 + 4];
    (void)state;
    simg.id[0] ^= 1; /* the server lies about the hash */
    assert_int_equal(run_conn(0, -1, NULL), TCPOTA_ERR_INTEGRITY);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), TCPOTA_BAD_NONE);
    memcpy(last + 1, simg.id, 32);
    tcpota_put_u32(last + 33, 0);
    put_record(TCPOTA_KEY_LAST, last, sizeof(last), 1);
    fp->boot.rolled_back = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    assert_int_equal(tcpota_dev_bad_image(&fp->port, NULL), TCPOTA_BAD_NONE);
}

/* A message only a device sends (here ACK, and HELLO) is a violation
 * when it comes from the server, not something to ignore. */
static void test_device_message_from_server_refused(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    const uint8_t *p;
    (void)state;

    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_ACK;
    m.u.ack.offset = 0;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_PROTO);
    assert_string_equal(tcpota_dev_reason(&dev), "message not for a device");
    assert_true(tcpota_dev_output(&dev, &p) > 0);
    assert_int_equal(p[0], TCPOTA_T_ERROR);
}

/* A report the device cannot forget (its record's erase fails) ends the
 * session with an error rather than being dropped from memory while the
 * record stays. */
static void test_report_erase_failure_reported(void **state)
{
    struct tcpota_msg m;
    struct tcpota_dev_event ev;
    const uint8_t *p;
    (void)state;

    run_conn(0, -1, NULL);
    fp->boot.pending = 1;
    assert_int_equal(tcpota_dev_boot(&fp->port, 1), 0);
    memcpy(running, simg.id, 32);
    dev_init();
    assert_int_equal(dev.report_result, TCPOTA_RESULT_CONFIRMED);
    assert_int_equal(tcpota_dev_connect(&dev, 0), 0);
    tcpota_dev_output_done(&dev, tcpota_dev_output(&dev, &p));
    fp->fail_erase_key = TCPOTA_KEY_REPORT;
    memset(&m, 0, sizeof(m));
    m.type = TCPOTA_T_NO_UPDATE;
    assert_int_equal(feed_dev(&m, &ev), TCPOTA_ERR_IO);
    assert_string_equal(tcpota_dev_reason(&dev), "could not clear the report");
    assert_int_equal(dev.report_result, TCPOTA_RESULT_CONFIRMED);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_update),
        T(test_no_update_surfaces_retry_after),
        T(test_cut_anywhere_resumes),
        T(test_reboot_mid_image_resumes),
        T(test_keep_last_sector),
        T(test_no_resume_point_at_the_end),
        T(test_cut_keeps_sector_or_checkpoint),
        T(test_resume_record_for_other_image_discarded),
        T(test_resume_record_for_other_size_discarded),
        T(test_implausible_resume_record_dropped),
        T(test_resume_parse),
        T(test_corrupt_record_ignored),
        T(test_flipped_byte_never_written),
        T(test_integrity_failure_not_bootable),
        T(test_image_too_big_declined),
        T(test_image_one_byte_too_big_declined),
        T(test_already_running_declined),
        T(test_data_past_end_and_out_of_state),
        T(test_server_error_frame),
        T(test_flash_write_failure_reported),
        T(test_boot_confirm_and_report),
        T(test_report_kept_until_decision),
        T(test_boot_health_failure_rolls_back),
        T(test_boot_bootloader_rollback_reported),
        T(test_keepalive_and_timeout),
        T(test_stall_without_progress),
        T(test_init_rejects_bad_config),
        T(test_failures_of_other_kinds_not_summed),
        T(test_bad_text_unknown_reason),
        cmocka_unit_test(test_tx_min_holds_largest_hello),
        T(test_output_urgent_unless_only_acks),
        T(test_signed_update_raises_counter_and_refuses_downgrade),
        T(test_unsigned_offer_refused_when_keys_trusted),
        T(test_signed_by_other_key_or_model_refused),
        T(test_offer_of_running_version_refused),
        T(test_challenge_answered_with_hmac),
        T(test_challenge_without_secret_denied),
        T(test_challenge_before_welcome_refused),
        T(test_challenge_without_auth_announced_refused),
        T(test_second_challenge_or_welcome_refused),
        T(test_challenge_bound_to_tls_session),
        T(test_offer_version_differs_from_manifest_declined),
        T(test_failed_health_check_keeps_counter),
        T(test_confirm_cut_at_each_step),
        T(test_reject_cut_at_each_step),
        T(test_set_boot_failure_leaves_no_last_record),
        T(test_set_boot_denied_is_remembered),
        T(test_final_image_confirmed_at_boot),
        T(test_resume_record_of_running_image_erased),
        T(test_ota_end_errors),
        T(test_counter_raised_before_last_record_is_erased),
        T(test_welcome_or_no_update_while_receiving_refused),
        T(test_input_after_session_end_ignored),
        T(test_challenge_after_offer_refused),
        T(test_verify_offer_hook_refusal_declines),
        T(test_record_of_other_version_ignored),
        T(test_short_record_ignored),
        T(test_counter_never_lowered),
        T(test_boot_failures_counted_per_image),
        T(test_device_message_from_server_refused),
        T(test_report_erase_failure_reported),
    };
    if (sodium_init() < 0) return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
