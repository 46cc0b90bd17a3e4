/* framecut.c - cuts at every frame boundary, and flipped bytes in frames.
 *
 * A fresh device fetches an image from the server session, in memory (see
 * rig.h). From a clean run the downstream (server -> device) stream is
 * split into its frames. Then, each from the same start:
 *   cuts:    the first connection is cut right after every frame boundary,
 *            and at a random byte inside every frame; the device connects
 *            again and must finish byte-exact, fetching again at most what
 *            it had written past its last checkpoint: less than one ack
 *            interval.
 *   flips:   one bit is flipped in one byte of one frame: every byte of the
 *            control frames (WELCOME, OFFER) and of every DATA frame's head
 *            and CRC, plus random payload bytes of each DATA frame; and
 *            every byte of the device's frames to the server (HELLO, ACCEPT,
 *            ACK, COMPLETE). The receiver must refuse the frame (CRC) and
 *            never write its bytes; the next connection resumes from the
 *            device's checkpoint and ends byte-exact.
 * Any other outcome fails the run (exit 1). Figures go to stdout.
 *
 * usage: tcpota-framecut [--size BYTES] [--chunk N] [--ack BYTES] [--samples N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "args.h"
#include "rig.h"

static struct rig r;
static struct rig_image img;
static struct rig_snapshot fresh;
static uint32_t ack = 16384;

static int die(const char *what, long at)
{
    fprintf(stderr, "framecut: FAIL %s (at byte %ld): %s\n", what, at, r.err);
    return -1;
}

static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Slot bytes [0, n) of the update slot equal the image. */
static int slot_prefix_ok(uint32_t n)
{
    char p[300];
    uint8_t *buf = malloc(n ? n : 1);
    FILE *f;
    int ok;

    snprintf(p, sizeof(p), "%s/ota_%u.bin", r.dir, (unsigned)(r.running.slot ^ 1u));
    f = fopen(p, "rb");
    ok = buf && f && fread(buf, 1, n, f) == n && memcmp(buf, img.bytes, n) == 0;
    if (f) fclose(f);
    free(buf);
    return ok;
}

/* From the fresh device: one disturbed connection, then the rest of the
 * update. Fills *first. Sets *refetch to the bytes the next connection
 * asks for again. Returns 0 or -1. */
static int one_case(const struct rig_conn_opts *o, struct rig_conn_result *first, uint32_t *refetch,
                    uint32_t *pos_after)
{
    struct rig_conn_result second;
    uint32_t pos, durable;

    if (rig_snapshot_restore(&r, &fresh) < 0 || rig_boot(&r) < 0) {
        return -1;
    }
    r.clean_errors = r.complete_failures = 0;
    if (rig_connect(&r, o, first) < 0) {
        return -1;
    }
    pos = r.rx_active ? r.rx_pos : 0;
    durable = r.dev.resume.valid ? r.dev.resume.offset : 0;
    *pos_after = pos;
    if (pos && !slot_prefix_ok(pos)) {
        snprintf(r.err, sizeof(r.err), "slot differs from the image below %u", pos);
        return -1;
    }
    if (r.dev.state != TCPOTA_DEV_UPDATED) {
        if (rig_connect(&r, &(struct rig_conn_opts){0, -1, -1, 0}, &second) < 0) {
            return -1;
        }
        if (second.offered && (second.start != durable || second.start > pos)) {
            snprintf(r.err, sizeof(r.err), "resumed at %u: checkpoint %u, written %u", second.start, durable, pos);
            return -1;
        }
        *refetch = second.offered && pos > second.start ? pos - second.start : 0;
    } else {
        *refetch = 0;
    }
    if (rig_run(&r, 10) < 0 || rig_check_final(&r, &img) < 0) {
        return -1;
    }
    if (r.clean_errors) {
        return -1; /* r.err says which */
    }
    if (r.complete_failures) {
        snprintf(r.err, sizeof(r.err), "the device refused %u finished images", r.complete_failures);
        return -1;
    }
    return 0;
}

#define FRAMES_MAX 4096u

int main(int argc, char **argv)
{
    uint32_t size = 65536, max_refetch = 0;
    unsigned chunk = 4096, samples = 8;
    char dir[] = "/tmp/tcpota-framecut.XXXXXX";
    struct rig_conn_opts o;
    struct rig_conn_result res;
    size_t ends[FRAMES_MAX], n_frames, up_len;
    unsigned cuts = 0, flips_down = 0, flips_up = 0, refused = 0, stalled = 0;
    uint32_t refetch, pos;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        unsigned long v;
        int got = rel_common_arg("framecut", argc, argv, &i, &size, &chunk, &ack);
        if (got == 0 && (got = rel_arg("framecut", argc, argv, &i, "--samples", 1, 1000, &v)) > 0) {
            samples = (unsigned)v;
        } else if (got == 0) {
            fprintf(stderr, "usage: %s [--size BYTES] [--chunk N] [--ack BYTES] [--samples N]\n", argv[0]);
            return 2;
        }
        if (got < 0) return 2;
    }
    /* Every frame's end is listed (ends[] below): the image in frames of
     * chunk bytes, and the few before them, must fit it. */
    if ((size + chunk - 1) / chunk > FRAMES_MAX - 16u) {
        fprintf(stderr, "framecut: --size %u in --chunk %u frames is %u frames; at most %u: give a "
                        "larger --chunk or a smaller --size\n", size, chunk,
                (size + chunk - 1) / chunk, FRAMES_MAX - 16u);
        return 2;
    }
    if (sodium_init() < 0 || !mkdtemp(dir) || rig_image_make(&img, size, 7, "2.0.0") < 0 ||
        rig_init(&r, dir, (size_t)size * 2 + 262144, (uint16_t)chunk, ack) < 0) {
        fprintf(stderr, "framecut: setup failed\n");
        return 1;
    }
    r.img = &img;
    r.ok[0] = &img; /* the factory image is empty: checked apart below */
    r.n_ok = 0;
    if (rig_create(&r, (size + 2 * TCPOTA_SECTOR_SIZE - 1) / TCPOTA_SECTOR_SIZE * TCPOTA_SECTOR_SIZE) < 0) {
        die("create", 0);
        goto out;
    }
    rig_close(&r);
    if (rig_snapshot_take(&r, &fresh) < 0) {
        die("snapshot", 0);
        goto out;
    }

    /* The clean run: its downstream, split into frames. */
    o = (struct rig_conn_opts){0, -1, -1, 0};
    if (one_case(&o, &res, &refetch, &pos) < 0) {
        die("clean run", 0);
        goto out;
    }
    if (rig_snapshot_restore(&r, &fresh) < 0 || rig_boot(&r) < 0 || rig_connect(&r, &o, &res) < 0 ||
        r.dev.state != TCPOTA_DEV_UPDATED) {
        die("clean run", 0);
        goto out;
    }
    n_frames = rig_frame_ends(&r, ends, sizeof(ends) / sizeof(ends[0]));
    up_len = res.up;
    if (n_frames < 3 || ends[n_frames - 1] != r.wire_len) {
        snprintf(r.err, sizeof(r.err), "downstream did not split into frames");
        die("clean run", 0);
        goto out;
    }

    /* Cuts: after each frame, and at a random byte inside it. */
    for (size_t f = 0; f < n_frames; f++) {
        size_t from = f ? ends[f - 1] : 0, len = ends[f] - from;
        size_t at[2] = {ends[f], from + 1 + rnd() % (len - 1)};
        for (int j = 0; j < 2; j++) {
            o = (struct rig_conn_opts){at[j], -1, -1, 0};
            if (one_case(&o, &res, &refetch, &pos) < 0) {
                die(j ? "cut inside a frame" : "cut at a frame boundary", (long)at[j]);
                goto out;
            }
            if (refetch > max_refetch) max_refetch = refetch;
            /* A cut keeps the last whole sector written (tcpota_dev_disconnect). */
            if (refetch >= TCPOTA_SECTOR_SIZE) {
                snprintf(r.err, sizeof(r.err), "fetched %u bytes again", refetch);
                die("refetch bound", (long)at[j]);
                goto out;
            }
            cuts++;
        }
    }

    /* Flips in the server's frames. */
    for (size_t f = 0; f < n_frames; f++) {
        size_t from = f ? ends[f - 1] : 0, len = ends[f] - from;
        int is_data = r.wire[from] == TCPOTA_T_DATA;
        size_t list[64], n = 0;
        for (size_t b = 0; b < len && n < 64; b++) {
            if (!is_data || b < 8 || b >= len - 4) list[n++] = from + b;
        }
        for (unsigned s = 0; is_data && s < samples && n < 64; s++) {
            list[n++] = from + 8 + rnd() % (len - 12);
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t data_off = is_data ? tcpota_get_u32(r.wire + from + 4) : 0;
            o = (struct rig_conn_opts){0, (long)list[i], -1, 0};
            if (one_case(&o, &res, &refetch, &pos) < 0) {
                die("flipped byte (downstream)", (long)list[i]);
                goto out;
            }
            /* Nothing of the bad frame reached the slot. */
            if (pos > data_off) {
                snprintf(r.err, sizeof(r.err), "device wrote up to %u past a bad frame at %u", pos, data_off);
                die("flipped byte (downstream)", (long)list[i]);
                goto out;
            }
            if (res.dev_rc < 0) refused++;
            else stalled++;
            flips_down++;
        }
    }

    /* Flips in the device's frames. */
    for (size_t b = 0; b < up_len; b++) {
        o = (struct rig_conn_opts){0, -1, (long)b, 0};
        if (one_case(&o, &res, &refetch, &pos) < 0) {
            die("flipped byte (upstream)", (long)b);
            goto out;
        }
        if (res.srv_rc < 0) refused++;
        else stalled++;
        flips_up++;
    }
    printf("framecut: image %u bytes, chunk %u, ack %u: %zu frames; %u cuts (every boundary and a "
           "byte inside each frame), at most %u bytes fetched again; %u flipped bytes in server "
           "frames and %u in device frames: %u refused at once, %u waited for bytes that never "
           "came; every run byte-exact\n",
           size, chunk, ack, n_frames, cuts, max_refetch, flips_down, flips_up, refused, stalled);
    rc = 0;
out:
    rig_snapshot_free(&fresh);
    rig_free(&r);
    rig_image_free(&img);
    {
        static const char *const fl[] = {"ota_0.bin", "ota_1.bin", "otadata.bin", "nvs.bin"};
        char p[300];
        for (int i = 0; i < 4; i++) {
            snprintf(p, sizeof(p), "%s/%s", dir, fl[i]);
            (void)unlink(p);
        }
        (void)rmdir(dir);
    }
    return rc;
}
